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


# --------------------------------------------------------------------------------------------------
# Notebook parameters: every notebook calls ``check_parameters`` in the cell right after its
# parameters cell, so a bad value stops it before any data, model or figure is touched. The rules
# below are small callables ``rule(value)`` that raise ParameterError with a reason;
# ``check_parameters`` prefixes the parameter's name and value.

MAX_PER_CLASS = 1000  # more than any embedded domain holds (about 100 per class); papers use 20 or fewer


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    import math

    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    return f" >= {lo}" if lo is not None else f" <= {hi}" if hi is not None else ""


def integer(min=None, max=None):
    """Rule: an int (not a bool, not a float such as 1e9) within [min, max]."""
    def rule(v):
        if not _is_int(v) or (min is not None and v < min) or (max is not None and v > max):
            raise ParameterError(f"must be an integer{_bounds(min, max)}")
    return rule


def number(min=None, max=None, *, open_interval: bool = False):
    """Rule: a finite int or float within [min, max] (or (min, max) when ``open_interval``)."""
    def rule(v):
        ok = _is_number(v)
        if ok and min is not None:
            ok = v > min if open_interval else v >= min
        if ok and max is not None:
            ok = v < max if open_interval else v <= max
        if not ok:
            span = f" in ({min}, {max})" if open_interval else _bounds(min, max)
            raise ParameterError(f"must be a number{span}")
    return rule


def boolean():
    """Rule: True or False (not 0/1, not the string "yes")."""
    def rule(v):
        if not isinstance(v, bool):
            raise ParameterError("must be True or False")
    return rule


def text(*, choices=None, nonempty: bool = True):
    """Rule: a string, optionally one of ``choices``."""
    allowed = list(choices) if choices is not None else None

    def rule(v):
        if not isinstance(v, str) or (nonempty and not v.strip()):
            raise ParameterError("must be a non-empty string" if nonempty else "must be a string")
        if allowed is not None and v not in allowed:
            raise ParameterError(f"must be one of {', '.join(map(repr, allowed))}")
    return rule


def listing(item=None, *, choices=None, nonempty: bool = True, unique: bool = True, increasing: bool = False):
    """Rule: a list (a YAML sequence, not a string) whose items pass ``item`` or are among ``choices``."""
    allowed = list(choices) if choices is not None else None

    def rule(v):
        if not isinstance(v, (list, tuple)):
            raise ParameterError("must be a list (in YAML: [a, b]), not a " + type(v).__name__)
        if nonempty and not v:
            raise ParameterError("must be a non-empty list")
        for i, x in enumerate(v):
            if allowed is not None and (not isinstance(x, (str, int, float)) or x not in allowed):
                raise ParameterError(f"item {i} ({x!r}) must be one of {', '.join(map(repr, allowed))}")
            if item is not None:
                try:
                    item(x)
                except ParameterError as err:
                    raise ParameterError(f"item {i} ({x!r}) {err}") from None
        if unique and len({repr(x) for x in v}) != len(v):
            raise ParameterError("must not repeat an item")
        if increasing and any(b <= a for a, b in zip(v, v[1:])):
            raise ParameterError("must be strictly increasing")
    return rule


def satisfies(check, what: str):
    """Rule from a library check ``check(value)`` that raises ParameterError (or returns False)."""
    def rule(v):
        try:
            ok = check(v)
        except ParameterError as err:
            raise ParameterError(str(err)) from None
        if ok is False:
            raise ParameterError(f"must be {what}")
    return rule


def check_parameters(namespace: dict, **rules) -> None:
    """Check notebook parameters by name, before any compute: ``check_parameters(globals(), SEED=integer(0))``.

    Every rule is applied to ``namespace[NAME]``; the first failure raises one ParameterError naming
    the parameter, its value and the reason (e.g. ``parameter SAMPLES_PER_DOMAIN = 0: must be an integer
    in [1, 50]``). A rule for a name the namespace does not define is itself an error.
    """
    for name, rule in rules.items():
        if name not in namespace:
            raise ParameterError(f"check_parameters: {name} is not a parameter of this notebook")
        value = namespace[name]
        try:
            rule(value)
        except ParameterError as err:
            raise ParameterError(f"parameter {name} = {value!r}: {err}") from None
    namespace.setdefault("__checked_parameters__", set()).update(rules)


def require(condition: bool, name: str, value, reason: str) -> None:
    """A check across parameters, reported like ``check_parameters``: raise ParameterError naming ``name``."""
    if not condition:
        raise ParameterError(f"parameter {name} = {value!r}: {reason}")


def seed():
    """Rule: a seed numpy and torch both accept, an integer in [0, 2**32 - 1]."""
    return integer(0, 2**32 - 1)


class naming:  # noqa: N801 - used as a lower-case context manager, like contextlib's
    """Report a library check's ParameterError as about the named parameters::

        with naming("LABEL_SHIFT_TASKS", "MAJORITY_FRACTIONS"):
            icl.validate(...)   # -> "parameters LABEL_SHIFT_TASKS, MAJORITY_FRACTIONS (together): ..."
    """

    def __init__(self, *names: str):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and issubclass(kind, ParameterError):
            raise ParameterError(f"parameters {', '.join(self.names)} (together): {err}") from None
        return False
