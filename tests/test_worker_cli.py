"""``tunelab worker``: real worker processes (the console script) joining real studies,
on SQLite files and on PostgreSQL, and every way starting one can go wrong."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tunelab
from tunelab.distributions import Float
from tunelab.records import TrialState

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent
TUNELAB = Path(sys.executable).parent / "tunelab"
SUMMARY = re.compile(
    r"^(done|interrupted): this worker ran (\d+) trials \((\d+) complete, (\d+) failed, (\d+) pruned\)", re.M
)


def start(
    *args: str, cwd: Path, env: dict[str, str] | None = None, pythonpath: bool = True
) -> subprocess.Popen[str]:
    """``tunelab worker ARGS`` in its own process group (like a terminal job)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TUNELAB_STORAGE")}
    full_env.update(OMP_NUM_THREADS="1", NO_COLOR="1", **(env or {}))
    if pythonpath:  # the tunelab under test too (a worktree's, not the one installed in editable mode)
        full_env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(Path(tunelab.__file__).parents[1])])
    return subprocess.Popen(
        [str(TUNELAB), "worker", *args, "--no-progress"], cwd=cwd, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"worker still running after {timeout}s\n{out}\n{err}") from None
    return proc.returncode, out, err


def summary(out: str) -> tuple[str, int, int, int, int]:
    match = SUMMARY.search(out)
    assert match, out
    kind, *counts = match.groups()
    ran, complete, failed, pruned = map(int, counts)
    return kind, ran, complete, failed, pruned


def assert_exact(study: tunelab.Study, n: int) -> None:
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(n))
    assert collections.Counter(t.state for t in trials) == {TrialState.COMPLETE: n}


def wait_for(started: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not started():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the trials did not start: {finish(proc)}")
        time.sleep(0.05)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'w.db'}"


# -- running -------------------------------------------------------------------------------
def test_two_workers_on_one_sqlite_study_run_sixty_distinct_trials(tmp_path: Path, sqlite_url: str) -> None:
    tunelab.create_study(name="shared", storage=sqlite_url, seed=0)
    common = ["--study", "shared", "--storage", sqlite_url, "--objective", "objectives:quadratic", "--n-trials", "30"]
    procs = [
        # one imports through --path and runs a pool of 2 processes, the other through PYTHONPATH in-process
        start(*common, "--path", str(TESTS_DIR), "--n-workers", "2", cwd=tmp_path, pythonpath=False),
        start(*common, cwd=tmp_path),
    ]
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert summary(out) == ("done", 30, 30, 0, 0)
    study = tunelab.load_study("shared", sqlite_url)
    assert_exact(study, 60)
    best = study.best_trial
    # Each worker prints the best when it stops; the one that stops last has seen every trial.
    assert any(f"best value of study 'shared': {best.value:.6g} (trial {best.number})" in out for _, out, _ in results)
    values = {t.number: t.value for t in study.trials}
    for _, out, _ in results:
        printed = re.search(r"best value of study 'shared': (\S+) \(trial (\d+)\)", out)
        assert printed is not None and f"{values[int(printed.group(2))]:.6g}" == printed.group(1)


def test_a_worker_joins_a_postgresql_study(tmp_path: Path, pg_url: str) -> None:
    tunelab.create_study(name="pg", storage=pg_url, seed=3)
    code, out, err = finish(start(
        "--study", "pg", "--storage", pg_url, "--objective", "objectives:quadratic",
        "--n-trials", "8", "--n-workers", "2", cwd=tmp_path,
    ))
    assert code == 0, err
    assert summary(out) == ("done", 8, 8, 0, 0)
    assert "study 'pg' (minimize, AutoSampler)" in out
    assert_exact(tunelab.load_study("pg", pg_url), 8)


def test_the_worker_uses_the_stored_sampler_and_stops_when_the_grid_is_done(tmp_path: Path, sqlite_url: str) -> None:
    space = {"x": Float(-5, 5), "lr": Float(1e-5, 1e-1, log=True)}
    tunelab.create_study(name="grid", storage=sqlite_url, seed=0, sampler=tunelab.GridSampler(space, n_points=3))
    code, out, err = finish(start(
        "--study", "grid", "--storage", sqlite_url, "--objective", "objectives:quadratic", cwd=tmp_path,
    ))  # no --n-trials: it would run until Ctrl-C, but the grid has 9 cells
    assert code == 0, err
    assert "GridSampler" in out and "until Ctrl-C" in out
    assert summary(out) == ("done", 9, 9, 0, 0)
    study = tunelab.load_study("grid", sqlite_url)
    assert_exact(study, 9)
    assert len({(t.params["x"], t.params["lr"]) for t in study.trials}) == 9


def test_timeout_stops_a_worker_without_n_trials(tmp_path: Path, sqlite_url: str) -> None:
    tunelab.create_study(name="timed", storage=sqlite_url, seed=0)
    began = time.monotonic()
    code, out, err = finish(start(
        "--study", "timed", "--storage", sqlite_url, "--objective", "objectives:sleepy", "--timeout", "1.5",
        cwd=tmp_path, env={"TUNELAB_TEST_SLEEP": "0.3"},
    ))
    elapsed = time.monotonic() - began
    assert code == 0, err
    _, ran, complete, _, _ = summary(out)
    assert 1 <= ran == complete <= 6  # no trial starts after 1.5 s; each takes 0.3 s
    assert elapsed < 15
    assert_exact(tunelab.load_study("timed", sqlite_url), ran)


@pytest.mark.parametrize(
    ("signum", "n_workers"),
    [
        pytest.param(signal.SIGINT, 1, id="ctrl-c"),
        pytest.param(signal.SIGINT, 2, id="ctrl-c-two-processes"),
        pytest.param(signal.SIGTERM, 1, id="sigterm"),
    ],
)
def test_ctrl_c_records_the_running_trials_and_exits_130(
    tmp_path: Path, sqlite_url: str, signum: int, n_workers: int
) -> None:
    tunelab.create_study(name="long", storage=sqlite_url, seed=0)
    marker = tmp_path / "sleeping"
    proc = start(
        "--study", "long", "--storage", sqlite_url, "--objective", "objectives:sleepy", "--n-workers", str(n_workers),
        cwd=tmp_path, env={"TUNELAB_TEST_SLEEP": "60", "TUNELAB_TEST_MARKER": str(marker)},
    )
    # Signal only once an objective sleeps and every worker process runs a trial: a signal that
    # lands while a trial starts (its heartbeat thread, the first import of numpy.random) or
    # while a spawned process boots is not handled cleanly by the library yet.
    study = tunelab.load_study("long", sqlite_url)
    wait_for(lambda: marker.exists() and len(study.get_trials([TrialState.RUNNING])) == n_workers, proc)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    else:
        os.kill(proc.pid, signal.SIGTERM)  # kill, docker stop, a batch scheduler: the worker only
    code, out, err = finish(proc, timeout=30)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert summary(out) == ("interrupted", 0, 0, 0, 0)
    trials = tunelab.load_study("long", sqlite_url).trials
    assert trials
    assert all(t.state == TrialState.FAIL and (t.error or "").startswith("interrupted") for t in trials), [
        (t.number, t.state.value, (t.error or "")[-300:]) for t in trials]


def test_a_vanished_worker_s_trial_is_failed_and_requeued_by_another(tmp_path: Path, sqlite_url: str) -> None:
    tunelab.create_study(name="lost", storage=sqlite_url, seed=0)
    marker = tmp_path / "started"
    common = ["--study", "lost", "--storage", sqlite_url, "--objective", "objectives:sleepy_reporting",
              "--heartbeat-interval", "0.5", "--grace-period", "2"]
    doomed = start(*common, cwd=tmp_path, env={"TUNELAB_TEST_SLEEP": "60", "TUNELAB_TEST_MARKER": str(marker)})
    wait_for(marker.exists, doomed)
    os.killpg(doomed.pid, signal.SIGKILL)  # the host is gone: nothing records its trial
    finish(doomed)
    code, out, err = finish(start(
        *common, "--requeue-lost-trials", "--timeout", "4", cwd=tmp_path, env={"TUNELAB_TEST_SLEEP": "0.2"}
    ))
    assert code == 0, err
    _, ran, complete, _, _ = summary(out)
    assert ran == complete >= 1
    trials = tunelab.load_study("lost", sqlite_url).trials
    assert trials[0].state == TrialState.FAIL and "heartbeat lost" in (trials[0].error or "")
    retry = next(t for t in trials if t.system_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params["x"] == trials[0].params["x"]
    assert all(t.state == TrialState.COMPLETE for t in trials[1:])


# -- errors before any trial ---------------------------------------------------------------
def test_each_bad_objective_spec_is_one_error_line_before_any_trial(tmp_path: Path, sqlite_url: str) -> None:
    tunelab.create_study(name="s", storage=sqlite_url, seed=0)
    (tmp_path / "local_module.py").write_text(textwrap.dedent("""
        THRESHOLD = 3

        def objective(trial):
            return 0.0

        def two(trial, data):
            return 0.0
    """))
    (tmp_path / "broken_module.py").write_text("import math\n\nLIMIT = 1 / 0\n")
    cases = {
        "objectives": "is not MODULE:FUNCTION",
        "objectives:": "is not MODULE:FUNCTION",
        ":quadratic": "is not MODULE:FUNCTION",
        "no_such_module:objective": "no module named 'no_such_module'",
        "objectives:nope": "has no attribute 'nope'; functions defined there: chaotic",
        "local_module:THRESHOLD": "is a int, not callable",  # found in the current directory
        "local_module:objective.missing": "has no attribute 'objective.missing'",
        "broken_module:objective": f"raised ZeroDivisionError: division by zero (at {tmp_path / 'broken_module.py'}:3)",
        "tests/objectives.py:quadratic": "write --objective objectives:quadratic --path tests",
        "local_module:two": "two(trial, data) cannot be called with the trial alone",
    }
    procs = {
        spec: start("--study", "s", "--storage", sqlite_url, "--objective", spec, cwd=tmp_path) for spec in cases
    }
    for spec, needle in cases.items():
        code, out, err = finish(procs[spec])
        assert code == 1, (spec, out, err)
        line = err.strip()
        assert line.startswith(f"error: --objective {spec!r}") and "\n" not in line, (spec, err)
        assert needle in line, (spec, line)
        assert out == ""
    assert tunelab.load_study("s", sqlite_url).trials == []


def test_a_bad_number_of_seconds_names_its_option_before_the_header(tmp_path: Path, sqlite_url: str) -> None:
    # was the header "stopping after ... or -5s", then "error: timeout must be ..." (optimize's Python name)
    tunelab.create_study(name="s", storage=sqlite_url, seed=0)
    procs = {
        option: start("--study", "s", "--storage", sqlite_url, "--objective", "objectives:quadratic", option, value,
                      cwd=tmp_path)
        for option, value in (("--timeout", "-5"), ("--trial-timeout", "0"))
    }
    for option, proc in procs.items():
        code, out, err = finish(proc)
        assert code == 2, (option, out, err)
        assert f"Invalid value for '{option}': must be a positive number" in err, err
        assert out == ""  # no header: refused before the study was read
    assert tunelab.load_study("s", sqlite_url).trials == []


def test_a_missing_study_or_database_is_one_error_line(tmp_path: Path, sqlite_url: str) -> None:
    tunelab.create_study(name="here", storage=sqlite_url, seed=0)
    missing_db = tmp_path / "missing.db"
    procs = [
        start("--study", "nope", "--storage", sqlite_url, "--objective", "objectives:quadratic", cwd=tmp_path),
        start("--study", "here", "--storage", f"sqlite:///{missing_db}", "--objective", "objectives:quadratic",
              cwd=tmp_path),
    ]
    for proc, needle in zip(procs, ["no study named 'nope'", "no database file"], strict=True):
        code, out, err = finish(proc)
        assert code == 1, (out, err)
        line = err.strip()
        assert line.startswith("error: ") and "\n" not in line and needle in line, err
    assert not missing_db.exists()
    assert tunelab.load_study("here", sqlite_url).trials == []


def test_sys_exit_in_the_objective_exits_with_its_code_with_two_workers_as_with_one(
    tmp_path: Path, sqlite_url: str
) -> None:
    """With --n-workers 2 it printed the worker's traceback as a RuntimeError and exited 1."""
    results = []
    for n_workers in (1, 2):
        meet = {"TUNELAB_TEST_MEET": str(tmp_path)} if n_workers == 2 else {}  # trial 1 runs when trial 0 exits
        tunelab.create_study(name=f"exit{n_workers}", storage=sqlite_url, seed=0)
        proc = start(
            "--study", f"exit{n_workers}", "--storage", sqlite_url, "--objective",
            "objectives:raises_base_exception_on_first", "--n-trials", "4", "--n-workers", str(n_workers),
            cwd=tmp_path, env={"TUNELAB_TEST_RAISE": "SystemExit", **meet},
        )
        code, _, err = finish(proc)
        results.append((code, err))
        trials = tunelab.load_study(f"exit{n_workers}", sqlite_url).trials
        assert trials[0].state == TrialState.FAIL and trials[0].error == "interrupted: SystemExit: 2"
        assert all(t.state == TrialState.FAIL for t in trials), [(t.number, t.state, t.error) for t in trials]
    # No traceback: with two, only the other worker's trial, stopped, is said to have failed.
    assert results == [(2, ""), (2, "trial 1 failed: interrupted: KeyboardInterrupt: worker received signal SIGTERM\n")]
