"""The storage conformance suite on every backend, and what is particular to SQLStorage."""

from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunelab.errors import StorageError, StudyNotFoundError
from tunelab.storage import BaseStorage, InMemoryStorage, SQLStorage, get_storage
from tunelab.storage.served import ServedStorageAddress, serve
from tunelab.storage.sql import SCHEMA_VERSION
from tunelab.testing import SharedStorageSuite, StorageSuite


class TestInMemoryStorage(StorageSuite):
    def make_storage(self, tmp_path: Path) -> BaseStorage:
        return InMemoryStorage()

    def test_is_not_shareable_across_processes(self, storage: BaseStorage) -> None:
        assert not storage.shareable_across_processes
        assert storage.url is None

    def test_watchers_hear_of_writes_of_their_keys_until_stopped(self, storage: BaseStorage) -> None:
        study_id = storage.create_study("w", "minimize", seed=0).study_id
        trial = storage.start_trial(study_id)
        other = storage.start_trial(study_id)
        heard: list[str] = []
        stop = storage.watch_trial_attrs(trial.trial_id, ["live_requests", "stop_requested"],
                                         lambda: heard.append("a"))
        assert stop is not None
        storage.append_trial_event(trial.trial_id, "live_requests", {"id": "1", "params": {"lr": 0.1}})
        storage.append_trial_event(trial.trial_id, "live_requests", {"id": "1", "params": {"lr": 0.1}})  # a retry
        storage.update_trial(trial.trial_id, system_attrs={"live_schedule": []})  # not a watched key
        storage.update_trial(other.trial_id, system_attrs={"stop_requested": {}})  # not the watched trial
        assert heard == ["a"]
        storage.update_trial(trial.trial_id, system_attrs={"stop_requested": {"at": "now"}})
        assert heard == ["a", "a"]
        stop()
        storage.update_trial(trial.trial_id, system_attrs={"stop_requested": {"at": "later"}})
        assert heard == ["a", "a"]

    def test_attributes_are_stored_as_json_gives_them_back_and_never_aliased(self, storage: BaseStorage) -> None:
        study_id = storage.create_study("j", "minimize", seed=0).study_id
        trial = storage.start_trial(study_id)
        names = ["lr", "momentum"]
        given = {"names": names, "flag": True, "n": 3, "x": 0.5, "none": None, "pair": (1, 2), "nested": {"a": [1]}}
        storage.update_trial(trial.trial_id, system_attrs=given)
        storage.update_trial(trial.trial_id, system_attrs={"by_int": {1: "one"}})
        names.append("changed after the write")
        stored = storage.get_trial(trial.trial_id).system_attrs
        assert stored["names"] == ["lr", "momentum"]  # a copy, not the caller's list
        assert stored["pair"] == [1, 2] and stored["by_int"] == {"1": "one"}  # as JSON would give them back
        assert {k: stored[k] for k in ("flag", "n", "x", "none", "nested")} == {
            "flag": True, "n": 3, "x": 0.5, "none": None, "nested": {"a": [1]}}

    def test_trials_read_back_are_deep_copies_made_without_deepcopy(
        self, storage: BaseStorage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Stored attributes are JSON data: a read copies its dicts and lists itself (a pruner's first read of a
        # study's running trials, at every trial, paid copy.deepcopy's memo and dispatch).
        study_id = storage.create_study("c", "minimize", seed=0).study_id
        trial = storage.start_trial(study_id)
        storage.update_trial(trial.trial_id, user_attrs={"nested": {"a": [1, {"b": 2}]}},
                             system_attrs={"names": ["lr"], "deep": {"x": [1.5, None, True, "s"]}})

        def no_deepcopy(*args: object, **kwargs: object) -> None:
            raise AssertionError("copy.deepcopy called")

        monkeypatch.setattr(copy, "deepcopy", no_deepcopy)
        read = storage.get_trial(trial.trial_id)
        [listed] = storage.get_trials(study_id)
        attr = storage.get_trial_system_attr(trial.trial_id, "deep")
        [several] = storage.get_trial_system_attrs(trial.trial_id, ["names"]).values()
        read.user_attrs["nested"]["a"][1]["b"] = 99
        listed.system_attrs["deep"]["x"].append("changed")
        attr["x"].clear()
        several.append("changed")
        monkeypatch.undo()
        again = storage.get_trial(trial.trial_id)
        assert again.user_attrs == {"nested": {"a": [1, {"b": 2}]}}
        assert again.system_attrs == {"names": ["lr"], "deep": {"x": [1.5, None, True, "s"]}}

    def test_a_failing_watcher_does_not_fail_the_write(self, storage: BaseStorage) -> None:
        study_id = storage.create_study("w", "minimize", seed=0).study_id
        trial = storage.start_trial(study_id)

        def broken() -> None:
            raise RuntimeError("boom")

        storage.watch_trial_attrs(trial.trial_id, ["stop_requested"], broken)
        storage.update_trial(trial.trial_id, system_attrs={"stop_requested": {"at": "now"}})
        assert storage.get_trial_system_attr(trial.trial_id, "stop_requested") == {"at": "now"}


class TestSQLiteStorage(SharedStorageSuite):
    def make_url(self, tmp_path: Path) -> str:
        return "sqlite:///" + str(tmp_path / "tunelab.db")

    def test_cannot_watch_writes_from_other_processes(self, storage: BaseStorage) -> None:
        study_id = storage.create_study("w", "minimize", seed=0).study_id
        trial = storage.start_trial(study_id)
        assert storage.watch_trial_attrs(trial.trial_id, ["stop_requested"], lambda: None) is None  # callers poll

    def test_sqlite_file_is_in_wal_mode(self, storage: BaseStorage) -> None:
        assert isinstance(storage, SQLStorage)
        with storage.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"

    def test_schema_version_row_exists(self, storage: BaseStorage) -> None:
        assert isinstance(storage, SQLStorage)
        with storage.engine.connect() as conn:
            query = sa.text("SELECT value FROM tunelab_meta WHERE key = 'schema_version'")
            version = conn.execute(query).scalar()
        assert version == str(SCHEMA_VERSION)

    def test_reopening_the_file_keeps_the_schema_version(self, storage: BaseStorage, tmp_path: Path) -> None:
        again = SQLStorage(self.make_url(tmp_path))
        try:
            with again.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT key, value FROM tunelab_meta")).all()
            assert [tuple(r) for r in rows] == [("schema_version", str(SCHEMA_VERSION))]
        finally:
            again.close()


def test_an_sqlite_library_without_upserts_replaces_points_by_delete_and_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 22, 0))
    storage = SQLStorage("sqlite:///" + str(tmp_path / "old.db"))
    try:
        assert storage._q.upsert_values is None and storage._q.upsert_values_sqlite is None
        study_id = storage.create_study("s", "minimize", seed=0).study_id
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 3, {"loss": 1.0, "acc": 0.5})
        storage.report_steps(trial.trial_id, [(3, {"loss": 0.5}), (4, {"loss": 0.25}), (4, {"loss": 0.125})])
        assert storage.get_curves(trial.trial_id) == {"loss": ([3, 4], [0.5, 0.125]), "acc": ([3], [0.5])}
    finally:
        storage.close()


# -- SQLStorage errors: each names the URL and a fix ------------------------------------------
def test_sqlite_in_a_missing_directory_raises_storage_error(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "no" / "such" / "dir" / "tunelab.db")
    with pytest.raises(StorageError) as info:
        get_storage(url)
    message = str(info.value)
    assert url in message
    assert "directory exists" in message


def test_get_storage_rejects_a_string_that_is_not_a_url() -> None:
    with pytest.raises(StorageError) as info:
        get_storage("tunelab.db")
    message = str(info.value)
    assert "'tunelab.db'" in message
    assert "sqlite:///tunelab.db" in message


def test_get_storage_gives_the_fix_of_a_url_with_too_few_slashes() -> None:
    # was: "write 'sqlite:///sqlite:/x.db'" (the check of the scheme came after the check for "://")
    with pytest.raises(StorageError) as info:
        get_storage("sqlite:/x.db")
    message = str(info.value)
    assert "'sqlite:///x.db'" in message
    assert "sqlite:///sqlite:" not in message


@pytest.mark.parametrize("url", ["", "  "])
def test_get_storage_refuses_an_empty_url_with_an_example(url: str) -> None:
    # was: "for an SQLite file write 'sqlite:///'", a URL with no file
    with pytest.raises(StorageError) as info:
        get_storage(url)
    message = str(info.value)
    assert "empty" in message
    assert "'sqlite:///tunelab.db'" in message
    assert "None" in message


def test_sql_storage_rejects_a_string_that_is_not_a_url() -> None:
    with pytest.raises(StorageError) as info:
        SQLStorage("not a url")
    message = str(info.value)
    assert "'not a url'" in message
    assert "sqlite:///" in message


@pytest.mark.parametrize("url", ["nosuchdb://user@host/db", "postgresql+nosuchdriver://user@host/db"])
def test_unknown_driver_scheme_raises_storage_error(url: str) -> None:
    with pytest.raises(StorageError) as info:
        get_storage(url)
    message = str(info.value)
    assert url in message
    assert "install" in message.lower()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_url_raises_storage_error(url: str) -> None:
    with pytest.raises(StorageError) as info:
        get_storage(url)
    message = str(info.value)
    assert repr(url) in message
    assert "storage=None" in message


def test_open_without_create_on_a_missing_file_raises_storage_error_and_makes_none(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    url = "sqlite:///" + str(path)
    with pytest.raises(StorageError) as info:
        get_storage(url, create=False)
    assert url in str(info.value)
    assert "check the path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_open_without_create_on_a_foreign_sqlite_file_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.close()
    url = "sqlite:///" + str(path)
    with pytest.raises(StorageError) as info:
        get_storage(url, create=False)
    assert url in str(info.value)
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["unrelated"]


def test_open_without_create_reads_an_existing_storage(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "tunelab.db")
    first = get_storage(url)
    study_id = first.create_study("s", "minimize", seed=0).study_id
    first.create_trial(study_id)
    first.close()
    again = get_storage(url, create=False)
    try:
        assert again.get_study("s").study_id == study_id
        assert again.count_trials(study_id) == 1
    finally:
        again.close()


def test_opening_many_storages_registers_no_fork_hook_each_and_a_forked_child_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[object] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
    url = "sqlite:///" + str(tmp_path / "tunelab.db")
    storages = [get_storage(url) for _ in range(5)]
    assert registered == []  # one hook for the module, not one (and its closure) per storage
    monkeypatch.undo()
    study_id = storages[0].create_study("s", "minimize", seed=0).study_id
    pid = os.fork()
    if pid == 0:  # the child: the parent's pooled connection was dropped, a new one works
        code = 1
        try:
            storages[0].create_trial(study_id)
            code = 0 if storages[0].count_trials(study_id) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storages[0].count_trials(study_id) == 1
    for storage in storages:
        storage.close()


class TestServedStorage(StorageSuite):
    """The in-memory storage served to worker processes (what optimize(n_workers>1) does for it),
    through a real socket: every rule holds on the client side."""

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        server = serve(InMemoryStorage())
        client = server.address.connect()
        close = client.close

        def close_both() -> None:
            close()
            server.close()

        client.close = close_both  # type: ignore[method-assign]
        return client

    def test_errors_travel_back_as_themselves(self, storage: BaseStorage) -> None:
        with pytest.raises(StudyNotFoundError):
            storage.get_study("nobody")

    def test_a_wrong_key_is_refused_and_a_closed_server_is_a_storage_error(self) -> None:
        server = serve(InMemoryStorage())
        with pytest.raises(Exception):  # noqa: B017 - multiprocessing's AuthenticationError or a closed pipe
            ServedStorageAddress(server.address.address, b"wrong").connect().list_studies()
        client = server.address.connect()
        assert client.list_studies() == []
        server.close()
        with pytest.raises(StorageError, match="serving the storage is gone"):
            client.list_studies()


def test_closing_the_storage_server_ends_its_answering_threads_cleanly() -> None:
    """close() shuts each connection down and its answering thread closes it: no thread dies on a
    descriptor closed under its read (the old close() closed them from the closing thread)."""
    import threading

    failures: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        for _ in range(10):
            server = serve(InMemoryStorage())
            clients = [server.address.connect() for _ in range(3)]
            for client in clients:
                client.list_studies()  # each client has its answering thread, now waiting in recv
            answering = [t for t in threading.enumerate() if t.name == "tunelab-storage-client"]
            server.close()
            for thread in answering:
                thread.join(5)
            assert not any(t.is_alive() for t in answering)
            for client in clients:
                client.close()
    finally:
        threading.excepthook = previous
    assert failures == []
