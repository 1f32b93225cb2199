"""In-context learning (ICL) and its vulnerabilities (paper A's ICL sections), on any model of
:mod:`mllm_ood.models`.

The studies, each a grid of *conditions*; every condition is one cached table of per-query results:

- ``shots``: accuracy against the number of demonstrations (0/1/2/4/8, class-balanced), with the
  demonstrations drawn from the query's own domain (``in_domain``) or from another domain of the same
  dataset (``shifted``, e.g. upright MNIST demonstrations for a 60-degree query, small molecules for a
  large-molecule query) — the *domain shift* vulnerability;
- ``label_shift``: a fixed number of demonstrations whose class proportions go from balanced to all one
  class (``level`` = the majority class's share, realised *exactly*); the majority class alternates over
  queries so that every query class meets it equally often;
- ``spurious``: ColoredMNIST-style demonstrations whose colour is tied to the label (``level`` = the
  exact share of demonstrations painted their class's home colour: red for 0-4, green for 5-9, as in
  :mod:`mllm_ood.data.world`), queried with the tie flipped (``query_colour='flipped'``: the other
  colour) or kept (``'aligned'``, the control);
- ``drawn_classes`` (notebook 00's held-out in-context curves): each episode holds the query's class
  and ``n_way - 1`` other classes of the task drawn afresh per episode, class-balanced demonstrations
  from the query's domain (:func:`episode_curves`).

Every episode of every study comes from one builder, :func:`build_condition_episodes`; a study is a
small class (:class:`Study` and its subclasses) that decides the episode's classes, the demonstration
counts and pool, and how demonstrations and query are shown.

Label words (``mode``, see :mod:`mllm_ood.episodes`): ``fixed`` gives every class its true name in the
task's order (paper A's setting: the model may also use its zero-shot prior); ``reassigned`` draws
made-up words afresh per episode and lists them in a random order, so only the demonstrations can say
which word means what (pure ICL; 0 shots is chance by construction). The notebook reports both.

Scoring (``scoring``): ``loglik`` scores each choice's reply ``Answer Choice: [word]`` by its summed
log-likelihood (nats) under the episode prompt and predicts the most likely one (never unparsed);
``generate`` decodes greedily and applies paper A's ``Answer Choice:`` parser (unparsed = wrong).

Seeds: queries are fixed per task (``query_seed``), so every condition of a task sees the same
queries (paired comparisons); demonstrations and reassigned words change with the demonstration
``seed``. A demonstration is never the query nor another rendering of the query's source image (e.g.
the same MNIST digit at another rotation). Accuracy per point = mean over demonstration seeds; its
interval is a percentile bootstrap over queries of each query's seed-averaged correctness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from .progress import tqdm

from .cache import cached_analysis, cached_table
from .data import catalog, world
from .data.shifts import colourise
from .episodes import MODES, Episode, balanced_counts, label_words, make_episode
from .models import fingerprint_of
from .stats import bootstrap_ci, claim_verdict, paired_effect, percent_interval, points_interval
from .features import domain_features
from .probes import learning_curve, probe_accuracy
from .prompts import format_answer, parse_answer
from .seeding import derive_seed, rng
from .validation import ParameterError, check_choice, check_choices, check_positive_int

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
            _class_index(c, info.class_names, t.name)
    return t


def _class_index(c, names: Sequence[str], task_name: str) -> int:
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
            a, b = (_class_index(c, names10, "spurious") for c in pair)
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

_SOURCE_RE = re.compile(r"^(mnist-\d+)(-.+)?$")


def source_id(sample_id: str) -> str:
    """The source image behind a sample id: every MNIST-derived rendering of one digit (rotated,
    coloured, textured, corrupted) shares its ``mnist-NNNNN``; other ids are their own source."""
    m = _SOURCE_RE.match(str(sample_id))
    return m.group(1) if m else str(sample_id)


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
                                    np.asarray(sub["label"]), ids, [source_id(i) for i in ids])
        return self._pools[key]

    def class_indices(self, task: Task) -> list[int]:
        _, info = self.dataset(task.dataset)
        return [_class_index(c, info.class_names, task.name) for c in task.classes]


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


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """One cell of a study's grid (see module docstring). ``level``: the majority share (label_shift),
    the tie strength (spurious), unused (None) otherwise. ``n_way``: the classes per episode of the
    drawn_classes study, None (the task's classes) for the others."""

    study: str
    task: Task
    shots: int
    mode: str
    seed: int
    n_per_class: int
    source: str = "in_domain"
    level: float | None = None
    query_colour: str | None = None
    query_seed: int = 0
    scoring: str = "loglik"
    max_new_tokens: int = 12
    n_way: int | None = None

    def params(self) -> dict:
        """JSON form (cache keys); ``n_way`` only when set, so that a condition on the task's own classes
        keeps the key of its cached results."""
        d = asdict(self)
        d["task"] = self.task.spec()
        if self.n_way is None:
            del d["n_way"]
        return d


def spurious_task(pair) -> Task:
    """The Task behind one spurious pair: grey held-out MNIST digits of the two classes, coloured here."""
    names = world.DATASETS[GREY_SOURCE[0]].class_names
    a, b = (names[_class_index(c, names, "spurious")] for c in pair)
    return Task(f"coloured_{a}_vs_{b}", GREY_SOURCE[0], GREY_SOURCE[1], "coloured", (a, b),
                f"{a} vs {b}, colour tied to the label in the demonstrations")


def home_colour(label: int) -> str:
    """ColoredMNIST's home colour of a digit: red for 0-4, green for 5-9."""
    return "red" if int(label) < 5 else "green"


def paint(image, colour: str):
    """A grey PIL digit painted 'red' or 'green' with ColoredMNIST's colouring (strokes coloured, background black)."""
    from PIL import Image

    return Image.fromarray(colourise(np.asarray(image.convert("L")), colour))


class Study:
    """How a study shapes the episodes of a condition: the shots study's rule, which the others refine.
    Every episode holds the task's classes; demonstrations come from the query's domain (``source``
    'in_domain') or the task's other domain ('shifted'), class-balanced, and are shown as they are."""

    name = "shots"

    def check(self, cond: Condition) -> None:
        """Refuse (ParameterError) a condition this study cannot build, before anything is drawn."""
        if cond.n_way is not None:
            raise ParameterError(f"the {self.name} study uses the task's classes; n_way={cond.n_way} is for the "
                                 "drawn_classes study")

    def episode_classes(self, cond: Condition, classes: list[int], qc: int, r: np.random.Generator) -> list[int]:
        """The classes of one episode (choice list, label words, demonstrations), in the task's order;
        ``qc`` is the query's class."""
        return classes

    def demo_pool(self, cond: Condition, data: IclData, qpool: Pool) -> tuple[Pool, str]:
        """(where the demonstrations come from, that domain's name)."""
        task = cond.task
        if cond.source == "shifted":
            return data.pool(task.dataset, task.shift_domain), task.shift_domain
        return qpool, task.query_domain

    def counts(self, cond: Condition, classes: list[int], e: int, r: np.random.Generator, extra: dict) -> dict:
        """Demonstrations per class for episode ``e``."""
        return dict(zip(classes, balanced_counts(cond.shots, len(classes), r).tolist()))

    def dress(self, cond: Condition, classes: list[int], demo: list, query: tuple, r: np.random.Generator,
              extra: dict) -> tuple[list, tuple]:
        """The demonstrations (images, labels, ids) and the query (image, label, id) as shown."""
        return demo, query


class LabelShift(Study):
    """Unequal class proportions: the majority class (alternating over queries so that each query class
    meets it equally often) takes exactly ``level`` of the demonstrations, the rest are balanced."""

    name = "label_shift"

    def counts(self, cond, classes, e, r, extra):
        n_way = len(classes)
        major = classes[(e // n_way) % n_way]
        m = exact_count("majority fraction", cond.level, cond.shots)
        others = [c for c in classes if c != major]
        rest = balanced_counts(cond.shots - m, len(others), r)
        extra["majority"] = int(major)
        return {major: m, **{c: int(k) for c, k in zip(others, rest)}}


class Spurious(Study):
    """Colour tied to the label: grey digits painted so that exactly ``level`` of the demonstrations wear
    their class's home colour; the query painted in the other colour ('flipped') or its own ('aligned')."""

    name = "spurious"

    def demo_pool(self, cond, data, qpool):
        return qpool, "coloured"

    def dress(self, cond, classes, demo, query, r, extra):
        demo_images, demo_labels, demo_ids = demo
        query_image, qc, query_id = query
        # Exactly round(tie * shots) demonstrations wear their class's home colour, spread over the
        # classes as evenly as the counts allow; the rest wear the other colour.
        n_home = exact_count("tie strength", cond.level, cond.shots)
        per_class = {c: [j for j, y in enumerate(demo_labels) if y == c] for c in classes}
        home_counts = balanced_counts(n_home, len(classes), r)
        # move surplus to classes with room (a class cannot have more home demos than demos)
        home_counts = _fit_counts(home_counts, [len(per_class[c]) for c in classes])
        home = set()
        for c, h in zip(classes, home_counts):
            home.update(r.choice(per_class[c], int(h), replace=False).tolist() if h else [])
        colours = [home_colour(y) if j in home else _other(home_colour(y)) for j, y in enumerate(demo_labels)]
        demo_images = [paint(im, col) for im, col in zip(demo_images, colours)]
        demo_ids = [f"{i}-{col}" for i, col in zip(demo_ids, colours)]
        qcol = home_colour(qc) if cond.query_colour == "aligned" else _other(home_colour(qc))
        extra["tie_actual"] = (len(home) / len(demo_labels)) if demo_labels else float("nan")
        return (demo_images, demo_labels, demo_ids), (paint(query_image, qcol), qc, f"{query_id}-{qcol}")


class DrawnClasses(Study):
    """Classes drawn afresh per episode: the query's class and ``n_way - 1`` others drawn at random from
    the task's classes (notebook 00's held-out curves). The queries still cycle through all the task's
    classes, so every class is queried equally often and each appears in an episode as often as chance
    lets it."""

    name = "drawn_classes"

    def check(self, cond):
        check_positive_int("n_way", cond.n_way)
        if not 2 <= cond.n_way <= cond.task.n_way:
            raise ParameterError(f"n_way={cond.n_way}: an episode needs 2 to {cond.task.n_way} classes of task "
                                 f"{cond.task.name!r}")

    def episode_classes(self, cond, classes, qc, r):
        drawn = r.choice([c for c in classes if c != qc], cond.n_way - 1, replace=False).tolist()
        return [c for c in classes if c == qc or c in drawn]


STUDIES = {s.name: s for s in (Study(), LabelShift(), Spurious(), DrawnClasses())}


def check_condition(cond: Condition) -> None:
    """Refuse (ParameterError) a condition that cannot be built, before any data or model is touched."""
    check_choice("study", cond.study, list(STUDIES))
    check_positive_int("shots", cond.shots, allow_zero=True)
    check_choice("label-word mode", cond.mode, MODES)
    check_positive_int("queries per class", cond.n_per_class)
    STUDIES[cond.study].check(cond)


def build_condition_episodes(cond: Condition, data: IclData) -> tuple[list[Episode], list[dict]]:
    """The episodes of one condition and, per episode, the extra result fields (majority, tie, ...): the
    queries are fixed per task (shared by every condition), the label words, choice order, demonstration
    counts and draws come from the condition's seed, and the study (:data:`STUDIES`) decides the episode's
    classes, the counts and how demonstrations and query are shown. Queries cycle through the task's
    classes: query ``e`` is of class ``classes[e % n]``."""
    check_condition(cond)
    study = STUDIES[cond.study]
    task = cond.task
    classes = data.class_indices(task)
    qpool = data.pool(task.dataset, task.query_domain)
    dpool, demo_domain = study.demo_pool(cond, data, qpool)
    queries = select_queries(qpool, classes, cond.n_per_class, cond.query_seed, task.name)
    # The query colouring is not part of the key: flipped and aligned queries meet the same demonstrations.
    # (n_way joins the key only when set, as in Condition.params)
    r = rng(cond.seed, "icl-demos", cond.study, task.name, cond.shots, cond.mode, cond.source, cond.level,
            *([] if cond.n_way is None else [cond.n_way]))
    episodes, extras = [], []
    for e, qi in enumerate(queries):
        qc = int(qpool.labels[qi])
        cls = study.episode_classes(cond, classes, qc, r)
        words = label_words(cls, qpool.class_names, cond.mode, r)
        order = choice_order(cls, cond.mode, r)
        extra = {"majority": -1, "tie_actual": float("nan"), "demo_domain": demo_domain}
        demos = draw_demos(dpool, study.counts(cond, cls, e, r, extra), qpool.sources[qi], r)
        demo = ([dpool.images[i] for i in demos], [int(dpool.labels[i]) for i in demos], [dpool.ids[i] for i in demos])
        (demo_images, demo_labels, demo_ids), (query_image, qc, query_id) = study.dress(
            cond, cls, demo, (qpool.images[qi], qc, qpool.ids[qi]), r, extra)
        episodes.append(make_episode(demo_images, demo_labels, demo_ids, query_image, qc, query_id, order,
                                     words, cond.mode))
        extras.append(extra | {"query": e})
    return episodes, extras


def _other(colour: str) -> str:
    return "green" if colour == "red" else "red"


def _fit_counts(wanted: np.ndarray, room: Sequence[int]) -> np.ndarray:
    """Cap ``wanted[i]`` at ``room[i]`` and hand the surplus to classes with room left (same total)."""
    w = np.minimum(np.asarray(wanted, int), room)
    surplus = int(np.sum(wanted) - w.sum())
    for i in range(len(w)):
        take = min(surplus, room[i] - w[i])
        w[i] += take
        surplus -= take
    if surplus:
        raise ParameterError("more home-coloured demonstrations requested than demonstrations")
    return w


def predict(model, episodes: list[Episode], scoring: str, batch_size: int, max_new_tokens: int = 12):
    """(predicted choice index or -1, parsed flag) per episode, through the shared model interface."""
    convs = [e.conversation for e in episodes]
    if scoring == "loglik":
        scores = model.score_choices(convs, [[format_answer(c) for c in e.choices] for e in episodes],
                                     batch_size=batch_size)
        return [int(i) for i in scores.argmax(1)], [True] * len(episodes)
    replies = model.generate(convs, max_new_tokens=max_new_tokens, batch_size=batch_size)
    preds = [parse_answer(rep, e.choices) for rep, e in zip(replies, episodes)]
    return [-1 if p is None else int(p) for p in preds], [p is not None for p in preds]


def evaluate_condition(model, cond: Condition, data: IclData, batch_size: int = 64,
                       data_seed: int = 0) -> pd.DataFrame:
    """Per-query results (RESULT_COLUMNS) of one condition, cached per (model fingerprint, condition, code
    version)."""
    params = {"model": fingerprint_of(model), "data_seed": data_seed, "icl_version": ICL_VERSION, **cond.params()}

    def build():
        episodes, extras = build_condition_episodes(cond, data)
        preds, parsed = predict(model, episodes, cond.scoring, batch_size, cond.max_new_tokens)
        rows = []
        for ep, ex, p, ok in zip(episodes, extras, preds, parsed):
            word_class = {w: c for c, w in ep.words.items()}
            pred = word_class[ep.choices[p]] if p >= 0 else -1
            rows.append({"study": cond.study, "task": cond.task.name, "dataset": cond.task.dataset,
                         "query_domain": cond.task.query_domain, "demo_domain": ex["demo_domain"],
                         "source": cond.source if cond.shots else "none", "n_way": len(ep.choices),
                         "shots": cond.shots, "mode": cond.mode, "scoring": cond.scoring, "seed": cond.seed,
                         "level": cond.level, "query_colour": cond.query_colour, "query": ex["query"],
                         "query_id": ep.query_id, "label": ep.query_label, "pred": pred,
                         "correct": bool(ok and pred == ep.query_label), "parsed": bool(ok),
                         "majority": ex["majority"], "pred_majority": bool(ex["majority"] >= 0 and pred == ex["majority"]),
                         "demo_labels": ";".join(map(str, ep.demo_labels)), "tie_actual": ex["tie_actual"]})
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    return cached_table("icl", params, build, file="results.csv", keep_default_na=False,
                        na_values={"level": [""], "tie_actual": ["", "nan"]},
                        dtype={"query_domain": str, "demo_domain": str, "query_id": str, "demo_labels": str,
                               "query_colour": str})


@cached_analysis("analysis")
def run_conditions(model, conditions: list[Condition], data: IclData, batch_size: int = 64,
                   desc: str = "ICL conditions") -> pd.DataFrame:
    """Evaluate (or read from the cache) every condition; one table of per-query results."""
    frames = [evaluate_condition(model, c, data, batch_size, data.seed) for c in tqdm(conditions, desc=desc)]
    return pd.concat(frames, ignore_index=True)


def shots_conditions(tasks, shots_list, modes, seeds, n_per_class: int, scoring: str = "loglik",
                     query_seed: int = 0) -> list[Condition]:
    """The shots-curve grid: every task x mode x seed x shots, in-domain and shifted demonstrations
    (0 shots once: without demonstrations the source does not matter)."""
    out = []
    for t in tasks:
        for mode in modes:
            for seed in seeds:
                for s in shots_list:
                    for src in (["in_domain"] if s == 0 else list(SOURCES)):
                        out.append(Condition("shots", t, int(s), mode, int(seed), n_per_class, src,
                                             query_seed=query_seed, scoring=scoring))
    return out


def label_shift_conditions(tasks, fractions, shots: int, modes, seeds, n_per_class: int, scoring: str = "loglik",
                           query_seed: int = 0) -> list[Condition]:
    """The label-shift grid: task x mode x seed x majority fraction, in-domain demonstrations."""
    return [Condition("label_shift", t, shots, mode, int(seed), n_per_class, "in_domain", float(f),
                      query_seed=query_seed, scoring=scoring)
            for t in tasks for mode in modes for seed in seeds for f in fractions]


def spurious_conditions(pairs, ties, shots: int, modes, seeds, n_per_class: int, scoring: str = "loglik",
                        query_seed: int = 0, colours=QUERY_COLOURS) -> list[Condition]:
    """The spurious-correlation grid: pair x mode x seed x tie strength x query colouring (+ 0 shots)."""
    out = []
    for pair in pairs:
        t = spurious_task(pair)
        for mode in modes:
            for seed in seeds:
                for col in colours:
                    out.append(Condition("spurious", t, 0, mode, int(seed), n_per_class, "in_domain", 0.0, col,
                                         query_seed=query_seed, scoring=scoring))
                    out += [Condition("spurious", t, shots, mode, int(seed), n_per_class, "in_domain", float(tie),
                                      col, query_seed=query_seed, scoring=scoring) for tie in ties]
    return out


# --------------------------------------------------------------------------------------------
# Classes drawn per episode on one domain (notebook 00's held-out in-context curves)
# --------------------------------------------------------------------------------------------

EPISODE_COLUMNS = ["n_way", "mode", "shots", "query", "query_id", "label", "pred_loglik", "correct", "pred_generate",
                   "parsed", "correct_generate", "agree"]


def episode_curves(model, data: IclData, task: Task, n_ways: Sequence[int], modes: Sequence[str],
                   shots_list: Sequence[int], n_per_class: int, *, seed: int = 0,
                   generate_modes: Sequence[str] = ("reassigned",), batch_size: int = 32) -> pd.DataFrame:
    """Per-episode results of the ``drawn_classes`` study (:class:`DrawnClasses`) on ``task``, for every
    n_way x mode x shots: ``n_per_class`` queries per class of the task, the same at every point; each
    episode holds the query's class and ``n_way - 1`` others drawn afresh, with class-balanced
    demonstrations from the query's domain (never the query's source image). Each condition is built by
    :func:`build_condition_episodes` and evaluated and cached by :func:`evaluate_condition`, as in
    notebook 03; ``seed`` seeds the queries and the demonstrations.

    Every episode is scored by choice log-likelihood (``pred_loglik``, ``correct``); for ``generate_modes``
    also by greedy generation + paper A's parser (``pred_generate``, -1 = unparsed; ``parsed``;
    ``correct_generate``; ``agree`` = both methods pick the same class), empty for the other modes.
    ``label`` and the predictions are class indices. Columns: :data:`EPISODE_COLUMNS`.
    """
    check_choices("label-word mode", modes, MODES)
    check_choices("generate mode", generate_modes, modes)
    conds = [Condition("drawn_classes", task, s, m, seed, n_per_class, n_way=n, query_seed=seed)
             for n in n_ways for m in modes for s in shots_list]
    for c in conds:  # every bad value is refused before the first condition is computed
        check_condition(c)
    keys = ["n_way", "mode", "shots", "query"]
    out = (run_conditions(model, conds, data, batch_size, desc="episode curves (choice scoring)")
           .rename(columns={"pred": "pred_loglik"})[[*keys, "query_id", "label", "pred_loglik", "correct"]])
    generate = [replace(c, scoring="generate") for c in conds if c.mode in generate_modes]
    if generate:
        gen = run_conditions(model, generate, data, batch_size, desc="episode curves (generation)")
        gen = gen.rename(columns={"pred": "pred_generate", "correct": "correct_generate"})
        out = out.merge(gen[[*keys, "pred_generate", "parsed", "correct_generate"]], on=keys, how="left",
                        validate="one_to_one")
    out = out.reindex(columns=EPISODE_COLUMNS)
    out["agree"] = (out["pred_generate"] == out["pred_loglik"]).where(out["pred_generate"].notna())
    return out


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

def per_query(results: pd.DataFrame, by: Sequence[str], value: str = "correct") -> pd.DataFrame:
    """Each query's ``value`` averaged over demonstration seeds, per group of ``by`` (unit = task x query)."""
    return (results.groupby([*by, "task", "query"], dropna=False, sort=False)[value].mean()
            .rename(value).reset_index())


@cached_analysis("analysis")
def summarise(results: pd.DataFrame, by: Sequence[str], value: str = "correct", n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """Per group of ``by``: mean of ``value`` over seeds (fraction), 95 % bootstrap interval over queries
    (of their seed-averaged value), the sd of the per-seed means, and the numbers of queries and seeds."""
    by = list(by)
    rows = []
    for key, g in results.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        q = g.groupby(["task", "query"])[value].mean().to_numpy(float)
        per_seed = g.groupby("seed")[value].mean()
        lo, hi = bootstrap_ci(q, n_boot=n_boot, seed=derive_seed(seed, *key))
        rows.append(dict(zip(by, key), value=float(per_seed.mean()), ci_low=lo, ci_high=hi,
                         seed_sd=float(per_seed.std(ddof=0)), n_queries=len(q), n_seeds=int(per_seed.size)))
    return pd.DataFrame(rows).rename(columns={"value": "accuracy" if value == "correct" else value})


# --------------------------------------------------------------------------------------------
# Summaries of notebook 03 (paper A's ICL claims)


def domain_shift_table(shots_res: pd.DataFrame, task_names: Sequence[str], modes: Sequence[str], max_shots: int, *,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """At ``max_shots``: accuracy with in-domain demonstrations minus accuracy with shifted ones, on the
    same queries (:func:`paired_effect`), per mode and task and pooled over ``task_names`` ('all tasks')."""
    top = shots_res[shots_res["shots"] == max_shots]
    rows = []
    for mode in modes:
        for name in [*task_names, "all tasks"]:
            sel = top[(top["mode"] == mode) & ((top["task"] == name) | (name == "all tasks"))]
            if max_shots == 0 or not len(sel):
                continue
            eff = paired_effect(sel[sel["source"] == "in_domain"], sel[sel["source"] == "shifted"], n_boot=n_boot,
                                seed=seed)
            rows.append({"mode": mode, "task": name, "shots": max_shots, "in_domain": eff["a"], "shifted": eff["b"],
                         "in_domain_minus_shifted": eff["effect"], "ci_low": eff["ci_low"], "ci_high": eff["ci_high"],
                         "n_queries": eff["n_queries"]})
    return pd.DataFrame(rows)


def shots_overview(shots_tab: pd.DataFrame, tasks: Sequence[Task], modes: Sequence[str], max_shots: int) -> pd.DataFrame:
    """Per task and mode, as text with 95 % intervals: accuracy at 0 shots and at ``max_shots`` with
    in-domain and with shifted demonstrations ('-' where not run), beside chance."""
    rows = []
    for t in tasks:
        for mode in modes:
            g = shots_tab[(shots_tab["task"] == t.name) & (shots_tab["mode"] == mode)]
            row = {"task": t.name, "mode": mode, "chance": f"{1 / t.n_way:.0%}"}
            for label, sel in [("0 shots", g[g["shots"] == 0]),
                               (f"{max_shots} shots, in-domain demos",
                                g[(g["shots"] == max_shots) & (g["source"] == "in_domain")]),
                               (f"{max_shots} shots, shifted demos",
                                g[(g["shots"] == max_shots) & (g["source"] == "shifted")])]:
                row[label] = percent_interval(*sel[["accuracy", "ci_low", "ci_high"]].iloc[0]) if len(sel) else "-"
            rows.append(row)
    return pd.DataFrame(rows)


def claim(name: str, a: pd.DataFrame, b: pd.DataFrame, value: str = "correct", sign: int = 1, *,
          n_boot: int = 1000, seed: int = 0) -> dict:
    """One claim as a row: the paired effect mean(a) - mean(b) (:func:`paired_effect`) in percentage
    points with its interval, both means, the number of queries and the verdict (:func:`claim_verdict`)."""
    eff = paired_effect(a, b, value, n_boot=n_boot, seed=seed)
    return {"claim": name, "effect (pp)": points_interval(eff["effect"], eff["ci_low"], eff["ci_high"], 1),
            "a": f"{eff['a']:.0%}", "b": f"{eff['b']:.0%}",
            "queries": eff["n_queries"], "verdict": claim_verdict(eff, sign)}


def paper_a_claims(shots_res: pd.DataFrame, ls_res: pd.DataFrame, sp_res: pd.DataFrame, modes: Sequence[str],
                   n_ways: Sequence[int], max_shots: int, fractions: Sequence[float], ties: Sequence[float], *,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper A's four ICL claims, each a paired difference on the same queries (:func:`claim`), pooled per
    mode over the tasks of each class count in ``n_ways`` (their chance levels differ): ICL improves OOD
    accuracy; domain-shifted demonstrations help less (and, beside it, the gain with shifted
    demonstrations); label shift hurts (majority share min vs max of ``fractions``); a spurious colour tie
    hurts flipped queries (tie strength min vs max of ``ties``)."""
    lo_f, hi_f, lo_t, hi_t = min(fractions), max(fractions), min(ties), max(ties)
    kw = {"n_boot": n_boot, "seed": seed}
    claims = []
    for mode in modes:
        for n_way in sorted(set(n_ways)):
            res = shots_res[(shots_res["mode"] == mode) & (shots_res["n_way"] == n_way)]
            k = res[(res["shots"] == max_shots) & (res["source"] == "in_domain")]
            if max_shots == 0 or not len(k):
                continue
            tag = f"{mode} words, {n_way}-way tasks"
            zero = res[res["shots"] == 0]
            shifted = res[(res["shots"] == max_shots) & (res["source"] == "shifted")]
            claims.append({"words / tasks": tag, **claim(
                f"ICL improves OOD accuracy (a = {max_shots} in-domain shots, b = 0)", k, zero, **kw)})
            claims.append({"words / tasks": tag, **claim(
                "domain-shifted demos help less (a = in-domain, b = shifted)", k, shifted, **kw)})
            # not a claim of paper A, reported beside it: do shifted demonstrations still help at all?
            claims.append({"words / tasks": tag, **claim(
                f"(gain with shifted demos: a = {max_shots} shifted shots, b = 0)", shifted, zero, **kw)})
        ls = ls_res[ls_res["mode"] == mode]
        if len(ls):
            claims.append({"words / tasks": f"{mode} words, label-shift tasks", **claim(
                f"label shift hurts (a = majority share {lo_f}, b = {hi_f})", ls[ls["level"] == lo_f],
                ls[ls["level"] == hi_f], **kw)})
        fl = sp_res[(sp_res["mode"] == mode) & (sp_res["query_colour"] == "flipped") & (sp_res["shots"] > 0)]
        if len(fl):
            claims.append({"words / tasks": f"{mode} words, spurious pairs", **claim(
                f"a spurious colour tie hurts flipped queries (a = tie {lo_t}, b = tie {hi_t})",
                fl[fl["level"] == lo_t], fl[fl["level"] == hi_t], **kw)})
    return pd.DataFrame(claims)


def gain_by_task(shots_res: pd.DataFrame, task_names: Sequence[str], modes: Sequence[str], max_shots: int, *,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper A's first claim per task and mode: accuracy with ``max_shots`` in-domain demonstrations minus
    accuracy with none, on the same queries (:func:`claim`)."""
    rows = []
    for name in task_names:
        for mode in modes:
            if max_shots <= 0:
                continue
            r = shots_res[(shots_res["task"] == name) & (shots_res["mode"] == mode)]
            rows.append({"task": name, "mode": mode, **claim(
                f"ICL gain ({max_shots} in-domain shots vs 0)",
                r[(r["shots"] == max_shots) & (r["source"] == "in_domain")], r[r["shots"] == 0],
                n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)


@cached_analysis("analysis")
def probe_curves(model, tasks: Sequence[Task], data: IclData, n_per_class: int, per_class_list: Sequence[int], *,
                 seed: int = 0, n_draws: int = 5, n_boot: int = 1000, batch_size: int = 64) -> pd.DataFrame:
    """The vision-feature probe beside ICL, per task: :func:`mllm_ood.probes.learning_curve` on the frozen
    vision features of ``n_per_class`` samples per class of the task's query domain, on the task's classes
    (``probe`` 'same classes', chance 1 / n_way) and, when the domain has more classes, on all of them
    ('all classes'). Columns: those of learning_curve, task, probe, chance."""
    frames = []
    for t in tasks:
        x, y, _ = domain_features(model, t.dataset, t.query_domain, "vision", n_per_class, seed=seed,
                                  batch_size=batch_size)
        keep = np.isin(y, data.class_indices(t))
        frames.append(learning_curve(x[keep], y[keep], per_class_list, seed=seed, n_draws=n_draws, n_boot=n_boot)
                      .assign(task=t.name, probe="same classes", chance=1 / t.n_way))
        if len(np.unique(y)) > t.n_way:  # (when the task uses every class, the line above is this one)
            frames.append(learning_curve(x, y, per_class_list, seed=seed, n_draws=n_draws, n_boot=n_boot)
                          .assign(task=t.name, probe="all classes", chance=1 / len(np.unique(y))))
    return pd.concat(frames, ignore_index=True)


@cached_analysis("analysis")
def colour_probe(model, data: IclData, pairs, n_per_class: int, *, seed: int = 0, n_boot: int = 1000,
                 batch_size: int = 64) -> dict:
    """Can the model see colour? A linear probe (:func:`mllm_ood.probes.probe_accuracy`) on the frozen
    vision features of the first ``n_per_class`` grey digits of each class of the spurious ``pairs``, each
    painted red and painted green, predicting the colour. Returns the probe's result (accuracy, ci_low,
    ci_high, ...) with ``n_images``."""
    grey = data.pool(*GREY_SOURCE)
    pair_classes = sorted({c for p in pairs for c in data.class_indices(spurious_task(p))})
    idx = [int(i) for c in pair_classes for i in grey.of_class(c)[:n_per_class]]
    painted = [paint(grey.images[i], col) for i in idx for col in ("red", "green")]
    colour = np.tile([0, 1], len(idx))
    out = probe_accuracy(model.vision_features(painted, batch_size=batch_size), colour, seed=seed, n_boot=n_boot)
    return {**out, "n_images": len(painted)}
