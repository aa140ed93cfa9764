"""The live view's page: Plotly draws g ± σ and the intensity against wavelength from
``/run.json``, polled twice a second; a table lists the points with their numbers as the
run gives them (exact: JavaScript prints the shortest form that reads back the same)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cplscope live</title>
<script src="/plotly.min.js"></script>
<style>
 body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; }
 #summary span { margin-right: 1.5em; }
 .bar { background: #ddd; width: 30em; height: 0.8em; display: inline-block; }
 .bar > div { background: #3a7; height: 100%; }
 table { border-collapse: collapse; font-size: 0.85em; }
 td, th { padding: 0.1em 0.6em; text-align: right; border-bottom: 1px solid #eee; }
 .flagged { background: #fff3e0; }
 .over { color: #b00; }
</style>
</head>
<body>
<h2>cplscope &middot; <span id="sample">&hellip;</span> <small id="status"></small></h2>
<div id="summary">
 <span>progress <b id="done">0</b>/<b id="planned">0</b></span>
 <span class="bar"><div id="progressbar" style="width:0%"></div></span>
 <span>time left <b id="time-left">&ndash;</b></span>
 <span id="budget"></span>
</div>
<div id="current">last point: <b id="cur-wl">&ndash;</b> nm, dwell <b id="cur-dwell">&ndash;</b> s,
 &sigma; <b id="cur-sigma">&ndash;</b> (target <b id="cur-target">&ndash;</b>)
 <span id="cur-flags"></span></div>
<div id="plot" style="width:100%;height:560px"></div>
<table id="points"><thead><tr><th>&lambda; (nm)</th><th id="g-head">g_lum</th>
 <th>&sigma;</th><th>intensity (counts/s)</th><th>dwell (s)</th><th>flags</th></tr></thead>
 <tbody></tbody></table>
<script>
"use strict";
const num = v => (v === null || v === undefined) ? "nan" : String(v);
const dur = s => s === null ? "\\u2013" : s >= 3600 ? (s / 3600).toFixed(1) + " h" :
  s >= 60 ? (s / 60).toFixed(1) + " min" : s.toFixed(0) + " s";
let shown = -1;
function draw(run) {
  const pts = run.points, md = run.metadata, cd = md.mode === "cd";
  document.getElementById("sample").textContent = md.sample || "";
  document.getElementById("status").textContent = run.status;
  const pr = run.progress || {};
  document.getElementById("done").textContent = pr.done || 0;
  document.getElementById("planned").textContent = pr.planned || 0;
  document.getElementById("progressbar").style.width =
    (pr.planned ? 100 * pr.done / pr.planned : 0) + "%";
  document.getElementById("time-left").textContent = dur(pr.time_left_s ?? null);
  document.getElementById("budget").textContent = pr.budget_left_s !== null &&
    pr.budget_left_s !== undefined ? "budget left " + dur(pr.budget_left_s) : "";
  const c = run.current;
  if (c) {
    const short = (v, d) => v === null ? "nan" : Number(v).toPrecision(d);
    document.getElementById("cur-wl").textContent = num(c.wavelength_nm);
    document.getElementById("cur-dwell").textContent = c.dwell_s === null ? "nan" : c.dwell_s.toFixed(1);
    const s = document.getElementById("cur-sigma");
    s.textContent = short(c.sigma, 3);
    s.className = c.target !== null && (c.sigma === null || c.sigma > c.target) ? "over" : "";
    document.getElementById("cur-target").textContent = c.target === null ? "none" : short(c.target, 3);
    document.getElementById("cur-flags").textContent = c.flags.length ? "[" + c.flags.join(", ") + "]" : "";
  }
  document.getElementById("g-head").textContent = cd ? "g_abs" : "g_lum";
  const body = document.querySelector("#points tbody");
  body.replaceChildren(...pts.map(p => {
    const tr = document.createElement("tr");
    tr.className = p.flags.length ? "flagged" : "";
    for (const v of [p.wavelength_nm, p.g_lum, p.sigma_g, p.intensity, p.dwell_s]) {
      const td = document.createElement("td"); td.textContent = num(v); tr.appendChild(td);
    }
    const td = document.createElement("td"); td.textContent = p.flags.join(";"); tr.appendChild(td);
    return tr;
  }));
  const x = pts.map(p => p.wavelength_nm);
  const flagged = pts.filter(p => p.flags.length);
  const traces = [
    {x: x, y: pts.map(p => p.g_lum), error_y: {type: "data", array: pts.map(p => p.sigma_g)},
     mode: "markers+lines", name: cd ? "g_abs \\u00b1 \\u03c3" : "g_lum \\u00b1 \\u03c3", yaxis: "y"},
    {x: x, y: pts.map(p => p.intensity), mode: "markers+lines", name: "intensity", yaxis: "y2"},
    {x: flagged.map(p => p.wavelength_nm), y: flagged.map(p => p.g_lum), mode: "markers",
     name: "flagged", text: flagged.map(p => p.flags.join(", ")),
     marker: {symbol: "x", size: 10, color: "#d60"}, yaxis: "y"}];
  const layout = {grid: {rows: 2, columns: 1, shared_xaxes: true}, showlegend: true,
    xaxis: {title: {text: "wavelength (nm)"}, anchor: "y2"},
    yaxis: {title: {text: cd ? "g_abs" : "g_lum"}, domain: [0.4, 1]},
    yaxis2: {title: {text: "intensity (counts/s)"}, domain: [0, 0.3]},
    margin: {t: 20}};
  Plotly.react("plot", traces, layout);
  shown = pts.length;
}
async function poll() {
  try {
    const r = await fetch("/run.json", {cache: "no-store"});
    const run = await r.json();
    draw(run);
    if (run.status !== "running" && run.status !== "waiting") return;
  } catch (e) {
    document.getElementById("status").textContent = "(the scan has ended; the server is closed)";
    return;
  }
  setTimeout(poll, 500);
}
poll();
</script>
</body>
</html>
"""
