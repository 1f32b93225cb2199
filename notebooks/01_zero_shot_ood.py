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
# # 01 — Zero-shot out-of-distribution evaluation (paper A, "zero-shot")
#
# **Claim under test** (Zhang et al., arXiv 2402.06599): multimodal LLMs answer well on the kinds of
# images they were trained on and fail, zero-shot, outside those domains — on synthetic shifts, natural
# style shifts and, most of all, specialised domains (medical, molecular), where accuracy falls to chance.
#
# **Protocol (paper A):** one multiple-choice prompt over the full class-name list,
# *"What is in this image? Choice list: [...]"*, with a required reply format `Answer Choice: [...]`; a
# case-insensitive regex reads the class from the reply; a reply it cannot parse counts as wrong.
# `PROMPT_STYLE = "paper_a"` uses paper A's template and parser exactly as its public code writes them (a
# multi-line template with a `---BEGIN FORMAT TEMPLATE---` block; the first listed class whose
# `Answer Choice: [name]` pattern occurs in the reply); `"short"` asks the same in one line, so that the
# prompt fits the embedded model's 256 positions. We also score every choice by its log-likelihood (no
# parsing involved), which separates "the model does not know" from "the model does not follow the format";
# the parse-failure rate of the generated replies is reported below for either style.
#
# **What produced the numbers below:** the model named in `MODEL` on the datasets named in `DATASETS`.
# In the default *embedded* profile that is the project's own small LLaVA-architecture model, trained on
# 4,000 upright grey MNIST digits only, evaluated on the offline embedded world. These numbers describe
# that model; they are **not** paper A's results and must not be read as them.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mllm_ood import zero_shot
from mllm_ood.data import catalog
from mllm_ood.evaluation import accuracy_table, gap_table, severity_table
from mllm_ood.models import load_model
from mllm_ood.plotting import save_figure, yerr

# %% tags=["parameters"]
SMOKE: bool = False  # same model, 1 sample per class, first 2 datasets, 100 resamples (tests)
MODEL: str = "data/models/embedded_mllm"  # local checkpoint (relative to the repo root) or hub id
DATASETS: list = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size", "molecules_scaffold"]  # dataset names (embedded world or hub:<spec>)
SAMPLES_PER_CLASS: int = 20  # N: first N images per domain x class (paper A), or N at random
SAMPLING: str = "first"  # "first" (paper A) or "random" (seeded)
MODES: list = ["generate", "loglik"]  # answer modes: paper A's generate+parse, and choice log-likelihood
SEED: int = 0  # seed for random sampling and bootstrap resampling
N_BOOT: int = 1000  # bootstrap resamples per interval
BATCH_SIZE: int = 64  # queries per forward pass
PROMPT_STYLE: str = "short"  # "short" (one line; fits the embedded model) or "paper_a" (paper A's template and parser)
ID_REFERENCE: dict = {"digit_styles": "digit_styles/mnist", "rotated_mnist": "digit_styles/mnist", "colored_mnist": "digit_styles/mnist", "corrupted_mnist": "digit_styles/mnist"}  # dataset -> its in-distribution reference "dataset/domain" (datasets left out: no ID gap)

# %%
# Every parameter checked by name before anything loads (one ParameterError naming it).
from mllm_ood.prompts import PROMPT_STYLES
from mllm_ood.validation import (MAX_PER_CLASS, boolean, check_parameters, integer, listing, model_reference, naming,
                                 satisfies, seed, text)

check_parameters(globals(), SMOKE=boolean(), MODEL=model_reference(),
                 DATASETS=listing(choices=catalog.known_names()), SAMPLES_PER_CLASS=integer(1, MAX_PER_CLASS),
                 SAMPLING=text(choices=["first", "random"]), MODES=listing(choices=zero_shot.MODES), SEED=seed(),
                 N_BOOT=integer(1, 100_000), BATCH_SIZE=integer(1, 4096), PROMPT_STYLE=text(choices=PROMPT_STYLES),
                 ID_REFERENCE=satisfies(lambda v: isinstance(v, dict), "a mapping dataset -> 'dataset/domain'"))
with naming("ID_REFERENCE", "DATASETS"):
    zero_shot.validate_id_reference(ID_REFERENCE, DATASETS)

# %%
# Smoke: the first 2 datasets, plus the datasets their ID references name (so every gap has its reference).
datasets = DATASETS[:2] if SMOKE else DATASETS
datasets = list(dict.fromkeys(datasets + [zero_shot.parse_reference(ID_REFERENCE[d])[0] for d in datasets
                                          if d in ID_REFERENCE]))
references = {d: r for d, r in ID_REFERENCE.items() if d in datasets}
n_per_class = 1 if SMOKE else SAMPLES_PER_CLASS
n_boot = 100 if SMOKE else N_BOOT
zero_shot.validate(datasets, MODES, n_per_class, SAMPLING, prompt_style=PROMPT_STYLE)  # before anything loads
model = load_model(MODEL)
print(model, "|", model.fingerprint)

# %% [markdown]
# ## The shifts
#
# | family | dataset | what changes |
# |---|---|---|
# | ID | `digit_styles` / `mnist` | nothing: held-out handwritten digits like the training ones |
# | natural | `digit_styles` / `uci`, `printed`, `textured` | the *style* of the digit: blocky 8x8 scans, typeset fonts, photo backgrounds |
# | synthetic | `rotated_mnist` | the angle (0-75 degrees); `colored_mnist`: the colour of the strokes, tied to the digit group in `+90`/`+80` and flipped in `-90` |
# | corruption | `corrupted_mnist` | defocus blur, frost, gaussian noise at severities 1, 3, 5 |
# | molecular | `molecules_size`, `molecules_scaffold` | a different world altogether: drawings of molecules, labelled by solubility class |
#
# ## Running the protocol
# Every (dataset, domain, mode) is cached: rerunning this notebook with the same parameters recomputes nothing.

# %%
results = zero_shot.evaluate(model, datasets, modes=MODES, n_per_class=n_per_class, sampling=SAMPLING,
                             seed=SEED, batch_size=BATCH_SIZE, prompt_style=PROMPT_STYLE)
infos = {name: catalog.open_dataset(name, seed=SEED)[1] for name in datasets}
chance = {name: zero_shot.chance_level(info) for name, info in infos.items()}
table = accuracy_table(results, ["mode", "family", "dataset", "domain"], n_boot=n_boot, seed=SEED)
table["chance"] = table["dataset"].map(chance)
print(f"{len(results)} answers from {results['model'].iloc[0]}; prompt style {PROMPT_STYLE!r}; chance = 1 / classes:",
      {name: round(c, 4) for name, c in chance.items()})
print("prompt of the first dataset and domain:\n" + zero_shot.build_prompt(infos[datasets[0]], infos[datasets[0]].domains[0],
                                                                           style=PROMPT_STYLE))
table.round(3)

# %% [markdown]
# ## Accuracy per dataset and domain
# Each cell is the accuracy on N samples per class; compare it with the chance level of the dataset,
# 1 / (number of classes) (printed above).

# %%
for mode in MODES:
    sub = table[table["mode"] == mode].copy()
    sub["cell"] = sub["dataset"] + " / " + sub["domain"]
    pivot = sub.pivot_table(index="dataset", columns="domain", values="accuracy", sort=False)
    fig, ax = plt.subplots(figsize=(min(2 + 0.75 * pivot.shape[1], 22), 1 + 0.6 * pivot.shape[0]))
    sns.heatmap(pivot * 100, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax,
                cbar_kws={"label": "accuracy (%)"})
    ax.set_title(f"Zero-shot accuracy (%), mode = {mode}; model {results['model'].iloc[0]}")
    ax.set_xlabel("domain")
    ax.set_ylabel("dataset")
    save_figure(fig, f"01_zero_shot_accuracy_heatmap_{mode}", sub)
    plt.show()

# %% [markdown]
# ## ID versus OOD
# Each dataset's in-distribution reference is the parameter `ID_REFERENCE` (`dataset -> "dataset/domain"`;
# embedded profile: held-out MNIST, `digit_styles/mnist`, the model's training distribution). Below:
# accuracy per domain with its 95 % bootstrap interval, grouped by shift family, against each dataset's ID
# accuracy (solid tick, when it has a reference) and chance (grey tick). The table gives each domain's gap
# to its dataset's ID reference with a bootstrap interval of the difference.

# %%
gaps = gap_table(results, zero_shot.id_reference(results, references), references, MODES, n_boot=n_boot, seed=SEED)
gaps.round(3)

# %%
families = [f for f in ["natural", "synthetic", "corruption", "molecular", "hub"] if f in set(table["family"])]
for mode in MODES:
    sub = table[table["mode"] == mode]
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4), sharey=True, squeeze=False)
    for ax, fam in zip(axes[0], families):
        part = sub[sub["family"] == fam]
        labels = [f"{d}\n{dom}" if len(set(part['dataset'])) > 1 else dom for d, dom in zip(part["dataset"], part["domain"])]
        x = np.arange(len(part))
        ax.errorbar(x, part["accuracy"] * 100, yerr=yerr(part), fmt="o", capsize=3)
        ref = gaps[(gaps["mode"] == mode) & gaps["dataset"].isin(part["dataset"])]
        id_acc = part[["dataset", "domain"]].merge(ref, how="left")["id_accuracy"] if "id_accuracy" in ref else None
        if id_acc is not None and id_acc.notna().any():
            ax.scatter(x, id_acc * 100, marker="_", s=300, color="C2", label="ID accuracy (its reference)")
        ax.scatter(x, part["chance"] * 100, marker="_", s=300, color="grey", label="chance")
        ax.set_xticks(x, labels, rotation=60, fontsize=7)
        ax.set_title(fam)
        ax.set_xlabel("domain")
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"ID vs OOD accuracy with 95 % bootstrap intervals (mode = {mode})")
    fig.tight_layout()
    save_figure(fig, f"01_id_vs_ood_gap_{mode}", sub.merge(gaps, on=["mode", "family", "dataset", "domain", "accuracy"], how="left"))
    plt.show()

# %% [markdown]
# ## Accuracy against the strength of the shift
# Left: each corruption as its severity grows (severity 0 = the clean images). Right: accuracy against
# the rotation angle. A model that has learned the digits rather than the training pixels degrades
# gracefully; a steep fall at small shifts means the learned mapping is brittle.

# %%
if {"corrupted_mnist", "rotated_mnist"} & set(datasets):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sev = severity_table(table)
    for (mode, kind), grp in sev.groupby(["mode", "corruption"]) if len(sev) else []:
        grp = grp.sort_values("severity")
        axes[0].errorbar(grp["severity"], grp["accuracy"] * 100, yerr=yerr(grp), marker="o", capsize=3, label=f"{kind} ({mode})",
                         linestyle="-" if mode == "loglik" else "--")
    axes[0].set_title("Accuracy vs corruption severity")
    axes[0].set_xlabel("severity (0 = clean)")
    axes[0].set_ylabel("accuracy (%)")
    rot = table[table["dataset"] == "rotated_mnist"].copy()
    for mode, grp in rot.groupby("mode"):
        grp = grp.assign(angle=grp["domain"].astype(int)).sort_values("angle")
        axes[1].errorbar(grp["angle"], grp["accuracy"] * 100, yerr=yerr(grp), marker="o", capsize=3, label=mode)
    axes[1].set_title("Accuracy vs rotation angle")
    axes[1].set_xlabel("rotation (degrees)")
    axes[1].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.axhline(100 * chance.get("rotated_mnist", chance.get("corrupted_mnist", 0.1)), color="grey", linestyle=":",
                   label="chance")
        ax.legend(fontsize=7)
        ax.set_ylim(0, 100)
    fig.tight_layout()
    save_figure(fig, "01_accuracy_vs_shift_strength", pd.concat([sev, rot.assign(corruption="rotation")]))
    plt.show()

# %% [markdown]
# ## Does the model follow the format?
# Paper A counts an unparseable reply as wrong. The parse-failure rate per domain tells how much of the
# generate-mode error is a *format* failure rather than a wrong class.

# %%
if "generate" in MODES:
    pf = table[table["mode"] == "generate"].copy()
    pf["cell"] = pf["dataset"] + " / " + pf["domain"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(pf)), 4))
    ax.bar(pf["cell"], pf["parse_failure_rate"] * 100, color="C3")
    ax.set_title("Replies the Answer Choice parser could not read (paper A's protocol)")
    ax.set_xlabel("dataset / domain")
    ax.set_ylabel("parse failures (%)")
    ax.tick_params(axis="x", rotation=75, labelsize=7)
    save_figure(fig, "01_parse_failure_rate", pf)
    plt.show()
    print("examples of unparsed replies:", results.loc[~results["parsed"] & (results["mode"] == "generate"), "reply"].head(5).tolist())

# %% [markdown]
# ## What the numbers say — for this model
# The summary below is computed from the table above (not written by hand). It compares each shift
# family's mean accuracy with the ID accuracy and with chance.

# %%
summary = (table.groupby(["mode", "family"])[["accuracy", "chance"]].mean().reset_index())
for mode in MODES:
    sub_gaps = gaps[gaps["mode"] == mode]
    id_acc = float(sub_gaps["id_accuracy"].mean()) if "id_accuracy" in sub_gaps and sub_gaps["id_accuracy"].notna().any() \
        else float("nan")
    print(f"[{mode}] mean ID-reference accuracy ({', '.join(sorted(set(references.values()))) or 'no reference'}): "
          f"{id_acc:.1%}")
    for _, r in summary[summary["mode"] == mode].iterrows():
        verdict = ("below chance" if r["accuracy"] < r["chance"] - 0.1 else
                   "near chance" if r["accuracy"] < r["chance"] + 0.1 else
                   "clearly below ID" if r["accuracy"] < id_acc - 0.1 else "close to ID")
        print(f"    {r['family']:11s} mean accuracy {r['accuracy']:.1%} (chance {r['chance']:.0%}): {verdict}")
print(f"\nmodel: {results['model'].iloc[0]}; datasets: {', '.join(datasets)}")
