"""tunelab.integrations.tensorboard: every trial a TensorBoard run, and a row of the HParams table."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups, metadata

import tunelab
from integration_tracking_objectives import CRASHES, FAILS, PRUNED, STEPS, AboveLimit, descend, two_objectives
from tunelab.errors import ConfigError
from tunelab.integrations.tensorboard import CONFIG_SUFFIX, STATE_COLUMN, TensorBoardCallback

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "integrations" / "track_tensorboard.py"
PAGE = ROOT / "docs" / "integrations" / "tensorboard.md"


def _study(tmp_path: Path, name: str = "descent") -> tunelab.Study:
    return tunelab.create_study(name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", seed=0,
                                sampler=tunelab.RandomSampler(), pruner=AboveLimit())


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def _session_groups(log_dir: Path) -> dict[str, Any]:
    """The HParams table as TensorBoard's hparams plugin computes it: session group name -> group."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    tb = base_plugin.TBContext(logdir=str(log_dir), multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, str(log_dir)))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000,
        allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING,
                          api_pb2.STATUS_UNKNOWN],
    )
    found = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb), "", request).run()
    return {g.name: g for g in found.session_groups}


def _experiment(log_dir: Path) -> Any:
    assert len(list(log_dir.glob(f"*{CONFIG_SUFFIX}"))) == 1  # one file of columns: the older ones are gone
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return metadata.parse_experiment_plugin_data(acc.PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG])


def _check_runs(log_dir: Path, study: tunelab.Study) -> None:
    """One run per finished trial holding its curves once each, its value, and its row of the table."""
    assert sorted(p.name for p in log_dir.iterdir() if p.is_dir()) == sorted(f"trial-{t.number}" for t in study.trials)
    groups = _session_groups(log_dir)
    assert sorted(groups) == sorted(f"trial-{t.number}" for t in study.trials)
    for trial in study.trials:
        scalars = _scalars(log_dir / f"trial-{trial.number}")
        curves = study.get_curves(trial.number)
        for name, (steps, values) in curves.items():
            assert [step for step, _ in scalars[name]] == steps  # every point once
            assert [value for _, value in scalars[name]] == pytest.approx(values, rel=1e-6)  # float32
        group = groups[f"trial-{trial.number}"]
        (session,) = group.sessions
        assert group.hparams[STATE_COLUMN].string_value == trial.state.value
        assert session.status == (api_pb2.STATUS_FAILURE if trial.state.value == "FAIL" else api_pb2.STATUS_SUCCESS)
        assert group.hparams["lr"].number_value == pytest.approx(trial.params["lr"])
        assert group.hparams["kind"].string_value == trial.params["kind"]
        assert group.hparams["width"].number_value == trial.params["width"]
        if trial.state.value == "COMPLETE":
            assert [v.value for v in group.metric_values] == pytest.approx([trial.value], rel=1e-6)
            assert [step for step, _ in scalars["value"]] == [STEPS - 1]
        else:
            assert "value" not in scalars


@pytest.mark.parametrize("live", [True, False])
def test_each_trial_is_a_run_with_scalars_and_a_row_of_the_hparams_table(tmp_path: Path, live: bool) -> None:
    study = _study(tmp_path)
    cb = TensorBoardCallback(tmp_path / "runs")
    study.optimize(functools.partial(descend, cb=cb if live else None), n_trials=4, callbacks=[cb])
    assert [t.state.value for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    _check_runs(tmp_path / "runs", study)
    assert len(_scalars(tmp_path / "runs" / f"trial-{FAILS}")["loss"]) == 2
    assert len(_scalars(tmp_path / "runs" / f"trial-{PRUNED}")["loss"]) == 1
    # The columns: every parameter with the domain of its distribution, the state, the value.
    experiment = _experiment(tmp_path / "runs")
    infos = {h.name: h for h in experiment.hparam_infos}
    assert sorted(infos) == ["kind", "lr", "trial_state", "width", "x0"]
    assert (infos["lr"].domain_interval.min_value, infos["lr"].domain_interval.max_value) == (0.05, 0.4)
    assert (infos["width"].domain_interval.min_value, infos["width"].domain_interval.max_value) == (2, 8)
    assert [v.string_value for v in infos["kind"].domain_discrete.values] == ["sgd", "adam"]
    assert [m.name.tag for m in experiment.metric_infos] == ["value"]
    # A later call (a new callback, as another process would have) adds runs and keeps one table.
    again = TensorBoardCallback(tmp_path / "runs")
    study.optimize(functools.partial(descend, cb=again), n_trials=2, callbacks=[again])
    _check_runs(tmp_path / "runs", study)
    assert len(_session_groups(tmp_path / "runs")) == 6


def test_the_scalars_are_on_disk_while_the_trial_runs(tmp_path: Path) -> None:
    study = _study(tmp_path)
    cb = TensorBoardCallback(tmp_path / "runs")
    trial = study.ask()
    trial.suggest_float("x0", 1.0, 2.0)
    cb.report(trial, 0, loss=0.5)
    cb.report(trial, 1, loss=0.25, acc=0.75)
    assert _scalars(cb.run_dir(trial.number)) == {"loss": [(0, 0.5), (1, 0.25)], "acc": [(1, 0.75)]}
    cb(study, study.tell(trial, 0.25))
    assert _scalars(cb.run_dir(trial.number)) == {"loss": [(0, 0.5), (1, 0.25)], "acc": [(1, 0.75)],
                                                  "value": [(1, 0.25)]}
    assert list(_session_groups(tmp_path / "runs")) == ["trial-0"]


@pytest.mark.parametrize("live", [True, False])
def test_a_new_study_in_a_used_log_dir_writes_its_own_curves(tmp_path: Path, live: bool) -> None:
    # The steps already in trial-0/ were taken as this trial's, written live: a second study's trial 0
    # got none of its curve points, so its run showed the first study's curve under its own value.
    def run(scale: float) -> tunelab.Study:
        cb = TensorBoardCallback(tmp_path)

        def objective(trial: tunelab.Trial) -> float:
            trial.suggest_float("x", 0.0, 1.0)
            for step in range(3):
                if live:
                    cb.report(trial, step, loss=scale * (step + 1))
                else:
                    trial.report(step, loss=scale * (step + 1))
            return scale

        study = tunelab.create_study(name="same", seed=0)  # the same name, another study
        study.optimize(objective, n_trials=1, callbacks=[cb])
        return study

    run(1.0)
    run(10.0)
    scalars = _scalars(tmp_path / "trial-0")
    assert sorted(v for s, v in scalars["loss"] if s == 2) == [3.0, 30.0]  # both studies' points, once each
    assert scalars["loss"] == sorted([(s, scale * (s + 1)) for s in range(3) for scale in (1.0, 10.0)])


def test_two_objectives_write_one_value_each_and_a_wrong_metric_name_fails_first(tmp_path: Path) -> None:
    study = tunelab.create_study(directions=["minimize", "maximize"], objective_names=["err", "acc"], seed=0)
    cb = TensorBoardCallback(tmp_path / "runs")
    study.optimize(functools.partial(two_objectives, cb=cb), n_trials=2, callbacks=[cb])
    for trial in study.trials:
        scalars = _scalars(cb.run_dir(trial.number))
        assert (scalars["err"][0][1], scalars["acc"][0][1]) == pytest.approx(trial.values, rel=1e-6)
    assert [m.name.tag for m in _experiment(tmp_path / "runs").metric_infos] == ["err", "acc"]
    bad = TensorBoardCallback(tmp_path / "runs", metric_name=["err", "acc", "f1"])
    with pytest.raises(ConfigError, match=r"has 3 name\(s\) but study .* has 2 objective\(s\) \(err, acc\)"):
        study.optimize(functools.partial(two_objectives, cb=bad), n_trials=1, callbacks=[bad])
    assert study.trials[-1].state.value == "FAIL"  # stopped at its first report


def test_constraints_are_written_with_whether_the_trial_is_feasible(tmp_path: Path) -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    cb = TensorBoardCallback(tmp_path / "runs")

    def objective(trial: tunelab.Trial) -> float:
        trial.set_constraint("memory_gb", [0.4, 0.9][trial.number], upper=0.5)
        return float(trial.number)

    study.optimize(objective, n_trials=2, callbacks=[cb])
    first, second = (_scalars(cb.run_dir(n)) for n in (0, 1))
    assert first["constraint_memory_gb"][0][1] == pytest.approx(0.4) and first["feasible"][0][1] == 1.0
    assert second["constraint_memory_gb"][0][1] == pytest.approx(0.9) and second["feasible"][0][1] == 0.0


@pytest.mark.parametrize(("args", "match"), [
    ((None,), "log_dir must be a folder path"),
    (("",), "log_dir must be a folder path"),
    (("runs", ""), "metric_name must be a non-empty string"),
    (("runs", ["a", 3]), "metric_name must be a name"),
])
def test_bad_options_are_refused_at_construction(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TensorBoardCallback(*args)


def test_a_file_as_log_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        TensorBoardCallback(tmp_path / "runs")


def test_a_log_dir_that_cannot_be_written_is_refused_before_any_trial(tmp_path: Path) -> None:
    # Under a file, the folder cannot be made: the callback failed with a bare NotADirectoryError out of
    # optimize after the first trial had trained (a read-only folder failed the same way, PermissionError).
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"log_dir='.*file/runs' cannot be written \(Not a directory\)"):
        TensorBoardCallback(tmp_path / "file" / "runs")
    cb = TensorBoardCallback(tmp_path / "new" / "runs")  # a folder that can be made is made, and left empty
    assert cb.log_dir.is_dir() and not list(cb.log_dir.iterdir())


@pytest.mark.slow
def test_two_workers_share_one_log_dir_and_a_crashed_worker_leaves_its_run_failed(tmp_path: Path) -> None:
    study = _study(tmp_path, "shared")
    cb = TensorBoardCallback(tmp_path / "runs")
    study.optimize(functools.partial(descend, cb=cb, crash=True), n_trials=6, n_workers=2, callbacks=[cb])
    trials = study.trials
    assert len(trials) == 6 and trials[CRASHES].state.value == "FAIL"
    assert "SIGKILL" in (trials[CRASHES].error or "")
    assert len(study.get_curves(CRASHES)["loss"][0]) == 2  # what it reported before it died
    _check_runs(tmp_path / "runs", study)
    # The worker wrote the curves live: each run holds its worker's file and the end's.
    assert all(len(list(cb.run_dir(t.number).iterdir())) == 2 for t in trials)


def test_the_example_runs_and_the_page_shows_it() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(re.findall(r"^trial-\d+ (COMPLETE|PRUNED): \d+ val_error points", done.stdout, re.M)) == 8, done.stdout
    block = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert block is not None and block.group(1) == EXAMPLE.read_text()
