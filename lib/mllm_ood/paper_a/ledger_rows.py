"""Paper A's zero-shot claims as ledger rows (notebook 01), and the steps every paper-A notebook shares on
the way from per-domain numbers to ``figures/NN_claims.csv``: one row per claim, domain and scoring mode
(merged into one row where both modes give the same numbers), answer outcomes and untestable domains
gathered into one row per claim, mode and outcome, the family decided by :func:`mllm_ood.stats.decide_family`
(Holm within the notebook).

- **A-ZS1** (accuracy drops under shift), per OOD domain of a dataset with an ID reference: the estimand is
  ID accuracy minus the domain's accuracy, paired by source image where the domain's images are shifted
  copies of the reference's (else two independent samples); *supported* when its interval lies above the
  margin (a drop of more than 5 points) and the exact one-sided p survives Holm.
- **A-ZS2** (near chance on specialised data), per domain of the specialised datasets: the estimand is the
  accuracy minus the best accuracy a guess that ignores the image reaches on the sample (the larger of
  1 / classes and the share of the sample's most frequent class); the paper claims *no* effect beyond the
  margin, so *supported* when the interval lies below +5 points, *contradicted* when it lies above them
  (with the exact binomial p surviving Holm).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..claims import ledger_row
from ..stats import MARGIN, NOT_TESTABLE, bootstrap_ci, decide_family, difference_interval, rule_text
from .evaluation import pair_with_reference
from ..stats import exact_p
from .outcomes import outcome_reason

FIXED = "outcome"
# What paper A calls specialised data: shift families of the embedded world, and hub datasets by name.
SPECIALISED_FAMILIES = ("molecular", "medical")
SPECIALISED_HUB = ("camelyon17", "ham10000", "chest", "xcov", "drugood")


def specialised(infos: dict) -> list[str]:
    """The datasets of ``infos`` ({name: DatasetInfo}) that A-ZS2 is about: medical or molecular images."""
    return [n for n, i in infos.items()
            if i.family in SPECIALISED_FAMILIES or any(h in n.lower() for h in SPECIALISED_HUB)]  # a row whose outcome is set before the rule (answer outcome, not testable)


def merge_modes(rows: list[dict]) -> list[dict]:
    """Rows (dicts with ``claim_id``, ``where``, ``mode`` and the numbers) with one row per (claim, where)
    where every mode gives the same numbers and outcome: its mode becomes 'both modes'."""
    same = ("estimate", "low", "high", "p", "outcome", "n")
    out, groups = [], {}
    for r in rows:
        groups.setdefault((r["claim_id"], r["where"]), []).append(r)
    for group in groups.values():
        first = group[0]
        alike = len(group) > 1 and all(
            all((pd.isna(r.get(k)) and pd.isna(first.get(k))) or r.get(k) == first.get(k) for k in same)
            for r in group[1:])
        out += [{**first, "mode": "both modes"}] if alike else group
    return out


def gather_apart(rows: list[dict]) -> list[dict]:
    """Rows with a fixed outcome of a ``kind`` (an answer outcome, or not testable for one reason) gathered into one row per (claim, mode,
    outcome, reason kind): the domains listed in its scope; rows to be decided by the rule pass unchanged."""
    decided = [r for r in rows if not (r.get(FIXED) and r.get("kind"))]
    groups = {}
    for r in rows:
        if r.get(FIXED) and r.get("kind"):
            groups.setdefault((r["claim_id"], r["mode"], r[FIXED], r.get("kind", "")), []).append(r)
    for (_, _, outcome, _), group in groups.items():
        where = ", ".join(r["where"] for r in group)
        reasons = list(dict.fromkeys(r["reason"] for r in group))
        reason = reasons[0] if len(reasons) == 1 else f"{group[0]['where']}: {reasons[0]}; the others alike"
        decided.append({**group[0], "where": where, "reason": reason, "n": len(group), "unit_n": "domains",
                        "estimate": math.nan, "low": math.nan, "high": math.nan, "p": math.nan})
    return decided


def to_ledger(rows: list[dict], notebook: str, model: str, margin: float = MARGIN) -> pd.DataFrame:
    """The family of one notebook decided (Holm: :func:`mllm_ood.stats.decide_family`) and written as
    :func:`mllm_ood.claims.ledger_row` rows (a table in the ledger's columns; ``model``: in words and hash)."""
    table = pd.DataFrame(rows)
    table["margin"] = margin
    table["outcome"] = table[FIXED].where(table[FIXED].astype(bool), None) if FIXED in table else None
    order = {c: k for k, c in enumerate(dict.fromkeys(table["claim_id"]))}
    decided = decide_family(table).sort_values("claim_id", key=lambda c: c.map(order), kind="stable")
    out = []
    for _, r in decided.iterrows():
        mode = "" if r["mode"] in ("", None) else f", {r['mode']}"
        kind = "no effect" if not r["claims_effect"] else "effect"
        out.append(ledger_row(r["claim_id"], notebook=notebook, scope=f"{r['where']}{mode}", estimand=r["estimand"],
                              model=model, data=r["data"], outcome=r["outcome"], rule=rule_text(kind, margin),
                              estimate=r["estimate"], low=r["low"], high=r["high"],
                              unit="points" if not pd.isna(r["estimate"]) else "", n=int(r["n"]),
                              p=r["p"], p_holm=r["p_holm"], reason=r.get("reason", "") or "",
                              evidence=r["evidence"]))
    return pd.DataFrame(out)


def _row(claim_id, where, mode, estimand, data, evidence, *, direction=1, claims_effect=True, **numbers) -> dict:
    return {"claim_id": claim_id, "where": where, "mode": mode, "estimand": estimand, "data": data,
            "evidence": evidence, "direction": direction, "claims_effect": claims_effect, FIXED: "", "reason": "",
            "estimate": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "n": 0, **numbers}


ZS1_ESTIMAND = "ID accuracy - OOD accuracy (points), paired by source image where the domain is shifted copies"
ZS2_ESTIMAND = "accuracy - best image-blind guess, max(1 / classes, majority share of the sample) (points)"


def zero_shot_rows(results: pd.DataFrame, answers: pd.DataFrame, id_rows: dict, id_cells, specialised,
                   *, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """The rows of A-ZS1 and A-ZS2 (before :func:`merge_modes`, :func:`gather_apart`, :func:`to_ledger`).

    results: per-sample zero-shot answers; answers: their :func:`mllm_ood.paper_a.outcomes.answer_table`
    by (mode, dataset, domain); id_rows: {dataset: its ID reference's rows}
    (:func:`mllm_ood.paper_a.zero_shot.id_reference`); id_cells: the (dataset, domain) cells that are in
    distribution (not tested); specialised: the datasets A-ZS2 is about (e.g. the molecule sets)."""
    ids = {(str(d), str(dom)) for d, dom in id_cells}
    rows = []
    for (mode, name, dom), g in results.groupby(["mode", "dataset", "domain"], sort=False):
        if (str(name), str(dom)) in ids:
            continue
        a = answers[(answers["mode"] == mode) & (answers["dataset"] == name) & (answers["domain"] == dom)].iloc[0]
        where, data, cell = f"{name}/{dom}", f"{name}/{dom}: {len(g)} images", []
        if name in id_rows:
            ref = id_rows[name][id_rows[name]["mode"] == mode]
            pairs = pair_with_reference(g, ref)
            kind = "paired" if pairs is not None else "independent"
            a_ref, a_ood = (pairs["correct_ref"], pairs["correct"]) if pairs is not None else (ref["correct"], g["correct"])
            d, lo, hi = difference_interval(kind, a_ref, a_ood, n_boot, seed)
            cell.append(_row("A-ZS1", where, mode, ZS1_ESTIMAND, f"{data} vs its ID reference ({kind})",
                             "01_id_vs_ood_gap", estimate=d, low=lo, high=hi, n=len(g),
                             p=exact_p(a_ref, a_ood, paired=pairs is not None, seed=seed)))
        if name in specialised:
            chance = 1 / a["n_classes"]
            guess = max(chance, float(g["label"].value_counts(normalize=True).max()))
            lo, hi = bootstrap_ci(g["correct"].to_numpy(float), n_boot=n_boot, seed=seed)
            k = int(g["correct"].sum())
            cell.append(_row("A-ZS2", where, mode, ZS2_ESTIMAND, data, "01_zero_shot_accuracy_heatmap",
                             claims_effect=False, estimate=a["accuracy"] - guess, low=lo - guess, high=hi - guess,
                             n=len(g), p=float(stats.binomtest(k, len(g), guess, alternative="greater").pvalue)))
        if a["outcome"]:  # the accuracy measures something else: the answer outcome is the row's outcome
            for r in cell:
                r.update({FIXED: a["outcome"], "reason": outcome_reason(a), "kind": a["outcome"],
                          "evidence": "01_answer_outcomes"})
        rows += cell
    return rows


def untested_rows(claim_id: str, where_modes, reason: str, estimand: str, evidence: str) -> list[dict]:
    """*Not testable* rows for (where, mode) pairs a claim cannot be read on, all for the same ``reason``."""
    return [_row(claim_id, where, mode, estimand, where, evidence, **{FIXED: NOT_TESTABLE, "reason": reason,
                                                                      "kind": reason})
            for where, mode in where_modes]


H_ESTIMANDS = {"A-H1": "the deciding unconfounded richer prompt: {what}, accuracy on the same images (points)",
               "A-H2": "{what}: in-domain probe on the frozen vision features vs the model (points)",
               "A-H3": "the binding one of vision probe, LM answer-state probe and ID-trained vision probe, each "
                       "- zero-shot: {what} (points)"}


def hypothesis_rows(verdicts: pd.DataFrame) -> list[dict]:
    """The rows of A-H1, A-H2, A-H3 from :func:`mllm_ood.paper_a.hypotheses.domain_verdicts` (one per claim,
    domain and mode; answer outcomes and domains without a gap carry their outcome as a ``kind`` and are
    gathered apart by :func:`gather_apart`)."""
    rows = []
    for _, v in verdicts.iterrows():
        where = f"{v['dataset']}/{v['domain']}"
        data = f"{where}: {int(v['n'])} zero-shot images, probes on the domain's test half"
        for c in ("A-H1", "A-H2", "A-H3"):
            what = v[f"{c} what"] or "n/a"
            r = _row(c, where, v["mode"], H_ESTIMANDS[c].format(what=what), data, "02_hypotheses_verdicts",
                     claims_effect=c != "A-H1", estimate=v[f"{c} estimate"], low=v[f"{c} low"], high=v[f"{c} high"],
                     p=v[f"{c} p"], n=int(v["n"]), reason=v[f"{c} reason"])
            if v[f"{c} fixed"]:
                r[FIXED] = v[c]
                if np.isnan(r["estimate"]):  # an answer outcome or no gap: gathered apart, by its reason
                    r["kind"] = v["answer_outcome"] or v[f"{c} reason"]
                    r["reason"] = v["answer_reason"] or v[f"{c} reason"]
            rows.append(r)
    return rows


def ledger_for(rows: list[dict], notebook: str, model: str, margin: float = MARGIN) -> pd.DataFrame:
    """:func:`merge_modes`, then :func:`gather_apart`, then :func:`to_ledger`."""
    return to_ledger(gather_apart(merge_modes(rows)), notebook, model, margin)


def outcome_counts(ledger: pd.DataFrame) -> pd.DataFrame:
    """Domains per claim and outcome: a row decided by the rule counts once, a gathered row (no estimate: an
    answer outcome or not testable, its ``n`` the domains it lists) once per domain."""
    n = np.where(ledger["estimate"].isna(), ledger["n"], 1)
    return (ledger.assign(domains=n).pivot_table(index="claim_id", columns="outcome", values="domains", aggfunc="sum",
                                                  fill_value=0, sort=False))

