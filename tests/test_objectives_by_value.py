"""Objectives that cannot be imported by reference still run in worker processes: a notebook cell,
a script without the ``__main__`` guard, a lambda; and the in-memory study serves its workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbclient
import nbformat
import pytest

import tunelab
from tunelab.records import TrialState

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_notebook_cell_s_objective_runs_on_two_workers_of_an_in_memory_study(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(textwrap.dedent("""
            import os
            import tunelab

            OFFSET = 0.25  # a global of the notebook, read by the objective

            def objective(trial):
                x = trial.suggest_float("x", -1.0, 1.0)
                trial.set_user_attr("pid", os.getpid())
                return (x - OFFSET) ** 2
        """)),
        nbformat.v4.new_code_cell(textwrap.dedent("""
            study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
            study.optimize(objective, n_trials=8, n_workers=2)
            trials = study.trials
            states = sorted({t.state.value for t in trials})
            pids = {t.user_attrs["pid"] for t in trials}
            print(len(trials), states, 1 <= len(pids) <= 2, os.getpid() in pids)  # in worker processes
        """)),
    ]
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    output = notebook.cells[1].outputs
    text = "".join(o.get("text", "") for o in output if o.get("output_type") == "stream")
    assert text.split() == ["8", "['COMPLETE']", "True", "False"], output


def test_a_script_without_the_main_guard_runs_its_workers(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    db = tmp_path / "unguarded.db"
    script.write_text(textwrap.dedent(f"""
        import tunelab

        print("script body ran", flush=True)

        def objective(trial):
            return trial.suggest_float("x", 0.0, 1.0)

        study = tunelab.create_study(name="s", storage="sqlite:///{db}", sampler=tunelab.RandomSampler(), seed=1)
        study.optimize(objective, n_trials=6, n_workers=2)
        print("done", len(study.get_trials([tunelab.TrialState.COMPLETE])), flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["script body ran", "done 6"], done.stdout + done.stderr
    study = tunelab.load_study("s", f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6


def test_a_lambda_and_a_closure_run_on_spawned_workers_of_an_in_memory_study() -> None:
    offset = 0.5
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=2)
    study.optimize(lambda t: abs(t.suggest_float("x", 0.0, 1.0) - offset), n_trials=4, n_workers=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.best_value == min(abs(t.params["x"] - offset) for t in study.trials)


def test_the_in_memory_study_keeps_curves_attributes_and_pruning_from_its_workers() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=3, pruner=tunelab.MedianPruner(
        n_startup_trials=2, n_warmup_steps=0, metric="loss"))

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(3):
            trial.report(step, loss=x + step)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        trial.set_user_attr("seen", True)
        return x

    study.optimize(objective, n_trials=10, n_workers=2)
    trials = study.trials
    assert len(trials) == 10
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.user_attrs.get("seen") for t in trials if t.state == TrialState.COMPLETE)
    for t in trials:
        steps, _ = study.get_curves(t.number)["loss"]
        assert steps[0] == 0
