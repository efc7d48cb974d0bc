"""Where Pareto ASHA's epochs go on multifidelity_mo.py's problem, and which trials it should have kept.

Reads a saved ``multifidelity_mo.py`` JSON (every trial's curve) and, per seed, for one pruned
method against ``tunelab-random`` with the same seed:

- the epochs by outcome: trials stopped at each rung, COMPLETE trials on the run's own final front,
  COMPLETE trials that end dominated by it, trials cut by the budget;
- the epochs spent before the 10th configuration started (asynchronous ASHA's first trials run to
  the end while the rungs are nearly empty);
- the *key* trials: of the configurations the run started within a third of the epochs random search
  needed to reach its final hypervolume (the target's horizon), the fewest whose *final* values
  (trained to R epochs, stopped trials included) reach that hypervolume, chosen greedily by
  hypervolume; for each, how the run treated it (completed, or stopped at which rung) and its rank
  and front among the trials at that rung. A pruner that kept all of them would meet the target.

Final values of stopped trials come from ``--curve-cache`` (multifidelity_mo.py's format: a
network's curve depends only on its parameters); missing epochs are trained and added to the file.

``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/multifidelity_mo_where.py RESULTS.json
--curve-cache CACHE [--method tunelab-random-pasha] [--out results/multifidelity-mo-where.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import multifidelity_mo as mm
import numpy as np
from overhead import save_json

from tunelab.multiobjective import hypervolume, losses
from tunelab.pruners.pareto import _key, pareto_order

RUNGS = (1, 3, 9)
EARLY_CONFIGS = 10


def final_error(params: Mapping[str, Any], curves: mm.CurveCache) -> float:
    """The validation error after R epochs (trained here when the cache stops short)."""
    trainer = mm.CachedTrainer(params, curves)
    result = None
    for _ in range(mm.MAX_EPOCHS):
        result = trainer.train_epoch()
    assert result is not None
    return 1.0 - result.val_acc


def rank_at(run: Mapping[str, Any], number: int, step: int) -> tuple[int, int, int]:
    """(rank, front, competitors) of trial ``number`` among the run's trials that reported ``step``
    no later than it (the trials are sequential), as ParetoSuccessiveHalvingPruner ranks them."""
    trials = [t for t in run["trials"] if t["number"] <= number and len(t["val_acc"]) >= step]
    points = losses([[1.0 - t["val_acc"][step - 1], float(t["n_params"])] for t in trials],
                    ["minimize", "minimize"])
    front, crowd = pareto_order(points)
    keys = [_key(int(f), float(c)) for f, c in zip(front, crowd, strict=True)]
    me = next(i for i, t in enumerate(trials) if t["number"] == number)
    return sorted(keys).index(keys[me]) + 1, int(front[me]) + 1, len(trials)


def analyse_seed(random_run: Mapping[str, Any], run: Mapping[str, Any], curves: mm.CurveCache) -> dict[str, Any]:
    target = mm.final_hv(random_run)
    base = mm.epochs_to_reach(random_run, target)
    got = mm.epochs_to_reach(run, target)
    horizon = (base or run["budget"]) / 3.0
    epochs: Counter[str] = Counter()
    complete = [t for t in run["trials"] if t["state"] == "complete"]
    own = np.array([[1.0 - t["val_acc"][-1], math.log10(t["n_params"])] for t in complete]).reshape(-1, 2)
    on_front = set(np.flatnonzero(pareto_order(own)[0] == 0)) if len(own) else set()
    for t in run["trials"]:
        n = len(t["val_acc"])
        if t["state"] == "pruned":
            epochs[f"stopped at {n}"] += n
        elif t["state"] == "complete":
            epochs["complete, on the final front" if complete.index(t) in on_front else "complete, dominated"] += n
        else:
            epochs["cut"] += n
    early = next((t["start"] for t in run["trials"] if t["number"] == EARLY_CONFIGS), run["budget"])
    started = [t for t in run["trials"] if t["start"] < horizon]
    finals = [(final_error(t["params"], curves), math.log10(t["n_params"])) for t in started]
    chosen: list[int] = []
    while True:
        now = hypervolume([finals[i] for i in chosen], mm.REFERENCE) if chosen else 0.0
        if now >= target - mm.TIE:
            break
        gain = [(hypervolume([finals[j] for j in [*chosen, i]], mm.REFERENCE), i)
                for i in range(len(started)) if i not in chosen]
        best = max(gain, default=(now, -1))
        if best[1] < 0 or best[0] <= now:
            chosen = []  # the configurations started by the horizon cannot reach it
            break
        chosen.append(best[1])
    key = []
    for i in chosen:
        t = started[i]
        n = len(t["val_acc"])
        entry: dict[str, Any] = {"number": t["number"], "start": t["start"], "log10_params": round(finals[i][1], 3),
                                 "final_error": round(finals[i][0], 4), "state": t["state"], "epochs": n,
                                 "rung_errors": [round(1.0 - t["val_acc"][r - 1], 4) for r in RUNGS if r <= n]}
        if t["state"] == "pruned":
            entry["rank"], entry["front"], entry["competing"] = rank_at(run, t["number"], n)
        key.append(entry)
    return {"seed": run["seed"], "target_hv": target, "random_epochs": base, "epochs": got,
            "ratio": None if got is None or not base else got / base, "horizon": horizon,
            "configs_by_horizon": len(started), "epochs_before_config_10": early,
            "epochs_by_outcome": dict(epochs), "reachable_by_horizon": bool(chosen), "key": key}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--curve-cache", type=Path, required=True)
    p.add_argument("--method", default="tunelab-random-pasha")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    data = json.loads(args.results.read_text())
    curves: mm.CurveCache = json.loads(args.curve_cache.read_text()) if args.curve_cache.exists() else {}
    by = {(r["method"], r["seed"]): r for r in data["runs"] if not r["error"]}
    seeds = sorted(s for m, s in by if m == args.method and (mm.RANDOM, s) in by)
    rows = [analyse_seed(by[(mm.RANDOM, s)], by[(args.method, s)], curves) for s in seeds]
    args.curve_cache.write_text(json.dumps(curves))
    for r in rows:
        fate = ", ".join(f"#{k['number']} " + (k["state"] if k["state"] != "pruned" else
                         f"stopped at {k['epochs']} (rank {k['rank']}/{k['competing']}, front {k['front']})")
                         for k in r["key"])
        ratio = "never" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"seed {r['seed']:>2}: ratio {ratio}, {r['configs_by_horizon']} configs by {r['horizon']:.0f} epochs, "
              f"10th config at epoch {r['epochs_before_config_10']}; key: {fate or 'not reachable by the horizon'}")
    fates: Counter[str] = Counter()
    for r in rows:
        for k in r["key"]:
            fates["complete" if k["state"] != "pruned" else f"stopped at {k['epochs']}"] += 1
    outcome: Counter[str] = Counter()
    for r in rows:
        outcome.update(r["epochs_by_outcome"])
    total = sum(outcome.values())
    print(f"\n{args.method}, {len(rows)} seeds: key trials {dict(fates)}; "
          f"reachable by the horizon in {sum(r['reachable_by_horizon'] for r in rows)}/{len(rows)} seeds")
    print("epochs by outcome (all seeds): " + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(outcome.items())))
    print(f"epochs before the 10th configuration: median "
          f"{statistics.median(r['epochs_before_config_10'] for r in rows):.0f}")
    if args.out:
        save_json(args.out, {"benchmark": "multifidelity_mo_where", "results": str(args.results),
                             "method": args.method, "key_fates": dict(fates), "epochs_by_outcome": dict(outcome),
                             "seeds": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
