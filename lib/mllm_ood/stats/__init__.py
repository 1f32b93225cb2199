"""Statistics shared by every notebook.

- :mod:`.intervals`: bootstrap intervals of means and of differences (independent or paired), paired
  effects over queries, correlations with intervals (crossed designs included), how an interval is written;
- :mod:`.resampling`: the cluster bootstrap (items that share an image or a query are drawn together);
- :mod:`.rule`: the one decision rule every claim is read with (supported / contradicted / inconclusive /
  not testable, the zero-shot answer outcomes, Holm's correction, the exact sign-flip test, a correlation
  against a published value).

Every random draw is seeded from a ``seed`` argument. Accuracies and effects are fractions.
"""

from .intervals import (
    CORRELATION_METHODS, CORRELATION_VERSION, bootstrap_ci, bootstrap_diff_ci, bootstrap_paired_diff_ci,
    difference_interval, paired_effect, agreement, percent_interval,
    points_interval, interval_text, with_interval_column, number_text, correlation_ci,
)
from .resampling import cluster_bootstrap_ci, cluster_members, cluster_resamples, draws_interval
from .rule import (
    CLAIM_OUTCOMES, ANSWER_OUTCOMES, OUTCOMES, MARGIN, DELTA_R, ALPHA, FORMAT_SHARE, CONSTANT_SHARE,
    RULE_TEXT, SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, PARSE_FAILURE, OFF_LIST, CONSTANT_ANSWER,
    rule_text, decide, holm, sign_flip_p, exact_p, decide_family, fisher_interval, correlation_vs_published,
    answer_outcome,
)

__all__ = [n for n in dir() if not n.startswith('_') and n not in ('intervals', 'resampling', 'rule')]
