"""Sample formats: int16 <-> float in [-1, 1), and little-endian PCM bytes of any width to float."""

from __future__ import annotations

import numpy as np

INT16_FULL_SCALE = 32768.0
INT16_MIN, INT16_MAX = -32768, 32767
PCM_OFFSET_8BIT = 128  # 8-bit PCM is unsigned, silence at 128
INT24_FULL_SCALE = float(1 << 23)
INT32_FULL_SCALE = float(1 << 31)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1) to int16, rounded and clipped."""
    return np.clip(np.round(audio * INT16_FULL_SCALE), INT16_MIN, INT16_MAX).astype(np.int16)


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 to float64 in [-1, 1); floats pass through as float64."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples.astype(np.float64) / INT16_FULL_SCALE
    return samples.astype(np.float64, copy=False)


def pcm_to_float(raw: bytes, width_bytes: int) -> np.ndarray:
    """Little-endian PCM bytes to float64 in [-1, 1): 8-bit unsigned, 16/24/32-bit signed; ValueError for other widths."""
    if width_bytes == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - PCM_OFFSET_8BIT) / PCM_OFFSET_8BIT
    if width_bytes == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / INT16_FULL_SCALE
    if width_bytes == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float64) / INT24_FULL_SCALE
    if width_bytes == 4:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / INT32_FULL_SCALE
    raise ValueError("unsupported sample width of %d bytes" % width_bytes)
