"""Learning-curve diagnosis, measured: precision and recall per condition on labelled synthetic curves.

:func:`make_cases` generates curves with one planted condition each (or none: "healthy"), at
three noise levels, over many seeds: the label is what the curve was generated to show. Curves
come as a loss pair (``train_loss`` / ``val_loss``), an accuracy pair (``train_acc`` /
``val_acc``) or a single curve (``loss`` or ``val_loss``), with 30 to 150 points, regular or
uneven steps, sometimes an ``lr`` curve. Noise is Gaussian with a standard deviation that is a
fraction of the curve's drop: low 1%, medium 2.5%, high 6% (the "noisy" condition plants 25-45%).

A separate table: loss curves with multiplicative noise (every value off by ~30% of itself) that fall as
exp(-t/tau), tau 0.25, 0.1, 0.05 of the run: how many the 'noisy' condition finds (a curve at its floor early
may also be a plateau).

A finding counts for its condition: a true positive on a curve labelled with it, a false
positive on any other curve (healthy ones included), unless the case lists the condition as
also acceptable (``Case.allowed``; e.g. an underfitting pair may still be improving). Printed as
a table, saved to ``benchmarks/results/diagnosis.json``.

Run ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diagnosis.py [--per 30] [--seeds 3]``.
The tests import this module (``tests/test_diagnosis.py``): it needs only numpy and tunelab.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.analysis.diagnosis import CONDITIONS, diagnose_curves

NOISE_LEVELS = {"low": 0.01, "medium": 0.025, "high": 0.06}
LABELS = ("healthy", *CONDITIONS)
_SEED_ORDER = ("healthy", "divergence", "initial_loss", "bad_init", "plateau", "decay_too_early", "overfitting",
               "underfitting", "still_improving", "noisy", "not_learning")
"""The labels' order in each case's seed: a label added later goes last, so the others keep their curves."""
_FORMATS = {
    "healthy": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "divergence": ("loss_pair", "loss"),
    "initial_loss": ("loss_pair", "loss"),
    "not_learning": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "bad_init": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "plateau": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "decay_too_early": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "overfitting": ("loss_pair", "acc_pair"),
    "underfitting": ("loss_pair", "acc_pair"),
    "still_improving": ("loss_pair", "acc_pair", "loss", "val_loss"),
    "noisy": ("loss_pair", "acc_pair", "loss", "val_loss"),
}


@dataclass
class Case:
    """One labelled example: the curves, what to pass to ``diagnose_curves`` besides them, and the truth."""

    label: str
    noise: str
    seed: int
    fmt: str
    curves: dict[str, tuple[list[int], list[float]]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()

    def run(self) -> set[str]:
        """The conditions ``diagnose_curves`` finds on this case."""
        return {f.condition for f in diagnose_curves(self.curves, **self.kwargs)}


# -- shapes: g(t) goes from 1 (start) towards 0 (the floor), t in [0, 1] -------------------------
def _two_exp(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Healthy: a fast phase and a slow one that ends flattening out (not a plateau, not still improving)."""
    slow = rng.uniform(0.75, 0.9)
    tau1, tau2 = rng.uniform(0.03, 0.08), rng.uniform(0.22, 0.28)
    return np.asarray((1 - slow) * np.exp(-t / tau1) + slow * np.exp(-t / tau2))


def _steps(n: int, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:  # uneven
        return np.cumsum(rng.integers(1, 6, size=n)) - 1 + int(rng.integers(0, 2))
    stride = int(rng.choice([1, 1, 2, 10, 50]))
    return np.arange(n) * stride + int(rng.integers(0, 2)) * stride


def _shape(label: str, t: np.ndarray, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
    """The training curve's g(t) for a label (val variations are added by the caller)."""
    if label in ("healthy", "noisy", "initial_loss", "overfitting", "underfitting"):
        if label == "healthy" and rng.random() < 0.3:  # a healthy step decay late in the run
            td = rng.uniform(0.6, 0.8)
            g = _two_exp(t, rng)
            extra = rng.uniform(0.3, 0.6)
            after = t >= td
            g[after] = g[after] * (1 - extra * (1 - np.exp(-(t[after] - td) / 0.02)))
            info["decay_t"] = td
            return g
        return _two_exp(t, rng)
    if label == "still_improving":
        return np.asarray(np.exp(-t / rng.uniform(0.7, 1.5)))
    if label == "not_learning":  # flat from the start (a rate far too low, a bug, a dead net): at most a 1% drift
        return np.asarray(1 - rng.uniform(0.0, 0.01) * t)
    if label == "plateau":
        return np.asarray(np.exp(-t / rng.uniform(0.03, 0.1)))
    if label == "bad_init":
        t0 = rng.uniform(0.12, 0.25)
        w = rng.uniform(0.4, 0.5)
        u = np.maximum(t - t0, 0.0)
        tau1, tau2 = rng.uniform(0.015, 0.04), rng.uniform(0.22, 0.28)
        g = 0.97 * (w * np.exp(-u / tau1) + (1 - w) * np.exp(-u / tau2))
        return np.where(t < t0, 1 - 0.03 * t / t0, g)
    if label == "decay_too_early":
        td = rng.uniform(0.15, 0.35)
        tau = rng.uniform(0.25, 0.4)
        cum = np.where(t < td, t, td + 0.01 * (t - td))
        g = np.exp(-cum / tau)
        g = np.where(t >= td, g * (1 - rng.uniform(0.05, 0.2)), g)
        info["decay_t"] = td
        return np.asarray(g)
    if label == "divergence":
        if rng.random() < 0.3:  # too high a rate from the start: it never falls
            info["rise_from_start"] = True
            return np.asarray(1 - 0.02 * t)
        td = rng.uniform(0.3, 0.75)
        info["diverge_t"] = td
        return _two_exp(t, rng)
    raise ValueError(label)


def make_case(label: str, noise: str, seed: int) -> Case:
    """One labelled case (deterministic in ``label``, ``noise`` and ``seed``)."""
    rng = np.random.default_rng([_SEED_ORDER.index(label), list(NOISE_LEVELS).index(noise), seed])
    fmt = str(rng.choice(_FORMATS[label]))
    n = int(rng.integers(30, 151))
    steps = _steps(n, rng)
    t = (steps - steps[0]) / (steps[-1] - steps[0])
    info: dict[str, Any] = {}
    g = _shape(label, t, rng, info)
    sigma = NOISE_LEVELS[noise] if label != "noisy" else rng.uniform(0.25, 0.45)
    kwargs: dict[str, Any] = {}
    allowed: set[str] = set()
    curves: dict[str, tuple[list[int], list[float]]] = {}
    is_acc = fmt == "acc_pair"
    n_classes = int(rng.choice([2, 5, 10, 100]))
    if is_acc:
        a0 = 1.0 / n_classes
        a_end = rng.uniform(0.85, 0.99)
        if label == "underfitting":
            a_end = rng.uniform(max(a0 + 0.15, 0.35), 0.68)
        elif label == "plateau":
            a_end = rng.uniform(0.84, 0.95)
        train = a_end + (a0 - a_end) * g
        val_gap = rng.uniform(0.0, 0.03) if label == "underfitting" else rng.uniform(0.01, 0.05)
        val = train - val_gap * (1 - g)
        if label == "overfitting":
            train = 0.995 + (a0 - 0.995) * g
            tm = rng.uniform(0.2, 0.5)
            peak = rng.uniform(0.8, 0.92)
            g_val = np.exp(-t / rng.uniform(0.05, 0.12))  # validation peaks early, then falls
            val = peak + (a0 - peak) * g_val - rng.uniform(0.12, 0.2) * np.clip((t - tm) / (1 - tm), 0, 1) ** 1.2
        scale = float(np.ptp(train))
        if label == "not_learning":  # nothing dropped: noise on the scale of a typical drop's
            scale = 0.3 * (a_end - a0)
        tr = np.clip(train + rng.normal(0, sigma * scale, n), 0, 1)
        va = np.clip(val + rng.normal(0, sigma * scale, n), 0, 1)
        curves = {"train_acc": _pair(steps, tr), "val_acc": _pair(steps, va)}
    else:
        expected = math.log(n_classes)
        start = expected
        floor = start * rng.uniform(0.03, 0.3)
        if label == "underfitting":
            floor = start * rng.uniform(0.6, 0.85)
        elif label == "plateau":
            floor = start * rng.uniform(0.12, 0.4)
        train = floor + (start - floor) * g
        d = float(np.ptp(train))  # noise relative to the curve's actual drop (before any spike or blow-up)
        if label == "not_learning":  # nothing dropped: noise on the scale of a typical drop's
            d = 0.3 * start
        if label == "initial_loss":  # an untrained head far off: a few times the expected loss at first
            train = train + expected * rng.uniform(0.6, 3.0) * np.exp(-t / rng.uniform(0.01, 0.03))
        val_floor = floor * rng.uniform(1.05, 1.6) if label != "underfitting" else floor * rng.uniform(1.0, 1.08)
        val = val_floor + (start - val_floor) * g
        if label == "overfitting":
            tm = rng.uniform(0.2, 0.5)
            val_floor = start * rng.uniform(0.25, 0.45)
            g_val = np.exp(-t / rng.uniform(0.05, 0.12))  # validation bottoms out early, then rises
            val = val_floor + (start - val_floor) * g_val
            val = val + rng.uniform(0.3, 0.8) * (start - val_floor) * np.clip((t - tm) / (1 - tm), 0, 1) ** 1.3
        if label == "divergence":
            if info.get("rise_from_start"):
                grow = start * rng.uniform(1.0, 4.0) * t ** rng.uniform(0.5, 1.5)
            else:
                td = info["diverge_t"]
                grow = start * rng.uniform(0.05, 0.2) * (np.exp(np.maximum(t - td, 0) / rng.uniform(0.03, 0.08)) - 1)
                grow = np.minimum(grow, start * rng.uniform(3, 50))
            train, val = train + grow, val + grow * rng.uniform(0.8, 1.2)
        tr = train + rng.normal(0, sigma * d, n)
        va = val + rng.normal(0, sigma * d, n)
        if label == "divergence" and rng.random() < 0.5:  # the loss became NaN: the last points are NaN
            k = int(rng.integers(1, 4))
            tr[-k:] = math.nan
            va[-k:] = math.nan
        if rng.random() < 0.7:
            kwargs["expected_initial_loss"] = expected
        if fmt == "loss_pair":
            curves = {"train_loss": _pair(steps, tr), "val_loss": _pair(steps, va)}
        else:
            curves = {fmt: _pair(steps, tr if fmt == "loss" else va)}
    if label == "initial_loss":
        kwargs["expected_initial_loss"] = math.log(n_classes)
    if "decay_t" in info:
        i = int(np.searchsorted(t, info["decay_t"]))
        if rng.random() < 0.5:
            kwargs["decay_steps"] = [int(steps[i])]
        else:
            lr0 = 10 ** rng.uniform(-4, -1)
            lr = np.where(np.arange(n) >= i, lr0 * (0.01 if label == "decay_too_early" else 0.1), lr0)
            curves["lr"] = _pair(steps, lr)
    elif label in ("healthy", "plateau") and rng.random() < 0.3:
        lr0 = 10 ** rng.uniform(-4, -1)  # a constant learning rate, reported
        curves["lr"] = _pair(steps, np.full(n, lr0))
    if label == "underfitting":
        allowed |= {"plateau"}  # an underfit model also stops improving early
    return Case(label, noise, seed, fmt, curves, kwargs, frozenset(allowed))


MULTIPLICATIVE_TAUS = (0.25, 0.1, 0.05)
"""How fast the multiplicative-noise curves fall: exp(-t / tau), t in [0, 1] (0.05: at its floor by 15% of the run)."""


def multiplicative_case(tau: float, seed: int, relative: float = 0.3) -> dict[str, tuple[list[int], list[float]]]:
    """A loss (one curve or a train/val pair) whose every value is off by about ``relative`` of itself (log-normal
    noise): the 'noisy' condition in proportion to the value, which hides in the range of a curve that falls 3-30x."""
    rng = np.random.default_rng([len(_SEED_ORDER), MULTIPLICATIVE_TAUS.index(tau), seed])
    fmt = str(rng.choice(("loss_pair", "loss", "val_loss")))
    n = int(rng.integers(30, 151))
    steps = _steps(n, rng)
    t = (steps - steps[0]) / (steps[-1] - steps[0])
    g = np.exp(-t / tau)
    start = math.log(int(rng.choice([2, 5, 10, 100])))
    floor = start * rng.uniform(0.03, 0.3)
    train = floor + (start - floor) * g
    val_floor = floor * rng.uniform(1.05, 1.6)
    val = val_floor + (start - val_floor) * g
    tr, va = train * np.exp(rng.normal(0, relative, n)), val * np.exp(rng.normal(0, relative, n))
    if fmt == "loss_pair":
        return {"train_loss": _pair(steps, tr), "val_loss": _pair(steps, va)}
    return {fmt: _pair(steps, tr if fmt == "loss" else va)}


def multiplicative_recall(per: int, seeds: int) -> dict[str, dict[str, Any]]:
    """Per tau: how many multiplicative-noise curves get 'noisy' (a curve at its floor early may also be called a
    plateau: allowed), and the other findings."""
    out: dict[str, dict[str, Any]] = {}
    for tau in MULTIPLICATIVE_TAUS:
        found = [{f.condition for f in diagnose_curves(multiplicative_case(tau, seed * 100_003 + i))}
                 for seed in range(seeds) for i in range(per)]
        others: dict[str, int] = {}
        for f in found:
            for cond in f - {"noisy", "plateau"}:
                others[cond] = others.get(cond, 0) + 1
        out[str(tau)] = {"cases": len(found), "noisy": sum("noisy" in f for f in found), "other_findings": others}
    return out


def _pair(steps: np.ndarray, values: np.ndarray) -> tuple[list[int], list[float]]:
    return [int(s) for s in steps], [float(v) for v in values]


def make_cases(per: int = 30, noise_levels: tuple[str, ...] = tuple(NOISE_LEVELS), seed: int = 0) -> list[Case]:
    """``per`` cases for every label and noise level."""
    return [make_case(label, noise, seed * 100_003 + i) for noise in noise_levels for label in LABELS
            for i in range(per)]


def score(cases: list[Case]) -> dict[str, dict[str, Any]]:
    """Precision and recall per condition: {condition: {"tp", "fp", "fn", "precision", "recall"}}."""
    found = [c.run() for c in cases]
    out: dict[str, dict[str, Any]] = {}
    for cond in CONDITIONS:
        tp = sum(1 for c, f in zip(cases, found, strict=True) if c.label == cond and cond in f)
        fn = sum(1 for c, f in zip(cases, found, strict=True) if c.label == cond and cond not in f)
        fp = sum(1 for c, f in zip(cases, found, strict=True)
                 if c.label != cond and cond in f and cond not in c.allowed)
        out[cond] = {"tp": tp, "fp": fp, "fn": fn,
                     "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0}
    healthy = [f for c, f in zip(cases, found, strict=True) if c.label == "healthy"]
    out["healthy"] = {"cases": len(healthy), "clean": sum(1 for f in healthy if not f)}
    return out


def confusions(cases: list[Case]) -> dict[str, dict[str, int]]:
    """label -> {condition found: count}, for looking into errors."""
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        row = out.setdefault(c.label, {})
        for f in c.run():
            row[f] = row.get(f, 0) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per", type=int, default=30, help="cases per label, noise level and seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each a fresh set of cases)")
    args = parser.parse_args()
    start = time.perf_counter()
    results: dict[str, Any] = {}
    per_level: dict[str, dict[str, dict[str, Any]]] = {}
    worst: dict[str, dict[str, float]] = {}
    for level in NOISE_LEVELS:
        cases = [c for seed in range(args.seeds) for c in make_cases(args.per, (level,), seed)]
        per_level[level] = score(cases)
        per_seed = [score([c for c in cases if c.seed // 100_003 == seed]) for seed in range(args.seeds)]
        worst[level] = {cond: min(min(s[cond]["precision"], s[cond]["recall"]) for s in per_seed)
                        for cond in CONDITIONS}
        results[level] = {"scores": per_level[level], "worst_seed": worst[level], "confusions": confusions(cases)}
    n_cases = args.per * args.seeds
    print(f"precision (P) and recall (R) per condition, {n_cases} curves per label and noise level "
          f"({args.seeds} seeds x {args.per}); noise sd = {', '.join(f'{k} {v:.1%}' for k, v in NOISE_LEVELS.items())}"
          " of the curve's drop")
    print(f"{'condition':<16}" + "".join(f"{lvl + ' P':>10}{lvl + ' R':>10}" for lvl in NOISE_LEVELS))
    for cond in CONDITIONS:
        row = "".join(f"{per_level[lvl][cond]['precision']:>10.2f}{per_level[lvl][cond]['recall']:>10.2f}"
                      for lvl in NOISE_LEVELS)
        print(f"{cond:<16}{row}")
    print(f"{'healthy: clean':<16}" + "".join(
        f"{per_level[lvl]['healthy']['clean']:>13}/{per_level[lvl]['healthy']['cases']:<6}" for lvl in NOISE_LEVELS))
    met = all(per_level[lvl][c]["precision"] >= 0.9 and per_level[lvl][c]["recall"] >= 0.9
              for lvl in ("low", "medium") for c in CONDITIONS)
    met_each = all(worst[lvl][c] >= 0.9 for lvl in ("low", "medium") for c in CONDITIONS)
    multiplicative = multiplicative_recall(args.per, args.seeds)
    print("multiplicative noise (every value off by ~30% of itself) on a loss falling as exp(-t/tau): noisy found in "
          + ", ".join(f"{r['noisy']}/{r['cases']} (tau {tau})" for tau, r in multiplicative.items())
          + "; other findings (plateau allowed): "
          + (", ".join(f"{c} {n}" for r in multiplicative.values() for c, n in r["other_findings"].items()) or "none"))
    seconds = time.perf_counter() - start
    print(f"target (precision and recall >= 0.9 on every condition at low and medium noise): "
          f"{'met' if met else 'NOT met'} over all seeds, {'met' if met_each else 'not met'} on every seed alone; "
          f"{len(LABELS) * n_cases * len(NOISE_LEVELS)} cases in {seconds:.1f}s")
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "per": args.per, "seeds": args.seeds,
           "noise_levels": NOISE_LEVELS, "target_met": met, "target_met_every_seed": met_each,
           "seconds": round(seconds, 2), "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "results": results, "multiplicative_noise": multiplicative}
    path = Path(__file__).parent / "results" / "diagnosis.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
