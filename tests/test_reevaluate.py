"""Re-evaluating a stale study (tunelab.reevaluate and `tunelab reevaluate`) on real SQLite files.

"The data changed" is :func:`objectives.shifting` with its optimum moved from x=1 to x=0
(``TUNELAB_TEST_OPTIMUM``, read at every call, so worker processes see it too).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tunelab
from objectives import shifting
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.reevaluate import Reevaluation, reevaluate

TESTS = Path(__file__).parent
OLD_XS = [3.0, 1.0, 1.2, 0.7, 0.5, 0.0, -2.0]
"""Old values (optimum 1): 4, 0, .04, .09, .25, 1, 9; the top five are x = 1.0, 1.2, 0.7, 0.5, 0.0."""


@pytest.fixture(autouse=True)
def data(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TUNELAB_TEST_NOISE", "TUNELAB_TEST_NAN_BELOW", "TUNELAB_TEST_X_HIGH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TUNELAB_TEST_OPTIMUM", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}"


@pytest.fixture
def old(url: str, monkeypatch: pytest.MonkeyPatch) -> tunelab.Study:
    """The old study (optimum x=1), searched with TPE; then the data changes (optimum x=0)."""
    study = tunelab.create_study(name="old", storage=url, sampler=tunelab.TPESampler(n_startup_trials=3), seed=0)
    for x in OLD_XS:
        study.enqueue({"x": x})
    study.optimize(shifting, n_trials=len(OLD_XS), show_progress=False)
    monkeypatch.setenv("TUNELAB_TEST_OPTIMUM", "0")
    return study


def by_x(result: Reevaluation) -> dict[float, str]:
    return {float(r.params["x"]): r.verdict for r in result.rows}


def test_configurations_near_the_old_optimum_go_stale_and_the_links_go_both_ways(old: tunelab.Study) -> None:
    result = reevaluate(old, shifting, top=5, show_progress=False)

    # Spread of the old top five: 1 - 0 = 1, so a change counts beyond 0.25.
    assert result.spread == pytest.approx(1.0) and result.noise is None
    assert [r.old_number for r in result.rows] == [1, 2, 3, 4, 5]
    assert [r.old_rank for r in result.rows] == [1, 2, 3, 4, 5]
    assert by_x(result) == {1.0: "stale", 1.2: "stale", 0.7: "stale", 0.5: "holds", 0.0: "better"}
    assert [r.new_rank for r in result.rows] == [4, 5, 3, 2, 1]
    first = result.rows[0]
    assert first.old_value == pytest.approx(0.0) and first.new_value == pytest.approx(1.0)
    assert first.change == pytest.approx(1.0) and first.new_spread is None and len(first.new_numbers) == 1
    assert result.spearman == pytest.approx(-0.9)
    assert not result.best_holds
    text = result.summary()
    assert "old-reeval" in text and "2 stale" not in text and "3 stale" in text and "is stale" in text
    assert "#1" in text and "#5 is the best" in text and "-0.90" in text

    # The new study: same direction and sampler, the five configurations, linked both ways.
    new = tunelab.load_study("old-reeval", old.storage)
    assert new.direction == old.direction
    assert new.system_attrs["sampler"] == old.system_attrs["sampler"]
    assert [t.params["x"] for t in new.trials] == [1.0, 1.2, 0.7, 0.5, 0.0]
    assert [t.user_attrs["reevaluates"]["number"] for t in new.trials] == [1, 2, 3, 4, 5]
    link = new.system_attrs["reevaluates"]
    assert link["study"] == "old" and link["numbers"] == [1, 2, 3, 4, 5] and link["at"]
    assert link["verdicts"] == {"1": "stale", "2": "stale", "3": "stale", "4": "holds", "5": "better"}
    assert old.system_attrs["reevaluated_by"] == ["old-reeval"]

    # Again: the next free name, appended to the old study's list; where= filters candidates.
    again = reevaluate(old, shifting, top=2, where=lambda t: float(t.params["x"]) < 0.8, show_progress=False)
    assert again.study.name == "old-reeval-2"
    assert [r.old_number for r in again.rows] == [3, 4]
    assert old.system_attrs["reevaluated_by"] == ["old-reeval", "old-reeval-2"]


def test_unchanged_data_holds_and_repeats_measure_the_noise(old: tunelab.Study,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TEST_OPTIMUM", "1")  # nothing changed after all
    monkeypatch.setenv("TUNELAB_TEST_NOISE", "0.01")
    result = reevaluate(old, shifting, top=3, repeats=3, name="same", show_progress=False)

    assert result.study.name == "same" and len(result.study.trials) == 9
    # Round-robin: every configuration once, then again.
    assert [t.user_attrs["reevaluates"]["number"] for t in result.study.trials] == [1, 2, 3] * 3
    assert all(r.verdict == "holds" for r in result.rows)
    assert all(len(r.new_values) == 3 and len(r.new_numbers) == 3 for r in result.rows)
    assert result.noise is not None and result.noise == pytest.approx(0.01, rel=0.3)
    assert all(r.new_spread is not None and r.new_spread > 0 for r in result.rows)
    assert result.best_holds and result.spearman == pytest.approx(1.0)
    assert "still holds" in result.summary()


def test_failing_configurations_are_failed_and_the_others_still_run(old: tunelab.Study,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TEST_NAN_BELOW", "0.6")  # x = 0.5 and 0.0 now diverge
    monkeypatch.setenv("TUNELAB_TEST_X_HIGH", "1.1")  # and the code narrowed the range: x = 1.2 is out
    result = reevaluate(old, shifting, top=5, show_progress=False)

    assert by_x(result) == {1.0: "stale", 1.2: "failed", 0.7: "stale", 0.5: "failed", 0.0: "failed"}
    states = [t.state for t in result.study.trials]
    assert states.count(tunelab.TrialState.FAIL) == 3 and states.count(tunelab.TrialState.COMPLETE) == 2
    rows = {float(r.params["x"]): r for r in result.rows}
    assert "NaN" in rows[0.5].errors[0] and rows[0.5].new_rank is None and rows[0.5].new_value is None
    assert "1.2" in rows[1.2].errors[0]
    assert [rows[1.0].new_rank, rows[0.7].new_rank] == [2, 1]
    assert "3 failed" in result.summary()


def test_every_configuration_failing_with_a_usage_error_raises_it(old: tunelab.Study,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TEST_X_HIGH", "-3")  # no old configuration fits the new range
    with pytest.raises(ConfigError, match="parameter 'x'"):
        reevaluate(old, shifting, top=2, show_progress=False)


def test_worker_processes(old: tunelab.Study) -> None:
    result = reevaluate(old, shifting, top=3, repeats=2, n_workers=2, show_progress=False)
    assert len(result.study.get_trials([tunelab.TrialState.COMPLETE])) == 6
    assert by_x(result) == {1.0: "stale", 1.2: "stale", 0.7: "stale"}
    assert result.noise == pytest.approx(0.0)


def test_search_continues_from_the_reevaluated_trials(old: tunelab.Study) -> None:
    result = reevaluate(old, shifting, top=3, search=4, show_progress=False)
    trials = result.study.trials
    assert result.search_trials == 4 and len(trials) == 7
    assert all(t.system_attrs.get("enqueued") for t in trials[:3])
    assert not any(t.system_attrs.get("enqueued") for t in trials[3:])
    assert all("planned" in t.system_attrs for t in trials[3:])  # planned by the study's TPE sampler
    assert isinstance(result.study.sampler, tunelab.TPESampler)
    assert result.study.sampler.n_startup_trials == 3  # the re-evaluations are its start-up trials
    assert "4 search trials" in result.summary()
    assert result.study.system_attrs["warm_start"] == [[old.name, None]]  # and learns from the whole old study


def test_search_with_a_sampler_that_has_no_model_runs_without_a_warm_start(old: tunelab.Study) -> None:
    result = reevaluate(old, shifting, top=2, search=2, sampler=tunelab.RandomSampler(), show_progress=False)
    assert result.search_trials == 2 and len(result.study.trials) == 4
    assert "warm_start" not in result.study.system_attrs  # RandomSampler has nothing to learn it with


def test_bad_input_is_refused_before_anything_runs(old: tunelab.Study, url: str) -> None:
    def objective(trial: tunelab.Trial) -> float:
        raise AssertionError("must not run")

    for kwargs, needle in [
        ({"top": 0}, "top=...) must be an integer >= 1"),
        ({"repeats": 0}, "repeats=...) must be an integer >= 1"),
        ({"search": -1}, "search=...) must be an integer >= 0"),
        ({"tolerance": -0.1}, "tolerance=...) must be a number >= 0"),
        ({"name": "old"}, "name='old'): a study of that name exists already"),
        ({"where": lambda t: False}, "none of the 7 COMPLETE trials of study 'old' passes where="),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            reevaluate(old, objective, **kwargs)  # type: ignore[arg-type]
    lock = threading.Lock()

    def holds_a_lock(trial: tunelab.Trial) -> float:
        with lock:
            raise AssertionError("must not run")

    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        reevaluate(old, holds_a_lock, n_workers=2)
    empty = tunelab.create_study(name="empty", storage=url)
    empty.tell(empty.ask(), state="FAIL")
    with pytest.raises(ConfigError, match="study 'empty' has no COMPLETE trial to re-evaluate"):
        reevaluate(empty, objective)
    assert {s.name for s in old.storage.list_studies()} == {"old", "empty"}  # nothing was created


def test_a_study_with_several_objectives_is_refused_and_infeasible_trials_are_not_the_top(url: str) -> None:
    # A study with several objectives ran every configuration, and each FAILed ("return a number");
    # the top of a constrained study was its best value, feasible or not.
    def objective(trial: tunelab.Trial) -> float:
        raise AssertionError("must not run")

    mo = tunelab.create_study(name="mo", storage=url, directions=["minimize", "minimize"])
    mo.tell(mo.ask(), values=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"study 'mo' has 2 objectives .* re-run its Pareto front instead"):
        reevaluate(mo, objective)
    assert {s.name for s in mo.storage.list_studies()} == {"mo"}
    one = tunelab.create_study(name="one", storage=url, sampler=tunelab.RandomSampler())
    for x, memory in [(0.0, 9.0), (1.0, 1.0), (2.0, 1.0)]:
        trial = one.ask()
        trial.suggest_float("x", -3.0, 3.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)  # x = 0, the lowest value, is infeasible
        one.tell(trial, x)
    result = reevaluate(one, lambda t: t.params["x"], top=2)
    assert [row.old_number for row in result.rows] == [1, 2]


def test_past_the_feasible_trials_the_top_takes_the_nearest_to_feasible(url: str) -> None:
    # Infeasible trials came by value: the one furthest from its bound (and the best value) came first.
    study = tunelab.create_study(name="c", storage=url, sampler=tunelab.RandomSampler())
    for x, memory in [(2.0, 1.0), (0.1, 20.0), (1.5, 8.5)]:
        trial = study.ask()
        trial.suggest_float("x", -3.0, 3.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, x)
    result = reevaluate(study, lambda t: t.params["x"], top=2)
    assert [row.old_number for row in result.rows] == [0, 2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "120", "NO_COLOR": "1"})


def test_cli_prints_the_table_and_the_summary(old: tunelab.Study, url: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["reevaluate", "old", "--top", "5", "--objective", "objectives:shifting",
                                 "--path", str(TESTS), "--storage", url, "--repeats", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = result.output
    for header in ("old #", "old value", "new value", "change", "rank", "verdict"):
        assert header in out
    assert "old -> old-reeval (minimize)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert lines["1"][-1] == "stale" and lines["1"][3] == "+1" and lines["1"][4:7] == ["1", "->", "4"]
    assert lines["4"][-1] == "holds" and lines["5"][-1] == "better"
    assert "Re-evaluated the best 5 configurations of study 'old'" in out and "is stale" in out.replace("\n", " ")


def test_cli_errors(old: tunelab.Study, url: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["reevaluate", "old", "--objective", "objectives:nope",
                                 "--path", str(TESTS), "--storage", url])
    assert result.exit_code == 1
    assert "error: --objective 'objectives:nope'" in result.stderr and "has no attribute 'nope'" in result.stderr
    result = runner.invoke(app, ["reevaluate", "old", "--objective", "nomodule_here:f", "--storage", url])
    assert result.exit_code == 1 and "no module named 'nomodule_here'" in result.stderr
    result = runner.invoke(app, ["reevaluate", "missing", "--objective", "objectives:shifting",
                                 "--path", str(TESTS), "--storage", url])
    assert result.exit_code == 1 and "missing" in result.stderr
    result = runner.invoke(app, ["reevaluate", "old", "--top", "0", "--objective", "objectives:shifting",
                                 "--path", str(TESTS), "--storage", url])
    assert result.exit_code == 2  # Typer refuses it
