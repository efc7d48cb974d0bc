"""Declared spaces: validation, conditional activity, JSON, and suggest_space on a study."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.distributions import Bool, Categorical, Float, Int
from tunelab.errors import ConfigError
from tunelab.space import (
    Conditional,
    SpaceEntry,
    active_names,
    space_from_json,
    space_to_json,
    unwrap,
    validate_space,
)


def simple_space() -> dict[str, SpaceEntry]:
    return {
        "lr": Float(1e-5, 1e-1, log=True),
        "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
        "momentum": Conditional(Float(0.0, 0.99), when={"optimizer": "sgd"}),
        "beta2": Conditional(Float(0.9, 0.9999), when={"optimizer": ["adam", "rmsprop"]}),
        "use_bn": Bool(),
    }


def nested_space() -> dict[str, SpaceEntry]:
    """optimizer -> nesterov (sgd only) -> nesterov_warmup (when nesterov is True)."""
    return {
        "optimizer": Categorical(["sgd", "adam"]),
        "nesterov": Conditional(Bool(), when={"optimizer": "sgd"}),
        "nesterov_warmup": Conditional(Int(0, 10), when={"nesterov": True}),
        "width": Int(16, 256, log=True),
    }


# -- Conditional -------------------------------------------------------------------------


def test_unwrap_returns_the_distribution_of_plain_and_conditional_entries() -> None:
    dist = Float(0, 1)
    assert unwrap(dist) is dist
    assert unwrap(Conditional(dist, when={"a": 1})) is dist


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"opt": "sgd"}, ["sgd"]),
        ({"opt": ["sgd", "adam"]}, ["sgd", "adam"]),
        ({"opt": ("sgd", "adam")}, ["sgd", "adam"]),
        ({"opt": None}, [None]),
    ],
)
def test_conditional_accepted_lists_the_values_that_switch_it_on(
    when: dict[str, Any], expected: list[object]
) -> None:
    assert Conditional(Float(0, 1), when=when).accepted("opt") == expected


@pytest.mark.parametrize("distribution", [0.5, "Float", None, Float, (0, 1)])
def test_conditional_rejects_a_non_distribution(distribution: object) -> None:
    with pytest.raises(ConfigError, match="needs a distribution"):
        Conditional(distribution, when={"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("when", [{}, None, "optimizer", [("optimizer", "sgd")]])
def test_conditional_rejects_an_empty_or_non_mapping_condition(when: object) -> None:
    with pytest.raises(ConfigError, match="non-empty mapping"):
        Conditional(Float(0, 1), when=when)  # type: ignore[arg-type]


@pytest.mark.parametrize("empty", [[], (), set()])
def test_conditional_rejects_an_empty_list_of_values(empty: object) -> None:
    # was accepted: the parameter was never active, and no error said why
    with pytest.raises(ConfigError, match=r"accepts no value of 'opt'.*never be active"):
        Conditional(Float(0, 1), when={"opt": empty})


@pytest.mark.parametrize("parent", [1, "", None])
def test_conditional_rejects_a_parent_that_is_not_a_name(parent: object) -> None:
    with pytest.raises(ConfigError, match="keys must be parameter names"):
        Conditional(Float(0, 1), when={parent: "sgd"})  # type: ignore[dict-item]


def test_conditional_copies_its_condition() -> None:
    when = {"optimizer": "sgd"}
    cond = Conditional(Float(0, 1), when=when)
    when["optimizer"] = "adam"
    assert cond.when == {"optimizer": "sgd"}


# -- validate_space ----------------------------------------------------------------------


def test_a_condition_read_from_numpy_holds_for_the_plain_values_of_its_parent() -> None:
    # np.int64(2) from an array never equalled the parent's 2 (type check): the space was refused
    # with "np.int64(2) is not a value of 'layers'", and its JSON could not be written.
    space = {"layers": Int(1, 4), "opt": Categorical(["sgd", "adam"]),
             "w": Conditional(Float(0, 1), when={"layers": [np.int64(2), 3], "opt": np.str_("sgd")})}
    validated = validate_space(space)
    assert validated["w"].when == {"layers": [2, 3], "opt": "sgd"}  # type: ignore[union-attr]
    assert active_names(validated, {"layers": 2, "opt": "sgd"}) == ["layers", "opt", "w"]
    assert json.loads(json.dumps(space_to_json(space)))["w"]["when"] == {"layers": [2, 3], "opt": "sgd"}


@pytest.mark.parametrize(
    "space",
    [
        pytest.param(simple_space(), id="dict"),
        pytest.param(nested_space(), id="nested"),
        pytest.param(OrderedDict(simple_space()), id="ordered_dict"),
        pytest.param(MappingProxyType(simple_space()), id="mapping_proxy"),
        pytest.param({"x": Int(0, 3)}, id="single"),
    ],
)
def test_validate_space_accepts_a_mapping_of_distributions_and_conditionals(
    space: Mapping[str, SpaceEntry],
) -> None:
    out = validate_space(space)
    assert type(out) is dict
    assert out == dict(space)
    assert list(out) == list(space)


@pytest.mark.parametrize("space", [{}, OrderedDict(), None, [("lr", Float(0, 1))], "lr", Float(0, 1)])
def test_validate_space_rejects_empty_or_non_mapping(space: object) -> None:
    with pytest.raises(ConfigError, match="non-empty mapping of name -> distribution"):
        validate_space(space)


@pytest.mark.parametrize("entry", [(0, 1), 0.1, "Float(0, 1)", None, Float, [Float(0, 1)], {"low": 0}])
def test_validate_space_rejects_entries_that_are_not_distributions(entry: object) -> None:
    with pytest.raises(ConfigError, match=r"parameter 'lr': expected a distribution"):
        validate_space({"x": Int(0, 1), "lr": entry})


@pytest.mark.parametrize("name", ["", 1, None, ("a",)])
def test_validate_space_rejects_bad_names(name: object) -> None:
    with pytest.raises(ConfigError, match="parameter names must be non-empty strings"):
        validate_space({name: Float(0, 1)})


def test_validate_space_rejects_a_child_declared_before_its_parent() -> None:
    space = {
        "momentum": Conditional(Float(0, 1), when={"optimizer": "sgd"}),
        "optimizer": Categorical(["sgd", "adam"]),
    }
    with pytest.raises(ConfigError) as info:
        validate_space(space)
    message = str(info.value)
    assert "'momentum'" in message
    assert "'optimizer'" in message
    assert "not declared before it" in message
    assert "put parents before their children" in message


@pytest.mark.parametrize(
    "space",
    [
        pytest.param({"a": Float(0, 1), "b": Conditional(Float(0, 1), when={"missing": 1})}, id="missing"),
        pytest.param({"b": Conditional(Float(0, 1), when={"b": 0.5})}, id="itself"),
        pytest.param(
            {"a": Categorical(["x"]), "b": Conditional(Float(0, 1), when={"a": "x", "c": 1}), "c": Int(0, 3)},
            id="second_parent_later",
        ),
    ],
)
def test_validate_space_rejects_a_parent_that_is_not_declared_before(space: dict[str, SpaceEntry]) -> None:
    with pytest.raises(ConfigError, match=r"parameter 'b': its condition names '\w+', which is not declared"):
        validate_space(space)


@pytest.mark.parametrize(
    ("parent", "value"),
    [
        pytest.param(Categorical(["sgd", "adam"]), "rmsprop", id="categorical_unknown"),
        pytest.param(Categorical(["sgd", "adam"]), ["sgd", "rmsprop"], id="categorical_list_one_unknown"),
        pytest.param(Categorical([1, 2]), True, id="categorical_bool_for_int"),
        pytest.param(Categorical([1, 2]), 1.0, id="categorical_float_for_int"),
        pytest.param(Int(0, 10), 11, id="int_out_of_range"),
        pytest.param(Int(0, 10, step=2), 3, id="int_off_step"),
        pytest.param(Int(0, 10), 2.5, id="int_fraction"),
        pytest.param(Float(0, 1), 2.0, id="float_out_of_range"),
        pytest.param(Bool(), "yes", id="bool_string"),
        pytest.param(Bool(), 1, id="bool_int"),
    ],
)
def test_validate_space_rejects_a_condition_the_parent_can_never_take(parent: object, value: object) -> None:
    space = {"parent": parent, "child": Conditional(Float(0, 1), when={"parent": value})}
    with pytest.raises(ConfigError) as info:
        validate_space(space)
    message = str(info.value)
    assert "'child'" in message
    assert "'parent'" in message
    assert "can never hold" in message


def test_validate_space_rejects_a_condition_off_a_float_parents_lattice() -> None:
    # BUG: Float.contains ignores step, so 0.35 passes although the parent only takes 0.0, 0.1, ...
    space = {"dropout": Float(0, 0.5, step=0.1), "child": Conditional(Float(0, 1), when={"dropout": 0.35})}
    with pytest.raises(ConfigError, match="can never hold"):
        validate_space(space)


def test_validate_space_rejects_an_int_condition_on_a_float_parent() -> None:
    # BUG: Float.contains(0) is True, so the condition is accepted, but the parent's values are
    # floats and Conditional.is_active demands the same type: 0.0 never matches 0, the child never runs.
    space = {"dropout": Float(0, 0.5, step=0.1), "child": Conditional(Float(0, 1), when={"dropout": 0})}
    with pytest.raises(ConfigError) as info:
        validate_space(space)
    assert "'child'" in str(info.value)
    assert "'dropout'" in str(info.value)


@pytest.mark.parametrize(
    ("parent", "value"),
    [
        pytest.param(Categorical(["sgd", "adam"]), "adam", id="categorical"),
        pytest.param(Categorical([1, 1.0, True]), 1.0, id="categorical_float_among_equals"),
        pytest.param(Int(0, 10, step=2), 4, id="int"),
        pytest.param(Float(0, 0.5, step=0.1), 0.3, id="float_step"),
        pytest.param(Bool(), False, id="bool"),
        pytest.param(Categorical(["a", "b", "c"]), ["a", "c"], id="list"),
    ],
)
def test_validate_space_accepts_a_condition_the_parent_can_take(parent: object, value: object) -> None:
    validate_space({"parent": parent, "child": Conditional(Float(0, 1), when={"parent": value})})


def test_validate_space_accepts_a_child_of_a_conditional_parent() -> None:
    assert list(validate_space(nested_space())) == ["optimizer", "nesterov", "nesterov_warmup", "width"]


def test_validate_space_does_not_modify_the_space() -> None:
    space = simple_space()
    before = dict(space)
    validate_space(space)
    assert space == before


# -- active_names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assigned", "expected"),
    [
        ({"optimizer": "sgd"}, ["lr", "optimizer", "momentum", "use_bn"]),
        ({"optimizer": "adam"}, ["lr", "optimizer", "beta2", "use_bn"]),
        ({"optimizer": "rmsprop"}, ["lr", "optimizer", "beta2", "use_bn"]),
        ({}, ["lr", "optimizer", "use_bn"]),
    ],
    ids=["single_value", "list_first", "list_second", "parent_unassigned"],
)
def test_active_names_follow_single_and_list_valued_conditions(
    assigned: dict[str, object], expected: list[str]
) -> None:
    assert active_names(simple_space(), assigned) == expected


@pytest.mark.parametrize(
    ("assigned", "expected"),
    [
        ({"optimizer": "sgd", "nesterov": True}, ["optimizer", "nesterov", "nesterov_warmup", "width"]),
        ({"optimizer": "sgd", "nesterov": False}, ["optimizer", "nesterov", "width"]),
        ({"optimizer": "adam"}, ["optimizer", "width"]),
    ],
    ids=["grandchild_active", "grandchild_off", "child_off"],
)
def test_active_names_follow_nested_conditions(assigned: dict[str, object], expected: list[str]) -> None:
    assert active_names(nested_space(), assigned) == expected


def test_grandchild_of_an_inactive_parent_is_inactive_even_if_the_parent_has_a_value() -> None:
    # BUG: active_names checks each condition against ``assigned`` only, not against the
    # parents that are active, so a stale value of an inactive parent switches its child on.
    assigned = {"optimizer": "adam", "nesterov": True}
    assert active_names(nested_space(), assigned) == ["optimizer", "width"]


def test_active_names_need_every_parent_to_match() -> None:
    space = {
        "a": Categorical(["x", "y"]),
        "b": Bool(),
        "c": Conditional(Float(0, 1), when={"a": "x", "b": True}),
    }
    assert active_names(space, {"a": "x", "b": True}) == ["a", "b", "c"]
    assert active_names(space, {"a": "x", "b": False}) == ["a", "b"]
    assert active_names(space, {"a": "y", "b": True}) == ["a", "b"]


@pytest.mark.parametrize(("value", "active"), [(1, True), (1.0, False), (True, False)])
def test_active_names_tell_one_float_one_and_true_apart(value: object, active: bool) -> None:
    space = {"n": Categorical([1, 1.0, True]), "c": Conditional(Float(0, 1), when={"n": 1})}
    assert ("c" in active_names(space, {"n": value})) is active


def test_active_names_keep_declaration_order() -> None:
    space = {
        "z": Int(0, 1),
        "a": Categorical(["on", "off"]),
        "m": Conditional(Int(0, 1), when={"a": "on"}),
        "b": Float(0, 1),
    }
    assert active_names(space, {"a": "on"}) == ["z", "a", "m", "b"]


# -- JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize("space", [simple_space(), nested_space(), {"x": Categorical([1, 1.0, True, None])}])
def test_space_json_round_trip_gives_an_equal_space(space: dict[str, SpaceEntry]) -> None:
    text = json.dumps(space_to_json(space), allow_nan=False)
    back = space_from_json(json.loads(text))
    assert back == space
    assert list(back) == list(space)


def test_space_json_keeps_conditionals_as_conditionals() -> None:
    back = space_from_json(json.loads(json.dumps(space_to_json(simple_space()))))
    assert isinstance(back["momentum"], Conditional)
    assert back["momentum"].when == {"optimizer": "sgd"}
    assert not isinstance(back["lr"], Conditional)


@pytest.mark.parametrize(
    "accepted",
    [pytest.param(("adam", "rmsprop"), id="tuple"), pytest.param({"adam", "rmsprop"}, id="set")],
)
def test_space_json_round_trip_with_tuple_or_set_condition_values(accepted: object) -> None:
    # BUG: Conditional keeps tuples/sets as given; space_to_json copies them, so a set is not
    # JSON at all and a tuple comes back as a list (an unequal Conditional).
    space = {
        "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
        "beta2": Conditional(Float(0.9, 0.999), when={"optimizer": accepted}),
    }
    back = space_from_json(json.loads(json.dumps(space_to_json(space))))
    assert active_names(back, {"optimizer": "adam"}) == ["optimizer", "beta2"]
    assert back == validate_space(space)


def test_space_with_a_set_valued_condition_can_be_stored_in_sqlite(tmp_path: Path) -> None:
    # BUG: same cause as above: create_study raises StorageError "Object of type set is not JSON
    # serializable".
    space = {
        "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
        "beta2": Conditional(Float(0.9, 0.999), when={"optimizer": {"adam", "rmsprop"}}),
    }
    url = f"sqlite:///{tmp_path / 'space.db'}"
    tunelab.create_study(name="s", storage=url, space=space, seed=0)
    loaded = tunelab.load_study("s", url)
    assert loaded.space is not None
    assert active_names(loaded.space, {"optimizer": "rmsprop"}) == ["optimizer", "beta2"]


def test_space_stored_with_a_study_is_restored_by_load_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'space.db'}"
    tunelab.create_study(name="s", storage=url, space=nested_space(), seed=0)
    loaded = tunelab.load_study("s", url)
    assert loaded.space == nested_space()
    assert list(loaded.space) == list(nested_space())


# -- suggest_space on a study ----------------------------------------------------------------


def run_trials(space: Mapping[str, SpaceEntry], n: int = 50, seed: int = 0) -> list[dict[str, object]]:
    study = tunelab.create_study(seed=seed)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(trial.suggest_space(space))
        study.tell(trial, 0.0)
    return out


def test_suggest_space_suggests_every_unconditional_parameter() -> None:
    for params in run_trials(simple_space()):
        assert {"lr", "optimizer", "use_bn"} <= set(params)


def test_suggest_space_suggests_only_active_parameters_in_declaration_order() -> None:
    space = simple_space()
    for params in run_trials(space):
        assert list(params) == active_names(space, params)


def test_suggest_space_values_are_members_of_their_distributions() -> None:
    space = simple_space()
    for params in run_trials(space):
        assert all(unwrap(space[name]).contains(value) for name, value in params.items())


def test_suggest_space_conditional_parameter_appears_only_when_its_condition_holds() -> None:
    trials = run_trials(simple_space())
    for params in trials:
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("beta2" in params) == (params["optimizer"] in ("adam", "rmsprop"))
    assert any("momentum" in p for p in trials)
    assert any("momentum" not in p for p in trials)
    assert any("beta2" in p for p in trials)
    assert any("beta2" not in p for p in trials)


def test_suggest_space_nested_parameter_appears_only_when_its_whole_chain_holds() -> None:
    trials = run_trials(nested_space())
    for params in trials:
        assert ("nesterov" in params) == (params["optimizer"] == "sgd")
        assert ("nesterov_warmup" in params) == (params.get("nesterov") is True)
    assert any("nesterov_warmup" in p for p in trials)
    assert any("nesterov" in p and "nesterov_warmup" not in p for p in trials)
    assert any("nesterov" not in p for p in trials)


def test_suggest_space_records_params_and_distributions_on_the_trial() -> None:
    space = simple_space()
    trial = tunelab.create_study(seed=0).ask()
    params = trial.suggest_space(space)
    assert trial.params == params
    assert list(trial.params) == list(params)
    assert trial.distributions == {name: unwrap(space[name]) for name in params}


def test_suggest_space_returns_the_same_values_when_called_again() -> None:
    trial = tunelab.create_study(seed=0).ask()
    assert trial.suggest_space(simple_space()) == trial.suggest_space(simple_space())


def test_suggest_space_is_reproducible_for_a_seed() -> None:
    assert run_trials(simple_space(), n=10, seed=3) == run_trials(simple_space(), n=10, seed=3)


def test_ask_with_a_space_suggests_it_at_once() -> None:
    space = simple_space()
    study = tunelab.create_study(seed=0)
    for _ in range(20):
        trial = study.ask(space)
        assert list(trial.params) == active_names(space, trial.params)
        study.tell(trial, 0.0)


def test_study_space_is_suggested_by_every_ask() -> None:
    study = tunelab.create_study(seed=0, space=nested_space())
    trials = [study.ask() for _ in range(50)]
    for trial in trials:
        assert list(trial.params) == active_names(nested_space(), trial.params)
    assert {t.params["optimizer"] for t in trials} == {"sgd", "adam"}


@pytest.mark.parametrize(
    "space",
    [
        pytest.param({}, id="empty"),
        pytest.param({"lr": (0, 1)}, id="bad_entry"),
        pytest.param({"b": Conditional(Float(0, 1), when={"a": "x"}), "a": Categorical(["x"])}, id="order"),
        pytest.param({"a": Categorical(["x"]), "b": Conditional(Float(0, 1), when={"a": "y"})}, id="never"),
    ],
)
def test_suggest_space_rejects_an_invalid_space_before_suggesting(space: dict[str, Any]) -> None:
    trial = tunelab.create_study(seed=0).ask()
    with pytest.raises(ConfigError):
        trial.suggest_space(space)
    assert trial.params == {}


def test_create_study_rejects_an_invalid_space() -> None:
    space = {"a": Categorical(["x"]), "b": Conditional(Float(0, 1), when={"a": "y"})}
    with pytest.raises(ConfigError, match="can never hold"):
        tunelab.create_study(space=space)
