"""Paper A's three hypotheses for zero-shot failure under shift (notebook 02), decided from the numbers.

1. **Semantic misinterpretation** (H1): a richer prompt (class descriptions, domain context) clearly
   raises zero-shot accuracy over the plain prompt.
2. **Visual feature insufficiency** (H2): rejected when a linear probe on the frozen vision features is
   clearly above zero-shot (the features carry the class); otherwise it cannot be ruled out.
3. **Mapping deficiency** (H3): H2 rejected, the probe on the language model's answer state also clearly
   above zero-shot (the evidence reaches the language model), and no richer prompt closes the gap.

"Clearly" means that the 95 % bootstrap interval of the difference excludes zero. Inputs are per-item
tables: zero-shot answers (``dataset``, ``variant``, ``correct``) and probe test items (``dataset``,
``domain``, ``features``, ``correct``), each already restricted to the OOD domains under test, in the
order the items were produced (the bootstrap resamples positions, so the order is part of the result).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import bootstrap_ci, bootstrap_diff_ci
from .features import domain_features
from .probes import learning_curve, probe_accuracy

RICHER_PROMPTS = ("descriptions", "domain_context")
PROBE_LABELS = {"vision": "probe: vision features", "answer_state": "probe: LM answer state",
                "pixels": "probe: raw pixels"}
# Below this many accuracy points between the vision probe and zero-shot there is little failure to explain.
SMALL_GAP = 0.05


def _zero_shot(zs: pd.DataFrame, dataset: str, variant: str) -> np.ndarray:
    return zs[(zs["dataset"] == dataset) & (zs["variant"] == variant)]["correct"].to_numpy()


def _probe(items: pd.DataFrame, dataset: str, features: str) -> np.ndarray:
    return items[(items["dataset"] == dataset) & (items["features"] == features)]["correct"].to_numpy()


def comparison(zs: pd.DataFrame, probe_items: pd.DataFrame, chance: dict, variants, *, n_boot: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """Zero-shot accuracy per prompt variant and probe accuracy per feature set, pooled over each dataset's
    OOD domains, with 95 % bootstrap intervals: columns dataset, method, accuracy, ci_low, ci_high, n,
    chance (fractions). ``chance``: {dataset: 1 / classes}; datasets in its order."""
    rows = []
    for name, ch in chance.items():
        for variant in variants:
            c = _zero_shot(zs, name, variant)
            lo, hi = bootstrap_ci(c, n_boot=n_boot, seed=seed)
            rows.append({"dataset": name, "method": f"zero-shot: {variant}", "accuracy": c.mean(), "ci_low": lo,
                         "ci_high": hi, "n": len(c), "chance": ch})
        for kind, label in PROBE_LABELS.items():
            c = _probe(probe_items, name, kind)
            lo, hi = bootstrap_ci(c, n_boot=n_boot, seed=seed)
            rows.append({"dataset": name, "method": label, "accuracy": c.mean(), "ci_low": lo, "ci_high": hi,
                         "n": len(c), "chance": ch})
    return pd.DataFrame(rows)


def verdict(zs: pd.DataFrame, probe_items: pd.DataFrame, datasets, *, n_boot: int = 1000,
            seed: int = 0) -> pd.DataFrame:
    """One row per dataset: the plain zero-shot accuracy, the lower interval ends of the differences that
    decide H1-H3 (see the module docstring), the three decisions and the verdict in words."""
    rows = []
    for name in datasets:
        plain = _zero_shot(zs, name, "plain")
        gains = {v: bootstrap_diff_ci(_zero_shot(zs, name, v), plain, n_boot=n_boot, seed=seed)
                 for v in RICHER_PROMPTS}
        h1 = any(lo > 0 for lo, _ in gains.values())
        vision = _probe(probe_items, name, "vision")
        vis_lo, _ = bootstrap_diff_ci(vision, plain, n_boot=n_boot, seed=seed)
        lm_lo, _ = bootstrap_diff_ci(_probe(probe_items, name, "answer_state"), plain, n_boot=n_boot, seed=seed)
        h2_rejected = vis_lo > 0
        h3 = h2_rejected and lm_lo > 0 and not h1
        supported = (["H1 semantic misinterpretation"] if h1 else []) + \
                    ([] if h2_rejected else ["H2 visual feature insufficiency (not ruled out)"]) + \
                    (["H3 mapping deficiency"] if h3 else [])
        if supported:
            words = "; ".join(supported)
        elif vision.mean() - plain.mean() < SMALL_GAP:
            words = "little failure to explain: zero-shot within 5 points of the vision probe"
        else:
            words = "no hypothesis clearly supported"
        rows.append({"dataset": name, "zero-shot plain": plain.mean(),
                     "best richer prompt gain (CI low)": max(lo for lo, _ in gains.values()),
                     "vision probe - zero-shot (CI low)": vis_lo, "LM-state probe - zero-shot (CI low)": lm_lo,
                     "H1 supported": h1, "H2 rejected": h2_rejected, "H3 supported": h3, "verdict": words})
    return pd.DataFrame(rows)


def probe_tables(model, datasets, ood: dict, n_per_class: int, *, seed: int = 0, batch_size: int = 64,
                 prompt_style: str = "short", n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Linear probes (H2, H3) per OOD domain and feature set (:data:`PROBE_LABELS`), each fitted on a fixed
    half of ``n_per_class`` samples per class and scored on the other half (cached fits, see
    :mod:`mllm_ood.probes`). ``ood``: {dataset: OOD domains}. Returns (one row per dataset, domain and
    feature set: n_train, n_test, accuracy, ci_low, ci_high; the test items: dataset, domain, features,
    correct, in the order that :func:`comparison` and :func:`verdict` pool them)."""
    rows, items = [], []
    for name in datasets:
        for dom in ood[name]:
            for kind in PROBE_LABELS:
                x, y, _ = domain_features(model, name, dom, kind, n_per_class, seed=seed, batch_size=batch_size,
                                          prompt_style=prompt_style)
                r = probe_accuracy(x, y, seed=seed, n_boot=n_boot)
                items.append(pd.DataFrame({"dataset": name, "domain": dom, "features": kind, "correct": r.pop("correct")}))
                rows.append({"dataset": name, "domain": dom, "features": kind, **r})
    return pd.DataFrame(rows), pd.concat(items, ignore_index=True)


def probe_curves(model, datasets, ood: dict, n_per_class: int, per_class_list, *, seed: int = 0,
                 batch_size: int = 64, n_boot: int = 1000) -> pd.DataFrame:
    """The vision-feature probe's accuracy against labelled examples per class, one fit per point on the
    same test half (:func:`mllm_ood.probes.learning_curve` with one draw): columns dataset, domain,
    per_class, accuracy."""
    frames = []
    for name in datasets:
        for dom in ood[name]:
            x, y, _ = domain_features(model, name, dom, "vision", n_per_class, seed=seed, batch_size=batch_size)
            frames.append(learning_curve(x, y, per_class_list, seed=seed, n_draws=1, n_boot=n_boot)
                          .assign(dataset=name, domain=dom))
    return pd.concat(frames, ignore_index=True)[["dataset", "domain", "per_class", "accuracy"]]
