"""Samplers: how a study picks the next parameters.

Every sampler can describe itself as JSON (stored with the study) and be rebuilt
from that description, so a worker that joins a study with ``load_study`` uses
the same sampler as the process that created it.
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import ConfigError
from tunelab.samplers.auto import AutoSampler
from tunelab.samplers.base import Sampler, SamplingContext
from tunelab.samplers.coarse_to_fine import CoarseToFineSampler
from tunelab.samplers.gp import GPSampler
from tunelab.samplers.grid import GridSampler
from tunelab.samplers.model_based import ModelBasedSampler
from tunelab.samplers.nsga import NSGAIISampler
from tunelab.samplers.nsga3 import NSGAIIISampler
from tunelab.samplers.random import RandomSampler
from tunelab.samplers.tpe import TPESampler

__all__ = [
    "AutoSampler",
    "CoarseToFineSampler",
    "GPSampler",
    "GridSampler",
    "ModelBasedSampler",
    "NSGAIISampler",
    "NSGAIIISampler",
    "RandomSampler",
    "Sampler",
    "SamplingContext",
    "TPESampler",
    "register_sampler",
    "sampler_from_description",
]

_REGISTRY: dict[str, type[Sampler]] = {
    cls.__name__: cls for cls in (
        RandomSampler, GridSampler, CoarseToFineSampler, TPESampler, GPSampler, AutoSampler, NSGAIISampler,
        NSGAIIISampler,
    )
}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    """Make a sampler class rebuildable from its :meth:`Sampler.describe` output."""
    _REGISTRY[cls.__name__] = cls
    return cls


def sampler_from_description(description: dict[str, Any]) -> Sampler:
    """Rebuild a sampler from what :meth:`Sampler.describe` returned."""
    settings = dict(description)
    name = settings.pop("name", "RandomSampler")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(
            f"the study was created with sampler {name!r}, which is not registered here; "
            "pass sampler=... to load_study"
        )
    from_description = getattr(cls, "from_description", None)
    if from_description is not None:
        return from_description(settings)  # type: ignore[no-any-return]
    return cls(**settings)
