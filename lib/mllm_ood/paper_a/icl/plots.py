"""Notebook 03's figures: accuracy against shots as small multiples (:func:`shots_figure`), label shift
(:func:`label_shift_figure`), the flipped-minus-aligned colour gap (:func:`colour_gap_figure`) and the
copying of a single demonstration's label (:func:`copy_figure`). Every figure names the model in words
and draws its chance (or no-effect) line; each is saved with its data by
:func:`mllm_ood.plotting.publish`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...plotting import curve, decorate, publish, shared_legend, yerr
from .tasks import Task

SOURCES = {"in_domain": ("-", "o", "in-domain demonstrations"), "shifted": ("--", "s", "shifted-domain demonstrations")}


def shots_figure(shots_tab: pd.DataFrame, tasks: Sequence[Task], modes: Sequence[str], model_words: str) -> None:
    """Accuracy against shots, one panel per label-word mode (rows) and task (columns): in-domain (solid,
    circles) and shifted-domain (dashed, squares) demonstrations with 95 % intervals, chance dotted."""
    shots = sorted(set(shots_tab["shots"]))
    xpos = {s: i for i, s in enumerate(shots)}
    fig, axes = plt.subplots(len(modes), len(tasks), figsize=(2.6 * len(tasks), 2.6 * len(modes)), squeeze=False,
                             sharey=True)
    for i, mode in enumerate(modes):
        for ax, t in zip(axes[i], tasks):
            for j, (source, (ls, marker, label)) in enumerate(SOURCES.items()):
                c = curve(shots_tab, t.name, mode, source)
                ax.errorbar([xpos[s] + (j - 0.5) * 0.1 for s in c["shots"]], c["accuracy"] * 100, yerr=yerr(c),
                            color=f"C{j}", ls=ls, marker=marker, ms=4, capsize=2, label=label)
            ax.axhline(100 / t.n_way, color="grey", ls=":", label="chance (1 / classes)")
            ax.set_xticks(list(xpos.values()), list(xpos))
            decorate(ax, title=f"{t.name} ({t.n_way}-way)\n{mode} words", title_size=8, ylim=(0, 105))
        axes[i, 0].set_ylabel("accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("demonstrations")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, -0.04))
    publish(fig, "03_icl_accuracy_vs_shots", shots_tab, suptitle=(
        f"ICL accuracy vs shots, {model_words}\n"
        "query's own domain vs another domain as demonstrations; mean over demonstration seeds, "
        "95 % bootstrap intervals over queries"))


def label_shift_figure(acc: pd.DataFrame, acc_cls: pd.DataFrame, maj: pd.DataFrame, modes: Sequence[str],
                       n_way: int | None, missing: Sequence[float], shots: int, model_words: str) -> None:
    """Per mode (rows): accuracy on all queries, by query class (majority / minority) and the rate of
    predicting the majority class, against the majority share; shares at which a class is never
    demonstrated (``missing``) are shaded: there the minority class is absent, not under-represented."""
    fig, axes = plt.subplots(len(modes), 3, figsize=(13, 3.3 * len(modes)), squeeze=False, sharex=True)
    for i, mode in enumerate(modes):
        panels = [(acc[acc["mode"] == mode].assign(query_class="all queries"), "accuracy", "accuracy (all tasks)"),
                  (acc_cls[acc_cls["mode"] == mode], "accuracy", "accuracy by query class"),
                  (maj[maj["mode"] == mode].assign(query_class="all queries"), "pred_majority",
                   "predictions of the majority class")]
        for ax, (tab, col, title) in zip(axes[i], panels):
            for j, (qc, g) in enumerate(tab.groupby("query_class", sort=False)):
                ax.errorbar(g["level"], g[col] * 100, yerr=yerr(g, col), marker="o", capsize=3, color=f"C{j}",
                            label=qc)
            chance = (100 / n_way) if n_way else None
            if chance is not None:
                ax.axhline(chance, color="grey", ls=":", label="chance / unbiased rate (1 / classes)")
            for lv in missing:
                ax.axvspan(lv - 0.03, lv + 0.03, color="0.85", zorder=0)
            decorate(ax, title=f"{title}\n{mode} words", title_size=9, ylim=(0, 105), legend=7)
        axes[i, 0].set_ylabel("%")
    for ax in axes[-1]:
        ax.set_xlabel("share of the majority class among the demonstrations\n(shaded: a class is never shown)")
    data = pd.concat([acc.assign(series="accuracy", query_class="all"), acc_cls.assign(series="accuracy"),
                      maj.assign(series="majority_rate", query_class="all")])
    publish(fig, "03_icl_label_shift", data, suptitle=(
        f"Label shift, {model_words}\n"
        f"{shots} in-domain demonstrations with unequal class proportions; 95 % bootstrap intervals over queries"))


def colour_gap_figure(gap: pd.DataFrame, modes: Sequence[str], shots: int, model_words: str) -> None:
    """Per mode: accuracy on colour-flipped minus colour-aligned queries (the same digits) against the tie
    strength, pooled over pairs (thick, 95 % interval) and per pair (thin); 0 = colour changes nothing;
    the 0-shot gap dash-dotted."""
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 3.8), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        g = gap[(gap["mode"] == mode) & (gap["shots"] > 0)]
        for task, t in g[g["task"] != "all pairs"].groupby("task"):
            ax.plot(t["level"], t["gap"] * 100, lw=0.8, ls="--", marker=".", alpha=0.7, label=f"pair {task}")
        p = g[g["task"] == "all pairs"]
        ax.errorbar(p["level"], p["gap"] * 100, yerr=yerr(p, "gap"), color="k", lw=2, marker="o", capsize=3,
                    label="all pairs")
        z = gap[(gap["mode"] == mode) & (gap["shots"] == 0) & (gap["task"] == "all pairs")]
        if len(z):
            ax.axhline(z["gap"].iloc[0] * 100, color="C3", ls="-.", lw=1, label="0 shots")
        ax.axhline(0, color="grey", ls=":", label="no colour effect")
        span = max(20.0, *(100 * gap[["ci_low", "ci_high"]].abs().max().fillna(0) + 5))
        decorate(ax, title=f"{mode} words", xlabel="tie strength (share of demonstrations in their home colour)",
                 ylim=(-span, span), legend=7)
    axes[0, 0].set_ylabel("flipped minus aligned accuracy (points)")
    publish(fig, "03_icl_spurious_correlation", gap, suptitle=(
        f"Spurious colour, {model_words}\n"
        f"{shots} coloured demonstrations; accuracy of colour-flipped minus colour-aligned queries (same digits), "
        "95 % bootstrap intervals over queries"))


def copy_figure(copies: pd.DataFrame, modes: Sequence[str], model_words: str) -> None:
    """At 1 shot, per task (x) and mode (colour): the share of queries answered with the demonstration's
    label, with the share expected if the answer ignored it (1 / classes) as a grey tick; right panel:
    accuracy when the demonstration shows the query's class vs another class."""
    tasks = list(dict.fromkeys(copies["task"]))
    x = np.arange(len(tasks))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(tasks)) + 4, 3.8), squeeze=False)
    for j, mode in enumerate(modes):
        g = copies[copies["mode"] == mode].set_index("task").reindex(tasks)
        axes[0, 0].errorbar(x + (j - 0.5) * 0.2, g["copies"] * 100, yerr=yerr(g, "copies"), ls="none", marker="o",
                            capsize=3, color=f"C{j}", label=f"{mode} words")
        for col, marker, what in [("acc_same", "^", "demo shows the query's class"),
                                  ("acc_other", "v", "demo shows another class")]:
            axes[0, 1].plot(x + (j - 0.5) * 0.2, g[col] * 100, ls="none", marker=marker, color=f"C{j}",
                            label=f"{mode} words, {what}")
    ind = copies.drop_duplicates("task").set_index("task").reindex(tasks)["independent"] * 100
    axes[0, 0].scatter(x, ind, marker="_", s=400, color="grey", label="if the answer ignored the demo")
    axes[0, 1].scatter(x, 100 / copies.drop_duplicates("task").set_index("task").reindex(tasks)["n_way"], marker="_",
                       s=400, color="grey", label="chance (1 / classes)")
    for ax, title in zip(axes[0], ["answers copying the one demonstration's label", "1-shot accuracy"]):
        ax.set_xticks(x, tasks, rotation=30, ha="right", fontsize=8)
        decorate(ax, title=title, ylabel="%", ylim=(-3, 105))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    publish(fig, "03_icl_one_shot_copying", copies, suptitle=(
        f"One demonstration, {model_words}\n"
        "does the model answer with the demonstrated label? (mean over seeds; 95 % bootstrap intervals over "
        "queries)"))


def probe_figure(icl_curve: pd.DataFrame, probe_tab: pd.DataFrame, tasks: Sequence[Task], modes: Sequence[str],
                 draws: int, model_words: str) -> None:
    """Per task: ICL accuracy (per label-word mode) and the vision-feature probe's accuracy (task's classes,
    solid; all classes of the domain, dashed) against labelled examples per class (log axis), each with
    its chance line."""
    ncol = min(4, len(tasks))
    nrow = int(np.ceil(len(tasks) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
    for ax, t in zip(axes.flat, tasks):
        for j, mode in enumerate(modes):
            c = icl_curve[(icl_curve["task"] == t.name) & (icl_curve["mode"] == mode)].sort_values("per_class")
            ax.errorbar(c["per_class"], c["accuracy"] * 100, yerr=yerr(c), color=f"C{j}", marker="o", capsize=2,
                        label=f"ICL ({mode} words)")
        for probe, g in probe_tab[probe_tab["task"] == t.name].groupby("probe", sort=False):
            same = probe == "same classes"
            colour, what = ("k", "task's classes") if same else ("grey", "all classes of the domain")
            ax.errorbar(g["per_class"], g["accuracy"] * 100, yerr=yerr(g), color=colour, ls="-" if same else "--",
                        marker="s", ms=3, capsize=2, label=f"probe, {what}")
            ax.axhline(100 * g["chance"].iloc[0], color=colour, ls=":", lw=1, label=f"chance, {what}")
        ax.set_xscale("log", base=2)
        decorate(ax, title=f"{t.name} ({t.dataset} / {t.query_domain}, {t.n_way}-way)", title_size=9,
                 xlabel="labelled examples per class (log scale)", ylim=(0, 105))
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    shared_legend(fig, axes, len(tasks))
    publish(fig, "03_icl_vs_probe", pd.concat([icl_curve.assign(method="icl"), probe_tab.assign(method="probe")]),
            suptitle=f"Labelled examples per class vs accuracy, {model_words}\n"
            f"vision-feature probe ({draws} draws per point) vs in-context learning")

