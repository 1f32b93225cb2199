"""Parameter checks run before any compute: one clear error naming the bad value and the allowed ones."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class ParameterError(ValueError):
    """A public entry point was called with a value it cannot use."""


def check_choice(what: str, value, allowed: Iterable) -> None:
    """Raise ParameterError unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ParameterError(f"unknown {what} {value!r}; allowed: {', '.join(map(repr, allowed))}")


def check_choices(what: str, values: Iterable, allowed: Iterable) -> None:
    """Raise ParameterError naming the first of ``values`` that is not in ``allowed``."""
    allowed = list(allowed)
    for v in values:
        check_choice(what, v, allowed)


def check_positive_int(what: str, value, *, allow_zero: bool = False, allow_none: bool = False) -> None:
    """Raise ParameterError unless ``value`` is an int > 0 (or >= 0, or None when allowed)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{what} must be an integer {bound}, got {value!r}")


def check_probability(what: str, value) -> None:
    """Raise ParameterError unless 0 <= value <= 1."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ParameterError(f"{what} must be a number in [0, 1], got {value!r}")


def check_file(what: str, path) -> Path:
    """Raise ParameterError unless ``path`` names an existing file; return it as a Path."""
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"{what}: no such file {str(p)!r}")
    return p
