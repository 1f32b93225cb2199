"""Paper B's shifted LLaVA-Bench sets (paper profile, untested online): hub specs in the schema paper B's code
reads, stand-ins in that schema, the grids' axes, and the offline judge. The end-to-end path (a stand-in
MLLM answering, stand-in CLIP / XLM-R, EMI per split) runs in tests/test_standin_run.py."""

from __future__ import annotations

import pytest

from mllm_ood.data import hub
from mllm_ood.paper_b.grids import hub as lbh
from mllm_ood.paper_b.judges import OverlapJudge
from mllm_ood.validation import ParameterError


def test_the_two_grids_hold_paper_b_s_61_shifted_scenarios_with_their_axes():
    syn, nat = lbh.scenarios("synthetic"), lbh.scenarios("natural")
    assert (len(syn), len(nat), lbh.n_scenarios(["synthetic", "natural"])) == (35, 28, 61)
    assert syn[0] == "llava_bench_coco" and nat[0] == "llava_bench_coco_English"
    assert lbh.axes("synthetic", "llava_bench_coco") == ("clean", "clean")
    assert lbh.axes("synthetic", "llava_bench_coco_defocus_blur_3_sr_7") == ("defocus_blur_3", "sr_7")
    assert lbh.axes("synthetic", "llava_bench_coco_KeyboardAug_1") == ("clean", "KeyboardAug_1")
    assert lbh.axes("natural", "llava_bench_in_the_wild_easy_Hindi") == ("in_the_wild_easy", "Hindi")
    assert {lbh.axes("synthetic", s) for s in syn} == {(v, t) for v in ("clean",) + lbh.IMAGE_SHIFTS
                                                       for t in ("clean", "sr_4", "sr_7", "KeyboardAug_1", "KeyboardAug_3")}
    smoke = lbh.scenarios("natural", smoke=True)
    assert smoke == ["llava_bench_coco_English", "llava_bench_coco_German", "llava_bench_in_the_wild_hard_English",
                     "llava_bench_in_the_wild_hard_German"]
    assert lbh.grid_of("hub:llavabench_shift_synthetic") == "synthetic"
    with pytest.raises(ParameterError, match="paper B hub dataset"):
        lbh.grid_of("hub:pacs")


def test_standin_has_the_card_schema_one_split_per_scenario(tmp_path, monkeypatch):
    spec = hub.SPECS["llavabench_shift_natural"]
    assert spec.hub_id == "changdae/llavabench-shift-natural-v1" and spec.untested_online
    hub.make_standin_dataset("llavabench_shift_natural", tmp_path / "nat", per_cell=3)
    files = sorted(p.name for p in (tmp_path / "nat" / "data").iterdir())
    assert len(files) == 28
    monkeypatch.setenv(hub.MIRROR_ENV, str(tmp_path))
    (tmp_path / "llavabench_shift_natural").symlink_to(tmp_path / "nat")
    ds = hub.load_hub_split("llavabench_shift_natural", "llava_bench_in_the_wild_hard_Greek")
    assert ds.column_names == ["image", "question", "reference_answer"] and len(ds) == 10  # at least 10 per split
    assert ds.features["image"].__class__.__name__ == "Image"
    with pytest.raises(ParameterError, match="scenario of llavabench_shift_natural"):
        hub.load_hub_split("llavabench_shift_natural", "llava_bench_coco_Klingon")


def test_overlap_judge_is_a_relative_score_in_0_1():
    j = OverlapJudge()
    ref = "A red bus parked on the street."
    assert j("q", ref, ref) == 1.0
    assert j("q", "", ref) == 0.0 and j("q", "Nothing here", ref) == 0.0
    assert 0 < j("q", "the bus is red", ref) < 1
