"""Augmentation: audio (noise at a controlled SNR, gain, time shift, speed, room reverberation, telephone
band), SpecAugment masks and frequency warping (vocal tract length perturbation) of log-mel windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from serd.features import FeatureParams, hz_to_mel, mel_to_hz

INT16_MAX = 32767
INT16_MIN = -32768
SPEED_DENOMINATOR = 20  # speed factors are applied as resample_poly(x, 20, round(20 * factor))
NOISE_COLOURS = ("white", "pink", "brown")
SAMPLE_RATE_HZ = 16000
TELEPHONE_RATE_HZ = 8000  # narrow-band telephony: 8 kHz sampling, nothing above 4 kHz
TELEPHONE_LOW_HZ = 300.0  # and little below 300 Hz
RIR_DIRECT_GAIN = 1.0  # the direct path, against a diffuse tail of unit energy at its start


@dataclass(frozen=True)
class AudioAugment:
    """Which audio augmentations to draw per copy, and their ranges (0 / empty = off)."""

    noise_prob: float = 0.8
    snr_db_min: float = 5.0
    snr_db_max: float = 30.0
    gain_db_max: float = 6.0
    shift_ms_max: float = 250.0
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    reverb_prob: float = 0.0  # share of copies convolved with a synthetic room impulse response
    rt60_s_min: float = 0.2
    rt60_s_max: float = 0.8
    telephone_prob: float = 0.0  # share of copies band-limited to telephone bandwidth (8 kHz and back)
    gain_db: float = 0.0  # fixed gain added to the random one; int16 clipping follows, so +20 dB clips loud speech


@dataclass(frozen=True)
class SpecAugment:
    """Time and frequency masks on normalised windows (masked cells set to 0, the window mean)."""

    time_masks: int = 2
    time_width_max: int = 20
    freq_masks: int = 2
    freq_width_max: int = 6


def apply(samples: np.ndarray, aug: AudioAugment, rng: np.random.Generator) -> np.ndarray:
    """One augmented int16 copy of samples: speed, shift, reverberation, noise, telephone band, gain in that order."""
    audio = samples.astype(np.float64)
    if aug.speeds:
        audio = change_speed(audio, float(rng.choice(aug.speeds)))
    if aug.shift_ms_max > 0:
        audio = shift(audio, int(rng.uniform(0, aug.shift_ms_max) * 16), rng)
    if aug.reverb_prob > 0 and rng.random() < aug.reverb_prob:
        audio = reverberate(audio, rng.uniform(aug.rt60_s_min, aug.rt60_s_max), rng)
    if rng.random() < aug.noise_prob:
        audio = add_noise(audio, rng.uniform(aug.snr_db_min, aug.snr_db_max), rng)
    if aug.telephone_prob > 0 and rng.random() < aug.telephone_prob:
        audio = telephone_band(audio)
    gain_db = aug.gain_db + (rng.uniform(-aug.gain_db_max, aug.gain_db_max) if aug.gain_db_max > 0 else 0.0)
    if gain_db:
        audio = audio * 10.0 ** (gain_db / 20.0)
    return np.clip(np.round(audio), INT16_MIN, INT16_MAX).astype(np.int16)


def room_impulse_response(rt60_s: float, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A synthetic room impulse response (the statistical model of reverberation): a direct path, then Gaussian
    noise whose energy decays by 60 dB in rt60_s, first reflections after 2-10 ms; unit peak."""
    length = int(rt60_s * sample_rate_hz)
    delay = int(rng.uniform(0.002, 0.010) * sample_rate_hz)
    t_s = np.arange(length) / sample_rate_hz
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * t_s / rt60_s)  # amplitude -60 dB at rt60_s
    tail[:delay] = 0.0
    response = tail / np.sqrt(sample_rate_hz * rt60_s / 13.8)  # diffuse energy comparable to the direct path
    response[0] = RIR_DIRECT_GAIN
    return response / np.max(np.abs(response))


def reverberate(audio: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """audio heard in a room of reverberation time rt60_s (same length, same speech power)."""
    wet = fftconvolve(audio, room_impulse_response(rt60_s, rng))[: len(audio)]
    return wet * np.sqrt(_speech_power(audio) / _speech_power(wet))


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """audio as a narrow-band telephone line carries it: 300 Hz high-pass, 8 kHz sampling, resampled back to 16 kHz."""
    high_pass = butter(4, TELEPHONE_LOW_HZ, btype="highpass", fs=SAMPLE_RATE_HZ, output="sos")
    down = resample_poly(sosfilt(high_pass, audio), TELEPHONE_RATE_HZ, SAMPLE_RATE_HZ)
    return resample_poly(down, SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ)[: len(audio)]


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


def band_centres_hz(params: FeatureParams) -> np.ndarray:
    """Centre frequency of every mel band of params (the peaks of serd's triangular filters)."""
    edges_mel = np.linspace(hz_to_mel(params.fmin_hz), hz_to_mel(params.fmax_hz), params.n_mels + 2)
    return mel_to_hz(edges_mel[1:-1])


def freq_warp(batch: np.ndarray, max_factor: float, rng: np.random.Generator,
              params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Copy of a (n, frames, bands) log-mel batch, each window warped by a factor drawn log-uniformly in
    [1 / max_factor, max_factor] (vocal tract length perturbation, Jaitly & Hinton 2013)."""
    factors = np.exp(rng.uniform(-np.log(max_factor), np.log(max_factor), size=len(batch)))
    return warp_bands(batch, factors, params)


def warp_bands(batch: np.ndarray, factors: np.ndarray, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Copy of a (n, frames, bands) log-mel batch whose frequency axis is scaled by factors[i] in window i: the
    same speech as a smaller (> 1) or larger voice, pitch and formants together, tempo unchanged. Band b takes
    the value at frequency centre_b / factor, interpolated between bands and held at the edges."""
    bands = batch.shape[2]
    centres_hz = band_centres_hz(params)
    centres_mel = hz_to_mel(centres_hz)
    source_mel = hz_to_mel(centres_hz[None, :] / np.asarray(factors, dtype=np.float64)[:, None])
    position = np.clip(np.round((source_mel - centres_mel[0]) / (centres_mel[1] - centres_mel[0]), 9), 0, bands - 1)
    low = np.minimum(np.floor(position).astype(np.int64), bands - 2)
    frac = position - low
    weights = np.zeros((len(batch), bands, bands), dtype=batch.dtype)  # weights[i, source, band]
    window, band = np.indices(low.shape)
    weights[window, low, band] = 1.0 - frac
    weights[window, low + 1, band] += frac
    return np.matmul(batch, weights)
