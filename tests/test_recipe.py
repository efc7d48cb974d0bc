"""tunelab.recipe: the sanity checks (a.-c.) on planted bugs, ``run()`` stopping at the first
failing step, and the whole recipe through the ``tunelab recipe`` command, with real PyTorch on
the CPU and scikit-learn's digits."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.distributions import Float, ParamValue
from tunelab.errors import ConfigError, DuplicatedStudyError
from tunelab.recipe import (
    STEPS,
    Budget,
    StepResult,
    check_initial_loss,
    digits,
    lr_range_test,
    overfit_small_sample,
    recorded_steps,
    run,
)
from tunelab.records import TrialState
from tunelab.storage import get_storage
from tunelab.torch import Trainer

torch.set_num_threads(1)

TUNELAB = Path(sys.executable).parent / "tunelab"
LN10 = math.log(10)
TRAIN, VAL = digits.load()  # 1,347 images of 8x8 to train, 450 to validate, 10 classes
X_TRAIN, Y_TRAIN = TRAIN


# -- small models on the digits, healthy and with planted bugs ---------------------------------
def small_cnn(params: Mapping[str, ParamValue]) -> nn.Module:
    """One 3x3 convolution (8 channels), a 2x2 max-pool, 32 hidden units, 10 outputs."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8 * 16, 32), nn.ReLU(), nn.Linear(32, 10),
    )


class ScaledHead(nn.Module):
    """The healthy CNN with its logits multiplied by 50: the untrained model is very confident."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 50.0 * self.inner(x)


def scaled_cnn(params: Mapping[str, ParamValue]) -> nn.Module:
    return ScaledHead(small_cnn(params))


def frozen_but_last_bias(params: Mapping[str, ParamValue]) -> nn.Module:
    model = small_cnn(params)
    for name, p in model.named_parameters():
        p.requires_grad_(name == "6.bias")
    return model


def all_frozen(params: Mapping[str, ParamValue]) -> nn.Module:
    model = small_cnn(params)
    model.requires_grad_(False)
    return model


def trainer(build: Any = small_cnn, train: Any = TRAIN, val: Any = VAL, **kwargs: Any) -> Trainer:
    """The setup every check test shares: Adam, batches of 64, the CPU."""
    return Trainer(build, train=train, val=val, optimizer="adam", batch_size=64, device="cpu", **kwargs)


def one_hot(y: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(y, 10).float()


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def flat(text: str) -> str:
    """``text`` with every run of whitespace as one space (undoes the console's line wrapping)."""
    return " ".join(text.split())


# -- a. initial loss ---------------------------------------------------------------------------
def test_initial_loss_of_a_healthy_cnn_is_close_to_ln_10() -> None:
    result = check_initial_loss(trainer())
    assert result.verdict == "pass", result.message
    assert result.step == "initial_loss" and result.ok
    ev = result.evidence
    assert ev["expected"] == pytest.approx(LN10)
    assert "10 classes" in ev["source"]
    assert abs(ev["loss"] - LN10) < 0.05 * LN10
    assert ev["relative_error"] <= ev["tolerance"] == 0.25
    assert ev["batches"] == 10


def test_initial_loss_fails_on_a_head_scaled_by_50() -> None:
    healthy = check_initial_loss(trainer(small_cnn))
    result = check_initial_loss(trainer(scaled_cnn))
    assert healthy.verdict == "pass", healthy.message
    assert result.verdict == "fail" and not result.ok
    for word in ("head", "labels", "loss", "far from the expected 2.3026"):
        assert word in result.message
    assert result.evidence["loss"] > 3 * LN10  # far from chance
    assert result.evidence["relative_error"] > 1.0


def test_initial_loss_fails_on_labels_beyond_the_outputs() -> None:
    shifted = (X_TRAIN, Y_TRAIN + 1)  # labels 1..10 for 10 outputs
    result = check_initial_loss(trainer(train=shifted))
    assert result.verdict == "fail"
    assert "labels go up to 10" in result.message and "10 outputs" in result.message
    assert result.evidence == {"n_outputs": 10, "max_label": 10}


def test_initial_loss_is_skipped_without_an_expected_value_for_mse() -> None:
    regression = trainer(train=(X_TRAIN, one_hot(Y_TRAIN)), val=(VAL[0], one_hot(VAL[1])), loss="mse")
    result = check_initial_loss(regression)
    assert result.verdict == "skip" and result.ok
    assert "expected_initial_loss" in result.message
    assert result.evidence["expected"] is None
    assert 0 < result.evidence["loss"] < 1


def test_initial_loss_of_mse_is_checked_against_the_given_expected_value() -> None:
    data = {"train": (X_TRAIN, one_hot(Y_TRAIN)), "val": (VAL[0], one_hot(VAL[1])), "loss": "mse"}
    measured = check_initial_loss(trainer(**data)).evidence["loss"]
    right = check_initial_loss(trainer(**data, expected_initial_loss=measured))
    wrong = check_initial_loss(trainer(**data, expected_initial_loss=10 * measured))
    assert right.verdict == "pass", right.message
    assert right.evidence["expected"] == pytest.approx(measured) and right.evidence["source"] == "given"
    assert wrong.verdict == "fail", wrong.message
    assert wrong.evidence["relative_error"] == pytest.approx(0.9)


@pytest.mark.parametrize("expected", [-1.0, 0.0, math.nan, "2.3"])
def test_initial_loss_refuses_an_expected_value_that_is_not_a_positive_number(expected: Any) -> None:
    # expected=-1.0 passed any loss (a negative relative error), 0.0 divided by zero.
    with pytest.raises(ConfigError, match=r"check_initial_loss\(expected=\.\.\.\) must be a positive number"):
        check_initial_loss(trainer(), expected=expected)


# -- b. overfit a small sample -----------------------------------------------------------------
def test_a_healthy_cnn_overfits_a_small_sample() -> None:
    result = overfit_small_sample(trainer())
    assert result.verdict == "pass", result.message
    assert "the model can learn" in result.message
    ev = result.evidence
    assert ev["examples"] == 8 * 64 and ev["batches"] == 8
    assert ev["frozen"] == [] and ev["unchanged"] == [] and ev["frozen_fraction"] == 0
    reached = ev["runs"][-1]
    assert reached["reached"] is True and reached["acc"] >= 0.99
    assert reached["steps"] <= 300
    assert all(not r["reached"] for r in ev["runs"][:-1])  # it stops at the first rate that fits


def test_overfit_fails_when_all_but_the_last_bias_is_frozen() -> None:
    result = overfit_small_sample(trainer(frozen_but_last_bias))
    assert result.verdict == "fail"
    assert "cannot learn" in result.message
    assert "requires_grad=False" in result.message and "0.weight" in result.message
    ev = result.evidence
    assert ev["frozen"] == ["0.weight", "0.bias", "4.weight", "4.bias", "6.weight"]
    assert ev["frozen_fraction"] > 0.99
    assert [r["lr"] for r in ev["runs"]] == [1e-3, 1e-2, 1e-4]  # every rate tried
    assert all(not r["reached"] and r["acc"] < 0.5 for r in ev["runs"])


def test_overfit_fails_when_every_parameter_is_frozen() -> None:
    result = overfit_small_sample(trainer(all_frozen))
    assert result.verdict == "fail"
    assert "no trainable parameter" in result.message
    assert len(result.evidence["frozen"]) == 6


def test_overfit_measures_the_accuracy_of_class_probability_targets() -> None:
    # One-hot float targets with cross_entropy crashed (argmax compared with a matrix).
    one_hot_data = {"train": (X_TRAIN, one_hot(Y_TRAIN)), "val": (VAL[0], one_hot(VAL[1]))}
    result = overfit_small_sample(trainer(**one_hot_data), n_batches=1, lrs=[1e-2], max_steps=40)
    labels = overfit_small_sample(trainer(), n_batches=1, lrs=[1e-2], max_steps=40)
    assert [run["acc"] for run in result.evidence["runs"]] == [run["acc"] for run in labels.evidence["runs"]]
    assert result.verdict == "pass", result.message


@pytest.mark.parametrize("loss", [nn.BCEWithLogitsLoss(), nn.functional.binary_cross_entropy_with_logits])
def test_binary_cross_entropy_on_logits_is_checked_against_ln_2_and_overfits_by_accuracy(loss: Any) -> None:
    """A binary classifier trained with BCEWithLogits: its initial loss was skipped (no expected value)
    and the overfit check asked its loss to fall to 1% of where it was after the first pass (0.68 ->
    0.006), so a model at 99% training accuracy 'could not learn'. Now ln 2 (logits near 0 give it,
    whatever the class balance) and the accuracy of logit > 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).float()
    binary = Trainer(lambda p: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1)), train=(x[:320], y[:320]),
                     val=(x[320:], y[320:]), loss=loss, device="cpu")
    initial = check_initial_loss(binary)
    assert initial.verdict == "pass", initial.message
    assert initial.evidence["expected"] == pytest.approx(math.log(2)) and "ln 2" in initial.evidence["source"]
    fitted = overfit_small_sample(binary, n_batches=4, lrs=[1e-2], max_steps=200)
    assert fitted.verdict == "pass", fitted.message
    assert "training accuracy" in fitted.message and fitted.evidence["runs"][0]["acc"] >= 0.99
    weighted_loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))
    weighted = Trainer(binary.build, train=(x, y), val=(x, y), loss=weighted_loss, device="cpu")
    assert check_initial_loss(weighted).verdict == "skip"  # a weighted loss has no ln 2 to compare with


def test_overfit_trains_the_optimizer_the_params_name_at_fixed_rates_of_its_kind() -> None:
    # An 'sgd-hd' trainer was tried at Adam's rates (1e-3, 1e-2, 1e-4: SGD fails to fit where 0.1
    # fits), and params naming 'sgd' on an 'adam-hd' trainer were trained with Adam.
    def curves(optimizer: str, params: dict[str, ParamValue] | None = None, **kw: Any) -> list[Any]:
        t = Trainer(small_cnn, train=TRAIN, val=VAL, optimizer=optimizer, batch_size=64, device="cpu")
        result = overfit_small_sample(t, params, n_batches=1, max_steps=3, **kw)
        return [(r["lr"], r["curve"]) for r in result.evidence["runs"]]

    sgd = curves("sgd")
    assert [lr for lr, _ in sgd] == [1e-2, 1e-1, 1e-3]
    assert curves("sgd-hd") == sgd
    assert curves("adam-hd", {"optimizer": "sgd"}) == sgd
    assert curves("sgd", {"optimizer": "adam-hd"}, lrs=[1e-3]) == curves("adam", lrs=[1e-3])


# -- c. learning-rate range --------------------------------------------------------------------
@pytest.fixture(scope="module")
def healthy_range() -> StepResult:
    """The range test of the healthy CNN over its default rates, 1e-5 to 1."""
    return lr_range_test(trainer())


def test_lr_range_of_a_healthy_cnn(healthy_range: StepResult) -> None:
    assert healthy_range.verdict == "pass", healthy_range.message
    ev = healthy_range.evidence
    low, high = ev["range"]
    assert low < high
    assert low <= ev["best"] <= high
    status = {r["lr"]: r["status"] for r in ev["runs"]}
    assert status[low] == status[high] == status[ev["best"]] == "falls"
    assert all(r["status"] != "falls" for r in ev["runs"] if not low <= r["lr"] <= high)
    assert len(ev["runs"]) == 11 and all(r["curve"][0][0] == 1 for r in ev["runs"])


def test_lr_range_flat_loss_at_tiny_rates_is_slow_not_diverged(healthy_range: StepResult) -> None:
    # At 1e-5 the loss stays at its first batch's value, a little above or below it by noise:
    # a rate too small, not divergence (which would put the range's upper end below 1e-5).
    low = healthy_range.evidence["range"][0]
    below = [r for r in healthy_range.evidence["runs"] if r["lr"] < low]
    assert below and all(r["status"] == "slow" for r in below), [(r["lr"], r["status"]) for r in below]


def test_lr_range_excludes_a_rate_that_diverges() -> None:
    result = lr_range_test(trainer(), lrs=[1e-3, 3e-3, 1e-2, 10.0])
    assert result.verdict == "pass", result.message
    ev = result.evidence
    status = {r["lr"]: r["status"] for r in ev["runs"]}
    assert status[10.0] == "diverged"
    assert ev["diverged_from"] == 10.0
    assert ev["range"][1] == 1e-2  # the largest rate below the one that diverges
    assert "from 10 up the loss diverges" in result.message


def test_lr_range_fails_when_every_rate_diverges() -> None:
    result = lr_range_test(trainer(), lrs=[10.0, 100.0])
    assert result.verdict == "fail"
    assert "every run diverged" in result.message
    assert [r["status"] for r in result.evidence["runs"]] == ["diverged", "diverged"]
    assert "range" not in result.evidence


# -- determinism -------------------------------------------------------------------------------
def checks_evidence(seed: int) -> list[dict[str, Any]]:
    t = trainer()
    return [
        check_initial_loss(t, seed=seed).evidence,
        overfit_small_sample(t, n_batches=2, max_steps=30, seed=seed).evidence,
        lr_range_test(t, lrs=[1e-3, 1e-2], steps=20, seed=seed).evidence,
    ]


def test_checks_are_deterministic_for_a_seed() -> None:
    first, again, other = checks_evidence(0), checks_evidence(0), checks_evidence(1)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))  # the seed matters


# -- run() -------------------------------------------------------------------------------------
@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 't.db'}"


def test_run_stops_at_the_first_failing_step(url: str) -> None:
    console = quiet()
    result = run(trainer(scaled_cnn), storage=url, n_workers=1, console=console, show_progress=False)
    assert result.stopped_at == "initial_loss" and not result.ok
    assert [s.step for s in result.steps] == ["initial_loss"]
    assert result.value is None and result.model_path is None
    study = tunelab.load_study(result.study.name, url)
    assert study.trials == []
    recorded = recorded_steps(study)
    assert [(s.step, s.verdict) for s in recorded] == [("initial_loss", "fail")]
    assert recorded[0].message == result.steps[0].message and "head" in recorded[0].message
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "the recipe stopped at step a." in output and "b. overfit" not in output


def test_run_stop_after_lr_range_records_three_passing_checks(url: str) -> None:
    result = run(trainer(), storage=url, quick=True, stop_after="lr_range", n_workers=1, console=quiet(),
                 show_progress=False)
    assert result.ok and result.stopped_at is None
    study = tunelab.load_study(result.study.name, url)
    assert study.trials == []
    recorded = recorded_steps(study)
    assert [(s.step, s.verdict) for s in recorded] == [(s, "pass") for s in STEPS[:3]]
    assert recorded == [StepResult.from_json(s.to_json()) for s in result.steps]
    assert study.system_attrs["recipe"]["budget"] == asdict(Budget.quick())
    low, high = recorded[2].evidence["range"]
    assert 1e-5 <= low <= high < 1.0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"stop_after": "coarse_search"}, "stop_after"),
        ({"quick": True, "budget": Budget()}, "not both"),
        ({"trainer": trainer(space={"lr": Float(1e-4, 1e-1, log=True)})}, "remove it from the Trainer's space"),
        ({"n_workers": 0}, "n_workers"),
    ],
    ids=["stop_after", "quick_and_budget", "lr_in_space", "n_workers"],
)
def test_run_rejects_bad_arguments_before_touching_storage(
    tmp_path: Path, kwargs: dict[str, Any], needle: str
) -> None:
    db = tmp_path / "t.db"
    args: dict[str, Any] = {"trainer": trainer(), "storage": f"sqlite:///{db}", "console": quiet(), **kwargs}
    with pytest.raises(ConfigError, match=re.escape(needle)):
        run(**args)
    assert not db.exists()


@pytest.mark.parametrize(
    "field", [{"coarse_trials": 0}, {"lr_points": 1}, {"final_epochs": 2.5}, {"refine_patience": 0},
              {"overfit_steps": True}],
)
def test_budget_rejects_a_bad_field(field: dict[str, Any]) -> None:
    (name,) = field
    with pytest.raises(ConfigError, match=rf"Budget\({name}=\.\.\.\)"):
        Budget(**field)


def test_run_refuses_an_explicit_name_that_exists(url: str) -> None:
    tunelab.create_study(name="taken", storage=url)
    with pytest.raises(DuplicatedStudyError, match="taken"):
        run(trainer(), storage=url, name="taken", stop_after="initial_loss", console=quiet())
    assert [s.name for s in get_storage(url).list_studies()] == ["taken"]


def test_run_prints_a_study_name_with_brackets_as_typed(url: str) -> None:
    console = quiet()
    result = run(trainer(scaled_cnn), storage=url, name="cnn[/]v2", n_workers=1, console=console, show_progress=False)
    assert result.study.name == "cnn[/]v2"  # rich read it as markup: MarkupError before any step ran
    assert "study cnn[/]v2 in" in console.file.getvalue()  # type: ignore[attr-defined]


def test_run_default_names_are_recipe_then_recipe_2(url: str) -> None:
    names = [run(trainer(), storage=url, stop_after="initial_loss", console=quiet()).study.name for _ in range(2)]
    assert names == ["recipe", "recipe-2"]
    assert len(recorded_steps(tunelab.load_study("recipe-2", url))) == 1


# -- the command line --------------------------------------------------------------------------
SCALED_PROBLEM = '''
from torch import nn

from tunelab.recipe import digits
from tunelab.torch import Trainer


class Scaled(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return 50.0 * self.inner(x)


def build(params):
    return Scaled(digits.build(params))


trainer = Trainer(build, data=digits.load, space=digits.SPACE, unregularized={"dropout": 0.0})
'''


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    # Importing PROBLEM puts --path and the working directory first on sys.path: on a copy.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})
    for name in set(sys.modules) - before:
        if name.startswith("recipe_problem"):
            del sys.modules[name]


def test_cli_a_failing_check_exits_1_with_its_message(runner: CliRunner, tmp_path: Path, url: str) -> None:
    problems = tmp_path / "problems"
    problems.mkdir()
    (problems / "recipe_problem_scaled.py").write_text(SCALED_PROBLEM)
    result = runner.invoke(app, ["recipe", "recipe_problem_scaled:trainer", "--path", str(problems),
                                 "--storage", url, "--stop-after", "overfit", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = flat(result.stdout)
    assert "a. initial loss ... FAIL initial loss" in out
    assert "is far from the expected 2.3026 (ln 10 (10 classes)" in out and "model's head" in out
    assert "the recipe stopped at step a. (initial loss)" in out
    assert "b. overfit" not in out and "Traceback" not in result.output
    (step,) = recorded_steps(tunelab.load_study("recipe", url))
    assert step.verdict == "fail" and flat(step.message) in out


@pytest.mark.parametrize(
    ("problem", "needle"),
    [
        ("digitz", "is neither 'digits' nor MODULE:ATTR"),
        ("recipe_problem_missing:trainer", "no module named 'recipe_problem_missing'"),
        ("tunelab.recipe:STEPS", "is a tuple; name a tunelab.torch.Trainer"),
        ("tunelab.recipe.digits:build", "is a function that needs arguments"),
    ],
    ids=["no_colon", "no_module", "not_a_trainer", "function_needing_arguments"],
)
def test_cli_a_bad_problem_is_one_error_line(runner: CliRunner, url: str, problem: str, needle: str) -> None:
    result = runner.invoke(app, ["recipe", problem, "--storage", url, "--no-progress"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("error: PROBLEM ") and "\n" not in line, result.stderr
    assert needle in line and problem in line
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_quick_recipe_end_to_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TUNELAB_STORAGE", "COLUMNS")}
    env.update(OMP_NUM_THREADS="1", NO_COLOR="1")
    proc = subprocess.run(
        [str(TUNELAB), "recipe", "--quick", "--no-progress", "--storage", url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for letter in "abcdef":
        assert re.search(rf"^{letter}\. .+ \.\.\.\n\s+pass ", proc.stdout, re.M), proc.stdout
    match = re.search(r"final validation val_acc: (\d\.\d{4})", proc.stdout)
    assert match, proc.stdout

    study = tunelab.load_study("recipe", url)
    steps = recorded_steps(study)
    assert [(s.step, s.verdict) for s in steps] == [(s, "pass") for s in STEPS]
    quick = Budget.quick()
    by_stage: dict[str, list[tunelab.FrozenTrial]] = {}
    for t in study.trials:
        by_stage.setdefault(t.user_attrs["train"]["stage"], []).append(t)
    assert {k: len(v) for k, v in by_stage.items()} == {
        "coarse": quick.coarse_trials, "refine": quick.refine_trials, "final": 1}
    assert {t.user_attrs["train"]["epochs"] for t in by_stage["refine"]} == {quick.refine_epochs}
    assert all(t.state == TrialState.COMPLETE for t in by_stage["refine"] + by_stage["final"])

    # c.'s range, widened by 2 on each side, is the searched lr distribution
    low, high = steps[2].evidence["range"]
    lr = by_stage["coarse"][0].distributions["lr"]
    assert isinstance(lr, Float) and lr.log
    assert lr.low == pytest.approx(low / 2) and lr.high == pytest.approx(high * 2)

    # f.'s model reloads into digits.build and scores exactly the recorded value
    (final,) = by_stage["final"]
    assert final.value is not None and final.value >= 0.95
    assert f"{final.value:.4f}" == match.group(1)
    path = final.user_attrs["fit"]["model"]
    assert steps[5].evidence["model"] == path and steps[5].evidence["value"] == final.value
    assert final.params == steps[5].evidence["params"]
    model = digits.build(final.params)
    extra = tunelab.load_torch(path, model)
    assert extra["best"]["val_acc"] == final.value
    again = digits.trainer().evaluate(model, VAL)
    assert again["val_acc"] == final.value
    assert again["val_loss"] == pytest.approx(steps[5].evidence["at_best"]["val_loss"], rel=1e-5)
