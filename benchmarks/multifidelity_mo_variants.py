"""Variants of Pareto ASHA's promotion rule on multifidelity_mo.py's problem, replayed from a curve cache.

Each variant is :class:`tunelab.ParetoSuccessiveHalvingPruner` (min_resource 1, eta 3, R = 27, the
random sampler) with one rule changed; every run is multifidelity_mo.py's ``run_task`` (same seeds,
budget and configuration order), so the numbers compare with its ``tunelab-random-pasha`` row seed by
seed. With ``--curve-cache`` (multifidelity_mo.py's) a variant's 15 seeds take seconds.

Variants (``crowding`` is the default rule, ``finite-ends`` its ``end_crowding="gap"``):

- ``crowding``: fronts, ties in a front by crowding distance (ends ``inf``), keep ``max(1, n // eta)``;
- ``strict-start``: keep ``n // eta`` (a trial reaching a rung of fewer than eta trials stops);
- ``finite-ends``: a front's end trials get twice their one-sided gap as crowding, not ``inf``;
- ``hv-contribution``: ties in a front by exclusive hypervolume contribution (reference: the rung's
  worst value + 10% of its range per objective);
- ``rank-crowding``: crowding on each objective's ranks in the rung (invariant to monotone rescaling,
  e.g. params against log params);
- ``quota``: a rung k (0-based) keeps at most ``N0 // eta ** (k + 1)`` trials, N0 the trials that reached
  the first rung (synchronous successive halving's count; async ASHA compounds each rung's excess);
- ``quota-strict``: ``quota`` without the ``max(1, .)`` (promotion rates exactly 1/eta per rung);
- ``finished-dominance``: also stop a trial whose values at the rung are dominated by a COMPLETE
  trial's values at the same step;
- ``projected``: at rungs after the first, each objective's value moved on by its own change since the
  previous rung (a constant objective does not move);
- ``local-9``: no fronts: the trial's error must rank in the best third of the 9 trials nearest to it
  in parameter count (the constant objective as a stratum);
- ``error-only``: single-objective ASHA on the error (ignores the parameter count);
- ``static-end``: a front's ends rank by their gap (as ``finite-ends``), except the trial with the best
  value of an objective that training changes (the error), which ranks first: the parameter count, known
  before training, earns no infinite crowding for its smallest value (2026-12-07);
- ``first-front``: a trial on the rung's first front always goes on, whatever the quota;
  ``first-front-late``: the same at rungs after the first only;
- ``strict-ties``: keep exactly ``max(1, n // eta)`` trials, ties (a front's two ``inf`` ends) broken by
  trial number, older first; ``ceil-strict``: the same with ``ceil(n / eta)`` (a rung of 4-5 trials keeps 2).
- ``min-complete-N``: the default rule, but a trial at the last rung stops while fewer than N trials have
  reached the first rung (no completion before N configurations have started; 2026-12-07, later).

Early-phase variants (2026-12-07, later; ``--variants``; a ``default:`` prefix runs any variant with the
study's default sampler). The worker may leave a trial *waiting* at a rung and start another one (the
study's trials then run side by side with ``ask``/``tell``; each trial's record keeps ``at``, the run's
epoch count after each of its epochs, for the hypervolume's clock). A waiting trial keeps its model (a
checkpoint); with a ``-restart`` suffix it keeps none, and its promotion trains its epochs again from
scratch, counted:

- ``sync-N`` (N = 9, 27): a synchronous first bracket: the first N configurations are each trained to
  the first rung; then the pruner judges them all there (the rung then holds all N, so it keeps its
  ``max(1, N // 3)``, ties kept), the kept ones are trained to the next rung and judged together again,
  and so on to the end; then the usual asynchronous stop-or-continue Pareto ASHA for the rest of the budget;
- ``promote``: ASHA's own promotion scheme (Li et al. 2020) with the Pareto rule, for the whole run: the
  worker promotes one rung on the best not-yet-promoted trial the default rule keeps at the highest rung
  (fronts, crowding, the best ``n // 3``: none while the rung holds fewer than 3), else starts a new
  configuration and trains it to the first rung; a trial waits at a rung until promoted, and the ones still
  waiting at the end of the budget never complete;
- ``promote-N``: ``promote`` until N configurations have started, then each waiting trial is judged by the
  pruner at its rung (now fuller) and the kept ones trained on under it, then asynchronous as usual.

Rung schedules (``--schedules``; the promotion rule is the default one, only the rungs change):

- ``m{r}-e{eta}``: :class:`tunelab.ParetoSuccessiveHalvingPruner` with ``min_resource=r`` and
  ``reduction_factor=eta`` (``m1-e3`` is ``tunelab-random-pasha``; rungs ``r * eta ** k`` below R);
- ``hb-m{r}-e{eta}``: a multi-objective Hyperband, :class:`ParetoHyperband`: the brackets and each
  trial's bracket of :class:`tunelab.HyperbandPruner` (``min_resource=r``, ``max_resource=R``), and in each
  bracket the default Pareto rule among that bracket's trials only;
- a ``default:`` prefix runs the setting with the study's default sampler instead of the random one.

Also: per rung, how many trials reached it (the promotion rates), and an oracle bound: over the first
80 configurations of each seed (trained to the end), the fewest epochs ``N + 26 * |S|`` with which a
pruner that knew every final value could reach random search's final hypervolume (screen N
configurations for one epoch each, train the subset S, chosen greedily by hypervolume, to the end).

``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/multifidelity_mo_variants.py --curve-cache PATH``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multifidelity_mo as mm
import numpy as np
from scipy.stats import rankdata

import tunelab
from tunelab.history import History
from tunelab.multiobjective import crowding_distance, hypervolume, losses, non_dominated_sort
from tunelab.pruners.asha import HyperbandPruner
from tunelab.pruners.base import PruneDecision, last_step
from tunelab.pruners.pareto import ParetoSuccessiveHalvingPruner, _key, _vectors_at, pareto_order
from tunelab.records import TrialState

ORACLE_CONFIGS = 80


def _exclusive_hv(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    total = hypervolume(points, ref)
    return np.array([total - hypervolume(np.delete(points, i, axis=0), ref) for i in range(len(points))])


def _finite_crowding(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = np.zeros(len(points))
    if len(points) == 1:
        return out + 1.0
    for d in range(points.shape[1]):
        order = np.argsort(points[:, d], kind="stable")
        gaps = np.diff(points[order, d]) / max(hi[d] - lo[d], 1e-300)
        out[order[0]] += 2 * gaps[0]
        out[order[-1]] += 2 * gaps[-1]
        if len(order) > 2:
            out[order[1:-1]] += gaps[:-1] + gaps[1:]
    return out


class VariantPruner(ParetoSuccessiveHalvingPruner):
    """Pareto ASHA with one promotion rule changed (see the module's docstring)."""

    def __init__(self, variant: str, max_resource: int) -> None:
        super().__init__(min_resource=1, reduction_factor=mm.ETA, max_resource=max_resource)
        self.variant = variant

    def _keys(self, pts: np.ndarray) -> list[tuple[float, float]]:
        keys = [(math.inf, 0.0)] * len(pts)
        idx = np.flatnonzero(np.all(np.isfinite(pts), axis=1))
        if not len(idx):
            return keys
        if self.variant == "error-only":
            return [(float(pts[i, 0]), 0.0) if i in idx else k for i, k in enumerate(keys)]
        if self.variant == "rank-crowding":
            pts = pts.copy()
            pts[idx] = np.column_stack([rankdata(pts[idx, d]) for d in range(pts.shape[1])])
        lo, hi = pts[idx].min(axis=0), pts[idx].max(axis=0)
        ref = hi + 0.1 * np.where(hi > lo, hi - lo, 1.0)
        for k, front in enumerate(non_dominated_sort(pts[idx])):
            members = idx[front]
            if self.variant == "finite-ends":
                score = _finite_crowding(pts[members], lo, hi)
            elif self.variant == "static-end":
                score = _finite_crowding(pts[members], lo, hi)
                if len(members) > 1:  # objective 1, the parameter count, is the constant one
                    score[int(np.argmin(pts[members, 0]))] = math.inf
            elif self.variant == "hv-contribution":
                score = _exclusive_hv(pts[members], ref)
            else:
                score = crowding_distance(pts[members])
            for m, c in zip(members, score, strict=True):
                keys[m] = (float(k), -float(c))
        return keys

    def decide_many(
        self, history: History, number: int, metrics: Sequence[str], directions: Sequence[str],
        curves: Mapping[str, Mapping[int, float]],
    ) -> PruneDecision | None:
        step = last_step(curves[metrics[0]])
        rungs = self.rungs(up_to=step)
        if step not in rungs or any(step not in curves[m] for m in metrics):
            return None
        stop = PruneDecision(rule=f"{self.variant} rung at step {step}", detail=self.variant)
        own = [curves[m][step] for m in metrics]
        vectors = _vectors_at(history, metrics, step)
        vectors[number] = own
        if self.variant == "projected" and step > rungs[0]:
            before = step // self.reduction_factor
            prev = _vectors_at(history, metrics, before)
            prev[number] = [curves[m][before] for m in metrics]
            for n, v in list(vectors.items()):
                if n in prev:
                    now, then = losses([v], directions)[0], losses([prev[n]], directions)[0]
                    moved = now - np.maximum(0.0, then - now)
                    vectors[n] = [float(x) if d == "minimize" else -float(x)
                                  for x, d in zip(moved, directions, strict=True)]
        numbers = sorted(vectors)
        pts = losses([vectors[n] for n in numbers], directions)
        me = numbers.index(number)
        n = len(numbers)
        if self.variant == "local-9":
            order = np.argsort(pts[:, 1], kind="stable")
            pos = int(np.flatnonzero(order == me)[0])
            w = min(9, n)
            start = max(0, min(pos - w // 2, n - w))
            window = np.sort(pts[order[start:start + w], 0])
            return None if pts[me, 0] <= window[max(1, w // self.reduction_factor) - 1] else stop
        if self.variant == "finished-dominance":
            mine = losses([own], directions)[0]
            for other, v in _vectors_at(history, metrics, step, (TrialState.COMPLETE,)).items():
                o = losses([v], directions)[0]
                if other != number and np.all(o <= mine) and np.any(o < mine):
                    return stop
        keys = self._keys(pts)
        if self.variant in ("first-front", "first-front-late") and keys[me][0] == 0.0 and (
                self.variant == "first-front" or step > rungs[0]):
            return None
        if self.variant.startswith("min-complete-") and step == rungs[-1] and len(
                {p.number for p in history.metric_at(metrics[0], [rungs[0]])} | {number}) < int(self.variant[13:]):
            return stop
        if self.variant in ("strict-ties", "ceil-strict"):
            kept = (-(-n // self.reduction_factor) if self.variant == "ceil-strict"
                    else max(1, n // self.reduction_factor))
            ranked = sorted(range(n), key=lambda i: (keys[i], numbers[i]))
            return None if me in ranked[:kept] else stop
        n_keep = n // self.reduction_factor
        if self.variant in ("quota", "quota-strict"):
            n0 = len({p.number for p in history.metric_at(metrics[0], [rungs[0]])} | {number})
            n_keep = min(n_keep, n0 // self.reduction_factor ** (rungs.index(step) + 1))
        if self.variant not in ("strict-start", "quota-strict"):
            n_keep = max(1, n_keep)
        if n_keep >= 1 and keys[me] <= sorted(keys)[n_keep - 1]:
            return None
        return stop


class ParetoHyperband(ParetoSuccessiveHalvingPruner):
    """Multi-objective Hyperband: :class:`tunelab.HyperbandPruner`'s brackets, rungs and bracket of each
    trial, with the default Pareto rule (fronts, crowding, keep ``max(1, n // eta)``) inside a bracket."""

    def __init__(self, min_resource: int, reduction_factor: int, max_resource: int) -> None:
        super().__init__(min_resource=min_resource, reduction_factor=reduction_factor, max_resource=max_resource)
        self.hyperband = HyperbandPruner(min_resource=min_resource, max_resource=max_resource,
                                         reduction_factor=reduction_factor)

    def decide_many(
        self, history: History, number: int, metrics: Sequence[str], directions: Sequence[str],
        curves: Mapping[str, Mapping[int, float]],
    ) -> PruneDecision | None:
        step = last_step(curves[metrics[0]])
        bracket = self.hyperband.bracket_of(number)
        rungs = self.hyperband.brackets[bracket].rungs(up_to=step)
        if step not in rungs or any(step not in curves[m] for m in metrics):
            return None
        vectors = {n: v for n, v in _vectors_at(history, metrics, step).items()
                   if self.hyperband.bracket_of(n) == bracket}
        vectors[number] = [curves[m][step] for m in metrics]
        numbers = sorted(vectors)
        front_of, crowd = pareto_order(losses([vectors[n] for n in numbers], directions), self.end_crowding)
        keys = sorted(_key(int(f), float(c)) for f, c in zip(front_of, crowd, strict=True))
        me = numbers.index(number)
        if _key(int(front_of[me]), float(crowd[me])) <= keys[max(1, len(numbers) // self.reduction_factor) - 1]:
            return None
        return PruneDecision(rule=f"pareto hyperband bracket {bracket} rung at step {step}", detail="outside the best")


@dataclass
class Live:
    """A trial of a scheduled run: its live Trial, epoch record and trainer (None while a trial without a
    checkpoint waits: it is then trained again from scratch when promoted)."""

    trial: tunelab.Trial
    record: dict[str, Any]
    trainer: Any
    size: float
    done: int = 0


class EarlyRun:
    """One worker that may leave a trial waiting at a rung and start another (ASHA's promotion scheme):
    the study's Trials stay RUNNING side by side (``ask``/``tell``), each record keeps ``at`` (the run's
    epoch count after each of its epochs) for the hypervolume's clock. ``restart``: a waiting trial
    keeps no checkpoint, so its promotion trains its epochs again from scratch (counted)."""

    def __init__(self, log: mm.MORunLog, study: tunelab.Study, restart: bool) -> None:
        self.log, self.study, self.restart, self.started = log, study, restart, 0
        self.open: dict[int, Live] = {}

    def new(self) -> Live:
        trial = self.study.ask()
        record = self.log.start_trial(trial.number, trial.params, side_by_side=True)
        record["retrained"], record["state"] = 0, "running"
        self.started += 1
        live = Live(trial, record, self.log.new_trainer(record, trial.params), float(mm.n_params(trial.params)))
        self.open[trial.number] = live
        return live

    def train_to(self, live: Live, step: int) -> bool:
        """Train ``live`` on to ``step`` epochs, reporting each; False (and the trial cut) when the budget ends."""
        if live.trainer is None:
            live.trainer = self.log.new_trainer(live.record, live.trial.params)
            for _ in range(live.done):  # no checkpoint: the epochs it had are trained again
                if self.log.left <= 0:
                    return self._cut(live)
                live.trainer.train_epoch()
                self.log.used += 1
                live.record["retrained"] += 1
        while live.done < step:
            if self.log.left <= 0:
                return self._cut(live)
            r = self.log.train_epoch(live.record, live.trainer)
            live.done += 1
            live.trial.report(live.done, val_error=1.0 - r.val_acc, params=live.size)
        return True

    def wait(self, live: Live) -> None:
        if self.restart:
            live.trainer = None

    def _cut(self, live: Live) -> bool:
        self.stop(live, "cut")
        return False

    def stop(self, live: Live, state: str = "pruned") -> None:
        live.record["state"] = state
        self.study.tell(live.trial, state="PRUNED")
        del self.open[live.trial.number]

    def finish(self, live: Live) -> None:
        live.record["state"] = "complete"
        self.study.tell(live.trial, values=[1.0 - live.record["val_acc"][-1], live.size])
        del self.open[live.trial.number]

    def close(self) -> None:
        """At the end of the budget: the trials still waiting at a rung never complete."""
        for live in list(self.open.values()):
            self.stop(live, "waiting")

    def go_on(self, live: Live) -> None:
        """Train ``live`` to the end under the study's pruner (asked after every epoch, as ``train_trial``)."""
        while live.done < mm.MAX_EPOCHS:
            if live.done and live.trial.should_prune():
                return self.stop(live)
            if not self.train_to(live, live.done + 1):
                return
        self.finish(live)

    def asynchronous(self) -> None:
        """The rest of the budget: new trials one after another, stop-or-continue (``tunelab_runner``)."""
        while self.log.left > 0:
            self.go_on(self.new())


def promotable(values: Mapping[int, tuple[float, float]], eta: int) -> list[int]:
    """The trials ASHA may promote from a rung holding ``values`` (trial -> (val_error, params), both
    minimised): those the default rule keeps, ranked within the best ``n // eta`` (ties with the last kept
    trial kept, as the pruner keeps them), best first. None while the rung holds fewer than eta trials."""
    numbers = sorted(values)
    n_keep = len(numbers) // eta
    if not n_keep:
        return []
    front, crowd = pareto_order(losses([list(values[n]) for n in numbers], ["minimize", "minimize"]))
    keys = [_key(int(f), float(c)) for f, c in zip(front, crowd, strict=True)]
    cut = sorted(keys)[n_keep - 1]
    return [numbers[i] for i in sorted(range(len(numbers)), key=lambda i: (keys[i], numbers[i])) if keys[i] <= cut]


def run_sync_bracket(run: EarlyRun, rungs: Sequence[int], n_first: int) -> None:
    """Successive halving on the first ``n_first`` configurations: each is trained to a rung, then the
    study's pruner judges them all (the rung then holds them all), the kept ones go on to the next rung."""
    alive = []
    for _ in range(n_first):
        live = run.new()
        if not run.train_to(live, rungs[0]):
            return
        run.wait(live)
        alive.append(live)
    for k, rung in enumerate(rungs):
        if k:
            for live in alive:
                if not run.train_to(live, rung):
                    return
                run.wait(live)
        kept = []
        for live in alive:
            if live.trial.should_prune():
                run.stop(live)
            else:
                kept.append(live)
        alive = kept
    for live in alive:
        if not run.train_to(live, mm.MAX_EPOCHS):
            return
        run.finish(live)


def run_promotions(run: EarlyRun, rungs: Sequence[int], eta: int, until: int | None) -> None:
    """ASHA's promotion scheme with the Pareto rule: the worker promotes the best promotable trial of the
    highest rung (:func:`promotable`, not yet promoted) one rung on, else starts a new configuration and
    trains it to the first rung; a trial waits at a rung until promoted. With ``until``: only until that
    many configurations have started; then each waiting trial is judged by the study's pruner at its rung
    (the rungs fuller now), the kept ones trained on under it, and the rest of the run is asynchronous."""
    at: list[dict[int, tuple[float, float]]] = [{} for _ in rungs]
    waiting: dict[int, tuple[Live, int]] = {}
    while run.log.left > 0 and (until is None or run.started < until):
        job = next(((waiting[n][0], k) for k in reversed(range(len(rungs)))
                    for n in promotable(at[k], eta) if n in waiting and waiting[n][1] == k), None)
        if job is None:
            live, k = run.new(), -1
        else:
            live, k = job
            del waiting[live.trial.number]
        target = rungs[k + 1] if k + 1 < len(rungs) else mm.MAX_EPOCHS
        if not run.train_to(live, target):
            return
        if target == mm.MAX_EPOCHS:
            run.finish(live)
            continue
        at[k + 1][live.trial.number] = (1.0 - live.record["val_acc"][-1], live.size)
        run.wait(live)
        waiting[live.trial.number] = (live, k + 1)
    if until is None:
        return
    for live, _ in sorted(waiting.values(), key=lambda w: w[0].trial.number):
        if run.log.left > 0:
            run.go_on(live)  # asks the pruner at the rung it waits at first
    run.asynchronous()


EARLY = ("sync-9", "sync-27", "sync-9-restart", "sync-27-restart", "promote", "promote-restart", "promote-27",
         "promote-27-restart")


def early_method(name: str, default_sampler: bool = False) -> mm.RunFn:
    """The run of an early-phase variant (see the module's docstring)."""
    kind, _, rest = name.partition("-")
    restart = rest.endswith("restart")
    number = rest.removesuffix("restart").strip("-")

    def run(log: mm.MORunLog, seed: int) -> None:
        study = tunelab.create_study(
            directions=["minimize", "minimize"], objective_names=list(mm.OBJECTIVES),
            sampler=None if default_sampler else tunelab.RandomSampler(), seed=seed, space=mm.SPACE,
            pruner=ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=mm.ETA, max_resource=mm.MAX_EPOCHS))
        early = EarlyRun(log, study, restart)
        pruner = study.pruner
        assert isinstance(pruner, ParetoSuccessiveHalvingPruner)
        rungs = pruner.rungs(up_to=mm.MAX_EPOCHS)
        if kind == "sync":
            run_sync_bracket(early, rungs, int(number))
            early.asynchronous()
        else:
            run_promotions(early, rungs, mm.ETA, int(number) if number else None)
        early.close()

    return run


def schedule_method(name: str) -> mm.RunFn:
    """The run of a rung schedule named ``[default:]m{r}-e{eta}`` or ``[default:]hb-m{r}-e{eta}``."""
    sampler_name, _, rest = name.rpartition(":")
    if sampler_name not in ("", "default"):
        raise SystemExit(f"schedule {name!r}: the only sampler prefix is 'default:'")
    parts = rest.split("-")
    hb = parts[0] == "hb"
    parts = parts[1:] if hb else parts
    if len(parts) != 2 or parts[0][:1] != "m" or parts[1][:1] != "e":
        raise SystemExit(f"schedule {name!r}: expected m<min_resource>-e<eta>, or hb-m<r>-e<eta>, e.g. m2-e3")
    r, eta = int(parts[0][1:]), int(parts[1][1:])

    def pruner(big_r: int) -> ParetoSuccessiveHalvingPruner:
        if hb:
            return ParetoHyperband(r, eta, big_r)
        return ParetoSuccessiveHalvingPruner(min_resource=r, reduction_factor=eta, max_resource=big_r)

    return mm.tunelab_runner((lambda: None) if sampler_name else tunelab.RandomSampler, pruner)


VARIANTS = ("crowding", "strict-start", "finite-ends", "hv-contribution", "rank-crowding", "quota", "quota-strict",
            "finished-dominance", "projected", "local-9", "error-only", "static-end", "first-front",
            "first-front-late", "strict-ties", "ceil-strict", "min-complete-9", "min-complete-27")


def _method(variant: str, default_sampler: bool = False) -> mm.RunFn:
    return mm.tunelab_runner((lambda: None) if default_sampler else tunelab.RandomSampler,
                             lambda R: VariantPruner(variant, R))


def rung_counts(run: Mapping[str, Any]) -> list[int]:
    """How many trials trained at least 1, 2, 4, 10 and 27 epochs (reached rung 1, passed rungs 1, 3, 9)."""
    trials = [t for t in run["trials"] if t["state"] != "cut"]
    return [sum(len(t["val_acc"]) >= k for t in trials) for k in (1, 2, 4, 10, 27)]


def oracle(runs: Mapping[tuple[str, int], Mapping[str, Any]], seed: int, cache: str) -> dict[str, Any]:
    """The fewest epochs N + 26 |S| with which final values known in advance reach random search's final HV."""
    base = runs[(mm.RANDOM, seed)]
    target, spent = mm.final_hv(base), mm.epochs_to_reach(base, mm.final_hv(base))
    configs = [t["params"] for t in runs[("crowding", seed)]["trials"][:ORACLE_CONFIGS]]
    assert mm._CURVES is not None
    final = []
    for p in configs:
        trainer = mm.CachedTrainer(p, mm._CURVES)
        for _ in range(mm.MAX_EPOCHS):
            r = trainer.train_epoch()
        final.append((1.0 - r.val_acc, math.log10(mm.n_params(p))))
    pts = np.array(final)
    best: tuple[int, int, list[int]] | None = None
    for n in range(1, len(pts) + 1):
        chosen: list[int] = []
        hv = 0.0
        while hv < target - mm.TIE and len(chosen) < 12:
            chosen.append(max(range(n), key=lambda j: hypervolume(pts[[*chosen, j]], mm.REFERENCE)))
            hv = hypervolume(pts[chosen], mm.REFERENCE)
        if hv >= target - mm.TIE:
            cost = n + (mm.MAX_EPOCHS - 1) * len(chosen)
            if best is None or cost < best[0]:
                best = (cost, n, chosen)
    if best is None or not spent:
        return {"seed": seed, "epochs": None, "ratio": math.inf}
    return {"seed": seed, "epochs": best[0], "screened": best[1], "trained": sorted(best[2]),
            "ratio": best[0] / spent}


def save_curves(path: Path) -> None:
    """Write the curve cache (via a temporary file, so that a stopped run never leaves half a file)."""
    assert mm._CURVES is not None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(mm._CURVES))
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=15)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, ..., first-seed + seeds - 1")
    p.add_argument("--variants", default=None, help="default: all, unless --schedules is given")
    p.add_argument("--schedules", default="", help="rung schedules, e.g. m1-e3,m2-e3,hb-m1-e3,default:m2-e3")
    p.add_argument("--curve-cache", type=Path, required=True)
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle (it trains 80 configurations per seed)")
    p.add_argument("--out", type=Path, default=mm.RESULTS_DIR / "multifidelity-mo-variants.json")
    args = p.parse_args(argv)
    chosen = args.variants if args.variants is not None else ("" if args.schedules else ",".join(VARIANTS))
    variants = [v for v in chosen.split(",") if v]
    unknown = [v for v in variants if v.removeprefix("default:") not in VARIANTS + EARLY]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS + EARLY)}")
    for v in variants:
        early = v.removeprefix("default:")
        mm.METHODS[v] = early_method(early, early != v) if early in EARLY else _method(early, early != v)
    for name in [x for x in args.schedules.split(",") if x]:
        mm.METHODS[name] = schedule_method(name)
        variants.append(name)
    budget = mm.BUDGET_TRIALS * mm.MAX_EPOCHS
    cache = str(args.curve_cache)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for m in [mm.RANDOM, *variants]:
        for s in seeds:
            r = mm.run_task(mm.Task(m, s, mm.MAX_EPOCHS, budget, cache))
            r.pop("new_curves")
            if r["error"]:
                print(r["error"], file=sys.stderr)
                return 1
            runs[(m, s)] = r
        if mm._CURVES is not None:  # after each method: a run stopped later keeps what it trained
            save_curves(args.curve_cache)
    summary = mm.summarize(list(runs.values()), [mm.RANDOM, *variants], budget)
    per_seed: dict[str, list[float]] = {}
    counts: dict[str, list[float]] = {}
    for v in variants:
        ratios = []
        for s in seeds:
            target = mm.final_hv(runs[(mm.RANDOM, s)])
            got, base = mm.epochs_to_reach(runs[(v, s)], target), mm.epochs_to_reach(runs[(mm.RANDOM, s)], target)
            ratios.append(math.inf if got is None or not base else round(got / base, 4))
        per_seed[v] = ratios
        counts[v] = [float(x) for x in np.median([rung_counts(runs[(v, s)]) for s in seeds], axis=0)]
    bound = [oracle(runs, s, cache) for s in seeds] if "crowding" in variants and not args.no_oracle else []
    save_curves(args.curve_cache)
    print(f"{'variant':<20} {'ratio median [IQR]':<22} reached  HV@810  trials (complete)  trials at 1/3/9/27 epochs")
    for row in summary["rows"]:
        r, hv = row["ratio_to_random_epochs"], row["hv"][str(budget)]
        c = counts.get(row["method"], [])
        print(f"{row['method']:<20} {r['median']:.3f} [{r['q25']:.2f}, {r['q75']:.2f}]   "
              f"{row['reached']:>2}/{row['compared']}  "
              f"{hv['median']:.3f}  {row['trials']['median']:.0f} ({row['complete']['median']:.0f})  "
              f"{'/'.join(f'{x:.0f}' for x in c[1:])}")
    for v, ratios in per_seed.items():
        print(f"{v:<20} " + " ".join("never" if math.isinf(x) else f"{x:.2f}" for x in ratios))
    if bound:
        print("oracle", " ".join(f"{b['ratio']:.2f}" for b in bound),
              f"median {np.median([b['ratio'] for b in bound]):.3f}")
    mm.save_json(args.out, {"benchmark": "multifidelity_mo_variants", "machine": mm.machine_info(),
                            "config": {"seeds": seeds, "budget": budget, "max_epochs": mm.MAX_EPOCHS,
                                       "eta": mm.ETA, "variants": variants, "oracle_configs": ORACLE_CONFIGS},
                            "summary": summary, "ratio_per_seed": per_seed, "median_rung_counts": counts,
                            "oracle": bound})
    print(f"Saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
