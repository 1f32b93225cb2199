"""Every claim of the two papers, each with an id, the claim as the paper states it, and either the
notebook that tests it here or the reason it cannot be tested with this study's models and data.

Paper A: Zhang et al., *On the Out-Of-Distribution Generalization of Multimodal Large Language Models*
(arXiv 2402.06599). Paper B: Oh et al., *Understanding Multimodal LLMs Under Distribution Shifts: An
Information-Theoretic Approach* (ICML 2025, arXiv 2502.00577). The statements paraphrase each paper's
abstract, findings and released results as closely as a one-line claim allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import ParameterError


@dataclass(frozen=True)
class Claim:
    """One claim: ``id`` (e.g. 'A-H1'), ``paper`` ('A' or 'B'), ``claim`` (as the paper states it),
    ``notebook`` (the notebook id that tests it here, e.g. '02') or ``not_testable`` (why nothing here can)."""

    id: str
    paper: str
    claim: str
    notebook: str | None = None
    not_testable: str | None = None


CLAIMS = (
    # ---------------------------------------------------------------- paper A: zero-shot
    Claim("A-ZS1", "A", "MLLMs struggle to generalise zero-shot beyond their common training domains: accuracy "
          "drops under distribution shift", notebook="01"),
    Claim("A-ZS2", "A", "On specialised data (medical and molecular images) MLLMs answer near chance",
          notebook="01"),
    Claim("A-ZS3", "A", "The failure holds across MLLMs (GPT-4V, Gemini and open models), on 20 datasets",
          not_testable="one model here (the embedded model or the one the paper profile names); 15 of paper A's "
                       "20 datasets have no copy that loads offline"),
    Claim("A-ZS4", "A", "CLIP zero-shot accuracy and its scaling with model size compared with the MLLMs",
          not_testable="no CLIP zero-shot classifier or size series is part of this study"),
    Claim("A-ZS5", "A", "Near-chance accuracy on the medical datasets (Camelyon17, HAM10000, NIH-Chest, CT-XCOV, "
          "XCOVFour)", not_testable="no medical images ship with any PyPI package; the paper profile reads "
                                   "Camelyon17 from the hub (not run offline)"),
    # ---------------------------------------------------------------- paper A: hypotheses
    Claim("A-H1", "A", "Semantic misinterpretation is not the cause: richer prompts (class descriptions, domain "
          "context) do not improve zero-shot accuracy", notebook="02"),
    Claim("A-H2", "A", "Visual features are sufficient: a linear probe on the frozen vision features reaches far "
          "above zero-shot accuracy on the same data", notebook="02"),
    Claim("A-H3", "A", "Mapping deficiency is the primary hurdle: the model's features carry the class, but it "
          "cannot map them to the label", notebook="02"),
    # ---------------------------------------------------------------- paper A: in-context learning
    Claim("A-ICL1", "A", "In-context learning significantly improves OOD accuracy", notebook="03"),
    Claim("A-ICL2", "A", "ICL is vulnerable to domain shift: demonstrations from another domain than the query "
          "help less", notebook="03"),
    Claim("A-ICL3", "A", "ICL is vulnerable to label shift: unequal class proportions among the demonstrations "
          "lower accuracy", notebook="03"),
    Claim("A-ICL4", "A", "ICL is vulnerable to spurious correlation: demonstrations whose nuisance attribute is "
          "tied to the label mislead queries where the tie is broken", notebook="03"),
    Claim("A-ICL5", "A", "ICL improves accuracy on the medical datasets",
          not_testable="no medical images offline (see A-ZS5)"),
    Claim("A-ICL6", "A", "GPT-4V on iWildCam: about 63 % -> 78 % -> ~100 % with 0 / 2 / 8 demonstrations",
          not_testable="GPT-4V and iWildCam are not reachable offline; the paper profile can run an open model "
                       "on a hub dataset"),
    # ---------------------------------------------------------------- paper B
    Claim("B-BOUND", "B", "EMID is bounded above by the bound built from the visual and textual Jensen-Shannon "
          "divergences (the theorem), scenario by scenario", notebook="04"),
    Claim("B-CORR", "B", "Across shift scenarios EMID correlates with its bound (published Pearson r: "
          "LLaVA-1.5-13B synthetic 0.58, natural 0.88; LLaVA-1.6-13B synthetic 0.74, natural 0.69)",
          notebook="04"),
    Claim("B-JUDGE", "B", "EMI tracks the judge's relative preference score of the answers across scenarios",
          notebook="04"),
    Claim("B-MOD", "B", "The correlation holds per shift modality (image-only, text-only and joint shifts)",
          not_testable="needs images and paper B's encoders for the LLaVA answers (paper profile, replay "
                       "mode); the embedded grids are too small to split by modality"),
    Claim("B-REAL", "B", "The released numbers: EMI, EMID and the bound per scenario for LLaVA-1.5-13B and "
          "LLaVA-1.6-13B on 61 scenarios, from the released CLUB estimator",
          not_testable="needs the LLaVA-Bench images and CLIP / XLM-R weights from the hub (paper profile, "
                       "replay mode)"),
)

BY_ID = {c.id: c for c in CLAIMS}


def claim(claim_id: str) -> Claim:
    """The catalogued claim with id ``claim_id`` (a clear error for an unknown id)."""
    if claim_id not in BY_ID:
        raise ParameterError(f"unknown claim id {claim_id!r}; known: {', '.join(BY_ID)}")
    return BY_ID[claim_id]


def claims_of(notebook: str) -> list[Claim]:
    """The catalogued claims that notebook ``notebook`` (e.g. '02') tests."""
    return [c for c in CLAIMS if c.notebook == notebook]
