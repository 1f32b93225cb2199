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
#     display_name: mllm-ood (.venv)
#     language: python
#     name: mllm-ood
# ---

# %% [markdown]
# # 03 — In-context learning and its vulnerabilities (paper A, ICL sections)
#
# **Claim under test** (Zhang et al., arXiv 2402.06599): showing an MLLM a few labelled examples in the
# prompt — *in-context learning* (ICL) — raises its accuracy on out-of-distribution (OOD) data, but the
# gain is fragile. It shrinks or turns into a loss when the demonstrations (1) come from another domain
# than the query (**domain shift**), (2) show the classes in unequal proportions (**label shift**), or
# (3) carry a nuisance attribute, such as colour, that is tied to the label and does not hold for the
# query (**spurious correlation**).
#
# **An episode** is one multi-image prompt: every demonstration image followed directly by its label
# word, then the instructions with the choice list, then the query image. The model answers in
# paper A's format `Answer Choice: [word]`. Episodes go through the same `score_choices` / `generate`
# calls that serve hub models, with one `<image>` per image.
#
# **Label words — two settings, both reported.**
# - `reassigned`: every class gets a made-up word (`dax`, `wug`, ...) drawn afresh per episode. Only the
#   demonstrations say which word means what, so this measures ICL alone; 0 shots is chance by
#   construction. **This is the primary setting here**: the embedded model already knows the digit
#   names, and with true names a curve mixes what the demonstrations teach with the zero-shot prior.
# - `fixed`: the true class names (`seven`, `low solubility`), as in paper A. The model can also use its
#   zero-shot knowledge, so 0 shots is notebook 01's zero-shot accuracy restricted to the task's classes.
#
# **Scoring** (`SCORING`): `loglik` scores each choice's reply `Answer Choice: [word]` by its
# log-likelihood (nats, summed over tokens) and predicts the most likely choice, so format failures cannot
# hide ICL. `generate` uses paper A's greedy generation and regex parser (an unparsed reply is wrong).
#
# **Design.** Binary tasks are a fixed pair of classes, one task per shift; multi-class tasks are 3-way.
# Queries are fixed per task and shared by every condition, so conditions are compared on the same
# queries (paired). Demonstrations are class-balanced (apart from the label-shift study), drawn with
# several seeds, and never include the query or another rendering of the query's source image (e.g. the
# same MNIST digit upright). Each point is the mean over demonstration seeds; its 95 % interval is a
# bootstrap over queries of their seed-averaged correctness. Every condition is cached.
#
# **What produced the numbers below:** the model named in `MODEL` on the tasks named in `TASKS`. In the
# default *embedded* profile that is the project's own small LLaVA-architecture model, trained on upright
# grey MNIST only (with few-shot episodes in its training mix: made-up words, true names and permuted
# true names; notebook 00 shows that it learns in context on held-out upright digits), evaluated on the
# offline embedded world, whose every task here is out of its training distribution.
# These numbers describe that model; they are **not** paper A's results and must not be read as them.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mllm_ood.mllm import load_model, usable_modes
from mllm_ood.paper_a.icl import claims as icl_claims
from mllm_ood.paper_a.icl import curves as icl_curves
from mllm_ood.paper_a.icl import studies as icl_studies
from mllm_ood.paper_a.icl import tasks as icl_tasks
from mllm_ood.paper_a.icl import evaluation as icl_eval
from mllm_ood.plotting import curve, decorate, publish, save_figure, shared_legend, yerr

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke); the smoke sizes are the YAML's smoke: values
MODEL: str = "data/models/embedded_mllm"  # local checkpoint (relative to the repo root), hub id, or openai:<model>@<base_url>
TASKS: list = ["rotated_60", "coloured_flipped", "printed", "textured", "molecules_large", "rotated_45_3way", "molecules_small_3way"]  # names in mllm_ood.paper_a.icl.tasks.TASKS, or dicts {name, dataset, query_domain, shift_domain, classes}
SHOTS: list = [0, 1, 2, 4, 8]  # demonstrations per episode for the shots curve
MODES: list = ["reassigned", "fixed"]  # label words: made-up per episode (pure ICL; primary) and true names (paper A)
SEEDS: list = [0, 1, 2]  # demonstration-selection seeds (each point is the mean over these)
QUERIES_PER_CLASS: int = 30  # queries per class and task (fixed across conditions)
SCORING: str = "loglik"  # "loglik" (choice log-likelihood) or "generate" (paper A's parser)
LABEL_SHIFT_TASKS: list = ["rotated_60", "printed", "textured", "molecules_large"]  # tasks for the label-shift study
LABEL_SHIFT_SHOTS: int = 8  # demonstrations per episode in the label-shift study
MAJORITY_FRACTIONS: list = [0.5, 0.625, 0.75, 0.875, 1.0]  # share of the majority class among demos (exact)
SPURIOUS_PAIRS: list = [["one", "seven"], ["three", "eight"]]  # digit pairs, one red-home (0-4), one green-home (5-9)
SPURIOUS_SHOTS: int = 8  # demonstrations per episode in the spurious-correlation study
TIE_STRENGTHS: list = [0.5, 0.625, 0.75, 0.875, 1.0]  # share of demos wearing their class's home colour (exact)
PROBE_PER_CLASS: int = 60  # samples per class for the probe comparison (as notebook 02: its cache is reused)
PROBE_CURVE: list = [1, 2, 4, 8, 16, 32]  # labelled examples per class for the probe curve
PROBE_DRAWS: int = 5  # random draws of the probe's training examples per point (the interval includes them)
SEED: int = 0  # query selection, dataset build and bootstrap seed
N_BOOT: int = 1000  # bootstrap resamples per interval
BATCH_SIZE: int = 64  # episodes per forward pass
ICL_LAYOUT: str = "compact"  # "compact" (the embedded model's: <image>word per demo, one instruction) or "paper_a" (paper A's eval_gpt_ICL.py layout: the full question per demo, fixed alternating demos, the whole choice list; turns for templates that put a message's images first) or "paper_a_turns"
MAX_NEW_TOKENS: int = 12  # cap on a generated reply (it runs until the model stops); paper A: 1024
TEMPERATURE: float = 0.0  # 0.0 means greedy, reproducible; paper A sampled at 0.2, seeded here by SEED
SYSTEM_PROMPT: str = "none"  # "none" or "card" (the system prompt of the model card / its authors' conversation template)

# %%
# Every parameter checked by name before anything loads (one ParameterError naming it).
from mllm_ood.formats.episodes import MODES as LABEL_WORD_MODES
from mllm_ood.validation import (MAX_PER_CLASS, boolean, check_parameters, integer, listing, naming, number, satisfies,
                                 seed, text)
from mllm_ood.mllm import model_reference
from mllm_ood.mllm.generation import SYSTEM_PROMPTS, Generation
from mllm_ood.formats.paper_a_icl import LAYOUTS, resolve_layout

check_parameters(globals(), SMOKE=boolean(), MODEL=model_reference(),
                 TASKS=listing(satisfies(icl_tasks.resolve_task, "an ICL task")),
                 SHOTS=listing(integer(0, 64), increasing=True), MODES=listing(choices=LABEL_WORD_MODES),
                 SEEDS=listing(seed()), QUERIES_PER_CLASS=integer(1, MAX_PER_CLASS),
                 SCORING=text(choices=icl_tasks.SCORINGS), LABEL_SHIFT_TASKS=listing(text()),
                 LABEL_SHIFT_SHOTS=integer(1, 64), MAJORITY_FRACTIONS=listing(number(0, 1)),
                 SPURIOUS_PAIRS=listing(listing(text())), SPURIOUS_SHOTS=integer(1, 64),
                 TIE_STRENGTHS=listing(number(0, 1)), PROBE_PER_CLASS=integer(2, MAX_PER_CLASS),
                 PROBE_CURVE=listing(integer(1), increasing=True), PROBE_DRAWS=integer(1, 100), SEED=seed(),
                 N_BOOT=integer(1, 100_000), BATCH_SIZE=integer(1, 4096), ICL_LAYOUT=text(choices=LAYOUTS),
                 MAX_NEW_TOKENS=integer(1, 32768), TEMPERATURE=number(0, 5), SYSTEM_PROMPT=text(choices=SYSTEM_PROMPTS))
with naming("TASKS", "LABEL_SHIFT_TASKS", "MAJORITY_FRACTIONS", "LABEL_SHIFT_SHOTS"):
    icl_tasks.validate(TASKS, SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING, LABEL_SHIFT_TASKS, MAJORITY_FRACTIONS,
                 LABEL_SHIFT_SHOTS)
with naming("SPURIOUS_PAIRS", "TIE_STRENGTHS", "SPURIOUS_SHOTS"):
    icl_tasks.validate(TASKS, SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING, spurious_pairs=SPURIOUS_PAIRS,
                 tie_strengths=TIE_STRENGTHS, spurious_shots=SPURIOUS_SHOTS)

# %%
tasks = icl_tasks.validate(TASKS, SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING, LABEL_SHIFT_TASKS, MAJORITY_FRACTIONS,
                     LABEL_SHIFT_SHOTS, SPURIOUS_PAIRS, TIE_STRENGTHS, SPURIOUS_SHOTS)
probe_curve = [k for k in PROBE_CURVE if k <= PROBE_PER_CLASS // 2]
by_name = {t.name: t for t in tasks}
primary = MODES[0]
max_shots = max(SHOTS)
model = load_model(MODEL)
SCORING = usable_modes(model, [SCORING])[0]  # a model behind an endpoint without log-probabilities: generate
LAYOUT = resolve_layout(model, ICL_LAYOUT)  # paper A's layout in turns where the chat template needs them
generation = Generation(MAX_NEW_TOKENS, TEMPERATURE, SEED, SYSTEM_PROMPT)
data = icl_tasks.IclData(seed=SEED)
fingerprint = model.fingerprint
print(model, "|", fingerprint)
pd.DataFrame([t.spec() for t in tasks])

# %% [markdown]
# ## One episode, as the model sees it
# A 4-shot episode of the first task with reassigned words: the demonstrations (with their label words)
# and the query, then the text the model's chat template makes of it. The layout — each label word
# straight after its image, the instructions after the demonstrations — is the one the embedded model was
# trained on.

# %%
example_cond = icl_studies.Condition("shots", tasks[0], min(4, max(max_shots, 1)), "reassigned", SEEDS[0], QUERIES_PER_CLASS,
                             query_seed=SEED)
ep = icl_studies.build_condition_episodes(example_cond, data)[0][0]
fig, axes = plt.subplots(1, len(ep.images), figsize=(1.6 * len(ep.images), 2.2), squeeze=False)
words = [ep.words[c] for c in ep.demo_labels] + ["? (query)"]
for ax, im, w in zip(axes[0], ep.images, words):
    ax.imshow(im, cmap="gray")
    ax.set_title(w, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"An ICL episode of task {tasks[0].name} (answer: {ep.answer})", fontsize=10)
fig.tight_layout()
save_figure(fig, "03_example_episode", pd.DataFrame({"position": range(len(ep.images)), "word": words,
                                                     "id": ep.demo_ids + [ep.query_id]}))
plt.show()
print(model.prompt_text(ep.conversation))

# %% [markdown]
# ## 1. Accuracy against the number of demonstrations
# Every task at 0/1/2/4/8 class-balanced demonstrations, from the query's own domain (solid lines) or
# from the task's other domain (dashed: e.g. upright MNIST demonstrations for a rotated query, small
# molecules for a large-molecule query). With fewer shots than classes, some classes are shown no
# example. The dotted line is chance (1 / number of classes).
#
# How to read it: a rising solid line is ICL working on OOD data. A dashed line below the solid one is
# the **domain-shift vulnerability**: the same number of examples helps less when they look different
# from the query. In `reassigned` mode, 0 shots is chance by construction; in `fixed` mode it is the
# zero-shot accuracy on the task's classes.

# %%
shots_res = icl_eval.run_conditions(model, icl_studies.shots_conditions(tasks, SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING,
                                                                    query_seed=SEED, layout=LAYOUT), data, BATCH_SIZE,
                               desc="shots curve conditions", generation=generation)
shots_tab = icl_eval.summarise(shots_res, ["task", "mode", "source", "shots"], n_boot=N_BOOT, seed=SEED)
shots_tab["chance"] = shots_tab["task"].map(lambda n: 1 / by_name[n].n_way)
shots_tab.round(3)


# %%
xpos = {s: i for i, s in enumerate(sorted(SHOTS))}
ncol = min(4, len(tasks))
nrow = int(np.ceil(len(tasks) / ncol))
fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
for ax, t in zip(axes.flat, tasks):
    for j, mode in enumerate(MODES):
        for source, ls in [("in_domain", "-"), ("shifted", "--")]:
            c = curve(shots_tab, t.name, mode, source)
            ax.errorbar([xpos[s] + (j - 0.5) * 0.08 for s in c["shots"]], c["accuracy"] * 100, yerr=yerr(c),
                        color=f"C{j}", ls=ls, marker="o", ms=4, capsize=2,
                        label=f"{mode} words, {'in-domain' if source == 'in_domain' else 'shifted'} demos")
    ax.axhline(100 / t.n_way, color="grey", ls=":", label="chance (1 / classes)")
    ax.set_xticks(list(xpos.values()), list(xpos))
    decorate(ax, title=f"{t.name}: query {t.dataset} / {t.query_domain}\n{t.n_way}-way; shifted demos from "
             f"{t.shift_domain}", title_size=9, xlabel="demonstrations (shots)", ylim=(0, 105))
for ax in axes[:, 0]:
    ax.set_ylabel("accuracy (%), mean over seeds")
shared_legend(fig, axes, len(tasks))
publish(fig, "03_icl_accuracy_vs_shots", shots_tab, suptitle=f"ICL accuracy vs shots: in-domain (solid) vs shifted "
        f"(dashed) demonstrations; 95 % bootstrap intervals over queries; model {fingerprint}")

# %% [markdown]
# **How to read these curves** (the numbers for the model that ran are computed in the tables below and in
# the closing summary, not written here):
# - *Reassigned words:* at 0 shots the model can only guess (chance); any rise with shots is in-context
#   learning proper. Expect it where the digit is easy to read for this model and none where its vision
#   features do not separate the classes (e.g. molecules).
# - *True names:* at 0 shots the model answers from its zero-shot prior (the plain zero-shot prompt with
#   the task's choices, as paper A's zero-shot baseline). A flat curve means the demonstrations add
#   nothing beyond what the model already knows; a curve that falls below its 0-shot point means they
#   pull the model away from a prior that was better than its in-context matching.
# - *Domain shift:* the dashed line uses demonstrations from another domain. Paper A finds that such
#   demonstrations help less; if the lines coincide, this model does not show that vulnerability.
#
# ### Domain shift of the demonstrations, in numbers
# At the largest number of shots: accuracy with in-domain demonstrations minus accuracy with shifted
# ones, on the same queries (paired bootstrap interval over queries). Positive = shifted demonstrations
# help less. The last rows pool every task.

# %%
domain_shift = icl_claims.domain_shift_table(shots_res, [t.name for t in tasks], MODES, max_shots, n_boot=N_BOOT, seed=SEED)
domain_shift.round(3)

# %% [markdown]
# ## 2. Label shift: unequal class proportions among the demonstrations
# `LABEL_SHIFT_SHOTS` in-domain demonstrations per episode; the share of one class — the *majority
# class* — goes from balanced (0.5 for two classes) to all demonstrations of that class (1.0). The
# proportions are realised exactly in every episode (e.g. 6 of 8 for 0.75). The majority class
# alternates over queries so that each query class meets it equally often; queries stay balanced.
#
# How to read it: a model that reads the *content* of the demonstrations keeps its accuracy; a model that
# copies the most frequent label word drifts towards predicting the majority class (right panel; the
# dotted line is the rate an unbiased, perfect classifier would show, 1 / number of classes) and loses
# accuracy on queries of the minority class (middle panel). At 1.0 in `reassigned` mode the minority
# class's word never appears with an image, so only elimination can still find it.

# %%
ls_conds = icl_studies.label_shift_conditions([by_name[n] for n in LABEL_SHIFT_TASKS], MAJORITY_FRACTIONS, LABEL_SHIFT_SHOTS,
                                      MODES, SEEDS, QUERIES_PER_CLASS, SCORING, query_seed=SEED, layout=LAYOUT)
ls_res = icl_eval.run_conditions(model, ls_conds, data, BATCH_SIZE, desc="label-shift conditions", generation=generation)
ls_res["query_class"] = np.where(ls_res["label"] == ls_res["majority"], "majority class", "minority class")
ls_acc = icl_eval.summarise(ls_res, ["mode", "level"], n_boot=N_BOOT, seed=SEED)
ls_acc_task = icl_eval.summarise(ls_res, ["mode", "task", "level"], n_boot=N_BOOT, seed=SEED)
ls_acc_cls = icl_eval.summarise(ls_res, ["mode", "query_class", "level"], n_boot=N_BOOT, seed=SEED)
ls_maj = icl_eval.summarise(ls_res, ["mode", "level"], value="pred_majority", n_boot=N_BOOT, seed=SEED)
ls_maj_task = icl_eval.summarise(ls_res, ["mode", "task", "level"], value="pred_majority", n_boot=N_BOOT, seed=SEED)
fig, axes = plt.subplots(len(MODES), 3, figsize=(14, 3.6 * len(MODES)), squeeze=False, sharex=True)
for i, mode in enumerate(MODES):
    ax = axes[i, 0]
    for name, g in ls_acc_task[ls_acc_task["mode"] == mode].groupby("task", sort=False):
        ax.plot(g["level"], g["accuracy"] * 100, lw=0.8, alpha=0.6, marker=".", label=name)
    g = ls_acc[ls_acc["mode"] == mode]
    ax.errorbar(g["level"], g["accuracy"] * 100, yerr=yerr(g), color="k", lw=2, capsize=3, label="all tasks")
    ax.set_ylabel(f"[{mode}] accuracy (%)")
    ax.set_title("accuracy, all queries")
    ax = axes[i, 1]
    for j, (qc, g) in enumerate(ls_acc_cls[ls_acc_cls["mode"] == mode].groupby("query_class")):
        ax.errorbar(g["level"], g["accuracy"] * 100, yerr=yerr(g), marker="o", capsize=3, color=f"C{j + 3}", label=qc)
    ax.set_title("accuracy by query class (all tasks)")
    ax = axes[i, 2]
    for name, g in ls_maj_task[ls_maj_task["mode"] == mode].groupby("task", sort=False):
        ax.plot(g["level"], g["pred_majority"] * 100, lw=0.8, alpha=0.6, marker=".", label=name)
    g = ls_maj[ls_maj["mode"] == mode]
    ax.errorbar(g["level"], g["pred_majority"] * 100, yerr=yerr(g, "pred_majority"), color="k", lw=2, capsize=3,
                label="all tasks")
    if len({by_name[n].n_way for n in LABEL_SHIFT_TASKS}) == 1:
        ax.axhline(100 / by_name[LABEL_SHIFT_TASKS[0]].n_way, color="grey", ls=":", label="unbiased (1 / classes)")
    ax.set_title("predictions of the majority demo class")
    ax.set_ylabel("rate (%)")
    for ax in axes[i]:
        ax.set_ylim(0, 105)
        ax.legend(fontsize=6)
for ax in axes[-1]:
    ax.set_xlabel("share of the majority class among the demonstrations")
fig.suptitle(f"Label shift: {LABEL_SHIFT_SHOTS}-shot in-domain demonstrations with unequal class proportions; "
             f"95 % bootstrap intervals; model {fingerprint}", fontsize=10)
fig.tight_layout()
save_figure(fig, "03_icl_label_shift", pd.concat([ls_acc.assign(series="accuracy", query_class="all"),
                                                  ls_acc_cls.assign(series="accuracy"),
                                                  ls_maj.assign(series="majority_rate", query_class="all")]))
plt.show()

# %% [markdown]
# **How to read this figure:** if the model copies the majority label of its demonstrations, the
# majority-prediction rate climbs from 50 % (balanced) towards 100 % (all one class), and accuracy on
# queries of the minority class falls. Overall accuracy can stay flat while both happen, because
# majority-class queries gain what minority-class queries lose; the per-class lines show it.
#
# ## 3. Spurious correlation: colour tied to the label in the demonstrations
# ColoredMNIST's rule: digits 0-4 are painted red and 5-9 green (their *home colour*). Each pair takes
# one digit of each group; `SPURIOUS_SHOTS` class-balanced demonstrations are held-out grey MNIST digits
# painted so that exactly the share `tie strength` wears its home colour (0.5: colour says nothing;
# 1.0: colour alone separates the classes). The queries are painted the **other** colour (the tie
# flipped, as in ColoredMNIST's test domain); as a control, the same queries in their home colour
# (tie aligned). Horizontal lines: the same flipped queries with no demonstrations.
#
# How to read it: if the model learns the digit from the demonstrations, the flipped line stays flat; if
# it picks up the shortcut, the flipped line falls as the tie strengthens while the aligned line rises —
# the gap between them is what the colour, not the shape, decides.

# %%
sp_conds = icl_studies.spurious_conditions(SPURIOUS_PAIRS, TIE_STRENGTHS, SPURIOUS_SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING,
                                   query_seed=SEED, layout=LAYOUT)
sp_res = icl_eval.run_conditions(model, sp_conds, data, BATCH_SIZE, desc="spurious conditions", generation=generation)
sp_tab = icl_eval.summarise(sp_res[sp_res["shots"] > 0], ["mode", "query_colour", "level"], n_boot=N_BOOT, seed=SEED)
sp_task = icl_eval.summarise(sp_res[sp_res["shots"] > 0], ["mode", "task", "query_colour", "level"], n_boot=N_BOOT,
                        seed=SEED)
sp_zero = icl_eval.summarise(sp_res[sp_res["shots"] == 0], ["mode", "query_colour"], n_boot=N_BOOT, seed=SEED)
fig, axes = plt.subplots(1, len(MODES), figsize=(6 * len(MODES), 4), squeeze=False, sharey=True)
for ax, mode in zip(axes[0], MODES):
    for j, col in enumerate(icl_tasks.QUERY_COLOURS):
        g = sp_tab[(sp_tab["mode"] == mode) & (sp_tab["query_colour"] == col)]
        ax.errorbar(g["level"], g["accuracy"] * 100, yerr=yerr(g), marker="o", capsize=3, color=f"C{j}", lw=2,
                    label=f"queries with the tie {col} (all pairs)")
        for name, gt in sp_task[(sp_task["mode"] == mode) & (sp_task["query_colour"] == col)].groupby("task"):
            ax.plot(gt["level"], gt["accuracy"] * 100, color=f"C{j}", lw=0.7, alpha=0.5, ls="--")
        z = sp_zero[(sp_zero["mode"] == mode) & (sp_zero["query_colour"] == col)]
        if len(z):
            ax.axhline(z["accuracy"].iloc[0] * 100, color=f"C{j}", ls="-.", lw=1, label=f"0 shots, tie {col}")
    ax.axhline(50, color="grey", ls=":", label="chance")
    ax.set_title(f"label words: {mode}")
    ax.set_xlabel("tie strength in the demonstrations (share in home colour)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
axes[0, 0].set_ylabel("accuracy (%), mean over seeds")
fig.suptitle(f"Spurious correlation: {SPURIOUS_SHOTS}-shot coloured demonstrations, pairs {SPURIOUS_PAIRS} (thin dashed: "
             f"per pair); model {fingerprint}", fontsize=10)
fig.tight_layout()
save_figure(fig, "03_icl_spurious_correlation", pd.concat([sp_task, sp_tab.assign(task="all pairs"),
                                                           sp_zero.assign(task="all pairs", level=0.0)]))
plt.show()
sp_tab.round(3)

# %% [markdown]
# Can the model see the colour at all? A flat line could mean the model resists the shortcut, or that
# colour barely reaches it (the embedded model was trained on grey digits only). A linear probe on the
# frozen vision features of the same digits painted red and painted green tells the two apart: if it
# separates the colours, the colour is visible and the demonstrations' tie is simply not used.

# %%
if not model.can("vision_features"):  # e.g. a model behind an endpoint: its weights are not here
    print(f"colour probe skipped: {model.name} offers no vision features (the probe reads them)")
else:
    colour_probe = icl_curves.colour_probe(model, data, SPURIOUS_PAIRS, max(PROBE_PER_CLASS // 2, 4), seed=SEED,
                                    n_boot=N_BOOT, batch_size=BATCH_SIZE)
    print(f"colour (red vs green) from frozen vision features, probe on {colour_probe['n_images']} painted digits: "
          f"{colour_probe['accuracy']:.0%} [{colour_probe['ci_low']:.0%}, {colour_probe['ci_high']:.0%}] (chance 50%)")

# %% [markdown]
# **How to read this figure:** a model that picks up the colour shortcut from its demonstrations loses
# accuracy on flipped queries as the tie strength grows, while aligned queries gain. If flipped and aligned
# queries score the same at every tie strength, the model's in-context matching ignores colour — which the
# probe above tells apart from "the model cannot see colour". Paper A's colour shortcut needs a model that
# has learned to use colour; the embedded model was trained on grey digits only.
#
# ## ICL beside the linear probe
# Both use a handful of labelled examples of the OOD domain: the probe trains a logistic regression on
# the frozen vision features; ICL only puts the examples in the prompt. Per task, accuracy against
# *labelled examples per class* (ICL: shots / number of classes, in-domain demonstrations; probe: its
# training examples per class, scored on a fixed held-out half). Two probe lines: on the same classes
# as the ICL task (solid, the fair comparison), and over all classes of the domain (dashed, as notebook
# 02's probe; its chance level is lower, e.g. 1/10 for digits — each chance level has its own dotted
# line). Each probe point is the mean over `PROBE_DRAWS` random draws of its training examples, and its
# interval resamples both the draws and the test images, so it includes the luck of the draw. 0 shots
# has no place on the log axis: it is in the shots figure. If the probe climbs far above ICL, the
# information is in the features and the model's in-context *use* of it is the bottleneck — the ICL
# face of paper A's mapping deficiency.

# %%
if not model.can("vision_features"):  # the probe reads the model's frozen vision features
    print(f"probe lines skipped: {model.name} offers no vision features (the probe reads them)")
    probe_tab = pd.DataFrame(columns=["task", "probe", "per_class", "accuracy", "ci_low", "ci_high", "chance"])
else:
    probe_tab = icl_curves.probe_curves(model, tasks, data, PROBE_PER_CLASS, probe_curve, seed=SEED, n_draws=PROBE_DRAWS,
                                 n_boot=N_BOOT, batch_size=BATCH_SIZE)
icl_curve = shots_tab[(shots_tab["source"] == "in_domain")].copy()
icl_curve["per_class"] = icl_curve["shots"] / icl_curve["task"].map(lambda n: by_name[n].n_way)

fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
for ax, t in zip(axes.flat, tasks):
    for j, mode in enumerate(MODES):
        c = icl_curve[(icl_curve["task"] == t.name) & (icl_curve["mode"] == mode)].sort_values("per_class")
        ax.errorbar(c["per_class"], c["accuracy"] * 100, yerr=yerr(c), color=f"C{j}", marker="o", capsize=2,
                    label=f"ICL ({mode} words)")
    for probe, g in probe_tab[probe_tab["task"] == t.name].groupby("probe", sort=False):
        same = probe == "same classes"
        ax.errorbar(g["per_class"], g["accuracy"] * 100, yerr=yerr(g), color="k" if same else "grey",
                    ls="-" if same else "--", marker="s", ms=3, capsize=2,
                    label="probe, task's classes" if same else "probe, all classes of the domain")
        ax.axhline(100 * g["chance"].iloc[0], color="k" if same else "grey", ls=":", lw=1,
                   label="chance, task's classes" if same else "chance, all classes")
    ax.set_xscale("log", base=2)
    decorate(ax, title=f"{t.name} ({t.dataset} / {t.query_domain}, {t.n_way}-way)", title_size=9,
             xlabel="labelled examples per class (log scale)", ylim=(0, 105))
for ax in axes[:, 0]:
    ax.set_ylabel("accuracy (%)")
shared_legend(fig, axes, len(tasks))
publish(fig, "03_icl_vs_probe", pd.concat([icl_curve.assign(method="icl"), probe_tab.assign(method="probe")]),
        suptitle=f"Labelled examples per class vs accuracy: vision-feature probe ({PROBE_DRAWS} draws per point) vs "
        f"in-context learning; model {fingerprint}")

# %% [markdown]
# ## Closing note — computed from the tables above
# First the shots table: 0 and the largest number of shots per task with 95 % intervals. Then paper A's
# four ICL claims, each as a paired difference on the same queries (95 % bootstrap interval over
# queries, averaged over demonstration seeds), pooled separately over the 2-way and the 3-way tasks
# (their chance levels differ), for true names (paper A's setting) and for made-up words. A claim is
# *reproduced* when its interval excludes 0 on the side paper A reports. The verdicts are computed, so
# they describe the model named below and nothing else.

# %%
closing_shots = icl_claims.shots_overview(shots_tab, tasks, MODES, max_shots)
display(closing_shots)

# %%
claims_tab = icl_claims.paper_a_claims(shots_res, ls_res, sp_res, MODES, [t.n_way for t in tasks], max_shots,
                                MAJORITY_FRACTIONS, TIE_STRENGTHS, n_boot=N_BOOT, seed=SEED)
display(claims_tab)

# %% [markdown]
# On which tasks does ICL help? Paper A's first claim per task: accuracy with the largest number of
# in-domain demonstrations minus accuracy with none, on the same queries.

# %%
gain_by_task = icl_claims.gain_by_task(shots_res, [t.name for t in tasks], MODES, max_shots, n_boot=N_BOOT, seed=SEED)
display(gain_by_task.drop(columns="claim"))
print(f"Model {fingerprint}; scoring {SCORING}; {len(SEEDS)} demonstration seed(s); {QUERIES_PER_CLASS} queries per "
      f"class.")
print("These are the model's numbers on the embedded world (or those of MODEL), not paper A's; "
      "'reproduced' means this model shows the effect paper A reports.")

# %% [markdown]
# ### What the committed embedded checkpoint shows here
# Read with the tables above (they are recomputed on every run; this paragraph describes the committed
# checkpoint `embedded_mllm@738d8dcc40bb` with the default parameters, and must be rewritten when the
# checkpoint changes). Effects are paired differences in percentage points with 95 % intervals.
# - **ICL improves OOD accuracy — reproduced with made-up words; with true names only where the
#   zero-shot prior fails.** Made-up words: +23.1 [+17.8, +28.0] pooled over the 2-way tasks and +19.4
#   [+13.5, +25.9] over the 3-way tasks, carried by printed digits (+50), colour-flipped digits (+47),
#   45-degree rotations (+40, 3-way) and 60-degree rotations (+11 [+0.5, +22]); none on textured digits
#   and molecules, where the vision-feature probe also stays near chance. True names: +4.4 [+0.2, +8.7]
#   on the 2-way tasks, all of it from 60-degree rotations (30 % zero-shot, below chance, to 60 % with 8
#   demonstrations); the other 2-way tasks are at 100 % zero-shot or show no clear change. On the 3-way task the effect
#   is **opposite** (−8.5 [−13.5, −3.7]): at 45 degrees the demonstrations lower accuracy from 79 % to
#   62 %, because the model trades a good zero-shot prior for its weaker in-context matching (notebook 00
#   shows the same dip after 1–2 true-name demonstrations on upright digits).
# - **Domain-shifted demonstrations help less — reproduced on the 2-way tasks** with both kinds of words
#   (+6.6 [+2.1, +11.3] made-up, +5.6 [+1.0, +10.2] true names, from 60-degree rotations: upright
#   demonstrations do not match rotated queries); not on the 3-way task (no effect with made-up words,
#   the opposite with true names).
# - **Label shift hurts — reproduced** with both kinds of words (+12.9 [+5.3, +20.4] made-up, +15.1
#   [+8.8, +21.9] true names, balanced against one-class demonstrations; the figure above shows which
#   queries lose).
# - **A spurious colour tie hurts flipped queries — barely, with made-up words only** (+2.2 [+0.3, +5.0],
#   98 % to 96 %); not with true names. The colour is plainly visible in the vision features (the probe
#   above), yet the in-context matching hardly uses it.
#
# None of this is paper A's result: it is what a 1.1 M-parameter model trained on upright grey MNIST does.
