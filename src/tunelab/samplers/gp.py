"""Gaussian-process Bayesian optimisation: the most sample-efficient choice for small budgets.

Each proposal fits a Gaussian process to the observations (Matern 5/2 kernel with one
lengthscale per parameter, categorical parameters compared by equality inside the kernel,
hyperparameters by maximum a posteriori, losses warped and standardised first; see
:mod:`tunelab.samplers._gp`) and proposes the point that maximises the log expected
improvement over the best loss so far. Trials other workers are running count as
observed at the model's prediction, noise-free, and as candidates for the best value (the
"kriging believer"), which keeps parallel workers from proposing the same point. Inactive
conditional parameters sit at a fixed value.

With several objectives (``create_study(directions=[...])``) it fits one GP per objective and
proposes the point that maximises the log expected hypervolume improvement over the feasible
Pareto front (exact, in closed form, for any number of objectives: :mod:`tunelab.samplers._ehvi`).
With constraints (``trial.set_constraint``) each constraint's margin gets a GP too, and the log
acquisition adds the log probability that every constraint holds (constrained EI), counted more
below a probability of 0.9 (so proposals stay inside a bound that cuts the front off); until a
trial is feasible it maximises that probability alone. Running trials are believed at the models'
predictions, as for one objective, and their believed values join the front.

Fitting costs grow with the cube of the number of trials: use it for budgets up to a few
hundred trials, :class:`~tunelab.samplers.TPESampler` beyond.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.errors import ConfigError
from tunelab.multiobjective import losses
from tunelab.samplers._prior import (
    DEFAULT_PRIOR_WEIGHT,
    GP_AGREEMENT_SHARE,
    GP_STARTUP_WITH_PRIORS,
    SpacePrior,
    check_prior_weight,
    prior_agreement,
    prior_term,
)
from tunelab.samplers.model_based import EncodedSpace, ModelBasedSampler, Observations, TriedPoints
from tunelab.samplers.transfer import (
    OWN_MODEL_AT,
    PLAIN_UNITS_MARGIN,
    RESIDUAL_FIT_AT,
    SHIFT_FIT_AT,
    SourceData,
    TrustRegionPenalty,
    fit_shift,
    local_trials,
    quadratic_step,
    source_fails_locally,
    source_weights,
    trust_region,
)

if TYPE_CHECKING:
    from tunelab.samplers._gp import GaussianProcess, KernelParams, ShiftedGP


class GPSampler(ModelBasedSampler):
    """Bayesian optimisation with a Gaussian process and log expected improvement (log expected
    hypervolume improvement with several objectives).

    Args:
        n_startup_trials: measured trials before the model is used (quasi-random until then).
        n_candidates: quasi-random points scored before the local search of each proposal.
        n_local: best candidates refined by L-BFGS (numeric parameters) and by trying every
            choice (categorical ones).
        deterministic_objective: the objective returns the same value for the same parameters
            (no noise to fit).
        failed: 'worst' (failed and pruned trials count as the worst value) or 'ignore'.
        prior_weight: how long the parameters' priors (:mod:`tunelab.priors`) steer proposals:
            log EI gains ``(prior_weight / n + prior_weight * a) * log prior(x)`` after ``n``
            measured trials (piBO's beta; ``a`` in [0, 1]: how well the priors rank the measured
            trials, 0 for a belief the evidence contradicts); 0 uses priors for (70% of) the
            start-up design only. With a prior on every parameter the model starts after half of
            ``n_startup_trials``.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     x = trial.suggest_float("x", -5.0, 5.0)
        ...     y = trial.suggest_float("y", -5.0, 5.0)
        ...     return (x - 1.0) ** 2 + (y + 2.0) ** 2
        >>> study = tunelab.create_study(sampler=tunelab.GPSampler(n_startup_trials=5), seed=0)
        >>> study.optimize(objective, n_trials=15)
        >>> study.best_value < 0.5
        True
    """

    def __init__(
        self,
        n_startup_trials: int = 10,
        n_candidates: int = 2048,
        n_local: int = 10,
        deterministic_objective: bool = False,
        failed: str = "worst",
        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    ) -> None:
        super().__init__(n_startup_trials=n_startup_trials, failed=failed)
        self.prior_weight = check_prior_weight("GPSampler", prior_weight)
        for arg, value in (("n_candidates", n_candidates), ("n_local", n_local)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"GPSampler({arg}=...) must be an integer >= 1, got {value!r}")
        if not isinstance(deterministic_objective, bool):
            raise ConfigError(
                f"GPSampler(deterministic_objective=...) must be True or False, got {deterministic_objective!r}"
            )
        self.n_candidates = n_candidates
        self.n_local = n_local
        self.deterministic_objective = deterministic_objective
        self._previous: tuple[tuple[str, ...], KernelParams] | None = None
        self._source_gps: dict[tuple[Any, ...], GaussianProcess] = {}
        self._previous_models: dict[tuple[Any, ...], KernelParams] = {}

    multi_objective = True  # one GP per objective, log expected hypervolume improvement
    startup_with_priors = GP_STARTUP_WITH_PRIORS  # with a prior on every parameter: the model after 5 trials, not 10

    def _forget(self) -> None:
        super()._forget()
        self._previous = None  # another study's fit is no warm start: its trials gave other parameters
        self._previous_models = {}

    def propose(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator) -> np.ndarray:
        if observations.ranking is not None and len(observations.ranking.directions) > 1:
            return self._propose_pareto(space, observations, rng)
        if observations.sources:
            return self._propose_warm(space, observations, rng)
        from tunelab.samplers._gp import fit_gp  # scipy.optimize and .stats: slow to import

        X = _fill_inactive(observations.X, space)
        warm = self._previous is not None and self._previous[0] == space.names and not observations.replayable
        initial = self._previous[1] if warm and self._previous is not None else None
        gp = fit_gp(X, observations.y, space.cat_sizes, rng=rng, initial=initial,
                    deterministic_objective=self.deterministic_objective)
        self._previous = (space.names, gp.params)  # a warm start for the next fit in this process
        if len(observations.pending):
            gp = gp.with_pending(_fill_inactive(observations.pending, space))
        log_prior = self._prior_term(space, observations)
        return self._maximize(gp, space, observations, rng, log_prior)

    def _prior_term(self, space: EncodedSpace, obs: Observations) -> Any:
        """piBO's term (``None`` without priors), its weight raised by how well the priors rank the measured
        trials (:func:`~tunelab.samplers._prior.prior_agreement`)."""
        prior = SpacePrior(space.distributions)
        if self.prior_weight <= 0 or not prior.active:
            return None
        measured = ~obs.imputed
        agreement = prior_agreement(prior, obs.X[measured], obs.y[measured])
        return prior_term(space.distributions, space.cat_sizes, self.prior_weight, obs.n_measured,
                          agreement=agreement, agreement_share=GP_AGREEMENT_SHARE)

    def _fit(self, key: tuple[Any, ...], X: np.ndarray, y: np.ndarray, space: EncodedSpace, obs: Observations,
             rng: np.random.Generator, warp: bool = True) -> GaussianProcess:
        """A GP fitted to ``y``, warm-started from this process's previous fit under ``key``."""
        from tunelab.samplers._gp import fit_gp

        full = (space.names, *key)
        initial = None if obs.replayable else self._previous_models.get(full)
        gp = fit_gp(X, y, space.cat_sizes, rng=rng, initial=initial, warp=warp,
                    deterministic_objective=self.deterministic_objective)
        self._previous_models[full] = gp.params
        return gp

    def _propose_pareto(self, space: EncodedSpace, obs: Observations, rng: np.random.Generator) -> np.ndarray:
        """Several objectives: log EHVI over the feasible front, plus log P(feasible) with constraints."""
        from tunelab.samplers._ehvi import LogEHVI, reference_point

        ranking = obs.ranking
        assert ranking is not None
        X = _fill_inactive(obs.X, space)
        L = losses(ranking.values, ranking.directions)
        measured = np.all(np.isfinite(L), axis=1) & ~obs.imputed
        if not measured.any():  # nothing measured (only failed trials): explore
            u = rng.random(len(space))
            return np.asarray(space.snap(np.where(space.cat_sizes > 0, np.floor(u * space.cat_sizes), u)[None, :])[0])
        worst = np.max(L[measured], axis=0)
        L = np.where(measured[:, None], L, worst[None, :])  # failed and pruned trials: the worst of each
        # Standardised, not warped: an affine map per objective scales every hypervolume by one constant, so
        # EHVI ranks points as in the objectives' own units (warping did worse on DTLZ2 and SRN: 1.84-1.93
        # against 2.02-2.14 at 60 trials, level on ZDT1/2).
        objectives = [self._fit(("objective", j), X, L[:, j], space, obs, rng, warp=False) for j in range(L.shape[1])]
        feasible = measured & ~(ranking.violation > 0)
        constraints = []
        if ranking.margins is not None:
            for c, name in enumerate(ranking.constraint_names):
                margin = ranking.margins[:, c]
                rows = np.isfinite(margin)
                if rows.sum() < 2:
                    continue
                centre, scale = float(margin[rows].mean()), float(margin[rows].std())
                if scale <= 1e-12 * max(1.0, abs(centre)):
                    continue  # the same margin everywhere: nothing to model
                gp = self._fit(("constraint", name), X[rows], (margin[rows] - centre) / scale, space, obs, rng,
                               warp=False)
                constraints.append((gp, -centre / scale))
        Y = np.stack([g.y for g in objectives], axis=1)
        reference = reference_point(Y)
        front = Y[feasible]
        if len(obs.pending):
            pending = _fill_inactive(obs.pending, space)
            believed = np.stack([g.predict(pending)[0] for g in objectives], axis=1)
            ok = np.ones(len(pending), dtype=bool)
            for gp, threshold in constraints:
                ok &= gp.predict(pending)[0] <= threshold
            front = np.vstack([front, believed[ok]])
            objectives = [g.with_pending(pending) for g in objectives]
            constraints = [(g.with_pending(pending), t) for g, t in constraints]
        acquisition = LogEHVI(objectives, front, reference, constraints, X, obs.y,
                              improve=bool(feasible.any()) or not constraints)
        log_prior = self._prior_term(space, obs)
        return self._maximize(acquisition, space, obs, rng, log_prior)

    def _source_gp(self, space: EncodedSpace, data: SourceData, warp: bool = True) -> GaussianProcess:
        """The GP of one source study, fitted once per space (a fixed generator: every worker fits
        the same one); ``warp=False``: on its standardised values, not warped ones."""
        from tunelab.samplers._gp import fit_gp

        key = (space.names, repr(space.distributions), data.name, len(data.y), warp)
        if key not in self._source_gps:
            rng = np.random.default_rng(zlib.crc32(data.name.encode()))
            self._source_gps[key] = fit_gp(_fill_inactive(data.X, space), data.y, space.cat_sizes, rng=rng,
                                           deterministic_objective=self.deterministic_objective, warp=warp)
        return self._source_gps[key]

    def _moved_sources(self, space: EncodedSpace, data: Sequence[SourceData], X: np.ndarray, y: np.ndarray,
                       warp: bool) -> tuple[list[GaussianProcess | ShiftedGP], float]:
        """Each source's GP, shifted onto the target's trials where that explains them better
        (:func:`~tunelab.samplers.transfer.fit_shift`), and the smallest share of ``y``'s variance a
        source leaves unexplained."""
        from tunelab.samplers._gp import ShiftedGP

        sources: list[GaussianProcess | ShiftedGP] = []
        unexplained = 1.0
        for d in data:
            g = self._source_gp(space, d, warp=warp)
            fit = fit_shift(g, g.X, g.y, X, y)
            sources.append(ShiftedGP(g, fit.shift) if fit.shift.any() else g)
            unexplained = min(unexplained, fit.unexplained)
        return sources, unexplained

    def _propose_warm(self, space: EncodedSpace, obs: Observations, rng: np.random.Generator) -> np.ndarray:
        """A proposal with earlier studies' GPs as the prior mean (see :mod:`tunelab.samplers.transfer`)."""
        from tunelab.samplers._gp import (
            GaussianProcess,
            PriorMeanGP,
            fit_gp,
            standardise,
            warp_targets,
        )

        X = _fill_inactive(obs.X, space)
        n = len(X)
        y = warp_targets(obs.y) if n else np.zeros(0)
        sources, unexplained = self._moved_sources(space, obs.sources, X, y, warp=True)
        if n >= SHIFT_FIT_AT:
            # The affine link between a source and the target holds in the objective's own units
            # (a shifted, rescaled problem) but not between two warps fitted to different samples:
            # the sources are also fitted unwarped, and that model is used when it explains the
            # target's trials clearly better.
            y_plain = standardise(obs.y)
            plain, plain_unexplained = self._moved_sources(space, obs.sources, X, y_plain, warp=False)
            if plain_unexplained < PLAIN_UNITS_MARGIN * unexplained:
                sources, y = plain, y_plain
        predictions = np.array([g.predict(X)[0] for g in sources]) if n else np.zeros((len(sources), 0))
        own = None
        if n >= OWN_MODEL_AT:  # how well the target's own model ranks its trials, left out one at a time
            own = fit_gp(X, y, space.cat_sizes, rng=np.random.default_rng(n), warp=False,
                         deterministic_objective=self.deterministic_objective).loo_means()
        weights = source_weights(predictions, y, own)
        if weights.any() and not len(obs.pending):
            # The sources led the search into a smooth basin: step to the minimum of a quadratic fitted there
            polished = quadratic_step(X, obs.y, space.cat_sizes == 0)
            if polished is not None:
                snapped = np.asarray(space.snap(polished[None, :])[0])
                if np.abs(X - snapped).max(axis=1).min() > 1e-9:  # an integer's rounding may land on a trial
                    return snapped
        if own is not None and weights.any():
            # The target's own warped model (as without a warm start) against the sources in the basin the
            # search is in: where it ranks the trials there better, it refines the basin.
            local = local_trials(X, y, space.cat_sizes == 0)
            own_gp = fit_gp(X, obs.y, space.cat_sizes, rng=np.random.default_rng(n + 1),
                            deterministic_objective=self.deterministic_objective)
            if source_fails_locally(weights @ predictions, own_gp.loo_means(), y, local):
                return self._propose_local(space, obs, own_gp, X, local, rng)
        if not weights.any() and obs.n_measured < self.n_startup_trials:
            u = rng.random(len(space))  # every source unrelated, few trials of its own yet: explore
            return np.asarray(space.snap(np.where(space.cat_sizes > 0, np.floor(u * space.cat_sizes), u)[None, :])[0])
        prior_at_X = weights @ predictions if n else np.zeros(0)
        params = sources[int(np.argmax(weights))].params
        # Units: z = (y - offset) / scale = prior / scale + (residual, standardised by fit_gp).
        c0, c1 = 1.0, 0.0
        residual: GaussianProcess | None = None
        if n >= RESIDUAL_FIT_AT:
            r = y - prior_at_X
            scale = float(np.sqrt(np.mean((r - r.mean()) ** 2)))
            if scale > 1e-12:
                c0 = 1.0 / scale
                residual = fit_gp(X, r, space.cat_sizes, rng=rng, warp=False,
                                  deterministic_objective=self.deterministic_objective)
                params = residual.params
        if residual is None and n:
            c1 = float(np.mean(y - prior_at_X))  # the link's intercept (fit_gp centres a fitted residual)
            residual = GaussianProcess(X, y - prior_at_X - c1, space.cat_sizes, params)
        z_observed = c0 * prior_at_X + c1 + residual.y if residual is not None else np.zeros(0)
        hint_X = np.vstack([X, *(g.X[np.argsort(g.y)[:5]] for g, w in zip(sources, weights, strict=True) if w > 0)])
        gp = PriorMeanGP(residual, sources, weights, c0, c1, space.cat_sizes, params, 0.0, hint_X, np.zeros(0))
        hint_y = gp.predict(hint_X)[0] if len(hint_X) else np.zeros(0)
        best = float(np.min(z_observed)) if n else float(np.min(hint_y)) if len(hint_y) else 0.0
        gp = PriorMeanGP(residual, sources, weights, c0, c1, space.cat_sizes, params, best, hint_X, hint_y)
        if len(obs.pending):
            gp = gp.with_pending(_fill_inactive(obs.pending, space))
        log_prior = self._prior_term(space, obs)
        return self._maximize(gp, space, obs, rng, log_prior)

    def _propose_local(self, space: EncodedSpace, obs: Observations, gp: GaussianProcess, X: np.ndarray,
                       local: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The target's own GP (warped, as without a warm start) proposes inside the box of the basin the
        search is in, where the sources rank the trials worse than it does
        (:func:`~tunelab.samplers.transfer.source_fails_locally`): the sources found the basin, the own
        model refines it."""

        if len(obs.pending):
            gp = gp.with_pending(_fill_inactive(obs.pending, space))
        centre, half = trust_region(X, local, space.cat_sizes == 0)
        region = TrustRegionPenalty(centre, half, space.cat_sizes == 0, self._prior_term(space, obs))
        return self._maximize(gp, space, obs, rng, region)

    def _maximize(self, acquisition: Any, space: EncodedSpace, obs: Observations, rng: np.random.Generator,
                  log_prior: Any) -> np.ndarray:
        """The point of ``space`` that maximises ``acquisition`` (plus ``log_prior``) and repeats no trial of
        ``obs`` while a new configuration can be found (:class:`TriedPoints`)."""
        from tunelab.samplers._gp import maximize_log_ei

        tried = TriedPoints.of(space, obs)
        row = maximize_log_ei(acquisition, space.cat_sizes, rng=rng, n_candidates=self.n_candidates,
                              n_local=self.n_local, snap=space.snap, log_prior=log_prior, novel=tried.novel)
        self._warn_if_repeated(row, tried)
        return row

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "n_candidates": self.n_candidates, "n_local": self.n_local,
            "deterministic_objective": self.deterministic_objective, "prior_weight": self.prior_weight,
        }


def _fill_inactive(X: np.ndarray, space: EncodedSpace) -> np.ndarray:
    """Absent parameters at a fixed point: the middle of the range, or the first choice."""
    filler = np.where(space.is_categorical, 0.0, 0.5)
    return np.where(np.isnan(X), filler[None, :], X)
