"""Distributions: membership, sampling, the unit map, grids, JSON, compatibility, statistics, bad input."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

import tunelab
from tunelab.distributions import (
    Bool,
    Categorical,
    Distribution,
    Float,
    Int,
    distribution_from_json,
)
from tunelab.errors import ConfigError, InvalidDistributionError

N_DRAWS = 2000

# One instance of every kind of distribution, by name.
CASES: dict[str, Distribution] = {
    "float_linear": Float(-2.0, 3.0),
    "float_log": Float(1e-5, 1e-1, log=True),
    "float_step": Float(0.0, 1.0, step=0.1),
    "int": Int(-3, 7),
    "int_log": Int(1, 1024, log=True),
    "int_step": Int(0, 20, step=4),
    "categorical": Categorical(["sgd", "adam", 1, 1.0, True, None]),
    "bool": Bool(0.3),
}
ORDERED = ["float_linear", "float_log", "float_step", "int", "int_log", "int_step"]
CONTINUOUS = ["float_linear", "float_log"]

MEMBERS: dict[str, list[object]] = {
    "float_linear": [-2.0, 3.0, 0, 0.5, -1, np.float64(2.5)],
    "float_log": [1e-5, 1e-1, 1e-3, 0.05],
    "float_step": [0.0, 0.1, 0.3, 0.7, 1.0, 0, 1],
    "int": [-3, 0, 7, np.int64(2)],
    "int_log": [1, 2, 3, 1000, 1024],
    "int_step": [0, 4, 8, 20],
    "categorical": ["sgd", "adam", 1, 1.0, True, None],
    "bool": [True, False, np.True_],
}
NON_MEMBERS: dict[str, list[object]] = {
    "float_linear": [-2.0001, 3.0001, math.nan, math.inf, -math.inf, "1", True, None, [0.5]],
    "float_log": [0.0, -1.0, 1e-6, 0.2, "0.01"],
    "float_step": [-0.1, 1.1, "0.3", None, False],
    "int": [-4, 8, 2.0, 2.5, True, "2", None],
    "int_log": [0, -1, 1025, 2.0],
    "int_step": [-4, 2, 6, 24, 4.0],
    "categorical": ["SGD", 2, 0, False, 2.0, "None", [1], {"a": 1}],
    "bool": [1, 0, 1.0, "True", None],
}


def case_params(names: list[str] | None = None) -> list[pytest.param]:
    names = list(CASES) if names is None else names
    return [pytest.param(CASES[n], id=n) for n in names]


def member_params() -> list[pytest.param]:
    return [pytest.param(CASES[n], v, id=f"{n}-{v!r}") for n in CASES for v in MEMBERS[n]]


def non_member_params() -> list[pytest.param]:
    return [pytest.param(CASES[n], v, id=f"{n}-{v!r}") for n in CASES for v in NON_MEMBERS[n]]


def draws(dist: Distribution, n: int = N_DRAWS, seed: int = 0) -> list[object]:
    rng = np.random.default_rng(seed)
    return [dist.sample(rng) for _ in range(n)]


def same(a: object, b: object) -> bool:
    """Equal and of the same type (1, 1.0 and True are different values here)."""
    return type(a) is type(b) and a == b


def key(v: object) -> tuple[str, object]:
    return (type(v).__name__, v)


def some_members(dist: Distribution) -> list[object]:
    """Grid points and samples: members spread over the whole distribution."""
    return list(dist.grid(50)) + draws(dist, 200, seed=1)


# -- sampling ------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", case_params())
def test_samples_are_members(dist: Distribution) -> None:
    assert all(dist.contains(v) for v in draws(dist))


@pytest.mark.parametrize("dist", case_params(ORDERED))
def test_samples_stay_within_low_and_high(dist: Float | Int) -> None:
    values = draws(dist)
    assert min(values) >= dist.low
    assert max(values) <= dist.high


@pytest.mark.parametrize(
    ("dist", "expected_type"),
    [
        pytest.param(CASES["float_linear"], float, id="float_linear"),
        pytest.param(CASES["float_log"], float, id="float_log"),
        pytest.param(CASES["float_step"], float, id="float_step"),
        pytest.param(CASES["int"], int, id="int"),
        pytest.param(CASES["int_log"], int, id="int_log"),
        pytest.param(CASES["int_step"], int, id="int_step"),
        pytest.param(CASES["bool"], bool, id="bool"),
    ],
)
def test_samples_are_plain_python_values_of_the_right_type(dist: Distribution, expected_type: type) -> None:
    assert {type(v) for v in draws(dist, 200)} == {expected_type}


def test_categorical_choices_and_values_read_from_numpy_are_the_python_values_they_hold() -> None:
    # Categorical(list(np.array([32, 64]))) was refused ("choice 32 is a int64 ... map richer objects from a
    # string key"), an np.str_ choice never contained 'a' (nor survived a JSON round trip as the same
    # kind), and an enqueued np.int64(64) did not fit Categorical([32, 64]).
    sizes = Categorical(list(np.array([32, 64])))
    assert sizes.choices == (32, 64) and all(type(c) is int for c in sizes.choices)
    assert sizes.contains(np.int64(64)) and same(sizes.cast(np.int64(64)), 64)
    assert not sizes.contains(np.float64(64.0)) and not sizes.contains(64.0)  # still typed
    names = Categorical(list(np.array(["a", "b"])))
    assert names.contains("a") and all(type(c) is str for c in names.choices)
    assert names.compatible_with(distribution_from_json(names.to_json()))
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, space={"bs": sizes})
    study.enqueue({"bs": np.int64(64)})
    study.optimize(lambda t: float(t.params["bs"]), n_trials=1)
    assert same(study.trials[0].params["bs"], 64)


def test_categorical_samples_are_the_choice_objects_themselves() -> None:
    dist = CASES["categorical"]
    assert isinstance(dist, Categorical)
    assert {key(v) for v in draws(dist)} == {key(c) for c in dist.choices}


@pytest.mark.parametrize("dist", case_params())
def test_sampling_is_reproducible_for_a_seed(dist: Distribution) -> None:
    assert [key(v) for v in draws(dist, 100, seed=5)] == [key(v) for v in draws(dist, 100, seed=5)]


@pytest.mark.parametrize(
    "dist", [Float(2.5, 2.5), Int(4, 4), Float(1.0, 1.0, log=True), Categorical(["only"])]
)
def test_degenerate_distribution_always_gives_its_single_value(dist: Distribution) -> None:
    values = {key(v) for v in draws(dist, 50)}
    assert len(values) == 1
    assert dist.contains(draws(dist, 1)[0])


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_bool_with_certain_p_always_gives_the_same_value(p: float) -> None:
    assert set(draws(Bool(p), 500)) == {bool(p)}


# -- contains and cast --------------------------------------------------------------------


@pytest.mark.parametrize(("dist", "value"), member_params())
def test_contains_accepts_members(dist: Distribution, value: object) -> None:
    assert dist.contains(value)


@pytest.mark.parametrize(("dist", "value"), non_member_params())
def test_contains_rejects_non_members(dist: Distribution, value: object) -> None:
    assert not dist.contains(value)


@pytest.mark.parametrize(
    ("dist", "value", "expected"),
    [
        pytest.param(Float(0, 2), 1, 1.0, id="float-int_becomes_float"),
        pytest.param(Float(0, 2), np.float64(0.5), 0.5, id="float-numpy_becomes_float"),
        pytest.param(Float(1e-3, 1, log=True), 0.01, 0.01, id="float_log"),
        pytest.param(Float(0, 1, step=0.1), 0.3, 0.3, id="float_step"),
        pytest.param(Int(0, 10), 3.0, 3, id="int-integral_float_becomes_int"),
        pytest.param(Int(0, 10), np.int64(3), 3, id="int-numpy_becomes_int"),
        pytest.param(Int(0, 2**62), 2**53 + 1, 2**53 + 1, id="int-past_2**53_stays_exact"),
        pytest.param(Int(-(2**63), 2**63 - 1), np.int64(10**18 + 7), 10**18 + 7, id="int-numpy_past_2**53_stays_exact"),
        pytest.param(Int(0, 10, step=5), 5, 5, id="int_step"),
        pytest.param(Int(1, 100, log=True), 10, 10, id="int_log"),
        pytest.param(Categorical([1, 1.0, True]), 1.0, 1.0, id="categorical-float_stays_float"),
        pytest.param(Categorical([1, 1.0, True]), True, True, id="categorical-bool_stays_bool"),
        pytest.param(Categorical(["a", None]), None, None, id="categorical-none"),
        pytest.param(Bool(), np.True_, True, id="bool-numpy_becomes_bool"),
        pytest.param(Bool(), False, False, id="bool"),
    ],
)
def test_cast_returns_the_value_with_its_canonical_type(
    dist: Distribution, value: object, expected: object
) -> None:
    assert same(dist.cast(value), expected)


def castable(dist: Distribution, value: object) -> bool:
    """Int.cast turns an integral float such as 2.0 into 2 on purpose."""
    return (
        isinstance(dist, Int)
        and isinstance(value, float)
        and value.is_integer()
        and dist.contains(int(value))
    )


@pytest.mark.parametrize(("dist", "value"), [p for p in non_member_params() if not castable(*p.values)])
def test_cast_rejects_non_members(dist: Distribution, value: object) -> None:
    with pytest.raises(InvalidDistributionError):
        dist.cast(value)


@pytest.mark.parametrize(
    ("dist", "value"),
    [
        pytest.param(Float(0, 1), 1.5, id="float"),
        pytest.param(Int(0, 10, step=5), 3, id="int_step"),
        pytest.param(Categorical(["a", "b"]), "c", id="categorical"),
        pytest.param(Bool(), 1, id="bool"),
    ],
)
def test_cast_error_names_the_value(dist: Distribution, value: object) -> None:
    with pytest.raises(InvalidDistributionError, match=repr(value)):
        dist.cast(value)


# -- the unit map --------------------------------------------------------------------------


@pytest.mark.parametrize("dist", case_params())
def test_to_unit_maps_members_into_the_unit_interval(dist: Distribution) -> None:
    assert all(0.0 <= dist.to_unit(v) <= 1.0 for v in some_members(dist))


@pytest.mark.parametrize("dist", case_params())
def test_from_unit_gives_members(dist: Distribution) -> None:
    us = [0.0, 1e-12, 0.25, 0.5, 0.75, 1 - 1e-12, 1.0, *np.linspace(0, 1, 101)]
    assert all(dist.contains(dist.from_unit(u)) for u in us)


@pytest.mark.parametrize("dist", case_params(CONTINUOUS))
def test_from_unit_inverts_to_unit_for_floats_approximately(dist: Float) -> None:
    for v in some_members(dist):
        assert dist.from_unit(dist.to_unit(v)) == pytest.approx(v, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dist", case_params([n for n in CASES if n not in CONTINUOUS]))
def test_from_unit_inverts_to_unit_exactly_for_discrete(dist: Distribution) -> None:
    for v in some_members(dist):
        assert same(dist.from_unit(dist.to_unit(v)), v)


@pytest.mark.parametrize("dist", case_params(ORDERED))
def test_unit_interval_ends_map_to_low_and_high(dist: Float | Int) -> None:
    assert dist.from_unit(0.0) == dist.low
    assert dist.from_unit(1.0) == dist.high


@pytest.mark.parametrize("dist", case_params())
def test_from_unit_clamps_points_outside_the_unit_interval(dist: Distribution) -> None:
    assert same(dist.from_unit(-0.5), dist.from_unit(0.0))
    assert same(dist.from_unit(1.5), dist.from_unit(1.0))


@pytest.mark.parametrize("dist", case_params(ORDERED))
def test_to_unit_is_increasing_in_the_value(dist: Float | Int) -> None:
    units = [dist.to_unit(v) for v in dist.grid(20)]
    assert units == sorted(units)
    assert len(set(units)) == len(units)


@pytest.mark.parametrize("dist", case_params(["float_step", "int", "int_step", "categorical", "bool"]))
def test_discrete_members_map_to_equal_width_bin_centres(dist: Distribution) -> None:
    values = dist.grid(10_000)
    units = [dist.to_unit(v) for v in values]
    n = len(values)
    assert units == pytest.approx([(i + 0.5) / n for i in range(n)])


def test_log_float_to_unit_is_linear_in_log_space() -> None:
    dist = Float(1e-4, 1.0, log=True)
    assert dist.to_unit(1e-2) == pytest.approx(0.5)
    assert dist.from_unit(0.25) == pytest.approx(1e-3)


@pytest.mark.parametrize("dist", [Float(3.0, 3.0), Float(0.5, 0.5, step=0.1), Float(2.0, 2.0, log=True)])
def test_degenerate_float_maps_its_value_to_the_middle(dist: Float) -> None:
    assert dist.to_unit(dist.low) == 0.5
    assert dist.from_unit(0.5) == dist.low


# -- grids -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_points", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("dist", case_params())
def test_grid_values_are_members(dist: Distribution, n_points: int) -> None:
    assert all(dist.contains(v) for v in dist.grid(n_points))


@pytest.mark.parametrize("n_points", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("dist", case_params(ORDERED))
def test_grid_is_sorted_distinct_and_at_most_n_points(dist: Float | Int, n_points: int) -> None:
    grid = dist.grid(n_points)
    assert grid == sorted(set(grid))
    assert 1 <= len(grid) <= n_points


@pytest.mark.parametrize("n_points", [2, 3, 7, 50])
@pytest.mark.parametrize("dist", case_params(ORDERED))
def test_grid_includes_both_ends(dist: Float | Int, n_points: int) -> None:
    grid = dist.grid(n_points)
    assert grid[0] == dist.low
    assert grid[-1] == dist.high


@pytest.mark.parametrize("n_points", [2, 5, 11])
def test_linear_float_grid_is_evenly_spaced(n_points: int) -> None:
    grid = Float(-2.0, 3.0).grid(n_points)
    assert len(grid) == n_points
    assert np.diff(grid) == pytest.approx([5.0 / (n_points - 1)] * (n_points - 1))


@pytest.mark.parametrize("n_points", [2, 5, 9])
def test_log_float_grid_has_a_constant_ratio(n_points: int) -> None:
    grid = Float(1e-5, 1e-1, log=True).grid(n_points)
    assert len(grid) == n_points
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    assert ratios == pytest.approx([1e4 ** (1 / (n_points - 1))] * (n_points - 1))


def test_log_int_grid_is_log_spaced() -> None:
    assert Int(1, 1024, log=True).grid(11) == [2**k for k in range(11)]


def test_log_int_grid_is_roughly_geometric_after_rounding() -> None:
    grid = Int(10, 100_000, log=True).grid(9)
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    assert ratios == pytest.approx([10**0.5] * 8, rel=0.02)


def test_linear_int_grid_is_evenly_spaced_after_rounding() -> None:
    assert Int(0, 100).grid(5) == [0, 25, 50, 75, 100]
    assert Int(0, 100, step=10).grid(6) == [0, 20, 40, 60, 80, 100]


@pytest.mark.parametrize(
    ("dist", "expected"),
    [
        pytest.param(Int(0, 5), [0, 1, 2, 3, 4, 5], id="int"),
        pytest.param(Int(0, 20, step=4), [0, 4, 8, 12, 16, 20], id="int_step"),
        pytest.param(Int(1, 4, log=True), [1, 2, 3, 4], id="int_log"),
        pytest.param(Float(0, 1, step=0.25), [0.0, 0.25, 0.5, 0.75, 1.0], id="float_step"),
    ],
)
def test_grid_with_more_points_than_values_lists_every_value(
    dist: Distribution, expected: list[object]
) -> None:
    assert dist.grid(100) == expected


@pytest.mark.parametrize("n_points", [1, 2, 100])
def test_categorical_grid_lists_every_choice_in_order(n_points: int) -> None:
    dist = Categorical(["b", 1, 1.0, True, None, "a"])
    assert [key(v) for v in dist.grid(n_points)] == [key(c) for c in dist.choices]


@pytest.mark.parametrize("n_points", [1, 2, 100])
def test_bool_grid_is_false_then_true(n_points: int) -> None:
    assert Bool(0.9).grid(n_points) == [False, True]


@pytest.mark.parametrize("dist", [Float(2.0, 2.0), Float(2.0, 2.0, step=0.5), Float(1.0, 1.0, log=True)])
def test_degenerate_float_grid_is_its_single_value(dist: Float) -> None:
    assert dist.grid(5) == [dist.low]


@pytest.mark.parametrize("n_points", [0, -1, 2.5, "3", None])
@pytest.mark.parametrize("dist", case_params())
def test_grid_rejects_bad_n_points(dist: Distribution, n_points: object) -> None:
    with pytest.raises(InvalidDistributionError, match="n_points"):
        dist.grid(n_points)  # type: ignore[arg-type]


# -- step floats give clean values ------------------------------------------------------------


def lattice(low: str, high: str, step: str) -> list[float]:
    """The exact decimal lattice, as the floats a user would type."""
    lo, hi, st = Decimal(low), Decimal(high), Decimal(step)
    n = int((hi - lo) / st)
    return [float(lo + k * st) for k in range(n + 1)]


STEP_CASES = [
    pytest.param("0", "1", "0.1", id="0..1by0.1"),
    pytest.param("0.05", "0.95", "0.1", id="0.05..0.95by0.1"),
    pytest.param("0", "0.3", "0.1", id="0..0.3by0.1"),
    pytest.param("-1", "1", "0.2", id="-1..1by0.2"),
    pytest.param("0.0001", "0.001", "0.0001", id="1e-4..1e-3by1e-4"),
    pytest.param("0", "3", "0.3", id="0..3by0.3"),
    pytest.param("1.5", "7.5", "1.5", id="1.5..7.5by1.5"),
]


@pytest.mark.parametrize(("low", "high", "step"), STEP_CASES)
def test_step_float_grid_values_are_clean_decimals(low: str, high: str, step: str) -> None:
    dist = Float(float(low), float(high), step=float(step))
    assert dist.grid(1000) == lattice(low, high, step)


@pytest.mark.parametrize(("low", "high", "step"), STEP_CASES)
def test_step_float_samples_are_clean_decimals(low: str, high: str, step: str) -> None:
    dist = Float(float(low), float(high), step=float(step))
    assert set(draws(dist, 500)) <= set(lattice(low, high, step))


def test_step_float_gives_0_3_not_float_noise() -> None:
    dist = Float(0, 1, step=0.1)
    assert 0.3 in dist.grid(11)
    assert 0.30000000000000004 not in dist.grid(11)
    assert all(len(repr(v)) <= 3 for v in draws(dist, 300))


def test_step_float_lattice_keeps_the_digits_of_low() -> None:
    # BUG: _on_lattice rounds to digits derived from step only, so a low with more
    # digits than that is cut: low=0.1234567890123 becomes 0.123456789 < low.
    low = 0.1234567890123
    dist = Float(low, low + 1.0, step=0.5)
    assert dist.grid(3) == pytest.approx([low, low + 0.5, low + 1.0], rel=1e-12)
    assert all(dist.contains(v) for v in dist.grid(3))
    assert all(dist.contains(v) for v in draws(dist, 200))


@pytest.mark.parametrize("value", [0.35, 0.05, 0.999])
def test_step_float_does_not_contain_values_off_its_lattice(value: float) -> None:
    # BUG: Float.contains ignores step (Int.contains honours it), so cast() and
    # enqueue() accept 0.35 for step=0.1 and validate_space accepts a condition on it.
    assert not Float(0, 1, step=0.1).contains(value)


def test_step_float_contains_lattice_values_despite_float_noise() -> None:
    dist = Float(0, 1, step=0.1)
    assert dist.contains(0.1 + 0.2)
    assert dist.contains(0.7)


def test_step_not_dividing_the_range_suggests_a_clean_high() -> None:
    # BUG: the suggestion is computed without the lattice rounding: "move high to 0.8999999999999999".
    with pytest.raises(InvalidDistributionError) as info:
        Float(0, 1, step=0.3)
    assert "move high to 0.9" in str(info.value)
    assert "0.8999" not in str(info.value)


# -- JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist",
    [
        *case_params(),
        Float(0, 1, step=0.25),
        Float(1.0, 1.0),
        Int(-10, 10, step=5),
        Categorical([None]),
        Categorical([1, 1.0, True, "1"]),
        Bool(),
        Bool(1.0),
    ],
)
def test_json_round_trip_gives_an_equal_object(dist: Distribution) -> None:
    text = json.dumps(dist.to_json(), allow_nan=False)
    back = distribution_from_json(json.loads(text))
    assert type(back) is type(dist)
    assert back == dist
    assert back.to_json() == dist.to_json()


def test_json_round_trip_keeps_the_type_of_each_choice() -> None:
    dist = Categorical([1, 1.0, True, "1", None])
    back = distribution_from_json(json.loads(json.dumps(dist.to_json())))
    assert isinstance(back, Categorical)
    assert [key(c) for c in back.choices] == [key(c) for c in dist.choices]


@pytest.mark.parametrize("dist", case_params())
def test_json_names_the_kind(dist: Distribution) -> None:
    assert dist.to_json()["type"] == dist.kind


@pytest.mark.parametrize(
    "data",
    [{"type": "gaussian", "mu": 0}, {"low": 0, "high": 1}, {"type": None}],
    ids=["unknown_type", "no_type", "none_type"],
)
def test_from_json_rejects_unknown_descriptions(data: dict[str, object]) -> None:
    with pytest.raises(InvalidDistributionError, match="unknown distribution"):
        distribution_from_json(data)


def test_from_json_validates_like_the_constructor() -> None:
    with pytest.raises(InvalidDistributionError, match="low > 0"):
        distribution_from_json({"type": "float", "low": 0.0, "high": 1.0, "log": True, "step": None})


def test_from_json_does_not_modify_its_argument() -> None:
    data = Float(0, 1).to_json()
    distribution_from_json(data)
    assert data["type"] == "float"


# -- compatible_with -----------------------------------------------------------------------


COMPATIBILITY = [
    pytest.param(Float(0, 1), Float(-5, 5), True, id="float_range_changes"),
    pytest.param(Float(0, 1), Float(0, 1, step=0.1), True, id="float_step_added"),
    pytest.param(Float(0, 1, step=0.5), Float(0, 2, step=0.25), True, id="float_step_changes"),
    pytest.param(Float(1e-3, 1, log=True), Float(1e-5, 10, log=True), True, id="float_log_range_changes"),
    pytest.param(Float(1e-3, 1, log=True), Float(1e-3, 1), False, id="float_log_dropped"),
    pytest.param(Float(0, 10), Int(0, 10), False, id="float_vs_int"),
    pytest.param(Int(0, 10), Int(-5, 100), True, id="int_range_changes"),
    pytest.param(Int(0, 10), Int(0, 100, step=10), True, id="int_step_changes"),
    pytest.param(Int(1, 10, log=True), Int(1, 1000, log=True), True, id="int_log_range_changes"),
    pytest.param(Int(1, 10, log=True), Int(1, 10), False, id="int_log_dropped"),
    pytest.param(Categorical(["a", "b"]), Categorical(("a", "b")), True, id="categorical_same_choices"),
    pytest.param(Categorical(["a", "b"]), Categorical(["a", "b", "c"]), False, id="categorical_choice_added"),
    pytest.param(Categorical(["a", "b"]), Categorical(["a"]), False, id="categorical_choice_removed"),
    pytest.param(Categorical(["a", "b"]), Categorical(["b", "a"]), False, id="categorical_reordered"),
    pytest.param(Categorical([False, True]), Bool(), False, id="categorical_vs_bool"),
    pytest.param(Categorical([0, 1]), Int(0, 1), False, id="categorical_vs_int"),
    pytest.param(Bool(0.3), Bool(0.9), True, id="bool_p_changes"),
    pytest.param(Bool(), Int(0, 1), False, id="bool_vs_int"),
]


@pytest.mark.parametrize(("a", "b", "expected"), COMPATIBILITY)
def test_compatible_with_allows_range_changes_but_not_kind_log_or_choices(
    a: Distribution, b: Distribution, expected: bool
) -> None:
    assert a.compatible_with(b) is expected


@pytest.mark.parametrize(("a", "b", "expected"), COMPATIBILITY)
def test_compatible_with_is_symmetric(a: Distribution, b: Distribution, expected: bool) -> None:
    assert b.compatible_with(a) is expected


@pytest.mark.parametrize("dist", case_params())
def test_distribution_is_compatible_with_itself(dist: Distribution) -> None:
    assert dist.compatible_with(dist)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param([1, 2], [1.0, 2.0], id="int_vs_float"),
        pytest.param([True, False], [1, 0], id="bool_vs_int"),
        pytest.param(["x", 1], ["x", True], id="int_vs_bool"),
    ],
)
def test_categoricals_whose_choices_differ_only_in_type_are_incompatible(
    a: list[object], b: list[object]
) -> None:
    # BUG: compatible_with compares tuples with ==, where 1 == 1.0 == True.
    assert not Categorical(a).compatible_with(Categorical(b))


# -- 1, 1.0 and True are distinct categorical choices ---------------------------------------


def test_one_float_one_and_true_are_accepted_together_as_choices() -> None:
    dist = Categorical([1, 1.0, True])
    assert len(dist.choices) == 3
    assert [dist.index(v) for v in (1, 1.0, True)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("choices", "value"),
    [
        ([1], 1.0),
        ([1], True),
        ([1.0], 1),
        ([1.0], True),
        ([True], 1),
        ([True], 1.0),
        ([0], False),
        ([False], 0),
    ],
)
def test_a_choice_does_not_contain_its_equal_value_of_another_type(
    choices: list[object], value: object
) -> None:
    dist = Categorical(choices)
    assert not dist.contains(value)
    with pytest.raises(InvalidDistributionError):
        dist.index(value)


def test_one_float_one_and_true_each_round_trip_through_the_unit_map_with_their_type() -> None:
    dist = Categorical([1, 1.0, True])
    for v in (1, 1.0, True):
        assert same(dist.from_unit(dist.to_unit(v)), v)


def test_one_float_one_and_true_are_all_sampled_with_their_type() -> None:
    assert {key(v) for v in draws(Categorical([1, 1.0, True]), 300)} == {key(1), key(1.0), key(True)}


def test_suggest_categorical_returns_the_choice_with_its_type() -> None:
    study = tunelab.create_study(seed=0)
    seen = set()
    for _ in range(30):
        trial = study.ask()
        seen.add(key(trial.suggest_categorical("c", [1, 1.0, True])))
        study.tell(trial, 0.0)
    assert seen == {key(1), key(1.0), key(True)}


@pytest.mark.parametrize(("a", "b"), [([1], [True]), ([1], [1.0]), ([0, 1], [False, True])])
def test_categoricals_whose_choices_differ_only_in_type_are_not_equal(
    a: list[object], b: list[object]
) -> None:
    # BUG: the dataclass __eq__ compares the choices tuples with ==, where 1 == 1.0 == True.
    assert Categorical(a) != Categorical(b)


# -- statistics at a fixed seed ---------------------------------------------------------------


def test_log_float_samples_are_uniform_in_log_space() -> None:
    dist = Float(1e-5, 1e-1, log=True)
    logs = np.log(draws(dist))
    lo, hi = math.log(1e-5), math.log(1e-1)
    assert stats.kstest(logs, stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 0.01


def test_log_float_samples_are_not_uniform_in_linear_space() -> None:
    values = draws(Float(1e-5, 1e-1, log=True))
    assert stats.kstest(values, stats.uniform(loc=1e-5, scale=1e-1 - 1e-5).cdf).pvalue < 1e-6


def test_linear_float_samples_are_uniform() -> None:
    values = draws(Float(-2.0, 3.0))
    assert stats.kstest(values, stats.uniform(loc=-2.0, scale=5.0).cdf).pvalue > 0.01


def test_linear_float_samples_are_not_log_uniform() -> None:
    values = np.log(draws(Float(1e-5, 1e-1)))
    lo, hi = math.log(1e-5), math.log(1e-1)
    assert stats.kstest(values, stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue < 1e-6


@pytest.mark.parametrize(
    "dist",
    [
        pytest.param(Int(-3, 7), id="int"),
        pytest.param(Int(0, 20, step=4), id="int_step"),
        pytest.param(Int(0, 1), id="int_two_values"),
        pytest.param(Float(0.0, 1.0, step=0.1), id="float_step"),
        pytest.param(Float(-1.0, 1.0, step=0.5), id="float_step_negative"),
        pytest.param(Categorical(["sgd", "adam", 1, 1.0, True, None]), id="categorical"),
        pytest.param(Bool(), id="bool_half"),
    ],
)
def test_discrete_samples_are_uniform_over_their_values(dist: Distribution) -> None:
    values = dist.grid(10_000)
    counts = Counter(key(v) for v in draws(dist))
    assert set(counts) == {key(v) for v in values}
    observed = [counts[key(v)] for v in values]
    assert stats.chisquare(observed).pvalue > 0.01


def test_bool_frequency_matches_p() -> None:
    n_true = sum(draws(Bool(0.3)))
    assert stats.binomtest(n_true, N_DRAWS, 0.3).pvalue > 0.01
    assert abs(n_true / N_DRAWS - 0.3) < 0.04


def test_log_int_favours_small_values() -> None:
    values = np.array(draws(Int(1, 100, log=True)))
    share_first_decade = float(np.mean(values <= 10))
    # Log-uniform: 1..10 holds about half the mass; uniform would give 10 %.
    assert 0.4 < share_first_decade < 0.7
    assert stats.binomtest(int(np.sum(values <= 10)), N_DRAWS, 0.1).pvalue < 1e-6


def test_log_int_samples_are_uniform_in_log_space_before_rounding() -> None:
    # Every integer v owns [v - 0.5, v + 0.5] in log space.
    dist = Int(1, 50, log=True)
    counts = Counter(draws(dist))
    edges = np.log(np.arange(0.5, 51.5))
    expected = np.diff(edges) / (edges[-1] - edges[0]) * N_DRAWS
    observed = np.array([counts[v] for v in range(1, 51)])
    assert stats.chisquare(observed, expected).pvalue > 0.01


def test_float_with_a_range_wider_than_the_largest_float_still_samples_its_interior() -> None:
    # BUG (edge): from_unit computes high - low = inf, so every sample is high and from_unit(0) is nan.
    dist = Float(-1e308, 1e308)
    values = draws(dist, 200)
    assert all(dist.contains(v) for v in values)
    assert min(values) < 0 < max(values)
    assert dist.from_unit(0.0) == -1e308



def test_float_with_a_range_wider_than_the_largest_float_maps_to_unit_lists_a_grid_and_takes_a_prior() -> None:
    # high - low = inf: to_unit(0.0) was 0.0 and to_unit(high) nan (the models saw every value at one
    # edge), grid(3) was [nan, inf, 1e308] (a grid proposed values outside the range) and a Normal
    # prior had sigma 0 (a ZeroDivisionError at every draw).
    from tunelab.priors import Normal

    dist = Float(-1e308, 1e308)
    assert [dist.to_unit(v) for v in (-1e308, 0.0, 1e308)] == [0.0, 0.5, 1.0]
    assert dist.grid(3) == [-1e308, 0.0, 1e308] and all(dist.contains(v) for v in dist.grid(7))
    believed = Float(-1e308, 1e308, prior=Normal(center=0.0, spread=1e307))
    values = draws(believed, 200)
    assert all(believed.contains(v) for v in values) and min(values) < 0 < max(values)
    assert 0.8 < float(np.std(np.array(values) / 1e307)) < 1.2


@pytest.mark.parametrize(("dist", "middle"), [
    (Float(0.0, 1.0), 0.5),
    (Float(0.0, 1.0, step=0.25), 0.5),
    (Int(1, 99), 50),
    (Int(0, 10, step=2), 6),
    (Int(8, 512, log=True), 62),
])
def test_a_grid_of_one_point_is_the_middle_of_every_kind_of_range(dist: Float | Int, middle: float) -> None:
    # Float's one point was the middle, a lattice's and an Int's the low end (linspace's single point):
    # GridSampler(n_points=1) and a small coarse-to-fine first grid put widths at their minimum.
    assert dist.grid(1) == [middle] and dist.grid(1) == [dist.from_unit(0.5)]

# -- bad input ---------------------------------------------------------------------------

BAD: list[tuple[str, Callable[[], object], list[str]]] = [
    # (id, constructor, phrases the message must contain: the problem and the fix)
    ("float_log_low_zero", lambda: Float(0, 1, log=True), ["log=True needs low > 0", "log=False"]),
    ("float_log_low_negative", lambda: Float(-1, 1, log=True), ["low > 0", "small positive low"]),
    ("float_low_above_high", lambda: Float(1, 0), ["greater than", "swap"]),
    ("int_low_above_high", lambda: Int(5, 1), ["greater than", "swap"]),
    ("float_log_low_above_high", lambda: Float(1, 1e-3, log=True), ["greater than", "swap"]),
    ("float_low_inf", lambda: Float(-math.inf, 1), ["must be finite", "inf"]),
    ("float_high_inf", lambda: Float(0, math.inf), ["must be finite", "inf"]),
    ("float_low_nan", lambda: Float(math.nan, 1), ["must be finite", "nan"]),
    ("int_high_inf", lambda: Int(0, math.inf), ["must be an integer", "inf"]),
    ("float_low_string", lambda: Float("0", 1), ["must be real numbers", "'0'"]),
    ("float_high_none", lambda: Float(0, None), ["must be real numbers", "None"]),
    ("float_low_bool", lambda: Float(True, 2), ["must be real numbers", "True"]),
    ("float_low_list", lambda: Float([0], 1), ["must be real numbers"]),
    ("int_low_string", lambda: Int("1", 3), ["must be an integer", "'1'"]),
    ("float_step_zero", lambda: Float(0, 1, step=0), ["step must be a positive number"]),
    ("float_step_negative", lambda: Float(0, 1, step=-0.1), ["step must be a positive number"]),
    ("float_step_nan", lambda: Float(0, 1, step=math.nan), ["step must be a positive number"]),
    ("float_step_inf", lambda: Float(0, 1, step=math.inf), ["step must be a positive number"]),
    ("float_step_string", lambda: Float(0, 1, step="0.1"), ["step must be a positive number"]),
    ("int_step_zero", lambda: Int(0, 10, step=0), ["step must be >= 1"]),
    ("int_step_negative", lambda: Int(0, 10, step=-2), ["step must be >= 1"]),
    ("float_step_not_dividing", lambda: Float(0, 1, step=0.3), ["does not divide", "move high"]),
    ("int_step_not_dividing", lambda: Int(0, 10, step=3), ["does not divide", "move high to 9"]),
    ("float_step_with_log", lambda: Float(0.1, 1, step=0.1, log=True), ["cannot be combined", "drop step"]),
    ("int_step_with_log", lambda: Int(1, 9, step=2, log=True), ["cannot be combined", "drop step"]),
    ("int_low_fraction", lambda: Int(0.5, 3), ["low must be an integer", "use Float"]),
    ("int_high_fraction", lambda: Int(0, 2.5), ["high must be an integer", "use Float"]),
    ("int_step_fraction", lambda: Int(0, 10, step=1.5), ["step must be an integer", "use Float"]),
    ("int_low_bool", lambda: Int(False, 3), ["low must be an integer"]),
    ("int_log_low_zero", lambda: Int(0, 10, log=True), ["log=True needs low >= 1", "low=1"]),
    ("int_log_low_negative", lambda: Int(-5, 10, log=True), ["low >= 1", "log=False"]),
    ("categorical_empty_list", lambda: Categorical([]), ["choices is empty", "at least one"]),
    ("categorical_empty_tuple", lambda: Categorical(()), ["choices is empty", "at least one"]),
    ("categorical_duplicate_str", lambda: Categorical(["a", "b", "a"]), ["'a' appears twice", "remove"]),
    ("categorical_duplicate_none", lambda: Categorical([None, None]), ["None appears twice", "remove"]),
    ("categorical_duplicate_int", lambda: Categorical([1, 2, 1]), ["1 appears twice", "remove"]),
    ("categorical_list_choice", lambda: Categorical([[1, 2]]), ["is a list", "string key"]),
    ("categorical_dict_choice", lambda: Categorical([{"a": 1}]), ["is a dict", "string key"]),
    ("categorical_object_choice", lambda: Categorical(["a", object()]), ["is a object", "string key"]),
    ("categorical_tuple_choice", lambda: Categorical([("a", 1)]), ["is a tuple", "string key"]),
    ("categorical_nan_choice", lambda: Categorical([0.1, math.nan]), ["nan", "not finite"]),
    ("categorical_string", lambda: Categorical("abc"), ["must be a list or tuple", "'abc'"]),
    ("categorical_bytes", lambda: Categorical(b"ab"), ["must be a list or tuple"]),
    ("categorical_set", lambda: Categorical({"a", "b"}), ["must be a list or tuple"]),
    ("categorical_dict", lambda: Categorical({"a": 1}), ["must be a list or tuple"]),
    ("categorical_none", lambda: Categorical(None), ["must be a list or tuple"]),
    ("bool_p_negative", lambda: Bool(-0.1), ["probability in [0, 1]", "-0.1"]),
    ("bool_p_above_one", lambda: Bool(1.5), ["probability in [0, 1]", "1.5"]),
    ("bool_p_nan", lambda: Bool(math.nan), ["probability in [0, 1]"]),
    ("bool_p_string", lambda: Bool("0.5"), ["probability in [0, 1]"]),
    ("bool_p_bool", lambda: Bool(True), ["probability in [0, 1]"]),
    # log="false" (a truthy string) was log-uniform, log=1 kept as 1: both unsaid
    ("float_log_string", lambda: Float(0.1, 1, log="false"), ["log must be True or False", "'false'"]),
    ("float_log_int", lambda: Float(0.1, 1, log=1), ["log must be True or False", "got 1"]),
    ("int_log_string", lambda: Int(1, 10, log="yes"), ["log must be True or False", "'yes'"]),
]


@pytest.mark.parametrize(("make", "phrases"), [pytest.param(m, p, id=i) for i, m, p in BAD])
def test_bad_arguments_raise_invalid_distribution_error_naming_problem_and_fix(
    make: Callable[[], object], phrases: list[str]
) -> None:
    with pytest.raises(InvalidDistributionError) as info:
        make()
    for phrase in phrases:
        assert phrase in str(info.value)


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m, _ in BAD])
def test_bad_arguments_error_is_a_config_error_and_a_value_error(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidDistributionError) as info:
        make()
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Float(1, 2), id="float"),
        pytest.param(lambda: Float(1e-300, 1e300, log=True), id="float_wide_log"),
        pytest.param(lambda: Float(0, 1, step=1), id="float_step_whole_range"),
        pytest.param(lambda: Float(0, 0.3, step=0.1), id="float_step_inexact_ratio"),
        pytest.param(lambda: Int(1.0, 3.0), id="int_integral_floats"),
        pytest.param(lambda: Int(np.int64(1), np.int64(3)), id="int_numpy"),
        pytest.param(lambda: Int(1, 1, log=True), id="int_log_single"),
        pytest.param(lambda: Categorical(("a",)), id="categorical_tuple"),
        pytest.param(lambda: Bool(0), id="bool_int_p"),
        pytest.param(lambda: Float(0.1, 1, log=np.bool_(True)), id="float_numpy_log"),
    ],
)
def test_valid_edge_arguments_are_accepted(make: Callable[[], Distribution]) -> None:
    dist = make()
    assert dist.contains(dist.sample(np.random.default_rng(0)))


def test_int_normalises_integral_float_bounds_to_int() -> None:
    dist = Int(1.0, 3.0)
    assert same(dist.low, 1)
    assert same(dist.high, 3)


def test_float_normalises_int_bounds_to_float() -> None:
    dist = Float(1, 3, step=1)
    assert same(dist.low, 1.0)
    assert same(dist.high, 3.0)
    assert same(dist.step, 1.0)


@pytest.mark.parametrize("dist", case_params())
def test_distributions_are_immutable(dist: Distribution) -> None:
    name = next(iter(dist.to_json().keys() - {"type"}))
    with pytest.raises(AttributeError):
        setattr(dist, name, 0)


# -- errors through a study name the parameter ----------------------------------------------


SUGGEST_BAD = [
    pytest.param(lambda t: t.suggest_float("lr", 0, 1, log=True), "lr", "low > 0", id="float_log_low_zero"),
    pytest.param(lambda t: t.suggest_float("lr", 1, 0), "lr", "swap", id="float_low_above_high"),
    pytest.param(lambda t: t.suggest_float("lr", 0, 1, step=0.3), "lr", "does not divide", id="float_step"),
    pytest.param(lambda t: t.suggest_int("width", 0, 10, log=True), "width", "low >= 1", id="int_log"),
    pytest.param(lambda t: t.suggest_int("width", 0.5, 3), "width", "integer", id="int_fraction"),
    pytest.param(lambda t: t.suggest_categorical("opt", []), "opt", "empty", id="categorical_empty"),
    pytest.param(lambda t: t.suggest_categorical("opt", "sgd"), "opt", "list or tuple", id="categorical_str"),
    pytest.param(lambda t: t.suggest_categorical("opt", ["a", "a"]), "opt", "twice", id="categorical_dup"),
    pytest.param(lambda t: t.suggest_bool("flag", 2.0), "flag", "probability", id="bool_p"),
    pytest.param(lambda t: t.suggest_float("lr", 0.1, 1, log="no"), "lr", "True or False", id="float_log_str"),
]


@pytest.mark.parametrize(("suggest", "name", "problem"), SUGGEST_BAD)
def test_suggest_error_names_the_parameter(
    suggest: Callable[[tunelab.Trial], object], name: str, problem: str
) -> None:
    trial = tunelab.create_study(seed=0).ask()
    with pytest.raises(InvalidDistributionError) as info:
        suggest(trial)
    message = str(info.value)
    assert f"parameter '{name}'" in message
    assert problem in message


def test_suggest_float_log_with_zero_low_is_a_value_error_naming_lr() -> None:
    trial = tunelab.create_study(seed=0).ask()
    with pytest.raises(ValueError, match=r"parameter 'lr': log=True needs low > 0"):
        trial.suggest_float("lr", 0, 1, log=True)


def test_bad_suggestion_does_not_record_the_parameter() -> None:
    trial = tunelab.create_study(seed=0).ask()
    with pytest.raises(InvalidDistributionError):
        trial.suggest_float("lr", 0, 1, log=True)
    assert "lr" not in trial.params
    assert 1e-3 <= trial.suggest_float("lr", 1e-3, 1, log=True) <= 1


@pytest.mark.parametrize(
    ("suggest", "dist"),
    [
        pytest.param(
            lambda t: t.suggest_float("x", 1e-5, 1e-1, log=True), Float(1e-5, 1e-1, log=True), id="float_log"
        ),
        pytest.param(lambda t: t.suggest_float("x", 0, 1, step=0.1), Float(0, 1, step=0.1), id="float_step"),
        pytest.param(lambda t: t.suggest_int("x", 1, 1024, log=True), Int(1, 1024, log=True), id="int_log"),
        pytest.param(lambda t: t.suggest_int("x", 0, 20, step=4), Int(0, 20, step=4), id="int_step"),
        pytest.param(
            lambda t: t.suggest_categorical("x", ["a", 1, None]), Categorical(["a", 1, None]), id="cat"
        ),
        pytest.param(lambda t: t.suggest_bool("x", 0.3), Bool(0.3), id="bool"),
    ],
)
def test_suggest_returns_members_and_records_the_distribution(
    suggest: Callable[[tunelab.Trial], object], dist: Distribution
) -> None:
    study = tunelab.create_study(seed=0)
    for _ in range(20):
        trial = study.ask()
        value = suggest(trial)
        assert dist.contains(value)
        assert trial.distributions["x"] == dist
        study.tell(trial, 0.0)
