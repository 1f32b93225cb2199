"""Cached evaluation of ICL conditions (one table of per-query results per condition) and their summaries
with intervals over queries."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...cache import cached_analysis, cached_table
from ...mllm import fingerprint_of
from ...progress import tqdm
from ...seeding import derive_seed
from ...stats import bootstrap_ci
from ...formats.episodes import Episode
from ...formats.prompts import format_answer, parse_answer, parse_answer_paper_a
from ...mllm.generation import Generation
from .context import check_context
from .studies import Condition, build_condition_episodes
from .tasks import ICL_VERSION, RESULT_COLUMNS, IclData

def predict(model, episodes: list[Episode], scoring: str, batch_size: int, max_new_tokens: int = 12,
            generation: Generation | None = None, layout: str = "compact"):
    """(predicted choice index or -1, parsed flag) per episode, through the shared model interface. Paper A's
    layouts are parsed by paper A's parser; ``generation`` (cap, temperature, seed, system prompt) replaces
    ``max_new_tokens`` when given."""
    generation = generation or Generation(max_new_tokens=max_new_tokens)
    convs = [(e.conversation[0], generation.text(model, e.conversation[1])) for e in episodes]
    if scoring == "loglik":
        scores = model.score_choices(convs, [[format_answer(c) for c in e.choices] for e in episodes],
                                     batch_size=batch_size)
        return [int(i) for i in scores.argmax(1)], [True] * len(episodes)
    replies = generation.generate(model, convs, batch_size)
    parse = parse_answer if layout == "compact" else parse_answer_paper_a
    preds = [parse(rep, e.choices) for rep, e in zip(replies, episodes)]
    return [-1 if p is None else int(p) for p in preds], [p is not None for p in preds]


def evaluate_condition(model, cond: Condition, data: IclData, batch_size: int = 64,
                       data_seed: int = 0, generation: Generation | None = None) -> pd.DataFrame:
    """Per-query results (RESULT_COLUMNS) of one condition, cached per (model fingerprint, condition, code
    version, generation settings when given)."""
    params = {"model": fingerprint_of(model), "data_seed": data_seed, "icl_version": ICL_VERSION, **cond.params()}
    if generation is not None and generation.key() != Generation(max_new_tokens=cond.max_new_tokens).key():
        params["generation"] = generation.key()  # only when it differs: earlier results keep their keys
    if cond.task.dataset.startswith("hub:"):  # hub labels follow paper A's class order (data.paper_a_lists)
        params["class_order"] = "paper_a"

    def build():
        episodes, extras = build_condition_episodes(cond, data)
        preds, parsed = predict(model, episodes, cond.scoring, batch_size, cond.max_new_tokens, generation,
                                cond.layout)
        rows = []
        for ep, ex, p, ok in zip(episodes, extras, preds, parsed):
            word_class = {w: c for c, w in ep.words.items()}
            pred = word_class[ep.choices[p]] if p >= 0 else -1
            rows.append({"study": cond.study, "task": cond.task.name, "dataset": cond.task.dataset,
                         "query_domain": cond.task.query_domain, "demo_domain": ex["demo_domain"],
                         "source": cond.source if cond.shots else "none", "n_way": len(ep.choices),
                         "shots": cond.shots, "mode": cond.mode, "scoring": cond.scoring, "seed": cond.seed,
                         "level": cond.level, "query_colour": cond.query_colour, "query": ex["query"],
                         "query_id": ep.query_id, "label": ep.query_label, "pred": pred,
                         "correct": bool(ok and pred == ep.query_label), "parsed": bool(ok),
                         "majority": ex["majority"], "pred_majority": bool(ex["majority"] >= 0 and pred == ex["majority"]),
                         "demo_labels": ";".join(map(str, ep.demo_labels)), "tie_actual": ex["tie_actual"]})
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    return cached_table("icl", params, build, file="results.csv", keep_default_na=False,
                        na_values={"level": [""], "tie_actual": ["", "nan"]},
                        dtype={"query_domain": str, "demo_domain": str, "query_id": str, "demo_labels": str,
                               "query_colour": str})


@cached_analysis("analysis")
def run_conditions(model, conditions: list[Condition], data: IclData, batch_size: int = 64,
                   desc: str = "ICL conditions", generation: Generation | None = None) -> pd.DataFrame:
    """Evaluate (or read from the cache) every condition; one table of per-query results. Conditions in paper A's
    layout are first checked to fit the model's context, in its real tokens (:func:`.context.check_context`)."""
    if any(c.layout != "compact" for c in conditions):
        check_context(model, conditions, data, generation)
    frames = [evaluate_condition(model, c, data, batch_size, data.seed, generation)
              for c in tqdm(conditions, desc=desc)]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

def per_query(results: pd.DataFrame, by: Sequence[str], value: str = "correct") -> pd.DataFrame:
    """Each query's ``value`` averaged over demonstration seeds, per group of ``by`` (unit = task x query)."""
    return (results.groupby([*by, "task", "query"], dropna=False, sort=False)[value].mean()
            .rename(value).reset_index())


@cached_analysis("analysis")
def summarise(results: pd.DataFrame, by: Sequence[str], value: str = "correct", n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """Per group of ``by``: mean of ``value`` over seeds (fraction), 95 % bootstrap interval over queries
    (of their seed-averaged value), the sd of the per-seed means, and the numbers of queries and seeds."""
    by = list(by)
    rows = []
    for key, g in results.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        q = g.groupby(["task", "query"])[value].mean().to_numpy(float)
        per_seed = g.groupby("seed")[value].mean()
        lo, hi = bootstrap_ci(q, n_boot=n_boot, seed=derive_seed(seed, *key))
        rows.append(dict(zip(by, key), value=float(per_seed.mean()), ci_low=lo, ci_high=hi,
                         seed_sd=float(per_seed.std(ddof=0)), n_queries=len(q), n_seeds=int(per_seed.size)))
    return pd.DataFrame(rows).rename(columns={"value": "accuracy" if value == "correct" else value})
