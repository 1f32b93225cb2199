"""The figure helpers: one-image tile grids, and a saved figure displayed once."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mllm_ood.plotting import display_saved, image_grid, save_figure, save_table  # noqa: E402
from mllm_ood.validation import ParameterError  # noqa: E402


def _solid(value, size=8, mode="L"):
    return Image.new(mode, (size, size), value)


def test_image_grid_places_every_tile_with_its_caption():
    rows = [[(_solid(0), "a"), (_solid(255), "b")], [(np.full((8, 8, 3), [255, 0, 0], np.uint8), "c")]]
    fig = image_grid(rows, ["first", "second"], "grid", pad=2)
    ax = fig.axes[0]
    canvas = np.asarray(ax.images[0].get_array())
    cell_h, cell_w = 8 + 2 + 6, 8 + 2  # tile + pad + caption room (at least 6 px)
    assert canvas.shape == (2 * cell_h, 2 * cell_w, 3)
    assert np.allclose(canvas[0:8, 0:8], 0.0)                    # black tile, top left
    assert np.allclose(canvas[0:8, cell_w:cell_w + 8], 1.0)      # white tile, top right
    assert np.allclose(canvas[cell_h:cell_h + 8, 0:8], [1, 0, 0])  # the red RGB array, second row
    assert np.allclose(canvas[cell_h:cell_h + 8, cell_w:cell_w + 8], 1.0)  # no tile there: background
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second"] and ax.get_title() == "grid"
    plt.close(fig)


def test_image_grid_resizes_to_the_tile_keeping_pixels():
    checker = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((2, 2), np.uint8))  # 4 x 4
    fig = image_grid([[(checker, "")]], ["x"], "t", tile=8)
    canvas = np.asarray(fig.axes[0].images[0].get_array())
    assert np.allclose(canvas[:4, :4], 0.0) and np.allclose(canvas[:4, 4:8], 1.0)  # nearest: blocks, no blur
    plt.close(fig)
    with pytest.raises(ValueError, match="one label per row"):
        image_grid([[(checker, "")]], ["x", "y"], "t")


def test_outside_a_kernel_the_saved_figure_stays_open(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(tmp_path))
    fig, ax = plt.subplots()
    ax.set_title("t")
    paths = save_figure(fig, "t_open", pd.DataFrame({"x": [1]}))
    assert plt.fignum_exists(fig.number) and not display_saved(fig, paths["png"], 130)
    plt.close(fig)


def test_save_table_writes_the_csv_under_figures_and_refuses_a_bad_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(tmp_path))
    path = save_table(pd.DataFrame({"a": [1, 2]}), "03_table")
    assert path == tmp_path / "03_table.csv" and pd.read_csv(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["03_table.csv"]
    with pytest.raises(ParameterError, match="slug"):
        save_table(pd.DataFrame({"a": [1]}), "../outside")
