"""Smoother: silence first, hysteresis, dwell, periodic state, uncertain below min_confidence, silence at the end of speech."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from serd.config import SmoothingConfig
from serd.events import SILENCE_LABEL, UNCERTAIN_LABEL
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


def changes(updates):
    return [(u.kind, u.label, u.previous) for u in updates]


def test_unsure_speech_is_uncertain_from_the_first_window():
    smoother = make(min_confidence=0.5)
    updates = smoother.push(probs(0.3, 0.4, 0.3), 0.5)
    assert changes(updates) == [("changed", UNCERTAIN_LABEL, SILENCE_LABEL)]
    assert updates[0].confidence == 0.4, "uncertain carries the top probability"
    assert updates[0].probabilities == {"neutral": 0.3, "happy": 0.4, "angry": 0.3}


def test_top_probability_at_min_confidence_is_not_uncertain():
    assert make(min_confidence=0.5).push(probs(0.25, 0.5, 0.25), 0.5)[0].label == "happy"
    assert make(min_confidence=0.5).push(probs(0.26, 0.49, 0.25), 0.5)[0].label == UNCERTAIN_LABEL


def test_zero_min_confidence_is_never_uncertain():
    smoother = make(min_confidence=0.0)
    assert smoother.push(probs(1 / 3, 1 / 3, 1 / 3), 0.5)[0].label == "neutral"


def test_leaving_uncertain_needs_no_dwell_or_margin():
    smoother = make(min_confidence=0.5)
    smoother.push(probs(0.3, 0.4, 0.3), 0.5)
    assert changes(smoother.push(probs(0.05, 0.5, 0.45), 0.6)) == [("changed", "happy", UNCERTAIN_LABEL)]


def test_entering_uncertain_needs_the_dwell_of_the_label_held():
    smoother = make(min_confidence=0.5)
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    assert smoother.push(probs(0.3, 0.4, 0.3), 0.9) == []
    assert smoother.label == "happy"
    assert changes(smoother.push(probs(0.3, 0.4, 0.3), 1.0)) == [("changed", UNCERTAIN_LABEL, "happy")]


def test_a_label_replaced_through_uncertain_waits_one_dwell_not_two():
    smoother = make(min_confidence=0.5)
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    smoother.push(probs(0.3, 0.4, 0.3), 1.0)
    assert changes(smoother.push(probs(0.1, 0.1, 0.8), 1.1)) == [("changed", "angry", UNCERTAIN_LABEL)]


def test_uncertain_repeats_as_state_and_ends_in_silence():
    smoother = make(min_confidence=0.5)
    smoother.push(probs(0.3, 0.4, 0.3), 0.0)
    updates = smoother.push(probs(0.4, 0.3, 0.3), 2.0)
    assert [(u.kind, u.label, u.confidence) for u in updates] == [("state", UNCERTAIN_LABEL, 0.4)]
    assert changes(smoother.end_of_speech(3.0)) == [("changed", SILENCE_LABEL, UNCERTAIN_LABEL)]


def test_silence_confidence_in_the_events_doc_is_what_serd_sends():
    smoother = make()
    smoother.push(probs(0.2, 0.7, 0.1), 0.5)
    (silence,) = smoother.end_of_speech(1.0)
    assert silence.confidence == 1.0
    doc = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text(encoding="utf-8")
    examples = [json.loads(line) for line in doc.splitlines() if line.startswith("{") and '"label": "silence"' in line]
    assert examples and all(example["confidence"] == silence.confidence for example in examples)
    monitor_lines = [line for line in doc.splitlines() if "emotion-changed silence" in line]
    assert monitor_lines and all(" %.2f " % silence.confidence in line for line in monitor_lines)


def test_an_update_cannot_be_changed_once_made():
    (update,) = make().push(probs(0.2, 0.7, 0.1), 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.label = "angry"


def test_state_is_due_every_interval_in_seconds_not_before():
    smoother = make(state_interval_ms=500)
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    kinds = [[u.kind for u in smoother.push(probs(0.2, 0.7, 0.1), t)] for t in (0.25, 0.4997, 0.5, 0.8, 1.05, 1.3)]
    assert kinds == [[], [], ["state"], [], ["state"], []], "500 ms is half a second, counted from the last update"


def test_dwell_is_counted_in_seconds_with_its_fraction():
    smoother = make(min_dwell_ms=1500, hysteresis=0.0)
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    assert smoother.push(probs(0.1, 0.1, 0.8), 1.2) == [], "1.2 s is short of a 1.5 s dwell"
    assert smoother.push(probs(0.1, 0.1, 0.8), 1.4997) == [], "a hair short of the dwell is short"
    assert changes(smoother.push(probs(0.1, 0.1, 0.8), 1.5)) == [("changed", "angry", "happy")]


def test_a_margin_of_exactly_the_hysteresis_switches():
    smoother = make(hysteresis=0.25, min_dwell_ms=0)
    smoother.push(probs(0.0, 1.0, 0.0), 0.0)
    assert smoother.push(probs(0.3, 0.25, 0.45), 0.5) == [], "0.45 is short of 0.25 + 0.25"
    assert changes(smoother.push(probs(0.0, 0.25, 0.5), 1.0)) == [("changed", "angry", "happy")]


def test_a_label_held_by_the_hysteresis_reports_its_own_probability():
    smoother = Smoother(("calm", "zealous"), SmoothingConfig(windows=1, hysteresis=0.3, min_dwell_ms=0, min_confidence=0.0,
                                                            state_interval_ms=500))
    smoother.push(np.array([0.1, 0.9]), 0.0)  # "zealous" sorts after "uncertain": its name must not make it uncertain
    (state,) = smoother.push(np.array([0.55, 0.45]), 0.5)
    assert (state.kind, state.label, state.confidence) == ("state", "zealous", 0.45), "the held label's, not the top one's"
    smoother = make(state_interval_ms=500, min_dwell_ms=0)
    smoother.push(probs(0.2, 0.7, 0.1), 0.0)
    (state,) = smoother.push(probs(0.1, 0.42, 0.48), 0.5)
    assert (state.kind, state.label, state.confidence) == ("state", "happy", 0.42)


def test_a_label_named_after_uncertain_still_needs_the_margin():
    smoother = Smoother(("calm", "zealous"), SmoothingConfig(windows=1, hysteresis=0.3, min_dwell_ms=0, min_confidence=0.0,
                                                            state_interval_ms=2000))
    smoother.push(np.array([0.9, 0.1]), 0.0)
    assert smoother.push(np.array([0.45, 0.55]), 0.5) == [] and smoother.label == "calm"


def test_probabilities_and_confidence_are_rounded_to_four_decimals():
    (update,) = make().push(probs(0.123456, 0.765432, 0.111112), 0.5)
    assert update.probabilities == {"neutral": 0.1235, "happy": 0.7654, "angry": 0.1111}
    assert update.confidence == 0.7654
