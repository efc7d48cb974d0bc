"""Pruners: stop bad trials early from their stored learning curves.

Like samplers, every pruner describes itself as JSON (stored with the study) and is rebuilt
from it, so a worker that joins a study with ``load_study`` prunes by the same rule.
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import ConfigError
from tunelab.pruners.asha import HyperbandPruner, SuccessiveHalvingPruner
from tunelab.pruners.base import NO_DECISION, PruneDecision, Pruner
from tunelab.pruners.extrapolation import LearningCurvePruner
from tunelab.pruners.median import MedianPruner
from tunelab.pruners.pareto import ParetoMedianPruner, ParetoPruner, ParetoSuccessiveHalvingPruner

__all__ = [
    "NO_DECISION",
    "HyperbandPruner",
    "LearningCurvePruner",
    "MedianPruner",
    "ParetoMedianPruner",
    "ParetoPruner",
    "ParetoSuccessiveHalvingPruner",
    "PruneDecision",
    "Pruner",
    "SuccessiveHalvingPruner",
    "pruner_from_description",
    "register_pruner",
]

_REGISTRY: dict[str, type[Pruner]] = {
    cls.__name__: cls for cls in (
        MedianPruner, SuccessiveHalvingPruner, HyperbandPruner, LearningCurvePruner, ParetoSuccessiveHalvingPruner,
        ParetoMedianPruner,
    )
}


def register_pruner(cls: type[Pruner]) -> type[Pruner]:
    """Make a pruner class rebuildable from its :meth:`Pruner.describe` output."""
    _REGISTRY[cls.__name__] = cls
    return cls


def pruner_from_description(description: dict[str, Any]) -> Pruner:
    """Rebuild a pruner from what :meth:`Pruner.describe` returned."""
    settings = dict(description)
    name = settings.pop("name", None)
    cls = _REGISTRY.get(str(name))
    if cls is None:
        raise ConfigError(
            f"the study was created with pruner {name!r}, which is not registered here; pass pruner=... to load_study"
        )
    return cls(**settings)
