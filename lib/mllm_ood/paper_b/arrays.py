"""Array checks shared by paper B's estimators and divergences, and paper B's query embedding.

Sample sets are 2-D arrays ``(n, d)``: one row per sample. Inputs may be numpy arrays or torch tensors;
they are validated (2-D, finite, enough rows, matching widths) before any compute, and a bad one raises
:class:`mllm_ood.validation.ParameterError` with one message.
"""

from __future__ import annotations

import numpy as np
import torch

from ..seeding import rng
from ..validation import ParameterError


def as_matrix(what: str, a, *, min_rows: int = 1) -> np.ndarray:
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


def same_width(what_p: str, p: np.ndarray, what_q: str, q: np.ndarray) -> None:
    if p.shape[1] != q.shape[1]:
        raise ParameterError(f"{what_p} and {what_q} must have the same width d, got {p.shape[1]} and {q.shape[1]}")


def paired_rows(x, y, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = as_matrix("x", x, min_rows=min_rows)
    y = as_matrix("y", y, min_rows=min_rows)
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"x and y must be paired row by row, got {x.shape[0]} and {y.shape[0]} rows")
    return x, y


def check_fraction(what: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < float(value) < 1.0:
        raise ParameterError(f"{what} must be a number strictly between 0 and 1, got {value!r}")


def check_positive_float(what: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not float(value) > 0:
        raise ParameterError(f"{what} must be a positive number, got {value!r}")


def split_indices(n: int, val_fraction: float, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into (fit, held-out) index arrays, each non-empty."""
    order = rng(seed, task, "split").permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return order[n_val:], order[:n_val]



def l2_normalise(z) -> np.ndarray:
    """Rows of z: (n, d) scaled to unit Euclidean norm (float32); zero rows stay zero."""
    z = as_matrix("z", z)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def query_embedding(text, image=None) -> np.ndarray:
    """Paper B's query embedding x: (n, d) float32 = ``(z_v + z_t) / 2`` of the L2-normalised image and
    query-text embeddings (text: (n, d), image: (n, d) or None), or ``z_t`` alone when there are no images.
    """
    zt = l2_normalise(as_matrix("text embeddings", text))
    if image is None:
        return zt
    zv = l2_normalise(as_matrix("image embeddings", image))
    if zv.shape != zt.shape:
        raise ParameterError(f"image and text embeddings must have the same shape, got {zv.shape} and {zt.shape}")
    return (zv + zt) / 2

