"""Before any ICL condition runs: does its longest conversation fit the model's context? Counted in the
model's real tokens (its chat template and processor, every image expanded), not estimated."""

from __future__ import annotations

from ...validation import ParameterError
from .studies import Condition, build_condition_episodes
from .tasks import IclData


def check_context(model, conditions: list[Condition], data: IclData, generation=None) -> dict:
    """Refuse (ParameterError, before any compute) a condition whose episodes do not fit ``model``'s context;
    return {(task, layout): (most shots, tokens of its longest episode, limit)}. Checks the condition of most
    shots per (task, study, layout), all its episodes; a model that cannot count its tokens (behind an
    endpoint) is not checked (its server refuses instead)."""
    if not hasattr(model, "prompt_tokens"):
        print(f"{model.name}: context not checked here (the model cannot count its tokens)")
        return {}
    longest: dict = {}
    for c in conditions:
        key = (c.task.name, c.study, c.layout)
        if key not in longest or c.shots > longest[key].shots:
            longest[key] = c
    limit = model.context_limit
    out = {}
    for (task, study, layout), cond in longest.items():
        episodes, _ = build_condition_episodes(cond, data)
        texts = [(e.conversation[0], generation.text(model, e.conversation[1]) if generation else e.conversation[1])
                 for e in episodes]
        tokens = max(model.prompt_tokens(t) for t in texts)
        out[(task, layout)] = (cond.shots, tokens, limit)
        if limit is not None and tokens >= limit:
            raise ParameterError(f"task {task!r} ({study}, layout {layout!r}): {cond.shots} shots take {tokens} tokens, "
                                 f"more than {model.name}'s context of {limit} positions; use fewer shots")
        cap = generation.max_new_tokens if generation else cond.max_new_tokens
        if limit is not None and tokens + cap > limit:
            print(f"task {task!r}, {cond.shots} shots: {tokens} tokens leave {limit - tokens} of the {cap} new tokens "
                  f"allowed (a reply longer than that would run past the context)")
    return out
