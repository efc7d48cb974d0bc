"""The recipe with several objectives: validation accuracy against the model's parameter count.

``Trainer.objective(objectives=...)`` on a tiny problem, the rule that picks the final
configuration from the Pareto front, bad objective names refused before any training, a whole
``run(objectives=...)`` on a tiny problem, and ``tunelab recipe --quick --objectives val_acc,params``
on the digits CNN (real PyTorch on the CPU)."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.distributions import Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.multiobjective import losses, pareto_mask
from tunelab.pruners import ParetoMedianPruner
from tunelab.recipe import FRONT_TOLERANCE, Budget, choose_from_front, digits, recorded_steps, run
from tunelab.recipe.search import stage_trials
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import get_storage
from tunelab.torch import PARAMS, Trainer, count_parameters

torch.set_num_threads(1)

OBJECTIVES = ("val_acc", "params")
DIRECTIONS = ["maximize", "minimize"]
KNOWN = "the known objectives are val_acc, val_loss, params"


# -- a tiny problem: two rings of points, an MLP whose width trades accuracy for size ---------
def _rings() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    y = (x.norm(dim=1) > 1.2).long()
    return (x[:384], y[:384]), (x[384:], y[384:])


TRAIN, VAL = _rings()


def mlp(params: Mapping[str, ParamValue]) -> nn.Module:
    width = int(params["width"])  # type: ignore[arg-type]
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))


def tiny_trainer() -> Trainer:
    return Trainer(mlp, train=TRAIN, val=VAL, batch_size=32, device="cpu", optimizer="adam",
                   space={"width": Int(2, 64, log=True)}, defaults={"width": 16})


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_non_dominated(front: list[dict[str, Any]], others: list[FrozenTrial]) -> None:
    """No front row dominates another, and every complete trial of ``others`` is matched or dominated."""
    points = losses([[row[n] for n in OBJECTIVES] for row in front], DIRECTIONS)
    assert pareto_mask(points).all()
    for t in others:
        if t.state == TrialState.COMPLETE:
            mine = losses([t.values], DIRECTIONS)[0]
            assert any(np.all(p <= mine) for p in points), (t.number, t.values, front)


# -- Trainer.objective(objectives=...) ---------------------------------------------------------
def test_trainer_objective_returns_val_acc_and_the_parameter_count() -> None:
    trainer = tiny_trainer()
    study = tunelab.create_study(directions=DIRECTIONS, objective_names=OBJECTIVES, seed=0,
                                 sampler=tunelab.RandomSampler())
    study.optimize(trainer.objective(epochs=2, objectives=OBJECTIVES), n_trials=3,
                   space={"lr": tunelab.Float(1e-2, 1e-1, log=True)})
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.values is not None
        acc, size = t.values
        width = int(t.params["width"])  # type: ignore[arg-type]
        assert size == count_parameters(mlp(t.params)) == 5 * width + 2
        curves = study.get_curves(t.number)
        assert curves[PARAMS] == ([1, 2], [size, size])  # a constant metric, every epoch
        assert acc == max(curves["val_acc"][1])
    assert len({t.values[1] for t in study.trials if t.values}) == 3  # the widths differ


def test_trainer_objective_reports_no_params_for_one_objective() -> None:
    study = tunelab.create_study(direction="maximize", seed=0)
    study.optimize(tiny_trainer().objective(epochs=1), n_trials=1, space={"lr": tunelab.Float(1e-2, 1e-1)})
    (t,) = study.trials
    assert PARAMS not in study.get_curves(t.number) and t.values == (t.value,)


@pytest.mark.parametrize(
    ("objectives", "needle"),
    [
        (["val_acc", "bogus"], f"unknown objective 'bogus': {KNOWN}"),
        ("val_acc", "must be a list of names among val_acc, val_loss, params"),
        ([], "must be a list of names"),
        (["params", "params"], "names an objective twice"),
    ],
    ids=["unknown", "a_string", "empty", "twice"],
)
def test_trainer_objective_rejects_bad_objectives(objectives: Any, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        tiny_trainer().objective(epochs=1, objectives=objectives)


# -- the rule that picks the final configuration -----------------------------------------------
def front_of(points: list[tuple[float, float]]) -> list[FrozenTrial]:
    study = tunelab.create_study(directions=DIRECTIONS, objective_names=OBJECTIVES)
    for values in points:
        study.tell(study.ask(), values)
    return study.best_trials


@pytest.mark.parametrize(
    ("points", "chosen", "top"),
    [
        ([(0.98, 200_000.0), (0.975, 80_000.0), (0.972, 50_000.0), (0.95, 10_000.0)], 2, 0),
        ([(0.98, 200_000.0), (0.96, 10_000.0)], 0, 0),  # nothing within a point: the most accurate
        ([(0.9, 5.0), (0.985, 90.0), (0.99, 100.0)], 1, 2),
    ],
    ids=["smallest_within_a_point", "none_within", "order_free"],
)
def test_choose_from_front_takes_the_smallest_model_within_a_point(
    points: list[tuple[float, float]], chosen: int, top: int
) -> None:
    picked, best = choose_from_front(front_of(points), DIRECTIONS)
    assert (picked.number, best.number) == (chosen, top)
    assert FRONT_TOLERANCE == 0.01


def test_choose_from_front_tolerance_widens_the_choice() -> None:
    front = front_of([(0.98, 200_000.0), (0.96, 10_000.0)])
    assert choose_from_front(front, DIRECTIONS, tolerance=0.05)[0].number == 1
    with pytest.raises(ConfigError, match="tolerance"):
        choose_from_front(front, DIRECTIONS, tolerance=-0.1)


# -- bad input, before any training ------------------------------------------------------------
@pytest.mark.parametrize(
    ("objectives", "needle"),
    [
        (("val_acc", "bogus"), f"unknown objective 'bogus': {KNOWN}"),
        (("params", "val_acc"), "first objective must be the trainer's monitor 'val_acc'"),
    ],
    ids=["unknown", "monitor_not_first"],
)
def test_run_rejects_bad_objectives_before_touching_storage(
    tmp_path: Path, objectives: tuple[str, ...], needle: str
) -> None:
    db = tmp_path / "t.db"
    with pytest.raises(ConfigError, match=re.escape(needle)):
        run(tiny_trainer(), storage=f"sqlite:///{db}", objectives=objectives, console=quiet())
    assert not db.exists()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    yield CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "200", "NO_COLOR": "1"})


def test_cli_unknown_objective_is_one_error_line(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    result = runner.invoke(app, ["recipe", "--objectives", "val_acc,bogus", "--storage", url, "--no-progress"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line == f"error: unknown objective 'bogus': {KNOWN}", result.stderr
    assert "a. initial loss" not in result.stdout and not (tmp_path / "t.db").exists()


def test_cli_empty_or_repeated_objectives_name_the_option(runner: CliRunner, tmp_path: Path) -> None:
    # was "objectives=... must be a list of names ..." / "objectives=... names an objective twice": the Python argument
    url = f"sqlite:///{tmp_path / 't.db'}"
    for bad in (",", "val_acc,val_acc"):
        result = runner.invoke(app, ["recipe", "--objectives", bad, "--storage", url, "--no-progress"])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--objectives'" in result.output and "objectives=" not in result.output
    assert not (tmp_path / "t.db").exists()


def test_cli_help_explains_objectives(runner: CliRunner) -> None:
    result = runner.invoke(app, ["recipe", "--help"])
    assert result.exit_code == 0, result.output
    text = flat(result.stdout.replace("│", " "))  # the options' box: its cells' lines joined
    assert "--objectives" in text and "val_acc,params trades validation accuracy against the model's" in text
    assert "smallest model within 1 point of accuracy of the front's most accurate one" in text


# -- run(objectives=...) on the tiny problem ---------------------------------------------------
TINY = Budget(overfit_batches=2, overfit_steps=100, lr_steps=20, lr_points=4, coarse_trials=6,
              coarse_epochs=1, refine_trials=6, refine_epochs=2, final_epochs=3)


def test_run_with_two_objectives_trains_the_choice_from_the_refine_front(tmp_path: Path) -> None:
    console = quiet()
    result = run(tiny_trainer(), storage=None, budget=TINY, n_workers=1, objectives=OBJECTIVES, console=console,
                 artifact_dir=tmp_path, show_progress=False)
    assert result.ok, [s.message for s in result.steps]
    study = result.study
    assert study.objective_names == OBJECTIVES and study.directions == tuple(DIRECTIONS)
    assert isinstance(study.pruner, ParetoMedianPruner)
    assert study.system_attrs["recipe"]["objectives"] == list(OBJECTIVES)

    final = recorded_steps(study)[-1]
    refine = stage_trials(study, "refine")
    chosen, top = choose_from_front(_front(refine), DIRECTIONS)
    assert final.evidence["from_trial"] == chosen.number and final.evidence["top_trial"] == top.number
    assert chosen.number != top.number  # with this seed the rule gives up accuracy for a smaller model
    assert chosen.values is not None and top.values is not None
    assert top.values[0] - FRONT_TOLERANCE <= chosen.values[0] < top.values[0] and chosen.values[1] < top.values[1]
    assert len(final.evidence["front"]) >= 2
    assert_non_dominated(final.evidence["front"], refine)
    (trained,) = stage_trials(study, "final")
    assert trained.params == chosen.params and trained.values is not None
    assert result.values == dict(zip(OBJECTIVES, trained.values, strict=True))
    assert result.value == trained.values[0] and trained.values[1] == count_parameters(mlp(trained.params))
    out = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert "objectives maximize val_acc, minimize params" in out
    assert (f"the smallest model within 0.01 val_acc of the front's best val_acc: trial {top.number} has val_acc "
            f"{top.values[0]:.4f}, params {int(top.values[1])}") in out
    assert f"final validation val_acc: {result.value:.4f} (params {int(trained.values[1]):,})" in out


def _front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    from tunelab.multiobjective import pareto_front_trials

    return pareto_front_trials(trials, DIRECTIONS)


# -- tunelab recipe --quick --objectives val_acc,params on the digits CNN -----------------------
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The command's output (whitespace flattened) and the storage URL: one quick run, one worker."""
    folder = tmp_path_factory.mktemp("digits")
    url = f"sqlite:///{folder / 't.db'}"
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "200", "NO_COLOR": "1"})
    result = runner.invoke(app, ["recipe", "--quick", "--objectives", "val_acc,params", "--n-workers", "1",
                                 "--no-progress", "--storage", url])
    assert result.exit_code == 0, result.output
    return result.stdout, url


@pytest.mark.slow
def test_cli_digits_study_has_two_objectives_and_width_is_searched(digits_run: tuple[str, str]) -> None:
    _, url = digits_run
    study = tunelab.load_study("recipe", url)
    assert study.objective_names == OBJECTIVES and study.directions == tuple(DIRECTIONS)
    steps = recorded_steps(study)
    assert [s.verdict for s in steps] == ["pass"] * 6
    searched = stage_trials(study, "coarse") + stage_trials(study, "refine")
    assert len({t.params["width"] for t in searched}) > 2  # the CNN's width: what trades accuracy for size
    for t in searched + stage_trials(study, "final"):
        if t.state == TrialState.COMPLETE:
            assert t.values is not None and t.values[1] == count_parameters(digits.build(t.params))
    for step in steps[3:5]:  # coarse, refine: each verdict's front is non-dominated
        assert_non_dominated(step.evidence["front"], stage_trials(study, step.step))


@pytest.mark.slow
def test_cli_digits_final_follows_the_rule_and_prints_the_front(digits_run: tuple[str, str]) -> None:
    out, url = digits_run
    study = tunelab.load_study("recipe", url)
    final = recorded_steps(study)[-1]
    front = _front(stage_trials(study, "refine"))
    chosen, top = choose_from_front(front, DIRECTIONS)
    assert final.evidence["from_trial"] == chosen.number and final.evidence["top_trial"] == top.number
    assert chosen.values is not None and top.values is not None
    assert chosen.values[0] >= top.values[0] - FRONT_TOLERANCE and chosen.values[1] <= top.values[1]
    (trained,) = stage_trials(study, "final")
    assert trained.params == chosen.params and trained.values is not None

    text = flat(out)
    assert "Pareto front of the refine stage of recipe (maximize val_acc, minimize params)" in text
    for t in front:  # one row per front member: trial, val_acc, params
        assert t.values is not None
        assert re.search(rf"│ +{t.number} │ +{t.values[0]:.4f} │ +{int(t.values[1]):,} │", out), out
    assert re.search(rf"refine \.\.\. pass .*Pareto front of {len(front)} \(", text)
    assert (f"final validation val_acc: {trained.values[0]:.4f} (params {int(trained.values[1]):,})" in text)
    assert [s.name for s in get_storage(url).list_studies()] == ["recipe"]


def test_the_final_training_of_one_objective_takes_a_feasible_configuration() -> None:
    # The final step trained the configuration with the best value even when it broke a constraint that its
    # trainer recorded (trial.set_constraint), where study.best_trial (and the multi-objective front) never is.
    # The coarse and refine steps' message named that trial "best" too.
    from tunelab.recipe.search import _best, _stage_result

    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler())
    for acc, memory in [(0.97, 9.0), (0.93, 3.0), (0.95, 6.0), (0.99, 12.0)]:
        trial = study.ask()
        trial.set_user_attr("train", {"stage": "coarse"})
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, acc)
    best = _best(study.trials, "maximize")
    assert best is not None and best.number == study.best_trial.number == 2
    step = _stage_result(study, "coarse", 2, 1.0)
    assert step.evidence["best_trial"] == 2 and "best 0.9500 (trial 2" in step.message
    none_ok = [t for t in study.trials if not t.feasible]
    fallback = _best(none_ok, "maximize")
    assert fallback is not None and fallback.number == 0  # nothing feasible: the nearest to it
