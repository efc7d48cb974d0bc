"""The default sampler: a Gaussian process while the study is small, TPE once it is large.

The benchmark suite (``benchmarks/suite.py``) ranks the Gaussian process first at 25, 50 and
100 trials; its cost grows with the cube of the number of trials (about 45 ms per trial at
200), while TPE costs a few milliseconds at 1,000. So the default uses the GP for the first
``switch_at`` measured trials and TPE after.

With several objectives the same holds: the GP (log expected hypervolume improvement, with
constraints) for the first ``switch_at`` measured trials, then the cheaper sampler: multi-objective
TPE with two objectives, NSGA-II with three or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.samplers._prior import DEFAULT_PRIOR_WEIGHT, check_prior_weight
from tunelab.samplers.base import SamplingContext
from tunelab.samplers.gp import GPSampler
from tunelab.samplers.model_based import EncodedSpace, ModelBasedSampler, Observations
from tunelab.samplers.nsga import NSGAIISampler
from tunelab.samplers.tpe import TPESampler


class AutoSampler(ModelBasedSampler):
    """GP-based Bayesian optimisation up to ``switch_at`` measured trials, then TPE.

    On a study with several objectives the GP maximises the log expected hypervolume improvement
    (:class:`~tunelab.samplers.GPSampler`) up to ``switch_at`` measured trials too; then, with two
    objectives, multi-objective TPE (``benchmarks/multiobjective.py``: it leads NSGA-II at every budget
    up to 200 trials on ZDT1/2/6 and SRN), with three or more :class:`~tunelab.samplers.NSGAIISampler`
    (its defaults; a population of ``switch_at`` when that is below 50), which leads TPE there past a
    hundred trials.

    Args:
        n_startup_trials: measured trials before a model is used (quasi-random until then).
        switch_at: measured trials from which TPE takes over from the Gaussian process.
        failed: 'worst' (failed and pruned trials count as the worst value) or 'ignore'.
        prior_weight: how long the parameters' priors (:mod:`tunelab.priors`) steer proposals
            (piBO's beta, passed to both models); 0 uses priors for (70% of) the start-up design only.

    Examples:
        The default of :func:`tunelab.create_study`, stored with the study:

        >>> import tunelab
        >>> study = tunelab.create_study(seed=0)
        >>> study.system_attrs["sampler"]
        {'name': 'AutoSampler', 'n_startup_trials': 10, 'failed': 'worst', 'switch_at': 200, 'prior_weight': 10.0}
        >>> sampler = tunelab.AutoSampler(n_startup_trials=5, switch_at=10)   # TPE from 10 trials on
        >>> study = tunelab.create_study(sampler=sampler, seed=0)
        >>> study.optimize(lambda trial: (trial.suggest_float("x", -5.0, 5.0) - 1.0) ** 2, n_trials=14)
        >>> study.best_value < 0.1
        True
    """

    def __init__(self, n_startup_trials: int = 10, switch_at: int = 200, failed: str = "worst",
                 prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> None:
        super().__init__(n_startup_trials=n_startup_trials, failed=failed)
        self.prior_weight = check_prior_weight("AutoSampler", prior_weight)
        if isinstance(switch_at, bool) or not isinstance(switch_at, int) or switch_at < 0:
            raise ConfigError(f"AutoSampler(switch_at=...) must be an integer >= 0, got {switch_at!r}")
        self.switch_at = switch_at
        self._gp = GPSampler(n_startup_trials=n_startup_trials, failed=failed, prior_weight=self.prior_weight)
        self._tpe = TPESampler(n_startup_trials=n_startup_trials, failed=failed, prior_weight=self.prior_weight)
        # NSGA-II's first generation (its population_size trials by number) is random: below 50, a
        # population of switch_at trials, so that the trials from switch_at on are its children.
        self._nsga = NSGAIISampler(population_size=max(2, min(50, switch_at)))

    multi_objective = True  # the GP's log EHVI, then multi-objective TPE (two objectives) or NSGA-II (more)
    startup_with_priors = GPSampler.startup_with_priors  # the GP's model comes first

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        if self._nsga_phase(history):
            return self._nsga.plan(history, trial)
        return super().plan(history, trial)

    def sample(self, history: History, trial: SamplingContext, name: str, distribution: Distribution) -> ParamValue:
        if self._nsga_phase(history):
            return self._nsga.sample(history, trial, name, distribution)
        return super().sample(history, trial, name, distribution)

    def _nsga_phase(self, history: History) -> bool:
        """Three or more objectives and at least ``switch_at`` measured trials: NSGA-II's turn."""
        if not uses_nsga(len(history.directions)):
            return False
        return len(history.completed_values()) >= self.switch_at

    def _forget(self) -> None:
        super()._forget()
        self._gp._forget()
        self._tpe._forget()

    def propose(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator) -> np.ndarray:
        model = self._gp if observations.n_measured < self.switch_at else self._tpe
        return model.propose(space, observations, rng)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "switch_at": self.switch_at, "prior_weight": self.prior_weight}


def uses_nsga(n_objectives: int) -> bool:
    """Whether :class:`AutoSampler` runs NSGA-II (after ``switch_at`` measured trials) for a study with
    ``n_objectives`` objectives (three or more)."""
    return n_objectives > 2
