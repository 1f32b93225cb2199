"""Real MLLM responses under paper B's shifts, shipped in ``data/llava_bench_shift/`` (see its README for
sources and licences): LLaVA-1.5-13B and LLaVA-1.6-Vicuna-13B answers to LLaVA-Bench questions under
image corruptions, question perturbations, both, and translated questions, each with the GPT-4
reference answer; and paper B's released per-scenario results for the same two models.

There are no images: an analysis of these files is text-only. The image-side shifts (defocus blur,
frost) are visible only through their effect on the responses, and the image term of paper B's bound
(``JSv``) cannot be estimated from them.

Scenario grids (paper B's layout, restricted to what the files hold):

- ``synthetic``: 7 image conditions (clean, defocus blur 1/3/5, frost 1/3/5) x 5 question conditions
  (clean, keyboard typos 1/3, synonym replacement 4/7) on the 90 COCO questions = 35 scenarios, ID cell
  clean x clean (``llava_bench_coco``). Every scenario holds the same 90 question ids: a paired design.
- ``natural``: 4 image sets (COCO, 90 questions; in-the-wild easy, normal and hard) x 7 question languages
  = 28 scenarios, ID cell COCO x English (``llava_bench_coco`` again). As in paper B, "normal" is the full
  60-question in-the-wild set (scenarios ``llava_bench_in_the_wild_<language>`` of the files), easy and
  hard its 30-question halves by paper B's shipped indices (:func:`with_wild_splits`, scenarios
  ``llava_bench_in_the_wild_{easy,hard}_<language>``, rows of the same answers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import hf_datasets_cache
from ...paths import DATA
from ...validation import ParameterError, check_choice, check_choices

FOLDER = DATA / "llava_bench_shift"
MODELS = {"llava-v1.5-13b": "llava-v1.5-13b.jsonl.gz", "llava-v1.6-vicuna-13b": "llava-v1.6-vicuna-13b.jsonl.gz"}
MODEL_LABELS = {"llava-v1.5-13b": "LLaVA-1.5-13B", "llava-v1.6-vicuna-13b": "LLaVA-1.6-Vicuna-13B"}
COLUMNS = ["scenario", "id", "question", "response", "reference", "model"]
ID_SCENARIO = "llava_bench_coco"
IMAGE_SHIFTS = ("clean", "defocus_blur_1", "defocus_blur_3", "defocus_blur_5", "frost_1", "frost_3", "frost_5")
TEXT_SHIFTS = ("clean", "KeyboardAug_1", "KeyboardAug_3", "sr_4", "sr_7")
IMAGE_SETS = ("coco", "in_the_wild_easy", "in_the_wild_normal", "in_the_wild_hard")
WILD_PARTS = ("easy", "hard")  # the halves derived from the full ("normal") in-the-wild set
# Paper B's scenario sets *with images* (image query, text query, GPT-4 answer) on the Hugging Face hub, as
# named in its release files; for the paper profile (a hub MLLM answering them), untested online.
HUB_DATASETS = {"synthetic": "changdae/llavabench-shift-synthetic-v1", "natural": "changdae/llavabench-shift-natural-v1"}
LANGUAGES = ("English", "German", "Chinese", "Korean", "Greek", "Arabic", "Hindi")


@dataclass(frozen=True)
class BenchGrid:
    """One of paper B's grids over these files: rows (image condition) x columns (question condition)."""

    name: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    row_label: str
    col_label: str

    def scenario(self, row: str, col: str) -> str:
        """The scenario name in the files for cell (row, col)."""
        if self.name == "synthetic":
            parts = [p for p in (row, col) if p != "clean"]
            return "_".join(["llava_bench_coco", *parts])
        if row == "coco":
            return ID_SCENARIO if col == "English" else f"llava_bench_coco_{col}"
        part = row.removeprefix("in_the_wild_")
        return f"llava_bench_in_the_wild_{col}" if part == "normal" else f"llava_bench_in_the_wild_{part}_{col}"

    def cells(self) -> pd.DataFrame:
        """Every cell: scenario, row, col, is_id (the ID cell first)."""
        out = [{"scenario": self.scenario(r, c), "row": r, "col": c} for r in self.rows for c in self.cols]
        df = pd.DataFrame(out)
        df["is_id"] = df["scenario"] == ID_SCENARIO
        return pd.concat([df[df["is_id"]], df[~df["is_id"]]], ignore_index=True)


GRIDS = {
    "synthetic": BenchGrid("synthetic", IMAGE_SHIFTS, TEXT_SHIFTS, "image corruption", "question perturbation"),
    "natural": BenchGrid("natural", IMAGE_SETS, LANGUAGES, "image set", "question language"),
}


def path(model: str):
    """The shipped response file of ``model`` (gzip-compressed JSONL)."""
    check_choice("LLaVA-Bench model", model, MODELS)
    p = FOLDER / MODELS[model]
    if not p.is_file():
        raise ParameterError(f"{p} is missing: the repository ships it (data/llava_bench_shift/)")
    return p


def load(model: str):
    """The responses of ``model`` as a ``datasets.Dataset`` with :data:`COLUMNS` (4,110 rows, file order),
    read offline by the ``datasets`` JSON builder (gzip is handled by it; its cache goes to the project
    cache)."""
    ds = hf_datasets_cache.load("json", str(path(model)))  # checked, and rebuilt when damaged
    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        raise ParameterError(f"{path(model).name}: columns {missing} missing (has {ds.column_names})")
    return ds.select_columns(COLUMNS)


def table(model: str, *, scenarios=None, max_per_scenario: int | None = None) -> pd.DataFrame:
    """:func:`load` as a pandas table, optionally restricted to some scenarios and to the first
    ``max_per_scenario`` question ids of each (for smoke runs); ``id`` stays a string."""
    df = load(model).to_pandas()
    df["id"] = df["id"].astype(str)
    if scenarios is not None:
        scenarios = list(scenarios)
        check_choices("LLaVA-Bench scenario", scenarios, sorted(set(df["scenario"])))
        df = df[df["scenario"].isin(scenarios)]
    if max_per_scenario is not None:
        df = df.groupby("scenario", sort=False, group_keys=False).head(max_per_scenario)
    return df.reset_index(drop=True)


def grid_table(responses: pd.DataFrame, grid: str) -> pd.DataFrame:
    """The rows of one grid with its axes: adds ``grid``, ``row``, ``col``, ``is_id`` (ID cell first).
    Scenarios of the grid absent from ``responses`` (a smoke subset) are skipped."""
    check_choice("LLaVA-Bench grid", grid, GRIDS)
    cells = GRIDS[grid].cells()
    merged = cells.merge(responses, on="scenario", how="inner", sort=False)
    merged.insert(0, "grid", grid)
    return merged.reset_index(drop=True)


def with_wild_splits(responses: pd.DataFrame, indices: dict) -> pd.DataFrame:
    """``responses`` plus paper B's easy and hard in-the-wild scenarios: for every in-the-wild scenario
    (``llava_bench_in_the_wild_<language>``, paper B's "normal"), copies of its rows whose question id is
    in ``indices["easy"]`` / ``indices["hard"]`` (positions 0-59 = ids, the files' order), renamed
    ``llava_bench_in_the_wild_{easy,hard}_<language>``; every other column is kept (row indices too)."""
    extra = []
    for lang in LANGUAGES:
        wild = responses[responses["scenario"] == f"llava_bench_in_the_wild_{lang}"]
        for part in WILD_PARTS:
            keep = wild[wild["id"].astype(int).isin(indices[part])]
            extra.append(keep.assign(scenario=f"llava_bench_in_the_wild_{part}_{lang}"))
    return pd.concat([responses, *extra], ignore_index=True)


def texts(responses: pd.DataFrame) -> list[str]:
    """Every distinct question, response and reference text, sorted: the one list to embed, so that any
    analysis of these files is a lookup into the same cached embeddings."""
    return sorted(set(responses["question"]) | set(responses["response"]) | set(responses["reference"]))


IMAGES = FOLDER / "images.csv"


def image_clusters(image_sets, ids) -> np.ndarray:
    """The image each question is about (``"coco:000000441147.jpg"``), per (image set, question id):
    the resampling unit of an interval over questions (``images.csv``; its README gives the sources)."""
    if not IMAGES.is_file():
        raise ParameterError(f"{IMAGES} is missing: the repository ships it (data/llava_bench_shift/)")
    table = pd.read_csv(IMAGES, dtype=str)
    of = {(s, i): f"{s}:{im}" for s, i, im in zip(table["image_set"], table["id"], table["image"])}
    keys = list(zip(image_sets, map(str, ids)))
    missing = sorted({k for k in keys if k not in of})
    if missing:
        raise ParameterError(f"no image recorded for questions {missing[:5]} in {IMAGES.name}")
    return np.array([of[k] for k in keys], dtype=object)


# --------------------------------------------------------------------------------------------------
# paper B's released results


PUBLISHED = {(m, g): FOLDER / "published" / f"pairs-{g.upper()}-ALL-{m}-CLUB_global.json"
             for m in MODELS for g in GRIDS}


def published_raw(model: str, grid: str) -> dict:
    """One of paper B's released result files, as published (``results/`` of its repository)."""
    check_choice("LLaVA-Bench model", model, MODELS)
    check_choice("LLaVA-Bench grid", grid, GRIDS)
    p = PUBLISHED[(model, grid)]
    if not p.is_file():
        raise ParameterError(f"{p} is missing: the repository ships it (data/llava_bench_shift/published/)")
    return json.loads(p.read_text())


def our_name(published_name: str) -> str:
    """A published scenario name in this project's names: the ID split ``llava_bench_coco_English`` is
    ``llava_bench_coco``; in-the-wild "normal" is the files' ``llava_bench_in_the_wild_<language>``; the rest
    (easy / hard halves included) keep their names."""
    if published_name == "llava_bench_coco_English":
        return ID_SCENARIO
    return published_name.replace("llava_bench_in_the_wild_normal_", "llava_bench_in_the_wild_")


def published(model: str, grid: str) -> pd.DataFrame:
    """Paper B's per-scenario EMI, EMID and EMID bound for ``model`` on ``grid``, one row per scenario in this
    project's names (:func:`our_name`; natural: 28 = COCO and in-the-wild easy / normal / hard x 7
    languages). Columns: scenario, pub_emi, pub_emid, pub_bound."""
    raw = published_raw(model, grid)
    return pd.DataFrame([{"scenario": our_name(name), "pub_emi": emi, "pub_emid": raw["EMID"].get(name, np.nan),
                          "pub_bound": raw["EMID_UB"].get(name, np.nan)} for name, emi in raw["EMI"].items()])


def published_correlation(model: str, grid: str) -> dict:
    """The Pearson r (and p) between EMID and its bound that paper B's release reports, with the setup
    that produced it (embedders, CLUB checkpoint, dataset id)."""
    raw = published_raw(model, grid)
    return {"model": model, "grid": grid, "pearson_r": raw["PearsonR"], "pearson_p": raw["PearsonPval"],
            "n_targets": len(raw["EMID"]), "image_embedder": raw["v_embedder_name"],
            "text_embedder": raw["t_embedder_name"], "club": raw["mi_ckpt_path"], "dataset": raw["ds_id"],
            "file": f"data/llava_bench_shift/published/{PUBLISHED[(model, grid)].name}"}
