"""Warm starts: what the model-based samplers learn from earlier studies.

``create_study(..., warm_start=["cnn-2026-10"])`` hands the samplers the finished trials of other
studies (:class:`~tunelab.history.SourceStudy`). They inform the model and are never trials of the
new study. This module turns them into rows of the new study's space and into models:

- :func:`source_observations`: a source's COMPLETE trials as rows of the target space (a source
  may have a subset of the parameters: missing ones are inactive; a row with a value outside the
  target's range is left out) and losses (its own direction);
- the Gaussian process (:class:`WarmGP`): one GP per source, fitted once, gives a *prior mean*
  for the target's GP: ``m(x) = sum_s a_s mu_s(x)``, in the target's warped and standardised
  units. The weights ``a_s`` start at an even share (nothing is known of the target yet) and are
  fitted to the target's own trials as they come (non-negative least squares of the target's
  values on the sources' predictions), so a source whose optimum is shifted or whose scale differs
  is rescaled, and one that turns out unrelated (no positive rank agreement) drops to weight 0:
  the model is then the ordinary GP. The target's GP models what the sources do not explain
  (the residual), with the sources' kernel while it has fewer than five trials of its own;
- TPE: source trials join the good and bad estimators with a weight that shrinks as the target's
  own trials accumulate and vanishes for a source without positive rank agreement
  (:func:`source_weights`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState

MAX_SOURCE_ROWS = 300
"""Rows of one source a GP is fitted on: the best 100 and 200 more drawn evenly (the fit is cubic)."""
MIN_SOURCE_ROWS = 3
"""A source with fewer usable trials informs nothing."""
RESIDUAL_FIT_AT = 5
"""Target trials from which the residual GP's kernel is fitted rather than taken from the sources."""
AGREEMENT_FLOOR = 0.1
"""A source whose predictions agree with the target's values less than this (Spearman's rank
correlation, from 5 target trials on) gets weight 0."""


OWN_MODEL_AT = 8
"""Target trials from which each source is compared with the target's own model (see :func:`source_weights`)."""
OWN_MARGIN = 0.2
"""How much worse than the target's own model (in rank correlation) a source may rank before it is silenced."""


@dataclass(frozen=True)
class SourceData:
    """One source study's trials as rows of the target's space (see :func:`source_observations`)."""

    name: str
    X: np.ndarray  # (n, d), NaN where the source lacks the parameter
    y: np.ndarray  # (n,) losses: smaller is better


def source_observations(
    name: str, direction: str, trials: Sequence[FrozenTrial], names: Sequence[str], encode_unclipped: object
) -> SourceData:
    """``trials``' COMPLETE rows in the target space: ``encode_unclipped(params)`` gives a row with
    values outside [0, 1] where a value lies outside the target's range (those rows are left out)."""
    sign = 1.0 if direction == "minimize" else -1.0
    rows, ys = [], []
    for t in trials:
        if t.state != TrialState.COMPLETE or t.value is None or not math.isfinite(t.value):
            continue
        if not any(n in t.params for n in names):
            continue
        row = encode_unclipped(t.params)  # type: ignore[operator]
        given = np.array([n in t.params for n in names], dtype=bool)
        if np.isnan(row[given]).any():  # a choice the target does not have
            continue
        present = ~np.isnan(row)
        if np.any((row[present] < -1e-9) | (row[present] > 1 + 1e-9)):  # outside the target's range
            continue
        rows.append(row)
        ys.append(sign * float(t.value))
    X = np.array(rows, dtype=float).reshape(len(rows), len(names))
    return SourceData(name, X, np.array(ys, dtype=float))


def subsample(data: SourceData) -> SourceData:
    """At most :data:`MAX_SOURCE_ROWS` rows: the best 100, then rows spread over the rest (a fixed
    choice for a given source, so every worker fits the same model)."""
    n = len(data.y)
    if n <= MAX_SOURCE_ROWS:
        return data
    order = np.argsort(data.y, kind="stable")
    rest = order[100:]
    rng = np.random.default_rng(zlib.crc32(data.name.encode()))
    keep = np.concatenate([order[:100], np.sort(rng.choice(rest, size=MAX_SOURCE_ROWS - 100, replace=False))])
    return SourceData(data.name, data.X[keep], data.y[keep])


def nearest_values(source: SourceData, X: np.ndarray) -> np.ndarray:
    """The source's value at its trial nearest to each row of ``X`` (absent coordinates at 0.5): a
    cheap prediction, for measuring whether the source ranks the target's trials as they came out."""
    if len(X) == 0 or len(source.y) == 0:
        return np.zeros(len(X))
    Xs, Xt = np.nan_to_num(source.X, nan=0.5), np.nan_to_num(X, nan=0.5)
    d = ((Xt[:, None, :] - Xs[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(source.y[np.argmin(d, axis=1)], dtype=float)


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (0 when either is constant)."""
    if len(a) < 2:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    sa, sb = ra.std(), rb.std()
    if sa <= 0 or sb <= 0:
        return 0.0
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    return ranks


def source_weights(predictions: np.ndarray, y: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Weights of the sources' prior means, ``predictions`` (s, n) at the target's ``n`` trials with
    values ``y`` (n,), both in standardised units.

    With fewer than 3 target trials every source gets an even share; from 3 on, a non-negative
    least-squares fit (so a source that predicts the target's ranking but at another scale is
    rescaled); from :data:`RESIDUAL_FIT_AT` on, a source whose rank agreement with the target is
    below :data:`AGREEMENT_FLOOR` gets 0. ``own``: the target's own model's leave-one-out
    predictions; from :data:`OWN_MODEL_AT` trials on, a source that ranks the target's trials worse
    than that model does fades out (to 0 when :data:`OWN_MARGIN` worse): a related source whose
    optimum moved helps the first trials, then stops holding the search where it was.
    """
    s, n = predictions.shape
    if s == 0:
        return np.zeros(0)
    if n < 3:
        return np.full(s, 1.0 / s)
    from scipy.optimize import nnls

    weights, _ = nnls(predictions.T, y)
    if n >= RESIDUAL_FIT_AT:
        own_agreement = rank_agreement(own, y) if own is not None and n >= OWN_MODEL_AT else None
        for i in range(s):
            agreement = rank_agreement(predictions[i], y)
            if agreement < AGREEMENT_FLOOR:
                weights[i] = 0.0
            elif own_agreement is not None:
                weights[i] *= min(1.0, max(0.0, 1.0 + (agreement - own_agreement) / OWN_MARGIN))
    return np.asarray(np.minimum(weights, 3.0), dtype=float)


def tpe_source_weight(agreement: float, n_target: int, n_source: int) -> float:
    """The weight of one source trial in TPE's estimators: an even share against the target's own
    trials at first, shrinking as they accumulate (``1 / (1 + n_target / 5)``), times the rank
    agreement once it is measured (5 target trials), and spread over the source's trials so a big
    source does not drown the target: ``n_source`` rows weigh at most as much as 10 target trials."""
    trust = 1.0 if n_target < RESIDUAL_FIT_AT else max(0.0, agreement)
    if trust <= 0.0 or n_source == 0:
        return 0.0
    return trust / (1.0 + n_target / 5.0) * min(1.0, 10.0 / n_source)


def check_warm_start(value: object) -> list[tuple[str, str | None]]:
    """``create_study(warm_start=...)`` as ``[(study name, storage URL or None), ...]``."""
    if value is None:
        return []
    if isinstance(value, (str, tuple)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"warm_start must be a list of study names (or (name, storage URL) pairs), got {value!r}"
        )
    out: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str) and item.strip():
            out.append((item, None))
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0].strip()
              and isinstance(item[1], str) and item[1].strip()):
            out.append((item[0], item[1]))
        else:
            raise ConfigError(
                f"warm_start: {item!r} is neither a study name nor a (name, storage URL) pair; e.g. "
                "warm_start=['cnn-2026-10', ('mlp', 'sqlite:///old.db')]"
            )
    return out
