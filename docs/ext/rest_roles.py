"""A griffe extension: the docstrings' reST roles become cross-references on the docs site.

tunelab's docstrings name other objects the way Sphinx does (``:class:`Study```,
``:meth:`~tunelab.Trial.report```, ``:mod:`tunelab.recipe.checks```). mkdocstrings renders
Markdown, where such a role would show as ``:class:`` followed by code. This extension, run by
mkdocstrings when it loads ``tunelab`` (``extensions:`` in ``mkdocs.yml``), resolves each role's
target as Python would from where the docstring is (the object, its class, its module, the
module's imports, then absolute paths) and writes an optional cross-reference in its place:
a link when the target has a page on the site, plain code otherwise (a private helper, an
object of another library: there is no remote inventory, the build works offline). A leading
``~`` shows only the last component, as in Sphinx. The source files are never changed.
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
                obj.docstring.value = rewrite(obj.docstring.value, obj, loader.modules_collection)
            stack.extend(member for member in obj.members.values() if not isinstance(member, griffe.Alias))
