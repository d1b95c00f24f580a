"""What `serd analyze` and `serd eval` print: per-file analyses and accuracy on a manifest."""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

import numpy as np

from serd.analyze import FileAnalysis, analyze_samples
from serd.audio import load_audio
from serd.config import VadConfig, load_config
from serd.errors import AudioError, SerdError
from serd.manifest import read_manifests
from serd.metrics import evaluate
from serd.model import WindowModel, load_model
from serd.speaker import SpeakerStats

log = logging.getLogger(__name__)

BAR_WIDTH = 20
_worker: tuple[WindowModel, VadConfig] | None = None


def analyze_files(paths: list[str], model_path: str | None, config_path: str | None, as_json: bool, jobs: int, out: TextIO) -> int:
    """Analyse each file and print its result; a bad file is reported and the others still run."""
    vad = load_config(config_path).vad
    failures = 0
    for path, result in zip(paths, _map_files(paths, model_path, vad, jobs)):
        if isinstance(result, str):
            print("serd: error: %s" % result, file=sys.stderr)
            failures += 1
            continue
        out.write(json.dumps({"file": path, **result.to_dict()}) + "\n" if as_json else format_analysis(path, result))
        out.flush()
    return 1 if failures else 0


def _map_files(paths: list[str], model_path: str | None, vad: VadConfig, jobs: int):
    """Results (FileAnalysis or an error message) in the order of paths."""
    if jobs <= 1 or len(paths) == 1:
        _init_worker(model_path, vad)
        return map(_analyze_one, paths)
    from concurrent.futures import ProcessPoolExecutor  # only --jobs N needs it (~40 ms of imports)

    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(model_path, vad))
    return pool.map(_analyze_one, paths, chunksize=4)


def _init_worker(model_path: str | None, vad: VadConfig) -> None:
    """Load the model once per process."""
    global _worker
    _worker = (load_model(model_path), vad)


def _analyze_one(path: str) -> FileAnalysis | str:
    """One file, or the one-line reason it could not be analysed."""
    model, vad = _worker
    try:
        return analyze_samples(load_audio(path, model.card.sample_rate_hz), model, vad)
    except AudioError as exc:
        return str(exc)


def format_analysis(path: str, result: FileAnalysis) -> str:
    """Human-readable lines for one file."""
    overall = result.overall
    head = "%s  %.2f s  %s" % (path, result.duration_s, _verdict_text(overall.label, overall.confidence))
    lines = [head]
    for segment in result.segments:
        lines.append("  %7.2f-%-7.2f s  %s  (%d windows)" % (segment.start_s, segment.end_s, _verdict_text(segment.verdict.label, segment.verdict.confidence), segment.windows))
    return "\n".join(lines) + "\n"


def _verdict_text(label: str | None, confidence: float) -> str:
    """'angry     0.82 ################' or 'no speech'."""
    if label is None:
        return "no speech"
    return "%-9s %.2f %s" % (label, confidence, "#" * round(confidence * BAR_WIDTH))


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
