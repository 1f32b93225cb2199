"""Figures: one function saves every figure as PNG plus the data behind it as CSV under figures/."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pandas as pd

from .paths import figures_dir
from .validation import ParameterError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def save_figure(fig, name: str, data: pd.DataFrame, *, dpi: int = 130) -> dict[str, str]:
    """Write ``figures/<name>.png`` and ``figures/<name>.csv`` (the plotted data); return both paths.

    ``name`` is a stable, caption-ready slug such as ``01_zero_shot_accuracy_heatmap``. The figure
    must carry a title and labelled axes; this function refuses a figure without a title so that no
    unlabelled figure reaches figures/. In a notebook the saved PNG itself is displayed and the figure
    closed, so it is drawn once, not once for the file and again for the notebook (:func:`display_saved`);
    elsewhere the figure is left open.
    """
    if not _NAME.match(name):
        raise ParameterError(f"figure name {name!r} must be a lower-case slug (letters, digits, _ and -)")
    titled = bool(getattr(fig, "_suptitle", None) and fig._suptitle.get_text()) or any(
        ax.get_title() for ax in fig.axes
    )
    if not titled:
        raise ParameterError(f"figure {name!r} has no title")
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    png, csv = out / f"{name}.png", out / f"{name}.csv"
    # Write beside, then rename, so a crash never leaves a half-written figure under its final name; the
    # temporaries are unique per call, so two processes saving the same figure never share one.
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_png, tmp_csv = out / f".{name}.png.{tag}.tmp", out / f".{name}.csv.{tag}.tmp"
    try:
        fig.savefig(tmp_png, dpi=dpi, bbox_inches="tight", format="png")
        data.to_csv(tmp_csv, index=False)
        tmp_png.replace(png)
        tmp_csv.replace(csv)
    finally:
        tmp_png.unlink(missing_ok=True)
        tmp_csv.unlink(missing_ok=True)
    display_saved(fig, png, dpi)
    return {"png": str(png), "csv": str(csv)}


def display_saved(fig, png, dpi: int, screen_dpi: int = 100) -> bool:
    """Inside a Jupyter kernel: show the PNG just written for ``fig`` (at the size matplotlib's inline
    display would give, ``screen_dpi``) and close ``fig``, so the inline backend does not draw it a second
    time. Returns whether it did; outside a kernel (scripts, tests) nothing happens."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    data = Path(png).read_bytes()
    width = int.from_bytes(data[16:20], "big")  # the PNG header's IHDR width
    display(Image(data=data, format="png", width=round(width * screen_dpi / dpi)))
    plt.close(fig)
    return True


def image_grid(rows, row_labels, title: str, *, tile: int | None = None, pad: int = 4):
    """One figure of image tiles: ``rows`` is a list of rows, each a list of (image, caption) with PIL images
    or arrays (H x W grey or H x W x 3 RGB, 0-255); ``row_labels`` name the rows at the left. Every tile is
    shown at ``tile`` x ``tile`` pixels (nearest-neighbour, so a 28 x 28 input keeps its pixels; default: the
    largest image's size). Drawn as one image with text, so a grid of hundreds of tiles draws in a second
    where as many matplotlib panels take ten."""
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image as PILImage

    def rgb(im) -> np.ndarray:
        a = np.asarray(im)
        if a.dtype != np.uint8:
            a = np.clip(a, 0, 255).astype(np.uint8)
        pil = PILImage.fromarray(a).convert("RGB")
        if tile is not None and pil.size != (tile, tile):
            pil = pil.resize((tile, tile), PILImage.NEAREST)
        return np.asarray(pil, dtype=float) / 255.0

    tiles = [[(rgb(im), cap) for im, cap in row] for row in rows]
    if len(row_labels) != len(tiles) or not any(tiles):
        raise ValueError(f"image_grid needs one label per row and at least one tile, got {len(tiles)} rows and "
                         f"{len(row_labels)} labels")
    h = max(a.shape[0] for row in tiles for a, _ in row)
    w = max(a.shape[1] for row in tiles for a, _ in row)
    n_col = max(len(row) for row in tiles)
    cell_h, cell_w = h + pad + max(6, h // 3), w + pad  # room under each tile for its caption
    canvas = np.ones((len(tiles) * cell_h, n_col * cell_w, 3))
    fig, ax = plt.subplots(figsize=(1.1 * n_col, 1.2 * len(tiles) + 0.6))
    for r, row in enumerate(tiles):
        for c, (a, _) in enumerate(row):
            canvas[r * cell_h:r * cell_h + a.shape[0], c * cell_w:c * cell_w + a.shape[1]] = a
    ax.imshow(canvas, interpolation="nearest")
    for r, row in enumerate(tiles):
        for c, (a, cap) in enumerate(row):
            ax.text(c * cell_w + a.shape[1] / 2, r * cell_h + a.shape[0] + 1, cap, ha="center", va="top", fontsize=7)
    ax.set_yticks([r * cell_h + h / 2 for r in range(len(tiles))], row_labels, fontsize=9)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    return fig


def yerr(df: pd.DataFrame, col: str = "accuracy", scale: float = 100.0) -> list:
    """Asymmetric error bars for ``ax.errorbar(..., yerr=...)`` from ``ci_low`` / ``ci_high`` around ``col``,
    times ``scale`` (percentage points by default)."""
    return [(df[col] - df["ci_low"]) * scale, (df["ci_high"] - df[col]) * scale]


def shared_legend(fig, axes, n_used: int) -> None:
    """One legend for a grid of panels: in the first unused panel if there is one (the unused panels are
    switched off), else below the grid."""
    handles, labels = axes.flat[0].get_legend_handles_labels()
    spare = list(axes.flat[n_used:])
    for ax in spare:
        ax.axis("off")
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=8, frameon=False)
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(labels) // 3)))


def curve(tab: pd.DataFrame, task: str, mode: str, source: str) -> pd.DataFrame:
    """One line of an ICL shots figure from a summary with columns task, mode, source, shots: the 0-shot
    point (source 'none', no demonstrations) followed by the points of ``source``, by shots."""
    t = tab[(tab["task"] == task) & (tab["mode"] == mode)]
    return pd.concat([t[t["source"] == "none"], t[t["source"] == source]]).sort_values("shots")


def smooth(values, k: int = 25):
    """Moving average over ``k`` steps (``k`` clipped to [1, len]); 'valid' mode, so len - k + 1 points."""
    import numpy as np

    v = np.asarray(values, float)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")


def decorate(ax, *, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
             ylim: tuple | None = None, legend: float | None = None, title_size: float | None = None) -> None:
    """Title, axis labels, y limits and a legend (of font size ``legend``) for one panel, where given."""
    if title is not None:
        ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if legend is not None:
        ax.legend(fontsize=legend)


def publish(fig, name: str, data: pd.DataFrame, *, suptitle: str | None = None, suptitle_size: float = 10) -> None:
    """The end of every figure cell: the figure's title (when given), a tight layout, :func:`save_figure`
    (PNG + the CSV of ``data``) and the inline display."""
    import matplotlib.pyplot as plt

    if suptitle is not None:
        fig.suptitle(suptitle, fontsize=suptitle_size)
    fig.tight_layout()
    save_figure(fig, name, data)
    plt.show()


def save_table(table: pd.DataFrame, name: str, folder: Path | None = None) -> Path:
    """``figures/<name>.csv`` (or under ``folder``; written beside and renamed into place): a bulk table the
    notebook does not print in full (beside the figures, so a rerun replaces it with them)."""
    if not _NAME.match(name):
        raise ParameterError(f"table name {name!r} must be a lower-case slug (letters, digits, _ and -)")
    out = folder or figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    path, tmp = out / f"{name}.csv", out / f".{name}.csv.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        table.to_csv(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
