"""The embedded MLLM: tokenizer, chat template, staged training (micro model in seconds),
determinism, the saved Hugging Face format, and the committed checkpoint."""

import json

import numpy as np
import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from mllm_ood.mllm import embedded as em
from mllm_ood.data.digits import DIGIT_NAMES
from mllm_ood.formats.episodes import NONCE_WORDS, label_words
from mllm_ood.validation import ParameterError


@pytest.fixture(scope="module")
def tokenizer():
    return em.build_tokenizer(640)


@pytest.fixture(scope="module")
def micro(micro_model):
    return micro_model


def test_tokenizer_handles_any_text(tokenizer):
    for text in ["这张图片里有什么？", "Wht is in ths imgae?", "Τι υπάρχει σε αυτή την εικόνα;", "x\ty\u00a0z"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    for w in [*DIGIT_NAMES, *NONCE_WORDS]:
        assert len(tokenizer.encode(w, add_special_tokens=False)) == 1


def test_chat_template_multi_image(tokenizer):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Label.\n"}, {"type": "image"},
                                         {"type": "text", "text": "dax\n"}, {"type": "image"}]}]
    text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<s><|user|>Label.\n<image>dax\n<image><|end|><|assistant|>"
    toks = tokenizer.tokenize(text)
    assert toks[toks.index("<image>") + 1] == "dax"  # the label word directly follows its image


def test_micro_model_saved_in_hub_format(micro):
    out, rec = micro
    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True)
    cfg = model.config
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert cfg.projector_hidden_act == "linear" and cfg.multimodal_projector_bias is False
    assert model.model.multi_modal_projector.linear_1.bias is None
    assert processor.chat_template == em.CHAT_TEMPLATE
    saved = json.loads((out / em.RECORD).read_text())
    assert saved == json.loads(json.dumps(rec))
    for key in ("seed", "config", "config_hash", "data_hash", "code_version", "losses", "wall_s", "diagnostics"):
        assert key in saved
    assert saved["config"]["id_data"]["dataset"] == "mnist_train"
    assert set(saved["wall_s"]) >= {"vision", "centring", "align", "instruct"}
    assert len(saved["losses"]["instruct_loss"]) == saved["config"]["stages"]["instruct"]["steps"]
    # centring folded into the tower: ID features have (near) zero mean
    assert saved["diagnostics"]["centring"]["mean_norm_ratio_after"] < 1e-3
    # one image token per image
    ims = [__import__("PIL.Image", fromlist=["Image"]).fromarray(np.zeros((28, 28), np.uint8))]
    enc = processor(text=["<s><|user|><image>hi<|end|><|assistant|>"], images=ims, return_tensors="pt")
    assert int((enc["input_ids"] == cfg.image_token_id).sum()) == 1


def test_pixels_match_processor(micro):
    out, _ = micro
    from PIL import Image

    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    x = np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8)
    ref = processor.image_processor([Image.fromarray(a) for a in x], return_tensors="pt")["pixel_values"]
    assert float((ref - em.pixel_values(x)).abs().max()) < 1e-6


def test_label_token_loss_splits_the_full_cross_entropy():
    """Full CE = CE within the label vocabulary + (-log P(label vocabulary)), checked against torch's CE
    and a hand-computed log-softmax."""
    import torch

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 20, generator=g) * 3
    label_ids = torch.tensor([3, 7, 11, 12])
    targets = torch.tensor([7, 12, 3, 5, 11, 0])
    is_label = torch.tensor([True, True, True, False, True, False])
    full = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(em.label_token_loss(logits, targets, is_label, label_ids, 1.0), full, atol=1e-5)
    within = em.label_token_loss(logits, targets, is_label, label_ids, 0.0)
    assert torch.allclose(within[~is_label], full[~is_label])
    sub = logits[:, label_ids]
    ref = -(sub - sub.logsumexp(-1, keepdim=True))[torch.arange(6), [1, 3, 0, 0, 2, 0]]
    assert torch.allclose(within[is_label], ref[is_label], atol=1e-5)
    assert bool((within[is_label] < full[is_label]).all())  # the out-of-set term is positive


def test_permuted_episode_words_override_the_prior():
    r = np.random.default_rng(0)
    for k in (2, 3, 5):
        for _ in range(50):
            cls = sorted(r.choice(10, k, replace=False).tolist())
            words = label_words(cls, DIGIT_NAMES, "permuted", r)
            assert sorted(words.values()) == sorted(DIGIT_NAMES[c] for c in cls)  # the episode's own names
            assert all(words[c] != DIGIT_NAMES[c] for c in cls)  # none keeps its own name
    with pytest.raises(ParameterError):
        label_words([0, 1], DIGIT_NAMES, "shuffled", r)


def test_training_is_deterministic(tmp_path):
    cfg = em.load_config(smoke=True)
    cfg["stages"]["vision"]["steps"] = 4
    cfg["stages"]["align"]["steps"] = 3
    cfg["stages"]["instruct"]["steps"] = 3
    a = em.train_embedded_model(cfg, tmp_path / "a", smoke=True)
    b = em.train_embedded_model(cfg, tmp_path / "b", smoke=True)
    assert a["losses"] == b["losses"] and a["data_hash"] == b["data_hash"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_train_or_load_reuses(micro):
    out, rec = micro
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    _, rec2 = em.train_or_load(out, em.load_config(smoke=True), smoke=True)
    assert rec2["config_hash"] == rec["config_hash"]
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime


def test_checkpoint_guard_refuses_silent_retrains(micro, tmp_path, monkeypatch):
    """Another seed or config is refused (naming the difference) before any training; the committed
    folder needs replace_committed on top of retrain; an empty folder trains."""
    import shutil

    out, rec = micro
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "model.safetensors").read_bytes()
    other = em.load_config(smoke=True)
    other["seed"] = 7
    with pytest.raises(ParameterError, match=r"seed: checkpoint 0, requested 7.*RETRAIN=True"):
        em.train_or_load(copy, other, smoke=True)
    other = em.load_config(smoke=True)
    other["stages"]["align"]["lr"] = 0.5
    with pytest.raises(ParameterError, match=r"stages\.align\.lr"):
        em.train_or_load(copy, other, smoke=True)
    assert (copy / "model.safetensors").read_bytes() == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ParameterError, match="not a checkpoint"):
        em.train_or_load(tmp_path / "junk", em.load_config(smoke=True), smoke=True)
    # the committed checkpoint: refused even with retrain, unless replace_committed (checked first: no training)
    monkeypatch.setattr(em.saving, "DEFAULT_MODEL_DIR", copy)
    with pytest.raises(ParameterError, match="REPLACE_COMMITTED"):
        em.train_or_load(copy, em.load_config(smoke=True), retrain=True, smoke=True)
    assert (copy / "model.safetensors").read_bytes() == before


def test_bad_config(tmp_path):
    with pytest.raises(ParameterError):
        em.load_config(tmp_path / "missing.yaml")
    cfg = em.load_config(smoke=True)
    cfg["id_data"]["domains"] = ["nope"]
    with pytest.raises(ParameterError):
        em.load_id_data(cfg)


@pytest.mark.skipif(not (em.DEFAULT_MODEL_DIR / "config.json").is_file(), reason="no committed checkpoint")
def test_committed_checkpoint_answers_id_images():
    from mllm_ood.data.world import load
    from mllm_ood.mllm import load_model
    from mllm_ood.formats.prompts import parse_answer, zero_shot_prompt

    m = load_model(em.DEFAULT_MODEL_DIR)
    ds = load("digit_styles", "mnist").select(range(20))
    replies = m.generate([([im], zero_shot_prompt(DIGIT_NAMES)) for im in ds["image"]], max_new_tokens=12)
    pred = [parse_answer(r, DIGIT_NAMES) for r in replies]
    assert np.mean(np.array(pred) == np.array(ds["label"])) >= 0.8
    rec = em.read_record(em.DEFAULT_MODEL_DIR)
    assert rec["config_hash"] == em.config_hash(em.load_config())


def test_guard_compares_the_training_version_not_the_source_hash(micro, tmp_path):
    """A record from another TRAINING_VERSION is refused; a record without one (the committed checkpoint's,
    made before the field existed) counts as version 1; the source hash (code_version) is not compared."""
    import shutil

    out, _ = micro
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rec = json.loads((copy / em.RECORD).read_text())
    rec["code_version"] = "2+b756ba9c7938"
    rec.pop("training_version")
    (copy / em.RECORD).write_text(json.dumps(rec))
    assert em.TRAINING_VERSION == 1
    em.train_or_load(copy, em.load_config(smoke=True), smoke=True)  # accepted: no training
    rec["training_version"] = em.TRAINING_VERSION + 1
    (copy / em.RECORD).write_text(json.dumps(rec))
    with pytest.raises(ParameterError, match="training code: checkpoint version 2, now 1"):
        em.train_or_load(copy, em.load_config(smoke=True), smoke=True)


def test_public_names_stay_importable_from_the_package():
    for name in ("load_config", "merge_config", "train_embedded_model", "train_or_load", "train_lm_stage", "train_vision",
                 "HeldOutProbe", "Encoder", "build_tokenizer", "build_model_config", "load_id_data",
                 "vision_token_features", "pixel_values", "shift_images", "centre_vision_features",
                 "label_token_loss", "label_vocabulary", "lm_forward", "code_version", "corpus", "read_record",
                 "config_hash", "DEFAULT_MODEL_DIR", "CHAT_TEMPLATE", "RECORD", "TaskSampler", "collate", "torch_threads"):
        assert hasattr(em, name), name


def test_align_keeps_the_candidate_with_the_lowest_training_loss(micro):
    _, rec = micro
    cfg = em.load_config(smoke=True)
    n, window = cfg["stages"]["align"]["candidates"], cfg["stages"]["align"]["select_window"]
    cands = rec["losses"]["align_candidates"]
    assert [c["candidate"] for c in cands] == list(range(n)) and n >= 2
    assert cands[0]["seed"] == cfg["seed"] and len({c["seed"] for c in cands}) == n
    for c in cands:  # the criterion, recomputed from each candidate's own loss curve
        assert c["selection_loss"] == pytest.approx(np.mean(c["loss"][-window:]), abs=1e-5)
        assert c["heldout"] and c["heldout"][-1]["step"] == cfg["stages"]["align"]["steps"]
    best = int(np.argmin([c["selection_loss"] for c in cands]))
    assert [c["chosen"] for c in cands] == [k == best for k in range(n)]
    assert rec["losses"]["align_loss"] == cands[best]["loss"]  # the kept model is the chosen one
    assert rec["losses"]["align_heldout"] == cands[best]["heldout"]
    assert cands[0]["loss"] != cands[1]["loss"]  # independent starts, not copies


def test_first_align_candidate_is_the_plain_stage(tmp_path):
    cfg = em.load_config(smoke=True)
    for stage, steps in (("vision", 4), ("align", 4), ("instruct", 2)):
        cfg["stages"][stage]["steps"] = steps
    cfg["stages"]["align"]["select_window"] = 2
    one = em.merge_config(cfg, {"stages": {"align": {"candidates": 1}}})
    a = em.train_embedded_model(one, tmp_path / "one", smoke=True)
    b = em.train_embedded_model(cfg, tmp_path / "two", smoke=True)
    assert a["losses"]["align_candidates"][0]["loss"] == b["losses"]["align_candidates"][0]["loss"]
    assert len(a["losses"]["align_candidates"]) == 1 and a["losses"]["align_candidates"][0]["chosen"]


@pytest.mark.parametrize("over", [{"candidates": 0}, {"candidates": "4"}, {"candidates": True},
                                  {"select_window": 0}, {"select_window": 11}, {"select_window": 2.5}])
def test_bad_align_restarts_fail_before_training(tmp_path, over):
    cfg = em.merge_config(em.load_config(smoke=True), {"stages": {"align": over}})
    with pytest.raises(ParameterError, match="stages.align"):
        em.train_embedded_model(cfg, tmp_path / "m", smoke=True)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("steps", [40, 900, 3000])
def test_learning_rate_schedule_is_transformers_cosine_after_warm_up(steps):
    """The training schedule against transformers' cosine-with-minimum-rate scheduler as the oracle: the
    same rate at every step from the end of the warm-up on; during the warm-up ours is one step ahead
    (it starts at 1/warm of the rate, transformers' at 0)."""
    import torch
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    from mllm_ood.mllm.embedded.training import lr_schedule

    warm = max(1, steps // 20)
    rates = []
    for make in (lambda o: lr_schedule(o, steps, 1.0),
                 lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, warm, steps, min_lr_rate=0.05)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, seen = make(opt), []
        for _ in range(steps):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        rates.append(np.array(seen))
    ours, theirs = rates
    assert np.allclose(ours[warm:], theirs[warm:], rtol=0, atol=1e-12)
    assert np.allclose(ours[:warm - 1], theirs[1:warm], rtol=0, atol=1e-12) and theirs[0] == 0 and ours[warm - 1] == 1
    assert ours[-1] > 0.05 and theirs[-1] > 0.05  # decays towards, never below, 5 % of the rate


def test_yes_no_table_counts_replies_per_question_kind():
    """A model that says "Yes." to everything: every own-digit question right, every other-digit one wrong;
    the other digit asked is never the image's own."""
    from mllm_ood.mllm.embedded import yes_no_table

    asked = []

    class AlwaysYes:
        def generate(self, convs, max_new_tokens=4):
            asked.extend(q for _, q in convs)
            return ["Yes." for _ in convs]

    t = yes_no_table(AlwaysYes(), [None] * 20, [k % 10 for k in range(20)], seed=1).set_index("asked about")
    assert t.loc["its own digit", "Yes"] == 1.0 and t.loc["its own digit", "correct"] == 1.0
    assert t.loc["another digit", "correct"] == 0.0 and t["questions"].tolist() == [20, 20]
    from mllm_ood.data.digits import DIGIT_NAMES
    own, other = asked[:20], asked[20:]
    assert all(f"a {DIGIT_NAMES[k % 10]}?" in q for k, q in enumerate(own))
    assert not any(f"a {DIGIT_NAMES[k % 10]}?" in q for k, q in enumerate(other))


def test_yes_no_table_reads_replies_without_a_word_as_neither():
    """Replies with no word before the first full stop ('', '.', '. Yes') count as neither Yes nor No."""
    from mllm_ood.mllm.embedded import yes_no_table

    class Odd:
        def generate(self, convs, max_new_tokens=4):
            return ["", ".", ". Yes", "No."][: len(convs)]

    t = yes_no_table(Odd(), [None] * 4, [1, 2, 3, 4], seed=0).set_index("asked about")
    assert t.loc["its own digit", "neither"] == 0.75 and t.loc["its own digit", "No"] == 0.25
