"""The sweep examples run as a user would run them: `tunelab sweep examples/sweep/sweep.yaml` (a plain PyTorch
script printing JSON lines), `tunelab sweep examples/sweep/sweep-shell.yaml` (a shell script, no tunelab), and a W&B
script with its W&B sweep file, converted by `tunelab sweep --from-wandb`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tunelab
from tunelab.records import TrialState
from tunelab.sweep import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sweep"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(tmp_path: Path, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    for f in EXAMPLES.iterdir():
        if f.suffix in (".py", ".sh", ".yaml"):
            shutil.copy(f, tmp_path / f.name)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", name, *flags], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_example_files_are_valid_without_warnings() -> None:
    for name in ("sweep.yaml", "sweep-shell.yaml"):
        assert load_config(EXAMPLES / name).warnings == ()
    shell_code = [line for line in (EXAMPLES / "train.sh").read_text().splitlines() if not line.startswith("#")]
    assert not any("tunelab" in line for line in shell_code)  # only TUNELAB_PARAM_* variables
    assert "import tunelab" not in (EXAMPLES / "train.py").read_text()


def test_the_shell_example_runs_its_whole_sweep(tmp_path: Path) -> None:
    done = _run(tmp_path, "sweep-shell.yaml")
    assert done.returncode == 0, done.stderr
    study = tunelab.load_study("shell-sweep", f"sqlite:///{tmp_path / 'sweep.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 12 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert study.best_value < 1.0


def test_the_pytorch_example_runs(tmp_path: Path) -> None:
    import sklearn  # noqa: F401 - the example trains with them: a missing one fails here, never skips
    import torch  # noqa: F401
    done = _run(tmp_path, "sweep.yaml", "--n-trials", "3")
    assert done.returncode == 0, done.stderr
    study = tunelab.load_study("digits-mlp", f"sqlite:///{tmp_path / 'sweep.db'}")
    assert len(study.trials) == 3
    best = study.best_trial
    assert set(study.get_curves(best.number)) == {"val_loss", "val_acc"}


def test_the_w_and_b_example_converts_and_runs_unchanged(tmp_path: Path) -> None:
    import wandb  # noqa: F401 - the example logs with it: a missing one fails here, never skips
    done = _run(tmp_path, "--from-wandb", "wandb-sweep.yaml", "-o", "wandb.yaml")
    assert done.returncode == 0, done.stderr
    assert load_config(tmp_path / "wandb.yaml").warnings == ()
    done = _run(tmp_path, "wandb.yaml", "--n-trials", "3", "--storage", "sqlite:///sweep.db")
    assert done.returncode == 0, done.stderr
    study = tunelab.load_study("digits-mlp-wandb", f"sqlite:///{tmp_path / 'sweep.db'}")
    assert len(study.trials) == 3
    best = study.best_trial
    steps, values = study.get_curves(best.number)["val_loss"]
    assert set(study.get_curves(best.number)) == {"val_loss", "val_acc"} and steps[0] == 1
    assert best.value == values[-1] < 1.0
