"""Notebook 04's claims on hand-made tables (mllm_ood.paper_b.verdicts): B-BOUND, B-CORR against the
published r (named, with its scenario count), B-JUDGE, and 'not testable' where the grid cannot decide."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mllm_ood.paper_b import verdicts
from mllm_ood.stats import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED


def _grid(emids, half_width, judge):
    n = len(emids)
    t = pd.DataFrame({"scenario": [f"s{i}" for i in range(n + 1)], "is_id": [True] + [False] * n,
                      "emi": np.r_[0.0, -np.asarray(emids)], "emid": np.r_[np.nan, emids], "judge": judge,
                      "jsd_sum": np.r_[np.nan, np.full(n, 1.0)]})
    for c in ("emi", "emid"):
        t[f"{c}_low"], t[f"{c}_high"] = t[c] - half_width, t[c] + half_width
    return t


def _summary(grid, r, low, high, n=34):
    return pd.DataFrame([{"grid": grid, "pair": p, "method": "pearson", "r": r, "low": low, "high": high, "n": n}
                         for p in ("EMID vs JSD bound", "EMI vs judge score")])


def test_bound_share_rule():
    ok = _grid(np.linspace(0, 0.2, 34), 0.01, 0.5)
    b = verdicts.bound_share(ok[~ok["is_id"]])
    assert b["outcome"] == SUPPORTED and b["k"] == 34  # every EMID interval below its bound
    close = ok.copy()
    close.loc[5, ["emid", "emid_low", "emid_high"]] = [0.95, 0.9, 1.05]  # one interval reaches over its bound
    assert verdicts.bound_share(close[~close["is_id"]])["outcome"] == INCONCLUSIVE
    bad = ok.copy()
    bad.loc[5, ["emid", "emid_low", "emid_high"]] = [1.5, 1.2, 1.8]  # one scenario wholly above its bound
    b = verdicts.bound_share(bad[~bad["is_id"]])
    assert b["outcome"] == CONTRADICTED and b["violations"] == 1 and b["k"] == 33


def test_grid_rows_name_the_published_value_and_decide():
    judge = np.r_[0.95, np.linspace(0.9, 0.2, 34)]
    tables = {"natural": _grid(np.linspace(0, 0.2, 34), 0.01, judge)}
    rows = {r["claim_id"]: r for r in verdicts.grid_rows(tables, _summary("natural", 0.88, 0.85, 0.9),
                                                         model="m", data="d")}
    assert rows["B-CORR"]["outcome"] == SUPPORTED
    assert "LLaVA-1.5-13B natural r = 0.88 over 27 scenarios" in rows["B-CORR"]["reason"]
    # the rotated grid is compared with paper B's synthetic r; its published interval alone (34 scenarios)
    # is wider than +-0.2, so agreement there can at best be inconclusive
    tables = {"rotated": tables["natural"]}
    rot = {r["claim_id"]: r for r in verdicts.grid_rows(tables, _summary("rotated", 0.58, 0.55, 0.6),
                                                        model="m", data="d")}
    assert "LLaVA-1.5-13B synthetic r = 0.58 over 34 scenarios" in rot["B-CORR"]["reason"]
    assert rot["B-CORR"]["outcome"] == INCONCLUSIVE
    assert rows["B-JUDGE"]["outcome"] == SUPPORTED and rows["B-BOUND"]["unit"] == "share"
    far = {r["claim_id"]: r for r in verdicts.grid_rows(tables, _summary("rotated", -0.5, -0.7, -0.3),
                                                        model="m", data="d")}
    assert far["B-CORR"]["outcome"] == CONTRADICTED and far["B-JUDGE"]["outcome"] == CONTRADICTED


def test_noisy_emid_and_a_flat_judge_are_not_testable():
    tables = {"synthetic": _grid(np.linspace(-0.005, 0.005, 34), 0.02, 0.9)}
    rows = {r["claim_id"]: r for r in verdicts.grid_rows(tables, _summary("synthetic", 0.2, -0.3, 0.72),
                                                         model="m", data="d")}
    assert rows["B-CORR"]["outcome"] == NOT_TESTABLE and "reliability 0.00" in rows["B-CORR"]["reason"]
    assert rows["B-JUDGE"]["outcome"] == NOT_TESTABLE and "do not degrade" in rows["B-JUDGE"]["reason"]


def test_a_clear_correlation_despite_noisy_emid_is_decided_not_dismissed():
    """Noise in EMID only weakens a correlation: one whose interval excludes 0 is evidence, decided by the rule."""
    judge = np.r_[0.95, np.linspace(0.9, 0.2, 34)]
    tables = {"natural": _grid(np.linspace(-0.005, 0.005, 34), 0.02, judge)}
    rows = {r["claim_id"]: r for r in verdicts.grid_rows(tables, _summary("natural", 0.88, 0.85, 0.9),
                                                         model="m", data="d")}
    assert rows["B-CORR"]["outcome"] == SUPPORTED and rows["B-JUDGE"]["outcome"] == SUPPORTED


def test_bench_rows_say_the_estimand_is_the_text_side_sum():
    corr = pd.DataFrame([{"model": "llava-v1.5-13b", "encoder": "e5", "grid": "natural", "pair":
                          "EMID vs text-side sum", "method": "pearson", "resampling": "rows x columns", "n": 13,
                          "r": 0.88, "low": 0.85, "high": 0.9}])
    table = verdicts.bench_table(corr, ["llava-v1.5-13b"], ["e5"])
    assert table.loc[0, "n_published"] == 27 and round(table.loc[0, "published r"], 2) == 0.88
    rows = verdicts.bench_rows(table, "d")
    corr_row = rows[0]
    assert corr_row["claim_id"] == "B-CORR" and "TEXT-SIDE SUM" in corr_row["estimand"]
    assert corr_row["outcome"] == table.loc[0, "outcome"] == SUPPORTED
    assert {r["claim_id"]: r["outcome"] for r in rows[1:]} == {"B-BOUND": NOT_TESTABLE, "B-JUDGE": NOT_TESTABLE}
