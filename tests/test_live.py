"""Live hyperparameters and branches (tunelab.live, Trial.live/sync_live, Study.set_live, Study.branch)
on real SQLite files; the PyTorch side is in test_torch_live.py, the babysitting commands in test_babysit.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tunelab
from tunelab import babysit, live
from tunelab.babysit import request_stop, set_live
from tunelab.checkpoints import CheckpointPolicy
from tunelab.errors import ConfigError, TrialNotFoundError, TrialStateError


def _study(tmp_path: Path, **kwargs: object) -> tunelab.Study:
    return tunelab.create_study(name="run", storage=f"sqlite:///{tmp_path / 'run.db'}", **kwargs)  # type: ignore[arg-type]


def _running(study: tunelab.Study) -> tunelab.Trial:
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_int("width", 8, 64)
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    trial.live_poll_seconds = 0
    return trial


def test_a_change_applies_at_the_next_sync_and_is_recorded_with_its_step(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    first = trial.live("lr", 0)
    assert trial.sync_live(1) == {}  # nothing asked
    assert set_live(study, trial.number, {"lr": 0.5}, source="cli", note="too slow") == 0
    assert trial.live("lr") == first  # without a step: no read, the value in effect
    assert trial.live("lr", 2) == 0.5
    assert set_live(study, trial.number, {"lr": 0.25, "width": 32}) == 1
    assert set_live(study, trial.number, {"lr": 0.125}) == 2
    assert trial.sync_live(7, optimizer_step=70) == {"lr": 0.125, "width": 32}  # both, in order: the last wins
    frozen = study.trials[0]
    entries = live.schedule(frozen)
    assert [(e["step"], e["params"], e["requests"], e["sources"]) for e in entries] == [
        (2, {"lr": 0.5}, [0], ["cli"]), (7, {"lr": 0.125, "width": 32}, [1, 2], ["api", "api"])]
    assert entries[1]["optimizer_step"] == 70
    assert frozen.system_attrs["live_requests"][0]["note"] == "too slow"
    assert live.params_at(frozen, 1)["lr"] == first
    assert live.params_at(frozen, 2)["lr"] == 0.5 and live.params_at(frozen, 6)["lr"] == 0.5
    assert live.current_params(frozen) == {"lr": 0.125, "width": 32, "optimizer": frozen.params["optimizer"]}
    assert live.pending_requests(frozen) == []


def test_a_numpy_step_is_stored_as_a_number_and_a_step_that_is_no_number_is_refused(tmp_path: Path) -> None:
    import numpy as np

    study = _study(tmp_path)
    trial = _running(study)
    trial.sync_live(0)
    set_live(study, trial.number, {"lr": 0.25})
    assert trial.live("lr", np.int64(3)) == 0.25  # `for step in np.arange(n)`: the schedule write failed (JSON)
    set_live(study, trial.number, {"lr": 0.125})
    assert trial.sync_live(np.float32(4.5), force=True) == {"lr": 0.125}
    steps = [e["step"] for e in live.schedule(study.get_trial(trial.number))]
    assert steps == [3, 4.5] and [type(s) for s in steps] == [int, float]
    for bad in ("5", None, float("nan"), float("inf"), True):  # stored, they broke params_at and the tree later
        with pytest.raises(ConfigError, match=r"the step about to run as a finite number"):
            trial.sync_live(bad, force=True)  # type: ignore[arg-type]
    assert babysit.format_tree(study)


def test_numpy_steps_checkpoint_and_branch_as_report_takes_them(tmp_path: Path) -> None:
    import numpy as np

    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=5))
    trial = _running(study)
    for step in np.arange(1, 4):  # report() took np.int64; checkpoint() refused it as 'not a non-negative integer'
        trial.report(step, val_loss=1.0 / int(step))
        with trial.checkpoint(step) as folder:
            (folder / "w").write_text("w")
    assert [c.step for c in trial.checkpoints()] == [1, 2, 3]
    first = babysit.rollback(study, to=np.int64(2), trial=trial.number)
    second = babysit.branch(study, trial.number, np.int64(3))
    assert [live.branch_of(study.get_trial(n).system_attrs).step for n in (first, second)] == [2, 3]  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"branch\(step=...\) must be a checkpoint's step"):
        babysit.branch(study, trial.number, 2.0)  # type: ignore[arg-type]


def test_create_run_takes_numpy_numbers_and_refuses_other_objects(tmp_path: Path) -> None:
    import numpy as np

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    study = babysit.create_run("np", {"lr": np.float32(0.5), "width": np.int64(32)}, storage=url)
    trial = study.ask()
    assert trial.live_params == {"lr": 0.5, "width": 32}  # np.float32 was refused: 'must be a number'
    assert [type(v) for v in trial.live_params.values()] == [float, int]
    with pytest.raises(ConfigError, match=r"create_run\(params=...\): lr=\[0.1\] must be a number"):
        babysit.create_run("list", {"lr": [0.1]}, storage=url)


def test_callbacks_see_each_change_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    seen: list[tuple[float, dict[str, object]]] = []
    trial.on_live_change(lambda step, changes: seen.append((step, changes)))
    set_live(study, trial.number, {"optimizer": "adam"})
    for step in range(3):
        trial.sync_live(step)
    assert seen == [(0, {"optimizer": "adam"})]
    with pytest.raises(ConfigError, match="callback"):
        trial.on_live_change("not callable")  # type: ignore[arg-type]


def test_the_storage_is_read_at_most_every_poll_interval(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    trial.live_poll_seconds = 3600
    trial.sync_live(0)  # the first call reads
    set_live(study, trial.number, {"lr": 0.5})
    assert trial.sync_live(1) == {}  # too soon: not read
    assert trial.sync_live(2, force=True) == {"lr": 0.5}
    with pytest.raises(ConfigError, match="live_poll_seconds"):
        trial.live_poll_seconds = -1


def test_pending_requests_are_those_not_applied_yet(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    trial.sync_live(0)
    set_live(study, trial.number, {"lr": 0.5})
    assert [r["params"] for r in live.pending_requests(study.trials[0])] == [{"lr": 0.5}]
    trial.sync_live(1)
    assert live.pending_requests(study.trials[0]) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"momentum": 0.9}, "no live hyperparameter 'momentum'"),
    ({"lr": -1.0}, "log scale"),
    ({"lr": float("nan")}, "finite number"),
    ({"lr": "fast"}, "finite number"),
    ({"width": 8.5}, "integer"),
    ({"optimizer": "rmsprop"}, "choices"),
    ({}, "at least one"),
])
def test_bad_changes_are_refused_before_anything_is_recorded(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    trial.sync_live(0)
    with pytest.raises(ConfigError, match=message):
        set_live(study, trial.number, values)  # type: ignore[arg-type]
    assert "live_requests" not in study.trials[0].system_attrs


def test_a_text_parameter_outside_the_space_keeps_its_kind(tmp_path: Path) -> None:
    # a run's start (create_run, enqueued) may hold text no distribution describes: it changes to other text
    study = babysit.create_run("run", {"lr": 0.1, "augment": "none"}, storage=f"sqlite:///{tmp_path / 'run.db'}",
                               artifact_dir=tmp_path / "artifacts")
    trial = study.ask()
    trial.live_poll_seconds = 0
    trial.report(1, val_loss=1.0)
    with trial.checkpoint(1) as folder:
        (folder / "weights").write_text("w")
    set_live(study, trial.number, {"augment": "strong"})
    assert trial.sync_live(1) == {"augment": "strong"}
    branch = babysit.rollback(study, to=1, trial=trial.number, values={"augment": "flip"})
    assert study.get_trial(branch).params["augment"] == "flip"
    for bad in (3, 0.5):
        with pytest.raises(ConfigError, match=r"augment is a text parameter \(now 'none'\): give text"):
            babysit.rollback(study, to=1, trial=trial.number, values={"augment": bad})


def test_declared_live_names_limit_what_can_change(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    trial.declare_live(["lr", "momentum"])
    with pytest.raises(ConfigError, match=r"can change while it trains lr, momentum; width is one of its parameters: "
                                          r"a branch can start with another value \(roll back to a checkpoint with "
                                          r"--set width=...\)"):
        set_live(study, trial.number, {"width": 16})
    set_live(study, trial.number, {"momentum": 0.95})  # not a parameter, but the loop applies it
    assert trial.sync_live(0) == {"momentum": 0.95}
    assert trial.live("momentum") == 0.95
    with pytest.raises(ConfigError, match="list of hyperparameter names"):
        trial.declare_live("lr")


def test_declaring_live_names_writes_that_attribute_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A framework callback declares the names at every fit's start: one field written, not four (three empty).
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.flush()
    writes: list[dict[str, object]] = []
    update = study.storage.update_trial
    monkeypatch.setattr(study.storage, "update_trial", lambda trial_id, **fields: (writes.append(fields),
                                                                                   update(trial_id, **fields)))
    trial.declare_live(["lr", "momentum"])
    assert writes == [{"system_attrs": {"live_names": ["lr", "momentum"]}}]
    trial.suggest_float("wd", 1e-6, 1e-2, log=True)
    trial.declare_live(["lr"])  # with a new parameter: everything pending, as before
    assert set(writes[1]) == {"params", "distributions", "user_attrs", "system_attrs"}
    assert study.storage.get_trial(trial.trial_id).system_attrs["live_names"] == ["lr"]


def test_only_a_running_trial_takes_changes(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study)
    study.tell(trial, 1.0)
    with pytest.raises(TrialStateError, match=r"tunelab rollback run --trial 0 --to STEP"):
        set_live(study, 0, {"lr": 0.1})
    with pytest.raises(TrialNotFoundError):
        set_live(study, 5, {"lr": 0.1})
    with pytest.raises(ConfigError, match="no hyperparameter 'momentum'"):
        _running(study).live("momentum")


def _train(trial: tunelab.Trial, steps: range, study: tunelab.Study, set_at: dict[int, dict[str, object]]) -> None:
    """A loop that reads lr live and checkpoints its 'weights' (the sum of lrs so far) every step."""
    start = trial.resume_from
    weights = json.loads((start.path / "state.json").read_text())["w"] if start else 0.0
    for step in steps:
        if step in set_at:
            set_live(study, trial.number, set_at[step])  # type: ignore[arg-type]
        weights += float(trial.live("lr", step))  # type: ignore[arg-type]
        trial.report(step, w=weights)
        with trial.checkpoint(step) as folder:
            (folder / "state.json").write_text(json.dumps({"w": weights}))


def test_a_branch_starts_from_the_checkpoint_with_the_params_it_was_written_with(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=2, keep_every=3))
    study.enqueue({"lr": 0.5, "width": 8})
    trial = study.ask()
    trial.live_poll_seconds = 0
    _train(trial, range(8), study, {2: {"lr": 0.25}})  # applied at step 3
    assert [c.step for c in trial.checkpoints()] == [0, 3, 6, 7]  # keep_every=3 and the last 2
    number = babysit.branch(study, 0, 3, {"width": 16}, note="wider")
    frozen = study.trials[number]
    assert frozen.state == tunelab.TrialState.WAITING
    assert frozen.params == {"lr": 0.25, "width": 16}  # lr as at the checkpoint, width changed
    record = frozen.system_attrs["branch"]
    assert (record["parent"], record["step"], record["set"], record["kind"], record["note"]) == (
        0, 3, {"width": 16}, "rollback", "wider")
    request_stop(study, 0)
    assert trial.should_prune()
    study.tell(trial, state=tunelab.TrialState.PRUNED)
    branch = study.ask()
    assert branch.number == number and branch.branch is not None and branch.branch.parent == 0
    assert branch.resume_from is not None and branch.resume_from.step == 3
    assert branch.live_params == {"lr": 0.25, "width": 16}
    branch.live_poll_seconds = 0
    _train(branch, range(4, 8), study, {})
    original = study.get_curves(0)["w"]
    again = study.get_curves(number)["w"]
    assert again == (original[0][4:], original[1][4:])  # the branch goes on exactly where step 3 left it


def test_a_branch_outlives_its_parents_clean_up(tmp_path: Path) -> None:
    study = _study(tmp_path)  # the default policy: a PRUNED trial loses its checkpoints
    study.enqueue({"lr": 0.5})
    trial = study.ask()
    _train(trial, range(3), study, {})
    number = babysit.branch(study, 0, 2, kind="resume")
    study.tell(trial, state=tunelab.TrialState.PRUNED)
    assert study.checkpoints(0) == []
    branch = study.ask()
    assert branch.number == number and branch.branch is not None and branch.branch.kind == "resume"
    assert branch.resume_from is not None
    assert json.loads((branch.resume_from.path / "state.json").read_text()) == {"w": 1.5}


def test_keep_finished_keeps_a_stopped_branch_to_roll_back_to(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=3, keep_finished=True))
    study.enqueue({"lr": 0.5})
    trial = study.ask()
    _train(trial, range(5), study, {})
    study.tell(trial, state=tunelab.TrialState.PRUNED)
    assert [c.step for c in study.checkpoints(0)] == [2, 3, 4]
    assert babysit.branch(study, 0, 2) == 1


def test_branch_refuses_missing_checkpoints_unknown_trials_and_bad_values(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.enqueue({"lr": 0.5})
    trial = study.ask()
    _train(trial, range(3), study, {})
    with pytest.raises(ConfigError, match=r"keeps no checkpoint at step 0; it keeps 1, 2"):
        babysit.branch(study, 0, 0)
    with pytest.raises(TrialNotFoundError):
        babysit.branch(study, 9, 1)
    with pytest.raises(ConfigError, match=r"finite number"):
        babysit.branch(study, 0, 2, {"lr": "x"})
    with pytest.raises(ConfigError, match="kind"):
        babysit.branch(study, 0, 2, kind="fork")
    assert len(study.trials) == 1  # nothing queued by a refused branch
    bare = study.ask()  # a trial whose loop wrote no checkpoint: the error names a way out, not "one of those"
    with pytest.raises(ConfigError, match=r"it keeps none \(its loop wrote none .*from a trial that keeps one"):
        babysit.branch(study, bare.number, 3)


def test_a_branch_whose_checkpoint_vanished_says_so(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.enqueue({"lr": 0.5})
    trial = study.ask()
    _train(trial, range(2), study, {})
    babysit.branch(study, 0, 1)
    study.tell(trial, 1.0)
    branch = study.ask()
    assert branch.branch is not None
    shutil.rmtree(branch.branch.checkpoint)
    with pytest.raises(ConfigError, match="is gone"):
        _ = branch.resume_from


def test_checkpoint_policy_validates_its_new_fields() -> None:
    with pytest.raises(ConfigError, match="keep_every"):
        CheckpointPolicy(keep_every=0)
    with pytest.raises(ConfigError, match="keep_finished"):
        CheckpointPolicy(keep_finished="yes")  # type: ignore[arg-type]
    policy = CheckpointPolicy(keep_last=3, keep_every=10, keep_finished=True)
    assert CheckpointPolicy.from_description(policy.describe()) == policy
