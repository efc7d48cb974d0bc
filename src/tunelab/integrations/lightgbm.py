"""LightGBM: :class:`TunelabCallback` reports every eval metric per boosting round, stops a pruned
trial (``lgb.train`` returns cleanly) and keeps the best round's score.

Add it to ``lgb.train(callbacks=[...])`` (or ``lgb.cv``, or an ``LGBMModel.fit``'s ``callbacks``)::

    callback = TunelabCallback(trial, "binary_logloss")
    lgb.train(params, dtrain, num_boost_round=200, valid_sets=[dvalid], callbacks=[callback])
    return callback.best_score
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tunelab.errors import ConfigError
from tunelab.integrations._best import BestScore, check_direction
from tunelab.integrations._common import as_number, check_monitor, check_trial, require
from tunelab.integrations._held import HeldReports

lgb: Any = require("lightgbm", "lightgbm", "tunelab.integrations.lightgbm")

#: The name ``lgb.cv`` gives its held-out folds (the mean over folds is reported).
CV_VALID_NAME = "valid"


def _number(value: Any) -> float:
    """A logged value as a float, NaN when it is no number."""
    number = as_number(value)
    return math.nan if number is None else number


def evaluation_scores(results: Sequence[Sequence[Any]]) -> dict[str, float]:
    """``env.evaluation_result_list`` as ``{"<data>-<metric>": value}``; in ``lgb.cv`` the value is
    the mean over folds (its standard deviation is not reported)."""
    out: dict[str, float] = {}
    for item in results:
        value = item[2]
        number = float(value) if isinstance(value, float) else as_number(value)  # a float, or numpy's float64
        if number is not None:
            out[f"{item[0]}-{item[1]}"] = number
    return out


class TunelabCallback:
    """Reports every eval metric of each boosting round (step = the iteration, counted from 0; names
    ``<data>-<metric>`` such as ``valid_0-binary_logloss``) and asks the study's pruner; when it says
    stop, raises LightGBM's ``EarlyStopException`` at the best round so far (so ``lgb.train`` returns
    cleanly, its ``best_iteration`` and ``best_score`` set) and marks the trial: it ends PRUNED with its
    curves whether the objective then raises :class:`tunelab.TrialPruned` or returns.

    A round costs a list append: the rounds are reported together, each at its own step, at those
    the pruner could stop the trial at (:meth:`tunelab.Trial.next_pruning_step`: its rungs, past its
    warm-up), at least every half second, and when training ends (LightGBM's own early stopping
    included: the trial's end reports them); the pruner is asked at the same rounds, so it stops the
    trial where it would with a report per round.

    Args:
        trial: the :class:`tunelab.Trial` given to the objective.
        metric: the monitored metric as LightGBM names it (``binary_logloss``, ``auc``, ``l2``...).
            It defines :attr:`best_score`, and the study's pruner decides on it
            (``<valid_name>-<metric>``), as with the Lightning callback's ``monitor``, unless the pruner
            is set to its own metric (``metric="valid_0-auc"``, which LightGBM must log: a ConfigError
            otherwise).
        valid_name: the validation set's name: ``valid_names=[...]`` given to ``lgb.train``, else
            LightGBM's ``valid_<index in valid_sets>`` (``valid_1`` when the training set comes
            first). In ``lgb.cv`` the default means ``"valid"``, cv's held-out folds. A metric or
            name LightGBM never logs is a ConfigError at the first round naming the ones it logs.
        direction: of the monitored metric, for :attr:`best_score`: 'minimize' or 'maximize';
            None: LightGBM's own (``auc`` is higher-is-better, ``binary_logloss`` lower).
    """

    def __init__(self, trial: Any, metric: str = "binary_logloss", valid_name: str = "valid_0", *,
                 direction: str | None = None) -> None:
        self.trial = check_trial(trial, "TunelabCallback")
        self.metric = check_monitor(metric, "metric")
        self.valid_name = check_monitor(valid_name, "valid_name")
        self.direction = check_direction(direction, "TunelabCallback")
        self.order = 25  # after record_evaluation (20): the pruned round is recorded; before early_stopping (30)
        self.before_iteration = False
        self._best: BestScore | None = None
        self._best_results: list[Any] = []
        self.pruned_iteration: int | None = None
        self._key = ""
        self._data = ""
        self._index = 0
        self._keyed_model: Any = None
        self.trial.gather_reports = True  # a round every few milliseconds: the storage keeps pace
        self._rounds: HeldReports[list[Any]] = HeldReports(
            self.trial, "", f"TunelabCallback(metric={self.metric!r}, valid_name={self.valid_name!r})", "LightGBM",
            evaluation_scores)

    @property
    def best_score(self) -> float | None:
        """The best value of the monitored metric so far (None before the first round): return it
        from the objective as the trial's value, the best iteration's score."""
        return None if self._best is None else self._best.score

    @property
    def best_iteration(self) -> int | None:
        """The iteration (from 0) of :attr:`best_score`, the first of equal ones."""
        return None if self._best is None else self._best.iteration

    def key(self, env: Any) -> str:
        """The reported name of the monitored metric in this run (``lgb.cv``'s folds are ``valid``)."""
        cv = isinstance(env.model, lgb.CVBooster)
        data = CV_VALID_NAME if cv and self.valid_name == "valid_0" else self.valid_name
        return f"{data}-{self.metric}"

    def __call__(self, env: Any) -> None:
        results = list(env.evaluation_result_list or [])
        if env.model is not self._keyed_model:  # the key once per training, not per round
            self._key, self._keyed_model = self.key(env), env.model
            self._data = self._key[: -len(self.metric) - 1]  # the validation set's name
            self._index = self._index_of(self._key, results)
            self._rounds.monitor = self._key
            self._rounds.restart()
        index = self._index
        item = results[index] if index < len(results) else None
        if item is None or item[0] != self._data or item[1] != self.metric:
            index = self._index = self._index_of(self._key, results)  # LightGBM evaluated other sets this round
            item = results[index]
        value = item[2]
        step = int(env.iteration)
        if type(value) is not float:  # numpy's float64 (a float subclass, slower to compare), or another number
            value = float(value) if isinstance(value, float) else _number(value)
        self._track_best(step, results, value)
        if self._rounds.add(step, results):
            self.pruned_iteration = step
            self.trial.flush()
            if self.best_iteration is None:  # the metric was NaN at every round: stop at this one
                raise lgb.callback.EarlyStopException(step, results)
            raise lgb.callback.EarlyStopException(self.best_iteration, self._best_results)
        if step == int(env.end_iteration) - 1:  # LightGBM calls no callback at the end of training
            self.trial.flush()  # the rounds held back and the reports gathered: in the storage once training ends

    def _index_of(self, key: str, results: list[Any]) -> int:
        """Where ``key`` is in a round's evaluation results; a ConfigError naming what LightGBM logs when nowhere."""
        for i, item in enumerate(results):
            if f"{item[0]}-{item[1]}" == key:
                return i
        self._check_logged(key, evaluation_scores(results))
        raise AssertionError("unreachable: _check_logged raises")

    def _track_best(self, step: int, results: list[Any], value: float) -> None:
        if self._best is None:
            higher_is_better = bool(results[self._index][3])
            self._best = BestScore(self.direction or ("maximize" if higher_is_better else "minimize"))
        if self._best.update(step, value):
            self._best_results = results

    def _check_logged(self, key: str, scores: dict[str, float]) -> None:
        """A ConfigError naming what LightGBM logs: ``key`` is not among ``scores``."""
        if not scores:
            raise ConfigError(
                f"TunelabCallback(metric={self.metric!r}): LightGBM evaluated nothing; pass "
                f"valid_sets=[dvalid] to lgb.train (and a metric in params, e.g. 'metric': {self.metric!r})"
            )
        raise ConfigError(
            f"TunelabCallback(metric={self.metric!r}, valid_name={self.valid_name!r}): LightGBM logs only "
            f"{sorted(scores)} ('<valid_name>-<metric>'); pass the metric and valid_name of one of them"
        )
