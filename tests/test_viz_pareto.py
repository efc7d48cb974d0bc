"""The results views of a study with several objectives: the Pareto front plot (2-D and 3-D), the
hypervolume history, the trade-off table, and the importances of each objective."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tunelab
from tunelab.analysis.importance import importance
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.multiobjective import dominates, hypervolume, losses
from tunelab.viz import pareto_tradeoff_table, plot_history, plot_hypervolume_history, plot_pareto_front
from tunelab.viz.pareto import default_reference, hypervolume_history


def make_study(n: int = 40, seed: int = 0, storage: str | None = None, three: bool = False) -> tunelab.Study:
    """acc (max) grows with x, latency (min) with x and y: a trial with y > 0 is dominated by one with
    the same x and a smaller y. The constraint mem = x + y <= 1.2 leaves some trials infeasible."""
    names = ["acc", "latency", "cost"] if three else ["acc", "latency"]
    dirs = ["maximize", "minimize", "minimize"] if three else ["maximize", "minimize"]
    study = tunelab.create_study(name="mo", storage=storage, directions=dirs, objective_names=names, seed=seed,
                                 sampler=tunelab.RandomSampler())
    rng = random.Random(seed)
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        trial.suggest_categorical("opt", ["adam", "sgd"])
        trial.set_constraint("mem", x + y, upper=1.2)
        values = [x, x + y + 0.01 * rng.random()]
        if three:
            values.append(1.0 - x + y)
        study.tell(trial, values=values)
    return study


def brute_front(study: tunelab.Study) -> set[int]:
    done = [t for t in study.trials if t.state == tunelab.TrialState.COMPLETE and t.feasible]
    loss = {t.number: losses([t.values], study.directions)[0] for t in done}  # type: ignore[list-item]
    return {a for a in loss if not any(dominates(loss[b], loss[a]) for b in loss if b != a)}


@pytest.fixture(scope="module")
def study() -> tunelab.Study:
    return make_study()


def traces(fig: object) -> dict[str, object]:
    return {t.name: t for t in fig.data}  # type: ignore[attr-defined]


# -- the front -----------------------------------------------------------------------------------------
def test_front_2d_highlights_the_front_and_marks_the_others(study: tunelab.Study) -> None:
    fig = plot_pareto_front(study)
    by_name = traces(fig)
    front = brute_front(study)
    assert set(fig.layout.meta["front"]) == front == {t.number for t in study.best_trials}
    assert 2 <= len(front) < 40
    on_front = by_name["Pareto front"]
    assert len(on_front.x) == len(front)
    dominated, infeasible = by_name["dominated"], by_name["infeasible"]
    assert dominated.marker.opacity < on_front.marker.opacity
    assert infeasible.marker.symbol == "x" and infeasible.marker.color == "#7f7f7f"
    n_infeasible = sum(1 for t in study.trials if not t.feasible)
    assert n_infeasible > 0 and len(infeasible.x) == n_infeasible
    assert len(dominated.x) == 40 - n_infeasible - len(front)
    assert all("violation: " in h for h in infeasible.text)
    assert fig.layout.xaxis.title.text == "acc (max)" and fig.layout.yaxis.title.text == "latency (min)"
    hover = on_front.text[0]
    n = int(hover.split()[1])
    t = study.trials[n]
    assert f"acc: {t.values[0]:.6g}" in hover and f"latency: {t.values[1]:.6g}" in hover  # type: ignore[index]
    assert "x: " in hover and "opt: " in hover and "mem: " in hover


def test_front_step_line_walks_the_front(study: tunelab.Study) -> None:
    line = traces(plot_pareto_front(study))["front (step line)"]
    xs, ys = np.array(line.x), np.array(line.y)
    front = sorted(study.best_trials, key=lambda t: -t.values[0])  # type: ignore[index]
    assert len(xs) == 2 * len(front) - 1
    # from the most accurate (and slowest) trial: acc down is latency down, one coordinate at a time, the
    # corners on the dominated side (the next trial's acc at the previous one's latency)
    assert np.all(np.diff(xs) <= 0) and np.all(np.diff(ys) <= 0)
    assert np.all((np.diff(xs) == 0) | (np.diff(ys) == 0))
    assert [(xs[k], ys[k]) for k in range(0, len(xs), 2)] == [tuple(t.values) for t in front]  # type: ignore[arg-type]
    assert [(xs[k], ys[k]) for k in range(1, len(xs), 2)] == [
        (b.values[0], a.values[1]) for a, b in itertools.pairwise(front)]  # type: ignore[index]


def test_front_only_and_picked_objectives() -> None:
    three = make_study(three=True, n=30)
    fig = plot_pareto_front(three)
    kinds = {t.type for t in fig.data}
    assert "scatter3d" in kinds and "mesh3d" in kinds
    assert fig.layout.scene.zaxis.title.text == "cost (min)"
    assert set(fig.layout.meta["front"]) == brute_front(three)
    two = plot_pareto_front(three, objectives=["latency", "acc"], include_dominated=False)
    assert {t.name for t in two.data} == {"Pareto front", "front (step line)"}
    assert two.layout.xaxis.title.text == "latency (min)"
    assert "of these 2 of 3 objectives" in two.layout.title.text
    with pytest.raises(ConfigError, match=r"unknown objective\(s\) \['speed'\]"):
        plot_pareto_front(three, objectives=["acc", "speed"])
    with pytest.raises(ConfigError, match="2 or 3 different"):
        plot_pareto_front(three, objectives=["acc", "acc"])


def test_four_objectives_need_a_choice() -> None:
    study = tunelab.create_study(directions=["minimize"] * 4, objective_names=list("abcd"))
    study.optimize(lambda t: [t.suggest_float("x", 0, 1)] * 4, n_trials=3)
    with pytest.raises(ConfigError, match=r"objectives=\[\.\.\.\] with two or three of \['a', 'b', 'c', 'd'\]"):
        plot_pareto_front(study)
    assert plot_pareto_front(study, objectives=["a", "b", "c"]).data[0].type == "scatter3d"


def test_single_objective_is_refused_and_an_empty_study_says_so() -> None:
    single = tunelab.create_study(direction="minimize")
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for fn in (plot_pareto_front, plot_hypervolume_history, pareto_tradeoff_table):
        with pytest.raises(ConfigError, match=r"several objectives.*plot_history"):
            fn(single)
    empty = tunelab.create_study(directions=["maximize", "minimize"], objective_names=["acc", "latency"])
    for fig in (plot_pareto_front(empty), plot_hypervolume_history(empty)):
        assert fig.layout.meta["empty"] is True and "No" in fig.layout.meta["message"]
    assert pareto_tradeoff_table(empty) == []
    assert default_reference(empty) is None
    assert plot_history(make_study(n=3)).data  # the other figures still show the first objective


# -- hypervolume -----------------------------------------------------------------------------------------
def test_hypervolume_history_grows_to_the_fronts_volume(study: tunelab.Study) -> None:
    fig = plot_hypervolume_history(study)
    line = traces(fig)["hypervolume"]
    volumes = np.array(line.y)
    assert list(line.x) == list(range(40))
    assert np.all(np.diff(volumes) >= -1e-12) and volumes[-1] > volumes[0]
    ref = fig.layout.meta["reference"]
    feasible = [t for t in study.trials if t.feasible]
    acc = [t.values[0] for t in feasible]  # type: ignore[index]
    lat = [t.values[1] for t in feasible]  # type: ignore[index]
    assert ref[0] == pytest.approx(min(acc) - 0.1 * (max(acc) - min(acc)))
    assert ref[1] == pytest.approx(max(lat) + 0.1 * (max(lat) - min(lat)))
    expected = hypervolume(losses([t.values for t in study.best_trials], study.directions),  # type: ignore[misc]
                           losses([ref], study.directions)[0])
    assert volumes[-1] == pytest.approx(expected)
    assert "the worst feasible values seen, 10% past" in fig.layout.title.text
    # an infeasible trial never moves it
    for t in study.trials[1:]:
        if not t.feasible:
            assert volumes[t.number] == volumes[t.number - 1]


def test_hypervolume_history_of_three_objectives_is_each_prefix_s_volume() -> None:
    # Built point by point (what each trial adds, the rows it dominates dropped): equal to the volume of
    # every prefix's feasible trials computed from scratch.
    study = make_study(60, seed=3, three=True)
    reference = default_reference(study)
    assert reference is not None
    numbers, volumes = hypervolume_history(study, reference)
    ref = losses([reference], study.directions)[0]
    for k, number in enumerate(numbers):
        prefix = [t for t in study.trials if t.number <= number and t.state == tunelab.TrialState.COMPLETE
                  and t.feasible]
        expected = hypervolume(losses([t.values for t in prefix], study.directions), ref) if prefix else 0.0
        assert volumes[k] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_hypervolume_with_a_given_reference(study: tunelab.Study) -> None:
    fig = plot_hypervolume_history(study, reference=[0.0, 3.0])
    assert fig.layout.meta["reference"] == [0.0, 3.0] and "(given): acc=0, latency=3" in fig.layout.title.text
    volumes = traces(fig)["hypervolume"].y
    assert volumes[-1] == pytest.approx(
        hypervolume(losses([t.values for t in study.best_trials], study.directions), [0.0, 3.0]))  # type: ignore[misc]
    for bad in ([1.0], [0.0, float("nan")], "01", [0.0, True]):
        with pytest.raises(ConfigError, match="reference"):
            plot_hypervolume_history(study, reference=bad)  # type: ignore[arg-type]


# -- the table -------------------------------------------------------------------------------------------
def test_tradeoff_table_lists_the_front_by_the_first_objective(study: tunelab.Study) -> None:
    rows = pareto_tradeoff_table(study)
    assert {r["number"] for r in rows} == brute_front(study)
    accs = [r["values"]["acc"] for r in rows]
    assert accs == sorted(accs, reverse=True)  # maximised: best first
    first = rows[0]
    t = study.trials[first["number"]]
    assert first["values"] == {"acc": t.values[0], "latency": t.values[1]}  # type: ignore[index]
    assert first["constraints"] == {"mem": pytest.approx(t.params["x"] + t.params["y"])}  # type: ignore[operator]
    assert first["params"] == dict(t.params)


# -- importance of each objective ------------------------------------------------------------------------
def test_importance_per_objective() -> None:
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["a", "b"], seed=1)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) ** 2 + 0.01 * t.suggest_float("y", 0, 1),
                              t.params["y"] ** 2 + 0.01 * t.params["x"]), n_trials=30)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"2 objectives \(a, b\).*objective='a'"):
        importance(study)
    assert next(iter(importance(study, objective="a"))) == "x"
    assert next(iter(importance(study, objective="b"))) == "y"
    assert importance(study, objective=1, method="ped_anova") == importance(study, objective="b", method="ped_anova")
    assert next(iter(importance(study.trials, objective=1))) == "y"
    with pytest.raises(ConfigError, match="not an objective: the study's objectives are a, b"):
        importance(study, objective="c")
    with pytest.raises(ConfigError, match="out of range"):
        importance(study, objective=2)
    with pytest.raises(ConfigError, match="objective="):
        importance(study.trials)
    single = tunelab.create_study(direction="minimize", seed=0)
    single.optimize(lambda t: t.suggest_float("x", 0, 1) + 0.01 * t.suggest_float("y", 0, 1), n_trials=12)
    assert importance(single) == importance(single, objective="value") == importance(single, objective=0)


def test_importance_command_takes_an_objective(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    make_study(n=12, storage=url)
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})
    refused = runner.invoke(app, ["importance", "mo", "--storage", url])
    assert refused.exit_code != 0 and "--objective acc" in refused.output
    result = runner.invoke(app, ["importance", "mo", "--storage", url, "--objective", "acc", "--json"])
    assert result.exit_code == 0, result.output
    assert next(iter(json.loads(result.output)["importance"])) == "x"


@pytest.mark.filterwarnings("error")  # an overflow warning fails the test
def test_default_reference_and_hypervolume_of_values_near_the_float_maximum() -> None:
    huge = np.finfo(float).max
    study = tunelab.create_study(directions=["minimize", "maximize"])
    for values in [(-huge, -huge), (-1e200, -1e200), (0.0, 0.0), (1e200, 1e200), (huge, huge)]:
        study.tell(study.ask(), values)
    assert default_reference(study) == [huge, -huge]  # 10% past the worst is past the float maximum
    inf = math.inf
    assert hypervolume_history(study, [2e200, -2e200]) == ([0, 1, 2, 3, 4], [0.0, inf, inf, inf, inf])
