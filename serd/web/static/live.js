// The live page: GET /api/state once per connection, then GET /api/events (Server-Sent Events) as they come.
// EventSource reconnects by itself (the server's retry field); after each (re)connect the state is fetched again.

import { colourOf } from "/static/charts.js";

const TOKEN_KEY = "serd-token";
const TIMELINE_S = 300;
const REDRAW_MS = 1000;
const RECONNECT_MS = 3000;  // after the server refused the stream (EventSource gives up on an HTTP error)
const EMOTION_TYPES = ["emotion-changed", "emotion-state"];
const live = {
  events: [],  // emotion and speech events of the last TIMELINE_S, in wall-time order
  seen: new Set(),
  labels: [],
  emotion: null,
  status: null,
  speech: false,
  device: "",
  received: 0,
  clockOffsetS: 0,  // server clock minus this browser's
  source: null,
};

function $(id) { return document.getElementById(id); }
function nowS() { return Date.now() / 1000 + live.clockOffsetS; }
function token() { return sessionStorage.getItem(TOKEN_KEY); }
function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }
function keyOf(event) { return [event.type, event.device, event.stream_time_s, event.wall_time_s].join("|"); }

function setFeed(state, text) {
  document.body.dataset.feed = state;
  $("feed").textContent = text;
}

function setDaemon(connected, feed) {
  if (connected === null) return;
  document.body.dataset.daemon = connected ? "connected" : "away";
  if (document.body.dataset.feed === "open") {
    $("feed").textContent = connected ? "following " + feed : "waiting for the daemon on " + feed;
  }
}

function remember(event) {
  if (!EMOTION_TYPES.includes(event.type) && !event.type.startsWith("speech-")) return;
  const key = keyOf(event);
  if (live.seen.has(key)) return;
  live.seen.add(key);
  live.events.push(event);
  live.events.sort((a, b) => a.wall_time_s - b.wall_time_s);
}

function forget() {
  const before = nowS() - TIMELINE_S;
  while (live.events.length && live.events[0].wall_time_s < before) live.seen.delete(keyOf(live.events.shift()));
}

function newer(current, event) { return !current || event.wall_time_s >= current.wall_time_s; }

function apply(event) {
  remember(event);
  live.device = event.device;
  if (EMOTION_TYPES.includes(event.type) && newer(live.emotion, event)) {
    live.emotion = event;
    live.speech = event.label !== "silence";
  } else if (event.type === "speech-started") {
    live.speech = true;
  } else if (event.type === "speech-ended") {
    live.speech = false;
  } else if (event.type === "status" && newer(live.status, event)) {
    live.status = event;
    if (event.state === "starting" || event.state === "stopping") live.speech = false;
  }
}

// A GET of the API; null when the server cannot be reached (it is restarting: the stream's reconnects will find it).
async function get(path) {
  try {
    return await fetch(path, { headers: authHeaders() });
  } catch {
    return null;
  }
}

// Read the state; false when the server wants the token (the form is shown), else true.
async function loadState() {
  const response = await get("/api/state");
  if (response && response.status === 401) { $("token-form").hidden = false; return false; }
  if (!response || !response.ok) return true;
  const state = await response.json();
  live.clockOffsetS = state.server_time_s - Date.now() / 1000;
  for (const event of state.recent) remember(event);
  if (state.emotion && newer(live.emotion, state.emotion)) live.emotion = state.emotion;
  if (state.status && newer(live.status, state.status)) live.status = state.status;
  live.speech = state.speech;
  if (state.emotion || state.status) live.device = (state.emotion || state.status).device;
  setDaemon(state.connected, state.feed);
  render();
  return true;
}

async function loadLabels() {
  const response = await get("/api/health");
  if (!response || !response.ok) return;
  live.labels = (await response.json()).model.labels;
  showLegend();
}

function connect() {
  const query = token() ? "?access_token=" + encodeURIComponent(token()) : "";
  const source = new EventSource("/api/events" + query);
  live.source = source;
  source.onopen = () => { setFeed("open", "connected"); loadLabels().then(loadState); };
  source.onmessage = (message) => {
    live.received += 1;
    apply(JSON.parse(message.data));
    render();
  };
  source.addEventListener("feed", (message) => {
    const news = JSON.parse(message.data);
    setDaemon(news.connected, news.feed);
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) return setFeed("reconnecting", "server away, reconnecting…");
    setFeed("reconnecting", "the server refused the event stream, trying again…");
    setTimeout(() => loadState().then((allowed) => { if (allowed) connect(); }), RECONNECT_MS);
  };
}

function percent(value) { return Math.round(value * 100) + " %"; }
function signed(value) { return (value < 0 ? "−" : "+") + Math.abs(value).toFixed(2); }

function render() {
  const emotion = live.emotion;
  const label = emotion ? emotion.label : "–";
  $("label").textContent = label;
  $("label").style.color = emotion ? colourOf(label, live.labels) : "";
  $("confidence").textContent = emotion ? (label === "silence" ? "the speech gate is closed" : percent(emotion.confidence) + " confidence") : "no emotion yet";
  $("affect").textContent = emotion && typeof emotion.arousal === "number" && typeof emotion.valence === "number"
    ? "arousal " + signed(emotion.arousal) + " · valence " + signed(emotion.valence) : "";
  $("device").textContent = live.device ? "device " + live.device : "";
  $("speech").dataset.on = String(live.speech);
  $("speech").textContent = live.speech ? "speech" : "no speech";
  renderBars(emotion ? emotion.probabilities : {});
  renderStatus(live.status);
  $("event-count").textContent = String(live.received);
  drawTimeline();
}

function renderBars(probabilities) {
  $("bars").replaceChildren(...Object.entries(probabilities).map(([name, value]) => {
    const item = document.createElement("li");
    item.style.setProperty("--swatch", colourOf(name, live.labels));
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = (value * 100).toFixed(1) + "%";
    const track = document.createElement("span");
    track.append(bar);
    const [nameCell, valueCell] = [document.createElement("span"), document.createElement("span")];
    nameCell.textContent = name;
    valueCell.textContent = percent(value);
    item.append(nameCell, track, valueCell);
    return item;
  }));
}

function renderStatus(status) {
  if (!status) return;
  const time = new Date(status.wall_time_s * 1000).toLocaleTimeString();
  $("status-time").textContent = "at " + time;
  $("status-state").textContent = status.state;
  $("status-message").textContent = status.message;
  $("status-audio").textContent = status.audio_s.toFixed(1) + " s";
  $("status-overruns").textContent = String(status.overruns);
  $("status-lost").textContent = String(status.lost_samples);
  const dropped = Object.entries(status.dropped || {}).map(([name, count]) => name + " " + count);
  $("status-dropped").textContent = dropped.join(", ") || "none";
}

// Intervals of [start_s, end_s, label] from events in wall-time order: each emotion lasts until the next one,
// the current one until now; each segment from speech-started to speech-ended (or now).
function intervals(events, now) {
  const emotions = [], speech = [];
  let emotion = null, speechStart = null;
  for (const event of events) {
    if (EMOTION_TYPES.includes(event.type)) {
      if (emotion) emotions.push([emotion.wall_time_s, event.wall_time_s, emotion.label]);
      emotion = event;
    } else if (event.type === "speech-started") {
      speechStart = event.wall_time_s;
    } else if (event.type === "speech-ended" && speechStart !== null) {
      speech.push([speechStart, event.wall_time_s]);
      speechStart = null;
    }
  }
  if (emotion) emotions.push([emotion.wall_time_s, now, emotion.label]);
  if (speechStart !== null) speech.push([speechStart, now]);
  return { emotions, speech };
}

function drawTimeline() {
  forget();
  const canvas = $("timeline");
  const widthPx = canvas.clientWidth, heightPx = Number(canvas.getAttribute("height"));
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(widthPx * ratio);
  canvas.height = Math.round(heightPx * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  const now = nowS(), start = now - TIMELINE_S;
  const x = (t) => ((Math.max(t, start) - start) / TIMELINE_S) * widthPx;
  const { emotions, speech } = intervals(live.events, now);
  const bandPx = heightPx - 40;
  for (const [from, to, label] of emotions) {
    if (label === "silence" || to < start) continue;
    context.fillStyle = colourOf(label, live.labels);
    context.fillRect(x(from), 0, Math.max(1, x(to) - x(from)), bandPx);
  }
  context.fillStyle = "#344054";
  for (const [from, to] of speech) if (to >= start) context.fillRect(x(from), bandPx + 6, Math.max(1, x(to) - x(from)), 8);
  context.fillStyle = "#667085";
  context.font = "11px system-ui, sans-serif";
  for (let minutes = TIMELINE_S / 60; minutes >= 0; minutes -= 1) {
    const at = x(now - minutes * 60);
    context.fillRect(Math.min(at, widthPx - 1), bandPx + 18, 1, 5);
    const text = minutes ? "−" + minutes + " min" : "now";
    context.fillText(text, Math.min(Math.max(0, at - 14), widthPx - 28), heightPx - 4);
  }
}

function showLegend() {
  $("legend").replaceChildren(...live.labels.concat(["uncertain"]).map((label) => {
    const item = document.createElement("li");
    item.textContent = label;
    item.style.setProperty("--swatch", colourOf(label, live.labels));
    return item;
  }));
}

function wire() {
  $("timeline-minutes").textContent = String(TIMELINE_S / 60);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-form").hidden = true;
    if (live.source) live.source.close();
    connect();
  });
  setInterval(drawTimeline, REDRAW_MS);
  window.addEventListener("resize", drawTimeline);
  loadState().then((allowed) => { if (allowed) connect(); });
}

wire();
