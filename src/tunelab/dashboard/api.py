"""The dashboard's JSON API: reads of studies and trials, figures, analysis, and a few actions.

The app holds no study state: other processes write the storage, so every request reads what
it needs in the storage's own short transactions, and nothing survives the request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BeforeValidator
from starlette.routing import Match
from starlette.types import Message, Scope

from tunelab import babysit
from tunelab.babysit.branches import BranchNode, Change, changes_of, run_metrics, run_tree
from tunelab.dashboard.models import (
    MAX_INT64,
    Accepted,
    BranchModel,
    ConstraintModel,
    Curve,
    CurvesPage,
    Diagnosis,
    EnqueueBody,
    Enqueued,
    Error,
    FindingModel,
    Importance,
    Invalid,
    LiveBody,
    LiveChange,
    LiveRequested,
    NoteBody,
    Noted,
    ParetoFront,
    PendingRequest,
    PredictedCurve,
    RollbackBody,
    RolledBack,
    RunTree,
    StopRequested,
    StudyDetail,
    StudyListItem,
    SuggestionModel,
    TrialDetail,
    TrialLive,
    TrialLogs,
    TrialsPage,
    TrialSummary,
    ValuesPage,
)
from tunelab.errors import ConfigError, TrialNotFoundError
from tunelab.live import LIVE_NAMES, LIVE_REQUESTS, branch_of, current_params, pending_requests
from tunelab.records import FrozenTrial, StudyRecord, TrialState, study_directions, study_objective_names
from tunelab.storage import BaseStorage, Curves
from tunelab.study import PREDICTION, Study, find_best_trial, read_study, study_headline
from tunelab.study.failures import error_headline

MAX_CURVES = 50
FigureKind = Literal["history", "slice", "contour", "parallel", "curves", "importance", "stages", "lr_range", "pareto",
                     "hypervolume"]


@dataclass(frozen=True)
class Settings:
    """What the app was created with (kept in ``app.state.tunelab``)."""

    storage: BaseStorage
    read_only: bool
    token: str | None


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.tunelab
    return settings


def _writable(settings: Annotated[Settings, Depends(_settings)]) -> Settings:
    if settings.read_only:
        raise HTTPException(403, "read-only dashboard")
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]
WritableDep = Annotated[Settings, Depends(_writable)]
ENCODED_SLASH = "\uffff"
"""What a slash sent encoded (``%2F``) inside a path segment reads as while the request is routed: a study's
name may hold slashes (``exp/lr``), which the routes' ``{name}`` (one segment) would not match decoded.
:class:`tunelab.dashboard.app.EncodedSlashes` puts it there and sets :data:`SLASHES_KEY` in the scope;
the routes (:class:`_Route`) turn it back into a slash in the path parameters they match."""
SLASHES_KEY = "tunelab.encoded_slashes"


class _Route(APIRoute):
    """A route of the API: its path parameters get back the slashes :class:`EncodedSlashes` stood in for."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        params = child.get("path_params")
        if scope.get(SLASHES_KEY) and isinstance(params, dict):
            child["path_params"] = {k: v.replace(ENCODED_SLASH, "/") if isinstance(v, str) else v
                                    for k, v in params.items()}
        return match, child


_DIGITS = re.compile(r"[0-9]+")


def _plain_decimal(value: object) -> object:
    """A number in a URL as typed: ASCII digits only. FastAPI's int read "1.0", "+1", " 1" and "-0" as 1 or
    0, and "1_0" as 10 (Python's int() reads digits of other scripts too), so a mistyped address showed
    another trial."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain decimal integer: write digits 0-9 only, e.g. 12 (no sign, "
                         "point, exponent, spaces or underscores)")
    return value


StudyName = Annotated[str, Path(description="the study's name (a slash in it sent as %2F)")]
TrialNumber = Annotated[int, Path(ge=0, le=MAX_INT64, description="the trial's number in the study"),
                        BeforeValidator(_plain_decimal)]

_E: dict[str, Any] = {"model": Error}
router = APIRouter(prefix="/api", route_class=_Route,
                   responses={401: {"model": Error, "description": "a token is needed"}})


# -- helpers ---------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _json(data: Any) -> Any:
    """JSON data with NaN and infinities as None (JSON has neither)."""
    if isinstance(data, float):
        return _finite(data)
    if isinstance(data, Mapping):
        return {str(k): _json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json(v) for v in data]
    return data


def _states(counts: Mapping[str, int]) -> dict[str, int]:
    return {s.value: int(counts.get(s.value, 0)) for s in TrialState}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def summary(t: FrozenTrial) -> TrialSummary:
    train = t.user_attrs.get("train")
    stage = train.get("stage") if isinstance(train, Mapping) else None
    return TrialSummary(
        number=t.number, state=t.state.value, value=_finite(t.value), params=_json(dict(t.params)),
        values=None if t.values is None else [_finite(v) for v in t.values],
        constraints={n: ConstraintModel(value=_finite(c.value), lower=_finite(c.lower), upper=_finite(c.upper),
                                        violation=_finite(c.violation)) for n, c in t.constraints.items()},
        feasible=t.feasible,
        datetime_start=_iso(t.datetime_start), datetime_complete=_iso(t.datetime_complete),
        duration=t.duration, stage=_text(stage), error=error_headline(t.error) or None,
        note=_text(t.user_attrs.get("note")),
    )


def _curves(curves: Curves, metric: str | None = None) -> dict[str, Curve]:
    return {m: Curve(steps=list(steps), values=[_finite(v) for v in values])
            for m, (steps, values) in curves.items() if metric is None or m == metric}


def _record(settings: Settings, name: str) -> StudyRecord:
    return settings.storage.get_study(name)  # StudyNotFoundError -> 404


def _study(settings: Settings, name: str) -> Study:
    # Reading needs neither the stored sampler nor the pruner (either may be a class this process lacks).
    return read_study(name, settings.storage)


def _trial(settings: Settings, record: StudyRecord, number: int) -> FrozenTrial:
    found = settings.storage.get_trials(record.study_id, min_number=number, max_number=number)
    if not found or found[0].number != number:
        raise TrialNotFoundError(f"study {record.name!r} has no trial number {number}")
    return found[0]


RECENT_FOR_PARAMS = 500
"""The study page lists the parameters of the declared space and of this many newest trials."""


def _param_names(trials: Sequence[FrozenTrial]) -> list[str]:
    return list(dict.fromkeys(name for t in trials for name in t.params))


class _Numbered(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def state(self) -> TrialState: ...


_Row = TypeVar("_Row", bound=_Numbered)
ObjectiveQuery = Annotated[str | None, Query(
    max_length=500, description="importance: the objective to rank the parameters for (default: the first)")]
def _plain_decimals(value: str) -> str:
    """Trial numbers separated by commas, each :func:`_plain_decimal` and at most 9 digits."""
    for part in value.split(","):
        _plain_decimal(part)
        if len(part) > 9:
            raise ValueError(f"{part!r} has more than 9 digits: no study has that many trials")
    return value


Since = Annotated[int, Query(ge=0, le=MAX_INT64, description="the first trial number to return"),
                  BeforeValidator(_plain_decimal)]


def _since_window(
    settings: Settings, name: str, since: int, read: Callable[[BaseStorage, int, int], list[_Row]]
) -> tuple[list[_Row], int, int]:
    """The study's trials numbered ``since`` and up as ``read(storage, study_id, since)`` reads them,
    the cursor to poll with next (the lowest number still RUNNING or WAITING, else one past the
    last), and the study's trial count. StudyNotFoundError (404) for an unknown study."""
    record = _record(settings, name)
    rows = read(settings.storage, record.study_id, since)
    total = settings.storage.count_trials(record.study_id)
    unfinished = [r.number for r in rows if not r.state.is_finished]
    next_since = min(unfinished) if unfinished else (rows[-1].number + 1 if rows else since)
    return rows, next_since, total


# -- reading -----------------------------------------------------------------------------------------
@router.get("/studies", response_model=list[StudyListItem], summary="Every study with its counts and best trial")
def list_studies(settings: SettingsDep) -> list[StudyListItem]:
    store = settings.storage
    out = []
    for s in store.list_studies():
        headline = study_headline(store, s)  # several objectives: the front's size, as `tunelab studies`
        best = headline.best
        out.append(StudyListItem(name=s.name, direction=s.direction, n_trials=s.n_trials, states=_states(s.counts),
                                 best_value=None if best is None else _finite(best.value),
                                 best_number=None if best is None else best.number,
                                 directions=list(headline.directions), front_size=headline.front_size))
    return out


@router.get("/studies/{name}", response_model=StudyDetail, responses={404: _E}, summary="One study")
def get_study(name: StudyName, settings: SettingsDep) -> StudyDetail:
    record = _record(settings, name)
    store = settings.storage
    # Counts by query and parameter names from the declared space and the newest trials: never a
    # read of every trial (0.6 s at 10,000 trials).
    total = store.count_trials(record.study_id)
    counts = {s.value: n for s in TrialState if (n := store.count_trials(record.study_id, [s]))}
    recent = store.get_trials(record.study_id, min_number=max(0, total - RECENT_FOR_PARAMS))
    directions = list(study_directions(record))
    # Several objectives: no trial is best alone (the front is /pareto), as in the study list.
    best = find_best_trial(store, record.study_id, record.direction) if len(directions) == 1 else None
    if best is not None and not best.feasible:
        best = None  # every COMPLETE trial breaks a constraint: there is no best
    attrs = record.system_attrs
    declared = attrs.get("space")
    params = list(dict.fromkeys([*(declared if isinstance(declared, Mapping) else {}), *_param_names(recent)]))
    recipe = attrs.get("recipe")
    steps = recipe.get("steps") if isinstance(recipe, Mapping) else None
    pruner = attrs.get("pruner")
    return StudyDetail(
        name=record.name, direction=record.direction, directions=directions,
        objective_names=list(study_objective_names(record) or ("value",)), seed=record.seed,
        sampler=_json(dict(attrs.get("sampler") or {})),
        pruner=_json(dict(pruner)) if isinstance(pruner, Mapping) else None, n_trials=total,
        states=_states(counts), best=None if best is None else summary(best),
        recipe=_json(list(steps)) if isinstance(steps, list) else None, params=params,
        read_only=settings.read_only,
    )


@router.get("/studies/{name}/trials", response_model=TrialsPage, responses={404: _E},
            summary="Trials numbered since and after: poll with since=next_since")
def list_trials(name: StudyName, settings: SettingsDep, since: Since = 0) -> TrialsPage:
    trials, next_since, total = _since_window(
        settings, name, since, lambda store, study_id, n: store.get_trials(study_id, min_number=n))
    return TrialsPage(trials=[summary(t) for t in trials], next_since=next_since, total=total)


@router.get("/studies/{name}/values", response_model=ValuesPage, responses={404: _E},
            summary="Trials' numbers, states and values as columns (a light read for plots): poll with "
                    "since=next_since")
def list_values(name: StudyName, settings: SettingsDep, since: Since = 0) -> ValuesPage:
    rows, next_since, total = _since_window(
        settings, name, since, lambda store, study_id, n: store.get_trial_values(study_id, min_number=n))
    return ValuesPage(numbers=[r.number for r in rows], states=[r.state.value for r in rows],
                      values=[_finite(r.value) for r in rows], next_since=next_since, total=total)


@router.get("/studies/{name}/trials/{number}", response_model=TrialDetail, responses={404: _E},
            summary="One trial with its curves and attributes")
def get_trial(name: StudyName, number: TrialNumber, settings: SettingsDep) -> TrialDetail:
    record = _record(settings, name)
    t = _trial(settings, record, number)
    curves = settings.storage.get_curves(t.trial_id)
    pbt = t.system_attrs.get("pbt")
    return TrialDetail(
        **summary(t).model_dump(exclude={"error"}), error=t.error,
        distributions={k: d.to_json() for k, d in t.distributions.items()},
        user_attrs=_json(dict(t.user_attrs)), system_attrs=_json(dict(t.system_attrs)), curves=_curves(curves),
        lineage=_json(pbt.get("lineage")) if isinstance(pbt, Mapping) else None,
        prediction=_prediction(t),
    )


@router.get("/studies/{name}/trials/{number}/logs", response_model=TrialLogs, responses={404: _E},
            summary="The end of a trial's logs (a trial of tunelab sweep: its command's stdout and stderr)")
def get_logs(
    name: StudyName, number: TrialNumber, settings: SettingsDep,
    lines: Annotated[int, Query(ge=1, le=2000, description="the most lines of each log"),
                     BeforeValidator(_plain_decimal)] = 200,
) -> TrialLogs:
    from tunelab.sweep.logs import trial_logs

    study = _study(settings, name)
    _trial(settings, _record(settings, name), number)  # 404 for a trial that does not exist
    return TrialLogs(**trial_logs(study, number, lines), lines=lines)


def _prediction(t: FrozenTrial) -> PredictedCurve | None:
    """The predicted continuation a learning-curve pruner stored with the trial (its stop, else its last decision)."""
    decision = t.system_attrs.get("pruned") if t.state == TrialState.PRUNED else None
    if not isinstance(decision, Mapping) or not isinstance(decision.get("evidence"), Mapping):
        decision = t.system_attrs.get(PREDICTION)
    if not isinstance(decision, Mapping):
        return None
    evidence = decision.get("evidence")
    cont = evidence.get("continuation") if isinstance(evidence, Mapping) else None
    if not isinstance(cont, Mapping) or not isinstance(decision.get("metric"), str):
        return None
    assert isinstance(evidence, Mapping)
    try:
        return PredictedCurve(
            metric=decision["metric"], step=int(evidence.get("step", decision.get("step", 0))),
            rule=str(decision.get("rule", "")), steps=[int(s) for s in cont.get("steps", [])],
            mean=_json(list(cont.get("mean", []))), low=_json(list(cont.get("low", []))),
            high=_json(list(cont.get("high", []))), interval=evidence.get("interval"),
        )
    except (TypeError, ValueError):
        return None


@router.get("/studies/{name}/curves", response_model=CurvesPage, responses={404: _E},
            summary=f"Curves of up to {MAX_CURVES} trials (live curves of running trials)")
def get_curves(
    name: StudyName, settings: SettingsDep,
    numbers: Annotated[str, Query(
        max_length=10 * MAX_CURVES, json_schema_extra={"pattern": r"^[0-9]{1,9}(,[0-9]{1,9})*$"},
        description=f"trial numbers, e.g. 1,2,3 (the first {MAX_CURVES} are read)"), AfterValidator(_plain_decimals)],
    metric: Annotated[str | None, Query(description="one metric (default: all)")] = None,
) -> CurvesPage:
    record = _record(settings, name)
    wanted = list(dict.fromkeys(int(n) for n in numbers.split(",")))[:MAX_CURVES]
    lo, hi = min(wanted), max(wanted)
    if hi - lo < 4 * len(wanted):  # close together: one read of the range
        trials = settings.storage.get_trials(record.study_id, min_number=lo, max_number=hi)
    else:  # scattered (0 and 999999999): one read each, not every trial in between
        trials = [t for n in sorted(wanted) for t in settings.storage.get_trials(record.study_id, min_number=n,
                                                                                 max_number=n)]
    chosen = set(wanted)
    return CurvesPage(curves={
        str(t.number): _curves(settings.storage.get_curves(t.trial_id), metric) for t in trials if t.number in chosen
    })


_FIGURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "a plotly figure (fig.to_plotly_json())",
          "content": {"application/json": {"schema": {"type": "object"}}}},
    400: _E, 404: _E,
}


@router.get("/studies/{name}/figures/{kind}", response_class=Response, responses=_FIGURE_RESPONSES,
            summary="A plotly figure of the study, as JSON")
def get_figure(
    name: StudyName, kind: FigureKind, settings: SettingsDep,
    x: Annotated[str | None, Query(description="contour: the x parameter; slice: the one parameter to draw "
                                                "(default: all)")] = None,
    y: Annotated[str | None, Query(description="contour: the y parameter")] = None,
    metric: Annotated[str | None, Query(description="curves: the metric (default: chosen by the plot)")] = None,
    objective: ObjectiveQuery = None,
) -> Response:
    from tunelab import viz

    study = _study(settings, name)
    fig: Any
    if kind == "lr_range":
        fig = viz.plot_lr_range(study)
    elif kind == "importance":
        from tunelab.analysis.importance import importance

        chosen = _objective(study, objective)
        fig = viz.plot_importance(importance(study, objective=chosen if study.is_multi_objective else None),
                                  title_text="Parameter importance" + (f" for {chosen}" if study.is_multi_objective
                                                                       else ""))
    elif kind == "pareto":
        fig = viz.plot_pareto_front(study, objectives=_front_axes(study))
    elif kind == "hypervolume":
        fig = viz.plot_hypervolume_history(study)
    else:
        trials = study.trials
        if kind == "history":
            fig = viz.plot_history(study, trials=trials)
        elif kind == "slice":
            fig = viz.plot_slice(study, [x] if x else None, trials=trials)  # ConfigError (400): unknown x
        elif kind == "parallel":
            fig = viz.plot_parallel_coordinates(study, trials=trials)
        elif kind == "curves":
            fig = viz.plot_curves(study, metric, trials=trials)
        elif kind == "stages":
            fig = viz.plot_stages(study, trials=trials)
        else:
            pair = (x, y) if x and y else viz.default_contour_pair(trials)
            if pair is None:
                raise HTTPException(404, f"study {name!r} has no two numeric parameters to draw a contour of")
            fig = viz.plot_contour(study, pair[0], pair[1], trials=trials)
    if fig is None:
        raise HTTPException(404, f"study {name!r} has nothing to draw for the {kind} figure")
    return Response(fig.to_json(), media_type="application/json")


@router.get("/studies/{name}/diagnosis/{number}", response_model=Diagnosis, responses={404: _E},
            summary="What a trial's learning curves show, and what to do")
def get_diagnosis(name: StudyName, number: TrialNumber, settings: SettingsDep) -> Diagnosis:
    from tunelab.analysis.diagnosis import diagnose

    findings = diagnose(_study(settings, name), number)
    return Diagnosis(findings=[FindingModel(**f.to_json()) for f in findings])


@router.get("/studies/{name}/importance", response_model=Importance, responses={400: _E, 404: _E},
            summary="Each parameter's share of the objective's variation, with advice")
def get_importance(
    name: StudyName, settings: SettingsDep, method: Literal["fanova", "ped_anova"] = "fanova",
    objective: ObjectiveQuery = None,
) -> Importance:
    from tunelab.analysis.importance import advice, importance

    study = _study(settings, name)
    chosen = _objective(study, objective)
    shares = importance(study, method=method, objective=chosen if study.is_multi_objective else None)
    return Importance(importance={k: _finite(v) or 0.0 for k, v in shares.items()}, advice=advice(shares),
                      method=method, objective=chosen)


@router.get("/studies/{name}/pareto", response_model=ParetoFront, responses={400: _E, 404: _E},
            summary="A study with several objectives: its Pareto front and the hypervolume it dominates")
def get_pareto(name: StudyName, settings: SettingsDep) -> ParetoFront:
    from tunelab.viz.pareto import default_reference, front_hypervolume, pareto_tradeoff_table

    study = _study(settings, name)
    trials = study.trials
    rows = pareto_tradeoff_table(study, trials=trials)  # ConfigError (400) for a single objective
    by_number = {t.number: t for t in trials}
    scored = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
              and len(t.values) == len(study.directions)]
    reference = default_reference(study, trials=trials)
    # The front's volume once: the whole history recomputes it after every trial (minutes for a large
    # front of three objectives).
    volume = front_hypervolume(study, reference, trials=trials) if reference is not None else None
    return ParetoFront(
        objective_names=list(study.objective_names), directions=list(study.directions),
        front=[summary(by_number[r["number"]]) for r in rows], n_complete=len(scored),
        n_infeasible=sum(not t.feasible for t in scored), hypervolume=None if volume is None else _finite(volume),
        reference=reference,
    )


def _objective(study: Study, objective: str | None) -> str:
    """The objective to rank parameters for: the one asked for, else the first; a 400 naming them for another."""
    names = list(study.objective_names)
    if objective is None:
        return names[0]
    if objective not in names:
        raise HTTPException(400, f"study {study.name!r} has no objective {objective!r}; its objectives: "
                                 f"{', '.join(names)}")
    return objective


def _front_axes(study: Study) -> list[str] | None:
    """The objectives the dashboard's front plot draws: all of 2 or 3, the first two of more."""
    names = list(study.objective_names)
    return names[:2] if len(names) > 3 else None


# -- actions -----------------------------------------------------------------------------------------
_ACTION: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "a body that is not JSON, or a configuration the study refuses"},
    403: {"model": Error, "description": "read-only dashboard"}, 404: _E,
}


@router.post("/studies/{name}/trials/{number}/stop", response_model=StopRequested,
             responses={**_ACTION, 409: {"model": Error, "description": "the trial is not RUNNING"}},
             summary="Ask a RUNNING trial to stop at its next should_prune()")
def stop_trial(name: StudyName, number: TrialNumber, settings: WritableDep) -> StopRequested:
    babysit.request_stop(_study(settings, name), number)  # TrialStateError -> 409
    return StopRequested(number=number)


MAX_ENQUEUE_BYTES = 64 * 1024
"""The largest request body the enqueue route reads (413 beyond it)."""


class _BodyLimit(_Route):
    """A route that reads at most :data:`MAX_ENQUEUE_BYTES` of a request body: a larger one (declared by
    its Content-Length, or streamed) is a 413 before it is parsed or held in memory."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            declared = request.headers.get("content-length", "")
            if declared.strip().isdigit() and int(declared) > MAX_ENQUEUE_BYTES:
                return _too_large()
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_ENQUEUE_BYTES:
                    return _too_large()
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await handler(Request(request.scope, replay))

        return limited


def _too_large() -> Response:
    return JSONResponse({"detail": f"the request body is over {MAX_ENQUEUE_BYTES // 1024} KB: enqueue a smaller "
                                   "configuration (at most 256 parameters, strings of at most 1 KB)"}, status_code=413)


_enqueue = APIRouter(route_class=_BodyLimit)


@_enqueue.post("/studies/{name}/enqueue", response_model=Enqueued,
               responses={**_ACTION, 413: {"model": Error, "description": "a body over 64 KB"},
                          422: {"model": Invalid, "description": "not a mapping of at most 256 names to JSON "
                                                                 "scalars (strings of at most 1 KB)"}},
               summary="Queue a configuration to run before the sampler's own")
def enqueue(name: StudyName, body: EnqueueBody, settings: WritableDep) -> Enqueued:
    # The same checks as Study.enqueue anywhere: against the study's stored distributions (400).
    return Enqueued(number=_study(settings, name).enqueue(body.params))


router.include_router(_enqueue)


@router.post("/studies/{name}/trials/{number}/note", response_model=Noted, responses=_ACTION,
             summary="Set a trial's note (finished trials too)")
def set_note(name: StudyName, number: TrialNumber, body: NoteBody, settings: WritableDep) -> Noted:
    record = _record(settings, name)
    t = _trial(settings, record, number)
    settings.storage.annotate_trial(t.trial_id, {"note": body.note})
    return Noted(number=number, note=_text(body.note))


# -- babysitting a run: the tree of branches, live changes, roll-backs, suggestions -------------------
def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if isinstance(value, int) else _finite(value)


def _live_change(c: Change) -> LiveChange:
    step = _number(c.step)
    curve_step = _number(c.curve_step)
    return LiveChange(step=step, curve_step=step if curve_step is None else curve_step, values=_json(c.values),
                      before=_json(c.before), sources=list(c.sources), notes=list(c.notes), at=c.at, when=c.when)


def _pending(requests: Sequence[Mapping[str, Any]]) -> list[PendingRequest]:
    return [PendingRequest(index=int(r["index"]), values=_json(dict(r.get("params") or {})),
                           source=_text(r.get("source")), note=_text(r.get("note")), at=_text(r.get("at")))
            for r in requests]


def _branch_model(n: BranchNode) -> BranchModel:
    steps, values = n.curve
    return BranchModel(
        number=n.number, parent=n.parent, step=n.step, kind=n.kind, state=n.state.value, value=_finite(n.value),
        first_step=n.first_step, last_step=n.last_reported, params=_json(n.params), current=_json(n.current),
        set=_json(n.set), changes=[_live_change(c) for c in n.changes], pending=_pending(n.pending),
        checkpoints=list(n.checkpoints), note=n.note, stop_requested=n.stop_requested,
        children=[c.number for c in n.children],
        curve=Curve(steps=list(steps), values=[_finite(v) for v in values]),
    )


@router.get("/studies/{name}/tree", response_model=RunTree, responses={404: _E},
            summary="The run's branches as a tree, with one metric's curve of each (one read for all curves)")
def get_tree(
    name: StudyName, settings: SettingsDep,
    metric: Annotated[str | None, Query(min_length=1, max_length=500,
                                        description="the curves' metric (default: the run's monitored metric)")] = None,
) -> RunTree:
    study = _study(settings, name)
    trials = study.trials
    metrics = run_metrics(study, trials)
    chosen = metric if metric is not None else metrics.monitored
    roots = run_tree(study, metric=chosen, trials=trials)
    nodes = sorted((n for root in roots for n in root.walk()), key=lambda n: n.number)
    if metric is not None and metric not in metrics.reported and not any(n.curve[0] for n in nodes):
        raise HTTPException(404, f"no trial of study {name!r} reported the metric {metric!r}; the newest reported "
                                 f"{', '.join(metrics.reported) or 'nothing yet'}")
    return RunTree(metric=chosen, metrics=metrics.reported,
                   is_run=any(n.parent is not None or n.changes or n.pending for n in nodes)
                   or any(LIVE_REQUESTS in t.system_attrs for t in trials),
                   roots=[r.number for r in roots], branches=[_branch_model(n) for n in nodes])


# Not GET .../live: Starlette's 405 for another method on a path of two routes lists only the first's.
@router.get("/studies/{name}/trials/{number}/hyperparameters", response_model=TrialLive, responses={404: _E},
            summary="A trial's hyperparameters now, the changes it applied, its pending requests and checkpoints")
def get_live(name: StudyName, number: TrialNumber, settings: SettingsDep) -> TrialLive:
    record = _record(settings, name)
    t = _trial(settings, record, number)
    names = t.system_attrs.get(LIVE_NAMES)
    branch = branch_of(t.system_attrs)
    return TrialLive(
        number=t.number, state=t.state.value, current=_json(current_params(t)),
        live_names=[str(n) for n in names] if isinstance(names, list) else None,
        changes=[_live_change(c) for c in changes_of(t)], pending=_pending(pending_requests(t)),
        checkpoints=[c.step for c in _study(settings, name).checkpoints(number)],
        parent=None if branch is None else branch.parent, step=None if branch is None else branch.step,
    )


_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Invalid, "description": "a name or value the trial refuses (the reason), or an invalid request"},
}


@router.post("/studies/{name}/trials/{number}/live", response_model=LiveRequested,
             responses={**_ACTION, **_INVALID,
                        409: {"model": Error, "description": "the trial is not RUNNING: roll back instead"}},
             summary="Change a RUNNING trial's hyperparameters: applied at its next step (as `tunelab set`)")
def set_live(name: StudyName, number: TrialNumber, body: LiveBody, settings: WritableDep) -> LiveRequested:
    study = _study(settings, name)
    try:
        index = babysit.set_live(study, number, body.values, source="dashboard", note=_text(body.note))  # 409, 404
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    requests = study.get_trial(number).system_attrs.get(LIVE_REQUESTS) or []
    stored = requests[index].get("params") if index < len(requests) else None
    return LiveRequested(index=index, values=_json(dict(stored)) if isinstance(stored, Mapping) and stored
                         else _json(dict(body.values)))


@router.post("/studies/{name}/rollback", response_model=RolledBack,
             responses={**_ACTION, **_INVALID, 409: {"model": Error, "description": "a state the change cannot "
                                                                                  "be made in"}},
             summary="Go back to a kept checkpoint as a new branch, with changed values (as `tunelab rollback`)")
def rollback(name: StudyName, body: RollbackBody, settings: WritableDep) -> RolledBack:
    from tunelab.babysit.branches import rollback as roll_back

    study = _study(settings, name)
    try:
        number = roll_back(study, to=body.to, trial=body.trial, values=body.values or None, note=_text(body.note))
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    return RolledBack(number=number)


@router.get("/studies/{name}/trials/{number}/suggestions", response_model=list[SuggestionModel],
            responses={400: _E, 404: _E}, summary="What the trial's curves call for changing, most urgent first")
def get_suggestions(name: StudyName, number: TrialNumber, settings: SettingsDep) -> list[SuggestionModel]:
    from tunelab.babysit.advice import suggest

    return [SuggestionModel(**_json(s.to_json())) for s in suggest(_study(settings, name), number)]


SuggestionKind = Annotated[str, Path(pattern=r"^[a-z_]{1,64}$", description="the suggestion's kind, e.g. halve_lr")]


@router.post("/studies/{name}/trials/{number}/suggestions/{kind}/accept", response_model=Accepted,
             responses={**_ACTION, **_INVALID, 409: {"model": Error, "description": "the trial finished meanwhile"}},
             summary="Accept the trial's current suggestion of that kind: a live change, or a roll-back")
def accept_suggestion(name: StudyName, number: TrialNumber, kind: SuggestionKind,
                      settings: WritableDep) -> Accepted:
    from tunelab.babysit.advice import accept, suggest

    study = _study(settings, name)
    now = suggest(study, number)
    found = next((s for s in now if s.kind == kind), None)
    if found is None:
        raise HTTPException(404, f"trial {number} has no suggestion {kind!r} now; it has "
                                 f"{', '.join(s.kind for s in now) or 'none'}")
    if not found.values:
        raise HTTPException(422, f"suggestion {kind!r} changes nothing: {found.message}")
    try:
        result = accept(study, number, found, source="dashboard")
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    return Accepted(result=result, kind=kind, rollback=found.rollback_to is not None)
