"""File analysis: speech segments, a label for each, and one label for the file; a file is read a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serd.audio import stream_audio
from serd.config import DEFAULT_MIN_CONFIDENCE, VadConfig
from serd.events import UNCERTAIN_LABEL
from serd.frontend import SegmentEnded, SegmentStarted, SpeechFrontend, WindowReady
from serd.model import WindowModel
from serd.pipeline import vad_params
from serd.ringbuffer import RingBuffer
from serd import affect, speaker
from serd.speaker import SpeakerStats

CHUNK_S = 1.0  # a file is decoded and analysed this much at a time
RING_S = 10.0  # audio held beyond two windows' span: the front end reads at most a window and a hop behind the newest sample


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

    @property
    def arousal(self) -> float | None:
        """Arousal (-1..1) of the probabilities (serd.affect); None without speech."""
        point = affect.coordinates(self.probabilities)
        return point[1] if point else None

    @property
    def valence(self) -> float | None:
        """Valence (-1..1) of the probabilities (serd.affect); None without speech."""
        point = affect.coordinates(self.probabilities)
        return point[0] if point else None


@dataclass(frozen=True)
class SegmentResult:
    """One speech segment of a file."""

    start_s: float
    end_s: float
    windows: int
    verdict: Verdict


@dataclass(frozen=True)
class FileAnalysis:
    """Everything serd says about one file; source_rate_hz is the rate it was recorded at (None: not known)."""

    duration_s: float
    segments: list[SegmentResult] = field(default_factory=list)
    overall: Verdict = Verdict(None, 0.0, {})
    window_probabilities: np.ndarray | None = None
    source_rate_hz: int | None = None
    warnings: tuple[str, ...] = ()
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
            "source_rate_hz": self.source_rate_hz,
            "label": self.overall.label,
            "confidence": self.overall.confidence,
            "probabilities": self.overall.probabilities,
            "arousal": self.overall.arousal,
            "valence": self.overall.valence,
            "segments": [
                {"start_s": s.start_s, "end_s": s.end_s, "windows": s.windows, "label": s.verdict.label,
                 "confidence": s.verdict.confidence, "probabilities": s.verdict.probabilities,
                 "arousal": s.verdict.arousal, "valence": s.verdict.valence}
                for s in self.segments
            ],
            "warnings": list(self.warnings),
        }


def analyze_file(path: str | Path, model: WindowModel, vad: VadConfig, voice: SpeakerStats | None = None,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> FileAnalysis:
    """A file ("-": standard input) decoded and analysed a chunk at a time, so memory does not grow with its length;
    AudioError if it cannot be read (see analyze_samples for the rest)."""
    rate_hz = model.card.sample_rate_hz
    with stream_audio(path, round(CHUNK_S * rate_hz), rate_hz) as stream:
        return analyze_stream(stream, model, vad, voice, min_confidence, stream.source_rate_hz)


def analyze_samples(samples: np.ndarray, model: WindowModel, vad: VadConfig, voice: SpeakerStats | None = None,
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> FileAnalysis:
    """Run the daemon's front end and model over a whole clip (16 kHz mono int16), all of it at once.

    A segment, or the whole clip, whose mean top probability is below min_confidence is "uncertain".

    A model with a voice estimate (speaker-normalised or speaker-centred) starts from a fresh one unless
    voice (which the clip then updates) carries one over from earlier clips of the same speaker."""
    return analyze_stream([samples], model, vad, voice, min_confidence, ring_samples=max(len(samples), 1))


def analyze_stream(chunks: Iterable[np.ndarray], model: WindowModel, vad: VadConfig, voice: SpeakerStats | None = None,
                   min_confidence: float = DEFAULT_MIN_CONFIDENCE, source_rate_hz: int | None = None,
                   ring_samples: int | None = None, gate=None) -> FileAnalysis:
    """analyze_samples over audio that comes in chunks, held in a ring of ring_samples (default: a few seconds).

    The front end reads each chunk as it comes, as the daemon does, so the result is the whole clip's. gate, when
    given, stands in for the front end's VAD (serd.split replays segments found before)."""
    rate_hz = model.card.sample_rate_hz
    ring = RingBuffer(ring_samples or analysis_ring_samples(model))
    if voice is None:
        voice = model.new_voice()
    frontend = SpeechFrontend(ring, vad_params(vad), model.card.features, model.card.window, keep_audio=model.needs_audio,
                              speaker=speaker.front_end_voice(model, voice), gate=gate)
    tally = _Tally(model, min_confidence)
    for chunk in chunks:
        _feed(ring, frontend, chunk, tally)
    tally.add(frontend.flush())
    return tally.analysis(ring.end_index, source_rate_hz)


def analysis_ring_samples(model: WindowModel) -> int:
    """Ring size for streamed analysis: two windows' span and a margin, whatever the file's length."""
    card = model.card
    return round(RING_S * card.sample_rate_hz) + 2 * card.window.frames * card.features.hop_samples


def rate_warning(source_rate_hz: int | None, rate_hz: int) -> str | None:
    """A note when a file was recorded below the model's rate (8 kHz telephone audio): upsampled, it lacks the
    upper band the model hears, which changes the answer."""
    if source_rate_hz is None or source_rate_hz >= rate_hz:
        return None
    return ("recorded at %d Hz, below the model's %d Hz: upsampled, it has nothing above %d Hz, so the answer differs "
            "from full-band audio's" % (source_rate_hz, rate_hz, source_rate_hz // 2))


def _feed(ring: RingBuffer, frontend: SpeechFrontend, chunk: np.ndarray, tally: "_Tally") -> None:
    """Write chunk into the ring in pieces that overwrite nothing the front end still reads, processing each."""
    start = 0
    while start < len(chunk):
        room = frontend.released_index + ring.capacity_samples - ring.end_index
        if room <= 0:
            raise RuntimeError("analysis ring of %d samples cannot hold what the front end reads" % ring.capacity_samples)
        ring.write(chunk[start : start + room])
        start += room
        tally.add(frontend.process())


class _Tally:
    """Front-end items -> model rows per segment and for the whole file."""

    def __init__(self, model: WindowModel, min_confidence: float):
        self.model, self.min_confidence = model, min_confidence
        self.segments: list[SegmentResult] = []
        self.all_rows: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._start = 0
        self.spans_s: list[tuple[float, float]] = []  # of every window, in order

    def add(self, items: list) -> None:
        """Run the model on each window; close a segment's verdict at its end."""
        rate_hz = self.model.card.sample_rate_hz
        for item in items:
            if isinstance(item, SegmentStarted):
                self._rows, self._start = [], item.sample_index
            elif isinstance(item, WindowReady):
                self._rows.append(self.model.predict(item.window, item.audio))
                self.spans_s.append(self._span_s(item.sample_index))
            elif isinstance(item, SegmentEnded):
                verdict = Verdict.from_rows(self.model.labels, self._rows, self.min_confidence)
                self.segments.append(SegmentResult(round(self._start / rate_hz, 3), round(item.sample_index / rate_hz, 3),
                                                   len(self._rows), verdict))
                self.all_rows.extend(self._rows)

    def _span_s(self, end_index: int) -> tuple[float, float]:
        """(start_s, end_s) of the audio a window ending at end_index covers, within its segment."""
        card = self.model.card
        span_samples = (card.window.frames - 1) * card.features.hop_samples + card.features.frame_samples
        return round(max(self._start, end_index - span_samples) / card.sample_rate_hz, 3), round(end_index / card.sample_rate_hz, 3)

    def analysis(self, samples: int, source_rate_hz: int | None) -> FileAnalysis:
        """The file's analysis once every item was added."""
        rate_hz = self.model.card.sample_rate_hz
        probabilities = np.asarray(self.all_rows) if self.all_rows else None
        overall = Verdict.from_rows(self.model.labels, self.all_rows, self.min_confidence)
        warning = rate_warning(source_rate_hz, rate_hz)
        return FileAnalysis(samples / rate_hz, self.segments, overall, probabilities, source_rate_hz, (warning,) if warning else (),
                            tuple(self.spans_s))
