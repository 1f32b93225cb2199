"""``python -m mllm_ood emi``: EMI per scenario, EMID against a source scenario, and paper B's bound.

Input: a JSONL file, one sample per line::

    {"scenario": str, "id": str, "question": str, "response": str, "reference": str, "image": optional path}

``response`` is the model's answer, ``reference`` the reference answer (e.g. GPT-4's); ``image`` paths are
relative to the file's folder unless absolute. Either every line has an image or none does; without
images the analysis is text-only (query embedding = question embedding; the image term JSv is 0).

Steps (paper B's code, with the project's embedders): embed questions, responses, references (and
images); x = mean of the L2-normalised image and question embeddings; one CLUB is trained on the pooled
(x, response) and (x, reference) pairs of all scenarios (or loaded with ``--club``); per scenario
EMI = CLUB(x, response) - CLUB(x, reference); EMID = EMI(source) - EMI(target); the JSD bound
``sqrt(JSv) + sqrt(JSt) + JSpy^(1/4) + JSqy^(1/4)`` and its Wasserstein variant
``Wv + Wt + sqrt(Wpy) + sqrt(Wqy)`` (see :mod:`mllm_ood.information`), every term beside its split-half
baseline; finally Pearson and Spearman correlations of EMID with each bound over the target scenarios.

Reading the baselines: a baseline compares two random halves of one set, so it is measured at half the
sample size (noisier), and for the output terms (model vs reference answers to the *same* questions)
the halves hold different questions while the compared sets share them. With ~90 samples in 384-768
dimensions, output terms routinely fall *below* their baseline; only terms well above it show a shift
that sampling noise alone would not produce.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

from .paths import RUNS
from .seeding import derive_seed
from .validation import ParameterError, check_choice, check_file

FIELDS = ("scenario", "id", "question", "response", "reference")
MIN_SAMPLES = 10
MIN_SCENARIOS = 2
TEXT_ONLY_NOTE = "text-only: no images in the input, so x = question embedding and the image term JSv = 0"


@dataclass(frozen=True)
class Record:
    """One input line."""

    line: int
    scenario: str
    id: str
    question: str
    response: str
    reference: str
    image: Path | None


# --------------------------------------------------------------------------------------------------
# input


def _check_image(path: Path, where: str) -> None:
    from PIL import Image

    if not path.is_file():
        raise ParameterError(f"{where}: image {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as err:  # PIL raises many types for a broken file
        raise ParameterError(f"{where}: image {str(path)!r} cannot be read: {err}") from None


def load_records(path) -> list[Record]:
    """Read and validate an EMI input file (see the module docstring); blank lines are skipped.

    Raises ParameterError naming the line for invalid JSON, a missing or non-string field, a repeated
    (scenario, id), a mix of lines with and without images, or an image that does not open.
    """
    path = check_file("EMI input", path)
    records: list[Record] = []
    seen: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path.name} line {line_no}"
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ParameterError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise ParameterError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for field in FIELDS:
                if field not in obj:
                    raise ParameterError(f"{where}: missing field {field!r} (required: {', '.join(FIELDS)})")
                value = obj[field]
                if field == "id" and isinstance(value, int) and not isinstance(value, bool):
                    continue
                if not isinstance(value, str):
                    raise ParameterError(f"{where}: field {field!r} must be a string, got {value!r:.60}")
            if not obj["scenario"]:
                raise ParameterError(f"{where}: field 'scenario' is empty")
            image = obj.get("image")
            if image is not None:
                if not isinstance(image, str) or not image:
                    raise ParameterError(f"{where}: field 'image' must be a non-empty path string")
                image = Path(image) if Path(image).is_absolute() else path.parent / image
            key = (obj["scenario"], str(obj["id"]))
            if key in seen:
                raise ParameterError(f"{where}: scenario {key[0]!r} id {key[1]!r} repeats line {seen[key]}")
            seen[key] = line_no
            records.append(Record(line_no, obj["scenario"], str(obj["id"]), obj["question"], obj["response"],
                                  obj["reference"], image))
    if not records:
        raise ParameterError(f"{path.name}: no records")
    with_image = [r for r in records if r.image is not None]
    if with_image and len(with_image) != len(records):
        first_without = next(r for r in records if r.image is None)
        first_with = with_image[0]
        raise ParameterError(
            f"{path.name} line {first_without.line}: no 'image', but line {first_with.line} has one; "
            "give every line an image or none"
        )
    for r in tqdm(with_image, desc="check images", leave=False, disable=len(with_image) < 100):
        _check_image(r.image, f"{path.name} line {r.line}")
    return records


def group_scenarios(records: list[Record], source: str) -> dict[str, list[Record]]:
    """Group records by scenario (file order, source first) and check the grouping can give EMIDs:
    the source exists, there are >= 2 scenarios, and each has >= MIN_SAMPLES samples."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.scenario, []).append(r)
    if len(groups) < MIN_SCENARIOS:
        (name, rs), = groups.items()
        raise ParameterError(
            f"only one scenario ({name!r}, lines {rs[0].line}-{rs[-1].line}); EMID needs at least {MIN_SCENARIOS}"
        )
    if source not in groups:
        shown = ", ".join(repr(s) for s in list(groups)[:12]) + (", ..." if len(groups) > 12 else "")
        raise ParameterError(f"unknown source scenario {source!r}; the input has: {shown}")
    for name, rs in groups.items():
        if len(rs) < MIN_SAMPLES:
            raise ParameterError(
                f"scenario {name!r} (first at line {rs[0].line}) has {len(rs)} samples; "
                f"at least {MIN_SAMPLES} are needed"
            )
    return {source: groups[source], **{k: v for k, v in groups.items() if k != source}}


# --------------------------------------------------------------------------------------------------
# computation


def _correlation(a: list[float], b: list[float]) -> dict:
    """Pearson and Spearman r with two-sided p-values; None where undefined (fewer than 3 points or a
    constant series)."""
    out = {"n": len(a), "pearson_r": None, "pearson_p": None, "spearman_r": None, "spearman_p": None}
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        out["reason"] = "fewer than 3 target scenarios or a constant series"
        return out
    pr = stats.pearsonr(a, b)
    sr = stats.spearmanr(a, b)
    out.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue),
               spearman_r=float(sr.statistic), spearman_p=float(sr.pvalue))
    return out


def compute_emi(
    groups: dict[str, list[Record]],
    source: str,
    text_embedder,
    *,
    image_embedder=None,
    club=None,
    seed: int = 0,
    wasserstein: str = "exact",
    club_kwargs: dict | None = None,
    progress: bool = True,
) -> dict:
    """EMI, EMID and both bounds per target scenario, and correlations; returns a JSON-ready dict.

    ``groups``: scenario -> records (from :func:`group_scenarios`); ``text_embedder`` /
    ``image_embedder``: objects of :mod:`mllm_ood.embedders` (the image one is needed iff the records
    carry images); ``club``: a trained :class:`~mllm_ood.information.CLUB` or None to train one on the
    pooled pairs (cached); ``wasserstein``: ``"exact"``, ``"sliced"`` or ``"gaussian"``.
    All MI, EMI, EMID and JSD values are in nats; W distances in embedding units.
    """
    from . import information as info
    from .cache import array_digest, cached
    from .embedders import embed_cached

    check_choice("wasserstein method", wasserstein, list(info.WASSERSTEIN_METHODS))
    if source not in groups:
        raise ParameterError(f"unknown source scenario {source!r}")
    records = [r for rs in groups.values() for r in rs]
    text_only = records[0].image is None
    if not text_only and image_embedder is None:
        raise ParameterError("the input has images: an image embedder is needed (--image-model)")
    t0 = time.time()

    # Every distinct text is embedded once, questions, responses and references together.
    texts = [r.question for r in records] + [r.response for r in records] + [r.reference for r in records]
    z = embed_cached(text_embedder, texts, progress=progress)
    n = len(records)
    zt, zy_model, zy_ref = z[:n], z[n : 2 * n], z[2 * n :]
    zv = None if text_only else embed_cached(image_embedder, [r.image for r in records], progress=progress)
    x = info.query_embedding(zt, zv)
    t_embed = time.time() - t0

    spans, start = {}, 0
    for name, rs in groups.items():
        spans[name] = slice(start, start + len(rs))
        start += len(rs)

    club_info: dict = {"trained": club is None}
    if club is None:
        kwargs = {"seed": derive_seed(seed, "emi", "club"), "progress": progress, **(club_kwargs or {})}
        params = {"x": array_digest(x), "y_model": array_digest(zy_model), "y_reference": array_digest(zy_ref),
                  "spans": [(k, s.start, s.stop) for k, s in spans.items()],
                  "train": {k: v for k, v in kwargs.items() if k != "progress"}}

        def build(folder: Path) -> None:
            trained = info.train_club_pooled(
                [x[s] for s in spans.values()], [zy_model[s] for s in spans.values()],
                [zy_ref[s] for s in spans.values()], **kwargs,
            )
            trained.save(folder)

        folder = cached("club", params, build)
        club = info.CLUB.load(folder)
        club_info["checkpoint"] = str(folder)
    if club.config.x_dim != x.shape[1] or club.config.y_dim != zy_model.shape[1]:
        raise ParameterError(
            f"the CLUB expects x of width {club.config.x_dim} and y of width {club.config.y_dim}, "
            f"but the embeddings have widths {x.shape[1]} and {zy_model.shape[1]}: "
            "use the embedders it was trained with"
        )
    club_info.update(config=club.config.__dict__, best_epoch=club.history.get("best_epoch"),
                     val_log_likelihood=(max(club.history["val_ll"]) if club.history.get("val_ll") else None))

    emis = {name: info.effective_mi(club, x[s], zy_model[s], zy_ref[s]) for name, s in spans.items()}
    src = spans[source]
    scenarios = {}
    for name in tqdm([k for k in groups if k != source], desc="bounds", disable=not progress, leave=False):
        tgt = spans[name]
        pairs = {"t": (zt[src], zt[tgt]), "py": (zy_model[src], zy_ref[src]), "qy": (zy_model[tgt], zy_ref[tgt])}
        if not text_only:
            pairs["v"] = (zv[src], zv[tgt])
        # text-only: no image term, JSv = Wv = 0
        jsd, w, ub, ub_w = info.emid_bound_estimates(pairs, seed=seed, task=("emi", "baseline", name),
                                                     wasserstein=wasserstein)
        scenarios[name] = {
            **emis[name].to_dict(),
            "emid": info.emid(emis[source], emis[name]),
            "jsd_bound": {**ub.to_dict(), "estimates": {k: e.to_dict() for k, e in jsd.items()}},
            "w_bound": {**ub_w.to_dict(), "estimates": {k: e.to_dict() for k, e in w.items()}},
        }
    emid_values = [s["emid"] for s in scenarios.values()]
    return {
        "source": source,
        "text_only": text_only,
        "note": TEXT_ONLY_NOTE if text_only else "image + text: x = (z_image + z_question) / 2",
        "seed": seed,
        "units": {"mi": "nats", "emi": "nats", "jsd": "nats",
                  "wasserstein": "embedding units (L2-normalised embeddings)"},
        "embedders": {"text": text_embedder.name, "image": None if text_only else image_embedder.name},
        "wasserstein_method": wasserstein,
        "embedding_dim": {"x": int(x.shape[1]), "y": int(zy_model.shape[1])},
        "club": club_info,
        "source_emi": emis[source].to_dict(),
        "scenarios": scenarios,
        "correlations": {
            "jsd_bound": _correlation(emid_values, [s["jsd_bound"]["bound"] for s in scenarios.values()]),
            "w_bound": _correlation(emid_values, [s["w_bound"]["bound"] for s in scenarios.values()]),
        },
        "timing_s": {"embed": round(t_embed, 2), "total": round(time.time() - t0, 2)},
    }


# --------------------------------------------------------------------------------------------------
# reporting and the command


def _fmt(v, width: int = 7, digits: int = 3) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:{width}.{digits}f}"


def format_table(result: dict) -> str:
    """A readable plain-text table of :func:`compute_emi`'s result."""
    lines = [
        f"source: {result['source']}  (EMI {result['source_emi']['emi']:.3f} nats, n={result['source_emi']['n']})",
        f"mode: {result['note']}",
        f"embedders: text={result['embedders']['text']} image={result['embedders']['image']}; "
        f"W method: {result['wasserstein_method']}",
        "",
    ]
    width = max([len("target")] + [len(k) for k in result["scenarios"]])
    head = (f"{'target':<{width}} {'n':>4} {'EMI':>7} {'EMID':>7} | {'UB_JSD':>7} {'JSv':>7} {'JSt':>7} {'JSpy':>7} "
            f"{'JSqy':>7} | {'UB_W':>7} {'Wv':>7} {'Wt':>7} {'Wpy':>7} {'Wqy':>7}")
    lines += [head, "-" * len(head)]
    for name, s in result["scenarios"].items():
        j, w = s["jsd_bound"], s["w_bound"]
        v_j = None if result["text_only"] else j["v"]
        v_w = None if result["text_only"] else w["v"]
        lines.append(
            f"{name:<{width}} {s['n']:>4d} {_fmt(s['emi'])} {_fmt(s['emid'])} | {_fmt(j['bound'])} {_fmt(v_j, 7, 4)} "
            f"{_fmt(j['t'], 7, 4)} {_fmt(j['py'], 7, 4)} {_fmt(j['qy'], 7, 4)} | {_fmt(w['bound'])} {_fmt(v_w)} "
            f"{_fmt(w['t'])} {_fmt(w['py'])} {_fmt(w['qy'])}"
        )
    lines.append("")
    lines.append("split-half baselines (same-distribution) are in the JSON under each bound's 'estimates'.")
    for key, label in (("jsd_bound", "JSD bound"), ("w_bound", "W bound")):
        c = result["correlations"][key]
        if c["pearson_r"] is None:
            lines.append(f"EMID vs {label}: undefined ({c.get('reason')})")
        else:
            lines.append(
                f"EMID vs {label} over {c['n']} targets: Pearson r = {c['pearson_r']:.3f} (p = {c['pearson_p']:.2g}), "
                f"Spearman rho = {c['spearman_r']:.3f} (p = {c['spearman_p']:.2g})"
            )
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def run(args: argparse.Namespace) -> int:
    """The ``emi`` command: validate everything, then embed, fit/load the CLUB, compute, print, write."""
    from .embedders import image_embedder, text_embedder
    from .information import CLUB

    t0 = time.time()
    records = load_records(args.input)
    groups = group_scenarios(records, args.source)
    text_only = records[0].image is None
    if not text_only and not args.image_model:
        raise ParameterError("the input has images: pass --image-model (a local model folder, a hub id, or 'clip')")
    if args.club is not None and not Path(args.club).is_dir():
        raise ParameterError(f"--club: no such checkpoint folder {args.club!r}")
    out = Path(args.out) if args.out else RUNS / "emi" / f"{Path(args.input).stem}-{args.source}.json"

    if text_only:
        print(f"note: {TEXT_ONLY_NOTE}")
    club = CLUB.load(args.club) if args.club is not None else None
    result = compute_emi(
        groups,
        args.source,
        text_embedder(args.text_model),
        image_embedder=None if text_only else image_embedder(args.image_model),
        club=club,
        seed=args.seed,
        wasserstein=args.wasserstein,
        progress=not args.quiet,
    )
    result["input"] = str(Path(args.input).resolve())
    if args.club is not None:
        result["club"]["checkpoint"] = str(Path(args.club).resolve())
    if args.save_club:
        CLUB.load(result["club"]["checkpoint"]).save(args.save_club)
        result["club"]["saved_to"] = str(Path(args.save_club).resolve())
    result["timing_s"]["command"] = round(time.time() - t0, 2)
    print(format_table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(result), indent=1))
    tmp.replace(out)
    print(f"wrote {out} ({result['timing_s']['command']:.1f} s)")
    return 0


def add_parser(sub) -> None:
    """Register ``python -m mllm_ood emi --input FILE.jsonl --source NAME [...]``."""
    p = sub.add_parser("emi", help="EMI / EMID per scenario and paper B's bound (JSD and Wasserstein)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="JSONL file: scenario, id, question, response, reference[, image]")
    p.add_argument("--source", required=True, help="the in-distribution (source) scenario name")
    p.add_argument("--out", default=None, help="results JSON (default: runs/emi/<input stem>-<source>.json)")
    p.add_argument("--text-model", default="minilm",
                   help="'minilm' (embedded profile, default), 'xlm-roberta' (paper), or a local folder / hub id")
    p.add_argument("--image-model", default=None, help="'clip' (paper), or a local model folder / hub id")
    p.add_argument("--club", default=None, help="folder of a trained CLUB (CLUB.save); default: train on the file")
    p.add_argument("--save-club", default=None, help="also copy the CLUB used into this folder")
    p.add_argument("--wasserstein", default="exact", choices=["exact", "sliced", "gaussian"],
                   help="W2 estimator for the W bound (default: exact, ot.emd2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
