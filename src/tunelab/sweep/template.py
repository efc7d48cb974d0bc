"""``tunelab sweep --init train.py``: a commented sweep file to start from.

The script's options become the parameters and the command: argparse, click, Typer and LightningCLI options
(``--lr {lr}``), or the keys and config groups of a Hydra config (``optimizer.lr={optimizer.lr} model={model}``),
read from the source without running it (:mod:`tunelab.sweep.script_options`). A flag without a value cannot be
set by a placeholder: it is listed, commented out, with how to tune it. Otherwise the template has one example
parameter. The result always passes :func:`tunelab.sweep.load_config`.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from tunelab.sweep.script_options import read_options

_FILL_IN = "FILL_IN"
"""Written in the command for an argument the script requires that is no parameter (``--data FILL_IN``)."""
_STYLE = {"argparse": "with argparse", "click": "with click", "typer": "as Typer options",
          "hydra": "in its Hydra config", "lightning": "to LightningCLI (its classes' __init__ arguments)"}


def render_template(script: str, study: str | None = None, file: str = "sweep.yaml", named: str | None = None) -> str:
    """The text of a sweep file for ``script`` (a path, read for its options); ``named``: the script's path as the
    command names it, from the sweep file's folder where the command runs (default: ``script``)."""
    path = Path(script)
    read = read_options(path) if path.suffix == ".py" else None
    options = read.options if read is not None else ()
    runner = "python" if path.suffix == ".py" else ("sh" if path.suffix == ".sh" else "")
    head = f"{runner} {shlex.quote(named or script)}".strip()
    head += "".join(f" {o.flag}" for o in options if o.subcommand)  # LightningCLI's `fit`
    given = [o for o in options if o.required and not o.yaml and not o.subcommand]
    if given:  # fixed arguments the script requires: a value for the user to fill in
        head += "".join(f" {o.flag} {_FILL_IN}" if o.flag else f" {_FILL_IN}" for o in given)
    valued = [o for o in options if not o.switch and o.yaml]
    found = f"# {script}: {read.note}.\n" if read is not None and read.note else ""
    if valued and read is not None:
        command = head + "".join(f" {o.word()}" for o in valued)
        params = "\n".join(f"  {o.name}: {o.definition()}" for o in valued)
        params += "".join(
            f"\n  # {o.name}: {o.yaml}   # {o.flag} is a flag and takes no value: to tune it, give the "
            f"script an option {o.flag} true|false and add {o.flag} {{{o.name}}} to the command"
            for o in options if o.switch)
        found += f"# The parameters below are the options {script} declares {_STYLE[read.style]}: check their ranges.\n"
        if any(o.when for o in valued):
            found += ("# A parameter with `when:` belongs to one option of a config group: it is set only while "
                      "that option is chosen.\n")
    elif read is not None and read.style == "hydra":
        command = head + " lr={lr}"  # a Hydra override: key=value
        params = "  lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}"
    else:
        command = head + " --lr {lr}"
        params = "  lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}"
    if given:
        found += (f"# {script} requires {', '.join(o.flag or o.name for o in given)}: replace each {_FILL_IN} "
                  "in the command with its value.\n")
    name = study or re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) + "-sweep"
    return f"""\
# A tunelab sweep: run it with `tunelab sweep {file}` (the same command resumes it).
# Every key is described in docs/sweep.md.
study: {name}                       # created, or continued when it exists
storage: sqlite:///tunelab.db         # any tunelab storage URL; a relative SQLite path starts beside this file

# The command of one trial. {{name}} is a parameter's value; {{name?}} is dropped (with the option before it)
# when a conditional parameter is inactive. The script also finds its parameters in TUNELAB_PARAMS (JSON),
# TUNELAB_PARAM_<NAME> and the JSON file at TUNELAB_PARAMS_FILE.
command: {command}
# shell: true                         # run the command with /bin/sh (pipes, &&); values are quoted for it
# args: auto                          # append --name value for each parameter the command does not name

{found}parameters:
{params}
  # width:     {{type: int, low: 16, high: 512, log: true}}
  # optimizer: {{type: categorical, choices: [sgd, adam]}}
  # momentum:  {{type: float, low: 0.0, high: 0.99, when: {{optimizer: sgd}}}}   # only when optimizer is sgd

# The script prints JSON lines such as {{"step": 3, "val_loss": 0.41}} (or calls tunelab.script.report);
# the trial's value is the metric's last value, unless it prints {{"value": ...}} or {{"final": {{...}}}}.
metric: val_loss
direction: minimize
# metrics_regex: 'epoch (?P<step>\\d+) val_loss=(?P<val_loss>[\\d.e-]+)'   # for scripts that print text

sampler: auto                         # auto | gp | tpe | random | grid | coarse-to-fine, or {{type: tpe, ...}}
pruner: none                          # none | median | asha | hyperband | curve, or {{type: asha, ...}}
n_trials: 20                          # the study's total: running the file again continues up to it
workers: 1                            # trials at once
gpus_per_trial: 0                     # 0, a whole number, or a fraction that divides 1 (0.5: two trials a GPU)
# trial_timeout: 3600                 # seconds, then the trial's processes are stopped and it FAILs
# prune_grace: 30                     # seconds between SIGTERM and SIGKILL of a pruned trial
# max_start_failures: 3               # stop after this many trials in a row fail at once without reporting
# log_limit_mb: 10                    # per stream: the head and the tail of longer logs are kept
"""


def write_template(script: str, output: Path, study: str | None = None, force: bool = False) -> Path:
    """Write :func:`render_template` to ``output`` (refusing to overwrite a file unless ``force``)."""
    from tunelab.errors import SweepConfigError

    if output.exists() and not force:
        raise SweepConfigError(f"{output} exists; choose another file with --output, or remove it first")
    if not Path(script).exists():
        raise SweepConfigError(f"{script}: no such file; give the training script the sweep will run")
    # the command runs in the sweep file's folder: name the script from there (sweep --init train.py -o sub/x.yaml)
    where, folder = os.path.abspath(script), os.path.abspath(output.parent)
    same_drive = os.path.splitdrive(where)[0] == os.path.splitdrive(folder)[0]
    shared = os.path.commonpath([where, folder]) if same_drive else ""
    named = where if os.path.isabs(script) or os.path.dirname(shared) == shared else os.path.relpath(where, folder)
    output.write_text(render_template(script, study, output.name, named), encoding="utf-8")
    return output


__all__ = ["render_template", "write_template"]
