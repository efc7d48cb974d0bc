"""Tree-structured Parzen Estimator (TPE): sample where good trials are dense and bad ones sparse.

The observations are split by loss into a *good* set (the best ``gamma`` fraction, at most
``max_good``) and a *bad* set (the rest, plus the trials other workers are running now:
a constant liar that keeps parallel workers apart, plus failed and pruned trials imputed
as bad). Each set becomes a Parzen estimator, a weighted mixture with one kernel per
trial and one broad prior kernel:

- numeric coordinates (unit scale; log for log parameters): Gaussians truncated to [0, 1],
  each as wide as the larger gap to its neighbours along that coordinate, clipped below by
  ``1 / min(100, n + 1)`` (so kernels narrow as trials accumulate near the optimum, but never
  collapse) and by half a cell for integers and steps; the prior kernel is centred at 0.5
  with width 1;
- categorical coordinates: the trial's choice plus a uniform share ``1 / (n + 1)`` of the
  prior (kernels sharpen as trials accumulate); the prior kernel is uniform;
- a coordinate the trial does not have (an inactive conditional parameter) takes the prior
  kernel there;
- kernels of the bad set weigh by recency: the newest 25 weigh 1, older ones less
  (a linear ramp), so the model follows where the search is now.

``n_candidates`` points are drawn from the good estimator ``l`` and the one maximising
``log l(x) - log g(x)`` is proposed (the expected improvement under TPE's model).

In the default multivariate mode one joint estimator covers every parameter, so
interactions (learning rate x batch size) are modelled. With ``multivariate=False`` each
parameter is modelled on its own, as in the original TPE; both modes plan every parameter the
study has seen when a trial starts (so parallel workers see, and keep apart from, each other's
plans), and model a parameter suggested define-by-run for the first time when it is suggested.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tunelab.distributions import Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.priors import UnitCategorical, UnitGaussian
from tunelab.samplers._prior import (
    DEFAULT_PRIOR_WEIGHT,
    STARTUP_PRIOR_SHARE,
    TPE_AGREEMENT_SHARE,
    TPE_FADE_AFTER,
    TPE_PRIOR_KERNEL_SHARE,
    SpacePrior,
    check_prior_weight,
    prior_agreement,
    prior_term,
)
from tunelab.samplers.base import SamplingContext
from tunelab.samplers.model_based import (
    EncodedSpace,
    ModelBasedSampler,
    ObservationCache,
    Observations,
    TriedPoints,
    collect_observations,
)
from tunelab.samplers.transfer import (
    MIN_SOURCE_ROWS,
    SourceData,
    nearest_values,
    rank_agreement,
    tpe_source_weight,
)

PRIOR_WEIGHT = 1.0
"""Weight of the broad prior kernel in each estimator (a trial's kernel weighs 1)."""
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class ParzenEstimator:
    """A mixture of truncated Gaussians (numeric) and Aitchison-Aitken kernels (categorical).

    Args:
        X: (m, d) observations in unit / index coordinates (NaN: take the prior there).
        cat_sizes: (d,) 0 for numeric coordinates, else the number of choices.
        min_sigma: (d,) lower bound of the numeric bandwidths.
        weights: (m,) the observations' kernel weights (1 each by default).
        belief: the users' priors as one more kernel, weighing ``belief_weight``: their Gaussians on the
            numeric coordinates that have one, their choice probabilities (mixed with the uniform choice,
            :data:`~tunelab.samplers._prior.CATEGORICAL_UNIFORM_SHARE`) on the categorical ones that have
            one, broad or uniform elsewhere.
    """

    def __init__(
        self, X: np.ndarray, cat_sizes: np.ndarray, min_sigma: np.ndarray, weights: np.ndarray | None = None,
        belief: SpacePrior | None = None, belief_weight: float = 0.0,
    ) -> None:
        m = X.shape[0]
        self.cat_sizes = cat_sizes
        self._num = np.flatnonzero(cat_sizes == 0)
        self._cat = np.flatnonzero(cat_sizes > 0)
        extra = int(belief is not None and belief_weight > 0)
        w = np.concatenate([np.ones(m) if weights is None else weights, [PRIOR_WEIGHT], [belief_weight] * extra])
        self.log_weights = np.log(w / w.sum())
        # Numeric: centres and bandwidths, the prior kernel last.
        xn = X[:, self._num]
        sig = np.ones_like(xn)
        for c in range(xn.shape[1]):
            has = ~np.isnan(xn[:, c])
            sig[has, c] = _neighbour_bandwidths(xn[has, c], m + 1)
        sig = np.maximum(sig, min_sigma[self._num][None, :])
        self.mu = np.vstack([np.where(np.isnan(xn), 0.5, xn), np.full((1, len(self._num)), 0.5)])
        self.sigma = np.vstack([sig, np.ones((1, len(self._num)))])
        if extra and belief is not None:  # the users' priors, after the broad prior kernel
            mu_b, sigma_b = np.full((1, len(self._num)), 0.5), np.ones((1, len(self._num)))
            for c, i in enumerate(self._num):
                unit = belief.units[int(i)]
                if isinstance(unit, UnitGaussian):
                    mu_b[0, c], sigma_b[0, c] = unit.mu, unit.sigma
            self.mu, self.sigma = np.vstack([self.mu, mu_b]), np.vstack([self.sigma, sigma_b])
        from scipy.special import ndtr  # here, not at import: every `tunelab` command would pay 0.25 s

        self._log_z = np.log(np.maximum(ndtr((1 - self.mu) / self.sigma) - ndtr(-self.mu / self.sigma), 1e-300))
        # Categorical: one probability table per coordinate, rows = kernels.
        self.tables: list[np.ndarray] = []
        for j in self._cat:
            k = int(cat_sizes[j])
            col = X[:, j]
            seen = ~np.isnan(col)
            # Each kernel: its trial's choice plus PRIOR_WEIGHT / (m + 1) on every choice, so
            # kernels sharpen as observations accumulate.
            table = np.full((m + 1, k), PRIOR_WEIGHT / (m + 1))
            table[np.flatnonzero(seen), col[seen].astype(np.int64)] += 1.0
            table[~np.append(seen, False)] = 1.0  # absent, and the prior kernel: uniform
            unit = belief.units[int(j)] if extra and belief is not None else None
            believed = np.asarray(unit.probabilities) if isinstance(unit, UnitCategorical) else np.ones(k)
            table = np.vstack([table, np.tile(believed, (extra, 1))])  # the belief kernel: the prior's choices
            self.tables.append(table / table.sum(axis=1, keepdims=True))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` rows drawn from the mixture."""
        comp = rng.choice(len(self.log_weights), size=n, p=np.exp(self.log_weights))
        out = np.empty((n, len(self.cat_sizes)))
        if len(self._num):
            from scipy.special import ndtr, ndtri

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
        top = log_k.max(axis=1, keepdims=True)
        return np.asarray(np.log(np.exp(log_k - top).sum(axis=1)) + top[:, 0])


WIDER_DRAW = 16
"""When every candidate drawn from ``l`` repeats a configuration already tried, this many times as many
are drawn before a repeat is accepted."""


class TPESampler(ModelBasedSampler):
    """Tree-structured Parzen Estimator: fast, robust, good with many trials and mixed spaces.

    Args:
        n_startup_trials: measured trials before the model is used (quasi-random until then).
        n_candidates: points drawn from the good estimator per proposal; more exploits more.
        gamma: fraction of the observations in the good set.
        max_good: at most this many in the good set.
        multivariate: one joint model over all parameters (True) or one per parameter.
        failed: 'worst' (failed and pruned trials count as bad) or 'ignore'.
        prior_weight: how long the parameters' priors (:mod:`tunelab.priors`) steer proposals:
            the score gains ``(prior_weight / n) * log prior(x)`` after ``n`` measured trials (piBO's
            beta) up to 10, ``(prior_weight * 10 / n**2) * log prior(x)`` after, plus
            ``(0.3 * prior_weight * a) * log prior(x)`` where ``a`` in [0, 1] is how well the priors rank
            the measured trials (0 for a belief the evidence contradicts), and the good density gains
            the priors as a kernel weighing ``0.3 * prior_weight * a`` (the bad density too, at the same
            share, so the kernel proposes candidates and piBO's term scores them); 0 uses priors for (70%
            of) the start-up design only.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     x = trial.suggest_float("x", -5.0, 5.0)
        ...     activation = trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
        ...     return (x - 1.0) ** 2 + (0.0 if activation == "gelu" else 1.0)
        >>> study = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=5), seed=0)
        >>> study.optimize(objective, n_trials=30)
        >>> study.best_params["activation"], study.best_value < 0.5
        ('gelu', True)
    """

    multi_objective = True
    """With several objectives the good set is the best non-dominated fronts, ties in a front
    broken by hypervolume contribution (multi-objective TPE, Ozaki et al. 2020); with constraints,
    feasible trials rank before infeasible ones, which rank by violation."""

    def __init__(
        self,
        n_startup_trials: int = 10,
        n_candidates: int = 24,
        gamma: float = 0.1,
        max_good: int = 25,
        multivariate: bool = True,
        failed: str = "worst",
        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    ) -> None:
        super().__init__(n_startup_trials=n_startup_trials, failed=failed)
        self.prior_weight = check_prior_weight("TPESampler", prior_weight)
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

    def _forget(self) -> None:
        super()._forget()
        self._param_caches = {}

    def propose(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator) -> np.ndarray:
        if not self.multivariate:
            return self._propose_each(space, observations, rng)
        tried = TriedPoints.of(space, observations)
        row = self._propose_joint(space, observations, rng, tried=tried)
        self._warn_if_repeated(row, tried)
        return row

    def _propose_each(self, space: EncodedSpace, obs: Observations, rng: np.random.Generator) -> np.ndarray:
        """Univariate mode: each coordinate on its own, from the trials that have it.

        Planned at the start like the joint mode (so other workers see the plan, and plan ahead of
        it), but no interaction between parameters is modelled.
        """
        row = np.empty(len(space))
        for j, (name, dist) in enumerate(zip(space.names, space.distributions, strict=True)):
            column = EncodedSpace({name: dist})
            present, active = ~np.isnan(obs.X[:, j]), ~np.isnan(obs.pending[:, j])
            sources = tuple(
                SourceData(s.name, s.X[has][:, j:j + 1], s.y[has])
                for s in obs.sources if (has := ~np.isnan(s.X[:, j])).sum() >= MIN_SOURCE_ROWS
            )
            one = Observations(obs.X[present][:, j:j + 1], obs.y[present], obs.imputed[present],
                               obs.numbers[present], obs.pending[active][:, j:j + 1], obs.pending_numbers[active],
                               sources=sources)
            if one.n_measured < self.n_startup_trials and not sources:  # too few trials have it yet: a draw
                prior = SpacePrior(column.distributions)
                if prior.active and rng.random() < STARTUP_PRIOR_SHARE:  # from the prior, as the joint design does
                    row[j] = column.snap(prior.from_uniform(np.array([rng.random()]), column.cat_sizes))[0]
                else:  # uniform
                    k = int(column.cat_sizes[0])
                    row[j] = column.snap(np.array([[rng.integers(k) if k else rng.random()]], dtype=float))[0, 0]
            else:
                row[j] = self._propose_joint(column, one, rng)[0]
        return row

    def _propose_joint(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator,
                       tried: TriedPoints | None = None) -> np.ndarray:
        """The candidate drawn from ``l`` with the best ``log l - log g`` (plus piBO's term); with ``tried``,
        the best one that is not a configuration already tried or running, drawing
        :data:`WIDER_DRAW` times as many candidates when every draw is one (a repeat only if they all are)."""
        obs = observations
        n_good = min(max(1, math.ceil(self.gamma * len(obs.y))), self.max_good, len(obs.y))
        order = np.lexsort((obs.numbers, obs.y))  # best first, ties by trial number
        good, bad = order[:n_good], order[n_good:]
        min_sigma = _min_sigma(space)
        bad = bad[np.argsort(obs.numbers[bad])]  # by trial number: older bad trials weigh less
        good_X, good_w = [obs.X[good]], [np.ones(len(good))]
        bad_X, bad_w = [obs.X[bad], obs.pending], [_recency_weights(len(bad)), np.ones(len(obs.pending))]
        for source in obs.sources:  # a warm start: down-weighted, and silenced when unrelated
            agreement = rank_agreement(nearest_values(source, obs.X), obs.y) if len(obs.y) else 0.0
            w = tpe_source_weight(agreement, int(obs.n_measured), len(source.y))
            if w > 0:
                s_order = np.argsort(source.y, kind="stable")
                s_good = max(1, math.ceil(self.gamma * len(s_order)))
                good_X.append(source.X[s_order[:s_good]])
                good_w.append(np.full(s_good, w))
                bad_X.append(source.X[s_order[s_good:]])
                bad_w.append(np.full(len(s_order) - s_good, w))
        belief, agreement = SpacePrior(space.distributions), 0.0
        if self.prior_weight > 0 and belief.active:  # how well the users' priors rank the trials so far
            agreement = prior_agreement(belief, obs.X[~obs.imputed], obs.y[~obs.imputed])
        good_weights, bad_weights = np.concatenate(good_w), np.concatenate(bad_w)
        belief_weight = self.prior_weight * TPE_PRIOR_KERNEL_SHARE * agreement
        l_est = ParzenEstimator(np.vstack(good_X), space.cat_sizes, min_sigma, good_weights,
                                belief=belief, belief_weight=belief_weight)
        # The belief weighs the same share of g as of l: it proposes candidates (drawn from l) without
        # making l / g large wherever it is broad and no trial has been (piBO's term below scores it).
        g_est = ParzenEstimator(np.vstack(bad_X), space.cat_sizes, min_sigma, bad_weights, belief=belief,
                                belief_weight=belief_weight * (bad_weights.sum() + PRIOR_WEIGHT)
                                / (good_weights.sum() + PRIOR_WEIGHT))
        log_prior = prior_term(space.distributions, space.cat_sizes, self.prior_weight, obs.n_measured,
                               fade_after=TPE_FADE_AFTER, agreement=agreement, agreement_share=TPE_AGREEMENT_SHARE)

        def scores(candidates: np.ndarray) -> np.ndarray:
            score = l_est.log_pdf(candidates) - g_est.log_pdf(candidates)
            if log_prior is not None:  # piBO: the users' priors, fading as trials accumulate (fast after 10)
                score = score + log_prior(candidates)
            return np.asarray(score)

        candidates = space.snap(l_est.sample(rng, self.n_candidates))
        score = scores(candidates)
        if tried is not None and len(tried):
            fresh = tried.novel(candidates)
            if not fresh.any():  # l is concentrated on trials already run: a wider draw
                candidates = space.snap(l_est.sample(rng, WIDER_DRAW * self.n_candidates))
                score, fresh = scores(candidates), tried.novel(candidates)
            if fresh.any():
                score = np.where(fresh, score, -np.inf)
        return np.asarray(candidates[int(np.argmax(score))])

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        """A parameter the plan did not cover (suggested define-by-run, new in this trial): in univariate
        mode modelled on its own, else drawn at random."""
        if self.multivariate or history.replay_width is not None:  # (a deterministic study: drawn at random)
            return super().sample(history, trial, name, distribution)
        self._bind(history)
        space = EncodedSpace({name: distribution})
        cache = self._param_caches.setdefault(name, ObservationCache())
        obs = collect_observations(history, space, exclude=trial.number, failed=self.failed, cache=cache)
        present = ~np.isnan(obs.X[:, 0])
        active = ~np.isnan(obs.pending[:, 0])
        obs = Observations(obs.X[present], obs.y[present], obs.imputed[present], obs.numbers[present],
                           obs.pending[active], obs.pending_numbers[active])
        if obs.n_measured < self.n_startup_trials:
            return distribution.sample(trial.rng(name))
        row = self._propose_joint(space, obs, trial.rng(type(self).__name__, name))
        return space.decode(row)[name]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "n_candidates": self.n_candidates, "gamma": self.gamma,
            "max_good": self.max_good, "multivariate": self.multivariate, "prior_weight": self.prior_weight,
        }


def _recency_weights(n: int) -> np.ndarray:
    """Weight 1 for the newest 25, a linear ramp from 1/n up to 1 for the older ones."""
    if n <= 25:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, num=n - 25), np.ones(25)])


def _neighbour_bandwidths(mu: np.ndarray, n_kernels: int) -> np.ndarray:
    """Per point: the larger gap to its neighbours (the box's ends count as neighbours),
    clipped to ``[1 / min(100, n_kernels + 1), 1]`` so that no kernel collapses."""
    if len(mu) == 0:
        return mu
    order = np.argsort(mu)
    ends = np.concatenate([[0.0], mu[order], [1.0]])
    gaps = np.maximum(ends[1:-1] - ends[:-2], ends[2:] - ends[1:-1])
    if len(mu) >= 2:  # the outermost points: the gap to their inner neighbour only
        gaps[0], gaps[-1] = ends[2] - ends[1], ends[-2] - ends[-3]
    out = np.empty_like(mu)
    out[order] = gaps
    return np.asarray(np.clip(out, 1.0 / min(100.0, n_kernels + 1.0), 1.0))


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
