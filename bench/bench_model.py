"""Benchmark the embedded model, side by side in one run (not a timed test):

1. answering paper A's multiple-choice prompt for the same ID queries by
   (a) batched log-likelihood scoring of the choices (``MLLM.score_choices``), versus
   (b) a per-sample ``generate`` + ``parse_answer`` loop,
   in queries per second, with the agreement between the two answers;
2. training-step throughput (the instruction-tuning step: forward + backward + AdamW) in FLOP/s,
   against this machine's measured fp32 matmul peak (FLOP utilisation).

Usage: ``.venv/bin/python bench/bench_model.py [--model DIR] [--queries 200] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def matmul_peak(threads: int, n: int = 1024, reps: int = 20) -> float:
    """Best-of-3 fp32 matmul throughput (FLOP/s) for n x n @ n x n with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def training_step_throughput(model_dir: str, steps: int = 8, batch_size: int = 32) -> dict:
    """FLOPs per instruction-tuning step (counted by torch's FlopCounterMode) and steps per second."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from mllm_ood.mllm import embedded as em
    from mllm_ood.seeding import rng

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
    config = em.read_record(model_dir)["config"]
    x, y, _ = em.load_id_data(config)
    x, y = x[::4], y[::4]  # every 4th image: all classes (the ID set is ordered by class)
    with torch.no_grad():
        bank = em.vision_token_features(model, em.pixel_values(x)).reshape(len(x), -1)
    enc = em.Encoder(tok)
    sampler = em.TaskSampler(y, 0, config)
    mix = config["stages"]["instruct"]["mix"]
    tasks, w = list(mix), np.array(list(mix.values()), float)
    r = rng(0, "bench")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step():
        kinds = r.choice(len(tasks), batch_size, p=w / w.sum())
        encoded = [enc.encode(sampler.draw(tasks[k], r)) for k in kinds]
        ids, b_idx, pos, imgs = em.collate(encoded, enc.pad_id)
        logits = em.lm_forward(model, ids, bank[imgs], b_idx, pos)
        loss = torch.nn.functional.cross_entropy(logits, ids[b_idx, pos + 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return int(ids.numel())

    step()  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    t = time.perf_counter()
    tokens = sum(step() for _ in range(steps))
    dt = (time.perf_counter() - t) / steps
    return {"flops_per_step": flops, "s_per_step": dt, "tokens_per_step": tokens / steps, "flop_per_s": flops / dt}


def main() -> None:
    import torch

    from mllm_ood.data.digits import DIGIT_NAMES
    from mllm_ood.data.world import load
    from mllm_ood.mllm.embedded import DEFAULT_MODEL_DIR, torch_threads
    from mllm_ood.mllm import load_model
    from mllm_ood.formats.prompts import format_answer, parse_answer, zero_shot_prompt

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: as training chooses)")
    args = ap.parse_args()
    threads = args.threads or torch_threads()
    torch.set_num_threads(threads)
    print(f"model {args.model}; torch threads {threads}; cpu cores {os.cpu_count()}")

    m = load_model(args.model)
    ds = load("digit_styles", "mnist").select(range(args.queries))
    labels = np.asarray(ds["label"])
    convs = [([im], zero_shot_prompt(DIGIT_NAMES)) for im in ds["image"]]
    choices = [format_answer(c) for c in DIGIT_NAMES]
    m.score_choices(convs[:4], choices)  # warm-up
    m.generate(convs[:2], max_new_tokens=12)

    t = time.perf_counter()
    scores = m.score_choices(convs, choices, batch_size=args.batch_size)
    t_score = time.perf_counter() - t
    pred_score = scores.argmax(1)

    t = time.perf_counter()
    pred_gen = []
    for c in convs:
        reply = m.generate([c], max_new_tokens=12)[0]
        p = parse_answer(reply, DIGIT_NAMES)
        pred_gen.append(-1 if p is None else p)
    t_gen = time.perf_counter() - t
    pred_gen = np.asarray(pred_gen)

    qps_s, qps_g = len(convs) / t_score, len(convs) / t_gen
    print("\n== answering the same queries (paper A prompt, 10 choices) ==")
    print(f"batched choice scoring : {qps_s:8.1f} queries/s  accuracy {np.mean(pred_score == labels):.3f}")
    print(f"generate + parse loop  : {qps_g:8.1f} queries/s  accuracy {np.mean(pred_gen == labels):.3f}  "
          f"parse rate {np.mean(pred_gen >= 0):.3f}")
    print(f"speed-up (scoring / generate loop): {qps_s / qps_g:.1f}x;  same answer on {np.mean(pred_score == pred_gen):.3f}"
          " of queries")

    peak = matmul_peak(threads)
    tr = training_step_throughput(args.model)
    print("\n== training step (instruction tuning, batch 32) ==")
    print(f"matmul peak (fp32, 1024^3, {threads} thread(s)): {peak / 1e9:8.1f} GFLOP/s")
    print(f"training step: {tr['flops_per_step'] / 1e9:.2f} GFLOP/step, {tr['s_per_step'] * 1e3:.0f} ms/step, "
          f"{tr['tokens_per_step']:.0f} tokens/step -> {tr['flop_per_s'] / 1e9:.1f} GFLOP/s")
    print(f"FLOP utilisation (training / matmul peak): {tr['flop_per_s'] / peak:.3f}")


if __name__ == "__main__":
    main()
