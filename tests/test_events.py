"""Events: wire form, round trip, schema checks; the documented shape matches the code."""

import dataclasses
import json
from pathlib import Path

import pytest

from serd import events
from serd.events import EVENT_TYPES, EmotionChanged, EventFormatError, SpeechEnded, Status, from_dict

DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def test_emotion_changed_wire_form():
    event = EmotionChanged(device="robot", stream_time_s=2.5, wall_time_s=1.7e9, segment=3, label="angry",
                           previous="silence", confidence=0.8, probabilities={"angry": 0.8, "sad": 0.2},
                           arousal=0.499, valence=-0.712)
    data = json.loads(json.dumps(event.to_dict()))
    assert data == {"schema": 1, "type": "emotion-changed", "device": "robot", "stream_time_s": 2.5,
                    "wall_time_s": 1.7e9, "segment": 3, "label": "angry", "previous": "silence",
                    "confidence": 0.8, "probabilities": {"angry": 0.8, "sad": 0.2}, "arousal": 0.499, "valence": -0.712}
    assert from_dict(data) == event


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()))
def test_every_type_round_trips(cls):
    event = cls(device="d", stream_time_s=1.0, wall_time_s=2.0)
    assert from_dict(event.to_dict()) == event
    assert event.to_dict()["type"] == cls.TYPE


def test_status_carries_counters():
    status = Status(device="d", stream_time_s=0.0, wall_time_s=0.0, overruns=2, dropped={"zmq": 5})
    assert status.to_dict()["dropped"] == {"zmq": 5}


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"schema": 2, "type": "speech-ended"}, "unsupported schema"),
        ({"schema": 1, "type": "weather"}, "unknown event type"),
        ({"schema": 1, "type": "speech-ended"}, "bad speech-ended"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_wire_dicts_are_rejected(data, reason):
    with pytest.raises(EventFormatError, match=reason):
        from_dict(data)


def test_events_of_the_schema_before_arousal_and_valence_still_read():
    data = EmotionChanged(device="d", stream_time_s=1.0, wall_time_s=2.0, label="sad", confidence=0.6,
                          probabilities={"sad": 0.6, "angry": 0.4}).to_dict()
    del data["arousal"], data["valence"]
    event = from_dict(data)
    assert (event.label, event.arousal, event.valence) == ("sad", None, None)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    data = SpeechEnded(device="d", stream_time_s=1.0, wall_time_s=2.0, duration_s=0.5).to_dict()
    data["future_field"] = 1
    assert from_dict(data).duration_s == 0.5


def test_docs_name_every_event_type_and_field():
    text = DOCS.read_text(encoding="utf-8")
    for cls in EVENT_TYPES.values():
        assert "`%s`" % cls.TYPE in text
        for name in cls(device="d", stream_time_s=0.0, wall_time_s=0.0).to_dict():
            assert "`%s`" % name in text, "%s: field %s undocumented" % (cls.TYPE, name)
    assert "schema" in text and str(events.SCHEMA_VERSION) in text


def test_the_type_is_a_string_attribute_of_every_event():
    for name, cls in EVENT_TYPES.items():
        assert cls(device="d", stream_time_s=0.0, wall_time_s=0.0).type == name


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()))
def test_events_are_immutable_even_to_new_attributes(cls):
    event = cls(device="d", stream_time_s=0.0, wall_time_s=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.device = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.note = "added"


@pytest.mark.parametrize("schema", [0, -1, None, "1"])
def test_schemas_other_than_1_are_rejected_below_as_well_as_above(schema):
    data = SpeechEnded(device="d", stream_time_s=1.0, wall_time_s=2.0).to_dict()
    data["schema"] = schema
    if schema is None:
        del data["schema"]
    with pytest.raises(EventFormatError, match="unsupported schema"):
        from_dict(data)


def test_schema_1_written_as_1_0_is_schema_1_since_json_has_one_number_type():
    data = json.loads(json.dumps(SpeechEnded(device="d", stream_time_s=1.0, wall_time_s=2.0).to_dict())
                      .replace('"schema": 1,', '"schema": 1.0,'))
    assert isinstance(data["schema"], float)
    assert from_dict(data) == SpeechEnded(device="d", stream_time_s=1.0, wall_time_s=2.0)


COMMON = {"schema": 1, "device": "d", "stream_time_s": 1.0, "wall_time_s": 2.0}


@pytest.mark.parametrize(
    "type_, rest",
    [
        ("speech-started", {}),
        ("speech-ended", {"duration_s": 0.0}),
        ("emotion-changed", {"label": "silence", "previous": "silence", "confidence": 0.0, "probabilities": {},
                             "arousal": None, "valence": None}),
        ("emotion-state", {"label": "silence", "confidence": 0.0, "probabilities": {}, "arousal": None, "valence": None}),
        ("status", {"state": "running", "message": "", "audio_s": 0.0, "overruns": 0, "lost_samples": 0, "dropped": {},
                    "speaker_speech_s": 0.0}),
    ],
)
def test_fields_a_sender_left_out_read_as_zero_empty_or_silence(type_, rest):
    event = from_dict({**COMMON, "type": type_})
    assert event.to_dict() == {**COMMON, "type": type_, "segment": None, **rest}


def test_silence_is_certain_as_the_documented_example_says():
    text = DOCS.read_text(encoding="utf-8")
    examples = [from_dict(json.loads(line)) for line in text.splitlines() if line.startswith('{"schema"')]
    silences = [event for event in examples if getattr(event, "label", None) == events.SILENCE_LABEL]
    assert silences and all(event.confidence == events.SILENCE_CONFIDENCE == 1.0 for event in silences)
