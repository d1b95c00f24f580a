"""Log-mel and MFCC features in numpy: one implementation for streaming and batch."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from serd.audio import to_float

LOG_FLOOR = 1e-6
INDEXED_FRAMES_MAX = 64  # streaming pushes of up to this many frames gather by index (sliding_window_view costs ~50 us a call)


@dataclass(frozen=True)
class FeatureParams:
    """Feature parameters, read from the model's JSON card."""

    kind: str = "logmel"  # "logmel" or "mfcc"
    sample_rate_hz: int = 16000
    frame_samples: int = 400  # 25 ms analysis window
    hop_samples: int = 160  # 10 ms between frames
    n_fft: int = 512
    n_mels: int = 40
    n_mfcc: int = 13  # used only when kind == "mfcc"
    fmin_hz: float = 20.0
    fmax_hz: float = 8000.0
    pitch_bins: int = 24  # used only when kind == "logmel_pitch": periodicity at this many candidate F0s ...
    pitch_fmin_hz: float = 65.0  # ... spaced evenly in log frequency from this one ...
    pitch_fmax_hz: float = 520.0  # ... to this one (three octaves)

    @property
    def n_features(self) -> int:
        """Values per frame."""
        if self.kind == "mfcc":
            return self.n_mfcc
        return self.n_mels + self.pitch_bins if self.kind == "logmel_pitch" else self.n_mels

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureParams":
        """Build from the card's "features" object."""
        return cls(**data)

    def to_dict(self) -> dict:
        """The card's "features" object; the pitch fields only for the kind that uses them (so that the
        cards and training caches of the other kinds keep their keys)."""
        data = dict(self.__dict__)
        if self.kind != "logmel_pitch":
            for key in PITCH_FIELDS:
                del data[key]
        return data


PITCH_FIELDS = ("pitch_bins", "pitch_fmin_hz", "pitch_fmax_hz")


def hz_to_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    freq_hz = np.asarray(freq_hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    logstep = np.log(6.4) / 27.0
    mels = freq_hz / f_sp
    log_region = freq_hz >= min_log_hz
    mels = np.where(log_region, min_log_hz / f_sp + np.log(np.maximum(freq_hz, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of hz_to_mel."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@functools.lru_cache(maxsize=4)
def mel_filterbank(params: FeatureParams) -> np.ndarray:
    """Slaney-normalised triangular filters, shape (n_mels, n_fft // 2 + 1); read-only, made once per
    params (`serd analyze` builds a front end per file)."""
    fft_freqs_hz = np.linspace(0.0, params.sample_rate_hz / 2.0, params.n_fft // 2 + 1)
    mel_edges = np.linspace(hz_to_mel(params.fmin_hz), hz_to_mel(params.fmax_hz), params.n_mels + 2)
    edges_hz = mel_to_hz(mel_edges)
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_freqs_hz[None, :]
    lower = -ramps[:-2] / widths_hz[:-1, None]
    upper = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    weights.flags.writeable = False
    return weights


def pitch_lags(params: FeatureParams) -> np.ndarray:
    """Autocorrelation lag in samples (fractional) of each pitch bin, from the highest F0 to the lowest."""
    f0_hz = np.geomspace(params.pitch_fmax_hz, params.pitch_fmin_hz, params.pitch_bins)
    return params.sample_rate_hz / f0_hz


def pitch_fft_size(params: FeatureParams) -> int:
    """The shortest FFT length of the form 2^k or 3 * 2^k (both fast) whose circular autocorrelation of a frame is
    exact up to the longest pitch lag (768 for the defaults, about a tenth cheaper than 1024 here)."""
    needed = params.frame_samples + int(np.ceil(pitch_lags(params)[-1])) + 1
    power = 1 << int(np.ceil(np.log2(needed)))
    return 3 * power // 4 if 3 * power // 4 >= needed else power


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix, shape (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


class FeatureExtractor:
    """Turns int16 (or float) audio into feature frames; stateless per call."""

    def __init__(self, params: FeatureParams):
        self.params = params
        periodic_hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(params.frame_samples) / params.frame_samples)
        self._window = periodic_hann
        self._mel = mel_filterbank(params)
        self._dct = dct_matrix(params.n_mels, params.n_mfcc) if params.kind == "mfcc" else None
        self._pitch = _PitchSalience(params, periodic_hann) if params.kind == "logmel_pitch" else None
        frame_starts = np.arange(INDEXED_FRAMES_MAX)[:, None] * params.hop_samples
        self._frame_index = frame_starts + np.arange(params.frame_samples)[None, :]  # sample indices of frames 0..63

    def n_frames(self, n_samples: int) -> int:
        """How many whole frames n_samples hold."""
        if n_samples < self.params.frame_samples:
            return 0
        return 1 + (n_samples - self.params.frame_samples) // self.params.hop_samples

    def compute(self, samples: np.ndarray) -> np.ndarray:
        """All whole frames of samples (int16 or float in [-1, 1]), shape (frames, n_features), float32."""
        audio = to_float(samples)
        count = self.n_frames(len(audio))
        if count == 0:
            return np.zeros((0, self.params.n_features), dtype=np.float32)
        if count <= INDEXED_FRAMES_MAX:
            frames = audio[self._frame_index[:count]]
        else:
            frames = np.lib.stride_tricks.sliding_window_view(audio, self.params.frame_samples)[:: self.params.hop_samples][:count]
        spectrum = np.fft.rfft(frames * self._window, n=self.params.n_fft)
        power = spectrum.real**2 + spectrum.imag**2
        mel_power = power @ self._mel.T
        if self._pitch is not None:
            return np.concatenate([np.log(mel_power + LOG_FLOOR), self._pitch.compute(frames)], axis=1).astype(np.float32)
        if self._dct is None:
            return np.log(mel_power + LOG_FLOOR).astype(np.float32)
        log_mel_db = 10.0 * np.log10(np.maximum(mel_power, 1e-10))
        return (log_mel_db @ self._dct.T).astype(np.float32)


class _PitchSalience:
    """Periodicity of each frame at log-spaced candidate F0s: the frame's normalised autocorrelation
    divided by its window's (Boersma 1993), read at lag sample_rate / F0 and clipped to [-1, 1].
    A voiced frame shows a ridge at its F0 (and weaker ones at its octaves) that moves with the
    intonation; the log-mel bands, about 75 Hz wide below 1 kHz, do not resolve the harmonics that
    carry it. Independent of level; 0 for a silent frame."""

    def __init__(self, params: FeatureParams, window: np.ndarray):
        self._window = window
        self._n_fft = pitch_fft_size(params)
        lags = pitch_lags(params)
        self._low = np.floor(lags).astype(np.int64)
        self._frac = lags - self._low
        window_acf = np.fft.irfft(np.abs(np.fft.rfft(window, n=self._n_fft)) ** 2, n=self._n_fft)
        self._window_acf = self._interpolate(window_acf[None, :] / window_acf[0])[0]

    def _interpolate(self, acf: np.ndarray) -> np.ndarray:
        """Rows of acf read at the bins' fractional lags."""
        return acf[:, self._low] * (1.0 - self._frac) + acf[:, self._low + 1] * self._frac

    def compute(self, frames: np.ndarray) -> np.ndarray:
        """Salience of frames (frames, frame_samples), shape (frames, pitch_bins)."""
        centred = (frames - frames.mean(axis=1, keepdims=True)) * self._window
        spectrum = np.fft.rfft(centred, n=self._n_fft)
        acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=self._n_fft)
        energy = acf[:, :1]
        normalised = self._interpolate(acf) / np.where(energy > PITCH_ENERGY_FLOOR, energy, np.inf)
        return np.clip(normalised / self._window_acf, -1.0, 1.0)


PITCH_ENERGY_FLOOR = 1e-9  # a frame below this autocorrelation energy (about -110 dBFS, under one int16 step) has no pitch


class StreamingFeatures:
    """Incremental features: feed chunks of any size, get each frame exactly once."""

    def __init__(self, extractor: FeatureExtractor):
        self.extractor = extractor
        self._pending = np.zeros(0, dtype=np.float64)

    def reset(self) -> None:
        """Forget carried samples (a new speech segment starts)."""
        self._pending = np.zeros(0, dtype=np.float64)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Frames completed by these samples, shape (frames, n_features)."""
        self._pending = np.concatenate([self._pending, to_float(samples)])
        frames = self.extractor.compute(self._pending)
        consumed = len(frames) * self.extractor.params.hop_samples
        self._pending = self._pending[consumed:]
        return frames


def normalise_window(window: np.ndarray) -> np.ndarray:
    """Per-window, per-band mean/variance normalisation (what the model was trained on)."""
    mean = window.mean(axis=0, keepdims=True)
    std = window.std(axis=0, keepdims=True)
    return ((window - mean) / (std + 1e-5)).astype(np.float32)
