"""Paper A's zero-shot protocol on any model of :mod:`mllm_ood.mllm`, cached per
(model, dataset, domain, mode, sampling, code version).

Two answer modes:

- ``generate``: the multiple-choice prompt, free generation (greedy by default, until the model stops or the
  cap of :class:`~mllm_ood.mllm.generation.Generation`), the ``Answer Choice:`` regex parser
  of the prompt style (:func:`mllm_ood.formats.prompts.parser_for`: paper A's own template and parser, or the
  short one-line prompt that fits the embedded model); an unparseable reply counts as wrong (paper A);
- ``loglik``: the same prompt, each choice's reply ``Answer Choice: [name]`` scored by log-likelihood;
  the most likely choice is the prediction (always "parsed").
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..cache import cached_table
from ..data import catalog, world
from ..mllm import fingerprint_of
from ..mllm.generation import Generation
from ..progress import tqdm
from ..validation import ParameterError, check_choice, check_choices, check_positive_int
from ..formats.prompts import (PROMPT_STYLES, QUESTION, class_descriptions, domain_context, format_answer, parser_for,
                               prompt_for)

MODES = ("generate", "loglik")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Prompt variants of paper A's hypothesis 1: the plain prompt, + class descriptions, + domain context.
PROMPT_VARIANTS = ("plain", "descriptions", "domain_context")
RESULT_COLUMNS = ["model", "dataset", "family", "domain", "id", "label", "label_name", "mode", "pred",
                  "pred_name", "parsed", "correct", "reply"]


def validate(datasets, modes, n_per_class: int, sampling: str, variant: str = "plain",
             prompt_style: str = "short") -> None:
    """Check the notebook's parameters before anything is loaded."""
    check_choice("prompt variant", variant, PROMPT_VARIANTS)
    check_choice("prompt style", prompt_style, PROMPT_STYLES)
    catalog.validate_names(datasets)
    if isinstance(modes, str) or not modes:
        raise ParameterError(f"modes must be a non-empty list, got {modes!r}")
    check_choices("scoring mode", modes, MODES)
    check_positive_int("samples per domain x class", n_per_class)
    check_choice("sampling", sampling, ["first", "random"])


def build_prompt(info, domain: str, variant: str = "plain", question: str = QUESTION, style: str = "short") -> str:
    """Paper A's prompt (``style`` 'short' or 'paper_a') for (dataset, domain), optionally enriched (hypothesis 1)."""
    check_choice("prompt variant", variant, PROMPT_VARIANTS)
    context = {"plain": "", "descriptions": class_descriptions(info.class_names),
               "domain_context": domain_context(info.name, domain)}[variant]
    return prompt_for(style, list(info.class_names), question=question, context=context)


def _evaluate_rows(model, fingerprint, ds, info, domain, mode, prompt, generation: Generation, batch_size,
                   style: str = "short") -> pd.DataFrame:
    names = list(info.class_names)
    labels, ids = list(ds["label"]), list(ds["id"])
    text = generation.text(model, prompt)  # with the system prompt, when the setting asks for one
    convs = [([image], text) for image in ds["image"]]
    if mode == "generate":
        replies = generation.generate(model, convs, batch_size)
        parse = parser_for(style)
        preds = [parse(r, names) for r in replies]
    else:
        scores = model.score_choices(convs, [format_answer(n) for n in names], batch_size=batch_size)
        preds = [int(i) for i in np.argmax(scores, axis=1)]
        replies = [""] * len(preds)
    # Stored replies lose carriage returns and other control characters (parsed before): long free replies
    # may hold them, and the cached CSV must read back row for row.
    replies = [_CONTROL.sub("\ufffd", r.replace("\r\n", "\n").replace("\r", "\n")) for r in replies]
    rows = []
    for i, (y, p, r) in enumerate(zip(labels, preds, replies)):
        rows.append({"model": fingerprint, "dataset": info.name, "family": info.family, "domain": domain,
                     "id": ids[i], "label": int(y), "label_name": names[y], "mode": mode,
                     "pred": -1 if p is None else int(p), "pred_name": "" if p is None else names[p],
                     "parsed": p is not None, "correct": p is not None and int(p) == int(y), "reply": r})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def evaluate(model, datasets, modes=MODES, n_per_class: int = 20, sampling: str = "first",
             seed: int = 0, question: str = QUESTION, max_new_tokens: int = 16, batch_size: int = 32,
             sources: dict | None = None, variant: str = "plain", prompt_style: str = "short",
             domains: dict | None = None, generation: Generation | None = None) -> pd.DataFrame:
    """Per-sample zero-shot results (RESULT_COLUMNS) for every (dataset, domain, mode).

    model: a :class:`mllm_ood.mllm.hf.HFModel` (its ``fingerprint`` names the cache entries).
    n_per_class / sampling: paper A's first-N per domain x class, or a seeded random N.
    prompt_style: 'short' (fits the embedded model) or 'paper_a' (paper A's template and parser).
    domains: {dataset: [domain, ...]} to evaluate only those domains of a dataset (default: all).
    generation: the cap on new tokens, temperature, sampling seed and system prompt
    (:class:`~mllm_ood.mllm.generation.Generation`; default: greedy, ``max_new_tokens``, no system prompt);
    the system prompt applies to both modes.
    Each (dataset, domain, mode) is cached; a rerun with the same arguments recomputes nothing.
    """
    validate(datasets, modes, n_per_class, sampling, variant, prompt_style)
    generation = generation or Generation(max_new_tokens=max_new_tokens)
    fingerprint = fingerprint_of(model)
    frames = []
    jobs = []
    for name in datasets:
        ds, info = catalog.open_dataset(name, seed=seed, sources=sources)
        if domains and name in domains:
            check_choices(f"domain of {name}", domains[name], info.domains)
        for domain in (d for d in info.domains if not domains or name not in domains or d in domains[name]):
            for mode in modes:
                jobs.append((name, ds, info, domain, mode))
    for name, ds, info, domain, mode in tqdm(jobs, desc="zero-shot (dataset, domain, mode)"):
        prompt = build_prompt(info, domain, variant, question, prompt_style)
        # The prompt text itself is part of the key: editing a description invalidates its results.
        params = {"model": fingerprint, "dataset": name, "domain": domain, "mode": mode, "n": n_per_class,
                  "sampling": sampling, "seed": seed, "prompt": prompt, **generation.key()}
        if prompt_style != "short":  # the short style keeps its existing cache entries
            params["parser"] = prompt_style

        def build(ds=ds, info=info, domain=domain, mode=mode, prompt=prompt):
            sub = ds.select([i for i, d in enumerate(ds["domain"]) if d == domain])
            sub = world.sample_per_class(sub, n_per_class, mode=sampling, seed=seed)
            return _evaluate_rows(model, fingerprint, sub, info, domain, mode, prompt, generation,
                                  batch_size, prompt_style)

        frames.append(cached_table("zero_shot", params, build, file="results.csv", keep_default_na=False,
                                   dtype={"domain": str, "id": str, "reply": str, "pred_name": str}))
    return pd.concat(frames, ignore_index=True).assign(variant=variant, prompt_style=prompt_style)


def chance_level(info_or_names) -> float:
    """Accuracy of a uniform random guess over the class list."""
    names = info_or_names.class_names if hasattr(info_or_names, "class_names") else info_or_names
    return 1.0 / len(names)


def parse_reference(ref: str) -> tuple[str, str]:
    """'dataset/domain' -> (dataset, domain); dataset names never contain '/', domains may."""
    if not isinstance(ref, str) or "/" not in ref:
        raise ParameterError(f"an in-distribution reference is 'dataset/domain' (e.g. 'digit_styles/mnist'), "
                             f"got {ref!r}")
    ds, dom = ref.split("/", 1)
    return ds, dom


def validate_id_reference(id_reference: dict, datasets) -> None:
    """Check ``{dataset: 'dataset/domain'}`` before any compute: keys among ``datasets``, every reference
    dataset evaluated too (so its accuracy exists), and, for embedded datasets, the domain exists."""
    if not isinstance(id_reference, dict):
        raise ParameterError(f"the in-distribution references must be a mapping dataset -> 'dataset/domain', "
                             f"got {type(id_reference).__name__}")
    for name, ref in id_reference.items():
        if name not in datasets:
            raise ParameterError(f"in-distribution reference given for {name!r}, which is not among the datasets "
                                 f"{list(datasets)}")
        ref_ds, ref_dom = parse_reference(ref)
        if ref_ds not in datasets:
            raise ParameterError(f"the reference {ref!r} of {name!r} names dataset {ref_ds!r}, which is not "
                                 f"evaluated; add it to the datasets")
        if ref_ds in world.DATASETS:
            check_choice(f"domain of {ref_ds}", ref_dom, world.DATASETS[ref_ds].domains)


def id_reference(results: pd.DataFrame, references: dict) -> dict[str, pd.DataFrame]:
    """{dataset: rows of its in-distribution reference (dataset, domain)} for every dataset of
    ``references`` (``{dataset: 'dataset/domain'}``) found in ``results``."""
    out = {}
    for name, ref in references.items():
        ref_ds, ref_dom = parse_reference(ref)
        rows = results[(results["dataset"] == ref_ds) & (results["domain"].astype(str) == ref_dom)]
        if name in set(results["dataset"]):
            if rows.empty:
                raise ParameterError(f"the in-distribution reference {ref!r} of {name!r} has no results "
                                     f"(unknown domain? domains of {ref_ds}: "
                                     f"{sorted(set(results.loc[results['dataset'] == ref_ds, 'domain']))})")
            out[name] = rows
    return out
