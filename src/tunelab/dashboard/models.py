"""The dashboard API's JSON shapes (pydantic), so that the OpenAPI schema describes every response."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"]
ParamJSON = bool | int | float | str | None


class Error(BaseModel):
    detail: str


class StudyListItem(BaseModel):
    name: str
    direction: str
    n_trials: int
    states: dict[str, int]
    best_value: float | None
    best_number: int | None


class TrialSummary(BaseModel):
    number: int
    state: State
    value: float | None
    params: dict[str, ParamJSON]
    datetime_start: str | None
    datetime_complete: str | None
    duration: float | None = Field(description="seconds")
    stage: str | None = Field(description='user_attrs["train"]["stage"] (the recipe\'s stage)')
    error: str | None = Field(
        description="the error's first line (a traceback's last line); the full text in the trial's detail")
    note: str | None


class Curve(BaseModel):
    steps: list[int]
    values: list[float | None] = Field(description="NaN and infinities as null")


class TrialDetail(TrialSummary):
    distributions: dict[str, dict[str, Any]]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    curves: dict[str, Curve]
    lineage: Any | None = Field(description='system_attrs["pbt"]["lineage"] of a population-based training member')


class StudyDetail(BaseModel):
    name: str
    direction: str
    seed: int
    sampler: dict[str, Any]
    pruner: dict[str, Any] | None
    n_trials: int
    states: dict[str, int]
    best: TrialSummary | None
    recipe: list[dict[str, Any]] | None
    params: list[str]
    read_only: bool


class TrialsPage(BaseModel):
    trials: list[TrialSummary]
    next_since: int = Field(description="poll again with since=next_since: finished trials before it never change "
                                        "(but for their note)")
    total: int


class ValuesPage(BaseModel):
    numbers: list[int] = Field(description="the trials' numbers, ascending")
    states: list[State] = Field(description="each trial's state (same order)")
    values: list[float | None] = Field(description="each trial's value: null when it has none (not COMPLETE), "
                                                   "NaN and infinities as null")
    next_since: int = Field(description="poll again with since=next_since: finished trials before it never change")
    total: int


class CurvesPage(BaseModel):
    curves: dict[str, dict[str, Curve]] = Field(description="trial number -> metric -> curve")


class FindingModel(BaseModel):
    condition: str
    metric: str
    message: str
    action: str
    evidence: dict[str, Any]


class Diagnosis(BaseModel):
    findings: list[FindingModel]


class Importance(BaseModel):
    importance: dict[str, float]
    advice: str
    method: Literal["fanova", "ped_anova"]


class EnqueueBody(BaseModel):
    params: dict[str, ParamJSON] = Field(min_length=1, description="parameter name -> value")


class Enqueued(BaseModel):
    number: int


class NoteBody(BaseModel):
    note: str = Field(max_length=10_000)


class Noted(BaseModel):
    number: int
    note: str | None


class StopRequested(BaseModel):
    number: int
    stop_requested: bool = True
