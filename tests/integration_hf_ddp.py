"""A Hugging Face Trainer on two CPU processes (gloo), for tests/test_integration_transformers.py, run as
``python -m torch.distributed.run --nproc_per_node 2 tests/integration_hf_ddp.py OUT``: the trial lives in
global rank 0's process only (the others pass None), a pruner stops it at the second evaluation, and its
learning rate is set from outside after three steps. Each rank writes what it trained to ``rank-<r>.json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import TrainerCallback

import tunelab
from integration_lightning_ddp import dump_stacks_if_hung, end_rank
from integration_lightning_objectives import StopAt
from integration_transformers_objectives import tiny_trainer
from tunelab.babysit import set_live
from tunelab.integrations.transformers import TunelabCallback

torch.set_num_threads(1)
NAME = "hf-ddp"


class Record(TrainerCallback):  # type: ignore[misc]
    """The lr each optimizer step ran with, and on rank 0 the live change asked after step 3."""

    def __init__(self, rank: int, storage: str) -> None:
        self.rank, self.storage = rank, storage
        self.lrs: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.lrs.append(kwargs["optimizer"].param_groups[0]["lr"])
        if self.rank == 0 and state.global_step == 3:
            set_live(tunelab.load_study(NAME, self.storage), 0, {"learning_rate": 0.002}, source="cli")


def main(out: Path) -> None:
    rank = int(os.environ["RANK"])
    dump_stacks_if_hung(out, rank)
    storage = f"sqlite:///{out / 'hf.db'}"
    study = trial = None
    if rank == 0:
        study = tunelab.load_study(NAME, storage, pruner=StopAt(8, metric="eval_loss"))
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)
        trial.live_poll_seconds = 0  # rank 0 reads the storage before every step (and tells the others)
    record = Record(rank, storage)
    callback = TunelabCallback(trial, monitor="eval_loss")
    trainer = tiny_trainer(str(out / "hf"), callbacks=[callback, record], learning_rate=0.01,
                           lr_scheduler_type="constant", num_train_epochs=4, per_device_train_batch_size=4)
    trainer.train()
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "global_step": trainer.state.global_step, "lrs": record.lrs,
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
    }))
    if study is not None and trial is not None:
        study.tell(trial, float(callback.last_metrics["eval_loss"]))
    end_rank()  # every rank done (rank 0 told the study); no teardown, which can hang (see end_rank)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
