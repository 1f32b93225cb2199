"""Linear probes (paper A, hypothesis 2 and 3): multinomial logistic regression on frozen features.

Hygiene: a probe is fitted and its regularisation chosen (cross-validation) on the training split only;
the test split is touched once, to score the fitted probe. Splits are stratified and seeded. ``protocol``
'paper_a' fits paper A's classifier instead (:mod:`mllm_ood.paper_a.probe_protocol`: fixed C, no scaling).

Every fit is cached (kind ``probes``): its test items' correctness, keyed by the features, the labels and
the split settings, so a rerun of notebooks 02 and 03 refits nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..cache import cached_table, exact_digest
from ..seeding import derive_seed
from ..stats import bootstrap_ci
from ..validation import ParameterError, check_positive_int
from .probe_protocol import check_protocol, paper_a_classifier

C_GRID = (0.01, 0.1, 1.0, 10.0)
# Part of every probe's cache key: bump it when a change alters what a fitted probe predicts.
PROBE_VERSION = 1


def split_indices(labels, test_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified (train, test) split of ``range(len(labels))``; sorted index arrays."""
    y = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    idx = np.arange(len(y))
    counts = np.bincount(y) if len(y) else np.array([])
    strat = y if len(y) and counts[counts > 0].min() >= 2 else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=derive_seed(seed, "probe-split"),
                              stratify=strat)
    return np.sort(tr), np.sort(te)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, seed: int = 0, max_folds: int = 5,
              protocol: str = "project"):
    """Standardise + logistic regression, C chosen by stratified CV on (x_train, y_train) only.

    With fewer than 2 examples in some class, CV is impossible and C = 1 is used. ``protocol`` 'paper_a':
    paper A's logistic regression on the raw features instead (C = 0.316, max_iter 10000, random_state
    ``seed``). Returns a fitted scikit-learn estimator.
    """
    check_protocol(protocol)
    x_train, y_train = np.asarray(x_train, np.float64), np.asarray(y_train)
    if x_train.ndim != 2 or len(x_train) != len(y_train):
        raise ParameterError(f"fit_probe needs x (n, d) and y (n,), got {x_train.shape} and {y_train.shape}")
    if len(np.unique(y_train)) < 2:
        raise ParameterError("a probe needs at least two classes in its training split")
    if protocol == "paper_a":
        return paper_a_classifier(seed).fit(x_train, y_train)
    base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = min(max_folds, int(np.bincount(y_train)[np.unique(y_train)].min()))
    if folds < 2:
        return base.fit(x_train, y_train)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=derive_seed(seed, "probe-cv"))
    search = GridSearchCV(base, {"logisticregression__C": list(C_GRID)}, cv=cv, n_jobs=1)
    return search.fit(x_train, y_train).best_estimator_


def _protocol_key(protocol: str) -> dict:
    """The cache-key entry of a probe protocol (none for the project's own: its fits keep their entries)."""
    check_protocol(protocol)
    return {} if protocol == "project" else {"protocol": protocol}


def probe_accuracy(features: np.ndarray, labels, seed: int = 0, test_fraction: float = 0.5,
                   per_class: int | None = None, n_boot: int = 1000, draw: int = 0, protocol: str = "project") -> dict:
    """Fit on the fixed training split (optionally only ``per_class`` examples of each class, the
    ``draw``-th random choice of them), score on the fixed test split (cached, see the module docstring).
    ``protocol``: which classifier is fitted (:func:`fit_probe`).
    Returns n_train, n_test, accuracy, ci_low, ci_high (fractions) and ``correct`` (bool array over the
    test split, for pooling)."""
    x, y = np.asarray(features), np.asarray(labels)
    if len(x) != len(y):
        raise ParameterError(f"{len(x)} feature rows but {len(y)} labels")
    if per_class is not None:
        check_positive_int("labelled examples per class", per_class)
    proto = _protocol_key(protocol)

    def build() -> pd.DataFrame:
        tr, te = split_indices(y, test_fraction, seed)
        if per_class is not None:
            r = np.random.default_rng(derive_seed(seed, "probe-per-class", per_class, *([draw] if draw else [])))
            tr = np.sort(np.concatenate([r.permutation(tr[y[tr] == c])[:per_class] for c in np.unique(y[tr])]))
        clf = fit_probe(x[tr], y[tr], seed=seed, protocol=protocol)
        return pd.DataFrame({"n_train": len(tr), "correct": clf.predict(x[te]) == y[te]})

    params = {"x": exact_digest(x), "y": exact_digest(y), "seed": int(seed), "test_fraction": float(test_fraction),
              "per_class": None if per_class is None else int(per_class), "draw": int(draw), "version": PROBE_VERSION,
              **proto}
    items = cached_table("probes", params, build, file="test_items.csv")
    correct = items["correct"].to_numpy(bool)
    lo, hi = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    return {"n_train": int(items["n_train"].iloc[0]), "n_test": int(len(correct)), "accuracy": float(correct.mean()),
            "ci_low": lo, "ci_high": hi, "correct": correct}


def transfer_accuracy(x_source: np.ndarray, y_source, x_target: np.ndarray, y_target, seed: int = 0,
                      test_fraction: float = 0.5, n_boot: int = 1000, protocol: str = "project") -> dict:
    """A probe fitted on the training split of one domain (``source``, e.g. the ID reference) and scored on
    the test split of another (``target``, a shifted domain: the same test items as
    :func:`probe_accuracy` on the target), cached like it. Labels must be the same class indices. Returns
    the keys of :func:`probe_accuracy`."""
    xs, ys, xt, yt = np.asarray(x_source), np.asarray(y_source), np.asarray(x_target), np.asarray(y_target)
    if len(xs) != len(ys) or len(xt) != len(yt) or xs.shape[1:] != xt.shape[1:]:
        raise ParameterError(f"transfer_accuracy needs matching rows and feature widths, got {xs.shape}, {ys.shape}, "
                             f"{xt.shape}, {yt.shape}")
    proto = _protocol_key(protocol)

    def build() -> pd.DataFrame:
        tr, _ = split_indices(ys, test_fraction, seed)
        _, te = split_indices(yt, test_fraction, seed)
        clf = fit_probe(xs[tr], ys[tr], seed=seed, protocol=protocol)
        return pd.DataFrame({"n_train": len(tr), "correct": clf.predict(xt[te]) == yt[te]})

    params = {"x": exact_digest(xs), "y": exact_digest(ys), "x_target": exact_digest(xt), "y_target": exact_digest(yt),
              "seed": int(seed), "test_fraction": float(test_fraction), "version": PROBE_VERSION, **proto}
    items = cached_table("probes", params, build, file="test_items.csv")
    correct = items["correct"].to_numpy(bool)
    lo, hi = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    return {"n_train": int(items["n_train"].iloc[0]), "n_test": int(len(correct)), "accuracy": float(correct.mean()),
            "ci_low": lo, "ci_high": hi, "correct": correct}


def learning_curve(features: np.ndarray, labels, per_class_list, seed: int = 0, n_draws: int = 5,
                   test_fraction: float = 0.5, n_boot: int = 1000, level: float = 0.95, protocol: str = "project"):
    """Probe accuracy against labelled examples per class, with intervals that include the luck of the
    draw of those examples.

    For each ``k`` in ``per_class_list`` the probe is fitted ``n_draws`` times on different random sets of
    ``k`` training examples per class (seeds derived from ``seed``), always scored on the same test split.
    The interval is a two-level percentile bootstrap: resample the draws, then the test items, and
    average; so it widens when the result depends on which examples were drawn (written out here:
    ``scipy.stats.bootstrap`` resamples one level, as :func:`mllm_ood.stats.bootstrap_ci` does).
    Returns a DataFrame: per_class, n_draws, n_test, accuracy (mean over draws), ci_low, ci_high,
    draw_sd (sd of the per-draw accuracies); fractions. ``protocol``: the classifier (:func:`fit_probe`).
    """
    check_positive_int("number of draws", n_draws)
    check_positive_int("n_boot", n_boot)
    x, y = np.asarray(features), np.asarray(labels)
    rows = []
    for k in per_class_list:
        check_positive_int("labelled examples per class", k)
        runs = [probe_accuracy(x, y, seed=seed, test_fraction=test_fraction, per_class=int(k), n_boot=1,
                               draw=d, protocol=protocol)["correct"] for d in range(n_draws)]
        m = np.stack(runs).astype(float)  # (n_draws, n_test): one test split, draws differ in training examples
        r = np.random.default_rng(derive_seed(seed, "curve-bootstrap", int(k)))
        d_idx = r.integers(0, m.shape[0], (n_boot, m.shape[0]))
        t_idx = r.integers(0, m.shape[1], (n_boot, m.shape[1]))
        boots = np.array([m[d_idx[b]][:, t_idx[b]].mean() for b in range(n_boot)])
        alpha = (1 - level) / 2
        lo, hi = np.quantile(boots, [alpha, 1 - alpha])
        per_draw = m.mean(1)
        rows.append({"per_class": int(k), "n_draws": int(n_draws), "n_test": int(m.shape[1]),
                     "accuracy": float(m.mean()), "ci_low": float(lo), "ci_high": float(hi),
                     "draw_sd": float(per_draw.std(ddof=0))})
    return pd.DataFrame(rows)


def pixel_features(images, size: int = 28) -> np.ndarray:
    """Raw pixels as a probe floor: each image resized to size x size RGB, flattened, in [0, 1]; (n, 3*size^2)."""
    return np.stack([np.asarray(im.convert("RGB").resize((size, size)), np.float32).ravel() / 255.0 for im in images])
