"""The main job, measured: the training recipe on the digits CNN against searches of the same cost.

For each seed, three methods train the same CNN (``tunelab.recipe.digits``) on the same data:

- **tunelab recipe**: ``tunelab.recipe.run`` with its default budget (checks a.-c., coarse
  search, refine, final), 2 worker processes; its wall time, the epochs it trained and its
  final validation accuracy;
- **random search**: tunelab's ``RandomSampler`` over a wide space (lr 1e-5..1 log: no range
  test to narrow it, weight decay, width, dropout), runs of ``refine_epochs`` epochs, as many
  as the recipe's trained epochs pay for, 2 workers; the best validation accuracy of any run;
- **Optuna TPE + median pruner**: Optuna 5's TPESampler and MedianPruner on the same wide space
  and the same runs, until the same number of epochs is trained (pruned runs count the epochs
  they trained), sequentially in this process (torch on one thread); the best validation
  accuracy of any run.

Every method's accuracy is chosen on the validation set, the same optimism for all. Printed as
a table (median and range over seeds), saved to ``benchmarks/results/recipe.json``.

Run ``make bench-recipe`` or ``OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/recipe.py
[--seeds 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from overhead import machine_info
from rich.console import Console
from rich.table import Table

import tunelab
from tunelab.recipe import Budget, digits, run

RESULTS = Path(__file__).resolve().parent / "results" / "recipe.json"
WIDE_SPACE = {
    "lr": tunelab.Float(1e-5, 1.0, log=True),
    "weight_decay": tunelab.Float(1e-6, 1e-2, log=True),
    **digits.SPACE,
}


def trained_epochs(study: tunelab.Study) -> int:
    """Epochs trained by every trial of ``study`` (its last reported step; pruned runs count too)."""
    total = 0
    for t in study.trials:
        steps = study.get_curves(t.number).get("val_acc", ([], []))[0]
        total += max(steps, default=0)
    return total


def recipe_method(seed: int, budget: Budget, folder: Path) -> dict[str, Any]:
    start = time.perf_counter()
    result = run(digits.trainer(), storage=f"sqlite:///{folder / 'recipe.db'}", seed=seed, budget=budget,
                 console=Console(quiet=True), show_progress=False)
    seconds = time.perf_counter() - start
    return {"accuracy": result.value, "seconds": seconds, "epochs": trained_epochs(result.study),
            "trials": len(result.study.trials), "ok": result.ok,
            "steps": {s.step: round(s.seconds, 1) for s in result.steps}}


def random_method(seed: int, epochs_budget: int, run_epochs: int, folder: Path) -> dict[str, Any]:
    start = time.perf_counter()
    study = tunelab.create_study(name="random", storage=f"sqlite:///{folder / 'random.db'}", direction="maximize",
                                 sampler=tunelab.RandomSampler(), seed=seed)
    n_runs = max(1, epochs_budget // run_epochs)
    study.optimize(digits.trainer().objective(epochs=run_epochs, seed=seed, prune=False), n_trials=n_runs,
                   n_workers=2, space=WIDE_SPACE, show_progress=False)
    return {"accuracy": study.best_value, "seconds": time.perf_counter() - start,
            "epochs": trained_epochs(study), "trials": n_runs}


def optuna_method(seed: int, epochs_budget: int, run_epochs: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    trainer = digits.trainer()
    train, val = trainer.load_data()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4))
    used = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal used
        params = {
            "lr": trial.suggest_float("lr", 1e-5, 1.0, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "width": trial.suggest_int("width", 8, 48, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
        model = trainer.build_model(params, seed + trial.number)
        optimizer = trainer.make_optimizer(model, params)
        per_epoch = trainer.steps_per_epoch(train, trainer.batch_size)
        scheduler = trainer.make_scheduler(optimizer, run_epochs * per_epoch)
        generator = torch.Generator().manual_seed(seed + trial.number)
        best = 0.0
        for epoch in range(1, run_epochs + 1):
            model.train()
            for xb, yb in trainer.batches(train, trainer.batch_size, generator):
                loss = trainer.loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            used += 1
            metrics = trainer.evaluate(model, val)
            if not math.isfinite(metrics["val_loss"]):
                raise optuna.TrialPruned()
            best = max(best, metrics["val_acc"])
            trial.report(metrics["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    start = time.perf_counter()
    while used < epochs_budget:
        study.optimize(objective, n_trials=1)
    done = [t for t in study.trials if t.value is not None]
    return {"accuracy": max(t.value for t in done) if done else None, "seconds": time.perf_counter() - start,
            "epochs": used, "trials": len(study.trials)}


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--quick", action="store_true", help="the recipe's quick budget, one seed")
    parser.add_argument("--no-peers", action="store_true", help="only the recipe")
    args = parser.parse_args()
    budget = Budget.quick() if args.quick else Budget()
    seeds = range(1 if args.quick else args.seeds)
    console = Console(width=max(Console().width, 110))
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            rec = recipe_method(seed, budget, folder)
            rows.append({"method": "tunelab recipe", "seed": seed, **rec})
            console.print(f"seed {seed}: recipe {rec['accuracy']:.4f} in {rec['seconds']:.0f}s, {rec['epochs']} epochs")
            if args.no_peers:
                continue
            rnd = random_method(seed, rec["epochs"], budget.refine_epochs, folder)
            rows.append({"method": "tunelab random search", "seed": seed, **rnd})
            console.print(f"seed {seed}: random {rnd['accuracy']:.4f} in {rnd['seconds']:.0f}s")
            opt = optuna_method(seed, rec["epochs"], budget.refine_epochs)
            rows.append({"method": "Optuna TPE + median", "seed": seed, **opt})
            console.print(f"seed {seed}: optuna {opt['accuracy']:.4f} in {opt['seconds']:.0f}s")
    table = Table(title=f"digits CNN, {len(seeds)} seed(s): validation accuracy (median \\[min, max]) at equal epochs")
    for col in ("method", "val accuracy", "wall time (median)", "epochs (median)", "trials (median)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        table.add_row(method, summary([r["accuracy"] for r in mine if r["accuracy"] is not None]),
                      f"{statistics.median(r['seconds'] for r in mine):.0f}s",
                      f"{statistics.median(r['epochs'] for r in mine):.0f}",
                      f"{statistics.median(r['trials'] for r in mine):.0f}")
    console.print(table)
    recipe_rows = [r for r in rows if r["method"] == "tunelab recipe"]
    worst = min((r["accuracy"] or 0.0) for r in recipe_rows)
    slowest = max(r["seconds"] for r in recipe_rows)
    console.print(f"target: the recipe reaches >= 0.97 in <= 10 min: lowest {worst:.4f}, slowest {slowest:.0f}s: "
                  + ("[green]met[/]" if worst >= 0.97 and slowest <= 600 else "[red]missed[/]"))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
        "budget": budget.__dict__, "quick": args.quick, "rows": rows,
    }, indent=1))
    console.print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
