"""stdout publisher: one JSON event per line, written by its own thread so a slow reader never stalls serd."""

from __future__ import annotations

import io
import logging
import os
import queue
import sys
import threading
from typing import TextIO

from serd.events import Event
from serd.publish.base import DropCounter, event_json

log = logging.getLogger(__name__)

QUEUE_LINES = 1000
WRITER_POLL_S = 0.5
_STOP = None


class StdoutPublisher:
    """Writes JSON lines to a text stream (stdout by default), flushing after each line."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None, queue_lines: int = QUEUE_LINES) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._drops = DropCounter(self.name)
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_lines)
        self._broken = False
        self._closed = False
        self._writer = threading.Thread(target=self._write_lines, name="serd-stdout", daemon=True)
        self._writer.start()

    @property
    def dropped(self) -> int:
        """Events not written: queue full, output closed (broken pipe) or publisher closed."""
        return self._drops.count

    def publish(self, event: Event) -> None:
        """Queue one line for the writer thread; count it as dropped if it cannot be queued."""
        if self._closed:
            self._drops.drop("publisher closed")
        elif self._broken:
            self._drops.drop("output closed (broken pipe)")
        else:
            self._enqueue(event_json(event))

    def _enqueue(self, line: str) -> None:
        """Put a line on the queue without waiting."""
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self._drops.drop("output too slow, %d lines queued" % self._queue.maxsize)

    def _write_lines(self) -> None:
        """Writer thread: write queued lines until the stop marker, or until closed with nothing left."""
        while True:
            try:
                line = self._queue.get(timeout=WRITER_POLL_S)
            except queue.Empty:
                if self._closed:
                    return
                continue
            if line is _STOP:
                return
            self._write(line)

    def _write(self, line: str) -> None:
        """Write and flush one line; a closed reader disables the publisher instead of failing."""
        if self._broken:
            self._drops.drop("output closed (broken pipe)")
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._broken = True
            self._drops.drop("output closed (%s)" % exc.__class__.__name__)
            silence_broken_stream(self._stream)

    def close(self, timeout_s: float = 2.0) -> None:
        """Let the writer finish the queued lines within timeout_s, then stop it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("stdout: output blocked, %d line(s) not written", self._queue.qsize())
            return
        self._writer.join(timeout_s)


def silence_broken_stream(stream: TextIO) -> None:
    """Point a broken stream's descriptor at /dev/null so later flushes (e.g. at exit) stay quiet."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
