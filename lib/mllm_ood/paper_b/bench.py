"""Notebook 04, part 1: the shipped LLaVA-Bench answers (:mod:`mllm_ood.paper_b.grids.llava_bench`, text
only) analysed with paper B's method: every distinct text embedded once per encoder, one CLUB per model and
encoder on the pooled pairs of all its scenarios, then per grid EMI with intervals, EMID and the text-side
terms (:func:`mllm_ood.paper_b.core.analyse`); correlations with intervals over the grid's rows and
columns, and the comparison with paper B's released values (the claims themselves: :mod:`.verdicts`).

Without images the image term of the bound is unknown: every sum here is the *text-side sum*, never the
bound (:data:`mllm_ood.paper_b.bound.TEXT_ONLY_NOTE`). Units: nats.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..progress import tqdm
from . import core, replay, shipped_embeddings, verdicts
from .bound import transformed
from .grids import llava_bench

ENCODER_LABELS = {"e5": "multilingual-e5-small", "minilm": "all-MiniLM-L6-v2 (English)",
                  "e5-first-layer": "multilingual-e5-small, embedding layer"}
# the scenarios of a smoke run (and of the example question): clean, blur, typos, both, a language, the wild
SMOKE_SCENARIOS = ["llava_bench_coco", "llava_bench_coco_frost_5", "llava_bench_coco_KeyboardAug_3",
                   "llava_bench_coco_frost_5_KeyboardAug_3", "llava_bench_coco_German",
                   "llava_bench_in_the_wild_English", "llava_bench_in_the_wild_German"]
SIDE_SUM = "EMID vs text-side sum"


def load(models, smoke: bool = False) -> dict[str, pd.DataFrame]:
    """Each model's answers (a smoke run: :data:`SMOKE_SCENARIOS`, 10 answers each, in-the-wild 10 of each of
    paper B's easy and hard halves)."""
    return {m: _smoke(llava_bench.table(m, scenarios=SMOKE_SCENARIOS)) if smoke else llava_bench.table(m) for m in models}


def _smoke(df: pd.DataFrame) -> pd.DataFrame:
    idx = replay.wild_indices()
    wild_ids = {str(i) for part in llava_bench.WILD_PARTS for i in idx[part][:10]}
    keep = np.where(df["scenario"].str.contains("in_the_wild"), df["id"].isin(wild_ids), df["id"].astype(int) < 10)
    return df[keep].reset_index(drop=True)


def counts(bench: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Answers, scenarios, distinct questions and mean answer length per model."""
    return pd.DataFrame([{"model": llava_bench.MODEL_LABELS[m], "answers": len(df), "scenarios": df["scenario"].nunique(),
                          "distinct questions": df["question"].nunique(),
                          "mean answer length (chars)": round(df["response"].str.len().mean())} for m, df in bench.items()])


class Embedded:
    """Every distinct text of the answers embedded once per encoder: ``z[spec][rows[text]]``."""

    def __init__(self, bench: dict[str, pd.DataFrame], encoders: dict, *, use_shipped: bool = True):
        texts = llava_bench.texts(pd.concat(bench.values()))
        self.rows = {t: i for i, t in enumerate(texts)}
        self.z, self.lines = {}, []
        t0 = time.time()
        for spec, enc in encoders.items():
            t1 = time.time()
            self.z[spec], source = shipped_embeddings.embed_texts(enc, texts, use_shipped=use_shipped, progress=True)
            self.lines.append(f"{enc.name}: {len(texts)} distinct texts -> {self.z[spec].shape} "
                              f"({source}; {time.time() - t1:.0f} s)")
        self.seconds = time.time() - t0

    def of(self, spec: str, texts) -> np.ndarray:
        return self.z[spec][[self.rows[t] for t in texts]]


def translation_cosines(df: pd.DataFrame, emb: Embedded, specs) -> pd.DataFrame:
    """Per language and encoder: mean cosine between each translated COCO question and its English original
    (same id), beside the cosine with another English question (for scale)."""
    english = df[df["scenario"] == llava_bench.ID_SCENARIO].set_index("id")["question"]
    rows = []
    for lang in llava_bench.LANGUAGES[1:]:
        tr = df[df["scenario"] == f"llava_bench_coco_{lang}"].set_index("id")["question"]
        ids = [i for i in tr.index if i in english.index]
        for spec in specs if len(tr) else []:
            a, b = emb.of(spec, [english[i] for i in ids]), emb.of(spec, [tr[i] for i in ids])
            other = np.roll(a, 1, axis=0)  # a different English question, for scale
            rows.append({"language": lang, "encoder": ENCODER_LABELS[spec],
                         "cos(translation, original)": float((a * b).sum(1).mean()),
                         "cos(original, another question)": float((a * other).sum(1).mean())})
    return pd.DataFrame(rows).pivot(index="language", columns="encoder").round(3)


def analyse(bench: dict[str, pd.DataFrame], emb: Embedded, *, seed: int, n_boot: int, n_perm: int, level: float,
            club_kwargs: dict, grids=tuple(llava_bench.GRIDS)) -> tuple[pd.DataFrame, list[str]]:
    """One CLUB per (model, encoder) on all its scenarios, then :func:`mllm_ood.paper_b.core.analyse` per grid
    (EMI intervals resample *images*: the questions about one image are drawn together; EMID's interval
    is paired where both scenarios hold the same questions). Returns the per-scenario table (columns of
    :func:`~mllm_ood.paper_b.core.bound_table` plus row, col, model, encoder, grid) of ``grids`` and one line
    per CLUB."""
    tables, lines = [], []
    for m, spec in tqdm([(m, s) for m in bench for s in emb.z], desc="LLaVA-Bench: model x encoder"):
        df = bench[m].assign(row_idx=np.arange(len(bench[m])))
        image_set = np.where(df["scenario"].str.contains("in_the_wild"), "wild", "coco")
        images = llava_bench.image_clusters(np.where(image_set == "wild", "in_the_wild", "coco"), df["id"])
        samples = core.EmbeddedSamples(emb.of(spec, df["question"]), emb.of(spec, df["response"]),
                                       emb.of(spec, df["reference"]),
                                       ids=np.array([f"{s}:{i}" for s, i in zip(image_set, df["id"])], dtype=object))
        spans = core.scenario_spans(df["scenario"], source=llava_bench.ID_SCENARIO)
        club, c = core.pooled_club(samples, spans, seed=seed, task=f"llava-bench-{m}", club_kwargs=club_kwargs)
        lines.append(f"CLUB {llava_bench.MODEL_LABELS[m]} / {ENCODER_LABELS[spec]}: "
                     f"{'trained' if c['trained_now'] else 'from cache'} ({c['seconds']} s), best epoch "
                     f"{c['best_epoch']}, held-out log-likelihood {c['val_log_likelihood']:.1f}")
        halves = llava_bench.with_wild_splits(df, replay.wild_indices())  # rows of the same answers, after the CLUB
        for grid in grids:
            g = llava_bench.grid_table(halves, grid)
            if g["scenario"].nunique() < 2:
                continue
            ri = g["row_idx"].to_numpy()
            sub = core.EmbeddedSamples(samples.z_text[ri], samples.y_model[ri], samples.y_reference[ri],
                                       ids=samples.ids[ri])
            a = core.analyse(sub, g["scenario"].tolist(), llava_bench.ID_SCENARIO, club=club, seed=seed,
                             n_boot=n_boot, n_perm=n_perm, level=level, wasserstein=None, clusters=images[ri])
            axes = g.groupby("scenario", sort=False)[["row", "col"]].first()
            tables.append(a.table.join(axes, on="scenario").assign(model=m, encoder=spec, grid=grid))
    return pd.concat(tables, ignore_index=True), lines


def correlations(results: pd.DataFrame, *, n_boot: int, level: float, seed: int) -> pd.DataFrame:
    """Per (model, encoder, grid): EMID vs the text-side sum and vs each varying text-side term as it enters
    the sum, with intervals over rows x columns; and EMID vs the sum with scenarios resampled as if
    independent (Pearson only), for contrast."""
    out = []
    for (m, spec, grid), t in results.groupby(["model", "encoder", "grid"], sort=False):
        ood = t[~t["is_source"]].assign(jsd_t_tr=lambda d: transformed(d["jsd_t"], "jsd_t"),
                                        jsd_qy_tr=lambda d: transformed(d["jsd_qy"], "jsd_qy"))
        pairs = {SIDE_SUM: ("emid", "jsd_sum"), "EMID vs sqrt(JSt)": ("emid", "jsd_t_tr"),
                 "EMID vs JSqy^1/4": ("emid", "jsd_qy_tr")}
        kw = {"n_boot": n_boot, "level": level, "seed": seed, "model": m, "encoder": spec, "grid": grid}
        out.append(core.correlation_table(ood, pairs, rows="row", cols="col", **kw))
        out.append(core.correlation_table(ood, {SIDE_SUM: ("emid", "jsd_sum")}, methods=["pearson"], **kw))
    return pd.concat(out, ignore_index=True)


def published(models) -> dict:
    """Paper B's released per-scenario values, per (model, grid)."""
    return {(m, g): llava_bench.published(m, g) for m in models for g in llava_bench.GRIDS}


def compare(results: pd.DataFrame, pubs: dict, *, n_boot: int, level: float, seed: int):
    """This project's EMI, EMID and text-side sum beside paper B's released EMI, EMID and bound, per scenario:
    (merged table, correlations between the two with crossed intervals, share of targets whose EMID has the
    published sign)."""
    merged_all, corr = [], []
    for (m, spec, grid), t in results.groupby(["model", "encoder", "grid"], sort=False):
        merged = t.merge(pubs[(m, grid)], on="scenario", how="left")
        merged_all.append(merged)
        kw = {"rows": "row", "cols": "col", "n_boot": n_boot, "level": level, "seed": seed, "methods": ["pearson"],
              "model": m, "encoder": spec, "grid": grid}
        corr.append(core.correlation_table(merged, {"EMI: ours vs published": ("emi", "pub_emi")}, **kw))
        corr.append(core.correlation_table(merged[~merged["is_source"]], {
            "EMID: ours vs published": ("emid", "pub_emid"),
            "text-side sum (ours) vs published bound": ("jsd_sum", "pub_bound")}, **kw))
    comparison = pd.concat(merged_all, ignore_index=True)
    sign = (comparison[~comparison["is_source"]].assign(agree=lambda d: np.sign(d["emid"]) == np.sign(d["pub_emid"]))
            .groupby(["model", "encoder", "grid"], sort=False)["agree"].mean().rename("EMID sign agrees (share)"))
    return comparison, pd.concat(corr, ignore_index=True), sign


def summary_lines(corr: pd.DataFrame, comparison_corr: pd.DataFrame, sign: pd.Series) -> list[str]:
    """Part 1's conclusions, computed from its tables."""
    lines = ["PART 1 — real LLaVA answers (data/llava_bench_shift/), TEXT ONLY: image term unknown, so these "
             "correlate EMID with the TEXT-SIDE SUM, a different estimand from paper B's bound"]
    for _, r in corr[(corr["resampling"] == "rows x columns") & (corr["pair"] == SIDE_SUM)
                     & (corr["method"] == "pearson")].iterrows():
        pub = verdicts.published_r(r["model"], r["grid"])["r"]
        lines.append(f"  {llava_bench.MODEL_LABELS[r['model']]}, {r['grid']} grid, {ENCODER_LABELS[r['encoder']]}: "
                     f"EMID vs text-side sum r = {r['r']:.2f} [{r['low']:.2f}, {r['high']:.2f}] over {r['n']} targets "
                     f"(published, with images and the bound: {pub:.2f}) -> "
                     f"{verdicts.versus_published(r['r'], r['low'], r['high'], r['model'], r['grid'])['outcome']}")
    for _, r in comparison_corr[comparison_corr["pair"] != "text-side sum (ours) vs published bound"].iterrows():
        lines.append(f"  {llava_bench.MODEL_LABELS[r['model']]}, {r['grid']}, {ENCODER_LABELS[r['encoder']]}: "
                     f"{r['pair']}: r = {r['r']:.2f} [{r['low']:.2f}, {r['high']:.2f}] over {r['n']} scenarios")
    for (m, spec, grid), share in sign.items():
        lines.append(f"  {llava_bench.MODEL_LABELS[m]}, {grid}, {ENCODER_LABELS[spec]}: EMID has the published sign "
                     f"in {share:.0%} of targets")
    return lines


def example(df: pd.DataFrame, item: str = "0") -> pd.DataFrame:
    """One question under the smoke run's shifts, with the model's answer (first 120 characters)."""
    ex = df[(df["id"] == item) & df["scenario"].isin(SMOKE_SCENARIOS)][["scenario", "question", "response"]]
    return ex.assign(response=ex["response"].str.slice(0, 120))
