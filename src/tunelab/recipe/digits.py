"""The built-in problem: a small convolutional network on scikit-learn's digits.

1,797 images of 8x8 pixels, 10 classes, shipped with scikit-learn (no download): 75% for
training, 25% for validation, stratified, pixels scaled to [0, 1]. The network: two 3x3
convolutions (``width`` and ``2 * width`` channels), a 2x2 max-pool, dropout, a hidden
layer of 128 units and a linear head; AdamW with a cosine schedule.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from tunelab.distributions import Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.torch import Data, Trainer

SPACE = {
    "width": Int(8, 48, log=True),
    "dropout": Float(0.0, 0.5),
}
"""The network's own hyperparameters; the recipe adds the learning rate and the weight decay."""


def load() -> tuple[Data, Data]:
    """``((x_train, y_train), (x_val, y_val))``: images as ``(N, 1, 8, 8)`` float tensors, labels as int64."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ConfigError("the digits problem needs scikit-learn: pip install 'tunelab[demo]'") from None
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)

    def images(a: object) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).view(-1, 1, 8, 8)

    return (images(x_tr), torch.tensor(y_tr)), (images(x_va), torch.tensor(y_va))


def build(params: Mapping[str, ParamValue]) -> nn.Module:
    """The CNN for ``params["width"]`` and ``params["dropout"]``."""
    width = int(params.get("width", 16))  # type: ignore[arg-type]
    dropout = float(params.get("dropout", 0.0))  # type: ignore[arg-type]
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * width * 16, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def trainer() -> Trainer:
    """The digits CNN as a :class:`~tunelab.torch.Trainer` (the recipe's default problem)."""
    return Trainer(
        build, data=load, loss="cross_entropy", optimizer="adamw", batch_size=64, schedule="cosine",
        space=SPACE, defaults={"width": 16, "dropout": 0.2}, unregularized={"dropout": 0.0},
    )
