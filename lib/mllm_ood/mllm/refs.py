"""Model references and what is known of a model without its weights: hub ids, local checkpoint folders and
endpoint references (``openai:<model>@<base_url>``); the one model identity (:func:`model_fingerprint`);
device and dtype; the context budget of a model from the stand-in shapes table.

**Naming an endpoint model** (anywhere a model reference goes: ``load_model``, a notebook's ``MODEL``)::

    openai:<model>@<base_url>[,<base_url>...]     e.g. openai:llava-hf/llava-1.5-7b-hf@http://gpu1:8000/v1
    openai:<model>                                 OpenAI's API (https://api.openai.com/v1), e.g. openai:gpt-4o
    gemini:<model>                                 Google's OpenAI-compatible API, e.g. gemini:gemini-1.5-pro

Several base URLs (comma-separated) are replicas serving the same model. The API key is read from an
environment variable only (``$OPENAI_API_KEY`` for ``openai:``, ``$GEMINI_API_KEY`` for ``gemini:``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..cache import sha256_file
from ..paths import RESOURCES, ROOT, resolve_model
from ..validation import ParameterError

# Hub id: "owner/name" (no leading '/' or '.', no further slashes).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

# provider -> (default base URL, environment variable holding the API key)
PROVIDERS = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
}
_REF = re.compile(r"^(?P<provider>[a-z][a-z0-9_]*):(?P<model>[^\s@]+)(?:@(?P<urls>https?://\S+))?$")


# --------------------------------------------------------------------------------------------
# endpoint references


@dataclass(frozen=True)
class EndpointSpec:
    provider: str
    model: str
    base_urls: tuple[str, ...]
    key_env: str

    @property
    def name(self) -> str:
        """The reference without addresses, e.g. 'openai:gpt-4o' (what results tables and cache keys use)."""
        return f"{self.provider}:{self.model}"


def is_endpoint_ref(ref) -> bool:
    """True for a string naming an endpoint model (``provider:model[@url,...]`` with a known provider)."""
    if not isinstance(ref, str):
        return False
    m = _REF.match(ref.strip())
    return bool(m) and m["provider"] in PROVIDERS


def parse_endpoint_ref(ref: str) -> EndpointSpec:
    """The :class:`EndpointSpec` of a reference (see the module docstring); ParameterError saying why not."""
    if not isinstance(ref, str):
        raise ParameterError(f"an endpoint reference is a string, got {type(ref).__name__}")
    m = _REF.match(ref.strip())
    if not m:
        raise ParameterError(f"{ref!r} is not an endpoint reference; spell it provider:model[@base_url[,base_url...]], "
                             f"e.g. openai:gpt-4o or openai:my-model@http://127.0.0.1:8000/v1")
    if m["provider"] not in PROVIDERS:
        raise ParameterError(f"unknown endpoint provider {m['provider']!r}; known: {', '.join(PROVIDERS)} "
                             f"(any OpenAI-compatible server: openai:<model>@<base_url>)")
    default_url, key_env = PROVIDERS[m["provider"]]
    urls = tuple(u.strip().rstrip("/") for u in (m["urls"] or default_url).split(","))
    for u in urls:
        if not re.match(r"^https?://[^/\s,]+", u):
            raise ParameterError(f"endpoint base URL {u!r} in {ref!r} is not an http(s) URL")
    if len(set(urls)) != len(urls):
        raise ParameterError(f"endpoint reference {ref!r} lists a base URL twice")
    return EndpointSpec(m["provider"], m["model"], urls, key_env)


def model_reference():
    """Notebook parameter rule (:func:`mllm_ood.validation.check_parameters`): a hub id ``owner/name``, a
    checkpoint folder that exists (relative to the repo root or absolute), or an endpoint model
    ``provider:model[@base_url]``. A mistyped local path is refused here instead of being sent to the hub."""
    def rule(v):
        if not isinstance(v, str) or not v.strip():
            raise ParameterError("must be a hub id (owner/name) or a checkpoint folder")
        if is_endpoint_ref(v) or re.match(r"^[a-z][a-z0-9_]*:(?!//)", v):  # provider:model[@base_url]
            parse_endpoint_ref(v)
            return
        p = Path(v)
        looks_local = p.is_absolute() or v.startswith(".") or v.count("/") != 1 or (ROOT / v).exists()
        if looks_local and not (ROOT / p).is_dir():
            raise ParameterError(f"no such checkpoint folder {str(ROOT / p)!r} (and not a hub id owner/name)")
    return rule


# --------------------------------------------------------------------------------------------
# identity


def model_fingerprint(path_or_hub_id: str | Path) -> str:
    """The one identity of an MLLM, carried by every loaded model as ``model.fingerprint``: the folder's
    name and a short hash of its config and weight files (``embedded_mllm@9f7e83112922``), or the hub id
    itself. Every cached study result (zero-shot, ICL, features, EMI responses, the vision-tower embedder)
    is keyed by it, and every notebook prints it. A model behind an endpoint: its name without the servers'
    addresses, ``endpoint:openai:<model>`` (replicas and restarts on new ports are one model)."""
    if is_endpoint_ref(str(path_or_hub_id)):
        return f"endpoint:{parse_endpoint_ref(str(path_or_hub_id)).name}"
    path = Path(path_or_hub_id)
    if not path.is_dir():
        return str(path_or_hub_id)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return f"{path.name}@{h.hexdigest()[:12]}"


@lru_cache(maxsize=32)
def _folder_digest(folder: str, stamp: tuple) -> str:
    del stamp  # only part of the lru key: a rewritten file changes it
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()[:16]


def files_digest(model: str | Path) -> str:
    """What keys the outputs of an auxiliary encoder (a text or image embedder, paper A's CLIP probe): a
    content hash of every file below a local folder (16 hex digits, recomputed when a file changes), or
    ``hub:<id>`` for a remote name. Not a model's identity (that is :func:`model_fingerprint`, which names the
    folder and reads only its config and weights): an encoder's folder may hold more than those, and its
    cached embeddings have always been keyed this way."""
    p = Path(model)
    if p.is_dir():
        stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(p.rglob("*")) if f.is_file())
        return _folder_digest(str(p.resolve()), stamp)
    return f"hub:{model}"


def fingerprint_of(model) -> str:
    """``model.fingerprint``; a study refuses a model without one (load it with ``load_model``)."""
    fp = getattr(model, "fingerprint", None)
    if not isinstance(fp, str) or not fp:
        raise ParameterError(f"{type(model).__name__} has no fingerprint: studies take a model from "
                             f"mllm_ood.mllm.load_model, whose fingerprint keys their cached results")
    return fp


# --------------------------------------------------------------------------------------------
# device and dtype


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else 'cuda' when available, else 'cpu'."""
    import torch

    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype=None):
    """``dtype`` if given (a torch dtype or its name), else bfloat16 on CUDA and float32 on CPU."""
    import torch

    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            raise ParameterError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'")
        return getattr(torch, dtype)
    return dtype


# --------------------------------------------------------------------------------------------
# shapes known without weights: the stand-in table and the context budget


def standin_table() -> dict:
    """The shapes of the paper profile's hub models, written in the repository (``resources/standins.json``):
    what their stand-ins (:mod:`mllm_ood.mllm.standins`) are built with and what :func:`context_budget` reads."""
    return json.loads((RESOURCES / "standins.json").read_text())


def standin_arch_for(hub_id: str) -> str:
    """The stand-in architecture of a hub model id; ParameterError saying why when there is none."""
    table = standin_table()
    for arch, spec in table["standins"].items():
        if hub_id in spec["hub_ids"]:
            return arch
    if hub_id in table["no_standin"]:
        raise ParameterError(f"no stand-in for {hub_id!r}: {table['no_standin'][hub_id]}")
    known = [h for s in table["standins"].values() for h in s["hub_ids"]]
    raise ParameterError(f"no stand-in for {hub_id!r}; models with one: {', '.join(known)}")


def local_model_type(ref: str) -> str | None:
    """The ``model_type`` of a model without loading it: from a local folder's ``config.json``, or the
    stand-in table's family for a hub id listed there; None when unknown. ParameterError for a folder
    without a transformers config."""
    local = Path(resolve_model(str(ref))).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ParameterError(f"model folder {str(ref)!r} has no config.json (not a save_pretrained folder)")
        try:
            return json.loads((local / "config.json").read_text())["model_type"]
        except (ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"model folder {str(ref)!r}: config.json is not a transformers config with a "
                                 f"model_type ({type(err).__name__}: {err})") from err
    for spec in standin_table()["standins"].values():
        if ref in spec["hub_ids"]:
            return spec["family"]
    return None


def context_budget(model_ref: str) -> tuple[int, int] | None:
    """(most tokens one image can take, context positions) of a model, without loading its weights:
    from the stand-in table for hub ids, from ``config.json`` for local folders with fixed image-token
    counts (LLaVA-1.5 layout); None when unknown (the runtime check when a prompt is encoded still holds)."""
    for spec in standin_table()["standins"].values():
        if model_ref in spec["hub_ids"]:
            return spec["max_image_tokens"], spec["max_position_embeddings"]
    cfg_file = Path(model_ref) / "config.json"
    if not cfg_file.is_file():
        return None
    cfg = json.loads(cfg_file.read_text())
    text = cfg.get("text_config", {})
    positions = text.get("max_position_embeddings")
    if cfg.get("model_type") == "llava" and cfg.get("image_seq_length") and positions:
        return int(cfg["image_seq_length"]), int(positions)
    for spec in standin_table()["standins"].values():  # a stand-in folder: same shapes as its hub models
        if positions == spec["max_position_embeddings"] and cfg.get("model_type", "").startswith(spec["family"]):
            return spec["max_image_tokens"], spec["max_position_embeddings"]
    return None


def text_reserve(positions: int) -> int:
    """Context positions kept free for an episode's text (instructions, label words, reply): 400, or half
    the context for a model as small as the embedded one (256 positions)."""
    return min(400, positions // 2)


def max_shots(model_ref: str, text_tokens: int | None = None) -> int | None:
    """The most demonstrations (each one image) a few-shot episode with one query image can hold in the
    model's context, leaving ``text_tokens`` (default :func:`text_reserve`) for the instructions, label
    words and reply; None if unknown."""
    budget = context_budget(model_ref)
    if budget is None:
        return None
    per_image, positions = budget
    return (positions - (text_reserve(positions) if text_tokens is None else text_tokens)) // per_image - 1
