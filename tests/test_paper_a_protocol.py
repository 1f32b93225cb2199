"""Paper A's exact zero-shot template and parser (the paper profile's default), beside the short style;
in-distribution references as parameters."""

from __future__ import annotations

import pandas as pd
import pytest

from mllm_ood.paper_a import zero_shot
from mllm_ood.formats.prompts import (PAPER_A_TEMPLATE, format_answer, paper_a_prompt, parse_answer,
                                      parse_answer_paper_a, parser_for, prompt_for)
from mllm_ood.validation import ParameterError

PACS = ["dog", "giraffe", "horse", "person", "guitar", "elephant", "house"]  # paper A's order


# The f-string of paper A's data/generate_unified_input_data.py with class_names = PACS.
PACS_PROMPT = (
    "Given the image, answer the following question using the specified format.\n"
    "        Question: What is in this image? Choice list: ['dog', 'giraffe', 'horse', 'person', 'guitar', "
    "'elephant', 'house'].\n"
    "        Please choose a choice from the list and respond with the following format:\n"
    "        ---BEGIN FORMAT TEMPLATE---\n"
    "        Answer Choice: [Your Answer Choice Here]\n"
    "        ---END FORMAT TEMPLATE---\n"
    "        Do not deviate from the above format. Repeat the format template for the answer.\n"
    "        ")


def test_template_is_paper_a_character_for_character():
    expected = PACS_PROMPT
    assert paper_a_prompt(PACS) == expected
    assert prompt_for("paper_a", PACS) == expected and "{choices}" in PAPER_A_TEMPLATE
    with_context = paper_a_prompt(PACS, context="Hints: dog: four legs.")
    assert with_context.splitlines()[1] == "        Hints: dog: four legs." and with_context.endswith(expected[-60:])
    with pytest.raises(ParameterError, match="choice list is empty"):
        paper_a_prompt([])


@pytest.mark.parametrize("reply, expected", [
    ("Answer Choice: [giraffe]", "giraffe"),
    ("answer choice: 'Horse'", "horse"),
    ('ANSWER CHOICE: "house"', "house"),
    ("Answer Choice:guitar", "guitar"),
    # Paper A's parser walks the class list in order, not the reply: 'dog' is listed before 'house'.
    ("Answer Choice: [house] ... Answer Choice: [dog]", "dog"),
    ("I see a dog.", None),  # the format is required
    ("Answer Choice: [Your Answer Choice Here]", None),
    # No word boundary in paper A's regex: 'dog' matches the start of 'doghouse' (the short parser refuses it).
    ("Answer Choice: [doghouse]", "dog"),
])
def test_parser_is_paper_a(reply, expected):
    idx = parse_answer_paper_a(reply, PACS)
    assert (PACS[idx] if idx is not None else None) == expected


def test_styles_differ_where_paper_a_differs_and_share_the_reply_format():
    assert parse_answer("Answer Choice: [doghouse]", PACS) is None
    assert parse_answer_paper_a("Answer Choice: [doghouse]", PACS) == 0
    for style in ("short", "paper_a"):
        assert parser_for(style)(format_answer("elephant"), PACS) == PACS.index("elephant")
    with pytest.raises(ParameterError, match="unknown prompt style 'long'"):
        prompt_for("long", PACS)


class Fake:
    fingerprint = "fake"

    def __init__(self):
        self.prompts = []

    def generate(self, conversations, max_new_tokens=16, batch_size=8):
        self.prompts += [p for _, p in conversations]
        return ["Answer Choice: [zero]"] * len(conversations)


def test_evaluate_uses_the_style_and_reports_parse_failures(fresh_cache):
    m = Fake()
    res = zero_shot.evaluate(m, ["colored_mnist"], modes=["generate"], n_per_class=1, prompt_style="paper_a")
    assert all(p.startswith("Given the image") for p in m.prompts) and (res["prompt_style"] == "paper_a").all()
    assert res["parsed"].all() and res.loc[res["label"] == 0, "correct"].all()
    with pytest.raises(ParameterError, match="unknown prompt style"):
        zero_shot.evaluate(m, ["colored_mnist"], modes=["generate"], prompt_style="verbose")


def test_id_reference_is_a_parameter():
    ds = ["digit_styles", "rotated_mnist"]
    zero_shot.validate_id_reference({"rotated_mnist": "digit_styles/mnist", "digit_styles": "digit_styles/mnist"}, ds)
    for bad, fragment in [({"molecules_size": "digit_styles/mnist"}, "not among the datasets"),
                          ({"rotated_mnist": "corrupted_mnist/clean"}, "not evaluated"),
                          ({"rotated_mnist": "digit_styles/photo"}, "unknown domain of digit_styles 'photo'"),
                          ({"rotated_mnist": "mnist"}, "'dataset/domain'"), (["x"], "mapping")]:
        with pytest.raises(ParameterError, match=fragment):
            zero_shot.validate_id_reference(bad, ds)
    results = pd.DataFrame({"dataset": ["hub:pacs"] * 3, "domain": ["photo", "sketch", "photo"],
                            "correct": [True, False, True], "mode": ["loglik"] * 3})
    ref = zero_shot.id_reference(results, {"hub:pacs": "hub:pacs/photo"})
    assert list(ref) == ["hub:pacs"] and len(ref["hub:pacs"]) == 2
    with pytest.raises(ParameterError, match="has no results"):
        zero_shot.id_reference(results, {"hub:pacs": "hub:pacs/Photo"})


def test_chance_comes_from_the_class_count():
    assert zero_shot.chance_level(PACS) == pytest.approx(1 / 7)
    assert zero_shot.chance_level(["normal", "tumor"]) == 0.5
