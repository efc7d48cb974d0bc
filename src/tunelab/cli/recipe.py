"""``tunelab recipe``: the sanity recipe on a Trainer (initial loss, overfit, learning-rate range,
coarse search, refine, final training), each step's verdict printed (:mod:`tunelab.recipe`)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli.imports import load_trainer
from tunelab.cli.main import DEFAULT_STORAGE, ImportPathOption, StorageOption, _cli_errors, _out, app


class Step(str, enum.Enum):
    initial_loss = "initial_loss"
    overfit = "overfit"
    lr_range = "lr_range"
    coarse = "coarse"
    refine = "refine"
    final = "final"


@app.command()
def recipe(
    problem: Annotated[
        str,
        typer.Argument(
            metavar="[PROBLEM]",
            help="'digits' (built in: a CNN on scikit-learn's digits), or MODULE:ATTR naming a "
                 "tunelab.torch.Trainer or a function returning one.",
        ),
    ] = "digits",
    storage: StorageOption = DEFAULT_STORAGE,
    name: Annotated[
        str | None,
        typer.Option("--name", show_default=False, help="Study name (default: recipe, recipe-2, ...: the first free)."),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A run of about a minute (small budgets).")] = False,
    n_workers: Annotated[int, typer.Option("--n-workers", min=1, help="Worker processes of the searches.")] = 2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the checks and the searches.")] = 0,
    stop_after: Annotated[
        Step | None, typer.Option("--stop-after", show_default=False, help="End after this step.")
    ] = None,
    path: ImportPathOption = None,
    artifact_dir: Annotated[
        Path | None,
        typer.Option("--artifact-dir", show_default=False,
                     help="Where models and checkpoints go (default: beside the SQLite file)."),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show progress bars (default: when stdout is a terminal)."),
    ] = None,
    adapt_lr: Annotated[
        bool,
        typer.Option("--adapt-lr", help="Let the learning rate adapt from the range test's choice (hypergradient "
                                        "version of the optimizer) in the searches, instead of searching it."),
    ] = False,
    objectives: Annotated[
        str | None,
        typer.Option("--objectives", show_default=False, metavar="NAMES",
                     help="Several objectives for the searches, comma-separated, the trainer's monitor first: "
                          "val_acc,params trades validation accuracy against the model's trainable parameter "
                          "count (params minimized). Known: the monitor, val_loss, val_acc (classifiers), params."),
    ] = None,
) -> None:
    """Run the training recipe: initial loss, overfit a small sample, learning-rate range, then
    coarse search, refine and final training, printing each step's verdict.

    With --objectives val_acc,params the searches trade accuracy against model size in one study
    with two objectives, each stage prints its Pareto front, and the final training takes the
    smallest model within 1 point of accuracy of the front's most accurate one.

    Exits with code 1 when a step fails (its message says why); the study keeps every verdict.
    """
    names = None if objectives is None else [n.strip() for n in objectives.split(",") if n.strip()]
    if names is not None and (not names or len(set(names)) != len(names)):  # the library's message: objectives=...
        raise typer.BadParameter(f"must be distinct objective names, comma-separated, e.g. val_acc,params; "
                                 f"got {objectives!r}", param_hint="'--objectives'")
    with _cli_errors():
        from tunelab import recipe as recipe_module

        trainer = load_trainer(problem, path or [])
        result = recipe_module.run(
            trainer, storage=storage, name=name, quick=quick, n_workers=n_workers, seed=seed,
            stop_after=stop_after.value if stop_after else None, artifact_dir=artifact_dir,
            console=_out(), show_progress=progress, adapt_lr=adapt_lr,
            objectives=names,
        )
    if not result.ok:
        raise typer.Exit(1)
