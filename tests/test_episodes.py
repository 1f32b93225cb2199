"""Episode layout and the per-episode draws the studies share (mllm_ood.formats.episodes): the prompt matches the
images, label words follow their mode (permuted = a derangement), demonstrations are balanced. How
episodes are drawn (one builder, mllm_ood.paper_a.icl.studies.build_condition_episodes) is tested in test_icl.py."""

import numpy as np
import pytest
from PIL import Image as PILImage

from mllm_ood.formats.episodes import (IMAGE_PLACEHOLDER, NONCE_WORDS, balanced_counts, episode_prompt, label_words,
                                       make_episode)
from mllm_ood.formats.prompts import parse_answer, zero_shot_prompt
from mllm_ood.validation import ParameterError

NAMES = ["zero", "one", "two", "three", "four"]


@pytest.mark.parametrize("mode", ["fixed", "reassigned", "permuted"])
@pytest.mark.parametrize("shots", [0, 1, 2, 4, 8])
def test_layout(mode, shots):
    r = np.random.default_rng(shots)
    classes = [1, 3, 4]
    words = label_words(classes, NAMES, mode, r)
    demo_labels = [classes[j % 3] for j in range(shots)]
    images = [PILImage.new("L", (8, 8), j) for j in range(shots + 1)]
    order = [4, 1, 3]
    e = make_episode(images[:-1], demo_labels, [f"d{j}" for j in range(shots)], images[-1], 3, "q", order, words,
                     mode)
    assert e.choices == [words[c] for c in order] and e.answer == words[3] == e.choices[e.answer_index]
    assert len(e.images) == shots + 1 and e.prompt.count(IMAGE_PLACEHOLDER) == shots + 1
    assert parse_answer(e.reply, e.choices) == e.answer_index
    images_out, prompt = e.conversation
    assert images_out == images and prompt == e.prompt
    if shots == 0:  # paper A's zero-shot baseline: the plain zero-shot prompt with the episode's choices
        assert e.prompt == IMAGE_PLACEHOLDER + zero_shot_prompt(e.choices)
        assert "example" not in e.prompt.lower()
        return
    assert e.prompt.endswith(IMAGE_PLACEHOLDER)
    # each demonstration's label word directly follows its image, then a newline; the instructions with
    # the choice list come after the last demonstration, right before the query image
    segs = e.prompt.split(IMAGE_PLACEHOLDER)[1:-1]
    assert [s.split("\n")[0] for s in segs] == [words[c] for c in demo_labels]
    assert all(s.count("\n") == 1 for s in segs[:-1])
    parts = e.prompt.split(IMAGE_PLACEHOLDER)
    assert "Choice list" in parts[-2] and parts[0] == ""


def test_label_word_modes():
    r = np.random.default_rng(0)
    for k in (2, 3, 5):
        classes = sorted(r.choice(5, k, replace=False).tolist())
        assert label_words(classes, NAMES, "fixed", r) == {c: NAMES[c] for c in classes}
        for _ in range(30):
            words = label_words(classes, NAMES, "reassigned", r)
            assert len(set(words.values())) == k and set(words.values()) <= set(NONCE_WORDS)
            words = label_words(classes, NAMES, "permuted", r)
            assert sorted(words.values()) == sorted(NAMES[c] for c in classes)  # the episode's own names
            assert all(words[c] != NAMES[c] for c in classes)  # a derangement: none keeps its own name


def test_balanced_counts():
    r = np.random.default_rng(0)
    extra = np.zeros(3, int)
    for shots in range(0, 12):
        for _ in range(20):
            counts = balanced_counts(shots, 3, r)
            assert counts.sum() == shots and counts.max() - counts.min() <= (shots % 3 > 0)
            extra += counts - shots // 3
    assert (extra > 0).all()  # the remainder goes to classes drawn at random, not always the first


def test_bad_input():
    r = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="label-word mode"):
        label_words([0, 1], NAMES, "swapped", r)
    with pytest.raises(ParameterError, match="made-up label words"):
        label_words(list(range(len(NONCE_WORDS) + 1)), [str(i) for i in range(30)], "reassigned", r)
    with pytest.raises(ParameterError):
        episode_prompt(["a"], [])
