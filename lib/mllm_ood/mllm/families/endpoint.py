"""MLLMs behind an OpenAI-compatible endpoint (hosted APIs, vLLM / SGLang servers, ``transformers serve``),
with the interface of local models (:class:`mllm_ood.mllm.base.MLLM`).

**Naming an endpoint model**: ``openai:<model>@<base_url>[,<base_url>...]``, ``openai:<model>``,
``gemini:<model>`` (:mod:`mllm_ood.mllm.refs`). Several base URLs (comma-separated) are replicas serving the same model: requests are spread over them
round-robin (data parallel). The API key is read from an environment variable only — ``$OPENAI_API_KEY``
for ``openai:``, ``$GEMINI_API_KEY`` for ``gemini:`` — and sent in the ``Authorization`` header; it is
never part of a cache key, a cache entry, a message or a log line. Without the variable no header is
sent (local servers need none).

**What it does** — :meth:`EndpointModel.generate` sends one chat-completions request per conversation
(the images as base64 PNG data URLs, in the conversation's order, any number; temperature 0;
``max_tokens``). :meth:`EndpointModel.score_choices` needs the prompt's token log-probabilities, which
vLLM returns (``prompt_logprobs`` with ``continue_final_message``; untested online); a server that does
not (``transformers serve``, hosted APIs) gets one :class:`ScoringUnavailable` refusal, and then
``model.can("score_choices")`` is False (:func:`mllm_ood.mllm.base.usable_modes` lets a notebook fall back to
generate + parse). ``vision_features`` and ``answer_state`` need the weights: an endpoint model does not
declare them (:class:`~mllm_ood.mllm.base.CapabilityMissing`).

**Operating it** — at most ``concurrency`` requests in flight (threads; ``$MLLM_OOD_ENDPOINT_CONCURRENCY``,
default 8); retries with exponential backoff and jitter (``Retry-After`` honoured) on 429, 5xx,
timeouts, dropped connections and malformed replies (``$MLLM_OOD_ENDPOINT_RETRIES``, default 4); other
4xx answers fail at once with the server's message. Every successful reply is cached on disk
(``<cache>/endpoint_reply/``, written atomically by :func:`mllm_ood.cache.cached`) under a key of the full
request body (model, messages with the images' bytes, every generation setting), not of the server's
address: a killed run resumes without re-sending an answered request, a rerun sends nothing, and
replicas of one model share entries. A progress bar (:mod:`mllm_ood.progress`) counts requests sent,
cache hits, retries and errors.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...cache import cached, entry_path, is_valid
from ...progress import tqdm
from ...validation import ParameterError
from ..base import MLLM
from ...formats.chat import as_messages
from ..refs import EndpointSpec, parse_endpoint_ref
from ..registry import register

CACHE_KIND = "endpoint_reply"
RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class EndpointError(RuntimeError):
    """A request that failed for good (after its retries, or at once on a client error)."""


class ScoringUnavailable(ParameterError):
    """The server returns no prompt log-probabilities, so choices cannot be scored: use generate + parse."""


def _env_int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(f"${name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ParameterError(f"${name} must be at least {low}, got {value}")
    return value


def image_data_url(image) -> str:
    """A PIL image as a base64 PNG data URL (lossless: the server decodes the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def request_digest(body: dict) -> str:
    """SHA-256 of a request body's canonical JSON (the cache key's ingredient: the full request)."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@register("endpoint")
class EndpointModel(MLLM):
    """An MLLM behind an OpenAI-compatible chat-completions endpoint. Build with :func:`load_endpoint_model`
    (or :func:`mllm_ood.mllm.load_model` with an endpoint reference). It generates and, where the server
    returns prompt log-probabilities, scores choices; ``can("score_choices")`` asks the server once."""

    family = "endpoint"
    capabilities = frozenset({"generate", "score_choices"})
    model_type = "endpoint"
    device = "remote"
    dtype = None

    def __init__(self, spec: EndpointSpec, *, concurrency: int | None = None, retries: int | None = None,
                 timeout: float | None = None, backoff: float = 0.5, max_backoff: float = 30.0, transport=None):
        import httpx

        self.spec = spec
        self.name = spec.name
        self.fingerprint = f"endpoint:{spec.name}"
        self.concurrency = concurrency if concurrency is not None else _env_int("MLLM_OOD_ENDPOINT_CONCURRENCY", 8, 1)
        self.retries = retries if retries is not None else _env_int("MLLM_OOD_ENDPOINT_RETRIES", 4, 0)
        self.timeout = float(timeout if timeout is not None else _env_int("MLLM_OOD_ENDPOINT_TIMEOUT", 120, 1))
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ParameterError("concurrency >= 1, retries >= 0 and timeout > 0 are required")
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._clients = [httpx.Client(base_url=u + "/", timeout=self.timeout, limits=limits, transport=transport)
                         for u in spec.base_urls]
        self._next = itertools.cycle(range(len(self._clients)))
        self._lock = threading.Lock()
        self._scoring: bool | None = None  # unknown until the first scoring request
        self.stats = {"requests": 0, "cached": 0, "retries": 0, "errors": 0}

    def __repr__(self) -> str:
        urls = ", ".join(self.spec.base_urls)
        return f"EndpointModel({self.name!r}, servers=[{urls}], concurrency={self.concurrency})"

    def can(self, capability: str) -> bool:
        """As :meth:`MLLM.can`; for ``score_choices``, whether this server returns log-probabilities
        (:meth:`can_score`)."""
        return super().can(capability) and (capability != "score_choices" or self.can_score())

    def missing(self, capability: str) -> str:
        what = "vision features" if capability == "vision_features" else "hidden states"
        return (f"{self.name} is behind an endpoint: {what} need the model's weights (probes run on a local "
                "model; load a checkpoint folder or hub id)")

    def close(self) -> None:
        for c in self._clients:
            c.close()

    # ---------------------------------------------------------------- requests
    def messages(self, images: list, prompt) -> list[dict]:
        """The chat messages of one conversation (a prompt: one user turn; or a Chat), in OpenAI's
        content-part format."""
        it = iter(images)
        return [{"role": m["role"], "content": [
            {"type": "image_url", "image_url": {"url": image_data_url(next(it))}} if seg["type"] == "image"
            else {"type": "text", "text": seg["text"]} for seg in m["content"]]}
            for m in as_messages(prompt, len(images))]

    def prompt_text_inner(self, images: list, prompt) -> str:
        """The turns as sent, images shown as ``<image WxH>`` (the server applies its own chat template); a
        turn other than the single user turn is prefixed by its role."""
        it, out = iter(images), []
        msgs = as_messages(prompt, len(images))
        for m in msgs:
            if len(msgs) > 1:
                out.append(f"{m['role']}: ")
            for seg in m["content"]:
                if seg["type"] == "image":
                    im = next(it)
                    out.append(f"<image {im.width}x{im.height}>")
                else:
                    out.append(seg["text"])
            if len(msgs) > 1:
                out.append("\n")
        return "".join(out)

    def _headers(self) -> dict:
        key = os.environ.get(self.spec.key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.spec.key_env)
        return text.replace(key, "***") if key else text

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def _post(self, body: dict, check) -> dict:
        """POST one chat-completions request with retries; ``check(reply)`` raises ValueError on a malformed
        reply. Returns the reply (a dict). Raises EndpointError (or ScoringUnavailable from ``check``)."""
        import httpx

        with self._lock:
            client = self._clients[next(self._next)]
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
            wait = None
            try:
                self._count("requests")
                r = client.post("chat/completions", json=body, headers=self._headers())
            except httpx.TimeoutException as err:
                last = f"timed out after {self.timeout:g} s ({type(err).__name__})"
            except httpx.TransportError as err:
                last = f"connection failed ({type(err).__name__}: {err})"
            else:
                if r.status_code == 200:
                    try:
                        reply = r.json()
                        check(reply)
                        return reply
                    except ScoringUnavailable:
                        raise
                    except (ValueError, KeyError, IndexError, TypeError) as err:
                        last = f"malformed reply ({err}): {r.text[:200]!r}"
                elif r.status_code in RETRY_STATUS or r.status_code >= 500:
                    last = f"HTTP {r.status_code}: {r.text[:300]}"
                    try:
                        wait = float(r.headers.get("retry-after", ""))
                    except ValueError:
                        wait = None
                else:
                    self._count("errors")
                    raise EndpointError(self._scrub(f"{client.base_url} answered HTTP {r.status_code} to a request "
                                                    f"for {self.spec.model!r}: {r.text[:500]}"))
            self._count("errors")
            if attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                time.sleep(min(self.max_backoff, wait) if wait is not None else delay)
        raise EndpointError(self._scrub(f"request to {client.base_url} for {self.spec.model!r} failed after "
                                        f"{self.retries + 1} attempt(s); last error: {last}"))

    def _cached_reply(self, body: dict, check) -> tuple[dict, bool]:
        """The reply to ``body``: from the cache if answered before, else sent and cached. (reply, was_cached)."""
        params = {"model": self.spec.name, "request_sha256": request_digest(body)}
        path = entry_path(CACHE_KIND, params)
        if is_valid(path):
            return json.loads((path / "reply.json").read_text()), True
        fresh = {}

        def build(tmp):
            fresh["reply"] = self._post(body, check)
            (tmp / "reply.json").write_text(json.dumps(fresh["reply"]))

        folder = cached(CACHE_KIND, params, build)
        if "reply" in fresh:
            return fresh["reply"], False
        return json.loads((folder / "reply.json").read_text()), True

    def _run(self, bodies: list[dict], check, desc: str, progress: bool) -> list[dict]:
        """Every body's reply, in order, at most ``concurrency`` in flight, with a progress bar."""
        out: list = [None] * len(bodies)
        start = dict(self.stats)
        bar = tqdm(total=len(bodies), desc=f"{self.name} {desc}", disable=not progress)

        def one(i):
            reply, hit = self._cached_reply(bodies[i], check)
            if hit:
                self._count("cached")
            out[i] = reply
            return i

        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = [pool.submit(one, i) for i in range(len(bodies))]
                try:
                    for f in futures:
                        f.result()
                        bar.update(1)
                        bar.set_postfix({k: self.stats[k] - start[k] for k in self.stats}, refresh=False)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            bar.close()
        return out

    # ---------------------------------------------------------------- generation
    def generate_inner(self, convs, max_new_tokens, batch_size, progress, temperature=0.0, seed=0) -> list[str]:
        """Replies, one string per conversation (``batch_size`` is ignored: requests are sent one per
        conversation, ``concurrency`` at a time); greedy at temperature 0, else sampled with the request's
        ``seed`` (servers that honour it, e.g. vLLM, repeat the reply; the reply cache does in any case)."""
        sampling = {"temperature": 0} if temperature == 0 else {"temperature": temperature, "seed": seed}
        bodies = [{"model": self.spec.model, "messages": self.messages(ims, p), **sampling,
                   "max_tokens": max_new_tokens} for ims, p in convs]
        replies = self._run(bodies, _check_chat, "generate", progress)
        return [_content(r).strip() for r in replies]

    def chat(self, messages_list: Sequence[list[dict]], max_tokens: int = 1024, temperature: float = 0.0,
             progress: bool = False) -> list[str]:
        """Replies to ready-made chat message lists (e.g. a judge's system + user turns), cached the same way."""
        bodies = [{"model": self.spec.model, "messages": list(m), "temperature": temperature, "max_tokens": max_tokens}
                  for m in messages_list]
        return [_content(r).strip() for r in self._run(bodies, _check_chat, "chat", progress)]

    # ---------------------------------------------------------------- scoring
    def _refuse_scoring(self, why: str):
        self._scoring = False
        raise ScoringUnavailable(
            f"{self.name} cannot score choices: {why}. score_choices needs the prompt's token log-probabilities "
            "(vLLM returns them); use generate + parse instead (MODES: [generate] / SCORING: generate)")

    def score_inner(self, convs, per, batch_size, progress) -> np.ndarray:
        """Log-likelihood (nats) of each choice as the reply, from the server's prompt log-probabilities
        (vLLM's ``prompt_logprobs`` extension; untested online). Per conversation: one request for the prompt
        alone (its token count) and one per choice with the choice as a partial assistant turn
        (``continue_final_message``); the choice's tokens are the positions past the prompt's. A server that
        returns no prompt log-probabilities gets :class:`ScoringUnavailable`."""
        k = len(per[0])
        if self._scoring is False:
            self._refuse_scoring("an earlier scoring request was refused")
        msgs = [self.messages(ims, p) for ims, p in convs]
        base = [{"model": self.spec.model, "messages": m, "temperature": 0, "max_tokens": 1} for m in msgs]
        scored = [{"model": self.spec.model, "messages": m + [{"role": "assistant", "content": c}], "temperature": 0,
                   "max_tokens": 1, "prompt_logprobs": 0, "add_generation_prompt": False,
                   "continue_final_message": True} for m, cs in zip(msgs, per) for c in cs]

        def check_scored(reply):
            _check_chat(reply)
            if not isinstance(reply.get("prompt_logprobs"), list):
                self._refuse_scoring(f"its replies carry no prompt_logprobs (server at {', '.join(self.spec.base_urls)})")

        try:
            prompt_replies = self._run(base, _check_usage, "score (prompts)", progress)
            choice_replies = self._run(scored, check_scored, "score (choices)", progress)
        except EndpointError as err:
            if re.search(r"HTTP (400|404|422)\b", str(err)):
                self._refuse_scoring(f"the server rejected the log-probability request ({err})")
            raise
        self._scoring = True
        out = np.zeros((len(convs), k))
        for i, pr in enumerate(prompt_replies):
            n_prompt = int(pr["usage"]["prompt_tokens"])
            for j in range(k):
                out[i, j] = _choice_logprob(choice_replies[i * k + j]["prompt_logprobs"], n_prompt)
        return out

    def can_score(self) -> bool:
        """Whether :meth:`score_choices` works on this server (one tiny text-only request, cached)."""
        if self._scoring is None:
            try:
                self.score_choices([([], "Answer yes or no.")], ["yes", "no"])
            except ScoringUnavailable:
                return False
        return bool(self._scoring)


def _check_chat(reply) -> None:
    """ValueError unless ``reply`` is a chat completion with a text (or empty) message."""
    if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list) or not reply["choices"]:
        raise ValueError("no choices")
    msg = reply["choices"][0].get("message")
    if not isinstance(msg, dict) or not (msg.get("content") is None or isinstance(msg.get("content"), str)):
        raise ValueError("no message content")
    if msg.get("content") is None and not msg.get("refusal"):
        raise ValueError("empty message without a refusal")


def _check_usage(reply) -> None:
    _check_chat(reply)
    n = reply.get("usage", {}).get("prompt_tokens")
    if not isinstance(n, int) or n < 1:
        raise ValueError("no usage.prompt_tokens")


def _content(reply: dict) -> str:
    """The reply's text; a refusal (content null) becomes '' (it parses as no answer, never as one)."""
    return reply["choices"][0]["message"].get("content") or ""


def _choice_logprob(prompt_logprobs: list, n_prompt: int) -> float:
    """Sum of the log-probabilities at positions ``n_prompt..`` of vLLM's ``prompt_logprobs`` (one dict per
    prompt position, ``{token_id: {"logprob": ...}}``, the actual token's entry alone with ``prompt_logprobs=0``)."""
    tail = prompt_logprobs[n_prompt:]
    if not tail:
        raise EndpointError(f"the scored prompt has {len(prompt_logprobs)} positions, no more than the prompt's "
                            f"{n_prompt}: the choice was not appended as a partial assistant turn")
    total = 0.0
    for entry in tail:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise EndpointError(f"unexpected prompt_logprobs entry {entry!r} (expected the actual token's only)")
        (value,) = entry.values()
        lp = value["logprob"] if isinstance(value, dict) else value
        if not isinstance(lp, (int, float)) or not np.isfinite(lp):
            raise EndpointError(f"non-finite log-probability {lp!r} in prompt_logprobs")
        total += float(lp)
    return total


def load_endpoint_model(ref: str, **kwargs) -> EndpointModel:
    """An :class:`EndpointModel` for an endpoint reference (keyword arguments: concurrency, retries, timeout)."""
    return EndpointModel(parse_endpoint_ref(ref), **kwargs)
