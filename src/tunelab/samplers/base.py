"""The sampler protocol: given a read-only history, decide a trial's parameters.

A sampler may decide jointly, once per trial (:meth:`Sampler.plan`, e.g. a grid
cell or a multivariate model), and per parameter (:meth:`Sampler.sample`, for
every parameter the plan did not cover, e.g. ones suggested define-by-run).
It keeps no state of its own that another worker would need: anything it must
remember it records in the trial (:meth:`SamplingContext.record`) or derives
from the history.
"""

from __future__ import annotations

import inspect
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.random  # loaded now, not lazily mid-trial where an interrupt could be lost

from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32(text.encode("utf-8"))


class SamplingContext:
    """What a sampler knows of the trial it samples for, and its one way to write.

    Attributes:
        number: the trial's number.
        seed: the study's seed.
        recorded: what samplers recorded for this trial so far.
        fixed: the values enqueued for the trial (empty for a trial the sampler decides alone);
            a sampler with ``plans_enqueued`` plans around them.
    """

    def __init__(
        self,
        number: int,
        seed: int,
        recorded: Mapping[str, Any] | None = None,
        fixed: Mapping[str, ParamValue] | None = None,
    ) -> None:
        self.number = number
        self.seed = seed
        self.recorded: dict[str, Any] = dict(recorded or {})
        self.fixed: dict[str, ParamValue] = dict(fixed or {})
        self._new: dict[str, Any] = {}

    def rng(self, *keys: str | int) -> np.random.Generator:
        """A generator seeded by (study seed, trial number, keys): reproducible anywhere.

        Passing the parameter name as a key makes a parameter's draw independent
        of which other parameters were suggested before it.
        """
        entropy = [self.seed, self.number] + [
            k if isinstance(k, int) else stable_hash(k) for k in keys
        ]
        return np.random.default_rng(entropy)

    def record(self, key: str, value: Any) -> None:
        """Store JSON data in the trial's system attributes (e.g. a stage and its ranges)."""
        self.recorded[key] = value
        self._new[key] = value

    @property
    def has_new_records(self) -> bool:
        """Whether :meth:`record` was called since the last :meth:`take_new_records`."""
        return bool(self._new)

    def take_new_records(self) -> dict[str, Any]:
        """Records made since the last call (used by the trial to persist them)."""
        new, self._new = self._new, {}
        return new


class Sampler(ABC):
    """Base class of samplers."""

    replayable: bool = False
    """Whether the sampler can honour a deterministic study (``create_study(deterministic=True)``):
    its values for trial ``n`` depend only on the seed, ``n`` and the results of the trials before
    ``n - width + 1`` (``History.replay_width``)."""
    not_replayable_because: str | None = None
    """Why not, in a few words (shown in the error)."""
    multi_objective: bool = True
    """Whether the sampler can serve a study with several objectives (model-based samplers that fit
    one objective cannot yet)."""
    extends_ranges: bool = False
    """Whether a value this sampler plans past the range the objective suggests is meant (a grid that
    shifts its edges): the trial then widens the range. Otherwise such a value (planned over the
    ranges of earlier trials, since narrowed) is not used: :meth:`sample` decides the parameter
    within the range asked for."""
    plans_enqueued: bool = False
    """Whether :meth:`plan` also runs for an enqueued trial (its values in ``trial.fixed``, which win
    over the plan): a grid claims the cell the enqueued values belong to, so that no other trial runs
    it again. Otherwise an enqueued trial's other parameters are only sampled one by one."""

    if not TYPE_CHECKING:  # type checkers check the arguments against each sampler's __init__, as before

        def __new__(cls, *args: Any, **kwargs: Any) -> Sampler:
            init = cls.__init__
            if "seed" in kwargs and "seed" not in inspect.signature(init).parameters:  # as Optuna's samplers take it
                raise ConfigError(
                    f"{cls.__name__}() takes no seed: the study seeds every draw (so that it replays whatever "
                    f"sampler runs it); pass create_study(seed=...), here create_study(seed={kwargs['seed']!r}, "
                    f"sampler={cls.__name__}(...))"
                )
            if init is object.__init__ and (args or kwargs):  # object.__init__ no longer says so, __new__ being ours
                raise TypeError(f"{cls.__name__}() takes no arguments")
            return super().__new__(cls)

    def check_objectives(self, n_objectives: int) -> None:
        """ConfigError when the sampler cannot serve a study with ``n_objectives`` objectives (checked when
        the study is created or loaded, before any trial); nothing by default."""
        return None

    def exhausted(self, history: History) -> bool:
        """Whether nothing is left to propose now; :meth:`Study.ask` then raises SearchExhausted.

        Checked before a trial is created. Most samplers never run out (False).
        """
        return False

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        """Values decided jointly when the trial starts; empty by default."""
        return {}

    @abstractmethod
    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        """A value for one parameter that :meth:`plan` did not decide."""

    def describe(self) -> dict[str, Any]:
        """A JSON description stored with the study (class name and settings)."""
        return {"name": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"
