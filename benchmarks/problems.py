"""The problems of the sample-efficiency suite (``suite.py``): a declared space, a direction, a value.

Each :class:`Problem` has a name, a tunelab search space (name -> distribution), a direction,
an ``evaluate(params) -> float`` function and, for the synthetic ones, the known optimum:

- ``branin``: 2-d, known minimum 0.397887;
- ``hartmann6``: 6-d on the unit cube, known minimum -3.32237;
- ``rosenbrock10_log``: 10-d Rosenbrock on [-2, 2]^10 (minimum 0 at x = 1) where the five
  even coordinates are declared log-uniform, ``z in [1e-4, 1]`` with ``x = log10(z) + 2``
  (the optimum is at z = 0.1), as a learning rate would be; the five odd ones are linear;
- ``mlp_digits``: scikit-learn's MLPClassifier on the digits data, validation error;
- ``svm_cancer``: an SVC on the breast-cancer data, 5-fold cross-validated error;
- ``torch_digits``: a small PyTorch MLP on the digits data, validation cross-entropy.

The machine-learning objectives are deterministic given the parameters (fixed split, fixed
seeds, one thread), so that only the sampler differs from one run to the next, and cheap
(tens of milliseconds): a benchmark of samplers, not of models. Their data ship with
scikit-learn; nothing is downloaded. Data are loaded and standardised once per process.
Run them with ``OMP_NUM_THREADS=1`` in the environment (``suite.py`` sets it for its workers);
``torch_digits`` also calls ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tunelab.distributions import Categorical, Distribution, Float, Int

Params = Mapping[str, Any]

LOSS_CAP = 10.0
"""torch_digits returns at most this (and this for NaN): a diverged network must not fail a trial."""


@dataclass(frozen=True)
class Problem:
    """A benchmark problem: what the samplers search and what they are scored on.

    Attributes:
        name: its key on the command line and in the results.
        space: the declared search space, parameter name -> tunelab distribution.
        evaluate: the objective's value for a full assignment of the space.
        direction: 'minimize' or 'maximize'.
        optimum: the best value that exists, if known (the regret is measured from it).
        description: one line for the results file.
    """

    name: str
    space: Mapping[str, Distribution]
    evaluate: Callable[[Params], float]
    direction: str = "minimize"
    optimum: float | None = None
    description: str = ""

    def describe(self) -> dict[str, Any]:
        """A JSON description (for the results file)."""
        return {
            "name": self.name, "direction": self.direction, "optimum": self.optimum,
            "description": self.description,
            "space": {name: dist.to_json() for name, dist in self.space.items()},
        }


# -- synthetic functions ----------------------------------------------------------------------
BRANIN_MIN = 5.0 / (4.0 * math.pi)  # 0.397887...


def branin(params: Params) -> float:
    """The Branin-Hoo function on [-5, 10] x [0, 15]; three global minima of 0.397887."""
    x1, x2 = float(params["x1"]), float(params["x2"])
    b, c, t = 5.1 / (4.0 * math.pi**2), 5.0 / math.pi, 1.0 / (8.0 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


HARTMANN6_MIN = -3.3223680114155147
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
])
_H6_P = 1e-4 * np.array([
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
])


def hartmann6(params: Params) -> float:
    """The 6-d Hartmann function on [0, 1]^6; global minimum -3.32237, several local ones."""
    x = np.array([float(params[f"x{i}"]) for i in range(6)])
    inner = (_H6_A * (x - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


ROSENBROCK_DIMS = 10


def rosenbrock_x(params: Params) -> list[float]:
    """The Rosenbrock coordinates of a point of the mixed space (even ones from log10(z) + 2)."""
    return [
        math.log10(float(params[f"z{i}"])) + 2.0 if i % 2 == 0 else float(params[f"x{i}"])
        for i in range(ROSENBROCK_DIMS)
    ]


def rosenbrock10_log(params: Params) -> float:
    """10-d Rosenbrock on [-2, 2]^10, half its coordinates declared on a log scale; minimum 0."""
    x = rosenbrock_x(params)
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(ROSENBROCK_DIMS - 1))


# -- machine-learning objectives --------------------------------------------------------------
DIGITS_TRAIN = 600
"""Training examples of the digits problems; the other 1,197 validate (a cheap fit, a fine-grained error)."""


@lru_cache(maxsize=1)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits data (1,797 x 64): ``DIGITS_TRAIN`` to train, stratified with seed 0, standardised on those."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, train_size=DIGITS_TRAIN, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    return scaler.transform(x_tr), scaler.transform(x_va), y_tr, y_va


MLP_MAX_ITER = 15


def mlp_digits(params: Params) -> float:
    """Validation error of an sklearn MLPClassifier (adam, ``MLP_MAX_ITER`` epochs at most)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_tr, x_va, y_tr, y_va = digits_split()
    model = MLPClassifier(
        hidden_layer_sizes=(int(params["width"]),), activation=str(params["activation"]), solver="adam",
        alpha=float(params["alpha"]), batch_size=int(params["batch_size"]),
        learning_rate_init=float(params["learning_rate_init"]), max_iter=MLP_MAX_ITER, random_state=0,
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in a diverging network
        model.fit(x_tr, y_tr)
        return 1.0 - float(model.score(x_va, y_va))


@lru_cache(maxsize=1)
def cancer_folds() -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The breast-cancer data (569 x 30), standardised, and 5 stratified folds shuffled with seed 0."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(x, y))
    return x, y, folds


SVM_MAX_ITER = 20_000


def svm_cancer(params: Params) -> float:
    """5-fold cross-validated error of an SVC (rbf or sigmoid kernel, at most ``SVM_MAX_ITER`` iterations)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC

    x, y, folds = cancer_folds()
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in folds:
            model = SVC(C=float(params["C"]), gamma=float(params["gamma"]), kernel=str(params["kernel"]),
                        max_iter=SVM_MAX_ITER)
            model.fit(x[train], y[train])
            errors.append(1.0 - float(model.score(x[test], y[test])))
    return float(np.mean(errors))


TORCH_EPOCHS = 10
TORCH_BATCH = 64


@lru_cache(maxsize=1)
def torch_digits_data() -> tuple[Any, Any, Any, Any]:
    """The digits split of :func:`digits_split` as torch tensors (float32 features, int64 labels)."""
    import torch

    torch.set_num_threads(1)
    x_tr, x_va, y_tr, y_va = digits_split()
    return (torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_va, dtype=torch.float32),
            torch.tensor(y_tr, dtype=torch.int64), torch.tensor(y_va, dtype=torch.int64))


def train_minibatches(model: Any, optimizer: Any, x: Any, y: Any, *, epochs: int, batch: int) -> None:
    """Train ``model`` on ``(x, y)`` with cross-entropy for ``epochs`` epochs of shuffled minibatches of
    ``batch`` (the shuffle seeded with 0: the same order for every configuration), then set it to eval."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(0)
    n = x.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[rows]), y[rows]).backward()
            optimizer.step()
    model.eval()


def torch_digits(params: Params) -> float:
    """Validation cross-entropy of a one-hidden-layer PyTorch MLP after ``TORCH_EPOCHS`` epochs.

    Minibatches of ``TORCH_BATCH`` are sliced from tensors (no DataLoader); the weights and the
    shuffling are seeded with 0, so a configuration always gives the same value. SGD uses
    momentum 0.9. A diverged network scores ``LOSS_CAP``.
    """
    import torch
    from torch import nn

    torch.set_num_threads(1)
    x_tr, x_va, y_tr, y_va = torch_digits_data()
    torch.manual_seed(0)
    width, lr, wd = int(params["width"]), float(params["lr"]), float(params["weight_decay"])
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Dropout(float(params["dropout"])), nn.Linear(width, 10))
    optimizer: torch.optim.Optimizer
    if params["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    loss_fn = nn.CrossEntropyLoss()
    train_minibatches(model, optimizer, x_tr, y_tr, epochs=TORCH_EPOCHS, batch=TORCH_BATCH)
    with torch.no_grad():
        value = float(loss_fn(model(x_va), y_va))
    return value if math.isfinite(value) and value < LOSS_CAP else LOSS_CAP


# -- the registry -----------------------------------------------------------------------------
def _rosenbrock_space() -> dict[str, Distribution]:
    return {
        (f"z{i}" if i % 2 == 0 else f"x{i}"): (Float(1e-4, 1.0, log=True) if i % 2 == 0 else Float(-2.0, 2.0))
        for i in range(ROSENBROCK_DIMS)
    }


PROBLEMS: dict[str, Problem] = {p.name: p for p in (
    Problem(
        "branin", {"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)}, branin, optimum=BRANIN_MIN,
        description="Branin-Hoo, 2-d, three global minima",
    ),
    Problem(
        "hartmann6", {f"x{i}": Float(0.0, 1.0) for i in range(6)}, hartmann6, optimum=HARTMANN6_MIN,
        description="Hartmann, 6-d on the unit cube, multimodal",
    ),
    Problem(
        "rosenbrock10_log", _rosenbrock_space(), rosenbrock10_log, optimum=0.0,
        description="Rosenbrock, 10-d on [-2, 2]; z0, z2, .. z8 log-uniform in [1e-4, 1] with x = log10(z) + 2",
    ),
    Problem(
        "mlp_digits",
        {
            "learning_rate_init": Float(1e-5, 1.0, log=True),
            "alpha": Float(1e-6, 1.0, log=True),
            "width": Int(8, 128, log=True),
            "activation": Categorical(["relu", "tanh", "logistic"]),
            "batch_size": Int(32, 256, log=True),
        },
        mlp_digits,
        description=f"sklearn MLPClassifier on digits ({DIGITS_TRAIN} train, the rest validates), validation error, "
                    f"max_iter={MLP_MAX_ITER}",
    ),
    Problem(
        "svm_cancer",
        {
            "C": Float(1e-3, 1e3, log=True),
            "gamma": Float(1e-5, 1e1, log=True),
            "kernel": Categorical(["rbf", "sigmoid"]),
        },
        svm_cancer,
        description="sklearn SVC on breast_cancer (standardised), 5-fold cross-validated error",
    ),
    Problem(
        "torch_digits",
        {
            "lr": Float(1e-5, 1.0, log=True),
            "weight_decay": Float(1e-6, 1e-1, log=True),
            "width": Int(16, 256, log=True),
            "dropout": Float(0.0, 0.7),
            "optimizer": Categorical(["sgd", "adam"]),
        },
        torch_digits,
        description=f"PyTorch MLP on digits ({DIGITS_TRAIN} train, the rest validates), validation cross-entropy "
                    f"after {TORCH_EPOCHS} epochs, batch {TORCH_BATCH}, capped at {LOSS_CAP}",
    ),
)}
