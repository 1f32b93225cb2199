"""Notebook 04's tables and conclusions computed from the per-scenario tables: the bound terms against their
noise baselines (one table for every part), how loose the bound is, and the sentences of the notebook's
conclusion for the digits grids and the hub sets."""

from __future__ import annotations

import pandas as pd

from . import core
from .bound import TERM_LABELS, TERMS
from .grids.analysis import describe


def noise_table(table: pd.DataFrame, by, level: float, *, source: str = "is_source",
                divergences=("jsd",)) -> pd.DataFrame:
    """Per group of ``by`` (over its shifted scenarios) and bound term: the term's mean value, the mean of its
    permutation null (the value sampling noise alone gives at the same sample size) and the share of
    scenarios in which it is above noise (permutation p < 1 - level). Terms never estimated (the image
    term without images) are left out; ``py`` is the source's own term, one value per group."""
    rows = []
    for key, t in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ood = t[~t[source]]
        for div in divergences:
            for k in TERMS:
                col = f"{div}_{k}"
                if col not in ood or ood[col].isna().all():
                    continue
                rows.append({**dict(zip(by, key)), "divergence": div, "term": TERM_LABELS[k] if div == "jsd" else k,
                             "mean value": ood[col].mean(), "mean null": ood[f"{col}_null"].mean(),
                             "share above noise": (ood[f"{col}_p"] < 1 - level).mean()})
    return pd.DataFrame(rows)


def looseness_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`mllm_ood.paper_b.core.looseness` of the JSD bound per grid."""
    return pd.DataFrame([{"grid": name, **core.looseness(t.rename(columns={"is_id": "is_source"}), "jsd_sum")}
                         for name, t in tables.items()])


def digits_lines(tables: dict[str, pd.DataFrame], terms: pd.DataFrame, summary: pd.DataFrame, header: str) -> list[str]:
    """Part 2's conclusions per grid: the ID cell's EMI, the range of EMID, how often EMID stays below the
    bound and how loose it is, the noisy terms, and the correlations with their verdicts."""
    lines = [header]
    for name, t in tables.items():
        idr, ood = t[t["is_id"]].iloc[0], t[~t["is_id"]]
        worst = ood.loc[ood["emid"].idxmax()]
        lo = core.looseness(t.rename(columns={"is_id": "is_source"}), "jsd_sum")
        lines.append(f"  [{name}] ID cell {idr['scenario']}: EMI {idr['emi']:+.3f} [{idr['emi_low']:+.3f}, "
                     f"{idr['emi_high']:+.3f}] nats, judge {idr['judge']:.2f}; {len(ood)} shifted scenarios: EMID from "
                     f"{ood['emid'].min():+.3f} to {ood['emid'].max():+.3f} nats (largest: {worst['scenario']}, judge "
                     f"{worst['judge']:.2f}); EMID <= bound in {lo['share_emid_below']:.0%}, median bound / EMID "
                     f"{lo['median_ratio']:.0f}x over {lo['n_positive_emid']} scenarios with EMID > 0")
        noisy = terms[(terms["grid"] == name) & (terms["divergence"] == "jsd") & (terms["share above noise"] < 0.5)]
        if len(noisy):
            lines.append(f"      JSD terms above their permutation null in fewer than half the scenarios: "
                         f"{', '.join(noisy['term'])}")
    return lines + ["  " + line for line in describe(summary)]


def hub_lines(hub_tables: dict[str, pd.DataFrame], summary: pd.DataFrame, model: str, judge: str,
              embedders: str) -> list[str]:
    """Part 2b's conclusions: what ran, and the correlations with their verdicts."""
    n = sum(int((~t["is_id"]).sum()) for t in hub_tables.values())
    judged = "token-F1 overlap" if judge == "reference" else judge + " (GPT-4 review)"
    return [f"PART 2b — {model} on paper B's hub sets ({', '.join(hub_tables)}), {n} shifted scenarios; embedders "
            f"{embedders}; judge: {judged}; UNTESTED ONLINE"] + ["  " + line for line in describe(summary)]
