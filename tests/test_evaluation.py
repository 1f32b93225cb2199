"""Bootstrap intervals against the binomial closed form; aggregation against a committed golden table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mllm_ood.paper_a.evaluation import accuracy_table
from mllm_ood.validation import ParameterError


def test_accuracy_table_golden(tmp_path):
    from mllm_ood.paths import ROOT

    results = pd.read_csv(ROOT / "tests" / "golden" / "zero_shot_results_small.csv")
    table = accuracy_table(results, ["dataset", "domain"], n_boot=500, seed=0)
    expected = pd.read_csv(ROOT / "tests" / "golden" / "zero_shot_accuracy_small.csv")
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected, check_dtype=False, atol=1e-12)
    # Independent check of the point estimates (not against the golden file): plain group means.
    means = results.groupby(["dataset", "domain"], sort=False)["correct"].mean().to_numpy()
    assert np.allclose(table["accuracy"].to_numpy(), means)
    with pytest.raises(ParameterError, match="lack columns"):
        accuracy_table(results.drop(columns="correct"), ["dataset"])


def test_gap_table_against_hand_computed_gaps():
    from mllm_ood.paper_a.evaluation import gap_table

    results = pd.DataFrame({"mode": "generate", "family": ["ID"] * 4 + ["natural"] * 4 + ["mol"] * 2,
                            "dataset": ["ds"] * 8 + ["m"] * 2, "domain": ["id"] * 4 + ["ood"] * 4 + ["x"] * 2,
                            "correct": [1, 1, 1, 0, 1, 0, 0, 0, 1, 0]})
    id_rows = {"ds": results[results["domain"] == "id"]}
    out = gap_table(results, id_rows, {"ds": "ds/id"}, ["generate"], n_boot=200)
    assert list(out["domain"]) == ["id", "ood", "x"]
    ood = out[out["domain"] == "ood"].iloc[0]
    assert ood["accuracy"] == 0.25 and ood["id_accuracy"] == 0.75 and ood["gap"] == -0.5
    assert ood["gap_low"] <= -0.5 <= ood["gap_high"]
    mol = out[out["dataset"] == "m"].iloc[0]
    assert mol["id_reference"] == "" and np.isnan(mol["gap"])


def test_severity_table_starts_every_corruption_at_clean():
    from mllm_ood.paper_a.evaluation import CORRUPTIONS, severity_table

    table = pd.DataFrame({"dataset": ["corrupted_mnist"] * 3 + ["rotated_mnist"],
                          "domain": ["clean", "frost-3", "gaussian_noise-5", "45"], "accuracy": [0.9, 0.5, 0.2, 0.7]})
    out = severity_table(table)
    assert len(out) == len(CORRUPTIONS) + 2
    assert set(out[out["severity"] == 0]["corruption"]) == set(CORRUPTIONS)
    assert out[out["domain"] == "frost-3"][["corruption", "severity"]].values.tolist() == [["frost", 3]]


def test_pairing_with_the_reference_by_source_image():
    from mllm_ood.paper_a.evaluation import pair_with_reference

    ref = pd.DataFrame({"id": ["mnist-1", "mnist-2", "mnist-3"], "correct": [True, True, False]})
    ood = pd.DataFrame({"id": ["mnist-3-rot15", "mnist-1-rot15", "mnist-2-rot15"], "correct": [True, False, False]})
    pairs = pair_with_reference(ood, ref)
    assert pairs["correct"].tolist() == [True, False, False] and pairs["correct_ref"].tolist() == [False, True, True]
    assert pair_with_reference(ood.assign(id=["uci-1", "uci-2", "uci-3"]), ref) is None
    assert pair_with_reference(ood.iloc[:2], ref) is None


def test_gap_table_pairs_shifted_copies_and_not_other_images():
    from mllm_ood.paper_a.evaluation import gap_table
    from mllm_ood.stats import bootstrap_diff_ci, bootstrap_paired_diff_ci

    r = np.random.default_rng(0)
    ids = [f"mnist-{i:03d}" for i in range(200)]
    id_correct = r.random(200) < 0.9
    rot = id_correct & (r.random(200) < 0.8)
    results = pd.concat([
        pd.DataFrame({"id": ids, "correct": id_correct, "domain": "mnist"}),
        pd.DataFrame({"id": [i + "-rot30" for i in ids], "correct": rot, "domain": "30"}),
        pd.DataFrame({"id": [f"uci-{i}" for i in range(200)], "correct": rot, "domain": "uci"}),
    ]).assign(mode="loglik", family="f", dataset="ds")
    out = gap_table(results, {"ds": results[results["domain"] == "mnist"]}, {"ds": "ds/mnist"}, ["loglik"], n_boot=500)
    paired, unpaired = out[out["domain"] == "30"].iloc[0], out[out["domain"] == "uci"].iloc[0]
    assert paired["paired"] and not unpaired["paired"]
    assert (paired["gap_low"], paired["gap_high"]) == bootstrap_paired_diff_ci(rot, id_correct, n_boot=500)
    assert (unpaired["gap_low"], unpaired["gap_high"]) == bootstrap_diff_ci(rot, id_correct, n_boot=500)
    assert paired["gap"] == unpaired["gap"] == pytest.approx(rot.mean() - id_correct.mean())
    assert paired["gap_high"] - paired["gap_low"] < unpaired["gap_high"] - unpaired["gap_low"]


def test_family_means_leave_the_id_domains_out():
    from mllm_ood.paper_a.evaluation import family_means

    table = pd.DataFrame({"mode": "loglik", "family": ["natural"] * 3 + ["synthetic"] * 2,
                          "dataset": ["ds"] * 3 + ["rot"] * 2, "domain": ["mnist", "uci", "printed", "0", "45"],
                          "accuracy": [0.9, 0.5, 0.3, 0.9, 0.6], "chance": 0.1})
    out = family_means(table, [("ds", "mnist"), ("rot", "0")]).set_index("family")
    assert out.loc["natural", "accuracy"] == pytest.approx(0.4) and out.loc["natural", "domains"] == 2
    assert out.loc["synthetic", "accuracy"] == pytest.approx(0.6) and out.loc["synthetic", "domains"] == 1


def test_mode_agreement_pairs_the_same_images():
    from mllm_ood.paper_a.evaluation import mode_agreement

    ids = [f"i{k}" for k in range(200)]
    same = np.arange(200) % 10 < 9
    rows = [{"dataset": "d", "domain": "same", "mode": m, "id": i, "correct": c} for m in ["generate", "loglik"]
            for i, c in zip(ids, same)]
    rows += [{"dataset": "d", "domain": "apart", "mode": m, "id": i, "correct": c if m == "loglik" else False}
             for m in ["generate", "loglik"] for i, c in zip(ids, same)]
    rows += [{"dataset": "d", "domain": "close", "mode": m, "id": i, "correct": c if m == "loglik" or k >= 12 else False}
             for m in ["generate", "loglik"] for k, (i, c) in enumerate(zip(ids, same))]
    out = mode_agreement(pd.DataFrame(rows), n_boot=500).set_index("domain")
    assert out.loc["same", "identical"] and out.loc["same", "finding"] == "agree"
    assert out.loc["apart", "finding"] == "differ" and out.loc["apart", "difference"] == pytest.approx(-0.9)
    # 11 of 200 answers differ (5.5 points): the paired interval straddles the margin
    assert out.loc["close", "finding"] == "inconclusive" and not out.loc["close", "identical"]
