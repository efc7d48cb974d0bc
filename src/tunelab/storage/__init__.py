"""Storages: where studies, trials and learning curves live.

:func:`get_storage` turns what users pass as ``storage=`` into a storage object.
"""

from __future__ import annotations

from tunelab.errors import StorageError
from tunelab.storage.base import BaseStorage, Curves, MetricPoint, TrialValue
from tunelab.storage.memory import InMemoryStorage
from tunelab.storage.sql import SQLStorage

__all__ = ["BaseStorage", "Curves", "InMemoryStorage", "MetricPoint", "SQLStorage", "TrialValue", "get_storage"]


def get_storage(storage: str | BaseStorage | None, create: bool = True) -> BaseStorage:
    """A storage from a URL (``sqlite:///tunelab.db``), an existing storage, or None (in-memory).

    With ``create=False`` a URL that holds no tunelab database is an error rather than
    a new, empty database.
    """
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        return storage
    if isinstance(storage, str):
        if "://" not in storage:
            raise StorageError(
                f"storage {storage!r} is not a URL; for an SQLite file write 'sqlite:///{storage}'"
            )
        return SQLStorage(storage, create=create)
    raise StorageError(
        f"storage must be a URL string, a storage object or None, got {type(storage).__name__}"
    )
