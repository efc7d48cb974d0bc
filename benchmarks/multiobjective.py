"""Multi-objective sample efficiency: tunelab's samplers against Optuna's on problems with known fronts.

Every method (one library's sampler) runs on every problem once per seed, with the largest budget;
the hypervolume of the feasible front found after 50, 100 and 200 trials (a fixed reference point
per problem, :func:`tunelab.multiobjective.hypervolume` for both libraries) is computed from the
values the objective returned, in trial order. Printed, and saved as JSON with every run's values:

- per problem: each method's median hypervolume over seeds, its interquartile range, and the
  median as a share of the true front's hypervolume (where known);
- which tunelab sampler wins (best median) on each problem at each budget, and every method's
  mean rank (per problem and seed, ties averaged, 1 = best);
- the time per trial outside the objective (sampler + library), over trials 1-100 and 101-200;
- the targets: (1) at 100 trials tunelab's best sampler has at least Optuna's best median
  hypervolume on every problem; (2) tunelab's AutoSampler's median is never below Optuna's
  NSGA-II's (Optuna's default for several objectives) by more than that one's IQR, at any budget.

Optuna's GPSampler (LogEHVI) refits a GP per objective and optimises the acquisition on every
trial: it runs at most ``GP_CAP`` trials (100), so it has no value at 200.

Run ``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/multiobjective.py [--quick]``;
``--from-json PATH`` prints the tables of a saved run again without running anything.
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from mo_problems import (
    C2DTLZ2_REF,
    C2DTLZ2_SPACE,
    C2DTLZ2_TRUE_HV,
    CNN_EPOCHS,
    CNN_MEMORY_MB,
    CNN_REF,
    CNN_SPACE,
    c2dtlz2,
    cnn_digits,
)
from overhead import int_list, machine_info, save_json
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy.stats import rankdata

import tunelab
from tunelab.distributions import Distribution, Float, Int
from tunelab.multiobjective import hypervolume

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_BUDGETS = (50, 100, 200)
QUICK_BUDGETS = (20, 40)
TARGET_BUDGET = 100
GP_CAP = 100
CHECKPOINT_EVERY_S = 30.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
Params = Mapping[str, Any]
Constraint = tuple[str, float, float]  # (name, value, upper): feasible when value <= upper


# -- problems ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A problem whose objectives are all minimised.

    Attributes:
        name: its key on the command line and in the results.
        space: the tunelab space (Optuna gets the equivalent suggestions).
        n_objectives: how many values ``evaluate`` returns.
        evaluate: params -> (objective values, constraints as (name, value, upper)).
        reference: the hypervolume's reference point.
        true_hv: the hypervolume of the true Pareto front (None when unknown).
        note: what it is, for the tables and the README.
    """

    name: str
    space: Mapping[str, Distribution]
    n_objectives: int
    evaluate: Callable[[Params], tuple[tuple[float, ...], list[Constraint]]]
    reference: tuple[float, ...]
    true_hv: float | None
    note: str

    @property
    def constrained(self) -> bool:
        return self.name in CONSTRAINED

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "space": {k: repr(v) for k, v in self.space.items()},
                "n_objectives": self.n_objectives, "reference": list(self.reference),
                "true_hv": self.true_hv, "constrained": self.constrained, "note": self.note}


ZDT_D = 5
DTLZ_D = 6  # 3 objectives: 2 position variables + k = 4 distance variables


def _xs(p: Params, d: int) -> np.ndarray:
    return np.array([float(p[f"x{i}"]) for i in range(d)])


def zdt1(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    x = _xs(p, ZDT_D)
    g = 1.0 + 9.0 * float(x[1:].mean())
    return (float(x[0]), g * (1.0 - math.sqrt(x[0] / g))), []


def zdt2(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    x = _xs(p, ZDT_D)
    g = 1.0 + 9.0 * float(x[1:].mean())
    return (float(x[0]), g * (1.0 - (x[0] / g) ** 2)), []


def zdt6(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    x = _xs(p, ZDT_D)
    f1 = 1.0 - math.exp(-4.0 * x[0]) * math.sin(6.0 * math.pi * x[0]) ** 6
    g = 1.0 + 9.0 * float(x[1:].mean()) ** 0.25
    return (f1, g * (1.0 - (f1 / g) ** 2)), []


def dtlz2(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    x = _xs(p, DTLZ_D)
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = 0.5 * math.pi * x[0], 0.5 * math.pi * x[1]
    r = 1.0 + g
    return (r * math.cos(a) * math.cos(b), r * math.cos(a) * math.sin(b), r * math.sin(a)), []


def srn(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    """Srinivas and Deb's SRN: two objectives, two constraints, x in [-20, 20]^2."""
    x1, x2 = float(p["x0"]), float(p["x1"])
    f1 = 2.0 + (x1 - 2.0) ** 2 + (x2 - 1.0) ** 2
    f2 = 9.0 * x1 - (x2 - 1.0) ** 2
    return (f1, f2), [("circle", x1 * x1 + x2 * x2, 225.0), ("line", x1 - 3.0 * x2 + 10.0, 0.0)]


_DIGITS: dict[str, Any] = {}


def mlp_digits(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    """scikit-learn MLP on digits: (validation error, log10 of the parameter count)."""
    from sklearn.neural_network import MLPClassifier

    if not _DIGITS:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        X, y = load_digits(return_X_y=True)
        Xtr, Xva, ytr, yva = train_test_split(X, y, train_size=600, random_state=0, stratify=y)
        scaler = StandardScaler().fit(Xtr)
        _DIGITS.update(Xtr=scaler.transform(Xtr), Xva=scaler.transform(Xva), ytr=ytr, yva=yva)
    layers = (int(p["width"]),) * int(p["depth"])
    model = MLPClassifier(hidden_layer_sizes=layers, learning_rate_init=float(p["lr"]), alpha=float(p["alpha"]),
                          max_iter=15, batch_size=64, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(_DIGITS["Xtr"], _DIGITS["ytr"])
    error = 1.0 - float(model.score(_DIGITS["Xva"], _DIGITS["yva"]))
    n_params = sum(w.size for w in model.coefs_) + sum(b.size for b in model.intercepts_)
    return (error, math.log10(n_params)), []


def front_hv_2d(f1: np.ndarray, f2: np.ndarray, reference: Sequence[float]) -> float:
    """The hypervolume of a dense sample of a 2-d front (a lower bound, exact to ~1e-6 here): a sweep
    in O(n log n) (``hypervolume`` checks dominance pairwise, slow on 20,000 points)."""
    order = np.lexsort((f2, f1))
    x, y = f1[order], f2[order]
    keep = (x < reference[0]) & (y < reference[1])
    x, y = x[keep], y[keep]
    front = y < np.concatenate([[np.inf], np.minimum.accumulate(y)[:-1]])  # strictly below all before it
    x, y = x[front], y[front]
    return float(np.sum((np.append(x[1:], reference[0]) - x) * (reference[1] - y)))


def _true_hvs() -> dict[str, float]:
    t = np.linspace(0.0, 1.0, 20001)
    zdt6_f1 = 1.0 - np.exp(-4.0 * t) * np.sin(6.0 * np.pi * t) ** 6
    x2 = np.linspace(2.5, 14.79, 20001)  # SRN's Pareto set: x1 = -2.5 (Deb 2001)
    return {
        "zdt1": REF["zdt1"][0] * REF["zdt1"][1] - 1.0 / 3.0,
        "zdt2": REF["zdt2"][0] * REF["zdt2"][1] - 2.0 / 3.0,
        "zdt6": front_hv_2d(zdt6_f1, 1.0 - zdt6_f1**2, REF["zdt6"]),
        "dtlz2": float(np.prod(REF["dtlz2"])) - math.pi / 6.0,  # the unit sphere's octant
        "srn": front_hv_2d(2.0 + 4.5**2 + (x2 - 1.0) ** 2, -22.5 - (x2 - 1.0) ** 2, REF["srn"]),
        "c2dtlz2": C2DTLZ2_TRUE_HV,  # a grid bound on the four caps of the sphere (mo_problems.py)
    }


REF: dict[str, tuple[float, ...]] = {
    "zdt1": (1.1, 4.0), "zdt2": (1.1, 4.0), "zdt6": (1.1, 10.0), "dtlz2": (1.5, 1.5, 1.5),
    "srn": (250.0, 50.0), "c2dtlz2": C2DTLZ2_REF, "mlp_digits": (1.0, 5.0), "cnn_digits": CNN_REF,
}
CONSTRAINED = ("srn", "c2dtlz2", "cnn_digits")
_unit = {f"x{i}": Float(0.0, 1.0) for i in range(max(ZDT_D, DTLZ_D))}
_TRUE: dict[str, float] = {}


def true_hv(name: str) -> float | None:
    """The true front's hypervolume (computed once per process)."""
    if not _TRUE:
        _TRUE.update(_true_hvs())
    return _TRUE.get(name)


def _problems() -> dict[str, Problem]:
    zdt = {k: v for k, v in _unit.items() if int(k[1:]) < ZDT_D}
    dtlz = {k: v for k, v in _unit.items() if int(k[1:]) < DTLZ_D}
    return {p.name: p for p in (
        Problem("zdt1", zdt, 2, zdt1, REF["zdt1"], true_hv("zdt1"), f"ZDT1, d={ZDT_D}, convex front"),
        Problem("zdt2", zdt, 2, zdt2, REF["zdt2"], true_hv("zdt2"), f"ZDT2, d={ZDT_D}, concave front"),
        Problem("zdt6", zdt, 2, zdt6, REF["zdt6"], true_hv("zdt6"),
                f"ZDT6, d={ZDT_D}, concave, non-uniform density, multimodal f1"),
        Problem("dtlz2", dtlz, 3, dtlz2, REF["dtlz2"], true_hv("dtlz2"), f"DTLZ2, 3 objectives, d={DTLZ_D}"),
        Problem("srn", {"x0": Float(-20.0, 20.0), "x1": Float(-20.0, 20.0)}, 2, srn, REF["srn"], true_hv("srn"),
                "SRN, d=2, two inequality constraints"),
        Problem("c2dtlz2", C2DTLZ2_SPACE, 3, c2dtlz2, REF["c2dtlz2"], true_hv("c2dtlz2"),
                f"C2-DTLZ2 (Deb and Jain 2014), 3 objectives, d={DTLZ_D}, one constraint (r = 0.4)"),
        Problem("mlp_digits", {"width": Int(4, 128, log=True), "depth": Int(1, 3), "lr": Float(1e-4, 1e-1, log=True),
                               "alpha": Float(1e-6, 1e-1, log=True)},
                2, mlp_digits, REF["mlp_digits"], None,
                "sklearn MLPClassifier on digits (15 epochs): validation error vs log10(parameters)"),
        Problem("cnn_digits", CNN_SPACE, 2, cnn_digits, REF["cnn_digits"], None,
                f"PyTorch CNN on digits ({CNN_EPOCHS} epochs, AdamW, one thread): validation error vs "
                f"log10(parameters), training memory estimate <= {CNN_MEMORY_MB} MB"),
    )}


PROBLEMS = _problems()
QUICK_PROBLEMS = ("zdt1", "dtlz2", "srn")
DEFAULT_PROBLEMS = ("zdt1", "zdt2", "zdt6", "dtlz2", "srn", "c2dtlz2")


# -- methods ----------------------------------------------------------------------------------
def optuna_constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """Optuna's constraints_func: the stored ``value - upper`` of each constraint (<= 0: feasible)."""
    return list(trial.user_attrs.get("constraints", []))


@dataclass(frozen=True)
class Method:
    """A sampler of one library, built afresh for each run.

    Attributes:
        name: its key on the command line and in the results.
        library: 'tunelab' or 'optuna'.
        label: how the sampler is built.
        build: (seed, constrained) -> the sampler (tunelab's take the study's seed instead).
        cap: the most trials it runs (None: the budget).
    """

    name: str
    library: str
    label: str
    build: Callable[[int, bool], Any]
    cap: int | None = None


def _cf(constrained: bool) -> dict[str, Any]:
    return {"constraints_func": optuna_constraints} if constrained else {}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("tunelab-nsga2", "tunelab", "tunelab.NSGAIISampler()", lambda s, c: tunelab.NSGAIISampler()),
    Method("tunelab-tpe", "tunelab", "tunelab.TPESampler()", lambda s, c: tunelab.TPESampler()),
    Method("tunelab-auto", "tunelab", "tunelab.AutoSampler()", lambda s, c: tunelab.AutoSampler()),
    Method("tunelab-gp", "tunelab", "tunelab.GPSampler() (log EHVI)", lambda s, c: tunelab.GPSampler()),
    Method("tunelab-random", "tunelab", "tunelab.RandomSampler()", lambda s, c: tunelab.RandomSampler()),
    Method("optuna-nsga2", "optuna", "optuna.samplers.NSGAIISampler(seed=seed[, constraints_func])",
           lambda s, c: optuna.samplers.NSGAIISampler(seed=s, **_cf(c))),
    Method("optuna-tpe", "optuna", "optuna.samplers.TPESampler(seed=seed[, constraints_func])",
           lambda s, c: optuna.samplers.TPESampler(seed=s, **_cf(c))),
    Method("optuna-gp", "optuna", f"optuna.samplers.GPSampler(seed=seed[, constraints_func]), at most {GP_CAP} trials",
           lambda s, c: optuna.samplers.GPSampler(seed=s, **_cf(c)), cap=GP_CAP),
    Method("optuna-random", "optuna", "optuna.samplers.RandomSampler(seed=seed)",
           lambda s, c: optuna.samplers.RandomSampler(seed=s)),
)}
# Runs that cost minutes each: at most this many trials, and ``--slow-seeds`` seeds. None today:
# tunelab's TPE on DTLZ2 (3 objectives), capped at 100 while it took 72 s for 100 trials, now
# takes 1.2-1.6 s for 100 (2026-12-06) and runs to 200 like the others.
SLOW_CAPS: dict[tuple[str, str], int] = {}
TUNELAB_METHODS = tuple(m for m in METHODS if m.startswith("tunelab-"))
OPTUNA_METHODS = tuple(m for m in METHODS if m.startswith("optuna-"))


def cap_of(method: str, problem: str) -> int | None:
    """The most trials ``method`` runs on ``problem`` (None: the budget)."""
    caps = [c for c in (METHODS[method].cap, SLOW_CAPS.get((method, problem))) if c is not None]
    return min(caps) if caps else None


def is_slow(method: str, problem: str) -> bool:
    """Runs capped for their cost, which take ``--slow-seeds`` seeds."""
    return cap_of(method, problem) is not None


# -- one run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One run: a method on a problem with a seed, for ``budget`` trials (or the method's cap)."""

    problem: str
    method: str
    seed: int
    budget: int


@dataclass
class Recorder:
    """Wraps a problem's ``evaluate``: keeps every value, feasibility and the time inside and between."""

    evaluate: Callable[[Params], tuple[tuple[float, ...], list[Constraint]]]
    values: list[list[float] | None] = field(default_factory=list)
    feasible: list[bool] = field(default_factory=list)
    eval_s: list[float] = field(default_factory=list)
    outside_s: list[float] = field(default_factory=list)  # since the previous evaluation ended
    last_end: float = 0.0

    def __call__(self, params: Params) -> tuple[tuple[float, ...], list[Constraint]]:
        start = time.perf_counter()
        self.outside_s.append(start - self.last_end)
        values: list[float] | None = None
        try:
            out = self.evaluate(params)
            values = [float(v) for v in out[0]]
            self.feasible.append(all(v <= upper for _, v, upper in out[1]))
            return out
        except Exception:
            self.feasible.append(False)
            raise
        finally:
            self.last_end = time.perf_counter()
            self.eval_s.append(self.last_end - start)
            self.values.append(values if values is not None and all(map(math.isfinite, values)) else None)


def suggest(trial: Any, name: str, dist: Distribution) -> Any:
    """Optuna's suggestion equivalent to a tunelab distribution (floats and ints here)."""
    if isinstance(dist, Float):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, Int):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    raise TypeError(f"no Optuna equivalent for {dist!r}")


def run_tunelab(problem: Problem, sampler: Any, seed: int, n_trials: int, recorder: Recorder) -> None:
    """A tunelab study in memory on the declared space; constraints through ``set_constraint``."""
    study = tunelab.create_study(directions=["minimize"] * problem.n_objectives, sampler=sampler, seed=seed,
                                 space=dict(problem.space))

    def objective(trial: Any) -> tuple[float, ...]:
        values, constraints = recorder(trial.params)
        for name, value, upper in constraints:
            trial.set_constraint(name, value, upper=upper)
        return values

    recorder.last_end = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, show_progress=False)


def run_optuna(problem: Problem, sampler: Any, n_trials: int, recorder: Recorder) -> None:
    """An Optuna study in memory, define-by-run; constraints as ``user_attrs['constraints']``."""
    study = optuna.create_study(directions=["minimize"] * problem.n_objectives, sampler=sampler)

    def objective(trial: Any) -> tuple[float, ...]:
        values, constraints = recorder({name: suggest(trial, name, d) for name, d in problem.space.items()})
        trial.set_user_attr("constraints", [value - upper for _, value, upper in constraints])
        return values

    recorder.last_end = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, catch=(Exception,))


def hv_at(values: Sequence[list[float] | None], feasible: Sequence[bool], budget: int,
          reference: Sequence[float]) -> float | None:
    """The hypervolume of the feasible points among the first ``budget`` trials (None if fewer ran)."""
    if len(values) < budget:
        return None
    pts = [v for v, ok in zip(values[:budget], feasible[:budget], strict=True) if ok and v is not None]
    return hypervolume(np.array(pts, dtype=float).reshape(-1, len(reference)), reference) if pts else 0.0


def run_task(task: Task) -> dict[str, Any]:
    """Run one task; never raises (an error is reported in the result, with the values so far)."""
    problem, method = PROBLEMS[task.problem], METHODS[task.method]
    n_trials = min(task.budget, cap_of(task.method, task.problem) or task.budget)
    recorder = Recorder(problem.evaluate)
    error: str | None = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        sampler = method.build(task.seed, problem.constrained)
        if method.library == "tunelab":
            run_tunelab(problem, sampler, task.seed, n_trials, recorder)
        else:
            run_optuna(problem, sampler, n_trials, recorder)
    except Exception:  # noqa: BLE001 - report any failure to the parent rather than lose the run
        error = traceback.format_exc()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "problem": task.problem, "method": task.method, "seed": task.seed, "budget": task.budget,
        "n_trials": len(recorder.values), "n_failed": sum(v is None for v in recorder.values),
        "n_feasible": sum(recorder.feasible), "wall_s": wall, "cpu_s": cpu,
        "eval_wall_s": sum(recorder.eval_s), "sampler_wall_s": wall - sum(recorder.eval_s),
        "outside_ms": [round(1000.0 * s, 3) for s in recorder.outside_s],
        "values": recorder.values, "feasible": recorder.feasible, "error": error, "pid": os.getpid(),
    }


def init_worker() -> None:
    """One thread per worker process; quiet libraries."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")


# -- running everything -----------------------------------------------------------------------
# Rough seconds per run of 100 trials, only to start the longest runs first and for the ETA.
COST_GUESS = {"optuna-gp": 90.0, "tunelab-tpe": 4.0, "optuna-tpe": 3.0}
EVAL_S_GUESS = {"mlp_digits": 0.15, "cnn_digits": 0.4}


def cost_guess(task: Task) -> float:
    """A guess of a task's seconds."""
    n = min(task.budget, cap_of(task.method, task.problem) or task.budget)
    guess = 70.0 if (task.method, task.problem) in SLOW_CAPS else COST_GUESS.get(task.method, 0.5)
    return guess * (n / 100.0) ** 2 + n * EVAL_S_GUESS.get(task.problem, 0.0)


def fmt_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run_all(
    tasks: list[Task], jobs: int, console: Console, results: list[dict[str, Any]],
    checkpoint: Callable[[], None],
) -> None:
    """Every task on a spawn pool of ``jobs`` processes, longest first, into ``results`` as they end."""
    for var in THREAD_VARS:  # inherited by the spawned workers before they import NumPy or torch
        os.environ[var] = "1"
    tasks = sorted(tasks, key=cost_guess, reverse=True)
    guesses = {t: cost_guess(t) for t in tasks}
    total_guess = sum(guesses.values()) or 1.0
    started = last_save = time.perf_counter()
    done_guess = 0.0
    width = len(str(len(tasks)))
    with mp.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
        for r in pool.imap_unordered(run_task, tasks, chunksize=1):
            results.append(r)
            done_guess += guesses[Task(r["problem"], r["method"], r["seed"], r["budget"])]
            elapsed = time.perf_counter() - started
            eta = elapsed * (total_guess - done_guess) / max(done_guess, 1e-9)
            hv = hv_at(r["values"], r["feasible"], r["n_trials"], PROBLEMS[r["problem"]].reference)
            status = "[red]ERROR[/]" if r["error"] else f"HV {hv:.4g}" if hv is not None else "no value"
            console.print(
                f"[{len(results):>{width}}/{len(tasks)}] {r['problem']:<11} {r['method']:<15} seed {r['seed']:>2}  "
                f"{status:<12} {r['n_trials']} trials in {r['wall_s']:6.1f}s (sampler {r['sampler_wall_s']:5.1f}s)"
                f"  elapsed {fmt_duration(elapsed)}, eta {fmt_duration(eta)}", highlight=False,
            )
            if r["error"]:
                console.print(r["error"].rstrip().splitlines()[-1], style="red", highlight=False)
            if time.perf_counter() - last_save > CHECKPOINT_EVERY_S:
                checkpoint()
                last_save = time.perf_counter()


# -- statistics -------------------------------------------------------------------------------
def summarize(
    runs: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int],
) -> dict[str, Any]:
    """Per-cell statistics, winners, mean ranks, costs and targets from the runs alone."""
    hv: dict[tuple[str, str], dict[int, dict[int, float | None]]] = {}
    for r in runs:
        if r["error"]:
            continue
        ref = r.get("reference") or PROBLEMS[r["problem"]].reference
        hv.setdefault((r["problem"], r["method"]), {})[r["seed"]] = {
            b: hv_at(r["values"], r["feasible"], b, ref) for b in budgets}
    stats: list[dict[str, Any]] = []
    for p in problems:
        for b in budgets:
            for m in methods:
                vals = [v[b] for v in hv.get((p["name"], m), {}).values() if v[b] is not None]
                row: dict[str, Any] = {"problem": p["name"], "budget": b, "method": m, "n": len(vals),
                                       "median": None, "q25": None, "q75": None, "iqr": None, "share": None}
                if vals:
                    q25, med, q75 = (float(x) for x in np.percentile(vals, [25, 50, 75]))
                    row.update(median=med, q25=q25, q75=q75, iqr=q75 - q25)
                    if p["true_hv"]:
                        row["share"] = med / p["true_hv"]
                stats.append(row)
    return {"stats": stats, "winners": winners(stats, problems, methods, budgets),
            "mean_ranks": mean_ranks(hv, problems, methods, budgets),
            "tunelab_ranks": mean_ranks(hv, problems, [m for m in methods if m in TUNELAB_METHODS], budgets),
            "costs": costs(runs, problems, methods),
            "targets": check_targets(stats, problems, methods, budgets)}


def _cell(stats: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int, str], Mapping[str, Any]]:
    return {(s["problem"], s["budget"], s["method"]): s for s in stats}


def _best(cell: Mapping[tuple[str, int, str], Mapping[str, Any]], problem: str, budget: int,
          methods: Sequence[str]) -> str | None:
    present = [m for m in methods if cell[(problem, budget, m)]["median"] is not None]
    return max(present, key=lambda m: cell[(problem, budget, m)]["median"]) if present else None


def winners(
    stats: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int],
) -> dict[str, dict[str, str | None]]:
    """The tunelab sampler with the best median hypervolume, per problem and budget."""
    cell = _cell(stats)
    ours = [m for m in methods if m in TUNELAB_METHODS]
    return {p["name"]: {str(b): _best(cell, p["name"], b, ours) for b in budgets} for p in problems}


def mean_ranks(
    hv: Mapping[tuple[str, str], Mapping[int, Mapping[int, float | None]]], problems: Sequence[Mapping[str, Any]],
    methods: Sequence[str], budgets: Sequence[int],
) -> dict[str, Any]:
    """Each method's rank per (problem, seed), 1 = the largest hypervolume, ties averaged, then averaged.

    Only blocks where every method has a value at that budget count (so none with optuna-gp past its cap).
    """
    out: dict[str, Any] = {}
    for b in budgets:
        ranked = [m for m in methods if all(
            s.get(b) is not None for p in problems for s in hv.get((p["name"], m), {}).values())]
        sums = dict.fromkeys(ranked, 0.0)
        blocks = 0
        for p in problems:
            keyed = [hv.get((p["name"], m), {}) for m in ranked]
            seeds = set.intersection(*(set(k) for k in keyed)) if keyed else set()
            for seed in sorted(seeds):
                values = [k[seed][b] for k in keyed]
                if any(v is None for v in values):
                    continue
                for m, rank in zip(ranked, rankdata([-float(v) for v in values if v is not None]), strict=True):
                    sums[m] += float(rank)
                blocks += 1
        out[str(b)] = {"blocks": blocks, "rank": {m: (sums[m] / blocks if blocks and m in sums else None)
                                                  for m in methods}}
    return out


def costs(
    runs: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str]
) -> dict[str, Any]:
    """Mean ms per trial outside the objective per (problem, method): trials 1-100, 91-100 (the issue's
    per-trial overhead at 100 trials), 101-200, all."""
    out: dict[str, Any] = {}
    for p in problems:
        for m in methods:
            rs = [r for r in runs if r["problem"] == p["name"] and r["method"] == m and r["n_trials"]]
            if not rs:
                continue
            entry: dict[str, Any] = {"runs": len(rs)}
            for key, lo, hi in (("ms_1_100", 0, 100), ("ms_91_100", 90, 100), ("ms_101_200", 100, 200),
                                ("ms_all", 0, None)):
                chunks = [r["outside_ms"][lo:hi] for r in rs if len(r["outside_ms"]) > lo]
                entry[key] = float(np.mean([x for c in chunks for x in c])) if chunks else None
            entry["eval_ms"] = 1000.0 * sum(r["eval_wall_s"] for r in rs) / sum(r["n_trials"] for r in rs)
            entry["run_wall_s"] = float(np.mean([r["wall_s"] for r in rs]))
            out[f"{p['name']}/{m}"] = entry
    return out


def check_targets(
    stats: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int],
) -> dict[str, Any]:
    """Target 1 (at TARGET_BUDGET, or the run's middle budget) and target 2 (at every budget)."""
    cell = _cell(stats)
    at = TARGET_BUDGET if TARGET_BUDGET in budgets else sorted(budgets)[len(budgets) // 2]
    ours = [m for m in methods if m in TUNELAB_METHODS]
    theirs = [m for m in methods if m in OPTUNA_METHODS]
    result: dict[str, Any] = {"budget_1": at, "substituted": at != TARGET_BUDGET, "t1": None, "t1_detail": [],
                              "t2": None, "t2_detail": []}
    if ours and theirs:
        ok = True
        for p in problems:
            a, b = _best(cell, p["name"], at, ours), _best(cell, p["name"], at, theirs)
            if a is None or b is None:
                continue
            ma, mb = cell[(p["name"], at, a)]["median"], cell[(p["name"], at, b)]["median"]
            met = ma >= mb
            ok &= met
            result["t1_detail"].append({"problem": p["name"], "tunelab": a, "tunelab_median": ma, "optuna": b,
                                        "optuna_median": mb, "optuna_iqr": cell[(p["name"], at, b)]["iqr"],
                                        "met": met})
        result["t1"] = ok
    if "tunelab-auto" in methods and "optuna-nsga2" in methods:
        ok = True
        for p in problems:
            for b in budgets:
                ours_c, nsga = cell[(p["name"], b, "tunelab-auto")], cell[(p["name"], b, "optuna-nsga2")]
                if ours_c["median"] is None or nsga["median"] is None:
                    continue
                behind = nsga["median"] - ours_c["median"]
                met = behind <= nsga["iqr"]
                ok &= met
                result["t2_detail"].append({"problem": p["name"], "budget": b, "auto_median": ours_c["median"],
                                            "nsga2_median": nsga["median"], "nsga2_iqr": nsga["iqr"],
                                            "behind": behind, "met": met})
        result["t2"] = ok
    return result


# -- printing ---------------------------------------------------------------------------------
def fmt_value(v: float | None) -> str:
    """A value with 4 significant digits."""
    if v is None:
        return "-"
    return f"{v:.4g}" if v != 0 else "0"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def print_tables(
    console: Console, summary: Mapping[str, Any], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int], n_seeds: int,
) -> None:
    """Per-problem tables, the winners, the mean ranks, the costs and the targets."""
    cell = _cell(summary["stats"])
    for p in problems:
        known = p["true_hv"] is not None
        title = (f"{p['name']}: {p['note']}; hypervolume of the feasible front, reference {tuple(p['reference'])}"
                 + (f", true front {p['true_hv']:.4g}" if known else "")
                 + f"; median [q25, q75] over {n_seeds} seeds" + ("; median / true" if known else ""))
        table = Table(title=escape(title), title_justify="left")
        table.add_column("method")
        for b in budgets:
            table.add_column(f"@{b}", justify="right")
        if known:
            for b in budgets:
                table.add_column(f"share @{b}", justify="right")
        table.add_column("ms/trial", justify="right")
        best = {b: _best(cell, p["name"], b, methods) for b in budgets}
        for m in methods:
            n = max(cell[(p["name"], b, m)]["n"] for b in budgets)
            row = [m if n == n_seeds else f"{m} ({n} seeds)"]
            for b in budgets:
                s = cell[(p["name"], b, m)]
                text = escape(f"{fmt_value(s['median'])} [{fmt_value(s['q25'])}, {fmt_value(s['q75'])}]")
                row.append(f"[bold green]{text}[/]" if m == best[b] else text)
            if known:
                row.extend("-" if (sh := cell[(p["name"], b, m)]["share"]) is None else f"{sh:.3f}" for b in budgets)
            c = summary["costs"].get(f"{p['name']}/{m}")
            row.append(fmt_ms(None if c is None else c["ms_all"]))
            table.add_row(*row)
        console.print(table)
    print_winners(console, summary, problems, methods, budgets)
    print_ranks(console, summary["mean_ranks"], methods, budgets, "all methods")
    print_ranks(console, summary["tunelab_ranks"], [m for m in methods if m in TUNELAB_METHODS], budgets,
                "tunelab's samplers only")
    print_costs(console, summary["costs"], problems, methods)
    print_targets(console, summary["targets"])


def print_winners(
    console: Console, summary: Mapping[str, Any], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int],
) -> None:
    """Which tunelab sampler has the best median hypervolume per problem and budget."""
    cell = _cell(summary["stats"])
    table = Table(title="tunelab's winner per problem and budget (best median HV; its median / the runner-up's)",
                  title_justify="left")
    table.add_column("problem")
    for b in budgets:
        table.add_column(f"@{b}", justify="right")
    ours = [m for m in methods if m in TUNELAB_METHODS]
    for p in problems:
        row = [p["name"]]
        for b in budgets:
            w = summary["winners"][p["name"]][str(b)]
            if w is None:
                row.append("-")
                continue
            rest = [cell[(p["name"], b, m)]["median"] for m in ours if m != w]
            rest = [x for x in rest if x is not None]
            ratio = cell[(p["name"], b, w)]["median"] / max(rest) if rest and max(rest) > 0 else math.inf
            row.append(f"{w} ({ratio:.3f})")
        table.add_row(*row)
    console.print(table)


def print_ranks(console: Console, ranks: Mapping[str, Any], methods: Sequence[str], budgets: Sequence[int],
                what: str) -> None:
    """Mean ranks (1 = the largest hypervolume)."""
    table = Table(title=f"mean rank over problems and seeds, {what} (1 = best; ties averaged)", title_justify="left")
    table.add_column("method")
    for b in budgets:
        table.add_column(f"@{b} ({ranks[str(b)]['blocks']} blocks)", justify="right")
    order = sorted(methods, key=lambda m: ranks[str(budgets[0])]["rank"][m] or math.inf)
    for m in order:
        table.add_row(m, *("-" if (r := ranks[str(b)]["rank"][m]) is None else f"{r:.2f}" for b in budgets))
    console.print(table)


def print_costs(console: Console, c: Mapping[str, Any], problems: Sequence[Mapping[str, Any]],
                methods: Sequence[str]) -> None:
    """ms per trial outside the objective, mean over problems (synthetic objectives cost ~0)."""
    table = Table(title="ms per trial outside the objective (sampler + library), wall, mean over problems and "
                        "seeds", title_justify="left")
    for col in ("method", "trials 1-100", "trials 91-100", "trials 101-200", "all trials"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in methods:
        entries = [c[k] for p in problems if (k := f"{p['name']}/{m}") in c]
        cells = []
        for key in ("ms_1_100", "ms_91_100", "ms_101_200", "ms_all"):
            xs = [e[key] for e in entries if e.get(key) is not None]
            cells.append(fmt_ms(float(np.mean(xs)) if xs else None))
        table.add_row(m, *cells)
    console.print(table)


def print_targets(console: Console, t: Mapping[str, Any]) -> None:
    """Whether targets 1 and 2 hold."""
    if t["substituted"]:
        console.print(f"[yellow]target 1 is defined at {TARGET_BUDGET} trials; this run checks it at "
                      f"{t['budget_1']}[/]")

    def verdict(ok: bool | None) -> str:
        return "not evaluated" if ok is None else "[green]met[/]" if ok else "[red]NOT met[/]"

    console.print(f"target 1, tunelab's best median HV >= Optuna's best at {t['budget_1']} trials on every "
                  f"problem: {verdict(t['t1'])}")
    for d in t["t1_detail"]:
        console.print(f"  {'ok ' if d['met'] else 'MISS'} {d['problem']:<11} {d['tunelab']} {d['tunelab_median']:.4g}"
                      f" vs {d['optuna']} {d['optuna_median']:.4g} (IQR {d['optuna_iqr']:.3g})", highlight=False)
    console.print("target 2, tunelab-auto's median HV never below optuna-nsga2's by more than optuna-nsga2's IQR: "
                  + verdict(t["t2"]))
    for d in t["t2_detail"]:
        if not d["met"]:
            console.print(f"  MISS {d['problem']} @{d['budget']}: {d['auto_median']:.4g} vs {d['nsga2_median']:.4g}"
                          f" (IQR {d['nsga2_iqr']:.3g})", highlight=False)


# -- main -------------------------------------------------------------------------------------
def name_list(choices: Mapping[str, Any], what: str) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names out of ``choices``."""
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [n for n in names if n not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown or text!r}; choose from {', '.join(choices)}")
        return list(dict.fromkeys(names))
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: 3 seeds, budgets {','.join(map(str, QUICK_BUDGETS))}, problems "
                        f"{','.join(QUICK_PROBLEMS)} (output multiobjective-quick.json)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per problem and method (default 10; 3 with --quick)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first seed (default 0): seeds FIRST..FIRST+N-1, to add seeds to a saved run with --merge")
    p.add_argument("--slow-seeds", type=int,
                   help="seeds of the capped, slow runs (optuna-gp everywhere, tunelab-tpe on dtlz2); default --seeds")
    p.add_argument("--budgets", type=int_list, help="trial counts to report, e.g. 50,100,200; runs use the largest")
    p.add_argument("--problems", type=name_list(PROBLEMS, "problem"),
                   help=f"comma-separated, out of {','.join(PROBLEMS)} (default {','.join(DEFAULT_PROBLEMS)})")
    p.add_argument("--methods", type=name_list(METHODS, "method"),
                   help=f"comma-separated, out of {','.join(METHODS)} (default all)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/multiobjective.json)")
    p.add_argument("--from-json", type=Path, metavar="PATH", help="print the tables of a saved run; run nothing")
    p.add_argument("--merge", type=Path, nargs="+", metavar="PATH",
                   help="merge saved runs (a later file's run of the same problem, method and seed replaces an "
                        "earlier one) into --out, with the summary recomputed; run nothing")
    args = p.parse_args(argv)
    if args.seeds is None:
        args.seeds = 3 if args.quick else 10
    args.slow_seeds = min(args.slow_seeds or args.seeds, args.seeds)
    args.budgets = sorted(set(args.budgets or (QUICK_BUDGETS if args.quick else DEFAULT_BUDGETS)))
    if args.problems is None:
        args.problems = list(QUICK_PROBLEMS if args.quick else DEFAULT_PROBLEMS)
    if args.methods is None:
        args.methods = list(METHODS)
    if args.out is None and not args.merge:
        args.out = RESULTS_DIR / ("multiobjective-quick.json" if args.quick else "multiobjective.json")
    if args.seeds < 1 or args.jobs < 1 or args.first_seed < 0:
        p.error("--seeds and --jobs must be at least 1, --first-seed at least 0")
    if args.merge and (args.out is None or args.from_json):
        p.error("--merge needs --out (and no --from-json)")
    return args


def print_saved(path: Path, console: Console) -> int:
    """Print the tables of a saved run (recomputed from its runs)."""
    data = json.loads(path.read_text())
    cfg = data["config"]
    console.print(f"{path}: started {data['started']}, {len(data['runs'])} runs"
                  + (" [yellow](partial)[/]" if data.get("partial") else ""), highlight=False)
    summary = summarize(data["runs"], cfg["problems"], list(cfg["methods"]), cfg["budgets"])
    print_tables(console, summary, cfg["problems"], list(cfg["methods"]), cfg["budgets"], cfg["seeds"])
    return 0


def merge_saved(paths: Sequence[Path], out: Path, console: Console) -> int:
    """Merge saved runs into one file: runs keyed by (problem, method, seed), the later file winning;
    problems, methods and budgets as the union (a run shorter than a budget has no value there);
    summary recomputed."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    problems: dict[str, Any] = {}
    methods: dict[str, str] = {}
    budgets: set[int] = set()
    sources = []
    for path in paths:
        data = json.loads(path.read_text())
        cfg = data["config"]
        if data.get("partial"):
            console.print(f"[yellow]{path} is partial[/]: its finished runs are merged", highlight=False)
        for r in data["runs"]:
            runs[(r["problem"], r["method"], r["seed"])] = {**r, "source": str(path)}
        problems.update({p["name"]: p for p in cfg["problems"]})
        methods.update(cfg["methods"])
        budgets |= set(cfg["budgets"])
        sources.append({"path": str(path), "started": data["started"], "runs": len(data["runs"]),
                        "machine": data.get("machine"), "seeds": cfg.get("seeds"),
                        "first_seed": cfg.get("first_seed", 0)})
    order = [n for n in PROBLEMS if n in problems]
    merged_problems = [problems[n] for n in order]
    merged_methods = [m for m in METHODS if m in methods]
    merged_budgets = sorted(budgets)
    merged_runs = sorted(runs.values(), key=lambda r: (order.index(r["problem"]), merged_methods.index(r["method"]),
                                                        r["seed"]))
    n_seeds = max((sum(1 for r in merged_runs if (r["problem"], r["method"]) == k)
                   for k in {(r["problem"], r["method"]) for r in merged_runs}), default=0)
    config = {"merged_from": sources, "seeds": n_seeds, "budgets": merged_budgets, "gp_cap": GP_CAP,
              "problems": merged_problems, "methods": {m: methods[m] for m in merged_methods}}
    data = {"benchmark": "multiobjective", "started": min(s["started"] for s in sources), "partial": False,
            "config": config, "runs": merged_runs,
            "summary": summarize(merged_runs, merged_problems, merged_methods, merged_budgets)}
    print_tables(console, data["summary"], merged_problems, merged_methods, merged_budgets, n_seeds)
    save_json(out, data)
    console.print(f"merged {len(merged_runs)} runs from {len(paths)} files into {out}", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and save the JSON results."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 180, log_path=False)
    if args.from_json:
        return print_saved(args.from_json, console)
    if args.merge:
        return merge_saved(args.merge, args.out, console)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = machine_info()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    budget = max(args.budgets)
    problems = [PROBLEMS[name].describe() for name in args.problems]
    config = {
        "seeds": args.seeds, "first_seed": args.first_seed, "slow_seeds": args.slow_seeds,
        "caps": {f"{m}/{p}": c for p in args.problems for m in args.methods if (c := cap_of(m, p))},
        "budgets": args.budgets, "budget_run": budget, "jobs": args.jobs, "quick": args.quick,
        "gp_cap": GP_CAP, "problems": problems, "methods": {m: METHODS[m].label for m in args.methods},
        "storage": "in memory, both libraries",
        "timing": "outside_ms: per trial, wall time from the end of one evaluation to the start of the next "
                  "(sampler and library); eval_wall_s: inside evaluate()",
    }
    tasks = [Task(p, m, s, budget) for p in args.problems for m in args.methods
             for s in range(args.first_seed, args.first_seed + (args.slow_seeds if is_slow(m, p) else args.seeds))]
    console.print(f"{len(tasks)} runs: {len(args.problems)} problems x {len(args.methods)} methods x {args.seeds} "
                  f"seeds ({args.slow_seeds} for the capped runs), {budget} trials each (capped: {config['caps']}), "
                  f"on {args.jobs} processes",
                  highlight=False)
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()

    def results(runs: list[dict[str, Any]], partial: bool) -> dict[str, Any]:
        return {"benchmark": "multiobjective", "started": began, "duration_s": round(time.perf_counter() - started, 1),
                "partial": partial, "machine": info, "config": config, "runs": runs,
                "summary": None if partial else summarize(runs, problems, args.methods, args.budgets)}

    runs: list[dict[str, Any]] = []
    try:
        run_all(tasks, args.jobs, console, runs, lambda: save_json(args.out, results(runs, True)))
    except KeyboardInterrupt:
        save_json(args.out, results(runs, True))
        console.print(f"[red]interrupted[/]: the {len(runs)} runs finished are in {args.out} (partial)")
        return 130
    data = results(runs, False)
    print_tables(console, data["summary"], problems, args.methods, args.budgets, args.seeds)
    errors = [r for r in runs if r["error"]]
    if errors:
        console.print(f"[red]{len(errors)} run(s) failed[/]: "
                      + ", ".join(f"{r['problem']}/{r['method']}/seed {r['seed']}" for r in errors))
    save_json(args.out, data)
    console.print(f"saved {args.out} in {fmt_duration(data['duration_s'])}", highlight=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
