"""LLaVA-NeXT (LLaVA-1.6) and LLaVA-OneVision: any-resolution tiling; the vision features are read from
the whole-image view only, not from its tiles."""

from __future__ import annotations

from ..registry import register
from .llava import LlavaModel


@register("llava_next", "llava_onevision")
class LlavaNextModel(LlavaModel):
    family = "llava_next"

    def whole_image_view(self, pixel_values):
        """Any-res pixel values are (n, views, 3, H, W); view 0 is the whole image resized."""
        return pixel_values[:, 0] if pixel_values.ndim == 5 else pixel_values
