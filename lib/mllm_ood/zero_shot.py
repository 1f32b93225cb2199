"""Paper A's zero-shot protocol on any model of :mod:`mllm_ood.models`, cached per
(model, dataset, domain, mode, sampling, code version).

Two answer modes:

- ``generate``: the multiple-choice prompt, free greedy generation, the ``Answer Choice:`` regex parser
  (:func:`mllm_ood.prompts.parse_answer`); an unparseable reply counts as wrong (paper A);
- ``loglik``: the same prompt, each choice's reply ``Answer Choice: [name]`` scored by log-likelihood;
  the most likely choice is the prediction (always "parsed").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .cache import cached
from .data import catalog, world
from .prompts import QUESTION, class_descriptions, domain_context, format_answer, parse_answer, zero_shot_prompt
from .validation import ParameterError, check_choice, check_choices, check_positive_int

MODES = ("generate", "loglik")
# Prompt variants of paper A's hypothesis 1: the plain prompt, + class descriptions, + domain context.
PROMPT_VARIANTS = ("plain", "descriptions", "domain_context")
RESULT_COLUMNS = ["model", "dataset", "family", "domain", "id", "label", "label_name", "mode", "pred",
                  "pred_name", "parsed", "correct", "reply"]


def model_fingerprint(model_ref: str | Path) -> str:
    """A short hash of a local checkpoint's config and weight files, or the hub id itself."""
    path = Path(model_ref)
    if not path.is_dir():
        return str(model_ref)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return f"{path.name}@{h.hexdigest()[:12]}"


def validate(datasets, modes, n_per_class: int, sampling: str, variant: str = "plain") -> None:
    """Check the notebook's parameters before anything is loaded."""
    check_choice("prompt variant", variant, PROMPT_VARIANTS)
    catalog.validate_names(datasets)
    if isinstance(modes, str) or not modes:
        raise ParameterError(f"modes must be a non-empty list, got {modes!r}")
    check_choices("scoring mode", modes, MODES)
    check_positive_int("samples per domain x class", n_per_class)
    check_choice("sampling", sampling, ["first", "random"])


def build_prompt(info, domain: str, variant: str = "plain", question: str = QUESTION) -> str:
    """Paper A's prompt for (dataset, domain), optionally enriched (hypothesis 1)."""
    check_choice("prompt variant", variant, PROMPT_VARIANTS)
    context = {"plain": "", "descriptions": class_descriptions(info.class_names),
               "domain_context": domain_context(info.name, domain)}[variant]
    return zero_shot_prompt(list(info.class_names), question=question, context=context)


def _evaluate_rows(model, fingerprint, ds, info, domain, mode, prompt, max_new_tokens, batch_size) -> pd.DataFrame:
    names = list(info.class_names)
    labels, ids = list(ds["label"]), list(ds["id"])
    convs = [([image], prompt) for image in ds["image"]]
    if mode == "generate":
        replies = model.generate(convs, max_new_tokens=max_new_tokens, batch_size=batch_size)
        preds = [parse_answer(r, names) for r in replies]
    else:
        scores = model.score_choices(convs, [format_answer(n) for n in names], batch_size=batch_size)
        preds = [int(i) for i in np.argmax(scores, axis=1)]
        replies = [""] * len(preds)
    rows = []
    for i, (y, p, r) in enumerate(zip(labels, preds, replies)):
        rows.append({"model": fingerprint, "dataset": info.name, "family": info.family, "domain": domain,
                     "id": ids[i], "label": int(y), "label_name": names[y], "mode": mode,
                     "pred": -1 if p is None else int(p), "pred_name": "" if p is None else names[p],
                     "parsed": p is not None, "correct": p is not None and int(p) == int(y), "reply": r})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def evaluate(model, model_ref: str, datasets, modes=MODES, n_per_class: int = 20, sampling: str = "first",
             seed: int = 0, question: str = QUESTION, max_new_tokens: int = 16, batch_size: int = 32,
             sources: dict | None = None, variant: str = "plain") -> pd.DataFrame:
    """Per-sample zero-shot results (RESULT_COLUMNS) for every (dataset, domain, mode).

    model: a :class:`mllm_ood.models.MLLM`; model_ref: its path or hub id (names the cache entry).
    n_per_class / sampling: paper A's first-N per domain x class, or a seeded random N.
    Each (dataset, domain, mode) is cached; a rerun with the same arguments recomputes nothing.
    """
    validate(datasets, modes, n_per_class, sampling, variant)
    fingerprint = model_fingerprint(model_ref)
    frames = []
    jobs = []
    for name in datasets:
        ds, info = catalog.open_dataset(name, seed=seed, sources=sources)
        for domain in info.domains:
            for mode in modes:
                jobs.append((name, ds, info, domain, mode))
    for name, ds, info, domain, mode in tqdm(jobs, desc="zero-shot (dataset, domain, mode)"):
        prompt = build_prompt(info, domain, variant, question)
        # The prompt text itself is part of the key: editing a description invalidates its results.
        params = {"model": fingerprint, "dataset": name, "domain": domain, "mode": mode, "n": n_per_class,
                  "sampling": sampling, "seed": seed, "prompt": prompt, "max_new_tokens": max_new_tokens}

        def build(tmp: Path, ds=ds, info=info, domain=domain, mode=mode, prompt=prompt):
            sub = ds.select([i for i, d in enumerate(ds["domain"]) if d == domain])
            sub = world.sample_per_class(sub, n_per_class, mode=sampling, seed=seed)
            _evaluate_rows(model, fingerprint, sub, info, domain, mode, prompt, max_new_tokens,
                           batch_size).to_csv(tmp / "results.csv", index=False)

        folder = cached("zero_shot", params, build)
        frames.append(pd.read_csv(folder / "results.csv", keep_default_na=False,
                                  dtype={"domain": str, "id": str, "reply": str, "pred_name": str}))
    return pd.concat(frames, ignore_index=True).assign(variant=variant)


def chance_level(info_or_names) -> float:
    """Accuracy of a uniform random guess over the class list."""
    names = info_or_names.class_names if hasattr(info_or_names, "class_names") else info_or_names
    return 1.0 / len(names)


def id_reference(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of the in-distribution reference domains (e.g. held-out MNIST) among ``results``."""
    keep = [world.DATASETS.get(d) is not None and world.DATASETS[d].id_domain == dom
            for d, dom in zip(results["dataset"], results["domain"])]
    return results[np.array(keep, dtype=bool)]
