"""What zero-shot answers are, before any claim is read from their accuracy.

Three answer outcomes (:func:`mllm_ood.stats.answer_outcome`) make an accuracy unfit to test a claim:

- **parse failure**: the reply does not have the asked-for form ``Answer Choice: [...]`` at all, so the
  parser finds no answer;
- **off-list answer**: a well-formed reply, ``Answer Choice: [three]``, that names something outside the
  choice list (a molecule called "three"): the model answered, in the format, with a class it was not
  offered;
- **constant answer**: one answer for (nearly) every image, so the accuracy is that class's share of the
  sample, whatever the images show.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..stats import MARGIN, answer_outcome
from ..validation import ParameterError

# The asked-for reply form with any name in it (the parsers only accept names of the choice list).
_FORMED = re.compile(r"answer\s*choice\s*:\s*\[?\s*['\"]?([^\]\n'\"]*\w[^\]\n'\"]*)", re.IGNORECASE)


def off_list_name(reply: str, class_names) -> str | None:
    """The name a well-formed reply gives when it is not one of ``class_names`` (case-insensitive), else None
    (a reply without the ``Answer Choice:`` form, or one that names a listed class)."""
    m = _FORMED.search(reply or "")
    if m is None:
        return None
    name = m.group(1).strip()
    listed = {c.lower() for c in class_names}
    return None if name.lower() in listed else name


def answer_table(results: pd.DataFrame, class_names: dict, by=("mode", "dataset", "domain"),
                 margin: float = MARGIN) -> pd.DataFrame:
    """Per group of ``by`` of per-sample zero-shot results (columns ``pred_name``, ``parsed``, ``correct``,
    ``reply``): n, accuracy, parse_failure (share of replies without the answer form), off_list (share of
    well-formed replies naming a class outside the list), top_answer (the most frequent answer, '(none)' for
    an unread reply) and top_answer_share, n_classes, and outcome (:func:`mllm_ood.stats.answer_outcome`:
    'parse failure', 'off-list answer', 'constant answer', or '' when the accuracy can be read).
    ``class_names``: {dataset: class names}."""
    missing = [c for c in [*by, "pred_name", "parsed", "correct"] if c not in results]
    if missing:
        raise ParameterError(f"zero-shot results lack columns {missing}")
    unknown = sorted(set(results["dataset"]) - set(class_names))
    if unknown:
        raise ParameterError(f"no class names given for datasets {unknown}")
    rows = []
    for key, g in results.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        names = list(class_names[g["dataset"].iloc[0]])
        replies = g["reply"].astype(str) if "reply" in g else pd.Series([""] * len(g), index=g.index)
        unread = ~g["parsed"].astype(bool)
        off = np.array([bool(u) and off_list_name(r, names) is not None for u, r in zip(unread, replies)])
        answers = g["pred_name"].astype(str).where(~unread, [off_list_name(r, names) or "(none)" for r in replies])
        top = answers.value_counts(normalize=True)
        acc = float(g["correct"].mean())
        row = dict(zip(by, key), n=len(g), accuracy=acc, parse_failure=float(unread.mean() - off.mean()),
                   off_list=float(off.mean()), top_answer=top.index[0], top_answer_share=float(top.iloc[0]),
                   n_classes=len(names))
        row["outcome"] = answer_outcome(acc, parse_failure=row["parse_failure"], off_list=row["off_list"],
                                        top_answer_share=row["top_answer_share"], n_classes=len(names),
                                        margin=margin) or ""
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_reason(row) -> str:
    """Why an answer outcome keeps a row out of the claim's rule, in words, from an :func:`answer_table` row."""
    if row["outcome"] == "parse failure":
        return f"{100 * row['parse_failure']:.0f} % of the replies lack the 'Answer Choice: [...]' form"
    if row["outcome"] == "off-list answer":
        return (f"{100 * row['off_list']:.0f} % of the replies are well formed but name a class outside the "
                f"choice list (most often {row['top_answer']!r})")
    if row["outcome"] == "constant answer":
        return (f"the model answers {row['top_answer']!r} to {100 * row['top_answer_share']:.0f} % of the images: "
                f"its accuracy is that class's share of the sample, whatever the images show")
    return ""


