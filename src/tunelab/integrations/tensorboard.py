"""Every trial a TensorBoard run: its curves as scalars, and a row of the HParams table.

``TensorBoardCallback(log_dir)`` is an ordinary :meth:`tunelab.Study.optimize` callback: after each
finished trial (in the process that called ``optimize``, also with ``n_workers > 1``) it writes
``<log_dir>/trial-<number>/``: every curve the trial reported (``study.get_curves``) as scalars at
their steps, the final value(s) under ``metric_name``, and the trial's row of the HParams plugin's
table (its parameters, ``trial_state``, and the session status: COMPLETE and PRUNED: success,
FAIL: failure; TensorBoard has no status for a trial stopped early, so PRUNED is a success there
and ``trial_state`` tells). ``<log_dir>`` itself holds the table's columns: each parameter with its domain from
the study's distributions. ``cb.report(trial, step, **metrics)`` used inside the objective instead of
``trial.report`` also writes the scalars as they come (from the worker process that runs the
trial), so curves grow while the trial trains; the end of the trial adds only what is missing::

    cb = TensorBoardCallback("runs/")

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for epoch in range(10):
            cb.report(trial, epoch, val_loss=...)   # trial.report + live scalars
        return val_loss

    study.optimize(objective, n_trials=20, n_workers=2, callbacks=[cb])

Then ``tensorboard --logdir runs/``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from itertools import count
from pathlib import Path
from typing import Any, BinaryIO

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.integrations._common import check_trial, require
from tunelab.integrations._tracking import (
    FINISHED,
    check_metric_name,
    constraint_metrics,
    final_values,
    study_key,
    value_names,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study, Trial

require("tensorboard", "tensorboard", "tunelab.integrations.tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.proto.event_pb2 import Event  # noqa: E402
from tensorboard.compat.proto.summary_pb2 import Summary  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2  # noqa: E402
from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402

#: The pseudo-hyperparameter of the HParams table that shows how each trial ended.
STATE_COLUMN = "trial_state"
#: The HParams session status of each final state.
STATUS = {
    TrialState.COMPLETE: api_pb2.STATUS_SUCCESS,
    TrialState.PRUNED: api_pb2.STATUS_SUCCESS,  # stopped early on purpose: the trial_state column says PRUNED
    TrialState.FAIL: api_pb2.STATUS_FAILURE,
}
#: The name of the file in ``log_dir`` that holds the HParams table's columns ends so; each update
#: writes a new one (its name sorts after the older ones) and deletes the older ones.
CONFIG_SUFFIX = ".tunelab-hparams"
_files = count()


class TensorBoardCallback:
    """Write every trial of a study as a TensorBoard run with its HParams row.

    Args:
        log_dir: the folder to point ``tensorboard --logdir`` at; trial ``n`` writes ``trial-<n>/``.
            Every process of the study (worker processes using :meth:`report`) must reach it.
            It is made at construction: one that cannot be written is a ConfigError then.
        metric_name: the scalar tag of the final value (default ``"value"``); for a study with several
            objectives, one name per objective (default: the study's objective names). A name that is
            also a reported curve is not written again: the curve holds it.
    """

    def __init__(self, log_dir: str | os.PathLike[str], metric_name: str | Sequence[str] = "value") -> None:
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ConfigError(f"log_dir must be a folder path such as 'runs/', got {log_dir!r}")
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ConfigError(f"log_dir={str(log_dir)!r} is a file; give a folder for TensorBoard's runs")
        try:  # a folder that cannot be written fails now, not in the callback after the first trial's training
            self.log_dir.mkdir(parents=True, exist_ok=True)
            probe = self.log_dir / f".tunelab-probe.{os.getpid()}.{id(self)}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise ConfigError(
                f"log_dir={str(log_dir)!r} cannot be written ({e.strerror or e}); give a folder this process can "
                "create and write"
            ) from None
        self.metric_name = check_metric_name(metric_name)
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "metric_name": self.metric_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _reset(self) -> None:
        self._live: dict[tuple[str, int], _EventFile] = {}  # (study key, trial number) -> this process's open file
        self._columns: dict[str, Distribution | None] = {}  # hparam -> its merged distribution (None: mixed)
        self._seen_studies: set[str] = set()

    def run_dir(self, number: int) -> Path:
        """The run folder of trial ``number``."""
        return self.log_dir / f"trial-{number}"

    # -- the two hooks ---------------------------------------------------------------------------
    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Complete the finished ``trial``'s run and the HParams table (an ``optimize`` callback)."""
        names = value_names(self.metric_name, study, "TensorBoardCallback")
        if trial.state not in FINISHED:
            return
        key = study_key(study)
        live = self._live.pop((key, trial.number), None)
        if live is not None:
            live.close()
        if study.name not in self._seen_studies:  # trials of earlier optimize calls count in the columns
            self._seen_studies.add(study.name)
            for earlier in study.get_trials(FINISHED):
                self._add_columns(earlier)
        self._add_columns(trial)
        self._write_end(study, trial, names, key)
        self._write_columns(names)

    def report(self, trial: Trial, step: int, **metrics: float) -> None:
        """``trial.report(step, **metrics)``, and the metrics written as scalars of the trial's run now.

        Call it in the objective instead of ``trial.report``: the run's curves then grow while the
        trial trains. The end of the trial adds what is missing, without duplicates.
        """
        checked = check_trial(trial, "TensorBoardCallback.report")
        checked.report(step, **metrics)
        value_names(self.metric_name, checked.study, "TensorBoardCallback")  # a bad metric_name fails now
        mine = (study_key(checked.study), checked.number)
        for other in [k for k in self._live if k != mine]:  # this process ran them: they ended
            self._live.pop(other).close()
        if mine not in self._live:
            self._live[mine] = _EventFile.new(self.run_dir(checked.number), study=mine[0])
        live = self._live[mine]
        live.write(_scalars(step, {k: float(v) for k, v in metrics.items()}))
        live.flush()

    # -- writing ----------------------------------------------------------------------------------
    def _write_end(self, study: Study, trial: FrozenTrial, names: Sequence[str], key: str) -> None:
        run_dir = self.run_dir(trial.number)
        have = _written_steps(run_dir, key)
        curves = study.get_curves(trial.number)
        out = _EventFile.new(run_dir, after_existing=True, study=key)
        try:
            for name, (steps, values) in curves.items():
                for step, value in zip(steps, values, strict=True):
                    if step not in have.get(name, ()):
                        out.write(_scalars(step, {name: float(value)}))
            last = max((max(s) for s, _ in curves.values() if s), default=0)
            ends = {**final_values(trial, names), **constraint_metrics(trial)}
            finals = {k: v for k, v in ends.items() if k not in curves}
            if finals:
                out.write(_scalars(last, finals))
            start = trial.datetime_start.timestamp() if trial.datetime_start else None
            hparams = {k: _hparam_value(self._columns.get(k), v) for k, v in trial.params.items()}
            hparams[STATE_COLUMN] = trial.state.value
            out.write(_event(_session_start(hparams, run_dir.name, start)))
            end = trial.datetime_complete.timestamp() if trial.datetime_complete else time.time()
            ended = plugin_data_pb2.SessionEndInfo(status=STATUS[trial.state], end_time_secs=end)
            out.write(_event(_hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=ended), step=last))
        finally:
            out.close()

    def _add_columns(self, trial: FrozenTrial) -> None:
        for name, dist in trial.distributions.items():
            if name not in self._columns:
                self._columns[name] = dist
            else:
                self._columns[name] = _merge(self._columns[name], dist)

    def _write_columns(self, names: Sequence[str]) -> None:
        """Rewrite ``log_dir``'s HParams experiment: every parameter with its domain, the metrics."""
        infos = [_hparam_info(name, dist) for name, dist in sorted(self._columns.items())]
        infos.append(_discrete(STATE_COLUMN, api_pb2.DATA_TYPE_STRING, [s.value for s in FINISHED]))
        metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=n)) for n in names]
        experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time())
        event = _event(_hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        older = sorted(self.log_dir.glob(f"events.out.tfevents.*{CONFIG_SUFFIX}"))
        part = self.log_dir / f".tunelab-hparams.{os.getpid()}.part"  # not an event file's name until complete
        config = _EventFile(part)
        config.write(event)
        config.close()
        os.replace(part, self.log_dir / f"events.out.tfevents.{time.time_ns():020d}{CONFIG_SUFFIX}")
        for path in older:
            path.unlink(missing_ok=True)


class _EventFile:
    """One TensorBoard event file, written synchronously (what is flushed survives a crash)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(path, "wb")
        self._records = RecordWriter(self._file)
        self.write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    @classmethod
    def new(cls, folder: Path, after_existing: bool = False, study: str = "") -> _EventFile:
        """A new file in ``folder``, named as TensorBoard's writers name theirs (unique per process),
        ending with ``study``'s key: the files of another study's trial of the same number (an earlier
        study writing to the same ``log_dir``) are told apart.

        With ``after_existing`` its name sorts after the files there (a TensorBoard that is running
        reads a folder's files in the order of their names, and never goes back).
        """
        stamp = int(time.time())
        if after_existing and folder.is_dir():
            stamps = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")
                      if p.name.split(".")[3].isdigit()]
            stamp = max([stamp, *(s + 1 for s in stamps)])
        name = f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}.{next(_files)}.{study}"
        return cls(folder / name)

    def write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._records.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._records.flush()
            self._records.close()


def _event(summary: Any, step: int = 0) -> Any:
    return Event(wall_time=time.time(), step=step, summary=summary)


def _scalars(step: int, values: Mapping[str, float]) -> Any:
    return _event(Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()]), int(step))


def _hparams_summary(tag: str, **data: Any) -> Any:
    """A summary holding HParams plugin data (what ``tensorboard.plugins.hparams`` writes, without TensorFlow)."""
    summary = Summary()
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**data))
    summary.value.add(tag=tag, metadata=content, tensor=metadata.NULL_TENSOR)
    return summary


def _session_start(hparams: Mapping[str, bool | float | str], group: str, start: float | None) -> Any:
    """The HParams row of a trial: its values, in the session group named after its run."""
    info = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=start or time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = value
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=info)


def _written_steps(run_dir: Path, key: str) -> dict[str, set[int]]:
    """The steps of each scalar already in ``run_dir`` for the study of ``key`` (written live by
    :meth:`TensorBoardCallback.report`); another study's files there are not read."""
    if not run_dir.is_dir():
        return {}
    have: dict[str, set[int]] = {}
    for path in sorted(run_dir.glob(f"events.out.tfevents.*.{key}")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0}, purge_orphaned_data=False)
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            have.setdefault(tag, set()).update(e.step for e in acc.Scalars(tag))
    return have


def _merge(a: Distribution | None, b: Distribution) -> Distribution | None:
    """One distribution covering ``a`` and ``b`` (a range grown by a sampler), or None when they differ in kind."""
    if a is None or type(a) is not type(b):
        return None
    if isinstance(a, Float) and isinstance(b, Float):
        return Float(min(a.low, b.low), max(a.high, b.high), log=a.log and b.log)
    if isinstance(a, Int) and isinstance(b, Int):
        return Int(min(a.low, b.low), max(a.high, b.high), log=a.log and b.log)
    if isinstance(a, Categorical) and isinstance(b, Categorical):
        return Categorical(tuple(dict.fromkeys((*a.choices, *b.choices))))
    return a


def _choices_type(choices: Sequence[ParamValue]) -> int:
    if all(isinstance(c, bool) for c in choices):
        return int(api_pb2.DATA_TYPE_BOOL)
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        return int(api_pb2.DATA_TYPE_FLOAT64)
    return int(api_pb2.DATA_TYPE_STRING)


def _hparam_info(name: str, dist: Distribution | None) -> Any:
    """The HParams column of a parameter: its type and domain, from its distribution."""
    if isinstance(dist, (Float, Int)):
        return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64,
                                  domain_interval=api_pb2.Interval(min_value=dist.low, max_value=dist.high))
    if isinstance(dist, Bool):
        return _discrete(name, api_pb2.DATA_TYPE_BOOL, [False, True])
    if isinstance(dist, Categorical):
        kind = _choices_type(dist.choices)
        values = [c if kind != api_pb2.DATA_TYPE_STRING else str(c) for c in dist.choices]
        return _discrete(name, kind, values)
    return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING)


def _hparam_value(dist: Distribution | None, value: ParamValue) -> bool | float | str:
    """A parameter's value as its HParams column's type."""
    if value is None or dist is None or _hparam_info("", dist).type == api_pb2.DATA_TYPE_STRING:
        return str(value)
    return value


def _discrete(name: str, kind: int, values: Sequence[Any]) -> Any:
    """A column whose values are listed."""
    info = api_pb2.HParamInfo(name=name, type=kind)
    info.domain_discrete.extend(values)
    return info


__all__ = ["CONFIG_SUFFIX", "STATE_COLUMN", "STATUS", "TensorBoardCallback"]
