"""A tiny Lightning model on synthetic data and objectives for tests/test_integration_lightning.py, at
module level so that worker processes (n_workers=2) and spawned DDP ranks can import them."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tunelab
from tunelab.babysit import set_live
from tunelab.history import History
from tunelab.integrations.lightning import TunelabCallback
from tunelab.pruners.base import PruneDecision

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*number of training batches.*")

N_TRAIN, N_VAL, BATCH = 64, 32, 16
BATCHES_PER_EPOCH = N_TRAIN // BATCH  # 4 on one process


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Synthetic linear regression: 64 training rows in batches of 16, 32 validation rows in one batch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VAL, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(N_TRAIN + N_VAL, 1, generator=g)
    train = TensorDataset(x[:N_TRAIN], y[:N_TRAIN])
    val = TensorDataset(x[N_TRAIN:], y[N_TRAIN:])
    return DataLoader(train, batch_size=BATCH), DataLoader(val, batch_size=N_VAL)


class Net(pl.LightningModule):
    """A linear model that records what it did: the lr and loss of each training step, each validation's loss
    and, with ``record_dir``, where each rank's fit ended (``rank-<global rank>.json``)."""

    def __init__(self, lr: float, record_dir: str | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)
        self.lr = lr
        self.record_dir = record_dir
        self.lrs: list[float] = []
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.train_losses.append(float(loss.detach()))
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("val_loss", loss, sync_dist=True)
        self.log("val_mae", (self.layer(x) - y).abs().mean(), sync_dist=True)
        if not self.trainer.sanity_checking:
            self.val_losses.append(float(loss))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    def on_fit_end(self) -> None:
        if self.record_dir is not None:
            where = {"global_step": self.trainer.global_step, "epoch": self.trainer.current_epoch, "lrs": self.lrs}
            Path(self.record_dir, f"rank-{self.trainer.global_rank}.json").write_text(json.dumps(where))


def trainer(**kwargs: Any) -> pl.Trainer:
    """A quiet CPU Trainer."""
    options: dict[str, Any] = dict(accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
                                   enable_checkpointing=False, enable_model_summary=False)
    options.update(kwargs)
    return pl.Trainer(**options)


def objective(trial: tunelab.Trial) -> float:
    """Three epochs at a suggested lr; a pruned trial raises TrialPruned."""
    torch.set_num_threads(1)
    lr = trial.suggest_float("lr", 1e-5, 0.1, log=True)
    cb = TunelabCallback(trial, monitor="val_loss")
    run = trainer(max_epochs=3, callbacks=[cb])
    train, val = loaders()
    run.fit(Net(lr), train, val)
    if cb.pruned:
        raise tunelab.TrialPruned()
    return float(run.callback_metrics["val_loss"])


class StopAt(tunelab.Pruner):
    """Stops every trial when it reports step ``at``."""

    def __init__(self, at: int = 2, metric: str | None = None) -> None:
        super().__init__(metric)
        self.at = at

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        return PruneDecision("stop at", f"step {self.at}") if max(curve) >= self.at else None


class SetLive(pl.Callback):
    """What ``tunelab set`` does, from global rank 0's process, after ``at`` optimizer steps."""

    def __init__(self, storage: str, name: str, number: int, at: int, values: dict[str, float]) -> None:
        self.storage, self.name, self.number, self.at, self.values = storage, name, number, at, values

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.is_global_zero and trainer.global_step == self.at:
            study = tunelab.load_study(self.name, self.storage, pruner=StopAt())
            set_live(study, self.number, self.values, source="cli")


def ddp_objective(trial: tunelab.Trial, out: Path) -> float:
    """Five epochs on two CPU processes (ddp_spawn, gloo), checkpointing, the lr set to 0.002 after
    three optimizer steps; returns the last val_loss."""
    lr = trial.suggest_float("lr", 1e-3, 0.1, log=True)
    trial.live_poll_seconds = 0
    cb = TunelabCallback(trial, monitor="val_loss", checkpoint=True)
    storage = trial.study.storage.url
    assert storage is not None
    setter = SetLive(storage, trial.study.name, trial.number, 3, {"lr": 0.002})
    run = trainer(max_epochs=5, strategy="ddp_spawn", devices=2, callbacks=[setter, cb])
    record = out / f"trial-{trial.number}"
    record.mkdir(parents=True, exist_ok=True)
    train, val = loaders()
    run.fit(Net(lr, record_dir=str(record)), train, val)
    (record / "main.json").write_text(json.dumps({"pruned": cb.pruned, "pid": os.getpid()}))
    return float(run.callback_metrics["val_loss"])
