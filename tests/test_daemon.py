"""The daemon as systemd runs it: a real `serd run` subprocess, a real NOTIFY_SOCKET, real signals."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from serd.audio import load_audio

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


@pytest.fixture
def service(tmp_path, ravdess_clip):
    notify = NotifySocket(tmp_path / "notify")
    config = tmp_path / "serd.conf"
    config.write_text("[zmq]\nendpoint = ipc://%s/events\n[daemon]\nstatus_interval_s = 0.5\n" % tmp_path)
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC), OPENBLAS_NUM_THREADS="1")
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--source", "stdin"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    feeder = Feeder(process.stdin, load_audio(ravdess_clip))
    yield process, notify, feeder, config
    feeder.stopped = True
    if process.poll() is None:
        process.kill()
    process.wait()


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
