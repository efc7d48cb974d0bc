"""Trials as a pandas DataFrame (pandas is optional)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunelab.records import CONSTRAINTS_KEY, FrozenTrial
from tunelab.study.failures import error_headline

if TYPE_CHECKING:
    import pandas as pd


def trials_to_rows(trials: Sequence[FrozenTrial], objective_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One flat dict per trial: number, state, value, times, params_*, user_attrs_*, error.

    With ``objective_names`` (a study with several objectives) ``value`` is replaced by one
    ``values_<name>`` column per objective. Trials that recorded constraints get ``feasible`` and
    one ``constraints_<name>`` column (the measured value) per constraint.
    """
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.value}
        if objective_names is None:
            row["value"] = t.value
        else:
            values = t.values if t.values is not None and len(t.values) == len(objective_names) else None
            row.update({f"values_{n}": (values[i] if values else None) for i, n in enumerate(objective_names)})
        if t.system_attrs.get(CONSTRAINTS_KEY):
            row["feasible"] = t.feasible
            row.update({f"constraints_{k}": c.value for k, c in t.constraints.items()})
        row.update({
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "duration": t.duration,
        })
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({f"user_attrs_{k}": v for k, v in t.user_attrs.items()})
        row["error"] = error_headline(t.error) or None
        rows.append(row)
    return rows


def trials_to_dataframe(trials: Sequence[FrozenTrial], objective_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame of :func:`trials_to_rows`."""
    try:
        import pandas as pd
    except ImportError:
        raise ModuleNotFoundError(
            "trials_dataframe() needs pandas: pip install 'tunelab[pandas]' (or pandas)"
        ) from None
    rows = trials_to_rows(trials, objective_names)
    if rows:
        frame: pd.DataFrame = pd.DataFrame(rows)
        return frame
    # No trials (an empty study, or no feasible front yet): the columns every row would have, so
    # ``frame["values_acc"]`` and ``frame.sort_values("value")`` work on it too.
    values = ["value"] if objective_names is None else [f"values_{n}" for n in objective_names]
    columns = ["number", "state", *values, "datetime_start", "datetime_complete", "duration", "error"]
    empty: pd.DataFrame = pd.DataFrame(columns=columns)
    return empty
