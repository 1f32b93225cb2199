"""Resampling units that match the data: items that share a cluster (the three LLaVA-Bench COCO questions
about one image, the seeds of one ICL query) are drawn together, so what they share is not counted as
independent evidence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..seeding import derive_seed
from ..validation import ParameterError, check_positive_int


def cluster_members(clusters) -> list[np.ndarray]:
    """The item indices of each cluster (one label per item), clusters in order of first appearance."""
    labels = np.asarray(clusters, dtype=object)
    if labels.ndim != 1 or not len(labels):
        raise ParameterError("cluster resampling needs a non-empty 1-D array of cluster labels")
    members = {g: [] for g in dict.fromkeys(labels.tolist())}
    for i, g in enumerate(labels.tolist()):
        members[g].append(i)
    return [np.asarray(v, dtype=int) for v in members.values()]


def draws_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``draws`` (non-finite draws dropped; NaN, NaN
    when none is left)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return np.nan, np.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return float(lo), float(hi)


def cluster_resamples(clusters, n_boot: int, seed: int = 0):
    """Yield ``n_boot`` index arrays into ``clusters`` (one label per item), each drawing as many clusters
    as there are, with replacement, and keeping every item of a drawn cluster (the cluster bootstrap)."""
    members = cluster_members(clusters)
    check_positive_int("n_boot", n_boot)
    rng = np.random.default_rng(derive_seed(seed, "cluster-bootstrap", len(clusters), len(members)))
    for _ in range(n_boot):
        yield np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])


def cluster_bootstrap_ci(values, clusters, *, statistic: Callable[[np.ndarray], float] | None = None,
                         n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(statistic, low, high): ``statistic`` (default the mean) of ``values`` (one row per item) with a
    percentile interval from the cluster bootstrap over ``clusters`` (:func:`cluster_resamples`). For a
    paired difference pass the per-item differences; for several columns pass a 2-D array and a statistic
    of its rows."""
    v = np.asarray(values, dtype=float)
    if len(v) != len(np.asarray(clusters, dtype=object)):
        raise ParameterError(f"values ({len(v)}) and clusters ({len(clusters)}) need one entry per item")
    if not 0 < level < 1:
        raise ParameterError(f"level must be in (0, 1), got {level}")
    stat = statistic or (lambda x: float(np.mean(x)))
    draws = [stat(v[i]) for i in cluster_resamples(clusters, n_boot, seed)]
    return (float(stat(v)), *draws_interval(draws, level))
