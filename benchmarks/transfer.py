"""Warm starts measured (issue 21, part 1): does a study learn from an earlier, related one?

Pairs of problems, a source and a target; each source is searched once (``SOURCE_TRIALS`` random
trials, seed 123) and the target studies name it in ``warm_start``:

- ``branin-shifted``: Branin, then Branin with its inputs shifted by 10% of the range and its
  values scaled by 3 and offset by 5 (a related study: the same landscape, moved);
- ``hartmann-perturbed``: the suite's Hartmann-6 (``problems.py``), then Hartmann-6 with its
  optimum moved by 0.05 in every coordinate;
- ``rosenbrock-perturbed``: the suite's ``rosenbrock10_log`` (10-d, half the coordinates on a log
  scale), then the same with its optimum moved from x = 1 to x = 1.25 in every coordinate
  (z = 0.1 -> 0.178 on the log ones);
- ``digits-cnn``: a small PyTorch CNN on scikit-learn's digits (learning rate, weight decay,
  dropout, channels), the source trained on a quarter of the training images (150), the target
  on all of them (600); both score the validation cross-entropy on the same 1,197 other images;
- ``unrelated``: Branin, then a different function on the same parameters (a sine ridge).

On each target, with ``--seeds`` seeds and ``--trials`` trials: the cold GP (no warm start),
tunelab's warm GP (``create_study(warm_start=[source])``), and Optuna's best practice for a warm
start, its GPSampler with the source's top 5 configurations enqueued first (``--no-optuna`` to
skip). Reported: the median best value after 5, 15 and the last trial, how many trials each
method's median best (over seeds) needs to reach the cold GP's median best at the last trial, and the
interquartile range of the last best. Targets (issue 21): on the related pairs the warm GP needs
at most 15 trials; on the unrelated pair its median best is never (at 5, 15 and the last trial)
worse than the cold GP's by more than the cold GP's interquartile range there.

    OMP_NUM_THREADS=1 python benchmarks/transfer.py [--seeds 10] [--trials 50] [--quick]
        [--pairs a,b] [--no-optuna] [--workers 1] [--out results/transfer.json]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from problems import LOSS_CAP, branin, digits_split, hartmann6, rosenbrock10_log, train_minibatches
from problems import PROBLEMS as SUITE

import tunelab
from tunelab import Float, Int
from tunelab.distributions import Distribution

Params = Mapping[str, Any]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SOURCE_TRIALS = 120
REACH_TARGET = 15
METHODS = ("cold GP", "tunelab warm GP", "optuna GP + top-5 enqueued")


# -- the problems ---------------------------------------------------------------------------------
def branin_shifted(p: Params) -> float:
    return 3.0 * branin({"x1": p["x1"] - 1.5, "x2": p["x2"] - 1.5}) + 5.0


def hartmann_perturbed(p: Params) -> float:
    return hartmann6({k: min(1.0, max(0.0, v - 0.05)) for k, v in p.items()})


ROSENBROCK_SHIFT = 0.25


def rosenbrock_perturbed(p: Params) -> float:
    """``rosenbrock10_log`` with its optimum at x = 1.25 (z = 10 ** -0.75 on the log coordinates)."""
    moved = {k: (v * 10.0 ** -ROSENBROCK_SHIFT if k.startswith("z") else v - ROSENBROCK_SHIFT) for k, v in p.items()}
    return rosenbrock10_log(moved)


def sine_ridge(p: Params) -> float:
    return math.sin(p["x1"]) * math.cos(p["x2"] / 2) + 0.05 * (p["x1"] - 8) ** 2


CNN_EPOCHS = 10
CNN_BATCH = 64
CNN_SOURCE_SHARE = 4
"""The source trains on every ``CNN_SOURCE_SHARE``-th training image (stratified: the split is)."""
CNN_SPACE: dict[str, Distribution] = {
    "lr": Float(1e-4, 1.0, log=True),
    "weight_decay": Float(1e-6, 1e-1, log=True),
    "dropout": Float(0.0, 0.8),
    "channels": Int(2, 32, log=True),
}


@lru_cache(maxsize=2)
def cnn_data(share: int) -> tuple[Any, Any, Any, Any]:
    """The digits split of ``problems.digits_split`` as 8x8 images: training images ``[::share]``."""
    import torch

    torch.set_num_threads(1)
    x_tr, x_va, y_tr, y_va = digits_split()
    x_tr, y_tr = x_tr[::share], y_tr[::share]
    return (torch.tensor(x_tr, dtype=torch.float32).reshape(-1, 1, 8, 8),
            torch.tensor(x_va, dtype=torch.float32).reshape(-1, 1, 8, 8),
            torch.tensor(y_tr, dtype=torch.int64), torch.tensor(y_va, dtype=torch.int64))


def digits_cnn(share: int) -> Callable[[Params], float]:
    def evaluate(p: Params) -> float:
        """Validation cross-entropy of a conv(3x3, ``channels``) -> ReLU -> max-pool -> dropout ->
        linear network after ``CNN_EPOCHS`` epochs of Adam; seeded, so deterministic."""
        import torch
        from torch import nn

        torch.set_num_threads(1)
        x_tr, x_va, y_tr, y_va = cnn_data(share)
        torch.manual_seed(0)
        c = int(p["channels"])
        model = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Dropout(float(p["dropout"])), nn.Linear(16 * c, 10))
        opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
        loss_fn = nn.CrossEntropyLoss()
        train_minibatches(model, opt, x_tr, y_tr, epochs=CNN_EPOCHS, batch=CNN_BATCH)
        with torch.no_grad():
            value = float(loss_fn(model(x_va), y_va))
        return value if math.isfinite(value) and value < LOSS_CAP else LOSS_CAP

    return evaluate


@dataclass(frozen=True)
class Pair:
    space: Mapping[str, Distribution]
    source: Callable[[Params], float]
    target: Callable[[Params], float]
    related: bool
    description: str


BRANIN_SPACE = dict(SUITE["branin"].space)
PAIRS: dict[str, Pair] = {
    "branin-shifted": Pair(BRANIN_SPACE, branin, branin_shifted, True,
                           "Branin -> inputs shifted by 1.5 (10% of the range), values x3 + 5"),
    "hartmann-perturbed": Pair(dict(SUITE["hartmann6"].space), hartmann6, hartmann_perturbed, True,
                               "Hartmann-6 -> optimum moved by 0.05 in every coordinate"),
    "rosenbrock-perturbed": Pair(dict(SUITE["rosenbrock10_log"].space), rosenbrock10_log, rosenbrock_perturbed,
                                 True, "rosenbrock10_log -> optimum moved from x = 1 to x = 1.25 in every coordinate"),
    "digits-cnn": Pair(CNN_SPACE, digits_cnn(CNN_SOURCE_SHARE), digits_cnn(1), True,
                       f"PyTorch CNN on digits, {CNN_EPOCHS} epochs: trained on 150 images -> on 600"),
    "unrelated": Pair(BRANIN_SPACE, branin, sine_ridge, False, "Branin -> a sine ridge on the same parameters"),
}


# -- the runs -------------------------------------------------------------------------------------
def make_source(pair: str, folder: Path) -> Path:
    """The source study of ``pair`` in ``folder/source.db`` (searched once, at random)."""
    path = folder / f"{pair}-source.db"
    spec = PAIRS[pair]
    source = tunelab.create_study(name="source", storage=f"sqlite:///{path}", sampler=tunelab.RandomSampler(),
                                  seed=123, space=dict(spec.space))
    source.optimize(lambda t: spec.source(t.params), n_trials=SOURCE_TRIALS, show_progress=False)
    import sqlite3

    with sqlite3.connect(path) as db:  # everything into the main file (WAL mode): jobs copy that file only
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def run_one(job: tuple[str, str, int, int, str]) -> dict[str, Any]:
    """One target study: (pair, method, seed, trials, source database) -> its values, in order."""
    pair, method, seed, trials, source_db = job
    spec = PAIRS[pair]
    warnings.filterwarnings("ignore")
    started = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "study.db"
        shutil.copy(source_db, path)  # every job its own copy: parallel workers never share a database
        url = f"sqlite:///{path}"
        if method == "optuna GP + top-5 enqueued":
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            source = tunelab.load_study("source", url)
            top = sorted((t for t in source.trials if t.value is not None), key=lambda t: t.value)[:5]  # type: ignore[arg-type,return-value]
            study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
            for t in top:
                study.enqueue_trial(dict(t.params))

            def objective(trial: Any) -> float:
                params = {k: (trial.suggest_int(k, d.low, d.high, log=d.log) if isinstance(d, Int)
                              else trial.suggest_float(k, d.low, d.high, log=d.log)) for k, d in spec.space.items()}
                return spec.target(params)

            study.optimize(objective, n_trials=trials)
            values = [float(t.value) for t in study.trials if t.value is not None]  # not the enqueued ones left
        else:
            warm = method == "tunelab warm GP"
            study = tunelab.create_study(storage=url, sampler=tunelab.GPSampler(), seed=seed, space=dict(spec.space),
                                         warm_start=["source"] if warm else None)
            study.optimize(lambda t: spec.target(t.params), n_trials=trials, show_progress=False)
            values = [float(t.value) for t in study.trials]  # type: ignore[arg-type]
    return {"pair": pair, "method": method, "seed": seed, "values": values,
            "cpu_s": round(time.process_time() - started, 2)}


def init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


# -- the summary ----------------------------------------------------------------------------------
def best_curve(values: Sequence[float]) -> np.ndarray:
    return np.minimum.accumulate(np.asarray(values, dtype=float))


def trials_to_reach(curves: Sequence[np.ndarray], target: float) -> float:
    """The first trial (1-based) at which the median over seeds of the best so far reaches ``target``
    (inf: never). (The median of each seed's first trial to reach it would be inf for the cold GP
    itself with an even number of seeds: half of them end above their own median.)"""
    median = np.median(np.vstack(curves), axis=0)
    return float(np.argmax(median <= target) + 1) if (median <= target).any() else math.inf


def iqr(values: Sequence[float]) -> float:
    return float(np.percentile(values, 75) - np.percentile(values, 25))


def summarise(runs: Sequence[Mapping[str, Any]], trials: int) -> dict[str, Any]:
    budgets = sorted({min(5, trials), min(15, trials), trials})
    out: dict[str, Any] = {}
    for pair in dict.fromkeys(r["pair"] for r in runs):
        # the seeds every method of the pair finished (a run cut short compares like with like)
        methods = {r["method"] for r in runs if r["pair"] == pair}
        seeds = sorted(set.intersection(*({r["seed"] for r in runs if r["pair"] == pair and r["method"] == m}
                                          for m in methods)))
        curves = {m: [best_curve(r["values"]) for r in runs
                      if r["pair"] == pair and r["method"] == m and r["seed"] in seeds] for m in METHODS}
        curves = {m: c for m, c in curves.items() if c}
        if "cold GP" not in curves:
            continue  # a partial run: this pair's cold study is not done yet
        cold = curves["cold GP"]
        cold_final = float(np.median([c[-1] for c in cold]))
        rows = {}
        for method, cs in curves.items():
            rows[method] = {
                "best_at": {str(k): float(np.median([c[k - 1] for c in cs])) for k in budgets},
                "iqr_at": {str(k): iqr([c[k - 1] for c in cs]) for k in budgets},
                "trials_to_cold_final": trials_to_reach(cs, cold_final),
                "cpu_s": float(np.sum([r["cpu_s"] for r in runs
                                       if r["pair"] == pair and r["method"] == method and r["seed"] in seeds])),
            }
        checks = []
        if "tunelab warm GP" in rows:
            warm = rows["tunelab warm GP"]
            if PAIRS[pair].related:
                checks.append({"check": f"warm GP reaches cold GP's median best at {trials} trials in <= "
                                        f"{REACH_TARGET} trials", "value": warm["trials_to_cold_final"],
                               "target": REACH_TARGET, "met": warm["trials_to_cold_final"] <= REACH_TARGET})
            else:
                for k in budgets:
                    c = rows["cold GP"]
                    excess = warm["best_at"][str(k)] - c["best_at"][str(k)]
                    checks.append({"check": f"warm GP's median best at {k} trials no worse than cold's by more "
                                            "than cold's IQR", "value": excess, "target": c["iqr_at"][str(k)],
                                   "met": excess <= c["iqr_at"][str(k)]})
        out[pair] = {"description": PAIRS[pair].description, "related": PAIRS[pair].related, "seeds": seeds,
                     "cold_final_median": cold_final, "methods": rows, "checks": checks}
    return out


def fmt(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:g}"


def report(summary: Mapping[str, Any], trials: int) -> None:
    budgets = sorted({min(5, trials), min(15, trials), trials})
    head = ["pair (seeds)", "method", *(f"best@{k}" for k in budgets), f"trials to cold's median best@{trials}",
            f"IQR@{trials}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for pair, s in summary.items():
        for i, (method, row) in enumerate(s["methods"].items()):
            print("| " + " | ".join([f"{pair} ({len(s['seeds'])})" if i == 0 else "", method,
                                     *(f"{row['best_at'][str(k)]:.4g}" for k in budgets),
                                     fmt(row["trials_to_cold_final"]), f"{row['iqr_at'][str(trials)]:.3g}"]) + " |")
    for pair, s in summary.items():
        for c in s["checks"]:
            verdict = "met" if c["met"] else "MISSED"
            print(f"[{verdict}] {pair}: {c['check']}: {c['value']:.4g} (target {c['target']:.4g})")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="3 seeds, 25 trials")
    p.add_argument("--no-optuna", action="store_true")
    p.add_argument("--pairs", default=",".join(PAIRS))
    p.add_argument("--methods", default=",".join(METHODS), help="a subset of: " + ", ".join(METHODS))
    p.add_argument("--seed-list", default=None,
                   help="these seeds, in this order, instead of 0 .. --seeds - 1 (to split a run over processes)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS_DIR / "transfer.json"))
    p.add_argument("--from-json", default=None, help="print a saved run's table again")
    p.add_argument("--merge", default=None,
                   help="comma-separated result files of runs split by pair (same seeds and trials): "
                        "summarised together into --out")
    args = p.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        report(saved["summary"], saved["trials"])
        return 0
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge.split(",") if f]
        merged = {**parts[0], "runs": [r for part in parts for r in part["runs"]],
                  "wall_s": [part["wall_s"] for part in parts], "cpu_s": sum(part["cpu_s"] for part in parts),
                  "workers": [part["workers"] for part in parts],
                  "complete": all(part.get("complete", True) for part in parts)}
        merged["summary"] = summarise(merged["runs"], merged["trials"])
        report(merged["summary"], merged["trials"])
        Path(args.out).write_text(json.dumps(merged, indent=1))
        print(f"saved {args.out}")
        return 0
    seeds, trials = (3, 25) if args.quick else (args.seeds, args.trials)
    methods = [m for m in args.methods.split(",") if m and not (args.no_optuna and m.startswith("optuna"))]
    pairs = [x for x in args.pairs.split(",") if x]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        sources = {pair: str(make_source(pair, Path(folder))) for pair in pairs}
        source_s = time.perf_counter() - started
        # Seed by seed (every pair and method for seed 0, then seed 1, ...): a run cut short still
        # compares the methods on the same seeds; the results file is rewritten after every study.
        seed_list = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(seeds))
        jobs = [(pair, m, s, trials, sources[pair]) for s in seed_list for pair in pairs for m in methods]
        runs: list[dict[str, Any]] = []
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)

        def save(done: bool) -> dict[str, Any]:
            order = {m: i for i, m in enumerate(METHODS)}
            runs.sort(key=lambda r: (pairs.index(r["pair"]), order[r["method"]], r["seed"]))
            wall, cpu = time.perf_counter() - started, sum(r["cpu_s"] for r in runs)
            summary = summarise(runs, trials)
            out.write_text(json.dumps({
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                            "platform": platform.platform()},
                "tunelab": tunelab.__version__, "seeds": seeds, "trials": trials, "source_trials": SOURCE_TRIALS,
                "complete": done, "workers": args.workers, "wall_s": round(wall, 1), "source_s": round(source_s, 1),
                "cpu_s": round(cpu, 1), "summary": summary, "runs": runs,
            }, indent=1))
            return summary

        def finished(run: dict[str, Any]) -> None:
            runs.append(run)
            print(f"{run['pair']} / {run['method']} / seed {run['seed']}: best {min(run['values']):.6g}, "
                  f"{run['cpu_s']} s CPU", file=sys.stderr, flush=True)
            save(False)

        if args.workers > 1:
            with mp.get_context("spawn").Pool(args.workers, initializer=init_worker) as pool:
                for run in pool.imap_unordered(run_one, jobs):
                    finished(run)
        else:
            for job in jobs:
                finished(run_one(job))
    summary = save(True)
    report(summary, trials)
    print(f"done in {time.perf_counter() - started:.0f} s with {args.workers} worker(s) (sources {source_s:.0f} s; "
          f"the target studies' CPU time {sum(r['cpu_s'] for r in runs):.0f} s)")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
