"""Metrics in the lines a script prints.

Two forms, so that a script in any language needs no change beyond printing:

- a JSON object on a line of its own: ``{"step": 3, "val_loss": 0.41, "val_acc": 0.88}``. Numbers are
  metrics; ``step`` is the step (without one, the step after the last, starting at 1); ``{"value": x}``
  sets the trial's value and ``{"final": {"val_loss": x, ...}}`` its final metrics (the sweep's metric
  among them is the value). Other keys (strings, lists) are ignored;
- a line matching one of the file's ``metrics_regex`` patterns, whose named groups are the metrics
  (and ``step`` / ``value``): ``epoch (?P<step>\\d+) val_loss=(?P<val_loss>[\\d.e-]+)``.

Any other line is just output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    """What one line said: metrics at a step, a value, final metrics."""

    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    value: float | None = None
    final: dict[str, float] | None = None


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        try:
            return float(x)
        except OverflowError:  # an int past a float (10**400): no number
            return None
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


_MAX_STEP = 2**63 - 1


def _step(x: Any) -> int | None:
    v = _number(x)
    if v is None or not math.isfinite(v) or v < 0 or not float(v).is_integer() or v > _MAX_STEP:
        return None  # no step: the step after the last (a storage keeps 64-bit steps)
    return int(v)


class MetricParser:
    """Turns lines into :class:`Event` s (None for a line that reports nothing)."""

    def __init__(self, regexes: Sequence[str] = ()) -> None:
        self._regexes = [re.compile(r) for r in regexes]

    def parse(self, line: str) -> Event | None:
        text = line.strip()
        if text.startswith("{") and text.endswith("}"):
            event = self._json(text)
            if event is not None:
                return event
        for rx in self._regexes:
            m = rx.search(line)
            if m:
                return self._groups(m.groupdict())
        return None

    @staticmethod
    def _json(text: str) -> Event | None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return from_record(data) if isinstance(data, dict) else None

    @staticmethod
    def _groups(groups: dict[str, Any]) -> Event | None:
        event = Event(step=_step(groups.pop("step", None)), value=_number(groups.pop("value", None)))
        for k, v in groups.items():
            x = _number(v)
            if x is not None:
                event.metrics[k] = x
        return event if event.metrics or event.value is not None else None


def from_record(data: dict[str, Any]) -> Event | None:
    """The event of one JSON object (a printed line, or a line :func:`tunelab.script.report` sent)."""
    event = Event(step=_step(data.get("step")), value=_number(data.get("value")))
    final = data.get("final")
    if isinstance(final, dict):
        event.final = {k: x for k, v in final.items() if isinstance(k, str) and (x := _number(v)) is not None
                       and not isinstance(v, str)}
    for k, v in data.items():
        if k in ("step", "value", "final") or isinstance(v, (str, bool)) or not isinstance(k, str):
            continue
        x = _number(v)
        if x is not None:
            event.metrics[k] = x
    if not event.metrics and event.value is None and not event.final:
        return None
    return event
