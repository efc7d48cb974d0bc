"""The sweep file: its schema (pydantic), its checks, and :class:`SweepConfig`, what a sweep runs with.

:func:`load_config` reads a YAML file, applies the command line's overrides, validates every key and
returns a :class:`SweepConfig` (plain, picklable data) or raises
:class:`~tunelab.errors.SweepConfigError`, one line naming the file, the line, the key and the fix::

    sweep.yaml:9: parameters.lr: low (0.1) must not exceed high (0.001); swap them

Nothing runs before the whole file is checked.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int
from tunelab.errors import ConfigError, StorageError, SweepConfigError
from tunelab.execution.gpus import parse_gpus_per_trial
from tunelab.priors import LogNormal, Normal
from tunelab.space import Conditional, SpaceEntry, validate_space
from tunelab.sweep.command import placeholders
from tunelab.sweep.yamlfile import KeyPath, Lines, dotted, parse_yaml, read_yaml

Scalar = bool | int | float | str | None


def _not_a_bool(value: object) -> object:
    """YAML's true/false where a number belongs (``low: true``): refused, not read as 1 or 0."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number here; write a number such as 0.1")
    return value


def _not_a_bool_integer(value: object) -> object:
    """As :func:`_not_a_bool`, for a count (``n_trials: true`` was 1 trial), with a whole number as the example."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number here; write a whole number such as 3")
    return value


Number = Annotated[float, BeforeValidator(_not_a_bool)]
Integer = Annotated[int, BeforeValidator(_not_a_bool_integer)]

GPUS_PER_TRIAL_FIX = ("write gpus_per_trial: 0 (no GPUs), a whole number of GPUs per trial (1, 2) or a fraction "
                      "that divides one GPU (0.5, 0.25: trials sharing it)")
GPUS_FIX = "list the devices, e.g. gpus: [0, 1] (or '0,1'), or write gpus: all (every device found)"


def _gpus_per_trial(value: object) -> object:
    """``gpus_per_trial:`` a finite number >= 0 (not true/false, not text): the message names the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML writes it
        raise ValueError(f"{shown} is not a number of GPUs; {GPUS_PER_TRIAL_FIX}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} GPUs: {GPUS_PER_TRIAL_FIX}")
    return value


def _gpus(value: object) -> object:
    """``gpus:`` all, a list of device numbers >= 0 (each once) or the same as text ('0,1')."""
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", value):
            raise ValueError(f"{value!r} is not a list of device numbers; {GPUS_FIX}")
        value = [int(x) for x in value.split(",")]
        return ",".join(str(x) for x in _device_list(value, value))
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is one number, not a list of devices; write gpus: [{value}] for device {value} "
                         "alone (gpus_per_trial says how many GPUs each trial gets)")
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not a list of device numbers; {GPUS_FIX}")
    return _device_list(value, value)


def _device_list(items: list[Any], shown: object) -> list[int]:
    if not items:
        raise ValueError(f"{shown!r} lists no device; {GPUS_FIX}")
    seen: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ValueError(f"{item!r} in {shown!r} is not a device number (0, 1, ...); {GPUS_FIX}")
        if item in seen:
            raise ValueError(f"device {item} is listed twice in {shown!r}; list each device once, e.g. gpus: [0, 1]")
        seen.append(item)
    return seen
DEFAULT_STORAGE = "sqlite:///tunelab.db"
SAMPLERS = ("auto", "gp", "tpe", "random", "grid", "coarse-to-fine")
PRUNERS = ("none", "median", "asha", "hyperband", "curve")
RESERVED_METRICS = ("step", "value", "final")
_Direction = Literal["minimize", "maximize"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriorSpec(_Strict):
    """``prior: {type: lognormal, center: 3.0e-4, spread: 1.0}`` on a float or int parameter."""

    type: Literal["normal", "lognormal"]
    center: Number
    spread: Number


class FloatParam(_Strict):
    type: Literal["float"]
    low: Number
    high: Number
    log: bool = False
    step: Number | None = None
    prior: PriorSpec | None = None
    when: dict[str, Scalar | list[Scalar]] | None = None


class IntParam(_Strict):
    type: Literal["int"]
    low: Integer
    high: Integer
    log: bool = False
    step: Integer = 1
    prior: PriorSpec | None = None
    when: dict[str, Scalar | list[Scalar]] | None = None


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: Annotated[list[Scalar], Field(min_length=1)]
    prior: list[Number] | None = None
    when: dict[str, Scalar | list[Scalar]] | None = None


class BoolParam(_Strict):
    type: Literal["bool"]
    prior: Number | None = None
    """The probability of true (``Bool(p=...)``)."""
    when: dict[str, Scalar | list[Scalar]] | None = None


Param = Annotated[FloatParam | IntParam | CategoricalParam | BoolParam, Field(discriminator="type")]


class ConstraintSpec(_Strict):
    """``constraints: {peak_memory_gb: {upper: 8}}``: a bound on a metric the script reports."""

    upper: Number | None = None
    lower: Number | None = None


class Component(BaseModel):
    """``{type: tpe, n_startup_trials: 5}``: a sampler or pruner with its options."""

    model_config = ConfigDict(extra="allow")
    type: str


class SweepFile(_Strict):
    """The keys of a sweep file (see docs/sweep.md)."""

    study: str | None = None
    storage: str = DEFAULT_STORAGE
    command: str | Annotated[list[str], Field(min_length=1)]
    shell: bool = False
    args: Literal["none", "auto", "env"] = "none"
    workdir: str | None = None
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    parameters: Annotated[dict[str, Param], Field(min_length=1)]
    metric: str | Annotated[list[str], Field(min_length=1)]
    direction: _Direction | Annotated[list[_Direction], Field(min_length=1)] = "minimize"
    sampler: str | Component = "auto"
    pruner: str | Component | None = None
    n_trials: Annotated[Integer, Field(ge=1)] | None = None
    timeout: Annotated[Number, Field(gt=0)] | None = None
    workers: Annotated[Integer, Field(ge=1)] = 1
    gpus_per_trial: Annotated[float, BeforeValidator(_gpus_per_trial)] = 0
    gpus: Annotated[list[int] | str | None, BeforeValidator(_gpus)] = None
    trial_timeout: Annotated[Number, Field(gt=0)] | None = None
    prune_grace: Annotated[Number, Field(ge=0)] = 30.0
    max_start_failures: Annotated[Integer, Field(ge=0)] = 3
    start_failure_seconds: Annotated[Number, Field(gt=0)] = 10.0
    log_limit_mb: Annotated[Number, Field(gt=0)] = 10.0
    metrics_regex: str | list[str] | None = None
    wandb: bool = False
    seed: Annotated[Integer, Field(ge=0)] | None = None
    constraints: dict[str, ConstraintSpec] = Field(default_factory=dict)


KEYS = tuple(SweepFile.model_fields)
"""Every key a sweep file may have."""
_PARAM_KEYS: dict[str, type[BaseModel]] = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam,
                                          "bool": BoolParam}


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep file: what :func:`tunelab.sweep.run_sweep` runs (plain data, picklable)."""

    file: str
    study: str
    storage: str
    command: str | tuple[str, ...]
    shell: bool
    args: str
    workdir: str
    env: Mapping[str, str]
    space: Mapping[str, SpaceEntry]
    metric: str
    direction: str
    sampler: Mapping[str, Any]
    pruner: Mapping[str, Any] | None
    n_trials: int | None
    timeout: float | None
    workers: int
    gpus_per_trial: float
    gpus: tuple[int, ...] | str | None
    trial_timeout: float | None
    prune_grace: float
    max_start_failures: int
    start_failure_seconds: float
    log_limit_bytes: int
    metrics_regex: tuple[str, ...]
    seed: int | None
    warnings: tuple[str, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)
    """Line of each top-level key in the file (for errors found later, e.g. a study whose space differs)."""
    metrics: tuple[str, ...] = ()
    """Every objective's metric (``metric: [val_acc, latency_ms]``); ``metric`` is the first."""
    directions: tuple[str, ...] = ()
    """Every objective's direction; ``direction`` is the first."""
    constraints: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Metric -> (lower, upper) bounds: a trial is feasible when its values of these metrics hold them."""
    wandb: bool = False
    """The script logs with wandb: its ``wandb.log`` calls are its reports, ``wandb.init`` gets the parameters."""

    @property
    def objectives(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The metrics and directions of the sweep's objectives (one each for a single objective)."""
        return (self.metrics or (self.metric,)), (self.directions or (self.direction,))

    @property
    def is_multi_objective(self) -> bool:
        """Whether the sweep trades several metrics (a study with several objectives)."""
        return len(self.objectives[0]) > 1

    def where(self, key: str) -> str:
        """``file:line: key`` for messages about ``key``."""
        line = self.lines.get(key.split(".")[0])
        return f"{self.file}:{line}: {key}" if line is not None else f"{self.file}: {key}"

    def build_sampler(self) -> Any:
        """The sampler the file names (built fresh: a sampler object is not shared between studies)."""
        return build_sampler(self.sampler, self.where("sampler"), self.lines.get("sampler"))

    def build_pruner(self) -> Any:
        """The pruner the file names, reading the sweep's metric, or None."""
        metrics, directions = self.objectives
        if self.is_multi_objective:
            return build_pareto_pruner(self.pruner, metrics, directions, self.where("pruner"), self.lines.get("pruner"))
        return build_pruner(self.pruner, self.metric, self.direction, self.where("pruner"), self.lines.get("pruner"))


def load_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read and check the sweep file at ``path``; ``overrides`` (``n_trials``, ``workers``, ``storage``,
    ``gpus``, ``gpus_per_trial``, ...) replace its keys (the command line's flags). SweepConfigError on
    anything wrong."""
    p = Path(path)
    data, lines = read_yaml(p)
    return config_from_data(data, lines, p.resolve().parent, overrides)


def config_from_text(text: str, folder: str | os.PathLike[str], file: str = "sweep.yaml",
                     overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """:func:`load_config` of YAML text (``folder``: where relative paths start)."""
    data, lines = parse_yaml(text, file)
    return config_from_data(data, lines, Path(folder).resolve(), overrides)


def config_from_data(data: dict[str, Any], lines: Lines, folder: Path,
                     overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """The checked configuration of a parsed sweep file."""
    data = dict(data)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        if key not in KEYS:
            raise SweepConfigError(f"command line: unknown override {key!r}", key=key)
        data[key] = value
    for key in given:
        lines.lines.pop((key,), None)
    if "storage" in given and isinstance(given["storage"], str):
        data["storage"] = _absolute_sqlite(given["storage"], Path.cwd())  # a flag's path starts in the cwd
    params = data.get("parameters")
    if isinstance(params, dict):  # shorthand: `optimizer: [sgd, adam]` is a categorical parameter
        data["parameters"] = {
            k: {"type": "categorical", "choices": v} if isinstance(v, list) else v for k, v in params.items()
        }
    try:
        parsed = SweepFile.model_validate(data)
    except ValidationError as e:
        raise _explain(e, data, lines, given) from None
    return _check(parsed, lines, folder, "storage" in given)


# -- pydantic's errors, as one line each -----------------------------------------------------------
def _explain(e: ValidationError, data: Mapping[str, Any], lines: Lines, given: Mapping[str, Any]) -> SweepConfigError:
    errors = e.errors()
    first = _pick(errors)
    loc: KeyPath = tuple(x for x in first["loc"] if not _is_union_branch(x))
    kind, msg = first["type"], first["msg"]
    key = dotted(loc)
    if loc and loc[0] in given:
        where = "command line"
    else:
        where = lines.where(loc)
    value = first.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], data)
        hint = _closest(str(loc[-1]), known)
        fix = f"did you mean {hint!r}?" if hint else f"the keys here are: {', '.join(known)}"
        text = f"unknown key {loc[-1]!r}; {fix}"
        if len(loc) == 1 and "command" not in data and {"program", "method"} & set(data):
            text = (f"unknown key {loc[-1]!r}: this looks like a W&B Sweeps configuration; convert it with "
                    f"tunelab sweep --from-wandb {lines.file} -o sweep.yaml, "
                    "then run tunelab sweep sweep.yaml")
    elif kind == "missing":
        text = f"missing; {_missing_fix(loc)}"
    elif kind == "union_tag_invalid":
        text = (f"unknown parameter type {value.get('type') if isinstance(value, dict) else value!r}; "
                "use one of: float, int, categorical, bool")
        key = dotted((*loc, "type"))
        where = lines.where((*loc, "type")) if where != "command line" else where
    elif kind == "union_tag_not_found":
        text = "a parameter needs a type: {type: float, low: ..., high: ...}, int, categorical (choices: [...]) or bool"
    elif kind == "literal_error":
        expected = msg.split("Input should be ", 1)[-1]
        text = f"{value!r} is not allowed; use {expected}"
    elif (len(loc) == 3 and loc[0] == "parameters" and loc[2] == "prior" and isinstance(value, (dict, list))
          and isinstance((spec := (data.get("parameters") or {}).get(loc[1])), Mapping) and spec.get("type") == "bool"):
        pair = isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        text = "a bool's prior is one number, the probability of true: " + (
            f"write prior: {value[1]} for [false, true] = {value!r}" if pair else "e.g. prior: 0.8")
    elif len(loc) == 2 and loc[0] == "constraints" and not isinstance(value, dict):  # mem: 8
        bound = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 8.0
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
        text = (f"{shown} is no bound; write {loc[1]}: {{upper: {bound}}} (the metric at or below it), "
                "{lower: ...}, or both")
    elif kind == "value_error":  # our own validators' messages say the value and the fix already
        text = msg.removeprefix("Value error, ")
    else:
        text = f"{msg} (got {value!r})" if "input" in first and not isinstance(value, (dict, list)) else msg
    line = None if where == "command line" else lines.line(loc)
    return SweepConfigError(f"{where}: {key}: {text}", key=key, line=line)


def _is_union_branch(x: object) -> bool:
    # pydantic adds the branch of a union to the location ("str", "list[str]", "float", "Component", ...)
    return isinstance(x, str) and (x in ("str", "int", "float", "bool", "none", "Component", "function-after")
                                   or x.startswith(("list[", "dict[", "constrained-", "literal[")) or x in _PARAM_KEYS)


def _pick(errors: Sequence[Any]) -> Any:
    """The most telling error: an unknown key or a missing one before a union's every branch failing."""
    order = {"extra_forbidden": 0, "missing": 1, "union_tag_invalid": 0, "union_tag_not_found": 0}
    return sorted(errors, key=lambda er: (order.get(er["type"], 2), len(er["loc"])))[0]


def _known_keys(parent: KeyPath, data: Mapping[str, Any] | None = None) -> list[str]:
    if not parent:
        return list(KEYS)
    if parent[0] == "parameters" and len(parent) == 2:
        # the keys of this parameter's type (a bool has no low:, a categorical no log:), else of any type
        params = (data or {}).get("parameters")
        spec = params.get(parent[1]) if isinstance(params, Mapping) else None
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        model = _PARAM_KEYS.get(kind) if isinstance(kind, str) else None
        if model is not None:
            return list(model.model_fields)
        return ["type", "low", "high", "log", "step", "choices", "prior", "when"]
    if parent[0] == "parameters" and len(parent) == 3 and parent[2] == "prior":
        return ["type", "center", "spread"]
    if parent[0] == "constraints" and len(parent) == 2:
        return list(ConstraintSpec.model_fields)
    return []


def _closest(name: str, options: Sequence[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return found[0] if found else None


def _missing_fix(loc: KeyPath) -> str:
    fixes = {
        ("command",): "add the command that trains, e.g. command: python train.py --lr {lr}",
        ("parameters",): "add the parameters to tune, e.g. "
                         "parameters: {lr: {type: float, low: 1.0e-5, high: 0.1, log: true}}",
        ("metric",): "name the metric the script reports (its value is the trial's), e.g. metric: val_loss",
    }
    if loc in fixes:
        return fixes[loc]
    if len(loc) == 3 and loc[0] == "parameters":
        return f"add {loc[2]}: ... to parameter {loc[1]!r}"
    return f"add {loc[-1]}:"


# -- checks beyond the schema ----------------------------------------------------------------------
_CONTROL_OPERATORS = ("|", "||", "&&", ";", "&", "|&", ";;")


def _last_control_operator(command: str | Sequence[str]) -> tuple[str, str] | None:
    """The last shell control operator outside quotes (``|``, ``&&``, ``;``...) of a shell command and the
    words after it (the command that ``args: auto``'s words would go to), or None."""
    try:
        text = re.sub(r"\\.", "_", command if isinstance(command, str) else " ".join(command))  # \; is a word
        words = list(shlex.shlex(text, posix=False, punctuation_chars=True))  # posix=False: '|' stays quoted
    except ValueError:  # a quote left open: reported by the shell, not here
        return None
    at = [i for i, w in enumerate(words) if w in _CONTROL_OPERATORS]
    return None if not at else (words[at[-1]], " ".join(words[at[-1] + 1:]))


def _err(lines: Lines, path: KeyPath, text: str) -> SweepConfigError:
    return SweepConfigError(f"{lines.where(path)}: {dotted(path)}: {text}", key=dotted(path), line=lines.line(path))


def _check(f: SweepFile, lines: Lines, folder: Path, storage_from_flag: bool) -> SweepConfig:
    warnings: list[str] = []
    workdir = Path(f.workdir).expanduser() if f.workdir else folder
    if not workdir.is_absolute():
        workdir = folder / workdir
    if not workdir.is_dir():
        raise _err(lines, ("workdir",), f"{str(workdir)!r} is not a folder; give the folder the command runs in")
    space = _space(f, lines)
    # the command and its placeholders
    if isinstance(f.command, str):
        if not f.command.strip():
            raise _err(lines, ("command",), "the command is empty; give the command that trains, e.g. "
                       "command: python train.py --lr {lr}")
        if not f.shell:
            try:
                shlex.split(f.command)
            except ValueError as e:  # each trial would fail splitting it
                raise _err(lines, ("command",), f"cannot be split into words ({e}); close the quote, or give the "
                           "command as a list of words: command: [python, train.py, --lr, '{lr}']") from None
    try:
        used = placeholders(f.command)
    except ConfigError as e:
        raise _err(lines, ("command",), str(e)) from None
    for name, optional in used:
        if name not in space:
            hint = _closest(name, list(space))
            raise _err(lines, ("command",), f"the placeholder {{{name}{'?' if optional else ''}}} names no parameter; "
                       + (f"did you mean {{{hint}}}?" if hint else f"declare {name} under parameters:, or write "
                          "{{ and }} for literal braces"))
        if isinstance(space[name], Conditional) and not optional:
            raise _err(lines, ("command",), f"{{{name}}} is a conditional parameter (when: ...), absent from "
                       f"some trials; write {{{name}?}} (dropped, with the option before it, when inactive) or "
                       + ("remove it and its option from the command (args: auto passes it when it is active)"
                          if f.args == "auto" else "use args: auto"))
    used_names = {n for n, _ in used}
    last = _last_control_operator(f.command) if f.shell and f.args == "auto" else None
    if last is not None and (last[0] in ("|", "|&", "&") or not last[1]):  # (`cd x && python t.py` is fine)
        operator, after = last
        raise _err(lines, ("args",), f"auto appends --name value at the end of the command, after "
                   f"{operator!r}: the parameters would go " + (f"to {after!r}, not to the script" if after else
                                                               "nowhere (the line ends there)")
                   + "; write placeholders where they belong (--lr {lr}), or set args: env")
    if f.args == "none":
        for name in space:
            if name not in used_names:
                warnings.append(
                    f"{lines.where(('parameters', name))}: parameters.{name} appears in no placeholder of the command; "
                    f"the script gets it only from TUNELAB_PARAMS / TUNELAB_PARAM_{env_name(name)}: add "
                    # a conditional parameter must be written {name?}: {name} would be an error
                    f"{{{name}{'?' if isinstance(space[name], Conditional) else ''}}} to the command or set args: auto")
    metrics, directions = _objectives(f, lines)
    constraints = _constraints(f, lines)
    regexes = [f.metrics_regex] if isinstance(f.metrics_regex, str) else list(f.metrics_regex or [])
    for i, rx in enumerate(regexes):
        path: KeyPath = ("metrics_regex",) if isinstance(f.metrics_regex, str) else ("metrics_regex", i)
        try:
            compiled = re.compile(rx)
        except re.error as e:
            raise _err(lines, path, f"not a regular expression: {e}; quote it in single quotes in YAML") from None
        if not compiled.groupindex:
            raise _err(lines, path, "it has no named group; name what it captures, e.g. "
                       r"'epoch (?P<step>\d+) val_loss=(?P<val_loss>[\d.e-]+)'")
    _check_gpus(f, lines)
    if float(f.gpus_per_trial) > 0 and "CUDA_VISIBLE_DEVICES" in f.env:
        # the worker's assignment reaches the command through its environment: env: would replace it in every trial
        raise _err(lines, ("env", "CUDA_VISIBLE_DEVICES"), "would give every trial the same devices and undo "
                   "gpus_per_trial's assignment; remove it and list the devices with gpus: [0, 1] (or --gpus 0,1)")
    sampler = _component(f.sampler, "sampler", SAMPLERS, lines)
    pruner = None if f.pruner is None else _component(f.pruner, "pruner", PRUNERS, lines)
    if pruner is not None and pruner["type"] == "none":
        pruner = None
    storage = f.storage if storage_from_flag else _absolute_sqlite(f.storage, folder)
    _check_storage(storage, lines)
    study = f.study if f.study is not None else Path(lines.file).stem
    if not study.strip():
        raise _err(lines, ("study",), "the study needs a name, e.g. study: cnn-sweep")
    config = SweepConfig(
        file=lines.file, study=study, storage=storage,
        command=f.command if isinstance(f.command, str) else tuple(f.command), shell=f.shell, args=f.args,
        workdir=str(workdir), env={k: _env_text(v) for k, v in f.env.items()}, space=space, metric=metrics[0],
        direction=directions[0], sampler=sampler, pruner=pruner, n_trials=f.n_trials, timeout=f.timeout,
        workers=f.workers, gpus_per_trial=float(f.gpus_per_trial),
        gpus=tuple(f.gpus) if isinstance(f.gpus, list) else f.gpus, trial_timeout=f.trial_timeout,
        prune_grace=f.prune_grace, max_start_failures=f.max_start_failures,
        start_failure_seconds=f.start_failure_seconds, log_limit_bytes=int(f.log_limit_mb * 1024 * 1024),
        metrics_regex=tuple(regexes), seed=f.seed, wandb=f.wandb, warnings=tuple(warnings),
        lines={str(k[0]): v for k, v in lines.lines.items() if len(k) == 1},
        metrics=metrics if len(metrics) > 1 else (), directions=directions if len(metrics) > 1 else (),
        constraints=constraints,
    )
    # the sampler and pruner's own options are checked by building them once
    sampler_object = config.build_sampler()
    if config.is_multi_objective and not sampler_object.multi_objective:
        raise _err(lines, ("sampler",), f"{sampler['type']} optimises one objective and metric: names "
                   f"{len(metrics)}; use auto, gp (log expected hypervolume improvement), tpe (multi-objective TPE), "
                   "random, grid or coarse-to-fine")
    config.build_pruner()
    return config


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_name(name: str) -> str:
    """``lr`` -> ``LR``, ``optimizer.lr`` -> ``OPTIMIZER_LR``: the suffix of ``TUNELAB_PARAM_...``."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _space(f: SweepFile, lines: Lines) -> dict[str, SpaceEntry]:
    dists: dict[str, Distribution] = {}
    conditions: dict[str, dict[str, Any]] = {}
    for name, p in f.parameters.items():
        path: KeyPath = ("parameters", name)
        if not _NAME.match(name):
            raise _err(lines, path, "a parameter name is letters, digits, '_', '.' or '-', starting with a letter "
                       "or '_' (it becomes a placeholder {name} and a variable TUNELAB_PARAM_NAME)")
        try:
            if isinstance(p, FloatParam):
                if p.low > p.high:
                    raise _err(lines, (*path, "low"), f"low ({p.low:g}) must not exceed high ({p.high:g}); swap them")
                dists[name] = Float(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, IntParam):
                if p.low > p.high:
                    raise _err(lines, (*path, "low"), f"low ({p.low}) must not exceed high ({p.high}); swap them")
                dists[name] = Int(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, CategoricalParam):
                dists[name] = Categorical(p.choices)
            else:
                try:
                    dists[name] = Bool() if p.prior is None else Bool(p=p.prior)
                except ConfigError as e:
                    raise _err(lines, (*path, "prior"), f"{e}: the probability of true, e.g. prior: 0.3") from None
        except SweepConfigError:
            raise
        except ConfigError as e:
            raise _err(lines, path, str(e)) from None
        if not isinstance(p, BoolParam) and p.prior is not None:
            dists[name] = _with_prior(dists[name], p.prior, lines, (*path, "prior"))
        if p.when is not None:
            if not p.when:
                raise _err(lines, (*path, "when"), "when: needs a parent and its value, e.g. when: {optimizer: sgd}")
            conditions[name] = p.when
    for name, when in conditions.items():
        for parent, value in when.items():
            wpath: KeyPath = ("parameters", name, "when", parent)
            if parent not in dists:
                hint = _closest(parent, list(dists))
                raise _err(lines, wpath, f"names {parent!r}, which is no parameter; "
                           + (f"did you mean {hint!r}?" if hint else "name a parameter declared under parameters:"))
            if parent == name:
                raise _err(lines, wpath, "a parameter cannot depend on itself")
            if isinstance(value, list) and not value:
                raise _err(lines, wpath, f"an empty list of values of {parent!r}, so the condition never holds; "
                           f"list the values that make {name} active ({_describe(dists[parent])})")
            for v in value if isinstance(value, list) else [value]:
                if not dists[parent].contains(v):
                    raise _err(lines, wpath, f"{v!r} is not a value of {parent!r} ({_describe(dists[parent])}), "
                               "so the condition never holds; use one of its values")
    seen_env: dict[str, str] = {}
    for name in dists:  # each parameter needs a variable of its own: a.b and a_b are both TUNELAB_PARAM_A_B
        other = seen_env.setdefault(env_name(name), name)
        if other != name:
            raise _err(lines, ("parameters", name), f"{name!r} and {other!r} both become the variable "
                       f"TUNELAB_PARAM_{env_name(name)}, so the script could not tell them apart; rename one")
    order = _parents_first(list(dists), conditions, lines)
    space: dict[str, SpaceEntry] = {}
    for name in order:
        space[name] = Conditional(dists[name], when=conditions[name]) if name in conditions else dists[name]
    try:
        return validate_space(space)
    except ConfigError as e:
        raise _err(lines, ("parameters",), str(e)) from None


def _with_prior(dist: Distribution, spec: PriorSpec | list[float], lines: Lines, path: KeyPath) -> Distribution:
    """``dist`` with the file's ``prior:`` (errors name the prior key and say the fix in YAML terms)."""
    try:
        if isinstance(dist, Categorical):
            return Categorical(dist.choices, prior=spec)  # type: ignore[arg-type]
        assert isinstance(dist, (Float, Int)) and isinstance(spec, PriorSpec)
        if dist.log != (spec.type == "lognormal"):
            want = ("{type: lognormal, center: ..., spread: ...} (spread in decades), because the parameter is "
                    "log: true" if dist.log else
                    "{type: normal, center: ..., spread: ...} (spread in the parameter's units), because the "
                    "parameter is not log: true")
            raise _err(lines, (*path, "type"), f"{spec.type!r} does not fit this parameter; use {want}")
        prior = (LogNormal if spec.type == "lognormal" else Normal)(spec.center, spec.spread)
        return replace(dist, prior=prior)
    except SweepConfigError:
        raise
    except ConfigError as e:
        text = str(e).removeprefix("prior: ")
        key = next((k for k in ("spread", "center") if f"({k}=" in text or f"{k}=" in text), None)
        if isinstance(spec, PriorSpec) and key is not None:
            text = text.replace(f"LogNormal({key}=...)", key).replace(f"Normal({key}=...)", key)
            text = text.replace("e.g. spread=1.0", "e.g. spread: 1.0")
            raise _err(lines, (*path, key), text) from None
        raise _err(lines, path, text) from None


def _describe(d: Distribution) -> str:
    if isinstance(d, Categorical):
        return "choices " + ", ".join(map(repr, d.choices))
    if isinstance(d, Bool):
        return "true or false"
    return repr(d)


def _parents_first(names: list[str], conditions: Mapping[str, Mapping[str, Any]], lines: Lines) -> list[str]:
    """The parameters in file order, each parent moved before its children (cycles are an error)."""
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise _err(lines, ("parameters", name, "when"),
                       f"the conditions go round in a circle ({' -> '.join((*chain, name))}); remove one")
        state[name] = 1
        for parent in conditions.get(name, {}):
            visit(parent, (*chain, name))
        state[name] = 2
        out.append(name)

    for n in names:
        visit(n, ())
    return out


def _check_gpus(f: SweepFile, lines: Lines) -> None:
    """What the keys' own validators cannot see: how ``gpus_per_trial`` shares GPUs, and ``gpus`` without
    GPUs per trial. Every message: the key, what is wrong, the fix in the file's terms."""
    g = float(f.gpus_per_trial)
    if g == 0:
        if f.gpus is not None and f.gpus != "all":  # optimize() refuses the same: the devices would go unused
            raise _err(lines, ("gpus",), f"{f.gpus!r} lists devices but gpus_per_trial is 0, so no trial gets "
                       "any: set gpus_per_trial (e.g. 1, or 0.5 for two trials per GPU), or remove gpus")
        return
    if g < 1:
        try:  # the engine's rule: 1/3 may be written 0.333 (YAML has no fractions)
            parse_gpus_per_trial(g)
        except ConfigError:
            share = 1 / g
            ks = sorted({max(math.floor(share), 1), math.ceil(share)})
            ways = " or ".join(f"gpus_per_trial: {1 / k:.4g} ({k} trials per GPU)" for k in ks)
            raise _err(lines, ("gpus_per_trial",), f"{g:g} does not divide one GPU; write 1/k for k trials per GPU, "
                       f"e.g. {ways}") from None
    elif not float(g).is_integer():
        raise _err(lines, ("gpus_per_trial",), f"{g:g} GPUs: above one, a trial gets whole GPUs; write "
                   f"gpus_per_trial: {math.floor(g)} or gpus_per_trial: {math.ceil(g)}")


def parse_gpus(value: tuple[int, ...] | str | None) -> list[int] | None:
    """The devices of ``gpus:`` (None: every device present)."""
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        return [int(x) for x in value.split(",") if x.strip()]
    return list(value)


def _component(value: str | Component, key: str, names: Sequence[str], lines: Lines) -> dict[str, Any]:
    spec = {"type": value} if isinstance(value, str) else {"type": value.type, **(value.model_extra or {})}
    kind = str(spec["type"]).strip().lower().replace("_", "-")
    if kind in ("coarse2fine", "coarsetofine"):
        kind = "coarse-to-fine"
    if kind in ("successive-halving", "sha"):
        kind = "asha"
    if kind in ("learning-curve", "learningcurve", "curve-extrapolation"):
        kind = "curve"
    if kind not in names:
        hint = _closest(kind, list(names))
        raise _err(lines, (key,) if isinstance(value, str) else (key, "type"),
                   f"unknown {key} {spec['type']!r}; " + (f"did you mean {hint!r}? " if hint else "")
                   + f"use one of: {', '.join(names)}")
    spec["type"] = kind
    return spec


def build_sampler(spec: Mapping[str, Any], where: str, line: int | None = None) -> Any:
    """The sampler of a ``sampler:`` value (``{type: ..., options}``)."""
    from tunelab import samplers

    classes = {"auto": samplers.AutoSampler, "gp": samplers.GPSampler, "tpe": samplers.TPESampler,
               "random": samplers.RandomSampler, "grid": samplers.GridSampler,
               "coarse-to-fine": samplers.CoarseToFineSampler}
    options = {k: v for k, v in spec.items() if k != "type"}
    if "seed" in options:
        raise SweepConfigError(f"{where}: the sampler takes no seed; the file's top-level seed: key seeds every "
                               "draw (e.g. seed: 0)", key=where.rsplit(": ", 1)[-1], line=line)
    return _build(classes[spec["type"]], options, where, line)


def _objectives(f: SweepFile, lines: Lines) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The metrics and directions of ``metric:`` and ``direction:``, checked (one or several)."""
    metrics = [f.metric] if isinstance(f.metric, str) else list(f.metric)
    for i, metric in enumerate(metrics):
        path: KeyPath = ("metric",) if isinstance(f.metric, str) else ("metric", i)
        if metric.strip() == "" or metric in RESERVED_METRICS:
            raise _err(lines, path, f"{metric!r} cannot be a metric (step, value and final have their own "
                       "meaning in the lines a script prints); name the metric the script reports, e.g. val_loss")
    if len(set(metrics)) != len(metrics):
        raise _err(lines, ("metric",), f"a metric is named twice in {metrics}; name each objective once")
    if isinstance(f.direction, str):
        if len(metrics) > 1:
            raise _err(lines, ("direction",), f"metric: names {len(metrics)} objectives; give one direction each, "
                       f"e.g. direction: [{', '.join(['maximize'] + ['minimize'] * (len(metrics) - 1))}]")
        directions = [f.direction]
    else:
        directions = list(f.direction)
        if len(directions) != len(metrics):
            raise _err(lines, ("direction",), f"{len(directions)} direction(s) for {len(metrics)} metric(s) "
                       f"{metrics}; give one direction per metric, in the same order")
    return tuple(metrics), tuple(directions)


def _constraints(f: SweepFile, lines: Lines) -> dict[str, tuple[float | None, float | None]]:
    """The bounds of ``constraints:``, checked: metric -> (lower, upper)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, spec in f.constraints.items():
        path: KeyPath = ("constraints", name)
        if name.strip() == "" or name in RESERVED_METRICS:
            raise _err(lines, path, f"{name!r} cannot be a constraint (step, value and final have their own meaning "
                       "in the lines a script prints); name a metric the script reports, e.g. peak_memory_gb")
        for side in ("lower", "upper"):
            bound = getattr(spec, side)
            if bound is not None and not math.isfinite(bound):
                raise _err(lines, (*path, side), f"{bound} is not a finite number; write a bound such as 8.0")
        if spec.lower is None and spec.upper is None:
            raise _err(lines, path, f"no bound: write {{upper: ...}} (the metric must stay at or below it), "
                       f"{{lower: ...}}, or both, e.g. {name}: {{upper: 8.0}}")
        if spec.lower is not None and spec.upper is not None and spec.lower > spec.upper:
            raise _err(lines, path, f"lower ({spec.lower:g}) is above upper ({spec.upper:g}); no value can hold "
                       "both: swap them")
        out[name] = (spec.lower, spec.upper)
    return out


def build_pareto_pruner(spec: Mapping[str, Any] | None, metrics: Sequence[str], directions: Sequence[str], where: str,
                        line: int | None = None) -> Any:
    """The pruner of a ``pruner:`` value for a sweep with several objectives (Pareto ASHA or median); None
    for none."""
    if spec is None or spec["type"] == "none":
        return None
    from tunelab import pruners

    classes: dict[str, Any] = {"median": pruners.ParetoMedianPruner, "asha": pruners.ParetoSuccessiveHalvingPruner}
    if spec["type"] not in classes:
        raise SweepConfigError(f"{where}: {spec['type']} compares one metric; a sweep with several objectives "
                               "prunes with asha (multi-objective ASHA) or median (the Pareto median rule)",
                               key=where.rsplit(": ", 1)[-1], line=line)
    options = {"metrics": list(metrics), "directions": list(directions),
               **{k: v for k, v in spec.items() if k != "type"}}
    return _build(classes[spec["type"]], options, where, line)


def build_pruner(spec: Mapping[str, Any] | None, metric: str, direction: str, where: str,
                 line: int | None = None) -> Any:
    """The pruner of a ``pruner:`` value, reading ``metric``; None for none."""
    if spec is None or spec["type"] == "none":
        return None
    from tunelab import pruners

    classes = {"median": pruners.MedianPruner, "asha": pruners.SuccessiveHalvingPruner,
               "hyperband": pruners.HyperbandPruner, "curve": pruners.LearningCurvePruner}
    options = {"metric": metric, "direction": direction, **{k: v for k, v in spec.items() if k != "type"}}
    return _build(classes[spec["type"]], options, where, line)


def _build(cls: Any, options: Mapping[str, Any], where: str, line: int | None) -> Any:
    try:
        return cls(**options)
    except TypeError as e:
        import inspect

        known = [p for p in inspect.signature(cls).parameters if p not in ("self", "metric", "direction", "space")]
        text = str(e).split(") ", 1)[-1] if ") " in str(e) else str(e)
        raise SweepConfigError(f"{where}: {cls.__name__} {text}; its options are: {', '.join(known)}",
                               key=where.rsplit(": ", 1)[-1], line=line) from None
    except ConfigError as e:
        raise SweepConfigError(f"{where}: {e}", key=where.rsplit(": ", 1)[-1], line=line) from None


def _absolute_sqlite(url: str, folder: Path) -> str:
    """A relative SQLite path made absolute from ``folder`` (the file's: the same file finds the same study
    from any working directory); other URLs unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    rest = url[len(prefix):]
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return url
    return prefix + str((folder / path).resolve()) + sep + query


def _check_storage(url: str, lines: Lines) -> None:
    from tunelab.storage.urls import check_storage_url

    try:
        check_storage_url(url)
    except StorageError as e:
        raise _err(lines, ("storage",), str(e)) from None
