// The analysis page: send a file to POST /api/analyze, show the answer, play the audio with a cursor over every view.

import { colourOf, drawAll } from "/static/charts.js";

const TOKEN_KEY = "serd-token";
const page = {
  analysis: null,  // the API's answer, display views included
  labels: [],
  audioUrl: null,
};

function $(id) { return document.getElementById(id); }

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch {
    return response.status + " " + response.statusText;
  }
}

function needToken() {
  $("token-form").hidden = false;
  $("token").focus();
}

async function loadHealth() {
  const response = await fetch("/api/health", { headers: authHeaders() });
  if (response.status === 401) return needToken();
  if (!response.ok) return setStatus(await errorText(response), true);
  const health = await response.json();
  page.labels = health.model.labels;
  $("model").textContent = "model " + health.model.name + " " + health.model.version + " · serd " + health.version;
}

async function analyse(file) {
  document.body.dataset.state = "analysing";
  setStatus("analysing " + file.name + " (" + (file.size / 1e6).toFixed(2) + " MB)…");
  const started = performance.now();
  const form = new FormData();
  form.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/api/analyze?display=1", { method: "POST", body: form, headers: authHeaders() });
  } catch (error) {
    document.body.dataset.state = "error";
    return setStatus("the server did not answer: " + error.message, true);
  }
  if (!response.ok) {
    document.body.dataset.state = "error";
    if (response.status === 401) needToken();
    return setStatus(await errorText(response), true);
  }
  const analysis = await response.json();
  show(analysis, file);
  setStatus("analysed in " + ((performance.now() - started) / 1000).toFixed(2) + " s");
  document.body.dataset.state = "ready";
}

function percent(value) { return Math.round(value * 100) + " %"; }
function signed(value) { return value === null || value === undefined ? "-" : (value >= 0 ? "+" : "") + value.toFixed(2); }

function show(analysis, file) {
  page.analysis = analysis;
  if (!page.labels.length) page.labels = Object.keys(analysis.probabilities);
  $("result").hidden = false;
  const label = analysis.label === null ? "no speech" : analysis.label;
  $("overall-label").textContent = label;
  $("overall-label").style.color = colourOf(label, page.labels);
  $("overall-confidence").textContent = analysis.label === null ? "-" : percent(analysis.confidence);
  $("overall-arousal").textContent = signed(analysis.arousal);
  $("overall-valence").textContent = signed(analysis.valence);
  $("file-name").textContent = analysis.file;
  $("duration").textContent = analysis.duration_s.toFixed(2) + " s";
  $("segment-count").textContent = String(analysis.segments.length);
  $("window-count").textContent = String(analysis.timeline.length);
  const warnings = analysis.warnings || [];
  $("warnings").hidden = warnings.length === 0;
  $("warnings").textContent = warnings.map((w) => "warning: " + w).join("\n");
  showLegend();
  showTable(analysis);
  if (page.audioUrl) URL.revokeObjectURL(page.audioUrl);
  page.audioUrl = URL.createObjectURL(file);
  $("player").src = page.audioUrl;
  drawAll(analysis, page.labels);
  moveCursor();
}

function showLegend() {
  $("legend").replaceChildren(...page.labels.map((label) => {
    const item = document.createElement("li");
    item.textContent = label;
    item.style.setProperty("--swatch", colourOf(label, page.labels));
    return item;
  }));
}

function showTable(analysis) {
  const rows = analysis.segments.map((segment) => {
    const row = document.createElement("tr");
    for (const cell of [segment.start_s.toFixed(2), segment.end_s.toFixed(2), segment.label, segment.confidence.toFixed(2), segment.windows,
                       signed(segment.arousal), signed(segment.valence)]) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.append(td);
    }
    return row;
  });
  $("segment-table").tBodies[0].replaceChildren(...rows);
}

function moveCursor() {
  if (!page.analysis) return;
  const fraction = Math.min(1, $("player").currentTime / page.analysis.duration_s);
  $("cursor").style.left = (fraction * 100).toFixed(3) + "%";
}

function followPlayback() {
  moveCursor();
  if (!$("player").paused) requestAnimationFrame(followPlayback);
}

function seek(event) {
  if (!page.analysis) return;
  const box = $("views").getBoundingClientRect();
  const fraction = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
  $("player").currentTime = fraction * page.analysis.duration_s;
  moveCursor();
  $("player").play().catch(() => {});
}

function download() {
  const { display, ...answer } = page.analysis;  // the analysis without the drawing data
  const blob = new Blob([JSON.stringify(answer, null, 2) + "\n"], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = answer.file.replace(/\.[^.]*$/, "") + ".serd.json";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
}

function wireDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) analyse(event.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", () => { if ($("file").files.length) analyse($("file").files[0]); });
}

function wire() {
  wireDrop();
  $("views").addEventListener("click", seek);
  $("player").addEventListener("play", followPlayback);
  for (const name of ["timeupdate", "seeked", "pause"]) $("player").addEventListener(name, moveCursor);
  $("download").addEventListener("click", download);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-form").hidden = true;
    setStatus("");
    loadHealth();
  });
  window.addEventListener("resize", () => { if (page.analysis) drawAll(page.analysis, page.labels); });
  loadHealth();
}

wire();
