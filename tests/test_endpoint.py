"""Models behind an OpenAI-compatible endpoint (mllm_ood.mllm.families.endpoint) and paper B's LLM judge (mllm_ood.paper_b.judges).

Part 1 (no server): references, refusals, retries, malformed replies and vLLM-format scoring against
scripted replies (httpx.MockTransport). Part 2: ``transformers serve`` on 127.0.0.1 serving the embedded
checkpoint on CPU, started and stopped by a fixture: replies and accuracies equal the in-process model's,
a killed run resumes from the cache, a rerun sends nothing, errors are clear, the API key is written
nowhere. Notebooks 01, 03 and 04 against that server: tests/test_endpoint_notebooks.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from mllm_ood.paper_b import judges as judge
from mllm_ood.paper_a import zero_shot
from mllm_ood.mllm import CapabilityMissing, load_model, usable_modes
from mllm_ood.mllm.families import endpoint
from mllm_ood.mllm.families.endpoint import EndpointError, EndpointModel, ScoringUnavailable, load_endpoint_model
from mllm_ood.mllm.refs import is_endpoint_ref, model_fingerprint, model_reference, parse_endpoint_ref
from mllm_ood.paths import ROOT
from mllm_ood.validation import ParameterError

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from endpoint_server import serve  # noqa: E402

EMBEDDED = str((ROOT / "data" / "models" / "embedded_mllm").resolve())
SECRET = "sk-test-0123456789-never-written-anywhere"


def _img(v: int = 0) -> Image.Image:
    return Image.fromarray(np.full((28, 28), v, dtype=np.uint8))


def _reply(content: str = "Answer Choice: [seven]", **extra) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": content}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3}, **extra}


def _scripted(*answers, seen=None):
    """A model whose server answers the scripted responses in turn (the last one repeats)."""
    answers = list(answers)

    def handler(request: httpx.Request):
        if seen is not None:
            seen.append(request)
        a = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(a, Exception):
            raise a
        return a

    return EndpointModel(parse_endpoint_ref("openai:m@http://127.0.0.1:9/v1"), transport=httpx.MockTransport(handler),
                         backoff=0.001, retries=3, concurrency=2)


# ------------------------------------------------------------------------------------------- references
def test_endpoint_references_parse_and_validate():
    s = parse_endpoint_ref("openai:llava-hf/llava-1.5-7b-hf@http://a:8000/v1,http://b:8000/v1/")
    assert (s.provider, s.model, s.base_urls, s.key_env) == ("openai", "llava-hf/llava-1.5-7b-hf",
                                                             ("http://a:8000/v1", "http://b:8000/v1"), "OPENAI_API_KEY")
    assert parse_endpoint_ref("openai:gpt-4o").base_urls == ("https://api.openai.com/v1",)
    assert parse_endpoint_ref("gemini:gemini-1.5-pro").key_env == "GEMINI_API_KEY"
    assert s.name == "openai:llava-hf/llava-1.5-7b-hf"
    for bad in ["openia:gpt-4o", "openai:m@ftp://x", "openai:m@http://a/v1,http://a/v1"]:
        with pytest.raises(ParameterError):
            parse_endpoint_ref(bad)
    rule = model_reference()
    rule("openai:gpt-4o@http://127.0.0.1:8000/v1")
    with pytest.raises(ParameterError, match="unknown endpoint provider"):
        rule("opnai:gpt-4o")
    assert not is_endpoint_ref("llava-hf/llava-1.5-7b-hf") and not is_endpoint_ref("data/models/x")
    assert model_fingerprint("openai:m@http://127.0.0.1:1/v1") == "endpoint:openai:m"  # no address


def test_load_model_gives_an_endpoint_model_that_refuses_what_needs_weights():
    m = load_model("openai:m@http://127.0.0.1:9/v1")
    assert isinstance(m, EndpointModel)
    with pytest.raises(CapabilityMissing, match="needs? the model's weights"):
        m.vision_features([_img()])
    with pytest.raises(CapabilityMissing, match="hidden states"):
        m.answer_state([([_img()], "x")])
    assert m.prompt_text(([_img(), _img()], "a <image> b <image> c")) == "a <image 28x28> b <image 28x28> c"
    msg = m.messages([_img(), _img(255)], "<image>one<image>two")[0]["content"]
    assert [p["type"] for p in msg] == ["image_url", "text", "image_url", "text"]
    assert msg[0]["image_url"]["url"].startswith("data:image/png;base64,")


# ------------------------------------------------------------------------------------------- operating
def test_retries_on_server_error_rate_limit_and_timeout_then_succeeds(fresh_cache):
    m = _scripted(httpx.Response(500, text="boom"), httpx.Response(429, headers={"retry-after": "0"}),
                  httpx.ReadTimeout("slow"), httpx.Response(200, json=_reply()))
    assert m.generate([([_img()], "q")]) == ["Answer Choice: [seven]"]
    assert m.stats["retries"] == 3 and m.stats["errors"] == 3 and m.stats["requests"] == 4


def test_bounded_concurrency_and_round_robin_over_replicas(fresh_cache):
    """At most `concurrency` requests in flight; several base URLs share the load (data parallel)."""
    import threading

    state = {"now": 0, "peak": 0, "hosts": []}
    lock = threading.Lock()

    def handler(request):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["hosts"].append(request.url.port)
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return httpx.Response(200, json=_reply("ok"))

    spec = parse_endpoint_ref("openai:m@http://127.0.0.1:9001/v1,http://127.0.0.1:9002/v1")
    m = EndpointModel(spec, transport=httpx.MockTransport(handler), concurrency=3)
    assert m.generate([([_img(v)], "q") for v in range(24)]) == ["ok"] * 24
    assert 1 < state["peak"] <= 3
    assert sorted(set(state["hosts"])) == [9001, 9002] and state["hosts"].count(9001) == 12


def test_persistent_failures_are_clear_errors_never_answers(fresh_cache):
    for answer, words in [(httpx.Response(503, text="down"), "HTTP 503"), (httpx.ReadTimeout("slow"), "timed out"),
                          (httpx.Response(200, text="<html>not json</html>"), "malformed reply"),
                          (httpx.Response(200, json={"choices": []}), "malformed reply")]:
        m = _scripted(answer)
        with pytest.raises(EndpointError, match=words):
            m.generate([([_img()], "q")])
        assert m.stats["requests"] == 4  # 1 + 3 retries


def test_client_errors_fail_at_once_without_the_key(monkeypatch, fresh_cache):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    seen = []
    m = _scripted(httpx.Response(401, text=f"bad key {SECRET}"), seen=seen)
    with pytest.raises(EndpointError, match="HTTP 401") as err:
        m.generate([([_img()], "q")])
    assert SECRET not in str(err.value) and m.stats["requests"] == 1
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"  # sent in the header only


def test_refusal_is_empty_reply_and_cache_never_holds_the_key(monkeypatch, fresh_cache):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    m = _scripted(httpx.Response(200, json={"choices": [{"message": {"content": None, "refusal": "no"}}]}))
    assert m.generate([([_img(3)], "q")]) == [""]
    files = [p for p in fresh_cache.rglob("*") if p.is_file()]
    assert files and not any(SECRET.encode() in p.read_bytes() for p in files)


def test_score_choices_from_vllm_prompt_logprobs(fresh_cache):
    """vLLM's format: one dict per prompt position; the choice's tokens are the positions past the prompt's."""
    def handler(request):
        body = json.loads(request.content)
        if "prompt_logprobs" not in body:
            return httpx.Response(200, json=_reply("x"))  # usage.prompt_tokens = 5
        n = 1 + len(body["messages"][-1]["content"])  # the choice: one token per character here
        lps = [None] + [{"7": {"logprob": -0.5, "rank": 1}}] * 4 + [{"9": {"logprob": -1.0}}] * n
        return httpx.Response(200, json=_reply("x", prompt_logprobs=lps))

    m = EndpointModel(parse_endpoint_ref("openai:m@http://127.0.0.1:9/v1"), transport=httpx.MockTransport(handler))
    out = m.score_choices([([_img()], "q"), ([_img(9)], "r")], ["ab", "abcd"])
    np.testing.assert_allclose(out, [[-3.0, -5.0], [-3.0, -5.0]])  # -(1 + len) * 1.0 - the 5th position's 0.5
    assert m.can_score() and usable_modes(m, ["generate", "loglik"]) == ["generate", "loglik"]


def test_score_choices_equal_in_process_scoring_on_a_vllm_like_endpoint():
    """Over an emulated vLLM (the in-process model answering prompt_logprobs), the client's choice scores equal
    MLLM.score_choices on the same conversations: the prompt/choice token alignment is right."""
    from vllm_emulator import transport

    convs, labels, names = _digit_conversations()
    convs = convs[::20]
    choices = [f"Answer Choice: [{n}]" for n in names]
    local = load_model(EMBEDDED)
    remote = EndpointModel(parse_endpoint_ref(f"openai:emulated-vllm-{os.getpid()}@http://127.0.0.1:9/v1"),
                           transport=transport(local), concurrency=1)  # a name of its own: nothing cached
    np.testing.assert_allclose(remote.score_choices(convs, choices), local.score_choices(convs, choices),
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------- judge
def test_llava_bench_judge_prompt_scores_and_format_errors(fresh_cache):
    seen = []
    m = _scripted(httpx.Response(200, json=_reply("8 6\nAssistant 2 is less detailed.")), seen=seen)
    j = judge.LlavaBenchJudge(m)
    assert j("What digit?", "six", "Answer Choice: [seven]") == pytest.approx(0.75)
    body = json.loads(seen[0].content)
    assert body["messages"][0]["content"] == judge.SYSTEM and body["temperature"] == 0
    user = body["messages"][1]["content"]
    assert user.index("[Assistant 1]\nAnswer Choice: [seven]") < user.index("[Assistant 2]\nsix") < user.index(judge.RULE)
    assert judge.parse_scores("9, 10\n...") == (9.0, 10.0) and judge.relative_score(8, 10) == 1.0
    with pytest.raises(judge.JudgeFormatError, match="two scores"):
        judge.parse_scores("Eight.")
    assert isinstance(judge.make_judge("reference", ["a", "b"]), type(judge.make_judge("reference", ["a"])))
    with pytest.raises(ParameterError):
        judge.check_judge("gpt-4")


# ------------------------------------------------------------------------------------------- real server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve(EMBEDDED, log) as url:
        yield url


def _digit_conversations(n_per_class: int = 1):
    """Paper A's zero-shot conversations (short prompt) of every domain of two digit datasets, first N per class."""
    from mllm_ood.data import catalog, world

    convs, labels, names = [], [], None
    for name in ["digit_styles", "rotated_mnist"]:
        ds, info = catalog.open_dataset(name, seed=0)
        names = list(info.class_names)
        for domain in info.domains:
            sub = ds.select([i for i, d in enumerate(ds["domain"]) if d == domain])
            sub = world.sample_per_class(sub, n_per_class, mode="first", seed=0)
            prompt = zero_shot.build_prompt(info, domain)
            convs += [([im], prompt) for im in sub["image"]]
            labels += [int(y) for y in sub["label"]]
    return convs, labels, names


@pytest.mark.slow
def test_endpoint_equals_in_process_model(server):
    """The same conversations through transformers serve and in process: identical replies and accuracy."""
    from mllm_ood.formats.prompts import parse_answer

    convs, labels, names = _digit_conversations()
    local = load_model(EMBEDDED)
    remote = load_model(f"openai:{EMBEDDED}@{server}")
    a = local.generate(convs, max_new_tokens=16, batch_size=16)
    b = remote.generate(convs, max_new_tokens=16)
    assert len(convs) >= 100 and a == b
    acc = [np.mean([parse_answer(r, names) == y for r, y in zip(x, labels)]) for x in (a, b)]
    assert acc[0] == acc[1] > 0.5
    with pytest.raises(ScoringUnavailable, match="log-probabilities"):
        remote.score_choices(convs[:2], ["Answer Choice: [zero]", "Answer Choice: [one]"])
    assert usable_modes(remote, ["generate", "loglik"]) == ["generate"]


RESUME_SCRIPT = """
import sys
from mllm_ood.mllm import load_model
sys.path.insert(0, {support!r})
from test_endpoint import _digit_conversations
convs, _, _ = _digit_conversations()
m = load_model({ref!r})
m.concurrency = 1
m.generate(convs, max_new_tokens=16)
print("finished")
"""


@pytest.mark.slow
def test_killed_run_resumes_from_cache_and_rerun_sends_nothing(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLLM_OOD_CACHE", str(cache))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # transformers serve ignores it; it must be written nowhere
    ref = f"openai:{EMBEDDED}@{server}"
    script = RESUME_SCRIPT.format(support=str(Path(__file__).parent), ref=ref)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "lib"), str(Path(__file__).parent)]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    entries = lambda: [p for p in (cache / endpoint.CACHE_KIND).glob("*") if (p / "done").exists()]  # noqa: E731
    deadline = time.monotonic() + 120
    while len(entries()) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(entries())
    convs, _, _ = _digit_conversations()
    assert 10 <= done_before < len(convs), f"the run was not killed mid-way ({done_before} of {len(convs)})"
    m = load_model(ref)
    replies = m.generate(convs, max_new_tokens=16)
    assert m.stats["cached"] >= done_before and m.stats["requests"] == len(convs) - m.stats["cached"]
    again = load_model(ref)
    assert again.generate(convs, max_new_tokens=16) == replies and again.stats["requests"] == 0
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in p.read_bytes() for p in files)


@pytest.mark.slow
def test_real_server_errors_are_clear(server, fresh_cache):
    import socket

    with socket.socket() as silent:  # a real TCP server that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        m = EndpointModel(parse_endpoint_ref(f"openai:m@http://127.0.0.1:{port}/v1"), timeout=0.2, retries=1,
                          backoff=0.001)
        with pytest.raises(EndpointError, match="timed out"):
            m.generate([([_img(1)], "What digit is this?")])
    wrong = load_endpoint_model(f"openai:not-the-served-model@{server}", retries=0)
    with pytest.raises(EndpointError, match="HTTP 400"):
        wrong.generate([([_img(2)], "What digit is this?")])
    gone = EndpointModel(parse_endpoint_ref("openai:m@http://127.0.0.1:9/v1"), retries=1, backoff=0.001)
    with pytest.raises(EndpointError, match="connection failed"):
        gone.generate([([_img(3)], "x")])


# Smoke size (the YAML's smoke: values, as run_all.sh --smoke), trimmed further (the server answers one request
# at a time): one dataset, task, grid.
SERVER_NOTEBOOKS = {"01_zero_shot_ood": {"DATASETS": ["digit_styles"], "ID_REFERENCE": {"digit_styles": "digit_styles/mnist"}},
                    "03_in_context_learning": {"TASKS": ["rotated_60"], "LABEL_SHIFT_TASKS": ["rotated_60"],
                                               "MODES": ["reassigned"]},
                    "04_emi_bound": {"GRIDS": ["synthetic"], "ESTIMATOR_CHECKS": False, "IMAGE_EMBEDDER": EMBEDDED}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SERVER_NOTEBOOKS))
def test_notebooks_01_03_04_run_against_the_server_and_never_write_the_key(name, server, tmp_path, session_cache):
    """Smoke size, the endpoint model named in MODEL, the key set: every output is searched for it (one test per
    notebook, so parallel test workers take them side by side)."""
    from conftest import network_guard_env, smoke_parameters
    from mllm_ood.paths import NOTEBOOKS
    from mllm_ood.runner.planning import KERNEL

    record = tmp_path / "network.log"
    env = network_guard_env(record)
    env.update(MLLM_OOD_CACHE=str(session_cache), MLLM_OOD_FIGURES=str(tmp_path / "figures"), OPENAI_API_KEY=SECRET,
               MLLM_OOD_PROGRESS_LOG=str(tmp_path / "progress.log"))
    ref = f"openai:{EMBEDDED}@{server}"
    out = tmp_path / f"{name}.ipynb"
    params = smoke_parameters(name, MODEL=ref, **SERVER_NOTEBOOKS[name])
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(out), "-k", KERNEL,
         "-y", params, "--cwd", str(NOTEBOOKS), "--no-progress-bar"],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name}:\n{proc.stderr[-4000:]}"
    text = out.read_text()
    assert "endpoint:openai:" in text, f"{name} does not name the endpoint model"
    if name != "04_emi_bound":
        assert "generate + parse" in text  # transformers serve gives no log-probabilities
    assert not record.exists() or not record.read_text(), record.read_text()
    outputs = [p for p in [*tmp_path.rglob("*"), *session_cache.rglob("*")] if p.is_file()]
    assert list((tmp_path / "figures").glob("*.png"))
    assert not [p for p in outputs if SECRET.encode() in _bytes(p)], "the API key was written"


def _bytes(path: Path) -> bytes:
    """A file's bytes, or none when it is gone: another xdist worker's cache build sharing the session cache
    may rename its temporary folder between the listing and the reading."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
