"""Speaker-centred teacher features: each speaker's clean-window mean is what gets subtracted."""

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
