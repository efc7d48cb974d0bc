"""A population's record: each member's hyperparameter schedule and its family tree.

Population-based training (:mod:`tunelab.pbt.population`) stores every change with the member
(``system_attrs["pbt"]``); these functions read it back: :func:`schedule` turns a member's
lineage into a hyperparameter schedule to replay in a fresh run (:func:`params_at`), and
:func:`format_lineage` prints the family tree (``tunelab lineage STUDY``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tunelab.distributions import ParamValue
from tunelab.records import FrozenTrial

if TYPE_CHECKING:
    from tunelab.study import Study

PBT_KEY = "pbt"
"""System attribute of a member: ``{"params": current hyperparameters, "lineage": [events]}``."""


def schedule(trial: FrozenTrial) -> list[tuple[int, dict[str, ParamValue]]]:
    """A member's hyperparameter schedule: ``[(0, starting params), (step, params from then on), ...]``."""
    record = trial.system_attrs.get(PBT_KEY) or {}
    lineage = record.get("lineage") or []
    start = dict(lineage[0]["from"]) if lineage else dict(record.get("params") or trial.params)
    return [(0, start)] + [(int(e["step"]), dict(e["params"])) for e in lineage]


def params_at(plan: Sequence[tuple[int, Mapping[str, ParamValue]]], step: int) -> dict[str, ParamValue]:
    """The hyperparameters a schedule prescribes for training after ``step`` (replaying a member)."""
    current: dict[str, ParamValue] = {}
    for at, params in plan:
        if at <= step:
            current = dict(params)
    return current


def format_lineage(study: Study) -> str:
    """The population's family tree as text: one line per member, one per exploit."""
    lines = []
    for t in study.trials:
        record = t.system_attrs.get(PBT_KEY)
        if not record:
            continue
        value = "-" if t.value is None else f"{t.value:.6g}"
        lines.append(f"trial {t.number} ({t.state.value}, value {value}): now {_fmt(record.get('params') or {})}")
        for e in record.get("lineage") or []:
            lines.append(f"  step {e['step']}: copied trial {e['parent']} (checkpoint of step {e['parent_step']}, "
                         f"{e['parent_value']:.6g} vs own {_value(e['value'])}) -> {_fmt(e['params'])}")
    return "\n".join(lines)


def _value(value: float | None) -> str:
    """A member's value at an exploit; None: it was NaN (the member had diverged)."""
    return "nan (diverged)" if value is None else f"{value:.6g}"


def _fmt(params: Mapping[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())



__all__ = ["PBT_KEY", "format_lineage", "params_at", "schedule"]
