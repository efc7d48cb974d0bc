"""A babysat run trained in its own process (spawned processes import these module-level functions).

The model: a small CNN with dropout on scikit-learn's digits (600 images to train, 300 to
validate; 10 optimiser steps per epoch at batch 64), preceded by :class:`Pace`, which sleeps in
training forward passes so that a test can kill the process mid-epoch (it has no weights and
draws no random numbers: paced and unpaced runs compute the same values).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tunelab.distributions import ParamValue
from tunelab.torch import Data, Trainer

PACE_ENV = "TUNELAB_TEST_PACE"
STEPS_PER_EPOCH = 10


def digits() -> tuple[Data, Data]:
    """``((x_train, y_train), (x_val, y_val))``: flat 8x8 images in [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, train_size=600, test_size=300, random_state=0, stratify=y)
    return ((torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr)),
            (torch.tensor(x_va, dtype=torch.float32), torch.tensor(y_va)))


class Pace(nn.Module):
    """Sleeps ``$TUNELAB_TEST_PACE`` seconds in each training forward pass; computes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pace = float(os.environ.get(PACE_ENV, "0") or 0)
        if pace and self.training:
            time.sleep(pace)
        return x


def build(params: Mapping[str, ParamValue]) -> nn.Module:
    """The digits CNN: ``width`` channels (8), dropout ``dropout`` (0.2) before the head."""
    width = int(params.get("width", 8))  # type: ignore[arg-type]
    return nn.Sequential(
        Pace(), nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(float(params.get("dropout", 0.2))),  # type: ignore[arg-type]
        nn.Linear(width * 16, 10),
    )


def set_dropout(model: nn.Module, optimizer: torch.optim.Optimizer, changes: dict[str, Any]) -> None:
    """``on_live_change`` hook: a changed ``dropout`` becomes the ``p`` of every dropout layer."""
    if "dropout" in changes:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(changes["dropout"])


def trainer(**kw: Any) -> Trainer:
    """The digits CNN's trainer: AdamW, a cosine schedule, dropout live through :func:`set_dropout`."""
    kw.setdefault("optimizer", "adamw")
    kw.setdefault("schedule", "cosine")
    return Trainer(build, data=digits, batch_size=64, device="cpu", on_live_change=set_dropout,
                   live_params=("dropout",), **kw)


def train_run_main(url: str, name: str, epochs: int, checkpoint_every: int, pace: float,
                   until_idle: bool = True) -> None:
    """Train run ``name`` with :func:`tunelab.babysit.train_run`, in this (spawned) process."""
    import tunelab
    from tunelab.babysit import train_run

    torch.set_num_threads(1)
    os.environ[PACE_ENV] = str(pace)
    study = tunelab.load_study(name, url)
    train_run(study, trainer(), epochs=epochs, checkpoint_every=checkpoint_every, poll_seconds=0.2,
              heartbeat_interval=0.3, grace_period=1.0, until_idle=until_idle)
