"""AutoSampler, the default: a Gaussian process while the study is small, then TPE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab import AutoSampler, Float
from tunelab.errors import ConfigError

SPACE = {"x": Float(-5, 5), "lr": Float(1e-5, 1e-1, log=True)}


def bowl(trial: tunelab.Trial) -> float:
    return (trial.params["x"] - 1) ** 2 + (np.log10(trial.params["lr"]) + 3) ** 2


def test_create_study_without_a_sampler_uses_auto(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    study = tunelab.create_study(name="a", storage=url, seed=0)
    assert isinstance(study.sampler, AutoSampler)
    assert isinstance(tunelab.load_study("a", storage=url).sampler, AutoSampler)


def test_gp_until_switch_at_then_tpe() -> None:
    sampler = AutoSampler(n_startup_trials=5, switch_at=12)
    used: list[str] = []
    for name, model in (("gp", sampler._gp), ("tpe", sampler._tpe)):
        original = model.propose

        def spy(space, obs, rng, _name=name, _original=original):  # type: ignore[no-untyped-def]
            used.append(_name)
            return _original(space, obs, rng)

        model.propose = spy  # type: ignore[method-assign]
    study = tunelab.create_study(sampler=sampler, seed=0, space=SPACE)
    study.optimize(bowl, n_trials=16)
    assert used == ["gp"] * 7 + ["tpe"] * 4  # trials 5..11 by the GP, 12..15 by TPE


def test_switch_at_is_validated_and_described() -> None:
    with pytest.raises(ConfigError, match="switch_at"):
        AutoSampler(switch_at=-1)
    assert AutoSampler(switch_at=50).describe()["switch_at"] == 50
