"""The dashboard answers 422, never 500, to what JSON or a URL can hold but tunelab cannot store (issue 16
item 14): NaN and infinities in a JSON body, integers above 2**63 - 1 in a path, a query or a body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.dashboard import create_app
from tunelab.dashboard.app import validation_errors
from tunelab.samplers import RandomSampler

LOCAL = "http://127.0.0.1:8000"
HUGE = str(2**64)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('invalid') / 'd.db'}"
    study = tunelab.create_study(name="s", storage=url, sampler=RandomSampler(), seed=0)
    study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1.0, log=True), n_trials=2, show_progress=False)
    study.ask()  # RUNNING: its live changes are accepted
    with TestClient(create_app(url), base_url=LOCAL, raise_server_exceptions=False) as c:
        yield c


def post(client: TestClient, path: str, body: str) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/studies/s/enqueue", '{"params": {"lr": NaN}}', ["body", "params", "lr"]),
        ("/api/studies/s/trials/2/live", '{"values": {"lr": Infinity}}', ["body", "values", "lr"]),
        ("/api/studies/s/trials/2/live", '{"values": {"lr": -1e999}}', ["body", "values", "lr"]),
        ("/api/studies/s/trials/0/note", '{"note": NaN}', ["body", "note"]),
        ("/api/studies/s/rollback", '{"to": NaN}', ["body", "to"]),
        ("/api/studies/s/rollback", '{"to": 3, "values": {"lr": NaN}}', ["body", "values", "lr"]),
    ],
)
def test_nan_and_infinity_in_a_body_are_422_with_one_clear_error(
    client: TestClient, path: str, body: str, loc: list[str]
) -> None:
    response = post(client, path, body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "finite_number" and error["loc"] == loc
    assert error["input"] in ("NaN", "Infinity", "-Infinity")
    assert "JSON has no NaN or Infinity" in error["msg"]


@pytest.mark.parametrize(
    "path",
    [f"/api/studies/s/trials/{HUGE}", f"/api/studies/s/trials/{2**63}/hyperparameters",
     f"/api/studies/s/trials/{HUGE}/suggestions", f"/api/studies/s/trials?since={HUGE}",
     f"/api/studies/s/values?since={HUGE}"],
)
def test_numbers_above_2_63_in_a_url_are_422(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "less_than_equal" and "2**63 - 1" in error["msg"]
    assert client.get(f"/api/studies/s/trials/{2**63 - 1}").status_code == 404  # the largest is only unknown


@pytest.mark.parametrize(
    ("path", "body"),
    [(f"/api/studies/s/trials/{HUGE}/stop", "{}"), (f"/api/studies/s/trials/{HUGE}/note", '{"note": "x"}'),
     ("/api/studies/s/rollback", f'{{"to": {HUGE}}}'), ("/api/studies/s/rollback", f'{{"to": 1, "trial": {HUGE}}}')],
)
def test_numbers_above_2_63_in_actions_are_422(client: TestClient, path: str, body: str) -> None:
    response = post(client, path, body)
    assert response.status_code == 422, response.text
    assert "2**63 - 1" in response.text


def test_other_validation_errors_keep_fastapi_s_shape() -> None:
    errors = [{"type": "missing", "loc": ("body", "note"), "msg": "Field required", "input": {"x": float("nan")}}]
    assert validation_errors(errors) == [
        {"type": "missing", "loc": ["body", "note"], "msg": "Field required", "input": {"x": "NaN"}}
    ]


def test_a_finite_body_still_works(client: TestClient) -> None:
    response = post(client, "/api/studies/s/trials/0/note", '{"note": "fine"}')
    assert response.status_code == 200, response.text


LENIENT = ["1.0", "1e0", "+1", " 1", "1 ", "1_0", "-0", "\u0661", "0x1", "\uff11"]
"""Trial numbers FastAPI's int (or Python's int()) read as a number: a decimal point, an exponent, a sign,
spaces, an underscore, digits of other scripts (Arabic-Indic one, fullwidth one)."""


@pytest.mark.parametrize("value", LENIENT)
@pytest.mark.parametrize(
    "template",
    ["/api/studies/s/trials/{}", "/api/studies/s/trials/{}/logs", "/api/studies/s/diagnosis/{}",
     "/api/studies/s/trials/{}/hyperparameters", "/api/studies/s/trials/{}/suggestions",
     "/api/studies/s/trials?since={}", "/api/studies/s/values?since={}", "/api/studies/s/curves?numbers={}",
     "/api/studies/s/curves?numbers=0,{}"],
)
def test_a_trial_number_in_a_url_that_is_not_plain_decimal_digits_is_422_naming_it(
    client: TestClient, template: str, value: str
) -> None:
    # "1.0", "+1", " 1" and "-0" read as trial 1 (or 0), "1_0" as trial 10, and curves?numbers=\u0661 as trial 1
    response = client.get(template.format(quote(value, safe="")))  # "+" in a query is a space: sent as %2B
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["input"] in (value, f"0,{value}") and "plain decimal" in error["msg"], error
    assert client.get(template.format("1")).status_code in (200, 404)  # digits are still a number


def test_a_trial_number_in_an_action_url_that_is_not_plain_decimal_digits_is_422(client: TestClient) -> None:
    for path, body in [("/api/studies/s/trials/{}/stop", "{}"), ("/api/studies/s/trials/{}/note", '{"note": "x"}'),
                       ("/api/studies/s/trials/{}/live", '{"values": {"lr": 0.1}}')]:
        response = post(client, path.format("2.0"), body)
        assert response.status_code == 422 and "'2.0'" in response.text, response.text
    trial = client.get("/api/studies/s/trials/2").json()
    assert trial["state"] == "RUNNING" and trial["user_attrs"] == {}  # neither stopped nor noted
