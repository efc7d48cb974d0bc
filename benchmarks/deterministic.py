"""What a deterministic study costs in wall-clock time (issue 21, part 3).

The same study (TPE or GP, 3 parameters, seed 0) runs with ``deterministic=False`` and with
``deterministic=True`` (width 4) on 1, 2 and 4 worker processes. Each trial "trains" for a time
drawn by its trial number (0.5 s to 1.5 s, the same in every run), so the only difference is the
waiting a deterministic study adds: a worker whose trial needs a result that is not in yet waits.
It also checks the point of it all: the deterministic runs give the same parameters for every
trial number whatever the workers.

    OMP_NUM_THREADS=1 python benchmarks/deterministic.py [--trials 24] [--sampler tpe]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

import tunelab

TRIAL_SECONDS = (0.5, 1.5)


def trial_seconds(number: int, low: float, high: float) -> float:
    return random.Random(number).uniform(low, high)


def objective(trial: tunelab.Trial) -> float:
    """Styblinski-Tang in 3-d after a pause drawn from the trial number (TRIAL_SECONDS)."""
    xs = [trial.suggest_float(n, -5.0, 5.0) for n in "xyz"]
    time.sleep(trial_seconds(trial.number, *TRIAL_SECONDS))
    return sum(x**4 - 16 * x**2 + 5 * x for x in xs) / 2


def run(sampler: str, deterministic: bool, workers: int, trials: int, folder: Path) -> tuple[float, list[dict]]:
    url = f"sqlite:///{folder / f'{sampler}-{deterministic}-{workers}.db'}"
    make = {"tpe": lambda: tunelab.TPESampler(n_startup_trials=6), "gp": lambda: tunelab.GPSampler(n_startup_trials=6)}
    study = tunelab.create_study(name="d", storage=url, seed=0, sampler=make[sampler](), deterministic=deterministic)
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_workers=workers, show_progress=False)
    return time.perf_counter() - started, [t.params for t in study.trials]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--sampler", choices=["tpe", "gp"], default="tpe")
    p.add_argument("--workers", default="1,2,4")
    args = p.parse_args(argv)
    console = Console()
    low, high = TRIAL_SECONDS
    table = Table(title=f"wall-clock seconds, {args.trials} trials of {low}-{high} s, {args.sampler}")
    for col in ("workers", "free", "deterministic", "cost", "ideal"):
        table.add_column(col, justify="right")
    sleeps = sum(trial_seconds(n, low, high) for n in range(args.trials))
    replayed: list[list[dict]] = []
    with tempfile.TemporaryDirectory() as folder:
        for w in (int(x) for x in args.workers.split(",")):
            free, _ = run(args.sampler, False, w, args.trials, Path(folder))
            fixed, params = run(args.sampler, True, w, args.trials, Path(folder))
            replayed.append(params)
            table.add_row(str(w), f"{free:.1f}", f"{fixed:.1f}", f"{(fixed / free - 1) * 100:+.0f}%",
                          f"{sleeps / w:.1f}")
    console.print(table)
    same = all(p == replayed[0] for p in replayed)
    console.print(f"deterministic runs give the same parameters for every trial number: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
