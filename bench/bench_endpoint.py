"""Benchmark the endpoint client against a local OpenAI-compatible server, side by side in one run (not a
timed test): requests per second vs concurrency, with the in-process model's batched ``generate`` on the
same conversations as the reference row, and a rerun from the request cache.

The server is ``transformers serve`` on 127.0.0.1 serving the embedded checkpoint on CPU (started and
stopped here, as the tests do). Every concurrency level uses a fresh request cache, so every request is
sent. Replies are checked equal to the in-process ones.

Usage: ``.venv/bin/python bench/bench_endpoint.py [--conversations 160] [--levels 1 2 4 8 16]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=160)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["MLLM_OOD_CACHE"] = tempfile.mkdtemp(prefix="bench-endpoint-")

    from endpoint_server import serve
    from test_endpoint import _digit_conversations

    from mllm_ood.mllm.families.endpoint import EndpointModel
    from mllm_ood.mllm.refs import parse_endpoint_ref
    from mllm_ood.mllm import load_model

    model_dir = str((ROOT / "data" / "models" / "embedded_mllm").resolve())
    convs, _, _ = _digit_conversations(n_per_class=2)
    convs = convs[: args.conversations]
    local = load_model(model_dir)
    t = time.perf_counter()
    reference = local.generate(convs, max_new_tokens=args.max_new_tokens, batch_size=32)
    rows = [("in-process generate (batch 32)", "-", len(convs) / (time.perf_counter() - t), "-")]
    with serve(model_dir, Path(tempfile.mkdtemp()) / "serve.log") as url:
        spec = parse_endpoint_ref(f"openai:{model_dir}@{url}")
        EndpointModel(spec).generate(convs[:2], max_new_tokens=args.max_new_tokens)  # warm-up
        for level in args.levels:
            os.environ["MLLM_OOD_CACHE"] = tempfile.mkdtemp(prefix=f"bench-endpoint-{level}-")
            m = EndpointModel(spec, concurrency=level)
            t = time.perf_counter()
            replies = m.generate(convs, max_new_tokens=args.max_new_tokens)
            rate = len(convs) / (time.perf_counter() - t)
            rows.append((f"endpoint, concurrency {level}", m.stats["requests"], rate, replies == reference))
        m = EndpointModel(spec, concurrency=args.levels[-1])
        t = time.perf_counter()
        replies = m.generate(convs, max_new_tokens=args.max_new_tokens)
        rows.append(("endpoint, rerun from the request cache", m.stats["requests"],
                     len(convs) / (time.perf_counter() - t), replies == reference))
    print(f"{len(convs)} conversations (embedded model, max_new_tokens {args.max_new_tokens}), "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs")
    print(f"{'client':<42}{'requests sent':>14}{'conversations/s':>17}{'replies == in-process':>24}")
    for name, sent, rate, same in rows:
        print(f"{name:<42}{sent!s:>14}{rate:>17.1f}{same!s:>24}")


if __name__ == "__main__":
    main()
