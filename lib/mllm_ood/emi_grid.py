"""Paper B's scenario grids on the embedded world: queries, the model's responses, references, a judge,
EMI per scenario, EMID against the in-distribution cell, both EMID bounds, and correlations with
bootstrap intervals over scenarios (notebook 04).

Grids (STUDY.md section 1, paper B):

- ``synthetic``: 7 visual conditions of ``corrupted_mnist`` (clean, defocus blur 1/3/5, frost 1/3/5)
  x 5 text conditions (clean, synonym replacement 1/2, keyboard typos 1/2) = 35 scenarios; ID cell
  ``clean x clean``. The corrupted domains hold the *same* eval digits in the same order, so the grid
  is a paired, factorial design.
- ``natural``: the 4 style domains of ``digit_styles`` (mnist, uci, printed, textured) x the 7 question
  languages of paper B = 28 scenarios; ID cell ``mnist x english``.

A query is one image of the visual condition and paper A's multiple-choice prompt whose *question
sentence* carries the text condition: ``apply_text_shift("What is in this image?", condition, seed)``
with a seed derived from the sample's position, so the same position gets the same perturbation in
every visual condition, or the question translated (:func:`mllm_ood.data.text_shifts.question_in`).
The choice list and the ``Answer Choice: [...]`` format instruction stay in English and unperturbed:
they define the answer space, which the reference and the judge rely on. The *reference* response is
what a perfect model following that protocol says: ``Answer Choice: [seven]`` for a seven (paper A's
format, :func:`mllm_ood.prompts.format_answer`); a caption-style reference ("The image shows the digit
seven.") would make every model-vs-reference divergence measure the reply *format* rather than the
content.

Embeddings (paper B's recipe, project embedders): question text and responses with the text embedder
(MiniLM, 384-d, in the embedded profile); images with an image embedder (the MLLM's own vision tower in
the embedded profile), all L2-normalised; x = (z_v + z_t) / 2 needs equal widths, so image embeddings
of another width are mapped by :func:`match_width` (a seeded random isometry; see there why).

Units: MI, EMI, EMID and JSD in nats; W2 in embedding units; judge scores in [0, 1].
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from . import information as info
from .cache import array_digest, cached
from .data import world
from .data.text_shifts import LANGUAGES, TEXT_CONDITIONS, apply_text_shift, question_in
from .prompts import QUESTION, format_answer, parse_answer, zero_shot_prompt
from .seeding import derive_seed, rng
from .validation import ParameterError, check_choice, check_choices, check_positive_int

RESPONSE_COLUMNS = ["grid", "visual", "text", "scenario", "k", "id", "label", "label_name", "question", "prompt",
                    "response", "reference"]
CORRELATION_METHODS = ("pearson", "spearman")
# A scenario needs enough samples for split-half baselines (4) and a CLUB estimate; 10 is the emi
# command's floor too.
MIN_PER_SCENARIO = 10


@dataclass(frozen=True)
class Grid:
    """A scenario grid: visual conditions (dataset domains) x text conditions, with its ID cell."""

    name: str
    dataset: str
    visual: tuple[str, ...]
    text: tuple[str, ...]
    text_kind: str  # "shift" (TEXT_CONDITIONS applied to the question) or "language" (translated question)
    id_visual: str
    id_text: str

    @property
    def id_scenario(self) -> str:
        return scenario_name(self.id_visual, self.id_text)

    def cells(self) -> list[tuple[str, str]]:
        """Every (visual, text) cell, ID cell first, then row-major."""
        rest = [(v, t) for v in self.visual for t in self.text if (v, t) != (self.id_visual, self.id_text)]
        return [(self.id_visual, self.id_text)] + rest

    def subset(self, visual: Sequence[str] | None = None, text: Sequence[str] | None = None) -> "Grid":
        """The same grid restricted to some conditions (e.g. for a smoke run); the ID cell is always kept."""
        vis = list(self.visual) if visual is None else list(visual)
        txt = list(self.text) if text is None else list(text)
        check_choices(f"visual condition of the {self.name} grid", vis, self.visual)
        check_choices(f"text condition of the {self.name} grid", txt, self.text)
        vis = [self.id_visual] + [v for v in vis if v != self.id_visual]
        txt = [self.id_text] + [t for t in txt if t != self.id_text]
        return Grid(self.name, self.dataset, tuple(vis), tuple(txt), self.text_kind, self.id_visual, self.id_text)


GRIDS: dict[str, Grid] = {
    "synthetic": Grid("synthetic", "corrupted_mnist",
                      ("clean", "defocus_blur-1", "defocus_blur-3", "defocus_blur-5", "frost-1", "frost-3", "frost-5"),
                      tuple(TEXT_CONDITIONS), "shift", "clean", "clean"),
    "natural": Grid("natural", "digit_styles", ("mnist", "uci", "printed", "textured"), tuple(LANGUAGES),
                    "language", "mnist", "english"),
}


def scenario_name(visual: str, text: str) -> str:
    """The scenario's label, e.g. ``frost-3 x typo-1``."""
    return f"{visual} x {text}"


def get_grid(name: str) -> Grid:
    check_choice("grid", name, GRIDS)
    return GRIDS[name]


def validate(grids, n_per_class: int, *, n_boot: int = 1000, level: float = 0.95, max_new_tokens: int = 16,
             batch_size: int = 32, wasserstein: str = "exact", image_embedder: str = "model",
             text_embedder: str = "minilm") -> None:
    """Check the notebook's parameters before anything is loaded; one ParameterError names the bad value."""
    if isinstance(grids, str) or not list(grids):
        raise ParameterError(f"grids must be a non-empty list of grid names, got {grids!r}")
    check_choices("grid", grids, GRIDS)
    check_positive_int("samples per class", n_per_class)
    if n_per_class * 10 < MIN_PER_SCENARIO:
        raise ParameterError(f"samples per class must give at least {MIN_PER_SCENARIO} samples per scenario "
                             f"(10 classes), got {n_per_class}")
    check_positive_int("n_boot", n_boot)
    if not isinstance(level, float) or not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1), got {level!r}")
    check_positive_int("max_new_tokens", max_new_tokens)
    check_positive_int("batch_size", batch_size)
    check_choice("wasserstein method", wasserstein, info.WASSERSTEIN_METHODS)
    if not isinstance(image_embedder, str) or not image_embedder:
        raise ParameterError(f"image embedder must be 'model', 'clip' or a model folder / hub id, got {image_embedder!r}")
    if not isinstance(text_embedder, str) or not text_embedder:
        raise ParameterError(f"text embedder must be 'minilm', 'xlm-roberta' or a folder / hub id, got {text_embedder!r}")


# --------------------------------------------------------------------------------------------------
# queries and references


def question(grid: Grid, text_condition: str, k: int, seed: int) -> str:
    """The question sentence of sample position ``k`` under ``text_condition`` (see module docstring)."""
    check_choice(f"text condition of the {grid.name} grid", text_condition, GRIDS[grid.name].text)
    if grid.text_kind == "language":
        return question_in(text_condition)
    return apply_text_shift(QUESTION, text_condition, derive_seed(seed, "emi-question", k))


def reference_answer(class_name: str) -> str:
    """The reference response: what a perfect model following paper A's protocol replies."""
    return format_answer(class_name)


def domain_samples(grid: Grid, visual: str, n_per_class: int, seed: int):
    """The first ``n_per_class`` images per class of ``visual`` (paper A's sampling), a ``datasets.Dataset``
    in a fixed order (by class, then dataset order)."""
    ds = world.load(grid.dataset, [visual], seed=seed)
    return world.sample_per_class(ds, n_per_class, mode="first", seed=seed)


def class_names(grid: Grid) -> list[str]:
    return list(world.DATASETS[grid.dataset].class_names)


def _model_id(model_ref: str) -> str:
    from .embedders import model_fingerprint

    return model_fingerprint(model_ref)


def scenario_responses(model, model_ref: str, grid: Grid, visual: str, text: str, *, n_per_class: int, seed: int,
                       max_new_tokens: int = 16, batch_size: int = 32, samples=None) -> pd.DataFrame:
    """The model's responses for one scenario, cached per (model files, grid, cell, sampling, generation
    settings, code version): a table with RESPONSE_COLUMNS, one row per query.

    ``samples``: a function returning the visual condition's ``datasets.Dataset`` (default
    :func:`domain_samples`), called only on a cache miss. A rerun with the same arguments loads the
    table and never calls ``model.generate``.
    """
    params = {"model": _model_id(model_ref), "grid": grid.name, "dataset": grid.dataset, "visual": visual,
              "text": text, "n_per_class": n_per_class, "seed": seed, "max_new_tokens": max_new_tokens,
              "question": QUESTION, "sampling": "first"}

    def build(tmp: Path) -> None:
        sub = samples() if samples is not None else domain_samples(grid, visual, n_per_class, seed)
        names = class_names(grid)
        labels, ids = [int(y) for y in sub["label"]], list(sub["id"])
        questions = [question(grid, text, k, seed) for k in range(len(sub))]
        prompts = [zero_shot_prompt(names, question=q) for q in questions]
        replies = model.generate([([im], p) for im, p in zip(sub["image"], prompts)], max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)
        rows = [{"grid": grid.name, "visual": visual, "text": text, "scenario": scenario_name(visual, text), "k": k,
                 "id": ids[k], "label": labels[k], "label_name": names[labels[k]], "question": questions[k],
                 "prompt": prompts[k], "response": replies[k], "reference": reference_answer(names[labels[k]])}
                for k in range(len(sub))]
        pd.DataFrame(rows, columns=RESPONSE_COLUMNS).to_json(tmp / "responses.jsonl", orient="records", lines=True,
                                                             force_ascii=False)

    folder = cached("emi_responses", params, build)
    return pd.read_json(folder / "responses.jsonl", orient="records", lines=True, dtype={"id": str, "response": str})


def grid_responses(model, model_ref: str, grid: Grid, *, n_per_class: int, seed: int, max_new_tokens: int = 16,
                   batch_size: int = 32) -> pd.DataFrame:
    """:func:`scenario_responses` for every cell of ``grid`` (ID cell first), concatenated. The images of a
    visual condition are loaded once, and only when one of its cells is not cached yet."""
    frames, loaded = [], {}

    def loader(v):
        def load():
            if v not in loaded:
                loaded[v] = domain_samples(grid, v, n_per_class, seed)
            return loaded[v]
        return load

    for visual, text in tqdm(grid.cells(), desc=f"responses ({grid.name})"):
        frames.append(scenario_responses(model, model_ref, grid, visual, text, n_per_class=n_per_class, seed=seed,
                                         max_new_tokens=max_new_tokens, batch_size=batch_size,
                                         samples=loader(visual)))
    return pd.concat(frames, ignore_index=True)


def grid_images(grid: Grid, responses: pd.DataFrame, *, n_per_class: int, seed: int) -> list:
    """The PIL image of every row of ``responses`` (one grid), in row order."""
    by_visual = {}
    for v in dict.fromkeys(responses["visual"]):
        sub = domain_samples(grid, v, n_per_class, seed)
        by_visual[v] = dict(zip(sub["id"], sub["image"]))
    return [by_visual[v][i] for v, i in zip(responses["visual"], responses["id"])]


# --------------------------------------------------------------------------------------------------
# the judge


class ReferenceJudge:
    """Deterministic reference-based scorer (stands in for paper B's GPT-4 judge).

    ``judge(question, response, reference) -> score in [0, 1]``:

    - 1.0: the reply follows the protocol and its parsed class (paper A's ``Answer Choice:`` parser)
      equals the reference's class;
    - 0.5: the reply does not follow the format, but the first class name it mentions is the right one
      (right content, wrong form);
    - 0.0: otherwise (a wrong class, or no class at all).

    Any callable with this signature can replace it (e.g. an LLM judge in the paper profile); a reference
    scores 1 against itself, so the mean score is also paper B's *relative* score (model / reference).
    """

    def __init__(self, class_names: Sequence[str], format_credit: float = 0.5):
        if not class_names:
            raise ParameterError("the judge needs the class names")
        if not isinstance(format_credit, (int, float)) or not 0 <= format_credit <= 1:
            raise ParameterError(f"format_credit must be in [0, 1], got {format_credit!r}")
        self.class_names = list(class_names)
        self.format_credit = float(format_credit)

    def _first_named(self, text: str) -> int | None:
        best = None
        for idx, name in enumerate(self.class_names):
            hit = re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", text, re.IGNORECASE)
            if hit and (best is None or (hit.start(), -len(name)) < best[0]):
                best = ((hit.start(), -len(name)), idx)
        return None if best is None else best[1]

    def __call__(self, question: str, response: str, reference: str) -> float:
        del question  # this judge needs only the two answers
        want = parse_answer(reference, self.class_names)
        if want is None:
            raise ParameterError(f"the reference {reference!r} names no class in the protocol's format")
        got = parse_answer(response, self.class_names)
        if got is not None:
            return 1.0 if got == want else 0.0
        return self.format_credit if self._first_named(response) == want else 0.0


def judge_scores(responses: pd.DataFrame, judge: Callable[[str, str, str], float]) -> np.ndarray:
    """The judge's score (float, (n,)) of every row of a responses table; each must lie in [0, 1]."""
    scores = np.array([float(judge(q, r, ref)) for q, r, ref in
                       zip(responses["question"], responses["response"], responses["reference"])])
    if len(scores) and (not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1):
        raise ParameterError("judge scores must be finite numbers in [0, 1]")
    return scores


# --------------------------------------------------------------------------------------------------
# embeddings


def random_isometry(d_in: int, d_out: int, seed: int) -> np.ndarray:
    """A seeded random linear map R^d_in -> R^d_out as a (d_out, d_in) float64 matrix.

    d_in <= d_out: orthonormal columns (Q of a Gaussian matrix's QR), an exact isometry: every norm,
    distance and inner product is kept, so the image embeddings' geometry (and their second-moment
    spectrum, hence the representation JSD and W2 of the image term) is unchanged.
    d_in > d_out: orthonormal rows scaled by sqrt(d_in / d_out), a Johnson-Lindenstrauss projection
    that keeps distances approximately.
    """
    check_positive_int("d_in", d_in)
    check_positive_int("d_out", d_out)
    g = rng(seed, "isometry", d_in, d_out).standard_normal((max(d_in, d_out), min(d_in, d_out)))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))  # a unique (Haar-distributed) Q
    return q if d_in <= d_out else q.T * math.sqrt(d_in / d_out)


def match_width(z, width: int, seed: int) -> np.ndarray:
    """Image embeddings z: (n, d) mapped to ``width`` columns with :func:`random_isometry` (identity when
    d == width), then L2-normalised again: (n, width) float32."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ParameterError(f"embeddings must be (n, d), got shape {z.shape}")
    if z.shape[1] == width:
        return info.l2_normalise(z)
    return info.l2_normalise(z @ random_isometry(z.shape[1], width, seed).T)


def model_image_embedder(model, model_ref: str):
    """The embedded profile's image embedder: the MLLM's own frozen vision tower (mean-pooled features the
    projector reads, :meth:`mllm_ood.models.MLLM.vision_features`), cached under the model's fingerprint."""
    from .embedders import ImageEmbedder

    def features(images):
        return model.vision_features(images)

    return ImageEmbedder(features, name=f"vision-tower:{_model_id(model_ref)}")


@dataclass
class GridEmbeddings:
    """Embeddings of one grid's rows (same order as the responses table); all float32, unit rows."""

    z_question: np.ndarray  # (n, d)
    z_image: np.ndarray  # (n, d), width-matched
    z_response: np.ndarray  # (n, d)
    z_reference: np.ndarray  # (n, d)
    image_width: int  # the image embedder's own width before matching
    seconds: float

    @property
    def x(self) -> np.ndarray:
        """Paper B's query embedding (z_v + z_t) / 2, (n, d)."""
        return info.query_embedding(self.z_question, self.z_image)


def embed_grid(responses: pd.DataFrame, images: list, text_embedder, image_embedder, *, seed: int = 0,
               progress: bool = True) -> GridEmbeddings:
    """Embed questions, responses, references (one cached text call) and images (one cached image call)."""
    from .embedders import embed_cached

    if len(images) != len(responses):
        raise ParameterError(f"{len(images)} images for {len(responses)} responses")
    t0 = time.time()
    n = len(responses)
    texts = list(responses["question"]) + list(responses["response"].fillna("")) + list(responses["reference"])
    z = embed_cached(text_embedder, texts, progress=progress)
    zv_raw = embed_cached(image_embedder, images, progress=progress)
    zv = match_width(zv_raw, z.shape[1], derive_seed(seed, "emi-grid", "image-width"))
    return GridEmbeddings(z[:n], zv, z[n:2 * n], z[2 * n:], int(zv_raw.shape[1]), time.time() - t0)


# --------------------------------------------------------------------------------------------------
# EMI, EMID and the bounds per scenario


def pooled_club(emb: GridEmbeddings, spans: dict[str, np.ndarray], *, seed: int, club_kwargs: dict | None = None,
                progress: bool = False):
    """One CLUB trained on the pooled (x, response) and (x, reference) pairs of every scenario (paper B),
    cached by the embeddings' digest and the training settings. Returns (club, seconds, from_cache)."""
    x = emb.x
    kwargs = {"seed": derive_seed(seed, "emi-grid", "club"), "progress": progress, **(club_kwargs or {})}
    params = {"x": array_digest(x), "y_model": array_digest(emb.z_response), "y_reference": array_digest(emb.z_reference),
              "spans": {k: [int(i) for i in v] for k, v in spans.items()},
              "train": {k: v for k, v in kwargs.items() if k != "progress"}}
    from .cache import entry_path, is_valid

    hit = is_valid(entry_path("club", params))
    t0 = time.time()

    def build(folder: Path) -> None:
        info.train_club_pooled([x[s] for s in spans.values()], [emb.z_response[s] for s in spans.values()],
                               [emb.z_reference[s] for s in spans.values()], **kwargs).save(folder)

    club = info.CLUB.load(cached("club", params, build), device="cpu")
    return club, time.time() - t0, hit


def scenario_table(responses: pd.DataFrame, emb: GridEmbeddings, grid: Grid, *, judge=None, seed: int = 0,
                   wasserstein: str = "exact", club_kwargs: dict | None = None, progress: bool = True):
    """EMI, EMID and both bounds per scenario of one grid; returns (table, timing dict).

    Table columns: scenario, visual, text, is_id, n, emi, mi_model, mi_reference, emid (nan for the ID
    cell), jsd_bound, jsd_v/t/py/qy and their split-half baselines (``*_base``), w_bound, w_v/t/py/qy
    and baselines, judge (mean score; nan without a judge). EMID = EMI(ID cell) - EMI(scenario).
    """
    check_choice("wasserstein method", wasserstein, info.WASSERSTEIN_METHODS)
    if grid.id_scenario not in set(responses["scenario"]):
        raise ParameterError(f"the responses lack the ID scenario {grid.id_scenario!r}")
    spans = {s: np.flatnonzero(responses["scenario"].to_numpy() == s) for s in dict.fromkeys(responses["scenario"])}
    small = {s: len(i) for s, i in spans.items() if len(i) < MIN_PER_SCENARIO}
    if small:
        raise ParameterError(f"scenarios with fewer than {MIN_PER_SCENARIO} samples: {small}")
    t0 = time.time()
    club, t_club, club_cached = pooled_club(emb, spans, seed=seed, club_kwargs=club_kwargs, progress=progress)
    t1 = time.time()
    x = emb.x
    scores = judge_scores(responses, judge) if judge is not None else np.full(len(responses), np.nan)
    emis = {s: info.effective_mi(club, x[i], emb.z_response[i], emb.z_reference[i]) for s, i in spans.items()}
    src = spans[grid.id_scenario]
    rows = []
    for s, idx in tqdm(spans.items(), desc=f"EMI and bounds ({grid.name})", disable=not progress):
        first = responses.iloc[idx[0]]
        row = {"grid": grid.name, "scenario": s, "visual": first["visual"], "text": first["text"],
               "is_id": s == grid.id_scenario, **emis[s].to_dict(), "judge": float(np.mean(scores[idx]))}
        if s == grid.id_scenario:
            rows.append(row)
            continue
        pairs = {"v": (emb.z_image[src], emb.z_image[idx]), "t": (emb.z_question[src], emb.z_question[idx]),
                 "py": (emb.z_response[src], emb.z_reference[src]), "qy": (emb.z_response[idx], emb.z_reference[idx])}
        jsd, w, ub, ub_w = info.emid_bound_estimates(pairs, seed=seed, task=("emi-grid", "baseline", s),
                                                     wasserstein=wasserstein)
        row.update(emid=info.emid(emis[grid.id_scenario], emis[s]), jsd_bound=ub.bound, w_bound=ub_w.bound)
        for k in ("v", "t", "py", "qy"):
            row.update({f"jsd_{k}": jsd[k].value, f"jsd_{k}_base": jsd[k].baseline,
                        f"w_{k}": w[k].value, f"w_{k}_base": w[k].baseline})
        rows.append(row)
    table = pd.DataFrame(rows)
    timing = {"club_s": round(t_club, 2), "club_from_cache": club_cached, "emi_and_bounds_s": round(time.time() - t1, 2),
              "total_s": round(time.time() - t0, 2),
              "club_best_epoch": club.history.get("best_epoch"),
              "club_val_ll": max(club.history["val_ll"]) if club.history.get("val_ll") else None}
    return table, timing


# --------------------------------------------------------------------------------------------------
# correlations with bootstrap intervals over scenarios


def _corr(a: np.ndarray, b: np.ndarray, method: str) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float((stats.pearsonr if method == "pearson" else stats.spearmanr)(a, b).statistic)


def correlation_ci(a, b, *, method: str = "pearson", n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Correlation of paired series a, b (one value per scenario) with a percentile bootstrap interval
    from resampling *scenarios* with replacement.

    Returns {method, n, r, low, high, p (two-sided, scipy), n_boot_valid}; r, low, high are nan when
    undefined (fewer than 3 scenarios, or a constant series). Resamples in which a series is constant are
    dropped (``n_boot_valid`` counts the rest); with fewer than 10 % valid the interval is nan.
    """
    check_choice("correlation method", method, CORRELATION_METHODS)
    check_positive_int("n_boot", n_boot)
    if not isinstance(level, float) or not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1), got {level!r}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ParameterError(f"correlation needs two 1-D series of equal length, got shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ParameterError("correlation series contain NaN or infinite values")
    out = {"method": method, "n": len(a), "r": _corr(a, b, method), "low": float("nan"), "high": float("nan"),
           "p": float("nan"), "n_boot_valid": 0}
    if math.isnan(out["r"]):
        return out
    out["p"] = float((stats.pearsonr if method == "pearson" else stats.spearmanr)(a, b).pvalue)
    g = np.random.default_rng(derive_seed(seed, "correlation-bootstrap", method, len(a)))
    rs = []
    for _ in range(n_boot):
        i = g.integers(0, len(a), len(a))
        r = _corr(a[i], b[i], method)
        if not math.isnan(r):
            rs.append(r)
    out["n_boot_valid"] = len(rs)
    if len(rs) >= max(1, n_boot // 10):
        alpha = (1 - level) / 2
        out["low"], out["high"] = (float(v) for v in np.quantile(rs, [alpha, 1 - alpha]))
    return out


def correlation_summary(tables: dict[str, pd.DataFrame], *, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> pd.DataFrame:
    """Per grid: EMID vs JSD bound, EMID vs W bound (over OOD scenarios), EMI vs judge score (over all
    scenarios), each with Pearson and Spearman r and bootstrap intervals. One row per (grid, pair, method)."""
    rows = []
    for grid, t in tables.items():
        ood = t[~t["is_id"]]
        pairs = {"EMID vs JSD bound": (ood["emid"], ood["jsd_bound"]),
                 "EMID vs W2 bound": (ood["emid"], ood["w_bound"]),
                 "EMI vs judge score": (t["emi"], t["judge"])}
        for pair, (a, b) in pairs.items():
            if b.isna().any():
                continue
            for method in CORRELATION_METHODS:
                c = correlation_ci(a.to_numpy(), b.to_numpy(), method=method, n_boot=n_boot, level=level,
                                   seed=derive_seed(seed, grid, pair))
                rows.append({"grid": grid, "pair": pair, **c})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# estimator checks against closed forms (STUDY.md section 4)


def check_mi_estimators(rhos: Sequence[float], *, d: int = 4, n: int = 2000, seed: int = 0,
                        club_epochs: int = 200, infonce_epochs: int = 60, progress: bool = False) -> pd.DataFrame:
    """CLUB and InfoNCE on correlated Gaussians vs the closed forms, one row per rho: true MI
    ``-(d/2) log(1 - rho^2)``, CLUB's population limit (with paper B's log-variance bound), the two
    estimates, and InfoNCE's ceiling log(held-out batch). All in nats."""
    rows = []
    for rho in tqdm(list(rhos), desc="MI estimator check", disable=not progress):
        x, y = info.correlated_gaussians(n, d, rho, seed)
        club = info.train_club(x, y, hidden=64, max_epochs=club_epochs, patience=10,
                               seed=derive_seed(seed, "check-club", rho), progress=False, device="cpu")
        xe, ye = info.correlated_gaussians(n, d, rho, derive_seed(seed, "check-eval"))
        eval_batch = min(256, int(0.3 * n))
        nce = info.infonce_mi(x, y, epochs=infonce_epochs, eval_batch_size=eval_batch,
                              seed=derive_seed(seed, "check-nce", rho), device="cpu")
        rows.append({"rho": rho, "true_mi": info.gaussian_mi(rho, d),
                     "club_limit": info.gaussian_club_limit(rho, d, logvar_bound=1.0),
                     "club": club.mi(xe, ye), "infonce": nce, "infonce_ceiling": math.log(eval_batch), "d": d, "n": n})
    return pd.DataFrame(rows)


def check_wasserstein(ns: Sequence[int], *, d: int = 8, shift: float = 1.0, seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """Empirical exact W2 (``ot.emd2``) between samples of N(0, I) and N(shift e_1, diag(s)) vs the Bures
    closed form, with the split-half baseline, one row per sample size n (embedding units)."""
    scales = np.linspace(0.5, 1.5, d)
    m2 = np.zeros(d)
    m2[0] = shift
    truth = info.bures_w2(np.zeros(d), np.eye(d), m2, np.diag(scales ** 2))
    rows = []
    for n in tqdm(list(ns), desc="W2 check", disable=not progress):
        g = rng(seed, "check-w2", n)
        p = g.standard_normal((n, d))
        q = m2 + g.standard_normal((n, d)) * scales
        est = info.wasserstein_exact(p, q, seed=seed)
        rows.append({"n": n, "bures": truth, "exact": est.value, "baseline": est.baseline, "d": d})
    return pd.DataFrame(rows)


def check_rjsd(shifts: Sequence[float], *, d: int = 384, n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Representation JSD between two L2-normalised Gaussian clouds in d dimensions whose means differ by
    ``shift`` (along one axis, before normalisation), with the split-half baseline; nats."""
    rows = []
    for s in shifts:
        g = rng(seed, "check-rjsd", s)
        base = g.standard_normal((2 * n, d)) / math.sqrt(d)
        p, q = base[:n].copy(), base[n:].copy()
        q[:, 0] += s
        est = info.jsd_estimate(info.l2_normalise(p), info.l2_normalise(q), seed=seed)
        rows.append({"shift": s, "jsd": est.value, "baseline": est.baseline, "d": d, "n": n})
    return pd.DataFrame(rows)


def describe(summary: pd.DataFrame) -> list[str]:
    """Plain-language sentences about a correlation summary (computed, for the notebook's conclusion)."""
    lines = []
    for _, r in summary[summary["method"] == "pearson"].iterrows():
        if math.isnan(r["r"]):
            lines.append(f"{r['grid']}: {r['pair']}: undefined (constant series or < 3 scenarios)")
            continue
        if math.isnan(r["low"]):
            verdict = "interval undefined"
        elif r["low"] > 0:
            verdict = "positive, interval excludes 0"
        elif r["high"] < 0:
            verdict = "NEGATIVE, interval excludes 0"
        else:
            verdict = "interval includes 0: no clear relation at this sample size"
        lines.append(f"{r['grid']}: {r['pair']}: Pearson r = {r['r']:.2f} "
                     f"[{r['low']:.2f}, {r['high']:.2f}] over {r['n']} scenarios -> {verdict}")
    return lines


def to_json(obj) -> str:
    """JSON text of a dict of numbers (nan -> null), for logs."""
    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            return fix(v.item())
        return v
    return json.dumps(fix(obj), indent=1)
