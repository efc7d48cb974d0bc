"""A DDP study for tests/test_integration_lightning.py, run as a script (spawned ranks re-import it):
``python tests/integration_lightning_ddp.py OUT``. One trial trains on two CPU processes
(ddp_spawn, gloo) under a pruner that stops it at step 2, its lr set from outside after three
steps; SQLite triggers log every write of a curve point, so the test can count the writers."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import tunelab
from integration_lightning_objectives import StopAt, ddp_objective
from tunelab.checkpoints import CheckpointPolicy


def log_curve_writes(db: Path) -> None:
    """Record every insert and update of a curve point in a ``writes`` table."""
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE writes (trial_id INTEGER, metric TEXT, step INTEGER);
            CREATE TRIGGER log_insert AFTER INSERT ON trial_values
                BEGIN INSERT INTO writes VALUES (NEW.trial_id, NEW.metric, NEW.step); END;
            CREATE TRIGGER log_update AFTER UPDATE ON trial_values
                BEGIN INSERT INTO writes VALUES (NEW.trial_id, NEW.metric, NEW.step); END;
        """)


def torchrun(script: str, out: Path, study_name: str, db: Path) -> None:
    """Create study ``study_name`` in ``db`` (curve writes logged), then run ``tests/<script> OUT`` on two
    CPU processes under ``torchrun --standalone``; fail with the ranks' stderr when it does."""
    tunelab.create_study(name=study_name, storage=f"sqlite:///{db}", seed=0, sampler=tunelab.RandomSampler())
    log_curve_writes(db)
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tests.parent / "src"), str(tests), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             str(tests / script), str(out)],
            env=env, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{script} hung; where each rank was:\n{rank_stacks(out)}") from None
    assert done.returncode == 0, done.stderr[-3000:]


def dump_stacks_if_hung(out: Path, rank: int, seconds: float = 300.0) -> None:
    """In a rank: write every thread's stack to ``out/stack-<rank>.txt`` if the process still runs after
    ``seconds`` (before :func:`torchrun`'s timeout), so a hang says where it is."""
    import faulthandler

    faulthandler.dump_traceback_later(seconds, file=open(out / f"stack-{rank}.txt", "w"))


def end_rank() -> None:
    """End a torchrun rank whose work is done and written: wait for every rank (rank 0 has told the
    study), then leave at once, without tearing ``torch.distributed`` down.

    Gloo's teardown can deadlock at random: a worker thread that drops a finished operation's
    tensors needs the GIL, which the thread destroying the process group holds while it joins that
    worker (pytorch#56297, pytorch#190489). A rank hung so after ``destroy_process_group`` in one
    CI run of about fifteen, its main thread stopped at the script's last line, freeing the trainer.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def rank_stacks(out: Path) -> str:
    """What :func:`dump_stacks_if_hung` wrote, every rank's (empty files: that rank had ended)."""
    return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in sorted(out.glob("stack-*.txt")))


def main(out: Path) -> None:
    db = out / "ddp.db"
    study = tunelab.create_study(name="ddp", storage=f"sqlite:///{db}", seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=StopAt(2, metric="val_loss"), artifact_dir=out / "artifacts",
                                 checkpoint_policy=CheckpointPolicy(keep_last=5, keep_finished=True))
    log_curve_writes(db)
    study.enqueue({"lr": 0.05})
    study.optimize(functools.partial(ddp_objective, out=out), n_trials=1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
