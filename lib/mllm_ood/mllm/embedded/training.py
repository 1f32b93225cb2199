"""The embedded model's training stages: the vision tower (supervised), centring of its features, and
the language-model stages (align, instruct) with the label-vocabulary loss."""

from __future__ import annotations

import os
import time

import numpy as np

from ...data.digits import DIGIT_NAMES
from ...formats.episodes import NONCE_WORDS
from ...seeding import derive_seed, rng
from ...validation import check_choices
from .samples import TASKS, Encoder, TaskSampler, collate, pixel_values, shift_images

# Bump whenever a change alters what training produces (weights, losses, diagnostics) for the same
# config and data: train_or_load refuses a checkpoint recorded with another version, so the committed
# checkpoint is retrained (RETRAIN, REPLACE_COMMITTED) rather than silently kept. A record without
# ``training_version`` was made by version 1 (the committed checkpoint's code_version 2+b756ba9c7938;
# the split into this subpackage changed no weight: smoke training before and after hashes the same).
TRAINING_VERSION = 1

def label_token_loss(logits, targets, is_label, label_ids, set_weight: float):
    """Per-token loss (nats), shape (n,): cross-entropy over the whole vocabulary for ordinary tokens;
    for label words, cross-entropy over the *label vocabulary* ``label_ids`` (every word that can be a
    label: the digit names and the made-up words) plus ``set_weight`` times ``-log P(label vocabulary)``.

    The full cross-entropy is exactly the sum of those two terms (``set_weight`` = 1). Splitting it
    matters: a tiny decoder trained with the full softmax at label positions never formed in-context
    learning (measured, see ``params/embedded/model.yaml``), while the label-vocabulary term alone
    formed it; the small set term keeps label words the model's most likely continuation.
    logits: (n, vocab); targets: (n,) token ids; is_label: (n,) bool; label_ids: (k,) token ids.
    """
    import torch
    from torch.nn import functional as F

    loss = F.cross_entropy(logits, targets, reduction="none")
    if bool(is_label.any()):
        lg = logits[is_label]
        sub = lg[:, label_ids]
        where = (targets[is_label, None] == label_ids[None]).float().argmax(-1)
        within = F.cross_entropy(sub, where, reduction="none")
        out_of_set = torch.logsumexp(lg, -1) - torch.logsumexp(sub, -1)
        loss = loss.masked_scatter(is_label, within + set_weight * out_of_set)
    return loss


def label_vocabulary(enc: "Encoder") -> list[int]:
    """Token ids of every word that can be a label: the ten digit names and the made-up words."""
    return [enc.text(w)[0] for w in (*DIGIT_NAMES, *NONCE_WORDS)]


def lm_forward(model, ids, image_features, b_idx, pos):
    """Logits at positions (b_idx, pos) of a right-padded batch; image tokens replaced by projected
    ``image_features`` (n_images, d_vision) in order of appearance — what LlavaModel.forward does."""
    lm = model.model.language_model
    emb = lm.embed_tokens(ids)
    img = model.model.multi_modal_projector(image_features).to(emb.dtype)
    mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(mask, img)
    # Right padding + causal attention: real tokens never see padding, so no mask is needed.
    h = lm(inputs_embeds=emb).last_hidden_state
    return model.lm_head(h[b_idx, pos])


def vision_token_features(model, pv, batch: int = 512):
    """The features LLaVA feeds to its projector: (n, tokens, d_vision) for pixel values (n, 3, H, W)."""
    import torch

    cfg = model.config
    tower = model.model.vision_tower
    outs = []
    for i in range(0, len(pv), batch):
        hs = tower(pixel_values=pv[i:i + batch], output_hidden_states=True).hidden_states[cfg.vision_feature_layer]
        outs.append(hs[:, 1:] if cfg.vision_feature_select_strategy == "default" else hs)
    return torch.cat(outs)


def torch_threads() -> int:
    """Torch threads for training: OMP_NUM_THREADS / MLLM_OOD_THREADS when set, else 1 or 2 cores,
    whichever runs a probe matmul faster (on a shared machine a busy second core makes 2 threads
    several times slower than 1)."""
    import torch

    for var in ("MLLM_OOD_THREADS", "OMP_NUM_THREADS"):
        env = os.environ.get(var, "")
        if env.isdigit() and int(env) > 0:
            return int(env)
    best, best_t = 1, float("inf")
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for n in range(1, min(2, os.cpu_count() or 1) + 1):
        torch.set_num_threads(n)
        t = time.perf_counter()
        for _ in range(30):
            a @ b
        dt = time.perf_counter() - t
        if dt < best_t * 0.8:  # 2 threads must be clearly faster to be worth it
            best, best_t = n, dt
    return best


def lr_schedule(opt, steps: int, lr: float):
    """Linear warm-up over the first 5 % of ``steps`` from ``1/warm`` of the rate, then transformers' cosine
    decay to 5 % (``get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=0.05)``: identical from the
    end of the warm-up on, tested). Not that function itself: its warm-up starts at rate 0, one step behind
    this one, which would change every weight of the committed checkpoint."""
    import torch

    warm = max(1, steps // 20)

    def f(s):
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warm) / max(1, steps - warm)))) * 0.95 + 0.05

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def train_vision(model, x, y, cfg_stage: dict, seed: int, log: dict, smoke: bool):
    """Stage 1: supervised pretraining of the vision tower (head on the token(s) the LLM reads).
    Returns the classification head (for the held-out diagnostic); losses go to ``log['vision_loss']``."""
    import torch
    from torch import nn
    from ...progress import tqdm

    d = model.config.vision_config.hidden_size
    torch.manual_seed(derive_seed(seed, "vision-head"))
    head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 10))
    tower = model.model.vision_tower
    params = list(tower.parameters()) + list(head.parameters())
    steps, bs, lr = int(cfg_stage["steps"]), int(cfg_stage["batch_size"]), float(cfg_stage["lr"])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = lr_schedule(opt, steps, lr)
    r = rng(seed, "vision-batches")
    tower.train()
    losses = []
    for _ in tqdm(range(steps), desc="vision", disable=smoke, mininterval=5):
        idx = r.integers(0, len(x), bs)
        xb = pixel_values(shift_images(x[idx], r, int(cfg_stage.get("shift_px", 2))))
        f = vision_token_features(model, xb)
        logits = head(f)
        yb = torch.as_tensor(y[idx]).repeat_interleave(f.shape[1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 10), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
    tower.eval()
    log["vision_loss"] = losses
    return head


def centre_vision_features(model, x) -> dict:
    """Fold the per-position ID mean of the projector's input into the last bias of the vision tower.

    The last encoder layer adds ``fc2(...) + bias`` to the residual stream; subtracting the mean
    feature from that bias shifts every output by minus the mean, so the ID features are centred.
    One bias is shared by all positions, so this is exactly per-position centring only with one
    image token per image (our layout); with several tokens it centres their global mean.
    """
    import torch

    with torch.no_grad():
        f = vision_token_features(model, pixel_values(x))  # (n, tokens, d)
        mean = f.mean(dim=(0, 1))
        before = float(f.mean(dim=(0, 1)).norm() / f.norm(dim=-1).mean())
        tower = model.model.vision_tower
        fc2 = getattr(tower, "vision_model", tower).encoder.layers[-1].mlp.fc2
        fc2.bias -= mean
        f2 = vision_token_features(model, pixel_values(x))
        after = float(f2.mean(dim=(0, 1)).norm() / f2.norm(dim=-1).mean())
    return {"mean_norm_ratio_before": round(before, 4), "mean_norm_ratio_after": round(after, 6)}


def train_lm_stage(model, name: str, bank, labels, enc: Encoder, cfg_stage: dict, config: dict, seed: int,
                   log: dict, smoke: bool, probe: "HeldOutProbe | None" = None) -> None:
    """Stages 2 and 3: train projector + decoder on the stage's task mix (tower frozen, features banked).

    probe: evaluated every ``config['eval_every']`` steps and at the stage's end; its results go to
    ``log[name + '_heldout']`` as records ``{"step": ..., <diagnostic>: accuracy}``."""
    import torch
    from ...progress import tqdm

    mix = cfg_stage["mix"]
    check_choices(f"task in the {name} mix", mix, TASKS)
    tasks, w = list(mix), np.array([float(mix[t]) for t in mix])
    w = w / w.sum()
    copies = int(config.get("episodes", {}).get("augment_copies", 0))
    # a stage may override the episode settings (e.g. only 2-way, always max_shots while ICL forms)
    sampler = TaskSampler(labels, copies, {"episodes": {**config.get("episodes", {}), **cfg_stage.get("episodes", {})}})
    params = list(model.model.multi_modal_projector.parameters()) + list(model.model.language_model.parameters()) \
        + list(model.lm_head.parameters())
    steps, bs, lr = int(cfg_stage["steps"]), int(cfg_stage["batch_size"]), float(cfg_stage["lr"])
    label_ids = torch.tensor(label_vocabulary(enc))
    set_weight = float({**config.get("label_loss", {}), **cfg_stage.get("label_loss", {})}.get("set_weight", 1.0))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = lr_schedule(opt, steps, lr)
    r = rng(seed, name, "batches")
    every = int(config.get("eval_every", 0))
    tracked = []
    model.train()
    losses, per_task = [], {t: [] for t in tasks}
    for step in tqdm(range(steps), desc=name, disable=smoke, mininterval=5):
        if probe is not None and every and step % every == 0:
            tracked.append({"step": step, **probe(model)})
        kinds = r.choice(len(tasks), bs, p=w)
        samples = [sampler.draw(tasks[k], r) for k in kinds]
        encoded = [enc.encode(s) for s in samples]
        ids, b_idx, pos, imgs, is_label = collate(encoded, enc.pad_id, with_labels=True)
        logits = lm_forward(model, ids, bank[imgs], b_idx, pos)
        tok_loss = label_token_loss(logits, ids[b_idx, pos + 1], is_label, label_ids, set_weight)
        loss = tok_loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
        with torch.no_grad():
            for k, t in enumerate(tasks):
                sel = torch.as_tensor(kinds == k)[b_idx]
                if sel.any():
                    per_task[t].append(round(float(tok_loss[sel].mean()), 5))
    model.eval()
    if probe is not None:
        tracked.append({"step": steps, **probe(model)})
        log[f"{name}_heldout"] = tracked
    log[f"{name}_loss"] = losses
    log[f"{name}_task_loss"] = per_task


def align_selection(cfg_stage: dict) -> tuple[int, int]:
    """``(candidates, select_window)`` of the align stage, checked (call before any compute)."""
    from ...validation import ParameterError

    n = cfg_stage.get("candidates", 1)
    steps = int(cfg_stage["steps"])
    window = cfg_stage.get("select_window", min(100, steps))
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"stages.align.candidates must be an integer >= 1, got {n!r}")
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= steps:
        raise ParameterError(f"stages.align.select_window must be an integer in [1, steps={steps}], got {window!r}")
    return n, window


def train_align(model, new_model, bank, labels, enc: Encoder, cfg_stage: dict, config: dict, seed: int,
                log: dict, smoke: bool, probe: "HeldOutProbe | None" = None):
    """Stage 2 with restarts; returns the model to continue with.

    Whether in-context learning forms during this stage depends on the initialisation and the batches
    (measured on this model: held-out 2-way 8-shot accuracy after the same 1,000 steps was 0.78 for one
    seed and 0.96 for another), so ``cfg_stage['candidates']`` independent starts are trained: candidate
    0 is ``model`` as initialised, with batches from ``seed``; candidate k >= 1 has the seed
    ``s = derive_seed(seed, "align-candidate", k)``, keeps ``model``'s frozen vision tower, takes a fresh
    projector and decoder from ``new_model()`` built under the torch seed ``derive_seed(s, "init")`` (as
    candidate 0 was built from ``derive_seed(seed, "init")``) and draws its batches from ``s``. The candidate with the lowest mean
    training loss over its last ``cfg_stage['select_window']`` steps is kept: a choice made on training
    episodes only. The held-out probe is run on every candidate and recorded in
    ``log['align_candidates']``, never used to choose. With one candidate this is :func:`train_lm_stage`.
    """
    import copy

    import torch

    n, window = align_selection(cfg_stage)
    runs = []
    for k in range(n):
        if k == 0:
            cand, cand_seed = model, seed
        else:
            cand_seed = derive_seed(seed, "align-candidate", k)
            torch.manual_seed(derive_seed(cand_seed, "init"))
            fresh = new_model()
            cand = copy.deepcopy(model)
            for part in ("multi_modal_projector", "language_model"):
                getattr(cand.model, part).load_state_dict(getattr(fresh.model, part).state_dict())
            cand.lm_head.load_state_dict(fresh.lm_head.state_dict())
        cand_log: dict = {}
        train_lm_stage(cand, "align", bank, labels, enc, cfg_stage, config, cand_seed, cand_log, smoke, probe)
        runs.append((float(np.mean(cand_log["align_loss"][-window:])), k, cand_seed, cand, cand_log))
    best = min(runs, key=lambda run: (run[0], run[1]))
    log.update(best[4])
    log["align_candidates"] = [{"candidate": k, "seed": s, "selection_loss": round(sel, 5), "chosen": k == best[1],
                                "heldout": lg.get("align_heldout", []), "loss": lg["align_loss"]}
                               for sel, k, s, _, lg in runs]
    return best[3]
