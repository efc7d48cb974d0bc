"""How long tunelab.viz takes to build each figure of a large study, and how big the figures are.

The study: 10,000 trials (``--trials``) in a fresh SQLite file, written through the storage API
for speed (create a RUNNING trial with its params and ``coarse_to_fine`` record, report its curve,
finish it): four parameters (``lr`` log-float, ``weight_decay`` log-float, ``layers`` int,
``optimizer`` categorical with None among its choices), a conditional ``momentum`` (only with
sgd), 3 coarse-to-fine stages with shrinking recorded ranges, about 85% COMPLETE, 10% PRUNED
(their curves stop early), 5% FAIL. The first 1,000 trials (``--curves``) report ``val_loss``
and ``loss`` curves of 100 steps (``--steps``). A recipe record with a learning-rate range test
is set on the study.

Timed, the median of ``--repeats`` (default 3) builds: each figure function from the study alone
(it reads the trials itself, as a user's call does: "build s"), and from the trials already read
(``trials=study.trials``, as a report drawing several figures does: "given s"); then
``fig.to_json()`` and its size. Also timed: reading the trials once (``study.trials``).
Target: each figure under ~1-2 s at 10k trials (from the study alone).

Run ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/viz.py [--trials N]``; the results are printed
and saved to ``benchmarks/results/viz.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tunelab
from tunelab import Categorical, Float, Int, TrialState, viz

RESULTS = Path(__file__).parent / "results" / "viz.json"
TARGET_SECONDS = 2.0


def fill_study(study: tunelab.Study, n_trials: int, n_curves: int, steps: int, seed: int = 0) -> None:
    """Write ``n_trials`` finished trials through the storage API (see the module docstring)."""
    storage = study.storage
    study_id = storage.get_study(study.name).study_id
    rng = np.random.default_rng(seed)
    full = {"lr": Float(1e-5, 1.0, log=True), "weight_decay": Float(1e-6, 1e-1, log=True),
            "layers": Int(1, 8), "momentum": Float(0.0, 0.99)}
    optimizer = Categorical([None, "sgd", "adam"])
    per_stage = math.ceil(n_trials / 3)
    for n in range(n_trials):
        stage = min(n // per_stage, 2)
        shrink = 0.5 ** stage
        ranges: dict[str, Any] = {}
        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}
        for name, d in full.items():
            if name == "momentum":
                continue
            if stage == 0:
                lo, hi = d.low, d.high
            else:  # a range around a fixed optimum, narrower each stage
                centre = {"lr": 3e-3, "weight_decay": 1e-4, "layers": 4}[name]
                u = d.to_unit(centre)
                lo = d.from_unit(max(0.0, u - shrink / 2))
                hi = d.from_unit(min(1.0, u + shrink / 2))
                ranges[name] = [lo, hi]
            if isinstance(d, Int):
                params[name] = int(rng.integers(int(lo), int(hi) + 1))
            elif d.log:
                params[name] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            else:
                params[name] = float(rng.uniform(lo, hi))
            dists[name] = d
        params["optimizer"] = optimizer.choices[int(rng.integers(3))]
        dists["optimizer"] = optimizer
        if params["optimizer"] == "sgd":
            params["momentum"] = float(rng.uniform(0.0, 0.99))
            dists["momentum"] = full["momentum"]
        value = ((math.log10(params["lr"]) + 2.5) ** 2 + 0.3 * (math.log10(params["weight_decay"]) + 4) ** 2 / 4
                 + 0.05 * abs(params["layers"] - 4) + (0.2 if params["optimizer"] is None else 0.0)
                 + 0.1 * params.get("momentum", 0.0) + float(rng.normal(0, 0.05)))
        draw = rng.random()
        state = TrialState.COMPLETE if draw < 0.85 else TrialState.PRUNED if draw < 0.95 else TrialState.FAIL
        trial = storage.create_trial(study_id, TrialState.RUNNING, params=params, distributions=dists,
                                     user_attrs={"train": {"stage": ("coarse", "refine", "final")[stage]}},
                                     system_attrs={"coarse_to_fine": {"stage": stage, "ranges": ranges}})
        if n < n_curves:
            last = steps if state == TrialState.COMPLETE else int(rng.integers(5, steps // 2))
            for s in range(last):
                v = value + 2.0 * math.exp(-s / 20) + float(rng.normal(0, 0.02))
                storage.report(trial.trial_id, s, {"val_loss": v, "loss": 0.9 * v})
        storage.finish_trial(trial.trial_id, state, value=value if state == TrialState.COMPLETE else None,
                             error="synthetic failure" if state == TrialState.FAIL else None)
    runs = []
    for k, lr in enumerate([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]):
        diverged = lr >= 0.1
        curve = [[i, 2.3 * math.exp(i / 15) if diverged else 2.3 - 0.25 * k * math.log1p(i)] for i in range(1, 101, 4)]
        runs.append({"lr": lr, "status": "diverged" if diverged else "falls" if k >= 2 else "slow", "curve": curve})
    study.set_system_attr("recipe", {"steps": [{"step": "lr_range", "verdict": "pass", "message": "synthetic",
                                                "evidence": {"runs": runs, "range": [1e-3, 1e-2]}}]})


def time_it(build: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--curves", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--db", type=Path, default=None,
                        help="keep the study in this SQLite file, reuse it when it exists (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tunelab-bench-viz-") as tmp:
        db = args.db if args.db is not None else Path(tmp) / "viz.db"
        url = f"sqlite:///{db}"
        fill_seconds = None
        if not db.exists():
            study = tunelab.create_study(name="viz", storage=url, sampler=tunelab.RandomSampler(), seed=0,
                                         artifact_dir=tmp)
            start = time.perf_counter()
            fill_study(study, args.trials, args.curves, args.steps)
            fill_seconds = round(time.perf_counter() - start, 2)
            print(f"filled {args.trials} trials ({args.curves} with {args.steps}-step curves) in {fill_seconds:.1f}s",
                  flush=True)
        study = tunelab.load_study("viz", url)
        read_seconds, trials = time_it(lambda: study.trials, args.repeats)
        shares = {"lr": 0.62, "weight_decay": 0.21, "layers": 0.09, "optimizer": 0.05, "momentum": 0.03}
        # Each figure: (built from the study alone, built from trials already read) - the second is how
        # a report that draws several figures pays the read once. None: the function reads no trials.
        figures: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
            "plot_history": (lambda: viz.plot_history(study), lambda: viz.plot_history(study, trials=trials)),
            "plot_slice": (lambda: viz.plot_slice(study), lambda: viz.plot_slice(study, trials=trials)),
            "plot_contour": (lambda: viz.plot_contour(study, "lr", "weight_decay"),
                             lambda: viz.plot_contour(study, "lr", "weight_decay", trials=trials)),
            "plot_contour (categorical)": (lambda: viz.plot_contour(study, "lr", "optimizer"),
                                           lambda: viz.plot_contour(study, "lr", "optimizer", trials=trials)),
            "plot_parallel_coordinates": (lambda: viz.plot_parallel_coordinates(study),
                                          lambda: viz.plot_parallel_coordinates(study, trials=trials)),
            "plot_curves": (lambda: viz.plot_curves(study), lambda: viz.plot_curves(study, trials=trials)),
            "plot_importance": (lambda: viz.plot_importance(shares), None),
            "plot_stages": (lambda: viz.plot_stages(study), lambda: viz.plot_stages(study, trials=trials)),
            "plot_lr_range": (lambda: viz.plot_lr_range(study), None),
        }
        viz.plot_importance(shares)  # plotly's first figure loads its templates (~0.3 s once per process)
        rows: list[dict[str, Any]] = []
        print(f"study.trials (read once): {read_seconds:.3f}s for {len(trials)} trials")
        print(f"{'figure':<28} {'build s':>8} {'given s':>8} {'to_json s':>9} {'JSON MB':>8} {'traces':>6}")
        for name, (build, given) in figures.items():
            seconds, fig = time_it(build, args.repeats)
            given_seconds = time_it(given, args.repeats)[0] if given is not None else None
            start = time.perf_counter()
            text = fig.to_json()
            json_seconds = time.perf_counter() - start
            row = {"figure": name, "build_seconds": round(seconds, 4),
                   "build_seconds_given_trials": None if given_seconds is None else round(given_seconds, 4),
                   "to_json_seconds": round(json_seconds, 4), "json_bytes": len(text), "traces": len(fig.data),
                   "trace_types": sorted({type(t).__name__ for t in fig.data})}
            rows.append(row)
            given_text = f"{given_seconds:>8.3f}" if given_seconds is not None else f"{'-':>8}"
            print(f"{name:<28} {seconds:>8.3f} {given_text} {json_seconds:>9.3f} {len(text) / 1e6:>8.2f} "
                  f"{len(fig.data):>6}  {', '.join(row['trace_types'])}", flush=True)
        slowest = max(rows, key=lambda r: r["build_seconds"])
        met = slowest["build_seconds"] <= TARGET_SECONDS
        print(f"target (each figure <= {TARGET_SECONDS:.0f}s at {args.trials} trials): "
              f"{'met' if met else 'NOT met'} (slowest: {slowest['figure']}, {slowest['build_seconds']:.2f}s)")
    import plotly

    data = {
        "config": {"trials": args.trials, "curves": args.curves, "steps": args.steps, "repeats": args.repeats,
                   "storage": "sqlite"},
        "versions": {"python": sys.version.split()[0], "plotly": plotly.__version__, "numpy": np.__version__},
        "fill_seconds": fill_seconds,
        "read_trials_seconds": round(read_seconds, 4),
        "figures": rows,
        "target_seconds": TARGET_SECONDS,
        "target_met": met,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = args.output.with_name(args.output.name + ".tmp")
    tmp_path.write_text(json.dumps(data, indent=2) + "\n")
    tmp_path.replace(args.output)
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
