"""The storage conformance suite on a real PostgreSQL server.

The server and the schema of each test come from the fixtures in ``conftest.py``:
under ``CI=true`` an unreachable server fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tunelab
from tunelab.storage import BaseStorage, SQLStorage
from tunelab.testing import SharedStorageSuite


class TestPostgreSQLStorage(SharedStorageSuite):
    @pytest.fixture(autouse=True)
    def _own_schema(self, pg_url: str) -> None:
        self._url = pg_url

    def make_url(self, tmp_path: Path) -> str:
        return self._url

    def test_uses_the_postgresql_dialect(self, storage: BaseStorage) -> None:
        assert isinstance(storage, SQLStorage)
        assert storage.engine.dialect.name == "postgresql"


def test_passwords_never_appear_in_messages_or_reprs() -> None:
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(tunelab.errors.StorageError) as info:
        SQLStorage(url, retry_timeout=0.2)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_a_storage_dropped_without_close_closes_its_connections(pg_url: str) -> None:
    """The pooled psycopg connections are closed, not left for the driver to warn about at collection."""
    import gc
    import warnings

    storage = SQLStorage(pg_url)
    storage.create_study("dropped", "minimize", seed=0)
    pool = storage.engine.pool
    assert pool.checkedin() >= 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del storage
        gc.collect()
    assert pool.checkedin() == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


def test_a_pooled_connection_left_mid_command_is_replaced_not_used(pg_url: str) -> None:
    """A pooled connection that psycopg refuses to ping (left in the middle of a command, status ACTIVE)
    is replaced by a fresh one: the operation succeeds instead of failing with a ProgrammingError."""
    storage = SQLStorage(pg_url, pool_size=1, pool_reset_on_return=None)  # no reset: the pool keeps it as left
    storage.create_study("mid-command", "minimize", seed=0)
    raw = storage.engine.raw_connection()
    raw.driver_connection.pgconn.send_query(b"SELECT 1")  # sent, its result never read
    assert raw.driver_connection.info.transaction_status.name == "ACTIVE"
    raw.close()  # back to the pool in that state
    assert storage.get_study("mid-command").name == "mid-command"
    storage.close()


def test_a_server_that_does_not_come_back_in_time_is_a_transient_failure(pg_url: str) -> None:
    """The error after retry_timeout says the database was away, not that it refused the write: a trial's
    final write tries its result again later instead of replacing it by FAIL at once (see record_end)."""
    import sqlalchemy as sa

    storage = SQLStorage(pg_url, retry_timeout=0.2)

    def server_gone() -> None:
        raise sa.exc.OperationalError("UPDATE trials ...", {}, Exception("server closed the connection unexpectedly"))

    with pytest.raises(tunelab.errors.StorageError, match=r"did not come back within 0\.2s") as info:
        storage._with_retries("finish_trial", server_gone)
    assert info.value.transient
    storage.close()
