"""Keras 3: :class:`TunelabCallback` reports ``model.fit``'s epoch logs and stops a pruned trial.

Add it to ``model.fit(callbacks=[...])``; any backend works (TensorFlow, JAX, PyTorch; with no
``KERAS_BACKEND`` set and no TensorFlow installed, importing this module chooses PyTorch)::

    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=20,
                        callbacks=[TunelabCallback(trial, monitor="val_loss")])
    return min(history.history["val_loss"])
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any

from tunelab.errors import ConfigError
from tunelab.integrations._common import check_monitor, check_trial, numeric_metrics, require
from tunelab.integrations._held import HeldReports, as_logged


def _default_backend() -> None:
    """Keras defaults to TensorFlow and fails to import without it: where the user chose no backend
    and only PyTorch is installed, choose PyTorch (set ``KERAS_BACKEND`` yourself to choose)."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    if importlib.util.find_spec("tensorflow") is None and importlib.util.find_spec("torch") is not None:
        os.environ["KERAS_BACKEND"] = "torch"


_default_backend()
keras: Any = require("keras", "keras", "tunelab.integrations.keras")


class TunelabCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Reports Keras's numeric epoch logs (``loss``, ``val_loss``, ``accuracy``...) to the trial at
    each epoch's end (step = the epoch, counted from 0 as Keras does), then asks the study's pruner;
    when it says stop, sets ``model.stop_training`` (``fit`` returns after this epoch) and marks the
    trial: it ends PRUNED with its curves whether the objective then raises
    :class:`tunelab.TrialPruned` or returns.

    Args:
        trial: the :class:`tunelab.Trial` given to the objective.
        monitor: a metric Keras logs at each epoch's end; its absence is a ConfigError at the first
            epoch's end that names the logged metrics (``val_*`` ones need ``validation_data`` or
            ``validation_split``, at every epoch: ``validation_freq=1``). The study's pruner decides on
            it, as with the Lightning callback, unless the pruner is set to its own metric (``metric=``,
            which Keras must log: a ConfigError otherwise).
    """

    def __init__(self, trial: Any, monitor: str = "val_loss") -> None:
        super().__init__()
        self.trial = check_trial(trial, "TunelabCallback")
        self.monitor = check_monitor(monitor)
        self.pruned_epoch: int | None = None
        self.trial.gather_reports = True  # gathered only while the storage lags
        # epochs less than half a second apart are reported together, from the pruner's next decision on
        self._held: HeldReports[Mapping[str, float]] = HeldReports(
            self.trial, self.monitor, f"TunelabCallback(monitor={self.monitor!r})", "Keras", as_logged)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._held.restart()  # a model fitted again: its first epoch is reported at once

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        metrics = numeric_metrics(logs)
        self._check_logged(metrics)
        if self._held.add(int(epoch), metrics):
            self.pruned_epoch = int(epoch)
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.trial.flush()  # the epochs held and the reports gathered for the storage: written once training ends

    def _check_logged(self, metrics: Mapping[str, float]) -> None:
        if self.monitor in metrics:
            return
        hint = ("; validation metrics need model.fit(validation_data=...) or validation_split"
                if self.monitor.startswith("val_") else "")
        raise ConfigError(
            f"TunelabCallback(monitor={self.monitor!r}): Keras logged only {sorted(metrics)} at the epoch's end; "
            f"pass one of them as monitor{hint}"
        )
