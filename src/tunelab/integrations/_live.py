"""Live changes in a framework's loop at no cost per step: :class:`StepHook` runs a callback's
"look for live changes" on the training thread just before an optimizer step, either at every
step (several processes, which must look together; or ``trial.live_poll_seconds == 0``), or at
the first step after the trial's stored requests changed (one process: the loop itself then pays
nothing until something is asked of it). A storage that sees every write (in memory) says when
they change (:meth:`Trial.watch_live_state`); on others the process's background thread polls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tunelab.study import Trial
from tunelab.study.background import Chore, call_later
from tunelab.torch.hypergradient import HypergradientOptimizer

logger = logging.getLogger("tunelab")


class StepHook:
    """Runs ``action()`` just before an optimizer step of ``optimizers``.

    Args:
        trial: the trial whose live requests a watcher thread polls (every
            ``trial.live_poll_seconds``); None with ``every_step`` (the ranks other than 0).
        action: what to run on the training thread (read and apply the changes; it must read the
            storage itself, ``force``-d, since the watcher only says that something changed).
        every_step: run ``action`` before every step of the first optimizer, with no watcher.
    """

    def __init__(self, trial: Trial | None, action: Callable[[], None], *, every_step: bool) -> None:
        if trial is None and not every_step:
            raise ValueError("StepHook without a trial runs at every step")
        self._trial = trial
        self._action = action
        self.every_step = every_step
        self._optimizers: list[torch.optim.Optimizer] = []
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._closed = True
        self._chore: Chore | None = None
        self._unwatch: Callable[[], None] | None = None
        self._seen = (False, 0)
        self._generation = 0  # a look left over from an earlier start stops there

    def start(self, optimizers: Sequence[Any]) -> None:
        """Hook ``optimizers`` (torch optimizers, or wrappers with an ``.optimizer``) and start watching."""
        if not self._closed:  # started before (a hook closed, or never started, has nothing to undo)
            self.close()
        self._optimizers = [_torch_optimizer(o) for o in optimizers]
        if not self._optimizers:
            return
        self._closed = False
        if self.every_step:
            self._handles = [self._optimizers[0].register_step_pre_hook(self._fire)]
            return
        self._seen = (False, 0)
        assert self._trial is not None
        self._trial.watch_stop_requests(True)  # a stop is read here and reaches the loop at its next step
        self._generation += 1
        unwatch = self._trial.watch_live_state(self._arm)  # the storage says when a request is written
        if unwatch is not None:
            with self._lock:
                self._unwatch = unwatch
            return
        generation = self._generation
        self._chore = call_later(0.0, lambda: self._look(generation))  # on the process's background thread

    def close(self) -> None:
        """Unhook and stop watching (at the end of training)."""
        if self._trial is not None and not self.every_step:
            self._trial.watch_stop_requests(False)
        with self._lock:
            self._closed = True
            chore, self._chore = self._chore, None
            handles, self._handles = self._handles, []
            unwatch, self._unwatch = self._unwatch, None
        if chore is not None:
            chore.cancel()
        if unwatch is not None:
            unwatch()
        for handle in handles:
            handle.remove()

    def _look(self, generation: int) -> None:
        """One read of the trial's requests (background thread); hook the optimizers when they changed."""
        assert self._trial is not None
        trial = self._trial
        try:
            state = trial.stored_live_state()
        except Exception as e:  # noqa: BLE001 - a storage hiccup: look again at the next poll
            logger.warning("tunelab: reading trial %d's live requests failed (%s); trying again", trial.number, e)
            state = self._seen
        if state != self._seen:
            self._seen = state
            self._arm()
        with self._lock:
            if not self._closed and generation == self._generation:
                self._chore = call_later(max(trial.live_poll_seconds, 0.05), lambda: self._look(generation))

    def _arm(self) -> None:
        with self._lock:
            if self._handles or self._closed:
                return
            self._handles = [o.register_step_pre_hook(self._fire) for o in self._optimizers]

    def _fire(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self.every_step:
            with self._lock:
                handles, self._handles = self._handles, []
            for handle in handles:
                handle.remove()
        self._action()


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a wrapper (accelerate's ``AcceleratedOptimizer``, Lightning's
    ``LightningOptimizer``): the one whose ``step`` runs the hooks. A :class:`HypergradientOptimizer` runs its
    own, before it sets the effective rate on the param groups: it is hooked itself, not the optimizer it wraps
    (whose hooks fire while the groups hold that rate, which would overwrite a new lr)."""
    inner = optimizer
    while not isinstance(inner, HypergradientOptimizer) and getattr(inner, "optimizer", None) is not None:
        # a wrapper (some subclass Optimizer without its state)
        inner = inner.optimizer
    if not isinstance(inner, torch.optim.Optimizer):
        raise TypeError(f"not a torch optimizer: {optimizer!r}")
    return inner
