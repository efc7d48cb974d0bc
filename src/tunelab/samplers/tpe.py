"""Tree-structured Parzen Estimator (TPE): sample where good trials are dense and bad ones sparse.

The observations are split by loss into a *good* set (the best ``gamma`` fraction, at most
``max_good``) and a *bad* set (the rest, plus the trials other workers are running now:
a constant liar that keeps parallel workers apart, plus failed and pruned trials imputed
as bad). Each set becomes a Parzen estimator, a weighted mixture with one kernel per
trial and one broad prior kernel:

- numeric coordinates (unit scale; log for log parameters): Gaussians truncated to [0, 1],
  of bandwidth ``0.2 * n ** (-1 / (d + 4))`` (Scott's rule on the unit box) clipped below by
  half a cell for integers and steps; the prior kernel is centred at 0.5 with width 1;
- categorical coordinates: the trial's choice keeps ``1 - eps`` of the mass and the other
  choices share ``eps`` (Aitchison-Aitken), the prior kernel is uniform;
- a coordinate the trial does not have (an inactive conditional parameter) takes the prior
  kernel there.

``n_candidates`` points are drawn from the good estimator ``l`` and the one maximising
``log l(x) - log g(x)`` is proposed (the expected improvement under TPE's model).

In the default multivariate mode one joint estimator covers every parameter, so
interactions (learning rate x batch size) are modelled. With ``multivariate=False`` each
parameter is sampled on its own, as in the original TPE, which also covers parameters that
are suggested define-by-run and appear only in some trials.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

from tunelab.distributions import Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.samplers.base import SamplingContext
from tunelab.samplers.model_based import (
    EncodedSpace,
    ModelBasedSampler,
    ObservationCache,
    Observations,
    collect_observations,
)

PRIOR_WEIGHT = 1.0
"""Weight of the broad prior kernel in each estimator (a trial's kernel weighs 1)."""
CATEGORICAL_EPS = 0.2
"""Mass a categorical kernel spreads over the choices its trial did not take."""
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class ParzenEstimator:
    """A mixture of truncated Gaussians (numeric) and Aitchison-Aitken kernels (categorical).

    Args:
        X: (m, d) observations in unit / index coordinates (NaN: take the prior there).
        cat_sizes: (d,) 0 for numeric coordinates, else the number of choices.
        min_sigma: (d,) lower bound of the numeric bandwidths.
    """

    def __init__(self, X: np.ndarray, cat_sizes: np.ndarray, min_sigma: np.ndarray) -> None:
        m, d = X.shape
        self.cat_sizes = cat_sizes
        self._num = np.flatnonzero(cat_sizes == 0)
        self._cat = np.flatnonzero(cat_sizes > 0)
        self.log_weights = np.log(np.concatenate([np.ones(m), [PRIOR_WEIGHT]]) / (m + PRIOR_WEIGHT))
        # Numeric: centres and bandwidths, the prior kernel last.
        xn = X[:, self._num]
        bandwidth = 0.2 * max(m, 1) ** (-1.0 / (d + 4))
        sig = np.maximum(np.full(len(self._num), bandwidth), min_sigma[self._num])
        self.mu = np.vstack([np.where(np.isnan(xn), 0.5, xn), np.full((1, len(self._num)), 0.5)])
        self.sigma = np.vstack([np.where(np.isnan(xn), 1.0, sig), np.ones((1, len(self._num)))])
        self._log_z = np.log(np.maximum(ndtr((1 - self.mu) / self.sigma) - ndtr(-self.mu / self.sigma), 1e-300))
        # Categorical: one probability table per coordinate, rows = kernels.
        self.tables: list[np.ndarray] = []
        for j in self._cat:
            k = int(cat_sizes[j])
            table = np.full((m + 1, k), 1.0 / k)
            col = X[:, j]
            seen = ~np.isnan(col)
            rows = np.flatnonzero(seen)
            table[rows] = CATEGORICAL_EPS / (k - 1) if k > 1 else 1.0
            table[rows, col[seen].astype(np.int64)] = 1.0 - CATEGORICAL_EPS if k > 1 else 1.0
            self.tables.append(table)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` rows drawn from the mixture."""
        comp = rng.choice(len(self.log_weights), size=n, p=np.exp(self.log_weights))
        out = np.empty((n, len(self.cat_sizes)))
        if len(self._num):
            mu, sigma = self.mu[comp], self.sigma[comp]
            lo, hi = ndtr(-mu / sigma), ndtr((1 - mu) / sigma)
            u = lo + rng.random(mu.shape) * (hi - lo)
            out[:, self._num] = np.clip(mu + sigma * ndtri(np.clip(u, 1e-300, 1 - 1e-16)), 0.0, 1.0)
        for j, table in zip(self._cat, self.tables, strict=True):
            p = table[comp]
            cum = np.cumsum(p, axis=1)
            r = rng.random((n, 1)) * cum[:, -1:]
            out[:, j] = np.minimum((cum < r).sum(axis=1), table.shape[1] - 1)
        return out

    def log_pdf(self, X: np.ndarray) -> np.ndarray:
        """Log density of each row of ``X`` (n, d) under the mixture."""
        n = X.shape[0]
        log_k = np.tile(self.log_weights, (n, 1))  # (n, components)
        if len(self._num):
            z = (X[:, None, self._num] - self.mu[None]) / self.sigma[None]
            log_k += (-0.5 * z * z - _LOG_SQRT_2PI - np.log(self.sigma)[None] - self._log_z[None]).sum(axis=2)
        for j, table in zip(self._cat, self.tables, strict=True):
            log_k += np.log(table[:, X[:, j].astype(np.int64)]).T
        return np.asarray(logsumexp(log_k, axis=1))


class TPESampler(ModelBasedSampler):
    """Tree-structured Parzen Estimator: fast, robust, good with many trials and mixed spaces.

    Args:
        n_startup_trials: measured trials before the model is used (quasi-random until then).
        n_candidates: points drawn from the good estimator per proposal; more exploits more.
        gamma: fraction of the observations in the good set.
        max_good: at most this many in the good set.
        multivariate: one joint model over all parameters (True) or one per parameter.
        failed: 'worst' (failed and pruned trials count as bad) or 'ignore'.
    """

    def __init__(
        self,
        n_startup_trials: int = 10,
        n_candidates: int = 24,
        gamma: float = 0.1,
        max_good: int = 25,
        multivariate: bool = True,
        failed: str = "worst",
    ) -> None:
        super().__init__(n_startup_trials=n_startup_trials, failed=failed)
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ConfigError(f"TPESampler(n_candidates=...) must be an integer >= 1, got {n_candidates!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma < 1:
            raise ConfigError(
                f"TPESampler(gamma=...) must be a fraction in (0, 1), e.g. 0.1 (the best 10% of trials), "
                f"got {gamma!r}"
            )
        if isinstance(max_good, bool) or not isinstance(max_good, int) or max_good < 1:
            raise ConfigError(f"TPESampler(max_good=...) must be an integer >= 1, got {max_good!r}")
        if not isinstance(multivariate, bool):
            raise ConfigError(f"TPESampler(multivariate=...) must be True or False, got {multivariate!r}")
        self.n_candidates = n_candidates
        self.gamma = float(gamma)
        self.max_good = max_good
        self.multivariate = multivariate
        self._param_caches: dict[str, ObservationCache] = {}

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        if not self.multivariate:
            return {}
        return super().plan(history, trial)

    def propose(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator) -> np.ndarray:
        obs = observations
        n_good = min(max(1, math.ceil(self.gamma * len(obs.y))), self.max_good, len(obs.y))
        order = np.lexsort((obs.numbers, obs.y))  # best first, ties by trial number
        good, bad = order[:n_good], order[n_good:]
        min_sigma = _min_sigma(space)
        l_est = ParzenEstimator(obs.X[good], space.cat_sizes, min_sigma)
        g_est = ParzenEstimator(np.vstack([obs.X[bad], obs.pending]), space.cat_sizes, min_sigma)
        candidates = space.snap(l_est.sample(rng, self.n_candidates))
        score = l_est.log_pdf(candidates) - g_est.log_pdf(candidates)
        return np.asarray(candidates[int(np.argmax(score))])

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        """One parameter on its own (univariate mode, or one the joint plan did not cover)."""
        if self.multivariate:
            return super().sample(history, trial, name, distribution)
        space = EncodedSpace({name: distribution})
        cache = self._param_caches.setdefault(name, ObservationCache())
        obs = collect_observations(history, space, exclude=trial.number, failed=self.failed, cache=cache)
        present = ~np.isnan(obs.X[:, 0])
        obs = Observations(obs.X[present], obs.y[present], obs.imputed[present], obs.numbers[present],
                           obs.pending[~np.isnan(obs.pending[:, 0])])
        if obs.n_measured < self.n_startup_trials:
            return distribution.sample(trial.rng(name))
        row = self.propose(space, obs, trial.rng(type(self).__name__, name))
        return space.decode(row)[name]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "n_candidates": self.n_candidates, "gamma": self.gamma,
            "max_good": self.max_good, "multivariate": self.multivariate,
        }


def _min_sigma(space: EncodedSpace) -> np.ndarray:
    """Per coordinate: half a cell for integers and steps, else 1e-3 of the unit range."""
    out = np.full(len(space), 1e-3)
    for i, dist in enumerate(space.distributions):
        cells = 0
        if isinstance(dist, Int):
            cells = (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, Float) and dist.step is not None:
            cells = round((dist.high - dist.low) / dist.step) + 1
        if cells > 0:
            out[i] = max(out[i], 0.5 / cells)
    return out
