"""Arousal and valence from label probabilities: the cited coordinates, the weighted mean, and the events that carry them."""

import json

import pytest

from serd import affect
from serd.events import SILENCE_LABEL, from_dict
from tests.support_cli import serd

HIGH_AROUSAL = ("happy", "angry", "fearful", "surprised")  # Schuller et al. 2010's binary mapping, as tools/model/corpora.py
LOW_AROUSAL = ("neutral", "calm", "sad")
POSITIVE = ("happy", "surprised", "calm")
NEGATIVE = ("sad", "angry", "fearful", "disgust")


def test_the_lexicon_places_excited_labels_above_quiet_ones_and_pleasant_right_of_unpleasant():
    for high in HIGH_AROUSAL:
        for low in LOW_AROUSAL:
            assert affect.CIRCUMPLEX[high][1] > affect.CIRCUMPLEX[low][1], (high, low)
    for good in POSITIVE:
        assert affect.CIRCUMPLEX[good][0] > affect.CIRCUMPLEX["neutral"][0] > max(affect.CIRCUMPLEX[bad][0] for bad in NEGATIVE)


def test_every_coordinate_is_the_lexicon_rating_rescaled_to_minus_one_one():
    assert affect.CIRCUMPLEX["angry"] == (round(2 * 0.167 - 1, 3), round(2 * 0.865 - 1, 3))  # "anger" 0.167 / 0.865
    assert affect.lexicon_word("fearful") == "fear" and affect.lexicon_word("uncertain") is None
    assert all(-1.0 <= v <= 1.0 and -1.0 <= a <= 1.0 for v, a in affect.CIRCUMPLEX.values())


def test_one_sure_label_gives_its_own_point():
    assert affect.coordinates({"sad": 1.0, "happy": 0.0}) == affect.CIRCUMPLEX["sad"]


def test_a_mixture_gives_the_probability_weighted_mean():
    valence, arousal = affect.coordinates({"angry": 0.75, "sad": 0.25})
    assert valence == pytest.approx(0.75 * -0.666 + 0.25 * -0.896, abs=1e-4)
    assert arousal == pytest.approx(0.75 * 0.730 + 0.25 * -0.424, abs=1e-4)


def test_labels_without_a_point_are_left_out_and_the_rest_renormalised():
    assert affect.coordinates({"angry": 0.3, "whistling": 0.7}) == affect.CIRCUMPLEX["angry"]
    assert affect.coordinates({"whistling": 0.7, "angry": 0.3}) == affect.CIRCUMPLEX["angry"], "whatever the order"


def test_coordinates_are_rounded_to_four_digits():
    valence, arousal = affect.coordinates({"angry": 1 / 3, "sad": 2 / 3})
    assert valence == round((-0.666 - 2 * 0.896) / 3, 4) and arousal == round((0.730 - 2 * 0.424) / 3, 4)


def test_silence_and_labels_without_points_give_none():
    assert affect.coordinates({}) is None
    assert affect.coordinates({"whistling": 1.0}) is None
    assert affect.coordinates({"angry": 0.0}) is None


def test_every_emotion_event_of_a_real_run_carries_its_probabilities_point(tmp_path, ravdess_clip):
    run = serd("run", "--source", "file:%s" % ravdess_clip, "--stdout", "--zmq", "ipc://%s/events" % tmp_path,
               "--device-id", "affect")
    assert run.returncode == 0, run.stderr.decode()
    emotions = [e for e in map(from_dict, map(json.loads, run.stdout.splitlines())) if e.type.startswith("emotion-")]
    assert emotions, "the clip yields emotion events"
    for event in emotions:
        if event.label == SILENCE_LABEL:
            assert (event.arousal, event.valence) == (None, None)
            continue
        assert -1.0 <= event.arousal <= 1.0 and -1.0 <= event.valence <= 1.0
        assert (event.valence, event.arousal) == pytest.approx(affect.coordinates(event.probabilities), abs=2e-4)
