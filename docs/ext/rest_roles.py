"""A griffe extension: the docstrings' reST markup becomes Markdown on the docs site.

tunelab's docstrings name other objects the way Sphinx does (``:class:`Study```,
``:meth:`~tunelab.Trial.report```, ``:mod:`tunelab.recipe.checks```). mkdocstrings renders
Markdown, where such a role would show as ``:class:`` followed by code. This extension, run by
mkdocstrings when it loads ``tunelab`` (``extensions:`` in ``mkdocs.yml``), resolves each role's
target as Python would from where the docstring is (the object, its class, its module, the
module's imports, then absolute paths) and writes an optional cross-reference in its place:
a link when the target has a page on the site, plain code otherwise (a private helper, an
object of another library: there is no remote inventory, the build works offline). A leading
``~`` shows only the last component, as in Sphinx.

A paragraph ending in ``::`` introduces an indented literal block in reST (``Example::``); here
it ends in ``:`` and the block becomes a fenced code block (Python when it parses as Python).
The source files are never changed.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|const):`(?P<target>[^`]+)`")


TITLED = re.compile(r"(?P<title>[^<]+?)\s*<(?P<target>[^>]+)>")


def _lookup(scope: griffe.Object | griffe.Alias, path: str) -> griffe.Object | griffe.Alias | None:
    try:
        return scope[path]  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - any failure to find or resolve means "not from here"
        return None


def _canonical(found: griffe.Object | griffe.Alias) -> str | None:
    """The path of the object a name leads to, when that object is tunelab's own."""
    try:
        target = found.final_target if isinstance(found, griffe.Alias) else found
        path = target.path
    except Exception:  # noqa: BLE001 - an alias to another library, not loaded here
        return None
    return path if path.split(".", 1)[0] == "tunelab" else None


def resolve(obj: griffe.Object, target: str, collection: griffe.ModulesCollection) -> str | None:
    """The canonical path of ``target`` as named in ``obj``'s docstring, or None."""
    scope: griffe.Object | None = obj
    while scope is not None:
        found = _lookup(scope, target)
        if found is not None:
            return _canonical(found)
        scope = scope.parent
    found = _lookup(collection, target)
    return _canonical(found) if found is not None else None


def rewrite(text: str, obj: griffe.Object, collection: griffe.ModulesCollection) -> str:
    """``text`` with every role replaced by an optional cross-reference (or plain code)."""

    def replace(match: re.Match[str]) -> str:
        target = match["target"].strip()
        titled = TITLED.fullmatch(target)
        if titled:  # :meth:`Trainer.fit <tunelab.torch.Trainer.fit>`: a title of its own
            shown, target = titled["title"].strip(), titled["target"].strip()
        else:
            short = target.startswith("~")
            target = target.lstrip("~.!")
            shown = target.rsplit(".", 1)[-1] if short else target
        if match["role"] in ("func", "meth") and not shown.endswith(")"):
            shown += "()"
        path = resolve(obj, target, collection)
        code = f"<code>{html.escape(shown)}</code>"
        if path is None:
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(block: list[str]) -> str:
    try:
        compile("\n".join(block), "<docstring>", "exec")
    except SyntaxError:
        return "text"
    return "python"


def literal_blocks(text: str) -> str:
    """``text`` with every reST literal block (after a line ending in ``::``) as a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if not line.endswith("::") or j >= len(lines) or _indent(lines[j]) <= _indent(line):
            out.append(lines[i])
            i += 1
            continue
        pad, depth = " " * _indent(line), _indent(lines[j])
        end = j
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= depth):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        block = [raw[depth:] if raw.strip() else "" for raw in lines[j:end]]
        head = line[:-2].rstrip()
        if head.strip():
            out.append(head + ":")
        out += ["", f"{pad}```{_language(block)}", *[pad + b if b else "" for b in block], f"{pad}```"]
        i = end
    return "\n".join(out)


class RestRoles(griffe.Extension):
    """Rewrites the reST roles of every docstring of a loaded package (see the module)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None and ":" in obj.docstring.value:
                text = literal_blocks(obj.docstring.value)
                obj.docstring.value = rewrite(text, obj, loader.modules_collection)
            stack.extend(member for member in obj.members.values() if not isinstance(member, griffe.Alias))
