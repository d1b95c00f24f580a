"""sd_notify without dependencies: readiness, reload, stop, status and watchdog messages to systemd."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)

USEC_PER_S = 1_000_000
NS_PER_USEC = 1_000
WATCHDOG_FRACTION = 0.5  # ping at half the timeout, as sd_watchdog_enabled(3) advises


class Notifier:
    """Sends sd_notify(3) messages to $NOTIFY_SOCKET; every method is a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(env)

    @property
    def enabled(self) -> bool:
        """True when a notification socket was given."""
        return self.address is not None

    def ready(self) -> None:
        """Startup finished (or a reload finished)."""
        self.notify("READY=1")

    def reloading(self) -> None:
        """A reload began; MONOTONIC_USEC lets Type=notify-reload match it to the signal."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // NS_PER_USEC
        self.notify("RELOADING=1\nMONOTONIC_USEC=%d" % now_usec)

    def stopping(self, extend_timeout_usec: int | None = None) -> None:
        """Shutdown began; optionally ask systemd for more time before it kills us."""
        message = "STOPPING=1"
        if extend_timeout_usec is not None:
            message += "\nEXTEND_TIMEOUT_USEC=%d" % extend_timeout_usec
        self.notify(message)

    def status(self, text: str) -> None:
        """A one-line status shown by systemctl status."""
        self.notify("STATUS=%s" % text.replace("\n", " "))

    def watchdog(self) -> None:
        """Keep-alive ping; send it only while the service makes progress."""
        self.notify("WATCHDOG=1")

    def notify(self, message: str) -> bool:
        """Send one raw message; False (logged at debug) when it could not be sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            log.debug("sd_notify %r to %r failed: %s", message, self.address, exc)
            return False
        return True


def _socket_address(value: str) -> str | bytes | None:
    """A path stays a path; '@name' becomes the abstract address b'\\0name'; empty or other forms give None."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC when the watchdog is meant for this process, else None."""
    try:
        timeout_usec = int(env.get("WATCHDOG_USEC", ""))
        watchdog_pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if timeout_usec <= 0 or watchdog_pid != os.getpid():
        return None
    return timeout_usec * WATCHDOG_FRACTION / USEC_PER_S
