"""Typed events and their wire form (JSON-ready dicts); no I/O here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 1
SILENCE_LABEL = "silence"
SILENCE_CONFIDENCE = 1.0  # the label silence is certain: the speech gate closed
UNCERTAIN_LABEL = "uncertain"  # speech whose smoothed top probability is below [smoothing] min_confidence


@dataclass(frozen=True)
class Event:
    """Fields every event carries.

    stream_time_s counts seconds of audio since the source started (sample index / rate);
    wall_time_s is the Unix time (UTC seconds) when the event was made.
    """

    TYPE: ClassVar[str] = "event"
    device: str
    stream_time_s: float
    wall_time_s: float
    segment: int | None = None

    @property
    def type(self) -> str:
        """Kebab-case type name on the wire."""
        return self.TYPE

    def to_dict(self) -> dict[str, Any]:
        """Wire form: schema, type, then the fields."""
        data: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": self.TYPE}
        for item in dataclasses.fields(self):  # fields are scalars or flat dicts: a shallow copy is a full copy
            value = getattr(self, item.name)
            data[item.name] = dict(value) if isinstance(value, dict) else value
        return data


@dataclass(frozen=True)
class SpeechStarted(Event):
    """A speech segment began (stream_time_s includes the pre-roll)."""

    TYPE: ClassVar[str] = "speech-started"


@dataclass(frozen=True)
class SpeechEnded(Event):
    """A speech segment ended."""

    TYPE: ClassVar[str] = "speech-ended"
    duration_s: float = 0.0


@dataclass(frozen=True)
class EmotionChanged(Event):
    """The smoothed emotion changed; label is "silence" when speech has stopped, "uncertain" when no label is sure enough."""

    TYPE: ClassVar[str] = "emotion-changed"
    label: str = SILENCE_LABEL
    previous: str = SILENCE_LABEL
    confidence: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    arousal: float | None = None  # -1 (calm) .. 1 (excited), from the probabilities (serd.affect); None for silence
    valence: float | None = None  # -1 (unpleasant) .. 1 (pleasant), likewise


@dataclass(frozen=True)
class EmotionState(Event):
    """The current smoothed emotion, repeated while speech lasts."""

    TYPE: ClassVar[str] = "emotion-state"
    label: str = SILENCE_LABEL
    confidence: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    arousal: float | None = None  # as in EmotionChanged
    valence: float | None = None


@dataclass(frozen=True)
class Status(Event):
    """Health of the daemon: state is starting, running, reloading, error or stopping."""

    TYPE: ClassVar[str] = "status"
    state: str = "running"
    message: str = ""
    audio_s: float = 0.0
    overruns: int = 0
    lost_samples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    speaker_speech_s: float = 0.0  # speech heard by the running voice estimate (models that keep one; 0 otherwise)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (SpeechStarted, SpeechEnded, EmotionChanged, EmotionState, Status)
}


class EventFormatError(ValueError):
    """A wire dict is not a valid serd event."""


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild a typed event from its wire form; raises EventFormatError when it is not one."""
    if not isinstance(data, dict):
        raise EventFormatError("event must be a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise EventFormatError("unsupported schema %r (this serd speaks %d)" % (data.get("schema"), SCHEMA_VERSION))
    cls = EVENT_TYPES.get(data.get("type"))
    if cls is None:
        raise EventFormatError("unknown event type %r" % (data.get("type"),))
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{key: value for key, value in data.items() if key in names})
    except TypeError as exc:
        raise EventFormatError("bad %s event: %s" % (cls.TYPE, exc)) from None
