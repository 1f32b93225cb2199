"""Paper A's hypothesis verdict per domain and scoring mode, on hand-made tables: every outcome branch
(supported, contradicted, inconclusive, format failure, no clear gap, the confounded prompt test), the
references, the summary and the pooled comparison."""

import numpy as np
import pandas as pd
import pytest

from mllm_ood.paper_a import hypotheses

N = 200


def outcomes(acc: float, n: int = N) -> list[bool]:
    """n outcomes with exactly round(acc * n) correct, spread evenly."""
    k = round(acc * n)
    return [bool(i) for i in (np.arange(n) * k // n != (np.arange(n) + 1) * k // n)]


def zero_shot_rows(dataset, domain, mode, accs: dict, parsed: float = 1.0, id_prefix="img", id_suffix="") -> list:
    """Answers of one domain and mode: {variant: accuracy}; the first round((1 - parsed) * N) items unparsed
    (and wrong)."""
    rows = []
    n_unparsed = round((1 - parsed) * N)
    for variant, acc in accs.items():
        correct = outcomes(acc)
        # unparsed items are wrong: put them on the wrong answers
        wrong = [i for i, c in enumerate(correct) if not c]
        unparsed = set(wrong[:n_unparsed])
        assert len(unparsed) == n_unparsed, "more unparsed replies than errors"
        rows += [{"dataset": dataset, "domain": domain, "mode": mode, "variant": variant,
                  "id": f"{id_prefix}-{i:04d}{id_suffix}", "correct": c, "parsed": i not in unparsed}
                 for i, c in enumerate(correct)]
    return rows


def probe_rows(dataset, domain, accs: dict) -> list:
    return [{"dataset": dataset, "domain": domain, "features": f, "item": i, "correct": c}
            for f, acc in accs.items() for i, c in enumerate(outcomes(acc))]


def run(plain=0.3, descriptions=None, context=None, vision=0.9, lm=0.8, pixels=0.85, id_probe=0.7, id_acc=0.95,
        id_descriptions=None, parsed=1.0, mode="loglik", margin=0.05):
    """One OOD domain 'ood' of dataset 'd', shifted copies of the ID reference 'd/id'; returns its verdict row."""
    descriptions = plain if descriptions is None else descriptions
    context = plain if context is None else context
    id_descriptions = id_acc if id_descriptions is None else id_descriptions
    zs = pd.DataFrame(zero_shot_rows("d", "ood", mode, {"plain": plain, "descriptions": descriptions,
                                                          "domain_context": context}, parsed, id_suffix="-shift")
                      + zero_shot_rows("d", "id", mode, {"plain": id_acc, "descriptions": id_descriptions,
                                                         "domain_context": id_acc}))
    items = pd.DataFrame(probe_rows("d", "ood", {"vision": vision, "answer_state": lm, "pixels": pixels,
                                                  hypotheses.ID_PROBE: id_probe}))
    out = hypotheses.domain_verdicts(zs, items, {"d": ["ood"]}, {"d": "d/id"}, [mode], margin=margin, n_boot=400)
    assert len(out) == 1
    return out.iloc[0]


def test_paper_a_pattern_is_mapping_deficiency():
    r = run()
    assert r["id_readout"].startswith("does better than the model")
    assert (r["H1"], r["H2"], r["H3"]) == ("contradicted", "contradicted", "supported")
    assert r["verdict"] == "H3 mapping deficiency"
    assert r["zero_shot"] == pytest.approx(0.3) and r["id_accuracy"] == pytest.approx(0.95)
    assert r["vision_gap"] == pytest.approx(0.6) and r["id_probe_gap"] == pytest.approx(0.4)
    assert r["vision_gap_low"] < 0.6 < r["vision_gap_high"]


def test_a_richer_prompt_that_helps_supports_h1_and_withholds_h3():
    r = run(descriptions=0.6)
    assert (r["H1"], r["H3"]) == ("supported", "inconclusive")
    assert r["verdict"] == "H1 semantic misinterpretation"
    assert r["prompt_gain"] == pytest.approx(0.3)


def test_vision_probe_no_better_than_zero_shot_supports_h2():
    # features give a probe less than zero-shot, far below ID: the interval stays under the margin
    r = run(plain=0.3, vision=0.25, lm=0.3, pixels=0.4)
    assert r["vision_gap_high"] < 0.05
    assert (r["H2"], r["H3"]) == ("supported", "contradicted")
    assert r["verdict"] == "H2 visual feature insufficiency"
    # a probe level with zero-shot on 200 items each: the interval reaches above the margin
    r = run(plain=0.27, vision=0.26, lm=0.3, pixels=0.4)
    assert r["vision_gap_high"] > 0.05 and r["H2"] == "inconclusive"


def test_probe_above_zero_shot_but_below_pixels_is_inconclusive():
    r = run(plain=0.3, vision=0.6, pixels=0.9, lm=0.6)
    assert r["H2"] == "inconclusive" and "raw-pixel" in r["why"]
    assert r["H3"] == "inconclusive" and r["verdict"] == "inconclusive"


def test_small_gap_whose_interval_reaches_the_margin_is_inconclusive():
    # 6 points on 200 items: the interval of vision - zero-shot reaches below the 5-point margin
    r = run(plain=0.80, vision=0.86, lm=0.86, pixels=0.86, id_acc=0.95)
    assert r["vision_gap"] == pytest.approx(0.06) and r["vision_gap_low"] < 0.05
    assert r["H2"] == "inconclusive" and r["H3"] == "inconclusive" and r["verdict"] == "inconclusive"


def test_richer_prompts_that_lower_id_accuracy_make_h1_inconclusive_not_contradicted():
    # the same numbers with prompts that the model handles on ID: contradicted
    assert run(descriptions=0.25, context=0.2)["H1"] == "contradicted"
    # descriptions also lower ID accuracy (0.95 -> 0.6): the model's language side is off its distribution
    r = run(descriptions=0.25, context=0.2, id_descriptions=0.6)
    assert r["prompt_confounded"] == ["descriptions"] and r["H1"] == "inconclusive"
    assert "descriptions also clearly lower(s) ID accuracy" in r["why"]
    assert r["H3"] == "supported"  # H3 asks only that H1 is not supported


def test_unparseable_replies_are_a_format_failure_not_mapping_deficiency():
    r = run(plain=0.0, parsed=0.0, mode="generate")
    assert (r["H1"], r["H2"], r["H3"], r["verdict"]) == ("format failure",) * 4
    assert r["parse_failure"] == pytest.approx(1.0)
    # a few unparseable replies among many wrong ones: not a format failure
    r = run(plain=0.3, parsed=0.9, mode="generate")
    assert r["verdict"] == "H3 mapping deficiency"
    # unparsed are most of the errors
    assert run(plain=0.6, parsed=0.7, mode="generate")["verdict"] == "format failure"


def test_no_failure_when_zero_shot_matches_id_and_probes():
    r = run(plain=0.94, vision=0.95, lm=0.95, pixels=0.95, id_acc=0.95, id_probe=0.95)
    assert r["verdict"] == "no clear gap" and r["H2"] == "no clear gap" and r["id_readout"] == "no gap to explain"


def test_without_an_id_reference_the_probes_define_the_failure():
    zs = pd.DataFrame(zero_shot_rows("m", "x", "loglik", {"plain": 0.3, "descriptions": 0.3, "domain_context": 0.3}))
    zs["pred"] = 2  # the same answer for every image
    items = pd.DataFrame(probe_rows("m", "x", {"vision": 0.6, "answer_state": 0.55, "pixels": 0.6}))
    r = hypotheses.domain_verdicts(zs, items, {"m": ["x"]}, {}, ["loglik"], n_boot=400).iloc[0]
    assert np.isnan(r["id_accuracy"]) and np.isnan(r["id_probe_gap"]) and r["top_answer_share"] == 1.0
    assert r["failure_low"] > 0.05 and r["verdict"] == "H3 mapping deficiency"


def test_the_paired_prompt_interval_is_narrower_than_an_independent_one():
    # the same images under two prompts: the richer prompt fixes 12 of 200 answers and breaks none
    plain = outcomes(0.5)
    fixed = [i for i, c in enumerate(plain) if not c][:12]
    rich = [c or i in fixed for i, c in enumerate(plain)]
    zs = pd.DataFrame([{"dataset": "d", "domain": "ood", "mode": "loglik", "variant": v, "id": f"img-{i}", "correct": c,
                        "parsed": True} for v, cs in [("plain", plain), ("descriptions", rich), ("domain_context", plain)]
                       for i, c in enumerate(cs)])
    items = pd.DataFrame(probe_rows("d", "ood", {"vision": 0.9, "answer_state": 0.8, "pixels": 0.85}))
    r = hypotheses.domain_verdicts(zs, items, {"d": ["ood"]}, {}, ["loglik"], n_boot=400).iloc[0]
    assert r["prompt_gain"] == pytest.approx(0.06)
    assert 0.0 < r["prompt_gain_low"] < 0.06 < r["prompt_gain_high"] < 0.1
    from mllm_ood.stats import bootstrap_diff_ci
    lo, hi = bootstrap_diff_ci(rich, plain, n_boot=400)
    assert lo < 0 and hi - lo > 2 * (r["prompt_gain_high"] - r["prompt_gain_low"])


def test_decide_covers_every_branch_directly():
    base = {"zero_shot": 0.3, "parse_failure": np.nan, "failure_low": 0.4, "prompt_gain_low": -0.05,
            "prompt_gain_high": 0.02, "prompt_confounded": False, "vision_gap_low": 0.3, "vision_gap_high": 0.5,
            "pixels_over_vision_low": -0.1, "lm_gap_low": 0.2, "lm_gap_high": 0.4}
    assert hypotheses.decide(base)["verdict"] == "H3 mapping deficiency"
    assert hypotheses.decide({**base, "prompt_gain_high": 0.08})["H1"] == "inconclusive"
    assert hypotheses.decide({**base, "lm_gap_low": 0.01})["H3"] == "inconclusive"
    assert hypotheses.decide({**base, "lm_gap_low": -0.1, "lm_gap_high": 0.03})["H3"] == "contradicted"
    assert hypotheses.decide({**base, "failure_low": 0.04})["verdict"] == "no clear gap"
    assert hypotheses.decide({**base, "failure_low": np.nan})["verdict"] == "no clear gap"
    assert hypotheses.decide({**base, "parse_failure": 0.6})["verdict"] == "format failure"
    assert hypotheses.decide({**base, "parse_failure": 0.2})["verdict"] == "H3 mapping deficiency"
    # every outcome is one of the documented ones
    for change in [{}, {"vision_gap_high": 0.01}, {"parse_failure": 0.9}, {"failure_low": 0}]:
        d = hypotheses.decide({**base, **change})
        assert {d["H1"], d["H2"], d["H3"]} <= set(hypotheses.OUTCOMES)


def test_summary_counts_verdicts_and_mode_agreement():
    v = pd.DataFrame({"dataset": ["a"] * 4 + ["b"] * 2, "domain": ["x", "y", "x", "y", "z", "z"],
                      "mode": ["generate", "generate", "loglik", "loglik", "generate", "loglik"],
                      "verdict": ["format failure", "inconclusive", "H3 mapping deficiency", "inconclusive",
                                  "no clear gap", "no clear gap"]})
    s = hypotheses.summarise(v)
    a_gen = s[(s["dataset"] == "a") & (s["mode"] == "generate")].iloc[0]
    assert a_gen["format failure"] == 1 and a_gen["inconclusive"] == 1 and a_gen["domains"] == 2
    assert a_gen["modes_agree"] == "1 of 2"
    assert s[s["dataset"] == "b"]["modes_agree"].iloc[0] == "1 of 1"


def test_verdict_table_writes_intervals_in_points():
    t = hypotheses.verdict_table(pd.DataFrame([run()]))
    assert t["vision probe - zero-shot"].iloc[0].startswith("+60 [")
    assert t["verdict"].iloc[0] == "H3 mapping deficiency"


def test_comparison_pools_each_method():
    zs = pd.DataFrame(zero_shot_rows("d", "x", "loglik", {"plain": 0.3, "descriptions": 0.4, "domain_context": 0.5}))
    items = pd.DataFrame(probe_rows("d", "x", {"vision": 0.9, "answer_state": 0.8, "pixels": 0.2}))
    out = hypotheses.comparison(zs, items, {"d": 0.1}, ["plain", "descriptions", "domain_context"], mode="loglik",
                                n_boot=200)
    assert list(out["method"]) == ["zero-shot: plain", "zero-shot: descriptions", "zero-shot: domain_context",
                                   "probe: vision features", "probe: LM answer state", "probe: raw pixels"]
    assert np.allclose(out["accuracy"], [0.3, 0.4, 0.5, 0.9, 0.8, 0.2])
    assert (out["ci_low"] <= out["accuracy"]).all() and (out["accuracy"] <= out["ci_high"]).all()
    assert (out["n"] == 200).all() and (out["chance"] == 0.1).all()


def test_the_id_trained_readout_is_reported_not_decisive():
    r = run(id_probe=0.22)  # an ID-trained readout below zero-shot: the features moved
    assert r["id_readout"].startswith("fails alike") and r["verdict"] == "H3 mapping deficiency"
    assert run(id_probe=0.3)["id_readout"] == "inconclusive"  # level with it on 200 items: the interval reaches the margin
    zs = pd.DataFrame(zero_shot_rows("m", "x", "loglik", {"plain": 0.3, "descriptions": 0.3, "domain_context": 0.3}))
    items = pd.DataFrame(probe_rows("m", "x", {"vision": 0.6, "answer_state": 0.55, "pixels": 0.6}))
    assert hypotheses.domain_verdicts(zs, items, {"m": ["x"]}, {}, ["loglik"], n_boot=200).iloc[0]["id_readout"] == "n/a"
