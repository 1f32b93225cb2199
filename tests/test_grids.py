"""Scenario grids of notebook 04 (paper B): grid building, queries, the judge, embeddings' width matching,
EMI/EMID/bounds per scenario through the EMI core, correlation summaries, caching and parameter checks.

No model is trained here: a fake MLLM (counting its calls) answers the queries and a fake dataset stands
in for the embedded world, so every test runs in seconds; the information measures themselves are tested
in test_estimators.py, test_divergences.py and test_bound.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from mllm_ood.data.text_shifts import LANGUAGES, TEXT_CONDITIONS, question_in
from mllm_ood.formats.prompts import QUESTION, format_answer
from mllm_ood.paper_b import arrays, bound, checks, divergences, estimators, judges
from mllm_ood.paper_b.grids import analysis, digits
from mllm_ood.validation import ParameterError

NAMES = digits.class_names(digits.GRIDS["synthetic"])


# --------------------------------------------------------------------------------------------------
# fakes


class FakeSamples:
    """The columns scenario_responses reads from a ``datasets.Dataset``: image, label, id."""

    def __init__(self, visual: str, n_per_class: int):
        self.rows = [(c, f"{visual}-{c}-{j}") for c in range(10) for j in range(n_per_class)]
        self.visual = visual

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, col):
        if col == "label":
            return [c for c, _ in self.rows]
        if col == "id":
            return [i for _, i in self.rows]
        if col == "image":
            shade = sum(map(ord, self.visual)) % 200
            return [Image.new("L", (28, 28), color=shade + c) for c, _ in self.rows]
        raise KeyError(col)


class FakeModel:
    """Reads the 'class' off the fake image's grey level (right only where the shade is a multiple of 10);
    counts its generate calls."""

    fingerprint = "fake-model"

    def __init__(self):
        self.calls = 0
        self.queries = 0

    def generate(self, conversations, max_new_tokens=16, batch_size=8):
        self.calls += 1
        self.queries += len(conversations)
        out = []
        for images, prompt in conversations:
            assert len(images) == 1 and "Choice list:" in prompt
            out.append(format_answer(NAMES[images[0].getpixel((0, 0)) % 10]))
        return out


@pytest.fixture
def fake_world(monkeypatch):
    monkeypatch.setattr(digits, "domain_samples", lambda grid, visual, n, seed: FakeSamples(visual, n))


# --------------------------------------------------------------------------------------------------
# grids and queries


def test_grids_have_paper_b_shape():
    syn, nat = digits.GRIDS["synthetic"], digits.GRIDS["natural"]
    assert len(syn.cells()) == len(syn.visual) * len(TEXT_CONDITIONS) == 35
    assert len(nat.cells()) == len(nat.visual) * len(LANGUAGES) == 28
    for g in (syn, nat):
        assert g.cells()[0] == (g.id_visual, g.id_text)
        assert len(set(g.cells())) == len(g.cells())
    assert syn.id_scenario == "clean x clean" and nat.id_scenario == "mnist x english"


def test_subset_keeps_id_cell_and_rejects_unknown_conditions():
    g = digits.GRIDS["synthetic"].subset(["frost-5"], ["typo-2"])
    assert g.cells() == [("clean", "clean"), ("clean", "typo-2"), ("frost-5", "clean"), ("frost-5", "typo-2")]
    with pytest.raises(ParameterError, match="visual condition"):
        digits.GRIDS["synthetic"].subset(["frost-7"], None)
    with pytest.raises(ParameterError, match="text condition"):
        digits.GRIDS["natural"].subset(None, ["klingon"])


def test_questions_carry_the_text_condition():
    syn, nat = digits.GRIDS["synthetic"], digits.GRIDS["natural"]
    assert all(digits.question(syn, "clean", k, 0) == QUESTION for k in range(5))
    typos = [digits.question(syn, "typo-2", k, 0) for k in range(20)]
    assert typos == [digits.question(syn, "typo-2", k, 0) for k in range(20)]  # deterministic
    assert any(q != QUESTION for q in typos) and len(set(typos)) > 1  # perturbed, and varies per sample
    assert digits.question(nat, "german", 3, 0) == question_in("german")
    with pytest.raises(ParameterError):
        digits.question(syn, "german", 0, 0)


# --------------------------------------------------------------------------------------------------
# the judge


def test_reference_judge_rules():
    judge = judges.ReferenceJudge(NAMES)
    ref = digits.reference_answer("seven")
    assert ref == format_answer("seven")
    assert judge("q", "Answer Choice: [seven]", ref) == 1.0
    assert judge("q", "answer choice: Seven.", ref) == 1.0
    assert judge("q", "Answer Choice: [three]", ref) == 0.0
    assert judge("q", "It looks like a seven, maybe a one.", ref) == 0.5  # right class, wrong format
    assert judge("q", "It looks like a one, maybe a seven.", ref) == 0.0  # first named class is wrong
    assert judge("q", "no idea", ref) == 0.0
    assert judges.ReferenceJudge(NAMES, format_credit=0.0)("q", "a seven", ref) == 0.0
    with pytest.raises(ParameterError):
        judge("q", "seven", "not a protocol reply")


def test_judge_is_pluggable_and_checked():
    table = pd.DataFrame({"question": ["q1", "q2"], "response": ["a", "bb"], "reference": ["x", "y"]})
    assert judges.judge_scores(table, lambda q, r, ref: len(r) / 2).tolist() == [0.5, 1.0]
    with pytest.raises(ParameterError, match="judge scores"):
        judges.judge_scores(table, lambda q, r, ref: 2.0)


# --------------------------------------------------------------------------------------------------
# responses and caching


def test_responses_are_cached_per_scenario(fake_world, fresh_cache):
    grid = digits.GRIDS["synthetic"].subset(["frost-1"], ["synonym-1"])
    model = FakeModel()
    first = digits.grid_responses(model, grid, n_per_class=1, seed=0)
    assert model.calls == len(grid.cells()) and model.queries == 10 * len(grid.cells())
    assert list(first.columns) == digits.RESPONSE_COLUMNS
    assert list(dict.fromkeys(first["scenario"])) == [digits.scenario_name(v, t) for v, t in grid.cells()]
    assert (first["reference"] == [format_answer(NAMES[y]) for y in first["label"]]).all()
    again = digits.grid_responses(model, grid, n_per_class=1, seed=0)
    assert model.calls == len(grid.cells())  # nothing recomputed
    pd.testing.assert_frame_equal(first, again)
    digits.grid_responses(model, grid, n_per_class=1, seed=0, max_new_tokens=5)
    assert model.calls == 2 * len(grid.cells())  # a generation setting is part of the key


# --------------------------------------------------------------------------------------------------
# embeddings


def test_match_width_is_an_isometry_when_widening():
    g = np.random.default_rng(0)
    z = arrays.l2_normalise(g.standard_normal((30, 16)))
    w = analysis.match_width(z, 64, seed=3)
    assert w.shape == (30, 64)
    np.testing.assert_allclose(w @ w.T, z @ z.T, atol=1e-5)  # every inner product kept
    z2 = arrays.l2_normalise(g.standard_normal((30, 16)) + 0.5)
    w2 = analysis.match_width(z2, 64, seed=3)
    assert math.isclose(divergences.representation_jsd(w, w2), divergences.representation_jsd(z, z2), abs_tol=1e-5)
    np.testing.assert_array_equal(analysis.match_width(z, 64, seed=3), w)  # seeded
    narrow = analysis.match_width(g.standard_normal((5, 64)), 16, seed=0)
    np.testing.assert_allclose(np.linalg.norm(narrow, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(analysis.match_width(z, 16, seed=0), z)  # same width: unchanged


def _fake_embeddings(responses: pd.DataFrame, d: int = 8, seed: int = 0) -> analysis.GridEmbeddings:
    g = np.random.default_rng(seed)
    n = len(responses)
    shift = np.array([0.0 if v == "clean" else 1.0 for v in responses["visual"]])[:, None]
    zv = arrays.l2_normalise(g.standard_normal((n, d)) + shift)
    zt = arrays.l2_normalise(g.standard_normal((n, d)))
    labels = responses["label"].to_numpy()
    zr = arrays.l2_normalise(np.eye(d)[labels % d] + 0.1 * g.standard_normal((n, d)))
    zm = arrays.l2_normalise(zr + shift * g.standard_normal((n, d)))
    return analysis.GridEmbeddings(zt, zv, zm, zr, d, 0.0)


def test_scenario_table_emid_and_bounds(fake_world, fresh_cache):
    grid = digits.GRIDS["synthetic"].subset(["frost-1", "frost-3"], ["typo-1"])
    resp = digits.grid_responses(FakeModel(), grid, n_per_class=2, seed=0)
    emb = _fake_embeddings(resp)
    judge = judges.ReferenceJudge(NAMES)
    table, timing = analysis.scenario_table(resp, emb, grid, judge=judge, club_kwargs={"max_epochs": 3},
                                            n_boot=50, n_perm=20, progress=False)
    assert list(table["scenario"]) == [digits.scenario_name(v, t) for v, t in grid.cells()]
    src = table[table["is_id"]].iloc[0]
    assert math.isnan(src["emid"])
    ood = table[~table["is_id"]]
    np.testing.assert_allclose(ood["emid"], src["emi"] - ood["emi"])
    for _, r in ood.iterrows():
        assert r["bound_complete"]  # images are present: the whole bound
        assert math.isclose(r["jsd_sum"], bound.emid_bound(r["jsd_v"], r["jsd_t"], r["jsd_py"], r["jsd_qy"]).bound)
        assert math.isclose(r["w_sum"], bound.wasserstein_emid_bound(r["w_v"], r["w_t"], r["w_py"], r["w_qy"]).bound)
        assert r["emi_low"] <= r["emi"] <= r["emi_high"] and 0 < r["jsd_t_p"] <= 1
    expected_judge = resp.assign(s=judges.judge_scores(resp, judge)).groupby("scenario", sort=False)["s"].mean()
    np.testing.assert_allclose(table.set_index("scenario")["judge"], expected_judge[table["scenario"]])
    assert not timing["club_from_cache"]
    again, timing2 = analysis.scenario_table(resp, emb, grid, judge=judge, club_kwargs={"max_epochs": 3},
                                             n_boot=50, n_perm=20, progress=False)
    assert timing2["club_from_cache"]  # the CLUB is not retrained
    pd.testing.assert_frame_equal(table, again)


def test_scenario_table_rejects_bad_input_before_compute(fake_world, fresh_cache):
    grid = digits.GRIDS["synthetic"].subset(["frost-1"], ["typo-1"])
    resp = digits.grid_responses(FakeModel(), grid, n_per_class=1, seed=0)
    emb = _fake_embeddings(resp)
    with pytest.raises(ParameterError, match="ID scenario"):
        analysis.scenario_table(resp[resp["scenario"] != grid.id_scenario], emb, grid)
    with pytest.raises(ParameterError, match="wasserstein"):
        analysis.scenario_table(resp, emb, grid, wasserstein="earth-mover")
    few = resp.groupby("scenario", sort=False).head(5).reset_index(drop=True)
    with pytest.raises(ParameterError, match="at least 10"):
        analysis.scenario_table(few, emb, grid)
    assert not (fresh_cache / "club").exists()  # nothing was trained


# --------------------------------------------------------------------------------------------------
# correlations


def test_correlation_summary_rows():
    t = pd.DataFrame({"is_id": [True] + [False] * 5, "emi": np.linspace(0, -1, 6), "emid": [np.nan, 1, 2, 3, 4, 5.0],
                      "jsd_sum": [np.nan, 1, 2, 3, 5, 4.0], "w_sum": [np.nan, 5, 4, 3, 2, 1.0],
                      "jsd_v": [np.nan, .1, .2, .3, .4, .5], "jsd_t": [np.nan, .5, .1, .3, .2, .4],
                      "jsd_qy": [np.nan, .1, .1, .2, .2, .3], "judge": np.linspace(1, 0, 6),
                      "visual": list("aabbcc"), "text": list("xyxyxy")})
    s = analysis.correlation_summary({"g": t}, n_boot=100)
    assert set(s["pair"]) == {"EMID vs JSD bound", "EMID vs W2 bound", "EMI vs judge score", *analysis.TERM_PAIRS}
    assert set(s["resampling"]) == {"rows x columns"}  # the grid's shared conditions are respected
    row = s[(s["pair"] == "EMID vs W2 bound") & (s["method"] == "spearman")].iloc[0]
    assert math.isclose(row["r"], -1.0) and row["n"] == 5
    v = s[(s["pair"] == "EMID vs sqrt(JSv)") & (s["method"] == "pearson")].iloc[0]
    assert math.isclose(v["r"], stats.pearsonr(t["emid"][1:], np.sqrt(t["jsd_v"][1:])).statistic)
    judge_row = s[(s["pair"] == "EMI vs judge score") & (s["method"] == "pearson")].iloc[0]
    assert judge_row["n"] == 6 and math.isclose(judge_row["r"], stats.pearsonr(t["emi"], t["judge"]).statistic)
    lines = analysis.describe(s)  # numbers only: the claims are decided in the ledger (paper_b.verdicts)
    assert lines and all("Pearson r = " in line and "[" in line and "reproduced" not in line for line in lines)


# --------------------------------------------------------------------------------------------------
# parameters and estimator checks


@pytest.mark.parametrize("kwargs, match", [
    ({"grids": ["synthetic", "imaginary"]}, "grid"),
    ({"grids": "synthetic"}, "list"),
    ({"grids": []}, "list"),
    ({"n_per_class": 0}, "samples per class"),
    ({"n_boot": -1}, "n_boot"),
    ({"level": 95}, "level"),
    ({"wasserstein": "emd"}, "wasserstein"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"image_embedder": ""}, "image embedder"),
])
def test_validate_rejects_bad_parameters(kwargs, match):
    args = {"grids": ["synthetic"], "n_per_class": 2, **kwargs}
    grids, n = args.pop("grids"), args.pop("n_per_class")
    with pytest.raises(ParameterError, match=match):
        digits.validate(grids, n, **args)


def test_estimator_checks_against_closed_forms():
    w = checks.check_wasserstein([30, 300], d=4, seed=0)
    err = (w["exact"] - w["bures"]).abs()
    assert err.iloc[-1] < err.iloc[0]  # the empirical W2 approaches the Bures closed form
    j = checks.check_rjsd([0.0, 2.0], d=32, n=60, seed=0)
    assert j["jsd"].iloc[-1] > j["baseline"].iloc[-1]  # a real shift rises above the same-distribution baseline
    assert j["jsd"].iloc[0] < 2 * j["baseline"].iloc[0]  # no shift: the estimate is of the baseline's size
    m = checks.check_mi_estimators([0.5], d=2, n=400, seed=0, club_epochs=20, infonce_epochs=5)
    assert math.isclose(m["true_mi"].iloc[0], estimators.gaussian_mi(0.5, 2))
    assert m["infonce"].iloc[0] <= m["infonce_ceiling"].iloc[0] + 1e-9
