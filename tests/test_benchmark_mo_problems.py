"""The constrained problems of ``benchmarks/multiobjective.py`` (``benchmarks/mo_problems.py``): C2-DTLZ2
and the digits CNN evaluate, their constraints split the space, and their reference points bound them."""

from __future__ import annotations

import math

import numpy as np

from benchmark_modules import load_benchmark
from tunelab.multiobjective import hypervolume

mo = load_benchmark("mo_problems")


def _point(x: list[float]) -> dict[str, float]:
    return {f"x{i}": v for i, v in enumerate(x)}


def test_c2dtlz2_is_feasible_on_the_caps_and_infeasible_between_them() -> None:
    # x2.. = 0.5: on the unit sphere. x0 = 1: f = (0, 0, 1), a corner; the centre direction is
    # (1, 1, 1)/sqrt(3): x0 = asin(1/sqrt(3)) / (pi/2), x1 = 0.5.
    corner, cons = mo.c2dtlz2(_point([1.0, 0.0, 0.5, 0.5, 0.5, 0.5]))
    assert np.allclose(corner, (0.0, 0.0, 1.0), atol=1e-12)
    assert cons[0][1] <= cons[0][2]
    centre, cons = mo.c2dtlz2(_point([math.asin(1 / math.sqrt(3)) / (0.5 * math.pi), 0.5, 0.5, 0.5, 0.5, 0.5]))
    assert np.allclose(centre, [1 / math.sqrt(3)] * 3, atol=1e-9)
    assert cons[0][1] <= 1e-12
    # Half-way between the corners (1, 0, 0) and (0, 1, 0) on the sphere: outside every ball of radius 0.4.
    between, cons = mo.c2dtlz2(_point([0.0, 0.5, 0.5, 0.5, 0.5, 0.5]))
    assert math.isclose(float(np.linalg.norm(between)), 1.0)
    assert cons[0][1] > cons[0][2] == mo.C2DTLZ2_R**2
    # Pymoo's form: min(...) - r^2; (0.5, 0.5, 1/sqrt(2)) is 0.5^2 + 0.5^2 + (1/sqrt(2) - 1)^2 from e_3.
    f = np.array([[0.5, 0.5, 1 / math.sqrt(2)]])
    assert math.isclose(
        float(mo.c2_distance(f)[0]), min(0.5 + (1 / math.sqrt(2) - 1) ** 2, float(np.sum((f - 1 / math.sqrt(3)) ** 2)))
    )


def test_c2dtlz2_reference_point_and_true_hypervolume() -> None:
    front = mo.c2dtlz2_front(401)
    assert len(front) > 1000
    assert np.all(front < np.array(mo.C2DTLZ2_REF))  # every front point counts
    assert np.all(mo.c2_distance(front) <= mo.C2DTLZ2_R**2)
    low, high = mo.grid_hv_3d(front, mo.C2DTLZ2_REF, cells=400)
    assert low <= mo.C2DTLZ2_TRUE_HV <= high + 0.01  # the coarse grid's upper bound, less sampling of the front
    assert high - low < 0.05
    # The exact hypervolume of a sample of the front is below the true front's, and close with 200 points.
    sample = front[np.random.default_rng(0).choice(len(front), 200, replace=False)]
    exact = hypervolume(sample, list(mo.C2DTLZ2_REF))
    assert 0.9 * mo.C2DTLZ2_TRUE_HV < exact < mo.C2DTLZ2_TRUE_HV
    # Random points: some feasible ones, all inside the reference point when feasible (so random search scores).
    rng = np.random.default_rng(1)
    values = [mo.c2dtlz2(_point(list(rng.random(mo.C2DTLZ2_D)))) for _ in range(200)]
    feasible = np.array([v for v, c in values if c[0][1] <= c[0][2]])
    assert 0.05 < len(feasible) / len(values) < 0.6
    assert np.all(feasible < np.array(mo.C2DTLZ2_REF))
    assert hypervolume(feasible, list(mo.C2DTLZ2_REF)) > 0.2 * mo.C2DTLZ2_TRUE_HV


def test_cnn_memory_bound_cuts_part_of_the_space_not_the_same_part_as_the_parameters() -> None:
    small, wide_conv, wide_dense = (4, 8), (24, 8), (6, 256)
    assert mo.cnn_memory_mb(*small) < mo.CNN_MEMORY_MB < mo.cnn_memory_mb(*wide_conv)
    # Fewer parameters than a feasible design, yet infeasible: the constraint is not the second objective.
    assert mo.cnn_parameters(*wide_conv) < mo.cnn_parameters(*wide_dense)
    assert mo.cnn_memory_mb(*wide_dense) <= mo.CNN_MEMORY_MB
    widths, hiddens = np.meshgrid(np.arange(4, 25), np.arange(8, 257))
    ok = np.vectorize(lambda w, h: mo.cnn_memory_mb(int(w), int(h)) <= mo.CNN_MEMORY_MB)(widths, hiddens)
    assert 0.2 < ok.mean() < 0.9
    assert math.log10(mo.cnn_parameters(24, 256)) < mo.CNN_REF[1]  # the largest network is inside the reference
    assert math.log10(mo.cnn_parameters(4, 8)) > 3.0


def test_cnn_digits_evaluates_deterministically_inside_the_reference() -> None:
    params = {"width": 4, "hidden": 16, "lr": 0.02, "weight_decay": 1e-4}
    (error, log_params), constraints = mo.cnn_digits(params)
    assert (error, log_params) == mo.cnn_digits(params)[0]  # same configuration, same values
    assert 0.0 <= error < 0.5 < mo.CNN_REF[0]  # it learns something in two epochs
    assert log_params == math.log10(mo.cnn_parameters(4, 16)) < mo.CNN_REF[1]
    [(name, value, upper)] = constraints
    assert (name, upper) == ("memory_mb", mo.CNN_MEMORY_MB)
    assert value == mo.cnn_memory_mb(4, 16) <= upper
