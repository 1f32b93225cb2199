"""Paper A's linear-probe protocol (notebook 02's PROBE_PROTOCOL 'paper_a'), offline on stand-ins: the classifier
that is fitted, the class pairs, disjoint train / test items, and paper A's CLIP preprocessing checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mllm_ood.data.hub import SPECS, make_standin_dataset
from mllm_ood.paper_a import hypotheses, probe_protocol, probes
from mllm_ood.paper_a.features import CLIP_PROBE_MODEL, ClipProbeFeatures, with_probe_features
from mllm_ood.paths import RESOURCES
from mllm_ood.validation import ParameterError


def _blobs(seed=0):
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(2), 30)
    return r.normal(size=(60, 8)) * 5 + 3 * y[:, None], y


def test_paper_a_fits_its_own_classifier_on_raw_features():
    x, y = _blobs()
    clf = probes.fit_probe(x, y, seed=3, protocol="paper_a")
    assert type(clf) is LogisticRegression, "paper A's probe has no scaler or model selection in front"
    assert (clf.C, clf.max_iter, clf.random_state) == (0.316, 10_000, 3)
    ref = LogisticRegression(C=0.316, max_iter=10_000, random_state=0).fit(x, y)  # paper A's line, by hand
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6)
    project = probes.fit_probe(x, y, seed=3)  # the project's: a standardising pipeline, C from the grid
    assert isinstance(project, Pipeline) and project[-1].C in probes.C_GRID
    with pytest.raises(ParameterError, match="probe protocol"):
        probes.fit_probe(x, y, protocol="paper")


def test_paper_a_probe_fits_on_the_training_half_only(fresh_cache, monkeypatch):
    x, y = _blobs()
    x[:, 0] = np.arange(len(x))  # a tag per row
    seen = {}
    real_fit, real_predict = LogisticRegression.fit, LogisticRegression.predict

    def fit(self, X, yy, *a, **k):
        seen["fit"] = (np.asarray(X)[:, 0].copy(), self.get_params())
        return real_fit(self, X, yy, *a, **k)

    def predict(self, X):
        seen["predict"] = np.asarray(X)[:, 0].copy()
        return real_predict(self, X)

    monkeypatch.setattr(LogisticRegression, "fit", fit)
    monkeypatch.setattr(LogisticRegression, "predict", predict)
    out = probes.probe_accuracy(x, y, seed=0, n_boot=20, protocol="paper_a")
    tr, te = probes.split_indices(y, 0.5, 0)
    fitted, params = seen["fit"]
    assert set(fitted.astype(int)) == set(tr) and set(seen["predict"].astype(int)) == set(te)
    assert not set(tr) & set(te)
    np.testing.assert_array_equal(fitted, x[tr, 0])  # raw rows: nothing standardised them
    assert params["C"] == 0.316 and params["max_iter"] == 10_000
    assert out["n_train"] == len(tr) and out["n_test"] == len(te)
    # its own cache entry: the project's protocol is fitted anew, not read back
    assert probes.probe_accuracy(x, y, seed=0, n_boot=20)["n_train"] == len(tr)
    assert isinstance(seen["fit"][1].get("C"), float) and seen["fit"][1]["C"] in probes.C_GRID


def test_class_pairs_come_from_the_shipped_linear_list():
    shipped = json.loads((RESOURCES / "paper_a_datasets.json").read_text())["linear"]
    names = SPECS["ham10000"].class_names
    pair = probe_protocol.class_pair("hub:ham10000", names)
    assert [names[i] for i in pair] == shipped["ham10000"]["class_names"]
    assert [names[i] for i in pair] == ["benign keratosis-like lesions", "melanocytic nevi"]
    assert probe_protocol.probed_classes("hub:ham10000", names, "paper_a") == pair
    assert probe_protocol.probed_classes("hub:ham10000", names, "project") == list(range(7))
    assert probe_protocol.class_pair("hub:pacs", ["dog", "horse"]) is None  # no pair: every class
    assert probe_protocol.class_pair("digit_styles", ["0", "1"]) is None
    with pytest.raises(ParameterError, match="not among its classes"):
        probe_protocol.class_pair("hub:ham10000", ["melanoma", "melanocytic nevi"])
    text = probe_protocol.describe("paper_a", ["hub:ham10000", "hub:pacs"], {"hub:ham10000": names, "hub:pacs": []})
    assert "benign keratosis-like lesions vs melanocytic nevi" in text and "0.316" in text


class Tagger:
    """An MLLM double whose features tag each image (its mean pixel, its index in the call) and never repeat."""

    fingerprint = "tagger@000000000000"
    device = "cpu"

    def vision_features(self, images, batch_size=64, progress=False):
        tags = [[float(np.asarray(im).mean()), 1000.0 * i, 1.0] for i, im in enumerate(images)]
        return np.asarray(tags, np.float32)

    def answer_state(self, conversations, batch_size=64):
        return np.stack([[float(i), 0.0] for i in range(len(conversations))]).astype(np.float32)


def test_probe_tables_on_a_ham10000_standin_probe_paper_as_pair(tmp_path, monkeypatch, fresh_cache):
    make_standin_dataset("ham10000", tmp_path / "mirror" / "ham10000", per_cell=4)
    monkeypatch.setenv("MLLM_OOD_HUB_MIRROR", str(tmp_path / "mirror"))
    labels_fitted = []
    real_fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit",
                        lambda self, X, y, *a, **k: labels_fitted.append(set(np.asarray(y).tolist())) or
                        real_fit(self, X, y, *a, **k))
    table, items = hypotheses.probe_tables(Tagger(), ["hub:ham10000"], {"hub:ham10000": ["histo", "consensus"]}, 4,
                                           seed=0, n_boot=20, protocol="paper_a")
    pair = set(probe_protocol.class_pair("hub:ham10000", SPECS["ham10000"].class_names))
    assert (table["classes"] == 2).all() and (table["n_train"] + table["n_test"] == 8).all()
    assert labels_fitted and all(s == pair for s in labels_fitted)
    every, _ = hypotheses.probe_tables(Tagger(), ["hub:ham10000"], {"hub:ham10000": ["histo"]}, 4, seed=0, n_boot=20)
    assert (every["classes"] == 7).all() and (every["n_train"] + every["n_test"] == 28).all()


def _field(rgb, w, h, seed):
    r = np.random.default_rng(seed)
    base = r.integers(0, 60, (6, 6, 3)) + np.asarray(rgb)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)


def test_paper_a_pixels_equal_a_hand_computation():
    r = np.random.default_rng(0)
    arr = r.integers(0, 256, (672, 448, 3), dtype=np.uint8)  # (H, W): a 3x / 2x squash to 224 x 224
    arr[..., 0] = 255 - arr[..., 2]  # red and blue differ everywhere
    got = probe_protocol.paper_a_pixels([Image.fromarray(arr)]).numpy()[0]
    # bilinear with half-pixel centres: output row i samples input row 3i + 1 exactly, column j the mean of
    # columns 2j and 2j + 1; OpenCV rounds half up to uint8
    rows = arr[1::3].astype(np.float64)
    resized = np.floor((rows[:, 0::2] + rows[:, 1::2]) / 2 + 0.5)
    bgr = resized[..., ::-1] / 255.0
    want = ((bgr - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).transpose(2, 0, 1)
    assert got.shape == (3, 224, 224)
    np.testing.assert_allclose(got, want, atol=1e-5)
    rgb = ((resized / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).transpose(2, 0, 1)
    assert np.abs(got - rgb).max() > 1, "the channels must reach CLIP in BGR order, as cv2.imread reads them"
    same = r.integers(0, 256, (224, 224, 3), dtype=np.uint8)  # already 224 x 224: no resampling
    np.testing.assert_allclose(probe_protocol.paper_a_pixels([same]).numpy()[0],
                               ((same[..., ::-1] / 255.0 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225))
                               .transpose(2, 0, 1), atol=1e-5)


def test_clip_features_under_paper_a_preprocessing(monkeypatch):
    from mllm_ood.mllm.standins import standin_clip

    folder = str(standin_clip(CLIP_PROBE_MODEL))
    ims = [_field((200, 40, 40) if i % 2 else (40, 40, 200), 600, 450, i) for i in range(12)]
    clip_own = with_probe_features(Tagger(), folder)
    paper = with_probe_features(Tagger(), folder, preprocess="paper_a")
    assert isinstance(paper, ClipProbeFeatures) and "paper_a preprocessing" in repr(paper)
    assert paper.feature_identity("vision") != clip_own.feature_identity("vision")
    assert paper.feature_identity("answer_state") == clip_own.feature_identity("answer_state")
    x = paper.vision_features(ims, batch_size=5)
    assert x.shape == (12, 32) and np.isfinite(x).all()
    diff = probe_protocol.preprocessing_difference(folder, ims, np.arange(12) % 2, seed=0)
    assert diff["n_images"] == 12 and diff["n_test"] == 6
    assert -1 <= diff["cosine_min"] <= diff["cosine_mean"] < 1 - 1e-4, "the two preprocessings must differ"
    assert diff["accuracy_difference"] == pytest.approx(diff["accuracy_paper_a"] - diff["accuracy_clip"])
    with pytest.raises(ParameterError, match="preprocessing"):
        with_probe_features(Tagger(), folder, preprocess="bgr")
