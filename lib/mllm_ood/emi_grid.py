"""Paper B's scenario grids on the embedded world: queries, the model's responses, references, a judge,
EMI per scenario, EMID against the in-distribution cell, both EMID bounds, and correlations with
bootstrap intervals over scenarios (notebook 04).

Grids (paper B's layout, on the embedded digits world):

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

import numpy as np
import pandas as pd
from .progress import tqdm

from . import emi_core as core
from . import information as info
from .cache import cached_analysis, cached_table
from .emi_core import MIN_SAMPLES
from .data import world
from .mllm.refs import fingerprint_of
from .data.text_shifts import LANGUAGES, TEXT_CONDITIONS, apply_text_shift, question_in
from .prompts import QUESTION, format_answer, parse_answer, zero_shot_prompt
from .seeding import derive_seed, rng
from .validation import ParameterError, check_choice, check_choices, check_positive_int

RESPONSE_COLUMNS = ["grid", "visual", "text", "scenario", "k", "id", "label", "label_name", "question", "prompt",
                    "response", "reference"]


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
    if n_per_class * 10 < MIN_SAMPLES:
        raise ParameterError(f"samples per class must give at least {MIN_SAMPLES} samples per scenario "
                             f"(10 classes), got {n_per_class}")
    check_positive_int("n_boot", n_boot)
    if not isinstance(level, float) or not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1), got {level!r}")
    check_positive_int("max_new_tokens", max_new_tokens)
    check_positive_int("batch_size", batch_size)
    check_choice("wasserstein method", wasserstein, info.WASSERSTEIN_METHODS)
    from .preflight import check_image_embedder, check_text_embedder

    check_image_embedder(image_embedder)
    check_text_embedder(text_embedder)


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


def scenario_responses(model, grid: Grid, visual: str, text: str, *, n_per_class: int, seed: int,
                       max_new_tokens: int = 16, batch_size: int = 32, samples=None) -> pd.DataFrame:
    """The model's responses for one scenario, cached per (model files, grid, cell, sampling, generation
    settings, code version): a table with RESPONSE_COLUMNS, one row per query.

    ``samples``: a function returning the visual condition's ``datasets.Dataset`` (default
    :func:`domain_samples`), called only on a cache miss. A rerun with the same arguments loads the
    table and never calls ``model.generate``.
    """
    params = {"model": fingerprint_of(model), "grid": grid.name, "dataset": grid.dataset, "visual": visual,
              "text": text, "n_per_class": n_per_class, "seed": seed, "max_new_tokens": max_new_tokens,
              "question": QUESTION, "sampling": "first"}

    def build() -> pd.DataFrame:
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
        return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)

    return cached_table("emi_responses", params, build, file="responses.jsonl", dtype={"id": str, "response": str})


def grid_responses(model, grid: Grid, *, n_per_class: int, seed: int, max_new_tokens: int = 16,
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
        frames.append(scenario_responses(model, grid, visual, text, n_per_class=n_per_class, seed=seed,
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


def model_image_embedder(model):
    """The embedded profile's image embedder: the MLLM's own frozen vision tower (mean-pooled features the
    projector reads, :meth:`mllm_ood.mllm.base.MLLM.vision_features`), cached under the model's fingerprint."""
    from .embedders import ImageEmbedder

    def features(images):
        return model.vision_features(images)

    return ImageEmbedder(features, name=f"vision-tower:{fingerprint_of(model)}")


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


def scenario_table(responses: pd.DataFrame, emb: GridEmbeddings, grid: Grid, *, judge=None, seed: int = 0,
                   wasserstein: str = "exact", club_kwargs: dict | None = None, n_boot: int = 1000,
                   n_perm: int = 100, level: float = 0.95, progress: bool = True):
    """EMI (with its interval), EMID and the bound per scenario of one grid, computed by
    :func:`mllm_ood.emi_core.analyse`; returns (table, timing dict).

    Table columns: grid, scenario, visual, text, is_id, judge (mean score; nan without a judge), and the
    core's per-scenario columns (n, emi, emi_low, emi_high, mi_model, mi_reference, emid (nan for the ID
    cell), jsd_v/t/py/qy with ``_null``, ``_null_high``, ``_p``, w_* likewise, jsd_sum = the JSD bound
    (images are present, so ``bound_complete``), w_sum = the W bound). EMID = EMI(ID cell) - EMI(scenario).
    Input terms are paired by sample position ``k`` (the same digit in every visual condition).
    """
    if grid.id_scenario not in set(responses["scenario"]):
        raise ParameterError(f"the responses lack the ID scenario {grid.id_scenario!r}")
    core.scenario_spans(responses["scenario"], source=grid.id_scenario)  # bad input: one error, before compute
    if len(emb.z_question) != len(responses):
        raise ParameterError(f"{len(emb.z_question)} embedded rows for {len(responses)} responses")
    samples = core.EmbeddedSamples(emb.z_question, emb.z_response, emb.z_reference, emb.z_image,
                                   ids=responses["k"].to_numpy())
    scores = judge_scores(responses, judge) if judge is not None else np.full(len(responses), np.nan)
    analysis = core.analyse(samples, responses["scenario"].tolist(), grid.id_scenario, seed=seed, n_boot=n_boot,
                            n_perm=n_perm, level=level, wasserstein=wasserstein, club_kwargs=club_kwargs,
                            task=f"emi-grid-{grid.name}", progress=progress)
    axes = responses.groupby("scenario", sort=False).agg(visual=("visual", "first"), text=("text", "first"))
    judged = pd.Series(scores, index=responses.index).groupby(responses["scenario"]).mean().rename("judge")
    table = analysis.table.join(axes, on="scenario").join(judged, on="scenario")
    table.insert(0, "grid", grid.name)
    table = table.rename(columns={"is_source": "is_id"})
    timing = {"club_s": analysis.club["seconds"], "club_from_cache": not analysis.club["trained_now"],
              "emi_s": analysis.seconds["emi"], "terms_s": analysis.seconds["terms"],
              "total_s": round(sum(analysis.seconds.values()), 2), "club_best_epoch": analysis.club["best_epoch"],
              "club_val_ll": analysis.club["val_log_likelihood"]}
    return table, timing


# The terms' own correlation with EMID, as each enters the bound (sqrt of the input terms, fourth root of
# the target's output term; the source's output term is one constant per grid and has no correlation).
TERM_PAIRS = {"EMID vs sqrt(JSv)": "jsd_v", "EMID vs sqrt(JSt)": "jsd_t", "EMID vs JSqy^1/4": "jsd_qy"}


@cached_analysis("analysis")
def correlation_summary(tables: dict[str, pd.DataFrame], *, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> pd.DataFrame:
    """Per grid: EMID vs the JSD bound, vs the W bound, vs each varying bound term (over the shifted
    scenarios), and EMI vs the judge score (over all scenarios), each with Pearson and Spearman r and a
    bootstrap interval that resamples the grid's visual and text conditions (crossed design). One row per
    (grid, pair, method)."""
    frames = []
    for grid, t in tables.items():
        ood = t[~t["is_id"]].copy()
        for col in TERM_PAIRS.values():
            ood[f"{col}_tr"] = ood[col] ** core.term_transform(col)
        pairs = {"EMID vs JSD bound": ("emid", "jsd_sum"), "EMID vs W2 bound": ("emid", "w_sum"),
                 **{k: ("emid", f"{v}_tr") for k, v in TERM_PAIRS.items()}}
        frames.append(core.correlation_table(ood, pairs, rows="visual", cols="text", n_boot=n_boot, level=level,
                                             seed=seed, grid=grid))
        if not t["judge"].isna().any():
            frames.append(core.correlation_table(t, {"EMI vs judge score": ("emi", "judge")}, rows="visual",
                                                 cols="text", n_boot=n_boot, level=level, seed=seed, grid=grid))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# estimator checks against closed forms


# Part of the estimator checks' cache keys: bump it when a change alters what a check computes.
CHECKS_VERSION = 1


def check_mi_estimators(rhos: Sequence[float], *, d: int = 4, n: int = 2000, seed: int = 0,
                        club_epochs: int = 200, infonce_epochs: int = 60, progress: bool = False) -> pd.DataFrame:
    """CLUB and InfoNCE on correlated Gaussians vs the closed forms, one row per rho: true MI
    ``-(d/2) log(1 - rho^2)``, CLUB's population limit (with paper B's log-variance bound), the two
    estimates, and InfoNCE's ceiling log(held-out batch). All in nats. Cached (the CLUBs train for minutes)."""
    params = {"check": "mi", "rhos": list(rhos), "d": int(d), "n": int(n), "seed": int(seed),
              "club_epochs": int(club_epochs), "infonce_epochs": int(infonce_epochs), "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_mi_estimators(rhos, d, n, seed, club_epochs,
                                                                                 infonce_epochs, progress),
                        file="table.pkl")


def _check_mi_estimators(rhos, d, n, seed, club_epochs, infonce_epochs, progress) -> pd.DataFrame:
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
    closed form, with the split-half baseline, one row per sample size n (embedding units). Cached."""
    params = {"check": "w2", "ns": list(ns), "d": int(d), "shift": float(shift), "seed": int(seed),
              "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_wasserstein(ns, d, shift, seed, progress),
                        file="table.pkl")


def _check_wasserstein(ns, d, shift, seed, progress) -> pd.DataFrame:
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
    ``shift`` (along one axis, before normalisation), with the split-half baseline; nats. Cached."""
    params = {"check": "rjsd", "shifts": list(shifts), "d": int(d), "n": int(n), "seed": int(seed),
              "version": CHECKS_VERSION}
    return cached_table("estimator_checks", params, lambda: _check_rjsd(shifts, d, n, seed), file="table.pkl")


def _check_rjsd(shifts, d, n, seed) -> pd.DataFrame:
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
        lines.append(f"{r['grid']}: {r['pair']}: Pearson r = {r['r']:.2f} [{r['low']:.2f}, {r['high']:.2f}] "
                     f"over {r['n']} scenarios -> {core.verdict(r.to_dict())}")
    return lines


def to_json(obj) -> str:
    """JSON text of a dict of numbers (nan -> null), for logs."""
    return json.dumps(core.json_safe(obj), indent=1)
