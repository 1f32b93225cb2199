"""The embeddings shipped beside the LLaVA-Bench answers (data/llava_bench_shift/embeddings/): they cover every
text notebook 04 embeds, the installed encoders reproduce them, and notebook 04's loader takes from them only
what they hold for exactly its encoder, computing the rest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mllm_ood.paper_b import shipped_embeddings as se
from mllm_ood.paper_b.embedders import TextEmbedder, text_embedder
from mllm_ood.validation import ParameterError


@pytest.fixture(scope="module")
def bench_texts():
    return se.bench_texts()


@pytest.mark.parametrize("spec", se.ENCODERS)
def test_a_shipped_file_of_the_installed_encoder_covers_every_text_of_notebook_04(spec, bench_texts):
    path = se.file_for(text_embedder(spec))
    assert path is not None, f"no shipped file for the installed {spec} (regenerate: {se.COMMAND} --encoder {spec})"
    identity, digests, vectors, provenance = se.read(path)
    assert set(digests.tolist()) == {se.text_digest(t) for t in bench_texts}
    assert vectors.dtype == np.float16 and vectors.shape == (len(bench_texts), 384)
    assert provenance["texts"] == len(bench_texts) and se.COMMAND in provenance["command"]


@pytest.mark.parametrize("spec, n", [("e5", 8), ("minilm", 32)])
def test_the_installed_encoder_reproduces_a_random_sample_of_the_shipped_vectors(spec, n):
    """Re-embedded now, without the cache: the float16 copies agree (cosine) to 3 decimals or better."""
    enc = text_embedder(spec)
    path = se.file_for(enc)
    assert path is not None, f"no shipped file for the installed {spec} (regenerate: {se.COMMAND} --encoder {spec})"
    cos = se.agreement(enc, path, n=n, seed=0)
    assert cos.shape == (n,) and cos.min() > 0.999, cos


class CountingEmbedder(TextEmbedder):
    """A text 'encoder' without a model: a hash-seeded random unit vector per text, every call recorded."""

    def __init__(self, tag: str = "a"):
        self.tag, self.name, self.calls = tag, f"counting-{tag}", []

    def cache_id(self) -> dict:
        return {"kind": "text", "model": f"counting-{self.tag}"}

    def _compute(self, texts, progress):
        self.calls.append(list(texts))
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=6) for t in texts]
        return np.array(rows, dtype=np.float32) / np.linalg.norm(rows, axis=1, keepdims=True)


def test_known_texts_come_from_the_file_and_only_the_others_are_computed(tmp_path):
    texts = ["one", "two", "three", "four", "five"]
    enc = CountingEmbedder()
    full = enc._compute(texts, False)
    se.write(tmp_path / "counting.npz", enc, texts[:3], full[:3], command="test")
    enc.calls.clear()
    z, note = se.embed_texts(enc, ["five", "one", "two", "four", "three", "one"], folder=tmp_path)
    assert enc.calls == [["five", "four"]]
    assert note.startswith("4 of 6 from") and note.endswith("2 computed")
    assert np.allclose(z, full[[4, 0, 1, 3, 2, 0]], atol=1e-3)
    assert np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-6)
    # the shipped rows are the float16 copies renormalised, not recomputed values
    half = full[:3].astype(np.float16).astype(np.float32)
    assert np.allclose(z[1], half[0] / np.linalg.norm(half[0]), rtol=0, atol=1e-7)
    assert not np.allclose(z[1], full[0], rtol=0, atol=1e-5)


def test_without_the_flag_or_for_another_encoder_everything_is_computed(tmp_path):
    texts = ["one", "two", "three"]
    enc = CountingEmbedder()
    se.write(tmp_path / "counting.npz", enc, texts, enc._compute(texts, False), command="test")
    enc.calls.clear()
    z, note = se.embed_texts(enc, texts, use_shipped=False, folder=tmp_path)
    assert enc.calls == [texts] and "all 3 computed" in note and "SHIPPED_EMBEDDINGS off" in note
    other = CountingEmbedder("b")  # another identity: the file is not its
    assert se.file_for(other, tmp_path) is None
    _, note = se.embed_texts(other, texts, folder=tmp_path)
    assert other.calls == [texts] and "no shipped file" in note


def test_a_malformed_file_is_refused_with_its_path_and_nothing_half_written(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ParameterError, match="broken.npz"):
        se.file_for(CountingEmbedder(), tmp_path)
    with pytest.raises(ParameterError, match="3 texts .* for 2 vectors"):
        se.write(tmp_path / "new.npz", CountingEmbedder(), ["a", "b", "c"], np.ones((2, 6)), command="test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz"]


def test_the_export_command_writes_what_the_installed_encoder_computes(tmp_path, monkeypatch):
    texts = ["a photo of a cat", "Ein Foto einer Katze", "a red bus"]
    monkeypatch.setattr(se, "bench_texts", lambda: texts)
    assert se.main(["--encoder", "minilm", "--folder", str(tmp_path), "--recompute"]) == 0
    enc = text_embedder("minilm")
    assert se.file_for(enc, tmp_path) == tmp_path / "minilm.npz"
    z, note = se.embed_texts(enc, texts[::-1], folder=tmp_path)
    assert note.startswith("3 of 3 from") and np.allclose(z, enc.embed(texts[::-1], cache=False), atol=2e-3)
    assert "--recompute" in se.read(tmp_path / "minilm.npz")[3]["command"]
