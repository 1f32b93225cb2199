"""How replies are generated, as one setting the notebooks pass down: the cap on new tokens (replies run
until the model stops, or this cap), the temperature (0 = greedy, the reproducible default; paper A's
harness sampled at 0.2), the seed of the sampling, and the system prompt ('none', or 'card': the one the
family's model card / its authors' conversation template uses, :attr:`mllm_ood.mllm.hf.HFModel.card_system_prompt`).

Paper A's harness (its ``module/LLaVA.py``) generates up to 1,024 new tokens under LLaVA's ``vicuna_v1``
conversation template (with its system prompt) at temperature 0.2."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import ParameterError, check_choice
from ..formats.chat import Chat

SYSTEM_PROMPTS = ("none", "card")
PAPER_A_MAX_NEW_TOKENS = 1024
PAPER_A_TEMPERATURE = 0.2


@dataclass(frozen=True)
class Generation:
    """Generation settings (see the module docstring)."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    seed: int = 0
    system_prompt: str = "none"

    def __post_init__(self):
        check(self.max_new_tokens, self.temperature, self.system_prompt)

    def system(self, model) -> str | None:
        """The system prompt ``model`` gets under this setting (None: the chat template's own default)."""
        return getattr(model, "card_system_prompt", None) if self.system_prompt == "card" else None

    def text(self, model, prompt):
        """A conversation's text as sent: ``prompt`` (a string or a Chat) with the system prompt, if any."""
        system = self.system(model)
        if system is None:
            return prompt
        turns = prompt.turns if isinstance(prompt, Chat) else (("user", prompt),)
        return Chat(turns, system=system)

    def key(self) -> dict:
        """What keys cached replies beyond the prompt: the cap always; the rest only when not the defaults
        (greedy, no system prompt), so results cached before these settings existed keep their keys."""
        out = {"max_new_tokens": self.max_new_tokens}
        if self.temperature > 0:
            out |= {"temperature": self.temperature, "generation_seed": self.seed}
        if self.system_prompt != "none":
            out["system_prompt"] = self.system_prompt
        return out

    def generate(self, model, convs: list, batch_size: int) -> list[str]:
        """Replies to ``convs`` (their texts already through :meth:`text`)."""
        sampling = {"temperature": self.temperature, "seed": self.seed} if self.temperature > 0 else {}
        return model.generate(convs, max_new_tokens=self.max_new_tokens, batch_size=batch_size, **sampling)


def check(max_new_tokens, temperature, system_prompt) -> None:
    """The notebook parameters MAX_NEW_TOKENS, TEMPERATURE and SYSTEM_PROMPT, before anything loads."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 32768:
        raise ParameterError(f"max_new_tokens must be an integer in [1, 32768], got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 5:
        raise ParameterError(f"temperature must be a number in [0, 5] (0 = greedy), got {temperature!r}")
    check_choice("system prompt", system_prompt, SYSTEM_PROMPTS)
