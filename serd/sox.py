"""Decoding through the sox program: FLAC, Ogg, Opus, MP3 and float WAV to raw 16-bit mono, read from its stdout as it comes."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from serd.errors import AudioError
from serd.inputs import ByteSource

TRUNCATION_SLACK_S = 0.25  # decoded audio may fall short of the declared length by this much (mp3 padding)
BLOCK_BYTES = 65536  # read from sox's stdout at a time (an even number: whole samples)
FEED_BLOCK_BYTES = 65536  # a stream is copied into sox's stdin this much at a time
FEEDER_JOIN_S = 1.0
SOX_DURATION = re.compile(r"^Duration\s*:.*=\s*(\d+)\s+samples", re.MULTILINE)
SOX_QUOTED_NAME = re.compile(r"`[^`]*':? ")  # sox quotes the file name like `this'
SOX_RATE = re.compile(r"^Sample Rate\s*:\s*(\d+)", re.MULTILINE)
INSTALL_HINT = "decoding needs the sox program (apt install sox libsox-fmt-all)"


class SoxDecoder:
    """sox decoding one input to s16le mono at sample_rate_hz; iterate for int16 blocks.

    A regular file is opened by sox itself; a stream (what source read so far, then the rest of it) is
    fed to sox's stdin by a helper thread. The first block is decoded at construction, so a file sox
    cannot open fails there; a decoder failure or truncation found later fails at the end of the blocks.
    """

    def __init__(self, source: ByteSource, kind: str | None, sample_rate_hz: int):
        sox = shutil.which("sox")
        if sox is None:
            raise AudioError("%s: %s" % (source.name, INSTALL_HINT))
        self.name, self.kind, self.sample_rate_hz = source.name, kind or Path(source.name).suffix, sample_rate_hz
        command = [sox, "-V3", "-D", *(["-t", kind] if kind else []), str(source.path) if source.path else "-",  # -D: no random dither
                   "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1", "-r", str(sample_rate_hz), "-"]
        self._report = tempfile.TemporaryFile()  # sox's stderr: a file never fills up and stalls it
        stdin = subprocess.DEVNULL if source.path else subprocess.PIPE
        self._process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=self._report)
        self._feeder = None
        if source.path is None:
            start, rest = source.take_stream()
            self._feeder = threading.Thread(target=_feed, args=(self._process.stdin, start, rest), name="serd-sox-feed", daemon=True)
            self._feeder.start()
        self._first = self._read_block()
        self.source_rate_hz = self._input_rate()
        if self._first is None:
            self._finish(0)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The decoded blocks; AudioError at the end when sox failed or the input was shorter than it declares."""
        try:
            produced, block = 0, self._first
            self._first = None
            while block is not None:
                produced += len(block)
                yield block
                block = self._read_block()
            self._finish(produced)
        finally:
            self.close()

    def close(self) -> None:
        """Stop sox if it still runs and release its pipes."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        if self._feeder is not None:
            self._feeder.join(FEEDER_JOIN_S)
        self._report.close()

    def _read_block(self) -> np.ndarray | None:
        """The next whole samples from sox's stdout (None at its end)."""
        data = self._process.stdout.read(BLOCK_BYTES)
        if len(data) & 1:
            data += self._process.stdout.read(1)
        return np.frombuffer(data, dtype="<i2").astype(np.int16) if len(data) >= 2 else None

    def _report_text(self) -> str:
        """What sox has said on stderr so far."""
        self._report.seek(0)
        return self._report.read().decode("utf-8", "replace")

    def _input_rate(self) -> int | None:
        """The input's own sample rate, from sox's description of it (printed before any output)."""
        found = SOX_RATE.search(self._report_text())
        return int(found.group(1)) if found else None

    def _finish(self, produced: int) -> None:
        """After the last block: sox's verdict, and the declared length against what came out."""
        returncode = self._process.wait()
        report = self._report_text()
        failures = [line for line in report.splitlines() if " FAIL " in line]
        if returncode != 0 or failures:
            self.close()
            raise AudioError("%s: %s" % (self.name, sox_failure(failures[-1] if failures else "", self.kind)))
        expected = declared_samples(report, self.sample_rate_hz)
        if expected and produced < expected - TRUNCATION_SLACK_S * self.sample_rate_hz:
            self.close()
            held_s, declared_s = produced / self.sample_rate_hz, expected / self.sample_rate_hz
            raise AudioError("%s: truncated: header says %.2f s, file holds %.2f s" % (self.name, declared_s, held_s))


def sox_failure(line: str, kind: str) -> str:
    """One-line reason from a sox FAIL line, without sox's own prefix and file name; kind: 'mp3' or '.mp3'."""
    detail = SOX_QUOTED_NAME.split(line)[-1].strip() or "decoder failed"
    if "can't open input file" in line:
        return "not a readable %s file: %s" % (kind.lstrip(".").upper(), detail)
    return "corrupt or truncated: %s" % detail


def declared_samples(report: str, sample_rate_hz: int) -> int:
    """Length the input file declares (from sox -V3), in output samples; 0 if unknown."""
    duration, rate = SOX_DURATION.search(report), SOX_RATE.search(report)
    if duration is None or rate is None or int(rate.group(1)) == 0:
        return 0
    return int(duration.group(1)) * sample_rate_hz // int(rate.group(1))


def _feed(stdin: BinaryIO, start: bytes, rest: BinaryIO) -> None:
    """Copy a stream into sox: the bytes already read, then the rest; stops quietly when sox stops reading."""
    try:
        stdin.write(start)
        shutil.copyfileobj(rest, stdin, FEED_BLOCK_BYTES)
    except (OSError, ValueError):  # sox exited (its report says why) or the input was closed
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass
