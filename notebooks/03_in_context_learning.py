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

from IPython.display import Markdown, display

from mllm_ood.claims import prose, write_claims
from mllm_ood.mllm import in_words, load_model, usable_modes
from mllm_ood.paper_a.icl import claims as icl_claims
from mllm_ood.paper_a.icl import curves as icl_curves
from mllm_ood.paper_a.icl import plots as icl_plots
from mllm_ood.paper_a.icl import readings as icl_readings
from mllm_ood.paper_a.icl import studies as icl_studies
from mllm_ood.paper_a.icl import tasks as icl_tasks
from mllm_ood.paper_a.icl import evaluation as icl_eval
from mllm_ood.plotting import save_figure, save_table

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
MAJORITY_FRACTIONS: list = [0.5, 0.625, 0.75, 0.875, 1.0]  # majority share among demos (exact); A-ICL3: smallest vs most skewed with every class shown
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
model_words = in_words(model)  # every figure names the model in words
print(model_words, "|", fingerprint)
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
labels = [ep.words[c] for c in ep.demo_labels] + ["? (query)"]
for ax, im, w in zip(axes[0], ep.images, labels):
    ax.imshow(im, cmap="gray")
    ax.set_title(w, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"An ICL episode of task {tasks[0].name} (answer: {ep.answer}), as {model_words} sees it", fontsize=10)
fig.tight_layout()
save_figure(fig, "03_example_episode", pd.DataFrame({"position": range(len(ep.images)), "word": labels,
                                                     "id": ep.demo_ids + [ep.query_id]}))
plt.show()
print(model.prompt_text(ep.conversation))

# %% [markdown]
# ## 1. Accuracy against the number of demonstrations
# Every task at 0/1/2/4/8 class-balanced demonstrations, from the query's own domain (solid, circles) or
# from the task's other domain (dashed, squares: e.g. upright MNIST demonstrations for a rotated query,
# small molecules for a large-molecule query). One panel per task and kind of label word, so no line
# hides another. With fewer shots than classes, some classes are shown no example. The dotted line is
# chance (1 / number of classes).
#
# How to read it: a rising solid line is ICL working on OOD data. A dashed line below the solid one is
# the **domain-shift vulnerability**: the same number of examples helps less when they look different
# from the query. In `reassigned` mode, 0 shots is chance by construction; in `fixed` mode it is the
# zero-shot accuracy on the task's classes. The full table is saved beside the figure
# (`03_icl_accuracy_vs_shots.csv`); the closing overview prints 0 and the most shots.

# %%
shots_res = icl_eval.run_conditions(model, icl_studies.shots_conditions(tasks, SHOTS, MODES, SEEDS, QUERIES_PER_CLASS,
                                                                        SCORING, query_seed=SEED, layout=LAYOUT),
                                    data, BATCH_SIZE, desc="shots curve conditions", generation=generation)
shots_tab = icl_eval.summarise(shots_res, ["task", "mode", "source", "shots"], n_boot=N_BOOT, seed=SEED)
shots_tab["chance"] = shots_tab["task"].map(lambda n: 1 / by_name[n].n_way)
icl_plots.shots_figure(shots_tab, tasks, MODES, model_words)

# %% [markdown]
# **How to read these curves** (the numbers for the model that ran are printed from the tables, not
# written here):
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
# ### Why does one true-name demonstration lower accuracy?
# With true names, several curves dip at 1 shot below their 0-shot point. A suspect: with a single
# demonstration the model answers with *that demonstration's label*, whatever the query shows. Measured
# directly: the share of 1-shot queries answered with the demonstrated label (left), beside the share
# expected if the answer ignored the demonstration (1 / classes, since the demonstrated class is drawn
# at random), and the 1-shot accuracy when the demonstration shows the query's class and when it shows
# another one (right). A copier scores near 100 % on the first and near 0 % on the second.

# %%
copies = icl_readings.copy_rate(shots_res, MODES, seed=SEED)
if len(copies):
    icl_plots.copy_figure(copies, MODES, model_words)
    fixed = copies[copies["mode"] == "fixed"] if "fixed" in MODES else copies
    display(Markdown(
        f"With one demonstration ({', '.join(sorted(set(fixed['mode'])))} words), the model answers with the "
        f"demonstrated label on {fixed['copies'].min():.0%}–{fixed['copies'].max():.0%} of the queries per task "
        f"(an answer that ignored the demonstration would do so on {fixed['independent'].max():.0%} or less); "
        f"1-shot accuracy is {fixed['acc_same'].mean():.0%} when the demonstration shows the query's class and "
        f"{fixed['acc_other'].mean():.0%} when it shows another class (mean over tasks)."))
    display(copies.round(3))
else:
    print("no 1-shot condition in SHOTS: the copying measurement needs shots = 1")

# %% [markdown]
# ### Domain shift of the demonstrations, in numbers
# At the largest number of shots: accuracy with in-domain demonstrations minus accuracy with shifted
# ones, on the same queries (paired bootstrap interval over queries). Positive = shifted demonstrations
# help less. The last row per mode pools every task. These rows describe; the decided claim (A-ICL2,
# pooled per group of tasks with the same number of classes) is in the closing ledger.

# %%
domain_shift = icl_claims.domain_shift_table(shots_res, [t.name for t in tasks], MODES, max_shots, n_boot=N_BOOT,
                                             seed=SEED)
domain_shift.round(3)

# %% [markdown]
# ## 2. Label shift: unequal class proportions among the demonstrations
# `LABEL_SHIFT_SHOTS` in-domain demonstrations per episode; the share of one class — the *majority
# class* — goes from balanced (0.5 for two classes) to all demonstrations of that class (1.0). The
# proportions are realised exactly in every episode (e.g. 6 of 8 for 0.75). The majority class
# alternates over queries so that each query class meets it equally often; queries stay balanced.
#
# **What is compared.** Label shift means the classes appear in unequal proportions. At a share of 1.0
# the minority class never appears among the demonstrations: that is a *missing class*, a different
# question (can the model name a class it was not shown?), and with made-up words the minority word is
# then only an unexplained entry of the choice list. So paper A's label-shift claim is tested here as
# **balanced demonstrations vs the most skewed share at which every class still appears** (for 8 shots
# and 2 classes: 7 of 8, share 0.875); the shares with a missing class are shaded in the figure and
# reported apart below.
#
# How to read it: a model that reads the *content* of the demonstrations keeps its accuracy; a model that
# copies the most frequent label word drifts towards predicting the majority class (right panel; the
# dotted line is the rate an unbiased, perfect classifier would show, 1 / number of classes) and loses
# accuracy on queries of the minority class (middle panel). Overall accuracy can stay flat while both
# happen, because majority-class queries gain what minority-class queries lose.

# %%
ls_conds = icl_studies.label_shift_conditions([by_name[n] for n in LABEL_SHIFT_TASKS], MAJORITY_FRACTIONS,
                                              LABEL_SHIFT_SHOTS, MODES, SEEDS, QUERIES_PER_CLASS, SCORING,
                                              query_seed=SEED, layout=LAYOUT)
ls_res = icl_eval.run_conditions(model, ls_conds, data, BATCH_SIZE, desc="label-shift conditions", generation=generation)
ls_res["query_class"] = np.where(ls_res["label"] == ls_res["majority"], "majority class", "minority class")
ls_acc = icl_eval.summarise(ls_res, ["mode", "level"], n_boot=N_BOOT, seed=SEED)
ls_acc_cls = icl_eval.summarise(ls_res, ["mode", "query_class", "level"], n_boot=N_BOOT, seed=SEED)
ls_maj = icl_eval.summarise(ls_res, ["mode", "level"], value="pred_majority", n_boot=N_BOOT, seed=SEED)
balanced, skewed, missing = icl_claims.label_shift_levels(ls_res)
n_ways = {by_name[n].n_way for n in LABEL_SHIFT_TASKS}
icl_plots.label_shift_figure(ls_acc, ls_acc_cls, ls_maj, MODES, n_ways.pop() if len(n_ways) == 1 else None, missing,
                             LABEL_SHIFT_SHOTS, model_words)
display(Markdown(f"Compared for the claim: majority share **{balanced:g}** (balanced) vs **{skewed}** (the most "
                 f"skewed share with every class shown); shares with a missing class: {missing or 'none'}."))

# %% [markdown]
# **The missing class, apart.** At the shaded shares one class has no demonstration at all. The table
# gives, beside the balanced share, the accuracy on queries of the demonstrated (majority) class and of
# the missing one, and how often the model names the majority class.

# %%
display(icl_claims.missing_class_table(ls_res, MODES, n_boot=N_BOOT, seed=SEED))

# %% [markdown]
# ## 3. Spurious correlation: colour tied to the label in the demonstrations
# ColoredMNIST's rule: digits 0-4 are painted red and 5-9 green (their *home colour*). Each pair takes
# one digit of each group; `SPURIOUS_SHOTS` class-balanced demonstrations are held-out grey MNIST digits
# painted so that exactly the share `tie strength` wears its home colour (0.5: colour says nothing;
# 1.0: colour alone separates the classes). The queries are painted the **other** colour (the tie
# flipped, as in ColoredMNIST's test domain); as a control, the same digits in their home colour (tie
# aligned).
#
# How to read it: the figure shows, per tie strength, accuracy on the flipped queries **minus** on the
# same digits aligned. If the model learns the digit from the demonstrations, the gap stays at 0; if it
# picks up the shortcut, the gap opens below 0 as the tie strengthens (flipped queries lose what aligned
# ones gain). The dash-dotted line is the gap with no demonstrations. The accuracies themselves are in
# the figure's CSV (`flipped`, `aligned`).

# %%
sp_conds = icl_studies.spurious_conditions(SPURIOUS_PAIRS, TIE_STRENGTHS, SPURIOUS_SHOTS, MODES, SEEDS,
                                           QUERIES_PER_CLASS, SCORING, query_seed=SEED, layout=LAYOUT)
sp_res = icl_eval.run_conditions(model, sp_conds, data, BATCH_SIZE, desc="spurious conditions", generation=generation)
gap = icl_readings.colour_gap(sp_res, MODES, n_boot=N_BOOT, seed=SEED)
icl_plots.colour_gap_figure(gap, MODES, SPURIOUS_SHOTS, model_words)
pooled_gap = gap[(gap["task"] == "all pairs") & (gap["shots"] > 0)]
pooled_gap[["mode", "level", "flipped", "aligned", "gap", "ci_low", "ci_high", "n_queries"]].round(3)

# %% [markdown]
# Can the model see the colour at all? A gap of 0 could mean the model resists the shortcut, or that
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
# Paper A's colour shortcut needs a model that has learned to use colour; the embedded model was trained
# on grey digits only.
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
    probe_tab = icl_curves.probe_curves(model, tasks, data, PROBE_PER_CLASS, probe_curve, seed=SEED,
                                        n_draws=PROBE_DRAWS, n_boot=N_BOOT, batch_size=BATCH_SIZE)
icl_curve = shots_tab[(shots_tab["source"] == "in_domain")].copy()
icl_curve["per_class"] = icl_curve["shots"] / icl_curve["task"].map(lambda n: by_name[n].n_way)
icl_plots.probe_figure(icl_curve, probe_tab, tasks, MODES, PROBE_DRAWS, model_words)

# %% [markdown]
# ## Closing note — paper A's ICL claims, decided by one rule
# First the shots overview: 0 and the largest number of shots per task with 95 % intervals.

# %%
icl_claims.shots_overview(shots_tab, tasks, MODES, max_shots)

# %% [markdown]
# **The rule.** Each claim is a paired difference on the same queries (a − b: each query's correctness
# averaged over the demonstration seeds), with a 95 % bootstrap interval over queries. A claim is
# *supported* when its interval lies above a **margin of 5 points** and its exact one-sided sign-flip
# p-value (exact when few queries differ: only the queries whose answer changed count) stays below 0.05
# after **Holm's correction over every decided row of this notebook** (the pooled rows and the per-task
# gains below); *contradicted* when the interval lies wholly below the margin; *inconclusive* otherwise;
# *not testable* when the data leave no room for the effect (e.g. 100 % already without demonstrations:
# no gain can show). Paper A's claims, as estimands here:
# - **A-ICL1** (ICL improves OOD accuracy): the most in-domain shots minus none;
# - **A-ICL2** (domain-shifted demonstrations help less): in-domain minus shifted demonstrations at the most
#   shots (not testable where the model needs no demonstrations at all);
# - **A-ICL3** (label shift hurts): balanced minus the most skewed share that still shows every class;
# - **A-ICL4** (a spurious colour tie misleads): colour-flipped queries at the weakest minus the strongest tie.
#
# Pooled per kind of label word and per group of tasks with the same number of classes (their chance
# levels differ). The numbers describe the model named below and nothing else: not paper A's results.

# %%
family = icl_claims.claim_family(shots_res, ls_res, sp_res, MODES, max_shots, TIE_STRENGTHS, n_boot=N_BOOT, seed=SEED)
with pd.option_context("display.max_colwidth", None):
    display(icl_claims.family_view(family, "pooled"))

# %% [markdown]
# On which tasks does ICL help? A-ICL1 per task (same estimand, in the same Holm family); the table is
# also saved as `03_icl_gain_by_task.csv`. A *constant answer* note marks a task on which the model names
# the same class for nearly every query with and without demonstrations: its accuracy there is that
# class's share whatever the query shows, and an effect of 0 means the demonstrations did not move it.

# %%
gain_by_task = icl_claims.family_view(family, "task")
save_table(gain_by_task, "03_icl_gain_by_task")
with pd.option_context("display.max_colwidth", None):
    display(gain_by_task)
display(Markdown(f"Per task, A-ICL1 outcomes: " + ", ".join(
    f"{o} {n}" for o, n in gain_by_task["outcome"].value_counts().items()) + f" (of {len(gain_by_task)} rows)."))

# %% [markdown]
# ### The ledger
# The pooled rows become notebook 03's rows of the study's claims ledger (`03_claims.csv`), in words:

# %%
ledger = write_claims(icl_claims.ledger_rows(family, model=f"{model_words} ({fingerprint})", data=(
    f"{len(tasks)} ICL tasks, {QUERIES_PER_CLASS} queries per class (the same in every condition), {len(SEEDS)} "
    f"demonstration seed(s), scoring {SCORING}")), "03")
counts = ledger["outcome"].value_counts()
display(Markdown(f"Notebook 03 writes {len(ledger)} ledger rows: "
                 + ", ".join(f"{n} {o}" for o, n in counts.items()) + "."))
display(Markdown(prose(ledger)))
