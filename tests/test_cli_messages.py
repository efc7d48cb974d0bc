"""The command line's messages (issue 16 items 12c and 14): `tunelab trial`, storage URLs with a typo, the
dashboard without its extra, and create_study's seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import tunelab
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.pruners import MedianPruner
from tunelab.samplers import RandomSampler


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def one_error_line(result: Result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in line, line
    return line


def objective(trial: tunelab.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("note", "hello")
    for step in range(4):
        trial.report(step, val_loss=x + 1.0 / (step + 1), train_loss=x)
        with trial.checkpoint(step) as folder:
            (folder / "weights").write_text("w")
        if trial.number == 1 and step == 3:
            raise ValueError(f"x={x} is not welcome\nsecond line")
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return x


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 't.db'}"
    study = tunelab.create_study(name="one", storage=url, sampler=RandomSampler(), seed=0,
                                 pruner=MedianPruner(n_startup_trials=2, metric="val_loss"))
    study.optimize(objective, n_trials=8, show_progress=False)
    return url


# -- tunelab trial STUDY NUMBER ----------------------------------------------------------------------
def test_trial_shows_a_failed_trial_with_its_whole_traceback(runner: CliRunner, url: str) -> None:
    study = tunelab.load_study("one", url)
    assert study.trials[1].state == tunelab.TrialState.FAIL
    result = invoke(runner, "trial", "one", "1", "--storage", url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("trial 1 of study 'one' (minimize): FAIL")
    assert "  error: " in out and "test_cli_messages.py:" in out and "ValueError: x=" in out
    assert "params:\n  x = " in out
    assert "user attributes:\n  note = hello" in out
    assert "curves (last values):" in out and "val_loss" in out and "at step 3 (4 points)" in out
    assert "error (as stored):\n  Traceback (most recent call last):" in out and "  second line" in out
    assert "checkpoints: none kept" in out  # a FAIL trial's checkpoints are deleted


def test_trial_shows_a_complete_trial_s_checkpoints_and_a_pruned_trial_s_rule(runner: CliRunner, url: str) -> None:
    study = tunelab.load_study("one", url)
    done = next(t for t in study.trials if t.state == tunelab.TrialState.COMPLETE)
    out = invoke(runner, "trial", "one", str(done.number), "--storage", url).stdout
    assert f": COMPLETE, value {done.value:.10g}" in out.splitlines()[0]
    assert f"checkpoints in {study.artifact_dir / f'trial-{done.number}'}:" in out
    assert f"  step 3: {study.checkpoint_path(done.number, 3)}" in out
    pruned = next(t for t in study.trials if t.state == tunelab.TrialState.PRUNED)
    out = invoke(runner, "trial", "one", str(pruned.number), "--storage", url).stdout
    rule = pruned.system_attrs["pruned"]
    assert f"  pruned at step {rule['step']} by {rule['rule']}" in out


def test_trial_as_json(runner: CliRunner, url: str) -> None:
    result = invoke(runner, "trial", "one", "1", "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["study"], data["number"], data["state"]) == ("one", 1, "FAIL")
    assert data["error"].startswith("Traceback") and "test_cli_messages.py:" in data["error_summary"]
    assert data["curves"]["val_loss"]["points"] == 4 and data["curves"]["val_loss"]["last_step"] == 3
    assert data["checkpoints"] == [] and data["params"]["x"] == tunelab.load_study("one", url).trials[1].params["x"]


def test_trial_errors(runner: CliRunner, url: str) -> None:
    one_error_line(invoke(runner, "trial", "one", "99", "--storage", url), "no trial number 99")
    one_error_line(invoke(runner, "trial", "nope", "0", "--storage", url), "'nope'")


def test_best_of_a_study_whose_trials_all_failed_points_to_tunelab_trial(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = tunelab.create_study(name="typo", storage=url, seed=0)

    def broken(trial: tunelab.Trial) -> float:
        return trial.suggest_float("x", 0, 1) * undefined  # type: ignore[name-defined]  # noqa: F821

    study.optimize(broken, n_trials=3, show_progress=False)
    line = one_error_line(invoke(runner, "best", "typo", "--storage", url), "all 3 trials failed")
    assert "NameError: name 'undefined' is not defined" in line and "`tunelab trial typo 0`" in line


# -- storage URLs with a typo ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("storage", "needles"),
    [
        ("sqllite:///x.db", ["no database is called 'sqllite'", "did you mean 'sqlite:///x.db'?"]),
        ("sqlite:/bc.db", ["is not a URL", "'sqlite:///bc.db' for bc.db in the current directory",
                           "'sqlite:////bc.db' for /bc.db"]),
        ("sqlite://bc.db", ["three slashes", "'sqlite:///bc.db'"]),
        ("sqlite://me@/bc.db", ["no user, password or port", "'sqlite:///bc.db'"]),
        ("postgres://me@db/studies", ["'postgresql+psycopg://me@db/studies'", "pip install 'tunelab[postgres]'"]),
        ("postgresql+nosuch://me@db/s", ["no driver 'nosuch' for postgresql", "postgresql+psycopg"]),
    ],
)
def test_a_storage_url_with_a_typo_gets_the_fix(runner: CliRunner, storage: str, needles: list[str]) -> None:
    for command in (["studies"], ["show", "x"], ["trial", "x", "0"], ["tree", "x"]):
        line = one_error_line(invoke(runner, *command, "--storage", storage), storage, *needles)
        assert "sqlite:///sqlite:" not in line and "PostgreSQL" not in line


def test_a_storage_url_with_a_typo_from_the_environment(runner: CliRunner) -> None:
    result = runner.invoke(app, ["studies"], env={"TUNELAB_STORAGE": "sqllite:///x.db"})
    one_error_line(result, "did you mean 'sqlite:///x.db'?")


def test_a_missing_driver_names_the_one_tunelab_installs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.errors import StorageError
    from tunelab.storage.urls import check_storage_url

    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # mysqlclient, SQLAlchemy's default mysql driver
    with pytest.raises(StorageError, match=r"driver \(MySQLdb\) is not installed; .*'mysql\+pymysql://u@h/db'"):
        check_storage_url("mysql://u@h/db")
    for fine in ("sqlite:///tunelab.db", "sqlite:////abs/x.db", "sqlite://", "tunelab.db", "sqlite:///:memory:"):
        check_storage_url(fine)


# -- the dashboard without its extra -----------------------------------------------------------------
@pytest.mark.parametrize("module", ["uvicorn", "fastapi"])
def test_the_dashboard_without_its_extra_says_how_to_install_it(
    runner: CliRunner, url: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == module or name.startswith(f"{module}.") or name.startswith("tunelab.dashboard"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # what `make demo` leaves: not installed
    line = one_error_line(invoke(runner, "dashboard", "--storage", url), "pip install 'tunelab[dashboard]'")
    assert f"({module} is not installed)" in line


# -- create_study's seed -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2**63, 2**70])
def test_a_seed_too_large_is_a_config_error(seed: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"seed must be .* below 2\*\*63"):
        tunelab.create_study(seed=seed, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert tunelab.create_study(seed=2**63 - 1, storage=f"sqlite:///{tmp_path / 's.db'}").seed == 2**63 - 1


def test_the_library_gives_the_same_fix_as_the_cli_for_a_mistyped_url(tmp_path: Path) -> None:
    import tunelab
    from tunelab.errors import StorageError

    with pytest.raises(StorageError, match="sqlite:///"):
        tunelab.create_study(storage=f"sqllite:///{tmp_path / 'x.db'}")


def test_an_sqlite_url_with_a_user_or_password_is_a_storage_error_that_hides_the_password(tmp_path: Path) -> None:
    """A server-style URL for SQLite (``sqlite://me:secret@/x.db``) used to end in SQLAlchemy's ArgumentError,
    a traceback in the command line, with no fix."""
    from tunelab.errors import StorageError

    for storage in (f"sqlite://me:secret@/{tmp_path / 'x.db'}", f"sqlite://:5/{tmp_path / 'x.db'}"):
        with pytest.raises(StorageError, match="no user, password or port") as info:
            tunelab.create_study(storage=storage)
        assert f"'sqlite:///{tmp_path / 'x.db'}'" in str(info.value) and "secret" not in str(info.value)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("storage", ["postgres://me:secret@db/studies", "sqllite://me:secret@h/x.db",
                                     "sqlite://me:secret@host/x.db", "postgresql+nosuch://me:secret@db/s"])
def test_the_fix_for_a_mistyped_url_never_shows_its_password(runner: CliRunner, storage: str) -> None:
    """SQLStorage's messages hide a URL's password; the URL check's messages printed it."""
    from tunelab.errors import StorageError

    with pytest.raises(StorageError) as info:
        tunelab.create_study(storage=storage)
    assert "secret" not in str(info.value) and "me:***@" in str(info.value)
    line = one_error_line(invoke(runner, "studies", "--storage", storage), "me:***@")
    assert "secret" not in line


def test_studies_and_delete_do_not_show_the_storage_password(runner: CliRunner, pg_url: str) -> None:
    """`tunelab studies` titled its table with the URL as typed, password included, and `tunelab delete`
    asked with it; `tunelab storage version` and the storage's messages hide it."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(pg_url)
    password = parsed.password if parsed.password else "not-needed-with-trust"  # trust ignores it
    url = parsed.set(password=password).render_as_string(hide_password=False)
    tunelab.create_study(name="pw", storage=url).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    listed = runner.invoke(app, ["studies", "--storage", url], env={"COLUMNS": "400"})
    assert listed.exit_code == 0 and "pw" in listed.output and ":***@" in listed.output
    assert password not in listed.output
    asked = runner.invoke(app, ["delete", "pw", "--storage", url], input="n\n")
    assert "Delete study 'pw' and its 1 trials from" in asked.output and password not in asked.output
