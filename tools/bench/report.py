"""The benchmark's figures, targets and Markdown report."""

from __future__ import annotations

import math
from typing import Any

NAN = float("nan")
HOP_MS = 500.0
REQUIRED_KEYS = ("cpu_per_audio_s", "seed_cpu_per_audio_s", "cpu_ratio", "rss_mb", "seed_rss_mb", "rss_ratio",
                 "hop_p99_ms", "e2e_p99_ms", "mqtt_e2e_p99_ms", "startup_s", "analyze_x_realtime")
STAGE_NAMES = {
    "vad": "VAD (webrtcvad gate)", "features": "features (log-mel frames)", "windows": "windows (assembly + CMVN)",
    "model": "model.predict (quantise + invoke + softmax)", "invoke": "  of which interpreter invoke",
    "smoother": "smoother", "publish": "publish (ZeroMQ)", "total": "**total per model hop**", "total_cpu": "total per model hop, thread CPU time",
    "grid_total": "total per fixed 0.5 s of audio with a model run",
    "releasing_call": "the 30 ms step that releases a window", "any_call": "any 30 ms step",
}
METHOD = """\
Method
- Cost: each path runs in its own subprocess on the same concatenated audio; CPU is time.process_time() of
  the processing loop only (imports, model load and the seed's first call, i.e. numba JIT and tf.function
  tracing, excluded). serd: 30 ms chunks into a ring, Pipeline.process() after each, every event published
  on a real ZeroMQ PUB (ipc) with this process subscribed. Seed: for each window serd produced, librosa MFCC
  (40 coefficients, 10 ms hop) of the raw 2 s ending there, then Keras predict() of the float twin of serd's
  model (tools.model.build_model, random weights: weights do not change cost). Ratios are seed / serd.
- Hop latency: a second, instrumented serd pass times every stage per 30 ms step; a model hop sums the steps
  after the previous window release (at most 0.5 s of audio back) up to the step that releases the next window,
  so every model run counts in one hop. Windows restart at each speech segment, so a fixed 0.5 s grid of audio
  can hold two model runs (a segment's last window and the next one); that grid's sums are the last row.
- End-to-end: `serd run --source file:X --realtime` as a subprocess with [smoothing] state_interval_ms=500
  (an emotion event every hop) and status_interval_s=1. The paced source hands over the chunk ending at
  sample i at start + i/16000, never earlier, so start <= W - T for every event (W its wall_time_s, T its
  stream_time_s); start is estimated as min(W - T), a bound tight to the daemon's reaction time. Latency =
  receive time - (start + T), T being the end of the window's newest frame (a lower bound, short by at most
  that reaction time); it includes the wait for the rest of the capture chunk ([source] chunk_ms, default 100 ms)
  and of the 30 ms VAD frame. The oldest sample of a hop is 500 ms older: the strict rows add the hop. A second,
  shorter run with chunk_ms = 10 shows what smaller chunks buy in latency and cost in CPU.
  make = W - (start + T), transport = receive - W.
- RSS: VmHWM from /proc; `serd run` sampled every 0.25 s, last sample before it exits at end of file.
  Startup: exec to the wall_time_s of the first `running` status (the daemon's READY).
- analyze: `serd analyze --json --jobs N` on N WAV copies of RAVDESS clips, wall time of the whole command
  (start-up included); marginal = extra audio / extra wall between the smallest and largest file count.
- serd's modules are byte-compiled first, as `pip install` (and `make install`) leaves them, so `serd run` and
  `serd analyze` start like an installed serd even where PYTHONDONTWRITEBYTECODE is set."""


def _get(results: dict, *path: str, default: Any = NAN) -> Any:
    """results[path[0]][path[1]]... or default when a section is missing."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _ratio(top: float, bottom: float) -> float:
    """top / bottom, NaN when bottom is zero or missing."""
    return top / bottom if bottom and math.isfinite(bottom) and math.isfinite(top) else NAN


def summary(results: dict) -> dict:
    """The headline keys (flat, numeric)."""
    audio_s = _get(results, "serd", "audio_s")
    serd_cpu = _ratio(_get(results, "serd", "cpu", "cpu_s"), audio_s)
    seed_cpu = _ratio(_get(results, "seed", "cpu_s"), _get(results, "seed", "audio_s"))
    rss_mb, seed_rss_mb = _get(results, "live", "rss_mb"), _get(results, "seed", "rss_mb")
    return {
        "cpu_per_audio_s": serd_cpu,
        "seed_cpu_per_audio_s": seed_cpu,
        "cpu_ratio": _ratio(seed_cpu, serd_cpu),
        "rss_mb": rss_mb,
        "pipeline_rss_mb": _get(results, "serd", "rss_mb"),
        "seed_rss_mb": seed_rss_mb,
        "rss_ratio": _ratio(seed_rss_mb, rss_mb),
        "hop_p50_ms": _get(results, "serd", "hop_ms", "total", "p50"),
        "hop_p99_ms": _get(results, "serd", "hop_ms", "total", "p99"),
        "hop_max_ms": _get(results, "serd", "hop_ms", "total", "max"),
        "e2e_p50_ms": _get(results, "live", "zmq", "e2e", "p50"),
        "e2e_p99_ms": _get(results, "live", "zmq", "e2e", "p99"),
        "mqtt_e2e_p50_ms": _get(results, "live", "mqtt", "e2e", "p50"),
        "mqtt_e2e_p99_ms": _get(results, "live", "mqtt", "e2e", "p99"),
        "daemon_cpu_per_audio_s": _get(results, "live", "cpu_per_audio_s"),
        "daemon_cpu_ratio": _ratio(seed_cpu, _get(results, "live", "cpu_per_audio_s")),
        "daemon_defaults_cpu_per_audio_s": _get(results, "live_defaults", "cpu_per_audio_s"),
        "startup_s": _get(results, "live", "startup_s"),
        "low_latency_chunk_ms": _get(results, "live_low", "chunk_ms"),
        "low_latency_e2e_p99_ms": _get(results, "live_low", "zmq", "e2e", "p99"),
        "low_latency_mqtt_e2e_p99_ms": _get(results, "live_low", "mqtt", "e2e", "p99"),
        "low_latency_cpu_per_audio_s": _get(results, "live_low", "cpu_per_audio_s"),
        "analyze_x_realtime": _get(results, "analyze", "x_realtime"),
        "analyze_x_realtime_marginal": _get(results, "analyze", "x_realtime_marginal"),
        "audio_s": audio_s,
        "speech_s": _get(results, "serd", "cpu", "speech_s"),
        "whisper_cpu_per_audio_s": _ratio(_get(results, "whisper", "cpu", "cpu_s"), _get(results, "whisper", "audio_s")),
        "whisper_rss_mb": _get(results, "whisper", "rss_mb"),
        "whisper_hop_p99_ms": _get(results, "whisper", "hop_ms", "total", "p99"),
    }


def targets(s: dict) -> list[tuple[str, str, str, bool]]:
    """(what, measured, target, met) rows."""
    return [
        ("serd pipeline CPU per audio second (back to back)", "%.4f CPU-s/s" % s["cpu_per_audio_s"], "<= 0.01", s["cpu_per_audio_s"] <= 0.01),
        ("serd run CPU per audio second (real time, paced file, default [source] chunk_ms)", "%.4f CPU-s/s" % s["daemon_cpu_per_audio_s"], "<= 0.01",
         s["daemon_cpu_per_audio_s"] <= 0.01),
        ("serd run CPU per audio second, as installed (ZeroMQ only, default intervals)", "%.4f CPU-s/s" % s["daemon_defaults_cpu_per_audio_s"],
         "<= 0.005", s["daemon_defaults_cpu_per_audio_s"] <= 0.005),
        ("CPU saved vs seed path", "%.1fx" % s["cpu_ratio"], ">= 20x", s["cpu_ratio"] >= 20),
        ("RSS saved vs seed path", "%.1fx" % s["rss_ratio"], ">= 5x", s["rss_ratio"] >= 5),
        ("per-hop p99 (all stages)", "%.2f ms" % s["hop_p99_ms"], "<= 5 ms", s["hop_p99_ms"] <= 5),
        ("capture -> ZeroMQ subscriber p99 (newest sample of the window)", "%.1f ms" % s["e2e_p99_ms"], "<= 520 ms", s["e2e_p99_ms"] <= 520),
        ("capture -> MQTT subscriber p99 (newest sample of the window)", "%.1f ms" % s["mqtt_e2e_p99_ms"], "<= 520 ms", s["mqtt_e2e_p99_ms"] <= 520),
        ("  strict: oldest sample of the hop, ZeroMQ (p99 + 500 ms)", "%.1f ms" % (s["e2e_p99_ms"] + HOP_MS), "<= 520 ms", s["e2e_p99_ms"] + HOP_MS <= 520),
        ("  strict: oldest sample of the hop, MQTT (p99 + 500 ms)", "%.1f ms" % (s["mqtt_e2e_p99_ms"] + HOP_MS), "<= 520 ms", s["mqtt_e2e_p99_ms"] + HOP_MS <= 520),
        ("  strict, [source] chunk_ms = %d: oldest sample of the hop, ZeroMQ" % s["low_latency_chunk_ms"], "%.1f ms" % (s["low_latency_e2e_p99_ms"] + HOP_MS),
         "<= 520 ms", s["low_latency_e2e_p99_ms"] + HOP_MS <= 520),
        ("  serd run CPU per audio second at chunk_ms = %d" % s["low_latency_chunk_ms"], "%.4f CPU-s/s" % s["low_latency_cpu_per_audio_s"], "<= 0.01",
         s["low_latency_cpu_per_audio_s"] <= 0.01),
        ("serd analyze, one process", "%.0fx real time" % s["analyze_x_realtime"], ">= 300x", s["analyze_x_realtime"] >= 300),
        ("serd run peak RSS (VmHWM)", "%.1f MB" % s["rss_mb"], "<= 80 MB", s["rss_mb"] <= 80),
    ]


def markdown(s: dict, results: dict) -> str:
    """The whole report."""
    lines = ["# serd benchmark", "", _settings_line(results), ""]
    lines += ["| target | measured | target | result |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % (what, value, goal, "pass" if met else "**miss**") for what, value, goal, met in targets(s)]
    lines += ["", "## Processing cost (same audio, same windows)", "", "| path | CPU s | audio s | CPU-s per audio-s | windows | peak RSS MB |", "|---|---|---|---|---|---|"]
    lines.append("| serd pipeline | %.3f | %.1f | %.5f | %d | %.1f |" % (_get(results, "serd", "cpu", "cpu_s"), s["audio_s"], s["cpu_per_audio_s"],
                                                                   len(_get(results, "serd", "windows", default=[])), s["pipeline_rss_mb"]))
    lines.append("| seed (librosa + Keras predict) | %.3f | %.1f | %.5f | %s | %.1f |" % (_get(results, "seed", "cpu_s"), _get(results, "seed", "audio_s"),
                                                                                    s["seed_cpu_per_audio_s"], _get(results, "seed", "windows"), s["seed_rss_mb"]))
    if "whisper" in results:
        lines.append("| serd pipeline, opt-in whisper backend | %.3f | %.1f | %.5f | %d | %.1f |" % (
            _get(results, "whisper", "cpu", "cpu_s"), _get(results, "whisper", "audio_s"), s["whisper_cpu_per_audio_s"],
            len(_get(results, "whisper", "windows", default=[])), s["whisper_rss_mb"]))
    lines.append("")
    if "whisper" in results:
        lines.append("whisper backend per-hop p99 %.1f ms (model %.1f ms); not part of the targets, which are the default model's"
                     % (s["whisper_hop_p99_ms"], _get(results, "whisper", "hop_ms", "model", "p99")))
    lines.append("speech %.1f s of %.1f s audio; serd daemon steady CPU %.4f CPU-s/s; seed load %.1f s, first call %.1f s (excluded)"
                 % (s["speech_s"], s["audio_s"], s["daemon_cpu_per_audio_s"], _get(results, "seed", "load_s"), _get(results, "seed", "warmup_s")))
    lines += ["", "## Per-hop latency (ms)", "", "| stage | p50 | p99 | max |", "|---|---|---|---|"]
    for key, name in STAGE_NAMES.items():
        row = _get(results, "serd", "hop_ms", key, default={})
        lines.append("| %s | %.3f | %.3f | %.3f |" % (name, row.get("p50", NAN), row.get("p99", NAN), row.get("max", NAN)))
    lines += ["", "model hops: %s, of which %s released two windows in one 30 ms step; fixed 0.5 s spans with a model run: %s, "
              "of which %s ran it more than once"
              % tuple(_get(results, "serd", "hop_ms", "hops", key) for key in ("count", "two_windows", "grid_count", "grid_two_windows"))]
    lines += ["", "## End-to-end latency, capture -> subscriber (ms)", "", "| transport | events | p50 | p99 | max | make p99 | transport p99 |", "|---|---|---|---|---|---|---|"]
    for transport in ("zmq", "mqtt"):
        e2e = _get(results, "live", transport, "e2e", default={})
        lines.append("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (transport, e2e.get("n", 0), e2e.get("p50", NAN), e2e.get("p99", NAN), e2e.get("max", NAN),
                                                                  _get(results, "live", transport, "make", "p99"), _get(results, "live", transport, "transport", "p99")))
    lines += ["", "serd run: startup (exec -> READY) %.2f s, peak RSS %.1f MB after %.0f s, exit %s"
              % (s["startup_s"], s["rss_mb"], _get(results, "live", "ran_s"), _get(results, "live", "returncode"))]
    lines += ["", "## serd analyze (WAV files)", "", "| files | jobs | audio s | wall s | CPU s | x real time |", "|---|---|---|---|---|---|"]
    for run in _get(results, "analyze", "runs", default=[]):
        lines.append("| %d | %d | %.1f | %.2f | %.2f | %.0f |" % (run["files"], run["jobs"], run["audio_s"], run["wall_s"], run["cpu_s"], run["x_realtime"]))
    lines += ["", "marginal throughput (one process, start-up excluded): %.0fx real time" % s["analyze_x_realtime_marginal"]]
    for name, error in results["errors"].items():
        lines.append("\n**%s failed**: %s" % (name, error))
    return "\n".join(lines + ["", METHOD])


def _settings_line(results: dict) -> str:
    """Audio, model and thread settings in one line."""
    settings = results["settings"]
    blas = settings["blas"]
    threads = ", ".join("%s=%s" % (k, v) for k, v in blas.items() if v is not None)
    bytecode = "byte-compiled" if settings.get("serd_bytecode") else "compiled at each start"
    return "audio %.1f s (%d RAVDESS clips), model %s, %s CPUs; %s; OPENBLAS_CORETYPE %s; serd modules %s" % (
        settings["audio_s"], settings["clips"], settings["model"], settings["cpus"], threads, blas.get("OPENBLAS_CORETYPE") or "unset",
        bytecode)


def details(results: dict) -> dict:
    """Everything measured except bulky lists."""
    out = {key: value for key, value in results.items() if key not in ("serd", "whisper")}
    for name in ("serd", "whisper"):
        if name in results:
            out[name] = {key: value for key, value in results[name].items() if key != "windows"}
            out[name]["window_count"] = len(results[name].get("windows", []))
    out["blas_pools"] = {"serd": _get(results, "serd", "blas", default=[]), "seed": _get(results, "seed", "blas", default=[])}
    return out


def json_ready(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value
