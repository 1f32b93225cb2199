"""One small class per model family, each overriding only what differs from
:class:`mllm_ood.mllm.hf.HFModel` (or, behind an endpoint, implementing the interface over HTTP),
registered by ``model_type`` (:mod:`mllm_ood.mllm.registry`):

- :mod:`.llava` -- LLaVA-1.5 and the embedded model (``llava``);
- :mod:`.llava_next` -- LLaVA-NeXT / OneVision (``llava_next``, ``llava_onevision``): any-res tiles;
- :mod:`.idefics3` -- Idefics3 / SmolVLM (``idefics3``, ``smolvlm``): image splitting;
- :mod:`.qwen2_vl` -- Qwen2-VL / Qwen2.5-VL (``qwen2_vl``, ``qwen2_5_vl``): 3-D positions;
- :mod:`.endpoint` -- any model behind an OpenAI-compatible server (``endpoint``);
- anything else: the generic :class:`~mllm_ood.mllm.hf.HFModel` (no vision features).

Adding a family: a module here with a class registered for its model types, imported below."""

from . import endpoint, idefics3, llava, llava_next, qwen2_vl  # noqa: F401 - importing registers each family
from .endpoint import EndpointModel
from .idefics3 import Idefics3Model
from .llava import LlavaModel
from .llava_next import LlavaNextModel
from .qwen2_vl import Qwen2VLModel

__all__ = ["EndpointModel", "Idefics3Model", "LlavaModel", "LlavaNextModel", "Qwen2VLModel"]
