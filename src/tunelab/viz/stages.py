"""Coarse-to-fine stages: each stage's recorded ranges and the values its trials tried."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.records import FrozenTrial
from tunelab.study import Study
from tunelab.viz._common import (
    BEST_COLOR,
    OTHER_COLOR,
    VALUE_SCALE,
    as_float,
    best_of,
    completed,
    empty_figure,
    full_hover,
    hover,
    load_go,
    make_subplots,
    param_infos,
    paused_gc,
    read_trials,
    scatter_class,
    strings,
    title,
    value_color_range,
)
from tunelab.viz.html import escape

if TYPE_CHECKING:
    import plotly.graph_objects as go

RECORD_KEY = "coarse_to_fine"  # tunelab.samplers.coarse_to_fine.RECORD_KEY
BAND_OFFSET = -0.3
"""Where a stage's range bar stands, left of the stage's tick; its trials are spread to the right of it."""
POINTS = (-0.16, 0.36)


def _stage_of(t: FrozenTrial) -> tuple[int, Mapping[str, Any]] | None:
    record = t.system_attrs.get(RECORD_KEY)
    if not isinstance(record, Mapping):
        return None
    stage = record.get("stage")
    if isinstance(stage, bool) or not isinstance(stage, int):
        return None
    ranges = record.get("ranges")
    return stage, ranges if isinstance(ranges, Mapping) else {}


@paused_gc
def plot_stages(study: Study, *, trials: Sequence[FrozenTrial] | None = None) -> go.Figure | None:
    """Coarse-to-fine search, one row per numeric parameter (log axis for log ones): x is the stage,
    a bar left of each stage's tick its range (recorded by its first trial; stage 0 and stages without
    a recorded range: the full range of the parameter's distribution), and the trials' values as points
    to its right (spread sideways), COMPLETE ones coloured by value (bright = good), others grey, the
    best a red star. Hover: the trial, its stage, value and parameters (past 2,000 trials only the
    row's parameter, to keep the figure small).

    None when no trial carries a ``system_attrs["coarse_to_fine"]`` record (another sampler). A study
    with records but no numeric parameter gives an empty figure.
    """
    go_ = load_go()
    all_trials = read_trials(study, trials)
    staged: list[tuple[FrozenTrial, int]] = []
    ranges: dict[int, Mapping[str, Any]] = {}
    for t in all_trials:
        found = _stage_of(t)
        if found is None:
            continue
        stage, rec = found
        staged.append((t, stage))
        if rec and stage not in ranges:
            ranges[stage] = rec  # the lowest-numbered trial's record wins, as in the sampler
    if not staged:
        return None
    main = f"Coarse-to-fine stages: {study.name} ({study.direction})"
    infos = [i for i in param_infos([t for t, _ in staged]).values() if i.numeric]
    n_stages = max(s for _, s in staged) + 1
    per_stage = np.bincount([s for _, s in staged], minlength=n_stages)
    note = f"{len(staged)} trials in {n_stages} stage{'s' if n_stages != 1 else ''} (" + ", ".join(
        f"stage {s}: {int(c)}" for s, c in enumerate(per_stage)) + ")"
    if not infos:
        return empty_figure(main, f"No numeric parameter to draw ({note}).", x="stage", y="parameter")
    fig = make_subplots(rows=len(infos), cols=1, shared_xaxes=True, vertical_spacing=0.06 if len(infos) > 1 else 0.1,
                        subplot_titles=[i.axis_title() for i in infos])
    done_numbers = {t.number for t in completed(t for t, _ in staged)}
    done_values = np.array([t.value for t, _ in staged if t.number in done_numbers], dtype=float)
    cmin, cmax = value_color_range(done_values, study.direction) if done_values.size else (0.0, 1.0)
    best = best_of(completed(t for t, _ in staged), study.direction)
    rng = np.random.default_rng(0)
    full = full_hover(len(staged), len(infos))
    texts = {t.number: hover(t, t.value, f"stage {s}") for t, s in staged} if full else {}
    for row, info in enumerate(infos, start=1):
        # Each stage's range as a thick translucent vertical segment: one trace, None between stages.
        bx: list[Any] = []
        by: list[Any] = []
        btext: list[Any] = []
        for s in range(n_stages):
            spec = ranges.get(s, {}).get(info.name)
            if isinstance(spec, (list, tuple)) and len(spec) == 2:
                lo, hi, kind = float(spec[0]), float(spec[1]), "recorded range"
            elif info.low is not None and info.high is not None:
                lo, hi, kind = info.low, info.high, "full range"
            else:
                continue
            bx += [s + BAND_OFFSET, s + BAND_OFFSET, None]
            by += [lo, hi, None]
            text = f"stage {s} {kind} of {escape(info.name)}: [{lo:.4g}, {hi:.4g}]"
            btext += [text, text, None]
        fig.add_trace(go_.Scatter(x=bx, y=by, mode="lines", name="stage range", showlegend=row == 1,
                                  legendgroup="range", line={"color": "rgba(31,119,180,0.45)", "width": 14},
                                  text=btext, hoverinfo="text"), row=row, col=1)
        sub = [(t, s) for t, s in staged if info.name in t.params]
        for is_done in (False, True):
            part = [(t, s) for t, s in sub if (t.number in done_numbers) == is_done]
            if not part:
                continue
            x = np.array([s for _, s in part], dtype=float) + rng.uniform(*POINTS, len(part))
            y = np.array([as_float(t.params[info.name]) for t, _ in part])  # type: ignore[arg-type]
            marker: dict[str, Any]
            if is_done:
                marker = {"color": np.array([t.value for t, _ in part], dtype=float), "colorscale": VALUE_SCALE,
                          "cmin": cmin, "cmax": cmax,
                          "reversescale": study.direction == "minimize", "showscale": row == 1,
                          "colorbar": {"title": {"text": "value"}, "thickness": 12}}
            else:
                marker = {"color": OTHER_COLOR, "opacity": 0.5}
            marker["size"] = 4 if len(part) > 2000 else 6
            if len(part) > 2000:
                marker["opacity"] = 0.5
            states = "COMPLETE" if is_done else "PRUNED / FAIL / RUNNING"
            fig.add_trace(scatter_class(go_, len(part))(
                x=x, y=y, mode="markers", name=states, legendgroup=states, showlegend=row == 1, marker=marker,
                text=strings(texts[t.number] if full else hover(t, t.value, f"stage {s}", only=info.name)
                             for t, s in part), hoverinfo="text",
            ), row=row, col=1)
        if best is not None and info.name in best.params:
            fig.add_trace(go_.Scatter(
                x=[_stage_of(best)[0]], y=[as_float(best.params[info.name])],  # type: ignore[index, arg-type]
                mode="markers", name=f"best: trial {best.number}", showlegend=row == 1, legendgroup="best",
                marker={"symbol": "star", "size": 15, "color": BEST_COLOR, "line": {"color": "black", "width": 1}},
                text=[hover(best, best.value, f"stage {_stage_of(best)[0]}")],  # type: ignore[index]
                hoverinfo="text",
            ), row=row, col=1)
        fig.update_yaxes(title_text=escape(info.name), type="log" if info.log else "linear", row=row, col=1)
    fig.update_xaxes(range=[-0.5, n_stages - 0.5], tickmode="array", tickvals=list(range(n_stages)),
                     ticktext=[f"stage {s}" for s in range(n_stages)])
    fig.update_xaxes(title_text="stage (bar: the stage's range; points: its trials)", row=len(infos), col=1)
    height = max(420, 60 + 230 * len(infos))
    fig.update_layout(title=title(main, note), template="plotly_white", hovermode="closest",
                      height=height, legend={"orientation": "h", "y": -80 / (height - 250), "yanchor": "top"},
                      margin={"t": 100, "b": 150})
    return fig
