"""What `serd analyze` prints: a table (or a JSON line) per file; serd.evaluation does `serd eval`."""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

from serd.analyze import FileAnalysis, Verdict, analyze_file
from serd.bar import BAR_CELLS, LABEL_WIDTH, confidence_bar
from serd.config import VadConfig, load_config
from serd.errors import AudioError
from serd.model import WindowModel, load_model

TIME_WIDTH = 8
CONFIDENCE_WIDTH = len("0.00 ") + BAR_CELLS
NO_SPEECH = "no speech"
WARNING_PREFIX = "warning: "
log = logging.getLogger(__name__)
_worker: tuple[WindowModel, VadConfig, float] | None = None


def analyze_files(paths: list[str], model_path: str | None, config_path: str | None, as_json: bool, jobs: int, out: TextIO) -> int:
    """Analyse each file and print its result; a bad file is reported and the others still run."""
    config = load_config(config_path)
    failures = shown = 0
    for path, result in zip(paths, _map_files(paths, model_path, config.vad, config.smoothing.min_confidence, jobs)):
        if isinstance(result, str):
            print("serd: error: %s" % result, file=sys.stderr)
            failures += 1
            continue
        for warning in result.warnings:
            log.warning("%s: %s", path, warning)
        separator = "\n" if shown and not as_json else ""  # an empty line between two files' tables
        out.write(json.dumps({"file": path, **result.to_dict()}) + "\n" if as_json else separator + format_analysis(path, result))
        out.flush()
        shown += 1
    return 1 if failures else 0


def _map_files(paths: list[str], model_path: str | None, vad: VadConfig, min_confidence: float, jobs: int):
    """Results (FileAnalysis or an error message) in the order of paths."""
    if jobs <= 1 or len(paths) == 1:
        _init_worker(model_path, vad, min_confidence)
        return map(_analyze_one, paths)
    from concurrent.futures import ProcessPoolExecutor  # only --jobs N needs it (~40 ms of imports)

    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(model_path, vad, min_confidence))
    return pool.map(_analyze_one, paths, chunksize=4)


def _init_worker(model_path: str | None, vad: VadConfig, min_confidence: float) -> None:
    """Load the model once per process."""
    global _worker
    _worker = (load_model(model_path), vad, min_confidence)


def _analyze_one(path: str) -> FileAnalysis | str:
    """One file, or the one-line reason it could not be analysed."""
    model, vad, min_confidence = _worker
    try:
        return analyze_file(path, model, vad, min_confidence=min_confidence)
    except AudioError as exc:
        return str(exc)


def format_analysis(path: str, result: FileAnalysis) -> str:
    """A table for one file: its warnings, a row per speech segment (aligned times, label, confidence and bar) and the overall row."""
    verdicts = [segment.verdict for segment in result.segments] + [result.overall]
    width = max([LABEL_WIDTH] + [len(verdict.label or NO_SPEECH) for verdict in verdicts])
    lines = ["%s  %.2f s" % (path, result.duration_s)] + [WARNING_PREFIX + warning for warning in result.warnings]
    lines.append(_table_row(width, "start_s", "end_s", "label", "confidence", "windows", "arousal", "valence"))
    for segment in result.segments:
        lines.append(_table_row(width, "%.2f" % segment.start_s, "%.2f" % segment.end_s, *_verdict_cells(segment.verdict),
                                str(segment.windows), *_affect_cells(segment.verdict)))
    windows = sum(segment.windows for segment in result.segments)
    lines.append(_table_row(width, "overall", "", *_verdict_cells(result.overall), str(windows), *_affect_cells(result.overall)))
    return "\n".join(lines) + "\n"


def _table_row(label_width: int, start: str, end: str, label: str, confidence: str, windows: str, arousal: str,
               valence: str) -> str:
    """One aligned row of the analyze table."""
    row = "%*s %*s  %-*s %-*s %7s %7s %7s" % (TIME_WIDTH, start, TIME_WIDTH, end, label_width, label, CONFIDENCE_WIDTH,
                                             confidence, windows, arousal, valence)
    return row.rstrip()


def _affect_cells(verdict: Verdict) -> tuple[str, str]:
    """('+0.53', '-0.56'), or blanks without speech."""
    if verdict.arousal is None or verdict.valence is None:
        return "", ""
    return "%+.2f" % verdict.arousal, "%+.2f" % verdict.valence


def _verdict_cells(verdict: Verdict) -> tuple[str, str]:
    """('angry', '0.82 ████████▏ ') or ('no speech', '')."""
    if verdict.label is None:
        return NO_SPEECH, ""
    return verdict.label, "%4.2f %s" % (verdict.confidence, confidence_bar(verdict.confidence))
