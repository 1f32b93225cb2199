"""The analysis of one scenario grid, the same for every grid (the digits grids of
:mod:`~mllm_ood.paper_b.grids.digits`, paper B's hub sets of :mod:`~mllm_ood.paper_b.grids.hub`): embed
the responses, questions, references and images (:func:`embed_grid`), then EMI with its interval, EMID and
both bounds per scenario (:func:`scenario_table`, through :func:`mllm_ood.paper_b.core.analyse`), judge
scores per scenario, and the correlations of a grid with intervals over its rows and columns
(:func:`correlation_summary`). :func:`analyse_grid` runs that chain.

A grid, for this module, is anything with a ``name`` and an ``id_scenario``; its responses table has one
row per query with the columns scenario, visual, text, k (the item's position, shared across the cells
of one image set), question, response, reference.

Units: MI, EMI, EMID and JSD in nats; W2 in embedding units; judge scores in [0, 1].
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...cache import cached_analysis
from ...seeding import derive_seed, rng
from ...validation import ParameterError, check_positive_int
from .. import core, emid
from ..arrays import l2_normalise, query_embedding
from ..bound import transformed
from ..embedders import embed_cached
from ..judges import judge_scores


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
        return l2_normalise(z)
    return l2_normalise(z @ random_isometry(z.shape[1], width, seed).T)


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
        return query_embedding(self.z_question, self.z_image)


def embed_grid(responses: pd.DataFrame, images: list, text_embedder, image_embedder, *, seed: int = 0,
               progress: bool = True) -> GridEmbeddings:
    """Embed questions, responses, references (one cached text call) and images (one cached image call)."""
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


def scenario_table(responses: pd.DataFrame, emb: GridEmbeddings, grid, *, judge=None, seed: int = 0,
                   wasserstein: str = "exact", club_kwargs: dict | None = None, n_boot: int = 1000,
                   n_perm: int = 100, level: float = 0.95, progress: bool = True):
    """EMI (with its interval), EMID and the bound per scenario of one grid, computed by
    :func:`mllm_ood.paper_b.core.analyse`; returns (table, timing dict).

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
            ood[f"{col}_tr"] = transformed(ood[col], col)
        pairs = {"EMID vs JSD bound": ("emid", "jsd_sum"), "EMID vs W2 bound": ("emid", "w_sum"),
                 **{k: ("emid", f"{v}_tr") for k, v in TERM_PAIRS.items()}}
        frames.append(core.correlation_table(ood, pairs, rows="visual", cols="text", n_boot=n_boot, level=level,
                                             seed=seed, grid=grid))
        if not t["judge"].isna().any():
            frames.append(core.correlation_table(t, {"EMI vs judge score": ("emi", "judge")}, rows="visual",
                                                 cols="text", n_boot=n_boot, level=level, seed=seed, grid=grid))
    return pd.concat(frames, ignore_index=True)


def describe(summary: pd.DataFrame) -> list[str]:
    """Plain-language sentences about a correlation summary (computed, for the notebook's conclusion; the
    claims are decided in the ledger, :mod:`mllm_ood.paper_b.verdicts`)."""
    lines = []
    for _, r in summary[summary["method"] == "pearson"].iterrows():
        lines.append(f"{r['grid']}: {r['pair']}: Pearson r = {r['r']:.2f} [{r['low']:.2f}, {r['high']:.2f}] "
                     f"over {r['n']} scenarios")
    return lines


def resolution_table(grid, responses: pd.DataFrame, emb: GridEmbeddings, table: pd.DataFrame, *, seed: int = 0,
                     club_kwargs: dict | None = None, n_sim: int = 20, n_boot: int = 200,
                     level: float = 0.95) -> pd.DataFrame:
    """The power check of one grid: how wide EMID's interval is at n items per cell (n = 1/8 ... 4 x the
    items measured), by :func:`mllm_ood.paper_b.emid.resolution` between the ID cell and the target with the
    median EMID, with the grid's own CLUB (the cached one :func:`scenario_table` trained)."""
    samples = core.EmbeddedSamples(emb.z_question, emb.z_response, emb.z_reference, emb.z_image,
                                   ids=responses["k"].to_numpy())
    spans = core.scenario_spans(responses["scenario"], source=grid.id_scenario)
    club, _ = core.pooled_club(samples, spans, seed=seed, task=f"emi-grid-{grid.name}", club_kwargs=club_kwargs)
    ood = table[~table["is_id"]].dropna(subset=["emid"]).sort_values("emid")
    target = ood["scenario"].iloc[len(ood) // 2]
    lik = core.scenario_likelihoods(club, samples, {grid.id_scenario: spans[grid.id_scenario], target: spans[target]})
    n = len(spans[grid.id_scenario])
    sizes = [max(5, n // 8), max(5, n // 4), max(5, n // 2), n, 2 * n, 4 * n]
    res = emid.resolution(lik[grid.id_scenario], lik[target], sizes, n_sim=n_sim, n_boot=n_boot, level=level, seed=seed)
    return res.assign(grid=grid.name, target=target)[["grid", "target", *res.columns]]


def to_json(obj) -> str:
    """JSON text of a dict of numbers (nan -> null), for logs."""
    return json.dumps(core.json_safe(obj), indent=1)


def analyse_grid(grid, responses: pd.DataFrame, images: list, text_embedder, image_embedder, *, judge=None,
                 seed: int = 0, wasserstein: str = "exact", club_kwargs: dict | None = None, n_boot: int = 1000,
                 n_perm: int = 100, level: float = 0.95, progress: bool = False):
    """The whole chain for one grid: :func:`embed_grid`, then :func:`scenario_table`.
    Returns (table, embeddings, timing); timing gains ``embed_s``."""
    emb = embed_grid(responses, images, text_embedder, image_embedder, seed=seed, progress=progress)
    table, timing = scenario_table(responses, emb, grid, judge=judge, seed=seed, wasserstein=wasserstein,
                                   club_kwargs=club_kwargs, n_boot=n_boot, n_perm=n_perm, level=level,
                                   progress=progress)
    return table, emb, {**timing, "embed_s": round(emb.seconds, 2)}


def analyse_hub(datasets, model, text_embedder, image_embedder, *, judge=None, smoke: bool = False,
                max_new_tokens: int = 512, batch_size: int = 8, max_questions: int | None = None,
                **settings) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Part 2b: ``model`` answers every split of each of paper B's hub sets (:mod:`.hub`), then
    :func:`analyse_grid` per set. Returns (per-grid tables, one line per set)."""
    from . import hub

    tables, lines = {}, []
    for ds_name in datasets:
        g = hub.grid_of(ds_name)
        r = hub.grid_responses(model, g, hub.scenarios(g, smoke=smoke), max_new_tokens=max_new_tokens,
                               batch_size=batch_size, max_questions=max_questions)
        imgs = hub.grid_images(g, r, max_questions=max_questions)
        tables[g], e, timing = analyse_grid(hub.grid(g), r, imgs, text_embedder, image_embedder, judge=judge,
                                            **settings)
        lines.append(f"{g}: {r['scenario'].nunique()} splits, {len(r)} answers; image width {e.image_width}, "
                     f"text width {e.z_question.shape[1]}; {timing['total_s']:.1f} s")
    return tables, lines
