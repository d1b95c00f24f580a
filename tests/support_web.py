"""A real `serd web` in a subprocess, and plain HTTP requests to it (urllib, hand-made multipart bodies, an event-stream reader)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SERD = [sys.executable, "-m", "serd.cli"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
URL_LINE = re.compile(r"^serd web: (http://\S+)", re.MULTILINE)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0


@dataclass
class WebServer:
    """A running serd web: its process, its URL and the scratch directory it was given as TMPDIR."""

    process: subprocess.Popen
    url: str
    temp_dir: Path
    stderr_path: Path

    def stop(self) -> int:
        """SIGTERM, then wait; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_web(tmp_path: Path, config_text: str = "", listen: str = "127.0.0.1:0", *extra: str) -> WebServer:
    """serd web on a free port with config_text as its config file; returns once it says its URL."""
    config = tmp_path / "web.conf"
    config.write_text(config_text)
    temp_dir = tmp_path / "server-tmp"
    temp_dir.mkdir(exist_ok=True)
    stderr_path = tmp_path / "web.stderr"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TMPDIR=str(temp_dir))
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(SERD + ["web", "--listen", listen, "--config", str(config), *extra],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = URL_LINE.search(stderr_path.read_text())
        if found:
            return WebServer(process, found.group(1), temp_dir, stderr_path)
        if process.poll() is not None:
            raise AssertionError("serd web exited %s: %s" % (process.returncode, stderr_path.read_text()))
        time.sleep(0.05)
    process.kill()
    raise AssertionError("serd web said no URL within %.0f s: %s" % (START_TIMEOUT_S, stderr_path.read_text()))


@dataclass
class Answer:
    """An HTTP response: status, headers and the body parsed as JSON (None if it is not JSON)."""

    status: int
    headers: dict
    body: object


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None) -> Answer:
    """One HTTP request; error statuses are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as response:
            return _answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return _answer(error.code, dict(error.headers), error.read())


def _answer(status: int, headers: dict, raw: bytes) -> Answer:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return Answer(status, headers, body)


def multipart(field: str, filename: str, content: bytes, content_type: str = "application/octet-stream") -> tuple[bytes, dict]:
    """A multipart/form-data body with one file field, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    head = ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
            % (boundary, field, filename, content_type)).encode()
    body = head + content + ("\r\n--%s--\r\n" % boundary).encode()
    return body, {"Content-Type": "multipart/form-data; boundary=%s" % boundary}


def upload(server_url: str, path: Path, query: str = "", headers: dict | None = None) -> Answer:
    """POST /api/analyze with the file as the multipart field `file`."""
    body, content_type = multipart("file", path.name, path.read_bytes())
    return request(server_url + "api/analyze" + query, body, {**content_type, **(headers or {})})


def serd_analyze_json(path: Path) -> dict:
    """What `serd analyze --json` prints for one file."""
    result = subprocess.run(SERD + ["analyze", "--json", str(path)], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), check=True)
    return json.loads(result.stdout)


@dataclass
class SseMessage:
    """One Server-Sent Events message: its event name ("message" when none) and its data."""

    event: str
    data: str

    def json(self):
        """The data parsed as JSON."""
        return json.loads(self.data)


class SseStream:
    """GET an event stream and parse it in a thread: messages, comments and the retry field, as they arrive."""

    def __init__(self, url: str, headers: dict | None = None, timeout_s: float = REQUEST_TIMEOUT_S):
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        self._connection.request("GET", parts.path + ("?" + parts.query if parts.query else ""), headers=headers or {})
        self.response = self._connection.getresponse()
        self.messages: queue.Queue[SseMessage] = queue.Queue()
        self.comments: list[str] = []
        self.retry_ms: int | None = None
        self.ended = threading.Event()
        if self.response.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.ended.set()

    def _read(self) -> None:
        event, data = "message", []
        try:
            for raw in self.response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        self.messages.put(SseMessage(event, "\n".join(data)))
                    event, data = "message", []
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "retry":
                        self.retry_ms = int(value)
                    elif name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the connection closed under the reader (close(), or the server went): the stream has ended
        finally:
            self.ended.set()

    def next(self, predicate=lambda message: True, timeout_s: float = 20.0) -> SseMessage:
        """The next message that satisfies predicate (those before it are consumed); AssertionError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no such event within %.0f s" % timeout_s)
            try:
                message = self.messages.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if predicate(message):
                return message

    def serd_events(self, until, timeout_s: float = 20.0) -> list[dict]:
        """serd's events (plain messages) up to and including the first for which until(event) holds."""
        events = []
        while True:
            event = self.next(lambda m: m.event == "message", timeout_s).json()
            events.append(event)
            if until(event):
                return events

    def close(self) -> None:
        """Drop the connection."""
        with contextlib.suppress(OSError):
            if self._connection.sock is not None:
                self._connection.sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()


def free_port() -> int:
    """A TCP port nobody listens on now (on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def system_chromium():
    """Debian's headless Chromium driven by Playwright (the system browser; Playwright downloads none)."""
    import shutil

    import pytest

    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        pytest.fail("the browser tests need Debian's chromium (apt-get install chromium; make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
