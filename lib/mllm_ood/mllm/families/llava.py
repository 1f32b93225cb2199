"""LLaVA-1.5 (and the embedded model, built the same way): one image view through a CLIP tower; the
vision features are the layer and tokens the projector reads."""

from __future__ import annotations

from ..hf import HFModel
from ..registry import register


@register("llava")
class LlavaModel(HFModel):
    """LLaVA: vision features are the ``vision_feature_layer`` tokens (CLS dropped under the 'default'
    strategy), i.e. what the language model sees, before the projector, mean-pooled."""

    family = "llava"
    capabilities = HFModel.capabilities | {"vision_features"}
    # LLaVA-1.5's conversation template (conv_vicuna_v1 / conv_llava_v1 of the LLaVA code, which paper A's
    # harness module/LLaVA.py uses); llava-hf's chat template renders it before "USER:" exactly as that
    # template does. (The embedded model shares this family; its notebooks run with SYSTEM_PROMPT 'none'.)
    interleaves_images = False  # llava-hf's template: a message's images first, then its text
    card_system_prompt = ("A chat between a curious human and an artificial intelligence assistant. The assistant "
                          "gives helpful, detailed, and polite answers to the human's questions.")

    def whole_image_view(self, pixel_values):
        """The pixel values of the whole image, resized (LLaVA-1.5 has no other view)."""
        return pixel_values

    def vision_batch(self, ims):
        import torch

        cfg, inner = self.model.config, self.model.model
        pv = self.processor.image_processor(ims, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        hs = inner.vision_tower(pixel_values=self.whole_image_view(pv), output_hidden_states=True).hidden_states
        layers = [cfg.vision_feature_layer] if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer
        feats = [hs[layer][:, 1:] if cfg.vision_feature_select_strategy == "default" else hs[layer] for layer in layers]
        return torch.cat(feats, -1).mean(1)
