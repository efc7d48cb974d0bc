"""Every trial an MLflow run, nested under one run of the study.

``MLflowCallback`` is an ordinary :meth:`tunelab.Study.optimize` callback: after each finished
trial (in the process that called ``optimize``, also with ``n_workers > 1``) it writes the trial's
run: its parameters, every curve the trial reported (``study.get_curves``), its final value(s), its
state as a tag and as the run's status (COMPLETE: FINISHED, PRUNED: KILLED, FAIL: FAILED), the
pruner's decision and the error text. The study's run is FINISHED, with its end time that of the
last trial written (the next trial's end moves it on). ``cb.report(trial, step, **metrics)`` used inside the
objective instead of ``trial.report`` also logs the metrics to the trial's run as they come (from
the worker process that runs the trial), so curves grow while the trial trains; the end of the
trial then adds only what is missing::

    cb = MLflowCallback(tracking_uri="sqlite:///mlruns.db")

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for epoch in range(10):
            cb.report(trial, epoch, val_loss=...)   # trial.report + live MLflow metrics
        return val_loss

    study.optimize(objective, n_trials=20, n_workers=2, callbacks=[cb])

Runs are found again by their tags (``tunelab.study_key``, ``tunelab.trial``), never by what one
process remembers: a later ``optimize`` call, another worker process or another machine finds the
same parent run and the same trial run.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError
from tunelab.integrations._common import check_trial, require
from tunelab.integrations._tracking import (
    FINISHED,
    check_metric_name,
    check_tags,
    constraint_metrics,
    final_values,
    param_text,
    pruning_text,
    study_key,
    tail,
    value_names,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study, Trial

require("mlflow", "mlflow", "tunelab.integrations.mlflow")
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient, get_tracking_uri  # noqa: E402

#: Tags of every run this callback writes.
ROLE_TAG = "tunelab.role"  # "study" (the parent run) or "trial"
STUDY_TAG = "tunelab.study"  # the study's name
KEY_TAG = "tunelab.study_key"  # a digest of the study's identity: its runs are searched by it
TRIAL_TAG = "tunelab.trial"  # the trial's number
STATE_TAG = "tunelab.state"  # COMPLETE, PRUNED or FAIL
PRUNED_TAG = "tunelab.pruned"  # the pruner's decision (JSON)
ERROR_TAG = "tunelab.error"  # the end of the error text of a FAIL trial
FEASIBLE_TAG = "tunelab.feasible"  # "true" or "false": whether every constraint's bounds hold (set_constraint)
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

#: The MLflow status of each final state.
STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
_MAX_TAG = 5000  # MLflow keeps tag values up to 8000 characters
_MAX_PARAM = 6000
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's limits of one log_batch
_REFUSED = re.compile(r"[^/\w.\- :]")  # the characters MLflow refuses in metric and parameter names


def mlflow_name(name: str) -> str:
    """A curve's, value's or parameter's name as MLflow takes it: ``@`` becomes ``_at_`` (as MLflow's
    own XGBoost and LightGBM autologging write ``ndcg@5``: ``ndcg_at_5``) and any other character
    MLflow refuses (anything but letters, digits, ``_ - . / :`` and spaces) becomes ``_``."""
    if _REFUSED.search(name) is None:
        return name
    return _REFUSED.sub("_", name.replace("@", "_at_"))


class MLflowCallback:
    """Record every trial of a study as an MLflow run.

    Args:
        tracking_uri: where MLflow keeps runs, e.g. ``"sqlite:///mlruns.db"`` or a tracking server's
            ``"http://host:5000"``; None: MLflow's default (``MLFLOW_TRACKING_URI``). The store is
            opened at construction, so a bad URI fails before any trial runs.
        experiment_name: the MLflow experiment; default: the study's name.
        metric_name: the name of the final value (default ``"value"``); for a study with several
            objectives, one name per objective (default: the study's objective names). A name that
            is also a reported curve is not logged again when the curve's last point holds the trial's
            value; otherwise the value is logged one step past the curve's last (as MLflow's Keras
            autologging logs the restored epoch), so that MLflow's value of the metric is the trial's.
        nested: each trial's run is a child of one run of the study (``mlflow.parentRunId``).
        tags: extra tags for every run (the study's and the trials').
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        metric_name: str | Sequence[str] = "value",
        nested: bool = True,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        if tracking_uri is not None and (not isinstance(tracking_uri, str) or not tracking_uri):
            raise ConfigError(
                f"tracking_uri must be a URI such as 'sqlite:///mlruns.db' (or None), got {tracking_uri!r}"
            )
        if experiment_name is not None and (not isinstance(experiment_name, str) or not experiment_name.strip()):
            raise ConfigError(f"experiment_name must be a non-empty string (or None: the study's name), got "
                              f"{experiment_name!r}")
        if not isinstance(nested, bool):
            raise ConfigError(f"nested must be True or False, got {nested!r}")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.metric_name = check_metric_name(metric_name)
        self.nested = nested
        self.tags = check_tags(tags)
        self._reset()
        self._connect()
        if experiment_name is not None:  # a deleted one fails now, before any trial runs
            _check_active(self._client.get_experiment_by_name(experiment_name), experiment_name)

    # -- pickling: a worker process opens its own client -----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        keep = ("tracking_uri", "experiment_name", "metric_name", "nested", "tags")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _reset(self) -> None:
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._runs: dict[tuple[str, int], str] = {}  # (study key, trial number) -> run id
        self._tidied: set[str] = set()  # studies whose left-over RUNNING runs were closed here
        self._params_sent: dict[str, set[str]] = {}  # run id -> the parameters report() logged

    def _connect(self) -> Any:
        if self._client is None:
            _check_sqlite_store(self.tracking_uri)
            try:
                client = MlflowClient(tracking_uri=self.tracking_uri)
                client.search_experiments(max_results=1)  # opens the store (an SQLite file gets its tables)
            except MlflowException as e:
                raise ConfigError(f"MLflowCallback(tracking_uri={self.tracking_uri!r}) cannot open the tracking "
                                  f"store: {e.message}") from None
            self._client = client
        return self._client

    # -- the two hooks ---------------------------------------------------------------------------
    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Write the finished ``trial``'s run (an ``optimize`` callback)."""
        names = value_names(self.metric_name, study, "MLflowCallback")
        if trial.state not in FINISHED:
            return
        experiment = self._experiment(study)
        parent = self._parent(study, experiment, create=True)
        if study_key(study) not in self._tidied:
            self._tidied.add(study_key(study))
            self._close_left_over(study, experiment, parent, names, but=trial.number)
        self._write_end(study, experiment, parent, trial, names)
        if parent is not None:  # no hook marks the end of optimize: the study's run ends with each trial
            self._connect().set_terminated(parent, "FINISHED")

    def report(self, trial: Trial, step: int, **metrics: float) -> None:
        """``trial.report(step, **metrics)``, and the metrics logged to the trial's run at ``step`` now.

        Call it in the objective instead of ``trial.report``: the run's curves then grow while the
        trial trains (the trial's parameters suggested so far are logged too). The end of the trial
        adds what is missing, without duplicates. Raises what ``trial.report`` raises.
        """
        checked = check_trial(trial, "MLflowCallback.report")
        checked.report(step, **metrics)
        study = checked.study
        value_names(self.metric_name, study, "MLflowCallback")  # a bad metric_name fails at the first report
        run_id = self._live_run(study, checked)
        now = _now_ms()
        logged = [Metric(mlflow_name(k), float(v), now, int(step)) for k, v in metrics.items()]
        sent = self._params_sent.setdefault(run_id, set())
        params = [Param(mlflow_name(k), tail(param_text(v), _MAX_PARAM)) for k, v in checked.params.items()
                  if mlflow_name(k) not in sent]
        self._log(run_id, logged, params, [])
        sent.update(p.key for p in params)

    # -- runs -------------------------------------------------------------------------------------
    def _experiment(self, study: Study) -> str:
        name = self.experiment_name or study.name
        if name not in self._experiments:
            client = self._connect()
            found = client.get_experiment_by_name(name)
            _check_active(found, name)
            if found is None:
                try:
                    self._experiments[name] = client.create_experiment(name)
                    return self._experiments[name]
                except MlflowException:  # another process created it meanwhile
                    found = client.get_experiment_by_name(name)
                    if found is None:
                        raise
            self._experiments[name] = found.experiment_id
        return self._experiments[name]

    def _parent(self, study: Study, experiment: str, *, create: bool) -> str | None:
        """The study's run: found by its tags; made (by an ``optimize`` callback only) when missing.

        Two processes that made one at once keep the older and delete the other.
        """
        if not self.nested:
            return None
        key = study_key(study)
        found = self._search(experiment, f"tags.`{KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'study'")
        if found or not create:
            return _oldest(found)
        client = self._connect()
        tags = {**self.tags, ROLE_TAG: "study", STUDY_TAG: study.name, KEY_TAG: key}
        mine = client.create_run(experiment, tags=tags, run_name=study.name).info.run_id
        oldest = _oldest(self._search(experiment, f"tags.`{KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'study'"))
        if oldest is not None and oldest != mine:
            client.delete_run(mine)
            return oldest
        return str(mine)

    def _find_run(self, study: Study, experiment: str, number: int) -> str | None:
        key = study_key(study)
        if (key, number) in self._runs:
            return self._runs[(key, number)]
        found = self._search(experiment, f"tags.`{KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'trial' "
                                         f"and tags.`{TRIAL_TAG}` = '{number}'")
        run_id = _oldest(found)
        if run_id is not None:
            self._runs[(key, number)] = run_id
        return run_id

    def _trial_run(self, study: Study, experiment: str, parent: str | None, number: int) -> str:
        """Trial ``number``'s run, made when missing (its trial runs in one process at a time)."""
        run_id = self._find_run(study, experiment, number)
        if run_id is None:
            tags = {**self.tags, ROLE_TAG: "trial", STUDY_TAG: study.name, KEY_TAG: study_key(study),
                    TRIAL_TAG: str(number)}
            if parent is not None:
                tags[PARENT_TAG] = parent
            run_id = self._connect().create_run(experiment, tags=tags, run_name=f"trial-{number}").info.run_id
            self._runs[(study_key(study), number)] = run_id
        return run_id

    def _live_run(self, study: Study, trial: Trial) -> str:
        key = study_key(study)
        if (key, trial.number) in self._runs:
            return self._runs[(key, trial.number)]
        experiment = self._experiment(study)
        # The study's run is made by the optimize callback: a worker nests under it once it exists,
        # and the end of the trial nests the run otherwise.
        return self._trial_run(study, experiment, self._parent(study, experiment, create=False), trial.number)

    def _write_end(
        self, study: Study, experiment: str, parent: str | None, trial: FrozenTrial, names: Sequence[str]
    ) -> None:
        """Complete the trial's run: the missing params and curve points, the values, tags, status."""
        client = self._connect()
        run_id = self._trial_run(study, experiment, parent, trial.number)
        run = client.get_run(run_id)
        curves = study.get_curves(trial.number)
        now = _now_ms()
        metrics = list(self._missing_points(run_id, run.data.metrics, curves, now))
        curve_names = {mlflow_name(name): name for name in curves}
        ends = {**final_values(trial, names), **constraint_metrics(trial)}
        metrics += [Metric(mlflow_name(k), v, now, 0) for k, v in ends.items()
                    if mlflow_name(k) not in curve_names and mlflow_name(k) not in run.data.metrics]
        for k, v in final_values(trial, names).items():
            if mlflow_name(k) in curve_names:
                metrics += self._final_after_curve(run_id, mlflow_name(k), v, curves[curve_names[mlflow_name(k)]], now)
        params = [Param(mlflow_name(k), tail(param_text(v), _MAX_PARAM)) for k, v in trial.params.items()
                  if mlflow_name(k) not in run.data.params]
        tags = {**self.tags, STATE_TAG: trial.state.value}
        if parent is not None:
            tags[PARENT_TAG] = parent
        if (pruned := pruning_text(trial)) is not None:
            tags[PRUNED_TAG] = tail(pruned, _MAX_TAG)
        if trial.error:
            tags[ERROR_TAG] = tail(trial.error, _MAX_TAG)
        if trial.constraints:
            tags[FEASIBLE_TAG] = "true" if trial.feasible else "false"
        self._log(run_id, metrics, params, [RunTag(k, v) for k, v in tags.items()])
        end = trial.datetime_complete
        client.set_terminated(run_id, STATUS[trial.state], end_time=int(end.timestamp() * 1000) if end else None)

    def _final_after_curve(
        self, run_id: str, name: str, value: float, curve: tuple[list[int], list[float]], now: int
    ) -> list[Any]:
        """A final value named as a reported curve: when it differs from the curve's last point (an objective
        that returns the best epoch's value, or a final evaluation), it is logged one step past the curve's
        last, as MLflow's own Keras autologging logs the restored epoch's metrics, so that the run's value
        of ``name`` (MLflow's latest: the highest step) is the trial's value and the curve keeps every point.
        Nothing when it equals the last point, or when it is logged already."""
        steps, values = curve
        if not steps:
            return []
        last = max(range(len(steps)), key=lambda i: steps[i])
        if float(values[last]) == float(value) or (math.isnan(value) and math.isnan(values[last])):
            return []
        step = int(steps[last]) + 1
        if any(m.step == step for m in self._connect().get_metric_history(run_id, name)):
            return []
        return [Metric(name, float(value), now + 1, step)]

    def _missing_points(
        self, run_id: str, logged: Mapping[str, float], curves: Mapping[str, tuple[list[int], list[float]]], now: int
    ) -> Iterable[Any]:
        """The curve points the run does not hold yet (those logged live are kept as they are)."""
        client = self._connect()
        for curve, (steps, values) in curves.items():
            name = mlflow_name(curve)
            have = {m.step for m in client.get_metric_history(run_id, name)} if name in logged else set()
            for step, value in zip(steps, values, strict=True):
                if step not in have:
                    yield Metric(name, float(value), now, int(step))

    def _close_left_over(
        self, study: Study, experiment: str, parent: str | None, names: Sequence[str], but: int
    ) -> None:
        """Complete the runs left RUNNING whose trials have finished (the process that ran the
        ``optimize`` callbacks died before writing them)."""
        key = study_key(study)
        running = self._search(
            experiment,
            f"tags.`{KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'trial' and attributes.status = 'RUNNING'",
        )
        for run in running:
            number = int(run.data.tags[TRIAL_TAG])
            if number == but:
                continue
            trial = study.get_trial(number)
            if trial.state in FINISHED:
                self._runs[(key, number)] = run.info.run_id
                self._write_end(study, experiment, parent, trial, names)

    def _search(self, experiment: str, filter_string: str) -> list[Any]:
        client = self._connect()
        runs: list[Any] = []
        token = None
        while True:
            page = client.search_runs([experiment], filter_string=filter_string, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        client = self._connect()
        rounds = max(
            -(-len(metrics) // _BATCH["metrics"]), -(-len(params) // _BATCH["params"]), -(-len(tags) // _BATCH["tags"])
        )
        for i in range(rounds):
            client.log_batch(
                run_id,
                metrics=metrics[i * _BATCH["metrics"]:(i + 1) * _BATCH["metrics"]],
                params=params[i * _BATCH["params"]:(i + 1) * _BATCH["params"]],
                tags=tags[i * _BATCH["tags"]:(i + 1) * _BATCH["tags"]],
            )


def _check_sqlite_store(tracking_uri: str | None) -> None:
    """ConfigError when an SQLite tracking store (``sqlite:///<path>``) cannot be written: its folder is
    missing, or it or its folder is read-only. MLflow itself retries opening such a file for minutes and
    then fails with SQLAlchemy's ``unable to open database file``, or fails at the first trial's write."""
    uri = tracking_uri if tracking_uri is not None else str(get_tracking_uri())
    if not uri.startswith("sqlite:///"):
        return
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return
    file = Path(path)
    folder = file.parent
    if not folder.is_dir():
        raise ConfigError(f"MLflowCallback(tracking_uri={uri!r}): the folder {str(folder)!r} of the SQLite file does "
                          "not exist; create it or give a path in an existing folder")
    target = file if file.exists() else folder
    if not os.access(target, os.W_OK):
        raise ConfigError(f"MLflowCallback(tracking_uri={uri!r}): {str(target)!r} is read-only; give an SQLite "
                          "file this process can write")
    try:
        sqlite3.connect(file).close()  # made when missing, as MLflow would
    except sqlite3.Error as e:
        raise ConfigError(f"MLflowCallback(tracking_uri={uri!r}): the SQLite file cannot be opened ({e}); give an "
                          "SQLite file this process can write") from None


def _check_active(experiment: Any, name: str) -> None:
    """A ConfigError when ``experiment`` (named ``name``) is deleted: MLflow writes no run into it."""
    if experiment is None or experiment.lifecycle_stage != "deleted":
        return
    number = experiment.experiment_id
    raise ConfigError(
        f"MLflowCallback: the MLflow experiment {name!r} (id {number}) is deleted, and MLflow writes no run into "
        f"a deleted experiment; restore it (MlflowClient(tracking_uri).restore_experiment({number!r}), or "
        f"mlflow experiments restore --experiment-id {number}), delete it for good (mlflow gc), or pass "
        "another experiment_name"
    )


def _oldest(runs: Sequence[Any]) -> str | None:
    if not runs:
        return None
    return str(min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["STATUS", "MLflowCallback", "mlflow_name", "study_key"]
