"""Qwen2-VL and Qwen2.5-VL: multimodal rotary positions computed by the model itself, which do not carry
over a repeated key/value cache, so choices are scored as whole prompt + choice sequences; the vision
features are the vision blocks' output before the patch merger.

No stand-in here: Qwen2-VL's processor needs torchvision (not a dependency), so this path is untested on
this machine (``resources/standins.json``, ``no_standin``)."""

from __future__ import annotations

import numpy as np

from ..hf import HFModel
from ..registry import register


@register("qwen2_vl", "qwen2_5_vl")
class Qwen2VLModel(HFModel):
    family = "qwen2_vl"
    capabilities = HFModel.capabilities | {"vision_features"}

    def positions(self, mask):
        return None  # the model computes its own (3-D) positions

    def score_batch(self, chunk, cps) -> np.ndarray:
        return self.score_full(chunk, cps)

    def vision_batch(self, ims):
        import torch

        enc = self.processor.image_processor(images=ims, return_tensors="pt")
        pv, grid = enc["pixel_values"].to(self.device, self.dtype), enc["image_grid_thw"].to(self.device)
        visual = self.model.model.visual
        captured = {}
        handle = visual.merger.register_forward_hook(lambda m, a, o: captured.setdefault("x", a[0]))
        try:
            visual(pv, grid_thw=grid)
        finally:
            handle.remove()
        x = captured["x"]  # (total patches, d) before merging
        sizes = (grid.prod(-1)).tolist()
        return torch.stack([t.mean(0) for t in x.split(sizes)])
