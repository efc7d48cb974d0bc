"""``tunelab worker``: join an existing study from this host and run its trials (see docs/distributed.md)."""

from __future__ import annotations

import collections
from typing import Annotated, Any

import typer

from tunelab.cli.imports import import_objective
from tunelab.cli.main import (
    DEFAULT_STORAGE,
    ImportPathOption,
    NWorkersOption,
    ObjectiveOption,
    StorageOption,
    _cli_errors,
    _fmt,
    _open,
    _out,
    app,
    sigterm_as_ctrl_c,
)
from tunelab.errors import TrialNotFoundError
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study, load_study


class _Tally:
    """The trials this worker finished, by state (an optimize() callback)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[TrialState] = collections.Counter()

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL and (trial.error or "").startswith("interrupted"):
            return  # stopped by Ctrl-C: reported as "running trials recorded", whatever ran them
        self.counts[trial.state] += 1


def _worker_summary(study: Study, tally: _Tally, interrupted: bool) -> str:
    c = tally.counts
    ran = (
        f"this worker ran {sum(c.values())} trials ({c[TrialState.COMPLETE]} complete, "
        f"{c[TrialState.FAIL]} failed, {c[TrialState.PRUNED]} pruned)"
    )
    if study.is_multi_objective:  # no single best trial: the size of the front
        front = study.best_trials
        best_text = (f"Pareto front of study {study.name!r}: {len(front)} trial(s) (tunelab best {study.name})"
                     if front else f"study {study.name!r} has no feasible COMPLETE trial yet")
    else:
        try:
            best = study.best_trial
            best_text = f"best value of study {study.name!r}: {_fmt(best.value)} (trial {best.number})"
        except TrialNotFoundError:
            complete = study.get_trials([TrialState.COMPLETE])
            best_text = (f"study {study.name!r} has no feasible COMPLETE trial yet (each of its {len(complete)} "
                         "COMPLETE trials violates a constraint)" if complete
                         else f"study {study.name!r} has no COMPLETE trial yet")
    if interrupted:
        return f"interrupted: {ran}, its running trials are recorded as FAIL; {best_text}"
    return f"done: {ran}; {best_text}"


@app.command()
def worker(
    study_name: Annotated[
        str, typer.Option("--study", metavar="NAME", show_default=False, help="The study to join; it must exist.")
    ],
    objective: ObjectiveOption,
    storage: StorageOption = DEFAULT_STORAGE,
    path: ImportPathOption = None,
    n_trials: Annotated[
        int | None,
        typer.Option(
            "--n-trials", min=1, show_default=False, help="Trials to run (default: until Ctrl-C or --timeout)."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", metavar="SECONDS", show_default=False, help="Start no trial after this many seconds."
        ),
    ] = None,
    n_workers: NWorkersOption = 1,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            "--trial-timeout", metavar="SECONDS", show_default=False,
            help="Kill a trial's process after this many seconds and mark the trial FAIL.",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float | None,
        typer.Option(
            "--heartbeat-interval", metavar="SECONDS", show_default=False,
            help="Seconds between signs of life of a running trial (default: 10).",
        ),
    ] = None,
    grace_period: Annotated[
        float | None,
        typer.Option(
            "--grace-period", metavar="SECONDS", show_default=False,
            help="Mark FAIL any trial of the study silent this long (default: 3 x heartbeat interval).",
        ),
    ] = None,
    requeue_lost_trials: Annotated[
        bool, typer.Option("--requeue-lost-trials", help="Enqueue the parameters of such lost trials again.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show a progress bar (default: when stdout is a terminal)."),
    ] = None,
) -> None:
    """Join an existing study from this host and run trials until done, --timeout or Ctrl-C.

    Uses the sampler stored with the study. Start one worker per host against a shared
    storage (e.g. PostgreSQL); see docs/distributed.md.
    """
    seconds = {"--timeout": timeout, "--trial-timeout": trial_timeout, "--heartbeat-interval": heartbeat_interval,
               "--grace-period": grace_period}
    for option, value in seconds.items():  # named as the option, before the header and optimize's Python names
        if value is not None and not value > 0:
            raise typer.BadParameter(f"must be a positive number of seconds, got {value}", param_hint=f"'{option}'")
    with _cli_errors():
        fn = import_objective(objective, path or ())
    with _open(storage) as store:
        study = load_study(study_name, store)  # rebuilds the sampler stored with the study
        console = _out()
        until = [f"{n_trials} trials"] if n_trials is not None else []
        until += [f"{timeout:g}s"] if timeout is not None else []
        console.print(
            f"worker: study {study.name!r} ({', '.join(study.directions)}, {type(study.sampler).__name__}), "
            f"objective {objective}, {n_workers} trial{'s' if n_workers > 1 else ''} at a time, "
            + (f"stopping after {' or '.join(until)}" if until else "until Ctrl-C"),
            markup=False, highlight=False,
        )
        tally = _Tally()
        heartbeat: dict[str, Any] = {} if heartbeat_interval is None else {"heartbeat_interval": heartbeat_interval}
        try:
            with sigterm_as_ctrl_c():  # kill, docker stop
                study.optimize(
                    fn, n_trials=n_trials, timeout=timeout, n_workers=n_workers, trial_timeout=trial_timeout,
                    callbacks=[tally], show_progress=progress, grace_period=grace_period,
                    requeue_lost_trials=requeue_lost_trials, **heartbeat,
                )
        except KeyboardInterrupt:
            console.print(_worker_summary(study, tally, interrupted=True), markup=False, highlight=False)
            raise
        console.print(_worker_summary(study, tally, interrupted=False), markup=False, highlight=False)
