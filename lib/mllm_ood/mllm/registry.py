"""The model families by ``model_type``: each family class registers the transformers model types it
serves (``@register("llava")``); :func:`family_class` picks the class a loaded model gets. A model type no
family claims gets the ``generic`` class (:class:`mllm_ood.mllm.hf.HFModel`)."""

from __future__ import annotations

FAMILIES: dict[str, type] = {}


def register(*model_types: str):
    """Class decorator: the family serves these ``model_type`` values (each at most once)."""
    def add(cls):
        for t in model_types:
            if t in FAMILIES and FAMILIES[t] is not cls:
                raise RuntimeError(f"model type {t!r} is registered twice ({FAMILIES[t].__name__}, {cls.__name__})")
            FAMILIES[t] = cls
        cls.model_types = tuple(model_types)
        return cls
    return add


def family_class(model_type: str | None) -> type:
    """The family class registered for ``model_type``; the generic class for any other type."""
    return FAMILIES.get(model_type) or FAMILIES["generic"]
