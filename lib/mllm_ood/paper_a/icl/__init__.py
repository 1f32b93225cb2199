"""In-context learning (ICL) and its vulnerabilities (paper A's ICL sections), on any model of
:mod:`mllm_ood.mllm`: tasks and pools (:mod:`.tasks`), studies and the episode builder (:mod:`.studies`),
cached evaluation (:mod:`.evaluation`), notebook 00's curves (:mod:`.curves`), paper A's claims decided by the
one rule (:mod:`.claims`), the measurements behind notebook 03's oddities (:mod:`.readings`) and its figures
(:mod:`.plots`).

The studies, each a grid of *conditions*; every condition is one cached table of per-query results:

- ``shots``: accuracy against the number of demonstrations (0/1/2/4/8, class-balanced), with the
  demonstrations drawn from the query's own domain (``in_domain``) or from another domain of the same
  dataset (``shifted``, e.g. upright MNIST demonstrations for a 60-degree query, small molecules for a
  large-molecule query) — the *domain shift* vulnerability;
- ``label_shift``: a fixed number of demonstrations whose class proportions go from balanced to all one
  class (``level`` = the majority class's share, realised *exactly*); the majority class alternates over
  queries so that every query class meets it equally often;
- ``spurious``: ColoredMNIST-style demonstrations whose colour is tied to the label (``level`` = the
  exact share of demonstrations painted their class's home colour: red for 0-4, green for 5-9, as in
  :mod:`mllm_ood.data.world`), queried with the tie flipped (``query_colour='flipped'``: the other
  colour) or kept (``'aligned'``, the control);
- ``drawn_classes`` (notebook 00's held-out in-context curves): each episode holds the query's class
  and ``n_way - 1`` other classes of the task drawn afresh per episode, class-balanced demonstrations
  from the query's domain (:func:`episode_curves`).

Every episode of every study comes from one builder, :func:`build_condition_episodes`; a study is a
small class (:class:`Study` and its subclasses) that decides the episode's classes, the demonstration
counts and pool, and how demonstrations and query are shown.

Label words (``mode``, see :mod:`mllm_ood.formats.episodes`): ``fixed`` gives every class its true name in the
task's order (paper A's setting: the model may also use its zero-shot prior); ``reassigned`` draws
made-up words afresh per episode and lists them in a random order, so only the demonstrations can say
which word means what (pure ICL; 0 shots is chance by construction). The notebook reports both.

Scoring (``scoring``): ``loglik`` scores each choice's reply ``Answer Choice: [word]`` by its summed
log-likelihood (nats) under the episode prompt and predicts the most likely one (never unparsed);
``generate`` decodes greedily and applies paper A's ``Answer Choice:`` parser (unparsed = wrong).

Seeds: queries are fixed per task (``query_seed``), so every condition of a task sees the same
queries (paired comparisons); demonstrations and reassigned words change with the demonstration
``seed``. A demonstration is never the query nor another rendering of the query's source image (e.g.
the same MNIST digit at another rotation). Accuracy per point = mean over demonstration seeds; its
interval is a percentile bootstrap over queries of each query's seed-averaged correctness.
"""
