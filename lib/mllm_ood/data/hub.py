"""Paper-profile data: dataset specs that turn a Hugging Face hub dataset into the embedded world's
schema (``id``, ``image``, ``label`` ClassLabel, ``domain``; VQA sets get ``question``/``reference``
instead of ``label``).

The hub ids and column names below were read off the public dataset cards; none of them can be
downloaded on the project's machines, so every spec is marked ``untested_online=True``. The loading
code itself is tested offline on small datasets saved in the hub's parquet layout
(``<dir>/data/<split>-00000-of-00001.parquet``), passed as ``source=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("pacs", "flwrlabs/pacs", "train", "image", "label", "domain",
                    note="PACS: photo, art_painting, cartoon, sketch; 7 classes"),
        DatasetSpec("vlcs", "flwrlabs/vlcs", "train", "image", "label", "domain",
                    note="VLCS: Caltech101, LabelMe, SUN09, VOC2007; 5 classes"),
        DatasetSpec("officehome", "flwrlabs/office-home", "train", "image", "label", "domain",
                    note="OfficeHome: Art, Clipart, Product, Real World; 65 classes"),
        DatasetSpec("domainnet", "flwrlabs/domainnet", "train", "image", "label", "domain",
                    note="DomainNet: clipart, infograph, painting, quickdraw, real, sketch; 345 classes"),
        DatasetSpec("camelyon17", "jxie/camelyon17", "id_train", "image", "label", "hospital",
                    class_names=("normal", "tumor"), note="WILDS Camelyon17 patches; domains = hospitals"),
        DatasetSpec("ham10000", "marmal88/skin_cancer", "train", "image", "dx", "localization",
                    class_names=None, note="HAM10000 dermoscopy; label column 'dx' holds strings"),
        DatasetSpec("llava_bench_coco", "lmms-lab/llava-bench-coco", "train", "image", None, None,
                    id_column="question_id", question_column="question", reference_column="answer",
                    note="LLaVA-Bench COCO (90 questions), the clean source of paper B's synthetic shifts"),
        DatasetSpec("llava_bench_in_the_wild", "lmms-lab/llava-bench-in-the-wild", "train", "image", None, None,
                    id_column="question_id", question_column="question", reference_column="gpt_answer",
                    note="LLaVA-Bench in-the-wild (60 questions), paper B's natural-shift images"),
    ]
}


def _open(spec: DatasetSpec, source: str | Path | None):
    import datasets

    if source is None:  # the real hub download (needs network; untested here)
        return datasets.load_dataset(spec.hub_id, spec.config, split=spec.split)
    src = Path(source)
    if not src.exists():
        raise ParameterError(f"dataset source {str(src)!r} does not exist")
    if (src / "state.json").exists() or (src / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(str(src))
        return ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds
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
            unknown = sorted({str(v) for v in raw} - set(index))
            if unknown:
                raise ParameterError(f"{name}: labels {unknown[:5]} are not among the class names {names}")
            labels = [index[str(v)] for v in raw]
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
