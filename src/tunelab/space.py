"""Declared search spaces: a mapping of names to distributions, with conditional parameters.

A space is a plain ``dict`` (or any mapping) from parameter name to a
:class:`~tunelab.distributions.Distribution` or a :class:`Conditional`::

    space = {
        "lr": Float(1e-5, 1e-1, log=True),
        "optimizer": Categorical(["sgd", "adam"]),
        "momentum": Conditional(Float(0.0, 0.99), when={"optimizer": "sgd"}),
    }

A conditional parameter is active only when every parent named in ``when`` is
active and has the given value (or one of the values, when a list is given).
Parents must come before their children in the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.distributions import Distribution, ParamValue, distribution_from_json, plain_value
from tunelab.errors import ConfigError, InvalidDistributionError


@dataclass(frozen=True)
class Conditional:
    """A parameter that exists only when its parents take given values.

    Args:
        distribution: the parameter's distribution when it is active.
        when: parent name -> required value, or a list of accepted values.

    Examples:
        >>> import tunelab
        >>> from tunelab import Categorical, Conditional, Float
        >>> space = {
        ...     "optimizer": Categorical(["sgd", "adam"]),
        ...     "momentum": Conditional(Float(0.0, 0.99), when={"optimizer": "sgd"}),
        ... }
        >>> space["momentum"].is_active({"optimizer": "adam"}), space["momentum"].is_active({"optimizer": "sgd"})
        (False, True)
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, space=space)
        >>> study.optimize(lambda trial: 1.0 - trial.params.get("momentum", 0.0), n_trials=10)
        >>> all(("momentum" in t.params) == (t.params["optimizer"] == "sgd") for t in study.trials)
        True
    """

    distribution: Distribution
    when: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.distribution, Distribution):
            raise ConfigError(
                f"Conditional needs a distribution such as Float(...), got {self.distribution!r}"
            )
        if not isinstance(self.when, Mapping) or not self.when:
            raise ConfigError(
                "Conditional(when=...) needs a non-empty mapping of parent name -> value, "
                "e.g. when={'optimizer': 'sgd'}"
            )
        object.__setattr__(self, "when", {
            k: [plain_value(x) for x in v] if isinstance(v, (list, tuple, set, frozenset)) else plain_value(v)
            for k, v in self.when.items()
        })
        for parent, accepted in self.when.items():
            if not isinstance(parent, str) or not parent:
                raise ConfigError(
                    f"Conditional(when=...) keys must be parameter names (non-empty strings), got {parent!r}"
                )
            if accepted == []:
                raise ConfigError(
                    f"Conditional(when={{{parent!r}: []}}) accepts no value of {parent!r}, so the parameter would "
                    f"never be active; list the values that switch it on, e.g. when={{{parent!r}: [...]}}"
                )

    def accepted(self, parent: str) -> list[ParamValue]:
        """The values of ``parent`` under which this parameter is active."""
        v = self.when[parent]
        return list(v) if isinstance(v, (list, tuple, set, frozenset)) else [v]

    def is_active(self, assigned: Mapping[str, ParamValue]) -> bool:
        """Whether the parents in ``assigned`` switch this parameter on."""
        for parent in self.when:
            if parent not in assigned:
                return False
            value = assigned[parent]
            if not any(type(value) is type(a) and value == a for a in self.accepted(parent)):
                return False
        return True


SpaceEntry = Distribution | Conditional
Space = Mapping[str, SpaceEntry]


def unwrap(entry: SpaceEntry) -> Distribution:
    """The distribution of a space entry, conditional or not."""
    return entry.distribution if isinstance(entry, Conditional) else entry


def validate_space(space: object) -> dict[str, SpaceEntry]:
    """Check a declared space and return it as a dict; raise ConfigError naming the problem."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            "space must be a non-empty mapping of name -> distribution, "
            "e.g. {'lr': Float(1e-5, 1e-1, log=True)}"
        )
    seen: dict[str, Distribution] = {}
    for name, entry in space.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"parameter names must be non-empty strings, got {name!r}")
        if not isinstance(entry, (Distribution, Conditional)):
            raise ConfigError(
                f"parameter '{name}': expected a distribution such as Float(...), Int(...), "
                f"Categorical([...]) or Bool(), got {entry!r}"
            )
        if isinstance(entry, Conditional):
            for parent in entry.when:
                if parent not in seen:
                    raise ConfigError(
                        f"parameter '{name}': its condition names '{parent}', which is not "
                        "declared before it; put parents before their children in the space"
                    )
                for value in entry.accepted(parent):
                    parent_dist = seen[parent]
                    if not parent_dist.contains(value) or type(parent_dist.cast(value)) is not type(value):
                        raise ConfigError(
                            f"parameter '{name}': condition {parent}={value!r} can never hold, "
                            f"because {value!r} is not a value of '{parent}' ({seen[parent]!r})"
                        )
        seen[name] = unwrap(entry)
    return dict(space)


def active_names(space: Mapping[str, SpaceEntry], assigned: Mapping[str, ParamValue]) -> list[str]:
    """Names of the parameters active under ``assigned`` (which holds parents' values)."""
    names: list[str] = []
    active: dict[str, ParamValue] = {}  # only active parents may switch children on
    for name, entry in space.items():
        if isinstance(entry, Conditional) and not entry.is_active(active):
            continue
        names.append(name)
        if name in assigned:
            active[name] = assigned[name]
    return names


def space_to_json(space: Mapping[str, SpaceEntry]) -> dict[str, Any]:
    """A JSON-compatible description of a space."""
    out: dict[str, Any] = {}
    for name, entry in space.items():
        d = unwrap(entry).to_json()
        if isinstance(entry, Conditional):
            d = {"distribution": d, "when": dict(entry.when)}
        out[name] = d
    return out


def space_from_json(data: Mapping[str, Any]) -> dict[str, SpaceEntry]:
    """Inverse of :func:`space_to_json`."""
    out: dict[str, SpaceEntry] = {}
    for name, d in data.items():
        if "when" in d:
            out[name] = Conditional(distribution_from_json(d["distribution"]), when=d["when"])
        else:
            out[name] = distribution_from_json(d)
    return out


def name_error(name: str, error: InvalidDistributionError) -> InvalidDistributionError:
    """The same error, prefixed with the parameter's name."""
    return InvalidDistributionError(f"parameter '{name}': {error}")
