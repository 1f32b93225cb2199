"""Paper B's upper bound on EMID: the one formula, its term transforms, and what the sum is called.

Paper B (Oh et al., ICML 2025, Theorem) bounds EMID = EMI(P) - EMI(Q) by four divergences between a source
P and a target Q: ``JSv`` / ``JSt`` between the image / question inputs, ``JSpy`` / ``JSqy`` between the
model's and the reference responses on P and on Q. Input terms enter as square roots, output terms as
fourth roots:

- scale-adjusted (the form of paper B's released code): ``sqrt(JSv) + sqrt(JSt) + JSpy^1/4 + JSqy^1/4``;
- general (the theorem's form): ``H (sqrt(JSv) + sqrt(JSt)) + C (JSpy^1/4 + JSqy^1/4)``, H an upper bound
  on the output entropy and ``C = 4``.

The Wasserstein variant (a heuristic, not a theorem) replaces each JS divergence by the *squared* W2
distance, so ``sqrt(JS)`` (the JS distance, a metric) becomes the metric ``W``: inputs enter as ``W``,
outputs as ``sqrt(W)``.

**Text-only data** (no images): the image term is *unknown*, not zero; the sum of the other terms is the
*text-side sum*, never the bound (:func:`bound_label`). Every caller (:func:`emid_bound`,
:func:`mllm_ood.paper_b.core.bound_table`, the notebook's per-term correlations) uses :func:`bound_sum`
and :func:`transformed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ..validation import ParameterError
from .arrays import check_positive_float

INPUT_TERMS = ("v", "t")
OUTPUT_TERMS = ("py", "qy")
TERMS = INPUT_TERMS + OUTPUT_TERMS
TERM_LABELS = {"v": "image input (JSv)", "t": "question text (JSt)", "py": "outputs on source (JSpy)",
               "qy": "outputs on target (JSqy)"}
DIVERGENCES = ("jsd", "w")
TEXT_ONLY_NOTE = ("text-only: no images, so x = question embedding and the image term JSv of the bound is "
                  "UNKNOWN; 'text-side sum' = sqrt(JSt) + JSpy^1/4 + JSqy^1/4 is not the bound")


def _fourth_root(x):
    return x ** 0.25


def _identity(x):
    return x


# How each term enters the bound, per divergence: (input terms, output terms). np.sqrt equals math.sqrt on
# floats (both correctly rounded) and applies to whole columns.
TRANSFORMS = {"jsd": (np.sqrt, _fourth_root), "w": (_identity, np.sqrt)}


def term_of(column: str) -> tuple[str, str]:
    """(divergence, term) of a bound column such as ``jsd_t`` or ``w_qy``."""
    div, _, term = column.partition("_")
    if div not in TRANSFORMS or term not in TERMS:
        raise ParameterError(f"{column!r} is not a bound term column (jsd_/w_ + one of {', '.join(TERMS)})")
    return div, term


def transformed(values, column: str):
    """A term as it enters the bound (a number or a column): ``jsd_v``/``jsd_t`` -> sqrt, ``jsd_py``/``jsd_qy``
    -> fourth root, ``w_v``/``w_t`` as they are, ``w_py``/``w_qy`` -> sqrt."""
    div, term = term_of(column)
    return TRANSFORMS[div][0 if term in INPUT_TERMS else 1](values)


def bound_sum(terms: Mapping[str, float], divergence: str = "jsd", *, entropy_scaler: float | None = None,
              output_constant: float = 4.0) -> float:
    """THE bound from its terms (``terms``: v, t, py, qy -> divergence values): the transformed input terms
    that are present (a missing or NaN input term, the image term of text-only data, is left out: the
    result is then the text-side sum) plus the transformed output terms; with ``entropy_scaler`` H the
    general form ``H * inputs + output_constant * outputs``."""
    into, out = TRANSFORMS[divergence]
    inputs = sum(float(into(terms[k])) for k in INPUT_TERMS if k in terms and not math.isnan(terms[k]))
    outputs = sum(float(out(terms[k])) for k in OUTPUT_TERMS)
    if entropy_scaler is None:
        return inputs + outputs
    return entropy_scaler * inputs + output_constant * outputs


def bound_label(complete: bool, divergence: str = "jsd") -> str:
    """What the sum of the estimated terms is called: the bound, or its text-side part."""
    if divergence == "jsd":
        return ("bound sqrt(JSv)+sqrt(JSt)+JSpy^1/4+JSqy^1/4" if complete
                else "text-side sum sqrt(JSt)+JSpy^1/4+JSqy^1/4 (image term unknown)")
    return "W bound Wv+Wt+sqrt(Wpy)+sqrt(Wqy)" if complete else "text-side W sum Wt+sqrt(Wpy)+sqrt(Wqy) (image term unknown)"


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


def _bound_result(divergence: str, names: tuple[str, ...], values: tuple, entropy_scaler, output_constant) -> BoundResult:
    """The checked terms, :func:`bound_sum` of them, and the form, as a :class:`BoundResult`."""
    v, t, py, qy = _check_terms(names, values)
    if entropy_scaler is not None:
        check_positive_float("entropy_scaler", entropy_scaler)
        check_positive_float("output_constant", output_constant)
    bound = bound_sum({"v": v, "t": t, "py": py, "qy": qy}, divergence, entropy_scaler=entropy_scaler,
                      output_constant=output_constant)
    return BoundResult(bound=bound, form="scale-adjusted" if entropy_scaler is None else "general",
                       divergence="jsd" if divergence == "jsd" else "wasserstein", v=v, t=t, py=py, qy=qy)


def emid_bound(js_v: float, js_t: float, js_py: float, js_qy: float, *, entropy_scaler: float | None = None,
               output_constant: float = 4.0) -> BoundResult:
    """Paper B's upper bound on EMID from four JS divergences (nats).

    - ``entropy_scaler=None`` (the form of paper B's released code, "scale-adjusted")::

        UB = sqrt(JSv) + sqrt(JSt) + JSpy^(1/4) + JSqy^(1/4)

    - ``entropy_scaler=H`` (the theorem's form, "general")::

        UB = H * (sqrt(JSv) + sqrt(JSt)) + output_constant * (JSpy^(1/4) + JSqy^(1/4))

      with ``output_constant = 4`` in the theorem and H an upper bound on the output entropy.

    ``JSv``/``JSt``: image / text input divergence between source P and target Q (pass ``js_v=0`` for
    text-only data); ``JSpy``/``JSqy``: model-response vs reference-response divergence on P and on Q.
    """
    return _bound_result("jsd", ("js_v", "js_t", "js_py", "js_qy"), (js_v, js_t, js_py, js_qy), entropy_scaler,
                         output_constant)


def wasserstein_emid_bound(w_v: float, w_t: float, w_py: float, w_qy: float, *, entropy_scaler: float | None = None,
                           output_constant: float = 4.0) -> BoundResult:
    """The EMID bound with each JS divergence replaced by the *squared* W2 distance (a heuristic variant,
    not a theorem): ``sqrt(JS)`` (the JS distance, a metric) becomes the metric ``W``, so that

        scale-adjusted:  UB_W = W_v + W_t + sqrt(W_py) + sqrt(W_qy)
        general:         UB_W = H (W_v + W_t) + output_constant (sqrt(W_py) + sqrt(W_qy))

    Inputs: W2 distances (not squared, embedding units) for the same four pairs as :func:`emid_bound`.
    """
    return _bound_result("w", ("w_v", "w_t", "w_py", "w_qy"), (w_v, w_t, w_py, w_qy), entropy_scaler,
                         output_constant)
