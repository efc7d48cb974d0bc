"""``TunelabSearchCV``: scikit-learn's ``RandomizedSearchCV``, with tunelab choosing the candidates.

A drop-in search estimator built on scikit-learn's ``BaseSearchCV`` template: ``fit`` cross-validates
candidates and fills ``cv_results_``, ``best_params_``, ``best_estimator_``, ``best_score_`` and
``best_index_`` as every scikit-learn search does (pipelines, multimetric scoring, ``refit`` as a
bool, a scorer name or a callable, ``get_params``/``set_params``, ``clone`` and pickling included).
The candidates come from a tunelab study (``study_``), a batch of ``n_workers`` at a time: the
sampler plans each batch knowing the trials still running, each trial is told its mean
cross-validated score, and the next batch learns from it. With a ``pruner``, each candidate is
cross-validated fold by fold and stopped once its fold scores show it cannot win.

Example::

    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    import tunelab
    from tunelab.integrations.sklearn import TunelabSearchCV

    X, y = load_digits(return_X_y=True)
    search = TunelabSearchCV(SVC(), {"C": tunelab.Float(1e-2, 1e2, log=True)}, n_trials=10, random_state=0)
    search.fit(X, y)
    search.best_params_, search.best_score_
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import effective_n_jobs  # type: ignore[import-untyped]
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Integral, Interval, Options

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.integrations._common import prune_now
from tunelab.pruners import Pruner
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers import Sampler
from tunelab.study import Study, Trial, create_study, load_study

__all__ = ["TunelabSearchCV"]

#: The message scikit-learn raises when every fit of one ``evaluate_candidates`` call failed.
_ALL_FAILED = "fits failed"
#: scikit-learn's warning about non-finite mean scores (pruned candidates have NaN means on purpose).
_NON_FINITE = "scores are non-finite"
#: The scipy.stats distributions that map onto a tunelab distribution (the sampler models them).
_SCIPY_MAPPED = ("uniform", "loguniform", "reciprocal", "randint")

Decoder = Callable[[ParamValue], Any]


# -- the search space -------------------------------------------------------------------------------
def _json_scalar(value: object) -> object:
    """A numpy scalar as its Python value; anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()  # type: ignore[no-any-return]
    return value


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _from_list(name: str, values: Sequence[Any]) -> tuple[Distribution, Decoder]:
    """A list of values: a categorical parameter (objects such as estimators or tuples by a label)."""
    items = [_json_scalar(v) for v in values]
    if not items:
        raise ConfigError(f"param_distributions[{name!r}] is an empty list; give at least one value")
    if all(_is_scalar(v) for v in items):
        try:
            return Categorical(items), lambda value: value  # type: ignore[arg-type]
        except ValueError as e:
            raise ConfigError(f"param_distributions[{name!r}]: {e}") from None
    labels = [repr(v) for v in items]
    if len(set(labels)) != len(labels):
        labels = [f"{i}: {label}" for i, label in enumerate(labels)]
    by_label = dict(zip(labels, items, strict=True))
    return Categorical(labels), lambda label: by_label[str(label)]


def _from_scipy(name: str, frozen: Any) -> Distribution:
    """A frozen scipy.stats distribution mapped to a tunelab one: uniform, loguniform, randint."""
    kind = getattr(getattr(frozen, "dist", None), "name", None)
    if kind not in _SCIPY_MAPPED:
        shown = f"scipy.stats.{kind}" if isinstance(kind, str) else repr(frozen)
        raise ConfigError(
            f"param_distributions[{name!r}] is {shown}, which tunelab's samplers cannot model; use "
            "scipy.stats.uniform, loguniform or randint, a tunelab distribution (tunelab.Float(low, high, "
            "log=...), tunelab.Int(low, high)) or a list of values"
        )
    low, high = (float(b) for b in frozen.support())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(
            f"param_distributions[{name!r}]: scipy.stats.{kind} with args {frozen.args} {frozen.kwds} has no "
            f"finite range of values (its support is [{low}, {high}]); check its arguments, e.g. randint(low, "
            "high) with low < high"
        )
    if kind == "randint":
        return Int(int(low), int(high))
    if kind == "uniform":
        return Float(low, high)
    if float(frozen.kwds.get("loc", frozen.args[2] if len(frozen.args) > 2 else 0.0)) != 0.0:
        raise ConfigError(
            f"param_distributions[{name!r}]: a shifted loguniform (loc != 0) is not log-uniform; "
            "use scipy.stats.loguniform(a, b) or tunelab.Float(a, b, log=True)"
        )
    return Float(low, high, log=True)


def _entry(name: str, value: Any) -> tuple[Distribution, Decoder]:
    """One entry of ``param_distributions`` as a tunelab distribution and the decoder of its values."""
    if isinstance(value, Float):
        return value, lambda v: float(v)  # type: ignore[arg-type]
    if isinstance(value, Int):
        return value, lambda v: int(v)  # type: ignore[arg-type]
    if isinstance(value, (Categorical, Bool)):
        return value, lambda v: v
    if isinstance(value, Distribution):
        raise ConfigError(f"param_distributions[{name!r}]: {value!r} is not supported; use Float, Int, "
                          "Categorical or Bool")
    if hasattr(value, "rvs"):
        return _from_scipy(name, value), lambda v: v
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return _from_list(name, list(value))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return _from_list(name, value)
    raise ConfigError(
        f"param_distributions[{name!r}] = {value!r} is not a distribution: give a tunelab distribution "
        "(tunelab.Float(1e-3, 1e2, log=True), tunelab.Int(1, 10), tunelab.Categorical([...])), a scipy.stats "
        "uniform/loguniform/randint, or a list of values (a single value goes in a list: [value])"
    )


def build_space(param_distributions: object) -> tuple[dict[str, Distribution], dict[str, Decoder]]:
    """``param_distributions`` as a tunelab space and, per parameter, how a sampled value becomes the
    estimator's value. Raises ConfigError naming the parameter when an entry is not a distribution."""
    if not isinstance(param_distributions, Mapping) or not param_distributions:
        raise ConfigError(
            "param_distributions must be a non-empty dict of parameter name -> distribution, e.g. "
            f"{{'C': tunelab.Float(1e-3, 1e2, log=True)}}, got {param_distributions!r}"
        )
    space: dict[str, Distribution] = {}
    decoders: dict[str, Decoder] = {}
    for name, value in param_distributions.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"param_distributions: parameter names must be non-empty strings, got {name!r}")
        try:
            space[name], decoders[name] = _entry(name, value)
        except (ValueError, TypeError, OverflowError) as e:  # ConfigError included: each names the parameter
            if isinstance(e, ConfigError) and str(e).startswith("param_distributions"):
                raise
            raise ConfigError(f"param_distributions[{name!r}]: {e}") from None
    return space, decoders


# -- one candidate's record during a fit ------------------------------------------------------------
@dataclass(eq=False)
class _Row:
    """One candidate (one tunelab trial) and its cross-validation so far."""

    trial: Trial
    params: dict[str, Any]
    outs: list[dict[str, Any] | None]
    failed_folds: set[int] = field(default_factory=set)
    error: str | None = None
    pruned_at: int | None = None
    frozen: FrozenTrial | None = None

    @property
    def started(self) -> bool:
        return bool(self.failed_folds) or any(out is not None for out in self.outs)

    def fit_error(self) -> str | None:
        return self.error or next((o["fit_error"] for o in self.outs if o is not None and o["fit_error"]), None)

    def state(self) -> str:
        if self.frozen is not None:  # told: how the study recorded it (a NaN mean score ends FAIL)
            return self.frozen.state.value
        if self.fit_error() is not None:
            return TrialState.FAIL.value
        if self.pruned_at is not None:
            return TrialState.PRUNED.value
        return TrialState.COMPLETE.value if all(o is not None for o in self.outs) else TrialState.RUNNING.value


class _CachedSplits:
    """The folds of the search's cv, computed once per fit: every candidate sees the same folds
    (even with a shuffling splitter without a random_state), all of them or only ``fold``."""

    def __init__(self, base: Any, cache: list[tuple[Any, Any]], fold: int | None = None) -> None:
        self.base = base
        self.cache = cache
        self.fold = fold

    def split(self, X: Any, y: Any = None, groups: Any = None, **kwargs: Any) -> Iterator[tuple[Any, Any]]:  # noqa: N803
        if not self.cache:
            extra = {"groups": groups} if groups is not None else {}
            self.cache.extend(self.base.split(X, y, **extra, **kwargs))
        yield from (self.cache if self.fold is None else [self.cache[self.fold]])

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:  # noqa: N803
        return len(self.cache) if self.fold is None else 1


# -- the search estimator ---------------------------------------------------------------------------
class TunelabSearchCV(BaseSearchCV):  # type: ignore[misc]
    """Hyperparameter search with cross-validation, the candidates chosen by a tunelab study.

    Use it as ``RandomizedSearchCV``: ``fit`` sets ``cv_results_`` (one row per candidate, the same
    keys as RandomizedSearchCV's), ``best_params_``, ``best_score_``, ``best_index_``,
    ``best_estimator_`` (with ``refit``), ``scorer_``, ``n_splits_``, ``refit_time_``, ``multimetric_``.

    Args:
        estimator: the estimator (or Pipeline) to tune; its parameter names (``"clf__C"``) are the keys
            of ``param_distributions``.
        param_distributions: parameter name -> a tunelab distribution (``tunelab.Float(1e-3, 1e2,
            log=True)``, ``tunelab.Int``, ``tunelab.Categorical``, ``tunelab.Bool``), a frozen
            ``scipy.stats.uniform``, ``loguniform`` or ``randint`` (mapped to a tunelab distribution
            so that the sampler models it; other scipy distributions are refused), or a list of
            values (categorical; estimators, tuples and other objects are chosen by label).
        n_trials: candidates to evaluate in this fit.
        cv: as in scikit-learn (None: 5-fold, stratified for classifiers). The folds are computed
            once per fit: every candidate is scored on the same folds.
        scoring: as in scikit-learn: None (the estimator's ``score``), a scorer name, a callable,
            or a list/dict of scorers (multimetric).
        refit: as in scikit-learn: True, False, a scorer name (multimetric) or a callable.
        n_workers: candidates evaluated at once: each batch of ``n_workers`` trials is planned
            together (the sampler sees them as pending) and cross-validated by joblib with
            ``n_jobs=n_workers`` (``-1``: every core).
        sampler: a tunelab sampler; default: the study's default (:class:`tunelab.AutoSampler`).
        pruner: a tunelab pruner (e.g. ``tunelab.MedianPruner()``): candidates are then
            cross-validated fold by fold, each fold's score reported as the trial's curve (step =
            fold index), and a candidate the pruner stops is not fitted on its remaining folds.
        storage: None (in memory, a new study per fit) or a tunelab storage URL such as
            ``"sqlite:///search.db"``; with ``study_name`` a later fit continues the same study.
        study_name: the study's name in ``storage`` (default: a generated name per fit).
        error_score: the score recorded for a fold whose fit fails (``"raise"``: raise instead);
            the candidate's trial ends FAIL and the search goes on.
        return_train_score: also record the training scores in ``cv_results_``.
        random_state: seeds the study (an int, a ``RandomState`` drawn from, or None: a random seed):
            the same int gives the same candidates.
        verbose: scikit-learn's verbosity.
        pre_dispatch: joblib's ``pre_dispatch``.

    Attributes:
        study_: the tunelab study of the last fit (its trials, curves, dashboard); after unpickling
            it is reloaded from ``storage`` (an in-memory study is not pickled).
        trials_: the finished tunelab trials, one per row of ``cv_results_``, in the same order.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **{k: v for k, v in BaseSearchCV._parameter_constraints.items() if k != "n_jobs"},
        "param_distributions": [dict],
        "n_trials": [Interval(Integral, 1, None, closed="left")],
        "n_workers": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "sampler": [Sampler, None],
        "pruner": [Pruner, None],
        "storage": [str, None],
        "study_name": [str, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, Any],
        *,
        n_trials: int = 10,
        cv: Any = None,
        scoring: Any = None,
        refit: bool | str | Callable[..., int] = True,
        n_workers: int = 1,
        sampler: Sampler | None = None,
        pruner: Pruner | None = None,
        storage: str | None = None,
        study_name: str | None = None,
        error_score: float | str = np.nan,
        return_train_score: bool = False,
        random_state: Any = None,
        verbose: int = 0,
        pre_dispatch: int | str = "2*n_jobs",
    ) -> None:
        # Every argument stored as given (scikit-learn's convention), validated by fit. Not through
        # BaseSearchCV.__init__: it would set n_jobs, which here follows n_workers.
        self.estimator = estimator
        self.scoring = scoring
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.pre_dispatch = pre_dispatch
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.param_distributions = param_distributions
        self.n_trials = n_trials
        self.n_workers = n_workers
        self.sampler = sampler
        self.pruner = pruner
        self.storage = storage
        self.study_name = study_name
        self.random_state = random_state

    @property
    def n_jobs(self) -> int:
        """joblib's ``n_jobs`` for the cross-validation fits: ``n_workers``."""
        return int(self.n_workers)

    # -- fit -------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, **params: Any) -> TunelabSearchCV:  # noqa: N803 - scikit-learn names it X
        """Search ``n_trials`` candidates with cross-validation, then refit the best (see the class).

        Args:
            X: the training data.
            y: the target (None for unsupervised estimators).
            **params: passed to the estimator's ``fit``, the scorer and the cv splitter, as in scikit-learn.
        """
        self._validate_params()
        self._space, self._decoders = build_space(self.param_distributions)  # bad entries: before any fit
        try:
            super().fit(X, y, **params)
        finally:
            for transient in ("_rows", "_ledger", "_splits", "_space", "_decoders"):
                self.__dict__.pop(transient, None)
        return self

    def _run_search(self, evaluate_candidates: Callable[..., dict[str, Any]], *, callback_ctx: Any = None) -> None:
        """Ask a batch of trials, cross-validate them, tell each its mean score; repeat to ``n_trials``."""
        self._rows: list[_Row] = []
        self._ledger: list[tuple[int, int]] = []
        self._folds = int(self.n_splits_)
        self._splits: list[tuple[Any, Any]] = []
        self._study = self._make_study()
        search_ctx = None
        if callback_ctx is not None:
            search_ctx = callback_ctx.subcontext(task_name="search", max_subtasks=None)
            search_ctx.call_on_fit_task_begin(estimator=self)
        batch = max(1, effective_n_jobs(self.n_workers))
        results: dict[str, Any] | None = None
        last_failure: ValueError | None = None
        while len(self._rows) < self.n_trials:
            rows = self._ask(min(batch, self.n_trials - len(self._rows)))
            try:
                got, failure = self._evaluate(rows, evaluate_candidates, search_ctx)
            except BaseException as e:
                stopped = isinstance(e, (KeyboardInterrupt, SystemExit))  # "interrupted": as the runner says it
                why = f"interrupted: {type(e).__name__}" if stopped else f"{type(e).__name__}: {e}"
                self._fail_unfinished(rows, why)
                raise
            results = got if got is not None else results
            last_failure = failure or last_failure
            self._tell(rows)
        self.trials_: list[FrozenTrial] = [r.frozen for r in self._rows if r.frozen is not None]
        if search_ctx is not None:
            search_ctx.call_on_fit_task_end(estimator=self)
        if results is None:  # every fit of the search failed: scikit-learn raises, so does this search
            assert last_failure is not None
            failed = sum(len(r.failed_folds) for r in self._rows)
            raise ValueError(f"\nAll the {failed} fits of the search failed; the last batch's:" + str(last_failure))
        # The table of every row as the study ended them (a failed batch, a pruned candidate, the trial
        # states), built once more: its warnings (non-finite scores) come once per fit, as scikit-learn's.
        table = self._table(warn=True)
        results.clear()
        results.update(table)

    def _make_study(self) -> Study:
        """The study of this fit: a new one, or (storage and study_name) the stored one, continued."""
        seed = self.random_state
        if seed is not None and not isinstance(seed, numbers.Integral):
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        sampler = copy.deepcopy(self.sampler)  # a fit never changes its parameters
        pruner = copy.deepcopy(self.pruner)
        return create_study(
            name=self.study_name, storage=self.storage, direction="maximize", sampler=sampler, pruner=pruner,
            seed=None if seed is None else int(seed), load_if_exists=self.study_name is not None,
            space=self._space,  # declared: a GridSampler without its own space takes its cells from it
        )

    def _ask(self, n: int) -> list[_Row]:
        """``n`` new trials, planned together (each one sees those before it as pending)."""
        rows = []
        for _ in range(n):
            trial = self._study.ask(self._space)
            trial.flush()
            params = {name: self._decoders[name](value) for name, value in trial.params.items()}
            rows.append(_Row(trial, params, [None] * self._n_splits()))
        self._rows.extend(rows)
        return rows

    def _n_splits(self) -> int:
        """The folds of the cv (``n_splits_`` reads 1 during a call on one fold)."""
        return self._folds

    def _evaluate(
        self, rows: list[_Row], evaluate_candidates: Callable[..., dict[str, Any]], ctx: Any
    ) -> tuple[dict[str, Any] | None, ValueError | None]:
        """Cross-validate a batch: all folds at once, or fold by fold with a pruner.

        Returns the last table evaluate_candidates built (None if none) and the error of a call
        whose fits all failed (its candidates are recorded with ``error_score``)."""
        if self.pruner is None:
            return self._call(rows, 0, None, evaluate_candidates, ctx)
        results: dict[str, Any] | None = None
        failure = None
        n_splits = self._n_splits()
        alive = rows
        for fold in range(n_splits):
            got, failed = self._call(alive, fold, fold, evaluate_candidates, ctx)
            results, failure = got if got is not None else results, failed or failure
            alive = [r for r in alive if r.fit_error() is None]
            for row in alive:
                score = self._fold_score(row, fold)
                row.trial.report(fold, **{f"test_{self._metric}": score})
                if fold < n_splits - 1 and prune_now(row.trial):
                    row.pruned_at = fold
            alive = [r for r in alive if r.pruned_at is None]
            if not alive:
                break
        return results, failure

    def _call(
        self, rows: list[_Row], first_fold: int, fold: int | None,
        evaluate_candidates: Callable[..., dict[str, Any]], ctx: Any,
    ) -> tuple[dict[str, Any] | None, ValueError | None]:
        """One ``evaluate_candidates`` call on ``rows``: every fold (``fold`` None) or one."""
        n_splits = self._n_splits()
        base_ledger = len(self._ledger)
        self._ledger.extend((self._rows.index(r), first_fold) for r in rows)
        cv = _CachedSplits(self._checked_cv_orig, self._splits, fold)
        sub = None
        if ctx is not None:
            sub = ctx.subcontext(task_name="batch", max_subtasks=len(rows) * (1 if fold is not None else n_splits),
                                 sequential_subtasks=False)
            sub.call_on_fit_task_begin(estimator=self)
        if fold is not None:
            self.n_splits_ = 1  # evaluate_candidates checks the cv against n_splits_
        try:
            results = evaluate_candidates([r.params for r in rows], cv=cv, callback_ctx=sub)
        except ValueError as e:
            del self._ledger[base_ledger:]
            if not str(e).lstrip().startswith("All the") or _ALL_FAILED not in str(e) or self.error_score == "raise":
                raise
            for r in rows:  # every fit of this call failed: record error_score and go on
                r.failed_folds.update(range(n_splits) if fold is None else [fold])
                r.error = _error_line(str(e).strip().splitlines()[-1])
            warnings.warn(str(e), FitFailedWarning, stacklevel=2)
            return None, e
        finally:
            self.n_splits_ = n_splits
        if sub is not None:
            sub.call_on_fit_task_end(estimator=self)
        return results, None

    def _fold_score(self, row: _Row, fold: int) -> float:
        out = row.outs[fold]
        assert out is not None
        scores = out["test_scores"]
        return float(scores[self._metric] if isinstance(scores, dict) else scores)

    def _tell(self, rows: list[_Row]) -> None:
        """Tell each trial of a batch how it ended: its mean score, PRUNED or FAIL (with the error)."""
        for row in rows:
            if self.pruner is None and row.fit_error() is None and row.outs[0] is not None:
                for fold in range(self._n_splits()):
                    row.trial.report(fold, **{f"test_{self._metric}": self._fold_score(row, fold)})
            error = row.fit_error()
            if error is not None:
                frozen = self._study.tell(row.trial, state=TrialState.FAIL, error=_error_line(error))
            elif row.pruned_at is not None:
                frozen = self._study.tell(row.trial, state=TrialState.PRUNED)
            else:
                mean = float(np.mean([self._fold_score(row, k) for k in range(self._n_splits())]))
                frozen = self._study.tell(row.trial, mean)
            row.frozen = frozen  # cv_results_'s trial_state says how the study recorded it

    def _fail_unfinished(self, rows: list[_Row], why: str) -> None:
        """An error stops the search: never leave its trials RUNNING."""
        for row in rows:
            try:
                self._study.tell(row.trial, state=TrialState.FAIL, error=_error_line(why))
            except Exception:  # noqa: BLE001 - already told, or the storage is failing: the first error wins
                continue

    # -- cv_results_ -------------------------------------------------------------------------------
    def _format_results(
        self, candidate_params: list[dict[str, Any]], n_splits: int, out: list[dict[str, Any]],
        more_results: dict[str, list[Any]] | None = None,
    ) -> dict[str, Any]:
        """scikit-learn's table of every candidate so far, one row per trial.

        ``evaluate_candidates`` gives every fit so far in call order; each is filed under its
        trial and fold, so that a candidate cross-validated fold by fold (with a pruner) is one
        row, and candidates whose call failed entirely are rows too."""
        if not hasattr(self, "_ledger") or not self._ledger:
            return super()._format_results(candidate_params, n_splits, out, more_results)  # type: ignore[no-any-return]
        per = len(out) // len(candidate_params)
        for i, (index, first) in enumerate(self._ledger):
            for j in range(per):
                self._rows[index].outs[first + j] = out[i * per + j]
        return self._table(warn=False)  # warned once, by the last table (_run_search)

    def _table(self, *, warn: bool) -> dict[str, Any]:
        """``cv_results_`` from the rows: skipped folds (pruned) score NaN, failed ones ``error_score``."""
        rows = [r for r in self._rows if r.started]
        n_splits = self._n_splits()
        real = [o for r in rows for o in r.outs if o is not None]
        template = next((o for o in real if o["fit_error"] is None), real[0] if real else None)
        flat = [self._fold_out(r, k, template) for r in rows for k in range(n_splits)]
        more = None
        if self.pruner is not None:
            more = {"trial_state": [r.state() for r in rows],
                    "n_splits_run": [sum(o is not None for o in r.outs) for r in rows]}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = super()._format_results([r.params for r in rows], n_splits, flat, more)
        # Pruned candidates, and those still being cross-validated fold by fold, have NaN means by design.
        unfinished = np.array([r.state() in (TrialState.PRUNED.value, TrialState.RUNNING.value) for r in rows])
        for w in caught:
            if not warn:
                continue
            if _NON_FINITE in str(w.message) and self._only_unfinished_non_finite(table, unfinished):
                continue
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return table  # type: ignore[no-any-return]

    @staticmethod
    def _only_unfinished_non_finite(table: dict[str, Any], unfinished: np.ndarray) -> bool:
        means = [np.asarray(v, dtype=float) for k, v in table.items()
                 if k.startswith(("mean_test_", "mean_train_"))]
        return all(bool(np.all(np.isfinite(m[~unfinished]))) for m in means)

    def _fold_out(self, row: _Row, fold: int, template: dict[str, Any] | None) -> dict[str, Any]:
        """The result of one fold: the real one, or what a failed call or a skipped fold records."""
        out = row.outs[fold]
        if out is not None:
            return out
        failed = fold in row.failed_folds
        value = self.error_score if failed else np.nan
        scores: Any = value
        if template is not None and isinstance(template["test_scores"], dict):
            scores = dict.fromkeys(template["test_scores"], value)
        made = {"fit_error": row.error if failed else None, "test_scores": scores, "n_test_samples": 0,
                "fit_time": np.nan if failed else 0.0, "score_time": np.nan if failed else 0.0}
        if self.return_train_score:
            made["train_scores"] = copy.copy(scores)
        return made

    @property
    def _metric(self) -> str:
        """The score the trials are told: the refit scorer's, the first scorer's, or ``score``."""
        template = next((o for r in self._rows for o in r.outs if o is not None and o["fit_error"] is None), None)
        scores = template["test_scores"] if template is not None else None
        if not isinstance(scores, dict):
            return "score"
        if isinstance(self.refit, str) and self.refit in scores:
            return self.refit
        return str(next(iter(scores)))

    # -- the study after fit, and pickling ---------------------------------------------------------
    @property
    def study_(self) -> Study:
        """The tunelab study of the last fit (reloaded from ``storage`` after unpickling)."""
        study = self.__dict__.get("_study")
        if study is None:
            ref = self.__dict__.get("_study_ref")
            if ref is None:
                raise AttributeError(
                    "study_ is set by fit(); a search unpickled without a storage URL has no study "
                    "(pass storage='sqlite:///...' to keep it)"
                )
            study = load_study(ref[0], ref[1])
            self._study = study
        return study

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())
        study = state.pop("_study", None)
        for transient in ("_rows", "_ledger", "_splits", "_space", "_decoders"):
            state.pop(transient, None)
        if study is not None and isinstance(self.storage, str):
            state["_study_ref"] = (study.name, self.storage)
        return state


def _error_line(error: str) -> str:
    """The last line of a traceback (the exception), or the error's first line."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return "the fit failed"
    tail = lines[-1] if len(lines) > 1 and "Traceback" in lines[0] else lines[0]
    return tail if len(tail) <= 500 else tail[:497] + "..."
