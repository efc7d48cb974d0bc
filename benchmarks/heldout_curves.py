"""The learning-curve model on held-out published curves (issue 20): LCDB, not this repository's.

LCDB (Mohr, Viering, Loog et al., "LCDB 1.0: An Extensive Learning Curves Database for
Classification Tasks", ECML PKDD 2022) ships, in its PyPI package ``lcdb`` (installed without
its dependencies into the bench venv by ``make .venv-bench/.lcdb``; nothing is downloaded at run
time), the validation accuracy of 20 scikit-learn classifiers on 246 OpenML datasets at training
set sizes 16, 23, 32, 45, 64... (a factor of sqrt(2) apart). None of these curves was used to
build or tune :mod:`tunelab.pruners.curves`. The resource is the training set's size; a curve is
one (dataset, learner) pair of outer and inner seed 0 (the noise a single run has).

1. Prediction. For every curve with at least ``--min-anchors`` sizes, the model sees the points up
   to 1/16, 1/8, 1/4 and 1/2 of the final size and predicts the final value: how often the 90%
   interval covers the true final value (nominal 0.90), the median absolute error of its mean,
   and the same error for the naive "the last value seen stays" prediction.
2. Pruning. On ``--datasets`` datasets, the 20 learners run one after another in an order drawn
   from the seed, each reporting its curve size by size through the real
   :class:`tunelab.LearningCurvePruner` (``max_resource`` = the dataset's final size,
   ``confidence`` 0.95, ``top_k`` 1), in a real in-memory study. Reported: the share of the
   resource the study spent (sum over learners of the largest size each reached, over the same sum
   without pruning), wrong stops (a learner stopped whose final value is among the dataset's top
   3), and the regret of the best final value found against the best learner's.

    PYTHONPATH=src .venv-bench/bin/python benchmarks/heldout_curves.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import tunelab
from tunelab.pruners.curves import fit_curve

RESULTS = Path(__file__).resolve().parent / "results" / "heldout_curves.json"
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
MIN_POINTS = 5
INTERVAL = 0.9


@dataclass(frozen=True)
class Curve:
    dataset: int
    learner: str
    sizes: np.ndarray
    accuracy: np.ndarray


def lcdb_csv() -> Path:
    """LCDB's accuracy table, found without importing the package (its import needs openml)."""
    spec = importlib.util.find_spec("lcdb")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the LCDB package is missing: make .venv-bench/.lcdb (pip install --no-deps lcdb==0.1.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "database-accuracy.csv"


def load_curves(min_anchors: int) -> list[Curve]:
    import pandas as pd

    table = pd.read_csv(lcdb_csv(), usecols=["openmlid", "learner", "size_train", "outer_seed", "inner_seed",
                                             "score_valid"])
    table = table[(table.outer_seed == 0) & (table.inner_seed == 0)].dropna(subset=["score_valid"])
    curves = []
    for (dataset, learner), rows in table.groupby(["openmlid", "learner"], sort=True):
        rows = rows.sort_values("size_train").drop_duplicates("size_train")
        if len(rows) >= min_anchors:
            curves.append(Curve(int(dataset), str(learner).rsplit(".", 1)[-1], rows.size_train.to_numpy(dtype=float),
                                rows.score_valid.to_numpy(dtype=float)))
    return curves


# -- 1. prediction -------------------------------------------------------------------------------
def predict_final(curves: Sequence[Curve], console: Console) -> list[dict[str, Any]]:
    rows = []
    for fraction in FRACTIONS:
        covered, errors, naive, fitted, failed = [], [], [], 0, 0
        for c in curves:
            final_size, final = float(c.sizes[-1]), float(c.accuracy[-1])
            seen = c.sizes <= fraction * final_size
            if seen.sum() < MIN_POINTS:
                continue
            model = fit_curve(c.sizes[seen], c.accuracy[seen], direction="maximize", horizon=final_size)
            if not model.ok:
                failed += 1
                continue
            p = model.predict(final_size, INTERVAL)
            fitted += 1
            covered.append(p.low <= final <= p.high)
            errors.append(abs(p.mean - final))
            naive.append(abs(float(c.accuracy[seen][-1]) - final))
        rows.append({
            "seen": f"1/{round(1 / fraction)}", "curves": fitted, "not_fitted": failed,
            "coverage": float(np.mean(covered)) if covered else None,
            "median_abs_error": float(np.median(errors)) if errors else None,
            "naive_median_abs_error": float(np.median(naive)) if naive else None,
        })
        console.log(f"prediction from 1/{round(1 / fraction)} of the final size: {fitted} curves")
    return rows


# -- 2. pruning ----------------------------------------------------------------------------------
def replay_dataset(curves: Sequence[Curve], seed: int, confidence: float) -> dict[str, Any]:
    """The learners of one dataset, in an order drawn from ``seed``, through a LearningCurvePruner."""
    final_size = min(float(c.sizes[-1]) for c in curves)  # the dataset's full size (all learners reach it)
    pool = [(c, c.sizes[c.sizes <= final_size], c.accuracy[c.sizes <= final_size]) for c in curves]
    finals = {c.learner: float(acc[-1]) for c, _, acc in pool}
    top3 = set(sorted(finals, key=finals.__getitem__, reverse=True)[:3])
    order = np.random.default_rng(seed).permutation(len(pool))
    pruner = tunelab.LearningCurvePruner(max_resource=int(final_size), metric="val_acc", direction="maximize",
                                         min_points=MIN_POINTS, confidence=confidence)
    study = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(), seed=seed, pruner=pruner)
    spent = full = 0.0
    stopped: list[str] = []
    best = -np.inf
    for index in order:
        curve, sizes, accuracy = pool[index]
        trial = study.ask()
        reached = sizes[-1]
        pruned = False
        for size, value in zip(sizes, accuracy, strict=True):
            trial.report(int(size), val_acc=float(value))
            if size < final_size and trial.should_prune():
                reached, pruned = size, True
                break
        spent += float(reached)
        full += float(sizes[-1])
        if pruned:
            stopped.append(curve.learner)
            study.tell(trial, state=tunelab.TrialState.PRUNED)
        else:
            best = max(best, float(accuracy[-1]))
            study.tell(trial, float(accuracy[-1]))
    return {"dataset": curves[0].dataset, "seed": seed, "learners": len(pool), "stopped": len(stopped),
            "wrong_stops": sorted(set(stopped) & top3), "resource_share": spent / full,
            "regret": max(finals.values()) - best}


def prune_replays(curves: Sequence[Curve], datasets: int, seeds: int, confidence: float,
                  console: Console) -> list[dict[str, Any]]:
    by_dataset: dict[int, list[Curve]] = {}
    for c in curves:
        by_dataset.setdefault(c.dataset, []).append(c)
    eligible = sorted(d for d, cs in by_dataset.items() if len(cs) >= 10)
    chosen = np.random.default_rng(0).choice(eligible, size=min(datasets, len(eligible)), replace=False)
    out = []
    for dataset in sorted(int(d) for d in chosen):
        for seed in range(seeds):
            out.append(replay_dataset(by_dataset[dataset], seed, confidence))
        console.log(f"dataset {dataset}: {out[-1]['stopped']}/{out[-1]['learners']} stopped, "
                    f"{out[-1]['resource_share']:.2f} of the resource")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 curves for prediction, 5 datasets x 1 seed")
    p.add_argument("--curves", type=int, default=800, help="curves sampled for the prediction part (default 800)")
    p.add_argument("--datasets", type=int, default=16, help="datasets replayed through the pruner (default 16)")
    p.add_argument("--seeds", type=int, default=1, help="learner orders per dataset (default 1)")
    p.add_argument("--min-anchors", type=int, default=12, help="sizes a curve needs (default 12)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--json", type=Path, default=None, help=f"save the results (default {RESULTS.name} unless --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.curves, args.datasets, args.seeds = 300, 5, 1
    console = Console(width=150)
    started = time.perf_counter()
    curves = load_curves(args.min_anchors)
    sample = [curves[i] for i in sorted(np.random.default_rng(0).choice(len(curves), min(args.curves, len(curves)),
                                                                          replace=False))]
    console.log(f"LCDB: {len(curves)} curves with >= {args.min_anchors} sizes; {len(sample)} sampled")
    prediction = predict_final(sample, console)
    table = Table(title=f"LCDB validation accuracy: the final value predicted from part of the curve "
                        f"({len(sample)} curves; {INTERVAL:.0%} interval)")
    for col in ("seen", "curves", "coverage", "median |error|", "naive |error|"):
        table.add_column(col, justify="right")
    for r in prediction:
        table.add_row(r["seen"], str(r["curves"]), f"{r['coverage']:.3f}", f"{r['median_abs_error']:.4f}",
                      f"{r['naive_median_abs_error']:.4f}")
    console.print(table)
    replays = prune_replays(curves, args.datasets, args.seeds, args.confidence, console)
    summary = {
        "replays": len(replays),
        "resource_share_median": statistics.median(r["resource_share"] for r in replays),
        "stopped_per_replay_median": statistics.median(r["stopped"] for r in replays),
        "wrong_stops_total": sum(len(r["wrong_stops"]) for r in replays),
        "top3_learners_total": 3 * len(replays),
        "regret_median": statistics.median(r["regret"] for r in replays),
        "regret_mean": statistics.fmean(r["regret"] for r in replays),
        "replays_with_regret": sum(r["regret"] > 0 for r in replays),
    }
    table = Table(title=f"LearningCurvePruner(confidence={args.confidence}) on {len(replays)} LCDB replays "
                        "(up to 20 learners per dataset)")
    for key in summary:
        table.add_column(key.replace("_", " "), justify="right")
    table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in summary.values()))
    console.print(table)
    elapsed = time.perf_counter() - started
    console.print(f"done in {elapsed:.0f} s")
    path = args.json or (None if args.quick else RESULTS)
    if path is not None:
        path.write_text(json.dumps({
            "benchmark": "heldout_curves", "source": "lcdb 0.1.0 (PyPI), database-accuracy.csv, seed 0/0",
            "settings": {k: v for k, v in vars(args).items() if k != "json"}, "duration_s": round(elapsed, 1),
            "prediction": prediction, "pruning": summary, "replays": replays,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
