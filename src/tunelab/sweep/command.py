"""One trial's command line, environment and parameters file.

Placeholders:

- ``{name}``: the parameter's value (``--lr {lr}``, ``--lr={lr}``, Hydra's ``optimizer.lr={lr}``);
- ``{name?}``: the same when the parameter is active; when it is not (a ``when:`` condition), the
  word holding it is dropped, and so is the option right before it when the word is the placeholder
  alone: ``--momentum {momentum?}`` and ``--momentum={momentum?}`` both vanish;
- ``{{`` and ``}}``: literal braces; ``${VAR}`` is left to the shell.

Values are written as text: floats as Python's shortest exact form (``0.001``, ``1e-05``), booleans
as ``true``/``false``, None as ``null``. Without ``shell: true`` the command is split with
:func:`shlex.split` *before* the values go in, so a value is always one argument, whatever it holds;
with ``shell: true`` each value is quoted for where it stands (:func:`shlex.quote` when bare, escaped
inside double or single quotes), so it is one word and reaches the script as is. ``args: auto`` appends
``--name value`` for each active parameter the command has no placeholder for; ``args: env`` says the
script reads its parameters from the environment only (nothing is appended, and no warning that a
parameter appears in no placeholder).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.errors import ConfigError

_TOKEN = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_.-]*)(\?)?\}")

PARAM_PREFIX = "TUNELAB_PARAM_"


def placeholders(command: str | Sequence[str]) -> list[tuple[str, bool]]:
    """The placeholders of a command, ``(name, optional)`` in order (ConfigError for a malformed one)."""
    words = [command] if isinstance(command, str) else list(command)
    found: list[tuple[str, bool]] = []
    for word in words:
        for m in _TOKEN.finditer(word):
            if m.group(1):
                found.append((m.group(1), m.group(2) == "?"))
        stripped = _TOKEN.sub("", word)
        bad = re.search(r"(?<!\$)\{[A-Za-z_][^{}\s]*\}", stripped)
        if bad:
            raise ConfigError(f"{bad.group(0)} is not a placeholder: write {{name}} or {{name?}} with a parameter's "
                              "name, or {{ and }} for literal braces")
    return found


def value_text(value: Any) -> str:
    """A parameter value as the command and the environment get it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _fill(word: str, params: Mapping[str, Any], quote: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        text = value_text(params[m.group(1)])
        return shlex.quote(text) if quote else text

    return _TOKEN.sub(sub, word)


def _fill_shell(text: str, params: Mapping[str, Any]) -> str:
    """``text`` with each placeholder's value quoted for where it stands in ``/bin/sh``'s words: bare
    (:func:`shlex.quote`), inside double quotes (``\\``, ``"``, ``$`` and backquotes escaped) or
    inside single quotes (each ``'`` closed, escaped and reopened), so the script gets the value as is."""
    out: list[str] = []
    state = ""  # the open quote: "", "'" or '"'
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is not None:
            if m.group(1) is None:
                out.append(m.group(0)[0])  # {{ or }}: a literal brace
            else:
                out.append(_quoted_in(value_text(params[m.group(1)]), state))
            i = m.end()
            continue
        c = text[i]
        if c == "\\" and state != "'" and i + 1 < len(text):  # an escaped character stays as it is
            out.append(text[i:i + 2])
            i += 2
            continue
        if c in "'\"" and state in ("", c):
            state = "" if state else c
        out.append(c)
        i += 1
    return "".join(out)


def _quoted_in(text: str, state: str) -> str:
    if state == '"':
        return re.sub(r'(["\\$`])', r"\\\1", text)
    if state == "'":
        return text.replace("'", "'\\''")
    return shlex.quote(text)


def _inactive(word: str, params: Mapping[str, Any]) -> bool:
    return any(m.group(1) and m.group(2) == "?" and m.group(1) not in params for m in _TOKEN.finditer(word))


def _alone(word: str) -> bool:
    m = _TOKEN.fullmatch(word)
    return bool(m and m.group(1))


def _is_option(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not any(m.group(1) for m in _TOKEN.finditer(word))


def render_argv(command: str | Sequence[str], params: Mapping[str, Any], args: str = "none") -> list[str]:
    """The argument list of one trial (no shell): ``params`` holds the active parameters."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    out: list[str] = []
    prev_kept_option = False
    for word in words:
        if _inactive(word, params):
            if _alone(word) and prev_kept_option:
                out.pop()  # `--momentum {momentum?}`: the option goes with its value
            prev_kept_option = False
            continue
        out.append(_fill(word, params, quote=False))
        prev_kept_option = _is_option(word)
    return out + _auto_args(command, params, args, quote=False)


def render_shell(command: str | Sequence[str], params: Mapping[str, Any], args: str = "none") -> str:
    """The shell command line of one trial (``shell: true``): values quoted for ``/bin/sh``."""
    text = command if isinstance(command, str) else " ".join(command)
    for name in {m.group(1) for m in _TOKEN.finditer(text) if m.group(1) and m.group(2) == "?"} - set(params):
        ph = re.escape("{" + name + "?}")
        # `--momentum {momentum?}`, also quoted (`--momentum "{momentum?}"`): the option goes with its value
        text = re.sub(r"(?:(?<=\s)|^)-[^\s{}'\"]+[ \t]+([\"']?)" + ph + r"\1(?=\s|$|;|&|\|)", "", text)
        text = re.sub(r"[^\s;&|]*" + ph + r"[^\s;&|]*", "", text)
    words = _fill_shell(text, params)
    extra = _auto_args(command, params, args, quote=True)
    return " ".join([words, *extra]) if extra else words


def _auto_args(command: str | Sequence[str], params: Mapping[str, Any], args: str, quote: bool) -> list[str]:
    if args != "auto":
        return []
    used = {name for name, _ in placeholders(command)}
    out: list[str] = []
    for name, value in params.items():
        if name not in used:
            text = value_text(value)
            out += [f"--{name}", shlex.quote(text) if quote else text]
    return out


def trial_env(
    base: Mapping[str, str],
    extra: Mapping[str, str],
    params: Mapping[str, Any],
    env_names: Mapping[str, str],
    *,
    study: str,
    number: int,
    params_file: str,
    trial_dir: str,
    channel: Mapping[str, str],
) -> dict[str, str]:
    """The environment of one trial's command: ``base`` (the worker's, with its CUDA_VISIBLE_DEVICES)
    without another sweep's parameters, the file's ``env:``, the parameters (``TUNELAB_PARAMS`` as JSON,
    ``TUNELAB_PARAM_<NAME>`` each, ``TUNELAB_PARAMS_FILE``), the trial and the report channel."""
    env = {k: v for k, v in base.items() if not k.startswith(PARAM_PREFIX)}
    env.update(extra)
    env["TUNELAB_PARAMS"] = json.dumps(dict(params))
    for name, value in params.items():
        env[PARAM_PREFIX + env_names[name]] = value_text(value)
    env["TUNELAB_PARAMS_FILE"] = params_file
    env["TUNELAB_STUDY"] = study
    env["TUNELAB_TRIAL_NUMBER"] = str(number)
    env["TUNELAB_TRIAL_DIR"] = trial_dir
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python script's prints reach us as they happen
    env.update(channel)
    return env


def write_params_file(path: str, params: Mapping[str, Any]) -> None:
    """The trial's parameters as a JSON object, written atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dict(params), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
