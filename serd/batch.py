"""serd batch: many files analysed on Dask (a local cluster of N worker processes, or an existing scheduler) into RESULTS.

Files are grouped into tasks (the largest first, a few tasks a worker so that the work spreads); a long file is
split over workers in parts that give exactly its whole analysis (serd.split); each worker thread loads the model
once (serd.batchwork); rows are written as files finish (serd.results). dask and
pyarrow are imported here only inside functions: nothing else in serd imports them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from serd.audio import STDIN_PATH
from serd.batchprogress import Progress, Tally, format_summary
from serd.batchwork import (ERROR_ROW, FileJob, WorkSettings, analysis_rows, analyze_job_part, analyze_jobs, error_row, list_jobs,
                            plan_job)
from serd.config import load_config
from serd.errors import SerdError
from serd.model import WindowModel, load_model
from serd.results import BATCH_EXTRA_HINT, ResultStore
from serd.split import FilePlan, combine, part_ranges, splittable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10  # an existing scheduler must answer within this
TASKS_PER_WORKER = 4  # files are grouped so that each worker gets at least this many tasks
TASK_FILES_MAX = 32  # at most this many files a task (fewer tasks: less scheduler work per file)
TASK_BYTES_MAX = 32 << 20  # a task closes once its files hold this many bytes (a long file is a task alone)
LONG_FILE_BYTES = 32 << 20  # a file this large (17 min of 16 kHz WAV, about 45 min of FLAC) may be split over workers
PART_MIN_S = 300.0  # each part of a split file spans at least this much of it (every part decodes the file up to its end)
PARTS_PER_WORKER = 2
PLAN_PRIORITY, PART_PRIORITY = 2, 1  # a long file's plan, then its parts, run before groups of files (Dask: higher first)


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
                _run(client, todo, settings, model, store, tally, notices)
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


def _run(client, todo: list[FileJob], settings: WorkSettings, model: WindowModel, store: ResultStore, tally: Tally,
         notices: TextIO) -> None:
    """Submit the tasks and write each file's rows as its last task finishes."""
    dispatcher = Dispatcher(client, settings, model)
    dispatcher.start(todo)
    progress = Progress(len(todo), notices)
    for rows in dispatcher.finished():
        store.write(rows)
        tally.add(rows)
        progress.errors([row["error"] for row in rows if row["row"] == ERROR_ROW])
        progress.update(tally)
    progress.close()


class Dispatcher:
    """The tasks in flight and what each is for: a group of files, a long file's plan, or one part of a long file."""

    def __init__(self, client, settings: WorkSettings, model: WindowModel):
        self.client, self.settings, self.model = client, settings, model
        self.workers = len(client.scheduler_info().get("workers", {}))
        self.completed = require_distributed().as_completed()
        self._purpose: dict = {}  # future key -> (handler, payload)
        self._split: dict[str, list] = {}  # a long file's path -> [its plan, its parts' analyses so far]

    def start(self, todo: list[FileJob]) -> None:
        """Submit a plan for each long file (serd.split) and a task for each group of the other files."""
        long = set(long_files(todo, self.workers)) if splittable(self.model) else set()
        for job in sorted(long, key=lambda job: -(job.size_bytes or 0)):
            self._submit(self._planned, job, PLAN_PRIORITY, plan_job, job, self.settings)
        for group in task_groups([job for job in todo if job not in long], self.workers):
            self._submit(self._analysed, group, 0, analyze_jobs, group, self.settings)

    def finished(self) -> Iterator[list[dict]]:
        """Each file's rows, as the last task it needs finishes."""
        for future in self.completed:
            handler, payload = self._purpose.pop(future.key)
            yield from handler(future, payload)
            future.release()  # its result leaves the worker's memory

    def _submit(self, handler, payload, priority: int, function, *args) -> None:
        """One task, and what to do when it finishes."""
        future = self.client.submit(function, *args, pure=False, priority=priority)
        self._purpose[future.key] = (handler, payload)
        self.completed.add(future)

    def _analysed(self, future, group: list[FileJob]) -> list[list[dict]]:
        """A group's rows."""
        results, failed = _outcome(future, group)
        return failed or [rows for _, rows in results]

    def _planned(self, future, job: FileJob) -> list[list[dict]]:
        """A long file's plan: submit its parts (a file that cannot be read has its error row instead)."""
        plan, failed = _outcome(future, [job])
        if failed or isinstance(plan, list):
            return failed or [plan]
        ranges = part_ranges(plan, part_count(plan, self.model, self.workers))
        self._split[job.path] = [plan, [None] * len(ranges)]
        for index, (first, stop) in enumerate(ranges):
            self._submit(self._part_done, (job, index), PART_PRIORITY, analyze_job_part, job, self.settings, plan.segments[first:stop])
        return []

    def _part_done(self, future, payload: tuple[FileJob, int]) -> list[list[dict]]:
        """One part of a long file; with the last one, the file's rows (with a failed one, its error row, once)."""
        job, index = payload
        part, failed = _outcome(future, [job])
        if job.path not in self._split:  # another part failed already
            return []
        if failed or isinstance(part, list):
            del self._split[job.path]
            return failed or [part]
        plan, parts = self._split[job.path]
        parts[index] = part
        if any(item is None for item in parts):
            return []
        del self._split[job.path]
        return [analysis_rows(job, combine(plan, parts, self.model, self.settings.min_confidence).to_dict())]


def _outcome(future, jobs: list[FileJob]) -> tuple:
    """(the task's result, []), or when the task failed on the cluster (a worker lost), (None, an error row for each file)."""
    try:
        return future.result(), []
    except Exception as exc:  # noqa: BLE001 - whatever Dask raises for a lost task, its files get error rows and the batch goes on
        reason = "%s: %s" % (type(exc).__name__, exc)
        return None, [[error_row(job, "%s: task failed on the cluster: %s" % (job.path, reason))] for job in jobs]


def long_files(jobs: list[FileJob], workers: int) -> list[FileJob]:
    """Files worth splitting over workers: at least LONG_FILE_BYTES and more than a worker's task's fair share."""
    if workers < 2:
        return []
    share_bytes = sum(job.size_bytes or 0 for job in jobs) / (workers * TASKS_PER_WORKER)
    return [job for job in jobs if (job.size_bytes or 0) >= max(LONG_FILE_BYTES, share_bytes)]


def part_count(plan: FilePlan, model: WindowModel, workers: int) -> int:
    """How many parts a long file is analysed in: PARTS_PER_WORKER a worker, each at least PART_MIN_S of the file."""
    audio_s = plan.samples / model.card.sample_rate_hz
    return max(1, min(len(plan.segments), PARTS_PER_WORKER * workers, math.ceil(audio_s / PART_MIN_S)))
