"""Notebook 04's parameter rules (checked by name before anything loads, one ParameterError naming it)."""

from __future__ import annotations

import math

from ..mllm import capabilities_of, model_reference
from ..validation import MAX_PER_CLASS, boolean, integer, listing, number, require, satisfies, seed, text
from .divergences import WASSERSTEIN_METHODS
from .embedder_checks import check_image_embedder, check_text_embedder
from .grids import digits, hub, llava_bench
from .judges import check_judge


def rules() -> dict:
    """The rule of every parameter of notebook 04, for :func:`mllm_ood.validation.check_parameters`."""
    return dict(SMOKE=boolean(), BENCH_MODELS=listing(choices=llava_bench.MODELS),
                BENCH_TEXT_EMBEDDERS=listing(choices=["e5", "minilm"]), SHIPPED_EMBEDDINGS=boolean(),
                MODEL=model_reference(),
                GRIDS=listing(choices=digits.GRIDS), SAMPLES_PER_CLASS=integer(1, MAX_PER_CLASS), SEED=seed(),
                N_BOOT=integer(1, 100_000), N_PERM=integer(1, 100_000), LEVEL=number(0, 1, open_interval=True),
                BATCH_SIZE=integer(1, 4096), MAX_NEW_TOKENS=integer(1, 512),
                TEXT_EMBEDDER=satisfies(check_text_embedder, "a text embedder"),
                IMAGE_EMBEDDER=satisfies(check_image_embedder, "an image embedder"),
                WASSERSTEIN=text(choices=WASSERSTEIN_METHODS),
                CLUB_MAX_EPOCHS=integer(1, 100_000), ESTIMATOR_CHECKS=boolean(),
                HUB_DATASETS=listing(choices=[f"hub:{d}" for d in hub.DATASETS.values()], nonempty=False),
                HUB_QUESTIONS=integer(0, 100_000), HUB_MAX_NEW_TOKENS=integer(1, 4096), REPLAY_PAPER_B=boolean(),
                JUDGE=satisfies(check_judge, "'reference' or an endpoint model"))


def check_combinations(p: dict) -> None:
    """Rules that join two parameters (``p``: the notebook's globals)."""
    require(p["IMAGE_EMBEDDER"] != "model" or capabilities_of(p["MODEL"]) >= {"vision_features"}, "IMAGE_EMBEDDER",
            p["IMAGE_EMBEDDER"],
            "'model' reads the vision tower of a local MODEL; a model behind an endpoint has none here: name an image "
            "embedder ('clip', or a folder such as the served checkpoint's)")
    require(not p["REPLAY_PAPER_B"] or p["HUB_DATASETS"], "REPLAY_PAPER_B", p["REPLAY_PAPER_B"],
            "the replay of paper B's main.py reads paper B's hub sets: name them in HUB_DATASETS (paper profile)")
    n_perm, level = p["N_PERM"], p["LEVEL"]
    require(1 / (n_perm + 1) < 1 - level, "N_PERM", n_perm,
            f"with {n_perm} permutations no term can ever lie above its null at level {level} "
            f"(the smallest p is 1/(N_PERM+1)); use at least {math.ceil(1 / (1 - level))}")
    digits.validate(p["GRIDS"], p["SAMPLES_PER_CLASS"], n_boot=p["N_BOOT"], level=level,
                    max_new_tokens=p["MAX_NEW_TOKENS"], batch_size=p["BATCH_SIZE"], wasserstein=p["WASSERSTEIN"],
                    image_embedder=p["IMAGE_EMBEDDER"], text_embedder=p["TEXT_EMBEDDER"])
