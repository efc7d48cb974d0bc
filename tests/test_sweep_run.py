"""tunelab sweep end to end: real processes, a real SQLite file, the CLI, the dashboard's route.

The parameters reach the script three ways; a failing command FAILs its trial with its stderr; a command
that fails at start-up stops the sweep; a study is resumed to exactly n_trials, after SIGKILL too."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tunelab
from tunelab.errors import SweepConfigError, SweepStartError
from tunelab.records import TrialState
from tunelab.sweep import config_from_text, load_config, run_sweep
from tunelab.sweep.logs import trial_logs
from tunelab.sweep.run import check_sweep, counted

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
PY = shlex.quote(sys.executable)


@pytest.fixture(autouse=True)
def _src_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # the worker processes and the commands inherit this: they import the tunelab under test
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("PY", PY))
    return path


def cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunelab.cli", *args], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def study_of(tmp_path: Path, name: str, db: str = "t.db") -> tunelab.Study:
    return tunelab.load_study(name, f"sqlite:///{tmp_path / db}", sampler=tunelab.RandomSampler())


ECHO = """\
import json, os, sys
out = {"argv": sys.argv[1:], "params": json.loads(os.environ["TUNELAB_PARAMS"]),
       "lr_var": os.environ["TUNELAB_PARAM_LR"], "file": json.load(open(os.environ["TUNELAB_PARAMS_FILE"])),
       "trial": os.environ["TUNELAB_TRIAL_NUMBER"], "cwd": os.getcwd()}
with open("seen-%s.json" % out["trial"], "w") as f:
    json.dump(out, f)
print(json.dumps({"step": 1, "val_loss": float(os.environ["TUNELAB_PARAM_LR"])}))
"""


def test_parameters_reach_the_script_three_ways_with_hydra_overrides(tmp_path: Path) -> None:
    write(tmp_path, "echo.py", ECHO)
    sweep = write(tmp_path, "sweep.yaml", """\
        study: echo
        storage: sqlite:///t.db
        command: PY echo.py optimizer.lr={lr} model.name={name} --momentum {momentum?}
        parameters:
          lr: {type: float, low: 0.001, high: 0.1, log: true}
          name: {type: categorical, choices: ["a b", "c;d"]}
          momentum: {type: float, low: 0.0, high: 0.9, when: {name: "a b"}}
        metric: val_loss
        sampler: {type: random}
        n_trials: 4
        seed: 1
    """)
    summary = run_sweep(load_config(sweep), show_progress=False)
    assert summary.states == {"COMPLETE": 4}
    study = study_of(tmp_path, "echo")
    for t in study.trials:
        seen = json.loads((tmp_path / f"seen-{t.number}.json").read_text())
        lr = t.params["lr"]
        expected = [f"optimizer.lr={lr!r}", f"model.name={t.params['name']}"]
        if "momentum" in t.params:
            expected += ["--momentum", repr(t.params["momentum"])]
        assert seen["argv"] == expected
        assert seen["params"] == seen["file"] == dict(t.params)
        assert float(seen["lr_var"]) == lr and t.value == lr
        assert seen["cwd"] == str(tmp_path.resolve())
        assert t.user_attrs["sweep"]["exit_code"] == 0


def test_failures_keep_stderr_and_an_unreported_metric_says_what_was_printed(tmp_path: Path) -> None:
    write(tmp_path, "flaky.py", """\
        import sys, time
        lr = float(sys.argv[1])
        time.sleep(0.2)
        if lr > 0.5:
            print('{"step": 1, "val_loss": 0.3}')
            sys.exit("diverged: loss is nan")
        print("trained, but printed no metric")
    """)
    sweep = write(tmp_path, "sweep.yaml", """\
        study: flaky
        storage: sqlite:///t.db
        command: PY flaky.py {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        sampler: grid
        n_trials: 4
        start_failure_seconds: 0.01
    """)
    run_sweep(load_config(sweep), show_progress=False)
    trials = study_of(tmp_path, "flaky").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 4
    for t in trials:
        if t.params["lr"] > 0.5:
            assert "the command exited with code 1" in (t.error or "") and "diverged: loss is nan" in (t.error or "")
            assert study_of(tmp_path, "flaky").get_curves(t.number)["val_loss"][1] == [0.3]  # its curve is kept
        else:
            assert "no val_loss was reported; the script printed: trained, but printed no metric" in (t.error or "")


def test_consecutive_start_failures_stop_the_sweep_with_the_cli_s_one_line(tmp_path: Path) -> None:
    write(tmp_path, "sweep.yaml", """\
        study: typo
        storage: sqlite:///t.db
        command: PY trian.py --lr {lr}
        parameters: {lr: {type: float, low: 0.001, high: 0.1}}
        metric: val_loss
        n_trials: 20
        workers: 2
        max_start_failures: 3
    """)
    done = cli(tmp_path, "sweep", "sweep.yaml")
    assert done.returncode == 2, done.stderr
    err = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert "sweep.yaml:3: command: the last 3 trials failed at start-up" in err[0]
    assert "trian.py" in err[0] and "exited with code 2" in err[0]
    trials = study_of(tmp_path, "typo").trials
    assert 3 <= len(trials) <= 5  # stopped, not 20


def test_start_failures_raise_from_run_sweep(tmp_path: Path) -> None:
    config = config_from_text(f"study: x\nstorage: sqlite:///t.db\ncommand: {PY} -c 'import sys; sys.exit(3)' {{lr}}\n"
                              "parameters: {lr: {type: float, low: 0.0, high: 1.0}}\nmetric: m\nn_trials: 9\n"
                              "max_start_failures: 2\n", tmp_path)
    with pytest.raises(SweepStartError, match="the last 2 trials failed at start-up"):
        run_sweep(config, show_progress=False)


LOOP_SH = """\
# prints a learning curve and never imports tunelab; a pruned trial is ended by SIGTERM
lr=$1
step=1
while [ $step -le 9 ]; do
    loss=$(awk "BEGIN { print ($lr - 0.3) ^ 2 + 1 / $step }")
    echo "{\\"step\\": $step, \\"val_loss\\": $loss}"
    step=$((step + 1))
    sleep 0.02
done
"""


def test_logs_are_kept_and_shown_by_the_cli_and_the_dashboard(tmp_path: Path) -> None:
    write(tmp_path, "train.sh", LOOP_SH + 'echo "done with lr=$lr <b>bold</b>" >&2\n')
    sweep = write(tmp_path, "sweep.yaml", """\
        study: logs
        storage: sqlite:///t.db
        command: /bin/sh train.sh {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        n_trials: 1
    """)
    done = cli(tmp_path, "sweep", str(sweep))
    assert done.returncode == 0, done.stderr
    assert "study 'logs': 1 complete (1 counted of 1; 1 run now)" in done.stdout
    study = study_of(tmp_path, "logs")
    logs = trial_logs(study, 0, lines=3)
    assert logs["stderr"] is not None and logs["stderr"].startswith("done with lr=")
    assert logs["stdout"] is not None and logs["stdout"].splitlines()[-1].startswith('{"step": 9,')
    for args in (["show", "logs", "--trial", "0"], ["trial", "logs", "0", "--log-lines", "3"]):
        shown = cli(tmp_path, *args, "--storage", "sqlite:///t.db")
        assert shown.returncode == 0, shown.stderr
        assert "stderr (the last 1 lines of" in shown.stdout and "<b>bold</b>" in shown.stdout
        assert '{"step": 9,' in shown.stdout
    from fastapi.testclient import TestClient

    from tunelab.dashboard import create_app

    with TestClient(create_app(f"sqlite:///{tmp_path / 't.db'}"), base_url="http://127.0.0.1") as client:
        got = client.get("/api/studies/logs/trials/0/logs", params={"lines": 2})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["lines"] == 2 and len(body["stdout"].splitlines()) == 2 and "<b>bold</b>" in body["stderr"]
        assert client.get("/api/studies/logs/trials/7/logs").status_code == 404
    app_js = (Path(SRC) / "tunelab" / "dashboard" / "static" / "app.js").read_text()
    assert 'el("trial-" + stream).textContent = ' in app_js  # shown as text, never as markup


def test_logs_and_values_are_shown_as_typed_never_as_emoji(tmp_path: Path) -> None:
    # rich's consoles turned ":fire:" in a log line, ":smile:" in a value and "file.py:100:" in an error into emoji
    write(tmp_path, "train.sh", 'echo "epoch 1 :fire: ok :100:"\necho \'{"val_loss": 1}\'\n'
                                'echo ":warning: low disk" >&2\n')
    write(tmp_path, "sweep.yaml", """\
        study: emoji
        storage: sqlite:///t.db
        command: /bin/sh train.sh
        args: env
        parameters: {face: {type: categorical, choices: [":smile:"]}}
        metric: val_loss
        n_trials: 1
    """)
    done = cli(tmp_path, "sweep", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    assert "{'face': ':smile:'}" in done.stdout
    shown = cli(tmp_path, "trial", "emoji", "0", "--storage", "sqlite:///t.db")
    assert shown.returncode == 0, shown.stderr
    assert "epoch 1 :fire: ok :100:" in shown.stdout and ":warning: low disk" in shown.stdout
    assert "face = :smile:" in shown.stdout


def test_the_command_printed_at_the_end_of_a_sweep_can_be_pasted_whatever_the_study_s_name(tmp_path: Path) -> None:
    # "tunelab show my study --storage ..." named a study "my" and an argument "study"
    write(tmp_path, "train.sh", LOOP_SH)
    write(tmp_path, "sweep.yaml", """\
        study: "my study's"
        storage: sqlite:///t.db
        command: /bin/sh train.sh {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        n_trials: 1
    """)
    done = cli(tmp_path, "sweep", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    pasted = done.stdout.strip().splitlines()[-1]
    assert pasted.startswith("tunelab show ")
    shown = cli(tmp_path, *shlex.split(pasted)[1:])
    assert shown.returncode == 0, shown.stderr
    assert "my study's (minimize): 1 trials" in shown.stdout


def test_cli_flags_override_the_file_and_bad_files_exit_2_in_one_line(tmp_path: Path) -> None:
    write(tmp_path, "train.sh", LOOP_SH)
    write(tmp_path, "sweep.yaml", """\
        study: flags
        storage: sqlite:///t.db
        command: /bin/sh train.sh {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        n_trials: 50
        workers: 3
    """)
    done = cli(tmp_path, "sweep", "sweep.yaml", "--n-trials", "2", "--workers", "1", "--storage", "sqlite:///o.db")
    assert done.returncode == 0, done.stderr
    assert len(study_of(tmp_path, "flags", "o.db").trials) == 2
    assert not (tmp_path / "t.db").exists()
    write(tmp_path, "bad.yaml", "command: run {lr}\nmetric: m\nparameters:\n  lr: {type: float, low: 1, high: 0}\n")
    bad = cli(tmp_path, "sweep", "bad.yaml")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().replace("\n", " ").startswith("error: bad.yaml:4: parameters.lr.low: low (1) must not")
    init = cli(tmp_path, "sweep", "--init", "train.sh", "-o", "new.yaml")
    assert init.returncode == 0 and load_config(tmp_path / "new.yaml").command == "sh train.sh --lr {lr}"
    check = cli(tmp_path, "sweep", "sweep.yaml", "--check")
    assert check.returncode == 0 and "/bin/sh train.sh 0." in check.stdout


def test_an_existing_study_with_another_space_needs_allow_changes(tmp_path: Path) -> None:
    write(tmp_path, "train.sh", LOOP_SH)
    text = ("study: s\nstorage: sqlite:///t.db\ncommand: /bin/sh train.sh {lr}\nmetric: val_loss\nn_trials: 1\n"
            "parameters:\n  lr: {type: float, low: 0.0, high: 1.0}\n")
    run_sweep(config_from_text(text, tmp_path), show_progress=False)
    wider = config_from_text(text.replace("high: 1.0", "high: 2.0").replace("n_trials: 1", "n_trials: 2"), tmp_path)
    with pytest.raises(SweepConfigError, match=r"exists with another space.*--allow-changes") as info:
        run_sweep(wider, show_progress=False)
    assert info.value.key == "parameters" and "sweep.yaml:6: parameters" in str(info.value)
    summary = run_sweep(wider, allow_changes=True, show_progress=False)
    assert summary.counted == 2
    assert study_of(tmp_path, "s").system_attrs["space"]["lr"]["high"] == 2.0


def test_allow_changes_refuses_another_type_before_anything_is_stored_and_check_says_so(tmp_path: Path) -> None:
    # --check --allow-changes said OK for a parameter that changed its type; the run then failed inside optimize
    # (an error naming no file or line) after it had stored the file's space over the study's
    write(tmp_path, "train.sh", LOOP_SH)
    text = ("study: s\nstorage: sqlite:///t.db\ncommand: /bin/sh train.sh {lr}\nmetric: val_loss\nn_trials: 1\n"
            "parameters:\n  lr: {type: float, low: 0.0, high: 1.0}\n")
    run_sweep(config_from_text(text, tmp_path), show_progress=False)
    stored = study_of(tmp_path, "s").system_attrs["space"]
    write(tmp_path, "int.yaml", text.replace("type: float", "type: int").replace("high: 1.0", "high: 5")
          .replace("n_trials: 1", "n_trials: 2"))
    out = cli(tmp_path, "sweep", "int.yaml", "--check", "--allow-changes")
    assert out.returncode == 2, out.stdout
    assert out.stderr.replace("\n", " ").startswith("error: int.yaml:6: parameters.lr: study 's' has lr as Float(")
    with pytest.raises(SweepConfigError, match="not the type, log scale or choices") as info:
        run_sweep(load_config(tmp_path / "int.yaml"), allow_changes=True, show_progress=False)
    assert info.value.key == "parameters.lr"
    study = study_of(tmp_path, "s")
    assert study.system_attrs["space"] == stored and len(study.trials) == 1


def test_the_same_file_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    write(tmp_path, "train.sh", LOOP_SH)
    text = ("study: r\nstorage: sqlite:///t.db\ncommand: /bin/sh train.sh {lr}\nmetric: val_loss\nn_trials: 3\n"
            "parameters:\n  lr: {type: float, low: 0.0, high: 1.0}\nsampler: random\n")
    config = config_from_text(text, tmp_path)
    assert run_sweep(config, show_progress=False).counted == 3
    again = run_sweep(config, show_progress=False)
    assert again.counted == 3 and again.ran == 0
    more = run_sweep(config_from_text(text.replace("n_trials: 3", "n_trials: 5"), tmp_path), show_progress=False)
    assert more.counted == 5 and more.ran == 2


def test_a_sweep_killed_by_sigkill_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    write(tmp_path, "slow.sh", """\
        step=1
        while [ $step -le 4 ]; do
            echo "{\\"step\\": $step, \\"val_loss\\": $1}"
            step=$((step + 1))
            sleep 0.25
        done
    """)
    write(tmp_path, "sweep.yaml", """\
        study: killed
        storage: sqlite:///t.db
        command: /bin/sh slow.sh {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        sampler: random
        n_trials: 8
        workers: 2
    """)
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (tmp_path / "t.db").exists():
                trials = study_of(tmp_path, "killed").trials
                if sum(counted(t) for t in trials) >= 2 and any(t.state == TrialState.RUNNING for t in trials):
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30  # its workers record their trials "interrupted" and end
    while any(t.state == TrialState.RUNNING for t in study_of(tmp_path, "killed").trials):
        assert time.monotonic() < deadline, "the killed sweep's trials stayed RUNNING"
        time.sleep(0.2)
    trials = study_of(tmp_path, "killed").trials
    interrupted = [t for t in trials if t.state == TrialState.FAIL and (t.error or "").startswith("interrupted")]
    assert interrupted, [(t.state, t.error) for t in trials]
    assert sum(counted(t) for t in trials) < 8
    done = cli(tmp_path, "sweep", "sweep.yaml", timeout=180)
    assert done.returncode == 0, done.stderr
    trials = study_of(tmp_path, "killed").trials
    assert sum(counted(t) for t in trials) == 8
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 8
    assert not any(t.state == TrialState.RUNNING for t in trials)
    assert len({t.number for t in trials}) == len(trials)


def test_24_trials_2_workers_asha_over_a_script_that_never_imports_tunelab(tmp_path: Path) -> None:
    seen_devices = 'echo "$CUDA_VISIBLE_DEVICES" > "devices-$TUNELAB_TRIAL_NUMBER"\n'
    write(tmp_path, "train.sh", seen_devices + LOOP_SH)
    write(tmp_path, "sweep.yaml", """\
        study: e2e
        storage: sqlite:///t.db
        command: /bin/sh train.sh {lr}
        parameters: {lr: {type: float, low: 0.0, high: 1.0}}
        metric: val_loss
        sampler: random
        pruner: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3}
        n_trials: 24
        workers: 2
        gpus_per_trial: 1
        seed: 3
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path,
                          env={**ENV, "TUNELAB_FAKE_GPUS": "4"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = study_of(tmp_path, "e2e")
    trials = study.trials
    states = [t.state for t in trials]
    assert len(trials) == 24 and sorted(t.number for t in trials) == list(range(24))
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 24
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) >= 6, states
    for t in pruned:
        steps, values = study.get_curves(t.number)["val_loss"]
        assert steps and steps[-1] == t.system_attrs["pruned"]["step"] and len(values) == len(steps)
        assert t.user_attrs["sweep"]["signals"][0] == "SIGTERM"
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert study.get_curves(t.number)["val_loss"][0] == list(range(1, 10))
    assert "24 counted of 24" in done.stdout
    # 4 fake GPUs, one per trial: every trial's script saw the device it was given, and no two trials
    # that ran at the same time shared one
    given = {t.number: t.system_attrs["gpus"] for t in trials}
    for t in trials:
        assert (tmp_path / f"devices-{t.number}").read_text().strip() == ",".join(given[t.number])
        assert len(given[t.number]) == 1 and given[t.number][0] in {"0", "1", "2", "3"}
    for a in trials:
        for b in trials:
            assert a.datetime_start and a.datetime_complete and b.datetime_start and b.datetime_complete
            overlap = a.number < b.number and a.datetime_start < b.datetime_complete and b.datetime_start < (
                a.datetime_complete)
            assert not (overlap and given[a.number] == given[b.number]), (a.number, b.number, given[a.number])
    print(f"24 trials in {time.monotonic() - started:.1f}s")


TRADE_OFF = """\
import json, os
width = int(os.environ["TUNELAB_PARAM_WIDTH"])
for epoch in range(1, 4):
    acc = 1.0 - (1.0 - epoch / 4) * 8.0 / width   # wider: more accurate, but slower
    print(json.dumps({"step": epoch, "val_acc": acc, "latency_ms": 0.1 * width}))
"""


def test_a_sweep_with_several_objectives_records_both_and_prints_the_front(tmp_path: Path) -> None:
    write(tmp_path, "trade.py", TRADE_OFF)
    write(tmp_path, "sweep.yaml", """\
        study: trade
        storage: sqlite:///t.db
        command: PY trade.py
        parameters:
          width: {type: int, low: 8, high: 256, log: true}
        metric: [val_acc, latency_ms]
        direction: [maximize, minimize]
        sampler: tpe
        pruner: {type: asha, min_resource: 1, reduction_factor: 2}
        n_trials: 6
        seed: 2
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml")
    assert out.returncode == 0, out.stderr
    assert "Pareto front of val_acc, latency_ms" in out.stdout
    study = study_of(tmp_path, "trade")
    assert study.directions == ("maximize", "minimize") and study.objective_names == ("val_acc", "latency_ms")
    assert type(study.pruner).__name__ == "ParetoSuccessiveHalvingPruner"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(t.values == (1.0 - 0.25 * 8.0 / t.params["width"], 0.1 * t.params["width"])
                        for t in done)
    assert {t.number for t in study.best_trials} <= {t.number for t in done}


def test_several_objectives_in_a_sweep_file_are_checked(tmp_path: Path) -> None:
    base = "command: python t.py\nparameters:\n  x: {type: float, low: 0, high: 1}\n"
    with pytest.raises(SweepConfigError, match=r"give one direction each, e\.g\. direction: \[maximize, minimize\]"):
        config_from_text(base + "metric: [val_acc, latency_ms]\n", tmp_path)
    with pytest.raises(SweepConfigError, match="1 direction"):
        config_from_text(base + "metric: [a, b]\ndirection: [minimize]\n", tmp_path)
    with pytest.raises(SweepConfigError, match="named twice"):
        config_from_text(base + "metric: [a, a]\ndirection: [minimize, minimize]\n", tmp_path)
    assert config_from_text(base + "metric: [a, b]\ndirection: [minimize, minimize]\nsampler: gp\n",
                            tmp_path).is_multi_objective  # the GP's log EHVI handles several objectives
    with pytest.raises(SweepConfigError, match="hyperband compares one metric"):
        config_from_text(base + "metric: [a, b]\ndirection: [minimize, minimize]\npruner: hyperband\n", tmp_path)
    with pytest.raises(SweepConfigError, match=r"direction: .*'up'.* is not allowed; use 'minimize' or 'maximize'"):
        config_from_text(base + "metric: [a, b]\ndirection: [minimize, up]\n", tmp_path)


def test_check_refuses_a_sqlite_file_in_a_missing_directory_as_the_run_does(tmp_path: Path) -> None:
    # --check said OK; the run then failed at once: "there is no directory ..."
    write(tmp_path, "sweep.yaml", """\
        study: nowhere
        storage: sqlite:///missing/t.db
        command: python t.py --x {x}
        parameters: {x: {type: float, low: 0, high: 1}}
        metric: loss
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml", "--check")
    assert out.returncode == 2, out.stdout
    assert out.stderr.replace("\n", " ").startswith(f"error: sweep.yaml:2: storage: there is no directory "
                                                    f"'{tmp_path / 'missing'}'")
    assert not (tmp_path / "missing").exists()


def test_check_names_every_objective_s_metric_and_the_constraints(tmp_path: Path) -> None:
    # --check said "metric val_acc" for a sweep trading val_acc and latency_ms, and nothing of its constraints
    write(tmp_path, "sweep.yaml", """\
        study: traded
        storage: sqlite:///t.db
        command: python t.py --x {x}
        parameters: {x: {type: float, low: 0, high: 1}}
        metric: [val_acc, latency_ms]
        direction: [maximize, minimize]
        constraints: {peak_memory_gb: {upper: 8}}
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml", "--check")
    assert out.returncode == 0, out.stderr
    assert "1 parameters, metrics val_acc, latency_ms, constraints on peak_memory_gb)" in out.stdout


VALIDATE_EVERY_2 = """\
import os
import tunelab.script
lr = float(os.environ["TUNELAB_PARAM_LR"])
for epoch in range(1, 7):
    tunelab.script.report(epoch, train_loss=lr / epoch)
    if epoch % 2 == 0:   # validation every other epoch, a report of its own
        tunelab.script.report(epoch, val_loss=(1 - lr) / epoch)
        if tunelab.script.should_prune():
            break
"""


def sweep_validating_every_2(tmp_path: Path, study: str, metric: str, pruner: str) -> tunelab.Study:
    """Five trials of VALIDATE_EVERY_2 under ASHA (rungs at 1, 3), the value ``metric``; the sweep must end well."""
    write(tmp_path, "train.py", VALIDATE_EVERY_2)
    write(tmp_path, "sweep.yaml", f"""\
        study: {study}
        storage: sqlite:///t.db
        command: PY train.py
        args: env
        parameters: {{lr: {{type: float, low: 0.0, high: 1.0}}}}
        metric: {metric}
        sampler: random
        pruner: {pruner}
        n_trials: 5
        seed: 0
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml")
    assert out.returncode == 0, out.stderr
    return study_of(tmp_path, study)


def test_lines_without_the_metric_between_validations_are_stored_and_not_judged(tmp_path: Path) -> None:
    # Before, the pruner was asked after a line holding only train_loss: a ConfigError ("the trial reported
    # only ['train_loss']") that failed the trial and stopped the whole sweep.
    study = sweep_validating_every_2(tmp_path, "every2", "val_loss",
                                     "{type: asha, min_resource: 1, reduction_factor: 3}")
    states = [t.state for t in study.trials]
    assert len(states) == 5 and TrialState.FAIL not in states, states
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    for t in study.trials:
        curves = study.get_curves(t.number)
        if t.state == TrialState.COMPLETE:
            assert curves["train_loss"][0] == [1, 2, 3, 4, 5, 6] and curves["val_loss"][0] == [2, 4, 6]
        else:  # judged at the first validation past the rung at step 1
            assert t.system_attrs["pruned"]["step"] == 2 and t.system_attrs["pruned"]["metric"] == "val_loss"


def test_a_pruner_naming_its_own_metric_judges_only_the_reports_that_have_it(tmp_path: Path) -> None:
    # The trial's value is train_loss, the pruner reads val_loss: a report of train_loss alone is not judged.
    trials = sweep_validating_every_2(
        tmp_path, "own", "train_loss", "{type: asha, min_resource: 1, reduction_factor: 3, metric: val_loss}").trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.system_attrs["pruned"]["metric"] == "val_loss" for t in trials if t.state == TrialState.PRUNED)


def test_gpus_that_are_not_there_name_the_file_s_key_before_the_study_is_made(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # the engine's ConfigError came from optimize(), without the file's key or line, after the study was created
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "1")
    text = "command: PY -c pass\nmetric: val_loss\nparameters:\n  lr: [1, 2]\nstorage: sqlite:///t.db\n"
    config = config_from_text(text.replace("PY", PY) + "gpus_per_trial: 2\n", tmp_path)
    with pytest.raises(SweepConfigError) as info:
        run_sweep(config, show_progress=False)
    assert info.value.key == "gpus_per_trial" and info.value.line == 6
    assert str(info.value).startswith("sweep.yaml:6: gpus_per_trial: ") and "1 found" in str(info.value)
    assert not (tmp_path / "t.db").exists()
    with pytest.raises(SweepConfigError) as info:  # a device named twice is seen in the file itself
        config_from_text(text + "gpus_per_trial: 1\ngpus: [0, 0]\n", tmp_path)
    assert info.value.key == "gpus" and info.value.line == 7 and "twice" in str(info.value)


def test_devices_this_host_lacks_are_refused_with_the_key_and_the_fix_in_the_file_s_terms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host checks repeated the engine's messages, in optimize()'s terms ('pass the devices with gpus=[0, 1,
    ...]') and under gpus_per_trial whatever the key at fault (gpus: [1] for two GPUs per trial)."""
    text = f"command: {PY} -c pass\nmetric: val_loss\nparameters:\n  lr: [1, 2]\nstorage: sqlite:///t.db\n"
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "2")
    with pytest.raises(SweepConfigError) as info:
        run_sweep(config_from_text(text + "gpus_per_trial: 2\ngpus: [1]\n", tmp_path), show_progress=False)
    assert (info.value.key, info.value.line) == ("gpus", 7)
    assert str(info.value) == ("sweep.yaml:7: gpus: lists 1 device(s) (1) but gpus_per_trial: 2 gives each trial 2; "
                               "list at least 2 devices, or write gpus_per_trial: 1 or less")
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "0")
    with pytest.raises(SweepConfigError) as info:
        run_sweep(config_from_text(text + "gpus_per_trial: 1\n", tmp_path), show_progress=False)
    assert (info.value.key, info.value.line) == ("gpus_per_trial", 6)
    assert str(info.value).startswith("sweep.yaml:6: gpus_per_trial: 1 GPU(s) per trial, but this host shows no GPU")
    assert "write gpus_per_trial: 0 to run without GPUs, list the devices with gpus: [0, 1]" in str(info.value)
    assert "gpus=" not in str(info.value) and not (tmp_path / "t.db").exists()


def test_a_listed_device_the_host_lacks_is_refused_before_any_trial_runs_on_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # gpus: [0, 7] on a two-GPU host was taken: every trial given device 7 failed at its first CUDA call
    text = f"command: {PY} -c pass\nmetric: val_loss\nparameters:\n  lr: [1, 2]\nstorage: sqlite:///t.db\n"
    monkeypatch.setenv("TUNELAB_FAKE_GPUS", "2")
    with pytest.raises(SweepConfigError) as info:
        run_sweep(config_from_text(text + "gpus_per_trial: 1\ngpus: [0, 7]\n", tmp_path), show_progress=False)
    assert (info.value.key, info.value.line) == ("gpus", 7)
    assert str(info.value) == ("sweep.yaml:7: gpus: lists device(s) 7, which this host does not have (it has 0, 1, "
                               "from TUNELAB_FAKE_GPUS); list devices among those, or write gpus: all")
    assert not (tmp_path / "t.db").exists()
    check_sweep(config_from_text(text + "gpus_per_trial: 1\ngpus: [1]\n", tmp_path))  # one it has passes


MEMORY = """\
import json, os
width = int(os.environ["TUNELAB_PARAM_WIDTH"])
print(json.dumps({"step": 1, "val_loss": 1.0 / width}))
if width != 13:  # width 13 never reports its memory
    print(json.dumps({"final": {"val_loss": 1.0 / width, "peak_memory_gb": width / 10}}))
"""


def test_constraints_in_a_sweep_file_bound_a_reported_metric_and_the_best_holds_them(tmp_path: Path) -> None:
    write(tmp_path, "memory.py", MEMORY)
    write(tmp_path, "sweep.yaml", """\
        study: bounded
        storage: sqlite:///t.db
        command: PY memory.py
        args: env
        parameters:
          width: {type: int, low: 1, high: 200, log: true}
        metric: val_loss
        constraints:
          peak_memory_gb: {upper: 8.0}
        sampler: random
        n_trials: 12
        seed: 0
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml")
    assert out.returncode == 0, out.stderr
    study = study_of(tmp_path, "bounded")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert {t.number for t in done if t.params["width"] > 80} and {t.number for t in done if t.params["width"] <= 80}
    for t in done:
        assert t.constraints["peak_memory_gb"].value == t.params["width"] / 10
        assert t.feasible == (t.params["width"] <= 80)
    widest = max((t for t in done if t.feasible), key=lambda t: t.params["width"])
    assert study.best_trial.number == widest.number  # the lowest loss that stays under the bound
    infeasible = sum(not t.feasible for t in done)
    assert f"{infeasible} COMPLETE trial(s) break a bound of constraints (peak_memory_gb)" in out.stdout
    assert f"best: trial {widest.number}," in out.stdout


def test_the_end_names_the_constraints_the_trials_broke_when_the_file_no_longer_has_them(tmp_path: Path) -> None:
    # the count named the file's constraints: "1 COMPLETE trial(s) break a bound of constraints ()" after the
    # file dropped them, and a bound no trial broke beside one that was
    write(tmp_path, "memory.py", MEMORY)
    text = """\
        study: dropped
        storage: sqlite:///t.db
        command: PY memory.py
        args: env
        parameters:
          width: {type: int, low: 100, high: 100}
        metric: val_loss
        n_trials: 1
    """
    write(tmp_path, "bounded.yaml", text.replace("n_trials: 1\n", "n_trials: 1\n        constraints:\n"
                                                 "          peak_memory_gb: {upper: 8.0}\n"
                                                 "          val_loss: {upper: 1.0}\n"))
    run_sweep(load_config(tmp_path / "bounded.yaml"), show_progress=False)
    write(tmp_path, "sweep.yaml", text)
    out = cli(tmp_path, "sweep", "sweep.yaml")
    assert out.returncode == 0, out.stderr
    assert "; 0 run now)" in out.stdout
    assert "1 COMPLETE trial(s) break a bound of constraints (peak_memory_gb): never the best" in out.stdout


def test_a_constraint_s_metric_never_reported_fails_the_trial_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "memory.py", MEMORY)
    sweep = write(tmp_path, "sweep.yaml", """\
        study: silent
        storage: sqlite:///t.db
        command: PY memory.py
        args: env
        parameters:
          width: {type: int, low: 13, high: 13}
        metric: val_loss
        constraints:
          peak_memory_gb: {upper: 8.0}
        n_trials: 1
        max_start_failures: 0
    """)
    run_sweep(load_config(sweep), show_progress=False)
    (trial,) = study_of(tmp_path, "silent").trials
    assert trial.state == TrialState.FAIL and "no peak_memory_gb was reported" in (trial.error or "")


def test_a_constraint_s_metric_reported_as_nan_or_inf_fails_the_trial_naming_what_the_script_said(
        tmp_path: Path) -> None:
    # it failed with set_constraint's AttributeValueError and a traceback into tunelab, as if tunelab had a bug
    write(tmp_path, "nan.py", """\
        import json, os
        print(json.dumps({"step": 1, "val_loss": 0.5, "mem": float(os.environ["TUNELAB_PARAM_MEM"])}))
    """)
    sweep = write(tmp_path, "sweep.yaml", """\
        study: nan-memory
        storage: sqlite:///t.db
        command: PY nan.py
        args: env
        parameters:
          mem: {type: categorical, choices: [nan, inf]}
        metric: val_loss
        constraints:
          mem: {upper: 8.0}
        sampler: grid
        n_trials: 2
        max_start_failures: 0
    """)
    run_sweep(load_config(sweep), show_progress=False)
    trials = study_of(tmp_path, "nan-memory").trials
    assert sorted(t.params["mem"] for t in trials) == ["inf", "nan"]
    for t in trials:
        assert t.state == TrialState.FAIL
        assert f"the script reported mem={t.params['mem']}, a metric of constraints:" in (t.error or "")
        assert "AttributeValueError" not in (t.error or "")


@pytest.mark.parametrize(("spec", "message"), [
    ("{}", r"constraints\.mem: no bound: write \{upper: \.\.\.\}"),
    ("{lower: 9, upper: 8}", r"constraints\.mem: lower \(9\) is above upper \(8\)"),
    ("{upper: true}", r"constraints\.mem\.upper: .*true is not a number here"),
    ("{upper: .inf}", r"constraints\.mem\.upper: inf is not a finite number"),
    ("{max: 8}", r"constraints\.mem\.max"),
])
def test_constraints_in_a_sweep_file_are_checked(tmp_path: Path, spec: str, message: str) -> None:
    base = "command: python t.py\nparameters:\n  x: {type: float, low: 0, high: 1}\nmetric: loss\n"
    with pytest.raises(SweepConfigError, match=message):
        config_from_text(base + f"constraints:\n  mem: {spec}\n", tmp_path)
    with pytest.raises(SweepConfigError, match="'step' cannot be a constraint"):
        config_from_text(base + "constraints:\n  step: {upper: 1}\n", tmp_path)


@pytest.mark.parametrize(("spec", "message"), [
    # a misspelt bound listed no keys ("the keys here are: "), a bare number named pydantic's ConstraintSpec
    ("{Upper: 8}", r"constraints\.mem\.Upper: unknown key 'Upper'; did you mean 'upper'\?$"),
    ("{max: 8}", r"constraints\.mem\.max: unknown key 'max'; the keys here are: upper, lower$"),
    ("8", r"constraints\.mem: 8 is no bound; write mem: \{upper: 8\} \(the metric at or below it\)"),
    ("null", r"constraints\.mem: null is no bound; write mem: \{upper: 8\.0\}"),
])
def test_a_mistaken_bound_of_constraints_says_how_to_write_one(tmp_path: Path, spec: str, message: str) -> None:
    base = "command: python t.py\nparameters:\n  x: {type: float, low: 0, high: 1}\nmetric: loss\n"
    with pytest.raises(SweepConfigError, match=message) as e:
        config_from_text(base + f"constraints:\n  mem: {spec}\n", tmp_path)
    assert "ConstraintSpec" not in str(e.value) and e.value.line in (6, 7)


def test_check_finds_what_the_run_would_refuse_without_creating_anything(tmp_path: Path) -> None:
    # --check said OK for a file the run then refused: GPUs the host lacks, an existing study it conflicts with
    write(tmp_path, "sweep.yaml", "study: s\nstorage: sqlite:///t.db\ncommand: PY -c pass\nmetric: val_loss\n"
                                  "parameters:\n  lr: [1, 2]\ngpus_per_trial: 2\n")
    out = subprocess.run([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml", "--check"], cwd=tmp_path,
                         env={**ENV, "TUNELAB_FAKE_GPUS": "1"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "sweep.yaml:7: gpus_per_trial:" in out.stderr and "1 found" in out.stderr
    assert not (tmp_path / "t.db").exists()  # nothing created
    (tmp_path / "sweep.yaml").write_text((tmp_path / "sweep.yaml").read_text().replace("gpus_per_trial: 2\n", ""))
    out = cli(tmp_path, "sweep", "sweep.yaml", "--check")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "t.db").exists()
    tunelab.create_study(name="s", storage=f"sqlite:///{tmp_path / 't.db'}", direction="maximize")
    out = cli(tmp_path, "sweep", "sweep.yaml", "--check")
    assert out.returncode == 2 and "study 's' exists with direction(s) maximize" in out.stderr


SLOW_ECHO = """\
import json, os, time
time.sleep(0.3)
print(json.dumps({"step": 1, "val_loss": float(os.environ["TUNELAB_PARAM_X"])}))
"""


def test_two_sweeps_of_one_file_at_once_hold_the_study_to_n_trials(tmp_path: Path) -> None:
    # Each computed its share once at its start and ran all of it: 8 and 8, 16 trials for n_trials: 8
    write(tmp_path, "slow.py", SLOW_ECHO)
    write(tmp_path, "sweep.yaml", """\
        study: shared
        storage: sqlite:///t.db
        command: PY slow.py
        args: env
        parameters:
          x: {type: float, low: 0, high: 1}
        metric: val_loss
        sampler: random
        n_trials: 8
    """)
    tunelab.create_study(name="shared", storage=f"sqlite:///{tmp_path / 't.db'}", sampler=tunelab.RandomSampler(),
                         space={"x": tunelab.Float(0, 1)})
    procs = [subprocess.Popen([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = [t for t in study_of(tmp_path, "shared").trials if t.state == TrialState.COMPLETE]
    assert 8 <= len(done) <= 9, len(done)  # (two trials started at the same moment: one over, at most)
    ran = [int(m) for out, _ in outs for m in re.findall(r"; (\d+) run now\)", out)]
    assert sum(ran) == len(done)  # each counts what it ran, not the other's trials


CURVES = """\
import json, os
lr = float(os.environ["TUNELAB_PARAM_LR"])
for epoch in range(1, 10):
    print(json.dumps({"step": epoch, "val_loss": 0.2 + lr * 3.0 / epoch ** 0.5}), flush=True)
"""


def test_a_sweep_prunes_with_the_learning_curve_pruner(tmp_path: Path) -> None:
    write(tmp_path, "curves.py", CURVES)
    write(tmp_path, "sweep.yaml", """\
        study: lc
        storage: sqlite:///t.db
        command: PY curves.py
        args: env
        parameters:
          lr: {type: float, low: 0.0, high: 1.0}
        metric: val_loss
        sampler: random
        pruner: {type: curve, max_resource: 9, min_points: 4}
        n_trials: 10
        seed: 0
    """)
    out = cli(tmp_path, "sweep", "sweep.yaml")
    assert out.returncode == 0, out.stderr
    study = study_of(tmp_path, "lc")
    assert type(study.pruner).__name__ == "LearningCurvePruner"
    states = [t.state for t in study.trials]
    assert len(states) == 10 and TrialState.FAIL not in states and TrialState.PRUNED in states, states
    best = min((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.params["lr"])
    assert best.params["lr"] == min(t.params["lr"] for t in study.trials)  # the lowest rate is never stopped


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_sweep_as_ctrl_c_does_and_the_same_command_resumes_it(tmp_path: Path, workers: int) -> None:
    # kill / docker stop / a scheduler's preemption: the sweep died with 143, no "run again" line, and its trials
    # read "the driver process died"
    write(tmp_path, "sleepy.py", """\
        import json, os, pathlib, sys, time
        pathlib.Path("started-" + os.environ["TUNELAB_TRIAL_NUMBER"]).touch()
        if os.environ.get("SLEEP_FOR_EVER"):
            time.sleep(600)
        print(json.dumps({"step": 1, "val_loss": float(sys.argv[1])}))
    """)
    write(tmp_path, "sweep.yaml", f"""\
        study: termed
        storage: sqlite:///t.db
        command: PY sleepy.py {{lr}}
        parameters: {{lr: {{type: float, low: 0.0, high: 1.0}}}}
        metric: val_loss
        sampler: random
        n_trials: 3
        workers: {workers}
    """)
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "sweep", "sweep.yaml"], cwd=tmp_path,
                            env={**ENV, "SLEEP_FOR_EVER": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 90
        while len(list(tmp_path.glob("started-*"))) < workers:
            assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # the sweep's process only, as kill does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: run `tunelab sweep sweep.yaml` again to resume the study" in err
    trials = study_of(tmp_path, "termed").trials
    assert trials and all(t.state == TrialState.FAIL and (t.error or "").startswith("interrupted") for t in trials), [
        (t.state, t.error) for t in trials]
    done = cli(tmp_path, "sweep", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    assert sum(t.state == TrialState.COMPLETE for t in study_of(tmp_path, "termed").trials) == 3
