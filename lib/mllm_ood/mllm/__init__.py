"""Every MLLM the study runs, behind one interface.

- :mod:`.base` -- the abstract :class:`MLLM` (inputs checked once, declared capabilities, ``model.can(...)``),
  the conversation format and :func:`usable_modes`;
- :mod:`.refs` -- model references (hub ids, folders, endpoints), the one :func:`model_fingerprint`, device
  and dtype, the context budget;
- :mod:`.registry` and :mod:`.families` -- one small class per family, registered by ``model_type``
  (:mod:`.hf` holds what the transformers families share);
- :mod:`.loading` -- :func:`load_model` and :func:`capabilities_of`;
- :mod:`.standins` -- the one stand-in builder (tiny models with real architectures, offline);
- :mod:`.embedded` -- the embedded model: its tokenizer, samples, training and checkpoint.

Notebooks ask a model what it can do (``model.can("vision_features")``, or :func:`capabilities_of` for a
reference before loading), never for its class."""

from .base import CAPABILITIES, MLLM, CapabilityMissing, in_words, usable_modes
from .loading import capabilities_of, load_model, model_input_view
from .refs import fingerprint_of, model_fingerprint, model_reference
from .registry import FAMILIES, family_class, register

__all__ = ["CAPABILITIES", "FAMILIES", "MLLM", "CapabilityMissing", "capabilities_of", "family_class",
           "fingerprint_of", "in_words", "load_model", "model_fingerprint", "model_input_view", "model_reference", "register",
           "usable_modes"]
