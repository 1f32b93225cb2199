"""Mutual-information estimators of paper B (Oh et al., ICML 2025): CLUB and InfoNCE, their Gaussian
closed forms, and EMI / EMID from a trained CLUB.

Units: every mutual information here is in **nats**. Shapes: sample sets are ``(n, d)`` arrays, checked
by :mod:`mllm_ood.paper_b.arrays`.

How they relate to paper B's released code (``deeplearning-wisc/mllmshift-emi``):

- **CLUB** (Cheng et al. 2020): a Gaussian ``q(y|x) = N(mu(x), diag(exp(logvar(x))))`` with two 2-layer
  MLPs (``Linear -> Tanh -> Linear``; hidden 250 as in paper B, whose code passes 500 and halves it) and
  ``logvar = logvar_bound * tanh(.)``, ``logvar_bound = 1`` as in paper B (so the conditional variance
  is confined to [e^-1, e] per coordinate). It is fitted by maximum likelihood on pairs, and the
  estimate is ``mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i)``. For a q equal to the true
  conditional it upper-bounds I(X;Y); for jointly Gaussian data with correlation rho per coordinate it
  tends to ``d rho^2 / (1 - rho^2)`` (:func:`gaussian_club_limit`), above the truth
  ``-(d/2) log(1 - rho^2)`` (:func:`gaussian_mi`).
- **InfoNCE** (van den Oord et al. 2018): a lower bound, never above ``log(batch size)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..mllm.refs import pick_device
from ..progress import tqdm
from ..seeding import derive_seed, rng
from ..validation import ParameterError, check_choice, check_positive_int
from .arrays import as_matrix, check_fraction, check_positive_float, paired_rows, split_indices

LOG_2PI = math.log(2.0 * math.pi)
CLUB_WEIGHTS = "club.pt"
CLUB_CONFIG = "club.json"


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
        check_positive_float("logvar_bound", logvar_bound)
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
        check_positive_float("CLUB logvar_bound", config.logvar_bound)
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
        arr = as_matrix(what, a)
        if arr.shape[1] != width:
            raise ParameterError(f"{what} has width {arr.shape[1]} but this CLUB expects {width}")
        return torch.as_tensor(arr, dtype=torch.float32, device=self.device)

    def mean_log_likelihood(self, x, y) -> float:
        """Mean of ``log q(y_i|x_i)`` over paired rows (nats); x: (n, x_dim), y: (n, y_dim)."""
        x, y = paired_rows(x, y, min_rows=1)
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
        x, y = paired_rows(x, y, min_rows=2)
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
    min_delta: float = 0.0,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> CLUB:
    """Fit a CLUB's q(y|x) by maximum likelihood on paired samples x: (n, x_dim), y: (n, y_dim).

    A seeded ``val_fraction`` of the pairs is held out; Adam on mini-batches of the rest minimises
    ``-log q(y|x)``; after every epoch the held-out mean log-likelihood (nats) is measured, the best
    weights are kept, and training stops once ``patience`` epochs in a row have not raised it by more than
    ``min_delta`` nats above where the last such rise left it (together, not per epoch: a slow steady climb
    goes on). The returned
    model (in eval mode) has ``history = {"train_ll": [...], "val_ll": [...], "best_epoch": int, ...}``.
    Initialisation, split and batch order all derive from ``seed``; the global torch RNG is untouched.
    """
    x, y = paired_rows(x, y, min_rows=4)
    for what, v in [("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)]:
        check_positive_int(what, v)
    check_positive_float("lr", lr)
    check_fraction("val_fraction", val_fraction)
    if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
        raise ParameterError(f"min_delta must be a number >= 0 (nats), got {min_delta!r}")
    config = CLUBConfig(x_dim=x.shape[1], y_dim=y.shape[1], hidden=hidden, logvar_bound=logvar_bound)
    device = torch.device(pick_device(device))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "club", "init"))
        club = CLUB(config).to(device)
    fit_idx, val_idx = split_indices(len(x), val_fraction, seed, "club")
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    x_val, y_val = xt[val_idx], yt[val_idx]
    opt = torch.optim.Adam(club.parameters(), lr=lr)
    order_rng = rng(seed, "club", "batches")

    history = {"train_ll": [], "val_ll": [], "best_epoch": -1, "n_fit": len(fit_idx), "n_val": len(val_idx)}
    best_val, best_state, stale, progress_mark = -math.inf, None, 0, -math.inf
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
        if val_ll > best_val:  # the best weights are kept whatever the gain ...
            best_val, history["best_epoch"] = val_ll, epoch
            best_state = {k: v.detach().clone() for k, v in club.state_dict().items()}
        if val_ll > progress_mark + min_delta:  # ... but patience restarts only on min_delta above its last start
            progress_mark, stale = val_ll, 0
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
    x, y = paired_rows(x, y, min_rows=4)
    for what, v in [("hidden", hidden), ("embed_dim", embed_dim), ("epochs", epochs), ("batch_size", batch_size)]:
        check_positive_int(what, v)
    check_positive_int("eval_batch_size", eval_batch_size, allow_none=True)
    check_positive_float("lr", lr)
    check_fraction("val_fraction", val_fraction)
    fit_idx, val_idx = split_indices(len(x), val_fraction, seed, "infonce")
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
# EMI and EMID


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
    x = as_matrix("x", x, min_rows=2)
    ym = as_matrix("y_model", y_model, min_rows=2)
    yr = as_matrix("y_reference", y_reference, min_rows=2)
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
        x = as_matrix(f"xs[{i}]", x)
        ym = as_matrix(f"y_models[{i}]", ym)
        yr = as_matrix(f"y_references[{i}]", yr)
        if not len(x) == len(ym) == len(yr):
            raise ParameterError(f"scenario {i}: x, y_model and y_reference need the same rows")
        x_all += [x, x]
        y_all += [ym, yr]
    try:
        x_cat, y_cat = np.concatenate(x_all), np.concatenate(y_all)
    except ValueError as err:
        raise ParameterError(f"train_club_pooled: scenarios disagree in embedding width: {err}") from None
    return train_club(x_cat, y_cat, **train_kwargs)
