"""Distributions of hyperparameters: what values a parameter may take and how to draw one.

A distribution validates itself in its constructor, samples from a
:class:`numpy.random.Generator`, maps values to and from the unit interval (the
common coordinate system of every sampler), lists grid points and round-trips
through JSON. It does not know its parameter's name: callers that do
(:meth:`tunelab.Trial.suggest_float`, a declared space) add the name to errors.

Examples:
    >>> import numpy as np
    >>> from tunelab import Bool, Categorical, Float, Int
    >>> space = {
    ...     "lr": Float(1e-5, 1e-1, log=True),        # log-uniform: positive scale parameters
    ...     "dropout": Float(0.0, 0.5, step=0.1),     # uniform on a lattice
    ...     "width": Int(32, 1024, log=True),         # log-uniform integers
    ...     "optimizer": Categorical(["sgd", "adam"]),
    ...     "use_bn": Bool(),                         # Bernoulli(0.5)
    ... }
    >>> rng = np.random.default_rng(0)
    >>> draw = {name: dist.sample(rng) for name, dist in space.items()}
    >>> all(space[name].contains(value) for name, value in draw.items())
    True
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tunelab.errors import InvalidDistributionError
from tunelab.priors import (
    Prior,
    UnitCategorical,
    UnitGaussian,
    check_prior,
    check_probabilities,
    prior_from_json,
)

ParamValue = None | bool | int | float | str
"""A parameter value: a JSON scalar, so that every storage can keep it as it is."""

_JSON_SCALARS = (type(None), bool, int, float, str)


class Distribution(ABC):
    """The set of values a hyperparameter may take, with a sampling measure on it."""

    kind: ClassVar[str]

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> ParamValue:
        """Draw one value from this distribution's own measure."""

    @abstractmethod
    def contains(self, value: object) -> bool:
        """Whether ``value`` is a member of this distribution."""

    @abstractmethod
    def to_unit(self, value: Any) -> float:
        """Map a member to [0, 1] (log scale for log parameters, bin centre for discrete)."""

    @abstractmethod
    def from_unit(self, u: float) -> ParamValue:
        """Map a point of [0, 1] back to a member; the inverse of :meth:`to_unit`."""

    @abstractmethod
    def grid(self, n_points: int) -> list[ParamValue]:
        """Up to ``n_points`` evenly spaced members (all choices for categoricals)."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible description, inverted by :func:`distribution_from_json`."""

    def compatible_with(self, other: Distribution) -> bool:
        """Whether one parameter may use ``self`` in one trial and ``other`` in another.

        Ranges and steps may change between trials (a user widens a range when
        resuming a study); the kind, the scale and the choices may not.
        """
        return type(self) is type(other)

    def cast(self, value: object) -> ParamValue:
        """Check a user-given value (e.g. from :meth:`Study.enqueue`) and normalise its type."""
        if not self.contains(value):
            raise InvalidDistributionError(f"value {value!r} is not in {self!r}")
        return value  # type: ignore[return-value]

    def unit_prior(self) -> UnitGaussian | UnitCategorical | None:
        """The prior in the coordinates samplers use (unit coordinates; choice indices), or None.

        None when the distribution has no prior (or a uniform one): samplers then search uniformly.
        """
        return None


def _repr(dist: Any) -> str:
    """The dataclass repr, with ``prior=`` only when there is one (so a plain distribution reads as before)."""
    from dataclasses import fields

    parts = [f"{f.name}={getattr(dist, f.name)!r}" for f in fields(dist) if f.repr and f.name != "prior"]
    if getattr(dist, "prior", None) is not None:
        parts.append(f"prior={dist.prior!r}")
    return f"{type(dist).__name__}({', '.join(parts)})"


def _with_prior(data: dict[str, Any], prior: Any) -> dict[str, Any]:
    if prior is not None:
        data["prior"] = list(prior) if isinstance(prior, tuple) else prior.to_json()
    return data


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _as_float(x: Any) -> float:
    """``x`` as a Python float; a float32 or float16 as the decimal it prints as (np.float32(0.1) is
    0.1, not 0.10000000149011612, so that a step of 0.2 divides 0.1 .. 0.7 as written)."""
    if isinstance(x, np.floating) and np.finfo(x.dtype).bits < 64:
        return float(str(x))
    return float(x)


def _lattice_digits(step: float) -> int:
    """Decimal digits that keep ``low + k * step`` free of float noise like 0.30000000000000004."""
    return max(0, -math.floor(math.log10(step))) + 8


def _checked_log(dist: Any) -> None:
    """``log`` as a bool: ``log="false"`` or ``log=1`` would sample log-uniformly, or not, unsaid."""
    if not isinstance(dist.log, (bool, np.bool_)):
        raise InvalidDistributionError(
            f"log must be True or False, got {dist.log!r}; log=True samples uniformly in log space"
        )
    object.__setattr__(dist, "log", bool(dist.log))


def _check_bounds(low: object, high: object) -> None:
    if not _is_real(low) or not _is_real(high):
        raise InvalidDistributionError(
            f"low and high must be real numbers, got low={low!r}, high={high!r}"
        )
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):  # type: ignore[arg-type]
        raise InvalidDistributionError(
            f"low and high must be finite, got low={low!r}, high={high!r}"
        )
    if low > high:  # type: ignore[operator]
        raise InvalidDistributionError(
            f"low={low!r} is greater than high={high!r}; swap them"
        )


@dataclass(frozen=True)
class Float(Distribution):
    """A real parameter in ``[low, high]``: uniform, log-uniform (``log=True``), or on a lattice.

    Args:
        low: smallest value (inclusive); must be > 0 when ``log=True``.
        high: largest value (inclusive).
        log: sample uniformly in log space; use for positive scale parameters
            such as learning rate and weight decay.
        step: if given, values lie on ``low + k * step``; ``step`` must divide
            ``high - low``. Cannot be combined with ``log``.
        prior: where good values are believed to lie (keyword only): a
            :class:`~tunelab.priors.LogNormal` for a log parameter (spread in decades), a
            :class:`~tunelab.priors.Normal` otherwise; its centre must lie in ``[low, high]``.
            Random search and start-up designs draw from it, model-based samplers weight their
            proposals by it (fading as trials accumulate). See :mod:`tunelab.priors`.

    Examples:
        >>> from tunelab import Float
        >>> lr = Float(1e-4, 1e-1, log=True)
        >>> lr.grid(4)                                 # evenly spaced in log space
        [0.0001, 0.001, 0.01, 0.1]
        >>> lr.to_unit(1e-4), lr.to_unit(1e-1)         # samplers work in [0, 1]
        (0.0, 1.0)
        >>> Float(0.0, 0.5, step=0.1).grid(6)
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
        >>> Float(0.0, 1.0, log=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tunelab.errors.InvalidDistributionError: log=True needs low > 0, got low=0.0; use a small positive low ...
    """

    low: float
    high: float
    log: bool = False
    step: float | None = None
    prior: Prior | None = field(default=None, kw_only=True, repr=False)
    kind: ClassVar[str] = "float"

    __repr__ = _repr

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high)
        _checked_log(self)
        object.__setattr__(self, "low", _as_float(self.low))
        object.__setattr__(self, "high", _as_float(self.high))
        if self.log and self.low <= 0:
            raise InvalidDistributionError(
                f"log=True needs low > 0, got low={self.low!r}; use a small positive low "
                "such as 1e-8, or log=False"
            )
        if self.step is not None:
            if self.log:
                raise InvalidDistributionError(
                    "step and log=True cannot be combined; drop step, or use log=False"
                )
            if not _is_real(self.step) or not self.step > 0 or not math.isfinite(self.step):
                raise InvalidDistributionError(f"step must be a positive number, got {self.step!r}")
            object.__setattr__(self, "step", _as_float(self.step))
            ratio = (self.high - self.low) / self.step
            if abs(ratio - round(ratio)) > 1e-8 * max(1.0, ratio):
                raise InvalidDistributionError(
                    f"step={self.step!r} does not divide high - low = {self.high - self.low!r}; "
                    f"choose a step such that (high - low) / step is a whole number, or move high "
                    f"to {round(self.low + math.floor(ratio) * self.step, _lattice_digits(self.step))!r}"
                )
        what = f"Float({self.low!r}, {self.high!r}{', log=True' if self.log else ''})"
        object.__setattr__(self, "prior", check_prior(self.prior, low=self.low, high=self.high, log=self.log,
                                                      what=what))

    @property
    def _n_steps(self) -> int:
        assert self.step is not None
        return int(round((self.high - self.low) / self.step))

    def _on_lattice(self, k: int) -> float:
        assert self.step is not None
        v = self.low + k * self.step
        clean = round(v, _lattice_digits(self.step))
        if math.isclose(clean, v, rel_tol=1e-12, abs_tol=1e-12 * self.step):
            v = clean  # drop noise like 0.30000000000000004, never a real digit of low
        return min(max(v, self.low), self.high)

    def _nearest_on_lattice(self, value: float) -> float:
        assert self.step is not None
        return self._on_lattice(int(round((value - self.low) / self.step)))

    def sample(self, rng: np.random.Generator) -> float:
        u = float(rng.random())
        prior = self.unit_prior()
        return float(self.from_unit(u if prior is None else prior.ppf(u)))

    def unit_prior(self) -> UnitGaussian | None:
        if self.prior is None or self.high == self.low:
            return None
        if self.step is not None:
            width = self.high - self.low + self.step
            return UnitGaussian((self.prior.center - self.low + 0.5 * self.step) / width, self.prior.spread / width)
        if self.log:
            decades = math.log10(self.high / self.low)
            if math.isinf(decades):  # wider than a float's ratio (1e-200 to 1e200): differences of logs
                decades = math.log10(self.high) - math.log10(self.low)
                return UnitGaussian((math.log10(self.prior.center) - math.log10(self.low)) / decades,
                                    self.prior.spread / decades)
            return UnitGaussian(math.log10(self.prior.center / self.low) / decades, self.prior.spread / decades)
        width = self.high - self.low
        if math.isinf(width):  # near the float limit (-1e308, 1e308): in halves, which do not overflow
            half = self.high / 2 - self.low / 2
            return UnitGaussian(self._linear_unit(self.prior.center), self.prior.spread / 2 / half)
        return UnitGaussian((self.prior.center - self.low) / width, self.prior.spread / width)

    def contains(self, value: object) -> bool:
        if not (_is_real(value) and self.low <= float(value) <= self.high):  # type: ignore[arg-type]
            return False
        if self.step is None:
            return True
        v = float(value)  # type: ignore[arg-type]
        return math.isclose(self._nearest_on_lattice(v), v, rel_tol=1e-9, abs_tol=1e-9 * self.step)

    def cast(self, value: object) -> float:
        if not self.contains(value):
            lattice = "" if self.step is None else f" on the lattice low + k * {self.step!r}"
            raise InvalidDistributionError(
                f"value {value!r} is not in [{self.low!r}, {self.high!r}]{lattice}"
            )
        v = float(value)  # type: ignore[arg-type]
        return v if self.step is None else self._nearest_on_lattice(v)

    def to_unit(self, value: Any) -> float:
        v = float(value)
        if self.high == self.low:
            return 0.5
        if self.step is not None:
            k = round((v - self.low) / self.step)
            return (k + 0.5) / (self._n_steps + 1)
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return self._linear_unit(v)

    def _linear_unit(self, v: float) -> float:
        width = self.high - self.low
        if math.isinf(width):  # a range near the float limit (-1e308, 1e308): halves do not overflow
            return (v / 2 - self.low / 2) / (self.high / 2 - self.low / 2)
        return (v - self.low) / width

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.step is not None:
            n = self._n_steps + 1
            return self._on_lattice(min(int(u * n), n - 1))
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = (1.0 - u) * self.low + u * self.high  # no overflow for ranges near the float limit
        return min(max(v, self.low), self.high)

    def grid(self, n_points: int) -> list[ParamValue]:
        _check_n_points(n_points)
        if self.high == self.low:
            return [self.low]
        if n_points == 1:  # the middle, lattice or not (linspace's one point is low)
            return [self.from_unit(0.5)]
        if self.step is not None:
            n = self._n_steps + 1
            ks = sorted({int(round(k)) for k in np.linspace(0, n - 1, min(n, n_points))})
            return [self._on_lattice(k) for k in ks]
        if self.log:
            pts = np.geomspace(self.low, self.high, n_points)
        elif math.isinf(self.high - self.low):  # linspace's step overflows: [nan, inf, 1e308]
            return [self.from_unit(float(u)) for u in np.linspace(0.0, 1.0, n_points)]
        else:
            pts = np.linspace(self.low, self.high, n_points)
        return [float(p) for p in pts]

    def compatible_with(self, other: Distribution) -> bool:
        return isinstance(other, Float) and other.log == self.log

    def to_json(self) -> dict[str, Any]:
        return _with_prior(
            {"type": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}, self.prior
        )


@dataclass(frozen=True)
class Int(Distribution):
    """An integer parameter in ``[low, high]``: uniform, log-uniform (``log=True``) or every ``step``.

    Args:
        low: smallest value (inclusive); must be >= 1 when ``log=True``.
        high: largest value (inclusive).
        log: sample uniformly in log space (e.g. layer width 16..1024).
        step: values are ``low, low + step, ...``; must divide ``high - low``.
        prior: where good values are believed to lie (keyword only):
            :class:`~tunelab.priors.LogNormal` for ``log=True`` (spread in decades),
            :class:`~tunelab.priors.Normal` otherwise; see :mod:`tunelab.priors`.

    Examples:
        >>> from tunelab import Int
        >>> Int(16, 1024, log=True).grid(4)            # widths: a scale, in whole numbers
        [16, 64, 256, 1024]
        >>> Int(0, 10, step=2).grid(10)                # every step
        [0, 2, 4, 6, 8, 10]
        >>> Int(1, 8).contains(3), Int(1, 8).contains(3.5)
        (True, False)
    """

    low: int
    high: int
    log: bool = False
    step: int = 1
    prior: Prior | None = field(default=None, kw_only=True, repr=False)
    kind: ClassVar[str] = "int"

    __repr__ = _repr

    def __post_init__(self) -> None:
        for arg in ("low", "high", "step"):
            value = getattr(self, arg)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                if _is_real(value) and float(value).is_integer():
                    value = int(value)
                else:
                    raise InvalidDistributionError(
                        f"{arg} must be an integer, got {value!r}; use Float for real values"
                    )
            object.__setattr__(self, arg, int(value))
        _check_bounds(self.low, self.high)
        _checked_log(self)
        if self.step < 1:
            raise InvalidDistributionError(f"step must be >= 1, got {self.step!r}")
        if self.log and self.low < 1:
            raise InvalidDistributionError(
                f"log=True needs low >= 1, got low={self.low!r}; use low=1 or log=False"
            )
        if self.log and self.step != 1:
            raise InvalidDistributionError(
                "step and log=True cannot be combined; drop step, or use log=False"
            )
        if (self.high - self.low) % self.step:
            raise InvalidDistributionError(
                f"step={self.step} does not divide high - low = {self.high - self.low}; move high "
                f"to {self.low + (self.high - self.low) // self.step * self.step} or change step"
            )
        what = f"Int({self.low!r}, {self.high!r}{', log=True' if self.log else ''})"
        object.__setattr__(self, "prior", check_prior(self.prior, low=self.low, high=self.high, log=self.log,
                                                      what=what))

    @property
    def _n_values(self) -> int:
        return (self.high - self.low) // self.step + 1

    def sample(self, rng: np.random.Generator) -> int:
        u = float(rng.random())
        prior = self.unit_prior()
        return self.from_unit(u if prior is None else prior.ppf(u))

    def unit_prior(self) -> UnitGaussian | None:
        if self.prior is None:
            return None
        if self.log:
            a, b = self._log_edges()
            span = b - a  # natural-log units: a spread in decades is spread * ln(10)
            return UnitGaussian((math.log(self.prior.center) - a) / span, self.prior.spread * math.log(10.0) / span)
        width = self._n_values * self.step
        return UnitGaussian((self.prior.center - self.low + 0.5 * self.step) / width, self.prior.spread / width)

    def contains(self, value: object) -> bool:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            return False
        v = int(value)
        return self.low <= v <= self.high and (v - self.low) % self.step == 0

    def cast(self, value: object) -> int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)  # exact: float() would round integers past 2**53
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            value = int(float(value))
        if not self.contains(value):
            raise InvalidDistributionError(
                f"value {value!r} is not an integer in [{self.low}, {self.high}] with step {self.step}"
            )
        assert isinstance(value, numbers.Integral)
        return int(value)

    def _log_edges(self) -> tuple[float, float]:
        return math.log(self.low - 0.5 + 1e-12), math.log(self.high + 0.5)

    def to_unit(self, value: Any) -> float:
        v = int(value)
        if self.log:
            a, b = self._log_edges()
            return min(max((math.log(v) - a) / (b - a), 0.0), 1.0)
        return ((v - self.low) // self.step + 0.5) / self._n_values

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            a, b = self._log_edges()
            v = int(round(math.exp(a + u * (b - a))))
            return min(max(v, self.low), self.high)
        n = self._n_values
        return self.low + min(int(u * n), n - 1) * self.step

    def grid(self, n_points: int) -> list[ParamValue]:
        _check_n_points(n_points)
        n = self._n_values
        if n <= n_points:
            return [self.low + k * self.step for k in range(n)]
        if n_points == 1:  # the middle, as Float's (linspace's and geomspace's one point is low)
            return [self.from_unit(0.5)]
        if self.log:
            pts = np.geomspace(self.low, self.high, n_points)
            return list(sorted({int(round(p)) for p in pts}))
        ks = np.linspace(0, n - 1, n_points)
        return list(sorted({self.low + int(round(k)) * self.step for k in ks}))

    def compatible_with(self, other: Distribution) -> bool:
        return isinstance(other, Int) and other.log == self.log

    def to_json(self) -> dict[str, Any]:
        return _with_prior(
            {"type": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}, self.prior
        )


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.int64(2)`` -> 2, ``np.str_('sgd')`` -> 'sgd',
    ``np.float32(1e-3)`` -> a float); anything else as it is. A value read from an array is then
    equal to the plain one, of the same type, and JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _choice_key(value: object) -> tuple[str, object]:
    # 1, 1.0 and True compare equal in Python but are different choices; a numpy scalar (read from an
    # array) is the choice of the Python value it holds.
    value = plain_value(value)
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Categorical(Distribution):
    """One of a list of choices (multinoulli), e.g. the optimizer: ``Categorical(["sgd", "adam"])``.

    Choices must be JSON scalars (None, bool, int, float, str), distinct and at least one.
    ``prior`` (keyword only) is a belief: one probability per choice, each > 0, summing to 1
    (``Categorical(["adam", "sgd"], prior=[0.8, 0.2])``); random search draws from it and the
    model-based samplers weight their proposals by it (see :mod:`tunelab.priors`).

    Examples:
        >>> import numpy as np
        >>> from tunelab import Categorical
        >>> optimizer = Categorical(["sgd", "adam", "adamw"])
        >>> optimizer.grid(2)                          # every choice, whatever the number of points
        ['sgd', 'adam', 'adamw']
        >>> optimizer.sample(np.random.default_rng(0)) in optimizer.choices
        True
        >>> Categorical([1, 1.0, True]).choices        # typed: three different choices
        (1, 1.0, True)
    """

    choices: Sequence[ParamValue] = field(compare=False)
    kind: ClassVar[str] = "categorical"
    _index: dict[tuple[str, object], int] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )
    # Equality by typed keys: 1, 1.0 and True are different choices.
    _keys: tuple[tuple[str, object], ...] = field(init=False, repr=False, default=())
    prior: Sequence[float] | None = field(default=None, kw_only=True, repr=False)

    __repr__ = _repr

    def __post_init__(self) -> None:
        choices = self.choices
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise InvalidDistributionError(
                f"choices must be a list or tuple of values, got {choices!r}"
            )
        if len(choices) == 0:
            raise InvalidDistributionError("choices is empty; give at least one choice")
        index: dict[tuple[str, object], int] = {}
        choices = [plain_value(c) for c in choices]  # list(np.arange(3)) too
        for i, c in enumerate(choices):
            if not isinstance(c, _JSON_SCALARS):
                raise InvalidDistributionError(
                    f"choice {c!r} is a {type(c).__name__}; choices must be None, bool, int, "
                    "float or str (map richer objects from a string key inside the objective)"
                )
            if isinstance(c, float) and not math.isfinite(c):
                raise InvalidDistributionError(f"choice {c!r} is not finite")
            key = _choice_key(c)
            if key in index:
                raise InvalidDistributionError(
                    f"choice {c!r} appears twice in {list(choices)!r}; remove the duplicate"
                )
            index[key] = i
        object.__setattr__(self, "choices", tuple(choices))
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_keys", tuple(index))
        object.__setattr__(self, "prior", check_probabilities(self.prior, len(choices)))

    def index(self, value: object) -> int:
        """Position of ``value`` among the choices."""
        try:
            return self._index[_choice_key(value)]
        except (KeyError, TypeError):
            raise InvalidDistributionError(
                f"value {value!r} is not one of the choices {list(self.choices)!r}"
            ) from None

    def sample(self, rng: np.random.Generator) -> ParamValue:
        prior = self.unit_prior()
        if prior is None:
            return self.choices[int(rng.integers(len(self.choices)))]
        return self.choices[prior.ppf(float(rng.random()))]

    def unit_prior(self) -> UnitCategorical | None:
        return None if self.prior is None else UnitCategorical(tuple(self.prior))

    def contains(self, value: object) -> bool:
        try:
            return _choice_key(value) in self._index
        except TypeError:
            return False

    def cast(self, value: object) -> ParamValue:
        if not self.contains(value):
            raise InvalidDistributionError(f"value {value!r} is not one of the choices {list(self.choices)!r}")
        return self.choices[self.index(value)]  # the choice itself: 32, not np.int64(32)

    def to_unit(self, value: Any) -> float:
        return (self.index(value) + 0.5) / len(self.choices)

    def from_unit(self, u: float) -> ParamValue:
        n = len(self.choices)
        return self.choices[min(max(int(float(u) * n), 0), n - 1)]

    def grid(self, n_points: int) -> list[ParamValue]:
        _check_n_points(n_points)
        return list(self.choices)

    def compatible_with(self, other: Distribution) -> bool:
        return isinstance(other, Categorical) and other._keys == self._keys

    def to_json(self) -> dict[str, Any]:
        return _with_prior({"type": self.kind, "choices": list(self.choices)}, self.prior)


@dataclass(frozen=True)
class Bool(Distribution):
    """An on/off choice, Bernoulli with probability ``p`` of True (default 0.5).

    ``p`` is the parameter's prior: random search draws True with probability ``p``, and with
    ``p != 0.5`` the model-based samplers' start-up design and proposals lean the same way
    (see :mod:`tunelab.priors`).

    Examples:
        >>> import numpy as np
        >>> from tunelab import Bool
        >>> augment = Bool(p=0.3)
        >>> rng = np.random.default_rng(0)
        >>> share = sum(augment.sample(rng) for _ in range(1000)) / 1000
        >>> 0.25 < share < 0.35
        True
        >>> augment.choices
        (False, True)
    """

    p: float = 0.5
    kind: ClassVar[str] = "bool"

    def __post_init__(self) -> None:
        if not _is_real(self.p) or not 0.0 <= self.p <= 1.0:
            raise InvalidDistributionError(f"p must be a probability in [0, 1], got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))

    @property
    def choices(self) -> tuple[bool, bool]:
        """The two values, False first."""
        return (False, True)

    def sample(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.p)

    def unit_prior(self) -> UnitCategorical | None:
        return None if self.p == 0.5 else UnitCategorical((1.0 - self.p, self.p))

    def contains(self, value: object) -> bool:
        return isinstance(value, (bool, np.bool_))

    def cast(self, value: object) -> bool:
        if not self.contains(value):
            raise InvalidDistributionError(f"value {value!r} is not a bool")
        return bool(value)

    def to_unit(self, value: Any) -> float:
        return 0.75 if value else 0.25

    def from_unit(self, u: float) -> bool:
        return float(u) >= 0.5

    def grid(self, n_points: int) -> list[ParamValue]:
        _check_n_points(n_points)
        return [False, True]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "p": self.p}


def _check_n_points(n_points: int) -> None:
    if not isinstance(n_points, int) or n_points < 1:
        raise InvalidDistributionError(f"n_points must be an integer >= 1, got {n_points!r}")


_KINDS: dict[str, type[Distribution]] = {
    cls.kind: cls for cls in (Float, Int, Categorical, Bool)
}


def distribution_from_json(data: dict[str, Any]) -> Distribution:
    """Rebuild a distribution from :meth:`Distribution.to_json` output."""
    data = dict(data)
    cls = _KINDS.get(data.pop("type", None))  # type: ignore[arg-type]
    if cls is None:
        raise InvalidDistributionError(f"unknown distribution description {data!r}")
    if cls in (Float, Int) and data.get("prior") is not None:
        data["prior"] = prior_from_json(data["prior"])
    return cls(**data)
