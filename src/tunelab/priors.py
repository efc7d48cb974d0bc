"""Priors: where the user believes a parameter's good values lie.

A prior is an optional belief attached to a distribution (``prior=``). It changes where search
looks first, never which values a parameter may take:

- random search draws from the prior instead of uniformly;
- the model-based samplers (:class:`~tunelab.GPSampler`, :class:`~tunelab.TPESampler`,
  :class:`~tunelab.AutoSampler`) draw 70% of their quasi-random start-up design from it (the rest
  stays uniform, and a categorical prior counts half mixed with the uniform choice) and weight
  their acquisition by ``prior(x) ** (prior_weight / n)`` after ``n`` measured trials (piBO,
  Hvarfner et al., ICLR 2022; TPE's weight falls faster after 10 trials, as
  ``prior_weight * 10 / n**2``): the belief counts fully at first and fades as evidence
  accumulates, so a wrong prior costs a bounded number of trials. A belief the trials bear out
  (where the prior's density is high the losses are low) keeps part of its weight, so the model
  stays in its region instead of exploring far outside it; TPE also adds it as a kernel of its good
  density; a misleading belief earns none of this. With a prior on every parameter the GP starts
  its model after half the start-up trials.

Two kinds, for the two kinds of numeric scale:

- :class:`Normal` ``(center, spread)`` for a linear parameter (``Float``, ``Int``): a Gaussian
  with that mean and standard deviation, in the parameter's own units;
- :class:`LogNormal` ``(center, spread)`` for a log parameter (``log=True``): a Gaussian on
  ``log10(value)`` centred at ``log10(center)``, ``spread`` in decades (``spread=1.0``: about two
  thirds of the belief within a factor of 10 of the centre).

Both are truncated to the distribution's range. A categorical's prior is a list of
probabilities, one per choice (``Categorical(["adam", "sgd"], prior=[0.8, 0.2])``); a
:class:`~tunelab.Bool`'s prior is its ``p`` (the probability of True).

Examples:
    >>> import numpy as np
    >>> import tunelab
    >>> from tunelab import Categorical, Float
    >>> from tunelab.priors import LogNormal
    >>> lr = Float(1e-5, 1e-1, log=True, prior=LogNormal(center=3e-4, spread=0.5))
    >>> rng = np.random.default_rng(0)
    >>> draws = np.log10([lr.sample(rng) for _ in range(2000)])
    >>> round(float(np.median(draws)), 1), round(float(np.std(draws)), 1)   # log10(3e-4) = -3.5
    (-3.5, 0.5)
    >>> lr.to_json()["prior"]
    {'type': 'lognormal', 'center': 0.0003, 'spread': 0.5}
    >>> Categorical(["adam", "sgd"], prior=[0.8, 0.2]).prior
    (0.8, 0.2)
    >>> Float(0.0, 1.0, prior=tunelab.priors.Normal(center=2.0, spread=0.1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tunelab.errors.InvalidDistributionError: prior: center=2.0 is outside [0.0, 1.0]; ...
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from tunelab.errors import InvalidDistributionError

__all__ = ["LogNormal", "Normal", "Prior", "UnitCategorical", "UnitGaussian", "prior_from_json"]

_STANDARD = NormalDist()
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
MIN_PROBABILITY = 1e-12
"""Probabilities below this count as this in log densities (a Bool with p=0 or 1 stays finite)."""
UNIT_SIGMA_RANGE = (1e-150, 1e6)
"""A prior's spread in unit coordinates is kept inside this: a narrower one (a spread that underflows to 0
against a wide range) is a point at its centre all the same, a wider one is uniform on [0, 1] to 1e-12, and
outside it the inverse CDF divided by zero or lost the whole belief to rounding (``cdf(-mu / sigma)`` and
``cdf((1 - mu) / sigma)`` equal: every draw at the centre)."""


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_spread(owner: str, spread: object, unit: str) -> float:
    if not _is_real(spread) or not math.isfinite(float(spread)) or float(spread) <= 0:  # type: ignore[arg-type]
        raise InvalidDistributionError(
            f"{owner}(spread=...) must be a positive number ({unit}), got {spread!r}; e.g. spread=1.0"
        )
    return float(spread)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Normal:
    """A Gaussian belief on a linear parameter: mean ``center``, standard deviation ``spread``.

    Args:
        center: the value believed best, inside the distribution's range.
        spread: how unsure the belief is (a standard deviation in the parameter's units), > 0.

    Examples:
        >>> from tunelab import Float, Int
        >>> from tunelab.priors import Normal
        >>> Float(0.0, 0.5, prior=Normal(center=0.1, spread=0.05)).prior
        Normal(center=0.1, spread=0.05)
        >>> Int(1, 8, prior=Normal(center=3, spread=1.0)).to_json()["prior"]
        {'type': 'normal', 'center': 3.0, 'spread': 1.0}
        >>> Normal(center=0.1, spread=0.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tunelab.errors.InvalidDistributionError: Normal(spread=...) must be a positive number ...
    """

    center: float
    spread: float
    kind: ClassVar[str] = "normal"
    log: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not _is_real(self.center) or not math.isfinite(float(self.center)):
            raise InvalidDistributionError(
                f"Normal(center=...) must be a finite number (the value believed best), got {self.center!r}"
            )
        object.__setattr__(self, "center", float(self.center))
        object.__setattr__(self, "spread", _check_spread("Normal", self.spread, "in the parameter's units"))

    def to_json(self) -> dict[str, Any]:
        """``{"type": "normal", "center": ..., "spread": ...}``, inverted by :func:`prior_from_json`."""
        return {"type": self.kind, "center": self.center, "spread": self.spread}


@dataclass(frozen=True)
class LogNormal:
    """A Gaussian belief on ``log10`` of a log parameter: centred at ``center``, ``spread`` in decades.

    Args:
        center: the value believed best (> 0), inside the distribution's range.
        spread: how unsure the belief is, in decades (standard deviation of ``log10(value)``), > 0:
            ``spread=1.0`` puts about two thirds of the belief within a factor of 10 of ``center``.

    Examples:
        >>> from tunelab import Float, Int
        >>> from tunelab.priors import LogNormal
        >>> Float(1e-5, 1e-1, log=True, prior=LogNormal(center=3e-4, spread=1.0)).prior
        LogNormal(center=0.0003, spread=1.0)
        >>> Int(16, 1024, log=True, prior=LogNormal(center=128, spread=0.3)).prior.center
        128.0
        >>> Float(1e-5, 1e-1, prior=LogNormal(center=3e-4, spread=1.0))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tunelab.errors.InvalidDistributionError: prior: LogNormal is for log parameters ...
    """

    center: float
    spread: float
    kind: ClassVar[str] = "lognormal"
    log: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not _is_real(self.center) or not math.isfinite(float(self.center)) or not float(self.center) > 0:
            raise InvalidDistributionError(
                f"LogNormal(center=...) must be a positive number (the value believed best), got {self.center!r}"
            )
        object.__setattr__(self, "center", float(self.center))
        object.__setattr__(self, "spread", _check_spread("LogNormal", self.spread, "in decades"))

    def to_json(self) -> dict[str, Any]:
        """``{"type": "lognormal", "center": ..., "spread": ...}``, inverted by :func:`prior_from_json`."""
        return {"type": self.kind, "center": self.center, "spread": self.spread}


Prior = Normal | LogNormal
"""A numeric parameter's prior."""

_KINDS: dict[str, type[Normal] | type[LogNormal]] = {"normal": Normal, "lognormal": LogNormal}


def prior_from_json(data: Any) -> Prior:
    """Rebuild a prior from :meth:`Normal.to_json` / :meth:`LogNormal.to_json` output."""
    if isinstance(data, (Normal, LogNormal)):
        return data
    if not isinstance(data, dict) or data.get("type") not in _KINDS:
        raise InvalidDistributionError(
            f"unknown prior description {data!r}; expected {{'type': 'normal' or 'lognormal', 'center': ..., "
            "'spread': ...}"
        )
    rest = {k: v for k, v in data.items() if k != "type"}
    unknown = set(rest) - {"center", "spread"}
    if unknown or set(rest) != {"center", "spread"}:
        raise InvalidDistributionError(
            f"a {data['type']} prior takes center and spread, got {sorted(rest)!r} in {data!r}"
        )
    return _KINDS[data["type"]](**rest)


def check_prior(prior: object, *, low: float, high: float, log: bool, what: str) -> Prior | None:
    """``prior`` checked for a numeric distribution ``what`` on ``[low, high]`` (its scale ``log``)."""
    if prior is None:
        return None
    if not isinstance(prior, (Normal, LogNormal)):
        example = "LogNormal(center=..., spread=...)" if log else "Normal(center=..., spread=...)"
        raise InvalidDistributionError(
            f"prior must be a tunelab.priors.{example} (or None), got {prior!r}"
        )
    if prior.log != log:
        if log:
            raise InvalidDistributionError(
                f"prior: {what} is log-scaled (log=True), so its prior is LogNormal(center, spread) with spread in "
                f"decades, got {prior!r}; use LogNormal(center={prior.center!r}, spread=...) or log=False"
            )
        raise InvalidDistributionError(
            f"prior: LogNormal is for log parameters (log=True), got it on {what}; use Normal(center="
            f"{prior.center!r}, spread=...) with spread in the parameter's units, or log=True"
        )
    if not low <= prior.center <= high:
        raise InvalidDistributionError(
            f"prior: center={prior.center!r} is outside [{low!r}, {high!r}]; move the centre into the range "
            "(or widen the range)"
        )
    return prior


def check_probabilities(prior: object, n_choices: int) -> tuple[float, ...] | None:
    """A categorical prior checked against ``n_choices``: a tuple of positive probabilities summing to 1."""
    if prior is None:
        return None
    if isinstance(prior, (str, bytes, np.ndarray)) or not isinstance(prior, Sequence):
        if isinstance(prior, np.ndarray) and prior.ndim == 1:
            prior = [float(p) for p in prior]
        else:
            raise InvalidDistributionError(
                f"prior must be a list of probabilities, one per choice (e.g. prior=[0.8, 0.2]), got {prior!r}"
            )
    if len(prior) != n_choices:
        raise InvalidDistributionError(
            f"prior has {len(prior)} probabilities for {n_choices} choices; give one per choice, in the order of "
            "the choices"
        )
    for p in prior:
        if not _is_real(p) or not math.isfinite(float(p)) or not float(p) > 0:
            raise InvalidDistributionError(
                f"prior: {p!r} is not a positive probability; every choice needs a probability > 0 (to rule a "
                "choice out, remove it from the choices)"
            )
    total = math.fsum(float(p) for p in prior)
    if abs(total - 1.0) > 1e-6:
        raise InvalidDistributionError(
            f"prior: the probabilities {list(prior)!r} sum to {total:.6g}, not 1; divide each by {total:.6g}"
        )
    return tuple(float(p) for p in prior)


@dataclass(frozen=True)
class UnitGaussian:
    """A numeric prior in its distribution's unit coordinates: N(``mu``, ``sigma``) truncated to [0, 1].

    What samplers use (they all work in unit coordinates, see
    :meth:`~tunelab.distributions.Distribution.to_unit`): for a log Float on ``[low, high]`` a
    ``LogNormal(center, spread)`` is ``mu = to_unit(center)`` and ``sigma = spread /
    log10(high / low)``.

    Examples:
        >>> from tunelab.priors import UnitGaussian
        >>> g = UnitGaussian(mu=0.5, sigma=0.1)
        >>> round(g.ppf(0.5), 6), round(g.ppf(0.8413447), 3)          # the median; one sigma up
        (0.5, 0.6)
    """

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", min(max(float(self.sigma), UNIT_SIGMA_RANGE[0]), UNIT_SIGMA_RANGE[1]))

    @property
    def _edges(self) -> tuple[float, float]:
        return _STANDARD.cdf(-self.mu / self.sigma), _STANDARD.cdf((1.0 - self.mu) / self.sigma)

    def ppf(self, q: float) -> float:
        """The point of [0, 1] below which a fraction ``q`` of the prior lies (inverse CDF)."""
        lo, hi = self._edges
        p = min(max(lo + min(max(float(q), 0.0), 1.0) * (hi - lo), 1e-300), 1.0 - 1e-16)
        return min(max(self.mu + self.sigma * _STANDARD.inv_cdf(p), 0.0), 1.0)

    def log_pdf(self, u: np.ndarray) -> np.ndarray:
        """Log density at ``u`` (an array of points of [0, 1])."""
        lo, hi = self._edges
        z = (np.asarray(u, dtype=float) - self.mu) / self.sigma
        return np.asarray(-0.5 * z * z - _LOG_SQRT_2PI - math.log(self.sigma) - math.log(max(hi - lo, 1e-300)))

    def grad_log_pdf(self, u: np.ndarray) -> np.ndarray:
        """d log_pdf / du."""
        return np.asarray(-(np.asarray(u, dtype=float) - self.mu) / (self.sigma * self.sigma))


@dataclass(frozen=True)
class UnitCategorical:
    """A choice parameter's prior over its choice indices ``0 .. k-1``.

    Examples:
        >>> from tunelab.priors import UnitCategorical
        >>> c = UnitCategorical((0.8, 0.2))
        >>> c.ppf(0.5), c.ppf(0.9)
        (0, 1)
    """

    probabilities: tuple[float, ...]

    def ppf(self, q: float) -> int:
        """The choice index at quantile ``q`` (choices in order)."""
        cum = np.cumsum(self.probabilities)
        return int(min(np.searchsorted(cum, float(q) * cum[-1], side="right"), len(cum) - 1))

    def log_pdf(self, index: np.ndarray) -> np.ndarray:
        """Log probability of each choice index in ``index``."""
        logs = np.log(np.maximum(np.asarray(self.probabilities, dtype=float), MIN_PROBABILITY))
        k = np.clip(np.round(np.asarray(index, dtype=float)), 0, len(logs) - 1).astype(np.int64)
        return np.asarray(logs[k])
