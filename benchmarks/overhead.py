"""tunelab's own cost next to Optuna's: ask+tell overhead per trial and SQLite throughput.

Both libraries run the same objective (four suggestions: a log float, a linear float, an int
and a categorical; a cheap float value) through their ask/tell APIs with their random samplers,
in one run, so that the two columns of every row share the machine and the moment.

1. Overhead: milliseconds of ask + suggestions + tell per trial (the objective's arithmetic is
   not timed), for in-memory storage and SQLite (a fresh file per run), at several study sizes:
   the mean over the whole run and the marginal cost (mean over the last 10% of trials).
2. Throughput: trials per second of 1 and 2 real processes (spawned, each loading the study by
   name and running its own ask/tell loop) sharing one study in one SQLite file.

Run ``make bench`` or ``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/overhead.py [--quick]``;
the results are printed and saved as JSON (``benchmarks/results/overhead.json`` by default).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from rich.console import Console
from rich.table import Table

import tunelab

LIBS = ("tunelab", "optuna")
STORAGES = ("memory", "sqlite")
SEED = 0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_SIZES = (100, 1_000, 5_000)
QUICK_SIZES = (100, 500)
MARGINAL_FRACTION = 0.10
PHASES = ("ask", "suggest", "tell")
WORKER_READY_TIMEOUT = 120.0


# -- the objective ----------------------------------------------------------------------------
def suggest_params(trial: Any) -> tuple[float, float, int, str]:
    """The four suggestions of the benchmark objective (the same calls in both libraries)."""
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    layers = trial.suggest_int("layers", 1, 8)
    activation = trial.suggest_categorical("activation", ["relu", "gelu", "tanh"])
    return lr, dropout, layers, activation


def cheap_value(params: tuple[float, float, int, str]) -> float:
    """A cheap objective value from the suggested parameters."""
    lr, dropout, layers, activation = params
    return (math.log10(lr) + 3.0) ** 2 + dropout + 0.1 * layers + 0.01 * len(activation)


# -- studies ----------------------------------------------------------------------------------
def sqlite_url(path: Path) -> str:
    """An SQLAlchemy URL for an SQLite file (absolute path)."""
    return f"sqlite:///{path}"


def create_study(lib: str, url: str | None, name: str) -> Any:
    """A new study with the library's random sampler, in memory (``url`` None) or in SQLite."""
    if lib == "tunelab":
        return tunelab.create_study(
            name=name, storage=url, direction="minimize", seed=SEED, sampler=tunelab.RandomSampler()
        )
    return optuna.create_study(
        study_name=name, storage=url, direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=SEED),
    )


def load_study(lib: str, url: str, name: str, worker: int) -> Any:
    """An existing study loaded by name, as another process joins it."""
    if lib == "tunelab":
        return tunelab.load_study(name, url)
    return optuna.load_study(
        study_name=name, storage=url, sampler=optuna.samplers.RandomSampler(seed=SEED + worker)
    )


def close_study(lib: str, study: Any) -> None:
    """Release the study's database connections."""
    if lib == "tunelab":
        study.storage.close()
    gc.collect()


def complete_numbers(lib: str, url: str, name: str) -> list[int]:
    """Numbers of the study's COMPLETE trials (to check that a parallel run lost nothing)."""
    if lib == "tunelab":
        study = tunelab.load_study(name, url)
        numbers = [t.number for t in study.get_trials([tunelab.TrialState.COMPLETE])]
        study.storage.close()
        return numbers
    ostudy = optuna.load_study(study_name=name, storage=url)
    return [t.number for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]


# -- 1. overhead per trial --------------------------------------------------------------------
def time_ask_tell(study: Any, n_trials: int) -> dict[str, list[float]]:
    """Seconds spent in ask, in the suggestions and in tell, for each of ``n_trials`` trials."""
    clock = time.perf_counter
    out: dict[str, list[float]] = {phase: [] for phase in PHASES}
    ask, suggest, tell = out["ask"], out["suggest"], out["tell"]
    for _ in range(n_trials):
        t0 = clock()
        trial = study.ask()
        t1 = clock()
        params = suggest_params(trial)
        t2 = clock()
        value = cheap_value(params)  # the objective's own work: not timed
        t3 = clock()
        study.tell(trial, value)
        t4 = clock()
        ask.append(t1 - t0)
        suggest.append(t2 - t1)
        tell.append(t4 - t3)
    return out


def per_trial(phases: dict[str, list[float]]) -> list[float]:
    """Seconds of ask + suggestions + tell of each trial."""
    return [sum(parts) for parts in zip(*(phases[p] for p in PHASES), strict=True)]


def tail(values: Sequence[float]) -> Sequence[float]:
    """The last 10% of ``values`` (at least one)."""
    return values[-max(1, round(len(values) * MARGINAL_FRACTION)):]


@dataclass
class OverheadRun:
    """One timed run of ``n_trials`` trials of one library on one storage."""

    mean_ms: float
    marginal_ms: float
    median_ms: float
    p95_ms: float
    total_s: float
    phases_mean_ms: dict[str, float]
    phases_marginal_ms: dict[str, float]


@dataclass
class OverheadRow:
    """The overhead of one library, storage and study size (medians over the repeats)."""

    lib: str
    storage: str
    n_trials: int
    mean_ms: float
    marginal_ms: float
    runs: list[OverheadRun] = field(default_factory=list)


def summarize(phases: dict[str, list[float]]) -> OverheadRun:
    """Milliseconds per trial: mean, marginal, median, p95, and the same by phase."""
    totals = per_trial(phases)
    ordered = sorted(totals)
    return OverheadRun(
        mean_ms=1e3 * statistics.fmean(totals),
        marginal_ms=1e3 * statistics.fmean(tail(totals)),
        median_ms=1e3 * statistics.median(totals),
        p95_ms=1e3 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        total_s=sum(totals),
        phases_mean_ms={p: 1e3 * statistics.fmean(v) for p, v in phases.items()},
        phases_marginal_ms={p: 1e3 * statistics.fmean(tail(v)) for p, v in phases.items()},
    )


def run_overhead(lib: str, storage: str, n_trials: int, workdir: Path, tag: str) -> OverheadRun:
    """Time one fresh study (a fresh SQLite file for ``storage='sqlite'``); setup is not timed."""
    url = sqlite_url(workdir / f"{tag}.db") if storage == "sqlite" else None
    study = create_study(lib, url, tag)
    gc.collect()
    phases = time_ask_tell(study, n_trials)
    close_study(lib, study)
    return summarize(phases)


def warm_up(workdir: Path) -> None:
    """Import lazily loaded modules and prime caches of both libraries; nothing is recorded."""
    for lib in LIBS:
        for storage, n in (("memory", 50), ("sqlite", 10)):
            run_overhead(lib, storage, n, workdir, f"warmup-{lib}-{storage}")


def measure_overhead(sizes: Sequence[int], repeats: dict[str, int], console: Console) -> list[OverheadRow]:
    """Every (storage, size, library) row, ``repeats[storage]`` runs each; the libraries take turns
    running first."""
    rows: list[OverheadRow] = []
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        workdir = Path(tmp)
        warm_up(workdir)
        for storage in STORAGES:
            for size in sizes:
                found: dict[str, list[OverheadRun]] = {lib: [] for lib in LIBS}
                n_runs = repeats[storage]
                for rep in range(n_runs):
                    order = LIBS if (rep + size // 100) % 2 == 0 else LIBS[::-1]
                    for lib in order:
                        started = time.perf_counter()
                        run = run_overhead(lib, storage, size, workdir, f"{lib}-{storage}-{size}-{rep}")
                        found[lib].append(run)
                        console.log(
                            f"overhead {lib:8s} {storage:6s} {size:>6,d} trials (run {rep + 1}/{n_runs}): "
                            f"mean {run.mean_ms:.3f} ms, marginal {run.marginal_ms:.3f} ms "
                            f"[{time.perf_counter() - started:.1f} s]"
                        )
                for lib in LIBS:
                    runs = found[lib]
                    rows.append(OverheadRow(
                        lib=lib, storage=storage, n_trials=size,
                        mean_ms=statistics.median(r.mean_ms for r in runs),
                        marginal_ms=statistics.median(r.marginal_ms for r in runs),
                        runs=runs,
                    ))
    return rows


# -- 2. SQLite throughput with processes ------------------------------------------------------
def throughput_worker(
    lib: str, url: str, name: str, n_trials: int, index: int, events: Any, go: Any
) -> None:
    """A worker process: load the study by name, wait for the start, run ``n_trials`` ask/tell."""
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = load_study(lib, url, name, index)
        events.put(("ready", index))
        go.wait()
        started = time.perf_counter()
        for _ in range(n_trials):
            trial = study.ask()
            study.tell(trial, cheap_value(suggest_params(trial)))
        events.put(("done", index, n_trials, time.perf_counter() - started))
    except BaseException:  # noqa: BLE001 - report anything to the parent rather than hang it
        events.put(("error", index, traceback.format_exc()))


@dataclass
class ThroughputRow:
    """Trials per second of ``processes`` processes sharing one SQLite study."""

    lib: str
    processes: int
    n_trials: int
    wall_s: float | None
    trials_per_s: float | None
    worker_s: list[float]
    complete_trials: int | None
    duplicate_numbers: int | None
    error: str | None = None


def split(total: int, parts: int) -> list[int]:
    """``total`` trials shared out as evenly as possible between ``parts`` workers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_throughput(lib: str, processes: int, n_trials: int, workdir: Path) -> ThroughputRow:
    """Wall time from the start signal until every worker has finished its share."""
    name = f"tp-{lib}-{processes}"
    url = sqlite_url(workdir / f"{name}.db")
    close_study(lib, create_study(lib, url, name))
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    go = ctx.Event()
    shares = split(n_trials, processes)
    procs = [
        ctx.Process(target=throughput_worker, args=(lib, url, name, share, i, events, go), daemon=True)
        for i, share in enumerate(shares)
    ]
    row = ThroughputRow(lib, processes, n_trials, None, None, [], None, None)
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        ready = 0
        while ready < processes:
            msg = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if msg[0] == "error":
                raise RuntimeError(f"worker {msg[1]} failed to start:\n{msg[2]}")
            ready += 1
        started = time.perf_counter()
        go.set()
        deadline = time.monotonic() + 120.0 + 1.0 * n_trials  # generous: a second per trial
        done = 0
        while done < processes:
            msg = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if msg[0] == "error":
                raise RuntimeError(f"worker {msg[1]} failed:\n{msg[2]}")
            done += 1
            row.worker_s.append(msg[3])
        row.wall_s = time.perf_counter() - started
        row.trials_per_s = n_trials / row.wall_s
    except (RuntimeError, queue.Empty) as e:
        row.error = str(e) or "timed out waiting for the workers"
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
    numbers = complete_numbers(lib, url, name)
    row.complete_trials = len(numbers)
    row.duplicate_numbers = len(numbers) - len(set(numbers))
    return row


def measure_throughput(
    n_trials: int, process_counts: Sequence[int], console: Console
) -> list[ThroughputRow]:
    """Every (processes, library) row, each in a fresh SQLite file."""
    rows: list[ThroughputRow] = []
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-tp-") as tmp:
        for processes in process_counts:
            for lib in LIBS:
                row = run_throughput(lib, processes, n_trials, Path(tmp))
                rows.append(row)
                rate = "failed" if row.trials_per_s is None else f"{row.trials_per_s:,.1f} trials/s"
                console.log(
                    f"throughput {lib:8s} {processes} process(es), {n_trials:,d} trials: {rate}, "
                    f"{row.complete_trials} COMPLETE, {row.duplicate_numbers} duplicated numbers"
                )
                if row.error:
                    console.log(row.error)
    return rows


# -- report -----------------------------------------------------------------------------------
def tunelab_source() -> dict[str, Any]:
    """Where the measured tunelab comes from: its directory and, in a git work tree, the commit."""
    src = Path(tunelab.__file__).resolve().parent
    out: dict[str, Any] = {"path": str(src), "commit": None, "dirty": None}
    try:
        git = ["git", "-C", str(src)]
        out["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        out["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, Python and library versions, tunelab's source."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gib: float | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": None if memory_gib is None else round(memory_gib, 1),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "tunelab": tunelab.__version__,
        "tunelab_source": tunelab_source(),
        "optuna": optuna.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "numpy": np.__version__,
        "sqlite": sqlite3.sqlite_version,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing."""
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(r: float | None, good: bool) -> str:
    """A ratio for the table, green when it meets its target, red when not."""
    if r is None:
        return "-"
    return f"[{'green' if good else 'red'}]{r:.2f}x[/]"


def overhead_table(rows: list[OverheadRow]) -> tuple[Table, list[dict[str, Any]]]:
    """The overhead table and its rows as plain data (with the ratios)."""
    table = Table(title="ask + suggest x4 + tell, ms per trial (lower is better; ratio = tunelab/optuna)")
    for col in ("storage", "trials", "tunelab mean", "optuna mean", "ratio mean",
                "tunelab marginal", "optuna marginal", "ratio marginal"):
        table.add_column(col, justify="left" if col == "storage" else "right")
    pairs: list[dict[str, Any]] = []
    by_key = {(r.lib, r.storage, r.n_trials): r for r in rows}
    for storage in STORAGES:
        for size in sorted({r.n_trials for r in rows}):
            t, o = by_key[("tunelab", storage, size)], by_key[("optuna", storage, size)]
            mean_r, marg_r = ratio(t.mean_ms, o.mean_ms), ratio(t.marginal_ms, o.marginal_ms)
            pairs.append({
                "storage": storage, "n_trials": size,
                "tunelab_mean_ms": t.mean_ms, "optuna_mean_ms": o.mean_ms, "ratio_mean": mean_r,
                "tunelab_marginal_ms": t.marginal_ms, "optuna_marginal_ms": o.marginal_ms,
                "ratio_marginal": marg_r,
            })
            table.add_row(
                storage, f"{size:,d}", f"{t.mean_ms:.3f}", f"{o.mean_ms:.3f}",
                fmt_ratio(mean_r, mean_r is not None and mean_r <= 1.0),
                f"{t.marginal_ms:.3f}", f"{o.marginal_ms:.3f}",
                fmt_ratio(marg_r, marg_r is not None and marg_r <= 1.0),
            )
    return table, pairs


def throughput_table(rows: list[ThroughputRow]) -> tuple[Table, list[dict[str, Any]]]:
    """The throughput table and its rows as plain data (with the ratios)."""
    table = Table(title="SQLite throughput, trials/s (higher is better; ratio = tunelab/optuna, target 10x)")
    for col in ("processes", "trials", "tunelab trials/s", "optuna trials/s", "ratio",
                "tunelab wall s", "optuna wall s"):
        table.add_column(col, justify="right")
    pairs: list[dict[str, Any]] = []
    by_key = {(r.lib, r.processes): r for r in rows}
    for processes in sorted({r.processes for r in rows}):
        t, o = by_key[("tunelab", processes)], by_key[("optuna", processes)]
        r = ratio(t.trials_per_s, o.trials_per_s)
        pairs.append({
            "processes": processes, "n_trials": t.n_trials, "tunelab_trials_per_s": t.trials_per_s,
            "optuna_trials_per_s": o.trials_per_s, "ratio": r,
        })
        table.add_row(
            str(processes), f"{t.n_trials:,d}",
            *(f"{x.trials_per_s:,.1f}" if x.trials_per_s is not None else "failed" for x in (t, o)),
            fmt_ratio(r, r is not None and r >= 10.0),
            *(f"{x.wall_s:.2f}" if x.wall_s is not None else "-" for x in (t, o)),
        )
    return table, pairs


def check_targets(overhead: list[dict[str, Any]], throughput: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether tunelab is no slower than Optuna in every overhead row and >= 10x in SQLite throughput."""
    slower = [
        f"{p['storage']} {p['n_trials']} ({kind} {p[f'ratio_{kind}']:.2f}x)"
        for p in overhead for kind in ("mean", "marginal")
        if p[f"ratio_{kind}"] is not None and p[f"ratio_{kind}"] > 1.0
    ]
    short = [
        f"{p['processes']} process(es) ({p['ratio']:.2f}x)" if p["ratio"] is not None else
        f"{p['processes']} process(es) (failed)"
        for p in throughput if p["ratio"] is None or p["ratio"] < 10.0
    ]
    return {
        "overhead_no_slower_than_optuna": not slower, "overhead_rows_slower": slower,
        "throughput_at_least_10x": bool(throughput) and not short, "throughput_rows_short": short,
    }


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (through a .tmp file beside ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# -- profiling --------------------------------------------------------------------------------
def profile(target: str, n_trials: int, console: Console) -> None:
    """Run one library/storage for ``n_trials`` under cProfile; print hotspots, save a .prof file."""
    lib, storage = target.split("-")
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-prof-") as tmp:
        workdir = Path(tmp)
        run_overhead(lib, storage, 20, workdir, "warmup")
        url = sqlite_url(workdir / "profiled.db") if storage == "sqlite" else None
        study = create_study(lib, url, "profiled")
        profiler = cProfile.Profile()
        profiler.enable()
        phases = time_ask_tell(study, n_trials)
        profiler.disable()
        close_study(lib, study)
    run = summarize(phases)
    console.print(f"{target}, {n_trials:,d} trials: mean {run.mean_ms:.3f} ms (with the profiler's own cost)")
    out = RESULTS_DIR / f"profile-{target}.prof"
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(out))
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    console.print(f"saved {out} (open with: python -m pstats {out}, or snakeviz)")


# -- main -------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    """A comma-separated list of positive integers."""
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: sizes 100,500 and 200 throughput trials (output overhead-quick.json)")
    p.add_argument("--sizes", type=int_list, help="study sizes, e.g. 100,1000,5000 (default: that)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per in-memory overhead row; the row reports the medians (default 3)")
    p.add_argument("--sqlite-repeats", type=int, default=1,
                   help="runs per SQLite overhead row (default 1: Optuna takes minutes per run)")
    p.add_argument("--throughput-trials", type=int,
                   help="trials of each throughput run, all processes together (default 1000)")
    p.add_argument("--processes", type=int_list, default=[1, 2],
                   help="process counts of the throughput runs (default 1,2)")
    p.add_argument("--skip-throughput", action="store_true", help="measure the overhead only")
    p.add_argument("--output", type=Path,
                   help="JSON results file (default benchmarks/results/overhead.json)")
    p.add_argument("--profile", choices=[f"{lib}-{s}" for lib in LIBS for s in STORAGES],
                   help="instead of the benchmark, profile one library/storage with cProfile")
    p.add_argument("--profile-trials", type=int, default=1000, help="trials of the profiled run")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.sqlite_repeats < 1:
        p.error("--repeats and --sqlite-repeats must be at least 1")
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.throughput_trials is None:
        args.throughput_trials = 200 if args.quick else 1_000
    if args.output is None:
        args.output = RESULTS_DIR / ("overhead-quick.json" if args.quick else "overhead.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and save the JSON results."""
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=None if sys.stdout.isatty() else 150, log_path=False)
    info = machine_info()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if args.profile:
        profile(args.profile, args.profile_trials, console)
        return 0
    started = time.perf_counter()
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    repeats = {"memory": args.repeats, "sqlite": args.sqlite_repeats}
    overhead_rows = measure_overhead(args.sizes, repeats, console)
    throughput_rows = (
        [] if args.skip_throughput else measure_throughput(args.throughput_trials, args.processes, console)
    )
    o_table, o_pairs = overhead_table(overhead_rows)
    console.print(o_table)
    t_pairs: list[dict[str, Any]] = []
    if throughput_rows:
        t_table, t_pairs = throughput_table(throughput_rows)
        console.print(t_table)
    targets = check_targets(o_pairs, t_pairs)
    met, slower = targets["overhead_no_slower_than_optuna"], targets["overhead_rows_slower"]
    console.print("target, tunelab no slower than Optuna in every overhead row: "
                  + ("met" if met else "NOT met: " + "; ".join(slower)))
    if t_pairs:
        met, short = targets["throughput_at_least_10x"], targets["throughput_rows_short"]
        console.print("target, tunelab SQLite throughput >= 10x Optuna's: "
                      + ("met" if met else "NOT met: " + "; ".join(short)))
    results = {
        "benchmark": "overhead",
        "started": began,
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "settings": {
            "sizes": args.sizes, "repeats": repeats, "quick": args.quick,
            "throughput_trials": args.throughput_trials, "processes": args.processes,
            "marginal_fraction": MARGINAL_FRACTION, "seed": SEED,
            "objective": "suggest_float(log), suggest_float, suggest_int, suggest_categorical(3 choices)",
            "timed": "study.ask() + the four suggestions + study.tell(); not the study's creation",
            "samplers": {
                "tunelab": "tunelab.RandomSampler()", "optuna": f"optuna.samplers.RandomSampler({SEED})",
            },
        },
        "overhead": o_pairs,
        "throughput": t_pairs,
        "targets": targets,
        "raw": {
            "overhead": [asdict(r) for r in overhead_rows],
            "throughput": [asdict(r) for r in throughput_rows],
        },
    }
    save_json(args.output, results)
    console.print(f"saved {args.output} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
