"""Failures that repeat: a study whose every trial fails the same way (a typo in the objective).

A trial that raises is recorded FAIL with its whole traceback and the study goes on: one bad
configuration must not stop a search. But when the *first* trials of an ``optimize()`` call all
fail with the same error, the error is almost surely in the objective itself (a ``NameError``, a
wrong import, a shape that never fits), not in the configurations, and running the rest of the
budget only repeats it. :class:`FailureWatch` sees each finished trial and says so once, with
where the error was raised; :func:`summarize_error` turns a stored error text into that one line::

    watch = FailureWatch(n_workers=4)
    for outcome in outcomes:                        # as trials finish
        message = watch.observe(outcome.number, outcome.state, outcome.error, study.name)
        if message is not None:
            logger.warning(message)

It needs no callback and reads nothing: the runner feeds it what it already has. Having seen every
finished trial of the call, it also writes the line for Ctrl-C (:meth:`FailureWatch.interrupted_message`):
how many trials finished before the interrupt (kept as they ended) and how many were stopped (recorded
FAIL "interrupted", not results).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

FIRST_TRIALS_CAP = 5
"""The most trials :class:`FailureWatch` waits for, however many workers run."""

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?\s*$')
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
_MAX_SUMMARY = 300
_LIBRARY_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_TUNELAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_trials(n_workers: int) -> int:
    """How many first trials must all fail alike before :class:`FailureWatch` speaks: ``min(n_workers + 2, 5)``.

    With ``n_workers`` trials running at once, the first ``n_workers`` start before any has failed,
    so their failures are one observation of the objective, not several: two more, started after
    failures were already seen, make the repetition evidence (3 trials for one worker). Five is
    enough whatever the number of workers: five different configurations failing at the same line
    with the same exception is a bug, and a warning after 5 of 16 parallel trials still comes early.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    return min(n_workers + 2, FIRST_TRIALS_CAP)


@dataclass(frozen=True)
class ErrorSummary:
    """Where an error was raised and what it said, read from its stored text.

    Attributes:
        file: the file of the frame shown (the innermost outside installed libraries and tunelab,
            else the innermost), as the traceback wrote it; None for an error without a traceback
            (a NaN returned, a timeout, a dead worker).
        line: its line number, or None.
        exception: the exception line (``NameError: name 'x' is not defined``), or the error's
            first line when it has no traceback.
    """

    file: str | None
    line: int | None
    exception: str

    @property
    def kind(self) -> tuple[str | None, int | None, str]:
        """What makes two errors "the same": the place and the exception's class (not its message,
        which often holds the configuration's values)."""
        return self.file, self.line, self.exception.partition(":")[0].strip()

    def __str__(self) -> str:
        if self.file is None:
            return self.exception
        return f"{_shown_path(self.file)}:{self.line}: {self.exception}"


def read_error(text: str | None) -> ErrorSummary:
    """The :class:`ErrorSummary` of a stored error text (a Python traceback, or one line)."""
    lines = [line.rstrip() for line in (text or "").splitlines()]
    start = 0
    for i, line in enumerate(lines):  # the last exception of a chain is the one that ended the trial
        if line.startswith(_CHAIN):
            start = i + 1
    lines = lines[start:]
    frames: list[tuple[str, int, int]] = []  # (file, line, index of the frame's line)
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if m:
            frames.append((m.group("file"), int(m.group("line")), i))
    if not frames:
        first = next((line.strip() for line in lines if line.strip()), "")
        return ErrorSummary(None, None, _cut(first or "(no error text)"))
    exception = ""
    for line in lines[frames[-1][2] + 1:]:
        # the frame's source line and the ^^^ markers are indented; the exception line is not
        if line and not line[0].isspace():
            exception = line.strip()
            break
    chosen = next((f for f in reversed(frames) if _is_user_file(f[0])), frames[-1])
    return ErrorSummary(chosen[0], chosen[1], _cut(exception or "(no exception line)"))


def summarize_error(text: str | None) -> str:
    """One line for an error text: ``"objective.py:12: NameError: name 'x' is not defined"``.

    The place is the innermost frame of the traceback that is neither an installed library nor
    tunelab (the user's code, where the fix goes), else the innermost; a path under the current
    directory is shown relative to it. Of a chain of exceptions, the last one (the one that ended
    the trial). A text without a traceback gives its first line (``the objective returned NaN ...``).
    """
    return str(read_error(text))


def error_headline(text: str | None) -> str:
    """The line that says what ended a trial: of a traceback, its exception line (``TrialCommandError:
    timed out after 2s ...``, not the last line of a message that goes on with the command's stderr); of
    a plain text, its last line. Empty for no text."""
    if not text or not text.strip():
        return ""
    summary = read_error(text)
    if summary.file is not None:
        return summary.exception
    return text.strip().splitlines()[-1].strip()


@dataclass
class FailureWatch:
    """Watches the first trials of one ``optimize()`` call: when the first :attr:`k` to finish all
    FAILED with the same error (same file, line and exception class), :meth:`observe` returns a
    warning, once; None otherwise, and None forever after a trial that did not fail or failed
    otherwise.

    Trials stopped by Ctrl-C (errors starting "interrupted") are not counted: they say nothing
    about the objective.

    Args:
        n_workers: trials at once in this call; ``k`` is :func:`first_trials` of it.
    """

    n_workers: int = 1
    k: int = field(init=False)
    finished: Counter[str] = field(init=False, default_factory=Counter)
    """The trials observed, by state, without the interrupted ones."""
    interrupted: int = field(init=False, default=0)
    """The trials observed that were stopped by an interrupt (FAIL, "interrupted: ...")."""
    _seen: list[tuple[int, ErrorSummary]] = field(init=False, default_factory=list)
    _done: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.k = first_trials(self.n_workers)

    def interrupted_message(self, still_running: int = 0) -> str:
        """The log line of an ``optimize()`` stopped by Ctrl-C: how many trials finished before it (kept as
        they ended) and how many were stopped (``still_running``: those never observed, e.g. the one the
        caller's own process was running, plus the observed interrupted ones), recorded FAIL."""
        done = sum(self.finished.values())
        stopped = self.interrupted + still_running
        if done:
            states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.finished.items()) if n)
            head = (f"{_count(done, 'trial')} finished in this run before the interrupt and keep their results "
                    f"({states})")
        else:
            head = "no trial finished in this run before the interrupt"
        if stopped:
            tail = (f"{_count(stopped, 'running trial')} {'was' if stopped == 1 else 'were'} stopped and recorded as "
                    f"FAIL (\"interrupted\"), {'its' if stopped == 1 else 'their'} checkpoints kept")
        else:
            tail = "no trial was running"
        return (f"interrupted: {head}; {tail}. Run it again (optimize(), or the same tunelab command) to resume "
                "the study")

    def observe(self, number: int, state: object, error: str | None, study: str | None = None) -> str | None:
        """A trial finished: its number, state (a :class:`~tunelab.records.TrialState` or its
        value, e.g. ``"FAIL"``) and error text. The warning to log, or None. ``study``: the study's
        name, for the command the warning shows (``tunelab trial STUDY N``)."""
        name = str(getattr(state, "value", state))
        if name == "FAIL" and (error or "").startswith("interrupted"):
            self.interrupted += 1
            return None
        self.finished[name] += 1
        if self._done:
            return None
        if name != "FAIL":
            self._done = True
            return None
        summary = read_error(error)
        if self._seen and summary.kind != self._seen[0][1].kind:
            self._done = True
            return None
        self._seen.append((number, summary))
        if len(self._seen) < self.k:
            return None
        self._done = True
        return repeated_failure_message([n for n, _ in self._seen], summary, study)


def repeated_failure_message(numbers: Sequence[int], summary: ErrorSummary, study: str | None = None) -> str:
    """The warning for trials ``numbers`` that all failed with ``summary``."""
    first = min(numbers)
    where = f"tunelab trial {shell_word(study)} {first}" if study is not None else f"study.trials[{first}].error"
    return (
        f"the first {len(numbers)} trials all failed with the same error: {summary}. It is probably a bug in "
        f"the objective rather than bad hyperparameters: fix it, or stop with Ctrl-C, before the rest of "
        f"the budget fails too; `{where}` shows the whole traceback"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def shell_word(text: str) -> str:
    """``text`` as one word of a shell command: as it is when plain, else in single quotes."""
    return text if re.fullmatch(r"[A-Za-z0-9._/-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def _is_user_file(path: str) -> bool:
    """Not an installed library, the standard library, tunelab, or Python's own frozen modules."""
    if path.startswith("<") and not path.startswith("<ipython-input"):
        return False  # <frozen importlib._bootstrap>, <string>
    if any(marker in path for marker in _LIBRARY_MARKERS):
        return False
    absolute = os.path.abspath(path)
    if absolute.startswith(_TUNELAB_DIR + os.sep):
        return False
    return not absolute.startswith(os.path.dirname(os.__file__) + os.sep)  # the standard library


def _shown_path(path: str) -> str:
    """A path under the current directory relative to it; any other as it is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith(os.pardir) else relative


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 3] + "..."


__all__ = ["ErrorSummary", "FailureWatch", "first_trials", "read_error", "repeated_failure_message",
           "shell_word", "summarize_error"]
