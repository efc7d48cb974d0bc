"""How fast the dashboard's front end shows a large study, measured in a real browser.

The study: 10,000 trials (``--trials``) in a fresh SQLite file, written through the storage API
(``viz.fill_study``: four parameters and a conditional one, 3 coarse-to-fine stages, about 85%
COMPLETE, 10% PRUNED, 5% FAIL, a recipe with a learning-rate range test). The first 1,000 trials
(``--curves``) report ``val_loss`` and ``loss`` curves of 100 steps (``--steps``); the last 200
trials (``--long-curves``, COMPLETE, two parameters) have curves of 1,000 points (``--long-steps``).

The app (``tunelab.dashboard.app.create_app``) runs with uvicorn in a thread on 127.0.0.1, and the
page is opened in headless Chromium (Debian's ``/usr/bin/chromium``, through Playwright). Timed,
the median of ``--repeats`` (default 5):

- **first render**: navigation start to the study page showing both its trial table's first row
  and a drawn history figure (a fresh browser context each time: nothing cached, plotly.js
  included), read from ``performance.now()`` in the page by a MutationObserver. The page first
  draws a quick history (every COMPLETE trial's value and the best-so-far line) from the compact
  columns of ``/values?since=0`` on a canvas (plotly.js loads only after that first view; it then
  redraws the same data as a plotly figure), then replaces it with the server's history figure
  (``/figures/history``, asked for once every trial is read): both times are reported;
- **new trial shown**: a trial added from Python (through the storage API, the clock starts before
  the write) until its row is in the table of an open study page, once that page has settled (the
  page polls every second, so expect about half a second plus the request; the page also refreshes
  its history figure after changes, at most every ~10 s, which may delay a poll).

Also timed from Python (urllib, median): the API calls the first render waits for.
Target: both under 1 s.

Run ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dashboard.py``; the results are printed and
saved to ``benchmarks/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, sync_playwright
from viz import fill_study

import tunelab
from tunelab import Float, TrialState
from tunelab.dashboard import serve_in_thread

RESULTS = Path(__file__).parent / "results" / "dashboard.json"
TARGET_SECONDS = 1.0
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
STUDY = "dash"

# Records when the first trial row and the drawn history figure appear (ms since navigation start).
MARKS_SCRIPT = """
window.__marks = {};
new MutationObserver(() => {
  const m = window.__marks;
  if (!m.row && document.querySelector('#trials-table tbody tr[data-number]')) m.row = performance.now();
  if (!m.history && document.querySelector('#fig-history :is(.main-svg, canvas.quick-chart)')) {
    m.history = performance.now();
  }
  if (!m.server && document.querySelector('#fig-history[data-source="server"] .main-svg')) m.server = performance.now();
  if (window.__want !== undefined && !m.seen
      && document.querySelector('#trials-table tbody tr[data-number="' + window.__want + '"]')) m.seen = Date.now();
}).observe(document, {childList: true, subtree: true, attributes: true, attributeFilter: ['data-source']});
"""


def machine_info() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": sys.version.split()[0],
            "platform": platform.platform(), "tunelab": tunelab.__version__}


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (through a .tmp file beside ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def add_long_curves(study: tunelab.Study, n: int, steps: int, seed: int = 1) -> None:
    """Add ``n`` COMPLETE trials with ``val_loss``/``loss`` curves of ``steps`` points."""
    storage = study.storage
    study_id = storage.get_study(study.name).study_id
    rng = np.random.default_rng(seed)
    dists = {"lr": Float(1e-5, 1.0, log=True), "weight_decay": Float(1e-6, 1e-1, log=True)}
    for _ in range(n):
        params = {"lr": float(10 ** rng.uniform(-5, 0)), "weight_decay": float(10 ** rng.uniform(-6, -1))}
        value = (math.log10(params["lr"]) + 2.5) ** 2 + float(rng.normal(0, 0.05))
        trial = storage.create_trial(study_id, TrialState.RUNNING, params=params, distributions=dists)
        noise = rng.normal(0, 0.02, steps)
        for s in range(steps):
            v = value + 2.0 * math.exp(-s / 200) + float(noise[s])
            storage.report(trial.trial_id, s, {"val_loss": v, "loss": 0.9 * v})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=value)




def time_get(url: str, repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            size = len(r.read())
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def first_render(browser: Browser, base: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.add_init_script(MARKS_SCRIPT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/#/study/{STUDY}")
    page.wait_for_function("window.__marks.row && window.__marks.history && window.__marks.server", timeout=60_000)
    marks = page.evaluate("window.__marks")
    timing = page.evaluate("(() => { const r = {}; performance.getEntriesByType('resource').forEach(e => {"
                           " const m = e.name.match("
                           "/(plotly.min.js|values\\?since=0|trials\\?since=0|figures\\/history)$/);"
                           " if (m) r[m[1]] = [e.startTime, e.responseEnd]; });"
                           " const n = performance.getEntriesByType('navigation')[0];"
                           " r.dcl = n.domContentLoadedEventEnd; return r; })()")
    context.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {"row": marks["row"] / 1000, "history": marks["history"] / 1000,
            "both": max(marks["row"], marks["history"]) / 1000, "server_history": marks["server"] / 1000,
            "values_response": timing["values?since=0"][1] / 1000,
            "trials_response": timing["trials?since=0"][1] / 1000,
            "history_request": timing["figures/history"][0] / 1000,
            "history_response": timing["figures/history"][1] / 1000,
            "plotly_loaded": timing["plotly.min.js"][1] / 1000}


def new_trial_shown(browser: Browser, base: str, study: tunelab.Study, repeats: int) -> list[float]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.add_init_script(MARKS_SCRIPT)
    page.goto(f"{base}/#/study/{STUDY}")
    # the page has settled: the server's history figure is drawn and the study's record is in
    page.wait_for_selector("#fig-history[data-source='server'] .main-svg", timeout=60_000)
    page.wait_for_selector("#enqueue-form", timeout=60_000)
    storage = study.storage
    study_id = storage.get_study(study.name).study_id
    rng = np.random.default_rng(2)
    out = []
    for _ in range(repeats):
        time.sleep(1.0 + float(rng.uniform(0, 1)))  # land anywhere in the page's polling cycle
        start = time.time()
        t = storage.create_trial(study_id, TrialState.RUNNING, params={"lr": 1e-3},
                                 distributions={"lr": Float(1e-5, 1.0, log=True)})
        storage.finish_trial(t.trial_id, TrialState.COMPLETE, value=float(rng.uniform(0.5, 2)))
        page.evaluate("n => { window.__want = n; window.__marks.seen = undefined; }", t.number)
        page.wait_for_selector(f"#trials-table tbody tr[data-number='{t.number}']", timeout=30_000)
        seen = page.evaluate("window.__marks.seen")
        if seen is None:  # the row came before the observer was told which one to look for
            seen = time.time() * 1000
        out.append(seen / 1000 - start)
    context.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--curves", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--long-curves", type=int, default=200)
    parser.add_argument("--long-steps", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--db", type=Path, default=None,
                        help="keep the study in this SQLite file, reuse it when it exists (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tunelab-bench-dashboard-") as tmp:
        db = args.db if args.db is not None else Path(tmp) / "dashboard.db"
        url = f"sqlite:///{db}"
        fill_seconds = None
        if not db.exists():
            study = tunelab.create_study(name=STUDY, storage=url, sampler=tunelab.RandomSampler(), seed=0,
                                         artifact_dir=tmp)
            start = time.perf_counter()
            fill_study(study, args.trials - args.long_curves, args.curves, args.steps)
            add_long_curves(study, args.long_curves, args.long_steps)
            fill_seconds = round(time.perf_counter() - start, 2)
            print(f"filled {args.trials} trials ({args.curves} curves of {args.steps} points, {args.long_curves} of "
                  f"{args.long_steps}) in {fill_seconds:.1f}s", flush=True)
        study = tunelab.load_study(STUDY, url)
        n_trials = len(study.trials)

        with serve_in_thread(url) as base, sync_playwright() as p:
            api: dict[str, Any] = {}
            for name, path in [("study", f"/api/studies/{STUDY}"), ("values", f"/api/studies/{STUDY}/values?since=0"),
                               ("trials", f"/api/studies/{STUDY}/trials?since=0"),
                               ("history", f"/api/studies/{STUDY}/figures/history"),
                               ("poll", f"/api/studies/{STUDY}/trials?since={n_trials}")]:
                seconds, size = time_get(base + path, args.repeats)
                api[name] = {"seconds": round(seconds, 4), "bytes": size}
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            first_render(browser, base)  # warm the server (the page itself starts cold each time)
            renders = [first_render(browser, base) for _ in range(args.repeats)]
            shown = new_trial_shown(browser, base, study, args.repeats)
            browser.close()

    render_s = statistics.median(r["both"] for r in renders)
    shown_s = statistics.median(shown)
    def row(label: str, key: str) -> tuple[str, float, list[float]]:
        values = [r[key] for r in renders]
        return label, statistics.median(values), values

    rows = [
        row("first render: table row + history drawn", "both"),
        row("  first table row", "row"),
        row("  history drawn (quick, from /values)", "history"),
        row("  server history figure drawn", "server_history"),
        row("  (plotly.min.js downloaded)", "plotly_loaded"),
        row("  (values?since=0 answered)", "values_response"),
        row("  (trials?since=0 answered)", "trials_response"),
        row("  (figures/history asked / answered)", "history_request"),
        row("", "history_response"),
        ("new trial shown in the table", shown_s, shown),
    ]
    print(f"\nstudy: {n_trials} trials; median of {args.repeats}")
    print(f"{'measure':44} {'median s':>9}  all (s)")
    for label, med, values in rows:
        print(f"{label:44} {med:9.3f}  {', '.join(f'{v:.3f}' for v in values)}")
    print(f"\n{'API call (from Python)':44} {'median s':>9}  bytes")
    for name, r in api.items():
        print(f"{name:44} {r['seconds']:9.3f}  {r['bytes']:,}")
    ok_render, ok_shown = render_s < TARGET_SECONDS, shown_s < TARGET_SECONDS
    print(f"\ntarget < {TARGET_SECONDS:.0f} s: first render {'met' if ok_render else 'MISSED'}, "
          f"new trial {'met' if ok_shown else 'MISSED'}")
    save_json(args.output, {
        "machine": machine_info(),
        "study": {"trials": n_trials, "curves": args.curves, "steps": args.steps, "long_curves": args.long_curves,
                  "long_steps": args.long_steps, "fill_seconds": fill_seconds},
        "repeats": args.repeats,
        "target_seconds": TARGET_SECONDS,
        "first_render_seconds": {
            "median": round(render_s, 4),
            "server_history_median": round(statistics.median(r["server_history"] for r in renders), 4),
            "runs": [{k: round(v, 4) for k, v in r.items()} for r in renders],
        },
        "new_trial_seconds": {"median": round(shown_s, 4), "runs": [round(v, 4) for v in shown]},
        "api_seconds": api,
        "targets_met": {"first_render": ok_render, "new_trial": ok_shown},
    })
    print(f"saved {args.output}")
    return 0 if ok_render and ok_shown else 1


if __name__ == "__main__":
    raise SystemExit(main())
