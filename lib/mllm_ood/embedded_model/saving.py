"""The checkpoint: all stages trained and saved atomically in Hugging Face format with its training
record, and the guard that reuses a matching checkpoint and never replaces one silently."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from ..paths import ROOT
from ..safe_replace import check_replaceable, install_folder
from ..seeding import derive_seed, rng
from ..validation import ParameterError
from .config import DEFAULT_MODEL_DIR, RECORD, code_version, config_hash, load_config
from .diagnostics import HeldOutProbe, cross_class_cosine
from .samples import TASKS, Encoder, Sample, TaskSampler, data_hash, load_id_data, pixel_values, shift_images
from .tokenizer import ROLE_TOKENS, build_model_config, build_processor, build_tokenizer
from .training import TRAINING_VERSION, _threads, align_selection, centre_vision_features, train_align, train_lm_stage, train_vision, vision_token_features

def train_embedded_model(config: dict, out_dir: str | Path, smoke: bool = False, replace_committed: bool = False) -> dict:
    """Train the embedded MLLM in stages and save it (model + processor + ``training_record.json``).

    config: as returned by :func:`load_config` (``smoke`` overrides already merged when wanted).
    out_dir: the checkpoint folder; written atomically (built in a fresh temporary sibling, then renamed
    into place). An existing ``out_dir`` is replaced only when it is a checkpoint of this project and not
    the committed one (unless ``replace_committed``); anything else is refused before training
    (:func:`mllm_ood.safe_replace.check_replaceable`) and never deleted.
    smoke: hides progress bars and skips slow diagnostics (the micro config is chosen by load_config).
    Returns the training record (seed, config and its hash, data hash, code version, losses per
    step, wall time per stage in seconds, diagnostics). Deterministic given ``config['seed']``.
    """
    import torch
    import transformers
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    out_dir = Path(out_dir)
    guard = _guard(replace_committed)
    check_replaceable(out_dir, **guard)
    seed = int(config.get("seed", 0))
    align_selection(config["stages"]["align"])  # bad restart settings fail before any compute
    threads = _threads()
    torch.set_num_threads(threads)
    t_all = time.time()
    walls: dict[str, float] = {}
    log: dict = {}

    t = time.time()
    x, y, ids = load_id_data(config)
    dhash = data_hash(x, y, ids)
    tokenizer = build_tokenizer(int(config["tokenizer"]["vocab_size"]), seed)
    processor = build_processor(tokenizer, config)
    mcfg = build_model_config(config, tokenizer)
    torch.manual_seed(derive_seed(seed, "init"))
    model = LlavaForConditionalGeneration(mcfg)
    model.generation_config = GenerationConfig(bos_token_id=mcfg.text_config.bos_token_id,
                                               eos_token_id=mcfg.text_config.eos_token_id,
                                               pad_token_id=mcfg.text_config.pad_token_id,
                                               do_sample=False, max_new_tokens=24)
    walls["setup"] = time.time() - t

    t = time.time()
    head = train_vision(model, x, y, config["stages"]["vision"], seed, log, smoke)
    walls["vision"] = time.time() - t

    t = time.time()
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    diag = {"centring": centre_vision_features(model, x)}
    r = rng(seed, "feature-bank")
    copies = int(config.get("episodes", {}).get("augment_copies", 0))
    shift = int(config["stages"]["vision"].get("shift_px", 2))
    with torch.no_grad():
        views = [x] + [shift_images(x, r, shift) for _ in range(copies)]
        bank = torch.cat([vision_token_features(model, pixel_values(v)).reshape(len(x), -1) for v in views])
    walls["centring"] = time.time() - t

    enc = Encoder(tokenizer)
    _check_template(enc, processor, y, config)
    # Held-out ID digits (eval split): tracked during training, never used for training or selection.
    from ..data.world import load

    ev = load("digit_styles", "mnist")
    xe = np.stack([np.asarray(im.convert("L")) for im in ev["image"]])
    ye = np.asarray(ev["label"])
    probe = HeldOutProbe(enc, xe, ye, seed, n_mc=50 if smoke else 200, n_icl=10 if smoke else 200,
                         settings=((2, "reassigned", (8,)), (3, "reassigned", (8,))))
    t = time.time()
    model = train_align(model, lambda: LlavaForConditionalGeneration(mcfg), bank, y, enc, config["stages"]["align"],
                        config, seed, log, smoke, probe)
    walls["align"] = time.time() - t
    t = time.time()
    train_lm_stage(model, "instruct", bank, y, enc, config["stages"]["instruct"], config, seed, log, smoke, probe)
    walls["instruct"] = time.time() - t

    t = time.time()
    with torch.no_grad():
        fe = vision_token_features(model, pixel_values(xe))
        diag["vision_heldout_acc"] = round(float((head(fe).mean(1).argmax(-1).numpy() == ye).mean()), 4)
        diag["cross_class_cosine"] = round(cross_class_cosine(model, fe, ye), 4)
    # Diagnostics on the held-out ID eval split: recorded, never used for training or selection.
    final = HeldOutProbe(enc, xe, ye, derive_seed(seed, "final"), n_mc=100 if smoke else 500,
                         n_icl=20 if smoke else 300,
                         settings=[(k, m, (0, 1, 2, 4, 8)) for m in ("reassigned", "permuted") for k in (2, 3, 5)])
    diag.update(final(model))
    walls["diagnostics"] = time.time() - t

    record = {
        "seed": seed, "config": config, "config_hash": config_hash(config), "data_hash": dhash,
        "n_train_images": int(len(ids)), "id_data": config["id_data"], "code_version": code_version(),
        "training_version": TRAINING_VERSION,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": threads, "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "total_wall_s": round(time.time() - t_all, 2), "losses": log, "diagnostics": diag,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        record["files"] = sorted([p.name for p in tmp.iterdir()] + [RECORD])
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
        install_folder(tmp, out_dir, **guard)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _check_template(enc: Encoder, processor, labels, config) -> None:
    """Fail early if the training renderer and the saved chat template ever disagree."""
    sampler = TaskSampler(labels, 0, config)
    r = rng(0, "template-check")
    for task in TASKS:
        s = sampler.draw(task, r)
        ids, _, imgs = enc.encode(s)
        text = enc.render(s)
        full = enc.tok.encode(text, add_special_tokens=False)
        if full != ids:
            raise RuntimeError(f"piecewise tokenisation differs from the whole string for task {task}")
        # the user turn, rendered by the processor's chat template, must be the same string
        user = [p for p in s.pieces]
        k = next(i for i, p in enumerate(user) if p[0] == "special" and p[1] == ROLE_TOKENS["assistant"])
        content, seg = [], ""
        for typ, val, _ in user[2:k - 1]:
            if typ == "image":
                if seg:
                    content.append({"type": "text", "text": seg}); seg = ""
                content.append({"type": "image"})
            else:
                seg += val
        if seg:
            content.append({"type": "text", "text": seg})
        rendered = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                 tokenize=False)
        if rendered != enc.render(Sample("x", user[: k + 1])):
            raise RuntimeError(f"chat template renders task {task} differently:\n{rendered!r}")


def read_record(model_dir: str | Path) -> dict | None:
    """The training record of a checkpoint folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(model_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _differences(recorded: dict, wanted: dict, prefix: str = "") -> list[str]:
    """'key: recorded -> wanted' for every leaf where two configs differ."""
    out = []
    for k in sorted(set(recorded) | set(wanted)):
        a, b = recorded.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, requested {b!r}")
    return out


HOW = ("train another model into a new folder (MODEL_DIR, e.g. data/models/embedded_mllm_seed1) with "
       "RETRAIN=True")


def _guard(replace_committed: bool) -> dict:
    """The keyword arguments of :func:`~mllm_ood.safe_replace.check_replaceable` for a checkpoint folder."""
    return {"record": RECORD, "root": ROOT, "protected": [DEFAULT_MODEL_DIR], "allow_protected": replace_committed,
            "how": HOW}


def check_model_dir(model_dir: str | Path, config: dict, retrain: bool = False,
                    replace_committed: bool = False) -> dict | None:
    """The refusals of :func:`train_or_load` that need no training data, for a notebook's validation cell:
    with ``retrain``, ``model_dir`` must be replaceable (:func:`mllm_ood.safe_replace.check_replaceable`:
    a new or empty folder, or a checkpoint of this project; the committed one only with
    ``replace_committed``; never the repository root or a folder above a checkpoint); without it, a
    folder holding files must be a checkpoint whose record matches ``config`` and the training code.
    Returns the record to reuse, or None when the model is to be trained."""
    model_dir = Path(model_dir)
    if retrain:
        check_replaceable(model_dir, **_guard(replace_committed))
        return None
    rec = read_record(model_dir)
    if rec is None:
        check_replaceable(model_dir, **_guard(False))  # only a new or empty folder is trained into
        return None
    diffs = _differences(rec.get("config", {}), config)
    if rec.get("training_version", 1) != TRAINING_VERSION:
        diffs.append(f"training code: checkpoint version {rec.get('training_version', 1)}, "
                     f"now {TRAINING_VERSION} (TRAINING_VERSION)")
    if diffs or not (model_dir / "config.json").is_file():
        raise ParameterError(f"the checkpoint in {model_dir} was trained with other settings ("
                             f"{'; '.join(diffs) or 'its weights are missing'}); {HOW}")
    return rec


def train_or_load(model_dir: str | Path = DEFAULT_MODEL_DIR, config: dict | None = None, retrain: bool = False,
                  smoke: bool = False, replace_committed: bool = False) -> tuple[Path, dict]:
    """Reuse the checkpoint in ``model_dir`` when its record matches ``config``, the ID data (hash) and
    the training code (:data:`~.training.TRAINING_VERSION`; a record without one was made by version
    1); train into an empty ``model_dir``. Returns (model_dir, training record). The record's
    ``code_version`` (a source hash) is provenance only and not compared.

    A checkpoint is never replaced silently: a folder whose record differs from ``config`` (another
    seed, another config), from the ID data or from the training version is refused with a message
    naming the differences, unless ``retrain``; and the committed checkpoint (:data:`DEFAULT_MODEL_DIR`) is replaced only with
    ``replace_committed`` as well. Checked before any training starts.
    """
    config = load_config(smoke=smoke) if config is None else config
    model_dir = Path(model_dir)
    rec = check_model_dir(model_dir, config, retrain, replace_committed)
    if rec is not None:
        x, y, ids = load_id_data(config)
        if rec.get("data_hash") != data_hash(x, y, ids):
            raise ParameterError(f"the checkpoint in {model_dir} was trained with other settings (ID training data: "
                                 f"checkpoint {rec.get('data_hash')}, now {data_hash(x, y, ids)}); {HOW}")
        return model_dir, rec
    return model_dir, train_embedded_model(config, model_dir, smoke=smoke, replace_committed=replace_committed)
