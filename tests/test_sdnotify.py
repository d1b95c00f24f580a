"""sd_notify messages arrive on a real AF_UNIX datagram socket, as systemd would receive them."""

import logging
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from serd.sdnotify import Notifier

RECV_TIMEOUT_S = 2.0
MAX_DATAGRAM_BYTES = 4096


@pytest.fixture
def notify_socket(tmp_path):
    """A bound datagram socket and the NOTIFY_SOCKET value that reaches it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT_S)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    """One datagram as {KEY: value}."""
    text = sock.recv(MAX_DATAGRAM_BYTES).decode("utf-8")
    return dict(line.split("=", 1) for line in text.split("\n"))


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_ready_status_watchdog(notify_socket):
    sock, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.ready()
    assert receive(sock) == {"READY": "1"}
    notifier.status("listening on default\nmic")
    assert receive(sock) == {"STATUS": "listening on default mic"}
    notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}


def test_reloading_carries_monotonic_usec(notify_socket):
    sock, address = notify_socket
    before_usec = monotonic_usec()
    Notifier({"NOTIFY_SOCKET": address}).reloading()
    after_usec = monotonic_usec()
    message = receive(sock)
    assert message["RELOADING"] == "1"
    assert before_usec <= int(message["MONOTONIC_USEC"]) <= after_usec


def test_stopping_with_and_without_extend_timeout(notify_socket):
    sock, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}
    notifier.stopping(extend_timeout_usec=5_000_000)
    assert receive(sock) == {"STOPPING": "1", "EXTEND_TIMEOUT_USEC": "5000000"}


def test_abstract_socket_name():
    name = "serd-test-%s" % uuid.uuid4().hex
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT_S)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.address == b"\0" + name.encode()
        notifier.ready()
        assert receive(sock) == {"READY": "1"}


def test_reads_process_environment(notify_socket, monkeypatch):
    sock, address = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier()
    assert notifier.watchdog_interval_s == 10.0
    notifier.ready()
    assert receive(sock) == {"READY": "1"}


@pytest.mark.parametrize("value", ["", "relative/path", "@"])
def test_no_op_without_a_usable_socket(value):
    notifier = Notifier({"NOTIFY_SOCKET": value} if value else {})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    notifier.ready()
    notifier.reloading()
    notifier.stopping(1)
    notifier.status("x")
    notifier.watchdog()


def test_send_failure_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="serd.sdnotify"):
        notifier.ready()
        assert notifier.notify("WATCHDOG=1") is False
    assert len(caplog.records) == 2
    assert "nobody-listens" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("environ", "expected_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ, expected_s):
    assert Notifier(environ).watchdog_interval_s == expected_s


def test_import_sends_nothing(notify_socket):
    sock, address = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=address)
    subprocess.run([sys.executable, "-c", "import serd.sdnotify"], env=env, check=True, timeout=30)
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(MAX_DATAGRAM_BYTES)


def test_notify_says_true_when_the_message_was_delivered(notify_socket):
    sock, address = notify_socket
    assert Notifier({"NOTIFY_SOCKET": address}).notify("STATUS=up") is True
    assert receive(sock) == {"STATUS": "up"}


def test_a_one_character_abstract_name_is_an_address():
    assert Notifier({"NOTIFY_SOCKET": "@x"}).address == b"\0x"


@pytest.mark.parametrize(
    ("environ", "expected_s"),
    [
        ({"WATCHDOG_USEC": "1"}, 0.5e-6),
        ({"WATCHDOG_USEC": "-30000000"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ],
)
def test_the_watchdog_is_on_for_any_positive_timeout_and_only_for_this_process(environ, expected_s):
    assert Notifier(environ).watchdog_interval_s == expected_s


def test_monotonic_usec_is_exact_after_months_of_uptime(notify_socket, monkeypatch):
    sock, address = notify_socket
    months_ns = 2 ** 44 * 1000 + 999  # 203 days and a hair under the next µs: a float quotient would round it up
    monkeypatch.setattr(time, "clock_gettime_ns", lambda clock: months_ns)
    Notifier({"NOTIFY_SOCKET": address}).reloading()
    assert receive(sock)["MONOTONIC_USEC"] == str(2 ** 44)
