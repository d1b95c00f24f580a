"""Log-mel and MFCC features against librosa on real speech; streaming equals offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from serd.audio import chunks, load_audio
from serd.features import FeatureExtractor, FeatureParams, StreamingFeatures, normalise_window

MAX_DIFFERENCE = 1e-3
LOGMEL = FeatureParams()
MFCC = FeatureParams(kind="mfcc")


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


@pytest.mark.parametrize("params", [LOGMEL, MFCC], ids=["logmel", "mfcc"])
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
