"""The dashboard API's JSON shapes (pydantic), so that the OpenAPI schema describes every response."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

State = Literal["WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that is not NaN or infinite (Python's JSON reader accepts NaN, Infinity and 1e999)."""
ParamJSON = bool | int | FiniteFloat | str | None
MAX_INT64 = 2**63 - 1
"""The largest trial number or step the storages hold (64-bit signed integers): larger ones are a 422."""


class Error(BaseModel):
    detail: str


class Invalid(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="what is wrong: a sentence (a value the study refuses) or the request's validation errors")


class StudyListItem(BaseModel):
    name: str
    direction: str
    n_trials: int
    states: dict[str, int]
    best_value: float | None
    best_number: int | None
    directions: list[str] = Field(default_factory=list, description="one per objective")
    front_size: int | None = Field(
        default=None, description="several objectives: the feasible COMPLETE trials on the Pareto front "
                                  "(best_value and best_number are then null: no trial is best alone)")


class ConstraintModel(BaseModel):
    value: float | None = Field(description="the measured value (null: not a finite number)")
    lower: float | None
    upper: float | None
    violation: float | None = Field(description="how far the value lies outside its bounds (0: they hold)")


class TrialSummary(BaseModel):
    number: int
    state: State
    value: float | None
    values: list[float | None] | None = Field(
        default=None, description="every objective's value, in the study's order (null: not COMPLETE); the first "
                                  "is `value`")
    constraints: dict[str, ConstraintModel] = Field(
        default_factory=dict, description="the constraints the trial recorded (trial.set_constraint), by name")
    feasible: bool = Field(default=True, description="whether every constraint's bounds hold (true without any)")
    params: dict[str, ParamJSON]
    datetime_start: str | None
    datetime_complete: str | None
    duration: float | None = Field(description="seconds")
    stage: str | None = Field(description='user_attrs["train"]["stage"] (the recipe\'s stage)')
    error: str | None = Field(
        description="the line that says what ended the trial, as `tunelab show` gives it (of a traceback, the "
                    "exception that ended it; of a plain text, its last line); the full text in the trial's detail")
    note: str | None


class Curve(BaseModel):
    steps: list[int]
    values: list[float | None] = Field(description="NaN and infinities as null")


class PredictedCurve(BaseModel):
    metric: str
    step: int = Field(description="the step the prediction was made at")
    rule: str
    steps: list[int]
    mean: list[float | None]
    low: list[float | None]
    high: list[float | None]
    interval: float | None


class TrialDetail(TrialSummary):
    distributions: dict[str, dict[str, Any]]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    curves: dict[str, Curve]
    lineage: Any | None = Field(description='system_attrs["pbt"]["lineage"] of a population-based training member')
    prediction: PredictedCurve | None = Field(
        default=None, description="a learning-curve pruner's predicted continuation of the trial's curve (the "
                                  "decision that stopped it, else its last prediction), drawn dashed")


class TrialLogs(BaseModel):
    stdout: str | None = Field(description="the end of the trial's stdout.log (None: no such file)")
    stderr: str | None = Field(description="the end of the trial's stderr.log (None: no such file)")
    lines: int = Field(description="the most lines each holds")


class StudyDetail(BaseModel):
    name: str
    direction: str = Field(description="the first objective's direction")
    directions: list[str] = Field(description="every objective's direction (one for a single-objective study)")
    objective_names: list[str] = Field(description="every objective's name ('value' for a single objective)")
    seed: int
    sampler: dict[str, Any]
    pruner: dict[str, Any] | None
    n_trials: int
    states: dict[str, int]
    best: TrialSummary | None = Field(description="the best feasible COMPLETE trial (null: none yet, or several "
                                                  "objectives: their front is /api/studies/{name}/pareto)")
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
    objective: str = Field(description="the objective the parameters are ranked for")


class ParetoFront(BaseModel):
    objective_names: list[str]
    directions: list[str]
    front: list[TrialSummary] = Field(description="the feasible COMPLETE trials none dominates, by the first "
                                                  "objective (best first)")
    n_complete: int = Field(description="COMPLETE trials with every objective's value")
    n_infeasible: int = Field(description="of those, the ones that miss a constraint's bounds")
    hypervolume: float | None = Field(description="the volume the front dominates up to `reference` (null: no front)")
    reference: list[float] | None = Field(description="the reference point: the worst feasible values, 10% past")


MAX_ENQUEUE_PARAMS = 256
"""At most this many parameters in one enqueued configuration."""
MAX_NAME_LENGTH = 256
"""At most this many characters in a parameter's name."""
MAX_STRING_LENGTH = 1024
"""At most this many characters in a string value."""

ParamName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
EnqueuedValue = bool | int | FiniteFloat | Annotated[str, StringConstraints(max_length=MAX_STRING_LENGTH)] | None


class EnqueueBody(BaseModel):
    params: dict[ParamName, EnqueuedValue] = Field(
        min_length=1, max_length=MAX_ENQUEUE_PARAMS,
        description=f"parameter name -> value: at most {MAX_ENQUEUE_PARAMS} parameters, names of at most "
                    f"{MAX_NAME_LENGTH} characters, strings of at most {MAX_STRING_LENGTH}; each value must fit "
                    "the study's distribution of its parameter (400 otherwise)")


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


# -- babysitting a run: branches, live changes, roll-backs, suggestions ---------------------------------
Step = int | float


class LiveChange(BaseModel):
    step: Step | None = Field(description="the step the change took effect at (the loop's unit: what it passed to "
                                          "sync_live)")
    curve_step: Step | None = Field(description="where the change sits on the curves' step axis (the schedule "
                                                "entry's curve_step when the loop recorded one, else step)")
    values: dict[str, ParamJSON] = Field(description="the values set")
    before: dict[str, ParamJSON] = Field(description="what each value was before")
    sources: list[str] = Field(description="who asked: 'cli', 'dashboard', 'suggestion', 'auto: <rule>', ...")
    notes: list[str]
    at: str | None = Field(description="when it applied (ISO 8601)")
    when: str = Field(description="where it applied, in words: 'epoch 21.9 (optimizer step 241)', 'optimizer step "
                                  "300' or 'step 12'")


class PendingRequest(BaseModel):
    index: int = Field(description='its index in system_attrs["live_requests"]')
    values: dict[str, ParamJSON]
    source: str | None
    note: str | None
    at: str | None = Field(description="when it was asked (ISO 8601)")


class BranchModel(BaseModel):
    number: int
    parent: int | None = Field(description="the trial whose checkpoint it starts from (null for a root)")
    step: int | None = Field(description="the fork step: the parent's checkpoint it starts from (null for a root)")
    kind: str | None = Field(description="'rollback', 'resume', or null for a root")
    state: State
    value: float | None
    first_step: int | None = Field(description="the first step of the chosen metric's curve")
    last_step: int | None = Field(description="the last step of the chosen metric's curve")
    params: dict[str, ParamJSON] = Field(description="the hyperparameters it started with")
    current: dict[str, ParamJSON] = Field(description="its hyperparameters now (after every applied change)")
    set: dict[str, ParamJSON] = Field(description="the values changed when the branch was made")
    changes: list[LiveChange] = Field(description="the changes applied while it trained, in order")
    pending: list[PendingRequest] = Field(description="change requests it has not applied yet")
    checkpoints: list[int] = Field(description="the steps of the checkpoints it keeps (one can roll back to these)")
    note: str | None = Field(description="the note given when the branch was made")
    stop_requested: bool
    children: list[int] = Field(description="the branches made from its checkpoints, by fork step then number")
    curve: Curve = Field(description="the chosen metric's curve")


class RunTree(BaseModel):
    metric: str | None = Field(description="the metric of the curves (default: the run's monitored metric)")
    metrics: list[str] = Field(description="metrics the newest branches reported (for a metric selector)")
    is_run: bool = Field(description="true when a trial is a branch or had a live change or request")
    roots: list[int] = Field(description="the trials that start from scratch (or whose parent is gone)")
    branches: list[BranchModel] = Field(description="every trial of the study as a branch, by number")


class TrialLive(BaseModel):
    number: int
    state: State
    current: dict[str, ParamJSON] = Field(description="its hyperparameters now (after every applied change)")
    live_names: list[str] | None = Field(description="the names its training loop said it can change, if it said")
    changes: list[LiveChange]
    pending: list[PendingRequest]
    checkpoints: list[int] = Field(description="the steps of the checkpoints it keeps")
    parent: int | None
    step: int | None = Field(description="the fork step, for a branch")


class LiveBody(BaseModel):
    values: dict[str, ParamJSON] = Field(min_length=1, description="hyperparameter name -> new value")
    note: str | None = Field(default=None, max_length=10_000)


class LiveRequested(BaseModel):
    index: int = Field(description='the request\'s index in the trial\'s system_attrs["live_requests"]')
    values: dict[str, ParamJSON] = Field(description="the values as stored (cast to their parameters' kinds)")


class RollbackBody(BaseModel):
    to: int = Field(ge=0, le=MAX_INT64, description="the checkpoint step to go back to")
    trial: int | None = Field(default=None, ge=0, le=MAX_INT64,
                              description="the trial whose checkpoint (default: the running branch, else the newest "
                                          "that keeps that step)")
    values: dict[str, ParamJSON] | None = Field(default=None, description="hyperparameters to change")
    note: str | None = Field(default=None, max_length=10_000)


class RolledBack(BaseModel):
    number: int = Field(description="the new branch (WAITING until the training process claims it)")


class SuggestionModel(BaseModel):
    id: str
    kind: str = Field(description="what it does: 'halve_lr', 'lower_lr', 'rollback_lower_lr', ..., 'keep_going'")
    condition: str
    message: str
    values: dict[str, ParamJSON] = Field(description="the hyperparameters it sets (empty for 'keep_going')")
    rollback_to: int | None = Field(description="the checkpoint step it goes back to first, or null")
    trial: int
    metric: str
    evidence: dict[str, Any]


class Accepted(BaseModel):
    result: int = Field(description="the change request's index, or the new branch's number for a roll-back")
    kind: str
    rollback: bool
