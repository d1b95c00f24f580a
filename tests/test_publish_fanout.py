"""The publishers behind one fan-out: which are made, which a reload keeps, who gets an event, what is counted, how
they close; on real ZeroMQ sockets and pipes."""

import logging
import os
import socket
import time

import pytest
import zmq

from serd.config import load_config
from serd.errors import ConfigError
from serd.events import SpeechStarted
from serd.publish import Fanout, StdoutPublisher, ZmqPublisher, make_publishers


def free_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return "tcp://127.0.0.1:%d" % probe.getsockname()[1]


def started(device, t=0.0):
    return SpeechStarted(device=device, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=1)


class Recorder:
    """A publisher of one device (as MQTT's are) or of every device (device None) that records what it is handed."""

    def __init__(self, name, device=None, dropped=0, reconnects=None, close_s=0.0, fails=False):
        self.name, self.device, self.dropped = name, device, dropped
        if reconnects is not None:
            self.reconnects = reconnects
        self.close_s, self.fails = close_s, fails
        self.events, self.closed_with = [], []

    def publish(self, event):
        if self.fails:
            raise RuntimeError("boom")
        self.events.append(event)

    def close(self, timeout_s=2.0):
        self.closed_with.append(timeout_s)
        time.sleep(self.close_s)
        if self.fails:
            raise RuntimeError("boom")


def test_a_publisher_that_fails_to_start_closes_those_already_started(tmp_path):
    endpoint = free_tcp_endpoint()
    config = load_config(overrides={"zmq": {"endpoint": endpoint}, "mqtt": {"enabled": "yes", "password_file": str(tmp_path)}})
    with pytest.raises(ConfigError, match="password_file"):
        make_publishers(config)
    again = ZmqPublisher(endpoint, "desk", high_water_mark=10)  # the port is free again: the first socket was closed
    again.close(timeout_s=0.1)


def test_a_failed_reload_leaves_the_running_socket_open(tmp_path):
    endpoint = free_tcp_endpoint()
    running = ZmqPublisher(endpoint, "desk", high_water_mark=10)
    try:
        config = load_config(overrides={"zmq": {"endpoint": endpoint}, "mqtt": {"enabled": "yes", "password_file": str(tmp_path)}})
        with pytest.raises(ConfigError):
            make_publishers(config, running_zmq=running)
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint)
        try:
            deadline_s = time.monotonic() + 5.0
            while not sub.poll(20) and time.monotonic() < deadline_s:
                running.publish(started("desk"))
            assert sub.poll(0), "the kept socket still publishes"
        finally:
            sub.close(linger=0)
            context.term()
    finally:
        running.close(timeout_s=0.1)


def test_a_reload_on_the_same_endpoint_keeps_the_socket_and_takes_its_new_settings(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    running = ZmqPublisher(endpoint, "desk", high_water_mark=10)
    try:
        config = load_config(overrides={"zmq": {"endpoint": endpoint, "high_water_mark": "77", "connect_wait_ms": "300"}})
        (kept,) = make_publishers(config, running_zmq=running)
        assert kept is running and running._socket.getsockopt(zmq.SNDHWM) == 77 and running._connect_wait_ms == 300
        other = load_config(overrides={"zmq": {"endpoint": "ipc://%s/other" % tmp_path}})
        (fresh,) = make_publishers(other, running_zmq=running)
        assert fresh is not running and fresh.endpoint.endswith("/other") and running._socket is not None
        fresh.close(timeout_s=0.1)
    finally:
        running.close(timeout_s=0.1)


def test_stdout_is_made_only_when_enabled_and_zmq_only_when_enabled():
    config = load_config(overrides={"zmq": {"enabled": "no"}, "stdout": {"enabled": "yes"}})
    publishers = make_publishers(config)
    assert [type(p) for p in publishers] == [StdoutPublisher]
    Fanout(publishers).close(timeout_s=0.5)
    assert make_publishers(load_config(overrides={"zmq": {"enabled": "no"}})) == []


def test_an_event_reaches_the_publishers_of_its_device_and_those_of_every_device():
    cabin, rear, every = Recorder("mqtt", "cabin"), Recorder("mqtt", "rear"), Recorder("zmq")
    fanout = Fanout([cabin, rear, every])
    fanout.publish(started("cabin"))
    fanout.publish(started("rear", 1.0))
    assert [e.device for e in cabin.events] == ["cabin"] and [e.device for e in rear.events] == ["rear"]
    assert [e.device for e in every.events] == ["cabin", "rear"]


def test_a_publisher_that_raises_is_counted_for_its_device_and_the_next_one_still_gets_the_event(caplog):
    broken, healthy = Recorder("mqtt", "cabin", fails=True), Recorder("zmq")
    fanout = Fanout([broken, healthy])
    with caplog.at_level(logging.WARNING):
        fanout.publish(started("cabin"))
        fanout.publish(started("cabin", 1.0))
    assert len(healthy.events) == 2
    assert fanout.dropped_counts("cabin") == {"mqtt": 2, "zmq": 0}
    assert fanout.dropped_counts("rear") == {"zmq": 0}, "a device's count leaves out other devices' publishers"
    assert "mqtt: dropped 1 event(s): publish raised RuntimeError: boom (total 1)" in [r.getMessage() for r in caplog.records]


def test_drops_and_reconnects_are_summed_over_the_connections_of_one_publisher_name():
    fanout = Fanout([Recorder("mqtt", "cabin", dropped=2, reconnects=1), Recorder("mqtt", "rear", dropped=3, reconnects=4),
                     Recorder("zmq", dropped=5)])
    assert fanout.dropped_counts() == {"mqtt": 5, "zmq": 5}
    assert fanout.dropped_counts("rear") == {"mqtt": 3, "zmq": 5}
    assert fanout.reconnect_counts() == {"mqtt": 5}, "a publisher that never reconnects has no entry"


def test_only_zeromq_publishers_wait_for_subscribers_and_are_found_by_endpoint(tmp_path):
    endpoint = "ipc://%s/events" % tmp_path
    zmq_pub = ZmqPublisher(endpoint, "desk", high_water_mark=10, connect_wait_ms=0)
    fanout = Fanout([Recorder("mqtt", "desk"), zmq_pub])  # the recorder has no wait_for_subscribers to call
    try:
        fanout.wait_for_subscribers()
        assert fanout.zmq_publisher(endpoint) is zmq_pub
        assert fanout.zmq_publisher("ipc://%s/other" % tmp_path) is None
    finally:
        fanout.close(timeout_s=0.1)


def test_close_shares_one_deadline_skips_the_kept_publisher_and_reaches_every_other(caplog):
    slow, failing, kept, last = Recorder("a", close_s=0.3), Recorder("b", fails=True), Recorder("c"), Recorder("d", close_s=0.3)
    late = Recorder("e")
    with caplog.at_level(logging.WARNING):
        Fanout([slow, failing, kept, last, late]).close(timeout_s=0.5, keep=kept)
    assert slow.closed_with == [pytest.approx(0.5, abs=0.05)]
    assert failing.closed_with and failing.closed_with[0] < 0.3, "the second is left what the first did not use"
    assert kept.closed_with == [], "the publisher a reload goes on using stays open"
    assert last.closed_with and last.closed_with[0] < 0.3
    assert late.closed_with == [0.1], "past the deadline each publisher still gets a tenth of a second"
    assert "b: close failed: boom" in [r.getMessage() for r in caplog.records]


def test_a_stdout_publisher_made_for_the_daemon_writes_to_standard_output(monkeypatch):
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer, open(read_fd) as reader:
        monkeypatch.setattr("sys.stdout", writer)
        (pub,) = make_publishers(load_config(overrides={"zmq": {"enabled": "no"}, "stdout": {"enabled": "yes"}}))
        pub.publish(started("desk"))
        assert '"type": "speech-started"' in reader.readline()
        pub.close()
