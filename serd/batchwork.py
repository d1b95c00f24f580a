"""serd batch's units of work: the files an input names, and a worker's tasks (a group of files -> result rows; a
long file's plan and parts, serd.split); no Dask here.

A task runs on a Dask worker: it loads the model once per worker thread and analyses each file as
`serd analyze` does (serd.analyze.analyze_file, the same VAD settings and min_confidence), so a file's
rows say exactly what `serd analyze --json` prints for it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from serd.analyze import FileAnalysis, analyze_file
from serd.audio import DECODER_FORMATS, WAV_FORMATS
from serd.config import VadConfig
from serd.errors import AudioError, SerdError
from serd.manifest import read_manifest
from serd.model import WindowModel, load_model
from serd.process import keep_freed_blocks
from serd.split import FilePlan, analyze_part, plan_file

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = WAV_FORMATS + DECODER_FORMATS  # what a folder is searched for
MANIFEST_EXTENSIONS = (".tsv",)  # an input ending so is a manifest (MANIFEST.tsv: path speaker emotion duration_s)
AFFECT_FIELDS = ("arousal", "valence")  # a verdict's dimensions beside its label, when serd analyze gives them
SEGMENT_ROW, OVERALL_ROW, ERROR_ROW = "segment", "overall", "error"  # the kinds of result row
_local = threading.local()  # each worker thread's model: a TFLite interpreter is not shared between threads
_loads = {"models": 0, "tasks": 0}  # models loaded and tasks done in this process (a test reads them on every worker)
_loads_lock = threading.Lock()


@dataclass(frozen=True)
class FileJob:
    """One file to analyse and what --resume knows it by: its absolute path, size and modification time
    (size_bytes and mtime_ns are None when the file cannot be looked at; its task reports why)."""

    path: str
    size_bytes: int | None
    mtime_ns: int | None

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        """(path, size_bytes, mtime_ns): a file whose key is in RESULTS is done."""
        return self.path, self.size_bytes, self.mtime_ns


@dataclass(frozen=True)
class WorkSettings:
    """What every task needs besides its files: the model to load and serd analyze's settings."""

    model_path: str | None
    vad: VadConfig
    min_confidence: float


def list_jobs(inputs: list[str]) -> list[FileJob]:
    """The files of every input, in order and each once: a folder's audio files (recursive, by extension, sorted),
    a manifest's clips, or the file itself; SerdError for a folder without audio or a bad manifest."""
    seen: dict[str, FileJob] = {}
    for item in inputs:
        for path in _input_paths(item):
            absolute = os.path.abspath(path)
            if absolute not in seen:
                seen[absolute] = file_job(absolute)
    return list(seen.values())


def _input_paths(item: str) -> list[str]:
    """The paths one input names."""
    path = Path(item)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not p.is_dir())
        if not found:
            raise SerdError("%s: no audio files in the folder (%s)" % (item, " ".join(AUDIO_EXTENSIONS)))
        return found
    if path.suffix.lower() in MANIFEST_EXTENSIONS:
        return [clip.path for clip in read_manifest(path)]
    return [item]


def file_job(path: str) -> FileJob:
    """A FileJob for path, its size and mtime looked up now."""
    try:
        info = os.stat(path)
    except OSError:
        return FileJob(path, None, None)
    return FileJob(path, info.st_size, info.st_mtime_ns)


def analyze_jobs(jobs: list[FileJob], settings: WorkSettings) -> list[tuple[FileJob, list[dict]]]:
    """A worker's task: each file's result rows (its segments then its overall row, or one error row)."""
    model = worker_model(settings.model_path)
    results = [(job, analyze_job(job, model, settings)) for job in jobs]
    _count_task()
    return results


def analyze_job(job: FileJob, model: WindowModel, settings: WorkSettings) -> list[dict]:
    """One file's rows; a file that cannot be analysed gives an error row naming the reason, as serd analyze's line."""
    analysis = attempt(job, lambda: analyze_file(job.path, model, settings.vad, min_confidence=settings.min_confidence))
    return analysis if isinstance(analysis, list) else analysis_rows(job, analysis.to_dict())


def plan_job(job: FileJob, settings: WorkSettings) -> FilePlan | list[dict]:
    """A worker's task: the speech segments of a long file (serd.split), or its error row."""
    model = worker_model(settings.model_path)
    plan = attempt(job, lambda: plan_file(job.path, model, settings.vad))
    _count_task()
    return plan


def analyze_job_part(job: FileJob, settings: WorkSettings, segments: tuple[tuple[int, int], ...]) -> FileAnalysis | list[dict]:
    """A worker's task: some segments of a long file analysed (serd.split), or its error row."""
    model = worker_model(settings.model_path)
    part = attempt(job, lambda: analyze_part(job.path, model, settings.vad, segments, settings.min_confidence))
    _count_task()
    return part


def attempt(job: FileJob, call):
    """call()'s result, or the file's error row when it fails: the reason as serd analyze's line, or for an
    unexpected failure its type and message (one file must not end the batch)."""
    try:
        return call()
    except AudioError as exc:
        return [error_row(job, str(exc))]
    except Exception as exc:  # noqa: BLE001 - the row says what it was
        log.debug("%s: analysis failed", job.path, exc_info=True)
        return [error_row(job, "%s: analysis failed: %s: %s" % (job.path, type(exc).__name__, exc))]


def _count_task() -> None:
    """One more task done in this process."""
    with _loads_lock:
        _loads["tasks"] += 1


def worker_model(model_path: str | None) -> WindowModel:
    """This thread's model, loaded on its first task and kept for the next ones."""
    cached = getattr(_local, "model", None)
    if cached is None or cached[0] != model_path:
        keep_freed_blocks()
        _local.model = (model_path, load_model(model_path))
        with _loads_lock:
            _loads["models"] += 1
        log.debug("worker %d loaded model %s", os.getpid(), model_path or "(shipped)")
    return _local.model[1]


def models_loaded() -> int:
    """How many models this process has loaded (one per worker thread, once)."""
    return _loads["models"]


def tasks_run() -> int:
    """How many tasks this process has finished."""
    return _loads["tasks"]


def analysis_rows(job: FileJob, analysis: dict) -> list[dict]:
    """serd analyze --json's object for one file as result rows: one per segment, then the overall row."""
    rows = [_row(job, SEGMENT_ROW, segment["start_s"], segment["end_s"], segment["windows"], segment)
            for segment in analysis["segments"]]
    windows = sum(segment["windows"] for segment in analysis["segments"])
    overall = _row(job, OVERALL_ROW, 0.0, analysis["duration_s"], windows, analysis)
    overall.update(duration_s=analysis["duration_s"], source_rate_hz=analysis["source_rate_hz"], warnings=list(analysis["warnings"]))
    return rows + [overall]


def error_row(job: FileJob, reason: str) -> dict:
    """The row of a file that could not be analysed."""
    row = _row(job, ERROR_ROW, None, None, None, {})
    row["error"] = reason
    return row


def _row(job: FileJob, kind: str, start_s, end_s, windows, verdict: dict) -> dict:
    """A result row with every column (see serd.results.COLUMNS) and verdict's label, confidence, probabilities
    (None when empty) and, where the analysis has them, arousal and valence."""
    row = {"file": job.path, "size_bytes": job.size_bytes, "mtime_ns": job.mtime_ns, "row": kind, "start_s": start_s,
           "end_s": end_s, "windows": windows, "label": verdict.get("label"), "confidence": verdict.get("confidence"),
           "probabilities": verdict.get("probabilities") or None}
    row.update({name: verdict.get(name) for name in AFFECT_FIELDS})
    row.update(duration_s=None, source_rate_hz=None, warnings=None, error=None)
    return row
