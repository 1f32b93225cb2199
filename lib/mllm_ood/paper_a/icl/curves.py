"""Notebook 00's held-out in-context curves (:func:`episode_curves`: classes drawn per episode) and the
probes beside ICL (:func:`probe_curves`, :func:`colour_probe`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from ...cache import cached_analysis
from ...validation import check_choices
from ...formats.episodes import MODES
from ..features import domain_features
from ..probes import learning_curve, probe_accuracy
from .evaluation import run_conditions
from .studies import Condition, check_condition, paint, spurious_task
from .tasks import GREY_SOURCE, IclData, Task

# --------------------------------------------------------------------------------------------
# Classes drawn per episode on one domain (notebook 00's held-out in-context curves)
# --------------------------------------------------------------------------------------------

EPISODE_COLUMNS = ["n_way", "mode", "shots", "query", "query_id", "label", "pred_loglik", "correct", "pred_generate",
                   "parsed", "correct_generate", "agree"]


def episode_curves(model, data: IclData, task: Task, n_ways: Sequence[int], modes: Sequence[str],
                   shots_list: Sequence[int], n_per_class: int, *, seed: int = 0,
                   generate_modes: Sequence[str] = ("reassigned",), batch_size: int = 32) -> pd.DataFrame:
    """Per-episode results of the ``drawn_classes`` study (:class:`DrawnClasses`) on ``task``, for every
    n_way x mode x shots: ``n_per_class`` queries per class of the task, the same at every point; each
    episode holds the query's class and ``n_way - 1`` others drawn afresh, with class-balanced
    demonstrations from the query's domain (never the query's source image). Each condition is built by
    :func:`build_condition_episodes` and evaluated and cached by :func:`evaluate_condition`, as in
    notebook 03; ``seed`` seeds the queries and the demonstrations.

    Every episode is scored by choice log-likelihood (``pred_loglik``, ``correct``); for ``generate_modes``
    also by greedy generation + paper A's parser (``pred_generate``, -1 = unparsed; ``parsed``;
    ``correct_generate``; ``agree`` = both methods pick the same class), empty for the other modes.
    ``label`` and the predictions are class indices. Columns: :data:`EPISODE_COLUMNS`.
    """
    check_choices("label-word mode", modes, MODES)
    check_choices("generate mode", generate_modes, modes)
    conds = [Condition("drawn_classes", task, s, m, seed, n_per_class, n_way=n, query_seed=seed)
             for n in n_ways for m in modes for s in shots_list]
    for c in conds:  # every bad value is refused before the first condition is computed
        check_condition(c)
    keys = ["n_way", "mode", "shots", "query"]
    out = (run_conditions(model, conds, data, batch_size, desc="episode curves (choice scoring)")
           .rename(columns={"pred": "pred_loglik"})[[*keys, "query_id", "label", "pred_loglik", "correct"]])
    generate = [replace(c, scoring="generate") for c in conds if c.mode in generate_modes]
    if generate:
        gen = run_conditions(model, generate, data, batch_size, desc="episode curves (generation)")
        gen = gen.rename(columns={"pred": "pred_generate", "correct": "correct_generate"})
        out = out.merge(gen[[*keys, "pred_generate", "parsed", "correct_generate"]], on=keys, how="left",
                        validate="one_to_one")
    out = out.reindex(columns=EPISODE_COLUMNS)
    out["agree"] = (out["pred_generate"] == out["pred_loglik"]).where(out["pred_generate"].notna())
    return out


@cached_analysis("analysis")
def probe_curves(model, tasks: Sequence[Task], data: IclData, n_per_class: int, per_class_list: Sequence[int], *,
                 seed: int = 0, n_draws: int = 5, n_boot: int = 1000, batch_size: int = 64) -> pd.DataFrame:
    """The vision-feature probe beside ICL, per task: :func:`mllm_ood.paper_a.probes.learning_curve` on the frozen
    vision features of ``n_per_class`` samples per class of the task's query domain, on the task's classes
    (``probe`` 'same classes', chance 1 / n_way) and, when the domain has more classes, on all of them
    ('all classes'). Columns: those of learning_curve, task, probe, chance."""
    frames = []
    for t in tasks:
        x, y, _ = domain_features(model, t.dataset, t.query_domain, "vision", n_per_class, seed=seed,
                                  batch_size=batch_size)
        keep = np.isin(y, data.class_indices(t))
        frames.append(learning_curve(x[keep], y[keep], per_class_list, seed=seed, n_draws=n_draws, n_boot=n_boot)
                      .assign(task=t.name, probe="same classes", chance=1 / t.n_way))
        if len(np.unique(y)) > t.n_way:  # (when the task uses every class, the line above is this one)
            frames.append(learning_curve(x, y, per_class_list, seed=seed, n_draws=n_draws, n_boot=n_boot)
                          .assign(task=t.name, probe="all classes", chance=1 / len(np.unique(y))))
    return pd.concat(frames, ignore_index=True)


@cached_analysis("analysis")
def colour_probe(model, data: IclData, pairs, n_per_class: int, *, seed: int = 0, n_boot: int = 1000,
                 batch_size: int = 64) -> dict:
    """Can the model see colour? A linear probe (:func:`mllm_ood.paper_a.probes.probe_accuracy`) on the frozen
    vision features of the first ``n_per_class`` grey digits of each class of the spurious ``pairs``, each
    painted red and painted green, predicting the colour. Returns the probe's result (accuracy, ci_low,
    ci_high, ...) with ``n_images``."""
    grey = data.pool(*GREY_SOURCE)
    pair_classes = sorted({c for p in pairs for c in data.class_indices(spurious_task(p))})
    idx = [int(i) for c in pair_classes for i in grey.of_class(c)[:n_per_class]]
    painted = [paint(grey.images[i], col) for i in idx for col in ("red", "green")]
    colour = np.tile([0, 1], len(idx))
    out = probe_accuracy(model.vision_features(painted, batch_size=batch_size), colour, seed=seed, n_boot=n_boot)
    return {**out, "n_images": len(painted)}
