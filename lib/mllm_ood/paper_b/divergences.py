"""Divergences between two sample sets of paper B's bound: the representation Jensen-Shannon divergence,
Wasserstein-2 distances through POT, and the noise baselines they are read against.

Units: JS divergences in **nats**; Wasserstein distances in the units of the embedding space (Euclidean
norm of the embedding vectors; for L2-normalised embeddings they lie in [0, 2]).

What is estimated, and how it relates to paper B's released code (``deeplearning-wisc/mllmshift-emi``):

- **Representation JSD** (Hoyos-Osorio & Sanchez-Giraldo): von Neumann entropies of trace-normalised
  second-moment matrices ``C = Z^T Z / n``: ``JSD = H((C_P + C_Q)/2) - (H(C_P) + H(C_Q))/2`` in
  [0, log 2]. Mixture weights (``weighting``): ``"equal"`` (this project's default) trace-normalises
  each set first, so the mixture is ``(C_P + C_Q)/2`` whatever the sample sizes; ``"size"`` is paper B's
  released code (``main.py``: ``JSD_cov((X^T X + Y^T Y)/2)`` of unit rows, then the von Neumann entropy
  normalises the trace), which weights the sets by their sizes, ``(n C_P + m C_Q)/(n + m)``, while the
  two entropies keep the weights 1/2. Both agree at equal sizes.
- **Wasserstein** variants through POT: exact W2 (``ot.emd2``), sliced W2, and the Bures closed form
  between fitted Gaussians.
- **Noise baselines**, since finite-sample bias dominates in hundreds of dimensions:
  :func:`permutation_null` (the divergence after randomly exchanging rows between the two sets, at the
  same sample sizes; paired swaps for paired sets), used for every bound term, and the older
  :func:`split_half_baseline` (two halves of one set, i.e. at half the size, which overstates the bias),
  kept for the teaching checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import ot

from ..seeding import derive_seed, rng
from ..validation import ParameterError, check_choice, check_positive_int
from .arrays import as_matrix, check_fraction, same_width


def two_sets(zp, zq, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """zp: (n, d) and zq: (m, d) as checked float64 arrays of one width with at least ``min_rows`` rows."""
    zp = as_matrix("zp", zp, min_rows=min_rows)
    zq = as_matrix("zq", zq, min_rows=min_rows)
    same_width("zp", zp, "zq", zq)
    return zp, zq


def bures_w2(m1, c1, m2, c2) -> float:
    """Closed-form W2 (not squared) between N(m1, c1) and N(m2, c2):
    ``W2^2 = |m1 - m2|^2 + tr(c1 + c2 - 2 (c2^1/2 c1 c2^1/2)^1/2)``.

    m1, m2: (d,); c1, c2: (d, d) symmetric positive semi-definite. Units: those of the means.
    Square roots are taken by symmetric eigendecomposition with negative round-off clipped to 0, so
    rank-deficient covariances (n < d samples) are fine.
    """
    m1 = np.asarray(m1, dtype=np.float64)
    m2 = np.asarray(m2, dtype=np.float64)
    c1 = np.asarray(c1, dtype=np.float64)
    c2 = np.asarray(c2, dtype=np.float64)
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.ndim != 1 or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise ParameterError(
            f"bures_w2 needs means (d,) and covariances (d, d) of one d; got {m1.shape}, {c1.shape}, "
            f"{m2.shape}, {c2.shape}"
        )
    w, v = np.linalg.eigh((c2 + c2.T) / 2)
    s = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(s @ c1 @ s)
    cross_tr = float(np.sqrt(np.clip(cross, 0, None)).sum())
    w2sq = float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross_tr)
    return math.sqrt(max(w2sq, 0.0))


# --------------------------------------------------------------------------------------------------
# representation JSD


def second_moment(z) -> np.ndarray:
    """Uncentred second-moment matrix ``Z^T Z / n`` (d, d) float64 of a sample set z: (n, d)."""
    z = as_matrix("z", z)
    return z.T @ z / z.shape[0]


def von_neumann_entropy(c) -> float:
    """Von Neumann entropy ``-sum_k l_k log l_k`` (nats) of the trace-normalised PSD matrix c: (d, d).

    Eigenvalues below 0 (round-off) are dropped, as in the representation-JSD reference code.
    """
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ParameterError(f"von_neumann_entropy needs a square (d, d) matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ParameterError("von_neumann_entropy: matrix contains NaN or infinite values")
    lam = np.linalg.eigvalsh((c + c.T) / 2)
    lam = lam[lam > 0]
    if lam.size == 0:
        raise ParameterError("von_neumann_entropy: matrix has no positive eigenvalue (all-zero embeddings?)")
    lam = lam / lam.sum()
    return float(-(lam * np.log(lam)).sum())


def _unit_trace_rows(what: str, z: np.ndarray) -> np.ndarray:
    """Rows scaled so that ``A^T A`` is z's trace-normalised second moment ``Z^T Z / tr(Z^T Z)``."""
    tr = float((z * z).sum())
    if not tr > 0:
        raise ParameterError(f"{what} is all zeros: its second moment has zero trace")
    return z / math.sqrt(tr)


def _entropy_of_rows(a: np.ndarray) -> float:
    """Von Neumann entropy of ``A^T A`` (trace 1), from whichever of ``A^T A`` (d, d) or the Gram matrix
    ``A A^T`` (n, n) is smaller: both have the same non-zero eigenvalues."""
    return von_neumann_entropy(a @ a.T if a.shape[0] < a.shape[1] else a.T @ a)


JSD_WEIGHTINGS = ("equal", "size")  # the mixture's weights: this project's default, paper B's main.py


def representation_jsd(zp, zq, *, weighting: str = "equal") -> float:
    """Representation Jensen-Shannon divergence (nats) between sample sets zp: (n, d) and zq: (m, d):
    ``H(w C_P + (1 - w) C_Q) - (H(C_P) + H(C_Q))/2`` with ``C = Z^T Z / tr(Z^T Z)``, H the von Neumann
    entropy and ``w = 1/2`` (``weighting="equal"``, the default: in [0, log 2], symmetric, zero for
    identical sets) or ``w = n / (n + m)`` (``"size"``: paper B's ``main.py``, which mixes the unnormalised
    sums over items; it can fall below 0 when the sizes and entropies differ, and is returned unclipped).
    A plug-in estimate: its finite-sample bias is positive, so compare with :func:`permutation_null`.

    Computed through Gram matrices when a set has fewer rows than columns (90 answers in 384-d: a 90 x 90
    instead of a 384 x 384 eigenproblem); ``tests/test_divergences.py`` checks it against the
    covariance form.
    """
    check_choice("JSD weighting", weighting, JSD_WEIGHTINGS)
    zp, zq = two_sets(zp, zq, min_rows=1)
    ap, aq = _unit_trace_rows("zp", zp), _unit_trace_rows("zq", zq)
    if weighting == "equal":
        mix = np.concatenate([ap, aq]) / math.sqrt(2.0)
    else:
        w = len(zp) / (len(zp) + len(zq))
        mix = np.concatenate([ap * math.sqrt(w), aq * math.sqrt(1.0 - w)])
    jsd = _entropy_of_rows(mix) - 0.5 * (_entropy_of_rows(ap) + _entropy_of_rows(aq))
    return max(jsd, 0.0) if weighting == "equal" else jsd  # equal: concavity makes it >= 0; clip round-off only


def representation_jsd_covariance(zp, zq) -> float:
    """:func:`representation_jsd` computed literally from the (d, d) trace-normalised second moments (the
    reference implementation the fast form is tested against)."""
    zp, zq = two_sets(zp, zq, min_rows=1)
    cp = zp.T @ zp / np.trace(zp.T @ zp)
    cq = zq.T @ zq / np.trace(zq.T @ zq)
    return max(von_neumann_entropy((cp + cq) / 2) - 0.5 * (von_neumann_entropy(cp) + von_neumann_entropy(cq)), 0.0)


# --------------------------------------------------------------------------------------------------
# divergences with their same-distribution baselines


@dataclass(frozen=True)
class DivergenceEstimate:
    """A divergence between two sample sets beside its same-distribution split-half baseline."""

    value: float
    baseline: float  # mean of the divergence between random halves of P and of Q (same distribution)
    method: str
    unit: str

    def to_dict(self) -> dict:
        return asdict(self)


def split_half_baseline(divergence: Callable[[np.ndarray, np.ndarray], float], zp, zq, *, seed: int = 0) -> float:
    """Same-distribution baseline of ``divergence`` for sets zp: (n, d), zq: (m, d), n, m >= 4.

    Each set is split at random into two halves and ``divergence(half_1, half_2)`` measured; the mean of
    the two values is returned. The halves are half as large as the sets, so this slightly *overstates*
    the finite-sample bias at full size: a value well above it is a real difference.
    """
    zp, zq = two_sets(zp, zq, min_rows=4)
    values = []
    for name, z in (("p", zp), ("q", zq)):
        order = rng(seed, "split_half", name).permutation(len(z))
        half = len(z) // 2
        values.append(float(divergence(z[order[:half]], z[order[half : 2 * half]])))
    return float(np.mean(values))


@dataclass(frozen=True)
class NullTest:
    """A divergence between two sample sets beside its permutation null at the *same* sample sizes.

    ``null_mean``: mean divergence over the permuted splits (what sampling noise alone gives);
    ``null_high``: their ``level`` quantile; ``p``: ``(1 + #{null >= value}) / (1 + n_perm)``, the
    one-sided permutation p-value of "the two sets come from one distribution"."""

    value: float
    null_mean: float
    null_high: float
    p: float
    n_perm: int
    paired: bool

    def to_dict(self) -> dict:
        return asdict(self)


def permutation_null(divergence: Callable[[np.ndarray, np.ndarray], float], zp, zq, *, paired: bool = False,
                     n_perm: int = 100, level: float = 0.95, seed: int = 0) -> NullTest:
    """``divergence(zp, zq)`` with a permutation null that keeps both sample sizes.

    Unpaired: the rows of zp (n, d) and zq (m, d) are pooled and re-split at random into sets of n and m.
    Paired (``paired=True``, n == m, row i of zp and of zq belong together, e.g. the model's and the
    reference answer to the same question, or one question clean and perturbed): each pair is swapped
    between the sets with probability 1/2, so the null keeps what the pair shares. Under "one
    distribution" every such split is as likely as the observed one, so ``p`` is exact up to Monte Carlo
    error. Needs n, m >= 2.
    """
    check_positive_int("n_perm", n_perm)
    check_fraction("level", level)
    zp, zq = two_sets(zp, zq, min_rows=2)
    if paired and len(zp) != len(zq):
        raise ParameterError(f"a paired null needs sets of equal size, got {len(zp)} and {len(zq)}")
    value = float(divergence(zp, zq))
    divergence = _resplit_statistic(divergence, zp, zq)
    g = rng(seed, "permutation_null", "paired" if paired else "pooled")
    null = np.empty(n_perm)
    if paired:
        for b in range(n_perm):
            swap = g.random(len(zp)) < 0.5
            null[b] = divergence(np.where(swap[:, None], zq, zp), np.where(swap[:, None], zp, zq))
    else:
        pooled = np.concatenate([zp, zq])
        for b in range(n_perm):
            order = g.permutation(len(pooled))
            null[b] = divergence(pooled[order[: len(zp)]], pooled[order[len(zp):]])
    return NullTest(value=value, null_mean=float(null.mean()), null_high=float(np.quantile(null, level)),
                    p=float((1 + np.sum(null >= value - 1e-12)) / (1 + n_perm)), n_perm=n_perm, paired=paired)


def _resplit_statistic(divergence: Callable[[np.ndarray, np.ndarray], float], zp: np.ndarray,
                       zq: np.ndarray) -> Callable[[np.ndarray, np.ndarray], float]:
    """What :func:`permutation_null` recomputes on each re-split: ``divergence`` itself, except for
    :func:`representation_jsd` of two equal-size sets of equal-norm rows (unit embeddings, paired sets):
    there every re-split has the *same* mixture, the pooled rows over one common trace, so its entropy (the
    largest eigenproblem, 2n x 2n) is computed once and each re-split costs the two sets' entropies only.
    Used when the squared norms agree to 1e-6 (float32 unit rows do): the re-splits' mixtures then differ by
    round-off only (``tests/test_divergences.py`` checks the null against the recomputed one)."""
    if divergence is not representation_jsd or len(zp) != len(zq):
        return divergence
    pooled = np.concatenate([zp, zq])
    norms = np.einsum("ij,ij->i", pooled, pooled)
    if not np.allclose(norms, norms[0], rtol=1e-6, atol=0):
        return divergence
    h_mix = _entropy_of_rows(np.concatenate([_unit_trace_rows("zp", zp), _unit_trace_rows("zq", zq)]) / math.sqrt(2.0))

    def same_mixture_jsd(a: np.ndarray, b: np.ndarray) -> float:
        h_sets = _entropy_of_rows(_unit_trace_rows("zp", a)) + _entropy_of_rows(_unit_trace_rows("zq", b))
        return max(h_mix - 0.5 * h_sets, 0.0)

    return same_mixture_jsd


def jsd_estimate(zp, zq, *, seed: int = 0) -> DivergenceEstimate:
    """:func:`representation_jsd` (nats) of zp: (n, d), zq: (m, d) with its split-half baseline."""
    return DivergenceEstimate(
        value=representation_jsd(zp, zq),
        baseline=split_half_baseline(representation_jsd, zp, zq, seed=seed),
        method="representation_jsd",
        unit="nats",
    )


def _subsample(z: np.ndarray, max_n: int, seed: int, name: str) -> np.ndarray:
    if len(z) <= max_n:
        return z
    return z[np.sort(rng(seed, "subsample", name).choice(len(z), size=max_n, replace=False))]


def _exact_w2(zp: np.ndarray, zq: np.ndarray) -> float:
    a = np.full(len(zp), 1.0 / len(zp))
    b = np.full(len(zq), 1.0 / len(zq))
    cost = ot.dist(zp, zq, metric="sqeuclidean")
    w2sq = float(ot.emd2(a, b, cost, numItermax=max(100_000, 50 * len(zp) * len(zq))))
    return math.sqrt(max(w2sq, 0.0))


def wasserstein_exact(zp, zq, *, max_n: int = 2000, seed: int = 0) -> DivergenceEstimate:
    """Exact empirical W2 (not squared; embedding units) between zp: (n, d) and zq: (m, d), uniform
    weights, squared-Euclidean cost, solved by ``ot.emd2``; with its split-half baseline.

    A set larger than ``max_n`` is first subsampled (seeded): the network-simplex solve grows roughly
    cubically with n. Needs n, m >= 4 (for the baseline halves).
    """
    check_positive_int("max_n", max_n)
    zp, zq = two_sets(zp, zq, min_rows=4)
    zp, zq = _subsample(zp, max_n, seed, "p"), _subsample(zq, max_n, seed, "q")
    return DivergenceEstimate(
        value=_exact_w2(zp, zq),
        baseline=split_half_baseline(_exact_w2, zp, zq, seed=seed),
        method="wasserstein_exact",
        unit="embedding units",
    )


def wasserstein_sliced(zp, zq, *, n_projections: int = 200, seed: int = 0) -> DivergenceEstimate:
    """Sliced W2 (``ot.sliced_wasserstein_distance``, p=2, ``n_projections`` seeded random directions;
    embedding units) between zp: (n, d) and zq: (m, d), with its split-half baseline."""
    check_positive_int("n_projections", n_projections)
    zp, zq = two_sets(zp, zq, min_rows=4)
    proj_seed = derive_seed(seed, "sliced")

    def sliced(a: np.ndarray, b: np.ndarray) -> float:
        return float(ot.sliced_wasserstein_distance(a, b, n_projections=n_projections, p=2, seed=proj_seed))

    return DivergenceEstimate(
        value=sliced(zp, zq),
        baseline=split_half_baseline(sliced, zp, zq, seed=seed),
        method="wasserstein_sliced",
        unit="embedding units",
    )


def _gaussian_fit_w2(a: np.ndarray, b: np.ndarray) -> float:
    return bures_w2(a.mean(0), np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], -1),
                    b.mean(0), np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], -1))


def wasserstein_gaussian(zp, zq, *, seed: int = 0) -> DivergenceEstimate:
    """W2 (embedding units) between Gaussians fitted to zp: (n, d) and zq: (m, d) (sample means and
    covariances, ddof=1), by the Bures closed form :func:`bures_w2`; with its split-half baseline."""
    zp, zq = two_sets(zp, zq, min_rows=4)
    return DivergenceEstimate(
        value=_gaussian_fit_w2(zp, zq),
        baseline=split_half_baseline(_gaussian_fit_w2, zp, zq, seed=seed),
        method="wasserstein_gaussian",
        unit="embedding units",
    )


def w2_function(method: str, seed: int = 0) -> Callable[[np.ndarray, np.ndarray], float]:
    """The plain W2 estimator (embedding units; no validation, no baseline) of ``method``: ``"exact"``
    (``ot.emd2``), ``"sliced"`` (200 seeded projections) or ``"gaussian"`` (Bures between fitted
    Gaussians), for use inside :func:`permutation_null`."""
    check_choice("wasserstein method", method, ["exact", "sliced", "gaussian"])
    if method == "exact":
        return _exact_w2
    if method == "gaussian":
        return _gaussian_fit_w2
    proj_seed = derive_seed(seed, "sliced")
    return lambda a, b: float(ot.sliced_wasserstein_distance(a, b, n_projections=200, p=2, seed=proj_seed))


WASSERSTEIN_METHODS = {
    "exact": wasserstein_exact,
    "sliced": wasserstein_sliced,
    "gaussian": wasserstein_gaussian,
}

