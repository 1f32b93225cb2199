"""Paper A (Zhang et al., arXiv 2402.06599): zero-shot OOD generalisation of MLLMs, three hypotheses for its
failures, and in-context learning.

- :mod:`.prompts`: paper A's prompt template and ``Answer Choice:`` parser (and the short embedded one);
- :mod:`.episodes`: the few-shot episode format and label words;
- :mod:`.zero_shot`: zero-shot answers per (dataset, domain, mode), cached;
- :mod:`.evaluation`: accuracy and ID-vs-OOD gap tables read from intervals (:mod:`mllm_ood.stats`);
- :mod:`.features`, :mod:`.probes`: frozen features and linear probes;
- :mod:`.hypotheses`: the three hypotheses' outcomes per domain;
- :mod:`.icl`: in-context learning studies, their evaluation, curves and claims.
"""
