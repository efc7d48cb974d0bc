"""tunelab's storage next to Optuna's RDBStorage: parallel throughput, and per-trial cost as a study grows.

Both libraries run the objective of ``overhead.py`` (ask, four suggestions, tell, a cheap value) with
their random samplers, side by side in one run.

1. Throughput (trials/s): several real processes (started with ``multiprocessing`` spawn, each
   loading the study by name and running its own ask/tell loop) share one study. PostgreSQL with
   8 processes x 250 trials and SQLite with 2 processes x 1,000 trials, for each library. The clock
   starts when every worker is ready and stops when the last one is done. Afterwards the study is
   checked: exactly the planned number of COMPLETE trials, no other trial left behind, no trial
   number twice, numbers 0..n-1, and no error in any worker. A run still going after
   ``--cap-seconds`` stops starting trials; the output then says it was capped.
2. Per-trial cost as the study grows (PostgreSQL): ms per ask + suggestions + tell, the mean over
   500 trials, in a study that already holds 1k, 10k and 100k trials, with the driver process's
   memory. Each library and size gets its own study (and schema), filled fast by copying rows the
   library itself wrote (see ``fill_study``), and its own driver process. The timed trials run in
   rounds that interleave all the studies, so that a change in the machine's load during the run
   does not pass for growth. A short pass afterwards times every SQL statement.

Run ``make bench-storage`` or
``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/storage.py [--quick]``; the results are printed
and saved as JSON (``benchmarks/results/storage.json`` by default).
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from overhead import (
    cheap_value,
    create_study,
    fmt_ratio,
    int_list,
    load_study,
    machine_info,
    ratio,
    save_json,
    split,
    suggest_params,
)
from rich.console import Console
from rich.table import Table

import tunelab

T = TypeVar("T")
LIBS = ("tunelab", "optuna")
SEED = 0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_PG_URL = os.environ.get(
    "TUNELAB_BENCH_POSTGRES_URL",
    os.environ.get("TUNELAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
WORKER_READY_TIMEOUT = 180.0
MAX_WORKER_ERRORS = 50  # a worker gives up after this many failed trials
TEMPLATES = 20  # real trials each study starts with; the fill copies them
GROWTH_FLAT = 1.25  # below this ratio to the smallest size, a per-trial cost counts as flat

FULL = {"pg_processes": 8, "pg_trials": 250, "sqlite_processes": 2, "sqlite_trials": 1_000,
        "sizes": [1_000, 10_000, 100_000], "timed": 500, "warmup": 20, "statement_trials": 100, "rounds": 5}
QUICK = {"pg_processes": 4, "pg_trials": 25, "sqlite_processes": 2, "sqlite_trials": 50,
         "sizes": [200, 2_000], "timed": 50, "warmup": 5, "statement_trials": 20, "rounds": 2}

# Per library: the studies table's name column, and the tables hanging off a trial (copied by the fill).
LAYOUT = {
    "tunelab": {"name_column": "name", "children": ("trial_values",)},
    "optuna": {"name_column": "study_name", "children": (
        "trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes",
        "trial_intermediate_values",
    )},
}


# -- processes and memory ---------------------------------------------------------------------
def memory_mib() -> dict[str, float]:
    """This process's resident memory now (``rss``) and its peak (``peak``), in MiB."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss" if line.startswith("VmRSS") else "peak"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    if "peak" not in out:  # no /proc: ru_maxrss (KiB on Linux) is the peak, and the best guess for now
        out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.setdefault("rss", out["peak"])
    return out


class RetryCounter(logging.Handler):
    """Counts the warnings tunelab logs when it retries a storage operation after a lost connection."""

    def __init__(self) -> None:
        """A handler for warnings and above, with its count at zero."""
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count one retry warning."""
        if "retrying" in record.getMessage():
            self.count += 1


# -- PostgreSQL -------------------------------------------------------------------------------
def schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with the schema first on the search path (``?options=-csearch_path=...``)."""
    url = sa.engine.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_schema(admin: sa.Engine, base_url: str, tag: str) -> Iterator[str]:
    """A new schema for one run, dropped afterwards; yields the URL that works inside it."""
    schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(base_url, schema)
    finally:
        for attempt in range(30):  # the server may be restarting (something else on the machine)
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                break
            except sa.exc.OperationalError:
                if attempt == 29:
                    raise
                time.sleep(2.0)


def postgres_info(admin: sa.Engine) -> dict[str, Any]:
    """The server's version, the settings that matter here, and how many other sessions it has."""
    out: dict[str, Any] = {}
    with admin.connect() as conn:
        out["version"] = conn.execute(sa.text("SHOW server_version")).scalar()
        for name in ("autovacuum", "synchronous_commit", "shared_buffers", "max_connections",
                     "plan_cache_mode", "wal_level"):
            out[name] = conn.execute(sa.text(f"SHOW {name}")).scalar()
        out["other_sessions"] = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )).scalar()
    return out


# -- studies ----------------------------------------------------------------------------------
def close_study(lib: str, study: Any) -> None:
    """Release the study's database connections."""
    if lib == "tunelab":
        study.storage.close()
    else:
        engine = study_engine(lib, study)
        if engine is not None:
            engine.dispose()


def study_engine(lib: str, study: Any) -> sa.Engine | None:
    """The SQLAlchemy engine under the study (Optuna's through private attributes; None if not found)."""
    if lib == "tunelab":
        return study.storage.engine  # type: ignore[no-any-return]
    backend = getattr(study._storage, "_backend", study._storage)
    return getattr(backend, "engine", None)


def run_trial(study: Any) -> None:
    """One trial of the benchmark objective through ask/tell."""
    trial = study.ask()
    study.tell(trial, cheap_value(suggest_params(trial)))


def census(lib: str, url: str, name: str) -> dict[str, Any]:
    """The study's trials by state, and whether their numbers are unique and exactly 0..n-1."""
    if lib == "tunelab":
        study = tunelab.load_study(name, url)
        trials = [(t.number, t.state.value) for t in study.trials]
        study.storage.close()
    else:
        ostudy = optuna.load_study(study_name=name, storage=url)
        trials = [(t.number, t.state.name) for t in ostudy.get_trials(deepcopy=False)]
        close_study(lib, ostudy)
    numbers = [n for n, _ in trials]
    states: dict[str, int] = {}
    for _, state in trials:
        states[state] = states.get(state, 0) + 1
    return {
        "n_trials": len(trials), "states": states, "complete": states.get("COMPLETE", 0),
        "duplicate_numbers": len(numbers) - len(set(numbers)),
        "numbers_contiguous": sorted(numbers) == list(range(len(numbers))),
    }


# -- 1. throughput ----------------------------------------------------------------------------
def throughput_worker(
    lib: str, url: str, name: str, n_trials: int, index: int, cap_s: float, events: Any, go: Any
) -> None:
    """A worker process: load the study, wait for the start, run up to ``n_trials`` trials, report."""
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        retries = RetryCounter()
        logging.getLogger("tunelab").addHandler(retries)
        study = load_study(lib, url, name, index)
        events.put(("ready", index))
        go.wait()
        started = time.perf_counter()
        deadline = time.monotonic() + cap_s
        done = errors = 0
        first_error: str | None = None
        capped = False
        while done < n_trials:
            if time.monotonic() > deadline:
                capped = True
                break
            try:
                run_trial(study)
                done += 1
            except Exception:  # noqa: BLE001 - count and report every failed trial, keep going
                errors += 1
                first_error = first_error or traceback.format_exc(limit=3)
                if errors >= MAX_WORKER_ERRORS:
                    break
        events.put(("done", index, {
            "done": done, "seconds": time.perf_counter() - started, "errors": errors,
            "first_error": first_error, "capped": capped, "retries": retries.count,
        }))
    except BaseException:  # noqa: BLE001 - report anything to the parent rather than hang it
        events.put(("error", index, traceback.format_exc()))


@dataclass
class ThroughputRun:
    """One library's run of ``processes`` processes x ``per_process`` trials on one study."""

    backend: str
    lib: str
    processes: int
    per_process: int
    planned: int
    startup_s: float | None = None
    wall_s: float | None = None
    done: int = 0
    trials_per_s: float | None = None
    capped: bool = False
    errors: int = 0
    retries: int = 0
    first_error: str | None = None
    worker_s: list[float] = field(default_factory=list)
    complete: int | None = None
    states: dict[str, int] = field(default_factory=dict)
    duplicate_numbers: int | None = None
    numbers_contiguous: bool | None = None
    verified: bool = False
    failure: str | None = None


def run_throughput(lib: str, backend: str, url: str, processes: int, per_process: int, cap_s: float) -> ThroughputRun:
    """Start the workers, time them from the start signal to the last one done, then check the study."""
    name = f"tp-{lib}-{backend}"
    close_study(lib, create_study(lib, url, name))
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    go = ctx.Event()
    shares = split(processes * per_process, processes)
    run = ThroughputRun(backend, lib, processes, per_process, sum(shares))
    launched = time.perf_counter()
    procs = [
        ctx.Process(target=throughput_worker, args=(lib, url, name, share, i, cap_s, events, go), daemon=True)
        for i, share in enumerate(shares)
    ]
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
        run.startup_s = time.perf_counter() - launched
        started = time.perf_counter()
        go.set()
        deadline = time.monotonic() + cap_s + 120.0  # workers stop starting trials at cap_s
        finished = 0
        while finished < processes:
            msg = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if msg[0] == "error":
                raise RuntimeError(f"worker {msg[1]} failed:\n{msg[2]}")
            finished += 1
            report = msg[2]
            run.worker_s.append(report["seconds"])
            run.done += report["done"]
            run.errors += report["errors"]
            run.retries += report["retries"]
            run.capped = run.capped or report["capped"]
            run.first_error = run.first_error or report["first_error"]
        run.wall_s = time.perf_counter() - started
        run.trials_per_s = run.done / run.wall_s
    except (RuntimeError, queue.Empty) as e:
        run.failure = str(e) or "timed out waiting for the workers"
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
    found = with_reconnects("census", lambda: census(lib, url, name))
    run.complete, run.states = found["complete"], found["states"]
    run.duplicate_numbers, run.numbers_contiguous = found["duplicate_numbers"], found["numbers_contiguous"]
    expected = run.done if run.capped else run.planned
    run.verified = (
        run.failure is None and run.errors == 0 and run.done == expected and run.complete == expected
        and found["n_trials"] == expected and run.duplicate_numbers == 0 and bool(run.numbers_contiguous)
    )
    return run


def measure_throughput(args: argparse.Namespace, admin: sa.Engine, console: Console) -> list[ThroughputRun]:
    """PostgreSQL then SQLite, each library in a fresh schema or file."""
    runs: list[ThroughputRun] = []
    plan = [("postgresql", args.pg_processes, args.pg_trials), ("sqlite", args.sqlite_processes, args.sqlite_trials)]
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-storage-") as tmp:
        for backend, processes, per_process in plan:
            for lib in LIBS:
                with ExitStack() as stack:
                    if backend == "postgresql":
                        url = stack.enter_context(fresh_schema(admin, args.pg_url, f"tp_{lib}"))
                    else:
                        url = f"sqlite:///{Path(tmp) / f'tp-{lib}.db'}"
                    run = run_throughput(lib, backend, url, processes, per_process, args.cap_seconds)
                runs.append(run)
                rate = "failed" if run.trials_per_s is None else f"{run.trials_per_s:,.1f} trials/s"
                console.log(
                    f"throughput {backend:10s} {lib:8s} {processes} x {per_process:,d}: {rate}"
                    f"{' (CAPPED)' if run.capped else ''}, {run.complete} COMPLETE of {run.planned:,d}, "
                    f"{run.duplicate_numbers} duplicated numbers, {run.errors} errors, "
                    f"{'verified' if run.verified else 'NOT verified'}"
                )
                for problem in (run.failure, run.first_error):
                    if problem:
                        console.log(problem)
    return runs


# -- 2. per-trial cost as the study grows -----------------------------------------------------
def fill_study(lib: str, engine: sa.Engine, name: str, target: int) -> tuple[int, float]:
    """Bring the study to ``target`` trials by copying its first TEMPLATES trials; (trials added, seconds).

    The templates are real trials the library wrote through its own ask/tell. Each new trial ``n``
    is a copy of template ``n % TEMPLATES`` with number ``n``: one ``INSERT ... SELECT`` over
    ``generate_series`` into ``trials`` (trial ids ascend with numbers), then one per table that
    hangs off a trial (Optuna's params, values and attributes; tunelab's curves), in one transaction.
    So every row has exactly the format the library writes; tunelab's ``studies.next_number`` is
    moved past the copies. Small temporary tables map each copy to its template, so that no join
    depends on an index the library may not have (Optuna has none on ``trials.number``).
    """
    layout = LAYOUT[lib]
    started = time.perf_counter()
    with engine.begin() as conn:
        q = conn.dialect.identifier_preparer.quote
        sid = conn.execute(
            sa.text(f"SELECT study_id FROM studies WHERE {q(str(layout['name_column']))} = :name"), {"name": name}
        ).scalar_one()
        first = conn.execute(sa.text("SELECT count(*) FROM trials WHERE study_id = :sid"), {"sid": sid}).scalar_one()
        if first >= target:
            return 0, 0.0
        bounds = {"sid": sid, "first": first, "last": target - 1, "k": TEMPLATES}
        insp = sa.inspect(conn)
        conn.execute(sa.text(
            "CREATE TEMP TABLE bench_templates ON COMMIT DROP AS "
            "SELECT number, trial_id FROM trials WHERE study_id = :sid AND number < :k"
        ), bounds)
        conn.execute(sa.text("CREATE TEMP TABLE bench_copies (trial_id integer, template_id integer) ON COMMIT DROP"))
        cols = [c["name"] for c in insp.get_columns("trials") if c["name"] != "trial_id"]
        picked = ", ".join("g.n" if c == "number" else f"t.{q(c)}" for c in cols)
        conn.execute(sa.text(
            f"WITH copies AS (INSERT INTO trials ({', '.join(q(c) for c in cols)}) SELECT {picked} "
            "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g(n) "
            "JOIN bench_templates b ON b.number = g.n % :k JOIN trials t ON t.trial_id = b.trial_id "
            "ORDER BY g.n RETURNING trial_id, number) "
            "INSERT INTO bench_copies SELECT c.trial_id, b.trial_id FROM copies c "
            "JOIN bench_templates b ON b.number = c.number % :k"
        ), bounds)
        for child in layout["children"]:
            if not insp.has_table(child):
                continue
            key = set(insp.get_pk_constraint(child)["constrained_columns"]) - {"trial_id"}
            ccols = [c["name"] for c in insp.get_columns(child) if c["name"] not in key]
            cpicked = ", ".join("m.trial_id" if c == "trial_id" else f"c.{q(c)}" for c in ccols)
            conn.execute(sa.text(
                f"INSERT INTO {q(child)} ({', '.join(q(c) for c in ccols)}) SELECT {cpicked} "
                f"FROM bench_copies m JOIN {q(child)} c ON c.trial_id = m.template_id"
            ))
        if lib == "tunelab":
            conn.execute(sa.text("UPDATE studies SET next_number = :n WHERE study_id = :sid"),
                         {"n": target, "sid": sid})
        count = conn.execute(sa.text("SELECT count(*) FROM trials WHERE study_id = :sid"), {"sid": sid}).scalar_one()
        if count != target:
            raise RuntimeError(f"fill of {lib} study {name!r}: {count} trials, expected {target}")
    return target - first, time.perf_counter() - started


def time_statements(lib: str, study: Any, n_trials: int) -> dict[str, Any]:
    """Run ``n_trials`` more trials timing each SQL statement the library sends (as the driver sees it)."""
    engine = study_engine(lib, study)
    if engine is None or n_trials <= 0:
        return {"trials": 0, "statements": []}
    spent: dict[str, list[float]] = {}
    clock = time.perf_counter

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        """Note when the statement starts."""
        conn.info["bench_t0"] = clock()

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        """Add the statement's time to its own list."""
        spent.setdefault(" ".join(statement.split()), []).append(clock() - conn.info.pop("bench_t0", clock()))

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    started = clock()
    try:
        for _ in range(n_trials):
            run_trial(study)
    finally:
        total = clock() - started
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)
    rows: list[dict[str, Any]] = sorted(
        ({"sql": sql[:500], "per_trial": len(t) / n_trials, "mean_ms": 1e3 * statistics.fmean(t),
          "ms_per_trial": 1e3 * sum(t) / n_trials} for sql, t in spent.items()),
        key=lambda r: -float(r["ms_per_trial"]),
    )
    return {"trials": n_trials, "ms_per_trial": 1e3 * total / n_trials,
            "sql_ms_per_trial": sum(r["ms_per_trial"] for r in rows), "statements": rows[:20]}


def growth_driver(lib: str, url: str, name: str, warmup: int, cap_s: float, conn: Any) -> None:
    """A driver process for one study: load it, warm up, then run the parent's commands over ``conn``.

    Commands: ``("run", (n, seconds))`` times up to ``n`` trials (phase by phase) within ``seconds``;
    ``("statements", n)`` runs ``n`` trials timing each SQL statement; ``("stop", None)`` closes.
    """
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        clock = time.perf_counter
        mem_start = memory_mib()["rss"]
        study = load_study(lib, url, name, 0)
        mem_loaded = memory_mib()["rss"]
        t0 = clock()
        run_trial(study)  # the first trial pays for whatever the library loads lazily
        first_ms = 1e3 * (clock() - t0)
        deadline = time.monotonic() + cap_s
        done = 1
        while done < warmup and time.monotonic() < deadline:
            run_trial(study)
            done += 1
        conn.send(("ready", {
            "first_trial_ms": first_ms, "warmup_s": clock() - t0, "warmup_capped": done < warmup,
            "rss_start_mib": mem_start, "rss_loaded_mib": mem_loaded, "rss_warm_mib": memory_mib()["rss"],
        }))
        while True:
            command, arg = conn.recv()
            if command == "run":
                n, seconds = arg
                phases: dict[str, list[float]] = {"ask": [], "suggest": [], "tell": []}
                deadline = time.monotonic() + seconds
                for _ in range(n):
                    if time.monotonic() > deadline:
                        break
                    t1 = clock()
                    trial = study.ask()
                    t2 = clock()
                    params = suggest_params(trial)
                    t3 = clock()
                    value = cheap_value(params)  # the objective's own work: not timed
                    t4 = clock()
                    study.tell(trial, value)
                    t5 = clock()
                    phases["ask"].append(t2 - t1)
                    phases["suggest"].append(t3 - t2)
                    phases["tell"].append(t5 - t4)
                conn.send(("ran", {"phases": phases, "memory": memory_mib()}))
            elif command == "statements":
                conn.send(("statements", time_statements(lib, study, arg)))
            else:
                close_study(lib, study)
                conn.send(("stopped", None))
                return
    except BaseException:  # noqa: BLE001 - report anything to the parent rather than hang it
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass


@dataclass
class GrowthRow:
    """One library's per-trial cost in a study that held ``size`` trials when the timing began."""

    lib: str
    size: int
    requested: int
    fill_added: int = 0
    fill_s: float = 0.0
    timed: int = 0
    mean_ms: float | None = None
    median_ms: float | None = None
    p95_ms: float | None = None
    round_means_ms: list[float] = field(default_factory=list)
    phases_mean_ms: dict[str, float] = field(default_factory=dict)
    first_trial_ms: float | None = None
    warmup_s: float | None = None
    rss_start_mib: float | None = None
    rss_loaded_mib: float | None = None
    rss_warm_mib: float | None = None
    rss_mib: float | None = None
    peak_rss_mib: float | None = None
    statements: dict[str, Any] = field(default_factory=dict)
    capped: bool = False
    skipped: str | None = None
    failure: str | None = None


def with_reconnects(what: str, call: Callable[[], T], attempts: int = 6) -> T:
    """``call()``, tried again (after a pause) when the server drops the connection, e.g. as it restarts."""
    for attempt in range(attempts):
        try:
            return call()
        except sa.exc.DBAPIError as e:
            transient = e.connection_invalidated or isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError))
            if not transient or attempt == attempts - 1:
                raise
            logging.getLogger(__name__).warning("%s: lost the server (%s); trying again", what, e.orig)
            time.sleep(5.0)
    raise AssertionError("unreachable")


def prepare_study(lib: str, url: str, target: int, row: GrowthRow) -> None:
    """Create the study, run its TEMPLATES real trials, and fill it to ``target`` trials (into ``row``)."""
    study = create_study(lib, url, "growth")
    for _ in range(TEMPLATES):
        run_trial(study)
    close_study(lib, study)
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        row.fill_added, row.fill_s = with_reconnects("fill", lambda: fill_study(lib, engine, "growth", target))
    finally:
        engine.dispose()


class Driver:
    """The parent's handle on one growth driver process."""

    def __init__(self, row: GrowthRow, url: str, args: argparse.Namespace) -> None:
        """Start the driver process of ``row``'s study (it loads the study and warms up on its own)."""
        ctx = mp.get_context("spawn")
        self.row = row
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=growth_driver, daemon=True,
                                args=(row.lib, url, "growth", args.warmup, args.cap_seconds, child))
        self.proc.start()
        child.close()
        self.phases: dict[str, list[float]] = {"ask": [], "suggest": [], "tell": []}

    def receive(self, timeout: float) -> Any:
        """The driver's next answer; RuntimeError if it failed, died or stayed silent."""
        try:
            if not self.conn.poll(timeout):
                raise RuntimeError(f"no answer from the driver within {timeout:.0f} s")
            kind, payload = self.conn.recv()
        except (EOFError, OSError) as e:
            raise RuntimeError(f"the driver process died ({type(e).__name__})") from None
        if kind == "error":
            raise RuntimeError(payload)
        return payload

    def call(self, command: str, arg: Any, timeout: float) -> Any:
        """Send a command and wait for its answer."""
        self.conn.send((command, arg))
        return self.receive(timeout)

    def close(self) -> None:
        """Stop the process (politely if it still answers)."""
        if self.proc.is_alive() and self.row.failure is None:
            try:
                self.call("stop", None, 60.0)
            except RuntimeError:
                pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()
        self.conn.close()


def summarize_growth(driver: Driver) -> None:
    """Mean, median and p95 ms per trial, and the phase means, from what the driver timed."""
    row, phases = driver.row, driver.phases
    totals = [sum(x) for x in zip(*phases.values(), strict=True)]
    row.timed = len(totals)
    row.capped = row.capped or row.timed < row.requested
    if totals:
        ordered = sorted(totals)
        row.mean_ms = 1e3 * statistics.fmean(totals)
        row.median_ms = 1e3 * statistics.median(totals)
        row.p95_ms = 1e3 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        row.phases_mean_ms = {p: 1e3 * statistics.fmean(v) for p, v in phases.items()}


def measure_growth(args: argparse.Namespace, admin: sa.Engine, console: Console) -> list[GrowthRow]:
    """One study per library and size, filled, then measured in interleaved rounds.

    Every study gets its own schema and its own driver process, which stays alive across the rounds.
    Each round runs ``timed / rounds`` trials in every study, the order of the studies reversed from
    one round to the next: a machine that gets busier or quieter during the run then weighs on every
    size and both libraries alike, rather than on whichever came last.
    """
    rows: list[GrowthRow] = []
    drivers: list[Driver] = []
    with ExitStack() as stack:
        stopped: dict[str, str] = {}
        for size in args.sizes:
            for lib in LIBS:
                row = GrowthRow(lib, size, args.timed)
                rows.append(row)
                if lib == "optuna" and size > args.optuna_max_size:
                    row.skipped = f"above --optuna-max-size {args.optuna_max_size:,d}"
                elif lib in stopped:
                    row.skipped = stopped[lib]
                if row.skipped:
                    console.log(f"growth {lib:8s} N={size:>7,d}: skipped ({row.skipped})")
                    continue
                url = stack.enter_context(fresh_schema(admin, args.pg_url, f"growth_{lib}_{size}"))
                try:
                    prepare_study(lib, url, size - args.warmup, row)
                except Exception:  # noqa: BLE001 - one failed row must not lose the others
                    row.failure = traceback.format_exc()
                    stopped[lib] = f"the N={size:,d} study could not be prepared"
                    console.log(f"growth {lib:8s} N={size:>7,d}: FAILED to prepare the study\n{row.failure}")
                    continue
                driver = Driver(row, url, args)
                stack.callback(driver.close)
                try:  # one driver warms up at a time: loading a large study is measured on a quiet machine
                    ready = driver.receive(args.cap_seconds + 120.0)
                except RuntimeError as e:
                    row.failure = str(e)
                    stopped[lib] = f"the N={size:,d} driver failed"
                    console.log(f"growth {lib:8s} N={size:>7,d}: FAILED to start\n{row.failure}")
                    continue
                for key in ("first_trial_ms", "warmup_s", "rss_start_mib", "rss_loaded_mib", "rss_warm_mib"):
                    setattr(row, key, ready[key])
                if ready["warmup_capped"]:
                    row.capped = True
                    stopped[lib] = f"its N={size:,d} warm-up hit the {args.cap_seconds:g} s cap"
                drivers.append(driver)
                console.log(
                    f"growth {lib:8s} N={size:>7,d}: filled {row.fill_added:,d} in {row.fill_s:.1f} s; first "
                    f"trial {row.first_trial_ms:,.0f} ms, RSS {row.rss_warm_mib:,.0f} MiB after the warm-up"
                )
        per_round = [len(part) for part in (range(args.timed)[i::args.rounds] for i in range(args.rounds))]
        for rnd, n in enumerate(per_round):
            order = drivers if rnd % 2 == 0 else drivers[::-1]
            for driver in order:
                row = driver.row
                if row.failure or n == 0:
                    continue
                seconds = args.cap_seconds / args.rounds
                try:
                    ran = driver.call("run", (n, seconds), seconds + 120.0)
                except RuntimeError as e:
                    row.failure = str(e)
                    console.log(f"growth {row.lib:8s} N={row.size:>7,d}: FAILED in round {rnd + 1}\n{row.failure}")
                    continue
                for phase, values in ran["phases"].items():
                    driver.phases[phase].extend(values)
                timed = [sum(x) for x in zip(*ran["phases"].values(), strict=True)]
                row.round_means_ms.append(1e3 * statistics.fmean(timed) if timed else float("nan"))
                row.rss_mib, row.peak_rss_mib = ran["memory"]["rss"], ran["memory"]["peak"]
            console.log(f"growth round {rnd + 1}/{args.rounds}: " + ", ".join(
                f"{d.row.lib} N={d.row.size:,d} {d.row.round_means_ms[-1]:.2f} ms"
                for d in drivers if d.row.round_means_ms and not d.row.failure
            ))
        for driver in drivers:
            summarize_growth(driver)
            if driver.row.failure or args.statement_trials == 0:
                continue
            try:
                driver.row.statements = driver.call(
                    "statements", args.statement_trials, args.cap_seconds + 120.0
                )
            except RuntimeError as e:
                console.log(f"growth {driver.row.lib} N={driver.row.size:,d}: statement pass failed\n{e}")
    return rows


# -- report -----------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ",.1f") -> str:
    """A number for a table cell, '-' when missing."""
    return "-" if value is None else format(value, spec)


def throughput_tables(runs: list[ThroughputRun]) -> tuple[Table, Table, list[dict[str, Any]]]:
    """The throughput table (with ratios), the checks table, and the pairs as plain data."""
    rates = Table(title="Throughput, trials/s: ask + 4 suggests + tell, processes sharing one study "
                        "(higher is better; ratio = tunelab/optuna)")
    for col in ("storage", "processes x trials", "tunelab trials/s", "optuna trials/s", "ratio",
                "tunelab wall s", "optuna wall s", "tunelab start-up s", "optuna start-up s"):
        rates.add_column(col, justify="left" if col == "storage" else "right")
    checks = Table(title="Throughput checks: the study after the run")
    for col in ("storage", "library", "planned", "done", "COMPLETE", "other states", "duplicate numbers",
                "numbers 0..n-1", "errors", "retries", "verdict"):
        checks.add_column(col, justify="left" if col in ("storage", "library", "verdict") else "right")
    pairs: list[dict[str, Any]] = []
    by_key = {(r.backend, r.lib): r for r in runs}
    for backend in dict.fromkeys(r.backend for r in runs):
        t, o = by_key[(backend, "tunelab")], by_key[(backend, "optuna")]
        r = ratio(t.trials_per_s, o.trials_per_s)
        pairs.append({
            "storage": backend, "processes": t.processes, "trials_per_process": t.per_process,
            "tunelab_trials_per_s": t.trials_per_s, "optuna_trials_per_s": o.trials_per_s, "ratio": r,
            "tunelab_capped": t.capped, "optuna_capped": o.capped,
            "tunelab_verified": t.verified, "optuna_verified": o.verified,
        })
        rates.add_row(
            backend, f"{t.processes} x {t.per_process:,d}",
            *(fmt(x.trials_per_s) + (" (capped)" if x.capped else "") for x in (t, o)),
            fmt_ratio(r, r is not None and r >= 1.0),
            *(fmt(x.wall_s, ".2f") for x in (t, o)), *(fmt(x.startup_s, ".1f") for x in (t, o)),
        )
        for x in (t, o):
            other = {k: v for k, v in x.states.items() if k != "COMPLETE"}
            verdict = "[green]ok[/]" if x.verified else "[red]FAILED[/]"
            if x.capped:
                verdict += f" (capped at {x.done:,d} of {x.planned:,d})"
            checks.add_row(
                backend, x.lib, f"{x.planned:,d}", f"{x.done:,d}", fmt(x.complete, ",d"),
                ", ".join(f"{k} {v}" for k, v in other.items()) or "none",
                fmt(x.duplicate_numbers, ",d"), {True: "yes", False: "NO", None: "-"}[x.numbers_contiguous],
                f"{x.errors:,d}", f"{x.retries:,d}", verdict,
            )
    return rates, checks, pairs


def paired_growth(row: GrowthRow, first: GrowthRow | None) -> float | None:
    """The median over rounds of (this row's round mean / the first size's mean in the same round).

    Both means of a round were taken minutes apart at most, so a machine whose load drifts during
    the run moves both; the median over the rounds then drops a round that a burst of load hit.
    """
    if first is None:
        return None
    pairs = zip(row.round_means_ms, first.round_means_ms, strict=False)
    ratios = [a / b for a, b in pairs if b > 0 and not math.isnan(a)]
    return statistics.median(ratios) if ratios else None


def growth_tables(rows: list[GrowthRow]) -> tuple[Table, Table, list[dict[str, Any]]]:
    """The per-trial cost table (with ratios), the memory table, and the pairs as plain data."""
    cost = Table(title="PostgreSQL, ms per ask + 4 suggests + tell with the study already holding N trials "
                       "(lower is better; ratio = tunelab/optuna; 'vs first' = mean / mean at the smallest N, "
                       "and the median over rounds of the same ratio within each round)")
    for col in ("N", "tunelab mean", "tunelab median", "tunelab p95", "tunelab vs first",
                "optuna mean", "optuna median", "optuna vs first", "ratio mean", "ratio median"):
        cost.add_column(col, justify="right")
    memory = Table(title="The driver process of each study: start-up and memory (RSS after load_study, after "
                         "the warm-up, after the timed trials)")
    for col in ("N", "library", "timed trials", "fill", "first trial ms", "warm-up s", "RSS loaded MiB",
                "RSS warm MiB", "RSS after MiB", "peak RSS MiB", "ask / suggest / tell ms"):
        memory.add_column(col, justify="left" if col == "library" else "right")
    by_key = {(r.lib, r.size): r for r in rows}
    sizes = sorted({r.size for r in rows})
    firsts = {lib: next((by_key[(lib, s)] for s in sizes if by_key[(lib, s)].mean_ms), None) for lib in LIBS}
    pairs: list[dict[str, Any]] = []
    for size in sizes:
        t, o = by_key[("tunelab", size)], by_key[("optuna", size)]
        growth = {lib: ratio(by_key[(lib, size)].mean_ms, getattr(firsts[lib], "mean_ms", None)) for lib in LIBS}
        paired = {lib: paired_growth(by_key[(lib, size)], firsts[lib]) for lib in LIBS}
        r_mean, r_median = ratio(t.mean_ms, o.mean_ms), ratio(t.median_ms, o.median_ms)
        pairs.append({
            "size": size, "tunelab_mean_ms": t.mean_ms, "tunelab_median_ms": t.median_ms,
            "tunelab_p95_ms": t.p95_ms, "optuna_mean_ms": o.mean_ms, "optuna_median_ms": o.median_ms,
            "optuna_p95_ms": o.p95_ms, "ratio_mean": r_mean, "ratio_median": r_median,
            "tunelab_vs_first": growth["tunelab"], "optuna_vs_first": growth["optuna"],
            "tunelab_vs_first_paired": paired["tunelab"], "optuna_vs_first_paired": paired["optuna"],
            "tunelab_rss_mib": t.rss_mib, "optuna_rss_mib": o.rss_mib,
            "optuna_skipped": o.skipped, "tunelab_skipped": t.skipped,
        })
        o_mean = f"skipped: {o.skipped}" if o.skipped else fmt(o.mean_ms, ".2f") + (" (capped)" if o.capped else "")
        cost.add_row(
            f"{size:,d}", fmt(t.mean_ms, ".2f"), fmt(t.median_ms, ".2f"), fmt(t.p95_ms, ".2f"),
            f"{fmt(growth['tunelab'], '.2f')}x / {fmt(paired['tunelab'], '.2f')}x", o_mean, fmt(o.median_ms, ".2f"),
            f"{fmt(growth['optuna'], '.2f')}x / {fmt(paired['optuna'], '.2f')}x",
            fmt_ratio(r_mean, r_mean is not None and r_mean <= 1.0),
            fmt_ratio(r_median, r_median is not None and r_median <= 1.0),
        )
        for x in (t, o):
            if x.skipped or x.failure:
                memory.add_row(f"{size:,d}", x.lib, "skipped" if x.skipped else "FAILED", *["-"] * 8)
                continue
            ph = x.phases_mean_ms
            memory.add_row(
                f"{size:,d}", x.lib, f"{x.timed:,d}" + (" (capped)" if x.capped else ""),
                f"+{x.fill_added:,d} in {x.fill_s:.1f} s", fmt(x.first_trial_ms, ",.0f"), fmt(x.warmup_s, ".1f"),
                fmt(x.rss_loaded_mib, ",.0f"), fmt(x.rss_warm_mib, ",.0f"), fmt(x.rss_mib, ",.0f"),
                fmt(x.peak_rss_mib, ",.0f"),
                " / ".join(fmt(ph.get(p), ".2f") for p in ("ask", "suggest", "tell")),
            )
    return cost, memory, pairs


def statements_table(rows: list[GrowthRow], lib: str, top: int = 6) -> Table | None:
    """ms per trial spent in each of the library's costliest SQL statements, at each N."""
    measured = [r for r in rows if r.lib == lib and r.statements.get("statements")]
    if not measured:
        return None
    last = measured[-1].statements["statements"]
    keys = [s["sql"] for s in last[:top]]
    table = Table(title=f"{lib}: ms per trial in each SQL statement, as the driver sees it (statement pass of "
                        f"{measured[-1].statements['trials']} trials after the timed ones)")
    table.add_column("statement", justify="left", max_width=90, overflow="ellipsis", no_wrap=True)
    table.add_column("per trial", justify="right")
    for r in measured:
        table.add_column(f"N={r.size:,d}", justify="right")
    for sql in keys:
        cells = []
        for r in measured:
            found = next((s for s in r.statements["statements"] if s["sql"] == sql), None)
            cells.append(fmt(found["ms_per_trial"], ".3f") if found else "-")
        per_trial = next(s["per_trial"] for s in last if s["sql"] == sql)
        table.add_row(sql, f"{per_trial:g}", *cells)
    table.add_row("[dim]all statements[/]", "", *(fmt(r.statements["sql_ms_per_trial"], ".3f") for r in measured))
    table.add_row("[dim]whole trial (same pass)[/]", "", *(fmt(r.statements["ms_per_trial"], ".3f") for r in measured))
    return table


def growth_verdict(rows: list[GrowthRow], lib: str) -> dict[str, Any]:
    """Whether the library's per-trial cost grows from the smallest to the largest measured N.

    It grows when the mean, the median and the paired ratio (see ``paired_growth``) all exceed
    GROWTH_FLAT: a burst of load on a shared machine can lift one of them, rarely all three.
    """
    measured = [r for r in rows if r.lib == lib and r.mean_ms is not None and r.median_ms is not None]
    if len(measured) < 2:
        return {"lib": lib, "grows": None, "text": f"{lib}: fewer than two sizes measured"}
    first, last = measured[0], measured[-1]
    mean_x, median_x = last.mean_ms / first.mean_ms, last.median_ms / first.median_ms  # type: ignore[operator]
    paired_x = paired_growth(last, first)
    grows = min(mean_x, median_x, paired_x if paired_x is not None else mean_x) > GROWTH_FLAT
    text = (
        f"{lib}: per-trial cost at N={last.size:,d} is {mean_x:.2f}x (mean) / {median_x:.2f}x (median) / "
        f"{fmt(paired_x, '.2f')}x (paired by round) its cost at N={first.size:,d}: "
        + ("GROWS with the study" if grows else f"flat (growth means all three above {GROWTH_FLAT}x)")
    )
    return {"lib": lib, "first": first.size, "last": last.size, "mean_x": mean_x, "median_x": median_x,
            "paired_x": paired_x, "grows": grows, "text": text}


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: PostgreSQL 4 x 25, SQLite 2 x 50, sizes 200,2000 with 50 timed trials "
                        "(output storage-quick.json)")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL,
                   help="PostgreSQL URL; every run gets its own schema, dropped afterwards (default %(default)s, "
                        "or $TUNELAB_BENCH_POSTGRES_URL)")
    p.add_argument("--pg-processes", type=int, help="PostgreSQL throughput processes (default 8)")
    p.add_argument("--pg-trials", type=int, help="trials per PostgreSQL throughput process (default 250)")
    p.add_argument("--sqlite-processes", type=int, help="SQLite throughput processes (default 2)")
    p.add_argument("--sqlite-trials", type=int, help="trials per SQLite throughput process (default 1000)")
    p.add_argument("--sizes", type=int_list, help="study sizes of the growth rows (default 1000,10000,100000)")
    p.add_argument("--timed", type=int, help="timed trials per growth row (default 500)")
    p.add_argument("--warmup", type=int, help="untimed trials before them, in the same process (default 20)")
    p.add_argument("--rounds", type=int,
                   help="the timed trials of every growth row are run in this many interleaved rounds (default 5)")
    p.add_argument("--statement-trials", type=int,
                   help="trials of the per-statement pass after the timed ones, 0 for none (default 100)")
    p.add_argument("--optuna-max-size", type=int, default=100_000,
                   help="largest study size measured for Optuna (default %(default)s)")
    p.add_argument("--cap-seconds", type=float, default=240.0,
                   help="a throughput run, or a growth row's warm-up or timed loop, stops starting trials "
                        "after this long and is reported as capped (default %(default)s)")
    p.add_argument("--skip-throughput", action="store_true", help="measure the growth rows only")
    p.add_argument("--skip-growth", action="store_true", help="measure the throughput only")
    p.add_argument("--output", type=Path, help="JSON results file (default benchmarks/results/storage.json)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.pg_processes, args.pg_trials, args.sqlite_processes, args.sqlite_trials, args.timed,
           args.warmup, args.rounds) < 1 or args.statement_trials < 0:
        p.error("process and trial counts must be at least 1 (--statement-trials at least 0)")
    if min(args.sizes) < TEMPLATES + args.warmup:
        p.error(f"every size must be at least {TEMPLATES + args.warmup} (the templates and the warm-up)")
    args.sizes = sorted(set(args.sizes))
    if args.output is None:
        args.output = RESULTS_DIR / ("storage-quick.json" if args.quick else "storage.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and save the JSON results."""
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=None if sys.stdout.isatty() else 170, log_path=False)
    try:
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        pg = postgres_info(admin)
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means the same
        console.print(f"[red]PostgreSQL at {args.pg_url} is not usable: {type(e).__name__}: {e}[/]\n"
                      "start the server or pass --pg-url; the driver comes with `make bench-storage` "
                      "(pip install 'psycopg[binary]' into .venv-bench)")
        return 2
    info = {**machine_info(), "loadavg_start": os.getloadavg(), "postgres": pg}
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    started = time.perf_counter()
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs = [] if args.skip_throughput else measure_throughput(args, admin, console)
    rows = [] if args.skip_growth else measure_growth(args, admin, console)
    info["loadavg_end"] = os.getloadavg()
    info["postgres_other_sessions_end"] = postgres_info(admin)["other_sessions"]
    admin.dispose()

    notes: list[str] = []
    t_pairs: list[dict[str, Any]] = []
    if runs:
        rates, checks, t_pairs = throughput_tables(runs)
        console.print(rates)
        console.print(checks)
        for r in runs:
            if r.capped:
                notes.append(f"{r.lib} {r.backend} throughput was CAPPED at {args.cap_seconds:g} s: "
                             f"{r.done:,d} of {r.planned:,d} trials; its rate is over those")
    g_pairs: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    if rows:
        cost, memory, g_pairs = growth_tables(rows)
        console.print(cost)
        console.print(memory)
        for lib in LIBS:
            table = statements_table(rows, lib)
            if table is not None:
                console.print(table)
        verdicts = [growth_verdict(rows, lib) for lib in LIBS]
        notes.extend(v["text"] for v in verdicts)
        notes.append(
            f"fill: each study starts with {TEMPLATES} trials made by the library's own ask/tell; the rest are "
            "copies of them (trials and their child rows) made by INSERT ... SELECT over generate_series, "
            "numbered in order, so every row has the format the library writes; tunelab's studies.next_number "
            "is moved past them. No ANALYZE is run (the server's autovacuum is "
            f"{pg.get('autovacuum')}). Each study has its own schema and driver process; timing starts after "
            f"{args.warmup} warm-up trials, and the timed trials run in {args.rounds} rounds that interleave "
            "the studies (order reversed every round)."
        )
        for g in rows:
            if g.skipped:
                notes.append(f"{g.lib} at N={g.size:,d} was SKIPPED: {g.skipped}")
            elif g.capped:
                notes.append(f"{g.lib} at N={g.size:,d} was CAPPED: {g.timed} of {g.requested} timed trials "
                             f"in {args.cap_seconds:g} s")
    busiest = max(info["loadavg_start"][0], info["loadavg_end"][0])
    if busiest > 1.0:
        notes.append(f"the machine was busy (1-minute load average up to {busiest:.1f} at the start or the end, "
                     f"on {os.cpu_count()} cores): expect noisier numbers, and rerun on a quiet machine")
    if pg.get("other_sessions") or info["postgres_other_sessions_end"]:
        notes.append(f"the PostgreSQL server had other client sessions ({pg.get('other_sessions')} at the start, "
                     f"{info['postgres_other_sessions_end']} at the end)")
    for note in notes:
        console.print("note: " + note)
    results = {
        "benchmark": "storage",
        "started": began,
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "settings": {
            "quick": args.quick, "pg_url": sa.engine.make_url(args.pg_url).render_as_string(hide_password=True),
            "pg_processes": args.pg_processes, "pg_trials_per_process": args.pg_trials,
            "sqlite_processes": args.sqlite_processes, "sqlite_trials_per_process": args.sqlite_trials,
            "sizes": args.sizes, "timed": args.timed, "warmup": args.warmup,
            "statement_trials": args.statement_trials, "rounds": args.rounds, "optuna_max_size": args.optuna_max_size,
            "cap_seconds": args.cap_seconds, "templates": TEMPLATES, "seed": SEED,
            "objective": "suggest_float(log), suggest_float, suggest_int, suggest_categorical(3 choices)",
            "measured": "study.ask() + the four suggestions + study.tell()",
            "start_method": "spawn",
            "samplers": {"tunelab": "tunelab.RandomSampler()", "optuna": "optuna.samplers.RandomSampler"},
        },
        "throughput": t_pairs,
        "growth": g_pairs,
        "growth_verdicts": verdicts,
        "notes": notes,
        "raw": {"throughput": [asdict(r) for r in runs], "growth": [asdict(r) for r in rows]},
    }
    save_json(args.output, results)
    console.print(f"saved {args.output} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
