"""What the commands import from the user's code: ``--objective MODULE:FUNCTION`` and the recipe's
``PROBLEM`` (``MODULE:ATTR``), found as uvicorn finds an app; every mistake a ConfigError naming the option
and the fix, raised before any trial runs."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError
from tunelab.study import Objective


def _raised_at(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame outside the import machinery, or ''."""
    if isinstance(exc, SyntaxError):
        return ""  # its message already names the file and line
    skip = (os.path.dirname(importlib.__file__), __file__)
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and not f.filename.startswith(skip)
    ]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def import_objective(spec: str, paths: Sequence[Path]) -> Objective:
    """The objective named by ``MODULE:FUNCTION`` (see :func:`import_attr`)."""
    module_name, colon, attr = (part.strip() for part in spec.partition(":"))
    if not colon or not module_name or not attr:
        raise ConfigError(
            f"--objective {spec!r} is not MODULE:FUNCTION; write e.g. --objective train:objective "
            "for the function objective(trial) in train.py"
        )
    obj = import_attr(spec, paths, "--objective", "define objective(trial) there")
    if not callable(obj):
        raise ConfigError(
            f"--objective {spec!r}: {module_name}.{attr} is a {type(obj).__name__}, not callable; "
            "name a function objective(trial) -> float"
        )
    check_takes_one_trial(spec, obj)
    objective: Objective = obj
    return objective


def check_takes_one_trial(spec: str, fn: Callable[..., Any]) -> None:
    """A ConfigError when ``fn`` cannot be called as ``fn(trial)`` (checked before any trial runs:
    otherwise every trial fails with the same TypeError)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or an extension without one: the call will tell
        return
    try:
        signature.bind(object())
    except TypeError as e:
        raise ConfigError(
            f"--objective {spec!r}: {getattr(fn, '__name__', 'it')}{signature} cannot be called with the trial "
            f"alone ({e}); name a function objective(trial) -> float (wrap one that needs more, e.g. with "
            "functools.partial in the module)"
        ) from None


def import_attr(spec: str, paths: Sequence[Path], option: str, hint_if_empty: str) -> Any:
    """The object named by ``MODULE:ATTR``, imported like uvicorn imports an app.

    The ``paths`` and then the current directory are put first on ``sys.path`` (worker
    processes inherit it). A bad spec is a ConfigError naming ``option`` and the fix.
    """
    module_name, _, attr = (part.strip() for part in spec.partition(":"))
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        file = Path(module_name)
        name = file.stem if file.suffix == ".py" else file.name
        where = "" if str(file.parent) == "." else f" --path {file.parent}"
        raise ConfigError(
            f"{option} {spec!r} names a file, not a module; write {option} {name}:{attr}{where}"
        )
    front = list(dict.fromkeys([*(str(p.resolve()) for p in paths), os.getcwd()]))
    sys.path[:] = front + [p for p in sys.path if p not in front]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise ConfigError(
                f"{option} {spec!r}: no module named {e.name!r} in {', '.join(front)} or the installed "
                f"packages; run in the directory that holds {module_name.replace('.', '/')}.py "
                "or add --path DIR"
            ) from None
        raise ConfigError(import_failed(option, spec, module_name, e)) from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the module's own code failed: say where
        raise ConfigError(import_failed(option, spec, module_name, e)) from None
    obj: Any = module
    for part in attr.split("."):
        missing = object()
        obj = getattr(obj, part, missing)
        if obj is missing:
            defined = sorted(
                n for n, v in vars(module).items()
                if inspect.isfunction(v) and v.__module__ == module.__name__ and not n.startswith("_")
            )
            shown = ", ".join(defined[:10]) + (", ..." if len(defined) > 10 else "")
            hint = f"functions defined there: {shown}" if defined else hint_if_empty
            raise ConfigError(
                f"{option} {spec!r}: module {module_name!r} ({getattr(module, '__file__', None) or 'no file'}) "
                f"has no attribute {attr!r}; {hint}"
            )
    return obj


def import_failed(option: str, spec: str, module_name: str, exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return (
        f"{option} {spec!r}: importing module {module_name!r} raised {type(exc).__name__}"
        f"{': ' + message if message else ''}{_raised_at(exc)}; fix the module (or install what it "
        "imports) and run again"
    )




def load_trainer(problem: str, paths: Sequence[Path], command: str = "recipe") -> Any:
    """The Trainer PROBLEM names for ``tunelab COMMAND`` (the example in an error is that command's)."""
    from tunelab.torch import Trainer

    if problem == "digits":
        from tunelab.recipe import digits

        return digits.trainer()
    module_name, colon, attr = (part.strip() for part in problem.partition(":"))
    if not colon or not module_name or not attr:
        raise ConfigError(
            f"PROBLEM {problem!r} is neither 'digits' nor MODULE:ATTR; write e.g. `tunelab {command} model:trainer` "
            "for a tunelab.torch.Trainer named trainer in model.py"
        )
    obj = import_attr(problem, paths, "PROBLEM", "define trainer = tunelab.torch.Trainer(...) there")
    if not isinstance(obj, Trainer) and callable(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise ConfigError(
                f"PROBLEM {problem!r} is a function that needs arguments; name a tunelab.torch.Trainer or a "
                "function without arguments that returns one"
            ) from None
        except ValueError:  # no signature (a builtin): just call it
            pass
        obj = obj()
    if not isinstance(obj, Trainer):
        raise ConfigError(
            f"PROBLEM {problem!r} is a {type(obj).__name__}; name a tunelab.torch.Trainer or a function returning one"
        )
    return obj
