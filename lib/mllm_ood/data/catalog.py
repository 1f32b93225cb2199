"""One entry point for every dataset a notebook can name: the embedded world's datasets, or paper-profile
hub datasets written ``hub:<spec>`` (e.g. ``hub:pacs``; optional local mirror via ``sources``)."""

from __future__ import annotations

from pathlib import Path

from ..validation import ParameterError
from . import hub, world
from .world import DatasetInfo

HUB_PREFIX = "hub:"


def known_names() -> list[str]:
    """Every dataset name a notebook may use."""
    return list(world.DATASETS) + [HUB_PREFIX + n for n in hub.SPECS if hub.SPECS[n].label_column]


def validate_names(names) -> None:
    """One clear error for the first unknown dataset name, before any compute."""
    if isinstance(names, str) or not names:
        raise ParameterError(f"datasets must be a non-empty list of names, got {names!r}")
    allowed = known_names()
    for n in names:
        if n not in allowed:
            raise ParameterError(f"unknown dataset {n!r}; allowed: {', '.join(allowed)}")


def open_dataset(name: str, seed: int = 0, sources: dict[str, str] | None = None):
    """(datasets.Dataset, DatasetInfo) for an embedded or ``hub:`` dataset name."""
    validate_names([name])
    if not name.startswith(HUB_PREFIX):
        return world.load(name, seed=seed), world.DATASETS[name]
    spec_name = name[len(HUB_PREFIX):]
    source = (sources or {}).get(name)
    ds = hub.load_hub(spec_name, source=Path(source) if source else None)
    domains = tuple(dict.fromkeys(ds["domain"]))
    info = DatasetInfo(name, domains, tuple(ds.features["label"].names), None, "hub", hub.SPECS[spec_name].note)
    return ds, info
