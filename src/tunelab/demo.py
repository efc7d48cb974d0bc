"""tunelab's main job for now: tune a real network on real data and print what was learned.

A multilayer perceptron (scikit-learn's MLPClassifier) on the digits data set that
ships with scikit-learn, over learning rate, L2 penalty, width, activation and batch
size, searched coarse to fine in parallel worker processes, stored in SQLite. Run it
again and the study resumes: the last stage keeps refining.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from rich.console import Console
from rich.table import Table

from tunelab.distributions import Categorical, Float, Int
from tunelab.errors import ConfigError
from tunelab.records import TrialState, sort_key
from tunelab.samplers import CoarseToFineSampler, Sampler
from tunelab.study import Study, create_study
from tunelab.trial import Trial

SPACE = {
    "lr": Float(1e-4, 3e-1, log=True),
    "alpha": Float(1e-6, 1e-1, log=True),
    "width": Int(16, 256, log=True),
    "activation": Categorical(["relu", "tanh"]),
    "batch_size": Categorical([16, 32, 64, 128]),
}

_DATA: dict[str, Any] = {}


def _data() -> dict[str, Any]:
    """The digits split once per process: 75% train, 25% validation, stratified."""
    if not _DATA:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        _DATA.update(x_tr=x_tr, x_va=x_va, y_tr=y_tr, y_va=y_va)
    return _DATA


def mlp_objective(trial: Trial, max_iter: int = 30) -> float:
    """Validation accuracy of an MLP trained with the trial's parameters (reported per epoch)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    p = trial.params
    width, batch, lr, alpha = p["width"], p["batch_size"], p["lr"], p["alpha"]
    assert isinstance(width, int) and isinstance(batch, int)
    assert isinstance(lr, float) and isinstance(alpha, float)
    d = _data()
    model = MLPClassifier(
        hidden_layer_sizes=(width,), activation=str(p["activation"]), solver="adam", alpha=alpha,
        batch_size=batch, learning_rate_init=lr, random_state=trial.number, max_iter=1, warm_start=True,
    )
    accuracy = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(max_iter):
            model.fit(d["x_tr"], d["y_tr"])
            accuracy = float(model.score(d["x_va"], d["y_va"]))
            trial.report(epoch, train_loss=float(model.loss_), val_acc=accuracy)
    return accuracy


def default_sampler() -> Sampler:
    """Coarse to fine: 12 random trials over the whole space, then two stages zooming in."""
    return CoarseToFineSampler(n_stages=3, trials_per_stage=12, top_k=5)


def run(
    storage: str = "sqlite:///tunelab.db",
    name: str = "demo-mlp-digits",
    n_trials: int = 36,
    n_workers: int = 2,
    seed: int = 0,
    show_progress: bool | None = None,
    console: Console | None = None,
) -> Study:
    """Run (or resume) the demo study and print its summary."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("the demo needs scikit-learn: pip install 'tunelab[demo]'") from None
    console = console or Console()
    study = create_study(
        name=name, storage=storage, direction="maximize", sampler=default_sampler(), seed=seed,
        space=SPACE, load_if_exists=True,
    )
    console.print(
        f"[bold]tunelab demo[/]: MLP on scikit-learn digits, study [cyan]{study.name}[/] in {storage}, "
        f"{n_trials} trials on {n_workers} worker processes, sampler {study.sampler!r}"
    )
    start = time.perf_counter()
    study.optimize(mlp_objective, n_trials=n_trials, n_workers=n_workers, show_progress=show_progress)
    elapsed = time.perf_counter() - start
    print_summary(study, console, elapsed)
    return study


def print_summary(study: Study, console: Console, elapsed: float | None = None) -> None:
    """Counts, the best trial and the top five as a table."""
    trials = study.trials
    counts = {s.value: sum(t.state == s for t in trials) for s in TrialState}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    timing = f" in {elapsed:.1f}s" if elapsed is not None else ""
    console.print(
        f"{len(trials)} trials{timing}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    )
    if not done:
        console.print("[red]no trial completed[/]")
        return
    table = Table(title=f"best trials of {study.name} ({study.direction})")
    names = list(dict.fromkeys(k for t in done for k in t.params))
    for col in ["#", "value", *names, "stage"]:
        table.add_column(col, justify="right")
    for t in sorted(done, key=sort_key(study.direction))[:5]:
        stage = t.system_attrs.get("coarse_to_fine", {}).get("stage", "")
        table.add_row(
            str(t.number), f"{t.value:.4f}",
            *[_fmt(t.params.get(n)) for n in names], str(stage),
        )
    console.print(table)
    best = study.best_trial
    console.print(f"best value {best.value:.4f} at trial {best.number}: {dict(best.params)}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)
