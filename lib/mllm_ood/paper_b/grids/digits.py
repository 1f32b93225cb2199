"""Paper B's scenario grids on the embedded digits world (notebook 04, part 2): queries, the model's
responses, references, the images, and the embedded profile's image embedder (the model's own vision
tower); the analysis of a grid is :mod:`mllm_ood.paper_b.grids.analysis`, shared with the hub sets.

Grids (paper B's layout, on the embedded digits world):

- ``synthetic``: 7 visual conditions of ``corrupted_mnist`` (clean, defocus blur 1/3/5, frost 1/3/5)
  x 5 text conditions (clean, synonym replacement 1/2, keyboard typos 1/2) = 35 scenarios; ID cell
  ``clean x clean``. The corrupted domains hold the *same* eval digits in the same order, so the grid
  is a paired, factorial design.
- ``rotated``: the 6 rotations of ``rotated_mnist`` (0-75 degrees, the same digits at every angle) x the
  same 5 text conditions = 30 scenarios; ID cell ``0 x clean``. The corruptions above barely move this
  model (zero-shot accuracy 96 % clean, 86 % at frost-5), so EMID stays within its noise there; rotation
  degrades it across a range (96 % upright to 16 % at 75 degrees in notebook 01), which a test of paper B's
  claim needs. It stands for paper B's synthetic shifts (and is compared with its synthetic r).
- ``natural``: the 4 style domains of ``digit_styles`` (mnist, uci, printed, textured) x the 7 question
  languages of paper B = 28 scenarios; ID cell ``mnist x english``.

A query is one image of the visual condition and paper A's multiple-choice prompt whose *question
sentence* carries the text condition: ``apply_text_shift("What is in this image?", condition, seed)``
with a seed derived from the sample's position, so the same position gets the same perturbation in
every visual condition, or the question translated (:func:`mllm_ood.data.text_shifts.question_in`).
The choice list and the ``Answer Choice: [...]`` format instruction stay in English and unperturbed:
they define the answer space, which the reference and the judge rely on. The *reference* response is
what a perfect model following that protocol says: ``Answer Choice: [seven]`` for a seven (paper A's
format, :func:`mllm_ood.formats.prompts.format_answer`); a caption-style reference ("The image shows the digit
seven.") would make every model-vs-reference divergence measure the reply *format* rather than the
content.

Embeddings (paper B's recipe, project embedders): question text and responses with the text embedder
(MiniLM, 384-d, in the embedded profile); images with an image embedder (the MLLM's own vision tower in
the embedded profile), all L2-normalised; x = (z_v + z_t) / 2 needs equal widths, so image embeddings
of another width are mapped by :func:`mllm_ood.paper_b.grids.analysis.match_width` (a seeded random
isometry; see there why).

Units: MI, EMI, EMID and JSD in nats; W2 in embedding units; judge scores in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ...cache import cached_table
from ...data import world
from ...data.shifts import ANGLES
from ...data.text_shifts import LANGUAGES, TEXT_CONDITIONS, apply_text_shift, question_in
from ...mllm import fingerprint_of
from ...progress import tqdm
from ...formats.prompts import QUESTION, format_answer, zero_shot_prompt
from ...seeding import derive_seed
from ...validation import ParameterError, check_choice, check_choices, check_positive_int
from ..core import MIN_SAMPLES
from ..divergences import WASSERSTEIN_METHODS
from ..embedder_checks import check_image_embedder, check_text_embedder
from ..embedders import ImageEmbedder

RESPONSE_COLUMNS = ["grid", "visual", "text", "scenario", "k", "id", "label", "label_name", "question", "prompt",
                    "response", "reference"]


@dataclass(frozen=True)
class Grid:
    """A scenario grid: visual conditions (dataset domains) x text conditions, with its ID cell."""

    name: str
    dataset: str
    visual: tuple[str, ...]
    text: tuple[str, ...]
    text_kind: str  # "shift" (TEXT_CONDITIONS applied to the question) or "language" (translated question)
    id_visual: str
    id_text: str

    @property
    def id_scenario(self) -> str:
        return scenario_name(self.id_visual, self.id_text)

    def cells(self) -> list[tuple[str, str]]:
        """Every (visual, text) cell, ID cell first, then row-major."""
        rest = [(v, t) for v in self.visual for t in self.text if (v, t) != (self.id_visual, self.id_text)]
        return [(self.id_visual, self.id_text)] + rest

    def subset(self, visual: Sequence[str] | None = None, text: Sequence[str] | None = None) -> "Grid":
        """The same grid restricted to some conditions (e.g. for a smoke run); the ID cell is always kept."""
        vis = list(self.visual) if visual is None else list(visual)
        txt = list(self.text) if text is None else list(text)
        check_choices(f"visual condition of the {self.name} grid", vis, self.visual)
        check_choices(f"text condition of the {self.name} grid", txt, self.text)
        vis = [self.id_visual] + [v for v in vis if v != self.id_visual]
        txt = [self.id_text] + [t for t in txt if t != self.id_text]
        return Grid(self.name, self.dataset, tuple(vis), tuple(txt), self.text_kind, self.id_visual, self.id_text)


GRIDS: dict[str, Grid] = {
    "synthetic": Grid("synthetic", "corrupted_mnist",
                      ("clean", "defocus_blur-1", "defocus_blur-3", "defocus_blur-5", "frost-1", "frost-3", "frost-5"),
                      tuple(TEXT_CONDITIONS), "shift", "clean", "clean"),
    "rotated": Grid("rotated", "rotated_mnist", tuple(str(a) for a in ANGLES), tuple(TEXT_CONDITIONS), "shift",
                    "0", "clean"),
    "natural": Grid("natural", "digit_styles", ("mnist", "uci", "printed", "textured"), tuple(LANGUAGES),
                    "language", "mnist", "english"),
}


def scenario_name(visual: str, text: str) -> str:
    """The scenario's label, e.g. ``frost-3 x typo-1``."""
    return f"{visual} x {text}"


def get_grid(name: str) -> Grid:
    check_choice("grid", name, GRIDS)
    return GRIDS[name]


def validate(grids, n_per_class: int, *, n_boot: int = 1000, level: float = 0.95, max_new_tokens: int = 16,
             batch_size: int = 32, wasserstein: str = "exact", image_embedder: str = "model",
             text_embedder: str = "minilm") -> None:
    """Check the notebook's parameters before anything is loaded; one ParameterError names the bad value."""
    if isinstance(grids, str) or not list(grids):
        raise ParameterError(f"grids must be a non-empty list of grid names, got {grids!r}")
    check_choices("grid", grids, GRIDS)
    check_positive_int("samples per class", n_per_class)
    if n_per_class * 10 < MIN_SAMPLES:
        raise ParameterError(f"samples per class must give at least {MIN_SAMPLES} samples per scenario "
                             f"(10 classes), got {n_per_class}")
    check_positive_int("n_boot", n_boot)
    if not isinstance(level, float) or not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1), got {level!r}")
    check_positive_int("max_new_tokens", max_new_tokens)
    check_positive_int("batch_size", batch_size)
    check_choice("wasserstein method", wasserstein, WASSERSTEIN_METHODS)
    check_image_embedder(image_embedder)
    check_text_embedder(text_embedder)


# --------------------------------------------------------------------------------------------------
# queries and references


def question(grid: Grid, text_condition: str, k: int, seed: int) -> str:
    """The question sentence of sample position ``k`` under ``text_condition`` (see module docstring)."""
    check_choice(f"text condition of the {grid.name} grid", text_condition, GRIDS[grid.name].text)
    if grid.text_kind == "language":
        return question_in(text_condition)
    return apply_text_shift(QUESTION, text_condition, derive_seed(seed, "emi-question", k))


def reference_answer(class_name: str) -> str:
    """The reference response: what a perfect model following paper A's protocol replies."""
    return format_answer(class_name)


def domain_samples(grid: Grid, visual: str, n_per_class: int, seed: int):
    """The first ``n_per_class`` images per class of ``visual`` (paper A's sampling), a ``datasets.Dataset``
    in a fixed order (by class, then dataset order)."""
    ds = world.load(grid.dataset, [visual], seed=seed)
    return world.sample_per_class(ds, n_per_class, mode="first", seed=seed)


def class_names(grid: Grid) -> list[str]:
    return list(world.DATASETS[grid.dataset].class_names)


def scenario_responses(model, grid: Grid, visual: str, text: str, *, n_per_class: int, seed: int,
                       max_new_tokens: int = 16, batch_size: int = 32, samples=None) -> pd.DataFrame:
    """The model's responses for one scenario, cached per (model files, grid, cell, sampling, generation
    settings, code version): a table with RESPONSE_COLUMNS, one row per query.

    ``samples``: a function returning the visual condition's ``datasets.Dataset`` (default
    :func:`domain_samples`), called only on a cache miss. A rerun with the same arguments loads the
    table and never calls ``model.generate``.
    """
    params = {"model": fingerprint_of(model), "grid": grid.name, "dataset": grid.dataset, "visual": visual,
              "text": text, "n_per_class": n_per_class, "seed": seed, "max_new_tokens": max_new_tokens,
              "question": QUESTION, "sampling": "first"}

    def build() -> pd.DataFrame:
        sub = samples() if samples is not None else domain_samples(grid, visual, n_per_class, seed)
        names = class_names(grid)
        labels, ids = [int(y) for y in sub["label"]], list(sub["id"])
        questions = [question(grid, text, k, seed) for k in range(len(sub))]
        prompts = [zero_shot_prompt(names, question=q) for q in questions]
        replies = model.generate([([im], p) for im, p in zip(sub["image"], prompts)], max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)
        rows = [{"grid": grid.name, "visual": visual, "text": text, "scenario": scenario_name(visual, text), "k": k,
                 "id": ids[k], "label": labels[k], "label_name": names[labels[k]], "question": questions[k],
                 "prompt": prompts[k], "response": replies[k], "reference": reference_answer(names[labels[k]])}
                for k in range(len(sub))]
        return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)

    return cached_table("emi_responses", params, build, file="responses.jsonl",
                        dtype={"id": str, "response": str, "visual": str, "text": str})


def grid_responses(model, grid: Grid, *, n_per_class: int, seed: int, max_new_tokens: int = 16,
                   batch_size: int = 32) -> pd.DataFrame:
    """:func:`scenario_responses` for every cell of ``grid`` (ID cell first), concatenated. The images of a
    visual condition are loaded once, and only when one of its cells is not cached yet."""
    frames, loaded = [], {}

    def loader(v):
        def load():
            if v not in loaded:
                loaded[v] = domain_samples(grid, v, n_per_class, seed)
            return loaded[v]
        return load

    for visual, text in tqdm(grid.cells(), desc=f"responses ({grid.name})"):
        frames.append(scenario_responses(model, grid, visual, text, n_per_class=n_per_class, seed=seed,
                                         max_new_tokens=max_new_tokens, batch_size=batch_size,
                                         samples=loader(visual)))
    return pd.concat(frames, ignore_index=True)


def grid_images(grid: Grid, responses: pd.DataFrame, *, n_per_class: int, seed: int) -> list:
    """The PIL image of every row of ``responses`` (one grid), in row order."""
    by_visual = {}
    for v in dict.fromkeys(responses["visual"]):
        sub = domain_samples(grid, v, n_per_class, seed)
        by_visual[v] = dict(zip(sub["id"], sub["image"]))
    return [by_visual[v][i] for v, i in zip(responses["visual"], responses["id"])]


def model_image_embedder(model):
    """The embedded profile's image embedder: the MLLM's own frozen vision tower (mean-pooled features the
    projector reads, :meth:`mllm_ood.mllm.hf.HFModel.vision_features`), cached under the model's fingerprint."""
    def features(images):
        return model.vision_features(images)

    return ImageEmbedder(features, name=f"vision-tower:{fingerprint_of(model)}")
