"""Capture sources behind one interface: microphone (PyAudio), file (paced or fast), stdin.

Every source delivers int16 mono 16 kHz chunks to an on_audio callback from its own thread
(or PortAudio's callback thread). This is the only module that imports pyaudio.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from serd.audio import SAMPLE_RATE_HZ, StreamResampler, stream_audio
from serd.config import SourceConfig
from serd.errors import SerdError, SourceError
from serd.quiet import quiet_stderr

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
STDIN_POLL_S = 0.1  # how often a reader blocked on stdin checks for stop()
STDIN_READ_BYTES = 65536
WATCH_INTERVAL_S = 0.5  # how often the microphone stream's health is checked (each check wakes a thread)
STALL_TIMEOUT_S = 5.0  # a microphone silent for this long (no callbacks at all) has failed
JOIN_TIMEOUT_S = 5.0

AudioCallback = Callable[[np.ndarray], None]


@dataclass(frozen=True)
class DeviceInfo:
    """A PortAudio capture device."""

    index: int
    name: str
    max_input_channels: int
    default_sample_rate_hz: int


class Source:
    """A stream of int16 mono 16 kHz audio chunks.

    live: True if the source pushes in real time and cannot wait (microphone, paced file); False
    if on_audio may block to apply back-pressure (fast file, stdin). done is set when the stream
    ended by itself (end of file or stdin) or failed (then error holds the reason).
    """

    def __init__(self, name: str, live: bool):
        self.name = name
        self.live = live
        self.done = threading.Event()
        self.error: Exception | None = None
        self.overruns = 0  # input-overflow flags reported by the device

    def start(self, on_audio: AudioCallback) -> None:
        """Begin delivering chunks to on_audio; raises SourceError/AudioError if it cannot open."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop delivering, join threads, close devices; safe to call twice."""
        raise NotImplementedError

    def _fail(self, error: Exception) -> None:
        """Record a fatal error (the first one wins) and mark the stream as ended."""
        if self.error is None:
            self.error = error
        self.done.set()


class _ThreadSource(Source):
    """A source whose chunks come from one worker thread."""

    def __init__(self, name: str, live: bool, chunk_ms: int):
        super().__init__(name, live)
        self.chunk_samples = SAMPLE_RATE_HZ * chunk_ms // 1000
        self._stopping = threading.Event()
        self._running = threading.Lock()  # held until stop(): the worker's pacing sleeps wait on it
        self._running.acquire()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Ask the worker to stop and wait for it."""
        self._stopping.set()
        with contextlib.suppress(RuntimeError):  # released already (a second stop)
            self._running.release()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("source %s: worker still busy after %.0f s", self.name, JOIN_TIMEOUT_S)

    def _sleep(self, seconds: float) -> bool:
        """Wait up to seconds; True (at once) once stop() was called. A bare lock wait: an Event's timed wait costs
        about half as much CPU again, paid at every chunk of a paced source."""
        if self._stopping.is_set():
            return True
        return seconds > 0 and self._running.acquire(timeout=seconds)

    def _launch(self, work: Callable[[], None]) -> None:
        """Run work() on the worker thread; end of work is end of stream."""
        if self._thread is not None or self._stopping.is_set():
            raise SourceError("%s: already started" % self.name)
        self._thread = threading.Thread(target=self._run, args=(work,), name="serd-capture", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        """Worker body: errors become self.error; done is set unless stop() interrupted it."""
        try:
            work()
        except SerdError as exc:
            self._fail(exc)
        except Exception as exc:  # a consumer bug must not kill the thread silently
            log.exception("source %s failed", self.name)
            self._fail(SourceError("%s: %s" % (self.name, exc)))
        if not self._stopping.is_set():
            self.done.set()


class FileSource(_ThreadSource):
    """A decoded audio file, delivered at real time (like a microphone) or as fast as possible."""

    def __init__(self, path: str | Path, realtime: bool, chunk_ms: int):
        super().__init__("file:%s" % path, live=realtime, chunk_ms=chunk_ms)
        self.path = Path(path)
        self.realtime = realtime

    def start(self, on_audio: AudioCallback) -> None:
        """Check the file (AudioError if it cannot be read), then deliver from the worker."""
        samples = stream_audio(self.path, self.chunk_samples, SAMPLE_RATE_HZ)
        self._launch(lambda: self._deliver(samples, on_audio))

    def _deliver(self, samples: Iterator[np.ndarray], on_audio: AudioCallback) -> None:
        """Chunks in order; when paced, a chunk is due when its last sample would have been heard."""
        started_s = time.monotonic()
        delivered = 0
        for chunk in samples:
            delivered += len(chunk)
            wait_s = started_s + delivered / SAMPLE_RATE_HZ - time.monotonic() if self.realtime else 0.0
            if self._sleep(wait_s):
                return
            on_audio(chunk)


class StdinSource(_ThreadSource):
    """Raw s16le mono 16 kHz from a binary stream (standard input unless given)."""

    def __init__(self, chunk_ms: int, stream: BinaryIO | None = None):
        super().__init__("stdin", live=False, chunk_ms=chunk_ms)
        self._stream = stream

    def start(self, on_audio: AudioCallback) -> None:
        """Start reading; the stream ends at end of file."""
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError) as exc:
            raise SourceError("stdin: cannot read: %s" % exc) from None
        self._launch(lambda: self._deliver(fd, on_audio))

    def _deliver(self, fd: int, on_audio: AudioCallback) -> None:
        """Whole chunks as bytes arrive; at EOF the even-length rest, dropping an odd last byte."""
        chunk_bytes = self.chunk_samples * BYTES_PER_SAMPLE
        pending = bytearray()
        for data in self._reads(fd):
            pending += data
            whole = len(pending) // chunk_bytes * chunk_bytes
            for offset in range(0, whole, chunk_bytes):
                on_audio(_int16(pending[offset : offset + chunk_bytes]))
            del pending[:whole]
        if self._stopping.is_set():
            return
        tail = len(pending) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE
        if tail:
            on_audio(_int16(pending[:tail]))
        if len(pending) > tail:
            log.warning("stdin: dropped a trailing odd byte (input is not whole 16-bit samples)")

    def _reads(self, fd: int) -> Iterator[bytes]:
        """Blocks of bytes until EOF or stop(); polls so that stop() never waits on a silent pipe."""
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], STDIN_POLL_S)
                data = os.read(fd, STDIN_READ_BYTES) if ready else None
            except OSError as exc:
                raise SourceError("stdin: read failed: %s" % (exc.strerror or exc)) from None
            if data == b"":
                return
            if data:
                yield data


class MicSource(Source):
    """A PortAudio input device in callback mode; converts to 16 kHz mono in the callback if needed.

    open_rate_hz / open_channels force the device format (otherwise 16 kHz mono when the device
    supports it, else its default rate, and its channel count if it refuses mono).
    """

    def __init__(self, device: str, chunk_ms: int, open_rate_hz: int | None = None, open_channels: int | None = None):
        super().__init__("mic:%s" % (device or "default"), live=True)
        self.device = device
        self.chunk_ms = chunk_ms
        self.rate_hz = open_rate_hz
        self.channels = open_channels
        self._pyaudio: Any = None
        self._portaudio: Any = None
        self._stream: Any = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_callback_s = 0.0
        self._convert: Callable[[bytes], np.ndarray] = _Converter(SAMPLE_RATE_HZ, 1)
        self._on_audio: AudioCallback = _discard

    def start(self, on_audio: AudioCallback) -> None:
        """Open the device and start the stream; SourceError if it cannot."""
        if self._portaudio is not None or self._stopping.is_set():
            raise SourceError("%s: already started" % self.name)
        self._pyaudio = _import_pyaudio()
        self._portaudio = _new_portaudio(self._pyaudio)
        try:
            self._open(on_audio)
        except SerdError:
            self._close()
            raise
        except (OSError, ValueError) as exc:
            self._close()
            raise SourceError("%s: cannot open: %s" % (self.name, exc)) from None
        self._watcher = threading.Thread(target=self._watch, name="serd-mic-watch", daemon=True)
        self._watcher.start()
        log.info("microphone %s open at %d Hz, %d channel(s)", self.name, self.rate_hz, self.channels)

    def stop(self) -> None:
        """Stop the stream and release PortAudio; safe to call twice."""
        self._stopping.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(JOIN_TIMEOUT_S)
        self._close()

    def _open(self, on_audio: AudioCallback) -> None:
        """Pick the device and its format, then open the callback stream."""
        info = _find_device(self._portaudio, self.device)
        self.name = "mic:%s" % info["name"]
        if self.rate_hz is None:
            self.rate_hz, self.channels = _choose_format(self._pyaudio, self._portaudio, info)
        self.channels = self.channels or 1
        self._convert = _Converter(self.rate_hz, self.channels)
        self._on_audio = on_audio
        self._last_callback_s = time.monotonic()
        frames_per_buffer = self.rate_hz * self.chunk_ms // 1000
        with quiet_stderr():
            self._stream = self._portaudio.open(
                format=self._pyaudio.paInt16, channels=self.channels, rate=self.rate_hz, input=True,
                input_device_index=info["index"], frames_per_buffer=frames_per_buffer, stream_callback=self._callback,
            )  # fmt: skip

    def _callback(self, in_data: bytes, frame_count: int, time_info: dict, status: int) -> tuple[None, int]:
        """PortAudio's thread: convert and hand over; never waits on anything of ours."""
        self._last_callback_s = time.monotonic()
        if status & self._pyaudio.paInputOverflow:
            self.overruns += 1
        try:
            samples = self._convert(in_data)
            if len(samples):
                self._on_audio(samples)
        except Exception as exc:  # raised by the consumer: end the stream and report it
            self._fail(SourceError("%s: audio consumer failed: %s" % (self.name, exc)))
            return None, self._pyaudio.paAbort
        return None, self._pyaudio.paContinue

    def _watch(self) -> None:
        """Notice a stream that died (device unplugged, sound server gone) or stalled."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            if not self._stream.is_active():
                self._fail(SourceError("%s: the input stream stopped (device unplugged or sound server gone)" % self.name))
                return
            silent_s = time.monotonic() - self._last_callback_s
            if silent_s > STALL_TIMEOUT_S:
                self._fail(SourceError("%s: no audio from the device for %.0f s" % (self.name, silent_s)))
                return

    def _close(self) -> None:
        """Close the stream and terminate PortAudio (whatever of them is open)."""
        stream, self._stream = self._stream, None
        portaudio, self._portaudio = self._portaudio, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()
            stream.close()
        if portaudio is not None:
            portaudio.terminate()


class _Converter:
    """Device bytes (int16, interleaved channels, device rate) -> int16 mono 16 kHz."""

    def __init__(self, rate_hz: int, channels: int):
        self.channels = channels
        self.resampler = StreamResampler(rate_hz, SAMPLE_RATE_HZ) if rate_hz != SAMPLE_RATE_HZ else None

    def __call__(self, data: bytes) -> np.ndarray:
        """One callback's samples, converted."""
        samples = np.frombuffer(data, dtype="<i2")
        if self.channels > 1:
            samples = np.round(samples.reshape(-1, self.channels).mean(axis=1)).astype(np.int16)
        if self.resampler is not None:
            return self.resampler.push(samples)
        return samples.astype(np.int16)


def make_source(config: SourceConfig) -> Source:
    """The source the [source] section names (not started yet)."""
    if config.source == "mic":
        return MicSource(config.device, config.chunk_ms)
    if config.source == "stdin":
        return StdinSource(config.chunk_ms)
    if config.source.startswith("file:") and len(config.source) > len("file:"):
        return FileSource(config.source[len("file:") :], config.realtime, config.chunk_ms)
    raise SourceError("[source] source: %r must be mic, stdin or file:PATH" % config.source)


def list_devices() -> list[DeviceInfo]:
    """Capture devices PortAudio sees (devices with at least one input channel)."""
    pyaudio = _import_pyaudio()
    portaudio = _new_portaudio(pyaudio)
    try:
        return [_device_info(info) for info in _input_devices(portaudio)]
    finally:
        portaudio.terminate()


def _import_pyaudio() -> Any:
    """The pyaudio module, or a SourceError saying how to get it."""
    try:
        import pyaudio
    except ImportError as exc:
        raise SourceError("microphone capture needs PyAudio (pip install pyaudio; apt install libportaudio2): %s" % exc) from None
    return pyaudio


def _new_portaudio(pyaudio: Any) -> Any:
    """PyAudio() with the ALSA/JACK probing chatter kept off the user's terminal."""
    with quiet_stderr():
        return pyaudio.PyAudio()


def _input_devices(portaudio: Any) -> list[dict]:
    """PortAudio's info dicts of devices with input channels."""
    infos = [portaudio.get_device_info_by_index(index) for index in range(portaudio.get_device_count())]
    return [info for info in infos if info["maxInputChannels"] > 0]


def _device_info(info: dict) -> DeviceInfo:
    """DeviceInfo from a PortAudio info dict."""
    return DeviceInfo(int(info["index"]), str(info["name"]), int(info["maxInputChannels"]), int(info["defaultSampleRate"]))


def _find_device(portaudio: Any, spec: str) -> dict:
    """The input device spec names: empty = default, an integer = index, else a name substring."""
    inputs = _input_devices(portaudio)
    spec = spec.strip()
    if not spec:
        try:
            return portaudio.get_default_input_device_info()
        except OSError:
            raise SourceError("no default input device; input devices: %s" % _describe(inputs)) from None
    if spec.isdigit():
        matches = [info for info in inputs if info["index"] == int(spec)]
    else:
        exact = [info for info in inputs if info["name"].lower() == spec.lower()]
        matches = exact or [info for info in inputs if spec.lower() in info["name"].lower()]
    if not matches:
        raise SourceError("input device %r not found; input devices: %s" % (spec, _describe(inputs)))
    return matches[0]


def _describe(inputs: list[dict]) -> str:
    """Input devices on one line: 0 'pulse', 1 'default'."""
    return ", ".join("%d %r" % (info["index"], info["name"]) for info in inputs) or "none"


def _choose_format(pyaudio: Any, portaudio: Any, info: dict) -> tuple[int, int]:
    """(rate_hz, channels) to open: 16 kHz mono if supported, else the device's rate (and channels)."""
    rate_hz = int(info["defaultSampleRate"])
    for candidate_hz, channels in ((SAMPLE_RATE_HZ, 1), (rate_hz, 1)):
        if _supported(pyaudio, portaudio, info["index"], candidate_hz, channels):
            return candidate_hz, channels
    return rate_hz, int(info["maxInputChannels"])


def _supported(pyaudio: Any, portaudio: Any, index: int, rate_hz: int, channels: int) -> bool:
    """Whether the device accepts int16 capture at this rate and channel count."""
    try:
        with quiet_stderr():
            return bool(portaudio.is_format_supported(rate_hz, input_device=index, input_channels=channels, input_format=pyaudio.paInt16))
    except ValueError:
        return False


def _discard(samples: np.ndarray) -> None:
    """An on_audio that drops the audio (before start)."""


def _int16(data: bytes | bytearray) -> np.ndarray:
    """s16le bytes as a fresh int16 array."""
    return np.frombuffer(bytes(data), dtype="<i2").astype(np.int16)
