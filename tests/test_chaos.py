"""Chaos: 1,000 trials over 4 workers with random faults injected, on SQLite and on PostgreSQL.

Faults (a fixed plan per trial number, tests/chaos_objectives.py): exceptions in the objective,
an attribute the storage cannot take (NaN), NaN, huge and string values, pruning, workers that
kill themselves (in the objective and while their parameters are planned), hung objectives
(trial_timeout), the driver killed with SIGKILL twice (a resume started at once, inside the grace
period), and on PostgreSQL every connection of the study terminated three times
(pg_terminate_backend); on SQLite a separate small database fills up (max_page_count), then resumes.

Invariants: exactly n_trials rows, numbered 0..n-1, all COMPLETE, PRUNED or FAIL; every trial
a kill left RUNNING ends within the grace period plus a few seconds; every trial ends as its fault
says unless a driver kill interrupted it; no finished trial lost a reported point.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import tunelab
from chaos_objectives import FAULTS, SEED, STEPS, ChaosSampler, chaos_in_process, expected, fault_of
from tunelab.errors import StorageError
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import BaseStorage, SQLStorage

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent
N_TRIALS = 1000
WORKERS = 4
INTERVAL, GRACE = 0.5, 2.0
TRIAL_TIMEOUT = 3.0
DRIVER_KILLS = (0.3, 0.6)  # the driver is killed when these shares of the trials have finished
PG_TERMINATIONS = (0.15, 0.45, 0.8)  # ... and the study's PostgreSQL connections terminated
AFTER_KILL_LIMIT = GRACE + 8.0  # seconds within which a killed run's trials must have ended
DISRUPTED = ("interrupted", "heartbeat lost", "driver process died")

DRIVER = f"""
import sys
import tunelab
from chaos_objectives import ChaosSampler, chaos
if __name__ == "__main__":
    url, n = sys.argv[1], int(sys.argv[2])
    study = tunelab.load_study("chaos", url, sampler=ChaosSampler())
    study.optimize(chaos, n_trials=n, n_workers={WORKERS}, trial_timeout={TRIAL_TIMEOUT},
                   heartbeat_interval={INTERVAL}, grace_period={GRACE})
"""


def start_driver(url: str, n_trials: int, tmp_path: Path, index: int) -> subprocess.Popen[bytes]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    src = Path(tunelab.__file__).parent.parent
    with open(tmp_path / f"driver-{index}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, str(script), url, str(n_trials)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(src)]), "OMP_NUM_THREADS": "1"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def run_chaos(url: str, tmp_path: Path, terminate: Callable[[], int] | None = None) -> dict[str, Any]:
    """Run the study through its faults; return the figures."""
    study = tunelab.create_study(name="chaos", storage=url, seed=SEED, sampler=ChaosSampler())
    storage, study_id = study.storage, study.study_id
    figures: dict[str, Any] = {"driver SIGKILLs": 0, "connections terminated": 0, "after-kill seconds": []}
    kills, terminations = list(DRIVER_KILLS), list(PG_TERMINATIONS) if terminate is not None else []
    started = time.monotonic()
    drivers = [start_driver(url, N_TRIALS, tmp_path, 0)]
    while True:
        driver = drivers[-1]
        done = sum(1 for v in storage.get_trial_values(study_id) if v.state.is_finished)
        if terminate is not None and terminations and done >= terminations[0] * N_TRIALS:
            terminations.pop(0)
            figures["connections terminated"] += terminate()
        if kills and done >= kills[0] * N_TRIALS and driver.poll() is None:
            kills.pop(0)
            os.kill(driver.pid, signal.SIGKILL)
            killed = time.monotonic()
            driver.wait()
            figures["driver SIGKILLs"] += 1
            rows = storage.get_trials(study_id)
            running = {t.trial_id for t in rows if t.state == TrialState.RUNNING}
            # Resume at once, inside the grace period of the dead run's trials.
            drivers.append(start_driver(url, N_TRIALS - len(rows), tmp_path, len(drivers)))

            def ended(running: set[int] = running) -> bool:
                return not running & {t.trial_id for t in storage.get_trials(study_id, [TrialState.RUNNING])}

            wait_until(ended, AFTER_KILL_LIMIT + 30, "the killed run's trials to end")
            figures["after-kill seconds"].append(round(time.monotonic() - killed, 2))
            continue
        if driver.poll() is not None:
            break
        time.sleep(0.1)
    log = (tmp_path / f"driver-{len(drivers) - 1}.log").read_text(errors="replace")
    assert driver.returncode == 0, log[-5000:]
    assert not kills, "the run ended before every planned driver kill"
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures.update(check(storage, study_id, N_TRIALS))
    return figures


def check(storage: BaseStorage, study_id: int, n_trials: int, in_process: bool = False) -> dict[str, Any]:
    """Assert the invariants on a finished chaos study; return what it shows."""
    trials = storage.get_trials(study_id)
    assert [t.number for t in trials] == list(range(n_trials)), "every number once, nothing more"
    states = collections.Counter(t.state.value for t in trials)
    assert set(states) <= {"COMPLETE", "PRUNED", "FAIL"}, states
    points = collections.defaultdict(set)
    for p in storage.get_metric_at(study_id, "loss"):
        points[p.number].add(p.step)
    injected: collections.Counter[str] = collections.Counter()
    disrupted = 0
    kill_seconds = [0.0]
    for t in trials:
        fault = fault_of(t.number)
        if in_process and fault in ("sigkill", "sigkill_planning", "hang"):
            fault = "none"
        injected[fault] += 1
        if any(word in (t.error or "") for word in DISRUPTED):
            disrupted += 1  # a driver kill (or a lost connection's stale heartbeat) got it first
            continue
        state, text = expected(fault)
        assert (t.state.value, text in (t.error or "")) == (state, True), (t.number, fault, t.state, t.error)
        if t.state == TrialState.COMPLETE:
            assert points[t.number] == set(range(STEPS)), f"trial {t.number} lost points of its curve"
        if t.state == TrialState.PRUNED:
            assert points[t.number] == {0}, f"trial {t.number} lost its curve"
        if fault in ("sigkill", "sigkill_planning"):
            kill_seconds.append(_seconds(t))
    return {
        "rows": len(trials), "states": dict(states), "faults injected": {k: injected[k] for k in FAULTS},
        "normal": injected["none"], "interrupted by a driver kill": disrupted,
        "max seconds from start to FAIL of a self-killed worker's trial": round(max(kill_seconds), 2),
    }


def _seconds(t: FrozenTrial) -> float:
    assert t.datetime_start is not None and t.datetime_complete is not None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def report(name: str, figures: dict[str, Any]) -> None:
    lines = [f"chaos on {name}:"] + [f"  {k}: {v}" for k, v in figures.items()]
    print("\n".join(lines))  # shown with -s, and in the test's captured output


def test_chaos_on_sqlite(tmp_path: Path) -> None:
    figures = run_chaos(f"sqlite:///{tmp_path / 'chaos.db'}", tmp_path)
    figures["full disk"] = fill_up_then_resume(tmp_path)
    report("SQLite", figures)
    assert max(figures["after-kill seconds"]) < AFTER_KILL_LIMIT


def test_chaos_on_postgresql(pg_url: str, pg_admin: sa.Engine, tmp_path: Path) -> None:
    app = f"tunelab-chaos-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    url = sa.engine.make_url(pg_url).update_query_dict({"application_name": app}).render_as_string(
        hide_password=False
    )

    def terminate() -> int:
        """Drop every connection of this test's study (not the server's others)."""
        with pg_admin.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :app"
            ), {"app": app}).scalar_one())

    figures = run_chaos(url, tmp_path, terminate)
    report("PostgreSQL", figures)
    assert max(figures["after-kill seconds"]) < AFTER_KILL_LIMIT
    assert figures["connections terminated"] > 0


N_SMALL = 400


def fill_up_then_resume(tmp_path: Path) -> dict[str, Any]:
    """A small SQLite database fills up mid-run: optimize stops with StorageError; after room is
    made, a resume finishes the study with exact counts and nothing left RUNNING."""
    url = f"sqlite:///{tmp_path / 'small.db'}"
    storage = SQLStorage(url)
    study = tunelab.create_study(name="small", storage=storage, seed=SEED, sampler=tunelab.RandomSampler())
    with storage.engine.connect() as conn:
        limit = int(conn.execute(sa.text("PRAGMA page_count")).scalar_one()) + 12
    storage.engine.dispose()

    def small(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={limit}")

    sa.event.listen(storage.engine, "connect", small)
    settings: dict[str, Any] = {"heartbeat_interval": INTERVAL, "grace_period": GRACE}
    with pytest.raises(StorageError) as stopped:
        study.optimize(chaos_in_process, n_trials=N_SMALL, **settings)
    sa.event.remove(storage.engine, "connect", small)
    storage.engine.dispose()
    rows = study.trials
    left_running = sum(t.state == TrialState.RUNNING for t in rows)
    time.sleep(GRACE + INTERVAL if left_running else 0)  # its heartbeat stopped: the resume fails it
    resumed = tunelab.load_study("small", url, sampler=tunelab.RandomSampler())
    resumed.optimize(chaos_in_process, n_trials=N_SMALL - len(rows), **settings)
    figures = check(resumed.storage, resumed.study_id, N_SMALL, in_process=True)
    return {"trials before the disk was full": len(rows), "left RUNNING": left_running,
            "error": str(stopped.value)[:160], "rows": figures["rows"], "states": figures["states"]}
