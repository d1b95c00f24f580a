"""The benchmark's CI mode runs end to end and reports every headline figure (no timing assertions)."""

import json
import math
import os
import subprocess
import sys

from tests.conftest import PROJECT_DIR, SHARED_DIR
from tools.bench import pipeline
from tools.bench.pipeline import CHUNK_SAMPLES

BENCH_TIMEOUT_S = 300
HEADLINE_KEYS = (
    "cpu_per_audio_s", "seed_cpu_per_audio_s", "cpu_ratio", "rss_mb", "seed_rss_mb", "rss_ratio",
    "hop_p99_ms", "e2e_p99_ms", "mqtt_e2e_p99_ms", "startup_s", "analyze_x_realtime", "daemon_cpu_per_audio_s",
    "daemon_defaults_cpu_per_audio_s",
    "low_latency_chunk_ms", "low_latency_e2e_p99_ms", "low_latency_cpu_per_audio_s",
    "whisper_cpu_per_audio_s", "whisper_rss_mb",  # the opt-in backend ([train] brings its packages)
)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def test_short_benchmark_reports_every_key(ravdess_manifest):
    """`python -m tools.bench --short --json` exits 0 with one JSON object of positive numbers."""
    env = dict(os.environ, SERD_SHARED_DIR=str(SHARED_DIR))
    done = subprocess.run([sys.executable, "-m", "tools.bench", "--short", "--json", "--manifest", str(ravdess_manifest)],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    for key in HEADLINE_KEYS:
        value = report.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, "%s = %r" % (key, value)
    assert report["details"]["errors"] == {}
    assert all(report["blas"][name] == "1" for name in THREAD_VARIABLES), report["blas"]
    assert report["blas"]["OPENBLAS_CORETYPE"] == os.environ.get("OPENBLAS_CORETYPE")
    assert report["details"]["serd"]["window_count"] == report["details"]["seed"]["windows"] > 0
    assert report["details"]["settings"]["serd_bytecode"] is True  # measured like an installed serd
    assert list((PROJECT_DIR / "serd" / "__pycache__").glob("analyze.*.pyc"))


def steps(windows_at: dict[int, int], n_steps: int) -> list[dict]:
    """30 ms steps of 1 ms wall each (model runs add 2 ms), releasing windows_at[k] windows at step k."""
    return [{"end": (k + 1) * CHUNK_SAMPLES, "total_s": 0.001 + 0.002 * windows_at.get(k, 0), "cpu_s": 0.001,
             "stages": {"vad": 0.001, "model": 0.002 * windows_at.get(k, 0)}, "windows": windows_at.get(k, 0)}
            for k in range(n_steps)]


def test_every_model_run_falls_in_one_model_hop_of_at_most_half_a_second():
    """A segment's last window 5 steps after the one before, a long silence, then a new segment: three hops,
    one model run each, and the silence before the new segment counts only its last 0.5 s (16 steps of 30 ms)."""
    chunks = steps({20: 1, 25: 1, 300: 1}, 320)
    hops = pipeline.model_hops(chunks)
    assert [hop["released"] for hop in hops] == [1, 1, 1]
    assert [round(hop["model"], 6) for hop in hops] == [0.002] * 3
    steps_per_hop = pipeline.HOP_SAMPLES // CHUNK_SAMPLES + 1  # 16 whole steps and the one reaching into the hop
    assert [round(hop["vad"] * 1000) for hop in hops] == [steps_per_hop, 5, steps_per_hop]
    grid = pipeline.grid_hops(chunks)  # steps 20 and 25 share the fixed span of samples 8000-15999
    assert [hop["released"] for hop in grid] == [2, 1]
    table = pipeline.hop_latency(chunks)
    assert table["hops"] == {"count": 3, "two_windows": 0, "grid_count": 2, "grid_two_windows": 1}
    assert table["model"]["max"] == 2.0 and table["grid_total"]["max"] > table["total"]["max"]


def test_a_short_soak_feeds_every_second_and_loses_no_event(ravdess_manifest, tmp_path):
    """`python -m tools.bench --soak` (a few minutes of audio): the daemon takes it all, exits 0, stdout and a
    healthy ZeroMQ subscriber see the same events, nothing is counted as dropped (no timing assertions)."""
    out = tmp_path / "soak.json"
    env = dict(os.environ, SERD_SHARED_DIR=str(SHARED_DIR))
    done = subprocess.run([sys.executable, "-m", "tools.bench.soak", "--hours", "0.05", "--manifest", str(ravdess_manifest),
                           "--out", str(out)], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=BENCH_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["last_status_audio_s"] == 180.0, "every second written was processed"
    assert result["events"]["stdout"] == result["events"]["zmq"] > 0
    assert set(result["dropped"]) == {"stdout", "zmq"} and not any(result["dropped"].values())
    assert result["rss_mb"]["peak"] > 0 and result["rss_samples"] >= 1
