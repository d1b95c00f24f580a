"""Speaker statistics in training: the teacher's centred features and the student's speaker-normalised windows."""

import numpy as np

from serd.manifest import Clip
from tools.model import data
from tools.study import teacher


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


def test_cross_fitted_soft_labels_come_from_heads_that_never_saw_the_clips_group():
    """Groups 0, 1 and 3 show label k in feature k; group 2 shows it in feature 8 + k, features nobody else uses.
    A head fitted on group 2 reads its clips perfectly; the cross-fitted soft labels of group 2, from a head
    fitted on groups 0 and 1 only, cannot (in the clean and the augmented version alike); fold 3 (the test
    fold) gets no rows."""
    n_labels, per_group = len(data.LABELS), 3
    labels = np.tile(np.arange(n_labels), 4 * per_group)
    group = np.repeat(np.arange(4), n_labels * per_group)
    rng = np.random.default_rng(0)
    features = np.eye(2 * n_labels)[np.where(group == 2, n_labels + labels, labels)] + 0.05 * rng.normal(size=(len(labels), 2 * n_labels))
    versions = [data.WindowSet(np.zeros((len(labels), 1, 1), np.float32), np.arange(len(labels))) for _ in range(2)]
    train_mask = group != 3
    logits = teacher.crossfit_logits(versions, [features, features + 0.01], labels, train_mask, group)
    assert [len(version) for version in logits] == [int(train_mask.sum())] * 2
    kept_labels, kept_group = labels[train_mask], group[train_mask]
    for version in logits:
        right = version.argmax(axis=1) == kept_labels
        assert right[kept_group != 2].mean() == 1.0 and right[kept_group == 2].mean() < 0.5
    in_sample = teacher.fold_head(versions, [features, features], labels, train_mask).logits(features[group == 2])
    assert np.all(in_sample.argmax(axis=1) == labels[group == 2])
