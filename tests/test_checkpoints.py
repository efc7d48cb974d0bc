"""Checkpoints: folders and atomic writes, the retention policy, the artifact folder of a study,
and the PyTorch helpers (real files, real torch on the CPU)."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from objectives import checkpointing
from tunelab.checkpoints import Checkpoint, CheckpointPolicy
from tunelab.errors import ConfigError, TrialNotFoundError, TrialStateError
from tunelab.records import TrialState
from tunelab.study.heartbeat import HeartbeatSettings, StaleTrials
from tunelab.torch import load_torch, save_torch

torch.set_num_threads(1)


def _study(tmp_path: Path, **kw: object) -> tunelab.Study:
    kw.setdefault("sampler", tunelab.RandomSampler())
    return tunelab.create_study(artifact_dir=tmp_path / "artifacts", seed=0, **kw)  # type: ignore[arg-type]


def _write(trial: tunelab.Trial, step: int, text: str = "") -> Path:
    with trial.checkpoint(step) as folder:
        (folder / "state.txt").write_text(text or f"{trial.number}:{step}")
    return folder


def _files_under(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(root) for f in files]


# -- PyTorch helpers --------------------------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                        torch.nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


X = torch.linspace(-1, 1, 64 * 4).reshape(64, 4)
Y = (X ** 2).sum(dim=1, keepdim=True)


def _train(model: _Net, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
           steps: int) -> list[float]:
    """Steps that draw from every RNG: dropout and a shuffle (torch), input noise (numpy), a batch
    size (random)."""
    losses = []
    for _ in range(steps):
        idx = torch.randperm(64)[: random.choice([8, 16, 32])]
        noise = torch.from_numpy(np.random.normal(0, 0.01, (len(idx), 4)).astype(np.float32))
        loss = torch.nn.functional.mse_loss(model(X[idx] + noise), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _fresh(seed: int) -> tuple[_Net, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)


def test_training_resumed_from_a_checkpoint_matches_uninterrupted_training_bit_for_bit(tmp_path: Path) -> None:
    model, opt, sched = _fresh(0)
    uninterrupted = _train(model, opt, sched, 10)

    model, opt, sched = _fresh(0)
    first = _train(model, opt, sched, 4)
    saved = save_torch(tmp_path, model, opt, sched, extra={"step": 4, "best": min(first)})
    assert saved == tmp_path / "torch.pt"
    _train(model, opt, sched, 3)  # work that is lost: the process "dies" here

    model, opt, sched = _fresh(123)  # a new process: other weights, other RNG states
    extra = load_torch(tmp_path, model, opt, sched)
    assert extra == {"step": 4, "best": min(first)}
    assert opt.state_dict()["state"], "Adam's moments were restored"
    assert sched.last_epoch == 4
    resumed = first + _train(model, opt, sched, 6)
    assert resumed == uninterrupted  # exactly: same floats


def test_load_torch_can_leave_the_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(1)
    save_torch(tmp_path / "a.pt")
    torch.manual_seed(2)
    expected = torch.rand(3)
    torch.manual_seed(2)
    load_torch(tmp_path / "a.pt", restore_rng=False)
    assert torch.equal(torch.rand(3), expected)


def test_save_torch_refuses_extra_that_a_safe_load_could_not_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"weights_only=True.*numpy"):
        save_torch(tmp_path / "a.pt", extra={"loss": np.float64(0.5)})
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    save_torch(tmp_path / "a.pt", extra={"loss": 0.5, "ids": torch.arange(3), "hist": [(1, "a")]})


def test_load_torch_says_what_is_missing(tmp_path: Path) -> None:
    save_torch(tmp_path / "a.pt", model=torch.nn.Linear(1, 1))
    with pytest.raises(ConfigError, match="holds no optimizer state"):
        load_torch(tmp_path / "a.pt", optimizer=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not written by tunelab"):
        load_torch(tmp_path / "other.pt")


def test_core_does_not_import_torch() -> None:
    code = ("import sys, tunelab; s = tunelab.create_study(); t = s.ask(); t.checkpoints(); s.tell(t, 1.0); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


# -- folders, atomic writes ---------------------------------------------------------------
def test_a_trial_writes_reads_and_lists_its_checkpoints(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=3))
    trial = study.ask()
    assert trial.checkpoints() == [] and trial.latest_checkpoint() is None
    assert trial.checkpoint_dir == study.artifact_dir / "trial-0" and trial.checkpoint_dir.is_dir()
    for step in (1, 2, 10):
        path = _write(trial, step)
        assert path.name.startswith(".tmp")  # the block wrote into a temporary folder
    folder = study.artifact_dir / "trial-0"
    expected = [Checkpoint(s, folder / f"step-{s}") for s in (1, 2, 10)]
    assert trial.checkpoints() == expected == study.checkpoints(0)
    assert trial.latest_checkpoint() == expected[-1]
    step, path = expected[-1]
    assert (path / "state.txt").read_text() == "0:10"
    assert study.checkpoint_path(0) == path and study.checkpoint_path(0, step=2) == folder / "step-2"
    assert sorted(p.name for p in folder.iterdir()) == ["step-1", "step-10", "step-2"]  # no temporary left


def test_keep_last_deletes_older_checkpoints(tmp_path: Path) -> None:
    study = _study(tmp_path)  # default: keep_last=2
    assert study.checkpoint_policy == CheckpointPolicy(keep_last=2, keep_best_trials=None)
    trial = study.ask()
    for step in range(5):
        _write(trial, step)
        assert [c.step for c in trial.checkpoints()] == list(range(max(0, step - 1), step + 1))


def test_writing_an_earlier_step_rolls_back(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=5))
    trial = study.ask()
    for step in range(1, 5):
        _write(trial, step, "first run")
    _write(trial, 2, "after roll-back")  # resumed from step 1 with, say, a lower learning rate
    assert [c.step for c in trial.checkpoints()] == [1, 2]
    assert (trial.checkpoint_dir / "step-2" / "state.txt").read_text() == "after roll-back"


def test_an_exception_inside_the_writer_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    _write(trial, 1, "good")
    for step in (2, 1):  # a new step, and a step that exists (which must survive intact)
        with pytest.raises(RuntimeError, match="disk full"), trial.checkpoint(step) as folder:
            (folder / "state.txt").write_text("half")
            raise RuntimeError("disk full")
    assert [c.step for c in trial.checkpoints()] == [1]
    assert (trial.checkpoint_dir / "step-1" / "state.txt").read_text() == "good"
    assert [p.name for p in trial.checkpoint_dir.iterdir()] == ["step-1"]


def test_a_writer_killed_midway_leaves_a_hidden_folder_that_the_next_write_removes(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    stale = trial.checkpoint_dir / ".tmp-step-3-deadbeef"
    stale.mkdir()
    (stale / "state.txt").write_text("half")
    assert trial.checkpoints() == []  # never listed
    _write(trial, 4)
    assert not stale.exists()


@pytest.mark.parametrize("step", [-1, 1.5, "3", True, None])
def test_a_step_is_a_non_negative_integer(tmp_path: Path, step: object) -> None:
    trial = _study(tmp_path).ask()
    with pytest.raises(ConfigError, match="step"):
        trial.checkpoint(step)  # type: ignore[arg-type]


def test_a_finished_trial_writes_no_checkpoint(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    _write(trial, 0)
    study.tell(trial, 1.0)
    with pytest.raises(TrialStateError):
        trial.checkpoint(1)
    assert [c.step for c in trial.checkpoints()] == [0]  # still readable


def test_checkpoint_path_of_a_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    _write(trial, 3)
    with pytest.raises(TrialNotFoundError, match="trial 0 at step 2"):
        study.checkpoint_path(0, step=2)
    with pytest.raises(TrialNotFoundError, match="trial 7 at any step"):
        study.checkpoint_path(7)
    with pytest.raises(ConfigError, match="trial number"):
        study.checkpoint_path(-1)


def test_a_trial_reads_another_trials_checkpoint(tmp_path: Path) -> None:
    """What population-based training's exploit step does: load a better member's state."""
    study = _study(tmp_path)
    donor = study.ask()
    model = torch.nn.Linear(3, 1)
    with donor.checkpoint(5) as folder:
        save_torch(folder, model, extra={"step": 5})
    member = study.ask()
    copy = torch.nn.Linear(3, 1)
    assert load_torch(member.study.checkpoint_path(donor.number), copy) == {"step": 5}
    assert torch.equal(copy.weight, model.weight)


# -- retention when trials finish ----------------------------------------------------------
def _run(study: tunelab.Study, end: Callable[[tunelab.Trial], float]) -> int:
    def objective(trial: tunelab.Trial) -> float:
        for step in range(3):
            _write(trial, step)
        (trial.checkpoint_dir / "notes.txt").write_text("mine")  # the user's own file
        return end(trial)

    study.optimize(objective, n_trials=1)
    return study.trials[-1].number


def _raise(exc: BaseException) -> Callable[[tunelab.Trial], float]:
    def end(trial: tunelab.Trial) -> float:
        raise exc
    return end


def test_a_complete_trial_keeps_its_last_checkpoint(tmp_path: Path) -> None:
    study = _study(tmp_path)
    n = _run(study, lambda t: 1.0)
    assert [c.step for c in study.checkpoints(n)] == [2]
    assert (study.artifact_dir / f"trial-{n}" / "notes.txt").exists()


@pytest.mark.parametrize("end", [_raise(tunelab.TrialPruned()), _raise(ValueError("boom")), lambda t: float("nan")],
                         ids=["pruned", "raised", "nan"])
def test_pruned_and_failed_trials_lose_their_checkpoints(tmp_path: Path,
                                                         end: Callable[[tunelab.Trial], float]) -> None:
    study = _study(tmp_path)
    n = _run(study, end)
    assert study.trials[-1].state in (TrialState.PRUNED, TrialState.FAIL)
    assert study.checkpoints(n) == []
    assert [p.name for p in (study.artifact_dir / f"trial-{n}").iterdir()] == ["notes.txt"]  # the user's file stays


def test_pruned_trial_without_user_files_leaves_no_folder(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    _write(trial, 0)
    study.tell(trial, state="PRUNED")
    assert not (study.artifact_dir / "trial-0").exists()


def test_an_interrupted_trial_keeps_its_checkpoints_to_be_resumed(tmp_path: Path) -> None:
    study = _study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _run(study, _raise(KeyboardInterrupt()))
    interrupted = study.trials[-1]
    assert interrupted.state == TrialState.FAIL and (interrupted.error or "").startswith("interrupted")
    assert [c.step for c in study.checkpoints(interrupted.number)] == [1, 2]

    def resume(trial: tunelab.Trial) -> float:
        step, path = trial.study.checkpoints(interrupted.number)[-1]
        assert (path / "state.txt").read_text() == f"{interrupted.number}:{step}"
        return float(step)

    study.optimize(resume, n_trials=1)
    assert study.trials[-1].value == 2.0


def test_a_lost_trials_retry_finds_its_checkpoints(tmp_path: Path) -> None:
    study = _study(tmp_path, storage=f"sqlite:///{tmp_path / 'lost.db'}")
    # What optimize(heartbeat_interval=0.01, grace_period=0.05, requeue_lost_trials=True) does before each ask.
    stale = StaleTrials(study.storage, study.study_id, HeartbeatSettings(0.01, 0.05, requeue=True))
    lost = study.ask_reserved(study.reserve_trial(heartbeat=True))
    lost.suggest_float("x", 0, 1)
    _write(lost, 4)
    lost.flush()  # its process dies here: nobody tells it
    time.sleep(0.2)
    assert [t.number for t in stale.check()] == [lost.number]
    retry = study.ask()
    assert study.trials[lost.number].state == TrialState.FAIL
    assert retry.suggest_float("x", 0, 1) == lost.params["x"]
    origin = retry.system_attrs["retry_of"]
    assert origin == lost.number
    assert (study.checkpoint_path(origin) / "state.txt").read_text() == f"{lost.number}:4"


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_keep_best_trials_keeps_only_the_best_complete_trials(tmp_path: Path, direction: str) -> None:
    study = _study(tmp_path, direction=direction, checkpoint_policy=CheckpointPolicy(keep_best_trials=2))
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    for v in values:
        _run(study, lambda t, v=v: v)  # type: ignore[misc]
    order = sorted(range(5), key=lambda n: values[n], reverse=direction == "maximize")
    kept = {n for n in range(5) if study.checkpoints(n)}
    assert kept == set(order[:2])
    assert all([c.step for c in study.checkpoints(n)] == [2] for n in kept)


def test_keep_best_trials_keeps_the_nearest_to_feasible_when_infeasible_ones_must_fill_it(tmp_path: Path) -> None:
    # One feasible trial and keep_best_trials=2: the second kept is the infeasible trial nearest its bound,
    # not the one with the best value (the furthest from feasible here).
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_best_trials=2))
    for value, memory in [(3.0, 1.0), (0.5, 20.0), (2.0, 9.0)]:
        def end(trial: tunelab.Trial, value: float = value, memory: float = memory) -> float:
            trial.set_constraint("memory_gb", memory, upper=8.0)
            return value
        _run(study, end)
    assert {n for n in range(3) if study.checkpoints(n)} == {0, 2}


def test_keep_best_trials_zero_keeps_no_finished_trials_checkpoints(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_best_trials=0))
    running = study.ask()
    _write(running, 0)
    n = _run(study, lambda t: 1.0)
    assert study.checkpoints(n) == []
    assert [c.step for c in running.checkpoints()] == [0]  # a running trial is never touched


@pytest.mark.parametrize("kw", [{"keep_last": 0}, {"keep_last": -1}, {"keep_last": 1.5}, {"keep_last": True},
                                {"keep_best_trials": -1}, {"keep_best_trials": 2.0}])
def test_a_bad_policy_is_a_config_error(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kw))):
        CheckpointPolicy(**kw)  # type: ignore[arg-type]


# -- the study's artifact folder -------------------------------------------------------------
def test_artifact_dir_defaults_beside_the_sqlite_file_and_is_found_by_load_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///db/studies.db"  # relative: resolved when the study is created
    (tmp_path / "db").mkdir()
    policy = CheckpointPolicy(keep_last=3, keep_best_trials=4)
    study = tunelab.create_study(name="cnn", storage=url, checkpoint_policy=policy)
    assert study.artifact_dir.parent == tmp_path / "db" / "studies.db.artifacts"
    assert study.artifact_dir.name.startswith("cnn-")
    assert not study.artifact_dir.exists()  # created when first needed
    trial = study.ask()
    _write(trial, 7)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    fresh = tunelab.load_study("cnn", f"sqlite:///{tmp_path / 'db' / 'studies.db'}")
    assert fresh.artifact_dir == study.artifact_dir
    assert fresh.checkpoint_policy == policy
    assert fresh.checkpoint_path(trial.number) == study.artifact_dir / "trial-0" / "step-7"


def test_artifact_dir_default_without_a_file_and_a_relative_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert tunelab.create_study(name="m").artifact_dir.parent == tmp_path / "tunelab-artifacts"
    study = tunelab.create_study(name="r", artifact_dir="out/art")
    monkeypatch.chdir("/")
    assert study.artifact_dir.parent == tmp_path / "out" / "art"


def test_a_bad_artifact_dir_or_policy_is_a_config_error(tmp_path: Path) -> None:
    for bad in (123, ""):
        with pytest.raises(ConfigError, match="artifact_dir"):
            tunelab.create_study(artifact_dir=bad)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        tunelab.create_study(artifact_dir=tmp_path / "file")
    with pytest.raises(ConfigError, match="checkpoint_policy"):
        tunelab.create_study(checkpoint_policy={"keep_last": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "/etc/passwd", "..\\..\\win", "~/home",
                                  "-rf", "x" * 300, "名前 with spaces"])
def test_study_names_never_escape_the_artifact_dir(tmp_path: Path, name: str) -> None:
    root = tmp_path / "artifacts"
    study = tunelab.create_study(name=name, artifact_dir=root)
    assert study.artifact_dir.parent == root
    assert not study.artifact_dir.name.startswith((".", "-")) and len(study.artifact_dir.name) <= 73
    _write(study.ask(), 0)
    files = _files_under(tmp_path)
    assert files and all(root in f.resolve().parents for f in files)


def test_a_recreated_study_never_sees_its_predecessors_checkpoints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    old = tunelab.create_study(name="same", storage=url)
    _write(old.ask(), 3)
    tunelab.delete_study("same", url)
    assert not old.artifact_dir.exists()  # deleted with the study
    new = tunelab.create_study(name="same", storage=url)
    assert new.artifact_dir != old.artifact_dir
    assert new.ask().latest_checkpoint() is None


def test_a_study_from_before_checkpoints_gets_a_folder_named_after_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = tunelab.SQLStorage(url)
    storage.create_study("legacy", "minimize", 0, system_attrs={"sampler": tunelab.RandomSampler().describe()})
    study = tunelab.load_study("legacy", storage)
    assert study.artifact_dir == tmp_path / "old.db.artifacts" / "legacy"
    assert study.checkpoint_policy == CheckpointPolicy()


# -- worker processes ---------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoints_work_in_worker_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = tunelab.create_study(name="workers", storage=url, seed=0, sampler=tunelab.RandomSampler())
    study.optimize(checkpointing, n_trials=4, n_workers=2)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["pid"] for t in trials} - {os.getpid()}) == 2
    for t in trials:
        assert t.user_attrs["checkpoint_dir"] == str(study.artifact_dir / f"trial-{t.number}")
        assert t.user_attrs["restored_step"] == 2
        [(step, path)] = study.checkpoints(t.number)  # the last one only: the trial completed
        assert step == 2
        assert (path / "owner.txt").read_text() == f"{t.user_attrs['pid']} {t.number} 2"
        assert load_torch(path) == {"step": 2}


# -- a log-spaced history (issue 16 item 16) --------------------------------------------------------
def test_keep_log_spaced_keeps_a_sparse_history_and_the_newest(tmp_path: Path) -> None:
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=3, keep_log_spaced=True))
    trial = study.ask()
    for step in range(1, 81):
        _write(trial, step)
    assert [c.step for c in trial.checkpoints()] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 78, 79, 80]
    _write(trial, 30)  # a roll-back within the trial: the future goes, the history up to 30 stays
    assert [c.step for c in trial.checkpoints()] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 30]
    for step in range(31, 41):
        _write(trial, step)
    assert [c.step for c in trial.checkpoints()] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 38, 39, 40]  # 30: 24's


def test_log_spaced_steps_follow_the_checkpoints_unit_and_stay_bounded(tmp_path: Path) -> None:
    from tunelab.checkpoints import log_bucket, log_spaced_steps

    assert sorted(log_spaced_steps(range(0, 81))) == [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert sorted(log_spaced_steps(range(100, 1001, 100))) == [100, 200, 300, 400, 600, 800]  # optimizer steps
    for n in (80, 1000, 10**6):  # the cost the docstring states: at most 2 * log2(N) besides keep_last
        assert len(log_spaced_steps(range(1, n + 1))) <= 2 * math.log2(n)
    assert [log_bucket(s) for s in (0, 1, 2, 3, 4, 5, 6, 7, 8)] == [0, 1, 3, 4, 5, 5, 6, 6, 7]
    study = _study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=2, keep_log_spaced=True, keep_every=300))
    trial = study.ask()
    for step in range(100, 1001, 50):  # with keep_every too
        _write(trial, step)
    assert [c.step for c in trial.checkpoints()] == [100, 150, 200, 300, 400, 550, 600, 800, 900, 950, 1000]


def test_keep_log_spaced_is_stored_with_the_study_and_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    policy = CheckpointPolicy(keep_last=3, keep_finished=True, keep_log_spaced=True)
    tunelab.create_study(name="p", storage=url, checkpoint_policy=policy)
    assert tunelab.load_study("p", url).checkpoint_policy == policy
    assert "keep_log_spaced" not in CheckpointPolicy().describe()  # older readers still read default policies
    with pytest.raises(ConfigError, match="keep_log_spaced"):
        CheckpointPolicy(keep_log_spaced="log")  # type: ignore[arg-type]
