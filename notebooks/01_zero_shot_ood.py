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

from mllm_ood.data import catalog
from mllm_ood.mllm import load_model, usable_modes
from mllm_ood.paper_a import zero_shot
from mllm_ood.paper_a.evaluation import (accuracy_table, family_means, gap_table, mode_agreement, severity_table,
                                         shift_findings)
from mllm_ood.plotting import save_figure, yerr
from mllm_ood.stats import MARGIN

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke); the smoke sizes are the YAML's smoke: values
MODEL: str = "data/models/embedded_mllm"  # local checkpoint (relative to the repo root), hub id, or openai:<model>@<base_url>
DATASETS: list = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size", "molecules_scaffold"]  # dataset names (embedded world or hub:<spec>)
SAMPLES_PER_CLASS: int = 20  # N: first N images per domain x class (paper A), or N at random
SAMPLING: str = "first"  # "first" (paper A) or "random" (seeded)
MODES: list = ["generate", "loglik"]  # answer modes: paper A's generate+parse, and choice log-likelihood
SEED: int = 0  # seed for random sampling and bootstrap resampling
N_BOOT: int = 1000  # bootstrap resamples per interval
BATCH_SIZE: int = 64  # queries per forward pass
PROMPT_STYLE: str = "short"  # "short" (one line; fits the embedded model) or "paper_a" (paper A's template and parser)
MAX_NEW_TOKENS: int = 16  # cap on a generated reply (it runs until the model stops); paper A's harness: 1024
TEMPERATURE: float = 0.0  # 0.0 means greedy, reproducible; paper A sampled at 0.2, seeded here by SEED
SYSTEM_PROMPT: str = "none"  # "none" or "card" (the model card's / its authors' conversation template's system prompt)
DOMAINS: dict = {}  # dataset -> the domains evaluated (paper A: VLCS Caltech101 + LabelMe, Camelyon17 hospitals 0 + 1); left out: all
ID_REFERENCE: dict = {"digit_styles": "digit_styles/mnist", "rotated_mnist": "digit_styles/mnist", "colored_mnist": "digit_styles/mnist", "corrupted_mnist": "digit_styles/mnist"}  # dataset -> its in-distribution reference "dataset/domain" (datasets left out: no ID gap)

# %%
# Every parameter checked by name before anything loads (one ParameterError naming it).
from mllm_ood.formats.prompts import PROMPT_STYLES
from mllm_ood.validation import (MAX_PER_CLASS, boolean, check_parameters, integer, listing, naming, number, satisfies,
                                 seed, text)
from mllm_ood.mllm import model_reference
from mllm_ood.mllm.generation import SYSTEM_PROMPTS, Generation

check_parameters(globals(), SMOKE=boolean(), MODEL=model_reference(),
                 DATASETS=listing(choices=catalog.known_names()), SAMPLES_PER_CLASS=integer(1, MAX_PER_CLASS),
                 SAMPLING=text(choices=["first", "random"]), MODES=listing(choices=zero_shot.MODES), SEED=seed(),
                 N_BOOT=integer(1, 100_000), BATCH_SIZE=integer(1, 4096), PROMPT_STYLE=text(choices=PROMPT_STYLES),
                 ID_REFERENCE=satisfies(lambda v: isinstance(v, dict), "a mapping dataset -> 'dataset/domain'"),
                 MAX_NEW_TOKENS=integer(1, 32768), TEMPERATURE=number(0, 5), SYSTEM_PROMPT=text(choices=SYSTEM_PROMPTS),
                 DOMAINS=satisfies(lambda v: isinstance(v, dict), "a mapping dataset -> [domain, ...]"))
with naming("ID_REFERENCE", "DATASETS"):
    zero_shot.validate_id_reference(ID_REFERENCE, DATASETS)

# %%
zero_shot.validate(DATASETS, MODES, SAMPLES_PER_CLASS, SAMPLING, prompt_style=PROMPT_STYLE)  # before anything loads
model = load_model(MODEL)
MODES = usable_modes(model, MODES)  # a model behind an endpoint without log-probabilities: generate + parse only
print(model, "|", model.fingerprint)

# %% [markdown]
# ## The shifts
#
# | family | dataset | what changes |
# |---|---|---|
# | ID | `digit_styles` / `mnist` | nothing: held-out handwritten digits like the training ones |
# | natural | `digit_styles` / `uci`, `printed`, `textured` | the *style* of the digit: blocky 8x8 scans, typeset fonts, photo backgrounds |
# | synthetic | `rotated_mnist` | the angle: domain `45` is the digits rotated by 45 degrees (0-75) |
# | synthetic | `colored_mnist` | the colour of the strokes: red for digits 0-4, green for 5-9 in 90 % (`+90`) or 80 % (`+80`) of the images, and the other way round in 90 % (`-90`, the tie flipped) |
# | corruption | `corrupted_mnist` | defocus blur, frost, gaussian noise at severities 1, 3, 5 |
# | molecular | `molecules_size`, `molecules_scaffold` | a different world altogether: drawings of molecules, labelled by solubility class |
#
# ## Running the protocol
# Every (dataset, domain, mode) is cached: rerunning this notebook with the same parameters recomputes nothing.

# %%
results = zero_shot.evaluate(model, DATASETS, modes=MODES, n_per_class=SAMPLES_PER_CLASS, sampling=SAMPLING,
                             seed=SEED, batch_size=BATCH_SIZE, prompt_style=PROMPT_STYLE, domains=DOMAINS or None,
                             generation=Generation(MAX_NEW_TOKENS, TEMPERATURE, SEED, SYSTEM_PROMPT))
infos = {name: catalog.open_dataset(name, seed=SEED)[1] for name in DATASETS}
chance = {name: zero_shot.chance_level(info) for name, info in infos.items()}
table = accuracy_table(results, ["mode", "family", "dataset", "domain"], n_boot=N_BOOT, seed=SEED)
table["chance"] = table["dataset"].map(chance)
# The majority baseline of the evaluated sample: always answering its most frequent class. The sample has N
# per class, so it equals chance unless a domain has fewer than N of some class (the molecule domains).
majority = results.groupby(["mode", "dataset", "domain"], sort=False)["label"].agg(
    lambda y: y.value_counts(normalize=True).max()).rename("majority").reset_index()
table = table.merge(majority, on=["mode", "dataset", "domain"], how="left")
print(f"{len(results)} answers from {results['model'].iloc[0]}; prompt style {PROMPT_STYLE!r}; chance = 1 / classes:",
      {name: round(c, 4) for name, c in chance.items()})
print("prompt of the first dataset and domain:\n" + zero_shot.build_prompt(infos[DATASETS[0]], infos[DATASETS[0]].domains[0],
                                                                           style=PROMPT_STYLE))
table.round(3)

# %% [markdown]
# ## Accuracy per dataset and domain
# Each cell is the accuracy on N samples per class; compare it with the chance level of the dataset,
# 1 / (number of classes) (printed above). One heatmap per scoring mode; the cell after them says where
# the two modes agree.

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
# **Where the two heatmaps agree.** Both modes score the same images, so their difference per domain has
# a paired interval: *agree* means it lies within ±5 points, *differ* that it lies beyond them.

# %%
if len(MODES) > 1:
    agreement = mode_agreement(results, MODES[:2], n_boot=N_BOOT, seed=SEED)
    for name, grp in agreement.groupby("dataset", sort=False):
        counts = grp["finding"].value_counts()
        print(f"{name:20s} {', '.join(f'{counts[k]} {k}' for k in ['agree', 'differ', 'inconclusive'] if k in counts)}"
              f" of {len(grp)} domains; identical item by item on {int(grp['identical'].sum())}")
    print("\nDomains where the modes differ or the interval is inconclusive ("
          f"{MODES[0]} - {MODES[1]}, points [95 % paired interval]):")
    odd = agreement[agreement["finding"] != "agree"]
    for r in odd.itertuples():
        print(f"  {r.dataset}/{r.domain}: {100 * r.difference:+.0f} [{100 * r.diff_low:+.0f}, {100 * r.diff_high:+.0f}]"
              f" -> {r.finding}")
    if odd.empty:
        print("  (none)")

# %% [markdown]
# ## ID versus OOD
# Each dataset's in-distribution reference is the parameter `ID_REFERENCE` (`dataset -> "dataset/domain"`;
# embedded profile: held-out MNIST, `digit_styles/mnist`, the model's training distribution). Below:
# accuracy per domain with its 95 % bootstrap interval, grouped by shift family, against each dataset's ID
# accuracy (solid tick, when it has a reference) and chance (grey tick). The table gives each domain's gap
# to its dataset's ID reference with a 95 % bootstrap interval of the difference. Where a domain's images
# are shifted copies of the reference's digits (rotated, coloured, corrupted, textured: `paired` is True),
# each digit is resampled together with its unshifted copy, so what a digit contributes to both cancels;
# other images (UCI scans, printed fonts) are independent samples of the same classes.

# %%
gaps = gap_table(results, zero_shot.id_reference(results, ID_REFERENCE), ID_REFERENCE, MODES, n_boot=N_BOOT,
                 seed=SEED)
gaps.round(3)

# %%
families = [f for f in ["natural", "synthetic", "corruption", "molecular", "hub"] if f in set(table["family"])]
for mode in MODES:
    sub = table[table["mode"] == mode]
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4), sharey=True, squeeze=False)
    for ax, fam in zip(axes[0], families):
        part = sub[sub["family"] == fam]
        doms = [f"{dom}°" if d == "rotated_mnist" else str(dom) for d, dom in zip(part["dataset"], part["domain"])]
        labels = [f"{d}\n{dom}" if len(set(part['dataset'])) > 1 else dom for d, dom in zip(part["dataset"], doms)]
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
if {"corrupted_mnist", "rotated_mnist"} & set(DATASETS):
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
# generate-mode error is a *format* failure rather than a wrong class. Only domains with at least one
# unparseable reply are drawn, beside their accuracy in the same mode.

# %%
if "generate" in MODES:
    pf = table[table["mode"] == "generate"].copy()
    pf["cell"] = pf["dataset"] + " / " + pf["domain"].astype(str)
    failing = pf[pf["parse_failure_rate"] > 0]
    print(f"{len(failing)} of {len(pf)} domains have unparseable replies")
    if len(failing):
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.35 * len(failing)))
        y = np.arange(len(failing))
        ax.barh(y - 0.2, failing["parse_failure_rate"] * 100, 0.4, color="C3", label="replies not parseable")
        ax.barh(y + 0.2, failing["accuracy"] * 100, 0.4, color="C0", label="accuracy (generate)")
        ax.set_yticks(y, failing["cell"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of the domain's replies")
        ax.set_ylabel("dataset / domain")
        ax.set_title("Replies the Answer Choice parser could not read (paper A's protocol)")
        ax.legend(fontsize=8, loc="lower right")
        save_figure(fig, "01_parse_failure_rate", failing)
        plt.show()
    print("examples of unparsed replies:", results.loc[~results["parsed"] & (results["mode"] == "generate"), "reply"].head(5).tolist())

# %% [markdown]
# ## What the numbers say — for this model
# Computed from the tables above, not written by hand. Each domain gets two findings from its intervals
# (margin ±5 points): against its ID reference (*clearly below ID*, *within the margin of ID*,
# *inconclusive*) and against chance (*above*, *at*, *below chance*, *inconclusive*). A generate-mode
# domain whose errors are mostly unparseable replies is a **format failure**: its low accuracy says that
# the model did not keep the reply format, not that it does not know the class, so it is never read as
# "below chance". Family means are given over the OOD domains only, and beside them with the ID domains
# included, to show how much those lift a mean.

# %%
findings = shift_findings(table, gaps, MARGIN)
id_cells = [zero_shot.parse_reference(r) for r in ID_REFERENCE.values()]
id_cells += [(name, info.id_domain) for name, info in infos.items() if info.id_domain]
means = family_means(table, id_cells).merge(
    table.groupby(["mode", "family"], sort=False)["accuracy"].mean().rename("with ID domains").reset_index(),
    on=["mode", "family"])
for mode in MODES:
    sub_gaps = gaps[gaps["mode"] == mode]
    id_acc = float(sub_gaps["id_accuracy"].mean()) if "id_accuracy" in sub_gaps and sub_gaps["id_accuracy"].notna().any() \
        else float("nan")
    print(f"[{mode}] ID-reference accuracy ({', '.join(sorted(set(ID_REFERENCE.values()))) or 'no reference'}): {id_acc:.1%}")
    for _, r in means[means["mode"] == mode].iterrows():
        f = findings[(findings["mode"] == mode) & (findings["family"] == r["family"])
                     & ~pd.Series([(d, str(dom)) in {(a, str(b)) for a, b in id_cells}
                                   for d, dom in zip(findings["dataset"], findings["domain"])], index=findings.index)]
        vs_id = ", ".join(f"{n} {k}" for k, n in f["vs_id"].value_counts().items())
        vs_ch = ", ".join(f"{n} {k}" for k, n in f["vs_chance"].value_counts().items())
        print(f"    {r['family']:11s} mean over {r['domains']} OOD domains {r['accuracy']:.1%} "
              f"(with the ID domains: {r['with ID domains']:.1%}; chance {r['chance']:.0%})\n"
              f"                vs ID: {vs_id}\n                vs chance: {vs_ch}")
print(f"\nmodel: {results['model'].iloc[0]}; datasets: {', '.join(DATASETS)}")
low = findings[findings["vs_chance"].isin(["at chance", "below chance", "inconclusive"])]
if len(low):
    print("\nDomains not clearly above chance: the majority baseline of the evaluated sample and the answers given")
    for r in low.itertuples():
        sub = results[(results["mode"] == r.mode) & (results["dataset"] == r.dataset) & (results["domain"] == r.domain)]
        top = sub["pred_name"].replace("", "(unparsed)").value_counts(normalize=True)
        maj = table[(table["mode"] == r.mode) & (table["dataset"] == r.dataset) & (table["domain"] == r.domain)]["majority"]
        print(f"  [{r.mode}] {r.dataset}/{r.domain}: accuracy {r.accuracy:.0%}, chance {r.chance:.0%}, majority baseline "
              f"{maj.iloc[0]:.0%}; most frequent answer {top.index[0]!r} in {top.iloc[0]:.0%} of {len(sub)} replies")
findings.round(3)
