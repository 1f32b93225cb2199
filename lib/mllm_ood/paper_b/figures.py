"""Notebook 04's figures. Each function draws one figure from the tables of :mod:`mllm_ood.paper_b.bench`,
:mod:`mllm_ood.paper_b.grids.analysis` and :mod:`mllm_ood.paper_b.checks` and returns it laid out;
:func:`show` saves it (PNG + the CSV of the data behind it) and displays it.

The scenario grids' scatter plots share one style (:func:`scatter_by_row_col`, :func:`row_col_legend`):
colour = the grid's row (image / visual condition), marker = its column (question / text condition).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..plotting import decorate, save_figure
from .bench import ENCODER_LABELS, SIDE_SUM
from .estimators import gaussian_club_limit
from .grids import llava_bench

MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def show(fig, name: str, data: pd.DataFrame) -> None:
    """Save ``fig`` as ``figures/<name>.png`` with ``data`` as its CSV, and display it."""
    save_figure(fig, name, data)
    plt.show()


def _colour(i: int, n: int):
    return plt.cm.viridis(i / max(1, n - 1))


def scatter_by_row_col(ax, table: pd.DataFrame, x: str, y: str, rows: list, cols: list, *, row_col: str, col_col: str,
                       size: float) -> None:
    """One point per scenario of ``table``: ``x`` against ``y``, coloured by its row, marked by its column."""
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            p = table[(table[row_col] == r) & (table[col_col] == c)]
            ax.scatter(p[x], p[y], color=_colour(i, len(rows)), marker=MARKERS[j % len(MARKERS)], edgecolor="k", s=size)


def row_col_legend(ax, rows: list, cols: list, row_label: str, col_label: str, **legend) -> None:
    """A legend entry per row colour and per column marker, then ``ax.legend(**legend)``."""
    for i, r in enumerate(rows):
        ax.scatter([], [], color=_colour(i, len(rows)), marker="o", label=f"{row_label}: {r}")
    for j, c in enumerate(cols):
        ax.scatter([], [], color="white", edgecolor="k", marker=MARKERS[j % len(MARKERS)], label=f"{col_label}: {c}")
    ax.legend(**legend)


def _r_text(c: pd.DataFrame, undefined: str = "r undefined") -> str:
    return f"r = {c['r'].iloc[0]:.2f} [{c['low'].iloc[0]:.2f}, {c['high'].iloc[0]:.2f}]" if len(c) else undefined


# --------------------------------------------------------------------------------------------------
# part 1: the shipped LLaVA-Bench answers


def llava_emi_per_scenario(view: pd.DataFrame, pubs: dict, models, encoder: str):
    """EMI per scenario with its interval for each model, beside paper B's released EMI, per grid."""
    n_syn = view[view["grid"] == "synthetic"]["scenario"].nunique()
    fig, axes = plt.subplots(1, 2, figsize=(15, max(5, 0.22 * n_syn + 2)), gridspec_kw={"width_ratios": [1.3, 1]})
    for ax, grid in zip(axes, llava_bench.GRIDS):
        part = view[view["grid"] == grid]
        names = list(dict.fromkeys(part["scenario"]))
        y = np.arange(len(names))
        for k, m in enumerate(models):
            t = part[part["model"] == m].set_index("scenario").reindex(names)
            off = (k - (len(models) - 1) / 2) * 0.3
            ax.errorbar(t["emi"], y + off, xerr=[t["emi"] - t["emi_low"], t["emi_high"] - t["emi"]], fmt="o", ms=4,
                        color=f"C{k}", label=f"{llava_bench.MODEL_LABELS[m]} (this project, text only)")
            pub = pubs[(m, grid)].set_index("scenario").reindex(names)
            ax.scatter(pub["pub_emi"], y + off, marker="x", color=f"C{k}", alpha=0.7,
                       label=f"{llava_bench.MODEL_LABELS[m]}: paper B's release (images)")
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set_yticks(y, [n.replace("llava_bench_", "") for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("EMI (nats)")
        ax.set_title(f"{grid} grid: EMI per scenario, 95 % interval ({ENCODER_LABELS[encoder]})", fontsize=10)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("EMI of real LLaVA answers per scenario (text-only re-analysis) beside paper B's released EMI")
    fig.tight_layout()
    return fig


def llava_emid_vs_text_side(view: pd.DataFrame, corr: pd.DataFrame, models, encoder: str):
    """EMID against the text-side sum per model and grid, with the crossed-interval r."""
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 4.6 * len(models)), squeeze=False)
    crossed = corr["resampling"] == "rows x columns"
    for row_axes, m in zip(axes, models):
        for ax, grid in zip(row_axes, llava_bench.GRIDS):
            t = view[(view["model"] == m) & (view["grid"] == grid) & ~view["is_source"]]
            rows, cols = list(dict.fromkeys(t["row"])), list(dict.fromkeys(t["col"]))
            scatter_by_row_col(ax, t, "jsd_sum", "emid", rows, cols, row_col="row", col_col="col", size=45)
            row_col_legend(ax, rows, cols, "image", "question", fontsize=6, ncol=2, loc="best")
            c = corr[crossed & (corr["model"] == m) & (corr["encoder"] == encoder) & (corr["grid"] == grid)
                     & (corr["pair"] == SIDE_SUM) & (corr["method"] == "pearson")]
            ax.axhline(0, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{llava_bench.MODEL_LABELS[m]}, {grid} grid: {_r_text(c)}", fontsize=10)
            ax.set_xlabel("text-side sum √JSt + JSpy^¼ + JSqy^¼ (JS in nats; image term unknown)")
            ax.set_ylabel("EMID = EMI(ID) − EMI(scenario) (nats)")
    fig.suptitle(f"Real LLaVA answers: EMID vs the text-side terms of paper B's bound ({ENCODER_LABELS[encoder]})")
    fig.tight_layout()
    return fig


def llava_vs_published(comparison: pd.DataFrame, models, encoder: str):
    """This project's EMI and EMID per scenario against paper B's released values."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (col, pub, label) in zip(axes, [("emi", "pub_emi", "EMI"), ("emid", "pub_emid", "EMID")]):
        for k, (m, grid) in enumerate([(m, g) for m in models for g in llava_bench.GRIDS]):
            p = comparison[(comparison["model"] == m) & (comparison["grid"] == grid) & (comparison["encoder"] == encoder)]
            ax.scatter(p[pub], p[col], color=f"C{k}", marker="o" if grid == "synthetic" else "s", edgecolor="k", s=35,
                       label=f"{llava_bench.MODEL_LABELS[m]}, {grid}")
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"published {label} (paper B: images + XLM-R, pre-trained CLUB; nats)")
        ax.set_ylabel(f"this project's {label} (text only, {ENCODER_LABELS[encoder]}; nats)")
        ax.set_title(f"{label} per scenario: this project vs paper B's release", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Real LLaVA answers: the same scenarios measured two ways")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# part 2: the digits grids


def emi_heatmap(t: pd.DataFrame, g, title: str):
    """EMI per scenario beside the judge's mean score, rows = visual conditions, columns = text conditions."""
    maps = [t.pivot(index="visual", columns="text", values=v).reindex(index=list(g.visual), columns=list(g.text))
            for v in ("emi", "judge")]
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 4 + 1.7 * len(g.text)), max(4, 2 + 0.6 * len(g.visual))))
    lim = float(np.nanmax(np.abs(maps[0].to_numpy()))) or 1.0
    sns.heatmap(maps[0], annot=True, fmt=".3f", cmap="RdBu", vmin=-lim, vmax=lim, ax=axes[0],
                cbar_kws={"label": "EMI (nats)"})
    axes[0].set_title(f"EMI per scenario ({g.name} grid)", fontsize=11)
    sns.heatmap(maps[1], annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=axes[1],
                cbar_kws={"label": "mean judge score (0-1)"})
    axes[1].set_title(f"Judge score per scenario ({g.name} grid)", fontsize=11)
    for ax in axes:
        ax.set_xlabel("text condition" if g.text_kind == "shift" else "question language")
        ax.set_ylabel("visual condition" if g.text_kind == "shift" else "digit style")
        ax.tick_params(axis="x", rotation=45)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _pick(summary: pd.DataFrame, grid: str, pair: str, method: str) -> pd.DataFrame:
    return summary[(summary["grid"] == grid) & (summary["pair"] == pair) & (summary["method"] == method)]


def emid_vs_bound(tables: dict, grids: dict, summary: pd.DataFrame, title: str):
    """EMID against the JSD bound and the W2 bound per grid, with the diagonal EMID = bound."""
    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 4.4 * len(tables)), squeeze=False)
    for row, (name, t) in zip(axes, tables.items()):
        ood, g = t[~t["is_id"]], grids[name]
        for ax, (col, label, pair) in zip(row, [("jsd_sum", "JSD bound (scale-adjusted)", "EMID vs JSD bound"),
                                                ("w_sum", "W2 bound (heuristic)", "EMID vs W2 bound")]):
            scatter_by_row_col(ax, ood, col, "emid", list(g.visual), list(g.text), row_col="visual", col_col="text",
                               size=40)
            hi = max(float(ood[col].max()), float(ood["emid"].max()), 0.0) * 1.05 or 1.0
            ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--", label="EMID = bound")
            c, s = _pick(summary, name, pair, "pearson").iloc[0], _pick(summary, name, pair, "spearman").iloc[0]
            ax.set_title(f"{name}: EMID vs {label}\nPearson r = {c['r']:.2f} [{c['low']:.2f}, {c['high']:.2f}], "
                         f"Spearman = {s['r']:.2f}", fontsize=10)
            ax.set_xlabel("bound = √JSv + √JSt + JSpy^¼ + JSqy^¼ (JS in nats)" if col == "jsd_sum"
                          else "bound = Wv + Wt + √Wpy + √Wqy (W2 in embedding units)")
            ax.set_ylabel("EMID = EMI(ID) - EMI(scenario) (nats)")
            ax.axhline(0, color="grey", lw=0.8, ls=":")
        row_col_legend(row[1], list(g.visual), list(g.text), "visual", "text", fontsize=7, loc="center left",
                       bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def emi_vs_judge(tables: dict, summary: pd.DataFrame, title: str):
    """EMI against the mean judge score, one point per scenario (the ID cell starred)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items()):
        ood, idr = t[~t["is_id"]], t[t["is_id"]]
        ax.errorbar(ood["judge"], ood["emi"], yerr=[ood["emi"] - ood["emi_low"], ood["emi_high"] - ood["emi"]],
                    fmt="o", color="C0", ecolor="C0", alpha=0.8, label="shifted scenario (95 % interval)")
        ax.scatter(idr["judge"], idr["emi"], edgecolor="k", s=160, marker="*", color="C3", zorder=3, label="ID cell")
        ax.legend(fontsize=8)
        c = _pick(summary, name, "EMI vs judge score", "pearson")
        ax.set_title(f"{name}: EMI vs judge score\n{'Pearson ' + _r_text(c) if len(c) else 'r undefined'}", fontsize=10)
        ax.set_xlabel("mean judge score per scenario (0-1)")
        ax.set_ylabel("EMI (nats)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# part 3: the estimator checks


def estimator_checks(mi_check: pd.DataFrame, w_check: pd.DataFrame, jsd_check: pd.DataFrame):
    """The three teaching checks side by side: MI estimators, empirical W2 vs Bures, representation JSD."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax = axes[0]
    rho = np.linspace(0.05, 0.95, 60)
    ax.plot(rho, [-(4 / 2) * math.log(1 - r ** 2) for r in rho], color="k", label="true MI (closed form)")
    ax.plot(rho, [gaussian_club_limit(r, 4, logvar_bound=1.0) for r in rho], color="k", ls="--",
            label="CLUB limit d·ρ²/max(1−ρ², 1/e)")
    ax.plot(mi_check["rho"], mi_check["club"], "o-", color="C0", label="CLUB estimate")
    ax.plot(mi_check["rho"], mi_check["infonce"], "s-", color="C1", label="InfoNCE estimate")
    ax.axhline(mi_check["infonce_ceiling"].iloc[0], color="C1", ls=":", label="InfoNCE ceiling log(batch)")
    ax.set_ylim(0, max(8.0, float(mi_check["club"].max()) * 1.1))
    decorate(ax, title=f"MI estimators vs closed form (d = 4, n = {mi_check['n'].iloc[0]})",
             xlabel="correlation ρ per coordinate pair", ylabel="mutual information (nats)", legend=7)
    ax = axes[1]
    for i, (d, part) in enumerate(w_check.groupby("d")):
        ax.plot(part["n"], part["exact"], "o-", color=f"C{i}", label=f"empirical W2 (ot.emd2), d = {d}")
        ax.plot(part["n"], part["baseline"], "s--", color=f"C{i}", alpha=0.6, label=f"split-half baseline, d = {d}")
        ax.axhline(part["bures"].iloc[0], color=f"C{i}", lw=2.5, alpha=0.35, label=f"Bures closed form, d = {d}")
    ax.set_xscale("log")
    ax.minorticks_off()
    w_ns = sorted(set(w_check["n"]))
    ax.set_xticks(w_ns, [str(n) for n in w_ns])
    decorate(ax, title="Empirical W2 vs Bures closed form as n grows", xlabel="samples per distribution n",
             ylabel="W2 (embedding units)", legend=7)
    ax = axes[2]
    for i, (n, part) in enumerate(jsd_check.groupby("n")):
        ax.plot(part["shift"], part["jsd"], "o-", color=f"C{i}", label=f"representation JSD, n = {n}")
        ax.plot(part["shift"], part["baseline"], "s--", color=f"C{i}", alpha=0.6, label=f"split-half baseline, n = {n}")
    ax.axhline(math.log(2), color="grey", ls=":", label="maximum log 2")
    decorate(ax, title="Representation JSD vs mean shift (d = 384)",
             xlabel="mean shift along one axis (before L2 normalisation)", ylabel="JSD (nats)", legend=7)
    fig.tight_layout()
    return fig
