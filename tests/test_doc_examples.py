"""The Python examples of README.md and the guide run unchanged.

Each fenced ``python`` block is taken from the Markdown file as it is and run with ``exec`` in a
fresh folder. Where a block calls the reader's own code (``train_one_epoch``, ``build``,
``evaluate``...) or continues an earlier block (``study``, ``objective``), the test defines
those names in the block's namespace first, with tiny stand-ins; the block itself, its
``n_trials`` and ``n_workers`` included, is never edited. Some blocks only define an objective:
the test then runs a few trials of it, so that every tunelab call the block makes runs.

So an API rename that breaks the README or the guide fails here. Every Python block of the guide
is either run below or listed in ``NOT_RUN`` with the reason; a new block must be one or the other.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

import tunelab

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"
INDEX = ROOT / "docs" / "index.md"

pytestmark = pytest.mark.slow  # worker processes and small PyTorch runs: about a minute on 2 cores

FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path, heading: str) -> list[str]:
    """The ``python`` blocks under the heading of ``path`` that starts with ``heading`` (up to the next heading)."""
    text = path.read_text()
    starts = [m for m in re.finditer(r"^#+ (.*)$", text, re.MULTILINE) if m.group(1).startswith(heading)]
    assert starts, f"{path.name} has no section {heading!r}"
    end = re.compile(r"^#+ ", re.MULTILINE).search(text, starts[0].end())
    section = text[starts[0].end(): end.start() if end else len(text)]
    return FENCE.findall(section)


def run_block(code: str, namespace: dict[str, Any], name: str) -> dict[str, Any]:
    """Run one block as a script would (``__name__ == "__main__"``), in ``namespace``."""
    namespace.setdefault("__name__", "__main__")
    exec(compile(code, name, "exec"), namespace)
    return namespace


# -- the reader's code the examples call, as tiny stand-ins ---------------------------------------
def train_one_epoch(*args: Any, **kwargs: Any) -> tuple[float, float]:
    """README and guide: ``train_loss, val_loss = train_one_epoch(...)``; a loss that shrinks."""
    lr = next((a for a in args if isinstance(a, float)), 1e-3)
    return 0.5 + abs(math.log10(lr) + 3.0) / 10, 0.6 + abs(math.log10(lr) + 3.0) / 10


def torch_stand_ins() -> dict[str, Any]:
    """``build``, ``load``, ``evaluate``, ``train_one_epoch``... for the PyTorch blocks."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] > 0).long()

    def make_model(params: Any) -> Any:
        width = int(params.get("width", 8)) if hasattr(params, "get") else 8
        return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))

    def build(params: Any) -> Any:
        return make_model(params)

    def load() -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=g)
        y = (x[:, 0] > 0).long()
        return (x[:64], y[:64]), (x[64:], y[64:])

    def evaluate(model: Any) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    def train_epoch(model: Any, optimizer: Any, *rest: Any) -> float:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return evaluate(model)

    return {"torch": torch, "build": build, "load": load, "evaluate": evaluate, "train_one_epoch": train_epoch,
            "x": x, "y": y, "make_model": make_model}


# -- README.md ------------------------------------------------------------------------------------
def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, declared = blocks(README, "Example")
    monkeypatch.chdir(tmp_path)
    ns = run_block(first, {"train_one_epoch": train_one_epoch}, "README.md: Example")
    study = ns["study"]
    assert len(study.trials) == 100
    assert study.best_params.keys() >= {"lr", "weight_decay", "width", "optimizer"}
    assert set(study.get_curves(study.best_trial.number)) == {"train_loss", "val_loss"}
    assert tunelab.load_study("mlp", "sqlite:///tunelab.db").best_value == study.best_value

    # The declared space goes on with the same study and a train(**params) of the reader's.
    def train(lr: float, optimizer: str, use_bn: bool, momentum: float = 0.0) -> float:
        return abs(math.log10(lr) + 3) + (0.1 if optimizer == "sgd" else 0.0) + (0.0 if use_bn else 0.05)

    ns["train"] = train
    run_block(declared, ns, "README.md: declared space")
    assert len(study.trials) == 150
    last = study.trials[-1]
    assert ("momentum" in last.params) == (last.params["optimizer"] == "sgd")


def test_docs_index_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (code,) = blocks(INDEX, "A first study")
    monkeypatch.chdir(tmp_path)
    ns = run_block(code, {}, "docs/index.md")
    assert len(ns["study"].trials) == 20 and ns["study"].best_value < 1.0
    assert "{'x':" in capsys.readouterr().out


# -- docs/guide.md --------------------------------------------------------------------------------
NOT_RUN = {
    ("3d. Population-based training", 0): "a fragment: 8 worker processes on a study and a space defined "
    "elsewhere; tunelab.PopulationBasedTraining's docstring example runs a whole population",
}


def quadratic(trial: tunelab.Trial) -> float:
    return (trial.suggest_float("x", -5.0, 5.0) - 1.0) ** 2


def test_guide_running_many_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(GUIDE, "3. Running many trials")
    monkeypatch.chdir(tmp_path)
    ns = run_block(code, {"tunelab": tunelab, "objective": quadratic}, "guide: 3")
    assert len(ns["study"].get_trials([tunelab.TrialState.COMPLETE])) == 200


def test_guide_pruners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(GUIDE, "3b. Stopping bad trials early")
    monkeypatch.chdir(tmp_path)

    def train_one_epoch(*args: Any) -> tuple[float, float]:
        trial = ns["study"].trials[-1] if ns["study"].trials else None
        number = trial.number if trial is not None else 0
        return 1.0 / (1 + number % 5), 1.0 / (1 + number % 5)   # some trials far worse than others

    ns = run_block(code, {"tunelab": tunelab, "train_one_epoch": train_one_epoch}, "guide: 3b")
    ns["study"].optimize(ns["objective"], n_trials=12)
    states = {t.state for t in ns["study"].trials}
    assert tunelab.TrialState.PRUNED in states and tunelab.TrialState.COMPLETE in states


def test_guide_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(GUIDE, "3c. Checkpoints")
    monkeypatch.chdir(tmp_path)
    stand_ins = torch_stand_ins()
    torch = stand_ins["torch"]

    def build(trial: tunelab.Trial) -> tuple[Any, Any, Any]:
        model = stand_ins["make_model"]({})
        optimizer = torch.optim.SGD(model.parameters(), lr=trial.suggest_float("lr", 1e-3, 1e-1, log=True))
        return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)

    def train_one_epoch(model: Any, optimizer: Any, scheduler: Any) -> float:
        loss = stand_ins["train_one_epoch"](model, optimizer)
        scheduler.step()
        return loss

    ns = run_block(code, {"tunelab": tunelab, "build": build, "train_one_epoch": train_one_epoch}, "guide: 3c")
    study = ns["study"]
    study.optimize(ns["objective"], n_trials=2)
    assert [t.state for t in study.trials] == [tunelab.TrialState.COMPLETE] * 2
    assert [c.step for c in study.checkpoints(1)] == [29]


def test_guide_reporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reporter_block, _ = blocks(GUIDE, "3e. PyTorch")
    monkeypatch.chdir(tmp_path)
    s = torch_stand_ins()
    torch = s["torch"]
    loader = [(s["x"][i: i + 32], s["y"][i: i + 32]) for i in range(0, 96, 32)]

    def make(params: Any) -> tuple[Any, Any]:
        model = s["make_model"](params)
        return model, torch.optim.Adam(model.parameters(), lr=params["lr"])

    ns = run_block(reporter_block, {"make": make, "train_loader": loader, "F": torch.nn.functional,
                                    "val_loss": s["evaluate"]}, "guide: 3e Reporter")
    study = tunelab.create_study(seed=0)
    study.optimize(ns["objective"], n_trials=2, space={"lr": tunelab.Float(1e-3, 1e-1, log=True)})
    assert all(t.state == tunelab.TrialState.COMPLETE for t in study.trials)
    assert "train_loss" in study.get_curves(0) and "val_loss" in study.get_curves(0)


def test_guide_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, trainer_block = blocks(GUIDE, "3e. PyTorch")
    monkeypatch.chdir(tmp_path)
    s = torch_stand_ins()
    torch = s["torch"]

    def build(params: Any) -> Any:
        return torch.nn.Sequential(torch.nn.Linear(4, params["width"]), torch.nn.ReLU(),
                                   torch.nn.Dropout(params["dropout"]), torch.nn.Linear(params["width"], 2))

    study = tunelab.create_study(name="trainer", storage="sqlite:///tunelab.db", direction="maximize", seed=0)
    ns = run_block(trainer_block, {"tunelab": tunelab, "build": build, "load": s["load"], "study": study},
                   "guide: 3e Trainer")
    assert len(ns["result"].history) == 20
    assert len(study.get_trials([tunelab.TrialState.COMPLETE])) == 30


def test_guide_babysitting_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _ = blocks(GUIDE, "3f. Babysitting one run")
    monkeypatch.chdir(tmp_path)
    s = torch_stand_ins()
    torch = s["torch"]
    study = tunelab.create_study(seed=0, artifact_dir=tmp_path)
    trial = study.ask()
    model = s["make_model"]({})
    optimizer = torch.optim.SGD(model.parameters(), lr=trial.suggest_float("lr", 1e-3, 1e-1, log=True))
    run_block(code, {"tunelab": tunelab, "trial": trial, "model": model, "optimizer": optimizer, "n_steps": 201,
                     "evaluate": s["evaluate"]}, "guide: 3f")
    study.tell(trial, s["evaluate"](model))
    assert [c.step for c in study.checkpoints(0)] == [200]
    assert set(study.get_curves(0)) == {"val_loss"}


def test_guide_babysitting_under_a_schedule() -> None:
    import torch

    from tunelab.babysit import set_live

    _, code = blocks(GUIDE, "3f. Babysitting one run")
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    trial.live_poll_seconds = 0
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.01)
    max_lr = trial.suggest_float("lr", 1e-3, 1e-1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=20)
    trial.declare_live(["lr"])
    set_live(study, trial.number, {"lr": 0.002})
    run_block(code, {"trial": trial, "optimizer": optimizer, "scheduler": scheduler, "first": 0, "n_steps": 20},
              "guide: 3f schedule")
    group = optimizer.param_groups[0]
    assert group["max_lr"] == 0.002 and group["initial_lr"] == pytest.approx(0.002 / 25)
    assert trial.live_params["lr"] == 0.002


def _study_with_curves(name: str = "results") -> tunelab.Study:
    study = tunelab.create_study(name=name, storage="sqlite:///tunelab.db", seed=0)

    def objective(trial: tunelab.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        val = 1.0
        for epoch in range(8):
            val = 0.2 + abs(math.log10(lr) + 2.5) / 4 + wd + 0.5 / (epoch + 1)
            trial.report(epoch, train_loss=val * 0.9, val_loss=val)
        return val

    study.optimize(objective, n_trials=12)
    return study


def test_guide_reading_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(GUIDE, "5. Reading results")
    monkeypatch.chdir(tmp_path)
    run_block(code, {"tunelab": tunelab, "study": _study_with_curves()}, "guide: 5")


def test_guide_report_diagnosis_importance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(GUIDE, "The report, the diagnosis, the importance")
    pytest.importorskip("plotly")
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    run_block(code, {"tunelab": tunelab, "study": _study_with_curves()}, "guide: report")
    assert (tmp_path / "slice.png").stat().st_size > 0
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()


def test_guide_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (code,) = blocks(GUIDE, "The live dashboard")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import tunelab.dashboard

    monkeypatch.chdir(tmp_path)
    study = tunelab.create_study(name="live", storage="sqlite:///tunelab.db", seed=0,
                                 sampler=tunelab.RandomSampler())
    run_block(code, {"tunelab": tunelab, "study": study, "objective": quadratic}, "guide: dashboard")
    assert len(study.trials) == 100
    assert "dashboard at http://127.0.0.1:" in capsys.readouterr().out


RUN = {
    ("3. Running many trials", 0), ("3b. Stopping bad trials early", 0), ("3c. Checkpoints", 0),
    ("3e. PyTorch", 0), ("3e. PyTorch", 1), ("3f. Babysitting one run", 0), ("3f. Babysitting one run", 1),
    ("5. Reading results", 0),
    ("The report, the diagnosis, the importance", 0), ("The live dashboard", 0),
    ("3g. Several objectives and constraints", 0), ("Priors: what you already believe", 0),
    ("6. Coming from Optuna", 0),
}


def test_every_guide_block_is_run_or_excused() -> None:
    """A Python block added to the guide must get a test above (or a reason in NOT_RUN)."""
    text = GUIDE.read_text()
    total = len(FENCE.findall(text))
    covered = RUN | set(NOT_RUN)
    for heading, index in covered:
        assert index < len(blocks(GUIDE, heading)), f"guide section {heading!r} has no block {index}"
    assert total == len(covered), (
        f"the guide has {total} Python blocks, {len(covered)} are run or excused here: add a test for the new one"
    )


def test_guide_several_objectives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (code,) = blocks(GUIDE, "3g. Several objectives and constraints")
    monkeypatch.chdir(tmp_path)
    ns = run_block(code, {}, "guide: 3g")
    front = ns["front"]
    assert front and all(t.feasible for t in front)
    assert "values_latency_ms" in capsys.readouterr().out


def test_guide_priors() -> None:
    (code,) = blocks(GUIDE, "Priors: what you already believe")
    space = run_block(code, {}, "guide: priors")["space"]
    study = tunelab.create_study(seed=0, space=space, sampler=tunelab.RandomSampler())
    study.optimize(lambda t: 0.0, n_trials=200)
    lrs = sorted(t.params["lr"] for t in study.trials)
    assert 3e-5 < lrs[100] < 3e-3  # the draws follow the belief: the median lr near 3e-4
    assert sum(t.params["optimizer"] == "adam" for t in study.trials) > 130  # about 80% adam


def test_guide_coming_from_optuna(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """The ported Optuna example runs, and every tunelab name of the mapping table exists."""
    (code,) = blocks(GUIDE, "6. Coming from Optuna")
    monkeypatch.chdir(tmp_path)
    ns = run_block(code, {}, "guide: 6")
    frame = ns["frame"]
    assert (frame.loc[0, "params_lr"], frame.loc[0, "params_optimizer"]) == (3e-3, "adam")  # the enqueued one first
    assert len(frame) == 20 and set(frame["user_attrs_framework"]) == {"numpy"}  # at_most_20 stopped it
    assert "val_loss" in ns["curves"]
    assert ns["pruned"] and all(t.state == tunelab.TrialState.PRUNED for t in ns["pruned"])
    assert "['port']" in capsys.readouterr().out
    with pytest.raises(tunelab.StudyNotFoundError):
        tunelab.load_study("port", ns["storage"])
    # the table's right-hand names: tunelab.X and study.X / trial.X that it lists
    section = GUIDE.read_text().split("## 6. Coming from Optuna", 1)[1]
    table = "\n".join(line.split("|")[2] for line in section.splitlines() if line.startswith("| `"))
    import importlib

    importlib.import_module("tunelab.analysis.importance")  # submodules the table names
    for dotted in set(re.findall(r"tunelab\.([\w.]+)", table)):
        obj: Any = tunelab
        for part in dotted.split("."):
            obj = getattr(obj, part)
    live = tunelab.create_study(objective_names=["loss"], directions=["minimize"])
    trial = live.ask()
    frozen = live.tell(trial, 1.0)
    for owner, instance in (("study", live), ("trial", trial), ("frozen", frozen)):
        for name in set(re.findall(rf"(?<![\w.]){owner}\.(\w+)", table)):  # not tunelab.study.x
            assert hasattr(instance, name), f"the Optuna mapping names {owner}.{name}, which tunelab does not have"
