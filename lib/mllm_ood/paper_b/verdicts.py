"""Notebook 04's claims, decided by the one rule (:mod:`mllm_ood.stats.rule`) and written as ledger rows
(:mod:`mllm_ood.claims`): B-BOUND (EMID stays under its bound), B-CORR (EMID correlates with its bound, against
paper B's published r) and B-JUDGE (EMI tracks the judge).

- **B-CORR**: our Pearson r (interval: the crossed rows x columns bootstrap) against the published r of the
  same grid (and, for the LLaVA answers, the same model) by :func:`mllm_ood.stats.correlation_vs_published`.
  On the LLaVA answers (text only) the estimand is EMID vs the *text-side sum*, not the bound.
  *Not testable* where EMID does not vary across scenarios by more than its own noise
  (:func:`mllm_ood.paper_b.emid.reliability` below :data:`MIN_RELIABILITY`) *and* the correlation's interval
  reaches 0: the grid could not have shown a relation. Noise in EMID only weakens a correlation, so one whose
  interval excludes 0 despite the noise stands and is decided by the rule (likewise for B-JUDGE).
- **B-BOUND**: each shifted scenario's EMID interval against its bound (the theorem says every scenario):
  *supported* when every interval lies at or below its bound, *contradicted* when any lies wholly above,
  *inconclusive* otherwise; the share shown (with a Clopper-Pearson interval) and how loose the bound is
  (median bound / EMID) are reported beside it -- a bound hundreds of times EMID holds without telling much.
- **B-JUDGE**: Pearson r of EMI and the judge's mean score over all scenarios against :data:`JUDGE_R`
  (paper B gives no number to compare with): *supported* above it, *contradicted* wholly below it.

No claim here has an exact p-value (a correlation over a crossed grid has none that is valid), so no Holm
correction applies; the rule text of every row says what decided it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..claims import ledger_row
from ..mllm import in_words
from ..stats import (CONTRADICTED, DELTA_R, INCONCLUSIVE, MARGIN, NOT_TESTABLE, SUPPORTED, correlation_vs_published,
                     decide, rule_text)
from .emid import reliability
from .grids import llava_bench

NOTEBOOK = "04"
# EMID must vary across scenarios more than its noise: at least half its spread must be signal.
MIN_RELIABILITY = 0.5
# The judge must vary across scenarios by at least this much (shifts that degrade the model).
MIN_JUDGE_RANGE = 2 * MARGIN
# EMI "tracks" the judge when their correlation's interval clears this r (no published value exists).
JUDGE_R = DELTA_R
BOUND_RULE = ("each shifted scenario's 95 % EMID interval against its bound: supported when every interval lies "
              "at or below its bound, contradicted when any lies wholly above, else inconclusive")
JUDGE_RULE = f"95 % interval of Pearson r (rows x columns bootstrap) vs r = {JUDGE_R:g} (no published value)"
# the published r each digits / hub grid is compared with: (model, grid) of paper B's release, its main
# model on the same kind of grid (rotation is a synthetic shift)
PUBLISHED_FOR_GRID = {"synthetic": ("llava-v1.5-13b", "synthetic"), "rotated": ("llava-v1.5-13b", "synthetic"),
                      "natural": ("llava-v1.5-13b", "natural")}


def published_r(model: str, grid: str) -> dict:
    """Paper B's released Pearson r of EMID vs its bound for ``model`` on ``grid``, with its scenario count
    and a label naming both (e.g. 'LLaVA-1.5-13B synthetic r = 0.58 over 34 scenarios')."""
    p = llava_bench.published_correlation(model, grid)
    return {"r": p["pearson_r"], "n": p["n_targets"],
            "label": f"{llava_bench.MODEL_LABELS[model]} {grid} r = {p['pearson_r']:.2f} over {p['n_targets']} scenarios"}


def versus_published(r: float, low: float, high: float, model: str, grid: str) -> dict:
    """:func:`correlation_vs_published` against paper B's r for (model, grid), with the published value named."""
    pub = published_r(model, grid)
    return {**correlation_vs_published(r, low, high, pub["r"], pub["n"]), "published_r": pub["r"],
            "n_published": pub["n"], "published": pub["label"]}


def _difference_text(v: dict) -> str:
    if math.isnan(v["difference"]):
        return f"vs published {v['published']}"
    limit = ("" if v.get("supportable", True) else f"; the published r's own interval [{v['published_low']:.2f}, "
             f"{v['published_high']:.2f}] is wider than ±{DELTA_R:g}, so agreement cannot be shown, only a difference")
    return (f"r - published = {v['difference']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}] (published "
            f"{v['published']}){limit}")


def bench_table(corr: pd.DataFrame, models, specs) -> pd.DataFrame:
    """Part 1 against paper B's published r, one row per (model, grid, encoder): our EMID vs text-side sum r
    with its crossed interval, the published r and scenario count, the MOVER interval of the difference and
    the outcome. The estimand differs from paper B's (text-side sum, not the bound): the column says so."""
    rows = []
    sel = corr[(corr["resampling"] == "rows x columns") & (corr["pair"] == "EMID vs text-side sum")
               & (corr["method"] == "pearson")]
    for _, c in sel.iterrows():
        if c["model"] not in models or c["encoder"] not in specs:
            continue
        v = versus_published(c["r"], c["low"], c["high"], c["model"], c["grid"])
        rows.append({"model": llava_bench.MODEL_LABELS[c["model"]], "grid": c["grid"], "encoder": c["encoder"],
                     "estimand": "EMID vs text-side sum (NOT the bound: image term unknown)", "n": c["n"],
                     "r": c["r"], "low": c["low"], "high": c["high"], "published r": v["published_r"],
                     "n_published": v["n_published"], "difference": v["difference"], "diff_low": v["low"],
                     "diff_high": v["high"], "published_low": v["published_low"],
                     "published_high": v["published_high"], "supportable": v["supportable"], "outcome": v["outcome"]})
    return pd.DataFrame(rows)


def bench_rows(table: pd.DataFrame, data: str) -> list[dict]:
    """Ledger rows of part 1 (the LLaVA answers, text only): B-CORR per model, grid and encoder from
    :func:`bench_table`; B-BOUND and B-JUDGE not testable (no images, no judge scores in the files)."""
    rows = []
    for _, t in table.iterrows():
        v = {"difference": t["difference"], "low": t["diff_low"], "high": t["diff_high"],
             "published_low": t["published_low"], "published_high": t["published_high"],
             "supportable": t["supportable"], "published": f"{t['model']} {t['grid']} r = {t['published r']:.2f} over {t['n_published']} scenarios"}
        rows.append(ledger_row(
            "B-CORR", notebook=NOTEBOOK, scope=f"{t['model']}, {t['grid']} grid, {t['encoder']} (text only)",
            estimand="Pearson r of EMID vs the TEXT-SIDE SUM sqrt(JSt) + JSpy^1/4 + JSqy^1/4: a different estimand "
                     "from paper B's bound (the image term is unknown without images)",
            model=t["model"], data=data, estimate=t["r"], low=t["low"], high=t["high"], unit="r", n=int(t["n"]),
            rule=rule_text("correlation"), outcome=t["outcome"], reason=_difference_text(v),
            evidence="04_llava_emid_vs_text_side"))
    for cid, why in (("B-BOUND", "no images in the files: the image term of the bound is unknown, so the bound is"),
                     ("B-JUDGE", "the files hold no judge scores")):
        rows.append(ledger_row(cid, notebook=NOTEBOOK, scope="LLaVA-1.5/1.6-13B answers (part 1, text only)",
                               estimand="-", model="LLaVA-1.5-13B, LLaVA-1.6-Vicuna-13B", data=data,
                               rule="-", outcome=NOT_TESTABLE,
                               reason=why + (" unknown" if cid == "B-BOUND" else "")))
    return rows


def bound_share(table: pd.DataFrame, column: str = "jsd_sum", level: float = 0.95) -> dict:
    """Per shifted scenario, EMID's interval against its bound ``column``: *shown* when the whole interval
    lies at or below the bound, *violated* when it lies wholly above. The estimate is the share shown (with
    its Clopper-Pearson interval over scenarios, descriptive); the outcome: *contradicted* if any scenario is
    violated, *supported* if every scenario is shown (an intersection-union test: each inequality at the
    interval's level), *inconclusive* otherwise (see the module docstring)."""
    t = table[table["emid"].notna() & table[column].notna()]
    n = len(t)
    if not n:
        return {"n": 0, "k": 0, "share": np.nan, "low": np.nan, "high": np.nan, "violations": 0,
                "outcome": NOT_TESTABLE}
    high = t["emid_high"] if "emid_high" in t else t["emid"]
    low = t["emid_low"] if "emid_low" in t else t["emid"]
    k, violations = int((high <= t[column]).sum()), int((low > t[column]).sum())
    ci = stats.binomtest(k, n).proportion_ci(level, method="exact")
    outcome = CONTRADICTED if violations else SUPPORTED if k == n else INCONCLUSIVE
    return {"n": n, "k": k, "share": k / n, "low": float(ci.low), "high": float(ci.high), "violations": violations,
            "outcome": outcome}


def testability(table: pd.DataFrame, level: float = 0.95) -> dict:
    """Whether a grid can decide paper B's claims: EMID's and EMI's reliability across scenarios
    (:func:`mllm_ood.paper_b.emid.reliability`) and the judge's range; ``emid_reason`` / ``judge_reason``
    are empty when testable, else say why with the numbers."""
    rel = reliability(table, "emid", level)
    rel_emi = reliability(table, "emi", level)
    judge = table["judge"].dropna() if "judge" in table else pd.Series(dtype=float)
    span = float(judge.max() - judge.min()) if len(judge) else np.nan
    emid_reason = ""
    if not rel["reliability"] >= MIN_RELIABILITY:
        emid_reason = (f"EMID's noise (SD {rel['noise_sd']:.4f} nats per scenario) is as large as its spread across "
                       f"the {rel['n']} scenarios (SD {rel['sd_between']:.4f}): reliability "
                       f"{rel['reliability']:.2f} < {MIN_RELIABILITY}; "
                       + (f"about {rel['n_needed_factor']:.1f}x the items per cell would resolve it"
                          if np.isfinite(rel["n_needed_factor"]) else "no spread beyond noise at all"))
    judge_reason = ""
    if not span >= MIN_JUDGE_RANGE:
        judge_reason = f"the judge varies by {span:.2f} across scenarios (< {MIN_JUDGE_RANGE:g}): the shifts do not degrade the model"
    elif not rel_emi["reliability"] >= MIN_RELIABILITY:
        judge_reason = (f"EMI's noise (SD {rel_emi['noise_sd']:.4f}) is as large as its spread across scenarios "
                        f"(SD {rel_emi['sd_between']:.4f})")
    return {"reliability": rel["reliability"], "emid_sd": rel["sd_between"], "emid_noise_sd": rel["noise_sd"],
            "n_needed_factor": rel["n_needed_factor"], "emi_reliability": rel_emi["reliability"],
            "judge_range": span, "emid_reason": emid_reason, "judge_reason": judge_reason}


def grid_rows(tables: dict[str, pd.DataFrame], summary: pd.DataFrame, *, model: str, data: str,
              level: float = 0.95) -> list[dict]:
    """Ledger rows of grids with images (the digits grids, paper B's hub sets): per grid B-BOUND
    (:func:`bound_share`), B-CORR (EMID vs the JSD bound against paper B's published r for the same kind of
    grid, :data:`PUBLISHED_FOR_GRID`) and B-JUDGE (EMI vs the judge), each not testable where
    :func:`testability` says the grid cannot decide it."""
    rows = []
    for grid, t in tables.items():
        ood, test = t[~t["is_id"]], testability(t, level)
        b = bound_share(ood, level=level)
        ratio = (ood["jsd_sum"] / ood["emid"])[ood["emid"] > 0].median()
        rows.append(ledger_row(
            "B-BOUND", notebook=NOTEBOOK, scope=f"{grid} grid", model=model, data=data,
            estimand="share of shifted scenarios with EMID <= the JSD bound sqrt(JSv) + sqrt(JSt) + JSpy^1/4 + JSqy^1/4",
            estimate=b["share"], low=b["low"], high=b["high"], unit="share", n=b["n"], rule=BOUND_RULE,
            outcome=b["outcome"], evidence="04_emid_vs_bound",
            reason=f"{b['k']} of {b['n']} EMID intervals wholly at or below the bound, {b['violations']} wholly above; median bound / "
                   f"EMID {ratio:.0f}x where EMID > 0"))
        pick = lambda pair: summary[(summary["grid"] == grid) & (summary["pair"] == pair)  # noqa: E731
                                    & (summary["method"] == "pearson")]
        c = pick("EMID vs JSD bound")
        if len(c):
            c = c.iloc[0]
            pub = PUBLISHED_FOR_GRID.get(grid)
            if pub is None:
                v = {"outcome": NOT_TESTABLE, "difference": np.nan, "published": "none for this grid"}
            else:
                v = versus_published(c["r"], c["low"], c["high"], *pub)
            outcome, reason = v["outcome"], _difference_text(v)
            if test["emid_reason"] and not c["low"] > 0:
                outcome, reason = NOT_TESTABLE, f"{test['emid_reason']} ({reason})"
            rows.append(ledger_row(
                "B-CORR", notebook=NOTEBOOK, scope=f"{grid} grid", model=model, data=data,
                estimand="Pearson r of EMID vs the JSD bound over shifted scenarios (crossed bootstrap)",
                estimate=c["r"], low=c["low"], high=c["high"], unit="r", n=int(c["n"]), rule=rule_text("correlation"),
                outcome=outcome, reason=reason, evidence="04_emid_vs_bound"))
        j = pick("EMI vs judge score")
        if len(j):
            j = j.iloc[0]
            outcome = decide(j["r"], j["low"], j["high"], margin=JUDGE_R)
            reason = ""
            if test["judge_reason"] and not j["low"] > 0:
                outcome, reason = NOT_TESTABLE, test["judge_reason"]
            rows.append(ledger_row(
                "B-JUDGE", notebook=NOTEBOOK, scope=f"{grid} grid", model=model, data=data,
                estimand="Pearson r of EMI vs the judge's mean score over all scenarios (crossed bootstrap)",
                estimate=j["r"], low=j["low"], high=j["high"], unit="r", n=int(j["n"]), rule=JUDGE_RULE,
                outcome=outcome, reason=reason, evidence="04_emi_vs_judge"))
    return rows


def model_words(model) -> str:
    """The model in words with its fingerprint, for a ledger row (:func:`mllm_ood.mllm.in_words`)."""
    return f"{in_words(model)} ({model.fingerprint})"


def testability_table(tables: dict[str, pd.DataFrame], level: float = 0.95) -> pd.DataFrame:
    """:func:`testability` per grid, one row each (for the notebook)."""
    return pd.DataFrame([{"grid": g, **testability(t, level)} for g, t in tables.items()])


def testability_lines(testable: pd.DataFrame) -> list[str]:
    """One line per grid of :func:`testability_table`: 'NOT TESTABLE: <why>' or that it can decide."""
    lines = []
    for _, r in testable.iterrows():
        why = "; ".join(x for x in (r["emid_reason"], r["judge_reason"]) if x)
        lines.append(f"{r['grid']}: " + (f"NOT TESTABLE: {why}" if why else "EMID and the judge vary beyond noise: testable"))
    return lines
