"""The results of a study with several objectives: its Pareto front, the hypervolume over time, and
the trade-off table of the front.

A study created with ``directions=[...]`` has no single best trial: its results are the *Pareto
front*, the feasible COMPLETE trials that no other such trial beats in every objective
(``study.best_trials``). :func:`plot_pareto_front` draws every trial in the objectives' space with the
front highlighted; :func:`plot_hypervolume_history` shows how the front grew, trial after trial, as
the volume it dominates up to a reference point; :func:`pareto_tradeoff_table` lists the front's
trials, sorted by the first objective (what the HTML report shows).

A single-objective study is a ConfigError (plot_history shows its progress); a study without a
COMPLETE trial gives an empty figure that says so, as the other figures do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.errors import ConfigError
from tunelab.multiobjective import hypervolume, hypervolume_improvement, losses, pareto_mask, unit_scales
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study
from tunelab.viz._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    OTHER_COLOR,
    empty_figure,
    fmt,
    load_go,
    paused_gc,
    read_trials,
    scatter_class,
    strings,
    title,
)
from tunelab.viz.html import escape

if TYPE_CHECKING:
    import plotly.graph_objects as go

REFERENCE_MARGIN = 0.1
"""The default reference point lies this share of the feasible values' span past the worst of them."""

__all__ = ["default_reference", "pareto_tradeoff_table", "plot_hypervolume_history", "plot_pareto_front"]


# -- reading the study -------------------------------------------------------------------------------
def _check_multi(study: Study, owner: str) -> None:
    if not study.is_multi_objective:
        raise ConfigError(
            f"{owner} needs a study with several objectives (create_study(directions=[...])); study "
            f"{study.name!r} has one ({study.direction}): use plot_history for it"
        )


def _scored(trials: Sequence[FrozenTrial], n_objectives: int) -> list[FrozenTrial]:
    """COMPLETE trials with every objective's value finite, by number."""
    out = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
           and len(t.values) == n_objectives and all(math.isfinite(v) for v in t.values)]
    return sorted(out, key=lambda t: t.number)


def _pick_objectives(study: Study, objectives: Sequence[str] | None) -> list[int]:
    """The indices of the objectives to draw: two or three, by name (all when the study has 2 or 3)."""
    names = list(study.objective_names)
    if objectives is None:
        if len(names) > 3:
            raise ConfigError(
                f"plot_pareto_front draws 2 or 3 objectives and study {study.name!r} has {len(names)}: pass "
                f"objectives=[...] with two or three of {names}"
            )
        return list(range(len(names)))
    if isinstance(objectives, str) or not isinstance(objectives, Sequence):
        raise ConfigError(f"plot_pareto_front(objectives=...) must be a list of 2 or 3 objective names, got "
                          f"{objectives!r}")
    chosen = list(objectives)
    unknown = [o for o in chosen if o not in names]
    if unknown:
        raise ConfigError(f"plot_pareto_front: unknown objective(s) {unknown}; study {study.name!r} has {names}")
    if len(set(chosen)) != len(chosen) or len(chosen) not in (2, 3):
        raise ConfigError(f"plot_pareto_front(objectives=...) needs 2 or 3 different objective names of {names}, "
                          f"got {chosen}")
    return [names.index(o) for o in chosen]


def _vals(t: FrozenTrial) -> tuple[float, ...]:
    """A scored trial's values (every objective's)."""
    return t.values or ()


def _axis_title(name: str, direction: str) -> str:
    return f"{escape(name)} ({'max' if direction == 'maximize' else 'min'})"


def _hover(t: FrozenTrial, names: Sequence[str], role: str) -> str:
    """The trial, its role (front, dominated, infeasible), every objective, its constraints, its parameters."""
    lines = [f"trial {t.number} ({escape(role)})"]
    lines += [f"{escape(n)}: {v:.6g}" for n, v in zip(names, t.values or (), strict=False)]
    for c in t.constraints.values():
        bounds = " ".join(part for part in (
            "" if c.lower is None else f">= {c.lower:.4g}", "" if c.upper is None else f"<= {c.upper:.4g}") if part)
        lines.append(f"{escape(c.name)}: {c.value:.4g} ({bounds})")
    if not t.feasible:
        lines.append(f"violation: {t.violation:.4g}")
    lines += [f"{escape(k)}: {escape(fmt(v))}" for k, v in t.params.items()]
    return "<br>".join(lines)


def _front_split(feasible: Sequence[FrozenTrial], idx: Sequence[int],
                 directions: Sequence[str]) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The feasible trials on the front of the objectives ``idx``, and the dominated ones."""
    if not feasible:
        return [], []
    points = losses([[t.values[i] for i in idx] for t in feasible],  # type: ignore[index]
                    [directions[i] for i in idx])
    mask = pareto_mask(points)
    return ([t for t, m in zip(feasible, mask, strict=True) if m],
            [t for t, m in zip(feasible, mask, strict=True) if not m])


# -- the front ---------------------------------------------------------------------------------------
@paused_gc
def plot_pareto_front(
    study: Study, *, objectives: Sequence[str] | None = None, include_dominated: bool = True,
    trials: Sequence[FrozenTrial] | None = None,
) -> go.Figure:
    """Every COMPLETE trial in the space of the objectives, with the Pareto front highlighted.

    Two objectives: a 2-D scatter with the front joined by a step line (the edge of the region it
    dominates); three: a 3-D scatter (the front as a translucent surface once it has 3 trials).
    Feasible trials the front dominates are dimmer; infeasible ones (``trial.set_constraint``) are grey
    crosses whose hover gives their violation. Each point's hover: the trial number, every objective,
    its constraints and parameters. Axes are titled with the objectives' names and "(max)"/"(min)".

    Args:
        study: a study with several objectives (ConfigError otherwise).
        objectives: the 2 or 3 objectives to draw, by name (default: all of them; required when the
            study has more than 3). The front drawn is the front in these objectives.
        include_dominated: False draws the front only (no dominated or infeasible trial).
        trials: the trials already read with ``study.trials`` (one read shared by several figures).

    Returns:
        a plotly figure; ``fig.layout.meta`` holds the front's trial numbers (``"front"``). An empty
        figure (with a message) when no trial is COMPLETE yet.
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    _check_multi(study, "plot_pareto_front")
    idx = _pick_objectives(study, objectives)
    names = [study.objective_names[i] for i in idx]
    directions = [study.directions[i] for i in idx]
    main = f"Pareto front: {study.name} ({' vs '.join(names)})"
    scored = _scored(all_trials, len(study.directions))
    if not scored:
        return empty_figure(main, f"No COMPLETE trial yet ({len(all_trials)} trials).",
                            x=_axis_title(names[0], directions[0]), y=_axis_title(names[1], directions[1]))
    feasible = [t for t in scored if t.feasible]
    infeasible = [t for t in scored if not t.feasible]
    front, dominated = _front_split(feasible, idx, study.directions)
    note = (f"{len(front)} trial{'s' if len(front) != 1 else ''} on the front, {len(dominated)} dominated, "
            f"{len(infeasible)} infeasible")
    if len(idx) < len(study.directions):
        note += f"; the front of these {len(idx)} of {len(study.directions)} objectives"
    if not feasible:
        note += "; no feasible trial: no front yet"
    all_names = list(study.objective_names)
    groups: list[tuple[str, list[FrozenTrial], dict[str, Any]]] = []
    if include_dominated:
        groups.append(("dominated", dominated, {"color": COMPLETE_COLOR, "opacity": 0.35, "symbol": "circle"}))
        groups.append(("infeasible", infeasible, {"color": OTHER_COLOR, "opacity": 0.7, "symbol": "x"}))
    groups.append(("Pareto front", front, {"color": BEST_COLOR, "opacity": 1.0, "symbol": "circle",
                                           "line": {"color": "black", "width": 1}}))
    fig = go_.Figure()
    three = len(idx) == 3
    for role, group, style in groups:
        if not group:
            continue
        coords = [np.array([_vals(t)[i] for t in group], dtype=float) for i in idx]
        text = strings(_hover(t, all_names, role if role != "Pareto front" else "on the front") for t in group)
        size = 9 if role == "Pareto front" else 6
        if three:
            symbol = {"x": "x", "circle": "circle"}[style["symbol"]]
            fig.add_trace({"type": "scatter3d", "x": coords[0], "y": coords[1], "z": coords[2], "mode": "markers",
                           "name": role, "text": text, "hoverinfo": "text",
                           "marker": {"color": style["color"], "opacity": style["opacity"], "size": size - 3,
                                      "symbol": symbol}})
        else:
            scatter = scatter_class(go_, len(group))
            fig.add_trace(scatter(x=coords[0], y=coords[1], mode="markers", name=role, text=text, hoverinfo="text",
                                  marker={**style, "size": size}))
    if front and not three:
        xs, ys = _staircase(front, idx, study.directions)
        fig.add_trace({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": "front (step line)",
                       "line": {"color": BEST_COLOR, "width": 2}, "hoverinfo": "skip"})
    if three and len(front) >= 3:
        surface = [[float(_vals(t)[i]) for t in front] for i in idx]
        fig.add_trace({"type": "mesh3d", "x": surface[0], "y": surface[1], "z": surface[2], "opacity": 0.25,
                       "color": BEST_COLOR, "name": "front (surface)", "hoverinfo": "skip", "showlegend": True})
    layout: dict[str, Any] = {"title": title(main, note), "template": "plotly_white", "hovermode": "closest",
                              "legend": {"orientation": "h", "y": -0.15}}
    if three:
        layout["scene"] = {"xaxis": {"title": {"text": _axis_title(names[0], directions[0])}},
                           "yaxis": {"title": {"text": _axis_title(names[1], directions[1])}},
                           "zaxis": {"title": {"text": _axis_title(names[2], directions[2])}}}
        layout["height"] = 640
    else:
        layout["xaxis"] = {"title": {"text": _axis_title(names[0], directions[0])}}
        layout["yaxis"] = {"title": {"text": _axis_title(names[1], directions[1])}}
    fig.update_layout(**layout)
    fig.layout.meta = {"front": [t.number for t in front], "objectives": names}
    return fig


def _staircase(front: Sequence[FrozenTrial], idx: Sequence[int],
               directions: Sequence[str]) -> tuple[list[float], list[float]]:
    """The edge of the region the 2-D ``front`` dominates: its points joined by horizontal and vertical
    steps (worked out on losses, so a maximised axis steps the right way)."""
    sign = np.array([-1.0 if directions[i] == "maximize" else 1.0 for i in idx])
    pts = np.array([[_vals(t)[i] for i in idx] for t in front], dtype=float) * sign
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    out: list[list[float]] = [list(pts[0])]
    for k in range(1, len(pts)):
        out.append([float(pts[k, 0]), float(pts[k - 1, 1])])  # the corner: the next x, the previous y
        out.append(list(pts[k]))
    xs = [float(p[0] * sign[0]) for p in out]
    ys = [float(p[1] * sign[1]) for p in out]
    return xs, ys


# -- hypervolume -------------------------------------------------------------------------------------
def default_reference(study: Study, *, trials: Sequence[FrozenTrial] | None = None) -> list[float] | None:
    """The reference point :func:`plot_hypervolume_history` uses by default, in objective values: the
    worst feasible value of each objective, moved :data:`REFERENCE_MARGIN` (10%) of the values' span
    further (10% of the value itself, or 0.1, when every trial has the same). None without a feasible
    COMPLETE trial."""
    all_trials = read_trials(study, trials)
    feasible = [t for t in _scored(all_trials, len(study.directions)) if t.feasible]
    if not feasible:
        return None
    loss = losses([t.values for t in feasible], study.directions)  # type: ignore[misc]
    scales = unit_scales(loss)  # exact: the span of losses near the float maximum without overflow
    worst, best = loss.max(axis=0) / scales, loss.min(axis=0) / scales
    span = worst - best
    margin = np.where(span > 0, REFERENCE_MARGIN * span, np.maximum(REFERENCE_MARGIN * np.abs(worst), 0.1 / scales))
    # Past the float maximum the reference stays at it (finite: the volume is still defined).
    with np.errstate(over="ignore"):
        reference = np.minimum((worst + margin) * scales, np.finfo(float).max)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in study.directions])
    return [float(v) for v in reference * sign]


def _check_reference(study: Study, reference: Sequence[float]) -> list[float]:
    names = list(study.objective_names)
    if isinstance(reference, (str, bytes)) or not isinstance(reference, (Sequence, np.ndarray)):
        raise ConfigError(f"plot_hypervolume_history(reference=...) must be one value per objective {names}, got "
                          f"{reference!r}")
    ref = list(reference)
    if len(ref) != len(names) or not all(
            isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)
            for v in ref):
        raise ConfigError(f"plot_hypervolume_history(reference=...) must be {len(names)} finite numbers, one per "
                          f"objective {names} (a value worse than every trial's), got {reference!r}")
    return [float(v) for v in ref]


def hypervolume_history(
    study: Study, reference: Sequence[float], *, trials: Sequence[FrozenTrial] | None = None
) -> tuple[list[int], list[float]]:
    """The hypervolume of the feasible front after each finished trial (by number), up to ``reference``
    (in objective values): the trial numbers and the volumes."""
    all_trials = read_trials(study, trials)
    ref = losses([list(reference)], study.directions)[0]
    feasible = {t.number for t in _scored(all_trials, len(study.directions)) if t.feasible}
    finished = sorted((t for t in all_trials if t.state.is_finished), key=lambda t: t.number)
    numbers: list[int] = []
    volumes: list[float] = []
    front = np.empty((0, len(study.directions)))
    volume = 0.0
    for t in finished:
        if t.number in feasible:
            point = losses([t.values], study.directions)  # type: ignore[list-item]
            if not np.any(np.all(front <= point, axis=1)):  # not weakly dominated: the front changes
                # What it adds, and the rows it dominates drop out: no hypervolume nor Pareto filter of the whole
                # front per trial (300 trials on a 3-objective sphere: 2.2 s before, now ms).
                volume += hypervolume_improvement(point[0], front, ref)
                front = np.vstack([front[~np.all(point <= front, axis=1)], point])
        numbers.append(t.number)
        volumes.append(volume)
    return numbers, volumes


def front_hypervolume(
    study: Study, reference: Sequence[float], *, trials: Sequence[FrozenTrial] | None = None
) -> float:
    """The hypervolume of the feasible front of every finished trial, up to ``reference`` (in objective
    values): the last value of :func:`hypervolume_history`, computed once rather than after each trial."""
    all_trials = read_trials(study, trials)
    feasible = [t for t in _scored(all_trials, len(study.directions)) if t.feasible]
    if not feasible:
        return 0.0
    ref = losses([list(reference)], study.directions)[0]
    return hypervolume(losses([t.values for t in feasible], study.directions), ref)  # type: ignore[misc]


@paused_gc
def plot_hypervolume_history(
    study: Study, *, reference: Sequence[float] | None = None, trials: Sequence[FrozenTrial] | None = None
) -> go.Figure:
    """The hypervolume of the feasible Pareto front after each finished trial, by trial number.

    The hypervolume is the volume of the objectives' space that the front dominates, bounded by a
    reference point: it grows whenever a trial extends the front. The subtitle gives the reference.

    Args:
        study: a study with several objectives (ConfigError otherwise).
        reference: one value per objective, worse than the trials' (points that do not beat it in every
            objective add nothing). Default: :func:`default_reference`, the worst feasible values seen
            with a 10% margin (so the volume's scale moves as worse trials arrive: give a fixed point to
            compare studies).
        trials: the trials already read with ``study.trials``.

    Returns:
        a plotly figure; ``fig.layout.meta`` holds the reference and the final hypervolume. An empty
        figure (with a message) before the first feasible COMPLETE trial.
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    _check_multi(study, "plot_hypervolume_history")
    main = f"Hypervolume of the Pareto front: {study.name}"
    if reference is None:
        ref = default_reference(study, trials=all_trials)
        origin = "the worst feasible values seen, 10% past"
    else:
        ref = _check_reference(study, reference)
        origin = "given"
    if ref is None:
        return empty_figure(main, "No feasible COMPLETE trial yet: no front.", x="trial number", y="hypervolume")
    numbers, volumes = hypervolume_history(study, ref, trials=all_trials)
    point = ", ".join(f"{n}={v:.4g}" for n, v in zip(study.objective_names, ref, strict=True))
    note = f"reference point ({origin}): {point}"
    grew = [k for k in range(len(volumes)) if volumes[k] > (volumes[k - 1] if k else 0.0)]
    fig = go_.Figure()
    fig.add_trace({"type": "scatter", "x": numbers, "y": volumes, "mode": "lines", "name": "hypervolume",
                   "line": {"color": COMPLETE_COLOR, "width": 2, "shape": "hv"},
                   "hovertemplate": "after trial %{x}: %{y:.6g}<extra></extra>"})
    fig.add_trace({"type": "scatter", "x": [numbers[k] for k in grew], "y": [volumes[k] for k in grew],
                   "mode": "markers", "name": "front extended", "marker": {"color": BEST_COLOR, "size": 7},
                   "hovertemplate": "trial %{x} extended the front: %{y:.6g}<extra></extra>"})
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      xaxis_title="trial number", yaxis_title="hypervolume", legend={"orientation": "h", "y": -0.15})
    fig.layout.meta = {"reference": ref, "reference_origin": origin, "hypervolume": volumes[-1] if volumes else 0.0}
    return fig


# -- the trade-off table -----------------------------------------------------------------------------
def pareto_tradeoff_table(study: Study, *, trials: Sequence[FrozenTrial] | None = None) -> list[dict[str, Any]]:
    """The Pareto front's trials as rows, sorted by the first objective (best first).

    Each row: ``{"number", "values": {objective: value}, "constraints": {name: measured value},
    "params": {name: value}}`` (``pandas.DataFrame(rows)`` or :func:`pandas.json_normalize` make it a
    table). The front is ``study.best_trials``'s: the feasible COMPLETE trials none dominates. An empty
    list before the first feasible COMPLETE trial; ConfigError for a single-objective study.
    """
    all_trials = read_trials(study, trials)
    _check_multi(study, "pareto_tradeoff_table")
    feasible = [t for t in _scored(all_trials, len(study.directions)) if t.feasible]
    front, _ = _front_split(feasible, range(len(study.directions)), study.directions)
    first = -1.0 if study.directions[0] == "maximize" else 1.0
    front.sort(key=lambda t: (first * t.values[0], t.number))  # type: ignore[index]
    return [{"number": t.number,
             "values": dict(zip(study.objective_names, (float(v) for v in t.values or ()), strict=True)),
             "constraints": {name: c.value for name, c in t.constraints.items()},
             "params": dict(t.params)} for t in front]
