"""Checkpoints: where trials keep their state on disk, how it is written, and what is kept.

A study owns one folder (``study.artifact_dir``); each trial has ``trial-<number>/`` inside
it and each checkpoint is ``trial-<number>/step-<step>/``, written atomically (into a hidden
temporary folder that is renamed into place), so a reader never sees half a checkpoint.
The folder holds a marker, ``.tunelab-study`` (the study's name), written when tunelab creates
it: deleting the study deletes only a folder that proves to be its own (:func:`remove_study_folder`).
:class:`CheckpointPolicy` decides what is deleted and when.

``save_torch``, ``load_torch`` and ``Stateful`` (a PyTorch model, optimizer, scheduler and every
RNG state in one file) live in :mod:`tunelab.torch.checkpoint`, with all PyTorch code; use them as
``tunelab.save_torch`` / ``tunelab.load_torch`` (or from ``tunelab.torch``). This module stays
below the engine and never imports the PyTorch layer, not even lazily.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.engine import make_url

from tunelab.errors import ConfigError
from tunelab.records import TrialState

logger = logging.getLogger("tunelab")

DEFAULT_ROOT = "tunelab-artifacts"
BRANCHES_DIR = "branches"
MARKER = ".tunelab-study"
"""The file that marks a study's folder as made by tunelab for that study (it holds the name)."""
_MARKER_MAX = 1 << 16
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TRIAL_DIR = re.compile(r"^trial-(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STUDY_DIR = re.compile(r"^([A-Za-z0-9._-]+)-[0-9a-f]{8}$")


# -- policy --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointPolicy:
    """Which checkpoints a study keeps.

    - While a trial runs, writing a checkpoint at step ``s`` deletes the trial's checkpoints
      after ``s`` (the abandoned future of a roll-back) and all but its ``keep_last`` newest.
    - A trial that finishes COMPLETE keeps its newest checkpoint only; with
      ``keep_best_trials=k``, only the ``k`` best COMPLETE trials keep it (None: all do).
    - A trial that finishes PRUNED or FAIL loses its checkpoints, unless it was interrupted
      (Ctrl-C, a stopped worker): those keep theirs so that they can be resumed. A trial that
      is killed or lost (SIGKILL, timeout, heartbeat) keeps them as well.

    - ``keep_every=k`` also keeps, while a trial runs, every checkpoint whose step is a multiple
      of ``k`` (milestones to roll back to in a long run).
    - ``keep_log_spaced=True`` also keeps, while a trial runs, a sparse history: the first
      checkpoint at or after each step 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ... (two per
      doubling: ``2**k`` and ``3 * 2**(k-1)``), and the one at step 0, whatever the unit of the steps
      (epochs, or optimizer steps such as 100, 200, ...). One can roll back to within a third of any
      step, near or far. What it costs: for a trial that wrote every step 1..N, at most
      ``2 * log2(N)`` checkpoints besides the ``keep_last`` newest: 12 for 80 epochs (15 in all with
      ``keep_last=3``), 19 for 1,000 steps, 39 for a million; fewer when checkpoints are sparser.
      The default of babysat runs (:func:`tunelab.babysit.create_run`).
    - ``keep_finished=True`` keeps what a finished trial had, whatever its state: the branches
      of a babysat run stay there to roll back to, even those stopped for a roll-back.

    Args:
        keep_last: checkpoints kept per running trial (>= 1; the one just written always is).
        keep_best_trials: COMPLETE trials that keep their final checkpoint (>= 0), or None for all.
        keep_every: also keep the checkpoints at multiples of this step (>= 1), or None.
        keep_finished: no clean-up when a trial finishes.
        keep_log_spaced: also keep a log-spaced history of a running trial's checkpoints
            (:func:`log_spaced_steps`).
    """

    keep_last: int = 2
    keep_best_trials: int | None = None
    keep_every: int | None = None
    keep_finished: bool = False
    keep_log_spaced: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.keep_last) or self.keep_last < 1:
            raise ConfigError(
                f"CheckpointPolicy(keep_last=...) must be an integer >= 1, got {self.keep_last!r}; "
                "the checkpoint just written is always kept"
            )
        k = self.keep_best_trials
        if k is not None and (not _is_int(k) or k < 0):
            raise ConfigError(
                f"CheckpointPolicy(keep_best_trials=...) must be an integer >= 0 or None (keep every "
                f"COMPLETE trial's final checkpoint), got {k!r}"
            )
        e = self.keep_every
        if e is not None and (not _is_int(e) or e < 1):
            raise ConfigError(
                f"CheckpointPolicy(keep_every=...) must be an integer >= 1 (keep the checkpoints at multiples "
                f"of that step) or None, got {e!r}"
            )
        if not isinstance(self.keep_finished, bool):
            raise ConfigError(f"CheckpointPolicy(keep_finished=...) must be True or False, got {self.keep_finished!r}")
        if not isinstance(self.keep_log_spaced, bool):
            raise ConfigError(
                f"CheckpointPolicy(keep_log_spaced=...) must be True or False, got {self.keep_log_spaced!r}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON, stored with the study so that every worker applies the same policy."""
        out: dict[str, Any] = {"keep_last": self.keep_last, "keep_best_trials": self.keep_best_trials,
                               "keep_every": self.keep_every, "keep_finished": self.keep_finished}
        if self.keep_log_spaced:  # only when set: a study stored so stays readable by older versions
            out["keep_log_spaced"] = True
        return out

    def protected(self, steps: Sequence[int]) -> set[int]:
        """Which of a running trial's checkpoint ``steps`` (up to the one just written) stay beyond the
        ``keep_last`` newest: multiples of ``keep_every`` and, with ``keep_log_spaced``, the log-spaced ones."""
        kept: set[int] = set()
        if self.keep_every is not None:
            kept.update(s for s in steps if s % self.keep_every == 0)
        if self.keep_log_spaced:
            kept.update(log_spaced_steps(steps))
        return kept

    @classmethod
    def from_description(cls, description: Mapping[str, Any] | None) -> CheckpointPolicy:
        """The policy :meth:`describe` described (the default for None)."""
        return cls(**description) if description else cls()


def log_bucket(step: int) -> int:
    """The log-spaced bucket of ``step``: 0 for step 0, then two per doubling, starting at 1, 2, 3, 4, 6,
    8, 12, 16, 24, ... (``2**k`` and ``3 * 2**(k-1)``)."""
    if step <= 0:
        return 0
    k = step.bit_length() - 1  # 2**k <= step < 2**(k+1)
    upper_half = k >= 1 and step >= 3 << (k - 1)
    return 1 + 2 * k + int(upper_half)


def log_spaced_steps(steps: Iterable[int]) -> set[int]:
    """The lowest of ``steps`` in each :func:`log_bucket`: a sparse history that stays the same as later
    steps are written (a later step is never lower than the one already kept in its bucket). For steps
    1..80: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64."""
    lowest: dict[int, int] = {}
    for s in steps:
        b = log_bucket(s)
        if b not in lowest or s < lowest[b]:
            lowest[b] = s
    return set(lowest.values())


class Checkpoint(NamedTuple):
    """One stored checkpoint: its step and its folder."""

    step: int
    path: Path


# -- where things live --------------------------------------------------------------------
def safe_name(name: str) -> str:
    """``name`` as one harmless path component: letters, digits, '.', '_' and '-' only, never
    hidden, '.' or '..', at most 64 characters."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".-")[:64]
    return cleaned or "study"


def default_artifact_root(storage_url: str | None) -> Path:
    """``<db file>.artifacts`` beside an SQLite file, else ``./tunelab-artifacts`` (absolute)."""
    if storage_url:
        url = make_url(storage_url)
        db = url.database
        if url.get_backend_name() == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
            return Path(os.path.abspath(db + ".artifacts"))
    return Path.cwd() / DEFAULT_ROOT


def new_study_folder(artifact_dir: str | os.PathLike[str] | None, storage_url: str | None, name: str) -> Path:
    """A new, unique, absolute folder for study ``name``: ``<root>/<safe name>-<8 hex digits>``.

    The suffix keeps a deleted and recreated study, or a study of the same name in another
    storage, from ever seeing another's checkpoints. Nothing is created on disk yet.
    """
    if artifact_dir is None:
        root = default_artifact_root(storage_url)
    elif isinstance(artifact_dir, (str, os.PathLike)) and os.fspath(artifact_dir):
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(artifact_dir))))
    else:
        raise ConfigError(f"artifact_dir must be a folder path (or None for the default), got {artifact_dir!r}")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"artifact_dir {str(root)!r} is a file; pass a folder (it is created when needed)")
    return root / f"{safe_name(name)}-{secrets.token_hex(4)}"


# -- the study's folder -------------------------------------------------------------------
class CheckpointStore:
    """The checkpoint folders of one study: ``<root>/trial-<n>/step-<s>/``, and the policy.

    ``name``: the study's; when given, the store marks the root it creates as that study's
    (:data:`MARKER`). A root that exists already is never marked: it may be anyone's folder.
    """

    def __init__(self, root: Path, policy: CheckpointPolicy, name: str | None = None) -> None:
        self.root = root
        self.policy = policy
        self.name = name

    def trial_dir(self, number: int, create: bool = False) -> Path:
        """The folder of trial ``number`` (made, with its parents, when ``create``)."""
        if not _is_int(number) or number < 0:
            raise ConfigError(f"a trial number must be a non-negative integer, got {number!r}")
        path = self.root / f"trial-{number}"
        if create:
            self._make_root()
            path.mkdir(exist_ok=True)
        return path

    def _make_root(self) -> None:
        """Create the study's folder (and its parents) if missing, marked as this study's."""
        if self.root.is_dir():
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir()
        except FileExistsError:
            return  # another worker made it (and marks it), or it is not ours to mark
        if self.name is not None:
            write_marker(self.root, self.name)

    def checkpoints(self, number: int) -> list[Checkpoint]:
        """The checkpoints of trial ``number``, oldest step first."""
        try:
            entries = list(os.scandir(self.trial_dir(number)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            m = _STEP_DIR.match(entry.name)
            if m and entry.is_dir():
                found.append(Checkpoint(int(m.group(1)), Path(entry.path)))
        return sorted(found)

    def find(self, number: int, step: int | None = None) -> Checkpoint | None:
        """Trial ``number``'s checkpoint at ``step`` (its newest when None), or None."""
        kept = self.checkpoints(number)
        if step is None:
            return kept[-1] if kept else None
        return next((c for c in kept if c.step == step), None)

    def write(self, number: int, step: int) -> AbstractContextManager[Path]:
        """A context manager yielding an empty folder; on success it becomes ``step-<step>``
        (replacing one of that step), later steps are dropped and the policy's ``keep_last``
        applied. On an exception nothing is left behind."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"checkpoint(step=...) must be a non-negative integer, got {step!r}")
        self.trial_dir(number)  # checks the number now
        return self._writing(number, step)

    @contextmanager
    def _writing(self, number: int, step: int) -> Iterator[Path]:
        folder = self.trial_dir(number, create=True)
        tmp = folder / f".tmp-step-{step}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            yield tmp
            _sync_tree(tmp)
            final = folder / f"step-{step}"
            if final.exists():  # re-written after a roll-back: swap, then drop the old one
                old = folder / f".old-step-{step}-{secrets.token_hex(4)}"
                final.rename(old)
                tmp.rename(final)
                _remove(old)
            else:
                tmp.rename(final)
            _sync_dir(folder)
        except BaseException:
            _remove(tmp)
            raise
        self._after_write(number, step)

    def _after_write(self, number: int, step: int) -> None:
        kept = self.checkpoints(number)
        later = [c for c in kept if c.step > step]
        up_to = [c for c in kept if c.step <= step]
        protected = self.policy.protected([c.step for c in up_to])
        older = [c for c in up_to[: -self.policy.keep_last] if c.step not in protected]
        for c in later + older:
            _remove(c.path)
        for stale in self.trial_dir(number).glob(".*-step-*"):  # left by a writer that was killed
            _remove(stale)

    def retire(
        self, number: int, state: TrialState, interrupted: bool, ranked: Callable[[], Sequence[int]]
    ) -> None:
        """Apply the policy to trial ``number``, which just finished in ``state``.

        ``ranked()`` gives the COMPLETE trials' numbers, best first (asked only when needed).
        Never raises for a file that cannot be removed: it logs a warning.
        """
        try:
            self._retire(number, state, interrupted, ranked)
        except OSError as e:
            logger.warning("could not apply the checkpoint policy to trial %d: %s", number, e)

    def _retire(
        self, number: int, state: TrialState, interrupted: bool, ranked: Callable[[], Sequence[int]]
    ) -> None:
        if not self.root.is_dir() or self.policy.keep_finished:
            return  # the study never wrote a checkpoint, or keeps them all
        if state == TrialState.COMPLETE:
            for c in self.checkpoints(number)[:-1]:
                _remove(c.path)
            k = self.policy.keep_best_trials
            if k is not None:
                have = set(self.trials())
                for n in ranked()[k:]:
                    if n in have:
                        self.discard(n)
        elif not interrupted:
            self.discard(number)

    def snapshot(self, number: int, step: int) -> Checkpoint:
        """Copy trial ``number``'s checkpoint at ``step`` into a folder of its own,
        ``<root>/branches/trial-<number>-step-<step>-<8 hex>``, which no policy removes: the start
        of a branch, which must outlive the original's clean-up. The copy is complete before this
        returns (written aside, then renamed). ConfigError if that checkpoint is not kept.

        Symbolic links inside the checkpoint are copied as links, never the files they point to
        (a link to a file outside, say a key, must not become a copy of it); a checkpoint folder
        that is itself a link is refused."""
        found = self.find(number, step)
        if found is None:
            kept = [c.step for c in self.checkpoints(number)]
            raise ConfigError(
                f"trial {number} keeps no checkpoint at step {step}; "
                + (f"it keeps {', '.join(map(str, kept))}: roll back to one of those" if kept else
                   "it keeps none (its loop wrote none through trial.checkpoint(step), or they were removed): roll "
                   "back from a trial that keeps one (tunelab tree lists them)")
            )
        if found.path.is_symlink():
            raise ConfigError(f"the checkpoint {str(found.path)!r} is a symbolic link, not a folder that tunelab "
                              "wrote: it is not copied into a branch")
        folder = self.root / BRANCHES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = f"trial-{number}-step-{step}-{secrets.token_hex(4)}"
        tmp = folder / f".tmp-{name}"
        try:
            shutil.copytree(found.path, tmp, symlinks=True)
            _sync_tree(tmp)
            tmp.rename(folder / name)
            _sync_dir(folder)
        except BaseException:
            _remove(tmp)
            raise
        return Checkpoint(step, folder / name)

    def discard(self, number: int) -> None:
        """Delete every checkpoint of trial ``number`` (other files in its folder stay)."""
        folder = self.trial_dir(number)
        if not folder.is_dir():
            return
        for c in self.checkpoints(number):
            _remove(c.path)
        for stale in folder.glob(".*-step-*"):
            _remove(stale)
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: the user's own files, or gone already

    def trials(self) -> list[int]:
        """Numbers of the trials that have a folder."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_TRIAL_DIR.match, names) if m)

    def delete_all(self) -> None:
        """Delete the study's folder and everything in it."""
        _remove(self.root)


def store_for_study(system_attrs: Mapping[str, Any], storage_url: str | None, name: str) -> CheckpointStore:
    """The checkpoint store of a study, from what :func:`create_study` stored with it."""
    folder = system_attrs.get("artifact_dir")
    # A study created before checkpoints existed: a folder named after it under the default root.
    root = Path(folder) if folder else default_artifact_root(storage_url) / safe_name(name)
    return CheckpointStore(root, CheckpointPolicy.from_description(system_attrs.get("checkpoint_policy")), name)


def write_marker(folder: Path, name: str) -> None:
    """Mark ``folder`` as study ``name``'s folder, made by tunelab (:data:`MARKER`)."""
    try:
        (folder / MARKER).write_text(name, encoding="utf-8")
    except OSError as e:
        logger.warning("could not mark %s as the folder of study %r: %s", folder, name, e)


def read_marker(folder: Path) -> str | None:
    """The study name in ``folder``'s marker, or None (no marker, or a marker that is not a plain file)."""
    marker = folder / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return None
        with open(marker, "rb") as f:
            data = f.read(_MARKER_MAX + 1)
    except OSError:
        return None
    if len(data) > _MARKER_MAX:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def study_folder_refusal(folder: Path, name: str | None = None) -> str | None:
    """Why ``folder`` is not to be deleted as the folder of study ``name`` (any study when None),
    or None when it is that study's own folder:

    - a folder tunelab made holds the marker naming the study, and is named ``<safe name>-<8 hex>``;
    - a folder made before markers existed has no marker: it is taken as the study's only when it
      is named ``<safe name>-<8 hex>`` and holds nothing but ``trial-<n>`` and ``branches`` folders.

    Never a symbolic link (the folder itself or its entries): those are not followed.
    """
    if folder.is_symlink():
        return "it is a symbolic link"
    if not folder.is_dir():
        return "it is not a folder"
    m = _STUDY_DIR.match(folder.name)
    marked = read_marker(folder)
    if marked is not None:
        if name is not None and marked != name:
            return f"its marker ({MARKER}) names another study, {marked!r}"
        if m is None or m.group(1) != safe_name(marked):
            return f"its name does not match the study its marker ({MARKER}) names, {marked!r}"
        return None
    if (folder / MARKER).exists() or (folder / MARKER).is_symlink():
        return f"its marker ({MARKER}) is not a plain file naming the study"
    if m is None or (name is not None and m.group(1) != safe_name(name)):
        return f"it has no marker ({MARKER}) and is not named like a study folder of tunelab (<name>-<8 hex digits>)"
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        return f"it cannot be read ({e.strerror})"
    for entry in entries:
        if not (_TRIAL_DIR.match(entry.name) or entry.name == BRANCHES_DIR) or not entry.is_dir(follow_symlinks=False):
            return (f"it has no marker ({MARKER}) and holds {entry.name!r}, which tunelab does not write "
                    "(only trial-<n> and branches folders)")
    return None


def remove_study_folder(system_attrs: Mapping[str, Any], name: str | None = None) -> bool:
    """Delete the folder of a deleted study (``system_attrs["artifact_dir"]``), only if it is that
    study's own folder (:func:`study_folder_refusal`): a database names the folder, and whoever can
    write a shared database must not be able to delete a folder of this machine's. Otherwise the
    folder stays and a warning says why. Symbolic links inside are deleted, never followed.
    Returns whether the folder was deleted."""
    folder = system_attrs.get("artifact_dir")
    if not folder or not isinstance(folder, str):
        return False
    path = Path(folder)
    if not os.path.lexists(path):
        return False
    why = study_folder_refusal(path, name)
    if why is not None:
        logger.warning("not deleting the study's folder %s: %s. If it holds only this study's checkpoints, "
                       "delete it by hand.", path, why)
        return False
    _remove(path)
    return not os.path.lexists(path)


def _remove(path: Path) -> None:
    """Delete a file or a folder tree; a concurrent deleter is fine, other errors are logged."""
    for _ in range(3):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            return
        except FileNotFoundError:
            if not os.path.lexists(path):
                return
        except OSError as e:
            logger.warning("could not delete %s: %s", path, e)
            return


def _sync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` to disk, then the folders themselves (symbolic links are
    not followed: what they point to is not ours)."""
    for dirpath, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(dirpath))


def _sync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder to flush it
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# -- the PyTorch state, moved to tunelab.torch.checkpoint ----------------------------------

