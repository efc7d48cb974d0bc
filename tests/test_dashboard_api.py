"""The dashboard's backend: every endpoint on a real SQLite study, its guards, and its actions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.dashboard import create_app
from tunelab.dashboard.app import STATIC_DIR
from tunelab.errors import ConfigError
from tunelab.pruners import MedianPruner
from tunelab.samplers import RandomSampler
from tunelab.storage.memory import InMemoryStorage

STUDY = "dash"
STATES = {"WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"}
LOCAL = "http://127.0.0.1:8000"
"""The TestClient's base URL: the app answers only requests addressed to it (its Host check)."""
SUMMARY_KEYS = {"number", "state", "value", "values", "constraints", "feasible", "params", "datetime_start",
                "datetime_complete", "duration", "stage", "error", "note"}


def objective(trial: tunelab.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    trial.set_user_attr("train", {"stage": "coarse" if trial.number < 8 else "refine"})
    if trial.number == 3:
        raise ValueError("boom\nsecond line of the traceback")
    loss = 1.0
    for step in range(6):
        loss = loss * 0.8 + lr + 10 * wd
        trial.report(step, train_loss=loss * 0.9, val_loss=loss)
        if trial.number in (5, 9) and step == 2:
            raise tunelab.TrialPruned()
    return loss


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'd.db'}"
    study = tunelab.create_study(name=STUDY, storage=url, sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=12, show_progress=False)
    study.set_system_attr("recipe", {"steps": [{"step": "initial_loss", "verdict": "pass", "message": "fine"}]})
    tunelab.create_study(name="empty", storage=url, seed=0)
    return url


@pytest.fixture(scope="module")
def client(db: str) -> Iterator[TestClient]:
    with TestClient(create_app(db), base_url=LOCAL) as c:
        yield c


@pytest.fixture()
def fresh(tmp_path: Path) -> str:
    """A storage of its own, for tests that write."""
    return f"sqlite:///{tmp_path / 'w.db'}"


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# -- reading ---------------------------------------------------------------------------------------
def test_list_studies(client: TestClient) -> None:
    studies = {s["name"]: s for s in ok(client.get("/api/studies"))}
    s = studies[STUDY]
    assert set(s) == {"name", "direction", "n_trials", "states", "best_value", "best_number", "directions",
                      "front_size"}
    assert s["n_trials"] == 12 and s["direction"] == "minimize"
    assert s["states"] == {"WAITING": 0, "RUNNING": 0, "COMPLETE": 9, "PRUNED": 2, "FAIL": 1}
    assert isinstance(s["best_number"], int) and isinstance(s["best_value"], float)
    assert studies["empty"]["best_number"] is None and studies["empty"]["best_value"] is None


def test_the_best_trial_shown_is_never_an_infeasible_one(fresh: str) -> None:
    study = tunelab.create_study(name="c", storage=fresh, sampler=RandomSampler(), seed=0)
    for value, memory in [(0.5, 1.0), (0.1, 9.0), (0.3, 2.0)]:  # the lowest value breaks its bound
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", memory, upper=8.0)
        study.tell(trial, value)
    every = tunelab.create_study(name="all-infeasible", storage=fresh, sampler=RandomSampler(), seed=0)
    trial = every.ask()
    trial.set_constraint("memory_gb", 9.0, upper=8.0)
    every.tell(trial, 0.1)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        listed = {s["name"]: s for s in ok(c.get("/api/studies"))}
        assert (listed["c"]["best_number"], listed["c"]["best_value"]) == (2, 0.3)
        assert (listed["all-infeasible"]["best_number"], listed["all-infeasible"]["best_value"]) == (None, None)
        assert ok(c.get("/api/studies/c"))["best"]["number"] == 2
        assert ok(c.get("/api/studies/all-infeasible"))["best"] is None


def test_study_detail(client: TestClient) -> None:
    d = ok(client.get(f"/api/studies/{STUDY}"))
    assert set(d) == {"name", "direction", "directions", "objective_names", "seed", "sampler", "pruner", "n_trials",
                      "states", "best", "recipe", "params", "read_only"}
    assert d["seed"] == 0 and "Random" in str(d["sampler"]) and d["pruner"] is None
    assert d["params"] == ["lr", "weight_decay", "optimizer"] and d["read_only"] is False
    assert d["recipe"] == [{"step": "initial_loss", "verdict": "pass", "message": "fine"}]
    assert set(d["best"]) == SUMMARY_KEYS and d["best"]["state"] == "COMPLETE"
    assert d["states"]["PRUNED"] == 2


def test_trials_page_shapes(client: TestClient) -> None:
    page = ok(client.get(f"/api/studies/{STUDY}/trials"))
    assert page["total"] == 12 and page["next_since"] == 12
    trials = page["trials"]
    assert [t["number"] for t in trials] == list(range(12))
    assert all(set(t) == SUMMARY_KEYS for t in trials)
    assert trials[3]["state"] == "FAIL" and trials[3]["error"].endswith("ValueError: boom")  # not "Traceback ..."
    assert "\n" not in trials[3]["error"]
    assert trials[5]["state"] == "PRUNED" and trials[0]["stage"] == "coarse" and trials[9]["stage"] == "refine"
    assert trials[0]["duration"] >= 0 and trials[0]["datetime_start"].endswith("+00:00")
    assert set(trials[0]["params"]) == {"lr", "weight_decay", "optimizer"}
    later = ok(client.get(f"/api/studies/{STUDY}/trials", params={"since": 10}))
    assert [t["number"] for t in later["trials"]] == [10, 11] and later["next_since"] == 12
    empty = ok(client.get(f"/api/studies/{STUDY}/trials", params={"since": 50}))
    assert empty == {"trials": [], "next_since": 50, "total": 12}


def test_since_cursor_returns_only_the_unfinished_tail_and_new_trials(fresh: str) -> None:
    study = tunelab.create_study(name="live", storage=fresh, sampler=RandomSampler(), seed=1)
    study.optimize(objective, n_trials=3, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        page = ok(c.get("/api/studies/live/trials"))
        assert len(page["trials"]) == 3 and page["next_since"] == 3
        other = tunelab.load_study("live", fresh)  # another writer
        running = other.ask()
        running.suggest_float("lr", 1e-4, 1e-1, log=True)
        running.report(0, val_loss=1.0)
        other.enqueue({"lr": 0.01})
        page = ok(c.get("/api/studies/live/trials", params={"since": page["next_since"]}))
        assert [(t["number"], t["state"]) for t in page["trials"]] == [(3, "RUNNING"), (4, "WAITING")]
        assert page["next_since"] == 3 and page["total"] == 5  # the unfinished trial stays in the window
        other.tell(running, 0.5)
        page = ok(c.get("/api/studies/live/trials", params={"since": page["next_since"]}))
        assert [(t["number"], t["state"]) for t in page["trials"]] == [(3, "COMPLETE"), (4, "WAITING")]
        assert page["next_since"] == 4
        other.optimize(objective, n_trials=2, show_progress=False)  # runs the enqueued 4, then 5
        page = ok(c.get("/api/studies/live/trials", params={"since": page["next_since"]}))
        assert [t["number"] for t in page["trials"]] == [4, 5] and page["next_since"] == 6


def test_values_are_the_trials_as_columns(client: TestClient) -> None:
    values = ok(client.get(f"/api/studies/{STUDY}/values"))
    assert set(values) == {"numbers", "states", "values", "next_since", "total"}
    trials = ok(client.get(f"/api/studies/{STUDY}/trials"))["trials"]
    assert values["numbers"] == [t["number"] for t in trials] == list(range(12))
    assert values["states"] == [t["state"] for t in trials]
    assert values["values"] == [t["value"] for t in trials]
    assert values["next_since"] == 12 and values["total"] == 12
    # failed and pruned trials have no value; every COMPLETE one has a number
    assert values["states"][3] == "FAIL" and values["values"][3] is None
    assert values["states"][5] == values["states"][9] == "PRUNED" and values["values"][5] is values["values"][9] is None
    assert all(isinstance(v, float) for v, s in zip(values["values"], values["states"], strict=True) if s == "COMPLETE")
    assert values["states"].count("COMPLETE") == 9
    later = ok(client.get(f"/api/studies/{STUDY}/values", params={"since": 10}))
    assert later == {"numbers": [10, 11], "states": values["states"][10:], "values": values["values"][10:],
                     "next_since": 12, "total": 12}
    empty = ok(client.get(f"/api/studies/{STUDY}/values", params={"since": 50}))
    assert empty == {"numbers": [], "states": [], "values": [], "next_since": 50, "total": 12}
    assert client.get(f"/api/studies/{STUDY}/values", params={"since": -1}).status_code == 422
    assert ok(client.get("/api/studies/empty/values")) == {"numbers": [], "states": [], "values": [],
                                                            "next_since": 0, "total": 0}


def test_values_cursor_stays_on_the_unfinished_trials(fresh: str) -> None:
    study = tunelab.create_study(name="live", storage=fresh, sampler=RandomSampler(), seed=1)
    study.optimize(objective, n_trials=3, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        page = ok(c.get("/api/studies/live/values"))
        assert page["numbers"] == [0, 1, 2] and page["next_since"] == 3
        other = tunelab.load_study("live", fresh)  # another writer
        running = other.ask()
        running.suggest_float("lr", 1e-4, 1e-1, log=True)
        other.enqueue({"lr": 0.01})
        page = ok(c.get("/api/studies/live/values", params={"since": page["next_since"]}))
        assert page == {"numbers": [3, 4], "states": ["RUNNING", "WAITING"], "values": [None, None],
                        "next_since": 3, "total": 5}
        trials = ok(c.get("/api/studies/live/trials", params={"since": 3}))
        assert trials["next_since"] == page["next_since"] and trials["total"] == page["total"]
        other.tell(running, 0.5)
        page = ok(c.get("/api/studies/live/values", params={"since": page["next_since"]}))
        assert page == {"numbers": [3, 4], "states": ["COMPLETE", "WAITING"], "values": [0.5, None],
                        "next_since": 4, "total": 5}
        other.optimize(objective, n_trials=2, show_progress=False)  # runs the enqueued 4, then 5
        page = ok(c.get("/api/studies/live/values", params={"since": page["next_since"]}))
        assert page["numbers"] == [4, 5] and page["next_since"] == 6
        assert page["states"] == ["COMPLETE", "PRUNED"] and page["values"][1] is None  # the objective prunes 5


def test_trial_detail(client: TestClient) -> None:
    t = ok(client.get(f"/api/studies/{STUDY}/trials/5"))
    assert SUMMARY_KEYS | {"distributions", "user_attrs", "system_attrs", "curves", "lineage", "prediction"} == set(t)
    assert t["state"] == "PRUNED" and t["lineage"] is None
    assert t["curves"]["val_loss"]["steps"] == [0, 1, 2] and len(t["curves"]["train_loss"]["values"]) == 3
    assert t["distributions"]["lr"]["log"] is True and t["user_attrs"]["train"] == {"stage": "coarse"}
    failed = ok(client.get(f"/api/studies/{STUDY}/trials/3"))
    assert "second line" in failed["error"]  # the full text here


def chained_failure(trial: tunelab.Trial) -> float:
    try:
        raise KeyError("first")
    except KeyError as e:
        raise ValueError("the exception that ended it") from e


def test_a_failed_trials_error_line_is_the_one_tunelab_show_gives(fresh: str) -> None:
    """The dashboard listed a chained traceback's first exception (KeyError) and a plain text's first line,
    while `tunelab show` gives the exception that ended the trial and a plain text's last line."""
    study = tunelab.create_study(name="failing", storage=fresh, seed=0)
    study.optimize(chained_failure, n_trials=1, show_progress=False)
    plain = study.ask()
    study.storage.finish_trial(plain.trial_id, tunelab.TrialState.FAIL, None,
                               error="trial command exited with 1; its stderr ends:\nloading data\nCUDA out of memory")
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        listed = [t["error"] for t in ok(c.get("/api/studies/failing/trials"))["trials"]]
    assert listed == ["ValueError: the exception that ended it", "CUDA out of memory"]
    shown = CliRunner().invoke(app, ["show", "failing", "--storage", fresh], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert all(line in shown.output for line in listed)
    assert "KeyError" not in shown.output and "exited with 1" not in shown.output


def test_curves_of_several_trials(client: TestClient) -> None:
    c = ok(client.get(f"/api/studies/{STUDY}/curves", params={"numbers": "0,5,3,99"}))["curves"]
    assert set(c) == {"0", "5", "3"} and set(c["0"]) == {"train_loss", "val_loss"} and c["3"] == {}
    one = ok(client.get(f"/api/studies/{STUDY}/curves", params={"numbers": "0", "metric": "val_loss"}))["curves"]
    assert set(one["0"]) == {"val_loss"} and len(one["0"]["val_loss"]["steps"]) == 6
    many = ",".join(str(i) for i in range(80))
    assert len(ok(client.get(f"/api/studies/{STUDY}/curves", params={"numbers": many}))["curves"]) == 12
    assert client.get(f"/api/studies/{STUDY}/curves", params={"numbers": "1;drop"}).status_code == 422


def test_scattered_curve_numbers_read_those_trials_not_every_one_between() -> None:
    # numbers=0,999999999 read every trial in between to return two
    class Counting(InMemoryStorage):
        rows = 0

        def get_trials(self, *args: Any, **kwargs: Any) -> list[tunelab.FrozenTrial]:
            found = super().get_trials(*args, **kwargs)
            Counting.rows += len(found)
            return found

    storage = Counting()
    study = tunelab.create_study(name="many", storage=storage, seed=0, sampler=RandomSampler())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=200, show_progress=False)
    with TestClient(create_app(storage), base_url=LOCAL) as c:
        Counting.rows = 0
        got = ok(c.get("/api/studies/many/curves", params={"numbers": "0,199,999999999"}))["curves"]
        assert set(got) == {"0", "199"} and Counting.rows == 2
        Counting.rows = 0
        assert set(ok(c.get("/api/studies/many/curves", params={"numbers": "4,6,5"}))["curves"]) == {"4", "5", "6"}
        assert Counting.rows == 3  # close together: one read of the range


@pytest.mark.parametrize("kind", ["history", "slice", "contour", "parallel", "curves", "importance"])
def test_figures_are_plotly_json(client: TestClient, kind: str) -> None:
    fig = ok(client.get(f"/api/studies/{STUDY}/figures/{kind}"))
    assert "data" in fig and "layout" in fig


def test_figures_with_options_and_without_content(client: TestClient) -> None:
    fig = ok(client.get(f"/api/studies/{STUDY}/figures/contour", params={"x": "weight_decay", "y": "lr"}))
    assert fig["data"]
    assert client.get(f"/api/studies/{STUDY}/figures/contour", params={"x": "nope", "y": "lr"}).status_code == 400
    ok(client.get(f"/api/studies/{STUDY}/figures/curves", params={"metric": "train_loss"}))
    for kind in ("stages", "lr_range"):  # nothing to draw: 404 with a reason
        r = client.get(f"/api/studies/{STUDY}/figures/{kind}")
        assert r.status_code == 404 and "nothing to draw" in r.json()["detail"]
    assert client.get(f"/api/studies/{STUDY}/figures/pie").status_code == 422


def test_the_slice_figure_draws_the_parameter_asked_for(client: TestClient) -> None:
    # The page's slice tab sends x=<its parameter>; the figure drew every parameter whatever it chose.
    def axes(fig: dict[str, Any]) -> list[str]:
        return sorted(k for k in fig["layout"] if k.startswith("xaxis"))

    assert len(axes(ok(client.get(f"/api/studies/{STUDY}/figures/slice")))) == 3  # lr, weight_decay, optimizer
    one = ok(client.get(f"/api/studies/{STUDY}/figures/slice", params={"x": "weight_decay"}))
    assert axes(one) == ["xaxis"] and one["layout"]["xaxis"]["title"]["text"] == "weight_decay (log)"
    unknown = client.get(f"/api/studies/{STUDY}/figures/slice", params={"x": "nope"})
    assert unknown.status_code == 400 and "'nope'" in unknown.json()["detail"]


def test_diagnosis(client: TestClient) -> None:
    findings = ok(client.get(f"/api/studies/{STUDY}/diagnosis/0"))["findings"]
    assert isinstance(findings, list)
    for f in findings:
        assert set(f) == {"condition", "metric", "message", "action", "evidence"}


@pytest.mark.parametrize("method", ["fanova", "ped_anova"])
def test_importance(client: TestClient, method: str) -> None:
    r = ok(client.get(f"/api/studies/{STUDY}/importance", params={"method": method}))
    assert r["method"] == method and set(r["importance"]) == {"lr", "weight_decay", "optimizer"}
    assert abs(sum(r["importance"].values()) - 1) < 1e-6 and r["advice"]


def test_importance_of_too_few_trials_is_400(client: TestClient) -> None:
    r = client.get("/api/studies/empty/importance")
    assert r.status_code == 400 and r.json()["detail"]
    assert client.get("/api/studies/empty/figures/importance").status_code == 400


def test_unknown_study_and_trial_are_404_with_a_clear_detail(client: TestClient) -> None:
    for path in ["/api/studies/nope", "/api/studies/nope/trials", "/api/studies/nope/values",
                 "/api/studies/nope/figures/history",
                 "/api/studies/nope/importance", "/api/studies/nope/diagnosis/0"]:
        r = client.get(path)
        assert r.status_code == 404 and "nope" in r.json()["detail"], path
    for path in [f"/api/studies/{STUDY}/trials/99", f"/api/studies/{STUDY}/diagnosis/99"]:
        r = client.get(path)
        assert r.status_code == 404 and "99" in r.json()["detail"], path
    assert client.get("/api/nothing").status_code == 404


# -- static files ----------------------------------------------------------------------------------
def test_index_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.content == (STATIC_DIR / "index.html").read_bytes()
    for f in STATIC_DIR.iterdir():
        if f.is_file():
            assert client.get(f"/static/{f.name}").content == f.read_bytes()


def test_the_page_has_a_content_security_policy_and_the_api_docs_work(client: TestClient) -> None:
    policy = client.get("/").headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-eval';" in policy and "object-src 'none'" in policy
    assert client.get(f"/api/studies/{STUDY}").headers["content-security-policy"] == policy
    docs = client.get("/docs")  # Swagger UI: scripts from a CDN and an inline one, which the policy would block
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers


def test_plotly_js_comes_from_the_installed_package(client: TestClient) -> None:
    import plotly

    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200
    assert r.content == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


@pytest.mark.parametrize("path", [
    "/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/..%2fpyproject.toml",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml", "/static/..%5c..%5cpyproject.toml", "/static/app.py",
    "/static/__init__.py", "/static/", "/static/.", "/static/%2e%2e", "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
])
def test_no_path_traversal(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, path
    assert b"[project]" not in r.content and b"root:" not in r.content


# -- guards ----------------------------------------------------------------------------------------
def test_read_only_refuses_every_action(db: str) -> None:
    with TestClient(create_app(db, read_only=True), base_url=LOCAL) as c:
        assert ok(c.get(f"/api/studies/{STUDY}"))["read_only"] is True
        assert ok(c.get(f"/api/studies/{STUDY}/values"))["total"] == 12  # reads are allowed
        for path, body in [(f"/api/studies/{STUDY}/trials/0/stop", None),
                           (f"/api/studies/{STUDY}/enqueue", {"params": {"lr": 0.01}}),
                           (f"/api/studies/{STUDY}/trials/0/note", {"note": "x"})]:
            r = c.post(path, json=body)
            assert r.status_code == 403 and r.json() == {"detail": "read-only dashboard"}, path
    assert ok(TestClient(create_app(db), base_url=LOCAL).get(f"/api/studies/{STUDY}/trials/0"))["note"] is None


def test_token(db: str) -> None:
    with TestClient(create_app(db, token="s3cret"), base_url=LOCAL) as c:
        assert c.get("/api/studies").status_code == 401
        assert c.get("/api/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/studies", headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert c.get("/api/nope").status_code == 401  # nothing under /api without it
        for path in [f"/api/studies/{STUDY}/trials", f"/api/studies/{STUDY}/values"]:
            r = c.get(path)
            assert r.status_code == 401 and "numbers" not in r.text and "trials" not in r.json(), path
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert ok(c.get(f"/api/studies/{STUDY}/values", headers={"Authorization": "Bearer s3cret"}))["total"] == 12
        assert ok(c.get(f"/api/studies/{STUDY}/values", params={"token": "s3cret"}))["numbers"] == list(range(12))
        ok(c.get("/api/studies", headers={"Authorization": "Bearer s3cret"}))
        ok(c.get("/api/studies", params={"token": "s3cret"}))
        assert c.post(f"/api/studies/{STUDY}/enqueue", json={"params": {"lr": 0.1}}).status_code == 401
        assert c.get("/static/plotly.min.js").status_code == 200  # the page and its files carry no data


def test_cross_origin_posts_and_foreign_hosts_are_refused(fresh: str) -> None:
    tunelab.create_study(name="x", storage=fresh, seed=0)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        r = c.post("/api/studies/x/enqueue", json={"params": {"a": 1}}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        ok(c.post("/api/studies/x/enqueue", json={"params": {"a": 1}}, headers={"Origin": LOCAL}))
    with TestClient(create_app(fresh, allowed_hosts=["127.0.0.1", "localhost"]),
                    base_url="http://localhost") as c:
        ok(c.get("/api/studies"))
        assert c.get("/api/studies", headers={"Host": "evil.example"}).status_code == 400


# -- actions ---------------------------------------------------------------------------------------
def polls_until_stopped(trial: tunelab.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    for step in range(3000):
        trial.report(step, val_loss=1.0 / (step + 1))
        if trial.should_prune():
            raise tunelab.TrialPruned()
        time.sleep(0.005)
    return 0.0


def _wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_stop_really_stops_a_running_trial(fresh: str) -> None:
    study = tunelab.create_study(name="s", storage=fresh, sampler=RandomSampler(), seed=0,
                                 pruner=MedianPruner(metric="val_loss"))
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        assert c.post("/api/studies/s/trials/0/stop").status_code == 404
        runner = threading.Thread(target=study.optimize, args=(polls_until_stopped,),
                                  kwargs={"n_trials": 1, "show_progress": False})
        runner.start()
        try:
            _wait_for(lambda: ok(c.get("/api/studies/s/trials"))["trials"][-1:] != [], "the trial to start")
            _wait_for(lambda: len(ok(c.get("/api/studies/s/trials/0"))["curves"]) > 0, "a report")
            r = ok(c.post("/api/studies/s/trials/0/stop"))
            assert r == {"number": 0, "stop_requested": True}
            runner.join(timeout=20)
        finally:
            runner.join(timeout=20)
        t = ok(c.get("/api/studies/s/trials/0"))
        assert t["state"] == "PRUNED"
        assert t["system_attrs"]["pruned"]["rule"] == "stopped on request"
        assert "at" in t["system_attrs"]["stop_requested"]
        r = c.post("/api/studies/s/trials/0/stop")  # finished now
        assert r.status_code == 409 and "RUNNING" in r.json()["detail"]


def test_enqueue_then_the_next_trial_gets_the_params(fresh: str) -> None:
    study = tunelab.create_study(name="q", storage=fresh, sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=2, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        params = {"lr": 0.0123, "weight_decay": 1e-4, "optimizer": "adam"}
        assert ok(c.post("/api/studies/q/enqueue", json={"params": params})) == {"number": 2}
        assert ok(c.get("/api/studies/q/trials", params={"since": 2}))["trials"][0]["state"] == "WAITING"
        study.optimize(objective, n_trials=1, show_progress=False)
        t = ok(c.get("/api/studies/q/trials/2"))
        assert t["state"] == "COMPLETE" and t["params"] == params
        assert c.post("/api/studies/q/enqueue", json={"params": {}}).status_code == 422
        assert c.post("/api/studies/nope/enqueue", json={"params": {"a": 1}}).status_code == 404


def test_enqueue_checks_values_against_the_studys_distributions(fresh: str) -> None:
    # Issue 16, item 2: the dashboard's process has seen no distribution; the stored ones decide.
    study = tunelab.create_study(name="q", storage=fresh, sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=2, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        for params, words in [
            ({"lr": 5.0}, ["'lr' = 5.0", "[0.0001, 0.1]"]),
            ({"lr": "fast"}, ["'lr' = 'fast'"]),
            ({"optimizer": "rmsprop"}, ["'optimizer' = 'rmsprop'", "one of ['sgd', 'adam']"]),
        ]:
            r = c.post("/api/studies/q/enqueue", json={"params": params})
            assert r.status_code == 400, r.text
            assert all(w in r.json()["detail"] for w in words), r.json()["detail"]
        assert ok(c.get("/api/studies/q/trials"))["total"] == 2  # nothing stored
        assert ok(c.post("/api/studies/q/enqueue", json={"params": {"lr": 0.01, "note": "x" * 1024}})) == {"number": 2}


def test_enqueue_limits_the_size_of_a_request(fresh: str) -> None:
    tunelab.create_study(name="q", storage=fresh, seed=0)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        url = "/api/studies/q/enqueue"
        big = c.post(url, json={"params": {f"p{i}": "x" * 1000 for i in range(70)}})  # ~70 KB
        assert big.status_code == 413 and "64 KB" in big.json()["detail"]
        chunked = c.post(url, content=iter([b'{"params": {"a": "', b"x" * 70_000, b'"}}']),
                         headers={"Content-Type": "application/json"})  # streamed, no Content-Length
        assert chunked.status_code == 413
        many = c.post(url, json={"params": {f"p{i}": i for i in range(257)}})
        assert many.status_code == 422 and "256" in many.text
        long_string = c.post(url, json={"params": {"a": "x" * 1025}})
        assert long_string.status_code == 422 and "1024" in long_string.text
        long_name = c.post(url, json={"params": {"n" * 257: 1}})
        assert long_name.status_code == 422 and "256" in long_name.text
        nested = c.post(url, json={"params": {"a": [1, 2]}})
        assert nested.status_code == 422
        assert ok(c.post(url, json={"params": {f"p{i}": i for i in range(256)}})) == {"number": 0}


def test_note_on_a_finished_trial(fresh: str) -> None:
    study = tunelab.create_study(name="n", storage=fresh, sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=4, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        before = ok(c.get("/api/studies/n/trials/3"))
        assert before["state"] == "FAIL"
        assert ok(c.post("/api/studies/n/trials/3/note", json={"note": "the <b>lr</b> was fine; a bug"})) == {
            "number": 3, "note": "the <b>lr</b> was fine; a bug"}
        after = ok(c.get("/api/studies/n/trials/3"))
        assert after["note"] == "the <b>lr</b> was fine; a bug"
        assert {**after, "note": None, "user_attrs": before["user_attrs"]} == before  # nothing else changed
        assert ok(c.get("/api/studies/n/trials"))["trials"][3]["note"] == after["note"]
        assert c.post("/api/studies/n/trials/9/note", json={"note": "x"}).status_code == 404
    assert study.trials[3].user_attrs["note"] == after["note"]


@pytest.mark.slow
def test_live_app_while_two_worker_processes_write(fresh: str) -> None:
    from objectives import slow_cheap

    study = tunelab.create_study(name="mp", storage=fresh, sampler=RandomSampler(), seed=0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            study.optimize(slow_cheap, n_trials=40, n_workers=2, show_progress=False)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    worker = threading.Thread(target=run)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        worker.start()
        since, seen, polls = 0, {}, 0
        while worker.is_alive() or polls == 0:
            page = ok(c.get("/api/studies/mp/trials", params={"since": since}))
            seen.update({t["number"]: t["state"] for t in page["trials"]})
            since = page["next_since"]
            polls += 1
            time.sleep(0.01)
        worker.join()
        page = ok(c.get("/api/studies/mp/trials", params={"since": since}))
        seen.update({t["number"]: t["state"] for t in page["trials"]})
    assert not errors
    assert polls > 3
    assert sorted(seen) == list(range(40)) and set(seen.values()) == {"COMPLETE"}


# -- the OpenAPI schema, checked by schemathesis -----------------------------------------------------
def test_openapi_schema_lists_the_api(client: TestClient) -> None:
    openapi = ok(client.get("/openapi.json"))
    paths = openapi["paths"]
    s = "/api/studies/{name}"
    values = paths[f"{s}/values"]["get"]
    assert values["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValuesPage"}
    assert {"404", "401"} <= set(values["responses"]) and [p["name"] for p in values["parameters"]] == ["name", "since"]
    assert set(openapi["components"]["schemas"]["ValuesPage"]["properties"]) == {
        "numbers", "states", "values", "next_since", "total"}
    assert {"/api/studies", s, f"{s}/trials", f"{s}/values", f"{s}/trials/{{number}}", f"{s}/curves",
            f"{s}/figures/{{kind}}", f"{s}/diagnosis/{{number}}", f"{s}/importance", f"{s}/trials/{{number}}/stop",
            f"{s}/enqueue", f"{s}/trials/{{number}}/note"} <= set(paths)


# -- the command -----------------------------------------------------------------------------------
def test_dashboard_command_warns_off_loopback(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn


    calls: list[dict[str, Any]] = []

    def run(server: uvicorn.Server, sockets: list[Any]) -> None:  # the sockets are bound: the port is taken
        calls.append({"host": server.config.host, "log_level": server.config.log_level,
                      "bound": [s.getsockname()[:2] for s in sockets]})
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    # uvicorn.Config sets up logging for the whole process, its handlers on the sys.stderr of the moment: the
    # CliRunner's stream here, closed when the command returns (a later test's served dashboard then logs to a
    # closed file, and pytest lost its stderr)
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    port = {p.name: p.default for p in typer.main.get_command(app).commands["dashboard"].params}["port"]  # type: ignore[attr-defined]
    assert port == 8000  # the default (not bound here: this machine may serve something there)
    runner = CliRunner()
    r = runner.invoke(app, ["dashboard", "--storage", db, "--port", "0"])
    assert r.exit_code == 0, r.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["log_level"] == "warning"
    assert calls[-1]["bound"][0][0] == "127.0.0.1" and f":{calls[-1]['bound'][0][1]}/" in r.output
    assert "reachable from the network" not in r.output
    r = runner.invoke(app, ["dashboard", "--storage", db, "--host", "0.0.0.0", "--port", "0", "--read-only",
                            "--token", "t"])
    assert r.exit_code == 0, r.output
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["bound"][0][0] == "0.0.0.0"
    assert "reachable from the network" not in r.output  # both given: nothing left to advise
    r = runner.invoke(app, ["dashboard", "--storage", db, "--host", "0.0.0.0", "--port", "0", "--read-only"])
    assert r.exit_code == 0, r.output
    assert "reachable from the network; use --token unless" in r.output and "--read-only unless" not in r.output
    r = runner.invoke(app, ["dashboard", "--storage", f"sqlite:///{Path(db[10:]).parent / 'missing.db'}"])
    assert r.exit_code == 1 and "error:" in r.output


def _schemathesis_app() -> Any:
    """A read-only app over a small study, for schemathesis (built at import: it parametrizes the test)."""
    import tempfile

    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tunelab-schema-')) / 's.db'}"
    study = tunelab.create_study(name=STUDY, storage=url, sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=6, show_progress=False)
    return create_app(url, read_only=True, allowed_hosts=["testserver"])  # the Host schemathesis sends


import schemathesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

schema = schemathesis.openapi.from_asgi("/openapi.json", _schemathesis_app())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_schema(case: Any) -> None:
    case.call_and_validate()


def test_serve_in_thread_serves_the_app_and_stops_it(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from tunelab.dashboard import serve_in_thread

    url = f"sqlite:///{tmp_path / 'served.db'}"
    tunelab.create_study(name="served", storage=url)
    with serve_in_thread(url, token="s3cret") as base:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/api/studies", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(base + "/api/studies", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert [s["name"] for s in json.loads(answer.read())] == ["served"]
    with pytest.raises(OSError):  # stopped with the block
        urllib.request.urlopen(base + "/", timeout=2)
    with pytest.raises(ConfigError, match="port"):
        with serve_in_thread(url, port=70000):
            pass


def test_serve_in_thread_leaves_the_processs_logging_alone(tmp_path: Path) -> None:
    """The dashboard runs inside the user's process: starting it keeps their logging handlers."""
    import io
    import logging

    from tunelab.dashboard import serve_in_thread

    class Recording(logging.StreamHandler):  # type: ignore[type-arg]
        closed = False

        def close(self) -> None:  # absl's handler closes its stream here
            self.closed = True
            super().close()

    stream = io.StringIO()
    handler = Recording(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        url = f"sqlite:///{tmp_path / 'served.db'}"
        tunelab.create_study(name="served", storage=url)
        with serve_in_thread(url):
            assert handler in root.handlers
            logging.getLogger("user.code").warning("still mine")
        assert "still mine" in stream.getvalue()
        assert not handler.closed  # uvicorn's default dictConfig closes every handler of the process
    finally:
        root.removeHandler(handler)


# -- a study with several objectives ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, tunelab.Study]]:
    """acc (max) grows with x, latency (min) with x and y; mem = x + y <= 1.2 leaves some trials infeasible."""
    import random

    url = f"sqlite:///{tmp_path_factory.mktemp('multi') / 'mo.db'}"
    study = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["acc", "latency"], sampler=RandomSampler(), seed=0)
    rng = random.Random(0)
    for _ in range(30):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        trial.set_constraint("mem", x + y, upper=1.2)
        study.tell(trial, values=[x, x + y + 0.01 * rng.random()])
    with TestClient(create_app(url), base_url=LOCAL) as c:
        yield c, study


def test_study_and_trials_carry_every_objective_and_constraint(multi: tuple[TestClient, tunelab.Study]) -> None:
    c, study = multi
    detail = ok(c.get("/api/studies/mo"))
    assert detail["directions"] == ["maximize", "minimize"] and detail["objective_names"] == ["acc", "latency"]
    trials = ok(c.get("/api/studies/mo/trials"))["trials"]
    for row, t in zip(trials, study.trials, strict=True):
        assert row["values"] == list(t.values) and row["value"] == t.values[0]  # type: ignore[arg-type, index]
        mem = t.constraints["mem"]
        assert row["constraints"] == {"mem": {"value": mem.value, "lower": None, "upper": 1.2,
                                              "violation": mem.violation}}
        assert row["feasible"] is t.feasible
    assert any(not r["feasible"] for r in trials) and any(r["feasible"] for r in trials)
    detail_trial = ok(c.get("/api/studies/mo/trials/0"))
    assert detail_trial["values"] == list(study.trials[0].values)  # type: ignore[arg-type]


def test_pareto_endpoint_returns_the_front(multi: tuple[TestClient, tunelab.Study]) -> None:
    c, study = multi
    from tunelab.multiobjective import hypervolume, losses
    from tunelab.viz.pareto import default_reference

    front = ok(c.get("/api/studies/mo/pareto"))
    numbers = [t["number"] for t in front["front"]]
    assert sorted(numbers) == [t.number for t in study.best_trials] and len(numbers) >= 2
    accs = [t["values"][0] for t in front["front"]]
    assert accs == sorted(accs, reverse=True)  # by the first objective, best first
    assert front["n_complete"] == 30 and front["n_infeasible"] == sum(not t.feasible for t in study.trials) > 0
    ref = default_reference(study)
    assert front["reference"] == pytest.approx(ref)
    assert front["hypervolume"] == pytest.approx(hypervolume(
        losses([t.values for t in study.best_trials], study.directions), losses([ref], study.directions)[0]))  # type: ignore[misc]
    for kind in ("pareto", "hypervolume"):
        fig = ok(c.get(f"/api/studies/mo/figures/{kind}"))
        assert fig["data"] and "layout" in fig
    assert sorted(ok(c.get("/api/studies/mo/figures/pareto"))["layout"]["meta"]["front"]) == sorted(numbers)


def test_pareto_endpoint_computes_the_hypervolume_once(multi: tuple[TestClient, tunelab.Study],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to replay the whole hypervolume history (one exact computation per trial that changed the
    # front) for its last value: a minute at 200 trials on a front of three objectives.
    import tunelab.viz.pareto as pareto_module

    calls: list[int] = []
    real = pareto_module.hypervolume

    def counted(points: Any, reference: Any) -> float:
        calls.append(len(points))
        return real(points, reference)

    monkeypatch.setattr(pareto_module, "hypervolume", counted)
    c, study = multi
    volume = ok(c.get("/api/studies/mo/pareto"))["hypervolume"]
    assert len(calls) == 1
    monkeypatch.setattr(pareto_module, "hypervolume", real)
    _, volumes = pareto_module.hypervolume_history(study, pareto_module.default_reference(study) or [])
    assert volume == pytest.approx(volumes[-1])


def test_importance_per_objective_over_the_api(multi: tuple[TestClient, tunelab.Study]) -> None:
    c, _ = multi
    first = ok(c.get("/api/studies/mo/importance"))
    assert first["objective"] == "acc" and next(iter(first["importance"])) == "x"
    latency = ok(c.get("/api/studies/mo/importance", params={"objective": "latency", "method": "ped_anova"}))
    assert latency["objective"] == "latency" and latency["importance"] != first["importance"]
    fig = ok(c.get("/api/studies/mo/figures/importance", params={"objective": "latency"}))
    assert "latency" in fig["layout"]["title"]["text"]
    r = c.get("/api/studies/mo/importance", params={"objective": "speed"})
    assert r.status_code == 400 and "acc, latency" in r.json()["detail"]


def test_single_objective_studies_have_no_front(client: TestClient) -> None:
    detail = ok(client.get(f"/api/studies/{STUDY}"))
    assert detail["directions"] == [detail["direction"]] and detail["objective_names"] == ["value"]
    for path in (f"/api/studies/{STUDY}/pareto", f"/api/studies/{STUDY}/figures/pareto",
                 f"/api/studies/{STUDY}/figures/hypervolume"):
        r = client.get(path)
        assert r.status_code == 400 and "several objectives" in r.json()["detail"], path
    assert ok(client.get(f"/api/studies/{STUDY}/importance"))["objective"] == "value"
    trial = ok(client.get(f"/api/studies/{STUDY}/trials"))["trials"][0]
    assert trial["constraints"] == {} and trial["feasible"] is True


def test_openapi_schema_describes_the_front(client: TestClient) -> None:
    openapi = ok(client.get("/openapi.json"))
    pareto = openapi["paths"]["/api/studies/{name}/pareto"]["get"]
    assert pareto["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ParetoFront"}
    assert {"400", "404"} <= set(pareto["responses"])
    schemas = openapi["components"]["schemas"]
    assert {"values", "constraints", "feasible"} <= set(schemas["TrialSummary"]["properties"])
    assert {"directions", "objective_names"} <= set(schemas["StudyDetail"]["properties"])
    kinds = openapi["paths"]["/api/studies/{name}/figures/{kind}"]["get"]["parameters"][1]["schema"]["enum"]
    assert {"pareto", "hypervolume"} <= set(kinds)


class _UnregisteredPruner(tunelab.MedianPruner):
    """A user's pruner that was never passed to ``register_pruner``: the dashboard cannot rebuild it."""


def test_a_study_whose_stored_pruner_cannot_be_rebuilt_is_shown(fresh: str) -> None:
    study = tunelab.create_study(name="custom", storage=fresh, sampler=RandomSampler(), seed=0,
                                 pruner=_UnregisteredPruner())
    study.optimize(objective, n_trials=4, show_progress=False)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        detail = ok(c.get("/api/studies/custom"))
        assert detail["n_trials"] == 4 and "_UnregisteredPruner" in str(detail["pruner"])
        assert ok(c.get("/api/studies/custom/trials"))["total"] == 4
        assert ok(c.get("/api/studies/custom/diagnosis/0"))  # these read the study itself
        figure = c.get("/api/studies/custom/figures/history")
        assert figure.status_code == 200, figure.text


def test_the_study_list_gives_a_study_of_several_objectives_its_front_not_a_best_value(fresh: str) -> None:
    study = tunelab.create_study(name="mo", storage=fresh, sampler=RandomSampler(), seed=0,
                                 directions=["maximize", "minimize"], objective_names=["acc", "ms"])
    for acc, ms in [(0.9, 5.0), (0.8, 1.0), (0.7, 3.0)]:  # the third is dominated by the second
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, values=[acc, ms])
    tunelab.create_study(name="one", storage=fresh, direction="maximize").optimize(lambda t: 0.5, n_trials=1)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        listed = {s["name"]: s for s in ok(c.get("/api/studies"))}
    assert listed["mo"]["directions"] == ["maximize", "minimize"] and listed["mo"]["front_size"] == 2
    assert (listed["mo"]["best_value"], listed["mo"]["best_number"]) == (None, None)  # was the first objective's
    assert listed["one"]["directions"] == ["maximize"] and listed["one"]["front_size"] is None
    assert listed["one"]["best_value"] == 0.5


def test_the_study_detail_of_several_objectives_has_no_best_trial(fresh: str) -> None:
    study = tunelab.create_study(name="mo", storage=fresh, sampler=RandomSampler(), seed=0,
                                 directions=["minimize", "minimize"], objective_names=["err", "ms"])
    for err, ms in [(0.1, 5.0), (0.3, 1.0)]:
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, values=[err, ms])
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        assert ok(c.get("/api/studies/mo"))["best"] is None  # was trial 0, the first objective's best
        assert len(ok(c.get("/api/studies/mo/pareto"))["front"]) == 2


def test_a_study_whose_name_holds_a_slash_is_served(fresh: str) -> None:
    # The page asks for /api/studies/exp%2Flr/...: the server decoded the %2F before routing, and every
    # route of such a study was a bare 404 "Not Found" (the study list showed it, its page did not open).
    for name, value in [("exp/lr", 1.0), ("exp", 2.0), ("a/trials", 3.0)]:
        study = tunelab.create_study(name=name, storage=fresh, sampler=RandomSampler(), seed=0)
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.report(0, loss=value)
        study.tell(trial, value)
    with TestClient(create_app(fresh), base_url=LOCAL) as c:
        assert ok(c.get("/api/studies/exp%2Flr"))["name"] == "exp/lr"
        assert ok(c.get("/api/studies/exp%2flr/trials"))["trials"][0]["value"] == 1.0
        assert ok(c.get("/api/studies/exp%2Flr/trials/0"))["curves"]["loss"]["values"] == [1.0]
        assert ok(c.get("/api/studies/exp%2Flr/values"))["values"] == [1.0]
        assert ok(c.get("/api/studies/a%2Ftrials"))["name"] == "a/trials"  # not study "a"'s trial list
        assert ok(c.post("/api/studies/exp%2Flr/trials/0/note", json={"note": "n"}))["note"] == "n"
        assert ok(c.get("/api/studies/exp/trials/0"))["value"] == 2.0
        missing = c.get("/api/studies/exp%2Fnope/trials")
        assert missing.status_code == 404 and "'exp/nope'" in missing.json()["detail"]
        assert c.get("/api/studies/exp/lr").status_code == 404  # a bare slash still separates segments
    assert tunelab.load_study("exp/lr", fresh).trials[0].user_attrs["note"] == "n"


def test_a_log_file_that_cannot_be_read_is_said_not_a_500(tmp_path: Path) -> None:
    # An unreadable stdout.log (another user's, 0600, or a link to itself) made GET .../logs a 500.
    url = f"sqlite:///{tmp_path / 'logs.db'}"
    study = tunelab.create_study(name="sweep", storage=url, artifact_dir=tmp_path, seed=0)
    study.tell(study.ask(), 1.0)
    folder = study.artifact_dir / "trial-0"
    folder.mkdir(parents=True)
    (folder / "stdout.log").symlink_to("stdout.log")  # reading it fails with ELOOP, as root too
    (folder / "stderr.log").write_text("warn 1\nwarn 2\n")
    with TestClient(create_app(url), base_url=LOCAL) as c:
        logs = ok(c.get("/api/studies/sweep/trials/0/logs"))
    assert logs["stderr"] == "warn 1\nwarn 2"
    assert logs["stdout"].startswith("(cannot read ") and "stdout.log" in logs["stdout"]


def test_pandas_is_imported_before_the_app_serves(tmp_path: Path) -> None:
    # The importance route imports pandas (through scikit-learn) in its worker thread; a figure built at the
    # same time in another took the half-imported module from sys.modules (plotly does) and was a 500:
    # "partially initialized module 'pandas' has no attribute 'Series'". A fresh process, as a server's.
    import subprocess
    import sys

    tunelab.create_study(name="p", storage=f"sqlite:///{tmp_path / 'p.db'}")
    code = ("import sys; from fastapi.testclient import TestClient; from tunelab.dashboard import create_app\n"
            f"app = create_app('sqlite:///{tmp_path / 'p.db'}')\n"
            "assert 'pandas' not in sys.modules, 'imported too early'\n"
            "with TestClient(app, base_url='http://127.0.0.1:8000'):\n"
            "    assert 'pandas' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
