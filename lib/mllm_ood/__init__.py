"""mllm_ood: a reproducible study of multimodal LLMs under distribution shift.

Two papers are reproduced (README.md names them and what is reproduced how): Zhang et al., "On the OOD generalization of
multimodal LLMs" (zero-shot, hypotheses, ICL) and Oh et al., "Understanding MLLMs under distribution
shifts: an information-theoretic approach" (EMI, EMID and its bound).
"""

__version__ = "0.1.0"
# Bumped whenever a change alters what a cached artefact contains; part of every cache key.
CODE_VERSION = "2"
