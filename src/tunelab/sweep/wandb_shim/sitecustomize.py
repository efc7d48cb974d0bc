"""Run by Python at start-up in a ``tunelab sweep`` trial of a sweep file with ``wandb: true`` (this folder is put
first on the trial's ``PYTHONPATH``). When the script imports wandb:

- ``wandb.init`` runs as usual, then the trial's parameters (``TUNELAB_PARAMS``) and the W&B sweep's constants
  (``TUNELAB_WANDB_CONSTANTS``) go into ``run.config``, locked as a W&B sweep agent locks them (a later
  ``wandb.config.update(args)`` of those keys is ignored, with W&B's warning);
- each ``wandb.log({...})`` also prints its numbers as one JSON line (``{"step": 3, "val_loss": 0.41}``) on the
  process's stdout, which the sweep reads as the trial's report: at the ``step=`` given, else at the number of
  ``wandb.log`` calls so far (1, 2, ...; ``commit=False`` adds to the same step, as does a log after one with
  ``step=``). A ``step=`` below the run's last step is ignored, as W&B ignores it. Nested dicts become dotted names,
  keys starting with ``_``, values that are not one number (images, histograms, bools) and top-level numbers named
  ``step``, ``value`` or ``final`` (a report line's own keys) are left out;
- a number the script puts in the run's summary itself (``run.summary["best_acc"] = x``, ``wandb.summary.update``,
  nested dicts as dotted names) is printed as ``{"final": {...}}`` with every such number so far, which the sweep
  takes as the trial's final metrics: a W&B sweep's metric is the run's summary value, so a sweep on ``best_acc``
  optimises what it would under a W&B agent. A later ``wandb.log`` of the same name replaces it, as in W&B's
  summary. (The aggregates of ``define_metric(summary=...)`` are not computed: the metric's last logged value
  stands, as the sweep's default.)

Another ``sitecustomize`` later on ``sys.path`` still runs. Only the standard library is used: the script may run
in any Python environment, without tunelab.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_local = threading.local()
_next = [1]  # the step of the next wandb.log without step=
_last: list[int | None] = [None]  # the step of the run's last log: a step= below it is ignored, as W&B does
_summary: dict[str, float] = {}  # the numbers the script set in its run's summary itself, by name
_root: list[Any] = [None]  # the run's summary object: writes to it are the script's own


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        size = getattr(value, "numel", None)
        count = size() if callable(size) else getattr(value, "size", 1)
        if count == 1:
            try:
                out = item()
            except Exception:  # noqa: BLE001 - not a number after all
                return None
            if isinstance(out, (int, float)) and not isinstance(out, bool):
                return float(out)
    return None


_RESERVED = ("step", "value", "final")
"""A report line's own keys: a metric logged under one of these names at the top level is left out (else it would
be read as the report's step, the trial's value, or its final metrics)."""


def _flatten(data: dict[Any, Any], prefix: str, out: dict[str, float]) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not key or key.startswith("_"):
            continue
        name = prefix + key
        if not prefix and key in _RESERVED and not isinstance(value, dict):
            continue
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
            continue
        number = _number(value)
        if number is not None:
            out[name] = number


def _emit(data: Any, step: Any = None, commit: Any = None) -> None:
    if step is not None:
        at = int(step)
        if _last[0] is not None and at < _last[0]:
            return  # W&B warns that steps must increase and drops the data
        # a log at step= is not committed unless commit=True: the next log without step= joins it
        _next[0] = at + 1 if commit is True else at
    else:
        at = _next[0]
        if commit is not False:
            _next[0] = at + 1
    _last[0] = at
    if not isinstance(data, dict):
        return
    numbers: dict[str, float] = {}
    _flatten(data, "", numbers)
    if not numbers:
        return
    _print({"step": at, **numbers})
    replaced = {name: value for name, value in numbers.items() if name in _summary}
    if replaced:  # W&B's summary holds a name's last logged value once it is logged again
        _summary.update(replaced)
        _print({"final": dict(_summary)})


def _print(record: dict[str, Any]) -> None:
    line = json.dumps(record)  # NaN and infinities as JSON's NaN, Infinity: the sweep reads them
    stream = sys.__stdout__ or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def _summary_set(summary: Any, data: Any) -> None:
    """The script set ``data`` in ``summary``: when it is the run's summary, print every number set so far."""
    if summary is not _root[0] or getattr(_local, "inside", False) or not isinstance(data, dict):
        return  # a nested part of the summary, or wandb.log's own update of it (NoopRun's)
    numbers: dict[str, float] = {}
    _flatten(data, "", numbers)
    if numbers:
        _summary.update(numbers)
        _print({"final": dict(_summary)})


def _reporting_update(original: Any) -> Any:
    def update(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        _summary_set(self, dict(*args, **kwargs))
        return out

    return update


def _reporting_setter(original: Any) -> Any:
    def setter(self: Any, key: Any, value: Any) -> Any:
        out = original(self, key, value)
        _summary_set(self, {key: value})
        return out

    return setter


def _wrap_summary(cls: Any, names: tuple[str, ...]) -> None:
    """Every way ``cls`` sets a key (``update``, ``summary[key] =``, ``summary.key =``) also reports it."""
    for name in names:
        original = getattr(cls, name, None)
        if original is None or getattr(original, "_tunelab", False):
            continue
        wrapper = _reporting_update(original) if name == "update" else _reporting_setter(original)
        wrapper._tunelab = True
        setattr(cls, name, wrapper)


def _wrap_log(cls: Any) -> None:
    original = cls.__dict__.get("log")
    if original is None:
        return

    def log(self: Any, data: Any = None, step: Any = None, commit: Any = None, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "inside", False):
            return original(self, data, step, commit, *args, **kwargs)
        _local.inside = True  # also while W&B logs: its own summary updates are not the script's
        try:
            _emit(data, step, commit)
            return original(self, data, step, commit, *args, **kwargs)
        finally:
            _local.inside = False

    log.__wrapped__ = original  # type: ignore[attr-defined]
    log.__doc__ = original.__doc__
    cls.log = log


def _wrap_init(module: Any) -> None:
    original = module.init

    def init(*args: Any, **kwargs: Any) -> Any:
        run = original(*args, **kwargs)
        _last[0] = None  # a new run's step= starts over
        _summary.clear()
        _root[0] = getattr(run, "summary", None) if run is not None else None
        given: dict[str, Any] = {}
        for variable in ("TUNELAB_WANDB_CONSTANTS", "TUNELAB_PARAMS"):
            try:
                given.update(json.loads(os.environ.get(variable) or "{}"))
            except ValueError:
                pass
        config = getattr(run, "config", None) if run is not None else None
        if given and config is not None:
            lock = getattr(config, "merge_locked", None)
            if callable(lock):  # as a W&B agent: the script's own updates of these keys are ignored, with a warning
                lock(given, user="sweep", _allow_val_change=True)
            else:
                config.update(given, allow_val_change=True)
        return run

    init.__wrapped__ = original  # type: ignore[attr-defined]
    init.__doc__ = original.__doc__
    module.init = init


def _patch(module: Any) -> None:
    _wrap_init(module)
    try:
        from wandb.sdk import wandb_run
        _wrap_log(wandb_run.Run)
    except Exception:  # noqa: BLE001 - another wandb layout: its module-level log only
        pass
    try:
        from wandb.sdk.lib import noop_run
        _wrap_log(noop_run.NoopRun)
    except Exception:  # noqa: BLE001 - a wandb without a no-op run
        pass
    try:  # a run's summary (its key and attribute setters call update) and a disabled run's (a dict)
        from wandb.sdk import wandb_summary
        _wrap_summary(wandb_summary.SummaryDict, ("update",))
    except Exception:  # noqa: BLE001 - another wandb layout: summaries are not read
        pass
    try:
        from wandb.sdk.lib import disabled
        _wrap_summary(disabled.SummaryDisabled, ("update", "__setitem__", "__setattr__"))
    except Exception:  # noqa: BLE001 - a wandb without a disabled summary
        pass


class _WandbFinder:
    """Finds ``wandb`` as Python would, and patches it once it has run."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "wandb":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not _WandbFinder]
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            _patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _chain() -> None:
    """Run the next ``sitecustomize`` on sys.path, which this one hides."""
    for entry in sys.path:
        folder = os.path.abspath(entry or ".")
        if folder == _HERE:
            continue
        candidate = os.path.join(folder, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_tunelab_next_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return


sys.meta_path.insert(0, _WandbFinder)  # type: ignore[arg-type]
_chain()
