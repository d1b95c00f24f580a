"""Accelerated soak of `serd run`: hours of speech through stdin as fast as the daemon takes it, RSS sampled.

    python -m tools.bench.soak --hours H [--manifest PATH] [--out docs/soak.json]   (make soak: 24 h)

RAVDESS speech (about 10 minutes, repeated) is written to a real `serd run --source stdin --stdout
--zmq ...` as fast as its backpressure allows; a real ZeroMQ subscriber counts what it receives
beside stdout. Every second the daemon's RSS is read from /proc with the audio it has processed
(from its status events). Reports RSS at the start (after the first 10 % of the audio), the peak,
the end and its growth per audio hour over the second half, events on stdout and on ZeroMQ, the
drops its status events count, and the acceleration (audio seconds per wall second).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from serd.client import ZmqTransport
from tools.bench.audio import DEFAULT_MANIFEST, REPO_DIR, SAMPLE_RATE_HZ, load_bench_audio

log = logging.getLogger("tools.bench.soak")

LOOP_AUDIO_S = 600.0  # this much distinct speech, repeated
WRITE_SAMPLES = SAMPLE_RATE_HZ  # one second per write
SAMPLE_EVERY_S = 1.0
WARM_SHARE = 0.1  # RSS "at the start" is read once this share of the audio is processed
DEFAULT_OUT = REPO_DIR / "docs" / "soak.json"
EXIT_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="hours of audio (default 24)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="MANIFEST.tsv of the speech to repeat")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default docs/soak.json)")
    return parser.parse_args(argv)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (None once it has gone)."""
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class StdoutReader(threading.Thread):
    """Counts the daemon's stdout events and keeps its latest status (audio_s, dropped)."""

    def __init__(self, stream) -> None:
        super().__init__(name="soak-stdout", daemon=True)
        self._stream = stream
        self.events = 0
        self.audio_s = 0.0
        self.dropped: dict[str, int] = {}

    def run(self) -> None:
        """Read lines until the daemon closes stdout."""
        for line in self._stream:
            self.events += 1
            event = json.loads(line)
            if event["type"] == "status":
                self.audio_s, self.dropped = event["audio_s"], event["dropped"]


class ZmqCounter(threading.Thread):
    """A healthy ZeroMQ subscriber: counts every message it receives."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="soak-zmq", daemon=True)
        self._transport = ZmqTransport(endpoint)
        self.stop_event = threading.Event()
        self.events = 0

    def run(self) -> None:
        """Receive until stopped."""
        while not self.stop_event.is_set():
            if self._transport.get(0.2) is not None:
                self.events += 1
        self._transport.close()


def feed(stdin, audio: np.ndarray, total_samples: int) -> None:
    """Write total_samples of audio (repeated) into the daemon's stdin, then close it."""
    data, written = audio.astype("<i2").tobytes(), 0
    try:
        while written < total_samples:
            start = (written % len(audio)) * 2
            chunk = data[start : start + 2 * min(WRITE_SAMPLES, total_samples - written, len(audio) - written % len(audio))]
            stdin.write(chunk)
            written += len(chunk) // 2
    finally:
        stdin.close()


def growth_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """Slope (MB per audio hour) of RSS against audio over the second half of the samples."""
    half = [(a, r) for a, r in samples[len(samples) // 2 :]]
    if len(half) < 2 or half[-1][0] - half[0][0] <= 0:
        return 0.0
    audio_h = np.array([a for a, _ in half]) / 3600.0
    return float(np.polyfit(audio_h, np.array([r for _, r in half]), 1)[0])


def soak(hours: float, manifest: Path) -> dict:
    """Run the soak; the figures as a dict."""
    from tools.bench.proc import worker_env

    audio = load_bench_audio(manifest, LOOP_AUDIO_S).samples
    total = int(hours * 3600 * SAMPLE_RATE_HZ)
    with tempfile.TemporaryDirectory(prefix="serd-soak-") as scratch:
        endpoint = "ipc://%s/events" % scratch
        counter = ZmqCounter(endpoint)
        counter.start()
        process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--source", "stdin", "--stdout", "--zmq", endpoint,
                                    "--device-id", "soak"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=False, env=worker_env())
        reader = StdoutReader(process.stdout)
        reader.start()
        feeder = threading.Thread(target=feed, args=(process.stdin, audio, total), name="soak-feed", daemon=True)
        started = time.monotonic()
        feeder.start()
        samples: list[tuple[float, float]] = []
        while process.poll() is None:
            rss = rss_mb(process.pid)
            if rss is not None:
                samples.append((reader.audio_s, rss))
            time.sleep(SAMPLE_EVERY_S)
        wall_s = time.monotonic() - started
        reader.join(EXIT_TIMEOUT_S)
        time.sleep(0.5)
        counter.stop_event.set()
        counter.join()
    warm = [rss for audio_s, rss in samples if audio_s >= WARM_SHARE * hours * 3600] or [s[1] for s in samples]
    return {"command": "python -m tools.bench.soak --hours %g" % hours, "audio_h": round(total / SAMPLE_RATE_HZ / 3600, 3),
            "wall_s": round(wall_s, 1), "acceleration_x": round(total / SAMPLE_RATE_HZ / wall_s, 1),
            "exit_code": process.returncode, "rss_mb": {"start": round(warm[0], 1), "peak": round(max(s[1] for s in samples), 1),
                                                        "end": round(samples[-1][1], 1)},
            "rss_growth_mb_per_audio_h": round(growth_mb_per_hour(samples), 3), "rss_samples": len(samples),
            "events": {"stdout": reader.events, "zmq": counter.events}, "dropped": reader.dropped,
            "last_status_audio_s": reader.audio_s}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.hours <= 0:
        print("tools.bench.soak: error: --hours must be positive", file=sys.stderr)
        return 2
    result = soak(args.hours, args.manifest)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
