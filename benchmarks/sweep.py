"""What `tunelab sweep` costs beyond the script's own run time.

- process start, measured apart: `python -c pass`, and the trial script run directly (a Python start and
  one printed JSON line);
- tunelab's overhead per trial: the slope of a sweep's wall time over its number of trials (two sweeps,
  N1 and N2 trials, one worker: the pool's start-up cancels out), minus the script's direct run time;
- one `tunelab.script.report()` inside a sweep (target: <= 1 ms, and <= 1% of a small training loop: one
  epoch of a tiny PyTorch MLP on digits, when torch and scikit-learn are there), and `should_prune()` after it
  (a round trip through the worker, which stores the report and asks the pruner);
- the same trials driven by Optuna's CLI from a shell loop (`optuna ask` / `optuna tell`), when
  `optuna` is installed in .venv-bench (`make bench-sweep` installs it); skipped otherwise.

    OMP_NUM_THREADS=1 python benchmarks/sweep.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
SCRIPT = 'import json, sys; print(json.dumps({"step": 1, "val_loss": float(sys.argv[1])}))'

REPORT_SCRIPT = """\
import json, sys, time
import tunelab.script as ts
n = int(sys.argv[1])
t0 = time.perf_counter()
for step in range(n):
    ts.report(step, val_loss=0.5, val_acc=0.9)
report = (time.perf_counter() - t0) / n
m = 50
t0 = time.perf_counter()
for step in range(n, n + m):
    ts.report(step, val_loss=0.5)
    ts.should_prune()
both = (time.perf_counter() - t0) / m
epoch = None
try:
    import torch
    from sklearn.datasets import load_digits
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for b in torch.randperm(len(x)).split(64):
            opt.zero_grad(); torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward(); opt.step()
        times.append(time.perf_counter() - t0)
    epoch = sorted(times)[2]
except ImportError:
    pass
print(json.dumps({"report": report, "report_and_should_prune": both, "epoch": epoch, "val_loss": 0.5}))
"""


def _median_run(cmd: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sweep(folder: Path, name: str, n_trials: int, command: str, pruner: str = "none") -> float:
    yaml = folder / f"{name}.yaml"
    yaml.write_text(textwrap.dedent(f"""\
        study: {name}
        storage: sqlite:///bench.db
        command: {command}
        parameters: {{x: {{type: float, low: 0.0, high: 1.0}}}}
        metric: val_loss
        sampler: random
        pruner: {pruner}
        n_trials: {n_trials}
        workers: 1
    """))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", str(yaml)], check=True, capture_output=True,
                   env=ENV, cwd=folder)
    return time.perf_counter() - t0


def _optuna(folder: Path, n_trials: int) -> float | None:
    optuna = shutil.which("optuna") or str(ROOT / ".venv-bench" / "bin" / "optuna")
    if not os.path.exists(optuna):
        return None
    storage = f"sqlite:///{folder / 'optuna.db'}"
    py = shlex.quote(sys.executable)
    opt = shlex.quote(optuna)
    space = shlex.quote(json.dumps({"x": {"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 1.0}}}))
    field = "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])"
    x_of = "import json,sys; print(json.load(sys.stdin)['params']['x'])"
    value_of = "import json,sys; print(json.loads(sys.stdin.readline())['val_loss'])"
    loop = textwrap.dedent(f"""\
        set -e
        {opt} create-study --study-name b --storage {storage} --direction minimize >/dev/null 2>&1
        i=0
        while [ $i -lt {n_trials} ]; do
            out=$({opt} ask --study-name b --storage {storage} --search-space {space} 2>/dev/null)
            num=$(echo "$out" | {py} -c {shlex.quote(field)} number)
            x=$(echo "$out" | {py} -c {shlex.quote(x_of)})
            val=$({py} -c {shlex.quote(SCRIPT)} "$x" | {py} -c {shlex.quote(value_of)})
            {opt} tell --study-name b --storage {storage} --trial-number $num --values $val >/dev/null 2>&1
            i=$((i + 1))
        done
    """)
    t0 = time.perf_counter()
    done = subprocess.run(["/bin/sh", "-c", loop], capture_output=True, env=ENV)
    if done.returncode != 0:
        return None
    return (time.perf_counter() - t0) / n_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer trials and repeats")
    args = parser.parse_args()
    n1, n2, repeats = (3, 10, 5) if args.quick else (5, 30, 15)  # n1: trials of the Optuna loop (quick)
    py = shlex.quote(sys.executable)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = _median_run([sys.executable, "-c", "pass"], repeats)
        direct = _median_run([sys.executable, "-c", SCRIPT, "0.5"], repeats)
        rows.append(("process start: python -c pass", f"{start * 1e3:.1f} ms", ""))
        rows.append(("the trial script run directly", f"{direct * 1e3:.1f} ms", "a Python start and one JSON line"))
        (folder / "trial.py").write_text(SCRIPT + "\n")
        command = f"{py} trial.py {{x}}"
        wall = _sweep(folder, "a", n2, command)
        sys.path.insert(0, str(SRC))
        import tunelab

        trials = tunelab.load_study("a", f"sqlite:///{folder / 'bench.db'}", sampler=tunelab.RandomSampler()).trials
        span = (trials[-1].datetime_complete - trials[0].datetime_start).total_seconds()  # type: ignore[operator]
        per_trial = span / len(trials)
        inside = statistics.mean(t.user_attrs["sweep"]["seconds"] for t in trials)
        rows.append(("a sweep trial of that script", f"{per_trial * 1e3:.1f} ms",
                     f"{n2} trials, 1 worker: first start to last end / {n2}"))
        rows.append(("  of which the command's own run", f"{inside * 1e3:.1f} ms",
                     "start to exit, as the worker saw it"))
        rows.append(("tunelab's overhead per trial", f"{(per_trial - direct) * 1e3:.1f} ms",
                     "sweep trial minus the direct run"))
        rows.append(("sweep start-up and exit (CLI, pool, study)", f"{wall - span:.2f} s", "once per `tunelab sweep`"))
        rep = folder / "report.py"
        rep.write_text(REPORT_SCRIPT)
        yaml = folder / "r.yaml"
        yaml.write_text(f"study: r\nstorage: sqlite:///bench.db\ncommand: {py} report.py {{n}}\n"
                        "parameters: {n: {type: int, low: 2000, high: 2000}}\nmetric: val_loss\nn_trials: 1\n"
                        "pruner: median\n")
        subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", str(yaml)], check=True, capture_output=True,
                       env=ENV, cwd=folder)
        study = tunelab.load_study("r", f"sqlite:///{folder / 'bench.db'}", sampler=tunelab.RandomSampler())
        final = {}
        log = (study.artifact_dir / "trial-0" / "stdout.log").read_text().strip().splitlines()
        for line in log:
            if '"report"' in line:
                final = json.loads(line)
        report = final["report"]
        rows.append(("tunelab.script.report()", f"{report * 1e6:.1f} us", "target <= 1 ms"))
        rows.append(("report() + should_prune()", f"{final['report_and_should_prune'] * 1e3:.2f} ms",
                     "waits for the worker to store it and ask the pruner"))
        if final.get("epoch"):
            rows.append(("one epoch of a tiny MLP on digits", f"{final['epoch'] * 1e3:.1f} ms",
                         f"report() is {100 * report / final['epoch']:.3f}% of it (target <= 1%)"))
        opt = _optuna(folder, n1 if args.quick else 10)
        if opt is None:
            rows.append(("optuna ask/tell from a shell loop", "skipped",
                         "no optuna CLI (make bench-sweep installs it)"))
        else:
            rows.append(("optuna ask/tell from a shell loop", f"{opt * 1e3:.1f} ms",
                         f"per trial; overhead {(opt - direct) * 1e3:.1f} ms"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'time':>12}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
