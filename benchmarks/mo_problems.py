"""Two problems of ``multiobjective.py`` with constraints, kept free of Optuna so that tests can import them.

- ``c2dtlz2``: C2-DTLZ2 (Deb and Jain 2014), three objectives: DTLZ2 (the unit sphere's octant is the
  unconstrained front) with one constraint that keeps only the parts of the objective space within
  ``r = 0.4`` of the three corners ``e_i`` or of the centre ``(1, 1, 1) / sqrt(3)``: feasible when

      min( min_i [ (f_i - 1)^2 + sum_{j != i} f_j^2 ],  sum_i (f_i - 1/sqrt(3))^2 )  <=  r^2

  (pymoo's ``constraint_c2`` returns this minimum minus ``r^2``). The true front is the four caps of
  the sphere inside those balls.
- ``cnn_digits``: a small PyTorch CNN on scikit-learn's digits (``tunelab.recipe.digits.load``: 1,347
  images to train, 450 to validate), CPU, one thread, ``CNN_EPOCHS`` epochs of AdamW, batch 64, seeded:
  the same configuration always gives the same values. Objectives: validation error and log10 of the
  parameter count; constraint: an estimate of the training memory in MB (float32 weights, gradients and
  AdamW's two moments, plus the activations a batch of 64 keeps for the backward pass) at most
  ``CNN_MEMORY_MB``. The activations grow with the convolutions' width, the parameters mostly with
  width x hidden units, so the bound cuts off wide-convolution, narrow-dense designs that the
  parameter count alone would allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from problems import train_minibatches

from tunelab.distributions import Distribution, Float, Int

Params = Mapping[str, Any]
Constraint = tuple[str, float, float]  # (name, value, upper): feasible when value <= upper

# -- C2-DTLZ2 ---------------------------------------------------------------------------------
C2DTLZ2_D = 6  # 2 position variables + k = 4 distance variables (as ``dtlz2`` in multiobjective.py)
C2DTLZ2_R = 0.4  # Deb and Jain's radius for 3 objectives (pymoo: 0.2 for 2, 0.4 for 3, 0.5 above)
C2DTLZ2_REF = (1.5, 1.5, 1.5)
C2DTLZ2_TRUE_HV = 2.7725
"""The true front's hypervolume at ``C2DTLZ2_REF``: ``grid_hv_3d(c2dtlz2_front(2001), C2DTLZ2_REF, 3000)`` bounds
it by 2.7713 and 2.7736 (the unconstrained front's is 2.8514)."""
C2DTLZ2_SPACE: dict[str, Distribution] = {f"x{i}": Float(0.0, 1.0) for i in range(C2DTLZ2_D)}


def c2_distance(f: np.ndarray) -> np.ndarray:
    """The squared distance of each row of ``f`` (n x M) to the nearest of the constraint's M + 1 centres."""
    f = np.atleast_2d(f)
    total = np.sum(f**2, axis=1)
    corners = np.min([(f[:, i] - 1.0) ** 2 + total - f[:, i] ** 2 for i in range(f.shape[1])], axis=0)
    centre = np.sum((f - 1.0 / math.sqrt(f.shape[1])) ** 2, axis=1)
    return np.asarray(np.minimum(corners, centre))


def dtlz2_values(x: np.ndarray) -> tuple[float, float, float]:
    """DTLZ2 with three objectives for ``x`` in [0, 1]^d."""
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = 0.5 * math.pi * x[0], 0.5 * math.pi * x[1]
    r = 1.0 + g
    return r * math.cos(a) * math.cos(b), r * math.cos(a) * math.sin(b), r * math.sin(a)


def c2dtlz2(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    """C2-DTLZ2, 3 objectives, one constraint (``c2``: squared distance to the nearest centre <= r^2)."""
    f = dtlz2_values(np.array([float(p[f"x{i}"]) for i in range(C2DTLZ2_D)]))
    return f, [("c2", float(c2_distance(np.array(f))[0]), C2DTLZ2_R**2)]


def c2dtlz2_front(n: int = 1001) -> np.ndarray:
    """A sample of the true front: the feasible points of an ``n`` x ``n`` angle grid on the sphere's octant."""
    a, b = np.meshgrid(np.linspace(0.0, 0.5 * math.pi, n), np.linspace(0.0, 0.5 * math.pi, n))
    a, b = a.ravel(), b.ravel()
    f = np.column_stack([np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)])
    return f[c2_distance(f) <= C2DTLZ2_R**2]


def grid_hv_3d(front: np.ndarray, reference: tuple[float, ...], cells: int = 1500) -> tuple[float, float]:
    """Lower and upper bounds on the hypervolume of a dense 3-d front sample, on a ``cells``^2 grid in (f1, f2).

    For each grid cell the dominated height is ``reference[2]`` minus the least ``f3`` of the points whose
    (f1, f2) are both at most the cell's corner: the upper corner gives an upper bound, the lower a lower one
    (a prefix minimum over both axes; ``hypervolume`` is exact but too slow for ~10^5 points).
    """
    r1, r2, r3 = reference
    h1, h2 = r1 / cells, r2 / cells
    out = []
    for offset in (0, 1):  # 0: bin to the cell's upper corner (lower bound); 1: lower corner (upper bound)
        i = np.floor(front[:, 0] / h1).astype(int) + 1 - offset
        j = np.floor(front[:, 1] / h2).astype(int) + 1 - offset
        keep = (i < cells) & (j < cells) & (front[:, 2] < r3)
        low = np.full((cells, cells), r3)
        np.minimum.at(low, (np.clip(i[keep], 0, None), np.clip(j[keep], 0, None)), front[keep, 2])
        low = np.minimum.accumulate(np.minimum.accumulate(low, axis=0), axis=1)
        out.append(float(np.sum(r3 - low) * h1 * h2))
    return out[0], out[1]


# -- the digits CNN ---------------------------------------------------------------------------
CNN_EPOCHS = 2
CNN_BATCH = 64
CNN_MEMORY_MB = 2.0
CNN_REF = (1.0, 6.0)  # validation error at most 1; log10(parameters) at most 5.33 in this space
CNN_SPACE: dict[str, Distribution] = {
    "width": Int(4, 24, log=True),  # channels of the first convolution; the second has twice as many
    "hidden": Int(8, 256, log=True),  # units of the dense layer
    "lr": Float(1e-3, 1e-1, log=True),
    "weight_decay": Float(1e-5, 1e-1, log=True),
}


def cnn_parameters(width: int, hidden: int) -> int:
    """Parameters of the network of :func:`cnn_build` (weights and biases)."""
    conv = (9 * width + width) + (9 * width * 2 * width + 2 * width)
    dense = 2 * width * 16 * hidden + hidden
    return conv + dense + 10 * hidden + 10


def cnn_memory_mb(width: int, hidden: int, batch: int = CNN_BATCH) -> float:
    """Training memory estimate in MB (10^6 bytes), float32: parameters x 4 (weights, gradients, AdamW's two
    moments) plus what a batch keeps for the backward pass (input; each convolution's output and its ReLU;
    the pooled map; the dense layer's output and its ReLU; the logits)."""
    per_example = 64 + 2 * 64 * width + 2 * 64 * 2 * width + 16 * 2 * width + 2 * hidden + 10
    return 4.0 * (4 * cnn_parameters(width, hidden) + batch * per_example) / 1e6


@lru_cache(maxsize=1)
def cnn_data() -> tuple[Any, Any, Any, Any]:
    """The recipe's digits split as ``(x_train, y_train, x_val, y_val)`` tensors (images ``(N, 1, 8, 8)``)."""
    import torch

    from tunelab.recipe import digits

    torch.set_num_threads(1)
    (x_tr, y_tr), (x_va, y_va) = digits.load()
    return x_tr, y_tr, x_va, y_va


def cnn_build(width: int, hidden: int) -> Any:
    """Two 3x3 convolutions (``width``, ``2 * width`` channels), a 2x2 max-pool, a dense layer, a linear head."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 16, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def cnn_digits(p: Params) -> tuple[tuple[float, ...], list[Constraint]]:
    """(validation error, log10 parameters), constraint ``memory_mb <= CNN_MEMORY_MB``; seeded, one thread."""
    import torch

    torch.set_num_threads(1)
    x_tr, y_tr, x_va, y_va = cnn_data()
    width, hidden = int(p["width"]), int(p["hidden"])
    torch.manual_seed(0)
    model = cnn_build(width, hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    train_minibatches(model, optimizer, x_tr, y_tr, epochs=CNN_EPOCHS, batch=CNN_BATCH)
    with torch.no_grad():
        logits = model(x_va)
    correct = int((logits.argmax(dim=1) == y_va).sum()) if bool(torch.isfinite(logits).all()) else 0
    error = 1.0 - correct / int(y_va.shape[0])
    n_params = sum(int(t.numel()) for t in model.parameters())
    return (error, math.log10(n_params)), [("memory_mb", cnn_memory_mb(width, hidden), CNN_MEMORY_MB)]
