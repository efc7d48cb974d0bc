"""The ``tunelab`` command's app, its shared options and the study commands: list, inspect, export,
report and delete studies (the other modules of :mod:`tunelab.cli` add the other workflows' commands).

A thin layer over the library: every command opens the storage, calls the public
API and prints the result. tunelab's own errors become one red line on stderr and
exit code 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import csv
import enum
import errno
import io
import json
import math
import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import tunelab
from tunelab.errors import ConfigError, TrialNotFoundError, TunelabError
from tunelab.records import FrozenTrial, StudySummary, TrialState, sort_key
from tunelab.storage import BaseStorage, get_storage
from tunelab.storage.urls import check_storage_url
from tunelab.study import (
    PREDICTION,
    Study,
    delete_study,
    read_study,
    study_headline,
)
from tunelab.study.frames import trials_to_rows

app = typer.Typer(
    name="tunelab",
    help="Inspect, export and delete tunelab studies, join one as a worker, or run the training recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

def _checked_storage(url: str) -> str:
    """The --storage URL, refused with the fix when it has a typo (``sqllite://``, ``sqlite:/x.db``)."""
    with _cli_errors():
        check_storage_url(url)
    return url


StorageOption = Annotated[
    str,
    typer.Option(
        "--storage", envvar="TUNELAB_STORAGE", show_envvar=True, callback=_checked_storage,
        help="Storage URL, e.g. sqlite:///tunelab.db or postgresql+psycopg://user@host/db.",
    ),
]
StudyArgument = Annotated[str, typer.Argument(metavar="STUDY", help="Name of the study.", show_default=False)]
DEFAULT_STORAGE = "sqlite:///tunelab.db"
ObjectiveOption = Annotated[
    str,
    typer.Option(
        "--objective", metavar="MODULE:FUNCTION", show_default=False,
        help="The objective to import, e.g. train:objective for objective(trial) in train.py.",
    ),
]
ImportPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--path", metavar="DIR", exists=True, file_okay=False, show_default=False,
        help="Import from this directory too (repeatable; searched before the current directory).",
    ),
]
NWorkersOption = Annotated[
    int, typer.Option("--n-workers", min=1, help="Trials at once, each in its own process when above 1.")
]


class ExportFormat(str, enum.Enum):
    csv = "csv"
    json = "json"


def _out() -> Console:
    # Made per command so that the width (COLUMNS) and the stream are those of this call.
    console = Console(emoji=False)  # ":100:" in a traceback or a log line is text, not an emoji
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200  # piped output (a file, grep) is not cut to 80 columns
    return console


def _err() -> Console:
    return Console(stderr=True, emoji=False)


@contextmanager
def _cli_errors() -> Iterator[None]:
    """tunelab errors -> one red line and exit 1; Ctrl-C -> exit 130."""
    try:
        yield
    except TunelabError as e:
        _err().print(f"error: {e}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _err().print("interrupted", style="red", markup=False, highlight=False)
        raise typer.Exit(130) from None


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Inside, SIGTERM (``kill``, ``docker stop``, a batch scheduler's preemption) stops the run as Ctrl-C does:
    its running trials are recorded "interrupted" and the same command resumes it. Only the main thread can
    set a handler; elsewhere SIGTERM keeps its default."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _shown(url: str) -> str:
    """The storage URL as messages show it: without its password (as the storage's own messages)."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return url
    # rendering quotes characters of a path ("[" as %5B): only a URL with a password is rewritten
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


@contextmanager
def _open(url: str) -> Iterator[BaseStorage]:
    """The storage at ``url``, closed afterwards; errors handled as in :func:`_cli_errors`."""
    with _cli_errors():
        store = get_storage(url, create=False)  # reading must not leave an empty database behind
        try:
            yield store
        finally:
            store.close()


def _read_study(name: str, store: BaseStorage) -> Study:
    # Reading needs neither the stored sampler nor the pruner (either may be a custom class this
    # process cannot import).
    return read_study(name, store)


def _fmt(value: object, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tunelab {tunelab.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Inspect, export and delete tunelab studies, join one as a worker, or run the demo."""


@app.command()
def studies(storage: StorageOption = DEFAULT_STORAGE) -> None:
    """List the studies in a storage with their trial counts and best values."""
    with _open(storage) as store:
        summaries = store.list_studies()
        shown = {s.name: _best_shown(store, s) for s in summaries}
    console = _out()
    if not summaries:
        console.print(f"no studies in {_shown(storage)}", markup=False, highlight=False)
        return
    table = Table(title=Text(f"studies in {_shown(storage)}"), box=box.SIMPLE_HEAD)
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    for col in ["name", "direction", "trials", *(s.value.lower() for s in states), "best value", "created"]:
        table.add_column(
            col, justify="left" if col in ("name", "direction", "created") else "right",
            overflow="fold" if col == "name" else "ellipsis",
        )
    for s in summaries:
        direction, best_value = shown[s.name]
        table.add_row(
            Text(s.name), direction, str(s.n_trials), *(str(s.counts.get(st.value, 0)) for st in states),
            best_value, _fmt(s.datetime_created),
        )
    console.print(table)


def _best_shown(store: BaseStorage, summary: StudySummary) -> tuple[str, str]:
    """A study's directions and best value as `tunelab studies` shows them (:func:`study_headline`)."""
    headline = study_headline(store, summary)
    if headline.front_size is not None:
        return ",".join(headline.directions), f"front: {headline.front_size}"
    if len(headline.directions) > 1 or summary.best_value is None:
        return ",".join(headline.directions), ""
    return summary.direction, _fmt(None if headline.best is None else headline.best.value)


def _best_first(trials: list[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """COMPLETE trials best first, the feasible ones before those that violate a constraint (never the
    best), then the others by number."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    rest = [t for t in trials if t.state != TrialState.COMPLETE]
    key = sort_key(direction)
    return sorted(done, key=lambda t: (not t.feasible, key(t))) + rest


@app.command()
def show(
    study_name: StudyArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Show at most N trials.")] = None,
    state: Annotated[
        TrialState | None, typer.Option("--state", case_sensitive=False, help="Only trials in this state.")
    ] = None,
    trial: Annotated[int | None, typer.Option(
        "--trial", min=0, show_default=False, help="Show this trial in full, with its logs (as `tunelab trial`).")
    ] = None,
) -> None:
    """The trials of a study, best first (then the unfinished and failed ones by number)."""
    if trial is not None:
        trial_command(study_name, trial, storage=storage, as_json=False, log_lines=20)
        return
    with _open(storage) as store:
        study = _read_study(study_name, store)
        trials = study.get_trials([state] if state is not None else None)
        verdicts = study.system_attrs.get("recipe", {}).get("steps", [])
    trials = _best_first(trials, study.direction)[:limit]
    stages = [t.user_attrs.get("train", {}).get("stage", "") for t in trials]
    names = study.objective_names if study.is_multi_objective else None
    rows = trials_to_rows(trials, names)
    values = [f"values_{n}" for n in names] if names is not None else ["value"]  # one column per objective
    params = list(dict.fromkeys(k for row in rows for k in row if k.startswith("params_")))
    show_errors = any(row["error"] for row in rows)
    show_stages = any(stages)
    show_feasible = any("feasible" in row for row in rows)  # a study with constraints
    predictions = [_prediction_text(t) for t in trials]
    show_predictions = any(predictions)
    out = _out()
    for v in verdicts:  # a study made by `tunelab recipe`: its steps first
        out.print(Text(f"{v['step']}: {v['verdict']}: {v['message']}"))
    table = Table(title=Text(f"{study.name} ({', '.join(study.directions)}): {len(rows)} trials"), box=box.SIMPLE_HEAD)
    columns = ["#", "state", *(["stage"] if show_stages else []), *(v.removeprefix("values_") for v in values),
               *(["feasible"] if show_feasible else []), *(p.removeprefix("params_") for p in params), "duration",
               *(["predicted"] if show_predictions else [])]
    for col in columns:
        table.add_column(Text(col), justify="left" if col in ("state", "stage") else "right")  # names as typed
    if show_errors:
        table.add_column("error", overflow="fold")
    for row, stage, predicted in zip(rows, stages, predictions, strict=True):
        duration = "" if row["duration"] is None else f"{row['duration']:.2f}s"
        feasible = "" if "feasible" not in row else "yes" if row["feasible"] else "no"
        cells = [str(row["number"]), row["state"], *([stage] if show_stages else []), *(_fmt(row[v]) for v in values),
                 *([feasible] if show_feasible else []), *(_fmt(row.get(p), 4) for p in params)]
        table.add_row(*map(Text, [*cells, duration, *([predicted] if show_predictions else []),
                                  *([row["error"] or ""] if show_errors else [])]))
    out.print(table)


@app.command()
def best(
    study_name: StudyArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """The best trial of a study: its number, value and parameters; with several objectives, the
    Pareto front (the feasible COMPLETE trials no other dominates), one row per trial."""
    with _open(storage) as store:
        study = _read_study(study_name, store)
        if study.is_multi_objective:
            _print_front(study, study.best_trials, as_json)
            return
        trial = study.best_trial
    if as_json:
        typer.echo(json.dumps({
            "study": study.name, "direction": study.direction,
            "number": trial.number, "value": trial.value, "params": dict(trial.params),
            **_constraints_json(trial),
        }))
        return
    console = _out()
    console.print(
        f"best trial of {study.name} ({study.direction}): #{trial.number}, value {trial.value!r}",
        markup=False, highlight=False,
    )
    for name, value in trial.params.items():
        console.print(f"  {name} = {value!r}", markup=False, highlight=False)
    for name, c in trial.constraints.items():
        console.print(f"  constraint {name} = {c.value!r} ({_bounds(c.lower, c.upper)})", markup=False, highlight=False)


def _bounds(lower: float | None, upper: float | None) -> str:
    """A constraint's bounds as text: '<= 8', '>= 0.9', 'in [0, 8]'."""
    if lower is not None and upper is not None:
        return f"in [{lower:g}, {upper:g}]"
    return f"<= {upper:g}" if upper is not None else f">= {lower:g}"


def _print_front(study: tunelab.Study, front: list[FrozenTrial], as_json: bool) -> None:
    """``tunelab best`` for a study with several objectives: its Pareto front."""
    names, directions = study.objective_names, study.directions
    if not front:
        raise TrialNotFoundError(
            f"study {study.name!r} has no feasible COMPLETE trial yet, so no Pareto front: "
            f"tunelab show {study.name} says how its trials ended"
        )
    if as_json:
        typer.echo(json.dumps({
            "study": study.name, "directions": list(directions), "objective_names": list(names),
            "front": [{"number": t.number, "values": dict(zip(names, t.values or (), strict=True)),
                       "params": dict(t.params), **_constraints_json(t)} for t in front],
        }))
        return
    table = Table(box=box.SIMPLE_HEAD, title=Text(f"Pareto front of {study.name}: {len(front)} trial(s)"))
    table.add_column("#", justify="right")
    for name, direction in zip(names, directions, strict=True):
        table.add_column(Text(f"{name} ({'max' if direction == 'maximize' else 'min'})"), justify="right")
    param_names = sorted({k for t in front for k in t.params})
    for name in param_names:
        table.add_column(Text(name))
    bounds = {name: _bounds(c.lower, c.upper) for t in front for name, c in t.constraints.items()}
    for name, bound in bounds.items():  # (the front is feasible: each value holds its bound)
        table.add_column(Text(f"{name} ({bound})"), justify="right")
    first = sorted(front, key=lambda t: t.values[0] if directions[0] == "minimize" else -t.values[0])  # type: ignore[index]
    for t in first:
        cells = [f"{v:.6g}" for v in t.values or ()]
        limits = [f"{t.constraints[n].value:.6g}" if n in t.constraints else "" for n in bounds]
        table.add_row(*map(Text, [str(t.number), *cells, *(_short(t.params.get(k)) for k in param_names), *limits]))
    _out().print(table)


def _constraints_json(trial: FrozenTrial) -> dict[str, object]:
    """``tunelab best --json``'s constraint fields: each measured value and its bounds (a best
    trial is always feasible, so ``feasible`` is true whenever the study records constraints)."""
    if not trial.constraints:
        return {}
    return {"feasible": trial.feasible, "constraints": {
        name: {"value": c.value, "lower": c.lower, "upper": c.upper} for name, c in trial.constraints.items()}}


def _short(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def lineage(study_name: StudyArgument, storage: StorageOption = DEFAULT_STORAGE) -> None:
    """The family tree of a population-based training study: who copied whom, when, with which params."""
    from tunelab.pbt import format_lineage

    with _open(storage) as store:
        text = format_lineage(_read_study(study_name, store))
    if not text:
        _err().print(f"error: study {study_name!r} has no population-based training members", style="red",
                     markup=False, highlight=False)
        raise typer.Exit(1)
    _out().print(text, markup=False, highlight=False)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _trial_json(t: FrozenTrial, objective_names: Sequence[str] | None = None) -> dict[str, Any]:
    values = {} if objective_names is None else {
        "values": None if t.values is None else dict(zip(objective_names, t.values, strict=False))
    }
    return {
        "number": t.number, "state": t.state.value, "value": t.value, **values, "params": dict(t.params),
        "distributions": {k: d.to_json() for k, d in t.distributions.items()},
        "user_attrs": dict(t.user_attrs), "system_attrs": dict(t.system_attrs),
        "datetime_start": _iso(t.datetime_start), "datetime_complete": _iso(t.datetime_complete),
        "duration": t.duration, "error": t.error,
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _compact(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prediction_text(t: FrozenTrial, decision: Any = None) -> str:
    """A pruner's curve prediction for trial ``t`` in one line (its stop, else its last decision to go on), or ''."""
    if decision is None:
        decision = t.system_attrs.get("pruned") if t.state == TrialState.PRUNED else t.system_attrs.get(PREDICTION)
    evidence = decision.get("evidence") if isinstance(decision, dict) else None
    if not isinstance(evidence, dict) or not isinstance(evidence.get("mean"), (int, float)):
        return ""
    text = f"{_fmt(evidence['mean'], 4)}"
    if isinstance(evidence.get("low"), (int, float)) and isinstance(evidence.get("high"), (int, float)):
        text += f" [{_fmt(evidence['low'], 4)}, {_fmt(evidence['high'], 4)}]"
    text += f" at step {evidence.get('predicted_at')}"
    if isinstance(evidence.get("incumbent"), (int, float)):
        text += f" vs best {_fmt(evidence['incumbent'], 4)}"
    if isinstance(evidence.get("p_better"), (int, float)):
        text += f", P(better) {evidence['p_better']:.2g}"
    return text


@app.command("trial")
def trial_command(
    study_name: StudyArgument,
    number: Annotated[int, typer.Argument(metavar="NUMBER", min=0, help="The trial's number.", show_default=False)],
    storage: StorageOption = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    log_lines: Annotated[int, typer.Option(
        "--log-lines", min=0, help="Lines of the end of its logs to show (a trial of `tunelab sweep`).")] = 20,
) -> None:
    """One trial: its state, value, parameters, attributes, its whole error (the traceback), the last
    values of its curves, its checkpoints and, for a trial of `tunelab sweep`, the end of its logs."""
    from tunelab.study.failures import summarize_error
    from tunelab.sweep.logs import trial_logs

    with _open(storage) as store:
        study = _read_study(study_name, store)
        t = study.get_trial(number)
        curves = study.get_curves(number)
        kept = study.checkpoints(number)
        logs = trial_logs(study, number, log_lines)
    names = study.objective_names if study.is_multi_objective else None
    last = {
        metric: {"points": len(steps), "last_step": steps[-1], "last_value": _finite_or_none(values[-1])}
        for metric, (steps, values) in curves.items() if steps
    }
    if as_json:
        typer.echo(json.dumps({
            "study": study.name, "direction": study.direction, **_trial_json(t, names),
            "error_summary": None if t.error is None else summarize_error(t.error),
            "curves": last, "checkpoints": [{"step": c.step, "path": str(c.path)} for c in kept],
            "logs": logs,
        }, default=str))
        return
    out = _out()

    def line(text: str = "") -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    if names is not None and t.values is not None:
        shown = ", values " + ", ".join(f"{n} {_fmt(v, 10)}" for n, v in zip(names, t.values, strict=False))
    else:
        shown = f", value {_fmt(t.value, 10)}" if t.value is not None else ""
    line(f"trial {t.number} of study {study.name!r} ({', '.join(study.directions)}): {t.state.value}{shown}")
    times = [f"started {_fmt(t.datetime_start)}" if t.datetime_start else "",
             f"finished {_fmt(t.datetime_complete)}" if t.datetime_complete else "",
             f"took {t.duration:.2f}s" if t.duration is not None else ""]
    if any(times):
        line("  " + ", ".join(x for x in times if x))
    pruned = t.system_attrs.get("pruned")
    if t.state == TrialState.PRUNED and isinstance(pruned, dict):
        value = pruned.get("value")
        at = f" ({pruned.get('metric')} {_fmt(value)})" if isinstance(value, float) else ""
        line(f"  pruned at step {pruned.get('step')} by {pruned.get('rule')}{at}: {pruned.get('detail')}")
    for title, decision in (("stopped on", pruned if t.state == TrialState.PRUNED else None),
                            ("last prediction, at", t.system_attrs.get(PREDICTION))):
        evidence = decision.get("evidence") if isinstance(decision, dict) else None
        if isinstance(evidence, dict) and isinstance(evidence.get("continuation"), dict):
            line(f"  {title} step {evidence.get('step')}: {_prediction_text(t, decision)}")
            cont = evidence["continuation"]
            pts = ", ".join(f"{s_}: {_fmt(m, 4)} [{_fmt(lo, 4)}, {_fmt(hi, 4)}]" for s_, m, lo, hi in zip(
                cont.get("steps", []), cont.get("mean", []), cont.get("low", []), cont.get("high", []), strict=False))
            line(f"    predicted continuation (step: mean [interval]): {pts}")
    if t.error is not None:
        line(f"  error: {summarize_error(t.error)}")
    sections: list[tuple[str, dict[str, Any]]] = [
        ("params", dict(t.params)), ("user attributes", dict(t.user_attrs)),
        ("system attributes", dict(t.system_attrs)),
    ]
    for title, items in sections:
        line(f"{title}:" + ("" if items else " none"))
        for key, value in items.items():
            line(f"  {key} = {_fmt(value, 10) if isinstance(value, float) else _compact(value)}")
    line("curves (last values):" + ("" if last else " none reported"))
    width = max((len(m) for m in last), default=0)
    for metric, info in last.items():
        shown = "nan/inf" if info["last_value"] is None else _fmt(info["last_value"], 6)
        points = info["points"]
        line(f"  {metric:<{width}}  {shown} at step {info['last_step']} ({points} point{'s' if points != 1 else ''})")
    line(f"checkpoints in {study.artifact_dir / f'trial-{t.number}'}:" if kept else "checkpoints: none kept")
    for c in kept:
        line(f"  step {c.step}: {c.path}")
    for stream, text in logs.items():
        if text is not None and log_lines:
            tail = text.splitlines()
            path = study.artifact_dir / f"trial-{t.number}" / f"{stream}.log"
            line(f"{stream} (the last {len(tail)} lines of {path}):" if tail else f"{stream}: empty")
            for text_line in tail:
                line("  " + text_line)
    if t.error is not None:
        line("error (as stored):")
        for text in t.error.rstrip().splitlines():
            line("  " + text)


@app.command()
def export(
    study_name: StudyArgument,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")],
    storage: StorageOption = DEFAULT_STORAGE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export every trial of a study as CSV (one flat row per trial) or JSON."""
    with _open(storage) as store:
        study = _read_study(study_name, store)
        trials = study.trials
    names = study.objective_names if study.is_multi_objective else None  # one column per objective
    buf = io.StringIO()
    if fmt == ExportFormat.json:
        json.dump([_trial_json(t, names) for t in trials], buf, indent=2)
        buf.write("\n")
    else:
        rows = [{k: _csv_cell(v) for k, v in r.items()} for r in trials_to_rows(trials, names)]
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    if output is None:
        typer.echo(buf.getvalue(), nl=False)
        return
    with _cli_errors():
        try:
            output.write_text(buf.getvalue(), encoding="utf-8", newline="")
        except OSError as e:
            raise ConfigError(f"cannot write {output}: {e.strerror}") from None
    _err().print(f"wrote {len(trials)} trials to {output}", markup=False, highlight=False)


def _csv_cell(value: Any) -> Any:
    """A CSV cell: times in ISO 8601, nested attributes (dicts, lists) as JSON, not as Python's repr."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value


@app.command()
def delete(
    study_name: StudyArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study and all its trials."""
    with _open(storage) as store:
        n_trials = len(_read_study(study_name, store).trials)
        question = f"Delete study {study_name!r} and its {n_trials} trials from {_shown(storage)}?"
        if not yes and not typer.confirm(question):
            _err().print("not deleted", markup=False, highlight=False)
            raise typer.Exit(1)
        delete_study(study_name, store)
    _out().print(f"deleted study {study_name!r} ({n_trials} trials)", markup=False, highlight=False)


@app.command("copy")
def copy_command(
    study_name: StudyArgument,
    to: Annotated[str, typer.Option(
        "--to", metavar="URL", show_default=False, callback=_checked_storage,
        help="The storage to copy it into, e.g. postgresql+psycopg://user@host/db (created if it is a new file).")],
    storage: StorageOption = DEFAULT_STORAGE,
    name: Annotated[str | None, typer.Option(
        "--name", help="The copy's name (default: the study's).", show_default=False)] = None,
) -> None:
    """Copy a study with every trial, curve and attribute into another storage (or under another name)."""
    with _cli_errors():
        copied = tunelab.copy_study(study_name, storage, to, name)
        n = len(copied.trials)
    _out().print(f"copied study {study_name!r} ({n} trials) from {_shown(storage)} to {copied.name!r} in "
                 f"{_shown(to)}", markup=False, highlight=False)


# -- reading results ---------------------------------------------------------------------------
class ImportanceMethod(str, enum.Enum):
    fanova = "fanova"
    ped_anova = "ped_anova"


@app.command()
def report(
    study_name: StudyArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[str | None, typer.Option("--title", show_default=False, help="The report's title.")] = None,
) -> None:
    """Write one self-contained HTML report of a study: summary, best trial, plots, diagnosis and
    importance (plotly.js inlined: it opens offline)."""
    with _open(storage) as store:
        study = _read_study(study_name, store)
        from tunelab.viz.report import write_report

        path = write_report(study, output, title=title)
    _out().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", markup=False, highlight=False)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DASHBOARD_EXTRA = ("fastapi", "uvicorn", "starlette", "pydantic", "plotly", "sklearn", "kaleido")
"""Modules of the dashboard extra (and what they pull in): missing, `tunelab dashboard` says how to install it."""


def _check_bindable(host: str) -> None:
    """ConfigError naming --host unless this machine can bind ``host`` (checked before the server starts:
    uvicorn printed the address, then "[Errno -2] Name or service not known" and exited 3)."""
    bind = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET  # as uvicorn binds it
    fix = ("give an address of this machine, e.g. --host 127.0.0.1 (this machine only) or --host 0.0.0.0 "
           "(every interface)")
    try:
        address = socket.getaddrinfo(bind, 0, family, socket.SOCK_STREAM)[0][4]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"--host {host!r} is not a name or address this machine can resolve "
                          f"({getattr(e, 'strerror', None) or e}): {fix}") from None
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind(address)
    except OSError as e:
        raise ConfigError(f"--host {host!r} cannot be bound here ({e.strerror or e}): {fix}") from None


@app.command()
def dashboard(
    storage: StorageOption = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback: only this machine).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse actions (stop a trial, enqueue, notes).")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TUNELAB_DASHBOARD_TOKEN", show_default=False,
                     help="Require this token (Authorization: Bearer TOKEN, or ?token=TOKEN in the page's URL)."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", show_default=False, metavar="NAME",
                     help="Also answer requests addressed to this name or address (repeatable; '*' for any Host, "
                          "which lets web pages reach the dashboard by DNS rebinding). Always answered: localhost, "
                          "127.0.0.1, [::1] and --host."),
    ] = None,
) -> None:
    """Serve a live web dashboard of the studies in a storage: trials, curves, plots, diagnosis, importance."""
    with _cli_errors():
        try:
            import uvicorn

            from tunelab.dashboard import create_app
            from tunelab.dashboard.app import default_allowed_hosts
        except ImportError as e:
            missing = (e.name or "").partition(".")[0]
            if missing not in _DASHBOARD_EXTRA:
                raise
            raise ConfigError(f"the dashboard needs its extra: pip install 'tunelab[dashboard]' "
                              f"({missing} is not installed)") from None

    with _cli_errors():
        _check_bindable(host)
    loopback = host in _LOOPBACK or host.startswith("127.")
    unguarded = [flag for flag, given in (("--token", token), ("--read-only", read_only)) if not given]
    if not loopback and unguarded:  # (both given: nothing to advise)
        _err().print(
            f"warning: --host {host} makes the dashboard reachable from the network; "
            f"use {' and '.join(unguarded)} unless the network is trusted",
            style="yellow", markup=False, highlight=False, soft_wrap=True,
        )
    with _cli_errors():
        web = create_app(storage, read_only=read_only, token=token, host=host,
                         allowed_hosts=[*default_allowed_hosts(host), *allowed_host] if allowed_host else None)
    with _listening(host, port) as sock:
        shown = f"[{host}]" if ":" in host else host
        _err().print(f"tunelab dashboard on http://{shown}:{sock.getsockname()[1]}/{'?token=...' if token else ''}",
                     markup=False, highlight=False)
        server = uvicorn.Server(uvicorn.Config(web, host=host, port=port, log_level="warning"))
        server.run(sockets=[sock])
    if not server.started:  # as uvicorn.run exits when its server could not start
        raise typer.Exit(3)


def _listening(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, bound as uvicorn binds it (``SO_REUSEADDR``), or one line
    naming --port and exit 2: uvicorn printed "ERROR: [Errno 98] error while attempting to bind on address
    ...: address already in use" after the dashboard's address, and exited 3. Port 0 picks a free one."""
    bind = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    address = socket.getaddrinfo(bind, port, family, socket.SOCK_STREAM)[0][4]  # resolved by _check_bindable
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen()  # connections wait from now on, while the server starts
    except OSError as e:
        sock.close()
        why = ("is in use (another dashboard or server listens there)" if e.errno == errno.EADDRINUSE
               else f"cannot be bound ({e.strerror or e})")
        _err().print(f"error: port {port} of {host} {why}; give another with --port, e.g. "
                     f"--port {port + 1 if port < 65535 else 8000}, or --port 0 for a free one",
                     style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return sock


@app.command()
def diagnose(
    study_name: StudyArgument,
    trial: Annotated[
        int | None,
        typer.Argument(metavar="[TRIAL]", help="Trial number (default: the best trial).", show_default=False),
    ] = None,
    storage: StorageOption = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Read a trial's learning curves and say what they show and what to do next."""
    with _open(storage) as store:
        study = _read_study(study_name, store)
        if trial is None and study.is_multi_objective:
            front = [t.number for t in study.best_trials]
            raise ConfigError(
                f"study {study.name!r} has {len(study.directions)} objectives, so no single best trial to diagnose: "
                f"give a trial number, e.g. one of its Pareto front {front} (tunelab best {study.name})"
            )
        number = _best_to_diagnose(study) if trial is None else trial
        from tunelab.analysis.diagnosis import diagnose as read_curves
        from tunelab.analysis.diagnosis import nothing_found

        findings = read_curves(study, number)
        clean = nothing_found(study.get_curves(number)) if not findings else ""
    if as_json:
        typer.echo(json.dumps({"study": study.name, "trial": number, "findings": [f.to_json() for f in findings]}))
        return
    console = _out()
    if not findings:
        console.print(f"trial {number} of {study.name}: {clean}", markup=False)
        return
    console.print(f"trial {number} of {study.name}:", markup=False)
    for f in findings:
        console.print(Text.assemble((f"{f.condition}", "bold"), f" ({f.metric}): {f.message}"))
        console.print(Text.assemble(("  do: ", "green"), f.action))


def _best_to_diagnose(study: Study) -> int:
    """The best trial's number; without one, the error says how to diagnose another (a running one...)."""
    try:
        return study.best_trial.number
    except TrialNotFoundError as e:
        trials = study.trials
        started = [t.number for t in trials if t.state != TrialState.WAITING]
        if not started:
            raise
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        example = (running or started)[-1]
        raise TrialNotFoundError(
            f"{e}; to diagnose another trial give its number, e.g. `tunelab diagnose {study.name} {example}`"
            + (f" (trial {example} is running)" if running else "")
        ) from None


@app.command()
def importance(
    study_name: StudyArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    method: Annotated[
        ImportanceMethod, typer.Option("--method", help="fanova (a random forest's variance decomposition) or "
                                                        "ped_anova (fast, for large studies).")
    ] = ImportanceMethod.fanova,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    objective: Annotated[str | None, typer.Option(
        "--objective", help="With several objectives: the one to rank the parameters for (its name).",
        show_default=False)] = None,
) -> None:
    """Which hyperparameters matter: each one's share of the explained variation, with advice."""
    with _open(storage) as store:
        study = _read_study(study_name, store)
        from tunelab.analysis.importance import advice
        from tunelab.analysis.importance import importance as shares_of

        names = study.objective_names  # checked here: the library's messages name the Python argument
        if objective is None and study.is_multi_objective:
            raise ConfigError(
                f"study {study.name!r} has {len(names)} objectives ({', '.join(names)}) and each has its own "
                f"importances: pass --objective {names[0]} (or another objective's name)"
            )
        if objective is not None and objective not in names:
            raise ConfigError(
                f"--objective {objective!r} is not an objective of study {study.name!r}: "
                + (f"its objectives are {', '.join(names)}; pass e.g. --objective {names[0]}"
                   if study.is_multi_objective else "it has a single objective; leave --objective out")
            )

        shares = shares_of(study, method=method.value, objective=objective)
    if as_json:
        typer.echo(json.dumps({"study": study.name, "method": method.value, "importance": shares}))
        return
    console = _out()
    for name, share in shares.items():
        console.print(f"{name:>24}  {share:6.1%}  {'#' * round(share * 40)}", markup=False, highlight=False)
    console.print(advice(shares), markup=False, highlight=False)
