// Result views of the tasks other than classification (templates/jobs/results/): a
// regression's predicted-vs-true scatter and residual histogram, a multi-label job's F1 by
// threshold for one label; and the dataset page's histograms (a regression's target, a
// generation dataset's tokens per conversation). Their data come as JSON in data-view
// attributes (the Content-Security-Policy admits no inline scripts); drawn on load and after
// htmx swaps in the finished job's results.
"use strict";

const VIEW_WIDTH = (el) => Math.max(280, Math.min(el.clientWidth - 16, 560));

function scatterView(el, points) {
  // Predicted against true, and the y = x line a perfect model would sit on.
  const xs = points.map((p) => p[0]);
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
  const x = order.map((i) => points[i][0]);
  const y = order.map((i) => points[i][1]);
  const lo = Math.min(...x, ...y);
  const hi = Math.max(...x, ...y);
  const ideal = x.map((v) => v);
  return new uPlot({
    title: "Predicted against true (test set)", width: VIEW_WIDTH(el), height: 300,
    scales: { x: { time: false, range: [lo, hi] }, y: { range: [lo, hi] } },
    axes: [{ label: "true" }, { label: "predicted" }],
    legend: { live: false },
    series: [{ label: "true" },
      { label: "predicted", stroke: "#2563eb", paths: () => null, points: { show: true, size: 5, fill: "#2563eb" } },
      { label: "perfect", stroke: "#94a3b8", width: 1, dash: [4, 4], points: { show: false } }],
  }, [x, y, ideal], el);
}

function histogramView(el, hist, title, xLabel) {
  const mids = hist.counts.map((_, i) => (hist.edges[i] + hist.edges[i + 1]) / 2);
  return new uPlot({
    title, width: VIEW_WIDTH(el), height: 240,
    scales: { x: { time: false } }, axes: [{ label: xLabel }, { label: "rows" }],
    legend: { live: false },
    series: [{ label: xLabel }, { label: "rows", stroke: "#9333ea", fill: "rgba(147, 51, 234, 0.3)",
      paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } }],
  }, [mids, hist.counts], el);
}

function thresholdView(el, curves, chosen) {
  // F1 on validation at each threshold tried, for the label the select names; the line
  // marks the threshold kept.
  const select = el.parentElement.querySelector("select[data-threshold-label]");
  let plot = null;
  const draw = () => {
    const label = select.value;
    if (plot) plot.destroy();
    const marker = { hooks: { draw: [(u) => {
      const x = Math.round(u.valToPos(chosen[label], "x", true));
      u.ctx.save(); u.ctx.strokeStyle = "#16a34a"; u.ctx.lineWidth = 2 * devicePixelRatio;
      u.ctx.beginPath(); u.ctx.moveTo(x, u.bbox.top); u.ctx.lineTo(x, u.bbox.top + u.bbox.height); u.ctx.stroke();
      u.ctx.restore();
    }] } };
    plot = new uPlot({
      title: `F1 of “${label}” by threshold (validation)`, width: VIEW_WIDTH(el), height: 240,
      scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
      axes: [{ label: "threshold" }, { label: "F1" }], legend: { live: false }, plugins: [marker],
      series: [{ label: "threshold" }, { label: "F1", stroke: "#2563eb", width: 2, points: { show: true, size: 4 } }],
    }, [curves.thresholds, curves.f1[label]], el);
    el.dataset.drawn = label;
  };
  select.addEventListener("change", draw);
  draw();
}

function drawResultViews(root) {
  if (typeof uPlot === "undefined") return;
  root.querySelectorAll("[data-view]:not([data-drawn])").forEach((el) => {
    const data = JSON.parse(el.dataset.values);
    el.dataset.drawn = "1";
    if (el.dataset.view === "scatter") scatterView(el, data);
    else if (el.dataset.view === "residuals") histogramView(el, data, "Residuals: predicted − true (test set)", "residual");
    else if (el.dataset.view === "target") histogramView(el, data, "Target values", "target");
    else if (el.dataset.view === "tokens") histogramView(el, data, "Tokens per conversation", "tokens");
    else if (el.dataset.view === "thresholds") thresholdView(el, data, JSON.parse(el.dataset.chosen));
  });
}
document.addEventListener("DOMContentLoaded", () => drawResultViews(document));
document.addEventListener("htmx:afterSettle", (event) => drawResultViews(event.detail.elt || document));
