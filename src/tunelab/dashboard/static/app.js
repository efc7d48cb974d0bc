/* tunelab dashboard: a dependency-free single-page front end (vanilla JS, no build step).
 *
 * Routes (hash router): #/ the studies, #/study/NAME a study, #/study/NAME/trial/N a trial.
 * Every API call carries `Authorization: Bearer T` when the page was opened with ?token=T.
 * Live updates poll the JSON API (paused while the tab is hidden); figures come from the server
 * as plotly JSON, except the trial and running curves, which are built here.
 *
 * Everything the API returns is stored text that anyone who can write the storage chose: it goes
 * into markup only through esc() (text and quoted attributes), or as textContent; plotly reads a
 * few HTML tags in its text (titles, legend names, hover text), so stored text given to plotly is
 * esc()'d too (plotly shows the entities as the characters).
 */
(function () {
  "use strict";

  const TOKEN = new URLSearchParams(window.location.search).get("token");
  const POLL_MS = 1000;
  const FIGURE_REFRESH_MS = 10000;
  const MAX_ROWS = 200;
  const RECENT_FIRST = 300; // trials read first on a large study's page, before all of them
  const GL_POINTS = 2000; // past this many points a figure draws them with WebGL (scattergl)
  const HISTORY_FIRST_MS = 1500; // how long all the trials wait for the first history to be drawn
  const PLOT_CONFIG = { responsive: true, displaylogo: false };
  const RUN_REFRESH_MS = 2000; // the run's tree, while a branch runs or the trials change
  const RUN_MAX_TRIALS = 2000; // past this many trials a study is not read as a run (one read of every trial)
  const SUGGEST_MS = 5000; // a running trial's suggestions, at most this often
  const RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  const STATES = ["RUNNING", "WAITING", "COMPLETE", "PRUNED", "FAIL"];
  const FIGURE_TABS = [
    { kind: "slice", label: "Slice", axes: ["x"] },
    { kind: "contour", label: "Contour", axes: ["x", "y"] },
    { kind: "parallel", label: "Parallel coordinates", axes: [] },
    { kind: "curves", label: "Learning curves", axes: [] },
    { kind: "importance", label: "Importance", axes: [] },
    { kind: "stages", label: "Stages", axes: [] },
    { kind: "lr_range", label: "LR range test", axes: [] },
  ];

  // ---------------------------------------------------------------- helpers

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || "HTTP " + status);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (TOKEN) opts.headers.Authorization = "Bearer " + TOKEN;
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    const response = await fetch("api/" + path, opts);
    let body = null;
    const text = await response.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (e) {
        body = text;
      }
    }
    if (!response.ok) {
      let detail = body && typeof body === "object" ? body.detail : body;
      if (Array.isArray(detail)) detail = validationText(detail);
      else if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
      throw new ApiError(response.status, detail || response.statusText);
    }
    return body;
  }

  /** A 422's validation errors in words ("note: String should have at most 10000 characters"), without the
   * input they echo (a 10,000-character note, a whole configuration). */
  function validationText(errors) {
    return errors.map(function (e) {
      if (!e || typeof e !== "object") return String(e);
      const loc = (Array.isArray(e.loc) ? e.loc : []).filter(function (part, i) {
        return !(i === 0 && (part === "body" || part === "query" || part === "path"));
      }).join(".");
      return (loc ? loc + ": " : "") + (e.msg || JSON.stringify(e));
    }).join("; ");
  }

  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, function (c) {
      // numeric entities for quotes: plotly (which reads esc()'d text too) knows no &quot;
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;" }[c];
    });
  }

  function fmtNumber(value) {
    if (value === null || value === undefined || value === "") return "";
    if (typeof value === "boolean") return String(value);
    if (typeof value !== "number") return String(value);
    if (!isFinite(value)) return String(value);
    if (Number.isInteger(value)) return String(value);
    const a = Math.abs(value);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(3);
    return String(Number(value.toPrecision(5)));
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " m " + Math.round(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " m";
  }

  function fmtDate(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function stateBadge(state) {
    return '<span class="state state-' + esc(state) + '">' + esc(state) + "</span>";
  }

  function statesLine(states) {
    const keys = Object.keys(states || {}).filter(function (k) { return states[k]; });
    keys.sort(function (a, b) { return STATES.indexOf(a) - STATES.indexOf(b); });
    return keys.map(function (k) {
      return '<span class="count" data-state="' + esc(k) + '">' + stateBadge(k) + " " + states[k] + "</span>";
    }).join(" ");
  }

  function studyHash(name) {
    return "#/study/" + encodeURIComponent(name);
  }

  function trialHash(name, number) {
    return studyHash(name) + "/trial/" + number;
  }

  function studyPath(name) {
    return "studies/" + encodeURIComponent(name);
  }

  /** A sampler's or pruner's description (a dict from the API) in one line. */
  function describe(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "object") return String(value);
    const name = value.name || value.type || value.class || value.kind;
    const rest = Object.keys(value).filter(function (k) {
      return ["name", "type", "class", "kind"].indexOf(k) < 0 && value[k] !== null && typeof value[k] !== "object";
    }).map(function (k) { return k + "=" + fmtNumber(value[k]); });
    if (!name) return JSON.stringify(value);
    return rest.length ? name + " (" + rest.join(", ") + ")" : String(name);
  }

  function pretty(value) {
    return '<pre class="json">' + esc(JSON.stringify(value, null, 2)) + "</pre>";
  }

  function errorBox(err) {
    return '<p class="error">' + esc(err && err.message ? err.message : err) + "</p>";
  }

  /** A hyperparameter's value as the page shows it. */
  function fmtParam(value) {
    return value === null || value === undefined ? "None" : fmtNumber(value);
  }

  /** "lr 0.1 → 0.05, wd = 0.01" (with `before`) or "lr = 0.05" (HTML, escaped). */
  function valuesText(values, before) {
    return Object.keys(values || {}).map(function (k) {
      const known = before && Object.prototype.hasOwnProperty.call(before, k);
      return "<code>" + esc(k) + "</code> " + (known ? esc(fmtParam(before[k])) + " &rarr; " : "= ") +
        esc(fmtParam(values[k]));
    }).join(", ");
  }

  /** A typed value from a form's text: a number, true/false, else the text itself; undefined when empty. */
  function parseValue(text) {
    const v = String(text).trim();
    if (v === "") return undefined;
    if (v === "true" || v === "false") return v === "true";
    const n = Number(v);
    return isFinite(n) ? n : v;
  }

  /** Rows of name/value inputs (a form's "changed values"). */
  function kvRow(name, value) {
    return '<div class="kv-row"><input type="text" class="kv-name" placeholder="name" value="' + esc(name) + '"> = ' +
      '<input type="text" class="kv-value" placeholder="value" value="' + esc(value) + '"> ' +
      '<button type="button" class="kv-remove" title="remove this row">&times;</button></div>';
  }

  /** The name -> value object of a container of kvRow()s (rows without a name or a value skipped). */
  function readRows(container) {
    const values = {};
    container.querySelectorAll(".kv-row").forEach(function (row) {
      const key = row.querySelector(".kv-name").value.trim();
      const v = parseValue(row.querySelector(".kv-value").value);
      if (key && v !== undefined) values[key] = v;
    });
    return values;
  }

  function wireRows(container, addButton) {
    container.addEventListener("click", function (ev) {
      const b = ev.target.closest("button.kv-remove");
      if (b) b.closest(".kv-row").remove();
    });
    container.addEventListener("input", function () { container.dataset.touched = "1"; });
    addButton.addEventListener("click", function () {
      container.insertAdjacentHTML("beforeend", kvRow("", ""));
      container.dataset.touched = "1";
    });
  }

  function plotlyReady() {
    return typeof window.Plotly !== "undefined";
  }

  // plotly.js is large (3.5 MB; evaluating it blocks the page for about a second): it is loaded once
  // the page's first view is drawn (a study page holds it back until its table rows and quick
  // history are on screen, see holdPlotly), and draws asked for before it is there wait for it.
  const pendingDraws = new Map(); // div -> [data, layout, [resolve of each waiting draw]]
  let plotlyListener = false;
  let plotlyRequested = false;
  let plotlyHeld = false;

  const plotlyWaiters = [];

  function loadPlotly() {
    if (plotlyRequested || plotlyReady()) return;
    plotlyRequested = true;
    const script = document.createElement("script");
    script.id = "plotly-js";
    script.src = "static/plotly.min.js";
    script.async = true;
    script.addEventListener("load", function () {
      if (!plotlyReady()) return;
      flushDraws();
      plotlyWaiters.splice(0).forEach(function (fn) { fn(); });
    });
    document.head.appendChild(script);
  }

  /** Call fn once plotly.js is there (now if it is). */
  function whenPlotly(fn) {
    if (plotlyReady()) fn();
    else plotlyWaiters.push(fn);
  }

  /** Hold plotly.js back until release() (or `ms` at most): the first view draws without it. */
  function holdPlotly(ms) {
    plotlyHeld = true;
    const timer = setTimeout(release, ms);
    function release() {
      clearTimeout(timer);
      if (!plotlyHeld) return;
      plotlyHeld = false;
      // after the browser has painted what is on screen now
      requestAnimationFrame(function () { setTimeout(loadPlotly, 0); });
    }
    return release;
  }

  function plot(div, data, layout) {
    div.querySelectorAll(":scope > canvas.quick-chart").forEach(function (c) { c.remove(); });
    return Promise.resolve(window.Plotly.react(div, data, layout, PLOT_CONFIG)).catch(function () {});
  }

  function flushDraws() {
    pendingDraws.forEach(function (args, div) {
      const done = div.isConnected ? plot(div, args[0], args[1]) : Promise.resolve();
      args[2].forEach(function (resolve) { done.then(resolve); });
    });
    pendingDraws.clear();
  }

  /**
   * Plotly.react, now or as soon as plotly.js has loaded (only the latest draw of a div is kept).
   * Returns a promise that resolves once the div is drawn (or its draw was dropped).
   */
  function react(div, data, layout) {
    if (!div) return Promise.resolve();
    const waiting = pendingDraws.get(div);
    if (plotlyReady()) {
      pendingDraws.delete(div);
      const done = plot(div, data, layout);
      if (waiting) waiting[2].forEach(function (resolve) { done.then(resolve); });
      return done;
    }
    const drawn = new Promise(function (resolve) {
      pendingDraws.set(div, [data, layout, (waiting ? waiting[2] : []).concat([resolve])]);
    });
    if (!plotlyHeld) loadPlotly();
    if (!plotlyListener) {
      plotlyListener = true;
      const check = function () {
        if (plotlyReady()) flushDraws();
        else setTimeout(check, 50);
      };
      setTimeout(check, 50);
    }
    return drawn;
  }

  /** A number for an axis label: few digits, no float noise. */
  function tickText(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e5 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
  }

  /** About `n` round tick values covering [lo, hi]. */
  function ticks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (f) { return f * mag; }).find(function (s) { return s >= raw; }) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  /**
   * A plain scatter of (xs, ys) with a step line (lineX, lineY) on a canvas: the first view of a
   * history figure, drawn at once, without plotly.js (which replaces it when it has loaded).
   */
  function canvasChart(div, xs, ys, lineX, lineY, title, xTitle, yTitle) {
    div.querySelectorAll(":scope > canvas.quick-chart").forEach(function (c) { c.remove(); });
    const width = Math.max(div.clientWidth, 300);
    const height = Math.max(div.clientHeight, 300);
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    canvas.className = "quick-chart";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", title);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const m = { l: 60, r: 10, t: 40, b: 40 };
    const w = width - m.l - m.r;
    const h = height - m.t - m.b;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] < x0) x0 = xs[i];
      if (xs[i] > x1) x1 = xs[i];
      if (ys[i] < y0) y0 = ys[i];
      if (ys[i] > y1) y1 = ys[i];
    }
    const padX = (x1 - x0) * 0.03 || 1;
    const padY = (y1 - y0) * 0.05 || Math.abs(y1) * 0.05 || 1;
    x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
    const px = function (x) { return m.l + (x - x0) / (x1 - x0) * w; };
    const py = function (y) { return m.t + (1 - (y - y0) / (y1 - y0)) * h; };
    ctx.font = "12px sans-serif";
    ctx.fillStyle = "#444";
    ctx.strokeStyle = "#e5e5e5";
    ctx.textAlign = "center";
    ticks(x0, x1, 6).forEach(function (t) {
      const x = px(t);
      ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, m.t + h); ctx.stroke();
      ctx.fillText(tickText(t), x, m.t + h + 15);
    });
    ctx.textAlign = "right";
    ticks(y0, y1, 5).forEach(function (t) {
      const y = py(t);
      ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(m.l + w, y); ctx.stroke();
      ctx.fillText(tickText(t), m.l - 6, y + 4);
    });
    ctx.textAlign = "center";
    ctx.fillText(xTitle, m.l + w / 2, height - 6);
    ctx.save();
    ctx.translate(14, m.t + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
    ctx.font = "15px sans-serif";
    ctx.textAlign = "left";
    ctx.fillText(title, m.l, 22);
    ctx.fillStyle = "rgba(31, 119, 180, 0.6)";
    const size = xs.length > GL_POINTS ? 3 : 5;
    for (let i = 0; i < xs.length; i++) ctx.fillRect(px(xs[i]) - size / 2, py(ys[i]) - size / 2, size, size);
    ctx.strokeStyle = "#d62728";
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let i = 0; i < lineX.length; i++) {
      if (i === 0) ctx.moveTo(px(lineX[i]), py(lineY[i]));
      else {
        ctx.lineTo(px(lineX[i]), py(lineY[i - 1]));
        ctx.lineTo(px(lineX[i]), py(lineY[i]));
      }
    }
    ctx.stroke();
    div.appendChild(canvas);
  }

  function draw(div, fig) {
    const layout = Object.assign({}, fig.layout || {});
    layout.autosize = true;
    react(div, fig.data || [], layout);
  }

  function purge(root) {
    if (!plotlyReady() || !root) return;
    root.querySelectorAll(".js-plotly-plot").forEach(function (div) { window.Plotly.purge(div); });
  }

  function setCrumbs(parts) {
    document.getElementById("breadcrumbs").innerHTML = parts.map(function (p) {
      return p.href ? '<a href="' + esc(p.href) + '">' + esc(p.label) + "</a>" : "<span>" + esc(p.label) + "</span>";
    }).join(' <span class="sep">/</span> ');
  }

  function setLive(text, ok) {
    const el = document.getElementById("live-status");
    el.textContent = text;
    el.className = ok ? "ok" : text ? "bad" : "";
  }

  /** A poller: runs `fn` every `ms` (after the previous run ended), skipped while the tab is hidden. */
  function poller(fn, ms) {
    let timer = null;
    let stopped = false;
    let running = false;
    async function tick() {
      timer = null;
      if (stopped) return;
      if (!document.hidden && !running) {
        running = true;
        try {
          await fn();
        } catch (err) {
          setLive("offline: " + (err && err.message ? err.message : err), false);
        } finally {
          running = false;
        }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    }
    function onVisible() {
      if (!document.hidden && !stopped && timer !== null && !running) {
        clearTimeout(timer);
        tick();
      }
    }
    document.addEventListener("visibilitychange", onVisible);
    timer = setTimeout(tick, ms);
    return {
      stop: function () {
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        document.removeEventListener("visibilitychange", onVisible);
      },
      now: function () {
        if (timer !== null && !running) {
          clearTimeout(timer);
          tick();
        }
      },
    };
  }

  // ---------------------------------------------------------------- router

  let current = null; // the mounted view: {destroy()}
  const studyCache = new Map();

  function route() {
    const app = document.getElementById("app");
    if (current && current.destroy) current.destroy();
    current = null;
    purge(app);
    const hash = window.location.hash || "#/";
    const parts = hash.replace(/^#\/?/, "").split("/").filter(function (p) { return p !== ""; });
    try {
      if (parts.length === 0) {
        current = studiesView(app);
      } else if (parts[0] === "study" && parts.length === 2) {
        current = studyView(app, decodeURIComponent(parts[1]));
      } else if (parts[0] === "study" && parts.length === 4 && parts[2] === "trial" && !/^[0-9]+$/.test(parts[3])) {
        // parseInt read "1e3" and "1.0" as trial 1: another trial than the address names
        const study = "#/study/" + parts[1];
        app.innerHTML = '<p class="error">The trial number <code>' + esc(decodeURIComponent(parts[3])) +
          '</code> in the address is not a plain decimal integer (digits 0-9 only, e.g. 12). <a href="' +
          esc(study) + '">Back to the study</a></p>';
      } else if (parts[0] === "study" && parts.length === 4 && parts[2] === "trial") {
        current = trialView(app, decodeURIComponent(parts[1]), Number(parts[3]));
      } else {
        app.innerHTML = '<p class="error">Unknown page <code>' + esc(hash) + '</code>. <a href="#/">Studies</a></p>';
      }
    } catch (err) {
      app.innerHTML = errorBox(err);
    }
    window.scrollTo(0, 0);
  }

  // ---------------------------------------------------------------- studies list

  function studiesView(app) {
    setCrumbs([{ label: "Studies" }]);
    document.title = "tunelab: studies";
    app.innerHTML =
      '<h1>Studies</h1><div id="studies-body"><p class="muted">Loading&hellip;</p></div>';
    const body = app.querySelector("#studies-body");
    let last = "";

    async function load() {
      const studies = await api("studies");
      setLive("live", true);
      const html = studies.length === 0
        ? '<p class="muted" id="no-studies">No studies in this storage yet.</p>'
        : '<table id="studies-table" class="grid"><thead><tr><th>Study</th><th>Direction</th><th>Trials</th>' +
          "<th>By state</th><th>Best value</th><th>Best trial</th></tr></thead><tbody>" +
          studies.map(function (s) {
            return '<tr data-study="' + esc(s.name) + '"><td><a class="study-link" href="' + esc(studyHash(s.name)) +
              '">' + esc(s.name) + "</a></td><td>" + esc((s.directions && s.directions.length > 1 ? s.directions : [s.direction]).join(", ")) +
              '</td><td class="num">' + esc(s.n_trials) + "</td><td>" + statesLine(s.states) + '</td><td class="num">' +
              esc(s.front_size === null || s.front_size === undefined ? fmtNumber(s.best_value) : "front: " + s.front_size) +
              '</td><td class="num">' + (s.best_number === null || s.best_number === undefined ? ""
                : '<a href="' + esc(trialHash(s.name, s.best_number)) + '">#' + esc(s.best_number) + "</a>") +
              "</td></tr>";
          }).join("") + "</tbody></table>";
      if (html !== last) {
        body.innerHTML = html;
        last = html;
      }
    }

    load().catch(function (err) { body.innerHTML = errorBox(err); });
    const poll = poller(load, 3000);
    return { destroy: poll.stop };
  }

  // ---------------------------------------------------------------- study page

  function compareValues(a, b) {
    const an = a === null || a === undefined || (typeof a === "number" && isNaN(a));
    const bn = b === null || b === undefined || (typeof b === "number" && isNaN(b));
    if (an || bn) return an && bn ? 0 : an ? 1 : -1; // missing values last
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
  }

  function studyView(app, name) {
    setCrumbs([{ label: "Studies", href: "#/" }, { label: name }]);
    document.title = "tunelab: " + name;
    app.innerHTML = '<p class="muted">Loading study&hellip;</p>';

    const st = {
      info: null,
      trials: new Map(), // number -> TrialSummary
      nextSince: 0,
      params: [],
      numericParams: [],
      sort: { key: "number", dir: -1 },
      states: new Set(),
      stateFilter: null, // Set of shown states, null = all
      ranges: {}, // param -> [min|null, max|null]
      rowCache: new Map(), // number -> {html, tr}
      dirty: true,
      lastChange: 0,
      figureLoaded: {}, // kind -> timestamp
      figureMs: {}, // kind -> how long its last load took
      historyMs: 0,
      complete: new Map(), // number -> value of the COMPLETE trials with a finite value (never change)
      infeasible: new Set(), // numbers of the trials whose summary says they break a constraint
      historyReady: false, // every trial's value is in `complete` (so the client history may be drawn)
      historyDrawn: null, // a promise: the client history's latest draw is done
      releasePlotly: holdPlotly(2500), // plotly.js loads once the rows and the quick history are drawn
      historyAt: 0,
      constraints: [], // the names of the constraints the trials recorded (a column each)
      pareto: { at: 0, ms: 0, loading: false }, // the Pareto front card (a study with several objectives)
      activeTab: null,
      curveMetric: null,
      run: { metric: null, at: 0, isRun: null, key: "", loading: false }, // the run card (branches, overlay)
      destroyed: false,
    };
    const pollers = [];
    let observer = null;

    function el(id) {
      return document.getElementById(id);
    }

    // ---- layout

    function renderShell() {
      const info = st.info; // from the studies list at first; the study's own record replaces it
      app.innerHTML =
        '<section id="study-header" class="card"><h1 id="study-name">' + esc(info.name) + "</h1>" +
        '<div class="meta" id="study-meta"></div>' +
        '<div class="stats"><div><span class="label">trials</span><span id="trial-count" class="big">0</span></div>' +
        '<div><span class="label">best value</span><span id="best-value" class="big">&ndash;</span>' +
        ' <span id="best-trial"></span></div><div id="state-counts"></div></div></section>' +
        '<section id="recipe" class="card" hidden></section>' +
        '<section class="card two-col"><div><h2>Best value over time</h2><div id="fig-history" class="fig"></div></div>' +
        '<div><h2>Running trials <select id="curve-metric" title="metric"></select></h2>' +
        '<div id="running-curves" class="fig"></div><p id="running-empty" class="muted">No running trials.</p></div>' +
        "</section>" +
        '<section id="pareto-card" class="card" hidden><h2>Pareto front <span id="pareto-summary" class="muted">' +
        '</span></h2><div class="two-col"><div><div id="fig-pareto" class="fig fig-large"></div>' +
        '<p class="panel-msg muted"></p></div><div><div id="fig-hypervolume" class="fig fig-large"></div>' +
        '<p class="panel-msg muted"></p></div></div><p id="pareto-front-list" class="muted"></p></section>' +
        '<section id="run-card" class="card" hidden></section>' +
        '<section class="card"><h2>Trials</h2><div id="filters"><div id="state-filter"></div>' +
        '<div id="range-filter"></div></div><p id="rows-info" class="muted"></p>' +
        '<div class="table-wrap"><table id="trials-table" class="grid"><thead></thead><tbody></tbody></table></div></section>' +
        '<section class="card" id="figures"><h2>Analysis</h2><div id="fig-tabs" class="tabs">' +
        FIGURE_TABS.map(function (t) {
          return '<button type="button" class="tab" data-kind="' + t.kind + '"' + (t.kind === "lr_range" ? " hidden" : "") +
            ">" + esc(t.label) + "</button>";
        }).join("") + '</div><div id="fig-panels">' +
        FIGURE_TABS.map(function (t) {
          const axes = t.axes.map(function (a) {
            return '<label>' + a + ' <select class="axis" data-axis="' + a + '"></select></label>';
          }).join(" ");
          return '<div class="panel" data-kind="' + t.kind + '" hidden>' + (axes ? '<div class="axes">' + axes + "</div>" : "") +
            (t.kind === "importance" ? '<div class="axes"><label id="importance-objective-label" hidden>objective ' +
              '<select id="importance-objective"></select></label></div><p id="importance-advice" class="advice"></p>' : "") +
            '<div id="fig-' + t.kind + '" class="fig fig-large"></div><p class="panel-msg muted"></p></div>';
        }).join("") + "</div></section>" +
        '<section class="card" id="enqueue-section" hidden></section>';
      renderMeta();
      wireTable();
      wireTabs();
    }

    function renderMeta() {
      const info = st.info;
      el("study-meta").innerHTML =
        (isMulti() ? '<span id="study-objectives">objectives <b>' + info.objective_names.map(function (n, i) {
          return esc(n) + " (" + esc(info.directions[i]) + ")";
        }).join(", ") + "</b></span>" : "<span>direction <b>" + esc(info.direction) + "</b></span>") +
        (info.sampler ? '<span>sampler <b id="study-sampler" title="' + esc(JSON.stringify(info.sampler)) + '">' +
          esc(describe(info.sampler)) + "</b></span>" : "") +
        (info.pruner ? '<span>pruner <b id="study-pruner" title="' + esc(JSON.stringify(info.pruner)) + '">' +
          esc(describe(info.pruner)) + "</b></span>" : "") +
        (info.seed !== null && info.seed !== undefined ? "<span>seed <b>" + esc(info.seed) + "</b></span>" : "") +
        (info.read_only === true && st.infoLoaded ? '<span class="tag" id="read-only-tag">read-only</span>' : "");
    }

    /** The study's own record arrived: sampler, recipe, read-only mode (the actions show only now). */
    function applyInfo(info) {
      st.info = info;
      st.infoLoaded = true;
      studyCache.set(name, info);
      renderMeta();
      renderRecipe();
      const lr = app.querySelector('#fig-tabs button[data-kind="lr_range"]');
      lr.hidden = !(info.recipe || []).some(function (r) { return r.step === "lr_range"; });
      let newParams = false;
      (info.params || []).forEach(function (p) {
        if (st.params.indexOf(p) < 0) {
          st.params.push(p);
          newParams = true;
        }
      });
      if (newParams || isMulti()) {
        renderHead();
        st.dirty = true;
        renderRows();
      }
      if (isMulti() && el("pareto-card").hidden) {
        el("pareto-card").hidden = false;
        const select = el("importance-objective");
        select.innerHTML = info.objective_names.map(function (n) {
          return '<option value="' + esc(n) + '">' + esc(n) + "</option>";
        }).join("");
        el("importance-objective-label").hidden = false;
        select.addEventListener("change", function () { loadPanel("importance"); });
        el("best-value").previousElementSibling.textContent = "best " + info.objective_names[0];
        loadPareto().catch(function () { /* retried on the next refresh */ });
      }
      const section = el("enqueue-section");
      if (!info.read_only && !el("enqueue-form")) {
        section.innerHTML = '<h2>Enqueue a configuration</h2><form id="enqueue-form">' +
          '<textarea id="enqueue-params" rows="6" spellcheck="false"></textarea>' +
          '<div><button type="submit">Enqueue</button> <span id="enqueue-result"></span></div></form>';
        section.hidden = false;
        wireEnqueue();
        updateHeader();
      }
    }

    function renderRecipe() {
      const box = el("recipe");
      const recipe = st.info.recipe;
      if (!recipe || recipe.length === 0) {
        box.hidden = true;
        return;
      }
      box.hidden = false;
      box.innerHTML = '<h2>Recipe</h2><table class="grid" id="recipe-table"><thead><tr><th>Step</th><th>Verdict</th>' +
        "<th>Message</th></tr></thead><tbody>" + recipe.map(function (r) {
          return '<tr data-step="' + esc(r.step) + '"><td>' + esc(r.step) + '</td><td><span class="verdict verdict-' +
            esc(r.verdict) + '">' + esc(r.verdict) + "</span></td><td>" + esc(r.message) + "</td></tr>";
        }).join("") + "</tbody></table>";
    }

    // ---- header counts and best

    function updateHeader() {
      if (st.partial) {
        const e = st.listEntry;
        el("trial-count").textContent = String(e.n_trials);
        el("state-counts").innerHTML = statesLine(e.states);
        el("best-value").textContent = e.best_value === null || e.best_value === undefined ? "–" : fmtNumber(e.best_value);
        el("best-trial").innerHTML = e.best_number === null || e.best_number === undefined ? ""
          : '(<a href="' + esc(trialHash(name, e.best_number)) + '">trial #' + e.best_number + "</a>)";
        return;
      }
      const counts = {};
      let best = null;
      const maximize = st.info.direction === "maximize";
      st.trials.forEach(function (t) {
        counts[t.state] = (counts[t.state] || 0) + 1;
        if (t.state === "COMPLETE" && typeof t.value === "number" && isFinite(t.value) && t.feasible !== false) {
          if (best === null || (maximize ? t.value > best.value : t.value < best.value)) best = t;
        }
      });
      el("trial-count").textContent = String(st.trials.size);
      el("state-counts").innerHTML = statesLine(counts);
      el("best-value").textContent = best ? fmtNumber(best.value) : "–";
      el("best-trial").innerHTML = best
        ? '(<a href="' + esc(trialHash(name, best.number)) + '">trial #' + best.number + "</a>)" : "";
      st.best = best;
      const ta = el("enqueue-params");
      if (ta && !ta.dataset.touched && best) ta.value = JSON.stringify(best.params || {}, null, 2);
    }

    // ---- trial table

    function columns() {
      const cols = [
        { key: "number", label: "#" },
        { key: "state", label: "State" },
        { key: "stage", label: "Stage" },
      ];
      if (isMulti()) {
        st.info.objective_names.forEach(function (n, i) {
          cols.push({ key: "obj:" + i, label: n + (st.info.directions[i] === "maximize" ? " (max)" : " (min)") });
        });
      } else {
        cols.push({ key: "value", label: "Value" });
      }
      st.constraints.forEach(function (c) { cols.push({ key: "con:" + c, label: c, constraint: c }); });
      st.params.forEach(function (p) { cols.push({ key: "param:" + p, label: p, param: p }); });
      cols.push({ key: "duration", label: "Duration" }, { key: "note", label: "Note" });
      return cols;
    }

    function isMulti() {
      return Array.isArray(st.info.objective_names) && st.info.objective_names.length > 1;
    }

    function cellValue(t, key) {
      if (key.indexOf("obj:") === 0) {
        const v = (t.values || [])[Number(key.slice(4))];
        return v === undefined ? null : v;
      }
      if (key.indexOf("con:") === 0) {
        const c = (t.constraints || {})[key.slice(4)];
        return c ? c.value : null;
      }
      if (key.indexOf("param:") === 0) {
        const params = t.params || {};
        const p = key.slice(6);
        return Object.prototype.hasOwnProperty.call(params, p) ? params[p] : null;
      }
      return t[key];
    }

    function rowHtml(t) {
      let html = '<td class="num"><a href="' + esc(trialHash(name, t.number)) + '">' + t.number + "</a></td><td>" +
        stateBadge(t.state) + "</td><td>" + esc(t.stage === null || t.stage === undefined ? "" : t.stage) + "</td>";
      if (isMulti()) {
        for (let i = 0; i < st.info.objective_names.length; i++) {
          const v = (t.values || [])[i];
          html += '<td class="num objective">' + esc(v === undefined ? "" : fmtNumber(v)) + "</td>";
        }
      } else {
        html += '<td class="num">' + esc(fmtNumber(t.value)) + "</td>";
      }
      for (let i = 0; i < st.constraints.length; i++) {
        const c = (t.constraints || {})[st.constraints[i]];
        const bounds = c ? [c.lower === null ? "" : "≥ " + fmtNumber(c.lower), c.upper === null ? "" : "≤ " +
          fmtNumber(c.upper)].filter(Boolean).join(", ") : "";
        html += '<td class="num constraint' + (c && c.violation > 0 ? ' infeasible" title="violated by ' +
          esc(fmtNumber(c.violation)) + " (" + esc(bounds) + ')"' : '" title="' + esc(bounds) + '"') + ">" +
          esc(c ? fmtNumber(c.value) : "") + "</td>";
      }
      const params = t.params || {};
      for (let i = 0; i < st.params.length; i++) {
        const v = params[st.params[i]];
        html += '<td class="num">' + esc(v === undefined ? "" : v === null ? "None" : fmtNumber(v)) + "</td>";
      }
      html += '<td class="num">' + esc(fmtDuration(t.duration)) + '</td><td class="note">' + esc(t.note || "") + "</td>";
      return html;
    }

    function renderHead() {
      const thead = el("trials-table").querySelector("thead");
      thead.innerHTML = "<tr>" + columns().map(function (c) {
        const arrow = st.sort.key === c.key ? (st.sort.dir > 0 ? " ▲" : " ▼") : "";
        return '<th data-key="' + esc(c.key) + '" class="sortable' + (arrow ? " sorted" : "") + '"' +
          (arrow ? ' data-dir="' + (st.sort.dir > 0 ? "asc" : "desc") + '"' : "") + ">" + esc(c.label) + arrow + "</th>";
      }).join("") + "</tr>";
    }

    function renderFilters() {
      const sf = el("state-filter");
      const states = STATES.filter(function (s) { return st.states.has(s); });
      st.states.forEach(function (s) { if (states.indexOf(s) < 0) states.push(s); });
      const known = Array.prototype.map.call(sf.querySelectorAll("input"), function (i) { return i.value; });
      if (known.join() !== states.join()) {
        sf.innerHTML = '<span class="label">state</span> ' + states.map(function (s) {
          const checked = st.stateFilter === null || st.stateFilter.has(s);
          return '<label><input type="checkbox" class="state-filter" value="' + esc(s) + '"' +
            (checked ? " checked" : "") + "> " + esc(s) + "</label>";
        }).join(" ");
      }
      const rf = el("range-filter");
      const shown = Array.prototype.map.call(rf.querySelectorAll(".range"), function (d) { return d.dataset.param; });
      if (shown.join() !== st.numericParams.join()) {
        rf.innerHTML = st.numericParams.map(function (p) {
          const r = st.ranges[p] || [null, null];
          return '<span class="range" data-param="' + esc(p) + '"><span class="label">' + esc(p) + "</span> " +
            '<input type="number" step="any" class="range-min" placeholder="min" data-param="' + esc(p) + '" value="' +
            esc(r[0] === null ? "" : r[0]) + '"> – <input type="number" step="any" class="range-max" placeholder="max"' +
            ' data-param="' + esc(p) + '" value="' + esc(r[1] === null ? "" : r[1]) + '"></span>';
        }).join("");
      }
    }

    function visibleTrials() {
      const out = [];
      const rangeKeys = Object.keys(st.ranges).filter(function (p) {
        const r = st.ranges[p];
        return r && (r[0] !== null || r[1] !== null);
      });
      st.trials.forEach(function (t) {
        if (st.stateFilter !== null && !st.stateFilter.has(t.state)) return;
        for (let i = 0; i < rangeKeys.length; i++) {
          const r = st.ranges[rangeKeys[i]];
          const v = (t.params || {})[rangeKeys[i]];
          if (typeof v !== "number") return;
          if (r[0] !== null && v < r[0]) return;
          if (r[1] !== null && v > r[1]) return;
        }
        out.push(t);
      });
      const key = st.sort.key;
      const dir = st.sort.dir;
      out.sort(function (a, b) {
        const c = compareValues(cellValue(a, key), cellValue(b, key));
        if (c !== 0) {
          // missing values stay last whatever the direction
          const am = cellValue(a, key);
          const bm = cellValue(b, key);
          if (am === null || am === undefined || bm === null || bm === undefined) return c;
          return c * dir;
        }
        return (a.number - b.number) * dir;
      });
      return out;
    }

    function renderRows() {
      if (!st.dirty) return;
      st.dirty = false;
      const rows = visibleTrials();
      const shown = rows.slice(0, MAX_ROWS);
      const tbody = el("trials-table").querySelector("tbody");
      const nodes = [];
      const keep = new Map();
      for (let i = 0; i < shown.length; i++) {
        const t = shown[i];
        const html = rowHtml(t);
        let cached = st.rowCache.get(t.number);
        if (!cached || cached.html !== html) {
          const tr = cached ? cached.tr : document.createElement("tr");
          tr.dataset.number = String(t.number);
          tr.dataset.state = t.state;
          tr.innerHTML = html;
          cached = { html: html, tr: tr };
        }
        keep.set(t.number, cached);
        nodes.push(cached.tr);
      }
      st.rowCache = keep;
      const children = tbody.children;
      let same = children.length === nodes.length;
      for (let i = 0; same && i < nodes.length; i++) same = children[i] === nodes[i];
      if (!same) tbody.replaceChildren.apply(tbody, nodes);
      el("rows-info").innerHTML = '<span id="rows-shown">' + shown.length + "</span> shown of " +
        '<span id="rows-matching">' + rows.length + "</span> matching (" + st.trials.size + " trials)" +
        (rows.length > shown.length ? " &mdash; showing the first " + MAX_ROWS + "; sort or filter to see others" : "") +
        (st.partial ? ' <span id="loading-all">&mdash; loading all ' + st.listEntry.n_trials + " trials&hellip;</span>" : "");
    }

    function wireTable() {
      const table = el("trials-table");
      table.querySelector("thead").addEventListener("click", function (ev) {
        const th = ev.target.closest("th[data-key]");
        if (!th) return;
        const key = th.dataset.key;
        if (st.sort.key === key) st.sort.dir = -st.sort.dir;
        else st.sort = { key: key, dir: key === "number" ? -1 : 1 };
        renderHead();
        st.dirty = true;
        renderRows();
      });
      el("state-filter").addEventListener("change", function () {
        const checked = Array.prototype.filter.call(
          el("state-filter").querySelectorAll("input.state-filter"), function (i) { return i.checked; })
          .map(function (i) { return i.value; });
        st.stateFilter = checked.length === st.states.size ? null : new Set(checked);
        st.dirty = true;
        renderRows();
      });
      el("range-filter").addEventListener("input", function (ev) {
        const input = ev.target;
        if (!input.dataset || !input.dataset.param) return;
        const p = input.dataset.param;
        const r = st.ranges[p] || [null, null];
        const v = input.value === "" ? null : Number(input.value);
        r[input.classList.contains("range-min") ? 0 : 1] = v === null || isNaN(v) ? null : v;
        st.ranges[p] = r;
        st.dirty = true;
        renderRows();
      });
    }

    // ---- merging polled trials

    function merge(trials) {
      let changed = false;
      let newParams = false;
      const cols = { numbers: [], states: [], values: [], infeasible: [] }; // the changed trials, for the history
      for (let i = 0; i < trials.length; i++) {
        const t = trials[i];
        const old = st.trials.get(t.number);
        if (old && JSON.stringify(old) === JSON.stringify(t)) continue;
        st.trials.set(t.number, t);
        changed = true;
        cols.numbers.push(t.number);
        cols.states.push(t.state);
        cols.values.push(t.value);
        if (t.feasible === false) cols.infeasible.push(t.number); // (/values does not say: known from here)
        if (!st.states.has(t.state)) st.states.add(t.state);
        const params = t.params || {};
        for (const p in params) {
          if (st.params.indexOf(p) < 0) {
            st.params.push(p);
            newParams = true;
          }
        }
        for (const c in t.constraints || {}) {
          if (st.constraints.indexOf(c) < 0) {
            st.constraints.push(c);
            newParams = true;
          }
        }
      }
      if (newParams || st.numericParams.length === 0) {
        st.numericParams = st.params.filter(function (p) {
          let sawNumber = false;
          for (const t of st.trials.values()) {
            const v = (t.params || {})[p];
            if (v === undefined || v === null) continue;
            if (typeof v !== "number") return false;
            sawNumber = true;
          }
          return sawNumber;
        });
        renderHead();
      }
      if (changed) {
        st.dirty = true;
        st.lastChange = Date.now();
      }
      quickHistory(cols);
      return changed;
    }

    async function pollTrials() {
      const res = await api(studyPath(name) + "/trials?since=" + st.nextSince);
      if (st.destroyed) return;
      st.nextSince = res.next_since;
      const changed = merge(res.trials || []);
      setLive("live", true);
      if (changed) {
        updateHeader();
        renderFilters();
        renderRows();
      }
      refreshFigures(false);
      refreshTree(changed);
    }

    // ---- figures

    function isActive() {
      for (const t of st.trials.values()) if (t.state === "RUNNING" || t.state === "WAITING") return true;
      return false;
    }

    async function loadFigure(kind, div, msg, query) {
      try {
        const fig = await api(studyPath(name) + "/figures/" + kind + (query || ""));
        if (st.destroyed) return false;
        if (msg) msg.textContent = "";
        div.hidden = false;
        draw(div, fig);
        div.dataset.source = "server";
        return true;
      } catch (err) {
        if (st.destroyed) return false;
        if (err.status === 404 || err.status === 400) {
          pendingDraws.delete(div);
          if (div.classList.contains("js-plotly-plot") && plotlyReady()) window.Plotly.purge(div);
          div.hidden = true;
          if (msg) msg.textContent = err.status === 404 ? "Not applicable to this study" +
            (err.detail && err.detail !== "Not Found" ? ": " + err.detail : ".") : err.detail;
          return false;
        }
        throw err;
      }
    }

    /**
     * The history drawn here, until the server's figure replaces it: every COMPLETE trial's value and
     * the best-so-far line against the trial number. `cols` are compact columns ({numbers, states,
     * values}: the /values answer, or the trials just merged); their COMPLETE values join the ones in
     * hand (finished trials never change), and the figure is redrawn when that changed something.
     * Trials whose summary says they break a constraint (`cols.infeasible`, from the merged trials)
     * leave it: an infeasible trial is never the best. Nothing is drawn before every trial's value is
     * in hand (st.historyReady).
     */
    function quickHistory(cols, force) {
      const numbers = cols.numbers || [];
      const states = cols.states || [];
      const values = cols.values || [];
      let changed = false;
      for (const n of cols.infeasible || []) {
        st.infeasible.add(n);
        if (st.complete.delete(n)) changed = true;
      }
      for (let i = 0; i < numbers.length; i++) {
        const v = values[i];
        if (states[i] !== "COMPLETE" || typeof v !== "number" || !isFinite(v)) continue;
        if (st.infeasible.has(numbers[i])) continue;
        if (st.complete.get(numbers[i]) !== v) {
          st.complete.set(numbers[i], v);
          changed = true;
        }
      }
      const div = el("fig-history");
      if (!div || !st.historyReady || !st.complete.size || div.dataset.source === "server") return;
      if (!changed && !force && div.dataset.source === "client") return;
      const maximize = st.info.direction === "maximize";
      const xs = Array.from(st.complete.keys()).sort(function (a, b) { return a - b; });
      const ys = xs.map(function (n) { return st.complete.get(n); });
      const bestX = [];
      const bestY = [];
      let best = null;
      for (let i = 0; i < xs.length; i++) {
        if (best === null || (maximize ? ys[i] > best : ys[i] < best)) {
          best = ys[i];
          bestX.push(xs[i]);
          bestY.push(best);
        }
      }
      bestX.push(xs[xs.length - 1]);
      bestY.push(best);
      const many = xs.length > GL_POINTS;
      div.hidden = false;
      const msg = div.nextElementSibling;
      if (msg && msg.classList.contains("panel-msg")) msg.textContent = "";
      const title = "Best value over time: " + name + " (" + st.info.direction + ")";
      if (!plotlyReady()) { // the first view: on a canvas now, plotly's figure when plotly.js is there
        canvasChart(div, xs, ys, bestX, bestY, title, "trial number", "best value");
        div.dataset.source = "client";
        st.historyDrawn = Promise.resolve();
        whenPlotly(function () { // then the interactive figure (hover, zoom)
          if (!st.destroyed && div.dataset.source === "client") quickHistory({}, true);
        });
        return;
      }
      st.historyDrawn = react(div, [
        { type: many ? "scattergl" : "scatter", mode: "markers", name: "trial", x: xs, y: ys,
          marker: { color: "#1f77b4", size: many ? 5 : 7, opacity: many ? 0.6 : 0.85 } },
        { type: "scatter", mode: "lines", line: { shape: "hv", color: "#d62728", width: 2 },
          name: "best so far", x: bestX, y: bestY },
      ], {
        title: { text: esc(title) }, autosize: true,
        margin: { l: 60, r: 10, t: 50, b: 40 }, xaxis: { title: { text: "trial number" } },
        yaxis: { title: { text: "best value" } }, showlegend: false, hovermode: "closest",
      });
      div.dataset.source = "client";
    }

    async function loadHistory() {
      const start = Date.now();
      st.historyAt = start;
      const div = el("fig-history");
      let msg = div.nextElementSibling && div.nextElementSibling.classList.contains("panel-msg")
        ? div.nextElementSibling : null;
      if (!msg) {
        msg = document.createElement("p");
        msg.className = "panel-msg muted";
        div.after(msg);
      }
      try {
        await loadFigure("history", div, msg, "");
      } finally {
        st.historyMs = Date.now() - start;
      }
    }

    function axisQuery(panel) {
      const parts = [];
      panel.querySelectorAll("select.axis").forEach(function (s) {
        if (s.value) parts.push(encodeURIComponent(s.dataset.axis) + "=" + encodeURIComponent(s.value));
      });
      return parts.length ? "?" + parts.join("&") : "";
    }

    async function loadPanel(kind) {
      const panel = app.querySelector('.panel[data-kind="' + kind + '"]');
      if (!panel) return;
      const start = Date.now();
      st.figureLoaded[kind] = start;
      const msg = panel.querySelector(".panel-msg");
      const div = el("fig-" + kind);
      // fill the axis selectors (params) once; the slice's first choice is every parameter (value "")
      const all = kind === "slice" ? [""] : [];
      panel.querySelectorAll("select.axis").forEach(function (s, i) {
        if (s.options.length !== all.length + st.params.length && st.params.length) {
          const prev = s.value;
          s.innerHTML = all.concat(st.params).map(function (p) {
            return '<option value="' + esc(p) + '">' + (p === "" ? "all parameters" : esc(p)) + "</option>";
          }).join("");
          s.value = st.params.indexOf(prev) >= 0 ? prev : all.length ? "" : st.params[Math.min(i, st.params.length - 1)];
        }
      });
      if (!panel.querySelector(".fig").childElementCount) msg.textContent = "Loading…";
      try {
        const objective = kind === "importance" && isMulti()
          ? "objective=" + encodeURIComponent(el("importance-objective").value || st.info.objective_names[0]) : "";
        const query = axisQuery(panel);
        await loadFigure(kind, div, msg, objective ? (query ? query + "&" : "?") + objective : query);
        if (kind === "importance") {
          const advice = el("importance-advice");
          try {
            const imp = await api(studyPath(name) + "/importance" + (objective ? "?" + objective : ""));
            advice.textContent = imp.advice || "";
          } catch (err) {
            advice.textContent = err.detail || err.message;
          }
        }
      } catch (err) {
        msg.textContent = err.message;
      }
      st.figureMs[kind] = Date.now() - start;
    }

    function wireTabs() {
      const tabs = el("fig-tabs");
      tabs.addEventListener("click", function (ev) {
        const b = ev.target.closest("button.tab");
        if (!b) return;
        const kind = b.dataset.kind;
        const wasActive = st.activeTab === kind;
        st.activeTab = wasActive ? null : kind;
        tabs.querySelectorAll("button.tab").forEach(function (x) { x.classList.toggle("active", x.dataset.kind === st.activeTab); });
        app.querySelectorAll(".panel").forEach(function (p) { p.hidden = p.dataset.kind !== st.activeTab; });
        if (!wasActive) loadPanel(kind);
      });
      el("fig-panels").addEventListener("change", function (ev) {
        const s = ev.target.closest("select.axis");
        if (s) loadPanel(s.closest(".panel").dataset.kind);
      });
    }

    /** A study with several objectives: the front, the hypervolume over trials, and the front's trials. */
    async function loadPareto() {
      const start = Date.now();
      st.pareto.at = start;
      st.pareto.loading = true;
      try {
        const front = await api(studyPath(name) + "/pareto");
        if (st.destroyed) return;
        el("pareto-summary").textContent = "(" + front.front.length + " trial" + (front.front.length === 1 ? "" : "s") +
          (front.hypervolume === null ? "" : ", hypervolume " + fmtNumber(front.hypervolume)) +
          (front.n_infeasible ? ", " + front.n_infeasible + " infeasible" : "") + ")";
        el("pareto-front-list").innerHTML = front.front.length ? "On the front: " + front.front.map(function (t) {
          return '<a href="' + esc(trialHash(name, t.number)) + '">#' + t.number + "</a>";
        }).join(" ") : "No feasible COMPLETE trial yet: no front.";
        for (const kind of ["pareto", "hypervolume"]) {
          const div = el("fig-" + kind);
          await loadFigure(kind, div, div.nextElementSibling, "");
          if (st.destroyed) return;
        }
      } finally {
        st.pareto.loading = false;
        st.pareto.ms = Date.now() - start;
      }
    }

    /** How long to wait between refreshes of a figure that took `ms` to load: ~10 s, more for slow ones. */
    function refreshEvery(ms) {
      return Math.max(FIGURE_REFRESH_MS, 15 * (ms || 0));
    }

    /** Refresh the history and the open panel, at most every ~10 s, only while something changes. */
    function refreshFigures(force) {
      const now = Date.now();
      const stale = force || (st.lastChange > st.historyAt && now - st.historyAt >= refreshEvery(st.historyMs));
      if (stale) loadHistory().catch(function () { /* shown in the panel on the next try */ });
      if (isMulti() && !st.pareto.loading && (force || (st.lastChange > st.pareto.at &&
          now - st.pareto.at >= refreshEvery(st.pareto.ms)))) {
        loadPareto().catch(function () { /* retried on the next refresh */ });
      }
      const kind = st.activeTab;
      if (kind && st.lastChange > (st.figureLoaded[kind] || 0) &&
          now - (st.figureLoaded[kind] || 0) >= refreshEvery(st.figureMs[kind])) {
        loadPanel(kind);
      }
    }

    // ---- running curves

    function pickMetric(curves) {
      const metrics = new Set();
      for (const n in curves) for (const m in curves[n]) metrics.add(m);
      const list = Array.from(metrics).sort();
      const select = el("curve-metric");
      if (Array.from(select.options).map(function (o) { return o.value; }).join() !== list.join()) {
        select.innerHTML = list.map(function (m) { return '<option value="' + esc(m) + '">' + esc(m) + "</option>"; }).join("");
      }
      if (!st.curveMetric || list.indexOf(st.curveMetric) < 0) {
        st.curveMetric = list.find(function (m) { return /^val/.test(m); }) || list.find(function (m) { return /val/.test(m); }) || list[0] || null;
      }
      if (st.curveMetric) select.value = st.curveMetric;
      select.hidden = list.length === 0;
      return st.curveMetric;
    }

    let lastCurvesKey = "";
    async function pollRunningCurves() {
      const running = [];
      st.trials.forEach(function (t) { if (t.state === "RUNNING") running.push(t.number); });
      running.sort(function (a, b) { return a - b; });
      const div = el("running-curves");
      const empty = el("running-empty");
      if (running.length === 0) {
        empty.hidden = false;
        return;
      }
      const shown = running.slice(-20);
      const res = await api(studyPath(name) + "/curves?numbers=" + shown.join(","));
      if (st.destroyed) return;
      const curves = res.curves || {};
      const metric = pickMetric(curves);
      const data = [];
      shown.forEach(function (n) {
        const c = curves[String(n)];
        if (!c || !metric || !c[metric]) return;
        data.push({ type: "scatter", mode: "lines+markers", name: "#" + n, x: c[metric].steps, y: c[metric].values,
          marker: { size: 4 } });
      });
      const key = JSON.stringify(data);
      empty.hidden = data.length > 0;
      empty.textContent = data.length ? "" : "Running trials have not reported yet.";
      if (key === lastCurvesKey) return;
      lastCurvesKey = key;
      react(div, data, {
        margin: { l: 50, r: 10, t: 10, b: 40 }, height: 300, autosize: true,
        xaxis: { title: { text: "step" } }, yaxis: { title: { text: esc(metric || "") } },
        legend: { orientation: "h" }, uirevision: "running",
      });
    }

    // ---- the run: its tree of branches and their curves overlaid

    /** Read the run's tree (every branch and one metric's curves, in one answer) and draw it. */
    async function loadTree() {
      if (st.run.loading || st.destroyed || (st.listEntry && st.listEntry.n_trials > RUN_MAX_TRIALS)) return;
      st.run.loading = true;
      st.run.at = Date.now();
      try {
        const query = st.run.metric ? "?metric=" + encodeURIComponent(st.run.metric) : "";
        const tree = await api(studyPath(name) + "/tree" + query);
        if (st.destroyed) return;
        st.run.isRun = tree.is_run;
        renderRun(tree);
      } catch (err) {
        if (err.status === 404 && st.run.metric) st.run.metric = null; // no branch reports it any more
        else throw err;
      } finally {
        st.run.loading = false;
      }
    }

    /** From the trials poll: a run's tree while a branch runs or a trial changed; else a check now and then. */
    function refreshTree(changed) {
      const every = st.run.isRun ? RUN_REFRESH_MS : FIGURE_REFRESH_MS;
      if (st.run.at === 0 || !(changed || isActive()) || Date.now() - st.run.at < every) return;
      loadTree().catch(function () { /* retried on the next poll */ });
    }

    function branchHtml(b, byNumber) {
      if (!b) return "";
      const head = ['<a class="branch-link" href="' + esc(trialHash(name, b.number)) + '">#' + b.number + "</a>",
        stateBadge(b.state)];
      if (b.stop_requested) head.push('<span class="tag">stop requested</span>');
      if (b.parent !== null) {
        head.push('<span class="branch-fork">' + esc(b.kind || "branch") + " from #" + b.parent + " at step " +
          esc(b.step) + (Object.keys(b.set).length ? ": " + valuesText(b.set) : "") + "</span>");
      } else if (b.kind) {
        head.push('<span class="branch-fork">' + esc(b.kind) + "</span>");
      }
      head.push('<span class="muted">' + (b.first_step === null ? "no steps yet"
        : "steps " + esc(b.first_step) + "&ndash;" + esc(b.last_step)) + "</span>");
      const last = b.curve.values.length ? b.curve.values[b.curve.values.length - 1] : null;
      if (last !== null && last !== undefined) head.push('<span class="label">last</span>' + esc(fmtNumber(last)));
      if (b.value !== null) head.push('<span class="label">value</span><b>' + esc(fmtNumber(b.value)) + "</b>");
      if (b.note) head.push('<span class="muted">note: ' + esc(b.note) + "</span>");
      const events = b.changes.map(function (c) {
        return '<li class="change" data-step="' + esc(c.step) + '">' + esc(c.when) + ": " +
          valuesText(c.values, c.before) + (c.sources.length ? ' <span class="muted">(' + esc(c.sources.join(", ")) +
          ")</span>" : "") + (c.notes.length ? ' <span class="muted">note: ' + esc(c.notes.join("; ")) + "</span>" : "") +
          "</li>";
      }).concat(b.pending.map(function (r) {
        const ended = b.state !== "RUNNING" && b.state !== "WAITING";
        return '<li class="pending" data-index="' + r.index + '">' + (ended ? "not applied: " : "pending: ") +
          valuesText(r.values) + ' <span class="muted">(' + esc(r.source || "") + "), " +
          (ended ? "never applied: the trial ended first" : "applies at the next step") + "</span>" +
          (r.note ? ' <span class="muted">note: ' + esc(r.note) + "</span>" : "") + "</li>";
      }));
      events.push('<li class="checkpoints">checkpoints: ' + (b.checkpoints.length ? esc(b.checkpoints.join(", "))
        : b.state === "RUNNING" || b.state === "WAITING" ? "none yet" : "none kept") + "</li>");
      const kids = b.children.map(function (n) { return branchHtml(byNumber.get(n), byNumber); }).join("");
      return '<li class="branch" data-number="' + b.number + '" data-state="' + esc(b.state) + '">' +
        '<div class="branch-head">' + head.join(" ") + '</div><ul class="branch-events">' + events.join("") + "</ul>" +
        (kids ? '<ul class="run-tree children">' + kids + "</ul>" : "") + "</li>";
    }

    function renderRun(tree) {
      const card = el("run-card");
      if (!card) return;
      if (!tree.is_run) {
        card.hidden = true;
        return;
      }
      const key = JSON.stringify(tree);
      if (key === st.run.key) return;
      st.run.key = key;
      if (!el("run-tree")) {
        card.innerHTML = '<h2>Run <select id="run-metric" title="metric"></select></h2><div class="two-col">' +
          '<div id="run-tree"></div><div><div id="run-plot" class="fig fig-large"></div></div></div>';
        el("run-metric").addEventListener("change", function (ev) {
          st.run.metric = ev.target.value;
          loadTree().catch(function (err) { setLive("run: " + err.message, false); });
        });
      }
      card.hidden = false;
      const metrics = tree.metrics.slice();
      if (tree.metric && metrics.indexOf(tree.metric) < 0) metrics.push(tree.metric);
      const select = el("run-metric");
      if (Array.from(select.options).map(function (o) { return o.value; }).join() !== metrics.join()) {
        select.innerHTML = metrics.map(function (m) { return '<option value="' + esc(m) + '">' + esc(m) + "</option>"; }).join("");
      }
      select.value = tree.metric || "";
      const byNumber = new Map(tree.branches.map(function (b) { return [b.number, b]; }));
      el("run-tree").innerHTML = '<ul class="run-tree">' +
        tree.roots.map(function (n) { return branchHtml(byNumber.get(n), byNumber); }).join("") + "</ul>";
      drawRun(tree, byNumber);
    }

    /** Every branch's curve from its fork point on, the fork points, and a dotted line at each live change. */
    function drawRun(tree, byNumber) {
      const data = [];
      const shapes = [];
      const annotations = [];
      const fork = { x: [], y: [], text: [] };
      const marks = { x: [], y: [], text: [] };
      const nChanges = tree.branches.reduce(function (n, b) { return n + b.changes.length; }, 0);
      tree.branches.forEach(function (b, i) {
        const color = RUN_COLORS[i % RUN_COLORS.length];
        const xs = b.curve.steps.slice();
        const ys = b.curve.values.slice();
        const parent = b.parent === null ? null : byNumber.get(b.parent);
        if (parent && b.step !== null) {
          const j = parent.curve.steps.indexOf(b.step);
          if (j >= 0) {
            if (xs[0] !== b.step) {
              xs.unshift(b.step);
              ys.unshift(parent.curve.values[j]);
            }
            fork.x.push(b.step);
            fork.y.push(parent.curve.values[j]);
            fork.text.push("#" + b.number + " forks from #" + b.parent + " at step " + b.step);
          }
        }
        if (xs.length) {
          data.push({ type: "scatter", mode: "lines", name: "#" + b.number, x: xs, y: ys,
            line: { color: color, width: 2 } });
        }
        b.changes.forEach(function (c) {
          const x = c.curve_step !== null ? c.curve_step : c.step;
          if (x === null) return;
          const text = Object.keys(c.values).map(function (k) { return k + " " + fmtParam(c.before[k]) + " → " + fmtParam(c.values[k]); }).join(", ");
          shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
            line: { color: color, width: 1, dash: "dot" } });
          if (nChanges <= 12) {
            annotations.push({ x: x, y: 1, xref: "x", yref: "paper", yanchor: "bottom", showarrow: false,
              text: esc("#" + b.number + " " + text), font: { size: 10, color: color } });
          }
          let k = b.curve.steps.findIndex(function (s) { return s >= x; });
          if (k < 0) k = b.curve.steps.length - 1;
          if (k >= 0 && b.curve.values[k] !== null) {
            marks.x.push(x);
            marks.y.push(b.curve.values[k]);
            marks.text.push(esc("#" + b.number + " " + c.when + ": " + text +
              (c.sources.length ? " (" + c.sources.join(", ") + ")" : "")));
          }
        });
      });
      if (fork.x.length) {
        data.push({ type: "scatter", mode: "markers", name: "fork points", x: fork.x, y: fork.y, text: fork.text,
          hoverinfo: "text", marker: { symbol: "diamond", size: 10, color: "#1d2330", line: { color: "#fff", width: 1 } } });
      }
      if (marks.x.length) {
        data.push({ type: "scatter", mode: "markers", name: "live changes", x: marks.x, y: marks.y, text: marks.text,
          hoverinfo: "text", marker: { symbol: "triangle-down", size: 10, color: "#b26a00" } });
      }
      react(el("run-plot"), data, {
        margin: { l: 55, r: 10, t: 40, b: 60 }, height: 420, autosize: true, hovermode: "closest",
        xaxis: { title: { text: "step" } }, yaxis: { title: { text: esc(tree.metric || "") } },
        legend: { orientation: "h", y: -0.2 }, shapes: shapes, annotations: annotations, uirevision: "run",
      });
    }

    // ---- enqueue

    function wireEnqueue() {
      const form = el("enqueue-form");
      const ta = el("enqueue-params");
      ta.addEventListener("input", function () { ta.dataset.touched = "1"; });
      form.addEventListener("submit", async function (ev) {
        ev.preventDefault();
        const out = el("enqueue-result");
        let params;
        try {
          params = JSON.parse(ta.value || "{}");
          if (params === null || typeof params !== "object" || Array.isArray(params)) throw new Error("an object of params");
        } catch (err) {
          out.className = "error";
          out.textContent = "Invalid JSON: " + err.message;
          return;
        }
        try {
          const res = await api(studyPath(name) + "/enqueue", { json: { params: params } });
          out.className = "ok";
          out.innerHTML = 'Enqueued as <a href="' + esc(trialHash(name, res.number)) + '">trial #' + esc(res.number) + "</a>";
          trialsPoll.now();
        } catch (err) {
          out.className = "error";
          out.textContent = err.message;
        }
      });
    }

    // ---- start

    let trialsPoll = { now: function () {} };
    (async function start() {
      try {
        // 1. the studies list (cheap): direction and trial count; 2. every trial's number, state and
        // value (compact: ~20 bytes a trial), from which the history is drawn at once; 3. the newest
        // trials, enough for the first screen (the table shows the newest first); 4. all trials;
        // 5. the server's history figure and the study's record.
        const list = await api("studies");
        if (st.destroyed) return;
        const entry = list.find(function (s) { return s.name === name; });
        if (!entry) {
          applyInfo(await api(studyPath(name))); // the API's 404 says what is wrong
          return;
        }
        st.listEntry = entry;
        st.info = { name: name, direction: entry.direction, read_only: true, recipe: null, params: [] };
        renderShell();
        // the two small requests at once; the large one (every trial) once they are shown
        const valuesP = api(studyPath(name) + "/values?since=0");
        const recentP = entry.n_trials > RECENT_FIRST
          ? api(studyPath(name) + "/trials?since=" + (entry.n_trials - RECENT_FIRST)) : null;
        if (recentP) recentP.catch(function () { /* reported below when awaited */ });
        try {
          const values = await valuesP;
          if (st.destroyed) return;
          st.historyReady = true;
          quickHistory(values);
        } catch (err) {
          // drawn from the full trial list below instead
        }
        if (recentP) {
          const recent = await recentP;
          if (st.destroyed) return;
          st.partial = true;
          merge(recent.trials || []);
          renderHead();
          updateHeader();
          renderFilters();
          renderRows();
        }
        st.releasePlotly(); // the first view is on screen: now the 3.5 MB of plotly.js
        if (st.historyDrawn) {
          // on a small machine the server's answer and the browser's drawing compete for the cores
          await Promise.race([st.historyDrawn, new Promise(function (r) { setTimeout(r, HISTORY_FIRST_MS); })]);
          if (st.destroyed) return;
        }
        const res = await api(studyPath(name) + "/trials?since=0");
        if (st.destroyed) return;
        st.partial = false;
        st.nextSince = res.next_since;
        st.historyReady = true; // (when /values failed: drawn from every trial now)
        merge(res.trials || []);
        st.dirty = true;
        renderHead();
        updateHeader();
        renderFilters();
        renderRows();
        // one request at a time: the server answers each sooner than two at once
        loadHistory().catch(function () { /* retried on the next refresh */ }).then(function () {
          return st.destroyed ? null : api(studyPath(name));
        }).then(function (info) {
          if (info && !st.destroyed) applyInfo(info);
        }).catch(function (err) { setLive("study record: " + err.message, false); }).then(function () {
          return loadTree();
        }).catch(function (err) { setLive("run: " + err.message, false); });
        setLive("live", true);
        trialsPoll = poller(pollTrials, POLL_MS);
        pollers.push(trialsPoll);
        pollers.push(poller(pollRunningCurves, POLL_MS));
        pollRunningCurves().catch(function () {});
        el("curve-metric").addEventListener("change", function (ev) {
          st.curveMetric = ev.target.value;
          lastCurvesKey = "";
          pollRunningCurves().catch(function () {});
        });
      } catch (err) {
        if (!st.destroyed) app.innerHTML = errorBox(err) + '<p><a href="#/">Back to the studies</a></p>';
      }
    })();

    return {
      destroy: function () {
        st.destroyed = true;
        st.releasePlotly();
        pollers.forEach(function (p) { p.stop(); });
        if (observer) observer.disconnect();
      },
    };
  }

  // ---------------------------------------------------------------- trial page

  function trialView(app, name, number) {
    setCrumbs([{ label: "Studies", href: "#/" }, { label: name, href: studyHash(name) }, { label: "trial #" + number }]);
    document.title = "tunelab: " + name + " #" + number;
    app.innerHTML = '<p class="muted">Loading trial&hellip;</p>';
    let destroyed = false;
    let poll = null;
    let readOnly = true;
    let shellDone = false;
    let lastKey = "";
    let diagnosisState = null;
    let liveKey = "";
    let suggestAt = 0;
    let suggestKey = "";
    let suggestRunning = null;
    let liveNow = {}; // the trial's hyperparameters now (the change form sends only what differs)

    function el(id) {
      return document.getElementById(id);
    }

    function renderShell(t) {
      app.innerHTML =
        '<section class="card" id="trial-header"><h1>Trial <span id="trial-number">#' + number + "</span> " +
        '<span id="trial-state">' + stateBadge(t.state) + "</span></h1>" +
        '<div class="meta" id="trial-meta"></div>' +
        '<div id="trial-actions"' + (readOnly ? " hidden" : "") + '>' +
        '<button type="button" id="stop-trial" class="danger" hidden>Stop this trial</button> ' +
        '<span id="action-result"></span>' +
        '<div class="note-edit"><label for="note-input">Note</label> <textarea id="note-input" rows="2"></textarea> ' +
        '<button type="button" id="save-note">Save note</button></div></div>' +
        (readOnly ? '<p class="note-ro">Note: <span id="trial-note"></span></p>' : "") +
        "</section>" +
        '<section class="card" id="babysit-box" hidden><h2>Live hyperparameters</h2><div id="live-info"></div>' +
        (readOnly ? "" : '<div id="live-form-box" hidden></div><div id="rollback-box" hidden></div>' +
          '<p id="rollback-result"></p>') + "</section>" +
        '<section class="card" id="suggestions-box" hidden><h2>Suggestions</h2><ul id="suggestions" class="suggestions">' +
        '</ul><p id="suggestion-result"></p></section>' +
        '<section class="card two-col"><div><h2>Parameters</h2><table id="trial-params" class="grid kv"></table></div>' +
        '<div><h2>Learning curves</h2><div id="trial-curves" class="fig"></div>' +
        '<p id="trial-curves-empty" class="muted" hidden>No reported values.</p></div></section>' +
        '<section class="card" id="trial-error-box" hidden><h2>Error</h2><pre id="trial-error" class="error"></pre></section>' +
        '<section class="card" id="trial-logs-box" hidden><h2>Logs</h2>' +
        '<h3>stderr <span class="muted" id="trial-stderr-note"></span></h3><pre id="trial-stderr" class="log"></pre>' +
        '<h3>stdout <span class="muted" id="trial-stdout-note"></span></h3><pre id="trial-stdout" class="log"></pre></section>' +
        '<section class="card"><h2>Diagnosis</h2><div id="diagnosis"><p class="muted">Loading&hellip;</p></div></section>' +
        '<section class="card" id="lineage-box" hidden><h2>Lineage</h2><div id="lineage"></div></section>' +
        '<section class="card two-col"><div><h2>User attributes</h2><div id="user-attrs"></div></div>' +
        '<div><h2>System attributes</h2><div id="system-attrs"></div></div></section>';
      if (!readOnly) {
        el("stop-trial").addEventListener("click", async function () {
          const out = el("action-result");
          try {
            el("stop-trial").disabled = true;
            await api(studyPath(name) + "/trials/" + number + "/stop", { method: "POST" });
            out.className = "ok";
            out.textContent = "Stop requested; the trial ends at its next report.";
            refresh();
          } catch (err) {
            el("stop-trial").disabled = false;
            out.className = "error";
            out.textContent = err.message;
          }
        });
        el("save-note").addEventListener("click", async function () {
          const out = el("action-result");
          try {
            await api(studyPath(name) + "/trials/" + number + "/note", { json: { note: el("note-input").value } });
            out.className = "ok";
            out.textContent = "Note saved.";
            el("note-input").dataset.dirty = "";
          } catch (err) {
            out.className = "error";
            out.textContent = err.message;
          }
        });
        el("note-input").addEventListener("input", function () { el("note-input").dataset.dirty = "1"; });
        el("suggestions").addEventListener("click", function (ev) {
          const b = ev.target.closest("button.accept-suggestion");
          if (b) acceptSuggestion(b);
        });
      }
      shellDone = true;
    }

    // ---- live hyperparameters, roll-backs and suggestions (babysitting a run)

    async function loadLive() {
      const live = await api(studyPath(name) + "/trials/" + number + "/hyperparameters");
      if (destroyed) return;
      const key = JSON.stringify(live);
      if (key === liveKey) return;
      liveKey = key;
      renderLive(live);
    }

    function renderLive(live) {
      liveNow = live.current;
      const running = live.state === "RUNNING";
      const history = live.changes.length > 0 || live.pending.length > 0;
      const rolledBack = !readOnly && el("rollback-result").textContent !== ""; // keep its link in view
      el("babysit-box").hidden = !(history || rolledBack || (!readOnly && (running || live.checkpoints.length > 0)));
      el("live-info").innerHTML = (history || running ? '<p>now: <span id="live-current">' + valuesText(live.current) +
        "</span>" + (live.parent !== null ? ' <span class="muted">(a branch of <a href="' +
        esc(trialHash(name, live.parent)) + '">#' + live.parent + "</a> from step " + esc(live.step) + ")</span>" : "") +
        "</p>" : "") +
        (live.changes.length ? '<ul id="live-changes" class="events">' + live.changes.map(function (c) {
          return '<li class="change" data-step="' + esc(c.step) + '">' + esc(c.when) + ": " +
            valuesText(c.values, c.before) + (c.sources.length ? ' <span class="muted">(' + esc(c.sources.join(", ")) +
            ")</span>" : "") + (c.notes.length ? ' <span class="muted">note: ' + esc(c.notes.join("; ")) + "</span>" : "") +
            "</li>";
        }).join("") + "</ul>" : "") +
        (live.pending.length ? '<ul id="live-pending" class="events">' + live.pending.map(function (r) {
          const ended = live.state !== "RUNNING" && live.state !== "WAITING";
          return '<li class="pending" data-index="' + r.index + '">' + (ended ? "not applied: " : "pending: ") +
            valuesText(r.values) + ' <span class="muted">(' + esc(r.source || "") + "), " +
            (ended ? "never applied: the trial ended first" : "requested; applies at the next step") + "</span>" +
            (r.note ? ' <span class="muted">note: ' + esc(r.note) + "</span>" : "") + "</li>";
        }).join("") + "</ul>" : "");
      if (readOnly) return;
      renderLiveForm(live);
      renderRollback(live);
    }

    function renderLiveForm(live) {
      const box = el("live-form-box");
      box.hidden = live.state !== "RUNNING";
      if (box.hidden) return;
      if (!el("live-form")) {
        box.innerHTML = '<h3>Change hyperparameters</h3><form id="live-form"><div id="live-rows" class="kv-rows"></div>' +
          '<div class="form-line"><button type="button" id="live-add-row">Add a row</button> ' +
          '<input type="text" id="live-note" placeholder="note (optional)"> ' +
          '<button type="submit" id="live-submit">Request the change</button> <span id="live-result"></span></div></form>';
        wireRows(el("live-rows"), el("live-add-row"));
        el("live-form").addEventListener("submit", submitLive);
      }
      const rows = el("live-rows");
      if (!rows.dataset.touched) { // prefilled with the values now, until edited
        const names = live.live_names || Object.keys(live.current);
        rows.innerHTML = names.map(function (k) {
          const v = live.current[k];
          return kvRow(k, v === undefined || v === null ? "" : String(v));
        }).join("");
      }
    }

    async function submitLive(ev) {
      ev.preventDefault();
      const out = el("live-result");
      const values = readRows(el("live-rows"));
      Object.keys(values).forEach(function (k) { if (liveNow[k] === values[k]) delete values[k]; });
      if (!Object.keys(values).length) {
        out.className = "error";
        out.textContent = "Nothing to change: give a new value (or a name and a value).";
        return;
      }
      try {
        el("live-submit").disabled = true;
        const note = el("live-note").value.trim();
        const res = await api(studyPath(name) + "/trials/" + number + "/live",
          { json: { values: values, note: note || null } });
        out.className = "ok";
        out.innerHTML = valuesText(res.values) + " requested (request " + esc(res.index) + "); applies at the next step.";
        el("live-note").value = "";
        el("live-rows").dataset.touched = "";
        loadLive().catch(function () {});
      } catch (err) {
        out.className = "error";
        out.textContent = err.message;
      } finally {
        el("live-submit").disabled = false;
      }
    }

    function renderRollback(live) {
      const box = el("rollback-box");
      box.hidden = live.checkpoints.length === 0;
      if (box.hidden) return;
      if (!el("rollback-form")) {
        box.innerHTML = '<h3>Roll back</h3><form id="rollback-form"><label>to the checkpoint of step ' +
          '<select id="rollback-step"></select></label> <span class="muted">with these values changed (empty: the ' +
          'checkpoint\'s own)</span><div id="rollback-rows" class="kv-rows"></div>' +
          '<div class="form-line"><button type="button" id="rollback-add-row">Add a row</button> ' +
          '<input type="text" id="rollback-note" placeholder="note (optional)"> ' +
          '<button type="submit" id="rollback-submit">Roll back</button></div></form>';
        wireRows(el("rollback-rows"), el("rollback-add-row"));
        el("rollback-form").addEventListener("submit", submitRollback);
      }
      const select = el("rollback-step");
      const steps = live.checkpoints.map(String);
      if (Array.from(select.options).map(function (o) { return o.value; }).join() !== steps.join()) {
        const prev = select.value;
        select.innerHTML = steps.map(function (s) { return '<option value="' + esc(s) + '">' + esc(s) + "</option>"; }).join("");
        select.value = steps.indexOf(prev) >= 0 ? prev : steps[steps.length - 1];
      }
      const rows = el("rollback-rows");
      if (!rows.dataset.touched) {
        rows.innerHTML = (live.live_names || Object.keys(live.current)).map(function (k) { return kvRow(k, ""); }).join("");
      }
    }

    async function submitRollback(ev) {
      ev.preventDefault();
      const out = el("rollback-result");
      const values = readRows(el("rollback-rows"));
      try {
        el("rollback-submit").disabled = true;
        const note = el("rollback-note").value.trim();
        const res = await api(studyPath(name) + "/rollback", { json: {
          to: Number(el("rollback-step").value), trial: number, values: Object.keys(values).length ? values : null,
          note: note || null } });
        out.className = "ok";
        out.innerHTML = 'Rolled back: the new branch is <a id="rollback-link" href="' + esc(trialHash(name, res.number)) +
          '">trial #' + esc(res.number) + "</a>.";
        refresh().catch(function () {});
      } catch (err) {
        out.className = "error";
        out.textContent = err.message;
      } finally {
        el("rollback-submit").disabled = false;
      }
    }

    async function loadSuggestions(running) {
      const now = Date.now();
      // a running trial's every few seconds, a finished trial's once
      if (suggestAt && running === suggestRunning && (!running || now - suggestAt < SUGGEST_MS)) return;
      suggestAt = now;
      suggestRunning = running;
      let list = [];
      try {
        list = await api(studyPath(name) + "/trials/" + number + "/suggestions");
      } catch (err) {
        list = [];
      }
      if (destroyed) return;
      if (!running) list = list.filter(function (s) { return s.kind !== "keep_going"; });
      const key = JSON.stringify([list, running]);
      if (key === suggestKey) return;
      suggestKey = key;
      el("suggestions-box").hidden = list.length === 0 && el("suggestion-result").textContent === "";
      el("suggestions").innerHTML = list.map(function (s) {
        const action = Object.keys(s.values).length && !readOnly;
        return '<li class="suggestion" data-kind="' + esc(s.kind) + '"><span class="tag">' + esc(s.condition) + "</span> " +
          esc(s.message) + (action ? ' <button type="button" class="accept-suggestion" data-kind="' + esc(s.kind) +
          '">Accept</button>' : "") + "</li>";
      }).join("");
    }

    async function acceptSuggestion(button) {
      const out = el("suggestion-result");
      try {
        button.disabled = true;
        const kind = button.dataset.kind;
        const res = await api(studyPath(name) + "/trials/" + number + "/suggestions/" + encodeURIComponent(kind) +
          "/accept", { method: "POST" });
        out.className = "ok";
        out.innerHTML = res.rollback
          ? 'Accepted: rolled back; the new branch is <a id="suggestion-link" href="' + esc(trialHash(name, res.result)) +
            '">trial #' + esc(res.result) + "</a>."
          : "Accepted " + esc(kind) + ": requested (request " + esc(res.result) + "); applies at the next step.";
        suggestAt = 0;
        loadLive().catch(function () {});
        loadSuggestions(true).catch(function () {});
      } catch (err) {
        button.disabled = false;
        out.className = "error";
        out.textContent = err.message;
      }
    }

    function renderTrial(t) {
      el("trial-state").innerHTML = stateBadge(t.state);
      el("trial-meta").innerHTML =
        "<span>value <b id=\"trial-value\">" + esc(fmtNumber(t.value)) + "</b></span>" +
        (t.stage !== null && t.stage !== undefined ? "<span>stage <b>" + esc(t.stage) + "</b></span>" : "") +
        "<span>started <b>" + esc(fmtDate(t.datetime_start)) + "</b></span>" +
        (t.datetime_complete ? "<span>finished <b>" + esc(fmtDate(t.datetime_complete)) + "</b></span>" : "") +
        "<span>duration <b>" + esc(fmtDuration(t.duration)) + "</b></span>";
      if (!readOnly) {
        el("stop-trial").hidden = t.state !== "RUNNING";
        const note = el("note-input");
        if (!note.dataset.dirty && document.activeElement !== note) note.value = t.note || "";
      } else {
        el("trial-note").textContent = t.note || "";
      }
      const dists = t.distributions || {};
      const params = t.params || {};
      el("trial-params").innerHTML = "<thead><tr><th>Parameter</th><th>Value</th><th>Distribution</th></tr></thead><tbody>" +
        Object.keys(params).map(function (p) {
          const d = dists[p];
          return '<tr data-param="' + esc(p) + '"><td>' + esc(p) + '</td><td class="num">' +
            esc(params[p] === null ? "None" : fmtNumber(params[p])) + "</td><td><code>" +
            esc(d === undefined ? "" : typeof d === "string" ? d : JSON.stringify(d)) + "</code></td></tr>";
        }).join("") + "</tbody>";
      el("user-attrs").innerHTML = pretty(t.user_attrs || {});
      el("system-attrs").innerHTML = pretty(t.system_attrs || {});
      const errBox = el("trial-error-box");
      errBox.hidden = !t.error;
      el("trial-error").textContent = t.error || "";
      renderCurves(t.curves || {}, t.prediction);
      renderLineage(t.lineage);
    }

    function renderCurves(curves, prediction) {
      const div = el("trial-curves");
      const metrics = Object.keys(curves).sort();
      el("trial-curves-empty").hidden = metrics.length > 0;
      div.hidden = metrics.length === 0;
      if (!metrics.length) return;
      const data = metrics.map(function (m) {
        return { type: "scatter", mode: "lines+markers", name: esc(m), x: curves[m].steps, y: curves[m].values,
          marker: { size: 5 } };
      });
      // a learning-curve pruner's prediction: the continuation of its metric, dashed, with its interval dotted
      if (prediction && prediction.steps && prediction.steps.length && curves[prediction.metric]) {
        const own = curves[prediction.metric];
        const x0 = own.steps.length ? [own.steps[own.steps.length - 1]] : [];
        const y0 = own.values.length ? [own.values[own.values.length - 1]] : [];
        const label = esc(prediction.metric) + " predicted";
        data.push({ type: "scatter", mode: "lines", name: label, x: x0.concat(prediction.steps),
          y: y0.concat(prediction.mean), line: { dash: "dash", width: 2 } });
        data.push({ type: "scatter", mode: "lines", name: esc(String(Math.round(100 * (prediction.interval || 0.9)))) +
          "% interval", x: x0.concat(prediction.steps), y: y0.concat(prediction.high), line: { dash: "dot", width: 1 } });
        data.push({ type: "scatter", mode: "lines", name: "", showlegend: false, x: x0.concat(prediction.steps),
          y: y0.concat(prediction.low), line: { dash: "dot", width: 1 } });
      }
      react(div, data, {
        margin: { l: 50, r: 10, t: 10, b: 40 }, height: 320, autosize: true,
        xaxis: { title: { text: "step" } }, yaxis: { title: { text: "value" } },
        legend: { orientation: "h" }, uirevision: "trial",
      });
    }

    function renderLineage(lineage) {
      const box = el("lineage-box");
      if (!lineage || !lineage.length) {
        box.hidden = true;
        return;
      }
      box.hidden = false;
      const keys = [];
      lineage.forEach(function (row) {
        if (row && typeof row === "object") Object.keys(row).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); });
      });
      el("lineage").innerHTML = '<table class="grid" id="lineage-table"><thead><tr>' +
        keys.map(function (k) { return "<th>" + esc(k) + "</th>"; }).join("") + "</tr></thead><tbody>" +
        lineage.map(function (row) {
          return "<tr>" + keys.map(function (k) {
            const v = row ? row[k] : "";
            const text = v !== null && typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? fmtNumber(v) : v;
            if ((k === "number" || k === "parent" || k === "trial" || k === "source") && typeof v === "number") {
              return '<td><a href="' + esc(trialHash(name, v)) + '">#' + v + "</a></td>";
            }
            return "<td>" + esc(text) + "</td>";
          }).join("") + "</tr>";
        }).join("") + "</tbody></table>";
    }

    async function loadDiagnosis(state) {
      if (diagnosisState === state) return;
      diagnosisState = state;
      const box = el("diagnosis");
      try {
        const res = await api(studyPath(name) + "/diagnosis/" + number);
        if (destroyed) return;
        const findings = res.findings || [];
        box.innerHTML = findings.length === 0 ? '<p class="muted" id="no-findings">No problems found in this trial\'s curves.</p>'
          : '<ul class="findings">' + findings.map(function (f) {
            return '<li class="finding" data-condition="' + esc(f.condition) + '"><b>' + esc(f.condition) + "</b>" +
              (f.metric ? " <code>" + esc(f.metric) + "</code>" : "") + ": " + esc(f.message) +
              (f.action ? '<div class="action">&rarr; ' + esc(f.action) + "</div>" : "") +
              (f.evidence ? "<details><summary>evidence</summary>" + pretty(f.evidence) + "</details>" : "") + "</li>";
          }).join("") + "</ul>";
      } catch (err) {
        if (destroyed) return;
        box.innerHTML = err.status === 404 || err.status === 400
          ? '<p class="muted" id="no-findings">No diagnosis for this trial' + (err.detail ? " (" + esc(err.detail) + ")" : "") + ".</p>"
          : errorBox(err);
      }
    }

    // the end of a sweep trial's logs (tunelab sweep): shown as text only (textContent), never as markup
    let logsDone = false;
    async function loadLogs(finished) {
      if (logsDone) return;
      let logs;
      try {
        logs = await api(studyPath(name) + "/trials/" + number + "/logs?lines=200");
      } catch (err) {
        return;
      }
      if (destroyed) return;
      if (finished) logsDone = true;
      const has = logs.stdout !== null || logs.stderr !== null;
      el("trial-logs-box").hidden = !has;
      if (!has) return;
      ["stdout", "stderr"].forEach(function (stream) {
        const text = logs[stream];
        el("trial-" + stream).textContent = text === null ? "" : text;
        el("trial-" + stream + "-note").textContent = text === null ? "(none)" : text === "" ? "(empty)" :
          "(the last " + logs.lines + " lines at most)";
      });
    }

    async function refresh(given) {
      const t = given && given.number !== undefined ? given : await api(studyPath(name) + "/trials/" + number);
      if (destroyed) return;
      setLive("live", true);
      if (!shellDone) renderShell(t);
      const key = JSON.stringify(t);
      if (key !== lastKey) {
        lastKey = key;
        renderTrial(t);
      }
      const finished = t.state !== "RUNNING" && t.state !== "WAITING";
      loadDiagnosis(finished ? t.state : "live-" + Math.floor(Date.now() / 10000));
      loadLogs(finished).catch(function () {});
      loadLive().catch(function () { /* retried on the next poll */ });
      loadSuggestions(t.state === "RUNNING").catch(function () {});
      if (finished && poll) {
        poll.stop();
        poll = null;
      }
    }

    (async function start() {
      try {
        // the study's record (read-only mode) and the trial, asked for at once
        const cached = studyCache.get(name);
        const infoP = api(studyPath(name));
        const trialP = api(studyPath(name) + "/trials/" + number);
        trialP.catch(function () { /* reported below when awaited */ });
        let info = cached;
        if (!info) info = await infoP;
        else infoP.then(function (i) { studyCache.set(name, i); }).catch(function () {});
        studyCache.set(name, info);
        readOnly = !!info.read_only;
        await refresh(await trialP);
        if (destroyed) return;
        const t = JSON.parse(lastKey || "{}");
        if (t.state === "RUNNING" || t.state === "WAITING") poll = poller(refresh, POLL_MS);
      } catch (err) {
        if (!destroyed) {
          app.innerHTML = errorBox(err) + '<p><a href="' + esc(studyHash(name)) + '">Back to the study</a></p>';
        }
      }
    })();

    return {
      destroy: function () {
        destroyed = true;
        if (poll) poll.stop();
      },
    };
  }

  // ---------------------------------------------------------------- boot

  window.addEventListener("hashchange", route);
  route();
})();
