// Drawing one analysis on canvases that share a time axis: x = time_s / duration_s * width.

const EMOTION_COLOURS = {
  neutral: "#8a94a6", calm: "#2bb3a3", happy: "#f2b705", sad: "#2f6feb", angry: "#e5484d",
  fearful: "#8e4ec6", disgust: "#46a758", surprised: "#f76808", uncertain: "#c1c7d0",
};
const SPARE_COLOURS = ["#0091ff", "#d6409f", "#978365", "#12a594", "#6e56cf"];
const HEAT_STOPS = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
const PLOT_MARGIN_PX = 4;

export function colourOf(label, labels) {
  if (label in EMOTION_COLOURS) return EMOTION_COLOURS[label];
  const index = Math.max(0, labels.indexOf(label));
  return SPARE_COLOURS[index % SPARE_COLOURS.length];
}

// Size a canvas to its box at the screen's pixel density; returns its context in CSS pixels.
function prepare(canvas) {
  const heightPx = Number(canvas.dataset.heightPx || canvas.getAttribute("height"));
  canvas.dataset.heightPx = heightPx;
  const widthPx = canvas.clientWidth;
  const ratio = window.devicePixelRatio || 1;
  canvas.style.height = heightPx + "px";
  canvas.width = Math.round(widthPx * ratio);
  canvas.height = Math.round(heightPx * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, widthPx, heightPx);
  return { context, widthPx, heightPx };
}

function segmentBands(context, analysis, widthPx, heightPx, labels, alpha) {
  context.globalAlpha = alpha;
  for (const segment of analysis.segments) {
    const x0 = (segment.start_s / analysis.duration_s) * widthPx;
    const x1 = (segment.end_s / analysis.duration_s) * widthPx;
    context.fillStyle = colourOf(segment.label, labels);
    context.fillRect(x0, 0, Math.max(1, x1 - x0), heightPx);
  }
  context.globalAlpha = 1;
}

export function drawWaveform(canvas, analysis, labels) {
  const { context, widthPx, heightPx } = prepare(canvas);
  segmentBands(context, analysis, widthPx, heightPx, labels, 0.22);
  const peaks = analysis.display.waveform;
  const columnsPerPx = (analysis.duration_s / peaks.seconds_per_column) / widthPx;
  const middle = heightPx / 2;
  context.fillStyle = "#344054";
  for (let x = 0; x < widthPx; x++) {
    const first = Math.floor(x * columnsPerPx);
    const last = Math.min(peaks.min.length, Math.max(first + 1, Math.floor((x + 1) * columnsPerPx)));
    let low = 0, high = 0;
    for (let i = first; i < last; i++) {
      low = Math.min(low, peaks.min[i]);
      high = Math.max(high, peaks.max[i]);
    }
    const top = middle - high * (middle - PLOT_MARGIN_PX);
    const bottom = middle - low * (middle - PLOT_MARGIN_PX);
    context.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
}

function heatColour(value) {
  const position = (value / 255) * (HEAT_STOPS.length - 1);
  const index = Math.min(HEAT_STOPS.length - 2, Math.floor(position));
  const within = position - index;
  return HEAT_STOPS[index].map((channel, k) => Math.round(channel + (HEAT_STOPS[index + 1][k] - channel) * within));
}

export function drawSpectrogram(canvas, analysis) {
  const { context, widthPx, heightPx } = prepare(canvas);
  const mel = analysis.display.log_mel;
  if (!mel.columns) return;
  const cells = Uint8Array.from(atob(mel.cells), (ch) => ch.charCodeAt(0));
  const image = new ImageData(mel.columns, mel.bands);
  const palette = Array.from({ length: 256 }, (_, v) => heatColour(v));
  for (let column = 0; column < mel.columns; column++) {
    for (let band = 0; band < mel.bands; band++) {
      const rgb = palette[cells[column * mel.bands + band]];
      const offset = ((mel.bands - 1 - band) * mel.columns + column) * 4;  // the lowest band at the bottom
      image.data.set(rgb, offset);
      image.data[offset + 3] = 255;
    }
  }
  const source = document.createElement("canvas");
  source.width = mel.columns;
  source.height = mel.bands;
  source.getContext("2d").putImageData(image, 0, 0);
  const coveredPx = ((mel.columns * mel.seconds_per_column) / analysis.duration_s) * widthPx;
  context.imageSmoothingEnabled = true;
  context.drawImage(source, 0, 0, coveredPx, heightPx);
}

export function drawSegments(canvas, analysis, labels) {
  const { context, widthPx, heightPx } = prepare(canvas);
  context.font = "12px system-ui, sans-serif";
  context.textBaseline = "middle";
  for (const segment of analysis.segments) {
    const x0 = (segment.start_s / analysis.duration_s) * widthPx;
    const x1 = (segment.end_s / analysis.duration_s) * widthPx;
    context.fillStyle = colourOf(segment.label, labels);
    context.fillRect(x0, 6, Math.max(2, x1 - x0), heightPx - 12);
    const text = segment.label + " " + Math.round(segment.confidence * 100) + "%";
    if (context.measureText(text).width < x1 - x0 - 8) {
      context.fillStyle = "#fff";
      context.fillText(text, x0 + 4, heightPx / 2);
    }
  }
}

// One line per class through the windows' centres, broken between speech segments.
export function drawProbabilities(canvas, analysis, labels) {
  const { context, widthPx, heightPx } = prepare(canvas);
  const plotPx = heightPx - 2 * PLOT_MARGIN_PX;
  const yOf = (p) => PLOT_MARGIN_PX + (1 - p) * plotPx;
  context.strokeStyle = "#eaecf0";
  context.lineWidth = 1;
  context.fillStyle = "#98a2b3";
  context.font = "10px system-ui, sans-serif";
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    context.beginPath();
    context.moveTo(0, yOf(p));
    context.lineTo(widthPx, yOf(p));
    context.stroke();
    if (p > 0) context.fillText(String(p), widthPx - 4, yOf(p) + (p === 1 ? 6 : 0));
  }
  context.textAlign = "start";
  const xOf = (row) => (((row.start_s + row.end_s) / 2) / analysis.duration_s) * widthPx;
  for (const label of labels) {
    context.strokeStyle = context.fillStyle = colourOf(label, labels);
    context.lineWidth = 2;
    context.beginPath();
    analysis.timeline.forEach((row, i) => {
      const joined = i > 0 && row.start_s < analysis.timeline[i - 1].end_s;
      const x = xOf(row), y = yOf(row.probabilities[label]);
      if (joined) context.lineTo(x, y); else context.moveTo(x, y);
    });
    context.stroke();
    for (const row of analysis.timeline) {
      context.beginPath();
      context.arc(xOf(row), yOf(row.probabilities[label]), 2.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
}

export function drawAxis(canvas, analysis) {
  const { context, widthPx } = prepare(canvas);
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  const step = steps.find((s) => (s / analysis.duration_s) * widthPx >= 60) || 600;
  context.fillStyle = context.strokeStyle = "#667085";
  context.font = "11px system-ui, sans-serif";
  context.textBaseline = "top";
  for (let t = 0; t <= analysis.duration_s + 1e-9; t += step) {
    const x = (t / analysis.duration_s) * widthPx;
    context.fillRect(x, 0, 1, 5);
    context.fillText(Number(t.toFixed(1)) + " s", Math.min(x + 2, widthPx - 30), 7);
  }
}

export function drawAll(analysis, labels) {
  drawWaveform(document.getElementById("waveform"), analysis, labels);
  drawSpectrogram(document.getElementById("spectrogram"), analysis);
  drawSegments(document.getElementById("segments"), analysis, labels);
  drawProbabilities(document.getElementById("probabilities"), analysis, labels);
  drawAxis(document.getElementById("axis"), analysis);
}
