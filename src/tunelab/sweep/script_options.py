"""What a training script lets a sweep set, read from its source without running it.

``tunelab sweep --init train.py`` writes the sweep file's parameters and command from these. Four ways of taking
options are read, each by walking the script's syntax tree (nothing is imported or run):

- argparse: ``parser.add_argument("--lr", type=float, default=1e-3)`` -> ``--lr {lr}``;
- click: ``@click.option("--lr", type=float, default=1e-3)`` (or a float default alone) -> ``--lr {lr}``;
- Typer: the parameters of the function given to ``typer.run`` or of an app's single ``@app.command()``,
  ``lr: float = 1e-3`` -> ``--lr {lr}`` (``weight_decay`` -> ``--weight-decay``);
- LightningCLI: ``LightningCLI(Model, DataModule)``; the arguments of each class's ``__init__`` that have a
  default, ``def __init__(self, lr: float = 1e-3)`` -> ``fit --model.lr {model.lr}`` (``--data.`` for the data
  module's);
- Hydra: ``@hydra.main(config_path="conf", config_name="config")``. The primary config's number and bool leaves
  become ``optimizer.lr={optimizer.lr}`` overrides, each config group of its defaults list
  (``- model: cnn``, with ``conf/model/*.yaml``) a categorical ``model={model}``, and the leaves of the group's
  default option parameters that apply only while that option is chosen (``model.width={model.width?}``).
  ``optional`` and ``override`` entries, nested groups (``server/cache: redis`` -> ``server/cache={server.cache}``),
  groups chosen into a package (``db@backup: mysql`` -> ``db@backup={backup}``, leaves ``backup.pool``) and an
  option's own ``# @package`` line are followed; Hydra's own groups (``hydra/launcher``) are left out. A primary
  config in a subfolder (``config_name="exp/base"``) is in that group, as Hydra reads it: its keys are
  ``exp.lr={exp.lr}`` and its ``- model: cnn`` is ``exp/model={exp.model}`` (``exp/model@model`` under
  ``# @package _global_``). A key the primary config also sets takes its value, for every option, when its
  ``_self_`` comes after the group (or is left out: Hydra puts it last).

A float with a positive default ranges over a factor of 10 each way on a log scale, an int over a factor of 4, a
list of choices is categorical. A flag without a value (argparse's ``store_true``, click's ``is_flag``, a Typer
bool) cannot be set by a placeholder: it is listed, commented out, with how to tune it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

SKIPPED = {"help", "epochs", "seed", "data", "device", "out", "output", "workers", "num_workers", "log", "config"}
"""Option names that are settings of the run, not hyperparameters: left out of the parameters."""


@dataclass(frozen=True)
class Option:
    """One option of the script: a parameter to tune, a flag to list, or an argument the command must give."""

    flag: str
    """``--lr``; empty for a positional argument and for a Hydra override."""
    name: str
    """The parameter's name in the sweep file (``lr``, ``optimizer.lr``)."""
    yaml: str
    """The parameter's definition (``{type: float, ...}``); empty for a required argument that is no parameter."""
    switch: bool = False
    """A flag without a value (store_true): not in the command, listed as a comment."""
    required: bool = False
    """A positional argument or ``required=True``: the command must give it (a value to fill in when it is no
    parameter, else every trial fails with the parser's "missing argument")."""
    hydra: bool = False
    """A Hydra override (``name={name}``), not an option followed by its value."""
    when: tuple[str, str] | None = None
    """A Hydra group's option (``("model", "cnn")``) this parameter applies to alone."""
    key: str = ""
    """A Hydra override's left side when it is not ``name`` (``db@backup={backup}``: a group chosen into a package)."""
    subcommand: bool = False
    """A word the command starts with (LightningCLI's ``fit``), in ``flag``."""

    def word(self) -> str:
        """The command's words for this parameter (``--lr {lr}``, ``model.width={model.width?}``)."""
        if self.hydra:
            return f"{self.key or self.name}={{{self.name}{'?' if self.when else ''}}}"
        return f"{self.flag} {{{self.name}}}"

    def definition(self) -> str:
        """The parameter's definition with its condition (``{type: int, ..., when: {model: cnn}}``)."""
        if self.when is None:
            return self.yaml
        group, choice = self.when
        return f"{self.yaml[:-1]}, when: {{{group}: {scalar(choice)}}}}}"


@dataclass(frozen=True)
class ScriptOptions:
    """The options read from one script, and how it takes them."""

    style: str
    """``argparse``, ``click``, ``typer``, ``hydra``, ``lightning`` (LightningCLI), or ``""`` when none was found."""
    options: tuple[Option, ...] = ()
    note: str = ""
    """Why some options could not be read (a Hydra config that is no file, several Typer commands), if so."""


def read_options(script: Path) -> ScriptOptions:
    """The options ``script`` (a Python file) declares; an empty result when it cannot be read or declares none."""
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ScriptOptions("")
    hydra = _hydra_main(tree)
    if hydra is not None:
        return _hydra_options(script, *hydra)
    readers = (("lightning", _lightning_cli_options), ("argparse", _argparse_options), ("click", _click_options),
               ("typer", _typer_options))
    for style, reader in readers:
        found, note = reader(tree)
        if found or note:
            return ScriptOptions(style, tuple(found), note)
    return ScriptOptions("")


# -- helpers ---------------------------------------------------------------------------------------
def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _dotted(node: ast.AST) -> str:
    """``click.option`` for the expression ``click.option``; ``""`` for anything else than names and attributes."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _imported_from(tree: ast.Module, module: str) -> dict[str, str]:
    """Local names bound by ``from module import x [as y]``: ``{y: x}``."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == module:
            names.update({a.asname or a.name: a.name for a in node.names})
    return names


def _is(node: ast.AST, module: str, attr: str, local: dict[str, str]) -> bool:
    """Whether ``node`` names ``module.attr`` (``click.option``, or ``option`` imported from click)."""
    name = _dotted(node)
    return name == f"{module}.{attr}" or local.get(name) == attr


def _python_name(flag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", flag.lstrip("-"))


_FRACTION = re.compile(r"drop|momentum|beta|prob|ratio|frac|smoothing|subsample", re.IGNORECASE)
"""Names of fractions in [0, 1): a linear range, not a log one."""


def _definition(kind: str | None, default: Any, choices: Any, boolean: bool = False,
                name: str | None = None) -> str | None:
    """The parameter for an option of this type, default and choices; None when it cannot be told.
    ``boolean``: a flag or a bool setting (argparse's ``type=bool`` is none: it reads "false" as true)."""
    if isinstance(choices, (list, tuple)) and choices and all(isinstance(c, (str, int, float)) for c in choices):
        return "{type: categorical, choices: [" + ", ".join(scalar(c) for c in choices) + "]}"
    if boolean:
        return "{type: bool}"
    if kind == "float" and isinstance(default, (int, float)) and not isinstance(default, bool):
        d = float(default)
        if name is not None and 0 <= d < 1 and _FRACTION.search(name):  # dropout 0.1: not log-uniform to 1.0
            return "{type: float, low: 0.0, high: 0.9}" if d <= 0.9 else "{type: float, low: 0.5, high: 0.999}"
        if d > 0:
            return f"{{type: float, low: {number(d / 10)}, high: {number(d * 10)}, log: true}}"
        return "{type: float, low: 0.0, high: 1.0}"
    if kind == "int" and isinstance(default, int) and not isinstance(default, bool):
        if default >= 1:
            low, high = max(1, default // 4), default * 4
            return f"{{type: int, low: {low}, high: {high}{', log: true' if high / low >= 8 else ''}}}"
        return "{type: int, low: 0, high: 10}"
    return None


def _kind_of(default: Any) -> str | None:
    if isinstance(default, bool):
        return None
    if isinstance(default, float):
        return "float"
    if isinstance(default, int):
        return "int"
    return None


def number(x: float) -> str:
    """A float as YAML reads it back as a float (``1.0e-4``, not ``1e-4``, which YAML 1.1 reads as text)."""
    text = f"{x:.3g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exp)}"
    return text if "." in text else text + ".0"


def scalar(value: Any) -> str:
    """A choice as YAML reads it back unchanged (text that YAML would read as a bool or null is quoted)."""
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value.lower() not in (
            "true", "false", "yes", "no", "on", "off", "null") else f"'{value}'"
    return repr(value)


def _option(flag: str, name: str, definition: str | None, *, switch: bool, required: bool) -> Option | None:
    """The option to list, or None: a setting of the run that is not required, or one of unknown type."""
    if not re.match(r"^[A-Za-z_]", name) or name.split(".")[-1].lower() in SKIPPED:
        return Option(flag, name, "", required=True) if required else None
    if definition is not None:
        return Option(flag, name, definition, switch=switch)
    return Option(flag, name, "", required=True) if required else None


# -- argparse --------------------------------------------------------------------------------------
def _argparse_options(tree: ast.Module) -> tuple[list[Option], str]:
    found: list[Option] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr != "add_argument":
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if len(flags) == 1 and not flags[0].startswith("-"):  # a positional argument
            if _literal(kw.get("nargs")) not in ("?", "*"):
                found.append(Option("", flags[0], "", required=True))
            continue
        long = next((f for f in flags if f.startswith("--")), None)
        if long is None:
            continue
        kind = kw.get("type")
        action = _literal(kw.get("action"))
        definition = _definition(kind.id if isinstance(kind, ast.Name) else None, _literal(kw.get("default")),
                                 _literal(kw.get("choices")), boolean=action == "store_true", name=long)
        option = _option(long, _python_name(long), definition, switch=action == "store_true",
                         required=_literal(kw.get("required")) is True)
        if option is not None:
            found.append(option)
    return found, ""


# -- click -----------------------------------------------------------------------------------------
def _click_options(tree: ast.Module) -> tuple[list[Option], str]:
    local = _imported_from(tree, "click")
    found: list[Option] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:  # in the order written, as click lists them
            if not isinstance(deco, ast.Call):
                continue
            flags = [a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            kw = {k.arg: k.value for k in deco.keywords if k.arg}
            if _is(deco.func, "click", "argument", local) and flags:
                if _literal(kw.get("required")) is not False and "default" not in kw:
                    found.append(Option("", flags[0], "", required=True))
                continue
            if not _is(deco.func, "click", "option", local):
                continue
            long = next((f.split("/")[0] for f in flags if f.startswith("--")), None)
            if long is None:
                continue
            default = _literal(kw.get("default"))
            kind_node = kw.get("type")
            kind = kind_node.id if isinstance(kind_node, ast.Name) else _kind_of(default)
            choices = None
            if isinstance(kind_node, ast.Call) and _is(kind_node.func, "click", "Choice", local) and kind_node.args:
                choices = _literal(kind_node.args[0])
            switch = _literal(kw.get("is_flag")) is True or "/" in next(f for f in flags if f.startswith("--"))
            option = _option(long, _python_name(long), _definition(kind, default, choices, boolean=switch, name=long),
                             switch=switch, required=_literal(kw.get("required")) is True)
            if option is not None:
                found.append(option)
    return found, ""


# -- Typer -----------------------------------------------------------------------------------------
def _typer_options(tree: ast.Module) -> tuple[list[Option], str]:
    local = _imported_from(tree, "typer")
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    commands = [n for n in functions.values() if any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
        for d in n.decorator_list)]
    run = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is(n.func, "typer", "run", local)
           and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id in functions]
    if run and isinstance(run[0].args[0], ast.Name):
        target = functions[run[0].args[0].id]
    elif len(commands) == 1:
        target = commands[0]
    elif commands:
        return [], (f"it declares {len(commands)} Typer commands ({', '.join(c.name for c in commands)}): "
                    "add the command's name after the script and its options")
    else:
        return [], ""
    return _signature_options(target, lambda name: "--" + name.replace("_", "-"), lambda name: name), ""


def _signature_options(function: ast.FunctionDef | ast.AsyncFunctionDef, flag_of: Callable[[str], str],
                       name_of: Callable[[str], str], *, keep_required: bool = True) -> list[Option]:
    """The options of a function's arguments (Typer's, or a LightningCLI class's ``__init__``): typed by their
    annotation or their default; one without a default (or a Typer ``Argument``) is required."""
    args = function.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults, strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    found: list[Option] = []
    for arg, default_node in pairs:
        if arg.arg in ("self", "cls"):
            continue
        annotation = arg.annotation
        if isinstance(annotation, ast.Subscript) and _dotted(annotation.value).endswith("Annotated"):
            inner = annotation.slice
            annotation = inner.elts[0] if isinstance(inner, ast.Tuple) and inner.elts else inner
        kind = annotation.id if isinstance(annotation, ast.Name) else None
        if isinstance(default_node, ast.Call) and _dotted(default_node.func).split(".")[-1] in ("Option", "Argument"):
            is_argument = _dotted(default_node.func).endswith("Argument")
            first = default_node.args[0] if default_node.args else None
            default_node = None if is_argument or (isinstance(first, ast.Constant) and first.value is ...) else first
        if default_node is None:  # no default: a required argument
            if keep_required:
                found.append(Option("", name_of(arg.arg), "", required=True))
            continue
        default = _literal(default_node)
        switch = kind == "bool" or isinstance(default, bool)
        option = _option(flag_of(arg.arg), name_of(arg.arg),
                         _definition(kind or _kind_of(default), default, None, boolean=switch, name=arg.arg),
                         switch=switch, required=False)
        if option is not None:
            found.append(option)
    return found


# -- LightningCLI ----------------------------------------------------------------------------------
def _lightning_cli_options(tree: ast.Module) -> tuple[list[Option], str]:
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "LightningCLI"):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        given = {"model": kw.get("model_class", node.args[0] if node.args else None),
                 "data": kw.get("datamodule_class", node.args[1] if len(node.args) > 1 else None)}
        found: list[Option] = []
        for prefix, cls in given.items():
            if not isinstance(cls, ast.Name) or cls.id not in classes:
                continue
            init = next((f for f in classes[cls.id].body
                         if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == "__init__"), None)
            if init is not None:
                found += _signature_options(init, f"--{prefix}.".__add__, f"{prefix}.".__add__, keep_required=False)
        # `fit` first: LightningCLI runs a subcommand unless it was made with run=False
        subcommand = "" if _literal(kw.get("run")) is False else "fit"
        note = "" if found else "its LightningCLI's classes are not defined in it: add --model.<name> {<name>} options"
        return [Option(subcommand, "", "", required=True, subcommand=True)] * bool(subcommand) + found, note
    return [], ""


# -- Hydra -----------------------------------------------------------------------------------------
def _hydra_main(tree: ast.Module) -> tuple[Any, Any] | None:
    """``(config_path, config_name)`` of the script's ``@hydra.main(...)``, or None when it has none."""
    local = _imported_from(tree, "hydra")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and _is(deco.func, "hydra", "main", local):
                kw = {k.arg: k.value for k in deco.keywords if k.arg}
                path = kw.get("config_path", deco.args[0] if deco.args else None)
                name = kw.get("config_name", deco.args[1] if len(deco.args) > 1 else None)
                return _literal(path), _literal(name)
    return None


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _leaf(value: Any) -> Any:
    """A config value as OmegaConf reads it: YAML 1.1 reads ``1e-3`` as text, OmegaConf as a float."""
    if isinstance(value, str) and _FLOAT.match(value) and not value.lstrip("+-").isdigit():
        return float(value)
    return value


def _leaves(tree: Any, prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if not isinstance(tree, dict):
        return out
    for key, value in tree.items():
        if not isinstance(key, str) or key.startswith("_") or key in ("defaults", "hydra"):
            continue
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out += _leaves(value, path)
        else:
            out.append((path, _leaf(value)))
    return out


def _hydra_parameter(path: str, value: Any, when: tuple[str, str] | None = None) -> Option | None:
    if path.split(".")[-1].lower() in SKIPPED:
        return None
    definition = _definition(_kind_of(value), value, None, boolean=isinstance(value, bool), name=path)
    return Option("", path, definition, hydra=True, when=when) if definition is not None else None


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


_DEFAULTS_WORDS = ("optional", "override")
_GROUP_ENTRY = re.compile(r"(/?)([A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)(?:@([A-Za-z_][A-Za-z0-9_.]*))?")
_PACKAGE_LINE = re.compile(r"#\s*@package\s+(\S+)")


@dataclass(frozen=True)
class _Group:
    """A config group chosen in a defaults list: ``model: cnn``, ``optional db@backup: mysql``, ``server/db: pg``."""

    path: str
    """The group's folder under the config folder (``server/db``)."""
    override: str
    """The left side of the command line's override that chooses its option (``db@backup``)."""
    package: str
    """Where its option's keys go in the config (``backup``; ``server.db`` by default; "" for ``_global_``)."""


def _group_entry(key: str, parent: str = "", parent_package: str = "") -> _Group | None:
    """The group a defaults-list key names, or None for Hydra's own groups (``hydra/launcher``) and anything
    that is not a group (``_self_``). ``parent``: the group of the config whose defaults list it is (a primary
    config in a subfolder, ``exp/base``, is in ``exp``: its ``model`` is ``exp/model``), ``parent_package`` that
    config's package (its groups' keys go under it)."""
    words = key.split()
    while len(words) > 1 and words[0] in _DEFAULTS_WORDS:
        words = words[1:]
    if len(words) != 1:
        return None
    m = _GROUP_ENTRY.fullmatch(words[0])
    if m is None:
        return None
    absolute, path, package = m.groups()
    if path == "hydra" or path.startswith("hydra/"):
        return None
    full = path if absolute or not parent else f"{parent}/{path}"
    where = _package(package, path, parent_package)
    own = full.replace("/", ".")
    override = full if where == own else f"{full}@{where or '_global_'}"
    return _Group(full, override, where)


def _package(package: str | None, path: str, parent: str = "") -> str:
    """A Hydra package as a dotted key path ("" for the config's root), relative to ``parent`` (the package of
    the config that chooses it)."""
    default = path.replace("/", ".")
    if package is None or package == "_group_":
        relative = default
    elif package == "_here_":
        relative = ""
    elif package == "_global_" or package.startswith("_global_."):
        return package.removeprefix("_global_").removeprefix(".")
    else:
        relative = package.replace("_group_", default)
    return ".".join(p for p in (parent, relative) if p)


def _header_package(path: Path) -> str | None:
    """The package a config file's ``# @package`` line at its top names, or None."""
    try:
        with path.open(encoding="utf-8") as f:
            head = [f.readline() for _ in range(5)]
    except (OSError, UnicodeDecodeError):
        return None
    for line in head:
        m = _PACKAGE_LINE.match(line.strip())
        if m:
            return m.group(1)
    return None


def _option_package(path: Path, group: _Group) -> str:
    """The package an option file sets with a ``# @package`` line at its top, else the group's."""
    package = _header_package(path)
    return group.package if package is None else _package(package, group.path)


def _chosen_groups(primary: dict[str, Any], parent: str = "", parent_package: str = "") -> dict[_Group, str]:
    """The groups of the primary config's defaults list with the option each chooses (an ``override`` entry
    replaces an earlier choice of its group)."""
    chosen: dict[_Group, str] = {}
    for entry in primary.get("defaults") or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # `_self_`, a config name
        (key, option), = entry.items()
        group = _group_entry(key, parent, parent_package) if isinstance(key, str) else None
        if group is not None and isinstance(option, str):  # `model: null` chooses nothing
            chosen[group] = option
    return chosen


def _before_self(primary: dict[str, Any], parent: str, parent_package: str) -> set[_Group]:
    """The groups the primary config's defaults list names before ``_self_`` (all of them without one: Hydra
    puts it last): the primary's own values of their keys win over their options'."""
    seen: set[_Group] = set()
    for entry in primary.get("defaults") or []:
        if entry == "_self_":
            return seen
        if isinstance(entry, dict) and len(entry) == 1:
            (key, _), = entry.items()
            group = _group_entry(key, parent, parent_package) if isinstance(key, str) else None
            if group is not None:
                seen.add(group)
    return seen


def _hydra_options(script: Path, config_path: Any, config_name: Any) -> ScriptOptions:
    if not isinstance(config_path, str) or not isinstance(config_name, str):
        return ScriptOptions("hydra", (), "its Hydra config is not a file named in @hydra.main (a structured "
                                          "config?): add its keys to the command as key={key}")
    folder = (script.parent / config_path).resolve()
    name = config_name if config_name.endswith((".yaml", ".yml")) else config_name + ".yaml"
    primary = _load(folder / name)
    if not isinstance(primary, dict):
        return ScriptOptions("hydra", (), f"its Hydra config {folder / name} could not be read")
    # a primary config in a subfolder (config_name="exp/base") is in the group exp: its package is exp (unless its
    # `# @package` line says otherwise) and its defaults list's groups are exp/ ones
    parent = PurePosixPath(name).parent.as_posix().removeprefix("./")
    parent = "" if parent == "." else parent
    header = _header_package(folder / name)
    primary_package = parent.replace("/", ".") if header is None else _package(header, parent)
    found: list[Option] = []
    own = {path for path, _ in _leaves(primary, primary_package)}
    before_self = _before_self(primary, parent, primary_package)
    for group, chosen in _chosen_groups(primary, parent, primary_package).items():
        files = (folder / group.path).glob("**/*.yaml" if "/" in chosen else "*.yaml")  # model: cnn/small
        options = sorted(p.relative_to(folder / group.path).with_suffix("").as_posix() for p in files)
        param = group.package or group.path.replace("/", ".")
        when = None
        if len(options) > 1 and chosen in options:
            found.append(Option("", param, "{type: categorical, choices: [" + ", ".join(map(scalar, options)) + "]}",
                                hydra=True, key=group.override))
            when = (param, chosen)
        option_file = folder / group.path / f"{chosen}.yaml"
        for path, value in _leaves(_load(option_file), _option_package(option_file, group)):
            if path in own and group in before_self:
                continue  # the primary config sets it after the option: its value, with any option
            option = _hydra_parameter(path, value, when)
            if option is not None:
                found.append(option)
    taken = {o.name for o in found}
    for path, value in _leaves(primary, primary_package):
        option = _hydra_parameter(path, value)
        if option is not None and option.name not in taken:
            found.append(option)
    return ScriptOptions("hydra", tuple(found))


__all__ = ["Option", "ScriptOptions", "number", "read_options", "scalar"]
