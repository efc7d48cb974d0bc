"""Per-trial cost of the model-based samplers, tunelab next to Optuna, in one run.

What is timed: ``ask`` (the sampler fitting its model and proposing) + the suggestions +
``tell``, per trial, with in-memory storage, on a cheap objective of four parameters
(a log float, a float, an int and a categorical of 3), so the objective costs nothing.
The same objective runs under each library's ask/tell API.

Rows: TPE at 1,000 trials and the Gaussian process at 200 trials (the project's targets:
tunelab at most half of Optuna's), plus smaller sizes to show the growth. Two numbers per row:
the mean per trial over the whole run, and the marginal cost (mean over the last 10% of
trials: what one more trial costs at that size).

Run: ``make bench-model`` (or ``.venv-bench/bin/python benchmarks/model_overhead.py``);
``--quick`` for a smoke run. Results go to ``benchmarks/results/model_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "model_overhead.json"
CHOICES = ("relu", "tanh", "gelu")


def suggest(trial: Any) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    width = trial.suggest_int("width", 16, 256)
    act = trial.suggest_categorical("activation", list(CHOICES))
    return (math.log10(lr) + 3) ** 2 + (dropout - 0.2) ** 2 + abs(width - 100) / 100 + CHOICES.index(act) * 0.1


def make_study(lib: str, sampler: str, seed: int) -> Any:
    if lib == "tunelab":
        import tunelab
        import tunelab.samplers

        cls: Any = getattr(tunelab.samplers, {"tpe": "TPESampler", "gp": "GPSampler"}[sampler])
        return tunelab.create_study(sampler=cls(), seed=seed)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}[sampler](seed=seed)
    return optuna.create_study(sampler=opt)


def time_trials(lib: str, sampler: str, n_trials: int, seed: int) -> list[float]:
    """Seconds per trial (ask + suggestions + tell)."""
    study = make_study(lib, sampler, seed)
    out = []
    for _ in range(n_trials):
        t0 = time.perf_counter()
        trial = study.ask()
        value = suggest(trial)
        study.tell(trial, value)
        out.append(time.perf_counter() - t0)
    return out


def summarize(times: Sequence[float]) -> dict[str, float]:
    tail = times[-max(1, len(times) // 10):]
    return {"mean_ms": 1e3 * sum(times) / len(times), "marginal_ms": 1e3 * sum(tail) / len(tail)}


def run(rows: Sequence[tuple[str, int]], console: Console, log: Callable[[str], None]) -> list[dict[str, Any]]:
    for sampler in sorted({s for s, _ in rows}):  # warm up: imports and first-call costs are not per-trial costs
        for lib in ("tunelab", "optuna"):
            time_trials(lib, sampler, 15, seed=1)
    results = []
    for sampler, n in rows:
        row: dict[str, Any] = {"sampler": sampler, "n_trials": n}
        for lib in ("tunelab", "optuna"):
            log(f"{lib} {sampler} x {n} trials ...")
            t0 = time.perf_counter()
            row[lib] = summarize(time_trials(lib, sampler, n, seed=0))
            log(f"  done in {time.perf_counter() - t0:.1f} s")
        results.append(row)
    table = Table(title="Model-based samplers: ask + tell per trial (in-memory, ms)")
    for col in ("sampler", "trials", "tunelab mean", "optuna mean", "ratio", "tunelab marginal",
                "optuna marginal", "ratio "):
        table.add_column(col, justify="right")
    for r in results:
        t, o = r["tunelab"], r["optuna"]
        table.add_row(
            r["sampler"], str(r["n_trials"]), f"{t['mean_ms']:.2f}", f"{o['mean_ms']:.2f}",
            f"{t['mean_ms'] / o['mean_ms']:.2f}", f"{t['marginal_ms']:.2f}", f"{o['marginal_ms']:.2f}",
            f"{t['marginal_ms'] / o['marginal_ms']:.2f}",
        )
    console.print(table)
    return results


def check_targets(results: list[dict[str, Any]], console: Console) -> dict[str, bool]:
    targets = {}
    for sampler, n in (("tpe", 1000), ("gp", 200)):
        row = next((r for r in results if r["sampler"] == sampler and r["n_trials"] == n), None)
        if row is None:
            continue
        ok = row["tunelab"]["mean_ms"] <= 0.5 * row["optuna"]["mean_ms"]
        targets[f"{sampler}@{n}: tunelab <= 1/2 optuna"] = ok
        console.print(f"target {sampler} at {n} trials, tunelab at most half of Optuna's per-trial cost: "
                      f"{'MET' if ok else 'NOT MET'} ({row['tunelab']['mean_ms']:.2f} vs "
                      f"{row['optuna']['mean_ms']:.2f} ms)")
    return targets


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: TPE 200 trials, GP 50")
    p.add_argument("--samplers", default="tpe,gp", help="which of tpe,gp")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    wanted = set(args.samplers.split(","))
    sizes = {"tpe": [200] if args.quick else [100, 1000], "gp": [50] if args.quick else [50, 200]}
    rows = [(s, n) for s in ("tpe", "gp") if s in wanted for n in sizes[s]]
    console = Console()
    results = run(rows, console, lambda m: console.print(f"[dim]{m}[/dim]"))
    targets = check_targets(results, console)
    if not args.quick:
        import optuna

        import tunelab

        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "rows": results, "targets": targets, "tunelab": tunelab.__version__, "optuna": optuna.__version__,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "date": time.strftime("%Y-%m-%d"),
        }, indent=2) + "\n")
        console.print(f"saved {args.out}")


if __name__ == "__main__":
    main()
