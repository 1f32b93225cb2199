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
# # 02 — Why does zero-shot fail? Paper A's three hypotheses
#
# Paper A (Zhang et al., arXiv 2402.06599) asks why MLLMs fail outside their training domains and tests
# three explanations:
#
# 1. **Semantic misinterpretation** — the model does not understand what the class names mean in this
#    domain. Test: enrich the prompt with class descriptions and with domain context. If accuracy rises,
#    the words were the problem. (Paper A: it did not help.)
# 2. **Visual feature insufficiency** — the vision encoder does not extract what is needed. Test: a
#    linear probe on the frozen vision features, trained on labelled examples of the OOD domain. If the
#    probe is far above zero-shot, the features carry the information. (Paper A: they do.)
# 3. **Mapping deficiency** — the information is there, but the model cannot map it to the label. Test:
#    a probe on the language model's hidden state at the answer position: if even that state separates
#    the classes while the generated answer is wrong, the failure is in the last step, the mapping.
#
# The verdict at the end is computed from the numbers and their intervals, per dataset.
# **Model and data:** `MODEL` on `DATASETS`; in the embedded profile, the project's own small model on the
# offline embedded world — not paper A's models or datasets.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mllm_ood import features, hypotheses, zero_shot
from mllm_ood.data import catalog
from mllm_ood.features import ood_domains
from mllm_ood.models import load_model
from mllm_ood.plotting import save_figure, yerr

# %% tags=["parameters"]
SMOKE: bool = False  # same model, tiny samples, first 2 datasets (tests)
MODEL: str = "data/models/embedded_mllm"  # local checkpoint (relative to the repo root) or hub id
DATASETS: list = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size", "molecules_scaffold"]  # datasets whose OOD domains are tested
MODE: str = "generate"  # zero-shot answer mode: "generate" (paper A's parser) or "loglik"
SAMPLES_PER_CLASS: int = 20  # zero-shot samples per domain x class (as notebook 01, so its cache is reused)
PROBE_PER_CLASS: int = 60  # samples per domain x class for probes, split half/half into train/test
LEARNING_CURVE: list = [1, 2, 4, 8, 16, 32]  # labelled examples per class for the probe learning curve
SEED: int = 0  # seed for splits, CV folds and bootstrap
N_BOOT: int = 1000  # bootstrap resamples per interval
BATCH_SIZE: int = 64  # queries per forward pass
PROMPT_STYLE: str = "short"  # "short" (one line; fits the embedded model) or "paper_a" (paper A's template and parser)
ID_REFERENCE: dict = {}  # dataset -> its in-distribution reference "dataset/domain", left out of the OOD domains (embedded datasets default to their own ID domain)
PROBE_FEATURES: str = "model"  # the vision probe's features: "model" (the MLLM's own tower) or "clip" (paper A: frozen CLIP ViT-B/16 image embeddings, openai/clip-vit-base-patch16; or a CLIP hub id / folder)

# %%
# Every parameter checked by name before anything loads (one ParameterError naming it).
from mllm_ood.prompts import PROMPT_STYLES
from mllm_ood.validation import (MAX_PER_CLASS, boolean, check_parameters, integer, listing, model_reference, naming,
                                 require, satisfies, seed, text)

check_parameters(globals(), SMOKE=boolean(), MODEL=model_reference(),
                 DATASETS=listing(choices=catalog.known_names()), MODE=text(choices=zero_shot.MODES),
                 SAMPLES_PER_CLASS=integer(1, MAX_PER_CLASS), PROBE_PER_CLASS=integer(2, MAX_PER_CLASS),
                 LEARNING_CURVE=listing(integer(1), increasing=True), SEED=seed(), N_BOOT=integer(1, 100_000),
                 BATCH_SIZE=integer(1, 4096), PROMPT_STYLE=text(choices=PROMPT_STYLES),
                 ID_REFERENCE=satisfies(lambda v: isinstance(v, dict), "a mapping dataset -> 'dataset/domain'"),
                 PROBE_FEATURES=features.check_probe_features)
with naming("ID_REFERENCE", "DATASETS"):
    zero_shot.validate_id_reference(ID_REFERENCE, DATASETS)
require(min(LEARNING_CURVE) <= PROBE_PER_CLASS // 2, "LEARNING_CURVE", LEARNING_CURVE,
        f"needs a value <= PROBE_PER_CLASS // 2 = {PROBE_PER_CLASS // 2} (the probe's training half per class)")

# %%
datasets = DATASETS[:2] if SMOKE else DATASETS
n_zs = 1 if SMOKE else SAMPLES_PER_CLASS
n_probe = 6 if SMOKE else PROBE_PER_CLASS
curve = [k for k in LEARNING_CURVE if k <= n_probe // 2] or [1]  # values above the training half are skipped
n_boot = 100 if SMOKE else N_BOOT
zero_shot.validate(datasets, [MODE], n_zs, "first", prompt_style=PROMPT_STYLE)
model = features.with_probe_features(load_model(MODEL), PROBE_FEATURES)  # the vision probe reads CLIP for "clip"
infos = {name: catalog.open_dataset(name, seed=SEED)[1] for name in datasets}
ood = {name: ood_domains(infos[name], ID_REFERENCE.get(name)) for name in datasets}  # the domains tested per dataset
print(model, "|", model.fingerprint)

# %% [markdown]
# ## Hypothesis 1: richer prompts
# The same images, three prompts: paper A's plain prompt; the prompt with a one-line description of each
# class (what a *seven* looks like); the prompt with a sentence on the domain (e.g. "the digit is rotated
# by 45 degrees"). Only OOD domains are used.

# %%
variant_results = []
for variant in zero_shot.PROMPT_VARIANTS:
    res = zero_shot.evaluate(model, datasets, modes=[MODE], n_per_class=n_zs, seed=SEED,
                             batch_size=BATCH_SIZE, variant=variant, prompt_style=PROMPT_STYLE)
    variant_results.append(res)
zs = pd.concat(variant_results, ignore_index=True)
zs = zs[[d in ood[n] for n, d in zip(zs["dataset"], zs["domain"])]]
print("example prompt with descriptions:\n", zero_shot.build_prompt(infos[datasets[0]], ood[datasets[0]][0], "descriptions",
                                                                      style=PROMPT_STYLE))

# %% [markdown]
# ## Hypotheses 2 and 3: linear probes
# Within each OOD domain, a fixed stratified split: half the samples train a logistic-regression probe
# (its regularisation chosen by cross-validation on the training half only), the other half test it.
# Three feature sets: the pooled vision-tower output (what the projector reads), the language model's
# hidden state where the answer's first token is predicted (under the plain prompt), and raw pixels as
# a floor.

# %%
probe_table, probe_items = hypotheses.probe_tables(model, datasets, ood, n_probe, seed=SEED, batch_size=BATCH_SIZE,
                                                   prompt_style=PROMPT_STYLE, n_boot=n_boot)
probe_table.round(3)

# %% [markdown]
# ## The comparison per dataset
# Zero-shot (plain, +descriptions, +domain context) against the three probes, pooled over each dataset's
# OOD domains, with 95 % bootstrap intervals and chance.

# %%
chance = {name: zero_shot.chance_level(infos[name]) for name in datasets}
comparison = hypotheses.comparison(zs, probe_items, chance, zero_shot.PROMPT_VARIANTS, n_boot=n_boot, seed=SEED)
methods = list(dict.fromkeys(comparison["method"]))
fig, ax = plt.subplots(figsize=(max(8, 1.9 * len(datasets)), 4.5))
width = 0.8 / len(methods)
for j, m in enumerate(methods):
    part = comparison[comparison["method"] == m]
    xs = np.arange(len(datasets)) + (j - len(methods) / 2 + 0.5) * width
    ax.bar(xs, part["accuracy"] * 100, width, label=m,
           yerr=yerr(part), capsize=2)
for i, name in enumerate(datasets):
    ax.hlines(comparison[comparison["dataset"] == name]["chance"].iloc[0] * 100, i - 0.45, i + 0.45,
              colors="k", linestyles=":", label="chance" if i == 0 else None)
ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20)
ax.set_xlabel("dataset (OOD domains pooled)")
ax.set_ylabel("accuracy (%)")
ax.set_ylim(0, 105)
ax.set_title(f"Zero-shot vs probes on OOD domains ({zs['model'].iloc[0]}, mode {MODE})")
ax.legend(fontsize=7, ncol=2)
save_figure(fig, "02_hypotheses_zero_shot_vs_probes", comparison)
plt.show()
comparison.round(3)

# %% [markdown]
# ## How many labelled examples does the probe need?
# Vision-feature probe accuracy against the number of labelled examples per class (training half only;
# same test half). Notebook 03 puts the in-context-learning curve beside it: ICL sees the same kind of
# evidence — a few labelled examples — but through the prompt instead of a trained classifier.

# %%
curve_table = hypotheses.probe_curves(model, datasets, ood, n_probe, curve, seed=SEED, batch_size=BATCH_SIZE,
                                      n_boot=n_boot)
summary_curve = curve_table.groupby(["dataset", "per_class"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, grp in summary_curve.groupby("dataset", sort=False):
    ax.errorbar(grp["per_class"], grp["mean"] * 100, yerr=grp["std"].fillna(0) * 100, marker="o", capsize=3, label=name)
ax.set_xscale("log", base=2)
ax.set_xlabel("labelled examples per class (log scale)")
ax.set_ylabel("probe accuracy (%), mean ± sd over OOD domains")
ax.set_title("Vision-feature probe: accuracy vs labelled examples")
ax.legend(fontsize=8)
save_figure(fig, "02_probe_learning_curve", curve_table)
plt.show()

# %% [markdown]
# ## Verdict — computed, per dataset
# Rules of `mllm_ood.hypotheses.verdict` (95 % bootstrap intervals of differences, so "clearly" means the
# interval excludes zero):
# - **H1 semantic misinterpretation** is supported when a richer prompt (descriptions or domain context)
#   clearly raises zero-shot accuracy over the plain prompt.
# - **H2 visual feature insufficiency** is rejected when the vision probe is clearly above zero-shot
#   (the features carry the class); otherwise it cannot be ruled out.
# - **H3 mapping deficiency** is supported when H2 is rejected, the LM answer-state probe is also clearly
#   above zero-shot (the evidence reaches the language model), and no richer prompt closes the gap.

# %%
verdict_table = hypotheses.verdict(zs, probe_items, datasets, n_boot=n_boot, seed=SEED)
matches = verdict_table["H3 supported"].sum()
print(f"Paper A's pattern (H1 no, H2 rejected, H3 yes) holds for {matches} of {len(verdict_table)} datasets "
      f"for model {zs['model'].iloc[0]}.")
if matches < len(verdict_table):
    print("Where it does not hold, this model does NOT show paper A's pattern; see the verdict column.")
verdict_table.round(3)
