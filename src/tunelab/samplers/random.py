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
    """

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        return distribution.sample(trial.rng(name))
