"""ZeroMQ publisher: multipart [topic, JSON] on a bound XPUB socket; a full subscriber queue costs only that subscriber."""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path

import zmq

from serd.errors import ConfigError
from serd.events import Event
from serd.publish.base import DropCounter, event_json

log = logging.getLogger(__name__)

IPC_SCHEME = "ipc://"
TOPIC_ROOT = "serd"
IPC_DIR_MODE = 0o755
JOIN_WINDOW_MS = 250  # subscribers waiting for the bind retry within 100-200 ms (ZeroMQ's reconnect interval and jitter)
JOIN_POLL_MS = 10
SUBSCRIBE = 1  # first byte of a subscription message
SEND_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)  # flags as plain ints: pyzmq's flag enums cost more than the send
SEND_LAST = int(zmq.NOBLOCK)
RECV_NOW = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
READABLE = int(zmq.POLLIN)
QUEUE_FULL = "a subscriber's queue is full (high-water mark): it misses events until it reads again; the others get them"

_bound_here: collections.Counter[str] = collections.Counter()  # ipc paths bound by this process (reloads)
_bound_here_lock = threading.Lock()


def zmq_topic(device: str, event_type: str) -> str:
    """serd/<device>/<event type>: the first frame, which subscribers filter on."""
    return "%s/%s/%s" % (TOPIC_ROOT, device, event_type)


class ZmqPublisher:
    """Binds an XPUB socket (PUB semantics): each subscriber has its own queue of high_water_mark messages.

    Sends never block. The socket runs with XPUB_NODROP, so a send that some subscriber's full queue
    cannot take fails instead of vanishing: that event is counted as dropped and sent again without
    NODROP, which reaches every subscriber but the full ones. ZeroMQ then passes the full subscriber
    by, without telling, until it has read half its queue, so `dropped` is a lower bound of what slow
    subscribers missed: non-zero means some subscriber lost events, not how many.

    Every event goes out under its own device's topic, so one socket serves every source of the daemon;
    `device` (the devices it was opened for) only names them in the log.
    """

    name = "zmq"

    def __init__(self, endpoint: str, device: str, high_water_mark: int, linger_ms: int = 500,
                 connect_wait_ms: int = 0) -> None:
        self.endpoint = endpoint
        self._devices = device
        self._linger_ms = linger_ms
        self._connect_wait_ms = connect_wait_ms
        self._drops = DropCounter(self.name)
        self._lock = threading.Lock()
        self._ipc_inode: int | None = None
        self._subscriptions = 0
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = self._bind(high_water_mark)
        self._bound_s = time.monotonic()

    @property
    def dropped(self) -> int:
        """Events some subscriber missed because its queue was full (a lower bound), or that the closed socket refused."""
        return self._drops.count

    def retarget(self, high_water_mark: int, connect_wait_ms: int) -> None:
        """Take a reloaded configuration on the same socket: subscribers stay connected and miss nothing."""
        with self._lock:
            self._connect_wait_ms = connect_wait_ms
            if self._socket is not None:
                self._socket.setsockopt(zmq.SNDHWM, high_water_mark)

    def wait_for_subscribers(self) -> int:
        """Give subscribers that waited for the bind time to join; returns the subscriptions seen so far.

        They join within JOIN_WINDOW_MS of the bind, so the wait ends once one has joined and that window
        has passed, and at the latest connect_wait_ms after the bind (at once when that is over)."""
        deadline_s = self._bound_s + self._connect_wait_ms / 1000
        window_s = self._bound_s + min(JOIN_WINDOW_MS, self._connect_wait_ms) / 1000
        if time.monotonic() >= deadline_s:
            return self._subscriptions
        while True:
            now_s = time.monotonic()
            if now_s >= deadline_s or (self._subscriptions and now_s >= window_s):
                break
            with self._lock:
                if self._socket is None:
                    break
                if self._socket.poll(JOIN_POLL_MS):
                    self._drain_subscriptions()
        if not self._subscriptions:
            log.info("zmq: no subscriber joined within %d ms of the bind; events go to nobody until one does",
                     self._connect_wait_ms)
        return self._subscriptions

    def _bind(self, high_water_mark: int) -> zmq.Socket:
        """Create the socket and bind it, preparing the ipc path first; errors name the endpoint."""
        sock = self._context.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscription comes up, not only a topic's first
        sock.setsockopt(zmq.SNDHWM, high_water_mark)
        sock.setsockopt(zmq.LINGER, self._linger_ms)
        try:
            ipc_path = _prepare_ipc_path(self.endpoint)
            sock.bind(self.endpoint)
        except (zmq.ZMQError, OSError, ConfigError) as exc:
            sock.close(linger=0)
            self._context.term()
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError("[zmq] endpoint: cannot bind %s: %s" % (self.endpoint, exc)) from None
        if ipc_path is not None:
            self._ipc_inode = os.stat(ipc_path).st_ino
            with _bound_here_lock:
                _bound_here[ipc_path] += 1
        log.info("zmq: publishing the events of %s on %s", self._devices, self.endpoint)
        return sock

    def publish(self, event: Event) -> None:
        """Send [topic, JSON] without blocking; count the event as dropped when it cannot go."""
        frames = [zmq_topic(event.device, event.type).encode("utf-8"), event_json(event).encode("utf-8")]
        with self._lock:
            if self._socket is None:
                self._drops.drop("publisher closed")
                return
            self._drain_subscriptions()
            try:
                self._send(frames)
            except zmq.ZMQError as exc:
                self._drops.drop("send failed: %s" % exc)

    def _send(self, frames: list[bytes]) -> None:
        """Send to every subscriber; when some queue is full, count the event and send it to the others."""
        try:
            self._send_frames(frames)
            return
        except zmq.Again:
            self._drops.drop(QUEUE_FULL)
        self._socket.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            self._send_frames(frames)
        finally:
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)

    def _send_frames(self, frames: list[bytes]) -> None:
        """[topic, JSON] as one message without blocking (zmq.Again when it cannot go: the first frame decides)."""
        self._socket.send(frames[0], SEND_MORE)
        self._socket.send(frames[1], SEND_LAST)

    def _drain_subscriptions(self) -> None:
        """Read (and count) the subscription messages XPUB hands up, so they do not pile up in memory.

        Asking for the socket's events also lets it take in its pending commands, among them the news that
        a subscriber's queue has room again; it reads only when a message waits (no exception per event)."""
        while self._socket.getsockopt(EVENTS) & READABLE:
            message = self._socket.recv(RECV_NOW)
            if message[:1] == bytes([SUBSCRIBE]):
                self._subscriptions += 1

    def close(self, timeout_s: float = 2.0) -> None:
        """Give queued messages up to min(linger, timeout) to leave, then close and remove the ipc file."""
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is None:
            return
        sock.close(linger=min(self._linger_ms, int(timeout_s * 1000)))
        self._context.term()
        self._remove_own_ipc_file()

    def _remove_own_ipc_file(self) -> None:
        """Unlink the ipc socket file if it is still the one this publisher bound."""
        if self._ipc_inode is None:
            return
        path = str(Path(self.endpoint[len(IPC_SCHEME):]))
        with _bound_here_lock:
            _bound_here[path] -= 1
            if _bound_here[path] <= 0:
                del _bound_here[path]
        try:
            if os.stat(path).st_ino == self._ipc_inode:
                os.unlink(path)
        except FileNotFoundError:
            return


def _prepare_ipc_path(endpoint: str) -> str | None:
    """For ipc:// endpoints: create the directory and remove a stale socket file; return the path.

    A socket bound by this process (a publisher about to be replaced on reload) may be taken over:
    libzmq replaces the file and the old publisher leaves the new file alone when it closes.
    """
    if not endpoint.startswith(IPC_SCHEME):
        return None
    path = Path(endpoint[len(IPC_SCHEME):])
    path.parent.mkdir(mode=IPC_DIR_MODE, parents=True, exist_ok=True)
    if str(path) in _bound_here:
        log.info("zmq: taking over %s from the publisher being replaced", path)
    elif path.exists() or path.is_symlink():
        _remove_stale_socket(path)
    return str(path)


def _remove_stale_socket(path: Path) -> None:
    """Unlink a socket file nobody listens on; refuse to steal one that is alive."""
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ConfigError("[zmq] endpoint: %s exists and is not a socket" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        log.info("zmq: removing stale socket %s", path)
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ConfigError("[zmq] endpoint: %s is in use by another process" % path)
