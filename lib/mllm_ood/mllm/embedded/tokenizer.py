"""The embedded model's vocabulary: special tokens, chat template, the instruction texts, the byte-level
BPE tokenizer trained on them, the processor and the ``LlavaConfig``."""

from __future__ import annotations

import json

from ...data.digits import DIGIT_NAMES
from ...formats.episodes import NONCE_WORDS, episode_prompt
from ...formats.prompts import format_answer, zero_shot_prompt
from ...seeding import rng
from ...validation import ParameterError
from ...formats.episodes import IMAGE_PLACEHOLDER

BOS, EOS, PAD = "<s>", "<|end|>", "<pad>"
IMAGE_TOKEN = IMAGE_PLACEHOLDER
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE_TOKEN, *ROLE_TOKENS.values()]


# One Jinja template for tokenizer and processor: "<s><|user|>" + content (images as <image>, text
# verbatim) + "<|end|>" per message, "<|assistant|>" as generation prompt. No whitespace is added, so
# a demonstration's label word directly follows its image token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Instruction data (ID: clean English prompts about upright grey handwritten digits).
CAPTION_QUESTIONS = ["Describe the image.", "What is in this image?", "Write a short caption for this image.",
                     "Describe this picture briefly."]
DIGIT_QUESTIONS = ["Which digit is shown?", "What number is written here?", "Which digit is this?"]
MC_QUESTIONS = ["What is in this image?", "What is in this image?", "Which digit is shown in this image?"]
MC_CONTEXTS = ["", "", "", "The image shows a handwritten digit.", "Look at the image carefully."]


def caption(name: str) -> str:
    """The reference caption of a digit image, e.g. 'A handwritten digit seven.'"""
    return f"A handwritten digit {name}."


def corpus(seed: int = 0, n: int = 2500) -> list[str]:
    """The project's prompt/answer corpus the tokenizer is trained on (deterministic)."""
    from ...data.molecules import SOLUBILITY_CLASSES
    from ...paths import RESOURCES

    r = rng(seed, "tokenizer-corpus")
    names = list(DIGIT_NAMES)
    words = list(NONCE_WORDS)
    extra = list(SOLUBILITY_CLASSES) + ["molecule", "compound", "rotated", "coloured", "colored", "red", "green",
                                         "blurred", "noisy", "printed", "handwritten", "digit", "number", "yes", "no"]
    try:
        syn = json.loads((RESOURCES / "synonyms.json").read_text())
        extra += [w for k, v in syn.items() if not k.startswith("_") for w in [k, *v]]
    except OSError:  # the synonym table is optional for the tokenizer
        pass
    lines = []
    for i in range(n):
        k = int(r.integers(2, 11))
        pool = names if i % 2 == 0 else words
        choices = [str(c) for c in r.choice(pool, size=min(k, len(pool)), replace=False)]
        q = MC_QUESTIONS[i % len(MC_QUESTIONS)]
        lines.append(zero_shot_prompt(choices, question=q, context=MC_CONTEXTS[i % len(MC_CONTEXTS)]))
        lines.append(format_answer(choices[0]))
        demo = [str(w) for w in r.choice(choices, size=int(r.integers(0, 9)))]
        lines.append(episode_prompt(demo, choices).replace(IMAGE_PLACEHOLDER, ""))
        lines.append(caption(names[i % 10]) + " " + CAPTION_QUESTIONS[i % len(CAPTION_QUESTIONS)])
        lines.append(DIGIT_QUESTIONS[i % len(DIGIT_QUESTIONS)] + " " + names[i % 10] + ".")
        lines.append(f"Is this a {names[i % 10]}? Answer yes or no. Yes. No.")
        lines.append(" ".join(str(w) for w in r.choice(extra, size=8)))
    return lines


def build_tokenizer(vocab_size: int = 640, seed: int = 0):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on :func:`corpus`, with the chat template.

    Byte-level: any text (other languages, typos) encodes without unknown tokens. Every digit name
    and nonce word is checked to be a single token (so a label word is one token after its image).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(seed), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=[IMAGE_TOKEN, *ROLE_TOKENS.values()],
                                   model_max_length=4096, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    multi = [w for w in [*DIGIT_NAMES, *NONCE_WORDS] if len(fast.encode(w, add_special_tokens=False)) != 1]
    if multi:
        raise ParameterError(f"tokenizer vocab_size={vocab_size} too small: label words split into several "
                             f"tokens: {multi}")
    return fast


def build_image_processor(config: dict):
    """The CLIP image processor (PIL backend): resize/crop to ``image_size``, RGB, scaled to [-1, 1]."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    s = int(config["vision"]["image_size"])
    return CLIPImageProcessorPil(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                 image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)


def build_processor(tokenizer, config: dict):
    """A ``LlavaProcessor`` (image processor + tokenizer + chat template) for the embedded model."""
    from transformers import LlavaProcessor

    return LlavaProcessor(image_processor=build_image_processor(config), tokenizer=tokenizer,
                          patch_size=int(config["vision"]["patch_size"]), vision_feature_select_strategy="default",
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN, num_additional_image_tokens=1)


def image_tokens_per_image(config: dict) -> int:
    """Patch tokens per image (the CLS token is dropped, as LLaVA's 'default' strategy does)."""
    return (int(config["vision"]["image_size"]) // int(config["vision"]["patch_size"])) ** 2


def build_model_config(config: dict, tokenizer):
    """The ``LlavaConfig``: CLIP vision tower, bias-free linear projector, Llama decoder."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v, t = config["vision"], config["text"]
    vision = CLIPVisionConfig(image_size=v["image_size"], patch_size=v["patch_size"], hidden_size=v["hidden_size"],
                              intermediate_size=v["intermediate_size"], num_hidden_layers=v["num_hidden_layers"],
                              num_attention_heads=v["num_attention_heads"], projection_dim=v["hidden_size"],
                              num_channels=3)
    ids = {k: tokenizer.convert_tokens_to_ids(s) for k, s in (("bos", BOS), ("eos", EOS), ("pad", PAD))}
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=t["hidden_size"],
                       intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_hidden_layers"],
                       num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_attention_heads"],
                       max_position_embeddings=t["max_position_embeddings"], bos_token_id=ids["bos"],
                       eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                       image_seq_length=image_tokens_per_image(config), projector_hidden_act="linear",
                       multimodal_projector_bias=False, vision_feature_select_strategy="default",
                       vision_feature_layer=-1, tie_word_embeddings=False)
