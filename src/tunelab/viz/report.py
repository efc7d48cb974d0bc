"""One self-contained HTML file about a study: summary, best trial, plots, diagnosis, importance.

A study with several objectives has no best trial: its report has a "Pareto front" section instead
(the front, the hypervolume over trials, the trade-off table) and the importances of each objective.

plotly.js is inlined once (no CDN, no network: the file opens anywhere, offline); each figure
is a ``<div>`` drawn by it. A section that cannot be drawn (too few trials, no curves) says
why in its place instead of failing the report.

Every stored string (the study's name, parameters, attributes, errors, the recipe's record) is put
into the page through :func:`tunelab.viz.html.escape`; table cells are escaped unless they are
:class:`~tunelab.viz.html.Markup` that this module built from escaped parts.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.analysis.diagnosis import Finding, diagnose
from tunelab.analysis.importance import advice, importance
from tunelab.distributions import Categorical
from tunelab.errors import ConfigError, TunelabError
from tunelab.records import FrozenTrial, TrialState, sort_key
from tunelab.viz import (
    default_contour_pair,
    plot_contour,
    plot_curves,
    plot_history,
    plot_importance,
    plot_lr_range,
    plot_parallel_coordinates,
    plot_slice,
    plot_stages,
)
from tunelab.viz._common import rank_key
from tunelab.viz.html import Markup, escape
from tunelab.viz.pareto import pareto_tradeoff_table, plot_hypervolume_history, plot_pareto_front

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tunelab.study import Study

FAST_IMPORTANCE_FROM = 2000
"""Studies with at least this many complete trials get PED-ANOVA instead of fANOVA (faster)."""
TYPICAL_FAILURES = 3
"""How many failing trials (worst complete, pruned, failed) the diagnosis section reads."""
MAX_POINTS = 3000
"""Point clouds (slice, contour, parallel coordinates, stages) show at most this many trials:
the best tenth of them and an even sample of the rest, so that a report of a large study
stays light to open. The history plot and the importance use every trial."""
MAX_FRONT_ROWS = 200
"""The trade-off table of a study with several objectives lists at most this many trials of its front."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;
color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.muted{color:#777}.figure{margin:1em 0}.pass{color:#1a7f37}.fail{color:#c62828}
.skip{color:#9a6700}.finding{margin:.4em 0}.advice{font-size:1.1em;background:#f0f6ff;padding:.6em;border-radius:4px}
"""


def build_report(study: Study, *, title: str | None = None) -> str:
    """The report of ``study`` as one HTML document (a string)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ConfigError("the report needs plotly: pip install 'tunelab[report]'") from None
    trials = study.trials
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    shown = _thinned(trials, done, study.direction)
    page = _Page()
    page.add(f"<h1>{escape(title or f'tunelab report: {study.name}')}</h1>")
    page.add(f"<p class='muted'>made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {escape(_where(study))}</p>")
    page.add(_summary(study, trials))
    best = None
    if study.is_multi_objective:
        _pareto_section(study, trials, page)
    elif done:
        feasible = [t for t in done if t.feasible]  # an infeasible trial is never the best
        if feasible:
            best = sorted(feasible, key=sort_key(study.direction))[0]
            page.add(_best(study, best))
        else:
            page.add("<h2>Best trial</h2><p class='muted'>none: every COMPLETE trial violates one of its "
                     "constraints</p>")
    recipe = study.system_attrs.get("recipe")
    if recipe:
        page.add(_recipe_table(recipe))
        page.figure("lr-range", "Learning-rate range test", lambda: plot_lr_range(study))
    page.add("<h2>Search</h2>")
    if len(shown) < len(trials):
        page.add(f"<p class='muted'>{len(done)} complete trials: the point clouds below (slices, contour, parallel "
                 f"coordinates, stages) show {len(shown)} of them, the best {MAX_POINTS // 10} and an even sample of "
                 "the rest; the history and the importance use every trial.</p>")
    if study.is_multi_objective:
        page.add(f"<p class='muted'>The history, slices, contour and parallel coordinates show the first objective, "
                 f"{escape(study.objective_names[0])} ({escape(study.direction)}).</p>")
    page.figure("history", "Optimisation history", lambda: plot_history(study, trials=trials))
    page.figure("curves", "Learning curves", lambda: plot_curves(study, trials=trials))
    page.figure("slice", "Score against each hyperparameter", lambda: plot_slice(study, trials=shown))
    pair = default_contour_pair(done)
    if pair is not None:
        page.figure("contour", f"{pair[0]} x {pair[1]}", lambda: plot_contour(study, *pair, trials=shown))
    page.figure("parallel", "Parallel coordinates", lambda: plot_parallel_coordinates(study, trials=shown))
    page.figure("stages", "Coarse-to-fine stages", lambda: plot_stages(study, trials=shown))
    _importance_section(study, done, page)
    page.add(_diagnosis_section(study, trials, best))
    body = "\n".join(page.parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title or study.name)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(study: Study, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write :func:`build_report` to ``path`` (atomically) and return it."""
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the report is HTML: give a path ending in .html, got {str(target)!r}")
    if not target.parent.is_dir():
        raise ConfigError(f"no folder {str(target.parent)!r} to write the report into: create it first")
    document = build_report(study, title=title)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(document, encoding="utf-8")
    partial.replace(target)
    return target


class _Page:
    """The report's parts, and its figures drawn or explained."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[str] = []

    def add(self, part: str) -> None:
        if part:
            self.parts.append(part)

    def figure(self, key: str, heading: str, make: Callable[[], go.Figure | None]) -> None:
        try:
            fig = make()
        except TunelabError as e:
            self.parts.append(f"<h3>{escape(heading)}</h3><p class='muted'>not drawn: {escape(str(e))}</p>")
            return
        if fig is None:
            return
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}",
                          config={"displaylogo": False, "responsive": True})
        self.figures.append(key)
        self.parts.append(f"<h3>{escape(heading)}</h3><div class='figure' data-figure='{key}'>{div}</div>")


def _thinned(trials: Sequence[FrozenTrial], done: Sequence[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """At most :data:`MAX_POINTS` complete trials: the best tenth (feasible ones first: an infeasible trial
    is never the best), then an even sample of the rest."""
    if len(done) <= MAX_POINTS:
        return list(trials)
    ranked = sorted(done, key=rank_key(direction))
    top = ranked[: MAX_POINTS // 10]
    rest = ranked[len(top):]
    stride = len(rest) / (MAX_POINTS - len(top))
    sample = [rest[int(i * stride)] for i in range(MAX_POINTS - len(top))]
    return sorted([*top, *sample], key=lambda t: t.number)


def _summary(study: Study, trials: Sequence[FrozenTrial]) -> str:
    counts = {s.value: sum(t.state == s for t in trials) for s in TrialState}
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    span = f"{(max(ends) - min(starts)).total_seconds():.0f} s" if starts and ends else "-"
    attrs = study.system_attrs
    objectives = ", ".join(f"{n} ({d})" for n, d in zip(study.objective_names, study.directions, strict=True))
    rows = [
        ("study", study.name),
        ("objectives", objectives) if study.is_multi_objective else ("direction", study.direction),
        ("trials", ": ".join([str(len(trials)), *([", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)]
                                                   if trials else [])])),
        ("wall time", span), ("sampler", _describe(attrs.get("sampler"))),
        ("pruner", _describe(attrs.get("pruner")) or "none"), ("seed", str(study.seed)),
    ]
    return "<h2>Summary</h2>" + _table(["", ""], rows, show_header=False)


def _best(study: Study, best: FrozenTrial) -> str:
    rows = [(k, _fmt(v)) for k, v in best.params.items()]
    train = best.user_attrs.get("train", {})
    stage = f", stage {train['stage']}" if isinstance(train, dict) and "stage" in train else ""
    return (f"<h2>Best trial</h2><p>trial <b>{best.number}</b>{escape(stage)}: value <b>{_fmt(best.value)}</b> "
            f"({study.direction})</p>" + _table(["parameter", "value"], rows))


def _pareto_section(study: Study, trials: Sequence[FrozenTrial], page: _Page) -> None:
    """A study with several objectives: its front (plot and table) and the hypervolume over trials."""
    page.add("<h2>Pareto front</h2>")
    names = list(study.objective_names)
    shown = names if len(names) <= 3 else names[:2]
    if len(names) > 3:
        page.add(f"<p class='muted'>{len(names)} objectives: the plot shows the first two "
                 "(plot_pareto_front(study, objectives=[...]) draws others); the table has them all.</p>")
    page.figure("pareto", "The front", lambda: plot_pareto_front(study, objectives=shown, trials=trials))
    page.figure("hypervolume", "Hypervolume over trials", lambda: plot_hypervolume_history(study, trials=trials))
    rows = pareto_tradeoff_table(study, trials=trials)
    if not rows:
        page.add("<p class='muted'>no feasible COMPLETE trial yet: no front</p>")
        return
    constraints = list(dict.fromkeys(c for r in rows for c in r["constraints"]))
    params = list(dict.fromkeys(p for r in rows for p in r["params"]))
    header = ["trial", *(f"{n} ({d[:3]})" for n, d in zip(names, study.directions, strict=True)),
              *(f"constraint: {c}" for c in constraints), *params]
    cells = [[str(r["number"]), *(_fmt(r["values"][n]) for n in names),
              *(_fmt(r["constraints"].get(c)) for c in constraints), *(_fmt(r["params"].get(p)) for p in params)]
             for r in rows[:MAX_FRONT_ROWS]]
    more = f", the first {MAX_FRONT_ROWS} shown" if len(rows) > MAX_FRONT_ROWS else ""
    page.add(f"<h3>Trade-offs</h3><p class='muted'>{len(rows)} trial(s) on the front, by {escape(names[0])} "
             f"(best first){more}</p>" + _table(header, cells).replace("<table>", "<table id='pareto-table'>", 1))


def _recipe_table(recipe: Any) -> str:
    steps = recipe.get("steps") if isinstance(recipe, dict) else None
    rows: list[tuple[str, str, str]] = []
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        verdict = str(step.get("verdict", ""))
        rows.append((str(step.get("step", "")), Markup(f"<span class='{escape(verdict)}'>{escape(verdict)}</span>"),
                     str(step.get("message", ""))))
    return "<h2>Training recipe</h2>" + _table(["step", "verdict", "what was found"], rows)


def _importance_section(study: Study, done: Sequence[FrozenTrial], page: _Page) -> None:
    page.add("<h2>Importance</h2>")
    names = {n for t in done for n, d in t.distributions.items() if not _constant(d)}
    if len(done) < 4 or len(names) < 2:
        page.add("<p class='muted'>needs at least 4 complete trials over 2 parameters</p>")
        return
    method = "ped_anova" if len(done) >= FAST_IMPORTANCE_FROM else "fanova"
    objectives: list[str | None] = list(study.objective_names) if study.is_multi_objective else [None]
    for k, objective in enumerate(objectives):
        lead = "" if objective is None else f"<b>{escape(objective)}</b>: "
        try:
            shares = importance(study, method=method, objective=objective)
        except TunelabError as e:
            page.add(f"<p class='muted'>{lead}not computed: {escape(str(e))}</p>")
            continue
        page.add(f"<p class='advice'>{lead}{escape(advice(shares))}</p><p class='muted'>"
                 f"{'PED-ANOVA' if method == 'ped_anova' else 'fANOVA on a random forest'} over {len(done)} "
                 "complete trials</p>")
        key = "importance" if objective is None else f"importance-{k}"
        heading = "Importance" if objective is None else f"Importance for {objective}"
        page.figure(key, heading, functools.partial(plot_importance, shares, title_text=heading))


def _diagnosis_section(study: Study, trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> str:
    chosen: list[tuple[str, FrozenTrial]] = []
    if best is not None:
        chosen.append(("best trial", best))
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=sort_key(study.direction))
    failing = [("failed", t) for t in trials if t.state == TrialState.FAIL]
    failing += [("pruned", t) for t in trials if t.state == TrialState.PRUNED]
    failing += [("worst complete", t) for t in reversed(done[1:])]
    seen = {best.number} if best is not None else set()
    for label, t in failing:
        if len(chosen) > TYPICAL_FAILURES:
            break
        if t.number not in seen and study.get_curves(t.number):
            chosen.append((label, t))
            seen.add(t.number)
    if not chosen:
        return ""
    out = ["<h2>Diagnosis of the learning curves</h2>"]
    for label, t in chosen:
        try:
            findings = diagnose(study, t.number)
        except TunelabError as e:
            out.append(f"<h3>trial {t.number} ({escape(label)})</h3><p class='muted'>not read: {escape(str(e))}</p>")
            continue
        out.append(f"<h3>trial {t.number} ({escape(label)})</h3>" + _findings(findings, t))
    return "\n".join(out)


def _findings(findings: Sequence[Finding], trial: FrozenTrial) -> str:
    if not findings:
        reported = "" if trial.error is None else f" (error: {escape(trial.error.splitlines()[0])})"
        return f"<p>nothing to flag in its curves{reported}</p>"
    items = "".join(f"<li class='finding'><b>{escape(f.condition.replace('_', ' '))}</b> ({escape(f.metric)}): "
                    f"{escape(f.message)}. <i>Do:</i> {escape(f.action)}</li>" for f in findings)
    return f"<ul>{items}</ul>"


def _constant(dist: Any) -> bool:
    return isinstance(dist, Categorical) and len(dist.choices) < 2


def _describe(settings: Any) -> str:
    if not isinstance(settings, dict) or not settings:
        return ""
    rest = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "name")
    return f"{settings.get('name', '?')}({rest})"


def _where(study: Study) -> str:
    url = study.storage.url
    return url if url else "an in-memory study"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, show_header: bool = True) -> str:
    """A table; every cell escaped, but :class:`Markup` (built here from escaped parts)."""
    head = "<tr>" + "".join(f"<th>{_cell(h)}</th>" for h in header) + "</tr>" if show_header else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _cell(value: str) -> str:
    return value if isinstance(value, Markup) else escape(value)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)
