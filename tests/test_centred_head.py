"""The speaker-centred head of the student (tools.study.centred_head): fitting, the running estimate, the shipped file."""

import numpy as np

from serd.head import CENTRE_PRIOR_WINDOWS, LinearHead
from serd.manifest import Clip
from tools.study import centred_head
from tools.model import data

N_SPEAKERS, WIDTH, WINDOWS_PER_CLIP, CLIPS_PER_LABEL = 10, 12, 3, 4
N_LABELS = len(data.LABELS)


def voices(seed: int = 0) -> tuple:
    """Ten speakers, four clips per label each: an embedding = label direction + an offset of the speaker's own voice,
    larger than the label's signal."""
    rng = np.random.default_rng(seed)
    clips = [Clip("/c/%d_%d_%d.wav" % (s, k, r), "c:%02d" % s, data.LABELS[k], 3.0)
             for s in range(N_SPEAKERS) for k in range(N_LABELS) for r in range(CLIPS_PER_LABEL)]
    labels = data.clip_labels(clips)
    offsets = 1.5 * rng.normal(size=(N_SPEAKERS, WIDTH))
    clip_index = np.repeat(np.arange(len(clips)), WINDOWS_PER_CLIP)
    speaker = np.array([int(clip.speaker[2:]) for clip in clips])
    features = np.eye(WIDTH)[labels[clip_index]] + offsets[speaker[clip_index]] + 0.2 * rng.normal(size=(len(clip_index), WIDTH))
    clean = data.WindowSet(np.zeros((len(clip_index), 1, 1), np.float32), clip_index)
    fold_of_clip = speaker % 5
    return clips, clean, features, fold_of_clip, labels


def test_centring_on_the_voice_recovers_what_a_speakers_offset_hides():
    clips, clean, features, fold_of_clip, labels = voices()
    test = fold_of_clip == 0
    head = centred_head.fit_centred_head(clips, [clean], [features], ~test, c=1.0)
    found = centred_head.mode_logits(head, clips, clean, features, test, fold=0)
    index = clean.clip_index[test[clean.clip_index]]
    from tools.study import scoring, teacher

    plain = teacher.fold_head([clean], [features], labels, ~test, 1.0).logits(features[test[clean.clip_index]])
    uar = {mode: scoring.clip_uar(found[mode], index, labels) for mode in ("cv", "session", "clip")}
    plain_uar = scoring.clip_uar(plain, index, labels)
    assert uar["cv"] > 0.95
    assert uar["session"] > plain_uar + 0.2  # the estimate learns the voice as the session goes on
    assert plain_uar < 0.7  # the same head without centring: the voices' offsets get in the way
    speakers = np.unique([int(clip.speaker[2:]) for clip, held in zip(clips, test) if not held])
    np.testing.assert_allclose(head.centre_prior, np.mean([features[np.isin(clean.clip_index, np.flatnonzero(
        [int(c.speaker[2:]) == s for c in clips]))].mean(axis=0) for s in speakers], axis=0), rtol=1e-5, atol=1e-5)


def test_the_running_estimate_is_serds_own_and_a_fresh_clip_starts_from_the_prior():
    clips, clean, features, fold_of_clip, _ = voices(1)
    test = fold_of_clip == 1
    head = centred_head.logit_head(clips, clean, features, ~test)
    np.testing.assert_allclose(head.weights, np.eye(WIDTH))
    rng = np.random.default_rng(5)
    fresh = centred_head.running_logits(head, clips, clean, features, test, session=False, rng=rng)
    first = np.flatnonzero(test[clean.clip_index])[:WINDOWS_PER_CLIP]  # the windows of one clip, in order
    voice = head.new_voice()
    expected = [head.logits(features[row], voice) for row in first]
    np.testing.assert_allclose(fresh[:WINDOWS_PER_CLIP], expected, atol=1e-9)
    mean_after_one = (head.centre_prior * CENTRE_PRIOR_WINDOWS + features[first[0]]) / (CENTRE_PRIOR_WINDOWS + 1)
    np.testing.assert_allclose(expected[0], features[first[0]] - mean_after_one + head.bias, atol=1e-9)


def test_the_inner_choice_of_c_comes_from_the_grid_and_the_head_file_round_trips(tmp_path):
    clips, clean, features, fold_of_clip, _ = voices(2)
    train = fold_of_clip != 2
    c = centred_head.choose_c(clips, [clean], [features], train, fold_of_clip, [0.001, 1.0])
    assert c in (0.001, 1.0)
    head = centred_head.fit_centred_head(clips, [clean], [features], train, c)
    centred_head.write_head(head, tmp_path / "h.npz")
    loaded = LinearHead.load(tmp_path / "h.npz", WIDTH, N_LABELS)
    np.testing.assert_allclose(loaded.logits(features[0]), head.logits(features[0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loaded.centre_prior, head.centre_prior, rtol=1e-5)
