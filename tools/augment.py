"""Augmentation: audio (noise at a controlled SNR, gain, time shift, speed) and SpecAugment masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

INT16_MAX = 32767
INT16_MIN = -32768
SPEED_DENOMINATOR = 20  # speed factors are applied as resample_poly(x, 20, round(20 * factor))
NOISE_COLOURS = ("white", "pink", "brown")


@dataclass(frozen=True)
class AudioAugment:
    """Which audio augmentations to draw per copy, and their ranges (0 / empty = off)."""

    noise_prob: float = 0.8
    snr_db_min: float = 5.0
    snr_db_max: float = 30.0
    gain_db_max: float = 6.0
    shift_ms_max: float = 250.0
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)


@dataclass(frozen=True)
class SpecAugment:
    """Time and frequency masks on normalised windows (masked cells set to 0, the window mean)."""

    time_masks: int = 2
    time_width_max: int = 20
    freq_masks: int = 2
    freq_width_max: int = 6


def apply(samples: np.ndarray, aug: AudioAugment, rng: np.random.Generator) -> np.ndarray:
    """One augmented int16 copy of samples: speed, shift, noise, gain in that order."""
    audio = samples.astype(np.float64)
    if aug.speeds:
        audio = change_speed(audio, float(rng.choice(aug.speeds)))
    if aug.shift_ms_max > 0:
        audio = shift(audio, int(rng.uniform(0, aug.shift_ms_max) * 16), rng)
    if rng.random() < aug.noise_prob:
        audio = add_noise(audio, rng.uniform(aug.snr_db_min, aug.snr_db_max), rng)
    if aug.gain_db_max > 0:
        audio = audio * 10.0 ** (rng.uniform(-aug.gain_db_max, aug.gain_db_max) / 20.0)
    return np.clip(np.round(audio), INT16_MIN, INT16_MAX).astype(np.int16)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play faster (factor > 1) or slower by resampling; pitch moves with tempo."""
    if factor == 1.0:
        return audio
    return resample_poly(audio, SPEED_DENOMINATOR, int(round(SPEED_DENOMINATOR * factor)))


def shift(audio: np.ndarray, offset_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Move the clip by offset_samples: drop them from the start or pad quiet audio before it."""
    if offset_samples <= 0:
        return audio
    if rng.random() < 0.5:
        return audio[offset_samples:]
    return np.concatenate([np.zeros(offset_samples), audio])


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix coloured noise at snr_db relative to the clip's loudest half-second."""
    noise = coloured_noise(len(audio), str(rng.choice(NOISE_COLOURS)), rng)
    signal_power = _speech_power(audio)
    noise_power = np.mean(noise**2) + 1e-12
    return audio + noise * np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))


def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise of unit-ish power."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    return np.fft.irfft(spectrum / freqs**exponent, n=n_samples)


def _speech_power(audio: np.ndarray, block: int = 8000) -> float:
    """Mean power of the louder half of half-second blocks (speech, not the silence around it)."""
    n_blocks = max(1, len(audio) // block)
    blocks = audio[: n_blocks * block].reshape(n_blocks, -1) if len(audio) >= block else audio[None, :]
    powers = np.sort(np.mean(blocks**2, axis=1))
    return float(np.mean(powers[len(powers) // 2 :])) + 1e-12


def spec_augment(batch: np.ndarray, spec: SpecAugment, rng: np.random.Generator) -> np.ndarray:
    """Copy of a (n, frames, bands) batch with random time and frequency stripes zeroed."""
    out = batch.copy()
    n, frames, bands = out.shape[:3]
    for _ in range(spec.time_masks):
        _mask(out, rng, n, frames, spec.time_width_max, axis=1)
    for _ in range(spec.freq_masks):
        _mask(out, rng, n, bands, spec.freq_width_max, axis=2)
    return out


def _mask(out: np.ndarray, rng: np.random.Generator, n: int, length: int, width_max: int, axis: int) -> None:
    """Zero one random stripe per item along axis (time = 1, frequency = 2)."""
    widths = rng.integers(0, width_max + 1, size=n)
    starts = rng.integers(0, np.maximum(length - widths, 1))
    positions = np.arange(length)[None, :]
    stripe = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
    if axis == 1:
        out[stripe[:, :, None].repeat(out.shape[2], axis=2)] = 0.0
    else:
        out[stripe[:, None, :].repeat(out.shape[1], axis=1)] = 0.0
