"""A fixed-size int16 ring of audio keyed by absolute sample index."""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Single writer, single reader; the writer never blocks and never waits for the reader."""

    def __init__(self, capacity_samples: int):
        if capacity_samples <= 0:
            raise ValueError("ring capacity must be positive")
        self.capacity_samples = capacity_samples
        self._data = np.zeros(capacity_samples, dtype=np.int16)
        self._end_index = 0  # absolute index one past the newest sample
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)

    @property
    def end_index(self) -> int:
        """Absolute index one past the newest sample written."""
        return self._end_index

    @property
    def start_index(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self._end_index - self.capacity_samples)

    def write(self, samples: np.ndarray) -> int:
        """Append samples (int16); returns the new end index. Old samples are overwritten."""
        samples = np.asarray(samples, dtype=np.int16)
        written = len(samples)
        samples = samples[max(0, written - self.capacity_samples) :]  # only the newest capacity survive
        count = len(samples)
        with self._lock:
            offset = (self._end_index + written - count) % self.capacity_samples
            first = min(count, self.capacity_samples - offset)
            self._data[offset : offset + first] = samples[:first]
            self._data[: count - first] = samples[first:]
            self._end_index += written
            self._written.notify_all()
            return self._end_index

    def read(self, start_index: int, stop_index: int) -> np.ndarray:
        """Copy of samples [start_index, stop_index); raises IndexError if they are not held."""
        with self._lock:
            if start_index < self.start_index or stop_index > self._end_index or start_index > stop_index:
                raise IndexError(
                    "samples %d..%d not held (ring holds %d..%d)" % (start_index, stop_index, self.start_index, self._end_index)
                )
            offset = start_index % self.capacity_samples
            count = stop_index - start_index
            first = min(count, self.capacity_samples - offset)
            return np.concatenate([self._data[offset : offset + first], self._data[: count - first]])

    def wait_for(self, index: int, timeout_s: float) -> bool:
        """Block the reader until end_index > index or the timeout passes; True if data came."""
        with self._written:
            return self._written.wait_for(lambda: self._end_index > index, timeout=timeout_s)
