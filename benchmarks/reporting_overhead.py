"""What reporting costs inside a training loop: tunelab's Reporter (and Optuna's report) against
the same loop that reports nothing. The target: at most 1% of the loop's time.

The problem: a small CNN on scikit-learn's digits (8x8 images as 1x8x8; 75/25 stratified split,
1,347 images train, 450 validate): Conv2d(1, w, 3, pad 1)-ReLU-Conv2d(w, 2w, 3, pad 1)-ReLU-
MaxPool2d(2)-Flatten-Linear(2w*16, 128)-ReLU-Linear(128, 10), w = 32, Adam (lr 1e-3), batch 64,
a fixed number of epochs, on one CPU thread. Every variant trains the same network from the same
seed on the same batches (the final validation loss is checked to be identical), and computes
the validation loss and accuracy after every epoch; they differ only in what they report:

  (a) plain       nothing;
  (b) tunelab     ``Reporter.update(loss, outputs, targets)`` every step and ``Reporter.report(epoch,
                  val_loss=..., val_acc=...)`` every epoch (train averages + validation metrics in
                  one write, then the pruner is asked) to a trial from ``study.ask()`` of a real
                  SQLite study with ``MedianPruner(metric="val_loss")``;
  (c) tunelab/10  the same, but ``Reporter.report`` every 10 optimiser steps (train averages; the
                  epoch's validation metrics join the report at the epoch's last step), the pruner
                  reading ``train_loss``;
  (d) optuna      Optuna's ``trial.report(val_loss, epoch)`` + ``trial.should_prune()`` every epoch,
                  on its SQLite RDB storage with ``MedianPruner()`` (its default pruner).

Every study is fresh for each run and already holds ``--prefill`` COMPLETE trials (default 10)
with curves at the same steps, so the median pruners really compute medians (the prefilled
curves are bad: the timed trial is never pruned). What is timed: the training loop, from the
first batch to the last epoch's report; creating the study, ``ask`` and ``tell`` are not (they
are per-trial costs: see ``overhead.py``). The variants run interleaved in the same process,
``--repeats`` times (default 5), in a rotating order, so that noise hits them alike; each
variant's loop time is the median over the repeats, and its overhead is relative to the
plain loop's median.

A 1% difference is close to the noise of a loop of a few seconds, so the pure costs are timed
too: ``report()`` calls alone (ms per call, on a prefilled SQLite study; Optuna's report +
should_prune alike) and ``update()`` alone (us per call, on a real batch's loss and logits).
From them, the "estimated" column: (updates x update cost + reports x report cost) / plain loop.

Run ``make bench-reporting`` or
``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/reporting_overhead.py [--quick]``;
results are printed and saved as JSON (``benchmarks/results/reporting_overhead.json``).
Optuna is imported only for variant (d): without it, (d) is skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"  # before torch (and NumPy) load their thread pools
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import tunelab
from tunelab.torch import Reporter

torch.set_num_threads(1)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 0
TARGET_PCT = 1.0
VARIANTS = ("plain", "tunelab", "tunelab/10", "optuna")
LABELS = {
    "plain": "(a) plain loop, no reporting",
    "tunelab": "(b) tunelab Reporter: update every step, report every epoch",
    "tunelab/10": "(c) tunelab Reporter: update every step, report every {every} steps",
    "optuna": "(d) Optuna report + should_prune every epoch",
}
BAD_LOSS = 10.0
"""The prefilled trials' losses: worse than any real one, so the timed trial is never pruned."""

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# -- the problem ------------------------------------------------------------------------------
def digits() -> Data:
    """Digits as 1x8x8 float images in [0, 1]: x_train, y_train, x_val, y_val (75/25, stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.25, random_state=SEED, stratify=y)

    def images(a: Any) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).reshape(-1, 1, 8, 8)

    return images(x_tr), torch.tensor(y_tr), images(x_va), torch.tensor(y_va)


def cnn(width: int) -> nn.Module:
    """Conv(1, w)-ReLU-Conv(w, 2w)-ReLU-MaxPool(2)-Flatten-Linear(2w*16, 128)-ReLU-Linear(128, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10),
    )


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Validation loss and accuracy (one batch: 450 images)."""
    model.eval()
    out = model(x)
    loss, acc = float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())
    model.train()
    return loss, acc


@dataclass(frozen=True)
class Settings:
    epochs: int
    width: int
    batch_size: int
    lr: float
    every: int
    prefill: int

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def report_steps(self, n_train: int) -> list[int]:
        """The steps variant (c) reports at: every ``every`` steps and each epoch's last step."""
        per_epoch = self.steps_per_epoch(n_train)
        total = self.epochs * per_epoch
        return sorted({s for s in range(1, total + 1) if s % self.every == 0 or s % per_epoch == 0})


# -- hooks: what each variant does in the loop ----------------------------------------------------
class Hooks:
    """The plain loop: reports nothing."""

    reports = 0
    updates = 0

    def on_step(self, step: int, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pass

    def on_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float) -> None:
        pass

    def close(self, val_loss: float) -> None:
        pass


class TunelabHooks(Hooks):
    """A Reporter on a trial of a fresh, prefilled SQLite study; reports every epoch, or every
    ``every`` steps (``every`` > 0)."""

    def __init__(self, workdir: Path, tag: str, settings: Settings, n_train: int, every: int = 0) -> None:
        metric = "train_loss" if every else "val_loss"
        self.study = tunelab.create_study(
            name=tag, storage=f"sqlite:///{workdir / (tag + '.db')}", direction="minimize", seed=SEED,
            sampler=tunelab.RandomSampler(), pruner=tunelab.MedianPruner(metric=metric),
            artifact_dir=workdir / "artifacts",
        )
        per_epoch = settings.steps_per_epoch(n_train)
        steps = settings.report_steps(n_train) if every else list(range(1, settings.epochs + 1))
        for _ in range(settings.prefill):
            trial = self.study.ask()
            for s in steps:
                metrics = {"train_loss": BAD_LOSS, "train_acc": 0.1}
                if not every or s % per_epoch == 0:
                    metrics.update(val_loss=BAD_LOSS, val_acc=0.1)
                trial.report(s, **metrics)
            self.study.tell(trial, BAD_LOSS)
        self.trial = self.study.ask()
        self.reporter = Reporter(self.trial, monitor="val_loss")
        self.every, self.per_epoch = every, per_epoch

    def on_step(self, step: int, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.reporter.update(loss, outputs, targets)
        self.updates += 1

    def on_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float) -> None:
        self.reporter.report(epoch, val_loss=val_loss, val_acc=val_acc)
        self.reports += 1

    def close(self, val_loss: float) -> None:
        self.study.tell(self.trial, val_loss)
        self.study.storage.close()


class EveryStepsHooks(TunelabHooks):
    """Variant (c): ``report`` every ``every`` steps; the epoch's validation metrics join the report
    at the epoch's last step."""

    def on_step(self, step: int, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.reporter.update(loss, outputs, targets)
        self.updates += 1
        if step % self.every == 0 and step % self.per_epoch != 0:
            self.reporter.report(step)
            self.reports += 1

    def on_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float) -> None:
        self.reporter.report(step, val_loss=val_loss, val_acc=val_acc)
        self.reports += 1


class OptunaHooks(Hooks):
    """Optuna's trial.report + should_prune every epoch, on a fresh, prefilled SQLite RDB study."""

    def __init__(self, workdir: Path, tag: str, settings: Settings) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / (tag + '.db')}")
        self.study = optuna.create_study(
            study_name=tag, storage=self.storage, direction="minimize",
            sampler=optuna.samplers.RandomSampler(seed=SEED), pruner=optuna.pruners.MedianPruner(),
        )
        for _ in range(settings.prefill):
            trial = self.study.ask()
            for epoch in range(1, settings.epochs + 1):
                trial.report(BAD_LOSS, epoch)
            self.study.tell(trial, BAD_LOSS)
        self.trial = self.study.ask()
        self.pruned = 0

    def on_epoch(self, epoch: int, step: int, val_loss: float, val_acc: float) -> None:
        self.trial.report(val_loss, epoch)
        if self.trial.should_prune():
            self.pruned += 1  # never expected: counted, and the run goes on (same work as the others)
        self.reports += 1

    def close(self, val_loss: float) -> None:
        self.study.tell(self.trial, val_loss)
        engine = getattr(self.storage, "engine", None)
        if engine is not None:
            engine.dispose()


def make_hooks(variant: str, workdir: Path, tag: str, settings: Settings, n_train: int) -> Hooks:
    if variant == "plain":
        return Hooks()
    if variant == "tunelab":
        return TunelabHooks(workdir, tag, settings, n_train)
    if variant == "tunelab/10":
        return EveryStepsHooks(workdir, tag, settings, n_train, every=settings.every)
    return OptunaHooks(workdir, tag, settings)


# -- the timed loops ----------------------------------------------------------------------------
@dataclass
class Run:
    """One variant's training loop of one repeat: its time in all and epoch by epoch."""

    seconds: float
    cpu_seconds: float
    epoch_seconds: list[float]
    final_val_loss: float
    reports: int
    updates: int


class Loop:
    """The CNN trained from ``SEED`` one epoch at a time (batches, validation, the hooks), so
    that the variants' loops can advance side by side."""

    def __init__(self, data: Data, settings: Settings, hooks: Hooks) -> None:
        self.data, self.settings, self.hooks = data, settings, hooks
        torch.manual_seed(SEED)
        self.model = cnn(settings.width)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.shuffle = torch.Generator().manual_seed(SEED)
        self.step = self.epoch = 0
        self.val_loss = math.nan
        self.epoch_seconds: list[float] = []
        self.cpu_seconds = 0.0

    def run_epoch(self) -> float:
        """Train and validate one epoch; return its wall seconds."""
        x_tr, y_tr, x_va, y_va = self.data
        model, optimizer, hooks = self.model, self.optimizer, self.hooks
        n, bs = x_tr.shape[0], self.settings.batch_size
        started, cpu_started = time.perf_counter(), time.process_time()
        self.epoch += 1
        model.train()
        order = torch.randperm(n, generator=self.shuffle)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            xb, yb = x_tr[idx], y_tr[idx]
            outputs = model(xb)
            loss = nn.functional.cross_entropy(outputs, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.step += 1
            hooks.on_step(self.step, loss, outputs, yb)
        self.val_loss, val_acc = evaluate(model, x_va, y_va)
        hooks.on_epoch(self.epoch, self.step, self.val_loss, val_acc)
        seconds = time.perf_counter() - started
        self.cpu_seconds += time.process_time() - cpu_started
        self.epoch_seconds.append(seconds)
        return seconds

    def close(self) -> Run:
        self.hooks.close(self.val_loss)
        return Run(sum(self.epoch_seconds), self.cpu_seconds, self.epoch_seconds, self.val_loss,
                   self.hooks.reports, self.hooks.updates)


def measure_loops(variants: Sequence[str], data: Data, settings: Settings, repeats: int, workdir: Path,
                  log: Callable[[str], None]) -> dict[str, list[Run]]:
    """``repeats`` rounds; in each, every variant's loop from scratch, the loops advancing side by side
    one epoch at a time in a rotating order (noise of a second or more hits them alike). An
    untimed epoch of each variant first warms everything up."""
    n_train = int(data[0].shape[0])
    for v in variants:  # imports, allocator, first-call costs, SQLite: nothing recorded
        loop = Loop(data, settings, make_hooks(v, workdir, f"warmup-{v.replace('/', '-')}", settings, n_train))
        loop.run_epoch()
        loop.close()
    runs: dict[str, list[Run]] = {v: [] for v in variants}
    turn = 0
    for r in range(repeats):
        loops = {v: Loop(data, settings, make_hooks(v, workdir, f"{v.replace('/', '-')}-{r}", settings, n_train))
                 for v in variants}
        for _ in range(settings.epochs):
            gc.collect()
            shift = turn % len(variants)
            turn += 1
            for v in list(variants[shift:]) + list(variants[:shift]):
                loops[v].run_epoch()
        for v, loop in loops.items():
            run = loop.close()
            runs[v].append(run)
            log(f"repeat {r + 1}/{repeats} {v:11s} {run.seconds:7.3f} s, CPU {run.cpu_seconds:7.3f} s  "
                f"({run.reports} reports, final val loss {run.final_val_loss:.6f})")
            hooks = loop.hooks
            if isinstance(hooks, OptunaHooks) and hooks.pruned:
                log(f"[yellow]optuna's pruner said 'prune' {hooks.pruned} times (ignored)[/]")
    return runs


# -- pure costs -------------------------------------------------------------------------------
def batch_tensors(data: Data, settings: Settings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A real batch's loss (with its graph), logits and targets."""
    torch.manual_seed(SEED)
    model = cnn(settings.width)
    xb, yb = data[0][:settings.batch_size], data[1][:settings.batch_size]
    outputs = model(xb)
    return nn.functional.cross_entropy(outputs, yb), outputs, yb


def time_update(data: Data, settings: Settings, calls: int, chunks: int = 7) -> dict[str, float]:
    """Microseconds per ``Reporter.update(loss, outputs, targets)``: median and min over chunks."""
    loss, outputs, targets = batch_tensors(data, settings)
    reporter = Reporter(None)
    for _ in range(100):
        reporter.update(loss, outputs, targets)
    per_call = []
    for _ in range(chunks):
        reporter.report(0)
        t0 = time.perf_counter()
        for _ in range(calls):
            reporter.update(loss, outputs, targets)
        per_call.append(1e6 * (time.perf_counter() - t0) / calls)
    return {"median_us": statistics.median(per_call), "min_us": min(per_call), "calls": calls * chunks}


def summarize_ms(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": 1e3 * statistics.median(ordered), "mean_ms": 1e3 * statistics.fmean(ordered),
            "p95_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "calls": len(ordered)}


def time_tunelab_report(data: Data, settings: Settings, calls: int, workdir: Path) -> dict[str, float]:
    """Milliseconds per ``Reporter.report(step, val_loss, val_acc)`` (with the train averages of one
    update, the write and the MedianPruner's decision) on a prefilled SQLite study."""
    prefill = Settings(**{**settings.__dict__, "epochs": calls})
    hooks = TunelabHooks(workdir, "pure-tunelab", prefill, int(data[0].shape[0]))
    loss, outputs, targets = batch_tensors(data, settings)
    times = []
    for step in range(1, calls + 1):
        hooks.reporter.update(loss, outputs, targets)
        t0 = time.perf_counter()
        hooks.reporter.report(step, val_loss=1.0 / step, val_acc=0.5)
        times.append(time.perf_counter() - t0)
    hooks.close(1.0)
    return summarize_ms(times)


def time_optuna_report(settings: Settings, calls: int, workdir: Path) -> dict[str, float]:
    """Milliseconds per Optuna ``trial.report(value, step)`` + ``trial.should_prune()`` on a prefilled
    SQLite RDB study."""
    hooks = OptunaHooks(workdir, "pure-optuna", Settings(**{**settings.__dict__, "epochs": calls}))
    times = []
    for step in range(1, calls + 1):
        t0 = time.perf_counter()
        hooks.trial.report(1.0 / step, step)
        hooks.trial.should_prune()
        times.append(time.perf_counter() - t0)
    hooks.close(1.0)
    return summarize_ms(times)


# -- results ----------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """Cores, CPU model, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for lib in ("tunelab", "torch", "optuna", "sqlalchemy", "scikit-learn"):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    import sqlite3

    return {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), **versions, "sqlite": sqlite3.sqlite_version,
            "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def summarize(runs: dict[str, list[Run]], pure: dict[str, Any], settings: Settings,
              every: int) -> dict[str, Any]:
    """Per variant: the median loop time and its overhead over the plain loop's; the paired overhead
    (the median, over every epoch of every repeat, of the epoch's time over the plain loop's same
    epoch, which ran next to it); and the estimate from the pure costs."""
    plain = statistics.median(r.seconds for r in runs["plain"])
    plain_cpu = statistics.median(r.cpu_seconds for r in runs["plain"])
    out: dict[str, Any] = {}
    for v, rs in runs.items():
        median = statistics.median(r.seconds for r in rs)
        median_cpu = statistics.median(r.cpu_seconds for r in rs)
        reports, updates = rs[0].reports, rs[0].updates
        epoch_ratios = [t / p for run, base in zip(rs, runs["plain"], strict=True)
                        for t, p in zip(run.epoch_seconds, base.epoch_seconds, strict=True)]
        repeat_ratios = [run.seconds / base.seconds for run, base in zip(rs, runs["plain"], strict=True)]
        if v.startswith("tunelab"):
            cost = updates * pure["update"]["median_us"] * 1e-6 + reports * pure["tunelab_report"]["median_ms"] * 1e-3
        elif v == "optuna" and "optuna_report" in pure:
            cost = reports * pure["optuna_report"]["median_ms"] * 1e-3
        else:
            cost = 0.0
        out[v] = {
            "label": LABELS[v].format(every=every), "reports_per_run": reports, "updates_per_run": updates,
            "loop_s": [round(r.seconds, 4) for r in rs], "median_s": median,
            "min_s": min(r.seconds for r in rs), "max_s": max(r.seconds for r in rs),
            "overhead_pct": 100.0 * (median - plain) / plain,
            "paired_pct": 100.0 * (statistics.median(epoch_ratios) - 1.0),
            "paired_iqr_pct": [100.0 * (q - 1.0) for q in quartiles(epoch_ratios)],
            "paired_repeat_pct": 100.0 * (statistics.median(repeat_ratios) - 1.0),
            "epoch_s": [[round(t, 4) for t in r.epoch_seconds] for r in rs],
            "cpu_s": [round(r.cpu_seconds, 4) for r in rs], "median_cpu_s": median_cpu,
            "cpu_overhead_pct": 100.0 * (median_cpu - plain_cpu) / plain_cpu, "estimated_s": cost,
            "estimated_pct": 100.0 * cost / plain, "final_val_loss": rs[-1].final_val_loss,
        }
    return out


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles (both the value itself for fewer than two values)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def print_results(console: Console, rows: dict[str, Any], pure: dict[str, Any], settings: Settings,
                  n_train: int, repeats: int) -> dict[str, Any]:
    per_epoch = settings.steps_per_epoch(n_train)
    table = Table(
        title=f"digits CNN (w={settings.width}), {settings.epochs} epochs x {per_epoch} steps (batch "
              f"{settings.batch_size}), 1 thread: loop time, median of {repeats} repeats (the variants' loops "
              "interleaved epoch by epoch)",
        title_justify="left",
        caption="overhead: (median - plain median) / plain median; paired: the median over every epoch of "
                "every repeat of (the epoch's time / the plain loop's same epoch, run next to it) - 1, and the "
                "quartiles of those ratios (the noise of one epoch); estimated: "
                "(updates x update() + reports x report()) / plain median, from the pure costs below",
        caption_justify="left",
    )
    for col in ("variant", "reports", "median s", "min s", "max s", "overhead", "paired", "paired IQR",
                "estimated"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v, row in rows.items():
        plain = v == "plain"
        table.add_row(row["label"], str(row["reports_per_run"]), f"{row['median_s']:.3f}", f"{row['min_s']:.3f}",
                      f"{row['max_s']:.3f}", "-" if plain else f"{row['overhead_pct']:+.2f}%",
                      "-" if plain else f"{row['paired_pct']:+.2f}%",
                      "-" if plain else "{:+.1f}%, {:+.1f}%".format(*row["paired_iqr_pct"]),
                      "-" if plain else f"{row['estimated_pct']:.3f}%")
    console.print(table)
    table = Table(title="pure costs", title_justify="left")
    for col in ("call", "median", "mean / min", "p95", "calls"):
        table.add_column(col, justify="left" if col == "call" else "right")
    u = pure["update"]
    table.add_row("tunelab Reporter.update(loss, outputs, targets)", f"{u['median_us']:.1f} us",
                  f"min {u['min_us']:.1f} us", "-", f"{u['calls']:,d}")
    for key, label in (("tunelab_report", "tunelab Reporter.report(step, val_loss, val_acc), SQLite + MedianPruner"),
                       ("optuna_report", "Optuna trial.report + should_prune, SQLite RDB + MedianPruner")):
        if key in pure:
            p = pure[key]
            table.add_row(label, f"{p['median_ms']:.2f} ms", f"mean {p['mean_ms']:.2f} ms", f"{p['p95_ms']:.2f} ms",
                          str(p["calls"]))
    console.print(table)
    targets: dict[str, Any] = {}
    for v in ("tunelab", "tunelab/10"):
        if v in rows:
            row = rows[v]
            met = {"medians": row["overhead_pct"] <= TARGET_PCT, "paired": row["paired_pct"] <= TARGET_PCT,
                   "estimated": row["estimated_pct"] <= TARGET_PCT}
            targets[v] = met

            def verdict(ok: bool) -> str:
                return "[green]met[/]" if ok else "[red]NOT met[/]"

            console.print(
                f"target, {v} at most {TARGET_PCT:g}% of the loop: medians {row['overhead_pct']:+.2f}% "
                f"{verdict(met['medians'])}, paired {row['paired_pct']:+.2f}% {verdict(met['paired'])}, estimated "
                f"from the pure costs {row['estimated_pct']:.3f}% {verdict(met['estimated'])}", highlight=False)
    losses = {v: row["final_val_loss"] for v, row in rows.items()}
    same = len(set(losses.values())) == 1
    if not same:
        console.print(f"[red]the variants did not do the same work[/]: final val losses {losses}")
    targets["same_work"] = same
    return targets


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 epochs, 2 repeats, fewer pure-cost calls (writes reporting_overhead-quick.json)")
    p.add_argument("--epochs", type=int, help="epochs per loop (default 10; 2 with --quick)")
    p.add_argument("--repeats", type=int, help="interleaved runs of each variant (default 5; 2 with --quick)")
    p.add_argument("--width", type=int, default=32, help="w, the first convolution's channels (default 32)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=10, help="variant (c) reports every this many steps (default 10)")
    p.add_argument("--prefill", type=int, default=10, help="COMPLETE trials already in each study (default 10)")
    p.add_argument("--report-calls", type=int, help="timed report() calls (default 100; 20 with --quick)")
    p.add_argument("--update-calls", type=int, help="timed update() calls per chunk of 7 (default 2000; 200 "
                                                    "with --quick)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, out of {','.join(VARIANTS)} "
                                                                 "(plain always runs)")
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/reporting_overhead.json)")
    args = p.parse_args(argv)
    quick = args.quick
    args.epochs = args.epochs or (2 if quick else 10)
    args.repeats = args.repeats or (2 if quick else 5)
    args.report_calls = args.report_calls or (20 if quick else 100)
    args.update_calls = args.update_calls or (200 if quick else 2000)
    args.out = args.out or RESULTS_DIR / ("reporting_overhead-quick.json" if quick else "reporting_overhead.json")
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {','.join(VARIANTS)}")
    args.variants = [v for v in VARIANTS if v == "plain" or v in wanted]
    if min(args.epochs, args.repeats, args.width, args.batch_size, args.every, args.report_calls,
           args.update_calls) < 1 or args.prefill < 0:
        p.error("counts must be at least 1 (--prefill at least 0)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160, log_path=False)
    if "optuna" in args.variants:
        try:
            import optuna  # noqa: F401
        except ImportError:
            console.print("[yellow]Optuna is not installed: skipping variant (d)[/]")
            args.variants.remove("optuna")
    settings = Settings(epochs=args.epochs, width=args.width, batch_size=args.batch_size, lr=args.lr,
                        every=args.every, prefill=args.prefill)
    info = machine_info()
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), highlight=False)
    data = digits()
    n_train = int(data[0].shape[0])
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tunelab-reporting-") as tmp:
        workdir = Path(tmp)
        runs = measure_loops(args.variants, data, settings, args.repeats, workdir,
                             lambda m: console.log(m, highlight=False))
        pure: dict[str, Any] = {"update": time_update(data, settings, args.update_calls)}
        pure["tunelab_report"] = time_tunelab_report(data, settings, args.report_calls, workdir)
        if "optuna" in args.variants:
            pure["optuna_report"] = time_optuna_report(settings, args.report_calls, workdir)
    rows = summarize(runs, pure, settings, args.every)
    targets = print_results(console, rows, pure, settings, n_train, args.repeats)
    result = {
        "benchmark": "reporting_overhead", "started": began, "duration_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "settings": {**settings.__dict__, "repeats": args.repeats, "n_train": n_train,
                     "n_val": int(data[2].shape[0]), "steps_per_epoch": settings.steps_per_epoch(n_train),
                     "report_calls": args.report_calls, "update_calls": args.update_calls, "quick": args.quick,
                     "optimizer": "adam", "seed": SEED},
        "variants": rows, "pure": pure, "target_pct": TARGET_PCT, "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"saved {args.out} ({result['duration_s']:.0f} s)", highlight=False)
    return 0 if targets.get("same_work", True) else 1


if __name__ == "__main__":
    sys.exit(main())
