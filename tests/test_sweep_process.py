"""tunelab sweep: one trial's process, for real. Metric lines, tunelab.script inside and outside a sweep,
pruning by SIGTERM and SIGKILL, timeouts, exit codes, capped logs, leftovers killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tunelab.sweep.process import CommandResult, run_command

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


class Recorder:
    """``on_report``: keeps every report; says prune at ``prune_at`` (a step)."""

    def __init__(self, prune_at: int | None = None) -> None:
        self.prune_at = prune_at
        self.reports: list[tuple[int, dict[str, float]]] = []

    def __call__(self, step: int, metrics: dict[str, float]) -> bool:
        self.reports.append((step, metrics))
        return self.prune_at is not None and step >= self.prune_at


def run(tmp_path: Path, code: str, recorder: Recorder | None = None, *, shell: bool = False,
        **kw: object) -> tuple[CommandResult, Recorder]:
    rec = recorder or Recorder()
    if shell:
        script = tmp_path / "script.sh"
        script.write_text(textwrap.dedent(code))
        args: list[str] | str = ["/bin/sh", str(script)]
    else:
        script = tmp_path / "script.py"
        script.write_text(textwrap.dedent(code))
        args = [sys.executable, str(script)]
    result = run_command(args, shell=False, cwd=str(tmp_path), env=kw.pop("env", ENV),  # type: ignore[arg-type]
                         logs=tmp_path / "logs", log_limit=kw.pop("log_limit", 1 << 20),  # type: ignore[arg-type]
                         on_report=rec, **kw)  # type: ignore[arg-type]
    return result, rec


def test_json_lines_are_reported_and_the_value_is_the_last_one(tmp_path: Path) -> None:
    result, rec = run(tmp_path, """
        import json
        print("starting")
        for step in range(1, 4):
            print(json.dumps({"step": step, "val_loss": 1.0 / step, "val_acc": step / 10, "tag": "x"}))
        print('{"val_loss": 0.2}')  # no step: the one after the last
    """)
    assert result.returncode == 0 and not result.pruned
    assert rec.reports == [(1, {"val_loss": 1.0, "val_acc": 0.1}), (2, {"val_loss": 0.5, "val_acc": 0.2}),
                           (3, {"val_loss": 1 / 3, "val_acc": 0.3}), (4, {"val_loss": 0.2})]
    assert result.last["val_loss"] == 0.2 and result.value is None
    assert (tmp_path / "logs" / "stdout.log").read_text().startswith("starting\n")


def test_regex_lines_value_and_final(tmp_path: Path) -> None:
    result, rec = run(tmp_path, """
        import sys
        print("epoch 1 val_loss=0.9")
        print("epoch 2 val_loss=4.5e-01", file=sys.stderr)   # logging writes to stderr: read too
        print('{"final": {"val_loss": 0.3, "val_acc": 0.9}}')
        print('{"value": 0.25}')
    """, regexes=[r"epoch (?P<step>\d+) val_loss=(?P<val_loss>[\d.e-]+)"])
    assert rec.reports == [(1, {"val_loss": 0.9}), (2, {"val_loss": 0.45})]
    assert result.final == {"val_loss": 0.3, "val_acc": 0.9} and result.value == 0.25


def test_tunelab_script_reports_and_is_told_to_stop(tmp_path: Path) -> None:
    result, rec = run(tmp_path, """
        import sys, time
        import tunelab.script as ts
        assert ts.in_sweep()
        for step in range(1, 50):
            ts.report(step, val_loss=1.0 / step)
            if ts.should_prune():
                print("pruned at", step)
                sys.exit(0)
            time.sleep(0.01)
        print("never told")
    """, Recorder(prune_at=3), prune_grace=10.0)
    assert result.pruned and result.asked and result.returncode == 0
    assert result.signals == []  # it stopped by itself: no signal was needed
    assert [s for s, _ in rec.reports] == [1, 2, 3]
    assert result.stdout_tail == ["pruned at 3"]


def test_tunelab_script_outside_a_sweep_is_a_light_no_op(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys, time
        import tunelab.script as ts
        heavy = [m for m in ("numpy", "scipy", "sqlalchemy", "torch") if m in sys.modules]
        assert not heavy, heavy
        assert not ts.in_sweep() and ts.params() == {}
        ts.report(1, val_loss=0.5)
        assert ts.should_prune() is False
        ts.final(0.1)
        print("ok")
    """)
    env = {k: v for k, v in ENV.items() if not k.startswith("TUNELAB_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_one_report_costs_well_under_a_millisecond(tmp_path: Path) -> None:
    result, rec = run(tmp_path, """
        import time, json
        import tunelab.script as ts
        n = 2000
        start = time.perf_counter()
        for step in range(n):
            ts.report(step, val_loss=0.5, val_acc=0.9)
        per = (time.perf_counter() - start) / n
        print(json.dumps({"cost": per}))
    """)
    assert result.returncode == 0, result.stderr_tail
    assert len(rec.reports) == 2001  # every report arrived, and the printed line
    assert result.last["cost"] < 1e-3


def test_a_shell_script_that_cannot_ask_is_stopped_by_sigterm_and_keeps_its_curve(tmp_path: Path) -> None:
    started = time.monotonic()
    result, rec = run(tmp_path, """
        trap 'echo "got TERM" >&2; exit 3' TERM
        step=1
        while true; do
            echo "{\\"step\\": $step, \\"val_loss\\": 0.$step}"
            step=$((step + 1))
            sleep 0.05
        done
    """, Recorder(prune_at=3), shell=True, prune_grace=20.0)
    assert result.pruned and not result.asked
    assert result.signals == ["SIGTERM"] and result.returncode == 3
    assert [s for s, _ in rec.reports] == [1, 2, 3]  # nothing after the prune is reported
    assert time.monotonic() - started < 10
    assert "got TERM" in result.stderr_tail


def test_sigkill_follows_after_prune_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    result, rec = run(tmp_path, """
        import json, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        step = 1
        while True:
            print(json.dumps({"step": step, "val_loss": 1.0 / step}), flush=True)
            step += 1
            time.sleep(0.05)
    """, Recorder(prune_at=2), prune_grace=0.5)
    assert result.pruned and result.signals == ["SIGTERM", "SIGKILL"] and result.returncode == -9
    assert [s for s, _ in rec.reports] == [1, 2]


def test_a_non_zero_exit_keeps_the_end_of_stderr(tmp_path: Path) -> None:
    result, _ = run(tmp_path, """
        import sys
        print("loading")
        raise SystemExit("CUDA out of memory while allocating 2 GiB")
    """)
    assert result.returncode == 1 and not result.pruned
    assert result.stderr_tail[-1] == "CUDA out of memory while allocating 2 GiB"
    assert result.reports == 0


def test_a_missing_program_is_a_start_error(tmp_path: Path) -> None:
    result = run_command(["no-such-program-xyz", "--lr", "1"], shell=False, cwd=str(tmp_path), env=ENV,
                         logs=tmp_path / "logs", log_limit=1000, on_report=Recorder())
    assert result.returncode is None and result.start_error is not None
    assert "no-such-program-xyz" in result.start_error


def test_the_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result, _ = run(tmp_path, f"""
        sleep 60 &
        echo $! > {pid_file}
        wait
    """, shell=True, trial_timeout=0.5, prune_grace=2.0)
    assert result.timed_out and result.signals[0] == "SIGTERM"
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    assert not _alive(child)


def test_what_the_command_leaves_behind_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result, _ = run(tmp_path, f"""
        sleep 60 > /dev/null 2>&1 &
        echo $! > {pid_file}
        echo '{{"val_loss": 0.5}}'
    """, shell=True)
    assert result.returncode == 0 and result.last == {"val_loss": 0.5}
    assert not _alive(int(pid_file.read_text()))


def test_a_command_that_closed_its_output_is_polled_less_and_less(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # `exec >train.log 2>&1` closes the pipes while the command runs on: the worker polled its exit every 2 ms for
    # the rest of the trial (3% of a core per running trial)
    import selectors

    import tunelab.sweep.process as process

    go = tmp_path / "go"
    waits: list[float] = []

    class Counting(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            waits.append(float(timeout or 0.0))
            first = next((i for i, w in enumerate(waits) if w < 0.2), len(waits))
            if len(waits) - first >= 12:
                go.touch()  # the command ends a dozen polls after its output closed
            return super().select(timeout)

    monkeypatch.setattr(process.selectors, "DefaultSelector", Counting)
    result, _ = run(tmp_path, f"""
        echo '{{"val_loss": 0.5}}'
        exec >/dev/null 2>&1
        while [ ! -e {go} ]; do sleep 0.01; done
    """, shell=True)
    assert result.returncode == 0 and result.last == {"val_loss": 0.5}
    closed = waits[next(i for i, w in enumerate(waits) if w < 0.2):]
    assert closed[0] <= 0.002 and max(closed) >= 0.1, closed  # fine at first (it is usually exiting), then coarse


def test_logs_keep_the_head_and_the_tail_within_the_cap(tmp_path: Path) -> None:
    run(tmp_path, """
        for i in range(5000):
            print(f"line {i:05d} " + "x" * 40)
    """, log_limit=10_000)
    text = (tmp_path / "logs" / "stdout.log").read_text()
    assert len(text) < 10_200
    assert text.startswith("line 00000") and text.rstrip().endswith("line 04999 " + "x" * 40)
    assert "bytes cut by tunelab (log_limit_mb)" in text


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie child of ours counts as gone
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return False
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_both_logs_are_files(tmp_path: Path, stream: str) -> None:
    run(tmp_path, f"import sys; print('hello', file=sys.{stream})")
    assert (tmp_path / "logs" / f"{stream}.log").read_text() == "hello\n"
