"""Smoother: silence first, hysteresis, dwell, periodic state, silence at the end of speech."""

import numpy as np

from serd.config import SmoothingConfig
from serd.events import SILENCE_LABEL
from serd.smoothing import Smoother

LABELS = ("neutral", "happy", "angry")


def probs(neutral, happy, angry):
    return np.array([neutral, happy, angry])


def make(**overrides):
    settings = dict(windows=1, hysteresis=0.1, min_dwell_ms=1000, min_confidence=0.0, state_interval_ms=2000)
    settings.update(overrides)
    return Smoother(LABELS, SmoothingConfig(**settings))


def test_first_window_leaves_silence_at_once():
    smoother = make()
    updates = smoother.push(probs(0.2, 0.7, 0.1), 0.5)
    assert [(u.kind, u.label, u.previous) for u in updates] == [("changed", "happy", SILENCE_LABEL)]
    assert updates[0].confidence == 0.7
    assert updates[0].probabilities == {"neutral": 0.2, "happy": 0.7, "angry": 0.1}


def test_small_margin_does_not_switch():
    smoother = make()
    smoother.push(probs(0.2, 0.5, 0.3), 0.5)
    assert smoother.push(probs(0.1, 0.42, 0.48), 2.0) == []
    assert smoother.label == "happy"


def test_clear_margin_switches_after_dwell_only():
    smoother = make()
    smoother.push(probs(0.2, 0.7, 0.1), 0.5)
    assert smoother.push(probs(0.1, 0.1, 0.8), 1.0) == []  # 0.5 s < 1 s dwell
    updates = smoother.push(probs(0.1, 0.1, 0.8), 1.6)
    assert [(u.kind, u.label, u.previous) for u in updates] == [("changed", "angry", "happy")]


def test_averaging_over_windows_damps_one_outlier():
    smoother = make(windows=3, min_dwell_ms=0)
    for t in (0.5, 1.0, 1.5):
        smoother.push(probs(0.1, 0.8, 0.1), t)
    assert smoother.push(probs(0.0, 0.1, 0.9), 2.0) == []
    assert smoother.label == "happy"


def test_state_repeats_at_interval_while_label_holds():
    smoother = make()
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    assert smoother.push(probs(0.2, 0.7, 0.1), 1.0) == []
    updates = smoother.push(probs(0.2, 0.7, 0.1), 2.0)
    assert [(u.kind, u.label) for u in updates] == [("state", "happy")]


def test_end_of_speech_reports_silence_once():
    smoother = make()
    smoother.push(probs(0.2, 0.7, 0.1), 0.5)
    updates = smoother.end_of_speech(3.0)
    assert [(u.kind, u.label, u.previous, u.probabilities) for u in updates] == [("changed", SILENCE_LABEL, "happy", {})]
    assert smoother.end_of_speech(4.0) == []


def test_min_confidence_keeps_unsure_speech_unlabelled():
    smoother = make(min_confidence=0.5)
    assert smoother.push(probs(0.3, 0.4, 0.3), 0.5) == []
    assert smoother.label == SILENCE_LABEL
    assert smoother.push(probs(0.1, 0.8, 0.1), 1.0)[0].label == "happy"
