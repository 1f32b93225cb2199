"""``python -m mllm_ood emi``: EMI per scenario, EMID against a source scenario, and paper B's bound.

Input: a JSONL file (UTF-8), one sample per line::

    {"scenario": str, "id": str, "question": str, "response": str, "reference": str, "image": optional path}

``response`` is the model's answer, ``reference`` the reference answer (e.g. GPT-4's); ``image`` paths are
relative to the file's folder unless absolute. Either every line has an image or none does. Two scenarios
with the same set of ids are taken to hold the same items (one question clean and perturbed): their
input terms get a paired permutation null.

Steps (paper B's method, computed by :mod:`mllm_ood.paper_b.core`): embed questions, responses, references
(and images); x = mean of the L2-normalised image and question embeddings; one CLUB trained on the
pooled (x, response) and (x, reference) pairs of all scenarios (or loaded with ``--club``); per scenario
EMI = CLUB(x, response) - CLUB(x, reference) with a bootstrap interval over its queries; EMID =
EMI(source) - EMI(target); every divergence term beside its permutation null at the same sample size;
the sum ``sqrt(JSv) + sqrt(JSt) + JSpy^(1/4) + JSqy^(1/4)`` and its Wasserstein analogue; Pearson and
Spearman correlations of EMID with those sums over the target scenarios.

Without images the analysis is text-only: x = the question embedding, and the image term JSv is
UNKNOWN (not zero), so the sum of the other terms is reported as the *text-side sum* (``jsd_text_side``
in the JSON), not as the bound.

Every input error (encoding, a lone surrogate, a bad field, a repeated id, a missing image, an ``--out``
or ``--save-club`` that cannot be written) is reported, naming the line or path, before anything is
embedded; the results file is written atomically (a temporary file renamed into place, removed on
failure).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import RUNS
from ..progress import tqdm
from ..stats import correlation_ci, number_text
from ..validation import ParameterError, check_choice, check_file, check_positive_int
from . import core
from .bound import TEXT_ONLY_NOTE, bound_label
from .embedder_checks import check_image_embedder, check_text_embedder
from .embedders import embed_cached, image_embedder, text_embedder
from .estimators import CLUB

FIELDS = ("scenario", "id", "question", "response", "reference")


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


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParameterError(f"{where}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                             "save the file as UTF-8") from None


def _check_encodable(value: str, field: str, where: str) -> None:
    """JSON allows escaped lone surrogates (``"\\ud800"``), which no UTF-8 text can hold: refuse them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ParameterError(f"{where}: field {field!r} holds a lone surrogate (U+{ord(value[err.start]):04X}) at "
                             f"character {err.start + 1}; it is not valid Unicode text") from None


def load_records(path) -> list[Record]:
    """Read and validate an EMI input file (see the module docstring); blank lines are skipped.

    Raises ParameterError naming the line for bytes that are not UTF-8, invalid JSON, a missing or
    non-string field, a lone surrogate, a repeated (scenario, id), a mix of lines with and without
    images, or an image that does not open.
    """
    path = check_file("EMI input", path)
    records: list[Record] = []
    seen: dict[tuple[str, str], int] = {}
    with open(path, "rb") as f:
        for line_no, raw_bytes in enumerate(f, start=1):
            where = f"{path.name} line {line_no}"
            raw = _decode(raw_bytes, where)
            if line_no == 1:
                raw = raw.lstrip("\ufeff")  # a UTF-8 byte-order mark is harmless
            if not raw.strip():
                continue
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
                _check_encodable(value, field, where)
            empty = next((f for f in FIELDS if isinstance(obj[f], str) and not obj[f].strip()), None)
            if empty is not None:  # an empty text embeds to a constant: it would enter the estimates as data
                raise ParameterError(f"{where}: field {empty!r} is empty")
            image = obj.get("image")
            if image is not None:
                if not isinstance(image, str) or not image:
                    raise ParameterError(f"{where}: field 'image' must be a non-empty path string")
                _check_encodable(image, "image", where)
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
    """Group records by scenario (source first, then file order), checked by
    :func:`mllm_ood.paper_b.core.scenario_spans`: the source exists, there are >= 2 scenarios, and each has
    >= MIN_SAMPLES samples (the message names the scenario's first line)."""
    spans = core.scenario_spans([r.scenario for r in records], source=source,
                                first_lines=[r.line for r in records])
    return {name: [records[i] for i in idx] for name, idx in spans.items()}


def check_writable(what: str, target, *, folder: bool = False) -> Path:
    """``target`` as a Path once it is clear it can be written, else ParameterError naming it.

    Checked before any compute: the target is not a folder (a file target) or not a file (a folder
    target), its nearest existing parent is a folder, and a probe file can be created there (and is
    removed at once): this catches missing permissions and read-only file systems alike.
    """
    target = Path(target)
    if target.exists() and (target.is_dir() != folder):
        raise ParameterError(f"{what}: {str(target)!r} is {'a file' if folder else 'a folder'}")
    parent = target if folder and target.is_dir() else target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ParameterError(f"{what}: cannot create {str(target)!r}: {str(parent)!r} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise ParameterError(f"{what}: cannot write {str(target)!r}: {err.strerror or err} in {str(parent)!r}") from None
    if target.is_file() and not os.access(target, os.W_OK):
        raise ParameterError(f"{what}: {str(target)!r} is not writable")
    return target


# --------------------------------------------------------------------------------------------------
# computation


def _correlation(a: list[float], b: list[float]) -> dict:
    """Pearson and Spearman r with two-sided p-values; None where undefined (fewer than 3 points or a
    constant series)."""
    out = {"n": len(a), "pearson_r": None, "pearson_p": None, "spearman_r": None, "spearman_p": None}
    p = correlation_ci(np.asarray(a, float), np.asarray(b, float), method="pearson", n_boot=1)
    if np.isnan(p["r"]):
        out["reason"] = "fewer than 3 target scenarios or a constant series"
        return out
    s = correlation_ci(np.asarray(a, float), np.asarray(b, float), method="spearman", n_boot=1)
    out.update(pearson_r=p["r"], pearson_p=p["p"], spearman_r=s["r"], spearman_p=s["p"])
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
    n_boot: int = 1000,
    n_perm: int = 100,
    progress: bool = True,
) -> dict:
    """EMI (with intervals), EMID and the bound's terms (with permutation nulls) per target scenario, and
    correlations; returns a JSON-ready dict (see :mod:`mllm_ood.paper_b.core`).

    ``groups``: scenario -> records (from :func:`group_scenarios`); ``text_embedder`` /
    ``image_embedder``: objects of :mod:`mllm_ood.paper_b.embedders` (the image one is needed iff the records
    carry images); ``club``: a trained :class:`~mllm_ood.paper_b.estimators.CLUB` or None to train one on the
    pooled pairs (cached); ``wasserstein``: ``"exact"``, ``"sliced"`` or ``"gaussian"``.
    All MI, EMI, EMID and JSD values are in nats; W distances in embedding units.
    """
    check_choice("wasserstein method", wasserstein, ["exact", "sliced", "gaussian"])
    if source not in groups:
        raise ParameterError(f"unknown source scenario {source!r}")
    records = [r for rs in groups.values() for r in rs]
    text_only = records[0].image is None
    if not text_only and image_embedder is None:
        raise ParameterError("the input has images: an image embedder is needed (--image-model)")
    t0 = time.time()
    texts = [r.question for r in records] + [r.response for r in records] + [r.reference for r in records]
    z = embed_cached(text_embedder, texts, progress=progress)
    n = len(records)
    zv = None if text_only else embed_cached(image_embedder, [r.image for r in records], progress=progress)
    emb = core.EmbeddedSamples(z[:n], z[n:2 * n], z[2 * n:], zv, ids=np.array([r.id for r in records], dtype=object))
    t_embed = time.time() - t0
    analysis = core.analyse(emb, [r.scenario for r in records], source, club=club, seed=seed, n_boot=n_boot,
                            n_perm=n_perm, wasserstein=wasserstein, club_kwargs=club_kwargs, task="emi",
                            progress=progress)
    table = analysis.table.set_index("scenario")
    by_term = {(r["scenario"], r["term"]): r for r in analysis.terms.to_dict("records")}
    sum_key = "jsd_bound" if not text_only else "jsd_text_side"
    w_key = "w_bound" if not text_only else "w_text_side"
    scenarios = {}
    for name in groups:
        if name == source:
            continue
        row = table.loc[name]
        terms = {"py": by_term[(source, "qy")], "qy": by_term[(name, "qy")], "t": by_term[(name, "t")]}
        if not text_only:
            terms["v"] = by_term[(name, "v")]
        scenarios[name] = {
            "n": int(row["n"]), "emi": row["emi"], "emi_low": row["emi_low"], "emi_high": row["emi_high"],
            "mi_model": row["mi_model"], "mi_reference": row["mi_reference"], "emid": row["emid"],
            sum_key: row["jsd_sum"], w_key: row["w_sum"],
            "terms": {k: {f: v for f, v in t.items() if f not in ("scenario", "term")} for k, t in terms.items()},
        }
    src = table.loc[source]
    emid_values = [s["emid"] for s in scenarios.values()]
    return core.json_safe({
        "source": source,
        "text_only": text_only,
        "note": TEXT_ONLY_NOTE if text_only else "image + text: x = (z_image + z_question) / 2",
        "bound_complete": not text_only,
        "sums": {sum_key: bound_label(not text_only, "jsd"), w_key: bound_label(not text_only, "w")},
        "seed": seed,
        "units": {"mi": "nats", "emi": "nats", "jsd": "nats",
                  "wasserstein": "embedding units (L2-normalised embeddings)"},
        "embedders": {"text": text_embedder.name, "image": None if text_only else image_embedder.name},
        "wasserstein_method": wasserstein,
        "null": {"kind": "permutation (paired swaps where items match)", "n_perm": n_perm},
        "embedding_dim": {"x": int(emb.z_text.shape[1]), "y": int(emb.y_model.shape[1])},
        "club": {"trained": club is None, **analysis.club},
        "source_emi": {"n": int(src["n"]), "emi": src["emi"], "emi_low": src["emi_low"], "emi_high": src["emi_high"],
                       "mi_model": src["mi_model"], "mi_reference": src["mi_reference"]},
        "scenarios": scenarios,
        "correlations": {
            sum_key: _correlation(emid_values, [s[sum_key] for s in scenarios.values()]),
            w_key: _correlation(emid_values, [s[w_key] for s in scenarios.values()]),
        },
        "timing_s": {"embed": round(t_embed, 2), **analysis.seconds, "total": round(time.time() - t0, 2)},
    })


# --------------------------------------------------------------------------------------------------
# reporting and the command


def format_table(result: dict) -> str:
    """A readable plain-text table of :func:`compute_emi`'s result."""
    text_only = result["text_only"]
    sum_key, w_key = list(result["sums"])
    se = result["source_emi"]
    lines = [
        f"source: {result['source']}  (EMI {se['emi']:.3f} [{se['emi_low']:.3f}, {se['emi_high']:.3f}] nats, n={se['n']})",
        f"mode: {result['note']}",
        f"embedders: text={result['embedders']['text']} image={result['embedders']['image']}; "
        f"W method: {result['wasserstein_method']}",
        f"{'S_JSD' if text_only else 'UB_JSD'} = {result['sums'][sum_key]}; "
        f"{'S_W' if text_only else 'UB_W'} = {result['sums'][w_key]}",
        "each term: value, and '*' when above its permutation null (p < 0.05)",
        "",
    ]
    width = max([len("target")] + [len(k) for k in result["scenarios"]])
    head = (f"{'target':<{width}} {'n':>4} {'EMI':>7} {'EMID':>7} | {'S_JSD' if text_only else 'UB_JSD':>7} "
            f"{'JSv':>8} {'JSt':>8} {'JSpy':>8} {'JSqy':>8} | {'S_W' if text_only else 'UB_W':>7}")
    lines += [head, "-" * len(head)]

    def term(s, k):
        t = s["terms"].get(k)
        if t is None:
            return f"{'?' if text_only else '-':>8}"
        star = "*" if t["jsd_p"] is not None and t["jsd_p"] < 0.05 else " "
        return f"{t['jsd']:7.4f}{star}"

    for name, s in result["scenarios"].items():
        lines.append(f"{name:<{width}} {s['n']:>4d} {number_text(s['emi'])} {number_text(s['emid'])} | "
                     f"{number_text(s[sum_key])} "
                     f"{term(s, 'v')} {term(s, 't')} {term(s, 'py')} {term(s, 'qy')} | {number_text(s[w_key])}")
    lines.append("")
    if text_only:
        lines.append("JSv '?': the image term is unknown without images; the S columns are not the bound.")
    for key in (sum_key, w_key):
        c = result["correlations"][key]
        label = result["sums"][key]
        if c["pearson_r"] is None:
            lines.append(f"EMID vs {label}: undefined ({c.get('reason')})")
        else:
            lines.append(
                f"EMID vs {label} over {c['n']} targets: Pearson r = {c['pearson_r']:.3f} (p = {c['pearson_p']:.2g}), "
                f"Spearman rho = {c['spearman_r']:.3f} (p = {c['spearman_p']:.2g})"
            )
    return "\n".join(lines)


def write_json_atomic(out: Path, obj) -> None:
    """Write ``obj`` as JSON to ``out`` through a temporary sibling renamed into place; the temporary
    file is removed if anything fails, so ``out`` is either complete or untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(core.json_safe(obj), indent=1))
        tmp.replace(out)
    except OSError as err:
        raise ParameterError(f"--out: cannot write {str(out)!r}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """The ``emi`` command: validate everything (input, options, output paths), then embed, fit/load the
    CLUB, compute, print, write."""

    t0 = time.time()
    records = load_records(args.input)
    groups = group_scenarios(records, args.source)
    text_only = records[0].image is None
    if not text_only and not args.image_model:
        raise ParameterError("the input has images: pass --image-model (a local model folder, a hub id, or 'clip')")
    if text_only and args.image_model:
        raise ParameterError(f"--image-model {args.image_model!r}: the input has no images, so no image model is used; "
                             f"drop the option or give every line an 'image'")
    check_text_embedder(args.text_model)  # a misspelled name or an unreachable hub id: refused here, at once
    if not text_only:
        check_image_embedder(args.image_model, allow_model=False)
    if not 0 <= args.seed <= 2**32 - 1:
        raise ParameterError(f"--seed must be an integer in [0, 2**32 - 1], got {args.seed}")
    if args.club is not None and not Path(args.club).is_dir():
        raise ParameterError(f"--club: no such checkpoint folder {args.club!r}")
    check_positive_int("--n-boot", args.n_boot)
    check_positive_int("--n-perm", args.n_perm)
    out = Path(args.out) if args.out else RUNS / "emi" / f"{Path(args.input).stem}-{args.source}.json"
    check_writable("--out", out)
    if args.save_club:
        check_writable("--save-club", args.save_club, folder=True)
    club = CLUB.load(args.club, device="cpu") if args.club is not None else None

    if text_only:
        print(f"note: {TEXT_ONLY_NOTE}")
    result = compute_emi(
        groups,
        args.source,
        text_embedder(args.text_model),
        image_embedder=None if text_only else image_embedder(args.image_model),
        club=club,
        seed=args.seed,
        wasserstein=args.wasserstein,
        n_boot=args.n_boot,
        n_perm=args.n_perm,
        progress=not args.quiet,
    )
    result["input"] = str(Path(args.input).resolve())
    if args.club is not None:
        result["club"]["checkpoint"] = str(Path(args.club).resolve())
    if args.save_club:
        CLUB.load(result["club"]["checkpoint"], device="cpu").save(args.save_club)
        result["club"]["saved_to"] = str(Path(args.save_club).resolve())
    result["timing_s"]["command"] = round(time.time() - t0, 2)
    print(format_table(result))
    write_json_atomic(out, result)
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
                   help="'minilm' (English, default), 'e5' (multilingual-e5-small, offline), 'xlm-roberta' (paper), "
                        "or a local folder / hub id")
    p.add_argument("--image-model", default=None, help="'clip' (paper), or a local model folder / hub id")
    p.add_argument("--club", default=None, help="folder of a trained CLUB (CLUB.save); default: train on the file")
    p.add_argument("--save-club", default=None, help="also copy the CLUB used into this folder")
    p.add_argument("--wasserstein", default="exact", choices=["exact", "sliced", "gaussian"],
                   help="W2 estimator for the W sum (default: exact, ot.emd2)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per EMI interval (default 1000)")
    p.add_argument("--n-perm", type=int, default=100, help="permutations per divergence null (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
