"""Paper B's ``main.py`` replayed (``deeplearning-wisc/mllmshift-emi``, commit 80beb58f): its released CLUB
checkpoint, its EMI formula, its size-weighted representation JSD and bound, its easy / normal / hard
in-the-wild split and its per-modality correlations, beside the values it published.

What ``main.py`` computes, and where each piece lives here:

- **Estimator**: ``estimator_ckpt/CLUB_global.pt`` (shipped in ``data/llava_bench_shift/paper_b/``, SHA-256
  checked at load, read with ``weights_only=True``): CLUB(768, 768, 500), ``p_mu`` = Linear(768, 250), Tanh,
  Linear(250, 768); ``p_logvar`` the same followed by Tanh (:class:`ReleasedCLUB`). Its training code is not
  released.
- **Embeddings**: X = (z_v + z_t) / 2 of the L2-normalised CLIP ViT-B/32 image embedding (last hidden state,
  patch-token mean) and XLM-R question embedding (``hidden_states[0]``, token mean after the first token);
  Y = the XLM-R embedding of the GPT-4 reference, Y-hat of the model's answer (both 768-d, unit rows).
- **EMI** of one split = ``CLUB(X, Y-hat) - CLUB(X, Y)`` with the whole split as one batch (:func:`emi`);
  EMID = EMI(ID split) - EMI(target).
- **Bound** (scale-adjusted): ``sqrt(JSv) + sqrt(JSt) + JSpy^1/4 + JSqy^1/4``, each JSD of
  ``JSD_cov(Z_P^T Z_P, Z_Q^T Z_Q)``: sums over items, so the mixture weights the two sets by their sizes
  (:func:`mllm_ood.paper_b.divergences.representation_jsd` with ``weighting="size"``; this project's own
  analyses default to ``"equal"``). No permutation nulls, no intervals.
- **In-the-wild**: the 60 answers of each language (one response file) indexed into easy / hard halves
  (``easy_ood_fst_cd_new`` / ``hard_ood_fst_cd_new`` of ``data/lbwild_split_idx_dict.pkl``, shipped as
  ``lbwild_split_idx.json``); "normal" is all 60.
- **Per-modality r** (``--shift_modality V / T / J``): Pearson r between EMID and the bound over the targets
  of one modality's list (image-only shifts, question-only shifts, both), against the same ID split.

Numbers from real inputs need the hub sets (images) and the hub encoders: the paper profile only,
UNTESTED ONLINE. Offline, only the formulas run (tests, and the stand-in dry run, whose numbers mean nothing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from ..cache import sha256_file
from ..data import hub as hub_data
from ..paths import DATA
from ..validation import ParameterError, check_choice
from .arrays import as_matrix
from .divergences import representation_jsd
from .grids import hub, llava_bench
from .grids.analysis import match_width

FOLDER = DATA / "llava_bench_shift" / "paper_b"
SHA256 = {"CLUB_global.pt": "99ab062638de898356d087907b450d4cba755541eff49b877158c9b9b831b116",
          "lbwild_split_idx.json": "c63784c811b91840e6867b00d63cc93b3ef6e9a1a3ce47bd0157e03275e9455c"}
FEATURE_DIM, MI_EST_DIM = 768, 500  # main.py's --feature_dim and --mi_est_dim (hidden width 500 // 2)
SPLIT_KEYS = {"easy": "easy_ood_fst_cd_new", "hard": "hard_ood_fst_cd_new"}  # the keys main.py reads
N_WILD = 60
JSD_WEIGHTING = "size"  # main.py's; the project's analyses use "equal"
MODALITIES = ("ALL", "V", "T", "J")
_LANGS = llava_bench.LANGUAGES
_SYN_V = ("", "_defocus_blur_1", "_defocus_blur_3", "_defocus_blur_5", "_frost_1", "_frost_3", "_frost_5")
_SYN_T = ("", "_sr_4", "_sr_7", "_KeyboardAug_1", "_KeyboardAug_3")
_NAT_V = ("llava_bench_coco", "llava_bench_in_the_wild_easy", "llava_bench_in_the_wild_normal",
          "llava_bench_in_the_wild_hard")
# main.py's scenario lists, in its order: {grid: {modality: [source, targets...]}}
SCENARIOS = {
    "synthetic": {"ALL": [f"llava_bench_coco{v}{t}" for v in _SYN_V for t in _SYN_T],
                  "V": [f"llava_bench_coco{v}" for v in _SYN_V], "T": [f"llava_bench_coco{t}" for t in _SYN_T],
                  "J": ["llava_bench_coco"] + [f"llava_bench_coco{v}{t}" for v in _SYN_V[1:] for t in _SYN_T[1:]]},
    "natural": {"ALL": [f"{v}_{t}" for v in _NAT_V for t in _LANGS], "V": [f"{v}_English" for v in _NAT_V],
                "T": [f"llava_bench_coco_{t}" for t in _LANGS],
                "J": ["llava_bench_coco_English"] + [f"{v}_{t}" for v in _NAT_V[1:] for t in _LANGS[1:]]},
}


# --------------------------------------------------------------------------------------------------
# the shipped files


def shipped_file(name: str) -> Path:
    """Path of a shipped paper-B file, after checking that it exists and has its recorded SHA-256."""
    check_choice("shipped paper B file", name, SHA256)
    path = FOLDER / name
    if not path.is_file():
        raise ParameterError(f"{path} is missing: the repository ships it (data/llava_bench_shift/paper_b/, "
                             "see data/llava_bench_shift/README.md)")
    digest = sha256_file(path)
    if digest != SHA256[name]:
        raise ParameterError(f"{path} is corrupt or replaced: SHA-256 {digest[:12]}... instead of "
                             f"{SHA256[name][:12]}... (restore it from the repository)")
    return path


@lru_cache(maxsize=1)
def wild_indices() -> dict[str, tuple[int, ...]]:
    """Paper B's in-the-wild split: positions (0-59, in the response file's order) of its easy and hard halves
    and of "normal" (all 60), as ``main.py`` reads them, **in the pickle's order** (not sorted): ``main.py``
    pairs the i-th row of the hub's easy / hard split with the answer at the i-th index."""
    raw = json.loads(shipped_file("lbwild_split_idx.json").read_text())
    out = {"easy": tuple(raw[SPLIT_KEYS["easy"]]), "normal": tuple(range(N_WILD)), "hard": tuple(raw[SPLIT_KEYS["hard"]])}
    if sorted(out["easy"] + out["hard"]) != list(range(N_WILD)):
        raise ParameterError("lbwild_split_idx.json: the easy and hard halves do not partition 0-59")
    return out


class ReleasedCLUB(nn.Module):
    """``main.py``'s ``CLUB`` class: a Gaussian q(y | x) with mean ``p_mu(x)`` and log-variance ``p_logvar(x)``;
    :meth:`forward` is its MI estimate, the mean over rows i of
    ``sum_d [-(mu_i - y_i)^2 + mean_j (mu_i - y_j)^2] / (2 exp(logvar_i))``."""

    def __init__(self, x_dim: int = FEATURE_DIM, y_dim: int = FEATURE_DIM, hidden_size: int = MI_EST_DIM):
        super().__init__()
        self.p_mu = nn.Sequential(nn.Linear(x_dim, hidden_size // 2), nn.Tanh(), nn.Linear(hidden_size // 2, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, hidden_size // 2), nn.Tanh(),
                                      nn.Linear(hidden_size // 2, y_dim), nn.Tanh())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.p_mu(x), self.p_logvar(x)
        positive = -(mu - y) ** 2 / 2. / logvar.exp()
        negative = -((y.unsqueeze(0) - mu.unsqueeze(1)) ** 2).mean(dim=1) / 2. / logvar.exp()
        return (positive.sum(dim=-1) - negative.sum(dim=-1)).mean()


@lru_cache(maxsize=1)
def load_released_club() -> ReleasedCLUB:
    """The released checkpoint (``CLUB_global.pt``, SHA-256 checked, ``weights_only=True``) in
    :class:`ReleasedCLUB`, on the CPU, in eval mode. Every weight must match by name and shape."""
    state = torch.load(shipped_file("CLUB_global.pt"), map_location="cpu", weights_only=True)
    club = ReleasedCLUB()
    try:
        club.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ParameterError(f"CLUB_global.pt does not fit main.py's CLUB(768, 768, 500): {err}") from None
    return club.eval()


# --------------------------------------------------------------------------------------------------
# main.py's formulas


def _tensor(what: str, a) -> torch.Tensor:
    a = as_matrix(what, a)
    if a.shape[1] != FEATURE_DIM:
        raise ParameterError(f"{what}: the released CLUB takes {FEATURE_DIM}-d embeddings, got {a.shape[1]}-d")
    return torch.as_tensor(a, dtype=torch.float32)


def emi(club: ReleasedCLUB, x, y_model, y_reference) -> tuple[float, float, float]:
    """(EMI, MI(X; Y-hat), MI(X; Y)) of one split as ``main.py`` computes them, the split as one batch:
    x, y_model, y_reference: (n, 768) (float32, as main.py's)."""
    x, ym, yr = _tensor("x", x), _tensor("y_model", y_model), _tensor("y_reference", y_reference)
    if not len(x) == len(ym) == len(yr):
        raise ParameterError(f"x, y_model, y_reference need one row count, got {len(x)}, {len(ym)}, {len(yr)}")
    with torch.inference_mode():
        model_mi, ref_mi = club(x, ym).item(), club(x, yr).item()
    return model_mi - ref_mi, model_mi, ref_mi


@dataclass
class Split:
    """One split's unit-row embeddings: image z_v, question z_t, answer y_model, reference y_reference (n, d)."""

    z_v: np.ndarray
    z_t: np.ndarray
    y_model: np.ndarray
    y_reference: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return (self.z_v + self.z_t) * 0.5  # main.py: z = (z_v + z_t) * 0.5, not renormalised


def _root(value: float, power: float) -> float:
    return value ** power if value >= 0 else math.nan  # main.py would give a complex number


def bound_terms(p: Split, q: Split, *, weighting: str = JSD_WEIGHTING) -> dict:
    """``main.py``'s ``EMIDupperbound`` (scale-adjusted) between source p and target q: the four JSDs and
    their bound, with the mixture weighting of :func:`representation_jsd` (main.py: ``"size"``)."""
    j = {"jsd_v": representation_jsd(p.z_v, q.z_v, weighting=weighting),
         "jsd_t": representation_jsd(p.z_t, q.z_t, weighting=weighting),
         "jsd_py": representation_jsd(p.y_model, p.y_reference, weighting=weighting),
         "jsd_qy": representation_jsd(q.y_model, q.y_reference, weighting=weighting)}
    bound = _root(j["jsd_v"], .5) + _root(j["jsd_t"], .5) + _root(j["jsd_py"], .25) + _root(j["jsd_qy"], .25)
    return {**j, "bound": bound}


def replay_grid(splits: dict[str, Split], source: str, *, club: ReleasedCLUB | None = None,
                weighting: str = JSD_WEIGHTING) -> pd.DataFrame:
    """``main.py``'s pairs run over ``splits`` (paper B's split names; ``source`` the ID split): one row per
    split with n, emi, mi_model, mi_reference, emid, the four JSDs and the bound (nan for the source)."""
    if source not in splits:
        raise ParameterError(f"the replay needs its ID split {source!r}")
    club = club or load_released_club()
    rows = []
    for name, s in splits.items():
        e, mm, mr = emi(club, s.x, s.y_model, s.y_reference)
        rows.append({"scenario": name, "is_source": name == source, "n": len(s.z_t), "emi": e, "mi_model": mm,
                     "mi_reference": mr})
    out = pd.DataFrame(rows)
    src_emi = float(out.loc[out["scenario"] == source, "emi"].iloc[0])
    terms = [{"scenario": n, **bound_terms(splits[source], s, weighting=weighting)} for n, s in splits.items()
             if n != source]
    out = out.merge(pd.DataFrame(terms, columns=["scenario", "jsd_v", "jsd_t", "jsd_py", "jsd_qy", "bound"]),
                    on="scenario", how="left")
    out["emid"] = np.where(out["is_source"], np.nan, src_emi - out["emi"])
    return out


def modality_correlations(table: pd.DataFrame, grid: str, *, emid: str = "emid", bound: str = "bound") -> pd.DataFrame:
    """Pearson r (and p) between EMID and the bound over the targets of each ``--shift_modality`` list of
    ``main.py`` (ALL, V, T, J) present in ``table`` (a ``scenario`` column in paper B's names)."""
    check_choice("paper B grid", grid, SCENARIOS)
    rows = []
    for mod in MODALITIES:
        targets = SCENARIOS[grid][mod][1:]
        t = table[table["scenario"].isin(targets)].dropna(subset=[emid, bound])
        r, p = stats.pearsonr(t[emid], t[bound]) if len(t) > 2 and t[bound].std() > 0 and t[emid].std() > 0 \
            else (math.nan, math.nan)
        rows.append({"grid": grid, "modality": mod, "n": len(t), "r": float(r), "p": float(p)})
    return pd.DataFrame(rows)


def published_correlations(models) -> pd.DataFrame:
    """Paper B's own r per ``--shift_modality``, computed from its released per-scenario EMID and bound."""
    return pd.concat([modality_correlations(published_table(m, g), g, emid="pub_emid", bound="pub_bound").assign(model=m)
                      for m in models for g in SCENARIOS], ignore_index=True)


def published_table(model: str, grid: str) -> pd.DataFrame:
    """Paper B's released per-scenario values (``data/llava_bench_shift/published/``) in its own names:
    scenario, pub_emi, pub_emid, pub_bound."""
    raw = llava_bench.published_raw(model, grid)
    return pd.DataFrame([{"scenario": s, "pub_emi": e, "pub_emid": raw["EMID"].get(s, math.nan),
                          "pub_bound": raw["EMID_UB"].get(s, math.nan)} for s, e in raw["EMI"].items()])


def compare_published(table: pd.DataFrame, model: str, grid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replay beside paper B's release, scenario by scenario (the replayed scenarios: replay and published
    EMI, EMID, bound and their differences), and the per-modality r of both (the release's over all its
    scenarios)."""
    pub = published_table(model, grid)
    merged = pub.merge(table[["scenario", "n", "emi", "emid", "bound"]], on="scenario", how="inner")
    for k in ("emi", "emid", "bound"):
        merged[f"d_{k}"] = merged[k] - merged[f"pub_{k}"]
    ours = modality_correlations(table, grid)
    theirs = modality_correlations(pub, grid, emid="pub_emid", bound="pub_bound")
    corr = ours.merge(theirs[["modality", "n", "r"]].rename(columns={"n": "pub_n", "r": "pub_r"}), on="modality")
    return merged.assign(model=model, grid=grid), corr.assign(model=model)


# --------------------------------------------------------------------------------------------------
# main.py's inputs: paper B's hub sets (images, questions, references) and the shipped answers (paper
# profile, UNTESTED ONLINE)


def shipped_rows(model: str, split: str) -> pd.DataFrame:
    """``main.py``'s answers to one split (its ``resp_model_``), with the prompts they answered: the shipped
    rows of ``model`` (the response files ``main.py`` reads, in their order); an in-the-wild easy / hard split
    takes the 60 rows of its language at the shipped indices, in their order, "normal" all 60."""
    wild = split.removeprefix("llava_bench_in_the_wild_")
    part = wild.split("_", 1)[0] if wild != split else None
    ours = (llava_bench.ID_SCENARIO if split == "llava_bench_coco_English" else
            f"llava_bench_in_the_wild_{wild.split('_', 1)[1]}" if part else split)
    rows = llava_bench.table(model, scenarios=[ours])
    return (rows.iloc[list(wild_indices()[part])] if part else rows).reset_index(drop=True)


def shipped_answers(model: str, split: str) -> list[str]:
    """The answers of :func:`shipped_rows`, in ``main.py``'s order."""
    return shipped_rows(model, split)["response"].tolist()


def check_encoders(text_embedder, image_embedder) -> bool:
    """Refuse encoders other than main.py's (XLM-R first-layer token mean, CLIP patch-token mean); True when
    they are the dry run's stand-ins (narrower than 768: their embeddings are then mapped to 768 columns by
    a random isometry so that the checkpoint's code path runs; numbers without meaning)."""
    standin = all("standin" in str(getattr(e, "model", "")) for e in (text_embedder, image_embedder))
    if getattr(text_embedder, "pooling", None) != "first_layer_mean_no_cls" or not getattr(image_embedder, "exclude_cls", False):
        raise ParameterError("the replay of paper B's main.py needs its encoders: TEXT_EMBEDDER 'xlm-roberta' and "
                             f"IMAGE_EMBEDDER 'clip' (got {text_embedder.name!r}, {image_embedder.name!r})")
    return standin


def hub_split(grid: str, split: str, model: str, text_embedder, image_embedder, *, max_questions: int | None = None,
              seed: int = 0) -> tuple[Split, str]:
    """One split's :class:`Split` as ``main.py`` builds it: image, question and reference from paper B's hub set,
    the answer from the shipped file (:func:`shipped_answers`), paired by position; the first
    ``max_questions`` (or as many as both hold). Returns it with a line saying what was used."""
    standin = check_encoders(text_embedder, image_embedder)
    spec = hub_data.SPECS[hub.DATASETS[grid]]
    ds = hub_data.load_hub_split(hub.DATASETS[grid], split)
    shipped = shipped_rows(model, split)
    answers = shipped["response"].tolist()
    n = min(len(ds), len(answers), max_questions or len(ds))
    qs, refs = list(ds[spec.question_column][:n]), list(ds[spec.reference_column][:n])
    same = sum(a.strip().startswith(b.strip()) or b.strip().startswith(a.strip())  # the pairing, checked by prompt
               for a, b in zip(qs, shipped["question"][:n]))
    z = text_embedder.embed(qs + answers[:n] + refs)
    zv = image_embedder.embed(list(ds[spec.image_column][:n]))
    if standin and (z.shape[1] != FEATURE_DIM or zv.shape[1] != FEATURE_DIM):
        z, zv = (match_width(a, FEATURE_DIM, seed) for a in (z, zv))
    note = (f"{split}: {n} of {len(ds)} hub rows, {len(answers)} shipped answers, hub question = the answered prompt "
            f"in {same} of {n} rows" + (" (stand-in widths mapped to 768)" if standin else ""))
    return Split(zv, z[:n], z[n:2 * n], z[2 * n:]), note


def replay_hub(models, grids, text_embedder, image_embedder, *, smoke: bool = False, max_questions: int | None = None,
               weighting: str = JSD_WEIGHTING, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``main.py`` over every split of ``grids`` for each of ``models`` (the shipped answers), then the
    comparison with the release: (per-scenario table with published values, per-modality r, notes)."""
    tables, corrs, notes = [], [], []
    for m in models:
        for g in grids:
            splits = {}
            for s in hub.scenarios(g, smoke=smoke):
                splits[s], note = hub_split(g, s, m, text_embedder, image_embedder, max_questions=max_questions, seed=seed)
                notes.append(f"{m}, {note}")
            merged, corr = compare_published(replay_grid(splits, hub.ID_SPLIT[g], weighting=weighting), m, g)
            tables.append(merged)
            corrs.append(corr)
    return pd.concat(tables, ignore_index=True), pd.concat(corrs, ignore_index=True), notes


def section(run: bool, models, hub_datasets, text_embedder, image_embedder, **kwargs):
    """Notebook 04's replay section: with ``run``, :func:`replay_hub` over the grids of ``hub_datasets``
    (per-scenario table, per-modality r, notes); without, an empty table, paper B's own per-modality r
    (:func:`published_correlations`) and a line saying what the replay needs."""
    if run:
        table, corr, notes = replay_hub(models, [hub.grid_of(d) for d in hub_datasets], text_embedder, image_embedder,
                                        **kwargs)
        cols = ["model", "grid", "scenario", "n", "emi", "pub_emi", "d_emi", "emid", "pub_emid", "d_emid", "bound",
                "pub_bound", "d_bound"]
        return table[cols], corr, notes[:3] + [f"... {len(notes)} splits replayed (UNTESTED ONLINE)"]
    return pd.DataFrame(), published_correlations(models), [
        "REPLAY_PAPER_B is off: replaying paper B's main.py needs its hub images and encoders (CLIP ViT-B/32, XLM-R): "
        "paper profile only. Paper B's own r per shift modality, from its released per-scenario values:"]
