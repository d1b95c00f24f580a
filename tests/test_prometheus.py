"""Prometheus metrics: a running serd run scraped over real HTTP and parsed with prometheus_client's own parser."""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support_cli import SERD, serd
from tests.support_mqtt import free_port

SCRAPE_TIMEOUT_S = 60.0
POLL_S = 0.2
LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def scrape(port: int) -> dict:
    """{(sample name, frozen labels): value} of one scrape."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def running(tmp_path, ravdess_clip):
    """A realtime serd run of a real clip serving metrics, its stdout events collected to a file."""
    port = free_port()
    out = (tmp_path / "events.jsonl").open("wb")
    process = subprocess.Popen(SERD + ["run", "--source", "file:%s" % ravdess_clip, "--realtime", "--stdout",
                                       "--zmq", "ipc://%s/events" % tmp_path, "--metrics", str(port), "--device-id", "m"],
                               stdout=out, stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    yield process, port, tmp_path / "events.jsonl"
    if process.poll() is None:
        process.terminate()
    process.wait(10)
    out.close()


def test_a_running_daemon_is_scraped_with_every_metric(running):
    process, port, events_path = running
    deadline_s, samples = time.monotonic() + SCRAPE_TIMEOUT_S, {}
    while time.monotonic() < deadline_s:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if (value(samples, "serd_events_total", type="speech-ended") or 0) >= 1:
            break
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(POLL_S)
    else:
        raise AssertionError("no speech-ended counted within %.0f s: %r" % (SCRAPE_TIMEOUT_S, sorted(samples)[:20]))
    build = [labels for (name, labels) in samples if name == "serd_build_info"]
    assert build and dict(build[0])["model"] == "serd-emotion" and dict(build[0])["version"]
    assert 0 < value(samples, "serd_audio_seconds_total") < SCRAPE_TIMEOUT_S
    assert value(samples, "serd_speech_seconds_total") > 0
    assert value(samples, "serd_events_total", type="speech-started") >= 1
    assert value(samples, "serd_events_total", type="status") >= 1
    assert value(samples, "serd_hop_seconds_count") >= 1 and value(samples, "serd_hop_seconds_sum") > 0
    assert value(samples, "serd_hop_seconds_bucket", le="+Inf") == value(samples, "serd_hop_seconds_count")
    assert value(samples, "serd_ring_overruns_total") == 0 and value(samples, "serd_lost_samples_total") == 0
    assert value(samples, "serd_dropped_events_total", publisher="stdout") == 0
    assert value(samples, "serd_dropped_events_total", publisher="zmq") == 0
    assert value(samples, "serd_reconnects_total", what="source") == 0
    for label in LABELS:  # after a speech-ended the label probabilities are 0 (silence) or the latest state
        assert 0.0 <= value(samples, "serd_emotion_probability", label=label) <= 1.0
    assert process.wait(SCRAPE_TIMEOUT_S) == 0
    printed = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert sum(e["type"] == "speech-started" for e in printed) >= value(samples, "serd_events_total", type="speech-started")


def test_a_busy_metrics_port_is_one_error_status_and_the_daemon_goes_on(tmp_path, ravdess_clip):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serd("run", "--source", "file:%s" % ravdess_clip, "--stdout", "--zmq", "ipc://%s/events" % tmp_path,
                      "--metrics", "127.0.0.1:%d" % port)
    assert result.returncode == 0, result.stderr.decode()
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [e["message"] for e in printed if e["type"] == "status" and e["state"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("metrics: cannot listen on 127.0.0.1:%d" % port)
    assert "emotion-changed" in {e["type"] for e in printed}


def test_a_bad_metrics_address_is_a_config_error():
    result = serd("run", "--source", "stdin", "--metrics", "localhost:99999")
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "[metrics] listen" in lines[0]


def test_serd_run_without_metrics_never_loads_prometheus_client(tmp_path, ravdess_clip):
    script = ("import sys\nfrom serd.config import load_config\nfrom serd.daemon import Daemon\n"
              "config = load_config(overrides={'source': {'source': 'file:%s'}, 'zmq': {'enabled': False}})\n"
              "assert Daemon(config).run() == 0\nprint(sorted(m for m in sys.modules if m.startswith('prometheus_client')))\n"
              % ravdess_clip)
    result = subprocess.run([SERD[0], "-c", script], capture_output=True, text=True, timeout=SCRAPE_TIMEOUT_S,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
