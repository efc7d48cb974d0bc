"""Multi-objective early stopping: Pareto ASHA against unpruned random search, epochs as the resource.

A PyTorch MLP on scikit-learn's digits (the ``torch_digits`` split of problems.py) is trained
epoch by epoch up to ``R`` epochs (default 27) and traded off on two objectives, both minimised:
the validation error (1 - accuracy) and the parameter count. Each trial reports both after every
epoch (``trial.report(epoch, val_error=..., params=...)``) and returns the pair. Every method gets
the same budget of ``E`` epochs (default 30 full trainings, ``30 * R``), counted as trained:

- ``tunelab-random``: RandomSampler, no pruning (``E / R`` trials), the baseline;
- ``tunelab-random-pasha``: RandomSampler + :class:`tunelab.ParetoSuccessiveHalvingPruner`
  (min_resource 1, eta 3, max_resource R); with the same seed it sees random's configurations
  in the same order, and more of them;
- ``tunelab-random-pasha-gap``: the same with ``end_crowding="gap"`` (a front's ends rank by their gap
  to their neighbour, not first);
- ``tunelab-random-pasha-m3``: the same with min_resource 3 (rungs at 3 and 9 epochs, not 1, 3, 9);
- ``tunelab-random-pmedian``: RandomSampler + :class:`tunelab.ParetoMedianPruner`;
- ``tunelab-default``: the study's default sampler (AutoSampler: GP LogEHVI up to 200 trials), no
  pruning, to tell the sampler's share from the pruner's in the next row;
- ``tunelab-default-pasha``: the study's default sampler + Pareto ASHA (``-gap``: with ``end_crowding="gap"``);
- ``optuna-random`` and ``optuna-nsga2`` (population 10): Optuna 5.0 has no pruning for studies
  with several objectives, so these train every trial to the end (a sanity row and a peer).

The hypervolume of the front of the COMPLETE trials (a pruned or cut trial is never a final
point) is computed with :func:`tunelab.multiobjective.hypervolume` on (val_error, log10(params))
against the fixed reference point ``REFERENCE``, after every completed trial, as a function of
the epochs the run had spent. Printed, and saved as JSON with every trial's curve:

- per method: the median and IQR over seeds of the hypervolume at E/9, E/3 and E, trials
  started and completed;
- per method: the epochs it needed to reach the final hypervolume (at E) of ``tunelab-random``
  with the same seed, and the median over seeds of its ratio to the epochs random search itself
  needed to reach it (a method that never reaches it counts as infinite), and to E;
- the target (issue 19): Pareto ASHA reaches random search's hypervolume with at most 1/3 of its
  epochs (median ratio <= 1/3).

Run ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv-bench/bin/python benchmarks/multifidelity_mo.py``
(``--quick`` for 2 seeds and a 10-trial budget, ``--seeds N``, ``--first-seed S`` (seeds S, ..., S + N - 1),
``--jobs N``, ``--methods a,b``;
``--merge PATH`` adds the runs of an earlier JSON for the methods not run now, same seeds and budget);
``--from-json PATH`` prints the tables of a saved run again without running anything.
``--every-epoch`` counts every trained epoch's point in the hypervolume, pruned trials' included, as
``multifidelity.py`` counts a run's best accuracy (each is a model one could keep); the default counts
only COMPLETE trials, which is conservative for the pruners. With ``--from-json`` it recomputes the
tables from the saved curves.
``--curve-cache PATH`` (a JSON file, created if missing) replays every epoch some earlier run already
trained: a network's curve depends only on its parameters (seeded weights, shuffling and dropout),
so a pruner's decisions and the tables come out identical, in seconds instead of minutes; only the
recorded training times are then meaningless. New epochs are trained and added to the file.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from multifidelity import EpochResult, RunLog, spread
from overhead import machine_info, save_json
from problems import DIGITS_TRAIN, LOSS_CAP, torch_digits_data
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from suite import THREAD_VARS, fmt_duration, library_versions, name_list

import tunelab
from tunelab.distributions import Distribution, Float, Int
from tunelab.multiobjective import hypervolume

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MAX_EPOCHS = 27
"""R: a full training, and Pareto ASHA's max_resource."""
BUDGET_TRIALS = 30
"""E = BUDGET_TRIALS * R epochs per run."""
SEEDS = 5
QUICK_SEEDS, QUICK_BUDGET_TRIALS = 2, 10
ETA = 3
TARGET_RATIO = 1.0 / 3.0
SEED_OF_WEIGHTS = 0
BATCH_SIZE = 64
OBJECTIVES = ("val_error", "params")
REFERENCE = (1.0, 5.25)
"""The hypervolume's reference point in (val_error, log10(params)); the largest net has 150,794 parameters (10^5.18)."""
TIE = 1e-12

SPACE: dict[str, Distribution] = {
    "width": Int(16, 256, log=True),
    "depth": Int(1, 3),
    "lr": Float(1e-4, 3e-1, log=True),
    "weight_decay": Float(1e-6, 1e-1, log=True),
    "dropout": Float(0.0, 0.6),
}
PROBLEM = (
    f"PyTorch MLP (64 -> depth x [width, ReLU, dropout] -> 10), Adam, batch {BATCH_SIZE}, on scikit-learn's digits "
    f"({DIGITS_TRAIN} images train, 1,197 validate); objectives: validation error and parameter count, both minimised; "
    f"hypervolume on (val_error, log10 params) with reference {REFERENCE}"
)


def n_params(params: Mapping[str, Any]) -> int:
    """The network's parameter count (weights and biases)."""
    width, depth = int(params["width"]), int(params["depth"])
    return 64 * width + width + (depth - 1) * (width * width + width) + width * 10 + 10


class MLPTrainer:
    """One network on digits, trained one epoch at a time; deterministic given its parameters
    (weights, shuffling and dropout masks come from generators seeded with ``SEED_OF_WEIGHTS``)."""

    def __init__(self, params: Mapping[str, Any], seed: int = SEED_OF_WEIGHTS) -> None:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        self._torch = torch
        self.x_tr, self.x_va, self.y_tr, self.y_va = torch_digits_data()
        width, depth, dropout = int(params["width"]), int(params["depth"]), float(params["dropout"])
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        fan_in = 64
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(dropout)]
            fan_in = width
        self.model = nn.Sequential(*layers, nn.Linear(fan_in, 10))
        self._rng = torch.get_rng_state()
        torch.set_rng_state(saved)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(params["lr"]),
                                          weight_decay=float(params["weight_decay"]))
        self.loss_fn = nn.CrossEntropyLoss()
        self.shuffle = torch.Generator().manual_seed(seed)

    def train_epoch(self) -> EpochResult:
        """One pass over the training images, then the validation loss and accuracy."""
        torch = self._torch
        saved = torch.get_rng_state()
        torch.set_rng_state(self._rng)
        try:
            self.model.train()
            order = torch.randperm(self.x_tr.shape[0], generator=self.shuffle)
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
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
        loss = loss if math.isfinite(loss) and loss < LOSS_CAP else LOSS_CAP
        return EpochResult(val_loss=loss, val_acc=correct / len(self.y_va))


CurveCache = dict[str, list[list[float]]]
"""A network's parameters (``repr`` of their sorted items) -> its (val_loss, val_acc) per epoch so far."""
_CURVES: CurveCache | None = None
_NEW_CURVES: set[str] = set()


class CachedTrainer:
    """An :class:`MLPTrainer` that replays the epochs ``_CURVES`` holds for its parameters and trains
    (from scratch, up to where the cache stops, then on) only the epochs it does not hold."""

    def __init__(self, params: Mapping[str, Any], curves: CurveCache) -> None:
        self.params, self.curves, self.done = dict(params), curves, 0
        self.key = repr(sorted(self.params.items()))
        self.trainer: MLPTrainer | None = None

    def train_epoch(self) -> EpochResult:
        curve = self.curves.setdefault(self.key, [])
        if self.done >= len(curve) or self.trainer is not None:
            if self.trainer is None:
                self.trainer = MLPTrainer(self.params)
                for _ in range(self.done):
                    self.trainer.train_epoch()
            r = self.trainer.train_epoch()
            if self.done == len(curve):
                curve.append([r.val_loss, r.val_acc])
                _NEW_CURVES.add(self.key)
        loss, acc = curve[self.done]
        self.done += 1
        return EpochResult(val_loss=loss, val_acc=acc)


class MORunLog(RunLog):
    """multifidelity.py's epoch budget and curves, with this problem's trainer."""

    def new_trainer(self, record: dict[str, Any], params: Mapping[str, Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        trainer = MLPTrainer(params) if _CURVES is None else CachedTrainer(params, _CURVES)
        self._charge(record, wall, cpu)
        record["n_params"] = n_params(params)
        return trainer


RunFn = Callable[[MORunLog, int], None]


def tunelab_runner(sampler: Callable[[], Any], pruner: Callable[[int], Any]) -> RunFn:
    """A tunelab study with two objectives in memory: one trial per ``optimize`` call while epochs are left."""
    def run(log: MORunLog, seed: int) -> None:
        study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=list(OBJECTIVES),
                                     sampler=sampler(), seed=seed, space=SPACE, pruner=pruner(log.max_epochs))

        def objective(trial: tunelab.Trial) -> tuple[float, float]:
            size = float(n_params(trial.params))

            def report(epoch: int, r: EpochResult) -> None:
                trial.report(epoch, val_error=1.0 - r.val_acc, params=size)

            state, _ = log.train_trial(trial.number, trial.params, report, trial.should_prune)
            if trial.system_attrs.get("pruned"):
                log.trials[-1]["pruned_rule"] = trial.system_attrs["pruned"].get("rule")
            if state != "complete":
                raise tunelab.TrialPruned()
            return 1.0 - log.trials[-1]["val_acc"][-1], size

        while log.left > 0:
            study.optimize(objective, n_trials=1, catch=(), show_progress=False, heartbeat_interval=None)

    return run


def optuna_runner(sampler: Callable[[int], Any]) -> RunFn:
    """An Optuna study with two objectives (no pruning: Optuna has none for several objectives)."""
    def run(log: MORunLog, seed: int) -> None:
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler(seed))

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            params = {
                "width": trial.suggest_int("width", 16, 256, log=True),
                "depth": trial.suggest_int("depth", 1, 3),
                "lr": trial.suggest_float("lr", 1e-4, 3e-1, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
                "dropout": trial.suggest_float("dropout", 0.0, 0.6),
            }
            state, _ = log.train_trial(trial.number, params, lambda e, r: None, lambda: False)
            if state != "complete":
                raise optuna.TrialPruned()
            return 1.0 - log.trials[-1]["val_acc"][-1], float(n_params(params))

        while log.left > 0:
            study.optimize(objective, n_trials=1, catch=())

    return run


def _pasha(R: int) -> Any:
    return tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA, max_resource=R)


def _pasha_gap(R: int) -> Any:
    return tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA, max_resource=R,
                                                 end_crowding="gap")


def _pasha3(R: int) -> Any:
    return tunelab.ParetoSuccessiveHalvingPruner(min_resource=3, reduction_factor=ETA, max_resource=R)


def _pmedian(R: int) -> Any:
    return tunelab.ParetoMedianPruner(n_startup_trials=5, n_warmup_steps=1)


METHODS: dict[str, RunFn] = {
    "tunelab-random": tunelab_runner(tunelab.RandomSampler, lambda R: None),
    "tunelab-random-pasha": tunelab_runner(tunelab.RandomSampler, _pasha),
    "tunelab-random-pasha-gap": tunelab_runner(tunelab.RandomSampler, _pasha_gap),
    "tunelab-random-pasha-m3": tunelab_runner(tunelab.RandomSampler, _pasha3),
    "tunelab-random-pmedian": tunelab_runner(tunelab.RandomSampler, _pmedian),
    "tunelab-default": tunelab_runner(lambda: None, lambda R: None),
    "tunelab-default-pasha": tunelab_runner(lambda: None, _pasha),
    "tunelab-default-pasha-gap": tunelab_runner(lambda: None, _pasha_gap),
    "optuna-random": optuna_runner(lambda seed: optuna.samplers.RandomSampler(seed=seed)),
    "optuna-nsga2": optuna_runner(lambda seed: optuna.samplers.NSGAIISampler(population_size=10, seed=seed)),
}
RANDOM = "tunelab-random"
PASHA = ("tunelab-random-pasha", "tunelab-default-pasha", "tunelab-random-pasha-gap", "tunelab-default-pasha-gap",
         "tunelab-random-pasha-m3")


@dataclass(frozen=True)
class Task:
    method: str
    seed: int
    max_epochs: int
    budget: int
    curve_cache: str | None = None


def run_task(task: Task) -> dict[str, Any]:
    """Run one task; never raises (an error is reported in the result, with the trials so far)."""
    global _CURVES
    if task.curve_cache is not None and _CURVES is None:
        path = Path(task.curve_cache)
        _CURVES = json.loads(path.read_text()) if path.exists() else {}
    _NEW_CURVES.clear()
    log = MORunLog(task.max_epochs, task.budget)
    error: str | None = None
    wall = time.perf_counter()
    try:
        METHODS[task.method](log, task.seed)
    except Exception:  # noqa: BLE001 - report any failure to the parent rather than lose the run
        error = traceback.format_exc()
    wall = time.perf_counter() - wall
    return {"method": task.method, "seed": task.seed, "max_epochs": task.max_epochs, "budget": task.budget,
            "epochs": log.used, "n_trials": len(log.trials),
            "n_complete": sum(t["state"] == "complete" for t in log.trials),
            "wall_s": round(wall, 3), "train_wall_s": round(log.train_wall_s, 3),
            "library_wall_s": round(wall - log.train_wall_s, 3), "trials": log.trials, "error": error,
            "new_curves": {k: _CURVES[k] for k in _NEW_CURVES} if _CURVES is not None else {}}


def init_worker() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    MLPTrainer({"width": 32, "depth": 2, "lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.1}).train_epoch()


def run_all(tasks: list[Task], jobs: int, console: Console, curves: CurveCache | None = None) -> list[dict[str, Any]]:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    # the model-based method is the slowest: start it first
    tasks = sorted(tasks, key=lambda t: (t.method != "tunelab-default-pasha", t.seed))
    with mp.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
        for r in pool.imap_unordered(run_task, tasks, chunksize=1):
            new_curves = r.pop("new_curves")
            if curves is not None:
                for k, c in new_curves.items():
                    if len(c) > len(curves.get(k, ())):
                        curves[k] = c
            results.append(r)
            elapsed = time.perf_counter() - started
            status = "[red]ERROR[/]" if r["error"] else f"hv {final_hv(r):.4f}"
            console.print(f"[{len(results):>2}/{len(tasks)}] {r['method']:<23} seed {r['seed']:>2}  {status:<11} "
                          f"{r['n_trials']:>4} trials ({r['n_complete']} complete), {r['epochs']} epochs in "
                          f"{r['wall_s']:6.1f}s (library {r['library_wall_s']:5.1f}s)  elapsed {fmt_duration(elapsed)}",
                          highlight=False)
            if r["error"]:
                console.print(r["error"].rstrip().splitlines()[-1], style="red", markup=False, highlight=False)
    return results


# -- statistics -------------------------------------------------------------------------------
def completions(run: Mapping[str, Any], every_epoch: bool = False) -> list[tuple[int, float, float]]:
    """(epochs the run had spent when the trial completed, val_error, log10 params) of each COMPLETE trial;
    with ``every_epoch``, of every epoch any trial trained (the epoch count when it ended). A trial trained
    in pieces, side by side with others, has ``at``: the run's epoch count after each of its epochs."""
    def at(t: Mapping[str, Any], j: int) -> int:  # the run's epoch count after the trial's j-th epoch
        return int(t["at"][j - 1]) if t.get("at") else int(t["start"]) + j

    if every_epoch:
        out = [(at(t, j), 1.0 - acc, math.log10(t["n_params"]))
               for t in run["trials"] for j, acc in enumerate(t["val_acc"], 1)]
    else:
        out = [(at(t, len(t["val_acc"])), 1.0 - t["val_acc"][-1], math.log10(t["n_params"]))
               for t in run["trials"] if t["state"] == "complete"]
    return sorted(out)


def hv_trace(run: Mapping[str, Any], every_epoch: bool = False) -> list[tuple[int, float]]:
    """(epochs spent, hypervolume of the front by then), one point per completion (or trained epoch)."""
    front: list[tuple[float, float]] = []
    trace: list[tuple[int, float]] = []
    for epoch, err, size in completions(run, every_epoch):
        if any(e <= err and s <= size for e, s in front):
            continue  # dominated (or a duplicate): the hypervolume is unchanged
        front = [(e, s) for e, s in front if not (err <= e and size <= s)] + [(err, size)]
        trace.append((epoch, hypervolume(front, REFERENCE)))
    return trace


def hv_within(run: Mapping[str, Any], epochs: int, every_epoch: bool = False) -> float:
    return max((hv for e, hv in hv_trace(run, every_epoch) if e <= epochs), default=0.0)


def final_hv(run: Mapping[str, Any], every_epoch: bool = False) -> float:
    return hv_within(run, run["budget"], every_epoch)


def epochs_to_reach(run: Mapping[str, Any], target: float, every_epoch: bool = False) -> int | None:
    return next((e for e, hv in hv_trace(run, every_epoch) if hv >= target - TIE), None)


def summarize(runs: Sequence[Mapping[str, Any]], methods: Sequence[str], budget: int,
              every_epoch: bool = False) -> dict[str, Any]:
    by = {(r["method"], r["seed"]): r for r in runs if not r["error"]}
    seeds = sorted({s for _, s in by})
    anytime = sorted({max(1, budget // d) for d in (9, 3, 1)})
    rows = []
    for m in methods:
        mine = [by[(m, s)] for s in seeds if (m, s) in by]
        reach, ratio, ratio_e = [], [], []
        for s in seeds:
            if (m, s) not in by or (RANDOM, s) not in by:
                continue
            target = final_hv(by[(RANDOM, s)], every_epoch)
            base = epochs_to_reach(by[(RANDOM, s)], target, every_epoch)
            got = epochs_to_reach(by[(m, s)], target, every_epoch)
            reach.append(math.inf if got is None else float(got))
            ratio.append(math.inf if got is None or not base else got / base)
            ratio_e.append(math.inf if got is None else got / budget)
        rows.append({
            "method": m, "seeds": len(mine),
            "hv": {str(e): spread([hv_within(r, e, every_epoch) for r in mine]) for e in anytime},
            "trials": spread([float(r["n_trials"]) for r in mine]),
            "complete": spread([float(r["n_complete"]) for r in mine]),
            "epochs_to_random_hv": spread(reach), "ratio_to_random_epochs": spread(ratio),
            "ratio_to_budget": spread(ratio_e),
            "reached": sum(math.isfinite(x) for x in reach), "compared": len(reach),
            "wall_s": spread([float(r["wall_s"]) for r in mine]),
            "library_s": spread([float(r["library_wall_s"]) for r in mine]),
        })
    target = {}
    for m in PASHA:
        row = next((r for r in rows if r["method"] == m), None)
        if row and row["compared"]:
            med = row["ratio_to_random_epochs"]["median"]
            target[m] = {"median_ratio": med, "met": bool(med <= TARGET_RATIO + 1e-12)}
    return {"anytime": anytime, "rows": rows, "target": target, "seeds": seeds, "every_epoch": every_epoch}


def _f(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.{digits}f}"


def _s(s: Mapping[str, Any], digits: int = 4) -> str:
    if not s["n"]:
        return "-"
    return f"{_f(s['median'], digits)} [{_f(s['q25'], digits)}, {_f(s['q75'], digits)}]"


def print_tables(console: Console, summary: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    e = summary["anytime"]
    counted = "every trained epoch's" if summary.get("every_epoch") else "the COMPLETE trials'"
    table = Table(title=f"Hypervolume of {counted} front, median [IQR] over {len(summary['seeds'])} seeds "
                        f"(R = {config['max_epochs']}, E = {config['budget']} epochs)")
    table.add_column("method", no_wrap=True)
    for b in e:
        table.add_column(f"HV @ {b} ep", justify="right")
    table.add_column("trials (complete)", justify="right")
    table.add_column("epochs to random's HV", justify="right")
    table.add_column("/ random's epochs", justify="right")
    table.add_column("/ E", justify="right")
    table.add_column("reached", justify="right")
    for r in summary["rows"]:
        table.add_row(
            r["method"], *[_s(r["hv"][str(b)], 3) for b in e],
            f"{_f(r['trials']['median'], 0)} ({_f(r['complete']['median'], 0)})",
            _s(r["epochs_to_random_hv"], 0), _s(r["ratio_to_random_epochs"], 2), _s(r["ratio_to_budget"], 2),
            f"{r['reached']}/{r['compared']}",
        )
    console.print(table)
    for m, t in summary["target"].items():
        verdict = "[green]met[/]" if t["met"] else "[red]missed[/]"
        console.print(f"Target (<= 1/3 of random search's epochs to its hypervolume), {m}: median ratio "
                      f"{_f(t['median_ratio'], 2)} -> {verdict}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds, {QUICK_BUDGET_TRIALS}-trial budget")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed, ..., first-seed + seeds - 1")
    p.add_argument("--budget-trials", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", type=name_list(METHODS, "method"), default=list(METHODS))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--from-json", type=Path, default=None)
    p.add_argument("--merge", type=Path, default=None, help="add an earlier JSON's runs of the methods not run now")
    p.add_argument("--curve-cache", type=Path, default=None,
                   help="replay the epochs this JSON file holds (same tables, in seconds); train and add new ones")
    p.add_argument("--every-epoch", action="store_true",
                   help="count every trained epoch's point in the hypervolume, not only COMPLETE trials'")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=170)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        summary = data["summary"]
        if args.every_epoch:
            config = data["config"]
            summary = summarize(data["runs"], config["methods"], config["budget"], every_epoch=True)
        print_tables(console, summary, data["config"])
        return 0
    seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    budget_trials = args.budget_trials or (QUICK_BUDGET_TRIALS if args.quick else BUDGET_TRIALS)
    budget = budget_trials * args.max_epochs
    methods = list(dict.fromkeys([RANDOM, *args.methods]))
    seed_list = list(range(args.first_seed, args.first_seed + seeds))
    config = {"max_epochs": args.max_epochs, "budget": budget, "budget_trials": budget_trials, "seeds": seeds,
              "first_seed": args.first_seed,
              "methods": methods, "eta": ETA, "reference": REFERENCE, "problem": PROBLEM, "jobs": args.jobs,
              "space": {k: repr(v) for k, v in SPACE.items()}}
    console.print(f"[bold]{escape(PROBLEM)}[/]\n{len(methods)} methods x {seeds} seeds, E = {budget} epochs, "
                  f"{args.jobs} processes")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    cache = None if args.curve_cache is None else str(args.curve_cache)
    curves: CurveCache | None = None
    if args.curve_cache is not None:
        curves = json.loads(args.curve_cache.read_text()) if args.curve_cache.exists() else {}
        config["curve_cache"] = cache
    tasks = [Task(m, s, args.max_epochs, budget, cache) for m in methods for s in seed_list]
    runs = run_all(tasks, args.jobs, console, curves)
    if args.curve_cache is not None and curves is not None:
        args.curve_cache.write_text(json.dumps(curves))
    if args.merge:
        earlier = json.loads(args.merge.read_text())
        if earlier["config"]["budget"] != budget or earlier["config"]["max_epochs"] != args.max_epochs:
            raise SystemExit(f"--merge {args.merge}: another budget or R")
        kept = [r for r in earlier["runs"] if r["method"] not in methods and r["seed"] in seed_list]
        methods = [m for m in METHODS if m in methods or any(r["method"] == m for r in kept)]
        runs = kept + runs
        config["methods"], config["merged_from"] = methods, str(args.merge)
    summary = summarize(runs, methods, budget, args.every_epoch)
    config["every_epoch"] = args.every_epoch
    duration = time.perf_counter() - started
    print_tables(console, summary, config)
    console.print(f"Run time {fmt_duration(duration)}")
    out = args.out or RESULTS_DIR / f"multifidelity-mo{'-quick' if args.quick else ''}.json"
    save_json(out, {"benchmark": "multifidelity_mo", "started": started_at, "duration_s": round(duration, 1),
                    "machine": machine_info(), "versions": library_versions(), "config": config,
                    "summary": summary, "runs": runs})
    console.print(f"Saved {out}")
    return 0 if all(not r["error"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
