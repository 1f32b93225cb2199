"""The embedded data world: schemas, balance, determinism, domain definitions, split hygiene."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mllm_ood.data import digits, shifts, world
from mllm_ood.data.molecules import SOLUBILITY_CLASSES
from mllm_ood.paths import MNIST_SPLIT
from mllm_ood.validation import ParameterError

MNIST_DERIVED = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist"]


def _arrays(ds) -> list[np.ndarray]:
    return [np.asarray(im) for im in ds["image"]]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def test_committed_mnist_split_is_reproducible_and_disjoint():
    committed = pd.read_csv(MNIST_SPLIT)
    regenerated = digits.make_mnist_split()
    pd.testing.assert_frame_equal(committed, regenerated.astype(committed.dtypes.to_dict()))
    assert set(committed.split) == {"train", "eval"}
    assert (committed[committed.split == "eval"].label.value_counts() == 100).all()
    assert len(committed[committed.split == "train"]) == 4000


@pytest.mark.parametrize("name", list(world.DATASETS))
def test_schema_and_domains(name):
    ds = world.load(name)
    info = world.DATASETS[name]
    assert ds.column_names == ["id", "image", "label", "domain"]
    assert ds.features["label"].names == list(info.class_names)
    assert set(ds["domain"]) == set(info.domains)
    assert len(set(ds["id"])) == len(ds), "sample ids must be unique"
    first = ds[0]["image"]
    assert first.size == ((96, 96) if name.startswith("molecules") else (28, 28))


@pytest.mark.parametrize("name", ["rotated_mnist", "colored_mnist", "corrupted_mnist"])
def test_mnist_domains_are_class_balanced(name):
    ds = world.load(name)
    frame = pd.DataFrame({"domain": ds["domain"], "label": ds["label"]})
    counts = frame.groupby(["domain", "label"]).size()
    assert (counts == 100).all()


def test_evaluation_domains_never_use_training_images():
    train_ids = set(world.load("mnist_train")["id"])
    assert len(train_ids) == 4000
    for name in MNIST_DERIVED:
        base_ids = {i.split("-")[0] + "-" + i.split("-")[1] for i in world.load(name)["id"] if i.startswith("mnist-")}
        assert base_ids, name
        assert not base_ids & train_ids, f"{name} uses training images"


@pytest.mark.parametrize("name", ["digit_styles", "corrupted_mnist", "colored_mnist"])
def test_builders_are_deterministic(name):
    a, b = world.build(name, seed=3), world.build(name, seed=3)
    assert a["id"] == b["id"]
    assert _same(_arrays(a), _arrays(b))
    # another seed: its rows streamed until the first that differs (a whole third build only if none does)
    assert any(not np.array_equal(x, np.asarray(im)) for x, (_, im, _, _) in zip(_arrays(a), world._rows(name, 4))), \
        "the seed must matter"


def test_rotated_domain_is_the_rotated_upright_image():
    ds = world.load("rotated_mnist")
    upright = ds.select([i for i, d in enumerate(ds["domain"]) if d == "0"])
    rot45 = ds.select([i for i, d in enumerate(ds["domain"]) if d == "45"])
    for k in (0, 17, 999):
        assert rot45[k]["id"] == upright[k]["id"].replace("rot0", "rot45")
        assert np.array_equal(np.asarray(rot45[k]["image"]), shifts.rotate(np.asarray(upright[k]["image"]), 45))
    ims, _, _ = digits.mnist_subset("eval")
    assert np.array_equal(np.asarray(upright[0]["image"]), ims[0])


def test_coloured_mnist_tie_strength_per_domain():
    ds = world.load("colored_mnist")
    frame = pd.DataFrame({"domain": ds["domain"], "label": ds["label"]})
    ims = np.stack(_arrays(ds)).astype(int)
    red = ims[..., 0].sum(axis=(1, 2)) > ims[..., 1].sum(axis=(1, 2))
    home = (frame.label.to_numpy() < 5) == red
    for dom, tie in world.COLOURED_DOMAINS.items():
        rate = home[(frame.domain == dom).to_numpy()].mean()
        assert abs(rate - tie) < 0.04, (dom, rate)  # 1,000 samples: binomial sd <= 0.016


@pytest.mark.parametrize("kind", shifts.CORRUPTIONS)
def test_corruption_distance_grows_with_severity(kind):
    ims, _, ids = digits.mnist_subset("eval")
    clean = np.stack([shifts.to_rgb(im) for im in ims[:200]]).astype(float)
    dist = []
    for sev in shifts.SEVERITIES:
        out = np.stack([shifts.corrupt(im, kind, sev, seed=0, key=i) for im, i in zip(ims[:200], ids[:200])])
        dist.append(np.sqrt(((out - clean) ** 2).mean()))
    assert all(a < b for a, b in zip(dist, dist[1:])), dist
    assert dist[0] > 1.0


def test_uci_and_printed_look_like_mnist():
    u, uy, _ = digits.uci_digits()
    p, py, _ = digits.printed_digits(5, seed=0)
    assert u.shape == (1797, 28, 28) and p.shape == (50, 28, 28)
    assert set(uy) == set(range(10)) and (np.bincount(py) == 5).all()
    # MNIST normalisation: ink centred by mass, its bounding box about 20 px.
    from scipy import ndimage

    for batch in (u, p):
        for im in batch[::37]:
            cy, cx = ndimage.center_of_mass(im.astype(float))
            assert abs(cy - 13.5) < 1.0 and abs(cx - 13.5) < 1.0
            ys, xs = np.nonzero(im > 60)
            assert 14 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 22


def test_molecule_domains_cover_every_molecule():
    size, scaffold = world.load("molecules_size"), world.load("molecules_scaffold")
    assert len(size) == len(scaffold) == 1282
    assert sorted(size["id"]) == sorted(scaffold["id"])
    assert size.features["label"].names == SOLUBILITY_CLASSES
    assert set(np.bincount(size["label"])) and min(np.bincount(size["label"])) > 200


def test_domain_filter_and_sampling():
    ds = world.load("rotated_mnist", domains=["15", "30"])
    assert set(ds["domain"]) == {"15", "30"} and len(ds) == 2000
    first = world.sample_per_class(ds, 3)
    assert len(first) == 2 * 10 * 3
    frame = pd.DataFrame({"d": ds["domain"], "y": ds["label"], "id": ds["id"]})
    expected = frame.groupby(["d", "y"]).head(3).id.tolist()
    assert sorted(first["id"]) == sorted(expected), "paper A takes the first N per domain x class"
    r1 = world.sample_per_class(ds, 3, mode="random", seed=1)
    r2 = world.sample_per_class(ds, 3, mode="random", seed=1)
    r3 = world.sample_per_class(ds, 3, mode="random", seed=2)
    assert r1["id"] == r2["id"] and r1["id"] != r3["id"]


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: world.load("imagenet"), "unknown dataset 'imagenet'"),
        (lambda: world.load("rotated_mnist", domains="90"), "unknown domain of rotated_mnist '90'"),
        (lambda: world.load("rotated_mnist", seed=-1), "seed must be an integer >= 0"),
        (lambda: world.sample_per_class(world.load("colored_mnist"), 0), "must be an integer > 0"),
        (lambda: world.sample_per_class(world.load("colored_mnist"), 2, mode="last"), "unknown sampling mode"),
        (lambda: shifts.corrupt(np.zeros((28, 28), np.uint8), "fog", 1, 0), "unknown corruption 'fog'"),
        (lambda: shifts.corrupt(np.zeros((28, 28), np.uint8), "frost", 6, 0), "unknown severity 6"),
    ],
)
def test_bad_parameters_get_one_clear_error(call, fragment):
    with pytest.raises(ParameterError, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        call()


def test_bad_dataset_request_builds_nothing(fresh_cache):
    with pytest.raises(ParameterError):
        world.load("rotated_mnist", domains=["0", "bogus"])
    assert not fresh_cache.exists() or not any(fresh_cache.rglob("*"))
