"""Fixtures shared by test modules: a real PostgreSQL server, one schema per test.

The server is taken from ``TUNELAB_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Under ``CI=true`` an unreachable server fails the
tests that need it; elsewhere they are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("TUNELAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The server's URL with ``schema`` first on the search path."""
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _admin_engine(url: str, server: str, env_var: str) -> sa.Engine:
    """An autocommit engine on a test server, or a failure (CI) / skip (elsewhere) if unreachable."""
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means the same
        message = f"{server} at {url} is not reachable ({type(e).__name__}: {e})"
        if os.environ.get("CI"):
            pytest.fail(message + f"; CI needs it: start the server or set {env_var}")
        pytest.skip(message)
    return engine


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An autocommit engine on the PostgreSQL server."""
    engine = _admin_engine(PG_URL, "PostgreSQL", "TUNELAB_TEST_POSTGRES_URL")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """The URL of a fresh, empty schema, dropped after the test."""
    schema = f"tunelab_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield schema_url(schema)
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


MARIADB_URL = os.environ.get("TUNELAB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def mariadb_admin() -> Iterator[sa.Engine]:
    """An autocommit engine on the MariaDB/MySQL server."""
    engine = _admin_engine(MARIADB_URL, "MariaDB", "TUNELAB_TEST_MARIADB_URL")
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_url(mariadb_admin: sa.Engine) -> Iterator[str]:
    """The URL of a fresh, empty database on the MariaDB server, dropped after the test."""
    name = f"tunelab_test_{uuid.uuid4().hex[:12]}"
    with mariadb_admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = sa.engine.make_url(MARIADB_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with mariadb_admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE `{name}`"))
