"""What `serd eval` measures and prints: the runtime path's accuracy on labelled manifests.

Each clip runs through VAD, features and the model as in the daemon; its window probabilities are
averaged, --merge folds classes together, and --classes restricts truths and predictions to the
classes scored (probabilities renormalised over them, the argmax among them). A clip whose top
probability over those classes is below [smoothing] min_confidence is uncertain: plain UAR still
counts its argmax, coverage and UAR on the covered clips leave it out. A clip without speech is
counted under no_speech and is not a prediction. Clips recorded below the model's sample rate (8 kHz
telephone audio, upsampled) are counted under below_model_rate, with a warning: their answers differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from serd.analyze import FileAnalysis, Verdict, analyze_file
from serd.config import VadConfig, load_config
from serd.errors import AudioError, SerdError
from serd.events import UNCERTAIN_LABEL
from serd.manifest import Clip, read_manifests
from serd.metrics import evaluate, label_indices, uar
from serd.model import WindowModel, load_model
from serd.speaker import SpeakerStats

log = logging.getLogger(__name__)

PRESENT_CLASSES = "present"  # --classes present: the classes the manifests have
MIN_CLASSES = 2
MODEL_CARD_DOC = "models/MODEL_CARD.md"
UNDEFINED = "-"  # a score with no meaning (a class without clips, or never predicted) in the text report


def parse_merges(merges: list[str], labels: tuple[str, ...]) -> dict[str, str]:
    """--merge A=B items -> {A: B}; both must be model labels."""
    mapping = {}
    for item in merges:
        source, _, target = item.partition("=")
        if not source or not target or source not in labels or target not in labels or source == target:
            raise SerdError("--merge %r must be A=B with two different labels of the model (%s)" % (item, ", ".join(labels)))
        mapping[source] = target
    return mapping


def parse_classes(spec: str | None, clips: list[Clip], mapping: dict[str, str], model_labels: tuple[str, ...]) -> list[str]:
    """The classes scored, in the model's order: all (None), those the clips have ("present"), or a comma list."""
    available = [label for label in model_labels if label not in mapping]
    if spec is None:
        return available
    if spec == PRESENT_CLASSES:
        wanted = {mapping.get(clip.emotion, clip.emotion) for clip in clips}
    else:
        wanted = {name.strip() for name in spec.split(",")}
        unknown = sorted(wanted - set(available))
        if unknown:
            merged = " after --merge" if mapping else ""
            raise SerdError("--classes: %r is not a class of the model%s (%s)" % (unknown[0], merged, ", ".join(available)))
    chosen = [label for label in available if label in wanted]
    if len(chosen) < MIN_CLASSES:
        raise SerdError("--classes %s leaves %s (%s); scoring needs at least %d classes"
                        % (spec, "one class" if chosen else "no class", ", ".join(chosen) or "the manifests have none the model knows", MIN_CLASSES))
    return chosen


def training_data_warning(clips: list[Clip], model: WindowModel) -> str | None:
    """One line when clips lie in the corpora that trained the model (its card's training.manifests), else None."""
    corpora = [Path(manifest).parent for manifest in model.card.training_manifests]
    found = {}
    for clip in clips:
        corpus = next((c for c in corpora if _lies_in(Path(clip.path), c)), None)
        if corpus is not None:
            found[corpus] = found.get(corpus, 0) + 1
    if not found:
        return None
    return ("%d of %d clips lie in the corpora that trained %s %s (%s): this measures training data, not new voices; "
            "see the model card's cross-validation figures (%s)"
            % (sum(found.values()), len(clips), model.card.name, model.card.version, ", ".join(map(str, found)), MODEL_CARD_DOC))


def _lies_in(path: Path, corpus: Path) -> bool:
    """path is inside corpus; a relative corpus (the card's portable form) matches wherever its folders end a parent of path."""
    path = path.resolve()
    if corpus.is_absolute():
        return path.is_relative_to(corpus.resolve())
    depth = len(corpus.parts)
    return any(folder.parts[-depth:] == corpus.parts for folder in path.parents)


@dataclass
class _Tally:
    """What the clips gave: truths, probability rows over the scored classes, which rows are covered, and counts."""

    truths: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)
    skipped: int = 0
    unreadable: int = 0
    no_speech: int = 0
    below_model_rate: int = 0


def evaluate_manifests(manifests: list[str], model_path: str | None, config_path: str | None, merges: list[str],
                       classes: str | None = None) -> dict:
    """Scores of the runtime path on every clip of the manifests (see the module docstring)."""
    model = load_model(model_path)
    config = load_config(config_path)
    mapping = parse_merges(merges, model.labels)
    clips = folded_clips(read_manifests(manifests), model.card)
    labels = parse_classes(classes, clips, mapping, model.labels)
    warning = training_data_warning(clips, model)
    if warning:
        log.warning("%s", warning)
    min_confidence = config.smoothing.min_confidence
    tally = _score_clips(clips, model, config.vad, mapping, labels, min_confidence)
    if not tally.truths:
        raise SerdError("no clip with speech and one of the classes scored (%d skipped, %d unreadable, %d without speech)"
                        % (tally.skipped, tally.unreadable, tally.no_speech))
    if tally.below_model_rate:
        log.warning("%s", below_rate_note(tally.below_model_rate, model.card.sample_rate_hz))
    report = {"clips": len(clips), "n": len(tally.truths), "skipped": tally.skipped, "unreadable": tally.unreadable,
              "no_speech": tally.no_speech, "below_model_rate": tally.below_model_rate, "model_rate_hz": model.card.sample_rate_hz,
              "min_confidence": min_confidence}
    report.update(evaluate(tally.truths, np.asarray(tally.rows), labels, undefined=None))
    report.update(_coverage(tally, labels, report["per_class"]))
    return report


def folded_clips(clips: list[Clip], card) -> list[Clip]:
    """Clips whose emotion the model folds into one of its labels (the card's training.label_folding, e.g. calm into
    neutral) carry that label, as in training; others are unchanged."""
    folding = {source: target for source, target in card.label_folding if source not in card.labels and target in card.labels}
    return [replace(clip, emotion=folding[clip.emotion]) if clip.emotion in folding else clip for clip in clips]


def _score_clips(clips: list[Clip], model: WindowModel, vad: VadConfig, mapping: dict[str, str], labels: list[str],
                 min_confidence: float) -> _Tally:
    """Run every clip whose (merged) emotion is scored; one running voice estimate per speaker, as a daemon hearing them."""
    tally = _Tally()
    voices: dict[str, SpeakerStats | None] = {}
    for clip in clips:
        emotion = mapping.get(clip.emotion, clip.emotion)
        if emotion not in labels:
            tally.skipped += 1
            continue
        try:
            if clip.speaker not in voices:
                voices[clip.speaker] = model.new_voice()
            analysis = analyze_file(clip.path, model, vad, voices[clip.speaker])
        except AudioError as exc:
            log.warning("%s", exc)
            tally.unreadable += 1
            continue
        if analysis.source_rate_hz is not None and analysis.source_rate_hz < model.card.sample_rate_hz:
            tally.below_model_rate += 1
        row = class_row(analysis, model.labels, mapping, labels)
        if row is None:
            tally.no_speech += 1
            continue
        tally.truths.append(emotion)
        tally.rows.append(row)
        tally.covered.append(Verdict.from_mean(labels, row, min_confidence).label != UNCERTAIN_LABEL)
    return tally


def class_row(analysis: FileAnalysis, model_labels: tuple[str, ...], mapping: dict[str, str], labels: list[str]) -> np.ndarray | None:
    """The clip's mean window probabilities, merged classes added into their targets, renormalised over labels; None without speech."""
    if analysis.window_probabilities is None:
        return None
    mean = np.asarray(analysis.window_probabilities, dtype=np.float64).mean(axis=0)
    merged = dict.fromkeys(labels, 0.0)
    for label, probability in zip(model_labels, mean):
        target = mapping.get(label, label)
        if target in merged:
            merged[target] += probability
    row = np.array([merged[label] for label in labels])
    total = row.sum()
    return row / total if total > 0 else np.full(len(labels), 1.0 / len(labels))


def _coverage(tally: _Tally, labels: list[str], per_class: dict[str, dict]) -> dict:
    """Uncertain count, coverage and UAR on the covered clips; adds each class's coverage to per_class."""
    covered = np.asarray(tally.covered, dtype=bool)
    true_idx = label_indices(tally.truths, labels)
    pred_idx = np.asarray(tally.rows).argmax(axis=1)
    for i, label in enumerate(labels):
        mine = true_idx == i
        per_class[label]["coverage"] = float(covered[mine].mean()) if mine.any() else None
    uar_covered = uar(true_idx[covered], pred_idx[covered], len(labels)) if covered.any() else None
    return {"uncertain": int((~covered).sum()), "coverage": float(covered.mean()), "uar_covered": uar_covered}


def format_evaluation(report: dict) -> str:
    """A short text report: headline figures, clips below the model's rate, coverage, per-class table ("-" where undefined), confusion matrix."""
    lines = [
        "clips %d  scored %d  skipped %d  unreadable %d  no speech %d"
        % (report["clips"], report["n"], report["skipped"], report["unreadable"], report["no_speech"]),
        "accuracy %.3f  UAR %.3f  macro-F1 %.3f  ECE %.3f" % (report["accuracy"], report["uar"], report["macro_f1"], report["ece"]),
        "min_confidence %.2f  coverage %.3f (%d uncertain)  UAR on covered %s"
        % (report["min_confidence"], report["coverage"], report["uncertain"], _score(report["uar_covered"])),
        "",
        "%-10s %9s %7s %6s %8s %9s" % ("class", "precision", "recall", "f1", "support", "coverage"),
    ]
    if report.get("below_model_rate"):
        lines.insert(1, below_rate_note(report["below_model_rate"], report["model_rate_hz"]))
    for label in report["labels"]:
        scores = report["per_class"][label]
        lines.append("%-10s %9s %7s %6s %8d %9s" % (label, _score(scores["precision"]), _score(scores["recall"]), _score(scores["f1"]),
                                                 scores["support"], _score(scores["coverage"])))
    lines += ["", "confusion (rows true, columns predicted): " + " ".join(label[:4] for label in report["labels"])]
    lines += ["%-10s %s" % (label, " ".join("%4d" % count for count in row)) for label, row in zip(report["labels"], report["confusion"])]
    return "\n".join(lines)


def below_rate_note(clips: int, rate_hz: int) -> str:
    """One line: how many clips were recorded below the model's rate."""
    return ("%d clip%s recorded below the model's %d Hz (upsampled, with nothing in the upper band): their answers differ "
            "from full-band audio" % (clips, "" if clips == 1 else "s", rate_hz))


def _score(value: float | None) -> str:
    """0.812 -> '0.812'; None -> '-'."""
    return UNDEFINED if value is None else "%.3f" % value
