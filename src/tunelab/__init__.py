"""tunelab: hyperparameter tuning for deep learning.

The public API, re-exported; nothing else lives here. The names load their module on first use
(a module ``__getattr__``), so that ``import tunelab.script`` in a training script run by
``tunelab sweep`` stays light: it imports no numpy, scipy or SQLAlchemy.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from tunelab.errors import (
    ConfigError,
    DuplicatedStudyError,
    SearchExhausted,
    StorageError,
    StudyNotFoundError,
    TrialNotFoundError,
    TrialPruned,
    TrialStateError,
    TunelabError,
)

if TYPE_CHECKING:
    from tunelab.checkpoints import CheckpointPolicy
    from tunelab.distributions import Bool, Categorical, Distribution, Float, Int
    from tunelab.execution.ray import RayExecutor
    from tunelab.pbt import PopulationBasedTraining
    from tunelab.pruners import (
        HyperbandPruner,
        LearningCurvePruner,
        MedianPruner,
        ParetoMedianPruner,
        ParetoSuccessiveHalvingPruner,
        Pruner,
        SuccessiveHalvingPruner,
    )
    from tunelab.records import FrozenTrial, TrialState
    from tunelab.samplers import (
        AutoSampler,
        CoarseToFineSampler,
        GPSampler,
        GridSampler,
        NSGAIIISampler,
        NSGAIISampler,
        RandomSampler,
        Sampler,
        TPESampler,
    )
    from tunelab.space import Conditional
    from tunelab.storage import InMemoryStorage, SQLStorage, get_storage
    from tunelab.study import Study, Trial, copy_study, create_study, delete_study, load_study, read_study
    from tunelab.torch.checkpoint import load_torch, save_torch

__version__ = "0.1.0"

_LAZY = {
    "CheckpointPolicy": "tunelab.checkpoints",
    **dict.fromkeys(("Bool", "Categorical", "Distribution", "Float", "Int"), "tunelab.distributions"),
    "RayExecutor": "tunelab.execution.ray",
    "PopulationBasedTraining": "tunelab.pbt",
    **dict.fromkeys(
        (
            "HyperbandPruner", "LearningCurvePruner", "MedianPruner", "ParetoMedianPruner",
            "ParetoSuccessiveHalvingPruner", "Pruner", "SuccessiveHalvingPruner",
        ),
        "tunelab.pruners",
    ),
    **dict.fromkeys(("FrozenTrial", "TrialState"), "tunelab.records"),
    **dict.fromkeys(
        ("AutoSampler", "CoarseToFineSampler", "GPSampler", "GridSampler", "NSGAIISampler", "NSGAIIISampler",
         "RandomSampler", "Sampler", "TPESampler"),
        "tunelab.samplers",
    ),
    "Conditional": "tunelab.space",
    **dict.fromkeys(("InMemoryStorage", "SQLStorage", "get_storage"), "tunelab.storage"),
    **dict.fromkeys(
        ("Study", "Trial", "copy_study", "create_study", "delete_study", "load_study", "read_study"), "tunelab.study"
    ),
    **dict.fromkeys(("load_torch", "save_torch"), "tunelab.torch.checkpoint"),
}
"""Public name -> the module it comes from, imported by :func:`__getattr__` on first use."""


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (and a subpackage, e.g. ``tunelab.samplers``)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"tunelab.{name}") is not None:
        return importlib.import_module(f"tunelab.{name}")
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AutoSampler",
    "Bool",
    "Categorical",
    "CheckpointPolicy",
    "CoarseToFineSampler",
    "Conditional",
    "ConfigError",
    "Distribution",
    "DuplicatedStudyError",
    "Float",
    "FrozenTrial",
    "GPSampler",
    "GridSampler",
    "HyperbandPruner",
    "LearningCurvePruner",
    "InMemoryStorage",
    "Int",
    "MedianPruner",
    "ParetoMedianPruner",
    "ParetoSuccessiveHalvingPruner",
    "NSGAIISampler",
    "NSGAIIISampler",
    "PopulationBasedTraining",
    "Pruner",
    "RandomSampler",
    "RayExecutor",
    "SQLStorage",
    "Sampler",
    "SearchExhausted",
    "StorageError",
    "Study",
    "StudyNotFoundError",
    "SuccessiveHalvingPruner",
    "TPESampler",
    "Trial",
    "TrialNotFoundError",
    "TrialPruned",
    "TrialState",
    "TrialStateError",
    "TunelabError",
    "copy_study",
    "create_study",
    "delete_study",
    "get_storage",
    "load_study",
    "load_torch",
    "read_study",
    "save_torch",
]
