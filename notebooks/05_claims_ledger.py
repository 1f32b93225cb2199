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
# # 05 — The claims ledger: every claim of both papers, one rule, one table
#
# This is the study's summary. Each of the notebooks 01–04 ends by deciding the claims it tests and writing
# them to `figures/NN_claims.csv`; this notebook gathers those rows with the catalogue of **every** claim of
# paper A (Zhang et al., arXiv 2402.06599) and paper B (Oh et al., ICML 2025, arXiv 2502.00577), the claims
# this study cannot test included, each with the reason.
#
# **One rule decides every row** (`mllm_ood.stats.rule`): the claim becomes a number measured here with a
# 95 % interval, and the interval is read against a stated margin:
#
# - *supported* — the interval clears the margin on the side the claim predicts, and the claim's exact
#   one-sided test stays significant after Holm's correction within its notebook;
# - *contradicted* — the interval lies wholly on the other side of the margin;
# - *inconclusive* — the interval reaches across the margin: these data cannot decide;
# - *not testable* — the data cannot carry the claim (no estimate, a ceiling, no copy of the data or model);
# - for zero-shot answers, *parse failure*, *off-list answer* and *constant answer*: the accuracy then
#   measures the reply, not what the claim is about.
#
# A correlation is compared with a published one through the interval of their difference against ±δ.
#
# **Which model made these numbers:** the `model` column of every row. In the default *embedded* profile it
# is the project's own small model trained on MNIST digits, on the offline embedded world, and the
# LLaVA-Bench answers that paper B released; those rows test whether the papers' claims hold *for that
# model and data*. They are **not** the papers' results and do not say whether the papers were right about
# their own models — the paper profile (hub models, GPU, internet) is the run that can.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mllm_ood.claims import gather, outcome_counts, prose
from mllm_ood.paths import claims_dir
from mllm_ood.plotting import save_figure
from mllm_ood.stats import ALPHA, DELTA_R, MARGIN, OUTCOMES

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke); nothing here shrinks: the ledger is a table
CLAIMS_DIR: str = "auto"  # folder holding the notebooks' NN_claims.csv ("auto": the figures folder this run publishes to)

# %%
# Every parameter checked by name before anything is read (one ParameterError naming it).
from mllm_ood.validation import boolean, check_parameters, text

check_parameters(globals(), SMOKE=boolean(), CLAIMS_DIR=text())

# %%
folder = claims_dir() if CLAIMS_DIR == "auto" else Path(CLAIMS_DIR)
ledger = gather(folder)
files = sorted(p.name for p in folder.glob("[0-9][0-9]_claims.csv"))
display(Markdown(f"Read {len(files)} claims files under `{folder}` ({', '.join(files) or 'none'}): "
                 f"{len(ledger)} rows for {ledger['claim_id'].nunique()} claims. Margin "
                 f"{100 * MARGIN:g} points for accuracies and gains, δ = {DELTA_R:g} for correlations, "
                 f"Holm at α = {ALPHA:g} within each notebook."))

# %% [markdown]
# ## Outcomes at a glance
#
# One row per claim *and scope* (a claim such as "accuracy drops under shift" is decided per dataset and
# scoring mode), so a claim can have several rows with different outcomes. The figure counts them per
# claim; the full ledger is the CSV beside it.

# %%
order = [o for o in (*OUTCOMES, "not run") if o in set(ledger["outcome"])]
per_claim = pd.crosstab(ledger["claim_id"], ledger["outcome"]).reindex(index=ledger["claim_id"].unique(), columns=order,
                                                                          fill_value=0)
colours = {"supported": "#1b9e77", "contradicted": "#d95f02", "inconclusive": "#bbbbbb", "not testable": "#e6e6e6",
           "parse failure": "#7570b3", "off-list answer": "#e7298a", "constant answer": "#66a61e", "not run": "#ffffff"}
fig, ax = plt.subplots(figsize=(8, 0.32 * len(per_claim) + 1.5))
per_claim.iloc[::-1].plot.barh(stacked=True, ax=ax, color=[colours[o] for o in order], width=0.8, edgecolor="#555555")
models = sorted({m.split(" (", 1)[0] if m.startswith("embedded") else m
                 for row in ledger["model"].dropna() for m in str(row).split(", ")})
ax.set(title="Claims of paper A and paper B: outcome of each row (one rule)\nmodels: " + "; ".join(models),
       xlabel="rows (claim x scope)", ylabel="claim id")
ax.legend(title="outcome", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
save_figure(fig, "05_claims_ledger", ledger);

# %%
display(outcome_counts(ledger).rename_axis(index="paper", columns="rows with outcome"))

# %% [markdown]
# ## The ledger, claim by claim
#
# Each claim as the paper states it, then every scope this study decided it for, with the number and its
# 95 % interval (points for accuracies and gains, r for correlations), or the reason it is not testable.

# %%
for paper in ("A", "B"):
    display(Markdown(f"### Paper {paper}\n\n" + prose(ledger[ledger["paper"] == paper])))

# %% [markdown]
# ## Where each number comes from
#
# The estimand, model, data and evidence (figure or table) of every decided row; the full table, with
# p-values, is `figures/05_claims_ledger.csv`.

# %%
with pd.option_context("display.max_colwidth", None, "display.max_rows", 200):
    decided = ledger[ledger["estimand"].notna() & (ledger["estimand"] != "")]
    display(decided[["claim_id", "scope", "estimand", "model", "evidence"]].drop_duplicates(
        ["claim_id", "estimand", "model", "evidence"]).reset_index(drop=True))
