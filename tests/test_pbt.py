"""Population-based training: who copies whom, perturbation, lineage, schedules, real workers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import tunelab
from objectives import pbt_member
from tunelab import Float, PopulationBasedTraining, TrialState
from tunelab.errors import ConfigError
from tunelab.pbt import PBT_KEY, Member, format_lineage, params_at, schedule

SPACE = {"lr": Float(0.01, 1.0, log=True)}


def lockstep(tmp_path: Path, lrs: list[float], steps: int, rules: PopulationBasedTraining) -> tunelab.Study:
    """Members advance one step at a time, in one process: every decision is deterministic."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'pbt.db'}", sampler=tunelab.RandomSampler(),
                                 space=SPACE, seed=0, direction="maximize")
    for lr in lrs:
        study.enqueue({"lr": lr})
    trials = [study.ask() for _ in lrs]
    members = [rules.member(t) for t in trials]
    score = {t.number: 0.0 for t in trials}
    for step in range(1, steps + 1):
        for t, m in zip(trials, members, strict=True):
            score[t.number] += float(m.params["lr"])
            t.report(step, score=score[t.number])
        if step % rules.interval == 0:
            for t in trials:
                with t.checkpoint(step) as folder:
                    (folder / "state.json").write_text(json.dumps(score[t.number]))
            for t, m in zip(trials, members, strict=True):
                change = m.exploit_and_explore(step)
                if change is not None:
                    score[t.number] = json.loads((change.checkpoint / "state.json").read_text())
    for t in trials:
        study.tell(t, score[t.number])
    return study


def test_the_bottom_member_copies_the_top_member_and_perturbs_its_params(tmp_path: Path) -> None:
    rules = PopulationBasedTraining(interval=2, metric="score", direction="maximize", resample_probability=0.0)
    study = lockstep(tmp_path, [0.05, 0.1, 0.4, 0.8], steps=2, rules=rules)
    lineage = [t.system_attrs[PBT_KEY]["lineage"] for t in study.trials]
    assert [len(x) for x in lineage] == [1, 0, 0, 0]  # only the bottom quarter (1 of 4) exploits
    event = lineage[0][0]
    assert (event["step"], event["parent"], event["parent_step"]) == (2, 3, 2)  # the top member, its step-2 state
    assert event["params"]["lr"] in (pytest.approx(0.8 * 0.8), pytest.approx(0.8 * 1.2))
    assert event["from"] == {"lr": 0.05} and event["value"] == pytest.approx(0.1)
    assert study.trials[0].value == pytest.approx(1.6)  # continued from the parent's checkpoint
    assert study.trials[0].system_attrs[PBT_KEY]["params"] == event["params"]


def test_lineage_is_complete_and_replays_as_a_schedule(tmp_path: Path) -> None:
    rules = PopulationBasedTraining(interval=2, metric="score", direction="maximize", quantile=0.25)
    lrs = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
    study = lockstep(tmp_path, lrs, steps=12, rules=rules)
    events = 0
    for t in study.trials:
        record = t.system_attrs[PBT_KEY]
        for e in record["lineage"]:
            events += 1
            assert e["step"] % 2 == 0 and e["parent"] != t.number
            parent_value = study.get_curves(e["parent"])["score"][1][e["step"] - 1]
            assert parent_value == pytest.approx(e["parent_value"]) and parent_value > e["value"]
        plan = schedule(t)
        assert plan[0] == (0, {"lr": lrs[t.number]})
        assert params_at(plan, 12) == record["params"]
        for (step, params), e in zip(plan[1:], record["lineage"], strict=True):
            assert step == e["step"] and params == e["params"]
    assert events >= 6  # 2 of 8 members copy at each of 6 comparisons (some may pick the same)
    # PBT ends at least as well as the best fixed-hyperparameter member would: 0.9 * 12.
    assert study.best_value >= 0.9 * 12 - 1e-9
    text = format_lineage(study)
    assert "copied trial" in text and f"trial {study.trials[0].number}" in text


def test_members_in_four_worker_processes_share_one_lineage(tmp_path: Path) -> None:
    study = tunelab.create_study(name="pbt", storage=f"sqlite:///{tmp_path / 'pbt.db'}",
                                 sampler=tunelab.RandomSampler(), space=SPACE, seed=0, direction="maximize")
    for lr in (0.02, 0.1, 0.5, 0.9):
        study.enqueue({"lr": lr})
    study.optimize(pbt_member, n_trials=4, n_workers=4)
    trials = study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    numbers = {t.number for t in trials}
    for t in trials:
        for e in t.system_attrs[PBT_KEY]["lineage"]:
            assert e["parent"] in numbers and e["parent"] != t.number
            assert e["parent_step"] <= e["step"] and e["parent_value"] > e["value"]
    assert sum(len(t.system_attrs[PBT_KEY]["lineage"]) for t in trials) >= 1
    assert study.best_value >= 0.9 * 12 - 1e-9


@pytest.mark.parametrize("kwargs", [
    {"interval": 0, "metric": "m"}, {"interval": 2, "metric": ""}, {"interval": 2, "metric": "m", "quantile": 0.7},
    {"interval": 2, "metric": "m", "resample_probability": 2.0}, {"interval": 2, "metric": "m", "factors": (0.8, -1)},
])
def test_bad_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PopulationBasedTraining(**kwargs)  # type: ignore[arg-type]


def test_the_cli_prints_the_lineage(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    rules = PopulationBasedTraining(interval=2, metric="score", direction="maximize", resample_probability=0.0)
    study = lockstep(tmp_path, [0.05, 0.1, 0.4, 0.8], steps=4, rules=rules)
    url = f"sqlite:///{tmp_path / 'pbt.db'}"
    result = CliRunner().invoke(app, ["lineage", study.name, "--storage", url])
    assert result.exit_code == 0, result.output
    assert "trial 0" in result.output and "copied trial 3" in result.output
    plain = tunelab.create_study(name="plain", storage=url, seed=0)
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert CliRunner().invoke(app, ["lineage", "plain", "--storage", url]).exit_code == 1


def two_checkpointed_members(
    study: tunelab.Study, rules: PopulationBasedTraining, scored_by: str
) -> tuple[tunelab.Trial, tunelab.Trial, list[Member]]:
    """The study's two enqueued trials as members, each reporting its ``scored_by`` value as the score at
    step 1 and keeping a checkpoint there (the lower one first)."""
    low, high = study.ask(), study.ask()
    members = [rules.member(low), rules.member(high)]
    for t, m in zip((low, high), members, strict=True):
        t.report(1, score=float(m.params[scored_by]))
        with t.checkpoint(1) as folder:
            (folder / "state.json").write_text("0")
    return low, high, members


def test_exploit_copies_fixed_hyperparameters_and_explore_leaves_them_alone(tmp_path: Path) -> None:
    """A member that copies weights must take the parent's width with them; only lr is perturbed."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'w.db'}", sampler=tunelab.RandomSampler(),
                                 space={**SPACE, "width": tunelab.Int(8, 64)}, seed=0, direction="maximize")
    for lr, width in ((0.05, 8), (0.5, 64)):
        study.enqueue({"lr": lr, "width": width})
    rules = PopulationBasedTraining(interval=1, metric="score", direction="maximize", quantile=0.5,
                                    resample_probability=0.0, hyperparameters=["lr"])
    _, high, members = two_checkpointed_members(study, rules, "lr")
    change = members[0].exploit_and_explore(1)
    assert change is not None and change.parent == high.number
    assert change.params["width"] == 64  # the parent's, with its weights
    assert change.params["lr"] in (pytest.approx(0.5 * 0.8), pytest.approx(0.5 * 1.2))


def test_explore_keeps_a_float_lattice_on_its_lattice(tmp_path: Path) -> None:
    """0.3 * 0.8 = 0.24 is no value of Float(0, 1, step=0.1): it is perturbed to 0.2 (it raised
    InvalidDistributionError, which stopped the whole study at the first exploit)."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'lat.db'}", sampler=tunelab.RandomSampler(),
                                 space={"dropout": Float(0.0, 1.0, step=0.1)}, seed=0, direction="maximize")
    for dropout in (0.1, 0.3):
        study.enqueue({"dropout": dropout})
    rules = PopulationBasedTraining(interval=1, metric="score", direction="maximize", quantile=0.5,
                                    resample_probability=0.0, factors=(0.8,))
    low, high, members = two_checkpointed_members(study, rules, "dropout")
    change = members[0].exploit_and_explore(1)
    assert change is not None and change.parent == high.number
    assert change.params["dropout"] == 0.2 and low.distributions["dropout"].contains(change.params["dropout"])


def test_a_member_that_never_reports_the_metric_is_warned_about(tmp_path: Path) -> None:
    """metric='val_acc' while the loop reports 'acc': no member could ever compare, and nothing said so."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'typo.db'}", sampler=tunelab.RandomSampler(),
                                 space=SPACE, seed=0, direction="maximize")
    rules = PopulationBasedTraining(interval=1, metric="val_acc", direction="maximize", quantile=0.5)
    trials = [study.ask(), study.ask()]
    members = [rules.member(t) for t in trials]
    for t, m in zip(trials, members, strict=True):
        t.report(1, acc=float(m.params["lr"]))
    with pytest.warns(UserWarning, match=r"metric='val_acc'.*reported only \['acc'\] by step 1"):
        assert members[0].exploit_and_explore(1) is None
    fresh = study.ask()  # nothing reported yet: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rules.member(fresh).exploit_and_explore(1) is None


def test_a_diverged_member_copies_a_better_one(tmp_path: Path) -> None:
    """A member whose latest value is NaN was left out of the ranking, so the one that most needed rescue
    never exploited (and a NaN member must never be copied)."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'nan.db'}", sampler=tunelab.RandomSampler(),
                                 space=SPACE, seed=0)
    rules = PopulationBasedTraining(interval=1, metric="loss", quantile=0.5, resample_probability=0.0)
    trials = [study.ask() for _ in range(4)]
    members = [rules.member(t) for t in trials]
    for i, t in enumerate(trials):
        t.report(1, loss=float("nan") if i < 2 else 1.0 / i)
        with t.checkpoint(1) as folder:
            (folder / "state.json").write_text("{}")
    changes = [m.exploit_and_explore(1) for m in members]
    assert changes[0] is not None and changes[1] is not None and changes[2] is None and changes[3] is None
    assert {changes[0].parent, changes[1].parent} <= {trials[2].number, trials[3].number}
    event = study.get_trial(trials[0].number).system_attrs[PBT_KEY]["lineage"][0]
    assert event["value"] is None and event["parent_value"] in (0.5, 1 / 3)
    assert "vs own nan (diverged)" in format_lineage(study)


def test_a_metric_whose_name_says_the_other_direction_is_refused(tmp_path: Path) -> None:
    """metric='val_acc' without direction in a study that minimizes: the best members copied the worst."""
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'dir.db'}", sampler=tunelab.RandomSampler(),
                                 space=SPACE, seed=0)
    rules = PopulationBasedTraining(interval=1, metric="val_acc", quantile=0.5)
    with pytest.raises(ConfigError, match=r"PopulationBasedTraining\(metric='val_acc', direction='maximize'\)"):
        rules.member(study.ask())  # before the member trains
    assert PopulationBasedTraining(interval=1, metric="val_acc", direction="maximize").member(study.ask())


def test_hyperparameters_the_trial_does_not_have_are_refused(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'hp.db'}", sampler=tunelab.RandomSampler(),
                                 space=SPACE, seed=0)
    rules = PopulationBasedTraining(interval=1, metric="loss", hyperparameters=("lrr",))  # never explored
    with pytest.raises(ConfigError, match=r"hyperparameters=\.\.\.\) names \['lrr'\].*\['lr'\]"):
        rules.member(study.ask())
