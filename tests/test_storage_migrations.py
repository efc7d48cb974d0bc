"""Schema migrations: databases written by older tunelabs are upgraded in place, on SQLite, PostgreSQL and MariaDB.

``tests/data/tunelab-schema1.db`` was written by the first release (schema 1), and
``tunelab-schema1.json`` holds what that release read back from it; on the server databases a
schema-1 database is built by revision ``"0001"`` alone, without Alembic's table, as that release
left it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

import tunelab
from tunelab.errors import StorageError
from tunelab.records import TrialState
from tunelab.samplers import RandomSampler
from tunelab.storage import SCHEMA_VERSION, SQLStorage, get_storage, schema_version, upgrade
from tunelab.storage.sql_migrate import alembic_config, revision_of
from tunelab.storage.sql_schema import VERSION_TABLE, meta_table, metadata

DATA = Path(__file__).parent / "data"
SCHEMA1_DB = DATA / "tunelab-schema1.db"
SCHEMA1_READ = json.loads((DATA / "tunelab-schema1.json").read_text())


@pytest.fixture
def schema1_url(tmp_path: Path) -> str:
    """A copy of the database the first release wrote."""
    path = tmp_path / "old.db"
    shutil.copy(SCHEMA1_DB, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new.db'}"
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url"))


def _dump(storage: SQLStorage) -> dict[str, Any]:
    """Everything stored, in the form of ``tunelab-schema1.json``."""
    out = {}
    for summary in storage.list_studies():
        record = storage.get_study(summary.name)
        out[record.name] = {
            "direction": record.direction, "seed": record.seed, "user_attrs": record.user_attrs,
            "system_attrs": record.system_attrs,
            "trials": [
                {
                    "number": t.number, "state": t.state.value, "value": t.value, "params": t.params,
                    "distributions": {k: d.to_json() for k, d in t.distributions.items()},
                    "user_attrs": t.user_attrs, "system_attrs": t.system_attrs, "error": t.error,
                    "datetime_start": None if t.datetime_start is None else t.datetime_start.isoformat(),
                    "datetime_complete": None if t.datetime_complete is None else t.datetime_complete.isoformat(),
                    "curves": storage.get_curves(t.trial_id),
                }
                for t in storage.get_trials(record.study_id)
            ],
        }
    return out


def _canonical(data: Any) -> str:
    # JSON text compares NaN equal to NaN, and tuples equal to lists, as the stored form does.
    return json.dumps(data, sort_keys=True)


def _versions(url: str) -> tuple[str | None, str | None, list[str]]:
    """(Alembic's revision, tunelab_meta's schema_version, the columns of trials), read directly."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            revision = (
                conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                if inspector.has_table(VERSION_TABLE) else None
            )
            version = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            columns = [c["name"] for c in inspector.get_columns("trials")]
    finally:
        engine.dispose()
    return revision, version, columns


def _execute(url: str, *statements: str | sa.Executable) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement) if isinstance(statement, str) else statement)
    finally:
        engine.dispose()


def _new_database(url: str) -> None:
    storage = SQLStorage(url)
    storage.create_study("s", "minimize", seed=0)  # an SQLite file is made by the first write
    storage.close()


def make_schema1(url: str) -> None:
    """Make the empty database at ``url`` a schema-1 database as the first release wrote it: revision
    0001's tables, no Alembic table, and a study with trials in every finished state written through
    the storage API (which schema 1 supports)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision_of(1))
            conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    finally:
        engine.dispose()
    old = SQLStorage(url, upgrade=False)
    try:
        assert old.schema_version == 1
        study_id = old.create_study("old", "minimize", seed=3, user_attrs={"kept": [1, "two"]}).study_id
        for i, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]):
            trial = old.create_trial(study_id, params={"x": i / 2}, user_attrs={"i": i})
            old.report(trial.trial_id, 0, {"loss": 1.0 + i, "acc": float("nan")})
            old.report(trial.trial_id, 1, {"loss": 0.5 + i})
            old.finish_trial(trial.trial_id, state, value=float(i) if state == TrialState.COMPLETE else None,
                             error="boom" if state == TrialState.FAIL else None)
    finally:
        old.close()


# -- the first release's SQLite file ------------------------------------------------------------
def test_opening_a_schema1_database_upgrades_it_and_keeps_everything(
    schema1_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        storage = SQLStorage(schema1_url)
    try:
        upgrades = [r for r in caplog.records if r.name == "tunelab" and "upgraded" in r.getMessage()]
        assert [r.levelno for r in upgrades] == [logging.WARNING]
        assert upgrades[0].getMessage() == (
            f"upgraded the tunelab database at {schema1_url} from schema 1 to {SCHEMA_VERSION}"
        )
        assert storage.upgraded_from == 1
        assert storage.schema_version == SCHEMA_VERSION
        assert _canonical(_dump(storage)) == _canonical(SCHEMA1_READ)
    finally:
        storage.close()
    assert _versions(schema1_url) == (
        revision_of(SCHEMA_VERSION), str(SCHEMA_VERSION), [c.name for c in metadata.tables["trials"].columns]
    )


def test_an_upgraded_study_goes_on_where_it_stopped(schema1_url: str) -> None:
    study = tunelab.load_study("schema1-study", schema1_url, sampler=RandomSampler())
    before = {t.number: t for t in study.trials}
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1, log=True), n_trials=2, show_progress=False)
    trials = study.trials
    assert [t.number for t in trials] == [*range(8)]
    assert trials[6].params["lr"] == 0.01  # the enqueued trial ran first
    assert trials[6].state == TrialState.COMPLETE and trials[7].state == TrialState.COMPLETE
    assert {t.number: t for t in trials[:6]} == {n: before[n] for n in range(6)}
    assert study.best_value == min(t.value for t in trials if t.value is not None)


def test_opening_an_up_to_date_database_changes_and_logs_nothing(
    schema1_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    SQLStorage(schema1_url).close()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tunelab"):
        again = SQLStorage(schema1_url)
    assert again.upgraded_from is None
    again.close()
    assert [r for r in caplog.records if r.name == "tunelab"] == []


def test_upgrade_returns_the_versions_and_is_idempotent(schema1_url: str, caplog: pytest.LogCaptureFixture) -> None:
    assert schema_version(schema1_url) == 1  # reading the version changes nothing
    assert _versions(schema1_url)[:2] == (None, "1")
    assert upgrade(schema1_url) == (1, SCHEMA_VERSION)
    assert upgrade(schema1_url) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert schema_version(schema1_url) == SCHEMA_VERSION
    storage = SQLStorage(schema1_url)
    try:
        assert _canonical(_dump(storage)) == _canonical(SCHEMA1_READ)
    finally:
        storage.close()


def test_upgrade_of_a_missing_file_is_an_error_that_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    for call in (upgrade, schema_version):
        with pytest.raises(StorageError, match="no database file"):
            call(url)
    assert list(tmp_path.iterdir()) == []


def test_an_upgrade_interrupted_after_its_ddl_is_completed(schema1_url: str) -> None:
    # MySQL commits an ALTER at once: the column may exist while the version still says 1.
    _execute(schema1_url, "ALTER TABLE trials ADD COLUMN objective_values TEXT")
    storage = SQLStorage(schema1_url)
    try:
        assert storage.upgraded_from == 1
        assert _canonical(_dump(storage)) == _canonical(SCHEMA1_READ)
    finally:
        storage.close()


def test_downgrading_to_schema1_keeps_the_data_for_the_first_release(schema1_url: str) -> None:
    upgrade(schema1_url)
    engine = sa.create_engine(schema1_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision_of(1))
    engine.dispose()
    assert _versions(schema1_url) == (revision_of(1), "1", [c.name for c in metadata.tables["trials"].columns][:-1])
    storage = SQLStorage(schema1_url)
    try:
        assert storage.upgraded_from == 1
        assert _canonical(_dump(storage)) == _canonical(SCHEMA1_READ)  # no curve lost to a cascade
    finally:
        storage.close()


# -- the revisions ----------------------------------------------------------------------------
def test_the_revisions_are_one_line_from_schema1_to_schema_version() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [revision_of(v) for v in range(1, SCHEMA_VERSION + 1)]
    assert [r.down_revision for r in revisions] == [None, *(revision_of(v) for v in range(1, SCHEMA_VERSION))]
    assert script.get_heads() == [revision_of(SCHEMA_VERSION)]


def _schema(url: str) -> dict[str, Any]:
    """Every table's columns, keys, constraints and indexes, as the database reports them, and the versions."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(set(inspector.get_table_names()) - {"sqlite_sequence"}):
            out[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted(
                    (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                     fk.get("options", {}).get("ondelete"))
                    for fk in inspector.get_foreign_keys(table)
                ),
                "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                "indexes": sorted(
                    (i["name"], tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table) if not i.get("duplicates_constraint")
                ),
            }
        with engine.connect() as conn:
            out["meta"] = [tuple(row) for row in conn.execute(sa.select(meta_table))]
            if VERSION_TABLE in out:
                out["revision"] = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    return out


def test_revision_0001_builds_the_tables_the_first_release_wrote(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'baseline.db'}"
    make_schema1(url)
    assert _schema(url) == _schema(f"sqlite:///{SCHEMA1_DB}")


def test_a_new_database_is_what_every_revision_run_from_nothing_builds(empty_url: str, tmp_path: Path) -> None:
    storage = SQLStorage(empty_url)
    try:
        storage.create_study("s", "minimize", seed=0)  # an SQLite file is made by the first write
        assert storage.schema_version == SCHEMA_VERSION
        assert storage.upgraded_from is None
        new = _schema(empty_url)
    finally:
        storage.close()
    assert _versions(empty_url) == (
        revision_of(SCHEMA_VERSION), str(SCHEMA_VERSION), [c.name for c in metadata.tables["trials"].columns]
    )
    # A new database gets sql_schema.py's tables directly: the revisions, run in a second database
    # (on a server, the same one emptied), must build exactly the same.
    if empty_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'revisions.db'}"
    else:
        other = empty_url
        engine = sa.create_engine(other)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
            metadata.drop_all(conn)
        engine.dispose()
    engine = sa.create_engine(other)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()
    assert _schema(other) == new


# -- every backend ----------------------------------------------------------------------------
def test_a_schema1_database_is_upgraded_on_every_backend(empty_url: str, caplog: pytest.LogCaptureFixture) -> None:
    make_schema1(empty_url)
    assert _versions(empty_url)[:2] == (None, "1")
    before = SQLStorage(empty_url, upgrade=False)
    expected = _canonical(_dump(before))
    before.close()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        storage = get_storage(empty_url, create=False)
    try:
        assert isinstance(storage, SQLStorage)
        assert storage.upgraded_from == 1
        assert f"from schema 1 to {SCHEMA_VERSION}" in caplog.text
        assert _canonical(_dump(storage)) == expected
        study_id = storage.get_study("old").study_id
        trial = storage.create_trial(study_id)
        assert trial.number == 3
        storage.report(trial.trial_id, 0, {"loss": 0.25})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=-1.0)
        best = storage.get_best_trial(study_id, "minimize")
        assert best is not None and best.number == 3
    finally:
        storage.close()
    assert _versions(empty_url) == (
        revision_of(SCHEMA_VERSION), str(SCHEMA_VERSION), [c.name for c in metadata.tables["trials"].columns]
    )


def test_a_database_of_a_newer_tunelab_is_refused_and_left_alone(empty_url: str) -> None:
    _new_database(empty_url)
    newer = SCHEMA_VERSION + 1
    _execute(
        empty_url,
        f"UPDATE {VERSION_TABLE} SET version_num = '{revision_of(newer)}'",
        meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(newer)),
    )
    shown = sa.engine.make_url(empty_url).render_as_string(hide_password=True)
    for open_it in (lambda: get_storage(empty_url), lambda: get_storage(empty_url, create=False),
                    lambda: upgrade(empty_url)):
        with pytest.raises(StorageError) as info:
            open_it()
        message = str(info.value)
        assert shown in message
        assert f"written by a newer tunelab (schema {newer}" in message
        assert "pip install -U tunelab" in message
    assert schema_version(empty_url) == newer
    assert _versions(empty_url)[:2] == (revision_of(newer), str(newer))


def test_an_unknown_alembic_revision_is_refused_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    _new_database(url)
    _execute(url, f"UPDATE {VERSION_TABLE} SET version_num = 'f00dcafe'")
    with pytest.raises(StorageError, match=r"newer tunelab \(revision 'f00dcafe'"):
        upgrade(url)


def _open_and_report(url: str, barrier: Any) -> int | None:
    barrier.wait()
    storage = SQLStorage(url)
    try:
        assert storage.schema_version == SCHEMA_VERSION
        return storage.upgraded_from
    finally:
        storage.close()


@pytest.fixture
def spawn_pool() -> Iterator[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        yield manager, pool


def test_processes_opening_an_old_database_at_once_upgrade_it_once(empty_url: str, spawn_pool: Any) -> None:
    make_schema1(empty_url)
    before = SQLStorage(empty_url, upgrade=False)
    expected = _canonical(_dump(before))
    before.close()
    manager, pool = spawn_pool
    barrier = manager.Barrier(3)
    found = pool.starmap(_open_and_report, [(empty_url, barrier)] * 3, chunksize=1)
    assert sorted(found, key=str) == [1, None, None]  # one upgraded, the others found it done
    storage = SQLStorage(empty_url)
    try:
        assert _canonical(_dump(storage)) == expected
    finally:
        storage.close()


def test_a_schema1_database_left_as_it_is_refuses_several_objectives_values_naming_the_upgrade(
    schema1_url: str,
) -> None:
    old = SQLStorage(schema1_url, upgrade=False)
    try:
        assert old.schema_version == 1
        study_id = old.get_study(old.list_studies()[0].name).study_id
        trial = old.create_trial(study_id)
        with pytest.raises(StorageError, match=r"schema 1, which cannot keep several objectives' values; upgrade "
                                               r"it: tunelab storage upgrade"):
            old.finish_trial(trial.trial_id, TrialState.COMPLETE, values=[0.5, 2.0])
        old.finish_trial(trial.trial_id, TrialState.COMPLETE, value=0.5)  # one value still goes in
        assert old.get_trial(trial.trial_id).value == 0.5
    finally:
        old.close()


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_a_schema2_server_database_is_upgraded_to_exact_names_64_bit_steps_and_long_texts(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("pg_url" if server == "postgresql" else "mariadb_url"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision_of(2))
    finally:
        engine.dispose()
    old = SQLStorage(url, upgrade=False)
    try:
        assert old.schema_version == 2
        study_id = old.create_study("mo", "minimize", seed=0).study_id
        old.register_distribution(study_id, "lr", tunelab.Float(0.0, 1.0))
        trial = old.create_trial(study_id)
        old.report(trial.trial_id, 0, {"loss": 1.0})
    finally:
        old.close()
    storage = SQLStorage(url)
    try:
        assert storage.upgraded_from == 2
        # MariaDB compared names case-insensitively: 'MO' was a duplicate of 'mo', 'LR' had 'lr''s distribution
        other = storage.create_study("MO", "maximize", seed=1).study_id
        assert other != study_id and storage.get_study("mo").study_id == study_id
        assert storage.register_distribution(study_id, "LR", tunelab.Categorical(["a"])) == tunelab.Categorical(["a"])
        storage.report(trial.trial_id, 0, {"Loss": 2.0})
        storage.report(trial.trial_id, 5_000_000_000, {"loss": 0.5})  # a 32-bit step column refused it
        assert storage.get_curves(trial.trial_id) == {"loss": ([0, 5_000_000_000], [1.0, 0.5]), "Loss": ([0], [2.0])}
        big = "x" * 100_000  # MariaDB's TEXT kept 64 KiB
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0, user_attrs={"log": big})
        assert storage.get_trial(trial.trial_id).user_attrs == {"log": big}
    finally:
        storage.close()
