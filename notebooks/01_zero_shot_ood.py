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

from IPython.display import Markdown, display

from mllm_ood.claims import prose, write_claims
from mllm_ood.data import catalog
from mllm_ood.mllm import in_words, load_model, usable_modes
from mllm_ood.paper_a import ledger_rows, zero_shot
from mllm_ood.paper_a.evaluation import accuracy_table, family_means, gap_table, mode_agreement, severity_table
from mllm_ood.paper_a.outcomes import answer_table
from mllm_ood.plotting import save_figure, save_table, yerr
from mllm_ood.stats import MARGIN, rule_text

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
WORDS = in_words(model)  # how figures and the ledger name the model
print(model, "|", model.fingerprint, "|", WORDS)

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
print(f"{len(results)} answers from the {WORDS} ({results['model'].iloc[0]}); prompt style {PROMPT_STYLE!r}; "
      f"chance = 1 / classes:", {name: round(c, 4) for name, c in chance.items()})
print("prompt of the first dataset and domain:\n" + zero_shot.build_prompt(infos[DATASETS[0]], infos[DATASETS[0]].domains[0],
                                                                           style=PROMPT_STYLE))
print("every domain's accuracy with its interval:", "figures/" + save_table(table.round(4), "01_accuracy_table").name)

# %% [markdown]
# ## Do the two scoring modes agree?
# Both modes score the same images, so they can be compared image by image. Where a dataset's answers are
# the same in both modes on every image of every domain, the figures below draw it once, as *both modes*;
# where they differ, each mode gets its own row or marker.

# %%
agreement = mode_agreement(results, MODES[:2], n_boot=N_BOOT, seed=SEED) if len(MODES) > 1 else None
both = set() if agreement is None else set(agreement.groupby("dataset")["identical"].all().loc[lambda s: s].index)
view = table[~(table["dataset"].isin(both) & (table["mode"] != MODES[0]))].copy()
view["shown"] = np.where(view["dataset"].isin(both), "both modes", view["mode"])
if agreement is not None:
    apart = [d for d in DATASETS if d not in both]
    diffs = "; ".join(f"{r.dataset}/{r.domain} {100 * r.difference:+.0f}"
                      for r in agreement[agreement["dataset"].isin(apart)].itertuples())
    display(Markdown(f"The two modes give **the same answer on every image** of {', '.join(sorted(both)) or 'no dataset'}: "
                     f"the figures below draw them once. " + (f"They differ on {', '.join(apart)} ({MODES[0]} - "
                     f"{MODES[1]}, points: {diffs})." if apart else "They differ on no dataset.")))

# %% [markdown]
# ## Accuracy per dataset and domain
# Each cell is the accuracy on N samples per class; each row's label gives its chance level, 1 / (number of
# classes). One heatmap: a dataset whose two modes agree image by image has one row.

# %%
view["row"] = [f"{d} ({m}), chance {100 * c:.0f} %" for d, m, c in zip(view["dataset"], view["shown"], view["chance"])]
pivot = view.pivot_table(index="row", columns="domain", values="accuracy", sort=False)
fig, ax = plt.subplots(figsize=(min(3 + 0.75 * pivot.shape[1], 22), 1.2 + 0.55 * pivot.shape[0]))
sns.heatmap(pivot * 100, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax,
            cbar_kws={"label": "accuracy (%)"})
ax.set_title(f"Zero-shot accuracy (%) of the {WORDS}")
ax.set_xlabel("domain")
ax.set_ylabel("dataset (scoring mode), chance")
save_figure(fig, "01_zero_shot_accuracy_heatmap", view)
plt.show()

# %% [markdown]
# ## ID versus OOD
# Each dataset's in-distribution reference is the parameter `ID_REFERENCE` (`dataset -> "dataset/domain"`;
# embedded profile: held-out MNIST, `digit_styles/mnist`, the model's training distribution). Below:
# accuracy per domain with its 95 % bootstrap interval, grouped by shift family, against each dataset's ID
# accuracy (green tick, when it has a reference) and chance (grey tick). Where a domain's images are
# shifted copies of the reference's digits (rotated, coloured, corrupted, textured: `paired`), each digit
# is resampled together with its unshifted copy, so what a digit contributes to both cancels; other images
# (UCI scans, printed fonts) are independent samples of the same classes. The gaps with their intervals
# go to a CSV; the claim they decide is read at the end of the notebook.

# %%
gaps = gap_table(results, zero_shot.id_reference(results, ID_REFERENCE), ID_REFERENCE, MODES, n_boot=N_BOOT,
                 seed=SEED)
print("gap to the ID reference per domain and mode:", "figures/" + save_table(gaps.round(4), "01_id_gaps").name)
if "paired" in gaps:
    print(gaps.groupby("dataset", sort=False)["paired"].agg(lambda p: "paired" if p.all() else "independent"
                                                             if not p.any() else "mixed").to_string())

# %%
families = [f for f in ["natural", "synthetic", "corruption", "molecular", "hub"] if f in set(view["family"])]
fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4.2), sharey=True, squeeze=False)
for ax, fam in zip(axes[0], families):
    part = view[view["family"] == fam]
    cells = list(dict.fromkeys(zip(part["dataset"], part["domain"])))
    x_of = {c: k for k, c in enumerate(cells)}
    for j, (shown, grp) in enumerate(part.groupby("shown", sort=False)):
        x = np.array([x_of[c] for c in zip(grp["dataset"], grp["domain"])]) + 0.15 * (j - 0.5) * (shown != "both modes")
        ax.errorbar(x, grp["accuracy"] * 100, yerr=yerr(grp), fmt="os^"[j % 3], capsize=3, label=shown, color=f"C{j}")
    ref = gaps.drop_duplicates(["dataset", "domain"]).set_index(["dataset", "domain"])
    ids = [ref["id_accuracy"].get(c, np.nan) * 100 if "id_accuracy" in ref else np.nan for c in cells]
    ax.scatter(range(len(cells)), ids, marker="_", s=300, color="C2", label="ID accuracy (its reference)")
    ax.scatter(range(len(cells)), [100 * chance[d] for d, _ in cells], marker="_", s=300, color="grey", label="chance")
    ax.set_xticks(range(len(cells)), [f"{d}\n{dom}" if len({d for d, _ in cells}) > 1 else str(dom) for d, dom in cells],
                  rotation=60, fontsize=7)
    ax.set_title(fam)
    ax.set_xlabel("domain")
axes[0][0].set_ylabel("accuracy (%)")
for k, (ax, fam) in enumerate(zip(axes[0], families)):  # a legend wherever the two modes are drawn apart
    if k == 0 or set(view[view["family"] == fam]["shown"]) != {"both modes"}:
        ax.legend(fontsize=7)
fig.suptitle(f"ID vs OOD accuracy of the {WORDS}, with 95 % bootstrap intervals")
fig.tight_layout()
save_figure(fig, "01_id_vs_ood_gap", view.merge(gaps, on=["mode", "family", "dataset", "domain", "accuracy"], how="left"))
plt.show()

# %% [markdown]
# ## Accuracy against the strength of the shift
# Left: each corruption as its severity grows (severity 0 = the clean images). Right: accuracy against
# the rotation angle. A model that has learned the digits rather than the training pixels degrades
# gracefully; a steep fall at small shifts means the learned mapping is brittle.

# %%
if {"corrupted_mnist", "rotated_mnist"} & set(DATASETS):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sev = severity_table(view)
    for (shown, kind), grp in sev.groupby(["shown", "corruption"]) if len(sev) else []:
        grp = grp.sort_values("severity")
        axes[0].errorbar(grp["severity"], grp["accuracy"] * 100, yerr=yerr(grp), marker="o", capsize=3,
                         label=f"{kind} ({shown})", linestyle="--" if shown == "generate" else "-")
    axes[0].set_title("Accuracy vs corruption severity")
    axes[0].set_xlabel("severity (0 = clean)")
    rot = view[view["dataset"] == "rotated_mnist"].copy()
    for shown, grp in rot.groupby("shown"):
        grp = grp.assign(angle=grp["domain"].astype(int)).sort_values("angle")
        axes[1].errorbar(grp["angle"], grp["accuracy"] * 100, yerr=yerr(grp), marker="o", capsize=3, label=shown)
    axes[1].set_title("Accuracy vs rotation angle")
    axes[1].set_xlabel("rotation (degrees)")
    for ax in axes:
        ax.axhline(100 * chance.get("rotated_mnist", chance.get("corrupted_mnist", 0.1)), color="grey", linestyle=":",
                   label="chance")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
        ax.set_ylim(0, 100)
    fig.suptitle(f"The {WORDS} against the strength of the shift")
    fig.tight_layout()
    save_figure(fig, "01_accuracy_vs_shift_strength", pd.concat([sev, rot.assign(corruption="rotation")]))
    plt.show()

# %% [markdown]
# ## What the answers are: parse failure, off-list answer, constant answer
# Paper A counts a reply it cannot read as wrong. But a low accuracy can mean three different things, and
# none of them is "the model does not know the class":
#
# - **parse failure**: the reply does not have the asked-for form `Answer Choice: [...]` at all;
# - **off-list answer**: a well-formed reply that names something *outside* the choice list — the
#   embedded model, trained only on digits, answers a molecule with `Answer Choice: [three]`: it keeps the
#   format and answers with the only classes it knows;
# - **constant answer**: (nearly) the same answer for every image — its accuracy is that class's share of
#   the sample, whatever the images show.
#
# A domain is given one of these outcomes when it explains the errors (`mllm_ood.stats.answer_outcome`:
# parse failures or off-list answers above the margin and at least half of the errors; one answer for at
# least 90 % of the images); such a domain's accuracy tests no claim. The table counts the domains per
# dataset and mode; a few replies follow, in full.

# %%
answers = answer_table(results, {name: info.class_names for name, info in infos.items()})
save_table(answers, "01_answer_outcomes")
odd = answers[answers["outcome"] != ""]
print(f"{len(odd)} of {len(answers)} (domain, mode) cells have an answer outcome")
pd.set_option("display.max_colwidth", None)
(odd.groupby(["dataset", "mode", "outcome"], sort=False)
 .agg(domains=("domain", "size"), accuracy=("accuracy", "mean"), parse_failure=("parse_failure", "mean"),
      off_list=("off_list", "mean"), top_answer=("top_answer", "first"), top_answer_share=("top_answer_share", "mean"))
 .round(2).reset_index())

# %%
shown_replies = results.merge(odd[["mode", "dataset", "domain", "outcome"]], on=["mode", "dataset", "domain"])
shown_replies = shown_replies[shown_replies["mode"] == "generate"].groupby("outcome").head(2)
shown_replies[["dataset", "domain", "label_name", "outcome", "reply"]] if len(shown_replies) else print("(no generated replies to show)")

# %% [markdown]
# ## Family means, for orientation
# Means over each family's OOD domains (the ID domains left out, and beside them with the ID domains, to
# show how much those lift a mean). Descriptive only: the claims are read per domain, below.

# %%
id_cells = [zero_shot.parse_reference(r) for r in ID_REFERENCE.values()]
id_cells += [(name, info.id_domain) for name, info in infos.items() if info.id_domain]
means = family_means(table, id_cells).merge(
    table.groupby(["mode", "family"], sort=False)["accuracy"].mean().rename("with ID domains").reset_index(),
    on=["mode", "family"])
means.round(3)

# %% [markdown]
# ## Paper A's zero-shot claims, decided by the rule
# Two claims of paper A are tested here, per domain and scoring mode (one row where both modes give the
# same answers), by the one decision rule of the study (`mllm_ood.stats.rule`, margin 5 accuracy points):
#
# - **A-ZS1, accuracy drops under shift.** Estimand: ID accuracy minus the domain's accuracy, paired by
#   source image where the domain is shifted copies of the ID digits. *Supported* when the 95 % interval
#   lies above +5 points (a drop larger than the margin) and the exact one-sided p-value (sign-flip /
#   McNemar for pairs, Fisher's exact test otherwise) stays below 0.05 after Holm's correction over this
#   notebook's family; *contradicted* when the interval lies below +5 points (any drop is smaller than the
#   margin); *inconclusive* otherwise. Datasets without an ID reference cannot test it.
# - **A-ZS2, near chance on specialised data** (here: the molecule drawings). "Near chance" is read as *not
#   above chance by more than the margin*, and chance as the best accuracy a guess that ignores the image
#   reaches on the evaluated sample: the larger of 1 / classes and the share of its most frequent class
#   (a domain short of one class has a majority baseline above 1 / classes). The estimand is accuracy
#   minus that guess: *supported* when its interval lies below +5 points, *contradicted* when it lies above
#   them (exact binomial p, Holm), *inconclusive* otherwise. A domain whose answers are an answer outcome
#   (above) gets that outcome instead: an off-list or constant answer is not a measured accuracy.

# %%
specialised = ledger_rows.specialised(infos)
rows = ledger_rows.zero_shot_rows(results, answers, zero_shot.id_reference(results, ID_REFERENCE), id_cells,
                                  specialised, n_boot=N_BOOT, seed=SEED)
rows += ledger_rows.untested_rows("A-ZS1", [(n, "") for n in DATASETS if n not in ID_REFERENCE],
                                  "no in-distribution reference (ID_REFERENCE names none) to drop from",
                                  ledger_rows.ZS1_ESTIMAND, "01_id_vs_ood_gap")
if not specialised:
    rows += ledger_rows.untested_rows("A-ZS2", [("all datasets", "")], "no specialised (medical or molecular) "
                                      "dataset among DATASETS", ledger_rows.ZS2_ESTIMAND, "01_zero_shot_accuracy_heatmap")
claims = ledger_rows.ledger_for(rows, "01", f"{WORDS} ({model.fingerprint})")
claims = write_claims(claims.to_dict("records"), "01")
print("rule:", rule_text("effect"), "| A-ZS2:", rule_text("no effect"))
ledger_rows.outcome_counts(claims)

# %% [markdown]
# Domains per claim and outcome (above); a few of the rows (all of them: `figures/01_claims.csv`), largest
# drops first:

# %%
few = claims.assign(points=(100 * claims["estimate"]).round(1), low_pts=(100 * claims["low"]).round(1),
                    high_pts=(100 * claims["high"]).round(1))
few.sort_values("estimate", ascending=False).groupby("claim_id").head(4)[
    ["claim_id", "scope", "points", "low_pts", "high_pts", "p_holm", "outcome"]]

# %% [markdown]
# ## What the numbers say — for this model
# The ledger rows of this notebook, in words (computed from the table, not written by hand). They describe
# the model named above on the embedded world, not paper A's models or datasets.

# %%
display(Markdown(prose(claims)))
