// Descent's web page: the jobs with their progress, the selected job's curves live from its
// event stream, a sweep's runs on one chart, and a box to submit a job or a sweep.
// Plain JavaScript, no build step; the charts are uPlot (vendor/uplot, MIT).
"use strict";

const REFRESH_MS = 2000; // the jobs and sweeps lists
const SWEEP_REFRESH_MS = 3000; // a sweep's curves, while any run is unfinished
const RECONNECT_MS = 1000; // after an event stream drops
const THIN_POINTS = 4000; // points per series loaded when a job is selected
const MAX_POINTS = 20000; // past this many steps on the chart, thin it to half
const SWEEP_POINTS = 500; // points per run on a sweep's chart
// a zoomed window is read at this many points per CSS pixel of the plot: each column then
// gets a stretch's minimum and maximum, as the server thins, so every spike is drawn
const POINTS_PER_PIXEL = 2;
const ZOOM_MIN_PX = 3; // a drag narrower than this is a slip of the mouse, not a zoom
const CHART_HEIGHT = 360;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const COLORS = [
  "#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
  "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c",
];
// the colour of each series a job records; others take COLORS in turn
const SERIES_COLORS = {
  loss: "#2563eb", train_loss: "#0891b2", val_loss: "#dc2626",
  accuracy: "#059669", val_accuracy: "#d97706", lr: "#7c3aed",
};
const SERIES_ORDER = ["loss", "train_loss", "val_loss", "accuracy", "val_accuracy", "lr"];

// the README's first job: fit y = w*x to y = 2x + noise, from w = 0
const EXAMPLES = {
  job: {
    name: "y=2x",
    model: { type: "linear", bias: false, init: "zeros" },
    data: { type: "linear", n_samples: 100, weights: [2.0], noise: 0.5 },
    optimizer: { type: "sgd", lr: 0.001 },
    batch_size: null,
    epochs: 100,
    validation_split: 0,
  },
  sweep: {
    name: "y=2x: optimizers and batch sizes",
    base: {
      model: { type: "linear", bias: false, init: "zeros" },
      data: { type: "linear", n_samples: 100, weights: [2.0], noise: 0.5 },
      optimizer: { type: "sgd", lr: 0.001 },
      epochs: 20,
      validation_split: 0,
    },
    grid: {
      optimizer: [{ type: "sgd", lr: 0.001 }, { type: "adam", lr: 0.1 }],
      batch_size: [null, 16],
    },
  },
};

const $ = (selector) => document.querySelector(selector);

const state = {
  auth: document.body.dataset.auth, // "token" or "open"
  hasSweeps: document.body.dataset.sweeps === "yes",
  token: localStorage.getItem("descent.token") || "",
  tokenRefused: false, // the API answered 401: wait for a new token before calling again
  selected: null, // {kind: "job" | "sweep", id}
  session: null, // an AbortController for the selection's stream or polling
  job: null, // the selected job, as the API last answered it
  curve: null, // the selected job's points (a Curve)
  chart: null, // the uPlot instance
  chartKey: "", // what the chart was built for: rebuilt when its series change
  zoom: null, // {start, end}: the steps the chart is zoomed to, or null for the whole curve
  zoomed: null, // the selected job's points in the zoomed window (a Curve), once read
  sweepRuns: [],
  submitKind: "job",
  drafts: {
    job: JSON.stringify(EXAMPLES.job, null, 2),
    sweep: JSON.stringify(EXAMPLES.sweep, null, 2),
  },
  // counters the browser test reads
  stats: { eventsReceived: 0, pointsFromEvents: 0, streamsOpened: 0 },
};
window.descent = state;

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${formatDetail(detail)}`);
    this.status = status;
    this.detail = detail;
  }
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

function canCall() {
  return !(state.auth === "token" && (!state.token || state.tokenRefused));
}

async function api(path, { method = "GET", json, signal } = {}) {
  const headers = authHeaders();
  const init = { method, headers, signal };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) refused();
  if (!response.ok) throw new ApiError(response.status, body?.detail ?? response.statusText);
  return body;
}

// FastAPI's 422 detail is a list of {loc, msg}; other errors carry a sentence
function formatDetail(detail) {
  if (!Array.isArray(detail)) return String(detail);
  return detail
    .map((item) => `${(item.loc || []).join(".")}: ${item.msg}`)
    .join("\n");
}

function refused() {
  state.tokenRefused = true;
  showNotice(
    state.token
      ? "The API refused this token (401). Enter a valid one above."
      : "This service needs an API token: enter it above.",
  );
  $("#token-form").classList.add("wanted");
}

// ---------------------------------------------------------------- Server-Sent Events

// Yields {type, data, id} from an SSE body; fetch() rather than EventSource, which cannot
// send the Authorization header.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // a chunk may end between the \r and \n of one line ending: keep the \r for later
      const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, cut).split(/\r\n|\n|\r/);
      buffer = lines.pop() + buffer.slice(cut);
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { type: type || "message", data: data.join("\n"), id };
          type = "";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the server's keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") type = text;
        else if (field === "id" && !text.includes("\0")) id = text;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// Follows a job's events until its `end`, reconnecting with Last-Event-ID after a drop.
async function followEvents(jobId, lastStep, session) {
  let lastId = String(lastStep);
  while (!session.signal.aborted) {
    try {
      const response = await fetch(`/jobs/${encodeURIComponent(jobId)}/events`, {
        headers: { ...authHeaders(), Accept: "text/event-stream", "Last-Event-ID": lastId },
        signal: session.signal,
        cache: "no-store",
      });
      if (response.status === 401) return refused();
      if (response.status === 404) return jobGone(jobId);
      if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
      state.stats.streamsOpened += 1;
      setLive(true);
      for await (const event of sseEvents(response.body)) {
        if (session.signal.aborted) return; // another job or sweep was selected meanwhile
        if (event.id !== null) lastId = event.id;
        if (onJobEvent(jobId, event) === "done") return;
      }
    } catch (err) {
      if (session.signal.aborted) return;
    }
    setLive(false);
    await sleep(RECONNECT_MS, session.signal);
  }
}

function onJobEvent(jobId, event) {
  state.stats.eventsReceived += 1;
  const data = JSON.parse(event.data);
  if (event.type === "points") {
    state.stats.pointsFromEvents += Object.values(data.series)
      .reduce((sum, s) => sum + s.steps.length, 0);
    state.curve.add(data.series);
    if (state.curve.steps.length > MAX_POINTS) state.curve.thin(MAX_POINTS / 2);
    if (!state.zoom) scheduleDraw(); // a zoomed chart stays on its window
  } else if (event.type === "progress") {
    showJob({ ...state.job, ...data });
  } else if (event.type === "end") {
    showJob(data);
    setLive(false);
    return "done";
  } else if (event.type === "gone") {
    jobGone(jobId);
    return "done";
  }
  return "";
}

function jobGone(jobId) {
  showNotice(`Job ${jobId} was deleted.`);
  setLive(false);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// ---------------------------------------------------------------- a job's points

// Series on one shared list of steps, as uPlot takes them: `undefined` where a series has
// no point at a step (the line joins over it), `null` where it recorded a non-finite value
// (a gap in the line).
class Curve {
  // `names`: series to hold from the start, even where none of their points come (a zoomed
  // window keeps the whole curve's series, so the chart keeps its legend)
  constructor(names = []) {
    this.steps = [];
    this.columns = new Map(names.map((name) => [name, []])); // name -> values, aligned with steps
    this.lastStep = -1; // a minimize job records step 0
  }

  // the whole curve as read, with the points this one holds after the read's last step (what
  // the event stream brought meanwhile)
  static merged(series, current) {
    const curve = new Curve();
    curve.add(series);
    if (current) curve.add(current.seriesAfter(curve.lastStep));
    return curve;
  }

  // Appends the series' points after lastStep (a series seen for the first time included).
  add(series) {
    for (const name of Object.keys(series)) {
      if (!this.columns.has(name)) {
        this.columns.set(name, new Array(this.steps.length).fill(undefined));
      }
    }
    const fresh = new Set();
    for (const { steps } of Object.values(series)) {
      for (const step of steps) if (step > this.lastStep) fresh.add(step);
    }
    const ordered = [...fresh].sort((a, b) => a - b);
    const at = new Map(ordered.map((step, i) => [step, this.steps.length + i]));
    for (const step of ordered) this.steps.push(step);
    for (const values of this.columns.values()) {
      while (values.length < this.steps.length) values.push(undefined);
    }
    for (const [name, { steps, values }] of Object.entries(series)) {
      const column = this.columns.get(name);
      steps.forEach((step, i) => {
        if (at.has(step)) column[at.get(step)] = values[i];
      });
    }
    if (ordered.length) this.lastStep = ordered[ordered.length - 1];
  }

  // Thins to about `target` steps, in place: per stretch of steps it keeps the first, the
  // last, and the steps of each series' smallest and largest value (as /curves?points= does,
  // so a spike is never hidden), and every gap.
  thin(target) {
    const n = this.steps.length;
    const columns = [...this.columns.values()];
    const size = Math.max(2, Math.ceil((n * (2 + 2 * columns.length)) / target));
    const keep = new Uint8Array(n);
    for (let start = 0; start < n; start += size) {
      const end = Math.min(start + size, n) - 1;
      keep[start] = 1;
      keep[end] = 1;
      for (const values of columns) {
        let lo = -1;
        let hi = -1;
        for (let i = start; i <= end; i++) {
          const v = values[i];
          if (v === null) keep[i] = 1;
          else if (v !== undefined) {
            if (lo < 0 || v < values[lo]) lo = i;
            if (hi < 0 || v > values[hi]) hi = i;
          }
        }
        if (lo >= 0) {
          keep[lo] = 1;
          keep[hi] = 1;
        }
      }
    }
    const kept = (array) => array.filter((_, i) => keep[i] === 1);
    this.steps = kept(this.steps);
    for (const [name, values] of this.columns) this.columns.set(name, kept(values));
  }

  // the points after `step`, as the API answers series
  seriesAfter(step) {
    const series = {};
    for (const [name, column] of this.columns) {
      const steps = [];
      const values = [];
      this.steps.forEach((s, i) => {
        if (s <= step || column[i] === undefined) return;
        steps.push(s);
        values.push(column[i]);
      });
      series[name] = { steps, values };
    }
    return series;
  }

  names() {
    const rank = (name) => {
      const i = SERIES_ORDER.indexOf(name);
      return i < 0 ? SERIES_ORDER.length : i;
    };
    return [...this.columns.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }
}

// ---------------------------------------------------------------- charts

function logScale() {
  return $("#log-scale").checked;
}

// The log scale is drawn as log10 of the values on a linear one (uPlot's own log scale stops
// at about 1e16, which a diverging job passes). A value <= 0 has no place there: a gap.
function forScale(values) {
  if (!logScale()) return values;
  return values.map((v) => {
    if (v === undefined || v === null) return v;
    return v > 0 ? Math.log10(v) : null;
  });
}

// a y value as the legend and the ticks show it: back from log10 on the log scale
function fromScale(v) {
  return logScale() ? 10 ** v : v;
}

function scaleOf(name) {
  if (name.endsWith("accuracy")) return "acc";
  if (name === "lr") return "lr";
  return "y";
}

function jobChartSpec(curve) {
  const names = curve.names();
  const series = names.map((name, i) => ({
    label: name,
    scale: scaleOf(name),
    stroke: SERIES_COLORS[name] || COLORS[i % COLORS.length],
    width: name === "loss" ? 1.5 : 2,
    show: name !== "lr", // its scale is unlike the others: one click in the legend shows it
    points: { size: 5 }, // drawn where the points are sparse: the per-epoch series
    value: (u, v) => formatNumber(scaleOf(name) === "y" && v != null ? fromScale(v) : v),
  }));
  const axes = [stepAxis(), valueAxis("loss")];
  if (names.some((n) => scaleOf(n) === "acc")) {
    axes.push({ ...valueAxis("accuracy", "acc"), side: 1, grid: { show: false } });
  }
  const data = [curve.steps, ...names.map((n) => {
    const values = curve.columns.get(n);
    return scaleOf(n) === "y" ? forScale(values) : values;
  })];
  return { key: `job:${names.join(",")}:${logScale()}`, series, axes, data };
}

function sweepChartSpec(runs) {
  // one table per run, joined on the union of their steps
  const steps = [...new Set(runs.flatMap((run) => run.steps))].sort((a, b) => a - b);
  const at = new Map(steps.map((step, i) => [step, i]));
  const data = [steps];
  for (const run of runs) {
    const values = new Array(steps.length).fill(undefined);
    run.steps.forEach((step, i) => {
      values[at.get(step)] = run.values[i];
    });
    data.push(forScale(values));
  }
  const series = runs.map((run, i) => ({
    label: formatOverrides(run.overrides) + (run.status === "succeeded" ? "" : ` (${run.status})`),
    scale: "y",
    stroke: COLORS[i % COLORS.length],
    width: 1.5,
    value: (u, v) => formatNumber(v == null ? v : fromScale(v)),
  }));
  const axes = [stepAxis(), valueAxis("loss")];
  const key = `sweep:${runs.map((r) => `${r.job_id}/${r.status}`).join(",")}:${logScale()}`;
  return { key, series, axes, data };
}

function axisStyle() {
  return {
    stroke: "#475569",
    grid: { stroke: "#e2e8f0", width: 1 },
    ticks: { stroke: "#cbd5e1", width: 1 },
    font: "12px system-ui, sans-serif",
    labelFont: "12px system-ui, sans-serif",
  };
}

function stepAxis() {
  return { label: "step", ...axisStyle() };
}

function valueAxis(label, scale = "y") {
  const axis = { label, scale, ...axisStyle(), size: 64 };
  const log = scale === "y" && logScale();
  axis.values = (u, splits) => splits.map((v) => (v == null ? null : formatTick(log ? 10 ** v : v)));
  if (log) axis.splits = (u, axisIdx, min, max) => logSplits(min, max);
  return axis;
}

// Ticks for log10 values between min and max: every few decades over a wide range, else at
// 1, 2, 5 (or 1..9) times a power of ten, else at round values.
function logSplits(min, max) {
  const lo = Math.floor(min);
  const hi = Math.ceil(max);
  if (hi - lo > 4) {
    const step = niceStep((hi - lo) / 6);
    const splits = [];
    for (let e = Math.ceil(min / step) * step; e <= max; e += step) splits.push(e);
    return splits;
  }
  const mantissas = hi - lo > 2 ? [1, 2, 5] : [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const splits = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of mantissas) {
      const v = e + Math.log10(m);
      if (v >= min && v <= max) splits.push(v);
    }
  }
  if (splits.length >= 2) return splits;
  const [a, b] = [10 ** min, 10 ** max];
  const step = niceStep((b - a) / 4, true);
  const round = [];
  for (let v = Math.ceil(a / step) * step; v <= b; v += step) round.push(Math.log10(v));
  return round;
}

// the smallest 1, 2 or 5 times a power of ten that is at least x (at least 1 unless `fine`)
function niceStep(x, fine = false) {
  const power = 10 ** Math.floor(Math.log10(x));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= x);
  return fine ? step : Math.max(1, step);
}

// 0.25, 1200, 1e-5, 2.5e30
function formatTick(value) {
  const size = Math.abs(value);
  if (value === 0) return "0";
  if (size >= 1e4 || size < 1e-3) {
    const [mantissa, exponent] = value.toExponential(1).split("e");
    return `${mantissa.replace(/\.0$/, "")}e${Number(exponent)}`;
  }
  return String(Number(value.toPrecision(4)));
}

// Builds the chart when its series change, else hands it the new data.
function draw(spec) {
  const element = $("#chart");
  const points = spec.data[0].length;
  $("#chart-empty").hidden = points > 0;
  if (state.chart && state.chartKey === spec.key) {
    state.chart.setData(spec.data);
  } else {
    destroyChart();
    build(spec, element);
  }
  showZoom();
  // for the browser test: how many steps and series the chart holds
  element.dataset.points = String(points);
  element.dataset.series = String(spec.series.length);
}

function build(spec, element) {
  const options = {
    width: chartWidth(),
    height: CHART_HEIGHT,
    scales: {
      x: { time: false },
      y: {},
      acc: { range: [0, 1] },
    },
    series: [{ label: "step", value: (u, v) => (v == null ? "—" : String(v)) }, ...spec.series],
    axes: spec.axes,
    legend: { live: true },
    cursor: {
      // a drag selects steps and setSelect zooms to them, reading the window (not uPlot's
      // own zoom, which would only stretch the points already read)
      drag: { x: true, y: false, setScale: false },
      bind: { dblclick: zoomOutOnDoubleClick },
    },
    hooks: { setSelect: [onSelect] },
  };
  state.chart = new uPlot(options, spec.data, element);
  state.chartKey = spec.key;
}

function destroyChart() {
  state.chart?.destroy();
  state.chart = null;
  state.chartKey = "";
  $("#chart").dataset.points = "0";
  $("#chart").dataset.series = "0";
}

function chartWidth() {
  return Math.max(320, $("#chart").clientWidth);
}

let drawPending = false;

// at most one redraw a frame, however fast the points arrive
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    redraw();
  });
}

function redraw() {
  const curve = state.zoomed || state.curve;
  if (state.selected?.kind === "job" && curve) draw(jobChartSpec(curve));
  else if (state.selected?.kind === "sweep") draw(sweepChartSpec(state.sweepRuns));
}

// ---------------------------------------------------------------- zooming

// uPlot's setSelect hook: a drag along the steps ended; they become the chart's window
function onSelect(u) {
  const { left, width } = u.select;
  if (width < ZOOM_MIN_PX) return;
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  const start = Math.ceil(u.posToVal(left, "x"));
  const end = Math.floor(u.posToVal(left + width, "x"));
  if (end <= start) return;
  state.zoom = { start, end };
  showZoom(); // at once, on the points already drawn, while the window's own are read
  readView();
}

// uPlot's cursor.bind for dblclick: its own handler (which fits the step axis to the points
// drawn), then the whole curve read again
function zoomOutOnDoubleClick(u, target, handler) {
  return (event) => {
    handler(event);
    zoomOut();
  };
}

function zoomOut() {
  if (!state.zoom) return;
  state.zoom = null;
  state.zoomed = null;
  redraw();
  readView(); // the whole curve again, at the selection's resolution
}

// puts the chart's step axis on the zoomed window (a redraw's new data would reset it)
function showZoom() {
  const zoom = state.zoom;
  if (zoom && state.chart) state.chart.setScale("x", { min: zoom.start, max: zoom.end });
  $("#zoom-hint").hidden = !zoom;
  if (zoom) $("#zoom-hint").textContent = `steps ${zoom.start}–${zoom.end} · double-click: all`;
}

// what a chart reads: the zoomed window at the plot's resolution, else `points` for the whole
function curvesQuery(zoom, points) {
  if (!zoom) return `points=${points}`;
  const width = state.chart ? state.chart.over.clientWidth : chartWidth();
  const windowPoints = Math.max(2, Math.round(POINTS_PER_PIXEL * width));
  return `start=${zoom.start}&end=${zoom.end}&points=${windowPoints}`;
}

// Reads the selection's curves again for the zoom it now has.
function readView() {
  const { kind, id } = state.selected || {};
  const session = state.session;
  if (!kind || !session) return;
  const read = kind === "job" ? readJobView(id, session.signal) : readSweep(id, session.signal);
  read.catch((err) => {
    if (!session.signal.aborted) showNotice(`${kind} ${id}: ${err.message}`);
  });
}

async function readJobView(jobId, signal) {
  const zoom = state.zoom;
  const path = `/jobs/${encodeURIComponent(jobId)}/curves?${curvesQuery(zoom, THIN_POINTS)}`;
  const body = await api(path, { signal });
  if (signal.aborted || zoom !== state.zoom || !state.curve) return; // zoomed again meanwhile
  if (zoom) {
    state.zoomed = new Curve(state.curve.names());
    state.zoomed.add(body.series);
  } else {
    state.curve = Curve.merged(body.series, state.curve);
  }
  redraw();
}

// ---------------------------------------------------------------- selection

function closeSelection() {
  state.session?.abort();
  state.session = null;
  state.curve = null;
  state.zoom = null;
  state.zoomed = null;
  showZoom();
  state.job = null;
  state.sweepRuns = [];
  destroyChart();
  $("#details").replaceChildren();
  $("#cancel-button").hidden = true;
  $("#chart-empty").hidden = false;
  setLive(false);
}

async function selectJob(jobId) {
  closeSelection();
  const session = new AbortController();
  state.session = session;
  state.selected = { kind: "job", id: jobId };
  markSelected();
  $("#chart-title").textContent = jobId;
  try {
    showJob(await api(`/jobs/${encodeURIComponent(jobId)}`, { signal: session.signal }));
    const query = `points=${THIN_POINTS}`;
    const body = await api(`/jobs/${encodeURIComponent(jobId)}/curves?${query}`, {
      signal: session.signal,
    });
    if (session.signal.aborted) return;
    state.curve = new Curve();
    state.curve.add(body.series);
    redraw();
    if (!FINISHED.has(state.job.status)) followEvents(jobId, state.curve.lastStep, session);
  } catch (err) {
    if (!session.signal.aborted) showNotice(`Job ${jobId}: ${err.message}`);
  }
}

async function selectSweep(sweepId) {
  closeSelection();
  const session = new AbortController();
  state.session = session;
  state.selected = { kind: "sweep", id: sweepId };
  markSelected();
  const sweep = sweepsById.get(sweepId);
  $("#chart-title").textContent = sweep?.name || sweepId;
  $("#chart-sub").textContent = "loss of every run";
  while (!session.signal.aborted) {
    try {
      const runs = await readSweep(sweepId, session.signal);
      if (session.signal.aborted) return;
      if (runs?.every((run) => FINISHED.has(run.status))) return;
    } catch (err) {
      if (session.signal.aborted) return;
      showNotice(`Sweep ${sweepId}: ${err.message}`);
    }
    await sleep(SWEEP_REFRESH_MS, session.signal);
  }
}

// Reads a sweep's runs for the chart's zoom; null where the zoom changed meanwhile.
async function readSweep(sweepId, signal) {
  const zoom = state.zoom;
  const query = curvesQuery(zoom, SWEEP_POINTS);
  const body = await api(`/sweeps/${encodeURIComponent(sweepId)}/curves?name=loss&${query}`, {
    signal,
  });
  if (signal.aborted || zoom !== state.zoom) return null;
  state.sweepRuns = body.runs;
  showSweep(body.runs);
  redraw();
  return body.runs;
}

function markSelected() {
  const { kind, id } = state.selected || {};
  for (const row of document.querySelectorAll("#jobs-body tr")) {
    row.classList.toggle("selected", kind === "job" && row.dataset.jobId === id);
  }
  for (const item of document.querySelectorAll("#sweeps-list li")) {
    item.classList.toggle("selected", kind === "sweep" && item.dataset.sweepId === id);
  }
}

// the chart's heading and the details below it
function showJob(job) {
  if (state.selected?.kind !== "job" || state.selected.id !== job.id) return;
  state.job = job;
  $("#chart-title").textContent = job.name || job.id;
  const { step, total_steps, epoch, total_epochs } = job.progress;
  $("#chart-sub").replaceChildren(
    badge(job.status),
    text(` step ${step} / ${total_steps} · epoch ${epoch} / ${total_epochs}`),
  );
  $("#cancel-button").textContent = "Cancel job";
  $("#cancel-button").hidden = FINISHED.has(job.status);
  showDetails(jobDetails(job));
  const row = jobRows.get(job.id);
  if (row) fillJobRow(row, job); // the stream is fresher than the list's last refresh
}

function jobDetails(job) {
  const spec = job.spec || {};
  const rows = [["id", job.id]];
  if (spec.task === "minimize") rows.push(["objective", spec.objective?.type]);
  else rows.push(["model", spec.model?.type], ["data", spec.data?.type]);
  const optimizer = spec.optimizer || {};
  rows.push(["optimizer", [optimizer.type, optimizer.lr != null ? `lr ${optimizer.lr}` : ""]
    .filter(Boolean).join(", ")]);
  if (spec.task !== "minimize") rows.push(["batch size", spec.batch_size ?? "whole set"]);
  rows.push(["created", formatTime(job.created_at)]);
  const result = job.result;
  if (result) {
    rows.push(["final loss", formatNumber(result.final_loss)]);
    rows.push(["best loss", formatNumber(result.best_loss)]);
    rows.push(["duration", `${formatNumber(result.duration_s)} s on ${result.device}`]);
    for (const [name, value] of Object.entries(result.metrics || {})) {
      rows.push([name.replaceAll("_", " "), formatNumber(value)]);
    }
  }
  if (job.error) rows.push(["error", `${job.error.type}: ${job.error.message}`]);
  return rows;
}

function showSweep(runs) {
  const counts = {};
  for (const run of runs) counts[run.status] = (counts[run.status] || 0) + 1;
  $("#chart-sub").textContent = `loss of ${runs.length} runs · ${formatCounts(counts)}`;
  $("#cancel-button").textContent = "Cancel sweep";
  $("#cancel-button").hidden = runs.every((run) => FINISHED.has(run.status));
  showDetails([]);
}

function showDetails(rows) {
  const list = $("#details");
  list.replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value ?? "—";
    if (term === "error") dd.className = "bad";
    return [dt, dd];
  }));
}

function setLive(live) {
  $("#live").hidden = !live;
}

// ---------------------------------------------------------------- the lists

const jobRows = new Map(); // job id -> <tr>, kept so a refresh does not rebuild the table
const sweepsById = new Map();

async function refreshJobs() {
  const page = await api("/jobs?limit=50");
  const body = $("#jobs-body");
  const seen = new Set();
  page.items.forEach((job, i) => {
    let row = jobRows.get(job.id);
    if (!row) {
      row = newJobRow(job.id);
      jobRows.set(job.id, row);
    }
    fillJobRow(row, job);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    seen.add(job.id);
    if (state.selected?.kind === "job" && state.selected.id === job.id) keepFresh(job);
  });
  for (const [id, row] of jobRows) {
    if (!seen.has(id)) {
      row.remove();
      jobRows.delete(id);
    }
  }
  $("#jobs-empty").hidden = page.items.length > 0;
  $("#jobs-count").textContent = page.next_cursor ? "latest 50" : `${page.items.length}`;
  markSelected();
}

// the list also keeps the selected job's heading fresh, should its stream be closed
function keepFresh(job) {
  const shown = state.job;
  if (!shown) return;
  const ended = FINISHED.has(job.status) && !FINISHED.has(shown.status);
  if (ended || job.progress.step > shown.progress.step) showJob(job);
}

function newJobRow(jobId) {
  const row = document.createElement("tr");
  row.dataset.jobId = jobId;
  row.innerHTML = `
    <td class="status"></td>
    <td class="name"><div class="label"></div><div class="id"></div></td>
    <td class="progress"><div class="bar"><div class="fill"></div></div><div class="steps"></div></td>
    <td class="num loss"></td>`;
  row.addEventListener("click", () => selectJob(jobId));
  return row;
}

function fillJobRow(row, job) {
  const { step, total_steps } = job.progress;
  const fraction = total_steps > 0 ? Math.min(1, step / total_steps) : 0;
  row.querySelector(".status").replaceChildren(badge(job.status));
  const label = row.querySelector(".label");
  label.textContent = job.name || describeSpec(job.spec || {});
  label.classList.toggle("auto", !job.name);
  row.querySelector(".id").textContent = job.id;
  row.querySelector(".fill").style.width = `${(100 * fraction).toFixed(1)}%`;
  row.querySelector(".fill").className = `fill ${job.status}`;
  row.querySelector(".steps").textContent = `${compact(step)} / ${compact(total_steps)}`;
  row.querySelector(".loss").textContent = formatNumber(job.result?.final_loss);
  row.title = job.error ? `${job.error.type}: ${job.error.message}` : "";
}

async function refreshSweeps() {
  const page = await api("/sweeps?limit=20");
  const list = $("#sweeps-list");
  sweepsById.clear();
  const items = page.items.map((sweep) => {
    sweepsById.set(sweep.id, sweep);
    const item = document.createElement("li");
    item.dataset.sweepId = sweep.id;
    const name = document.createElement("div");
    name.className = "label";
    name.textContent = sweep.name || sweep.id;
    const counts = document.createElement("div");
    counts.className = "muted";
    counts.textContent = `${sweep.n_jobs} runs · ${formatCounts(sweep.counts || {})}`;
    item.append(name, counts);
    item.addEventListener("click", () => selectSweep(sweep.id));
    return item;
  });
  list.replaceChildren(...items);
  $("#sweeps-empty").hidden = items.length > 0;
  $("#sweeps-count").textContent = items.length ? `${items.length}` : "";
  markSelected();
}

let refreshing = false;

async function refresh() {
  if (refreshing || !canCall() || document.hidden) return; // a hidden tab need not poll
  refreshing = true;
  try {
    await refreshJobs();
    if (state.hasSweeps) await refreshSweeps();
    hideNotice();
  } catch (err) {
    if (err.status !== 401) showNotice(`Could not reach the API: ${err.message}`);
  } finally {
    refreshing = false;
  }
}

// ---------------------------------------------------------------- submitting

function setSubmitKind(kind) {
  state.drafts[state.submitKind] = $("#spec").value;
  state.submitKind = kind;
  $("#spec").value = state.drafts[kind];
  $("#submit-button").textContent = kind === "job" ? "Submit job" : "Submit sweep";
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.kind === kind);
  }
  $("#submit-error").hidden = true;
}

async function submit(event) {
  event.preventDefault();
  const kind = state.submitKind;
  const error = $("#submit-error");
  error.hidden = true;
  let body;
  try {
    body = JSON.parse($("#spec").value);
  } catch (err) {
    return showSubmitError(`Not valid JSON: ${err.message}`);
  }
  $("#submit-status").textContent = "submitting…";
  try {
    const created = await api(kind === "job" ? "/jobs" : "/sweeps", { method: "POST", json: body });
    $("#submit-status").textContent = `created ${created.id}`;
    await refresh();
    if (kind === "job") selectJob(created.id);
    else selectSweep(created.id);
  } catch (err) {
    $("#submit-status").textContent = "";
    showSubmitError(err instanceof ApiError ? formatDetail(err.detail) : err.message, err.status);
  }
}

function showSubmitError(message, status) {
  const error = $("#submit-error");
  const heading = document.createElement("strong");
  heading.textContent = status === 422 ? "The spec was refused:" : `Error${status ? ` ${status}` : ""}:`;
  const lines = document.createElement("pre");
  lines.textContent = message;
  error.replaceChildren(heading, lines);
  error.hidden = false;
}

async function cancelSelected() {
  const { kind, id } = state.selected || {};
  if (!kind) return;
  try {
    const done = await api(`/${kind}s/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    if (kind === "job") showJob(done);
    else $("#cancel-button").hidden = true; // its chart shows the runs end at the next poll
    refresh();
  } catch (err) {
    showNotice(`Cancel ${id}: ${err.message}`);
  }
}

// ---------------------------------------------------------------- small helpers

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge ${status}`;
  span.textContent = status;
  return span;
}

function text(value) {
  return document.createTextNode(value);
}

function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1e5 || size < 1e-3) return value.toExponential(3);
  return String(Number(value.toPrecision(5)));
}

// 950, 12k, 2.6M: a step count that fits a narrow column
function compact(n) {
  if (n < 1e5) return String(n);
  if (n < 1e6) return `${Math.round(n / 1e3)}k`;
  return `${Number((n / 1e6).toPrecision(3))}M`;
}

// a label for a job without a name: "linear · sgd 0.01 · batch 16", "rosenbrock · adam 0.1"
function describeSpec(spec) {
  const { type, lr } = spec.optimizer || {};
  const optimizer = [type, lr].filter((v) => v != null).join(" ");
  if (spec.task === "minimize") return [spec.objective?.type, optimizer].filter(Boolean).join(" · ");
  const batch = spec.batch_size == null ? "full batch" : `batch ${spec.batch_size}`;
  return [spec.model?.type, optimizer, batch].filter(Boolean).join(" · ");
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function formatCounts(counts) {
  const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`);
  return parts.join(" · ") || "no runs";
}

// {"optimizer": {"type": "adam", "lr": 0.1}, "batch_size": 16} ->
// "optimizer.type=adam, optimizer.lr=0.1, batch_size=16"
function formatOverrides(overrides) {
  const parts = [];
  const walk = (prefix, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) walk(`${prefix}.${key}`, inner);
    } else {
      parts.push(`${prefix}=${typeof value === "string" ? value : JSON.stringify(value)}`);
    }
  };
  for (const [key, value] of Object.entries(overrides || {})) walk(key, value);
  return parts.join(", ") || "base";
}

function showNotice(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = false;
}

function hideNotice() {
  $("#notice").hidden = true;
}

// ---------------------------------------------------------------- start

function start() {
  $("#token-form").hidden = state.auth !== "token";
  $("#token").value = state.token;
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("descent.token", state.token);
    state.tokenRefused = false;
    $("#token-form").classList.remove("wanted");
    hideNotice();
    refresh();
    if (state.selected?.kind === "job") selectJob(state.selected.id);
  });
  $("#sweeps-panel").hidden = !state.hasSweeps;
  $(".tabs").hidden = !state.hasSweeps; // a job is then all there is to submit
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => setSubmitKind(tab.dataset.kind));
  }
  $("#spec").value = state.drafts.job;
  $("#submit-form").addEventListener("submit", submit);
  $("#cancel-button").addEventListener("click", cancelSelected);
  $("#log-scale").addEventListener("change", redraw);
  window.addEventListener("resize", () => state.chart?.setSize({
    width: chartWidth(), height: CHART_HEIGHT,
  }));
  if (!canCall()) refused();
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
