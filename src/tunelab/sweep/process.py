"""One trial's process: start it, read what it prints and reports, keep its logs, prune or time it out.

:func:`run_command` starts the command in a session of its own (``start_new_session=True``: its process
group holds everything it starts) and reads three streams at once with a selector: stdout and stderr
(kept as log files, parsed for metric lines) and the report FIFO that :mod:`tunelab.script` writes to.
Each report goes to ``on_report(step, metrics)``, which stores it and answers whether the pruner stops the
trial. When it does:

- the file ``TUNELAB_PRUNE_FILE`` is created (what :func:`tunelab.script.should_prune` and any script
  can check);
- a script that reported through :mod:`tunelab.script` (it can ask) gets ``prune_grace`` seconds to end
  by itself; one that only prints is not asked: its process group gets SIGTERM at once. Either way,
  SIGKILL follows ``prune_grace`` seconds after the SIGTERM.

``trial_timeout`` ends the process group the same way (SIGTERM, then SIGKILL). When the command's own
process has exited, whatever it left running in its group is killed. An interrupt of the worker (Ctrl-C
of the sweep, its driver killed) kills the group at once (SIGTERM, SIGKILL a second later).
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.sweep.metrics import Event, MetricParser, from_record

TAIL_LINES = 30
_MAX_LINE = 1 << 20
_LINE_SHOWN = 500


@dataclass
class CommandResult:
    """How one trial's command ended and what it said."""

    returncode: int | None
    """The exit code; negative: killed by that signal; None: it could not be started."""
    elapsed: float
    pruned: bool = False
    timed_out: bool = False
    start_error: str | None = None
    """Why the command could not be started (no such program, permission denied)."""
    reports: int = 0
    """Reports applied (printed lines and :mod:`tunelab.script` calls)."""
    asked: bool = False
    """Whether the script reported through :mod:`tunelab.script`."""
    value: float | None = None
    final: dict[str, float] | None = None
    last: dict[str, float] = field(default_factory=dict)
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    """The signals tunelab sent to the process group, in order."""


class LogFile:
    """A log kept on disk within ``limit`` bytes: the head as it comes, the tail kept in memory and
    written after a marker line when the command ends (so a long run keeps its start and its end)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self._head = max(limit // 2, 1)
        self._tail_limit = max(limit - self._head, 1)
        self._file = open(path, "wb", buffering=0)  # closed in close()
        self._written = 0
        self._tail = bytearray()
        self._cut = 0

    def write(self, data: bytes) -> None:
        if self._written < self._head:
            part = data[: self._head - self._written]
            self._file.write(part)
            self._written += len(part)
            data = data[len(part):]
        if data:
            self._tail += data
            extra = len(self._tail) - self._tail_limit
            if extra > 0:
                del self._tail[:extra]
                self._cut += extra

    def close(self) -> None:
        if self._file.closed:
            return
        if self._cut:
            self._file.write(f"\n[... {self._cut} bytes cut by tunelab (log_limit_mb) ...]\n".encode())
        self._file.write(bytes(self._tail))
        self._file.close()


class _Stream:
    def __init__(self, name: str, log: LogFile | None) -> None:
        self.name = name
        self.log = log
        self.partial = b""
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)


def run_command(
    args: Sequence[str] | str,
    *,
    shell: bool,
    cwd: str,
    env: Mapping[str, str],
    logs: Path,
    log_limit: int,
    on_report: Callable[[int, dict[str, float]], bool],
    regexes: Sequence[str] = (),
    trial_timeout: float | None = None,
    prune_grace: float = 30.0,
) -> CommandResult:
    """Run one trial's command to its end (see the module's docstring). ``env`` is completed with the
    report channel's variables; ``logs`` is the folder of ``stdout.log`` and ``stderr.log``."""
    channel = tempfile.mkdtemp(prefix="tunelab-trial-")
    fifo = os.path.join(channel, "report.fifo")
    prune_file = os.path.join(channel, "prune")
    ack_file = os.path.join(channel, "ack")
    os.mkfifo(fifo, 0o600)
    read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ours: the FIFO never reads as closed
    full_env = {**env, "TUNELAB_REPORT_FIFO": fifo, "TUNELAB_PRUNE_FILE": prune_file, "TUNELAB_ACK_FILE": ack_file}
    logs.mkdir(parents=True, exist_ok=True)
    out = _Stream("stdout", LogFile(logs / "stdout.log", log_limit))
    err = _Stream("stderr", LogFile(logs / "stderr.log", log_limit))
    parser = MetricParser(regexes)
    started = time.monotonic()
    result = CommandResult(returncode=None, elapsed=0.0)
    state = _State()
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            proc = subprocess.Popen(
                args, shell=shell, cwd=cwd, env=dict(full_env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as e:
            result.start_error = f"{e.strerror or e}: {e.filename or (args if isinstance(args, str) else args[0])}"
            result.stderr_tail = [result.start_error]
            if err.log is not None:
                err.log.write((result.start_error + "\n").encode())
            return result
        assert proc.stdout is not None and proc.stderr is not None

        def handle(event: Event) -> None:
            if event.value is not None:
                result.value = event.value
            if event.final:
                result.final = event.final
            if not event.metrics or result.pruned:
                return
            step = event.step if event.step is not None else state.last_step + 1
            state.last_step = step
            result.last.update(event.metrics)
            result.reports += 1
            if on_report(step, dict(event.metrics)):
                result.pruned = True
                with open(prune_file, "wb"):
                    pass
                now = time.monotonic()
                # a script that asks gets prune_grace to end by itself; one that only prints is stopped now
                state.term_at = now + prune_grace if result.asked else now

        sel = selectors.DefaultSelector()
        for stream, pipe in ((out, proc.stdout), (err, proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe.fileno(), selectors.EVENT_READ, stream)
        sel.register(read_fd, selectors.EVENT_READ, None)
        fifo_partial = b""
        applied = 0
        exited_at: float | None = None
        closed_polls = 0
        while True:
            now = time.monotonic()
            if trial_timeout is not None and not result.timed_out and now - started > trial_timeout \
                    and exited_at is None:
                result.timed_out = True
                state.term_at = now
            if state.term_at is not None and exited_at is None:
                if state.term_sent is None and now >= state.term_at:
                    _signal_group(proc.pid, signal.SIGTERM, result)
                    state.term_sent = now
                elif state.term_sent is not None and not state.killed and now >= state.term_sent + prune_grace:
                    _signal_group(proc.pid, signal.SIGKILL, result)
                    state.killed = True
            wait = 0.2
            if not any(k.data is not None for k in sel.get_map().values()):
                # its output is closed: usually it is exiting, and only its exit is left to see (poll finely);
                # a command that closed its output and runs on (`exec >train.log 2>&1`) is polled less and less
                wait = min(0.2, 0.002 * 2 ** closed_polls)
                closed_polls += 1
            if state.term_at is not None and state.term_sent is None:
                wait = max(0.0, min(wait, state.term_at - now))
            for key, _ in sel.select(timeout=wait):
                fd = int(key.fd)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if key.data is None:  # the report FIFO: JSON lines from tunelab.script
                    fifo_partial += data
                    *lines, fifo_partial = fifo_partial.split(b"\n")
                    for raw in lines:
                        event = _fifo_event(raw)
                        result.asked = True
                        if event is not None:
                            handle(event)
                        applied += 1
                    if lines:
                        _write_ack(ack_file, applied)
                    continue
                source: _Stream = key.data
                if not data:
                    sel.unregister(fd)
                    continue
                for line in _lines(source, data):
                    event = parser.parse(line)
                    if event is not None:
                        handle(event)
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None:
                open_pipes = [k for k in sel.get_map().values() if k.data is not None]
                # the pipes close when the last process holding them ends; a leftover child may hold them
                if not open_pipes or time.monotonic() - exited_at > 1.0:
                    break
        for raw in _drain(read_fd, fifo_partial):
            event = _fifo_event(raw)
            if event is not None:
                result.asked = True
                handle(event)
        sel.close()
        for stream in (out, err):
            if stream.partial:
                line = stream.partial.decode("utf-8", "replace")
                stream.partial = b""
                stream.tail.append(line[:_LINE_SHOWN])
                event = parser.parse(line)
                if event is not None:
                    handle(event)
        result.returncode = proc.returncode
    except BaseException:
        if proc is not None and proc.poll() is None:  # interrupted (Ctrl-C, the driver died): end it now
            _signal_group(proc.pid, signal.SIGTERM, result)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
        raise
    finally:
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL, result, quiet=True)  # whatever it left behind
            proc.wait()
            for handle_ in (proc.stdout, proc.stderr):
                if handle_ is not None:
                    handle_.close()
        for stream in (out, err):
            if stream.log is not None:
                stream.log.close()
        for fd in (read_fd, keep_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        for name in (fifo, prune_file, ack_file, ack_file + ".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(name)
        with contextlib.suppress(OSError):
            os.rmdir(channel)
        result.elapsed = time.monotonic() - started
        result.stdout_tail = list(out.tail)
        result.stderr_tail = list(err.tail) or result.stderr_tail
    return result


@dataclass
class _State:
    last_step: int = 0
    term_at: float | None = None
    term_sent: float | None = None
    killed: bool = False


def _lines(stream: _Stream, data: bytes) -> list[str]:
    if stream.log is not None:
        stream.log.write(data)
    buf = stream.partial + data
    *complete, rest = buf.split(b"\n")
    if len(rest) > _MAX_LINE:  # a line without end: take it as it is
        complete.append(rest)
        rest = b""
    stream.partial = rest
    out = [raw.decode("utf-8", "replace").rstrip("\r") for raw in complete]
    for line in out:
        stream.tail.append(line[:_LINE_SHOWN])
    return out


def _fifo_event(raw: bytes) -> Event | None:
    import json

    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return from_record(data) if isinstance(data, dict) else None


def _drain(fd: int, partial: bytes) -> list[bytes]:
    """The lines left in the FIFO (reports written just before the script ended)."""
    buf = partial
    while True:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        buf += data
    return [raw for raw in buf.split(b"\n") if raw.strip()]


def _write_ack(path: str, applied: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(applied))
    os.replace(tmp, path)


def _signal_group(pid: int, sig: signal.Signals, result: CommandResult, quiet: bool = False) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return
    if not quiet:
        result.signals.append(sig.name)
