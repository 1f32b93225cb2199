"""The claims ledger: each notebook writes its claims as rows of ``figures/NN_claims.csv`` (one row per
claim and scope, decided by :mod:`mllm_ood.stats.rule`), and the last notebook gathers every notebook's
rows with the catalogue (:mod:`.catalogue`) into one table of every claim of both papers, the ones this
study cannot test included."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..paths import figures_dir
from ..plotting import save_table
from ..stats import NOT_TESTABLE, OUTCOMES
from ..validation import ParameterError
from .catalogue import CLAIMS, claim

# The columns of every NN_claims.csv, in order.
COLUMNS = ("claim_id", "paper", "claim", "notebook", "scope", "estimand", "model", "data", "estimate", "low",
           "high", "unit", "n", "rule", "p", "p_holm", "outcome", "reason", "evidence")
NOT_RUN = "not run"


def ledger_row(claim_id: str, *, notebook: str, scope: str, estimand: str, model: str, data: str, outcome: str,
               rule: str, estimate: float = math.nan, low: float = math.nan, high: float = math.nan,
               unit: str = "", n: int | None = None, p: float = math.nan, p_holm: float = math.nan,
               reason: str = "", evidence: str = "") -> dict:
    """One ledger row: the catalogued claim ``claim_id`` measured by ``estimand`` on ``model`` and ``data``
    within ``scope`` (e.g. 'rotated_mnist 60°, generate'), its number with its 95 % interval in ``unit``
    ('points', 'r', 'nats', 'share'), ``n`` units, the ``rule`` in words, the ``outcome`` (one of
    :data:`mllm_ood.stats.OUTCOMES`), the ``reason`` behind an outcome that is not read from the interval,
    and ``evidence`` (the figure or table that shows it)."""
    c = claim(claim_id)
    if outcome not in OUTCOMES:
        raise ParameterError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    if outcome == NOT_TESTABLE and not reason:
        raise ParameterError(f"{claim_id} ({scope}): a 'not testable' row needs its reason")
    return {"claim_id": c.id, "paper": c.paper, "claim": c.claim, "notebook": notebook, "scope": scope,
            "estimand": estimand, "model": model, "data": data, "estimate": estimate, "low": low, "high": high,
            "unit": unit, "n": n, "rule": rule, "p": p, "p_holm": p_holm, "outcome": outcome, "reason": reason,
            "evidence": evidence}


def claims_path(notebook: str, folder: Path | None = None) -> Path:
    """``<folder>/<notebook>_claims.csv`` (folder: :func:`mllm_ood.paths.figures_dir`)."""
    return (folder or figures_dir()) / f"{notebook}_claims.csv"


def write_claims(rows: Iterable[dict], notebook: str, folder: Path | None = None) -> pd.DataFrame:
    """Write the rows of notebook ``notebook`` to :func:`claims_path` (atomically: a temporary file renamed
    into place) and return them as a table. Every row must come from :func:`ledger_row` for this notebook."""
    table = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if not len(table):
        raise ParameterError(f"notebook {notebook} has no claim rows to write")
    if set(table["notebook"]) != {notebook}:
        raise ParameterError(f"rows of notebooks {sorted(set(table['notebook']))} written as notebook {notebook}")
    save_table(table, claims_path(notebook, folder).stem, folder)
    return table


def read_claims(path: Path) -> pd.DataFrame:
    """One notebook's claims file, checked: the ledger's columns, known claim ids, known outcomes."""
    try:
        table = pd.read_csv(path, dtype={"notebook": str})
    except (OSError, ValueError) as e:
        raise ParameterError(f"{path} is not a readable claims table: {e}") from e
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ParameterError(f"{path} lacks the ledger columns {missing}; rerun its notebook")
    for cid in table["claim_id"]:
        claim(cid)
    bad = sorted(set(table["outcome"]) - set(OUTCOMES))
    if bad:
        raise ParameterError(f"{path} has unknown outcomes {bad}")
    return table[list(COLUMNS)].fillna({"reason": "", "evidence": ""})


def gather(folder: Path | None = None) -> pd.DataFrame:
    """Every claim of both papers in one table: the rows of every ``NN_claims.csv`` under ``folder``, then
    one row per catalogued claim that no file covers: *not testable* with the catalogue's reason, or
    :data:`NOT_RUN` when the notebook that tests it has written no claims file (not run yet, or failed)."""
    folder = folder or figures_dir()
    files = sorted(folder.glob("[0-9][0-9]_claims.csv"))
    tables = [read_claims(p) for p in files]
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(COLUMNS))
    done, ran = set(rows["claim_id"]), {p.name[:2] for p in files}
    extra = []
    for c in CLAIMS:
        if c.id in done:
            continue
        if c.not_testable:
            outcome, reason = NOT_TESTABLE, c.not_testable
        elif c.notebook in ran:
            outcome, reason = NOT_TESTABLE, f"notebook {c.notebook} wrote no row for this claim"
        else:
            outcome, reason = NOT_RUN, f"notebook {c.notebook} has not written its claims file"
        extra.append({"claim_id": c.id, "paper": c.paper, "claim": c.claim, "notebook": c.notebook or "",
                      "outcome": outcome, "reason": reason})
    table = pd.concat([rows, pd.DataFrame(extra, columns=list(COLUMNS))], ignore_index=True) if extra else rows
    order = {c.id: k for k, c in enumerate(CLAIMS)}
    return table.sort_values("claim_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def outcome_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per paper and outcome (columns: the outcomes present, in :data:`OUTCOMES` order)."""
    counts = pd.crosstab(table["paper"], table["outcome"])
    return counts[[o for o in (*OUTCOMES, NOT_RUN) if o in counts]]


def _number(row) -> str:
    if pd.isna(row.get("estimate")):
        return ""
    scale, fmt = (100, "{:+.1f}") if row.get("unit") == "points" else (1, "{:+.3f}")
    est = fmt.format(scale * row["estimate"])
    if pd.isna(row.get("low")):
        return f" ({est} {row['unit']})"
    return f" ({est} [{fmt.format(scale * row['low'])}, {fmt.format(scale * row['high'])}] {row['unit']})"


def prose(table: pd.DataFrame) -> str:
    """The rows as Markdown bullets, one per claim id: the claim, then each scope with its outcome and
    number (for the end of a notebook, printed from the table so a rerun cannot leave stale words)."""
    lines = []
    for cid, g in table.groupby("claim_id", sort=False):
        lines.append(f"- **{cid}** — {g['claim'].iloc[0]}:")
        for _, row in g.iterrows():
            why = f" — {row['reason']}" if isinstance(row.get("reason"), str) and row["reason"] else ""
            scope = row["scope"] if isinstance(row.get("scope"), str) and row["scope"] else "all"
            lines.append(f"    - {scope}: **{row['outcome']}**{_number(row)}{why}")
    return "\n".join(lines)
