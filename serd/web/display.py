"""What the analysis page draws: waveform peaks and the log-mel spectrogram of the audio as serd decoded it."""

from __future__ import annotations

import base64
import dataclasses

import numpy as np

from serd.audio import INT16_FULL_SCALE
from serd.features import FeatureExtractor, FeatureParams

WAVEFORM_COLUMNS_MAX = 2000  # min/max pairs, about a screen's width
SPECTROGRAM_COLUMNS_MAX = 1500  # log-mel frames after averaging neighbours
SPECTROGRAM_RANGE_DB = 80.0  # shown below the loudest cell; quieter is black
POWER_LOG_TO_DB = 10.0 / np.log(10.0)  # natural log of power -> dB


def display_views(samples: np.ndarray, features: FeatureParams) -> dict:
    """{"waveform": ..., "log_mel": ...} for the page, both spanning the whole clip."""
    return {"waveform": waveform_peaks(samples, features.sample_rate_hz), "log_mel": log_mel_image(samples, features)}


def waveform_peaks(samples: np.ndarray, sample_rate_hz: int, columns_max: int = WAVEFORM_COLUMNS_MAX) -> dict:
    """Lowest and highest sample (in [-1, 1], 3 decimals) of each of up to columns_max equal slices."""
    samples_per_column = max(1, -(-len(samples) // columns_max))
    columns = -(-len(samples) // samples_per_column)
    padded = np.zeros(columns * samples_per_column, dtype=np.int16)
    padded[: len(samples)] = samples
    slices = padded.reshape(columns, samples_per_column) / INT16_FULL_SCALE
    return {"seconds_per_column": samples_per_column / sample_rate_hz, "min": np.round(slices.min(axis=1), 3).tolist(),
            "max": np.round(slices.max(axis=1), 3).tolist()}


def log_mel_image(samples: np.ndarray, features: FeatureParams, columns_max: int = SPECTROGRAM_COLUMNS_MAX) -> dict:
    """The log-mel power of serd's own feature code (the model's bands), as 0-255 cells over the top 80 dB.

    cells is base64 of columns x bands bytes, column after column, the lowest band first."""
    params = dataclasses.replace(features, kind="logmel")
    log_power = FeatureExtractor(params).compute(samples).astype(np.float64) * POWER_LOG_TO_DB
    frames_per_column = max(1, -(-len(log_power) // columns_max))
    columns = len(log_power) // frames_per_column
    if columns == 0:
        return {"seconds_per_column": 0.0, "bands": params.n_mels, "columns": 0, "top_db": 0.0, "cells": ""}
    pooled = log_power[: columns * frames_per_column].reshape(columns, frames_per_column, -1).mean(axis=1)
    top_db = float(pooled.max())
    scaled = np.clip((pooled - (top_db - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB, 0.0, 1.0)
    cells = np.round(scaled * 255).astype(np.uint8)
    return {"seconds_per_column": frames_per_column * params.hop_samples / params.sample_rate_hz, "bands": params.n_mels,
            "columns": columns, "top_db": round(top_db, 1), "fmin_hz": params.fmin_hz, "fmax_hz": params.fmax_hz,
            "cells": base64.b64encode(cells.tobytes()).decode("ascii")}
