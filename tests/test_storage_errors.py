"""Database errors reach the user as StorageError naming the operation and the storage, the original chained;
and reading an SQLite path that holds nothing leaves no file behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import tunelab
from tunelab.errors import ConfigError, StorageError, StudyNotFoundError
from tunelab.storage import SQLStorage, get_storage


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tunelab.db'}"
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url"))


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


# -- SQLite: a corrupt file, a full disk ------------------------------------------------------------
@pytest.mark.parametrize("create", [True, False])
def test_a_file_that_is_not_a_database_is_a_storage_error_naming_it(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "garbage.db"
    garbage = b"this is not an SQLite file \x00\xff" * 200
    path.write_bytes(garbage)
    url = f"sqlite:///{path}"
    with pytest.raises(StorageError) as info:
        get_storage(url, create=create)
    message = str(info.value)
    assert url in message
    assert "file is not a database" in message
    assert isinstance(info.value.__cause__, sa.exc.DatabaseError)
    assert path.read_bytes() == garbage


@pytest.fixture
def full_disk(tmp_path: Path) -> Any:
    """A storage with a study and a RUNNING trial whose file cannot grow by a page more."""
    url = f"sqlite:///{tmp_path / 'full.db'}"
    storage = SQLStorage(url)
    study_id = storage.create_study("s", "minimize", seed=0).study_id
    trial = storage.create_trial(study_id)
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    @sa.event.listens_for(storage.engine, "connect")
    def _no_more_pages(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    storage.engine.dispose()  # connections from now on have the limit
    yield url, storage, study_id, trial.trial_id
    storage.close()


def test_a_full_disk_on_report_is_a_storage_error_naming_the_operation(full_disk: Any) -> None:
    url, storage, _study_id, trial_id = full_disk
    with pytest.raises(StorageError) as info:
        for step in range(10_000):
            storage.report(trial_id, step, {f"metric_{i:03d}_" + "x" * 200: float(i) for i in range(20)})
    assert str(info.value) == f"report on {url} failed: OperationalError: database or disk is full"
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    assert isinstance(info.value.__cause__.orig, sqlite3.OperationalError)


def test_a_full_disk_on_create_trial_is_a_storage_error_naming_the_operation(full_disk: Any) -> None:
    url, storage, study_id, _trial_id = full_disk
    with pytest.raises(StorageError) as info:
        storage.create_trial(study_id, user_attrs={"blob": "x" * 200_000})
    assert str(info.value) == f"create_trial on {url} failed: OperationalError: database or disk is full"
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    assert storage.count_trials(study_id) == 1  # nothing half-written; reads still work


# -- every backend ------------------------------------------------------------------------------
def test_a_study_name_over_512_characters_is_a_config_error(url: str) -> None:
    storage = SQLStorage(url)
    try:
        with pytest.raises(ConfigError, match="at most 512 characters, this one has 600"):
            storage.create_study("n" * 600, "minimize", seed=0)
        assert storage.create_study("n" * 512, "minimize", seed=0).name == "n" * 512
        assert [s.name for s in storage.list_studies()] == ["n" * 512]
    finally:
        storage.close()


def test_parameter_and_metric_names_too_long_for_their_columns_are_config_errors_on_every_database(url: str) -> None:
    # SQLite kept them; PostgreSQL and MariaDB failed the trial with "value too long for type character
    # varying(512)" / "Data too long for column 'metric'", naming neither the limit nor the fix.
    storage = SQLStorage(url)
    try:
        study_id = storage.create_study("s", "minimize", seed=0).study_id
        with pytest.raises(ConfigError, match="a parameter name has at most 512 characters, this one has 600"):
            storage.register_distribution(study_id, "p" * 600, tunelab.Float(0.0, 1.0))
        assert storage.register_distribution(study_id, "p" * 512, tunelab.Float(0.0, 1.0)) == tunelab.Float(0.0, 1.0)
        trial = storage.create_trial(study_id)
        with pytest.raises(ConfigError, match="a metric name has at most 256 characters, this one has 300"):
            storage.report(trial.trial_id, 0, {"loss": 1.0, "m" * 300: 1.0})
        with pytest.raises(ConfigError, match="a metric name has at most 256 characters"):
            storage.report_steps(trial.trial_id, [(1, {"loss": 1.0}), (2, {"m" * 257: 1.0})])
        storage.report(trial.trial_id, 0, {"m" * 256: 2.0})
        assert storage.get_curves(trial.trial_id) == {"m" * 256: ([0], [2.0])}  # nothing of the refused reports
    finally:
        storage.close()


def test_a_value_the_database_rejects_is_a_storage_error_naming_the_operation(url: str) -> None:
    storage = SQLStorage(url)
    try:
        direction = "d" * 20  # studies.direction is VARCHAR(16); create_study() checks it, the storage does not
        if url.startswith("sqlite"):  # SQLite does not enforce lengths: the value is kept
            storage.create_study("s", direction, seed=0)
            assert storage.get_study("s").direction == direction
            return
        with pytest.raises(StorageError) as info:
            storage.create_study("s", direction, seed=0)
        assert str(info.value).startswith(f"create_study on {_shown(url)} failed: DataError: ")
        assert isinstance(info.value.__cause__, sa.exc.DataError)
        assert storage.list_studies() == []  # nothing half-written, the storage still works
    finally:
        storage.close()


# -- a mistyped SQLite path ---------------------------------------------------------------------
def test_load_study_on_a_missing_sqlite_file_leaves_no_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(StudyNotFoundError) as info:
        tunelab.load_study("s", url)
    assert "no database file" in str(info.value) and str(tmp_path / "typo.db") in str(info.value)
    with pytest.raises(StudyNotFoundError):
        tunelab.delete_study("s", url)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_sqlite_file_finds_nothing_and_creates_nothing(tmp_path: Path) -> None:
    storage = get_storage(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert storage.list_studies() == []
        assert storage.get_trials(1) == []
        assert storage.count_trials(1) == 0
        assert storage.get_best_trial(1, "minimize") is None
        with pytest.raises(StudyNotFoundError, match="no database file"):
            storage.get_study("s")
        assert isinstance(storage, SQLStorage) and storage.schema_version is None
        assert list(tmp_path.iterdir()) == []
    finally:
        storage.close()


def test_the_first_write_creates_the_file_for_every_storage_on_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    writer, reader = get_storage(url), get_storage(url)
    try:
        assert reader.list_studies() == []
        study_id = writer.create_study("s", "minimize", seed=0).study_id
        assert (tmp_path / "new.db").exists()
        assert reader.get_study("s").study_id == study_id
        assert reader.create_trial(study_id).number == 0
        assert isinstance(reader, SQLStorage) and reader.schema_version == tunelab.storage.SCHEMA_VERSION
    finally:
        writer.close()
        reader.close()


def test_a_read_only_sqlite_file_says_how_to_fix_it_and_is_not_retried(tmp_path: Path) -> None:
    # "attempt to write a readonly database", with no fix, and marked transient: the end of a trial was retried
    path = tmp_path / "ro.db"
    storage = SQLStorage(f"sqlite:///{path}")
    tunelab.create_study(name="a", storage=storage)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # SQLite's own error for a file it may not write
    with pytest.raises(sqlite3.OperationalError) as raised:
        reader.execute("CREATE TABLE x (a)")
    reader.close()
    failure = storage._failure("finish_trial", sa.exc.OperationalError("INSERT ...", {}, raised.value))
    assert str(failure).endswith("attempt to write a readonly database; make the file and its folder writable by "
                                 "this user, or give a storage URL it can write")
    assert failure.transient is False
    locked = storage._failure("finish_trial", sa.exc.OperationalError("INSERT ...", {},
                                                                      sqlite3.OperationalError("database is locked")))
    assert locked.transient is True and "writable" not in str(locked)
