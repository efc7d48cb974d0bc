"""The chaos test's objective and sampler (tests/test_chaos.py): spawned workers import them.

Each trial number gets a fault from a fixed plan (:func:`fault_of`), so the test knows what every
row should show whatever the order in which the workers ran them.
"""

from __future__ import annotations

import os
import random
import signal
import time

import tunelab
from tunelab.distributions import ParamValue
from tunelab.history import History
from tunelab.samplers.base import SamplingContext

SEED = 20240616
#: fault -> share of trials (the rest run normally)
FAULTS = {
    "raises": 0.05,  # an exception in the objective
    "nan_attr": 0.04,  # set_user_attr(NaN): the final write fails, the trial must still end FAIL
    "nan": 0.03,  # returns NaN
    "huge": 0.02,  # returns 10**400 (float() overflows)
    "string": 0.02,  # returns "0.5"
    "pruned": 0.05,  # raises TrialPruned after its first report
    "sigkill": 0.008,  # the worker kills itself (SIGKILL) in the objective
    "sigkill_planning": 0.004,  # the worker kills itself while the sampler plans
    "hang": 0.002,  # hangs: killed after trial_timeout (and trial numbers 100, 297, 494, ...)
}
STEPS = 2  # a normal trial reports this many steps, a pruned one the first


def fault_of(number: int) -> str:
    """The fault planned for trial ``number`` ("none" for a normal trial)."""
    if number % 197 == 100:  # a few hangs for sure (each holds a worker for trial_timeout)
        return "hang"
    r = random.Random(SEED * 1_000_003 + number).random()
    for fault, share in FAULTS.items():
        if r < share:
            return fault
        r -= share
    return "none"


def expected(fault: str) -> tuple[str, str]:
    """The state and a piece of the error text a trial with ``fault`` ends with (if nothing else hit it)."""
    return {
        "none": ("COMPLETE", ""),
        "raises": ("FAIL", "ValueError: chaos"),
        "nan_attr": ("FAIL", "could not be recorded"),
        "nan": ("FAIL", "NaN"),
        "huge": ("FAIL", "too large for a float"),
        "string": ("FAIL", "the objective returned '0.5' (str); return a number"),
        "pruned": ("PRUNED", ""),
        "sigkill": ("FAIL", "killed by SIGKILL) while running"),
        "sigkill_planning": ("FAIL", "killed by SIGKILL) while planning"),
        "hang": ("FAIL", "timed out"),
    }[fault]


class ChaosSampler(tunelab.RandomSampler):
    """Random search; on the trials planned so, the planning worker kills itself."""

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        if fault_of(trial.number) == "sigkill_planning":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().plan(history, trial)


IN_PROCESS = ("sigkill", "sigkill_planning", "hang")  # faults that only worker processes survive


def chaos(trial: tunelab.Trial) -> float:
    """A tiny objective (a few ms) that misbehaves as :func:`fault_of` plans."""
    return _chaos(trial, fault_of(trial.number))


def chaos_in_process(trial: tunelab.Trial) -> float:
    """:func:`chaos` without the faults that would kill or hang the calling process (run normally)."""
    fault = fault_of(trial.number)
    return _chaos(trial, "none" if fault in IN_PROCESS else fault)


def _chaos(trial: tunelab.Trial, fault: str) -> float:
    x = trial.suggest_float("x", -1, 1)
    time.sleep(0.003)
    trial.report(0, loss=x * x + 1)
    if fault == "pruned":
        raise tunelab.TrialPruned
    if fault == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        time.sleep(3600)
    for step in range(1, STEPS):
        trial.report(step, loss=x * x + 1 / (step + 1))
    if fault == "raises":
        raise ValueError(f"chaos in trial {trial.number}")
    if fault == "nan_attr":
        box = [0.0]
        trial.set_user_attr("val_acc", box)
        box[0] = float("nan")  # changed after it was checked: only the final write can refuse it
    if fault == "nan":
        return float("nan")
    if fault == "huge":
        return 10**400  # type: ignore[return-value]
    if fault == "string":
        return "0.5"  # type: ignore[return-value]
    return x * x
