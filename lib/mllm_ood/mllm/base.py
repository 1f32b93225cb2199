"""The one interface of every MLLM the study runs, with its inputs checked once.

A *conversation* is ``(images, prompt)``: a list of PIL images and the user's text, or a
:class:`~mllm_ood.formats.chat.Chat` of several turns with a system prompt. The text marks where each image goes
with ``<image>`` (one per image, in order: few-shot episodes interleave images and text this way); a text
without any ``<image>`` gets all its images before the text, as LLaVA's single-image prompts do
(:mod:`mllm_ood.formats.chat`).

:class:`MLLM` declares what a model can do, its :attr:`~MLLM.capabilities` (a subset of
:data:`CAPABILITIES`), asked with ``model.can("vision_features")``. Its public methods check their inputs
before any compute (one :class:`~mllm_ood.validation.ParameterError` with a clear message), refuse a
capability the model lacks (:class:`CapabilityMissing`), then hand the checked inputs to the family's
``*_inner`` method (as VLMEvalKit's ``generate`` -> ``generate_inner`` and lmms-eval's ``lmms`` base do):

- :meth:`MLLM.generate` -- replies (greedy, or sampled at a temperature from a seed) for a batch of conversations (any number of images each);
- :meth:`MLLM.score_choices` -- log-likelihood (nats) of each answer choice given the conversation;
- :meth:`MLLM.vision_features` -- frozen, mean-pooled vision-tower features;
- :meth:`MLLM.answer_state` -- the language model's hidden state where the answer's first token is
  predicted (the last prompt position), for probes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..validation import ParameterError, check_choice
from ..formats.chat import Chat, as_messages, segments  # noqa: F401 - segments: re-exported

CAPABILITIES = ("generate", "score_choices", "vision_features", "answer_state")


class CapabilityMissing(ParameterError):
    """An operation the model does not offer (e.g. vision features of a model behind an endpoint)."""


def check_images(images, where: str = "") -> list:
    """One PIL image or a sequence of them -> a list; ParameterError naming the first that is not one."""
    from PIL import Image

    images = [images] if isinstance(images, Image.Image) else list(images)
    for im in images:
        if not isinstance(im, Image.Image):
            raise ParameterError(f"{where}images must be PIL images, got {type(im).__name__}")
    return images


def check_conversations(conversations) -> list[tuple[list, str]]:
    """Validate conversations (see the module docstring); return them as a list of (images, prompt)."""
    if isinstance(conversations, tuple) and len(conversations) == 2 and isinstance(conversations[1], (str, Chat)):
        raise ParameterError("pass a list of conversations, e.g. [(images, prompt)], not a single one")
    conversations = list(conversations)
    if not conversations:
        raise ParameterError("no conversations given")
    out = []
    for i, conv in enumerate(conversations):
        if not (isinstance(conv, (tuple, list)) and len(conv) == 2 and isinstance(conv[1], (str, Chat))):
            raise ParameterError(f"conversation {i} must be (list of PIL images, prompt text or Chat), "
                                 f"got {type(conv)!r}")
        images, prompt = conv
        images = check_images(images, f"conversation {i}: ")
        try:
            as_messages(prompt, len(images))
        except ParameterError as err:
            raise ParameterError(f"conversation {i}: {err}") from None
        out.append((images, prompt))
    return out


def check_choice_lists(choices, n: int) -> list[list[str]]:
    """A shared list of choices, or one list per conversation -> one list per conversation, all of one length."""
    if isinstance(choices, str):
        raise ParameterError("choices must be a list of strings (or one list per conversation), not a string")
    choices = list(choices)
    if not choices:
        raise ParameterError("the choice list is empty")
    if all(isinstance(c, str) for c in choices):
        per = [choices] * n
    elif all(isinstance(c, (list, tuple)) for c in choices):
        if len(choices) != n:
            raise ParameterError(f"{len(choices)} choice lists for {n} conversations")
        per = [list(c) for c in choices]
    else:
        raise ParameterError("choices must be a list of strings or a list of lists of strings")
    for i, c in enumerate(per):
        if not c:
            raise ParameterError(f"the choice list of conversation {i} is empty")
        if any(not isinstance(s, str) or not s for s in c):
            raise ParameterError(f"choice list {i} contains an empty or non-string choice")
    if any(len(c) != len(per[0]) for c in per):
        raise ParameterError("every conversation needs the same number of choices")
    return per


class MLLM:
    """A loaded MLLM (see the module docstring). Build with :func:`mllm_ood.mllm.load_model`.

    A family subclass sets :attr:`family`, :attr:`capabilities` and implements the ``*_inner`` method of
    each capability; :meth:`missing` says why a capability is absent. Every instance carries ``name``,
    ``fingerprint`` (:func:`mllm_ood.mllm.refs.model_fingerprint`: what keys its cached results),
    ``model_type``, ``device`` and ``dtype``."""

    family = "abstract"
    capabilities: frozenset = frozenset()
    name: str
    fingerprint: str

    def can(self, capability: str) -> bool:
        """Whether the model offers ``capability`` (one of :data:`CAPABILITIES`)."""
        check_choice("capability", capability, CAPABILITIES)
        return capability in self.capabilities

    def missing(self, capability: str) -> str:
        """Why ``capability`` is absent (the refusal's message)."""
        return f"{self.name} ({self.family} family) offers no {capability}"

    def _require(self, capability: str) -> None:
        """Refuse a capability the family does not declare (a declared one may still fail on use, e.g. an
        endpoint whose server turns out to return no log-probabilities)."""
        if capability not in self.capabilities:
            raise CapabilityMissing(self.missing(capability))

    # ---------------------------------------------------------------- checked public methods
    def prompt_text(self, conversation) -> str:
        """The conversation as the model receives it (its chat template with the generation prompt)."""
        images, prompt = check_conversations([conversation])[0]
        return self.prompt_text_inner(images, prompt)

    def generate(self, conversations, max_new_tokens: int = 32, batch_size: int = 8,
                 progress: bool = False, temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Replies, one string per conversation, each generated until the model stops or ``max_new_tokens``:
        greedy at ``temperature`` 0 (the default), else sampled at that temperature from a generator seeded by
        ``seed`` (the same seed, conversations and batch size give the same replies)."""
        self._require("generate")
        convs = check_conversations(conversations)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ParameterError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 5:
            raise ParameterError(f"temperature must be a number in [0, 5] (0 = greedy), got {temperature!r}")
        return self.generate_inner(convs, max_new_tokens, batch_size, progress, float(temperature), int(seed))

    def score_choices(self, conversations, choices, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Log-likelihood (nats, summed over the choice's tokens) of each choice as the reply.

        conversations: n conversations; choices: one list of k strings for all, or n lists of k.
        Returns float64 (n, k)."""
        self._require("score_choices")
        convs = check_conversations(conversations)
        return self.score_inner(convs, check_choice_lists(choices, len(convs)), batch_size, progress)

    def vision_features(self, images, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Mean-pooled vision-tower features, float32 (n, d_vision)."""
        self._require("vision_features")
        images = check_images(images)
        if not images:
            raise ParameterError("no images given")
        return self.vision_inner(images, batch_size, progress)

    def answer_state(self, conversations, layer: int = -1, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """The language model's hidden state at the last prompt position (where the reply's first token is
        predicted), float32 (n, hidden). ``layer`` indexes the hidden states (-1 = last)."""
        self._require("answer_state")
        return self.answer_state_inner(check_conversations(conversations), layer, batch_size, progress)

    # ---------------------------------------------------------------- what a family implements
    def prompt_text_inner(self, images: list, prompt: str) -> str:
        raise NotImplementedError

    def generate_inner(self, convs: list, max_new_tokens: int, batch_size: int, progress: bool,
                       temperature: float = 0.0, seed: int = 0) -> list[str]:
        raise NotImplementedError

    def score_inner(self, convs: list, choices: list[list[str]], batch_size: int, progress: bool) -> np.ndarray:
        raise NotImplementedError

    def vision_inner(self, images: list, batch_size: int, progress: bool) -> np.ndarray:
        raise NotImplementedError

    def answer_state_inner(self, convs: list, layer: int, batch_size: int, progress: bool) -> np.ndarray:
        raise NotImplementedError


def usable_modes(model, modes: Sequence[str], scoring: str = "loglik") -> list[str]:
    """``modes`` without ``scoring`` when ``model`` cannot score choices (e.g. an endpoint whose server returns
    no log-probabilities), saying so once; never empty: falls back to ['generate']."""
    modes = list(modes)
    if scoring not in modes or model.can("score_choices"):
        return modes
    kept = [m for m in modes if m != scoring] or ["generate"]
    print(f"{model.name}: cannot score choices (no log-probabilities), so {scoring!r} is left out; answers come "
          f"from generate + parse ({kept})")
    return kept


def in_words(model) -> str:
    """The model as figures, tables and the claims ledger name it, e.g. 'embedded 1.1 M-parameter model
    (llava architecture)' for the project's own checkpoint, 'llava-hf/llava-1.5-7b-hf (7.1 B-parameter llava
    model)' for a hub model, the bare name for an endpoint (no weights here to count)."""
    name = str(model.name).rstrip("/")
    short = name.rsplit("/", 1)[-1] if name.startswith((".", "/")) or "data/models" in name else name
    net = getattr(model, "model", None)
    if net is None or not hasattr(net, "parameters"):
        return short
    n = sum(p.numel() for p in net.parameters())
    size = f"{n / 1e6:.1f} M" if n < 1e9 else f"{n / 1e9:.1f} B"
    if "embedded" in short:
        return f"embedded {size}-parameter model ({model.family} architecture)"
    return f"{short} ({size}-parameter {model.family} model)"
