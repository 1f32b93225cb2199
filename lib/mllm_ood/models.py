"""One interface for every MLLM the study runs: the embedded model and hub models (LLaVA-1.5/1.6,
Idefics3/SmolVLM, Qwen2-VL), loaded with ``AutoProcessor`` / ``AutoModelForImageTextToText`` and
prompted through their own chat templates.

A *conversation* is ``(images, prompt)``: a list of PIL images and the user's text. The text marks
where each image goes with ``<image>`` (one per image, in order: few-shot episodes interleave
images and text this way); a text without any ``<image>`` gets all its images before the text, as
LLaVA's single-image prompts do. Every public method validates its inputs before any compute and
raises :class:`~mllm_ood.validation.ParameterError` with one clear message.

- :meth:`MLLM.generate` — greedy replies for a batch of conversations (any number of images each);
- :meth:`MLLM.score_choices` — log-likelihood (nats) of each answer choice given the conversation,
  batched; the prompt is run once and its key/value cache reused for all choices;
- :meth:`MLLM.vision_features` — frozen, mean-pooled vision-tower features;
- :meth:`MLLM.answer_state` — the language model's hidden state where the answer's first token is
  predicted (the last prompt position), for probes.

Device and dtype are chosen automatically: CUDA with bfloat16 where present, else CPU float32.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .paper_a.episodes import IMAGE_PLACEHOLDER
from .validation import ParameterError

# Hub id: "owner/name" (no leading '/' or '.', no further slashes).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
FAMILIES = ("llava", "idefics3", "qwen2_vl", "generic")


def model_fingerprint(path_or_hub_id: str | Path) -> str:
    """The one identity of an MLLM, carried by every loaded model as :attr:`MLLM.fingerprint`: the
    folder's name and a short hash of its config and weight files (``embedded_mllm@9f7e83112922``), or
    the hub id itself. Every cached study result (zero-shot, ICL, features, EMI responses, the vision-tower
    embedder) is keyed by it, and every notebook prints it. A model behind an endpoint: its name without
    the servers' addresses, ``endpoint:openai:<model>`` (replicas and restarts on new ports are one model)."""
    from .endpoint import is_endpoint_ref, parse_endpoint_ref

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


def fingerprint_of(model) -> str:
    """``model.fingerprint``; a study refuses a model without one (load it with :func:`load_model`)."""
    fp = getattr(model, "fingerprint", None)
    if not isinstance(fp, str) or not fp:
        raise ParameterError(f"{type(model).__name__} has no fingerprint: studies take a model from "
                             f"mllm_ood.models.load_model, whose fingerprint keys their cached results")
    return fp


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


def _family(model_type: str) -> str:
    if model_type in ("llava", "llava_next", "llava_onevision"):
        return "llava"
    if model_type in ("idefics3", "smolvlm"):
        return "idefics3"
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        return "qwen2_vl"
    return "generic"


def load_model(path_or_hub_id: str | Path, device: str | None = None, dtype=None,
               local_files_only: bool | None = None) -> "MLLM":
    """Load an MLLM from a local folder (``save_pretrained`` format; a relative path is looked up under
    the repository root first, as notebooks give it) or a hub id ('owner/name'), or connect to one behind
    an OpenAI-compatible endpoint ('openai:<model>@<base_url>', :mod:`mllm_ood.endpoint`). The model
    carries its one identity, :attr:`MLLM.fingerprint` (:func:`model_fingerprint`).

    device: 'cpu', 'cuda', 'cuda:1', ... (default: automatic); dtype: torch dtype or name (default:
    automatic). local_files_only: default True for folders; for hub ids, whatever transformers'
    offline settings say. Raises ParameterError for a folder that does not exist or has no transformers
    config, or a hub id that cannot be loaded. A local folder's weights load on first use (its name,
    fingerprint and model type come from its files), so a notebook whose results are all cached never
    loads them; a folder whose weights turn out unloadable raises ParameterError then.
    """
    from .endpoint import is_endpoint_ref, load_endpoint_model

    if is_endpoint_ref(path_or_hub_id):  # 'openai:<model>@<base_url>': a model behind an OpenAI-compatible API
        return load_endpoint_model(str(path_or_hub_id))
    from .paths import resolve_model

    name = resolve_model(str(path_or_hub_id))
    local = Path(name).expanduser()
    model_type = None
    if local.exists():
        if not (local / "config.json").is_file():
            raise ParameterError(f"model folder {name!r} has no config.json (not a save_pretrained folder)")
        try:
            model_type = json.loads((local / "config.json").read_text())["model_type"]
        except (ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"model folder {name!r}: config.json is not a transformers config with a "
                                 f"model_type ({type(err).__name__}: {err})") from err
        source, lfo = str(local), True if local_files_only is None else local_files_only
    elif _HUB_ID.match(name):
        source, lfo = name, local_files_only
    else:
        raise ParameterError(f"model path {name!r} does not exist (and is not a hub id like 'owner/name')")
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    kw = {} if lfo is None else {"local_files_only": lfo}

    def load():
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(source, **kw)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dt, **kw)
        except (OSError, ValueError) as err:
            raise ParameterError(f"cannot load MLLM {name!r}: {err}") from err
        return model.to(dev).eval(), processor

    if model_type is not None:  # a local folder: weights on first use (a fully cached notebook never needs them)
        return MLLM.on_first_use(load, name, dev, dt, model_type)
    return MLLM(*load(), name, dev, dt)


def _segments(prompt: str, n_images: int) -> list[dict]:
    """Chat-template content parts for a prompt with ``n_images`` images (see module docstring)."""
    n_marks = prompt.count(IMAGE_PLACEHOLDER)
    if n_marks == 0:
        parts = [{"type": "image"} for _ in range(n_images)]
        return parts + ([{"type": "text", "text": prompt}] if prompt else [])
    if n_marks != n_images:
        raise ParameterError(f"the prompt marks {n_marks} image(s) with {IMAGE_PLACEHOLDER!r} but "
                             f"{n_images} image(s) were given")
    parts = []
    for j, seg in enumerate(prompt.split(IMAGE_PLACEHOLDER)):
        if j > 0:
            parts.append({"type": "image"})
        if seg:
            parts.append({"type": "text", "text": seg})
    return parts


def check_conversations(conversations) -> list[tuple[list, str]]:
    """Validate conversations (see module docstring); return them as a list of (images, prompt)."""
    from PIL import Image

    if isinstance(conversations, tuple) and len(conversations) == 2 and isinstance(conversations[1], str):
        raise ParameterError("pass a list of conversations, e.g. [(images, prompt)], not a single one")
    conversations = list(conversations)
    if not conversations:
        raise ParameterError("no conversations given")
    out = []
    for i, conv in enumerate(conversations):
        if not (isinstance(conv, (tuple, list)) and len(conv) == 2 and isinstance(conv[1], str)):
            raise ParameterError(f"conversation {i} must be (list of PIL images, prompt text), got {type(conv)!r}")
        images, prompt = conv
        images = [images] if isinstance(images, Image.Image) else list(images)
        for im in images:
            if not isinstance(im, Image.Image):
                raise ParameterError(f"conversation {i}: images must be PIL images, got {type(im).__name__}")
        try:
            _segments(prompt, len(images))
        except ParameterError as err:
            raise ParameterError(f"conversation {i}: {err}") from None
        out.append((images, prompt))
    return out


def _check_choices(choices, n: int) -> list[list[str]]:
    """Shared list of choices, or one list per conversation -> one list per conversation."""
    if isinstance(choices, str):
        raise ParameterError("choices must be a list of strings (or one list per conversation), not a string")
    choices = list(choices)
    if not choices:
        raise ParameterError("the choice list is empty")
    if all(isinstance(c, str) for c in choices):
        per = [choices] * n
    elif all(isinstance(c, (list, tuple)) for c in choices):
        if len(choices) != n:
            raise ParameterError(f"{len(choices)} choice lists for {n} conversations")
        per = [list(c) for c in choices]
    else:
        raise ParameterError("choices must be a list of strings or a list of lists of strings")
    for i, c in enumerate(per):
        if not c:
            raise ParameterError(f"the choice list of conversation {i} is empty")
        if any(not isinstance(s, str) or not s for s in c):
            raise ParameterError(f"choice list {i} contains an empty or non-string choice")
    return per


class MLLM:
    """A loaded MLLM with one interface (see module docstring). Build with :func:`load_model`."""

    def __init__(self, model, processor, name: str, device: str, dtype):
        self.name, self.device, self.dtype = name, device, dtype
        self.fingerprint = model_fingerprint(name)  # the model's one identity (see model_fingerprint)
        self._load = None
        self._set(model, processor)

    @classmethod
    def on_first_use(cls, load, name: str, device: str, dtype, model_type: str) -> "MLLM":
        """An MLLM whose weights and processor ``load()`` returns when first needed: its name, fingerprint
        and model type need no weights, so reading cached results never imports transformers' models."""
        self = cls.__new__(cls)
        self.name, self.device, self.dtype = name, device, dtype
        self.fingerprint = model_fingerprint(name)
        self.model_type, self.family = model_type, _family(model_type)
        self._model = self._processor = self._tokenizer = None
        self._load = load
        return self

    def _set(self, model, processor) -> None:
        self._model, self._processor = model, processor
        self.model_type = model.config.model_type
        self.family = _family(self.model_type)
        self._tokenizer = getattr(processor, "tokenizer", processor)
        self._tokenizer.padding_side = "left"  # the last position is every prompt's last token
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def _loaded(self) -> None:
        if self._model is None:
            self._set(*self._load())

    @property
    def model(self):
        """The transformers model (loaded on first use)."""
        self._loaded()
        return self._model

    @property
    def processor(self):
        """The transformers processor (loaded on first use)."""
        self._loaded()
        return self._processor

    @property
    def tokenizer(self):
        """The processor's tokenizer, left padding (loaded on first use)."""
        self._loaded()
        return self._tokenizer

    def __repr__(self) -> str:
        return f"MLLM({self.name!r}, type={self.model_type}, device={self.device}, dtype={self.dtype})"

    # ---------------------------------------------------------------- inputs
    def messages(self, images: list, prompt: str) -> list[dict]:
        """The chat messages (one user turn) for one conversation."""
        return [{"role": "user", "content": _segments(prompt, len(images))}]

    def prompt_text(self, conversation) -> str:
        """The conversation rendered by the model's chat template, with the generation prompt."""
        images, prompt = check_conversations([conversation])[0]
        return self.processor.apply_chat_template(self.messages(images, prompt), add_generation_prompt=True,
                                                  tokenize=False)

    def _inputs(self, convs: list[tuple[list, str]]):
        import torch

        texts = [self.processor.apply_chat_template(self.messages(ims, p), add_generation_prompt=True, tokenize=False)
                 for ims, p in convs]
        n_img = [len(ims) for ims, _ in convs]
        kw = {"text": texts, "return_tensors": "pt", "padding": True}
        if sum(n_img):
            if self.family == "idefics3":
                kw["images"] = [list(ims) for ims, _ in convs]
            else:
                kw["images"] = [im for ims, _ in convs for im in ims]
        enc = self.processor(**kw)
        limit = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        longest = int(enc["attention_mask"].sum(-1).max())
        if limit is not None and longest >= limit:
            # Past its trained positions a model answers garbage silently; say so instead.
            raise ParameterError(f"a prompt of {longest} tokens does not fit the model's context of {limit} positions "
                                 f"({self.name}); shorten the prompt")
        enc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in enc.items()}
        for k in ("pixel_values",):
            if k in enc and enc[k].is_floating_point():
                enc[k] = enc[k].to(self.dtype)
        return enc

    def _positions(self, mask):
        """1-D RoPE positions for a left-padded batch (None where the model computes its own)."""
        if self.family == "qwen2_vl":
            return None
        pos = mask.long().cumsum(-1) - 1
        return pos.clamp(min=0)

    # ---------------------------------------------------------------- generation
    def generate(self, conversations, max_new_tokens: int = 32, batch_size: int = 8, progress: bool = False) -> list[str]:
        """Greedy replies (decoded, special tokens removed), one string per conversation."""
        import torch
        from .progress import tqdm

        convs = check_conversations(conversations)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ParameterError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        out: list[str] = []
        for i in tqdm(range(0, len(convs), batch_size), desc="generate", disable=not progress):
            enc = self._inputs(convs[i:i + batch_size])
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]
            out.extend(s.strip() for s in self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out

    # ---------------------------------------------------------------- scoring
    def _choice_ids(self, choice: str) -> list[int]:
        ids = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ParameterError(f"choice {choice!r} encodes to no tokens")
        return list(ids)

    def score_choices(self, conversations, choices, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Log-likelihood (nats, summed over the choice's tokens) of each choice as the reply.

        conversations: n conversations; choices: one list of k strings for all, or n lists of k.
        Returns float64 (n, k). The prompt is run once per conversation and its key/value cache is
        repeated for the k choices (Qwen2-VL, whose multimodal rotary positions do not carry over a
        repeated cache, scores prompt + choice as full sequences instead).
        """
        import torch
        from .progress import tqdm

        convs = check_conversations(conversations)
        per = _check_choices(choices, len(convs))
        k = len(per[0])
        if any(len(c) != k for c in per):
            raise ParameterError("every conversation needs the same number of choices")
        out = np.zeros((len(convs), k))
        for i in tqdm(range(0, len(convs), batch_size), desc="score", disable=not progress):
            chunk, cps = convs[i:i + batch_size], per[i:i + batch_size]
            with torch.no_grad():
                if self.family == "qwen2_vl":
                    out[i:i + len(chunk)] = self._score_full(chunk, cps)
                else:
                    out[i:i + len(chunk)] = self._score_cached(chunk, cps)
        return out

    def _choice_batch(self, cps):
        import torch

        toks = [self._choice_ids(c) for cs in cps for c in cs]
        L = max(len(t) for t in toks)
        ids = torch.full((len(toks), L), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(toks), L), dtype=torch.long)
        for j, t in enumerate(toks):
            ids[j, : len(t)] = torch.tensor(t)
            mask[j, : len(t)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _score_cached(self, chunk, cps) -> np.ndarray:
        import torch

        k = len(cps[0])
        enc = self._inputs(chunk)
        mask = enc["attention_mask"]
        pos = self._positions(mask)
        first = self.model(**enc, position_ids=pos, use_cache=True)
        cache = first.past_key_values
        cache.batch_repeat_interleave(k)
        last_logp = torch.log_softmax(first.logits[:, -1].float(), -1).repeat_interleave(k, 0)  # (n*k, V)
        c_ids, c_mask = self._choice_batch(cps)
        full_mask = torch.cat([mask.repeat_interleave(k, 0), c_mask], dim=1)
        start = mask.sum(-1).repeat_interleave(k, 0)[:, None]
        c_pos = start + torch.arange(c_ids.shape[1], device=self.device)[None]
        second = self.model(input_ids=c_ids, attention_mask=full_mask, position_ids=c_pos, past_key_values=cache,
                            use_cache=True)
        logp = torch.log_softmax(second.logits.float(), -1)
        tok_lp = torch.cat([last_logp.gather(1, c_ids[:, :1]),
                            logp[:, :-1].gather(2, c_ids[:, 1:, None]).squeeze(-1)], dim=1)
        return (tok_lp * c_mask).sum(-1).reshape(len(chunk), k).double().cpu().numpy()

    def _score_full(self, chunk, cps) -> np.ndarray:
        """Prompt + choice as whole sequences (no cache reuse), for models with non-1-D positions."""
        import torch

        k = len(cps[0])
        texts = [self.processor.apply_chat_template(self.messages(ims, p), add_generation_prompt=True,
                                                    tokenize=False) for ims, p in chunk]
        rep = [(ims, p) for ims, p in chunk for _ in range(k)]
        full = [t + c for t, cs in zip(texts, cps) for c in cs]
        kw = {"text": full, "return_tensors": "pt", "padding": True}
        if any(ims for ims, _ in rep):
            kw["images"] = [im for ims, _ in rep for im in ims]
        enc = {kk: v.to(self.device) for kk, v in self.processor(**kw).items()}
        logits = self.model(**enc).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(2, enc["input_ids"][:, 1:, None]).squeeze(-1)
        lens = torch.tensor([len(self._choice_ids(c)) for cs in cps for c in cs], device=self.device)
        T = enc["input_ids"].shape[1]
        sel = torch.arange(T - 1, device=self.device)[None] >= (T - 1 - lens)[:, None]
        return (logp * sel).sum(-1).reshape(len(chunk), k).double().cpu().numpy()

    # ---------------------------------------------------------------- features
    def vision_features(self, images, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Mean-pooled vision-tower features, float32 (n, d_vision).

        LLaVA family: the layer and tokens the projector reads (``vision_feature_layer``, CLS dropped
        under the 'default' strategy), i.e. what the language model sees, before the projector
        (LLaVA-NeXT: of the whole-image view only, not of its any-resolution tiles).
        Idefics3: the vision encoder's last hidden state. Qwen2-VL: the vision blocks' output before
        the patch merger.
        """
        import torch
        from PIL import Image
        from .progress import tqdm

        if isinstance(images, Image.Image):
            images = [images]
        images = list(images)
        if not images:
            raise ParameterError("no images given")
        for im in images:
            if not isinstance(im, Image.Image):
                raise ParameterError(f"images must be PIL images, got {type(im).__name__}")
        out = []
        for i in tqdm(range(0, len(images), batch_size), desc="vision", disable=not progress):
            with torch.no_grad():
                out.append(self._vision_batch(images[i:i + batch_size]).float().cpu().numpy())
        return np.concatenate(out)

    def _vision_batch(self, ims):
        import torch

        cfg, inner = self.model.config, self.model.model
        ip = self.processor.image_processor
        if self.family == "llava":
            pv = ip(ims, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
            if pv.ndim == 5:  # LLaVA-NeXT any-res: (n, views, 3, H, W); view 0 is the whole image resized
                pv = pv[:, 0]
            hs = inner.vision_tower(pixel_values=pv, output_hidden_states=True).hidden_states
            layers = [cfg.vision_feature_layer] if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer
            feats = [hs[layer][:, 1:] if cfg.vision_feature_select_strategy == "default" else hs[layer] for layer in layers]
            return torch.cat(feats, -1).mean(1)
        if self.family == "idefics3":
            enc = ip([[im] for im in ims], return_tensors="pt")
            pv = enc["pixel_values"].to(self.device, self.dtype)  # (n, sub-images, 3, H, W)
            n, s = pv.shape[:2]
            h = inner.vision_model(pixel_values=pv.flatten(0, 1)).last_hidden_state  # (n*s, patches, d)
            return h.reshape(n, s * h.shape[1], -1).mean(1)
        if self.family == "qwen2_vl":
            enc = ip(images=ims, return_tensors="pt")
            pv, grid = enc["pixel_values"].to(self.device, self.dtype), enc["image_grid_thw"].to(self.device)
            visual = inner.visual
            merger = visual.merger
            captured = {}
            handle = merger.register_forward_hook(lambda m, a, o: captured.setdefault("x", a[0]))
            try:
                visual(pv, grid_thw=grid)
            finally:
                handle.remove()
            x = captured["x"]  # (total patches, d) before merging
            sizes = (grid.prod(-1)).tolist()
            return torch.stack([t.mean(0) for t in x.split(sizes)])
        raise ParameterError(f"vision_features is not implemented for model type {self.model_type!r}")

    def answer_state(self, conversations, layer: int = -1, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """The language model's hidden state at the last prompt position (where the reply's first
        token is predicted), float32 (n, hidden). ``layer`` indexes ``hidden_states`` (-1 = last)."""
        import torch
        from .progress import tqdm

        convs = check_conversations(conversations)
        out = []
        for i in tqdm(range(0, len(convs), batch_size), desc="answer state", disable=not progress):
            enc = self._inputs(convs[i:i + batch_size])
            with torch.no_grad():
                res = self.model(**enc, position_ids=self._positions(enc["attention_mask"]), output_hidden_states=True)
            hs = res.hidden_states
            if not -len(hs) <= layer < len(hs):
                raise ParameterError(f"layer {layer} out of range for {len(hs)} hidden-state layers")
            out.append(hs[layer][:, -1].float().cpu().numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# Tiny stand-ins of hub architectures, built from config (no network) for tests
# --------------------------------------------------------------------------------------------

LLAVA15_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' '}}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# Qwen2-VL is served by the adapter but has no stand-in here: its processor needs torchvision (not
# a dependency), so its code path is untested on this machine.
STANDIN_ARCHS = ("llava", "idefics3")


def _tiny_tokenizer(specials: list[str], seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .embedded_model import corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed, n=300), trainer)
    return tok


def _idefics3_tokenizer(seed: int):
    """A tiny fast tokenizer with Idefics3's / SmolVLM's special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                "<global-img>", "<pad>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer(specials, seed), bos_token="<|im_start|>",
                                  eos_token="<end_of_utterance>", unk_token="<unk>", pad_token="<pad>",
                                  additional_special_tokens=specials[2:6])
    tok.chat_template = IDEFICS3_TEMPLATE
    return tok


def make_standin(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``arch`` MLLM (model + processor + tokenizer) in hub format.

    arch: 'llava' (LLaVA-1.5 layout: CLIP tower, GELU projector, Llama, 'USER: <image>\\n...'
    template) or 'idefics3' (SmolVLM layout). Built from config only (no download).
    """
    import torch
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    if arch not in STANDIN_ARCHS:
        raise ParameterError(f"unknown stand-in architecture {arch!r}; allowed: {', '.join(STANDIN_ARCHS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch == "llava":
        from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        tok = PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer(["<unk>", "<s>", "</s>", "<image>", "<pad>"], seed),
                                      bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                      additional_special_tokens=["<image>"])
        tok.chat_template = LLAVA15_TEMPLATE
        ip = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
        proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=15, vision_feature_select_strategy="default",
                              chat_template=LLAVA15_TEMPLATE, num_additional_image_tokens=1)
        cfg = LlavaConfig(
            vision_config=CLIPVisionConfig(image_size=30, patch_size=15, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=2, num_attention_heads=2, projection_dim=32),
            text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id),
            image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=4,
            vision_feature_layer=-2, vision_feature_select_strategy="default")
        model = LlavaForConditionalGeneration(cfg)
    else:
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
        from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        tok = _idefics3_tokenizer(seed)
        ip = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32},
                                       max_image_size={"longest_edge": 32})
        proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
        cfg = Idefics3Config(
            vision_config=Idefics3VisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=2),
            text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id),
            image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tok.pad_token_id)
        model = Idefics3ForConditionalGeneration(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# Shape-faithful stand-ins of the paper profile's hub models (resources/standins.json)
# --------------------------------------------------------------------------------------------

LLAVA_NEXT_MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'][0]['text'] + '</s> ' }}"
    "{% endif %}{% endfor %}"
)


def standin_table() -> dict:
    """The stand-in shapes written in the repository (``resources/standins.json``)."""
    import json

    from .paths import RESOURCES

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


def _tiny_text(tok, cls_name: str, max_positions: int):
    import transformers

    cls = getattr(transformers, cls_name)
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if cls_name == "MistralConfig":
        kw["sliding_window"] = None
    return cls(**kw)


def make_shape_standin(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a shape-faithful stand-in ``arch`` (a key of ``resources/standins.json``: 'llava-1.5',
    'llava-next', 'smolvlm') in hub format: the real checkpoint's processor settings, image-token counts,
    context length and chat template; tiny random weights (hidden 32, 2 layers). No download."""
    import torch
    from transformers import CLIPVisionConfig, PreTrainedTokenizerFast

    table = standin_table()["standins"]
    if arch not in table:
        raise ParameterError(f"unknown stand-in {arch!r}; allowed: {', '.join(table)}")
    s = table[arch]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch in ("llava-1.5", "llava-next"):
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        tok = PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer(["<unk>", "<s>", "</s>", "<image>", "<pad>"], seed),
                                      bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                      additional_special_tokens=["<image>"])
        vision = CLIPVisionConfig(image_size=s["image_size"], patch_size=s["patch_size"], hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
        common = dict(image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=s["image_seq_length"],
                      vision_feature_layer=-2, vision_feature_select_strategy="default")
        size = {"shortest_edge": s["image_size"]}
        crop = {"height": s["image_size"], "width": s["image_size"]}
        if arch == "llava-1.5":
            from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

            template = LLAVA15_TEMPLATE
            tok.chat_template = template
            proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(size=size, crop_size=crop), tokenizer=tok,
                                  patch_size=s["patch_size"], vision_feature_select_strategy="default",
                                  chat_template=template, num_additional_image_tokens=1)
            model = LlavaForConditionalGeneration(LlavaConfig(
                vision_config=vision, text_config=_tiny_text(tok, "LlamaConfig", s["max_position_embeddings"]), **common))
        else:
            from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
            from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

            template = LLAVA_NEXT_MISTRAL_TEMPLATE
            tok.chat_template = template
            pins = s["image_grid_pinpoints"]
            ip = LlavaNextImageProcessorPil(size=size, crop_size=crop, image_grid_pinpoints=pins)
            proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=s["patch_size"],
                                      vision_feature_select_strategy="default", chat_template=template,
                                      num_additional_image_tokens=1)
            model = LlavaNextForConditionalGeneration(LlavaNextConfig(
                vision_config=vision, text_config=_tiny_text(tok, "MistralConfig", s["max_position_embeddings"]),
                image_grid_pinpoints=pins, **common))
    elif arch == "smolvlm":
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
        from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        tok = _idefics3_tokenizer(seed)
        ip = Idefics3ImageProcessorPil(do_image_splitting=True, size={"longest_edge": s["longest_edge"]},
                                       max_image_size={"longest_edge": s["image_size"]})
        proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=s["image_seq_len"],
                                 chat_template=IDEFICS3_TEMPLATE)
        model = Idefics3ForConditionalGeneration(Idefics3Config(
            vision_config=Idefics3VisionConfig(image_size=s["image_size"], patch_size=s["patch_size"], hidden_size=32,
                                               intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
            text_config=_tiny_text(tok, "LlamaConfig", s["max_position_embeddings"]),
            image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=s["scale_factor"],
            pad_token_id=tok.pad_token_id))
    else:  # a table entry without a builder
        raise ParameterError(f"stand-in {arch!r} is listed in standins.json but has no builder")
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def standin_model(hub_id: str, seed: int = 0) -> Path:
    """The cached stand-in folder of ``hub_id`` (built on first use, ``save_pretrained`` format)."""
    from .cache import cached

    arch = standin_arch_for(hub_id)
    spec = standin_table()["standins"][arch]
    folder = cached("standin_model", {"arch": arch, "spec": spec, "seed": seed},
                    lambda tmp: make_shape_standin(arch, tmp / "model", seed))
    return folder / "model"


def make_clip_standin(hub_id: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``CLIPModel`` with the image and patch size of the CLIP checkpoint
    ``hub_id`` (``resources/standins.json``, key ``clip``) and its image processor, ``save_pretrained``
    format: what paper A's CLIP probe loads, offline. No download."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    spec = standin_table()["clip"]
    if hub_id not in spec["patch_size"]:
        raise ParameterError(f"no CLIP stand-in for {hub_id!r}; CLIP checkpoints with one: {', '.join(spec['patch_size'])}")
    torch.manual_seed(seed)
    size = spec["image_size"]
    cfg = CLIPConfig(text_config=CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2, max_position_embeddings=16, bos_token_id=0,
                                                eos_token_id=1, pad_token_id=1).to_dict(),
                     vision_config=CLIPVisionConfig(image_size=size, patch_size=spec["patch_size"][hub_id], hidden_size=32,
                                                    intermediate_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2).to_dict(),
                     projection_dim=32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    CLIPModel(cfg).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
    return out


def standin_clip(hub_id: str, seed: int = 0) -> Path:
    """The cached CLIP stand-in folder of ``hub_id`` (built on first use)."""
    from .cache import cached

    spec = standin_table()["clip"]
    folder = cached("standin_model", {"arch": "clip", "hub_id": hub_id, "spec": spec, "seed": seed},
                    lambda tmp: make_clip_standin(hub_id, tmp / "model", seed))
    return folder / "model"


def context_budget(model_ref: str) -> tuple[int, int] | None:
    """(most tokens one image can take, context positions) of a model, without loading its weights:
    from the stand-in table for hub ids, from ``config.json`` for local folders with fixed image-token
    counts (LLaVA-1.5 layout); None when unknown (the runtime check in :meth:`MLLM._inputs` still holds)."""
    import json

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
        if positions == spec["max_position_embeddings"] and cfg.get("model_type", "").startswith(
                {"llava": "llava", "llava_next": "llava_next", "idefics3": "idefics3"}[spec["family"]]):
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


def model_input_view(model_ref: str, images) -> np.ndarray:
    """The images as the model's own image processor hands them to the vision tower (resize, crop, RGB),
    mapped back to [0, 1] for display: (n, height, width, 3) float. Loads only the processor of
    ``model_ref`` (a local folder relative to the repo root, or a hub id), not the weights."""
    from transformers import AutoProcessor

    from .paths import resolve_model

    try:
        processor = AutoProcessor.from_pretrained(resolve_model(model_ref), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ParameterError(f"cannot load the image processor of {model_ref!r}: {err}") from err
    ip = getattr(processor, "image_processor", processor)
    pixels = np.asarray(ip(list(images), return_tensors="np")["pixel_values"], dtype=np.float32)
    mean = np.asarray(getattr(ip, "image_mean", [0.0] * 3), np.float32)
    std = np.asarray(getattr(ip, "image_std", [1.0] * 3), np.float32)
    return np.clip(pixels.transpose(0, 2, 3, 1) * std + mean, 0.0, 1.0)
