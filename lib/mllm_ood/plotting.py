"""Figures: one function saves every figure as PNG plus the data behind it as CSV under figures/."""

from __future__ import annotations

import os
import re
import uuid

import pandas as pd

from .paths import figures_dir
from .validation import ParameterError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def save_figure(fig, name: str, data: pd.DataFrame, *, dpi: int = 130) -> dict[str, str]:
    """Write ``figures/<name>.png`` and ``figures/<name>.csv`` (the plotted data); return both paths.

    ``name`` is a stable, caption-ready slug such as ``01_zero_shot_accuracy_heatmap``. The figure
    must carry a title and labelled axes; this function refuses a figure without a title so that no
    unlabelled figure reaches figures/. The figure is left open so notebooks still display it inline.
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
    return {"png": str(png), "csv": str(csv)}


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
