"""End-to-end tests of the dashboard's front end: the real page in headless Chromium (Playwright).

The app runs with uvicorn in a background thread on a free 127.0.0.1 port; the browser is
Debian's ``/usr/bin/chromium`` (never ``playwright install``). Without it the tests are skipped,
except under ``CI=true`` where they fail. Screenshots of each stage go to
``test-artifacts/dashboard-*.png``. Every test asserts that the page logged no console error.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab import TrialPruned, TrialState

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
# Requests the page may make that legitimately answer 4xx (a figure not applicable, too few trials).
EXPECTED_4XX = ("/figures/", "/importance", "/diagnosis/")


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI needs it)")
    pytest.skip(message, allow_module_level=True)


_require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
try:
    from playwright.sync_api import Browser, Page, sync_playwright

    from tunelab.dashboard import serve_in_thread
except ImportError as e:  # pragma: no cover - depends on the optional extras
    _require(False, f"the dashboard extras are not installed ({e})")


# ---------------------------------------------------------------- fixtures and helpers


@contextmanager
def serve(storage: str, pg: Page, **kwargs: Any) -> Iterator[str]:
    """The dashboard of ``storage`` served in a thread (``serve_in_thread``); yield its base URL.

    On the way out the page leaves the app first, so that it does not poll a stopped server."""
    with serve_in_thread(storage, **kwargs) as base:
        try:
            yield base
        finally:
            pg.goto("about:blank")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Console:
    """The page's console errors and uncaught exceptions (expected 4xx API answers excepted)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if "Failed to load resource" in msg.text and "/api/" in url and any(p in url for p in EXPECTED_4XX):
            return
        self.errors.append(f"{msg.text} ({url})")


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Console]]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    console = Console(pg)
    yield pg, console
    context.close()
    assert console.errors == [], console.errors


def shot(pg: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(pg: Page) -> list[dict[str, str]]:
    return pg.eval_on_selector_all(
        "#trials-table tbody tr[data-number]",
        "trs => trs.map(tr => ({number: tr.dataset.number, state: tr.dataset.state,"
        " value: tr.children[3].textContent}))")


def fill(study: tunelab.Study, n: int, steps: int = 8, seed: int = 0) -> None:
    """``n`` finished trials with ``val_loss`` and ``loss`` curves of ``steps`` points."""
    import random

    rng = random.Random(seed)
    for i in range(n):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 6)
        trial.suggest_categorical("optimizer", ["adam", "sgd"])
        final = (math.log10(lr) + 2.5) ** 2 + 0.1 * layers + rng.random() * 0.1
        for s in range(steps):
            trial.report(s, val_loss=final + math.exp(-s / 3), loss=0.9 * final + math.exp(-s / 3))
        state = TrialState.PRUNED if i % 5 == 3 else TrialState.FAIL if i % 7 == 6 else TrialState.COMPLETE
        study.tell(trial, final if state == TrialState.COMPLETE else None, state=state)


def make_study(tmp_path: Path, name: str = "demo", n: int = 12, **kwargs: Any) -> tuple[str, tunelab.Study]:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = tunelab.create_study(name=name, storage=url, sampler=tunelab.RandomSampler(), seed=0,
                                 artifact_dir=tmp_path, load_if_exists=True, **kwargs)
    fill(study, n)
    return url, study


def open_study(pg: Page, base: str, name: str, query: str = "") -> None:
    pg.goto(f"{base}/{query}#/study/{name}")
    pg.wait_for_selector("#trials-table tbody tr[data-number]")


# ---------------------------------------------------------------- tests


def test_studies_list_and_study_page(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, study = make_study(tmp_path, "alpha", n=12)
    tunelab.create_study(name="beta", storage=url, direction="maximize")
    gamma = tunelab.create_study(name="gamma", storage=url, directions=["maximize", "minimize"])
    for values in ([0.9, 5.0], [0.8, 1.0]):
        gamma.tell(gamma.ask(), values=values)
    with serve(url, pg) as base:
        pg.goto(base + "/")
        pg.wait_for_selector("#studies-table tbody tr[data-study='alpha']")
        names = pg.eval_on_selector_all("#studies-table tbody tr", "trs => trs.map(t => t.dataset.study)")
        assert sorted(names) == ["alpha", "beta", "gamma"]
        alpha = pg.inner_text("#studies-table tr[data-study='alpha']")
        assert "COMPLETE" in alpha and "12" in alpha
        several = pg.inner_text("#studies-table tr[data-study='gamma']")  # its front, not one objective's best
        assert "maximize, minimize" in several and "front: 2" in several
        shot(pg, "studies")

        pg.click("#studies-table tr[data-study='alpha'] a.study-link")
        pg.wait_for_selector("#trials-table tbody tr[data-number]")
        assert pg.url.endswith("#/study/alpha")
        assert pg.inner_text("#trial-count") == "12"
        assert len(rows(pg)) == 12
        best = study.best_value
        assert pg.inner_text("#best-value") == pg.evaluate(
            "v => String(Number(v.toPrecision(5)))", best)
        pg.wait_for_selector("#fig-history .main-svg")
        headers = pg.eval_on_selector_all("#trials-table thead th", "ths => ths.map(t => t.dataset.key)")
        assert headers[:4] == ["number", "state", "stage", "value"]
        assert {"param:lr", "param:layers", "param:optimizer"} <= set(headers)
        # a lazily loaded figure panel
        pg.click("#fig-tabs button[data-kind='slice']")
        pg.wait_for_selector("#fig-slice .main-svg")
        slice_axes = "Object.keys(document.querySelector('#fig-slice').layout).filter(k => k.startsWith('xaxis'))" \
            ".length"
        assert pg.evaluate(slice_axes) == 3  # every parameter at first
        pg.select_option(".panel[data-kind='slice'] select.axis", "layers")  # was ignored: every parameter still
        pg.wait_for_function(f"{slice_axes} === 1")
        assert pg.evaluate("document.querySelector('#fig-slice').layout.xaxis.title.text") == "layers"
        pg.click("#fig-tabs button[data-kind='importance']")
        pg.wait_for_function("document.querySelector('#importance-advice').textContent.length > 0")
        shot(pg, "study")


def test_stored_text_stays_text_and_in_its_place(tmp_path: Path, page: tuple[Page, Console]) -> None:
    """A study, parameter, attribute and error made of markup, a right-to-left override and a long line: the
    page shows them as text, opens the study (its name holds a slash, which gave "Not Found"), and keeps
    its layout."""
    pg, console = page
    mark = '"><img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    name = "runs/" + mark
    rtl = "lr \u202e"  # a right-to-left override: it turned round the min and max boxes after the name
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = tunelab.create_study(name=name, storage=url, sampler=tunelab.RandomSampler(), seed=0)
    for i in range(3):
        trial = study.ask()
        trial.suggest_float(rtl, 0.0, 1.0)
        trial.suggest_categorical(mark, [mark, "1"])
        trial.set_user_attr("k" * 400, mark)  # one long line of JSON: it widened the page past the window
        trial.report(0, **{mark: 1.0})
        if i:
            study.tell(trial, float(i))
        else:
            study.tell(trial, state=TrialState.FAIL, error=mark)
    with serve(url, pg) as base:
        pg.goto(base + "/")
        pg.click("#studies-table a.study-link")
        pg.wait_for_selector("#trials-table tbody tr[data-number]")
        assert pg.inner_text("#study-name") == name and len(rows(pg)) == 3
        box = ".range[data-param='lr \u202e'] "
        left = pg.eval_on_selector_all(box + "input", "els => els.map(e => e.getBoundingClientRect().x)")
        assert left[0] < left[1], left  # min, then max
        pg.click("#trials-table a[href$='/trial/0']")
        pg.wait_for_selector("#trial-params tr[data-param]")
        assert pg.inner_text("#trial-error") == mark
        assert pg.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        shot(pg, "stored-text")
        assert pg.evaluate("window.__xss") is None and pg.locator("#app img, #app script").count() == 0
        # and were markup ever let through, its inline handlers would not run (the page's CSP)
        pg.evaluate("""document.getElementById('app').insertAdjacentHTML('beforeend',
                       '<img id="leak" src="data:," onload="window.__xss = 3" onerror="window.__xss = 4">')""")
        pg.wait_for_function("document.getElementById('leak').complete")
        assert pg.evaluate("window.__xss") is None
        console.errors[:] = [e for e in console.errors if "inline event handler" not in e]


def test_table_fills_live_and_running_curves_show(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, study = make_study(tmp_path, "live", n=2)

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("layers", 1, 6)
        trial.suggest_categorical("optimizer", ["adam", "sgd"])
        for s in range(10):
            time.sleep(0.06)
            trial.report(s, val_loss=x + math.exp(-s / 4), loss=x)
        return x

    with serve(url, pg) as base:
        open_study(pg, base, "live")
        assert len(rows(pg)) == 2
        # record the row count every 50 ms in the page itself
        pg.evaluate("window.__sameDocument = true; window.__counts = [];"
                    " setInterval(() => window.__counts.push("
                    "document.querySelectorAll('#trials-table tbody tr[data-number]').length), 50)")
        worker = threading.Thread(target=lambda: study.optimize(objective, n_trials=4, show_progress=False))
        t0 = time.monotonic()
        worker.start()
        try:
            pg.wait_for_selector("#trials-table tbody tr[data-state='RUNNING']")
            pg.wait_for_function("document.querySelector('#running-curves').data?.[0]?.x?.length > 0")
            assert pg.locator("#running-curves .main-svg").count() > 0
            shot(pg, "live-running")
        finally:
            worker.join()
        assert time.monotonic() - t0 < 10
        pg.wait_for_function("document.querySelector('#trial-count').textContent === '6'")
        wait_until(lambda: len(rows(pg)) == 6, what="all six rows")
        seen = set(pg.evaluate("window.__counts"))
        assert len(seen) >= 3, f"the table should grow while the study runs, saw row counts {sorted(seen)}"
        assert pg.evaluate("window.__sameDocument") is True  # no reload happened
        wait_until(lambda: all(r["state"] == "COMPLETE" for r in rows(pg)[:4]), what="the new trials to complete")
        shot(pg, "live-done")


def history_traces(pg: Page) -> list[dict[str, Any]]:
    """The traces of the history figure as plotly holds them: type, name, x and y."""
    return pg.evaluate("(document.querySelector('#fig-history').data || [])"
                       ".map(d => ({type: d.type, name: d.name, x: Array.from(d.x), y: Array.from(d.y)}))")


def test_history_is_drawn_from_the_compact_values_before_the_trial_list(
        tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, study = make_study(tmp_path, "held", n=30, direction="maximize")
    held: list[Any] = []  # the page's requests for every trial and for the server's figure, held back
    asked: list[str] = []
    pg.on("request", lambda r: asked.append(r.url.split("/api/", 1)[-1]) if "/api/" in r.url else None)
    pg.route(lambda u: u.endswith("/trials?since=0") or "/figures/history" in u or u.endswith("/plotly.min.js"),
             lambda route: held.append(route))

    def release(part: str) -> None:
        for route in [r for r in held if part in r.request.url]:
            held.remove(route)
            route.continue_()

    def expected() -> tuple[list[int], list[float]]:
        done = sorted((t.number, t.value) for t in study.trials if t.state == TrialState.COMPLETE)
        return [n for n, _ in done], [v for _, v in done]

    with serve(url, pg) as base:
        pg.goto(f"{base}/#/study/held")
        # the first view: a canvas drawn without plotly.js, whose 3.5 MB load only then starts
        pg.wait_for_selector('#fig-history[data-source="client"] canvas.quick-chart')
        wait_until(lambda: pg.wait_for_timeout(20) or any(r.request.url.endswith("plotly.min.js") for r in held),
                   what="the request of plotly.js")
        assert pg.evaluate("typeof window.Plotly") == "undefined"
        shot(pg, "history-canvas")
        release("plotly.min.js")  # then plotly's figure of the same data replaces it
        pg.wait_for_selector('#fig-history[data-source="client"] .main-svg')
        assert pg.locator("#fig-history canvas.quick-chart").count() == 0
        # drawn while every trial's summary is still on its way: from /values alone
        wait_until(lambda: pg.wait_for_timeout(20) or held != [], what="the request of every trial")
        assert [r.request.url.endswith("/trials?since=0") for r in held] == [True]  # plotly.js released
        assert "studies/held/values?since=0" in asked
        assert asked.index("studies/held/values?since=0") < asked.index("studies/held/trials?since=0")
        assert not any("/figures/history" in a for a in asked)
        assert pg.locator("#trials-table tbody tr[data-number]").count() == 0
        points, best = history_traces(pg)
        numbers, values = expected()
        assert points["type"] == "scatter" and points["x"] == numbers and points["y"] == pytest.approx(values)
        assert best["name"] == "best so far" and best["x"][-1] == numbers[-1]
        assert best["y"][-1] == pytest.approx(max(values))  # maximize: the best is the largest
        assert best["y"] == sorted(best["y"]) and best["y"][0] == pytest.approx(values[0])
        assert pg.text_content("#fig-history .gtitle") == "Best value over time: held (maximize)"
        shot(pg, "history-from-values")

        # the table fills when the trials come; the client figure stays until the server's figure does
        release("/trials?since=0")
        wait_until(lambda: len(rows(pg)) == 30, what="the table")
        assert pg.get_attribute("#fig-history", "data-source") == "client"

        # a new best from another writer: the trials poll brings it into the client figure
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        study.tell(trial, max(values) + 1.0)
        pg.wait_for_function("document.querySelector('#fig-history').data[0].x.includes(30)")
        points, best = history_traces(pg)
        numbers, values = expected()
        assert points["x"] == numbers and points["y"] == pytest.approx(values)
        assert best["x"][-2:] == [30, 30] and best["y"][-1] == pytest.approx(max(values))
        assert pg.get_attribute("#fig-history", "data-source") == "client"

        release("/figures/history")
        pg.wait_for_selector('#fig-history[data-source="server"] .main-svg')
        assert "Optimization history" in pg.text_content("#fig-history .gtitle")
        pg.unroute_all(behavior="ignoreErrors")
        shot(pg, "history-server")


def test_the_client_history_drops_trials_that_break_a_constraint_once_their_summaries_come(
        tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = tunelab.create_study(name="bounded", storage=url, sampler=tunelab.RandomSampler(), seed=0)
    for i in range(8):  # the odd trials have the lowest values and break the memory bound
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.set_constraint("memory_gb", 9.0 if i % 2 else 1.0, upper=8.0)
        study.tell(trial, (0.1 if i % 2 else 1.0) - 0.01 * i)
    held: list[Any] = []
    pg.route(lambda u: "/figures/history" in u, lambda route: held.append(route))
    with serve(url, pg) as base:
        open_study(pg, base, "bounded")
        wait_until(lambda: len(rows(pg)) == 8, what="the table")
        pg.wait_for_function("(document.querySelector('#fig-history').data || []).length > 0"
                             " && document.querySelector('#fig-history').data[0].x.length === 4")
        points, best = history_traces(pg)
        assert points["x"] == [0, 2, 4, 6] and best["y"][-1] == pytest.approx(1.0 - 0.06)
        assert pg.get_attribute("#fig-history", "data-source") == "client"
        pg.unroute_all(behavior="ignoreErrors")


def test_trial_page_curve_params_diagnosis(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, study = make_study(tmp_path, "trials", n=6)
    with serve(url, pg) as base:
        open_study(pg, base, "trials")
        pg.click("#trials-table tbody tr[data-number='0'] a")
        pg.wait_for_selector("#trial-curves .main-svg")
        assert pg.url.endswith("#/study/trials/trial/0")
        traces = pg.evaluate("document.querySelector('#trial-curves').data.map(d => [d.name, d.x.length])")
        assert sorted(traces) == [["loss", 8], ["val_loss", 8]]
        assert pg.locator("#trial-curves .scatterlayer .trace").count() == 2
        assert pg.locator("#trial-curves .scatterlayer .trace:first-child .point").count() == 8
        params = pg.eval_on_selector_all("#trial-params tbody tr", "trs => trs.map(t => t.dataset.param)")
        assert sorted(params) == ["layers", "lr", "optimizer"]
        lr = study.trials[0].params["lr"]
        assert pg.inner_text("#trial-params tr[data-param='lr'] td.num") == pg.evaluate(
            "v => String(Number(v.toPrecision(5)))", lr)
        pg.wait_for_function("!document.querySelector('#diagnosis').textContent.includes('Loading')")
        assert pg.locator("#diagnosis .finding, #diagnosis #no-findings").count() >= 1
        assert "{" in pg.inner_text("#system-attrs")
        shot(pg, "trial")


def test_a_trial_number_in_the_address_that_is_not_plain_digits_is_refused(
    tmp_path: Path, page: tuple[Page, Console]
) -> None:
    # parseInt read "1e3" and "1.0" as 1: the page of trial 1 showed under an address naming another
    pg, _ = page
    url, _study = make_study(tmp_path, "digits", n=3)
    with serve(url, pg) as base:
        asked: list[str] = []
        pg.on("request", lambda r: asked.append(r.url) if "/trials/" in r.url else None)
        for typed in ("1e3", "1.0", "+1", "%201"):
            pg.goto(f"{base}/#/study/digits/trial/{typed}")
            error = pg.wait_for_selector("#app p.error")
            text = error.inner_text()
            assert "is not a plain decimal integer" in text and typed.replace("%20", " ") in text, text
        assert asked == []  # no trial was read
        pg.goto(f"{base}/#/study/digits/trial/1")
        pg.wait_for_selector("#trial-curves .main-svg")


def test_read_only_hides_actions(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, _study = make_study(tmp_path, "ro", n=3)
    with serve(url, pg, read_only=True) as base:
        open_study(pg, base, "ro")
        pg.wait_for_selector("#read-only-tag")  # once the study's record is in
        assert pg.locator("#study-sampler").count() == 1
        assert pg.locator("#enqueue-form").count() == 0
        pg.goto(f"{base}/#/study/ro/trial/1")
        pg.wait_for_selector("#trial-params tbody tr")
        assert not pg.locator("#stop-trial").is_visible()
        assert not pg.locator("#save-note").is_visible()
        assert not pg.locator("#note-input").is_visible()
        shot(pg, "read-only")
        req = urllib.request.Request(f"{base}/api/studies/ro/trials/1/note", method="POST",
                                     data=json.dumps({"note": "x"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 403


def test_note_stop_and_enqueue(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, console = page
    url, study = make_study(tmp_path, "act", n=3)
    started = threading.Event()

    def objective(trial: tunelab.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for s in range(400):  # about 20 s unless stopped
            trial.report(s, val_loss=1.0 / (s + 1))
            started.set()
            if trial.should_prune():
                raise TrialPruned()
            time.sleep(0.05)
        return 0.0

    with serve(url, pg) as base:
        # a note, saved and shown after a reload
        pg.goto(f"{base}/#/study/act/trial/1")
        pg.wait_for_selector("#save-note")
        # one too long: the API's 422 in words, not its JSON echoing the 10,001 characters back
        pg.fill("#note-input", "x" * 10_001)
        pg.click("#save-note")
        pg.wait_for_function("document.querySelector('#action-result').textContent.includes('10000')")
        assert pg.inner_text("#action-result") == "note: String should have at most 10000 characters"
        console.errors[:] = [e for e in console.errors if not ("status of 422" in e and "/note" in e)]
        pg.fill("#note-input", "looks promising")
        pg.click("#save-note")
        pg.wait_for_function("document.querySelector('#action-result').textContent.includes('saved')")
        pg.reload()
        pg.wait_for_selector("#trial-params tbody tr")
        assert pg.input_value("#note-input") == "looks promising"
        pg.goto(f"{base}/#/study/act")
        pg.wait_for_selector("#trials-table tbody tr[data-number='1']")
        assert pg.inner_text("#trials-table tr[data-number='1'] td.note") == "looks promising"

        # enqueue a configuration from the form (prefilled with the best params)
        pg.wait_for_selector("#enqueue-params")
        prefilled = json.loads(pg.input_value("#enqueue-params"))
        assert prefilled == study.best_params
        pg.fill("#enqueue-params", json.dumps({"lr": 0.01}))
        pg.click("#enqueue-form button[type=submit]")
        pg.wait_for_selector("#enqueue-result a")
        pg.wait_for_selector("#trials-table tbody tr[data-number='3'][data-state='WAITING']")
        shot(pg, "enqueued")

        # stop a running trial (it takes the enqueued configuration first)
        worker = threading.Thread(target=lambda: study.optimize(objective, n_trials=1, show_progress=False))
        worker.start()
        try:
            assert started.wait(10)
            pg.goto(f"{base}/#/study/act/trial/3")
            pg.wait_for_selector("#stop-trial:visible")
            shot(pg, "before-stop")
            pg.click("#stop-trial")
            pg.wait_for_function("document.querySelector('#trial-state').textContent.includes('PRUNED')")
            assert not pg.locator("#stop-trial").is_visible()
        finally:
            worker.join(timeout=30)
        assert study.trials[3].state == TrialState.PRUNED
        pg.goto(f"{base}/#/study/act")
        pg.wait_for_selector("#trials-table tbody tr[data-number='3'][data-state='PRUNED']")
        shot(pg, "stopped")


def test_token_flow(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, _study = make_study(tmp_path, "tok", n=3)
    with serve(url, pg, token="s3cret") as base:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/api/studies", timeout=5)
        assert err.value.code == 401
        pg.goto(f"{base}/?token=s3cret#/")
        pg.wait_for_selector("#studies-table tr[data-study='tok']")
        pg.click("#studies-table a.study-link")
        pg.wait_for_selector("#trials-table tbody tr[data-number]")
        assert "token=s3cret" in pg.url  # kept while navigating
        pg.click("#trials-table tbody tr[data-number='0'] a")
        pg.wait_for_selector("#trial-curves .main-svg")
        shot(pg, "token")


def test_sort_and_state_filter(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, study = make_study(tmp_path, "sort", n=30)
    with serve(url, pg) as base:
        open_study(pg, base, "sort")
        numbers = [int(r["number"]) for r in rows(pg)]
        assert numbers == sorted(numbers, reverse=True)  # newest first by default

        pg.click("#trials-table thead th[data-key='value']")
        pg.wait_for_selector("#trials-table thead th[data-key='value'][data-dir='asc']")
        complete = sorted((t.value, t.number) for t in study.trials if t.state == TrialState.COMPLETE)
        got = [int(r["number"]) for r in rows(pg)]
        assert got[:len(complete)] == [n for _, n in complete]  # ascending, missing values last
        pg.click("#trials-table thead th[data-key='value']")
        pg.wait_for_selector("#trials-table thead th[data-key='value'][data-dir='desc']")
        got = [int(r["number"]) for r in rows(pg)]
        assert got[:len(complete)] == [n for _, n in reversed(complete)]
        shot(pg, "sorted")

        pg.uncheck("#state-filter input[value='COMPLETE']")
        states = {r["state"] for r in rows(pg)}
        assert states and "COMPLETE" not in states
        n_other = sum(t.state != TrialState.COMPLETE for t in study.trials)
        assert len(rows(pg)) == n_other
        pg.check("#state-filter input[value='COMPLETE']")
        assert len(rows(pg)) == 30

        # a parameter range
        pg.fill("#range-filter input.range-min[data-param='layers']", "3")
        pg.fill("#range-filter input.range-max[data-param='layers']", "4")
        expected = sum(3 <= t.params["layers"] <= 4 for t in study.trials)
        wait_until(lambda: len(rows(pg)) == expected, what="the range filter")
        shot(pg, "filtered")


def add_two_objective_trials(study: tunelab.Study, n: int, seed: int = 0) -> None:
    """acc (max) grows with x, latency (min) with x and y; mem = x + y <= 1.2 (some trials miss it)."""
    import random

    rng = random.Random(seed)
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        trial.set_constraint("mem", x + y, upper=1.2)
        study.tell(trial, values=[x, x + y + 0.01 * rng.random()])


def test_a_study_with_several_objectives_shows_its_front_live(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"],
                                 objective_names=["acc", "latency"], sampler=tunelab.RandomSampler(), seed=0)
    add_two_objective_trials(study, 20)
    with serve(url, pg) as base:
        open_study(pg, base, "mo")
        pg.wait_for_selector("#pareto-card:not([hidden]) #fig-pareto .main-svg")
        pg.wait_for_selector("#fig-hypervolume .main-svg")
        assert "acc (maximize), latency (minimize)" in pg.inner_text("#study-objectives")
        headers = pg.eval_on_selector_all("#trials-table thead th", "ths => ths.map(t => t.textContent)")
        assert headers[3:6] == ["acc (max)", "latency (min)", "mem"], headers
        keys = pg.eval_on_selector_all("#trials-table thead th", "ths => ths.map(t => t.dataset.key)")
        assert keys[3:6] == ["obj:0", "obj:1", "con:mem"]
        t0 = study.trials[0]
        cells = pg.eval_on_selector("#trials-table tbody tr[data-number='0']",
                                    "tr => Array.from(tr.children).map(c => c.textContent)")
        assert cells[3] == pg.evaluate("v => String(Number(v.toPrecision(5)))", t0.values[0])  # type: ignore[index]
        assert cells[4] == pg.evaluate("v => String(Number(v.toPrecision(5)))", t0.values[1])  # type: ignore[index]
        n_infeasible = sum(not t.feasible for t in study.trials)
        assert n_infeasible > 0
        assert len(pg.query_selector_all("#trials-table td.constraint.infeasible")) == n_infeasible
        # the figure is the server's plot_pareto_front: the front's trials in red, as study.best_trials
        front = pg.evaluate("() => document.getElementById('fig-pareto').layout.meta.front")
        assert sorted(front) == [t.number for t in study.best_trials]
        links = pg.eval_on_selector_all("#pareto-front-list a", "as => as.map(a => a.textContent)")
        assert links == [f"#{t.number}" for t in sorted(study.best_trials, key=lambda t: -t.values[0])]  # type: ignore[index]
        assert pg.inner_text("#pareto-summary").startswith(f"({len(front)} trial")
        shot(pg, "pareto")
        # the importance of each objective
        pg.click("#fig-tabs button[data-kind='importance']")
        pg.wait_for_function("document.querySelector('#importance-advice').textContent.length > 0")
        pg.select_option("#importance-objective", "latency")
        pg.wait_for_function("document.querySelector('#fig-importance').layout?.title?.text?.includes('latency')")
        # live: a trial that beats every other joins the front without a reload
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        study.tell(trial, values=[0.999, 0.001])
        pg.wait_for_selector(f"#trials-table tbody tr[data-number='{trial.number}']", timeout=15_000)
        pg.wait_for_function(f"document.getElementById('fig-pareto').layout.meta.front.includes({trial.number})",
                             timeout=30_000)
        assert pg.inner_text("#pareto-front-list") == f"On the front: #{trial.number}"


def test_a_single_objective_study_has_no_pareto_card(tmp_path: Path, page: tuple[Page, Console]) -> None:
    pg, _ = page
    url, _study = make_study(tmp_path, "one", n=6)
    with serve(url, pg) as base:
        open_study(pg, base, "one")
        pg.wait_for_selector("#study-meta b")
        pg.wait_for_function("document.querySelector('#fig-history .main-svg') !== null")
        assert pg.is_hidden("#pareto-card") and pg.is_hidden("#importance-objective-label")
        keys = pg.eval_on_selector_all("#trials-table thead th", "ths => ths.map(t => t.dataset.key)")
        assert keys[:4] == ["number", "state", "stage", "value"] and not any(k.startswith("obj:") for k in keys)
