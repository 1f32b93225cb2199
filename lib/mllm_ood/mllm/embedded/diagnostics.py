"""Diagnostics of the embedded model during and after training, on held-out ID digits (recorded, never
used for training or selection)."""

from __future__ import annotations

import numpy as np

from ...data.digits import DIGIT_NAMES
from ...formats.episodes import episode_prompt, label_words
from ...formats.prompts import zero_shot_prompt
from ...seeding import rng
from .samples import Encoder, chat_sample, strip_eos, collate, pixel_values
from .training import lm_forward, vision_token_features

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


class HeldOutProbe:
    """Fast teacher-forced diagnostics on held-out ID digits, used during and after training: zero-shot
    multiple-choice accuracy and in-context accuracy of n-way episodes (answer word compared at the
    last token of ``Answer Choice: [``, the argmax over the episode's choices).

    The episodes and queries are drawn once from ``seed`` and reused at every call, so a curve over
    training steps compares the same episodes. Call it only while the vision tower is frozen (its
    features of ``x`` are computed once). Modes: ``reassigned`` (made-up words per episode),
    ``permuted`` (the episode's true digit names, shuffled so that no class keeps its own name: only the
    demonstrations can override the prior).

    These episodes are drawn here, apart from the evaluation builder
    (:func:`mllm_ood.paper_a.icl.studies.build_condition_episodes`), on purpose: they are token-level samples over the
    training's image arrays (no PIL images, no model interface), cheap enough to score every few hundred
    steps, and their results are part of the checkpoint's training record, which other draws would no
    longer reproduce (the weights would not change: the probe only reads the model). They share the
    layout (:func:`~mllm_ood.formats.episodes.episode_prompt`) and the label words
    (:func:`~mllm_ood.formats.episodes.label_words`); unlike the builder, the query's class is drawn at random
    and each demonstration on its own, so an image can appear twice in one episode (never the query)."""

    def __init__(self, enc: "Encoder", x: np.ndarray, y: np.ndarray, seed: int, n_mc: int, n_icl: int,
                 settings=((2, "reassigned", (0, 2, 8)), (3, "reassigned", (8,)))):
        r = rng(seed, "quick-eval")
        self.enc, self.x, self.y, self._bank = enc, x, np.asarray(y), None
        by_class = [np.flatnonzero(self.y == c) for c in range(10)]
        idx = r.choice(len(x), min(n_mc, len(x)), replace=False)
        mc = [strip_eos(chat_sample("mc", [int(i)], zero_shot_prompt(DIGIT_NAMES), "Answer Choice: [").pieces) for i in idx]
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
                    s = chat_sample("icl", demos + [q], episode_prompt(demo_words, choices), "Answer Choice: [", demo_words)
                    ss.append(strip_eos(s.pieces)); chs.append(choices); ans.append(words[qc])
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


def yes_no_table(model, images, labels, *, seed: int = 0, max_new_tokens: int = 4) -> "pd.DataFrame":
    """How the model answers "Is this a <digit>? Answer yes or no." about held-out digits: each image is asked
    once about its own digit and once about another digit drawn from ``seed`` (its training questions were
    half of each). Returns one row per question asked (``asked`` 'its own digit' / 'another digit'), with the
    share of replies starting 'Yes', 'No' or neither, and the share answered correctly (chance 50 %)."""
    import pandas as pd

    g = rng(seed, "yes-no")
    labels = [int(y) for y in labels]
    others = [int(g.choice([o for o in range(10) if o != y])) for y in labels]
    rows = []
    for asked, digits, truth in (("its own digit", labels, "Yes"), ("another digit", others, "No")):
        replies = model.generate([([im], f"Is this a {DIGIT_NAMES[d]}? Answer yes or no.")
                                  for im, d in zip(images, digits)], max_new_tokens=max_new_tokens)
        first = pd.Series([next(iter(r.strip().split(".")[0].split()), "") for r in replies])  # "" if no word
        rows.append({"asked about": asked, "questions": len(replies), "Yes": (first == "Yes").mean(),
                     "No": (first == "No").mean(), "neither": (~first.isin(["Yes", "No"])).mean(),
                     "correct": (first == truth).mean()})
    return pd.DataFrame(rows)
