"""Checks before compute that look outside the process: the hub and API keys.

A hub id that is neither a local folder nor in the local Hugging Face cache needs the hub. When the hub
is switched off (``HF_HUB_OFFLINE``, set by the embedded profile) or cannot be reached (one quick TCP
connection to the hub's host, tried once per process), :func:`check_hub_model` refuses it with one
message, instead of the libraries' retries and warnings minutes later. A ``--standin`` run replaces every
hub model after the checks (``$MLLM_OOD_STANDIN``), so nothing is refused for needing the hub there.

:func:`check_api_key` refuses an endpoint at its provider's own address without its key in the
environment. Paper B's embedder names are checked with these in :mod:`mllm_ood.paper_b.embedder_checks`.
"""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from .endpoint import PROVIDERS
from .paths import ROOT
from .validation import ParameterError

STANDIN_ENV = "MLLM_OOD_STANDIN"  # set by the runner for --standin: hub models are replaced after the checks
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TIMEOUT_S = 3.0


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` switches the hub off."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=4)
def _probe(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as err:
        return f"{host}:{port}: {err.strerror or err}"


def hub_unreachable() -> str | None:
    """Why the hub cannot be used now ('HF_HUB_OFFLINE is set', or the failed connection), or None."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set (the embedded profile runs offline)"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return _probe(url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80))


def in_local_cache(repo_id: str, repo_type: str = "model") -> bool:
    """True when the local Hugging Face cache holds a snapshot of ``repo_id`` (its config, or for a dataset
    any file)."""
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    if repo_type == "model":
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    try:
        return any(r.repo_id == repo_id and r.repo_type == repo_type for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache folder yet
        return False


def needs_hub(ref, repo_type: str = "model") -> bool:
    """True for a hub id that is neither a local folder (relative to the repository root or absolute)
    nor in the local cache."""
    if os.environ.get(STANDIN_ENV) or not isinstance(ref, str) or not HUB_ID.match(ref):
        return False
    if (ROOT / ref).exists() or Path(ref).exists():
        return False
    return not in_local_cache(ref, repo_type)


def check_hub_model(ref, what: str = "model", repo_type: str = "model") -> None:
    """ParameterError when ``ref`` needs the hub (:func:`needs_hub`) and the hub cannot be used now."""
    if not needs_hub(ref, repo_type):
        return
    why = hub_unreachable()
    if why is not None:
        raise ParameterError(f"{what} {ref!r} is a hub id that is not in the local Hugging Face cache, and the hub "
                             f"cannot be used: {why}. Connect to the network, or name a local folder")


def check_api_key(spec) -> None:
    """Refuse an endpoint at its provider's own address (an :class:`~mllm_ood.endpoint.EndpointSpec`)
    when the environment holds no API key for it; a server of your own (``@base_url``) may need none."""
    if spec.base_urls == (PROVIDERS[spec.provider][0],) and not os.environ.get(spec.key_env):
        raise ParameterError(f"{spec.name} is served at {spec.base_urls[0]}, which needs an API key: set "
                             f"${spec.key_env} (it is read from the environment only)")
