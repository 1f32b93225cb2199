"""Paper A's ICL claims (notebook 03): paired effects on the same queries with their intervals and
verdicts (:mod:`mllm_ood.stats`), per task and pooled."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...stats import claim_verdict, paired_effect, percent_interval, points_interval
from .tasks import Task

# --------------------------------------------------------------------------------------------
# Summaries of notebook 03 (paper A's ICL claims)


def domain_shift_table(shots_res: pd.DataFrame, task_names: Sequence[str], modes: Sequence[str], max_shots: int, *,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """At ``max_shots``: accuracy with in-domain demonstrations minus accuracy with shifted ones, on the
    same queries (:func:`paired_effect`), per mode and task and pooled over ``task_names`` ('all tasks')."""
    top = shots_res[shots_res["shots"] == max_shots]
    rows = []
    for mode in modes:
        for name in [*task_names, "all tasks"]:
            sel = top[(top["mode"] == mode) & ((top["task"] == name) | (name == "all tasks"))]
            if max_shots == 0 or not len(sel):
                continue
            eff = paired_effect(sel[sel["source"] == "in_domain"], sel[sel["source"] == "shifted"], n_boot=n_boot,
                                seed=seed)
            rows.append({"mode": mode, "task": name, "shots": max_shots, "in_domain": eff["a"], "shifted": eff["b"],
                         "in_domain_minus_shifted": eff["effect"], "ci_low": eff["ci_low"], "ci_high": eff["ci_high"],
                         "n_queries": eff["n_queries"]})
    return pd.DataFrame(rows)


def shots_overview(shots_tab: pd.DataFrame, tasks: Sequence[Task], modes: Sequence[str], max_shots: int) -> pd.DataFrame:
    """Per task and mode, as text with 95 % intervals: accuracy at 0 shots and at ``max_shots`` with
    in-domain and with shifted demonstrations ('-' where not run), beside chance."""
    rows = []
    for t in tasks:
        for mode in modes:
            g = shots_tab[(shots_tab["task"] == t.name) & (shots_tab["mode"] == mode)]
            row = {"task": t.name, "mode": mode, "chance": f"{1 / t.n_way:.0%}"}
            for label, sel in [("0 shots", g[g["shots"] == 0]),
                               (f"{max_shots} shots, in-domain demos",
                                g[(g["shots"] == max_shots) & (g["source"] == "in_domain")]),
                               (f"{max_shots} shots, shifted demos",
                                g[(g["shots"] == max_shots) & (g["source"] == "shifted")])]:
                row[label] = percent_interval(*sel[["accuracy", "ci_low", "ci_high"]].iloc[0]) if len(sel) else "-"
            rows.append(row)
    return pd.DataFrame(rows)


def claim(name: str, a: pd.DataFrame, b: pd.DataFrame, value: str = "correct", sign: int = 1, *,
          n_boot: int = 1000, seed: int = 0) -> dict:
    """One claim as a row: the paired effect mean(a) - mean(b) (:func:`paired_effect`) in percentage
    points with its interval, both means, the number of queries and the verdict (:func:`claim_verdict`)."""
    eff = paired_effect(a, b, value, n_boot=n_boot, seed=seed)
    return {"claim": name, "effect (pp)": points_interval(eff["effect"], eff["ci_low"], eff["ci_high"], 1),
            "a": f"{eff['a']:.0%}", "b": f"{eff['b']:.0%}",
            "queries": eff["n_queries"], "verdict": claim_verdict(eff, sign)}


def paper_a_claims(shots_res: pd.DataFrame, ls_res: pd.DataFrame, sp_res: pd.DataFrame, modes: Sequence[str],
                   n_ways: Sequence[int], max_shots: int, fractions: Sequence[float], ties: Sequence[float], *,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper A's four ICL claims, each a paired difference on the same queries (:func:`claim`), pooled per
    mode over the tasks of each class count in ``n_ways`` (their chance levels differ): ICL improves OOD
    accuracy; domain-shifted demonstrations help less (and, beside it, the gain with shifted
    demonstrations); label shift hurts (majority share min vs max of ``fractions``); a spurious colour tie
    hurts flipped queries (tie strength min vs max of ``ties``)."""
    lo_f, hi_f, lo_t, hi_t = min(fractions), max(fractions), min(ties), max(ties)
    kw = {"n_boot": n_boot, "seed": seed}
    claims = []
    for mode in modes:
        for n_way in sorted(set(n_ways)):
            res = shots_res[(shots_res["mode"] == mode) & (shots_res["n_way"] == n_way)]
            k = res[(res["shots"] == max_shots) & (res["source"] == "in_domain")]
            if max_shots == 0 or not len(k):
                continue
            tag = f"{mode} words, {n_way}-way tasks"
            zero = res[res["shots"] == 0]
            shifted = res[(res["shots"] == max_shots) & (res["source"] == "shifted")]
            claims.append({"words / tasks": tag, **claim(
                f"ICL improves OOD accuracy (a = {max_shots} in-domain shots, b = 0)", k, zero, **kw)})
            claims.append({"words / tasks": tag, **claim(
                "domain-shifted demos help less (a = in-domain, b = shifted)", k, shifted, **kw)})
            # not a claim of paper A, reported beside it: do shifted demonstrations still help at all?
            claims.append({"words / tasks": tag, **claim(
                f"(gain with shifted demos: a = {max_shots} shifted shots, b = 0)", shifted, zero, **kw)})
        ls = ls_res[ls_res["mode"] == mode]
        if len(ls):
            claims.append({"words / tasks": f"{mode} words, label-shift tasks", **claim(
                f"label shift hurts (a = majority share {lo_f}, b = {hi_f})", ls[ls["level"] == lo_f],
                ls[ls["level"] == hi_f], **kw)})
        fl = sp_res[(sp_res["mode"] == mode) & (sp_res["query_colour"] == "flipped") & (sp_res["shots"] > 0)]
        if len(fl):
            claims.append({"words / tasks": f"{mode} words, spurious pairs", **claim(
                f"a spurious colour tie hurts flipped queries (a = tie {lo_t}, b = tie {hi_t})",
                fl[fl["level"] == lo_t], fl[fl["level"] == hi_t], **kw)})
    return pd.DataFrame(claims)


def gain_by_task(shots_res: pd.DataFrame, task_names: Sequence[str], modes: Sequence[str], max_shots: int, *,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper A's first claim per task and mode: accuracy with ``max_shots`` in-domain demonstrations minus
    accuracy with none, on the same queries (:func:`claim`)."""
    rows = []
    for name in task_names:
        for mode in modes:
            if max_shots <= 0:
                continue
            r = shots_res[(shots_res["task"] == name) & (shots_res["mode"] == mode)]
            rows.append({"task": name, "mode": mode, **claim(
                f"ICL gain ({max_shots} in-domain shots vs 0)",
                r[(r["shots"] == max_shots) & (r["source"] == "in_domain")], r[r["shots"] == 0],
                n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)
