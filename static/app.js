// Tuneboard's page behaviour: the upload form (progress bar, drag and drop, errors beside the
// form) and the live training charts. Everything else is htmx attributes in the templates.
"use strict";

function setupUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file");
  const zone = document.getElementById("dropzone");
  const chosen = document.getElementById("chosen");
  const bar = document.getElementById("upload-progress");
  const error = document.getElementById("upload-error");
  const percent = document.getElementById("upload-percent");
  const showChosen = () => { chosen.textContent = input.files.length ? input.files[0].name : ""; };
  input.addEventListener("change", showChosen);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.remove("over");
  }));
  zone.addEventListener("drop", (e) => {
    if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; showChosen(); }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    error.hidden = true;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    const csrf = document.querySelector('meta[name="csrf-token"]');
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf.content);
    const busy = (on) => {
      bar.hidden = !on; percent.hidden = !on;
      form.querySelector('button[type="submit"]').disabled = on;
    };
    xhr.upload.addEventListener("progress", (p) => {
      if (!p.lengthComputable) return;
      busy(true);
      bar.value = (100 * p.loaded) / p.total;
      percent.textContent = p.loaded < p.total
        ? `Uploading… ${Math.floor(bar.value)} % of ${formatBytes(p.total)}`
        : "Uploaded; checking the file…";
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      // 202: stored, and checked by a worker; the dataset page follows the check.
      if (xhr.status === 201 || xhr.status === 202) { window.location = "/datasets/" + body.id; return; }
      busy(false);
      showError(body, xhr.status);
    });
    xhr.addEventListener("error", () => { busy(false); showError({}, 0); });
    xhr.send(new FormData(form));
  });

  function showError(body, status) {
    error.replaceChildren();
    const head = document.createElement("strong");
    head.textContent = status ? "Upload refused: " : "Upload failed: ";
    error.append(head);
    // A validation report lists its blocking errors; anything else has one detail line.
    let messages = (body.errors || []).map((issue) => issue.message);
    if (!messages.length) {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
      messages = [detail || "the server did not answer; try again."];
    }
    messages.forEach((message) => {
      const div = document.createElement("div");
      div.textContent = message;
      error.append(div);
    });
    error.hidden = false;
  }
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
}

const CHARTS = {
  loss: { title: "Loss", series: [["train_loss", "train loss", "#2563eb"], ["val_loss", "validation loss", "#dc2626"]] },
  // The task's curves, one chart per scale (data-series and data-title on each chart:
  // [[name, label], …]), classification's here.
  quality: { title: "Validation quality", series: [["val_accuracy", "accuracy", "#16a34a"], ["val_macro_f1", "macro-F1", "#9333ea"]] },
};
const QUALITY_COLOURS = ["#16a34a", "#9333ea"];
// What ranks epochs (the task's headline, data-headline on the box) and which way.
let HEADLINE = { name: "val_macro_f1", higher: true };

function readTaskCurves(box) {
  const charts = box.querySelectorAll("[data-chart][data-series]");
  if (!charts.length) return;
  delete CHARTS.quality;
  charts.forEach((el) => {
    CHARTS[el.dataset.chart] = {
      title: el.dataset.title,
      series: JSON.parse(el.dataset.series).map(([name, label], i) => [name, label, QUALITY_COLOURS[i % 2]]),
    };
  });
  if (box.dataset.headline) HEADLINE = { name: box.dataset.headline, higher: box.dataset.higher === "1" };
}

function alignSeries(series, names) {
  // uPlot wants one x array; series sampled at other epochs get nulls, joined by spanGaps.
  const xs = new Set();
  names.forEach((n) => (series[n] ? series[n].epoch : []).forEach((x) => xs.add(x)));
  const x = Array.from(xs).sort((a, b) => a - b);
  const index = new Map(x.map((v, i) => [v, i]));
  const ys = names.map((n) => {
    const y = new Array(x.length).fill(null);
    if (series[n]) series[n].epoch.forEach((e, i) => { y[index.get(e)] = series[n].value[i]; });
    return y;
  });
  return [x, ...ys];
}

function fitLabels(u, values) {
  // A y axis as wide as its longest tick label ("41,000" for an early perplexity), so none
  // is cut off at the left; uPlot's default width fits about four digits.
  const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
  return Math.max(50, 20 + 7 * longest);
}

// Epoch ticks fall on whole epochs only.
const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100];

function firstBest(points, better) {
  if (!points || !points.value.length) return null;
  let best = 0;
  points.value.forEach((v, i) => { if (better(v, points.value[best])) best = i; });
  return points.epoch[best];
}

function bestEpoch(series, headline = HEADLINE) {
  // Mark the point the job keeps: the training loop's first epoch with the best validation
  // headline score (macro-F1 for the classifications; a regression's chosen metric), or on
  // a frozen head's L2 path (series.head_l2) the first strength with the lowest validation
  // loss.
  if (series.head_l2) return firstBest(series.val_loss, (a, b) => a < b);
  return firstBest(series[headline.name], headline.higher ? (a, b) => a > b : (a, b) => a < b);
}

function formatL2(v) {
  // 0.01 → "1e-2", 0.00316 → "3e-3"; the path starts at 1.
  return v >= 1 ? String(Math.round(v)) : v.toExponential(0).replace("e-0", "e-");
}

function l2Ticks(path) {
  // x-axis labels of an L2 path: point i is the i-th strength tried, strongest first.
  return (u, splits) => splits.map((x) => {
    const i = path().epoch.indexOf(x);
    return i < 0 ? "" : formatL2(path().value[i]);
  });
}

function epochMarkers(marks) {
  // A uPlot plugin: a faint dashed line at every whole epoch (every few when there are many)
  // and labelled lines for marks() — the best epoch, where overfitting starts.
  const line = (u, ctx, epoch) => {
    const x = Math.round(u.valToPos(epoch, "x", true));
    ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    return x;
  };
  return { hooks: { draw: [(u) => {
    const { min, max } = u.scales.x;
    if (min == null || max == null) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 4]);
    ctx.strokeStyle = "rgba(100, 116, 139, 0.45)";
    const every = Math.max(1, Math.ceil((max - min) / 20));
    for (let e = Math.max(0, Math.ceil(min)); e <= max; e += every) line(u, ctx, e);
    ctx.setLineDash([]);
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    marks().forEach(({ epoch, label, color }) => {
      if (epoch == null || epoch < min || epoch > max) return;
      ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2 * devicePixelRatio;
      const x = line(u, ctx, epoch);
      const width = ctx.measureText(label).width;
      const right = x + 4 + width < u.bbox.left + u.bbox.width;
      ctx.fillText(label, right ? x + 4 : x - 4 - width, u.bbox.top + 2);
    });
    ctx.restore();
  }] } };
}

function setupCharts() {
  const box = document.getElementById("charts");
  if (!box || typeof uPlot === "undefined") return;
  readTaskCurves(box);
  const plots = {};
  let marks = [];
  let path = null; // series.head_l2 of a frozen head's L2 path, else null: x is epochs
  const width = () => Math.max(280, Math.min(box.clientWidth / (box.clientWidth > 800 ? 2 : 1) - 16, 640));

  function draw(series) {
    Object.entries(CHARTS).forEach(([key, spec]) => {
      const names = spec.series.map((s) => s[0]);
      const data = alignSeries(series, names);
      if (plots[key]) { plots[key].setData(data); return; }
      const el = box.querySelector('[data-chart="' + key + '"]');
      plots[key] = new uPlot({
        title: spec.title, width: width(), height: 260,
        scales: { x: { time: false } },
        axes: [path
          ? { label: "L2 strength of the head (strong → weak)", incrs: EPOCH_STEPS, values: l2Ticks(() => path) }
          : { label: "epoch", incrs: EPOCH_STEPS }, { size: fitLabels }],
        plugins: [epochMarkers(() => marks)],
        legend: { live: false },
        series: [{ label: path ? "L2 strength" : "epoch" }].concat(spec.series.map((s) => ({
          label: s[1], stroke: s[2], width: 2, spanGaps: true, points: { show: true, size: 4 },
        }))),
      }, data, el);
    });
  }

  async function poll() {
    let done = false;
    try {
      const res = await fetch(box.dataset.metricsUrl, { headers: { Accept: "application/json" } });
      if (res.ok) {
        const body = await res.json();
        const hasPoints = Object.keys(body.series).length > 0;
        document.getElementById("charts-empty").hidden = hasPoints;
        path = body.series.head_l2 || null;
        marks = [{ epoch: bestEpoch(body.series), label: path ? "chosen" : "best", color: "#16a34a" }];
        if (body.overfitting) marks.push({ epoch: body.overfitting.epoch, label: "overfitting", color: "#b45309" });
        if (hasPoints) draw(body.series);
        // How many points are drawn, for people's scripts and the browser tests.
        box.dataset.points = Object.values(body.series).reduce((n, s) => n + s.value.length, 0);
        done = ["succeeded", "failed", "cancelled"].includes(body.status);
      }
    } catch (_) { /* server restarting: keep polling */ }
    if (!done) setTimeout(poll, 2000);
  }
  poll();
  window.addEventListener("resize", () => Object.values(plots).forEach((p) => p.setSize({ width: width(), height: 260 })));
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function setupOverlay() {
  // Comparison page: every run's curve of one metric (the select picks which) on one chart.
  const box = document.getElementById("overlay");
  if (!box || typeof uPlot === "undefined") return;
  const ids = JSON.parse(box.dataset.jobs);
  const labels = JSON.parse(box.dataset.labels);
  const choice = document.getElementById("overlay-metric");
  // What the runs are ranked by: the first option is the task's headline unless another
  // score was chosen for the comparison (then that one is selected).
  const headline = choice
    ? { name: choice.value, higher: choice.dataset.higher === "1" }
    : HEADLINE;
  let bodies = [];
  let plot = null;

  function draw() {
    const metric = choice ? choice.value : "val_macro_f1";
    const series = {};
    bodies.forEach((b, i) => { if (b && b.series[metric]) series["job" + i] = b.series[metric]; });
    flattenPaths(series);
    const hasPoints = Object.keys(series).length > 0;
    document.getElementById("overlay-empty").hidden = hasPoints;
    box.dataset.points = Object.values(series).reduce((n, s) => n + s.value.length, 0);
    if (!hasPoints) return;
    const data = alignSeries(series, ids.map((_, i) => "job" + i));
    if (plot && plot.metric === metric) { plot.setData(data); return; }
    if (plot) plot.destroy();
    const name = choice ? choice.selectedOptions[0].textContent : "macro-F1";
    plot = new uPlot({
      width: Math.max(300, Math.min(box.clientWidth - 16, 1000)), height: 320,
      scales: { x: { time: false } }, axes: [{ label: "epoch", incrs: EPOCH_STEPS }, { label: name, size: fitLabels }],
      plugins: [epochMarkers(() => [])],
      legend: { live: false },
      series: [{ label: "epoch" }].concat(labels.map((l, i) => ({
        label: l, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true, points: { show: true, size: 4 },
      }))),
    }, data, box.querySelector('[data-chart="overlay"]'));
    plot.metric = metric;
  }

  function flattenPaths(series) {
    // A frozen head's points are L2 strengths, not epochs: draw its chosen value (at the
    // lowest validation loss) as a flat line across the epochs the other runs span.
    let from = 1;
    let to = 1;
    bodies.forEach((b, i) => {
      if (!series["job" + i] || b.series.head_l2) return;
      series["job" + i].epoch.forEach((e) => { from = Math.min(from, Math.floor(e)); to = Math.max(to, Math.ceil(e)); });
    });
    bodies.forEach((b, i) => {
      const own = series["job" + i];
      if (!own || !b.series.head_l2) return;
      const at = own.epoch.indexOf(bestEpoch(b.series, headline));
      const flat = from < to ? [from, to] : [1];
      if (at < 0) delete series["job" + i];
      else series["job" + i] = { epoch: flat, value: flat.map(() => own.value[at]) };
    });
  }

  async function poll() {
    bodies = await Promise.all(ids.map((id) =>
      fetch("/api/v1/jobs/" + id + "/metrics").then((r) => (r.ok ? r.json() : null)).catch(() => null)));
    draw();
    const done = bodies.every((b) => b && ["succeeded", "failed", "cancelled"].includes(b.status));
    if (!done) setTimeout(poll, 3000);
  }
  if (choice) choice.addEventListener("change", draw);
  poll();
}

function showHtmxErrors() {
  // An error htmx does not swap in (413 from the upload limit, a 500, a lost connection)
  // still gets a sentence where the answer would have gone.
  const show = (event, message) => {
    const target = event.detail.target;
    if (!target) return;
    const div = document.createElement("div");
    div.className = "error";
    div.setAttribute("role", "alert");
    div.textContent = message;
    target.replaceChildren(div);
  };
  document.body.addEventListener("htmx:responseError", (event) => {
    let detail = "";
    try { detail = JSON.parse(event.detail.xhr.responseText).detail; } catch (_) { /* HTML */ }
    show(event, typeof detail === "string" && detail ? detail : `The server answered ${event.detail.xhr.status}; try again.`);
  });
  document.body.addEventListener("htmx:sendError", (event) => show(event, "The server did not answer; is it running?"));
}

document.addEventListener("DOMContentLoaded", () => {
  showHtmxErrors();
  setupUpload(); setupCharts(); setupOverlay();
});

// Sizes computed by the server come as data attributes, applied here: the Content-Security-
// Policy admits no inline style attributes, while writes through the CSSOM are allowed.
function applySizes(root) {
  root.querySelectorAll("[data-width]").forEach((el) => { el.style.width = `${el.dataset.width}%`; });
  root.querySelectorAll("[data-alpha]").forEach((el) => { el.style.setProperty("--alpha", el.dataset.alpha); });
}
document.addEventListener("DOMContentLoaded", () => applySizes(document));
document.addEventListener("htmx:afterSettle", (event) => applySizes(event.detail.elt || document));

// The log tail reads bottom-up like a terminal: keep the newest line in view after each poll.
function scrollLogs() { document.querySelectorAll("pre.log").forEach((el) => { el.scrollTop = el.scrollHeight; }); }
document.addEventListener("DOMContentLoaded", scrollLogs);
document.addEventListener("htmx:afterSwap", scrollLogs);
