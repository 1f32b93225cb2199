"""Measurements that explain notebook 03's oddities: how often the model copies the label of a single
demonstration (:func:`copy_rate`: the 1-shot dip with true names), and the colour gap between flipped and
aligned queries per tie strength (:func:`colour_gap`), each with 95 % bootstrap intervals over queries
(seed-averaged). """

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...seeding import derive_seed
from ...stats import bootstrap_ci
from .claims import effect


def _mean_ci(values, seed: int, *key) -> tuple[float, float, float]:
    lo, hi = bootstrap_ci(values, n_boot=1000, seed=derive_seed(seed, *key)) if len(values) else (float("nan"),) * 2
    return (float(values.mean()) if len(values) else float("nan")), lo, hi


def copy_rate(shots_res: pd.DataFrame, modes: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """At 1 shot (in-domain), per mode and task: ``copies`` = share of queries answered with the single
    demonstration's label (each query averaged over seeds; interval over queries), ``independent`` = the
    share expected if the answer ignored the demonstration (1 / classes: the demonstrated class is drawn
    uniformly), and the accuracy when the demonstration shows the query's class (``acc_same``) and when it
    shows another class (``acc_other``). A model that copies scores near 100 % and near 0 % on these two.
    Empty when no 1-shot results exist."""
    one = shots_res[(shots_res["shots"] == 1) & (shots_res["source"] == "in_domain")].copy()
    if not len(one):
        return pd.DataFrame(columns=["mode", "task", "n_way", "copies", "ci_low", "ci_high", "independent",
                                     "acc_same", "acc_other", "accuracy", "n_queries"])
    one["demo"] = one["demo_labels"].astype(str).astype(int)
    one["copies"] = one["pred"] == one["demo"]
    rows = []
    for mode in modes:
        for task, g in one[one["mode"] == mode].groupby("task", sort=False):
            q = g.groupby("query")["copies"].mean().to_numpy(float)
            c, lo, hi = _mean_ci(q, seed, "copy", mode, task)
            same = g[g["demo"] == g["label"]]
            rows.append({"mode": mode, "task": task, "n_way": int(g["n_way"].iloc[0]), "copies": c, "ci_low": lo,
                         "ci_high": hi, "independent": 1 / int(g["n_way"].iloc[0]),
                         "acc_same": float(same["correct"].mean()) if len(same) else float("nan"),
                         "acc_other": float(g[g["demo"] != g["label"]]["correct"].mean()),
                         "accuracy": float(g["correct"].mean()), "n_queries": len(q)})
    return pd.DataFrame(rows)


def colour_gap(sp_res: pd.DataFrame, modes: Sequence[str], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per mode, tie strength and pair ('all pairs' pooled): accuracy on colour-flipped queries minus on
    the same queries colour-aligned (paired, :func:`mllm_ood.paper_a.icl.claims.effect`), with 0 shots as
    level NaN. A model that follows the colour shortcut opens a negative gap as the tie strengthens."""
    rows = []
    for mode in modes:
        m = sp_res[sp_res["mode"] == mode]
        for (shots, level), g in m.groupby(["shots", "level"], dropna=False, sort=True):
            for task in [*sorted(set(g["task"])), "all pairs"]:
                t = g if task == "all pairs" else g[g["task"] == task]
                e = effect(t[t["query_colour"] == "flipped"], t[t["query_colour"] == "aligned"], n_boot=n_boot,
                           seed=seed)
                rows.append({"mode": mode, "task": task, "shots": int(shots),
                             "level": float("nan") if shots == 0 else float(level), "flipped": e["a"],
                             "aligned": e["b"], "gap": e["estimate"], "ci_low": e["low"], "ci_high": e["high"],
                             "n_queries": e["n"]})
    return pd.DataFrame(rows)
