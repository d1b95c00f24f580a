"""Opening what serd decodes: a regular file, a FIFO or standard input, as a byte stream whose start can be read again."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from serd.errors import AudioError

STDIN_PATH = "-"  # the path that means standard input
STDIN_NAME = "stdin"  # what messages call it
SKIP_BLOCK_BYTES = 65536  # a stream skips bytes by reading them in blocks of this size
NOT_REGULAR = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class ByteSource:
    """An opened input read front to back, with a look at its first bytes (peek) that reading gives again.

    path is set for a regular file (a decoder may open it again itself, and size_bytes is known); a
    FIFO or standard input has neither. Until forget_start() is called, a stream keeps every byte read
    from it, so that a decoder chosen after reading its header can still be given the whole input
    (take_stream()).
    """

    def __init__(self, name: str, file: BinaryIO, path: Path | None = None, size_bytes: int | None = None):
        self.name, self.file, self.path, self.size_bytes = name, file, path, size_bytes
        self.position = 0  # bytes read (or skipped) so far
        self._pending = b""  # peeked, not yet read
        self._start: bytearray | None = bytearray() if path is None else None

    def peek(self, size: int) -> bytes:
        """Up to size bytes from the current position, left to be read again."""
        if len(self._pending) < size:
            self._pending += self._read_file(size - len(self._pending))
        return self._pending[:size]

    def read(self, size: int) -> bytes:
        """Up to size bytes; fewer only at the end of the input."""
        data, self._pending = self._pending[:size], self._pending[size:]
        if len(data) < size:
            data += self._read_file(size - len(data))
        self.position += len(data)
        if self._start is not None:
            self._start += data
        return data

    def skip(self, size: int) -> int:
        """Pass over size bytes (seeking in a regular file); returns how many there were."""
        skipped = len(self.read(min(size, len(self._pending))))
        if self.path is not None:
            available = max(0, min(size - skipped, (self.size_bytes or 0) - self.position))
            self.file.seek(available, os.SEEK_CUR)
            self.position += available
            return skipped + available
        while skipped < size:
            data = self.read(min(SKIP_BLOCK_BYTES, size - skipped))
            if not data:
                break
            skipped += len(data)
        return skipped

    def forget_start(self) -> None:
        """The decoder goes on reading from here: stop keeping what is read."""
        self._start = None

    def take_stream(self) -> tuple[bytes, BinaryIO]:
        """A stream's bytes from its start up to what is still unread in file, and file: together, the whole input."""
        start = bytes(self._start or b"") + self._pending
        self._start, self._pending = None, b""
        return start, self.file

    def close(self) -> None:
        """Close the file (never standard input)."""
        if self.file is not getattr(sys.stdin, "buffer", None):
            self.file.close()

    def _read_file(self, size: int) -> bytes:
        """Up to size bytes from the file, fewer only at its end; AudioError names the file when the system refuses."""
        parts, wanted = [], size
        try:
            while wanted > 0:
                data = self.file.read(wanted)
                if not data:
                    break
                parts.append(data)
                wanted -= len(data)
        except OSError as exc:
            raise AudioError("%s: cannot read: %s" % (self.name, exc.strerror or exc)) from None
        return b"".join(parts)


def open_input(path: str | Path) -> ByteSource:
    """A regular file, a FIFO (read as a stream) or, for "-", standard input; AudioError says why not."""
    if str(path) == STDIN_PATH:
        return _open_stdin()
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise AudioError("%s: no such file" % path) from None
    except OSError as exc:
        raise AudioError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    if stat.S_ISDIR(mode):
        raise AudioError("%s: is a directory" % path)
    kind = next((name for test, name in NOT_REGULAR if test(mode)), None)
    if kind is not None:
        raise AudioError("%s: not a regular file (%s)" % (path, kind))
    try:
        file = path.open("rb")
        size_bytes = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise AudioError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    if stat.S_ISFIFO(mode):
        return ByteSource(str(path), file)
    if size_bytes == 0:
        file.close()
        raise AudioError("%s: empty file" % path)
    return ByteSource(str(path), file, path, size_bytes)


def _open_stdin() -> ByteSource:
    """Standard input as a stream; AudioError for a terminal or a closed one."""
    if sys.stdin is None or sys.stdin.isatty():
        raise AudioError("%s: is a terminal; pipe a file in (serd analyze - < clip.wav)" % STDIN_NAME)
    return ByteSource(STDIN_NAME, sys.stdin.buffer)
