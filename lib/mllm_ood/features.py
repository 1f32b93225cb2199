"""Frozen features of a model on a dataset domain, cached: pooled vision-tower output, the language
model's hidden state at the answer position (under paper A's prompt), and raw pixels (a floor)."""

from __future__ import annotations


import numpy as np

from .cache import cached_arrays
from .data import catalog, world
from .probes import pixel_features
from .validation import check_choice
from .models import fingerprint_of
from .zero_shot import build_prompt

KINDS = ("vision", "answer_state", "pixels")


def domain_features(model, dataset: str, domain: str, kind: str, n_per_class: int,
                    seed: int = 0, batch_size: int = 64,
                    prompt_style: str = "short") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float32, labels (n,), ids) for the first ``n_per_class`` samples per class of
    (dataset, domain). Cached per (model, dataset, domain, kind, n_per_class, seed, code version);
    ``prompt_style`` is the zero-shot prompt under which the answer state is read."""
    check_choice("feature kind", kind, KINDS)
    ds_all, info = catalog.open_dataset(dataset, seed=seed)
    check_choice(f"domain of {dataset}", domain, info.domains)
    params = {"model": fingerprint_of(model) if kind != "pixels" else None, "dataset": dataset,
              "domain": domain, "kind": kind, "n": n_per_class, "seed": seed}
    if kind == "answer_state" and prompt_style != "short":  # the short prompt keeps its old cache entries
        params["prompt_style"] = prompt_style

    def build() -> dict:
        ds = ds_all.select([i for i, d in enumerate(ds_all["domain"]) if d == domain])
        ds = world.sample_per_class(ds, n_per_class, mode="first")
        images = list(ds["image"])
        if kind == "vision":
            x = model.vision_features(images, batch_size=batch_size)
        elif kind == "answer_state":
            prompt = build_prompt(info, domain, "plain", style=prompt_style)
            x = model.answer_state([([im], prompt) for im in images], batch_size=batch_size)
        else:
            x = pixel_features(images)
        return {"x": x.astype(np.float32), "y": np.asarray(ds["label"]), "ids": np.asarray(ds["id"])}

    f = cached_arrays("features", params, build, file="features.npz")
    return f["x"], f["y"], [str(i) for i in f["ids"]]


def ood_domains(info, reference: str | None = None) -> list[str]:
    """The domains of a dataset other than its in-distribution reference: the domain of ``reference``
    ('dataset/domain', a notebook parameter) when it names this dataset, else the dataset's own
    ``id_domain`` (embedded datasets; hub datasets have none)."""
    exclude = info.id_domain
    if reference is not None:
        ref_ds, ref_dom = reference.split("/", 1)
        if ref_ds == info.name:
            exclude = ref_dom
    return [d for d in info.domains if d != exclude]
