"""The storage conformance suite on a real PostgreSQL server.

The server is taken from ``TUNELAB_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Each test gets its own schema, dropped afterwards.
Under ``CI=true`` an unreachable server fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tunelab
from tunelab.storage import BaseStorage, SQLStorage
from tunelab.testing import SharedStorageSuite

PG_URL = os.environ.get("TUNELAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def admin() -> Iterator[sa.Engine]:
    try:
        engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means the same
        message = f"PostgreSQL at {PG_URL} is not reachable ({type(e).__name__}: {e})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI needs it: start the server or set TUNELAB_TEST_POSTGRES_URL")
        pytest.skip(message)
    yield engine
    engine.dispose()


def schema_url(schema: str) -> str:
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


class TestPostgreSQLStorage(SharedStorageSuite):
    @pytest.fixture(autouse=True)
    def _own_schema(self, admin: sa.Engine) -> Iterator[None]:
        schema = f"tunelab_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        self._url = schema_url(schema)
        yield
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))

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
