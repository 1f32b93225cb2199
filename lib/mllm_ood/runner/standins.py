"""The paper profile's dry run on stand-ins (``--standin``) and the context check of few-shot notebooks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..paths import ROOT
from ..validation import ParameterError, check_choice

# Notebook 04's hub embedders -> tiny random stand-ins in save_pretrained format (XLM-R: embedders.standin_embedder,
# CLIP ViT-B/32: mllm.standins.standin_clip),
# so the dry run takes paper B's own embedding code path (XLM-R first-layer pooling, CLIP patch mean).
STANDIN_EMBEDDERS = {"TEXT_EMBEDDER": {"xlm-roberta": "xlm-roberta"}, "IMAGE_EMBEDDER": {"clip": "clip"}}
# Notebook 02's probe feature source: 'clip' (or a CLIP hub id) is replaced by a CLIP stand-in folder.
PROBE_FEATURES = "PROBE_FEATURES"
SHOT_PARAMETERS = ("SHOTS", "LABEL_SHIFT_SHOTS", "SPURIOUS_SHOTS")


def standin_substitutions(params: dict) -> dict:
    """{parameter: stand-in value} for one notebook's resolved parameters: hub model ids -> stand-in
    folders (built and cached here), paper A's CLIP probe model -> a tiny CLIP of the same image and patch
    size, hub-only embedders -> offline ones. ParameterError for a hub model without a stand-in (naming why)."""
    from ..mllm.refs import HUB_ID
    from ..mllm.standins import standin_clip, standin_model

    out = {}
    for key, value in params.items():
        if key in STANDIN_EMBEDDERS and value in STANDIN_EMBEDDERS[key]:
            from ..paper_b.embedders import CLIP_MODEL, standin_embedder

            kind = STANDIN_EMBEDDERS[key][value]
            out[key] = str(standin_clip(CLIP_MODEL) if kind == "clip" else standin_embedder(kind))
        elif key == "MODEL" and isinstance(value, str) and HUB_ID.match(value) and not (ROOT / value).exists():
            out[key] = str(standin_model(value))
        elif key == PROBE_FEATURES and isinstance(value, str) and (
                value == "clip" or (HUB_ID.match(value) and not (ROOT / value).exists())):
            from ..paper_a.features import CLIP_PROBE_MODEL

            out[key] = str(standin_clip(CLIP_PROBE_MODEL if value == "clip" else value))
    return out


def prepare_standin_datasets(resolved, mirror: Path, per_cell: int = 6) -> list[str]:
    """Write a stand-in of every ``hub:`` dataset the parameters name into ``mirror/<spec>/`` (once), with
    ``per_cell`` images per domain x class; return the names. ParameterError for an unknown ``hub:`` name."""
    from ..data import hub
    from ..data.catalog import HUB_PREFIX

    names = set()

    def walk(v):
        if isinstance(v, str) and v.startswith(HUB_PREFIX):
            names.add(v[len(HUB_PREFIX):].split("/", 1)[0])  # 'hub:pacs/photo' (a reference) names pacs
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    for _, _, params in resolved:
        walk(params)
    for name in sorted(names):
        check_choice("hub dataset", name, hub.SPECS)
        if not (mirror / name).exists():
            tmp = mirror / f".tmp-{name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            hub.make_standin_dataset(name, tmp, per_cell=per_cell)
            os.replace(tmp, mirror / name)
    return sorted(names)


def check_context(nb: Path, params: dict, model_label: str | None = None) -> None:
    """Refuse a few-shot notebook whose largest episode (max shots + the query, one image each) would not
    fit the model's context, naming the largest shot count that fits. Models whose image-token count is
    unknown without loading them are left to the runtime check."""
    from ..mllm.refs import context_budget, max_shots, text_reserve

    model = params.get("MODEL")
    shots = {k: (max(params[k]) if isinstance(params[k], list) and params[k] else params[k])
             for k in SHOT_PARAMETERS if k in params and params[k] not in (None, [])}
    if not isinstance(model, str) or not shots:
        return
    ref = str(ROOT / model) if (ROOT / model).exists() else model
    budget, fits = context_budget(ref), max_shots(ref)
    if budget is None:
        return
    for key, n in shots.items():
        if isinstance(n, int) and n > fits:
            per_image, positions = budget
            raise ParameterError(
                f"{nb.stem}: parameter {key} asks for {n} demonstrations, but {model_label or model} holds "
                f"{positions} positions and takes up to {per_image} tokens per image: {n} shots + the query = "
                f"{(n + 1) * per_image} image tokens. At most {fits} shots fit (leaving {text_reserve(positions)} tokens of text); "
                f"lower {key} to {fits} or use a model with a longer context (e.g. HuggingFaceTB/SmolVLM-Instruct)")
