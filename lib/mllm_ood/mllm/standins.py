"""Stand-ins: randomly initialised tiny MLLMs with a real architecture, built from config (no download) and
saved in hub format, so every family's code path runs offline.

One builder, :func:`build_standin`, assembles a LLaVA-1.5, LLaVA-NeXT or Idefics3/SmolVLM model from a
shapes dict (image and patch size, image-token counts, context length, tiling); tiny weights (hidden 32,
2 layers) and a tiny BPE tokenizer (:func:`tiny_tokenizer`). Two sets of shapes feed it:

- :data:`TINY_SPECS` -- the smallest models of each layout, for tests (:func:`make_standin`);
- ``resources/standins.json`` -- the paper profile's hub checkpoints' own shapes and chat templates
  (:func:`make_shape_standin`, cached by :func:`standin_model`).

:func:`standin_clip` is paper A's CLIP probe's stand-in."""

from __future__ import annotations

from pathlib import Path

from ..cache import cached
from ..validation import ParameterError
from .embedded.tokenizer import corpus
from .refs import standin_arch_for, standin_table

LLAVA15_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' '}}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
LLAVA_NEXT_MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'][0]['text'] + '</s> ' }}"
    "{% endif %}{% endfor %}"
)

# The smallest model of each layout (tests). Qwen2-VL has none: its processor needs torchvision (not a
# dependency), so its code path is untested on this machine.
TINY_SPECS = {
    "llava": {"family": "llava", "image_size": 30, "patch_size": 15, "image_seq_length": 4,
              "max_position_embeddings": 512},
    "idefics3": {"family": "idefics3", "image_size": 32, "patch_size": 8, "image_seq_len": 4, "scale_factor": 2,
                 "longest_edge": 32, "image_splitting": False, "max_position_embeddings": 512},
}
STANDIN_ARCHS = tuple(TINY_SPECS)


def tiny_tokenizer(specials: list[str], seed: int = 0):
    """A byte-level BPE tokenizer (400 tokens, ``tokenizers.Tokenizer``) trained on the embedded world's text
    with ``specials`` first: what every stand-in's tokenizer wraps."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed, n=300), trainer)
    return tok


def _idefics3_tokenizer(seed: int):
    """A tiny fast tokenizer with Idefics3's / SmolVLM's special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                "<global-img>", "<pad>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer(specials, seed), bos_token="<|im_start|>",
                                  eos_token="<end_of_utterance>", unk_token="<unk>", pad_token="<pad>",
                                  additional_special_tokens=specials[2:6])
    tok.chat_template = IDEFICS3_TEMPLATE
    return tok


def _llava_tokenizer(seed: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer(["<unk>", "<s>", "</s>", "<image>", "<pad>"], seed),
                                   bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=["<image>"])


def _tiny_text(tok, cls_name: str, max_positions: int):
    import transformers

    cls = getattr(transformers, cls_name)
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if cls_name == "MistralConfig":
        kw["sliding_window"] = None
    return cls(**kw)


def _llava(s: dict, seed: int):
    """(model, processor, tokenizer) of the LLaVA-1.5 (``family`` 'llava') or LLaVA-NeXT layout."""
    from transformers import CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = _llava_tokenizer(seed)
    vision = CLIPVisionConfig(image_size=s["image_size"], patch_size=s["patch_size"], hidden_size=32,
                              intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
    common = dict(image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=s["image_seq_length"],
                  vision_feature_layer=-2, vision_feature_select_strategy="default")
    size = {"shortest_edge": s["image_size"]}
    crop = {"height": s["image_size"], "width": s["image_size"]}
    if s["family"] == "llava":
        from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

        tok.chat_template = LLAVA15_TEMPLATE
        proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(size=size, crop_size=crop), tokenizer=tok,
                              patch_size=s["patch_size"], vision_feature_select_strategy="default",
                              chat_template=LLAVA15_TEMPLATE, num_additional_image_tokens=1)
        model = LlavaForConditionalGeneration(LlavaConfig(
            vision_config=vision, text_config=_tiny_text(tok, "LlamaConfig", s["max_position_embeddings"]), **common))
        return model, proc, tok
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tok.chat_template = LLAVA_NEXT_MISTRAL_TEMPLATE
    pins = s["image_grid_pinpoints"]
    ip = LlavaNextImageProcessorPil(size=size, crop_size=crop, image_grid_pinpoints=pins)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=s["patch_size"],
                              vision_feature_select_strategy="default", chat_template=LLAVA_NEXT_MISTRAL_TEMPLATE,
                              num_additional_image_tokens=1)
    model = LlavaNextForConditionalGeneration(LlavaNextConfig(
        vision_config=vision, text_config=_tiny_text(tok, "MistralConfig", s["max_position_embeddings"]),
        image_grid_pinpoints=pins, **common))
    return model, proc, tok


def _idefics3(s: dict, seed: int):
    """(model, processor, tokenizer) of the Idefics3 / SmolVLM layout."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = _idefics3_tokenizer(seed)
    ip = Idefics3ImageProcessorPil(do_image_splitting=s.get("image_splitting", True),
                                   size={"longest_edge": s["longest_edge"]},
                                   max_image_size={"longest_edge": s["image_size"]})
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=s["image_seq_len"],
                             chat_template=IDEFICS3_TEMPLATE)
    model = Idefics3ForConditionalGeneration(Idefics3Config(
        vision_config=Idefics3VisionConfig(image_size=s["image_size"], patch_size=s["patch_size"], hidden_size=32,
                                           intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        text_config=_tiny_text(tok, "LlamaConfig", s["max_position_embeddings"]),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=s["scale_factor"],
        pad_token_id=tok.pad_token_id))
    return model, proc, tok


BUILDERS = {"llava": _llava, "llava_next": _llava, "idefics3": _idefics3}


def build_standin(spec: dict, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised stand-in (model + processor + tokenizer) with the shapes ``spec`` (a
    :data:`TINY_SPECS` entry or a ``resources/standins.json`` entry; its ``family`` picks the layout) in hub
    format under ``out_dir``. Built from config only (no download); the weights follow ``seed``."""
    import torch

    if spec.get("family") not in BUILDERS:
        raise ParameterError(f"stand-in family {spec.get('family')!r} has no builder; allowed: {', '.join(BUILDERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, proc, tok = BUILDERS[spec["family"]](spec, seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def make_standin(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save the smallest stand-in of layout ``arch``: 'llava' (LLaVA-1.5 layout: CLIP tower, GELU projector,
    Llama, 'USER: <image>\\n...' template) or 'idefics3' (SmolVLM layout, no image splitting)."""
    if arch not in TINY_SPECS:
        raise ParameterError(f"unknown stand-in architecture {arch!r}; allowed: {', '.join(STANDIN_ARCHS)}")
    return build_standin(TINY_SPECS[arch], out_dir, seed)


def make_shape_standin(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a shape-faithful stand-in ``arch`` (a key of ``resources/standins.json``: 'llava-1.5',
    'llava-next', 'smolvlm') in hub format: the real checkpoint's processor settings, image-token counts,
    context length and chat template; tiny random weights (hidden 32, 2 layers). No download."""
    table = standin_table()["standins"]
    if arch not in table:
        raise ParameterError(f"unknown stand-in {arch!r}; allowed: {', '.join(table)}")
    return build_standin(table[arch], out_dir, seed)


def standin_model(hub_id: str, seed: int = 0) -> Path:
    """The cached stand-in folder of ``hub_id`` (built on first use, ``save_pretrained`` format)."""
    arch = standin_arch_for(hub_id)
    spec = standin_table()["standins"][arch]
    folder = cached("standin_model", {"arch": arch, "spec": spec, "seed": seed},
                    lambda tmp: make_shape_standin(arch, tmp / "model", seed))
    return folder / "model"


def make_clip_standin(hub_id: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``CLIPModel`` with the image and patch size of the CLIP checkpoint
    ``hub_id`` (``resources/standins.json``, key ``clip``) and its image processor, ``save_pretrained``
    format: what paper A's CLIP probe loads, offline. No download."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    spec = standin_table()["clip"]
    if hub_id not in spec["patch_size"]:
        raise ParameterError(f"no CLIP stand-in for {hub_id!r}; CLIP checkpoints with one: {', '.join(spec['patch_size'])}")
    torch.manual_seed(seed)
    size = spec["image_size"]
    cfg = CLIPConfig(text_config=CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2, max_position_embeddings=16, bos_token_id=0,
                                                eos_token_id=1, pad_token_id=1).to_dict(),
                     vision_config=CLIPVisionConfig(image_size=size, patch_size=spec["patch_size"][hub_id], hidden_size=32,
                                                    intermediate_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2).to_dict(),
                     projection_dim=32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    CLIPModel(cfg).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
    return out


def standin_clip(hub_id: str, seed: int = 0) -> Path:
    """The cached CLIP stand-in folder of ``hub_id`` (built on first use)."""
    spec = standin_table()["clip"]
    folder = cached("standin_model", {"arch": "clip", "hub_id": hub_id, "spec": spec, "seed": seed},
                    lambda tmp: make_clip_standin(hub_id, tmp / "model", seed))
    return folder / "model"
