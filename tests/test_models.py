"""The single model interface on the embedded model (micro, trained in seconds) and on randomly
initialised tiny stand-ins of hub architectures saved locally: same calls, same output types."""

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_ood.data.digits import DIGIT_NAMES
from mllm_ood.mllm import load_model
from mllm_ood.mllm.standins import STANDIN_ARCHS, make_standin
from mllm_ood.formats.prompts import format_answer, zero_shot_prompt
from mllm_ood.validation import ParameterError


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, micro_model):
    root = tmp_path_factory.mktemp("models")
    dirs = {arch: make_standin(arch, root / arch) for arch in STANDIN_ARCHS}
    dirs["embedded"] = micro_model[0]
    return dirs


@pytest.fixture(scope="module")
def images():
    r = np.random.default_rng(0)
    grey = [Image.fromarray(r.integers(0, 255, (28, 28), dtype=np.uint8)) for _ in range(3)]
    return grey + [Image.fromarray(r.integers(0, 255, (40, 30, 3), dtype=np.uint8))]  # RGB, other size


def conversations(ims):
    return [([ims[0]], zero_shot_prompt(DIGIT_NAMES[:3])),
            ([ims[1], ims[2], ims[3]], "Each example image is followed by its label.<image>dax\n<image>wug\n<image>"),
            ([], "Say hello.")]


@pytest.mark.parametrize("arch", ["embedded", *STANDIN_ARCHS])
def test_same_calls_same_types(model_dirs, images, arch):
    m = load_model(model_dirs[arch])
    assert m.device == "cpu" and m.dtype == torch.float32
    convs = conversations(images)
    if arch == "idefics3":
        convs = convs[:2]  # Idefics3's processor needs at least one image per prompt in a batch with images
    replies = m.generate(convs, max_new_tokens=4)
    assert isinstance(replies, list) and len(replies) == len(convs) and all(isinstance(r, str) for r in replies)
    choices = [format_answer(c) for c in DIGIT_NAMES[:3]]
    s = m.score_choices(convs, choices)
    assert s.shape == (len(convs), 3) and s.dtype == np.float64
    assert np.isfinite(s).all() and (s < 0).all()
    # prefix reuse gives the same numbers as scoring full sequences, one query at a time or batched
    with torch.no_grad():
        full = m.score_full(convs[:2], [choices, choices])
    np.testing.assert_allclose(s[:2], full, atol=1e-3)
    one = np.stack([m.score_choices([c], choices)[0] for c in convs])
    np.testing.assert_allclose(s, one, atol=1e-3)
    per = m.score_choices(convs[:2], [choices, ["x", "yy", "Answer Choice: [dax]"]])
    np.testing.assert_allclose(per[0], s[0], atol=1e-3)
    v = m.vision_features(images[:3])
    assert v.shape[0] == 3 and v.ndim == 2 and v.dtype == np.float32
    h = m.answer_state(convs)
    assert h.shape == (len(convs), m.model.config.get_text_config().hidden_size) and h.dtype == np.float32


def test_generate_is_greedy_and_batch_invariant(model_dirs, images):
    m = load_model(model_dirs["embedded"])
    convs = conversations(images)
    assert m.generate(convs, max_new_tokens=6) == [m.generate([c], max_new_tokens=6)[0] for c in convs]


def test_bad_input(model_dirs, images, tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_model(tmp_path / "no-such-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParameterError, match="config.json"):
        load_model(empty)
    m = load_model(model_dirs["embedded"])
    with pytest.raises(ParameterError, match="image"):
        m.generate([([images[0]], "<image> and <image>")])
    with pytest.raises(ParameterError, match="image"):
        m.score_choices([([], "<image> what?")], ["a"])
    with pytest.raises(ParameterError, match="empty"):
        m.score_choices([([images[0]], "What?")], [])
    with pytest.raises(ParameterError, match="empty"):
        m.score_choices([([images[0]], "What?")], [["a"], []][1:])
    with pytest.raises(ParameterError):
        m.score_choices([([images[0]], "What?")] * 2, [["a"]] * 3)
    with pytest.raises(ParameterError):
        m.generate([])
    with pytest.raises(ParameterError):
        m.vision_features([])


def test_prompt_longer_than_the_context_is_refused(model_dirs, images):
    m = load_model(model_dirs["embedded"])
    limit = m.model.config.get_text_config().max_position_embeddings
    long_prompt = "What is in this image? " * limit  # far more tokens than positions
    for call in (lambda: m.generate([([images[0]], long_prompt)]),
                 lambda: m.score_choices([([images[0]], long_prompt)], ["a", "b"]),
                 lambda: m.answer_state([([images[0]], long_prompt)])):
        with pytest.raises(ParameterError, match=f"context of {limit} positions"):
            call()


def test_studies_take_the_model_and_its_one_fingerprint(tmp_path):
    """load_model gives every model one fingerprint (folder name + hash of config and weight files; a hub
    id as is); a study refuses a model without one."""
    from mllm_ood.paper_a import zero_shot
    from mllm_ood.mllm.refs import fingerprint_of, model_fingerprint
    from mllm_ood.validation import ParameterError

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    fp = model_fingerprint(tmp_path / "m")
    assert fp.startswith("m@") and len(fp) == len("m@") + 12
    (tmp_path / "m" / "config.json").write_text('{"a": 1}')
    assert model_fingerprint(tmp_path / "m") != fp
    assert model_fingerprint("owner/name") == "owner/name"
    with pytest.raises(ParameterError, match="load_model"):
        fingerprint_of(object())
    with pytest.raises(ParameterError, match="load_model"):
        zero_shot.evaluate(object(), ["colored_mnist"], modes=["generate"], n_per_class=1)


def test_model_input_view_is_what_the_embedded_processor_gives_the_vision_tower():
    from PIL import Image

    from mllm_ood.mllm import model_input_view

    img = np.full((96, 96, 3), 255, np.uint8)
    img[:, :48] = 0  # left half black
    view = model_input_view("data/models/embedded_mllm", [Image.fromarray(img)])
    assert view.shape == (1, 28, 28, 3)
    assert view[0, :, :12].max() < 0.05 and view[0, :, 16:].min() > 0.95
    # an independent resize of the same image agrees away from the edge
    ref = np.asarray(Image.fromarray(img).resize((28, 28), Image.BICUBIC), np.float32) / 255
    assert np.abs(view[0] - ref).mean() < 0.05


def test_the_committed_checkpoint_keeps_its_fingerprint_recipe():
    """The fingerprint that keys every cached result of the committed checkpoint is its folder name and the
    first 12 hex digits of SHA-256 over its config and weight files (names and bytes, json then safetensors,
    each sorted); the encoders' key is SHA-256 over every file's relative path and SHA-256, 16 hex digits.
    Recomputed here from the files, so a changed recipe (which would orphan every cache entry) fails."""
    import hashlib
    from pathlib import Path

    from mllm_ood.mllm import load_model
    from mllm_ood.mllm.refs import files_digest, model_fingerprint
    from mllm_ood.paths import ROOT

    folder = ROOT / "data" / "models" / "embedded_mllm"
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    expected = f"embedded_mllm@{h.hexdigest()[:12]}"
    assert model_fingerprint(folder) == expected
    assert load_model("data/models/embedded_mllm").fingerprint == expected
    d = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            d.update(str(p.relative_to(folder)).encode())
            d.update(hashlib.sha256(p.read_bytes()).hexdigest().encode())
    assert files_digest(folder) == d.hexdigest()[:16]
    assert files_digest("openai/clip-vit-base-patch32") == "hub:openai/clip-vit-base-patch32"


def test_families_declare_capabilities_and_refuse_what_they_lack(model_dirs):
    """Each loaded model is its family's class, registered by model type; ``can`` answers from the declared
    capabilities; a capability a family lacks is refused before any compute, naming it."""
    from mllm_ood.mllm import CAPABILITIES, CapabilityMissing, FAMILIES, capabilities_of, family_class
    from mllm_ood.mllm.hf import HFModel

    expected = {"embedded": "LlavaModel", "llava": "LlavaModel", "idefics3": "Idefics3Model"}
    for arch, folder in model_dirs.items():
        m = load_model(folder)
        assert type(m).__name__ == expected[arch] and m.model_type in FAMILIES
        assert all(m.can(c) for c in CAPABILITIES) and capabilities_of(str(folder)) == m.capabilities
    with pytest.raises(ParameterError, match="unknown capability"):
        m.can("telepathy")
    assert family_class("some_new_vlm") is HFModel and not HFModel.capabilities >= {"vision_features"}
    generic = HFModel.on_first_use(lambda: (_ for _ in ()).throw(AssertionError("loaded")), "x", "cpu", None, "some_new_vlm")
    assert generic.can("generate") and not generic.can("vision_features")
    with pytest.raises(CapabilityMissing, match="vision_features is not implemented for model type 'some_new_vlm'"):
        generic.vision_features([Image.new("RGB", (8, 8))])
    with pytest.raises(ParameterError, match="images must be PIL images"):
        load_model(model_dirs["llava"]).vision_features(["not an image"])
    assert capabilities_of("openai:gpt-4o") == frozenset({"generate", "score_choices"})
def test_in_words_names_the_embedded_model_its_size_and_a_hub_model_by_id(micro_model):
    from mllm_ood.mllm import in_words, load_model

    model = load_model(str(micro_model[0]))
    words = in_words(model)
    n = sum(p.numel() for p in model.model.parameters())
    assert words.endswith(f"-parameter {model.family} model)") or "architecture" in words
    assert f"{n / 1e6:.1f} M-parameter" in words

    class Endpoint:
        name, family = "openai:gpt-4o@https://api.example", "endpoint"

    assert in_words(Endpoint()) == "openai:gpt-4o@https://api.example"
