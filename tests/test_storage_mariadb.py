"""The storage conformance suite on a real MariaDB server (fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.storage import BaseStorage, SQLStorage
from tunelab.testing import SharedStorageSuite


class TestMariaDBStorage(SharedStorageSuite):
    @pytest.fixture(autouse=True)
    def _own_database(self, mariadb_url: str) -> None:
        self._url = mariadb_url

    def make_url(self, tmp_path: Path) -> str:
        return self._url

    def test_uses_the_mysql_dialect(self, storage: BaseStorage) -> None:
        assert isinstance(storage, SQLStorage)
        assert storage.engine.dialect.name in ("mysql", "mariadb")
