"""Log-mel and MFCC features against librosa on real speech; streaming equals offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from serd.audio import chunks, load_audio
from serd.features import FeatureExtractor, FeatureParams, StreamingFeatures, normalise_window, pitch_lags

MAX_DIFFERENCE = 1e-3
LOGMEL = FeatureParams()
MFCC = FeatureParams(kind="mfcc")
PITCH = FeatureParams(kind="logmel_pitch")


@pytest.fixture(scope="module")
def librosa():
    """librosa with a writable numba cache (kept between runs: the first compile takes ~30 s)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "serd-numba-cache"))
    import librosa

    return librosa


@pytest.fixture(scope="module")
def clip(ravdess_clip) -> np.ndarray:
    """Real speech, int16 at 16 kHz."""
    return load_audio(ravdess_clip)


def librosa_power_mel(librosa, samples: np.ndarray, params: FeatureParams) -> np.ndarray:
    """librosa's mel power spectrogram, frames aligned with ours; shape (n_mels, frames).

    serd frames are frame_samples long, zero-padded at the end to n_fft; librosa centres a
    win_length window in an n_fft frame. Padding the signal by the difference on both sides
    makes frame k of both cover the same samples (a circular shift leaves the power unchanged).
    """
    pad = (params.n_fft - params.frame_samples) // 2
    audio = np.pad(samples.astype(np.float64) / 32768.0, pad)
    return librosa.feature.melspectrogram(
        y=audio,
        sr=params.sample_rate_hz,
        n_fft=params.n_fft,
        hop_length=params.hop_samples,
        win_length=params.frame_samples,
        center=False,
        htk=False,
        norm="slaney",
        fmin=params.fmin_hz,
        fmax=params.fmax_hz,
        power=2.0,
        n_mels=params.n_mels,
    )


def test_logmel_matches_librosa(librosa, clip):
    ours = FeatureExtractor(LOGMEL).compute(clip)
    theirs = np.log(librosa_power_mel(librosa, clip, LOGMEL) + 1e-6).T
    assert ours.shape == theirs.shape == (FeatureExtractor(LOGMEL).n_frames(len(clip)), LOGMEL.n_mels)
    assert ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= MAX_DIFFERENCE
    assert np.ptp(theirs) > 10  # real speech spans a wide range: the comparison means something


def test_mfcc_matches_librosa(librosa, clip):
    ours = FeatureExtractor(MFCC).compute(clip)
    mel_db = librosa.power_to_db(librosa_power_mel(librosa, clip, MFCC), top_db=None)
    theirs = librosa.feature.mfcc(S=mel_db, n_mfcc=MFCC.n_mfcc).T
    assert ours.shape == theirs.shape == (FeatureExtractor(MFCC).n_frames(len(clip)), MFCC.n_mfcc)
    assert np.abs(ours - theirs).max() <= MAX_DIFFERENCE
    assert np.abs(theirs).max() > 100


def test_other_mel_settings_match_librosa(librosa, clip):
    params = FeatureParams(n_mels=64, fmin_hz=60.0, fmax_hz=7600.0)
    ours = FeatureExtractor(params).compute(clip)
    theirs = np.log(librosa_power_mel(librosa, clip, params) + 1e-6).T
    assert np.abs(ours - theirs).max() <= MAX_DIFFERENCE


@pytest.mark.parametrize("params", [LOGMEL, MFCC, PITCH], ids=["logmel", "mfcc", "logmel_pitch"])
@pytest.mark.parametrize("chunk_samples", [160, 480, 1024, 16000, 333])
def test_streaming_equals_offline(clip, params, chunk_samples):
    extractor = FeatureExtractor(params)
    offline = extractor.compute(clip)
    stream = StreamingFeatures(extractor)
    streamed = np.concatenate([stream.push(chunk) for chunk in chunks(clip, chunk_samples)])
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5)


def test_streaming_reset_starts_a_new_frame_grid(clip):
    extractor = FeatureExtractor(LOGMEL)
    stream = StreamingFeatures(extractor)
    stream.push(clip[:1234])
    stream.reset()
    np.testing.assert_allclose(stream.push(clip[5000:9000]), extractor.compute(clip[5000:9000]), atol=1e-5)


def test_frame_count_and_short_input():
    extractor = FeatureExtractor(LOGMEL)
    assert [extractor.n_frames(n) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]
    assert extractor.compute(np.zeros(399, dtype=np.int16)).shape == (0, LOGMEL.n_mels)


def test_int16_and_float_input_agree(clip):
    extractor = FeatureExtractor(LOGMEL)
    np.testing.assert_allclose(extractor.compute(clip), extractor.compute(clip / 32768.0), atol=1e-6)


def test_silence_sits_at_the_log_floor():
    frames = FeatureExtractor(LOGMEL).compute(np.zeros(1600, dtype=np.int16))
    np.testing.assert_allclose(frames, np.log(1e-6), rtol=1e-6)


def test_normalise_window_gives_zero_mean_unit_variance_per_band(clip):
    window = normalise_window(FeatureExtractor(LOGMEL).compute(clip)[:200])
    np.testing.assert_allclose(window.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(window.std(axis=0), 1.0, atol=1e-3)


def test_params_round_trip():
    assert FeatureParams.from_dict(MFCC.to_dict()) == MFCC
    assert (LOGMEL.n_features, MFCC.n_features) == (LOGMEL.n_mels, MFCC.n_mfcc)


def harmonic_tone(f0_hz: float, seconds: float = 0.5, harmonics: int = 6) -> np.ndarray:
    """A voiced-like tone: f0 and its harmonics falling 6 dB an octave, float in [-1, 1]."""
    t = np.arange(int(seconds * 16000)) / 16000.0
    tone = sum(np.sin(2 * np.pi * f0_hz * k * t + k) / k for k in range(1, harmonics + 1))
    return 0.3 * tone / np.abs(tone).max()


def salience(samples: np.ndarray) -> np.ndarray:
    """The pitch columns of logmel_pitch frames."""
    return FeatureExtractor(PITCH).compute(samples)[:, PITCH.n_mels:]


@pytest.mark.parametrize("f0_hz", [85.0, 150.0, 240.0, 420.0])
def test_pitch_salience_has_a_ridge_at_a_tone_s_f0_and_none_above_it(f0_hz):
    """The ridge sits in the bin nearest F0 (its subharmonics, at whole multiples of the period, may equal it)."""
    frames = salience(harmonic_tone(f0_hz))
    bin_f0_hz = 16000.0 / pitch_lags(PITCH)
    nearest = int(np.argmin(np.abs(np.log(bin_f0_hz / f0_hz))))
    assert np.median(frames[:, nearest]) > 0.85
    assert np.median(frames[:, bin_f0_hz > 1.2 * f0_hz].max(axis=1, initial=-1.0)) < 0.5


def test_noise_has_no_pitch_ridge():
    noise = np.random.default_rng(3).normal(0.0, 0.1, 16000)
    assert np.median(salience(noise).max(axis=1)) < 0.4


def test_a_rising_pitch_moves_its_ridge_with_the_instantaneous_f0():
    t = np.arange(16000) / 16000.0
    glide = 0.3 * np.sin(2 * np.pi * (100.0 * t + 100.0 * t**2))  # F0 = 100 + 200 t Hz: 100 rising to 300 Hz
    frames = salience(glide)
    centre_s = (np.arange(len(frames)) * PITCH.hop_samples + PITCH.frame_samples / 2) / 16000.0
    expected = np.argmin(np.abs(np.log(16000.0 / pitch_lags(PITCH))[None, :] - np.log(100.0 + 200.0 * centre_s)[:, None]), axis=1)
    highest_ridge = (frames > 0.8).argmax(axis=1)  # bins run from the highest F0 to the lowest
    assert np.abs(highest_ridge - expected).max() <= 1 and expected[0] - expected[-1] >= 10


def test_pitch_salience_ignores_level_and_is_zero_in_digital_silence():
    tone = harmonic_tone(180.0)
    np.testing.assert_allclose(salience(tone * 0.01), salience(tone), atol=1e-4)
    np.testing.assert_array_equal(salience(np.zeros(1600)), 0.0)


def test_pitch_salience_is_the_window_corrected_autocorrelation_of_each_frame(clip):
    """Against a direct, non-circular autocorrelation: the FFT is long enough for the longest lag."""
    frame = clip[8000:8000 + PITCH.frame_samples] / 32768.0
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(PITCH.frame_samples) / PITCH.frame_samples)
    def acf(x):
        full = np.correlate(x, x, mode="full")[len(x) - 1:]
        return np.interp(pitch_lags(PITCH), np.arange(len(x)), full) / full[0]
    expected = np.clip(acf((frame - frame.mean()) * window) / acf(window), -1, 1)
    np.testing.assert_allclose(salience(clip[8000:8000 + PITCH.frame_samples])[0], expected, atol=1e-5)


def test_logmel_pitch_starts_with_the_plain_log_mel_bands(clip):
    both = FeatureExtractor(PITCH).compute(clip)
    assert both.shape[1] == PITCH.n_features == PITCH.n_mels + PITCH.pitch_bins == 64
    np.testing.assert_array_equal(both[:, :PITCH.n_mels], FeatureExtractor(LOGMEL).compute(clip))


def test_pitch_fields_are_in_the_dict_only_for_the_kind_that_uses_them():
    assert FeatureParams.from_dict(PITCH.to_dict()) == PITCH
    assert "pitch_bins" in PITCH.to_dict() and not {"pitch_bins", "pitch_fmin_hz", "pitch_fmax_hz"} & set(LOGMEL.to_dict())
