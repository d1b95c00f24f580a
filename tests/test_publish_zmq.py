"""ZeroMQ publisher with real sockets over ipc:// in tmp_path."""

import dataclasses
import json
import os
import socket
import time

import pytest
import zmq

from serd.config import load_config
from serd.errors import ConfigError
from serd.events import EmotionChanged, SpeechEnded, Status, from_dict
from serd.publish import Fanout, StdoutPublisher, ZmqPublisher, make_publishers
from serd.publish.zmq_pub import zmq_topic

DEVICE = "desk"
HANDSHAKE_TIMEOUT_S = 5.0


def speech_ended(t=1.0):
    return SpeechEnded(device=DEVICE, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=2, duration_s=1.5)


def emotion(t=2.0):
    return EmotionChanged(device=DEVICE, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=2, label="happy",
                          previous="neutral", confidence=0.7, probabilities={"happy": 0.7, "neutral": 0.3})


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def publisher(tmp_path):
    """Makes ZmqPublishers on tmp_path/events and closes them after the test, failed or not."""
    made = []

    def make(**kwargs):
        made.append(ZmqPublisher("ipc://%s/events" % tmp_path, DEVICE, **kwargs))
        return made[-1]

    yield make
    for pub in made:
        pub.close(timeout_s=0.1)


def subscriber(context, endpoint, rcvhwm=1000):
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, rcvhwm)
    sub.setsockopt(zmq.SUBSCRIBE, b"serd/")
    sub.connect(endpoint)
    return sub


def publish_until_heard(pub, sub, event):
    """Slow joiner: publish until the subscriber receives one; returns that message."""
    deadline_s = time.monotonic() + HANDSHAKE_TIMEOUT_S
    while time.monotonic() < deadline_s:
        pub.publish(event)
        if sub.poll(10):
            return sub.recv_multipart()
    raise AssertionError("subscriber heard nothing")


def drain(sub, quiet_ms=200):
    messages = []
    while sub.poll(quiet_ms):
        messages.append(sub.recv_multipart())
    return messages


def test_typed_events_round_trip_with_topics(tmp_path, context):
    endpoint = "ipc://%s/run/events" % tmp_path
    pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    sub = subscriber(context, endpoint)
    publish_until_heard(pub, sub, speech_ended())
    drain(sub, quiet_ms=50)
    pub.publish(emotion())
    pub.publish(speech_ended())
    (topic1, body1), (topic2, body2) = drain(sub)
    pub.close()
    assert topic1 == b"serd/desk/emotion-changed" and topic2 == b"serd/desk/speech-ended"
    assert from_dict(json.loads(body1)) == emotion()
    assert from_dict(json.loads(body2)) == speech_ended()
    assert pub.dropped == 0


def test_a_full_queue_is_counted_and_sending_never_blocks(tmp_path, context):
    endpoint = "ipc://%s/events" % tmp_path
    pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=5)
    sub = subscriber(context, endpoint, rcvhwm=5)
    publish_until_heard(pub, sub, speech_ended())
    drain(sub, quiet_ms=50)
    total = 5000
    began_s = time.monotonic()
    for index in range(total):
        pub.publish(emotion(t=float(index)))
    publish_s = time.monotonic() - began_s
    received = drain(sub)
    pub.close()
    assert 1 <= pub.dropped <= total - len(received), "a queue found full is counted; later losses may not be"
    assert len(received) < total
    assert publish_s < 5.0


BATCH_EVENTS = 10  # well below the high-water mark, so the healthy subscriber's queue never fills
MAX_EVENTS = 20000  # far more than the kernel buffers and queues of a subscriber that never reads hold
EVENTS_AFTER_STALL = 1000


def test_a_subscriber_that_never_reads_costs_only_itself(tmp_path, context, publisher):
    endpoint = "ipc://%s/events" % tmp_path
    pub = publisher(high_water_mark=100)
    dead = subscriber(context, endpoint, rcvhwm=1)
    healthy = subscriber(context, endpoint)
    publish_until_heard(pub, dead, speech_ended())
    publish_until_heard(pub, healthy, speech_ended())
    drain(healthy, quiet_ms=50)
    heard, stalled_at = 0, None
    while heard < MAX_EVENTS and (stalled_at is None or heard < stalled_at + EVENTS_AFTER_STALL):
        for index in range(heard, heard + BATCH_EVENTS):
            pub.publish(emotion(t=float(index)))
        for index in range(heard, heard + BATCH_EVENTS):
            assert healthy.poll(2000), "the healthy subscriber heard nothing after event %d" % index
            assert from_dict(json.loads(healthy.recv_multipart()[1])).stream_time_s == float(index)
        heard += BATCH_EVENTS
        if stalled_at is None and pub.dropped:
            stalled_at = heard
    assert stalled_at is not None, "the subscriber that never reads filled its queue and that was counted"


def test_waiting_subscriber_joins_before_the_first_event(tmp_path, context, publisher):
    sub = subscriber(context, "ipc://%s/events" % tmp_path)
    pub = publisher(high_water_mark=100, connect_wait_ms=5000)
    began_s = time.monotonic()
    assert pub.wait_for_subscribers() >= 1
    assert time.monotonic() - began_s < 2.0, "the wait ends once the waiting subscriber has joined"
    pub.publish(emotion())
    assert sub.poll(1000)
    assert from_dict(json.loads(sub.recv_multipart()[1])) == emotion()


def test_wait_for_subscribers_is_bounded(publisher):
    pub = publisher(high_water_mark=100, connect_wait_ms=300)
    began_s = time.monotonic()
    assert pub.wait_for_subscribers() == 0
    assert 0.25 <= time.monotonic() - began_s < 1.0
    began_s = time.monotonic()
    assert pub.wait_for_subscribers() == 0
    assert time.monotonic() - began_s < 0.05, "the wait counts from the bind, so a second one returns at once"


def test_close_is_bounded_with_a_stalled_subscriber_and_removes_the_socket(tmp_path, context):
    path = tmp_path / "events"
    pub = ZmqPublisher("ipc://%s" % path, DEVICE, high_water_mark=1000)
    sub = subscriber(context, "ipc://%s" % path, rcvhwm=1)
    publish_until_heard(pub, sub, speech_ended())
    for index in range(2000):
        pub.publish(emotion(t=float(index)))
    began_s = time.monotonic()
    pub.close(timeout_s=0.3)
    assert time.monotonic() - began_s < 1.0
    assert not path.exists()
    pub.publish(emotion())
    assert pub.dropped >= 1


def test_rebind_after_close_reaches_the_same_subscriber(tmp_path, context):
    endpoint = "ipc://%s/events" % tmp_path
    sub = subscriber(context, endpoint)
    first = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    publish_until_heard(first, sub, speech_ended())
    first.close()
    drain(sub, quiet_ms=50)
    second = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    topic, body = publish_until_heard(second, sub, emotion())
    second.close()
    assert topic == b"serd/desk/emotion-changed"
    assert from_dict(json.loads(body)) == emotion()


def test_replacement_built_before_the_old_one_closes_takes_over(tmp_path, context):
    path = tmp_path / "events"
    sub = subscriber(context, "ipc://%s" % path)
    old = ZmqPublisher("ipc://%s" % path, DEVICE, high_water_mark=100)
    publish_until_heard(old, sub, speech_ended())
    new = ZmqPublisher("ipc://%s" % path, DEVICE, high_water_mark=100)
    old.close()
    assert path.exists(), "closing the old publisher must not remove the new one's socket"
    drain(sub, quiet_ms=50)
    topic, body = publish_until_heard(new, sub, emotion())
    new.close()
    assert topic == b"serd/desk/emotion-changed"
    assert not path.exists()


def test_stale_socket_file_is_replaced_but_a_live_one_is_refused(tmp_path):
    path = tmp_path / "events"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    pub = ZmqPublisher("ipc://%s" % path, DEVICE, high_water_mark=10)
    pub.close()
    live_path = tmp_path / "live"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(live_path))
        live.listen()
        with pytest.raises(ConfigError, match="in use"):
            ZmqPublisher("ipc://%s" % live_path, DEVICE, high_water_mark=10)
        assert live_path.exists()


def test_endpoint_path_that_is_not_a_socket_is_a_config_error(tmp_path):
    path = tmp_path / "events"
    path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        ZmqPublisher("ipc://%s" % path, DEVICE, high_water_mark=10)
    assert path.read_text() == "precious"


def test_tcp_port_in_use_is_a_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot bind"):
            ZmqPublisher("tcp://127.0.0.1:%d" % port, DEVICE, high_water_mark=10)


def test_make_publishers_and_fanout_sum_drops(tmp_path, monkeypatch):
    endpoint = "ipc://%s/events" % tmp_path
    config = load_config(overrides={"zmq": {"endpoint": endpoint}, "stdout": {"enabled": "yes"},
                                    "daemon": {"device_id": DEVICE}})
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "w") as broken:
        monkeypatch.setattr("sys.stdout", broken)
        publishers = make_publishers(config)
        assert [p.name for p in publishers] == ["zmq", "stdout"]
        assert isinstance(publishers[1], StdoutPublisher)
        fanout = Fanout(publishers)
        for _ in range(3):
            fanout.publish(Status(device=DEVICE, stream_time_s=0.0, wall_time_s=time.time()))
        fanout.close()
    assert fanout.dropped_counts() == {"zmq": 0, "stdout": 3}


class Exploding:
    """A publisher with a bug: Fanout must keep the others going and count the loss."""

    name = "exploding"
    dropped = 0

    def publish(self, event):
        raise RuntimeError("boom")

    def close(self, timeout_s=2.0):
        raise RuntimeError("boom")


def test_fanout_survives_a_failing_publisher(tmp_path, context):
    endpoint = "ipc://%s/events" % tmp_path
    zmq_pub = ZmqPublisher(endpoint, DEVICE, high_water_mark=100)
    fanout = Fanout([Exploding(), zmq_pub])
    sub = subscriber(context, endpoint)
    publish_until_heard(fanout, sub, emotion())
    fanout.close(timeout_s=1.0)
    counts = fanout.dropped_counts()
    assert counts["zmq"] == 0 and counts["exploding"] >= 1


def test_one_socket_carries_each_event_under_its_own_device(tmp_path, context):
    endpoint = "ipc://%s/events" % tmp_path
    config = load_config(overrides={"zmq": {"endpoint": endpoint}, "source.cabin": {}, "source.rear": {"device_id": "back"}})
    fanout = Fanout(make_publishers(config))
    assert [p.name for p in fanout.publishers] == ["zmq"]
    sub = subscriber(context, endpoint)
    publish_until_heard(fanout, sub, dataclasses.replace(speech_ended(), device="cabin"))
    drain(sub, quiet_ms=50)
    for device in ("back", "cabin", "back"):
        fanout.publish(dataclasses.replace(emotion(), device=device))
    topics = [topic for topic, _ in drain(sub)]
    fanout.close()
    assert topics == [b"serd/back/emotion-changed", b"serd/cabin/emotion-changed", b"serd/back/emotion-changed"]
    assert fanout.dropped_counts("cabin") == fanout.dropped_counts() == {"zmq": 0}


def test_an_ipc_endpoint_in_a_missing_directory_creates_it_readable_by_subscribers(tmp_path):
    old_umask = os.umask(0o022)
    try:
        pub = ZmqPublisher("ipc://%s/run/serd/events" % tmp_path, DEVICE, high_water_mark=10)
    finally:
        os.umask(old_umask)
    try:
        for directory in (tmp_path / "run", tmp_path / "run" / "serd"):
            assert directory.stat().st_mode & 0o777 == 0o755, oct(directory.stat().st_mode)
    finally:
        pub.close(timeout_s=0.1)


def test_an_event_published_after_close_is_counted_and_logged(publisher, caplog):
    pub = publisher(high_water_mark=10)
    pub.close(timeout_s=0.1)
    pub.publish(emotion())
    pub.publish(emotion())
    assert pub.dropped == 2
    assert "zmq: dropped 1 event(s): publisher closed (total 1)" in [r.getMessage() for r in caplog.records]


def test_subscriptions_are_counted_and_unsubscriptions_are_not(tmp_path, context, publisher):
    pub = publisher(high_water_mark=10)
    first = subscriber(context, "ipc://%s/events" % tmp_path)
    publish_until_heard(pub, first, emotion())
    first.setsockopt(zmq.UNSUBSCRIBE, b"serd/")
    second = subscriber(context, "ipc://%s/events" % tmp_path)
    publish_until_heard(pub, second, emotion())
    time.sleep(0.1)
    pub.publish(emotion())  # takes in the unsubscription too
    assert pub.wait_for_subscribers() == 2
    assert zmq_topic(DEVICE, "status") == "serd/desk/status"
