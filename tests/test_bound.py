"""Paper B's bound (mllm_ood.paper_b.bound): the one formula, its term transforms, and the two forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm_ood.paper_b.bound import bound_sum, emid_bound, transformed, wasserstein_emid_bound
from mllm_ood.validation import ParameterError


def test_emid_bound_formulas():
    r = emid_bound(0.04, 0.09, 0.0016, 0.0081)
    assert r.form == "scale-adjusted" and r.divergence == "jsd"
    assert r.bound == pytest.approx(0.2 + 0.3 + 0.2 + 0.3)
    g = emid_bound(0.04, 0.09, 0.0016, 0.0081, entropy_scaler=2.0)
    assert g.form == "general" and g.bound == pytest.approx(2 * 0.5 + 4 * 0.5)
    assert emid_bound(0.04, 0.09, 0.0016, 0.0081, entropy_scaler=2.0, output_constant=1.0).bound == pytest.approx(1.5)
    w = wasserstein_emid_bound(0.2, 0.3, 0.04, 0.09)
    assert w.divergence == "wasserstein" and w.bound == pytest.approx(0.2 + 0.3 + 0.2 + 0.3)
    assert emid_bound(0.0, 0.0, 0.0, 0.0).bound == 0.0
    assert emid_bound(-1e-12, 0.0, 0.0, 0.0).v == 0.0  # round-off below zero is clipped
    with pytest.raises(ParameterError, match="js_t"):
        emid_bound(0.1, -0.5, 0.1, 0.1)
    with pytest.raises(ParameterError, match="js_py"):
        emid_bound(0.1, 0.1, float("nan"), 0.1)


def test_one_formula_for_every_caller():
    # emid_bound, wasserstein_emid_bound and the per-scenario tables all sum the same transformed terms
    terms = {"v": 0.04, "t": 0.09, "py": 0.0016, "qy": 0.0081}
    assert bound_sum(terms) == emid_bound(*terms.values()).bound
    assert bound_sum(terms, entropy_scaler=2.0) == emid_bound(*terms.values(), entropy_scaler=2.0).bound
    w = {"v": 0.2, "t": 0.3, "py": 0.04, "qy": 0.09}
    assert bound_sum(w, "w") == wasserstein_emid_bound(*w.values()).bound == pytest.approx(1.0)
    # text-only: the image term is unknown (NaN or absent) and left out: the text-side sum
    side = math.sqrt(0.09) + (0.0016 ** 0.25 + 0.0081 ** 0.25)
    assert bound_sum({**terms, "v": float("nan")}) == bound_sum({k: terms[k] for k in ("t", "py", "qy")}) == side
    col = np.array([0.04, 0.09, 0.5])
    assert np.array_equal(transformed(col, "jsd_t"), np.sqrt(col))
    assert np.array_equal(transformed(col, "jsd_qy"), col ** 0.25)
    assert np.array_equal(transformed(col, "w_v"), col) and np.array_equal(transformed(col, "w_py"), np.sqrt(col))
    with pytest.raises(ParameterError, match="not a bound term column"):
        transformed(col, "emid")
