"""The console monitor against real ZeroMQ publishers and a real mosquitto."""

import json
import logging
import re
import signal
import subprocess
import threading
import time

import pytest
import zmq

from serd.config import MqttConfig
from serd.events import UNCERTAIN_LABEL, EmotionChanged, EmotionState, SpeechEnded, Status, from_dict
from serd.monitor import confidence_bar, format_line, run_monitor
from serd.publish import MqttPublisher, ZmqPublisher
from tests.support_cli import SERD
from tests.support_mqtt import free_port, mosquitto  # noqa: F401

DEVICE = "lab"
WAIT_S = 5.0
LINE_START = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  lab  ")


def angry(t=1.0):
    return EmotionChanged(device=DEVICE, stream_time_s=t, wall_time_s=time.time(), segment=2, label="angry",
                          previous="neutral", confidence=0.82, probabilities={"angry": 0.82, "neutral": 0.18})


def calm_state(t=2.0):
    return EmotionState(device=DEVICE, stream_time_s=t, wall_time_s=time.time(), segment=2, label="calm",
                        confidence=0.5, probabilities={"calm": 0.5})


def ended(t=3.0):
    return SpeechEnded(device=DEVICE, stream_time_s=t, wall_time_s=time.time(), segment=2, duration_s=1.5)


def status(t=4.0):
    return Status(device=DEVICE, stream_time_s=t, wall_time_s=time.time(), state="running", audio_s=4.0,
                  overruns=1, lost_samples=160, dropped={"mqtt": 3, "zmq": 0})


class Sink:
    """A thread-safe text stream that remembers its lines."""

    def __init__(self):
        self._text = ""
        self._changed = threading.Condition()

    def write(self, text):
        with self._changed:
            self._text += text
            self._changed.notify_all()

    def flush(self):
        pass

    @property
    def lines(self):
        with self._changed:
            return self._text.splitlines()

    def wait_for(self, needle, timeout_s=WAIT_S, publish=None, count=1):
        """The count-th line containing needle; calls publish() while waiting (slow joiner)."""
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            found = [line for line in self.lines if needle in line]
            if len(found) >= count:
                return found[count - 1]
            if publish is not None:
                publish()
            with self._changed:
                self._changed.wait(0.05)
        raise AssertionError("no line with %r in %r" % (needle, self.lines))


class Monitor:
    """run_monitor in a thread."""

    def __init__(self, **kwargs):
        self.out = Sink()
        self.stop = threading.Event()
        self.result = []
        args = dict(zmq_endpoint=None, mqtt_host=None, mqtt_port=1883, as_json=False)
        args.update(kwargs)
        self.thread = threading.Thread(
            target=lambda: self.result.append(run_monitor(out=self.out, stop=self.stop, **args)), daemon=True)
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(3.0)
        assert not self.thread.is_alive(), "monitor did not stop"
        return self.result[0]


def test_bar_is_drawn_in_eighths():
    assert confidence_bar(0.82) == "████████▏ "
    assert confidence_bar(1.0) == "██████████"
    assert confidence_bar(0.0) == " " * 10
    assert confidence_bar(1.7) == "██████████"


def test_line_formats():
    expected = r"emotion-changed +angry     0\.82 ████████▏  \(was neutral\)$"
    assert re.match(LINE_START.pattern + expected, format_line(angry()))
    assert format_line(ended()).endswith("speech-ended    segment 2  1.50 s")
    assert "running  audio 4.0 s  overruns 1  lost 160 samples  dropped mqtt=3 zmq=0" in format_line(status())


def test_uncertain_line_shows_its_top_probability():
    event = EmotionChanged(device=DEVICE, stream_time_s=1.0, wall_time_s=time.time(), segment=2, label=UNCERTAIN_LABEL,
                           previous="angry", confidence=0.38, probabilities={"angry": 0.34, "neutral": 0.38})
    assert format_line(event).endswith("emotion-changed uncertain 0.38 %s (was angry)" % confidence_bar(0.38))


def test_zmq_lines_and_publisher_restart(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    monitor = Monitor(zmq_endpoint=endpoint)
    pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    line = monitor.out.wait_for("emotion-changed", publish=lambda: pub.publish(angry()))
    assert LINE_START.match(line) and "angry     0.82 ████████▏" in line
    pub.publish(ended())
    pub.publish(status())
    assert "segment 2  1.50 s" in monitor.out.wait_for("speech-ended")
    assert "overruns 1" in monitor.out.wait_for("status")
    pub.close()
    restarted = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    line = monitor.out.wait_for("emotion-state", publish=lambda: restarted.publish(calm_state()))
    assert "calm      0.50 █████" in line
    restarted.close()
    assert monitor.finish() == 0


def test_zmq_json_lines_are_the_event_json(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    monitor = Monitor(zmq_endpoint=endpoint, as_json=True)
    pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    event = angry()
    line = monitor.out.wait_for('"emotion-changed"', publish=lambda: pub.publish(event))
    pub.close()
    assert monitor.finish() == 0
    assert from_dict(json.loads(line)) == event
    assert all(from_dict(json.loads(text)) == event for text in monitor.out.lines)


def test_bad_and_foreign_messages_are_skipped_with_a_warning(tmp_path, caplog):
    endpoint = "ipc://%s/events" % tmp_path
    monitor = Monitor(zmq_endpoint=endpoint)
    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    raw.bind(endpoint)
    good = json.dumps(ended().to_dict()).encode()
    garbage = [[b"serd/lab/x", b"\xff not json"], [b"single frame"], [b"serd/lab/x", b'{"schema": 99}'],
               [b"serd/lab/x", b'{"schema": 1, "type": ["list"]}'], [b"other/topic", b"[1, 2]"],
               [b"serd/lab/emotion-state", json.dumps(dict(calm_state().to_dict(), confidence="high")).encode()]]

    def send_all():
        for frames in garbage:
            raw.send_multipart(frames)
        raw.send_multipart([b"serd/lab/speech-ended", good])

    with caplog.at_level(logging.WARNING):
        monitor.out.wait_for("speech-ended", publish=send_all)
        result = monitor.finish()
    raw.close(linger=0)
    context.term()
    assert result == 0
    warnings = [record.getMessage() for record in caplog.records if record.name in ("serd.monitor", "serd.client")]
    assert any("not JSON text" in text for text in warnings)
    assert any("1 frames" in text for text in warnings)
    assert any("unsupported schema 99" in text for text in warnings)
    assert any("malformed event" in text for text in warnings)
    assert all("\n" not in text for text in warnings)
    assert all("speech-ended" in line for line in monitor.out.lines)


def test_mqtt_lines_survive_a_broker_restart(mosquitto):
    monitor = Monitor(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
    pub = MqttPublisher(MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port), DEVICE)
    assert "online" in monitor.out.wait_for("available")
    pub.publish(angry())
    pub.publish(calm_state())
    assert "angry     0.82 ████████▏" in monitor.out.wait_for("emotion-changed")
    assert "calm      0.50" in monitor.out.wait_for("emotion-state")
    mosquitto.stop()
    mosquitto.start()
    monitor.out.wait_for("online", count=2)
    pub.publish(ended())
    assert "segment 2  1.50 s" in monitor.out.wait_for("speech-ended")
    pub.close()
    assert "offline" in monitor.out.wait_for("offline")
    assert monitor.finish() == 0
    lines = monitor.out.lines
    assert sum("emotion-changed" in line for line in lines) <= 2, "state and events must not double every change"


def test_mqtt_monitor_waits_for_a_broker_that_is_not_there_yet(mosquitto):
    mosquitto.stop()
    monitor = Monitor(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, as_json=True)
    time.sleep(0.3)
    mosquitto.start()
    pub = MqttPublisher(MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port), DEVICE)
    event = ended()
    line = monitor.out.wait_for("speech-ended", publish=lambda: pub.publish(event), timeout_s=8.0)
    pub.close()
    assert monitor.finish() == 0
    assert from_dict(json.loads(line)) == event
    assert not any("available" in line or "online" in line for line in monitor.out.lines)


def test_monitor_without_a_source_is_an_error():
    with pytest.raises(Exception, match="endpoint or an MQTT host"):
        run_monitor(None, None, 1883, False, Sink(), threading.Event())


QUIET_S = 0.3


def test_monitor_says_where_it_waits_and_once_that_nothing_came(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    notices = Sink()
    monitor = Monitor(zmq_endpoint=endpoint, notices=notices, quiet_notice_s=QUIET_S)
    assert notices.wait_for("waiting") == "serd monitor: waiting for events on %s (Ctrl-C to stop)" % endpoint
    quiet = notices.wait_for("no events yet")
    assert quiet.startswith("serd monitor: no events yet after 0 s on %s" % endpoint)
    time.sleep(4 * QUIET_S)
    assert monitor.finish() == 0
    assert sum("no events yet" in line for line in notices.lines) == 1
    assert monitor.out.lines == [], "notices never go to the event output"


def test_monitor_stays_quiet_about_silence_once_events_arrive(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    notices = Sink()
    monitor = Monitor(zmq_endpoint=endpoint, notices=notices, quiet_notice_s=1.0)
    pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    monitor.out.wait_for("speech-ended", publish=lambda: pub.publish(ended()), timeout_s=0.9)
    time.sleep(1.5)
    pub.close()
    assert monitor.finish() == 0
    assert [line for line in notices.lines if "no events" in line] == []


def test_mqtt_monitor_says_which_broker_it_waits_on(mosquitto):
    notices = Sink()
    monitor = Monitor(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, notices=notices, quiet_notice_s=QUIET_S)
    where = "MQTT broker %s:%d (topics serd/+/...)" % (mosquitto.host, mosquitto.port)
    assert notices.wait_for("waiting") == "serd monitor: waiting for events on %s (Ctrl-C to stop)" % where
    assert where in notices.wait_for("no events yet")
    assert monitor.finish() == 0


@pytest.mark.parametrize("where", [["--zmq", "tcp://nohost.invalid:5555"], ["--mqtt", "nohost.invalid"],
                                   ["--zmq", "tcp://nohost.invalid"], ["--zmq", "tcp://:5555"]])
def test_monitor_unresolvable_or_malformed_host_is_a_one_line_error(where):
    result = subprocess.run(SERD + ["monitor"] + where, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("serd: error: monitor: ") and ("cannot resolve host 'nohost.invalid'" in line or "is not tcp://HOST:PORT" in line)


class MonitorProcess:
    """`serd monitor ARGS` as a user runs it, stderr in a file read with a deadline (a missing line fails, never hangs)."""

    def __init__(self, tmp_path, *args):
        self.stderr_path = tmp_path / "monitor-stderr.txt"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(SERD + ["monitor", *args], stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    def wait_for(self, needle, timeout_s=WAIT_S):
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            text = self.stderr_path.read_text()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError("no %r in the monitor's stderr %r" % (needle, self.stderr_path.read_text()))

    def interrupt(self):
        """SIGINT, then the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def test_monitor_resolvable_tcp_host_waits(tmp_path):
    monitor = MonitorProcess(tmp_path, "--zmq", "tcp://localhost:%d" % free_port())
    monitor.wait_for("waiting for events on tcp://localhost:")
    assert monitor.process.poll() is None
    monitor.interrupt()


@pytest.mark.parametrize("transport", ["zmq", "mqtt"])
def test_monitor_exits_2_on_sigint_on_every_transport(transport, tmp_path, mosquitto):
    where = ["--zmq", "ipc://%s/events" % tmp_path] if transport == "zmq" else ["--mqtt", "%s:%d" % (mosquitto.host, mosquitto.port)]
    monitor = MonitorProcess(tmp_path, *where)
    monitor.wait_for("waiting for events on")
    assert monitor.interrupt() == 2
    assert "Traceback" not in monitor.stderr_path.read_text()
