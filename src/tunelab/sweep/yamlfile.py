"""Reading a YAML file with the line of every key, so that each error can name it.

:func:`read_yaml` returns the data (``yaml.safe_load``'s) and a :class:`Lines` map from a key's path
(``("parameters", "lr", "low")``) to its line. A syntax error, a duplicate key or a document that
is not a mapping is a :class:`~tunelab.errors.SweepConfigError` naming the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import SweepConfigError

KeyPath = tuple[str | int, ...]


@dataclass
class Lines:
    """Lines (1-based) of the keys of one YAML document, by path."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest parent that has one (None when none has)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def where(self, path: Sequence[str | int]) -> str:
        """``file:line`` of ``path`` (``file`` alone when no line is known)."""
        line = self.line(path)
        return f"{self.file}:{line}" if line is not None else self.file


def dotted(path: Sequence[str | int]) -> str:
    """``parameters.lr.low``, ``command[2]``: a key path as the messages show it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path) -> tuple[Any, Lines]:
    """The YAML document at ``path`` and the lines of its keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepConfigError(f"{path}: no such file; give the path of a sweep file, or write one with "
                               "`tunelab sweep --init train.py`") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepConfigError(f"{path}: cannot read it: {e}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """The YAML document in ``text`` (``file`` names it in messages) and the lines of its keys."""
    import yaml

    lines = Lines(file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, (), lines)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise SweepConfigError(
            f"{file}:{line}: YAML syntax error: {what}; fix the line (indentation, a missing ':' or a "
            "quote left open)", key=None, line=line) from None
    except yaml.YAMLError as e:
        raise SweepConfigError(f"{file}: YAML syntax error: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SweepConfigError(f"{file}:1: a sweep file is a mapping of keys (study:, command:, parameters:, ...), "
                               f"not a {type(data).__name__}", line=1)
    return data, lines


def _walk(node: Any, path: KeyPath, lines: Lines) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            child: KeyPath = (*path, key)
            if key in seen:
                raise SweepConfigError(
                    f"{lines.file}:{line}: {dotted(child)}: the key appears twice (first on line "
                    f"{seen[key]}); keep one", key=dotted(child), line=line)
            seen[key] = line
            lines.lines[child] = line
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path: KeyPath = (*path, i)
            lines.lines[item_path] = item.start_mark.line + 1
            _walk(item, item_path, lines)
