"""Offline check: can a rung rank a short curve (1 to 3 epochs) better than by its value?

Reads the tunelab-asha runs of ``results/multifidelity-curve-20seeds.json`` (seeds 0-9, where every
stopped configuration was trained to the end: ``final_if_trained``) and, for the trials at ASHA's
rungs at 1 and 3 epochs, compares rankings of the final val loss (Spearman, per run, mean over runs):

- ``value``: the val loss at the rung (ASHA's rule);
- cross-trial maps learned inside the study, at each trial's decision time, from the trials that
  had reached step T (9: the next rung, or 27) by then (a study knows nothing else): ``c*slope`` fits
  ``log v_T - log v_3 = c * slope`` (slope: of log val loss per log epoch between epochs 2 and 3),
  ``a+c*slope`` with an intercept, ``ridge(v1..v3)`` regresses log v_T on the three log values;
  at epoch 1 a k-nearest-neighbour map of the configuration (log lr, log weight decay, log width,
  dropout, optimizer, log batch size) to log v_T;
- pooled across the other 9 seeds (all their trials at the rung with their finals: an upper bound no
  study has): ridge on the log values, gradient boosting on the values and the configuration;
- ``log_slope``: no learning, the last two points extended linearly in log(epoch) to the next rung
  (9), in the value (what ``LearningCurvePruner(short_curves="log_slope")`` does) and in log value.

Also a replay of ASHA's rung at 3 (each trial against the trials that reached the rung before it,
keep the best third) with each score: how many of the runs' top-3 final val losses it would stop.

``PYTHONPATH=src .venv-bench/bin/python benchmarks/short_curves_offline.py [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

RESULTS = Path(__file__).resolve().parent / "results"
SOURCE = RESULTS / "multifidelity-curve-20seeds.json"
Trial = dict[str, Any]
Scores = Callable[[list[Trial]], np.ndarray]
Fit = Callable[[list[Trial]], Scores | None]
"""Fits a score on the trials that went further (at a decision time); None: too few of them."""


def has_final(t: Trial) -> bool:
    return len(t["val_loss"]) == 27 or bool(t.get("final_if_trained"))


def final(t: Trial) -> float:
    return math.log(t["val_loss"][-1] if len(t["val_loss"]) == 27 else t["final_if_trained"]["val_loss"])


def lv(t: Trial, epoch: int) -> float:
    return math.log(t["val_loss"][epoch - 1])


def config(t: Trial) -> list[float]:
    p = t["params"]
    return [math.log(p["lr"]), math.log(p["weight_decay"]), math.log(p["width"]), p["dropout"],
            float(p["optimizer"] == "adam"), math.log(p["batch_size"])]


def slope(t: Trial) -> float:
    return (lv(t, 3) - lv(t, 2)) / math.log(1.5)


def log_slope(scale: str) -> Callable[[Trial], float]:
    def score(t: Trial) -> float:
        v2, v3 = t["val_loss"][1], t["val_loss"][2]
        if scale == "log":
            return math.log(v3) + (math.log(v3) - math.log(v2)) / math.log(1.5) * math.log(3.0)
        return v3 + (v3 - v2) / math.log(1.5) * math.log(3.0)
    return score


def learned(kind: str, T: int, n_min: int = 5) -> Fit:
    """A map fitted on the trials that reached ``T``: None while fewer than ``n_min`` did."""
    def fit(train: list[Trial]) -> Scores | None:
        if len(train) < n_min:
            return None
        y = np.array([lv(u, T) for u in train])
        if kind == "knn":
            knn = KNeighborsRegressor(n_neighbors=min(5, len(train))).fit(np.array([config(u) for u in train]), y)
            return lambda ts: np.asarray(knn.predict(np.array([config(t) for t in ts])), dtype=float)
        if kind == "ridge":
            ridge = Ridge(alpha=1e-2).fit(np.array([[lv(u, 1), lv(u, 2), lv(u, 3)] for u in train]), y)
            return lambda ts: np.asarray(ridge.predict(np.array([[lv(t, 1), lv(t, 2), lv(t, 3)] for t in ts])))
        s = np.array([slope(u) for u in train])
        d = y - np.array([lv(u, 3) for u in train])
        if kind == "c":
            c = float(s @ d / max(float(s @ s), 1e-12))
            return lambda ts: np.array([lv(t, 3) + c * slope(t) for t in ts])
        a, c = (float(v) for v in np.linalg.lstsq(np.stack([np.ones_like(s), s], 1), d, rcond=None)[0])
        return lambda ts: np.array([lv(t, 3) + a + c * slope(t) for t in ts])
    return fit


def fixed(score: Callable[[Trial], float]) -> Fit:
    return lambda _: (lambda ts: np.array([score(t) for t in ts]))


def replay(runs: Sequence[dict[str, Any]], epoch: int, name: str, fit: Fit, T: int) -> dict[str, Any]:
    """Each trial at the rung scored at its decision time; Spearman with the final; the rung's stops."""
    rho, tops, stopped, fallbacks, decisions = [], 0, 0, 0, 0
    for r in runs:
        trials = r["trials"]
        at = sorted((t for t in trials if len(t["val_loss"]) >= epoch and has_final(t)), key=lambda t: t["start"])
        own: dict[int, float] = {}
        stop: dict[int, bool] = {}
        for t in at:
            now = t["start"] + epoch
            train = [u for u in trials if u is not t and len(u["val_loss"]) >= T and u["start"] + T <= now]
            pool = [u for u in at if u["start"] + epoch <= now]
            score = fit(train)
            if score is None:  # too few trials went further: the value, as ASHA
                fallbacks += 1
                scores = [lv(u, epoch) for u in pool]
            else:
                scores = [float(v) for v in score(pool)]
            decisions += 1
            mine = scores[pool.index(t)]
            own[t["number"]] = mine
            cut = sorted(scores)[max(1, len(pool) // 3) - 1]
            stop[t["number"]] = mine > cut
        rho.append(float(spearmanr([own[t["number"]] for t in at], [final(t) for t in at]).statistic))
        for t in sorted((u for u in trials if has_final(u)), key=final)[:3]:
            if t["number"] in stop:
                tops += 1
                stopped += stop[t["number"]]
    row = {"score": name, "epoch": epoch, "spearman_mean": round(float(np.mean(rho)), 3),
            "spearman_per_seed": [round(v, 3) for v in rho], "top3_at_rung": tops, "top3_stopped_at_rung": stopped,
            "fallback_decisions": fallbacks, "decisions": decisions}
    print(f"epoch {epoch}  {name:40s} spearman {row['spearman_mean']:.3f}  top-3 stopped at the rung {stopped}/{tops}"
          f" (fallbacks {fallbacks}/{decisions})", flush=True)
    return row


def pooled(runs: Sequence[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
    """Leave-one-seed-out models fitted on the other seeds' trials at the rung (with finals)."""
    def rows(r: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = [t for t in r["trials"] if len(t["val_loss"]) >= epoch and has_final(t)]
        x = np.array([[lv(t, e) for e in range(1, epoch + 1)] for t in at])
        return x, np.array([config(t) for t in at]), np.array([final(t) for t in at])
    data = [rows(r) for r in runs]
    out: dict[str, list[float]] = {"pooled ridge(log values)": [], "pooled boosting(values + config)": []}
    for i, (x, c, y) in enumerate(data):
        xs = np.concatenate([d[0] for j, d in enumerate(data) if j != i])
        cs = np.concatenate([d[1] for j, d in enumerate(data) if j != i])
        ys = np.concatenate([d[2] for j, d in enumerate(data) if j != i])
        p = Ridge(alpha=1e-3).fit(xs, ys).predict(x)
        out["pooled ridge(log values)"].append(float(spearmanr(p, y).statistic))
        gb = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=0)
        p = gb.fit(np.hstack([xs, cs]), ys).predict(np.hstack([x, c]))
        out["pooled boosting(values + config)"].append(float(spearmanr(p, y).statistic))
    rows = [{"score": k, "epoch": epoch, "spearman_mean": round(float(np.mean(v)), 3),
             "spearman_per_seed": [round(s, 3) for s in v]} for k, v in out.items()]
    for row in rows:
        print(f"epoch {epoch}  {row['score']:40s} spearman {row['spearman_mean']:.3f}", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=RESULTS / "short_curves_offline.json")
    args = p.parse_args(argv)
    runs = sorted((r for r in json.loads(SOURCE.read_text())["runs"]
                   if r["method"] == "tunelab-asha" and r["seed"] <= 9), key=lambda r: r["seed"])
    rows: list[dict[str, Any]] = []
    rows.append(replay(runs, 1, "value", fixed(lambda t: lv(t, 1)), 3))
    rows.append(replay(runs, 1, "in-study knn(config) -> log v9", learned("knn", 9), 9))
    rows += pooled(runs, 1)
    rows.append(replay(runs, 3, "value", fixed(lambda t: lv(t, 3)), 9))
    for T in (9, 27):
        for kind, label in (("c", "c*slope"), ("ac", "a+c*slope"), ("ridge", "ridge(v1..v3)"), ("knn", "knn(config)")):
            rows.append(replay(runs, 3, f"in-study {label} -> log v{T}", learned(kind, T), T))
    rows += pooled(runs, 3)
    rows.append(replay(runs, 3, "log_slope to 9 (value)", fixed(log_slope("value")), 9))
    rows.append(replay(runs, 3, "log_slope to 9 (log value)", fixed(log_slope("log")), 9))
    args.out.write_text(json.dumps({"source": SOURCE.name, "seeds": [r["seed"] for r in runs], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
