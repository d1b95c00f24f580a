"""Two microphones, one daemon, on real parts: two PulseAudio virtual microphones (null sinks, reached by PyAudio as
ALSA devices serd_mic_left and serd_mic_right), different speech played into each at once, one `serd run` with two
[source.NAME] sections; each device's events, on ZeroMQ, MQTT and stdout, follow its own microphone's audio."""

import json
import signal
import subprocess
import sys
import time

import pytest

from serd.events import from_dict
from tests.support_cli import serd
from tests.support_mqtt import Listener, mosquitto  # noqa: F401
from tests.support_pulse import SETTLE_S, SINK_RATE_HZ, PulseServer, require_pulse_tools
from tests.test_daemon import Subscriber

DEVICES = ("left", "right")
SECOND_CLIP = ("Actor_02", "03-01-03-01-02-01-02.flac")
SECOND_START_S = 1.5  # the right microphone starts speaking while the left one still speaks
READY_TIMEOUT_S = 30.0
ASOUNDRC = """pcm.serd_mic_%(device)s {
  type pulse
  device "serd_sink_%(device)s.monitor"
  hint { show on description "serd test microphone %(device)s" }
}
"""
# when serd heard speech, less when it was played (measured: within 0.02 s; PulseAudio and a capture chunk of slack)
EARLIEST_S, LATEST_S = -0.3, 0.5
DURATION_TOLERANCE_S = 0.5


class TwoMics(PulseServer):
    """A PulseAudio daemon with a null sink per device, each one's monitor an ALSA device of its own (via HOME/.asoundrc)."""

    def start(self, keep_alive: bool = True) -> None:
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        server_env = {key: value for key, value in self.env.items() if key != "PULSE_SERVER"}
        sinks = ["--load=module-null-sink sink_name=serd_sink_%s rate=%d channels=1" % (d, SINK_RATE_HZ) for d in DEVICES]
        self._run(["pulseaudio", "-D", "-n", "--exit-idle-time=-1", "--disallow-exit", "--load=module-native-protocol-unix"]
                  + sinks, server_env)
        self._feeds = [subprocess.Popen(  # keep-alive: without a stream playing, a monitor delivers audio in bursts
            ["pacat", "--playback", "--raw", "--rate=%d" % SINK_RATE_HZ, "--channels=1", "--format=s16le",
             "--latency-msec=20", "--device=serd_sink_%s" % device, "/dev/zero"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for device in DEVICES]
        home = self.runtime_dir / "home"
        home.mkdir()
        (home / ".asoundrc").write_text("".join(ASOUNDRC % {"device": device} for device in DEVICES))
        self.env["HOME"] = str(home)

    def play_into(self, device: str, path) -> subprocess.Popen:
        """Start playing a sound file into one device's microphone."""
        return subprocess.Popen(["paplay", "--device=serd_sink_%s" % device, str(path)], env=self.env)

    def stop(self) -> None:
        for feed in getattr(self, "_feeds", []):
            feed.terminate()
            feed.wait(5)
        super().stop()


@pytest.fixture
def two_mics():
    require_pulse_tools()
    server = TwoMics()
    try:
        server.start()
        time.sleep(SETTLE_S)
        yield server
    finally:
        server.stop()


def reference(clip):
    """(speech-started, speech-ended) stream times of the clip run as a file: when its speech is."""
    result = serd("run", "--source", "file:%s" % clip, "--no-zmq", "--stdout", "--device-id", "reference")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    started, ended = ([e for e in events if e["type"] == kind] for kind in ("speech-started", "speech-ended"))
    assert len(started) == len(ended) == 1, events
    return started[0]["stream_time_s"], ended[0]["stream_time_s"]


def read_for(subscriber, seconds):
    """Read what the ZeroMQ subscriber receives for seconds (kept in subscriber.seen)."""
    deadline_s = time.monotonic() + seconds
    while time.monotonic() < deadline_s:
        subscriber.read(100)


def wall_offset_s(events, device):
    """Wall time minus stream time of a device's audio, from its status events (which carry both)."""
    return min(e.wall_time_s - e.stream_time_s for e in events if e.device == device and e.type == "status" and e.audio_s > 0)


def test_two_microphones_each_device_follows_its_own_audio(tmp_path, two_mics, mosquitto, ravdess_clip, ravdess_manifest):  # noqa: F811
    clips = {"left": ravdess_clip, "right": ravdess_manifest.parent.joinpath(*SECOND_CLIP)}
    expected = {device: reference(clip) for device, clip in clips.items()}
    config = tmp_path / "serd.conf"
    config.write_text("[daemon]\nstatus_interval_s = 0.5\n" + "".join(
        "[source.%s]\nsource = mic\ndevice = serd_mic_%s\n" % (device, device) for device in DEVICES))
    endpoint = "ipc://%s/events" % tmp_path
    mqtt = Listener(mosquitto.host, mosquitto.port, ["serd/#", "homeassistant/+/+/+/config"])
    sub = Subscriber(endpoint)
    process = subprocess.Popen(
        [sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--zmq", endpoint, "--stdout",
         "--mqtt", "%s:%d" % (mosquitto.host, mosquitto.port)],
        env=dict(two_mics.env, OPENBLAS_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sub.wait_for_each(lambda e: e.type == "status" and e.state == "running", DEVICES, "running status",
                          READY_TIMEOUT_S)
        played_s = {"left": time.time()}
        left = two_mics.play_into("left", clips["left"])
        time.sleep(SECOND_START_S)
        played_s["right"] = time.time()
        right = two_mics.play_into("right", clips["right"])
        while left.poll() is None or right.poll() is None:
            sub.read(100)
        assert left.returncode == right.returncode == 0
        read_for(sub, 2.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        messages = mqtt.drain(0.5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        sub.close()
        mqtt.close()
    assert process.returncode == 0, err.decode()
    assert all(topic == "serd/%s/%s" % (e.device, e.type) for topic, e in sub.seen), "ZeroMQ topics name each event's device"
    events = [e for _, e in sub.seen]
    for device in DEVICES:
        offset_s = wall_offset_s(events, device)
        started = [e for e in events if e.device == device and e.type == "speech-started"]
        ended = [e for e in events if e.device == device and e.type == "speech-ended"]
        assert len(started) == len(ended) == 1, "%s: one segment, its own (%r)" % (device, [(e.type, e.stream_time_s) for e in started + ended])
        for event, reference_s in zip((started[0], ended[0]), expected[device]):
            heard_s = event.stream_time_s + offset_s - (played_s[device] + reference_s)
            assert EARLIEST_S < heard_s < LATEST_S, "%s %s %.2f s from when it was played" % (device, event.type, heard_s)
        assert abs(ended[0].duration_s - (expected[device][1] - expected[device][0])) < DURATION_TOLERANCE_S
    printed = [from_dict(json.loads(line)) for line in out.splitlines()]
    assert {e.device for e in printed if e.type == "speech-started"} == set(DEVICES), "stdout names each device"
    topics = {topic for topic, _, _ in messages}
    for device in DEVICES:
        assert "serd/%s/events" % device in topics and "serd/%s/state" % device in topics
        assert ("serd/%s/available" % device, "offline") in [m[:2] for m in messages], "each device is offline at the stop"
        assert "homeassistant/sensor/serd_%s/emotion/config" % device in topics, "each device is a Home Assistant device"
        speech = [json.loads(p) for t, p, _ in messages if t == "serd/%s/events" % device and '"speech-started"' in p]
        assert [e["device"] for e in speech] == [device]
    assert "Traceback" not in err.decode()
