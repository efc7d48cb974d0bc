"""Attributes as they are stored: JSON data, with numpy's numbers and arrays read as Python's values.

One check for a trial's :meth:`~tunelab.study.Trial.set_user_attr` and for a study's user attributes
(``create_study(user_attrs=...)``, ``enqueue(user_attrs=...)``, :meth:`~tunelab.study.Study.set_user_attr`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

JSON_RULE = (
    "attributes must be JSON data (numbers, strings, booleans, None, lists and dicts of them) without NaN or "
    "infinity: store float(x) of a finite number, None for a missing one, or str(x)"
)
"""The end of every message about an attribute that is not JSON data."""


def json_data(value: Any) -> tuple[Any, str | None]:
    """``value`` with numpy's numbers and arrays (in lists, tuples and dicts too) as Python's, and why it is
    not JSON data (None when it is): np.float32(0.93), an accuracy computed with numpy, is stored as 0.93."""
    value = _plain(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        return value, str(e)
    return value, None


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items  # copied where converted
    if isinstance(value, dict):
        plain = {k: _plain(v) for k, v in value.items()}
        return value if all(plain[k] is v for k, v in value.items()) else plain
    return value
