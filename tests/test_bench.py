"""The benchmark's CI mode runs end to end and reports every headline figure (no timing assertions)."""

import json
import math
import os
import subprocess
import sys

from tests.conftest import PROJECT_DIR, SHARED_DIR

BENCH_TIMEOUT_S = 300
HEADLINE_KEYS = (
    "cpu_per_audio_s", "seed_cpu_per_audio_s", "cpu_ratio", "rss_mb", "seed_rss_mb", "rss_ratio",
    "hop_p99_ms", "e2e_p99_ms", "mqtt_e2e_p99_ms", "startup_s", "analyze_x_realtime", "daemon_cpu_per_audio_s",
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
