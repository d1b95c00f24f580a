"""Benchmark of `serd analyze`: throughput in x real time and scaling over files and --jobs."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from tools.bench.audio import SAMPLE_RATE_HZ, BenchAudio, write_clip_folder


def children_cpu_s() -> float:
    """User + system CPU of all waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_analyze(files: list[Path], model_path: str, jobs: int, env: dict) -> dict:
    """One `serd analyze --jobs N FILES` process: wall, CPU (with its workers) and lines printed."""
    command = [sys.executable, "-m", "serd.cli", "analyze", "--json", "--model", model_path, "--jobs", str(jobs)] + [str(f) for f in files]
    cpu_before_s, started_s = children_cpu_s(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall_s, cpu_used_s = time.perf_counter() - started_s, children_cpu_s() - cpu_before_s
    if done.returncode != 0:
        raise RuntimeError("serd analyze failed (exit %d): %s" % (done.returncode, done.stderr.strip()[-500:]))
    return {"wall_s": wall_s, "cpu_s": cpu_used_s, "files_out": len(done.stdout.splitlines())}


def analyze_benchmark(folder: Path, audio: BenchAudio, model_path: str, env: dict, counts: tuple[int, ...]) -> dict:
    """Every (file count, jobs) pair once, on WAV copies of the clips; plus throughput figures."""
    files = write_clip_folder(folder, audio, max(counts))
    seconds = [len(audio.clips[i % len(audio.clips)]) / SAMPLE_RATE_HZ for i in range(max(counts))]
    runs = []
    for count in counts:
        for jobs in (1, 2):
            run = run_analyze(files[:count], model_path, jobs, env)
            run.update(files=count, jobs=jobs, audio_s=sum(seconds[:count]))
            run["x_realtime"] = run["audio_s"] / run["wall_s"]
            runs.append(run)
    one_job = {run["files"]: run for run in runs if run["jobs"] == 1}
    small, large = one_job[min(counts)], one_job[max(counts)]
    marginal_wall_s = large["wall_s"] - small["wall_s"]
    return {
        "runs": runs,
        "x_realtime": large["x_realtime"],
        "x_realtime_marginal": (large["audio_s"] - small["audio_s"]) / marginal_wall_s if marginal_wall_s > 0 else float("nan"),
        "files": max(counts),
        "audio_s": large["audio_s"],
    }
