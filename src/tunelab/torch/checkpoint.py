"""PyTorch state on disk: :func:`save_torch` / :func:`load_torch` (state dicts and every RNG
state in one file) and the format of :meth:`Trainer.fit <tunelab.torch.Trainer.fit>`'s own
checkpoints (``torch.pt`` beside ``tunelab-loop.pt``).

torch is imported only when these functions run: this module is what ``tunelab`` and
``tunelab.checkpoints`` re-export, and ``import tunelab`` never loads PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunelab.checkpoints import Checkpoint
from tunelab.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from tunelab.study import Trial

TORCH_FILE = "torch.pt"
"""The file :func:`save_torch` writes into a folder (and :func:`load_torch` reads from one)."""
LOOP_FILE = "tunelab-loop.pt"
"""Beside ``torch.pt`` in a checkpoint of :meth:`Trainer.fit`: where the loop stands (epoch, batch,
shuffling state, evaluations, the reporter's history and best), so that resuming is exact."""
_FORMAT = "tunelab-torch"
_LOOP_VERSION = 1


class Stateful(Protocol):
    """Anything with ``state_dict()`` and ``load_state_dict()``: a scheduler, a GradScaler, ..."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any, /) -> Any: ...


# -- any PyTorch state -----------------------------------------------------------------------
def save_torch(
    path: str | os.PathLike[str],
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Stateful | None = None,
    extra: Any = None,
) -> Path:
    """Save state dicts and every RNG state (torch CPU, CUDA when in use, numpy's global
    generator, Python's ``random``) in one file; return the file.

    ``path`` is a file, or a folder (such as the one ``trial.checkpoint(step)`` yields) to
    write ``torch.pt`` into. The file is written atomically. ``extra`` holds anything else to
    resume (the epoch, the best loss, another model's ``state_dict()``): tensors, numbers,
    strings, None, lists, tuples and dicts of them, which :func:`load_torch` reads back
    without unpickling arbitrary code.

    In an objective: ``with trial.checkpoint(epoch) as folder: save_torch(folder, model, optimizer,
    scheduler, extra={"epoch": epoch})``.

    Examples:
        >>> import tempfile, torch
        >>> from tunelab.torch import load_torch, save_torch
        >>> model = torch.nn.Linear(3, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = save_torch(folder.name, model, optimizer, extra={"epoch": 7})
        >>> path.name
        'torch.pt'
        >>> copy = torch.nn.Linear(3, 1)
        >>> load_torch(folder.name, copy, torch.optim.SGD(copy.parameters(), lr=0.1))
        {'epoch': 7}
        >>> torch.equal(copy.weight, model.weight)
        True
        >>> folder.cleanup()
    """
    import torch

    target = Path(path)
    if target.is_dir():
        target = target / TORCH_FILE
    payload = {
        "format": _FORMAT,
        "version": 1,
        "model": None if model is None else model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "extra": extra,
        "rng": _rng_state(),
    }
    _check_safe({"scheduler": payload["scheduler"], "extra": extra})
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return target


def load_torch(
    path: str | os.PathLike[str],
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Stateful | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
) -> Any:
    """Load what :func:`save_torch` saved into ``model``, ``optimizer`` and ``scheduler`` (those
    given), restore the RNG states (unless ``restore_rng=False``) and return ``extra``.

    ``path`` is the file or the folder holding ``torch.pt`` (e.g. ``trial.latest_checkpoint().path``
    or ``study.checkpoint_path(number)``). Tensors load onto ``map_location`` first (CPU by
    default; ``load_state_dict`` then copies them onto the model's device). Loading uses
    ``torch.load(weights_only=True)``: no code in the file runs.
    """
    import torch

    source = Path(path)
    if source.is_dir():
        source = source / TORCH_FILE
    payload = torch.load(source, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ConfigError(f"{str(source)!r} was not written by tunelab.save_torch")
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if payload[name] is None:
            raise ConfigError(f"load_torch({name}=...): {str(source)!r} holds no {name} state; save it with "
                              f"save_torch(..., {name}=...) or leave {name} out")
        obj.load_state_dict(payload[name])
    if restore_rng:
        _set_rng_state(payload["rng"])
    return payload["extra"]


def _check_safe(parts: Mapping[str, Any]) -> None:
    """Raise ConfigError now if ``load_torch`` could not read ``parts`` back with weights_only."""
    import pickle

    import torch

    buffer = io.BytesIO()
    torch.save(dict(parts), buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        reason = f"it holds a {m.group(1)}" if m else "it holds an object that torch refuses"
        raise ConfigError(
            "save_torch(extra=..., scheduler=...) must be readable by torch.load(weights_only=True), "
            f"but {reason}; keep to tensors, numbers, strings, None, lists, tuples and dicts, "
            "e.g. float(x) for a numpy number, a tensor for a numpy array"
        ) from None


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy arrays are not readable with weights_only: its key becomes a tensor.
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"], "gauss": n["gauss"],
    })
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for device, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, device)


# -- Trainer.fit's checkpoints ---------------------------------------------------------------
def save_fit_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Stateful | None,
    step: int,
    loop: Mapping[str, Any],
) -> None:
    """Write one checkpoint of :meth:`Trainer.fit` into ``folder``: ``torch.pt`` (model, optimizer,
    schedule, RNG states, the curve's ``step`` and the ``optimizer_step``) and ``tunelab-loop.pt``
    (the rest of ``loop``, a :meth:`LoopState.state_dict <tunelab.torch.loop.LoopState.state_dict>`)."""
    position = dict(loop)
    optimizer_step = position.pop("optimizer_step")
    save_torch(folder, model, optimizer, scheduler, extra={"step": step, "optimizer_step": optimizer_step})
    save_torch(folder / LOOP_FILE, extra={"version": _LOOP_VERSION, **position})


def load_fit_checkpoint(
    source: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Stateful | None,
    steps_per_epoch: int,
) -> dict[str, Any]:
    """Load a checkpoint of :meth:`Trainer.fit` (its folder, or a file in it) into the pieces,
    restoring the RNG states; return the loop's state, as :func:`save_fit_checkpoint` was given it."""
    folder = source if source.is_dir() else source.parent
    try:
        loop = load_torch(folder / LOOP_FILE, restore_rng=False) if (folder / LOOP_FILE).is_file() else None
        extra = load_torch(folder, model, optimizer, scheduler)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(
            f"fit(resume=...): cannot load {str(folder)!r} into this trainer's model and optimizer "
            f"({type(e).__name__}: {e}); resume with the parameters the checkpoint was written with"
        ) from None
    if not isinstance(loop, dict) or loop.get("version") != _LOOP_VERSION or not isinstance(extra, dict):
        raise ConfigError(
            f"fit(resume=...): {str(source)!r} was not written by Trainer.fit(checkpoint_every=...), so it "
            "lacks the loop's position; resume from a checkpoint the trainer wrote"
        )
    if int(loop["steps_per_epoch"]) != steps_per_epoch:
        raise ConfigError(
            f"fit(resume=...): {str(source)!r} was written with {loop['steps_per_epoch']} steps per epoch, "
            f"this run has {steps_per_epoch}: keep the data and batch_size of the run it resumes"
        )
    return {**loop, "optimizer_step": extra["optimizer_step"]}


def resume_source(resume: object, trial: Trial | None) -> Path | None:
    """The checkpoint folder (or file) :meth:`Trainer.fit` resumes from, or None: ``resume``
    (a :class:`~tunelab.checkpoints.Checkpoint` or a path), else the trial's ``resume_from``."""
    if resume is None:
        found = trial.resume_from if trial is not None else None
        return None if found is None else found.path
    if isinstance(resume, Checkpoint):
        path = resume.path
    elif isinstance(resume, (str, os.PathLike)) and os.fspath(resume):
        path = Path(os.fspath(resume))
    else:
        raise ConfigError(
            f"fit(resume=...) must be a Checkpoint (trial.latest_checkpoint()) or a checkpoint folder, got {resume!r}"
        )
    if not path.exists():
        raise ConfigError(f"fit(resume=...): {str(path)!r} does not exist; study.checkpoints(number) lists those kept")
    return path
