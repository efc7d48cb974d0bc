"""SQL storage through SQLAlchemy Core: SQLite (the default, a file) and server databases.

Design choices, each for a measured reason:

- One row per trial with params, distributions and attributes as JSON text: a
  trial is read in one row and written in one statement, so asking and telling
  cost two short transactions whatever the number of parameters.
- Intermediate values are rows ``(trial, metric, step, value)``: curves are
  first-class data that pruners query by metric and step.
- Times are epoch seconds (floats): portable, cheap to compare for heartbeats. On a server database
  heartbeats are stamped and judged on the server's clock, so worker hosts' clocks may disagree.
- SQLite runs in WAL mode with a busy timeout; writers start with
  ``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read lock.
  Server databases lock the rows they change (``SELECT ... FOR UPDATE``).
- Every value is a bound parameter; nothing the user types is ever part of SQL text.
- Every public operation is one place (``_operation``) for retries and errors: a lost connection
  to a server is retried, any other database error becomes a StorageError naming the operation
  and the storage, the original chained.
- The schema is versioned and migrated with Alembic (``sql_migrate.py``): opening a database an
  older tunelab wrote upgrades it, one a newer tunelab wrote is refused.
- An SQLite file that does not exist yet is created by the first write, not by opening it:
  reading a mistyped path (``load_study``) finds nothing and leaves no empty file behind.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from tunelab.distributions import Distribution, ParamValue, distribution_from_json
from tunelab.errors import (
    ConfigError,
    DuplicatedStudyError,
    StorageError,
    StudyNotFoundError,
    TrialNotFoundError,
    TrialStateError,
)
from tunelab.records import FrozenTrial, StudyRecord, StudySummary, TrialState
from tunelab.storage._json import dumps as _dumps
from tunelab.storage.base import BaseStorage, Curves, MetricPoint, TrialValue, append_event, check_values
from tunelab.storage.sql_migrate import check_not_newer, migrate, read_schema_version
from tunelab.storage.sql_schema import (
    RUNNING,
    SCHEMA_VERSION,
    Statements,
    decode_metric,
    distributions_table,
    encode_metric,
    metadata,
    studies_table,
    trials_table,
    values_table,
)

__all__ = ["MAX_STUDY_NAME_LENGTH", "SCHEMA_VERSION", "SQLStorage"]

_T = trials_table
_STATES = {s.value: s for s in TrialState}


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def _sqlite_begin_immediate(engine: Engine) -> None:
    """Let tunelab, not the sqlite3 module, decide when and how transactions begin."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def _replace_on_failed_ping(context: ExceptionContext) -> None:
    """A pooled connection whose ping fails in any way is replaced, not handed to the operation.

    SQLAlchemy replaces it only when the driver calls the error a disconnect; psycopg refuses to
    ping a connection left in the middle of a command ("can't change 'autocommit' now: connection
    in transaction status ACTIVE", a ProgrammingError), which then failed the operation: seen once
    in the chaos test, where a worker's finished trial could not be recorded.
    """
    if context.is_pre_ping:
        context.is_disconnect = True


P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("tunelab")

#: The longest study name every database keeps (``studies.name`` is VARCHAR(512)).
MAX_STUDY_NAME_LENGTH = int(studies_table.c.name.type.length or 512)  # type: ignore[attr-defined]
#: The longest parameter name every database keeps (``study_distributions.name`` is VARCHAR(512)).
MAX_PARAM_NAME_LENGTH = int(distributions_table.c.name.type.length or 512)  # type: ignore[attr-defined]
#: The longest metric name every database keeps (``trial_values.metric`` is VARCHAR(256)).
MAX_METRIC_NAME_LENGTH = int(values_table.c.metric.type.length or 256)  # type: ignore[attr-defined]


def _check_length(what: str, name: str, limit: int) -> None:
    """ConfigError for a name longer than its column keeps: SQLite kept it, PostgreSQL and MySQL/MariaDB
    failed with 'value too long for type character varying'; the same limit on every database."""
    if len(name) > limit:
        raise ConfigError(
            f"a {what} name has at most {limit} characters, this one has {len(name)}: {name[:40]!r}...; "
            "choose a shorter name"
        )


def _hide_password(url: str) -> str:
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def _is_transient(error: DBAPIError) -> bool:
    """A lost connection, a server restart, a deadlock: worth trying again."""
    return bool(error.connection_invalidated) or isinstance(error, (OperationalError, InterfaceError))


def _describe(error: SQLAlchemyError) -> str:
    """``OperationalError: database or disk is full``: the error's class and the database's own words."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        detail = str(error.orig).strip()
    else:
        detail = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {detail}"


def _operation(method: Callable[Concatenate[SQLStorage, P], R]) -> Callable[Concatenate[SQLStorage, P], R]:
    """A public storage operation: run again, with backoff, when a server database drops the connection;
    any other database error becomes a StorageError that names the operation and the storage."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: SQLStorage, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return self._with_retries(name, lambda: method(self, *args, **kwargs))
        except SQLAlchemyError as e:
            raise self._failure(name, e) from e

    return wrapper


@contextmanager
def _empty_database() -> Iterator[Connection]:
    """A connection to an empty tunelab database in memory: what reading an SQLite file not created yet sees."""
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            metadata.create_all(conn)
            yield conn
    finally:
        engine.dispose()


class SQLStorage(BaseStorage):
    """Storage in a relational database reached through a SQLAlchemy URL.

    Args:
        url: e.g. ``sqlite:///tunelab.db`` (a file beside you), ``sqlite:////abs/path.db``,
            ``postgresql+psycopg://user@host/db``.
        busy_timeout: seconds an SQLite writer waits for another process's lock.
        create: create the tables if missing (an SQLite file is created by the first write:
            reading a path that holds nothing leaves no file); with False, a URL with no
            tunelab data is an error (for read-only tools that should not leave files).
        retry_timeout: seconds during which an operation on a server database is retried,
            with backoff, after a lost connection (a server restart, a network blip).
        upgrade: bring a database an older tunelab wrote to this tunelab's schema
            (:data:`~tunelab.storage.SCHEMA_VERSION`) now, logging a warning; one a newer
            tunelab wrote is a StorageError. With False the database is opened as it is: read
            :attr:`schema_version`, call :meth:`upgrade_schema`; other operations may fail on it.
        engine_kwargs: extra arguments for :func:`sqlalchemy.create_engine`.

    Every database error of an operation is raised as a :class:`~tunelab.errors.StorageError`
    naming the operation and the storage, with the database's exception as its ``__cause__``.
    """

    #: The schema version this storage found and upgraded when it opened, if it upgraded one.
    upgraded_from: int | None = None

    def __init__(
        self,
        url: str,
        busy_timeout: float = 60.0,
        create: bool = True,
        retry_timeout: float = 60.0,
        upgrade: bool = True,
        **engine_kwargs: Any,
    ) -> None:
        self._url = url
        self._shown = _hide_password(url)  # for messages: never print a password
        self._retry_timeout = retry_timeout
        self._upgrade = upgrade
        self._local = threading.local()  # the retry attempt of the operation running in this thread
        self._absent: str | None = None  # the path of an SQLite file the first write will create
        self._create_lock = threading.Lock()
        try:
            sa_url = sa.engine.make_url(url)
        except ArgumentError:
            raise StorageError(
                f"storage URL {url!r} is not a database URL; use e.g. 'sqlite:///tunelab.db' "
                "or 'postgresql+psycopg://user@host/dbname'"
            ) from None
        self._sqlite = sa_url.get_backend_name() == "sqlite"
        self._dialect = sa_url.get_backend_name()
        if self._sqlite:
            if sa_url.database in (None, "", ":memory:"):
                raise StorageError(
                    f"storage URL {self._shown!r} names an in-memory SQLite database, which other "
                    "processes cannot see; use a file ('sqlite:///tunelab.db') or storage=None "
                    "for tunelab's in-memory storage"
                )
            engine_kwargs.setdefault("connect_args", {"timeout": busy_timeout})
            # _read and _write always end their own transaction: no reset needed on return.
            engine_kwargs.setdefault("pool_reset_on_return", None)
            path = str(sa_url.database)
            if not os.path.exists(path) and not sa_url.query.get("uri"):
                if not create:
                    raise StorageError(
                        f"no database file at {path!r} (storage {self._shown!r}); check the path, "
                        "or create a study there first"
                    )
                directory = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(directory):
                    raise StorageError(
                        f"cannot open storage {self._shown!r}: there is no directory {directory!r}; "
                        "check that the directory exists and is writable"
                    )
                self._absent = path
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
        try:
            self._engine = sa.create_engine(sa_url, **engine_kwargs)
        except (NoSuchModuleError, ModuleNotFoundError, ImportError) as e:
            raise StorageError(
                f"cannot open storage {self._shown!r}: {e}; install its driver: postgresql+psycopg://... "
                "with pip install 'tunelab[postgres]', mysql+pymysql://... or mariadb+pymysql://... with "
                "pip install 'tunelab[mysql]'"
            ) from None
        if self._sqlite:
            _sqlite_begin_immediate(self._engine)
        else:
            sa.event.listen(self._engine, "handle_error", _replace_on_failed_ping)
        self._q = Statements(lock_rows=not self._sqlite, dialect=self._dialect)
        self._dist_cache: dict[str, Distribution] = {}
        self._dists_cache: dict[str, dict[str, Distribution]] = {}
        if self._absent is None:
            self._open(create)
        # A storage dropped without close() still closes its pooled connections (the drivers warn otherwise).
        weakref.finalize(self, self._engine.dispose)
        # A forked child must not reuse the parent's connections (one fork hook for all storages).
        _OPEN_STORAGES.add(self)

    def __repr__(self) -> str:
        return f"SQLStorage({self._shown!r})"

    @property
    def url(self) -> str:
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for advanced use and tests (an SQLite file not created yet is created now)."""
        if self._absent is not None:
            try:
                self._create_now()
            except SQLAlchemyError as e:
                raise self._failure("create", e) from e
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def _failure(self, what: str, error: SQLAlchemyError) -> StorageError:
        text = f"{what} on {self._shown} failed: {_describe(error)}"
        read_only = self._sqlite and "readonly database" in text
        if read_only:  # a file (or its folder, where SQLite writes its journal) this process may not write
            text += "; make the file and its folder writable by this user, or give a storage URL it can write"
        failure = StorageError(text)
        # e.g. SQLite's "database is locked"; a read-only file stays read-only: no point in trying again
        failure.transient = isinstance(error, DBAPIError) and _is_transient(error) and not read_only
        return failure

    # -- schema ----------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        try:
            # A server that is restarting gets a little patience, a wrong URL not much.
            self._with_retries("open", lambda: self._open_schema(create), min(self._retry_timeout, 10.0))
        except StorageError:
            self._engine.dispose()
            raise
        except OperationalError as e:
            self._engine.dispose()
            hint = (
                "check that the directory exists and is writable"
                if self._sqlite else "check that the server is running and the URL is right"
            )
            raise StorageError(f"cannot open storage {self._shown!r}: {e.orig}; {hint}") from e
        except SQLAlchemyError as e:
            self._engine.dispose()
            hint = "; is it an SQLite database file?" if self._sqlite else ""
            raise StorageError(f"cannot open storage {self._shown!r}: {_describe(e)}{hint}") from e

    def _open_schema(self, create: bool) -> None:
        with self._begin_read() as conn:
            found = read_schema_version(conn)
        if found == SCHEMA_VERSION:
            return
        if found is None and not create:
            raise StorageError(f"storage {self._shown!r} holds no tunelab data; check the URL")
        if found is not None and not self._upgrade:
            if found < SCHEMA_VERSION:  # opened as it is, on request: statements of its schema
                self._q = Statements(lock_rows=not self._sqlite, schema=found, dialect=self._dialect)
            return
        check_not_newer(self._shown, found)
        found = migrate(self._engine, self._shown)
        if found is not None and found < SCHEMA_VERSION:
            self.upgraded_from = found
            logger.warning(
                "upgraded the tunelab database at %s from schema %d to %d", self._shown, found, SCHEMA_VERSION
            )

    def _create_now(self) -> None:
        """Create the SQLite file that was absent when this storage opened (or open it, if another process has)."""
        with self._create_lock:
            if self._absent is not None:
                self._open_schema(create=True)
                self._absent = None

    @property
    @_operation
    def schema_version(self) -> int | None:
        """The schema version of the database (None for an SQLite file not created yet); this
        tunelab's is :data:`~tunelab.storage.SCHEMA_VERSION`."""
        if self._absent is not None and not os.path.exists(self._absent):
            return None
        with self._begin_read() as conn:
            return read_schema_version(conn)

    def upgrade_schema(self) -> tuple[int, int]:
        """Bring the database to this tunelab's schema, in one transaction where the database allows and
        under a lock (a second process waits, then finds the work done).

        Returns ``(version before, version now)``, equal when there was nothing to do. StorageError for a
        database written by a newer tunelab, or when the upgrade failed (the database is as it was, but
        on MySQL/MariaDB, whose DDL commits at once: there, run it again).
        """
        if self._absent is not None:
            raise StorageError(f"no database file at {self._absent!r} (storage {self._shown!r}): nothing to upgrade")
        before = self.schema_version
        if before is None:
            raise StorageError(f"storage {self._shown!r} holds no tunelab data; check the URL")
        check_not_newer(self._shown, before)
        try:
            found = migrate(self._engine, self._shown)
        except SQLAlchemyError as e:
            raise StorageError(
                f"upgrading the tunelab database at {self._shown} from schema {before} to {SCHEMA_VERSION} "
                f"failed: {_describe(e)}"
            ) from e
        self._q = Statements(lock_rows=not self._sqlite, dialect=self._dialect)
        return (SCHEMA_VERSION if found is None else found), SCHEMA_VERSION

    # -- transactions ----------------------------------------------------------------------
    def _with_retries(self, what: str, call: Callable[[], R], timeout: float | None = None) -> R:
        timeout = self._retry_timeout if timeout is None else timeout
        if self._sqlite or timeout <= 0:  # SQLite waits on its own (busy timeout)
            return call()
        deadline = time.monotonic() + timeout
        delay = 0.05
        self._local.attempt = 0
        while True:
            try:
                return call()
            except DBAPIError as e:
                if not _is_transient(e):
                    raise
                if time.monotonic() + delay > deadline:
                    gone = StorageError(
                        f"storage {self._shown!r}: {what} failed and the server did not come back within "
                        f"{timeout:g}s ({e.orig}); check the server and the URL, or raise retry_timeout"
                    )
                    gone.transient = True
                    raise gone from e
                logger.warning("storage: %s failed (%s); retrying in %.2fs", what, str(e.orig).strip(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                self._local.attempt += 1


    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._absent is not None:
            self._create_now()
        with self._engine.connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        if self._absent is not None:
            if not os.path.exists(self._absent):
                with _empty_database() as conn:
                    yield conn
                return
            self._create_now()  # another process created it meanwhile
        with self._begin_read() as conn:
            yield conn

    @contextmanager
    def _begin_read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def _for_update(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return stmt if self._sqlite else stmt.with_for_update()

    # -- studies ---------------------------------------------------------------------------
    @_operation
    def create_study(
        self,
        name: str,
        direction: str,
        seed: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        _check_length("study", name, MAX_STUDY_NAME_LENGTH)
        now = time.time()
        values = dict(
            name=name, direction=direction, seed=seed, next_number=0,
            user_attrs=_dumps(dict(user_attrs or {})),
            system_attrs=_dumps(dict(system_attrs or {})), created_at=now,
        )
        try:
            with self._write() as conn:
                study_id = conn.execute(studies_table.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise DuplicatedStudyError(
                f"a study named {name!r} already exists; pass load_if_exists=True to load it, "
                "or choose another name"
            ) from None
        return StudyRecord(
            int(study_id), name, direction, seed,
            dict(user_attrs or {}), dict(system_attrs or {}), _time(now),
        )

    @_operation
    def get_study(self, name: str) -> StudyRecord:
        s = studies_table
        with self._read() as conn:
            row = conn.execute(sa.select(s).where(s.c.name == name)).first()
        if row is None and self._absent is not None:
            raise StudyNotFoundError(
                f"no study named {name!r} in {self._shown}: there is no database file at {self._absent!r} "
                "(tunelab creates it with the first study); check the path"
            )
        if row is None:
            raise StudyNotFoundError(
                f"no study named {name!r} in {self._shown}; list them with `tunelab studies "
                f"--storage {self._shown}`, or create it with create_study"
            )
        return StudyRecord(
            row.study_id, row.name, row.direction, row.seed,
            json.loads(row.user_attrs), json.loads(row.system_attrs), _time(row.created_at),
        )

    @_operation
    def list_studies(self) -> list[StudySummary]:
        s, t = studies_table, trials_table
        with self._read() as conn:
            studies = conn.execute(
                sa.select(s.c.study_id, s.c.name, s.c.direction, s.c.created_at).order_by(s.c.study_id)
            ).all()
            counts = conn.execute(
                sa.select(t.c.study_id, t.c.state, sa.func.count()).group_by(t.c.study_id, t.c.state)
            ).all()
            best = conn.execute(
                sa.select(t.c.study_id, sa.func.min(t.c.value), sa.func.max(t.c.value))
                .where(t.c.state == TrialState.COMPLETE.value)
                .group_by(t.c.study_id)
            ).all()
        by_study: dict[int, dict[str, int]] = {}
        for sid, state, n in counts:
            by_study.setdefault(sid, {})[state] = n
        best_by = {sid: (lo, hi) for sid, lo, hi in best}
        out = []
        for sid, name, direction, created in studies:
            c = by_study.get(sid, {})
            lo_hi = best_by.get(sid)
            best_value = None if lo_hi is None else (lo_hi[0] if direction == "minimize" else lo_hi[1])
            out.append(StudySummary(name, direction, sum(c.values()), c, best_value, _time(created)))
        return out

    @_operation
    def delete_study(self, study_id: int) -> None:
        t = trials_table
        with self._write() as conn:
            ids = sa.select(t.c.trial_id).where(t.c.study_id == study_id).scalar_subquery()
            conn.execute(values_table.delete().where(values_table.c.trial_id.in_(ids)))
            conn.execute(t.delete().where(t.c.study_id == study_id))
            conn.execute(distributions_table.delete().where(distributions_table.c.study_id == study_id))
            if conn.execute(studies_table.delete().where(studies_table.c.study_id == study_id)).rowcount != 1:
                raise StudyNotFoundError(f"no study with id {study_id}")

    @_operation
    def set_study_attrs(
        self,
        study_id: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        s = studies_table
        with self._write() as conn:
            row = conn.execute(
                self._for_update(sa.select(s.c.user_attrs, s.c.system_attrs).where(s.c.study_id == study_id))
            ).first()
            if row is None:
                raise StudyNotFoundError(f"no study with id {study_id}")
            conn.execute(s.update().where(s.c.study_id == study_id).values(
                user_attrs=_dumps({**json.loads(row.user_attrs), **(user_attrs or {})}),
                system_attrs=_dumps({**json.loads(row.system_attrs), **(system_attrs or {})}),
            ))

    @_operation
    def register_distribution(self, study_id: int, name: str, distribution: Distribution) -> Distribution:
        _check_length("parameter", name, MAX_PARAM_NAME_LENGTH)
        d = distributions_table
        text = _dumps(distribution.to_json())
        query = sa.select(d.c.distribution).where(d.c.study_id == study_id, d.c.name == name)
        with self._write() as conn:
            existing = conn.execute(query).scalar()
            if existing is None:
                try:
                    with conn.begin_nested():
                        conn.execute(d.insert().values(study_id=study_id, name=name, distribution=text))
                    return distribution
                except IntegrityError:  # another process registered it first
                    existing = conn.execute(query).scalar()
        return self._dist(str(existing))

    # -- trials ----------------------------------------------------------------------------
    def _dist(self, text: str) -> Distribution:
        d = self._dist_cache.get(text)
        if d is None:
            d = self._dist_cache[text] = distribution_from_json(json.loads(text))
        return d

    def _dists(self, text: str) -> dict[str, Distribution]:
        # Trials of a study mostly share one distributions text: parse each text once.
        d = self._dists_cache.get(text)
        if d is None:
            if len(self._dists_cache) > 4096:
                self._dists_cache.clear()
            d = self._dists_cache[text] = {
                k: distribution_from_json(v) for k, v in json.loads(text).items()
            }
        return dict(d)

    def _dists_to_text(self, distributions: Mapping[str, Distribution]) -> str:
        return _dumps({k: v.to_json() for k, v in distributions.items()})

    def _row_to_trial(self, row: Any) -> FrozenTrial:
        dists = self._dists(row.distributions)
        return FrozenTrial(
            number=row.number,
            state=TrialState(row.state),
            value=row.value,
            params=json.loads(row.params),
            distributions=dists,
            user_attrs=json.loads(row.user_attrs),
            system_attrs=json.loads(row.system_attrs),
            datetime_start=_time(row.started_at),
            datetime_complete=_time(row.completed_at),
            error=row.error,
            trial_id=row.trial_id,
            values=None if (v := getattr(row, "objective_values", None)) is None else tuple(json.loads(v)),
        )

    @_operation
    def create_trial(
        self,
        study_id: int,
        state: TrialState = TrialState.RUNNING,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
        heartbeat: bool = False,
    ) -> FrozenTrial:
        with self._write() as conn:
            return self._insert_trial(
                conn, study_id, state, params, distributions, user_attrs, system_attrs, heartbeat
            )

    def _insert_trial(
        self,
        conn: Connection,
        study_id: int,
        state: TrialState,
        params: Mapping[str, ParamValue] | None,
        distributions: Mapping[str, Distribution] | None,
        user_attrs: Mapping[str, Any] | None,
        system_attrs: Mapping[str, Any] | None,
        heartbeat: bool,
    ) -> FrozenTrial:
        now = time.time() if state == TrialState.RUNNING else None
        q = self._q
        number = conn.execute(q.next_number, {"b_study_id": study_id}).scalar()
        if number is None:
            raise StudyNotFoundError(f"no study with id {study_id}")
        conn.execute(q.bump_number, {"b_study_id": study_id, "b_next": number + 1})
        beating = heartbeat and state == TrialState.RUNNING
        row = {
            "study_id": study_id, "number": number, "state": state.value,
            "params": _dumps(dict(params or {})),
            "distributions": self._dists_to_text(distributions or {}),
            "user_attrs": _dumps(dict(user_attrs or {})),
            "system_attrs": _dumps(dict(system_attrs or {})),
            "started_at": now,
        }
        if beating and q.clock is None:
            row["b_now"] = now  # the heartbeat on this process's clock (SQLite)
        trial_id = conn.execute(
            q.insert_trial_beating if beating else q.insert_trial, row
        ).inserted_primary_key[0]  # type: ignore[index]
        return FrozenTrial(
            number=number, state=state, value=None, params=dict(params or {}),
            distributions=dict(distributions or {}), user_attrs=dict(user_attrs or {}),
            system_attrs=dict(system_attrs or {}), datetime_start=_time(now), trial_id=int(trial_id),
        )

    @_operation
    def start_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial:
        with self._write() as conn:
            claimed = self._claim(conn, study_id, heartbeat)
            if claimed is not None:
                return claimed
            return self._insert_trial(conn, study_id, TrialState.RUNNING, None, None, None, None, heartbeat)

    @_operation
    def claim_waiting_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial | None:
        with self._read() as conn:  # most asks find nothing waiting: check without a write lock
            if conn.execute(self._q.any_waiting, {"b_study_id": study_id}).first() is None:
                return None
        with self._write() as conn:
            return self._claim(conn, study_id, heartbeat)

    def _claim(self, conn: Connection, study_id: int, heartbeat: bool) -> FrozenTrial | None:
        # The row is ours: SQLite's BEGIN IMMEDIATE excludes other writers, server
        # databases lock it. The guarded UPDATE is a last check, not a retry loop.
        q = self._q
        row = conn.execute(q.first_waiting, {"b_study_id": study_id}).first()
        if row is None:
            return None
        now = time.time()
        claimed = conn.execute(q.claim_beating if heartbeat else q.claim, {"tid": row.trial_id, "b_now": now}).rowcount
        if claimed != 1:
            return None
        return replace(self._row_to_trial(row), state=TrialState.RUNNING, datetime_start=_time(now))

    def _merge_trial_json(
        self,
        conn: Connection,
        trial_id: int,
        params: Mapping[str, ParamValue] | None,
        distributions: Mapping[str, Distribution] | None,
        user_attrs: Mapping[str, Any] | None,
        system_attrs: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Check the trial is RUNNING and return its four JSON columns with the changes merged in."""
        row = conn.execute(self._q.trial_json, {"tid": trial_id}).first()
        if row is None:
            raise TrialNotFoundError(f"no trial with id {trial_id}")
        if row.state != RUNNING:
            raise TrialStateError(
                f"trial {row.number} is {row.state}, not RUNNING; a finished trial cannot change"
            )

        def merged(text: str, changes: Mapping[str, Any] | None) -> str:
            return _dumps({**json.loads(text), **changes}) if changes else text

        dists = {k: v.to_json() for k, v in (distributions or {}).items()}
        return {
            "b_params": merged(row.params, params),
            "b_distributions": merged(row.distributions, dists),
            "b_user_attrs": merged(row.user_attrs, user_attrs),
            "b_system_attrs": merged(row.system_attrs, system_attrs),
        }

    @_operation
    def update_trial(
        self,
        trial_id: int,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        with self._write() as conn:
            values = self._merge_trial_json(conn, trial_id, params, distributions, user_attrs, system_attrs)
            conn.execute(self._q.update_json, {"tid": trial_id, **values})

    @_operation
    def annotate_trial(self, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        with self._write() as conn:
            row = conn.execute(self._q.user_attrs_of, {"tid": trial_id}).first()
            if row is None:
                raise TrialNotFoundError(f"no trial with id {trial_id}")
            if user_attrs:
                merged = _dumps({**json.loads(row.user_attrs), **user_attrs})
                conn.execute(self._q.update_user_attrs, {"tid": trial_id, "b_user_attrs": merged})

    @_operation
    def append_trial_event(self, trial_id: int, key: str, event: Mapping[str, Any]) -> int:
        event = json.loads(_dumps(dict(event)))  # refuses non-JSON data now
        with self._write() as conn:
            row = conn.execute(self._q.system_attrs_of, {"tid": trial_id}).first()
            if row is None:
                raise TrialNotFoundError(f"no trial with id {trial_id}")
            if row.state != RUNNING:
                raise TrialStateError(f"trial {row.number} is {row.state}, not RUNNING; a finished trial cannot change")
            attrs = json.loads(row.system_attrs)
            index, appended = append_event(attrs, key, event, row.number)
            if appended:  # else a retry of an append that committed
                conn.execute(self._q.update_system_attrs, {"tid": trial_id, "b_system_attrs": _dumps(attrs)})
            return index

    @_operation
    def restore_times(self, trial_id: int, start: datetime | None, complete: datetime | None) -> bool:
        with self._write() as conn:
            row = conn.execute(self._q.state_of, {"tid": trial_id}).first()
            if row is None:
                raise TrialNotFoundError(f"no trial with id {trial_id}")
            if row.state in (RUNNING, TrialState.WAITING.value):
                raise TrialStateError(f"trial {row.number} is {row.state}: only a finished trial's times are restored")
            conn.execute(sa.update(_T).where(_T.c.trial_id == trial_id).values(
                started_at=None if start is None else start.timestamp(),
                completed_at=None if complete is None else complete.timestamp()))
        return True

    @_operation
    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        error: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
        values: Sequence[float] | None = None,
    ) -> None:
        value, values = check_values(value, values)
        q = self._q
        if values is not None and q.schema < 2:
            raise StorageError(
                f"storage {self._shown!r} is at schema {q.schema}, which cannot keep several objectives' values; "
                "upgrade it: tunelab storage upgrade (or tunelab.storage.upgrade(url))"
            )
        args: dict[str, Any] = {
            "tid": trial_id, "b_state": state.value, "b_value": value, "b_error": error, "b_now": time.time(),
            "b_values": None if values is None else json.dumps(values),
        }
        with self._write() as conn:
            if params or distributions or user_attrs or system_attrs:
                args.update(self._merge_trial_json(conn, trial_id, params, distributions, user_attrs, system_attrs))
                done = conn.execute(q.finish_with_json, args).rowcount
            else:
                done = conn.execute(q.finish, args).rowcount
            if done != 1:
                row = conn.execute(q.state_of, {"tid": trial_id}).first()
                if row is None:
                    raise TrialNotFoundError(f"no trial with id {trial_id}")
                if row.state == state.value and getattr(self._local, "attempt", 0) > 0:
                    return  # an earlier attempt committed before its connection was lost
                raise TrialStateError(
                    f"trial {row.number} is {row.state}, not RUNNING; a finished trial cannot "
                    "be finished again"
                )

    @_operation
    def discard_trial(self, trial_id: int) -> bool:
        t = trials_table
        with self._write() as conn:
            if conn.execute(sa.select(values_table.c.trial_id).where(values_table.c.trial_id == trial_id)
                            .limit(1)).first() is not None:
                return False  # it has reported: its curve is kept
            deleted = conn.execute(t.delete().where(
                (t.c.trial_id == trial_id) & (t.c.state == RUNNING) & (t.c.params == "{}")
            )).rowcount
            return bool(deleted == 1)

    @_operation
    def report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> None:
        self._report_steps(trial_id, [(step, metrics)])

    @_operation
    def report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        self._report_steps(trial_id, points)

    def _report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Every point in one write transaction: one state check, then each step's rows replaced."""
        if not points:
            return
        for _step, metrics in points:
            for k in metrics:
                if len(k) > MAX_METRIC_NAME_LENGTH:
                    _check_length("metric", k, MAX_METRIC_NAME_LENGTH)
        q = self._q
        with self._write() as conn:
            row = conn.execute(q.state_of, {"tid": trial_id}).first()
            if row is None:
                raise TrialNotFoundError(f"no trial with id {trial_id}")
            if row.state != RUNNING:
                raise TrialStateError(f"trial {row.number} is {row.state}; only a RUNNING trial can report")
            merged: dict[tuple[int, str], float] = {}  # a later point wins on the same step and metric
            for step, metrics in points:
                for k, x in metrics.items():
                    merged[(int(step), k)] = float(x)
            if q.upsert_values_sqlite is not None:
                conn.exec_driver_sql(q.upsert_values_sqlite,
                                     [(trial_id, k, step, encode_metric(x)) for (step, k), x in merged.items()])
                return
            rows = [{"trial_id": trial_id, "metric": k, "step": step, "value": encode_metric(x)}
                    for (step, k), x in merged.items()]
            if q.upsert_values is not None:
                conn.execute(q.upsert_values, rows)
                return
            by_step: dict[int, list[str]] = {}
            for step, k in merged:
                by_step.setdefault(step, []).append(k)
            by_names: dict[tuple[str, ...], list[int]] = {}  # steps with the same metrics: one delete
            for step, step_names in by_step.items():
                by_names.setdefault(tuple(sorted(step_names)), []).append(step)
            for names, steps in by_names.items():
                if len(steps) == 1:
                    conn.execute(q.delete_values, {"tid": trial_id, "b_step": steps[0], "b_metrics": list(names)})
                else:
                    conn.execute(q.delete_values_at_steps,
                                 {"tid": trial_id, "b_steps": steps, "b_metrics": list(names)})
            conn.execute(q.insert_values, rows)

    @_operation
    def get_curves(self, trial_id: int) -> Curves:
        v = values_table
        with self._read() as conn:
            rows = conn.execute(
                sa.select(v.c.metric, v.c.step, v.c.value)
                .where(v.c.trial_id == trial_id).order_by(v.c.metric, v.c.step)
            ).all()
        out: Curves = {}
        if not rows:
            with self._read() as conn:
                if conn.execute(self._q.state_of, {"tid": trial_id}).first() is None:
                    raise TrialNotFoundError(f"no trial with id {trial_id}")
        for metric, step, value in rows:
            steps, values = out.setdefault(metric, ([], []))
            steps.append(step)
            values.append(decode_metric(value))
        return out

    @_operation
    def get_metric_at(self, study_id: int, metric: str, steps: Sequence[int] | None = None) -> list[MetricPoint]:
        q = self._q
        with self._read() as conn:
            if steps is None:
                rows = conn.execute(q.metric_at_all_steps, {"b_study_id": study_id, "b_metric": metric}).all()
            elif steps:
                rows = conn.execute(q.metric_at_steps, {
                    "b_study_id": study_id, "b_metric": metric, "b_steps": sorted({int(s) for s in steps}),
                }).all()
            else:
                rows = []
            if not rows and conn.execute(q.study_exists, {"b_study_id": study_id}).first() is None:
                raise StudyNotFoundError(f"no study with id {study_id}")
        return [
            MetricPoint(number, _STATES[state], step, decode_metric(value)) for number, state, step, value in rows
        ]

    @_operation
    def heartbeat(self, trial_id: int) -> None:
        with self._write() as conn:
            beat = {"tid": trial_id} if self._q.clock is not None else {"tid": trial_id, "b_now": time.time()}
            conn.execute(self._q.heartbeat, beat)

    @_operation
    def fail_stale_trials(self, study_id: int, grace_seconds: float) -> list[FrozenTrial]:
        running = TrialState.RUNNING.value
        error = (
            f"heartbeat lost: no sign of life for over {grace_seconds:g}s "
            "(the worker process died or hung)"
        )
        failed = []
        with self._write() as conn:
            now = time.time()
            clock = self._q.clock if self._q.clock is not None else sa.literal(now)  # the heartbeats' clock
            rows = conn.execute(
                sa.select(*self._q.trial_columns).where(
                    _T.c.study_id == study_id, _T.c.state == running,
                    _T.c.heartbeat_at.is_not(None), _T.c.heartbeat_at < clock - grace_seconds,
                )
            ).all()
            for row in rows:
                done = conn.execute(
                    _T.update().where(_T.c.trial_id == row.trial_id, _T.c.state == running)
                    .values(state=TrialState.FAIL.value, error=error, completed_at=now, heartbeat_at=None)
                ).rowcount
                if done == 1:
                    t = self._row_to_trial(row)
                    failed.append(FrozenTrial(**{
                        **t.__dict__, "state": TrialState.FAIL, "error": error,
                        "datetime_complete": _time(now),
                    }))
        return failed

    @_operation
    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._read() as conn:
            row = conn.execute(self._q.trial_by_id, {"tid": trial_id}).first()
        if row is None:
            raise TrialNotFoundError(f"no trial with id {trial_id}")
        return self._row_to_trial(row)

    @_operation
    def get_trial_system_attr(self, trial_id: int, key: str) -> Any:
        with self._read() as conn:
            row = conn.execute(self._q.system_attrs_by_id, {"tid": trial_id}).first()
        if row is None:
            raise TrialNotFoundError(f"no trial with id {trial_id}")
        return json.loads(row.system_attrs).get(key)

    @_operation
    def get_trial_system_attrs(self, trial_id: int, keys: Sequence[str]) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(self._q.system_attrs_by_id, {"tid": trial_id}).first()
        if row is None:
            raise TrialNotFoundError(f"no trial with id {trial_id}")
        attrs = json.loads(row.system_attrs)
        return {key: attrs.get(key) for key in keys}

    @_operation
    def get_trials(
        self,
        study_id: int,
        states: Iterable[TrialState] | None = None,
        min_number: int = 0,
        max_number: int | None = None,
    ) -> list[FrozenTrial]:
        q = sa.select(*self._q.trial_columns).where(_T.c.study_id == study_id)
        if min_number:
            q = q.where(_T.c.number >= min_number)
        if max_number is not None:
            q = q.where(_T.c.number <= max_number)
        if states is not None:
            q = q.where(_T.c.state.in_([s.value for s in states]))
        with self._read() as conn:
            rows = conn.execute(q.order_by(_T.c.number)).all()
        return [self._row_to_trial(r) for r in rows]

    @_operation
    def get_trial_values(self, study_id: int, min_number: int = 0) -> list[TrialValue]:
        q = self._q
        with self._read() as conn:
            rows = conn.execute(q.trial_values, {"b_study_id": study_id, "b_min_number": min_number}).all()
            if not rows and conn.execute(q.study_exists, {"b_study_id": study_id}).first() is None:
                raise StudyNotFoundError(f"no study with id {study_id}")
        return [TrialValue(number, _STATES[state], value) for number, state, value in rows]

    @_operation
    def count_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(_T).where(_T.c.study_id == study_id)
        if states is not None:
            q = q.where(_T.c.state.in_([s.value for s in states]))
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)

    @_operation
    def get_best_trial(self, study_id: int, direction: str) -> FrozenTrial | None:
        order = _T.c.value.asc() if direction == "minimize" else _T.c.value.desc()
        with self._read() as conn:
            row = conn.execute(
                sa.select(*self._q.trial_columns)
                .where(_T.c.study_id == study_id, _T.c.state == TrialState.COMPLETE.value,
                       _T.c.value.is_not(None))
                .order_by(order, _T.c.number).limit(1)
            ).first()
        return None if row is None else self._row_to_trial(row)

    @_operation
    def get_distributions(self, study_id: int) -> dict[str, Distribution]:
        d = distributions_table
        with self._read() as conn:
            rows = conn.execute(sa.select(d.c.name, d.c.distribution).where(d.c.study_id == study_id)).all()
            if not rows and conn.execute(self._q.study_exists, {"b_study_id": study_id}).first() is None:
                raise StudyNotFoundError(f"no study with id {study_id}")
        return {str(name): self._dist(str(text)) for name, text in rows}


_OPEN_STORAGES: weakref.WeakSet[SQLStorage] = weakref.WeakSet()


def _dispose_in_child() -> None:
    """In a forked child, drop the parent's pooled connections without closing them (they are the parent's)."""
    for storage in list(_OPEN_STORAGES):
        storage._engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_in_child)
