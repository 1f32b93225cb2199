"""Training data of the embedded model: the ID images (pixels, shifts, data hash) and the instruction
samples (pieces -> token ids with a loss mask, batches)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ...data.digits import DIGIT_NAMES
from ...formats.episodes import episode_prompt, label_words
from ...formats.prompts import format_answer, zero_shot_prompt
from ...validation import ParameterError, check_choices
from ...formats.episodes import IMAGE_PLACEHOLDER
from .tokenizer import (BOS, CAPTION_QUESTIONS, DIGIT_QUESTIONS, EOS, IMAGE_TOKEN, MC_CONTEXTS, MC_QUESTIONS, PAD,
                        ROLE_TOKENS, SPECIAL_TOKENS, caption)

TASKS = ("mc", "caption", "question", "icl_fixed", "icl_reassigned", "icl_permuted")


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
    from ...data.world import DATASETS, load

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


def chat_sample(kind: str, images: list[int], user_text: str, reply: str | None, demo_words: list[str] | None = None,
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


def strip_eos(pieces) -> Sample:
    """A sample whose reply is a prefix (no trailing end-of-turn token)."""
    s = Sample("eval")
    s.pieces = [p for p in pieces if not (p[0] == "special" and p[1] == EOS and p[2])]
    return s


class TaskSampler:
    """Draws instruction samples of each task from an image bank (features indexed by bank id).

    Its few-shot episodes (tasks ``icl_*``) are training data, drawn apart from the evaluation builder
    (:func:`mllm_ood.paper_a.icl.studies.build_condition_episodes`) on purpose: any number of shots up to ``max_shots``,
    demonstration classes drawn with replacement (not balanced), images from the augmented bank, and a
    loss mask per label word. They share the layout and the label words (:mod:`mllm_ood.formats.episodes`);
    other draws here would train other weights."""

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
            return chat_sample(task, [self._img(r, c)], zero_shot_prompt(choices, question=q, context=ctx),
                         format_answer(name), answer=name)
        if task == "caption":
            q = CAPTION_QUESTIONS[int(r.integers(len(CAPTION_QUESTIONS)))]
            return chat_sample(task, [self._img(r, c)], q, caption(name))
        if task == "question":
            if r.random() < 0.5:
                q = DIGIT_QUESTIONS[int(r.integers(len(DIGIT_QUESTIONS)))]
                return chat_sample(task, [self._img(r, c)], q, name.capitalize() + ".")
            asked = c if r.random() < 0.5 else int(r.choice([o for o in range(10) if o != c]))
            reply = "Yes." if asked == c else "No."
            return chat_sample(task, [self._img(r, c)], f"Is this a {DIGIT_NAMES[asked]}? Answer yes or no.", reply)
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
            return chat_sample(task, demo_imgs + [q_img], episode_prompt(demo_words, choices), format_answer(words[qc]),
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
