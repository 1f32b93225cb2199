"""Paper B (Oh et al., ICML 2025, arXiv 2502.00577): effective mutual information (EMI), EMID and its bound.

- :mod:`.arrays`: sample-set checks and paper B's query embedding;
- :mod:`.estimators`: CLUB, InfoNCE, their Gaussian closed forms, EMI from a CLUB;
- :mod:`.divergences`: representation JSD, Wasserstein-2, the permutation null and split-half baseline;
- :mod:`.bound`: the one bound formula and its term transforms;
- :mod:`.core`: the analysis every front end shares (spans, the pooled CLUB, EMI with intervals, the
  bound's terms with nulls, correlation tables);
- :mod:`.embedders`: text and image embedders, cached;
- :mod:`.judges`: the judges (reference-based, token overlap, paper B's GPT-4 review);
- :mod:`.grids`: scenario grids behind one analysis (digits, paper B's hub sets, the shipped LLaVA-Bench files);
- :mod:`.bench`, :mod:`.report`, :mod:`.figures`, :mod:`.checks`: notebook 04's parts, tables, figures and
  estimator checks;
- :mod:`.cli`: the ``python -m mllm_ood emi`` command.
"""
