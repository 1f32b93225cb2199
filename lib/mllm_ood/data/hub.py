"""Paper-profile data: dataset specs that turn a Hugging Face hub dataset into the embedded world's
schema (``id``, ``image``, ``label`` ClassLabel, ``domain``; VQA sets get ``question``/``reference``
instead of ``label``).

The hub ids and column names below were read off the public dataset cards; none of them can be
downloaded on the project's machines, so every spec is marked ``untested_online=True``. The loading
code itself is tested offline on small datasets saved in the hub's parquet layout
(``<dir>/data/<split>-00000-of-00001.parquet``), passed as ``source=``, or found in a local mirror:
``$MLLM_OOD_HUB_MIRROR/<spec name>/`` (what ``run_all.sh --standin`` points at).

Class names come in paper A's order where its code lists the dataset (:mod:`mllm_ood.data.paper_a_lists`;
the hub's ClassLabel order is alphabetical): the labels are renumbered to match, so every prompt's choice
list and the parser's search order are paper A's.

Each spec also records the card's schema (``card``: column -> 'image' / 'string' / 'int64' /
'float64' / 'classlabel'), the values of its domain column and the values (or ClassLabel names) of its
label column, so that :func:`make_standin_dataset` writes a stand-in in exactly that schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import hf_datasets_cache
from . import paper_a_lists
from ..validation import ParameterError, check_choice


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    hub_id: str
    split: str
    image_column: str
    label_column: str | None = "label"  # None for VQA sets
    domain_column: str | None = "domain"  # None: one domain named after the dataset
    class_names: tuple[str, ...] | None = None  # None: read from the ClassLabel feature
    config: str | None = None
    id_column: str | None = None
    question_column: str | None = None
    reference_column: str | None = None
    untested_online: bool = True
    note: str = ""
    label_map: dict = field(default_factory=dict)  # raw label value -> class name, for string labels
    card: dict = field(default_factory=dict)  # the card's columns: name -> dtype (see module docstring)
    domains: tuple[str, ...] = ()  # values of the domain column (card / paper A)
    label_values: tuple = ()  # ClassLabel names, or the raw values of a string label column
    image_size: tuple[int, int] = (224, 224)  # (width, height) of the card's images, for stand-ins
    splits: tuple[str, ...] = ()  # datasets whose *splits* are scenarios (paper B's shifted sets): their names
    split_domains: dict = field(default_factory=dict)  # split -> its domains, when ``split`` joins several ("a+b")


SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("pacs", "flwrlabs/pacs", "train", "image", "label", "domain",
                    note="PACS: photo, art_painting, cartoon, sketch; 7 classes",
                    card={"image": "image", "domain": "string", "label": "classlabel"},
                    domains=("art_painting", "cartoon", "photo", "sketch"),
                    label_values=("dog", "elephant", "giraffe", "guitar", "horse", "house", "person"),
                    image_size=(227, 227)),
        DatasetSpec("vlcs", "flwrlabs/vlcs", "train", "image", "label", "domain",
                    note="VLCS: Caltech101, LabelMe, SUN09, VOC2007; 5 classes",
                    card={"image": "image", "domain": "string", "label": "classlabel"},
                    domains=("Caltech101", "LabelMe", "SUN09", "VOC2007"),
                    label_values=("bird", "car", "chair", "dog", "person")),
        DatasetSpec("officehome", "flwrlabs/office-home", "train", "image", "label", "domain",
                    note="OfficeHome: Art, Clipart, Product, Real World; 65 classes (stand-in: first 5)",
                    card={"image": "image", "domain": "string", "label": "classlabel"},
                    domains=("Art", "Clipart", "Product", "Real World"),
                    label_values=("Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike")),
        DatasetSpec("domainnet", "flwrlabs/domainnet", "train", "image", "label", "domain",
                    note="DomainNet: clipart, infograph, painting, quickdraw, real, sketch; 345 classes "
                         "(stand-in: first 5)",
                    card={"image": "image", "domain": "string", "label": "classlabel"},
                    domains=("clipart", "infograph", "painting", "quickdraw", "real", "sketch"),
                    label_values=("aircraft_carrier", "airplane", "alarm_clock", "ambulance", "angel")),
        # WILDS keeps hospitals 0, 3, 4 in id_train and hospital 1 in ood_val (hospital 2 is ood_test); paper A
        # evaluates hospital_0 and hospital_1, so both splits are read (datasets' "a+b" split syntax).
        DatasetSpec("camelyon17", "jxie/camelyon17", "id_train+ood_val", "image", "label", "hospital",
                    class_names=("normal", "tumor"), label_map={"0": "normal", "1": "tumor"},
                    note="WILDS Camelyon17 patches; domains = hospitals (0, 3, 4 from id_train; 1 from ood_val)",
                    card={"image": "image", "label": "int64", "hospital": "int64"},
                    domains=("0", "3", "4", "1"), label_values=(0, 1), image_size=(96, 96),
                    split_domains={"id_train": ("0", "3", "4"), "ood_val": ("1",)}),
        # Paper A's HAM10000 domains are the diagnosis-confirmation types (dx_type) and its classes the
        # full diagnosis names (its code's dataset list: 'actinic keratoses and intraepithelial carcinoma', ...);
        # the card's dx column holds codes (HAM10000_metadata.csv) -- both the codes
        # and the underscore names some mirrors use map to the full names (the values are untested online).
        DatasetSpec("ham10000", "marmal88/skin_cancer", "train", "image", "dx", "dx_type",
                    class_names=("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                                 "benign keratosis-like lesions",
                                 "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
                    label_map={"akiec": "actinic keratoses and intraepithelial carcinoma", "bcc": "basal cell carcinoma",
                               "bkl": "benign keratosis-like lesions", "df": "dermatofibroma", "mel": "melanoma",
                               "nv": "melanocytic nevi", "vasc": "vascular lesions",
                               "actinic_keratoses": "actinic keratoses and intraepithelial carcinoma",
                               "basal_cell_carcinoma": "basal cell carcinoma",
                               "benign_keratosis-like_lesions": "benign keratosis-like lesions",
                               "melanocytic_Nevi": "melanocytic nevi", "vascular_lesions": "vascular lesions"},
                    note="HAM10000 dermoscopy; domains = dx_type (histo, follow_up, consensus, confocal); "
                         "classes = full diagnosis names",
                    card={"image": "image", "image_id": "string", "lesion_id": "string", "dx": "string",
                          "dx_type": "string", "age": "float64", "sex": "string", "localization": "string"},
                    domains=("histo", "follow_up", "consensus", "confocal"),
                    label_values=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"), image_size=(600, 450)),
        DatasetSpec("llava_bench_coco", "lmms-lab/llava-bench-coco", "train", "image", None, None,
                    id_column="question_id", question_column="question", reference_column="answer",
                    note="LLaVA-Bench COCO (90 questions), the clean source of paper B's synthetic shifts"),
        DatasetSpec("llava_bench_in_the_wild", "lmms-lab/llava-bench-in-the-wild", "train", "image", None, None,
                    id_column="question_id", question_column="question", reference_column="gpt_answer",
                    note="LLaVA-Bench in-the-wild (60 questions), paper B's natural-shift images"),
        # Paper B's shifted LLaVA-Bench sets: one split per scenario. Confirmed from paper B's released code
        # (main.py of deeplearning-wisc/mllmshift-emi: ``load_dataset(ds_id)[scenario]`` and its columns
        # ``image``, ``question``, ``reference_answer``; the split names are its scenario lists). Not
        # confirmed: any further column of the cards (none is used), the number of questions per split
        # (stand-ins: ``per_cell``, at least 10), the image sizes. Untested online.
        DatasetSpec("llavabench_shift_synthetic", "changdae/llavabench-shift-synthetic-v1", "", "image", None, None,
                    question_column="question", reference_column="reference_answer",
                    note="paper B's synthetic shifts: LLaVA-Bench COCO x (defocus blur, frost 1/3/5) x "
                         "(synonym replacement 4/7, keyboard typos 1/3) = 35 splits; GPT-4 reference answers",
                    card={"image": "image", "question": "string", "reference_answer": "string"},
                    splits=tuple(f"llava_bench_coco{v}{t}" for v in
                                 ("", "_defocus_blur_1", "_defocus_blur_3", "_defocus_blur_5", "_frost_1",
                                  "_frost_3", "_frost_5")
                                 for t in ("", "_sr_4", "_sr_7", "_KeyboardAug_1", "_KeyboardAug_3")),
                    image_size=(640, 480)),
        DatasetSpec("llavabench_shift_natural", "changdae/llavabench-shift-natural-v1", "", "image", None, None,
                    question_column="question", reference_column="reference_answer",
                    note="paper B's natural shifts: LLaVA-Bench COCO and in-the-wild easy / normal / hard x the "
                         "question in 7 languages = 28 splits; GPT-4 reference answers",
                    card={"image": "image", "question": "string", "reference_answer": "string"},
                    splits=tuple(f"{v}_{t}" for v in ("llava_bench_coco", "llava_bench_in_the_wild_easy",
                                                      "llava_bench_in_the_wild_normal",
                                                      "llava_bench_in_the_wild_hard")
                                 for t in ("English", "German", "Chinese", "Korean", "Greek", "Arabic", "Hindi")),
                    image_size=(640, 480)),
    ]
}


# Paper A's 20 datasets, as its code lists them (data/dataset_info.json of github.com/jiansheng-li/MLLMs), each
# with the spec that loads it here or why there is none. Hub searches as of 2026-12 (no download possible
# from the project's machines): README's paper-profile section prints this table.
PAPER_A_DATASETS: dict[str, tuple[str | None, str]] = {
    "PACS": ("pacs", ""),
    "VLCS": ("vlcs", "paper A's code evaluates the Caltech101 and LabelMe domains; the spec has all four"),
    "office_home": ("officehome", ""),
    "domain_net": ("domainnet", ""),
    "camelyon17_v1.0_processed": ("camelyon17", "paper A's code names the domains hospital_0, hospital_1; the card's "
                                                "hospital column holds integers"),
    "HAM10000": ("ham10000", ""),
    "CMNIST": (None, "no hub copy of paper A's coloured-MNIST test set found; the embedded world's colored_mnist "
                     "builds the same kind of shift offline from its own digits"),
    "RNIST": (None, "no hub copy of paper A's rotated-MNIST test set found; the embedded world's rotated_mnist "
                    "builds it offline"),
    "NICO_DG": (None, "NICO++ is distributed by its authors (registration); the one hub copy found "
                      "(2018LZY/NICOplusplus) is an unofficial 20-class subset whose viewer fails to build "
                      "('Invalid string class label'): not loadable as is"),
    "fmow_v1.1_processed": (None, "WILDS download (wilds package); the hub copy found (djghosh/wds_wilds-fmow_test) is "
                                  "a webdataset of the test split whose region sits inside a metadata array, not a "
                                  "column, with class names in a side file: unconfirmed, no spec"),
    "terra_incognita": (None, "no hub copy found (DomainBed downloads it from the LILA Caltech Camera Traps release)"),
    "iwildcam_v2.0_processed": (None, "WILDS download; the hub copy found (djghosh/wds_wilds-iwildcam_test: __key__, "
                                      "cls int64, jpg, npy) keeps the location inside the npy metadata array, not a "
                                      "column, and class names in a side file: no spec"),
    "sviro": (None, "no hub copy found (distributed by DFKI from its own site)"),
    "NIH-Chest": (None, "hub copy alkzar90/NIH-Chest-X-ray-dataset is a loading script over zip archives (datasets 4+ "
                        "no longer runs loading scripts) and multi-label; paper A's single domain gives no shift"),
    "CT-Xcov": (None, "no hub copy found of paper A's COVID CT set; its single domain gives no shift"),
    "XCOVFour": (None, "no hub copy found of paper A's four-class chest X-ray set; its single domain gives no shift"),
    "drugood_assay": (None, "DrugOOD curates molecules (SMILES) from ChEMBL with its own tool, not images; no hub copy "
                            "of paper A's rendered images; the embedded world's molecules_* render their own"),
    "drugood_protein": (None, "as drugood_assay"),
    "drugood_size": (None, "as drugood_assay (the embedded world's molecules_size is the offline analogue)"),
    "drugood_scaffold": (None, "as drugood_assay (the embedded world's molecules_scaffold is the offline analogue)"),
}


MIRROR_ENV = "MLLM_OOD_HUB_MIRROR"


def _open(spec: DatasetSpec, source: str | Path | None):
    import os

    import datasets

    if source is None and os.environ.get(MIRROR_ENV):  # a local mirror (stand-ins in a dry run)
        source = Path(os.environ[MIRROR_ENV]) / spec.name
        if not source.exists():
            raise ParameterError(f"{spec.name}: no copy in the local mirror {os.environ[MIRROR_ENV]} "
                                 f"(${MIRROR_ENV}); expected {source}")
    if source is None:  # the real hub download (needs network; untested here)
        return datasets.load_dataset(spec.hub_id, spec.config, split=spec.split)
    src = Path(source)
    if not src.exists():
        raise ParameterError(f"dataset source {str(src)!r} does not exist")
    if (src / "state.json").exists() or (src / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(str(src))
        if not isinstance(ds, datasets.DatasetDict):
            return ds
        return datasets.concatenate_datasets([ds[part] for part in spec.split.split("+")])
    try:
        return datasets.load_dataset(str(src), spec.config, split=spec.split)
    except ValueError as err:  # e.g. unknown split
        raise ParameterError(f"cannot read split {spec.split!r} of {spec.name} from {src}: {err}") from err


def load_hub(name: str, source: str | Path | None = None, domains=None):
    """Load the paper-profile dataset ``name`` (a key of SPECS) in the project's schema.

    source: None downloads ``spec.hub_id`` from the hub (paper profile, needs network); a local
    directory in the hub layout or a ``save_to_disk`` folder is read instead (tests, offline mirrors).
    """
    from datasets import ClassLabel

    check_choice("hub dataset", name, SPECS)
    spec = SPECS[name]
    ds = _open(spec, source)
    wanted = [c for c in (spec.image_column, spec.label_column, spec.domain_column, spec.id_column,
                          spec.question_column, spec.reference_column) if c]
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise ParameterError(f"{name}: columns {missing} missing from the dataset (has {ds.column_names})")
    n = len(ds)
    ids = [str(v) for v in ds[spec.id_column]] if spec.id_column else [f"{name}-{i:06d}" for i in range(n)]
    doms = [str(v) for v in ds[spec.domain_column]] if spec.domain_column else [name] * n
    out = ds.select_columns([spec.image_column]).rename_column(spec.image_column, "image") \
        if spec.image_column != "image" else ds.select_columns(["image"])
    out = out.add_column("id", ids).add_column("domain", doms)
    if spec.label_column:
        feat = ds.features[spec.label_column]
        raw = list(ds[spec.label_column])
        if isinstance(feat, ClassLabel):
            names = list(spec.class_names or feat.names)
            labels = raw
        else:
            names = list(spec.class_names or sorted({str(v) for v in raw}))
            index = {c: i for i, c in enumerate(names)}
            index.update({k: index[v] for k, v in spec.label_map.items() if v in index})
            unknown = sorted({str(v) for v in raw} - set(index))
            if unknown:
                raise ParameterError(f"{name}: labels {unknown[:5]} are not among the class names {names}"
                                     + (f" nor the mapped values {sorted(spec.label_map)}" if spec.label_map else ""))
            labels = [index[str(v)] for v in raw]
        # Paper A's class order (its prompts' choice lists and its parser's search order), labels renumbered.
        ordered = paper_a_lists.class_order(spec.name, names)
        if ordered != names:
            new = {c: i for i, c in enumerate(ordered)}
            labels = [new[names[y]] for y in labels]
            names = ordered
        out = out.add_column("label", labels).cast_column("label", ClassLabel(names=names))
    else:
        out = out.add_column("question", list(ds[spec.question_column]))
        out = out.add_column("reference", list(ds[spec.reference_column]))
    if domains is not None:
        wanted_d = {domains} if isinstance(domains, str) else set(domains)
        present = set(doms)
        bad = sorted(wanted_d - present)
        if bad:
            raise ParameterError(f"unknown domain {bad[0]!r} of {name}; allowed: {sorted(present)}")
        out = out.select([i for i, d in enumerate(doms) if d in wanted_d])
    return out


def load_hub_split(name: str, split: str, source: str | Path | None = None):
    """One scenario (split) of a dataset whose splits are scenarios (``spec.splits``, paper B's shifted
    LLaVA-Bench sets) as a ``datasets.Dataset`` with the card's columns, in the hub's order. Read from
    ``source`` / the local mirror (stand-ins) like :func:`load_hub`, else from the hub (untested online)."""
    import os

    import datasets

    check_choice("hub dataset", name, SPECS)
    spec = SPECS[name]
    if not spec.splits:
        raise ParameterError(f"{name}: its splits are not scenarios; use load_hub")
    check_choice(f"scenario of {name}", split, spec.splits)
    if source is None and os.environ.get(MIRROR_ENV):
        source = Path(os.environ[MIRROR_ENV]) / spec.name
        if not source.exists():
            raise ParameterError(f"{spec.name}: no copy in the local mirror {os.environ[MIRROR_ENV]} "
                                 f"(${MIRROR_ENV}); expected {source}")
    if source is None:  # the real hub download (needs network; untested here)
        ds = datasets.load_dataset(spec.hub_id, split=split)
    else:
        f = Path(source) / "data" / f"{split}-00000-of-00001.parquet"
        if not f.is_file():
            raise ParameterError(f"{name}: no file for scenario {split!r} in {source} (expected {f})")
        ds = hf_datasets_cache.load("parquet", str(f))  # checked, and rebuilt when damaged
    missing = [c for c in (spec.image_column, spec.question_column, spec.reference_column) if c not in ds.column_names]
    if missing:
        raise ParameterError(f"{name}/{split}: columns {missing} missing from the dataset (has {ds.column_names})")
    return ds


def _standin_splits(spec: DatasetSpec, out: Path, per_cell: int, seed: int) -> Path:
    """Stand-in of a split-per-scenario VQA set: ``max(per_cell, 10)`` questions per split; the same images
    and questions in every split (paired, as paper B's synthetic set), with the split's name in the question
    so that shifted splits differ; random colour-field JPEGs, corrupted splits blurred."""
    import io

    import numpy as np
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage
    from PIL import ImageFilter

    n = max(per_cell, 10)
    types = {"string": Value("string"), "image": Image()}
    feats = Features({c: types[t] for c, t in spec.card.items()})
    w, h = spec.image_size
    r = np.random.default_rng(seed)
    base = [PILImage.fromarray(r.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((w, h), PILImage.BILINEAR)
            for _ in range(n)]
    encoded: dict[int, list] = {}  # blur level -> the n images as JPEG bytes (COCO's format), encoded once

    def images(level: int) -> list:
        if level not in encoded:
            out_ = []
            for im in base:
                buf = io.BytesIO()
                (im.filter(ImageFilter.GaussianBlur(level)) if level else im).save(buf, format="JPEG", quality=85)
                out_.append({"bytes": buf.getvalue(), "path": None})
            encoded[level] = out_
        return encoded[level]

    words = ["colour", "object", "left", "right", "person", "table", "sky", "dog", "street", "food"]
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split in spec.splits:
        level = next((int(c) for c in reversed(split) if c.isdigit()), 0) if ("blur" in split or "frost" in split) else 0
        tag = split.replace("llava_bench_", "").replace("_", " ")
        rows = {spec.image_column: images(level),
                spec.question_column: [f"What is the {words[k % len(words)]} in image {k}? ({tag})" for k in range(n)],
                spec.reference_column: [f"The image {k} shows a {words[(3 * k) % len(words)]} near a "
                                        f"{words[(7 * k + 1) % len(words)]}." for k in range(n)]}
        Dataset.from_dict(rows, features=feats).to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    return out


def make_standin_dataset(name: str, out_dir: str | Path, per_cell: int = 2, seed: int = 0) -> Path:
    """Write a stand-in of hub dataset ``name`` in the card's exact schema (columns, feature types, split
    name, domain and label values) in the hub's parquet layout: ``per_cell`` random-noise images of the
    card's size per domain x class. Returns ``out_dir`` (pass it as ``source=`` or put it in a mirror)."""
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image, Value
    from PIL import Image as PILImage

    check_choice("hub dataset", name, SPECS)
    spec = SPECS[name]
    if spec.splits and spec.card:
        return _standin_splits(spec, Path(out_dir), per_cell, seed)
    if not spec.card or not spec.label_column:
        raise ParameterError(f"{name}: no card schema or no label column recorded; cannot write a stand-in")
    r = np.random.default_rng(seed)
    types = {"string": Value("string"), "int64": Value("int64"), "float64": Value("float64"), "image": Image()}
    feats = Features({c: ClassLabel(names=list(spec.label_values)) if t == "classlabel" else types[t]
                      for c, t in spec.card.items()})
    rows: dict[str, list] = {c: [] for c in spec.card}
    w, h = spec.image_size
    k = 0
    for dom in spec.domains:
        for y, value in enumerate(spec.label_values):
            for _ in range(per_cell):
                for c, t in spec.card.items():
                    if c == spec.image_column:
                        # smooth random colour fields (8x8 noise upsampled): PNG keeps them small
                        v = PILImage.fromarray(r.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(
                            (w, h), PILImage.BILINEAR)
                    elif c == spec.label_column:
                        v = y if t == "classlabel" else value
                    elif c == spec.domain_column:
                        v = int(dom) if t == "int64" else dom
                    else:
                        v = {"string": f"{c}_{k:05d}", "int64": k, "float64": float(k)}[t]
                    rows[c].append(v)
                k += 1
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    table = Dataset.from_dict(rows, features=feats)
    for split in spec.split.split("+"):  # one file per split; a joined split's domains as the card splits them
        part = table
        if spec.split_domains:
            keep = {str(d) for d in spec.split_domains[split]}
            part = table.select([i for i, d in enumerate(rows[spec.domain_column]) if str(d) in keep])
        part.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    return out
