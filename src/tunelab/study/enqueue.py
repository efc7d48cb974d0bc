"""Checking an enqueued configuration against what the study knows, before anything is stored.

A configuration can come from anywhere: a script, the dashboard, another version of tunelab.
A value the objective cannot take would only show when a worker claims the trial, so
:meth:`Study.enqueue` checks each value first against the distributions the study keeps (the
storage's record of each parameter's first distribution: its kind, and its range or a wider one
that the declared space or a recent trial uses, since ranges may widen when a study is resumed),
then the declared space, then what this process has seen. A parameter the study does not know
yet takes any JSON scalar.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError, InvalidDistributionError
from tunelab.space import Conditional, SpaceEntry, unwrap
from tunelab.study.attrs import JSON_RULE, json_data, shown

Source = tuple[str, Distribution]
"""Where a distribution comes from (in words, for messages) and the distribution."""


def check_enqueued(
    params: Mapping[str, object],
    stored: Mapping[str, Distribution],
    space: Mapping[str, SpaceEntry] | None,
    seen: Callable[[str], Distribution | None],
    recent: Callable[[], Sequence[Mapping[str, Distribution]]],
) -> tuple[dict[str, ParamValue], dict[str, Distribution]]:
    """The values of ``params`` as the study will store them, and the distribution each one fits.

    Args:
        params: parameter name -> value, as given.
        stored: the distributions the storage keeps for the study (each name's first one).
        space: the study's declared space, or None.
        seen: the distribution this process has seen for a name (its registry), or None.
        recent: the distributions of recent trials, newest first (read only when a value fits
            none of the above: a range may have been widened since).

    Raises ConfigError naming the parameter, the value, the distribution and the fix.
    """
    clean: dict[str, ParamValue] = {}
    dists: dict[str, Distribution] = {}
    widened: list[Mapping[str, Distribution]] | None = None
    if space is not None:
        params = _with_parents(params, space)
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"enqueue: parameter names must be non-empty strings, got {name!r}")
        sources = _sources(name, stored, space, seen)
        if not sources:
            clean[name] = json_scalar(name, value)
            continue
        fitted = _first_fit(value, sources)
        if fitted is None:
            if widened is None:
                widened = list(recent())
            more = [("a recent trial", d[name]) for d in widened if name in d]
            fitted = _first_fit(value, [s for s in more if sources[0][1].compatible_with(s[1])])
        if fitted is None:
            raise _misfit(name, value, sources)
        clean[name], dists[name] = fitted
    if space is not None:
        _check_conditions(clean, space)
    return clean, dists


def _with_parents(params: Mapping[str, object], space: Mapping[str, SpaceEntry]) -> Mapping[str, object]:
    """``params`` with each conditional parameter's parents that were left out set to the (first) value
    that switches it on: sampled, a parent could switch it off, and the trial would carry a parameter the
    declared space says it does not have (``{'momentum': 0.9}`` ran with optimizer='adam')."""
    parents: dict[str, object] = {}
    pending = list(params)
    while pending:
        entry = space.get(pending.pop())
        if not isinstance(entry, Conditional):
            continue
        for parent in entry.when:
            if parent not in params and parent not in parents:
                parents[parent] = entry.accepted(parent)[0]
                pending.append(parent)  # a parent may be conditional too
    return {**dict(reversed(parents.items())), **params} if parents else params


def _check_conditions(clean: Mapping[str, ParamValue], space: Mapping[str, SpaceEntry]) -> None:
    """A ConfigError for a conditional parameter enqueued with parents that switch it off (the trial
    would carry a parameter the declared space says it does not have)."""
    for name in clean:
        entry = space.get(name)
        if not isinstance(entry, Conditional) or not all(parent in clean for parent in entry.when):
            continue  # (parents left out were filled in by _with_parents)
        if not entry.is_active(clean):
            given = ", ".join(f"{parent}={clean[parent]!r}" for parent in entry.when)
            wanted = ", ".join(f"{parent}={entry.accepted(parent)[0]!r}" if len(entry.accepted(parent)) == 1
                               else f"{parent} in {entry.accepted(parent)!r}" for parent in entry.when)
            raise ConfigError(
                f"enqueue: parameter '{name}' exists only when {wanted} (the declared space's condition), but the "
                f"configuration has {given}; leave '{name}' out, or enqueue {wanted}"
            )


def _sources(
    name: str,
    stored: Mapping[str, Distribution],
    space: Mapping[str, SpaceEntry] | None,
    seen: Callable[[str], Distribution | None],
) -> list[Source]:
    """The distributions known for ``name``, in order of authority; only those of the first one's kind."""
    found: list[Source] = []
    if name in stored:
        found.append(("the study's stored distribution", stored[name]))
    if space is not None and name in space:
        found.append(("the declared space", unwrap(space[name])))
    mine = seen(name)
    if mine is not None:
        found.append(("this process's", mine))
    return [s for s in found if found[0][1].compatible_with(s[1])]


def _first_fit(value: object, sources: Sequence[Source]) -> tuple[ParamValue, Distribution] | None:
    for _, dist in sources:
        try:
            return dist.cast(value), dist
        except (InvalidDistributionError, TypeError):
            continue
    return None


def _misfit(name: str, value: object, sources: Sequence[Source]) -> ConfigError:
    where, dist = sources[0]
    try:
        dist.cast(value)
        why = "it does not fit"
    except (InvalidDistributionError, TypeError) as e:
        why = str(e)
    others = [repr(d) for _, d in sources[1:] if d != dist]
    nor = f" (nor {', '.join(others)})" if others else ""
    return ConfigError(
        f"enqueue: parameter '{name}' = {value!r} does not fit {where}, {dist!r}{nor}: {why}. "
        f"Enqueue {_what_fits(dist)}, or leave '{name}' out to have it sampled"
    )


def _what_fits(dist: Distribution) -> str:
    if isinstance(dist, Categorical):
        return f"one of {list(dist.choices)!r}"
    if isinstance(dist, Bool):
        return "True or False"
    if isinstance(dist, Int):
        step = f" every {dist.step}" if dist.step != 1 else ""
        return f"an integer in [{dist.low}, {dist.high}]{step}"
    if isinstance(dist, Float):
        step = f" on the lattice {dist.low!r} + k * {dist.step!r}" if dist.step is not None else ""
        return f"a number in [{dist.low!r}, {dist.high!r}]{step}"
    return "a value it can take"


def json_scalar(name: str, value: object) -> ParamValue:
    """``value`` as a JSON scalar (None, bool, int, finite float, str), or a ConfigError naming ``name``.

    numpy scalars become their Python counterparts.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(f"enqueue: parameter '{name}' = {value!r} is not finite; enqueue a finite number")
        return number
    raise ConfigError(
        f"enqueue: parameter '{name}' = {value!r} is a {type(value).__name__}; the study has no distribution "
        f"for '{name}' yet, so its value must be None, a bool, a number or a string"
    )


def check_user_attrs(where: str, attrs: object) -> dict[str, object] | None:
    """``attrs`` as a dict of JSON data with string keys, or None; ConfigError naming ``where`` otherwise
    (checked before anything is stored, as a trial's set_user_attr checks each value)."""
    if attrs is None:
        return None
    if not isinstance(attrs, Mapping):
        raise ConfigError(f"{where} must be a mapping of name -> JSON data, e.g. {{'note': 'baseline'}}, got {attrs!r}")
    out: dict[str, object] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: attribute keys must be non-empty strings, got {key!r}")
        out[key], problem = json_data(value)
        if problem is not None:
            raise ConfigError(f"{where}['{key}'] = {shown(value)}: {problem}; {JSON_RULE}")
    return out
