"""Benchmark worker for serd's in-process pipeline: CPU per audio second and per-stage hop latency.

Run by tools.bench as `python -m tools.bench.pipeline AUDIO.wav MODEL ENDPOINT`; prints one JSON object.
Publishes every event on a real ZeroMQ PUB socket (the parent subscribes); waits for a line on
stdin (the parent's "subscriber hears you") before the timed passes.
"""

from __future__ import annotations

import json
import select
import sys
import time
from collections import defaultdict

import numpy as np

from serd.config import SmoothingConfig, VadConfig
from serd.events import SpeechEnded, Status
from serd.frontend import WindowReady
from serd.model import load_model
from serd.pipeline import Pipeline
from serd.process import tune_process
from serd.publish.zmq_pub import ZmqPublisher
from serd.ringbuffer import RingBuffer
from tools.bench.proc import blas_info, read_wav_int16, vm_hwm_mb

DEVICE = "bench"
CHUNK_SAMPLES = 480  # 30 ms, the daemon's default capture chunk
HOP_SAMPLES = 8000  # 0.5 s: the model's hop (50 frames of 10 ms)
RING_SAMPLES = 30 * 16000
HIGH_WATER_MARK = 1000
HANDSHAKE_POLL_S = 0.01
HANDSHAKE_TIMEOUT_S = 10.0
STAGES = ("vad", "features", "windows", "model", "invoke", "smoother", "publish")
PERCENTILES = (50, 99, 100)


class StageClock:
    """Accumulates wall time per stage inside one chunk; wraps bound methods of live objects."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, owner, method_name: str, stage: str) -> None:
        """Replace owner.method_name by a timed call that adds its duration to stage."""
        inner = getattr(owner, method_name)

        def timed(*args, **kwargs):
            """The wrapped call, timed."""
            started_s = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[stage] += time.perf_counter() - started_s

        setattr(owner, method_name, timed)

    def take(self) -> dict[str, float]:
        """The chunk's stage times; starts a new chunk."""
        taken, self.current = dict(self.current), defaultdict(float)
        return taken


def make_pipeline(model) -> Pipeline:
    """A pipeline with the default [vad] and [smoothing] settings over a fresh ring."""
    return Pipeline(RingBuffer(RING_SAMPLES), model, VadConfig(), SmoothingConfig(), DEVICE)


def await_subscriber(publisher: ZmqPublisher) -> float:
    """Publish status events until the parent writes a line on stdin; returns the wait in s."""
    started_s = time.monotonic()
    while time.monotonic() - started_s < HANDSHAKE_TIMEOUT_S:
        publisher.publish(Status(device=DEVICE, stream_time_s=0.0, wall_time_s=time.time(), state="starting"))
        if select.select([sys.stdin], [], [], HANDSHAKE_POLL_S)[0]:
            sys.stdin.readline()
            return time.monotonic() - started_s
    raise SystemExit("no subscriber within %.0f s" % HANDSHAKE_TIMEOUT_S)


def cpu_pass(samples: np.ndarray, model, publisher: ZmqPublisher) -> dict:
    """The whole audio through the pipeline in 30 ms chunks, publishing; process CPU and wall."""
    pipeline = make_pipeline(model)
    events, speech_s = 0, 0.0
    cpu_start_s, wall_start_s = time.process_time(), time.perf_counter()
    for offset in range(0, len(samples), CHUNK_SAMPLES):
        pipeline.ring.write(samples[offset : offset + CHUNK_SAMPLES])
        for event in pipeline.process():
            publisher.publish(event)
            events += 1
            speech_s += event.duration_s if isinstance(event, SpeechEnded) else 0.0
    for event in pipeline.flush():
        publisher.publish(event)
        events += 1
        speech_s += event.duration_s if isinstance(event, SpeechEnded) else 0.0
    cpu_s, wall_s = time.process_time() - cpu_start_s, time.perf_counter() - wall_start_s
    return {"cpu_s": cpu_s, "wall_s": wall_s, "events": events, "segments": pipeline.frontend.segment_id, "speech_s": speech_s}


def instrument(pipeline: Pipeline, publisher: ZmqPublisher, windows: list[tuple[int, int]]) -> StageClock:
    """Time every stage of this pipeline and note each window's (segment start, end) index."""
    clock = StageClock()
    frontend = pipeline.frontend
    clock.wrap(frontend._vad, "push", "vad")
    clock.wrap(frontend._features, "push", "features")
    clock.wrap(frontend._windows, "push", "windows")
    clock.wrap(frontend._windows, "finish", "windows")
    clock.wrap(pipeline.model, "predict", "model")
    if hasattr(pipeline.model, "_interpreter"):  # the TFLite backend; the whisper backend has none
        clock.wrap(pipeline.model._interpreter, "invoke", "invoke")
    clock.wrap(pipeline.smoother, "push", "smoother")
    clock.wrap(pipeline.smoother, "end_of_speech", "smoother")
    clock.wrap(publisher, "publish", "publish")
    starts: dict[int, int] = {}
    inner_process = frontend.process

    def process_noting_windows():
        """The front end's process(), noting each window's segment start and end index."""
        items = inner_process()
        for item in items:
            if not isinstance(item, WindowReady):
                starts.setdefault(item.segment_id, item.sample_index)
                continue
            windows.append((starts.get(item.segment_id, item.sample_index), item.sample_index))
        return items

    frontend.process = process_noting_windows
    return clock


def latency_pass(samples: np.ndarray, model, publisher: ZmqPublisher) -> tuple[list[dict], list[tuple[int, int]]]:
    """Instrumented run; per 30 ms chunk: end index, stage times, total wall and CPU time, windows released."""
    pipeline = make_pipeline(model)
    windows: list[tuple[int, int]] = []
    clock = instrument(pipeline, publisher, windows)
    chunks = []
    for offset in range(0, len(samples), CHUNK_SAMPLES):
        released_before = len(windows)
        started_s, started_cpu_s = time.perf_counter(), time.thread_time()
        pipeline.ring.write(samples[offset : offset + CHUNK_SAMPLES])
        for event in pipeline.process():
            publisher.publish(event)
        total_s, cpu_s = time.perf_counter() - started_s, time.thread_time() - started_cpu_s
        chunk_end = min(offset + CHUNK_SAMPLES, len(samples))
        chunks.append({"end": chunk_end, "stages": clock.take(), "total_s": total_s, "cpu_s": cpu_s, "windows": len(windows) - released_before})
    return chunks, windows


def hop_latency(chunks: list[dict]) -> dict[str, dict[str, float]]:
    """p50/p99/max in ms per stage and in total over the model's hops (model_hops), the 30 ms steps, and the older
    fixed 0.5 s grid of audio (grid_total: a span of the grid may hold two model runs, e.g. a segment's last
    window and the next window soon after)."""
    hops = model_hops(chunks)
    table = {stage: _percentiles_ms([hop.get(stage, 0.0) for hop in hops]) for stage in STAGES + ("total", "total_cpu")}
    grid = grid_hops(chunks)
    table["grid_total"] = _percentiles_ms([hop["total"] for hop in grid])
    releasing = [chunk["total_s"] for chunk in chunks if chunk["windows"] > 0]
    table["releasing_call"] = _percentiles_ms(releasing)
    table["any_call"] = _percentiles_ms([chunk["total_s"] for chunk in chunks])
    table["hops"] = {"count": len(hops), "two_windows": sum(1 for hop in hops if hop["released"] > 1),
                     "grid_count": len(grid), "grid_two_windows": sum(1 for hop in grid if hop["released"] > 1)}
    return table


def model_hops(chunks: list[dict]) -> list[dict[str, float]]:
    """Stage sums of each model hop: the 30 ms steps after the previous window release, at most one hop of audio
    back, up to and including the step that releases the next window; every model run falls in exactly one hop."""
    hops, pending = [], []
    for chunk in chunks:
        pending.append(chunk)
        if chunk["windows"]:
            hops.append(_summed([c for c in pending if c["end"] > chunk["end"] - HOP_SAMPLES]))
            pending = []
    return hops


def grid_hops(chunks: list[dict]) -> list[dict[str, float]]:
    """Stage sums of each 0.5 s of audio (a fixed grid from the first sample) in which the model ran."""
    spans: dict[int, list[dict]] = defaultdict(list)
    for chunk in chunks:
        spans[(chunk["end"] - 1) // HOP_SAMPLES].append(chunk)
    return [hop for hop in map(_summed, spans.values()) if hop["released"] > 0]


def _summed(chunks: list[dict]) -> dict[str, float]:
    """Stage times, total wall and thread CPU time and windows released, summed over some 30 ms steps."""
    hop: dict[str, float] = defaultdict(float)
    for chunk in chunks:
        for stage, seconds in chunk["stages"].items():
            hop[stage] += seconds
        hop["total"] += chunk["total_s"]
        hop["total_cpu"] += chunk["cpu_s"]
        hop["released"] += chunk["windows"]
    return hop


def _percentiles_ms(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, as ms."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    p50, p99, top = np.percentile(np.asarray(values) * 1000.0, PERCENTILES)
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(top), 4)}


def main(argv: list[str]) -> int:
    """AUDIO MODEL ENDPOINT -> one JSON object on stdout."""
    audio_path, model_path, endpoint = argv
    tune_process()  # as serd's command line does before any work
    samples = read_wav_int16(audio_path)
    model = load_model(model_path)
    publisher = ZmqPublisher(endpoint, DEVICE, HIGH_WATER_MARK)
    await_subscriber(publisher)
    cpu = cpu_pass(samples, model, publisher)
    chunks, windows = latency_pass(samples, model, publisher)
    result = {
        "audio_s": len(samples) / model.card.sample_rate_hz,
        "cpu": cpu,
        "hop_ms": hop_latency(chunks),
        "windows": windows,
        "rss_mb": vm_hwm_mb(),
        "blas": blas_info(),
    }
    publisher.close()
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
