"""Hyperband: defect or hedge? Replays fixed learning curves through the real pruners, cheaply.

Each run of a method spends an epoch budget (``--budget`` full trainings of ``R`` epochs, as in
``multifidelity.py``) on configurations drawn, in an order fixed by the seed, from a pool of
complete learning curves; a trial "trains" by reading its curve one epoch at a time, reports
every epoch (steps 1..R) and asks its pruner after every epoch but the last. Every method with
the same seed sees the same configurations in the same order, so the pruners alone differ.

Pools (``--pools``):

- ``digits``: the 600 full 27-epoch validation-loss curves that ``tunelab-random`` and
  ``optuna-random`` trained in ``results/multifidelity.json`` (real training; among the best
  quarter of them, the rank correlation of epoch 1 with epoch 27 is about 0.1);
- ``crossing``: synthetic curves whose early epochs rank poorly: configurations that end best
  start slowest (a fast starter plateaus high);
- ``ranked``: synthetic control whose early epochs rank well.

Methods: tunelab's ASHA, tunelab's Hyperband, each of its brackets alone (ASHA with
``min_early_stopping_rate=b``), and Optuna's HyperbandPruner (with ``--optuna``; needs the bench
venv). Printed per pool: the median and IQR over seeds of the best final value (val loss at epoch R
of a trial trained to the end, what ``study.best_value`` gives), the configurations tried, and,
per Hyperband bracket, its trials, its share of the epochs, where its trials stopped and how many
full trainings it produced. ``--json PATH`` saves it all.

``--compare A.json B.json`` prints saved runs side by side (mean, median, IQR of the regret, and
paired wins / ties / losses against the first file's Hyperband); ``--benchmark LABEL=PATH:METHOD ...``
does the same for runs saved by ``multifidelity.py`` (a markdown table).

Run ``PYTHONPATH=src .venv-bench/bin/python benchmarks/hyperband_analysis.py --optuna --brackets``
(20 seeds by default, under a minute per pool on one core; benchmarks/README.md's tables use
``--seeds 200``, 5 to 9 minutes for the three pools on the shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tunelab

RESULTS = Path(__file__).resolve().parent / "results" / "multifidelity.json"
R, ETA, BUDGET, SEEDS = 27, 3, 30, 20
Pool = np.ndarray  # (configurations, R) validation losses


def digits_pool(epochs: int = R, path: Path = RESULTS) -> Pool:
    """The full-length val-loss curves of the random-search runs saved by multifidelity.py (their first
    ``epochs`` epochs)."""
    data = json.loads(path.read_text())
    curves = [t["val_loss"] for r in data["runs"] if r["method"] in ("tunelab-random", "optuna-random")
              for t in r["trials"] if len(t["val_loss"]) == data["config"]["max_epochs"]]
    pool = np.asarray(curves, dtype=float)
    if epochs > pool.shape[1]:
        raise SystemExit(f"--max-epochs {epochs}: the digits curves have {pool.shape[1]} epochs")
    return pool[:, :epochs]


def synthetic_pool(kind: str, n: int = 600, epochs: int = R, seed: int = 0) -> Pool:
    """Curves ``final + gap * exp(-(t - 1) / tau)`` plus a little noise. ``crossing``: the better the
    final value, the larger the starting gap and the slower the descent; ``ranked``: gap and speed
    independent of the final value, so early epochs rank configurations well."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 1.0, n)  # 0 = best configuration
    final = 0.10 + 0.5 * u
    if kind == "crossing":
        gap = 0.3 + 1.5 * (1.0 - u) + 0.2 * rng.uniform(size=n)
        tau = 1.0 + 10.0 * (1.0 - u) * rng.uniform(0.5, 1.0, n)
    elif kind == "ranked":
        gap = 0.3 + 0.6 * rng.uniform(size=n)
        tau = 1.0 + 4.0 * rng.uniform(size=n)
    else:
        raise ValueError(kind)
    t = np.arange(1, epochs + 1)
    curves = final[:, None] + gap[:, None] * np.exp(-(t[None, :] - 1) / tau[:, None])
    return curves * (1.0 + 0.01 * rng.standard_normal(curves.shape))


def rank_correlation(pool: Pool, epoch: int, top: float = 1.0) -> float:
    """Spearman's rho of the value at ``epoch`` with the final value (among the best ``top`` share)."""
    final = pool[:, -1]
    keep = final <= np.quantile(final, top)
    a, b = pool[keep, epoch - 1], final[keep]
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class Replay:
    """One run: the configurations of a seed, an epoch budget, and what every trial did."""

    def __init__(self, pool: Pool, seed: int, budget_epochs: int) -> None:
        self.pool = pool
        self.order = np.random.default_rng(1000 + seed).integers(0, len(pool), size=100_000)
        self.left = budget_epochs
        self.trials: list[dict[str, Any]] = []

    def train(self, number: int, report: Callable[[int, float], None], should_prune: Callable[[], bool]) -> str:
        curve = self.pool[self.order[number]]
        epochs = len(curve)
        record: dict[str, Any] = {"number": number, "config": int(self.order[number]), "epochs": 0, "state": "complete"}
        self.trials.append(record)
        for epoch in range(1, epochs + 1):
            if self.left <= 0:
                record["state"] = "cut"
                break
            self.left -= 1
            record["epochs"] = epoch
            report(epoch, float(curve[epoch - 1]))
            if epoch < epochs and should_prune():
                record["state"] = "pruned"
                break
        if record["state"] == "complete":
            record["final"] = float(curve[-1])
        return str(record["state"])


def run_tunelab(pool: Pool, seed: int, budget: int, make: Callable[[int], Any]) -> Replay:
    replay = Replay(pool, seed, budget)
    pruner = make(pool.shape[1])
    study = tunelab.create_study(direction="minimize", sampler=tunelab.RandomSampler(), seed=seed, pruner=pruner,
                                 name=f"replay-{seed}")

    def objective(trial: tunelab.Trial) -> float:
        state = replay.train(trial.number, lambda e, v: trial.report(e, val_loss=v), trial.should_prune)
        if state != "complete":
            raise tunelab.TrialPruned()
        return float(replay.trials[-1]["final"])

    while replay.left > 0:
        study.optimize(objective, n_trials=1, catch=(), show_progress=False, heartbeat_interval=None)
    if hasattr(pruner, "bracket_of"):
        for t in replay.trials:
            t["bracket"] = int(pruner.bracket_of(t["number"]))
    return replay


def run_optuna(pool: Pool, seed: int, budget: int) -> Replay:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    replay = Replay(pool, seed, budget)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=pool.shape[1], reduction_factor=ETA)
    study = optuna.create_study(study_name=f"multifidelity-{seed}", direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        state = replay.train(trial.number, lambda e, v: trial.report(v, e), trial.should_prune)
        if state != "complete":
            raise optuna.TrialPruned()
        return float(replay.trials[-1]["final"])

    while replay.left > 0:
        study.optimize(objective, n_trials=1, catch=())
    for t, ft in zip(replay.trials, study.trials, strict=True):
        t["bracket"] = pruner._get_bracket_id(study, ft)
    return replay


def asha(b: int = 0) -> Callable[[int], Any]:
    return lambda r: tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA, max_resource=r,
                                                     min_early_stopping_rate=b, metric="val_loss")


def hyperband(r: int) -> Any:
    return tunelab.HyperbandPruner(min_resource=1, max_resource=r, reduction_factor=ETA, metric="val_loss")


def best_final(replay: Replay) -> float:
    finals = [t["final"] for t in replay.trials if "final" in t]
    return min(finals) if finals else math.inf


def regret(replay: Replay) -> float:
    """Best final value found minus the pool's best final value."""
    return best_final(replay) - float(replay.pool[:, -1].min())


def bracket_table(runs: Sequence[Replay]) -> list[dict[str, Any]]:
    """Per bracket, summed over runs: trials, epoch share, stop steps, full trainings, best finals."""
    total = sum(t["epochs"] for r in runs for t in r.trials)
    out = []
    for b in sorted({t["bracket"] for r in runs for t in r.trials}):
        ts = [t for r in runs for t in r.trials if t["bracket"] == b]
        stops = Counter(t["epochs"] for t in ts if t["state"] == "pruned")
        wins = sum(1 for r in runs if min(r.trials, key=lambda t: t.get("final", math.inf)).get("bracket") == b)
        out.append({"bracket": b, "trials": len(ts), "epochs_share": sum(t["epochs"] for t in ts) / total,
                    "complete": sum(t["state"] == "complete" for t in ts),
                    "stops": dict(sorted(stops.items())), "runs_won": wins})
    return out


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return q[1], q[0], q[2]


def compare(paths: Sequence[Path]) -> None:
    """A table of saved runs side by side (``--json`` files; a method that several hold is labelled by
    file), and paired wins / ties / losses of every Hyperband against the first file's Hyperband."""
    files = [json.loads(p.read_text()) for p in paths]
    for pool in files[0]["pools"]:
        rows: dict[str, list[float]] = {}
        for path, data in zip(paths, files, strict=True):
            for m, entry in data["pools"].get(pool, {"methods": {}})["methods"].items():
                label = m if all(m not in d["pools"].get(pool, {"methods": {}})["methods"] for d in files
                                 if d is not data) else f"{m} ({path.stem})"
                rows[label] = entry["regrets"]
        seeds = len(next(iter(rows.values())))
        print(f"\n== {pool} (R = {files[0].get('max_epochs', R)}): regret of the best final value, {seeds} seeds")
        base = next((v for k, v in rows.items() if k.startswith("tunelab-hyperband")), None)
        print(f"{'method':40s} {'mean':>7s} {'median':>7s} {'q25':>7s} {'q75':>7s}   vs first Hyperband (W/T/L)")
        for label, regrets in rows.items():
            med, q1, q3 = quartiles(regrets)
            wtl = ""
            if base is not None and regrets is not base:
                w = sum(a < b - 1e-12 for a, b in zip(regrets, base, strict=True))
                lo = sum(a > b + 1e-12 for a, b in zip(regrets, base, strict=True))
                wtl = f"{w}/{len(base) - w - lo}/{lo}"
            print(f"{label:40s} {statistics.fmean(regrets):7.4f} {med:7.4f} {q1:7.4f} {q3:7.4f}   {wtl}")


def benchmark_table(items: Sequence[str]) -> None:
    """Runs of ``multifidelity.py`` side by side: each item ``LABEL=PATH:METHOD``. Per label, the median
    [q25, q75] over seeds of the best val acc and loss at any epoch, the best final val acc (epoch R of
    a trial trained to the end), the best acc after E/9 and E/3 epochs, and the trials (complete); and
    paired wins / ties / losses on best val loss against the first label."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for item in items:
        label, _, rest = item.partition("=")
        path, _, method = rest.rpartition(":")
        data = json.loads(Path(path).read_text())
        budget = data["config"]["budget_epochs"]
        per_seed: dict[int, dict[str, float]] = {}
        for run in data["runs"]:
            if run["method"] != method:
                continue
            trace = sorted((t["start"] + i + 1, a, v) for t in run["trials"]
                           for i, (a, v) in enumerate(zip(t["val_acc"], t["val_loss"], strict=True)))
            finals = [t["val_acc"][-1] for t in run["trials"] if t["state"] == "complete"]
            per_seed[run["seed"]] = {
                "acc": max(a for _, a, _ in trace), "loss": min(v for _, _, v in trace),
                "final_acc": max(finals) if finals else math.nan,
                "acc@E/9": max(a for e, a, _ in trace if e <= budget // 9),
                "acc@E/3": max(a for e, a, _ in trace if e <= budget // 3),
                "trials": len(run["trials"]), "complete": len(finals)}
        rows[label] = per_seed
    first = next(iter(rows.values()))
    cols = ("acc", "loss", "final_acc", "acc@E/9", "acc@E/3")
    print("| method | " + " | ".join(cols) + " | trials (complete) | best loss vs first: W/T/L |")
    print("| --- " * (len(cols) + 3) + "|")
    for label, per_seed in rows.items():
        cells = []
        for c in cols:
            med, q1, q3 = quartiles([v[c] for v in per_seed.values()])
            cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]")
        trials = statistics.median(v["trials"] for v in per_seed.values())
        complete = statistics.median(v["complete"] for v in per_seed.values())
        seeds = sorted(set(per_seed) & set(first))
        w = sum(per_seed[s]["loss"] < first[s]["loss"] - 1e-12 for s in seeds)
        lo = sum(per_seed[s]["loss"] > first[s]["loss"] + 1e-12 for s in seeds)
        wtl = "" if per_seed is first else f"{w}/{len(seeds) - w - lo}/{lo}"
        print(f"| {label} | " + " | ".join(cells) + f" | {trials:.0f} ({complete:.0f}) | {wtl} |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pools", default="digits,crossing,ranked")
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--max-epochs", type=int, default=R, help="R: epochs of a full training, the pruners' "
                   "max_resource (default 27; digits curves are cut to it, at most 27)")
    p.add_argument("--budget", type=int, default=BUDGET, help="E in full trainings (default 30)")
    p.add_argument("--optuna", action="store_true", help="also Optuna's HyperbandPruner (bench venv)")
    p.add_argument("--brackets", action="store_true", help="also each Hyperband bracket alone")
    p.add_argument("--json", type=Path)
    p.add_argument("--compare", type=Path, nargs="+", metavar="JSON", help="print saved --json files side by side")
    p.add_argument("--benchmark", nargs="+", metavar="LABEL=PATH:METHOD",
                   help="print runs saved by multifidelity.py side by side (a markdown table)")
    args = p.parse_args(argv)
    if args.benchmark:
        benchmark_table(args.benchmark)
        return 0
    if args.compare:
        compare(args.compare)
        return 0
    r_max = args.max_epochs
    pools: dict[str, Callable[[], Pool]] = {
        "digits": lambda: digits_pool(r_max), "crossing": lambda: synthetic_pool("crossing", epochs=r_max),
        "ranked": lambda: synthetic_pool("ranked", epochs=r_max)}
    out: dict[str, Any] = {"tunelab": tunelab.__file__, "seeds": args.seeds, "budget_trials": args.budget,
                           "max_epochs": r_max, "pools": {}}
    for name in args.pools.split(","):
        pool = pools[name]()
        budget = args.budget * r_max
        methods: dict[str, Callable[[Pool, int, int], Replay]] = {
            "tunelab-asha": lambda pl, s, e: run_tunelab(pl, s, e, asha()),
            "tunelab-hyperband": lambda pl, s, e: run_tunelab(pl, s, e, hyperband),
        }
        if args.brackets:
            for b in range(hyperband(r_max).n_brackets):
                methods[f"bracket-{b}-alone"] = lambda pl, s, e, b=b: run_tunelab(pl, s, e, asha(b))
        if args.optuna:
            methods["optuna-hyperband"] = run_optuna
        corr = {f"rho_e{e}": round(rank_correlation(pool, e), 3) for e in (1, 3, 9)}
        corr.update({f"rho_e{e}_top25": round(rank_correlation(pool, e, 0.25), 3) for e in (1, 3, 9)})
        print(f"\n== pool {name}: {len(pool)} curves of {r_max} epochs, budget {budget} epochs, {args.seeds} seeds; "
              f"rank correlation with the final value {corr}")
        res: dict[str, Any] = {"rank_correlation": corr, "methods": {}}
        for m, fn in methods.items():
            t0 = time.perf_counter()
            runs = [fn(pool, s, budget) for s in range(args.seeds)]
            regrets = [regret(r) for r in runs]
            med, q1, q3 = quartiles(regrets)
            entry: dict[str, Any] = {
                "regret_median": med, "regret_q25": q1, "regret_q75": q3,
                "regrets": regrets, "trials_median": statistics.median(len(r.trials) for r in runs),
                "complete_median": statistics.median(sum(t["state"] == "complete" for t in r.trials) for r in runs),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(f"{m:22s} regret of best final {med:.4f} [{q1:.4f}, {q3:.4f}]  trials {entry['trials_median']:.0f} "
                  f"(complete {entry['complete_median']:.0f})  {entry['seconds']} s")
            if "bracket" in runs[0].trials[0]:
                entry["brackets"] = bracket_table(runs)
                for row in entry["brackets"]:
                    print(f"    bracket {row['bracket']}: {row['trials']:5d} trials, {row['epochs_share']:.1%} of "
                          f"epochs, {row['complete']} complete, stops {row['stops']}, best of {row['runs_won']} runs")
            res["methods"][m] = entry
        out["pools"][name] = res
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
