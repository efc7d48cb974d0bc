"""The exceptions users catch, in one place.

Every error raised at tunelab's boundary names what was wrong and how to fix it.
Configuration errors subclass :class:`ValueError`, runtime conditions subclass
:class:`RuntimeError` or :class:`LookupError`, so generic handlers keep working.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base class of every exception tunelab raises on purpose."""


class ConfigError(TunelabError, ValueError):
    """Bad input from the user: a parameter value, a space, an option.

    Raised before any compute is spent where possible. Inside an objective a
    ConfigError is never swallowed as a trial failure: the trial is marked FAIL
    and the error propagates, because it would repeat on every trial.
    """


class OptunaKeywordError(ConfigError, TypeError):
    """A keyword of Optuna's that tunelab names differently (``create_study(study_name=...)``); the message
    names tunelab's. A TypeError too, as Python's own error for an unknown keyword, so handlers written for
    that keep working."""


class InvalidDistributionError(ConfigError):
    """A distribution's arguments are inconsistent (e.g. ``log=True`` with ``low <= 0``)."""


class DistributionConflictError(ConfigError):
    """One parameter name was used with two incompatible distributions in one study."""


class EnqueuedValueError(TunelabError, ValueError):
    """An enqueued value does not fit the distribution the objective suggests its parameter with
    (enqueued before the range changed, or by an older version). Not a ConfigError: the trial
    that claimed it is marked FAIL with this message and the study goes on."""


class AttributeValueError(TunelabError, ValueError):
    """A trial attribute that is not JSON data (NaN, infinity, an object). Raised where it is set;
    not a ConfigError: the trial fails with this message and the study goes on."""


class StorageError(TunelabError, RuntimeError):
    """The storage could not be opened or could not complete an operation."""

    transient: bool = False
    """Whether the database was unavailable (locked by another writer, its connection lost) rather than
    refusing what was written: the same write may succeed a moment later."""


class StudyNotFoundError(TunelabError, LookupError):
    """A study of that name does not exist in the storage."""


class DuplicatedStudyError(TunelabError, ValueError):
    """A study of that name already exists (pass ``load_if_exists=True`` to load it)."""


class TrialNotFoundError(TunelabError, LookupError):
    """A trial of that id or number does not exist."""


class TrialStateError(TunelabError, RuntimeError):
    """An operation that needs a RUNNING trial was applied to a finished one."""


class TrialPruned(TunelabError):  # noqa: N818 - the name users raise, as in other tuners
    """Raised by an objective to stop its trial early; the trial is marked PRUNED."""


class SearchExhausted(TunelabError):  # noqa: N818 - a signal, like StopIteration
    """The sampler has nothing left to propose (e.g. every grid cell has run).

    Raised by :meth:`Study.ask`; :meth:`Study.optimize` stops cleanly on it.
    """


class TrainingDivergedError(TunelabError, ArithmeticError):
    """A training loss became NaN or infinite: the run diverged (lower the learning rate).

    Raised by :class:`tunelab.torch.Reporter`; inside an objective the trial is marked FAIL
    with this message and the study goes on.
    """


class WorkersDyingError(TunelabError, RuntimeError):
    """Worker processes keep dying before they start a trial (they cannot import the objective,
    run out of memory, ...): the run stops instead of burning its budget on failures."""


class TasksFailingError(TunelabError, RuntimeError):
    """Every Ray task fails before any has finished: the cluster cannot run them."""


class SweepConfigError(ConfigError):
    """A sweep file (``tunelab sweep SWEEP.yaml``) is wrong: the message names the file, the line, the key and
    the fix (``sweep.yaml:7: parameters.lr.low: ...``). ``key`` and ``line`` hold them (None when unknown)."""

    def __init__(self, message: str, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.line = line


class SweepStartError(ConfigError):
    """The first trials of a sweep all failed at start-up (the command exited within seconds without
    reporting anything: a missing file, a typo in the command): the sweep stops instead of burning its budget."""


class TrialCommandError(TunelabError, RuntimeError):
    """A sweep trial's command failed: it exited with a non-zero code, was killed, timed out, or reported
    no value of the sweep's metric. The trial is marked FAIL with this message; the sweep goes on."""


class WorkerTraceback(TunelabError):  # noqa: N818 - never raised alone: the cause carrying a traceback
    """The traceback of an exception raised in a worker process or task: the ``__cause__`` of the same
    exception raised again in the driver, so that the driver's report shows where it came from."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "raised in a worker process:\n" + self.text.rstrip("\n")


__all__ = [
    "AttributeValueError",
    "ConfigError",
    "DistributionConflictError",
    "DuplicatedStudyError",
    "EnqueuedValueError",
    "InvalidDistributionError",
    "SearchExhausted",
    "StorageError",
    "StudyNotFoundError",
    "SweepConfigError",
    "SweepStartError",
    "TasksFailingError",
    "TrainingDivergedError",
    "TrialCommandError",
    "TrialNotFoundError",
    "TrialPruned",
    "TrialStateError",
    "TunelabError",
    "WorkerTraceback",
    "WorkersDyingError",
]
