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
