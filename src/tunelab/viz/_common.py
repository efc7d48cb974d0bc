"""What every figure shares: loading plotly, reading a study's trials and parameters, hover text,
the empty figure, and the helpers that keep figures small at 10,000 trials.

Stored text (parameter names and categorical values, the study's name, metric names, the recipe's
record) goes into a figure only through :func:`tunelab.viz.html.escape`: plotly reads some HTML
tags in its text, and shows escaped text as typed. :func:`label`, :meth:`ParamInfo.axis_title`,
:func:`hover`, :func:`title` and :func:`empty_figure` escape what they are given; the figures escape
the rest (trace names, axis titles, hover templates) where they build it.
"""

from __future__ import annotations

import functools
import gc
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from tunelab.distributions import Bool, Categorical, Float, Int
from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState, sort_key
from tunelab.study import Study
from tunelab.viz.html import escape

if TYPE_CHECKING:
    import plotly.graph_objects as go

INSTALL_HINT = "pip install 'tunelab[report]'"
GL_THRESHOLD = 1000
"""Point clouds larger than this are drawn with WebGL (``go.Scattergl``), which stays responsive at 10k+ points."""

COMPLETE_COLOR = "#1f77b4"
BEST_COLOR = "#d62728"
PRUNED_COLOR = "#ff7f0e"
OTHER_COLOR = "#7f7f7f"
VALUE_SCALE = "Viridis"
"""Colour scale of objective values; reversed for 'minimize' studies so that the best is always bright."""


def load_go() -> Any:
    """``plotly.graph_objects``, or a ConfigError that says how to install it."""
    try:
        import plotly.graph_objects as go_module
    except ImportError:  # pragma: no cover - plotly is installed in the test environment
        raise ConfigError(f"tunelab.viz needs plotly: {INSTALL_HINT}") from None
    return go_module


def make_subplots(**kwargs: Any) -> go.Figure:
    load_go()
    from plotly.subplots import make_subplots as _make

    return _make(**kwargs)


def scatter_class(go_module: Any, n_points: int) -> Callable[..., dict[str, Any]]:
    """A maker of scatter traces: WebGL (``scattergl``) for large point clouds, SVG otherwise.

    It makes plain dicts: plotly validates a dict once when it is added to the figure, while a
    ``go.Scatter`` object is validated when built and deep-copied again when added (twice the cost).
    """
    kind = "scattergl" if n_points > GL_THRESHOLD else "scatter"

    def make(**kwargs: Any) -> dict[str, Any]:
        return {"type": kind, **kwargs}

    return make


P = ParamSpec("P")
R = TypeVar("R")


def paused_gc(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic garbage collector paused (and resumed after, if it was running).

    Reading 10,000 trials and 100,000 curve points allocates millions of small objects, which sets
    off full collections that scan them all again and again: up to half of a figure's build time.
    Nothing built here forms cycles worth collecting early; they are collected when it resumes.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        running = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if running:
                gc.enable()

    return wrapper


# -- reading the study ---------------------------------------------------------------------------
def check_study(study: object) -> Study:
    if not isinstance(study, Study):
        raise ConfigError(f"expected a tunelab Study (create_study / load_study), got {type(study).__name__}")
    return study


def read_trials(study: Study, trials: Sequence[FrozenTrial] | None) -> list[FrozenTrial]:
    """The study's trials, or those the caller already read (one read shared by several figures)."""
    if trials is None:
        return check_study(study).trials
    check_study(study)
    return list(trials)


def completed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value, by number."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]


def best_of(trials: Sequence[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The best of the feasible COMPLETE ``trials`` (the lowest number among ties), or None when none is
    feasible: an infeasible trial is never the best, as with ``study.best_trial``."""
    feasible = [t for t in trials if t.feasible]
    return min(feasible, key=sort_key(direction)) if feasible else None


def rank_key(direction: str) -> Callable[[FrozenTrial], tuple[bool, float, int]]:
    """A key that sorts COMPLETE trials best first, the feasible ones before every infeasible one (an
    infeasible trial is never the best, however good its value)."""
    by_value = sort_key(direction)

    def key(t: FrozenTrial) -> tuple[bool, float, int]:
        return (not t.feasible, *by_value(t))

    return key


def stage_tag(t: FrozenTrial) -> str | None:
    """The recipe's stage tag (``user_attrs["train"]["stage"]``), if the trial has one."""
    train = t.user_attrs.get("train")
    if isinstance(train, Mapping):
        stage = train.get("stage")
        if isinstance(stage, str):
            return stage
    return None


# -- parameters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamInfo:
    """How a parameter is drawn: numeric (with its full range and log scale) or categorical (its labels)."""

    name: str
    numeric: bool
    log: bool = False
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()

    def axis_title(self) -> str:
        """The parameter's name as an axis title (escaped)."""
        return f"{escape(self.name)} (log)" if self.log else escape(self.name)


def label(value: object) -> str:
    """A categorical value as an axis label (None -> 'None', True -> 'True'), escaped: the labels are
    the category axis's values and its tick text."""
    return escape(value)


def as_float(value: object) -> float:
    """A numeric parameter's value as a float (its distribution guarantees a number)."""
    return float(value)  # type: ignore[arg-type]


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def param_infos(trials: Sequence[FrozenTrial]) -> dict[str, ParamInfo]:
    """Every parameter of ``trials``, in order of first appearance.

    A parameter is numeric when its distributions are Float/Int (its range is the union of their
    ranges) and its values are numbers; categorical otherwise, with the choices' labels in declared
    order followed by any other value seen.
    """
    values: dict[str, list[Any]] = {}
    dists: dict[str, set[Any]] = {}
    for t in trials:
        own = t.distributions
        for name, value in t.params.items():
            found = values.get(name)
            if found is None:
                values[name] = found = []
                dists[name] = set()
            found.append(value)
            d = own.get(name)
            if d is not None:
                dists[name].add(d)
    infos: dict[str, ParamInfo] = {}
    for name, vals in values.items():
        ds = list(dists[name])
        numeric_dists = [d for d in ds if isinstance(d, (Float, Int))]
        all_numbers = all(type(v) in (int, float) for v in vals) and all(math.isfinite(v) for v in vals)
        if all_numbers and len(numeric_dists) == len(ds):
            if ds:
                infos[name] = ParamInfo(
                    name, True, log=any(d.log for d in numeric_dists),
                    low=float(min(d.low for d in numeric_dists)), high=float(max(d.high for d in numeric_dists)),
                )
            else:
                infos[name] = ParamInfo(name, True)
            continue
        order: dict[str, None] = {}
        for d in sorted((d for d in ds if isinstance(d, (Categorical, Bool))), key=lambda d: len(d.choices)):
            for c in d.choices:
                order.setdefault(label(c), None)
        for key in dict.fromkeys((type(v), v) for v in vals):
            order.setdefault(label(key[1]), None)
        infos[name] = ParamInfo(name, False, categories=tuple(order))
    return infos


def select_params(infos: Mapping[str, ParamInfo], params: Sequence[str] | None, owner: str) -> list[ParamInfo]:
    """The infos of ``params`` (all when None); ConfigError naming the known ones for an unknown name."""
    if params is None:
        return list(infos.values())
    if isinstance(params, str):
        params = [params]
    unknown = [p for p in params if p not in infos]
    if unknown:
        known = ", ".join(infos) or "none"
        raise ConfigError(f"{owner}: no COMPLETE trial has parameter(s) {unknown}; known parameters: {known}")
    return [infos[p] for p in dict.fromkeys(params)]


def strings(values: Iterable[str]) -> np.ndarray:
    """Text as a numpy string array: plotly validates it about 6 times faster than a list, and copies
    it (adding a trace deep-copies its data) in one block, unlike an object array."""
    out = list(values)
    return np.array(out, dtype=str) if out else np.array([], dtype=str)


def fmt(value: object) -> str:
    if type(value) is float:
        return f"{value:.4g}"
    return str(value)


def hover(t: FrozenTrial, value: float | None = None, extra: str = "", only: str | None = None) -> str:
    """Hover text: the trial number and state, its value and every parameter (only ``only`` when given).
    ``extra`` (plain text) and the parameters are escaped; the lines are joined with ``<br>``."""
    lines = [f"trial {t.number} ({t.state.value})"]
    if value is not None:
        lines.append(f"value: {value:.6g}")
    if extra:
        lines.append(escape(extra))
    if only is not None:
        if only in t.params:
            lines.append(f"{escape(only)}: {escape(fmt(t.params[only]))}")
    else:
        lines += [f"{escape(k)}: {v:.4g}" if type(v) is float else f"{escape(k)}: {escape(v)}"
                  for k, v in t.params.items()]
    return "<br>".join(lines)


def template_text(text: str) -> str:
    """Stored text inside a plotly hover template: escaped, and its ``%{`` not read as a placeholder."""
    return escape(text).replace("%{", "%&#123;")


def full_hover(n_points: int, n_panels: int) -> bool:
    """Whether every point of a figure with ``n_panels`` point clouds carries all parameters in its hover
    text: not past 2,000 points in several panels, where it would make the figure megabytes larger."""
    return n_panels <= 1 or n_points <= 2 * GL_THRESHOLD


# -- layout helpers ------------------------------------------------------------------------------
def title(main: str, note: str = "") -> dict[str, Any]:
    """A figure's title: ``main`` and the smaller ``note`` under it (both plain text, escaped here)."""
    text = escape(main) if not note else f"{escape(main)}<br><sup>{escape(note)}</sup>"
    return {"text": text, "x": 0.01, "xanchor": "left"}


def empty_figure(main: str, message: str, **axes: str) -> go.Figure:
    """A figure that says why there is nothing to plot (its title, the message in the middle; plain
    text, escaped here)."""
    go_module = load_go()
    fig = go_module.Figure()
    fig.add_annotation(text=escape(message), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14})
    fig.update_layout(title=title(main), template="plotly_white",
                      xaxis={"title": {"text": escape(axes.get("x", ""))}, "showticklabels": False,
                             "showgrid": False, "zeroline": False},
                      yaxis={"title": {"text": escape(axes.get("y", ""))}, "showticklabels": False,
                             "showgrid": False, "zeroline": False})
    fig.layout.meta = {"empty": True, "message": message}
    return fig


def value_color_range(values: np.ndarray, direction: str) -> tuple[float, float]:
    """cmin/cmax for objective values: the best end exact, the worst at a percentile, so that a few
    diverged trials do not wash the colours out."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if values.size >= 20:
        if direction == "minimize":
            hi = float(np.percentile(values, 95))
        else:
            lo = float(np.percentile(values, 5))
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    return lo, hi


def robust_range(values: np.ndarray) -> list[float] | None:
    """An axis range that leaves out far outliers (diverged losses), or None when autorange is fine."""
    v = values[np.isfinite(values)]
    if v.size < 10:
        return None
    q01, q99 = np.percentile(v, [1, 99])
    spread = max(float(q99 - q01), 1e-12)
    lo, hi = float(v.min()), float(v.max())
    if hi <= q99 + 3 * spread and lo >= q01 - 3 * spread:
        return None
    return [max(lo, float(q01) - 0.1 * spread), min(hi, float(q99) + 0.1 * spread)]


def thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, evenly spread, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def log10_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (log10 units) and labels for a log axis drawn in log10 units (parallel coordinates)."""
    a, b = math.floor(lo), math.ceil(hi)
    positions = [float(k) for k in range(a, b + 1) if lo - 1e-9 <= k <= hi + 1e-9]
    if len(positions) < 2:
        positions = sorted({lo, hi, *positions})
    return positions, [f"{10 ** p:.3g}" for p in positions]
