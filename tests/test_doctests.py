"""The examples in the docstrings run, and say what they show (doctest).

Every entry point carries a short example (``Examples:`` with ``>>>`` lines): creating,
loading and running a study, ask and tell, suggestions, each sampler and pruner, the
distributions, the PyTorch Trainer, the recipe, population-based training and re-evaluation.
Each module below runs as ``doctest.testmod`` would run it; a listed docstring without its
example fails, so an example cannot be deleted (or lose its ``>>>`` lines) unnoticed.

The whole package is not run with ``--doctest-modules``: its optional layers import heavy
dependencies (the dashboard, Ray) and only the modules listed here hold examples.
"""

from __future__ import annotations

import doctest
import importlib
import time
from collections.abc import Iterator

import pytest

# Docstrings that must hold an example, by module (names as doctest reports them, module first).
REQUIRED: dict[str, list[str]] = {
    "tunelab.study.study": ["Study.optimize", "Study.ask", "Study.tell", "Study.best_trials"],
    "tunelab.study.factory": ["create_study", "load_study"],
    "tunelab.study.trial": ["Trial.suggest_float", "Trial.suggest_categorical", "Trial.set_constraint"],
    "tunelab.samplers.random": ["RandomSampler"],
    "tunelab.samplers.grid": ["", "GridSampler"],
    "tunelab.samplers.coarse_to_fine": ["CoarseToFineSampler"],
    "tunelab.samplers.tpe": ["TPESampler"],
    "tunelab.samplers.gp": ["GPSampler"],
    "tunelab.samplers.auto": ["AutoSampler"],
    "tunelab.samplers.nsga": ["NSGAIISampler"],
    "tunelab.samplers.nsga3": ["NSGAIIISampler"],
    "tunelab.multiobjective": [""],
    "tunelab.pruners.median": ["MedianPruner"],
    "tunelab.pruners.asha": ["SuccessiveHalvingPruner", "HyperbandPruner"],
    "tunelab.pruners.extrapolation": ["LearningCurvePruner"],
    "tunelab.pruners.pareto": ["ParetoSuccessiveHalvingPruner", "ParetoMedianPruner"],
    "tunelab.pruners.curves": [""],
    "tunelab.distributions": ["", "Float", "Int", "Categorical", "Bool"],
    "tunelab.priors": ["", "Normal", "LogNormal", "UnitGaussian", "UnitCategorical"],
    "tunelab.samplers._prior": ["prior_weight_at"],
    "tunelab.space": ["Conditional"],
    "tunelab.torch.trainer": ["Trainer"],
    "tunelab.torch.checkpoint": ["save_torch"],
    "tunelab.torch.hypergradient": ["HypergradientOptimizer"],
    "tunelab.recipe.checks": ["check_initial_loss"],
    "tunelab.recipe.run": ["run"],
    "tunelab.pbt.population": ["PopulationBasedTraining"],
    "tunelab.reevaluate.reevaluation": ["reevaluate"],
    "tunelab.execution.gpus": ["discover_devices", "allocate"],
}

MIN_EXAMPLES = 220
"""At least this many ``>>>`` examples run over all the modules (230 when this was written)."""

pytestmark = pytest.mark.slow  # about 45 s on 2 busy cores, most of it importing torch and scipy the first time

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE



@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Examples train small models: one thread each, as the test command runs everything."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _full_name(module: str, name: str) -> str:
    return f"{module}.{name}" if name else module


@pytest.mark.parametrize("module_name", sorted(REQUIRED))
def test_docstring_examples_run(module_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(module_name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    found = {t.name for t in tests}
    missing = [_full_name(module_name, n) for n in REQUIRED[module_name] if _full_name(module_name, n) not in found]
    assert not missing, f"these docstrings lost their example: {missing}"

    runner = doctest.DocTestRunner(optionflags=FLAGS)
    start = time.perf_counter()
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test)
    seconds = time.perf_counter() - start
    result = runner.summarize(verbose=False)
    report = capsys.readouterr().out
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module_name}:\n{report}"
    print(f"{module_name}: {result.attempted} examples in {seconds:.2f} s")


def test_enough_examples_ran() -> None:
    """The examples did not silently shrink (a whole section deleted, ``>>>`` lines turned to prose)."""
    total = sum(
        len(t.examples) for name in REQUIRED for t in doctest.DocTestFinder().find(importlib.import_module(name))
    )
    assert total >= MIN_EXAMPLES, f"only {total} docstring examples, expected at least {MIN_EXAMPLES}"


def test_required_names_exist() -> None:
    """Each required docstring is a real object with an example (a guard against typos in REQUIRED)."""
    for module_name, names in REQUIRED.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj: object = module
            for part in filter(None, name.split(".")):
                obj = getattr(obj, part)
            assert obj.__doc__ and ">>>" in obj.__doc__, f"{_full_name(module_name, name)} has no example"
