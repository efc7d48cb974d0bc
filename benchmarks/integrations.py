"""tunelab's framework integrations next to optuna-integration's, in the same run.

1. Callbacks: what each framework callback costs per report, and its share of the training loop.
   tunelab's ``tunelab.integrations.{lightning,transformers,keras,xgboost,lightgbm}.TunelabCallback``
   against optuna-integration's ``PyTorchLightningPruningCallback``, ``KerasPruningCallback``,
   ``XGBoostPruningCallback`` and ``LightGBMPruningCallback``. Optuna has no pruning callback for the
   Hugging Face Trainer (its HF backend reports from inside ``Trainer.hyperparameter_search``), so the
   transformers row compares with a hand-written ``TrainerCallback`` doing what that backend does at
   each evaluation: ``trial.report(eval_loss, global_step)`` + ``trial.should_prune()``.
   Each library runs on in-memory storage and on SQLite (tunelab's ``sqlite:///`` URL, Optuna's
   RDBStorage; a fresh file per framework and library in a temporary folder), with its MedianPruner
   (``n_startup_trials`` so large that nothing is pruned: every run has the same length; asking the
   pruner is part of the cost). Every hook the callback implements is wrapped with a
   ``time.perf_counter`` accumulator during a real short training run on one CPU thread; the run's
   loop time is the ``fit``/``train`` call. Reported: microseconds in the hooks per report, and the
   hooks' share of the loop (%), the medians over ``--repeats`` runs. Targets: tunelab at most
   Optuna's cost per report, and under 1% of the loop, in every row.
2. scikit-learn: ``TunelabSearchCV`` against ``RandomizedSearchCV`` and optuna-integration's
   ``OptunaSearchCV`` at equal budget (``n_trials`` = ``n_iter``), default samplers, the same cv
   folds, on three tasks, over several seeds: best CV score (mean +- sd) and wall time.

Run ``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/integrations.py [--quick]``; the tables
are printed and saved as JSON (``benchmarks/results/integrations.json``, ``integrations-quick.json``
with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"  # before torch, NumPy, XGBoost and LightGBM load their thread pools
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported

import keras
import lightgbm as lgb
import lightning.pytorch as pl
import numpy as np
import optuna
import optuna_integration
import torch
import transformers
import xgboost as xgb
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector
from optuna.distributions import FloatDistribution, IntDistribution
from overhead import machine_info, save_json
from rich.console import Console
from rich.table import Table
from scipy.stats import loguniform, randint, uniform
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold, train_test_split
from sklearn.svm import SVC
from torch import nn

import tunelab
from tunelab.integrations import keras as tl_keras
from tunelab.integrations import lightgbm as tl_lightgbm
from tunelab.integrations import lightning as tl_lightning
from tunelab.integrations import transformers as tl_transformers
from tunelab.integrations import xgboost as tl_xgboost
from tunelab.integrations.sklearn import TunelabSearchCV

torch.set_num_threads(1)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 0
TARGET_SHARE_PCT = 1.0
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
CLOCK = "wall"
"""How hooks and loops are timed: wall-clock time (the default: what the loop waits, SQLite's disk
waits included), or the CPU time of the thread that runs them (``--clock cpu``: steady on a machine
that other jobs load, but blind to waits on the disk)."""


def clock() -> float:
    return CLOCKS[CLOCK]()


NEVER_PRUNE = 1_000_000
"""MedianPruner's n_startup_trials in both libraries: no study here gets that many COMPLETE trials."""
PRUNERS = {
    "median-idle": ("MedianPruner(n_startup_trials=1_000_000): asked at every report, too few trials complete to "
                    "stop any (the default)"),
    "median": ("MedianPruner(n_startup_trials=1): judges every report against the earlier runs' curves (the same "
               "curves: nothing is stopped)"),
    "asha": "SuccessiveHalvingPruner(min_resource=1, reduction_factor=3): judges at steps 1, 3, 9, 27... (ties go on)",
}
"""The pruner both libraries use (``--pruner``); each stops nothing here, so every run has the same length."""
PRUNER = "median-idle"
FRAMEWORKS = ("lightning", "transformers", "keras", "xgboost", "lightgbm")
LIBS = ("tunelab", "optuna")
STORAGES = ("memory", "sqlite")
METHODS = ("tunelab", "optuna", "random")
OPTUNA_EQUIVALENT = {
    "lightning": "PyTorchLightningPruningCallback",
    "transformers": "none in optuna-integration: a hand-written report + should_prune TrainerCallback",
    "keras": "KerasPruningCallback",
    "xgboost": "XGBoostPruningCallback",
    "lightgbm": "LightGBMPruningCallback",
}


# -- timing the hooks ---------------------------------------------------------------------------------
@dataclass
class HookTimer:
    """Seconds and calls per hook, accumulated by the wrappers :func:`instrument` puts on a callback."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        clock = CLOCKS[CLOCK]
        self.seconds.setdefault(name, 0.0)
        self.calls.setdefault(name, 0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - t0
                self.calls[name] += 1

        return timed

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class TimedCallable:
    """A LightGBM callback (a callable object) with its calls timed; its attributes read through."""

    def __init__(self, inner: Any, timer: HookTimer) -> None:
        self._inner = inner
        self._call = timer.wrap("__call__", inner.__call__)
        for attr in ("order", "before_iteration"):  # LightGBM reads them from the object's __dict__
            if attr in vars(inner):
                setattr(self, attr, vars(inner)[attr])

    def __call__(self, env: Any) -> None:
        self._call(env)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def overridden_hooks(callback: Any, base: type) -> list[str]:
    """The public methods of ``base`` (the framework's callback class) that ``callback``'s class overrides."""
    names = []
    for name in dir(base):
        if name.startswith("_") or not callable(getattr(base, name, None)):
            continue
        if getattr(type(callback), name, None) is not getattr(base, name):
            names.append(name)
    return names


def instrument(callback: Any, base: type | None) -> tuple[Any, HookTimer]:
    """``callback`` with every hook it implements timed (``base`` None: a callable, LightGBM's kind)."""
    timer = HookTimer()
    if base is None:
        return TimedCallable(callback, timer), timer
    for name in overridden_hooks(callback, base):
        setattr(callback, name, timer.wrap(name, getattr(callback, name)))
    return callback, timer


def time_background_work(trial: Any, timer: HookTimer) -> None:
    """Count what a tunelab trial does in its background threads as the callback's cost: the gathered
    reports its writer thread writes, and the live-request reads of a watcher thread."""
    writer = trial._writer
    writer._write_in_background = timer.wrap("(thread) report writes", writer._write_in_background)
    trial.stored_live_state = timer.wrap("(thread) live reads", trial.stored_live_state)


# -- the training runs (each returns the seconds of its fit/train call) -------------------------------
def digits_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as 8x8 float images in [0, 1], a stratified 75/25 split: x_train, y_train, x_val, y_val."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(
        (x / 16.0).astype(np.float32), y, test_size=0.25, random_state=SEED, stratify=y)
    return x_tr, y_tr, x_va, y_va


CNN_WIDTH = 16
BATCH = 64


class DigitsCNN(pl.LightningModule):  # type: ignore[misc]
    """Conv(1, w)-ReLU-Conv(w, 2w)-ReLU-MaxPool(2)-Flatten-Linear(2w*16, 128)-ReLU-Linear(128, 10), Adam."""

    def __init__(self, width: int = CNN_WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Runs:
    """The data of every framework's run, made once."""

    def __init__(self, reports: int, rounds: int) -> None:
        self.reports = reports
        self.rounds = rounds
        self.digits = digits_images()
        x, y = make_classification(n_samples=20_000, n_features=20, n_informative=10, random_state=SEED)
        self.tabular = train_test_split(x, y, test_size=0.25, random_state=SEED)

    # lightning: the digits CNN, one validation per epoch ----------------------------------------------
    def lightning(self, callback: Any, workdir: Path) -> float:
        x_tr, y_tr, x_va, y_va = self.digits
        train = torch.utils.data.TensorDataset(torch.tensor(x_tr).reshape(-1, 1, 8, 8), torch.tensor(y_tr))
        val = torch.utils.data.TensorDataset(torch.tensor(x_va).reshape(-1, 1, 8, 8), torch.tensor(y_va))
        torch.manual_seed(SEED)
        model = DigitsCNN()
        trainer = pl.Trainer(
            max_epochs=self.reports, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            callbacks=[callback], default_root_dir=str(workdir),
        )
        loaders = (torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True),
                   torch.utils.data.DataLoader(val, batch_size=len(val)))
        t0 = clock()
        trainer.fit(model, *loaders)
        return clock() - t0

    # keras: the same CNN, one epoch = one report -------------------------------------------------------
    def keras(self, callback: Any, workdir: Path) -> float:
        x_tr, y_tr, x_va, y_va = self.digits
        keras.utils.set_random_seed(SEED)
        layers = keras.layers
        model = keras.Sequential([
            keras.Input((8, 8, 1)),
            layers.Conv2D(CNN_WIDTH, 3, padding="same", activation="relu"),
            layers.Conv2D(2 * CNN_WIDTH, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2), layers.Flatten(),
            layers.Dense(128, activation="relu"), layers.Dense(10),
        ])
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        t0 = clock()
        model.fit(x_tr.reshape(-1, 8, 8, 1), y_tr, batch_size=BATCH, epochs=self.reports,
                  validation_data=(x_va.reshape(-1, 8, 8, 1), y_va), verbose=0, callbacks=[callback])
        return clock() - t0

    # transformers: a tiny BERT from a config, an evaluation every 10 steps ----------------------------
    def transformers(self, callback: Any, workdir: Path) -> float:
        transformers.set_seed(SEED)
        config = transformers.BertConfig(
            vocab_size=MARK_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=MARK_LENGTH, num_labels=2)
        model = transformers.BertForSequenceClassification(config)
        args = transformers.TrainingArguments(
            output_dir=str(workdir / "hf"), use_cpu=True, report_to=[], save_strategy="no",
            per_device_train_batch_size=16, per_device_eval_batch_size=128, max_steps=HF_EVAL_STEPS * self.reports,
            eval_strategy="steps", eval_steps=HF_EVAL_STEPS, logging_strategy="no", disable_tqdm=True, seed=SEED,
            dataloader_num_workers=0, learning_rate=1e-3,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=MarkDataset(512, seed=0),
                                       eval_dataset=MarkDataset(128, seed=1), callbacks=[callback])
        trainer.remove_callback(transformers.PrinterCallback)  # it prints every evaluation (disable_tqdm=True)
        t0 = clock()
        trainer.train()
        return clock() - t0

    # xgboost / lightgbm: a 15,000 x 20 binary task, one report per boosting round ------------------------
    def xgboost(self, callback: Any, workdir: Path) -> float:
        x_tr, x_va, y_tr, y_va = self.tabular
        dtrain, dvalid = xgb.DMatrix(x_tr, label=y_tr), xgb.DMatrix(x_va, label=y_va)
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 6, "eta": 0.1,
                  "nthread": 1, "seed": SEED, "tree_method": "hist"}
        t0 = clock()
        xgb.train(params, dtrain, num_boost_round=self.rounds, evals=[(dvalid, "validation")],
                  callbacks=[callback], verbose_eval=False)
        return clock() - t0

    def lightgbm(self, callback: Any, workdir: Path) -> float:
        x_tr, x_va, y_tr, y_va = self.tabular
        dtrain = lgb.Dataset(x_tr, label=y_tr)
        dvalid = lgb.Dataset(x_va, label=y_va, reference=dtrain)
        params = {"objective": "binary", "metric": "binary_logloss", "num_leaves": 31, "learning_rate": 0.1,
                  "num_threads": 1, "seed": SEED, "verbosity": -1}
        t0 = clock()
        lgb.train(params, dtrain, num_boost_round=self.rounds, valid_sets=[dvalid], callbacks=[callback])
        return clock() - t0


MARK_VOCAB, MARK_LENGTH, MARK_TOKEN = 50, 16, 7
HF_EVAL_STEPS = 10


class MarkDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random token sequences; label 1 when token 7 appears in the sequence (about half of them)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(8, MARK_VOCAB, (n, MARK_LENGTH), generator=g)
        marked = torch.rand(n, generator=g) < 0.5
        where = torch.randint(0, MARK_LENGTH, (n,), generator=g)
        ids[marked, where[marked]] = MARK_TOKEN
        self.ids, self.labels = ids, marked.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(MARK_LENGTH, dtype=torch.long),
                "labels": self.labels[i]}


class OptunaTrainerCallback(transformers.TrainerCallback):  # type: ignore[misc]
    """What Optuna's HF backend does at each evaluation (``Trainer._report_to_hp_search``), as a callback:
    report the objective (``eval_loss``) at the global step and ask the pruner; stop training on a prune."""

    def __init__(self, trial: optuna.Trial, monitor: str = "eval_loss") -> None:
        self.trial = trial
        self.monitor = monitor

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        self.trial.report(float((metrics or {})[self.monitor]), state.global_step)
        if self.trial.should_prune():
            control.should_training_stop = True


# -- the callbacks and their studies ------------------------------------------------------------------
#: framework -> (the metric the pruners watch, as tunelab names it; the framework's callback base class)
MONITORS: dict[str, str] = {
    "lightning": "val_loss", "transformers": "eval_loss", "keras": "val_loss",
    "xgboost": "validation-logloss", "lightgbm": "valid_0-binary_logloss",
}


def callback_base(framework: str) -> type | None:
    return {
        "lightning": pl.Callback, "transformers": transformers.TrainerCallback,
        "keras": keras.callbacks.Callback, "xgboost": xgb.callback.TrainingCallback, "lightgbm": None,
    }[framework]


def make_callback(framework: str, lib: str, trial: Any) -> Any:
    """The library's callback for ``framework``, watching the same metric in both libraries."""
    if lib == "tunelab":
        return {
            "lightning": lambda: tl_lightning.TunelabCallback(trial, monitor="val_loss"),
            "transformers": lambda: tl_transformers.TunelabCallback(trial, monitor="eval_loss"),
            "keras": lambda: tl_keras.TunelabCallback(trial, monitor="val_loss"),
            "xgboost": lambda: tl_xgboost.TunelabCallback(trial, "validation-logloss"),
            "lightgbm": lambda: tl_lightgbm.TunelabCallback(trial, "binary_logloss"),
        }[framework]()
    return {
        "lightning": lambda: optuna_integration.PyTorchLightningPruningCallback(trial, monitor="val_loss"),
        "transformers": lambda: OptunaTrainerCallback(trial, "eval_loss"),
        "keras": lambda: optuna_integration.KerasPruningCallback(trial, "val_loss"),
        "xgboost": lambda: optuna_integration.XGBoostPruningCallback(trial, "validation-logloss"),
        "lightgbm": lambda: optuna_integration.LightGBMPruningCallback(trial, "binary_logloss"),
    }[framework]()


def create_study(lib: str, framework: str, url: str | None) -> Any:
    """A study with the library's pruner of :data:`PRUNERS` (never pruning here) and random sampler."""
    startup = NEVER_PRUNE if PRUNER == "median-idle" else 1
    if lib == "tunelab":
        metric = MONITORS[framework]
        pruner: Any = (tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, metric=metric)
                       if PRUNER == "asha" else tunelab.MedianPruner(n_startup_trials=startup, metric=metric))
        return tunelab.create_study(name=f"cb-{framework}", storage=url, direction="minimize", seed=SEED,
                                    sampler=tunelab.RandomSampler(), pruner=pruner)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
              if PRUNER == "asha" else optuna.pruners.MedianPruner(n_startup_trials=startup))
    return optuna.create_study(study_name=f"cb-{framework}", storage=url, direction="minimize",
                               sampler=optuna.samplers.RandomSampler(seed=SEED), pruner=pruner)


def stored_reports(lib: str, study: Any, trial: Any, framework: str) -> int:
    """How many steps of the monitored metric the trial has in its storage (checks every report arrived)."""
    if lib == "tunelab":
        curves = study.get_curves(trial.number)
        return len(curves.get(MONITORS[framework], ([], []))[0])
    return len(study._storage.get_trial(trial._trial_id).intermediate_values)


@dataclass
class CallbackRun:
    """One training run with one library's callback."""

    framework: str
    lib: str
    storage: str
    repeat: int
    reports: int
    stored: int
    loop_s: float
    hook_s: float
    hooks: dict[str, dict[str, float]]
    aggregation_s: float = 0.0
    """Lightning only: its own epoch-end metric aggregation (``_LoggerConnector.on_epoch_end``, after the
    train and each validation epoch). A callback that reads ``trainer.callback_metrics`` at
    ``on_train_epoch_end`` computes the epoch's training aggregates in its hook, and Lightning's
    aggregation right after then finds them computed: the hooks plus this is what the run pays."""

    @property
    def us_per_report(self) -> float:
        return 1e6 * self.hook_s / self.reports

    @property
    def share_pct(self) -> float:
        return 100.0 * self.hook_s / self.loop_s


LIGHTNING_AGGREGATION = _LoggerConnector.on_epoch_end


def one_run(runs: Runs, framework: str, lib: str, storage: str, study: Any, workdir: Path,
            repeat: int) -> CallbackRun:
    """One trial of ``study``: a training run with the instrumented callback, then told its result."""
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)  # both libraries' trials carry one parameter
    if lib == "tunelab":  # Optuna stores a parameter in suggest_*; tunelab with the trial's next write:
        trial.flush()     # store it now, so that neither library's callback pays for the parameter's write
    callback, timer = instrument(make_callback(framework, lib, trial), callback_base(framework))
    if lib == "tunelab":  # what tunelab does off the training thread counts too
        time_background_work(trial, timer)
    aggregation = HookTimer()
    if framework == "lightning":
        _LoggerConnector.on_epoch_end = aggregation.wrap("aggregation", LIGHTNING_AGGREGATION)
    gc.collect()
    try:
        loop_s = getattr(runs, framework)(callback, workdir)
    finally:
        _LoggerConnector.on_epoch_end = LIGHTNING_AGGREGATION
    reports = runs.rounds if framework in ("xgboost", "lightgbm") else runs.reports
    stored = stored_reports(lib, study, trial, framework)
    study.tell(trial, 0.0)
    return CallbackRun(
        framework=framework, lib=lib, storage=storage, repeat=repeat, reports=reports, stored=stored,
        loop_s=loop_s, hook_s=timer.total, aggregation_s=aggregation.total,
        hooks={k: {"seconds": timer.seconds[k], "calls": timer.calls[k]} for k in timer.seconds},
    )


def measure_callbacks(runs: Runs, frameworks: Sequence[str], repeats: int, console: Console) -> list[CallbackRun]:
    """Per framework: one study per library and storage, a warm-up run each, then ``repeats`` interleaved
    runs of the four variants in a rotating order."""
    out: list[CallbackRun] = []
    variants = [(lib, storage) for storage in STORAGES for lib in LIBS]
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-int-") as tmp:
        for framework in frameworks:
            workdir = Path(tmp) / framework
            workdir.mkdir()
            studies = {
                (lib, storage): create_study(
                    lib, framework, None if storage == "memory" else f"sqlite:///{workdir / f'{lib}.db'}")
                for lib, storage in variants
            }
            for (lib, storage), study in studies.items():  # warm-up: imports, caches, first fit
                one_run(runs, framework, lib, storage, study, workdir, -1)
            for repeat in range(repeats):
                shift = repeat % len(variants)
                for lib, storage in variants[shift:] + variants[:shift]:
                    run = one_run(runs, framework, lib, storage, studies[(lib, storage)], workdir, repeat)
                    out.append(run)
                    console.log(
                        f"{framework:12s} {lib:7s} {storage:6s} #{repeat}: {run.us_per_report:9.1f} us/report, "
                        f"{run.share_pct:6.3f}% of {run.loop_s:.2f} s, {run.stored}/{run.reports} stored")
            for (lib, _), study in studies.items():
                if lib == "tunelab":
                    study.storage.close()
            gc.collect()
    return out


def callback_table(rows: list[CallbackRun]) -> tuple[Table, list[dict[str, Any]]]:
    """The callback table (medians over the repeats) and its rows as plain data."""
    table = Table(title="Callbacks: microseconds in the hooks per report, and % of the training loop "
                        "(medians; ratio = tunelab/optuna, target <= 1; share target < 1%)")
    for col in ("framework", "storage", "reports", "loop s tunelab/optuna", "tunelab us", "optuna us", "ratio",
                "tunelab %", "optuna %"):
        table.add_column(col, justify="left" if col in ("framework", "storage") else "right")
    pairs: list[dict[str, Any]] = []
    for framework in dict.fromkeys(r.framework for r in rows):
        for storage in STORAGES:
            by_lib = {lib: [r for r in rows if (r.framework, r.lib, r.storage) == (framework, lib, storage)]
                      for lib in LIBS}
            if not all(by_lib.values()):
                continue
            med = {lib: {
                "us": statistics.median(r.us_per_report for r in runs),
                "pct": statistics.median(r.share_pct for r in runs),
                "loop": statistics.median(r.loop_s for r in runs),
            } for lib, runs in by_lib.items()}
            ratio = med["tunelab"]["us"] / med["optuna"]["us"] if med["optuna"]["us"] > 0 else None
            complete = all(r.stored == r.reports for runs in by_lib.values() for r in runs)
            pair = {
                "framework": framework, "storage": storage, "reports": by_lib["tunelab"][0].reports,
                "optuna_equivalent": OPTUNA_EQUIVALENT[framework],
                "tunelab_us_per_report": med["tunelab"]["us"], "optuna_us_per_report": med["optuna"]["us"],
                "ratio": ratio, "tunelab_share_pct": med["tunelab"]["pct"], "optuna_share_pct": med["optuna"]["pct"],
                "tunelab_loop_s": med["tunelab"]["loop"], "optuna_loop_s": med["optuna"]["loop"],
                "every_report_stored": complete,
            }
            if framework == "lightning":  # the hooks plus Lightning's own epoch-end aggregation, per report
                for lib, runs in by_lib.items():
                    pair[f"{lib}_us_with_aggregation"] = statistics.median(
                        1e6 * (r.hook_s + r.aggregation_s) / r.reports for r in runs)
            pairs.append(pair)
            no_slower = ratio is not None and ratio <= 1.0
            under = med["tunelab"]["pct"] < TARGET_SHARE_PCT
            table.add_row(
                framework + ("" if framework != "transformers" else " (*)"), storage, str(pair["reports"]),
                f"{med['tunelab']['loop']:.2f} / {med['optuna']['loop']:.2f}",
                f"{med['tunelab']['us']:,.1f}", f"{med['optuna']['us']:,.1f}",
                "-" if ratio is None else f"[{'green' if no_slower else 'red'}]{ratio:.2f}x[/]",
                f"[{'green' if under else 'red'}]{med['tunelab']['pct']:.3f}[/]", f"{med['optuna']['pct']:.3f}",
            )
    return table, pairs


def hooks_table(rows: list[CallbackRun]) -> tuple[Table, list[dict[str, Any]]]:
    """Where each callback's time goes: per hook, microseconds per call and calls per run (medians)."""
    table = Table(title="Callbacks: time per hook call, us x calls per run (medians)")
    for col in ("framework", "storage", "tunelab", "optuna"):
        table.add_column(col)
    out: list[dict[str, Any]] = []
    for framework in dict.fromkeys(r.framework for r in rows):
        for storage in STORAGES:
            cells = []
            for lib in LIBS:
                runs = [r for r in rows if (r.framework, r.lib, r.storage) == (framework, lib, storage)]
                split = {}
                for hook in dict.fromkeys(h for r in runs for h in r.hooks):
                    per_call = [1e6 * r.hooks[hook]["seconds"] / r.hooks[hook]["calls"]
                                for r in runs if r.hooks.get(hook, {}).get("calls")]
                    calls = [r.hooks.get(hook, {}).get("calls", 0) for r in runs]
                    if per_call:
                        split[hook] = {"us_per_call": statistics.median(per_call), "calls": statistics.median(calls)}
                out.append({"framework": framework, "storage": storage, "lib": lib, "hooks": split})
                cells.append("; ".join(f"{h} {v['us_per_call']:,.1f} x{v['calls']:g}" for h, v in split.items()))
            if any(cells):
                table.add_row(framework, storage, *cells)
    return table, out


# -- 2. scikit-learn searches ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched parameter, written once and given to each library in its own form."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def tunelab(self) -> Any:
        if self.integer:
            return tunelab.Int(int(self.low), int(self.high))
        return tunelab.Float(self.low, self.high, log=self.log)

    def optuna(self) -> Any:
        if self.integer:
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.log)

    def scipy(self) -> Any:
        if self.integer:
            return randint(int(self.low), int(self.high) + 1)
        return loguniform(self.low, self.high) if self.log else uniform(self.low, self.high - self.low)


@dataclass(frozen=True)
class Task:
    name: str
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    estimator: Callable[[], Any]
    space: tuple[Param, ...]
    cv: Any
    scoring: str


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


TASKS = (
    Task("svc-digits", _digits, SVC,
         (Param("C", 1e-2, 1e3, log=True), Param("gamma", 1e-4, 1.0, log=True)),
         StratifiedKFold(5, shuffle=True, random_state=SEED), "accuracy"),
    Task("gb-breast-cancer", lambda: load_breast_cancer(return_X_y=True),
         lambda: GradientBoostingClassifier(n_estimators=30, random_state=SEED),
         (Param("learning_rate", 1e-3, 1.0, log=True), Param("max_depth", 1, 4, integer=True),
          Param("subsample", 0.5, 1.0)),
         StratifiedKFold(5, shuffle=True, random_state=SEED), "roc_auc"),
    Task("elasticnet-diabetes", lambda: load_diabetes(return_X_y=True), lambda: ElasticNet(max_iter=10_000),
         (Param("alpha", 1e-5, 10.0, log=True), Param("l1_ratio", 0.0, 1.0)),
         KFold(5, shuffle=True, random_state=SEED), "r2"),
)
SAMPLERS = {
    "tunelab": "TunelabSearchCV: the study's default, tunelab.AutoSampler (a GP for the first 200 trials, then TPE)",
    "optuna": "OptunaSearchCV: its default, optuna.samplers.TPESampler(seed=random_state)",
    "random": "RandomizedSearchCV: independent draws from scipy.stats loguniform/uniform/randint",
}


def make_search(method: str, task: Task, n: int, seed: int) -> Any:
    common = {"cv": task.cv, "scoring": task.scoring, "random_state": seed}
    if method == "tunelab":
        return TunelabSearchCV(task.estimator(), {p.name: p.tunelab() for p in task.space}, n_trials=n, **common)
    if method == "optuna":
        return optuna_integration.OptunaSearchCV(
            task.estimator(), {p.name: p.optuna() for p in task.space}, n_trials=n, n_jobs=1, **common)
    return RandomizedSearchCV(task.estimator(), {p.name: p.scipy() for p in task.space}, n_iter=n, n_jobs=1,
                              **common)


@dataclass
class SearchRun:
    task: str
    method: str
    seed: int
    n_trials: int
    best_score: float
    wall_s: float
    candidates: int


def measure_searches(tasks: Sequence[Task], n: int, seeds: int, console: Console) -> list[SearchRun]:
    """Every (task, seed, method) search, the methods in a rotating order."""
    out: list[SearchRun] = []
    for task in tasks:
        x, y = task.data()
        for seed in range(seeds):
            shift = seed % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                search = make_search(method, task, n, seed)
                gc.collect()
                t0 = time.perf_counter()
                search.fit(x, y)
                wall = time.perf_counter() - t0
                run = SearchRun(task.name, method, seed, n, float(search.best_score_), wall,
                                len(search.cv_results_["mean_test_score"]))
                out.append(run)
                console.log(f"{task.name:20s} {method:7s} seed {seed}: best {run.best_score:.4f}, {wall:6.1f} s, "
                            f"{run.candidates} candidates")
    return out


def score_cell(stat: dict[str, float], best: float) -> str:
    """``mean +- sd``, in bold for the best mean of the row."""
    text = f"{stat['mean']:.4f} +- {stat['sd']:.4f}"
    return f"[bold]{text}[/]" if stat["mean"] == best else text


def search_table(rows: list[SearchRun]) -> tuple[Table, list[dict[str, Any]]]:
    table = Table(title="scikit-learn searches at equal budget: best CV score (mean +- sd over seeds; higher is "
                        "better) and wall time (median s)")
    for col in ("task", "trials", "seeds", "TunelabSearchCV", "OptunaSearchCV", "RandomizedSearchCV",
                "tunelab s", "optuna s", "random s"):
        table.add_column(col, justify="left" if col == "task" else "right")
    pairs: list[dict[str, Any]] = []
    for task in dict.fromkeys(r.task for r in rows):
        stats: dict[str, dict[str, float]] = {}
        for method in METHODS:
            runs = [r for r in rows if (r.task, r.method) == (task, method)]
            scores = [r.best_score for r in runs]
            stats[method] = {
                "mean": statistics.fmean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "wall_s": statistics.median(r.wall_s for r in runs),
            }
        best = max(stats[m]["mean"] for m in METHODS)
        n_trials, seeds = rows[0].n_trials, len({r.seed for r in rows if r.task == task})
        pairs.append({"task": task, "n_trials": n_trials, "seeds": seeds,
                      **{f"{m}_{k}": v for m in METHODS for k, v in stats[m].items()}})

        table.add_row(task, str(n_trials), str(seeds), *(score_cell(stats[m], best) for m in METHODS),
                      *(f"{stats[m]['wall_s']:.1f}" for m in METHODS))
    return table, pairs


# -- targets and main ---------------------------------------------------------------------------------------
def check_targets(cb: list[dict[str, Any]], sk: list[dict[str, Any]]) -> dict[str, Any]:
    slower = [f"{p['framework']} {p['storage']} ({p['ratio']:.2f}x)" for p in cb
              if p["ratio"] is None or p["ratio"] > 1.0]
    over = [f"{p['framework']} {p['storage']} ({p['tunelab_share_pct']:.2f}%)" for p in cb
            if p["tunelab_share_pct"] >= TARGET_SHARE_PCT]
    incomplete = [f"{p['framework']} {p['storage']}" for p in cb if not p["every_report_stored"]]
    return {
        "callback_no_slower_than_optuna": bool(cb) and not slower, "callback_rows_slower": slower,
        "callback_under_1pct_of_loop": bool(cb) and not over, "callback_rows_over_1pct": over,
        "every_report_stored": not incomplete, "rows_missing_reports": incomplete,
        "sklearn_tunelab_vs_random": [
            f"{p['task']}: {p['tunelab_mean'] - p['random_mean']:+.4f}" for p in sk],
        "sklearn_tunelab_vs_optuna": [
            f"{p['task']}: {p['tunelab_mean'] - p['optuna_mean']:+.4f}" for p in sk],
    }


def framework_versions() -> dict[str, str]:
    out = {}
    for dist in ("optuna-integration", "lightning", "transformers", "accelerate", "keras", "xgboost-cpu",
                 "xgboost", "lightgbm", "scikit-learn", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def quiet() -> None:
    """Silence the frameworks' progress and advice messages (they would bury the tables)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "tunelab"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def name_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"expected names among {', '.join(choices)}, got {text!r}")
        return names
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a small run: 5 reports/50 rounds, 3 repeats; 10 trials x 2 seeds (integrations-quick.json)")
    p.add_argument("--frameworks", type=name_list(FRAMEWORKS), default=list(FRAMEWORKS),
                   help=f"callbacks to measure (default all: {','.join(FRAMEWORKS)})")
    p.add_argument("--reports", type=int, help="epochs/evaluations per deep-learning run (default 10; quick 5)")
    p.add_argument("--rounds", type=int, help="boosting rounds per XGBoost/LightGBM run (default 200; quick 50)")
    p.add_argument("--repeats", type=int, help="timed runs per library and storage (default 5; quick 3)")
    task_names = [t.name for t in TASKS]
    p.add_argument("--tasks", type=name_list(task_names), default=task_names,
                   help=f"scikit-learn tasks (default all: {','.join(task_names)})")
    p.add_argument("--trials", type=int, help="n_trials = n_iter of each search (default 30; quick 10)")
    p.add_argument("--seeds", type=int, help="seeds per search (default 5; quick 2)")
    p.add_argument("--skip-callbacks", action="store_true", help="measure the scikit-learn searches only")
    p.add_argument("--skip-sklearn", action="store_true", help="measure the callbacks only")
    p.add_argument("--output", type=Path, help="JSON results (default benchmarks/results/integrations.json)")
    p.add_argument("--pruner", choices=sorted(PRUNERS), default="median-idle",
                   help="the pruner of both libraries' studies: " + "; ".join(f"{k}: {v}" for k, v in PRUNERS.items()))
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="time hooks and loops by wall clock (default) or by the CPU time of their thread")
    args = p.parse_args(argv)
    defaults = {"reports": (5, 10), "rounds": (50, 200), "repeats": (3, 5), "trials": (10, 30), "seeds": (2, 5)}
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.output is None:
        args.output = RESULTS_DIR / ("integrations-quick.json" if args.quick else "integrations.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    global CLOCK, PRUNER
    args = parse_args(argv)
    CLOCK, PRUNER = args.clock, args.pruner
    quiet()
    console = Console(width=None if sys.stdout.isatty() else 160, log_path=False)
    info = {**machine_info(), "frameworks": framework_versions()}
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    started, began = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    cb_runs: list[CallbackRun] = []
    if not args.skip_callbacks:
        cb_runs = measure_callbacks(Runs(args.reports, args.rounds), args.frameworks, args.repeats, console)
    sk_runs: list[SearchRun] = []
    if not args.skip_sklearn:
        tasks = [t for t in TASKS if t.name in args.tasks]
        sk_runs = measure_searches(tasks, args.trials, args.seeds, console)
    cb_pairs: list[dict[str, Any]] = []
    hook_split: list[dict[str, Any]] = []
    sk_pairs: list[dict[str, Any]] = []
    if cb_runs:
        table, cb_pairs = callback_table(cb_runs)
        console.print(table)
        table, hook_split = hooks_table(cb_runs)
        console.print(table)
        if "transformers" in args.frameworks:
            console.print("(*) transformers: optuna-integration has no Trainer callback; the optuna column is a "
                          "hand-written TrainerCallback doing what Optuna's HF backend does (report + should_prune).")
    if sk_runs:
        table, sk_pairs = search_table(sk_runs)
        console.print(table)
        console.print("samplers: " + "; ".join(SAMPLERS.values()))
    targets = check_targets(cb_pairs, sk_pairs)
    if cb_pairs:
        console.print("target, tunelab's callback costs no more per report than Optuna's, every row: " + (
            "met" if targets["callback_no_slower_than_optuna"] else "NOT met: " + "; ".join(
                targets["callback_rows_slower"])))
        console.print(f"target, tunelab's callback under {TARGET_SHARE_PCT:g}% of the training loop, every row: " + (
            "met" if targets["callback_under_1pct_of_loop"] else "NOT met: " + "; ".join(
                targets["callback_rows_over_1pct"])))
        if not targets["every_report_stored"]:
            console.print("[red]some runs did not store every report:[/] " + "; ".join(targets["rows_missing_reports"]))
    for p in cb_pairs:
        if "tunelab_us_with_aggregation" in p:
            console.print(
                f"{p['framework']} {p['storage']}, hooks + Lightning's epoch-end metric aggregation per report "
                f"(what reading callback_metrics at on_train_epoch_end moves into the hook): tunelab "
                f"{p['tunelab_us_with_aggregation']:,.1f} us, optuna {p['optuna_us_with_aggregation']:,.1f} us")
    if sk_pairs:
        console.print("no target; tunelab's mean best score minus RandomizedSearchCV's: "
                      + ", ".join(targets["sklearn_tunelab_vs_random"]) + "; minus OptunaSearchCV's: "
                      + ", ".join(targets["sklearn_tunelab_vs_optuna"]))
    results = {
        "benchmark": "integrations",
        "started": began,
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "settings": {
            "quick": args.quick, "frameworks": args.frameworks, "reports": args.reports, "rounds": args.rounds,
            "repeats": args.repeats, "tasks": args.tasks, "trials": args.trials, "seeds": args.seeds,
            "pruner": args.pruner, "pruners": PRUNERS[args.pruner] + " (tunelab's with metric=<monitored>)",
            "optuna_equivalents": OPTUNA_EQUIVALENT, "samplers": SAMPLERS,
            "clock": args.clock,
            "timed": "callbacks: every hook the callback implements (the clock around each call), and the "
                     "fit/train call; searches: search.fit (the refit included)",
        },
        "callbacks": cb_pairs,
        "callback_hooks": hook_split,
        "sklearn": sk_pairs,
        "targets": targets,
        "raw": {"callbacks": [asdict(r) for r in cb_runs], "sklearn": [asdict(r) for r in sk_runs]},
    }
    save_json(args.output, results)
    console.print(f"saved {args.output} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
