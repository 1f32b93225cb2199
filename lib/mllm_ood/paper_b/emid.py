"""Intervals of EMI and EMID whose resampling units match the data (paper B's estimator, the CLUB held fixed).

- **EMI** of a scenario: a percentile interval from the *cluster* bootstrap
  (:func:`mllm_ood.stats.cluster_resamples`): items that share a cluster (the three LLaVA-Bench COCO
  questions about one image, the in-the-wild questions about one image) are drawn together, so what their
  answers share is not counted as independent evidence. Without clusters every item is its own.
- **EMID** = EMI(source) - EMI(target): a *paired* interval when both scenarios hold the same items (the
  same ids: one COCO question clean and perturbed, one digit in every visual condition): each resample
  draws the source's clusters once and takes the same items in both scenarios. Otherwise the two EMIs are
  resampled independently and their draws subtracted.
- :func:`resolution`: how wide the EMID interval is at n items per cell, by simulation (subsamples of the
  measured items, the same estimator), and :func:`reliability`: whether EMID varies across scenarios by
  more than its own noise; without that a correlation of EMID with anything measures noise.

A resample repeats items; the CLUB estimate on it uses negatives over pairs of *different* original items
(:func:`club_u`), shifted by the full-sample difference so the interval is centred on paper B's estimate.
Units: nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..seeding import derive_seed
from ..stats import cluster_members, cluster_resamples, draws_interval
from ..validation import ParameterError, check_positive_int


def club_u(L: np.ndarray, s: np.ndarray) -> float:
    """CLUB on the resample ``s`` of one scenario's rows with negatives over pairs of *different* original
    rows (a U-statistic): counting a copy of the positive pair as a negative would bias it down by ~CLUB / n."""
    return float(club_u_counts(L, resample_counts([s], len(L)))[0])


def club_u_counts(L: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`club_u` of many resamples at once, each given by how often it draws each row (``counts``:
    (B, n) for L: (n, n)). With c the counts, the positives' mean is ``c . diag(L) / sum(c)`` and the
    negatives' ``(c^T L c - sum_k c_k^2 L_kk) / (sum(c)^2 - sum_k c_k^2)``: the same sums as over the
    resample's (sum(c), sum(c)) submatrix, in O(B n^2) without building it. NaN where a resample holds one
    distinct row (no negatives)."""
    c = np.asarray(counts, dtype=float)
    d = np.diag(L)
    n, same = c.sum(axis=1), (c * c).sum(axis=1)
    negatives = n * n - same
    with np.errstate(invalid="ignore", divide="ignore"):
        u = c @ d / n - (((c @ L) * c).sum(axis=1) - (c * c) @ d) / negatives
    return np.where(negatives > 0, u, np.nan)


def resample_counts(resamples, n: int) -> np.ndarray:
    """(B, n) counts of each of n rows in each resample (index arrays, e.g. from :func:`cluster_resamples`)."""
    return np.stack([np.bincount(r, minlength=n) for r in resamples])


@dataclass
class ScenarioLikelihoods:
    """One scenario's CLUB log-likelihood matrices (model and reference answers), its EMI (paper B's
    estimate), and one cluster label and (optional) item id per row, in the scenario's row order."""

    lm: np.ndarray
    lr: np.ndarray
    emi: float
    clusters: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self):
        whole = np.arange(len(self.lm))
        self.u0 = club_u(self.lm, whole) - club_u(self.lr, whole)

    def draw(self, rows: np.ndarray) -> float:
        """EMI on the resample ``rows`` (positions in this scenario), centred on the full-sample EMI."""
        return float(self.draw_counts(resample_counts([rows], len(self.lm)))[0])

    def draw_counts(self, counts: np.ndarray) -> np.ndarray:
        """:meth:`draw` of many resamples given as (B, n) row counts (:func:`resample_counts`)."""
        return self.emi + club_u_counts(self.lm, counts) - club_u_counts(self.lr, counts) - self.u0

    def draws(self, n_boot: int, seed: int) -> np.ndarray:
        return self.draw_counts(resample_counts(cluster_resamples(self.clusters, n_boot, seed), len(self.lm)))


def pairing(src: ScenarioLikelihoods, tgt: ScenarioLikelihoods) -> np.ndarray | None:
    """Positions in ``tgt`` of the source's items, in the source's order, when both hold the same items
    (same unique ids); None otherwise (the EMIs are then resampled independently)."""
    if src.ids is None or tgt.ids is None:
        return None
    a, b = list(src.ids), list(tgt.ids)
    if len(a) != len(b) or len(set(a)) != len(a) or set(a) != set(b):
        return None
    pos = {v: i for i, v in enumerate(b)}
    return np.array([pos[v] for v in a], dtype=int)


def emid_draws(src: ScenarioLikelihoods, tgt: ScenarioLikelihoods, *, n_boot: int, seed: int,
               src_draws: np.ndarray | None = None, tgt_draws: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Bootstrap draws of EMID = EMI(src) - EMI(tgt) and whether they are paired (:func:`pairing`)."""
    perm = pairing(src, tgt)
    if perm is None:
        a = src_draws if src_draws is not None else src.draws(n_boot, derive_seed(seed, "emi"))
        b = tgt_draws if tgt_draws is not None else tgt.draws(n_boot, derive_seed(seed, "emi-target"))
        return a - b, False
    rows = list(cluster_resamples(src.clusters, n_boot, derive_seed(seed, "emid")))
    src_counts, tgt_counts = (resample_counts(r, len(src.lm)) for r in (rows, [perm[i] for i in rows]))
    return src.draw_counts(src_counts) - tgt.draw_counts(tgt_counts), True


def scenario_intervals(scenarios: dict[str, ScenarioLikelihoods], source: str, *, n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per scenario: the EMI interval (cluster bootstrap) and, for every target, the EMID interval (paired
    where the items are the same). Columns: scenario, n_clusters, emi_low, emi_high, emid_low, emid_high,
    emid_paired (nan / False for the source)."""
    check_positive_int("n_boot", n_boot)
    if source not in scenarios:
        raise ParameterError(f"unknown source scenario {source!r}")
    draws = {s: st.draws(n_boot, derive_seed(seed, "emi-bootstrap", s)) for s, st in scenarios.items()}
    rows = []
    for s, st in scenarios.items():
        lo, hi = draws_interval(draws[s], level)
        row = {"scenario": s, "n_clusters": len(set(st.clusters.tolist())), "emi_low": lo, "emi_high": hi,
               "emid_low": np.nan, "emid_high": np.nan, "emid_paired": False}
        if s != source:
            d, paired = emid_draws(scenarios[source], st, n_boot=n_boot, seed=derive_seed(seed, "emid", s),
                                   src_draws=draws[source], tgt_draws=draws[s])
            row.update(zip(("emid_low", "emid_high"), draws_interval(d, level)), emid_paired=paired)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# how finely EMID is resolved


def resolution(src: ScenarioLikelihoods, tgt: ScenarioLikelihoods, sizes, *, n_sim: int = 20, n_boot: int = 200,
               level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The EMID interval's width at n clusters per cell, by simulation: ``n_sim`` times, draw n of the
    measured clusters without replacement (the same ones in both cells when they are paired), and take
    the width of the EMID interval of that subsample (:func:`emid_draws`). Sizes above the clusters at
    hand are extrapolated from the largest simulated one (width ~ 1/sqrt(n), the noise of a mean).
    Columns: n_clusters, median_width, q90_width, n_sim, how."""
    perm = pairing(src, tgt)
    src_members, tgt_members = cluster_members(src.clusters), cluster_members(tgt.clusters)
    g = np.random.default_rng(derive_seed(seed, "emid-resolution", len(src_members)))
    rows, measured = [], []
    for n in sorted({int(k) for k in sizes}):
        if n < 2:
            continue
        if n > len(src_members):
            if measured:  # beyond the data: the noise of a mean, width ~ 1 / sqrt(n), from the largest size
                n0, w0, q0 = measured[-1]
                f = (n0 / n) ** 0.5
                rows.append({"n_clusters": n, "median_width": w0 * f, "q90_width": q0 * f, "n_sim": 0,
                             "how": f"extrapolated from n = {n0} (width ~ 1/sqrt(n))"})
            continue
        widths = []
        for k in range(n_sim):
            a = np.concatenate([src_members[i] for i in g.choice(len(src_members), n, replace=False)])
            if perm is not None:
                b = perm[a]
            else:
                m = min(n, len(tgt_members))
                b = np.concatenate([tgt_members[i] for i in g.choice(len(tgt_members), m, replace=False)])
            d, _ = emid_draws(_subset(src, a), _subset(tgt, b), n_boot=n_boot,
                              seed=derive_seed(seed, "resolution", n, k))
            lo, hi = draws_interval(d, level)
            widths.append(hi - lo)
        measured.append((n, float(np.median(widths)), float(np.quantile(widths, 0.9))))
        rows.append({"n_clusters": n, "median_width": measured[-1][1], "q90_width": measured[-1][2], "n_sim": n_sim,
                     "how": "simulated (subsamples of the measured items)"})
    return pd.DataFrame(rows, columns=["n_clusters", "median_width", "q90_width", "n_sim", "how"])


def _subset(st: ScenarioLikelihoods, rows: np.ndarray) -> ScenarioLikelihoods:
    ix = np.ix_(rows, rows)
    sub = ScenarioLikelihoods(st.lm[ix], st.lr[ix], 0.0, st.clusters[rows],
                              None if st.ids is None else st.ids[rows])
    sub.emi = sub.u0  # the subsample's own estimate (the U form; its bias does not change the width)
    return sub


def reliability(table: pd.DataFrame, column: str = "emid", level: float = 0.95) -> dict:
    """Whether ``column`` (EMID, or EMI) varies across a grid's scenarios by more than its own noise: the
    spread of the estimates (variance S2), the mean noise variance of one estimate (sigma2, from its
    interval ``column``_low / _high: half-width / z), and the reliability (S2 - sigma2) / S2 (the share of the
    spread that is not noise; 0 when S2 <= sigma2). ``n_needed_factor``: by how much the items per cell
    would have to grow (noise variance ~ 1/n) for the reliability to reach 1/2; inf when there is no spread
    beyond noise."""
    from scipy import stats

    lo, hi = f"{column}_low", f"{column}_high"
    t = table[table[column].notna()]
    if len(t) < 3 or lo not in t or t[[lo, hi]].isna().any().any():
        return {"n": len(t), "sd_between": np.nan, "noise_sd": np.nan, "reliability": np.nan,
                "n_needed_factor": np.nan}
    z = stats.norm.ppf(0.5 + level / 2)
    s2 = float(np.var(t[column], ddof=1))
    sigma2 = float(np.mean(((t[hi] - t[lo]) / (2 * z)) ** 2))
    true = s2 - sigma2
    return {"n": len(t), "sd_between": s2 ** 0.5, "noise_sd": sigma2 ** 0.5,
            "reliability": max(0.0, true / s2) if s2 > 0 else 0.0,
            "n_needed_factor": sigma2 / true if true > 0 else np.inf}
