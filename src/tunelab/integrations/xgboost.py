"""XGBoost: :class:`TunelabCallback` reports every eval metric per boosting round, stops a pruned
trial and keeps the best round's score.

Add it to ``xgb.train(callbacks=[...])`` (or ``xgb.cv``, or an ``XGBModel``'s ``callbacks``)::

    callback = TunelabCallback(trial, "validation-logloss")
    xgb.train(params, dtrain, num_boost_round=200, evals=[(dvalid, "validation")], callbacks=[callback])
    return callback.best_score
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tunelab.errors import ConfigError
from tunelab.integrations._best import BestScore, check_direction, study_direction
from tunelab.integrations._common import as_number, check_monitor, check_trial, require
from tunelab.integrations._held import HeldReports

xgb: Any = require("xgboost", "xgboost", "tunelab.integrations.xgboost")


def _as_float(value: Any) -> float | None:
    """A logged value as a float (``xgb.cv``'s ``(mean, std)`` pair: its mean), None when it is no number."""
    if type(value) is float:  # xgb.train's logs: no conversion to ask for
        return value
    return as_number(value[0] if isinstance(value, tuple) else value)


def latest_scores(evals_log: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The latest value of every eval metric as ``{"<data>-<metric>": value}``. ``xgb.cv`` logs
    ``(mean, std)`` pairs: the mean is taken (``test-logloss`` is ``xgb.cv``'s ``test-logloss-mean``)."""
    out: dict[str, float] = {}
    for data, metrics in evals_log.items():
        for metric, values in metrics.items():
            number = _as_float(values[-1]) if values else None
            if number is not None:
                out[f"{data}-{metric}"] = number
    return out


def _scores_of_round(held: tuple[Mapping[str, Mapping[str, Any]], int]) -> dict[str, float]:
    """Every eval metric's value at a round held back, ``(evals_log, n)``: the ``n``-th value of each of the
    log's lists (XGBoost appends one to each per round)."""
    evals_log, n = held
    out: dict[str, float] = {}
    for data, metrics in evals_log.items():
        for metric, values in metrics.items():
            number = _as_float(values[n - 1]) if len(values) >= n else None
            if number is not None:
                out[f"{data}-{metric}"] = number
    return out


class TunelabCallback(xgb.callback.TrainingCallback):  # type: ignore[misc]
    """Reports every eval metric of each boosting round (step = the round, counted from 0; names
    ``<data>-<metric>`` such as ``validation-logloss``) and asks the study's pruner; when it says stop,
    ends training (``after_iteration`` returns True) and marks the trial: it ends PRUNED with its curves
    whether the objective then raises :class:`tunelab.TrialPruned` or returns.

    A round costs a list append: the rounds are reported together, each at its own step, at those
    the pruner could stop the trial at (:meth:`tunelab.Trial.next_pruning_step`: its rungs, past its
    warm-up), at least every half second, and when training ends; the pruner is asked at the same
    rounds, so it stops the trial where it would with a report per round.

    Args:
        trial: the :class:`tunelab.Trial` given to the objective.
        observation_key: the monitored metric, ``"<eval name>-<metric>"``: the name given in
            ``evals=[(dvalid, "validation")]`` and the ``eval_metric``, e.g. ``"validation-logloss"``
            (``"test-logloss"`` in ``xgb.cv``). A key XGBoost never logs is a ConfigError at the
            first round naming the keys it logs. It defines :attr:`best_score`, and the study's pruner
            decides on it, as with the Lightning callback's ``monitor``, unless the pruner is set to its
            own metric (``metric=``, which XGBoost must log: a ConfigError otherwise).
        direction: of the monitored metric, for :attr:`best_score`: 'minimize' or 'maximize'; None:
            the study's direction (the objective returns the best score).
    """

    def __init__(self, trial: Any, observation_key: str = "validation-logloss", *,
                 direction: str | None = None) -> None:
        super().__init__()
        self.trial = check_trial(trial, "TunelabCallback")
        self.observation_key = check_monitor(observation_key, "observation_key")
        self.direction = check_direction(direction, "TunelabCallback") or study_direction(self.trial, "TunelabCallback")
        self._best = BestScore(self.direction)
        self.pruned_iteration: int | None = None
        self.trial.gather_reports = True  # a round every few milliseconds: the storage keeps pace
        self._monitored: list[Any] | None = None
        self._rounds: HeldReports[tuple[Mapping[str, Mapping[str, Any]], int]] = HeldReports(
            self.trial, self.observation_key, f"TunelabCallback(observation_key={self.observation_key!r})",
            "XGBoost", _scores_of_round)

    @property
    def best_score(self) -> float | None:
        """The best value of the monitored metric so far (None before the first round): return it
        from the objective as the trial's value, the best iteration's score."""
        return self._best.score

    @property
    def best_iteration(self) -> int | None:
        """The round (from 0) of :attr:`best_score`, the first of equal ones."""
        return self._best.iteration

    def before_training(self, model: Any) -> Any:
        self._monitored = None  # looked up again in this training's log
        self._rounds.restart()
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Mapping[str, Mapping[str, Any]]) -> bool:
        step = int(epoch)
        values = self._monitored
        if values is None:  # the first round of a training: the monitored metric's list in XGBoost's log
            values = self._monitored = self._find_monitored(evals_log)
        last = values[-1]
        if type(last) is not float:
            number = _as_float(last)
            last = math.nan if number is None else number
        self._best.update(step, last)
        if self._rounds.add(step, (evals_log, len(values))):
            self.pruned_iteration = step
            if not isinstance(model, xgb.Booster) and model.attr("best_iteration") is None:
                # xgb.cv cuts its results at the model's best_iteration when a callback stops it, and
                # fails when none is set (no early stopping): keep every round done
                model.set_attr(best_iteration=str(step))
            return True
        return False

    def after_training(self, model: Any) -> Any:
        self.trial.flush()  # the rounds held back and the reports gathered: in the storage once training ends
        return model

    def _find_monitored(self, evals_log: Mapping[str, Mapping[str, Any]]) -> list[Any]:
        """The list XGBoost appends the monitored metric's value to each round; a ConfigError when it logs none."""
        for data, metrics in evals_log.items():
            for metric, values in metrics.items():
                if f"{data}-{metric}" == self.observation_key and values:
                    return values  # type: ignore[no-any-return]
        self._check_logged(latest_scores(evals_log))
        raise AssertionError("unreachable: _check_logged raises")

    def _check_logged(self, scores: Mapping[str, float]) -> None:
        """A ConfigError naming what XGBoost logs: the monitored key is not among ``scores``."""
        if not scores:
            raise ConfigError(
                f"TunelabCallback(observation_key={self.observation_key!r}): XGBoost evaluated nothing; "
                f"pass evals=[(dvalid, 'validation')] to xgb.train"
            )
        raise ConfigError(
            f"TunelabCallback(observation_key={self.observation_key!r}): XGBoost logs only {sorted(scores)} "
            f"('<eval name>-<metric>' from evals=[(dmatrix, name)] and eval_metric); pass one of them"
        )
