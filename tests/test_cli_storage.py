"""``tunelab storage version`` and ``tunelab storage upgrade`` on copies of the first release's database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import tunelab
from tunelab.cli import app
from tunelab.storage import SCHEMA_VERSION, SQLStorage, schema_version
from tunelab.storage.sql_schema import VERSION_TABLE, meta_table

SCHEMA1_DB = Path(__file__).parent / "data" / "tunelab-schema1.db"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})


@pytest.fixture
def old_url(tmp_path: Path) -> str:
    shutil.copy(SCHEMA1_DB, tmp_path / "old.db")
    return f"sqlite:///{tmp_path / 'old.db'}"


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_storage_version_reads_the_version_and_changes_nothing(runner: CliRunner, old_url: str) -> None:
    result = invoke(runner, "storage", "version", "--storage", old_url)
    assert result.exit_code == 0, result.output
    assert _one_line(result.stdout) == (
        f"{old_url}: schema 1; this tunelab writes schema {SCHEMA_VERSION} (older: `tunelab storage upgrade` "
        "upgrades it, as opening it with this tunelab does)"
    )
    assert schema_version(old_url) == 1


def test_storage_upgrade_dry_run_changes_nothing(runner: CliRunner, old_url: str) -> None:
    before = (Path(old_url.removeprefix("sqlite:///"))).read_bytes()
    result = invoke(runner, "storage", "upgrade", "--dry-run", "--storage", old_url)
    assert result.exit_code == 0, result.output
    assert _one_line(result.stdout) == (
        f"would upgrade the tunelab database at {old_url} from schema 1 to {SCHEMA_VERSION}"
    )
    assert schema_version(old_url) == 1
    assert Path(old_url.removeprefix("sqlite:///")).read_bytes() == before


def test_storage_upgrade_upgrades_once_and_says_so(runner: CliRunner, old_url: str) -> None:
    result = invoke(runner, "storage", "upgrade", "--storage", old_url)
    assert result.exit_code == 0, result.output
    assert _one_line(result.stdout) == f"upgraded the tunelab database at {old_url} from schema 1 to {SCHEMA_VERSION}"
    assert schema_version(old_url) == SCHEMA_VERSION
    study = tunelab.load_study("schema1-study", old_url, sampler=tunelab.RandomSampler())
    assert len(study.trials) == 7 and study.get_curves(3)["grad_norm"] == ([3], [float("inf")])

    again = invoke(runner, "storage", "upgrade", "--storage", old_url)
    assert again.exit_code == 0, again.output
    assert "up to date" in again.stdout and "nothing to upgrade" in again.stdout
    version = invoke(runner, "storage", "version", "--storage", old_url)
    assert f"schema {SCHEMA_VERSION}; this tunelab writes schema {SCHEMA_VERSION} (up to date)" in version.stdout


def test_storage_upgrade_as_a_real_command(old_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "storage", "upgrade", "--storage", old_url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"from schema 1 to {SCHEMA_VERSION}" in done.stdout
    assert done.stderr == ""  # the command says it; no second message from the log
    assert schema_version(old_url) == SCHEMA_VERSION


def test_other_commands_upgrade_an_old_database_too(runner: CliRunner, old_url: str) -> None:
    result = invoke(runner, "studies", "--storage", old_url)
    assert result.exit_code == 0, result.output
    assert "schema1-study" in result.stdout
    assert schema_version(old_url) == SCHEMA_VERSION


def test_storage_commands_on_a_missing_file_fail_and_create_nothing(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    for command in ("version", "upgrade"):
        result = invoke(runner, "storage", command, "--storage", url)
        assert result.exit_code == 1
        assert "no database file" in _one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_storage_upgrade_of_a_newer_database_says_to_upgrade_tunelab(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    storage = SQLStorage(url)
    storage.create_study("s", "minimize", seed=0)
    storage.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="9999"))
    engine.dispose()
    version = invoke(runner, "storage", "version", "--storage", url)
    assert version.exit_code == 0
    assert "schema 9999" in version.stdout and "newer tunelab" in version.stdout
    result = invoke(runner, "storage", "upgrade", "--storage", url)
    assert result.exit_code == 1
    message = _one_line(result.stderr)
    assert "written by a newer tunelab (schema 9999" in message and "pip install -U tunelab" in message


def test_storage_version_of_a_file_path_gives_its_url(runner: CliRunner, tmp_path: Path) -> None:
    # was: "is not a database URL; e.g. 'sqlite:///tunelab.db'", not the URL of the file given
    path = str(tmp_path / "t.db")
    result = invoke(runner, "storage", "version", "--storage", path)
    assert result.exit_code == 1
    assert f"'sqlite:///{path}'" in result.output
    assert "Traceback" not in result.output


def test_an_empty_storage_is_refused_with_an_example(runner: CliRunner) -> None:
    # was: "for an SQLite file write 'sqlite:///'"
    result = invoke(runner, "studies", "--storage", "")
    assert result.exit_code == 1
    assert "empty" in result.output and "'sqlite:///tunelab.db'" in result.output
    assert "'sqlite:///'" not in result.output
