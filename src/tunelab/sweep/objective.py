"""The sweep's objective: a picklable callable that runs one trial's command in a worker process.

:class:`SweepObjective` holds only the checked configuration (plain data), so tunelab's worker processes
receive it by reference and value like any objective. Each call renders the command for the trial's
parameters, runs it (:func:`tunelab.sweep.process.run_command`), stores what it reports through
``trial.report`` and judges the end:

- pruned: :class:`~tunelab.TrialPruned` (the trial is PRUNED and keeps its curve), whatever the exit code;
- timed out, killed, a non-zero exit: :class:`~tunelab.errors.TrialCommandError` with the last lines of
  stderr (FAIL; the sweep goes on);
- exit 0: the value is ``{"value": ...}``, else the metric in ``{"final": {...}}``, else the metric's last
  reported value; none of them: FAIL ("no val_loss was reported; the script printed: ..."). Each metric of
  ``constraints:`` is read the same way (final, else last) and recorded with its bounds by
  :meth:`~tunelab.Trial.set_constraint`; a constraint's metric never reported fails the trial too.

The trial's user attribute ``sweep`` records the command, its exit code, its duration, where its logs are
and, for a command that failed within ``start_failure_seconds`` without reporting anything, ``start_failure``
(read by :class:`StartFailures` in the sweep's own process).
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import SweepStartError, TrialCommandError, TrialPruned
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study, Trial
from tunelab.sweep.command import render_argv, render_shell, trial_env, write_params_file
from tunelab.sweep.config import SweepConfig, env_name
from tunelab.sweep.process import CommandResult, run_command

SWEEP_ATTR = "sweep"
"""The trial's user attribute written by the sweep."""
PARAMS_FILE = "params.json"
_SHOWN_LINES = 10


@dataclass
class SweepObjective:
    """``objective(trial)``: run the sweep's command for ``trial`` and return its value."""

    config: SweepConfig

    def __call__(self, trial: Trial) -> float | tuple[float, ...]:
        c = self.config
        params = {name: trial.params[name] for name in c.space if name in trial.params}
        trial.flush()  # the parameters are stored now: a trial cut off with its sweep keeps them
        folder = trial.checkpoint_dir
        params_file = str(folder / PARAMS_FILE)
        write_params_file(params_file, params)
        if c.shell:
            args: str | list[str] = render_shell(c.command, params, c.args)
            shown = args
        else:
            args = render_argv(c.command, params, c.args)
            shown = shlex.join(args)
        env = trial_env(
            os.environ, c.env, params, {name: env_name(name) for name in params},
            study=c.study, number=trial.number, params_file=params_file, trial_dir=str(folder), channel={},
        )
        if c.wandb:
            from tunelab.sweep.wandb_config import shim_env

            env = shim_env(env)

        judged = _judged_metrics(c)

        def on_report(step: int, metrics: dict[str, float]) -> bool:
            trial.report(step, **metrics)
            # A line without the sweep's metric (training metrics between validations) has nothing for
            # the pruner to judge: it is stored, and the pruner is asked at the next line that has it.
            return all(m in metrics for m in judged) and trial.should_prune()

        result = run_command(
            args, shell=c.shell, cwd=c.workdir, env=env, logs=folder, log_limit=c.log_limit_bytes,
            on_report=on_report, regexes=c.metrics_regex, trial_timeout=c.trial_timeout, prune_grace=c.prune_grace,
        )
        start_failure = (not result.pruned and not result.timed_out and result.reports == 0
                         and result.elapsed < c.start_failure_seconds
                         and (result.returncode != 0 or _value(result, c.metric, c.is_multi_objective) is None))
        record: dict[str, Any] = {
            "command": shown, "exit_code": result.returncode, "seconds": round(result.elapsed, 3),
            "logs": str(folder), "reports": result.reports,
        }
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            record["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
        if result.signals:
            record["signals"] = result.signals
        if start_failure:
            record["start_failure"] = True
            record["stderr_tail"] = result.stderr_tail[-3:]
        trial.set_user_attr(SWEEP_ATTR, record)
        if result.final:
            trial.set_user_attr("final", result.final)
        if result.pruned:
            raise TrialPruned()
        failure = _failure(result, c)
        if failure is not None:
            raise TrialCommandError(failure)
        metrics = c.objectives[0]
        values = [_value(result, m, several=len(metrics) > 1) for m in metrics]
        measured = {name: _value(result, name, several=True) for name in c.constraints}
        missing = [m for m, v in zip(metrics, values, strict=True) if v is None]
        missing += [name for name, v in measured.items() if v is None and name not in missing]
        if missing:
            printed = _shown(result.stdout_tail) or _shown(result.stderr_tail) or "nothing"
            m = missing[0]
            raise TrialCommandError(
                f"no {' or '.join(missing)} was reported; the script printed: {printed}. Print a JSON line such as "
                f'{{"step": 1, "{m}": 0.5}}, call tunelab.script.report(step, {m}=...), or set '
                "metrics_regex in the sweep file")
        broken = [(name, v) for name, v in measured.items() if v is not None and not math.isfinite(v)]
        if broken:  # as a NaN value does: FAIL with what the script said (not an error of tunelab's code)
            name, v = broken[0]
            raise TrialCommandError(
                f"the script reported {name}={v}, a metric of constraints:, whose bound needs a finite value; "
                f"report a finite {name} (a run that broke the bound can report any value beyond it)")
        for name, (lower, upper) in c.constraints.items():
            value = measured[name]
            assert value is not None  # (a missing one failed above)
            trial.set_constraint(name, value, lower=lower, upper=upper)
        found = [v for v in values if v is not None]
        return found[0] if len(found) == 1 else tuple(found)


def _value(result: CommandResult, metric: str, several: bool = False) -> float | None:
    """The trial's value of ``metric``: ``{"value": x}`` (one objective only), else the final, else the last."""
    if result.value is not None and not several:
        return result.value
    if result.final and metric in result.final:
        return result.final[metric]
    return result.last.get(metric)


def _shown(lines: list[str]) -> str:
    kept = [line for line in lines if line.strip()][-_SHOWN_LINES:]
    return "\n".join(kept)


def _failure(result: CommandResult, c: SweepConfig) -> str | None:
    """Why the command failed, with the end of its stderr, or None."""
    if result.start_error is not None:
        return f"the command could not be started: {result.start_error}"
    stderr = _shown(result.stderr_tail)
    tail = f"; the last lines of stderr:\n{stderr}" if stderr else "; it wrote nothing on stderr"
    if result.timed_out:
        sent = ", ".join(result.signals)
        return f"timed out after {c.trial_timeout:g}s (trial_timeout): its processes were stopped ({sent}){tail}"
    rc = result.returncode
    if rc is None or rc == 0:
        return None
    if rc < 0:
        return f"the command was killed by signal {_signal_name(-rc)}{tail}"
    return f"the command exited with code {rc}{tail}"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


@dataclass
class StartFailures:
    """A callback of the sweep's own process: stops the sweep after ``limit`` trials in a row failed at start-up
    (:class:`~tunelab.errors.SweepStartError`, naming the command's line and the last one's stderr)."""

    limit: int
    where: str
    study: str
    count: int = field(default=0, init=False)

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        info = trial.user_attrs.get(SWEEP_ATTR)
        info = info if isinstance(info, Mapping) else {}
        if trial.state == TrialState.FAIL and info.get("start_failure"):
            self.count += 1
            if self.limit and self.count >= self.limit:
                raise SweepStartError(self._message(trial, info))
        elif not (trial.state == TrialState.FAIL and (trial.error or "").startswith("interrupted")):
            self.count = 0

    def _message(self, trial: FrozenTrial, info: Mapping[str, Any]) -> str:
        stderr = [str(x) for x in info.get("stderr_tail") or [] if str(x).strip()]
        code = info.get("exit_code")
        how = "could not be started" if code is None else f"exited with code {code}"
        said = f"; its stderr ends with: {stderr[-1]}" if stderr else ""
        seconds = info.get("seconds")
        within = f" after {seconds:.1f}s" if isinstance(seconds, (int, float)) and math.isfinite(seconds) else ""
        return (f"{self.where}: the last {self.count} trials failed at start-up without reporting anything; "
                f"trial {trial.number} ran `{info.get('command', '?')}`, which {how}{within}{said}. Fix the command "
                f"(a missing file, a typo), check it by hand, and run the sweep again; "
                f"`tunelab show {shlex.quote(self.study)} --trial {trial.number}` shows its logs")


def _judged_metrics(c: SweepConfig) -> tuple[str, ...]:
    """The metrics the sweep's pruner reads: the file's, unless its ``pruner:`` entry names its own."""
    spec = c.pruner or {}
    own = spec.get("metrics") if c.is_multi_objective else spec.get("metric")
    if own:
        return (own,) if isinstance(own, str) else tuple(own)
    return c.objectives[0]
