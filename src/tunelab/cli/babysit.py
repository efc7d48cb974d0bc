"""Babysitting one run from the command line: ``tunelab train``, ``set``, ``rollback``, ``tree``,
``suggest`` and ``watch`` (registered on the app of :mod:`tunelab.cli.main`)."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from tunelab.babysit import set_live
from tunelab.cli.imports import load_trainer
from tunelab.cli.main import (
    DEFAULT_STORAGE,
    ImportPathOption,
    StorageOption,
    _cli_errors,
    _err,
    _open,
    _out,
    _read_study,
    app,
)
from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError
from tunelab.live import branch_of
from tunelab.records import DIRECTIONS, TrialState
from tunelab.storage import get_storage
from tunelab.study import Study

if TYPE_CHECKING:
    from tunelab.babysit import advice

RunArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="Name of the run (its study).", show_default=False)
]
TrialOption = Annotated[
    int | None,
    typer.Option("--trial", metavar="N", show_default=False,
                 help="The branch (trial number); default: the running one."),
]


def parse_assignment(text: str) -> tuple[str, ParamValue]:
    """``NAME=VALUE`` -> (name, value): an integer, a finite number, true/false, else the text."""
    name, eq, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not eq or not name:
        raise ConfigError(f"{text!r} is not NAME=VALUE; write e.g. lr=0.003")
    if not raw:
        raise ConfigError(f"{name}= has no value; write e.g. {name}=0.003")
    low = raw.lower()
    if low in ("true", "false"):
        return name, low == "true"
    try:
        return name, int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return name, raw
    if not math.isfinite(number):
        raise ConfigError(f"{name}={raw} is not a finite number")
    return name, number


def _values(assignments: list[str] | None) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for text in assignments or []:
        name, value = parse_assignment(text)
        out[name] = value
    return out


def _running_trial(study: Study, trial: int | None, what: str) -> int:
    """``trial``, else the run's only RUNNING branch (ConfigError listing them otherwise)."""
    if trial is not None:
        return trial
    trials = study.trials
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if len(running) == 1:
        return running[0]
    if running:
        raise ConfigError(
            f"several branches of run {study.name!r} are running ({', '.join(map(str, running))}); "
            f"say which to {what} with --trial N"
        )
    states = ", ".join(f"{t.number} {t.state.value}" for t in trials[-8:])
    raise ConfigError(
        f"no branch of run {study.name!r} is running ({states or 'it has no trials'}); "
        f"give --trial N, or roll back with `tunelab rollback {study.name} --to STEP`"
    )


def _show(values: dict[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


@app.command("set")
def set_(
    run: RunArgument,
    assignments: Annotated[
        list[str],
        typer.Argument(metavar="NAME=VALUE...", help="Hyperparameters to change, e.g. lr=0.003.", show_default=False),
    ],
    trial: TrialOption = None,
    note: Annotated[str | None, typer.Option("--note", show_default=False, help="Why (kept with it).")] = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """Change hyperparameters of a running branch while it trains (it applies them at its next step)."""
    with _cli_errors():
        values = _values(assignments)
    with _open(storage) as store:
        study = _read_study(run, store)
        number = _running_trial(study, trial, "change")
        index = set_live(study, number, values, source="cli", note=note)
    _out().print(
        f"requested {_show(values)} for trial {number} of run {run!r} (request {index}); "
        "it applies at the trial's next step", markup=False, highlight=False,
    )


@app.command()
def rollback(
    run: RunArgument,
    to: Annotated[int, typer.Option("--to", metavar="STEP", min=0, show_default=False,
                                    help="The checkpoint step to go back to (`tunelab tree RUN` lists them).")],
    trial: Annotated[
        int | None,
        typer.Option("--trial", metavar="N", show_default=False,
                     help="The branch whose checkpoint to use; default: the running one (or the newest keeping STEP)."),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="NAME=VALUE", show_default=False,
                     help="A hyperparameter to change in the new branch (repeatable)."),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", show_default=False, help="Why (kept with the branch).")] = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """Go back to a checkpoint: a new branch starts from it, with --set changes.

    A running branch it replaces is asked to stop, so the run's training process moves on to the new one.
    """
    with _cli_errors():
        values = _values(assignments)
    with _open(storage) as store:
        study = _read_study(run, store)
        from tunelab.babysit.branches import rollback as make_branch

        number = make_branch(study, to=to, trial=trial, values=values or None, note=note)
        trials = {t.number: t for t in study.trials}
    branch = branch_of(trials[number].system_attrs)
    assert branch is not None
    changed = f" with {_show(branch.changed)}" if branch.changed else ""
    out = _out()
    out.print(f"trial {number} branches from trial {branch.parent} at step {branch.step}{changed}",
              markup=False, highlight=False)
    stopped = [n for n, t in trials.items() if t.state == TrialState.RUNNING and "stop_requested" in t.system_attrs]
    if stopped:
        out.print(f"asked trial {', '.join(map(str, stopped))} to stop: the run's training process moves on to "
                  f"trial {number}", markup=False, highlight=False)
    else:
        out.print(f"trial {number} waits for the run's training process", markup=False, highlight=False)


@app.command()
def tree(
    run: RunArgument,
    metric: Annotated[str | None, typer.Option("--metric", show_default=False,
                                               help="The metric to show (default: val_loss or the like).")] = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """The branches of a run: changes made while each trained, pending requests, kept checkpoints."""
    with _open(storage) as store:
        from tunelab.babysit.branches import format_tree, run_metrics

        study = _read_study(run, store)
        if metric is not None:  # as the dashboard's tree: a metric no branch reported is an error, not empty curves
            reported = run_metrics(study).reported
            if metric not in reported and not study.get_metric(metric):
                raise ConfigError(f"no branch of run {run!r} reported the metric {metric!r} (--metric); the newest "
                                  f"reported {', '.join(reported) or 'nothing yet'}")
        text = format_tree(study, metric=metric)
    _out().print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def suggest(
    run: RunArgument,
    trial: TrialOption = None,
    accept: Annotated[int | None, typer.Option("--accept", metavar="K", min=1, show_default=False,
                                               help="Apply the K-th suggestion.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", show_default=False,
                                               help="The curve to read (default: val_loss or the like).")] = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """What the running branch's curves call for, numbered; --accept K applies the K-th."""
    from tunelab.babysit import advice

    with _open(storage) as store:
        study = _read_study(run, store)
        number = _suggest_trial(study, trial)
        found = advice.suggest(study, number, metric=metric)
        if accept is not None:
            if not found:
                raise ConfigError(f"there is nothing to accept: no suggestion for trial {number}")
            if accept > len(found):
                raise ConfigError(f"--accept {accept}: there are only {len(found)} suggestions for trial {number}")
            chosen = found[accept - 1]
            result = advice.accept(study, number, chosen, source="suggestion")
    out = _out()
    if accept is not None:
        if chosen.rollback_to is not None:
            out.print(f"accepted: {chosen.message}\ntrial {result} branches from trial {number} at step "
                      f"{chosen.rollback_to} with {_show(chosen.values)}", markup=False, highlight=False)
        else:
            out.print(f"accepted: {chosen.message}\nrequested {_show(chosen.values)} for trial {number} "
                      f"(request {result}); it applies at the trial's next step", markup=False, highlight=False)
        return
    if not found:
        out.print(f"trial {number} of run {run!r}: nothing to suggest from its curves", markup=False, highlight=False)
        return
    out.print(f"trial {number} of run {run!r}:", markup=False, highlight=False)
    for k, s in enumerate(found, 1):
        out.print(Text.assemble((f"{k}. ", "bold"), (f"[{s.condition}] ", "cyan"), s.message))
    if any(s.values for s in found):
        out.print(f"accept one with: tunelab suggest {run} --trial {number} --accept K", markup=False,
                  highlight=False)


def _suggest_trial(study: Study, trial: int | None) -> int:
    if trial is not None:
        return trial
    running = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    if len(running) > 1:
        return _running_trial(study, None, "read")  # the error listing them
    if running:
        return running[0]
    reported = [t.number for t in study.trials if t.state != TrialState.WAITING]
    if not reported:
        raise ConfigError(f"run {study.name!r} has no branch that has trained yet")
    return reported[-1]


class AutoRule(str, enum.Enum):
    reduce_on_plateau = "reduce_on_plateau"


@app.command()
def watch(
    run: RunArgument,
    auto: Annotated[AutoRule, typer.Option("--auto", help="The rule to apply.")],
    trial: Annotated[int | None, typer.Option("--trial", metavar="N", show_default=False,
                                              help="Start with this branch (default: the running one).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="The curve the rule reads.")] = "val_loss",
    patience: Annotated[int, typer.Option("--patience", min=1, help="Evaluations without improvement.")] = 3,
    factor: Annotated[float, typer.Option("--factor", help="Multiply the lr by this (between 0 and 1).")] = 0.5,
    min_lr: Annotated[float, typer.Option("--min-lr", min=0.0, help="Never below this learning rate.")] = 1e-6,
    cooldown: Annotated[int, typer.Option("--cooldown", min=0, help="Evaluations ignored after a change.")] = 0,
    param: Annotated[str, typer.Option("--param", help="The hyperparameter to reduce.")] = "lr",
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", help="Seconds between reads.")] = 2.0,
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", metavar="S", show_default=False,
                     help="Stop after this long (default: when the run ends)."),
    ] = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """Apply an automatic rule to the run's running branch as it trains, printing each change."""
    from tunelab.babysit import advice

    for option, name in (("--metric", metric), ("--param", param)):  # was ReduceOnPlateau(metric=...)'s error
        if not name.strip():
            raise typer.BadParameter(f"must be a name such as {'val_loss' if option == '--metric' else 'lr'!r}, "
                                     f"got {name!r}", param_hint=f"'{option}'")
    if not 0.0 < factor < 1.0:  # named as the option, before the rule names its Python argument
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), got {factor}", param_hint="'--factor'")
    if not poll_seconds > 0.0:
        raise typer.BadParameter(f"must be more than 0 seconds, got {poll_seconds}", param_hint="'--poll-seconds'")
    if max_seconds is not None and not max_seconds >= 0.0:  # was the header, then watch(max_seconds=...)'s error
        raise typer.BadParameter(f"must be 0 or more seconds, got {max_seconds}", param_hint="'--max-seconds'")
    with _cli_errors():
        rule = advice.ReduceOnPlateau(metric=metric, patience=patience, factor=factor, min_lr=min_lr,
                                      cooldown=cooldown, param=param)
    with _open(storage) as store:
        study = _read_study(run, store)
        out = _out()
        _err().print(f"watching run {run!r} with {rule} (Ctrl-C to stop)", markup=False, highlight=False)

        def show(change: advice.AutoChange) -> None:
            out.print(str(change), markup=False, highlight=False)

        changes = advice.watch(study, number=trial, rules=[rule], poll_seconds=poll_seconds,
                               max_seconds=max_seconds, on_change=show)
    out.print(f"done: {len(changes)} change{'s' if len(changes) != 1 else ''}", markup=False, highlight=False)


@app.command()
def train(
    run: RunArgument,
    problem: Annotated[
        str,
        typer.Argument(metavar="[PROBLEM]", help="'digits' (the built-in CNN), or MODULE:ATTR naming a "
                                                 "tunelab.torch.Trainer or a function returning one."),
    ] = "digits",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs of the run (each branch ends there).")] = 20,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="NAME=VALUE", show_default=False,
                     help="A starting hyperparameter of a new run (repeatable), e.g. --set lr=0.003."),
    ] = None,
    direction: Annotated[
        str | None,
        typer.Option("--direction", show_default=False,
                     help="Of a new run's value; default: that of the trainer's monitor (val_acc: maximize). "
                          "An existing run keeps its own."),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option("--eval-every", metavar="STEPS", min=1, show_default=False,
                     help="Evaluate (and checkpoint) every STEPS optimizer steps instead of every epoch."),
    ] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Evaluations per checkpoint.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seeds the weights, the shuffling and dropout.")] = 0,
    forever: Annotated[bool, typer.Option("--forever", help="Keep waiting for new branches (Ctrl-C ends).")] = False,
    path: ImportPathOption = None,
    storage: StorageOption = DEFAULT_STORAGE,
) -> None:
    """Train a run to babysit: create it (with --set) if new, then train its branches one after
    another, resuming one that died from its last checkpoint.

    In another shell: `tunelab set RUN lr=...`, `tunelab rollback RUN --to STEP`, `tunelab tree RUN`,
    `tunelab suggest RUN`, `tunelab watch RUN --auto reduce_on_plateau`, or the dashboard.
    """
    from tunelab.babysit import create_run, train_run
    from tunelab.errors import StudyNotFoundError
    from tunelab.torch import monitor_direction

    # every option first: a bad --direction was reported only once --set lr=... was right (a usage error
    # shown after an error of the run's start)
    if direction is not None and direction not in DIRECTIONS:
        raise typer.BadParameter(f"must be 'minimize' or 'maximize', got {direction!r}", param_hint="'--direction'")
    with _cli_errors():
        values = _values(assignments)
        trainer = load_trainer(problem, path or [], "train RUN")
    with _cli_errors():
        store = get_storage(storage)  # a new run may create the database
        try:
            study = _read_study(run, store)
            if values:
                raise ConfigError(f"run {run!r} exists: --set starts a new run only; change a running one "
                                  f"with `tunelab set {run} NAME=VALUE`")
            if direction is not None and direction != study.direction:  # was ignored: the stored one won
                record = study.system_attrs.get("run")
                metric = record.get("metric") if isinstance(record, dict) else None
                raise typer.BadParameter(
                    f"run {run!r} {study.direction[:-1]}es its value{f' ({metric})' if metric else ''}; a run "
                    f"keeps the direction it was created with: leave --direction out, or train a new run "
                    f"(another name) to {direction}", param_hint="'--direction'")
        except StudyNotFoundError:
            start = trainer.default_params(**values)
            lr = start.get("lr")
            # checked before the run exists: a run whose start cannot train is stuck (--set only
            # starts a new run, and it has no checkpoint to roll back to)
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
                raise ConfigError(
                    f"a new run needs a positive learning rate, got lr={lr!r}; start it with e.g. "
                    f"`tunelab train {run} --set lr=0.003`"
                ) from None
            study = create_run(run, start, storage=store,
                               direction=direction or monitor_direction(trainer.monitor), metric=trainer.monitor)
        err = _err()
        err.print(f"training run {run!r} for {epochs} epochs; in another shell: tunelab set {run} lr=... | "
                  f"tunelab rollback {run} --to STEP | tunelab tree {run}", markup=False, highlight=False)
        trained = train_run(study, trainer, epochs=epochs, seed=seed, eval_every=eval_every,
                            checkpoint_every=checkpoint_every, until_idle=not forever)
        out = _out()
        for number in trained:
            t = study.get_trial(number)
            value = "-" if t.value is None else f"{t.value:.6g}"
            out.print(f"branch {number}: {t.state.value}, value {value}", markup=False, highlight=False)
        if not trained:
            out.print(f"run {run!r} has no branch waiting to train: roll back to a checkpoint to make one",
                      markup=False, highlight=False)
        store.close()
