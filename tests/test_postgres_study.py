"""Studies on a real PostgreSQL server: load, isolation and faults.

Uses the server of ``TUNELAB_TEST_POSTGRES_URL`` (default: 127.0.0.1:5432, database
``test``), one schema per test. Under ``CI=true`` an unreachable server fails the tests.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import tunelab
from objectives import cheap, slow_cheap
from tunelab.records import TrialState

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def run_loop(
    url: str, name: str, n_trials: int, objective: str = "cheap", ready: Path | None = None
) -> subprocess.Popen[bytes]:
    """A worker process; it creates the file ``ready``, if given, once it has opened the study."""
    signal_ready = f"open({str(ready)!r}, 'w').close()" if ready else ""
    code = textwrap.dedent(f"""
        import tunelab
        from objectives import {objective}
        study = tunelab.load_study({name!r}, {url!r})
        {signal_ready}
        study.optimize({objective}, n_trials={n_trials}, heartbeat_interval=0.5)
    """)
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def assert_exact(study: tunelab.Study, n: int) -> None:
    trials = study.trials
    assert len(trials) == n
    assert sorted(t.number for t in trials) == list(range(n))
    assert collections.Counter(t.state for t in trials) == {TrialState.COMPLETE: n}, [
        (t.number, t.state.value, t.error) for t in trials if t.state != TrialState.COMPLETE
    ]


def test_eight_processes_two_hundred_fifty_trials_each(url: str) -> None:
    # Random proposals: the load is on the storage (eight writers at once), not the default sampler's model,
    # which cost most of this test's three minutes on two cores
    tunelab.create_study(name="load", storage=url, seed=0, sampler=tunelab.RandomSampler())
    procs = [run_loop(url, "load", 250) for _ in range(8)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, b"\n".join(errors).decode()[-3000:]
    assert_exact(tunelab.load_study("load", url), 2000)


def test_two_studies_in_one_database_never_see_each_other(url: str) -> None:
    a = tunelab.create_study(name="a", storage=url, seed=0)
    b = tunelab.create_study(name="b", storage=url, seed=1)
    a.optimize(cheap, n_trials=7)
    b.optimize(cheap, n_trials=5)
    assert [t.number for t in a.trials] == list(range(7))
    assert [t.number for t in b.trials] == list(range(5))
    tunelab.delete_study("a", url)
    assert_exact(tunelab.load_study("b", url), 5)
    with pytest.raises(tunelab.errors.StudyNotFoundError):
        tunelab.load_study("a", url)


def test_study_survives_the_server_dropping_every_connection(url: str, pg_admin: sa.Engine) -> None:
    study = tunelab.create_study(name="drops", storage=url, seed=0)
    stop = threading.Event()

    def drop_connections() -> None:
        while not stop.wait(0.15):
            with pg_admin.connect() as conn:
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name <> 'psql'"
                ))

    killer = threading.Thread(target=drop_connections)
    killer.start()
    try:
        study.optimize(slow_cheap, n_trials=60, n_workers=2)
    finally:
        stop.set()
        killer.join()
    assert_exact(tunelab.load_study("drops", url), 60)


def test_study_completes_across_a_server_restart(url: str, tmp_path: Path) -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        message = "restarting the server needs a local Debian cluster (pg_ctlcluster, /etc/postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    tunelab.create_study(name="restart", storage=url, seed=0)
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    workers = [run_loop(url, "restart", 150, "slow_cheap", ready=r) for r in ready]
    # Restart once both workers have opened the study: one still importing when the server goes
    # down would open it during the restart, which is another test (and a loaded machine's flake).
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let them get going
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True, timeout=60,
    )
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], b"\n".join(errors).decode()[-3000:]
    study = tunelab.load_study("restart", url)
    trials = study.trials
    # A trial whose creation committed just before the connection broke may be lost to its
    # worker: it is failed by heartbeat, never left RUNNING, never duplicated.
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 300, [(t.number, t.state.value, t.error) for t in trials if t.state != TrialState.COMPLETE]
    assert not study.get_trials([TrialState.RUNNING, TrialState.WAITING]) or _fails_stale(study)


def _fails_stale(study: tunelab.Study) -> bool:
    time.sleep(2.0)
    study.storage.fail_stale_trials(study.storage.get_study(study.name).study_id, 1.5)
    return not study.get_trials([TrialState.RUNNING, TrialState.WAITING])


def test_sigkilled_worker_process_leaves_no_running_trial(url: str) -> None:
    from objectives import chaotic

    study = tunelab.create_study(name="chaos", storage=url, seed=0)
    study.optimize(chaotic, n_trials=40, n_workers=4)
    trials = study.trials
    assert len(trials) == 40 and not study.get_trials([TrialState.RUNNING])
    assert sum("SIGKILL" in (t.error or "") for t in trials) == 4


def test_killed_driver_is_resumed_with_load_study(url: str) -> None:
    study = tunelab.create_study(name="resume", storage=url, seed=0)
    driver = run_loop(url, "resume", 10_000, "slow_cheap")
    deadline = time.monotonic() + 60
    while len(study.get_trials([TrialState.COMPLETE])) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    before = len(study.get_trials([TrialState.COMPLETE]))
    study.optimize(cheap, n_trials=10, heartbeat_interval=0.2, grace_period=0.5)
    time.sleep(0.6)
    study.optimize(cheap, n_trials=1, heartbeat_interval=0.2, grace_period=0.5)  # notices the lost trial
    assert len(study.get_trials([TrialState.COMPLETE])) == before + 11
    assert not study.get_trials([TrialState.RUNNING])
