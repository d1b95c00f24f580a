"""The wire encoding and the drop accounting every publisher shares."""

from __future__ import annotations

import json
import logging

import pytest

from serd.events import EmotionState, Status
from serd.publish import base


class Clock:
    """A monotonic clock the test moves by hand (the rate limit is about minutes)."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock(monkeypatch) -> Clock:
    ticking = Clock()
    monkeypatch.setattr(base.time, "monotonic", ticking)
    return ticking


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "serd.publish.base" and r.levelno == logging.WARNING]


def status(message: str = "ok") -> Status:
    return Status(device="d", stream_time_s=1.0, wall_time_s=2.0, state="running", message=message)


def test_every_drop_is_counted_and_logged_once_a_minute_per_cause_with_what_the_quiet_spell_lost(clock, caplog):
    counter = base.DropCounter("zmq")
    with caplog.at_level(logging.WARNING, logger="serd.publish.base"):
        counter.drop("queue full")
        clock.now_s += 30.0
        counter.drop("queue full", 2)
        counter.drop("socket closed")
        clock.now_s += 29.5
        counter.drop("queue full")
        assert counter.count == 5
        assert warnings(caplog) == ["zmq: dropped 1 event(s): queue full (total 1)",
                                    "zmq: dropped 1 event(s): socket closed (total 4)"]
        clock.now_s += 0.5  # a minute after the first log of "queue full" (times exact in binary)
        counter.drop("queue full")
    assert counter.count == 6
    assert warnings(caplog)[-1] == "zmq: dropped 4 event(s): queue full (total 6)", "the quiet spell's drops are told"


def test_a_drop_counter_logs_again_once_its_interval_has_passed(clock, caplog):
    counter = base.DropCounter("mqtt", log_interval_s=4.0)
    clock.now_s = 3.0  # a monotonic clock can be small (seconds since boot)
    with caplog.at_level(logging.WARNING, logger="serd.publish.base"):
        counter.drop("broker down")
        clock.now_s += 3.75
        counter.drop("broker down")
        clock.now_s += 0.25  # exactly the interval
        counter.drop("broker down")
        clock.now_s += 5.0  # more than the interval
        counter.drop("broker down")
    assert warnings(caplog) == ["mqtt: dropped 1 event(s): broker down (total 1)",
                                "mqtt: dropped 2 event(s): broker down (total 3)",
                                "mqtt: dropped 1 event(s): broker down (total 4)"]


def test_transport_trouble_that_loses_nothing_is_noted_once_a_minute_per_cause(clock, caplog):
    counter = base.DropCounter("mqtt")
    with caplog.at_level(logging.WARNING, logger="serd.publish.base"):
        counter.note("reconnecting")
        counter.note("reconnecting")
        counter.note("slow broker")
        clock.now_s += 59.0
        counter.note("reconnecting")
        clock.now_s += 1.0
        counter.note("reconnecting")
    assert warnings(caplog) == ["mqtt: reconnecting", "mqtt: slow broker", "mqtt: reconnecting"]
    assert counter.count == 0, "a note is not a drop"


def test_the_same_event_is_encoded_once_and_a_new_one_anew():
    first, second = status("first"), status("second")
    text = base.event_json(first)
    assert json.loads(text) == first.to_dict()
    assert base.event_json(first) is text, "the fan-out's second publisher reuses the text"
    assert json.loads(base.event_json(second))["message"] == "second"


def test_a_non_finite_number_is_refused_not_sent_as_invalid_json():
    bad = EmotionState(device="d", stream_time_s=1.0, wall_time_s=2.0, label="angry", confidence=float("nan"),
                       probabilities={"angry": 1.0})
    with pytest.raises(ValueError):
        base.event_json(bad)


def test_every_publisher_is_a_publisher():
    from serd.publish.stdout_pub import StdoutPublisher

    assert isinstance(StdoutPublisher(), base.Publisher)
    assert not isinstance(object(), base.Publisher)
