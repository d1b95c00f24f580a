"""serd batch: many files analysed on Dask (a local cluster of N worker processes, or an existing scheduler) into RESULTS.

Files are grouped into tasks (the largest first, a few tasks a worker so that the work spreads); each worker
thread loads the model once (serd.batchwork); rows are written as tasks finish (serd.results). dask and
pyarrow are imported here only inside functions: nothing else in serd imports them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from serd.audio import STDIN_PATH
from serd.batchwork import ERROR_ROW, OVERALL_ROW, SEGMENT_ROW, FileJob, WorkSettings, analyze_jobs, error_row, list_jobs
from serd.config import load_config
from serd.errors import SerdError
from serd.model import load_model
from serd.report import NO_SPEECH
from serd.results import BATCH_EXTRA_HINT, ResultStore

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10  # an existing scheduler must answer within this
TASKS_PER_WORKER = 4  # files are grouped so that each worker gets at least this many tasks
TASK_FILES_MAX = 32  # at most this many files a task (fewer tasks: less scheduler work per file)
TASK_BYTES_MAX = 32 << 20  # a task closes once its files hold this many bytes (a long file is a task alone)
PROGRESS_INTERVAL_S = 0.5
SECONDS_PER_HOUR = 3600


@dataclass
class Tally:
    """What the batch did so far."""

    files: int = 0
    failed: int = 0
    skipped: int = 0
    audio_s: float = 0.0
    no_speech: int = 0
    labels: Counter = field(default_factory=Counter)  # segments by label
    started_s: float = field(default_factory=time.monotonic)

    def add(self, rows: list[dict]) -> None:
        """Count one file's rows."""
        self.files += 1
        for row in rows:
            if row["row"] == ERROR_ROW:
                self.failed += 1
            elif row["row"] == SEGMENT_ROW:
                self.labels[row["label"]] += 1
            elif row["row"] == OVERALL_ROW:
                self.audio_s += row["duration_s"]
                self.no_speech += row["label"] is None

    def speed(self) -> float:
        """Audio seconds analysed per wall-clock second so far (× real time)."""
        return self.audio_s / max(time.monotonic() - self.started_s, 1e-9)


def run_batch(inputs: list[str], out_path: str, dask_address: str | None, workers: int, resume: bool, model_path: str | None,
              config_path: str | None, out: TextIO = sys.stdout, notices: TextIO = sys.stderr) -> int:
    """Analyse every file of inputs into out_path and print a summary; 1 if a file failed."""
    config = load_config(config_path)
    model = load_model(model_path)  # a bad --model is one line here, before any worker starts
    jobs = list_jobs([_batchable(item) for item in inputs])
    store = ResultStore(out_path, model.labels, resume, {job.path: job.key for job in jobs})
    todo = [job for job in jobs if job.key not in store.done]
    settings = WorkSettings(worker_model_path(model_path), config.vad, config.smoothing.min_confidence)
    tally = Tally(skipped=len(jobs) - len(todo))
    try:
        if todo:
            with dask_client(dask_address, workers) as client:
                _run(client, todo, settings, store, tally, notices)
    except KeyboardInterrupt:
        print("serd batch: interrupted after %d files; run it again with --resume to go on" % tally.files, file=notices)
        raise
    finally:
        store.close()
    out.write(format_summary(tally, store.path))
    return 1 if tally.failed else 0


def _batchable(item: str) -> str:
    """An input as given; standard input is refused (workers cannot read it)."""
    if item == STDIN_PATH:
        raise SerdError("- (standard input) cannot be batched: workers read files (use serd analyze -)")
    return item


def worker_model_path(path: str | None) -> str | None:
    """--model as workers load it: a file as an absolute path, a shipped name (or none) as it is."""
    if path and ("/" in path or Path(path).suffix):
        return os.path.abspath(path)
    return path


def require_distributed():
    """The distributed module, or the one line that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise SerdError(BATCH_EXTRA_HINT) from None
    return distributed


@contextmanager
def dask_client(address: str | None, workers: int) -> Iterator:
    """A Client of the scheduler at address, or of a LocalCluster of `workers` one-thread processes started here."""
    distributed = require_distributed()
    if log.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if address:
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, ValueError, TypeError) as exc:
            raise SerdError("cannot reach the Dask scheduler at %s: %s" % (address, exc)) from None
        with client:
            yield client
        return
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


def task_groups(jobs: list[FileJob], workers: int) -> list[list[FileJob]]:
    """Files grouped into tasks, largest files first: a group closes at TASK_BYTES_MAX bytes or at as many files
    as leave each worker TASKS_PER_WORKER tasks (at most TASK_FILES_MAX)."""
    per_task = min(TASK_FILES_MAX, max(1, math.ceil(len(jobs) / (max(workers, 1) * TASKS_PER_WORKER))))
    groups: list[list[FileJob]] = []
    group_bytes = 0
    for job in sorted(jobs, key=lambda job: -(job.size_bytes or 0)):
        if not groups or len(groups[-1]) >= per_task or group_bytes >= TASK_BYTES_MAX:
            groups.append([])
            group_bytes = 0
        groups[-1].append(job)
        group_bytes += job.size_bytes or 0
    return groups


def _run(client, todo: list[FileJob], settings: WorkSettings, store: ResultStore, tally: Tally, notices: TextIO) -> None:
    """Submit the tasks and write each file's rows as its task finishes."""
    distributed = require_distributed()
    workers = len(client.scheduler_info().get("workers", {}))
    futures, groups = [], {}
    for group in task_groups(todo, workers):
        futures.append(client.submit(analyze_jobs, group, settings, pure=False))
        groups[futures[-1].key] = group
    progress = Progress(len(todo), notices)
    completed = distributed.as_completed(futures)
    del futures  # as_completed holds each Future until it is done; a released one frees its result on the worker
    for future in completed:
        for rows in task_rows(future, groups[future.key]):
            store.write(rows)
            tally.add(rows)
            progress.errors([row["error"] for row in rows if row["row"] == ERROR_ROW])
        future.release()
        progress.update(tally)
    progress.close()


def task_rows(future, group: list[FileJob]) -> list[list[dict]]:
    """Each file's rows from a finished task; when the task itself failed (a worker lost), an error row per file."""
    try:
        return [rows for _, rows in future.result()]
    except Exception as exc:  # noqa: BLE001 - whatever Dask raises for a lost task, its files get error rows and the batch goes on
        reason = "%s: %s" % (type(exc).__name__, exc)
        return [[error_row(job, "%s: task failed on the cluster: %s" % (job.path, reason))] for job in group]


class Progress:
    """One line on a terminal, redrawn at most every PROGRESS_INTERVAL_S: files, audio hours, × real time, ETA."""

    def __init__(self, total_files: int, stream: TextIO):
        self.total, self.stream = total_files, stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self._drawn_s = 0.0

    def update(self, tally: Tally) -> None:
        """Redraw, unless drawn very recently (the last file always draws)."""
        now_s = time.monotonic()
        done = tally.files
        if not self.enabled or (now_s - self._drawn_s < PROGRESS_INTERVAL_S and done < self.total):
            return
        self._drawn_s = now_s
        elapsed_s = now_s - tally.started_s
        eta_s = elapsed_s / done * (self.total - done) if done else 0.0
        self.stream.write("\r%d/%d files  %.2f h of audio  %.1f × real time  ETA %s\x1b[K"
                          % (done, self.total, tally.audio_s / SECONDS_PER_HOUR, tally.speed(), _clock(eta_s)))
        self.stream.flush()

    def errors(self, lines: list[str]) -> None:
        """A failed file's line, above the bar."""
        for line in lines:
            self.stream.write(("\r\x1b[K" if self.enabled else "") + "serd: error: %s\n" % line)

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    """H:MM:SS."""
    minutes, secs = divmod(int(seconds), 60)
    return "%d:%02d:%02d" % (minutes // 60, minutes % 60, secs)


def format_summary(tally: Tally, results: Path) -> str:
    """The lines printed at the end: files, audio hours and speed, errors, segments by label."""
    lines = ["serd batch: %s analysed, %d failed, %d skipped (already in %s)" % (_count(tally.files, "file"), tally.failed, tally.skipped, results),
             "audio: %.2f h in %.1f s, %.1f × real time" % (tally.audio_s / SECONDS_PER_HOUR, time.monotonic() - tally.started_s, tally.speed())]
    total = sum(tally.labels.values())
    shares = ", ".join("%s %d (%.0f %%)" % (label or NO_SPEECH, count, 100.0 * count / total) for label, count in tally.labels.most_common())
    silent = "; %s without speech" % _count(tally.no_speech, "file") if tally.no_speech else ""
    lines.append("segments by label: %s%s" % (shares or "none", silent))
    lines.append("results: %s" % results)
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")
