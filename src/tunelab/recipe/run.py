"""The whole recipe, a. to f., in one study, each step's verdict printed and recorded."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunelab.errors import ConfigError
from tunelab.recipe import checks, search
from tunelab.recipe.steps import FAIL, PASS, STEPS, StepResult
from tunelab.records import TrialState, sort_key
from tunelab.storage import BaseStorage, get_storage
from tunelab.study import Study, create_study
from tunelab.torch import Trainer

RECORD_KEY = "recipe"
"""``study.system_attrs["recipe"]``: the budget, the objectives and every step's :meth:`StepResult.to_json`."""
_LETTERS = dict(zip(STEPS, "abcdef", strict=True))
_TITLES = {"initial_loss": "initial loss", "overfit": "overfit a small sample", "lr_range": "learning-rate range",
           "coarse": "coarse search", "refine": "refine", "final": "final training"}


@dataclass(frozen=True)
class Budget:
    """How much each step spends. :meth:`quick` is a run of about a minute.

    Attributes:
        overfit_batches: step b.'s sample, in minibatches.
        overfit_steps: step b.'s step limit per learning rate.
        lr_steps: step c.'s optimiser steps per learning rate.
        lr_points: how many log-spaced learning rates between 1e-5 and 1 step c. tries.
        coarse_trials: step d.'s runs.
        coarse_epochs: step d.'s epochs per run.
        refine_trials: step e.'s runs.
        refine_epochs: step e.'s epochs per run.
        refine_patience: step e.'s patience in epochs; None, the default, trains every run to its
            end (a cosine schedule does its best work in the last epochs).
        final_epochs: step f.'s epochs.
    """

    overfit_batches: int = 8
    overfit_steps: int = 300
    lr_steps: int = 100
    lr_points: int = 11
    coarse_trials: int = 24
    coarse_epochs: int = 4
    refine_trials: int = 12
    refine_epochs: int = 12
    refine_patience: int | None = None
    final_epochs: int = 40

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "refine_patience" and value is None:
                continue
            least = 2 if name == "lr_points" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"Budget({name}=...) must be an integer >= {least}, got {value!r}")

    @classmethod
    def quick(cls) -> Budget:
        """About a minute on two CPU cores, for tests and a first look."""
        return cls(overfit_steps=200, lr_steps=50, lr_points=6, coarse_trials=6, coarse_epochs=2,
                   refine_trials=4, refine_epochs=4, refine_patience=None, final_epochs=8)


@dataclass
class RecipeResult:
    """What :func:`run` returns.

    Attributes:
        study: the study holding every trial and the recorded verdicts.
        steps: the steps that ran, in order.
        stopped_at: the step that failed (the recipe stopped there), or None.
        value: the final model's validation value (the trainer's ``monitor``), or None.
        values: with several objectives, the final model's value of each, by name; else None.
        model_path: the folder of the final model's checkpoint, or None.
        seconds: the whole run's wall time.
    """

    study: Study
    steps: list[StepResult] = field(default_factory=list)
    stopped_at: str | None = None
    value: float | None = None
    values: dict[str, float] | None = None
    model_path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every step passed (or was skipped)."""
        return self.stopped_at is None


def run(
    trainer: Trainer,
    *,
    storage: str | BaseStorage | None = "sqlite:///tunelab.db",
    name: str | None = None,
    budget: Budget | None = None,
    quick: bool = False,
    n_workers: int = 2,
    seed: int = 0,
    stop_after: str | None = None,
    artifact_dir: str | Path | None = None,
    console: Console | None = None,
    show_progress: bool | None = None,
    adapt_lr: bool = False,
    objectives: Sequence[str] | None = None,
) -> RecipeResult:
    """Run the recipe on ``trainer``: checks a. to c., then the searches d. to f., in one new study.

    Args:
        trainer: the model, data, loss and optimizer (its ``space`` holds the model's own
            hyperparameters; the recipe adds ``lr`` and ``weight_decay``).
        storage: where the study goes (SQLite file by default).
        name: the study's name; default ``"recipe"``, numbered ``recipe-2``, ... when taken.
            An explicit name that exists is an error.
        budget: what each step spends; ``quick=True`` for :meth:`Budget.quick`.
        n_workers: parallel worker processes of the searches.
        seed: seeds the checks and the searches.
        stop_after: end after this step (one of :data:`~tunelab.recipe.steps.STEPS`).
        artifact_dir: where models and checkpoints go (default: beside the SQLite file).
        console: where to print (default: stdout).
        adapt_lr: let the rate adapt from the range test's choice: the searches d. to f. train
            with the hypergradient version of the trainer's optimizer ('adamw' -> 'adamw-hd',
            :class:`~tunelab.torch.hypergradient.HypergradientOptimizer`) starting from the range
            test's best learning rate, never above the top of its range (``lr_max``), and search the
            other hyperparameters only (needs the trainer's optimizer to be 'sgd', 'adam' or 'adamw').
        objectives: several objectives for the searches d. to f., the trainer's ``monitor`` first,
            e.g. ``("val_acc", "params")``: validation accuracy against the model's trainable
            parameter count (:meth:`Trainer.objective_names <tunelab.torch.Trainer.objective_names>`
            lists the known names). The study then has one direction per objective (``params``
            minimized), the pruner is the Pareto median rule, each stage's verdict lists its Pareto
            front, and f. trains the front member of the rule of
            :func:`~tunelab.recipe.search.choose_from_front`: the smallest model within 1 point of
            the most accurate. None (the default): the ``monitor`` alone.

    A failing step stops the recipe; its message says what is wrong and what to do.

    Examples:
        The whole recipe on a tiny model with a tiny :class:`Budget` (a few seconds), in memory,
        printing nothing (``console``); ``run(trainer)`` alone uses the full budget and
        ``sqlite:///tunelab.db``:

        >>> import io, tempfile, torch
        >>> from rich.console import Console
        >>> from tunelab.recipe import Budget, run
        >>> from tunelab.torch import Trainer
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(512, 2, generator=g)
        >>> y = (x[:, 0] + x[:, 1] > 0).long()
        >>> def build(params):
        ...     return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> trainer = Trainer(build, train=(x[:384], y[:384]), val=(x[384:], y[384:]), batch_size=32, device="cpu")
        >>> budget = Budget(overfit_batches=2, overfit_steps=100, lr_steps=20, lr_points=4, coarse_trials=3,
        ...                 coarse_epochs=1, refine_trials=2, refine_epochs=1, final_epochs=2)
        >>> folder = tempfile.TemporaryDirectory()
        >>> result = run(trainer, storage=None, budget=budget, n_workers=1, artifact_dir=folder.name,
        ...              console=Console(file=io.StringIO()))
        >>> [(step.step, step.verdict) for step in result.steps]  # doctest: +NORMALIZE_WHITESPACE
        [('initial_loss', 'pass'), ('overfit', 'pass'), ('lr_range', 'pass'), ('coarse', 'pass'),
         ('refine', 'pass'), ('final', 'pass')]
        >>> result.ok, result.value > 0.9, result.model_path.is_dir()
        (True, True, True)
        >>> folder.cleanup()
    """
    if budget is None:
        budget = Budget.quick() if quick else Budget()
    elif quick:
        raise ConfigError("run() takes budget= or quick=True, not both")
    if stop_after is not None and stop_after not in STEPS:
        raise ConfigError(f"run(stop_after=...) must be one of {STEPS}, got {stop_after!r}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"run(n_workers=...) must be an integer >= 1, got {n_workers!r}")
    if "lr" in trainer.space:
        raise ConfigError("the recipe chooses 'lr' with its range test: remove it from the Trainer's space")
    if not isinstance(adapt_lr, bool):
        raise ConfigError(f"run(adapt_lr=...) must be True or False, got {adapt_lr!r}")
    searcher = search.adaptive(trainer) if adapt_lr else trainer  # checks the optimizer before any step
    names = search.check_objectives(trainer, objectives)
    console = console or Console()
    start = time.perf_counter()
    store = get_storage(storage)
    goals: dict[str, Any] = {"direction": search.direction(trainer)} if len(names) == 1 else {
        "directions": search.directions(names), "objective_names": names}
    study = create_study(
        name=_free_name(store, name), storage=store, sampler=search.sampler(budget.coarse_trials),
        pruner=search.pruner(len(names) > 1), seed=seed, artifact_dir=artifact_dir, **goals,
    )
    result = RecipeResult(study)
    recorder = _Recorder(study, budget, console, adapt_lr, names)
    goal = f"monitor {trainer.monitor}" if len(names) == 1 else "objectives " + ", ".join(
        f"{d} {n}" for n, d in zip(names, study.directions, strict=True))
    console.print(f"[bold]tunelab recipe[/]: study [cyan]{escape(study.name)}[/] in {escape(store.url or 'memory')}, "
                  f"{n_workers} worker process{'es' if n_workers > 1 else ''}, {escape(goal)}")

    space: dict[str, Any] = {}  # the searches' space, made from the range test's verdict
    steps: list[tuple[str, Callable[[], StepResult]]] = [
        ("initial_loss", lambda: checks.check_initial_loss(trainer, seed=seed)),
        ("overfit", lambda: checks.overfit_small_sample(
            trainer, n_batches=budget.overfit_batches, max_steps=budget.overfit_steps, seed=seed)),
        ("lr_range", lambda: checks.lr_range_test(
            trainer, steps=budget.lr_steps, lrs=_range_lrs(budget.lr_points), seed=seed)),
        ("coarse", lambda: search.coarse_search(
            study, searcher, space, n_trials=budget.coarse_trials, epochs=budget.coarse_epochs,
            n_workers=n_workers, seed=seed, show_progress=show_progress)),
        ("refine", lambda: search.refine(
            study, searcher, space, n_trials=budget.refine_trials, epochs=budget.refine_epochs,
            patience=budget.refine_patience, n_workers=n_workers, seed=seed, show_progress=show_progress)),
        ("final", lambda: search.final(
            study, searcher, space, epochs=budget.final_epochs, seed=seed, show_progress=show_progress)),
    ]
    for step, action in steps:
        recorder.begin(step)
        outcome = action()
        recorder.end(outcome)
        result.steps.append(outcome)
        if not outcome.ok or step == stop_after:
            break
        if step == "lr_range" and adapt_lr:
            space.update(search.adaptive_space(trainer, outcome.evidence["best"], outcome.evidence["range"][1]))
        elif step == "lr_range":
            space.update(search.search_space(trainer, outcome.evidence["range"]))
    last = result.steps[-1]
    if last.step == "final" and last.ok:
        result.value = last.evidence.get("value")
        result.values = last.evidence.get("values")
        model = last.evidence.get("model")
        result.model_path = Path(model) if model else None
    return _finish(result, last, start, console)


def _range_lrs(points: int) -> list[float]:
    return [10 ** (-5 + 5 * i / (points - 1)) for i in range(points)]


def _free_name(store: BaseStorage, name: str | None) -> str:
    """``name``; without one, the first free of ``recipe``, ``recipe-2``, ``recipe-3``, ..."""
    if name is not None:
        return name
    taken = {s.name for s in store.list_studies()}
    candidate, n = "recipe", 1
    while candidate in taken:
        n += 1
        candidate = f"recipe-{n}"
    return candidate


def _finish(result: RecipeResult, last: StepResult, start: float, console: Console) -> RecipeResult:
    result.seconds = time.perf_counter() - start
    if last.verdict == FAIL:
        result.stopped_at = last.step
        console.print(f"[red bold]the recipe stopped at step {_LETTERS[last.step]}. ({_TITLES[last.step]})[/]")
    _print_summary(result, console)
    return result


class _Recorder:
    """Prints each step as it starts and ends, and records its verdict with the study."""

    def __init__(
        self, study: Study, budget: Budget, console: Console, adapt_lr: bool = False, objectives: Sequence[str] = ()
    ) -> None:
        self.study = study
        self.console = console
        self.record: dict[str, Any] = {"budget": asdict(budget), "adapt_lr": adapt_lr,
                                       "objectives": list(objectives), "steps": []}
        study.set_system_attr(RECORD_KEY, self.record)

    def begin(self, step: str) -> None:
        self.console.print(f"[bold]{_LETTERS[step]}. {_TITLES[step]}[/] ...")

    def end(self, outcome: StepResult) -> None:
        mark = {PASS: "[green]pass[/]", FAIL: "[red]FAIL[/]"}.get(outcome.verdict, "[yellow]skip[/]")
        self.console.print(f"   {mark} {escape(outcome.message)} [dim]({outcome.seconds:.1f}s)[/]", highlight=False)
        self.record["steps"].append(outcome.to_json())
        self.study.set_system_attr(RECORD_KEY, self.record)


def recorded_steps(study: Study) -> list[StepResult]:
    """The verdicts a recipe run recorded with ``study`` (empty for a study the recipe did not make)."""
    record = study.system_attrs.get(RECORD_KEY) or {}
    return [StepResult.from_json(s) for s in record.get("steps", [])]


def _print_summary(result: RecipeResult, console: Console) -> None:
    study = result.study
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if done and study.is_multi_objective:
        _print_front(result, console)
    elif done:
        table = Table(title=Text(f"best trials of {study.name} ({study.direction} {_monitor(result)})"))
        names = list(dict.fromkeys(k for t in done for k in t.params))
        for col in ["#", "stage", "epochs", "value", *names]:
            table.add_column(Text(col), justify="right")  # names as typed, never markup
        for t in sorted(done, key=sort_key(study.direction))[:8]:
            train = t.user_attrs.get("train", {})
            table.add_row(str(t.number), str(train.get("stage", "")), str(train.get("epochs", "")),
                          f"{t.value:.4f}", *[Text(_fmt(t.params.get(n))) for n in names])
        console.print(table)
    verdicts = " ".join(f"{_LETTERS[s.step]}:{s.verdict}" for s in result.steps)
    console.print(f"{len(study.trials)} trials, {result.seconds:.1f}s; steps {verdicts}")
    if result.value is not None:
        extra = ""
        if result.values:
            extra = " (" + search.format_values({k: v for k, v in result.values.items() if k != _monitor(result)}) + ")"
        console.print(f"[bold]final validation {escape(_monitor(result))}: {result.value:.4f}[/]{escape(extra)}; "
                      f"model in {escape(str(result.model_path))}")
    console.print(f"study [cyan]{escape(study.name)}[/] is kept: tunelab show {escape(study.name)}")


def _print_front(result: RecipeResult, console: Console) -> None:
    """The Pareto front of the last search stage (refine, else coarse), best first objective first,
    a row per trial; the one step f. trained is marked."""
    study = result.study
    stage, front = next(((s, f) for s in ("refine", "coarse")
                         if (f := search.sorted_front(search.stage_trials(study, s), study.directions))), ("", []))
    if not front:
        return
    chosen = next((s.evidence.get("from_trial") for s in result.steps if s.step == "final"), None)
    goals = ", ".join(f"{d} {n}" for n, d in zip(study.objective_names, study.directions, strict=True))
    table = Table(title=Text(f"Pareto front of the {stage} stage of {study.name} ({goals})"))
    names = list(dict.fromkeys(k for t in front for k in t.params))
    for col in ["trial", *study.objective_names, *names, "final"]:
        table.add_column(Text(col), justify="right")
    for t in front:
        values = [search.format_value(n, v) for n, v in zip(study.objective_names, t.values or (), strict=True)]
        table.add_row(str(t.number), *values,
                      *[Text(_fmt(t.params.get(n))) for n in names], "trained" if t.number == chosen else "")
    console.print(table)


def _monitor(result: RecipeResult) -> str:
    for s in result.steps:
        if s.step == "final":
            return str(s.evidence.get("metric", "value"))
    return "value"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)

