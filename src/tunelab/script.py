"""Report from a training script that ``tunelab sweep`` runs, in two lines, without a study::

    import tunelab.script

    for epoch in range(1, epochs + 1):
        ...
        tunelab.script.report(epoch, val_loss=val_loss, val_acc=val_acc)
        if tunelab.script.should_prune():
            break                                  # or sys.exit(0): the trial ends PRUNED either way

Outside a sweep (the script run by hand, the variables below unset) every function is a no-op and
:func:`should_prune` is False, so the script needs no branch of its own.

How it works (the sweep's worker is the only process that writes the study's storage):

- the worker makes a FIFO and puts its path in ``TUNELAB_REPORT_FIFO``; :func:`report` writes one
  JSON line to it (``{"step": 3, "val_loss": 0.41}``: one ``write``, atomic below 4 KiB, a few
  microseconds). The worker reads it at once, stores the values with ``trial.report`` and asks the
  study's pruner;
- after each report it has applied, the worker writes how many it has applied into
  ``TUNELAB_ACK_FILE``, and when the pruner says stop it creates the file ``TUNELAB_PRUNE_FILE``;
- :func:`should_prune` waits until the worker has applied this process's reports (a few
  milliseconds: one storage write and the pruner's read), then answers whether that file exists.
  A script in another language can do the same check (``test -e "$TUNELAB_PRUNE_FILE"``) after
  printing its JSON line.

This module imports only the standard library (no numpy, SQLAlchemy or torch): ``import tunelab.script``
costs milliseconds. Report from one process of a distributed job (rank 0): each call is one point.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import time
from typing import Any

REPORT_FIFO = "TUNELAB_REPORT_FIFO"
"""The environment variable holding the path of the FIFO that :func:`report` writes to."""
PRUNE_FILE = "TUNELAB_PRUNE_FILE"
"""The environment variable holding the path of the file the worker creates when the trial must stop."""
ACK_FILE = "TUNELAB_ACK_FILE"
"""The environment variable holding the path of the file with the number of reports the worker applied."""
PARAMS = "TUNELAB_PARAMS"
"""The environment variable holding the trial's parameters as a JSON object."""

ACK_TIMEOUT = 10.0
"""The longest :func:`should_prune` waits for the worker to apply the reports sent (seconds)."""


class _Channel:
    def __init__(self) -> None:
        self.fd: int | None = None
        self.path: str | None = None
        self.sent = 0
        self.acked = 0
        self.pruned = False
        self.broken = False
        self.pid = 0


_channel = _Channel()


def in_sweep() -> bool:
    """Whether this process runs as a trial of ``tunelab sweep``."""
    return bool(os.environ.get(REPORT_FIFO))


def params() -> dict[str, Any]:
    """The trial's parameters (``{}`` outside a sweep): the JSON of ``TUNELAB_PARAMS``."""
    text = os.environ.get(PARAMS)
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _fd() -> int | None:
    ch = _channel
    path = os.environ.get(REPORT_FIFO)
    if not path or ch.broken:
        return None
    if ch.fd is not None and ch.path == path and ch.pid == os.getpid():
        return ch.fd
    try:
        # Non-blocking open: fails at once (ENXIO) instead of hanging when nobody reads the FIFO.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        os.set_blocking(fd, True)  # then block when the pipe is full: the worker is reading, never drop a point
    except OSError as e:
        ch.broken = True
        print(f"tunelab.script: cannot open {REPORT_FIFO}={path!r} ({e.strerror}); reports are not sent",
              file=sys.stderr)
        return None
    ch.fd, ch.path, ch.sent, ch.acked, ch.pruned = fd, path, 0, 0, False
    ch.pid = os.getpid()  # a forked child opens its own
    return fd


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"tunelab.script.report: metric {name!r} must be a number, got {value!r}") from None


def _send(record: dict[str, Any]) -> None:
    fd = _fd()
    if fd is None:
        return
    data = (json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the worker is gone (the sweep was stopped): nothing to report to
        _channel.broken = True
        return
    _channel.sent += 1


def report(step: int, **metrics: float) -> None:
    """Record metrics at ``step`` (an epoch or iteration), e.g. ``report(3, val_loss=0.41, val_acc=0.88)``.

    Sent to the sweep's worker, which stores them as the trial's curves (and the pruner reads them);
    a no-op outside a sweep. Numbers of any kind (a float, a numpy scalar, a 0-dim tensor) are accepted.
    """
    try:
        number = operator.index(step)  # int, numpy integers, 0-dim integer tensors
    except TypeError:
        number = int(step) if isinstance(step, float) and float(step).is_integer() else -1
    if isinstance(step, bool) or number < 0:
        raise TypeError(f"tunelab.script.report: step must be a non-negative integer, got {step!r}")
    if not metrics:
        raise TypeError("tunelab.script.report needs at least one metric, e.g. report(epoch, val_loss=0.3)")
    if not in_sweep():
        return
    record: dict[str, Any] = {"step": number}
    for name, value in metrics.items():
        record[name] = _number(name, value)
    _send(record)


def final(value: float | None = None, **metrics: float) -> None:
    """Set the trial's value (``final(0.12)``) or its final metrics (``final(val_loss=0.12, val_acc=0.97)``,
    the sweep's metric among them): the value is then this one, not the metric's last reported value."""
    if not in_sweep():
        return
    if value is not None:
        _send({"value": _number("value", value)})
    if metrics:
        _send({"final": {k: _number(k, v) for k, v in metrics.items()}})


def _read_ack(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def should_prune() -> bool:
    """Whether the sweep's pruner stopped this trial after its reports: then end the script (return,
    ``break`` or ``sys.exit(0)``); the trial is recorded PRUNED with its curve.

    Waits until the worker has applied this process's reports (usually a few milliseconds, at most
    :data:`ACK_TIMEOUT`). False outside a sweep.
    """
    ch = _channel
    if ch.pruned:
        return True
    prune_file = os.environ.get(PRUNE_FILE)
    if not prune_file or not in_sweep():
        return False
    if os.path.exists(prune_file):
        ch.pruned = True
        return True
    ack = os.environ.get(ACK_FILE)
    if ack and ch.sent > ch.acked and not ch.broken:
        deadline = time.monotonic() + ACK_TIMEOUT
        pause = 0.0002
        while True:
            ch.acked = _read_ack(ack)
            if ch.acked >= ch.sent or time.monotonic() > deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.001)  # the worker answers in milliseconds: poll finely
    ch.pruned = os.path.exists(prune_file)
    return ch.pruned


__all__ = ["final", "in_sweep", "params", "report", "should_prune"]
