"""Statistics shared by the notebooks (mllm_ood.stats): bootstrap intervals against closed forms and a
resampling written out, correlations with (crossed) bootstrap intervals against scipy, and the outcome
rules (a claim's verdict, a correlation's verdict, the format failure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mllm_ood import stats as st
from mllm_ood.stats import bootstrap_ci, bootstrap_diff_ci, bootstrap_paired_diff_ci
from mllm_ood.validation import ParameterError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("n, k", [(50, 20), (200, 180), (400, 40)])
def test_bootstrap_matches_binomial_quantiles(n, k):
    # For 0/1 outcomes the bootstrap mean is exactly Binomial(n, k/n)/n: its 2.5/97.5 % quantiles are the
    # closed form. With 20,000 resamples the Monte-Carlo error of a quantile is below one step 1/n.
    correct = np.r_[np.ones(k), np.zeros(n - k)]
    lo, hi = bootstrap_ci(correct, n_boot=20000, seed=1)
    p = k / n
    exp_lo, exp_hi = stats.binom.ppf(0.025, n, p) / n, stats.binom.ppf(0.975, n, p) / n
    assert abs(lo - exp_lo) <= 1.01 / n and abs(hi - exp_hi) <= 1.01 / n
    assert lo <= p <= hi


def test_bootstrap_is_seeded_and_validates():
    x = np.random.default_rng(0).random(100) < 0.3
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    with pytest.raises(ParameterError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ParameterError, match="n_boot"):
        bootstrap_ci(x, n_boot=0)


def test_bootstrap_difference_matches_normal_approximation():
    # Large samples: the interval of p1 - p2 approaches +-1.96 * sqrt(p1 q1 / n1 + p2 q2 / n2).

    a = np.r_[np.ones(700), np.zeros(300)]
    b = np.r_[np.ones(400), np.zeros(600)]
    lo, hi = bootstrap_diff_ci(a, b, n_boot=20000, seed=0)
    se = np.sqrt(0.7 * 0.3 / 1000 + 0.4 * 0.6 / 1000)
    assert abs(lo - (0.3 - 1.96 * se)) < 0.006 and abs(hi - (0.3 + 1.96 * se)) < 0.006


def test_paired_bootstrap_matches_a_resampling_written_out():
    # Independent computation: resample item indices, take the mean paired difference, percentiles.

    r = np.random.default_rng(5)
    a = r.random(300) < 0.8
    b = a & (r.random(300) < 0.7)  # b is a with some answers broken: strongly correlated with a
    lo, hi = bootstrap_paired_diff_ci(a, b, n_boot=20000, seed=2)
    idx = np.random.default_rng(9).integers(0, 300, (20000, 300))
    boots = (a[idx].astype(float) - b[idx]).mean(1)
    exp_lo, exp_hi = np.quantile(boots, [0.025, 0.975])
    assert abs(lo - exp_lo) < 0.006 and abs(hi - exp_hi) < 0.006
    # pairing matters here: the independent interval is much wider
    ilo, ihi = bootstrap_diff_ci(a, b, n_boot=20000, seed=2)
    assert (ihi - ilo) > 1.3 * (hi - lo)
    with pytest.raises(ParameterError, match="equal length"):
        bootstrap_paired_diff_ci(a, b[:-1])


def test_correlation_ci_matches_scipy_and_brackets_r():
    g = np.random.default_rng(1)
    a = g.standard_normal(40)
    b = a + 0.8 * g.standard_normal(40)
    for method, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        c = st.correlation_ci(a, b, method=method, n_boot=300, seed=0)
        assert math.isclose(c["r"], fn(a, b).statistic) and math.isclose(c["p"], fn(a, b).pvalue)
        assert c["low"] <= c["r"] <= c["high"] and c["n"] == 40 and c["n_boot_valid"] == 300
    exact = st.correlation_ci(a, 3 * a + 1, n_boot=200)
    assert math.isclose(exact["r"], 1.0) and math.isclose(exact["low"], 1.0) and math.isclose(exact["high"], 1.0)
    unrelated = st.correlation_ci(g.standard_normal(200), g.standard_normal(200), n_boot=500, seed=0)
    assert unrelated["low"] < 0 < unrelated["high"]
    assert st.correlation_ci(a, a, n_boot=50, seed=4) == st.correlation_ci(a, a, n_boot=50, seed=4)


def test_crossed_bootstrap_respects_shared_rows_and_columns():
    # 4 rows x 8 columns; both series carry the same row effect: the cells are not 32 independent points,
    # and an interval that resamples rows knows it has only 4 of them.
    g = np.random.default_rng(3)
    rows = np.repeat(np.arange(4), 8)
    cols = np.tile(np.arange(8), 4)
    effect = g.standard_normal(4)[rows]
    a = effect + 0.3 * g.standard_normal(32)
    b = effect + 0.3 * g.standard_normal(32)
    iid = st.correlation_ci(a, b, n_boot=400, seed=0)
    crossed = st.correlation_ci(a, b, n_boot=400, seed=0, rows=rows.tolist(), cols=cols.tolist())
    assert crossed["resampling"] == "rows x columns" and crossed["r"] == iid["r"]
    assert (crossed["high"] - crossed["low"]) > 1.5 * (iid["high"] - iid["low"])
    # a grid with its ID cell left out still resamples (missing cells are skipped)
    keep = np.arange(1, 32)
    part = st.correlation_ci(a[keep], b[keep], n_boot=100, rows=rows[keep].tolist(), cols=cols[keep].tolist())
    assert part["n"] == 31 and part["n_boot_valid"] > 50
    with pytest.raises(ParameterError, match="one label per scenario"):
        st.correlation_ci(a, b, rows=[0, 1], cols=[0, 1])


def test_correlation_ci_degenerate_and_bad_input():
    const = st.correlation_ci(np.arange(5.0), np.ones(5), n_boot=50)
    assert math.isnan(const["r"]) and math.isnan(const["low"])
    assert math.isnan(st.correlation_ci([1.0, 2.0], [2.0, 1.0], n_boot=50)["r"])
    with pytest.raises(ParameterError, match="method"):
        st.correlation_ci([1, 2, 3], [1, 2, 3], method="kendall")
    with pytest.raises(ParameterError, match="equal length"):
        st.correlation_ci([1, 2, 3], [1, 2])
    with pytest.raises(ParameterError, match="NaN"):
        st.correlation_ci([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(ParameterError, match="n_boot"):
        st.correlation_ci([1, 2, 3], [1, 2, 3], n_boot=0)
