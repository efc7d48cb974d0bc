"""Figures of a study's trials: optimisation history, slices, contour, parallel coordinates, importance.

Every function takes a :class:`~tunelab.study.Study` and returns a plotly ``go.Figure``. A study with
nothing to draw (no COMPLETE trial yet, no trial with both parameters, ...) gives a figure that says
so in its middle (``fig.layout.meta["empty"]`` is True), never an error: a report of a young study
still renders. Bad arguments (an unknown parameter, the same parameter twice) raise
:class:`~tunelab.errors.ConfigError`.

Each function also takes ``trials=``: the trials already read with ``study.trials``, so that a report
that draws several figures reads a large study once.

Colours: objective values use one scale (Viridis), reversed for 'minimize' studies so that the
best region is always bright yellow; the best trial is a red star.

Stored text (parameter names and categorical values, the study's name, stage tags) is escaped
(:func:`tunelab.viz.html.escape`) wherever it goes into a figure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.distributions import Float, Int
from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study
from tunelab.viz._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    VALUE_SCALE,
    ParamInfo,
    as_float,
    best_of,
    completed,
    empty_figure,
    full_hover,
    hover,
    label,
    load_go,
    log10_ticks,
    make_subplots,
    param_infos,
    paused_gc,
    rank_key,
    read_trials,
    scatter_class,
    select_params,
    stage_tag,
    strings,
    template_text,
    title,
    value_color_range,
)
from tunelab.viz.html import escape

if TYPE_CHECKING:
    import plotly.graph_objects as go

STAGE_COLORS = {"coarse": "#1f77b4", "refine": "#2ca02c", "final": "#9467bd"}
MAX_CONTOUR_BINS = 40
SLICE_COLUMNS = 3


def _counts_note(trials: Sequence[FrozenTrial], shown: int) -> str:
    counts = Counter(t.state for t in trials)
    hidden = [f"{counts[s]} {s.value.lower()}" for s in (TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                                          TrialState.WAITING) if counts[s]]
    note = f"{shown} complete trial{'s' if shown != 1 else ''}"
    return note + (f"; not shown (no final value): {', '.join(hidden)}" if hidden else "")


# -- history -------------------------------------------------------------------------------------
@paused_gc
def plot_history(study: Study, *, trials: Sequence[FrozenTrial] | None = None) -> go.Figure:
    """Optimisation history: each COMPLETE trial's value by trial number, the best-so-far line, the best
    trial as a red star. PRUNED, FAIL and unfinished trials have no value: they are left out and
    counted in the subtitle. Trials tagged with a recipe stage (``user_attrs["train"]["stage"]``) are
    coloured by stage. An empty figure (with a message) when no trial is COMPLETE.
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    done = completed(all_trials)
    main = f"Optimization history: {study.name} ({study.direction})"
    note = _counts_note(all_trials, len(done))
    if not done:
        return empty_figure(main, f"No COMPLETE trial yet ({note}).", x="trial number", y="objective value")
    numbers = np.array([t.number for t in done])
    values = np.array([t.value for t in done], dtype=float)
    scatter = scatter_class(go_, len(done))
    fig = go_.Figure()
    groups: dict[str | None, list[int]] = {}
    for i, t in enumerate(done):
        groups.setdefault(stage_tag(t), []).append(i)
    for tag, idx in groups.items():
        fig.add_trace(scatter(
            x=numbers[idx], y=values[idx], mode="markers",
            name="trial" if tag is None else f"stage: {escape(tag)}",
            marker={"color": STAGE_COLORS.get(tag or "", COMPLETE_COLOR), "size": 5 if len(done) > 2000 else 7,
                    "opacity": 0.6 if len(done) > 2000 else 0.85},
            text=strings(hover(done[i], done[i].value) for i in idx), hoverinfo="text",
        ))
    # The best so far counts feasible trials only (an infeasible trial is never the best): no line
    # before the first feasible trial.
    worst = math.inf if study.direction == "minimize" else -math.inf
    running = np.where([t.feasible for t in done], values, worst)
    running = np.minimum.accumulate(running) if study.direction == "minimize" else np.maximum.accumulate(running)
    running[np.isinf(running)] = np.nan
    fig.add_trace(scatter(x=numbers, y=running, mode="lines", name="best so far",
                          line={"color": BEST_COLOR, "width": 2, "shape": "hv"},
                          hovertemplate="best so far after trial %{x}: %{y:.6g}<extra></extra>"))
    best = best_of(done, study.direction)
    if best is not None:
        fig.add_trace(go_.Scatter(x=[best.number], y=[best.value], mode="markers", name=f"best: trial {best.number}",
                                  marker={"symbol": "star", "size": 16, "color": BEST_COLOR,
                                          "line": {"color": "black", "width": 1}},
                                  text=[hover(best, best.value)], hoverinfo="text"))
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      xaxis_title="trial number", yaxis_title="objective value", legend={"orientation": "h",
                                                                                         "y": -0.15})
    return fig


# -- slices --------------------------------------------------------------------------------------
def _numeric_values(t_values: list[Any]) -> np.ndarray:
    return np.array([float(v) for v in t_values], dtype=float)


@paused_gc
def plot_slice(
    study: Study, params: Sequence[str] | None = None, *, trials: Sequence[FrozenTrial] | None = None
) -> go.Figure:
    """Marginal slices: one subplot per parameter, each COMPLETE trial's value against the parameter.

    A log parameter gets a log x-axis, a categorical (or bool, or None among the choices) a category
    axis in declared order. Points are coloured by trial number (later trials darker), the best trial
    is a red star. A conditional parameter's subplot has only the trials that used it (the subplot
    title says how many). ``params``: which parameters and in what order (default: all, in order of
    first use); an unknown name is a ConfigError. Empty figure without a COMPLETE trial. Hover: the
    trial, its value and parameters (past 2,000 trials with several subplots, only the subplot's
    parameter: every point's full text in every subplot would add megabytes).
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    done = completed(all_trials)
    main = f"Slice plot: {study.name} ({study.direction})"
    note = _counts_note(all_trials, len(done))
    infos = param_infos(done)
    if not done:
        if params:
            select_params(param_infos(all_trials), params, "plot_slice")
        return empty_figure(main, f"No COMPLETE trial yet ({note}).", x="parameter", y="objective value")
    chosen = select_params(infos, params, "plot_slice")
    if not chosen:
        return empty_figure(main, "The COMPLETE trials have no parameters.", x="parameter", y="objective value")
    n = len(chosen)
    cols = min(n, SLICE_COLUMNS)
    rows = math.ceil(n / cols)
    subtitles = []
    for info in chosen:
        used = sum(1 for t in done if info.name in t.params)
        subtitles.append(escape(info.name) if used == len(done)
                         else f"{escape(info.name)} ({used} of {len(done)} trials)")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=subtitles, shared_yaxes=True,
                        horizontal_spacing=0.04 if cols > 1 else 0.1, vertical_spacing=0.18 / max(rows - 1, 1))
    best = best_of(done, study.direction)
    max_number = max(t.number for t in done)
    full = full_hover(len(done), len(chosen))
    texts = {t.number: hover(t, t.value) for t in done} if full else {}
    for k, info in enumerate(chosen):
        row, col = k // cols + 1, k % cols + 1
        sub = [t for t in done if info.name in t.params]
        raw = [t.params[info.name] for t in sub]
        x: Any = _numeric_values(raw) if info.numeric else strings(label(v) for v in raw)
        scatter = scatter_class(go_, len(sub))
        fig.add_trace(scatter(
            x=x, y=np.array([t.value for t in sub], dtype=float), mode="markers", name=escape(info.name),
            showlegend=False,
            marker={"color": np.array([t.number for t in sub]), "colorscale": "Blues", "cmin": 0,
                    "cmax": max(max_number, 1),
                    "showscale": k == 0, "size": 5 if len(sub) > 2000 else 7,
                    "colorbar": {"title": {"text": "trial"}, "thickness": 12},
                    "line": {"width": 0.5, "color": "#444"} if len(sub) <= 2000 else {"width": 0}},
            text=strings(texts[t.number] if full else hover(t, t.value, only=info.name) for t in sub),
            hoverinfo="text",
        ), row=row, col=col)
        if best is not None and info.name in best.params:
            bx = best.params[info.name]
            fig.add_trace(go_.Scatter(
                x=[as_float(bx) if info.numeric else label(bx)], y=[best.value], mode="markers",  # type: ignore[arg-type]
                name=f"best: trial {best.number}", showlegend=k == 0, legendgroup="best",
                marker={"symbol": "star", "size": 14, "color": BEST_COLOR, "line": {"color": "black", "width": 1}},
                text=[hover(best, best.value)], hoverinfo="text",
            ), row=row, col=col)
        _style_param_axis(fig, info, row, col)
        if col == 1:
            fig.update_yaxes(title_text="objective value", row=row, col=col)
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      height=max(420, 340 * rows), legend={"orientation": "h", "y": -0.12})
    return fig


def _style_param_axis(fig: go.Figure, info: ParamInfo, row: int, col: int) -> None:
    if info.numeric:
        fig.update_xaxes(title_text=info.axis_title(), type="log" if info.log else "linear", row=row, col=col)
    else:
        fig.update_xaxes(title_text=escape(info.name), type="category", categoryorder="array",
                         categoryarray=list(info.categories), row=row, col=col)


# -- contour -------------------------------------------------------------------------------------
def _bin_axis(info: ParamInfo, values: list[Any], n_bins: int) -> tuple[np.ndarray, list[Any]]:
    """Each value's bin index and the bins' centres (in the parameter's units, or labels)."""
    if not info.numeric:
        labels = [label(v) for v in values]
        present = set(labels)
        cats = [c for c in info.categories if c in present]
        pos = {c: i for i, c in enumerate(cats)}
        return np.array([pos[lab] for lab in labels], dtype=np.int64), cats
    v = np.array([float(x) for x in values], dtype=float)
    t = np.log10(v) if info.log else v
    lo, hi = float(t.min()), float(t.max())
    if hi <= lo:
        return np.zeros(len(v), dtype=np.int64), [float(v[0])]
    edges = np.linspace(lo, hi, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    centres = (edges[:-1] + edges[1:]) / 2
    return idx.astype(np.int64), [float(c) for c in (10 ** centres if info.log else centres)]


_PAD = 0.04
"""How far past the outermost trials a contour's grid and its numeric axes reach (a share of their span)."""


def _span(info: ParamInfo, values: list[Any]) -> tuple[float, float, float]:
    """The lowest and highest of ``values`` on the axis's scale (log10 for a log axis), and the margin to add."""
    t = np.array([float(v) for v in values], dtype=float)
    t = np.log10(t) if info.log else t
    lo, hi = float(t.min()), float(t.max())
    margin = _PAD * (hi - lo) if hi > lo else (0.05 if info.log else max(0.05 * abs(lo), 0.5))
    return lo, hi, margin


def _padded(info: ParamInfo, centres: list[Any], values: list[Any]) -> list[float]:
    """A contour's coordinates: the bins' centres, with one more just past each outer trial."""
    lo, hi, margin = _span(info, values)
    ends = [lo - margin, hi + margin]
    if info.log:
        ends = [10**e for e in ends]
    return [ends[0], *(float(c) for c in centres), ends[1]]


def _pad_rows(row: list[Any]) -> list[Any]:
    """``row`` with its first and last entries repeated at its ends (the grid's extension past the edges)."""
    return [row[0], *row, row[-1]]


def _axis_range(info: ParamInfo, values: list[Any]) -> list[float]:
    """A numeric axis's range (log10 units for a log axis, as plotly wants) holding every value with a margin."""
    lo, hi, margin = _span(info, values)
    return [lo - margin, hi + margin]


def _coords(info: ParamInfo, values: list[Any]) -> np.ndarray:
    return _numeric_values(values) if info.numeric else strings(label(v) for v in values)


@paused_gc
def default_contour_pair(trials: Sequence[FrozenTrial]) -> tuple[str, str] | None:
    """The pair of parameters a contour shows by default: ``("lr", "weight_decay")`` when COMPLETE trials
    have both (the learning-rate x regularisation landscape), else the two numeric parameters most
    COMPLETE trials have; None when there are fewer than two."""
    numeric: Counter[str] = Counter()
    for t in completed(trials):
        numeric.update(n for n, d in t.distributions.items() if isinstance(d, (Float, Int)))
    if "lr" in numeric and "weight_decay" in numeric:
        return "lr", "weight_decay"
    common = [n for n, _ in numeric.most_common(2)]
    return (common[0], common[1]) if len(common) == 2 else None


def plot_contour(study: Study, x: str, y: str, *, trials: Sequence[FrozenTrial] | None = None) -> go.Figure:
    """The objective over two parameters: the mean value of the COMPLETE trials in each cell of a grid
    (up to 40 x 40 bins, in log space for log parameters, one bin per category for categoricals), as a
    contour (two numeric parameters; empty cells interpolated) or a heat map (a categorical), with the
    trials as points on top and the best as a red star. Only trials that used both parameters count.
    The coloured area and the numeric axes reach a little past the outermost trials, so that every
    point, the best included, lies inside them (a contour's grid is extended past its outer bins'
    centres, repeating their values).

    ConfigError if ``x == y`` or a name is not a parameter of any trial. Fewer than 3 such trials:
    the points only (with a note); none: an empty figure.
    """
    go_ = load_go()
    if not isinstance(x, str) or not isinstance(y, str):
        raise ConfigError(f"plot_contour(x=..., y=...) must be parameter names, got {x!r} and {y!r}")
    if x == y:
        raise ConfigError(f"plot_contour needs two different parameters, got x = y = {x!r}")
    all_trials = read_trials(study, trials)
    done = completed(all_trials)
    main = f"Contour: {x} x {y} ({study.name}, {study.direction})"
    select_params(param_infos(all_trials), [x, y], "plot_contour")
    both = [t for t in done if x in t.params and y in t.params]
    if not both:
        return empty_figure(main, f"No COMPLETE trial has both {x!r} and {y!r}.", x=x, y=y)
    infos = param_infos(both)
    ix, iy = infos[x], infos[y]
    values = np.array([t.value for t in both], dtype=float)
    cmin, cmax = value_color_range(values, study.direction)
    reverse = study.direction == "minimize"
    fig = go_.Figure()
    note = f"{len(both)} COMPLETE trials with both parameters"
    if len(both) >= 3:
        n_bins = int(min(MAX_CONTOUR_BINS, max(4, round(math.sqrt(len(both) / 2)))))
        bx, cx = _bin_axis(ix, [t.params[x] for t in both], n_bins)
        by, cy = _bin_axis(iy, [t.params[y] for t in both], n_bins)
        flat = by * len(cx) + bx
        size = len(cx) * len(cy)
        sums = np.bincount(flat, weights=values, minlength=size)
        counts = np.bincount(flat, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(len(cy), len(cx))
        z = [[None if math.isnan(v) else float(v) for v in row] for row in mean]
        surface: dict[str, Any] = {
            "x": cx, "y": cy, "z": z, "colorscale": VALUE_SCALE, "reversescale": reverse, "zmin": cmin, "zmax": cmax,
            "colorbar": {"title": {"text": "mean value"}}, "name": "mean value",
            "hovertemplate": f"{template_text(x)}: %{{x}}<br>{template_text(y)}: %{{y}}<br>"
                             "mean value: %{z:.4g}<extra></extra>",
        }
        if ix.numeric and iy.numeric and len(cx) > 1 and len(cy) > 1:
            # A contour covers only the span of its grid's coordinates: from the bins' centres alone, the
            # trials in the outer half-bins (the best among them, often) would lie outside it. The grid is
            # extended to the outer edges and a little past them, repeating the outer bins' values.
            surface["x"] = _padded(ix, cx, [t.params[x] for t in both])
            surface["y"] = _padded(iy, cy, [t.params[y] for t in both])
            surface["z"] = _pad_rows([_pad_rows(row) for row in z])
            fig.add_trace(go_.Contour(**surface, connectgaps=True, contours={"coloring": "heatmap"},
                                      line={"width": 0.5}))
        else:
            fig.add_trace(go_.Heatmap(**surface, xgap=1, ygap=1))
        note += f"; cells: mean value in {len(cx)} x {len(cy)} bins"
    else:
        note += "; too few to interpolate (3 needed)"

    def coord(info: ParamInfo, v: Any) -> Any:
        return as_float(v) if info.numeric else label(v)

    scatter = scatter_class(go_, len(both))
    fig.add_trace(scatter(
        x=_coords(ix, [t.params[x] for t in both]), y=_coords(iy, [t.params[y] for t in both]), mode="markers",
        name="trial", marker={"size": 4 if len(both) > 2000 else 6, "color": "rgba(0,0,0,0.45)",
                              "line": {"width": 0.5, "color": "white"}},
        text=strings(hover(t, t.value) for t in both), hoverinfo="text",
    ))
    best = best_of(both, study.direction)
    if best is not None:
        fig.add_trace(go_.Scatter(
            x=[coord(ix, best.params[x])], y=[coord(iy, best.params[y])], mode="markers",
            name=f"best: trial {best.number}",
            marker={"symbol": "star", "size": 16, "color": BEST_COLOR, "line": {"color": "black", "width": 1}},
            text=[hover(best, best.value)], hoverinfo="text",
        ))
    for axis, info, name in (("x", ix, x), ("y", iy, y)):
        spec: dict[str, Any] = {"title": {"text": info.axis_title()}}
        if info.numeric:
            spec["type"] = "log" if info.log else "linear"
            spec["range"] = _axis_range(info, [t.params[name] for t in both])  # every point, the best too
        else:
            spec.update(type="category", categoryorder="array", categoryarray=list(info.categories))
        fig.update_layout({f"{axis}axis": spec})
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      legend={"orientation": "h", "y": -0.15})
    return fig


# -- parallel coordinates --------------------------------------------------------------------------
def _dimension(info: ParamInfo, trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """One parallel-coordinates axis. Log parameters are drawn in log10 units with their real values
    as tick labels; categories as positions 0..k-1; trials without the parameter at an extra 'n/a'
    tick below the range."""
    present = [info.name in t.params for t in trials]
    missing = not all(present)
    if not info.numeric:
        pos = {c: float(i) for i, c in enumerate(info.categories)}
        vals = [pos[label(t.params[info.name])] if p else -1.0 for t, p in zip(trials, present, strict=True)]
        tickvals = ([-1.0] if missing else []) + list(pos.values())
        ticktext = (["n/a"] if missing else []) + list(info.categories)
        return {"label": escape(info.name), "values": vals, "tickvals": tickvals, "ticktext": ticktext,
                "range": [min(tickvals) - 0.2, max(tickvals) + 0.2] if tickvals else None}
    raw = np.array([as_float(t.params[info.name]) if p else np.nan for t, p in zip(trials, present, strict=True)])
    data = np.log10(raw) if info.log else raw
    seen = data[~np.isnan(data)]
    lo = float(seen.min()) if seen.size else 0.0
    hi = float(seen.max()) if seen.size else 1.0
    if info.low is not None and info.high is not None:
        dlo, dhi = (math.log10(info.low), math.log10(info.high)) if info.log else (info.low, info.high)
        lo, hi = min(lo, dlo), max(hi, dhi)
    span = hi - lo or 1.0
    if info.log:
        tickvals, ticktext = log10_ticks(lo, hi)
    else:
        tickvals = [float(v) for v in np.linspace(lo, hi, 5)]
        ticktext = [f"{v:.3g}" for v in tickvals]
    dim: dict[str, Any] = {"label": info.axis_title(), "range": [lo, hi]}
    if missing:
        na = lo - 0.12 * span
        data = np.where(np.isnan(data), na, data)
        tickvals, ticktext = [na, *tickvals], ["n/a", *ticktext]
        dim["range"] = [na, hi]
    if info.log or missing:
        dim.update(tickvals=tickvals, ticktext=ticktext)
    dim["values"] = data
    return dim


@paused_gc
def plot_parallel_coordinates(
    study: Study, params: Sequence[str] | None = None, *, trials: Sequence[FrozenTrial] | None = None
) -> go.Figure:
    """Parallel coordinates of the COMPLETE trials: a 'trial' axis (the trial number: plotly's
    parallel coordinates have no per-line hover, so brush this axis to find a trial), one axis per
    parameter, and the objective value last; lines coloured by value (bright = good), the best drawn
    on top. With infeasible trials (constraints), a 'feasible' axis comes before the value, the colour
    scale spans the feasible values only, and infeasible lines take its worst colour.

    Log parameters are drawn in log10 units labelled with their values, categoricals as their
    choices; a trial that did not use a (conditional) parameter sits at its 'n/a' tick. Empty figure
    without a COMPLETE trial; ConfigError for an unknown parameter.
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    done = completed(all_trials)
    main = f"Parallel coordinates: {study.name} ({study.direction})"
    note = _counts_note(all_trials, len(done))
    if not done:
        if params:
            select_params(param_infos(all_trials), params, "plot_parallel_coordinates")
        return empty_figure(main, f"No COMPLETE trial yet ({note}).")
    chosen = select_params(param_infos(done), params, "plot_parallel_coordinates")
    done.sort(key=rank_key(study.direction), reverse=True)  # the best (feasible) drawn last, on top
    values = np.array([t.value for t in done], dtype=float)
    numbers = [t.number for t in done]
    dims: list[dict[str, Any]] = [{"label": "trial", "values": numbers,
                                   "range": [min(numbers), max(max(numbers), min(numbers) + 1)]}]
    dims.extend(_dimension(info, done) for info in chosen)
    dims.append({"label": "objective value", "values": values})
    feasible = np.array([t.feasible for t in done], dtype=bool)
    colors = values
    cmin, cmax = value_color_range(values[feasible] if feasible.any() else values, study.direction)
    if not feasible.all():  # an axis to brush them apart; infeasible lines take the worst colour, not the best
        dims.insert(len(dims) - 1, {"label": "feasible", "values": feasible.astype(int), "tickvals": [0, 1],
                                    "ticktext": ["no", "yes"], "range": [0, 1]})
        colors = np.where(feasible, values, cmax if study.direction == "minimize" else cmin)
    fig = go_.Figure(go_.Parcoords(
        dimensions=dims,
        line={"color": colors, "colorscale": VALUE_SCALE, "reversescale": study.direction == "minimize",
              "cmin": cmin, "cmax": cmax, "showscale": True, "colorbar": {"title": {"text": "value"}}},
    ))
    fig.update_layout(title=title(main, note), template="plotly_white", margin={"l": 70, "r": 40, "t": 140})
    return fig


# -- importance ------------------------------------------------------------------------------------
def plot_importance(shares: Mapping[str, float], *, title_text: str = "Parameter importance") -> go.Figure:
    """Horizontal bars of each parameter's importance (e.g. its share of the explained variance),
    largest on top, labelled with the share. An empty mapping gives an empty figure; a value that is
    not a finite number is a ConfigError.
    """
    go_ = load_go()
    if not isinstance(shares, Mapping):
        raise ConfigError(f"plot_importance needs a mapping parameter -> share, got {type(shares).__name__}")
    clean: dict[str, float] = {}
    for name, share in shares.items():
        if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) or not math.isfinite(share):
            raise ConfigError(f"plot_importance: the share of {name!r} must be a finite number, got {share!r}")
        clean[str(name)] = float(share)
    if not clean:
        return empty_figure(title_text, "No importance to show (no parameter was scored).",
                            x="importance", y="parameter")
    ordered = sorted(clean.items(), key=lambda kv: kv[1])  # plotly draws the first bar at the bottom
    total = sum(v for _, v in ordered)
    as_share = all(v >= 0 for _, v in ordered) and 0.98 <= total <= 1.02
    text = [f"{v:.0%}" if as_share else f"{v:.3g}" for _, v in ordered]
    fig = go_.Figure(go_.Bar(
        x=[v for _, v in ordered], y=[escape(k) for k, _ in ordered], orientation="h", text=text,
        textposition="auto",
        marker={"color": COMPLETE_COLOR}, hovertemplate="%{y}: %{x:.4g}<extra></extra>", name="importance",
    ))
    fig.update_layout(title=title(title_text), template="plotly_white",
                      xaxis_title="importance (share of explained variance)" if as_share else "importance",
                      yaxis_title="parameter", height=max(300, 60 + 36 * len(ordered)))
    if as_share:
        fig.update_xaxes(tickformat=".0%")
    return fig
