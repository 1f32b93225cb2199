"""Paper A's own dataset lists (``resources/paper_a_datasets.json``: its code's ``data/dataset_info.json`` and
``data/dataset_info_linear.json``, copied with their provenance) for the hub datasets this project loads:
the class order of its prompts' choice lists (which is also the order its parser searches, so it decides
what a reply like ``Answer Choice: [baseball_bat]`` is read as), its evaluated domains, and its linear
probe's class pairs."""

from __future__ import annotations

import json
from functools import lru_cache

from ..paths import RESOURCES
from ..validation import ParameterError

RESOURCE = "paper_a_datasets.json"


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads((RESOURCES / RESOURCE).read_text())


def provenance() -> dict:
    """Where the lists come from (repository, commit, files, licence)."""
    return dict(_table()["_provenance"])


def entry(spec_name: str) -> dict | None:
    """Paper A's dataset_info.json entry for hub spec ``spec_name`` (paper_a_name, domains, class_names), or None."""
    return _table()["datasets"].get(spec_name)


def linear_entry(spec_name: str) -> dict | None:
    """Paper A's dataset_info_linear.json entry (its probe's class pair and domains) for ``spec_name``, or None."""
    return _table()["linear"].get(spec_name)


def class_order(spec_name: str, names) -> list[str]:
    """``names`` (a hub dataset's class names, any order) in paper A's order; ``names`` unchanged for a dataset
    paper A does not list. A name paper A's list lacks is refused (the hub's names and paper A's differ)."""
    e = entry(spec_name)
    names = list(names)
    if e is None:
        return names
    rank = {c: i for i, c in enumerate(e["class_names"])}
    unknown = [c for c in names if c not in rank]
    if unknown:
        raise ParameterError(f"{spec_name}: classes {unknown[:5]} are not in paper A's class list of "
                             f"{e['paper_a_name']} ({RESOURCE}); cannot put the choice list in paper A's order")
    return sorted(names, key=rank.__getitem__)
