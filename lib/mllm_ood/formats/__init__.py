"""The text formats every model is prompted and trained with: paper A's zero-shot prompt and answer parser
(:mod:`.prompts`), the few-shot episode layout with its label words (:mod:`.episodes`), paper A's own
in-context layout (:mod:`.paper_a_icl`) and conversations of several turns (:mod:`.chat`).

They are paper A's protocol, but sit below :mod:`mllm_ood.mllm` because the embedded model is trained on
them; :mod:`mllm_ood.paper_a` and :mod:`mllm_ood.paper_b` read them from here."""
