"""The ICL studies: a condition is one (study, task, shots, mode, seed, ...) point; a study is a small class
(:class:`Study` and its subclasses) that decides an episode's classes, the demonstration counts and pool,
and how demonstrations and query are shown; every episode of every study comes from one builder,
:func:`build_condition_episodes`. The conditions of notebook 03's three studies are listed by
:func:`shots_conditions`, :func:`label_shift_conditions` and :func:`spurious_conditions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ...data import world
from ...data.shifts import colourise
from ...seeding import rng
from ...validation import ParameterError, check_choice, check_positive_int
from ...formats.episodes import Episode, MODES, balanced_counts, label_words, make_episode
from ...formats.paper_a_icl import LAYOUTS
from .tasks import (GREY_SOURCE, QUERY_COLOURS, SOURCES, IclData, Pool, Task, choice_order, class_index, draw_demos,
                    exact_count, select_queries)

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
    layout: str = "compact"  # formats.paper_a_icl.LAYOUTS (resolved: 'paper_a' or 'paper_a_turns' for paper A's)

    def params(self) -> dict:
        """JSON form (cache keys); ``n_way`` only when set and ``layout`` only when not 'compact', so that
        conditions made before them keep the keys of their cached results."""
        d = asdict(self)
        d["task"] = self.task.spec()
        if self.n_way is None:
            del d["n_way"]
        if self.layout == "compact":
            del d["layout"]
        return d


def spurious_task(pair) -> Task:
    """The Task behind one spurious pair: grey held-out MNIST digits of the two classes, coloured here."""
    names = world.DATASETS[GREY_SOURCE[0]].class_names
    a, b = (names[class_index(c, names, "spurious")] for c in pair)
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
    check_choice("ICL layout", cond.layout, LAYOUTS)
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
    paper = cond.layout != "compact"
    fixed = (fixed_demos(dpool, classes, cond.shots, {qpool.sources[qi] for qi in queries},
                         rng(cond.seed, "icl-paper-a-demos", task.name, cond.source))
             if paper and study.name == "shots" else None)
    episodes, extras = [], []
    for e, qi in enumerate(queries):
        qc = int(qpool.labels[qi])
        cls = study.episode_classes(cond, classes, qc, r)
        words = label_words(cls, qpool.class_names, cond.mode, r)
        order = choice_order(cls, cond.mode, r)
        if paper:  # paper A: the whole dataset's choice list; the task's classes in their (drawn) order in their slots
            slots = iter(order)
            order = [next(slots) if c in cls else c for c in range(len(qpool.class_names))]
            words = {c: words.get(c, qpool.class_names[c]) for c in order}
        extra = {"majority": -1, "tie_actual": float("nan"), "demo_domain": demo_domain}
        demos = fixed if fixed is not None else draw_demos(dpool, study.counts(cond, cls, e, r, extra),
                                                           qpool.sources[qi], r)
        demo = ([dpool.images[i] for i in demos], [int(dpool.labels[i]) for i in demos], [dpool.ids[i] for i in demos])
        (demo_images, demo_labels, demo_ids), (query_image, qc, query_id) = study.dress(
            cond, cls, demo, (qpool.images[qi], qc, qpool.ids[qi]), r, extra)
        episodes.append(make_episode(demo_images, demo_labels, demo_ids, query_image, qc, query_id, order,
                                     words, cond.mode, cond.layout))
        extras.append(extra | {"query": e})
    return episodes, extras


def fixed_demos(pool: Pool, classes: Sequence[int], shots: int, exclude_sources: set,
                r: np.random.Generator) -> list[int]:
    """Paper A's demonstrations: one set per condition, shared by every query, alternating class (round robin
    over ``classes``), none sharing a query's source image. Each class's candidates are shuffled by ``r`` alone
    (not by ``shots``), so the demonstrations of fewer shots are the first of more, as paper A's are."""
    per = {}
    need = -(-shots // len(classes)) if shots else 0
    for c in classes:
        cand = [int(i) for i in pool.of_class(c) if pool.sources[i] not in exclude_sources]
        if len(cand) < need:
            raise ParameterError(f"{pool.dataset}/{pool.domain}: only {len(cand)} demonstrations of class "
                                 f"{pool.class_names[c]!r} outside the queries, {need} needed")
        per[c] = [cand[j] for j in r.permutation(len(cand))]
    return [per[classes[k % len(classes)]][k // len(classes)] for k in range(shots)]


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


def shots_conditions(tasks, shots_list, modes, seeds, n_per_class: int, scoring: str = "loglik",
                     query_seed: int = 0, layout: str = "compact") -> list[Condition]:
    """The shots-curve grid: every task x mode x seed x shots, in-domain and shifted demonstrations
    (0 shots once: without demonstrations the source does not matter)."""
    out = []
    for t in tasks:
        for mode in modes:
            for seed in seeds:
                for s in shots_list:
                    for src in (["in_domain"] if s == 0 else list(SOURCES)):
                        out.append(Condition("shots", t, int(s), mode, int(seed), n_per_class, src,
                                             query_seed=query_seed, scoring=scoring, layout=layout))
    return out


def label_shift_conditions(tasks, fractions, shots: int, modes, seeds, n_per_class: int, scoring: str = "loglik",
                           query_seed: int = 0, layout: str = "compact") -> list[Condition]:
    """The label-shift grid: task x mode x seed x majority fraction, in-domain demonstrations."""
    return [Condition("label_shift", t, shots, mode, int(seed), n_per_class, "in_domain", float(f),
                      query_seed=query_seed, scoring=scoring, layout=layout)
            for t in tasks for mode in modes for seed in seeds for f in fractions]


def spurious_conditions(pairs, ties, shots: int, modes, seeds, n_per_class: int, scoring: str = "loglik",
                        query_seed: int = 0, colours=QUERY_COLOURS, layout: str = "compact") -> list[Condition]:
    """The spurious-correlation grid: pair x mode x seed x tie strength x query colouring (+ 0 shots)."""
    out = []
    for pair in pairs:
        t = spurious_task(pair)
        for mode in modes:
            for seed in seeds:
                for col in colours:
                    out.append(Condition("spurious", t, 0, mode, int(seed), n_per_class, "in_domain", 0.0, col,
                                         query_seed=query_seed, scoring=scoring, layout=layout))
                    out += [Condition("spurious", t, shots, mode, int(seed), n_per_class, "in_domain", float(tie),
                                      col, query_seed=query_seed, scoring=scoring, layout=layout) for tie in ties]
    return out
