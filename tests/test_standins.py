"""Shape-faithful stand-ins of the paper profile's hub MLLMs: built from resources/standins.json, saved with
save_pretrained, cached; the real checkpoints' image-token counts, context lengths and chat templates."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mllm_ood.mllm import load_model
from mllm_ood.mllm.refs import context_budget, max_shots, standin_arch_for, standin_table
from mllm_ood.mllm.standins import standin_model
from mllm_ood.formats.prompts import format_answer, paper_a_prompt
from mllm_ood.validation import ParameterError

TABLE = standin_table()["standins"]
HUB = {arch: spec["hub_ids"][0] for arch, spec in TABLE.items()}


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _image_tokens(m, im) -> int:
    cfg = m.model.config
    tid = getattr(cfg, "image_token_id", None) or cfg.image_token_index
    return int((m._inputs([([im], "What?")])["input_ids"] == tid).sum())


@pytest.mark.parametrize("arch", list(TABLE))
def test_standin_has_the_checkpoint_shapes(arch):
    folder = standin_model(HUB[arch])
    assert standin_model(HUB[arch]) == folder, "built once, then cached"
    m = load_model(folder)
    spec = TABLE[arch]
    assert m.model.config.get_text_config().max_position_embeddings == spec["max_position_embeddings"]
    assert m.model.config.get_text_config().hidden_size == 32  # tiny weights
    # The worst case (any-res tiling / image splitting) reaches the recorded maximum, a small image stays within it.
    worst = {"llava-1.5": _image(227, 227), "llava-next": _image(672, 672), "smolvlm": _image(600, 600)}[arch]
    tokens = _image_tokens(m, worst)
    assert tokens <= spec["max_image_tokens"] and _image_tokens(m, _image(96, 96)) <= spec["max_image_tokens"]
    expected = {"llava-1.5": 576, "llava-next": 2928, "smolvlm": 17 * 81}[arch]
    assert tokens == expected, f"{arch}: {tokens} image tokens for the worst-case image"
    text = m.prompt_text(([worst], "Hi"))
    assert text.startswith({"llava-1.5": "USER: <image>\n", "llava-next": "[INST] <image>\n",
                            "smolvlm": "<|im_start|>User:<image>"}[arch]), text
    prompt = paper_a_prompt(["dog", "giraffe", "horse"])
    s = m.score_choices([([worst], prompt)], [format_answer(c) for c in ["dog", "giraffe", "horse"]])
    assert s.shape == (1, 3) and np.isfinite(s).all()
    assert m.vision_features([worst]).shape == (1, 32)


def test_context_budget_and_largest_shot_count():
    assert context_budget("llava-hf/llava-1.5-7b-hf") == (576, 4096)
    assert max_shots("llava-hf/llava-1.5-7b-hf") == 5  # (4096 - 400) // 576 - 1: 8 shots do not fit
    assert max_shots("HuggingFaceTB/SmolVLM-Instruct") >= 8
    assert context_budget(str(standin_model("llava-hf/llava-1.5-7b-hf"))) == (576, 4096)
    assert context_budget("someone/unknown-model") is None


def test_models_without_a_standin_say_why():
    with pytest.raises(ParameterError, match="torchvision"):
        standin_arch_for("Qwen/Qwen2-VL-7B-Instruct")
    with pytest.raises(ParameterError, match="models with one"):
        standin_arch_for("someone/unknown-model")


def test_qwen2_vl_processor_really_needs_torchvision(tmp_path):
    """The reason recorded for Qwen2-VL: if this starts passing to load, write its stand-in."""
    import json

    from tokenizers import Tokenizer, models
    from transformers import AutoProcessor, PreTrainedTokenizerFast, Qwen2VLConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    Qwen2VLImageProcessorPil().save_pretrained(tmp_path)
    Qwen2VLConfig().save_pretrained(tmp_path)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
                            ).save_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}))
    with pytest.raises(ImportError, match="Torchvision"):
        AutoProcessor.from_pretrained(tmp_path)
