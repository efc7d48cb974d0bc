"""Heartbeats on a server database are stamped and judged on the server's clock: a worker host whose
clock is an hour off neither makes its live trials look lost nor keeps a dead trial looking alive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tunelab.records import TrialState
from tunelab.storage import SQLStorage

SKEW = 3600.0  # an hour: far beyond any grace period
GRACE = 30.0


@pytest.fixture(params=["postgresql", "mariadb"])
def storage(request: pytest.FixtureRequest) -> Iterator[SQLStorage]:
    url = str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url"))
    storage = SQLStorage(url)
    yield storage
    storage.close()


@contextmanager
def host_clock_off_by(seconds: float, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's clock reads ``seconds`` off (a worker host whose clock is wrong)."""
    real = time.time
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: real() + seconds)
        yield


@pytest.mark.parametrize("skew", [-SKEW, SKEW])
def test_a_worker_whose_clock_is_off_keeps_its_live_trial_alive(
    storage: SQLStorage, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    study_id = storage.create_study("clock", "minimize", seed=0).study_id
    with host_clock_off_by(skew, monkeypatch):  # the worker's host starts its trial and beats
        started = storage.start_trial(study_id, heartbeat=True)
        waiting = storage.create_trial(study_id, state=TrialState.WAITING)
        claimed = storage.claim_waiting_trial(study_id, heartbeat=True)
        assert claimed is not None and claimed.trial_id == waiting.trial_id
        storage.heartbeat(started.trial_id)
    # Another host, on a right clock, looks for lost trials: both just beat.
    assert storage.fail_stale_trials(study_id, GRACE) == []
    with host_clock_off_by(-skew, monkeypatch):  # ... and one whose clock is off the other way
        assert storage.fail_stale_trials(study_id, GRACE) == []
    assert {t.state for t in storage.get_trials(study_id)} == {TrialState.RUNNING}


@pytest.mark.parametrize("skew", [0.0, SKEW])
def test_a_silent_trial_is_found_lost_on_the_server_clock(
    storage: SQLStorage, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """Also when the host that ran it was an hour ahead (its last beat is not in the future)."""
    study_id = storage.create_study("clock", "minimize", seed=0).study_id
    with host_clock_off_by(skew, monkeypatch):
        trial = storage.start_trial(study_id, heartbeat=True)
    assert storage.fail_stale_trials(study_id, GRACE) == []
    # The grace time passed on the server's clock (a grace of zero: any beat before now is stale).
    time.sleep(0.01)
    [lost] = storage.fail_stale_trials(study_id, 0.0)
    assert lost.trial_id == trial.trial_id and "heartbeat lost" in (lost.error or "")
