"""Multi-fidelity: early stopping on a real training problem, epochs as the resource.

A small PyTorch network on scikit-learn's digits is trained epoch by epoch, up to ``R`` epochs
(default 27), and reports its validation loss and accuracy after every epoch. Each method gets
the same budget of ``E`` epochs in total (default 30 full trainings, ``30 * R``), counted as
trained, and spends it as it likes: random search trains ``E / R`` configurations to the end;
the pruners (median, ASHA, Hyperband, in tunelab and in Optuna; ASHA with TPE) start many more
and stop most of them early; population-based training (``tunelab.pbt``) trains ``E / R``
members side by side. Every method runs once per seed (``METHODS`` is the registry; add a
line to add a method). Printed, and saved as JSON with every trial's curve:

- per method: the median and IQR over seeds of the best validation accuracy and loss found
  (at any epoch of any trial), at the whole budget and at 1/9 and 1/3 of it, and the epochs
  and trials used;
- per method: the epochs it needed to first reach the best validation accuracy of its library's
  full-budget random search with the same seed (same configurations, same order), and the
  median ratio to the epochs random search needed;
- whether the targets hold: (1) ASHA reaches random search's best validation accuracy with at
  most 1/3 of random search's epochs (median over seeds); (2) ASHA's median best accuracy at
  the whole budget is at least that of each of Optuna's pruners; (4) the learning-curve pruner
  (``tunelab-curve``, and ``tunelab-curve-asha`` with ASHA's rungs ranked by predicted values) finds a
  better median final val acc (at epoch R of a full trial) than ASHA (``tunelab-curve-tpe``: TPE
  fitted on the pruner's predicted final values, too); with ``--wrong-stops`` the stopped trials of
  every pruner are trained to the end after the runs (outside their budget; each configuration once,
  its curve being the same in every run) and those that would have ended in their run's top 3 (by
  final val loss) are counted as wrong stops.

Run ``make bench-multifidelity`` or
``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/multifidelity.py [--quick]``;
``--from-json PATH`` prints the tables of a saved run again without running anything;
``--merge PATH...`` takes the runs of saved (or partial) results and runs only the (method, seed) pairs
they lack.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from overhead import machine_info
from problems import DIGITS_TRAIN, LOSS_CAP, torch_digits_data
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from suite import THREAD_VARS, fmt_duration, library_versions, name_list, suggest

import tunelab
from tunelab.distributions import Categorical, Distribution, Float, Int

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MAX_EPOCHS = 27
"""R: a full training, and the pruners' max_resource."""
BUDGET_TRIALS = 30
"""E = BUDGET_TRIALS * R epochs per run."""
SEEDS = 10
QUICK_SEEDS, QUICK_BUDGET_TRIALS = 2, 10
ETA = 3
"""The reduction factor of every successive-halving method; min_resource is 1 epoch."""
ANYTIME = (9, 3, 1)
"""The best values are also read after E/9 and E/3 epochs."""
TARGET_RATIO = 1.0 / 3.0
CHECKPOINT_EVERY_S = 30.0
SEED_OF_WEIGHTS = 0
"""Initial weights, shuffling and dropout masks are seeded with this: a configuration's curve never changes."""
CURVE_MIN_POINTS, CURVE_CONFIDENCE = 5, 0.95
"""The learning-curve pruner's settings."""
TOP = 3
"""A wrong stop: a stopped trial that, trained to the end, would have ended among the run's best TOP."""
NO_STOPS = ("tunelab-random", "optuna-random", "tunelab-pbt")
"""Methods that stop no trial; with ``--wrong-stops`` every other method's stopped trials are trained to
the end after the runs (outside their budget), to count its wrong stops."""
TIE = 1e-9
"""Two accuracies closer than this are equal (they are counts of a 1,197-image validation set)."""


# -- the problem ------------------------------------------------------------------------------
SPACE: dict[str, Distribution] = {
    "lr": Float(1e-5, 1.0, log=True),
    "weight_decay": Float(1e-6, 1e-1, log=True),
    "width": Int(16, 256, log=True),
    "dropout": Float(0.0, 0.7),
    "optimizer": Categorical(["sgd", "adam"]),
    "batch_size": Int(32, 256, log=True),
}
PROBLEM = (
    f"PyTorch MLP (64 -> width -> width -> 10, ReLU, dropout after each hidden layer) on scikit-learn's digits: "
    f"the torch_digits split of problems.py ({DIGITS_TRAIN} images train, the other 1,197 validate, standardised); "
    "constant learning rate, SGD with momentum 0.9 or Adam, minibatches sliced from shuffled tensors; "
    f"validation loss capped at {LOSS_CAP} (also for NaN)"
)


@dataclass(frozen=True)
class EpochResult:
    """What one epoch of training reports."""

    val_loss: float
    val_acc: float


class DigitsTrainer:
    """One network on digits, trained one epoch at a time; deterministic given its parameters.

    The weights, the shuffling and the dropout masks come from generators of its own, seeded
    with ``SEED_OF_WEIGHTS``, so its curve is the same whatever runs in between (other trainers,
    a sampler): training a configuration for 3 epochs gives the first 3 points of its 27-epoch
    curve. ``model`` and ``optimizer`` are what population-based training saves and copies;
    ``set_hyperparameters`` applies its perturbations.
    """

    def __init__(self, params: Mapping[str, Any], seed: int = SEED_OF_WEIGHTS) -> None:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        self._torch = torch
        self.x_tr, self.x_va, self.y_tr, self.y_va = torch_digits_data()
        width, dropout = int(params["width"]), float(params["dropout"])
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        self.model = nn.Sequential(
            nn.Linear(64, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, 10),
        )
        self._rng = torch.get_rng_state()  # the dropout masks' own stream
        torch.set_rng_state(saved)
        lr, wd = float(params["lr"]), float(params["weight_decay"])
        self.optimizer: torch.optim.Optimizer
        if params["optimizer"] == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=wd)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
        self.batch_size = int(params["batch_size"])
        self.loss_fn = nn.CrossEntropyLoss()
        self.shuffle = torch.Generator().manual_seed(seed)
        self.epochs = 0

    def train_epoch(self) -> EpochResult:
        """One pass over the training images, then the validation loss and accuracy."""
        torch = self._torch
        saved = torch.get_rng_state()
        torch.set_rng_state(self._rng)
        try:
            self.model.train()
            order = torch.randperm(self.x_tr.shape[0], generator=self.shuffle)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                self.loss_fn(self.model(self.x_tr[batch]), self.y_tr[batch]).backward()
                self.optimizer.step()
        finally:
            self._rng = torch.get_rng_state()
            torch.set_rng_state(saved)
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.x_va)
            loss = float(self.loss_fn(logits, self.y_va))
            correct = int((logits.argmax(dim=1) == self.y_va).sum())
        self.epochs += 1
        loss = loss if math.isfinite(loss) and loss < LOSS_CAP else LOSS_CAP
        return EpochResult(val_loss=loss, val_acc=correct / len(self.y_va))

    def set_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Change lr, weight_decay, dropout and batch_size in place (PBT's explore step)."""
        if "batch_size" in params:
            self.batch_size = int(params["batch_size"])
        for group in self.optimizer.param_groups:
            if "lr" in params:
                group["lr"] = float(params["lr"])
            if "weight_decay" in params:
                group["weight_decay"] = float(params["weight_decay"])
        if "dropout" in params:
            for module in self.model.modules():
                if isinstance(module, self._torch.nn.Dropout):
                    module.p = float(params["dropout"])


# -- one run: a method spending an epoch budget -----------------------------------------------
@dataclass
class RunLog:
    """The epoch budget of one run and every trial's curve, in the order the epochs were trained.

    Each trial: its number, parameters, ``start`` (epochs the run had trained before it; for
    trials trained side by side, ``at``: the run's epoch count after each of its epochs), its
    validation curves, how it ended ('complete', 'pruned', or 'cut' when the budget ran out
    during it), its training seconds and, for tunelab, the rung a model-based sampler fitted
    on (``fidelity_step``) and the rule that pruned it (``pruned_rule``).
    """

    max_epochs: int
    budget: int
    used: int = 0
    trials: list[dict[str, Any]] = field(default_factory=list)
    train_wall_s: float = 0.0
    train_cpu_s: float = 0.0

    @property
    def left(self) -> int:
        """Epochs left to train."""
        return self.budget - self.used

    def start_trial(self, number: int, params: Mapping[str, Any], side_by_side: bool = False) -> dict[str, Any]:
        """A new trial's record (appended to ``trials``)."""
        record: dict[str, Any] = {"number": number, "params": dict(params), "start": self.used,
                                  "val_loss": [], "val_acc": [], "state": "complete", "train_s": 0.0}
        if side_by_side:
            record["at"] = []
        self.trials.append(record)
        return record

    def new_trainer(self, record: dict[str, Any], params: Mapping[str, Any]) -> DigitsTrainer:
        """A trainer for ``params`` (its building time counts as training)."""
        wall, cpu = time.perf_counter(), time.process_time()
        trainer = DigitsTrainer(params)
        self._charge(record, wall, cpu)
        return trainer

    def train_epoch(self, record: dict[str, Any], trainer: DigitsTrainer) -> EpochResult:
        """One epoch of ``trainer``, counted against the budget and appended to the trial's curves."""
        wall, cpu = time.perf_counter(), time.process_time()
        result = trainer.train_epoch()
        self._charge(record, wall, cpu)
        self.used += 1
        record["val_loss"].append(round(result.val_loss, 6))
        record["val_acc"].append(round(result.val_acc, 6))
        if "at" in record:
            record["at"].append(self.used)
        return result

    def train_trial(
        self, number: int, params: Mapping[str, Any], report: Callable[[int, EpochResult], None],
        should_prune: Callable[[], bool],
    ) -> tuple[str, float]:
        """Train one configuration, reporting after every epoch (1-based) and asking whether to stop.

        The pruner is not asked after the last epoch (there is nothing left to save). Returns
        how the trial ended and its last validation loss.
        """
        record = self.start_trial(number, params)
        trainer = self.new_trainer(record, params)
        last = math.nan
        for epoch in range(1, self.max_epochs + 1):
            if self.left <= 0:
                record["state"] = "cut"
                break
            result = self.train_epoch(record, trainer)
            last = result.val_loss
            report(epoch, result)
            if epoch < self.max_epochs and should_prune():
                record["state"] = "pruned"
                break
        return record["state"], last

    def _charge(self, record: dict[str, Any], wall: float, cpu: float) -> None:
        dt = time.perf_counter() - wall
        self.train_wall_s += dt
        self.train_cpu_s += time.process_time() - cpu
        record["train_s"] = round(record["train_s"] + dt, 4)


RunFn = Callable[[RunLog, int], None]
"""Spend a RunLog's budget with a seed."""


def tunelab_runner(sampler: Callable[[], Any], pruner: Callable[[int], Any]) -> RunFn:
    """A tunelab study in memory on ``SPACE``: trials until the budget is spent.

    ``study.optimize`` has no budget but a number of trials, so it runs one trial per call while
    epochs are left; the objective raises ``tunelab.TrialPruned`` when the pruner says so (or the
    budget runs out during the trial).
    """
    def run(log: RunLog, seed: int) -> None:
        study = tunelab.create_study(direction="minimize", sampler=sampler(), seed=seed, space=SPACE,
                                     pruner=pruner(log.max_epochs))

        def objective(trial: tunelab.Trial) -> float:
            def report(epoch: int, r: EpochResult) -> None:
                trial.report(epoch, val_loss=r.val_loss, val_acc=r.val_acc)

            state, value = log.train_trial(trial.number, trial.params, report, trial.should_prune)
            attrs = trial.system_attrs
            fidelity = attrs.get("model_fidelity")
            if fidelity and fidelity.get("step") is not None:
                log.trials[-1]["fidelity_step"] = fidelity["step"]
            elif fidelity and fidelity.get("predicted") is not None:
                log.trials[-1]["fidelity_predicted"] = fidelity["predicted"]
            if attrs.get("pruned"):
                log.trials[-1]["pruned_rule"] = attrs["pruned"].get("rule")
            if state != "complete":
                raise tunelab.TrialPruned()
            return value

        while log.left > 0:
            study.optimize(objective, n_trials=1, catch=(), show_progress=False, heartbeat_interval=None)

    return run


def optuna_runner(pruner: Callable[[int], Any]) -> RunFn:
    """An Optuna study in memory with its RandomSampler(seed), define-by-run on ``SPACE``'s equivalent."""
    def run(log: RunLog, seed: int) -> None:
        study = optuna.create_study(
            study_name=f"multifidelity-{seed}",  # Optuna's Hyperband picks brackets by hashing the name
            direction="minimize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner(log.max_epochs),
        )

        def objective(trial: optuna.Trial) -> float:
            params = {name: suggest(trial, name, dist) for name, dist in SPACE.items()}

            def report(epoch: int, r: EpochResult) -> None:
                trial.report(r.val_loss, epoch)

            state, value = log.train_trial(trial.number, params, report, trial.should_prune)
            if state != "complete":
                raise optuna.TrialPruned()
            return value

        while log.left > 0:
            study.optimize(objective, n_trials=1, catch=())

    return run


PBT_INTERVAL = 3
"""Members compare (and the bottom quarter copies the top quarter) every this many epochs."""
PBT_MUTABLE = ("lr", "weight_decay", "dropout", "batch_size")
"""What PBT perturbs; the width and the optimizer come with the weights a member copies."""
PBT_INHERITED = ("width", "optimizer")


def run_tunelab_pbt(log: RunLog, seed: int) -> None:
    """Population-based training (``tunelab.PopulationBasedTraining``) in one process, in lockstep.

    ``E // R`` members (RandomSampler starting points) train side by side one epoch at a time;
    every ``PBT_INTERVAL`` epochs each checkpoints (``trial.checkpoint``, ``save_torch``), then
    each asks ``member.exploit_and_explore``; a member that copies another loads its checkpoint
    and trains on with the perturbed hyperparameters. tunelab's PBT keeps a member's own values
    of the parameters it does not perturb, but the copied weights have the parent's width and
    optimizer state, so the member takes those two from the parent (``PBT_INHERITED``).
    """
    pbt = importlib.import_module("tunelab.pbt")
    from tunelab.torch import load_torch, save_torch

    rules = pbt.PopulationBasedTraining(interval=PBT_INTERVAL, metric="val_loss", direction="minimize",
                                        hyperparameters=PBT_MUTABLE)
    size = max(2, log.budget // log.max_epochs)
    with tempfile.TemporaryDirectory(prefix="tunelab-multifidelity-pbt-") as tmp:
        study = tunelab.create_study(direction="minimize", sampler=tunelab.RandomSampler(), seed=seed, space=SPACE,
                                     artifact_dir=tmp)
        trials = [study.ask() for _ in range(size)]
        members = [rules.member(t) for t in trials]
        current = [dict(t.params) for t in trials]  # what each member trains with now
        records = [log.start_trial(t.number, t.params, side_by_side=True) for t in trials]
        trainers = [log.new_trainer(r, p) for r, p in zip(records, current, strict=True)]
        index = {t.number: i for i, t in enumerate(trials)}
        last = [math.nan] * size
        for epoch in range(1, log.max_epochs + 1):
            for i, trial in enumerate(trials):
                if log.left <= 0:
                    records[i]["state"] = "cut"
                    continue
                result = log.train_epoch(records[i], trainers[i])
                trial.report(epoch, val_loss=result.val_loss, val_acc=result.val_acc)
                last[i] = result.val_loss
            if log.left <= 0 or epoch == log.max_epochs or not members[0].due(epoch):
                continue
            for trial, trainer in zip(trials, trainers, strict=True):
                with trial.checkpoint(epoch) as folder:
                    save_torch(folder, trainer.model, trainer.optimizer)
            for i, member in enumerate(members):
                change = member.exploit_and_explore(epoch)
                if change is None:
                    continue
                parent = current[index[change.parent]]
                current[i] = {**change.params, **{k: parent[k] for k in PBT_INHERITED}}
                trainers[i] = log.new_trainer(records[i], current[i])
                load_torch(change.checkpoint, trainers[i].model, trainers[i].optimizer)
                trainers[i].set_hyperparameters(current[i])
                trainers[i].epochs = epoch
                records[i].setdefault("exploits", []).append(
                    {"epoch": epoch, "parent": change.parent, "params": current[i]})
        for trial, value in zip(trials, last, strict=True):
            study.tell(trial, value)


@dataclass(frozen=True)
class Method:
    """A search method, run afresh for each seed.

    Attributes:
        name: its key on the command line and in the results.
        library: 'tunelab' or 'optuna'.
        label: how its sampler and pruner are built (``{R}`` stands for the full budget).
        run: spends a run's epoch budget.
        needs: a module this method needs (e.g. 'tunelab.pbt'); missing, the method is skipped.
    """

    name: str
    library: str
    label: str
    run: RunFn
    needs: str | None = None

    def missing(self) -> str | None:
        """Why this method cannot run here, or None."""
        if self.needs is None:
            return None
        try:
            found = importlib.util.find_spec(self.needs) is not None
        except ModuleNotFoundError:
            found = False
        return None if found else f"{self.needs} does not exist in this tunelab ({tunelab.__file__})"

    def describe(self, max_epochs: int) -> str:
        """The label with R filled in."""
        return self.label.replace("{R}", str(max_epochs))


def _tl_median(R: int) -> Any:
    return tunelab.MedianPruner(n_startup_trials=5, n_warmup_steps=0, metric="val_loss")


def _tl_asha(R: int) -> Any:
    return tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA, max_resource=R, metric="val_loss")


def _tl_curve(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE)


def _tl_curve_top3(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, top_k=TOP)


def _tl_curve_min4(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=4, confidence=CURVE_CONFIDENCE)


def _tl_curve_asha(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, rung_pruner=_tl_asha(R))


def _tl_curve_asha_reached(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, rung_pruner=_tl_asha(R), rung_pool="reached")


def _tl_curve_asha_top3(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, top_k=TOP, rung_pruner=_tl_asha(R))


def _tl_curve_asha_slope(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, rung_pruner=_tl_asha(R), short_curves="log_slope")


def _tl_curve_asha_slope_top8(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_loss", min_points=CURVE_MIN_POINTS,
                                       confidence=CURVE_CONFIDENCE, rung_pruner=_tl_asha(R), short_curves="log_slope",
                                       top_k=8)


def _tl_asha_acc(R: int) -> Any:
    return tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA, max_resource=R, metric="val_acc",
                                           direction="maximize")


def _tl_curve_asha_slope_acc(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_acc", direction="maximize",
                                       min_points=CURVE_MIN_POINTS, confidence=CURVE_CONFIDENCE,
                                       rung_pruner=_tl_asha_acc(R), short_curves="log_slope")


def _tl_curve_asha_slope_top8_acc(R: int) -> Any:
    return tunelab.LearningCurvePruner(max_resource=R, metric="val_acc", direction="maximize",
                                       min_points=CURVE_MIN_POINTS, confidence=CURVE_CONFIDENCE,
                                       rung_pruner=_tl_asha_acc(R), short_curves="log_slope", top_k=8)


def _tl_hyperband(R: int) -> Any:
    return tunelab.HyperbandPruner(min_resource=1, max_resource=R, reduction_factor=ETA, metric="val_loss")


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("tunelab-random", "tunelab", "tunelab.RandomSampler(), no pruner: E/R trials of R epochs",
           tunelab_runner(tunelab.RandomSampler, lambda R: None)),
    Method("tunelab-median", "tunelab",
           "tunelab.RandomSampler() + MedianPruner(n_startup_trials=5, n_warmup_steps=0, metric='val_loss')",
           tunelab_runner(tunelab.RandomSampler, _tl_median)),
    Method("tunelab-asha", "tunelab",
           f"tunelab.RandomSampler() + SuccessiveHalvingPruner(min_resource=1, reduction_factor={ETA}, "
           "max_resource={R}, metric='val_loss')",
           tunelab_runner(tunelab.RandomSampler, _tl_asha)),
    Method("tunelab-hyperband", "tunelab",
           f"tunelab.RandomSampler() + HyperbandPruner(min_resource=1, max_resource={{R}}, reduction_factor={ETA}, "
           "metric='val_loss')",
           tunelab_runner(tunelab.RandomSampler, _tl_hyperband)),
    Method("tunelab-asha-tpe", "tunelab",
           f"tunelab.TPESampler() + SuccessiveHalvingPruner(min_resource=1, reduction_factor={ETA}, "
           "max_resource={R}, metric='val_loss') (BOHB-like: TPE fits on the highest rung with enough points)",
           tunelab_runner(tunelab.TPESampler, _tl_asha)),
    Method("tunelab-curve", "tunelab",
           "tunelab.RandomSampler() + LearningCurvePruner(max_resource={R}, metric='val_loss', "
           f"min_points={CURVE_MIN_POINTS}, confidence={CURVE_CONFIDENCE})",
           tunelab_runner(tunelab.RandomSampler, _tl_curve)),
    Method("tunelab-curve-top3", "tunelab",
           "tunelab.RandomSampler() + LearningCurvePruner(max_resource={R}, metric='val_loss', "
           f"min_points={CURVE_MIN_POINTS}, confidence={CURVE_CONFIDENCE}, top_k={TOP}): stops a trial unlikely to "
           f"end among the {TOP} best",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_top3)),
    Method("tunelab-curve-min4", "tunelab",
           "tunelab.RandomSampler() + LearningCurvePruner(max_resource={R}, metric='val_loss', "
           f"min_points=4, confidence={CURVE_CONFIDENCE})",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_min4)),
    Method("tunelab-curve-asha", "tunelab",
           "tunelab.RandomSampler() + LearningCurvePruner(max_resource={R}, metric='val_loss', "
           f"min_points={CURVE_MIN_POINTS}, confidence={CURVE_CONFIDENCE}, rung_pruner=SuccessiveHalvingPruner("
           f"min_resource=1, reduction_factor={ETA}, max_resource={{R}})): ASHA's rungs rank by the value predicted "
           "at the next rung once a curve has min_points points; a rung's pool holds the trials the curve rule "
           "stopped after the previous rung (rung_pool='passed')",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha)),
    Method("tunelab-curve-asha-reached", "tunelab",
           "tunelab-curve-asha with rung_pool='reached' (before 2026-12-06): a rung ranks only the trials that "
           "reached it, so the curve rule's stops before it make it cut deeper than ASHA",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_reached)),
    Method("tunelab-curve-asha-top3", "tunelab",
           f"tunelab-curve-asha with top_k={TOP}: between rungs the curve rule stops a trial only when it is unlikely "
           f"to end among the {TOP} best",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_top3)),
    Method("tunelab-curve-asha-slope", "tunelab",
           "tunelab-curve-asha with short_curves='log_slope': at the rungs where a curve has fewer than min_points "
           "points (1 and 3 epochs), a trial is ranked by its last two points extended linearly in log(epoch) to the "
           "next rung (one point: its value)",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_slope)),
    Method("tunelab-curve-asha-slope-top8", "tunelab",
           "tunelab-curve-asha-slope with top_k=8: between rungs the curve rule stops a trial only when it is unlikely "
           "to end among the 8 best by val loss (the val-acc best was within the 8 best val losses in 18 of 20 seeds "
           "of ASHA)",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_slope_top8)),
    Method("tunelab-asha-acc", "tunelab",
           f"tunelab.RandomSampler() + SuccessiveHalvingPruner(min_resource=1, reduction_factor={ETA}, "
           "max_resource={R}, metric='val_acc', direction='maximize'): ASHA's rungs rank val acc, the score, "
           "instead of val loss",
           tunelab_runner(tunelab.RandomSampler, _tl_asha_acc)),
    Method("tunelab-curve-asha-slope-acc", "tunelab",
           "tunelab-curve-asha-slope on val acc: LearningCurvePruner(max_resource={R}, metric='val_acc', "
           f"direction='maximize', min_points={CURVE_MIN_POINTS}, confidence={CURVE_CONFIDENCE}, "
           "rung_pruner=tunelab-asha-acc's pruner, short_curves='log_slope'): the curve rule and the rungs rank "
           "val acc",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_slope_acc)),
    Method("tunelab-curve-asha-slope-top8-acc", "tunelab",
           "tunelab-curve-asha-slope-acc with top_k=8: between rungs the curve rule stops a trial only when it is "
           "unlikely to end among the 8 best by val acc",
           tunelab_runner(tunelab.RandomSampler, _tl_curve_asha_slope_top8_acc)),
    Method("tunelab-curve-tpe", "tunelab",
           "tunelab.TPESampler() + LearningCurvePruner(max_resource={R}, metric='val_loss', "
           f"min_points={CURVE_MIN_POINTS}, confidence={CURVE_CONFIDENCE}): TPE fits stopped trials at the final "
           "value the pruner predicted from their curve (complete ones at their final value)",
           tunelab_runner(tunelab.TPESampler, _tl_curve)),
    Method("optuna-random", "optuna",
           "optuna.samplers.RandomSampler(seed) + optuna.pruners.NopPruner(): E/R trials of R epochs",
           optuna_runner(lambda R: optuna.pruners.NopPruner())),
    Method("optuna-median", "optuna",
           "optuna.samplers.RandomSampler(seed) + optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)",
           optuna_runner(lambda R: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))),
    Method("optuna-asha", "optuna",
           f"optuna.samplers.RandomSampler(seed) + optuna.pruners.SuccessiveHalvingPruner(min_resource=1, "
           f"reduction_factor={ETA}, min_early_stopping_rate=0) (Optuna's has no max_resource)",
           optuna_runner(lambda R: optuna.pruners.SuccessiveHalvingPruner(
               min_resource=1, reduction_factor=ETA, min_early_stopping_rate=0))),
    Method("optuna-hyperband", "optuna",
           f"optuna.samplers.RandomSampler(seed) + optuna.pruners.HyperbandPruner(min_resource=1, "
           f"max_resource={{R}}, reduction_factor={ETA})",
           optuna_runner(lambda R: optuna.pruners.HyperbandPruner(
               min_resource=1, max_resource=R, reduction_factor=ETA))),
    Method("tunelab-pbt", "tunelab",
           "tunelab.PopulationBasedTraining(interval=" + str(PBT_INTERVAL) + ", metric='val_loss', "
           f"hyperparameters={PBT_MUTABLE!r}): E // R members from tunelab.RandomSampler(), in lockstep, "
           f"{PBT_INHERITED!r} copied with the weights",
           run_tunelab_pbt, needs="tunelab.pbt"),
)}
RANDOM = "tunelab-random"
RANDOM_OF_LIBRARY = {"tunelab": RANDOM, "optuna": "optuna-random"}
"""Whose best each method's time-to-reach is measured against: its own library's random search, which
tried the same configurations in the same order (tunelab's RandomSampler draws by seed and trial
number, Optuna's by seed and order of the draws)."""
ASHA = "tunelab-asha"
OPTUNA_PRUNERS = ("optuna-median", "optuna-asha", "optuna-hyperband")


@dataclass(frozen=True)
class Task:
    """One run: a method with a seed, ``budget`` epochs of at most ``max_epochs`` per trial."""

    method: str
    seed: int
    max_epochs: int
    budget: int


def config_key(params: Mapping[str, Any]) -> str:
    """A configuration as a key: its curve is the same in every run (see :class:`DigitsTrainer`)."""
    return json.dumps(params, sort_keys=True)


def train_to_end(task: tuple[str, int]) -> tuple[str, dict[str, float]]:
    """Train the configuration ``key`` for ``max_epochs`` epochs: its final val loss and accuracy."""
    key, max_epochs = task
    trainer = DigitsTrainer(json.loads(key))
    result = None
    for _ in range(max_epochs):
        result = trainer.train_epoch()
    assert result is not None
    return key, {"val_loss": round(result.val_loss, 6), "val_acc": round(result.val_acc, 6)}


def count_wrong_stops(runs: Sequence[dict[str, Any]], jobs: int, console: Console, cache: Path | None = None,
                      train: bool = True) -> None:
    """Count every pruner's wrong stops: train each stopped trial to the end (outside the budget; a
    configuration once, and not at all when some run trained it to the end already) and mark those whose
    final val loss would have been among their run's ``TOP`` best final values (of the complete trials
    and the stopped ones trained to the end). Sets ``final_if_trained`` on the stopped trials and the
    run's ``wrong_stops``.

    ``cache``: a JSON file of finals by configuration, read first and written as finals come (an
    interrupted count goes on from there). ``train=False``: train nothing, count the runs whose stopped
    configurations all have a final (the others keep ``wrong_stops`` None). The configurations are
    trained method by method, in the order of the runs (the curve pruners' first)."""
    known: dict[str, dict[str, float]] = {}
    if cache is not None and cache.exists():
        known.update(json.loads(cache.read_text()))
    for r in runs:
        for t in r["trials"]:
            if len(t["val_loss"]) == r["max_epochs"] and "at" not in t:
                known[config_key(t["params"])] = {"val_loss": t["val_loss"][-1], "val_acc": t["val_acc"][-1]}
            elif t.get("final_if_trained"):
                known[config_key(t["params"])] = t["final_if_trained"]
    counted = [r for r in runs if not r["error"] and r["method"] not in NO_STOPS]
    order = {m: i for i, m in enumerate((
        "tunelab-curve", "tunelab-curve-top3", "tunelab-curve-tpe", "tunelab-asha", "tunelab-curve-asha"))}
    counted.sort(key=lambda r: (order.get(r["method"], len(order)), -r["seed"]))
    todo: list[tuple[str, int]] = []
    for r in counted:
        for t in r["trials"]:
            item = (config_key(t["params"]), r["max_epochs"])
            if t["state"] == "pruned" and item[0] not in known and item not in todo:
                todo.append(item)
    console.print(f"wrong stops: {len(todo)} stopped configurations to train to the end "
                  f"({sum(1 for r in counted for t in r['trials'] if t['state'] == 'pruned')} stops in "
                  f"{len(counted)} runs)", highlight=False)
    if todo and train:
        started = time.perf_counter()
        with mp.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
            for i, (key, final) in enumerate(pool.imap(train_to_end, todo, chunksize=1), 1):
                known[key] = final
                if cache is not None and (i % 10 == 0 or i == len(todo)):
                    tmp = cache.with_name(cache.name + ".tmp")
                    tmp.write_text(json.dumps(known))
                    tmp.replace(cache)
                if i % 100 == 0:
                    console.print(f"  {i}/{len(todo)} in {fmt_duration(time.perf_counter() - started)}")
    for r in counted:
        stopped = [t for t in r["trials"] if t["state"] == "pruned"]
        if any(config_key(t["params"]) not in known for t in stopped):
            r["wrong_stops"] = None
            continue
        finals: list[tuple[float, bool, int]] = []  # (final val loss, stopped, number)
        for t in r["trials"]:
            if t["state"] == "complete":
                finals.append((t["val_loss"][-1], False, t["number"]))
            elif t["state"] == "pruned":
                t["final_if_trained"] = known[config_key(t["params"])]
                finals.append((t["final_if_trained"]["val_loss"], True, t["number"]))
        finals.sort()
        top = finals[:TOP]
        r["wrong_stops"] = {"wrong": sum(stopped for _, stopped, _ in top), "top": [n for _, _, n in top],
                            "stopped": sum(stopped for _, stopped, _ in finals)}


def run_task(task: Task) -> dict[str, Any]:
    """Run one task; never raises (an error is reported in the result, with the trials so far)."""
    log = RunLog(task.max_epochs, task.budget)
    error: str | None = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        METHODS[task.method].run(log, task.seed)
    except Exception:  # noqa: BLE001 - report any failure to the parent rather than lose the run
        error = traceback.format_exc()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wrong_stops": None,
        "method": task.method, "seed": task.seed, "max_epochs": task.max_epochs, "budget": task.budget,
        "epochs": log.used, "n_trials": len(log.trials),
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "train_wall_s": round(log.train_wall_s, 3), "train_cpu_s": round(log.train_cpu_s, 3),
        "library_wall_s": round(wall - log.train_wall_s, 3), "library_cpu_s": round(cpu - log.train_cpu_s, 3),
        "trials": log.trials, "error": error, "pid": os.getpid(),
    }


def init_worker() -> None:
    """One thread per worker process; quiet libraries; the data loaded and torch warmed up (one
    throwaway epoch), so that a run's first epoch costs what the others do."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for optimizer in ("sgd", "adam"):
        DigitsTrainer({"lr": 1e-3, "weight_decay": 1e-4, "width": 32, "dropout": 0.1, "optimizer": optimizer,
                       "batch_size": 64}).train_epoch()


def cost_guess(task: Task) -> float:
    """Relative cost, to start the slowest runs first (every run trains the same epochs)."""
    return task.budget * (1.2 if task.method == "tunelab-asha-tpe" else 1.0) + task.seed * 1e-3


def run_all(
    tasks: list[Task], jobs: int, console: Console, results: list[dict[str, Any]],
    checkpoint: Callable[[], None],
) -> None:
    """Every task on a spawn pool of ``jobs`` processes, into ``results`` as they end (a line each)."""
    for var in THREAD_VARS:  # inherited by the spawned workers before they import NumPy or torch
        os.environ[var] = "1"
    tasks = sorted(tasks, key=cost_guess, reverse=True)
    started = last_save = time.perf_counter()
    width = len(str(len(tasks)))
    done = 0
    with mp.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
        for r in pool.imap_unordered(run_task, tasks, chunksize=1):
            results.append(r)
            done += 1
            elapsed = time.perf_counter() - started
            eta = elapsed * (len(tasks) - done) / done
            best = max((max(t["val_acc"]) for t in r["trials"] if t["val_acc"]), default=None)
            status = "[red]ERROR[/]" if r["error"] else f"best acc {best:.4f}" if best is not None else "no value"
            ms = 1000.0 * r["train_wall_s"] / r["epochs"] if r["epochs"] else math.nan
            console.print(
                f"[{done:>{width}}/{len(tasks)}] {r['method']:<18} seed {r['seed']:>2}  {status:<15} "
                f"{r['n_trials']:>4} trials, {r['epochs']} epochs in {r['wall_s']:6.1f}s ({ms:4.1f} ms/epoch, "
                f"library {r['library_wall_s']:5.1f}s)  elapsed {fmt_duration(elapsed)}, eta {fmt_duration(eta)}",
                highlight=False,
            )
            if r["error"]:
                console.print(escape(r["error"].rstrip().splitlines()[-1]), style="red", highlight=False)
            if time.perf_counter() - last_save > CHECKPOINT_EVERY_S:
                checkpoint()
                last_save = time.perf_counter()


# -- statistics -------------------------------------------------------------------------------
def epochs_trace(run: Mapping[str, Any]) -> list[tuple[int, float, float]]:
    """(epochs trained by the run so far, val_acc, val_loss) for every epoch, in training order."""
    out: list[tuple[int, float, float]] = []
    for t in run["trials"]:
        at = t.get("at") or range(t["start"] + 1, t["start"] + len(t["val_loss"]) + 1)
        out.extend(zip(at, t["val_acc"], t["val_loss"], strict=True))
    return sorted(out)


def best_within(run: Mapping[str, Any], epochs: int) -> tuple[float | None, float | None]:
    """The best validation accuracy and loss a run had seen after ``epochs`` epochs."""
    points = [(acc, loss) for e, acc, loss in epochs_trace(run) if e <= epochs]
    if not points:
        return None, None
    return max(a for a, _ in points), min(v for _, v in points)


def epochs_to_reach(run: Mapping[str, Any], target: float) -> int | None:
    """The epochs a run had trained when it first saw a validation accuracy of at least ``target``."""
    return next((e for e, acc, _ in epochs_trace(run) if acc >= target - TIE), None)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (linear interpolation) of values that may be +inf."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return xs[lo]
    if math.isinf(xs[hi]):  # sorted: an infinite lower neighbour means an infinite upper one
        return math.inf
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles and count (None when empty)."""
    if not values:
        return {"n": 0, "median": None, "q25": None, "q75": None}
    return {"n": len(values), "median": quantile(values, 0.5), "q25": quantile(values, 0.25),
            "q75": quantile(values, 0.75)}


def anytime_budgets(budget: int) -> list[int]:
    """The epoch counts at which the best values are read: E/9, E/3, E."""
    return sorted({max(1, budget // d) for d in ANYTIME})


def reach_baseline(method: str, targets: Mapping[str, Any]) -> str | None:
    """The random search whose best ``method`` is timed against: its library's, else tunelab's."""
    library = METHODS[method].library if method in METHODS else method.split("-")[0]
    own = RANDOM_OF_LIBRARY.get(library)
    return own if own in targets else RANDOM if RANDOM in targets else None


def summarize(
    runs: Sequence[Mapping[str, Any]], methods: Sequence[str], budget: int, max_epochs: int
) -> dict[str, Any]:
    """Per-method statistics over seeds, the time to reach random search's best, and the targets."""
    by_method: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in runs:
        if not r["error"]:
            by_method.setdefault(r["method"], {})[r["seed"]] = r
    targets: dict[str, dict[int, dict[str, Any]]] = {}
    for name in set(RANDOM_OF_LIBRARY.values()):
        for seed, r in by_method.get(name, {}).items():
            best_acc, _ = best_within(r, budget)
            if best_acc is not None:
                targets.setdefault(name, {})[seed] = {"acc": best_acc, "random_epochs": epochs_to_reach(r, best_acc)}
    checkpoints = anytime_budgets(budget)
    stats: dict[str, Any] = {}
    for m in methods:
        rs = by_method.get(m, {})
        if not rs:
            stats[m] = None
            continue
        anytime: dict[str, Any] = {}
        for b in checkpoints:
            pairs = [best_within(r, b) for r in rs.values()]
            anytime[str(b)] = {"acc": spread([a for a, _ in pairs if a is not None]),
                               "loss": spread([v for _, v in pairs if v is not None])}
        full = [max(max(t["val_acc"]) for t in full_trials) for r in rs.values()
                if (full_trials := [t for t in r["trials"] if len(t["val_acc"]) == max_epochs])]
        # the final validation score: the best val acc at the last epoch of a trial trained to the end
        final = [max(t["val_acc"][-1] for t in full_trials) for r in rs.values()
                 if (full_trials := [t for t in r["trials"] if len(t["val_acc"]) == max_epochs])]
        baseline = reach_baseline(m, targets)
        goal = targets.get(baseline, {}) if baseline is not None else {}
        reach: list[dict[str, Any]] = []
        for seed, r in sorted(rs.items()):
            if seed not in goal:
                continue
            e = epochs_to_reach(r, goal[seed]["acc"])
            base = goal[seed]["random_epochs"]
            reach.append({"seed": seed, "target_acc": goal[seed]["acc"], "epochs": e, "random_epochs": base,
                          "ratio": math.inf if e is None else e / base, "ratio_budget": math.inf if e is None
                          else e / budget})
        epochs_all = sum(r["epochs"] for r in rs.values())
        fidelity = [t.get("fidelity_step") for r in rs.values() for t in r["trials"]]
        stats[m] = {
            "seeds": sorted(rs),
            "best_acc": anytime[str(budget)]["acc"], "best_loss": anytime[str(budget)]["loss"],
            "anytime": anytime,
            "best_acc_full_trials": spread(full),
            "epochs": spread([r["epochs"] for r in rs.values()]),
            "trials": spread([r["n_trials"] for r in rs.values()]),
            "complete": spread([sum(t["state"] == "complete" for t in r["trials"]) for r in rs.values()]),
            "final_acc": spread(final),
            "wrong_stops": spread([r["wrong_stops"]["wrong"] for r in rs.values() if r.get("wrong_stops")]),
            "wrong_stops_total": sum(r["wrong_stops"]["wrong"] for r in rs.values() if r.get("wrong_stops")),
            "stopped_total": sum(r["wrong_stops"]["stopped"] for r in rs.values() if r.get("wrong_stops")),
            "reach_baseline": baseline,
            "reach": reach,
            "reach_epochs": spread([math.inf if x["epochs"] is None else x["epochs"] for x in reach]),
            "reach_ratio": spread([x["ratio"] for x in reach]),
            "reach_ratio_budget": spread([x["ratio_budget"] for x in reach]),
            "reached": sum(x["epochs"] is not None for x in reach),
            "wall_s": spread([r["wall_s"] for r in rs.values()]),
            "library_wall_s": spread([r["library_wall_s"] for r in rs.values()]),
            "train_ms_per_epoch": 1000.0 * sum(r["train_wall_s"] for r in rs.values()) / epochs_all
            if epochs_all else None,
            "train_cpu_ms_per_epoch": 1000.0 * sum(r["train_cpu_s"] for r in rs.values()) / epochs_all
            if epochs_all else None,
            "model_fit_on_rung": sum(f is not None for f in fidelity),
            "model_fit_on_predictions": sum(t.get("fidelity_predicted") is not None
                                            for r in rs.values() for t in r["trials"]),
        }
    all_epochs = sum(r["epochs"] for r in runs if not r["error"])
    cost = {
        "epochs": all_epochs,
        "train_ms_per_epoch": 1000.0 * sum(r["train_wall_s"] for r in runs if not r["error"]) / all_epochs
        if all_epochs else None,
        "train_cpu_ms_per_epoch": 1000.0 * sum(r["train_cpu_s"] for r in runs if not r["error"]) / all_epochs
        if all_epochs else None,
    }
    return {"stats": stats, "random_targets": {name: {str(k): v for k, v in t.items()} for name, t in targets.items()},
            "anytime": checkpoints,
            "cost": cost, "targets": {**check_targets(stats), "pbt": check_pbt(runs), "curve": check_curve(stats)}}


def check_curve(stats: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """(4) The learning-curve pruner (alone, with ASHA) finds a better median final val acc than ASHA."""
    asha = stats.get(ASHA)
    if asha is None:
        return None
    out = []
    for m in ("tunelab-curve", "tunelab-curve-top3", "tunelab-curve-min4", "tunelab-curve-asha",
              "tunelab-curve-asha-reached", "tunelab-curve-asha-top3", "tunelab-curve-asha-slope",
              "tunelab-curve-asha-slope-top8", "tunelab-asha-acc", "tunelab-curve-asha-slope-acc",
              "tunelab-curve-asha-slope-top8-acc",
              "tunelab-curve-tpe"):
        st = stats.get(m)
        if st is None:
            continue
        ours, theirs = st["final_acc"]["median"], asha["final_acc"]["median"]
        out.append({"method": m, "final_acc": ours, "asha_final_acc": theirs,
                    "met": ours is not None and theirs is not None and ours > theirs + TIE,
                    "tie": ours is not None and theirs is not None and abs(ours - theirs) <= TIE,
                    "wrong_stops": st["wrong_stops_total"], "stopped": st["stopped_total"],
                    "asha_wrong_stops": asha["wrong_stops_total"], "asha_stopped": asha["stopped_total"]})
    return out


def check_pbt(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """(3) PBT's final score (its best member's val acc at the last epoch) is at least that of the
    best fixed-hyperparameter member of its population: the same starting configurations (same
    seed, same sampler) trained for the full budget without PBT, i.e. tunelab-random's trials."""
    pbt = {r["seed"]: r for r in runs if r["method"] == "tunelab-pbt" and not r["error"]}
    fixed = {r["seed"]: r for r in runs if r["method"] == RANDOM and not r["error"]}
    seeds = sorted(set(pbt) & set(fixed))
    if not seeds:
        return None

    def final(run: Mapping[str, Any]) -> float:
        return max(t["val_acc"][-1] for t in run["trials"] if t["val_acc"])

    per_seed = [{"seed": s, "pbt": final(pbt[s]), "best_fixed": final(fixed[s]),
                 "same_start": all(t["params"] == u["params"] for t, u in zip(
                     sorted(pbt[s]["trials"], key=lambda t: t["number"]),
                     sorted(fixed[s]["trials"], key=lambda t: t["number"]), strict=False))}
                for s in seeds]
    return {"met_seeds": sum(d["pbt"] >= d["best_fixed"] for d in per_seed), "seeds": len(seeds), "per_seed": per_seed}


def check_targets(stats: Mapping[str, Any]) -> dict[str, Any]:
    """(1) ASHA reaches random's best with <= 1/3 of random's epochs; (2) ASHA >= each Optuna pruner."""
    out: dict[str, Any] = {"one": None, "one_budget": None, "two": None, "two_detail": [], "note": []}
    asha = stats.get(ASHA)
    if asha is None or stats.get(RANDOM) is None:
        out["note"].append(f"target (1) needs {ASHA} and {RANDOM}")
    else:
        ratio, ratio_budget = asha["reach_ratio"]["median"], asha["reach_ratio_budget"]["median"]
        out["one"] = ratio is not None and ratio <= TARGET_RATIO
        out["one_budget"] = ratio_budget is not None and ratio_budget <= TARGET_RATIO
        out["one_ratio"], out["one_ratio_budget"] = ratio, ratio_budget
    opponents = [m for m in OPTUNA_PRUNERS if stats.get(m) is not None]
    if asha is None or not opponents:
        out["note"].append(f"target (2) needs {ASHA} and an Optuna pruner")
        return out
    ok = True
    for m in opponents:
        ours, theirs = asha["best_acc"]["median"], stats[m]["best_acc"]["median"]
        met = ours is not None and theirs is not None and ours >= theirs - TIE
        ok &= met
        out["two_detail"].append({"method": m, "acc": ours, "opponent_acc": theirs, "met": met,
                                  "loss": asha["best_loss"]["median"],
                                  "opponent_loss": stats[m]["best_loss"]["median"]})
    out["two"] = ok
    out["two_loss_behind"] = [d["method"] for d in out["two_detail"]
                              if d["loss"] is not None and d["opponent_loss"] is not None
                              and d["loss"] > d["opponent_loss"]]
    return out


# -- printing ---------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 4) -> str:
    """A number, '-' for None, 'never' for inf."""
    if v is None:
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.{digits}f}"


def fmt_spread(s: Mapping[str, Any], digits: int = 4) -> str:
    """``median [q25, q75]``."""
    if not s["n"]:
        return "-"
    return escape(f"{fmt(s['median'], digits)} [{fmt(s['q25'], digits)}, {fmt(s['q75'], digits)}]")


def print_tables(console: Console, summary: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """The main table, the anytime table, the costs and the targets."""
    stats = summary["stats"]
    methods = [m for m in config["methods"] if stats.get(m) is not None]
    budget, R = config["budget_epochs"], config["max_epochs"]
    n_seeds = len(config["seeds"])
    best_acc = max((stats[m]["best_acc"]["median"] for m in methods), default=None)
    best_loss = min((stats[m]["best_loss"]["median"] for m in methods), default=None)
    table = Table(
        title=escape(f"digits MLP, R = {R} epochs per trial, budget E = {budget} epochs ({budget // R} full trainings) "
                     f"per run, {n_seeds} seeds: median [q25, q75] over seeds; best = at any epoch of any trial"),
        title_justify="left", caption_justify="left",
        caption=escape("epochs to random's best: the epochs a run had trained when it first saw a val acc at least "
                       "the best of its own library's full-budget random search with the same seed (which tried the "
                       "same configurations in the same order); / random's epochs: over the epochs that random "
                       "search needed to first see it (median of the per-seed ratios); / E: over the whole budget"),
    )
    table.add_column("method")
    for col in ("best val acc", "best val loss", f"best acc, {R}-epoch trials", f"final acc (epoch {R})",
                "wrong stops", "epochs", "trials (complete)",
                "epochs to random's best acc", "/ random's epochs", "/ E", "reached"):
        table.add_column(col, justify="right")
    for m in methods:
        s = stats[m]
        acc = fmt_spread(s["best_acc"])
        loss = fmt_spread(s["best_loss"])
        if best_acc is not None and abs(s["best_acc"]["median"] - best_acc) <= TIE:
            acc = f"[bold green]{acc}[/]"
        if best_loss is not None and s["best_loss"]["median"] == best_loss:
            loss = f"[bold green]{loss}[/]"
        table.add_row(
            m, acc, loss, fmt_spread(s["best_acc_full_trials"]), fmt_spread(s.get("final_acc") or {"n": 0}),
            f"{s['wrong_stops_total']}/{s['stopped_total']}" if s.get("stopped_total") else "-",
            fmt(s["epochs"]["median"], 0),
            f"{fmt(s['trials']['median'], 0)} ({fmt(s['complete']['median'], 0)})",
            fmt_spread(s["reach_epochs"], 0), fmt_spread(s["reach_ratio"], 2),
            fmt(s["reach_ratio_budget"]["median"], 2),
            f"{s['reached']}/{len(s['reach'])}",
        )
    console.print(table)
    checkpoints = summary["anytime"]
    table = Table(title=escape("best validation accuracy and loss after a part of the budget (epochs trained): "
                               "median [q25, q75] over seeds"), title_justify="left")
    table.add_column("method")
    for b in checkpoints:
        table.add_column(f"acc @{b}", justify="right")
    for b in checkpoints:
        table.add_column(f"loss @{b}", justify="right")
    for m in methods:
        a = stats[m]["anytime"]
        table.add_row(m, *(fmt_spread(a[str(b)]["acc"]) for b in checkpoints),
                      *(fmt_spread(a[str(b)]["loss"]) for b in checkpoints))
    console.print(table)
    table = Table(title="cost per run (median over seeds): wall seconds, of which outside training (library: sampler, "
                        "pruner, bookkeeping); training ms per epoch (wall / CPU)", title_justify="left")
    for col in ("method", "run s", "library s", "ms/epoch", "model fits on a rung / on predictions"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in methods:
        s = stats[m]
        table.add_row(m, fmt(s["wall_s"]["median"], 1), fmt(s["library_wall_s"]["median"], 2),
                      f"{fmt(s['train_ms_per_epoch'], 1)} / {fmt(s['train_cpu_ms_per_epoch'], 1)}",
                      f"{s['model_fit_on_rung']} / {s.get('model_fit_on_predictions', 0)}" if m.endswith("tpe")
                      else "-")
    console.print(table)
    c = summary["cost"]
    console.print(f"the problem costs {fmt(c['train_ms_per_epoch'], 1)} ms per epoch (wall; "
                  f"{fmt(c['train_cpu_ms_per_epoch'], 1)} CPU), over {c['epochs']:,d} epochs", highlight=False)
    print_targets(console, summary["targets"])


def print_targets(console: Console, t: Mapping[str, Any]) -> None:
    """Whether targets (1) and (2) hold."""
    for note in t["note"]:
        console.print(f"[yellow]{note}[/]")
    if t["one"] is not None:
        console.print(
            f"target (1), {ASHA} reaches {RANDOM}'s best val acc with at most 1/3 of the epochs random search needed "
            f"for it (median ratio over seeds): " + ("[green]met[/]" if t["one"] else "[red]NOT met[/]")
            + f" ({fmt(t['one_ratio'], 3)}); against random's whole budget E: "
            + ("[green]met[/]" if t["one_budget"] else "[red]NOT met[/]") + f" ({fmt(t['one_ratio_budget'], 3)})",
            highlight=False,
        )
    if t["two"] is not None:
        detail = "; ".join(f"{d['method']} {fmt(d['opponent_acc'])} (loss {fmt(d['opponent_loss'])})"
                           for d in t["two_detail"])
        ours = t["two_detail"][0]
        console.print(
            f"target (2), {ASHA}'s median best val acc at E at least each Optuna pruner's: "
            + ("[green]met[/]" if t["two"] else "[red]NOT met[/]")
            + f" ({ASHA} {fmt(ours['acc'])} (loss {fmt(ours['loss'])}) vs {detail})", highlight=False,
        )
        behind = t.get("two_loss_behind") or []
        pbt = t.get("pbt")
        if pbt:
            console.print(
                "target (3), tunelab-pbt's final val acc at least its best fixed-hyperparameter member's (the same "
                f"starting configurations trained without PBT): met on {pbt['met_seeds']} of {pbt['seeds']} seeds "
                + ("[green]met[/]" if pbt["met_seeds"] == pbt["seeds"] else "[red]NOT met[/]"), highlight=False,
            )
        for c in t.get("curve") or []:
            verdict = "[green]met[/]" if c["met"] else "[yellow]tie[/]" if c["tie"] else "[red]NOT met[/]"
            console.print(
                f"target (4), {c['method']}'s median final val acc (best at epoch R of a full trial) above "
                f"{ASHA}'s: {verdict} ({fmt(c['final_acc'])} vs {fmt(c['asha_final_acc'])}); wrong stops (stopped "
                f"trials that would have ended in the top {TOP}): {c['wrong_stops']} of {c['stopped']} stopped "
                f"(ASHA: {c['asha_wrong_stops']} of {c['asha_stopped']}; counted with --wrong-stops)",
                highlight=False)
        console.print(f"  on median best val loss (not part of the target), {ASHA} is "
                      + (f"[yellow]behind {', '.join(behind)}[/]" if behind else "at least as good as each"),
                      highlight=False)


# -- results file -----------------------------------------------------------------------------
def finite(data: Any) -> Any:
    """``data`` with infinities and NaNs replaced by None (plain JSON; "never reached" reads as null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def to_json(data: Any, indent: int = 0) -> str:
    """Indented JSON, except that a trial (a dict with curves) or a list of scalars takes one line."""
    pad, inner = " " * indent, " " * (indent + 2)
    compact = (isinstance(data, dict) and "val_loss" in data) or (
        isinstance(data, list) and all(not isinstance(v, (dict, list)) for v in data))
    if compact or not isinstance(data, (dict, list)) or not data:
        return json.dumps(data)
    if isinstance(data, dict):
        items = [f"{inner}{json.dumps(str(k))}: {to_json(v, indent + 2)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return "[\n" + ",\n".join(inner + to_json(v, indent + 2) for v in data) + "\n" + pad + "]"


def save_results(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON (one line per trial, see :func:`to_json`), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(finite(data)) + "\n")
    tmp.replace(path)


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK_SEEDS} seeds, a budget of {QUICK_BUDGET_TRIALS} full trainings "
                        "(output multifidelity-quick.json)")
    p.add_argument("--seeds", type=int, help=f"seeds 0..N-1 per method (default {SEEDS}; {QUICK_SEEDS} with --quick)")
    p.add_argument("--seed-list", type=lambda v: [int(x) for x in v.split(",")], metavar="S,S",
                   help="these seeds only (instead of 0..N-1)")
    p.add_argument("--max-epochs", type=int, default=MAX_EPOCHS, help=f"R, epochs of a full training (default "
                                                                      f"{MAX_EPOCHS})")
    p.add_argument("--budget", type=int, help=f"E in full trainings: E = BUDGET * R epochs per run (default "
                                              f"{BUDGET_TRIALS}; {QUICK_BUDGET_TRIALS} with --quick)")
    p.add_argument("--methods", type=name_list(METHODS, "method"),
                   help=f"comma-separated, out of {','.join(METHODS)} (default all)")
    p.add_argument("--wrong-stops", action="store_true",
                   help="train the stopped trials of every pruner to the end after the runs (outside their budget; "
                        f"each configuration once) and count those that would have ended in their run's top {TOP}")
    p.add_argument("--finals-cache", type=Path, metavar="PATH",
                   help="with --wrong-stops: the finals of stopped configurations, read first and written as they come")
    p.add_argument("--no-training", action="store_true",
                   help="with --wrong-stops: train nothing; count the runs whose stopped configurations have finals")
    p.add_argument("--merge", type=Path, nargs="+", metavar="PATH", default=[],
                   help="take the runs of these results files (partial ones too; the first of a method and seed "
                        "wins) and run only the (method, seed) pairs they lack")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/multifidelity.json)")
    p.add_argument("--from-json", type=Path, metavar="PATH", help="print the tables of a saved run; run nothing")
    args = p.parse_args(argv)
    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else SEEDS
    if args.budget is None:
        args.budget = QUICK_BUDGET_TRIALS if args.quick else BUDGET_TRIALS
    if args.methods is None:
        args.methods = list(METHODS)
    if args.out is None:
        args.out = RESULTS_DIR / ("multifidelity-quick.json" if args.quick else "multifidelity.json")
    if args.seeds < 1 or args.jobs < 1 or args.budget < 1 or args.max_epochs < 1:
        p.error("--seeds, --jobs, --budget and --max-epochs must be at least 1")
    return args


def print_saved(path: Path, console: Console) -> int:
    """Print the tables of a saved run (recomputed from its runs)."""
    data = json.loads(path.read_text())
    cfg = data["config"]
    console.print(f"{path}: started {data['started']}, {len(data['runs'])} runs in {fmt_duration(data['duration_s'])}"
                  + (" [yellow](partial)[/]" if data.get("partial") else ""), highlight=False)
    summary = summarize(data["runs"], list(cfg["methods"]), cfg["budget_epochs"], cfg["max_epochs"])
    print_tables(console, summary, cfg)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run every method on every seed, print the tables and save the JSON results."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200, log_path=False)
    if args.from_json:
        return print_saved(args.from_json, console)
    for m in list(args.methods):
        why = METHODS[m].missing()
        if why is not None:
            console.print(f"[yellow]skipping {m}[/]: {why} (population-based training is being written; the "
                          "entry runs once the module exists)", highlight=False)
            args.methods.remove(m)
    if not args.methods:
        console.print("[red]nothing to run[/]")
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = {**machine_info(), **library_versions()}
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    R, budget = args.max_epochs, args.budget * args.max_epochs
    seeds = args.seed_list or list(range(args.seeds))
    config = {
        "seeds": seeds, "max_epochs": R, "budget_trials": args.budget, "budget_epochs": budget,
        "reduction_factor": ETA, "min_resource": 1, "jobs": args.jobs, "quick": args.quick,
        "problem": PROBLEM, "space": {name: d.to_json() for name, d in SPACE.items()},
        "methods": {m: METHODS[m].describe(R) for m in args.methods},
        "protocol": "one process per run, in-memory studies; a run starts trials while epochs are left and stops a "
                    "trial when the budget runs out ('cut'); every epoch reports val_loss (the pruning metric, except "
                    "for the '-acc' methods, which prune on val_acc; and the value of a complete trial) and val_acc "
                    "at step = epoch (1-based); the pruner is not asked "
                    "after the last epoch",
        "timing": "wall_s/cpu_s: the whole run; train_*: building the networks and training/validating them; "
                  "library_*: the rest (sampler, pruner, study bookkeeping)",
    }
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for path in args.merge:
        saved = json.loads(path.read_text())
        if (saved["config"]["max_epochs"], saved["config"]["budget_epochs"]) != (R, budget):
            console.print(f"[red]{path} has R = {saved['config']['max_epochs']}, E = "
                          f"{saved['config']['budget_epochs']}: not this run's[/]")
            return 2
        for r in saved["runs"]:
            if not r["error"] and r["method"] in args.methods and r["seed"] in seeds:
                merged.setdefault((r["method"], r["seed"]), r)
        config.setdefault("merged", []).append({"path": str(path), "started": saved["started"],
                                                "machine": saved["machine"]})
    tasks = [Task(m, s, R, budget) for m in args.methods for s in seeds if (m, s) not in merged]
    if merged:
        console.print(f"{len(merged)} runs taken from {', '.join(map(str, args.merge))}", highlight=False)
    console.print(f"{len(tasks)} runs: {len(args.methods)} methods x {len(seeds)} seeds, {budget} epochs each "
                  f"(R = {R}), on {args.jobs} processes", highlight=False)
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()

    def results(runs: list[dict[str, Any]], partial: bool) -> dict[str, Any]:
        return {"benchmark": "multifidelity", "started": began, "duration_s": round(time.perf_counter() - started, 1),
                "partial": partial, "machine": info, "config": config, "runs": runs,
                "summary": None if partial else summarize(runs, args.methods, budget, R)}

    runs: list[dict[str, Any]] = list(merged.values())
    try:
        if tasks:
            run_all(tasks, args.jobs, console, runs, lambda: save_results(args.out, results(runs, True)))
        if args.wrong_stops:
            save_results(args.out, results(runs, True))
            count_wrong_stops(runs, args.jobs, console, args.finals_cache, train=not args.no_training)
    except KeyboardInterrupt:
        save_results(args.out, results(runs, True))
        console.print(f"[red]interrupted[/]: the {len(runs)} runs finished are in {args.out} (partial)")
        return 130
    data = results(runs, False)
    print_tables(console, data["summary"], config)
    errors = [r for r in runs if r["error"]]
    if errors:
        console.print(f"[red]{len(errors)} run(s) failed[/]: " + ", ".join(f"{r['method']}/seed {r['seed']}"
                                                                           for r in errors))
    save_results(args.out, data)
    console.print(f"saved {args.out} in {fmt_duration(data['duration_s'])}", highlight=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
