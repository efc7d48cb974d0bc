"""Signs of life of running trials, and what happens to trials whose signs stopped.

A running trial beats (:class:`Heartbeat`, a thread) every ``interval`` seconds; a trial
silent for ``grace`` seconds is lost (its process died, its machine went away) and
:class:`StaleTrials`, run by every process that starts trials, marks it FAIL and, when
asked, queues its parameters again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import BaseStorage

logger = logging.getLogger("tunelab")


@dataclass(frozen=True)
class HeartbeatSettings:
    """Beat every ``interval`` seconds; a trial silent for ``grace`` is lost; ``requeue`` its params."""

    interval: float
    grace: float
    requeue: bool = False


class Heartbeat:
    """A thread that tells the storage, every ``interval`` seconds, that a trial is alive.

    With ``stale``, each beat also runs the study's stale-trial check: a lost trial is failed as
    soon as its grace period ends by any live trial of the study, not only when the next trial
    is asked for (a resume started inside the grace period of a dead run would otherwise leave
    the dead run's trials RUNNING until its own trials end).
    """

    def __init__(
        self, storage: BaseStorage, trial_id: int, interval: float, stale: StaleTrials | None = None
    ) -> None:
        self._stop = threading.Event()
        self._stale = stale
        self._thread = threading.Thread(
            target=self._beat, args=(storage, trial_id, interval), daemon=True, name="tunelab-heartbeat"
        )

    def _beat(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                storage.heartbeat(trial_id)
            except Exception:
                logger.debug("heartbeat failed", exc_info=True)
            if self._stale is not None and not self._stop.is_set():
                try:
                    self._stale.check()
                except Exception:
                    logger.debug("stale-trial check failed", exc_info=True)

    def start(self) -> Heartbeat:
        """Start beating (a second call does nothing)."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and wait for the thread."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StaleTrials:
    """Fails a study's lost trials, checking at most once per heartbeat interval.

    One instance may be shared by the threads of a process (the asking loop, heartbeat threads,
    a driver's poll loop): a check that is due is run by one of them.
    """

    def __init__(self, storage: BaseStorage, study_id: int, settings: HeartbeatSettings) -> None:
        self._storage = storage
        self._study_id = study_id
        self._settings = settings
        self._last_check = -float("inf")
        self._lock = threading.Lock()

    def check(self) -> list[FrozenTrial]:
        """Fail the trials silent for longer than the grace period (if a check is due); return them."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_check < self._settings.interval:
                return []
            self._last_check = now
        lost = self._storage.fail_stale_trials(self._study_id, self._settings.grace)
        for trial in lost:
            logger.warning("trial %d failed: %s", trial.number, trial.error)
            if self._settings.requeue and trial.params:
                self._storage.create_trial(
                    self._study_id, TrialState.WAITING, params=trial.params,
                    distributions=trial.distributions, system_attrs={"retry_of": trial.number},
                )
        return lost
