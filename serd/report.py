"""What `serd analyze` and `serd eval` print: per-file analyses and accuracy on a manifest."""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

import numpy as np

from serd.analyze import FileAnalysis, Verdict, analyze_samples
from serd.bar import BAR_CELLS, LABEL_WIDTH, confidence_bar
from serd.audio import load_audio
from serd.config import VadConfig, load_config
from serd.errors import AudioError, SerdError
from serd.manifest import read_manifests
from serd.metrics import evaluate
from serd.model import WindowModel, load_model
from serd.speaker import SpeakerStats

log = logging.getLogger(__name__)

TIME_WIDTH = 8
CONFIDENCE_WIDTH = len("0.00 ") + BAR_CELLS
NO_SPEECH = "no speech"
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
        return analyze_samples(load_audio(path, model.card.sample_rate_hz), model, vad, min_confidence=min_confidence)
    except AudioError as exc:
        return str(exc)


def format_analysis(path: str, result: FileAnalysis) -> str:
    """A table for one file: a row per speech segment (aligned times, label, confidence and bar) and the overall row."""
    verdicts = [segment.verdict for segment in result.segments] + [result.overall]
    width = max([LABEL_WIDTH] + [len(verdict.label or NO_SPEECH) for verdict in verdicts])
    lines = ["%s  %.2f s" % (path, result.duration_s), _table_row(width, "start_s", "end_s", "label", "confidence", "windows")]
    for segment in result.segments:
        lines.append(_table_row(width, "%.2f" % segment.start_s, "%.2f" % segment.end_s, *_verdict_cells(segment.verdict), str(segment.windows)))
    windows = sum(segment.windows for segment in result.segments)
    lines.append(_table_row(width, "overall", "", *_verdict_cells(result.overall), str(windows)))
    return "\n".join(lines) + "\n"


def _table_row(label_width: int, start: str, end: str, label: str, confidence: str, windows: str) -> str:
    """One aligned row of the analyze table."""
    row = "%*s %*s  %-*s %-*s %7s" % (TIME_WIDTH, start, TIME_WIDTH, end, label_width, label, CONFIDENCE_WIDTH, confidence, windows)
    return row.rstrip()


def _verdict_cells(verdict: Verdict) -> tuple[str, str]:
    """('angry', '0.82 ████████▏ ') or ('no speech', '')."""
    if verdict.label is None:
        return NO_SPEECH, ""
    return verdict.label, "%4.2f %s" % (verdict.confidence, confidence_bar(verdict.confidence))


def parse_merges(merges: list[str], labels: tuple[str, ...]) -> dict[str, str]:
    """--merge A=B items -> {A: B}; both must be model labels."""
    mapping = {}
    for item in merges:
        source, _, target = item.partition("=")
        if not source or not target or source not in labels or target not in labels or source == target:
            raise SerdError("--merge %r must be A=B with two different labels of the model (%s)" % (item, ", ".join(labels)))
        mapping[source] = target
    return mapping


def evaluate_manifests(manifests: list[str], model_path: str | None, config_path: str | None, merges: list[str]) -> dict:
    """Accuracy of the runtime path (VAD + features + int8 model, window posteriors averaged per clip)."""
    model = load_model(model_path)
    vad = load_config(config_path).vad
    mapping = parse_merges(merges, model.labels)
    labels = [label for label in model.labels if label not in mapping]
    truths, rows, skipped, failed, no_speech = [], [], 0, 0, 0
    voices: dict[str, SpeakerStats | None] = {}  # one running voice estimate per speaker, as a daemon hearing them
    for clip in read_manifests(manifests):
        emotion = mapping.get(clip.emotion, clip.emotion)
        if emotion not in labels:
            skipped += 1
            continue
        try:
            if clip.speaker not in voices:
                voices[clip.speaker] = model.new_voice()
            voice = voices[clip.speaker]
            analysis = analyze_samples(load_audio(clip.path, model.card.sample_rate_hz), model, vad, voice)
        except AudioError as exc:
            log.warning("%s", exc)
            failed += 1
            continue
        no_speech += analysis.overall.label is None
        truths.append(emotion)
        rows.append(_merged_row(analysis, model.labels, mapping, labels))
    if not truths:
        raise SerdError("no clip with an emotion the model knows (%d skipped, %d unreadable)" % (skipped, failed))
    report = {"n": len(truths), "skipped": skipped, "failed": failed, "no_speech": no_speech}
    report.update(evaluate(truths, np.asarray(rows), labels))
    return report


def _merged_row(analysis: FileAnalysis, model_labels: tuple[str, ...], mapping: dict[str, str], labels: list[str]) -> np.ndarray:
    """The clip's mean probabilities with merged classes added into their targets (uniform if no speech)."""
    probabilities = analysis.overall.probabilities
    if not probabilities:
        return np.full(len(labels), 1.0 / len(labels))
    merged = dict.fromkeys(labels, 0.0)
    for label in model_labels:
        merged[mapping.get(label, label)] += probabilities[label]
    return np.array([merged[label] for label in labels])


def format_evaluation(report: dict) -> str:
    """A short text report: headline figures, per-class table, confusion matrix."""
    lines = [
        "clips %d  skipped %d  unreadable %d  no speech %d" % (report["n"], report["skipped"], report["failed"], report["no_speech"]),
        "accuracy %.3f  UAR %.3f  macro-F1 %.3f  ECE %.3f" % (report["accuracy"], report["uar"], report["macro_f1"], report["ece"]),
        "",
        "%-10s %9s %7s %6s %8s" % ("class", "precision", "recall", "f1", "support"),
    ]
    for label in report["labels"]:
        scores = report["per_class"][label]
        lines.append("%-10s %9.3f %7.3f %6.3f %8d" % (label, scores["precision"], scores["recall"], scores["f1"], scores["support"]))
    lines += ["", "confusion (rows true, columns predicted): " + " ".join(label[:4] for label in report["labels"])]
    lines += ["%-10s %s" % (label, " ".join("%4d" % count for count in row)) for label, row in zip(report["labels"], report["confusion"])]
    return "\n".join(lines)
