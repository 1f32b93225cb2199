"""Information measures of paper B (Oh et al., ICML 2025): MI estimators, representation JSD, EMI,
EMID, its upper bound, and Wasserstein variants of that bound.

Units. Every mutual information, entropy and JS divergence here is in **nats**. Wasserstein distances
are in the units of the embedding space (Euclidean norm of the embedding vectors); for L2-normalised
embeddings they lie in [0, 2].

Shapes. Sample sets are 2-D arrays ``(n, d)``: one row per sample. Inputs may be numpy arrays or torch
tensors; they are validated (2-D, finite, enough rows, matching widths) before any compute, and a bad
one raises :class:`mllm_ood.validation.ParameterError` with one message.

What is estimated, and how it relates to paper B's released code (``deeplearning-wisc/mllmshift-emi``):

- **CLUB** (Cheng et al. 2020): a Gaussian ``q(y|x) = N(mu(x), diag(exp(logvar(x))))`` with two 2-layer
  MLPs (``Linear -> Tanh -> Linear``; hidden 250 as in paper B, whose code passes 500 and halves it) and
  ``logvar = logvar_bound * tanh(.)``, ``logvar_bound = 1`` as in paper B (so the conditional variance
  is confined to [e^-1, e] per coordinate). It is fitted by maximum likelihood on pairs, and the
  estimate is ``mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i)``. For a q equal to the true
  conditional it upper-bounds I(X;Y); for jointly Gaussian data with correlation rho per coordinate it
  tends to ``d rho^2 / (1 - rho^2)`` (:func:`gaussian_club_limit`), above the truth
  ``-(d/2) log(1 - rho^2)`` (:func:`gaussian_mi`).
- **InfoNCE** (van den Oord et al. 2018): a lower bound, never above ``log(batch size)``.
- **Representation JSD** (Hoyos-Osorio & Sanchez-Giraldo): von Neumann entropies of trace-normalised
  second-moment matrices ``C = Z^T Z / n``: ``JSD = H((C_P + C_Q)/2) - (H(C_P) + H(C_Q))/2`` in
  [0, log 2]. Paper B's code averages the *unnormalised* ``Z^T Z`` of the two sets; for L2-normalised
  embeddings and equal sample sizes this is the same matrix; here each set is trace-normalised first
  so that unequal sample sizes do not weigh the mixture.
- **EMID bound** (paper B, Theorem): see :func:`emid_bound`.
- **Wasserstein** variants through POT: exact W2 (``ot.emd2``), sliced W2, and the Bures closed form
  between fitted Gaussians.
- **Noise baselines**, since finite-sample bias dominates in hundreds of dimensions:
  :func:`permutation_null` (the divergence after randomly exchanging rows between the two sets, at the
  same sample sizes; paired swaps for paired sets), used for every bound term, and the older
  :func:`split_half_baseline` (two halves of one set, i.e. at half the size, which overstates the bias),
  kept for the teaching checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import ot
import torch
from torch import nn

from .mllm.refs import pick_device
from .progress import tqdm

from .seeding import derive_seed, rng
from .validation import ParameterError, check_choice, check_positive_int

LOG_2PI = math.log(2.0 * math.pi)
CLUB_WEIGHTS = "club.pt"
CLUB_CONFIG = "club.json"


# --------------------------------------------------------------------------------------------------
# validation helpers


def _as_matrix(what: str, a, *, min_rows: int = 1) -> np.ndarray:
    """``a`` as a finite float64 (n, d) array with n >= min_rows, or ParameterError."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what} must be a numeric (n, d) array: {err}") from None
    if arr.ndim != 2:
        raise ParameterError(f"{what} must be a 2-D (n, d) array, got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ParameterError(f"{what} must have at least one column, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ParameterError(f"{what} needs at least {min_rows} rows (samples), got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{what} contains NaN or infinite values")
    return arr


def _same_width(what_p: str, p: np.ndarray, what_q: str, q: np.ndarray) -> None:
    if p.shape[1] != q.shape[1]:
        raise ParameterError(f"{what_p} and {what_q} must have the same width d, got {p.shape[1]} and {q.shape[1]}")


def _paired(x, y, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = _as_matrix("x", x, min_rows=min_rows)
    y = _as_matrix("y", y, min_rows=min_rows)
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"x and y must be paired row by row, got {x.shape[0]} and {y.shape[0]} rows")
    return x, y


def _check_fraction(what: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < float(value) < 1.0:
        raise ParameterError(f"{what} must be a number strictly between 0 and 1, got {value!r}")


def _check_positive_float(what: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not float(value) > 0:
        raise ParameterError(f"{what} must be a positive number, got {value!r}")


def _split(n: int, val_fraction: float, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into (fit, held-out) index arrays, each non-empty."""
    order = rng(seed, task, "split").permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return order[n_val:], order[:n_val]


# --------------------------------------------------------------------------------------------------
# closed forms (teaching and tests)


def gaussian_mi(rho: float, d: int) -> float:
    """True MI (nats) of jointly Gaussian X, Y in R^d with correlation ``rho`` per coordinate pair:
    ``-(d/2) log(1 - rho^2)``."""
    if not -1.0 < float(rho) < 1.0:
        raise ParameterError(f"rho must lie in (-1, 1), got {rho!r}")
    check_positive_int("d", d)
    return -0.5 * d * math.log1p(-float(rho) ** 2)


def gaussian_club_limit(rho: float, d: int, logvar_bound: float | None = None) -> float:
    """Population value (nats) of the CLUB estimate for the Gaussians of :func:`gaussian_mi` when q(y|x)
    is the best Gaussian: ``d rho^2 / s2`` with conditional variance ``s2 = 1 - rho^2`` (always >= the
    true MI). With a CLUB whose log-variance is confined to ``[-logvar_bound, logvar_bound]`` (paper B: 1)
    the fitted variance sticks at ``s2 = max(1 - rho^2, exp(-logvar_bound))``, and for rho close to 1 the
    estimate falls below the truth (e.g. bound 1: rho > 0.998).
    """
    if not -1.0 < float(rho) < 1.0:
        raise ParameterError(f"rho must lie in (-1, 1), got {rho!r}")
    check_positive_int("d", d)
    s2 = 1.0 - float(rho) ** 2
    if logvar_bound is not None:
        _check_positive_float("logvar_bound", logvar_bound)
        s2 = min(max(s2, math.exp(-logvar_bound)), math.exp(logvar_bound))
    return d * float(rho) ** 2 / s2


def correlated_gaussians(n: int, d: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs (x, y), each (n, d) float64, standard normal marginals and corr(x_k, y_k) = rho."""
    check_positive_int("n", n)
    check_positive_int("d", d)
    if not -1.0 < float(rho) < 1.0:
        raise ParameterError(f"rho must lie in (-1, 1), got {rho!r}")
    g = rng(seed, "correlated_gaussians", n, d, rho)
    x = g.standard_normal((n, d))
    y = rho * x + math.sqrt(1.0 - rho**2) * g.standard_normal((n, d))
    return x, y


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
# CLUB


@dataclass(frozen=True)
class CLUBConfig:
    """Architecture of the CLUB variational network q(y|x)."""

    x_dim: int
    y_dim: int
    hidden: int = 250  # paper B: mi_est_dim=500, halved inside its CLUB
    logvar_bound: float = 1.0  # logvar = bound * tanh(.); paper B: 1 (variance in [e^-1, e])


class CLUB(nn.Module):
    """Gaussian variational conditional ``q(y|x)`` and the CLUB MI estimate built on it.

    ``mu(x)``: Linear(x_dim, hidden) -> Tanh -> Linear(hidden, y_dim);
    ``logvar(x)``: Linear(x_dim, hidden) -> Tanh -> Linear(hidden, y_dim) -> Tanh, times ``logvar_bound``.
    ``history`` holds the training curve after :func:`train_club` (empty otherwise).
    """

    def __init__(self, config: CLUBConfig):
        super().__init__()
        check_positive_int("CLUB x_dim", config.x_dim)
        check_positive_int("CLUB y_dim", config.y_dim)
        check_positive_int("CLUB hidden", config.hidden)
        _check_positive_float("CLUB logvar_bound", config.logvar_bound)
        self.config = config
        h = config.hidden
        self.mu_net = nn.Sequential(nn.Linear(config.x_dim, h), nn.Tanh(), nn.Linear(h, config.y_dim))
        self.logvar_net = nn.Sequential(
            nn.Linear(config.x_dim, h), nn.Tanh(), nn.Linear(h, config.y_dim), nn.Tanh()
        )
        self.history: dict = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def mu_logvar(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(y|x); x: (n, x_dim) -> two (n, y_dim) tensors."""
        return self.mu_net(x), self.config.logvar_bound * self.logvar_net(x)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log q(y_i | x_i)`` in nats (normalised Gaussian density), shape (n,)."""
        mu, logvar = self.mu_logvar(x)
        return -0.5 * (((y - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(dim=1)

    def _tensor(self, what: str, a, width: int) -> torch.Tensor:
        arr = _as_matrix(what, a)
        if arr.shape[1] != width:
            raise ParameterError(f"{what} has width {arr.shape[1]} but this CLUB expects {width}")
        return torch.as_tensor(arr, dtype=torch.float32, device=self.device)

    def mean_log_likelihood(self, x, y) -> float:
        """Mean of ``log q(y_i|x_i)`` over paired rows (nats); x: (n, x_dim), y: (n, y_dim)."""
        x, y = _paired(x, y, min_rows=1)
        xt, yt = self._tensor("x", x, self.config.x_dim), self._tensor("y", y, self.config.y_dim)
        with torch.no_grad():
            return float(self.log_likelihood(xt, yt).double().mean())

    def mi(self, x, y, *, negatives: str = "all", seed: int = 0) -> float:
        """CLUB estimate of I(X;Y) in nats from paired samples x: (n, x_dim), y: (n, y_dim), n >= 2.

        ``mean_i log q(y_i|x_i) - mean over negatives of log q(y_j|x_i)``, where the negatives are
        ``"all"`` n^2 pairs (i, j) (computed exactly in O(n d) memory: for a diagonal Gaussian,
        ``mean_j (y_j - mu_i)^2 = (mean_j y_j - mu_i)^2 + var_j(y_j)`` per coordinate), as in paper B,
        or ``"shuffle"``: one seeded permutation j = pi(i).
        The Gaussian normalisers of the two terms cancel, so this equals paper B's ``forward``.
        """
        check_choice("CLUB negatives", negatives, ["all", "shuffle"])
        x, y = _paired(x, y, min_rows=2)
        xt = self._tensor("x", x, self.config.x_dim)
        yt = self._tensor("y", y, self.config.y_dim)
        with torch.no_grad():
            mu, logvar = (t.double() for t in self.mu_logvar(xt))
            yd = yt.double()
            inv_var = torch.exp(-logvar)
            positive = -0.5 * (((yd - mu) ** 2) * inv_var + logvar).sum(dim=1)
            if negatives == "all":
                y_mean = yd.mean(dim=0, keepdim=True)
                y_var = yd.var(dim=0, unbiased=False, keepdim=True)
                sq = (mu - y_mean) ** 2 + y_var
            else:
                perm = torch.as_tensor(rng(seed, "club", "shuffle").permutation(len(yd)), device=yd.device)
                sq = (yd[perm] - mu) ** 2
            negative = -0.5 * (sq * inv_var + logvar).sum(dim=1)
            return float(positive.mean() - negative.mean())

    def save(self, folder) -> Path:
        """Write ``club.pt`` (state dict) and ``club.json`` (config and training history) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / CLUB_WEIGHTS)
        (folder / CLUB_CONFIG).write_text(
            json.dumps({"config": asdict(self.config), "history": self.history}, indent=1)
        )
        return folder

    @classmethod
    def load(cls, folder, device: str | torch.device | None = None) -> CLUB:
        """Load a CLUB written by :meth:`save` (onto ``device``, default cuda if available else cpu)."""
        folder = Path(folder)
        for name in (CLUB_WEIGHTS, CLUB_CONFIG):
            if not (folder / name).is_file():
                raise ParameterError(f"CLUB checkpoint {str(folder)!r} lacks {name} (expected a folder from CLUB.save)")
        try:
            meta = json.loads((folder / CLUB_CONFIG).read_text())
            config = CLUBConfig(**meta["config"])
        except (ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"CLUB checkpoint {str(folder)!r}: unreadable {CLUB_CONFIG}: {err}") from None
        device = torch.device(pick_device(device))
        club = cls(config)
        club.load_state_dict(torch.load(folder / CLUB_WEIGHTS, map_location="cpu", weights_only=True))
        club.history = meta.get("history", {})
        return club.to(device).eval()


def train_club(
    x,
    y,
    *,
    hidden: int = 250,
    logvar_bound: float = 1.0,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 300,
    patience: int = 20,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> CLUB:
    """Fit a CLUB's q(y|x) by maximum likelihood on paired samples x: (n, x_dim), y: (n, y_dim).

    A seeded ``val_fraction`` of the pairs is held out; Adam on mini-batches of the rest minimises
    ``-log q(y|x)``; after every epoch the held-out mean log-likelihood (nats) is measured, the best
    weights are kept, and training stops after ``patience`` epochs without improvement. The returned
    model (in eval mode) has ``history = {"train_ll": [...], "val_ll": [...], "best_epoch": int, ...}``.
    Initialisation, split and batch order all derive from ``seed``; the global torch RNG is untouched.
    """
    x, y = _paired(x, y, min_rows=4)
    for what, v in [("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)]:
        check_positive_int(what, v)
    _check_positive_float("lr", lr)
    _check_fraction("val_fraction", val_fraction)
    config = CLUBConfig(x_dim=x.shape[1], y_dim=y.shape[1], hidden=hidden, logvar_bound=logvar_bound)
    device = torch.device(pick_device(device))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "club", "init"))
        club = CLUB(config).to(device)
    fit_idx, val_idx = _split(len(x), val_fraction, seed, "club")
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    x_val, y_val = xt[val_idx], yt[val_idx]
    opt = torch.optim.Adam(club.parameters(), lr=lr)
    order_rng = rng(seed, "club", "batches")

    history = {"train_ll": [], "val_ll": [], "best_epoch": -1, "n_fit": len(fit_idx), "n_val": len(val_idx)}
    best_val, best_state, stale = -math.inf, None, 0
    for epoch in tqdm(range(max_epochs), desc="CLUB", disable=not progress, leave=False):
        club.train()
        order = fit_idx[order_rng.permutation(len(fit_idx))]
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            b = torch.as_tensor(order[start : start + batch_size], device=device)
            ll = club.log_likelihood(xt[b], yt[b]).mean()
            opt.zero_grad()
            (-ll).backward()
            opt.step()
            total += ll.item() * len(b)
            count += len(b)
        club.eval()
        with torch.no_grad():
            val_ll = float(club.log_likelihood(x_val, y_val).mean())
        history["train_ll"].append(total / count)
        history["val_ll"].append(val_ll)
        if val_ll > best_val:
            best_val, stale, history["best_epoch"] = val_ll, 0, epoch
            best_state = {k: v.detach().clone() for k, v in club.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is None:  # every held-out log-likelihood was NaN
        raise RuntimeError("CLUB training diverged (held-out log-likelihood is NaN); lower lr or check the inputs")
    club.load_state_dict(best_state)
    club.history = history
    return club.eval()


# --------------------------------------------------------------------------------------------------
# InfoNCE


class _SeparableCritic(nn.Module):
    def __init__(self, x_dim: int, y_dim: int, hidden: int, embed_dim: int):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))
        self.h = nn.Sequential(nn.Linear(y_dim, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.h(y).T  # (n, n): f(x_i, y_j)


class _BilinearCritic(nn.Module):
    def __init__(self, x_dim: int, y_dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(x_dim, y_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ self.w @ y.T


def _infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE bound (nats) from a (B, B) score matrix with positives on the diagonal."""
    b = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(b)


def infonce_mi(
    x,
    y,
    *,
    critic: str = "separable",
    hidden: int = 128,
    embed_dim: int = 32,
    epochs: int = 100,
    batch_size: int = 128,
    eval_batch_size: int | None = None,
    lr: float = 1e-3,
    val_fraction: float = 0.3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> float:
    """InfoNCE lower bound on I(X;Y) in nats from paired samples x: (n, x_dim), y: (n, y_dim).

    A critic f(x, y) is trained on a seeded ``1 - val_fraction`` of the pairs for a fixed number of
    ``epochs`` (no selection on the held-out pairs, so the result is an honest held-out bound), then
    ``mean_i [f(x_i, y_i) - log mean_j exp f(x_i, y_j)]`` is averaged over held-out batches of
    ``eval_batch_size`` (default: all held-out pairs in one batch). The value can never exceed
    ``log(eval_batch_size)``: InfoNCE saturates when the true MI is large.

    ``critic``: ``"separable"`` (``g(x) . h(y)``, two ReLU MLPs with ``hidden`` units into ``embed_dim``)
    or ``"bilinear"`` (``x^T W y``).
    """
    check_choice("InfoNCE critic", critic, ["separable", "bilinear"])
    x, y = _paired(x, y, min_rows=4)
    for what, v in [("hidden", hidden), ("embed_dim", embed_dim), ("epochs", epochs), ("batch_size", batch_size)]:
        check_positive_int(what, v)
    check_positive_int("eval_batch_size", eval_batch_size, allow_none=True)
    _check_positive_float("lr", lr)
    _check_fraction("val_fraction", val_fraction)
    fit_idx, val_idx = _split(len(x), val_fraction, seed, "infonce")
    if eval_batch_size is not None and eval_batch_size > len(val_idx):
        raise ParameterError(f"eval_batch_size {eval_batch_size} exceeds the {len(val_idx)} held-out pairs")
    if batch_size < 2 or len(fit_idx) < 2:
        raise ParameterError("InfoNCE needs batches of at least 2 pairs to contrast")
    device = torch.device(pick_device(device))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "infonce", "init"))
        if critic == "separable":
            net = _SeparableCritic(x.shape[1], y.shape[1], hidden, embed_dim).to(device)
        else:
            net = _BilinearCritic(x.shape[1], y.shape[1]).to(device)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    order_rng = rng(seed, "infonce", "batches")
    for _ in tqdm(range(epochs), desc="InfoNCE", disable=not progress, leave=False):
        order = fit_idx[order_rng.permutation(len(fit_idx))]
        for start in range(0, len(order), batch_size):
            b = torch.as_tensor(order[start : start + batch_size], device=device)
            if len(b) < 2:
                continue
            loss = -_infonce(net(xt[b], yt[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()

    eb = eval_batch_size or len(val_idx)
    values = []
    with torch.no_grad():
        for start in range(0, len(val_idx) - eb + 1, eb):  # full batches only: each has ceiling log(eb)
            b = torch.as_tensor(val_idx[start : start + eb], device=device)
            values.append(float(_infonce(net(xt[b], yt[b]))))
    return float(np.mean(values))


# --------------------------------------------------------------------------------------------------
# representation JSD


def second_moment(z) -> np.ndarray:
    """Uncentred second-moment matrix ``Z^T Z / n`` (d, d) float64 of a sample set z: (n, d)."""
    z = _as_matrix("z", z)
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


def representation_jsd(zp, zq) -> float:
    """Representation Jensen-Shannon divergence (nats, in [0, log 2]) between sample sets zp: (n, d)
    and zq: (m, d): ``H((C_P + C_Q)/2) - (H(C_P) + H(C_Q))/2`` with ``C = Z^T Z / n / tr(Z^T Z / n)``
    and H the von Neumann entropy. Zero for identical sets; symmetric. A plug-in estimate: its
    finite-sample bias is positive, so compare with :func:`permutation_null`.

    Computed through Gram matrices when a set has fewer rows than columns (90 answers in 384-d: a 90 x 90
    instead of a 384 x 384 eigenproblem); ``tests/test_information.py`` checks it against the
    covariance form.
    """
    zp = _as_matrix("zp", zp)
    zq = _as_matrix("zq", zq)
    _same_width("zp", zp, "zq", zq)
    ap, aq = _unit_trace_rows("zp", zp), _unit_trace_rows("zq", zq)
    mix = np.concatenate([ap, aq]) / math.sqrt(2.0)
    jsd = _entropy_of_rows(mix) - 0.5 * (_entropy_of_rows(ap) + _entropy_of_rows(aq))
    return max(jsd, 0.0)  # concavity makes it >= 0; clip round-off only


def representation_jsd_covariance(zp, zq) -> float:
    """:func:`representation_jsd` computed literally from the (d, d) trace-normalised second moments (the
    reference implementation the fast form is tested against)."""
    zp = _as_matrix("zp", zp)
    zq = _as_matrix("zq", zq)
    _same_width("zp", zp, "zq", zq)
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
    zp = _as_matrix("zp", zp, min_rows=4)
    zq = _as_matrix("zq", zq, min_rows=4)
    _same_width("zp", zp, "zq", zq)
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
    _check_fraction("level", level)
    zp = _as_matrix("zp", zp, min_rows=2)
    zq = _as_matrix("zq", zq, min_rows=2)
    _same_width("zp", zp, "zq", zq)
    if paired and len(zp) != len(zq):
        raise ParameterError(f"a paired null needs sets of equal size, got {len(zp)} and {len(zq)}")
    value = float(divergence(zp, zq))
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
    zp = _as_matrix("zp", zp, min_rows=4)
    zq = _as_matrix("zq", zq, min_rows=4)
    _same_width("zp", zp, "zq", zq)
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
    zp = _as_matrix("zp", zp, min_rows=4)
    zq = _as_matrix("zq", zq, min_rows=4)
    _same_width("zp", zp, "zq", zq)
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
    zp = _as_matrix("zp", zp, min_rows=4)
    zq = _as_matrix("zq", zq, min_rows=4)
    _same_width("zp", zp, "zq", zq)
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


# --------------------------------------------------------------------------------------------------
# EMID bounds


@dataclass(frozen=True)
class BoundResult:
    """An EMID upper-bound estimate and the four divergence terms it was built from."""

    bound: float
    form: str  # "scale-adjusted" or "general"
    divergence: str  # "jsd" or "wasserstein"
    v: float  # input image term (0 when text-only)
    t: float  # input text term
    py: float  # source: model output vs reference output
    qy: float  # target: model output vs reference output

    def to_dict(self) -> dict:
        return asdict(self)


def _check_terms(names: tuple[str, ...], values: tuple) -> list[float]:
    out = []
    for n, v in zip(names, values):
        if not isinstance(v, (int, float, np.floating)) or isinstance(v, bool) or not math.isfinite(float(v)):
            raise ParameterError(f"bound term {n} must be a finite number, got {v!r}")
        if float(v) < -1e-9:
            raise ParameterError(f"bound term {n} must be >= 0 (a divergence), got {v!r}")
        out.append(max(float(v), 0.0))
    return out


def emid_bound(
    js_v: float,
    js_t: float,
    js_py: float,
    js_qy: float,
    *,
    entropy_scaler: float | None = None,
    output_constant: float = 4.0,
) -> BoundResult:
    """Paper B's upper bound on EMID from four JS divergences (nats).

    - ``entropy_scaler=None`` (the form of paper B's released code, "scale-adjusted")::

        UB = sqrt(JSv) + sqrt(JSt) + JSpy^(1/4) + JSqy^(1/4)

    - ``entropy_scaler=H`` (the theorem's form, "general")::

        UB = H * (sqrt(JSv) + sqrt(JSt)) + output_constant * (JSpy^(1/4) + JSqy^(1/4))

      with ``output_constant = 4`` in the theorem and H an upper bound on the output entropy.

    ``JSv``/``JSt``: image / text input divergence between source P and target Q (pass ``js_v=0`` for
    text-only data); ``JSpy``/``JSqy``: model-response vs reference-response divergence on P and on Q.
    """
    v, t, py, qy = _check_terms(("js_v", "js_t", "js_py", "js_qy"), (js_v, js_t, js_py, js_qy))
    if entropy_scaler is None:
        bound, form = math.sqrt(v) + math.sqrt(t) + py**0.25 + qy**0.25, "scale-adjusted"
    else:
        _check_positive_float("entropy_scaler", entropy_scaler)
        _check_positive_float("output_constant", output_constant)
        bound = entropy_scaler * (math.sqrt(v) + math.sqrt(t)) + output_constant * (py**0.25 + qy**0.25)
        form = "general"
    return BoundResult(bound=bound, form=form, divergence="jsd", v=v, t=t, py=py, qy=qy)


def wasserstein_emid_bound(
    w_v: float,
    w_t: float,
    w_py: float,
    w_qy: float,
    *,
    entropy_scaler: float | None = None,
    output_constant: float = 4.0,
) -> BoundResult:
    """The EMID bound with each JS divergence replaced by the *squared* W2 distance (a heuristic variant,
    not a theorem): ``sqrt(JS)`` (the JS distance, a metric) becomes the metric ``W``, so that

        scale-adjusted:  UB_W = W_v + W_t + sqrt(W_py) + sqrt(W_qy)
        general:         UB_W = H (W_v + W_t) + output_constant (sqrt(W_py) + sqrt(W_qy))

    Inputs: W2 distances (not squared, embedding units) for the same four pairs as :func:`emid_bound`.
    """
    v, t, py, qy = _check_terms(("w_v", "w_t", "w_py", "w_qy"), (w_v, w_t, w_py, w_qy))
    r = emid_bound(v**2, t**2, py**2, qy**2, entropy_scaler=entropy_scaler, output_constant=output_constant)
    return BoundResult(bound=r.bound, form=r.form, divergence="wasserstein", v=v, t=t, py=py, qy=qy)


# --------------------------------------------------------------------------------------------------
# EMI and EMID


def l2_normalise(z) -> np.ndarray:
    """Rows of z: (n, d) scaled to unit Euclidean norm (float32); zero rows stay zero."""
    z = _as_matrix("z", z)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def query_embedding(text, image=None) -> np.ndarray:
    """Paper B's query embedding x: (n, d) float32 = ``(z_v + z_t) / 2`` of the L2-normalised image and
    query-text embeddings (text: (n, d), image: (n, d) or None), or ``z_t`` alone when there are no images.
    """
    zt = l2_normalise(_as_matrix("text embeddings", text))
    if image is None:
        return zt
    zv = l2_normalise(_as_matrix("image embeddings", image))
    if zv.shape != zt.shape:
        raise ParameterError(f"image and text embeddings must have the same shape, got {zv.shape} and {zt.shape}")
    return (zv + zt) / 2


@dataclass(frozen=True)
class EMIResult:
    """EMI of one scenario (nats): MI(x, model response) - MI(x, reference response)."""

    emi: float
    mi_model: float
    mi_reference: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def effective_mi(club: CLUB, x, y_model, y_reference) -> EMIResult:
    """EMI (nats) of one scenario with a trained CLUB: x: (n, d_x) query embeddings, y_model and
    y_reference: (n, d_y) embeddings of the model's and the reference responses (row i answers query i).
    Negatives for each CLUB term are all n^2 pairs within the scenario, as in paper B's code."""
    x = _as_matrix("x", x, min_rows=2)
    ym = _as_matrix("y_model", y_model, min_rows=2)
    yr = _as_matrix("y_reference", y_reference, min_rows=2)
    if not len(x) == len(ym) == len(yr):
        raise ParameterError(f"x, y_model and y_reference need the same rows, got {len(x)}, {len(ym)}, {len(yr)}")
    mi_model = club.mi(x, ym)
    mi_ref = club.mi(x, yr)
    return EMIResult(emi=mi_model - mi_ref, mi_model=mi_model, mi_reference=mi_ref, n=len(x))


def emid(source: EMIResult, target: EMIResult) -> float:
    """EMID (nats) = EMI(source) - EMI(target)."""
    return source.emi - target.emi


def train_club_pooled(xs, y_models, y_references, **train_kwargs) -> CLUB:
    """Train one CLUB on the pooled pairs of every scenario, as paper B does: the pairs (x, y_model) and
    (x, y_reference) of all scenarios together. ``xs``, ``y_models``, ``y_references``: sequences of
    (n_s, d) arrays, one per scenario. Keyword arguments go to :func:`train_club`."""
    if not (len(xs) == len(y_models) == len(y_references)) or len(xs) == 0:
        raise ParameterError("train_club_pooled needs equally many (at least one) x, y_model and y_reference sets")
    x_all, y_all = [], []
    for i, (x, ym, yr) in enumerate(zip(xs, y_models, y_references)):
        x = _as_matrix(f"xs[{i}]", x)
        ym = _as_matrix(f"y_models[{i}]", ym)
        yr = _as_matrix(f"y_references[{i}]", yr)
        if not len(x) == len(ym) == len(yr):
            raise ParameterError(f"scenario {i}: x, y_model and y_reference need the same rows")
        x_all += [x, x]
        y_all += [ym, yr]
    try:
        x_cat, y_cat = np.concatenate(x_all), np.concatenate(y_all)
    except ValueError as err:
        raise ParameterError(f"train_club_pooled: scenarios disagree in embedding width: {err}") from None
    return train_club(x_cat, y_cat, **train_kwargs)
