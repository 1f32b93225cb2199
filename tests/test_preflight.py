"""Errors that came late or misleading (issue 26, finding 5), now refused at once: embedder names, a judge
without its API key, the paper profile offline, the ``emi`` command's options; and a damaged ``datasets``
cache (finding 4), now rebuilt. No network: the hub is switched off (conftest) or its probe replaced."""

from __future__ import annotations

import json
import time

import pytest

from mllm_ood.mllm import preflight
from mllm_ood import runner
from mllm_ood.__main__ import main
from mllm_ood.paper_b.judges import check_judge
from mllm_ood.paths import NOTEBOOKS, PARAMS
from mllm_ood.validation import ParameterError

NB04 = NOTEBOOKS / "04_emi_bound.ipynb"


@pytest.mark.parametrize(("param", "value", "why"), [
    ("TEXT_EMBEDDER", "foo", "unknown text embedder 'foo'"),
    ("TEXT_EMBEDDER", "nosuch/model", "not in the local Hugging Face cache"),
    ("TEXT_EMBEDDER", "xlm-roberta", "FacebookAI/xlm-roberta-base' is a hub id"),
    ("IMAGE_EMBEDDER", "foo", "unknown image embedder 'foo'"),
    ("IMAGE_EMBEDDER", "./no/such/folder", "no such model folder"),
    ("IMAGE_EMBEDDER", "clip", "openai/clip-vit-base-patch32' is a hub id"),
])
def test_embedders_checked_with_the_other_parameters(param, value, why):
    """Before: any string passed, and the run failed after part 1 with "couldn't connect to huggingface.co"."""
    params = runner.resolve_parameters(NB04, PARAMS / "embedded" / "04_emi_bound.yaml", overrides={param: value})
    with pytest.raises(ParameterError, match=rf"^parameter {param} = .*{why}"):
        runner.check_notebook_parameters(NB04, params)


def test_judge_at_the_provider_needs_its_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ParameterError, match=r"needs an API key: set \$OPENAI_API_KEY"):
        check_judge("openai:gpt-4-0314")
    check_judge("openai:my-judge@http://127.0.0.1:8000/v1")  # a server of one's own may need no key
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    check_judge("openai:gpt-4-0314")
    monkeypatch.delenv("OPENAI_API_KEY")
    params = runner.resolve_parameters(NB04, PARAMS / "embedded" / "04_emi_bound.yaml",
                                       overrides={"JUDGE": "openai:gpt-4-0314"})
    with pytest.raises(ParameterError, match=r"^parameter JUDGE = .*OPENAI_API_KEY"):
        runner.check_notebook_parameters(NB04, params)


def test_paper_profile_offline_refused_once_and_fast(monkeypatch, tmp_path, capsys):
    """Before: 66 hub retry warnings over 172 s, then the message. Now one check of the hub, one message."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MLLM_OOD_HUB_MIRROR", raising=False)
    probes = []

    def unreachable(host, port):
        probes.append(host)
        return f"{host}:{port}: Name or service not known"

    monkeypatch.setattr(preflight, "_probe", unreachable)
    t0 = time.time()
    assert main(["run", "--profile", "paper", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert time.time() - t0 < 30 and len(probes) == 1
    assert "cannot be used: huggingface.co:443: Name or service not known" in err and "--standin" in err
    assert "llava-hf/llava-1.5-7b-hf" in err and err.count("error:") == 1
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------------
# the emi command


def _records(path, n=30, image=None, response="a cat"):
    lines = []
    for i in range(n):
        rec = {"scenario": "src" if i < n // 2 else "tgt", "id": str(i), "question": f"q {i}", "response": response,
               "reference": "a cat"}
        if image:
            rec["image"] = image
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("extra", "why"), [
    (["--text-model", "foo"], "unknown text embedder 'foo'"),
    (["--text-model", "nosuch/model"], "not in the local Hugging Face cache"),
    (["--seed", "-1"], "--seed must be an integer in"),
    (["--image-model", "clip"], "the input has no images"),
])
def test_emi_command_refuses_bad_options_at_once(tmp_path, capsys, extra, why):
    src = _records(tmp_path / "in.jsonl")
    t0 = time.time()
    assert main(["emi", "--input", str(src), "--source", "src", "--out", str(tmp_path / "o.json"), *extra]) == 2
    assert why in capsys.readouterr().err and time.time() - t0 < 30
    assert not (tmp_path / "o.json").exists()


def test_emi_command_refuses_empty_responses(tmp_path, capsys):
    src = _records(tmp_path / "in.jsonl", response="  ")
    assert main(["emi", "--input", str(src), "--source", "src", "--out", str(tmp_path / "o.json")]) == 2
    assert "in.jsonl line 1: field 'response' is empty" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the datasets cache


def test_damaged_datasets_cache_is_rebuilt(fresh_cache):
    """Each load in its own process (as runs are): truncated, then overwritten in place (same size)."""
    import os
    import subprocess
    import sys

    script = ("from mllm_ood.paper_b.grids import llava_bench\nt = llava_bench.table('llava-v1.5-13b')\n"
              "print(len(t), int(t['response'].str.len().sum()), t['id'].iloc[-1])")
    env = {**os.environ, "MLLM_OOD_CACHE": str(fresh_cache)}

    def load():
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout, proc.stderr

    first, _ = load()
    (arrow,) = list((fresh_cache / "hf_datasets").rglob("*.arrow"))
    size = arrow.stat().st_size
    with open(arrow, "r+b") as fh:  # truncated: the Arrow reader fails on it
        fh.truncate(size // 3)
    out, err = load()
    assert out == first and "damaged" in err and arrow.stat().st_size == size
    data = bytearray(arrow.read_bytes())  # the same size, bytes changed: only the checksum tells
    data[size // 2: size // 2 + 64] = bytes(64)
    arrow.write_bytes(bytes(data))
    out, err = load()
    assert out == first and "does not match its recorded SHA-256" in err
