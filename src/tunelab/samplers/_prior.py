"""Users' priors in the model-based samplers: the start-up design drawn partly from them, and piBO.

A parameter's prior (:mod:`tunelab.priors`) is, in the samplers' coordinates, a Gaussian
truncated to [0, 1] (numeric) or a probability per choice index (categorical, boolean).
:class:`SpacePrior` holds them for a whole row of an :class:`~tunelab.samplers.model_based.EncodedSpace`:

- :meth:`SpacePrior.from_uniform` maps a point of the unit cube through each coordinate's
  inverse CDF, so that a low-discrepancy (Sobol) design over the cube becomes a low-discrepancy
  design over the prior. Only a share of the start-up design (:data:`STARTUP_PRIOR_SHARE`,
  70%) goes through the priors; the rest stays uniform, so a wrong belief cannot own the
  start-up.
- :meth:`SpacePrior.log_density` is ``log prior(x)``, the sum over the coordinates that have a
  prior (the others, and absent coordinates, contribute nothing).
- A categorical (or boolean) prior is mixed half and half with the uniform choice
  (:data:`CATEGORICAL_UNIFORM_SHARE`) in both: a belief of 0.7 on one of three choices counts as
  0.52 and 0.15 as 0.24, so no choice is starved of start-up trials and a wrong favourite's pull
  is bounded.

piBO (Hvarfner et al., "piBO: Augmenting acquisition functions with user beliefs for Bayesian
optimization", ICLR 2022) multiplies the acquisition by ``prior(x) ** w(n)`` after ``n``
measured trials: in log space, :class:`PriorTerm` adds ``w(n) * log prior(x)`` to the GP's
log expected improvement and to TPE's ``log l(x) - log g(x)``. The GP keeps the paper's
``w(n) = beta / n``; TPE's weight falls as ``beta * 10 / n**2`` after its first
:data:`TPE_FADE_AFTER` trials (:func:`prior_weight_at`): with ``beta / n`` a misleading belief
still picked TPE's proposals after 30 trials that disagreed with it, and kept TPE on a wrong
categorical choice, while the faster fade cost the GP its good priors' gains
(``benchmarks/priors.py`` measures both). The weight is a function of the observations alone, so deterministic studies
replay it exactly.

A belief the evidence bears out keeps some weight (:func:`prior_agreement`): the weight gains
``beta * share * a``, where ``a`` is how well the prior's density ranks the measured trials (Spearman's rank
correlation of ``prior(x)`` and ``-loss``, 0 when it does not rank them better than chance). A good prior then
keeps the model from spending trials far outside it once the search is in its region; a misleading one ranks
the trials the wrong way round (its region is where the losses are high), so it gains nothing and fades as
piBO's term does. The share is :data:`GP_AGREEMENT_SHARE` for the GP, :data:`TPE_AGREEMENT_SHARE` for TPE,
which also adds the prior as a kernel of its good density, weighted by the same agreement
(:data:`TPE_PRIOR_KERNEL_SHARE`). With a prior on every parameter the GP also starts its model after half the
start-up trials (:func:`startup_trials`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from tunelab.distributions import Distribution
from tunelab.errors import ConfigError
from tunelab.priors import UnitCategorical, UnitGaussian

DEFAULT_PRIOR_WEIGHT = 10.0
"""piBO's beta: the prior counts as ``prior(x) ** (beta / n)`` after n measured trials (the paper's default)."""

TPE_FADE_AFTER = 10
"""TPE's prior weighs piBO's ``beta / n`` up to this many measured trials, ``beta * 10 / n**2`` beyond."""

STARTUP_PRIOR_SHARE = 0.7
"""The share of the start-up design drawn from the priors (the rest is uniform)."""

CATEGORICAL_UNIFORM_SHARE = 0.5
"""A categorical prior ``p`` counts as ``(1 - share) * p + share / k`` over its ``k`` choices."""

GP_AGREEMENT_SHARE = 1.0
"""The GP's prior weight gains ``beta * share * agreement`` (:func:`prior_agreement`): 10 at the default beta."""

TPE_AGREEMENT_SHARE = 0.3
"""TPE's prior weight gains ``beta * share * agreement``: 3 at the default beta."""

TPE_PRIOR_KERNEL_SHARE = 0.3
"""TPE's good density gains the prior as a kernel weighing ``beta * share * agreement`` (3 at the default beta;
a good trial's kernel weighs 1)."""

GP_STARTUP_WITH_PRIORS = 0.5
"""With a prior on every parameter the GP uses its model after this share of ``n_startup_trials``."""


def startup_trials(n_startup_trials: int, distributions: Sequence[Distribution], share: float = 1.0) -> int:
    """Measured trials before the model is used: ``n_startup_trials``, or ``ceil(share * n_startup_trials)``
    (at least 2) when every parameter has a prior (the belief already says where to look first).

    Examples:
        >>> from tunelab import Float
        >>> from tunelab.priors import Normal
        >>> from tunelab.samplers._prior import startup_trials
        >>> believed = [Float(0.0, 1.0, prior=Normal(0.3, 0.1)), Float(0.0, 1.0, prior=Normal(0.5, 0.2))]
        >>> startup_trials(10, believed, 0.5), startup_trials(10, [*believed, Float(0.0, 1.0)], 0.5)
        (5, 10)
    """
    if share >= 1.0 or not distributions or any(d.unit_prior() is None for d in distributions):
        return n_startup_trials
    return max(2, math.ceil(share * n_startup_trials))


def prior_agreement(prior: SpacePrior, X: np.ndarray, y: np.ndarray) -> float:
    """How well the prior's density ranks the measured trials ``X`` (n, d) by loss ``y`` (n,): Spearman's rank
    correlation of ``prior(x)`` and ``-y``, clipped at 0 (a prior that ranks them the wrong way round, or no
    better than chance, gets 0); 0 with fewer than 3 trials.

    Examples:
        >>> import numpy as np
        >>> from tunelab import Float
        >>> from tunelab.priors import Normal
        >>> from tunelab.samplers._prior import SpacePrior, prior_agreement
        >>> prior = SpacePrior([Float(0.0, 1.0, prior=Normal(0.3, 0.1))])
        >>> X = np.array([[0.1], [0.3], [0.5], [0.9]])
        >>> round(prior_agreement(prior, X, (X[:, 0] - 0.3) ** 2), 6)    # the belief ranks them right
        1.0
        >>> prior_agreement(prior, X, (X[:, 0] - 0.9) ** 2)    # the wrong way round
        0.0
    """
    from tunelab.samplers.transfer import rank_agreement  # (transfer imports the samplers' base)

    if len(y) < 3:
        return 0.0
    return max(0.0, rank_agreement(-prior.log_density(X), np.asarray(y, dtype=float)))


def prior_weight_at(beta: float, n_measured: int, fade_after: int | None = None) -> float:
    """The exponent of ``prior(x)`` after ``n_measured`` trials: piBO's ``beta / n``; with ``fade_after``,
    ``beta * fade_after / n**2`` beyond ``fade_after`` trials (continuous at the switch).

    Examples:
        >>> from tunelab.samplers._prior import prior_weight_at
        >>> prior_weight_at(10.0, 5), prior_weight_at(10.0, 20), prior_weight_at(10.0, 50)
        (2.0, 0.5, 0.2)
        >>> [prior_weight_at(10.0, n, fade_after=10) for n in (5, 10, 20, 50)]
        [2.0, 1.0, 0.25, 0.04]
    """
    n = max(int(n_measured), 1)
    if fade_after is None or n <= fade_after:
        return beta / n
    return beta * fade_after / (n * n)


def check_prior_weight(owner: str, value: object) -> float:
    """``prior_weight`` checked for sampler ``owner``: a finite number >= 0 (0: priors shape the start-up only)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value))
            or float(value) < 0):
        raise ConfigError(
            f"{owner}(prior_weight=...) must be a number >= 0 (piBO's beta: the prior weighs prior(x) ** "
            f"(prior_weight / n) after n trials; 0 uses priors for the start-up only), got {value!r}; "
            f"the default is {DEFAULT_PRIOR_WEIGHT}"
        )
    return float(value)


class SpacePrior:
    """The priors of a row's coordinates (None where a parameter has none).

    Args:
        distributions: the row's distributions, in order.
    """

    def __init__(self, distributions: Sequence[Distribution]) -> None:
        self.units: tuple[UnitGaussian | UnitCategorical | None, ...] = tuple(
            _with_uniform(d.unit_prior()) for d in distributions
        )

    @property
    def active(self) -> bool:
        """Whether any coordinate has a prior."""
        return any(u is not None for u in self.units)

    def from_uniform(self, u: np.ndarray, cat_sizes: np.ndarray) -> np.ndarray:
        """A point ``u`` of the unit cube, mapped to the prior coordinate by coordinate (inverse CDFs);
        categorical coordinates become choice indices (uniform ones: ``floor(u * k)``)."""
        row = np.array(u, dtype=float, copy=True)
        for i, unit in enumerate(self.units):
            k = int(cat_sizes[i])
            if unit is not None:
                row[i] = unit.ppf(float(u[i]))
            elif k > 0:
                row[i] = min(math.floor(float(u[i]) * k), k - 1)
        return row

    def log_density(self, X: np.ndarray) -> np.ndarray:
        """``log prior(x)`` of each row of ``X`` (n, d); coordinates without a prior, or NaN, add 0."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        out = np.zeros(len(X))
        for i, unit in enumerate(self.units):
            if unit is None:
                continue
            col = X[:, i]
            has = ~np.isnan(col)
            out[has] += unit.log_pdf(col[has])
        return out

    def grad_log_density(self, X: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """d log_density / dx for the numeric ``columns`` of each row of ``X``: (n, len(columns))."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        out = np.zeros((len(X), len(columns)))
        for c, i in enumerate(columns):
            unit = self.units[int(i)]
            if isinstance(unit, UnitGaussian):
                out[:, c] = unit.grad_log_pdf(X[:, int(i)])
        return out


def _with_uniform(unit: UnitGaussian | UnitCategorical | None) -> UnitGaussian | UnitCategorical | None:
    """A categorical prior mixed with the uniform choice (:data:`CATEGORICAL_UNIFORM_SHARE`); others as they are."""
    if not isinstance(unit, UnitCategorical):
        return unit
    k = len(unit.probabilities)
    share = CATEGORICAL_UNIFORM_SHARE
    return UnitCategorical(tuple((1.0 - share) * p + share / k for p in unit.probabilities))


class PriorTerm:
    """``w(n) * log prior(x)``: what piBO adds to a log acquisition after ``n`` measured trials (``w``:
    :func:`prior_weight_at`).

    Callable on rows (n, d); :meth:`gradient` is its gradient on the numeric coordinates.
    """

    def __init__(self, prior: SpacePrior, weight: float, cat_sizes: np.ndarray) -> None:
        self.prior = prior
        self.weight = float(weight)
        self.numeric = np.flatnonzero(np.asarray(cat_sizes) == 0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.weight * self.prior.log_density(X)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """(n, number of numeric coordinates)."""
        return self.weight * self.prior.grad_log_density(X, self.numeric)


def prior_term(distributions: Sequence[Distribution], cat_sizes: np.ndarray, beta: float,
               n_measured: int, fade_after: int | None = None, agreement: float = 0.0,
               agreement_share: float = 0.0) -> PriorTerm | None:
    """piBO's term for a space after ``n_measured`` trials (weight :func:`prior_weight_at`, plus
    ``beta * agreement_share * agreement``: :func:`prior_agreement`); None when no parameter has a prior or
    ``beta`` is 0."""
    prior = SpacePrior(distributions)
    if beta <= 0 or not prior.active:
        return None
    weight = prior_weight_at(beta, n_measured, fade_after) + beta * agreement_share * max(agreement, 0.0)
    return PriorTerm(prior, weight, cat_sizes)
