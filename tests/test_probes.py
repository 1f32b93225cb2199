"""Probes: split hygiene (test rows never reach fitting or model selection) and sanity on separable data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mllm_ood.paper_a import probes
from mllm_ood.validation import ParameterError


def _blobs(n_per_class=40, d=6, sep=3.0, seed=0):
    r = np.random.default_rng(seed)
    centres = r.normal(0, sep, (3, d))
    y = np.repeat(np.arange(3), n_per_class)
    return centres[y] + r.normal(0, 1, (len(y), d)), y


def test_split_is_fixed_stratified_and_disjoint():
    _, y = _blobs()
    tr, te = probes.split_indices(y, 0.5, seed=1)
    tr2, te2 = probes.split_indices(y, 0.5, seed=1)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert not set(tr) & set(te) and len(tr) + len(te) == len(y)
    assert (np.bincount(y[te]) == 20).all()


def test_probe_never_sees_test_rows(monkeypatch):
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs()
    x[:, 0] = np.arange(len(x))  # a unique tag per row, to recognise raw rows inside fitting
    tr, te = probes.split_indices(y, 0.5, seed=0)
    seen = []
    real_fit = StandardScaler.fit

    def spy(self, X, *a, **k):  # the pipeline's first step sees raw rows, in every CV fold and the refit
        seen.append(np.asarray(X)[:, 0].copy())
        return real_fit(self, X, *a, **k)

    monkeypatch.setattr(StandardScaler, "fit", spy)
    probes.probe_accuracy(x, y, seed=0)
    assert len(seen) > 4, "cross-validation should fit several times"
    for tags in seen:
        assert set(tags.astype(int)) <= set(tr), "a test row reached fitting or model selection"
    assert set(seen[-1].astype(int)) == set(tr), "the final fit uses the whole training split"


def test_probe_accuracy_on_separable_and_random_data():
    x, y = _blobs(sep=4.0)
    good = probes.probe_accuracy(x, y, seed=0, n_boot=200)
    assert good["accuracy"] > 0.9 and good["ci_low"] <= good["accuracy"] <= good["ci_high"]
    noise = np.random.default_rng(1).normal(size=x.shape)
    bad = probes.probe_accuracy(noise, y, seed=0, n_boot=200)
    assert bad["accuracy"] < 0.6  # chance is 1/3
    one = probes.probe_accuracy(x, y, seed=0, per_class=1, n_boot=200)
    assert one["n_train"] == 3


def test_probe_errors():
    x, y = _blobs()
    with pytest.raises(ParameterError, match="feature rows"):
        probes.probe_accuracy(x[:-1], y)
    with pytest.raises(ParameterError, match="two classes"):
        probes.fit_probe(x[:5], np.zeros(5, int))
    with pytest.raises(ParameterError, match="per class"):
        probes.probe_accuracy(x, y, per_class=0)


def test_learning_curve_interval_includes_the_draw_of_examples():
    """With features that separate the classes only weakly, which examples are drawn matters: the
    two-level interval must cover the spread of the per-draw accuracies, and be wider than a one-draw
    interval over test items only."""
    from mllm_ood.paper_a.probes import learning_curve, probe_accuracy

    r = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 80)
    x = r.normal(size=(240, 20)) + 0.6 * np.eye(3)[y] @ r.normal(size=(3, 20))
    tab = learning_curve(x, y, [2, 16], seed=1, n_draws=8, n_boot=400)
    assert list(tab["per_class"]) == [2, 16] and (tab["n_draws"] == 8).all()
    per_draw = [probe_accuracy(x, y, seed=1, per_class=2, n_boot=1, draw=d)["accuracy"] for d in range(8)]
    row = tab.iloc[0]
    assert row["accuracy"] == pytest.approx(np.mean(per_draw))
    assert row["draw_sd"] == pytest.approx(np.std(per_draw)) and row["draw_sd"] > 0
    # the same draws, resampling test items only: narrower, since it ignores which examples were drawn
    m = np.stack([probe_accuracy(x, y, seed=1, per_class=2, n_boot=1, draw=d)["correct"] for d in range(8)]).mean(0)
    boots = m[np.random.default_rng(5).integers(0, len(m), (400, len(m)))].mean(1)
    items_only = np.quantile(boots, 0.975) - np.quantile(boots, 0.025)
    assert row["ci_high"] - row["ci_low"] > items_only
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    assert tab.iloc[1]["accuracy"] > tab.iloc[0]["accuracy"]  # more examples, better probe


def test_probe_fits_are_cached(fresh_cache, monkeypatch):
    """A second call with the same features, labels and split settings refits nothing and returns the same
    result; other features are fitted."""
    from mllm_ood.paper_a import probes

    g = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = g.normal(size=(60, 5)) + y[:, None]
    first = probes.probe_accuracy(x, y, seed=0, n_boot=50)
    fits = []
    monkeypatch.setattr(probes, "fit_probe", lambda *a, **k: fits.append(1) or (_ for _ in ()).throw(RuntimeError))
    again = probes.probe_accuracy(x, y, seed=0, n_boot=50)
    assert not fits
    assert {k: v for k, v in first.items() if k != "correct"} == {k: v for k, v in again.items() if k != "correct"}
    assert np.array_equal(first["correct"], again["correct"])
    with pytest.raises(RuntimeError):
        probes.probe_accuracy(x + 1, y, seed=0, n_boot=50)


def test_transfer_probe_scores_the_target_test_half_and_feels_a_shift():
    from mllm_ood.paper_a.probes import probe_accuracy, split_indices, transfer_accuracy

    r = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    means = np.eye(3, 5) * 4
    x_src = means[y] + r.normal(size=(len(y), 5))
    x_same = means[y] + r.normal(size=(len(y), 5))
    x_moved = means[(y + 1) % 3] + r.normal(size=(len(y), 5))  # each class sits where the next one was
    same = transfer_accuracy(x_src, y, x_same, y, n_boot=100)
    assert same["n_test"] == len(split_indices(y)[1]) and same["accuracy"] > 0.9
    assert same["accuracy"] == pytest.approx(probe_accuracy(x_same, y, n_boot=100)["accuracy"], abs=0.1)
    moved = transfer_accuracy(x_src, y, x_moved, y, n_boot=100)
    assert moved["accuracy"] < 0.1 and probe_accuracy(x_moved, y, n_boot=100)["accuracy"] > 0.9
    with pytest.raises(ParameterError, match="matching"):
        transfer_accuracy(x_src, y, x_same[:, :4], y)
