"""Model windows: fixed-length, normalised runs of feature frames inside one speech segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serd.features import normalise_window


@dataclass(frozen=True)
class WindowParams:
    """Window geometry in feature frames, read from the model's JSON card."""

    frames: int = 200  # 2.0 s at a 10 ms hop
    hop_frames: int = 50  # a new window every 0.5 s of speech
    min_frames: int = 50  # shorter segments give no window

    @classmethod
    def from_dict(cls, data: dict) -> "WindowParams":
        """Build from the card's "window" object."""
        return cls(**data)

    def to_dict(self) -> dict:
        """The card's "window" object."""
        return dict(self.__dict__)


class WindowAssembler:
    """Collects frames of one segment and releases a window every hop.

    A segment shorter than a window gives one window at its end, filled by repeating its
    frames; a longer one gives a last window aligned to its end when at least half a hop of
    frames came after the previous window. Training uses this class too.
    """

    def __init__(self, params: WindowParams, n_features: int, normalise: bool = True):
        self.params = params
        self.n_features = n_features
        self.normalise = normalise  # False: release raw feature frames (a later stage normalises them)
        self.reset()

    def reset(self) -> None:
        """Start a new segment."""
        # the held frames are _buffer[_start:_end], at most one window; room for two so that
        # dropping the oldest frame is a slice move and compacting happens once a window
        self._buffer = np.zeros((2 * self.params.frames, self.n_features), dtype=np.float32)
        self._start = self._end = 0
        self._total = 0
        self._since_window = 0
        self._emitted = 0

    @property
    def total_frames(self) -> int:
        """Frames seen in this segment."""
        return self._total

    @property
    def frames_to_next_window(self) -> int:
        """Frames still to push before push() releases the next window (at least 1)."""
        if self._emitted == 0:
            return max(1, self.params.frames - self._total)
        return max(1, self.params.hop_frames - self._since_window)

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Add frames; return the normalised windows they complete."""
        return [window for _, window in self.push_counted(frames)]

    def push_counted(self, frames: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add frames; return (frames seen in the segment when released, window) for each window they complete."""
        windows = []
        start = 0
        while start < len(frames):
            take = min(len(frames) - start, self.frames_to_next_window)  # no window is due before the last of these
            self._hold(frames[start : start + take])
            start += take
            self._total += take
            self._since_window += take
            due = self._emitted == 0 or self._since_window >= self.params.hop_frames
            if self._total >= self.params.frames and due:
                windows.append((self._total, self._release()))
        return windows

    def finish(self) -> list[np.ndarray]:
        """The segment ended: return a last window if one is due."""
        if self._emitted == 0 and self._total >= self.params.min_frames:
            return [self._release()]
        if self._emitted and self._since_window >= max(1, self.params.hop_frames // 2):
            return [self._release()]
        return []

    def _hold(self, frames: np.ndarray) -> None:
        """Append frames, dropping the oldest beyond one window."""
        size, count = self.params.frames, len(frames)
        if count >= size:
            self._buffer[:size] = frames[-size:]
            self._start, self._end = 0, size
            return
        if self._end + count > len(self._buffer):
            keep = min(self._end - self._start, size - count)
            self._buffer[:keep] = self._buffer[self._end - keep : self._end]
            self._start, self._end = 0, keep
        self._buffer[self._end : self._end + count] = frames
        self._end += count
        self._start = max(self._start, self._end - size)

    def _release(self) -> np.ndarray:
        """The held frames (repeated to full length if short) as one window, normalised unless told not to."""
        self._emitted += 1
        self._since_window = 0
        held = self._buffer[self._start : self._end]
        if len(held) < self.params.frames:
            held = np.resize(held, (self.params.frames, self.n_features))
        return normalise_window(held) if self.normalise else held.copy()
