"""Every example runs as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tunelab

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.slow
def test_quickstart_runs_and_finds_a_good_classifier(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "best validation accuracy" in out.stdout
    study = tunelab.load_study("quickstart", f"sqlite:///{tmp_path / 'quickstart.db'}")
    assert len(study.trials) == 30 and study.best_value > 0.9
    assert set(study.get_curves(study.best_trial.number)) == {"train_acc", "val_acc"}
