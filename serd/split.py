"""A long file analysed in parts whose sum is exactly its whole analysis (serd batch spreads the parts over workers).

A first pass runs only the decoder and the VAD over the file (a few per cent of the analysis's CPU) and notes
its speech segments. The front end resets features and windows at each segment's start, so a segment's
windows depend on its own audio only: a part analyses a run of the segments, the VAD replaced by a gate that
replays them. The parts' segments and window rows, in order, give the file's verdicts as analyze_file does.
Not for a model with a running voice estimate, which carries from segment to segment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serd.analyze import CHUNK_S, FileAnalysis, Verdict, analyze_stream, rate_warning
from serd.audio import AudioStream, stream_audio
from serd.config import DEFAULT_MIN_CONFIDENCE, VadConfig
from serd.model import WindowModel
from serd.pipeline import vad_params
from serd.vad import SpeechBoundary, VadGate


@dataclass(frozen=True)
class FilePlan:
    """A file's speech segments, (start, end) sample indices at the model's rate, its length and its recorded rate."""

    segments: tuple[tuple[int, int], ...]
    samples: int
    source_rate_hz: int | None


def splittable(model: WindowModel) -> bool:
    """The model's answer on a segment depends on that segment alone (no voice estimate carried over)."""
    return model.new_voice() is None


def plan_file(path: str | Path, model: WindowModel, vad: VadConfig) -> FilePlan:
    """The segments the front end's VAD finds in the file (decoded a chunk at a time); AudioError if unreadable."""
    rate_hz = model.card.sample_rate_hz
    gate = VadGate(vad_params(vad), rate_hz)
    boundaries: list[SpeechBoundary] = []
    samples = 0
    with stream_audio(path, round(CHUNK_S * rate_hz), rate_hz) as stream:
        for chunk in stream:
            samples += len(chunk)
            boundaries.extend(gate.push(chunk))
        boundaries.extend(gate.flush())
        source_rate_hz = stream.source_rate_hz
    starts = [b.sample_index for b in boundaries if b.kind == "start"]
    ends = [b.sample_index for b in boundaries if b.kind == "end"]
    return FilePlan(tuple(zip(starts, ends)), samples, source_rate_hz)


def part_ranges(plan: FilePlan, parts: int) -> list[tuple[int, int]]:
    """The plan's segments cut into at most `parts` runs of consecutive segments, (first, stop) indices into
    plan.segments, each holding about as much speech."""
    if not plan.segments:
        return [(0, 0)]
    speech = np.cumsum([end - start for start, end in plan.segments])
    cuts = [int(np.searchsorted(speech, speech[-1] * k / parts)) + 1 for k in range(1, parts)]
    edges = sorted(set([0] + [min(cut, len(plan.segments)) for cut in cuts] + [len(plan.segments)]))
    return list(zip(edges[:-1], edges[1:]))


class ReplayGate:
    """Stands in for the front end's VadGate: the start and end of each given segment, once the audio reaches it."""

    def __init__(self, segments: tuple[tuple[int, int], ...]):
        self._boundaries = [SpeechBoundary(kind, index) for start, end in segments for kind, index in (("start", start), ("end", end))]
        self._next = 0
        self._index = 0

    @property
    def decided_index(self) -> int:
        """Every sample pushed is decided."""
        return self._index

    @property
    def earliest_start_index(self) -> int:
        """The next segment's start, once the audio passed it (a replay knows no later start can come earlier)."""
        if self._next < len(self._boundaries):
            return min(self._index, self._boundaries[self._next].sample_index)
        return self._index

    def start_at(self, sample_index: int) -> None:
        """The next sample pushed has this absolute index."""
        self._index = sample_index

    def push(self, samples: np.ndarray) -> list[SpeechBoundary]:
        """The boundaries up to the end of these samples."""
        self._index += len(samples)
        return self._take(self._index)

    def flush(self) -> list[SpeechBoundary]:
        """End of stream: whatever boundaries are left."""
        return self._take(math.inf)

    def _take(self, limit: float) -> list[SpeechBoundary]:
        """Boundaries at or before limit, not given yet."""
        taken = []
        while self._next < len(self._boundaries) and self._boundaries[self._next].sample_index <= limit:
            taken.append(self._boundaries[self._next])
            self._next += 1
        return taken


def analyze_part(path: str | Path, model: WindowModel, vad: VadConfig, segments: tuple[tuple[int, int], ...],
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> FileAnalysis:
    """These segments of the file analysed as analyze_file would (the file decoded up to the last one's end)."""
    rate_hz = model.card.sample_rate_hz
    stop = segments[-1][1] if segments else 0
    with stream_audio(path, round(CHUNK_S * rate_hz), rate_hz) as stream:
        return analyze_stream(_until(stream, stop), model, vad, min_confidence=min_confidence, gate=ReplayGate(segments))


def _until(stream: AudioStream, stop: int) -> Iterator[np.ndarray]:
    """The stream's chunks up to the one that holds sample stop - 1."""
    seen = 0
    for chunk in stream:
        if seen >= stop:
            return
        seen += len(chunk)
        yield chunk


def combine(plan: FilePlan, parts: list[FileAnalysis], model: WindowModel, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> FileAnalysis:
    """The file's analysis from its parts in order: their segments and window rows, one overall verdict of all rows."""
    rate_hz = model.card.sample_rate_hz
    rows = [row for part in parts if part.window_probabilities is not None for row in part.window_probabilities]
    warning = rate_warning(plan.source_rate_hz, rate_hz)
    return FileAnalysis(plan.samples / rate_hz, [segment for part in parts for segment in part.segments],
                        Verdict.from_rows(model.labels, rows, min_confidence), np.asarray(rows) if rows else None,
                        plan.source_rate_hz, (warning,) if warning else (), tuple(span for part in parts for span in part.window_spans_s))
