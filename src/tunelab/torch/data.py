"""Training and validation data: what the Trainer accepts (:data:`Data`), checked, loaded once
per process, moved to the device once and cut into batches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, Union

import torch

from tunelab.errors import ConfigError

Tensors = tuple[torch.Tensor, torch.Tensor]
Data = Union[Tensors, "torch.utils.data.DataLoader[Any]"]
"""Training or validation data: ``(inputs, targets)`` tensors (tunelab batches them, with the
``batch_size`` hyperparameter) or a DataLoader (its own batches)."""
LoadData = Callable[[], tuple[Data, Data]]
"""``load() -> (train, val)``: the Trainer's ``data=``."""

_LOADED: dict[int, tuple[LoadData, tuple[Data, Data]]] = {}
_DEVICE_DATA: dict[tuple[int, str], tuple[torch.Tensor, Tensors]] = {}


def check_data(name: str, data: object) -> None:
    """Raise ConfigError unless ``data`` is ``(inputs, targets)`` tensors of as many non-zero rows, or a DataLoader."""
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise ConfigError(f"{name} data must be (inputs, targets) tensors or a DataLoader")
        if data[0].shape[0] != data[1].shape[0] or data[0].shape[0] == 0:
            raise ConfigError(
                f"{name} data: inputs and targets must have the same, non-zero number of rows, got "
                f"{tuple(data[0].shape)} and {tuple(data[1].shape)}"
            )
    elif not isinstance(data, torch.utils.data.DataLoader):
        raise ConfigError(f"{name} data must be (inputs, targets) tensors or a DataLoader, got {type(data).__name__}")
    else:
        try:
            n = len(data)
        except TypeError:  # an IterableDataset without __len__
            if name == "train":
                raise ConfigError(
                    "train data: a DataLoader over a dataset without a length (an IterableDataset without "
                    "__len__) has no number of steps per epoch, which the schedule, the epochs and resuming "
                    "need: give the dataset a __len__, or pass (inputs, targets) tensors"
                ) from None
            return
        if n == 0:
            raise ConfigError(
                f"{name} data: the DataLoader yields no batch (an empty dataset, or drop_last=True with fewer "
                f"rows than batch_size={data.batch_size}): give it data, or a smaller batch_size"
            )


def load_once(load: LoadData) -> tuple[Data, Data]:
    """``load()``, checked, called once per process for each function."""
    key = id(load)
    cached = _LOADED.get(key)
    if cached is None or cached[0] is not load:  # ids are reused once a function is freed
        loaded = load()
        if not (isinstance(loaded, tuple) and len(loaded) == 2):
            raise ConfigError(f"Trainer(data=...) must return (train, val), got {type(loaded).__name__}")
        check_data("train", loaded[0])
        check_data("val", loaded[1])
        cached = _LOADED[key] = (load, loaded)
    return cached[1]


def batches(
    data: Data, batch_size: int, device: torch.device, generator: torch.Generator | None = None, *, start: int = 0,
    epoch_rng: torch.Tensor | None = None,
) -> Iterator[Tensors]:
    """One epoch of ``(inputs, targets)`` batches on ``device``, shuffled by ``generator`` (None:
    in order), from batch number ``start`` on (the epoch's order is drawn whole first, so a
    resumed epoch goes on in the same order). A DataLoader yields its own batches; it shuffles with
    a seed drawn from torch's global generator when its iterator is made, so a resumed epoch
    (``start`` > 0) makes it under ``epoch_rng``, that generator's state when the epoch began, skips
    the batches done, and then puts back the global state it found (the one the checkpoint restored)."""
    if isinstance(data, tuple):
        x, y = on_device(data, device)
        n = int(x.shape[0])
        order = torch.randperm(n, generator=generator).to(device) if generator is not None else None
        for first in range(start * batch_size, n, batch_size):
            idx = order[first:first + batch_size] if order is not None else slice(first, first + batch_size)
            yield x[idx], y[idx]
    else:
        if start and epoch_rng is not None:
            resumed = torch.get_rng_state()
            torch.set_rng_state(epoch_rng)
            it: Iterator[Any] = iter(data)
            for _ in itertools.islice(it, start):
                pass
            torch.set_rng_state(resumed)
        else:
            it = itertools.islice(data, start, None)
        for batch in it:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise ConfigError(
                    f"a DataLoader's batch must be (inputs, targets) (a tuple or list, as TensorDataset gives), "
                    f"got a {type(batch).__name__}: make the dataset's items (input, target) pairs"
                )
            xb, yb = batch[0], batch[1]
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def steps_per_epoch(data: Data, batch_size: int) -> int:
    """Batches (optimiser steps) in one pass over ``data``."""
    if isinstance(data, tuple):
        return max(1, math.ceil(int(data[0].shape[0]) / batch_size))
    return max(1, len(data))


def on_device(data: Tensors, device: torch.device) -> Tensors:
    """``data`` on ``device``, copied there once per process (and kept while the tensors live)."""
    if data[0].device == device and data[1].device == device:
        return data
    key = (id(data[0]), str(device))
    cached = _DEVICE_DATA.get(key)
    if cached is None or cached[0] is not data[0]:  # ids are reused once a tensor is freed
        cached = _DEVICE_DATA[key] = (data[0], (data[0].to(device), data[1].to(device)))
    return cached[1]
