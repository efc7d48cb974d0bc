"""Branches of one run: roll back to a checkpoint, and the run's tree.

A *run* is a study whose trials are the branches of one training run: the first trial trains
from scratch, every other one starts from a checkpoint of another (``system_attrs["branch"]``,
:func:`tunelab.live.branch_of`). :func:`rollback` makes a new branch and lets the training process
move on to it; :func:`run_tree` / :func:`format_tree` show the branches with the changes made to
each while it trained, the requests still pending and the checkpoints one can roll back to.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from tunelab.babysit.control import branch, request_stop
from tunelab.babysit.run import RUN
from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, TrialNotFoundError, TrialStateError
from tunelab.live import (
    LIVE_REQUESTS,
    branch_of,
    params_at,
    pending_requests,
    read_checkpoint_params,
    schedule,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import Curves
from tunelab.study import Study

_LR_CURVES = ("lr", "learning_rate")


# -- rolling back ---------------------------------------------------------------------------------
def rollback(
    study: Study,
    *,
    to: int,
    trial: int | None = None,
    values: Mapping[str, ParamValue] | None = None,
    note: str | None = None,
) -> int:
    """Go back to a checkpoint: a new branch starts from trial ``trial``'s checkpoint at step ``to``
    with ``values`` changed; return its number.

    Without ``trial``: the RUNNING branch when exactly one runs (or the ancestor it forked from,
    when the step is before its fork and only the ancestor keeps that checkpoint), else the newest
    branch that keeps a checkpoint at ``to``. The new branch is WAITING; a RUNNING branch it replaces
    is asked to stop (:func:`~tunelab.babysit.control.request_stop`), so the training process moves on to the new one.
    ConfigError when the choice is ambiguous, no branch keeps that step, or a value is bad.
    """
    if isinstance(to, bool) or not isinstance(to, numbers.Integral) or to < 0:
        raise ConfigError(f"rollback(to=...) must be a step (an integer >= 0), got {to!r}")
    to = int(to)  # a numpy integer too
    if trial is not None and (isinstance(trial, bool) or not isinstance(trial, int)):
        raise ConfigError(f"rollback(trial=...) must be a trial number, got {trial!r}")
    if note is not None and not isinstance(note, str):
        raise ConfigError(f"rollback(note=...) must be text, got {note!r}")
    trials = {t.number: t for t in study.trials}
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"rollback(values=...) must be a mapping name -> value, got {values!r}")
    parent, replaced = _choose_parent(study, trials, to, trial)
    # Study.branch checks the values against the checkpoint's hyperparameters
    number = branch(study, parent, to, dict(values) if values else None, kind="rollback", note=note)
    if replaced is not None:
        try:
            request_stop(study, replaced)
        except TrialStateError:
            pass  # it finished meanwhile: nothing to stop
    return number


def _choose_parent(
    study: Study, trials: Mapping[int, FrozenTrial], to: int, number: int | None
) -> tuple[int, int | None]:
    """(the trial whose checkpoint to start from, the RUNNING trial the new branch replaces)."""
    if number is not None:
        if number not in trials:
            raise TrialNotFoundError(f"study {study.name!r} has no trial number {number}")
        return number, number if trials[number].state == TrialState.RUNNING else None
    running = [n for n, t in trials.items() if t.state == TrialState.RUNNING]
    if len(running) == 1:
        current = running[0]
        return _keeper_in_line(study, trials, current, to), current
    keeps = [n for n in sorted(trials) if _keeps(study, n, to)]
    if len(running) > 1:
        candidates = [n for n in running if n in keeps]
        if len(candidates) == 1:
            return candidates[0], candidates[0]
        raise ConfigError(
            f"trials {_and(running)} of run {study.name!r} are running; say which to roll back with "
            f"--trial N (trial=N): " + _kept_text(study, running)
        )
    if not keeps:
        raise ConfigError(
            f"no branch of run {study.name!r} keeps a checkpoint at step {to}: "
            + (_kept_text(study, sorted(trials)) if trials else "it has no trials")
        )
    return keeps[-1], None


def _keeper_in_line(study: Study, trials: Mapping[int, FrozenTrial], number: int, to: int) -> int:
    """``number`` if it keeps step ``to``, else its nearest ancestor that does and that it forked
    from at or after ``to`` (the line of training the running branch continues); else ``number``
    (:func:`~tunelab.babysit.control.branch` then says which steps it keeps)."""
    current: int | None = number
    seen: set[int] = set()
    while current is not None and current in trials and current not in seen:
        seen.add(current)
        if _keeps(study, current, to):
            return current
        branch = branch_of(trials[current].system_attrs)
        if branch is None or branch.step < to:
            break
        current = branch.parent
    return number


def _keeps(study: Study, number: int, step: int) -> bool:
    return any(c.step == step for c in study.checkpoints(number))


def _kept_text(study: Study, numbers: Sequence[int]) -> str:
    parts = []
    for n in numbers:
        steps = [c.step for c in study.checkpoints(n)]
        parts.append(f"trial {n} keeps {'steps ' + ', '.join(map(str, steps)) if steps else 'no checkpoint'}")
    return "; ".join(parts)


def _and(numbers: Sequence[int]) -> str:
    items = [str(n) for n in numbers]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- the tree -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One hyperparameter change a branch applied while it trained, at ``step``."""

    step: float
    values: dict[str, ParamValue]
    before: dict[str, ParamValue | None]
    sources: tuple[str, ...]
    notes: tuple[str, ...]
    curve_step: float
    """Where on the branch's curves it applied (the entry's ``curve_step`` when the loop gave one)."""
    at: str | None = None
    """When it applied (ISO time)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """What the loop recorded with it besides the step (``trial.sync_live(step, **extra)``), e.g. the
    Trainer's ``optimizer_step``."""

    @property
    def when(self) -> str:
        """Where it applied, in words: ``epoch 21.9 (optimizer step 241)`` when the loop's step is a
        fractional epoch and it recorded the optimizer step, ``optimizer step 241`` when the two are the
        same (the Trainer with ``eval_every``), else ``step 12``."""
        opt = self.extra.get("optimizer_step")
        if isinstance(opt, int) and not isinstance(opt, bool):
            if isinstance(self.step, (int, float)) and math.isfinite(self.step) and self.step != opt:
                return f"epoch {_epoch(float(self.step))} (optimizer step {opt})"
            return f"optimizer step {opt}"
        return f"step {_step(self.step)}"


@dataclass(frozen=True)
class BranchNode:
    """One branch of a run, with its children (the branches that start from its checkpoints).

    Attributes:
        number: the trial's number.
        parent: the trial it starts from (None for a run's first trial).
        step: the step of the parent's checkpoint it starts from (None for a root).
        kind: 'rollback', 'resume', or None for a root.
        state: the trial's state.
        value: its final value (COMPLETE), else None.
        metric: the monitored metric (see :func:`run_tree`), or None when it reported nothing.
        best / best_step / last / last_step: that metric's best and last values and their steps.
        first_step / last_reported: the first and last steps of that metric's curve.
        params: the hyperparameters it started with.
        set: the values changed when it was made (a branch's ``--set``), with what they were
            (``start_from``: the checkpoint's values).
        changes: the changes it applied while training (its live schedule).
        pending: the change requests it has not applied yet.
        checkpoints: the steps of the checkpoints it keeps (one can roll back to these).
        note: the note given when the branch was made.
        stop_requested: a RUNNING branch asked to stop (by a roll-back); it stops at its next check.
        children: its branches, by fork step then number.
    """

    number: int
    parent: int | None
    step: int | None
    kind: str | None
    state: TrialState
    value: float | None
    metric: str | None
    best: float | None
    best_step: int | None
    last: float | None
    last_step: int | None
    first_step: int | None
    last_reported: int | None
    params: dict[str, ParamValue]
    set: dict[str, ParamValue]
    start_from: dict[str, ParamValue]
    changes: tuple[Change, ...]
    pending: tuple[dict[str, Any], ...]
    checkpoints: tuple[int, ...]
    note: str | None
    children: tuple[BranchNode, ...]
    stop_requested: bool = False
    curve: tuple[tuple[int, ...], tuple[float, ...]] = ((), ())
    """The monitored metric's curve, ``(steps, values)`` (NaN and infinities as reported)."""

    @property
    def current(self) -> dict[str, ParamValue]:
        """The hyperparameters after every change it applied."""
        out = dict(self.params)
        for change in self.changes:
            out.update(change.values)
        return out

    def walk(self) -> list[BranchNode]:
        """This node and every node below it, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def run_tree(
    study: Study, *, metric: str | None = None, trials: Sequence[FrozenTrial] | None = None
) -> list[BranchNode]:
    """The branches of a run as a tree: the roots (trials that start from scratch, or whose parent
    is gone) first, by number; each node's children are the branches made from its checkpoints.

    ``metric``: the metric whose curve, best and last values each node carries (read for every
    branch at once); default: the run's objective metric (:func:`objective_metric`), else
    :func:`monitored_metric` of the newest branches' metrics (:func:`run_metrics`). Best values follow
    the study's direction for the objective metric, the metric's name for another.
    ``trials``: the study's trials when the caller has read them already.
    """
    trials = study.trials if trials is None else trials
    return _run_tree(study, metric, trials, objective_metric(study, trials))


def _run_tree(
    study: Study, metric: str | None, trials: Sequence[FrozenTrial], objective: str | None
) -> list[BranchNode]:
    if metric is None:
        metric = objective or monitored_metric(_sampled_curves(study, trials))
    direction = _direction(study, metric, objective) if metric is not None else "minimize"
    curves: dict[int, tuple[list[int], list[float]]] = {t.number: ([], []) for t in trials}
    for point in study.get_metric(metric) if metric is not None else []:  # one read for every branch
        if point.number in curves:
            curves[point.number][0].append(point.step)
            curves[point.number][1].append(point.value)
    by_number = {t.number: t for t in trials}
    parent_of: dict[int, int | None] = {}
    for t in trials:
        b = branch_of(t.system_attrs)
        parent_of[t.number] = b.parent if b is not None and b.parent in by_number and b.parent != t.number else None
    # a cycle (impossible through Study.branch) would lose nodes: cut it at its lowest number
    for n in by_number:
        seen = {n}
        p = parent_of[n]
        while p is not None:
            if p in seen:
                parent_of[n] = None
                break
            seen.add(p)
            p = parent_of[p]

    def build(t: FrozenTrial) -> BranchNode:
        kids = [by_number[n] for n, p in parent_of.items() if p == t.number]
        built = sorted((build(k) for k in kids), key=lambda c: (c.step if c.step is not None else -1, c.number))
        return _node(study, t, curves[t.number], metric, direction, tuple(built), by_number)

    return [build(t) for t in trials if parent_of[t.number] is None]


METRIC_SAMPLE = 3
"""The run's metrics are read from this many newest branches (running ones first): one read each."""


def _sampled_curves(study: Study, trials: Sequence[FrozenTrial]) -> list[Curves]:
    newest = sorted((t for t in trials if t.state != TrialState.WAITING),
                    key=lambda t: (t.state != TrialState.RUNNING, -t.number))[:METRIC_SAMPLE]
    return [study.get_curves(t.number) for t in newest]


class RunMetrics(NamedTuple):
    """The metrics a run's newest branches report, and the one it is judged by."""

    reported: list[str]
    """Every metric they report (a metric selector's choices)."""
    monitored: str | None
    """:func:`monitored_metric` of them (None when they report nothing)."""


def run_metrics(study: Study, trials: Sequence[FrozenTrial] | None = None) -> RunMetrics:
    """The metrics of the run's newest branches (:data:`METRIC_SAMPLE` of them, running ones first); the
    monitored one is the run's objective metric when it is known (:func:`objective_metric`)."""
    trials = study.trials if trials is None else trials
    sampled = _sampled_curves(study, trials)
    reported = list(dict.fromkeys(m for curves in sampled for m in curves))
    return RunMetrics(reported, objective_metric(study, trials) or monitored_metric(sampled))


def objective_metric(study: Study, trials: Sequence[FrozenTrial] | None = None) -> str | None:
    """The metric the run's value is, which its direction applies to: the one :func:`create_run` recorded
    (``system_attrs["run"]["metric"]``: the Trainer's monitor, e.g. ``val_acc``), else the metric whose
    curve holds the value of one of the newest COMPLETE branches (a Trainer's value is its monitor's best),
    else None."""
    record = study.system_attrs.get(RUN)
    if isinstance(record, Mapping) and isinstance(record.get("metric"), str) and record["metric"]:
        return str(record["metric"])
    trials = study.trials if trials is None else trials
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: -t.number)[:METRIC_SAMPLE]
    for t in done:
        curves = study.get_curves(t.number)
        holding = {m: c for m, c in curves.items() if not _is_lr(m) and t.value in c[1]}
        if holding:
            return monitored_metric([holding])
    return None


def _direction(study: Study, metric: str, objective: str | None) -> str:
    """The study's direction for the objective metric; the name's for another (a loss falls, an accuracy rises)."""
    return study.direction if metric == objective else metric_direction(metric)


def monitored_metric(all_curves: Iterable[Curves]) -> str | None:
    """The metric a run is judged by (see :func:`run_tree`), from the curves of its branches."""
    names: list[str] = []
    for curves in all_curves:
        names.extend(m for m in curves if m not in names and not _is_lr(m))
    if not names:
        return None
    if "val_loss" in names:
        return "val_loss"
    val = [m for m in names if m.lower().startswith(("val_", "valid_", "validation_", "eval_"))]
    for group in ([m for m in val if "loss" in m.lower()], val, [m for m in names if "loss" in m.lower()]):
        if group:
            return group[0]
    return names[0]


def metric_direction(metric: str) -> str:
    """'maximize' or 'minimize', from the metric's name (:func:`tunelab.analysis.diagnosis.metric_direction`,
    imported only here: the diagnosis loads numpy and scipy, which ``tunelab set`` does not need)."""
    from tunelab.analysis.diagnosis import metric_direction as direction

    return direction(metric)


def _is_lr(name: str) -> bool:
    low = name.lower()
    return low in _LR_CURVES or low.endswith(("_lr", "/lr", ".lr", "learning_rate"))


def _node(
    study: Study, t: FrozenTrial, curve: tuple[list[int], list[float]], metric: str | None, direction: str,
    children: tuple[BranchNode, ...], by_number: Mapping[int, FrozenTrial],
) -> BranchNode:
    branch = branch_of(t.system_attrs)
    record = t.system_attrs.get("branch") if branch is not None else None
    note = record.get("note") if isinstance(record, Mapping) else None
    best = best_step = last = last_step = None
    points = [(s, v) for s, v in zip(*curve, strict=True) if v is not None and math.isfinite(v)]
    if metric is not None and points:
        sign = 1.0 if direction == "minimize" else -1.0
        best_step, best = min(points, key=lambda p: (sign * p[1], p[0]))
        last_step, last = points[-1]
    all_steps = curve[0]
    start_from: dict[str, ParamValue] = {}
    changed: dict[str, ParamValue] = {}
    if branch is not None:
        changed = dict(branch.changed)
        start_from = read_checkpoint_params(branch.checkpoint) or {}
        parent = by_number.get(branch.parent)
        if not start_from and parent is not None:
            start_from = params_at(parent, branch.step)
    return BranchNode(
        number=t.number, parent=branch.parent if branch is not None else None,
        step=branch.step if branch is not None else None, kind=branch.kind if branch is not None else None,
        state=t.state, value=t.value, metric=metric if best is not None else None,
        best=best, best_step=best_step, last=last, last_step=last_step,
        first_step=min(all_steps) if all_steps else None, last_reported=max(all_steps) if all_steps else None,
        params=dict(t.params), set=changed, start_from=start_from, changes=tuple(changes_of(t)),
        pending=tuple(pending_requests(t)), checkpoints=tuple(c.step for c in study.checkpoints(t.number)),
        note=note if isinstance(note, str) and note else None, children=children,
        stop_requested=t.state == TrialState.RUNNING and "stop_requested" in t.system_attrs,
        curve=(tuple(curve[0]), tuple(curve[1])),
    )


def changes_of(t: FrozenTrial) -> list[Change]:
    """The changes trial ``t`` applied while it trained (its live schedule), each with the values it
    replaced, its sources and the notes of its requests."""
    requests = t.system_attrs.get(LIVE_REQUESTS) or []
    current: dict[str, ParamValue] = dict(t.params)
    out = []
    for entry in schedule(t):
        values = dict(entry.get("params") or {})
        before = {k: current.get(k) for k in values}
        current.update(values)
        indices = [i for i in entry.get("requests") or [] if isinstance(i, int) and 0 <= i < len(requests)]
        notes = tuple(str(requests[i]["note"]) for i in indices if isinstance(requests[i], Mapping)
                      and requests[i].get("note"))
        sources = tuple(dict.fromkeys(str(s) for s in entry.get("sources") or [] if s))
        step = entry.get("step", math.nan)
        at = entry.get("at")
        extra = {k: v for k, v in entry.items() if k not in _SCHEDULE_KEYS}
        out.append(Change(step, values, before, sources, notes, entry.get("curve_step", step),
                          at if isinstance(at, str) else None, extra))
    return out


_SCHEDULE_KEYS = frozenset({"step", "params", "requests", "sources", "at", "curve_step"})
"""The keys of a live-schedule entry that :func:`tunelab.live.LiveParams.sync` writes itself."""


# -- as text --------------------------------------------------------------------------------------
def format_tree(study: Study, *, metric: str | None = None) -> str:
    """The run's tree as plain text, e.g.::

        run 'babysit' (val_loss, minimize): 2 branches
        trial 0  PRUNED  steps 1-40  val_loss best 0.212 (step 30), last 0.25 (step 40)
          epoch 12.5 (optimizer step 137): lr 0.1 -> 0.03 (cli)
          checkpoints: 30, 40
          `-- from step 30: trial 1  RUNNING  rollback, lr 0.03 -> 0.01  steps 31-52  val_loss ...
                epoch 45 (optimizer step 495): lr 0.01 -> 0.005 (auto: reduce_on_plateau(val_loss, ...))
                pending: lr=0.001 (cli)
                checkpoints: 50

    The head names the metric the run's value is and the study's direction (:func:`objective_metric`),
    and the curve shown when it is another (``--metric``). Each branch is one line (its state, steps,
    the shown metric's best and last values), then its changes in step order (where each applied: the
    loop's step, as an epoch with the optimizer step when the loop recorded one), its children under
    the step they fork from, its pending requests and the checkpoints it keeps (the steps
    ``tunelab rollback --to`` accepts).
    """
    trials = study.trials
    objective = objective_metric(study, trials)
    roots = _run_tree(study, metric, trials, objective)
    n = sum(len(r.walk()) for r in roots)
    shown = next((node.metric for r in roots for node in r.walk() if node.metric), metric)
    head = f"run {study.name!r} ({_head(study.direction, objective, shown)})"
    lines = [f"{head}: {n} branch{'es' if n != 1 else ''}"]
    if not roots:
        lines.append("  no trials yet")
    for root in roots:
        _format(root, "", lines)
    return "\n".join(lines)


def _head(direction: str, objective: str | None, shown: str | None) -> str:
    """What the run's value is and which curve the branches show: ``val_acc, maximize`` when they are the
    same, ``val_acc, maximize; curves: val_loss`` when not. When the objective's metric is unknown (a study
    made without :func:`create_run`'s ``metric`` and no COMPLETE branch yet), the shown curve is taken for
    it only if its name goes the study's way (``val_loss, minimize``), else ``maximize its value; curves:
    val_loss``."""
    if objective is None:
        if shown is not None and metric_direction(shown) == direction:
            return f"{shown}, {direction}"
        return f"{direction} its value" + (f"; curves: {shown}" if shown else "")
    if shown is None or shown == objective:
        return f"{objective}, {direction}"
    return f"{objective}, {direction}; curves: {shown} ({metric_direction(shown)})"


def _format(node: BranchNode, indent: str, lines: list[str]) -> None:
    lines.append(indent + _headline(node))
    inner = indent + "  "
    events: list[tuple[float, int, Change | BranchNode]] = [(c.step, 0, c) for c in node.changes]
    events += [(float(c.step if c.step is not None else -1), 1, c) for c in node.children]
    for _, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        if isinstance(event, Change):
            lines.append(inner + _change_text(event))
        else:
            child_lines: list[str] = []
            _format(event, "", child_lines)
            lines.append(f"{inner}`-- from step {event.step}: {child_lines[0]}")
            lines.extend(inner + "      " + line for line in child_lines[1:])
    for request in node.pending:
        lines.append(inner + _pending_text(request, node.state.is_finished))
    if node.checkpoints:
        lines.append(inner + "checkpoints: " + ", ".join(map(str, node.checkpoints)))
    elif node.state == TrialState.RUNNING or not node.state.is_finished:
        lines.append(inner + "checkpoints: none yet")
    else:
        lines.append(inner + "checkpoints: none kept")


def _headline(node: BranchNode) -> str:
    parts = [f"trial {node.number}", node.state.value + (" (stop requested)" if node.stop_requested else "")]
    if node.kind is not None:
        what = node.kind
        if node.set:
            what += ", " + ", ".join(
                f"{k} {_v(node.start_from.get(k))} -> {_v(v)}" if k in node.start_from else f"{k}={_v(v)}"
                for k, v in node.set.items()
            )
        parts.append(what)
    if node.first_step is not None:
        parts.append(f"steps {node.first_step}-{node.last_reported}")
    else:
        parts.append("no steps yet")
    if node.metric is not None:
        parts.append(f"{node.metric} best {_v(node.best)} (step {node.best_step}), last {_v(node.last)} "
                     f"(step {node.last_step})")
    if node.value is not None:
        parts.append(f"value {_v(node.value)}")
    text = "  ".join(parts)
    if node.note:
        text += f"  note: {node.note}"
    return text


def _change_text(c: Change) -> str:
    values = ", ".join(f"{k} {_v(c.before.get(k))} -> {_v(v)}" for k, v in c.values.items())
    text = f"{c.when}: {values}"
    if c.sources:
        text += f" ({', '.join(c.sources)})"
    if c.notes:
        text += f" note: {'; '.join(c.notes)}"
    return text


def _pending_text(request: Mapping[str, Any], finished: bool) -> str:
    values = ", ".join(f"{k}={_v(v)}" for k, v in (request.get("params") or {}).items())
    extra = [str(request.get("source") or "")]
    at = request.get("at")
    if isinstance(at, str):
        try:
            extra.append("asked " + datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S"))
        except ValueError:
            pass
    when = "never applied: the trial ended first" if finished else "applies at the next step"
    text = f"{'not applied' if finished else 'pending'}: {values} ({', '.join(e for e in extra if e)}), {when}"
    if request.get("note"):
        text += f" note: {request['note']}"
    return text


def _v(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _step(step: float) -> str:
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return str(step)
    if float(step).is_integer():
        return str(int(step))
    return f"{step:.4g}"


def _epoch(epoch: float) -> str:
    return str(int(epoch)) if epoch.is_integer() else f"{epoch:.1f}"


__all__ = [
    "BranchNode",
    "Change",
    "changes_of",
    "format_tree",
    "monitored_metric",
    "objective_metric",
    "RunMetrics",
    "run_metrics",
    "rollback",
    "run_tree",
]
