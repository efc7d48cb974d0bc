"""XGBoost: :class:`TunelabCallback` reports every eval metric per boosting round, stops a pruned
trial and keeps the best round's score.

Add it to ``xgb.train(callbacks=[...])`` (or ``xgb.cv``, or an ``XGBModel``'s ``callbacks``)::

    callback = TunelabCallback(trial, "validation-logloss")
    xgb.train(params, dtrain, num_boost_round=200, evals=[(dvalid, "validation")], callbacks=[callback])
    return callback.best_score
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunelab.errors import ConfigError
from tunelab.integrations._best import BestScore, check_direction, study_direction
from tunelab.integrations._common import as_number, check_monitor, check_trial, prune_now, report_monitored, require

xgb: Any = require("xgboost", "xgboost", "tunelab.integrations.xgboost")


def latest_scores(evals_log: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The latest value of every eval metric as ``{"<data>-<metric>": value}``. ``xgb.cv`` logs
    ``(mean, std)`` pairs: the mean is taken (``test-logloss`` is ``xgb.cv``'s ``test-logloss-mean``)."""
    out: dict[str, float] = {}
    for data, metrics in evals_log.items():
        for metric, values in metrics.items():
            if not values:
                continue
            last = values[-1]
            if type(last) is float:  # xgb.train's logs: no conversion to ask for
                out[f"{data}-{metric}"] = last
                continue
            number = as_number(last[0] if isinstance(last, tuple) else last)
            if number is not None:
                out[f"{data}-{metric}"] = number
    return out


class TunelabCallback(xgb.callback.TrainingCallback):  # type: ignore[misc]
    """Reports the latest value of every eval metric after each boosting round (step = the round,
    counted from 0; names ``<data>-<metric>`` such as ``validation-logloss``), then asks the study's
    pruner; when it says stop, ends training (``after_iteration`` returns True) and marks the trial:
    it ends PRUNED with its curves whether the objective then raises :class:`tunelab.TrialPruned`
    or returns.

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

    @property
    def best_score(self) -> float | None:
        """The best value of the monitored metric so far (None before the first round): return it
        from the objective as the trial's value, the best iteration's score."""
        return self._best.score

    @property
    def best_iteration(self) -> int | None:
        """The round (from 0) of :attr:`best_score`, the first of equal ones."""
        return self._best.iteration

    def after_iteration(self, model: Any, epoch: int, evals_log: Mapping[str, Mapping[str, Any]]) -> bool:
        scores = latest_scores(evals_log)
        if self.observation_key not in scores:
            self._check_logged(scores)
        step = int(epoch)
        trial = self.trial
        report_monitored(trial, step, scores, self.observation_key,
                         f"TunelabCallback(observation_key={self.observation_key!r})", "XGBoost")
        self._best.update(step, scores[self.observation_key])
        if prune_now(trial):
            self.pruned_iteration = step
            if not isinstance(model, xgb.Booster) and model.attr("best_iteration") is None:
                # xgb.cv cuts its results at the model's best_iteration when a callback stops it, and
                # fails when none is set (no early stopping): keep every round done
                model.set_attr(best_iteration=str(step))
            return True
        return False

    def after_training(self, model: Any) -> Any:
        self.trial.flush()  # the reports gathered for the storage: written once training ends
        return model

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
