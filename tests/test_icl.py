"""ICL studies (mllm_ood.paper_a.icl): demonstration selection is seeded and never includes the query (nor
another rendering of its source image), class proportions and colour ties are realised exactly,
shifted demonstrations come from the other domain, conditions are cached, and bad parameters give one
clear ParameterError before any compute. Tiny in-memory datasets and a stub model keep this fast."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from mllm_ood.data.ids import source_of
from mllm_ood.data.world import DatasetInfo
from mllm_ood.formats.episodes import IMAGE_PLACEHOLDER, NONCE_WORDS
from mllm_ood.paper_a.icl import curves, studies, tasks
from mllm_ood.paper_a.icl import evaluation as icl_eval
from mllm_ood.formats.prompts import parse_answer
from mllm_ood.paths import PARAMS
from mllm_ood.stats import paired_effect
from mllm_ood.validation import ParameterError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _digit_image(r):
    im = np.zeros((28, 28), np.uint8)
    im[6:22, 10:18] = r.integers(120, 255)
    return PILImage.fromarray(im, mode="L")


@pytest.fixture(scope="module")
def data() -> tasks.IclData:
    """A toy 'digits' dataset with two domains that render the same source images (mnist-NNNNN-a / -b),
    and a toy grey 'digit_styles/mnist' pool for the spurious study."""
    r = np.random.default_rng(0)
    n_per = 12
    rows = {"id": [], "image": [], "label": [], "domain": []}
    for dom in ["a", "b"]:
        for c in range(4):
            for j in range(n_per):
                rows["id"].append(f"mnist-{c * 100 + j:05d}-{dom}")
                rows["image"].append(_digit_image(r))
                rows["label"].append(c)
                rows["domain"].append(dom)
    feats = Features({"id": Value("string"), "image": Image(), "label": ClassLabel(names=DIGITS[:4]),
                      "domain": Value("string")})
    toy = Dataset.from_dict(rows, features=feats)
    grey = {"id": [], "image": [], "label": [], "domain": []}
    for c in range(10):
        for j in range(10):
            grey["id"].append(f"mnist-{c * 100 + j:05d}")
            grey["image"].append(_digit_image(r))
            grey["label"].append(c)
            grey["domain"].append("mnist")
    g = Dataset.from_dict(grey, features=Features({**feats, "label": ClassLabel(names=DIGITS)}))
    d = tasks.IclData()
    d._ds["toy"] = (toy, DatasetInfo("toy", ("a", "b"), tuple(DIGITS[:4]), "a", "test", "toy"))
    d._ds["digit_styles"] = (g, DatasetInfo("digit_styles", ("mnist",), tuple(DIGITS), "mnist", "test", "grey"))
    return d


TASK = tasks.Task("toy_pair", "toy", "a", "b", ("one", "three"))
TASK3 = tasks.Task("toy_3way", "toy", "a", "b", ("zero", "one", "two"))


def cond(study="shots", task=TASK, shots=4, mode="reassigned", seed=0, n=4, source="in_domain", level=None,
         colour=None):
    return studies.Condition(study, task, shots, mode, seed, n, source, level, colour)


class StubModel:
    """Counts calls; always prefers the first choice."""

    fingerprint = "stub"

    def __init__(self):
        self.calls = 0

    def score_choices(self, conversations, choices, batch_size=8):
        self.calls += 1
        return np.array([[0.0] + [-1.0] * (len(c) - 1) for c in choices])


def test_demo_selection_is_seeded(data):
    a, _ = studies.build_condition_episodes(cond(seed=3), data)
    b, _ = studies.build_condition_episodes(cond(seed=3), data)
    c, _ = studies.build_condition_episodes(cond(seed=4), data)
    assert [e.demo_ids for e in a] == [e.demo_ids for e in b]
    assert [e.prompt for e in a] == [e.prompt for e in b]
    assert [e.demo_ids for e in a] != [e.demo_ids for e in c]
    # the queries are fixed per task: the same across seeds, shots and sources (paired comparisons)
    d, _ = studies.build_condition_episodes(cond(seed=4, shots=8, source="shifted"), data)
    assert [e.query_id for e in a] == [e.query_id for e in c] == [e.query_id for e in d]


@pytest.mark.parametrize("source", ["in_domain", "shifted"])
@pytest.mark.parametrize("shots", [0, 1, 2, 4, 8])
def test_query_never_a_demo_and_balanced(data, source, shots):
    eps, extras = studies.build_condition_episodes(cond(shots=shots, source=source, n=6), data)
    assert len(eps) == 12 and [x["query"] for x in extras] == list(range(12))
    for e in eps:
        assert e.query_id not in e.demo_ids
        # nor any rendering of the same source image (the same digit in the other domain)
        assert source_of(e.query_id) not in {source_of(i) for i in e.demo_ids}
        assert len(e.images) == shots + 1 and e.prompt.count(IMAGE_PLACEHOLDER) == shots + 1
        counts = sorted(np.bincount([[1, 3].index(c) for c in e.demo_labels], minlength=2).tolist())
        assert counts == sorted([shots // 2, shots - shots // 2])
        assert e.choices[e.answer_index] == e.words[e.query_label]
        assert set(e.words.values()) <= set(NONCE_WORDS)
    # queries cycle through the classes
    assert [e.query_label for e in eps] == [1, 3] * 6


def test_shifted_demos_come_from_the_other_domain(data):
    for source, dom in [("in_domain", "a"), ("shifted", "b")]:
        eps, extras = studies.build_condition_episodes(cond(shots=8, source=source), data)
        assert all(x["demo_domain"] == dom for x in extras)
        for e in eps:
            assert e.query_id.endswith("-a")
            assert all(i.endswith(f"-{dom}") for i in e.demo_ids)


def test_fixed_mode_uses_true_names(data):
    eps, _ = studies.build_condition_episodes(cond(mode="fixed"), data)
    for e in eps:
        assert e.choices == ["one", "three"] and e.answer == DIGITS[e.query_label]


def test_reassigned_choice_order_is_random_and_predictions_map_back(data, fresh_cache):
    eps, _ = studies.build_condition_episodes(cond(shots=2, n=10), data)
    first = [{v: k for k, v in e.words.items()}[e.choices[0]] for e in eps]
    assert set(first) == {1, 3}  # the list order does not reveal the class
    res = icl_eval.evaluate_condition(StubModel(), cond(shots=2, n=10), data)
    assert res["pred"].tolist() == first  # the stub picks the first choice: mapped back through the words


@pytest.mark.parametrize("task", [TASK, TASK3])
@pytest.mark.parametrize("fraction", [0.5, 0.625, 0.75, 1.0])
def test_label_shift_proportions_exact(data, task, fraction):
    if fraction < 1 / task.n_way:
        pytest.skip("below balance")
    eps, extras = studies.build_condition_episodes(cond("label_shift", task, 8, level=fraction, n=6), data)
    classes = data.class_indices(task)
    majors = []
    for e, x in zip(eps, extras):
        counts = {c: e.demo_labels.count(c) for c in classes}
        assert counts[x["majority"]] == round(fraction * 8)
        others = [counts[c] for c in classes if c != x["majority"]]
        assert max(others) - min(others) <= 1 and sum(others) == 8 - round(fraction * 8)
        majors.append(x["majority"])
    # every query class meets the majority class equally often
    for qc in classes:
        m = [mj for e, mj in zip(eps, majors) if e.query_label == qc]
        assert len(set(m.count(c) for c in classes)) == 1


def _colour(im) -> str:
    a = np.asarray(im).astype(int)
    mask = a.max(-1) > 0
    return "red" if a[..., 0][mask].mean() > a[..., 1][mask].mean() else "green"


@pytest.mark.parametrize("tie", [0.5, 0.625, 0.75, 1.0])
@pytest.mark.parametrize("colour", ["flipped", "aligned"])
def test_spurious_tie_strength_exact(data, tie, colour):
    task = studies.spurious_task(["one", "seven"])
    eps, extras = studies.build_condition_episodes(cond("spurious", task, 8, level=tie, colour=colour, n=4), data)
    for e, x in zip(eps, extras):
        demo_cols = [_colour(im) for im in e.images[:-1]]
        home = [studies.home_colour(y) for y in e.demo_labels]
        assert sum(c == h for c, h in zip(demo_cols, home)) == round(tie * 8)
        assert x["tie_actual"] == pytest.approx(tie)
        q = _colour(e.images[-1])
        assert (q == studies.home_colour(e.query_label)) == (colour == "aligned")
        assert source_of(e.query_id) not in {source_of(i) for i in e.demo_ids}


def test_results_cached_per_condition(data, fresh_cache):
    model = StubModel()
    c = cond(shots=2)
    first = icl_eval.evaluate_condition(model, c, data)
    again = icl_eval.evaluate_condition(model, c, data)
    assert model.calls == 1
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == tasks.RESULT_COLUMNS and len(first) == 8
    assert first["correct"].tolist() == [p == y for p, y in zip(first["pred"], first["label"])]
    icl_eval.evaluate_condition(model, cond(shots=4), data)  # another condition: computed
    assert model.calls == 2
    assert len([p for p in (fresh_cache / "icl").iterdir() if p.is_dir()]) == 2  # entries (not lock files)


def test_flipped_and_aligned_queries_meet_the_same_demos(data):
    task = studies.spurious_task(["three", "eight"])
    f, _ = studies.build_condition_episodes(cond("spurious", task, 8, level=0.75, colour="flipped"), data)
    a, _ = studies.build_condition_episodes(cond("spurious", task, 8, level=0.75, colour="aligned"), data)
    assert [e.demo_ids for e in f] == [e.demo_ids for e in a]
    assert [source_of(e.query_id) for e in f] == [source_of(e.query_id) for e in a]
    assert [e.query_id for e in f] != [e.query_id for e in a]  # same digits, other colour


class StubGenerator:
    """Replies with the first choice of the prompt's choice list, or nonsense every other time."""

    fingerprint = "stub-gen"

    def generate(self, conversations, max_new_tokens=12, batch_size=8):
        out = []
        for i, (_, prompt) in enumerate(conversations):
            first = prompt.split("Choice list: [")[1].split(",")[0]
            out.append(f"Answer Choice: [{first}]" if i % 2 == 0 else "no idea")
        return out


def test_generate_scoring_uses_paper_a_parser(data, fresh_cache):
    c = studies.Condition("shots", TASK, 2, "fixed", 0, 4, scoring="generate")
    res = icl_eval.evaluate_condition(StubGenerator(), c, data)
    assert res["parsed"].tolist() == [True, False] * 4
    assert (res.loc[res["parsed"], "pred"] == 1).all()  # 'one' is the first choice
    assert not res.loc[~res["parsed"], "correct"].any() and (res.loc[~res["parsed"], "pred"] == -1).all()


def test_summary_and_paired_effect():
    rows = []
    for seed in [0, 1]:
        for q in range(10):
            rows.append({"task": "t", "query": q, "seed": seed, "shots": 8, "correct": q < 8})
            rows.append({"task": "t", "query": q, "seed": seed, "shots": 0, "correct": q < 5})
    df = pd.DataFrame(rows)
    tab = icl_eval.summarise(df, ["shots"], n_boot=200)
    assert tab.set_index("shots")["accuracy"].to_dict() == {8: 0.8, 0: 0.5}
    assert (tab["n_queries"] == 10).all() and (tab["n_seeds"] == 2).all()
    eff = paired_effect(df[df.shots == 8], df[df.shots == 0], n_boot=200)
    assert eff["effect"] == pytest.approx(0.3) and eff["ci_low"] <= 0.3 <= eff["ci_high"]


def test_source_of():
    assert source_of("mnist-00012-rot60") == source_of("mnist-00012-textured") == "mnist-00012"
    assert source_of("mnist-00012") == "mnist-00012"
    assert source_of("mol-0001") == "mol-0001" and source_of("printed-0-0003") == "printed-0-0003"


GOOD = dict(tasks=["rotated_60"], shots_list=[0, 8], modes=["reassigned"], seeds=[0], n_per_class=5)


@pytest.mark.parametrize("change, message", [
    ({"tasks": ["no_such_task"]}, "unknown ICL task"),
    ({"tasks": []}, "non-empty list"),
    ({"tasks": [{"name": "x", "dataset": "rotated_mnist", "query_domain": "60", "shift_domain": "60",
                 "classes": ["two", "seven"]}]}, "another domain"),
    ({"tasks": [{"name": "x", "dataset": "rotated_mnist", "query_domain": "61", "shift_domain": "0",
                 "classes": ["two", "seven"]}]}, "unknown domain"),
    ({"tasks": [{"name": "x", "dataset": "rotated_mnist", "query_domain": "60", "shift_domain": "0",
                 "classes": ["two", "eleven"]}]}, "unknown class"),
    ({"tasks": [{"name": "x", "dataset": "rotated_mnist"}]}, "missing"),
    ({"shots_list": [0, -1]}, "shots must be an integer"),
    ({"modes": ["random"]}, "unknown label-word mode"),
    ({"seeds": 0}, "seeds must be"),
    ({"n_per_class": 0}, "queries per class"),
    ({"scoring": "vote"}, "unknown scoring"),
    ({"label_shift_tasks": ["printed"], "majority_fractions": [0.5]}, "label-shift task"),
    ({"label_shift_tasks": ["rotated_60"], "majority_fractions": [0.6]}, "cannot be realised exactly"),
    ({"label_shift_tasks": ["rotated_60"], "majority_fractions": [0.25]}, "below balance"),
    ({"spurious_pairs": [["one", "two"]], "tie_strengths": [0.5]}, "one class must be 0-4"),
    ({"spurious_pairs": [["one", "seven"]], "tie_strengths": [0.7]}, "cannot be realised exactly"),
    ({"spurious_pairs": [["one", "seven"]], "tie_strengths": [1.5]}, r"in \[0, 1\]"),
])
def test_bad_parameters_one_clear_error(change, message):
    with pytest.raises(ParameterError, match=message):
        tasks.validate(**{**GOOD, **change})


def test_bad_level_fails_before_the_model_is_called(data, fresh_cache):
    model = StubModel()
    with pytest.raises(ParameterError, match="cannot be realised exactly"):
        icl_eval.evaluate_condition(model, cond("label_shift", shots=8, level=0.6), data)
    with pytest.raises(ParameterError, match="at least"):  # more queries than the class holds
        icl_eval.evaluate_condition(model, cond(n=40), data)
    assert model.calls == 0


@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_params_files_validate(profile):
    p = yaml.safe_load((PARAMS / profile / "03_in_context_learning.yaml").read_text())
    resolved = tasks.validate(p["TASKS"], p["SHOTS"], p["MODES"], p["SEEDS"], p["QUERIES_PER_CLASS"], p["SCORING"],
                              p["LABEL_SHIFT_TASKS"], p["MAJORITY_FRACTIONS"], p["LABEL_SHIFT_SHOTS"],
                              p["SPURIOUS_PAIRS"], p["TIE_STRENGTHS"], p["SPURIOUS_SHOTS"])
    assert len(resolved) == len(p["TASKS"])


def test_each_study_is_a_class_and_an_unknown_study_is_refused():
    assert set(studies.STUDIES) == {"shots", "label_shift", "spurious", "drawn_classes"}
    assert all(isinstance(s, studies.Study) for s in studies.STUDIES.values())
    task = tasks.resolve_task("rotated_60")
    with pytest.raises(ParameterError, match="study"):
        studies.build_condition_episodes(studies.Condition("nonsense", task, 2, "fixed", 0, 1), tasks.IclData(seed=0))


# --------------------------------------------------------------------------------------------
# Classes drawn per episode (notebook 00's held-out curves): the same builder, study 'drawn_classes'
# --------------------------------------------------------------------------------------------

TASK_ALL = tasks.Task("toy_all", "toy", "a", "b", tuple(DIGITS[:4]))


def drawn(n_way=3, shots=4, mode="reassigned", seed=0, n=3, source="in_domain"):
    return studies.Condition("drawn_classes", TASK_ALL, shots, mode, seed, n, source, n_way=n_way)


@pytest.mark.parametrize("mode", ["fixed", "reassigned", "permuted"])
@pytest.mark.parametrize("shots", [0, 1, 2, 4, 8])
def test_drawn_classes_episodes(data, mode, shots):
    eps, extras = studies.build_condition_episodes(drawn(shots=shots, mode=mode), data)
    assert len(eps) == 12 and [x["query"] for x in extras] == list(range(12))
    # queries cycle through all the task's classes, so every class is queried equally often
    assert [e.query_label for e in eps] == [0, 1, 2, 3] * 3
    for e in eps:
        classes = sorted(e.words)
        assert len(classes) == 3 and e.query_label in classes
        if mode == "fixed":  # true names in the task's order, as paper A lists them
            assert e.choices == [DIGITS[c] for c in classes]
        if mode == "permuted":  # the episode's true names, none kept by its own class
            assert sorted(e.words.values()) == sorted(DIGITS[c] for c in classes)
            assert all(e.words[c] != DIGITS[c] for c in classes)
        if mode == "reassigned":
            assert len(set(e.words.values())) == 3 and set(e.words.values()) <= set(NONCE_WORDS)
        # never the query, nor another rendering of its source image; class-balanced over the episode's classes
        assert e.query_id not in e.demo_ids
        assert source_of(e.query_id) not in {source_of(i) for i in e.demo_ids}
        assert set(e.demo_labels) <= set(classes) and len(e.demo_ids) == len(set(e.demo_ids)) == shots
        counts = sorted(e.demo_labels.count(c) for c in classes)
        assert counts == sorted(shots // 3 + (j < shots % 3) for j in range(3))
        assert len(e.images) == shots + 1 and e.prompt.count(IMAGE_PLACEHOLDER) == shots + 1
        segs = e.prompt.split(IMAGE_PLACEHOLDER)[1:-1]
        assert [s.split("\n")[0] for s in segs] == [e.words[c] for c in e.demo_labels]
        assert e.choices[e.answer_index] == e.answer == e.words[e.query_label]
        assert parse_answer(e.reply, e.choices) == e.answer_index
    # the other classes are drawn afresh per episode
    assert len({tuple(sorted(e.words)) for e in eps}) > 1


def test_drawn_classes_seeded_and_paired(data):
    a, _ = studies.build_condition_episodes(drawn(seed=3), data)
    b, _ = studies.build_condition_episodes(drawn(seed=3), data)
    c, _ = studies.build_condition_episodes(drawn(seed=4), data)
    key = lambda eps: [(e.query_id, tuple(e.demo_ids), e.prompt) for e in eps]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
    # the same queries at every point of the curves (n_way, mode, shots, seed)
    d, _ = studies.build_condition_episodes(drawn(n_way=2, shots=8, mode="fixed", seed=5), data)
    assert [e.query_id for e in a] == [e.query_id for e in c] == [e.query_id for e in d]


def test_drawn_classes_choice_order_is_random(data):
    eps, _ = studies.build_condition_episodes(drawn(n_way=2, shots=2, n=10), data)
    answer_first = [e.answer_index == 0 for e in eps]
    assert 0 < sum(answer_first) < len(eps)  # the list order does not reveal the answer
    first = [{v: k for k, v in e.words.items()}[e.choices[0]] for e in eps]
    assert any(f != min(e.words) for f, e in zip(first, eps))  # nor the class order


@pytest.mark.parametrize("change, message", [
    ({"n_way": 1}, "2 to 4 classes"), ({"n_way": 5}, "2 to 4 classes"), ({"n_way": None}, "n_way"),
    ({"mode": "swapped"}, "label-word mode"), ({"shots": -1}, "shots"), ({"n": 0}, "queries per class"),
    ({"shots": 40}, "available"),  # more demonstrations than a class holds
])
def test_drawn_classes_bad_input(data, change, message):
    with pytest.raises(ParameterError, match=message):
        studies.build_condition_episodes(drawn(**change), data)


def test_n_way_belongs_to_the_drawn_classes_study(data):
    with pytest.raises(ParameterError, match="drawn_classes"):
        studies.build_condition_episodes(studies.Condition("shots", TASK, 2, "fixed", 0, 2, n_way=2), data)
    # an unset n_way stays out of a condition's cache key
    assert "n_way" not in cond().params() and drawn().params()["n_way"] == 3


class StubBoth(StubModel, StubGenerator):
    """Choice scoring prefers the first choice; generation replies with it every other time."""

    fingerprint = "stub-both"

    def generate(self, conversations, max_new_tokens=12, batch_size=8):
        self.calls += 1
        return StubGenerator.generate(self, conversations, max_new_tokens, batch_size)


def test_episode_curves(data, fresh_cache):
    model = StubBoth()
    args = (data, TASK_ALL, [2, 3], ["reassigned", "fixed"], [0, 2])
    res = curves.episode_curves(model, *args, 2, seed=1, batch_size=8)
    assert list(res.columns) == curves.EPISODE_COLUMNS and len(res) == 2 * 2 * 2 * 8
    assert model.calls == 8 + 4  # every condition by choice scoring, the reassigned ones also by generation
    gen = res[res["mode"] == "reassigned"]
    assert gen["parsed"].astype(bool).tolist() == [True, False] * (len(gen) // 2)
    # both pick the first choice when the reply parses; an unparsed reply (-1) agrees with nothing
    assert (gen["agree"].astype(bool) == gen["parsed"].astype(bool)).all()
    assert (gen.loc[~gen["parsed"].astype(bool), "pred_generate"] == -1).all()
    assert res.loc[res["mode"] == "fixed", ["pred_generate", "parsed", "agree"]].isna().all().all()
    assert (res["correct"] == (res["pred_loglik"] == res["label"])).all()
    for (n_way, _, _), g in res.groupby(["n_way", "mode", "shots"]):
        assert g["label"].tolist() == [0, 1, 2, 3] * 2  # the same queries at every point
    again = curves.episode_curves(model, *args, 2, seed=1, batch_size=8)
    assert model.calls == 12  # cached per condition
    pd.testing.assert_frame_equal(res, again)


def test_episode_curves_refuse_bad_values_before_compute(data, fresh_cache):
    model = StubBoth()
    with pytest.raises(ParameterError, match="2 to 4 classes"):
        curves.episode_curves(model, data, TASK_ALL, [2, 5], ["reassigned"], [0, 2], 2)
    with pytest.raises(ParameterError, match="generate mode"):
        curves.episode_curves(model, data, TASK_ALL, [2], ["fixed"], [0, 2], 2, generate_modes=["reassigned"])
    assert model.calls == 0
