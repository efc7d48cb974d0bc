"""Lightning with ``strategy="ddp"`` on two CPU processes launched by torchrun (every rank runs this
script), for tests/test_integration_lightning.py: ``python -m torch.distributed.run --standalone
--nproc_per_node 2 tests/integration_lightning_torchrun.py OUT``. Global rank 0 holds the trial, the
other rank passes None; a pruner stops the trial at step 2 and its lr is set from outside after three
steps. Each rank writes where its fit ended to ``rank-<r>.json``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

import tunelab
from integration_lightning_ddp import dump_stacks_if_hung, end_rank
from integration_lightning_objectives import Net, SetLive, StopAt, loaders, trainer
from tunelab.integrations.lightning import TunelabCallback

torch.set_num_threads(1)
NAME = "torchrun"


def main(out: Path) -> None:
    rank = int(os.environ["RANK"])
    dump_stacks_if_hung(out, rank)
    storage = f"sqlite:///{out / 'torchrun.db'}"
    study = trial = None
    if rank == 0:
        study = tunelab.load_study(NAME, storage, pruner=StopAt(2, metric="val_loss"))
        trial = study.ask()
        trial.live_poll_seconds = 0  # rank 0 reads before every step (the ranks look together anyway)
    callback = TunelabCallback(trial, monitor="val_loss")
    setter = SetLive(storage, NAME, 0, 3, {"lr": 0.002})
    run = trainer(max_epochs=5, strategy="ddp", devices=2, callbacks=[setter, callback])
    train, val = loaders()
    run.fit(Net(0.05, record_dir=str(out)), train, val)
    if study is not None and trial is not None:
        study.tell(trial, float(run.callback_metrics["val_loss"]))
    end_rank()  # every rank done (rank 0 told the study); no teardown, which can hang (see end_rank)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
