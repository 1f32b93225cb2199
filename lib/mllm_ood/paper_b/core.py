"""The one EMI core of paper B (Oh et al., ICML 2025): scenario spans, the pooled CLUB, EMI per scenario
with its own interval, EMID, the bound's divergence terms beside their permutation nulls, the bound
(or, without images, the text-side part of it), correlations with intervals, and JSON-ready records.

Every front end calls it: :mod:`mllm_ood.paper_b.cli` (JSONL files and the ``emi`` command) and the
grids of notebook 04 (:mod:`mllm_ood.paper_b.grids`); the estimators themselves live in
:mod:`~mllm_ood.paper_b.estimators` (CLUB) and :mod:`~mllm_ood.paper_b.divergences` (representation JSD,
W2, permutation null), the bound's formula in :mod:`~mllm_ood.paper_b.bound`.

Inputs are embeddings, one row per query: ``x`` (the query embedding), ``y_model`` and ``y_reference``
(the model's and the reference answer), ``z_text`` (the question) and optionally ``z_image``; a label
per row names its scenario, and optional ids say which rows of two scenarios are the same item.

Units: MI, EMI, EMID and JS divergences in nats; W2 in embedding units (L2-normalised embeddings).

**Text-only data** (no ``z_image``): the image term ``JSv`` of the bound is *unknown*, not zero. The sum
of the remaining terms ``sqrt(JSt) + JSpy^(1/4) + JSqy^(1/4)`` is then reported as the *text-side sum*
(``bound_complete`` False), never as the bound: it bounds EMID only if the images did not shift.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..cache import array_digest, cached, cached_analysis, cached_table, entry_path, exact_digest, is_valid
from ..progress import tqdm
from ..seeding import derive_seed
from ..stats import CORRELATION_METHODS, correlation_ci
from ..validation import ParameterError, check_choice, check_positive_int
from .arrays import query_embedding
from .bound import TERMS, bound_sum
from .divergences import WASSERSTEIN_METHODS, permutation_null, representation_jsd, w2_function
from .emid import ScenarioLikelihoods, club_u, scenario_intervals
from .estimators import CLUB, effective_mi, train_club_pooled

MIN_SAMPLES = 10  # per scenario: a CLUB estimate and a permutation null need more than a handful
MIN_SCENARIOS = 2  # a source and at least one target


# --------------------------------------------------------------------------------------------------
# scenarios


def scenario_spans(labels: Sequence[str], *, source: str, first_lines: Sequence[int] | None = None,
                   min_samples: int = MIN_SAMPLES) -> dict[str, np.ndarray]:
    """Row indices of every scenario (source first, then in order of first appearance).

    Raises one ParameterError, before any compute, when there are fewer than :data:`MIN_SCENARIOS`
    scenarios, the source is absent, or a scenario has fewer than ``min_samples`` rows; ``first_lines``
    (a line number per row) lets the message name where the scenario starts in an input file.
    """
    labels = np.asarray(list(labels), dtype=object)
    order = list(dict.fromkeys(labels.tolist()))
    spans = {s: np.flatnonzero(labels == s) for s in order}
    where = (lambda s: f" (first at line {first_lines[spans[s][0]]})") if first_lines is not None else (lambda s: "")
    if len(spans) < MIN_SCENARIOS:
        shown = f"{order[0]!r}{where(order[0])}" if order else "none"
        raise ParameterError(f"only one scenario ({shown}); EMID needs at least {MIN_SCENARIOS}")
    if source not in spans:
        shown = ", ".join(repr(s) for s in order[:12]) + (", ..." if len(order) > 12 else "")
        raise ParameterError(f"unknown source scenario {source!r}; the input has: {shown}")
    for s, idx in spans.items():
        if len(idx) < min_samples:
            raise ParameterError(f"scenario {s!r}{where(s)} has {len(idx)} samples; at least {min_samples} are needed")
    return {source: spans[source], **{k: v for k, v in spans.items() if k != source}}


@dataclass
class EmbeddedSamples:
    """Embeddings of one analysis, one row per query (all float32, unit rows, same row order).

    ``ids``: optional item id per row; rows of two scenarios with the same sets of ids are the same items
    (e.g. one COCO question clean and perturbed), and their input terms get a paired null."""

    z_text: np.ndarray  # (n, d) question embeddings
    y_model: np.ndarray  # (n, d) model responses
    y_reference: np.ndarray  # (n, d) reference responses
    z_image: np.ndarray | None = None  # (n, d) or None (text-only)
    ids: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.z_text)
        for what in ("y_model", "y_reference", "z_image", "ids"):
            a = getattr(self, what)
            if a is not None and len(a) != n:
                raise ParameterError(f"{what} has {len(a)} rows but z_text has {n}")

    @property
    def text_only(self) -> bool:
        return self.z_image is None

    @property
    def x(self) -> np.ndarray:
        """Paper B's query embedding: (z_image + z_text) / 2, or z_text alone without images."""
        return query_embedding(self.z_text, self.z_image)


# --------------------------------------------------------------------------------------------------
# CLUB and EMI


# Early stopping of the analyses' CLUBs (nats of held-out log-likelihood per pair, about -161 on LLaVA-Bench):
# stop once 20 epochs in a row gained at most 0.001 nats together. Training on until no gain at all (min_delta
# 0) took 141-215 epochs on part 1's and the digits grids' CLUBs; this stops after 83-140, at a held-out
# likelihood within 0.004 nats. EMI per scenario (63 scenarios, multilingual-e5) moved by at most 0.0032 nats
# (mean 0.0007) on LLaVA-1.5's answers (83 epochs instead of 191) and 0.0028 (mean 0.0008) on LLaVA-1.6's (97
# instead of 185), less than retraining with another seed moves it: up to 0.0043 (mean 0.0012) and 0.0028
# (mean 0.0013).
CLUB_MIN_DELTA = 1e-3


def pooled_club(emb: EmbeddedSamples, spans: dict[str, np.ndarray], *, seed: int, task: str = "emi",
                club_kwargs: dict | None = None, progress: bool = False):
    """One CLUB trained on the pooled (x, response) and (x, reference) pairs of every scenario (paper B),
    through the project cache (key: the embeddings' digests, the spans and the training settings).

    Training stops once 20 epochs in a row raised the held-out log-likelihood by at most :data:`CLUB_MIN_DELTA`
    nats together (``club_kwargs`` may set ``min_delta``, ``max_epochs``, ...).

    Returns (club, info) with info = {trained_now, seconds, checkpoint, config, best_epoch, val_log_likelihood}.
    """
    x = emb.x
    kwargs = {"seed": derive_seed(seed, task, "club"), "progress": progress, "device": "cpu", "min_delta": CLUB_MIN_DELTA,
              **(club_kwargs or {})}
    params = {"x": array_digest(x), "y_model": array_digest(emb.y_model), "y_reference": array_digest(emb.y_reference),
              "spans": {k: [int(i) for i in v] for k, v in spans.items()},
              "train": {k: v for k, v in kwargs.items() if k != "progress"}}
    hit = is_valid(entry_path("club", params))
    t0 = time.time()

    def build(folder: Path) -> None:
        train_club_pooled([x[s] for s in spans.values()], [emb.y_model[s] for s in spans.values()],
                               [emb.y_reference[s] for s in spans.values()], **kwargs).save(folder)

    folder = cached("club", params, build)
    club = CLUB.load(folder, device="cpu")
    return club, club_info(club, trained_now=not hit, seconds=time.time() - t0, checkpoint=folder)


def club_info(club, *, trained_now: bool, seconds: float | None = None, checkpoint=None) -> dict:
    """A JSON-ready description of a CLUB: config, where it lives, how it was obtained."""
    return {"trained_now": trained_now, "seconds": None if seconds is None else round(seconds, 2),
            "checkpoint": None if checkpoint is None else str(checkpoint), "config": dict(club.config.__dict__),
            "best_epoch": club.history.get("best_epoch"),
            "val_log_likelihood": max(club.history["val_ll"]) if club.history.get("val_ll") else None}


def check_club(club, emb: EmbeddedSamples) -> None:
    """ParameterError unless the CLUB's widths match the embeddings'."""
    x_dim, y_dim = emb.z_text.shape[1], emb.y_model.shape[1]
    if club.config.x_dim != x_dim or club.config.y_dim != y_dim:
        raise ParameterError(
            f"the CLUB expects x of width {club.config.x_dim} and y of width {club.config.y_dim}, but the "
            f"embeddings have widths {x_dim} and {y_dim}: use the embedders it was trained with")


def pair_log_likelihoods(club, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``L[i, j] = log q(y_j | x_i)`` (nats, up to the Gaussian constant, which cancels in CLUB) for one
    scenario's x: (n, d_x), y: (n, d_y) -> (n, n) float64. CLUB = mean(diag L) - mean(L)."""
    with torch.no_grad():
        mu, logvar = (t.double().cpu().numpy() for t in club.mu_logvar(torch.as_tensor(x, dtype=torch.float32)))
    inv = np.exp(-logvar)
    y = np.asarray(y, dtype=np.float64)
    # sum_k (y_jk - mu_ik)^2 inv_ik, expanded so that no (n, n, d) array is built
    quad = (y ** 2) @ inv.T + np.sum(mu ** 2 * inv, axis=1)[None, :] - 2 * y @ (mu * inv).T
    return -0.5 * (quad.T + logvar.sum(axis=1)[:, None])


_club_u = club_u  # the U form of CLUB (mllm_ood.paper_b.emid.club_u)


def scenario_likelihoods(club, emb: EmbeddedSamples, spans: dict[str, np.ndarray],
                         clusters: np.ndarray | None = None) -> dict[str, ScenarioLikelihoods]:
    """Per scenario: the CLUB's log-likelihood matrices of the model's and the reference answers, paper B's
    EMI, and each row's cluster (``clusters``, one label per row of ``emb``; default: the item id, else the
    row itself) and item id, for :mod:`mllm_ood.paper_b.emid`."""
    x = emb.x
    labels = clusters if clusters is not None else emb.ids if emb.ids is not None else np.arange(len(x))
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(x):
        raise ParameterError(f"clusters has {len(labels)} labels for {len(x)} rows")
    out = {}
    for s, idx in spans.items():
        r = effective_mi(club, x[idx], emb.y_model[idx], emb.y_reference[idx])
        out[s] = ScenarioLikelihoods(pair_log_likelihoods(club, x[idx], emb.y_model[idx]),
                                     pair_log_likelihoods(club, x[idx], emb.y_reference[idx]), r.emi, labels[idx],
                                     None if emb.ids is None else emb.ids[idx])
        out[s].result = r
    return out


def scenario_emis(club, emb: EmbeddedSamples, spans: dict[str, np.ndarray], *, clusters: np.ndarray | None = None,
                  n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """EMI (nats) of every scenario with its own interval, and EMID's interval for every target (the first
    span is the source), the CLUB held fixed: the intervals cover the sampling of queries, not the CLUB's
    training.

    The estimate is paper B's (all n^2 pairs as negatives, :func:`mllm_ood.paper_b.estimators.effective_mi`).
    The intervals come from the cluster bootstrap over ``clusters`` (items of one cluster drawn together;
    default: each item its own), EMID's paired where source and target hold the same item ids
    (:func:`mllm_ood.paper_b.emid.scenario_intervals`, which says why the resampled CLUB uses distinct rows).
    Columns: scenario, n, emi, mi_model, mi_reference, emi_low, emi_high, n_clusters, emid_low, emid_high,
    emid_paired.
    """
    check_positive_int("n_boot", n_boot)
    lik = scenario_likelihoods(club, emb, spans, clusters)
    iv = scenario_intervals(lik, next(iter(spans)), n_boot=n_boot, level=level, seed=seed).set_index("scenario")
    return pd.DataFrame([{"scenario": s, **st.result.to_dict(), **iv.loc[s].to_dict()} for s, st in lik.items()])


# --------------------------------------------------------------------------------------------------
# divergence terms and the bound


def _aligned(emb: EmbeddedSamples, src: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Source and target rows, aligned by id when both scenarios hold the same items (paired), else as is."""
    if emb.ids is None:
        return src, tgt, False
    a, b = emb.ids[src], emb.ids[tgt]
    if len(a) != len(b) or len(set(a)) != len(a) or set(a) != set(b):
        return src, tgt, False
    pos = {v: i for i, v in enumerate(b)}
    return src, tgt[[pos[v] for v in a]], True


def _term(p: np.ndarray, q: np.ndarray, *, paired: bool, n_perm: int, seed: int, wasserstein: str | None) -> dict:
    out = {"paired": paired}
    j = permutation_null(representation_jsd, p, q, paired=paired, n_perm=n_perm, seed=derive_seed(seed, "jsd"))
    out.update(jsd=j.value, jsd_null=j.null_mean, jsd_null_high=j.null_high, jsd_p=j.p)
    if wasserstein is not None:
        w = permutation_null(w2_function(wasserstein, seed), p, q, paired=paired, n_perm=n_perm,
                                  seed=derive_seed(seed, "w2"))
        out.update(w=w.value, w_null=w.null_mean, w_null_high=w.null_high, w_p=w.p)
    return out


def bound_terms(emb: EmbeddedSamples, spans: dict[str, np.ndarray], source: str, *, n_perm: int = 100,
                seed: int = 0, wasserstein: str | None = "exact", progress: bool = False) -> pd.DataFrame:
    """Every divergence term of the bound with its permutation null (same sample sizes), long format:
    one row per (scenario, term) with columns scenario, term, paired, jsd, jsd_null, jsd_null_high, jsd_p
    (and w, w_null, w_null_high, w_p unless ``wasserstein`` is None).

    Terms: ``qy`` (model vs reference answers, paired by question) for every scenario (the source's is
    ``py`` of every target); ``t`` (questions) and ``v`` (images, only with images) between the source
    and each target, paired when both hold the same items. Each term is computed once.
    """
    check_positive_int("n_perm", n_perm)
    rows = []
    for s, idx in tqdm(spans.items(), desc="bound terms", disable=not progress, leave=False):
        task = derive_seed(seed, "bound-terms", s)
        rows.append({"scenario": s, "term": "qy", **_term(emb.y_model[idx], emb.y_reference[idx], paired=True,
                                                          n_perm=n_perm, seed=derive_seed(task, "qy"),
                                                          wasserstein=wasserstein)})
        if s == source:
            continue
        a, b, paired = _aligned(emb, spans[source], idx)
        inputs = {"t": emb.z_text} if emb.text_only else {"v": emb.z_image, "t": emb.z_text}
        for term, z in inputs.items():
            rows.append({"scenario": s, "term": term, **_term(z[a], z[b], paired=paired, n_perm=n_perm,
                                                              seed=derive_seed(task, term), wasserstein=wasserstein)})
    return pd.DataFrame(rows)


def bound_table(emis: pd.DataFrame, terms: pd.DataFrame, source: str, *, text_only: bool) -> pd.DataFrame:
    """One row per scenario: its EMI (and interval), EMID = EMI(source) - EMI(scenario) (nan for the
    source), each term with its null (``jsd_t``, ``jsd_t_null``, ``jsd_t_p``, ...; ``py`` = the source's
    ``qy``), ``jsd_sum`` = sqrt(JSv) + sqrt(JSt) + JSpy^1/4 + JSqy^1/4 over the *estimated* terms (the
    W analogue ``w_sum`` when W was computed), and ``bound_complete`` (False without images: then
    ``jsd_sum`` is the text-side sum, not the bound)."""
    emis = emis.set_index("scenario")
    if source not in emis.index:
        raise ParameterError(f"unknown source scenario {source!r}")
    has_w = "w" in terms.columns
    by = {(r.scenario, r.term): r for r in terms.itertuples(index=False)}
    src_emi = float(emis.loc[source, "emi"])
    rows = []
    for s, e in emis.iterrows():
        row = {"scenario": s, "is_source": s == source, **e.to_dict(), "bound_complete": not text_only,
               "emid": np.nan if s == source else src_emi - float(e["emi"])}
        present = {"py": by.get((source, "qy")), "qy": by.get((s, "qy"))}
        if s != source:
            present["t"] = by.get((s, "t"))
            if not text_only:
                present["v"] = by.get((s, "v"))
        for k in TERMS:
            r = present.get(k)
            for div in ("jsd", "w") if has_w else ("jsd",):
                for suffix in ("", "_null", "_null_high", "_p"):
                    row[f"{div}_{k}{suffix}"] = np.nan if r is None else float(getattr(r, f"{div}{suffix}"))
        if s != source:
            for div in ("jsd", "w") if has_w else ("jsd",):
                row[f"{div}_sum"] = bound_sum({k: row[f"{div}_{k}"] for k in TERMS}, div)
        rows.append(row)
    out = pd.DataFrame(rows)
    return pd.concat([out[out["is_source"]], out[~out["is_source"]]], ignore_index=True)


@dataclass
class Analysis:
    """Everything one EMI analysis computed (see :func:`analyse`)."""

    table: pd.DataFrame
    terms: pd.DataFrame
    source: str
    text_only: bool
    club: dict
    seconds: dict = field(default_factory=dict)


# Part of the cache keys of the per-scenario EMIs and bound terms: bump it when a change alters them.
ANALYSIS_VERSION = 1
# The same for the per-scenario EMIs alone (2: cluster-bootstrap intervals and EMID's paired interval).
EMI_VERSION = 2


def club_digest(club) -> str:
    """16-hex-digit hash of a CLUB's configuration and weights (what its estimates depend on)."""
    state = club.state_dict()
    return exact_digest(np.array(json.dumps(asdict(club.config), sort_keys=True, default=str)),
                        *[state[k].detach().cpu().numpy() for k in sorted(state)])


def analyse(emb: EmbeddedSamples, labels: Sequence[str], source: str, *, club=None, seed: int = 0,
            n_boot: int = 1000, n_perm: int = 100, level: float = 0.95, wasserstein: str | None = "exact",
            club_kwargs: dict | None = None, task: str = "emi", first_lines=None, progress: bool = False,
            clusters=None) -> Analysis:
    """The whole EMI analysis of one set of scenarios: spans, the pooled CLUB (trained and cached, or the
    one given), EMI per scenario with intervals (cluster bootstrap over ``clusters``, one label per row,
    default the item ids; EMID's paired where the items are the same: :func:`scenario_emis`), every bound
    term with its permutation null, and the per-scenario table of :func:`bound_table`. Input errors are
    raised before anything is trained."""
    if wasserstein is not None:
        check_choice("wasserstein method", wasserstein, WASSERSTEIN_METHODS)
    check_positive_int("n_boot", n_boot)
    check_positive_int("n_perm", n_perm)
    spans = scenario_spans(labels, source=source, first_lines=first_lines)
    if clusters is not None and len(clusters) != len(emb.z_text):
        raise ParameterError(f"clusters has {len(clusters)} labels for {len(emb.z_text)} rows")
    if club is not None:
        check_club(club, emb)
    t0 = time.time()
    if club is None:
        club, cinfo = pooled_club(emb, spans, seed=seed, task=task, club_kwargs=club_kwargs, progress=progress)
    else:
        cinfo = club_info(club, trained_now=False)
    t1 = time.time()
    arrays = exact_digest(emb.z_text, emb.y_model, emb.y_reference,
                          *([] if emb.z_image is None else [emb.z_image]), *([] if emb.ids is None else [emb.ids]))
    keyed_spans = {k: [int(i) for i in v] for k, v in spans.items()}
    units = None if clusters is None else exact_digest(np.asarray([str(c) for c in clusters], dtype=object))
    emis = cached_table("emi_scenarios", {"club": club_digest(club), "arrays": arrays, "spans": keyed_spans,
                                          "clusters": units, "n_boot": n_boot, "level": level, "seed": seed,
                                          "version": EMI_VERSION},
                        lambda: scenario_emis(club, emb, spans, clusters=clusters, n_boot=n_boot, level=level,
                                              seed=seed), file="table.pkl")
    t2 = time.time()
    terms = cached_table("bound_terms", {"arrays": arrays, "spans": keyed_spans, "source": source, "n_perm": n_perm,
                                         "seed": seed, "wasserstein": wasserstein, "version": ANALYSIS_VERSION},
                         lambda: bound_terms(emb, spans, source, n_perm=n_perm, seed=seed, wasserstein=wasserstein,
                                             progress=progress), file="table.pkl")
    t3 = time.time()
    table = bound_table(emis, terms, source, text_only=emb.text_only)
    return Analysis(table, terms, source, emb.text_only, cinfo,
                    {"club": round(t1 - t0, 2), "emi": round(t2 - t1, 2), "terms": round(t3 - t2, 2)})


def looseness(table: pd.DataFrame, column: str = "jsd_sum") -> dict:
    """How loose the (partial) bound is: median of ``column / EMID`` over targets with EMID > 0, the share
    of targets with EMID <= ``column``, and how many targets had EMID > 0."""
    t = table[~table["is_source"]]
    pos = t[t["emid"] > 0]
    return {"median_ratio": float((pos[column] / pos["emid"]).median()) if len(pos) else float("nan"),
            "share_emid_below": float((t["emid"] <= t[column]).mean()) if len(t) else float("nan"),
            "n_positive_emid": int(len(pos)), "n_targets": int(len(t))}


def json_safe(obj):
    """``obj`` with numpy scalars made Python scalars and non-finite floats made None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@cached_analysis("analysis")
def correlation_table(table: pd.DataFrame, pairs: dict[str, tuple[str, str]], *, rows: str | None = None,
                      cols: str | None = None, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                      methods: Sequence[str] = CORRELATION_METHODS, **labels) -> pd.DataFrame:
    """:func:`correlation_ci` for several column pairs of one per-scenario table, one output row per
    (pair, method). ``pairs``: label -> (column a, column b); rows with a missing value in either column
    are dropped for that pair. ``rows``/``cols``: the table's grid-axis columns for crossed resampling.
    ``labels`` (e.g. grid="natural", model=...) are copied into every output row."""
    out = []
    for pair, (ca, cb) in pairs.items():
        t = table[[ca, cb] + [c for c in (rows, cols) if c]].dropna(subset=[ca, cb])
        for method in methods:
            c = correlation_ci(t[ca].to_numpy(float), t[cb].to_numpy(float), method=method, n_boot=n_boot,
                               level=level, seed=derive_seed(seed, pair, *map(str, labels.values())),
                               rows=None if rows is None else t[rows].tolist(),
                               cols=None if cols is None else t[cols].tolist())
            out.append({**labels, "pair": pair, **c})
    return pd.DataFrame(out)
