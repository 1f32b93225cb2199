"""Paper B's main.py replayed (mllm_ood.paper_b.replay): the shipped checkpoint and split indices, the EMI
formula and the size-weighted JSD against independent numpy re-implementations of main.py's code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mllm_ood.paper_b import replay
from mllm_ood.paper_b.divergences import representation_jsd, representation_jsd_covariance
from mllm_ood.paper_b.grids import llava_bench
from mllm_ood.validation import ParameterError


def _unit(rng, n, d=768):
    z = rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


# ---- main.py's formulas, written again in numpy from its source (not from the module under test)

def _np_club(state, x, y):
    w = {k: v.numpy().astype(np.float64) for k, v in state.items()}
    mu = np.tanh(x @ w["p_mu.0.weight"].T + w["p_mu.0.bias"]) @ w["p_mu.2.weight"].T + w["p_mu.2.bias"]
    logvar = np.tanh(np.tanh(x @ w["p_logvar.0.weight"].T + w["p_logvar.0.bias"]) @ w["p_logvar.2.weight"].T
                     + w["p_logvar.2.bias"])
    positive = -(mu - y) ** 2 / 2.0 / np.exp(logvar)
    negative = np.stack([-((y - mu[i]) ** 2).mean(axis=0) for i in range(len(x))]) / 2.0 / np.exp(logvar)
    return (positive.sum(-1) - negative.sum(-1)).mean()


def _np_vn_entropy(k):
    ek = np.linalg.eigvalsh(k)
    ek = ek[ek > 0]
    ek = ek / ek.sum()
    return -(ek * np.log(ek)).sum()


def _np_jsd_cov(px, qx):
    cx, cy = px.T @ px, qx.T @ qx  # main.py: sums over items
    return _np_vn_entropy((cx + cy) / 2) - 0.5 * (_np_vn_entropy(cx) + _np_vn_entropy(cy))


# ---- shipped files


def test_split_indices_are_the_30_30_halves():
    idx = replay.wild_indices()
    assert len(idx["easy"]) == len(idx["hard"]) == 30
    assert sorted(idx["easy"] + idx["hard"]) == list(range(60)) and idx["normal"] == tuple(range(60))
    # main.py's easy_ood_fst_cd_new / hard_ood_fst_cd_new in the pickle's order (it pairs hub rows with answers by it)
    assert idx["easy"][:4] == (9, 8, 41, 42) and idx["hard"][:4] == (22, 21, 4, 5)


def test_corrupt_or_missing_shipped_file_is_one_clear_error(tmp_path, monkeypatch):
    for name in replay.SHA256:
        shutil.copy(replay.FOLDER / name, tmp_path / name)
    monkeypatch.setattr(replay, "FOLDER", tmp_path)
    replay.shipped_file("CLUB_global.pt")  # intact copy passes
    with open(tmp_path / "CLUB_global.pt", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ParameterError, match="corrupt"):
        replay.shipped_file("CLUB_global.pt")
    (tmp_path / "lbwild_split_idx.json").unlink()
    with pytest.raises(ParameterError, match="missing"):
        replay.shipped_file("lbwild_split_idx.json")


def test_released_checkpoint_reproduces_main_py_emi():
    club = replay.load_released_club()
    state = torch.load(replay.FOLDER / "CLUB_global.pt", map_location="cpu", weights_only=True)
    assert set(state) == {f"{p}.{i}.{w}" for p in ("p_mu", "p_logvar") for i in (0, 2) for w in ("weight", "bias")}
    rng = np.random.default_rng(3)
    zv, zt, yh, y = (_unit(rng, 24) for _ in range(4))
    x = (zv + zt) * 0.5
    got, mm, mr = replay.emi(club, x, yh, y)
    want_m, want_r = _np_club(state, x, yh), _np_club(state, x, y)
    assert mm == pytest.approx(want_m, rel=1e-4, abs=1e-5) and mr == pytest.approx(want_r, rel=1e-4, abs=1e-5)
    assert got == pytest.approx(want_m - want_r, abs=1e-4)
    assert replay.Split(zv, zt, yh, y).x == pytest.approx(x)
    with pytest.raises(ParameterError, match="768"):
        replay.emi(club, x[:, :384], yh[:, :384], y[:, :384])


def test_size_weighted_jsd_is_main_py_and_equal_is_the_project_default():
    rng = np.random.default_rng(0)
    p, q = _unit(rng, 90, 16), _unit(rng, 30, 16) + 0.3
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    size = representation_jsd(p, q, weighting="size")
    equal = representation_jsd(p, q)
    assert size == pytest.approx(_np_jsd_cov(p, q), abs=1e-10)  # main.py's JSD_cov of sums over items
    assert equal == pytest.approx(representation_jsd_covariance(p, q), abs=1e-10)
    assert abs(size - equal) > 1e-3  # unequal sizes: the weighting matters
    # hand computation of the equal mixture: trace-normalised second moments averaged with weights 1/2
    cp, cq = p.T @ p / len(p), q.T @ q / len(q)
    hand = _np_vn_entropy((cp + cq) / 2) - 0.5 * (_np_vn_entropy(cp) + _np_vn_entropy(cq))
    assert equal == pytest.approx(hand, abs=1e-10)
    q2 = q[:30], p[:30]
    assert representation_jsd(*q2, weighting="size") == pytest.approx(representation_jsd(*q2), abs=1e-12)
    with pytest.raises(ParameterError, match="weighting"):
        representation_jsd(p, q, weighting="sizes")


def test_replay_grid_bound_is_main_py_emid_upper_bound():
    rng = np.random.default_rng(1)
    splits = {s: replay.Split(*(_unit(rng, n) for _ in range(4))) for s, n in
              [("llava_bench_coco_English", 12), ("llava_bench_in_the_wild_easy_German", 6),
               ("llava_bench_coco_German", 12)]}
    t = replay.replay_grid(splits, "llava_bench_coco_English").set_index("scenario")
    p, q = splits["llava_bench_coco_English"], splits["llava_bench_in_the_wild_easy_German"]
    js = [_np_jsd_cov(p.z_v, q.z_v), _np_jsd_cov(p.z_t, q.z_t), _np_jsd_cov(p.y_model, p.y_reference),
          _np_jsd_cov(q.y_model, q.y_reference)]
    row = t.loc["llava_bench_in_the_wild_easy_German"]
    assert row["bound"] == pytest.approx(js[0] ** .5 + js[1] ** .5 + js[2] ** .25 + js[3] ** .25, abs=1e-8)
    assert row["emid"] == pytest.approx(t.loc["llava_bench_coco_English", "emi"] - row["emi"])
    assert np.isnan(t.loc["llava_bench_coco_English", "bound"])


@pytest.mark.parametrize("model", list(llava_bench.MODELS))
@pytest.mark.parametrize("grid", list(llava_bench.GRIDS))
def test_modality_lists_and_published_r(model, grid):
    counts = {"synthetic": {"ALL": 34, "V": 6, "T": 4, "J": 24}, "natural": {"ALL": 27, "V": 3, "T": 6, "J": 18}}
    pub = replay.published_table(model, grid)
    corr = replay.modality_correlations(pub, grid, emid="pub_emid", bound="pub_bound").set_index("modality")
    assert corr["n"].to_dict() == counts[grid]
    # main.py's ALL-list Pearson r, recomputed from its own per-scenario values
    assert corr.loc["ALL", "r"] == pytest.approx(llava_bench.published_raw(model, grid)["PearsonR"], abs=1e-9)


def test_shipped_answers_index_the_wild_set_once():
    m = "llava-v1.5-13b"
    full = llava_bench.table(m, scenarios=["llava_bench_in_the_wild_German"])["response"].tolist()
    idx = replay.wild_indices()
    assert replay.shipped_answers(m, "llava_bench_in_the_wild_normal_German") == full
    assert replay.shipped_answers(m, "llava_bench_in_the_wild_easy_German") == [full[i] for i in idx["easy"]]
    assert replay.shipped_answers(m, "llava_bench_in_the_wild_hard_German") == [full[i] for i in idx["hard"]]
    coco = llava_bench.table(m, scenarios=[llava_bench.ID_SCENARIO])["response"].tolist()
    assert replay.shipped_answers(m, "llava_bench_coco_English") == coco and len(coco) == 90
    assert len(replay.shipped_answers(m, "llava_bench_coco_frost_5_sr_7")) == 90
