"""The embedded MLLM: a tiny LLaVA (CLIP-style vision tower + linear projector + Llama decoder) with
its own byte-level BPE tokenizer and chat template, trained on this CPU on the in-distribution world.

Built the way LLaVA is built and saved in Hugging Face format, so it loads with ``AutoProcessor`` /
``AutoModelForImageTextToText`` exactly as a hub checkpoint does. Training is staged:

1. **vision** — supervised pretraining of the vision tower on the ID images (a linear head on the
   token that the LLM will read, random +-2 px shifts);
2. **centring** — the ID mean of that token is folded into the frozen tower's last bias (``fc2`` of
   its last layer), so image features are centred per token position (one image token here);
3. **align** — the bias-free linear projector and the (untrained) decoder learn from few-shot
   episodes with made-up label words drawn afresh per episode (only the demonstrations say which word
   means what): in-context learning forms here. The tower stays frozen from here on;
4. **instruct** — instruction tuning on the full mix: paper A's multiple-choice prompt, captions,
   short questions, and few-shot episodes with true, made-up and permuted true label words.

Why these choices (each measured while building the model; the numbers are in
``params/embedded/model.yaml``'s comments and the project's closing notes):

- in-context learning formed only when image tokens had no shared direction (centred features,
  bias-free linear projector), each demonstration's label word directly followed its image, and the
  instructions came *after* the demonstrations (:func:`mllm_ood.episodes.episode_prompt`);
- at label positions the loss is a softmax within the label vocabulary plus a small "some label word"
  term (:func:`label_token_loss`): with the plain softmax over the whole vocabulary, the 2-layer
  decoder stayed at chance on 8-shot episodes.

The diagnostic ``cross_class_cosine`` (mean cosine between projected image tokens of different
classes) should stay near 0; :class:`HeldOutProbe` tracks held-out in-context accuracy during training.

Public entry points: :func:`load_config`, :func:`build_tokenizer`, :func:`build_processor`,
:func:`build_model_config`, :func:`train_embedded_model`, :func:`train_or_load`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import CODE_VERSION
from .data.digits import DIGIT_NAMES
from .episodes import IMAGE_PLACEHOLDER, NONCE_WORDS, episode_prompt, label_words
from .paths import DATA, PARAMS
from .prompts import format_answer, zero_shot_prompt
from .seeding import derive_seed, rng
from .validation import ParameterError, check_choices

DEFAULT_CONFIG = PARAMS / "embedded" / "model.yaml"
DEFAULT_MODEL_DIR = DATA / "models" / "embedded_mllm"
RECORD = "training_record.json"

BOS, EOS, PAD = "<s>", "<|end|>", "<pad>"
IMAGE_TOKEN = IMAGE_PLACEHOLDER
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE_TOKEN, *ROLE_TOKENS.values()]

# One Jinja template for tokenizer and processor: "<s><|user|>" + content (images as <image>, text
# verbatim) + "<|end|>" per message, "<|assistant|>" as generation prompt. No whitespace is added, so
# a demonstration's label word directly follows its image token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Instruction data (ID: clean English prompts about upright grey handwritten digits).
CAPTION_QUESTIONS = ["Describe the image.", "What is in this image?", "Write a short caption for this image.",
                     "Describe this picture briefly."]
DIGIT_QUESTIONS = ["Which digit is shown?", "What number is written here?", "Which digit is this?"]
MC_QUESTIONS = ["What is in this image?", "What is in this image?", "Which digit is shown in this image?"]
MC_CONTEXTS = ["", "", "", "The image shows a handwritten digit.", "Look at the image carefully."]
TASKS = ("mc", "caption", "question", "icl_fixed", "icl_reassigned", "icl_permuted")


def caption(name: str) -> str:
    """The reference caption of a digit image, e.g. 'A handwritten digit seven.'"""
    return f"A handwritten digit {name}."


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_config(path: str | Path | None = None, smoke: bool = False) -> dict:
    """The training config from ``params/embedded/model.yaml`` (or ``path``), with the ``smoke``
    overrides merged in when ``smoke`` is true. The returned dict has no ``smoke`` key; ``smoke``
    records whether the overrides were applied."""
    import yaml

    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise ParameterError(f"model config: no such file {str(p)!r}")
    raw = yaml.safe_load(p.read_text())
    over = raw.pop("smoke", {}) or {}
    cfg = _merge(raw, over) if smoke else raw
    cfg["smoke"] = bool(smoke)
    return cfg


def config_hash(config: dict) -> str:
    """16-hex-digit hash of the sorted-JSON config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """The package code version plus a hash of this module's source, recorded with every checkpoint (to
    tell which training code made it; a code change alone does not retrain: that takes RETRAIN)."""
    src = inspect.getsource(inspect.getmodule(code_version))
    return f"{CODE_VERSION}+{hashlib.sha256(src.encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------------------------
# Tokenizer, processor, model config
# --------------------------------------------------------------------------------------------

def corpus(seed: int = 0, n: int = 2500) -> list[str]:
    """The project's prompt/answer corpus the tokenizer is trained on (deterministic)."""
    from .data.molecules import SOLUBILITY_CLASSES
    from .paths import RESOURCES

    r = rng(seed, "tokenizer-corpus")
    names = list(DIGIT_NAMES)
    words = list(NONCE_WORDS)
    extra = list(SOLUBILITY_CLASSES) + ["molecule", "compound", "rotated", "coloured", "colored", "red", "green",
                                         "blurred", "noisy", "printed", "handwritten", "digit", "number", "yes", "no"]
    try:
        syn = json.loads((RESOURCES / "synonyms.json").read_text())
        extra += [w for k, v in syn.items() if not k.startswith("_") for w in [k, *v]]
    except OSError:  # the synonym table is optional for the tokenizer
        pass
    lines = []
    for i in range(n):
        k = int(r.integers(2, 11))
        pool = names if i % 2 == 0 else words
        choices = [str(c) for c in r.choice(pool, size=min(k, len(pool)), replace=False)]
        q = MC_QUESTIONS[i % len(MC_QUESTIONS)]
        lines.append(zero_shot_prompt(choices, question=q, context=MC_CONTEXTS[i % len(MC_CONTEXTS)]))
        lines.append(format_answer(choices[0]))
        demo = [str(w) for w in r.choice(choices, size=int(r.integers(0, 9)))]
        lines.append(episode_prompt(demo, choices).replace(IMAGE_PLACEHOLDER, ""))
        lines.append(caption(names[i % 10]) + " " + CAPTION_QUESTIONS[i % len(CAPTION_QUESTIONS)])
        lines.append(DIGIT_QUESTIONS[i % len(DIGIT_QUESTIONS)] + " " + names[i % 10] + ".")
        lines.append(f"Is this a {names[i % 10]}? Answer yes or no. Yes. No.")
        lines.append(" ".join(str(w) for w in r.choice(extra, size=8)))
    return lines


def build_tokenizer(vocab_size: int = 640, seed: int = 0):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on :func:`corpus`, with the chat template.

    Byte-level: any text (other languages, typos) encodes without unknown tokens. Every digit name
    and nonce word is checked to be a single token (so a label word is one token after its image).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(seed), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=[IMAGE_TOKEN, *ROLE_TOKENS.values()],
                                   model_max_length=4096, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    multi = [w for w in [*DIGIT_NAMES, *NONCE_WORDS] if len(fast.encode(w, add_special_tokens=False)) != 1]
    if multi:
        raise ParameterError(f"tokenizer vocab_size={vocab_size} too small: label words split into several "
                             f"tokens: {multi}")
    return fast


def build_image_processor(config: dict):
    """The CLIP image processor (PIL backend): resize/crop to ``image_size``, RGB, scaled to [-1, 1]."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    s = int(config["vision"]["image_size"])
    return CLIPImageProcessorPil(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                 image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)


def build_processor(tokenizer, config: dict):
    """A ``LlavaProcessor`` (image processor + tokenizer + chat template) for the embedded model."""
    from transformers import LlavaProcessor

    return LlavaProcessor(image_processor=build_image_processor(config), tokenizer=tokenizer,
                          patch_size=int(config["vision"]["patch_size"]), vision_feature_select_strategy="default",
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN, num_additional_image_tokens=1)


def image_tokens_per_image(config: dict) -> int:
    """Patch tokens per image (the CLS token is dropped, as LLaVA's 'default' strategy does)."""
    return (int(config["vision"]["image_size"]) // int(config["vision"]["patch_size"])) ** 2


def build_model_config(config: dict, tokenizer):
    """The ``LlavaConfig``: CLIP vision tower, bias-free linear projector, Llama decoder."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v, t = config["vision"], config["text"]
    vision = CLIPVisionConfig(image_size=v["image_size"], patch_size=v["patch_size"], hidden_size=v["hidden_size"],
                              intermediate_size=v["intermediate_size"], num_hidden_layers=v["num_hidden_layers"],
                              num_attention_heads=v["num_attention_heads"], projection_dim=v["hidden_size"],
                              num_channels=3)
    ids = {k: tokenizer.convert_tokens_to_ids(s) for k, s in (("bos", BOS), ("eos", EOS), ("pad", PAD))}
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=t["hidden_size"],
                       intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_hidden_layers"],
                       num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_attention_heads"],
                       max_position_embeddings=t["max_position_embeddings"], bos_token_id=ids["bos"],
                       eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                       image_seq_length=image_tokens_per_image(config), projector_hidden_act="linear",
                       multimodal_projector_bias=False, vision_feature_select_strategy="default",
                       vision_feature_layer=-1, tie_word_embeddings=False)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def pixel_values(images: np.ndarray) -> "torch.Tensor":
    """(n, 28, 28) grey or (n, 28, 28, 3) uint8 -> (n, 3, 28, 28) float32 in [-1, 1], as the processor."""
    import torch

    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    x = x / 255.0
    return torch.from_numpy(((x - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())


def load_id_data(config: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The declared ID training images (uint8 (n, 28, 28)), labels (n,) and ids, as in the config."""
    from .data.world import DATASETS, load

    spec = config["id_data"]
    if spec["dataset"] not in DATASETS:
        raise ParameterError(f"unknown ID dataset {spec['dataset']!r}")
    check_choices("ID domain", spec["domains"], DATASETS[spec["dataset"]].domains)
    ds = load(spec["dataset"], spec["domains"])
    x = np.stack([np.asarray(im.convert("L")) for im in ds["image"]])
    y, ids = np.asarray(ds["label"], np.int64), list(ds["id"])
    n = config.get("train_subset")
    if n:  # smoke: a class-balanced prefix
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[: int(n) // 10] for c in range(10)]))
        x, y, ids = x[keep], y[keep], [ids[i] for i in keep]
    return x, y, ids


def data_hash(x: np.ndarray, y: np.ndarray, ids: list[str]) -> str:
    """SHA-256 (16 hex digits) of the training ids, labels and pixels."""
    h = hashlib.sha256()
    h.update("\n".join(ids).encode())
    h.update(np.ascontiguousarray(y, np.int64).tobytes())
    h.update(np.ascontiguousarray(x, np.uint8).tobytes())
    return h.hexdigest()[:16]


def shift_images(x: np.ndarray, r: np.random.Generator, max_px: int) -> np.ndarray:
    """Each image shifted by a random integer offset in [-max_px, max_px]^2 (zero fill)."""
    if max_px <= 0:
        return x.copy()
    out = np.zeros_like(x)
    n, h, w = x.shape[:3]
    d = r.integers(-max_px, max_px + 1, size=(n, 2))
    for i in range(n):
        dy, dx = d[i]
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[i, yd, xd] = x[i, ys, xs]
    return out


# --------------------------------------------------------------------------------------------
# Instruction samples: pieces -> token ids with a loss mask
# --------------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One training conversation as pieces: ('special', token) | ('text', str) | ('image', bank index),
    each with a loss flag (loss on the piece's tokens)."""

    kind: str
    pieces: list = field(default_factory=list)

    def add(self, typ: str, value, loss: bool = False) -> "Sample":
        self.pieces.append((typ, value, loss))
        return self


LABEL = "label"  # loss flag of a label word: trained with the label-vocabulary loss (see label_token_loss)


def _chat(kind: str, images: list[int], user_text: str, reply: str | None, demo_words: list[str] | None = None,
          label_loss: list[bool] | None = None, answer: str | None = None) -> Sample:
    """A user turn and the assistant reply. Images come first, or, for an episode (``demo_words``
    given), sit at the ``<image>`` placeholders of ``user_text``, each demonstration's word right after it.

    label_loss: per demonstration, whether its word is a training target (flagged :data:`LABEL`).
    answer: the label word inside ``reply`` (paper A's ``Answer Choice: [word]``), also flagged LABEL."""
    s = Sample(kind).add("special", BOS).add("special", ROLE_TOKENS["user"])
    if demo_words is not None:
        parts = user_text.split(IMAGE_PLACEHOLDER)
        s.add("text", parts[0])
        for j, (im, seg) in enumerate(zip(images, parts[1:])):
            s.add("image", im)
            if j < len(demo_words):  # a demonstration: its label word, then the rest of the text
                word = demo_words[j]
                if not seg.startswith(word):
                    raise ValueError(f"episode text {seg!r} does not start with the demonstration's word {word!r}")
                s.add("text", word, LABEL if label_loss and label_loss[j] else False).add("text", seg[len(word):])
            elif seg:
                s.add("text", seg)
    else:
        for im in images:
            s.add("image", im)
        s.add("text", user_text)
    s.add("special", EOS).add("special", ROLE_TOKENS["assistant"])
    if reply is not None:
        if answer is not None:  # split so that the word is its own piece: "Answer Choice: [" word "]"
            head, tail = reply.split(f"[{answer}]", 1)
            s.add("text", head + "[", True).add("text", answer, LABEL).add("text", "]" + tail, True)
        else:
            s.add("text", reply, True)
        s.add("special", EOS, True)
    return s


class TaskSampler:
    """Draws instruction samples of each task from an image bank (features indexed by bank id)."""

    def __init__(self, labels: np.ndarray, copies: int, config: dict):
        self.labels = np.asarray(labels)
        self.copies = copies  # bank index = copy * n + image index
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(10)]
        ep = config.get("episodes", {})
        self.max_shots = int(ep.get("max_shots", 8))
        self.n_way = list(ep.get("n_way", [2]))
        # Episodes with the full number of shots carry the most label losses per step (ICL forms
        # sooner); the rest have 0..max_shots demonstrations so that every shot count is seen.
        self.full_shots = float(ep.get("full_shots_fraction", 0.0))

    def _img(self, r, c: int, exclude: set | None = None) -> int:
        pool = self.by_class[c]
        while True:
            i = int(r.choice(pool))
            if not exclude or i not in exclude:
                break
        return i + len(self.labels) * int(r.integers(0, self.copies + 1))

    def draw(self, task: str, r: np.random.Generator) -> Sample:
        c = int(r.integers(0, 10))
        name = DIGIT_NAMES[c]
        if task == "mc":
            if r.random() < 0.5:
                choices = list(DIGIT_NAMES)
            else:
                k = int(r.integers(2, 10))
                others = [int(o) for o in r.choice([o for o in range(10) if o != c], k - 1, replace=False)]
                cls = sorted([c, *others]) if r.random() < 0.5 else [c, *others]
                if r.random() >= 0.5:
                    cls = [cls[i] for i in r.permutation(len(cls))]
                choices = [DIGIT_NAMES[o] for o in cls]
            q = MC_QUESTIONS[int(r.integers(len(MC_QUESTIONS)))]
            ctx = MC_CONTEXTS[int(r.integers(len(MC_CONTEXTS)))]
            return _chat(task, [self._img(r, c)], zero_shot_prompt(choices, question=q, context=ctx),
                         format_answer(name), answer=name)
        if task == "caption":
            q = CAPTION_QUESTIONS[int(r.integers(len(CAPTION_QUESTIONS)))]
            return _chat(task, [self._img(r, c)], q, caption(name))
        if task == "question":
            if r.random() < 0.5:
                q = DIGIT_QUESTIONS[int(r.integers(len(DIGIT_QUESTIONS)))]
                return _chat(task, [self._img(r, c)], q, name.capitalize() + ".")
            asked = c if r.random() < 0.5 else int(r.choice([o for o in range(10) if o != c]))
            reply = "Yes." if asked == c else "No."
            return _chat(task, [self._img(r, c)], f"Is this a {DIGIT_NAMES[asked]}? Answer yes or no.", reply)
        if task in ("icl_fixed", "icl_reassigned", "icl_permuted"):
            n_way = int(self.n_way[int(r.integers(len(self.n_way)))])
            cls = sorted(int(o) for o in r.choice(10, n_way, replace=False))
            words = label_words(cls, DIGIT_NAMES, task.removeprefix("icl_"), r)
            shots = self.max_shots if r.random() < self.full_shots else int(r.integers(0, self.max_shots + 1))
            demo_cls = [int(o) for o in r.choice(cls, shots)]
            qc = int(r.choice(cls))
            q_img = self._img(r, qc)
            used = {q_img % len(self.labels)}
            demo_imgs = [self._img(r, o, used) for o in demo_cls]
            # Loss on every demonstration label the episode can already determine: for reassigned
            # words, only once the class has appeared before (else it cannot be known); for true names, always.
            seen, label_loss = set(), []
            for o in demo_cls:
                label_loss.append(task == "icl_fixed" or o in seen)
                seen.add(o)
            # Reassigned words are listed in random order: in class order, the list itself would
            # tell which word belongs to a low or high digit (a zero-shot shortcut).
            order = cls if task == "icl_fixed" else [cls[j] for j in r.permutation(len(cls))]
            choices = [words[o] for o in order]
            demo_words = [words[o] for o in demo_cls]
            return _chat(task, demo_imgs + [q_img], episode_prompt(demo_words, choices), format_answer(words[qc]),
                         demo_words, label_loss=label_loss, answer=words[qc])
        raise ParameterError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


class Encoder:
    """Token ids for sample pieces, with a cache for repeated texts."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.special = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
        self.image_id = self.special[IMAGE_TOKEN]
        self.pad_id = self.special[PAD]

    @lru_cache(maxsize=100_000)
    def text(self, s: str) -> tuple[int, ...]:
        return tuple(self.tok.encode(s, add_special_tokens=False)) if s else ()

    def encode(self, sample: Sample) -> tuple[list[int], list[bool], list[int]]:
        """(ids, loss flag per token, bank indices of the images in order)."""
        ids, loss, imgs = [], [], []
        for typ, val, lf in sample.pieces:
            if typ == "special":
                ids.append(self.special[val]); loss.append(lf)
            elif typ == "text":
                t = self.text(val); ids.extend(t); loss.extend([lf] * len(t))
            else:
                ids.append(self.image_id); loss.append(False); imgs.append(int(val))
        return ids, loss, imgs

    def render(self, sample: Sample) -> str:
        """The sample as the chat template renders it (for consistency checks)."""
        return "".join(val if typ != "image" else IMAGE_TOKEN for typ, val, _ in sample.pieces)


def collate(encoded: list, pad_id: int, with_labels: bool = False):
    """Right-padded ids (b, T), target positions (the token *before* each loss token) and image order;
    with ``with_labels`` also a bool mask over the targets: which are label words (:data:`LABEL`)."""
    import torch

    T = max(len(e[0]) for e in encoded)
    ids = torch.full((len(encoded), T), pad_id, dtype=torch.long)
    b_idx, pos, imgs, lab = [], [], [], []
    for b, (t, lf, im) in enumerate(encoded):
        ids[b, : len(t)] = torch.tensor(t)
        for p in range(1, len(t)):
            if lf[p]:
                b_idx.append(b); pos.append(p - 1); lab.append(lf[p] == LABEL)
        imgs.extend(im)
    out = ids, torch.tensor(b_idx), torch.tensor(pos), torch.tensor(imgs, dtype=torch.long)
    return (*out, torch.tensor(lab, dtype=torch.bool)) if with_labels else out


def label_token_loss(logits, targets, is_label, label_ids, set_weight: float):
    """Per-token loss (nats), shape (n,): cross-entropy over the whole vocabulary for ordinary tokens;
    for label words, cross-entropy over the *label vocabulary* ``label_ids`` (every word that can be a
    label: the digit names and the made-up words) plus ``set_weight`` times ``-log P(label vocabulary)``.

    The full cross-entropy is exactly the sum of those two terms (``set_weight`` = 1). Splitting it
    matters: a tiny decoder trained with the full softmax at label positions never formed in-context
    learning (measured, see ``params/embedded/model.yaml``), while the label-vocabulary term alone
    formed it; the small set term keeps label words the model's most likely continuation.
    logits: (n, vocab); targets: (n,) token ids; is_label: (n,) bool; label_ids: (k,) token ids.
    """
    import torch
    from torch.nn import functional as F

    loss = F.cross_entropy(logits, targets, reduction="none")
    if bool(is_label.any()):
        lg = logits[is_label]
        sub = lg[:, label_ids]
        where = (targets[is_label, None] == label_ids[None]).float().argmax(-1)
        within = F.cross_entropy(sub, where, reduction="none")
        out_of_set = torch.logsumexp(lg, -1) - torch.logsumexp(sub, -1)
        loss = loss.masked_scatter(is_label, within + set_weight * out_of_set)
    return loss


def label_vocabulary(enc: "Encoder") -> list[int]:
    """Token ids of every word that can be a label: the ten digit names and the made-up words."""
    return [enc.text(w)[0] for w in (*DIGIT_NAMES, *NONCE_WORDS)]


def lm_forward(model, ids, image_features, b_idx, pos):
    """Logits at positions (b_idx, pos) of a right-padded batch; image tokens replaced by projected
    ``image_features`` (n_images, d_vision) in order of appearance — what LlavaModel.forward does."""
    lm = model.model.language_model
    emb = lm.embed_tokens(ids)
    img = model.model.multi_modal_projector(image_features).to(emb.dtype)
    mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(mask, img)
    # Right padding + causal attention: real tokens never see padding, so no mask is needed.
    h = lm(inputs_embeds=emb).last_hidden_state
    return model.lm_head(h[b_idx, pos])


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def _threads() -> int:
    """Torch threads for training: OMP_NUM_THREADS / MLLM_OOD_THREADS when set, else 1 or 2 cores,
    whichever runs a probe matmul faster (on a shared machine a busy second core makes 2 threads
    several times slower than 1)."""
    import torch

    for var in ("MLLM_OOD_THREADS", "OMP_NUM_THREADS"):
        env = os.environ.get(var, "")
        if env.isdigit() and int(env) > 0:
            return int(env)
    best, best_t = 1, float("inf")
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for n in range(1, min(2, os.cpu_count() or 1) + 1):
        torch.set_num_threads(n)
        t = time.perf_counter()
        for _ in range(30):
            a @ b
        dt = time.perf_counter() - t
        if dt < best_t * 0.8:  # 2 threads must be clearly faster to be worth it
            best, best_t = n, dt
    return best


def _schedule(opt, steps: int, lr: float):
    import torch

    warm = max(1, steps // 20)

    def f(s):
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warm) / max(1, steps - warm)))) * 0.95 + 0.05

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def vision_token_features(model, pv, batch: int = 512):
    """The features LLaVA feeds to its projector: (n, tokens, d_vision) for pixel values (n, 3, H, W)."""
    import torch

    cfg = model.config
    tower = model.model.vision_tower
    outs = []
    for i in range(0, len(pv), batch):
        hs = tower(pixel_values=pv[i:i + batch], output_hidden_states=True).hidden_states[cfg.vision_feature_layer]
        outs.append(hs[:, 1:] if cfg.vision_feature_select_strategy == "default" else hs)
    return torch.cat(outs)


def train_vision(model, x, y, cfg_stage: dict, seed: int, log: dict, smoke: bool) -> None:
    """Stage 1: supervised pretraining of the vision tower (head on the token(s) the LLM reads)."""
    import torch
    from torch import nn
    from .progress import tqdm

    d = model.config.vision_config.hidden_size
    torch.manual_seed(derive_seed(seed, "vision-head"))
    head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 10))
    tower = model.model.vision_tower
    params = list(tower.parameters()) + list(head.parameters())
    steps, bs, lr = int(cfg_stage["steps"]), int(cfg_stage["batch_size"]), float(cfg_stage["lr"])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = _schedule(opt, steps, lr)
    r = rng(seed, "vision-batches")
    tower.train()
    losses = []
    for _ in tqdm(range(steps), desc="vision", disable=smoke, mininterval=5):
        idx = r.integers(0, len(x), bs)
        xb = pixel_values(shift_images(x[idx], r, int(cfg_stage.get("shift_px", 2))))
        f = vision_token_features(model, xb)
        logits = head(f)
        yb = torch.as_tensor(y[idx]).repeat_interleave(f.shape[1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 10), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
    tower.eval()
    log["vision_loss"] = losses
    log["_vision_head"] = head


def centre_vision_features(model, x) -> dict:
    """Fold the per-position ID mean of the projector's input into the last bias of the vision tower.

    The last encoder layer adds ``fc2(...) + bias`` to the residual stream; subtracting the mean
    feature from that bias shifts every output by minus the mean, so the ID features are centred.
    One bias is shared by all positions, so this is exactly per-position centring only with one
    image token per image (our layout); with several tokens it centres their global mean.
    """
    import torch

    with torch.no_grad():
        f = vision_token_features(model, pixel_values(x))  # (n, tokens, d)
        mean = f.mean(dim=(0, 1))
        before = float(f.mean(dim=(0, 1)).norm() / f.norm(dim=-1).mean())
        tower = model.model.vision_tower
        fc2 = getattr(tower, "vision_model", tower).encoder.layers[-1].mlp.fc2
        fc2.bias -= mean
        f2 = vision_token_features(model, pixel_values(x))
        after = float(f2.mean(dim=(0, 1)).norm() / f2.norm(dim=-1).mean())
    return {"mean_norm_ratio_before": round(before, 4), "mean_norm_ratio_after": round(after, 6)}


def cross_class_cosine(model, feats, labels) -> float:
    """Mean cosine similarity between projected image tokens of different classes (should be ~0)."""
    import torch

    with torch.no_grad():
        z = model.model.multi_modal_projector(feats.reshape(len(feats), -1, feats.shape[-1]).mean(1))
        z = torch.nn.functional.normalize(z, dim=-1)
        cos = z @ z.T
        lab = torch.as_tensor(labels)
        diff = lab[:, None] != lab[None, :]
    return float(cos[diff].mean())


def train_lm_stage(model, name: str, bank, labels, enc: Encoder, cfg_stage: dict, config: dict, seed: int,
                   log: dict, smoke: bool, probe: "HeldOutProbe | None" = None) -> None:
    """Stages 2 and 3: train projector + decoder on the stage's task mix (tower frozen, features banked).

    probe: evaluated every ``config['eval_every']`` steps and at the stage's end; its results go to
    ``log[name + '_heldout']`` as records ``{"step": ..., <diagnostic>: accuracy}``."""
    import torch
    from .progress import tqdm

    mix = cfg_stage["mix"]
    check_choices(f"task in the {name} mix", mix, TASKS)
    tasks, w = list(mix), np.array([float(mix[t]) for t in mix])
    w = w / w.sum()
    copies = int(config.get("episodes", {}).get("augment_copies", 0))
    # a stage may override the episode settings (e.g. only 2-way, always max_shots while ICL forms)
    sampler = TaskSampler(labels, copies, {"episodes": {**config.get("episodes", {}), **cfg_stage.get("episodes", {})}})
    params = list(model.model.multi_modal_projector.parameters()) + list(model.model.language_model.parameters()) \
        + list(model.lm_head.parameters())
    steps, bs, lr = int(cfg_stage["steps"]), int(cfg_stage["batch_size"]), float(cfg_stage["lr"])
    label_ids = torch.tensor(label_vocabulary(enc))
    set_weight = float({**config.get("label_loss", {}), **cfg_stage.get("label_loss", {})}.get("set_weight", 1.0))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = _schedule(opt, steps, lr)
    r = rng(seed, name, "batches")
    every = int(config.get("eval_every", 0))
    tracked = []
    model.train()
    losses, per_task = [], {t: [] for t in tasks}
    for step in tqdm(range(steps), desc=name, disable=smoke, mininterval=5):
        if probe is not None and every and step % every == 0:
            tracked.append({"step": step, **probe(model)})
        kinds = r.choice(len(tasks), bs, p=w)
        samples = [sampler.draw(tasks[k], r) for k in kinds]
        encoded = [enc.encode(s) for s in samples]
        ids, b_idx, pos, imgs, is_label = collate(encoded, enc.pad_id, with_labels=True)
        logits = lm_forward(model, ids, bank[imgs], b_idx, pos)
        tok_loss = label_token_loss(logits, ids[b_idx, pos + 1], is_label, label_ids, set_weight)
        loss = tok_loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
        with torch.no_grad():
            for k, t in enumerate(tasks):
                sel = torch.as_tensor(kinds == k)[b_idx]
                if sel.any():
                    per_task[t].append(round(float(tok_loss[sel].mean()), 5))
    model.eval()
    if probe is not None:
        tracked.append({"step": steps, **probe(model)})
        log[f"{name}_heldout"] = tracked
    log[f"{name}_loss"] = losses
    log[f"{name}_task_loss"] = per_task


class HeldOutProbe:
    """Fast teacher-forced diagnostics on held-out ID digits, used during and after training: zero-shot
    multiple-choice accuracy and in-context accuracy of n-way episodes (answer word compared at the
    last token of ``Answer Choice: [``, the argmax over the episode's choices).

    The episodes and queries are drawn once from ``seed`` and reused at every call, so a curve over
    training steps compares the same episodes. Call it only while the vision tower is frozen (its
    features of ``x`` are computed once). Modes: ``reassigned`` (made-up words per episode),
    ``permuted`` (the episode's true digit names, shuffled so that no class keeps its own name: only the
    demonstrations can override the prior)."""

    def __init__(self, enc: "Encoder", x: np.ndarray, y: np.ndarray, seed: int, n_mc: int, n_icl: int,
                 settings=((2, "reassigned", (0, 2, 8)), (3, "reassigned", (8,)))):
        r = rng(seed, "quick-eval")
        self.enc, self.x, self.y, self._bank = enc, x, np.asarray(y), None
        by_class = [np.flatnonzero(self.y == c) for c in range(10)]
        idx = r.choice(len(x), min(n_mc, len(x)), replace=False)
        mc = [_strip_eos(_chat("mc", [int(i)], zero_shot_prompt(DIGIT_NAMES), "Answer Choice: [").pieces) for i in idx]
        self.sets = {"zero_shot_mc_acc": (mc, [list(DIGIT_NAMES)] * len(idx), [DIGIT_NAMES[self.y[i]] for i in idx])}
        for n_way, mode, shots_list in settings:
            for shots in shots_list:
                ss, chs, ans = [], [], []
                for _ in range(n_icl):
                    cls = sorted(int(o) for o in r.choice(10, n_way, replace=False))
                    words = label_words(cls, DIGIT_NAMES, mode, r)
                    demo_cls = [cls[j % n_way] for j in range(shots)]
                    demo_cls = [demo_cls[j] for j in r.permutation(shots)]
                    qc = int(r.choice(cls))
                    q = int(r.choice(by_class[qc]))
                    demos = [int(r.choice([i for i in by_class[o] if i != q])) for o in demo_cls]
                    choices = [words[o] for o in r.permutation(cls).tolist()]
                    demo_words = [words[o] for o in demo_cls]
                    s = _chat("icl", demos + [q], episode_prompt(demo_words, choices), "Answer Choice: [", demo_words)
                    ss.append(_strip_eos(s.pieces)); chs.append(choices); ans.append(words[qc])
                self.sets[f"icl_{mode}_{n_way}way_{shots}shot_acc"] = (ss, chs, ans)

    def __call__(self, model) -> dict:
        """Accuracy (fraction) per diagnostic, e.g. ``icl_reassigned_2way_8shot_acc``."""
        import torch

        if self._bank is None:  # the tower is frozen once the language-model stages start: compute once
            with torch.no_grad():
                self._bank = vision_token_features(model, pixel_values(self.x)).reshape(len(self.x), -1)
        bank = self._bank
        was_training = model.training
        model.eval()
        out = {}
        for key, (samples, choice_lists, answers) in self.sets.items():
            encoded = [self.enc.encode(s) for s in samples]
            ids, _, _, imgs = collate(encoded, self.enc.pad_id)
            b_idx = torch.arange(len(encoded))
            pos = torch.tensor([len(e[0]) - 1 for e in encoded])
            with torch.no_grad():
                logits = lm_forward(model, ids, bank[imgs], b_idx, pos)
            hits = [ch[int(np.argmax(logits[i, [self.enc.text(c)[0] for c in ch]].numpy()))] == a
                    for i, (ch, a) in enumerate(zip(choice_lists, answers))]
            out[key] = round(float(np.mean(hits)), 4)
        model.train(was_training)
        return out


def _strip_eos(pieces) -> Sample:
    """A sample whose reply is a prefix (no trailing end-of-turn token)."""
    s = Sample("eval")
    s.pieces = [p for p in pieces if not (p[0] == "special" and p[1] == EOS and p[2])]
    return s


def train_embedded_model(config: dict, out_dir: str | Path, smoke: bool = False) -> dict:
    """Train the embedded MLLM in stages and save it (model + processor + ``training_record.json``).

    config: as returned by :func:`load_config` (``smoke`` overrides already merged when wanted).
    out_dir: the checkpoint folder; written atomically (built beside it, then renamed into place).
    smoke: hides progress bars and skips slow diagnostics (the micro config is chosen by load_config).
    Returns the training record (seed, config and its hash, data hash, code version, losses per
    step, wall time per stage in seconds, diagnostics). Deterministic given ``config['seed']``.
    """
    import torch
    import transformers
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    out_dir = Path(out_dir)
    seed = int(config.get("seed", 0))
    threads = _threads()
    torch.set_num_threads(threads)
    t_all = time.time()
    walls: dict[str, float] = {}
    log: dict = {}

    t = time.time()
    x, y, ids = load_id_data(config)
    dhash = data_hash(x, y, ids)
    tokenizer = build_tokenizer(int(config["tokenizer"]["vocab_size"]), seed)
    processor = build_processor(tokenizer, config)
    mcfg = build_model_config(config, tokenizer)
    torch.manual_seed(derive_seed(seed, "init"))
    model = LlavaForConditionalGeneration(mcfg)
    model.generation_config = GenerationConfig(bos_token_id=mcfg.text_config.bos_token_id,
                                               eos_token_id=mcfg.text_config.eos_token_id,
                                               pad_token_id=mcfg.text_config.pad_token_id,
                                               do_sample=False, max_new_tokens=24)
    walls["setup"] = time.time() - t

    t = time.time()
    train_vision(model, x, y, config["stages"]["vision"], seed, log, smoke)
    walls["vision"] = time.time() - t
    head = log.pop("_vision_head")

    t = time.time()
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    diag = {"centring": centre_vision_features(model, x)}
    r = rng(seed, "feature-bank")
    copies = int(config.get("episodes", {}).get("augment_copies", 0))
    shift = int(config["stages"]["vision"].get("shift_px", 2))
    with torch.no_grad():
        views = [x] + [shift_images(x, r, shift) for _ in range(copies)]
        bank = torch.cat([vision_token_features(model, pixel_values(v)).reshape(len(x), -1) for v in views])
    walls["centring"] = time.time() - t

    enc = Encoder(tokenizer)
    _check_template(enc, processor, y, config)
    # Held-out ID digits (eval split): tracked during training, never used for training or selection.
    from .data.world import load

    ev = load("digit_styles", "mnist")
    xe = np.stack([np.asarray(im.convert("L")) for im in ev["image"]])
    ye = np.asarray(ev["label"])
    probe = HeldOutProbe(enc, xe, ye, seed, n_mc=50 if smoke else 200, n_icl=10 if smoke else 200,
                         settings=((2, "reassigned", (8,)), (3, "reassigned", (8,))))
    for stage in ("align", "instruct"):
        t = time.time()
        train_lm_stage(model, stage, bank, y, enc, config["stages"][stage], config, seed, log, smoke, probe)
        walls[stage] = time.time() - t

    t = time.time()
    with torch.no_grad():
        fe = vision_token_features(model, pixel_values(xe))
        diag["vision_heldout_acc"] = round(float((head(fe).mean(1).argmax(-1).numpy() == ye).mean()), 4)
        diag["cross_class_cosine"] = round(cross_class_cosine(model, fe, ye), 4)
    # Diagnostics on the held-out ID eval split: recorded, never used for training or selection.
    final = HeldOutProbe(enc, xe, ye, derive_seed(seed, "final"), n_mc=100 if smoke else 500,
                         n_icl=20 if smoke else 300,
                         settings=[(k, m, (0, 1, 2, 4, 8)) for m in ("reassigned", "permuted") for k in (2, 3, 5)])
    diag.update(final(model))
    walls["diagnostics"] = time.time() - t

    record = {
        "seed": seed, "config": config, "config_hash": config_hash(config), "data_hash": dhash,
        "n_train_images": int(len(ids)), "id_data": config["id_data"], "code_version": code_version(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": threads, "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "total_wall_s": round(time.time() - t_all, 2), "losses": log, "diagnostics": diag,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _check_template(enc: Encoder, processor, labels, config) -> None:
    """Fail early if the training renderer and the saved chat template ever disagree."""
    sampler = TaskSampler(labels, 0, config)
    r = rng(0, "template-check")
    for task in TASKS:
        s = sampler.draw(task, r)
        ids, _, imgs = enc.encode(s)
        text = enc.render(s)
        full = enc.tok.encode(text, add_special_tokens=False)
        if full != ids:
            raise AssertionError(f"piecewise tokenisation differs from the whole string for task {task}")
        # the user turn, rendered by the processor's chat template, must be the same string
        user = [p for p in s.pieces]
        k = next(i for i, p in enumerate(user) if p[0] == "special" and p[1] == ROLE_TOKENS["assistant"])
        content, seg = [], ""
        for typ, val, _ in user[2:k - 1]:
            if typ == "image":
                if seg:
                    content.append({"type": "text", "text": seg}); seg = ""
                content.append({"type": "image"})
            else:
                seg += val
        if seg:
            content.append({"type": "text", "text": seg})
        rendered = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                 tokenize=False)
        if rendered != enc.render(Sample("x", user[: k + 1])):
            raise AssertionError(f"chat template renders task {task} differently:\n{rendered!r}")


def read_record(model_dir: str | Path) -> dict | None:
    """The training record of a checkpoint folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(model_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _differences(recorded: dict, wanted: dict, prefix: str = "") -> list[str]:
    """'key: recorded -> wanted' for every leaf where two configs differ."""
    out = []
    for k in sorted(set(recorded) | set(wanted)):
        a, b = recorded.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, requested {b!r}")
    return out


def train_or_load(model_dir: str | Path = DEFAULT_MODEL_DIR, config: dict | None = None, retrain: bool = False,
                  smoke: bool = False, replace_committed: bool = False) -> tuple[Path, dict]:
    """Reuse the checkpoint in ``model_dir`` when its record matches ``config`` (hash) and the ID data
    (hash); train into an empty ``model_dir``. Returns (model_dir, training record).

    A checkpoint is never replaced silently: a folder whose record differs from ``config`` (another
    seed, another config) or from the ID data is refused with a message naming the differences, unless
    ``retrain``; and the committed checkpoint (:data:`DEFAULT_MODEL_DIR`) is replaced only with
    ``replace_committed`` as well. Checked before any training starts.
    """
    config = load_config(smoke=smoke) if config is None else config
    model_dir = Path(model_dir)
    rec = read_record(model_dir)
    committed = model_dir.resolve() == DEFAULT_MODEL_DIR.resolve()
    how = ("train another model into a new folder (MODEL_DIR, e.g. data/models/embedded_mllm_seed1) with "
           "RETRAIN=True")
    if retrain and committed and not replace_committed:
        raise ParameterError(f"RETRAIN would replace the committed checkpoint {model_dir}; {how}, or set "
                             f"REPLACE_COMMITTED=True as well to replace it")
    if rec is None and model_dir.exists() and any(model_dir.iterdir()) and not retrain:
        raise ParameterError(f"{model_dir} holds files but no readable {RECORD}: not a checkpoint of this project; "
                             f"{how}, or point MODEL_DIR at an empty or new folder")
    if rec is not None and not retrain:
        diffs = _differences(rec.get("config", {}), config)
        if not diffs:
            x, y, ids = load_id_data(config)
            if rec.get("data_hash") != data_hash(x, y, ids):
                diffs = [f"ID training data: checkpoint {rec.get('data_hash')}, now {data_hash(x, y, ids)}"]
        if diffs or not (model_dir / "config.json").is_file():
            raise ParameterError(f"the checkpoint in {model_dir} was trained with other settings ("
                                 f"{'; '.join(diffs) or 'its weights are missing'}); {how}")
        return model_dir, rec
    return model_dir, train_embedded_model(config, model_dir, smoke=smoke)
