"""Sample-rate change: Kaiser-windowed sinc, polyphase over the reduced rate ratio; offline and streaming."""

from __future__ import annotations

import functools
import math

import numpy as np

from serd.pcm import to_float, to_int16

ZERO_CROSSINGS = 32  # sinc lobes each side of the centre tap
ROLLOFF = 0.94  # cut-off as a fraction of the lower Nyquist frequency
KAISER_BETA = 8.6  # about 85 dB stop-band attenuation
FILTERS_CACHED = 16  # rate pairs whose filters are kept


class _Polyphase:
    """Windowed-sinc filters for every output phase of a rational rate change up/down."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int):
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError("sample rates must be positive")
        divisor = math.gcd(in_rate_hz, out_rate_hz)
        self.up, self.down = out_rate_hz // divisor, in_rate_hz // divisor
        cutoff = 0.5 * min(1.0, self.up / self.down) * ROLLOFF  # cycles per input sample
        self.half_taps = math.ceil(ZERO_CROSSINGS / (2.0 * cutoff))
        offsets = np.arange(self.up)[:, None] / self.up + (self.half_taps - 1) - np.arange(2 * self.half_taps)[None, :]
        taper = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (offsets / self.half_taps) ** 2, 0.0, 1.0))) / np.i0(KAISER_BETA)
        filters = 2.0 * cutoff * np.sinc(2.0 * cutoff * offsets) * taper
        self.filters = filters / filters.sum(axis=1, keepdims=True)

    def first_input(self, out_index: int) -> int:
        """Lowest input index output out_index reads."""
        return out_index * self.down // self.up - self.half_taps + 1

    def ready_outputs(self, received: int) -> int:
        """Outputs computable once `received` inputs arrived (all their taps are present)."""
        usable = received - self.half_taps
        return max(0, -(-usable * self.up // self.down))

    def total_outputs(self, received: int) -> int:
        """Outputs the whole input gives: one per 1/out_rate up to the input's end."""
        return -(-received * self.up // self.down)

    def compute(self, buffer: np.ndarray, buffer_start: int, first_out: int, stop_out: int) -> np.ndarray:
        """Outputs [first_out, stop_out) from buffer, which holds inputs from index buffer_start.

        Outputs one `up` apart share a filter phase and read windows `down` inputs apart, so each
        phase is one strided matrix-vector product.
        """
        count = max(0, stop_out - first_out)
        out = np.empty(count)
        if count == 0:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(buffer, 2 * self.half_taps)
        for offset in range(min(self.up, count)):
            position = (first_out + offset) * self.down
            start = self.first_input(first_out + offset) - buffer_start
            rows = windows[start :: self.down][: len(range(offset, count, self.up))]
            out[offset :: self.up] = rows @ self.filters[position % self.up]
        return out


@functools.lru_cache(maxsize=FILTERS_CACHED)
def _polyphase(in_rate_hz: int, out_rate_hz: int) -> _Polyphase:
    """Filters per rate pair, built once."""
    return _Polyphase(in_rate_hz, out_rate_hz)


def resample(samples: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """Whole-signal rate change; int16 in gives int16 out, float in gives float64 out."""
    if in_rate_hz == out_rate_hz:
        return np.array(samples, copy=True)
    poly = _polyphase(in_rate_hz, out_rate_hz)
    audio = to_float(samples)
    padded = np.concatenate([np.zeros(poly.half_taps - 1), audio, np.zeros(poly.half_taps)])
    result = poly.compute(padded, 1 - poly.half_taps, 0, poly.total_outputs(len(audio)))
    return to_int16(result) if np.asarray(samples).dtype == np.int16 else result


class StreamResampler:
    """Rate change of a stream in chunks of any size; push() results + flush() equal resample().

    push() takes int16 or float audio in [-1, 1) and returns int16.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int):
        self.in_rate_hz, self.out_rate_hz = in_rate_hz, out_rate_hz
        self._poly = _polyphase(in_rate_hz, out_rate_hz) if in_rate_hz != out_rate_hz else None
        half_taps = self._poly.half_taps if self._poly else 1
        self._buffer = np.zeros(half_taps - 1)
        self._buffer_start = 1 - half_taps  # input index of _buffer[0]
        self._received = 0
        self._next_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Audio in, the int16 outputs that became computable (a few ms behind the input)."""
        if self._poly is None:
            samples = np.asarray(samples)
            return np.array(samples, dtype=np.int16, copy=True) if samples.dtype == np.int16 else to_int16(samples)
        self._buffer = np.concatenate([self._buffer, to_float(samples)])
        self._received += len(samples)
        return to_int16(self._emit(self._poly.ready_outputs(self._received)))

    def flush(self) -> np.ndarray:
        """End of stream: the remaining outputs (the input is taken as silent after its end)."""
        if self._poly is None:
            return np.zeros(0, dtype=np.int16)
        self._buffer = np.concatenate([self._buffer, np.zeros(self._poly.half_taps)])
        return to_int16(self._emit(self._poly.total_outputs(self._received)))

    def _emit(self, stop_out: int) -> np.ndarray:
        """Compute outputs up to stop_out and drop inputs no later output reads."""
        out = self._poly.compute(self._buffer, self._buffer_start, self._next_out, stop_out)
        self._next_out = max(self._next_out, stop_out)
        keep_from = self._poly.first_input(self._next_out)
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start :]
            self._buffer_start = keep_from
        return out
