"""End to end on real parts: speech played into a PulseAudio virtual microphone, `serd run --source mic`
as a subprocess, events received over ZeroMQ (ipc) and MQTT (a real mosquitto); SIGTERM says offline."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import zmq

from serd.events import SILENCE_LABEL, UNCERTAIN_LABEL, from_dict
from serd.model import load_model
from tests.support_mqtt import Listener, mosquitto  # noqa: F401
from tests.support_pulse import virtual_mic  # noqa: F401

DEVICE = "e2e"
READY_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 20.0


class ZmqCollector:
    """A real SUB socket on the daemon's endpoint, collecting events in a thread."""

    def __init__(self, endpoint: str):
        self.events: queue.Queue = queue.Queue()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"serd/%s/" % DEVICE.encode())
        self._socket.setsockopt(zmq.RCVTIMEO, 100)
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                topic, payload = self._socket.recv_multipart()
            except zmq.Again:
                continue
            event = from_dict(json.loads(payload))
            assert topic.decode() == "serd/%s/%s" % (DEVICE, event.type)
            self.events.put(event)

    def wait_for(self, predicate, timeout_s: float, what: str):
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if predicate(event):
                return event
        raise AssertionError("no %s event over ZeroMQ within %.0f s" % (what, timeout_s))

    def close(self):
        self._stop.set()
        self._thread.join()
        self._socket.close(0)
        self._context.term()


@pytest.fixture
def daemon(tmp_path, virtual_mic, mosquitto):  # noqa: F811
    endpoint = "ipc://%s/events" % tmp_path
    env = dict(virtual_mic.env, OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, "-m", "serd.cli", "run", "--source", "mic", "--zmq", endpoint,
               "--mqtt", "%s:%d" % (mosquitto.host, mosquitto.port), "--device-id", DEVICE]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield process, endpoint
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_speech_into_the_microphone_comes_out_as_events(daemon, virtual_mic, mosquitto, ravdess_clip):  # noqa: F811
    process, endpoint = daemon
    labels = load_model().labels
    listener = Listener(mosquitto.host, mosquitto.port, ["serd/%s/#" % DEVICE])
    zmq_events = ZmqCollector(endpoint)
    try:
        listener.wait_for("serd/%s/available" % DEVICE, "online", timeout_s=READY_TIMEOUT_S)
        zmq_events.wait_for(lambda e: e.type == "status" and e.state == "running", READY_TIMEOUT_S, "running status")

        virtual_mic.play(ravdess_clip)

        started = zmq_events.wait_for(lambda e: e.type == "speech-started", EVENT_TIMEOUT_S, "speech-started")
        changed = zmq_events.wait_for(lambda e: e.type == "emotion-changed", EVENT_TIMEOUT_S, "emotion-changed")
        assert changed.label in labels + (UNCERTAIN_LABEL,) and changed.previous == SILENCE_LABEL
        assert set(changed.probabilities) == set(labels)
        assert abs(sum(changed.probabilities.values()) - 1.0) < 0.01
        assert changed.segment == started.segment and changed.stream_time_s > started.stream_time_s
        ended = zmq_events.wait_for(lambda e: e.type == "speech-ended", EVENT_TIMEOUT_S, "speech-ended")
        assert 2.0 < ended.duration_s < 5.0, "the clip holds about 3 s of speech"
        silence = zmq_events.wait_for(lambda e: e.type == "emotion-changed", EVENT_TIMEOUT_S, "silence")
        assert silence.label == SILENCE_LABEL

        topic, payload, retained = listener.wait_for("serd/%s/events" % DEVICE, timeout_s=EVENT_TIMEOUT_S)
        assert not retained
        state_topic = "serd/%s/state" % DEVICE
        _, state, _ = listener.wait_for(state_topic, timeout_s=EVENT_TIMEOUT_S)
        assert json.loads(state)["label"] in labels + (SILENCE_LABEL, UNCERTAIN_LABEL)

        late = Listener(mosquitto.host, mosquitto.port, [state_topic])
        _, retained_state, retained_flag = late.wait_for(state_topic, timeout_s=5)
        late.close()
        assert retained_flag and json.loads(retained_state)["label"] == SILENCE_LABEL

        started_s = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started_s < 3.0, "TERM must stop the daemon within a couple of seconds"
        listener.wait_for("serd/%s/available" % DEVICE, "offline", timeout_s=5)
    finally:
        zmq_events.close()
        listener.close()
    assert "Traceback" not in process.stderr.read().decode()
