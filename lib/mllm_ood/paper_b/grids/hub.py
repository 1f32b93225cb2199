"""Paper B's full setup (paper profile, notebook 04) -- UNTESTED ONLINE: a hub MLLM answers every question
of paper B's shifted LLaVA-Bench sets, the answers are embedded as in paper B's code (CLIP ViT-B/32 patch
mean for images, XLM-R first-layer token mean for texts), and EMI, EMID and the bound are computed per
scenario by :mod:`mllm_ood.paper_b.core`, with a judge score per scenario.

The sets are ``changdae/llavabench-shift-synthetic-v1`` and ``changdae/llavabench-shift-natural-v1`` (specs
``llavabench_shift_synthetic`` / ``llavabench_shift_natural`` in :mod:`mllm_ood.data.hub`): one split per
scenario with the columns ``image``, ``question``, ``reference_answer`` (GPT-4), as paper B's released
code reads them. Grids, in paper B's layout:

- ``synthetic``: 7 image conditions (clean, defocus blur 1/3/5, frost 1/3/5) x 5 question conditions
  (clean, synonym replacement 4/7, keyboard typos 1/3) = 35 splits; ID split ``llava_bench_coco``.
- ``natural``: 4 image sets (COCO; in-the-wild easy / normal / hard) x 7 question languages = 28 splits;
  ID split ``llava_bench_coco_English``.

35 + 28 - 2 ID splits = paper B's 61 shifted scenarios. Each split is answered on its own images and
questions (paper B answered the full in-the-wild set once and indexed its easy / hard subsets; the hub
splits hold those subsets). Items are paired across the splits of one image set by position (the same
image and question, shifted), never across image sets.

The judge here is :class:`mllm_ood.paper_b.judges.OverlapJudge` (token F1 against the GPT-4 reference, offline, deterministic): a
stand-in for paper B's GPT-4 review, not the same measurement. Any callable
``judge(question, response, reference) -> [0, 1]`` can replace it.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pandas as pd

from ...cache import cached_table
from ...data import hub
from ...mllm import fingerprint_of
from ...validation import ParameterError, check_choice

DATASETS = {"synthetic": "llavabench_shift_synthetic", "natural": "llavabench_shift_natural"}
ID_SPLIT = {"synthetic": "llava_bench_coco", "natural": "llava_bench_coco_English"}
IMAGE_SHIFTS = ("defocus_blur_1", "defocus_blur_3", "defocus_blur_5", "frost_1", "frost_3", "frost_5")
# the ID cell plus one shifted image condition and one shifted question condition: 2 x 2 splits per grid
SMOKE = {"synthetic": ("frost_5", "KeyboardAug_3"), "natural": ("in_the_wild_hard", "German")}
RESPONSE_VERSION = 1  # part of the responses' cache key: bump when the generation changes


def grid_of(dataset: str) -> str:
    """'hub:llavabench_shift_synthetic' or 'llavabench_shift_synthetic' -> 'synthetic'."""
    name = dataset.removeprefix("hub:")
    by_name = {v: k for k, v in DATASETS.items()}
    check_choice("paper B hub dataset", name, by_name)
    return by_name[name]


def axes(grid: str, split: str) -> tuple[str, str]:
    """(image condition, question condition) of one split, e.g. ('frost_5', 'KeyboardAug_3')."""
    check_choice("paper B grid", grid, DATASETS)
    if grid == "synthetic":
        rest = split.removeprefix("llava_bench_coco")
        image = next((v for v in IMAGE_SHIFTS if rest.startswith("_" + v)), "")
        text = rest[len(image) + 1:] if image else rest
        return image or "clean", text.removeprefix("_") or "clean"
    image, language = split.rsplit("_", 1)
    return image.removeprefix("llava_bench_"), language


def scenarios(grid: str, *, smoke: bool = False) -> list[str]:
    """The splits of one grid, ID split first (the hub spec's order otherwise); ``smoke``: 2 x 2 of them."""
    check_choice("paper B grid", grid, DATASETS)
    splits = list(hub.SPECS[DATASETS[grid]].splits)
    if smoke:
        ids = axes(grid, ID_SPLIT[grid])
        keep_rows, keep_cols = {ids[0], SMOKE[grid][0]}, {ids[1], SMOKE[grid][1]}
        splits = [s for s in splits if axes(grid, s)[0] in keep_rows and axes(grid, s)[1] in keep_cols]
    return [ID_SPLIT[grid]] + [s for s in splits if s != ID_SPLIT[grid]]


def _split(grid: str, split: str, max_questions: int | None):
    ds = hub.load_hub_split(DATASETS[grid], split)
    if max_questions is not None and len(ds) > max_questions:
        ds = ds.select(range(max_questions))
    return ds


def _digest(ds, spec) -> str:
    h = hashlib.sha256()
    h.update(str(getattr(ds, "_fingerprint", "")).encode())
    for q, r in zip(ds[spec.question_column], ds[spec.reference_column]):
        h.update(q.encode("utf-8", "surrogatepass") + b"\0" + r.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


def scenario_responses(model, grid: str, split: str, *, max_new_tokens: int = 512, batch_size: int = 8,
                       max_questions: int | None = None) -> pd.DataFrame:
    """The model's greedy answers to every question of one split (the question as the user turn, its image
    attached), cached per (model files, dataset, split and its content, generation settings). Columns:
    grid, scenario, visual, text, pos (row in the split), k (pairing id), question, response, reference."""
    spec = hub.SPECS[DATASETS[grid]]
    ds = _split(grid, split, max_questions)
    image_set, text = axes(grid, split)
    pair_set = "coco" if grid == "synthetic" else image_set
    params = {"model": fingerprint_of(model), "dataset": spec.hub_id, "split": split, "content": _digest(ds, spec),
              "n": len(ds), "max_new_tokens": max_new_tokens, "version": RESPONSE_VERSION}

    def build() -> pd.DataFrame:
        questions, refs = list(ds[spec.question_column]), list(ds[spec.reference_column])
        replies = model.generate([([im], q) for im, q in zip(ds[spec.image_column], questions)],
                                 max_new_tokens=max_new_tokens, batch_size=batch_size)
        return pd.DataFrame({"grid": grid, "scenario": split, "visual": image_set, "text": text,
                             "pos": range(len(ds)), "k": [f"{pair_set}:{i}" for i in range(len(ds))],
                             "question": questions, "response": replies, "reference": refs})

    return cached_table("emi_hub_responses", params, build, file="responses.jsonl",
                        dtype={"k": str, "response": str, "question": str, "reference": str})


def grid_responses(model, grid: str, splits, **kwargs) -> pd.DataFrame:
    """:func:`scenario_responses` for each split (ID split first), concatenated."""
    if ID_SPLIT[grid] not in splits:
        raise ParameterError(f"the {grid} grid needs its ID split {ID_SPLIT[grid]!r}")
    return pd.concat([scenario_responses(model, grid, s, **kwargs) for s in splits], ignore_index=True)


def grid_images(grid: str, responses: pd.DataFrame, *, max_questions: int | None = None) -> list:
    """The image of every row of ``responses`` (one grid), in row order."""
    spec = hub.SPECS[DATASETS[grid]]
    out = []
    for split, rows in responses.groupby("scenario", sort=False)["pos"]:
        imgs = _split(grid, split, max_questions)[spec.image_column]
        out += [imgs[int(i)] for i in rows]
    return out


def grid(grid_name: str):
    """What :func:`mllm_ood.paper_b.grids.analysis.scenario_table` needs of a grid: its name and ID scenario."""
    return SimpleNamespace(name=f"hub-{grid_name}", id_scenario=ID_SPLIT[grid_name])


def n_scenarios(grids) -> int:
    """Shifted scenarios over ``grids`` (paper B: 61 over both)."""
    return sum(len(hub.SPECS[DATASETS[g]].splits) - 1 for g in grids)


__all__ = ["DATASETS", "ID_SPLIT", "axes", "grid", "grid_images", "grid_of", "grid_responses",
           "n_scenarios", "scenario_responses", "scenarios"]
