"""A worker's stop (SIGTERM raised as KeyboardInterrupt) that lands inside code which cannot pass an
exception on (a Cython callback, a __del__) is delivered again, not printed as a traceback and lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import signal, sys, time
from tunelab.study.runner import _raise_interrupt, _redeliver_interrupt

signal.signal(signal.SIGTERM, _raise_interrupt)
sys.unraisablehook = _redeliver_interrupt


class StoppedInside:
    def __del__(self):  # an exception here cannot propagate: Python hands it to sys.unraisablehook
        raise KeyboardInterrupt("worker received signal SIGTERM")


try:
    thing = StoppedInside()
    del thing
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        pass
    print("the stop was lost")
except KeyboardInterrupt as e:
    print("stopped:", e)
"""


def test_a_stop_swallowed_by_code_that_cannot_raise_is_delivered_again_without_a_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "stopped: worker received signal SIGTERM", done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_other_unraisable_errors_are_still_printed() -> None:
    script = SCRIPT.replace('raise KeyboardInterrupt("worker received signal SIGTERM")', 'raise ValueError("boom")')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "the stop was lost" in done.stdout  # nothing to deliver: the loop ran to its end
    assert "ValueError: boom" in done.stderr


CYTHON_LIKE = """
import sys, time
from tunelab.study.runner import _handle_stops

_handle_stops()  # as a worker process sets itself up


class StoppedInsideCython:
    def __del__(self):
        # What Cython does with an error it cannot pass on (__Pyx_WriteUnraisable with full_traceback, as in
        # scipy's Sobol set-up): print it through sys.excepthook (PyErr_PrintEx), then sys.unraisablehook.
        try:
            raise KeyboardInterrupt("worker received signal SIGTERM")
        except KeyboardInterrupt as e:
            sys.excepthook(type(e), e, e.__traceback__)
            raise


try:
    thing = StoppedInsideCython()
    del thing
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        pass
    print("the stop was lost")
except KeyboardInterrupt as e:
    print("stopped:", e)
sys.excepthook(ValueError, ValueError("other errors"), None)  # still printed
"""


def test_a_stop_that_cython_prints_before_handing_it_on_is_delivered_again_without_a_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", CYTHON_LIKE], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "stopped: worker received signal SIGTERM", done.stdout + done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "ValueError: other errors" in done.stderr
