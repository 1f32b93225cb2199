"""Paper A's zero-shot answer outcomes and the ledger rows of notebooks 01 and 02, on hand-made tables:
parse failure vs off-list answer vs constant answer, A-ZS1 (a drop beyond the margin, paired by source
image), A-ZS2 (near the image-blind guess), modes merged where they agree, answer outcomes and untestable
domains gathered apart, Holm over the family, and rows the ledger accepts."""

import math

import numpy as np
import pandas as pd
import pytest

from mllm_ood.claims import write_claims
from mllm_ood.paper_a import ledger_rows, outcomes
from mllm_ood.stats import exact_p

MOL = ["low solubility", "medium solubility", "high solubility"]
DIG = [f"c{k}" for k in range(10)]


def answers(dataset, domain, mode, correct, preds=None, replies=None, labels=None, ids=None):
    n = len(correct)
    labels = labels if labels is not None else [i % 3 for i in range(n)]
    preds = preds if preds is not None else ["x"] * n
    replies = replies if replies is not None else [f"Answer Choice: [{p}]" for p in preds]
    return pd.DataFrame({"mode": mode, "dataset": dataset, "domain": domain, "correct": correct,
                         "parsed": [p != "" for p in preds], "pred_name": preds, "reply": replies, "label": labels,
                         "id": ids if ids is not None else [f"{domain}-{i}" for i in range(n)]})


def test_off_list_name_reads_a_well_formed_reply_outside_the_list():
    assert outcomes.off_list_name("Answer Choice: [three]", MOL) == "three"
    assert outcomes.off_list_name("answer choice: high solubility", MOL) is None
    assert outcomes.off_list_name("I cannot tell", MOL) is None
    assert outcomes.off_list_name("Answer Choice: []", MOL) is None


def test_answer_table_separates_the_three_answer_outcomes():
    n = 60
    off = answers("m", "off", "generate", [False] * n, preds=[""] * n, replies=["Answer Choice: [three]"] * n)
    bad = answers("m", "bad", "generate", [False] * n, preds=[""] * n, replies=["the the the"] * n)
    const = answers("m", "const", "loglik", [i % 3 == 2 for i in range(n)], preds=["high solubility"] * n)
    fine = answers("m", "fine", "loglik", [True] * n, preds=[MOL[i % 3] for i in range(n)])
    t = outcomes.answer_table(pd.concat([off, bad, const, fine]), {"m": MOL}).set_index("domain")
    assert t.loc["off", "outcome"] == "off-list answer" and t.loc["off", "off_list"] == 1.0
    assert t.loc["off", "parse_failure"] == 0.0 and t.loc["off", "top_answer"] == "three"
    assert t.loc["bad", "outcome"] == "parse failure" and t.loc["bad", "parse_failure"] == 1.0
    assert t.loc["const", "outcome"] == "constant answer" and t.loc["const", "top_answer_share"] == 1.0
    assert t.loc["fine", "outcome"] == ""
    assert "outside the choice list" in outcomes.outcome_reason(t.loc["off"])
    with pytest.raises(Exception, match="no class names"):
        outcomes.answer_table(off, {"d": DIG})


def test_exact_p_paired_and_independent():
    a, b = np.r_[np.ones(7), np.zeros(113)], np.r_[np.zeros(6), np.ones(1), np.zeros(113)]
    # 6 items better, 0 worse (one tie at 1/1): exact sign test 1/64
    assert exact_p(a, b, paired=True) == pytest.approx(1 / 64)
    assert exact_p(np.ones(20), np.zeros(20), paired=False) < 1e-9
    assert exact_p(np.zeros(20), np.ones(20), paired=False) == pytest.approx(1.0)
    assert math.isnan(exact_p([], [1], paired=False))


def _digits(domain, correct, mode="loglik", shifted=True):
    n = len(correct)
    ids = [f"mnist-{i}" + ("-rot" if shifted else "") for i in range(n)] if domain != "mnist" else \
        [f"mnist-{i}" for i in range(n)]
    return answers("dig", domain, mode, correct, preds=[DIG[i % 10] for i in range(n)],
                   labels=[i % 10 for i in range(n)], ids=ids).assign(dataset="dig")


def test_zero_shot_rows_decide_zs1_and_zs2():
    n = 200
    ref = _digits("mnist", [True] * 190 + [False] * 10)
    drop = _digits("45", [True] * 120 + [False] * 80)
    same = _digits("15", [True] * 189 + [False] * 11)
    mol_fine = answers("m", "small", "loglik", [i % 3 == 0 for i in range(600)], preds=[MOL[(i // 3) % 3] for i in range(600)])
    mol_good = answers("m", "large", "loglik", [i < 80 for i in range(90)], preds=[MOL[i % 3] for i in range(90)])
    mol_off = answers("m", "medium", "generate", [False] * 90, preds=[""] * 90, replies=["Answer Choice: [three]"] * 90)
    res = pd.concat([ref, drop, same, mol_fine, mol_good, mol_off], ignore_index=True)
    ans = outcomes.answer_table(res, {"dig": DIG, "m": MOL})
    rows = ledger_rows.zero_shot_rows(res, ans, {"dig": ref}, [("dig", "mnist")], ["m"], n_boot=400)
    by = {(r["claim_id"], r["where"]): r for r in rows}
    assert ("A-ZS1", "dig/mnist") not in by  # the reference itself is not tested
    assert by[("A-ZS1", "dig/45")]["estimate"] == pytest.approx(0.35) and by[("A-ZS1", "dig/45")]["low"] > 0.05
    assert "paired" in by[("A-ZS1", "dig/45")]["data"]
    assert by[("A-ZS2", "m/medium")]["outcome"] == "off-list answer"
    table = ledger_rows.ledger_for(rows, "01", "embedded 1.1 M-parameter model (x@1)")
    out = table.set_index("scope")["outcome"]
    assert out["dig/45, loglik"] == "supported" and out["dig/15, loglik"] == "contradicted"
    assert out["m/small, loglik"] == "supported"  # 33 % on three balanced classes: at the guess
    assert out["m/large, loglik"] == "contradicted"  # 89 %: far above it
    assert out["m/medium, generate"] == "off-list answer"
    assert set(table["notebook"]) == {"01"} and table["p_holm"].dropna().ge(table["p"].dropna()).all()


def test_merge_modes_and_gather_apart():
    base = dict(estimand="e", data="d", evidence="f", direction=1, claims_effect=True, reason="", n=10,
                estimate=0.2, low=0.1, high=0.3, p=0.01)
    rows = [dict(base, claim_id="A-ZS1", where="a/x", mode="generate", outcome=""),
            dict(base, claim_id="A-ZS1", where="a/x", mode="loglik", outcome=""),
            dict(base, claim_id="A-ZS1", where="a/y", mode="generate", outcome=""),
            dict(base, claim_id="A-ZS1", where="a/y", mode="loglik", outcome="", estimate=0.25)]
    merged = ledger_rows.merge_modes(rows)
    assert [(r["where"], r["mode"]) for r in merged] == [("a/x", "both modes"), ("a/y", "generate"), ("a/y", "loglik")]
    apart = ledger_rows.untested_rows("A-H1", [("m/s", "loglik"), ("m/t", "loglik")], "no gap", "e", "f")
    gathered = ledger_rows.gather_apart(merged + apart)
    assert len(gathered) == 4 and gathered[-1]["where"] == "m/s, m/t" and gathered[-1]["n"] == 2


def test_holm_keeps_a_marginal_row_from_supported(tmp_path):
    base = dict(estimand="e", data="d", evidence="f", direction=1, claims_effect=True, reason="", n=120, outcome="",
                mode="loglik")
    # intervals clear of the margin, exact p of 0.03 twice among three tests: Holm lifts them to 0.06
    rows = [dict(base, claim_id="A-ZS1", where=f"a/{k}", estimate=0.2 + k / 100, low=0.06, high=0.3, p=p)
            for k, p in enumerate([0.03, 0.001, 0.03])]
    table = ledger_rows.ledger_for(rows, "01", "m")
    assert list(table["outcome"]) == ["inconclusive", "supported", "inconclusive"]
    assert table["p_holm"].iloc[0] == pytest.approx(0.06)
    write_claims(table.to_dict("records"), "01", tmp_path)
    assert (tmp_path / "01_claims.csv").exists()
