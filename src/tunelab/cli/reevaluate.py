"""``tunelab reevaluate``: run the best configurations of an old study again and say which still hold."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tunelab.cli.imports import import_objective
from tunelab.cli.main import (
    DEFAULT_STORAGE,
    ImportPathOption,
    NWorkersOption,
    ObjectiveOption,
    StorageOption,
    StudyArgument,
    _cli_errors,
    _fmt,
    _open,
    _out,
    _read_study,
    app,
)
from tunelab.reevaluate import ReevaluatedConfig, reevaluate
from tunelab.study.failures import error_headline

_STYLES = {"holds": "green", "better": "cyan", "stale": "red", "failed": "red"}


@app.command("reevaluate")
def reevaluate_command(
    study_name: StudyArgument,
    objective: ObjectiveOption,
    top: Annotated[int, typer.Option("--top", min=1, help="Re-evaluate the best K COMPLETE trials.")] = 5,
    storage: StorageOption = DEFAULT_STORAGE,
    path: ImportPathOption = None,
    name: Annotated[
        str | None,
        typer.Option("--name", show_default=False,
                     help="The new study's name (default: STUDY-reeval, STUDY-reeval-2, ...: the first free)."),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Runs of each configuration (2 or more measure the noise).")
    ] = 1,
    n_workers: NWorkersOption = 1,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0,
                     help="The fraction of the spread of the old top values a configuration may lose and still hold."),
    ] = 0.25,
    search: Annotated[
        int, typer.Option("--search", min=0, help="Then continue the new study with N trials of the old sampler.")
    ] = 0,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show a progress bar (default: when stdout is a terminal)."),
    ] = None,
) -> None:
    """Re-run the best configurations of a study after the data or the code changed, in a new linked
    study, and say which still hold, which went stale and whether the old best is still the best."""
    with _cli_errors():
        fn = import_objective(objective, path or ())
    with _open(storage) as store:
        old = _read_study(study_name, store)
        result = reevaluate(
            old, fn, top=top, name=name, repeats=repeats, n_workers=n_workers, tolerance=tolerance,
            search=search, show_progress=progress,
        )
    out = _out()
    table = Table(title=Text(f"{result.source} -> {result.study.name} ({result.direction})"), box=box.SIMPLE_HEAD)
    for col in ["old #", "old value", "new value", "change", "rank", "verdict"]:
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for row in result.rows:
        table.add_row(
            str(row.old_number), _fmt(row.old_value), _new_value(row),
            "" if row.change is None else f"{row.change:+.4g}",
            f"{row.old_rank} -> {'-' if row.new_rank is None else row.new_rank}",
            Text(row.verdict, style=_STYLES[row.verdict]),
        )
    out.print(table)
    for row in result.rows:
        if row.errors:
            out.print(Text(f"#{row.old_number} failed: {error_headline(row.errors[0])}"))
    out.print(Text(result.summary()))


def _new_value(row: ReevaluatedConfig) -> str:
    if row.new_value is None:
        return ""
    if row.new_spread is None:
        return _fmt(row.new_value)
    return f"{_fmt(row.new_value)} ± {_fmt(row.new_spread, 2)}"
