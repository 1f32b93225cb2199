# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
# calls as `llava-hf/llava-1.5-7b-hf` (7 billion parameters), only a few thousand times smaller (the
# ratio is computed below from the checkpoint).
#
# ## How it is trained (in stages, as LLaVA is)
# Only **in-distribution (ID)** data is ever used: 4,000 upright grey MNIST digits (declared in
# `params/embedded/model.yaml`). Rotated, coloured, corrupted, printed, textured digits and molecules
# stay out of training, so they are genuinely out of distribution (OOD).
#
# 1. **Vision pretraining** — the vision tower learns to recognise digits (supervised, small shifts).
# 2. **Centring** — the mean ID feature is subtracted inside the frozen tower (folded into its last
#    bias), so image tokens share no common direction.
# 3. **Alignment on in-context episodes** — the bias-free linear projector and the decoder learn from
#    few-shot episodes only: several digit images, each followed by a made-up label word (`dax`, `wug`)
#    that is drawn afresh in every episode, then the query image. Nothing but the demonstrations says
#    which word means what, so the only way to lower the loss is to learn *in context*.
# 4. **Instruction tuning** — the full mix: paper A's multiple-choice prompt (`Answer Choice: [seven]`),
#    captions, short questions, and few-shot episodes with made-up words, with the true digit names,
#    and with the true names *permuted* (the threes called `seven`), so that demonstrations learn to
#    override what the model already knows.
#
# Two details decide whether in-context learning appears at all in a model this small (both measured
# while building it; the training config records the numbers):
# - **Where the instructions go.** Each demonstration's label word directly follows its image, and the
#   instructions with the choice list come *after* the demonstrations, just before the query image.
#   With the same text *before* the demonstrations, the model stayed at chance.
# - **The loss at label words.** At every label position (a demonstration's word, the answer word) the
#   loss is a softmax over the *label vocabulary* (the digit names and the made-up words) plus a small
#   term for "the next token is some label word". With the ordinary softmax over all 640 tokens the
#   tiny decoder stayed at chance on 8-shot episodes; with the label-vocabulary loss it learned in
#   context within a few hundred steps.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mllm_ood.data.digits import DIGIT_NAMES
from mllm_ood.data.world import DATASETS, load, sample_per_class
from mllm_ood.mllm.embedded import DEFAULT_MODEL_DIR, check_model_dir, load_config, train_or_load, yes_no_table
from mllm_ood.mllm import load_model
from mllm_ood.paper_a import zero_shot
from mllm_ood.paper_a.evaluation import accuracy_table
from mllm_ood.paper_a.icl.curves import episode_curves
from mllm_ood.paper_a.icl.tasks import HELD_OUT_DIGITS, IclData
from mllm_ood.formats.prompts import zero_shot_prompt
from mllm_ood.plotting import decorate, save_figure, smooth, yerr

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke; sizes: the YAML's smoke: values): train a micro model in a temp folder, checkpoint untouched
SEED: int = 0  # training and sampling seed
RETRAIN: bool = False  # train even if MODEL_DIR holds a checkpoint (another seed/config is refused without it)
REPLACE_COMMITTED: bool = False  # with RETRAIN: allow replacing the committed checkpoint data/models/embedded_mllm
MODEL_DIR: str = "data/models/embedded_mllm"  # checkpoint folder (relative to the project root)
CONFIG_PATH: str = "params/embedded/model.yaml"  # versioned training config
N_ID_PER_CLASS: int = 100  # held-out ID images per class for the zero-shot check (digit_styles/mnist has 100: all)
N_OOD_PER_CLASS: int = 20  # OOD images per domain x class (paper A: the first N)
N_ICL_QUERIES_PER_CLASS: int = 20  # ICL queries per digit class, the same at every point (times 10: episodes per point)
N_WAYS: list = [2, 3, 5]  # classes per ICL episode
N_GENERATIONS: int = 4  # example generations shown
N_BOOT: int = 1000  # bootstrap resamples per interval

# %%
# Every parameter checked by name before anything is trained or loaded (one ParameterError naming it).
from mllm_ood.validation import boolean, check_parameters, integer, listing, naming, require, seed, text

check_parameters(globals(), SMOKE=boolean(), SEED=seed(), RETRAIN=boolean(), REPLACE_COMMITTED=boolean(),
                 MODEL_DIR=text(), CONFIG_PATH=text(), N_ID_PER_CLASS=integer(1, 100), N_OOD_PER_CLASS=integer(1, 100),
                 N_ICL_QUERIES_PER_CLASS=integer(1, 99), N_WAYS=listing(integer(2, 10), increasing=True),
                 N_GENERATIONS=integer(0, 50), N_BOOT=integer(1, 100_000))
require((DEFAULT_MODEL_DIR.parents[2] / CONFIG_PATH).is_file(), "CONFIG_PATH", CONFIG_PATH,
        "no such file (relative to the project root)")
if not SMOKE:  # the checkpoint refusals (another seed or config; a folder RETRAIN may not replace), before training
    with naming("MODEL_DIR", "RETRAIN", "REPLACE_COMMITTED"):
        check_model_dir(DEFAULT_MODEL_DIR.parents[2] / MODEL_DIR,
                        {**load_config(DEFAULT_MODEL_DIR.parents[2] / CONFIG_PATH), "seed": SEED},
                        RETRAIN, REPLACE_COMMITTED)

# %%
ROOT = DEFAULT_MODEL_DIR.parents[2]
config = load_config(ROOT / CONFIG_PATH, smoke=SMOKE)
config["seed"] = SEED  # the seed is part of the config: another seed is another checkpoint
model_dir = Path(tempfile.mkdtemp(prefix="embedded-smoke-")) / "model" if SMOKE else ROOT / MODEL_DIR
n_episodes = N_ICL_QUERIES_PER_CLASS * len(HELD_OUT_DIGITS.classes)  # per point of the in-context curves
shots_list = [0, 1, 2, 4, 8]
print(f"model folder: {model_dir}  (smoke={SMOKE})")

# %% [markdown]
# ## Train (or reuse) the model
# The checkpoint folder holds the weights, the processor (tokenizer + chat template + image processor)
# and `training_record.json` with the seed, the config and its hash, a hash of the training images,
# the code version, every loss, and the wall time of each stage. It is reused when the config and
# data match its record. Another seed or config is refused with a message naming the differences: to
# train another model, set `RETRAIN=True` and a new `MODEL_DIR`; replacing the committed checkpoint
# also takes `REPLACE_COMMITTED=True`.

# %%
model_dir, record = train_or_load(model_dir, config, retrain=RETRAIN, smoke=SMOKE, replace_committed=REPLACE_COMMITTED)
walls = pd.Series(record["wall_s"], name="seconds")
print(f"seed {record['seed']}, config {record['config_hash']}, data {record['data_hash']}, "
      f"code {record['code_version']}, {record['n_parameters']:,} parameters, {record['threads']} thread(s)")
print(f"LLaVA-1.5-7B has about 7.06e9 parameters: {7.06e9 / record['n_parameters']:,.0f} times this model's "
      f"{record['n_parameters']:,}")
display(walls.to_frame().T)
display(pd.Series(record["diagnostics"]["centring"] | {"cross_class_cosine": record["diagnostics"]["cross_class_cosine"],
                                                       "vision_heldout_acc": record["diagnostics"]["vision_heldout_acc"]}).to_frame("diagnostic"))

# %% [markdown]
# `cross_class_cosine` is the mean cosine similarity between projected image tokens of different
# classes; near 0 means the image tokens share no common direction (the geometry under which
# in-context learning formed).
#
# ## Training curves
# Left to right: the vision tower's supervised loss, then the two language-model stages (all tokens,
# and per task). Log scale; smoothed over 25 steps. Ordinary tokens carry the usual cross-entropy over
# the whole vocabulary; label words carry the label-vocabulary loss described above.

# %%
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
    ax.set_ylabel("training loss (nats/token, smoothed)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
fig.suptitle("Embedded MLLM training curves (embedded model, ID data only)")
fig.tight_layout()
save_figure(fig, "00_training_curves", pd.DataFrame(rows))
plt.show()

# %% [markdown]
# ## In-context learning during training
# Every `eval_every` steps the training loop measures, on held-out ID digits (never trained on), the
# 8-shot accuracy of 2-way and 3-way episodes with made-up words (the same 200 episodes each time,
# teacher-forced, the choice with the highest score), and the zero-shot multiple-choice accuracy. The
# dotted line marks where the alignment stage (episodes only) hands over to instruction tuning.

# %%
tracked = pd.concat([pd.DataFrame(losses[f"{st}_heldout"]).assign(stage=st) for st in ("align", "instruct")])
offset = config["stages"]["align"]["steps"]
tracked["global_step"] = tracked["step"] + np.where(tracked["stage"] == "instruct", offset, 0)
fig, ax = plt.subplots(figsize=(8, 4))
for col, label in [("icl_reassigned_2way_8shot_acc", "2-way, 8 shots (chance 50 %)"),
                   ("icl_reassigned_3way_8shot_acc", "3-way, 8 shots (chance 33 %)"),
                   ("zero_shot_mc_acc", "zero-shot 10-way multiple choice (chance 10 %)")]:
    ax.plot(tracked["global_step"], tracked[col] * 100, "o-", ms=3, label=label)
ax.axvline(offset, color="grey", ls=":", label="align -> instruct")
decorate(ax, title="Embedded MLLM: held-out ID accuracy during training (made-up label words)",
         xlabel="training step (language-model stages)", ylabel="held-out accuracy (%)", ylim=(0, 102), legend=8)
save_figure(fig, "00_icl_during_training", tracked)
plt.show()

# %% [markdown]
# ### Alignment restarts
# Whether in-context learning forms during the alignment stage depends on the random start of the
# projector and decoder: with everything else fixed, one start reaches high held-out accuracy and
# another stalls. So the stage trains `candidates` independent starts and keeps the one with the
# lowest **training** loss over its last `select_window` steps. The held-out columns below are recorded
# for every start so that you can judge the choice, and were not used to make it.

# %%
cands = pd.DataFrame([{"candidate": c["candidate"], "seed": c["seed"],
                       "training loss, last steps (nats/token)": c["selection_loss"],
                       **{f"held-out {k}-way 8-shot": c["heldout"][-1][f"icl_reassigned_{k}way_8shot_acc"] for k in (2, 3)},
                       "kept": c["chosen"]} for c in losses["align_candidates"]])
display(cands)
fig, ax = plt.subplots(figsize=(7, 3.5))
for c in losses["align_candidates"]:
    h = pd.DataFrame(c["heldout"])
    ax.plot(h["step"], h["icl_reassigned_2way_8shot_acc"] * 100, "o-", ms=3, lw=2.5 if c["chosen"] else 1,
            label=f"start {c['candidate']} (training loss {c['selection_loss']:.3f})" + (", kept" if c["chosen"] else ""))
ax.axhline(50, color="grey", ls=":", lw=1)
ax.set_xlabel("alignment step")
ax.set_ylabel("held-out 2-way 8-shot accuracy (%)")
ax.set_ylim(0, 102)
ax.set_title("Embedded MLLM: alignment starts (made-up words; dotted = chance)")
ax.legend(fontsize=7)
save_figure(fig, "00_align_candidates", cands)
plt.show()

# %% [markdown]
# ## Load it as a hub model is loaded, and evaluate on held-out ID digits
# `load_model` uses `AutoProcessor` / `AutoModelForImageTextToText` and the model's chat template:
# the same calls serve hub MLLMs. We ask paper A's question with the full choice list, generate
# greedily, and parse the reply with paper A's regex (no match counts as wrong). Intervals are 95 %
# bootstrap intervals over images.

# %%
model = load_model(model_dir)
fingerprint = model.fingerprint  # keys every cached result of this model
print(model, "|", fingerprint)
id_eval = sample_per_class(load("digit_styles", "mnist"), N_ID_PER_CLASS)
prompt = zero_shot_prompt(DIGIT_NAMES)
print(repr(model.prompt_text(([id_eval[0]["image"]], prompt))))
id_results = zero_shot.evaluate(model, ["digit_styles"], n_per_class=N_ID_PER_CLASS, max_new_tokens=12,
                                batch_size=32, domains={"digit_styles": ["mnist"]})
id_results["scoring"] = id_results["mode"].map({"generate": "generate + parse", "loglik": "choice log-likelihood"})
id_table = accuracy_table(id_results, ["scoring"], n_boot=N_BOOT, seed=SEED)
id_acc = float(id_table.set_index("scoring").loc["generate + parse", "accuracy"])
parse_rate = float(id_results.loc[id_results["mode"] == "generate", "parsed"].mean())
display(id_table.round(3))

# %% [markdown]
# ## A few generations

# %%
questions = [prompt, "Describe the image.", "Which digit is shown?", "Is this a seven? Answer yes or no."]
# One image of each of the first N_GENERATIONS digits (the eval set is ordered by class).
first_of = {int(y): i for i, y in reversed(list(enumerate(id_eval["label"])))}
sample = id_eval.select([first_of[c] for c in sorted(first_of)[:N_GENERATIONS]])
rows = []
for im, y in zip(sample["image"], sample["label"]):
    out = model.generate([([im], q) for q in questions], max_new_tokens=16)
    rows += [{"true digit": DIGIT_NAMES[y], "question": q, "reply": r} for q, r in zip(questions, out)]
with pd.option_context("display.max_colwidth", None):
    display(pd.DataFrame(rows))

# %% [markdown]
# **"Yes." to every yes/no question?** The replies above answer "Is this a seven?" with "Yes." whatever the
# digit. Measured on the held-out digits below (each asked once about its own digit and once about another;
# the model's training questions were half of each): if it answers "Yes" about other digits as often as
# about its own, it has learned the *form* of a yes/no reply, not the comparison between the image and the
# digit named in the question — a binding this small model never needed elsewhere in its training.

# %%
yes_no = yes_no_table(model, id_eval["image"], id_eval["label"], seed=SEED)
display(yes_no.round(3))
own, other = yes_no.set_index("asked about")["Yes"]
display(Markdown(f"It answers **Yes** to {own:.0%} of the questions about the image's own digit and to {other:.0%} "
                 f"about another digit ({len(id_eval)} held-out digits); yes/no accuracy "
                 f"{yes_no['correct'].mean():.0%} against 50 % chance."))

# %% [markdown]
# ## A first look at OOD accuracy
# Paper A's protocol on every shifted domain of the embedded world: the first `N_OOD_PER_CLASS`
# images of every domain x class, the full choice list, generate + parse. The ID reference domains
# (`mnist`, `0`, `clean`) are eval-split MNIST digits, like the ID held-out set above. Bars carry 95 %
# bootstrap intervals over images; a bar at 0 is labelled with its parse-failure rate, because a reply
# the parser cannot match (for molecules, a digit name instead of a solubility class) is a *format
# failure*, not a wrong judgement of the image. Notebook 01 repeats this with choice scoring, which
# cannot fail on format. Both evaluations here are `zero_shot.evaluate` (cached), as in notebook 01.

# %%
ood_sets = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size"]
ood_res = zero_shot.evaluate(model, ood_sets, modes=["generate"], n_per_class=N_OOD_PER_CLASS, max_new_tokens=12,
                             batch_size=32)
ood_res["chance"] = ood_res["dataset"].map(lambda n: zero_shot.chance_level(DATASETS[n]))
ood_res["id_reference"] = ood_res["domain"] == ood_res["dataset"].map(lambda n: DATASETS[n].id_domain)
ood = accuracy_table(ood_res, ["dataset", "domain", "chance", "id_reference"], n_boot=N_BOOT, seed=SEED)
display(ood.round(3))

fig, ax = plt.subplots(figsize=(14, 4.5))
x = np.arange(len(ood))
colors = ["tab:green" if r.id_reference else "tab:orange" for r in ood.itertuples()]
ax.bar(x, ood.accuracy * 100, color=colors,
       yerr=yerr(ood), capsize=2)
ax.plot(x, ood.chance * 100, "k_", markersize=12, label="chance (1 / classes)")
for xi, r in zip(x, ood.itertuples()):
    if r.accuracy == 0:
        ax.text(xi, 2, f"{r.parse_failure_rate:.0%} unparsed", rotation=90, fontsize=7, ha="center", va="bottom")
ax.axhline(id_acc * 100, color="tab:green", ls="--", lw=1, label=f"ID held-out ({id_acc:.0%})")
ax.set_xticks(x, [f"{r.dataset}\n{r.domain}" for r in ood.itertuples()], rotation=90, fontsize=7)
decorate(ax, title="Embedded MLLM, paper A's zero-shot prompt (generate + parse): accuracy per domain (embedded data)",
         xlabel="dataset / domain (green: ID reference)", ylabel="accuracy (%), 95 % interval", ylim=(0, 105), legend=8)
save_figure(fig, "00_ood_accuracy", ood)
plt.show()

# %% [markdown]
# ## In-context learning on held-out ID digits
# The held-out ID digits (all 100 per class) give `N_ICL_QUERIES_PER_CLASS` queries per digit class,
# the same queries at every point. Each episode holds the query's class and `n - 1` other classes drawn
# afresh, and 0 to 8 class-balanced demonstrations of them (never the query). The episodes come from
# the same builder as notebook 03's (`icl.build_condition_episodes`, study `drawn_classes`), and each
# point is cached as one of its conditions. Three kinds of label words:
# - **reassigned**: a made-up word per class, new in every episode. Nothing but the demonstrations says
#   which word means what: 0 shots is chance (1/n), and anything above it is in-context learning.
# - **permuted**: the episode's true digit names, shuffled so that no class keeps its own. At 0 shots
#   the model's prior points at the wrong word (accuracy below chance); the demonstrations must
#   override what the model knows.
# - **fixed**: the true names (paper A's setting); the model can answer from its prior at 0 shots.
#
# Accuracy is the choice with the highest log-likelihood of `Answer Choice: [word]`; for reassigned
# words every episode is also answered by greedy generation + paper A's parser, and we report how often
# the two agree. Intervals: 95 % bootstrap over episodes.

# %%
curves = episode_curves(model, IclData(), HELD_OUT_DIGITS, N_WAYS, ["reassigned", "permuted", "fixed"], shots_list,
                        N_ICL_QUERIES_PER_CLASS, seed=SEED)
icl = accuracy_table(curves, ["mode", "n_way", "shots"], n_boot=N_BOOT, seed=SEED)
icl["chance"] = 1 / icl["n_way"]
display(icl.pivot_table(index=["mode", "n_way"], columns="shots", values="accuracy").round(3))

fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
for ax, mode in zip(axes, ["reassigned", "permuted", "fixed"]):
    for j, (n, g) in enumerate(icl[icl["mode"] == mode].groupby("n_way")):
        ax.errorbar(g["shots"], g["accuracy"] * 100, yerr=yerr(g), marker="o", capsize=3, color=f"C{j}", label=f"{n}-way")
        ax.axhline(100 / n, color=f"C{j}", ls=":", lw=1)
    ax.set_xticks(shots_list)
    ax.set_xlabel("demonstrations in the prompt (shots)")
    ax.set_title(f"label words: {mode}")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8, title="dotted: chance", title_fontsize=7)
axes[0].set_ylabel("accuracy (%), 95 % interval")
fig.suptitle(f"Embedded MLLM: in-context learning on held-out ID digits ({n_episodes} episodes per point; "
             f"choice scoring); model {fingerprint}")
fig.tight_layout()
save_figure(fig, "00_icl_shots_curve", icl)
plt.show()

# %% [markdown]
# **How to read the three panels.** At 0 shots every panel asks the plain zero-shot prompt with the
# episode's choice list (paper A's zero-shot baseline). *Reassigned*: 0 shots sits at chance by
# construction (the made-up words mean nothing yet); a curve that rises with shots is in-context
# learning, and the gap between its top and 100 % is what the model fails to take from its
# demonstrations (its vision features separate held-out digits about as well as the ID accuracy above,
# so the information is there). *Permuted*: the true names point the wrong way, so a model that answers
# from its prior scores near 0 % at 0 shots; a curve that rises far above chance means the
# demonstrations override the prior, as large LLMs do with flipped labels. *Fixed*: the model answers
# from its prior at 0 shots, so on these in-distribution digits there is little to gain; a curve that
# falls below its 0-shot point means the demonstrations pull the model away from what it already knows
# and the answer then rests on its (less accurate) in-context matching. The closing summary gives the
# numbers of this run with their intervals.
#
# Generation + paper A's parser against choice scoring, on the same reassigned-word episodes: the
# share of episodes where both pick the same choice, the parse rate, and the accuracy of each method.

# %%
gen = curves[curves["mode"] == "reassigned"].copy()
for col in ("agree", "parsed", "correct_generate"):
    gen[col] = gen[col].astype(bool)
agreement = gen.groupby(["n_way", "shots"])[["agree", "parsed", "correct", "correct_generate"]].mean()
display(agreement.round(3))
agree_rate = float(gen["agree"].mean())
print(f"generate + parse picks the same choice as choice scoring in {agree_rate:.1%} of {len(gen)} episodes; "
      f"parse rate {gen['parsed'].mean():.1%}")

# %% [markdown]
# ## Closing summary — computed from this run
# Each line is measured above on the embedded model and the embedded data (not the papers').

# %%
def at(mode, n, shots):
    r = icl[(icl["mode"] == mode) & (icl["n_way"] == n) & (icl["shots"] == shots)]
    return f"{r.accuracy.iloc[0]:.0%} [{r.ci_low.iloc[0]:.0%}, {r.ci_high.iloc[0]:.0%}]" if len(r) else "-"


shifted = ood[~ood.id_reference & (ood.dataset != "molecules_size")]
summary = {
    "ID held-out accuracy, generate + parse": f"{id_acc:.1%}",
    "ID parse rate": f"{parse_rate:.1%}",
    "shifted digit domains below the ID accuracy (interval excludes it)":
        f"{int((shifted.ci_high < id_acc).sum())} of {len(shifted)}",
    "cross-class cosine of image tokens": record["diagnostics"]["cross_class_cosine"],
    **{f"reassigned words, {n}-way, 0 / 8 shots": f"{at('reassigned', n, 0)} / {at('reassigned', n, 8)}" for n in N_WAYS},
    **{f"permuted names, {n}-way, 0 / 8 shots": f"{at('permuted', n, 0)} / {at('permuted', n, 8)}" for n in N_WAYS},
    **{f"true names, {n}-way, 0 / 8 shots": f"{at('fixed', n, 0)} / {at('fixed', n, 8)}" for n in N_WAYS},
    "generate + parse agrees with choice scoring (reassigned episodes)": f"{agree_rate:.1%}",
    "training wall time (s)": record["total_wall_s"],
}
display(pd.Series(summary).to_frame("embedded model, embedded data"))
