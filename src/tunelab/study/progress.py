"""The progress bar of :meth:`Study.optimize`: trials done, running, failed, best value."""

from __future__ import annotations

import math
import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressDisplay:
    """A rich progress bar, or nothing when disabled (e.g. stdout is not a terminal)."""

    def __init__(
        self, enabled: bool | None, total: int | None, direction: str, console: Console | None = None,
        objective: str | None = None,
    ) -> None:
        """``objective``: with several objectives, the first one's name, shown beside its best value (the
        value a finished trial brings), so that it does not read as the study's best."""
        if enabled is None:
            enabled = sys.stdout.isatty()
        self.enabled = enabled
        self._direction = direction
        self._objective = objective
        self.done = 0
        self.failed = 0
        self.pruned = 0
        self.running = 0
        self.best: float | None = None
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]trials"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console or Console(),
                transient=False,
            )
            self._task = self._progress.add_task("trials", total=total, status=self._status())

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best:.6g}"
        if self._objective is not None:
            best = f"{self._objective} {best}"
        return (
            f"running {self.running}  failed {self.failed}  pruned {self.pruned}  best {best}"
        )

    def __enter__(self) -> ProgressDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()

    def started(self) -> None:
        """A trial started."""
        self.running += 1
        self._refresh()

    def withdrawn(self) -> None:
        """A started trial did not run after all (the sampler had nothing left for it)."""
        self.running = max(0, self.running - 1)
        self._refresh()

    def finished(self, state: str, value: float | None, feasible: bool = True) -> None:
        """A trial finished with ``state`` and ``value``; an infeasible one (``feasible`` False) is never
        the best."""
        self.running = max(0, self.running - 1)
        self.done += 1
        if state == "FAIL":
            self.failed += 1
        elif state == "PRUNED":
            self.pruned += 1
        elif value is not None and math.isfinite(value) and feasible:
            if self.best is None or (value < self.best if self._direction == "minimize" else value > self.best):
                self.best = value
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, status=self._status())
