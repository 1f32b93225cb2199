"""The one decision rule (mllm_ood.stats.rule): every branch on hand-made numbers, the cases a reviewer
raised against the earlier per-notebook rules, and what the rule concludes, and how often, on simulated
data whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mllm_ood.stats import (CONSTANT_ANSWER, CONTRADICTED, INCONCLUSIVE, MARGIN, NOT_TESTABLE, OFF_LIST,
                            PARSE_FAILURE, SUPPORTED, answer_outcome, bootstrap_paired_diff_ci,
                            cluster_bootstrap_ci, bootstrap_ci, correlation_vs_published, decide, decide_family,
                            fisher_interval, holm, rule_text, sign_flip_p)
from mllm_ood.validation import ParameterError

import pandas as pd


# ------------------------------------------------------------------------------------------ branches


@pytest.mark.parametrize("est, lo, hi, kw, expected", [
    (0.12, 0.06, 0.18, {}, SUPPORTED),                              # clears the margin
    (0.02, -0.01, 0.04, {}, CONTRADICTED),                          # wholly below the margin
    (-0.12, -0.18, -0.06, {}, CONTRADICTED),                        # the other way
    (0.06, 0.01, 0.11, {}, INCONCLUSIVE),                           # reaches across the margin
    (0.03, 0.003, 0.05, {}, INCONCLUSIVE),                          # upper end exactly at the margin
    (-0.12, -0.18, -0.06, {"direction": -1}, SUPPORTED),            # a claimed drop
    (0.12, 0.06, 0.18, {"direction": -1}, CONTRADICTED),
    (0.02, -0.01, 0.04, {"claims_effect": False}, SUPPORTED),       # "did not help", and it did not
    (0.12, 0.06, 0.18, {"claims_effect": False}, CONTRADICTED),     # "did not help", and it did
    (0.12, 0.06, 0.18, {"p": 0.2}, INCONCLUSIVE),                   # interval clears it, exact test does not
    (0.12, 0.06, 0.18, {"p": 0.01}, SUPPORTED),
    (0.0, 0.0, 0.0, {"room": 0.0}, NOT_TESTABLE),                   # 100 % vs 100 %: a ceiling
    (0.01, 0.0, 0.02, {"room": 0.03}, NOT_TESTABLE),
    (math.nan, math.nan, math.nan, {}, NOT_TESTABLE),
    (0.0, 0.1, 0.0, {}, NOT_TESTABLE),                              # a broken interval is no evidence
])
def test_decide_branches(est, lo, hi, kw, expected):
    assert decide(est, lo, hi, **kw) == expected


def test_decide_refuses_bad_parameters():
    with pytest.raises(ParameterError, match="direction"):
        decide(0.1, 0.0, 0.2, direction=2)
    with pytest.raises(ParameterError, match="margin"):
        decide(0.1, 0.0, 0.2, margin=-0.1)
    with pytest.raises(ParameterError, match="rule kind"):
        rule_text("vibes")


def test_holm_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 8))
        m, order = len(p), np.argsort(p)
        # the definition: adjusted p_(j) = max over i <= j of min(1, (m - i + 1) p_(i)) (1-based ranks)
        expected = np.empty(m)
        for j in range(m):
            expected[order[j]] = max(min(1.0, (m - i) * p[order[i]]) for i in range(j + 1))
        np.testing.assert_allclose(holm(p), expected)
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_sign_flip_p_is_the_exact_sign_test_for_paired_outcomes():
    for plus, minus in [(6, 1), (5, 0), (3, 3), (10, 2), (0, 4)]:
        d = np.r_[np.ones(plus), -np.ones(minus), np.zeros(40)]
        exact = stats.binomtest(plus, plus + minus, 0.5, alternative="greater").pvalue
        assert sign_flip_p(d) == pytest.approx(exact)
        assert sign_flip_p(-d, direction=-1) == pytest.approx(exact)
    assert sign_flip_p(np.zeros(5)) == 1.0
    assert sign_flip_p(np.r_[1.0, np.zeros(9)]) == 0.5 == stats.binomtest(1, 1, 0.5, alternative="greater").pvalue
    assert sign_flip_p(np.r_[-1.0, np.zeros(9)]) == 1.0


def test_answer_outcomes():
    # the parser found no class in most replies
    assert answer_outcome(0.2, parse_failure=0.7) == PARSE_FAILURE
    # well-formed replies naming a class outside the list ("Answer Choice: [three]")
    assert answer_outcome(0.1, off_list=0.8) == OFF_LIST
    # one class for every image: 11 % correct, chance 33 %
    assert answer_outcome(0.11, top_answer_share=1.0, n_classes=3) == CONSTANT_ANSWER
    # a few unreadable replies among many plain errors do not explain the accuracy
    assert answer_outcome(0.3, parse_failure=0.06, top_answer_share=0.5, n_classes=3) is None
    assert answer_outcome(0.9, parse_failure=0.04) is None
    # one class is no constant answer when there is only one class to give
    assert answer_outcome(1.0, top_answer_share=1.0, n_classes=1) is None


def test_fisher_interval_closed_form():
    lo, hi = fisher_interval(0.58, 35)
    half = stats.norm.ppf(0.975) / math.sqrt(32)
    assert lo == pytest.approx(math.tanh(math.atanh(0.58) - half))
    assert hi == pytest.approx(math.tanh(math.atanh(0.58) + half))
    with pytest.raises(ParameterError):
        fisher_interval(0.5, 3)


def test_correlation_vs_published_branches():
    # a precise r close to the published one
    assert correlation_vs_published(0.60, 0.55, 0.65, 0.58, 1000)["outcome"] == SUPPORTED
    # far below it, precisely
    assert correlation_vs_published(0.05, -0.05, 0.15, 0.88, 61)["outcome"] == CONTRADICTED
    # a wide interval that contains the published value cannot say "reproduced"
    assert correlation_vs_published(0.58, -0.3, 0.9, 0.58, 35)["outcome"] == INCONCLUSIVE
    assert correlation_vs_published(math.nan, math.nan, math.nan, 0.58, 35)["outcome"] == NOT_TESTABLE
    # a published r from 34 scenarios is itself +-0.28: even an exact measurement of it cannot be "supported"
    exact = correlation_vs_published(0.58, 0.58, 0.58, 0.58, 34)
    assert not exact["supportable"] and exact["outcome"] == INCONCLUSIVE
    assert correlation_vs_published(0.88, 0.87, 0.89, 0.88, 61)["supportable"]
    # MOVER with both Fisher intervals equals Zou's (2007) closed form for two independent correlations
    r1, n1, r2, n2 = 0.3, 40, 0.7, 61
    l1, u1 = fisher_interval(r1, n1)
    l2, u2 = fisher_interval(r2, n2)
    out = correlation_vs_published(r1, l1, u1, r2, n2)
    assert out["low"] == pytest.approx(r1 - r2 - math.sqrt((r1 - l1) ** 2 + (u2 - r2) ** 2))
    assert out["high"] == pytest.approx(r1 - r2 + math.sqrt((u1 - r1) ** 2 + (r2 - l2) ** 2))


def test_decide_family_applies_holm_and_keeps_given_outcomes():
    t = pd.DataFrame({"estimate": [0.12, 0.12, 0.0], "low": [0.06, 0.06, 0.0], "high": [0.18, 0.18, 0.0],
                      "margin": MARGIN, "direction": 1, "p": [0.01, 0.03, np.nan],
                      "outcome": [None, None, OFF_LIST]})
    out = decide_family(t)
    # Holm: 0.01 * 2 = 0.02 supported; max(0.02, 0.03) = 0.03 supported; alone each would be too
    assert list(out["outcome"]) == [SUPPORTED, SUPPORTED, OFF_LIST]
    t["p"] = [0.01, 0.04, np.nan]
    t.loc[:, "outcome"] = [None, None, OFF_LIST]
    assert list(decide_family(t)["outcome"]) == [SUPPORTED, SUPPORTED, OFF_LIST]
    t["p"] = [0.03, 0.04, np.nan]  # 0.03 * 2 = 0.06: no longer supported once corrected
    assert list(decide_family(t)["outcome"]) == [INCONCLUSIVE, INCONCLUSIVE, OFF_LIST]


# ------------------------------------------------------------------------------------------ reviewer cases


def _paired_claim(a, b, direction=1, room=None, seed=0):
    """A paired claim as the notebooks build it: the paired bootstrap interval and the exact sign-flip p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo, hi = bootstrap_paired_diff_ci(a, b, n_boot=1000, seed=seed)
    return {"estimate": a.mean() - b.mean(), "low": lo, "high": hi, "margin": MARGIN, "direction": direction,
            "p": sign_flip_p(a - b, direction=direction), "room": room}


def test_six_against_one_of_120_is_not_a_reproduction():
    # 7 of 120 queries differ: +6 / -1 (a gain of +4.2 points, exact sign-test p = 0.0625)
    b = np.zeros(120)
    a = b.copy()
    a[:6] = 1
    b[6] = 1
    row = _paired_claim(a, b)
    assert row["p"] == pytest.approx(8 / 128)
    assert decide_family(pd.DataFrame([row]))["outcome"].iloc[0] != SUPPORTED


def test_a_ceiling_is_not_testable():
    ones = np.ones(60)
    row = _paired_claim(ones, ones, room=1 - ones.mean())
    assert decide_family(pd.DataFrame([row]))["outcome"].iloc[0] == NOT_TESTABLE


def test_two_prompts_one_still_reaching_the_margin_do_not_contradict():
    # the claim "richer prompts do not help" per prompt: +2.0 [+0.5, +4.0] and +6.0 [-0.0, +12.5]
    per_prompt = [decide(0.02, 0.005, 0.04, claims_effect=False), decide(0.06, -0.0, 0.125, claims_effect=False)]
    assert per_prompt == [SUPPORTED, INCONCLUSIVE]
    # neither prompt shows the help the hypothesis needs, and one still might: nothing says it helps
    assert CONTRADICTED not in per_prompt


# ------------------------------------------------------------------------------------------ simulations


def _simulate_family(true_gain, n, n_claims, sims, seed, base=0.5):
    """Share of simulated families in which each outcome occurs at least once, for paired 0/1 outcomes with
    a known true gain (the same items under two conditions)."""
    rng = np.random.default_rng(seed)
    any_supported, supported = 0, 0
    for s in range(sims):
        rows = []
        for c in range(n_claims):
            b = rng.random(n) < base
            flip_up = rng.random(n) < max(true_gain, 0) / (1 - base)
            a = b | flip_up
            rows.append(_paired_claim(a, b, seed=s * 100 + c))
        out = decide_family(pd.DataFrame(rows))["outcome"]
        any_supported += (out == SUPPORTED).any()
        supported += (out == SUPPORTED).sum()
    return any_supported / sims, supported / (sims * n_claims)


def test_no_true_effect_is_rarely_called_supported_across_a_family():
    family_rate, _ = _simulate_family(0.0, n=120, n_claims=6, sims=60, seed=1)
    assert family_rate <= 0.05


def test_a_gain_at_the_margin_is_rarely_called_supported():
    _, rate = _simulate_family(MARGIN, n=200, n_claims=1, sims=120, seed=2)
    assert rate <= 0.1


def test_a_clear_gain_is_found():
    _, rate = _simulate_family(0.2, n=200, n_claims=3, sims=40, seed=3)
    assert rate >= 0.9


def test_correlation_rule_on_known_truths():
    """Simulated scenarios (bivariate normal, n = 35 as paper B's synthetic grid) against a published r from
    61 scenarios: the MOVER interval covers the true difference about 95 % of the time; with the truth equal
    to the published r the rule rarely says *contradicted*, and with a true r of 0.3 against 0.58 it rarely
    says *supported*."""
    rng = np.random.default_rng(4)

    def draw(rho, n):
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
        return float(np.corrcoef(z.T)[0, 1])

    def run(rho_here, rho_published, sims=1500):
        outcomes, cover = [], 0
        for _ in range(sims):
            r, pub = draw(rho_here, 35), draw(rho_published, 61)
            out = correlation_vs_published(r, *fisher_interval(r, 35), pub, 61)
            cover += out["low"] <= rho_here - rho_published <= out["high"]
            outcomes.append(out["outcome"])
        return pd.Series(outcomes).value_counts(normalize=True), cover / sims

    same, coverage = run(0.58, 0.58)
    assert 0.92 <= coverage <= 0.98
    assert same.get(CONTRADICTED, 0) <= 0.05
    lower, coverage = run(0.3, 0.58)
    assert 0.92 <= coverage <= 0.98
    assert lower.get(SUPPORTED, 0) <= 0.05


def test_cluster_bootstrap_covers_where_the_item_bootstrap_does_not():
    """LLaVA-Bench's shape: 30 images x 3 questions, answers to one image sharing much of their value. The
    cluster bootstrap's interval covers the true mean about 95 % of the time; resampling the 90 questions
    as if independent covers clearly less."""
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(30), 3)
    cover_cluster = cover_item = 0
    sims = 150
    for s in range(sims):
        values = np.repeat(rng.normal(0, 1, 30), 3) + rng.normal(0, 0.3, 90)
        _, lo, hi = cluster_bootstrap_ci(values, clusters, n_boot=400, seed=s)
        cover_cluster += lo <= 0 <= hi
        lo, hi = bootstrap_ci(values, n_boot=400, seed=s)
        cover_item += lo <= 0 <= hi
    assert cover_cluster / sims >= 0.88
    assert cover_item / sims <= cover_cluster / sims - 0.1


def test_exact_p_paired_is_the_sign_test_and_independent_is_fishers():
    from mllm_ood.stats import exact_p

    a, b = np.r_[np.ones(5), np.zeros(15)], np.r_[np.zeros(5), np.ones(1), np.zeros(14)]  # +5 / -1
    assert exact_p(a, b, paired=True) == pytest.approx(stats.binomtest(5, 6, alternative="greater").pvalue)
    table = [[a.sum(), len(a) - a.sum()], [b.sum(), len(b) - b.sum()]]
    assert exact_p(a, b, paired=False) == pytest.approx(stats.fisher_exact(table, alternative="greater")[1])
    assert math.isnan(exact_p([], [1], paired=False))
