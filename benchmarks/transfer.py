"""Warm starts measured (issue 21, part 1): does a study learn from an earlier, related one?

Pairs of problems, a source and a target, each source searched once (120 random trials):

- ``branin-shifted``: Branin, then Branin with its inputs shifted by 10% of the range and its
  values scaled by 3 and offset by 5 (a related study: the same landscape, moved);
- ``hartmann-perturbed``: Hartmann-6, then Hartmann-6 with its inputs shifted by 0.05;
- ``unrelated``: Branin, then a different function on the same parameters (a sine ridge).

On each target, with ``--seeds`` seeds and ``--trials`` trials: the cold GP (no warm start),
tunelab's warm GP (``create_study(warm_start=[source])``), and Optuna's best practice for a warm
start, its GPSampler with the source's top 5 configurations enqueued first (``--no-optuna`` to
skip). Reported: the median best value after 5, 15 and the last trial, and how many trials the
warm runs needed to reach the cold GP's median best at the end (targets: at most 15 trials on the
related pairs; on the unrelated pair, never worse than cold by more than the interquartile range).

    OMP_NUM_THREADS=1 python benchmarks/transfer.py [--seeds 10] [--trials 50] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from problems import branin, hartmann6
from rich.console import Console
from rich.table import Table

import tunelab
from tunelab import Float

Params = dict[str, Any]
BRANIN_SPACE = {"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)}
HARTMANN_SPACE = {f"x{i}": Float(0.0, 1.0) for i in range(6)}


def branin_shifted(p: Params) -> float:
    return 3.0 * branin({"x1": p["x1"] - 1.5, "x2": p["x2"] - 1.5}) + 5.0


def hartmann_perturbed(p: Params) -> float:
    return hartmann6({k: min(1.0, max(0.0, v - 0.05)) for k, v in p.items()})


def sine_ridge(p: Params) -> float:
    return math.sin(p["x1"]) * math.cos(p["x2"] / 2) + 0.05 * (p["x1"] - 8) ** 2


PAIRS: dict[str, tuple[dict[str, Float], Callable[[Params], float], Callable[[Params], float]]] = {
    "branin-shifted": (BRANIN_SPACE, branin, branin_shifted),
    "hartmann-perturbed": (HARTMANN_SPACE, hartmann6, hartmann_perturbed),
    "unrelated": (BRANIN_SPACE, branin, sine_ridge),
}


def curve(values: Sequence[float]) -> np.ndarray:
    return np.minimum.accumulate(np.asarray(values, dtype=float))


def run_tunelab(url: str, space: dict[str, Float], f: Callable[[Params], float], seed: int, trials: int,
                warm: bool) -> np.ndarray:
    study = tunelab.create_study(storage=url, sampler=tunelab.GPSampler(), seed=seed, space=space,
                                 warm_start=["source"] if warm else None)
    study.optimize(lambda t: f(t.params), n_trials=trials, show_progress=False)
    return curve([t.value for t in study.trials])  # type: ignore[misc]


def run_optuna(source: tunelab.Study, space: dict[str, Float], f: Callable[[Params], float], seed: int,
               trials: int) -> np.ndarray:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
    top = sorted((t for t in source.trials if t.value is not None), key=lambda t: t.value)[:5]  # type: ignore[arg-type,return-value]
    for t in top:
        study.enqueue_trial(dict(t.params))

    def objective(trial: Any) -> float:
        return f({k: trial.suggest_float(k, d.low, d.high) for k, d in space.items()})

    study.optimize(objective, n_trials=trials)
    return curve([t.value for t in study.trials])


def trials_to_reach(curves: list[np.ndarray], target: float) -> float:
    """Median over seeds of the first trial (1-based) whose best reaches ``target`` (inf: never)."""
    firsts = [float(np.argmax(c <= target) + 1) if (c <= target).any() else math.inf for c in curves]
    return float(np.median(firsts))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="3 seeds, 25 trials")
    p.add_argument("--no-optuna", action="store_true")
    p.add_argument("--pairs", default=",".join(PAIRS))
    args = p.parse_args(argv)
    seeds, trials = (3, 25) if args.quick else (args.seeds, args.trials)
    console = Console(width=160)
    table = Table(title=f"warm starts: median best value over {seeds} seeds (lower is better), GP, {trials} trials")
    for col in ("pair", "method", "best@5", "best@15", f"best@{trials}", "trials to cold's final median", "IQR"):
        table.add_column(col, justify="right")
    started = time.perf_counter()
    for pair in args.pairs.split(","):
        space, f_source, f_target = PAIRS[pair]
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'transfer.db'}"
            source = tunelab.create_study(name="source", storage=url, sampler=tunelab.RandomSampler(), seed=123,
                                          space=space)
            source.optimize(lambda t, f=f_source: f(t.params), n_trials=120, show_progress=False)
            runs: dict[str, list[np.ndarray]] = {
                "cold GP": [run_tunelab(url, space, f_target, s, trials, warm=False) for s in range(seeds)],
                "tunelab warm GP": [run_tunelab(url, space, f_target, s, trials, warm=True) for s in range(seeds)],
            }
            if not args.no_optuna:
                runs["optuna GP + top-5 enqueued"] = [run_optuna(source, space, f_target, s, trials)
                                                      for s in range(seeds)]
        cold_final = float(np.median([c[-1] for c in runs["cold GP"]]))
        for method, curves in runs.items():
            finals = [c[-1] for c in curves]
            iqr = float(np.percentile(finals, 75) - np.percentile(finals, 25))
            table.add_row(pair, method, *(f"{np.median([c[min(k, trials) - 1] for c in curves]):.4g}"
                                          for k in (5, 15, trials)),
                          f"{trials_to_reach(curves, cold_final):g}", f"{iqr:.3g}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
