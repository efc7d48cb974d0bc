"""The logs a sweep keeps of each trial: ``stdout.log`` and ``stderr.log`` in the trial's folder of the
study's artifact folder (``<artifact_dir>/trial-<n>/``), and their tails for the CLI and the dashboard."""

from __future__ import annotations

import os
from pathlib import Path

from tunelab.study import Study

LOG_FILES = ("stdout", "stderr")
MAX_TAIL_BYTES = 64 * 1024


def log_paths(study: Study, number: int) -> dict[str, Path]:
    """``{"stdout": path, "stderr": path}`` of trial ``number`` (the files may not exist)."""
    folder = study.artifact_dir / f"trial-{int(number)}"
    return {name: folder / f"{name}.log" for name in LOG_FILES}


def read_tail(path: Path, lines: int = 50, max_bytes: int = MAX_TAIL_BYTES) -> str | None:
    """The last ``lines`` lines of a text file (read from at most its last ``max_bytes``), or None when it
    does not exist; one that exists but cannot be read (no permission: the dashboard runs as another user
    than the sweep) is a line saying why."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as e:
        return f"(cannot read {path}: {e.strerror or e})"
    text = data.decode("utf-8", "replace")
    parts = text.splitlines()
    if start > 0 and parts:
        parts = parts[1:]  # the first line read may be cut
    return "\n".join(parts[-lines:]) if lines > 0 else ""


def trial_logs(study: Study, number: int, lines: int = 50) -> dict[str, str | None]:
    """The tails of trial ``number``'s logs, ``{"stdout": text or None, "stderr": ...}``."""
    return {name: read_tail(path, lines) for name, path in log_paths(study, number).items()}
