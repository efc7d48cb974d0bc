"""Sample efficiency: tunelab's samplers against Optuna's on six problems, over many seeds.

Every method (a library's sampler) runs on every problem (``problems.py``) once per seed, with
the largest budget; the best value found after 25, 50 and 100 trials is read from the run's
best-so-far trace. The machine-learning objectives are deterministic, so only the sampler
differs between runs. Printed, and saved as JSON with every run's trace and timings:

- per problem and budget: each method's median best value over seeds, its interquartile range
  and, where the optimum is known, the median log10 regret;
- per budget: each method's mean rank (ranked per problem and seed, ties averaged, 1 = best);
- what each run cost: the objective's time and the rest (the sampler and the library);
- whether the targets hold: (a) tunelab's best model-based sampler has a better mean rank than
  every Optuna sampler at 50 and at 100 trials; (b) on no problem is its median worse than
  Optuna TPE's by more than Optuna TPE's IQR (at 50 and 100 trials).

Run ``make bench-suite`` or ``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/suite.py [--quick]``;
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from overhead import int_list, machine_info, save_json
from problems import PROBLEMS, Problem
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy.stats import rankdata

import tunelab
from tunelab.distributions import Bool, Categorical, Distribution, Float, Int

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_BUDGETS = (25, 50, 100)
QUICK_BUDGETS = (10, 25)
QUICK_PROBLEMS = ("branin", "mlp_digits")
TARGET_BUDGETS = (50, 100)
REGRET_FLOOR = 1e-12
CHECKPOINT_EVERY_S = 30.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The default full run, for the time estimate.
FULL_SEEDS, FULL_BUDGET, FULL_JOBS = 10, max(DEFAULT_BUDGETS), 2


# -- methods ----------------------------------------------------------------------------------
def tunelab_sampler_class(name: str) -> Any:
    """A tunelab sampler class looked up by name when a run starts (it may not exist yet)."""
    import tunelab.samplers

    cls = getattr(tunelab.samplers, name, None) or getattr(tunelab, name, None)
    if cls is None:
        raise LookupError(f"tunelab.samplers.{name} does not exist in this tunelab ({tunelab.__file__})")
    return cls


@dataclass(frozen=True)
class Method:
    """A sampler of one library, built afresh for each run.

    Attributes:
        name: its key on the command line and in the results.
        library: 'tunelab' or 'optuna'.
        label: how the sampler is built, for the results.
        build: the sampler for a seed (tunelab's samplers take the study's seed instead).
        needs: a tunelab sampler class this method needs, looked up lazily.
    """

    name: str
    library: str
    label: str
    build: Callable[[int], Any]
    needs: str | None = None

    def missing(self) -> str | None:
        """Why this method cannot run here, or None."""
        if self.needs is None:
            return None
        try:
            tunelab_sampler_class(self.needs)
        except LookupError as e:
            return str(e)
        return None


# Coarse to fine for a budget of 100: 20 random trials, then three stages narrowing around
# the 5 best (the last one, from trial 60 on, keeps at least 1/8 of each range).
C2F_SETTINGS: dict[str, Any] = {"n_stages": 4, "trials_per_stage": 20, "top_k": 5, "shrink": 0.5}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("tunelab-random", "tunelab", "tunelab.RandomSampler()", lambda seed: tunelab.RandomSampler()),
    Method(
        "tunelab-c2f", "tunelab",
        "tunelab.CoarseToFineSampler(" + ", ".join(f"{k}={v!r}" for k, v in C2F_SETTINGS.items()) + ")",
        lambda seed: tunelab.CoarseToFineSampler(**C2F_SETTINGS),
    ),
    Method("tunelab-tpe", "tunelab", "tunelab.samplers.TPESampler()",
           lambda seed: tunelab_sampler_class("TPESampler")(), needs="TPESampler"),
    Method("tunelab-gp", "tunelab", "tunelab.samplers.GPSampler()",
           lambda seed: tunelab_sampler_class("GPSampler")(), needs="GPSampler"),
    Method("optuna-random", "optuna", "optuna.samplers.RandomSampler(seed=seed)",
           lambda seed: optuna.samplers.RandomSampler(seed=seed)),
    Method("optuna-tpe", "optuna", "optuna.samplers.TPESampler(seed=seed)",
           lambda seed: optuna.samplers.TPESampler(seed=seed)),
    Method("optuna-gp", "optuna", "optuna.samplers.GPSampler(seed=seed)",
           lambda seed: optuna.samplers.GPSampler(seed=seed)),
)}
TUNELAB_MODEL_BASED = ("tunelab-tpe", "tunelab-gp")
OPTUNA_METHODS = ("optuna-random", "optuna-tpe", "optuna-gp")


# -- one run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One run: a method on a problem with a seed, for ``budget`` trials."""

    problem: str
    method: str
    seed: int
    budget: int


class Recorder:
    """Wraps a problem's ``evaluate``: keeps every value and the time spent inside."""

    def __init__(self, evaluate: Callable[[Mapping[str, Any]], float]) -> None:
        self.evaluate = evaluate
        self.values: list[float | None] = []
        self.wall_s = 0.0
        self.cpu_s = 0.0

    def __call__(self, params: Mapping[str, Any]) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        value: float | None = None
        try:
            value = float(self.evaluate(params))
            return value
        finally:
            self.wall_s += time.perf_counter() - wall
            self.cpu_s += time.process_time() - cpu
            self.values.append(value if value is not None and math.isfinite(value) else None)


def best_so_far(values: Sequence[float | None], direction: str) -> list[float | None]:
    """The best value after each trial (None until a trial has a value)."""
    better = min if direction == "minimize" else max
    trace: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None:
            best = v if best is None else better(best, v)
        trace.append(best)
    return trace


def suggest(trial: Any, name: str, dist: Distribution) -> Any:
    """Optuna's suggestion equivalent to a tunelab distribution."""
    if isinstance(dist, Float):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, Int):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, Bool):
        return trial.suggest_categorical(name, [False, True])
    if isinstance(dist, Categorical):
        return trial.suggest_categorical(name, list(dist.choices))
    raise TypeError(f"no Optuna equivalent for {dist!r}")


def run_tunelab(problem: Problem, sampler: Any, seed: int, budget: int, recorder: Recorder) -> None:
    """A tunelab study in memory on the problem's declared space."""
    study = tunelab.create_study(direction=problem.direction, sampler=sampler, seed=seed, space=dict(problem.space))
    study.optimize(lambda trial: recorder(trial.params), n_trials=budget, show_progress=False)


def run_optuna(problem: Problem, sampler: Any, budget: int, recorder: Recorder) -> None:
    """An Optuna study in memory, define-by-run with the equivalent suggestions."""
    study = optuna.create_study(direction=problem.direction, sampler=sampler)
    study.optimize(
        lambda trial: recorder({name: suggest(trial, name, d) for name, d in problem.space.items()}),
        n_trials=budget, catch=(Exception,),
    )


def run_task(task: Task) -> dict[str, Any]:
    """Run one task; never raises (an error is reported in the result, with the trace so far)."""
    problem, method = PROBLEMS[task.problem], METHODS[task.method]
    recorder = Recorder(problem.evaluate)
    error: str | None = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        sampler = method.build(task.seed)
        if method.library == "tunelab":
            run_tunelab(problem, sampler, task.seed, task.budget, recorder)
        else:
            run_optuna(problem, sampler, task.budget, recorder)
    except Exception:  # noqa: BLE001 - report any failure to the parent rather than lose the run
        error = traceback.format_exc()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "problem": task.problem, "method": task.method, "seed": task.seed, "budget": task.budget,
        "n_trials": len(recorder.values), "n_failed": sum(v is None for v in recorder.values),
        "wall_s": wall, "cpu_s": cpu, "eval_wall_s": recorder.wall_s, "eval_cpu_s": recorder.cpu_s,
        "sampler_wall_s": wall - recorder.wall_s, "sampler_cpu_s": cpu - recorder.cpu_s,
        "values": recorder.values, "trace": best_so_far(recorder.values, problem.direction),
        "error": error, "pid": os.getpid(),
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


# -- running everything -----------------------------------------------------------------------
# Rough costs, only to start the longest runs first and to weigh the ETA: ms per evaluation and
# seconds of sampling per run of 100 trials.
EVAL_MS_GUESS = {"mlp_digits": 75.0, "svm_cancer": 55.0, "torch_digits": 90.0}
SAMPLER_S_GUESS = {"tunelab-gp": 15.0, "optuna-gp": 10.0, "tunelab-tpe": 2.0, "optuna-tpe": 1.0}


def cost_guess(task: Task) -> float:
    """A guess of a task's seconds."""
    evals = task.budget * EVAL_MS_GUESS.get(task.problem, 0.05) / 1000.0
    return evals + SAMPLER_S_GUESS.get(task.method, 0.3) * (task.budget / 100.0) ** 2


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
    """Every task on a spawn pool of ``jobs`` processes, longest first, into ``results`` as they end.

    Prints a progress line per run and calls ``checkpoint`` every ``CHECKPOINT_EVERY_S`` seconds.
    """
    for var in THREAD_VARS:  # inherited by the spawned workers before they import NumPy or torch
        os.environ[var] = "1"
    tasks = sorted(tasks, key=cost_guess, reverse=True)
    guesses = {t: cost_guess(t) for t in tasks}
    total_guess = sum(guesses.values()) or 1.0
    started = last_save = time.perf_counter()
    done_guess = 0.0
    with mp.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
        for r in pool.imap_unordered(run_task, tasks, chunksize=1):
            results.append(r)
            done_guess += guesses[Task(r["problem"], r["method"], r["seed"], r["budget"])]
            elapsed = time.perf_counter() - started
            eta = elapsed * (total_guess - done_guess) / max(done_guess, 1e-9)
            best = r["trace"][-1] if r["trace"] else None
            status = "[red]ERROR[/]" if r["error"] else f"best {best:.6g}" if best is not None else "no value"
            console.print(
                f"[{len(results):>{len(str(len(tasks)))}}/{len(tasks)}] {r['problem']:<16} {r['method']:<14} "
                f"seed {r['seed']:>2}  {status:<18} {r['n_trials']} trials in {r['wall_s']:6.1f}s "
                f"(sampler {r['sampler_wall_s']:5.1f}s)  elapsed {fmt_duration(elapsed)}, eta {fmt_duration(eta)}",
                highlight=False,
            )
            if r["error"]:
                console.print(r["error"].rstrip().splitlines()[-1], style="red", highlight=False)
            if time.perf_counter() - last_save > CHECKPOINT_EVERY_S:
                checkpoint()
                last_save = time.perf_counter()


# -- statistics -------------------------------------------------------------------------------
def best_at(run: Mapping[str, Any], budget: int) -> float | None:
    """The best value a run had found after ``budget`` trials (None if it had none or stopped early)."""
    trace: list[float | None] = run["trace"]
    return trace[budget - 1] if len(trace) >= budget else None


def log10_regret(value: float, optimum: float, direction: str) -> float:
    """log10 of the distance to the optimum, floored at ``REGRET_FLOOR``."""
    gap = value - optimum if direction == "minimize" else optimum - value
    return math.log10(max(gap, REGRET_FLOOR))


def summarize(
    runs: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int],
) -> dict[str, Any]:
    """Per-problem statistics, mean ranks, costs and targets from the runs alone."""
    by_key: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for r in runs:
        if not r["error"]:
            by_key.setdefault((r["problem"], r["method"]), {})[r["seed"]] = r
    stats: list[dict[str, Any]] = []
    for p in problems:
        for b in budgets:
            for m in methods:
                values = [v for r in by_key.get((p["name"], m), {}).values() if (v := best_at(r, b)) is not None]
                row: dict[str, Any] = {"problem": p["name"], "budget": b, "method": m, "n": len(values),
                                       "median": None, "q25": None, "q75": None, "iqr": None,
                                       "median_log10_regret": None}
                if values:
                    q25, med, q75 = (float(x) for x in np.percentile(values, [25, 50, 75]))
                    row.update(median=med, q25=q25, q75=q75, iqr=q75 - q25)
                    if p["optimum"] is not None:
                        row["median_log10_regret"] = float(np.median(
                            [log10_regret(v, p["optimum"], p["direction"]) for v in values]))
                stats.append(row)
    ranks = mean_ranks(by_key, problems, methods, budgets)
    return {"stats": stats, "mean_ranks": ranks, "costs": costs(runs, problems, methods),
            "targets": check_targets(stats, ranks, problems, methods, budgets)}


def mean_ranks(
    by_key: Mapping[tuple[str, str], Mapping[int, Mapping[str, Any]]], problems: Sequence[Mapping[str, Any]],
    methods: Sequence[str], budgets: Sequence[int],
) -> dict[str, Any]:
    """Each method's rank per (problem, seed), 1 = best, ties averaged, averaged over both.

    Only (problem, seed) blocks where every method has a value at that budget are ranked.
    """
    out: dict[str, Any] = {}
    for b in budgets:
        sums = dict.fromkeys(methods, 0.0)
        blocks = 0
        for p in problems:
            sign = 1.0 if p["direction"] == "minimize" else -1.0
            seeds = set.intersection(*(set(by_key.get((p["name"], m), {})) for m in methods)) if methods else set()
            for seed in sorted(seeds):
                values = [best_at(by_key[(p["name"], m)][seed], b) for m in methods]
                if any(v is None for v in values):
                    continue
                ranks = rankdata([sign * v for v in values if v is not None], method="average")
                for m, rank in zip(methods, ranks, strict=True):
                    sums[m] += float(rank)
                blocks += 1
        out[str(b)] = {"blocks": blocks, "rank": {m: (sums[m] / blocks if blocks else None) for m in methods}}
    return out


def costs(
    runs: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], methods: Sequence[str]
) -> dict[str, Any]:
    """Mean ms per evaluation per problem, mean seconds per run, and the full run's estimated time."""
    per_problem: dict[str, Any] = {}
    for p in problems:
        rs = [r for r in runs if r["problem"] == p["name"] and r["n_trials"]]
        n = sum(r["n_trials"] for r in rs)
        per_problem[p["name"]] = {
            "evaluations": n,
            "eval_wall_ms": 1000.0 * sum(r["eval_wall_s"] for r in rs) / n if n else None,
            "eval_cpu_ms": 1000.0 * sum(r["eval_cpu_s"] for r in rs) / n if n else None,
        }
    per_run: dict[str, Any] = {}
    estimate: dict[str, Any] = {"wall_s": 0.0, "cpu_s": 0.0, "pairs": 0, "scaled_from_budget": None}
    for m in methods:
        for p in problems:
            rs = [r for r in runs if r["problem"] == p["name"] and r["method"] == m and r["n_trials"]]
            if not rs:
                continue
            entry = {k: float(np.mean([r[k] for r in rs])) for k in
                     ("wall_s", "cpu_s", "sampler_wall_s", "sampler_cpu_s", "eval_wall_s", "eval_cpu_s")}
            entry["runs"] = len(rs)
            per_run[f"{p['name']}/{m}"] = entry
            # The full run: 100 trials per run. Evaluations scale linearly with the budget; the
            # sampler's cost is scaled quadratically (model-based samplers refit on every trial).
            budget = max(r["n_trials"] for r in rs)
            scale = FULL_BUDGET / budget
            estimate["scaled_from_budget"] = budget if scale != 1 else estimate["scaled_from_budget"]
            for kind in ("wall", "cpu"):
                estimate[f"{kind}_s"] += FULL_SEEDS * (
                    entry[f"eval_{kind}_s"] * scale + entry[f"sampler_{kind}_s"] * scale**2
                ) / FULL_JOBS
            estimate["pairs"] += 1
    return {"per_problem": per_problem, "per_run": per_run, "full_run_estimate": estimate}


def check_targets(
    stats: Sequence[Mapping[str, Any]], ranks: Mapping[str, Any], problems: Sequence[Mapping[str, Any]],
    methods: Sequence[str], budgets: Sequence[int],
) -> dict[str, Any]:
    """Targets (a) and (b) for tunelab's best model-based sampler (one sampler for both budgets)."""
    target_budgets = [b for b in TARGET_BUDGETS if b in budgets]
    substituted = len(target_budgets) < len(TARGET_BUDGETS)
    if substituted:  # a smoke run: check the logic at the budgets it has
        target_budgets = sorted(budgets)[-len(TARGET_BUDGETS):]
    result: dict[str, Any] = {"budgets": target_budgets, "substituted_budgets": substituted,
                              "chosen": None, "a": None, "b": None, "a_detail": [], "b_violations": [],
                              "note": None}
    candidates = [m for m in TUNELAB_MODEL_BASED if m in methods]
    opponents = [m for m in OPTUNA_METHODS if m in methods]
    if not candidates or not opponents or any(
        ranks[str(b)]["rank"][m] is None for b in target_budgets for m in methods
    ):
        result["note"] = "not evaluated: needs tunelab-tpe or tunelab-gp, an Optuna method, and ranked runs"
        return result
    rank = {b: {m: float(ranks[str(b)]["rank"][m]) for m in methods} for b in target_budgets}
    chosen = min(candidates, key=lambda m: sum(rank[b][m] for b in target_budgets))
    result["chosen"] = chosen
    ok_a = True
    for b in target_budgets:
        best_optuna = min(opponents, key=lambda m: rank[b][m])
        ok = rank[b][chosen] < rank[b][best_optuna]
        ok_a &= ok
        result["a_detail"].append({"budget": b, "rank": rank[b][chosen], "best_optuna": best_optuna,
                                   "best_optuna_rank": rank[b][best_optuna], "met": ok})
    result["a"] = ok_a
    if "optuna-tpe" in methods:
        cell = {(s["problem"], s["budget"], s["method"]): s for s in stats}
        violations = []
        for p in problems:
            sign = 1.0 if p["direction"] == "minimize" else -1.0
            for b in target_budgets:
                ours, tpe = cell[(p["name"], b, chosen)], cell[(p["name"], b, "optuna-tpe")]
                if ours["median"] is None or tpe["median"] is None:
                    continue
                worse_by = sign * (ours["median"] - tpe["median"])
                if worse_by > tpe["iqr"]:
                    violations.append({"problem": p["name"], "budget": b, "median": ours["median"],
                                       "optuna_tpe_median": tpe["median"], "optuna_tpe_iqr": tpe["iqr"],
                                       "worse_by": worse_by})
        result["b"] = not violations
        result["b_violations"] = violations
    return result


# -- printing ---------------------------------------------------------------------------------
def fmt_value(v: float | None) -> str:
    """A value with 4 significant digits."""
    if v is None:
        return "-"
    return f"{v:.4g}" if v != 0 else "0"


def print_tables(
    console: Console, summary: Mapping[str, Any], problems: Sequence[Mapping[str, Any]], methods: Sequence[str],
    budgets: Sequence[int], n_seeds: int,
) -> None:
    """Per-problem tables, the mean-rank table, the cost table and the targets."""
    cell = {(s["problem"], s["budget"], s["method"]): s for s in summary["stats"]}
    for p in problems:
        known = p["optimum"] is not None
        optimum = f", optimum {p['optimum']:.6g}" if known else ""
        title = (f"{p['name']} ({p['direction']}{optimum}): best value over {n_seeds} seeds, median [q25, q75]"
                 + ("; median log10 regret" if known else ""))
        table = Table(title=escape(title), title_justify="left")
        table.add_column("method")
        for b in budgets:
            table.add_column(f"@{b}", justify="right")
        if known:
            for b in budgets:
                table.add_column(f"log10 regret @{b}", justify="right")
        sign = 1.0 if p["direction"] == "minimize" else -1.0
        best_median = {}
        for b in budgets:
            medians = [cell[(p["name"], b, m)]["median"] for m in methods]
            present = [sign * x for x in medians if x is not None]
            best_median[b] = sign * min(present) if present else None
        for m in methods:
            row = [m]
            for b in budgets:
                s = cell[(p["name"], b, m)]
                text = escape(f"{fmt_value(s['median'])} [{fmt_value(s['q25'])}, {fmt_value(s['q75'])}]")
                row.append(f"[bold green]{text}[/]" if s["median"] is not None and s["median"] == best_median[b]
                           else text)
            if known:
                for b in budgets:
                    reg = cell[(p["name"], b, m)]["median_log10_regret"]
                    row.append("-" if reg is None else f"{reg:.2f}")
            table.add_row(*row)
        console.print(table)
    ranks = summary["mean_ranks"]
    table = Table(title=f"mean rank over problems and seeds (1 = best of {len(methods)}; ties averaged)",
                  title_justify="left")
    table.add_column("method")
    for b in budgets:
        table.add_column(f"@{b} ({ranks[str(b)]['blocks']} blocks)", justify="right")
    for m in sorted(methods, key=lambda m: ranks[str(budgets[-1])]["rank"][m] or math.inf):
        table.add_row(m, *(fmt_rank(ranks[str(b)]["rank"][m]) for b in budgets))
    console.print(table)
    print_costs(console, summary["costs"], problems, methods)
    print_targets(console, summary["targets"])


def fmt_rank(r: float | None) -> str:
    """A mean rank."""
    return "-" if r is None else f"{r:.2f}"


def print_costs(
    console: Console, c: Mapping[str, Any], problems: Sequence[Mapping[str, Any]], methods: Sequence[str]
) -> None:
    """Seconds per run outside the objective (sampler + library), per method and problem."""
    table = Table(title="seconds per run outside the objective (sampler + library; wall, mean over seeds); "
                        "last row: objective ms per evaluation (wall / CPU)", title_justify="left")
    table.add_column("method")
    for p in problems:
        table.add_column(p["name"], justify="right")
    for m in methods:
        cells = []
        for p in problems:
            e = c["per_run"].get(f"{p['name']}/{m}")
            cells.append("-" if e is None else f"{e['sampler_wall_s']:.2f}")
        table.add_row(m, *cells)
    row = []
    for p in problems:
        e = c["per_problem"][p["name"]]
        row.append("-" if e["eval_wall_ms"] is None else f"{e['eval_wall_ms']:.1f} / {e['eval_cpu_ms']:.1f}")
    table.add_row("[italic]objective ms/eval[/]", *row)
    console.print(table)
    est = c["full_run_estimate"]
    if est["pairs"]:
        scaled = (f", scaled from runs of {est['scaled_from_budget']} trials (evaluations linearly, "
                  "sampling quadratically: rough)" if est["scaled_from_budget"] else "")
        console.print(
            f"estimated time of the full default run ({FULL_SEEDS} seeds x {FULL_BUDGET} trials, --jobs {FULL_JOBS}) "
            f"over the {est['pairs']} problem/method pairs measured: {fmt_duration(est['wall_s'])} from wall times, "
            f"{fmt_duration(est['cpu_s'])} from CPU times{scaled}", highlight=False,
        )


def print_targets(console: Console, t: Mapping[str, Any]) -> None:
    """Whether targets (a) and (b) hold."""
    at = " and ".join(str(b) for b in t["budgets"])
    if t["substituted_budgets"]:
        console.print(f"[yellow]targets are defined at 50 and 100 trials; this run checks them at {at}[/]")
    if t["chosen"] is None:
        console.print(f"targets: {t['note']}")
        return
    detail = "; ".join(f"@{d['budget']}: {d['rank']:.2f} vs {d['best_optuna']} {d['best_optuna_rank']:.2f}"
                       for d in t["a_detail"])
    console.print(f"tunelab's best model-based sampler (by mean rank at {at}): [bold]{t['chosen']}[/]")
    console.print(f"target (a), better mean rank than every Optuna sampler at {at}: "
                  + ("[green]met[/]" if t["a"] else "[red]NOT met[/]") + f" ({detail})")
    if t["b"] is None:
        console.print("target (b): not evaluated (optuna-tpe was not run)")
        return
    worse = "; ".join(f"{v['problem']} @{v['budget']}: median {v['median']:.4g} vs {v['optuna_tpe_median']:.4g} "
                      f"(IQR {v['optuna_tpe_iqr']:.3g})" for v in t["b_violations"])
    console.print(f"target (b), median never worse than optuna-tpe's by more than its IQR at {at}: "
                  + ("[green]met[/]" if t["b"] else f"[red]NOT met[/]: {worse}"))


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
                   help=f"a smoke run: 2 seeds, budgets {','.join(map(str, QUICK_BUDGETS))}, "
                        f"problems {','.join(QUICK_PROBLEMS)} (output suite-quick.json)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per problem and method (default 10; 2 with --quick)")
    p.add_argument("--budgets", type=int_list, help="trial counts to report, e.g. 25,50,100; runs use the largest")
    p.add_argument("--problems", type=name_list(PROBLEMS, "problem"),
                   help=f"comma-separated, out of {','.join(PROBLEMS)} (default all)")
    p.add_argument("--methods", type=name_list(METHODS, "method"),
                   help=f"comma-separated, out of {','.join(METHODS)} (default all)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/suite.json)")
    p.add_argument("--from-json", type=Path, metavar="PATH", help="print the tables of a saved run; run nothing")
    args = p.parse_args(argv)
    if args.seeds is None:
        args.seeds = 2 if args.quick else 10
    if args.budgets is None:
        args.budgets = list(QUICK_BUDGETS if args.quick else DEFAULT_BUDGETS)
    args.budgets = sorted(set(args.budgets))
    if args.problems is None:
        args.problems = list(QUICK_PROBLEMS if args.quick else PROBLEMS)
    if args.methods is None:
        args.methods = list(METHODS)
    if args.out is None:
        args.out = RESULTS_DIR / ("suite-quick.json" if args.quick else "suite.json")
    if args.seeds < 1 or args.jobs < 1:
        p.error("--seeds and --jobs must be at least 1")
    return args


def library_versions() -> dict[str, Any]:
    """Versions of what the problems and Optuna's GP sampler use, beyond ``machine_info``."""
    import importlib.util

    versions: dict[str, Any] = {}
    for module in ("sklearn", "torch", "scipy", "greenlet"):
        if importlib.util.find_spec(module) is None:
            versions[module] = None
            continue
        versions[module] = getattr(__import__(module), "__version__", "?")
    return versions


def print_saved(path: Path, console: Console) -> int:
    """Print the tables of a saved run (recomputed from its runs)."""
    data = json.loads(path.read_text())
    cfg = data["config"]
    problems, methods, budgets = cfg["problems"], cfg["methods"], cfg["budgets"]
    console.print(f"{path}: started {data['started']}, {len(data['runs'])} runs"
                  + (" [yellow](partial)[/]" if data.get("partial") else ""), highlight=False)
    summary = summarize(data["runs"], problems, list(methods), budgets)
    print_tables(console, summary, problems, list(methods), budgets, cfg["seeds"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite, print the tables and save the JSON results."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160, log_path=False)
    if args.from_json:
        return print_saved(args.from_json, console)
    missing = {m: why for m in args.methods if (why := METHODS[m].missing())}
    if missing:
        available = [m for m in args.methods if m not in missing]
        console.print("[red]cannot run[/] " + "; ".join(f"{m}: {why}" for m, why in missing.items()), highlight=False)
        console.print(f"run the others with --methods {','.join(available)}", highlight=False)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = {**machine_info(), **library_versions()}
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    budget = max(args.budgets)
    problems = [PROBLEMS[name].describe() for name in args.problems]
    config = {
        "seeds": args.seeds, "budgets": args.budgets, "budget_run": budget, "jobs": args.jobs, "quick": args.quick,
        "problems": problems, "methods": {m: METHODS[m].label for m in args.methods},
        "storage": "in memory, both libraries",
        "timing": "wall_s/cpu_s: the whole study (creation + optimize); eval_*: inside evaluate(); "
                  "sampler_*: the rest (sampler and library)",
    }
    tasks = [Task(p, m, s, budget) for p in args.problems for m in args.methods for s in range(args.seeds)]
    console.print(f"{len(tasks)} runs: {len(args.problems)} problems x {len(args.methods)} methods x "
                  f"{args.seeds} seeds, {budget} trials each, on {args.jobs} processes", highlight=False)
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()

    def results(runs: list[dict[str, Any]], partial: bool) -> dict[str, Any]:
        return {"benchmark": "suite", "started": began, "duration_s": round(time.perf_counter() - started, 1),
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
