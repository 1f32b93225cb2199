"""Accuracy with bootstrap confidence intervals, and aggregation of per-sample results.

Per-sample results are a table with at least the columns ``dataset``, ``domain``, ``label``, ``correct``
(bool) and, for generation, ``parsed`` (bool: the reply matched the ``Answer Choice:`` parser).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..cache import cached_analysis
from ..data.ids import source_of
from ..data.shifts import CORRUPTIONS
from ..seeding import derive_seed
from ..stats import MARGIN, agreement, bootstrap_ci, bootstrap_diff_ci, bootstrap_paired_diff_ci
from ..validation import ParameterError


@cached_analysis("analysis")
def accuracy_table(results: pd.DataFrame, by: Sequence[str], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per group of ``by`` columns with a 95 % bootstrap interval and, when present, parse rate.

    Returns columns: *by, n, accuracy, ci_low, ci_high[, parse_failure_rate] (fractions in [0, 1]).
    """
    missing = [c for c in [*by, "correct"] if c not in results.columns]
    if missing:
        raise ParameterError(f"results lack columns {missing}; have {list(results.columns)}")
    rows = []
    for key, group in results.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        lo, hi = bootstrap_ci(group["correct"].to_numpy(), n_boot=n_boot, seed=derive_seed(seed, *key))
        row = dict(zip(by, key), n=len(group), accuracy=float(group["correct"].mean()), ci_low=lo, ci_high=hi)
        if "parsed" in group.columns:
            row["parse_failure_rate"] = float(1 - group["parsed"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def pair_with_reference(items: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame | None:
    """``items`` and ``reference`` (per-sample rows with ``id`` and ``correct``) as pairs of the same source
    item (columns correct, correct_ref), when every item was made from a distinct reference item and every
    reference item has its shifted copy (equal samples, e.g. the first N eval digits per class rotated);
    None otherwise (other images, e.g. printed digits: then the two are independent samples)."""
    if "id" not in items or "id" not in reference or len(items) != len(reference):
        return None
    ref = reference.set_index(reference["id"].astype(str))["correct"]
    if not ref.index.is_unique:
        return None
    src = [source_of(i) for i in items["id"].astype(str)]
    if any(s not in ref.index for s in src) or len(set(src)) != len(src):
        return None
    return pd.DataFrame({"correct": items["correct"].to_numpy(bool), "correct_ref": ref.loc[src].to_numpy(bool)})


def gap_table(results: pd.DataFrame, id_rows: dict, references: dict, modes, *, n_boot: int = 2000,
              seed: int = 0) -> pd.DataFrame:
    """Each (mode, family, dataset, domain)'s accuracy and its gap to the dataset's in-distribution
    reference, with a bootstrap interval of the difference: paired (:func:`bootstrap_paired_diff_ci`) when
    the domain's items are shifted copies of the reference's items (:func:`pair_with_reference`), else two
    independent samples (:func:`bootstrap_diff_ci`).

    results: per-sample zero-shot results; id_rows: {dataset: its reference's rows}
    (:func:`mllm_ood.paper_a.zero_shot.id_reference`); references: {dataset: 'dataset/domain'}. Columns: mode,
    family, dataset, domain, accuracy, id_reference ('' when none) and, for datasets with a reference,
    id_accuracy, gap, gap_low, gap_high (fractions), paired (bool).
    """
    rows = []
    for mode in modes:
        for (fam, ds_name, dom), grp in results[results["mode"] == mode].groupby(["family", "dataset", "domain"],
                                                                                sort=False):
            row = {"mode": mode, "family": fam, "dataset": ds_name, "domain": dom, "accuracy": grp["correct"].mean(),
                   "id_reference": references.get(ds_name, "")}
            ref = id_rows[ds_name][id_rows[ds_name]["mode"] == mode] if ds_name in id_rows else None
            if ref is not None and len(ref):
                pairs = pair_with_reference(grp, ref)
                if pairs is not None:
                    lo, hi = bootstrap_paired_diff_ci(pairs["correct"], pairs["correct_ref"], n_boot=n_boot, seed=seed)
                else:
                    lo, hi = bootstrap_diff_ci(grp["correct"], ref["correct"], n_boot=n_boot, seed=seed)
                row.update(id_accuracy=ref["correct"].mean(), gap=row["accuracy"] - ref["correct"].mean(), gap_low=lo,
                           gap_high=hi, paired=pairs is not None)
            rows.append(row)
    return pd.DataFrame(rows)


def family_means(table: pd.DataFrame, id_cells) -> pd.DataFrame:
    """Mean accuracy per (mode, family) over the OOD domains only: the in-distribution cells ``id_cells``
    ((dataset, domain) pairs: the references and each dataset's own ID domain, e.g. rotation 0, clean) are
    left out, so a family's mean is not lifted by images like the training ones. Columns mode, family,
    accuracy, chance (mean over the averaged domains), domains (how many were averaged)."""
    cells = {(str(d), str(dom)) for d, dom in id_cells}
    keep = [(str(d), str(dom)) not in cells for d, dom in zip(table["dataset"], table["domain"])]
    return (table[keep].groupby(["mode", "family"], sort=False)
            .agg(accuracy=("accuracy", "mean"), chance=("chance", "mean"), domains=("accuracy", "size"))
            .reset_index())


def severity_table(table: pd.DataFrame) -> pd.DataFrame:
    """The corrupted_mnist rows of an accuracy table, one per (row, corruption) with columns ``corruption``
    and ``severity`` added: 'kind-s' domains have severity s; the clean domain is severity 0 of every
    corruption (each curve starts from it)."""
    rows = []
    for _, r in table[table["dataset"] == "corrupted_mnist"].iterrows():
        kinds = list(CORRUPTIONS) if r["domain"] == "clean" else [r["domain"].rsplit("-", 1)[0]]
        sev = 0 if r["domain"] == "clean" else int(r["domain"].rsplit("-", 1)[1])
        rows += [dict(r, corruption=k, severity=sev) for k in kinds]
    return pd.DataFrame(rows)


def mode_agreement(results: pd.DataFrame, modes=("generate", "loglik"), *, margin: float = MARGIN,
                   n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Whether two scoring modes give the same accuracy on each (dataset, domain): the same images scored
    both ways, so the interval of the difference is paired by item ``id``. Columns dataset, domain, the two
    accuracies (named by mode), difference (first - second), diff_low, diff_high, identical (every item
    judged alike) and finding: 'agree' (interval inside +-margin), 'differ' (interval beyond the margin)
    or 'inconclusive'."""
    a, b = modes
    rows = []
    for (ds_name, dom), grp in results.groupby(["dataset", "domain"], sort=False):
        both = grp[grp["mode"] == a][["id", "correct"]].merge(grp[grp["mode"] == b][["id", "correct"]], on="id",
                                                               suffixes=("_a", "_b"))
        if both.empty:
            continue
        ca, cb = both["correct_a"].to_numpy(bool), both["correct_b"].to_numpy(bool)
        lo, hi = bootstrap_paired_diff_ci(ca, cb, n_boot=n_boot, seed=seed)
        finding = agreement(lo, hi, margin)
        rows.append({"dataset": ds_name, "domain": dom, a: ca.mean(), b: cb.mean(), "difference": ca.mean() - cb.mean(),
                     "diff_low": lo, "diff_high": hi, "identical": bool((ca == cb).all()), "finding": finding})
    return pd.DataFrame(rows)
