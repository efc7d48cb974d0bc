"""The SQL schema of tunelab's storage and the hot-path statements built on it.

One row per study, one row per trial (params, distributions and attributes as JSON
text), one row per reported metric value. Times are epoch seconds, floats are DOUBLE.

The tables here are the newest schema, :data:`SCHEMA_VERSION`. A change to them is a new
revision in ``storage/migrations/versions/`` (which brings older databases up to date) and
``SCHEMA_VERSION`` one higher; the revisions never import these tables, each spells out its own.
"""

from __future__ import annotations

import importlib
import math
import sqlite3
from typing import Any

import sqlalchemy as sa

from tunelab.records import TrialState
from tunelab.storage.base import FLOAT_MAX, stored_metric

#: The schema this tunelab writes: revision ``f"{SCHEMA_VERSION:04d}"`` of ``storage/migrations``.
#: 1: the first release. 2: ``trials.objective_values``. 3: names compared exactly on MySQL/MariaDB,
#: ``trial_values.step`` BIGINT on the servers, JSON and error text LONGTEXT on MySQL/MariaDB.
SCHEMA_VERSION = 3

#: Alembic's version table, named for tunelab so that it never meets another application's.
VERSION_TABLE = "tunelab_alembic_version"

metadata = sa.MetaData()

#: The collation of names on MySQL/MariaDB (schema 3): their default collations compare text case- and
#: accent-insensitively, so study 'MO' was a duplicate of 'mo', parameter 'LR' got the distribution of
#: 'lr', and a metric 'Loss' overwrote 'loss'. SQLite and PostgreSQL compare text exactly already.
NAME_COLLATION = "utf8mb4_bin"


def _long_text() -> sa.types.TypeEngine[str]:
    from sqlalchemy.dialects import mysql

    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


#: JSON and error text (schema 3: LONGTEXT on MySQL/MariaDB, whose TEXT keeps 64 KiB: a trial whose
#: attributes passed it ended FAIL, "could not be recorded", where SQLite and PostgreSQL kept it).
LONG_TEXT = _long_text()


def name_type(length: int) -> sa.types.TypeEngine[str]:
    """A VARCHAR of names (studies, parameters, metrics) that every database compares exactly."""
    from sqlalchemy.dialects import mysql

    exact = mysql.VARCHAR(length, charset="utf8mb4", collation=NAME_COLLATION)
    return sa.String(length).with_variant(exact, "mysql", "mariadb")


meta_table = sa.Table(
    "tunelab_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

studies_table = sa.Table(
    "studies", metadata,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", name_type(512), nullable=False, unique=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("next_number", sa.Integer, nullable=False, default=0),
    sa.Column("user_attrs", LONG_TEXT, nullable=False),
    sa.Column("system_attrs", LONG_TEXT, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sqlite_autoincrement=True,  # ids of a deleted study are never reused by a new one
)

distributions_table = sa.Table(
    "study_distributions", metadata,
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", name_type(512), primary_key=True),
    sa.Column("distribution", LONG_TEXT, nullable=False),
)

trials_table = sa.Table(
    "trials", metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("params", LONG_TEXT, nullable=False),
    sa.Column("distributions", LONG_TEXT, nullable=False),
    sa.Column("user_attrs", LONG_TEXT, nullable=False),
    sa.Column("system_attrs", LONG_TEXT, nullable=False),
    sa.Column("error", LONG_TEXT, nullable=True),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("completed_at", sa.Double, nullable=True),
    sa.Column("heartbeat_at", sa.Double, nullable=True),
    # Schema 2: a JSON list of the objective values of a multi-objective trial (NULL for one objective).
    sa.Column("objective_values", LONG_TEXT, nullable=True),
    sa.UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
    sa.Index("ix_trials_study_state_number", "study_id", "state", "number"),
    sqlite_autoincrement=True,
)

values_table = sa.Table(
    "trial_values", metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("metric", name_type(256), primary_key=True),
    # Schema 3: BIGINT on the servers (a step counting samples or tokens passes 2**31); SQLite's INTEGER is 64-bit.
    sa.Column("step", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("value", sa.Double, nullable=True),  # NaN as NULL, +-inf as +-DBL_MAX: see _encode_metric
)

_T = trials_table
TRIAL_COLUMNS = (
    _T.c.trial_id, _T.c.number, _T.c.state, _T.c.value, _T.c.params, _T.c.distributions,
    _T.c.user_attrs, _T.c.system_attrs, _T.c.error, _T.c.started_at, _T.c.completed_at, _T.c.objective_values,
)
TRIAL_COLUMNS_SCHEMA1 = TRIAL_COLUMNS[:-1]
"""What a schema-1 database (opened with ``upgrade=False``) has: no ``objective_values``."""


_S = studies_table
_V = values_table
RUNNING = TrialState.RUNNING.value
WAITING = TrialState.WAITING.value
_P = sa.bindparam


class Statements:
    """The hot-path statements, built once: building a statement costs ~4x executing it."""

    def __init__(self, lock_rows: bool, schema: int = SCHEMA_VERSION, dialect: str = "") -> None:
        def locked(stmt: sa.Select[Any]) -> sa.Select[Any]:
            return stmt.with_for_update() if lock_rows else stmt

        self.schema = schema
        columns = TRIAL_COLUMNS if schema >= 2 else TRIAL_COLUMNS_SCHEMA1
        self.trial_columns = columns

        self.any_waiting = (
            sa.select(_T.c.trial_id).where(_T.c.study_id == _P("b_study_id"), _T.c.state == WAITING).limit(1)
        )
        first_waiting = (
            sa.select(*columns).where(_T.c.study_id == _P("b_study_id"), _T.c.state == WAITING)
            .order_by(_T.c.number).limit(1)
        )
        # A locking read sees the latest committed row (a plain read in a REPEATABLE READ
        # transaction would see the same claimed row forever); SKIP LOCKED lets concurrent
        # claimers take the next one instead of queueing.
        self.first_waiting = first_waiting.with_for_update(skip_locked=True) if lock_rows else first_waiting
        # Heartbeats are stamped and judged on the server's clock where there is a server: a worker
        # host whose clock is off cannot make live trials look lost (or lost ones look alive).
        self.clock = server_clock(dialect)
        beat = _P("b_now") if self.clock is None else self.clock
        claim = _T.update().where(_T.c.trial_id == _P("tid"), _T.c.state == WAITING)
        self.claim = claim.values(state=RUNNING, started_at=_P("b_now"), heartbeat_at=None)
        self.claim_beating = claim.values(state=RUNNING, started_at=_P("b_now"), heartbeat_at=beat)
        self.next_number = locked(sa.select(_S.c.next_number).where(_S.c.study_id == _P("b_study_id")))
        self.bump_number = (
            _S.update().where(_S.c.study_id == _P("b_study_id")).values(next_number=_P("b_next"))
        )
        self.insert_trial = _T.insert()
        self.insert_trial_beating = _T.insert().values(heartbeat_at=beat)
        self.trial_json = locked(
            sa.select(_T.c.number, _T.c.state, _T.c.params, _T.c.distributions, _T.c.user_attrs,
                      _T.c.system_attrs).where(_T.c.trial_id == _P("tid"))
        )
        self.finish = (
            _T.update().where(_T.c.trial_id == _P("tid"), _T.c.state == RUNNING)
            .values(state=_P("b_state"), value=_P("b_value"), error=_P("b_error"), completed_at=_P("b_now"),
                    heartbeat_at=None, **({"objective_values": _P("b_values")} if schema >= 2 else {}))
        )
        self.finish_with_json = self.finish.values(
            params=_P("b_params"), distributions=_P("b_distributions"), user_attrs=_P("b_user_attrs"),
            system_attrs=_P("b_system_attrs"),
        )
        self.update_json = (
            _T.update().where(_T.c.trial_id == _P("tid")).values(
                params=_P("b_params"), distributions=_P("b_distributions"), user_attrs=_P("b_user_attrs"),
                system_attrs=_P("b_system_attrs"),
            )
        )
        self.state_of = sa.select(_T.c.number, _T.c.state).where(_T.c.trial_id == _P("tid"))
        self.user_attrs_of = locked(sa.select(_T.c.user_attrs).where(_T.c.trial_id == _P("tid")))
        self.system_attrs_of = locked(
            sa.select(_T.c.number, _T.c.state, _T.c.system_attrs).where(_T.c.trial_id == _P("tid"))
        )
        self.update_system_attrs = (
            _T.update().where(_T.c.trial_id == _P("tid")).values(system_attrs=_P("b_system_attrs"))
        )
        self.trial_values = (
            sa.select(_T.c.number, _T.c.state, _T.c.value)
            .where(_T.c.study_id == _P("b_study_id"), _T.c.number >= _P("b_min_number"))
            .order_by(_T.c.number)
        )
        self.update_user_attrs = _T.update().where(_T.c.trial_id == _P("tid")).values(user_attrs=_P("b_user_attrs"))
        self.trial_by_id = sa.select(*columns).where(_T.c.trial_id == _P("tid"))
        self.system_attrs_by_id = sa.select(_T.c.system_attrs).where(_T.c.trial_id == _P("tid"))
        self.delete_values = _V.delete().where(
            _V.c.trial_id == _P("tid"), _V.c.step == _P("b_step"), _V.c.metric.in_(_P("b_metrics", expanding=True))
        )
        # Several steps that report the same metrics (a gathered batch of reports): one statement.
        self.delete_values_at_steps = _V.delete().where(
            _V.c.trial_id == _P("tid"), _V.c.step.in_(_P("b_steps", expanding=True)),
            _V.c.metric.in_(_P("b_metrics", expanding=True)),
        )
        self.insert_values = _V.insert()
        # Points replaced in place where the dialect has an upsert on the primary key (trial_id,
        # metric, step): one statement instead of a delete per set of metrics and an insert.
        self.upsert_values = upsert_values(dialect)
        # SQLite's own executemany of the same upsert: half the cost per point of going through
        # SQLAlchemy's parameter processing (a gathered batch of boosting rounds is hundreds of points).
        sqlite = self.upsert_values is not None and dialect == "sqlite"
        self.upsert_values_sqlite = SQLITE_UPSERT_VALUES if sqlite else None
        # One metric across a study, for pruners. Plan on SQLite, PostgreSQL and MariaDB: the
        # study's trials by an index starting with study_id, then each trial's values by the
        # primary key prefix (trial_id, metric[, step]): no scan of the study's other metrics.
        metric_at = (
            sa.select(_T.c.number, _T.c.state, _V.c.step, _V.c.value)
            .select_from(_T.join(_V, _V.c.trial_id == _T.c.trial_id))
            .where(_T.c.study_id == _P("b_study_id"), _V.c.metric == _P("b_metric"))
            .order_by(_T.c.number, _V.c.step)
        )
        self.metric_at_all_steps = metric_at
        self.metric_at_steps = metric_at.where(_V.c.step.in_(_P("b_steps", expanding=True)))
        self.study_exists = sa.select(_S.c.study_id).where(_S.c.study_id == _P("b_study_id"))
        self.heartbeat = _T.update().where(_T.c.trial_id == _P("tid"), _T.c.state == RUNNING).values(heartbeat_at=beat)


def server_clock(dialect: str) -> sa.ColumnElement[float] | None:
    """The database server's clock in epoch seconds, as SQL; None where every process reads its own
    host's clock (SQLite: one host; a dialect tunelab has no expression for)."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Double)
    if dialect in ("mysql", "mariadb"):
        return sa.type_coerce(sa.func.unix_timestamp(sa.func.now(6)), sa.Double)
    return None


SQLITE_UPSERT_VALUES = (
    "INSERT INTO trial_values (trial_id, metric, step, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (trial_id, metric, step) DO UPDATE SET value = excluded.value"
)


def upsert_values(dialect: str) -> sa.Insert | None:
    """``INSERT ... ON CONFLICT (trial_id, metric, step) DO UPDATE`` (or MySQL's ``ON DUPLICATE KEY
    UPDATE``) into ``trial_values`` for ``dialect``; None for a dialect without one (and for an
    SQLite library older than 3.24, the first with upserts)."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 24):
        return None
    if dialect in ("sqlite", "postgresql"):
        module = importlib.import_module(f"sqlalchemy.dialects.{dialect}")
        stmt = module.insert(_V)
        return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=[_V.c.trial_id, _V.c.metric, _V.c.step], set_={"value": stmt.excluded.value},
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        stmt = mysql.insert(_V)
        return stmt.on_duplicate_key_update(value=stmt.inserted.value)
    return None


def encode_metric(x: float) -> float | None:
    """A metric value every database can store: NaN as NULL, +-inf as +-DBL_MAX (MySQL has neither); a
    finite value as :func:`~tunelab.storage.base.stored_metric` keeps it (never +-DBL_MAX, never -0.0)."""
    if math.isnan(x):
        return None
    if math.isinf(x):
        return FLOAT_MAX if x > 0 else -FLOAT_MAX
    return stored_metric(x)


def decode_metric(x: float | None) -> float:
    """Inverse of :func:`encode_metric`."""
    if x is None:
        return math.nan
    if abs(x) == FLOAT_MAX:
        return math.inf if x > 0 else -math.inf
    return x
