"""tunelab.torch: the Reporter in hand-written loops and the Trainer's loop, with real PyTorch on
the CPU (tiny networks on Gaussian blobs and scikit-learn's digits) and real studies."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tunelab
from objectives import torch_blobs, torch_mlp
from tunelab import Float, Int, MedianPruner, TrialState
from tunelab.errors import ConfigError, TrainingDivergedError
from tunelab.torch import Reporter, Trainer, monitor_direction, resolve_device

torch.set_num_threads(1)

BLOBS_TRAIN, BLOBS_VAL = torch_blobs()  # 240 / 120 rows, 3 classes: 8 steps per epoch at batch 32
STEPS_PER_EPOCH = 8


def _digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """600 images to train, 300 to validate (stratified), pixels in [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, train_size=600, test_size=300, random_state=0, stratify=y)
    return ((torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr)),
            (torch.tensor(x_va, dtype=torch.float32), torch.tensor(y_va)))


DIGITS_TRAIN, DIGITS_VAL = _digits()


def digits_cnn(params: Mapping[str, Any]) -> nn.Module:
    width = int(params.get("width", 8))
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 16, 10))


def blobs_trainer(**kw: Any) -> Trainer:
    kw.setdefault("train", BLOBS_TRAIN)
    kw.setdefault("val", BLOBS_VAL)
    kw.setdefault("batch_size", 32)
    return Trainer(kw.pop("build", torch_mlp), device="cpu", **kw)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'torch.db'}"


class Counting(nn.Module):
    """An MLP on the blobs that counts its forward passes (training never started if zero)."""

    forwards = 0

    def __init__(self) -> None:
        super().__init__()
        self.body = torch_mlp({})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Counting.forwards += 1
        return self.body(x)  # type: ignore[no-any-return]


def never_built(params: Mapping[str, Any]) -> nn.Module:
    raise AssertionError("build() must not be called by the constructor")


def epoch_of_training(model: nn.Module, optimizer: torch.optim.Optimizer, reporter: Reporter,
                      data: tuple[torch.Tensor, torch.Tensor], batch: int = 50) -> None:
    """A hand-written training epoch (in order) that feeds the reporter every step."""
    model.train()
    x, y = data
    for start in range(0, len(y), batch):
        out = model(x[start:start + batch])
        loss = nn.functional.cross_entropy(out, y[start:start + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        reporter.update(loss, out, y[start:start + batch])


@torch.no_grad()
def val_metrics(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    model.eval()
    out = model(data[0])
    return {"val_loss": float(nn.functional.cross_entropy(out, data[1])),
            "val_acc": float((out.argmax(1) == data[1]).float().mean())}


# -- the package ----------------------------------------------------------------------------
def _run_python(code: str) -> None:
    """``code`` in a fresh interpreter, importing this checkout's tunelab."""
    src = str(Path(tunelab.__file__).parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": path,
                                                                   "OMP_NUM_THREADS": "1"})


def test_import_tunelab_and_tunelab_torch_do_not_import_torch_and_the_trainer_does() -> None:
    _run_python(
        "import sys\n"
        "import tunelab\n"
        "assert 'torch' not in sys.modules, 'import tunelab imported torch'\n"
        "import tunelab.torch, tunelab.checkpoints\n"
        "assert 'torch' not in sys.modules, 'import tunelab.torch imported torch'\n"
        "from tunelab.torch import checkpoint\n"
        "assert tunelab.save_torch is tunelab.torch.save_torch is checkpoint.save_torch\n"
        "assert tunelab.load_torch is tunelab.torch.load_torch is checkpoint.load_torch\n"
        "assert not hasattr(tunelab.checkpoints, 'save_torch'), 'PyTorch code lives in tunelab.torch only'\n"
        "assert 'torch' not in sys.modules, 'the save_torch aliases imported torch'\n"
        "from tunelab.torch import Trainer\n"
        "assert 'torch' in sys.modules and Trainer.__module__ == 'tunelab.torch.trainer'\n"
    )


def test_tunelab_torch_exports_every_name_it_lists_and_nothing_else() -> None:
    import tunelab.torch

    for name in tunelab.torch.__all__:
        assert getattr(tunelab.torch, name) is not None and name in dir(tunelab.torch)
    assert {"Reporter", "Trainer", "FitResult", "TrainObjective", "Data", "Tensors", "monitor_direction",
            "resolve_device", "save_torch", "load_torch", "LOOP_FILE"} <= set(tunelab.torch.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        tunelab.torch.Nothing  # noqa: B018


# -- validation -------------------------------------------------------------------------------
DROP = object()
TRAINER_ERRORS = {
    "build": {"build": "model.pt"},
    "train-type": {"train": list(BLOBS_TRAIN)},
    "train-rows": {"train": (BLOBS_TRAIN[0], BLOBS_TRAIN[1][:10])},
    "val-missing": {"val": DROP},
    "data-and-train": {"data": torch_blobs},
    "data-not-callable": {"data": "blobs.csv", "train": DROP, "val": DROP},
    "loss": {"loss": "hinge"},
    "optimizer": {"optimizer": "lbfgs"},
    "batch_size-zero": {"batch_size": 0},
    "batch_size-bool": {"batch_size": True},
    "schedule": {"schedule": "step"},
    "expected_initial_loss": {"expected_initial_loss": -1.0},
    "grad_clip": {"grad_clip": 0.0},
    "device": {"device": "gpu"},
    "space": {"space": {"width": 16}},
    "defaults": {"space": {"width": Int(4, 32)}, "defaults": {"width": 1000}},
    "unregularized": {"space": {"width": Int(4, 32)}, "unregularized": {"width": 1}},
    "monitor": {"monitor": ""},
}


@pytest.mark.parametrize("case", TRAINER_ERRORS, ids=list(TRAINER_ERRORS))
def test_trainer_rejects_each_bad_argument_naming_it(case: str) -> None:
    kw: dict[str, Any] = {"build": never_built, "train": BLOBS_TRAIN, "val": BLOBS_VAL, "device": "cpu"}
    for k, v in TRAINER_ERRORS[case].items():
        if v is DROP:
            kw.pop(k)
        else:
            kw[k] = v
    arg = case.split("-")[0]
    with pytest.raises(ConfigError, match=rf"\b{arg}\b"):
        Trainer(**kw)


REPORTER_ERRORS = {
    "monitor-empty": {"monitor": ""},
    "monitor-number": {"monitor": 3},
    "direction": {"direction": "up"},
    "patience-zero": {"patience": 0},
    "patience-bool": {"patience": True},
    "patience-float": {"patience": 2.5},
    "min_delta-negative": {"min_delta": -0.1},
    "min_delta-string": {"min_delta": "0"},
}


@pytest.mark.parametrize("case", REPORTER_ERRORS, ids=list(REPORTER_ERRORS))
def test_reporter_rejects_each_bad_argument_naming_it(case: str) -> None:
    with pytest.raises(ConfigError, match=rf"\b{case.split('-')[0]}\b"):
        Reporter(None, **REPORTER_ERRORS[case])


FIT_ERRORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "epochs": ({"lr": 0.1}, {"epochs": 0}),
    "eval_every": ({"lr": 0.1}, {"eval_every": 0}),
    "checkpoint_every": ({"lr": 0.1}, {"checkpoint_every": 1}),  # and no trial to keep them in
    "patience": ({"lr": 0.1}, {"patience": 0}),
    "lr-missing": ({}, {}),
    "lr-negative": ({"lr": -0.1}, {}),
    "batch_size": ({"lr": 0.1, "batch_size": 0}, {}),
    "optimizer": ({"lr": 0.1, "optimizer": "lbfgs"}, {}),
    "momentum-string": ({"lr": 0.1, "optimizer": "sgd", "momentum": "0.9"}, {}),
    "weight_decay-negative": ({"lr": 0.1, "weight_decay": -0.01}, {}),
}


@pytest.mark.parametrize("case", FIT_ERRORS, ids=list(FIT_ERRORS))
def test_fit_rejects_bad_arguments_and_parameters_before_training(case: str) -> None:
    params, kw = FIT_ERRORS[case]
    kw = {"epochs": 2, **kw}
    Counting.forwards = 0
    with pytest.raises(ConfigError, match=rf"\b{case.split('-')[0]}\b"):
        blobs_trainer(build=lambda p: Counting()).fit(params, **kw)
    assert Counting.forwards == 0


def test_a_model_with_every_parameter_frozen_is_a_config_error_mentioning_requires_grad() -> None:
    def frozen(params: Mapping[str, Any]) -> nn.Module:
        return torch_mlp(params).requires_grad_(False)  # type: ignore[attr-defined,no-any-return]

    with pytest.raises(ConfigError, match="requires_grad"):
        blobs_trainer(build=frozen).fit({"lr": 0.1}, epochs=1)


def test_a_monitor_the_evaluation_never_reports_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"monitor='val_f1'.*val_acc"):
        blobs_trainer(monitor="val_f1").fit({"lr": 0.05}, epochs=3)


@pytest.mark.parametrize(("metric", "direction"), [
    ("val_loss", "minimize"), ("val_acc", "maximize"), ("top1_accuracy", "maximize"), ("val_F1", "maximize"),
    ("auc", "maximize"), ("perplexity", "minimize"), ("lr", "minimize"),
    ("val_score", "maximize"), ("val/acc", "maximize"), ("episode_reward", "maximize"), ("val_bleu", "maximize"),
])
def test_monitor_direction_maximizes_accuracy_like_names_only(metric: str, direction: str) -> None:
    assert monitor_direction(metric) == direction


def test_a_device_this_process_cannot_use_is_a_config_error_naming_it_before_training() -> None:
    # It was torch's AssertionError "Torch not compiled with CUDA enabled" (or a RuntimeError for mps).
    trainer = Trainer(torch_mlp, train=BLOBS_TRAIN, val=BLOBS_VAL, device="cuda:99")  # no CUDA, or no 100th GPU
    with pytest.raises(ConfigError, match=r"Trainer\(device='cuda:99'\).*device='auto'"):
        trainer.fit({"lr": 0.05}, epochs=1)


def test_resolve_device_reads_cpu_and_rejects_nonsense() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("gpu")


# -- the Reporter -----------------------------------------------------------------------------
def test_reporter_averages_train_loss_and_accuracy_over_samples_since_the_last_report() -> None:
    reporter = Reporter(None)
    # 2 samples, loss 1.0, both right; then 6 samples, loss 4.0, 3 of them right
    reporter.update(torch.tensor(1.0), torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([0, 1]))
    logits = torch.tensor([[5.0, 0.0]] * 6)
    reporter.update(torch.tensor(4.0), logits, torch.tensor([0, 0, 0, 1, 1, 1]))
    row = reporter.report(1, val_loss=0.5)
    assert row == {"train_loss": pytest.approx((2 * 1.0 + 6 * 4.0) / 8), "train_acc": pytest.approx(5 / 8),
                   "val_loss": 0.5}
    assert reporter.report(2, val_loss=0.4) == {"val_loss": 0.4}  # nothing since the last report
    assert [r["step"] for r in reporter.history] == [1, 2]


def test_reporter_refuses_a_metric_that_is_not_a_real_number_naming_it() -> None:
    # float() read "0.5" and True as numbers
    reporter = Reporter(None)
    for value in ("0.5", True):
        with pytest.raises(ConfigError, match=f"metric 'val_acc' must be a real number, got {value!r}"):
            reporter.report(1, val_acc=value)  # type: ignore[arg-type]
    assert reporter.history == []
    row = reporter.report(1, val_acc=torch.tensor(0.5), val_loss=np.float32(0.25))
    assert row == {"val_acc": 0.5, "val_loss": 0.25}


def test_reporter_keeps_no_train_accuracy_for_regression_targets() -> None:
    reporter = Reporter(None)
    reporter.update(torch.tensor(2.0), torch.zeros(4, 1), torch.ones(4, 1))
    assert reporter.report(1, val_loss=1.0) == {"train_loss": 2.0, "val_loss": 1.0}


def test_reporter_tracks_the_best_evaluation_and_patience_with_min_delta() -> None:
    reporter = Reporter(None, monitor="val_acc", patience=2, min_delta=0.01)
    assert reporter.direction == "maximize"
    for step, acc in enumerate([0.5, 0.8, 0.805], start=1):  # 0.805 is within min_delta: no improvement
        reporter.report(step, val_acc=acc)
    assert reporter.best_step == 2 and not reporter.should_stop
    reporter.report(4, val_acc=0.7)
    assert reporter.best == {"step": 2.0, "val_acc": 0.8}
    assert reporter.should_stop


def test_reporter_stores_the_finite_metrics_then_raises_training_diverged_on_nan() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    reporter = Reporter(trial)
    reporter.update(torch.tensor(float("nan")))
    with pytest.raises(TrainingDivergedError, match=r"train_loss=nan, val_loss=inf at step 3"):
        reporter.report(3, val_loss=float("inf"), val_acc=0.25)
    assert study.get_curves(trial.number) == {"val_acc": ([3], [0.25])}


def test_reporter_in_a_hand_written_loop_stores_every_curve_in_the_study(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    study = tunelab.create_study(name="loop", storage=url, direction="maximize", seed=0,
                                 sampler=tunelab.RandomSampler())
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-2, 1e-1, log=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    reporter = Reporter(trial, monitor="val_acc")
    for epoch in range(1, 4):
        epoch_of_training(model, optimizer, reporter, DIGITS_TRAIN)
        reporter.report(epoch, **val_metrics(model, DIGITS_VAL))
    assert reporter.best is not None
    study.tell(trial, reporter.best["val_acc"])

    curves = tunelab.load_study("loop", url).get_curves(0)
    assert set(curves) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    for metric, (steps, values) in curves.items():
        assert steps == [1, 2, 3]
        assert values == [row[metric] for row in reporter.history]
    assert curves["train_loss"][1][-1] < curves["train_loss"][1][0]


def test_a_median_pruner_prunes_through_the_reporter_and_the_curve_is_kept(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path), seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=MedianPruner(n_startup_trials=1, metric="val_loss"))
    reports: list[int] = []

    def objective(trial: tunelab.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
        torch.manual_seed(0)
        model = torch_mlp({})
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        reporter = Reporter(trial)
        for epoch in range(1, 5):
            epoch_of_training(model, optimizer, reporter, BLOBS_TRAIN, batch=40)
            reports.append(trial.number)
            reporter.report(epoch, **val_metrics(model, BLOBS_VAL))
        assert reporter.best is not None
        return reporter.best["val_loss"]

    study.enqueue({"lr": 0.1})
    study.enqueue({"lr": 1e-6})  # barely moves: worse than trial 0 at step 1
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE
    assert bad.state == TrialState.PRUNED
    assert bad.system_attrs["pruned"]["step"] == 1 and bad.system_attrs["pruned"]["metric"] == "val_loss"
    assert reports == [0, 0, 0, 0, 1]
    kept = study.get_curves(1)
    assert kept["val_loss"][0] == [1] and kept["train_loss"][0] == [1]
    assert kept["val_loss"][1][0] > study.get_curves(0)["val_loss"][1][0]


# -- the Trainer's loop -----------------------------------------------------------------------
def test_fit_learns_digits_with_a_small_cnn() -> None:
    trainer = Trainer(digits_cnn, train=DIGITS_TRAIN, val=DIGITS_VAL, batch_size=32, device="cpu")
    result = trainer.fit({"lr": 1e-2, "width": 16}, epochs=8)
    assert result.value == result.best["val_acc"] > 0.85  # chance: 0.1
    assert result.history[-1]["val_loss"] < 0.5 < math.log(10)  # ln 10: the loss of a uniform guess


def test_fit_returns_one_history_row_per_epoch_with_train_and_val_metrics_and_lr() -> None:
    result = blobs_trainer().fit({"lr": 0.05}, epochs=3)
    assert [row["step"] for row in result.history] == [1, 2, 3]
    for row in result.history:
        assert set(row) == {"step", "train_loss", "train_acc", "val_loss", "val_acc", "lr"}
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["lr"] == 0.05
    assert result.steps == 3 * STEPS_PER_EPOCH
    assert result.stopped is None and result.params == {"lr": 0.05}


def test_the_same_seed_gives_a_bit_identical_history_and_another_seed_differs() -> None:
    trainer = blobs_trainer(build=lambda p: nn.Sequential(torch_mlp(p), nn.Dropout(0.2)))
    first = trainer.fit({"lr": 0.05}, epochs=3, seed=7).history
    assert trainer.fit({"lr": 0.05}, epochs=3, seed=7).history == first
    other = trainer.fit({"lr": 0.05}, epochs=3, seed=8).history
    assert [r["train_loss"] for r in other] != [r["train_loss"] for r in first]


def test_eval_every_evaluates_and_reports_every_n_optimizer_steps() -> None:
    result = blobs_trainer().fit({"lr": 0.05}, epochs=3, eval_every=5)
    assert [row["step"] for row in result.history] == [5, 10, 15, 20, 24]  # 24 steps in all: the last seen too
    assert result.steps == 24


def test_eval_every_that_does_not_divide_the_run_evaluates_the_last_steps_too() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    result = blobs_trainer().fit({"lr": 0.05}, epochs=2, trial=trial, eval_every=6, restore_best=False)
    assert [row["step"] for row in result.history] == [6, 12, 16]  # 16 steps: the model returned is evaluated
    assert study.get_curves(trial.number)["val_loss"][0] == [6, 12, 16]
    divides = blobs_trainer().fit({"lr": 0.05}, epochs=2, eval_every=8)
    assert [row["step"] for row in divides.history] == [8, 16]  # no second evaluation of step 16


def test_eval_every_longer_than_the_run_evaluates_once_at_the_end() -> None:
    result = blobs_trainer().fit({"lr": 0.05}, epochs=2, eval_every=100)
    assert [row["step"] for row in result.history] == [16]
    assert result.best["step"] == 16


def test_patience_stops_after_that_many_evaluations_without_improvement() -> None:
    result = blobs_trainer().fit({"lr": 0.05}, epochs=40, patience=2)
    assert result.stopped == "patience"
    assert len(result.history) < 40
    assert result.history[-1]["step"] == result.best["step"] + 2
    assert all(row["val_acc"] <= result.best["val_acc"] for row in result.history)


def test_restore_best_leaves_the_weights_of_the_best_evaluation() -> None:
    trainer = blobs_trainer()
    result = trainer.fit({"lr": 0.05}, epochs=40, patience=2)
    last = result.history[-1]
    assert result.best["step"] < last["step"] and result.best["val_loss"] != last["val_loss"]
    again = trainer.evaluate(result.model, BLOBS_VAL)
    assert again == {"val_loss": result.best["val_loss"], "val_acc": result.best["val_acc"]}

    kept_last = trainer.fit({"lr": 0.05}, epochs=40, patience=2, restore_best=False)
    assert trainer.evaluate(kept_last.model, BLOBS_VAL)["val_loss"] == last["val_loss"]


def test_a_cosine_schedule_anneals_the_learning_rate_to_zero() -> None:
    result = blobs_trainer(schedule="cosine").fit({"lr": 0.1}, epochs=4)
    lrs = [row["lr"] for row in result.history]
    assert lrs[1] == pytest.approx(0.05)  # half-way: half the base rate
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_batch_size_as_a_hyperparameter_sets_the_steps_per_epoch() -> None:
    assert blobs_trainer().fit({"lr": 0.05, "batch_size": 60}, epochs=2).steps == 2 * 4


def test_numpy_scalars_are_legal_hyperparameters() -> None:
    # A grid from numpy: np.int64 batch sizes and np.float32 rates were refused as not integers / not positive.
    import numpy as np

    result = blobs_trainer().fit({"lr": np.float32(0.05), "batch_size": np.int64(60)}, epochs=2)
    assert result.steps == 2 * 4 and result.value > 0.9


def test_dataloaders_are_trained_on_with_their_own_batches() -> None:
    train = DataLoader(TensorDataset(*BLOBS_TRAIN), batch_size=40, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(*BLOBS_VAL), batch_size=50)
    result = Trainer(torch_mlp, train=train, val=val, device="cpu").fit({"lr": 0.05}, epochs=3)
    assert result.steps == 3 * 6
    assert [row["step"] for row in result.history] == [1, 2, 3]
    assert result.value > 0.9


def test_batch_size_as_a_hyperparameter_with_a_dataloader_is_a_config_error() -> None:
    loader = DataLoader(TensorDataset(*BLOBS_TRAIN), batch_size=40)
    trainer = Trainer(torch_mlp, train=loader, val=BLOBS_VAL, device="cpu")
    with pytest.raises(ConfigError, match=r"batch_size.*DataLoader"):
        trainer.fit({"lr": 0.05, "batch_size": 32}, epochs=1)


def test_class_probability_targets_get_the_accuracy_of_their_class_indices() -> None:
    # One-hot (or smoothed) float targets are legal for cross_entropy; their accuracy was 0.0 at
    # every evaluation (val_acc, the default monitor: the best was always the first) and absent in training.
    def one_hot(data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return data[0], nn.functional.one_hot(data[1], 3).float()

    labels = blobs_trainer().fit({"lr": 0.05}, epochs=3)
    probabilities = blobs_trainer(train=one_hot(BLOBS_TRAIN), val=one_hot(BLOBS_VAL)).fit({"lr": 0.05}, epochs=3)
    for name in ("train_acc", "val_acc"):
        assert [r[name] for r in probabilities.history] == [r[name] for r in labels.history]
    assert probabilities.value == labels.value > 0.9


@pytest.mark.parametrize("loss", [nn.BCEWithLogitsLoss(), nn.functional.binary_cross_entropy_with_logits])
def test_a_binary_classifier_on_logits_reports_the_accuracy_of_logit_above_0(loss: Any) -> None:
    # with BCEWithLogitsLoss no train_acc or val_acc was reported (only cross_entropy/nll made a classifier)
    def binary(data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return data[0], (data[1] == 0).float().unsqueeze(1)  # class 0 against the rest, one logit per row

    width = BLOBS_TRAIN[0].shape[1]
    trainer = blobs_trainer(build=lambda p: nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, 1)),
                            train=binary(BLOBS_TRAIN), val=binary(BLOBS_VAL), loss=loss)
    result = trainer.fit({"lr": 0.05}, epochs=3)
    for row in result.history:
        assert "train_acc" in row and "val_acc" in row, row
        assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["val_acc"] <= 1.0
    assert trainer.binary and not trainer.classifier and "val_acc" in trainer.objective_names()
    assert result.history[-1]["val_acc"] > 0.9
    model = trainer.build_model({"lr": 0.05})
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.fill_(1.0)  # every logit 1 > 0: predicts 1 everywhere, right on the class-0 rows only
    share = float(binary(BLOBS_VAL)[1].mean())
    assert trainer.evaluate(model, binary(BLOBS_VAL))["val_acc"] == pytest.approx(share)


def test_a_cross_entropy_module_reports_val_acc_as_it_reports_train_acc() -> None:
    # loss=nn.CrossEntropyLoss() (a callable) reported train_acc but no val_acc
    named = blobs_trainer(monitor="val_loss").fit({"lr": 0.05}, epochs=2)
    module = blobs_trainer(loss=nn.CrossEntropyLoss()).fit({"lr": 0.05}, epochs=2)
    for name in ("train_acc", "val_acc"):
        assert [r.get(name) for r in module.history] == [r[name] for r in named.history]


class _Stream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Rows one by one, with no __len__ (a stream)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Any:
        return iter(zip(self.x, self.y, strict=True))


EMPTY_LOADERS = {
    "train-empty": ("train", lambda: DataLoader(TensorDataset(BLOBS_TRAIN[0][:0], BLOBS_TRAIN[1][:0]), batch_size=8)),
    "val-empty": ("val", lambda: DataLoader(TensorDataset(BLOBS_VAL[0][:0], BLOBS_VAL[1][:0]), batch_size=8)),
    "train-drop_last": ("train", lambda: DataLoader(TensorDataset(*BLOBS_TRAIN), batch_size=500, drop_last=True)),
    "val-drop_last": ("val", lambda: DataLoader(TensorDataset(*BLOBS_VAL), batch_size=500, drop_last=True)),
    "train-no_length": ("train", lambda: DataLoader(_Stream(*BLOBS_TRAIN), batch_size=32)),
    "val-stream_empty": ("val", lambda: DataLoader(_Stream(BLOBS_VAL[0][:0], BLOBS_VAL[1][:0]), batch_size=32)),
}


@pytest.mark.parametrize("case", EMPTY_LOADERS, ids=list(EMPTY_LOADERS))
def test_a_dataloader_without_batches_or_length_is_a_config_error_naming_it(case: str) -> None:
    # An empty loader (or drop_last dropping every row) trained 0 steps and "passed"; an empty
    # validation loader reported val_loss 0.0 and val_acc 0.0; a stream raised a bare TypeError.
    which, make = EMPTY_LOADERS[case]
    data = {"train": BLOBS_TRAIN, "val": BLOBS_VAL, which: make()}
    with pytest.raises(ConfigError, match=rf"\b{which}\b"):
        Trainer(torch_mlp, device="cpu", **data).fit({"lr": 0.05}, epochs=1)


class _Records(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Items as dicts, which the Trainer cannot split into inputs and targets."""

    def __len__(self) -> int:
        return len(BLOBS_TRAIN[1])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": BLOBS_TRAIN[0][i], "y": BLOBS_TRAIN[1][i]}


def test_a_dataloader_of_dicts_is_a_config_error_saying_what_a_batch_must_be() -> None:
    # It raised a bare KeyError: 0.
    trainer = Trainer(torch_mlp, train=DataLoader(_Records(), batch_size=32), val=BLOBS_VAL, device="cpu")
    with pytest.raises(ConfigError, match=r"batch must be \(inputs, targets\)"):
        trainer.fit({"lr": 0.05}, epochs=1)


def test_a_validation_stream_without_length_is_evaluated() -> None:
    val = DataLoader(_Stream(*BLOBS_VAL), batch_size=50)
    result = Trainer(torch_mlp, train=BLOBS_TRAIN, val=val, device="cpu").fit({"lr": 0.05}, epochs=2)
    assert result.value > 0.9


@pytest.mark.parametrize("how", ["huge-lr", "nan-loss"])
def test_a_diverging_run_raises_training_diverged(how: str) -> None:
    if how == "huge-lr":
        trainer = blobs_trainer(optimizer="sgd")
        lr = 1e3
    else:
        trainer = blobs_trainer(loss=lambda out, y: nn.functional.cross_entropy(out, y) * float("nan"))
        lr = 0.05
    with pytest.raises(TrainingDivergedError, match="val_loss=nan at step 1"):
        trainer.fit({"lr": lr}, epochs=3)


def test_a_data_function_is_called_once_and_never_mistaken_for_a_freed_one() -> None:
    calls: list[int] = []
    for k in range(4):  # each function is freed before the next is made: CPython reuses the id
        def load(k: int = k) -> Any:
            calls.append(k)
            x, y = torch.full((8, 2), float(k)), torch.zeros(8, dtype=torch.long)
            return (x, y), (x, y)

        trainer = Trainer(torch_mlp, data=load, device="cpu")
        first, _ = trainer.load_data()
        again, _ = trainer.load_data()
        assert again is first and float(first[0][0, 0]) == k
        del trainer, load
    assert calls == [0, 1, 2, 3]


# -- the Trainer with studies -----------------------------------------------------------------
def test_fit_with_a_trial_stores_each_evaluation_as_the_trial_curve() -> None:
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    result = blobs_trainer().fit({"lr": 0.05}, epochs=3, trial=trial)
    curves = study.get_curves(trial.number)
    assert set(curves) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr"}
    for metric, (steps, values) in curves.items():
        assert steps == [1, 2, 3] and values == [row[metric] for row in result.history]


def test_a_trainer_without_a_space_of_its_own_runs_on_the_study_space() -> None:
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler(),
                                 space={"lr": Float(1e-2, 1e-1, log=True)})
    study.optimize(blobs_trainer().objective(epochs=2), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(set(t.params) == {"lr"} and t.value is not None and t.value > 0.9 for t in study.trials)


def test_a_diverged_trial_fails_with_the_message_and_the_study_goes_on(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path), direction="maximize", seed=0,
                                 sampler=tunelab.RandomSampler(), space={"lr": Float(1e-3, 1e4, log=True)})
    study.enqueue({"lr": 1e3})
    study.enqueue({"lr": 0.05})
    study.optimize(blobs_trainer(optimizer="sgd").objective(epochs=2), n_trials=2)
    diverged, fine = study.trials
    assert diverged.state == TrialState.FAIL
    assert diverged.error is not None and "TrainingDivergedError" in diverged.error
    assert "the run diverged; lower the learning rate" in diverged.error
    assert set(study.get_curves(0)) == {"train_acc", "val_acc", "lr"}  # the finite metrics of step 1
    assert fine.state == TrialState.COMPLETE and fine.value is not None and fine.value > 0.9


def test_checkpoint_every_writes_checkpoints_through_the_trial_that_load_torch_reads(tmp_path: Path) -> None:
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler(),
                                 artifact_dir=tmp_path)
    trial = study.ask()
    result = blobs_trainer().fit({"lr": 0.05}, epochs=3, trial=trial, checkpoint_every=1, restore_best=False)
    assert [c.step for c in trial.checkpoints()] == [2, 3]  # every evaluation (epoch); the policy keeps 2
    assert trial.checkpoint_dir.is_relative_to(tmp_path)

    torch.manual_seed(123)
    model = torch_mlp({})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    extra = tunelab.load_torch(trial.checkpoints()[-1].path, model, optimizer)
    assert extra == {"step": 3, "optimizer_step": 24}
    assert optimizer.state_dict()["state"], "Adam's moments were restored"
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    study.tell(trial, result.value)
    assert [c.step for c in study.checkpoints(0)] == [3]  # a COMPLETE trial keeps its newest


def test_a_resume_from_the_checkpoint_of_the_last_steps_evaluation_does_not_evaluate_them_again(
    tmp_path: Path,
) -> None:
    # eval_every=5 over 16 steps: evaluations at 5, 10, 15 and the last steps' at 16, checkpointed. A
    # process killed after that checkpoint resumed from it and evaluated step 16 a second time.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), artifact_dir=tmp_path)
    first = study.ask()
    reference = blobs_trainer().fit({"lr": 0.05}, epochs=2, eval_every=5, trial=first, checkpoint_every=1)
    assert [int(r["step"]) for r in reference.history] == [5, 10, 15, 16]
    resumed = blobs_trainer().fit({"lr": 0.05}, epochs=2, eval_every=5, trial=study.ask(), checkpoint_every=1,
                                  resume=first.latest_checkpoint())
    assert resumed.history == reference.history and resumed.steps == 16


def test_a_resume_from_the_checkpoint_where_patience_ran_out_stops_there(tmp_path: Path) -> None:
    # It trained on (an epoch more, or to the end) as if patience had not run out.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), artifact_dir=tmp_path)
    first = study.ask()
    reference = blobs_trainer().fit({"lr": 0.05}, epochs=40, patience=2, trial=first, checkpoint_every=1)
    assert reference.stopped == "patience"
    last = first.latest_checkpoint()
    assert last is not None and last.step == reference.history[-1]["step"]
    resumed = blobs_trainer().fit({"lr": 0.05}, epochs=40, patience=2, trial=study.ask(), resume=last)
    assert resumed.stopped == "patience" and resumed.steps == reference.steps
    assert resumed.history == reference.history and resumed.value == reference.value


def test_fit_checkpoints_keep_their_format_torch_pt_beside_tunelab_loop_pt(tmp_path: Path) -> None:
    # The names and keys of the files that earlier versions wrote: branches resume from them.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), artifact_dir=tmp_path)
    trial = study.ask()
    blobs_trainer().fit({"lr": 0.05}, epochs=2, trial=trial, eval_every=5, checkpoint_every=1, restore_best=False)
    kept = {c.step: c for c in trial.checkpoints()}
    assert max(kept) == 16 and 15 in kept  # evaluations at steps 5, 10, 15 and the end (16)
    latest = kept[15]
    assert {"torch.pt", "tunelab-loop.pt"} <= {p.name for p in latest.path.iterdir()}
    assert tunelab.load_torch(latest.path, restore_rng=False) == {"step": 15, "optimizer_step": 15}
    loop = tunelab.load_torch(latest.path / "tunelab-loop.pt", restore_rng=False)
    assert list(loop) == ["version", "epoch", "batch", "generator", "steps_per_epoch", "evaluations", "reporter",
                          "params", "best_is_last", "best_model", "epoch_torch_rng", "epoch_loader_rng"]
    assert isinstance(loop["epoch_torch_rng"], torch.Tensor)  # mid-epoch: torch's RNG when the epoch began
    position = (loop["version"], loop["epoch"], loop["batch"], loop["steps_per_epoch"], loop["evaluations"])
    assert position == (1, 1, 7, 8, 3)  # epoch 1, 7 of its 8 batches done
    assert loop["params"] == {"lr": 0.05} and loop["best_is_last"] is False and loop["best_model"] is None
    assert [row["step"] for row in loop["reporter"]["history"]] == [5.0, 10.0, 15.0]


def test_save_model_writes_the_best_model_as_a_checkpoint_of_the_trial(tmp_path: Path) -> None:
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler(),
                                 artifact_dir=tmp_path, space={"lr": Float(1e-2, 1e-1, log=True)})
    trainer = Trainer(torch_mlp, data=torch_blobs, space={"width": Int(4, 32, log=True)}, batch_size=32,
                      device="cpu")
    study.optimize(trainer.objective(epochs=3, save_model=True), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value is not None
    folder = Path(trial.user_attrs["fit"]["model"])
    assert (folder / "torch.pt").is_file() and folder.is_relative_to(tmp_path)
    assert study.checkpoints(0)[-1].path == folder and study.checkpoints(0)[-1].step == 3  # the last epoch
    assert json.loads((folder / "params.json").read_text()) == trial.params
    assert [row["step"] for row in json.loads((folder / "history.json").read_text())] == [1, 2, 3]

    model = torch_mlp(trial.params)
    extra = tunelab.load_torch(folder, model)
    assert extra["best"]["val_acc"] == trial.value
    assert trainer.evaluate(model, BLOBS_VAL)["val_acc"] == trial.value


@pytest.mark.slow
def test_the_trainer_objective_runs_in_two_worker_processes(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path), direction="maximize", seed=0,
                                 sampler=tunelab.RandomSampler(), space={"lr": Float(1e-2, 1e-1, log=True)})
    trainer = Trainer(torch_mlp, data=torch_blobs, space={"width": Int(4, 32, log=True)}, batch_size=32,
                      device="cpu")
    study.optimize(trainer.objective(epochs=3, tag={"data": "blobs"}), n_trials=4, n_workers=2)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for t in trials:
        assert set(t.params) == {"lr", "width"}
        assert t.user_attrs["train"] == {"epochs": 3, "data": "blobs"}
        fit = t.user_attrs["fit"]
        assert fit["steps"] == 3 * STEPS_PER_EPOCH and fit["stopped"] is None and fit["seconds"] > 0
        steps, accs = study.get_curves(t.number)["val_acc"]
        assert steps == [1, 2, 3]
        assert t.value == max(accs) and fit["best_step"] == steps[accs.index(max(accs))]


def test_a_float64_model_trains_and_passes_the_checks_on_float32_data() -> None:
    """A model built in float64 on float32 tensors or a float32 DataLoader: fit and the recipe's checks
    failed with torch's "mat1 and mat2 must have the same dtype". The inputs now come in the model's
    dtype: the same history as with float64 data, bit for bit."""
    from tunelab.recipe import check_initial_loss, overfit_small_sample

    (x, y), (xv, yv) = BLOBS_TRAIN, BLOBS_VAL

    def double(params: Mapping[str, Any]) -> nn.Module:
        return torch_mlp(dict(params)).double()  # type: ignore[no-any-return, attr-defined]

    histories, initial = [], []
    for data in ({"train": (x, y), "val": (xv, yv)}, {"train": (x.double(), y), "val": (xv.double(), yv)},
                 {"data": lambda: (DataLoader(TensorDataset(x, y), batch_size=32), DataLoader(TensorDataset(xv, yv)))}):
        trainer = Trainer(double, device="cpu", batch_size=32, **data)  # type: ignore[arg-type]
        histories.append(trainer.fit({"lr": 1e-2}, epochs=2).history)
        initial.append(check_initial_loss(trainer).evidence["loss"])
        assert overfit_small_sample(trainer, n_batches=2, lrs=[1e-2], max_steps=60).verdict == "pass"
    assert histories[0] == histories[1]  # float32 tensors cast, float64 tensors: the same run
    assert initial[0] == initial[1] == initial[2] and math.isfinite(initial[0])
    assert histories[0][-1]["val_acc"] > 0.8 and histories[2][-1]["val_acc"] > 0.8  # the loader's (unshuffled) too
