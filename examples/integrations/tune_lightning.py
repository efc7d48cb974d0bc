"""Tune a PyTorch Lightning model: one callback reports its metrics, prunes and checkpoints.

Run:  .venv/bin/python examples/integrations/tune_lightning.py
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tunelab
from tunelab.integrations.lightning import TunelabCallback

torch.set_num_threads(1)
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def data(batch_size: int) -> tuple[DataLoader, DataLoader]:
    """A noisy two-moons-like classification problem: 512 training and 256 validation points."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(768, 2, generator=g)
    y = ((x[:, 0] ** 2 - x[:, 1] + 0.3 * torch.randn(768, generator=g)) > 0).long()
    train = DataLoader(TensorDataset(x[:512], y[:512]), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x[512:], y[512:]), batch_size=256)
    return train, val


class Classifier(pl.LightningModule):
    def __init__(self, width: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))
        self.lr, self.weight_decay = lr, weight_decay

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def objective(trial: tunelab.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    width = trial.suggest_int("width", 4, 64, log=True)
    train, val = data(batch_size=64)
    callback = TunelabCallback(trial, monitor="val_loss", checkpoint=True)  # the one added line
    trainer = pl.Trainer(max_epochs=9, callbacks=[callback], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier(width, lr, weight_decay), train, val)
    if callback.pruned:  # optional: a pruned trial ends PRUNED even if the objective returns
        raise tunelab.TrialPruned()
    return float(trainer.callback_metrics["val_loss"])


def main(storage: str = "sqlite:///lightning.db", n_trials: int = 12) -> tunelab.Study:
    study = tunelab.create_study(
        name="lightning", storage=storage, seed=0, load_if_exists=True,
        pruner=tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=9),
    )
    study.optimize(objective, n_trials=n_trials)
    pruned = len(study.get_trials([tunelab.TrialState.PRUNED]))
    print(f"best val_loss {study.best_value:.3f} with {study.best_params}; {pruned} of {n_trials} trials pruned")
    best = study.best_trial.number
    print(f"its checkpoint: {study.checkpoint_path(best)}")
    return study


if __name__ == "__main__":
    main()
