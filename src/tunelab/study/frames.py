"""Trials as a pandas DataFrame (pandas is optional)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunelab.records import FrozenTrial

if TYPE_CHECKING:
    import pandas as pd


def trials_to_rows(trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """One flat dict per trial: number, state, value, times, params_*, user_attrs_*, error."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.value,
            "value": t.value,
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "duration": t.duration,
        }
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({f"user_attrs_{k}": v for k, v in t.user_attrs.items()})
        row["error"] = t.error.strip().splitlines()[-1] if t.error else None
        rows.append(row)
    return rows


def trials_to_dataframe(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """A DataFrame of :func:`trials_to_rows`."""
    try:
        import pandas as pd
    except ImportError:
        raise ModuleNotFoundError(
            "trials_dataframe() needs pandas: pip install 'tunelab[pandas]' (or pandas)"
        ) from None
    frame: pd.DataFrame = pd.DataFrame(trials_to_rows(trials))
    return frame
