"""Paper A's in-context layout (its ``evaluation/eval_gpt_ICL.py``, ``gen_prompt``), character for character.

Its question is the zero-shot prompt (:func:`mllm_ood.formats.prompts.paper_a_prompt`, the whole dataset's
choice list) with "Given the image" -> "Given the image above" and "in this image" -> "in the image above".
Each demonstration is its image, then the question followed by the format template filled with the
demonstration's class (``Answer Choice: dog``, the brackets replaced too) and three newlines; the query is
its image, then the question and "Do not response with I'm sorry. Just pick a choice." -- all in one user
message (``paper_a``). For chat templates that render a message's images before its text (LLaVA-1.5's and
LLaVA-NeXT's), the same texts go into turns (``paper_a_turns``): per demonstration a user turn (image and
question) and an assistant turn (the filled template), then the query's user turn.

(Paper A's demonstrations are fixed per dataset -- the images of its ``<dataset>_ICE`` folders, taken
alternately from the start and the end of the folder listing, i.e. alternating class; which images those
were is not public. :mod:`mllm_ood.paper_a.icl.studies` draws them once per condition from a seed.)"""

from __future__ import annotations

from collections.abc import Sequence

from ..validation import ParameterError, check_choice
from .chat import IMAGE_PLACEHOLDER, Chat
from .prompts import paper_a_prompt

# compact: the embedded model's layout (formats.episodes); paper_a: paper A's one message, or turns for
# templates that place a message's images first; paper_a_turns: turns whatever the template.
LAYOUTS = ("compact", "paper_a", "paper_a_turns")
ANSWER_TEMPLATE = ("---BEGIN FORMAT TEMPLATE---\n"
                   "        Answer Choice: [Your Answer Choice Here]\n"
                   "        ---END FORMAT TEMPLATE---")
QUERY_SUFFIX = "Do not response with I'm sorry. Just pick a choice.\n"


def icl_question(class_names: Sequence[str]) -> str:
    """Paper A's ICL question: its zero-shot prompt, pointing at 'the image above'."""
    return (paper_a_prompt(class_names).replace("Given the image", "Given the image above")
            .replace("in this image", "in the image above"))


def demo_answer(label: str) -> str:
    """The format template filled with a demonstration's class, as paper A fills it."""
    return ANSWER_TEMPLATE.replace("[Your Answer Choice Here]", label)


def paper_a_icl_prompt(demo_words: Sequence[str], choices: Sequence[str], turns: bool = False):
    """The episode's text in paper A's layout (see the module docstring): one message (a string with one
    ``<image>`` per image), or, with ``turns``, a :class:`~mllm_ood.formats.chat.Chat` of user / assistant turns."""
    if not choices:
        raise ParameterError("the choice list of an episode is empty")
    qs = icl_question(list(choices))
    query = IMAGE_PLACEHOLDER + qs + QUERY_SUFFIX
    if not turns:
        return "".join(IMAGE_PLACEHOLDER + qs + demo_answer(w) + "\n\n\n" for w in demo_words) + query
    pairs = [t for w in demo_words for t in (("user", IMAGE_PLACEHOLDER + qs), ("assistant", demo_answer(w)))]
    return Chat(tuple(pairs) + (("user", query),))


def resolve_layout(model, layout: str) -> str:
    """The layout a model gets: 'paper_a' becomes 'paper_a_turns' for a model whose chat template renders a
    message's images before its text (``model.interleaves_images`` False)."""
    check_choice("ICL layout", layout, LAYOUTS)
    if layout == "paper_a" and not getattr(model, "interleaves_images", True):
        return "paper_a_turns"
    return layout
