"""Judging what an objective returned (or a trial was told): its final state, value and error text.

One judge for :meth:`Study.tell <tunelab.study.Study.tell>` and the runner, so a value is read the
same way wherever the objective ran.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.errors import (
    ConfigError,
)
from tunelab.records import (
    TrialState,
)

Verdict = tuple[TrialState, "float | tuple[float, ...] | None", "str | None"]
"""A trial's final state, value (a tuple with several objectives) and error text."""


def judge(
    value: Any, state: TrialState | str | None = None, error: str | None = None,
    names: Sequence[str] | None = None, name: str | None = None,
) -> Verdict:
    """The final state, value and error text of a trial from what it returned (or was told).

    The one judge of values: :meth:`Study.tell` and the runner both use it. A number is an ``int``
    or ``float`` (numpy's included: any :class:`numbers.Real` but ``bool``) or a 0-dim array or
    tensor holding one (read with ``.item()``); anything else, None, NaN, an infinity or a value
    too large for a float makes the trial FAIL with the reason.

    With ``names`` (a study with several objectives) the value is a tuple, list or 1-d array of
    one number per objective, or a mapping by objective name, and the judged value a tuple of
    floats; a wrong length, a missing name or a bad number FAILs the trial naming the objective.
    With one objective, a container of one number (``[v]``, ``(v,)``, a 1-d array) and a mapping
    ``{name: v}`` by the objective's ``name`` are read as ``v``, as for several objectives.
    """
    if state is not None:
        try:
            state = TrialState(state)
        except ValueError:
            raise ConfigError(
                f"state must be one of COMPLETE, PRUNED, FAIL, got {state!r}"
            ) from None
        if not state.is_finished:
            raise ConfigError(f"a trial can only be told a final state, got {state.value}")
        if state != TrialState.COMPLETE:
            return state, None, error
    if value is None:
        return TrialState.FAIL, None, error or (
            "the objective returned None; return a number" if names is None
            else f"the objective returned None; return {len(names)} numbers ({', '.join(names)})"
        )
    if names is not None:
        return _judge_vector(value, names)
    value = _single(value, name)
    number = as_real(value)
    if number is None:
        hint = ""
        if isinstance(value, (tuple, list, Mapping)) or getattr(value, "ndim", 0) == 1:
            several = (_length(value) or 0) > 1  # no value, or a mapping by another name: not what the study has
            hint = (" (a study with several objectives: create_study(directions=[...]))" if several
                    else f" (the study has one objective{f' named {name!r}' if name else ''}: return the number "
                         f"itself{f', or {{{name!r}: number}}' if name else ''})")
        return TrialState.FAIL, None, (
            f"the objective returned {_short_repr(value)} ({type(value).__name__}); return a number{hint}"
        )
    try:
        result = float(number)
    except OverflowError:
        return TrialState.FAIL, None, (
            f"the objective returned {_short_repr(value)}, too large for a float; return a finite number"
        )
    if math.isnan(result):
        return TrialState.FAIL, None, (
            "the objective returned NaN (training often diverges so: try a lower learning rate)"
        )
    if math.isinf(result):
        return TrialState.FAIL, None, f"the objective returned {result}"
    return TrialState.COMPLETE, result, None


def _single(value: Any, name: str | None) -> Any:
    """The one value of a one-objective study's container of one number, or of ``{name: v}`` (else ``value``)."""
    if _labelled(value):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return value[name] if name is not None and list(value) == [name] else value
    if (isinstance(value, (tuple, list)) or getattr(value, "ndim", None) == 1) and _length(value) == 1:
        return value[0]
    return value


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _judge_vector(value: Any, names: Sequence[str]) -> Verdict:
    """One finite float per objective, from a sequence or a mapping by name (see :func:`judge`)."""
    want = f"{len(names)} values ({', '.join(names)})"
    if _labelled(value):  # a pandas Series such as df.mean(): by its labels, not in its (column) order
        value = value.to_dict()
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        unknown = [k for k in value if k not in names]  # shown as typed: the key 1 is not the name '1'
        if missing or unknown:
            parts = ([f"no value for {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"unknown objective(s) {', '.join(map(repr, unknown))}"] if unknown else [])
            shown = _short_repr(value)
            return TrialState.FAIL, None, f"the objective returned {shown}: {'; '.join(parts)}; return {want}"
        items = [value[n] for n in names]
    elif isinstance(value, (tuple, list)) or getattr(value, "ndim", None) == 1:
        items = list(value)
    else:
        return TrialState.FAIL, None, (
            f"the objective returned {_short_repr(value)} ({type(value).__name__}); the study has several "
            f"objectives: return {want}, as a tuple, a list or a mapping by name"
        )
    if len(items) != len(names):
        return TrialState.FAIL, None, (
            f"the objective returned {len(items)} value{'s' if len(items) != 1 else ''} "
            f"({_short_repr(value)}) but the study has {len(names)} objectives ({', '.join(names)})"
        )
    out: list[float] = []
    for i, (name, item) in enumerate(zip(names, items, strict=True)):
        number = as_real(item)
        where = f"objective {name!r} (value {i})"
        if number is None:
            return TrialState.FAIL, None, (
                f"the objective returned {_short_repr(item)} ({type(item).__name__}) for {where}; return a number"
            )
        try:
            result = float(number)
        except OverflowError:
            shown = _short_repr(item)
            return TrialState.FAIL, None, f"the objective returned {shown} for {where}, too large for a float"
        if math.isnan(result):
            return TrialState.FAIL, None, f"the objective returned NaN for {where}"
        if math.isinf(result):
            return TrialState.FAIL, None, f"the objective returned {result} for {where}"
        out.append(result)
    return TrialState.COMPLETE, tuple(out), None


def _labelled(value: Any) -> bool:
    """Whether ``value`` is a 1-d container labelled by something other than its positions (a pandas
    Series with an index of names): its labels say which objective each value is."""
    if isinstance(value, Mapping) or getattr(value, "ndim", None) != 1 or not callable(getattr(value, "to_dict", None)):
        return False
    try:
        labels = list(value.index)
    except (AttributeError, TypeError):
        return False
    return labels != list(range(len(labels)))


def as_real(value: Any) -> numbers.Real | None:
    """``value`` as a real number, or None: bools, strings and containers are not numbers."""
    if type(value).__name__ in ("bool", "bool_"):  # numpy.bool_ is not a Real, bool is
        return None
    if isinstance(value, numbers.Real):
        return value
    # A 0-dim numpy array or torch tensor: a scalar result of a computation.
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        try:
            item = value.item()
        except Exception:  # noqa: BLE001 - whatever it is, it is not a number we can read
            return None
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            return item
    return None


def real_metric(name: str, value: Any) -> float:
    """A reported metric's value as a float, or a ConfigError naming the metric and the value.

    A real number is what an objective may return (:func:`as_real`: an int or float, numpy's included, or a
    0-dim array or tensor holding one), NaN and the infinities included (a curve that diverged); a string
    such as ``"0.5"``, a bool or a number too large for a float is not (``float()`` read the first two).
    """
    number = as_real(value)
    why = ""
    if number is not None:
        try:
            return float(number)
        except OverflowError:
            why = " (too large for a float)"
    hint = f"; report {name}=float(...) of the number it holds" if isinstance(value, (str, bytes)) else ""
    raise ConfigError(
        f"metric {name!r} must be a real number, got {_short_repr(value)} ({type(value).__name__}){why}: an int "
        f"or a float (numpy's, or a 0-dim array or tensor, included; NaN and infinities are kept){hint}"
    )


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- module-level entry points ------------------------------------------------------------
