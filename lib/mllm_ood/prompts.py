"""Paper A's zero-shot protocol: the multiple-choice prompt and the ``Answer Choice:`` parser.

Prompt (paper A, Zhang et al. 2402.06599): one question over the full class-name list with a required
reply format; the reply is parsed by a case-insensitive regex that takes the first class name after
``Answer Choice:``; a reply without a match counts as wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .validation import ParameterError

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

    from .paths import RESOURCES

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
