"""Discrete spaces: how many trials a sampler spends running a configuration again.

On integer, stepped and categorical parameters a model-based sampler's best continuous point snaps to
values the parameters can take, and near the incumbent that is often the incumbent itself: the trial
repeats a configuration already measured and learns nothing (Optuna #2880 and #3055, Ax #228, NNI
#4619 report it). This benchmark runs each sampler on problems whose every parameter is discrete and
counts the repeats, next to the best value found.

Problems (all minimised, optimum known by enumeration):

- ``int-bowl``: ``(a - 3)^2 + (log2 b - 5)^2`` over ``a`` in -10..10, ``b`` in 1..512 (log);
- ``branin-grid``: Branin on a 0.25 grid (61 x 61 points);
- ``hartmann-grid``: Hartmann-6 on a 0.1 grid (11^6 points);
- ``choices``: three categorical parameters of four choices and an integer 0..9, additive plus one
  interaction (640 configurations).

Methods: tunelab's GP (the default sampler's model) and TPE, tunelab's random search, Optuna 5.0's
GPSampler and TPESampler, each with ``--trials`` trials on ``--seeds`` seeds.

    OMP_NUM_THREADS=1 python benchmarks/discrete.py [--seeds 10] [--trials 40] [--methods a,b]
        [--problems a,b] [--jobs 2] [--out results/discrete.json] [--from-json PATH]

Reported per problem and method: the median over seeds of the regret (best value minus the optimum)
after 10, 20 and the last trial, and the median share of trials that repeated an earlier trial's
configuration.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from problems import _H6_A, _H6_ALPHA, _H6_P, branin, hartmann6

import tunelab
from tunelab import Categorical, Float, Int
from tunelab.distributions import Distribution

Params = Mapping[str, Any]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHECKPOINTS = (10, 20)


@dataclass(frozen=True)
class Problem:
    space: Mapping[str, Distribution]
    evaluate: Callable[[Params], float]
    optimum: Callable[[], float]


def int_bowl(p: Params) -> float:
    return float((p["a"] - 3) ** 2 + (math.log2(p["b"]) - 5) ** 2)


def branin_grid_optimum() -> float:
    return min(branin({"x1": -5 + 0.25 * i, "x2": 0.25 * j}) for i in range(61) for j in range(61))


HARTMANN_GRID = 0.1


def hartmann_grid_optimum() -> float:
    values = [round(HARTMANN_GRID * i, 10) for i in range(11)]
    tail = np.array(list(itertools.product(values, repeat=3)))
    best = math.inf
    for head in itertools.product(values, repeat=3):  # 1.77 million points, in 1,331 vectorised blocks
        best = min(best, float(_hartmann6_rows(np.hstack([np.tile(head, (len(tail), 1)), tail])).min()))
    return best


def _hartmann6_rows(X: np.ndarray) -> np.ndarray:
    inner = ((X[:, None, :] - _H6_P[None, :, :]) ** 2 * _H6_A[None, :, :]).sum(-1)
    return np.asarray(-(np.exp(-inner) * _H6_ALPHA).sum(-1))


CHOICES = ("a", "b", "c", "d")
WEIGHTS = {"k1": (0.0, 1.0, 2.0, 0.5), "k2": (1.5, 0.0, 0.7, 2.0), "k3": (0.3, 1.1, 0.0, 0.9)}


def choices(p: Params) -> float:
    value = sum(WEIGHTS[k][CHOICES.index(p[k])] for k in WEIGHTS) + 0.1 * (p["n"] - 6) ** 2
    return value + (1.0 if p["k1"] == p["k2"] else 0.0)  # an interaction: k1 = k2 costs 1


def choices_optimum() -> float:
    return min(choices({"k1": a, "k2": b, "k3": c, "n": n})
               for a, b, c in itertools.product(CHOICES, repeat=3) for n in range(10))


PROBLEMS: dict[str, Problem] = {
    "int-bowl": Problem({"a": Int(-10, 10), "b": Int(1, 512, log=True)}, int_bowl, lambda: 0.0),
    "branin-grid": Problem({"x1": Float(-5.0, 10.0, step=0.25), "x2": Float(0.0, 15.0, step=0.25)}, branin,
                           branin_grid_optimum),
    "hartmann-grid": Problem({f"x{i}": Float(0.0, 1.0, step=HARTMANN_GRID) for i in range(6)}, hartmann6,
                             hartmann_grid_optimum),
    "choices": Problem({"k1": Categorical(list(CHOICES)), "k2": Categorical(list(CHOICES)),
                        "k3": Categorical(list(CHOICES)), "n": Int(0, 9)}, choices, choices_optimum),
}
METHODS = ("tunelab-gp", "tunelab-tpe", "tunelab-random", "optuna-gp", "optuna-tpe")


def run_tunelab(method: str, problem: Problem, seed: int, trials: int) -> list[tuple[Params, float]]:
    sampler = {"tunelab-gp": tunelab.GPSampler, "tunelab-tpe": tunelab.TPESampler,
               "tunelab-random": tunelab.RandomSampler}[method]()
    study = tunelab.create_study(sampler=sampler, seed=seed, space=dict(problem.space))
    study.optimize(lambda t: problem.evaluate(t.params), n_trials=trials)
    return [(dict(t.params), float(t.value)) for t in study.trials if t.value is not None]


def run_optuna(method: str, problem: Problem, seed: int, trials: int) -> list[tuple[Params, float]]:
    import optuna
    from suite import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = (optuna.samplers.GPSampler(seed=seed) if method == "optuna-gp"
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(sampler=sampler)

    def objective(trial: Any) -> float:
        return problem.evaluate({name: suggest(trial, name, dist) for name, dist in problem.space.items()})

    study.optimize(objective, n_trials=trials)
    return [(dict(t.params), float(t.value)) for t in study.trials if t.value is not None]


def run_one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    problem_name, method, seed, trials = job
    problem = PROBLEMS[problem_name]
    start = time.process_time()
    runner = run_optuna if method.startswith("optuna") else run_tunelab
    results = runner(method, problem, seed, trials)
    seen: set[tuple[Any, ...]] = set()
    repeats = 0
    for params, _ in results:
        key = tuple(sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in params.items()))
        repeats += key in seen
        seen.add(key)
    values = [v for _, v in results]
    cpu = time.process_time() - start
    print(f"{problem_name} / {method} / seed {seed}: best {min(values):.6g}, {repeats} repeats, {cpu:.1f} s CPU",
          flush=True)
    return {"problem": problem_name, "method": method, "seed": seed, "values": values, "repeats": repeats,
            "cpu_s": cpu}


def init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def checkpoints(trials: int) -> list[int]:
    return [c for c in CHECKPOINTS if c < trials] + [trials]


def summarise(runs: Sequence[Mapping[str, Any]], trials: int, optima: Mapping[str, float]) -> list[list[str]]:
    rows = []
    for problem in PROBLEMS:
        for method in METHODS:
            mine = [r for r in runs if r["problem"] == problem and r["method"] == method]
            if not mine:
                continue
            best = np.array([np.minimum.accumulate(r["values"]) for r in mine]) - optima[problem]
            cells = [f"{float(np.median(best[:, c - 1])):.3g}" for c in checkpoints(trials)]
            share = np.median([r["repeats"] / len(r["values"]) for r in mine])
            rows.append([problem, method, str(len(mine)), *cells, f"{100 * share:.0f}%"])
    return rows


def report(rows: Sequence[Sequence[str]], trials: int) -> None:
    head = ["problem", "method", "seeds", *(f"regret@{c}" for c in checkpoints(trials)), "repeated trials"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS_DIR / "discrete.json"))
    p.add_argument("--from-json", default=None, help="print a saved run's table again")
    args = p.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        report(summarise(saved["runs"], saved["trials"], saved["optima"]), saved["trials"])
        return 0
    methods = [m for m in args.methods.split(",") if m]
    problems = [q for q in args.problems.split(",") if q]
    for name, known in (("--methods", METHODS), ("--problems", tuple(PROBLEMS))):
        wrong = [x for x in (methods if name == "--methods" else problems) if x not in known]
        if wrong:
            p.error(f"{name}: unknown {wrong}; choose from {', '.join(known)}")
    optima = {q: PROBLEMS[q].optimum() for q in problems}
    jobs = [(q, m, s, args.trials) for s in range(args.seeds) for q in problems for m in methods]
    start = time.time()
    with mp.get_context("spawn").Pool(args.jobs, initializer=init_worker) as pool:
        runs = pool.map(run_one, jobs, chunksize=1)
    out = {"created": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0],
           "machine": platform.machine(), "tunelab": getattr(tunelab, "__version__", "?"), "trials": args.trials,
           "seeds": args.seeds, "optima": optima, "wall_s": time.time() - start, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    report(summarise(runs, args.trials, optima), args.trials)
    print(f"\n{len(runs)} runs in {time.time() - start:.0f} s; results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
