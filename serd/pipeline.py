"""Wires the stages: ring buffer -> front end -> model -> smoother -> typed events. Synchronous."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, replace
from typing import Callable

from serd.config import Config, SmoothingConfig, VadConfig
from serd.errors import ModelError
from serd.events import EmotionChanged, EmotionState, Event, SpeechEnded, SpeechStarted
from serd.frontend import SegmentEnded, SegmentStarted, SpeechFrontend, WindowReady
from serd.model import WindowModel
from serd.ringbuffer import RingBuffer
from serd.smoothing import EmotionUpdate, Smoother
from serd import affect, speaker
from serd.vad import VadParams

log = logging.getLogger(__name__)

HOP_TIMES_KEPT = 10000


def vad_params(config: VadConfig) -> VadParams:
    """The gate's parameters from the [vad] section."""
    return VadParams(**asdict(config))


def check_ring_for(model: WindowModel, ring: RingBuffer) -> None:
    """A model that reads window audio needs a ring of at least two windows' span."""
    card = model.card
    needed = 2 * card.window.frames * card.features.hop_samples
    if model.needs_audio and ring.capacity_samples < needed:
        raise ModelError("the %s model needs [source] ring_s of at least %.0f s" % (card.name, needed / card.sample_rate_hz))


class Pipeline:
    """Consumes the ring buffer from where it last stopped and returns the events that audio caused.

    hop_times_s keeps the processing time of recent model hops (window -> model -> smoother).
    """

    def __init__(
        self,
        ring: RingBuffer,
        model: WindowModel,
        vad: VadConfig,
        smoothing: SmoothingConfig,
        device: str,
        start_index: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        speaker_memory_s: float = 0.0,
        last_segment_id: int = 0,
    ):
        self.ring = ring
        self.model = model
        self.device = device
        self._wall_clock = wall_clock
        self._rate_hz = model.card.sample_rate_hz
        params = vad_params(vad)
        as_trained = replace(params, gate=model.card.vad.gate, min_snr_db=model.card.vad.min_snr_db)  # these hold noise out,
        if as_trained != model.card.vad:  # they shape no window
            log.warning("VAD settings differ from those the model was trained with (%s)", model.card.vad)
        check_ring_for(model, ring)
        self.voice = model.new_voice(speaker_memory_s)  # the voice estimate, if the model keeps one
        self.frontend = SpeechFrontend(ring, params, model.card.features, model.card.window, start_index,
                                       keep_audio=model.needs_audio, speaker=speaker.front_end_voice(model, self.voice),
                                       last_segment_id=last_segment_id)
        self.smoother = Smoother(model.labels, smoothing)
        self.hop_times_s: deque[float] = deque(maxlen=HOP_TIMES_KEPT)
        self.hops_total = 0  # hops made since this pipeline was built
        self._segment_start: dict[int, int] = {}

    @classmethod
    def from_config(cls, ring: RingBuffer, model: WindowModel, config: Config, device: str, start_index: int | None = None) -> "Pipeline":
        """Build from the whole configuration, reading the ring from start_index (default: its oldest sample)."""
        return cls(ring, model, config.vad, config.smoothing, device, start_index, speaker_memory_s=config.model.speaker_memory_s)

    @property
    def speaker_speech_s(self) -> float:
        """Seconds of speech the running voice estimate has heard (0 for per-window models)."""
        if self.voice is None:
            return 0.0
        return self.voice.frames_heard * self.model.voice_step_s

    @property
    def consumed_index(self) -> int:
        """Absolute index of the first sample not yet processed."""
        return self.frontend.consumed_index

    def process(self) -> list[Event]:
        """Events caused by all audio that arrived since the last call."""
        return self._events(self.frontend.process())

    def flush(self) -> list[Event]:
        """End of stream: close open speech and return the last events."""
        return self._events(self.frontend.flush())

    def _events(self, items) -> list[Event]:
        """Turn front-end items into events, running the model on each window."""
        events: list[Event] = []
        for item in items:
            if isinstance(item, WindowReady):
                events.extend(self._on_window(item))
            elif isinstance(item, SegmentStarted):
                self._segment_start[item.segment_id] = item.sample_index
                events.append(SpeechStarted(**self._common(item.sample_index, item.segment_id)))
            elif isinstance(item, SegmentEnded):
                events.extend(self._on_segment_end(item))
        return events

    def _on_window(self, item: WindowReady) -> list[Event]:
        """Model and smoother on one window."""
        started_s = time.perf_counter()
        probabilities = self.model.predict(item.window, item.audio)
        updates = self.smoother.push(probabilities, item.sample_index / self._rate_hz)
        self.hop_times_s.append(time.perf_counter() - started_s)
        self.hops_total += 1
        return [self._emotion_event(update, item.segment_id) for update in updates]

    def _on_segment_end(self, item: SegmentEnded) -> list[Event]:
        """speech-ended, then silence if an emotion was being reported."""
        start = self._segment_start.pop(item.segment_id, item.sample_index)
        ended = SpeechEnded(duration_s=(item.sample_index - start) / self._rate_hz, **self._common(item.sample_index, item.segment_id))
        updates = self.smoother.end_of_speech(item.sample_index / self._rate_hz)
        return [ended] + [self._emotion_event(update, item.segment_id) for update in updates]

    def _emotion_event(self, update: EmotionUpdate, segment_id: int) -> Event:
        """emotion-changed or emotion-state from a smoother update."""
        common = self._common(round(update.stream_time_s * self._rate_hz), segment_id)
        point = affect.coordinates(update.probabilities)
        valence, arousal = point if point else (None, None)
        fields = dict(label=update.label, confidence=update.confidence, probabilities=update.probabilities,
                      arousal=arousal, valence=valence, **common)
        if update.kind == "changed":
            return EmotionChanged(previous=update.previous, **fields)
        return EmotionState(**fields)

    def _common(self, sample_index: int, segment_id: int) -> dict:
        """Fields every event carries."""
        return dict(
            device=self.device,
            stream_time_s=round(sample_index / self._rate_hz, 4),
            wall_time_s=round(self._wall_clock(), 4),
            segment=segment_id,
        )
