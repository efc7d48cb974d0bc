"""A babysat run: one training run whose hyperparameters a person changes while it trains, and
which they roll back and branch; trained one branch after another by :func:`train_run`.

A run is a study marked ``system_attrs["run"]`` whose trial 0 is the run's start (its params
enqueued by :func:`create_run`) and whose later trials are *branches* (:func:`~tunelab.babysit.control.branch`): a
roll-back to a checkpoint with changed values, or the resumption of a branch whose process died.
Branches wait (WAITING) until the training process claims them; only one trains at a time::

    study = create_run("cnn", {"lr": 1e-3, "dropout": 0.2}, storage="sqlite:///runs.db")
    train_run(study, trainer, epochs=30)          # in the training process (or a script)
    # elsewhere: tunelab set cnn lr=3e-4 / tunelab rollback cnn --to 12 --set lr=1e-4

The checkpoints of a run are kept when a branch finishes (``CheckpointPolicy(keep_finished=True)``)
so that any branch can be rolled back into later, and while it trains a log-spaced history stays
beside the newest three (``keep_log_spaced=True``: steps 1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so that
one can go back to where things went wrong, not only to the last few steps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tunelab.babysit.control import branch
from tunelab.checkpoints import CheckpointPolicy
from tunelab.distributions import ParamValue, plain_value
from tunelab.errors import ConfigError
from tunelab.live import BRANCH
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers import RandomSampler
from tunelab.study import Study, Trial, create_study
from tunelab.study.runner import OptimizeSettings, TrialOutcome, run_trial

if TYPE_CHECKING:  # PyTorch loads only when a run trains: `tunelab set`, the tree and the dashboard need none
    from tunelab.torch import Trainer, TrainObjective

logger = logging.getLogger("tunelab")

RUN = "run"
"""Study system attribute that marks a babysat run: ``{"params", "created_at", "metric"}`` (``metric``: the
metric its value is, e.g. the Trainer's monitor ``val_acc``, when :func:`create_run` was told)."""

DEFAULT_RUN_POLICY = CheckpointPolicy(keep_last=3, keep_finished=True, keep_log_spaced=True)
"""What a babysat run keeps: the 3 newest checkpoints of each branch, a log-spaced history of the older ones
(to roll back to where things went wrong), and all of them when the branch finishes."""

# Errors of a FAIL trial whose process died or was stopped rather than failing by itself (a
# crash, SIGKILL, a lost heartbeat, Ctrl-C): the run goes on from its newest checkpoint.
_DIED = ("interrupted", "heartbeat lost", "worker process died", "killed by", "was killed", "lost")


def create_run(
    name: str,
    params: Mapping[str, ParamValue],
    *,
    storage: Any,
    direction: str = "minimize",
    checkpoint_policy: CheckpointPolicy | None = None,
    artifact_dir: Any = None,
    metric: str | None = None,
) -> Study:
    """Create a babysat run: a study marked as one (``system_attrs["run"]``) with ``params``
    enqueued as trial 0, the run's start.

    Args:
        name: the run's name (unique in the storage).
        params: the run's starting hyperparameters (``lr`` at least, for :class:`~tunelab.torch.Trainer`).
        storage: a storage URL (``'sqlite:///runs.db'``: the training process, ``tunelab set`` and the
            dashboard share it) or a storage object; None keeps it in memory (this process only).
        direction: of the objective's value (the trainer's ``monitor``: 'maximize' for accuracy).
        checkpoint_policy: default ``CheckpointPolicy(keep_last=3, keep_finished=True, keep_log_spaced=True)``:
            each branch keeps its 3 newest checkpoints and a log-spaced history of the older ones (the first
            at or after steps 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ...: at most ``2 * log2(N)`` more for
            N steps, so 15 checkpoints for an 80-epoch branch instead of 3, 22 for 1,000 steps), and keeps
            them when it finishes, so one can roll back to any of them later. A checkpoint of the built-in
            digits CNN (its weights and AdamW's state) is about 0.9 MB: 13 MB for an 80-epoch branch.
        artifact_dir: where the run's checkpoints go (see :func:`tunelab.create_study`).
        metric: the reported metric the run's value is (the Trainer's ``monitor``, e.g. ``'val_acc'``), which
            ``tunelab tree`` and the dashboard show with ``direction``; None: read from the branches (the
            metric whose curve holds a COMPLETE branch's value).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"create_run(name=...) must be a non-empty string, got {name!r}")
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(
            f"create_run(params=...) must be a non-empty mapping of hyperparameter -> value, e.g. "
            f"{{'lr': 1e-3}}, got {params!r}"
        )
    params = {k: plain_value(v) for k, v in params.items()}  # numpy numbers (np.float32(1e-3)) as Python ones
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"create_run(params=...): names must be non-empty strings, got {key!r}")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"create_run(params=...): {key}={value!r} must be a number, a string, a bool or None"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"create_run(params=...): {key}={value!r} must be finite")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError(f"create_run(metric=...) must be a metric name such as 'val_acc', or None, got {metric!r}")
    if checkpoint_policy is None:
        checkpoint_policy = DEFAULT_RUN_POLICY
    elif not isinstance(checkpoint_policy, CheckpointPolicy):
        raise ConfigError(
            "create_run(checkpoint_policy=...) must be a tunelab.checkpoints.CheckpointPolicy, "
            f"got {checkpoint_policy!r}"
        )
    # The sampler never decides anything: train_run only trains enqueued trials (the run and its branches).
    study = create_study(name=name, storage=storage, direction=direction, sampler=RandomSampler(), seed=0,
                         artifact_dir=artifact_dir, checkpoint_policy=checkpoint_policy)
    record: dict[str, Any] = {"params": dict(params), "created_at": _now()}
    if metric is not None:
        record["metric"] = metric
    study.set_system_attr(RUN, record)
    study.enqueue(params)
    return study


@dataclass
class _BranchObjective:
    """The trainer's objective with live hyperparameters, polling the storage every ``poll_seconds``."""

    inner: TrainObjective
    poll_seconds: float

    def __call__(self, trial: Trial) -> float | tuple[float, ...]:
        trial.live_poll_seconds = self.poll_seconds
        return self.inner(trial)


def train_run(
    study: Study,
    trainer: Trainer,
    *,
    epochs: int,
    seed: int = 0,
    eval_every: int | None = None,
    checkpoint_every: int = 1,
    poll_seconds: float = 0.5,
    until_idle: bool = True,
    heartbeat_interval: float = 2.0,
    grace_period: float | None = None,
) -> list[int]:
    """Train the run's branches one after another in this process; return the numbers trained.

    Claims the next WAITING branch (the run's start, a roll-back), trains it with
    ``trainer.fit(live=True)`` from the branch's checkpoint (``trial.resume_from``) for the rest of
    ``epochs``, and records it as any trial is (COMPLETE with the best monitored value; FAIL on an
    error or NaN; PRUNED when stopped: a person who rolls back stops the branch it replaces, and
    the loop goes on to the new one). Heartbeats run while a branch trains.

    First, if the newest branch died (its process killed or its heartbeat lost: FAIL with such a
    reason, or RUNNING with a heartbeat older than ``grace_period``), queues its resumption,
    ``branch(study, dead, newest kept checkpoint, kind="resume")``, and trains it: the curve goes on
    exactly where the dead branch's last checkpoint left it.

    Args:
        epochs: the run's length, counted from its start (a branch from epoch 12 trains the rest).
        seed: of the run's start (a branch restores every RNG state from its checkpoint).
        eval_every: as in :meth:`Trainer.fit`.
        checkpoint_every: as in :meth:`Trainer.fit` (a checkpoint per evaluation by default).
        poll_seconds: how often, at most, a training branch reads the storage for changes.
        until_idle: return once no branch waits; False: keep waiting for new branches (roll-backs
            of a finished run), every ``poll_seconds``, until interrupted (Ctrl-C).
        heartbeat_interval: seconds between a branch's signs of life.
        grace_period: a branch silent for this long (default 3 intervals) counts as dead.
    """
    if not isinstance(study, Study):
        raise ConfigError(f"train_run(study=...) needs a Study (from create_run), got {study!r}")
    if RUN not in study.system_attrs:
        raise ConfigError(
            f"study {study.name!r} is not a babysat run; create it with tunelab.babysit.create_run(...)"
        )
    from tunelab.torch import Trainer

    if not isinstance(trainer, Trainer):
        raise ConfigError(f"train_run(trainer=...) needs a tunelab.torch.Trainer, got {trainer!r}")
    if isinstance(poll_seconds, bool) or not isinstance(poll_seconds, (int, float)) or not poll_seconds >= 0:
        raise ConfigError(f"train_run(poll_seconds=...) must be a number of seconds >= 0, got {poll_seconds!r}")
    if not isinstance(until_idle, bool):
        raise ConfigError(f"train_run(until_idle=...) must be True or False, got {until_idle!r}")
    settings = OptimizeSettings.build(
        n_trials=1, timeout=None, n_workers=1, space=None, catch=(Exception,), trial_timeout=None,
        callbacks=(), show_progress=False, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
        requeue_lost_trials=False, start_method="spawn", executor=None,
    )
    objective = _BranchObjective(
        trainer.objective(epochs=epochs, seed=seed, eval_every=eval_every, checkpoint_every=checkpoint_every,
                          live=True),
        float(poll_seconds),
    )
    study_id = study.storage.get_study(study.name).study_id
    assert settings.grace_period is not None
    resume_dead_branch(study, settings.grace_period)
    trained: list[int] = []
    while True:
        claimed = study.storage.claim_waiting_trial(study_id, heartbeat=True)
        if claimed is None:
            if until_idle:
                return trained
            try:
                time.sleep(poll_seconds)
            except KeyboardInterrupt:
                return trained
            continue
        outcome: TrialOutcome = run_trial(study, objective, settings, trial_id=claimed.trial_id)
        trained.append(outcome.number)
        logger.info("branch %d ended %s", outcome.number, outcome.state)


def resume_dead_branch(study: Study, grace_period: float) -> int | None:
    """If the run's newest branch died, queue its resumption and return the new branch's number.

    RUNNING branches silent for ``grace_period`` seconds are marked FAIL first (heartbeat lost).
    The resumption starts from the dead branch's newest kept checkpoint; one that died before its
    first checkpoint starts again where it started (its own branch point, or afresh for the run's start).
    """
    study_id = study.storage.get_study(study.name).study_id
    study.storage.fail_stale_trials(study_id, grace_period)
    trials = study.trials
    if not trials:
        return None
    dead = trials[-1]
    if dead.state != TrialState.FAIL or not _died(dead):
        return None
    reason = (dead.error or "").strip().splitlines()[0] if dead.error else "died"
    note = f"trial {dead.number} died ({reason}); resumed"
    kept = study.checkpoints(dead.number)
    if kept:
        number = branch(study, dead.number, kept[-1].step, kind="resume", note=note)
    else:
        record = dead.system_attrs.get(BRANCH)
        system_attrs: dict[str, Any] = {"enqueued": True, "retry_of": dead.number}
        if isinstance(record, Mapping):  # start again from the same copied checkpoint
            system_attrs[BRANCH] = {**record, "parent": dead.number, "kind": "resume", "set": {},
                                    "at": _now(), "note": note}
        number = study.storage.create_trial(
            study_id, TrialState.WAITING, params=dict(dead.params), distributions=dict(dead.distributions),
            system_attrs=system_attrs,
        ).number
    logger.warning("%s as trial %d", note, number)
    return number


def _died(trial: FrozenTrial) -> bool:
    error = (trial.error or "").strip()
    return any(error.startswith(d) or d in error.splitlines()[0] for d in _DIED) if error else False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


__all__ = ["DEFAULT_RUN_POLICY", "RUN", "create_run", "resume_dead_branch", "train_run"]
