"""Stored text is shown as text, never run: a study whose every field a storage writer controls holds a
script payload, in the report and the dashboard opened in headless Chromium (issue 16, item 8).

The fields: the study's name, parameter names and categorical values, user and system attribute keys
and values, trial notes, error texts, metric names, stage tags, a PBT lineage, the recipe's record
(step names, verdicts, messages, evidence), a branch's note, a live change's source and note. The
payloads set ``window.__xss`` and open a dialog when they run; the tests assert that neither happened,
that no element of theirs exists, and that their text is on the page as typed.

The browser tests reuse the fixtures of ``tests/test_dashboard_ui.py`` (Debian's chromium driven by
Playwright); they skip without it, except under ``CI=true``.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab import TrialState, babysit
from tunelab.samplers import RandomSampler
from tunelab.viz.html import Markup, escape

IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=1;alert(1)</script>"
ATTR = "\"'><svg onload=\"window.__xss=1;alert(1)\">"
PAYLOADS = (IMG, SCRIPT, ATTR)
RAW = ("<img", "<script", "<svg")
"""What no text of a figure or of the page's source may hold unescaped."""

NAME = f"study {IMG}"  # no '/': a study's name is a path segment of the API
NUM = f"width {SCRIPT}"
CAT = f"optimizer {ATTR}"
METRIC = f"acc {IMG}"
NOTE = f"note {SCRIPT} {IMG}"
STAGE = f"stage {ATTR}"
ERROR = f"ValueError: {SCRIPT}\n  {IMG}"


# -- the study ---------------------------------------------------------------------------------------
def _recipe() -> dict[str, Any]:
    runs = [{"lr": lr, "status": f"{status} {SCRIPT}", "initial": 2.3, "final": final, "drop": 1 - final / 2.3,
             "curve": [[s, 2.3 - (2.3 - final) * s / 10] for s in range(1, 11)]}
            for lr, status, final in ((1e-4, "slow", 2.1), (1e-3, "falls", 0.9), (1e-1, "diverged", 2.9))]
    return {"budget": {IMG: SCRIPT}, "steps": [
        {"step": f"initial_loss {IMG}", "verdict": f"pass {SCRIPT}", "message": f"fine {ATTR}",
         "evidence": {IMG: SCRIPT}, "seconds": 0.1},
        {"step": "lr_range", "verdict": ATTR, "message": f"the loss falls {IMG}", "seconds": 1.0,
         "evidence": {"range": [1e-3, 1e-2], "best": 3e-3, "steps": 10, IMG: SCRIPT, "runs": runs}},
        {"step": SCRIPT, "verdict": IMG, "message": SCRIPT, "evidence": {}},
    ]}


def _hostile_study(url: str, artifacts: Path) -> tunelab.Study:
    study = tunelab.create_study(name=NAME, storage=url, sampler=RandomSampler(), seed=0, artifact_dir=artifacts,
                                 checkpoint_policy=tunelab.CheckpointPolicy(keep_finished=True))
    study.set_user_attr(IMG, SCRIPT)
    study.set_system_attr(SCRIPT, IMG)
    study.set_system_attr("recipe", _recipe())
    store = study.storage
    for i in range(14):
        trial = study.ask()
        lr = float(trial.suggest_float("lr", 1e-3, 1e-1, log=True))  # type: ignore[arg-type]
        width = float(trial.suggest_float(NUM, 0.0, 1.0))  # type: ignore[arg-type]
        trial.suggest_categorical(CAT, list(PAYLOADS))
        trial.set_user_attr(IMG, SCRIPT)
        trial.set_user_attr("train", {"stage": STAGE})
        trial_id = study.get_trial(trial.number).trial_id
        attrs: dict[str, Any] = {SCRIPT: IMG, "coarse_to_fine": {"stage": i // 7, "ranges": {NUM: [0.0, 1.0]}}}
        if i == 1:
            attrs["pbt"] = {"lineage": [{IMG: SCRIPT, "number": 0, "params": {CAT: ATTR}}]}
        store.update_trial(trial_id, system_attrs=attrs)
        final = (math.log10(lr) + 2) ** 2 + width
        for s in range(1, 6):
            trial.report(s, val_loss=final + 1 / s, **{METRIC: 1 - final / (s + 1)})
        if i == 0:
            with trial.checkpoint(5) as folder:
                (folder / "state.txt").write_text(SCRIPT)
        if i == 3:
            study.tell(trial, state=TrialState.FAIL, error=ERROR)
        elif i == 4:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, final)
        store.annotate_trial(trial_id, {"note": NOTE})
    # a run: a branch of trial 0 (its note), running now with a pending live change (its source, note)
    branch = babysit.branch(study, 0, 5, {"lr": 0.02}, note=NOTE)
    running = study.ask()
    assert running.number == branch
    running.report(6, val_loss=0.5, **{METRIC: 0.4})
    babysit.set_live(study, branch, {"lr": 0.01}, source=IMG, note=SCRIPT)
    return study


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("xss")
    url = f"sqlite:///{root / 'shared.db'}"
    _hostile_study(url, root / "artifacts")
    return url, root


# -- the figures: every text escaped (no browser needed) ------------------------------------------------
def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(data, (list, tuple)):
        for v in data:
            yield from _strings(v)
    elif isinstance(data, np.ndarray) and data.dtype.kind in "UO":
        for v in data.ravel().tolist():
            yield from _strings(v)


def test_escape_is_the_one_helper() -> None:
    assert escape(IMG) == "&lt;img src=x onerror=&#34;window.__xss=1;alert(1)&#34;&gt;"
    assert escape(ATTR).startswith("&#34;&#x27;&gt;&lt;svg") and escape(3) == "3" and escape(None) == "None"
    assert isinstance(Markup("<b>x</b>"), str)


def test_every_figure_carries_stored_text_escaped(hostile: tuple[str, Path]) -> None:
    from tunelab import viz
    from tunelab.analysis.importance import importance

    url, _ = hostile
    study = tunelab.load_study(NAME, url)
    trials = study.trials
    figures = {
        "history": viz.plot_history(study, trials=trials),
        "slice": viz.plot_slice(study, trials=trials),
        "contour numeric": viz.plot_contour(study, "lr", NUM, trials=trials),
        "contour categorical": viz.plot_contour(study, CAT, NUM, trials=trials),
        "history empty": viz.plot_history(study, trials=[]),
        "slice empty": viz.plot_slice(study, trials=[t for t in trials if t.state == TrialState.FAIL]),
        "parallel": viz.plot_parallel_coordinates(study, trials=trials),
        "curves": viz.plot_curves(study, trials=trials),
        "curves of the payload metric": viz.plot_curves(study, METRIC, trials=trials),
        "importance": viz.plot_importance(importance(study)),
        "stages": viz.plot_stages(study, trials=trials),
        "lr range": viz.plot_lr_range(study),
    }
    for key, fig in figures.items():
        assert fig is not None, key
        texts = list(_strings(fig.to_plotly_json()))
        bad = [t for t in texts if any(r in t for r in RAW)]
        assert bad == [], (key, bad[:3])
    shown = " ".join(_strings(figures["slice"].to_plotly_json()))
    assert escape(CAT) in shown and escape(IMG) in shown  # the names and values are there, escaped
    assert escape(NAME) in figures["history"].layout.title.text
    assert escape(METRIC) in figures["curves of the payload metric"].layout.yaxis.title.text


def test_the_report_source_holds_no_stored_markup(hostile: tuple[str, Path]) -> None:
    from tunelab.viz.report import build_report

    url, _ = hostile
    page = build_report(tunelab.load_study(NAME, url))
    for payload in (*PAYLOADS, NAME, NUM, CAT, METRIC, "<svg onload", "<img src=x"):
        assert payload not in page, payload
    for shown in (escape(NAME), escape(f"initial_loss {IMG}"), escape(SCRIPT)):
        assert shown in page, shown


# -- in the browser ------------------------------------------------------------------------------------
try:  # the fixtures and helpers of the dashboard's UI tests; they skip without Chromium (fail under CI)
    import test_dashboard_ui as ui
except pytest.skip.Exception as e:
    ui, NO_BROWSER = None, str(e)
else:
    NO_BROWSER = ""
    browser, page = ui.browser, ui.page  # the fixtures
in_browser = pytest.mark.skipif(ui is None, reason=NO_BROWSER or "no browser")

INJECTED = """() => ({
  xss: typeof window.__xss !== "undefined",
  elements: Array.from(document.querySelectorAll("img, [onload], [onerror], script"))
    .filter(e => e.tagName !== "SCRIPT" || e.textContent.trim().startsWith("window.__xss"))
    .map(e => e.outerHTML.slice(0, 120)),
})"""
"""Whether a payload ran, and the elements a payload would have made (an image, a handler, its script)."""


class Watch:
    """The dialogs a page opened (a payload's alert), dismissed as they come."""

    def __init__(self, pg: Any) -> None:
        self.dialogs: list[str] = []
        pg.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def assert_inert(pg: Any, watch: Watch, where: str) -> None:
    pg.wait_for_timeout(300)  # an onerror fires once the broken image's load failed
    found = pg.evaluate(INJECTED)
    assert found["xss"] is False, f"{where}: a payload ran"
    assert found["elements"] == [], f"{where}: a payload made elements {found['elements']}"
    assert watch.dialogs == [], f"{where}: a payload opened dialogs {watch.dialogs}"


def visible_text(pg: Any, selector: str = "body") -> str:
    return str(pg.evaluate("s => document.querySelector(s).innerText", selector))


def plot_text(pg: Any, selector: str) -> str:
    """The text plotly drew in a figure (SVG text, not in innerText)."""
    return str(pg.evaluate("s => Array.from(document.querySelectorAll(s + ' text')).map(t => t.textContent)"
                           ".join(' | ')", selector))


@pytest.mark.slow
@in_browser
def test_the_report_shows_payloads_as_text_in_chromium(hostile: tuple[str, Path], page: Any) -> None:
    from tunelab.viz.report import write_report

    url, root = hostile
    pg, _ = page
    watch = Watch(pg)
    path = write_report(tunelab.load_study(NAME, url), root / "report.html")
    pg.goto(path.as_uri(), timeout=120_000)  # plotly.js inlined and nine figures drawn: slow on a busy machine
    pg.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8", timeout=60_000)
    assert_inert(pg, watch, "the report")
    body = visible_text(pg)
    for text in (NAME, f"initial_loss {IMG}", f"pass {SCRIPT}", f"fine {ATTR}", SCRIPT):
        assert text in body, text
    assert NAME in plot_text(pg, "#fig-history")  # the figures' titles, as typed
    assert NUM in plot_text(pg, "#fig-slice") and CAT in plot_text(pg, "#fig-slice")
    assert IMG in plot_text(pg, "#fig-slice")  # a categorical value as a tick label
    # hover labels are drawn from the same escaped text
    pg.evaluate("() => Plotly.Fx.hover('fig-history', [{curveNumber: 0, pointNumber: 0}])")
    pg.wait_for_selector("#fig-history .hoverlayer text")
    assert CAT in plot_text(pg, "#fig-history .hoverlayer")
    assert_inert(pg, watch, "the report's hover label")
    ui.shot(pg, "xss-report")


@pytest.mark.slow
@in_browser
def test_the_dashboard_shows_payloads_as_text_in_chromium(hostile: tuple[str, Path], page: Any) -> None:
    url, _ = hostile
    pg, _ = page
    watch = Watch(pg)
    study = tunelab.load_study(NAME, url)
    branch = max(t.number for t in study.trials)
    quoted = urllib.parse.quote(NAME, safe="")
    with ui.serve(url, pg) as base:
        pg.goto(base + "/#/")
        pg.wait_for_selector("#studies-table a.study-link")
        assert_inert(pg, watch, "the study list")
        assert NAME in visible_text(pg, "#studies-table")

        pg.click("#studies-table a.study-link")
        pg.wait_for_selector("#trials-table tbody tr[data-number]")
        pg.wait_for_selector("#recipe-table")
        pg.wait_for_selector("#run-tree li.branch")
        pg.wait_for_selector("#fig-history .main-svg")
        assert_inert(pg, watch, "the study page")
        body = visible_text(pg)
        for text in (NAME, NUM, CAT, NOTE, STAGE, f"initial_loss {IMG}", f"pass {SCRIPT}", ATTR):
            assert text in body, text
        run = visible_text(pg, "#run-card")
        assert NOTE in run and f"({IMG})" in run  # the branch's note, the live change's source
        assert NAME in plot_text(pg, "#fig-history")
        for kind in ("slice", "contour", "parallel", "curves", "importance", "stages", "lr_range"):
            pg.click(f"#fig-tabs button[data-kind='{kind}']")
            pg.wait_for_selector(f"#fig-{kind} .main-svg", timeout=30_000)
            assert_inert(pg, watch, f"the {kind} figure")
        assert CAT in plot_text(pg, "#fig-lr_range") or SCRIPT in plot_text(pg, "#fig-lr_range")
        ui.shot(pg, "xss-study")

        for number, texts in ((0, (IMG, SCRIPT, STAGE)), (1, (IMG, SCRIPT, ATTR)), (3, (SCRIPT, IMG)),
                              (branch, (f"({IMG})", f"note: {SCRIPT}"))):
            pg.goto(f"{base}/#/study/{quoted}/trial/{number}")
            pg.wait_for_selector("#trial-params tr[data-param]")
            pg.wait_for_selector("#trial-curves .main-svg")
            if number == 1:
                pg.wait_for_selector("#lineage-table")
            if number == branch:
                pg.wait_for_selector("#live-pending")
            assert_inert(pg, watch, f"trial {number}'s page")
            body = visible_text(pg)
            for text in texts:
                assert text in body, (number, text)
            assert METRIC in plot_text(pg, "#trial-curves")  # the legend's metric names
            if number == 0:
                assert pg.input_value("#note-input") == NOTE  # the note, in its editor
        pg.goto(f"{base}/#/study/{quoted}/trial/3")
        pg.wait_for_selector("#trial-error-box:not([hidden])")
        assert ERROR in pg.inner_text("#trial-error") or SCRIPT in pg.inner_text("#trial-error")
        assert_inert(pg, watch, "the failed trial's page")
        ui.shot(pg, "xss-trial")
