"""GPUs for local workers: device discovery, slots, validation, and real worker processes on fake devices.

There is no GPU on the CI machines: the devices here are fake (``TUNELAB_FAKE_GPUS`` or ``gpus=[...]``),
and what is checked is what tunelab controls: which devices each worker process is told to use
(``CUDA_VISIBLE_DEVICES``, set before it imports the objective) and that trials never share more than
they asked for.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from pathlib import Path

import numpy
import pytest

import tunelab
from objectives import records_devices
from tunelab.errors import ConfigError
from tunelab.execution.gpus import (
    GpuShare,
    allocate,
    assigned_gpus,
    discover_devices,
    find_devices,
    parse_gpus_per_trial,
    plan_gpus,
    slot_environment,
)
from tunelab.execution.local import ProcessPool
from tunelab.records import FrozenTrial, TrialState


@pytest.fixture
def no_gpu_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No device variable set, and a PATH with nothing on it but what the test puts in the returned folder."""
    monkeypatch.delenv("TUNELAB_FAKE_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("TUNELAB_GPUS", raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def fake_nvidia_smi(bin_dir: Path, body: str) -> None:
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_order_explicit_then_fake_then_cuda_visible_devices_then_nvidia_smi(
    no_gpu_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvidia_smi(no_gpu_env, 'if [ "$1 $2" != "--query-gpu=index --format=csv,noheader" ]; then exit 3; fi\n'
                                "printf '0\\n1\\n2\\n'")
    assert find_devices().ids == ("0", "1", "2") and find_devices().source == "nvidia-smi"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, GPU-6f1c2a8e-0b1d-4e55-9a2e-1c9f0e7d3b21")
    assert discover_devices() == ["3", "GPU-6f1c2a8e-0b1d-4e55-9a2e-1c9f0e7d3b21"]  # entries as given
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "4")
    assert discover_devices() == ["0", "1", "2", "3"]
    assert discover_devices([5, "GPU-abc"]) == ["5", "GPU-abc"]
    assert discover_devices("1,2") == ["1", "2"]
    assert discover_devices(list(numpy.arange(2))) == ["0", "1"]
    assert discover_devices([]) == []  # an explicit empty list means none, not "look elsewhere"


def test_cuda_visible_devices_empty_or_hidden_means_no_devices(
    no_gpu_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvidia_smi(no_gpu_env, "echo 0")  # never asked: CUDA_VISIBLE_DEVICES is set
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert discover_devices() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert discover_devices() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,-1,2")  # as CUDA: an invalid entry hides the rest
    assert discover_devices() == ["0", "1"]


def test_nvidia_smi_missing_or_failing_means_no_devices(no_gpu_env: Path) -> None:
    assert discover_devices() == []  # not on PATH
    fake_nvidia_smi(no_gpu_env, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert discover_devices() == []


def test_bad_fake_gpus_and_bad_explicit_lists_are_config_errors(
    no_gpu_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "four")
    with pytest.raises(ConfigError, match="TUNELAB_FAKE_GPUS"):
        discover_devices()
    for bad in (2, [0, 0], [-1], [True], [0.5], ["0,1"], [""]):
        with pytest.raises(ConfigError, match="gpus"):
            discover_devices(bad)  # type: ignore[arg-type]


# -- slots -------------------------------------------------------------------------------------


def test_whole_devices_per_trial() -> None:
    devices = ["0", "1", "2", "3"]
    assert allocate(devices, GpuShare(1, 1)) == [("0",), ("1",), ("2",), ("3",)]
    assert allocate(devices, GpuShare(2, 1)) == [("0", "1"), ("2", "3")]
    assert allocate(devices, GpuShare(3, 1)) == [("0", "1", "2")]  # device 3 makes no group of three
    assert allocate(devices, GpuShare(4, 1)) == [("0", "1", "2", "3")]


@pytest.mark.parametrize(("g", "share"), [
    (1, GpuShare(1, 1)), (1.0, GpuShare(1, 1)), (2, GpuShare(2, 1)), (0.5, GpuShare(1, 2)),
    (0.25, GpuShare(1, 4)), (1 / 3, GpuShare(1, 3)), (0.333, GpuShare(1, 3)), (0.2, GpuShare(1, 5)),
])
def test_gpus_per_trial_is_read_as_devices_per_trial_or_trials_per_device(g: float, share: GpuShare) -> None:
    assert parse_gpus_per_trial(g) == share


def test_fractions_spread_over_devices_first_and_never_straddle() -> None:
    slots = allocate(["0", "1", "2"], parse_gpus_per_trial(0.5))  # type: ignore[arg-type]
    assert slots == [("0",), ("1",), ("2",), ("0",), ("1",), ("2",)]
    assert all(len(s) == 1 for s in slots)  # a half-GPU trial is on one device, never on two halves
    third = allocate(["a", "b"], parse_gpus_per_trial(1 / 3))  # type: ignore[arg-type]
    assert third == [("a",), ("b",)] * 3
    # two workers on four devices at 0.5 each: one per device, not two on device 0
    plan = plan_gpus(0.5, ["0", "1", "2", "3"], n_workers=2)
    assert plan is not None and plan.slots == (("0",), ("1",))


def test_more_workers_than_slots_are_capped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        plan = plan_gpus(1, [0, 1], n_workers=5)
    assert plan is not None and plan.slots == (("0",), ("1",)) and plan.n_workers == 2
    assert "n_workers=5" in caplog.text and "running 2 worker" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        plan = plan_gpus(0.5, [0, 1], n_workers=4)
    assert plan is not None and sorted(plan.slots) == [("0",), ("0",), ("1",), ("1",)]
    assert caplog.text == ""
    assert plan_gpus(0, None, n_workers=3) is None  # nothing asked, nothing looked up
    assert plan_gpus(None, None, n_workers=3) is None


def test_slot_environment_and_what_a_worker_reads_back() -> None:
    env = slot_environment(("2", "3"))
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3", "TUNELAB_GPUS": "2,3"}
    assert assigned_gpus(env) == ["2", "3"]
    assert assigned_gpus({}) is None


def test_the_pool_needs_an_environment_for_every_worker() -> None:
    with pytest.raises(ConfigError, match="worker_env"):
        ProcessPool(3, print, None, worker_env=[{"A": "1"}])  # type: ignore[arg-type]


# -- validation before any trial ---------------------------------------------------------------


def _never(trial: tunelab.Trial) -> float:
    raise AssertionError("no trial may run when the GPU options are wrong")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gpus_per_trial": -1}, r"gpus_per_trial must be a finite number >= 0"),
    ({"gpus_per_trial": math.nan}, r"gpus_per_trial must be a finite number >= 0"),
    ({"gpus_per_trial": math.inf}, r"gpus_per_trial must be a finite number >= 0"),
    ({"gpus_per_trial": 0.3}, r"gpus_per_trial below 1 must divide one device evenly .*1/3 or 1/4"),
    ({"gpus_per_trial": 1.5}, r"gpus_per_trial above 1 must be a whole number .*use 1 or 2"),
    ({"gpus_per_trial": "1"}, r"gpus_per_trial must be a number"),
    ({"gpus_per_trial": True}, r"gpus_per_trial must be a number"),
    ({"gpus_per_trial": 8}, r"gpus_per_trial=8 asks for more devices per trial than there are: 4 found"),
    ({"gpus_per_trial": 1, "gpus": []}, r"no GPU was found: gpus= is an empty list"),
    ({"gpus": [0, 1]}, r"gpus=\[0, 1\] has no effect with gpus_per_trial=0"),
    ({"gpus_per_trial": 1, "gpus": 2}, r"gpus must be a list of device ids"),
    ({"gpus_per_trial": 1, "executor": "ray"}, r"Ray assigns GPUs .*RayExecutor\(num_gpus_per_trial=...\)"),
])
def test_bad_gpu_options_are_config_errors_before_any_trial(
    kwargs: dict[str, object], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "4")
    if kwargs.get("executor") == "ray":
        kwargs = {**kwargs, "executor": tunelab.RayExecutor()}
    study = tunelab.create_study(sampler=tunelab.RandomSampler())
    with pytest.raises(ConfigError, match=match):
        study.optimize(_never, n_trials=2, **kwargs)  # type: ignore[arg-type]
    assert study.trials == []


def test_no_devices_found_says_where_it_looked(no_gpu_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler())
    with pytest.raises(ConfigError) as found:
        study.optimize(_never, n_trials=2, n_workers=2, gpus_per_trial=1)
    message = str(found.value)
    for where in ("gpus_per_trial=1", "CUDA_VISIBLE_DEVICES", "nvidia-smi", "gpus=[0, 1, ...]", "TUNELAB_FAKE_GPUS"):
        assert where in message
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES='' makes none visible"):
        study.optimize(_never, n_trials=2, gpus_per_trial=0.5)
    assert study.trials == []


# -- real worker processes on fake devices -----------------------------------------------------


def _overlap(a: FrozenTrial, b: FrozenTrial) -> bool:
    return bool(a.user_attrs["start"] < b.user_attrs["end"] and b.user_attrs["start"] < a.user_attrs["end"])


def _concurrent_pairs(trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, FrozenTrial]]:
    return [(a, b) for i, a in enumerate(trials) for b in trials[i + 1:] if _overlap(a, b)]


@pytest.fixture
def meet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Trials 0 and 1 of ``records_devices`` wait for each other: they surely run at the same time."""
    folder = tmp_path / "meet"
    folder.mkdir()
    monkeypatch.setenv("TUNELAB_TEST_MEET", str(folder))


@pytest.mark.slow
def test_each_trial_sees_its_own_whole_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meet: None
) -> None:
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "4")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'g.db'}", sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(records_devices, n_trials=6, n_workers=2, gpus_per_trial=1)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    for t in trials:
        assert t.user_attrs["cvd"] in {"0", "1"}  # two workers: one device each, spread over 0 and 1
        assert t.user_attrs["tunelab_gpus"] == t.user_attrs["cvd"]
        assert t.system_attrs["gpus"] == [t.user_attrs["cvd"]]
    pairs = _concurrent_pairs(trials)
    assert pairs, "trials 0 and 1 waited for each other, so they ran at the same time"
    for a, b in pairs:
        assert a.user_attrs["cvd"] != b.user_attrs["cvd"], (a.number, b.number)
    # a worker keeps its device for its life
    by_pid: dict[int, set[str]] = {}
    for t in trials:
        by_pid.setdefault(t.user_attrs["pid"], set()).add(t.user_attrs["cvd"])
    assert all(len(devices) == 1 for devices in by_pid.values())
    assert os.getpid() not in by_pid
    assert "TUNELAB_GPUS" not in os.environ and "CUDA_VISIBLE_DEVICES" not in os.environ  # the driver's own: unchanged


@pytest.mark.slow
def test_half_a_device_each_two_trials_share_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meet: None) -> None:
    monkeypatch.delenv("TUNELAB_FAKE_GPUS", raising=False)
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'h.db'}", sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(records_devices, n_trials=4, n_workers=2, gpus_per_trial=0.5, gpus=["7"])
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {t.user_attrs["cvd"] for t in trials} == {"7"}
    assert all(t.system_attrs["gpus"] == ["7"] for t in trials)
    assert _concurrent_pairs(trials), "two half-GPU trials ran at the same time on device 7"
    assert len({t.user_attrs["pid"] for t in trials}) == 2


@pytest.mark.slow
def test_a_killed_workers_replacement_gets_its_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, four devices: trial 1 kills its process. A replacement that took the next free device
    would run on device 1; it must run on device 0, the one its predecessor owned. In-process
    (``n_workers=1``) GPU trials run in a worker process too."""
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "4")
    monkeypatch.setenv("TUNELAB_TEST_KILL", "1")
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'k.db'}", sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(records_devices, n_trials=4, gpus_per_trial=1)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert "SIGKILL" in (trials[1].error or "")
    assert trials[1].system_attrs["gpus"] == ["0"]  # recorded before the objective ran
    assert [t.user_attrs["cvd"] for t in trials if t.number != 1] == ["0", "0", "0"]
    assert trials[0].user_attrs["pid"] != trials[2].user_attrs["pid"] == trials[3].user_attrs["pid"] != os.getpid()


@pytest.mark.slow
def test_killed_workers_with_two_workers_keep_devices_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meet: None
) -> None:
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "4")
    monkeypatch.setenv("TUNELAB_TEST_KILL", "2")
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'k2.db'}", sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(records_devices, n_trials=6, n_workers=2, gpus_per_trial=1)
    trials = study.trials
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and trials[2].state == TrialState.FAIL
    assert {d for t in trials for d in t.system_attrs["gpus"]} <= {"0", "1"}  # devices 2 and 3: nobody's
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.system_attrs["gpus"] == [t.user_attrs["cvd"]] for t in finished)
    for a, b in _concurrent_pairs(finished):
        assert a.user_attrs["cvd"] != b.user_attrs["cvd"], (a.number, b.number)
