"""The one decision rule every notebook reads its claims with.

A claim of a paper becomes a number measured here (an *estimate*) with a 95 % interval, and the rule
turns the interval into one of four outcomes:

- **supported**: the interval clears the margin on the side the claim predicts (and, in a family of
  claims, the claim's Holm-adjusted exact p-value is below ``alpha``);
- **contradicted**: the interval lies wholly on the other side of the margin (the effect, if any, is
  smaller than the margin, or goes the other way);
- **inconclusive**: the interval reaches across the margin (or the exact test is not significant after
  Holm's correction): the data cannot decide;
- **not testable**: the data cannot carry the claim at all: no estimate, or no room for the claimed
  effect (a ceiling: 100 % vs 100 % cannot show a gain of 5 points).

Zero-shot answers have three outcomes of their own, checked before the rule, because then the accuracy
measures something other than what the claim is about: **parse failure** (the parser finds no class in
the reply), **off-list answer** (a well-formed reply naming a class outside the choice list) and
**constant answer** (the model gives one answer to nearly every image).

The margin is :data:`MARGIN` (5 accuracy points, as a fraction) for accuracies and gains. A correlation
is compared with a published value through the interval of their difference (our interval and the
published r's Fisher-z interval combined by Zou's MOVER method) against :data:`DELTA_R`: *supported*
inside ``±DELTA_R``, *contradicted* wholly outside, *inconclusive* otherwise (so an interval wider than
``2 * DELTA_R`` can never be *supported*).

Multiplicity: within each notebook's family of claims, *supported* needs the claim's exact one-sided
p-value (:func:`sign_flip_p`: a sign-flip permutation test of the paired differences, exact when few items
differ; for 0/1 outcomes it is the exact McNemar / sign test) to stay below ``alpha`` after Holm's
correction (:func:`decide_family`). *Contradicted* and *inconclusive* rows are not corrected: the correction
only guards against calling a chance difference a reproduction.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..seeding import derive_seed
from ..validation import ParameterError

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE = "supported", "contradicted", "inconclusive", "not testable"
PARSE_FAILURE, OFF_LIST, CONSTANT_ANSWER = "parse failure", "off-list answer", "constant answer"
CLAIM_OUTCOMES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
ANSWER_OUTCOMES = (PARSE_FAILURE, OFF_LIST, CONSTANT_ANSWER)
OUTCOMES = CLAIM_OUTCOMES + ANSWER_OUTCOMES

# A claim about accuracies or gains needs its 95 % interval to clear this many points (as a fraction).
MARGIN = 0.05
# A correlation agrees with a published value when the interval of their difference lies within +-DELTA_R.
DELTA_R = 0.2
# Family-wise error rate of the *supported* outcomes within one notebook (Holm).
ALPHA = 0.05
# Generate mode: unparseable (or off-list) replies count when they are at least this share of the errors.
FORMAT_SHARE = 0.5
# One answer given to at least this share of the images is a constant answer.
CONSTANT_SHARE = 0.9

RULE_TEXT = {
    "effect": "95 % interval vs a {margin:g}-point margin; supported needs Holm-adjusted exact p < {alpha:g}",
    "no effect": "95 % interval vs a {margin:g}-point margin (claim: no effect beyond it)",
    "correlation": "interval of r - published r (MOVER, Fisher z) vs +-{delta:g}",
}


def rule_text(kind: str, margin: float = MARGIN, alpha: float = ALPHA, delta: float = DELTA_R) -> str:
    """The rule in words for a ledger row: ``kind`` 'effect', 'no effect' or 'correlation'; the margin is
    written in points."""
    if kind not in RULE_TEXT:
        raise ParameterError(f"unknown rule kind {kind!r}; choose one of {sorted(RULE_TEXT)}")
    return RULE_TEXT[kind].format(margin=100 * margin, alpha=alpha, delta=delta)


def _is_missing(*values) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)


def decide(estimate: float, low: float, high: float, *, margin: float = MARGIN, direction: int = 1,
           claims_effect: bool = True, room: float | None = None, p: float | None = None,
           alpha: float = ALPHA) -> str:
    """The outcome of one claim from its estimate and 95 % interval [low, high] (same units as ``margin``).

    ``direction`` +1: the claim is about an effect above +margin; -1: below -margin. ``claims_effect``
    False: the paper claims there is *no* such effect (e.g. "richer prompts did not help"), which swaps
    *supported* and *contradicted*. ``room``: the largest effect the data could show in the claimed
    direction (e.g. 1 - baseline accuracy); below the margin the claim is *not testable*. ``p``: the
    claim's (Holm-adjusted) one-sided p-value; when given, an interval clearing the margin also needs
    ``p < alpha`` to count (else *inconclusive*)."""
    if direction not in (1, -1):
        raise ParameterError(f"direction must be 1 or -1, got {direction!r}")
    if margin < 0:
        raise ParameterError(f"margin must be >= 0, got {margin}")
    if _is_missing(estimate, low, high) or not low <= high:
        return NOT_TESTABLE
    if room is not None and not _is_missing(room) and room < margin:
        return NOT_TESTABLE
    lo, hi = sorted((direction * low, direction * high))
    if lo > margin and (p is None or _is_missing(p) or p < alpha):
        beyond = True
    elif hi < margin:
        beyond = False
    else:
        return INCONCLUSIVE
    return SUPPORTED if beyond == claims_effect else CONTRADICTED


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of ``pvalues`` (NaN stays NaN and does not count towards the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def sign_flip_p(differences, *, direction: int = 1, n_resamples: int = 9999, seed: int = 0) -> float:
    """One-sided p-value that the mean of paired ``differences`` (one per item, a - b) is not on the
    ``direction`` side of 0: a sign-flip permutation test (``scipy.stats.permutation_test``) of the items
    that differ, exact when 2**k <= ``n_resamples`` (k = items that differ), else Monte Carlo seeded from
    ``seed``. For 0/1 outcomes it is the exact sign (McNemar) test. 1.0 when no item differs."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if direction not in (1, -1):
        raise ParameterError(f"direction must be 1 or -1, got {direction!r}")
    if not len(d):
        return 1.0
    if len(d) == 1:  # two equally likely signs (scipy's test needs two observations)
        return 0.5 if direction * d[0] > 0 else 1.0
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                 alternative="greater" if direction == 1 else "less", n_resamples=n_resamples,
                                 rng=np.random.default_rng(derive_seed(seed, "sign-flip", len(d))))
    return float(res.pvalue)


def exact_p(a, b, *, paired: bool, direction: int = 1, seed: int = 0) -> float:
    """One-sided exact p-value that mean(a) - mean(b) is not on the ``direction`` side of 0 (a, b: 0/1
    outcomes): the sign-flip (exact McNemar) test of the item pairs when ``paired``, else Fisher's exact
    test of the two independent samples. NaN when a side is empty."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return math.nan
    if paired:
        if len(a) != len(b):
            raise ParameterError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
        return sign_flip_p(a - b, direction=direction, seed=seed)
    table = [[a.sum(), len(a) - a.sum()], [b.sum(), len(b) - b.sum()]]
    return float(stats.fisher_exact(np.asarray(table, int), alternative="greater" if direction == 1 else "less")[1])


def decide_family(table: pd.DataFrame, *, alpha: float = ALPHA) -> pd.DataFrame:
    """``table`` (one row per claim of one notebook's family) with ``p_holm`` and ``outcome`` added.

    Columns read: ``estimate``, ``low``, ``high``, ``margin``, ``direction``; optional ``p`` (one-sided,
    unadjusted), ``room``, ``claims_effect`` (default True) and ``outcome`` (a row that already has an
    outcome, e.g. *not testable* or a zero-shot answer outcome, keeps it and leaves the Holm family)."""
    t = table.copy()
    given = t["outcome"] if "outcome" in t else pd.Series([None] * len(t), index=t.index)
    p = t["p"].astype(float) if "p" in t else pd.Series(np.nan, index=t.index)
    in_family = given.isna() | (given == "")
    t["p_holm"] = np.nan
    t.loc[in_family, "p_holm"] = holm(p[in_family].to_numpy())
    outcomes = []
    for i, row in t.iterrows():
        if not in_family[i]:
            outcomes.append(given[i])
            continue
        outcomes.append(decide(row["estimate"], row["low"], row["high"], margin=float(row["margin"]),
                               direction=int(row["direction"]),
                               claims_effect=bool(row["claims_effect"]) if "claims_effect" in t else True,
                               room=row["room"] if "room" in t else None,
                               p=row["p_holm"], alpha=alpha))
    t["outcome"] = outcomes
    return t


def fisher_interval(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Fisher-z interval of a Pearson r from ``n`` independent pairs: tanh(atanh(r) +- z / sqrt(n - 3))."""
    if n <= 3:
        raise ParameterError(f"a Fisher-z interval needs more than 3 pairs, got {n}")
    z, half = math.atanh(max(min(r, 0.999999), -0.999999)), stats.norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def correlation_vs_published(r: float, low: float, high: float, published_r: float, n_published: int, *,
                             delta: float = DELTA_R, level: float = 0.95) -> dict:
    """Whether a measured correlation (r with its interval [low, high], e.g. a bootstrap interval) agrees
    with a published one (``published_r`` from ``n_published`` scenarios).

    The interval of r - published_r combines the two intervals by Zou's (2007) MOVER method (each side's
    distance to its ends, added in quadrature), so both standard errors count. Outcome: *supported* when
    the interval lies within +-``delta``, *contradicted* when it lies wholly beyond it, *inconclusive*
    otherwise (always when it is wider than 2 * ``delta``), *not testable* when r or its interval is
    undefined. Returns {difference, low, high, published_low, published_high, supportable, outcome};
    ``supportable`` is False when the published r's own interval already reaches beyond ``delta`` (e.g. 0.58
    from 34 scenarios: [0.30, 0.77]): then no measurement, however precise, can show agreement within
    ``delta``, and the row can only be *contradicted* or *inconclusive* -- a limit of the published evidence,
    which the row must say."""
    if delta <= 0:
        raise ParameterError(f"delta must be > 0, got {delta}")
    pl, ph = fisher_interval(published_r, n_published, level)
    out = {"difference": np.nan, "low": np.nan, "high": np.nan, "published_low": pl, "published_high": ph,
           "supportable": bool(published_r - pl < delta and ph - published_r < delta), "outcome": NOT_TESTABLE}
    if _is_missing(r, low, high):
        return out
    d = r - published_r
    lo = d - math.sqrt((r - low) ** 2 + (ph - published_r) ** 2)
    hi = d + math.sqrt((high - r) ** 2 + (published_r - pl) ** 2)
    outcome = SUPPORTED if -delta < lo and hi < delta else CONTRADICTED if lo > delta or hi < -delta else INCONCLUSIVE
    return {**out, "difference": d, "low": lo, "high": hi, "outcome": outcome}


def answer_outcome(accuracy: float, *, parse_failure: float = 0.0, off_list: float = 0.0,
                   top_answer_share: float = 0.0, n_classes: int = 2, margin: float = MARGIN,
                   share: float = FORMAT_SHARE, constant_share: float = CONSTANT_SHARE) -> str | None:
    """The zero-shot answer outcome that makes an accuracy unfit to test a claim, or None.

    ``parse_failure`` / ``off_list``: shares of all answers with no class found / a class outside the
    choice list; either counts when above ``margin`` and at least ``share`` of the errors (1 - accuracy).
    ``top_answer_share``: share of answers that are the most frequent answer; at least ``constant_share``
    with more than one class is a constant answer (its accuracy is the share of that class, whatever the
    model sees). Checked in that order: a reply the parser cannot read is not an answer at all."""
    errors = 1 - accuracy
    for rate, outcome in ((parse_failure, PARSE_FAILURE), (off_list, OFF_LIST)):
        if not _is_missing(rate) and rate > margin and rate >= share * errors:
            return outcome
    if n_classes > 1 and not _is_missing(top_answer_share) and top_answer_share >= constant_share:
        return CONSTANT_ANSWER
    return None
