# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: mllm-ood
#     language: python
#     name: mllm-ood
# ---

# %% [markdown]
# # 00 — The embedded MLLM: a multimodal LLM you can train on a laptop
#
# **All numbers in this notebook come from the project's own small model on the project's embedded
# data world, not from the papers' models or datasets.** They show that the subject of the later
# experiments behaves like an MLLM: it follows paper A's prompt, it degrades out of distribution,
# and it learns in context.
#
# ## What is a multimodal LLM?
# A *multimodal large language model* (MLLM) such as LLaVA answers questions about images. It has
# three parts:
#
# 1. a **vision tower** (a Vision Transformer, as in CLIP) that turns an image into feature vectors;
# 2. a **projector** that maps those features into the word-embedding space of the language model,
#    so each image becomes a few "image tokens";
# 3. a **language model** (here a Llama decoder) that reads the text tokens and image tokens in order
#    and writes the reply one token at a time.
#
# A *tokenizer* splits text into tokens and a *chat template* lays out a conversation (user turn with
# images, assistant reply) as one token sequence. Our model is a real `LlavaForConditionalGeneration`
# in Hugging Face format: it loads with the same `AutoProcessor` / `AutoModelForImageTextToText`
# calls as `llava-hf/llava-1.5-7b-hf`, just about a thousand times smaller.
#
# ## How it is trained (in stages, as LLaVA is)
# Only **in-distribution (ID)** data is ever used: 4,000 upright grey MNIST digits (declared in
# `params/embedded/model.yaml`). Rotated, coloured, corrupted, printed, textured digits and molecules
# stay out of training, so they are genuinely out of distribution (OOD).
#
# 1. **Vision pretraining** — the vision tower learns to recognise digits (supervised, small shifts).
# 2. **Centring** — the mean ID feature is subtracted inside the frozen tower (folded into its last
#    bias). Measured in throwaway prototypes: in-context learning only forms when image tokens share
#    no common direction.
# 3. **Projector alignment** — a bias-free linear projector and the decoder learn to talk about
#    images (captions) and to read few-shot episodes.
# 4. **Instruction tuning** — the full mix: paper A's multiple-choice prompt
#    (`Answer Choice: [seven]`), captions, short questions, and few-shot episodes whose label words
#    are either the true names or nonsense words reassigned in every episode.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mllm_ood.data.digits import DIGIT_NAMES
from mllm_ood.data.world import DATASETS, load, sample_per_class
from mllm_ood.embedded_model import DEFAULT_MODEL_DIR, caption, load_config, train_or_load
from mllm_ood.episodes import build_episodes
from mllm_ood.models import load_model
from mllm_ood.plotting import save_figure
from mllm_ood.prompts import format_answer, parse_answer, zero_shot_prompt

# %% tags=["parameters"]
SMOKE: bool = False  # shrink everything to seconds (micro model in a temp folder; the checkpoint is untouched)
SEED: int = 0  # training and sampling seed
RETRAIN: bool = False  # retrain even if the checkpoint's record matches the config
MODEL_DIR: str = "data/models/embedded_mllm"  # checkpoint folder (relative to the project root)
CONFIG_PATH: str = "params/embedded/model.yaml"  # versioned training config
N_ID_PER_CLASS: int = 100  # held-out ID images per class (digit_styles/mnist has 100 per class: all of them)
N_OOD_PER_CLASS: int = 20  # OOD images per domain x class (paper A: the first N)
N_EPISODES: int = 300  # ICL episodes per shot count
N_GENERATIONS: int = 4  # example generations shown

# %%
ROOT = DEFAULT_MODEL_DIR.parents[2]
config = load_config(ROOT / CONFIG_PATH, smoke=SMOKE)
config["seed"] = SEED  # the seed is part of the config: another seed is another checkpoint
model_dir = Path(tempfile.mkdtemp(prefix="embedded-smoke-")) / "model" if SMOKE else ROOT / MODEL_DIR
n_id = 5 if SMOKE else N_ID_PER_CLASS  # 8-shot episodes need 4 demonstrations + the query per class
n_ood = 1 if SMOKE else N_OOD_PER_CLASS
n_episodes = 6 if SMOKE else N_EPISODES
shots_list = [0, 1, 2, 4, 8]
print(f"model folder: {model_dir}  (smoke={SMOKE})")

# %% [markdown]
# ## Train (or reuse) the model
# The checkpoint folder holds the weights, the processor (tokenizer + chat template + image processor)
# and `training_record.json` with the seed, the config and its hash, a hash of the training images,
# the code version, every loss, and the wall time of each stage. It is reused when the config and
# data hashes match, and retrained otherwise (or with `RETRAIN`).

# %%
model_dir, record = train_or_load(model_dir, config, retrain=RETRAIN, smoke=SMOKE)
walls = pd.Series(record["wall_s"], name="seconds")
print(f"seed {record['seed']}, config {record['config_hash']}, data {record['data_hash']}, "
      f"code {record['code_version']}, {record['n_parameters']:,} parameters, {record['threads']} thread(s)")
display(walls.to_frame().T)
display(pd.Series(record["diagnostics"]["centring"] | {"cross_class_cosine": record["diagnostics"]["cross_class_cosine"],
                                                       "vision_heldout_acc": record["diagnostics"]["vision_heldout_acc"]}).to_frame("diagnostic"))

# %% [markdown]
# `cross_class_cosine` is the mean cosine similarity between projected image tokens of different
# classes; near 0 means the image tokens share no common direction (the geometry under which
# in-context learning formed in the prototypes).
#
# ## Training curves

# %%
def smooth(v, k=25):
    v = np.asarray(v, float)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")


losses = record["losses"]
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
rows = []
for ax, stage in zip(axes, ["vision", "align", "instruct"]):
    series = {"all tokens": losses[f"{stage}_loss"]} | losses.get(f"{stage}_task_loss", {})
    for name, v in series.items():
        s = smooth(v)
        ax.plot(np.arange(len(s)), s, label=name, lw=1.2 if name != "all tokens" else 2)
        rows += [{"stage": stage, "series": name, "step": i, "loss_nats": float(x)} for i, x in enumerate(s)]
    ax.set_title(f"stage: {stage}")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (nats/token, smoothed)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
fig.suptitle("Embedded MLLM training curves (embedded model, ID data only)")
fig.tight_layout()
save_figure(fig, "00_training_curves", pd.DataFrame(rows))
plt.show()

# %% [markdown]
# ## Load it as a hub model is loaded, and evaluate on held-out ID digits
# `load_model` uses `AutoProcessor` / `AutoModelForImageTextToText` and the model's chat template:
# the same calls serve hub MLLMs. We ask paper A's question with the full choice list, generate
# greedily, and parse the reply with paper A's regex (no match counts as wrong).

# %%
model = load_model(model_dir)
print(model)
id_eval = sample_per_class(load("digit_styles", "mnist"), n_id)
id_labels = np.asarray(id_eval["label"])
prompt = zero_shot_prompt(DIGIT_NAMES)
print(repr(model.prompt_text(([id_eval[0]["image"]], prompt))))
replies = model.generate([([im], prompt) for im in id_eval["image"]], max_new_tokens=12, batch_size=32)
parsed = [parse_answer(r, DIGIT_NAMES) for r in replies]
id_acc = float(np.mean([p == y for p, y in zip(parsed, id_labels)]))
parse_rate = float(np.mean([p is not None for p in parsed]))
scores = model.score_choices([([im], prompt) for im in id_eval["image"]], [format_answer(c) for c in DIGIT_NAMES],
                             batch_size=32)
score_acc = float(np.mean(scores.argmax(1) == id_labels))
print(f"ID held-out accuracy (generate + paper A parser): {id_acc:.3f}   parse rate: {parse_rate:.3f}   "
      f"(log-likelihood scoring of the choices: {score_acc:.3f}; n = {len(id_labels)})")

# %% [markdown]
# ## A few generations

# %%
questions = [prompt, "Describe the image.", "Which digit is shown?", "Is this a seven? Answer yes or no."]
# One image of each of the first N_GENERATIONS digits (the eval set is ordered by class).
first_of = {int(y): i for i, y in reversed(list(enumerate(id_eval["label"])))}
sample = id_eval.select([first_of[c] for c in sorted(first_of)[:N_GENERATIONS if not SMOKE else 2]])
rows = []
for im, y in zip(sample["image"], sample["label"]):
    out = model.generate([([im], q) for q in questions], max_new_tokens=16)
    rows += [{"true digit": DIGIT_NAMES[y], "question": q[:40], "reply": r} for q, r in zip(questions, out)]
display(pd.DataFrame(rows))

# %% [markdown]
# ## A first look at OOD accuracy
# Paper A's protocol on every shifted domain of the embedded world: the first `N_OOD_PER_CLASS`
# images of every domain x class, the full choice list, generate + parse. The ID reference domains
# (`mnist`, `0`, `clean`) are eval-split MNIST digits, like the ID held-out set above.

# %%
ood_sets = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size"]
rows = []
for name in ood_sets:
    info = DATASETS[name]
    ds = sample_per_class(load(name), n_ood)
    names = list(info.class_names)
    q = zero_shot_prompt(names)
    reps = model.generate([([im], q) for im in ds["image"]], max_new_tokens=12, batch_size=32)
    pred = np.array([parse_answer(r, names) if parse_answer(r, names) is not None else -1 for r in reps])
    df = pd.DataFrame({"domain": ds["domain"], "correct": pred == np.asarray(ds["label"]), "parsed": pred >= 0})
    for dom, g in df.groupby("domain", sort=False):
        rows.append({"dataset": name, "domain": dom, "n": len(g), "accuracy": g.correct.mean(),
                     "parse_rate": g.parsed.mean(), "chance": 1 / len(names),
                     "id_reference": dom == info.id_domain})
ood = pd.DataFrame(rows)
display(ood.round(3))

fig, ax = plt.subplots(figsize=(14, 4))
labels = [f"{r.dataset}\n{r.domain}" for r in ood.itertuples()]
colors = ["tab:green" if r.id_reference else "tab:orange" for r in ood.itertuples()]
ax.bar(range(len(ood)), ood.accuracy, color=colors)
ax.plot(range(len(ood)), ood.chance, "k_", markersize=12, label="chance")
ax.axhline(id_acc, color="tab:green", ls="--", lw=1, label=f"ID held-out ({id_acc:.2f})")
ax.set_xticks(range(len(ood)), labels, rotation=90, fontsize=7)
ax.set_ylabel("accuracy (fraction correct)")
ax.set_xlabel("dataset / domain (green: ID reference)")
ax.set_title("Embedded MLLM, paper A's zero-shot prompt: accuracy per domain (embedded data)")
ax.legend()
save_figure(fig, "00_ood_accuracy", ood)
plt.show()

# %% [markdown]
# ## In-context learning
# Episodes of 2 classes drawn from held-out ID digits; demonstrations are class-balanced and never
# include the query. With **reassigned** label words (a fresh nonsense word per class per episode)
# no zero-shot prior can answer: at 0 shots the model can only guess (chance 0.5), so accuracy above
# chance with demonstrations is in-context learning. With **fixed** words (the true digit names) the
# model can also answer from its weights. Accuracy: the episode's choice with the highest
# log-likelihood of `Answer Choice: [word]`.

# %%
rows = []
for mode in ["reassigned", "fixed"]:
    for shots in shots_list:
        eps = build_episodes(id_eval, n_episodes, shots, mode=mode, seed=SEED)
        s = model.score_choices([e.conversation for e in eps], [[format_answer(c) for c in e.choices] for e in eps],
                                batch_size=32)
        acc = float(np.mean(s.argmax(1) == np.array([e.answer_index for e in eps])))
        rows.append({"mode": mode, "shots": shots, "accuracy": acc, "n_episodes": len(eps), "chance": 0.5})
icl = pd.DataFrame(rows)
display(icl.pivot(index="mode", columns="shots", values="accuracy").round(3))

fig, ax = plt.subplots(figsize=(6, 4))
for mode, g in icl.groupby("mode"):
    ax.plot(g.shots, g.accuracy, "o-", label=f"{mode} label words")
ax.axhline(0.5, color="k", ls=":", label="chance")
ax.set_xticks(shots_list)
ax.set_xlabel("demonstrations in the prompt (shots)")
ax.set_ylabel("accuracy (fraction correct)")
ax.set_ylim(0, 1.02)
ax.set_title("Embedded MLLM: ICL on 2-way ID episodes")
ax.legend()
save_figure(fig, "00_icl_shots_curve", icl)
plt.show()

# %% [markdown]
# ## Closing note
# The numbers above were measured in this run, on the embedded model and the embedded data (not the
# papers'). Targets from issue #3: ID held-out accuracy with paper A's prompt and parser at least
# 90 % with at least 95 % parseable replies; a clear drop on shifted domains; 8-shot accuracy on
# reassigned-label episodes clearly above chance.

# %%
summary = {
    "ID held-out accuracy (generate + parse)": round(id_acc, 3),
    "ID parse rate": round(parse_rate, 3),
    "ID accuracy (choice scoring)": round(score_acc, 3),
    "mean OOD accuracy (non-reference digit domains)": round(
        float(ood[(~ood.id_reference) & (ood.dataset != "molecules_size")].accuracy.mean()), 3),
    "ICL reassigned 0-shot": float(icl.query("mode == 'reassigned' and shots == 0").accuracy.iloc[0]),
    "ICL reassigned 8-shot": float(icl.query("mode == 'reassigned' and shots == 8").accuracy.iloc[0]),
    "training wall time (s)": record["total_wall_s"],
}
display(pd.Series(summary).to_frame("embedded model, embedded data"))
