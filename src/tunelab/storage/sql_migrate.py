"""Bringing an SQL database to this tunelab's schema with the Alembic revisions in ``migrations/``.

:class:`~tunelab.storage.SQLStorage` calls :func:`migrate` when it opens a database that is
new or was written by an older tunelab. The version is read from ``tunelab_meta.schema_version``,
which every release keeps (the first release only has that: its databases are stamped with
revision ``"0001"`` before the upgrade), and Alembic's own table, ``tunelab_alembic_version``.
A new database gets the tables of ``sql_schema.py`` and the newest revision's stamp directly,
without Alembic (faster; the tests check that every revision run from nothing builds the same).

Two processes may open an old database at once. The upgrade runs under a lock and reads the
version again once it holds it, so the second process finds the work done:

- SQLite: one ``BEGIN IMMEDIATE`` transaction (its DDL is transactional): all or nothing.
- PostgreSQL: one transaction holding ``pg_advisory_xact_lock`` (one key per schema): all or
  nothing, released at commit.
- MySQL/MariaDB: ``GET_LOCK`` (one name per database). Their DDL commits at once, so a
  revision there must be safe to run again after an interruption (check, then alter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tunelab.errors import StorageError
from tunelab.storage.sql_schema import SCHEMA_VERSION, VERSION_TABLE, meta_table, metadata

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR", "alembic_config", "check_not_newer", "migrate", "read_schema_version", "revision_of",
    "version_table",
]

#: The Alembic environment shipped in the package: env.py, versions/.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Seconds a MySQL/MariaDB process waits for another one's upgrade to finish.
LOCK_TIMEOUT = 300

#: Alembic's version table, as Alembic creates it.
version_table = sa.Table(
    VERSION_TABLE, sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)


def revision_of(version: int) -> str:
    """The Alembic revision of schema ``version``: ``"0002"`` for 2."""
    return f"{version:04d}"


def read_schema_version(conn: Connection) -> int | None:
    """The schema version recorded in ``tunelab_meta``; None where there are no tunelab tables."""
    if not sa.inspect(conn).has_table(meta_table.name):
        return None
    row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
    return None if row is None else int(row[0])


def _read_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.select(version_table.c.version_num)).scalar()


def check_not_newer(shown: str, version: int | None, revision: str | None = None) -> None:
    """StorageError if the database was written by a newer tunelab than this one."""
    if version is not None and version > SCHEMA_VERSION:
        found = f"schema {version}"
    elif revision is not None and revision not in {revision_of(v) for v in range(1, SCHEMA_VERSION + 1)}:
        found = f"revision {revision!r}"
    else:
        return
    raise StorageError(
        f"the tunelab database at {shown} was written by a newer tunelab ({found}; this tunelab reads "
        f"schema {SCHEMA_VERSION} and older): upgrade tunelab: pip install -U tunelab"
    )


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's configuration for tunelab's migrations, without an ini file; env.py migrates ``conn``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Hold the database's migration lock; on SQLite and PostgreSQL until the transaction ends."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    elif dialect == "postgresql":
        schema = conn.execute(sa.text("SELECT coalesce(current_schema(), '')")).scalar()
        key = int.from_bytes(_digest(f"tunelab-migrate:{schema}")[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield
    elif dialect in ("mysql", "mariadb"):
        database = conn.execute(sa.text("SELECT DATABASE()")).scalar()
        name = "tunelab-migrate-" + _digest(str(database)).hex()[:32]  # lock names: 64 characters at most
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": LOCK_TIMEOUT})
        got_it = got.scalar() == 1
        conn.commit()  # the lock is the session's: what follows reads what was committed before it
        if not got_it:
            raise StorageError(
                f"another process has been upgrading this database for over {LOCK_TIMEOUT}s "
                f"(lock {name!r} held); try again when it is done"
            )
        try:
            yield
        except BaseException:
            conn.rollback()  # before the lock goes: nothing half-written is committed by the release
            raise
        finally:
            try:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                pass  # a lost connection: the server released the lock with the session
    else:  # no lock: the transaction, and reading the version again, have to do
        yield


def migrate(engine: Engine, shown: str) -> int | None:
    """Bring the database to :data:`SCHEMA_VERSION`, under the migration lock, in one transaction where
    the database allows.

    Returns the version found once the lock was held: None for a database without tunelab tables
    (created now), :data:`SCHEMA_VERSION` when another process had done the work. StorageError for
    a database of a newer tunelab; SQLAlchemy's errors pass through.
    """
    with engine.connect() as conn:
        try:
            with _migration_lock(conn):
                found = read_schema_version(conn)
                revision = _read_revision(conn)
                check_not_newer(shown, found, revision)
                if found is None and revision is None:  # a new database: no tables, or only others' tables
                    metadata.create_all(conn, checkfirst=False)  # an existing 'trials' table is an error, not ours
                    conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                    version_table.create(conn)
                    conn.execute(version_table.insert().values(version_num=revision_of(SCHEMA_VERSION)))
                elif found != SCHEMA_VERSION or revision is None:
                    from alembic import command

                    config = alembic_config(conn)
                    if revision is None and found is not None:
                        command.stamp(config, revision_of(found))  # written by the first release
                    command.upgrade(config, "head")
                    now = read_schema_version(conn)
                    if now != SCHEMA_VERSION:
                        raise StorageError(
                            f"upgrading {shown} left schema version {now}, not {SCHEMA_VERSION}: "
                            "a revision does not record its version (a bug in tunelab's migrations)"
                        )
                conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return found
