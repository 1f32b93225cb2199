"""Paper A's three hypotheses for zero-shot failure under shift (notebook 02), decided per domain and per
scoring mode from the numbers and their intervals.

A claim needs a 95 % bootstrap interval that clears the margin (:data:`MARGIN`, accuracy points as a
fraction); when the interval reaches into the margin the outcome is *inconclusive*. Outcomes per
(dataset, domain, mode) and hypothesis: ``supported``, ``contradicted``, ``inconclusive``, ``format
failure`` (generate mode: most of the errors are replies the parser cannot read, so the zero-shot number
measures the reply format, not the classification) and ``no clear gap`` (zero-shot is not clearly below
its references, so the hypotheses have nothing to explain; without an ID reference this can also mean
that the probes do little better than zero-shot -- it does not say that the model does well).

0. **A gap to explain**: zero-shot clearly below the ID reference accuracy (ID - zero-shot, paired when
   the domain's images are shifted copies of the reference's) or clearly below the best in-domain probe.
1. **Semantic misinterpretation** (H1): supported when a richer prompt (class descriptions, domain
   context) raises zero-shot accuracy over the plain prompt on the same images by more than the margin;
   contradicted when neither can (both intervals below the margin) -- unless the richer prompt also
   clearly lowers accuracy on the ID reference domain, whose classes the model knows: then the prompt is
   off the model's language distribution, the test is confounded and the outcome is inconclusive.
2. **Visual feature insufficiency** (H2): supported when the probe on the frozen vision features is not
   above zero-shot by more than the margin (interval of the difference below it); contradicted when it
   is clearly above and not clearly below the raw-pixel probe (an encoder that discards what the pixels
   carry is not cleared by beating zero-shot); inconclusive otherwise.
3. **Mapping deficiency** (H3): supported when H2 is contradicted, the probe on the language model's
   answer state is also clearly above zero-shot (the evidence reaches the language model) and H1 is not
   supported; contradicted when H2 is supported (the class is missing upstream) or the answer-state probe
   is not above zero-shot by the margin; inconclusive otherwise.

References printed beside the verdict (they do not decide it): the raw-pixel probe (what any linear probe
trained on labelled in-domain examples reaches; a vision probe close to it shows the labels, not the
encoder, doing the work) and the ID-trained vision probe applied to the shifted domain (a readout fitted
where the model was trained, like the model's own mapping: near zero-shot, the features moved; well
above it, an ID-trained linear readout of the same features does better than the model).

Inputs are per-item tables: zero-shot answers (``dataset``, ``domain``, ``variant``, ``mode``, ``id``,
``correct``, ``parsed``), including the ID reference domains, and probe test items (``dataset``,
``domain``, ``features``, ``item``, ``correct``), all feature sets of a domain scored on the same test
items (``item``), in the order they were produced (the bootstrap resamples positions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached_analysis
from ..data import catalog
from ..stats import (FORMAT_SHARE, MARGIN, bootstrap_ci, difference_interval, is_format_failure,
                    points_interval)
from .evaluation import pair_with_reference
from .features import domain_features
from .probe_protocol import probed_classes
from .probes import learning_curve, probe_accuracy, transfer_accuracy

RICHER_PROMPTS = ("descriptions", "domain_context")
PROBE_LABELS = {"vision": "probe: vision features", "answer_state": "probe: LM answer state",
                "pixels": "probe: raw pixels"}
ID_PROBE = "id_vision"  # the vision probe fitted on the ID reference domain, scored on the shifted domain
ID_PROBE_LABEL = "probe: vision features, ID-trained"
OUTCOMES = ("supported", "contradicted", "inconclusive", "format failure", "no clear gap")


def _cells(table: pd.DataFrame, **match) -> pd.DataFrame:
    mask = np.ones(len(table), bool)
    for col, value in match.items():
        mask &= (table[col].astype(str) == str(value)).to_numpy()
    return table[mask]


def _zero_shot(zs: pd.DataFrame, dataset: str, variant: str, mode: str | None = None,
               domain: str | None = None) -> np.ndarray:
    match = {"dataset": dataset, "variant": variant}
    if mode is not None and "mode" in zs:
        match["mode"] = mode
    if domain is not None:
        match["domain"] = domain
    return _cells(zs, **match)["correct"].to_numpy(bool)


def _probe(items: pd.DataFrame, dataset: str, features: str, domain: str | None = None) -> np.ndarray:
    match = {"dataset": dataset, "features": features, **({} if domain is None else {"domain": domain})}
    return _cells(items, **match)["correct"].to_numpy(bool)


def _reference(ref) -> tuple[str, str] | None:
    if ref is None or ref == "":
        return None
    return tuple(ref.split("/", 1)) if isinstance(ref, str) else tuple(ref)


def comparison(zs: pd.DataFrame, probe_items: pd.DataFrame, chance: dict, variants, *, mode: str | None = None,
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Zero-shot accuracy per prompt variant (of scoring ``mode``) and probe accuracy per feature set,
    pooled over each dataset's OOD domains, with 95 % bootstrap intervals: columns dataset, method,
    accuracy, ci_low, ci_high, n, chance (fractions). ``chance``: {dataset: 1 / classes}; datasets in its
    order; ``zs`` and ``probe_items`` already restricted to the OOD domains."""
    rows = []
    labels = {**PROBE_LABELS, ID_PROBE: ID_PROBE_LABEL}
    for name, ch in chance.items():
        for variant in variants:
            c = _zero_shot(zs, name, variant, mode)
            lo, hi = bootstrap_ci(c, n_boot=n_boot, seed=seed)
            rows.append({"dataset": name, "method": f"zero-shot: {variant}", "accuracy": c.mean(), "ci_low": lo,
                         "ci_high": hi, "n": len(c), "chance": ch})
        for kind, label in labels.items():
            c = _probe(probe_items, name, kind)
            if not len(c):
                continue
            lo, hi = bootstrap_ci(c, n_boot=n_boot, seed=seed)
            rows.append({"dataset": name, "method": label, "accuracy": c.mean(), "ci_low": lo, "ci_high": hi,
                         "n": len(c), "chance": ch})
    return pd.DataFrame(rows)


def _paired_prompts(zs: pd.DataFrame, dataset: str, domain: str, mode: str, variant: str):
    """(richer, plain) outcomes of the same images, matched by id; (empty, empty) when either is missing."""
    rich = _cells(zs, dataset=dataset, domain=domain, mode=mode, variant=variant)
    plain = _cells(zs, dataset=dataset, domain=domain, mode=mode, variant="plain")
    both = rich[["id", "correct"]].merge(plain[["id", "correct"]], on="id", suffixes=("_rich", "_plain"))
    return both["correct_rich"].to_numpy(bool), both["correct_plain"].to_numpy(bool)


@cached_analysis("analysis")
def prompt_confounds(zs: pd.DataFrame, references: dict, modes, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The richer prompts on the ID reference domains (every distinct one of ``references``): accuracy change
    over the plain prompt on the same images, with its paired interval. A prompt that clearly lowers
    accuracy where the model knows the classes (interval below 0) is off the model's language distribution:
    columns mode, variant, reference, change, ci_low, ci_high, confounded."""
    rows = []
    for ref in dict.fromkeys(_reference(r) for r in references.values() if _reference(r)):
        for mode in modes:
            for variant in RICHER_PROMPTS:
                rich, plain = _paired_prompts(zs, ref[0], ref[1], mode, variant)
                d, lo, hi = difference_interval("paired", rich, plain, n_boot, seed)
                if np.isnan(d):
                    continue
                rows.append({"mode": mode, "variant": variant, "reference": "/".join(ref), "change": d,
                             "ci_low": lo, "ci_high": hi, "confounded": bool(hi < 0)})
    return pd.DataFrame(rows, columns=["mode", "variant", "reference", "change", "ci_low", "ci_high", "confounded"])


def decide(row: dict, margin: float = MARGIN, format_share: float = FORMAT_SHARE) -> dict:
    """The outcomes of one (dataset, domain, mode) from its numbers (the rules of the module docstring).

    ``row``: zero_shot, parse_failure (NaN in loglik mode), and for each comparison X among ``failure``
    (reference - zero-shot: ID reference and best probe, the larger lower end counts), ``prompt_gain``
    (best richer prompt - plain), ``vision_gap`` (vision probe - zero-shot), ``pixels_over_vision``,
    ``lm_gap`` (answer-state probe - zero-shot), optionally ``id_probe_gap`` (ID-trained probe - zero-shot):
    ``X_low`` and ``X_high`` (NaN when not measured); and ``prompt_confounded`` (the richer prompts that
    clearly lower ID accuracy: a list of names, or a bool). Returns H1, H2, H3 (outcomes), verdict (words),
    id_readout (what the ID-trained probe shows, a reference that decides nothing) and why (the reasons)."""
    lo, hi = row.get("id_probe_gap_low", np.nan), row.get("id_probe_gap_high", np.nan)
    id_readout = ("n/a" if np.isnan(lo) else
                  "fails alike: the features moved from their ID form" if hi < margin else
                  "does better than the model: the features keep their ID form" if lo > margin else "inconclusive")
    confounded = row["prompt_confounded"]
    if isinstance(confounded, (bool, np.bool_)):
        confounded = ["a richer prompt"] if confounded else []
    pf = row.get("parse_failure", np.nan)
    errors = 1 - row["zero_shot"]
    if is_format_failure(row["zero_shot"], pf, margin, format_share):
        why = (f"{100 * pf:.0f} % of replies unparseable, {100 * pf / max(errors, 1e-9):.0f} % of the errors: "
               f"the zero-shot number measures the reply format, not the classification")
        return {"H1": "format failure", "H2": "format failure", "H3": "format failure", "verdict": "format failure",
                "id_readout": id_readout, "why": why}
    if not row["failure_low"] > margin:
        why = "zero-shot not clearly below its references (ID accuracy, best in-domain probe) by the margin"
        return {"H1": "no clear gap", "H2": "no clear gap", "H3": "no clear gap", "verdict": "no clear gap",
                "id_readout": "n/a" if id_readout == "n/a" else "no gap to explain", "why": why}
    reasons = []
    # H1
    if row["prompt_gain_low"] > margin:
        h1 = "supported"
    elif row["prompt_gain_high"] < margin and not confounded:
        h1 = "contradicted"
    else:
        h1 = "inconclusive"
        if confounded:
            reasons.append(f"H1: {' and '.join(confounded)} also clearly lower(s) ID accuracy, so the test is confounded")
    # H2
    if row["vision_gap_high"] < margin:
        h2 = "supported"
    elif row["vision_gap_low"] > margin and not row["pixels_over_vision_low"] > margin:
        h2 = "contradicted"
    else:
        h2 = "inconclusive"
        if row["vision_gap_low"] > margin:
            reasons.append("H2: the vision probe beats zero-shot but is clearly below the raw-pixel probe")
    # H3
    if h2 == "supported":
        h3 = "contradicted"
        reasons.append("H3: the vision features carry no more than zero-shot reads out")
    elif row["lm_gap_high"] < margin:
        h3 = "contradicted"
        reasons.append("H3: the LM answer state carries no more than zero-shot reads out")
    elif h2 == "contradicted" and row["lm_gap_low"] > margin and h1 != "supported":
        h3 = "supported"
    else:
        h3 = "inconclusive"
    found = [name for name, o in [("H1 semantic misinterpretation", h1), ("H2 visual feature insufficiency", h2),
                                  ("H3 mapping deficiency", h3)] if o == "supported"]
    return {"H1": h1, "H2": h2, "H3": h3, "verdict": "; ".join(found) or "inconclusive", "id_readout": id_readout,
            "why": "; ".join(reasons)}


@cached_analysis("analysis")
def domain_verdicts(zs: pd.DataFrame, probe_items: pd.DataFrame, ood: dict, references: dict, modes, *,
                    margin: float = MARGIN, format_share: float = FORMAT_SHARE, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, OOD domain, mode): the accuracies, the differences that decide H1-H3 with
    their 95 % intervals (in accuracy points: 'difference [low, high]'), the references and the outcomes
    (:func:`decide`). ``ood``: {dataset: its OOD domains}; ``references``: {dataset: 'dataset/domain'} of
    its ID reference (datasets without one: no ID gap, no ID-trained probe)."""
    confounds = prompt_confounds(zs, references, modes, n_boot=n_boot, seed=seed)
    rows = []
    for name, domains in ood.items():
        ref = _reference(references.get(name))
        for dom in domains:
            vision, pixels = _probe(probe_items, name, "vision", dom), _probe(probe_items, name, "pixels", dom)
            lm, id_probe = _probe(probe_items, name, "answer_state", dom), _probe(probe_items, name, ID_PROBE, dom)
            best_probe = max((p for p in (vision, pixels, lm) if len(p)), key=lambda p: p.mean(), default=np.array([]))
            for mode in modes:
                plain_rows = _cells(zs, dataset=name, domain=dom, mode=mode, variant="plain")
                plain = plain_rows["correct"].to_numpy(bool)
                if not len(plain):
                    continue
                r = {"dataset": name, "domain": dom, "mode": mode, "zero_shot": plain.mean(),
                     "parse_failure": (1 - plain_rows["parsed"].mean()) if mode == "generate" else np.nan,
                     # how often the most frequent answer is given (1.0: the same answer for every image)
                     "top_answer_share": (plain_rows["pred"].value_counts(normalize=True).iloc[0]
                                          if "pred" in plain_rows else np.nan)}
                id_acc = idl = idh = np.nan
                if ref is not None:
                    ref_rows = _cells(zs, dataset=ref[0], domain=ref[1], mode=mode, variant="plain")
                    if len(ref_rows):
                        pairs = pair_with_reference(plain_rows, ref_rows)
                        if pairs is not None:
                            id_acc, idl, idh = difference_interval("paired", pairs["correct_ref"], pairs["correct"],
                                                                   n_boot, seed)
                        else:
                            id_acc, idl, idh = difference_interval("independent", ref_rows["correct"], plain, n_boot, seed)
                        id_acc = ref_rows["correct"].mean()
                r["id_accuracy"] = id_acc
                _, pl, ph = difference_interval("independent", best_probe, plain, n_boot, seed)
                r["failure_low"] = np.nanmax([idl, pl]) if not (np.isnan(idl) and np.isnan(pl)) else np.nan
                r["failure_high"] = np.nanmax([idh, ph]) if not (np.isnan(idh) and np.isnan(ph)) else np.nan
                gains = [difference_interval("paired", *_paired_prompts(zs, name, dom, mode, v), n_boot, seed)
                         for v in RICHER_PROMPTS]
                gains = [g for g in gains if not np.isnan(g[0])]
                best = max(gains, key=lambda g: g[1]) if gains else (np.nan, np.nan, np.nan)
                conf = confounds[confounds["mode"] == mode] if len(confounds) else confounds
                r.update(prompt_gain=best[0], prompt_gain_low=best[1], prompt_gain_high=best[2],
                         prompt_confounded=list(conf.loc[conf["confounded"], "variant"]) if len(conf) else [])
                for key, (a, b, kind) in {"vision_gap": (vision, plain, "independent"),
                                          "lm_gap": (lm, plain, "independent"),
                                          "pixels_over_vision": (pixels, vision, "paired"),
                                          "id_probe_gap": (id_probe, plain, "independent"),
                                          "transfer_loss": (vision, id_probe, "paired")}.items():
                    if kind == "paired" and len(a) != len(b):
                        a = b = []
                    r[key], r[f"{key}_low"], r[f"{key}_high"] = difference_interval(kind, a, b, n_boot, seed)
                r.update(vision_probe=vision.mean() if len(vision) else np.nan,
                         lm_probe=lm.mean() if len(lm) else np.nan,
                         pixel_probe=pixels.mean() if len(pixels) else np.nan,
                         id_probe=id_probe.mean() if len(id_probe) else np.nan)
                rows.append({**r, **decide(r, margin, format_share)})
    return pd.DataFrame(rows)


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts as a reader reads them: per (dataset, domain) and mode, the outcomes, then the accuracy
    in %, the unparseable and the most frequent answer's share, and each deciding difference as
    'difference [95 % interval]' in points."""
    out = verdicts[["dataset", "domain", "mode", "verdict", "H1", "H2", "H3", "id_readout"]].rename(
        columns={"id_readout": "ID-trained readout (reference)"})
    out["zero-shot %"] = (100 * verdicts["zero_shot"]).round(0)
    out["unparsed %"] = (100 * verdicts["parse_failure"]).round(0)
    out["top answer %"] = (100 * verdicts["top_answer_share"]).round(0)
    for col, label in [("prompt_gain", "best richer prompt - plain"), ("vision_gap", "vision probe - zero-shot"),
                       ("pixels_over_vision", "pixel probe - vision probe"), ("lm_gap", "LM-state probe - zero-shot"),
                       ("id_probe_gap", "ID-trained probe - zero-shot")]:
        out[label] = [points_interval(d, lo, hi)
                      for d, lo, hi in zip(verdicts[col], verdicts[f"{col}_low"], verdicts[f"{col}_high"])]
    return out


def summarise(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and mode: how many OOD domains end in each verdict, and per dataset whether the two
    scoring modes agree domain by domain. Columns dataset, mode, domains, then one column per verdict
    seen (counts), then modes_agree (domains with the same verdict in every mode, of all domains)."""
    counts = (verdicts.groupby(["dataset", "mode", "verdict"], sort=False).size().unstack("verdict", fill_value=0)
              .reset_index())
    counts.insert(2, "domains", counts.drop(columns=["dataset", "mode"]).sum(axis=1))
    agree = verdicts.groupby(["dataset", "domain"], sort=False)["verdict"].nunique().eq(1).groupby("dataset").agg(
        ["sum", "size"])
    counts["modes_agree"] = counts["dataset"].map({d: f"{int(a['sum'])} of {int(a['size'])}" for d, a in agree.iterrows()})
    return counts


def _probed(name: str, protocol: str, seed: int) -> list[int]:
    return probed_classes(name, catalog.open_dataset(name, seed=seed)[1].class_names, protocol)


def _rows(x, y, classes):
    keep = np.isin(y, classes)
    return x[keep], y[keep]


@cached_analysis("analysis")
def probe_tables(model, datasets, ood: dict, n_per_class: int, *, references: dict | None = None, seed: int = 0,
                 batch_size: int = 64, prompt_style: str = "short", n_boot: int = 1000,
                 protocol: str = "project") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Linear probes (H2, H3) per OOD domain and feature set (:data:`PROBE_LABELS`), each fitted on a fixed
    half of ``n_per_class`` samples per class and scored on the other half (cached fits, see
    :mod:`mllm_ood.paper_a.probes`), plus, for datasets with an ID reference (``references``: {dataset:
    'dataset/domain'}), the vision probe fitted on the reference's training half and scored on the same test
    half (:data:`ID_PROBE`). ``ood``: {dataset: OOD domains}. ``protocol`` (:mod:`mllm_ood.paper_a.probe_protocol`):
    'paper_a' keeps only the images of paper A's class pair where it names one (every feature set alike, so the
    test items stay shared) and fits paper A's classifier. Returns (one row per dataset, domain and feature set:
    classes (how many the probe separates), n_train, n_test, accuracy, ci_low, ci_high; the test items: dataset,
    domain, features, item, correct, in the order that :func:`comparison` and :func:`domain_verdicts` use them)."""
    rows, items = [], []
    references = references or {}

    def add(name, dom, kind, classes, r):
        correct = r.pop("correct")
        items.append(pd.DataFrame({"dataset": name, "domain": dom, "features": kind, "item": np.arange(len(correct)),
                                   "correct": correct}))
        rows.append({"dataset": name, "domain": dom, "features": kind, "classes": len(classes), **r})

    for name in datasets:
        classes = _probed(name, protocol, seed)
        ref = _reference(references.get(name))
        ref_x = None
        if ref is not None:
            ref_x, ref_y = _rows(*domain_features(model, ref[0], ref[1], "vision", n_per_class, seed=seed,
                                                  batch_size=batch_size)[:2], classes)
        for dom in ood[name]:
            for kind in PROBE_LABELS:
                x, y = _rows(*domain_features(model, name, dom, kind, n_per_class, seed=seed, batch_size=batch_size,
                                              prompt_style=prompt_style)[:2], classes)
                add(name, dom, kind, classes, probe_accuracy(x, y, seed=seed, n_boot=n_boot, protocol=protocol))
                if kind == "vision" and ref_x is not None:
                    add(name, dom, ID_PROBE, classes, transfer_accuracy(ref_x, ref_y, x, y, seed=seed, n_boot=n_boot,
                                                                        protocol=protocol))
    return pd.DataFrame(rows), pd.concat(items, ignore_index=True)


@cached_analysis("analysis")
def probe_curves(model, datasets, ood: dict, n_per_class: int, per_class_list, *, seed: int = 0,
                 batch_size: int = 64, n_boot: int = 1000, protocol: str = "project") -> pd.DataFrame:
    """The vision-feature probe's accuracy against labelled examples per class, one fit per point on the
    same test half (:func:`mllm_ood.paper_a.probes.learning_curve` with one draw; ``protocol`` as in
    :func:`probe_tables`): columns dataset, domain, per_class, accuracy."""
    frames = []
    for name in datasets:
        classes = _probed(name, protocol, seed)
        for dom in ood[name]:
            x, y = _rows(*domain_features(model, name, dom, "vision", n_per_class, seed=seed,
                                          batch_size=batch_size)[:2], classes)
            frames.append(learning_curve(x, y, per_class_list, seed=seed, n_draws=1, n_boot=n_boot, protocol=protocol)
                          .assign(dataset=name, domain=dom))
    return pd.concat(frames, ignore_index=True)[["dataset", "domain", "per_class", "accuracy"]]
