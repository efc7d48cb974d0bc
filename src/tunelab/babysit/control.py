"""Control verbs of babysitting: change a running trial's hyperparameters, ask it to stop, branch it.

Each composes the study's public API and the records of :mod:`tunelab.live`; any process that
opens the study may call them (``tunelab set``, ``tunelab rollback``, the dashboard's buttons),
while the training loop applies what they ask at its next step.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from datetime import datetime, timezone

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, TrialStateError
from tunelab.live import (
    BRANCH,
    BRANCH_KINDS,
    LIVE_NAMES,
    LIVE_REQUESTS,
    STOP_REQUESTED,
    check_live_values,
    new_request,
    params_at,
    read_checkpoint_params,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study


def request_stop(study: Study, number: int) -> None:
    """Ask RUNNING trial ``number`` to stop, from any process (the dashboard's stop button).

    Records ``system_attrs["stop_requested"]``; the trial sees it at its next
    ``trial.should_prune()``, which then returns True (rule "stopped on request"), and
    the objective raises TrialPruned as for any pruning. TrialStateError if the trial is not
    RUNNING, TrialNotFoundError if there is no such trial.
    """
    trial = _running_trial(study, number, "only a RUNNING trial can be asked to stop")
    at = datetime.now(timezone.utc).isoformat()
    study.storage.update_trial(trial.trial_id, system_attrs={STOP_REQUESTED: {"at": at}})


def set_live(
    study: Study, number: int, values: Mapping[str, ParamValue], *, source: str = "api", note: str | None = None
) -> int:
    """Change hyperparameters of RUNNING trial ``number`` while it trains, from any process
    (``tunelab set``, the dashboard); return the request's index in the trial's
    ``system_attrs["live_requests"]``.

    The values are checked now against the trial's parameters (names the training loop
    declared live, else the trial's own; each value of its parameter's kind). The trial applies
    them at its next ``trial.sync_live(step)`` / ``trial.live(name, step)`` and records that step.
    Requests from several processes at once are all kept, in order (an atomic append).
    TrialStateError for a finished trial (roll back to one of its checkpoints instead),
    TrialNotFoundError for an unknown one, ConfigError for a bad name or value.
    """
    if not isinstance(source, str) or not source:
        raise ConfigError(f"set_live(source=...) must be a non-empty string, got {source!r}")
    trial = _running_trial(
        study, number, f"its hyperparameters can no longer change: roll back to one of its checkpoints "
        f"(tunelab rollback {study.name} --trial {number} --to STEP --set ...)"
    )
    names = trial.system_attrs.get(LIVE_NAMES)
    clean = check_live_values(values, params=trial.params, distributions=trial.distributions,
                              live_names=names, number=number)
    return study.storage.append_trial_event(trial.trial_id, LIVE_REQUESTS, new_request(clean, source, note))


def branch(
    study: Study,
    number: int,
    step: int,
    values: Mapping[str, ParamValue] | None = None,
    *,
    kind: str = "rollback",
    note: str | None = None,
) -> int:
    """Queue a branch of trial ``number`` that starts from its checkpoint at ``step``, with
    ``values`` changed; return the branch's trial number (the next ``ask()`` claims it).

    The branch's parameters are those the checkpoint was written with (its
    ``tunelab-params.json``; else the trial's schedule at ``step``) with ``values`` laid over,
    checked as :func:`set_live` checks them. The checkpoint is copied into the branch's own
    folder, so the parent's clean-up cannot take it away; ``trial.resume_from`` gives it to
    the training loop and ``system_attrs["branch"]`` records parent, step, kind ('rollback',
    or 'resume' after a crash), the changed values and the note. The parent is left as it is
    (``tunelab rollback`` also asks a running parent to stop). ConfigError when the trial keeps
    no checkpoint at ``step``, TrialNotFoundError for an unknown trial.
    """
    if kind not in BRANCH_KINDS:
        raise ConfigError(f"branch(kind=...) must be one of {BRANCH_KINDS}, got {kind!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ConfigError(f"branch(step=...) must be a checkpoint's step (an integer >= 0), got {step!r}")
    step = int(step)  # a numpy integer too: the branch record is JSON
    parent = study.get_trial(number)
    start = study.checkpoint_store.snapshot(number, step)  # ConfigError when not kept
    params = read_checkpoint_params(start.path) or params_at(parent, step)
    changed = {} if not values else check_live_values(
        values, params={**parent.params, **params}, distributions=parent.distributions, live_names=None,
        number=number,
    )
    record = {"parent": number, "step": step, "checkpoint": str(start.path), "set": changed, "kind": kind,
              "at": datetime.now(timezone.utc).isoformat(), "note": note}
    dists = {k: d for k, d in parent.distributions.items() if k in params or k in changed}
    trial = study.storage.create_trial(
        study.study_id, TrialState.WAITING, params={**params, **changed}, distributions=dists,
        system_attrs={"enqueued": True, BRANCH: record},
    )
    return trial.number


def _running_trial(study: Study, number: int, why: str) -> FrozenTrial:
    """Trial ``number`` if RUNNING; TrialStateError (ending with ``why``) or TrialNotFoundError."""
    trial = study.get_trial(number)
    if trial.state != TrialState.RUNNING:
        raise TrialStateError(f"trial {number} is {trial.state.value}; {why}")
    return trial
