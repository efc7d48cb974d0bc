"""The ``tunelab`` command line: every command on real SQLite files, and its errors."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import tunelab
import tunelab.recipe
from tunelab.cli import app
from tunelab.distributions import distribution_from_json
from tunelab.errors import ConfigError, StudyNotFoundError
from tunelab.records import TrialState, sort_key


@pytest.fixture
def runner() -> CliRunner:
    # No storage or width from the caller's environment leaks into the tests.
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 't.db'}"


def objective(trial: tunelab.Trial) -> float:
    x = trial.suggest_float("x", -3, 3)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if trial.number == 2:
        raise ValueError("the loss exploded\nlast line of the error")
    if trial.number == 4:
        raise tunelab.TrialPruned()
    return (x - 1) ** 2 + (0.5 if kind == "b" else 0.0)


@pytest.fixture
def study(url: str) -> tunelab.Study:
    """10 trials: COMPLETE, one FAIL, one PRUNED, one RUNNING and one WAITING at the end."""
    s = tunelab.create_study(name="quad", storage=url, seed=0)
    s.optimize(objective, n_trials=8, show_progress=False)
    s.ask()  # stays RUNNING
    s.enqueue({"x": 0.5})  # WAITING
    return s


@pytest.fixture
def other(url: str) -> tunelab.Study:
    s = tunelab.create_study(name="other", storage=url, direction="maximize", seed=1)
    for _ in range(3):
        t = s.ask()
        s.tell(t, t.suggest_float("y", 0, 1))
    return s


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def table_numbers(output: str) -> list[int]:
    """The trial numbers of the rows of `show`'s table, top to bottom."""
    row = re.compile(r"^\s*(\d+)\s+(?:COMPLETE|PRUNED|FAIL|RUNNING|WAITING)\b", re.M)
    return [int(m.group(1)) for m in row.finditer(output)]


def assert_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not raised
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in line


# -- version and listing -------------------------------------------------------------------
def test_version(runner: CliRunner) -> None:
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tunelab {tunelab.__version__}"


def test_studies_lists_counts_and_best_values(
    runner: CliRunner, url: str, study: tunelab.Study, other: tunelab.Study
) -> None:
    result = invoke(runner, "studies", "--storage", url)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    # name, direction, trials, complete, pruned, fail, running, waiting, best value, created
    assert lines["quad"][1:8] == ["minimize", "10", "6", "1", "1", "1", "1"]
    assert float(lines["quad"][8]) == pytest.approx(study.best_value, rel=1e-5)
    assert lines["other"][1:8] == ["maximize", "3", "3", "0", "0", "0", "0"]
    assert float(lines["other"][8]) == pytest.approx(other.best_value, rel=1e-5)


def test_studies_prints_a_storage_path_with_brackets_as_typed(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / '[bold]runs.db'}"
    tunelab.create_study(name="s", storage=url)
    result = invoke(runner, "studies", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "[bold]runs.db" in result.stdout  # rich read it as markup and dropped it


def test_studies_shows_the_best_feasible_value_and_the_front_of_several_objectives(runner: CliRunner, url: str) -> None:
    # It showed the best value of any COMPLETE trial (an infeasible one included) and, for several
    # objectives, the first objective's extreme under its direction alone.
    one = tunelab.create_study(name="one", storage=url, direction="maximize", sampler=tunelab.RandomSampler())
    mo = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                              sampler=tunelab.RandomSampler())
    for study, values, memory in [(one, 0.9, 9.0), (one, 0.5, 1.0), (mo, (0.9, 1.0), 9.0), (mo, (0.5, 1.0), 1.0),
                                  (mo, (0.4, 0.5), 1.0), (mo, (0.3, 2.0), 1.0)]:
        trial = study.ask()
        trial.set_constraint("memory_gb", memory, upper=8.0)  # 9.0 is infeasible
        study.tell(trial, values)
    result = invoke(runner, "studies", "--storage", url)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert lines["one"][1] == "maximize" and float(lines["one"][8]) == 0.5
    assert lines["mo"][1] == "maximize,minimize" and lines["mo"][8:10] == ["front:", "2"]


def test_best_and_show_print_names_with_brackets_as_typed(runner: CliRunner, url: str) -> None:
    # rich read "acc[/]" as markup: MarkupError, "closing tag '[/]' ... has nothing to close".
    study = tunelab.create_study(name="mo[/]", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["acc[/]", "ms"], sampler=tunelab.RandomSampler())
    for acc, ms in [(0.9, 5.0), (0.8, 1.0)]:
        trial = study.ask()
        trial.suggest_float("p[/]", 0.0, 1.0)
        trial.suggest_categorical("opt", ["[/]adam"])
        study.tell(trial, values=[acc, ms])
    for args in (("best", "mo[/]"), ("show", "mo[/]")):
        result = invoke(runner, *args, "--storage", url)
        assert result.exit_code == 0, result.output
        assert "acc[/]" in result.stdout and "p[/]" in result.stdout and "[/]adam" in result.stdout, args


def test_studies_gives_every_direction_of_a_study_of_several_objectives_before_a_complete_trial(
        runner: CliRunner, url: str) -> None:
    tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"])  # it showed "maximize"
    result = invoke(runner, "studies", "--storage", url)
    assert result.exit_code == 0, result.output
    line = next(line.split() for line in result.stdout.splitlines() if line.strip().startswith("mo "))
    assert line[1] == "maximize,minimize"


def test_storage_is_read_from_the_environment(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = runner.invoke(app, ["studies"], env={"TUNELAB_STORAGE": url})
    assert result.exit_code == 0, result.output
    assert "quad" in result.stdout


def test_studies_on_an_empty_storage(runner: CliRunner, url: str) -> None:
    storage = tunelab.SQLStorage(url)  # an existing database with no study in it (the first write makes the file)
    storage.delete_study(storage.create_study("gone", "minimize", seed=0).study_id)
    storage.close()
    result = invoke(runner, "studies", "--storage", url)
    assert result.exit_code == 0
    assert "no studies" in result.stdout


# -- show ----------------------------------------------------------------------------------
def test_show_lists_best_first_then_the_others_by_number(
    runner: CliRunner, url: str, study: tunelab.Study
) -> None:
    result = invoke(runner, "show", "quad", "--storage", url)
    assert result.exit_code == 0, result.output
    trials = study.trials
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=sort_key("minimize"))
    expected = [t.number for t in done] + [t.number for t in trials if t.state != TrialState.COMPLETE]
    assert table_numbers(result.stdout) == expected
    assert expected[0] == study.best_trial.number
    header = next(line for line in result.stdout.splitlines() if "state" in line).split()
    assert header == ["#", "state", "value", "x", "kind", "duration", "error"]
    fail_row = next(line for line in result.stdout.splitlines() if " FAIL " in line)
    # the exception's own line (its type and the message's first line), not the message's last line
    assert "ValueError: the loss exploded" in fail_row and "last line of the error" not in fail_row


def test_show_best_first_for_a_maximized_study(runner: CliRunner, url: str, other: tunelab.Study) -> None:
    result = invoke(runner, "show", "other", "--storage", url)
    assert result.exit_code == 0, result.output
    by_value = sorted(other.trials, key=lambda t: -(t.value or 0.0))
    assert table_numbers(result.stdout) == [t.number for t in by_value]


def test_show_puts_infeasible_trials_after_the_feasible_ones_and_shows_every_objective(
    runner: CliRunner, url: str
) -> None:
    # An infeasible trial (never the best) was listed first, and a study with several objectives showed
    # its first objective only.
    one = tunelab.create_study(name="one", storage=url, direction="maximize", sampler=tunelab.RandomSampler())
    mo = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                              objective_names=["val_acc", "latency_ms"], sampler=tunelab.RandomSampler())
    for study, values, memory in [(one, 0.9, 9.0), (one, 0.5, 1.0), (mo, (0.9, 1.0), 9.0), (mo, (0.5, 3.0), 1.0)]:
        trial = study.ask()
        trial.set_constraint("memory_gb", memory, upper=8.0)  # 9.0 is infeasible
        study.tell(trial, values)
    for name in ("one", "mo"):
        result = invoke(runner, "show", name, "--storage", url)
        assert result.exit_code == 0, result.output
        assert table_numbers(result.stdout) == [1, 0]
    header = next(line for line in result.stdout.splitlines() if "state" in line).split()
    assert header == ["#", "state", "val_acc", "latency_ms", "feasible", "duration"]
    assert "(maximize, minimize)" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if " COMPLETE " in line]
    assert [row[2:5] for row in rows] == [["0.5", "3", "yes"], ["0.9", "1", "no"]]


def test_show_prints_a_recipe_study_s_verdicts_and_stages(runner: CliRunner, url: str) -> None:
    study = tunelab.create_study(name="r", storage=url, direction="maximize", sampler=tunelab.RandomSampler(), seed=0)
    study.set_system_attr("recipe", {"steps": [
        {"step": "initial_loss", "verdict": "pass", "message": "initial loss 2.30, expected 2.30"},
        {"step": "overfit", "verdict": "fail", "message": "could not overfit 512 training examples"},
    ]})
    for stage in ("coarse", "refine"):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.set_user_attr("train", {"stage": stage, "epochs": 2})
        study.tell(trial, 0.9 if stage == "coarse" else 0.95)
    result = invoke(runner, "show", "r", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "initial_loss: pass: initial loss 2.30" in result.stdout
    assert "overfit: fail: could not overfit 512" in result.stdout
    assert re.search(r"^\s*1\s+COMPLETE\s+refine\s+0\.95", result.stdout, re.M), result.stdout
    assert re.search(r"^\s*0\s+COMPLETE\s+coarse\s+0\.9", result.stdout, re.M), result.stdout


def test_show_has_no_stage_column_without_stages(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "show", "quad", "--storage", url)
    assert result.exit_code == 0 and "stage" not in result.stdout


def test_show_filters_by_state_and_limits(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "show", "quad", "--storage", url, "--state", "complete", "--limit", "2")
    assert result.exit_code == 0, result.output
    done = sorted(study.get_trials([TrialState.COMPLETE]), key=sort_key("minimize"))
    assert table_numbers(result.stdout) == [t.number for t in done[:2]]

    result = invoke(runner, "show", "quad", "--storage", url, "--state", "FAIL")
    assert table_numbers(result.stdout) == [2]

    result = invoke(runner, "show", "quad", "--storage", url, "--state", "bogus")
    assert result.exit_code == 2  # a usage error, reported by the parser


# -- best ----------------------------------------------------------------------------------
def test_best_json_matches_the_study(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "best", "quad", "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    best = study.best_trial
    assert data["number"] == best.number
    assert data["value"] == best.value
    assert data["params"] == dict(best.params)
    assert data["study"] == "quad" and data["direction"] == "minimize"


def test_best_json_of_a_constrained_study_gives_the_measured_constraints(runner: CliRunner, url: str) -> None:
    study = tunelab.create_study(name="c", storage=url, sampler=tunelab.RandomSampler())
    for value, memory in [(1.0, 9.0), (2.0, 3.0)]:
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    data = json.loads(invoke(runner, "best", "c", "--storage", url, "--json").stdout)
    assert data["number"] == 1 and data["feasible"] is True  # trial 0 is better but breaks its bound
    assert data["constraints"] == {"memory_gb": {"value": 3.0, "lower": None, "upper": 8.0}}
    text = invoke(runner, "best", "c", "--storage", url).stdout  # the text says it too
    assert "#1" in text and "constraint memory_gb = 3.0 (<= 8)" in text


def test_best_as_text(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "best", "quad", "--storage", url)
    assert result.exit_code == 0, result.output
    best = study.best_trial
    assert f"#{best.number}" in result.stdout and repr(best.value) in result.stdout
    assert f"x = {best.params['x']!r}" in result.stdout


def test_best_without_a_complete_trial_is_an_error(runner: CliRunner, url: str) -> None:
    tunelab.create_study(name="empty", storage=url)
    assert_error(invoke(runner, "best", "empty", "--storage", url), "empty", "no COMPLETE trial")


def test_best_of_a_study_with_several_objectives_prints_its_pareto_front(runner: CliRunner, url: str) -> None:
    study = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["val_acc", "latency_ms"], sampler=tunelab.RandomSampler())
    for acc, latency, memory in [(0.9, 10.0, 1.0), (0.8, 5.0, 1.0), (0.7, 20.0, 1.0), (0.95, 1.0, 9.0)]:
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)  # the last one is infeasible
        study.tell(trial, (acc, latency))
    result = invoke(runner, "best", "mo", "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["number"] for t in data["front"]] == [0, 1]  # 2 is dominated by 0, 3 is infeasible
    assert data["front"][0]["values"] == {"val_acc": 0.9, "latency_ms": 10.0}
    assert data["objective_names"] == ["val_acc", "latency_ms"]
    assert data["front"][1]["feasible"] is True
    assert data["front"][1]["constraints"] == {"memory_gb": {"value": 1.0, "lower": None, "upper": 8.0}}
    text = invoke(runner, "best", "mo", "--storage", url)
    assert text.exit_code == 0 and "val_acc (max)" in text.stdout and "latency_ms (min)" in text.stdout
    assert "2 trial(s)" in text.stdout and "memory_gb (<= 8)" in text.stdout
    tunelab.create_study(name="mo-empty", storage=url, directions=["minimize", "minimize"])
    assert_error(invoke(runner, "best", "mo-empty", "--storage", url), "mo-empty", "no Pareto front")


def test_export_and_trial_of_a_study_with_several_objectives_keep_every_objective(
    runner: CliRunner, url: str
) -> None:
    study = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["val_acc", "latency_ms"], sampler=tunelab.RandomSampler())
    for acc, latency in [(0.9, 10.0), (0.8, 5.0)]:
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, (acc, latency))
    result = invoke(runner, "export", "mo", "--storage", url, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(float(r["values_val_acc"]), float(r["values_latency_ms"])) for r in rows] == [(0.9, 10.0), (0.8, 5.0)]
    result = invoke(runner, "export", "mo", "--storage", url, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [d["values"] for d in json.loads(result.stdout)] == [
        {"val_acc": 0.9, "latency_ms": 10.0}, {"val_acc": 0.8, "latency_ms": 5.0}]
    result = invoke(runner, "trial", "mo", "1", "--storage", url, "--json")
    assert json.loads(result.stdout)["values"] == {"val_acc": 0.8, "latency_ms": 5.0}
    text = invoke(runner, "trial", "mo", "1", "--storage", url).stdout
    assert "val_acc 0.8" in text and "latency_ms 5" in text


def test_importance_of_a_study_with_several_objectives_asks_for_the_option(runner: CliRunner, url: str) -> None:
    # The error named the Python argument, importance(..., objective='val_acc'), not --objective.
    tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                         objective_names=["val_acc", "latency_ms"])
    assert_error(invoke(runner, "importance", "mo", "--storage", url), "has 2 objectives", "pass --objective val_acc")


def test_importance_with_an_unknown_objective_names_the_option(runner: CliRunner, url: str) -> None:
    # was "importance(objective='nope') is not an objective": the Python call, not --objective
    tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                         objective_names=["val_acc", "latency_ms"])
    tunelab.create_study(name="so", storage=url)
    for name, needle in [("mo", "its objectives are val_acc, latency_ms; pass e.g. --objective val_acc"),
                         ("so", "it has a single objective; leave --objective out")]:
        result = invoke(runner, "importance", name, "--objective", "nope", "--storage", url)
        assert_error(result, f"--objective 'nope' is not an objective of study {name!r}", needle)
        assert "importance(" not in result.stderr


def test_a_worker_on_a_study_with_several_objectives_ends_with_its_front(runner: CliRunner, url: str) -> None:
    # The worker ran its trials, then ended with "error: ... has no single best_trial" and exit code 1.
    tunelab.create_study(name="mo", storage=url, directions=["minimize", "minimize"], seed=0,
                         sampler=tunelab.RandomSampler())
    result = invoke(runner, "worker", "--study", "mo", "--storage", url, "--objective",
                    "objectives:jittered_two_objectives", "--n-trials", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "(minimize, minimize, RandomSampler)" in result.stdout
    assert re.search(r"done: this worker ran 3 trials .*; Pareto front of study 'mo': \d trial", result.stdout)
    # diagnose without a trial number said to use study.best_trials, a Python attribute
    assert_error(invoke(runner, "diagnose", "mo", "--storage", url), "give a trial number", "Pareto front [")


def test_a_worker_on_a_study_whose_trials_are_all_infeasible_does_not_say_none_completed(
    runner: CliRunner, url: str
) -> None:
    # It said "this worker ran 2 trials (2 complete, ...); study 'c' has no COMPLETE trial yet".
    tunelab.create_study(name="c", storage=url, seed=0, sampler=tunelab.RandomSampler())
    result = invoke(runner, "worker", "--study", "c", "--storage", url, "--objective", "objectives:never_feasible",
                    "--n-trials", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "(2 complete, 0 failed, 0 pruned); study 'c' has no feasible COMPLETE trial yet (each of its 2 " in (
        result.stdout)


# -- export --------------------------------------------------------------------------------
def test_export_csv_has_a_header_and_one_row_per_trial(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "export", "quad", "--storage", url, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    trials = study.trials
    assert len(rows) == len(trials) == 10
    assert {"number", "state", "value", "params_x", "params_kind", "error", "datetime_start"} <= set(rows[0])
    for row, t in zip(rows, trials, strict=True):
        assert int(row["number"]) == t.number and row["state"] == t.state.value
        assert (float(row["value"]) if row["value"] else None) == t.value
        if "x" in t.params:
            assert float(row["params_x"]) == t.params["x"]
        assert row["datetime_start"] == (t.datetime_start.isoformat() if t.datetime_start else "")
    assert rows[2]["error"] == "ValueError: the loss exploded"


def test_export_csv_writes_nested_attributes_as_json(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested.db'}"
    study = tunelab.create_study(name="nested", storage=url, sampler=tunelab.RandomSampler(), seed=0)
    trial = study.ask()
    trial.set_user_attr("config", {"epochs": 2, "schedule": None, "ok": True})
    trial.set_user_attr("widths", [8, 16])
    study.tell(trial, 1.0)
    result = invoke(runner, "export", "nested", "--storage", url, "--format", "csv")
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert json.loads(row["user_attrs_config"]) == {"epochs": 2, "schedule": None, "ok": True}  # not Python's repr
    assert json.loads(row["user_attrs_widths"]) == [8, 16]


def test_export_json_round_trips(runner: CliRunner, url: str, study: tunelab.Study, tmp_path: Path) -> None:
    out = tmp_path / "trials.json"
    result = invoke(runner, "export", "quad", "--storage", url, "--format", "json", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    data = json.loads(out.read_text())
    trials = study.trials
    assert len(data) == len(trials)
    for d, t in zip(data, trials, strict=True):
        assert d["number"] == t.number and d["state"] == t.state.value and d["value"] == t.value
        assert d["params"] == dict(t.params)
        assert {k: distribution_from_json(v) for k, v in d["distributions"].items()} == dict(t.distributions)
        assert d["user_attrs"] == dict(t.user_attrs) and d["system_attrs"] == dict(t.system_attrs)
        start = d["datetime_start"]
        assert (datetime.fromisoformat(start) if start else None) == t.datetime_start
        end = d["datetime_complete"]
        assert (datetime.fromisoformat(end) if end else None) == t.datetime_complete
        assert d["error"] == t.error
    assert "the loss exploded" in data[2]["error"]


def test_export_json_to_stdout(runner: CliRunner, url: str, other: tunelab.Study) -> None:
    result = invoke(runner, "export", "other", "--storage", url, "-f", "json")
    assert result.exit_code == 0, result.output
    assert [d["value"] for d in json.loads(result.stdout)] == [t.value for t in other.trials]


# -- delete --------------------------------------------------------------------------------
def test_delete_with_yes_removes_only_that_study(
    runner: CliRunner, url: str, study: tunelab.Study, other: tunelab.Study
) -> None:
    result = invoke(runner, "delete", "quad", "--storage", url, "--yes")
    assert result.exit_code == 0, result.output
    assert "quad" in result.stdout
    with pytest.raises(StudyNotFoundError):
        tunelab.load_study("quad", url)
    assert len(tunelab.load_study("other", url).trials) == 3


def test_delete_asks_and_keeps_the_study_on_no(runner: CliRunner, url: str, study: tunelab.Study) -> None:
    result = invoke(runner, "delete", "quad", "--storage", url, input="n\n")
    assert result.exit_code == 1
    assert "Delete study 'quad'" in result.stdout
    assert len(tunelab.load_study("quad", url).trials) == 10

    result = invoke(runner, "delete", "quad", "--storage", url, input="y\n")
    assert result.exit_code == 0, result.output
    assert [s.name for s in tunelab.SQLStorage(url).list_studies()] == []


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["show", "nope"], ["best", "nope"], ["export", "nope", "--format", "csv"], ["delete", "nope", "--yes"]],
)
def test_a_missing_study_is_one_error_line(
    runner: CliRunner, url: str, study: tunelab.Study, command: list[str]
) -> None:
    assert_error(invoke(runner, *command, "--storage", url), "'nope'")


@pytest.mark.parametrize(
    ("storage", "needle"),
    [("notaurl", "is not a URL"), ("sqlite:////no/such/dir/t.db", "no database file"),
     ("nosuchdb://host/db", "cannot open storage")],
)
def test_an_unreadable_storage_is_one_error_line(runner: CliRunner, storage: str, needle: str) -> None:
    assert_error(invoke(runner, "studies", "--storage", storage), storage, needle)
    assert_error(invoke(runner, "show", "quad", "--storage", storage), needle)


def test_ctrl_c_exits_130(runner: CliRunner, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tunelab.recipe, "run", interrupted)
    result = invoke(runner, "recipe", "--storage", url, "--no-progress")
    assert result.exit_code == 130
    assert isinstance(result.exception, SystemExit)
    assert "interrupted" in result.stderr and "Traceback" not in result.output


def test_read_commands_do_not_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(app, ["studies", "--storage", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and "no database file" in result.output
    assert not missing.exists()


class _UnregisteredPruner(tunelab.MedianPruner):
    """A user's pruner that was never passed to ``register_pruner``: no process can rebuild it."""


def test_reading_commands_open_a_study_whose_stored_pruner_cannot_be_rebuilt(runner: CliRunner, url: str) -> None:
    s = tunelab.create_study(name="custom", storage=url, seed=0, pruner=_UnregisteredPruner())
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, show_progress=False)
    with pytest.raises(ConfigError, match="not registered here"):
        tunelab.load_study("custom", url)  # resuming needs the pruner: an error naming the fix
    for args in (["show", "custom"], ["best", "custom"], ["export", "custom", "--format", "csv"],
                 ["trial", "custom", "0"], ["diagnose", "custom"]):
        result = invoke(runner, *args, "--storage", url)
        assert result.exit_code == 0, (args, result.output)
    assert table_numbers(invoke(runner, "show", "custom", "--storage", url).stdout) == [
        t.number for t in sorted(s.trials, key=sort_key("minimize"))]


def test_reading_keeps_a_stored_pruner_that_can_be_rebuilt(url: str) -> None:
    from tunelab.study import read_study

    tunelab.create_study(name="median", storage=url, seed=0, pruner=tunelab.MedianPruner(metric="val_loss"))
    study = read_study("median", url)
    assert isinstance(study.pruner, tunelab.MedianPruner) and study.pruner.metric == "val_loss"
    assert type(study.sampler).__name__ == "RandomSampler"  # the stored sampler is not rebuilt to read


def test_a_trial_number_past_64_bits_is_no_such_trial_not_a_traceback(
    runner: CliRunner, url: str, study: tunelab.Study
) -> None:
    huge = str(2**64)  # no SQLite INTEGER holds it: the query raised OverflowError
    for command in (["trial", "quad", huge], ["diagnose", "quad", huge], ["set", "quad", "x=1", "--trial", huge],
                    ["suggest", "quad", "--trial", huge]):
        assert_error(invoke(runner, *command, "--storage", url), f"study 'quad' has no trial number {huge}")
    with pytest.raises(tunelab.errors.TrialNotFoundError):
        study.get_curves(-(2**63) - 1)
