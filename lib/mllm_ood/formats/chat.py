"""Conversations as the chat templates take them: one user turn (a plain prompt string), or a :class:`Chat`
of several turns with an optional system prompt.

The text of a turn marks where each image goes with ``<image>`` (:data:`IMAGE_PLACEHOLDER`); a plain prompt
(or a one-turn chat) without any mark gets all its images before the text, as LLaVA's single-image prompts
do. :func:`as_messages` turns either form into the role / content-part messages every family's chat
template (and an OpenAI-compatible server) reads."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import ParameterError

IMAGE_PLACEHOLDER = "<image>"

ROLES = ("user", "assistant")


def segments(prompt: str, n_images: int) -> list[dict]:
    """Chat-template content parts for one turn's text with ``n_images`` images (see the module docstring)."""
    n_marks = prompt.count(IMAGE_PLACEHOLDER)
    if n_marks == 0:
        parts = [{"type": "image"} for _ in range(n_images)]
        return parts + ([{"type": "text", "text": prompt}] if prompt else [])
    if n_marks != n_images:
        raise ParameterError(f"the prompt marks {n_marks} image(s) with {IMAGE_PLACEHOLDER!r} but "
                             f"{n_images} image(s) were given")
    parts = []
    for j, seg in enumerate(prompt.split(IMAGE_PLACEHOLDER)):
        if j > 0:
            parts.append({"type": "image"})
        if seg:
            parts.append({"type": "text", "text": seg})
    return parts


@dataclass(frozen=True)
class Chat:
    """A conversation of turns ``(role, text)`` -- roles alternate, starting and ending with 'user' (the
    model answers the last turn) -- and an optional ``system`` prompt. Images are marked in the turns'
    text (a one-turn chat may leave them unmarked)."""

    turns: tuple
    system: str | None = None

    def __post_init__(self):
        turns = tuple((str(r), str(t)) for r, t in self.turns)
        object.__setattr__(self, "turns", turns)
        if not turns:
            raise ParameterError("a chat needs at least one turn")
        for i, (role, _) in enumerate(turns):
            if role != ROLES[i % 2]:
                raise ParameterError(f"turn {i} of a chat must be {ROLES[i % 2]!r} (roles alternate, user first), "
                                     f"got {role!r}")
        if turns[-1][0] != "user":
            raise ParameterError("the last turn of a chat must be the user's (the model answers it)")

    @property
    def image_marks(self) -> int:
        return sum(text.count(IMAGE_PLACEHOLDER) for _, text in self.turns)

    def key(self) -> dict:
        """JSON form (cache keys)."""
        return {"turns": [list(t) for t in self.turns], "system": self.system}


def as_messages(prompt, n_images: int) -> list[dict]:
    """Role / content-part messages of a conversation's text (a prompt string or a :class:`Chat`) with
    ``n_images`` images; ParameterError when the marks and the images disagree."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": segments(prompt, n_images)}]
    if not isinstance(prompt, Chat):
        raise ParameterError(f"a conversation's text is a string or a Chat, got {type(prompt).__name__}")
    msgs = [{"role": "system", "content": [{"type": "text", "text": prompt.system}]}] if prompt.system else []
    if len(prompt.turns) == 1:
        return msgs + [{"role": "user", "content": segments(prompt.turns[0][1], n_images)}]
    if prompt.image_marks != n_images:
        raise ParameterError(f"the chat marks {prompt.image_marks} image(s) with {IMAGE_PLACEHOLDER!r} but "
                             f"{n_images} image(s) were given")
    return msgs + [{"role": role, "content": segments(text, text.count(IMAGE_PLACEHOLDER))}
                   for role, text in prompt.turns]
