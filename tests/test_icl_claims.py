"""Notebook 03's claims (mllm_ood.paper_a.icl.claims, .readings): every claim row decided by the one rule
(margin 5 points, exact sign-flip p, Holm over the notebook's family), on hand-made per-query tables —
the reviewer cases of issue 23 included: +6/-1 of 120 queries, a wide 60-degree gain, 100 % vs 100 %,
label shift at a share where the minority class is missing."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mllm_ood.stats import sign_flip_p

from mllm_ood.claims import prose, read_claims, write_claims
from mllm_ood.paper_a.icl import claims, readings
from mllm_ood.stats import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED, decide_family


COLUMNS = ["task", "query", "seed", "correct", "mode", "n_way", "shots", "source", "level", "query_colour",
           "demo_labels", "label", "pred", "majority", "pred_majority"]


def _rows(correct, *, task="t", mode="reassigned", n_way=2, shots=0, source="none", level=float("nan"),
          query_colour="", seeds=(0,), demo_labels="", majority=-1, labels=None, preds=None):
    """One condition's per-query results: ``correct[q]`` per query (the same for every seed)."""
    out = []
    for seed in seeds:
        for q, ok in enumerate(correct):
            label = labels[q] if labels is not None else q % n_way
            pred = preds[q] if preds is not None else (label if ok else (label + 1) % n_way)
            out.append({"task": task, "query": q, "seed": seed, "correct": bool(ok), "mode": mode, "n_way": n_way,
                        "shots": shots, "source": source, "level": level, "query_colour": query_colour,
                        "demo_labels": demo_labels if isinstance(demo_labels, str) else demo_labels[q],
                        "label": label, "pred": pred, "majority": majority,
                        "pred_majority": bool(majority >= 0 and pred == majority)})
    return pd.DataFrame(out, columns=COLUMNS)


def _changed(n, gains, losses, base=True):
    """Two conditions over ``n`` queries that differ on ``gains`` (a right, b wrong) and ``losses`` queries."""
    a = [base] * n
    b = [base] * n
    for q in range(gains):
        a[q], b[q] = True, False
    for q in range(gains, gains + losses):
        a[q], b[q] = False, True
    return a, b


def _decide(a_rows, b_rows, reference="b"):
    row = claims.claim_row("A-ICL4", "s", "e", a_rows, b_rows, reference=reference)
    return decide_family(pd.DataFrame([row], columns=claims.FAMILY_COLUMNS)).iloc[0]


def test_six_up_one_down_of_120_is_not_supported():
    a, b = _changed(120, 6, 1)
    r = _decide(_rows(a, level=0.5), _rows(b, level=1.0), reference="a")
    assert (r["gains"], r["losses"], r["n"]) == (6, 1, 120)
    assert r["p"] == pytest.approx(8 / 128)  # exact sign test: P(X >= 6 | Bin(7, 1/2))
    assert r["low"] > 0  # the old rule (interval excludes 0) called this reproduced
    assert r["outcome"] != SUPPORTED
    assert r["outcome"] == INCONCLUSIVE


def test_wide_sixty_degree_gain_is_inconclusive():
    a, b = _changed(60, 14, 6, base=False)
    r = _decide(_rows(a, shots=8, source="in_domain"), _rows(b))
    assert r["low"] < 0.05 < r["estimate"] < r["high"]
    assert r["p"] > 0.05
    assert r["outcome"] == INCONCLUSIVE


def test_clear_gain_is_supported_and_clear_null_contradicted():
    a, b = _changed(60, 40, 0, base=False)
    assert _decide(_rows(a, shots=8, source="in_domain"), _rows(b))["outcome"] == SUPPORTED
    a, b = _changed(200, 2, 2, base=False)
    assert _decide(_rows(a, shots=8, source="in_domain"), _rows(b))["outcome"] == CONTRADICTED


def _shots(task, n_way, mode, zero, eight, shifted=None):
    parts = [_rows(zero, task=task, n_way=n_way, mode=mode),
             _rows(eight, task=task, n_way=n_way, mode=mode, shots=8, source="in_domain")]
    if shifted is not None:
        parts.append(_rows(shifted, task=task, n_way=n_way, mode=mode, shots=8, source="shifted"))
    return pd.concat(parts, ignore_index=True)


EMPTY = _rows([]).iloc[:0]


def test_hundred_vs_hundred_is_not_testable_and_leaves_the_family():
    shots = pd.concat([_shots("ceiling", 2, "fixed", [True] * 30, [True] * 30, [True] * 30),
                       _shots("rising", 2, "fixed", [False] * 30, [True] * 30, [True] * 30)], ignore_index=True)
    fam = claims.claim_family(shots, EMPTY, EMPTY, ["fixed"], 8, [0.5, 1.0])
    ceiling = fam[(fam["level"] == "task") & (fam["scope"].str.endswith("ceiling"))].iloc[0]
    assert ceiling["outcome"] == NOT_TESTABLE and "ceiling" in ceiling["reason"]
    assert math.isnan(ceiling["p_holm"])
    rising = fam[(fam["level"] == "task") & (fam["scope"].str.endswith("rising"))].iloc[0]
    assert rising["outcome"] == SUPPORTED


def test_domain_shift_needs_demonstrations_that_can_help():
    shots = _shots("c", 2, "fixed", [True] * 30, [True] * 30, [True] * 30)
    fam = claims.claim_family(shots, EMPTY, EMPTY, ["fixed"], 8, [0.5, 1.0])
    icl2 = fam[fam["claim_id"] == "A-ICL2"].iloc[0]
    assert icl2["outcome"] == NOT_TESTABLE and "no demonstration can help" in icl2["reason"]


def test_holm_over_the_family_can_withhold_support():
    # six queries that all gain: p = 1/64 alone (supported); eight such rows: Holm gives 8/64 > 0.05
    parts = [_shots(f"t{n}", n, mode, [False] * 6, [True] * 6) for n in (2, 3) for mode in ("fixed", "reassigned")]
    fam = claims.claim_family(pd.concat(parts, ignore_index=True), EMPTY, EMPTY, ["fixed", "reassigned"], 8, [])
    assert len(fam) == 8 and (fam["low"] > 0.05).all()
    assert fam["p"].max() == pytest.approx(1 / 64)
    assert list(fam["p_holm"]) == pytest.approx([8 / 64] * 8)
    assert (fam["outcome"] == INCONCLUSIVE).all()
    alone = claims.claim_family(parts[0], EMPTY, EMPTY, ["fixed"], 8, [])
    assert (alone["outcome"] == SUPPORTED).all()


def _label_shift(level_correct: dict, *, shots=8, n=40):
    parts = []
    for level, correct in level_correct.items():
        m = round(level * shots)
        demo = ";".join(["0"] * m + ["1"] * (shots - m))
        parts.append(_rows(correct, task="ls", shots=shots, source="in_domain", level=level, demo_labels=demo,
                           majority=0, labels=[q % 2 for q in range(n)]))
    return pd.concat(parts, ignore_index=True)


def test_label_shift_compares_balanced_with_the_most_skewed_share_that_shows_every_class():
    n = 40
    flat = [True] * n
    minority_lost = [q % 2 == 0 for q in range(n)]  # at 1.0 every minority-class query is wrong
    ls = _label_shift({0.5: flat, 0.75: flat, 0.875: flat, 1.0: minority_lost}, n=n)
    assert claims.label_shift_levels(ls) == (0.5, 0.875, [1.0])
    fam = claims.claim_family(EMPTY, ls, EMPTY, ["reassigned"], 8, [])
    row = fam[fam["claim_id"] == "A-ICL3"].iloc[0]
    assert "0.875" in row["estimand"] and row["estimate"] == 0
    assert row["outcome"] == CONTRADICTED  # 0.5 vs 1.0 would have given +50 points
    missing = claims.missing_class_table(ls, ["reassigned"], n_boot=50)
    assert list(missing["majority share"]) == [0.5, 1.0]
    assert missing.iloc[1]["minority-class queries"].startswith("0%")


def test_label_shift_without_a_skewed_share_that_shows_every_class_is_not_testable():
    ls = _label_shift({0.5: [True] * 20, 1.0: [False] * 20}, shots=2, n=20)
    fam = claims.claim_family(EMPTY, ls, EMPTY, ["reassigned"], 8, [])
    row = fam.iloc[0]
    assert row["outcome"] == NOT_TESTABLE and "missing class" in row["reason"]


def test_copy_rate_of_a_model_that_copies_the_demonstration():
    n = 20
    demo = [str(q // 2 % 2) for q in range(n)]
    labels = [q % 2 for q in range(n)]
    preds = [int(d) for d in demo]
    res = _rows([p == y for p, y in zip(preds, labels)], shots=1, source="in_domain", demo_labels=demo,
                labels=labels, preds=preds, mode="fixed")
    c = readings.copy_rate(res, ["fixed"]).iloc[0]
    assert c["copies"] == 1 and c["acc_same"] == 1 and c["acc_other"] == 0 and c["independent"] == 0.5


def test_colour_gap_is_flipped_minus_aligned_on_the_same_queries():
    n = 30
    parts = [_rows([True] * n, task="p", shots=8, level=1.0, query_colour="aligned"),
             _rows([q < 10 for q in range(n)], task="p", shots=8, level=1.0, query_colour="flipped")]
    gap = readings.colour_gap(pd.concat(parts, ignore_index=True), ["reassigned"], n_boot=50)
    pooled = gap[gap["task"] == "all pairs"].iloc[0]
    assert pooled["gap"] == pytest.approx(-20 / 30) and pooled["flipped"] == pytest.approx(1 / 3)


def test_ledger_rows_are_written_and_read_back(tmp_path):
    shots = _shots("ceiling", 2, "fixed", [True] * 30, [True] * 30, [True] * 30)
    ls = _label_shift({0.5: [True] * 20, 1.0: [False] * 20}, shots=2, n=20)
    fam = claims.claim_family(shots, ls.assign(mode="fixed"), EMPTY, ["fixed"], 8, [])
    table = write_claims(claims.ledger_rows(fam, model="toy (1 parameter), abc", data="toy"), "03", tmp_path)
    back = read_claims(tmp_path / "03_claims.csv")
    assert list(back["claim_id"]) == ["A-ICL1", "A-ICL2", "A-ICL3"]
    assert set(back["outcome"]) == {NOT_TESTABLE}
    assert "ceiling" in prose(table)


def test_one_query_that_differs_has_its_exact_p():
    assert sign_flip_p([0, 0, 1]) == 0.5 and sign_flip_p([0, -1]) == 1.0
    assert sign_flip_p([1, 1, 1]) == pytest.approx(1 / 8)


def test_a_constant_answer_in_both_conditions_is_noted():
    n = 40
    labels = [q % 2 for q in range(n)]
    const = _rows([y == 0 for y in labels], labels=labels, preds=[0] * n)
    eight = _rows([y == 0 for y in labels], labels=labels, preds=[0] * n, shots=8, source="in_domain")
    row = claims.claim_row("A-ICL1", "s", "e", eight, const)
    assert row["note"].startswith("constant answer") and row["estimate"] == 0
    varied = _rows([True] * n, labels=labels, preds=labels, shots=8, source="in_domain")
    assert claims.claim_row("A-ICL1", "s", "e", varied, const)["note"] == ""
