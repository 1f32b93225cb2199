"""Paper-profile dataset specs, tested offline on stand-ins saved in the hub's parquet layout."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from datasets import load_dataset

from mllm_ood.data.hub import SPECS, load_hub, make_standin_dataset
from mllm_ood.validation import ParameterError


def _images(n):
    r = np.random.default_rng(0)
    return [PILImage.fromarray(r.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]


def _save_hub_layout(ds: Dataset, root, split="train"):
    (root / "data").mkdir(parents=True)
    ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_classlabel_dataset_in_hub_layout(tmp_path):
    names = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
    feats = Features({"image": Image(), "domain": Value("string"), "label": ClassLabel(names=names)})
    ds = Dataset.from_dict({"image": _images(6), "domain": ["photo", "photo", "sketch", "sketch", "art_painting",
                                                            "cartoon"], "label": [0, 1, 2, 3, 4, 6]}, features=feats)
    src = _save_hub_layout(ds, tmp_path / "pacs")
    out = load_hub("pacs", source=src)
    assert set(out.column_names) == {"id", "image", "label", "domain"}
    # classes come in paper A's order (its dataset_info.json), each image keeping its class
    paper_order = ["dog", "giraffe", "horse", "person", "guitar", "elephant", "house"]
    assert out.features["label"].names == paper_order
    assert [paper_order[k] for k in out["label"]] == [names[k] for k in [0, 1, 2, 3, 4, 6]]
    assert out[0]["image"].size == (8, 8)
    sketch = load_hub("pacs", source=src, domains="sketch")
    assert len(sketch) == 2 and set(sketch["domain"]) == {"sketch"}
    with pytest.raises(ParameterError, match="unknown domain 'quickdraw'"):
        load_hub("pacs", source=src, domains="quickdraw")


def test_string_labels_and_save_to_disk_layout(tmp_path):
    # HAM10000 as paper A uses it: domains = dx_type, classes = full diagnosis names from the dx codes.
    ds = Dataset.from_dict({"image": _images(4), "dx": ["nv", "mel", "nv", "bkl"],
                            "dx_type": ["histo", "follow_up", "histo", "consensus"],
                            "localization": ["back", "face", "back", "trunk"]},
                           features=Features({"image": Image(), "dx": Value("string"), "dx_type": Value("string"),
                                              "localization": Value("string")}))
    ds.save_to_disk(str(tmp_path / "ham"))
    out = load_hub("ham10000", source=tmp_path / "ham")
    names = out.features["label"].names
    assert len(names) == 7 and "melanocytic nevi" in names
    assert [names[v] for v in out["label"]] == ["melanocytic nevi", "melanoma", "melanocytic nevi",
                                                "benign keratosis-like lesions"]
    assert out["domain"] == ["histo", "follow_up", "histo", "consensus"]
    bad = Dataset.from_dict({"image": _images(1), "dx": ["xyz"], "dx_type": ["histo"]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ParameterError, match=r"labels \['xyz'\] are not among"):
        load_hub("ham10000", source=tmp_path / "bad")


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.label_column])
def test_standin_dataset_has_the_card_schema(name, tmp_path):
    spec = SPECS[name]
    src = make_standin_dataset(name, tmp_path / name, per_cell=1)
    raw = load_dataset(str(src), split=spec.split)
    assert raw.column_names == list(spec.card)  # the card's columns, in its order
    for col, dtype in spec.card.items():
        feat = raw.features[col]
        assert (type(feat).__name__, getattr(feat, "dtype", None)) == {
            "image": ("Image", "PIL.Image.Image"), "classlabel": ("ClassLabel", "int64"),
            "string": ("Value", "string"), "int64": ("Value", "int64"), "float64": ("Value", "float64")}[dtype], col
    out = load_hub(name, source=src)
    assert sorted(set(out["domain"])) == sorted(spec.domains)
    assert len(out) == len(spec.domains) * len(spec.label_values)  # one image per domain x class
    assert out[0]["image"].size == tuple(spec.image_size)


def test_vqa_spec(tmp_path):
    ds = Dataset.from_dict({"image": _images(3), "question_id": [0, 1, 2], "question": ["q0", "q1", "q2"],
                            "gpt_answer": ["a0", "a1", "a2"]}, features=Features(
        {"image": Image(), "question_id": Value("int64"), "question": Value("string"), "gpt_answer": Value("string")}))
    out = load_hub("llava_bench_in_the_wild", source=_save_hub_layout(ds, tmp_path / "wild"))
    assert out["id"] == ["0", "1", "2"] and out["reference"] == ["a0", "a1", "a2"]


def test_bad_requests(tmp_path):
    with pytest.raises(ParameterError, match="unknown hub dataset 'imagenet'"):
        load_hub("imagenet", source=tmp_path)
    with pytest.raises(ParameterError, match="does not exist"):
        load_hub("pacs", source=tmp_path / "missing")
    ds = Dataset.from_dict({"image": _images(2), "label": [0, 1]})
    with pytest.raises(ParameterError, match=r"columns \['domain'\] missing"):
        load_hub("pacs", source=_save_hub_layout(ds, tmp_path / "nodomain"))


def test_every_spec_is_marked_untested_online():
    assert len(SPECS) >= 8 and all(s.untested_online for s in SPECS.values())


def test_paper_a_dataset_list_names_a_spec_or_a_reason():
    from mllm_ood.data.hub import PAPER_A_DATASETS

    assert len(PAPER_A_DATASETS) == 20  # paper A's code lists 20 datasets
    for name, (spec, why) in PAPER_A_DATASETS.items():
        if spec is None:
            assert len(why) > 10, f"{name}: no spec and no reason"
        else:
            assert spec in SPECS and SPECS[spec].label_column and SPECS[spec].untested_online, name
    specs = {s for s, _ in PAPER_A_DATASETS.values() if s}
    assert specs == {n for n, s in SPECS.items() if s.label_column}  # every classification spec is one of paper A's


def test_every_class_and_domain_of_every_spec_has_a_description_with_its_source():
    from mllm_ood.data import world
    from mllm_ood.formats.prompts import _descriptions, class_descriptions, domain_context

    table = _descriptions()
    for name, spec in SPECS.items():
        if not spec.label_column:
            continue
        classes = spec.class_names or tuple(str(v) for v in spec.label_values)
        missing = [c for c in classes if c not in table["classes"]]
        assert not missing, f"{name}: classes without a description: {missing}"
        assert all(f"{c}: " in class_descriptions(classes) for c in classes)  # 'Hints: a: ...; b: ...'
        for dom in spec.domains:
            assert domain_context(f"hub:{name}", str(dom)), f"{name}/{dom}: no domain context"
        assert set(table["sources"][f"hub:{name}"]) == {"classes", "domains"}
    for name, info in world.DATASETS.items():
        assert all(c in table["classes"] for c in info.class_names), name
        assert name in table["sources"], name
    assert all(v for src in table["sources"].values() for v in src.values())


def test_readme_lists_paper_a_datasets():
    from mllm_ood.data.hub import PAPER_A_DATASETS
    from mllm_ood.paths import ROOT

    readme = (ROOT / "README.md").read_text()
    for name, (spec, _) in PAPER_A_DATASETS.items():
        assert name.split("_v")[0].replace("drugood_", "") in readme, name
        if spec:
            assert f"`{spec}` (`{SPECS[spec].hub_id}`)" in readme, spec
