"""tunelab: hyperparameter tuning for deep learning.

The public API, re-exported; nothing else lives here.
"""

from tunelab.checkpoints import CheckpointPolicy
from tunelab.distributions import Bool, Categorical, Distribution, Float, Int
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
from tunelab.execution.ray import RayExecutor
from tunelab.pbt import PopulationBasedTraining
from tunelab.pruners import HyperbandPruner, LearningCurvePruner, MedianPruner, Pruner, SuccessiveHalvingPruner
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers import (
    AutoSampler,
    CoarseToFineSampler,
    GPSampler,
    GridSampler,
    RandomSampler,
    Sampler,
    TPESampler,
)
from tunelab.space import Conditional
from tunelab.storage import InMemoryStorage, SQLStorage, get_storage
from tunelab.study import Study, Trial, create_study, delete_study, load_study
from tunelab.torch.checkpoint import load_torch, save_torch

__version__ = "0.1.0"

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
    "create_study",
    "delete_study",
    "get_storage",
    "load_study",
    "load_torch",
    "save_torch",
]
