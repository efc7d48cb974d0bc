"""tunelab.viz: every figure from a small real study (SQLite, random search, curves, pruned and failed
trials, a log param, a categorical with None, a conditional float and bool), edge cases, static export."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab import Categorical, Float, Int, TrialState, viz
from tunelab.errors import ConfigError

N_TRIALS = 44


def _run(study: tunelab.Study, n: int) -> None:
    """Trials of a synthetic objective, U-shaped in log10(lr); every 11th fails, lr > 0.05 is pruned at step 6."""
    for i in range(n):
        t = study.ask()
        lr = t.suggest_float("lr", 1e-4, 1e-1, log=True)
        opt = t.suggest_categorical("optimizer", [None, "adam", "sgd"])
        layers = t.suggest_int("layers", 1, 4)
        momentum = t.suggest_float("momentum", 0.0, 0.99) if opt == "sgd" else 0.0
        if opt == "sgd":
            t.suggest_bool("nesterov")
        base = (math.log10(lr) + 2.5) ** 2 + 0.1 * layers + (0.2 if opt is None else 0.0) + 0.1 * momentum
        if i % 11 == 5:
            t.report(0, val_loss=5.0)
            study.tell(t, None)  # FAIL
            continue
        pruned = False
        for step in range(20):
            v = base + 2.0 * math.exp(-step / 5)
            t.report(step, val_loss=v, loss=0.9 * v)
            if lr > 0.05 and step == 6:
                pruned = True
                break
        study.tell(t, state=TrialState.PRUNED) if pruned else study.tell(t, base)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tunelab.Study]:
    folder = tmp_path_factory.mktemp("viz")
    s = tunelab.create_study(name="viz", storage=f"sqlite:///{folder / 'viz.db'}", sampler=tunelab.RandomSampler(),
                             seed=0, artifact_dir=folder)
    _run(s, N_TRIALS)
    yield s
    s.storage.close()


def _complete(study: tunelab.Study) -> list[tunelab.FrozenTrial]:
    return study.get_trials([TrialState.COMPLETE])


def _is_empty(fig: object) -> bool:
    meta = fig.layout.meta  # type: ignore[attr-defined]
    return isinstance(meta, dict) and bool(meta.get("empty"))


def _title(fig: object) -> str:
    return str(fig.layout.title.text)  # type: ignore[attr-defined]


def test_fixture_has_every_kind_of_trial(study: tunelab.Study) -> None:
    states = {t.state for t in study.trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} <= states
    assert any("momentum" in t.params for t in _complete(study))
    assert any("momentum" not in t.params for t in _complete(study))
    assert any(t.params.get("optimizer") is None for t in _complete(study))


# -- history -------------------------------------------------------------------------------------
def test_history_points_best_so_far_and_counts(study: tunelab.Study) -> None:
    fig = viz.plot_history(study)
    done = _complete(study)
    points = [t for t in fig.data if t.mode == "markers" and t.name == "trial"]
    assert len(points) == 1 and list(points[0].x) == [t.number for t in done]
    assert all(text.startswith("trial ") and "lr: " in text for text in points[0].text)
    line = next(t for t in fig.data if t.name == "best so far")
    assert np.all(np.diff(np.asarray(line.y)) <= 0)  # minimize: never rises
    assert line.y[-1] == pytest.approx(study.best_value)
    star = next(t for t in fig.data if str(t.name).startswith("best: trial"))
    assert star.x == (study.best_trial.number,) and star.marker.symbol == "star"
    n_pruned = len(study.get_trials([TrialState.PRUNED]))
    assert f"{n_pruned} pruned" in _title(fig) and "fail" in _title(fig)
    assert fig.layout.xaxis.title.text == "trial number" and fig.layout.yaxis.title.text == "objective value"


def test_the_best_star_is_never_an_infeasible_trial() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    for value, memory in [(0.5, 1.0), (0.1, 9.0), (0.3, 2.0)]:  # the lowest value breaks its memory bound
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    star = next(t for t in viz.plot_history(study).data if str(t.name).startswith("best: trial"))
    assert star.x == (2,) == (study.best_trial.number,)


def test_the_best_so_far_line_and_the_stars_leave_infeasible_trials_out() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    for value, memory in [(0.1, 9.0), (0.5, 1.0), (0.05, 9.5), (0.3, 2.0)]:  # the lowest values break the bound
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    line = next(t for t in viz.plot_history(study).data if t.name == "best so far")
    assert math.isnan(line.y[0]) and list(line.y[1:]) == [0.5, 0.5, 0.3]
    none = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    for value in (0.2, 0.1):
        trial = none.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        trial.set_constraint("memory_gb", 9.0, upper=8.0)
        none.tell(trial, value)
    for fig in (viz.plot_history(none), viz.plot_slice(none), viz.plot_contour(none, "x", "y")):
        assert not any(str(t.name).startswith("best: trial") for t in fig.data)
    line = next(t for t in viz.plot_history(none).data if t.name == "best so far")
    assert all(math.isnan(v) for v in line.y)


def test_history_maximize_and_recipe_stages(tmp_path: Path) -> None:
    s = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(), seed=1)
    for i in range(6):
        t = s.ask()
        x = t.suggest_float("x", 0.0, 1.0)
        t.suggest_float("y", 1.0, 10.0, log=True)
        t.set_user_attr("train", {"stage": "coarse" if i < 4 else "final"})
        s.tell(t, x)
    fig = viz.plot_history(s)
    line = next(t for t in fig.data if t.name == "best so far")
    assert np.all(np.diff(np.asarray(line.y)) >= 0)
    assert line.y[-1] == pytest.approx(s.best_value)
    assert {t.name for t in fig.data if t.mode == "markers"} >= {"stage: coarse", "stage: final"}
    assert viz.plot_contour(s, "x", "y").data[0].reversescale is False  # maximize: high values bright
    running = s.ask()  # a RUNNING trial with a curve: drawn dotted, with FAIL
    running.suggest_float("x", 0.0, 1.0)
    running.report(0, val_acc=0.1)
    running.report(1, val_acc=0.2)
    fig = viz.plot_curves(s)
    assert fig.layout.yaxis.title.text == "val_acc"
    assert any(str(t.name).startswith("FAIL / RUNNING (1)") for t in fig.data)


# -- slices --------------------------------------------------------------------------------------
def test_slice_axes_and_conditional_params(study: tunelab.Study) -> None:
    fig = viz.plot_slice(study)
    done = _complete(study)
    main = [t for t in fig.data if not str(t.name).startswith("best")]
    assert [t.name for t in main] == ["lr", "optimizer", "layers", "momentum", "nesterov"]
    by_name = {t.name: t for t in main}
    assert len(by_name["lr"].x) == len(done)
    assert len(by_name["momentum"].x) == sum("momentum" in t.params for t in done) < len(done)
    assert fig.layout.xaxis.type == "log"  # lr
    assert fig.layout.xaxis2.type == "category"
    assert list(fig.layout.xaxis2.categoryarray) == ["None", "adam", "sgd"]
    assert list(fig.layout.xaxis5.categoryarray) == ["False", "True"]
    assert set(by_name["nesterov"].x) <= {"False", "True"}
    assert f"({len(by_name['momentum'].x)} of {len(done)} trials)" in fig.layout.annotations[3].text
    assert "lr (log)" == fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "objective value"
    assert list(by_name["lr"].marker.color) == [t.number for t in done]  # coloured by trial number
    stars = [t for t in fig.data if str(t.name).startswith("best: trial")]
    assert len(stars) == len(study.best_params) and all(s.y == (study.best_value,) for s in stars)


def test_slice_param_selection(study: tunelab.Study) -> None:
    fig = viz.plot_slice(study, ["layers", "lr"])
    assert [t.name for t in fig.data if not str(t.name).startswith("best")] == ["layers", "lr"]
    assert fig.layout.xaxis2.type == "log"
    with pytest.raises(ConfigError, match="known parameters: lr"):
        viz.plot_slice(study, ["nope"])


# -- contour -------------------------------------------------------------------------------------
def test_contour_numeric_log_axes(study: tunelab.Study) -> None:
    fig = viz.plot_contour(study, "lr", "layers")
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds[0] == "Contour" and "Scatter" in kinds
    done = _complete(study)
    points = next(t for t in fig.data if t.name == "trial")
    assert len(points.x) == len(done)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"
    assert fig.layout.xaxis.title.text == "lr (log)" and fig.layout.yaxis.title.text == "layers"
    assert fig.data[0].reversescale is True  # minimize: low values bright
    z = np.array(fig.data[0].z, dtype=float)
    assert np.nanmin(z) >= min(t.value for t in done) - 1e-9
    star = next(t for t in fig.data if str(t.name).startswith("best"))
    assert star.x == (study.best_params["lr"],)


def test_default_contour_pair_prefers_lr_and_weight_decay() -> None:
    s = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    assert viz.default_contour_pair(s.trials) is None  # nothing yet
    for i in range(4):
        t = s.ask()
        t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.suggest_int("width", 8, 64)
        t.suggest_categorical("optimizer", ["adam", "sgd"])  # never a contour axis by default
        if i < 3:
            t.suggest_float("dropout", 0.0, 0.5)
        s.tell(t, float(i))
    assert viz.default_contour_pair(s.trials) == ("lr", "width")  # the two numeric ones all trials have
    t = s.ask()
    t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    t.suggest_float("lr", 1e-4, 1e-1, log=True)
    s.tell(t, 0.0)
    assert viz.default_contour_pair(s.trials) == ("lr", "weight_decay")  # the lr x regularisation landscape


def test_contour_categorical_and_conditional(study: tunelab.Study) -> None:
    fig = viz.plot_contour(study, "lr", "optimizer")
    assert type(fig.data[0]).__name__ == "Heatmap"
    assert fig.layout.yaxis.type == "category"
    fig = viz.plot_contour(study, "momentum", "lr")  # only trials that used momentum
    points = next(t for t in fig.data if t.name == "trial")
    assert len(points.x) == sum("momentum" in t.params for t in _complete(study))
    with pytest.raises(ConfigError, match="two different"):
        viz.plot_contour(study, "lr", "lr")
    with pytest.raises(ConfigError, match="known parameters"):
        viz.plot_contour(study, "lr", "nope")


# -- parallel coordinates ----------------------------------------------------------------------------
def test_parallel_coordinates(study: tunelab.Study) -> None:
    fig = viz.plot_parallel_coordinates(study)
    (pc,) = fig.data
    assert type(pc).__name__ == "Parcoords"
    labels = [d.label for d in pc.dimensions]
    assert labels == ["trial", "lr (log)", "optimizer", "layers", "momentum", "nesterov", "objective value"]
    done = _complete(study)
    assert all(len(d.values) == len(done) for d in pc.dimensions)
    lr = pc.dimensions[1]
    assert lr.ticktext[0] == "0.0001" and lr.ticktext[-1] == "0.1"  # log10 units, real values as labels
    momentum = pc.dimensions[4]
    assert momentum.ticktext[0] == "n/a"
    n_absent = sum("momentum" not in t.params for t in done)
    assert sum(v == momentum.tickvals[0] for v in momentum.values) == n_absent
    assert list(pc.dimensions[2].ticktext) == ["None", "adam", "sgd"]
    assert sorted(pc.line.color) == sorted(t.value for t in done)
    assert pc.line.color[-1] == study.best_value  # the best line drawn last, on top
    assert list(pc.dimensions[0].values)[-1] == study.best_trial.number
    fig = viz.plot_parallel_coordinates(study, ["lr"])
    assert [d.label for d in fig.data[0].dimensions] == ["trial", "lr (log)", "objective value"]


def test_parallel_coordinates_draw_the_feasible_best_on_top_not_an_infeasible_trial() -> None:
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler())
    for value, memory in [(0.5, 1.0), (0.9, 9.0), (0.7, 2.0), (0.95, 9.5)]:  # the highest values break the bound
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    (pc,) = viz.plot_parallel_coordinates(study).data
    assert list(pc.dimensions[0].values)[-1] == study.best_trial.number == 2  # the last line, on top
    assert pc.line.color[-1] == 0.7
    assert set(list(pc.dimensions[0].values)[:2]) == {1, 3}  # the infeasible ones drawn first, underneath
    feasible = pc.dimensions[-2]  # an axis to brush them apart; colours span the feasible values only
    assert feasible.label == "feasible" and list(feasible.values)[:2] == [0, 0] and list(feasible.values)[2:] == [1, 1]
    assert (pc.line.cmin, pc.line.cmax) == (0.5, 0.7)
    assert list(pc.line.color)[:2] == [0.5, 0.5]  # the worst colour, not the brightest


# -- curves --------------------------------------------------------------------------------------
def test_curves_marks_pruned_and_best(study: tunelab.Study) -> None:
    fig = viz.plot_curves(study)
    assert fig.layout.yaxis.title.text == "val_loss" and fig.layout.xaxis.title.text == "step"
    traces = {str(t.name).split(" (")[0]: t for t in fig.data}
    pruned = study.get_trials([TrialState.PRUNED])
    assert traces["PRUNED"].line.dash == "dash"
    marks = traces["pruned here"]
    assert marks.marker.symbol == "x" and len(marks.x) == len(pruned)
    assert set(marks.x) == {6.0}  # where they were stopped
    best = next(t for t in fig.data if str(t.name).startswith("best: trial"))
    assert best.name == f"best: trial {study.best_trial.number}" and best.line.width == 3
    assert len(best.x) == 20
    # One trace per state, curves joined with gaps: COMPLETE curves other than the best.
    complete = traces["COMPLETE"]
    n_complete = len(_complete(study)) - 1
    assert int(np.isnan(np.asarray(complete.x, dtype=float)).sum()) == n_complete - 1
    assert len(complete.x) == n_complete * 20 + n_complete - 1
    assert traces["FAIL / RUNNING"].line.dash == "dot"


def test_curves_capped_keep_the_best_feasible_trials_not_the_infeasible_ones() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    for i in range(10):  # trials 0-4 have the lowest values but break their bound; 5-9 are feasible
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        value = 0.01 * (i + 1) if i < 5 else 0.1 * i
        trial.report(0, val_loss=1.0)
        trial.report(1, val_loss=value)
        trial.set_constraint("memory_gb", 9.0 if i < 5 else 1.0, upper=8.0)
        study.tell(trial, value)
    fig = viz.plot_curves(study, max_trials=4)
    shown = {int(n) for t in fig.data if t.customdata is not None for n in t.customdata if not math.isnan(n)}
    best = next(t for t in fig.data if str(t.name).startswith("best: trial"))
    assert best.name == "best: trial 5"
    # half the budget: the best-ranked feasible trials (5, then 6), the rest an even sample of the others
    assert 6 in shown and len(shown) + 1 == 4


def test_curves_metric_choice_cap_and_thinning(study: tunelab.Study) -> None:
    fig = viz.plot_curves(study, metric="loss", max_trials=5, max_points=4)
    assert fig.layout.yaxis.title.text == "loss"
    best = next(t for t in fig.data if str(t.name).startswith("best: trial"))
    assert len(best.x) == 4 and best.x[0] == 0 and best.x[-1] == 19
    shown = sum(len(t.x) for t in fig.data if t.mode == "markers")
    assert shown == 5 - 1  # an end marker per shown trial but the best
    assert "5 of" in _title(fig)
    with pytest.raises(ConfigError, match="reported metrics: loss, val_loss"):
        viz.plot_curves(study, metric="accuracy")
    with pytest.raises(ConfigError):
        viz.plot_curves(study, max_trials=0)
    assert sorted(viz.reported_metrics(study)) == ["loss", "val_loss"]


# -- importance ----------------------------------------------------------------------------------
def test_importance_bars() -> None:
    fig = viz.plot_importance({"layers": 0.2, "lr": 0.7, "optimizer": 0.1})
    (bar,) = fig.data
    assert bar.orientation == "h" and list(bar.y) == ["optimizer", "layers", "lr"]  # largest drawn on top
    assert list(bar.text) == ["10%", "20%", "70%"]
    assert _is_empty(viz.plot_importance({}))
    with pytest.raises(ConfigError, match="finite"):
        viz.plot_importance({"lr": float("nan")})


# -- stages --------------------------------------------------------------------------------------
def test_stages(tmp_path: Path, study: tunelab.Study) -> None:
    assert viz.plot_stages(study) is None  # random search records no stages
    s = tunelab.create_study(sampler=tunelab.CoarseToFineSampler(n_stages=3, trials_per_stage=8), seed=0)
    _run(s, 30)
    fig = viz.plot_stages(s)
    assert fig is not None
    assert [a.text for a in fig.layout.annotations] == ["lr (log)", "layers", "momentum"]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "linear"
    ranges = [t for t in fig.data if t.name == "stage range"]
    assert len(ranges) == 3
    # Stage 0 spans the whole range; later stages the range their first trial recorded.
    lr_range = list(ranges[0].y)
    assert lr_range[:2] == [1e-4, 1e-1]
    recorded = next(t.system_attrs["coarse_to_fine"]["ranges"]["lr"] for t in s.trials
                    if t.system_attrs["coarse_to_fine"]["stage"] == 1 and t.system_attrs["coarse_to_fine"]["ranges"])
    assert lr_range[3:5] == recorded
    points = [t for t in fig.data if t.name == "COMPLETE" and t.yaxis == "y"]
    assert len(points[0].x) == len(_complete(s))
    assert list(fig.layout.xaxis3.ticktext) == ["stage 0", "stage 1", "stage 2"]


# -- lr range ------------------------------------------------------------------------------------
def _range_record(verdict: str = "pass", kept: list[float] | None = None) -> dict[str, object]:
    runs = [{"lr": lr, "status": status, "curve": [[i, 2.3 * (1.2 ** i if status == "diverged" else 1 / (1 + k * i))]
                                                   for i in range(1, 30)]}
            for k, (lr, status) in enumerate([(1e-4, "slow"), (1e-3, "falls"), (1e-2, "falls"), (1e-1, "diverged")])]
    runs[-1]["curve"][-1][1] = None  # type: ignore[index]  # a non-finite loss is stored as None
    evidence: dict[str, object] = {"runs": runs}
    if kept is not None:
        evidence["range"] = kept
    return {"steps": [{"step": "initial_loss", "verdict": "pass", "message": "ok", "evidence": {}},
                      {"step": "lr_range", "verdict": verdict, "message": "no learning rate made the loss fall",
                       "evidence": evidence}]}


def test_lr_range() -> None:
    s = tunelab.create_study(seed=0)
    assert viz.plot_lr_range(s) is None
    s.set_system_attr("recipe", _range_record(kept=[1e-3, 1e-2]))
    fig = viz.plot_lr_range(s)
    assert fig is not None
    runs = [t for t in fig.data if str(t.name).startswith("lr ")]
    assert len(runs) == 4
    assert [t.line.dash for t in runs] == ["solid", "solid", "solid", "dash"]
    assert "kept lr range [0.001, 0.01]" in _title(fig)
    band = next(t for t in fig.data if t.name == "kept range")
    assert min(band.x) == 1e-3 and max(band.x) == 1e-2
    assert fig.layout.xaxis2.type == "log" and fig.layout.yaxis.title.text == "training loss"
    assert fig.layout.yaxis.range is not None  # the diverged run does not squash the others
    s.set_system_attr("recipe", _range_record("fail"))
    fig = viz.plot_lr_range(s)
    assert fig is not None and "fail: no learning rate" in _title(fig)
    assert not any(t.name == "kept range" for t in fig.data)


# -- edge cases ----------------------------------------------------------------------------------
def test_empty_study_gives_explaining_figures() -> None:
    s = tunelab.create_study(seed=0)
    for fig in (viz.plot_history(s), viz.plot_slice(s), viz.plot_parallel_coordinates(s), viz.plot_curves(s)):
        assert _is_empty(fig) and fig.layout.title.text and fig.layout.annotations
    assert viz.plot_stages(s) is None and viz.plot_lr_range(s) is None
    with pytest.raises(ConfigError):
        viz.plot_contour(s, "lr", "wd")


def test_one_complete_trial_and_only_failures() -> None:
    s = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    t = s.ask()
    t.suggest_float("lr", 1e-4, 1e-1, log=True)
    t.suggest_categorical("flag", [True, False, None])
    s.tell(t, None)  # FAIL: no COMPLETE trial
    assert _is_empty(viz.plot_history(s)) and "1 fail" in viz.plot_history(s).layout.annotations[0].text
    assert _is_empty(viz.plot_contour(s, "lr", "flag"))
    t = s.ask()
    t.suggest_float("lr", 1e-4, 1e-1, log=True)
    t.suggest_categorical("flag", [True, False, None])
    t.report(0, acc=0.5)
    s.tell(t, 0.5)
    assert len(viz.plot_history(s).data[0].x) == 1
    fig = viz.plot_slice(s)
    assert list(fig.layout.xaxis2.categoryarray) == ["True", "False", "None"]
    fig = viz.plot_contour(s, "lr", "flag")
    assert not _is_empty(fig) and "too few" in _title(fig)
    assert len(viz.plot_parallel_coordinates(s).data[0].dimensions) == 4
    fig = viz.plot_curves(s)  # no preferred metric: the one reported
    assert fig.layout.yaxis.title.text == "acc"


def test_not_a_study_and_missing_plotly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="Study"):
        viz.plot_history("study")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ConfigError, match=r"pip install 'tunelab\[report\]'"):
        viz.plot_importance({"lr": 1.0})


def test_large_study_uses_webgl_and_caps_curves() -> None:
    s = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    storage = s.storage
    study_id = storage.get_study(s.name).study_id
    rng = np.random.default_rng(0)
    dists = {"lr": Float(1e-5, 1.0, log=True), "layers": Int(1, 8), "opt": Categorical(["a", "b"])}
    for n in range(1500):
        params = {"lr": float(10 ** rng.uniform(-5, 0)), "layers": int(rng.integers(1, 9)), "opt": "ab"[n % 2]}
        trial = storage.create_trial(study_id, params=params, distributions=dists)
        if n < 300:
            for step in range(0, 1200, 1):
                if step % 100 == 0:
                    storage.report(trial.trial_id, step, {"val_loss": 1.0 / (1 + step) + n})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(rng.normal()))
    assert type(viz.plot_history(s).data[0]).__name__ == "Scattergl"
    assert type(viz.plot_slice(s).data[0]).__name__ == "Scattergl"
    fig = viz.plot_curves(s, max_trials=50, max_points=5)
    shown = [t for t in fig.data if t.mode == "lines"]
    n_curves = sum(int(np.isnan(np.asarray(t.x, dtype=float)).sum()) + 1 for t in shown)
    assert n_curves == 50
    assert all(len(t.x) <= 50 * 6 for t in shown)
    assert "50 of 300" in _title(fig)


# -- static export -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")  # inside kaleido 0.2.1
def test_save_image_png_svg(tmp_path: Path, study: tunelab.Study) -> None:
    fig = viz.plot_history(study)
    png = viz.save_image(fig, tmp_path / "out" / "history.png", width=500, height=300)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = viz.save_image(viz.plot_curves(study), tmp_path / "curves.svg")
    assert "<svg" in svg.read_text()[:200]
    with pytest.raises(ConfigError, match=r"\.png"):
        viz.save_image(fig, tmp_path / "history.gif")
    with pytest.raises(ConfigError, match="width"):
        viz.save_image(fig, tmp_path / "history.png", width=0)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


# -- the contour covers every point (issue 16 item 15) ----------------------------------------------
def _inside(fig: Any, axis: str, values: list[float], log: bool) -> None:
    surface = fig.data[0]
    coords = np.array(getattr(surface, axis), dtype=float)
    lo, hi = getattr(fig.layout, f"{axis}axis").range
    for v in values:
        assert coords.min() < v < coords.max(), (axis, v, coords.min(), coords.max())
        at = math.log10(v) if log else v
        assert lo < at < hi, (axis, v, lo, hi)


@pytest.mark.parametrize("n", [8, 40, 300])
def test_the_contour_area_and_axes_hold_every_trial_and_the_best(n: int) -> None:
    s = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=n)
    for _ in range(n):
        t = s.ask()
        lr = t.suggest_float("lr", 1e-5, 1e-1, log=True)
        wd = t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        width = t.suggest_int("width", 8, 512)
        s.tell(t, lr + 1e-9 * wd + 1e-12 * width)  # best: the smallest lr, a point on the edge
    fig = viz.plot_contour(s, "lr", "weight_decay")
    assert type(fig.data[0]).__name__ == "Contour"
    done = _complete(s)
    best = s.best_trial
    assert best.params["lr"] == min(t.params["lr"] for t in done)  # the best sits on the outermost point
    _inside(fig, "x", [t.params["lr"] for t in done], log=True)
    _inside(fig, "y", [t.params["weight_decay"] for t in done], log=True)
    z = fig.data[0].z
    assert len(z) == len(fig.data[0].y) and all(len(row) == len(fig.data[0].x) for row in z)
    star = next(t for t in fig.data if str(t.name).startswith("best"))
    assert star.name == f"best: trial {best.number}"
    assert (star.x[0], star.y[0]) == (best.params["lr"], best.params["weight_decay"])
    fig = viz.plot_contour(s, "width", "lr")  # a linear axis too
    _inside(fig, "x", [float(t.params["width"]) for t in done], log=False)
