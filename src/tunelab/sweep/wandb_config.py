"""``tunelab sweep --from-wandb sweep.yaml``: a W&B Sweeps configuration as a tunelab sweep file.

What a W&B sweep says maps onto a sweep file key by key:

- ``program`` and ``command`` -> ``command``: ``${interpreter}`` is ``python``, ``${program}`` the program,
  ``${args}`` one ``--name={name}`` per parameter (constants as they are), ``${args_no_hyphens}``
  ``name={name}`` (Hydra; ``${args_append_hydra}`` ``+name={name}``, ``${args_override_hydra}``
  ``++name={name}``), ``${args_no_equals}`` ``--name {name}``; ``${env}`` is dropped;
- ``method`` -> ``sampler``: ``grid`` -> grid, ``random`` -> random, ``bayes`` -> auto (tunelab's GP, then TPE);
- ``metric: {name, goal}`` -> ``metric`` and ``direction``;
- ``parameters`` -> ``parameters``: ``values`` (with ``probabilities``: a prior) -> categorical,
  ``uniform`` / ``int_uniform`` / ``q_uniform`` -> float / int / float with a step (an int when ``q`` is whole,
  as W&B's values then are), ``log_uniform_values`` and ``inv_log_uniform_values`` -> a log float (a log int for
  ``q_log_uniform_values`` with a whole ``q``), ``log_uniform`` (exponents of e) -> a log float from ``exp(min)``
  to ``exp(max)`` (``inv_log_uniform``: ``exp(-max)`` to ``exp(-min)``), ``normal`` /
  ``log_normal`` -> the range mu +- 3 sigma with that belief as a prior; a ``value`` is a constant;
- ``early_terminate: {type: hyperband, min_iter, max_iter, eta}`` -> ``pruner``: Hyperband with ``max_iter``,
  else ASHA (rungs at ``min_iter * eta ** k``);
- ``run_cap`` -> ``n_trials``.

The written file has ``wandb: true``: the script's ``wandb.init`` gets the trial's parameters (and the
constants) in its config, and its ``wandb.log`` calls become the trial's reports, so a W&B script runs as it is.
What has no counterpart (a ``target``, ``${args_json}``, nested parameters, ``beta``) is listed in the file's
comments, never silently dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import SweepConfigError

CONSTANTS_ENV = "TUNELAB_WANDB_CONSTANTS"
"""The environment variable that carries a W&B sweep's constant parameters (``value:``) to ``wandb.config``."""
_DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
_SAMPLERS = {"grid": "grid", "random": "random", "bayes": "auto"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass
class Converted:
    """A W&B sweep as a tunelab sweep file: its keys in order, and what did not carry over."""

    keys: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self, source: str, file: str = "sweep.yaml") -> str:
        """The sweep file's text (to be written as ``file``): a comment naming ``source`` and the notes, then
        the keys."""
        head = [f"# Converted from the W&B sweep {source} (tunelab sweep --from-wandb); check it, then run:",
                f"#   tunelab sweep {file}"]
        head += [f"# not converted: {note}" for note in self.notes]
        body = []
        for key, value in self.keys.items():
            if key == "parameters":
                body.append("parameters:")
                body += [f"  {name}: {_flow(spec)}" for name, spec in self.parameters.items()]
            else:
                body.append(f"{key}: {_flow(value)}")
        return "\n".join(head + body) + "\n"


def _flow(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("\n...").strip()


def convert_wandb_sweep(doc: Mapping[str, Any], *, study: str) -> Converted:
    """A tunelab sweep file from a W&B sweep configuration (the YAML's mapping); a SweepConfigError names the
    W&B key that cannot be read."""
    if not isinstance(doc, Mapping):
        raise SweepConfigError("a W&B sweep configuration is a YAML mapping with program, method, metric and "
                               "parameters keys")
    out = Converted()
    params, constants = _parameters(doc.get("parameters"), out.notes)
    out.keys["study"] = _study_name(doc.get("name")) or study
    out.keys["command"] = _command(doc, params, constants, out.notes)
    out.keys["wandb"] = True
    if constants:
        out.keys["env"] = {CONSTANTS_ENV: json.dumps(constants)}
    out.keys["parameters"] = True  # written from out.parameters, in the file's order
    out.parameters = params
    metric = doc.get("metric")
    if metric is None:
        raise SweepConfigError("metric: a tunelab sweep needs the metric the script logs (its last value is the "
                               "trial's): add metric: {name: val_loss, goal: minimize} to the W&B file")
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise SweepConfigError("metric: a W&B metric is {name: val_loss, goal: minimize}; give its name")
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise SweepConfigError(f"metric.goal: {goal!r} is neither minimize nor maximize")
    if metric["name"] in ("step", "value", "final"):
        raise SweepConfigError(f"metric.name: {metric['name']!r} is a key of tunelab's report lines, so a wandb.log "
                               "of it is not reported: log the metric under another name (val_loss) and give that")
    out.keys["metric"] = metric["name"]
    out.keys["direction"] = goal
    if "target" in metric:
        out.notes.append(f"metric.target {metric['target']!r} (tunelab runs n_trials trials; stop it by hand "
                         "or give a timeout)")
    method = doc.get("method", "random")
    if method not in _SAMPLERS:
        raise SweepConfigError(f"method: {method!r} is none of W&B's grid, random, bayes")
    out.keys["sampler"] = _SAMPLERS[method]
    pruner = _pruner(doc.get("early_terminate"), out.notes)
    if pruner is not None:
        out.keys["pruner"] = pruner
    run_cap = doc.get("run_cap")
    if isinstance(run_cap, int) and not isinstance(run_cap, bool) and run_cap > 0:
        out.keys["n_trials"] = run_cap
    elif method == "grid":
        pass  # the grid's size ends it
    else:
        out.keys["n_trials"] = 50
        out.notes.append("no run_cap: W&B runs until stopped; n_trials is set to 50 here, change it")
    for key in ("project", "entity"):
        if key in doc:
            out.notes.append(f"{key} {doc[key]!r} (runs are not sent to W&B; set env WANDB_MODE: online to send them)")
    return out


def _study_name(name: Any) -> str:
    if not isinstance(name, str):
        return ""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def _parameters(spec: Any, notes: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The sweep's parameters (tunelab definitions) and its constants (``value:``)."""
    if not isinstance(spec, Mapping) or not spec:
        raise SweepConfigError("parameters: a W&B sweep needs its parameters, e.g. parameters: {lr: {min: 1e-5, "
                               "max: 1e-1, distribution: log_uniform_values}}")
    params: dict[str, dict[str, Any]] = {}
    constants: dict[str, Any] = {}
    for name, p in spec.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SweepConfigError(f"parameters.{name}: a parameter name is letters, digits, _ . -")
        if not isinstance(p, Mapping):
            raise SweepConfigError(f"parameters.{name}: a W&B parameter is a mapping such as {{values: [a, b]}} or "
                                   "{min: 0.0, max: 1.0}")
        if "parameters" in p:
            notes.append(f"parameters.{name} is nested (W&B passes it as JSON): give its leaves as parameters of "
                         "their own")
            continue
        converted = _parameter(name, p, notes)
        if converted is None:
            continue
        if "constant" in converted:
            constants[name] = converted["constant"]
        else:
            params[name] = converted
    if not params:
        dropped = [note for note in notes if note.startswith("parameters.")]
        raise SweepConfigError("parameters: the W&B sweep has no parameter to search: "
                               + ("; ".join(dropped) if dropped else "only constants"))
    return params, constants


def _number(name: str, p: Mapping[str, Any], key: str) -> float:
    value = p.get(key)
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 as text; tunelab's sweep files read it as a number
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepConfigError(f"parameters.{name}.{key}: a number is needed, got {value!r}")
    return float(value)


def _parameter(name: str, p: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """One W&B parameter as a tunelab definition, ``{"constant": v}`` for a constant, None when not converted."""
    dist = p.get("distribution")
    if "value" in p and dist in (None, "constant"):
        return {"constant": p["value"]}
    if "values" in p and dist in (None, "categorical"):
        values = p["values"]
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"parameters.{name}.values: a non-empty list of choices is needed")
        if len(values) == 1:
            return {"constant": values[0]}
        out: dict[str, Any] = {"type": "categorical", "choices": values}
        if "probabilities" in p:
            out["prior"] = p["probabilities"]
        return out
    if dist is None:  # W&B infers it from min and max
        ints = all(isinstance(p.get(k), int) and not isinstance(p.get(k), bool) for k in ("min", "max"))
        dist = "int_uniform" if ints else "uniform"
    if dist in ("uniform", "int_uniform", "q_uniform", "log_uniform_values", "q_log_uniform_values", "log_uniform",
                "q_log_uniform", "inv_log_uniform_values", "inv_log_uniform"):
        low, high = _number(name, p, "min"), _number(name, p, "max")
        if dist == "int_uniform":
            if not (low.is_integer() and high.is_integer()):
                raise SweepConfigError(f"parameters.{name}: int_uniform takes whole numbers, got min {low:g} and max "
                                       f"{high:g}; use distribution: uniform for a real range")
            return {"type": "int", "low": int(low), "high": int(high)}
        if dist in ("log_uniform", "q_log_uniform"):  # exponents of e
            low, high = _tidy(math.exp(low)), _tidy(math.exp(high))
        elif dist == "inv_log_uniform":  # 1 / exp(x): from exp(-max) to exp(-min)
            low, high = _tidy(math.exp(-high)), _tidy(math.exp(-low))
        log = "log" in dist
        if dist.startswith("q_"):
            q = p.get("q", 1)  # W&B rounds to multiples of q: whole numbers when q is one (its default, 1)
            if isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0:
                raise SweepConfigError(f"parameters.{name}.q: a positive number is needed, got {q!r}")
            if isinstance(q, int):
                lo, hi = round(low / q) * q, round(high / q) * q
                if not log:
                    return {"type": "int", "low": lo, "high": hi, **({"step": q} if q != 1 else {})}
                if q != 1:
                    notes.append(f"parameters.{name}: {dist}'s q={q} (a log range takes no step: whole numbers, "
                                 f"not multiples of {q})")
                return {"type": "int", "low": max(lo, 1), "high": max(hi, 1), "log": True}
            if not log:
                return {"type": "float", "low": low, "high": high, "step": float(q)}
            notes.append(f"parameters.{name}: {dist}'s q={q:g} (a log range takes no step)")
        result: dict[str, Any] = {"type": "float", "low": low, "high": high}
        if log:
            result["log"] = True
        return result
    if dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
        mu, sigma = float(p.get("mu", 0.0)), float(p.get("sigma", 1.0))
        if sigma <= 0:
            raise SweepConfigError(f"parameters.{name}.sigma: a positive spread is needed, got {sigma!r}")
        if dist.startswith("q_"):
            notes.append(f"parameters.{name}: {dist}'s q (the range has no step)")
        notes.append(f"parameters.{name}: {dist}(mu={mu:g}, sigma={sigma:g}) is bounded to mu +- 3 sigma, "
                     "with that belief as its prior")
        if "log" in dist:
            return {"type": "float", "low": _tidy(math.exp(mu - 3 * sigma)), "high": _tidy(math.exp(mu + 3 * sigma)),
                    "log": True, "prior": {"type": "lognormal", "center": _tidy(math.exp(mu)),
                                           "spread": _tidy(sigma / math.log(10))}}
        return {"type": "float", "low": mu - 3 * sigma, "high": mu + 3 * sigma,
                "prior": {"type": "normal", "center": mu, "spread": sigma}}
    notes.append(f"parameters.{name}: distribution {dist!r} has no tunelab counterpart; give its range by hand")
    return None


def _tidy(x: float) -> float:
    return float(f"{x:.6g}")


def _command(doc: Mapping[str, Any], params: Mapping[str, Any], constants: Mapping[str, Any],
             notes: list[str]) -> str:
    words = doc.get("command", list(_DEFAULT_COMMAND))
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise SweepConfigError("command: a W&B command is a list of words such as [${env}, ${interpreter}, "
                               "${program}, ${args}]")
    program = doc.get("program")
    out: list[str] = []
    for word in words:
        if word == "${env}":
            continue
        if word == "${interpreter}":
            out.append("python")
        elif word == "${program}":
            if not isinstance(program, str) or not program:
                raise SweepConfigError("program: the command runs ${program}; name the training script")
            out.append(shlex.quote(program))
        elif word in _ARGS:
            form = _ARGS[word]
            out += [form(n, f"{{{n}}}") for n in params]
            out += [form(n, shlex.quote(_text(v))) for n, v in constants.items()]
            if word == "${args_no_boolean_flags}":
                notes.append("${args_no_boolean_flags}: booleans are passed as --name=True/False")
        elif "${envvar:" in word:
            notes.append(f"command word {word} (W&B puts the environment variable's value there: write the value in "
                         "the command)")
            out.append(shlex.quote(word))
        elif word.startswith("${") and word.endswith("}"):
            notes.append(f"command word {word} (the script gets its parameters as JSON in TUNELAB_PARAMS, and "
                         "their file's path in TUNELAB_PARAMS_FILE)")
        else:
            out.append(word)
    if not out:
        raise SweepConfigError("command: nothing is left to run; name the program")
    return " ".join(out)


_ARGS: dict[str, Callable[[str, str], str]] = {
    "${args}": "--{}={}".format,
    "${args_no_boolean_flags}": "--{}={}".format,
    "${args_no_hyphens}": "{}={}".format,
    "${args_append_hydra}": "+{}={}".format,
    "${args_override_hydra}": "++{}={}".format,
    "${args_no_equals}": "--{} {}".format,
}
"""The W&B agent's argument words: each parameter's name and value (a placeholder, or a constant) as it writes them."""


def _text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _pruner(spec: Any, notes: list[str]) -> dict[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("type") != "hyperband":
        notes.append(f"early_terminate {spec!r} (W&B's is {{type: hyperband, min_iter: 3}})")
        return None
    eta = int(spec.get("eta", 3))
    if "min_iter" in spec:
        low = int(spec["min_iter"])
    elif "max_iter" in spec:  # W&B's brackets from the top: max_iter / eta ** s
        low = max(1, int(spec["max_iter"]) // eta ** int(spec.get("s", 1)))
    else:
        raise SweepConfigError("early_terminate: W&B's hyperband needs min_iter (or max_iter and s)")
    if "max_iter" in spec:
        return {"type": "hyperband", "min_resource": low, "max_resource": int(spec["max_iter"]),
                "reduction_factor": eta}
    return {"type": "asha", "min_resource": low, "reduction_factor": eta}


def write_from_wandb(source: Path, output: Path, *, force: bool = False) -> Path:
    """Convert the W&B sweep file ``source`` into the tunelab sweep file ``output``; its command runs in the
    current folder, where ``wandb agent`` would run it (``workdir:`` when ``output`` is in another)."""
    if output.exists() and not force:
        raise SweepConfigError(f"{output} exists; choose another file with --output, or add --force")
    try:
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepConfigError(f"{source}: cannot be read ({e.strerror or e}); give the W&B sweep's YAML "
                               "file") from None
    except yaml.YAMLError as e:
        raise SweepConfigError(f"{source}: not YAML ({e})") from None
    converted = convert_wandb_sweep(doc, study=_study_name(source.stem) or "wandb-sweep")
    here, folder = Path.cwd().resolve(), output.parent.resolve()
    if here != folder:  # the W&B agent runs the program from the folder it starts in: this one
        keys = list(converted.keys.items())
        at = [k for k, _ in keys].index("command") + 1
        converted.keys = dict([*keys[:at], ("workdir", os.path.relpath(here, folder)), *keys[at:]])
    output.write_text(converted.text(str(source), output.name), encoding="utf-8")
    return output


def shim_env(env: dict[str, str]) -> dict[str, str]:
    """A trial's environment for a ``wandb: true`` sweep: the start-up hook first on ``PYTHONPATH`` (see
    :mod:`tunelab.sweep.wandb_shim.sitecustomize`), and runs kept off W&B's servers unless ``WANDB_MODE``
    is set (in the sweep file's ``env:`` or the shell's)."""
    folder = str(Path(__file__).resolve().parent / "wandb_shim")
    out = dict(env)
    out["PYTHONPATH"] = folder + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out.setdefault("WANDB_MODE", "disabled")
    out.setdefault("WANDB_SILENT", "true")
    return out


__all__ = ["CONSTANTS_ENV", "Converted", "convert_wandb_sweep", "shim_env", "write_from_wandb"]
