"""W&B Sweeps users: ``tunelab sweep --from-wandb`` converts their sweep configuration, and a ``wandb: true``
sweep runs their W&B script unchanged (real wandb, runs kept off W&B's servers, real processes and SQLite)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import tunelab
from tunelab.distributions import Categorical, Float, Int
from tunelab.errors import SweepConfigError
from tunelab.records import TrialState
from tunelab.sweep import load_config
from tunelab.sweep.wandb_config import CONSTANTS_ENV, convert_wandb_sweep

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def converted(doc: dict[str, object], tmp_path: Path) -> tuple[str, object]:
    text = convert_wandb_sweep(doc, study="s").text("wandb.yaml")
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return text, load_config(path)


def test_every_w_and_b_distribution_becomes_the_tunelab_one(tmp_path: Path) -> None:
    doc = {
        "program": "train.py", "method": "bayes", "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
            "wd": {"distribution": "log_uniform", "min": -9.21, "max": -2.3},
            "dropout": {"min": 0.0, "max": 0.5},
            "width": {"min": 16, "max": 256},
            "layers": {"distribution": "int_uniform", "min": 1, "max": 4},
            "clip": {"distribution": "q_uniform", "min": 0.0, "max": 2.0, "q": 0.5},
            "optimizer": {"values": ["adam", "sgd"], "probabilities": [0.8, 0.2]},
            "epochs": {"value": 5},
            "momentum": {"distribution": "normal", "mu": 0.9, "sigma": 0.02},
        },
        "run_cap": 30,
    }
    text, config = converted(doc, tmp_path)
    space = config.space  # type: ignore[attr-defined]
    assert space["lr"] == Float(1e-5, 1e-1, log=True)
    assert space["wd"].low == pytest.approx(math.exp(-9.21), rel=1e-5) and space["wd"].log
    assert space["dropout"] == Float(0.0, 0.5) and space["width"] == Int(16, 256) and space["layers"] == Int(1, 4)
    assert space["clip"] == Float(0.0, 2.0, step=0.5)
    assert space["optimizer"].choices == ("adam", "sgd") and isinstance(space["optimizer"], Categorical)
    assert space["momentum"].low == pytest.approx(0.84) and space["momentum"].high == pytest.approx(0.96)
    assert "epochs" not in space  # a constant: in the command and in wandb.config, not searched
    assert config.metric == "val_acc" and config.direction == "maximize"  # type: ignore[attr-defined]
    assert config.n_trials == 30 and config.sampler["type"] == "auto" and config.wandb  # type: ignore[attr-defined]
    assert str(config.command).startswith("python train.py --lr={lr} --wd={wd}")  # type: ignore[attr-defined]
    assert "--epochs=5" in str(config.command)  # type: ignore[attr-defined]
    assert json.loads(config.env[CONSTANTS_ENV]) == {"epochs": 5}  # type: ignore[attr-defined]
    assert "# not converted: parameters.momentum: normal(mu=0.9, sigma=0.02) is bounded" in text


def test_a_number_yaml_reads_as_text_is_a_number_as_in_tunelab_s_own_sweep_files(tmp_path: Path) -> None:
    path = tmp_path / "wandb.yaml"  # YAML 1.1 reads 1e-5 (no dot) as the text '1e-5'
    path.write_text("program: t.py\nmetric: {name: l}\nparameters:\n"
                    "  lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-1}\n")
    from tunelab.sweep.wandb_config import write_from_wandb
    config = load_config(write_from_wandb(path, tmp_path / "sweep.yaml"))
    assert config.space["lr"] == Float(1e-5, 1e-1, log=True)


def test_methods_early_termination_and_commands_map_and_what_does_not_is_listed(tmp_path: Path) -> None:
    doc = {"program": "train.py", "method": "grid", "metric": {"name": "loss", "target": 0.1},
           "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}", "${args_json}"],
           "parameters": {"lr": {"values": [0.1, 0.01]}, "deep": {"parameters": {"a": {"value": 1}}}},
           "early_terminate": {"type": "hyperband", "min_iter": 3, "max_iter": 27, "eta": 3},
           "project": "p"}
    text, config = converted(doc, tmp_path)
    assert config.sampler["type"] == "grid" and config.n_trials is None  # type: ignore[attr-defined]
    assert config.pruner == {"type": "hyperband", "min_resource": 3, "max_resource": 27,  # type: ignore[attr-defined]
                             "reduction_factor": 3}
    assert config.command == "python train.py lr={lr}"  # type: ignore[attr-defined]
    for note in ("metric.target 0.1", "parameters.deep is nested", "command word ${args_json}", "project 'p'"):
        assert f"# not converted: {note}" in text, note
    doc = {"program": "t.py", "parameters": {"x": {"min": 0.0, "max": 1.0}}, "metric": {"name": "loss"},
           "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}}
    _, config = converted(doc, tmp_path)
    assert config.pruner == {"type": "asha", "min_resource": 2, "reduction_factor": 2}  # type: ignore[attr-defined]
    assert config.sampler["type"] == "random" and config.n_trials == 50  # type: ignore[attr-defined]


_BASE = {"program": "t.py", "metric": {"name": "l"}}


@pytest.mark.parametrize(("doc", "message"), [
    ({"program": "t.py"}, "parameters: a W&B sweep needs its parameters"),
    ({"program": "t.py", "parameters": {"x": {"values": [1, 2]}}}, "metric: a tunelab sweep needs the metric"),
    ({**_BASE, "parameters": {"e": {"value": 3}}}, "no parameter to search: only constants"),
    ({**_BASE, "parameters": {"e": {"value": 3}, "x": {"distribution": "beta", "a": 2, "b": 3}}},
     "no parameter to search: parameters.x: distribution 'beta' has no tunelab counterpart"),
    ({**_BASE, "method": "hyperopt", "parameters": {"x": {"values": [1, 2]}}}, "method: 'hyperopt'"),
    ({"program": "t.py", "metric": {"name": "l", "goal": "lower"}, "parameters": {"x": {"values": [1, 2]}}},
     "metric.goal: 'lower'"),
    ({**_BASE, "parameters": {"x": {"distribution": "normal", "mu": 0, "sigma": 0}}}, "x.sigma"),
    ({**_BASE, "parameters": {"x": {"distribution": "uniform", "min": "a", "max": 1}}}, "x.min"),
    ({**_BASE, "parameters": {"n": {"distribution": "int_uniform", "min": 1.5, "max": 4.0}}},
     "parameters.n: int_uniform takes whole numbers, got min 1.5"),
    ({"program": "t.py", "metric": {"name": "value"}, "parameters": {"x": {"values": [1, 2]}}},
     "metric.name: 'value' is a key of tunelab's report lines"),
    ({"metric": {"name": "l"}, "parameters": {"x": {"values": [1, 2]}}}, "program: the command runs ${program}"),
])
def test_a_w_and_b_file_that_cannot_be_converted_names_the_key(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SweepConfigError) as e:
        convert_wandb_sweep(doc, study="s")
    assert message in str(e.value)


W_AND_B_SCRIPT = """\
import math
import wandb

run = wandb.init(project="demo", config={"lr": 0.5, "epochs": 1})   # the agent's values replace these
lr, epochs = wandb.config.lr, wandb.config.epochs
for epoch in range(epochs):
    loss = abs(math.log10(lr) + 2.0) + 1.0 / (epoch + 1)
    wandb.log({"val_loss": loss, "train": {"loss": loss * 0.9}, "note": "text", "_private": 1.0})
run.finish()
"""


def test_a_w_and_b_script_runs_unchanged_its_config_filled_and_its_logs_reported(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(W_AND_B_SCRIPT)
    (tmp_path / "wandb.yaml").write_text(yaml.safe_dump({
        "program": "train.py", "method": "random", "metric": {"name": "val_loss", "goal": "minimize"},
        "command": [sys.executable, "${program}"],  # the script reads wandb.config only, as many W&B scripts do
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
                       "epochs": {"value": 4}},
        "run_cap": 3,
    }))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "--from-wandb", "wandb.yaml", "-o",
                           "sweep.yaml"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(sweep.read_text() + "storage: sqlite:///t.db\n")
    env = {k: v for k, v in ENV.items() if not k.startswith("WANDB_")}  # never sent: disabled by the sweep
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    study = tunelab.load_study("wandb", f"sqlite:///{tmp_path / 't.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        lr = t.params["lr"]
        expected = [abs(math.log10(lr) + 2.0) + 1.0 / (e + 1) for e in range(4)]  # epochs=4 from the constants
        curves = study.get_curves(t.number)
        assert curves["val_loss"][0] == [1, 2, 3, 4]  # the number of wandb.log calls so far
        assert curves["val_loss"][1] == pytest.approx(expected)
        assert curves["train.loss"][1] == pytest.approx([0.9 * v for v in expected])
        assert set(curves) == {"val_loss", "train.loss"}  # text and _private keys are left out
        assert t.value == pytest.approx(expected[-1])
    assert not (tmp_path / "wandb").exists() or not any((tmp_path / "wandb").glob("run-*"))  # nothing synced


def test_the_start_up_hook_runs_a_sitecustomize_it_hides_and_reports_explicit_steps(tmp_path: Path) -> None:
    from tunelab.sweep.wandb_config import shim_env

    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITECUSTOMIZE'] = 'ran'\n")
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""\
        import os, wandb
        print("other:", os.environ.get("OTHER_SITECUSTOMIZE"))
        run = wandb.init(config={"a": 1})
        print("config:", dict(run.config))
        wandb.log({"x": 1.0}, step=10)
        wandb.log({"y": 2.0}, commit=False)
        wandb.log({"z": float("nan")})
        """))
    env = shim_env({**ENV, "PYTHONPATH": f"{other}{os.pathsep}{SRC}", "TUNELAB_PARAMS": json.dumps({"a": 3})})
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "other: ran" in lines and "config: {'a': 3}" in lines
    reports = [json.loads(line) for line in lines if line.startswith("{")]
    # W&B commits a step= log with the next one: y (commit=False) and z join step 10, as in the W&B run
    assert reports[:2] == [{"step": 10, "x": 1.0}, {"step": 10, "y": 2.0}]
    assert reports[2]["step"] == 10 and math.isnan(reports[2]["z"])


SUMMARY_SCRIPT = """\
import wandb

run = wandb.init(config={"lr": 0.5})
best = 0.0
for epoch, acc in enumerate([0.5, 0.9, 0.7]):  # the last epoch is not the best: the summary keeps the best
    wandb.log({"val_acc": acc * run.config.lr})
    if acc * run.config.lr > best:
        best = acc * run.config.lr
        run.summary["best_acc"] = best
wandb.summary.update({"test": {"acc": 0.25}, "name": "text"})
run.summary.epochs = 3
wandb.log({"epochs": 4})  # logged again after the script set it: W&B's summary holds the logged value
run.finish()
"""


def test_a_number_the_script_sets_in_its_summary_is_the_trials_final_metric_as_a_w_and_b_sweep_reads_it(
        tmp_path: Path) -> None:
    from tunelab.sweep.wandb_config import shim_env

    (tmp_path / "train.py").write_text(SUMMARY_SCRIPT)
    env = shim_env({**ENV, "TUNELAB_PARAMS": json.dumps({"lr": 1.0})})
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    finals = [json.loads(line)["final"] for line in done.stdout.splitlines() if line.startswith('{"final"')]
    assert finals[-1] == {"best_acc": 0.9, "test.acc": 0.25, "epochs": 4.0}
    assert {"best_acc": 0.5} in finals  # printed as it is set: a killed run keeps what it had
    # swept on the summary's key, as W&B's agent would: the trial's value is the best epoch's, not the last's
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "study": "summary", "command": [sys.executable, "train.py"], "wandb": True, "metric": "best_acc",
        "direction": "maximize", "n_trials": 2, "storage": "sqlite:///t.db",
        "parameters": {"lr": {"type": "float", "low": 0.5, "high": 1.0}},
    }))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    study = tunelab.load_study("summary", f"sqlite:///{tmp_path / 't.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        assert t.value == pytest.approx(0.9 * t.params["lr"])
        assert study.get_curves(t.number)["val_acc"][1][-1] == pytest.approx(0.7 * t.params["lr"])


def test_a_w_and_b_file_given_to_tunelab_sweep_says_how_to_convert_it(tmp_path: Path) -> None:
    path = tmp_path / "wandb-sweep.yaml"
    path.write_text(yaml.safe_dump({"program": "train.py", "method": "bayes", "metric": {"name": "val_loss"},
                                    "parameters": {"lr": {"min": 0.001, "max": 0.1}}}))
    with pytest.raises(SweepConfigError) as e:
        load_config(path)
    assert "looks like a W&B Sweeps configuration; convert it with tunelab sweep --from-wandb" in str(e.value)


def _sweep(tmp_path: Path, script: str, **extra: object) -> tunelab.Study:
    """Convert a one-parameter W&B sweep for ``script`` and run it (one trial)."""
    (tmp_path / "train.py").write_text(textwrap.dedent(script))
    (tmp_path / "wandb.yaml").write_text(yaml.safe_dump({
        "program": "train.py", "method": "random", "metric": {"name": "val_loss", "goal": "minimize"},
        "command": [sys.executable, "${program}"], "parameters": {"lr": {"min": 0.1, "max": 0.2}}, "run_cap": 1,
        **extra}))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "--from-wandb", "wandb.yaml", "-o",
                           "sweep.yaml"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(sweep.read_text() + "storage: sqlite:///t.db\n")
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return tunelab.load_study("wandb", f"sqlite:///{tmp_path / 't.db'}")


def test_metrics_a_w_and_b_script_names_step_or_value_are_not_the_reports_step_or_the_trials_value(
        tmp_path: Path) -> None:
    study = _sweep(tmp_path, """\
        import wandb
        run = wandb.init()
        for epoch in range(3):
            # W&B keeps its own step: "step" and "value" are metrics like any other
            wandb.log({"val_loss": 1.0 / (epoch + 1), "value": 100.0 + epoch, "step": 10 * epoch})
        run.finish()
        """)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx(1.0 / 3)  # the sweep's metric, not the logged "value"
    assert study.get_curves(trial.number)["val_loss"][0] == [1, 2, 3]  # wandb.log's count, not the "step" metric



def test_a_log_at_a_step_below_the_last_is_dropped_and_one_without_step_joins_the_uncommitted_step(
        tmp_path: Path) -> None:
    study = _sweep(tmp_path, """\
        import wandb
        run = wandb.init()
        run.log({"train_loss": 0.5}, step=5)  # step= given: not committed until the next log (W&B's rule)
        run.log({"val_loss": 0.4})            # joins step 5
        run.log({"val_loss": 0.3}, step=8)
        run.log({"val_loss": -1.0}, step=2)   # below the last step: W&B warns and ignores it
        run.finish()
        """)
    (trial,) = study.trials
    assert trial.value == pytest.approx(0.3)
    curves = study.get_curves(trial.number)
    assert curves["val_loss"] == ([5, 8], [pytest.approx(0.4), pytest.approx(0.3)])
    assert curves["train_loss"][0] == [5]


def test_q_distributions_with_a_whole_q_give_whole_numbers_and_inverse_log_ones_convert(tmp_path: Path) -> None:
    # W&B rounds a q_ distribution to multiples of q, whole numbers when q is (its default, 1, is): W&B's own
    # examples tune batch sizes so ("integers between 32 and 256 with evenly-distributed logarithms")
    params = {
        "batch_size": {"distribution": "q_log_uniform_values", "min": 32, "max": 256, "q": 8},
        "hidden": {"distribution": "q_uniform", "min": 16, "max": 1024, "q": 16},
        "layers": {"distribution": "q_uniform", "min": 1.0, "max": 4.0},
        "width": {"distribution": "q_log_uniform", "min": math.log(32), "max": math.log(256), "q": 1},
        "lr": {"distribution": "inv_log_uniform_values", "min": 1e-5, "max": 1e-1},
        "wd": {"distribution": "inv_log_uniform", "min": 2.3, "max": 9.2},
    }
    text, config = converted({"program": "t.py", "metric": {"name": "l"}, "parameters": params}, tmp_path)
    space = config.space  # type: ignore[attr-defined]
    assert space["batch_size"] == Int(32, 256, log=True)
    assert space["hidden"] == Int(16, 1024, step=16) and space["layers"] == Int(1, 4)
    assert space["width"] == Int(32, 256, log=True)
    assert space["lr"] == Float(1e-5, 1e-1, log=True)
    assert space["wd"].low == pytest.approx(math.exp(-9.2), rel=1e-5) and space["wd"].log
    assert space["wd"].high == pytest.approx(math.exp(-2.3), rel=1e-5)
    assert "# not converted: parameters.batch_size: q_log_uniform_values's q=8" in text
    (tmp_path / "run").mkdir()
    study = _sweep(tmp_path / "run", """\
        import argparse, wandb
        parser = argparse.ArgumentParser()
        parser.add_argument("--batch_size", type=int)
        parser.add_argument("--hidden", type=int)
        args = parser.parse_args()
        run = wandb.init()
        assert isinstance(wandb.config.batch_size, int) and wandb.config.batch_size == args.batch_size
        wandb.log({"val_loss": args.hidden / args.batch_size})
        run.finish()
        """, parameters={"batch_size": params["batch_size"], "hidden": params["hidden"]},
        command=["${env}", sys.executable, "${program}", "${args}"])
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.params["hidden"] % 16 == 0 and 32 <= trial.params["batch_size"] <= 256


def test_every_args_macro_of_the_w_and_b_agent_becomes_placeholders(tmp_path: Path) -> None:
    base = {"program": "train.py", "metric": {"name": "l"},
            "parameters": {"lr": {"min": 0.1, "max": 0.2}, "opt": {"values": ["a", "b"]}, "e": {"value": 3}}}
    expected = {  # as the W&B agent writes them (wandb_agent / sweeps utils create_sweep_command_args)
        "${args_no_equals}": "--lr {lr} --opt {opt} --e 3",
        "${args_append_hydra}": "+lr={lr} +opt={opt} +e=3",
        "${args_override_hydra}": "++lr={lr} ++opt={opt} ++e=3",
    }
    for macro, words in expected.items():
        text, config = converted({**base, "command": ["${interpreter}", "${program}", macro]}, tmp_path)
        assert config.command == f"python train.py {words}", macro  # type: ignore[attr-defined]
        assert "command word" not in text, macro
    text, _ = converted({**base, "command": ["${interpreter}", "${program}", "--data=${envvar:DATA_DIR}",
                                             "${args}"]}, tmp_path)
    assert "# not converted: command word --data=${envvar:DATA_DIR}" in text


def test_the_trials_parameters_are_locked_in_wandb_config_as_a_w_and_b_agent_locks_them(tmp_path: Path) -> None:
    # a common W&B script: argparse defaults copied into wandb.config after init; under a W&B agent the sweep's
    # keys are locked (the update of them is ignored with a warning), so the trial's values stay
    study = _sweep(tmp_path, """\
        import argparse, wandb
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.5)
        parser.add_argument("--epochs", type=int, default=2)
        run = wandb.init()
        wandb.config.update(parser.parse_args())
        wandb.config.update({"lr": 0.9}, allow_val_change=True)
        wandb.log({"val_loss": wandb.config.lr * wandb.config.epochs})
        run.finish()
        """)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert trial.value == pytest.approx(trial.params["lr"] * 2)


def test_a_sweep_file_written_elsewhere_runs_the_program_where_the_w_and_b_agent_would(tmp_path: Path) -> None:
    # the W&B agent runs `program` (and the paths the script opens) from the folder it is started in
    (tmp_path / "configs").mkdir()
    (tmp_path / "data.txt").write_text("0.25\n")
    (tmp_path / "train.py").write_text(textwrap.dedent("""\
        import wandb
        run = wandb.init()
        wandb.log({"val_loss": float(open("data.txt").read()) + wandb.config.lr})
        run.finish()
        """))
    (tmp_path / "configs" / "wandb.yaml").write_text(yaml.safe_dump({
        "program": "train.py", "metric": {"name": "val_loss"}, "command": [sys.executable, "${program}"],
        "parameters": {"lr": {"min": 0.1, "max": 0.2}}, "run_cap": 1}))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "--from-wandb", "configs/wandb.yaml", "-o",
                           "configs/sweep.yaml"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sweep = tmp_path / "configs" / "sweep.yaml"
    sweep.write_text(sweep.read_text() + "storage: sqlite:///t.db\n")
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path / "configs",
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (trial,) = tunelab.load_study("wandb", f"sqlite:///{tmp_path / 'configs' / 't.db'}").trials
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.25 + trial.params["lr"])
