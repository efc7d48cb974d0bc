"""The import graph: no circle across packages, and the engine's public names stay where users import them."""

from __future__ import annotations

import subprocess
import sys

import grimp


def _room(module: str) -> str:
    """The package (or root module) a module belongs to: tunelab.study.trial -> tunelab.study."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _rooms_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("tunelab", exclude_type_checking_imports=False)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == "tunelab":
            continue  # the root package re-exports the public API: it imports everything by design
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _room(module), _room(imported)
            if a != b and b != "tunelab":
                edges.setdefault(a, set()).add(b)
    return edges


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_across_packages_type_checking_imports_included() -> None:
    cycle = _find_cycle(_rooms_graph())
    assert cycle is None, "import circle across packages: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_engine_is_one_package_behind_its_public_names() -> None:
    import tunelab
    import tunelab.study as engine

    for name in ("Study", "Trial", "create_study", "load_study", "delete_study"):
        assert getattr(engine, name) is getattr(tunelab, name)
    for old in ("tunelab.trial", "tunelab.runner", "tunelab.progress", "tunelab._frames"):
        found = subprocess.run([sys.executable, "-c", f"import {old}"], capture_output=True, text=True)
        assert found.returncode != 0, f"{old} should have moved into tunelab.study"


def test_workflows_are_packages_above_the_engine() -> None:
    import tunelab.babysit
    import tunelab.pbt
    import tunelab.reevaluate

    for package in (tunelab.pbt, tunelab.reevaluate, tunelab.babysit):
        assert hasattr(package, "__path__"), f"{package.__name__} should be a package"
    assert callable(tunelab.babysit.set_live) and callable(tunelab.babysit.request_stop)
    assert not hasattr(tunelab.Study, "set_live") and not hasattr(tunelab.Study, "branch")


def test_every_exception_tunelab_defines_lives_in_tunelab_errors() -> None:
    import inspect

    import tunelab
    import tunelab.errors

    graph = grimp.build_graph("tunelab")
    for module in sorted(graph.modules):
        if module.startswith(("tunelab.dashboard", "tunelab.cli", "tunelab.torch", "tunelab.recipe", "tunelab.viz")):
            continue  # optional extras (FastAPI's error model is a response schema, not an exception)
        if module.startswith("tunelab.storage.migrations"):
            continue  # Alembic's scripts: they run inside Alembic only
        mod = __import__(module, fromlist=["_"])
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module:
                assert module == "tunelab.errors", f"{module}.{name} should live in tunelab.errors"
    for name in tunelab.errors.__all__:
        assert issubclass(getattr(tunelab.errors, name), tunelab.errors.TunelabError)
    for common in ("ConfigError", "StorageError", "StudyNotFoundError", "DuplicatedStudyError", "TrialPruned",
                   "TrialStateError", "TrialNotFoundError", "TunelabError"):
        assert getattr(tunelab, common) is getattr(tunelab.errors, common)
    assert tunelab.get_storage(None).__class__ is tunelab.InMemoryStorage
