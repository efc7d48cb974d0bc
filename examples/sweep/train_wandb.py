"""A W&B training script, tuned by tunelab as it is: `tunelab sweep --from-wandb wandb-sweep.yaml -o
wandb.yaml`, then `tunelab sweep wandb.yaml`.

It reads its hyperparameters from ``wandb.config`` (a W&B sweep agent fills it; so does tunelab) and logs
``val_loss`` and ``val_acc`` with ``wandb.log`` once per epoch (tunelab reads each call as a report). A small
MLP on scikit-learn's digits, on the CPU, in seconds. By hand, runs go nowhere with ``WANDB_MODE=disabled``:

    WANDB_MODE=disabled python train_wandb.py
"""

from __future__ import annotations

import torch
import wandb
from sklearn.datasets import load_digits
from torch import nn

DEFAULTS = {"lr": 1e-2, "width": 64, "optimizer": "adam", "epochs": 9}


def main() -> None:
    run = wandb.init(project="digits-mlp", config=DEFAULTS)
    cfg = wandb.config
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = perm[:1400], perm[1400:]

    model = nn.Sequential(nn.Linear(64, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 10))
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(cfg.epochs):
        model.train()
        for batch in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(x[val])
            wandb.log({"val_loss": loss_fn(out, y[val]).item(), "val_acc": (out.argmax(1) == y[val]).float().mean()})
    run.finish()


if __name__ == "__main__":
    main()
