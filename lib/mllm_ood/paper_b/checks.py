"""Teaching checks of paper B's estimators against closed forms (notebook 04, part 3): CLUB and InfoNCE on
correlated Gaussians, empirical W2 against the Bures formula, the representation JSD of shifted clouds.
Every check is cached (the CLUBs train for minutes). Units: nats; W2 in embedding units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..cache import cached_table
from ..progress import tqdm
from ..seeding import derive_seed, rng
from .arrays import l2_normalise
from .divergences import bures_w2, jsd_estimate, wasserstein_exact
from .estimators import correlated_gaussians, gaussian_club_limit, gaussian_mi, infonce_mi, train_club


# Part of the estimator checks' cache keys: bump it when a change alters what a check computes.
CHECKS_VERSION = 1


def check_mi_estimators(rhos: Sequence[float], *, d: int = 4, n: int = 2000, seed: int = 0,
                        club_epochs: int = 200, infonce_epochs: int = 60, progress: bool = False) -> pd.DataFrame:
    """CLUB and InfoNCE on correlated Gaussians vs the closed forms, one row per rho: true MI
    ``-(d/2) log(1 - rho^2)``, CLUB's population limit (with paper B's log-variance bound), the two
    estimates, and InfoNCE's ceiling log(held-out batch). All in nats. Cached (the CLUBs train for minutes)."""
    params = {"check": "mi", "rhos": list(rhos), "d": int(d), "n": int(n), "seed": int(seed),
              "club_epochs": int(club_epochs), "infonce_epochs": int(infonce_epochs), "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_mi_estimators(rhos, d, n, seed, club_epochs,
                                                                                 infonce_epochs, progress),
                        file="table.pkl")


def _check_mi_estimators(rhos, d, n, seed, club_epochs, infonce_epochs, progress) -> pd.DataFrame:
    rows = []
    for rho in tqdm(list(rhos), desc="MI estimator check", disable=not progress):
        x, y = correlated_gaussians(n, d, rho, seed)
        club = train_club(x, y, hidden=64, max_epochs=club_epochs, patience=10,
                               seed=derive_seed(seed, "check-club", rho), progress=False, device="cpu")
        xe, ye = correlated_gaussians(n, d, rho, derive_seed(seed, "check-eval"))
        eval_batch = min(256, int(0.3 * n))
        nce = infonce_mi(x, y, epochs=infonce_epochs, eval_batch_size=eval_batch,
                              seed=derive_seed(seed, "check-nce", rho), device="cpu")
        rows.append({"rho": rho, "true_mi": gaussian_mi(rho, d),
                     "club_limit": gaussian_club_limit(rho, d, logvar_bound=1.0),
                     "club": club.mi(xe, ye), "infonce": nce, "infonce_ceiling": math.log(eval_batch), "d": d, "n": n})
    return pd.DataFrame(rows)


def check_wasserstein(ns: Sequence[int], *, d: int = 8, shift: float = 1.0, seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """Empirical exact W2 (``ot.emd2``) between samples of N(0, I) and N(shift e_1, diag(s)) vs the Bures
    closed form, with the split-half baseline, one row per sample size n (embedding units). Cached."""
    params = {"check": "w2", "ns": list(ns), "d": int(d), "shift": float(shift), "seed": int(seed),
              "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_wasserstein(ns, d, shift, seed, progress),
                        file="table.pkl")


def _check_wasserstein(ns, d, shift, seed, progress) -> pd.DataFrame:
    scales = np.linspace(0.5, 1.5, d)
    m2 = np.zeros(d)
    m2[0] = shift
    truth = bures_w2(np.zeros(d), np.eye(d), m2, np.diag(scales ** 2))
    rows = []
    for n in tqdm(list(ns), desc="W2 check", disable=not progress):
        g = rng(seed, "check-w2", n)
        p = g.standard_normal((n, d))
        q = m2 + g.standard_normal((n, d)) * scales
        est = wasserstein_exact(p, q, seed=seed)
        rows.append({"n": n, "bures": truth, "exact": est.value, "baseline": est.baseline, "d": d})
    return pd.DataFrame(rows)


def check_rjsd(shifts: Sequence[float], *, d: int = 384, n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Representation JSD between two L2-normalised Gaussian clouds in d dimensions whose means differ by
    ``shift`` (along one axis, before normalisation), with the split-half baseline; nats. Cached."""
    params = {"check": "rjsd", "shifts": list(shifts), "d": int(d), "n": int(n), "seed": int(seed),
              "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_rjsd(shifts, d, n, seed), file="table.pkl")


def _check_rjsd(shifts, d, n, seed) -> pd.DataFrame:
    rows = []
    for s in shifts:
        g = rng(seed, "check-rjsd", s)
        base = g.standard_normal((2 * n, d)) / math.sqrt(d)
        p, q = base[:n].copy(), base[n:].copy()
        q[:, 0] += s
        est = jsd_estimate(l2_normalise(p), l2_normalise(q), seed=seed)
        rows.append({"shift": s, "jsd": est.value, "baseline": est.baseline, "d": d, "n": n})
    return pd.DataFrame(rows)


def run_checks(*, smoke: bool, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Notebook 04's three checks at full size or, ``smoke``, shrunk: (MI estimators at d = 4, W2 at d = 2 and
    16, representation JSD at d = 384)."""
    mi = check_mi_estimators([0.3, 0.9] if smoke else [0.1, 0.3, 0.5, 0.7, 0.8, 0.9], d=4, n=300 if smoke else 2000,
                             seed=seed, club_epochs=5 if smoke else 200, infonce_epochs=3 if smoke else 60)
    ns = [20, 60] if smoke else [25, 50, 100, 200, 400, 800]
    w2 = pd.concat([check_wasserstein(ns, d=d, seed=seed) for d in (2, 16)], ignore_index=True)
    shifts = [0.0, 1.0] if smoke else [0.0, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5]
    rjsd = pd.concat([check_rjsd(shifts, d=384, n=n, seed=seed) for n in ([30] if smoke else [100, 1000])],
                     ignore_index=True)
    return mi, w2, rjsd
