"""Image shifts: rotation, colour, and ImageNet-C style corruptions scaled to 28 x 28 digits.

Corruption severities follow ImageNet-C (Hendrycks & Dietterich 2019): gaussian noise uses its
standard deviations on [0, 1] pixels; frost blends the image with a frost texture using its
(image, frost) weights; defocus blur uses a disk kernel whose radius is ImageNet-C's scaled to the
smaller image (ImageNet-C's radii 3-10 px on 224 px would erase a 28 px digit at every level, so the
radii here are 0.75-2.5 px, chosen to span "slightly soft" to "barely legible").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from ..seeding import rng
from ..validation import check_choice

ANGLES = [0, 15, 30, 45, 60, 75]
CORRUPTIONS = ["defocus_blur", "frost", "gaussian_noise"]
SEVERITIES = [1, 2, 3, 4, 5]
NOISE_STD = {1: 0.08, 2: 0.12, 3: 0.18, 4: 0.26, 5: 0.38}
FROST_WEIGHTS = {1: (1.0, 0.4), 2: (0.8, 0.6), 3: (0.7, 0.7), 4: (0.65, 0.7), 5: (0.6, 0.75)}
BLUR_RADIUS = {1: 0.75, 2: 1.0, 3: 1.5, 4: 2.0, 5: 2.5}
# Two colours for ColoredMNIST, as in DomainBed: red for digits 0-4, green for 5-9 when the tie holds.
COLOURS = {"red": (255, 40, 40), "green": (40, 255, 40)}


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the centre (bilinear, black fill)."""
    pil = Image.fromarray(image)
    return np.asarray(pil.rotate(float(angle), resample=Image.BILINEAR, fillcolor=0))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> (h, w, 3) uint8; RGB input is returned unchanged."""
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)


def colourise(image: np.ndarray, colour: str) -> np.ndarray:
    """Paint a grey digit (h, w) in one of COLOURS: strokes take the colour, background stays black."""
    check_choice("colour", colour, COLOURS)
    c = np.array(COLOURS[colour], np.float32) / 255.0
    return (image[..., None].astype(np.float32) * c).astype(np.uint8)


def coloured_mnist_colour(label: int, tie: float, r: np.random.Generator) -> str:
    """Colour of one ColoredMNIST digit: the label's home colour with probability ``tie``, else the other."""
    home = "red" if label < 5 else "green"
    other = "green" if home == "red" else "red"
    return home if r.random() < tie else other


def _disk(radius: float) -> np.ndarray:
    # Anti-aliased disk kernel: supersample the unit disk so sub-pixel radii still blur a little.
    size = int(np.ceil(radius)) * 2 + 1
    ss = 8
    g = (np.arange(size * ss) + 0.5) / ss - size / 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    k = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    k = k.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return k / k.sum()


@lru_cache(maxsize=8)
def frost_texture(seed: int, size: int = 128) -> np.ndarray:
    """A procedural frost texture in [0, 1] (size x size): thin bright crystal streaks on a faint haze.

    ImageNet-C overlays photographs of frost, which no package ships; this draws random short
    branching line segments, blurs them slightly and adds low-frequency haze.
    """
    r = rng(seed, "frost")
    tex = np.zeros((size, size), np.float32)
    for _ in range(size * 3):
        y, x = r.uniform(0, size, 2)
        angle = r.uniform(0, np.pi)
        length = r.uniform(3, size / 6)
        t = np.linspace(0, length, int(length * 2) + 2)
        ys = np.clip((y + t * np.sin(angle)).astype(int), 0, size - 1)
        xs = np.clip((x + t * np.cos(angle)).astype(int), 0, size - 1)
        tex[ys, xs] += r.uniform(0.3, 1.0)
    tex = ndimage.gaussian_filter(tex, 0.6)
    haze = ndimage.gaussian_filter(r.random((size, size)).astype(np.float32), 8)
    tex = tex / max(tex.max(), 1e-6) + (haze - haze.min()) / max(np.ptp(haze), 1e-6) * 0.5
    return np.clip(tex / tex.max(), 0, 1)


def corrupt(image: np.ndarray, kind: str, severity: int, seed: int, key: str = "") -> np.ndarray:
    """Apply one corruption at severity 1-5 to a uint8 image (h, w) or (h, w, 3); returns RGB uint8.

    ``seed`` and ``key`` (e.g. the sample id) fix the random parts (noise, frost crop).
    """
    check_choice("corruption", kind, CORRUPTIONS)
    check_choice("severity", severity, SEVERITIES)
    x = to_rgb(image).astype(np.float32) / 255.0
    r = rng(seed, "corrupt", kind, severity, key)
    if kind == "gaussian_noise":
        x = x + r.normal(0.0, NOISE_STD[severity], x.shape)
    elif kind == "defocus_blur":
        k = _disk(BLUR_RADIUS[severity])
        x = np.stack([ndimage.convolve(x[..., c], k, mode="constant") for c in range(3)], axis=-1)
    else:  # frost
        tex = frost_texture(seed)
        h, w = x.shape[:2]
        y0, x0 = r.integers(0, tex.shape[0] - h), r.integers(0, tex.shape[1] - w)
        frost = tex[y0: y0 + h, x0: x0 + w, None] * np.array([0.85, 0.92, 1.0], np.float32)
        a, b = FROST_WEIGHTS[severity]
        x = a * x + b * frost
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
