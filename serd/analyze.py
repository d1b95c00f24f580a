"""Whole-file analysis: speech segments, a label for each, and one label for the file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serd.config import DEFAULT_MIN_CONFIDENCE, VadConfig
from serd.events import UNCERTAIN_LABEL
from serd.frontend import SegmentEnded, SegmentStarted, SpeechFrontend, WindowReady
from serd.model import WindowModel
from serd.pipeline import vad_params
from serd.ringbuffer import RingBuffer
from serd import speaker
from serd.speaker import SpeakerStats


@dataclass(frozen=True)
class Verdict:
    """A label (None: no speech; "uncertain": no label sure enough), its probability, and the whole probability vector."""

    label: str | None
    confidence: float
    probabilities: dict[str, float]

    @classmethod
    def from_rows(cls, labels: tuple[str, ...], rows: list[np.ndarray], min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> "Verdict":
        """Mean of window probabilities; no rows gives no label, a top mean below min_confidence "uncertain"."""
        if not rows:
            return cls(None, 0.0, {})
        return cls.from_mean(labels, np.mean(np.asarray(rows, dtype=np.float64), axis=0), min_confidence)

    @classmethod
    def from_mean(cls, labels: tuple[str, ...] | list[str], mean: np.ndarray, min_confidence: float) -> "Verdict":
        """The top label of a probability vector, "uncertain" when its probability is below min_confidence."""
        best = int(np.argmax(mean))
        label = labels[best] if mean[best] >= min_confidence else UNCERTAIN_LABEL
        return cls(label, round(float(mean[best]), 4), {name: round(float(p), 4) for name, p in zip(labels, mean)})


@dataclass(frozen=True)
class SegmentResult:
    """One speech segment of a file."""

    start_s: float
    end_s: float
    windows: int
    verdict: Verdict


@dataclass(frozen=True)
class FileAnalysis:
    """Everything serd says about one file."""

    duration_s: float
    segments: list[SegmentResult] = field(default_factory=list)
    overall: Verdict = Verdict(None, 0.0, {})
    window_probabilities: np.ndarray | None = None
    window_spans_s: tuple[tuple[float, float], ...] = ()  # (start_s, end_s) of each row of window_probabilities

    def timeline(self, labels: tuple[str, ...] | list[str]) -> list[dict]:
        """Each model window in time order: its span and class probabilities (JSON-ready)."""
        rows = self.window_probabilities if self.window_probabilities is not None else []
        return [{"start_s": start_s, "end_s": end_s, "probabilities": {name: round(float(p), 4) for name, p in zip(labels, row)}}
                for (start_s, end_s), row in zip(self.window_spans_s, rows)]

    def to_dict(self) -> dict:
        """JSON-ready form (window probabilities left out)."""
        return {
            "duration_s": round(self.duration_s, 3),
            "label": self.overall.label,
            "confidence": self.overall.confidence,
            "probabilities": self.overall.probabilities,
            "segments": [
                {"start_s": s.start_s, "end_s": s.end_s, "windows": s.windows, "label": s.verdict.label,
                 "confidence": s.verdict.confidence, "probabilities": s.verdict.probabilities}
                for s in self.segments
            ],
        }


def analyze_samples(samples: np.ndarray, model: WindowModel, vad: VadConfig, voice: SpeakerStats | None = None,
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> FileAnalysis:
    """Run the daemon's front end and model over a whole clip (16 kHz mono int16).

    A segment, or the whole clip, whose mean top probability is below min_confidence is "uncertain".

    A model with a voice estimate (speaker-normalised or speaker-centred) starts from a fresh one unless
    voice (which the clip then updates) carries one over from earlier clips of the same speaker."""
    rate_hz = model.card.sample_rate_hz
    ring = RingBuffer(max(len(samples), 1))
    if voice is None:
        voice = model.new_voice()
    frontend = SpeechFrontend(ring, vad_params(vad), model.card.features, model.card.window, keep_audio=model.needs_audio,
                              speaker=speaker.front_end_voice(model, voice))
    ring.write(samples)
    segments, all_rows, rows, start = [], [], [], 0
    spans, span_samples = [], (model.card.window.frames - 1) * model.card.features.hop_samples + model.card.features.frame_samples
    for item in frontend.process() + frontend.flush():
        if isinstance(item, SegmentStarted):
            rows, start = [], item.sample_index
        elif isinstance(item, WindowReady):
            rows.append(model.predict(item.window, item.audio))
            spans.append((round(max(start, item.sample_index - span_samples) / rate_hz, 3), round(item.sample_index / rate_hz, 3)))
        elif isinstance(item, SegmentEnded):
            verdict = Verdict.from_rows(model.labels, rows, min_confidence)
            segments.append(SegmentResult(round(start / rate_hz, 3), round(item.sample_index / rate_hz, 3), len(rows), verdict))
            all_rows.extend(rows)
    probabilities = np.asarray(all_rows) if all_rows else None
    return FileAnalysis(len(samples) / rate_hz, segments, Verdict.from_rows(model.labels, all_rows, min_confidence), probabilities,
                        tuple(spans))
