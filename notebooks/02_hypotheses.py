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
#    the classes while the answer is wrong, the failure is in the last step, the mapping. (Paper A's
#    conclusion.)
#
# Everything is decided **per OOD domain** (pooling a dataset's domains can hide opposite results) and
# under **both scoring modes** of notebook 01 (generate + parse, and log-likelihood choice scoring), as
# paper A's claims **A-H1** (richer prompts do not help), **A-H2** (the vision features suffice) and
# **A-H3** (the mapping is the hurdle), by the study's one decision rule (`mllm_ood.stats.rule`: a 95 %
# interval against a 5-point margin, exact p-values with Holm's correction over this notebook's claims).
# *Supported* always means: paper A's claim holds on that domain.
# **Model and data:** `MODEL` on `DATASETS`; in the embedded profile, the project's own small model on the
# offline embedded world — not paper A's models or datasets.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mllm_ood.claims import prose, write_claims
from mllm_ood.data import catalog
from mllm_ood.formats.prompts import class_descriptions, domain_context
from mllm_ood.mllm import in_words, load_model
from mllm_ood.paper_a import features, hypotheses, ledger_rows, probe_protocol, zero_shot
from mllm_ood.paper_a.evaluation import accuracy_table
from mllm_ood.paper_a.features import ood_domains
from mllm_ood.paper_a.outcomes import answer_table
from mllm_ood.plotting import save_figure, save_table, yerr
from mllm_ood.stats import rule_text

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke); the smoke sizes are the YAML's smoke: values
MODEL: str = "data/models/embedded_mllm"  # local checkpoint (relative to the repo root) or hub id
DATASETS: list = ["digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size", "molecules_scaffold"]  # datasets whose OOD domains are tested
MODES: list = ["generate", "loglik"]  # zero-shot scoring modes: "generate" (paper A's parser) and "loglik" (choice log-likelihood)
SAMPLES_PER_CLASS: int = 20  # zero-shot samples per domain x class (as notebook 01, so its cache is reused)
PROBE_PER_CLASS: int = 60  # samples per domain x class for probes, split half/half into train/test
LEARNING_CURVE: list = [1, 2, 4, 8, 16, 32]  # labelled examples per class for the probe learning curve
SEED: int = 0  # seed for splits, CV folds and bootstrap
N_BOOT: int = 1000  # bootstrap resamples per interval
BATCH_SIZE: int = 64  # queries per forward pass
PROMPT_STYLE: str = "short"  # "short" (one line; fits the embedded model) or "paper_a" (paper A's template and parser)
ID_REFERENCE: dict = {"rotated_mnist": "digit_styles/mnist", "colored_mnist": "digit_styles/mnist", "corrupted_mnist": "digit_styles/mnist"}  # dataset -> its in-distribution reference "dataset/domain" (datasets left out: their own ID domain, if any); left out of the OOD domains when in the same dataset
MAX_NEW_TOKENS: int = 16  # cap on a generated reply (it runs until the model stops); paper A's harness: 1024
TEMPERATURE: float = 0.0  # 0.0 means greedy, reproducible; paper A sampled at 0.2, seeded here by SEED
SYSTEM_PROMPT: str = "none"  # "none" or "card" (the model card's / its authors' conversation template's system prompt)
PROBE_FEATURES: str = "model"  # the vision probe's features: "model" (the MLLM's own tower) or "clip" (paper A: frozen CLIP ViT-B/16 image embeddings, openai/clip-vit-base-patch16; or a CLIP hub id / folder)
PROBE_PROTOCOL: str = "project"  # the probe protocol: "project" (standardised, C cross-validated, every class) or "paper_a" (paper A: C 0.316, no scaling, its class pair where it names one, BGR / ImageNet preprocessing for CLIP)

# %%
# Every parameter checked by name before anything loads (one ParameterError naming it).
from mllm_ood.formats.prompts import PROMPT_STYLES
from mllm_ood.validation import (MAX_PER_CLASS, boolean, check_parameters, integer, listing, naming, number, require,
                                 satisfies, seed, text)
from mllm_ood.mllm import capabilities_of, model_reference
from mllm_ood.mllm.generation import SYSTEM_PROMPTS, Generation

check_parameters(globals(), SMOKE=boolean(), MODEL=model_reference(),
                 DATASETS=listing(choices=catalog.known_names()), MODES=listing(choices=zero_shot.MODES),
                 SAMPLES_PER_CLASS=integer(1, MAX_PER_CLASS), PROBE_PER_CLASS=integer(2, MAX_PER_CLASS),
                 LEARNING_CURVE=listing(integer(1), increasing=True), SEED=seed(), N_BOOT=integer(1, 100_000),
                 BATCH_SIZE=integer(1, 4096), PROMPT_STYLE=text(choices=PROMPT_STYLES),
                 ID_REFERENCE=satisfies(lambda v: isinstance(v, dict), "a mapping dataset -> 'dataset/domain'"),
                 PROBE_FEATURES=features.check_probe_features, MAX_NEW_TOKENS=integer(1, 32768),
                 TEMPERATURE=number(0, 5), SYSTEM_PROMPT=text(choices=SYSTEM_PROMPTS),
                 PROBE_PROTOCOL=text(choices=probe_protocol.PROTOCOLS))
with naming("ID_REFERENCE", "DATASETS"):
    zero_shot.validate_id_reference(ID_REFERENCE, DATASETS)
require({"vision_features", "answer_state"} <= capabilities_of(MODEL), "MODEL", MODEL,
        "the probes of hypotheses 2 and 3 read the model's vision features and hidden states, which this model does "
        "not offer (a model behind an endpoint has no weights here: use a checkpoint folder or hub id)")
require(min(LEARNING_CURVE) <= PROBE_PER_CLASS // 2, "LEARNING_CURVE", LEARNING_CURVE,
        f"needs a value <= PROBE_PER_CLASS // 2 = {PROBE_PER_CLASS // 2} (the probe's training half per class)")

# %%
curve = [k for k in LEARNING_CURVE if k <= PROBE_PER_CLASS // 2] or [1]
if len(curve) < len(LEARNING_CURVE):
    print(f"LEARNING_CURVE: {[k for k in LEARNING_CURVE if k not in curve]} left out: the probe's training half "
          f"holds at most {PROBE_PER_CLASS // 2} examples per class (PROBE_PER_CLASS = {PROBE_PER_CLASS}, split "
          f"half/half)")
zero_shot.validate(DATASETS, MODES, SAMPLES_PER_CLASS, "first", prompt_style=PROMPT_STYLE)
model = features.with_probe_features(load_model(MODEL), PROBE_FEATURES,  # the vision probe reads CLIP for "clip"
                                     preprocess=probe_protocol.PREPROCESSING[PROBE_PROTOCOL])
infos = {name: catalog.open_dataset(name, seed=SEED)[1] for name in DATASETS}
ood = {name: ood_domains(infos[name], ID_REFERENCE.get(name)) for name in DATASETS}  # the domains tested per dataset
# Each dataset's ID reference: ID_REFERENCE, else its own ID domain (none for the molecule sets).
references = {name: ID_REFERENCE.get(name) or f"{name}/{infos[name].id_domain}" for name in DATASETS
              if ID_REFERENCE.get(name) or infos[name].id_domain}
WORDS = in_words(model)  # how figures and the ledger name the model
print(model, "|", model.fingerprint, "|", WORDS)
print("ID references:", references, "| no reference:", [d for d in DATASETS if d not in references])
print(probe_protocol.describe(PROBE_PROTOCOL, DATASETS, {name: infos[name].class_names for name in DATASETS}))

# %% [markdown]
# ## Hypothesis 1: richer prompts
# The same images, three prompts: paper A's plain prompt; the prompt with a one-line description of each
# class (what a *seven* looks like); the prompt with a sentence on the domain (e.g. "the digit is rotated
# by 45 degrees"). Each answer is scored in both modes.
#
# **A confound to check first, prompt by prompt.** A richer prompt only tests hypothesis 1 if the model
# reads it as it reads the plain one. A model whose language side never saw such prompts may simply be
# thrown off by the longer text. The check: each richer prompt on its dataset's own **ID reference
# domain**, where the model knows the classes. A prompt that lowers accuracy there by more than the 5-point
# margin (by the rule) is *confounded* for that dataset and left out of its A-H1 reading; the other prompt
# still counts. A dataset without an ID reference (the molecules) cannot check its prompts, so nothing
# flags them there.

# %%
variant_results = []
for variant in zero_shot.PROMPT_VARIANTS:
    res = zero_shot.evaluate(model, DATASETS, modes=MODES, n_per_class=SAMPLES_PER_CLASS, seed=SEED,
                             batch_size=BATCH_SIZE, variant=variant, prompt_style=PROMPT_STYLE,
                             generation=Generation(MAX_NEW_TOKENS, TEMPERATURE, SEED, SYSTEM_PROMPT))
    variant_results.append(res)
zs_all = pd.concat(variant_results, ignore_index=True)  # every domain, the ID references included
zs = zs_all[[name in ood and d in ood[name] for name, d in zip(zs_all["dataset"], zs_all["domain"])]]
effects = hypotheses.prompt_effects(zs_all, ood, references, MODES, n_boot=N_BOOT, seed=SEED)
save_table(effects.round(4), "02_prompt_effects")
confounds = effects[effects["role"] == "ID reference"]
print("Richer prompt minus plain prompt on the ID reference domain, accuracy points [95 % paired interval]:")
for _, r in confounds.iterrows():
    print(f"  {r['mode']:8s} {r['variant']:14s} on {r['dataset']}/{r['domain']}: {100 * r['gain']:+.0f} "
          f"[{100 * r['ci_low']:+.0f}, {100 * r['ci_high']:+.0f}] -> "
          f"{'lowers ID accuracy by more than the margin: confounded' if r['confounded'] else 'not confounded'}")

# %% [markdown]
# ### What the richer prompts do to this model
# Each panel: one dataset's domains (its ID reference first), accuracy under each prompt, chance dotted.
# On a small model trained on one prompt these effects are the lesson: a sentence the language side has
# never read can move its answer far more than anything in the image. Two to look for: the colour sentence
# ("drawn in red or green") names colours a model trained on grey digits never saw with a digit, and the
# noise sentence ("random pixel noise") adds words that have nothing to do with the classes; either can
# push the answer state off the digits altogether. The table under the figure gives each dataset's
# largest effect of each prompt, with the exact sentence the prompt added and what the answers under it
# are (notebook 01's answer outcomes) — this is where the oddities explain themselves: a prompt can turn
# the replies into words that are not class names at all (the embedded model also learned made-up label
# words such as *dax* or *zib* from the in-context episodes it was trained on, and a sentence it has never
# read can bring them back: an *off-list answer*), or into one answer for every image (a *constant
# answer*). Either way the "accuracy" under that prompt measures the reply, not what the words mean.

# %%
cells = pd.concat([effects.assign(prompt=effects["variant"], acc=effects["rich"]),
                   effects[effects["variant"] == hypotheses.RICHER_PROMPTS[0]].assign(prompt="plain", acc=lambda t: t["plain"])])
agree = cells.pivot_table(index=["dataset", "domain", "prompt"], columns="mode", values="acc").nunique(axis=1).le(1)
same = set(agree.groupby("dataset").all().loc[lambda s: s].index) if len(MODES) > 1 else set()
cells = cells[~(cells["dataset"].isin(same) & (cells["mode"] != MODES[0]))].assign(
    shown=lambda t: np.where(t["dataset"].isin(same), "both modes", t["mode"]))
panels = list(dict.fromkeys(cells.sort_values("role", kind="stable")["dataset"]))
n_cols = min(3, len(panels))
fig, axes = plt.subplots(-(-len(panels) // n_cols), n_cols, figsize=(4.2 * n_cols + 1.5, 3.6 * -(-len(panels) // n_cols)),
                         sharey=True, squeeze=False)
for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
for ax, name in zip(axes.flat, panels):
    part = cells[cells["dataset"] == name]
    doms = list(dict.fromkeys(part.sort_values("role", kind="stable")["domain"]))
    for (prompt, shown), g in part.groupby(["prompt", "shown"], sort=False):
        x, k = [doms.index(d) for d in g["domain"]], zero_shot.PROMPT_VARIANTS.index(prompt)
        ax.plot(x, 100 * g["acc"], "osD"[k % 3], color=f"C{k}", alpha=0.8,
                fillstyle="full" if shown != "generate" else "none", linestyle="", label=f"{prompt} ({shown})")
    ax.axhline(100 * zero_shot.chance_level(infos[name]), color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(len(doms)), doms, rotation=70, fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("domain")
for ax in axes[:, 0]:
    ax.set_ylabel("accuracy (%)")
handles = {l: h for ax in axes.flat for h, l in zip(*ax.get_legend_handles_labels())}
fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=7)
fig.suptitle(f"Zero-shot accuracy of the {WORDS} under each prompt")
fig.tight_layout()
save_figure(fig, "02_prompt_effects", cells)
plt.show()
if same:
    print(f"Both scoring modes give the same accuracy under every prompt on {', '.join(sorted(same))}: drawn once.")

# %%
print("the class descriptions the 'descriptions' prompt adds, per dataset:")
for name in DATASETS:
    print(f"  {name}: {class_descriptions(infos[name].class_names)}")
largest = (effects.reindex(effects["gain"].abs().sort_values(ascending=False).index)
           .groupby(["dataset", "variant"], sort=False).head(1).sort_values(["variant", "dataset"]))
largest["added to the prompt"] = [domain_context(d, dom) if v == "domain_context" else "the class descriptions above"
                                  for d, dom, v in zip(largest["dataset"], largest["domain"], largest["variant"])]
prompt_answers = answer_table(zs_all, {n: infos[n].class_names for n in DATASETS}, by=("mode", "dataset", "domain", "variant"))
largest = largest.merge(prompt_answers.rename(columns={"outcome": "answers under it"})[
    ["mode", "dataset", "domain", "variant", "answers under it", "top_answer", "top_answer_share"]], how="left")
pd.set_option("display.max_colwidth", None)
largest.assign(plain=(100 * largest["plain"]).round(0), rich=(100 * largest["rich"]).round(0),
               gain=(100 * largest["gain"]).round(0))[["dataset", "domain", "mode", "variant", "plain", "rich", "gain",
                                                        "confounded", "answers under it", "top_answer",
                                                        "top_answer_share", "added to the prompt"]]

# %% [markdown]
# ## Hypotheses 2 and 3: linear probes
# Within each OOD domain, a fixed stratified split: half the samples train a logistic-regression probe
# (its regularisation chosen by cross-validation on the training half only; with `PROBE_PROTOCOL: paper_a`,
# paper A's fixed C without scaling, on its class pair where it names one: printed above), the other half test it.
# Three feature sets on the same test items: the pooled vision-tower output (what the projector reads), the
# language model's hidden state where the answer's first token is predicted (under the plain prompt), and
# raw pixels. A fourth probe, for datasets with an ID reference: the vision probe **trained on the ID
# reference domain** and scored on the shifted domain's test half.
#
# What each comparison can and cannot show:
# - **vision probe vs zero-shot**: whether a linear readout of the frozen features, *trained on labelled
#   examples of this domain*, beats the model. It can show that the features carry the class (so hypothesis
#   2 is false); it cannot show that the model *should* find it, since any probe given labelled in-domain
#   examples learns a domain-specific classifier the zero-shot model never had.
# - **raw-pixel probe** (the reference for the above): the same probe on the input pixels. A vision probe
#   level with it means the labels, not the encoder, do the work; a vision probe clearly *below* it means
#   the encoder discards class information the pixels carry (then hypothesis 2 is not cleared).
# - **ID-trained probe vs zero-shot** (the fair test of a feature shift): a readout fitted where the model
#   was trained — as the model's own mapping was — applied to the shifted features. Well above zero-shot: a
#   readout learned on ID alone does better than the model, so the features keep the class in their ID
#   form and the model's own mapping is what fails (mapping deficiency). Near zero-shot: the features
#   *moved*, and any readout learned where the model was trained fails alike; an in-domain probe then
#   undoes a feature shift, which is not a deficient mapping. This is why it enters A-H3 (below) instead
#   of being shown beside it: the in-domain probes alone cannot tell the two apart, because a probe given
#   labelled examples of the shifted domain learns a new readout either way. It does not enter A-H2, whose
#   claim (the features *suffice*) is about what the features carry, which the in-domain probe measures.
# - **LM answer-state probe vs zero-shot**: whether the evidence reaches the language model's answer
#   position; above zero-shot means the last mapping to the answer loses it (hypothesis 3).

# %%
probe_table, probe_items = hypotheses.probe_tables(model, DATASETS, ood, PROBE_PER_CLASS, references=references,
                                                   seed=SEED, batch_size=BATCH_SIZE, prompt_style=PROMPT_STYLE,
                                                   n_boot=N_BOOT, protocol=PROBE_PROTOCOL)
short = probe_table[probe_table["n_train"] + probe_table["n_test"] < PROBE_PER_CLASS * probe_table["classes"]]
if len(short):
    print(f"Fewer than PROBE_PER_CLASS = {PROBE_PER_CLASS} samples per class in some domains (the probe uses all "
          f"there are):")
    print(short[short["features"] == "vision"][["dataset", "domain", "n_train", "n_test"]].to_string(index=False))
print("probe accuracies per domain and feature set:", "figures/" + save_table(probe_table.round(4), "02_probe_table").name)
probe_table.head(4).round(3)

# %% [markdown]
# ## Zero-shot against the probes, per domain
# One panel per dataset, one column per OOD domain: zero-shot accuracy in each scoring mode (plain prompt)
# and the probes, with 95 % bootstrap intervals; the dotted line is chance (1 / classes).

# %%
chance = {name: zero_shot.chance_level(infos[name]) for name in DATASETS}
zs_plain = accuracy_table(zs[zs["variant"] == "plain"], ["mode", "dataset", "domain"], n_boot=N_BOOT, seed=SEED)
panel_rows = [zs_plain.assign(method="zero-shot (" + zs_plain["mode"] + ")")]
labels = {**hypotheses.PROBE_LABELS, hypotheses.ID_PROBE: hypotheses.ID_PROBE_LABEL}
panel_rows.append(probe_table.assign(method=probe_table["features"].map(labels)))
panel = pd.concat(panel_rows, ignore_index=True)[["dataset", "domain", "method", "accuracy", "ci_low", "ci_high"]]
methods = list(dict.fromkeys(panel["method"]))
shown = [d for d in DATASETS if ood[d]]
fig, axes = plt.subplots(len(shown), 1, figsize=(11, 2.6 * len(shown)), squeeze=False)
for ax, name in zip(axes[:, 0], shown):
    part = panel[panel["dataset"] == name]
    doms = ood[name]
    for j, m in enumerate(methods):
        sub = part[part["method"] == m].set_index("domain").reindex(doms).dropna(subset=["accuracy"])
        x = np.array([doms.index(d) for d in sub.index]) + (j - len(methods) / 2 + 0.5) * 0.8 / len(methods)
        ax.errorbar(x, sub["accuracy"] * 100, yerr=yerr(sub), fmt="o", ms=4, capsize=2, color=f"C{j}", label=m)
    ax.axhline(chance[name] * 100, color="k", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(doms)), doms, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{name}: OOD domains", fontsize=9)
axes[-1, 0].set_xlabel("OOD domain")
handles, names = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, names, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8, title="dotted: chance")
fig.suptitle(f"Zero-shot vs probes per OOD domain: the {WORDS}")
fig.tight_layout()
save_figure(fig, "02_hypotheses_zero_shot_vs_probes", panel)
plt.show()

# %% [markdown]
# Pooled over each dataset's OOD domains (for orientation only; the verdicts below are per domain):

# %%
pooled = pd.concat([hypotheses.comparison(zs, probe_items, {n: chance[n] for n in shown}, zero_shot.PROMPT_VARIANTS,
                                          mode=mode, n_boot=N_BOOT, seed=SEED).assign(mode=mode) for mode in MODES])
pooled = pooled[~(pooled["method"].str.startswith("probe") & (pooled["mode"] != MODES[0]))]  # probes once
pooled.assign(mode=np.where(pooled["method"].str.startswith("probe"), "-", pooled["mode"])).round(3)

# %% [markdown]
# ## How many labelled examples does the probe need?
# Vision-feature probe accuracy against the number of labelled examples per class (training half only;
# same test half): one panel per dataset, one line per OOD domain, chance dotted. Notebook 03 puts the in-context-learning curve beside it: ICL sees the same kind of evidence — a
# few labelled examples — but through the prompt instead of a trained classifier.

# %%
curve_table = hypotheses.probe_curves(model, DATASETS, ood, PROBE_PER_CLASS, curve, seed=SEED, batch_size=BATCH_SIZE,
                                      n_boot=N_BOOT, protocol=PROBE_PROTOCOL)
names = list(dict.fromkeys(curve_table["dataset"]))
fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names) + 1, 3.6), sharey=True, squeeze=False)
for ax, name in zip(axes[0], names):
    for j, (dom, grp) in enumerate(curve_table[curve_table["dataset"] == name].groupby("domain", sort=False)):
        ax.plot(grp["per_class"], grp["accuracy"] * 100, marker="os^vD<>p*h"[j % 10], ms=4, label=str(dom))
    # the probe's chance: 1 / the classes it separates (paper A's pair: 1/2)
    ax.axhline(100 / probe_table.loc[probe_table["dataset"] == name, "classes"].iloc[0], color="grey", linestyle=":",
               label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(curve, [str(k) for k in curve])
    ax.set_ylim(0, 100)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("labelled examples per class")
    ax.legend(fontsize=6, loc="lower right")
axes[0][0].set_ylabel("vision-probe accuracy (%)")
fig.suptitle(f"Vision-feature probe of the {WORDS}: accuracy vs labelled examples, per OOD domain")
fig.tight_layout()
save_figure(fig, "02_probe_learning_curve", curve_table)
plt.show()

# %% [markdown]
# ## Paper A's claims, per domain and scoring mode
# The rules of `mllm_ood.paper_a.hypotheses` (printed below). Differences are in accuracy points with their
# 95 % bootstrap interval: paired where the same images are compared (richer vs plain prompt; shifted
# copies of the ID digits against the ID reference; probes on the same test items), independent otherwise
# (zero-shot items against probe test items).
#
# Two kinds of domain are **reported apart**, not counted in any claim's denominator: a domain whose
# plain-prompt answers are a *parse failure*, an *off-list answer* or a *constant answer* (notebook 01:
# its accuracy measures the reply, not the classification — a model that names one class for every image
# is "far below its probes" without any hypothesis being true), and a domain where zero-shot is not clearly
# below its references (*no gap to explain*). The per-domain table goes to a CSV; its outcomes are read
# before Holm's correction, the ledger at the end after it.

# %%
print(hypotheses.__doc__.split("\n\n", 1)[1].split("Inputs are")[0].strip())
verdicts = hypotheses.domain_verdicts(zs_all, probe_items, {n: ood[n] for n in shown}, references, MODES,
                                      {n: infos[n].class_names for n in shown}, n_boot=N_BOOT, seed=SEED)
readable = hypotheses.verdict_table(verdicts)
print("per-domain verdicts:", "figures/" + save_table(readable, "02_hypotheses_verdicts").name,
      "| every number:", "figures/" + save_table(verdicts.round(4), "02_hypotheses_numbers").name)
summary = hypotheses.summarise(verdicts)
summary

# %% [markdown]
# Each claim counts only the domains with a gap to explain (first columns); the columns headed *apart* are
# the domains left out and why. A few per-domain rows where A-H3 is decided, with the comparison that binds:

# %%
pd.set_option("display.max_colwidth", None)
decided = readable[readable["A-H3"].isin(["supported", "contradicted", "inconclusive"])]
decided.groupby("A-H3").head(2)[["dataset", "domain", "mode", "A-H1", "A-H2", "A-H3", "A-H3: deciding comparison"]]

# %% [markdown]
# ## The ledger: paper A's claims A-H1, A-H2, A-H3
# One row per claim, domain and mode (one row for both modes where they give the same numbers); the
# domains reported apart are gathered into one row per claim, mode and reason. Holm's correction runs over
# every row of this notebook that the rule decides.

# %%
claims = ledger_rows.ledger_for(ledger_rows.hypothesis_rows(verdicts), "02", f"{WORDS} ({model.fingerprint})")
claims = write_claims(claims.to_dict("records"), "02")
print("rule:", rule_text("effect"), "| A-H1:", rule_text("no effect"))
ledger_rows.outcome_counts(claims)

# %%
display(Markdown(prose(claims)))
