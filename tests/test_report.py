"""The HTML report: self-contained, every section present, and really drawn in headless Chromium
(Debian's chromium, never a downloaded browser); the report, diagnose and importance commands."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.viz.report import build_report, write_report

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Screenshots kept after the run (ignored by git)."""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SPACE = {
    "lr": tunelab.Float(1e-5, 1.0, log=True),
    "weight_decay": tunelab.Float(1e-6, 1e-2, log=True),
    "width": tunelab.Int(8, 256, log=True),
    "optimizer": tunelab.Categorical(["sgd", "adam"]),
    "momentum": tunelab.Conditional(tunelab.Float(0.0, 0.99), when={"optimizer": "sgd"}),
}


def objective(trial: tunelab.Trial) -> float:
    """A made-up training run: a U-shaped response to log lr, a mild one to weight decay, curves
    that overfit when the weight decay is small, divergence at the largest learning rates."""
    p = trial.params
    lr, wd = float(p["lr"]), float(p["weight_decay"])  # type: ignore[arg-type]
    if lr > 0.5:
        trial.report(1, train_loss=2.3, val_loss=2.3)
        raise RuntimeError("loss is NaN: the run diverged")
    floor = 0.05 + 0.08 * (math.log10(lr) + 2.5) ** 2 + 0.02 * (math.log10(wd) + 4) ** 2
    val = 2.3
    for epoch in range(1, 21):
        train = floor * 0.7 + (2.3 - floor) * math.exp(-epoch / 3)
        val = floor + (2.3 - floor) * math.exp(-epoch / 3) + (0.004 * epoch if wd < 1e-5 else 0.0)
        trial.report(epoch, train_loss=train, val_loss=val, val_acc=1 - val / 2.5)
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return val


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'r.db'}"
    study = tunelab.create_study(name="r", storage=url, sampler=tunelab.RandomSampler(), seed=0, space=SPACE,
                                 pruner=tunelab.MedianPruner(n_startup_trials=10, metric="val_loss"))
    study.optimize(objective, n_trials=60)
    study.set_system_attr("recipe", {"steps": [
        {"step": "initial_loss", "verdict": "pass", "message": "initial loss 2.3054, expected 2.3026", "evidence": {}},
        {"step": "lr_range", "verdict": "pass", "message": "the loss falls for lr in [0.001, 0.01]", "evidence": {
            "range": [1e-3, 1e-2], "best": 3e-3, "steps": 20, "lrs": [1e-4, 1e-3, 1e-2, 1e-1],
            "runs": [{"lr": lr, "status": status, "initial": 2.3, "final": final, "drop": 1 - final / 2.3,
                      "curve": [[s, 2.3 - (2.3 - final) * s / 20] for s in range(1, 21)]}
                     for lr, status, final in ((1e-4, "slow", 2.1), (1e-3, "falls", 0.9), (1e-2, "falls", 0.4),
                                               (1e-1, "diverged", 2.9))]}},
    ]})
    return url


@pytest.fixture(scope="module")
def report_file(study_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tunelab.load_study("r", study_url), tmp_path_factory.mktemp("out") / "report.html")


def test_the_report_is_one_self_contained_file(report_file: Path) -> None:
    text = report_file.read_text()
    start = text.index("<script type='text/javascript'>")
    library = text[start:text.index("</script>", start)]
    assert "plotly.js" in library and len(library) > 1_000_000  # plotly.js inlined, once
    rest = text[:start] + text[start + len(library):]
    assert "<script src" not in rest and "<link" not in rest and not re.search(r"https?://", rest)  # offline
    assert "Plotly.newPlot" in rest
    for heading in ("Summary", "Best trial", "Training recipe", "Importance", "Diagnosis of the learning curves"):
        assert f">{heading}<" in text, heading
    assert re.search(r"class='advice'>[^<]*(explain|%)", text), "importance comes with a sentence of advice"
    assert "loss is NaN: the run diverged" in text or "failed" in text  # a failing trial is diagnosed
    for key in ("history", "curves", "slice", "contour", "parallel", "importance", "lr-range"):
        assert f"id=\"fig-{key}\"" in text, key


def test_the_best_trial_and_the_summary_are_the_study_s(study_url: str, report_file: Path) -> None:
    study = tunelab.load_study("r", study_url)
    text = report_file.read_text()
    assert f"trial <b>{study.best_trial.number}</b>" in text
    counts = {s: sum(t.state == s for t in study.trials) for s in tunelab.TrialState}
    assert f"{counts[tunelab.TrialState.PRUNED]} pruned" in text and f"{counts[tunelab.TrialState.FAIL]} fail" in text


def test_the_plots_render_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is required under CI: apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
             "--run-all-compositor-stages-before-draw"]
    url = report_file.as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True).stdout
    subprocess.run([*flags, "--window-size=1280,4000", f"--screenshot={screenshot}", url],
                   capture_output=True, timeout=180, check=True)

    figures = re.findall(r'<div id="fig-([\w-]+)" class="plotly-graph-div', dom)
    assert len(figures) >= 7, figures
    for key, block in zip(figures, re.split(r'<div id="fig-[\w-]+" class="plotly-graph-div', dom)[1:], strict=True):
        assert 'class="main-svg"' in block, f"figure {key} was not drawn"
        assert re.search(r'class="(scatterlayer|barlayer|contourlayer|heatmaplayer|parcoords|plot)', block), key
    assert screenshot.stat().st_size > 50_000, "the screenshot is (nearly) blank"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_checks_its_path_before_building(study_url: str, tmp_path: Path) -> None:
    study = tunelab.load_study("r", study_url)
    with pytest.raises(ConfigError, match=r"ending in \.html"):
        write_report(study, tmp_path / "report.pdf")
    with pytest.raises(ConfigError, match="create it first"):
        write_report(study, tmp_path / "missing" / "report.html")


def test_a_study_without_trials_still_gets_a_report() -> None:
    study = tunelab.create_study(name="empty")
    text = build_report(study)
    assert "<td>trials</td><td>0</td>" in text and "Best trial" not in text


def test_cli_report_diagnose_and_importance(study_url: str, tmp_path: Path) -> None:
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "200", "NO_COLOR": "1"})
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "r", "--storage", study_url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.stdout

    study = tunelab.load_study("r", study_url)
    result = runner.invoke(app, ["diagnose", "r", "--storage", study_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["trial"] == study.best_trial.number and isinstance(data["findings"], list)

    result = runner.invoke(app, ["importance", "r", "--storage", study_url, "--json"])
    assert result.exit_code == 0, result.output
    shares = json.loads(result.stdout)["importance"]
    assert abs(sum(shares.values()) - 1) < 1e-6
    assert set(list(shares)[:2]) == {"lr", "weight_decay"}, shares  # width, optimizer, momentum do nothing

    result = runner.invoke(app, ["diagnose", "r", "999", "--storage", study_url])
    assert result.exit_code == 1 and "999" in result.stderr


def test_a_large_study_s_point_clouds_are_thinned_to_the_best_and_a_sample(
    study_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunelab.viz.report as report_module

    monkeypatch.setattr(report_module, "MAX_POINTS", 10)
    study = tunelab.load_study("r", study_url)
    done = [t for t in study.trials if t.state == tunelab.TrialState.COMPLETE]
    assert len(done) > 10
    text = build_report(study)
    assert f"{len(done)} complete trials: the point clouds below" in text and "show 10 of them, the best 1" in text
    shown = report_module._thinned(study.trials, done, study.direction)
    assert len(shown) == 10 and study.best_trial.number in {t.number for t in shown}
    assert [t.number for t in shown] == sorted(t.number for t in shown)


def test_a_thinned_report_keeps_the_best_feasible_trial_and_stars_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelab.viz.report as report_module

    monkeypatch.setattr(report_module, "MAX_POINTS", 10)
    study = tunelab.create_study(name="thin", sampler=tunelab.RandomSampler(), seed=0)
    for i in range(30):  # trials 0 and 1 have the lowest values but break their bound; 2 is the best feasible
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        trial.set_constraint("memory_gb", 9.0 if i < 2 else 1.0, upper=8.0)
        study.tell(trial, 0.01 * i)
    assert study.best_trial.number == 2
    done = [t for t in study.trials if t.state == tunelab.TrialState.COMPLETE]
    shown = report_module._thinned(study.trials, done, study.direction)
    assert len(shown) == 10 and 2 in {t.number for t in shown}
    text = build_report(study)
    stars = set(re.findall(r'"name":"best: trial (\d+)"', text))
    assert stars == {"2"}  # the slices and contour starred trial 4, the best of those they were given


# -- a study with several objectives ---------------------------------------------------------------------
def two_objectives(trial: tunelab.Trial) -> tuple[float, float]:
    """Accuracy against latency: y only slows a trial down (dominated), x + y over 1.2 breaks the memory bound."""
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    trial.set_constraint("mem_gb", x + y, upper=1.2)
    return x, x + y


def test_a_study_with_several_objectives_gets_a_pareto_front_section(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["acc", "latency_ms"], sampler=tunelab.RandomSampler(), seed=3)
    study.optimize(two_objectives, n_trials=30)
    out = tmp_path / "mo.html"
    result = CliRunner(env={"TUNELAB_STORAGE": None}).invoke(app, ["report", "mo", "--storage", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert ">Pareto front<" in text and "Best trial" not in text
    assert "<td>objectives</td><td>acc (maximize), latency_ms (minimize)</td>" in text
    for key in ("pareto", "hypervolume", "history", "importance-0", "importance-1"):
        assert f'id="fig-{key}"' in text, key
    table = text[text.index("<table id='pareto-table'>"):]
    table = table[:table.index("</table>")]
    assert "<th>acc (max)</th><th>latency_ms (min)</th><th>constraint: mem_gb</th><th>x</th><th>y</th>" in table
    numbers = [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", table)]
    front = sorted(study.best_trials, key=lambda t: -t.values[0])  # type: ignore[index]
    assert numbers == [t.number for t in front] and len(numbers) >= 2
    assert f"<td>{front[0].values[0]:.6g}</td>" in table  # type: ignore[index]
    assert "<b>acc</b>: " in text and "<b>latency_ms</b>: " in text  # advice per objective


def test_the_best_trial_of_the_report_is_never_an_infeasible_trial() -> None:
    study = tunelab.create_study(name="con", sampler=tunelab.RandomSampler(), seed=0)
    for value, memory in [(0.5, 1.0), (0.1, 9.0), (0.3, 2.0)]:  # the lowest value breaks its memory bound
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    text = build_report(study)
    assert "<h2>Best trial</h2><p>trial <b>2</b>" in text and study.best_trial.number == 2
    infeasible = tunelab.create_study(name="none", sampler=tunelab.RandomSampler(), seed=0)
    trial = infeasible.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_constraint("memory_gb", 9.0, upper=8.0)
    infeasible.tell(trial, 0.1)
    text = build_report(infeasible)
    assert "every COMPLETE trial violates one of its constraints" in text and "<p>trial <b>0</b>" not in text
    assert "(best trial)" not in text
