"""A reproducible sweep of bad inputs and faults through the runner and the ``emi`` command.

Each trial runs the real command line in a subprocess (runs and figures in a temporary folder, the shared
cache as configured) and is classified:

- ``refused``: exit 2 with one ``error:`` line, before any notebook started or anything was embedded;
- ``late``: a notebook started (or the command computed) before the bad value stopped it; a trial that
  starts a notebook is stopped at once (it would compute with a bad value);
- ``accepted``: exit 0 with a bad value;
- ``traceback``: a Python traceback instead of a message;
- ``data lost``: a file that must survive (the committed checkpoint, a published figure) is gone or changed;
- ``ok``: a fault trial that must succeed (publishing across filesystems) did.

    .venv/bin/python bench/sweep_bad_inputs.py [--with-runs]

``--with-runs`` adds the fault trial that executes a notebook (``00_embedded_world`` with its figures on
``/dev/shm``, another filesystem: a minute or two); ``--runs-only`` runs only that one. Prints one line per
trial and the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
CHECKPOINT = ROOT / "data" / "models" / "embedded_mllm"
# run the runner with its params folder replaced (the params-file trials)
WITH_PARAMS = ("import sys\nfrom pathlib import Path\nimport mllm_ood.runner as r\nfrom mllm_ood.__main__ import main\n"
               "r.PARAMS = Path(sys.argv[1])\nsys.exit(main(sys.argv[2:]))\n")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")) if folder.exists() else []:
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def run(cmd: list[str], env: dict, limit: float = 300) -> tuple[int | None, str, str, float]:
    """Run ``cmd``; stop it as soon as a notebook starts ('==>' on stdout) unless ``limit`` allows a run."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    started = False
    for line in proc.stdout:
        out.append(line)
        if line.startswith("==>") and limit <= 0:
            started = True
            proc.terminate()
            break
    try:
        _, err = proc.communicate(timeout=max(limit, 60))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return (None if started else proc.returncode), "".join(out), err, time.time() - t0


def classify(rc, out: str, err: str, must_survive: dict) -> str:
    for path, before in must_survive.items():
        if digest(path) != before:
            return "data lost"
    if "Traceback" in err and rc not in (0, 2):
        return "traceback"
    if rc is None:
        return "late"
    if rc == 2 and "error:" in err and "==>" not in out:
        return "refused"
    if rc == 0:
        return "accepted"
    return "late"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-runs", action="store_true", help="also the fault trials that run a notebook")
    ap.add_argument("--runs-only", action="store_true", help="only the fault trials that run a notebook")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sweep-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLLM_OOD_RUNS": str(tmp / "runs"),
           "MLLM_OOD_FIGURES": str(tmp / "figures")}
    env.pop("OPENAI_API_KEY", None)
    mod = [PY, "-m", "mllm_ood"]
    runner = [*mod, "run"]

    # inputs for the emi and params-file trials
    jsonl = tmp / "answers.jsonl"
    jsonl.write_text("".join(json.dumps({"scenario": "src" if i < 15 else "tgt", "id": str(i), "question": f"q{i}",
                                         "response": "a cat", "reference": "a cat"}) + "\n" for i in range(30)))
    empty = tmp / "empty_responses.jsonl"
    empty.write_text(jsonl.read_text().replace('"response": "a cat"', '"response": ""'))
    params = tmp / "params"
    shutil.copytree(ROOT / "params", params)
    (params / "embedded" / "00_embedded_world.yaml").write_text(
        (ROOT / "params" / "embedded" / "00_embedded_world.yaml").read_text() + "\nSEED: 1\n")
    params_empty = tmp / "params_empty"
    shutil.copytree(ROOT / "params", params_empty)
    (params_empty / "embedded" / "00_embedded_world.yaml").write_text("")
    (tmp / "a_file").write_text("x")
    emi = [*mod, "emi", "--input", str(jsonl), "--source", "src", "--out", str(tmp / "emi.json"), "--quiet"]

    ckpt = {CHECKPOINT: digest(CHECKPOINT)}
    trials = [
        # (name, command, extra env, must-survive)
        *[(f"retrain into MODEL_DIR {d}", [*runner, "--only", "00_embedded_model", "--retrain", "-p", "MODEL_DIR", d],
           {}, ckpt) for d in ("data/models", "data", ".", "/")],
        ("retrain the committed checkpoint without REPLACE_COMMITTED", [*runner, "--only", "00_embedded_model",
                                                                         "--retrain"], {}, ckpt),
        ("another SEED for the committed checkpoint", [*runner, "--only", "00_embedded_model", "-p", "SEED", "5"], {},
         ckpt),
        ("TEXT_EMBEDDER foo", [*runner, "--smoke", "--only", "04", "-p", "TEXT_EMBEDDER", "foo"], {}, {}),
        ("TEXT_EMBEDDER nosuch/model (offline)", [*runner, "--smoke", "--only", "04", "-p", "TEXT_EMBEDDER",
                                                 "nosuch/model"], {}, {}),
        ("IMAGE_EMBEDDER foo", [*runner, "--smoke", "--only", "04", "-p", "IMAGE_EMBEDDER", "foo"], {}, {}),
        ("IMAGE_EMBEDDER clip (offline)", [*runner, "--smoke", "--only", "04", "-p", "IMAGE_EMBEDDER", "clip"], {}, {}),
        ("JUDGE openai:gpt-4-0314 without a key", [*runner, "--smoke", "--only", "04", "-p", "JUDGE",
                                                   "openai:gpt-4-0314"], {}, {}),
        ("PROBE_FEATURES nosuch/clip", [*runner, "--smoke", "--only", "02", "-p", "PROBE_FEATURES", "nosuch/clip"], {},
         {}),
        ("PROBE_FEATURES clip (embedded profile, offline)", [*runner, "--smoke", "--only", "02", "-p",
                                                              "PROBE_FEATURES", "clip"], {}, {}),
        ("paper profile without --standin, hub unreachable", [*runner, "--profile", "paper", "--smoke"], {}, {}),
        ("figures folder under a file", [*runner, "--only", "00_embedded_world"],  # smoke runs keep their own
         {"MLLM_OOD_FIGURES": str(tmp / "a_file" / "figures")}, {}),
        ("run folder under a file", [*runner, "--smoke", "--only", "00_embedded_world"],
         {"MLLM_OOD_RUNS": str(tmp / "a_file" / "runs")}, {}),
        ("params file repeating a key", [PY, "-c", WITH_PARAMS, str(params), "run", "--only", "00_embedded_world"], {},
         {}),
        ("empty params file under --smoke", [PY, "-c", WITH_PARAMS, str(params_empty), "run", "--smoke", "--only",
                                             "00_embedded_world"], {}, {}),
        ("-p SEED -1", [*runner, "--smoke", "--only", "00_embedded_world", "-p", "SEED", "-1"], {}, {}),
        ("-p SAMPLES_PER_DOMAIN 0", [*runner, "--smoke", "--only", "00_embedded_world", "-p", "SAMPLES_PER_DOMAIN",
                                     "0"], {}, {}),
        ("-p SEEED 1 (misspelled)", [*runner, "--smoke", "--only", "00_embedded_world", "-p", "SEEED", "1"], {}, {}),
        ("--timeout 0", [*runner, "--smoke", "--only", "00_embedded_world", "--timeout", "0"], {}, {}),
        ("--jobs 0", [*runner, "--smoke", "--only", "00_embedded_world", "--jobs", "0"], {}, {}),
        ("--only nope", [*runner, "--only", "nope"], {}, {}),
        ("--profile laptop", [*runner, "--profile", "laptop"], {}, {}),
        ("--standin on the embedded profile", [*runner, "--standin"], {}, {}),
        ("--retrain without a notebook that retrains", [*runner, "--only", "01", "--retrain"], {}, {}),
        ("emi --text-model foo", [*emi, "--text-model", "foo"], {}, {}),
        ("emi --text-model nosuch/model (offline)", [*emi, "--text-model", "nosuch/model"], {"HF_HUB_OFFLINE": "1"}, {}),
        ("emi --seed -1", [*emi, "--seed", "-1"], {}, {}),
        ("emi empty responses", [*mod, "emi", "--input", str(empty), "--source", "src", "--out", str(tmp / "e.json")],
         {}, {}),
        ("emi --image-model on a file without images", [*emi, "--image-model", "clip"], {}, {}),
        ("emi --n-boot 0", [*emi, "--n-boot", "0"], {}, {}),
        ("emi --source not in the file", [*mod, "emi", "--input", str(jsonl), "--source", "nope"], {}, {}),
        ("emi missing input", [*mod, "emi", "--input", str(tmp / "none.jsonl"), "--source", "src"], {}, {}),
        ("emi --out under a file", [*mod, "emi", "--input", str(jsonl), "--source", "src", "--out",
                                    str(tmp / "a_file" / "o.json")], {}, {}),
    ]
    counts: dict[str, int] = {}
    for name, cmd, extra, survive in [] if args.runs_only else trials:
        rc, out, err, wall = run(cmd, {**env, **extra}, limit=0)
        verdict = classify(rc, out, err, survive)
        counts[verdict] = counts.get(verdict, 0) + 1
        last = (err.strip().splitlines() or [""])[-1][:150]
        print(f"{verdict:10s} {wall:6.1f}s  {name}: {last}", flush=True)
    if args.with_runs or args.runs_only:
        shm = Path("/dev/shm")
        if shm.is_dir():
            figs = shm / f"sweep-figures-{os.getpid()}"
            # not --smoke: a smoke run keeps its figures in its run folder, on the staging filesystem
            rc, out, err, wall = run([*runner, "--only", "00_embedded_world"],
                                     {**env, "MLLM_OOD_FIGURES": str(figs)}, limit=600)
            published = figs.exists() and any(figs.glob("*.png"))
            verdict = "ok" if rc == 0 and published else "data lost" if rc == 0 else classify(rc, out, err, {})
            counts[verdict] = counts.get(verdict, 0) + 1
            print(f"{verdict:10s} {wall:6.1f}s  figures on another filesystem (/dev/shm): exit {rc}, "
                  f"published: {published}", flush=True)
            shutil.rmtree(figs, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(counts.values())
    print(f"\ntried {total}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
