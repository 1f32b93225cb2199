"""Statistics shared by every notebook: bootstrap intervals of means and of differences (independent or
paired), paired effects over queries, correlations with intervals (crossed designs included), how an
interval is written, and a descriptive agreement reading of a difference (whether two scoring modes agree;
claims are decided by :mod:`.rule`, not here).

All intervals are percentile bootstrap intervals (``scipy.stats.bootstrap`` or a seeded resampling loop),
every random draw seeded from the ``seed`` argument. Accuracies and effects are fractions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..cache import cached_analysis, cached_table, exact_digest
from ..seeding import derive_seed
from ..validation import ParameterError, check_choice, check_positive_int
from .rule import MARGIN, sign_flip_p

CORRELATION_METHODS = ("pearson", "spearman")
# Part of the correlations' cache key (the value paper B's analyses always used): bump it when
# correlation_ci changes what it computes.
CORRELATION_VERSION = 1


# --------------------------------------------------------------------------------------------------
# bootstrap intervals


def _mean(x, axis=-1):
    return x.mean(axis=axis)


def _mean_difference(a, b, axis=-1):
    return a.mean(axis=axis) - b.mean(axis=axis)


def _percentile_interval(samples: tuple, statistic, n_boot: int, level: float, rng,
                         paired: bool = False) -> tuple[float, float]:
    """``scipy.stats.bootstrap``'s percentile interval, the samples resampled independently in order (or,
    ``paired``, the same positions drawn from every sample). A sample of one observation resamples to itself
    (scipy needs two), so it enters the statistic as is."""
    free = [s for s in samples if len(s) > 1]
    if not free:
        v = float(statistic(*samples))
        return v, v

    def stat(*resampled, axis=-1):
        it = iter(resampled)
        return statistic(*[s if len(s) == 1 else next(it) for s in samples], axis=axis)

    with warnings.catch_warnings():
        # equal outcomes give a degenerate (one-point) distribution; one resample, no standard error
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.bootstrap(tuple(free), stat, n_resamples=n_boot, confidence_level=level, method="percentile",
                             vectorized=True, paired=paired and len(free) > 1, rng=rng).confidence_interval
    return float(ci.low), float(ci.high)


def bootstrap_ci(correct, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of 0/1 outcomes ``correct`` (shape (n,)); fractions in [0, 1]
    (``scipy.stats.bootstrap``, seeded from ``seed`` and n).

    Resampling n outcomes with replacement makes the bootstrap mean Binomial(n, p_hat)/n, so for 0/1 data
    this interval approximates the binomial quantiles (tests check that closed form).
    """
    x = np.asarray(correct, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ParameterError(f"bootstrap_ci needs a non-empty 1-D array of outcomes, got shape {x.shape}")
    check_positive_int("n_boot", n_boot)
    if not 0 < level < 1:
        raise ParameterError(f"level must be in (0, 1), got {level}")
    return _percentile_interval((x,), _mean, n_boot, level, np.random.default_rng(derive_seed(seed, "bootstrap", len(x))))

def bootstrap_diff_ci(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) for two independent samples of 0/1 outcomes
    (``scipy.stats.bootstrap``, each sample resampled on its own)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.ndim != 1 or xb.ndim != 1 or not len(xa) or not len(xb):
        raise ParameterError("bootstrap_diff_ci needs two non-empty 1-D arrays of outcomes")
    check_positive_int("n_boot", n_boot)
    rng = np.random.default_rng(derive_seed(seed, "bootstrap-diff", len(xa), len(xb)))
    return _percentile_interval((xa, xb), _mean_difference, n_boot, level, rng)


def bootstrap_paired_diff_ci(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) for paired outcomes: ``a[i]`` and ``b[i]`` belong to
    the same item (the same digit shifted and unshifted, the same image under two prompts) and are resampled
    together (``scipy.stats.bootstrap(..., paired=True)``), so what the two share cancels in the interval."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.ndim != 1 or xa.shape != xb.shape or not len(xa):
        raise ParameterError(f"bootstrap_paired_diff_ci needs two non-empty 1-D arrays of equal length, got shapes "
                             f"{xa.shape} and {xb.shape}")
    check_positive_int("n_boot", n_boot)
    rng = np.random.default_rng(derive_seed(seed, "bootstrap-paired-diff", len(xa)))
    return _percentile_interval((xa, xb), _mean_difference, n_boot, level, rng, paired=True)

def difference_interval(kind: str, a, b, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(difference of means, ci_low, ci_high) of a - b; ``kind`` 'paired' or 'independent'; NaN when a side
    is empty."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return np.nan, np.nan, np.nan
    fn = bootstrap_paired_diff_ci if kind == "paired" else bootstrap_diff_ci
    lo, hi = fn(a, b, n_boot=n_boot, seed=seed)
    return float(a.mean() - b.mean()), lo, hi


@cached_analysis("analysis")
def paired_effect(a: pd.DataFrame, b: pd.DataFrame, value: str = "correct", n_boot: int = 1000,
                  seed: int = 0) -> dict:
    """mean(a) - mean(b) of ``value`` over the queries both tables share (unit = task x query, each
    averaged over seeds), with a 95 % paired bootstrap interval; fractions. Also the means ``a`` and ``b``
    over those shared queries, ``gains`` / ``losses`` (queries with a positive / negative difference) and
    ``p``, the exact one-sided sign-flip p-value that the effect is not positive (:func:`.rule.sign_flip_p`)."""
    qa = a.groupby(["task", "query"])[value].mean()
    qb = b.groupby(["task", "query"])[value].mean()
    shared = (qa - qb).dropna()
    d = shared.to_numpy(float)
    if not len(d):
        raise ParameterError("the two conditions share no queries")
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=derive_seed(seed, "paired", len(d)))
    return {"effect": float(d.mean()), "ci_low": lo, "ci_high": hi, "n_queries": int(len(d)),
            "a": float(qa.loc[shared.index].mean()), "b": float(qb.loc[shared.index].mean()),
            "gains": int((d > 0).sum()), "losses": int((d < 0).sum()), "p": sign_flip_p(d, seed=seed)}


# --------------------------------------------------------------------------------------------------
# agreement (descriptive; claims are decided by the rule module)


def agreement(lo: float, hi: float, margin: float = MARGIN) -> str:
    """Whether a difference's interval says two measurements agree: 'agree' (interval inside +-margin),
    'differ' (beyond the margin on either side) or 'inconclusive'."""
    return "agree" if lo > -margin and hi < margin else "differ" if lo > margin or hi < -margin else "inconclusive"


# --------------------------------------------------------------------------------------------------
# how an interval is written


def percent_interval(v: float, lo: float, hi: float) -> str:
    """``'62% [55%, 70%]'``: a fraction and its interval in whole percent."""
    return f"{v:.0%} [{lo:.0%}, {hi:.0%}]"


def points_interval(d, lo, hi, digits: int = 0) -> str:
    """``'+12 [+4, +20]'``: a difference of fractions and its interval in signed percentage points
    (``digits`` decimals); 'n/a' when the difference is NaN."""
    if np.isnan(d):
        return "n/a"
    return f"{100 * d:+.{digits}f} [{100 * lo:+.{digits}f}, {100 * hi:+.{digits}f}]"


def interval_text(lo, hi, digits: int = 2) -> str:
    """``'[0.12, 0.40]'``: an interval's two ends."""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def with_interval_column(table: pd.DataFrame, low: str = "low", high: str = "high", digits: int = 2) -> pd.DataFrame:
    """``table`` with a text column ``interval`` = :func:`interval_text` of its ``low`` and ``high`` columns."""
    return table.assign(interval=[interval_text(lo, hi, digits) for lo, hi in zip(table[low], table[high])])


def number_text(v, width: int = 7, digits: int = 3) -> str:
    """A number right-aligned in ``width`` characters with ``digits`` decimals, '-' for None."""
    return f"{'-':>{width}}" if v is None else f"{v:{width}.{digits}f}"


# --------------------------------------------------------------------------------------------------
# correlations with intervals


def _corr(a: np.ndarray, b: np.ndarray, method: str) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float((stats.pearsonr if method == "pearson" else stats.spearmanr)(a, b).statistic)


def correlation_ci(a, b, *, method: str = "pearson", n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                   rows: Sequence | None = None, cols: Sequence | None = None) -> dict:
    """Correlation of paired series a, b (one value per scenario) with a percentile bootstrap interval.

    Without ``rows``/``cols`` the scenarios are resampled with replacement (independent scenarios). With
    both (the scenario's row and column in a crossed grid, e.g. image condition x question condition),
    rows and columns are resampled independently and every cell of the resampled rows x columns is
    kept (the pigeonhole bootstrap for crossed designs, Owen 2007): scenarios that share an image
    condition or a question condition are not treated as independent.

    Returns {method, n, r, low, high, p (two-sided, scipy, assumes independence), n_boot_valid,
    resampling}; r, low, high are nan when undefined (fewer than 3 scenarios, a constant series).
    Resamples in which a series is constant or has < 3 cells are dropped (``n_boot_valid`` counts the
    rest); with fewer than 10 % valid the interval is nan. Cached (key: the series, labels and settings).
    """
    labels = [np.asarray([] if v is None else list(v), dtype=object) for v in (rows, cols)]
    params = {"series": exact_digest(np.asarray(a, dtype=float), np.asarray(b, dtype=float), *labels),
              "crossed": rows is not None and cols is not None, "method": method, "n_boot": n_boot,
              "level": level, "seed": seed, "version": CORRELATION_VERSION}
    row = cached_table("correlations", params, lambda: pd.DataFrame([_correlation_ci(
        a, b, method=method, n_boot=n_boot, level=level, seed=seed, rows=rows, cols=cols)]), file="table.pkl").iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def _correlation_ci(a, b, *, method, n_boot, level, seed, rows, cols) -> dict:
    check_choice("correlation method", method, CORRELATION_METHODS)
    check_positive_int("n_boot", n_boot)
    if not isinstance(level, float) or not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1), got {level!r}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ParameterError(f"correlation needs two 1-D series of equal length, got shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ParameterError("correlation series contain NaN or infinite values")
    crossed = rows is not None and cols is not None
    if crossed and not (len(rows) == len(cols) == len(a)):
        raise ParameterError(f"rows and cols need one label per scenario ({len(a)})")
    out = {"method": method, "n": len(a), "r": _corr(a, b, method), "low": float("nan"), "high": float("nan"),
           "p": float("nan"), "n_boot_valid": 0, "resampling": "rows x columns" if crossed else "scenarios"}
    if math.isnan(out["r"]):
        return out
    out["p"] = float((stats.pearsonr if method == "pearson" else stats.spearmanr)(a, b).pvalue)
    g = np.random.default_rng(derive_seed(seed, "correlation-bootstrap", method, len(a), out["resampling"]))
    if crossed:
        r_lab, c_lab = np.asarray(rows, dtype=object), np.asarray(cols, dtype=object)
        ur, uc = list(dict.fromkeys(r_lab)), list(dict.fromkeys(c_lab))
        cell = {(r, c): i for i, (r, c) in enumerate(zip(r_lab, c_lab))}
    rs = []
    for _ in range(n_boot):
        if crossed:
            pick_r = [ur[i] for i in g.integers(0, len(ur), len(ur))]
            pick_c = [uc[i] for i in g.integers(0, len(uc), len(uc))]
            i = np.array([cell[(r, c)] for r in pick_r for c in pick_c if (r, c) in cell], dtype=int)
        else:
            i = g.integers(0, len(a), len(a))
        r = _corr(a[i], b[i], method) if len(i) >= 3 else float("nan")
        if not math.isnan(r):
            rs.append(r)
    out["n_boot_valid"] = len(rs)
    if len(rs) >= max(1, n_boot // 10):
        alpha = (1 - level) / 2
        out["low"], out["high"] = (float(v) for v in np.quantile(rs, [alpha, 1 - alpha]))
    return out


