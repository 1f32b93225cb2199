"""MLLMs with their weights here: loaded with ``AutoProcessor`` / ``AutoModelForImageTextToText`` and
prompted through their own chat templates. :class:`HFModel` holds what every transformers family shares
(encoding with the context check, greedy generation, choice scoring that runs the prompt once and reuses
its key/value cache, answer states); a family (:mod:`mllm_ood.mllm.families`) overrides what differs: how
images reach the processor, the positions of a left-padded batch, how choices are scored, and where the
vision features are read.

Device and dtype are chosen automatically: CUDA with bfloat16 where present, else CPU float32."""

from __future__ import annotations

import numpy as np

from ..progress import tqdm
from ..seeding import derive_seed
from ..validation import ParameterError
from .base import MLLM, check_conversations
from ..formats.chat import as_messages
from .refs import model_fingerprint
from .registry import register


@register("generic")
class HFModel(MLLM):
    """A transformers MLLM of a type no family covers: generation, choice scoring and answer states; no
    vision features (where the vision tower sits differs per architecture)."""

    family = "generic"
    capabilities = frozenset({"generate", "score_choices", "answer_state"})

    def __init__(self, model, processor, name: str, device: str, dtype):
        self.name, self.device, self.dtype = name, device, dtype
        self.fingerprint = model_fingerprint(name)  # the model's one identity (see model_fingerprint)
        self._load = None
        self._set(model, processor)

    @classmethod
    def on_first_use(cls, load, name: str, device: str, dtype, model_type: str) -> "HFModel":
        """A model whose weights and processor ``load()`` returns when first needed: its name, fingerprint
        and model type need no weights, so reading cached results never imports transformers' models."""
        self = cls.__new__(cls)
        self.name, self.device, self.dtype = name, device, dtype
        self.fingerprint = model_fingerprint(name)
        self.model_type = model_type
        self._model = self._processor = self._tokenizer = None
        self._load = load
        return self

    def _set(self, model, processor) -> None:
        self._model, self._processor = model, processor
        self.model_type = model.config.model_type
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

    def missing(self, capability: str) -> str:
        return f"{capability} is not implemented for model type {self.model_type!r} ({self.name})"

    # ---------------------------------------------------------------- inputs
    # The system prompt of the family's model card (or of the conversation template its authors' code
    # uses), for ``SYSTEM_PROMPT: card``; None: the chat template's own default (which may add one).
    card_system_prompt: str | None = None
    # Whether the chat template renders a message's images where the text marks them (False: all of a
    # message's images first, as LLaVA-1.5's and LLaVA-NeXT's templates do; multi-image layouts then use turns).
    interleaves_images = True

    def messages(self, images: list, prompt) -> list[dict]:
        """The chat messages of one conversation (a prompt string: one user turn; or a Chat)."""
        return as_messages(prompt, len(images))

    def chat_text(self, images: list, prompt: str) -> str:
        return self.processor.apply_chat_template(self.messages(images, prompt), add_generation_prompt=True,
                                                  tokenize=False)

    def prompt_text_inner(self, images: list, prompt: str) -> str:
        return self.chat_text(images, prompt)

    def prompt_tokens(self, conversation) -> int:
        """The number of tokens the conversation takes as the model receives it (its chat template with the
        generation prompt, every image expanded to its tokens by the processor), before any compute."""
        images, prompt = check_conversations([conversation])[0]
        kw = {"text": [self.chat_text(images, prompt)], "return_tensors": "pt"}
        if images:
            kw["images"] = self.processor_images([(images, prompt)])
        return int(self.processor(**kw)["input_ids"].shape[1])

    @property
    def context_limit(self) -> int | None:
        """The language model's trained positions (None when its config does not say)."""
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    def processor_images(self, convs: list[tuple[list, str]]) -> list:
        """The conversations' images as the processor takes them (a flat list; Idefics3: one list each)."""
        return [im for ims, _ in convs for im in ims]

    def _inputs(self, convs: list[tuple[list, str]]):
        import torch

        kw = {"text": [self.chat_text(ims, p) for ims, p in convs], "return_tensors": "pt", "padding": True}
        if any(ims for ims, _ in convs):
            kw["images"] = self.processor_images(convs)
        enc = self.processor(**kw)
        limit = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        longest = int(enc["attention_mask"].sum(-1).max())
        if limit is not None and longest >= limit:
            # Past its trained positions a model answers garbage silently; say so instead.
            raise ParameterError(f"a prompt of {longest} tokens does not fit the model's context of {limit} positions "
                                 f"({self.name}); shorten the prompt")
        enc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in enc.items()}
        if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        return enc

    def positions(self, mask):
        """1-D RoPE positions for a left-padded batch (None where the model computes its own)."""
        pos = mask.long().cumsum(-1) - 1
        return pos.clamp(min=0)

    # ---------------------------------------------------------------- generation
    def generate_inner(self, convs, max_new_tokens, batch_size, progress, temperature=0.0, seed=0) -> list[str]:
        """Until each reply's end-of-sequence token or ``max_new_tokens``; sampled batches draw from a torch
        generator seeded by (``seed``, batch start), so a rerun gives the same replies."""
        import torch

        sample = {"do_sample": True, "temperature": temperature, "top_p": None, "top_k": None} if temperature > 0 \
            else {"do_sample": False}
        out: list[str] = []
        for i in tqdm(range(0, len(convs), batch_size), desc="generate", disable=not progress):
            enc = self._inputs(convs[i:i + batch_size])
            if temperature > 0:
                torch.manual_seed(derive_seed(seed, "generate", i))
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, **sample,
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

    def score_inner(self, convs, choices, batch_size, progress) -> np.ndarray:
        """The prompt is run once per conversation and its key/value cache repeated for the k choices
        (:meth:`score_batch`; a family whose positions do not carry over a repeated cache overrides it)."""
        import torch

        out = np.zeros((len(convs), len(choices[0])))
        for i in tqdm(range(0, len(convs), batch_size), desc="score", disable=not progress):
            chunk, cps = convs[i:i + batch_size], choices[i:i + batch_size]
            with torch.no_grad():
                out[i:i + len(chunk)] = self.score_batch(chunk, cps)
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

    def score_batch(self, chunk, cps) -> np.ndarray:
        """Choice log-likelihoods of one batch, the prompt's key/value cache reused for its k choices."""
        import torch

        k = len(cps[0])
        enc = self._inputs(chunk)
        mask = enc["attention_mask"]
        first = self.model(**enc, position_ids=self.positions(mask), use_cache=True)
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

    def score_full(self, chunk, cps) -> np.ndarray:
        """Choice log-likelihoods of one batch from prompt + choice as whole sequences (no cache reuse): what
        families whose positions do not carry over a repeated cache use, and the reference :meth:`score_batch`
        is tested against."""
        import torch

        k = len(cps[0])
        texts = [self.chat_text(ims, p) for ims, p in chunk]
        rep = [(ims, p) for ims, p in chunk for _ in range(k)]
        full = [t + c for t, cs in zip(texts, cps) for c in cs]
        kw = {"text": full, "return_tensors": "pt", "padding": True}
        if any(ims for ims, _ in rep):
            kw["images"] = self.processor_images(rep)
        enc = {kk: v.to(self.device) for kk, v in self.processor(**kw).items()}
        logits = self.model(**enc).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(2, enc["input_ids"][:, 1:, None]).squeeze(-1)
        lens = torch.tensor([len(self._choice_ids(c)) for cs in cps for c in cs], device=self.device)
        T = enc["input_ids"].shape[1]
        sel = torch.arange(T - 1, device=self.device)[None] >= (T - 1 - lens)[:, None]
        return (logp * sel).sum(-1).reshape(len(chunk), k).double().cpu().numpy()

    # ---------------------------------------------------------------- features
    def vision_inner(self, images, batch_size, progress) -> np.ndarray:
        import torch

        out = []
        for i in tqdm(range(0, len(images), batch_size), desc="vision", disable=not progress):
            with torch.no_grad():
                out.append(self.vision_batch(images[i:i + batch_size]).float().cpu().numpy())
        return np.concatenate(out)

    def vision_batch(self, ims):
        """Mean-pooled vision features of one batch of images (a torch tensor): the family's own."""
        raise NotImplementedError

    def answer_state_inner(self, convs, layer, batch_size, progress) -> np.ndarray:
        import torch

        out = []
        for i in tqdm(range(0, len(convs), batch_size), desc="answer state", disable=not progress):
            enc = self._inputs(convs[i:i + batch_size])
            with torch.no_grad():
                res = self.model(**enc, position_ids=self.positions(enc["attention_mask"]), output_hidden_states=True)
            hs = res.hidden_states
            if not -len(hs) <= layer < len(hs):
                raise ParameterError(f"layer {layer} out of range for {len(hs)} hidden-state layers")
            out.append(hs[layer][:, -1].float().cpu().numpy())
        return np.concatenate(out)
