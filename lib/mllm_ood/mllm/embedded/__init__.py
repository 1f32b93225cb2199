"""The embedded MLLM: a tiny LLaVA (CLIP-style vision tower + linear projector + Llama decoder) with
its own byte-level BPE tokenizer and chat template, trained on this CPU on the in-distribution world.

Built the way LLaVA is built and saved in Hugging Face format, so it loads with ``AutoProcessor`` /
``AutoModelForImageTextToText`` exactly as a hub checkpoint does. Training is staged:

1. **vision** — supervised pretraining of the vision tower on the ID images (a linear head on the
   token that the LLM will read, random +-2 px shifts);
2. **centring** — the ID mean of that token is folded into the frozen tower's last bias (``fc2`` of
   its last layer), so image features are centred per token position (one image token here);
3. **align** — the bias-free linear projector and the (untrained) decoder learn from few-shot
   episodes with made-up label words drawn afresh per episode (only the demonstrations say which word
   means what): in-context learning forms here. The tower stays frozen from here on. Whether it forms
   within the stage depends on the start, so several independent starts are trained and the one with
   the lowest training loss at the end is kept (:func:`train_align`; held-out data never chooses);
4. **instruct** — instruction tuning on the full mix: paper A's multiple-choice prompt, captions,
   short questions, and few-shot episodes with true, made-up and permuted true label words.

Why these choices (each measured while building the model; the numbers are in
``params/embedded/model.yaml``'s comments and the project's closing notes):

- in-context learning formed only when image tokens had no shared direction (centred features,
  bias-free linear projector), each demonstration's label word directly followed its image, and the
  instructions came *after* the demonstrations (:func:`mllm_ood.formats.episodes.episode_prompt`);
- at label positions the loss is a softmax within the label vocabulary plus a small "some label word"
  term (:func:`label_token_loss`): with the plain softmax over the whole vocabulary, the 2-layer
  decoder stayed at chance on 8-shot episodes.

The diagnostic ``cross_class_cosine`` (mean cosine between projected image tokens of different
classes) should stay near 0; :class:`HeldOutProbe` tracks held-out in-context accuracy during training.

Modules: :mod:`.config` (the training config and the code identity), :mod:`.tokenizer` (tokens, chat
template, tokenizer, processor, model config), :mod:`.samples` (ID images and instruction samples),
:mod:`.training` (the stages and the loss), :mod:`.diagnostics` (held-out probes), :mod:`.saving` (train
and save a checkpoint; the reuse guard). Every name below is importable from this package.

Public entry points: :func:`load_config`, :func:`build_tokenizer`, :func:`build_processor`,
:func:`build_model_config`, :func:`train_embedded_model`, :func:`train_or_load`.
"""

from .config import DEFAULT_CONFIG, DEFAULT_MODEL_DIR, RECORD, merge_config, code_version, config_hash, load_config
from .diagnostics import HeldOutProbe, cross_class_cosine, yes_no_table
from .samples import (LABEL, TASKS, Encoder, Sample, TaskSampler, chat_sample, strip_eos, collate, data_hash,
                      load_id_data, pixel_values, shift_images)
from .saving import check_model_dir, read_record, train_embedded_model, train_or_load
from .tokenizer import (BOS, CAPTION_QUESTIONS, CHAT_TEMPLATE, DIGIT_QUESTIONS, EOS, IMAGE_TOKEN, MC_CONTEXTS,
                        MC_QUESTIONS, PAD, ROLE_TOKENS, SPECIAL_TOKENS, build_image_processor, build_model_config,
                        build_processor, build_tokenizer, caption, corpus, image_tokens_per_image)
from .training import (TRAINING_VERSION, lr_schedule, align_selection, torch_threads, centre_vision_features, label_token_loss,
                       label_vocabulary, lm_forward, train_align, train_lm_stage, train_vision, vision_token_features)
