"""Idefics3 and SmolVLM: the processor takes one list of images per conversation (it splits each image
into tiles); the vision features are the vision encoder's last hidden state over every tile."""

from __future__ import annotations

from ..hf import HFModel
from ..registry import register


@register("idefics3", "smolvlm")
class Idefics3Model(HFModel):
    family = "idefics3"
    capabilities = HFModel.capabilities | {"vision_features"}

    def processor_images(self, convs):
        return [list(ims) for ims, _ in convs]

    def vision_batch(self, ims):
        enc = self.processor.image_processor([[im] for im in ims], return_tensors="pt")
        pv = enc["pixel_values"].to(self.device, self.dtype)  # (n, sub-images, 3, H, W)
        n, s = pv.shape[:2]
        h = self.model.model.vision_model(pixel_values=pv.flatten(0, 1)).last_hidden_state  # (n*s, patches, d)
        return h.reshape(n, s * h.shape[1], -1).mean(1)
