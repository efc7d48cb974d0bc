"""Priors from the user (issue 21, part 2): what a good belief saves, what a wrong one costs.

Three synthetic problems with a known optimum, shaped like tuning problems (cheap, so that only
the sampler differs from one run to the next):

- ``lr_momentum`` (3-d): learning rate (log, 1e-6..1), momentum (0..0.99), weight decay (log,
  1e-7..1e-1); the loss is a valley in the effective learning rate ``lr / (1 - momentum)``
  (best at 1e-2, so lr = 1e-3 at momentum 0.9), a cliff where it exceeds 0.3 (divergence),
  and a bowl in log weight decay around 1e-4. Minimum 0.
- ``optimizer_lr`` (4-d, mixed): the optimizer (adam, sgd, rmsprop), its learning rate (log,
  1e-6..1; best 5e-4 for adam, 5e-2 for sgd, 1.6e-4 for rmsprop), the batch size (int, log,
  16..1024, best 128) and dropout (0..0.8, best 0.2). Minimum 0 (adam).
- ``branin`` (2-d, linear): the Branin function on [-5, 10] x [0, 15] (three minima, 0.397887).

Each sampler (GP, TPE: tunelab's defaults) runs 50 trials per seed with no prior, with a good prior
(centred near the optimum: log centres 0.3 decades off, spread 1 decade; linear ones a little off)
and with a misleading one (log centres 2 decades off, spread 1 decade; linear ones far off; the
categorical one on the wrong optimizer), next to random search without priors. Reported per
problem, over seeds: the median regret (best value found minus the optimum) after 10, 25 and 50
trials, and the trials each method needs before its median regret first reaches the no-prior
run's median regret at 50 trials (and, for information, at 10 and 25 trials: the speed-up over a
whole range of regrets, not only the last digits a noise-free GP reaches). The targets (issue 21):

1. a good prior reaches the no-prior run's final regret in at most half its trials (speed-up >= 2);
2. a misleading prior's median regret at 50 trials is no worse than random search's.

The speed-up is a ratio of two medians' first-passage trials, and it moves with the seeds drawn: each check of
the first target also prints the 10th-90th percentile of the speed-up over the seeds resampled with replacement,
and the share of resamples that meet it (:func:`speedup_interval`).

The default is 40 seeds (about 10 minutes with 2 workers on a 2-core machine): at 10 the no-prior TPE's
bimodal final regret decides the reading (see ``benchmarks/README.md``, follow-up 4).

Run ``make bench-priors`` or ``OMP_NUM_THREADS=1 python benchmarks/priors.py [--quick] [--seeds N]
[--first-seed S] [--workers K]``; the results are saved to ``benchmarks/results/priors.json`` (``--from-json PATH``
prints a saved run's tables again; ``--from-json A,B`` the seeds of both runs together).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import tunelab
from tunelab.distributions import Categorical, Distribution, Float, Int
from tunelab.priors import LogNormal, Normal

RESULTS_DIR = Path(__file__).resolve().parent / "results"
N_TRIALS = 50
DEFAULT_SEEDS = 40  # a stable reading of the speed-up (10 seeds land in either mode of a bimodal regret)
SPEEDUP_TARGET = 2.0
BOOTSTRAP_RESAMPLES = 1000
Params = Mapping[str, Any]


# -- the problems -------------------------------------------------------------------------------
def lr_momentum(p: Params) -> float:
    """A valley in log10 of the effective learning rate lr / (1 - momentum), a cliff past 0.3, a bowl in
    log10 weight decay; minimum 0 at effective lr 1e-2 (lr 1e-3 at momentum 0.9), weight decay 1e-4."""
    eff = math.log10(p["lr"]) - math.log10(1.0 - p["momentum"])
    if eff > math.log10(0.3):  # diverges
        return 10.0
    return 0.5 * (eff + 2.0) ** 2 + 0.2 * (math.log10(p["wd"]) + 4.0) ** 2 + 2.0 * (p["momentum"] - 0.9) ** 2


_OPT = {"adam": (0.0, math.log10(5e-4)), "sgd": (0.15, math.log10(5e-2)), "rmsprop": (0.3, math.log10(1.6e-4))}


def optimizer_lr(p: Params) -> float:
    """Each optimizer has its own best learning rate and floor; batch size and dropout add bowls."""
    base, center = _OPT[p["optimizer"]]
    return (base + 0.5 * (math.log10(p["lr"]) - center) ** 2 + 0.5 * (math.log2(p["batch"]) - 7.0) ** 2 / 9.0
            + 2.0 * (p["dropout"] - 0.2) ** 2)


def branin(p: Params) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4.0 * math.pi**2), 5.0 / math.pi, 1.0 / (8.0 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


@dataclass(frozen=True)
class Problem:
    name: str
    evaluate: Callable[[Params], float]
    optimum: float
    spaces: Mapping[str, Mapping[str, Distribution]]  # prior name ('none', 'good', 'misleading') -> space


PROBLEMS = {
    "lr_momentum": Problem("lr_momentum", lr_momentum, 0.0, {
        "none": {"lr": Float(1e-6, 1.0, log=True), "momentum": Float(0.0, 0.99), "wd": Float(1e-7, 1e-1, log=True)},
        "good": {"lr": Float(1e-6, 1.0, log=True, prior=LogNormal(2e-3, 1.0)),
                 "momentum": Float(0.0, 0.99, prior=Normal(0.85, 0.1)),
                 "wd": Float(1e-7, 1e-1, log=True, prior=LogNormal(2e-4, 1.0))},
        "misleading": {"lr": Float(1e-6, 1.0, log=True, prior=LogNormal(1e-5, 1.0)),
                       "momentum": Float(0.0, 0.99, prior=Normal(0.3, 0.1)),
                       "wd": Float(1e-7, 1e-1, log=True, prior=LogNormal(1e-2, 1.0))},
    }),
    "optimizer_lr": Problem("optimizer_lr", optimizer_lr, 0.0, {
        "none": {"optimizer": Categorical(["adam", "sgd", "rmsprop"]), "lr": Float(1e-6, 1.0, log=True),
                 "batch": Int(16, 1024, log=True), "dropout": Float(0.0, 0.8)},
        "good": {"optimizer": Categorical(["adam", "sgd", "rmsprop"], prior=[0.6, 0.2, 0.2]),
                 "lr": Float(1e-6, 1.0, log=True, prior=LogNormal(1e-3, 1.0)),
                 "batch": Int(16, 1024, log=True, prior=LogNormal(100, 0.5)),
                 "dropout": Float(0.0, 0.8, prior=Normal(0.25, 0.15))},
        "misleading": {"optimizer": Categorical(["adam", "sgd", "rmsprop"], prior=[0.15, 0.15, 0.7]),
                       "lr": Float(1e-6, 1.0, log=True, prior=LogNormal(5e-6, 1.0)),
                       "batch": Int(16, 1024, log=True, prior=LogNormal(1000, 0.5)),
                       "dropout": Float(0.0, 0.8, prior=Normal(0.7, 0.1))},
    }),
    "branin": Problem("branin", branin, 5.0 / (4.0 * math.pi), {
        "none": {"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)},
        "good": {"x1": Float(-5.0, 10.0, prior=Normal(3.6, 1.5)), "x2": Float(0.0, 15.0, prior=Normal(3.0, 1.5))},
        "misleading": {"x1": Float(-5.0, 10.0, prior=Normal(-4.0, 1.5)),
                       "x2": Float(0.0, 15.0, prior=Normal(1.0, 1.5))},
    }),
}

SAMPLERS: dict[str, Callable[[], tunelab.Sampler]] = {
    "random": tunelab.RandomSampler,
    "gp": tunelab.GPSampler,
    "tpe": tunelab.TPESampler,
}
METHODS = [("random", "none"), *((s, p) for s in ("gp", "tpe") for p in ("none", "good", "misleading"))]


def run_one(job: tuple[str, str, str, int, int]) -> dict[str, Any]:
    """One study: (problem, sampler, prior, seed, n_trials) -> its best-so-far regret curve."""
    problem_name, sampler, prior, seed, n_trials = job
    problem = PROBLEMS[problem_name]
    study = tunelab.create_study(sampler=SAMPLERS[sampler](), seed=seed, space=problem.spaces[prior])
    start = time.perf_counter()
    study.optimize(lambda trial: problem.evaluate(trial.params), n_trials=n_trials)
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    curve = np.minimum.accumulate(np.array(values, dtype=float)) - problem.optimum
    return {"problem": problem_name, "sampler": sampler, "prior": prior, "seed": seed,
            "regret": [max(float(r), 0.0) for r in curve], "seconds": time.perf_counter() - start}


def trials_to(curve: np.ndarray, target: float) -> int | None:
    """The first trial (1-based) at which ``curve`` is at most ``target``; None if never."""
    hit = np.flatnonzero(curve <= target * (1 + 1e-12))
    return int(hit[0]) + 1 if len(hit) else None


def speedup(none: np.ndarray, good: np.ndarray) -> float:
    """Trials the median of the no-prior curves ``none`` (seeds, trials) needs to reach its own final value,
    over the trials the median of the good-prior curves ``good`` needs to reach it (0: never)."""
    base, prior = np.median(none, axis=0), np.median(good, axis=0)
    t_none, t_good = trials_to(base, float(base[-1])), trials_to(prior, float(base[-1]))
    return (t_none or len(base)) / t_good if t_good else 0.0


def speedup_interval(none: np.ndarray, good: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict[str, float]:
    """How much :func:`speedup` moves with the seeds drawn: the seeds of each run resampled with replacement
    (``resamples`` times, a fixed generator); the 10th and 90th percentiles and the share of resamples that
    meet the target. The no-prior run's final regret can be bimodal (on ``optimizer_lr`` TPE without a prior
    ends on the right optimizer in about half the seeds and on a worse one, 0.15 or more, in the rest), and
    then the median of 10 seeds, the regret level the speed-up is read at, lands on either side."""
    rng = np.random.default_rng(seed)
    draws = np.array([speedup(none[rng.integers(len(none), size=len(none))],
                              good[rng.integers(len(good), size=len(good))]) for _ in range(resamples)])
    low, high = np.quantile(draws, [0.1, 0.9])
    return {"q10": float(low), "q90": float(high), "share_met": float(np.mean(draws >= SPEEDUP_TARGET))}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for problem in PROBLEMS:
        rows = [r for r in runs if r["problem"] == problem]
        if not rows:
            continue
        median: dict[str, np.ndarray] = {}
        curves_of: dict[str, np.ndarray] = {}
        for sampler, prior in METHODS:
            curves = np.array([r["regret"] for r in sorted(rows, key=lambda r: r["seed"])
                               if (r["sampler"], r["prior"]) == (sampler, prior)])
            if len(curves):
                median[f"{sampler}/{prior}"] = np.median(curves, axis=0)
                curves_of[f"{sampler}/{prior}"] = curves
        n = len(next(iter(median.values())))
        table: dict[str, Any] = {}
        checks: list[dict[str, Any]] = []
        for sampler in ("gp", "tpe"):
            base = median.get(f"{sampler}/none")
            if base is None:
                continue
            target = float(base[-1])
            budgets = (10, 25, n)
            for prior in ("none", "good", "misleading"):
                m = median.get(f"{sampler}/{prior}")
                if m is None:
                    continue
                table[f"{sampler}/{prior}"] = {
                    "regret": {str(k): float(m[k - 1]) for k in budgets},
                    "trials_to_no_prior_final": trials_to(m, target),
                    # the same reading at the no-prior run's regret after fewer trials (information only)
                    "trials_to_no_prior_at": {str(k): trials_to(m, float(base[k - 1])) for k in budgets},
                }
            good, none = table.get(f"{sampler}/good"), table[f"{sampler}/none"]
            if good is not None:
                t_good, t_none = good["trials_to_no_prior_final"], none["trials_to_no_prior_final"]
                speedup = (t_none / t_good) if t_good else 0.0
                good["speedup_at"] = {k: (none["trials_to_no_prior_at"][k] / t) if t else 0.0
                                      for k, t in good["trials_to_no_prior_at"].items()}
                interval = speedup_interval(curves_of[f"{sampler}/none"], curves_of[f"{sampler}/good"])
                good["speedup_interval"] = interval
                checks.append({"check": f"{sampler}: good prior, speed-up to the no-prior final regret",
                               "value": speedup, "target": f">= {SPEEDUP_TARGET}", "met": speedup >= SPEEDUP_TARGET,
                               "interval": interval})
            if f"{sampler}/misleading" in median and "random/none" in median:
                mis, rnd = float(median[f"{sampler}/misleading"][-1]), float(median["random/none"][-1])
                checks.append({"check": f"{sampler}: misleading prior, regret at {n} vs random search's",
                               "value": mis, "random": rnd, "target": f"<= {rnd:.4g}", "met": mis <= rnd})
        if "random/none" in median:
            m = median["random/none"]
            table["random/none"] = {"regret": {str(k): float(m[k - 1]) for k in (10, 25, n)},
                                    "trials_to_no_prior_final": None}
        seconds = {k: float(np.mean([r["seconds"] for r in rows if f"{r['sampler']}/{r['prior']}" == k]))
                   for k in table}
        out[problem] = {"methods": table, "checks": checks, "seconds_per_run": seconds,
                        "seeds": len({r["seed"] for r in rows})}
    return out


def report(summary: Mapping[str, Any]) -> None:
    for problem, s in summary.items():
        print(f"\n{problem} ({s['seeds']} seeds; median regret; trials to the no-prior run's regret at the end)")
        keys = list(next(iter(s["methods"].values()))["regret"])
        print(f"  {'method':<16}" + "".join(f"{'@' + k:>12}" for k in keys) + f"{'trials to':>11}{'s/run':>8}")
        for method, row in s["methods"].items():
            hit = row["trials_to_no_prior_final"]
            print(f"  {method:<16}" + "".join(f"{row['regret'][k]:>12.4g}" for k in keys)
                  + f"{'-' if hit is None else hit:>11}{s['seconds_per_run'][method]:>8.1f}")
        for method, row in s["methods"].items():
            if "speedup_at" in row:
                print(f"  {method}: speed-up to the no-prior run's regret at " + ", ".join(
                    f"{k} trials {v:.2f}x" for k, v in row["speedup_at"].items()) + " (the target reads the last)")
        for c in s["checks"]:
            spread = c.get("interval")
            more = (f"; seeds resampled: {spread['q10']:.2f}-{spread['q90']:.2f}x (10th-90th percentile), "
                    f"met in {100 * spread['share_met']:.0f}%" if spread else "")
            print(f"  [{'met' if c['met'] else 'MISSED'}] {c['check']}: {c['value']:.4g} (target {c['target']}{more})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds instead of 10")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(RESULTS_DIR / "priors.json"))
    parser.add_argument("--from-json", default=None,
                        help="print a saved run's tables again; several, comma-separated: their seeds together")
    args = parser.parse_args(argv)
    if args.from_json:
        paths = [p for p in args.from_json.split(",") if p]
        if len(paths) == 1:
            report(json.loads(Path(paths[0]).read_text())["summary"])
            return 0
        merged: dict[tuple[str, str, str, int], dict[str, Any]] = {}  # several runs' seeds, summarised together
        for path in paths:
            for r in json.loads(Path(path).read_text())["runs"]:
                merged[(r["problem"], r["sampler"], r["prior"], r["seed"])] = r
        report(summarise(list(merged.values())))
        return 0
    seeds = args.seeds or (3 if args.quick else DEFAULT_SEEDS)
    problems = [p for p in args.problems.split(",") if p]
    seed_list = range(args.first_seed, args.first_seed + seeds)
    jobs = [(p, s, prior, seed, N_TRIALS) for p in problems for s, prior in METHODS for seed in seed_list]
    jobs.sort(key=lambda j: j[1] == "gp", reverse=True)  # the slow ones first
    start = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = list(pool.imap_unordered(run_one, jobs))
    else:
        runs = [run_one(j) for j in jobs]
    summary = summarise(runs)
    report(summary)
    checks = [c for s in summary.values() for c in s["checks"]]
    print(f"\n{sum(c['met'] for c in checks)} of {len(checks)} checks met; "
          f"{time.perf_counter() - start:.0f} s with {args.workers} worker(s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), "platform": platform.platform()},
        "tunelab": tunelab.__version__, "seeds": seeds, "first_seed": args.first_seed, "n_trials": N_TRIALS,
        "workers": args.workers,
        "summary": summary, "runs": sorted(runs, key=lambda r: (r["problem"], r["sampler"], r["prior"], r["seed"])),
    }, indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
