"""The judges of notebook 04, one interface ``judge(question, response, reference) -> score in [0, 1]``:

- :class:`ReferenceJudge` (the digits grids' offline default): does the reply name the reference's class
  in the protocol's format?
- :class:`OverlapJudge` (the hub sets' offline default): token F1 against the reference answer;
- :class:`LlavaBenchJudge`: paper B's own judge, LLaVA-Bench's rule-based GPT-4 review through an endpoint.

Paper B's LLM judge, in detail:

Paper B grades each answer against the GPT-4 reference answer with the review prompt of LLaVA-Bench
(the ``llava_bench_*`` rule of LLaVA's ``rule.json``, run by its ``eval_gpt_review_bench.py``): a system
turn, then the context, the question, the reference as *Assistant 1*, the model's answer as *Assistant 2*
and the rule's instructions; the judge's first line holds the two scores (1-10). The relative score of an
answer is ``score(Assistant 2) / score(Assistant 1)``.

:class:`LlavaBenchJudge` follows the notebooks' judge interface, ``judge(question, response, reference) ->
[0, 1]``: the relative score, capped at 1 (an answer judged better than the reference counts as equal to
it; :attr:`LlavaBenchJudge.pairs` keeps the raw score pairs). A review whose first line does not hold two
scores raises :class:`JudgeFormatError` naming it (LLaVA's script records such reviews as ``[-1, -1]``
and skips them; here nothing is skipped silently). Reviews are cached like every endpoint request;
:meth:`LlavaBenchJudge.prefetch` sends a whole table's reviews concurrently first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..mllm.families.endpoint import EndpointModel, load_endpoint_model
from ..mllm.refs import is_endpoint_ref, parse_endpoint_ref
from ..formats.prompts import parse_answer
from ..mllm.preflight import check_api_key
from ..validation import ParameterError

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
ROLE = "Assistant"
RULE = ("We would like to request your feedback on the performance of two AI assistants in response to the user "
        "question displayed above. The user asks the question on observing an image. For your reference, the visual "
        "content in the image is represented with a few sentences describing the image. \nPlease rate the "
        "helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall "
        "score on a scale of 1 to 10, where a higher score indicates better overall performance.\nPlease first "
        "output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. "
        "The two scores are separated by a space.\nIn the subsequent line, please provide a comprehensive "
        "explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the "
        "responses were presented does not affect your judgment.")
MAX_TOKENS = 1024  # LLaVA's review script
JUDGES = ("reference",)  # plus any endpoint reference, e.g. 'openai:gpt-4-0314' (paper B's judge)


class JudgeFormatError(ParameterError):
    """A review whose first line does not hold the two scores."""


def review_content(question: str, reference: str, response: str, context: str = "") -> str:
    """The judge's user turn, as LLaVA-Bench's review script builds it (reference = Assistant 1)."""
    return (f"[Context]\n{context}\n\n"
            f"[Question]\n{question}\n\n"
            f"[{ROLE} 1]\n{reference}\n\n[End of {ROLE} 1]\n\n"
            f"[{ROLE} 2]\n{response}\n\n[End of {ROLE} 2]\n\n"
            f"[System]\n{RULE}\n\n")


def review_messages(question: str, reference: str, response: str, context: str = "") -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": review_content(question, reference, response, context)}]


def parse_scores(review: str) -> tuple[float, float]:
    """(reference score, answer score) from the review's first line ('8 6', '8, 6'); JudgeFormatError if absent."""
    first = review.split("\n")[0].replace(",", " ")
    parts = first.split()
    try:
        if len(parts) != 2:
            raise ValueError
        s1, s2 = float(parts[0]), float(parts[1])
    except ValueError:
        raise JudgeFormatError(f"the judge's review does not start with two scores: {review[:120]!r}") from None
    if not (0 <= s1 <= 10 and 0 <= s2 <= 10):
        raise JudgeFormatError(f"judge scores outside 0-10 in {first!r}")
    return s1, s2


def relative_score(s_reference: float, s_answer: float) -> float:
    """score(answer) / score(reference), capped at 1; 0 when both are 0 (nothing to prefer)."""
    if s_reference <= 0:
        return 1.0 if s_answer > 0 else 0.0
    return min(1.0, s_answer / s_reference)


class LlavaBenchJudge:
    """``judge(question, response, reference) -> [0, 1]`` with paper B's GPT-4 review prompt (see module
    docstring). ``model``: an :class:`mllm_ood.mllm.families.endpoint.EndpointModel` (or its reference string).
    ``context``: the text standing in for the image (LLaVA-Bench: its captions)."""

    def __init__(self, model, context: str = "", temperature: float = 0.0):
        self.model = load_endpoint_model(model) if isinstance(model, str) else model
        if not isinstance(self.model, EndpointModel):
            raise ParameterError("the LLM judge runs through an endpoint model (e.g. 'openai:gpt-4-0314')")
        self.context, self.temperature = context, float(temperature)
        self.pairs: dict[tuple[str, str, str], tuple[float, float]] = {}
        self.name = f"llava-bench review by {self.model.name}"

    def prefetch(self, questions: Sequence[str], responses: Sequence[str], references: Sequence[str],
                 progress: bool = False) -> None:
        """Send (or read from the cache) every review of a table at once, ``concurrency`` at a time."""
        keys = [k for k in dict.fromkeys(zip(questions, responses, references)) if k not in self.pairs]
        if not keys:
            return
        reviews = self.model.chat([review_messages(q, ref, r, self.context) for q, r, ref in keys],
                                  max_tokens=MAX_TOKENS, temperature=self.temperature, progress=progress)
        for key, review in zip(keys, reviews):
            self.pairs[key] = parse_scores(review)

    def __call__(self, question: str, response: str, reference: str) -> float:
        key = (question, response, reference)
        if key not in self.pairs:
            self.prefetch([question], [response], [reference])
        return relative_score(*self.pairs[key])


def make_judge(spec: str, class_names: Sequence[str], context: str = ""):
    """'reference' -> the deterministic :class:`ReferenceJudge`; an endpoint reference ->
    :class:`LlavaBenchJudge` through that endpoint."""
    if spec == "reference":
        return ReferenceJudge(class_names)
    if isinstance(spec, str) and is_endpoint_ref(spec):
        return LlavaBenchJudge(spec, context=context)
    raise ParameterError(f"judge must be 'reference' or an endpoint model like 'openai:gpt-4-0314', got {spec!r}")


def check_judge(spec) -> None:
    """Rule for a JUDGE parameter (before anything loads): 'reference', or an endpoint model whose API key
    is set when it is served at its provider's own address (:func:`mllm_ood.mllm.preflight.check_api_key`)."""
    if spec == "reference":
        return
    if not isinstance(spec, str):
        raise ParameterError(f"must be 'reference' or an endpoint model like 'openai:gpt-4-0314', got {spec!r}")
    check_api_key(parse_endpoint_ref(spec))


class ReferenceJudge:
    """Deterministic reference-based scorer (stands in for paper B's GPT-4 judge).

    ``judge(question, response, reference) -> score in [0, 1]``:

    - 1.0: the reply follows the protocol and its parsed class (paper A's ``Answer Choice:`` parser)
      equals the reference's class;
    - 0.5: the reply does not follow the format, but the first class name it mentions is the right one
      (right content, wrong form);
    - 0.0: otherwise (a wrong class, or no class at all).

    Any callable with this signature can replace it (e.g. an LLM judge in the paper profile); a reference
    scores 1 against itself, so the mean score is also paper B's *relative* score (model / reference).
    """

    def __init__(self, class_names: Sequence[str], format_credit: float = 0.5):
        if not class_names:
            raise ParameterError("the judge needs the class names")
        if not isinstance(format_credit, (int, float)) or not 0 <= format_credit <= 1:
            raise ParameterError(f"format_credit must be in [0, 1], got {format_credit!r}")
        self.class_names = list(class_names)
        self.format_credit = float(format_credit)

    def _first_named(self, text: str) -> int | None:
        best = None
        for idx, name in enumerate(self.class_names):
            hit = re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", text, re.IGNORECASE)
            if hit and (best is None or (hit.start(), -len(name)) < best[0]):
                best = ((hit.start(), -len(name)), idx)
        return None if best is None else best[1]

    def __call__(self, question: str, response: str, reference: str) -> float:
        del question  # this judge needs only the two answers
        want = parse_answer(reference, self.class_names)
        if want is None:
            raise ParameterError(f"the reference {reference!r} names no class in the protocol's format")
        got = parse_answer(response, self.class_names)
        if got is not None:
            return 1.0 if got == want else 0.0
        return self.format_credit if self._first_named(response) == want else 0.0


def judge_scores(responses: pd.DataFrame, judge: Callable[[str, str, str], float]) -> np.ndarray:
    """The judge's score (float, (n,)) of every row of a responses table; each must lie in [0, 1]."""
    scores = np.array([float(judge(q, r, ref)) for q, r, ref in
                       zip(responses["question"], responses["response"], responses["reference"])])
    if len(scores) and (not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1):
        raise ParameterError("judge scores must be finite numbers in [0, 1]")
    return scores


_WORD = re.compile(r"\w+", re.UNICODE)


class OverlapJudge:
    """Token F1 between response and reference (lower-cased word tokens, as SQuAD's F1): a deterministic,
    offline stand-in for paper B's GPT-4 review, in [0, 1]; a reference scores 1 against itself, so it is
    a relative score like paper B's. It rewards shared wording, not correctness: read it as such."""

    def __call__(self, question: str, response: str, reference: str) -> float:
        del question
        a, b = _WORD.findall(str(response).lower()), _WORD.findall(str(reference).lower())
        if not a or not b:
            return 0.0
        common = sum((Counter(a) & Counter(b)).values())
        if common == 0:
            return 0.0
        p, r = common / len(a), common / len(b)
        return float(2 * p * r / (p + r))
