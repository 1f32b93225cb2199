"""The claims of paper A and paper B: the catalogue of every claim (:mod:`.catalogue`) and the ledger each
notebook writes its decided claims to (:mod:`.ledger`)."""

from .catalogue import CLAIMS, Claim, claim, claims_of
from .ledger import (COLUMNS, NOT_RUN, claims_path, gather, ledger_row, outcome_counts, prose, read_claims,
                     write_claims)

__all__ = ["CLAIMS", "COLUMNS", "NOT_RUN", "Claim", "claim", "claims_of", "claims_path", "gather", "ledger_row",
           "outcome_counts", "prose", "read_claims", "write_claims"]
