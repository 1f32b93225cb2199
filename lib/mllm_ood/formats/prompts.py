"""Paper A's zero-shot protocol: the multiple-choice prompt and the ``Answer Choice:`` parser, in two styles.

- ``paper_a`` (the paper profile's default): paper A's own template, character for character as its
  public code writes it (question, the choice list as a Python list, a ``---BEGIN FORMAT TEMPLATE---``
  block, "Do not deviate ..."), and its parser: the *first class of the list* (in list order) whose
  pattern ``Answer Choice:\s*[?'?"?<name>'?"?]?`` occurs anywhere in the reply, case-insensitive, no
  word boundaries; no match counts as wrong.
- ``short`` (the embedded profile): the same question, choice list and reply format in one line, so
  that the prompt fits the embedded model's 256 positions; parsed by the first class name *after*
  ``Answer Choice:`` on word boundaries (longest name wins a tie).

Both styles ask for the same reply, ``Answer Choice: [name]`` (:func:`format_answer`), so
log-likelihood scoring is the same for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..paths import RESOURCES
from ..validation import ParameterError

QUESTION = "What is in this image?"
FORMAT_INSTRUCTION = "Reply in the format: Answer Choice: [class name]."
ANSWER_PREFIX = "Answer Choice:"


def zero_shot_prompt(class_names: Sequence[str], question: str = QUESTION, context: str = "") -> str:
    """The text of paper A's multiple-choice prompt (without the image token; chat templates add it).

    ``question`` may be a shifted or translated question; ``context`` (class descriptions, domain
    context) is inserted before the choice list for the hypothesis-1 prompts.
    """
    if not class_names:
        raise ParameterError("the choice list is empty")
    parts = [question.strip()]
    if context:
        parts.append(context.strip())
    parts.append("Choice list: [" + ", ".join(class_names) + "].")
    parts.append(FORMAT_INSTRUCTION)
    return " ".join(parts)


def format_answer(class_name: str) -> str:
    """The reply the protocol asks for, e.g. 'Answer Choice: [seven]'."""
    return f"{ANSWER_PREFIX} [{class_name}]"


# Paper A's template (its data/generate_unified_input_data.py): an f-string whose choice list is the
# Python list of class names, with the source's line indentation kept (it is part of the prompt text).
PAPER_A_TEMPLATE = (
    "Given the image, answer the following question using the specified format.\n"
    "        Question: {question} Choice list: {choices}.\n"
    "        Please choose a choice from the list and respond with the following format:\n"
    "        ---BEGIN FORMAT TEMPLATE---\n"
    "        Answer Choice: [Your Answer Choice Here]\n"
    "        ---END FORMAT TEMPLATE---\n"
    "        Do not deviate from the above format. Repeat the format template for the answer.\n"
    "        "
)
PROMPT_STYLES = ("short", "paper_a")


def paper_a_prompt(class_names: Sequence[str], question: str = QUESTION, context: str = "") -> str:
    """Paper A's zero-shot prompt for ``class_names`` (choice list rendered as a Python list, as its code
    does). ``context`` (hypothesis-1 descriptions or domain context) goes on its own line before the
    question; paper A's template has no slot for it."""
    if not class_names:
        raise ParameterError("the choice list is empty")
    text = PAPER_A_TEMPLATE.format(question=question.strip(), choices=str([str(c) for c in class_names]))
    if context:
        first, rest = text.split("\n", 1)
        text = f"{first}\n        {context.strip()}\n{rest}"
    return text


def parse_answer_paper_a(reply: str, class_names: Sequence[str]) -> int | None:
    """Paper A's parser: index of the first class *in list order* whose pattern
    ``Answer Choice:\\s*(?:\\[)?'?"?<name>'?"?(?:\\])?`` matches anywhere in ``reply`` (case-insensitive),
    else None. Like paper A's code, it has no word boundaries: with classes ['cat', 'caterpillar'] the
    reply 'Answer Choice: [caterpillar]' is read as 'cat'."""
    for idx, name in enumerate(class_names):
        pattern = r"Answer Choice:\s*(?:\[)?'?\"?" + re.escape(name) + r"'?\"?(?:\])?"
        if re.search(pattern, reply, re.IGNORECASE):
            return idx
    return None


def prompt_for(style: str, class_names: Sequence[str], question: str = QUESTION, context: str = "") -> str:
    """The zero-shot prompt text of ``style`` ('short' or 'paper_a')."""
    if style not in PROMPT_STYLES:
        raise ParameterError(f"unknown prompt style {style!r}; allowed: {', '.join(map(repr, PROMPT_STYLES))}")
    return (paper_a_prompt if style == "paper_a" else zero_shot_prompt)(class_names, question=question,
                                                                       context=context)


def parser_for(style: str):
    """The reply parser that goes with prompt ``style``: ``parser(reply, class_names) -> index or None``."""
    if style not in PROMPT_STYLES:
        raise ParameterError(f"unknown prompt style {style!r}; allowed: {', '.join(map(repr, PROMPT_STYLES))}")
    return parse_answer_paper_a if style == "paper_a" else parse_answer


_PREFIX_RE = re.compile(r"answer\s*choice\s*:", re.IGNORECASE)


def parse_answer(reply: str, class_names: Sequence[str]) -> int | None:
    """Index of the first class name after 'Answer Choice:' in ``reply`` (case-insensitive), else None.

    Class names match on word boundaries; when two names match at the same position (one a prefix
    of the other, e.g. 'cat' and 'cat food'), the longer wins.
    """
    m = _PREFIX_RE.search(reply)
    if m is None:
        return None
    tail = reply[m.end():]
    best: tuple[int, int, int] | None = None  # (position, -length, index)
    for idx, name in enumerate(class_names):
        hit = re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", tail, re.IGNORECASE)
        if hit:
            key = (hit.start(), -len(name), idx)
            best = key if best is None or key < best else best
    return None if best is None else best[2]


def _descriptions() -> dict:
    import json

    return json.loads((RESOURCES / "descriptions.json").read_text())


def class_descriptions(class_names: Sequence[str]) -> str:
    """Hypothesis-1 context: 'Hints: zero: oval loop; one: one straight stroke; ...' for the classes that have one."""
    table = _descriptions()["classes"]
    parts = [f"{name}: {table[name]}" for name in class_names if name in table]
    return ("Hints: " + "; ".join(parts) + ".") if parts else ""


def domain_context(dataset: str, domain: str) -> str:
    """Hypothesis-1 context: one sentence on the image style or shift of (dataset, domain), '' if none."""
    table = _descriptions()["domains"]
    for key in (f"{dataset}/{domain}", f"{dataset}/{domain.rsplit('-', 1)[0]}-*", f"{dataset}/*"):
        if key in table:
            return table[key].format(domain=domain.replace("_", " "))
    return ""
