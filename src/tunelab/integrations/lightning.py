"""PyTorch Lightning: ``TunelabCallback`` reports a Trainer's logged metrics to a tunelab trial.

One line added to an existing Lightning run::

    cb = TunelabCallback(trial, monitor="val_loss")
    trainer = pl.Trainer(max_epochs=20, callbacks=[cb])
    trainer.fit(model, datamodule)
    return trainer.callback_metrics["val_loss"].item()   # a pruned trial ends PRUNED anyway

Every numeric metric of ``trainer.callback_metrics`` becomes a point of the trial's curves after
each validation (not the sanity check); the study's pruner is asked at the validations it can stop
the trial at (validations less than half a second apart are reported together, at those and at
least every half second) and, when it says stop, the Trainer stops cleanly (``trainer.should_stop``)
and the trial is marked pruned. Under DDP only
global rank 0 talks to the storage, and its answers (stop, live changes, a checkpoint's folder)
are broadcast to every rank (``trainer.strategy.broadcast``), so all ranks stop at the same step.

DDP: with ``strategy="ddp_spawn"`` the objective is unchanged: the callback is pickled into the
spawned ranks without its trial, and rank 0 relays to the trial left in the objective's process
over a local connection (127.0.0.1, an authentication key). With launches that run the script on
every rank (``strategy="ddp"``, ``torchrun``), give the trial on global rank 0 only and ``None``
on the others, which must train with the same hyperparameters.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError
from tunelab.integrations._common import as_number, check_monitor, check_trial, prune_now
from tunelab.integrations._held import HeldReports, as_logged
from tunelab.integrations._live import StepHook
from tunelab.study import Trial
from tunelab.torch.live import OPTIMIZER_LIVE, apply_to_optimizer, optimizer_live_names

__all__ = ["CHECKPOINT_FILE", "TunelabCallback"]

#: The file name of the Lightning checkpoint inside each ``trial.checkpoint(step)`` folder.
CHECKPOINT_FILE = "lightning.ckpt"
_STEPS = ("epoch", "global_step")


class _Port:
    """What global rank 0 asks of the trial; run where the trial lives (in-process or relayed)."""

    def __init__(self, trial: Trial, monitor: str) -> None:
        self.trial = trial
        self.trial.gather_reports = True  # gathered only while the storage lags
        self.monitor = monitor
        self.pruned = False
        self.held: HeldReports[Mapping[str, float]] = HeldReports(
            trial, monitor, f"TunelabCallback(monitor={monitor!r})", "Lightning", as_logged)
        self._writing: AbstractContextManager[Path] | None = None

    def declare(self, names: list[str]) -> None:
        self.trial.declare_live(names)

    def report(self, step: int, logged: dict[str, float]) -> bool:
        """Report the logged metrics at ``step``, the monitored one last (the pruner decides on it, unless it
        names its own ``metric``); True when the pruner stops the trial. Validations that come less than half
        a second apart are reported together, from the pruner's next decision step on (:class:`HeldReports`)."""
        self._check_logged(logged)
        if self.held.add(step, logged):
            self.pruned = True
        return self.pruned

    def hold(self, step: int, logged: dict[str, float]) -> None:
        """Hold the logged metrics of a step :meth:`HeldReports.judged_at` said was not to be judged."""
        self._check_logged(logged)
        self.held.hold(step, logged)

    def _check_logged(self, logged: Mapping[str, float]) -> None:
        if self.monitor not in logged:
            raise ConfigError(
                f"TunelabCallback(monitor={self.monitor!r}) is not among the metrics logged at validation end, "
                f"{sorted(logged)}: log it with self.log({self.monitor!r}, ...) in validation_step or pass one "
                "of those"
            )

    def restart(self) -> None:
        """A new fit: what is held is reported, and its first validation is reported at once."""
        self.held.restart()

    def sync(self, step: float, optimizer_step: int, force: bool = False) -> tuple[dict[str, ParamValue], bool]:
        """The live changes to apply now, and whether a stop was requested (then the trial is pruned)."""
        changes = self.trial.sync_live(step, force=force, optimizer_step=optimizer_step)
        if self.trial.stop_requested and prune_now(self.trial):
            self.pruned = True
        return changes, self.pruned

    def branch_changes(self) -> dict[str, ParamValue]:
        """The values a branch (``tunelab rollback``) changed from its parent's checkpoint, or {}."""
        branch = self.trial.branch
        return {} if branch is None else dict(branch.changed)

    def flush(self) -> None:
        self.trial.flush()  # the reports gathered for the storage: written once training ends

    def checkpoint_begin(self, step: int) -> str:
        self.held.report_held()  # the checkpoint's step is on the stored curve before the checkpoint is
        self._writing = self.trial.checkpoint(step)
        return str(self._writing.__enter__())

    def checkpoint_end(self, error: str | None) -> None:
        writing, self._writing = self._writing, None
        if writing is None:
            return
        if error is None:
            writing.__exit__(None, None, None)
        else:
            failure = RuntimeError(error)
            writing.__exit__(RuntimeError, failure, None)  # the folder is discarded


class _Relay:
    """A ``_Port`` on the far side of a local connection (a spawned rank 0 calling the objective's process)."""

    def __init__(self, address: Any, key: bytes) -> None:
        self._conn: Connection = Client(address, authkey=key)

    def call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        ok, result = self._conn.recv()
        if not ok:
            raise result
        return result

    def close(self) -> None:
        try:
            self.call("close")
        except (EOFError, OSError):
            pass  # the objective's process went away: nothing left to close there
        finally:
            self._conn.close()


def _serve(listener: Listener, port: _Port, done: Callable[[], None]) -> None:
    """Answer one connection's calls on ``port`` until it closes (a thread of the objective's process)."""
    try:
        with listener.accept() as conn:
            while True:
                try:
                    method, args = conn.recv()
                except (EOFError, OSError):
                    return
                if method == "close":  # rank 0's fit is over: a later launch starts a new relay
                    done()
                    done = _nothing
                    conn.send((True, None))
                    return
                try:
                    reply: tuple[bool, Any] = (True, getattr(port, method)(*args))
                except Exception as e:  # noqa: BLE001 - sent to rank 0, which raises it
                    reply = (False, e)
                try:
                    conn.send(reply)
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    conn.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
    finally:
        listener.close()
        port.checkpoint_end("rank 0 went away while writing a checkpoint")
        done()


def _nothing() -> None:
    pass


class TunelabCallback(pl.Callback):  # type: ignore[misc]
    """Report a Lightning Trainer's metrics to ``trial``; prune, checkpoint and apply live changes.

    Args:
        trial: the trial given to the objective; ``None`` on the ranks other than global rank 0
            when every rank runs the script (``strategy="ddp"``, ``torchrun``).
        monitor: the metric the study's pruner decides on (unless the pruner names its own with
            ``metric=``), one the run logs (``self.log("val_loss", ...)`` in ``validation_step``); a
            ConfigError at the first report names the logged metrics when it is missing.
        step: the curve's step. ``"epoch"``: the epochs trained (1 after the first), reported at
            the end of each epoch that validated, with that epoch's training metrics (Lightning
            computes ``on_epoch`` training metrics after the validation). ``"global_step"``: the
            optimizer steps so far, reported at each validation end (use it when validating
            within epochs, ``val_check_interval``).
        checkpoint: save ``trainer.save_checkpoint`` into ``trial.checkpoint(step)`` after each
            report (file :data:`CHECKPOINT_FILE`); resume with ``fit(ckpt_path=...)``.
        live: apply changes of ``lr``, ``weight_decay`` and ``momentum`` asked with ``tunelab set``
            to every optimizer just before the next optimizer step (declared with
            ``trial.declare_live`` at fit start). In one process the in-memory storage says when a
            request is written, and on other storages a watcher thread reads the trial's requests
            every ``trial.live_poll_seconds`` (0: the loop reads before every step), so training
            pays nothing per step until a change comes; under DDP every rank looks before each
            step, together. A list of names adds those you apply yourself
            (``trial.live(name)``); ``False``: no live changes.

    The trial ends PRUNED with its curve when the pruner stops it, whether the objective then
    raises :class:`tunelab.TrialPruned` (e.g. ``if cb.pruned``) or returns a metric.
    """

    def __init__(
        self,
        trial: Trial | None,
        monitor: str = "val_loss",
        *,
        step: str = "epoch",
        checkpoint: bool = False,
        live: bool | Sequence[str] = True,
    ) -> None:
        self._trial = None if trial is None else check_trial(trial, "TunelabCallback")
        self.monitor = check_monitor(monitor)
        if step not in _STEPS:
            raise ConfigError(f"TunelabCallback(step=...) must be 'epoch' or 'global_step', got {step!r}")
        if not isinstance(checkpoint, bool):
            raise ConfigError(f"TunelabCallback(checkpoint=...) must be True or False, got {checkpoint!r}")
        self.step = step
        self.checkpoint = checkpoint
        self._extra_live = _check_live(live)
        self.live = live is not False
        self._port = None if self._trial is None else _Port(self._trial, self.monitor)
        self._relay_address: tuple[Any, bytes] | None = None
        self._relay: _Relay | None = None
        self._hook: StepHook | None = None
        self._single = False
        self._serving = False
        self._lock = threading.Lock()
        self._rank_zero = True
        self._pruned = False
        self._last_step = -1
        self._pending = False
        self._unread: int | None = None  # an epoch whose metrics are read at the next epoch's start
        self.metrics: dict[str, float] = {}
        """The metrics of the last report, as this process saw them (each rank has its own copy)."""

    # -- the answers an objective reads ---------------------------------------------------
    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped this run (the trial ends PRUNED): ``if cb.pruned: raise TrialPruned()``."""
        return self._pruned or (self._port is not None and self._port.pruned)

    # -- pickling into spawned ranks (ddp_spawn) --------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The callback without its trial: a spawned rank 0 relays to it over a local connection."""
        state = dict(self.__dict__)
        if self._port is not None:
            state["_relay_address"] = self._start_relay()
        for key in ("_trial", "_port", "_relay", "_lock", "_hook"):
            state[key] = None
        state["_serving"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _start_relay(self) -> tuple[Any, bytes]:
        """One listening relay for this callback's trial (started once per launch of the ranks)."""
        assert self._port is not None
        with self._lock:
            if not self._serving or self._relay_address is None:
                key = secrets.token_bytes(32)
                listener = Listener(("127.0.0.1", 0), authkey=key)
                self._relay_address = (listener.address, key)
                self._serving = True
                threading.Thread(target=_serve, args=(listener, self._port, self._relay_done),
                                 name="tunelab-lightning-relay", daemon=True).start()
            return self._relay_address

    def _relay_done(self) -> None:
        with self._lock:
            self._serving = False

    def _call(self, method: str, *args: Any) -> Any:
        """Call the trial's port on global rank 0: in this process, or relayed to the objective's."""
        if self._port is not None:
            return getattr(self._port, method)(*args)
        if self._relay is None:
            if self._relay_address is None:
                raise ConfigError(
                    "TunelabCallback on global rank 0 needs the trial: TunelabCallback(trial, ...) there "
                    "(None is for the other ranks when every rank runs the script)"
                )
            self._relay = _Relay(*self._relay_address)
        return self._relay.call(method, *args)

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._rank_zero = bool(trainer.is_global_zero)
        self._single = self._port is not None and trainer.world_size == 1  # one process: no broadcasts needed
        self._pruned = False
        self._last_step = -1
        self._pending = False
        self._unread = None
        if self._port is not None:
            self._port.pruned = False
        if self._rank_zero and (self._port is not None or self._relay_address is not None):
            self._call("restart")  # what an earlier fit held is reported; this fit's first validation at once

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.live:
            return
        names = _live_names(trainer.optimizers) + self._extra_live
        self._decide(trainer, lambda: self._call("declare", sorted(set(names))))
        # One process: the storage says when a request comes (in memory) or a watcher thread reads them, and
        # the loop pays nothing per step until one comes. Several: every rank looks before each step, together
        # (rank 0 reads, then broadcasts).
        trial = self._port.trial if self._single and self._port is not None else None
        every_step = trial is None or trial.live_poll_seconds == 0
        self._hook = StepHook(trial, lambda: self._sync_live(trainer, force=not every_step), every_step=every_step)
        self._hook.start(trainer.optimizers)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A branch resumed from its parent's checkpoint (``fit(ckpt_path=trial.resume_from...)``): Lightning has
        # just loaded the optimizers' state, with the parent's lr; the branch's changed values go on top of it.
        if trainer.ckpt_path is None:
            return
        changes = self._decide(trainer, lambda: self._call("branch_changes"))
        if changes:
            _apply(trainer, changes)

    def _sync_live(self, trainer: pl.Trainer, *, force: bool) -> None:
        """Apply the live changes asked for, just before an optimizer step (on every rank)."""
        if self.step == "global_step":
            at = float(trainer.global_step)
        else:
            at = _fractional_epoch(trainer, trainer.fit_loop.epoch_loop.batch_idx)
        changes, stop = self._decide(trainer, lambda: self._call("sync", at, int(trainer.global_step), force))
        if changes:
            _apply(trainer, changes)
        if stop:
            self._stop(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.step == "epoch":
            # Reported at the epoch's end, with the epoch's training metrics. Only a fit's epochs end: the sanity
            # check's flag is taken back when it ends, and another stage's (validate) by the next setup.
            self._pending = True
            return
        state = trainer.state  # ``trainer.sanity_checking`` and ``fn != "fit"``, without LightningEnum's __eq__
        if _is(state.stage, RunningStage.SANITY_CHECKING) or not _is(state.fn, TrainerFn.FITTING):
            return
        self._report(trainer, int(trainer.global_step))

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = False  # the sanity check's validation is not reported

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._pending:
            return
        self._pending = False
        step = trainer.current_epoch + 1
        port = self._port
        if self._single and port is not None and not self.checkpoint and step > self._last_step \
                and not port.held.judged_at(step):
            # Nothing to judge at this epoch: its metrics are read after Lightning has computed the epoch's
            # training aggregates itself (at the next epoch's start, or the fit's end); read here, the first
            # read would compute them inside this hook.
            self._last_step = self._unread = step
            return
        self._report(trainer, step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._read_unread(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._read_unread(trainer)

    def _read_unread(self, trainer: pl.Trainer) -> None:
        """Hold the metrics of the epoch whose reading was put off (:meth:`on_train_epoch_end`)."""
        if self._unread is None or self._port is None:
            return
        step, self._unread = self._unread, None
        self.metrics = _numbers(trainer.callback_metrics)
        self._port.hold(step, self.metrics)

    def _report(self, trainer: pl.Trainer, step: int) -> None:
        """Report the logged metrics at ``step``, stop the run when the pruner says so, checkpoint."""
        if step <= self._last_step:
            return  # validated again without training in between
        self._last_step = step
        self.metrics = _numbers(trainer.callback_metrics)
        if self._single and self._port is not None:  # one process, the trial in it: asked directly
            stop = self._port.report(step, self.metrics)  # (which keeps the dict as it is)
        else:
            logged = dict(self.metrics)
            stop = self._decide(trainer, lambda: self._call("report", step, logged))
        if stop:
            self._stop(trainer)
        if self.checkpoint:
            self._save(trainer, step)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        try:
            self._read_unread(trainer)  # a fit that ended by an exception between an epoch's end and the next
        finally:
            self._teardown()

    def _teardown(self) -> None:
        if self._hook is not None:
            self._hook.close()
            self._hook = None
        if self._rank_zero and (self._port is not None or self._relay is not None):
            self._call("flush")
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    # -- helpers ------------------------------------------------------------------------------
    def _stop(self, trainer: pl.Trainer) -> None:
        self._pruned = True
        trainer.should_stop = True

    def _decide(self, trainer: pl.Trainer, ask: Callable[[], Any]) -> Any:
        """``ask()`` on global rank 0, its answer broadcast to every rank; an error there is raised on every
        rank (the others would wait for the answer forever)."""
        if self._single:  # one process, the trial in it: nothing to broadcast
            return ask()
        answer: Any = None
        error: BaseException | None = None
        if self._rank_zero:
            try:
                answer = ask()
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks heard of it
                error = e
        message = None if error is None else f"{type(error).__name__}: {error}"
        answer, message = trainer.strategy.broadcast((answer, message), src=0)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"TunelabCallback on global rank 0 failed: {message}")
        return answer

    def _save(self, trainer: pl.Trainer, step: int) -> None:
        """``trainer.save_checkpoint`` into ``trial.checkpoint(step)``; every rank takes part (a barrier)."""
        folder = self._decide(trainer, lambda: self._call("checkpoint_begin", step))
        error: str | None = None
        try:
            trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE, weights_only=False)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            if self._rank_zero:
                self._call("checkpoint_end", error)


def _is(value: Any, member: Any) -> bool:
    """``value == member`` for a Lightning enum ``member``: by identity when ``value`` is one of its
    enum's members (LightningEnum's ``__eq__`` is Python code, run at every validation)."""
    return value is member or (type(value) is not type(member) and value == member)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """:func:`numeric_metrics` of Lightning's ``callback_metrics``, with its usual values, one-element
    float tensors, read directly."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if type(value) is torch.Tensor and value.is_floating_point() and type(key) is str and key:
            try:
                out[key] = value.item()  # one element (the usual case): no size check first
                continue
            except RuntimeError:
                pass  # several elements: as_number leaves it out
        number = as_number(value)
        if number is not None and isinstance(key, str) and key:
            out[key] = number
    return out


def _check_live(live: object) -> list[str]:
    """The names given to ``live=`` besides the optimizer's."""
    if isinstance(live, bool):
        return []
    if isinstance(live, str) or not isinstance(live, Sequence) or not all(isinstance(n, str) and n for n in live):
        raise ConfigError(
            f"TunelabCallback(live=...) must be True, False or a list of hyperparameter names, got {live!r}"
        )
    return list(live)


def _live_names(optimizers: Sequence[torch.optim.Optimizer]) -> list[str]:
    """The optimizer hyperparameters every optimizer of the run can take."""
    if not optimizers:
        return []
    common = set(OPTIMIZER_LIVE)
    for optimizer in optimizers:
        common &= set(optimizer_live_names(optimizer))
    return [n for n in OPTIMIZER_LIVE if n in common]


def _fractional_epoch(trainer: pl.Trainer, batch_idx: int) -> float:
    """The epoch about to be trained at ``batch_idx`` on the curve's epoch scale (epochs done, fractional)."""
    per_epoch = trainer.num_training_batches
    done = batch_idx / per_epoch if isinstance(per_epoch, int) and per_epoch > 0 else 0.0
    return float(trainer.current_epoch) + done


def _apply(trainer: pl.Trainer, changes: Mapping[str, ParamValue]) -> None:
    """Set live changes on every optimizer of the run (its schedule, any torch scheduler, goes on
    scaled to the new lr: :func:`~tunelab.torch.live.apply_to_optimizer`)."""
    schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
    for optimizer in trainer.optimizers:
        scheduler = next((s for s in schedulers if getattr(s, "optimizer", None) is optimizer), None)
        apply_to_optimizer(optimizer, scheduler, changes)
