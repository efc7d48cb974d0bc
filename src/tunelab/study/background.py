"""One background thread per process for a trial's small chores off the training thread: writing
gathered reports when they fall due, polling live requests. Starting a thread per chore would cost
more than the chore (milliseconds on a busy machine, at every fit's start and end)."""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("tunelab")


class Chore:
    """A call scheduled on the background thread; :meth:`cancel` before it runs skips it."""

    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run it (if it has not started)."""
        self.cancelled = True


class Background:
    """Runs scheduled calls, in time order, on one daemon thread started at the first call."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Chore]] = []  # a heap of (when, order, chore)
        self._order = 0
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[[], None]) -> Chore:
        """Run ``fn()`` on the background thread in ``delay`` seconds (an exception is logged)."""
        chore = Chore(fn)
        with self._wake:
            self._order += 1
            heapq.heappush(self._due, (time.monotonic() + max(delay, 0.0), self._order, chore))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tunelab-background", daemon=True)
                self._thread.start()
            self._wake.notify()
        return chore

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(None if not self._due else self._due[0][0] - time.monotonic())
                _, _, chore = heapq.heappop(self._due)
            if chore.cancelled:
                continue
            try:
                chore.fn()
            except Exception:  # a chore handles its own failures; this one is a defect: say so, go on
                logger.exception("tunelab: a background chore failed")


_background = Background()


def call_later(delay: float, fn: Callable[[], None]) -> Chore:
    """Run ``fn()`` on this process's background thread in ``delay`` seconds."""
    return _background.call_later(delay, fn)


def _fresh_in_child() -> None:
    global _background
    _background = Background()  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_fresh_in_child)
