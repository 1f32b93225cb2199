"""The claims ledger: rows checked against the catalogue, one file per notebook written whole, and the
gathered table covering every catalogued claim (decided, not testable with its reason, or not run)."""

from __future__ import annotations

import pandas as pd
import pytest

from mllm_ood.claims import CLAIMS, NOT_RUN, claims_of, gather, ledger_row, outcome_counts, prose, write_claims
from mllm_ood.claims.ledger import claims_path, read_claims
from mllm_ood.stats import NOT_TESTABLE, OUTCOMES, SUPPORTED
from mllm_ood.validation import ParameterError


def _row(cid="A-H1", notebook="02", outcome=SUPPORTED, **kw):
    base = dict(notebook=notebook, scope="rotated_mnist 60°, generate", estimand="richer minus plain prompt",
                model="embedded 1.1 M-parameter model", data="embedded world", outcome=outcome, rule="r",
                estimate=0.12, low=0.06, high=0.18, unit="points", n=200, evidence="02_prompt_effects")
    return ledger_row(cid, **{**base, **kw})


def test_catalogue_ids_are_unique_and_each_claim_is_tested_or_explained():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    for c in CLAIMS:
        assert (c.notebook is None) != (c.not_testable is None), c.id
        assert c.paper in ("A", "B")
    assert {c.id for c in claims_of("03")} == {"A-ICL1", "A-ICL2", "A-ICL3", "A-ICL4"}


def test_rows_refuse_unknown_claims_outcomes_and_unexplained_untestables():
    with pytest.raises(ParameterError, match="unknown claim id"):
        _row(cid="A-H9")
    with pytest.raises(ParameterError, match="outcome"):
        _row(outcome="reproduced")
    with pytest.raises(ParameterError, match="needs its reason"):
        _row(outcome=NOT_TESTABLE)


def test_write_then_gather_covers_every_claim(tmp_path):
    write_claims([_row(), _row(scope="colored_mnist, generate", outcome="inconclusive")], "02", tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    table = gather(tmp_path)
    assert set(table["claim_id"]) == {c.id for c in CLAIMS}
    assert set(table["outcome"]) <= set(OUTCOMES) | {NOT_RUN}
    by_id = table.groupby("claim_id")["outcome"].apply(list)
    assert by_id["A-H1"] == [SUPPORTED, "inconclusive"]
    # notebook 02 ran but wrote no A-H2 row: that is said, not hidden
    assert by_id["A-H2"] == [NOT_TESTABLE]
    assert "wrote no row" in table.loc[table["claim_id"] == "A-H2", "reason"].iloc[0]
    assert by_id["A-ICL1"] == [NOT_RUN]                      # notebook 03 wrote nothing
    assert by_id["A-ZS4"] == [NOT_TESTABLE]                  # catalogued as untestable here
    counts = outcome_counts(table)
    assert counts.loc["A", SUPPORTED] == 1 and counts.values.sum() == len(table)
    text = prose(table[table["claim_id"] == "A-H1"])
    assert "**supported** (+12.0 [+6.0, +18.0] points)" in text and "colored_mnist" in text


def test_a_file_with_rows_of_another_notebook_or_a_damaged_file_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="written as notebook 03"):
        write_claims([_row()], "03", tmp_path)
    with pytest.raises(ParameterError, match="no claim rows"):
        write_claims([], "02", tmp_path)
    path = claims_path("02", tmp_path)
    pd.DataFrame({"claim_id": ["A-H1"]}).to_csv(path, index=False)
    with pytest.raises(ParameterError, match="lacks the ledger columns"):
        read_claims(path)
    write_claims([_row()], "02", tmp_path)
    path.write_text(path.read_text().replace("supported", "reproduced"))
    with pytest.raises(ParameterError, match="unknown outcomes"):
        gather(tmp_path)
