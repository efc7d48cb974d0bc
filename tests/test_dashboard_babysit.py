"""Babysitting a run from the dashboard: the run's tree and overlay, live changes, roll-backs and
suggestions, through the API (TestClient) and in the real page (headless Chromium, the fixtures of
``tests/test_dashboard_ui.py``), with the torch-free loop of ``tests/babysit_loops.py`` training in a
thread against a SQLite file. Screenshots go to ``test-artifacts/dashboard-babysit-*.png``.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import babysit_loops as loops
import tunelab
from tunelab import babysit
from tunelab.babysit import set_live
from tunelab.dashboard import create_app
from tunelab.live import branch_of, pending_requests, schedule
from tunelab.records import TrialState
from tunelab.samplers import RandomSampler

RUN = "run"
LOCAL = "http://127.0.0.1:8000"
"""The TestClient's base URL: the app answers only requests addressed to it (its Host check)."""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'run.db'}"


def new_run(url: str, name: str = RUN, keep_last: int = 2, **params: float) -> tunelab.Study:
    study = tunelab.create_study(name=name, storage=url, sampler=RandomSampler(), seed=0,
                                 checkpoint_policy=tunelab.CheckpointPolicy(keep_last=keep_last))
    study.enqueue({"lr": 0.1, "weight_decay": 0.01, **params})
    return study


def started(study: tunelab.Study) -> tuple[tunelab.Trial, dict[str, Any]]:
    trial = study.ask()
    return trial, loops.start(trial)


def train(trial: tunelab.Trial, state: dict[str, Any], until: int) -> None:
    for s in range(state["step"] + 1, until + 1):
        loops.step(trial, state, s)


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: Any, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail, detail
    for needle in needles:
        assert needle in detail, detail


PLATEAU = [0.3 + 0.7 * math.exp(-s / 3) + 0.002 * math.sin(1.7 * s) for s in range(1, 41)]
IMPROVING = [1 / (1 + 0.05 * s) + 0.002 * math.sin(1.7 * s) for s in range(1, 41)]


def reported(study: tunelab.Study, curve: list[float], checkpoints: tuple[int, ...] = ()) -> tunelab.Trial:
    """A RUNNING trial (lr 0.1, weight_decay 0.01) that reported ``curve`` as its val_loss."""
    trial, _ = started(study)
    for s, v in enumerate(curve, start=1):
        trial.report(s, val_loss=v)
        if s in checkpoints:
            with trial.checkpoint(s) as folder:
                (folder / "state.json").write_text(json.dumps({"step": s, "loss": v}))
    return trial


# -- the API ---------------------------------------------------------------------------------------
def test_the_tree_has_every_branch_its_changes_and_one_metric_of_each(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 3)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        assert ok(c.get(f"/api/studies/{RUN}/tree"))["is_run"] is False  # nothing changed yet
        assert ok(c.post(f"/api/studies/{RUN}/trials/0/live", json={"values": {"lr": 0.05}, "note": "slow"})) == {
            "index": 0, "values": {"lr": 0.05}}
        train(trial, state, 6)
        set_live(study, 0, {"weight_decay": 0.02}, source="cli")
        trial.sync_live(7, force=True, curve_step=3)  # a loop whose curves count another unit (epochs)
        train(trial, state, 15)
        assert ok(c.post(f"/api/studies/{RUN}/rollback",
                         json={"to": 10, "values": {"lr": 0.02}, "note": "back to 10"})) == {"number": 1}
        study.tell(trial, state="PRUNED")
        branch, bstate = started(study)
        train(branch, bstate, 12)
        ok(c.post(f"/api/studies/{RUN}/trials/1/live", json={"values": {"lr": 0.01}}))  # pending

        tree = ok(c.get(f"/api/studies/{RUN}/tree"))
        assert tree["is_run"] is True and tree["metric"] == "val_loss" and tree["roots"] == [0]
        assert {"lr", "train_loss", "val_loss"} <= set(tree["metrics"])
        root, child = tree["branches"]
        assert (root["number"], root["parent"], root["step"], root["kind"]) == (0, None, None, None)
        assert root["children"] == [1]
        assert root["state"] == "PRUNED" and root["checkpoints"] == [] and root["curve"]["steps"] == list(range(1, 16))
        assert (root["first_step"], root["last_step"]) == (1, 15)
        first, second = root["changes"]
        assert (first["step"], first["curve_step"]) == (4, 4)
        assert (first["values"], first["before"]) == ({"lr": 0.05}, {"lr": 0.1})
        assert first["sources"] == ["dashboard"] and first["notes"] == ["slow"]
        assert (second["step"], second["curve_step"], second["values"]) == (7, 3, {"weight_decay": 0.02})
        assert root["current"] == {"lr": 0.05, "weight_decay": 0.02}
        assert (child["parent"], child["step"], child["kind"], child["set"], child["note"]) == (
            0, 10, "rollback", {"lr": 0.02}, "back to 10")
        assert child["state"] == "RUNNING" and child["curve"]["steps"] == [11, 12] and child["children"] == []
        assert [(p["index"], p["values"], p["source"]) for p in child["pending"]] == [(0, {"lr": 0.01}, "dashboard")]
        assert child["params"]["lr"] == 0.02 and child["params"]["weight_decay"] == 0.02  # the checkpoint's

        lr = ok(c.get(f"/api/studies/{RUN}/tree", params={"metric": "lr"}))
        assert lr["metric"] == "lr" and lr["branches"][0]["curve"]["values"][:4] == [0.1, 0.1, 0.1, 0.05]
        refused(c.get(f"/api/studies/{RUN}/tree", params={"metric": "nope"}), 404, "'nope'", "val_loss")
        refused(c.get("/api/studies/nope/tree"), 404, "nope")

        live = ok(c.get(f"/api/studies/{RUN}/trials/1/hyperparameters"))
        assert live["state"] == "RUNNING" and live["current"]["lr"] == 0.02 and live["parent"] == 0
        assert [p["values"] for p in live["pending"]] == [{"lr": 0.01}] and live["step"] == 10

    plain = tunelab.create_study(name="plain", storage=url, sampler=RandomSampler(), seed=0)
    for x in (0.1, 0.2):
        t = plain.ask()
        t.suggest_float("x", 0, 1)
        t.report(0, loss=x)
        plain.tell(t, x)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        tree = ok(c.get("/api/studies/plain/tree"))
        assert tree["is_run"] is False and tree["roots"] == [0, 1] and tree["metric"] == "loss"
        assert [b["curve"]["values"] for b in tree["branches"]] == [[0.1], [0.2]]


def test_live_changes_and_their_refusals(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 2)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        path = f"/api/studies/{RUN}/trials/0/live"
        assert ok(c.post(path, json={"values": {"lr": 0.03, "weight_decay": 1}, "note": ""})) == {
            "index": 0, "values": {"lr": 0.03, "weight_decay": 1.0}}
        [request] = pending_requests(study.get_trial(0))
        assert request["source"] == "dashboard" and request["note"] is None
        refused(c.post(path, json={"values": {"momentum": 0.9}}), 422, "no live hyperparameter 'momentum'")
        refused(c.post(path, json={"values": {"lr": "fast"}}), 422, "lr must be a finite number")
        refused(c.post(path, json={"values": {"lr": -1}}), 422, "log scale")
        assert c.post(path, json={"values": {}}).status_code == 422
        assert c.post(path, json={"note": "x"}).status_code == 422
        refused(c.post(f"/api/studies/{RUN}/trials/9/live", json={"values": {"lr": 0.1}}), 404, "no trial number 9")
        refused(c.post("/api/studies/nope/trials/0/live", json={"values": {"lr": 0.1}}), 404)
        train(trial, state, 3)
        assert schedule(study.get_trial(0))[0]["sources"] == ["dashboard"]
        study.tell(trial, 0.5)
        refused(c.post(path, json={"values": {"lr": 0.1}}), 409, "trial 0 is COMPLETE", "roll back")


def test_rollback_from_the_api(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 15)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        path = f"/api/studies/{RUN}/rollback"
        refused(c.post(path, json={"to": 7}), 422, "keeps no checkpoint at step 7; it keeps 10, 15")
        refused(c.post(path, json={"to": 10, "values": {"lr": -1}}), 422, "log scale")
        refused(c.post(path, json={"to": 10, "trial": 5}), 404, "no trial number 5")
        assert c.post(path, json={"to": -1}).status_code == 422
        assert ok(c.post(path, json={"to": 10, "trial": 0, "values": {"lr": 0.02}})) == {"number": 1}
        assert trial.should_prune()  # the running parent is asked to stop
        b = branch_of(study.get_trial(1).system_attrs)
        assert b is not None and (b.parent, b.step, b.changed, b.kind) == (0, 10, {"lr": 0.02}, "rollback")


def test_suggestions_and_accepting_one(url: str) -> None:
    study = new_run(url)
    reported(study, PLATEAU)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        [s] = ok(c.get(f"/api/studies/{RUN}/trials/0/suggestions"))
        assert (s["kind"], s["id"], s["condition"], s["values"], s["rollback_to"]) == (
            "halve_lr", "halve_lr", "plateau", {"lr": 0.05}, None)
        refused(c.post(f"/api/studies/{RUN}/trials/0/suggestions/raise_lr/accept"), 404,
                "no suggestion 'raise_lr' now; it has halve_lr")
        assert c.post(f"/api/studies/{RUN}/trials/0/suggestions/Bad-Kind/accept").status_code == 422
        assert ok(c.post(f"/api/studies/{RUN}/trials/0/suggestions/halve_lr/accept")) == {
            "result": 0, "kind": "halve_lr", "rollback": False}
        [request] = pending_requests(study.get_trial(0))
        assert request["params"] == {"lr": 0.05} and request["source"] == "dashboard"
        refused(c.get(f"/api/studies/{RUN}/trials/7/suggestions"), 404)

        improving = new_run(url, name="improving")
        reported(improving, IMPROVING)
        [keep] = ok(c.get("/api/studies/improving/trials/0/suggestions"))
        assert keep["kind"] == "keep_going" and keep["values"] == {}
        refused(c.post("/api/studies/improving/trials/0/suggestions/keep_going/accept"), 422, "changes nothing")

        dead = new_run(url, name="dead", lr=1e-4)  # a curve that never learned (flat at ln 10)
        reported(dead, [2.302585 + 0.002 * math.sin(1.7 * s) for s in range(1, 41)])
        [s] = ok(c.get("/api/studies/dead/trials/0/suggestions"))
        assert (s["kind"], s["condition"], s["values"]) == ("raise_lr_tenfold", "not_learning", {"lr": 1e-3})
        accepted = ok(c.post("/api/studies/dead/trials/0/suggestions/raise_lr_tenfold/accept"))
        assert accepted["kind"] == "raise_lr_tenfold"  # a kind the accept route's pattern takes ([a-z_])

        finished = new_run(url, name="finished")
        t = reported(finished, PLATEAU, checkpoints=(30, 40))
        finished.tell(t, PLATEAU[-1])
        [s] = ok(c.get("/api/studies/finished/trials/0/suggestions"))
        assert s["rollback_to"] == 40 and s["values"] == {"lr": 0.05}
        assert ok(c.post("/api/studies/finished/trials/0/suggestions/halve_lr/accept")) == {
            "result": 1, "kind": "halve_lr", "rollback": True}
        assert finished.get_trial(1).params["lr"] == 0.05


def test_read_only_refuses_every_babysitting_action(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 10)
    with TestClient(create_app(url, read_only=True), base_url=LOCAL) as c:
        for path, body in [(f"/api/studies/{RUN}/trials/0/live", {"values": {"lr": 0.01}}),
                           (f"/api/studies/{RUN}/rollback", {"to": 10}),
                           (f"/api/studies/{RUN}/trials/0/suggestions/halve_lr/accept", None)]:
            r = c.post(path, json=body)
            assert r.status_code == 403 and r.json() == {"detail": "read-only dashboard"}, path
        ok(c.get(f"/api/studies/{RUN}/tree"))  # reads are allowed
        ok(c.get(f"/api/studies/{RUN}/trials/0/hyperparameters"))
        ok(c.get(f"/api/studies/{RUN}/trials/0/suggestions"))
    assert study.get_trial(0).system_attrs.get("live_requests") is None and len(study.trials) == 1


def test_openapi_documents_the_babysitting_routes(url: str) -> None:
    tunelab.create_study(name="x", storage=url, seed=0)
    with TestClient(create_app(url), base_url=LOCAL) as c:
        openapi = ok(c.get("/openapi.json"))
    s = "/api/studies/{name}"
    paths = openapi["paths"]
    assert {f"{s}/tree", f"{s}/trials/{{number}}/live", f"{s}/trials/{{number}}/hyperparameters", f"{s}/rollback",
            f"{s}/trials/{{number}}/suggestions",
            f"{s}/trials/{{number}}/suggestions/{{kind}}/accept"} <= set(paths)
    live = paths[f"{s}/trials/{{number}}/live"]
    assert {"200", "403", "404", "409", "422"} <= set(live["post"]["responses"]) and set(live) == {"post"}
    assert live["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LiveRequested"}
    assert {"changes", "pending", "checkpoints", "curve", "children"} <= set(
        openapi["components"]["schemas"]["BranchModel"]["properties"])


# -- the page ------------------------------------------------------------------------------------------
try:  # its helpers and fixtures; it skips itself without Chromium or the dashboard extras (fails under CI)
    import test_dashboard_ui as ui
except pytest.skip.Exception as e:
    ui, NO_BROWSER = None, str(e)
else:
    NO_BROWSER = ""
    serve, shot, wait_until = ui.serve, ui.shot, ui.wait_until
    browser, page = ui.browser, ui.page  # the fixtures
in_browser = pytest.mark.skipif(ui is None, reason=NO_BROWSER or "no browser")


class Driver:
    """The run's training process: the loop of ``babysit_loops`` in a thread, one branch after the other.

    It trains the run's first trial; when a branch is asked to stop (a roll-back) it takes the WAITING
    branch next, resumed from its checkpoint; it ends when asked to, or when nothing waits."""

    def __init__(self, url: str, delay: float = 0.04, every: int = 5) -> None:
        self.study = tunelab.load_study(RUN, url)
        self.delay = delay
        self.every = every
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                trial, state = started(self.study)
                s = state["step"]
                while True:
                    s += 1
                    val = loops.step(trial, state, s, every=self.every)
                    if trial.should_prune():
                        self.study.tell(trial, state=TrialState.PRUNED)
                        break
                    if self.stop.is_set():
                        self.study.tell(trial, val)
                        return
                    time.sleep(self.delay)
                if not any(t.state == TrialState.WAITING for t in self.study.trials):
                    return
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)

    def __enter__(self) -> Driver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert self.errors == [], self.errors


def reached(study: tunelab.Study, number: int, step: int) -> Callable[[], bool]:
    def cond() -> bool:
        steps = study.get_curves(number).get("val_loss", ([], []))[0]
        return bool(steps) and steps[-1] >= step
    return cond


def plot_traces(pg: Any, selector: str) -> list[dict[str, Any]]:
    return pg.evaluate(f"(document.querySelector('{selector}').data || [])"
                       ".map(d => ({name: d.name, x: Array.from(d.x), y: Array.from(d.y)}))")


def post(base: str, path: str, body: Any) -> int:
    req = urllib.request.Request(f"{base}/api/studies/{RUN}/{path}", method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.slow
@in_browser
def test_change_lr_and_roll_back_from_the_page(url: str, page: Any) -> None:
    pg, _ = page
    study = new_run(url, keep_last=6)  # the newest kept step stays kept for 25 steps (2.5 s) at least
    with Driver(url, delay=0.1) as run, serve(url, pg) as base:
        wait_until(reached(study, 0, 6), what="the run to train a few steps")
        # 1. change lr on the running trial's page
        pg.goto(f"{base}/#/study/{RUN}/trial/0")
        pg.wait_for_selector("#live-form .kv-row")
        assert pg.eval_on_selector_all("#live-rows .kv-row", "rs => rs.map(r => [r.querySelector('.kv-name').value,"
                                       " r.querySelector('.kv-value').value])") == [["lr", "0.1"],
                                                                                   ["weight_decay", "0.01"]]
        pg.fill("#live-rows .kv-row:first-child .kv-value", "0.03")
        pg.fill("#live-note", "too fast")
        pg.click("#live-submit")
        pg.wait_for_function("document.querySelector('#live-result').textContent.includes('applies at the next step')")
        request = study.get_trial(0).system_attrs["live_requests"][0]
        assert request["params"] == {"lr": 0.03} and request["source"] == "dashboard"  # only what changed
        assert request["note"] == "too fast"
        pg.wait_for_selector("#live-changes li.change")  # applied by the loop at its next step
        [entry] = schedule(study.get_trial(0))
        assert entry["params"] == {"lr": 0.03} and entry["sources"] == ["dashboard"]
        assert "0.1 → 0.03" in pg.inner_text("#live-changes")
        assert pg.locator("#live-pending").count() == 0
        shot(pg, "babysit-live")

        # 2. the run's card: the tree and the overlay with the change's marker
        pg.goto(f"{base}/#/study/{RUN}")
        pg.wait_for_selector("#run-card li.branch[data-number='0'] li.change")
        assert "(dashboard)" in pg.inner_text("#run-card li.branch[data-number='0'] li.change")
        pg.wait_for_function("(document.querySelector('#run-plot').data || []).some(d => d.name === 'live changes')")
        names = [t["name"] for t in plot_traces(pg, "#run-plot")]
        assert names == ["#0", "live changes"]
        assert pg.evaluate("document.querySelector('#run-plot').layout.shapes.length") == 1
        assert pg.evaluate("document.querySelector('#run-plot').layout.shapes[0].x0") == entry["step"]
        shot(pg, "babysit-run")

        # 3. roll back to a kept checkpoint with a lower lr: a new branch, the loop moves on to it
        pg.goto(f"{base}/#/study/{RUN}/trial/0")
        pg.wait_for_selector("#rollback-form")
        # the newest kept step (the loop goes on: older ones are dropped as it keeps new ones)
        to = int(pg.eval_on_selector_all("#rollback-step option", "os => os[os.length - 1].value"))
        assert pg.input_value("#rollback-step") == str(to)
        pg.fill("#rollback-rows .kv-row:first-child .kv-value", "0.01")
        pg.fill("#rollback-note", "back before the change")
        shot(pg, "babysit-before-rollback")
        pg.click("#rollback-submit")
        pg.wait_for_selector("#rollback-link")
        b = branch_of(study.get_trial(1).system_attrs)
        assert b is not None and (b.parent, b.step, b.changed, b.kind) == (0, to, {"lr": 0.01}, "rollback")
        pg.click("#rollback-link")
        pg.wait_for_function("document.querySelector('#trial-number')?.textContent === '#1'")
        wait_until(reached(study, 1, to + 3), what="the branch to train")
        assert study.get_trial(0).state == TrialState.PRUNED
        assert study.get_curves(1)["lr"][1][0] == 0.01

        # 4. the tree shows the branch under its parent; the overlay its curve from the fork point
        pg.goto(f"{base}/#/study/{RUN}")
        pg.wait_for_selector("#run-card li.branch[data-number='0'] ul.children li.branch[data-number='1']")
        pg.wait_for_function("(document.querySelector('#run-plot').data || []).some(d => d.name === 'fork points')")
        traces = {t["name"]: t for t in plot_traces(pg, "#run-plot")}
        assert {"#0", "#1", "fork points", "live changes"} <= set(traces)
        assert traces["#1"]["x"][0] == to and traces["fork points"]["x"] == [to]
        parent_values = dict(zip(*study.get_curves(0)["val_loss"], strict=True))
        assert traces["fork points"]["y"] == [pytest.approx(parent_values[to])]
        head = pg.inner_text("#run-card li.branch[data-number='1'] .branch-head")
        assert "rollback from #0 at step " + str(to) in head and "0.01" in head
        wait_until(lambda: "RUNNING" in pg.inner_text("#run-card li.branch[data-number='1'] .branch-head"),
                   what="the branch running in the tree")
        shot(pg, "babysit-branch")
        assert run.errors == []


@pytest.mark.slow
@in_browser
def test_accept_a_suggestion_on_a_plateau(url: str, page: Any) -> None:
    pg, _ = page
    study = new_run(url, lr=0.5)  # converges in about 15 steps, to a level a lower rate improves
    with Driver(url, delay=0.03), serve(url, pg) as base:
        wait_until(reached(study, 0, 14), what="the plateau")
        pg.goto(f"{base}/#/study/{RUN}/trial/0")
        button = "#suggestions li.suggestion[data-kind='halve_lr'] button.accept-suggestion"
        pg.wait_for_selector(button)
        assert "flat for" in pg.inner_text("#suggestions li.suggestion[data-kind='halve_lr']")
        shot(pg, "babysit-suggestion")
        pg.click(button)
        pg.wait_for_function(
            "document.querySelector('#suggestion-result').textContent.includes('applies at the next step')")
        [request] = study.get_trial(0).system_attrs["live_requests"]
        assert request["params"] == {"lr": 0.25} and request["source"] == "dashboard"
        pg.wait_for_selector("#live-changes li.change")
        assert "0.5 → 0.25" in pg.inner_text("#live-changes") and "(dashboard)" in pg.inner_text("#live-changes")
        shot(pg, "babysit-accepted")


@pytest.mark.slow
@in_browser
def test_read_only_shows_the_run_without_its_actions(url: str, page: Any) -> None:
    pg, _ = page
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 3)
    set_live(study, 0, {"lr": 0.05}, source="cli")
    train(trial, state, 15)
    babysit.branch(study, 0, 10, {"lr": 0.02})
    with serve(url, pg, read_only=True) as base:
        pg.goto(f"{base}/#/study/{RUN}/trial/0")
        pg.wait_for_selector("#live-changes li.change")
        for form in ("#live-form", "#rollback-form", "#live-form-box", "#rollback-box", "button.accept-suggestion"):
            assert pg.locator(form).count() == 0, form
        pg.goto(f"{base}/#/study/{RUN}")
        pg.wait_for_selector("#run-card li.branch[data-number='0'] ul.children li.branch[data-number='1']")
        shot(pg, "babysit-read-only")
        assert post(base, "trials/0/live", {"values": {"lr": 0.01}}) == 403
        assert post(base, "rollback", {"to": 10}) == 403
        assert post(base, "trials/0/suggestions/halve_lr/accept", {}) == 403
    assert len(study.trials) == 2 and len(study.get_trial(0).system_attrs["live_requests"]) == 1


def test_the_tree_s_changes_say_where_they_applied_and_its_metric_is_the_run_s_objective(url: str) -> None:
    study = babysit.create_run("cnn", {"lr": 0.1}, storage=url, direction="maximize", metric="val_acc")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    for epoch in (1, 2):
        trial.report(epoch, val_loss=1.0 / epoch, val_acc=0.5 + 0.1 * epoch)
    set_live(study, 0, {"lr": 0.05}, source="cli")
    trial.sync_live(241 / 11, force=True, optimizer_step=241)  # the Trainer, one evaluation per epoch
    with TestClient(create_app(url), base_url=LOCAL) as c:
        tree = ok(c.get("/api/studies/cnn/tree"))
        assert tree["metric"] == "val_acc"  # the run's value, not val_loss
        (change,) = tree["branches"][0]["changes"]
        assert change["when"] == "epoch 21.9 (optimizer step 241)"
        live = ok(c.get("/api/studies/cnn/trials/0/hyperparameters"))
        assert live["changes"][0]["when"] == "epoch 21.9 (optimizer step 241)"
