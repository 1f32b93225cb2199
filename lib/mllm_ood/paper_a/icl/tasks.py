"""Paper A's in-context-learning tasks and their image pools.

A task names a dataset, the domain its queries come from, the domain its "shifted" demonstrations come
from, and its classes (:class:`Task`; the embedded profile's :data:`TASKS`); :class:`IclData` holds the
decoded image pools per (dataset, domain); :func:`validate` checks the notebook's ICL parameters before
anything is loaded. The studies built on them are in :mod:`.studies`, their evaluation in
:mod:`.evaluation`. The protocol (paper A's ICL sections) is described in :mod:`mllm_ood.paper_a.icl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ...data import catalog, world
from ...data.ids import source_of
from ...seeding import rng
from ...validation import ParameterError, check_choice, check_choices, check_positive_int
from ...formats.episodes import MODES

SOURCES = ("in_domain", "shifted")
SCORINGS = ("loglik", "generate")
QUERY_COLOURS = ("flipped", "aligned")
# Where the spurious study's grey digits come from: held-out upright MNIST (eval split).
GREY_SOURCE = ("digit_styles", "mnist")
# Bumped whenever a change alters what an ICL cache entry contains (part of every ICL cache key).
# 2: reassigned words are listed in a random order (was: class order, which leaked the class at 0 shots).
# 3: 0-shot episodes ask the plain zero-shot prompt (was: the episode instruction with no examples).
ICL_VERSION = 3
RESULT_COLUMNS = ["study", "task", "dataset", "query_domain", "demo_domain", "source", "n_way", "shots", "mode",
                  "scoring", "seed", "level", "query_colour", "query", "query_id", "label", "pred", "correct",
                  "parsed", "majority", "pred_majority", "demo_labels", "tie_actual"]


@dataclass(frozen=True)
class Task:
    """One ICL task: queries from (dataset, query_domain) among ``classes`` (names or indices);
    ``shift_domain`` is where the ``shifted`` demonstrations come from."""

    name: str
    dataset: str
    query_domain: str
    shift_domain: str
    classes: tuple
    description: str = ""

    @property
    def n_way(self) -> int:
        return len(self.classes)

    def spec(self) -> dict:
        """JSON-serialisable form (cache keys, tables)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _task(name, dataset, q, s, classes, description):
    return Task(name, dataset, q, s, tuple(classes), description)


# The embedded profile's tasks: binary tasks are a fixed pair of classes per task (different pairs, so
# that no single pair dominates the picture); multi-class tasks are 3-way (the embedded model was
# trained on 2- and 3-way episodes). Each task names the domain its "shifted" demonstrations come from.
TASKS: dict[str, Task] = {t.name: t for t in [
    _task("rotated_60", "rotated_mnist", "60", "0", ["two", "seven"],
          "2 vs 7 rotated by 60 degrees; shifted demos upright (ID MNIST)"),
    _task("coloured_flipped", "colored_mnist", "-90", "+90", ["one", "seven"],
          "1 vs 7 with the colour tie flipped (-90); shifted demos from +90 (tie intact)"),
    _task("printed", "digit_styles", "printed", "mnist", ["three", "five"],
          "3 vs 5 in printed fonts; shifted demos handwritten (ID MNIST)"),
    _task("textured", "digit_styles", "textured", "mnist", ["four", "nine"],
          "4 vs 9 over photo textures; shifted demos handwritten (ID MNIST)"),
    _task("molecules_large", "molecules_size", "large", "small", ["low solubility", "medium solubility"],
          "large molecules, low vs medium solubility; shifted demos small molecules"),
    _task("rotated_45_3way", "rotated_mnist", "45", "0", ["one", "five", "eight"],
          "1 vs 5 vs 8 rotated by 45 degrees (3-way); shifted demos upright"),
    _task("molecules_small_3way", "molecules_size", "small", "medium",
          ["low solubility", "medium solubility", "high solubility"],
          "small molecules, 3 solubility classes; shifted demos medium-size molecules"),
]}
SPURIOUS_PAIRS = (("one", "seven"), ("three", "eight"))
# Notebook 00's held-out in-context curves: the ten classes of the held-out upright MNIST digits (the
# spurious study's grey source), n of them per episode (study 'drawn_classes'); its demonstrations are
# in-domain, so the shift domain is never used.
HELD_OUT_DIGITS = Task("held_out_digits", *GREY_SOURCE, "printed", tuple(world.DATASETS[GREY_SOURCE[0]].class_names),
                       "held-out upright MNIST digits, all ten classes; n of them drawn per episode")


# --------------------------------------------------------------------------------------------
# Parameters: checked before anything is loaded
# --------------------------------------------------------------------------------------------

def resolve_task(task) -> Task:
    """A Task from a registry name (:data:`TASKS`), a Task, or a dict with the Task's fields."""
    if isinstance(task, Task):
        t = task
    elif isinstance(task, str):
        check_choice("ICL task", task, TASKS)
        t = TASKS[task]
    elif isinstance(task, dict):
        need = {"name", "dataset", "query_domain", "shift_domain", "classes"}
        missing = need - set(task)
        extra = set(task) - need - {"description"}
        if missing or extra:
            raise ParameterError(f"task spec {task!r}: missing {sorted(missing)}, unknown {sorted(extra)}; "
                                 f"a task needs {sorted(need)} (+ optional description)")
        if isinstance(task["classes"], str) or not isinstance(task["classes"], (list, tuple)):
            raise ParameterError(f"task {task['name']!r}: classes must be a list of class names or indices")
        t = Task(str(task["name"]), task["dataset"], str(task["query_domain"]), str(task["shift_domain"]),
                 tuple(task["classes"]), task.get("description", ""))
    else:
        raise ParameterError(f"a task is a name ({', '.join(TASKS)}) or a dict, got {type(task).__name__}")
    catalog.validate_names([t.dataset])
    if len(t.classes) < 2 or len(set(t.classes)) != len(t.classes):
        raise ParameterError(f"task {t.name!r}: classes must be at least 2 distinct entries, got {list(t.classes)}")
    if t.query_domain == t.shift_domain:
        raise ParameterError(f"task {t.name!r}: the shifted demonstrations need another domain than the query's")
    if t.dataset in world.DATASETS:  # embedded datasets can be checked without loading anything
        info = world.DATASETS[t.dataset]
        check_choices(f"domain of {t.dataset}", [t.query_domain, t.shift_domain], info.domains)
        for c in t.classes:
            class_index(c, info.class_names, t.name)
    return t


def class_index(c, names: Sequence[str], task_name: str) -> int:
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        if not 0 <= int(c) < len(names):
            raise ParameterError(f"task {task_name!r}: class index {c} out of range for {len(names)} classes")
        return int(c)
    if c not in names:
        raise ParameterError(f"task {task_name!r}: unknown class {c!r}; allowed: {', '.join(map(repr, names))}")
    return list(names).index(c)


def exact_count(what: str, fraction: float, shots: int) -> int:
    """``fraction * shots`` as an integer, or a ParameterError when it is not one (the studies realise
    proportions exactly, never in expectation)."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
        raise ParameterError(f"{what} must be a number in [0, 1], got {fraction!r}")
    k = fraction * shots
    if abs(k - round(k)) > 1e-9:
        raise ParameterError(f"{what} {fraction} cannot be realised exactly with {shots} demonstrations "
                             f"({fraction} x {shots} = {k:g} is not a whole number)")
    return int(round(k))


def validate(tasks, shots_list, modes, seeds, n_per_class: int, scoring: str = "loglik",
             label_shift_tasks=(), majority_fractions=(), label_shift_shots: int = 8,
             spurious_pairs=(), tie_strengths=(), spurious_shots: int = 8) -> list[Task]:
    """Check every parameter of the ICL notebook before any model or data is loaded; return the tasks.

    One ParameterError names the first bad value and what is allowed.
    """
    if isinstance(tasks, (str, dict)) or not tasks:
        raise ParameterError(f"tasks must be a non-empty list of task names or specs, got {tasks!r}")
    resolved = [resolve_task(t) for t in tasks]
    names = [t.name for t in resolved]
    if len(set(names)) != len(names):
        raise ParameterError(f"task names must be unique, got {names}")
    if isinstance(shots_list, (int, str)) or not shots_list:
        raise ParameterError(f"shots must be a non-empty list of integers >= 0, got {shots_list!r}")
    for s in shots_list:
        check_positive_int("shots", s, allow_zero=True)
    if isinstance(modes, str) or not modes:
        raise ParameterError(f"label-word modes must be a non-empty list, got {modes!r}")
    check_choices("label-word mode", modes, MODES)
    if isinstance(seeds, int) or not seeds:
        raise ParameterError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    for s in seeds:
        check_positive_int("seed", s, allow_zero=True)
    check_positive_int("queries per class", n_per_class)
    check_choice("scoring", scoring, SCORINGS)
    by_name = {t.name: t for t in resolved}
    if label_shift_tasks:
        check_positive_int("label-shift shots", label_shift_shots)
        check_choices("label-shift task (must be one of the tasks)", label_shift_tasks, by_name)
        for name in label_shift_tasks:
            n_way = by_name[name].n_way
            for f in majority_fractions:
                exact_count("majority fraction", f, label_shift_shots)
                if f < 1 / n_way - 1e-9:
                    raise ParameterError(f"majority fraction {f} is below balance (1/{n_way}) for task {name!r}")
        if not majority_fractions:
            raise ParameterError("label-shift tasks given but no majority fractions")
    if spurious_pairs:
        check_positive_int("spurious-study shots", spurious_shots, allow_zero=True)
        names10 = world.DATASETS[GREY_SOURCE[0]].class_names
        for pair in spurious_pairs:
            if isinstance(pair, str) or len(pair) != 2:
                raise ParameterError(f"a spurious pair is two classes, got {pair!r}")
            a, b = (class_index(c, names10, "spurious") for c in pair)
            if (a < 5) == (b < 5):
                raise ParameterError(f"spurious pair {list(pair)}: one class must be 0-4 (home colour red) and "
                                     "one 5-9 (green), so that colour can stand in for the label")
        if not tie_strengths:
            raise ParameterError("spurious pairs given but no tie strengths")
        for t in tie_strengths:
            exact_count("tie strength", t, spurious_shots)
    return resolved


# --------------------------------------------------------------------------------------------
# Data: decoded image pools per (dataset, domain)
# --------------------------------------------------------------------------------------------


@dataclass
class Pool:
    """The samples of one (dataset, domain), images decoded: images (PIL), labels (n,), ids, sources."""

    dataset: str
    domain: str
    class_names: tuple
    images: list
    labels: np.ndarray
    ids: list
    sources: list = field(default_factory=list)

    def of_class(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.labels == c)


class IclData:
    """Loads (once) and serves the pools the studies draw from."""

    def __init__(self, seed: int = 0, sources: dict | None = None):
        self.seed, self.sources = seed, sources
        self._ds: dict = {}
        self._pools: dict = {}

    def cache_identity(self) -> dict:
        """What an analysis cache keys this data source by (:func:`mllm_ood.cache.content_digest`)."""
        return {"seed": self.seed, "sources": self.sources}

    def dataset(self, name: str):
        if name not in self._ds:
            self._ds[name] = catalog.open_dataset(name, seed=self.seed, sources=self.sources)
        return self._ds[name]

    def pool(self, name: str, domain: str) -> Pool:
        key = (name, domain)
        if key not in self._pools:
            ds, info = self.dataset(name)
            check_choice(f"domain of {name}", domain, info.domains)
            sub = ds.select([i for i, d in enumerate(ds["domain"]) if d == domain])
            ids = [str(i) for i in sub["id"]]
            self._pools[key] = Pool(name, domain, tuple(ds.features["label"].names), list(sub["image"]),
                                    np.asarray(sub["label"]), ids, [source_of(i) for i in ids])
        return self._pools[key]

    def class_indices(self, task: Task) -> list[int]:
        _, info = self.dataset(task.dataset)
        return [class_index(c, info.class_names, task.name) for c in task.classes]


def select_queries(pool: Pool, classes: Sequence[int], n_per_class: int, query_seed: int, key: str) -> list[int]:
    """``n_per_class`` seeded query indices per class, interleaved so that query ``e`` is of class
    ``classes[e % n_way]``. Raises ParameterError when a class has too few samples."""
    r = rng(query_seed, "icl-queries", key)
    per = []
    for c in classes:
        idx = pool.of_class(c)
        if len(idx) < n_per_class + 1:  # +1: the class must also offer demonstrations besides the query
            raise ParameterError(f"{pool.dataset}/{pool.domain}: class {pool.class_names[c]!r} has {len(idx)} "
                                 f"samples; {n_per_class} queries per class need at least {n_per_class + 1}")
        per.append(r.choice(idx, n_per_class, replace=False))
    return [int(per[j][i]) for i in range(n_per_class) for j in range(len(classes))]


def draw_demos(pool: Pool, counts: dict[int, int], exclude_source: str, r: np.random.Generator) -> list[int]:
    """Indices of ``counts[c]`` demonstrations of each class c from ``pool``, none sharing the query's
    source image, in a random order."""
    out: list[int] = []
    for c, k in counts.items():
        if k == 0:
            continue
        cand = [int(i) for i in pool.of_class(c) if pool.sources[i] != exclude_source]
        if len(cand) < k:
            raise ParameterError(f"{pool.dataset}/{pool.domain}: only {len(cand)} demonstrations of class "
                                 f"{pool.class_names[c]!r} available, {k} needed")
        out.extend(r.choice(cand, int(k), replace=False).tolist())
    return [out[i] for i in r.permutation(len(out))]


def choice_order(classes: Sequence[int], mode: str, r: np.random.Generator) -> list[int]:
    """The classes in choice-list order: the task's order for true names (paper A lists the class names
    in a fixed order); a fresh random order for reassigned words, since in class order the list itself
    would tell which made-up word belongs to the lower and which to the higher class (a 0-shot leak)."""
    if mode == "fixed":
        return list(classes)
    return [int(classes[j]) for j in r.permutation(len(classes))]
