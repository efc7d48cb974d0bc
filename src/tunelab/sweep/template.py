"""``tunelab sweep --init train.py``: a commented sweep file to start from.

When the script declares its options with argparse (``parser.add_argument("--lr", type=float, default=1e-3)``),
they become the parameters: a float with a positive default ranges over a factor of 10 each way on a log scale,
an int over a factor of 4, ``choices=[...]`` is categorical. An ``action="store_true"`` flag takes no value, so no
placeholder can set it (``--use-bn false`` is an argparse error): it is listed, commented out, with how to tune it.
Otherwise the template has one example parameter. The result always passes :func:`tunelab.sweep.load_config`.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class _Option:
    flag: str
    name: str
    yaml: str
    switch: bool = False
    """A flag without a value (store_true): not in the command, listed as a comment."""
    required: bool = False
    """A positional argument or ``required=True``: the command must give it (a value to fill in when it is no
    parameter, else every trial fails with argparse's "the following arguments are required")."""


_FILL_IN = "FILL_IN"
"""Written in the command for an argument the script requires that is no parameter (``--data FILL_IN``)."""
_SKIP = {"help", "epochs", "seed", "data", "device", "out", "output", "workers", "num_workers", "log", "config"}


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _options(script: Path) -> list[_Option]:
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found: list[_Option] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr != "add_argument":
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if len(flags) == 1 and not flags[0].startswith("-"):  # a positional argument
            if _literal(kw.get("nargs")) not in ("?", "*"):
                found.append(_Option("", flags[0], "", required=True))
            continue
        long = next((f for f in flags if f.startswith("--")), None)
        if long is None:
            continue
        name = re.sub(r"[^A-Za-z0-9_]", "_", long[2:])
        required = _literal(kw.get("required")) is True
        if not re.match(r"^[A-Za-z_]", name) or name.lower() in _SKIP:
            if required:
                found.append(_Option(long, name, "", required=True))
            continue
        kind = kw.get("type")
        kind_name = kind.id if isinstance(kind, ast.Name) else None
        default = _literal(kw.get("default"))
        choices = _literal(kw.get("choices"))
        action = _literal(kw.get("action"))
        yaml = _yaml(kind_name, default, choices, action)
        if yaml is not None:
            found.append(_Option(long, name, yaml, switch=action == "store_true"))
        elif required:
            found.append(_Option(long, name, "", required=True))
    return found


def _yaml(kind: str | None, default: Any, choices: Any, action: Any) -> str | None:
    if isinstance(choices, (list, tuple)) and choices and all(isinstance(c, (str, int, float)) for c in choices):
        return "{type: categorical, choices: [" + ", ".join(_scalar(c) for c in choices) + "]}"
    if action == "store_true":
        return "{type: bool}"
    if kind == "float" and isinstance(default, (int, float)) and not isinstance(default, bool):
        d = float(default)
        if d > 0:
            return f"{{type: float, low: {_num(d / 10)}, high: {_num(d * 10)}, log: true}}"
        return "{type: float, low: 0.0, high: 1.0}"
    if kind == "int" and isinstance(default, int) and not isinstance(default, bool):
        if default >= 1:
            low, high = max(1, default // 4), default * 4
            return f"{{type: int, low: {low}, high: {high}{', log: true' if high / low >= 8 else ''}}}"
        return "{type: int, low: 0, high: 10}"
    return None


def _num(x: float) -> str:
    text = f"{x:.3g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exp)}"
    return text if "." in text else text + ".0"


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value.lower() not in (
            "true", "false", "yes", "no", "on", "off", "null") else f"'{value}'"
    return repr(value)


def render_template(script: str, study: str | None = None, file: str = "sweep.yaml", named: str | None = None) -> str:
    """The text of a sweep file for ``script`` (a path, read for its options); ``named``: the script's path as the
    command names it, from the sweep file's folder where the command runs (default: ``script``)."""
    path = Path(script)
    options = _options(path) if path.suffix == ".py" else []
    runner = "python" if path.suffix == ".py" else ("sh" if path.suffix == ".sh" else "")
    head = f"{runner} {shlex.quote(named or script)}".strip()
    given = [o for o in options if o.required and not o.yaml]
    if given:  # fixed arguments the script requires: a value for the user to fill in
        head += "".join(f" {o.flag} {_FILL_IN}" if o.flag else f" {_FILL_IN}" for o in given)
    valued = [o for o in options if not o.switch and o.yaml]
    if valued:
        command = head + "".join(f" {o.flag} {{{o.name}}}" for o in valued)
        params = "\n".join(f"  {o.name}: {o.yaml}" for o in valued)
        params += "".join(
            f"\n  # {o.name}: {o.yaml}   # {o.flag} is a flag (store_true) and takes no value: to tune it, give the "
            f"script an option {o.flag} true|false and add {o.flag} {{{o.name}}} to the command"
            for o in options if o.switch)
        found = f"# The parameters below are the options {script} declares with argparse: check their ranges.\n"
    else:
        command = head + " --lr {lr}"
        params = "  lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}"
        found = ""
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
