"""Few-shot in-context-learning (ICL) episodes: demonstrations, then a query, as one conversation.

An episode is a multi-image prompt for the model interface (:mod:`mllm_ood.mllm`): the images are
the demonstrations in order followed by the query, and the text marks each image's place with
``<image>``. The layout is the one under which the embedded model learned in context: every
demonstration image is followed directly by its label word (no constant token in between), and the
instructions with the choice list come after the demonstrations, right before the query image::

    <image>dax
    <image>wug
    Each example image is followed by its label. What is in this image? Choice list: [dax, wug].
    Reply in the format: Answer Choice: [class name].
    <image>

and the expected reply is paper A's ``Answer Choice: [dax]``. (Measured on the embedded model's
training: with the same instructions placed *before* the demonstrations, in-context learning did not
form within the training budget; see ``params/embedded/model.yaml``.)

Three label-word variants (:func:`label_words`):

- ``fixed``: every class is called by its true name (``seven``), as in paper A's ICL study;
- ``reassigned``: each class gets a word drawn afresh per episode from :data:`NONCE_WORDS`, so no
  zero-shot prior can solve the episode: only the demonstrations tell which word means what;
- ``permuted``: the episode's true names, shuffled so that no class keeps its own (``seven`` labels the
  threes): the demonstrations must override what the model already knows.

This module holds the layout (:func:`make_episode`) and the per-episode draws the studies share
(:func:`label_words`, :func:`balanced_counts`). Episodes are drawn by one builder,
:func:`mllm_ood.paper_a.icl.studies.build_condition_episodes`, whose studies (small classes) decide the classes, the
demonstration counts and pools and how images are shown; demonstrations never include the query nor
another rendering of its source image. (The embedded model's training samples and its held-out probe
during training draw their own token-level episodes: see :mod:`mllm_ood.mllm.embedded.samples` and
:class:`mllm_ood.mllm.embedded.HeldOutProbe`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..validation import ParameterError
from .chat import IMAGE_PLACEHOLDER
from .paper_a_icl import paper_a_icl_prompt
from .prompts import format_answer, zero_shot_prompt

EPISODE_INSTRUCTION = "Each example image is followed by its label."
# Made-up label words for reassigned episodes (each is one token of the embedded model's tokenizer).
NONCE_WORDS = (
    "dax", "wug", "blick", "fep", "toma", "zup", "kiki", "bouba", "lorp", "mib", "tufa", "gazzer",
    "pilk", "vonk", "snerg", "quib", "norf", "yeb", "glorp", "trez", "plov", "drem", "zib", "kesh",
)
MODES = ("fixed", "reassigned", "permuted")


@dataclass(frozen=True)
class Episode:
    """One ICL episode.

    images: demonstration images in order, then the query image (PIL images), len = shots + 1.
    prompt: the text with one ``<image>`` per image, in order (see module docstring), or a
    :class:`~mllm_ood.formats.chat.Chat` of turns (paper A's layout in turns).
    choices: the label words of the episode's classes, in choice-list order.
    answer: the query's label word; ``answer_index`` its index in ``choices``.
    query_label / demo_labels: class indices in the source dataset's ClassLabel.
    query_id / demo_ids: dataset ids (``demo_ids`` never contains ``query_id``).
    """

    images: list
    prompt: str
    choices: list[str]
    answer: str
    answer_index: int
    query_label: int
    demo_labels: list[int]
    query_id: str
    demo_ids: list[str]
    mode: str
    words: dict[int, str] = field(default_factory=dict)

    @property
    def conversation(self) -> tuple[list, str]:
        """(images, prompt): what :meth:`mllm_ood.mllm.hf.HFModel.generate` and ``score_choices`` take."""
        return (list(self.images), self.prompt)

    @property
    def reply(self) -> str:
        """The expected reply, paper A's format: ``Answer Choice: [word]``."""
        return format_answer(self.answer)


def episode_prompt(demo_words: Sequence[str], choices: Sequence[str]) -> str:
    """The episode text: ``<image>word`` per demonstration, then the instructions with the choice list,
    then the query ``<image>``."""
    if not choices:
        raise ParameterError("the choice list of an episode is empty")
    tail = EPISODE_INSTRUCTION + " " + zero_shot_prompt(list(choices)) + "\n"
    return "".join(f"{IMAGE_PLACEHOLDER}{w}\n" for w in demo_words) + tail + IMAGE_PLACEHOLDER


def label_words(classes: Sequence[int], class_names: Sequence[str], mode: str, r: np.random.Generator) -> dict:
    """Class index -> label word for one episode (see the module docstring for the modes).

    ``permuted`` is a derangement (a cyclic shift of a random order), so every class is named wrongly.
    """
    classes = [int(c) for c in classes]
    if mode == "fixed":
        return {c: class_names[c] for c in classes}
    if mode == "reassigned":
        if len(classes) > len(NONCE_WORDS):
            raise ParameterError(f"{len(classes)} classes exceed the {len(NONCE_WORDS)} made-up label words")
        return dict(zip(classes, (str(w) for w in r.choice(NONCE_WORDS, len(classes), replace=False))))
    if mode == "permuted":
        k = len(classes)
        shift = int(r.integers(1, k))
        order = [classes[j] for j in r.permutation(k)]
        return {order[j]: class_names[order[(j + shift) % k]] for j in range(k)}
    raise ParameterError(f"unknown label-word mode {mode!r}; allowed: {', '.join(MODES)}")


def balanced_counts(shots: int, n_way: int, r: np.random.Generator) -> np.ndarray:
    """Demonstrations per class: ``shots // n_way`` each, the remainder to classes drawn at random."""
    counts = np.full(n_way, shots // n_way)
    counts[r.choice(n_way, size=shots % n_way, replace=False)] += 1
    return counts


def make_episode(demo_images, demo_labels, demo_ids, query_image, query_label: int, query_id: str,
                 classes: Sequence[int], words: dict, mode: str, layout: str = "compact") -> Episode:
    """An :class:`~mllm_ood.formats.episodes.Episode` in the shared layout (:func:`episode_prompt`); ``classes``
    in choice-list order (see :func:`mllm_ood.paper_a.icl.tasks.choice_order`).

    Without demonstrations the prompt is the plain zero-shot prompt (the query image, then the question
    with the choice list: what notebook 01 asks, restricted to the episode's choices), so a shots curve
    starts from the model's zero-shot accuracy — paper A's comparison — and not from an episode
    instruction that announces examples and then shows none.

    ``layout`` 'paper_a' / 'paper_a_turns': paper A's own layout (:mod:`mllm_ood.formats.paper_a_icl`; its
    0-shot episode is its query alone), the choice list being ``classes`` (the whole dataset's there)."""
    choices = [words[c] for c in classes]
    if layout in ("paper_a", "paper_a_turns"):
        prompt = paper_a_icl_prompt([words[c] for c in demo_labels], choices, turns=layout == "paper_a_turns")
    elif layout != "compact":
        raise ParameterError(f"unknown ICL layout {layout!r}")
    else:
        prompt = (episode_prompt([words[c] for c in demo_labels], choices) if len(demo_labels)
                  else IMAGE_PLACEHOLDER + zero_shot_prompt(list(choices)))
    return Episode(images=list(demo_images) + [query_image], prompt=prompt, choices=choices,
                   answer=words[query_label], answer_index=choices.index(words[query_label]),
                   query_label=int(query_label), demo_labels=[int(c) for c in demo_labels], query_id=query_id,
                   demo_ids=list(demo_ids), mode=mode, words=dict(words))

