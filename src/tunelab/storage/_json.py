"""JSON encoding shared by the storages: every stored attribute must be plain JSON."""

from __future__ import annotations

import json
from typing import Any

from tunelab.errors import StorageError


def dumps(obj: Any) -> str:
    """Compact JSON text; StorageError naming the value if it is not JSON data."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StorageError(
            f"value {obj!r} cannot be stored: {e}; attributes must be JSON data "
            "(numbers, strings, booleans, None, lists and dicts of them; no NaN)"
        ) from None
