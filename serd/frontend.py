"""Speech front end: ring buffer -> VAD gate -> features -> model windows, one segment at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serd.features import FeatureExtractor, FeatureParams, StreamingFeatures
from serd.ringbuffer import RingBuffer
from serd.speaker import SpeakerStats
from serd.vad import VadGate, VadParams
from serd.windows import WindowAssembler, WindowParams


@dataclass(frozen=True)
class SegmentStarted:
    """Speech began at sample_index (pre-roll included)."""

    segment_id: int
    sample_index: int


@dataclass(frozen=True)
class WindowReady:
    """A normalised window (frames, n_features) ending at sample_index is ready for the model.

    audio holds the samples the window covers when the front end keeps audio (models that read it).
    """

    segment_id: int
    sample_index: int
    window: np.ndarray
    audio: np.ndarray | None = None


@dataclass(frozen=True)
class SegmentEnded:
    """Speech ended at sample_index."""

    segment_id: int
    sample_index: int


FrontendItem = SegmentStarted | WindowReady | SegmentEnded


class SpeechFrontend:
    """Reads new audio from a ring buffer and turns speech in it into model windows.

    Synchronous and thread-free: call process() whenever the ring has grown. Audio that the
    reader lost because the writer lapped it is skipped and counted in lost_samples. With
    keep_audio, each window carries the samples it covers (at most one window's span of the segment).
    Windows are normalised per window, or with speaker by the running estimate of the voice (which
    every speech frame updates before the windows it completes are released), or not at all when
    normalise is false and no speaker is given (training normalises them later).
    """

    def __init__(
        self,
        ring: RingBuffer,
        vad_params: VadParams,
        feature_params: FeatureParams,
        window_params: WindowParams,
        start_index: int | None = None,
        keep_audio: bool = False,
        normalise: bool = True,
        speaker: SpeakerStats | None = None,
        gate: VadGate | None = None,
        last_segment_id: int = 0,
    ):
        self.ring = ring
        self.speaker = speaker
        self.feature_params = feature_params
        self._audio_span = window_params.frames * feature_params.hop_samples if keep_audio else 0
        self._batch_samples = window_params.hop_frames * feature_params.hop_samples
        self._vad = gate if gate is not None else VadGate(vad_params, feature_params.sample_rate_hz)  # gate: a seam for given boundaries
        self._features = StreamingFeatures(FeatureExtractor(feature_params))
        self._windows = WindowAssembler(window_params, feature_params.n_features, normalise and speaker is None)
        self._vad_cursor = ring.start_index if start_index is None else start_index  # next sample the VAD has not seen
        self._vad.start_at(self._vad_cursor)
        self._feature_cursor: int | None = None  # next sample of the open segment not yet featurised
        self._segment_start_index = 0
        self._segment_id = last_segment_id  # a front end rebuilt by a reload goes on numbering after its predecessor
        self.lost_samples = 0
        self._flushed = False  # flush() was the last call: the consumed stream is wholly decided
        self._released_index = self._vad_cursor  # samples before this are no longer needed

    @property
    def in_speech(self) -> bool:
        """True while a speech segment is open."""
        return self._feature_cursor is not None

    @property
    def consumed_index(self) -> int:
        """Absolute index of the first sample not yet read from the ring."""
        return self._vad_cursor

    @property
    def released_index(self) -> int:
        """Absolute index before which the front end will read nothing more (safe for a writer to overwrite).

        Updated only when process() returns, so a writer on another thread never overwrites audio that
        process() is still reading (an open segment's features lag the VAD cursor).
        """
        return self._released_index

    @property
    def settled_index(self) -> int:
        """Absolute index before which no item still to come can fall: items come in stream order, and a status
        stamped here keeps that order (a fast source's ring runs ahead of this)."""
        if self._feature_cursor is not None:
            return self._feature_cursor
        if self._flushed:  # the stream ended: nothing more comes from what was consumed
            return self._vad_cursor
        return min(self._vad.earliest_start_index, self._vad_cursor)

    @property
    def segment_id(self) -> int:
        """Id of the open (or last) segment; counts from 1 (or from after last_segment_id)."""
        return self._segment_id

    def process(self) -> list[FrontendItem]:
        """Consume everything new in the ring; return what it produced, in stream order."""
        items = self._catch_up()
        stop = self.ring.end_index
        if stop <= self._vad_cursor:
            return items
        chunk = self.ring.read(self._vad_cursor, stop)
        self._vad_cursor, self._flushed = stop, False
        for boundary in self._vad.push(chunk):
            if boundary.kind == "start":
                items.append(self._open(boundary.sample_index))
            else:
                items.extend(self._close(boundary.sample_index))
        if self._feature_cursor is not None and self._vad.decided_index >= self._next_batch_index():
            items.extend(self._featurise(self._vad.decided_index))
        if self._feature_cursor is None:
            self._released_index = self._vad_cursor
        else:
            self._released_index = max(self._segment_start_index, self._feature_cursor - self._audio_span)
        return items

    def flush(self) -> list[FrontendItem]:
        """End of stream: close an open segment."""
        self._flushed = True
        items: list[FrontendItem] = []
        for boundary in self._vad.flush():
            items.extend(self._close(boundary.sample_index))
        return items

    def _catch_up(self) -> list[FrontendItem]:
        """If the writer lapped the reader, end open speech at the gap, skip to the oldest held
        sample and count the loss (features never splice audio across a gap)."""
        oldest = self.ring.start_index
        if self._feature_cursor is not None and self._feature_cursor < oldest <= self._vad_cursor:
            # only the features' lag was lapped: the segment goes on from the oldest held sample
            self.lost_samples += oldest - self._feature_cursor
            self._feature_cursor = self._segment_start_index = oldest
            self._features.reset()
            self._windows.reset()
        if self._vad_cursor >= oldest:
            return []
        items: list[FrontendItem] = []
        if self._feature_cursor is not None:
            items.append(SegmentEnded(self._segment_id, self._vad_cursor))
            self._feature_cursor = None
        self.lost_samples += oldest - self._vad_cursor
        self._vad_cursor = oldest
        self._vad.start_at(oldest)
        return items

    def _open(self, start_index: int) -> SegmentStarted:
        """A segment starts: reset features and windows, begin at the pre-roll."""
        self._segment_id += 1
        self._feature_cursor = max(start_index, self.ring.start_index)
        self._segment_start_index = self._feature_cursor
        self._features.reset()
        self._windows.reset()
        return SegmentStarted(self._segment_id, self._feature_cursor)

    def _close(self, end_index: int) -> list[FrontendItem]:
        """A segment ends: featurise up to its end and release the last window."""
        items = self._featurise(end_index)
        end_frames = self._windows.finish()
        items.extend(self._ready(end_index, window) for window in end_frames)
        items.append(SegmentEnded(self._segment_id, end_index))
        self._feature_cursor = None
        return items

    def _featurise(self, stop_index: int) -> list[FrontendItem]:
        """Push segment audio up to stop_index through features and windows.

        A window's sample_index is the end of its last frame, whatever the chunking was.
        """
        if self._feature_cursor is None or stop_index <= self._feature_cursor:
            return []
        samples = self.ring.read(self._feature_cursor, stop_index)
        self._feature_cursor = stop_index
        items: list[FrontendItem] = []
        frames = self._features.push(samples)
        if self.speaker is not None:
            self.speaker.observe(frames)
        for frames_seen, window in self._windows.push_counted(frames):
            items.append(self._ready(self._frame_end_index(frames_seen), window))
        return items

    def _ready(self, end_index: int, window: np.ndarray) -> WindowReady:
        """A window of the open segment, with its audio when the front end keeps audio."""
        if self.speaker is not None:
            window = self.speaker.normalise(window)
        if not self._audio_span:
            return WindowReady(self._segment_id, end_index, window)
        first = max(self._segment_start_index, end_index - self._audio_span)
        try:
            audio = self.ring.read(max(first, self.ring.start_index), end_index)
        except IndexError:  # the writer lapped this window's audio meanwhile: give what is left
            audio = np.zeros(0, dtype=np.int16)
        return WindowReady(self._segment_id, end_index, window, audio)

    def _next_batch_index(self) -> int:
        """Where the open segment's features are next computed, as one batch: at the end of the
        next window's last frame, or one model hop of audio on, whichever comes first (so the
        features lag the VAD by at most a hop, whatever the window length)."""
        window_end = self._frame_end_index(self._windows.total_frames + self._windows.frames_to_next_window)
        return min(window_end, self._feature_cursor + self._batch_samples)

    def _frame_end_index(self, frames_seen: int) -> int:
        """Absolute index one past the last sample of frame number frames_seen (from 1) of the open segment."""
        params = self.feature_params
        return self._segment_start_index + (frames_seen - 1) * params.hop_samples + params.frame_samples


@dataclass(frozen=True)
class ClipWindow:
    """A model window of a whole clip and the samples it covers [start_index, end_index)."""

    start_index: int
    end_index: int
    window: np.ndarray


def clip_window_items(
    samples: np.ndarray, vad_params: VadParams, feature_params: FeatureParams, window_params: WindowParams,
    normalise: bool = True,
) -> list[ClipWindow]:
    """All model windows the daemon would build from a whole clip, with the audio span of each
    (raw feature frames when normalise is false)."""
    ring = RingBuffer(max(len(samples), 1))
    frontend = SpeechFrontend(ring, vad_params, feature_params, window_params, normalise=normalise)
    ring.write(samples)
    span_samples = window_params.frames * feature_params.hop_samples
    found, segment_start = [], 0
    for item in frontend.process() + frontend.flush():
        if isinstance(item, SegmentStarted):
            segment_start = item.sample_index
        elif isinstance(item, WindowReady):
            start = max(segment_start, item.sample_index - span_samples)
            found.append(ClipWindow(start, item.sample_index, item.window))
    return found


def clip_windows(
    samples: np.ndarray, vad_params: VadParams, feature_params: FeatureParams, window_params: WindowParams,
    normalise: bool = True,
) -> list[np.ndarray]:
    """All model windows the daemon would build from a whole clip (training and analysis use this)."""
    return [item.window for item in clip_window_items(samples, vad_params, feature_params, window_params, normalise)]
