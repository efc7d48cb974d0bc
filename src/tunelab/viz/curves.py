"""Learning curves: many trials' reported metric overlaid, and the recipe's learning-rate range test."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study
from tunelab.viz._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    OTHER_COLOR,
    PRUNED_COLOR,
    best_of,
    completed,
    empty_figure,
    hover,
    load_go,
    make_subplots,
    paused_gc,
    rank_key,
    read_trials,
    robust_range,
    scatter_class,
    strings,
    template_text,
    thin,
    title,
)
from tunelab.viz.html import escape

if TYPE_CHECKING:
    import plotly.graph_objects as go

PREFERRED_METRICS = ("val_loss", "val_acc", "loss")
MAX_POINTS_PER_CURVE = 500
PROBES = 20
"""How many trials' curves are read to learn which metrics the study reports (metric=None)."""


def reported_metrics(study: Study, trials: Sequence[FrozenTrial] | None = None) -> list[str]:
    """The metric names some trials reported, learned from the best trial and up to :data:`PROBES`
    finished trials spread over the study (one small read each), in order of first sight."""
    all_trials = read_trials(study, trials)
    finished = [t for t in all_trials if t.state.is_finished or t.state == TrialState.RUNNING]
    probes: list[FrozenTrial] = []
    best = best_of(completed(all_trials), study.direction)
    if best is not None:
        probes.append(best)
    if finished:
        picks = np.unique(np.linspace(0, len(finished) - 1, min(PROBES, len(finished))).round().astype(int))
        probes.extend(finished[int(i)] for i in picks)
    names: dict[str, None] = {}
    for t in probes:
        # By the trial's storage id: Study.get_curves(number) first looks the number up.
        for name in study.storage.get_curves(t.trial_id):
            names.setdefault(name, None)
        if any(m in names for m in PREFERRED_METRICS):
            break
    return list(names)


def _default_metric(study: Study, names: Sequence[str]) -> str | None:
    for m in PREFERRED_METRICS:
        if m in names:
            return m
    pruning = getattr(study.pruner, "metric", None)
    if isinstance(pruning, str) and pruning in names:
        return pruning
    return names[0] if names else None


def _choose(candidates: list[int], ranked: list[int], best: int | None, max_trials: int) -> list[int]:
    """At most ``max_trials`` of ``candidates``: the best trial, the best-ranked COMPLETE trials for half
    the budget, and the rest spread evenly over the others by number."""
    if len(candidates) <= max_trials:
        return candidates
    chosen: dict[int, None] = {}
    if best is not None:
        chosen[best] = None
    for n in ranked:
        if len(chosen) >= max(1, max_trials // 2):
            break
        chosen.setdefault(n, None)
    rest = [n for n in candidates if n not in chosen]
    room = max_trials - len(chosen)
    if room > 0 and rest:
        for i in np.unique(np.linspace(0, len(rest) - 1, min(room, len(rest))).round().astype(int)):
            chosen.setdefault(rest[int(i)], None)
    return sorted(chosen)


def _joined(curves: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curves concatenated into one trace's x, y and trial numbers, NaN between curves (gaps in the line)."""
    if not curves:
        return np.empty(0), np.empty(0), np.empty(0)
    xs, ys, ns = [], [], []
    gap = np.array([np.nan])
    for number, steps, values in curves:
        xs += [steps.astype(float), gap]
        ys += [values, gap]
        ns += [np.full(len(steps), float(number)), gap]
    return np.concatenate(xs)[:-1], np.concatenate(ys)[:-1], np.concatenate(ns)[:-1]


@paused_gc
def plot_curves(
    study: Study,
    metric: str | None = None,
    max_trials: int = 200,
    *,
    max_points: int = MAX_POINTS_PER_CURVE,
    trials: Sequence[FrozenTrial] | None = None,
) -> go.Figure:
    """Learning curves of many trials overlaid, read in one query (:meth:`Study.get_metric`).

    COMPLETE trials are thin blue lines, PRUNED ones dashed orange with an x where they were stopped,
    FAIL and RUNNING ones dotted grey, the study's best trial a thick red line. At most ``max_trials``
    curves are drawn (the best trial, the best-ranked COMPLETE trials for half of them, the rest spread
    evenly over the other trials; the subtitle says how many), each thinned to ``max_points`` points.
    Each state's curves form one trace (NaN gaps between curves), so the figure stays small; the end of
    each curve carries the trial's parameters in its hover text.

    ``metric``: default the first reported of val_loss, val_acc, loss, the pruner's metric, or any.
    Nothing reported: an empty figure; a ``metric`` no trial reported: ConfigError listing those that were.
    """
    go_ = load_go()
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"plot_curves(max_trials=...) must be an integer >= 1, got {max_trials!r}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise ConfigError(f"plot_curves(max_points=...) must be an integer >= 2, got {max_points!r}")
    all_trials = read_trials(study, trials)
    if metric is None:
        metric = _default_metric(study, reported_metrics(study, all_trials))
        if metric is None:
            return empty_figure(f"Learning curves: {study.name}", "No trial reported a learning curve "
                                "(trial.report(step, val_loss=...)).", x="step", y="metric")
    points = study.get_metric(metric)
    main = f"Learning curves: {metric} ({study.name})"
    if not points:
        names = reported_metrics(study, all_trials)
        raise ConfigError(f"plot_curves: no trial of study {study.name!r} reported metric {metric!r}; "
                          f"reported metrics: {', '.join(names) or 'none'}")
    numbers = np.fromiter((p.number for p in points), dtype=np.int64, count=len(points))
    steps = np.fromiter((p.step for p in points), dtype=np.int64, count=len(points))
    values = np.fromiter((p.value for p in points), dtype=float, count=len(points))
    starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
    ends = np.r_[starts[1:], len(points)]
    state_at = {int(numbers[s]): points[int(s)].state for s in starts}
    span = {int(numbers[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
    by_number = {t.number: t for t in all_trials}
    done = [t for t in completed(all_trials) if t.number in span]
    ranked = [t.number for t in sorted(done, key=rank_key(study.direction))]  # infeasible ones last
    best = best_of(completed(all_trials), study.direction)
    best_n = best.number if best is not None and best.number in span else None
    chosen = _choose(sorted(span), ranked, best_n, max_trials)

    groups: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {"complete": [], "pruned": [], "other": []}
    ends_by_group: dict[str, list[tuple[FrozenTrial | None, int, float, float]]] = {"complete": [], "pruned": [],
                                                                                   "other": []}
    best_curve: tuple[np.ndarray, np.ndarray] | None = None
    for n in chosen:
        s, e = span[n]
        keep = thin(e - s, max_points) + s
        cx, cy = steps[keep], values[keep]
        t = by_number.get(n)
        state = t.state if t is not None else state_at[n]
        group = "complete" if state == TrialState.COMPLETE else "pruned" if state == TrialState.PRUNED else "other"
        if n == best_n:
            best_curve = (cx, cy)
        else:
            groups[group].append((n, cx, cy))
        ends_by_group[group].append((t, n, float(steps[e - 1]), float(values[e - 1])))

    fig = go_.Figure()
    total_points = sum(len(c[1]) for g in groups.values() for c in g)
    scatter = scatter_class(go_, total_points)
    styles = {
        "complete": ("COMPLETE", {"color": COMPLETE_COLOR, "width": 1}, 0.45),
        "pruned": ("PRUNED", {"color": PRUNED_COLOR, "width": 1, "dash": "dash"}, 0.6),
        "other": ("FAIL / RUNNING", {"color": OTHER_COLOR, "width": 1, "dash": "dot"}, 0.6),
    }
    template = f"trial %{{customdata:.0f}}<br>step %{{x}}<br>{template_text(metric)}: %{{y:.4g}}<extra></extra>"
    for group, curves in groups.items():
        if not curves:
            continue
        name, line, opacity = styles[group]
        x, y, ns = _joined(curves)
        fig.add_trace(scatter(x=x, y=y, customdata=ns, mode="lines", name=f"{name} ({len(curves)})", line=line,
                              opacity=opacity, connectgaps=False, hovertemplate=template, legendgroup=group))
    for group, marks in ends_by_group.items():
        marks = [m for m in marks if m[1] != best_n]
        if not marks:
            continue
        pruned = group == "pruned"
        fig.add_trace(go_.Scatter(
            x=[m[2] for m in marks], y=[m[3] for m in marks], mode="markers",
            name="pruned here" if pruned else f"end of {styles[group][0]}", legendgroup=group, showlegend=pruned,
            marker={"symbol": "x" if pruned else "circle", "size": 7 if pruned else 4,
                    "color": styles[group][1]["color"], "opacity": 0.8},
            text=strings(_end_hover(t, n, step, v, metric, pruned) for t, n, step, v in marks), hoverinfo="text",
        ))
    if best_curve is not None and best is not None:
        fig.add_trace(go_.Scatter(
            x=best_curve[0], y=best_curve[1], mode="lines", name=f"best: trial {best.number}",
            line={"color": BEST_COLOR, "width": 3},
            text=[hover(best, best.value, f"step {s}: {metric} {v:.4g}") for s, v in zip(*best_curve, strict=True)]
            if len(best_curve[0]) <= 100 else None,
            hovertemplate=None if len(best_curve[0]) <= 100 else
            f"best trial {best.number}<br>step %{{x}}<br>{template_text(metric)}: %{{y:.4g}}<extra></extra>",
            hoverinfo="text" if len(best_curve[0]) <= 100 else None,
        ))
    counts = {g: len(v) for g, v in ends_by_group.items()}
    note = (f"{len(chosen)} of {len(span)} trials with a curve shown ({counts['complete']} complete, "
            f"{counts['pruned']} pruned, {counts['other']} failed/running)")
    if len(chosen) < len(span):
        note += f"; max_trials={max_trials}: the best and an even sample of the rest"
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      xaxis_title="step", yaxis_title=escape(metric), legend={"orientation": "h", "y": -0.15})
    shown = np.concatenate([values[span[n][0]:span[n][1]] for n in chosen])
    rng = robust_range(shown)
    if rng is not None:
        fig.update_yaxes(range=rng)
    return fig


def _end_hover(t: FrozenTrial | None, number: int, step: float, value: float, metric: str, pruned: bool) -> str:
    extra = f"{'pruned at' if pruned else 'last'} step {step:.0f}: {metric} {value:.4g}"
    if t is None:
        return f"trial {number}<br>{escape(extra)}"
    return hover(t, t.value, extra)


# -- the recipe's learning-rate range test ---------------------------------------------------------
def _lr_range_step(study: Study) -> Mapping[str, Any] | None:
    record = study.system_attrs.get("recipe")
    if not isinstance(record, Mapping):
        return None
    for step in record.get("steps") or []:
        if isinstance(step, Mapping) and step.get("step") == "lr_range":
            return step
    return None


@paused_gc
def plot_lr_range(study: Study) -> go.Figure | None:
    """The recipe's learning-rate range test: the loss against the step for each learning rate
    (diverged runs dashed; colour from low lr, dark, to high, bright), and beside it each run's last
    finite loss against the learning rate (log axis) with the kept range shaded.

    None when the study has no recipe record or the record has no range test; a range test that
    kept no range (verdict 'fail') is drawn with its message in the subtitle.
    """
    go_ = load_go()
    step = _lr_range_step(study)
    if step is None:
        return None
    evidence = step.get("evidence") or {}
    runs = [r for r in evidence.get("runs") or [] if isinstance(r, Mapping) and isinstance(r.get("lr"), (int, float))]
    kept = evidence.get("range")
    main = f"Learning-rate range test ({study.name})"
    verdict = str(step.get("verdict", ""))
    if isinstance(kept, (list, tuple)) and len(kept) == 2:
        note = f"kept lr range [{float(kept[0]):.3g}, {float(kept[1]):.3g}]"
    else:
        kept = None
        note = f"{verdict}: {step.get('message', 'no range kept')}"
    if not runs:
        return empty_figure(main, f"The range test recorded no run ({note}).", x="step", y="training loss")
    runs = sorted(runs, key=lambda r: float(r["lr"]))
    import plotly.colors as pc

    shades = pc.sample_colorscale("Viridis", [i / max(len(runs) - 1, 1) * 0.9 for i in range(len(runs))])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        subplot_titles=["loss during each run", "last loss by learning rate"])
    ends_x, ends_y, ends_text, ends_color = [], [], [], []
    all_losses: list[float] = []
    for run, colour in zip(runs, shades, strict=True):
        lr, status = float(run["lr"]), str(run.get("status", ""))
        curve = [p for p in run.get("curve") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
        xs = [p[0] for p in curve]
        ys = [float(p[1]) if isinstance(p[1], (int, float)) and math.isfinite(p[1]) else None for p in curve]
        all_losses += [v for v in ys if v is not None]
        inside = kept is not None and float(kept[0]) <= lr <= float(kept[1])
        fig.add_trace(go_.Scatter(
            x=xs, y=ys, mode="lines", name=f"lr {lr:.3g} ({escape(status)})", legendgroup=f"{lr}",
            line={"color": colour, "width": 2.5 if inside else 1.5,
                  "dash": "dash" if status == "diverged" else "solid"},
            hovertemplate=f"lr {lr:.3g} ({template_text(status)})<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>",
        ), row=1, col=1)
        finite = [v for v in ys if v is not None]
        if finite:
            ends_x.append(lr)
            ends_y.append(finite[-1])
            ends_text.append(f"lr {lr:.3g}: {escape(status)}<br>last finite loss {finite[-1]:.4g}"
                             + (" (in the kept range)" if inside else ""))
            ends_color.append(colour)
    # Diverged runs climb to huge losses: show up to a few times the largest starting loss.
    firsts = [v for v in (_first_finite(r) for r in runs) if v is not None]
    top = 3.0 * max(firsts) if firsts else None
    lowest = min(all_losses) if all_losses else 0.0
    y_range = None
    if top is not None and all_losses and max(all_losses) > top:
        y_range = [min(0.0, lowest), top]
    if kept is not None:
        band_lo = min(0.0, lowest)
        band_hi = y_range[1] if y_range is not None else max(all_losses, default=1.0) * 1.05
        lo_lr, hi_lr = float(kept[0]), float(kept[1])
        fig.add_trace(go_.Scatter(
            x=[lo_lr, hi_lr, hi_lr, lo_lr, lo_lr], y=[band_lo, band_lo, band_hi, band_hi, band_lo], fill="toself",
            mode="lines", line={"width": 0}, fillcolor="rgba(44,160,44,0.18)", name="kept range",
            hovertemplate=f"kept lr range [{lo_lr:.3g}, {hi_lr:.3g}]<extra></extra>",
        ), row=1, col=2)
    fig.add_trace(go_.Scatter(x=ends_x, y=ends_y, mode="lines+markers", name="last loss", showlegend=False,
                              line={"color": "#999", "width": 1}, marker={"color": ends_color, "size": 10},
                              text=ends_text, hoverinfo="text"), row=1, col=2)
    if y_range is not None:
        fig.update_yaxes(range=y_range, row=1, col=1)
        fig.update_yaxes(range=y_range, row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="training loss", row=1, col=1)
    fig.update_xaxes(title_text="learning rate (log)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="last finite loss", row=1, col=2)
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest")
    return fig


def _first_finite(run: Mapping[str, Any]) -> float | None:
    for p in run.get("curve") or []:
        if isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[1], (int, float)) and math.isfinite(p[1]):
            return float(p[1])
    return None
