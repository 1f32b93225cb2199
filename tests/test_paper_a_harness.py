"""The paper profile runs paper A's own protocol (issue 24): its class order, its harness's conversation
template and generation settings, its ICL layout, its parser on DomainNet's prefix pairs, its domains."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mllm_ood.data import hub, paper_a_lists
from mllm_ood.formats.chat import Chat
from mllm_ood.formats.paper_a_icl import paper_a_icl_prompt, resolve_layout
from mllm_ood.formats.prompts import paper_a_prompt, parse_answer_paper_a
from mllm_ood.mllm import load_model
from mllm_ood.mllm.generation import Generation
from mllm_ood.mllm.standins import make_standin, standin_model
from mllm_ood.validation import ParameterError

from conftest import shared_folder
from test_paper_a_protocol import PACS_PROMPT

PACS_PAPER_A = ["dog", "giraffe", "horse", "person", "guitar", "elephant", "house"]
# Paper A's prompt for PACS (its f-string with its dataset_info.json order).
VICUNA_V1 = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
             "detailed, and polite answers to the human's questions.")


def _image(seed=0, size=32):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    folder = shared_folder(tmp_path_factory, "pacs_standin_24", lambda f: hub.make_standin_dataset("pacs", f))
    return hub.load_hub("pacs", source=folder)


def test_pacs_loads_in_paper_a_order_and_renders_paper_a_prompt(pacs):
    names = pacs.features["label"].names
    assert list(names) == PACS_PAPER_A  # the hub's ClassLabel order is alphabetical
    assert paper_a_prompt(names) == PACS_PROMPT
    # Labels were renumbered with the names: every image keeps its class.
    raw = hub.SPECS["pacs"].label_values
    assert sorted(raw) == list(raw) and list(names) != list(raw)
    assert paper_a_lists.provenance()["commit"].startswith("113879a")


def test_unknown_class_is_refused():
    with pytest.raises(ParameterError, match="not in paper A's class list"):
        paper_a_lists.class_order("pacs", ["dog", "unicorn"])


DOMAINNET = paper_a_lists.entry("domainnet")["class_names"]


@pytest.mark.parametrize("reply, expected", [
    ("Answer Choice: [baseball_bat]", "baseball_bat"),
    ("Answer Choice: [baseball]", "baseball"),
    ("Answer Choice: [toothbrush]", "toothbrush"),
    ("Answer Choice: [toothpaste]", "toothpaste"),
    ("Answer Choice: [tooth]", "tooth"),
    # Paper A's parser has no word boundary: 'rain' precedes 'rainbow' in its list, so 'rainbow' reads as 'rain'.
    ("Answer Choice: [rainbow]", "rain"),
])
def test_domainnet_prefix_pairs_parse_as_paper_a(reply, expected):
    assert DOMAINNET[parse_answer_paper_a(reply, DOMAINNET)] == expected


def test_alphabetical_order_would_misread_the_prefix_pairs():
    alpha = sorted(DOMAINNET)
    assert alpha[parse_answer_paper_a("Answer Choice: [baseball_bat]", alpha)] == "baseball"
    assert alpha[parse_answer_paper_a("Answer Choice: [toothbrush]", alpha)] == "tooth"


def test_llava_conversation_is_paper_a_harness_string():
    # module/LLaVA.py: conv_templates['vicuna_v1'] with '<image>\n' + prompt, then 'ASSISTANT:'.
    m = load_model(standin_model("llava-hf/llava-1.5-7b-hf"))
    text = Generation(system_prompt="card").text(m, PACS_PROMPT)
    assert m.prompt_text(([_image()], text)) == f"{VICUNA_V1} USER: <image>\n{PACS_PROMPT} ASSISTANT:"
    assert Generation().text(m, PACS_PROMPT) == PACS_PROMPT  # 'none': the template's own default
    assert resolve_layout(m, "paper_a") == "paper_a_turns"


def _icl_question():
    return PACS_PROMPT.replace("Given the image", "Given the image above").replace("in this image",
                                                                                  "in the image above")


def test_icl_layout_is_paper_a_strings():
    qs = _icl_question()
    assert "Given the image above, answer" in qs and "What is in the image above?" in qs
    demo = "---BEGIN FORMAT TEMPLATE---\n        Answer Choice: {}\n        ---END FORMAT TEMPLATE---"
    one = paper_a_icl_prompt(["dog", "giraffe"], PACS_PAPER_A)
    assert one == ("<image>" + qs + demo.format("dog") + "\n\n\n" + "<image>" + qs + demo.format("giraffe")
                   + "\n\n\n" + "<image>" + qs + "Do not response with I'm sorry. Just pick a choice.\n")
    turns = paper_a_icl_prompt(["dog", "giraffe"], PACS_PAPER_A, turns=True)
    assert isinstance(turns, Chat) and [r for r, _ in turns.turns] == ["user", "assistant"] * 2 + ["user"]
    assert turns.turns[1][1] == demo.format("dog") and turns.turns[-1][1].endswith("Just pick a choice.\n")
    assert paper_a_icl_prompt([], PACS_PAPER_A) == "<image>" + qs + "Do not response with I'm sorry. Just pick a choice.\n"


def test_icl_episodes_use_fixed_alternating_demos_and_the_whole_choice_list(pacs, tmp_path_factory):
    from mllm_ood.paper_a.icl.studies import Condition, build_condition_episodes
    from mllm_ood.paper_a.icl.tasks import IclData, resolve_task

    folder = shared_folder(tmp_path_factory, "pacs_standin_24_big",
                           lambda f: hub.make_standin_dataset("pacs", f, per_cell=6))
    data = IclData(seed=0, sources={"hub:pacs": str(folder)})
    task = resolve_task({"name": "t", "dataset": "hub:pacs", "query_domain": "sketch", "shift_domain": "photo",
                         "classes": ["dog", "elephant"]})
    eps = {s: build_condition_episodes(Condition("shots", task, s, "fixed", 0, 2, "shifted", layout="paper_a"),
                                       data)[0] for s in (2, 4)}
    for s, episodes in eps.items():
        assert all(e.demo_ids == episodes[0].demo_ids for e in episodes)  # fixed per condition
        assert [PACS_PAPER_A[c] for c in episodes[0].demo_labels] == ["dog", "elephant"] * (s // 2)  # alternating
        assert all(e.choices == PACS_PAPER_A for e in episodes)  # the whole dataset's list, paper A's order
        assert all(e.demo_ids and e.query_id not in e.demo_ids for e in episodes)
    assert eps[4][0].demo_ids[:2] == eps[2][0].demo_ids  # fewer shots: the first of more, as paper A's
    ep = eps[2][0]
    assert ep.prompt == paper_a_icl_prompt(["dog", "elephant"], PACS_PAPER_A)


def test_context_check_counts_real_tokens(tmp_path_factory):
    from mllm_ood.paper_a.icl.context import check_context
    from mllm_ood.paper_a.icl.studies import Condition
    from mllm_ood.paper_a.icl.tasks import IclData, resolve_task

    folder = shared_folder(tmp_path_factory, "pacs_standin_24_big",
                           lambda f: hub.make_standin_dataset("pacs", f, per_cell=6))
    data = IclData(seed=0, sources={"hub:pacs": str(folder)})
    task = resolve_task({"name": "t", "dataset": "hub:pacs", "query_domain": "sketch", "shift_domain": "photo",
                         "classes": ["dog", "elephant"]})
    m = load_model(standin_model("llava-hf/llava-1.5-7b-hf"))  # 4,096 positions, 576 tokens per image
    ok = check_context(m, [Condition("shots", task, 2, "fixed", 0, 1, layout="paper_a_turns")], data)
    shots, tokens, limit = ok[("t", "paper_a_turns")]
    assert limit == 4096 and tokens > 3 * 576
    with pytest.raises(ParameterError, match="context of 4096"):
        check_context(m, [Condition("shots", task, 6, "fixed", 0, 1, layout="paper_a_turns")], data)


def test_generation_runs_to_the_cap_and_samples_from_the_seed(tmp_path_factory):
    folder = shared_folder(tmp_path_factory, "tiny_llava_24", lambda f: make_standin("llava", f / "m"))
    m = load_model(folder / "m")
    convs = [([_image(i)], "What is in this image?") for i in range(3)]
    greedy = m.generate(convs, max_new_tokens=5)
    assert greedy == m.generate(convs, max_new_tokens=5)
    hot = [m.generate(convs, max_new_tokens=20, temperature=5.0, seed=s) for s in (0, 0, 1)]
    assert hot[0] == hot[1] and hot[0] != hot[2]  # seeded: repeatable, and the seed matters
    g = Generation(max_new_tokens=20, temperature=0.2, seed=3, system_prompt="card")
    assert g.key() == {"max_new_tokens": 20, "temperature": 0.2, "generation_seed": 3, "system_prompt": "card"}
    assert Generation(max_new_tokens=16).key() == {"max_new_tokens": 16}  # old cache keys kept
    with pytest.raises(ParameterError, match="temperature"):
        Generation(temperature=-1)


def test_camelyon17_reads_hospital_1_from_ood_val(tmp_path):
    folder = hub.make_standin_dataset("camelyon17", tmp_path / "c")
    assert sorted(p.name.split("-")[0] for p in (folder / "data").iterdir()) == ["id_train", "ood_val"]
    ds = hub.load_hub("camelyon17", source=folder)
    assert sorted(set(ds["domain"])) == ["0", "1", "3", "4"]
    assert paper_a_lists.entry("camelyon17")["domains"] == ["hospital_0", "hospital_1"]
