"""Benchmark of the live daemon: `serd run --source file:X --realtime` with real ZeroMQ and MQTT subscribers.

Method (end-to-end latency). The paced file source hands chunk k to the ring when its last sample
would have been heard: the chunk ending at sample i is delivered at start + i / 16000 (monotonic
clock), never earlier. Every event carries stream_time_s T (a sample index / 16000) and
wall_time_s W (time.time() when the daemon made it); so start <= W - T for every event made
after the source started, and min(W - T) over those events is an upper bound on the source's
start in wall time, tight to the daemon's smallest reaction time (a fraction of a millisecond).
latency = receive_wall - (start + T) is then a lower bound of the true latency, short of it by at
most that reaction time. It splits into making (W - start - T: waiting for the loop, VAD,
features, model, smoother) and transport (receive - W). T of an emotion event is the last sample
of its window; the first sample of the hop it reports is one hop (0.5 s) older.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from tools.bench.proc import cpu_s, vm_hwm_mb

LOCALHOST = "127.0.0.1"
DEVICE = "bench"
BROKER_START_TIMEOUT_S = 5.0
POLL_S = 0.01
SAMPLE_INTERVAL_S = 0.25
EXIT_GRACE_S = 60.0
DRAIN_S = 0.5
RECONNECT_IVL_MS = 10
LATENCY_TYPES = ("emotion-changed", "emotion-state", "speech-ended")
LIVE_CONFIG = """[smoothing]
state_interval_ms = 500
[daemon]
status_interval_s = 1
log_level = warning
"""  # events often enough to time them, on ZeroMQ and MQTT
DEFAULTS_CONFIG = """[daemon]
log_level = warning
"""  # serd run as installed: ZeroMQ only, the default state and status intervals


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen, int]:
    """A mosquitto on a free port of 127.0.0.1, up and listening."""
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text("user root\nlistener %d %s\nallow_anonymous true\npersistence false\n" % (port, LOCALHOST))
    with (folder / "mosquitto.log").open("ab") as log_file:
        broker = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    deadline_s = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline_s:
        try:
            socket.create_connection((LOCALHOST, port), timeout=POLL_S * 10).close()
            return broker, port
        except OSError:
            time.sleep(POLL_S)
    broker.kill()
    raise RuntimeError("mosquitto did not listen on port %d" % port)


class ZmqListener(threading.Thread):
    """SUB socket on the daemon's endpoint; records (receive wall time, event dict)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="bench-zmq", daemon=True)
        import zmq

        self.received: list[tuple[float, dict]] = []
        self.stop_event = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(endpoint)

    def run(self) -> None:
        """Receive until stopped."""
        while not self.stop_event.is_set():
            if self._socket.poll(int(POLL_S * 1000)):
                frames = self._socket.recv_multipart()
                self.received.append((time.time(), json.loads(frames[-1])))
        self._socket.close(linger=0)
        self._context.term()


class MqttListener:
    """A paho MQTT 5 client subscribed to serd/DEVICE/#; records (receive wall time, topic, event dict)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: list[tuple[float, str, dict]] = []
        self.subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="serd-bench", protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda client, *_: client.subscribe("serd/%s/#" % DEVICE, qos=1)
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(LOCALHOST, port)
        self._client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        """Record JSON payloads (availability strings are skipped)."""
        now_s = time.time()
        if message.payload.startswith(b"{"):
            self.received.append((now_s, message.topic, json.loads(message.payload)))

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


def run_daemon(folder: Path, audio_path: Path, model_path: str, env: dict, audio_s: float, chunk_ms: int | None = None,
               defaults: bool = False) -> dict:
    """serd run over the file in real time ([source] chunk_ms if given, else its default); returns receive logs
    and process samples. With defaults, the daemon as installed (DEFAULTS_CONFIG: no MQTT, default intervals)."""
    broker, port = start_mosquitto(folder)
    endpoint = "ipc://%s" % (folder / "serd.ipc")
    config_path = folder / "live.conf"
    config_path.write_text((DEFAULTS_CONFIG if defaults else LIVE_CONFIG) + ("[source]\nchunk_ms = %d\n" % chunk_ms if chunk_ms else ""))
    zmq_listener, mqtt_listener = ZmqListener(endpoint), MqttListener(port)
    zmq_listener.start()
    mqtt_listener.subscribed.wait(BROKER_START_TIMEOUT_S)
    command = [sys.executable, "-m", "serd.cli", "run", "--config", str(config_path), "--source", "file:%s" % audio_path,
               "--realtime", "--model", model_path, "--zmq", endpoint, "--device-id", DEVICE]
    if not defaults:
        command[-2:-2] = ["--mqtt", "%s:%d" % (LOCALHOST, port)]
    try:
        with (folder / "daemon.log").open("wb") as log_file:
            exec_wall_s = time.time()
            daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
            samples = _sample_process(daemon, audio_s + EXIT_GRACE_S)
        stderr = (folder / "daemon.log").read_text(encoding="utf-8", errors="replace")
        time.sleep(DRAIN_S)
    finally:
        zmq_listener.stop_event.set()
        zmq_listener.join()
        mqtt_listener.stop()
        broker.terminate()
        broker.wait()
    return {"exec_wall_s": exec_wall_s, "zmq": zmq_listener.received, "mqtt": mqtt_listener.received,
            "samples": samples, "returncode": daemon.returncode, "stderr": stderr[-2000:]}


def _sample_process(process: subprocess.Popen, timeout_s: float) -> list[tuple[float, float, float]]:
    """(wall time, CPU s, VmHWM MB) of a running process every SAMPLE_INTERVAL_S until it exits."""
    samples = []
    deadline_s = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline_s:
        hwm_mb, used_s = vm_hwm_mb(process.pid), cpu_s(process.pid)
        if hwm_mb > 0:
            samples.append((time.time(), used_s, hwm_mb))
        time.sleep(SAMPLE_INTERVAL_S)
    if process.poll() is None:
        process.kill()
    process.wait()
    return samples


def source_start_s(events: list[dict]) -> float:
    """Upper bound of the source's start in wall time: min(W - T) over events made after it started."""
    usable = [e for e in events if not (e["type"] == "status" and e.get("state") == "starting")]
    return min(e["wall_time_s"] - e["stream_time_s"] for e in usable)


def latencies_ms(received: list[tuple[float, dict]], start_s: float) -> dict[str, list[float]]:
    """Per event (first arrival only): end-to-end, making and transport latency in ms."""
    seen, out = set(), {"e2e": [], "make": [], "transport": []}
    for receive_s, event in received:
        key = (event["type"], event["stream_time_s"], event.get("segment"))
        if event["type"] not in LATENCY_TYPES or key in seen:
            continue
        seen.add(key)
        sample_s = start_s + event["stream_time_s"]
        out["e2e"].append((receive_s - sample_s) * 1000.0)
        out["make"].append((event["wall_time_s"] - sample_s) * 1000.0)
        out["transport"].append((receive_s - event["wall_time_s"]) * 1000.0)
    return out


def summarise(run: dict) -> dict:
    """Latency percentiles per transport, startup time, peak RSS and steady CPU of the daemon."""
    zmq_events = [event for _, event in run["zmq"]]
    mqtt_events = [(receive_s, event) for receive_s, _, event in run["mqtt"]]
    if not zmq_events:
        raise RuntimeError("no event reached the ZeroMQ subscriber (daemon exit %s): %s" % (run["returncode"], run["stderr"]))
    start_s = source_start_s(zmq_events)
    running = [e for e in zmq_events if e["type"] == "status" and e.get("state") == "running"]
    ready_wall_s = running[0]["wall_time_s"] if running else float("nan")
    result = {"zmq": _stats(latencies_ms(run["zmq"], start_s)), "mqtt": _stats(latencies_ms(mqtt_events, start_s)),
              "startup_s": ready_wall_s - run["exec_wall_s"], "source_start_after_exec_s": start_s - run["exec_wall_s"],
              "returncode": run["returncode"], "events_zmq": len(run["zmq"]), "events_mqtt": len(run["mqtt"])}
    result.update(_process_figures(run["samples"], ready_wall_s))
    return result


def _process_figures(samples: list[tuple[float, float, float]], ready_wall_s: float) -> dict:
    """Peak RSS at the last sample and CPU per audio second between READY and the last sample."""
    if not samples:
        return {"rss_mb": 0.0, "cpu_per_audio_s": 0.0}
    after = [s for s in samples if s[0] >= ready_wall_s] or samples
    first, last = after[0], samples[-1]
    elapsed_s = last[0] - first[0]
    return {"rss_mb": last[2], "cpu_per_audio_s": (last[1] - first[1]) / elapsed_s if elapsed_s > 0 else 0.0,
            "ran_s": last[0] - samples[0][0]}


def _stats(values: dict[str, list[float]]) -> dict:
    """count, p50, p99, max of each latency list."""
    out = {}
    for name, series in values.items():
        if not series:
            out[name] = {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
            continue
        p50, p99, top = np.percentile(series, (50, 99, 100))
        out[name] = {"n": len(series), "p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(top), 3)}
    return out


def live_benchmark(folder: Path, audio_path: Path, model_path: str, env: dict, audio_s: float, chunk_ms: int | None = None,
                   defaults: bool = False) -> dict:
    """Run the daemon once and summarise it."""
    return summarise(run_daemon(folder, audio_path, model_path, env, audio_s, chunk_ms, defaults))
