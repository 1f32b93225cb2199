"""Paper A's ICL claims (notebook 03), decided by the one rule of :mod:`mllm_ood.stats.rule`.

Every claim is a paired difference on the same queries: each query's correctness averaged over the
demonstration seeds in condition *a* minus in condition *b* (unit = task x query), with a 95 % percentile
bootstrap interval over queries and the exact one-sided sign-flip p-value of the per-query differences
(:func:`mllm_ood.stats.sign_flip_p`, exact when few queries differ). :func:`claim_family` gathers every
decided row of the notebook (the pooled rows of A-ICL1..A-ICL4 and the per-task gains of A-ICL1) into
one Holm family and decides it with :func:`mllm_ood.stats.decide_family` (margin 5 points); a row whose
data leave no room for the claimed effect (a ceiling, e.g. 100 % without demonstrations) is *not
testable* and leaves the family. :func:`ledger_rows` turns the pooled rows into ledger rows.

Label shift (A-ICL3) compares balanced demonstrations with the most skewed share at which *every* class
still appears among them (:func:`label_shift_levels`): at a share of 1.0 the minority class is never
demonstrated, which is a missing class, not a shifted label distribution; :func:`missing_class_table`
reports that case apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...claims import ledger_row
from ...seeding import derive_seed
from ...stats import (CONSTANT_SHARE, MARGIN, NOT_TESTABLE, bootstrap_ci, decide_family, paired_effect,
                      percent_interval, rule_text)
from ...validation import ParameterError
from .tasks import Task

NOTEBOOK = "03"
# The columns of the claim family (one row per decided claim and scope).
FAMILY_COLUMNS = ["claim_id", "scope", "estimand", "level", "a", "b", "estimate", "low", "high", "n", "gains",
                  "losses", "p", "room", "margin", "direction", "outcome", "reason", "note", "evidence"]


# --------------------------------------------------------------------------------------------
# One paired effect


def effect(a: pd.DataFrame, b: pd.DataFrame, value: str = "correct", *, reference: str = "b",
           n_boot: int = 1000, seed: int = 0) -> dict:
    """The paired effect mean(a) - mean(b) over shared queries as fractions: ``estimate`` with its 95 %
    bootstrap interval (``low``, ``high``: :func:`mllm_ood.stats.paired_effect`), the
    means ``a`` and ``b``, ``n`` queries, ``gains`` / ``losses`` (queries with a positive / negative
    difference), the exact one-sided ``p`` that the effect is not positive, and ``room``: the largest
    effect the design allows. ``reference`` names the condition the claim holds fixed: 'b' (the claim is a
    gain of a over b: room 1 - mean(b), e.g. no gain can show when 0 shots already score 100 %) or 'a'
    (the claim is a loss of b against a: room mean(a))."""
    if reference not in ("a", "b"):
        raise ParameterError(f"reference must be 'a' or 'b', got {reference!r}")
    e = paired_effect(a, b, value, n_boot=n_boot, seed=seed)
    return {"estimate": e["effect"], "low": e["ci_low"], "high": e["ci_high"], "a": e["a"], "b": e["b"],
            "n": e["n_queries"], "gains": e["gains"], "losses": e["losses"], "p": e["p"],
            "room": 1 - e["b"] if reference == "b" else e["a"]}


def constant_note(a: pd.DataFrame, b: pd.DataFrame, share: float = CONSTANT_SHARE) -> str:
    """A note when the model gives one answer (the same class) to at least ``share`` of the episodes in both
    conditions: then neither accuracy depends on what the query shows, and an effect of 0 says that the
    demonstrations did not move the model off that answer."""
    tops = [t["pred"].value_counts(normalize=True) for t in (a, b) if len(t)]
    if len(tops) < 2 or any(t.empty or t.max() < share for t in tops) or tops[0].idxmax() != tops[1].idxmax():
        return ""
    low = min(t.max() for t in tops)
    return f"constant answer: the model names the same class in at least {low:.0%} of the episodes of each condition"


def claim_row(claim_id: str, scope: str, estimand: str, a: pd.DataFrame, b: pd.DataFrame, *, reference: str = "b",
              level: str = "pooled", evidence: str = "", n_boot: int = 1000, seed: int = 0) -> dict:
    """One row of the claim family (:data:`FAMILY_COLUMNS`): the effect of ``a`` over ``b`` (:func:`effect`)
    with the margin, the direction (+1: paper A's claims are all 'a beats b') and, when the design
    leaves less room than the margin, the outcome *not testable* with its reason."""
    e = effect(a, b, reference=reference, n_boot=n_boot, seed=seed)
    row = {"claim_id": claim_id, "scope": scope, "estimand": estimand, "level": level, **e, "margin": MARGIN,
           "direction": 1, "outcome": None, "reason": "", "note": constant_note(a, b), "evidence": evidence}
    if e["room"] < MARGIN:
        ref = e["b"] if reference == "b" else e["a"]
        row["outcome"] = NOT_TESTABLE
        row["reason"] = (f"ceiling: the reference condition scores {ref:.0%}, so the data leave no room for an "
                         f"effect of {100 * MARGIN:g} points")
    return row


# --------------------------------------------------------------------------------------------
# Label shift: which shares are compared


def label_shift_levels(ls_res: pd.DataFrame) -> tuple[float | None, float | None, list[float]]:
    """(balanced, skewed, missing) majority shares of the label-shift results: ``balanced`` the smallest
    share; ``skewed`` the largest share above it at which every episode still shows every class of its
    task (None if there is none); ``missing`` the shares at which some class is never demonstrated."""
    if not len(ls_res):
        return None, None, []
    shown = ls_res["demo_labels"].astype(str).map(lambda s: len({x for x in s.split(";") if x}))
    full = (shown == ls_res["n_way"]).groupby(ls_res["level"]).all()
    balanced = float(full.index.min())
    complete = [float(lv) for lv, ok in full.items() if ok and lv > balanced]
    return balanced, (max(complete) if complete else None), sorted(float(lv) for lv, ok in full.items() if not ok)


def missing_class_table(ls_res: pd.DataFrame, modes: Sequence[str], *, n_boot: int = 1000,
                        seed: int = 0) -> pd.DataFrame:
    """The shares at which a class is never demonstrated (a missing class, not label shift), per mode,
    beside the balanced share: accuracy on queries of the majority class and of the classes left out
    (minority), and the rate of predicting the majority class, each with its 95 % interval (text)."""
    balanced, _, missing = label_shift_levels(ls_res)
    rows = []
    for mode in modes:
        for level in ([balanced] + missing if missing else []):
            g = ls_res[(ls_res["mode"] == mode) & (ls_res["level"] == level)]
            row = {"mode": mode, "majority share": level, "class missing": level in missing}
            for name, sel, value in [("majority-class queries", g[g["label"] == g["majority"]], "correct"),
                                     ("minority-class queries", g[g["label"] != g["majority"]], "correct"),
                                     ("predicts the majority class", g, "pred_majority")]:
                q = sel.groupby(["task", "query"])[value].mean().to_numpy(float)
                lo, hi = bootstrap_ci(q, n_boot=n_boot, seed=derive_seed(seed, mode, level, name))
                row[name] = percent_interval(float(q.mean()), lo, hi)
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The family of notebook 03


def _tasks_text(names) -> str:
    return ", ".join(sorted(set(names)))


def claim_family(shots_res: pd.DataFrame, ls_res: pd.DataFrame, sp_res: pd.DataFrame, modes: Sequence[str],
                 max_shots: int, ties: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every decided row of notebook 03, decided together (:func:`mllm_ood.stats.decide_family`: Holm over
    the rows that stay in the family, margin 5 points). Pooled rows (``level`` 'pooled'), per mode and per
    task group of one class count (their chance levels differ): A-ICL1 (``max_shots`` in-domain
    demonstrations vs none), A-ICL2 (in-domain vs shifted demonstrations at ``max_shots``), A-ICL3
    (balanced vs the most skewed share with every class shown, :func:`label_shift_levels`), A-ICL4
    (flipped queries at the weakest vs the strongest colour tie of ``ties``); then A-ICL1 per task
    (``level`` 'task'). Columns: :data:`FAMILY_COLUMNS` and ``p_holm``."""
    kw = {"n_boot": n_boot, "seed": seed}
    rows, per_task = [], []
    top = shots_res[shots_res["shots"] == max_shots] if max_shots > 0 else shots_res.iloc[:0]
    for mode in modes:
        for n_way in sorted(set(shots_res["n_way"])):
            res = shots_res[(shots_res["mode"] == mode) & (shots_res["n_way"] == n_way)]
            k = top[(top["mode"] == mode) & (top["n_way"] == n_way)]
            inside, shifted, zero = k[k["source"] == "in_domain"], k[k["source"] == "shifted"], res[res["shots"] == 0]
            if not len(inside):
                continue
            scope = f"{mode} words, {n_way}-way tasks ({_tasks_text(inside['task'])})"
            rows.append(claim_row("A-ICL1", scope, f"accuracy with {max_shots} in-domain demonstrations minus with "
                                  "none", inside, zero, evidence="03_icl_accuracy_vs_shots", **kw))
            if len(shifted):
                row = claim_row("A-ICL2", scope, f"accuracy with {max_shots} in-domain minus {max_shots} "
                                "shifted-domain demonstrations", inside, shifted, reference="a",
                                evidence="03_icl_accuracy_vs_shots", **kw)
                gain = effect(inside, zero, **kw)  # 'help less' needs demonstrations that can help at all
                if gain["room"] < MARGIN:
                    row.update(outcome=NOT_TESTABLE, room=gain["room"], reason=(
                        f"ceiling: {gain['b']:.0%} without demonstrations, so no demonstration can help"))
                rows.append(row)
            for name in dict.fromkeys(inside["task"]):
                per_task.append(claim_row("A-ICL1", f"{mode} words, {name}", f"accuracy with {max_shots} "
                                          "in-domain demonstrations minus with none",
                                          inside[inside["task"] == name], zero[zero["task"] == name], level="task",
                                          evidence="03_icl_gain_by_task.csv", **kw))
        rows.extend(_label_shift_rows(ls_res[ls_res["mode"] == mode], mode, kw))
        fl = sp_res[(sp_res["mode"] == mode) & (sp_res["query_colour"] == "flipped") & (sp_res["shots"] > 0)]
        if len(fl) and len(ties) > 1:
            lo, hi = min(ties), max(ties)
            rows.append(claim_row("A-ICL4", f"{mode} words, spurious digit pairs ({_tasks_text(fl['task'])})",
                                  f"accuracy on colour-flipped queries with tie strength {lo:g} minus {hi:g}",
                                  fl[fl["level"] == lo], fl[fl["level"] == hi], reference="a",
                                  evidence="03_icl_spurious_correlation", **kw))
    table = pd.DataFrame(rows + per_task, columns=FAMILY_COLUMNS)
    if not len(table):
        raise ParameterError("notebook 03 has no claim to decide: no shots > 0, label-shift or spurious results")
    return decide_family(table)


def _label_shift_rows(ls: pd.DataFrame, mode: str, kw: dict) -> list[dict]:
    if not len(ls):
        return []
    balanced, skewed, missing = label_shift_levels(ls)
    scope = f"{mode} words, label-shift tasks ({_tasks_text(ls['task'])})"
    if skewed is None:
        return [{"claim_id": "A-ICL3", "scope": scope, "estimand": "accuracy with balanced minus skewed "
                 "demonstrations (every class shown)", "level": "pooled", "margin": MARGIN, "direction": 1,
                 "outcome": NOT_TESTABLE, "evidence": "03_icl_label_shift",
                 "reason": f"no majority share above {balanced:g} still shows every class among the "
                           f"demonstrations (shares {sorted(set(ls['level']))}); a share where a class is missing "
                           "tests a missing class, not label shift"}]
    shots = int(ls["shots"].iloc[0])
    estimand = (f"accuracy with balanced {shots}-shot demonstrations (majority share {balanced:g}) minus the most "
                f"skewed share that still shows every class ({skewed:g})")
    return [claim_row("A-ICL3", scope, estimand, ls[ls["level"] == balanced], ls[ls["level"] == skewed],
                      reference="a", evidence="03_icl_label_shift", **kw)]


def family_view(family: pd.DataFrame, level: str = "pooled") -> pd.DataFrame:
    """The family's rows of one ``level`` for display: the number with its interval in points, the means
    (percent), the queries that gained / lost, p, Holm's p and the outcome (with its reason)."""
    f = family[family["level"] == level]
    return pd.DataFrame({
        "claim": f["claim_id"], "scope": f["scope"],
        "a - b (points)": [("" if pd.isna(e) else f"{100 * e:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
                           for e, lo, hi in zip(f["estimate"], f["low"], f["high"])],
        "a": f["a"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"),
        "b": f["b"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"),
        "+/- queries": [("" if pd.isna(g) else f"+{int(g)}/-{int(l)} of {int(n)}")
                        for g, l, n in zip(f["gains"], f["losses"], f["n"])],
        "p": f["p"].round(4), "p (Holm)": f["p_holm"].round(4), "outcome": f["outcome"],
        "reason": f["reason"].fillna(""), "note": f["note"].fillna("")}).reset_index(drop=True)


def ledger_rows(family: pd.DataFrame, *, model: str, data: str) -> list[dict]:
    """The pooled rows of the family as ledger rows (:func:`mllm_ood.claims.ledger_row`) of notebook 03;
    ``model`` in words with its fingerprint, ``data`` the queries and demonstrations in words."""
    rows = []
    for _, r in family[family["level"] == "pooled"].iterrows():
        rows.append(ledger_row(
            r["claim_id"], notebook=NOTEBOOK, scope=r["scope"], estimand=r["estimand"], model=model, data=data,
            outcome=r["outcome"], rule=rule_text("effect"), estimate=r["estimate"], low=r["low"], high=r["high"],
            unit="points", n=None if pd.isna(r["n"]) else int(r["n"]), p=r["p"], p_holm=r["p_holm"],
            reason=r["reason"] or "", evidence=r["evidence"]))
    return rows


# --------------------------------------------------------------------------------------------
# Descriptive summaries


def domain_shift_table(shots_res: pd.DataFrame, task_names: Sequence[str], modes: Sequence[str], max_shots: int, *,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """At ``max_shots``, per mode and task and pooled ('all tasks'): accuracy with in-domain demonstrations
    minus with shifted ones on the same queries (:func:`effect`), descriptive (the decided rows are
    A-ICL2's pooled rows in :func:`claim_family`)."""
    top = shots_res[shots_res["shots"] == max_shots]
    rows = []
    for mode in modes:
        for name in [*task_names, "all tasks"]:
            sel = top[(top["mode"] == mode) & ((top["task"] == name) | (name == "all tasks"))]
            if max_shots == 0 or not len(sel):
                continue
            e = effect(sel[sel["source"] == "in_domain"], sel[sel["source"] == "shifted"], n_boot=n_boot, seed=seed)
            rows.append({"mode": mode, "task": name, "shots": max_shots, "in_domain": e["a"], "shifted": e["b"],
                         "in_domain_minus_shifted": e["estimate"], "ci_low": e["low"], "ci_high": e["high"],
                         "n_queries": e["n"]})
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
