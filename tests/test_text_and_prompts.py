"""Text shifts of prompts and paper A's prompt/parser."""

from __future__ import annotations

import pytest

from mllm_ood.data.text_shifts import LANGUAGES, TEXT_CONDITIONS, apply_text_shift, question_in
from mllm_ood.formats.prompts import format_answer, parse_answer, zero_shot_prompt
from mllm_ood.validation import ParameterError

Q = "What is in this image? Please choose one of the following options and tell me the answer."


@pytest.mark.parametrize("condition", TEXT_CONDITIONS)
def test_text_shifts_are_deterministic(condition):
    assert apply_text_shift(Q, condition, 0) == apply_text_shift(Q, condition, 0)


def test_text_shift_strength():
    assert apply_text_shift(Q, "clean", 0) == Q

    def changed(cond):
        words = [apply_text_shift(Q, cond, s).split() for s in range(20)]
        return sum(sum(a != b for a, b in zip(w, Q.split())) for w in words) / 20

    assert 0 < changed("synonym-1") < changed("synonym-2")
    assert 0 < changed("typo-1") < changed("typo-2")


def test_languages():
    assert len(LANGUAGES) == 7 and question_in("english") == "What is in this image?"
    assert len({question_in(lang) for lang in LANGUAGES}) == 7
    with pytest.raises(ParameterError, match="unknown language 'klingon'"):
        question_in("klingon")


NAMES = ["cat", "cat food", "dog", "hot dog"]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Answer Choice: [dog]", "dog"),
        ("answer choice: DOG", "dog"),
        ("ANSWER CHOICE: 'dog'", "dog"),
        ('Answer Choice: "cat food"', "cat food"),  # longer name wins over its prefix 'cat'
        ("Answer Choice: [cat]", "cat"),
        ("Answer Choice: hot dog", "hot dog"),  # 'dog' matches later inside, 'hot dog' starts first
        ("Answer Choice: cat or dog", "cat"),  # the first class name after the prefix
        ("I think it is a dog. Answer Choice: [cat]", "cat"),  # names before the prefix do not count
        ("The image shows a dog.", None),  # no template
        ("Answer Choice: [catfish]", None),  # not a whole word
        ("Answer Choice:", None),
        ("", None),
    ],
)
def test_parser_on_tricky_replies(reply, expected):
    idx = parse_answer(reply, NAMES)
    assert (NAMES[idx] if idx is not None else None) == expected


def test_prompt_round_trip():
    names = ["zero", "one", "two"]
    prompt = zero_shot_prompt(names)
    assert prompt.startswith("What is in this image?") and "Choice list: [zero, one, two]" in prompt
    assert parse_answer(format_answer("two"), names) == 2
    with pytest.raises(ParameterError, match="choice list is empty"):
        zero_shot_prompt([])
