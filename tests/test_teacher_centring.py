"""Speaker statistics in training: the teacher's centred features and the student's speaker-normalised windows."""

import numpy as np

from serd.manifest import Clip
from tools import data, teacher


def test_each_version_loses_its_speakers_clean_mean_and_nothing_else():
    clips = [Clip("/a/%d.wav" % i, speaker, "happy", 3.0) for i, speaker in enumerate(["c:01", "c:01", "c:02"])]
    clean = data.WindowSet(np.zeros((4, 2, 2), np.float32), np.array([0, 0, 1, 2]))
    noisy = data.WindowSet(np.zeros((2, 2, 2), np.float32), np.array([1, 2]))
    clean_features = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 40.0], [7.0, -2.0]], np.float32)
    noisy_features = np.array([[100.0, 0.0], [0.0, 100.0]], np.float32)
    centred = teacher.speaker_centred(clips, [clean, noisy], [clean_features, noisy_features])
    speaker_01, speaker_02 = np.array([3.0, 20.0]), np.array([7.0, -2.0])  # means over the clean windows only
    np.testing.assert_allclose(centred[0], clean_features - np.stack([speaker_01, speaker_01, speaker_01, speaker_02]))
    np.testing.assert_allclose(centred[1], noisy_features - np.stack([speaker_01, speaker_02]))
    np.testing.assert_allclose(centred[0][:3].mean(axis=0), 0.0, atol=1e-6)


def test_student_windows_are_normalised_by_their_own_speakers_frames():
    clips = [Clip("/a/%d.wav" % i, speaker, "sad", 3.0) for i, speaker in enumerate(["c:01", "c:02", "c:01"])]
    rng = np.random.default_rng(3)
    loud, quiet = rng.normal(4.0, 2.0, size=(2, 50, 3)), rng.normal(-6.0, 0.5, size=(3, 50, 3))
    raw = data.WindowSet(np.concatenate([loud[:1], quiet, loud[1:]]).astype(np.float32), np.array([0, 1, 1, 1, 2]))
    normalised = data.speaker_normalised(clips, raw)
    for rows in (normalised.windows[[0, 4]], normalised.windows[1:4]):  # speaker 01, speaker 02
        frames = rows.reshape(-1, 3)
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-4)
    # a window keeps where it sits within its voice: not re-centred on its own mean
    assert abs(normalised.windows[0].mean() - normalised.windows[4].mean()) > 1e-3
    prior = data.speaker_prior(clips, raw, weight_frames=7)
    np.testing.assert_allclose(prior.mean, (loud.reshape(-1, 3).mean(0) + quiet.reshape(-1, 3).mean(0)) / 2, atol=1e-5)
    np.testing.assert_allclose(prior.std, (loud.reshape(-1, 3).std(0) + quiet.reshape(-1, 3).std(0)) / 2, atol=1e-5)
    assert prior.weight_frames == 7
