"""The daemon as systemd runs it: a real `serd run` subprocess, a real NOTIFY_SOCKET, real signals, real ZeroMQ subscribers."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from serd.audio import load_audio
from serd.events import from_dict
from tests.support_cli import serd

WATCHDOG_USEC = 400_000
CHUNK_SAMPLES = 1600  # 100 ms


class NotifySocket:
    """An AF_UNIX datagram socket bound where the daemon's NOTIFY_SOCKET points."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []

    def collect(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return self.messages

    def wait_for(self, text, timeout_s=20.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(message)
            if text in message.split("\n"):
                return message
        raise AssertionError("no %r from the daemon within %.0f s (got %r)" % (text, timeout_s, self.messages[-5:]))


class Feeder:
    """Writes audio into the daemon's stdin in real time until paused."""

    def __init__(self, pipe, samples):
        self.pipe, self.samples = pipe, samples
        self.running = threading.Event()
        self.running.set()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        position = 0
        while not self.stopped:
            if not self.running.is_set():
                time.sleep(0.02)
                continue
            chunk = self.samples[position : position + CHUNK_SAMPLES]
            position = (position + CHUNK_SAMPLES) % (len(self.samples) - CHUNK_SAMPLES)
            try:
                self.pipe.write(chunk.astype("<i2").tobytes())
                self.pipe.flush()
            except (BrokenPipeError, ValueError):
                return
            time.sleep(0.1)


@contextlib.contextmanager
def daemon_on_stdin(tmp_path, clip, env):
    """`serd run --source stdin` with a config file in tmp_path, fed clip in a loop in real time."""
    config = tmp_path / "serd.conf"
    config.write_text("[zmq]\nendpoint = ipc://%s/events\n[daemon]\nstatus_interval_s = 0.5\n" % tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--source", "stdin"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env, OPENBLAS_NUM_THREADS="1"))
    feeder = Feeder(process.stdin, load_audio(clip))
    try:
        yield process, feeder, config
    finally:
        feeder.stopped = True
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def service(tmp_path, ravdess_clip):
    notify = NotifySocket(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)
    with daemon_on_stdin(tmp_path, ravdess_clip, env) as (process, feeder, config):
        yield process, notify, feeder, config


def test_ready_watchdog_reload_and_stop(service):
    process, notify, feeder, config = service
    notify.wait_for("READY=1")
    notify.messages.clear()
    pings = [m for m in notify.collect(1.5) if m == "WATCHDOG=1"]
    assert len(pings) >= 3, "audio flows, so the watchdog is fed every %d ms" % (WATCHDOG_USEC // 2000)
    assert any(m.startswith("STATUS=") for m in notify.messages)

    feeder.running.clear()
    notify.collect(0.5)
    notify.messages.clear()
    assert "WATCHDOG=1" not in notify.collect(1.5), "a stalled source must starve the watchdog"
    feeder.running.set()
    notify.wait_for("WATCHDOG=1", timeout_s=5)

    config.write_text(config.read_text() + "[smoothing]\nhysteresis = 0.2\n")
    process.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1")
    notify.wait_for("READY=1")

    config.write_text("[vad]\naggressiveness = 9\n")
    process.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1")
    notify.wait_for("READY=1")
    notify.wait_for("WATCHDOG=1", timeout_s=5)
    assert process.poll() is None, "a bad config on reload must not kill the daemon"

    process.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", timeout_s=5)
    feeder.stopped = True
    assert process.wait(timeout=5) == 0
    stderr = process.stderr.read().decode()
    assert "reload failed, keeping the running configuration: [vad] aggressiveness" in stderr
    assert "Traceback" not in stderr


def test_sigint_stops_with_exit_2(service):
    process, notify, feeder, _ = service
    notify.wait_for("READY=1")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 2


class Subscriber:
    """A real SUB socket on the daemon's endpoint; remembers every (topic, event) it has read."""

    def __init__(self, endpoint):
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"serd/")
        self.sock.connect(endpoint)
        self.seen = []

    def read(self, timeout_ms):
        """One message, or None when none comes within timeout_ms."""
        if not self.sock.poll(timeout_ms):
            return None
        topic, body = self.sock.recv_multipart()
        self.seen.append((topic.decode(), from_dict(json.loads(body))))
        return body

    def wait_for(self, predicate, what, timeout_s=20.0):
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            if self.read(100) is not None and predicate(self.seen[-1][1]):
                return self.seen[-1][1]
        raise AssertionError("no %s event within %.0f s (got %r)" % (what, timeout_s, [e.type for _, e in self.seen[-5:]]))

    def wait_for_each(self, predicate, devices, what, timeout_s=20.0):
        """Waits until an event that predicate accepts has come from every device, in any order."""
        missing = set(devices)
        deadline_s = time.monotonic() + timeout_s
        while missing and time.monotonic() < deadline_s:
            if self.read(100) is not None and predicate(self.seen[-1][1]):
                missing.discard(self.seen[-1][1].device)
        if missing:
            raise AssertionError("no %s event from %s within %.0f s" % (what, sorted(missing), timeout_s))

    def close(self):
        self.sock.close(linger=0)
        self.context.term()


def test_a_subscriber_waiting_before_a_fast_file_run_gets_every_event(tmp_path, ravdess_clip):
    endpoint = "ipc://%s/events" % tmp_path
    sub = Subscriber(endpoint)
    try:
        run = serd("run", "--source", "file:%s" % ravdess_clip, "--zmq", endpoint, "--stdout", "--device-id", "fast")
        bodies = []
        while (body := sub.read(200)) is not None:
            bodies.append(body)
    finally:
        sub.close()
    assert run.returncode == 0, run.stderr.decode()
    printed = run.stdout.splitlines()
    assert [e.type for e in map(from_dict, map(json.loads, printed))].count("speech-started") >= 1
    assert bodies == printed, "ZeroMQ carries every event stdout printed, from the first 'starting' status"


def test_reload_that_renames_the_device_loses_no_zmq_event(tmp_path, ravdess_clip):
    env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    sub = Subscriber("ipc://%s/events" % tmp_path)
    try:
        with daemon_on_stdin(tmp_path, ravdess_clip, env) as (process, _, config):
            started = sub.wait_for(lambda e: e.type == "speech-started", "speech-started")
            config.write_text(config.read_text() + "device_id = renamed\n")
            process.send_signal(signal.SIGHUP)
            reloaded = sub.wait_for(lambda e: e.type == "status" and e.message == "configuration reloaded",
                                    "reload status", timeout_s=5.0)
    finally:
        sub.close()
    assert reloaded.device == "renamed"
    ended = [e for _, e in sub.seen if e.type == "speech-ended"]
    assert started.segment in [e.segment for e in ended], "the open segment's end reaches the subscriber"
    assert all(topic == "serd/%s/%s" % (e.device, e.type) for topic, e in sub.seen), "topics name each event's device"


def test_status_keeps_stream_time_order_on_a_fast_stdin_source(tmp_path, ravdess_clip):
    config = tmp_path / "fast.conf"
    config.write_text("[daemon]\nstatus_interval_s = 0.01\n")
    audio = np.tile(load_audio(ravdess_clip), 40).astype("<i2").tobytes()  # ~2.5 min, written at once: the ring runs ahead
    run = subprocess.run([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--source", "stdin",
                          "--no-zmq", "--stdout"], input=audio, capture_output=True, timeout=120,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr.decode()
    events = [json.loads(line) for line in run.stdout.splitlines()]
    times = [e["stream_time_s"] for e in events]
    assert sum(e["type"] == "status" and e["state"] == "running" for e in events) >= 3
    assert sum(e["type"] == "speech-started" for e in events) >= 10
    late = [(a, b) for a, b in zip(events, events[1:]) if b["stream_time_s"] < a["stream_time_s"]]
    assert not late, "an event with an earlier stream time came after a later one: %s" % late[:2]
    assert times[-1] >= len(audio) / 2 / 16000 - 0.05
    statuses = [e for e in events if e["type"] == "status"]
    assert statuses[-1]["audio_s"] == round(len(audio) / 2 / 16000, 3), "audio_s still counts what the source delivered"
