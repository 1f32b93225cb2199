"""Few-shot episodes: the query is never a demonstration, demonstrations are balanced, reassigned
label words are consistent within an episode, and the prompt layout matches the images."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from mllm_ood.episodes import (IMAGE_PLACEHOLDER, NONCE_WORDS, build_episodes, episode_prompt)
from mllm_ood.prompts import parse_answer, zero_shot_prompt
from mllm_ood.validation import ParameterError

NAMES = ["zero", "one", "two", "three", "four"]


@pytest.fixture(scope="module")
def ds():
    r = np.random.default_rng(0)
    n = 60
    labels = [i % len(NAMES) for i in range(n)]
    images = [PILImage.fromarray(r.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(n)]
    feats = Features({"id": Value("string"), "image": Image(), "label": ClassLabel(names=NAMES),
                      "domain": Value("string")})
    return Dataset.from_dict({"id": [f"s{i}" for i in range(n)], "image": images, "label": labels,
                              "domain": ["d"] * n}, features=feats)


@pytest.mark.parametrize("mode", ["fixed", "reassigned", "permuted"])
@pytest.mark.parametrize("shots", [0, 1, 2, 4, 8])
def test_query_never_a_demo_and_layout(ds, mode, shots):
    eps = build_episodes(ds, 12, shots, mode=mode, seed=1)
    assert len(eps) == 12
    for e in eps:
        assert e.query_id not in e.demo_ids
        assert len(e.demo_ids) == len(set(e.demo_ids)) == shots
        assert len(e.images) == shots + 1
        assert e.prompt.count(IMAGE_PLACEHOLDER) == shots + 1
        if shots == 0:  # paper A's zero-shot baseline: the plain zero-shot prompt with the episode's choices
            assert e.prompt == IMAGE_PLACEHOLDER + zero_shot_prompt(e.choices)
            assert "example" not in e.prompt.lower() and e.choices[e.answer_index] == e.answer
            continue
        assert e.prompt.endswith(IMAGE_PLACEHOLDER)
        # each demonstration's label word directly follows its image, then a newline; the instructions
        # with the choice list come after the last demonstration, right before the query image
        segs = e.prompt.split(IMAGE_PLACEHOLDER)[1:-1]
        assert [s.split("\n")[0] for s in segs] == [e.words[c] for c in e.demo_labels]
        assert all(s.count("\n") == 1 for s in segs[:-1])
        parts = e.prompt.split(IMAGE_PLACEHOLDER)
        assert "Choice list" in parts[-2] and (shots == 0 or parts[0] == "")
        if mode == "permuted":
            assert all(e.words[c] != ds.features["label"].names[c] for c in e.words)
        assert e.choices[e.answer_index] == e.answer == e.words[e.query_label]
        assert parse_answer(e.reply, e.choices) == e.answer_index
        images, prompt = e.conversation
        assert len(images) == shots + 1 and prompt == e.prompt


def test_balanced_by_default(ds):
    for e in build_episodes(ds, 20, 8, mode="reassigned", seed=3):
        counts = np.bincount([sorted(e.words).index(c) for c in e.demo_labels], minlength=2)
        assert counts.tolist() == [4, 4]
    for e in build_episodes(ds, 20, 5, classes=[1, 3], seed=3):
        counts = sorted(np.bincount([c for c in e.demo_labels], minlength=5)[[1, 3]].tolist())
        assert counts == [2, 3]


def test_reassigned_words_consistent_and_distinct(ds):
    for e in build_episodes(ds, 30, 8, mode="reassigned", n_way=3, seed=5):
        assert len(set(e.words.values())) == 3
        assert all(w in NONCE_WORDS for w in e.words.values())
        segs = e.prompt.split(IMAGE_PLACEHOLDER)[1:-1]
        for c, seg in zip(e.demo_labels, segs):
            assert seg.split("\n")[0] == e.words[c]  # the same class always gets the same word in an episode
        assert sorted(e.choices) == sorted(e.words.values())


def test_fixed_uses_true_names_and_queries_cycle(ds):
    eps = build_episodes(ds, 10, 2, mode="fixed", classes=[0, 4], seed=0)
    assert all(e.words == {0: "zero", 4: "four"} for e in eps)
    assert [e.query_label for e in eps] == [0, 4] * 5


def test_seeded(ds):
    a = build_episodes(ds, 5, 4, seed=7)
    b = build_episodes(ds, 5, 4, seed=7)
    c = build_episodes(ds, 5, 4, seed=8)
    key = lambda eps: [(e.query_id, tuple(e.demo_ids), e.prompt) for e in eps]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)


def test_proportions_and_other_demo_pool(ds):
    eps = build_episodes(ds, 10, 8, classes=[0, 1], proportions=[1.0, 0.0], seed=2)
    assert all(set(e.demo_labels) == {0} for e in eps)
    other = ds.select(range(30))
    eps = build_episodes(ds.select(range(30, 60)), 6, 4, demo_ds=other, seed=2)
    assert all(set(e.demo_ids) <= set(other["id"]) for e in eps)


def test_bad_input(ds):
    with pytest.raises(ParameterError):
        build_episodes(ds, 3, 2, mode="swapped")
    with pytest.raises(ParameterError):
        build_episodes(ds, 3, 2, classes=[1, 1])
    with pytest.raises(ParameterError):
        build_episodes(ds, 3, 2, proportions=[0.2, 0.2])
    with pytest.raises(ParameterError):
        build_episodes(ds, 3, 40, classes=[0, 1])  # not enough demonstrations per class
    with pytest.raises(ParameterError):
        episode_prompt(["a"], [])
