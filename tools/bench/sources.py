"""CPU of one daemon listening to 1, 2 and 4 sources at real time: `python -m tools.bench.sources [--seconds S]`.

Method. Each run is a real `serd run` with N [source.NAME] sections, each a paced file source
(realtime = yes: delivered as a microphone delivers, one chunk every chunk_ms) of a different
concatenation of RAVDESS clips, publishing on ZeroMQ with nobody listening. The daemon's
CPU (user + system, /proc/PID/stat) is read after a warm-up that covers start-up and the model's load, and
again SECONDS later; CPU-s per audio-s is that CPU over N x SECONDS of audio, and CPU-s per s the load of
the whole daemon. The machine's load average before each run is kept: figures from a busy machine
(e.g. a training run on the same cores) are contended and read high.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tools.bench.audio import DEFAULT_MANIFEST, REPO_DIR, SAMPLE_RATE_HZ, load_bench_audio, write_wav
from tools.bench.proc import cpu_s

SOURCE_COUNTS = (1, 2, 4)
DEFAULT_SECONDS = 60.0
WARMUP_S = 5.0
STOP_TIMEOUT_S = 10.0
OUT_PATH = REPO_DIR / "docs" / "sources_bench.json"


def source_files(folder: Path, audio: np.ndarray, count: int) -> list[Path]:
    """count WAV files of the same speech, each rotated to start elsewhere (so the sources do not speak in step)."""
    shift = len(audio) // max(count, 1)
    return [write_wav(folder / ("source%d.wav" % i), np.roll(audio, -i * shift)) for i in range(count)]


def config_text(folder: Path, files: list[Path]) -> str:
    """A config with one paced file section per file."""
    sections = "".join("[source.s%d]\nsource = file:%s\nrealtime = yes\n" % (i, path) for i, path in enumerate(files))
    return "[zmq]\nendpoint = ipc://%s/events\n[daemon]\nlog_level = warning\n%s" % (folder, sections)


def measure(folder: Path, files: list[Path], seconds: float) -> dict:
    """CPU of a daemon running these sources for seconds after the warm-up."""
    config = folder / ("sources%d.conf" % len(files))
    config.write_text(config_text(folder, files))
    load_before = os.getloadavg()[0]
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config)], cwd=REPO_DIR,
                               env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), stderr=subprocess.PIPE)
    try:
        time.sleep(WARMUP_S)
        start_cpu_s, start_s = cpu_s(process.pid), time.monotonic()
        time.sleep(seconds)
        used_cpu_s, wall_s = cpu_s(process.pid) - start_cpu_s, time.monotonic() - start_s
        if process.poll() is not None:
            raise SystemExit("serd run ended early: %s" % process.stderr.read().decode().strip())
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {"sources": len(files), "cpu_s": round(used_cpu_s, 3), "wall_s": round(wall_s, 2),
            "cpu_s_per_s": round(used_cpu_s / wall_s, 5), "cpu_s_per_audio_s": round(used_cpu_s / (wall_s * len(files)), 5),
            "load_average_1m_before": round(load_before, 2)}


def main(argv: list[str] | None = None) -> int:
    """Measure every source count and write the figures."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.sources", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="measured seconds of each run (after a %.0f s warm-up)" % WARMUP_S)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    parser.add_argument("--note", default="", help="what else ran on the machine (kept in the figures)")
    args = parser.parse_args(argv)
    audio = load_bench_audio(args.manifest, args.seconds + 2 * WARMUP_S)
    with tempfile.TemporaryDirectory(prefix="serd-bench-sources-") as scratch:
        folder = Path(scratch)
        files = source_files(folder, audio.samples, max(SOURCE_COUNTS))
        runs = [measure(folder, files[:count], args.seconds) for count in SOURCE_COUNTS]
    report = {
        "what": "CPU of one serd run with N paced file sources ([source.NAME], realtime = yes), per second of audio of a source",
        "measured_at_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_count": os.cpu_count(), "seconds_measured": args.seconds, "warmup_s": WARMUP_S,
        "audio": "%d RAVDESS clips, %.0f s, rotated per source" % (len(audio.clip_paths), audio.duration_s),
        "sample_rate_hz": SAMPLE_RATE_HZ, "note": args.note, "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for run in runs:
        print("%d source(s): %.4f CPU-s per audio-s, %.4f CPU-s per s (load before %.2f)"
              % (run["sources"], run["cpu_s_per_audio_s"], run["cpu_s_per_s"], run["load_average_1m_before"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
