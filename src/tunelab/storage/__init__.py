"""Storages: where studies, trials and learning curves live.

:func:`get_storage` turns what users pass as ``storage=`` into a storage object;
:func:`upgrade` brings a database an older tunelab wrote to this tunelab's schema
(opening it does too), :func:`schema_version` says which schema a database has.
"""

from __future__ import annotations

from tunelab.errors import StorageError
from tunelab.storage.base import BaseStorage, Curves, MetricPoint, TrialValue
from tunelab.storage.memory import InMemoryStorage
from tunelab.storage.sql import SQLStorage
from tunelab.storage.sql_schema import SCHEMA_VERSION
from tunelab.storage.urls import check_storage_url

__all__ = [
    "SCHEMA_VERSION", "BaseStorage", "Curves", "InMemoryStorage", "MetricPoint", "SQLStorage", "TrialValue",
    "get_storage", "schema_version", "upgrade",
]


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
            raise _not_a_url(storage, "None for an in-memory study")
        check_storage_url(storage)  # a typo (sqllite://, sqlite:/x.db) gets its fix, not a driver hint
        return SQLStorage(storage, create=create)
    raise StorageError(
        f"storage must be a URL string, a storage object or None, got {type(storage).__name__}"
    )


def _not_a_url(storage: str, other: str | None = None) -> StorageError:
    """The error for a storage string without ``://``: the scheme's fix when it has one (``sqlite:/x.db``),
    else the SQLite URL of that file (an empty string has none: an example instead)."""
    if not storage.strip():
        alternative = f", or {other}" if other else ""
        return StorageError(f"storage {storage!r} is empty; give a URL such as 'sqlite:///tunelab.db'{alternative}")
    check_storage_url(storage)  # raises for sqlite:/x.db, postgresql:host/db
    return StorageError(f"storage {storage!r} is not a URL; for an SQLite file write 'sqlite:///{storage}'")


def _sql_url(url: str) -> str:
    if not isinstance(url, str):
        raise StorageError(f"storage {url!r} is not a database URL; e.g. 'sqlite:///tunelab.db'")
    if "://" not in url:
        raise _not_a_url(url)
    return url


def upgrade(url: str) -> tuple[int, int]:
    """Bring the tunelab database at ``url`` to this tunelab's schema (:data:`SCHEMA_VERSION`).

    Returns ``(version before, version after)``; equal when it was up to date. Opening a database
    upgrades it too (with a warning in the log); this does it on purpose, e.g. before starting
    many workers. StorageError if ``url`` holds no tunelab database or a newer tunelab wrote it.
    """
    storage = SQLStorage(_sql_url(url), create=False, upgrade=False)
    try:
        return storage.upgrade_schema()
    finally:
        storage.close()


def schema_version(url: str) -> int:
    """The schema version of the tunelab database at ``url``, without changing it (this tunelab's is
    :data:`SCHEMA_VERSION`: lower means :func:`upgrade` has work to do, higher that a newer tunelab wrote it)."""
    storage = SQLStorage(_sql_url(url), create=False, upgrade=False)
    try:
        version = storage.schema_version
    finally:
        storage.close()
    if version is None:  # create=False: there are tunelab tables, without a version
        raise StorageError(f"storage {storage!r} has tunelab tables but no schema version; check the URL")
    return version
