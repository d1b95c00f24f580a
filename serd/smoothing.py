"""From window posteriors to a steady emotion: averaging, hysteresis, minimum dwell. Pure."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from serd.config import SmoothingConfig
from serd.events import SILENCE_CONFIDENCE, SILENCE_LABEL, UNCERTAIN_LABEL


@dataclass(frozen=True)
class EmotionUpdate:
    """What the smoother decided after a window or at the end of speech.

    kind is "changed" (the label differs from the previous one) or "state" (a periodic repeat).
    """

    kind: str
    label: str
    previous: str
    confidence: float
    probabilities: dict[str, float]
    stream_time_s: float


class Smoother:
    """Holds the current emotion of one stream; silence is a state of its own, not an emotion.

    Speech whose smoothed top probability is below min_confidence is "uncertain", a state like
    silence: entering it from an emotion needs that emotion's dwell (no margin: uncertain has no
    probability of its own), and leaving it, as leaving silence, needs neither dwell nor margin,
    so a label that replaces another through uncertain waits one dwell, not two.
    """

    def __init__(self, labels: tuple[str, ...], config: SmoothingConfig):
        self.labels = labels
        self.config = config
        self._recent: deque[np.ndarray] = deque(maxlen=config.windows)
        self.label = SILENCE_LABEL
        self._since_s = 0.0
        self._last_state_s = 0.0

    def push(self, probabilities: np.ndarray, stream_time_s: float) -> list[EmotionUpdate]:
        """Take one window's probabilities (ending at stream_time_s); return what changed or is due."""
        self._recent.append(np.asarray(probabilities, dtype=np.float64))
        smoothed = np.mean(self._recent, axis=0)
        candidate = self._candidate(smoothed)
        if self._may_switch(candidate, smoothed, stream_time_s):
            return [self._switch(candidate, smoothed, stream_time_s)]
        if self.label != SILENCE_LABEL and stream_time_s - self._last_state_s >= self.config.state_interval_ms / 1000.0:
            self._last_state_s = stream_time_s
            return [self._update("state", self.label, smoothed, stream_time_s)]
        return []

    def end_of_speech(self, stream_time_s: float) -> list[EmotionUpdate]:
        """Speech stopped: forget the recent windows and report silence if an emotion was held."""
        self._recent.clear()
        if self.label == SILENCE_LABEL:
            return []
        update = EmotionUpdate("changed", SILENCE_LABEL, self.label, SILENCE_CONFIDENCE, {}, stream_time_s)
        self.label, self._since_s = SILENCE_LABEL, stream_time_s
        return [update]

    def _candidate(self, smoothed: np.ndarray) -> str:
        """The top label, or uncertain when its smoothed probability is below min_confidence."""
        if smoothed.max() < self.config.min_confidence:
            return UNCERTAIN_LABEL
        return self.labels[int(np.argmax(smoothed))]

    def _may_switch(self, candidate: str, smoothed: np.ndarray, now_s: float) -> bool:
        """Leaving silence or uncertain is free; leaving an emotion needs its dwell, and a margin for another emotion."""
        if candidate == self.label:
            return False
        if self.label in (SILENCE_LABEL, UNCERTAIN_LABEL):
            return True
        if now_s - self._since_s < self.config.min_dwell_ms / 1000.0:
            return False
        if candidate == UNCERTAIN_LABEL:
            return True
        return smoothed.max() >= smoothed[self.labels.index(self.label)] + self.config.hysteresis

    def _switch(self, candidate: str, smoothed: np.ndarray, now_s: float) -> EmotionUpdate:
        """Adopt candidate as the current label."""
        previous, self.label = self.label, candidate
        self._since_s = self._last_state_s = now_s
        return self._update("changed", candidate, smoothed, now_s, previous)

    def _update(self, kind: str, label: str, smoothed: np.ndarray, now_s: float, previous: str | None = None) -> EmotionUpdate:
        """Build an update carrying the full smoothed probability vector (uncertain: confidence is the top probability)."""
        probabilities = {name: round(float(p), 4) for name, p in zip(self.labels, smoothed)}
        top = smoothed.max() if label == UNCERTAIN_LABEL else smoothed[self.labels.index(label)]
        return EmotionUpdate(kind, label, previous if previous is not None else label, round(float(top), 4), probabilities, now_s)
