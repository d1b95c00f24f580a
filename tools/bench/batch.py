"""Benchmark of `serd batch`: x real time on 1 and 2 local Dask workers over >= 1 h of corpus clips, each worker's
peak RSS, the overhead against `serd analyze` on one core, one long file alone on 1 and 2 workers (split in parts on 2), the
scheduler's cost per task (many tiny tasks on a LocalCluster) and the results writer's speed; from those, a model
of throughput up to 100 workers.

    python -m tools.bench.batch                       # 1 h of audio, writes docs/batch_bench.json
    python -m tools.bench.batch --audio-h 0.02 --tiny-tasks 200 --long-min 1 --out /tmp/bench.json   # a check that it runs

The machine should be otherwise idle: every figure is wall-clock time.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from serd.batch import TASK_FILES_MAX, run_batch
from serd.batchwork import file_job, error_row
from serd.manifest import read_manifest
from serd.results import ResultStore, analyses, read_results

PROJECT_DIR = Path(__file__).resolve().parents[2]
CORPORA_DIR = Path(os.environ.get("SERD_SHARED_DIR", PROJECT_DIR.parent / "shared")) / "corpora"
DEFAULT_OUT = PROJECT_DIR / "docs" / "batch_bench.json"
SECONDS_PER_HOUR = 3600
SAMPLE_RATE_HZ = 16000
MODEL_WORKERS = (1, 2, 4, 8, 16, 32, 64, 100)
WRITER_FILES = 2000  # synthetic file results written to time the results writer
SEGMENTS_PER_FILE = 2  # rows per synthetic file result, besides its overall row


def corpus_clips(audio_s: float) -> tuple[list[str], float]:
    """Clips taken in turn from each corpus's manifest until their durations add up to audio_s."""
    per_corpus = [read_manifest(manifest) for manifest in sorted(CORPORA_DIR.glob("*/MANIFEST.tsv"))]
    if not per_corpus:
        raise SystemExit("no corpora under %s (set SERD_SHARED_DIR)" % CORPORA_DIR)
    paths, total_s = [], 0.0
    for clip in (c for group in itertools.zip_longest(*per_corpus) for c in group if c is not None):
        if total_s >= audio_s:
            break
        paths.append(clip.path)
        total_s += clip.duration_s
    return paths, total_s


def children_cpu_s() -> float:
    """User + system CPU of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def analyze_one_core(paths: list[str], scratch: Path) -> dict:
    """`serd analyze --json` (one process, --jobs 1) over the clips: wall, CPU and x real time."""
    out_path = scratch / "analyze.jsonl"
    command = [sys.executable, "-m", "serd.cli", "analyze", "--json", *paths]
    cpu_before_s, started_s = children_cpu_s(), time.perf_counter()
    with out_path.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    wall_s, cpu_s = time.perf_counter() - started_s, children_cpu_s() - cpu_before_s
    if done.returncode != 0:
        raise SystemExit("serd analyze failed: %s" % done.stderr.strip()[-500:])
    objects = {line["file"]: line for line in map(json.loads, out_path.read_text().splitlines())}
    audio_s = sum(line["duration_s"] for line in objects.values())
    return {"wall_s": wall_s, "cpu_s": cpu_s, "audio_s": audio_s, "x_realtime": audio_s / wall_s, "objects": objects}


def worker_memory_kb() -> dict:
    """This process's peak and current RSS in kB (read on a worker)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"peak_rss_kb": int(fields["VmHWM"].split()[0]), "rss_kb": int(fields["VmRSS"].split()[0])}


def batch_local(paths: list[str], workers: int, scratch: Path, expected: dict, name: str = "batch") -> dict:
    """serd batch on a LocalCluster of `workers` one-thread processes: cluster start, batch wall time, x real time,
    each worker's RSS, and whether every file's result equals serd analyze's."""
    from distributed import Client, LocalCluster

    out = scratch / ("%s-%d.parquet" % (name, workers))
    started_s = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        start_s = time.perf_counter() - started_s
        started_s = time.perf_counter()
        code = run_batch(paths, str(out), cluster.scheduler_address, workers, False, None, None, io.StringIO(), io.StringIO())
        wall_s = time.perf_counter() - started_s
        with Client(cluster.scheduler_address) as client:
            memory = list(client.run(worker_memory_kb).values())
    found = analyses(read_results(out))
    audio_s = sum(item["duration_s"] for item in found.values())
    return {"workers": workers, "exit_status": code, "cluster_start_s": start_s, "wall_s": wall_s, "audio_s": audio_s,
            "x_realtime": audio_s / wall_s, "x_realtime_with_start": audio_s / (wall_s + start_s),
            "worker_peak_rss_mb": [round(m["peak_rss_kb"] / 1024, 1) for m in memory],
            "worker_rss_mb": [round(m["rss_kb"] / 1024, 1) for m in memory],
            "equal_to_analyze": found == expected}


def long_file(paths: list[str], minutes: float, scratch: Path, workers: list[int]) -> dict:
    """One long WAV (the clips end to end) alone on 1 and 2 workers: on 2 it is split in parts (serd.split)."""
    from serd.audio import load_audio

    call, pcm, seconds = scratch / "call.wav", [], 0.0
    for path in paths:
        if seconds >= minutes * 60:
            break
        pcm.append(load_audio(path))
        seconds += len(pcm[-1]) / SAMPLE_RATE_HZ
    with wave.open(str(call), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE_HZ)
        writer.writeframes(b"".join(part.tobytes() for part in pcm))
    analyze = analyze_one_core([str(call)], scratch)
    expected = analyze.pop("objects")
    runs = [batch_local([str(call)], n, scratch, expected, "long") for n in workers]
    return {"audio_s": analyze["audio_s"], "analyze_one_core": analyze, "batch": runs}


def _noop(index: int) -> int:
    """A task that does nothing."""
    return index


def scheduler_overhead(tasks: int, workers: int) -> dict:
    """Many tiny tasks on a LocalCluster: tasks per second the scheduler, workers and client get through."""
    from distributed import Client, LocalCluster, as_completed

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.submit(_noop, -1).result()  # warm up
        started_s = time.perf_counter()
        for future in as_completed(client.map(_noop, range(tasks), pure=False)):
            future.release()
        wall_s = time.perf_counter() - started_s
    return {"tasks": tasks, "workers": workers, "wall_s": wall_s, "tasks_per_s": tasks / wall_s, "ms_per_task": 1000 * wall_s / tasks}


def writer_speed(labels: tuple[str, ...], scratch: Path) -> dict:
    """Files a second the results writer takes (JSON Lines rows as tasks finish, then the Parquet file at the end)."""
    job = file_job(__file__)
    probabilities = {name: 1.0 / len(labels) for name in labels}
    segment = dict(error_row(job, ""), row="segment", error=None, start_s=0.0, end_s=1.0, windows=3, label=labels[0],
                   confidence=0.5, probabilities=probabilities)
    overall = dict(segment, row="overall", duration_s=3.0, source_rate_hz=16000, warnings=[])
    store = ResultStore(scratch / "writer.parquet", labels, resume=False)
    started_s = time.perf_counter()
    for index in range(WRITER_FILES):
        rows = [dict(segment, file="/clip/%d.flac" % index)] * SEGMENTS_PER_FILE + [dict(overall, file="/clip/%d.flac" % index)]
        store.write(rows)
    journal_s = time.perf_counter() - started_s
    store.close()
    total_s = time.perf_counter() - started_s
    return {"files": WRITER_FILES, "rows_per_file": SEGMENTS_PER_FILE + 1, "journal_files_per_s": WRITER_FILES / journal_s,
            "with_parquet_files_per_s": WRITER_FILES / total_s}


def scaling_model(runs: list[dict], scheduler: dict, writer: dict, files: int, audio_s: float) -> dict:
    """Throughput predicted for W workers: W x one worker's speed x the 2-worker efficiency, capped by the tasks a
    second the scheduler managed (each task TASK_FILES_MAX files of the mean clip) and by the files a second the
    client writes; each cap is named where it binds."""
    by_workers = {run["workers"]: run for run in runs}
    one = by_workers[1]["x_realtime"]
    efficiency = by_workers[2]["x_realtime"] / (2 * one) if 2 in by_workers else 1.0
    mean_clip_s = audio_s / files
    caps = {"scheduler": scheduler["tasks_per_s"] * TASK_FILES_MAX * mean_clip_s,
            "results_writer": writer["journal_files_per_s"] * mean_clip_s}
    rows = []
    for workers in MODEL_WORKERS:
        compute = workers * one * min(efficiency, 1.0)
        limit, cap = min(caps.items(), key=lambda item: item[1])
        rows.append({"workers": workers, "x_realtime": round(min(compute, cap), 1),
                     "limited_by": "workers" if compute <= cap else limit})
    return {"one_worker_x_realtime": one, "two_worker_efficiency": efficiency, "mean_clip_s": mean_clip_s,
            "files_per_task": TASK_FILES_MAX, "caps_x_realtime": caps, "predicted": rows}


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--audio-h", type=float, default=1.0, help="hours of corpus clips (default 1)")
    parser.add_argument("--workers", default="1,2", help="local worker counts to time (default 1,2)")
    parser.add_argument("--tiny-tasks", type=int, default=5000, help="no-op tasks for the scheduler's cost per task")
    parser.add_argument("--long-min", type=float, default=30.0, help="minutes of the one long file split over workers (default 30)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    paths, manifest_s = corpus_clips(args.audio_h * SECONDS_PER_HOUR)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch_dir:
        scratch = Path(scratch_dir)
        analyze = analyze_one_core(paths, scratch)
        expected = analyze.pop("objects")
        counts = [int(n) for n in args.workers.split(",")]
        runs = [batch_local(paths, n, scratch, expected) for n in counts]
        split = long_file(paths, args.long_min, scratch, counts)
        scheduler = scheduler_overhead(args.tiny_tasks, 2)
        labels = tuple(next(iter(expected.values()))["probabilities"])
        writer = writer_speed(labels, scratch)
    one = next((run for run in runs if run["workers"] == 1), None)
    two = next((run for run in runs if run["workers"] == 2), None)
    report = {"files": len(paths), "audio_h": analyze["audio_s"] / SECONDS_PER_HOUR, "manifest_audio_h": manifest_s / SECONDS_PER_HOUR,
              "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "analyze_one_core": analyze, "batch": runs,
              "two_over_one": two["x_realtime"] / one["x_realtime"] if one and two else None,
              "overhead_vs_analyze": analyze["x_realtime"] / one["x_realtime"] - 1 if one else None,
              "long_file": split, "scheduler": scheduler, "results_writer": writer,
              "scaling_model": scaling_model(runs, scheduler, writer, len(paths), analyze["audio_s"]) if one else None}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({key: report[key] for key in ("files", "audio_h", "two_over_one", "overhead_vs_analyze")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
