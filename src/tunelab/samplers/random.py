"""Random search: every parameter drawn independently from its own distribution."""

from __future__ import annotations

from tunelab.distributions import Distribution, ParamValue
from tunelab.history import History
from tunelab.samplers.base import Sampler, SamplingContext


class RandomSampler(Sampler):
    """Log-uniform for log parameters, uniform otherwise, uniform over categories.

    Reproducible: with the study's seed, trial number n gets the same value for a
    parameter whatever the number of workers, their timing, or the order in which
    the objective suggests its parameters. The history is never read, so it costs
    nothing per trial.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     return (trial.suggest_float("lr", 1e-5, 1e-1, log=True) - 1e-3) ** 2
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
        >>> study.optimize(objective, n_trials=20)
        >>> again = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
        >>> again.optimize(objective, n_trials=20)
        >>> [t.params for t in again.trials] == [t.params for t in study.trials]   # same seed, same draws
        True
    """

    replayable = True
    """Can honour a deterministic study: a value depends only on the seed, the trial and the name."""

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        return distribution.sample(trial.rng(name))
