"""Paper A's three hypotheses for zero-shot failure under shift (notebook 02), read per OOD domain and
scoring mode as paper A's claims A-H1, A-H2, A-H3 by the one rule of :mod:`mllm_ood.stats.rule`
(*supported* always means: paper A's claim holds here).

0. **What the accuracy is, and a gap to explain.** A domain whose plain-prompt answers are a parse failure,
   an off-list answer or a constant answer (:mod:`mllm_ood.paper_a.outcomes`) gets that outcome for every
   claim: its accuracy measures the reply, not the classification. A domain where zero-shot is not clearly
   below its references (ID accuracy, paired when the images are shifted copies; best in-domain probe) by
   the margin has nothing to explain: *not testable* for every claim.
1. **A-H1, richer prompts do not help** (the paper claims *no* effect). Each richer prompt (class
   descriptions, domain context) is read on its own: its gain over the plain prompt on the same images,
   paired. A prompt is **confounded** for a dataset when it lowers accuracy on that dataset's own ID
   reference domain by more than the margin (by the rule, with its exact p): off the model's language
   distribution, its OOD drop says nothing about the words; it is left out there. A dataset without an ID
   reference cannot check (so cannot flag) its prompts. *Contradicted* when some unconfounded prompt helps
   by more than the margin (its exact p times the number of unconfounded prompts, then Holm); *supported*
   only when every unconfounded prompt's interval lies below the margin; *not testable* when every prompt
   is confounded; else *inconclusive*, in particular while any unconfounded prompt's interval still reaches
   above the margin.
2. **A-H2, the vision features suffice**: the probe on the frozen vision features, trained and tested in
   the domain, beats zero-shot by more than the margin (independent samples, Fisher's exact p). Held at
   *inconclusive* when the vision probe is itself clearly below the raw-pixel probe (the encoder then
   discards what the pixels carry, and "sufficient" is not shown).
3. **A-H3, mapping deficiency is the hurdle**: all of (a) the vision probe, (b) the probe on the language
   model's answer state and (c) the vision probe **fitted on the ID reference domain** beat zero-shot by
   more than the margin. (c) is the fair test of a feature shift: a readout fitted where the model was
   trained, like the model's own mapping, applied to the shifted features. If it fails alike, the features
   moved -- an in-domain probe undoes a *feature shift*, not a deficient mapping. *Contradicted* when any of
   the three lies below the margin; *supported* when all clear it (intersection-union: the largest of their
   exact p-values); held at *inconclusive* when A-H1 is contradicted (the words, not the mapping). Without an
   ID reference (c) is not available and (a)-(b) decide, as in paper A.

Inputs are per-item tables: zero-shot answers (``dataset``, ``domain``, ``variant``, ``mode``, ``id``,
``correct``, ``parsed``, optionally ``pred_name`` and ``reply``), including the ID reference domains, and
probe test items (``dataset``, ``domain``, ``features``, ``item``, ``correct``), all feature sets of a
domain scored on the same test items (``item``), in the order they were produced (the bootstrap resamples
positions).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..cache import cached_analysis
from ..data import catalog
from ..stats import (CONTRADICTED, INCONCLUSIVE, MARGIN, NOT_TESTABLE, SUPPORTED, bootstrap_ci, decide,
                     difference_interval, points_interval)
from .evaluation import pair_with_reference
from .features import domain_features
from ..stats import exact_p
from .outcomes import answer_table, outcome_reason
from .probe_protocol import probed_classes
from .probes import learning_curve, probe_accuracy, transfer_accuracy

RICHER_PROMPTS = ("descriptions", "domain_context")
PROBE_LABELS = {"vision": "probe: vision features", "answer_state": "probe: LM answer state",
                "pixels": "probe: raw pixels"}
ID_PROBE = "id_vision"  # the vision probe fitted on the ID reference domain, scored on the shifted domain
ID_PROBE_LABEL = "probe: vision features, ID-trained"
CLAIMS = ("A-H1", "A-H2", "A-H3")
NO_GAP = "no gap to explain: zero-shot is not clearly below its references (ID accuracy, best in-domain probe)"
# The comparisons behind A-H3, in words (the one that binds is named in the verdict).
H3_PARTS = {"vision_gap": "vision probe - zero-shot", "lm_gap": "LM answer-state probe - zero-shot",
            "id_probe_gap": "ID-trained vision probe - zero-shot"}


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


def _change(rich, plain, n_boot: int, seed: int, direction: int):
    """(difference, low, high, exact one-sided p) of paired 0/1 outcomes rich - plain."""
    d, lo, hi = difference_interval("paired", rich, plain, n_boot, seed)
    return d, lo, hi, exact_p(rich, plain, paired=True, direction=direction, seed=seed)


def _references(references: dict) -> list[tuple[str, str]]:
    return list(dict.fromkeys(_reference(r) for r in references.values() if _reference(r)))


@cached_analysis("analysis")
def prompt_confounds(zs: pd.DataFrame, references: dict, modes, *, margin: float = MARGIN, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Each richer prompt on each distinct ID reference domain of ``references`` ({dataset: 'dataset/domain'}):
    its accuracy change over the plain prompt on the same images (paired interval, exact one-sided p of a
    drop) and whether it is **confounded**: it lowers accuracy where the model knows the classes by more than
    ``margin``, by the rule (:func:`mllm_ood.stats.decide`, direction -1). Columns mode, variant, reference,
    change, ci_low, ci_high, p, confounded."""
    cols = ["mode", "variant", "reference", "change", "ci_low", "ci_high", "p", "confounded"]
    rows = []
    for ref in _references(references):
        for mode in modes:
            for variant in RICHER_PROMPTS:
                d, lo, hi, p = _change(*_paired_prompts(zs, ref[0], ref[1], mode, variant), n_boot, seed, -1)
                if not np.isnan(d):
                    rows.append(dict(zip(cols, [mode, variant, "/".join(ref), d, lo, hi, p,
                                                decide(d, lo, hi, margin=margin, direction=-1, p=p) == SUPPORTED])))
    return pd.DataFrame(rows, columns=cols)


@cached_analysis("analysis")
def prompt_effects(zs: pd.DataFrame, ood: dict, references: dict, modes, *, margin: float = MARGIN,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every richer prompt's effect per mode on every OOD domain of ``ood`` ({dataset: domains}) and on each
    ID reference domain: columns dataset, domain, role ('OOD' or 'ID reference'), mode, variant, plain and
    rich (accuracies), gain (rich - plain) with its paired interval ci_low, ci_high, p (exact, one-sided: a
    gain), reference (the dataset's ID reference, '' when none) and confounded (:func:`prompt_confounds` on
    the dataset's *own* reference; always False without one: nothing can flag the prompt there)."""
    flags = prompt_confounds(zs, references, modes, margin=margin, n_boot=n_boot, seed=seed)
    flag = {(r.reference, r.mode, r.variant): bool(r.confounded) for r in flags.itertuples()}
    cells = [(name, dom, "OOD", _reference(references.get(name))) for name, doms in ood.items() for dom in doms]
    cells += [(ref[0], ref[1], "ID reference", ref) for ref in _references(references)]
    rows = []
    for name, dom, role, ref in cells:
        for mode in modes:
            for variant in RICHER_PROMPTS:
                rich, plain = _paired_prompts(zs, name, dom, mode, variant)
                d, lo, hi, p = _change(rich, plain, n_boot, seed, 1)
                if np.isnan(d):
                    continue
                key = "/".join(ref) if ref else ""
                rows.append({"dataset": name, "domain": dom, "role": role, "mode": mode, "variant": variant,
                             "plain": plain.mean(), "rich": rich.mean(), "gain": d, "ci_low": lo, "ci_high": hi,
                             "p": p, "reference": key, "confounded": flag.get((key, mode, variant), False)})
    return pd.DataFrame(rows)


def _claim(outcome: str, estimate=math.nan, low=math.nan, high=math.nan, p=math.nan, what: str = "",
           reason: str = "", fixed: bool = False) -> dict:
    return {"outcome": outcome, "estimate": estimate, "low": low, "high": high, "p": p, "what": what,
            "reason": reason, "fixed": fixed}


def _part(row: dict, key: str) -> tuple:
    return row[key], row[f"{key}_low"], row[f"{key}_high"], row.get(f"p_{key}", math.nan)


def decide_h1(variants: list[dict], margin: float = MARGIN) -> dict:
    """A-H1 on one domain from its prompts (dicts with variant, gain, ci_low, ci_high, p, confounded): the
    rules of the module docstring. Returns the outcome (before Holm, with the unadjusted p) and the number
    that decides it."""
    free = [v for v in variants if not v["confounded"] and not np.isnan(v["gain"])]
    if not variants:
        return _claim(NOT_TESTABLE, reason="no richer prompt was run", fixed=True)
    if not free:
        names = " and ".join(v["variant"] for v in variants)
        return _claim(NOT_TESTABLE, reason=f"{names} lower(s) ID accuracy by more than the margin: confounded",
                      fixed=True)
    helps = [v for v in free if v["ci_low"] > margin]
    # A prompt that helps decides (its p corrected for the choice among the free prompts); else the prompt
    # whose interval reaches highest: only when even it stays below the margin do the prompts not help.
    pick = max(helps, key=lambda v: v["ci_low"]) if helps else max(free, key=lambda v: v["ci_high"])
    p = min(1.0, len(free) * pick["p"])
    out = decide(pick["gain"], pick["ci_low"], pick["ci_high"], margin=margin, claims_effect=False, p=p)
    left = [v["variant"] for v in variants if v["confounded"]]
    return _claim(out, pick["gain"], pick["ci_low"], pick["ci_high"], p, f"{pick['variant']} - plain prompt",
                  reason=f"left out as confounded: {', '.join(left)}" if left else "")


def decide_claims(row: dict, variants: list[dict], margin: float = MARGIN) -> dict:
    """A-H1, A-H2, A-H3 on one (dataset, domain, mode) from its numbers (``row``: answer_outcome and its
    answer_reason, failure_low, and for X among vision_gap, lm_gap, id_probe_gap, pixels_over_vision: X,
    X_low, X_high and p_X) and its prompts (:func:`decide_h1`). Returns {claim: :func:`_claim` dict}."""
    if row.get("answer_outcome"):
        return {c: _claim(row["answer_outcome"], reason=row["answer_reason"], fixed=True) for c in CLAIMS}
    if not row["failure_low"] > margin:
        return {c: _claim(NOT_TESTABLE, reason=NO_GAP, fixed=True) for c in CLAIMS}
    h1 = decide_h1(variants, margin)
    d, lo, hi, p = _part(row, "vision_gap")
    h2 = _claim(decide(d, lo, hi, margin=margin, p=p), d, lo, hi, p, H3_PARTS["vision_gap"])
    if h2["outcome"] == SUPPORTED and row["pixels_over_vision_low"] > margin:
        h2 = _claim(INCONCLUSIVE, d, lo, hi, p, H3_PARTS["vision_gap"], fixed=True,
                    reason="the vision probe beats zero-shot but is clearly below the raw-pixel probe")
    parts = {k: _part(row, k) for k in H3_PARTS if not np.isnan(row.get(k, math.nan))}
    if not parts:
        return {"A-H1": h1, "A-H2": h2, "A-H3": _claim(NOT_TESTABLE, reason="no probe was fitted", fixed=True)}
    below = [k for k, (_, _, hi_, _) in parts.items() if hi_ < margin]
    key = below[0] if below else min(parts, key=lambda k: parts[k][1])
    d, lo, hi, _ = parts[key]
    p = max(pp for _, _, _, pp in parts.values())
    h3 = _claim(decide(d, lo, hi, margin=margin, p=p), d, lo, hi, p, H3_PARTS[key],
                reason="" if "id_probe_gap" in parts else "no ID reference: the feature-shift check is not available")
    if key == "id_probe_gap" and h3["outcome"] == CONTRADICTED:
        h3["reason"] = "the ID-trained probe fails alike: the features moved (a feature shift, not the mapping)"
    if h1["outcome"] == CONTRADICTED and h3["outcome"] == SUPPORTED:
        h3.update(outcome=INCONCLUSIVE, fixed=True, reason="a richer prompt helps: the words, not the mapping")
    return {"A-H1": h1, "A-H2": h2, "A-H3": h3}


@cached_analysis("analysis")
def domain_verdicts(zs: pd.DataFrame, probe_items: pd.DataFrame, ood: dict, references: dict, modes,
                    class_names: dict, *, margin: float = MARGIN, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, OOD domain, mode): the answers (:func:`mllm_ood.paper_a.outcomes.answer_table`
    of the plain prompt), the accuracies, each deciding difference with its 95 % interval and exact p, and
    per claim of :data:`CLAIMS` its outcome by the rule before Holm's correction (``A-H1`` ...), the number
    that decides it (``A-H1 estimate``, ``low``, ``high``, ``p``, ``what``), its ``reason`` and ``fixed``
    (set before the rule). ``ood``: {dataset: its OOD domains}; ``references``: {dataset: 'dataset/domain'}
    (datasets without one: no ID gap, no ID-trained probe); ``class_names``: {dataset: class names}."""
    effects = prompt_effects(zs, ood, references, modes, margin=margin, n_boot=n_boot, seed=seed)
    rows = []
    for name, domains in ood.items():
        ref = _reference(references.get(name))
        for dom in domains:
            probes = {k: _probe(probe_items, name, k, dom) for k in (*PROBE_LABELS, ID_PROBE)}
            best_probe = max((p for k, p in probes.items() if k != ID_PROBE and len(p)), key=lambda p: p.mean(),
                             default=np.array([]))
            for mode in modes:
                plain_rows = _cells(zs, dataset=name, domain=dom, mode=mode, variant="plain")
                if not len(plain_rows):
                    continue
                plain = plain_rows["correct"].to_numpy(bool)
                a = answer_table(plain_rows.assign(dataset=name), {name: class_names[name]}).iloc[0]
                r = {"dataset": name, "domain": dom, "mode": mode, "n": len(plain), "zero_shot": plain.mean(),
                     "parse_failure": a["parse_failure"], "off_list": a["off_list"], "top_answer": a["top_answer"],
                     "top_answer_share": a["top_answer_share"], "answer_outcome": a["outcome"],
                     "answer_reason": outcome_reason(a), "id_accuracy": np.nan}
                idl = np.nan
                ref_rows = _cells(zs, dataset=ref[0], domain=ref[1], mode=mode, variant="plain") if ref else []
                if len(ref_rows):
                    pairs = pair_with_reference(plain_rows, ref_rows)
                    kind, (x, y) = (("paired", (pairs["correct_ref"], pairs["correct"])) if pairs is not None
                                    else ("independent", (ref_rows["correct"], plain)))
                    _, idl, _ = difference_interval(kind, x, y, n_boot, seed)
                    r["id_accuracy"] = ref_rows["correct"].mean()
                _, pl, _ = difference_interval("independent", best_probe, plain, n_boot, seed)
                r["failure_low"] = np.nanmax([idl, pl]) if not (np.isnan(idl) and np.isnan(pl)) else np.nan
                for key, (x, y, paired) in {"vision_gap": (probes["vision"], plain, False),
                                            "lm_gap": (probes["answer_state"], plain, False),
                                            "id_probe_gap": (probes[ID_PROBE], plain, False),
                                            "pixels_over_vision": (probes["pixels"], probes["vision"], True)}.items():
                    if paired and len(x) != len(y):
                        x = y = []
                    r[key], r[f"{key}_low"], r[f"{key}_high"] = difference_interval(
                        "paired" if paired else "independent", x, y, n_boot, seed)
                    r[f"p_{key}"] = exact_p(x, y, paired=paired, seed=seed)
                r.update({f"{k} probe": v.mean() if len(v) else np.nan for k, v in probes.items()})
                mine = effects[(effects["dataset"] == name) & (effects["domain"] == dom) & (effects["mode"] == mode)]
                for c, out in decide_claims(r, mine.to_dict("records"), margin).items():
                    r[c] = out.pop("outcome")
                    r.update({f"{c} {k}": v for k, v in out.items()})
                rows.append(r)
    return pd.DataFrame(rows)


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts as a reader reads them: per (dataset, domain) and mode, each claim's outcome (before
    Holm's correction) and the comparison that decides it as 'difference [95 % interval]' in points, then the
    accuracy in % and the most frequent answer's share."""
    out = verdicts[["dataset", "domain", "mode"]].copy()
    for c in CLAIMS:
        out[c] = verdicts[c]
        out[f"{c}: deciding comparison"] = [
            f"{w}: {points_interval(d, lo, hi)}" if w else "" for w, d, lo, hi in
            zip(verdicts[f"{c} what"], verdicts[f"{c} estimate"], verdicts[f"{c} low"], verdicts[f"{c} high"])]
    out["zero-shot %"] = (100 * verdicts["zero_shot"]).round(0)
    out["top answer %"] = (100 * verdicts["top_answer_share"]).round(0)
    return out


def summarise(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per claim and mode: the OOD domains *with a gap to explain* (the denominator) and how many end in
    each outcome, then, reported apart, the domains without a gap and those whose answers are an answer
    outcome (parse failure, off-list, constant answer)."""
    rows = []
    for mode, v in verdicts.groupby("mode", sort=False):
        gap = v[(v["answer_outcome"] == "") & (v["A-H1 reason"] != NO_GAP)]
        for c in CLAIMS:
            counts = gap[c].value_counts()
            rows.append({"claim": c, "mode": mode, "domains with a gap": len(gap),
                         **{o: int(counts.get(o, 0)) for o in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)},
                         "apart: no gap": int(((v["answer_outcome"] == "") & (v["A-H1 reason"] == NO_GAP)).sum()),
                         **{f"apart: {o}": int(n) for o, n in v.loc[v["answer_outcome"] != "",
                                                                    "answer_outcome"].value_counts().items()}})
    return pd.DataFrame(rows).fillna(0)


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
