"""A real mosquitto broker for tests, on a free port of 127.0.0.1, restartable on the same port."""

from __future__ import annotations

import queue
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

LOCALHOST = "127.0.0.1"
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.01


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


class Mosquitto:
    """One mosquitto process (`mosquitto -c FILE`) that can be stopped and started again on its port."""

    def __init__(self, workdir: Path, extra_config: Iterable[str] = ()) -> None:
        self.host = LOCALHOST
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        lines = ["user root", "listener %d %s" % (self.port, self.host), "persistence false"]
        extra = list(extra_config)
        if not any(line.startswith("allow_anonymous") for line in extra):
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines + extra) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.config_path)],
                                            stdout=log_file, stderr=subprocess.STDOUT)
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline_s:
            if self.process.poll() is not None:
                raise RuntimeError("mosquitto exited: %s" % self.log_path.read_text()[-2000:])
            try:
                socket.create_connection((self.host, self.port), timeout=POLL_S * 10).close()
                return
            except OSError:
                time.sleep(POLL_S)
        raise RuntimeError("mosquitto did not listen on port %d within %.0f s" % (self.port, START_TIMEOUT_S))

    def stop(self) -> None:
        """Terminate the broker (retained messages are lost: persistence is off)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def mosquitto(tmp_path):
    """A running anonymous mosquitto; killed at teardown."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Listener:
    """A test subscriber: collects (topic, payload, retain) tuples from a real broker connection."""

    def __init__(self, host: str, port: int, topics: Iterable[str], username: str | None = None,
                 password: str | None = None, ca_file: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, str, bool]] = queue.Queue()
        self._subscribed = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-%s" % uuid.uuid4().hex[:8],
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe([(topic, 1) for topic in topics])
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.put(codes)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self._subscribed.get(timeout=START_TIMEOUT_S)

    def _on_message(self, client, userdata, message) -> None:
        self.messages.put((message.topic, message.payload.decode("utf-8"), bool(message.retain)))

    def wait_for(self, topic: str, payload: str | None = None, timeout_s: float = 5.0) -> tuple[str, str, bool]:
        """The first message on topic (with this payload, if given); skips others; fails on timeout."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError("no message on %s (payload %r) within %.1f s" % (topic, payload, timeout_s))
            try:
                message = self.messages.get(timeout=remaining_s)
            except queue.Empty:
                continue
            if message[0] == topic and (payload is None or message[1] == payload):
                return message

    def wait_for_all(self, wanted: Iterable[tuple[str, str | None]],
                     timeout_s: float = 5.0) -> dict[tuple[str, str | None], tuple[str, str, bool]]:
        """The first message of each (topic, payload or None) pair, in whatever order they arrive; skips
        others; fails on timeout, naming the pairs still missing."""
        missing = list(wanted)
        found = {}
        deadline_s = time.monotonic() + timeout_s
        while missing:
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError("no message for %r within %.1f s" % (missing, timeout_s))
            try:
                message = self.messages.get(timeout=remaining_s)
            except queue.Empty:
                continue
            for pair in missing:
                if message[0] == pair[0] and (pair[1] is None or message[1] == pair[1]):
                    found[pair] = message
                    missing.remove(pair)
                    break
        return found

    def drain(self, quiet_s: float = 0.2) -> list[tuple[str, str, bool]]:
        """All messages that arrive until none has come for quiet_s."""
        found = []
        while True:
            try:
                found.append(self.messages.get(timeout=quiet_s))
            except queue.Empty:
                return found

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
