"""What serd web does with an uploaded file: serd analyze's result plus a timeline, at most N at once. No framework imports."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from serd import __version__
from serd.analyze import analyze_file
from serd.audio import DECODER_FORMATS, SNIFF_BYTES, WAV_FORMATS, load_audio, sniff_format
from serd.config import Config
from serd.errors import AudioError, SerdError
from serd.model import WindowModel, load_model
from serd.web.display import display_views

BYTES_PER_MB = 1_000_000
T = TypeVar("T")


class RequestError(SerdError):
    """A request serd web refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BadAudio(RequestError):
    """An upload that is audio but cannot be decoded (400), or is not audio at all (415)."""


class Gate:
    """At most `limit` holders at once; entering never waits."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self.running = 0

    def try_enter(self) -> bool:
        """Take a place if one is free."""
        with self._lock:
            if self.running >= self.limit:
                return False
            self.running += 1
            return True

    def leave(self) -> None:
        """Give a place back."""
        with self._lock:
            self.running -= 1


class ModelPool:
    """One loaded model per analysis that runs at once (an interpreter is not shared between threads)."""

    def __init__(self, model_path: str | None):
        self._path = model_path
        self._idle: queue.SimpleQueue[WindowModel] = queue.SimpleQueue()
        self.first = load_model(model_path)  # at start, so that a bad model stops serd web before it listens
        self._idle.put(self.first)

    def take(self) -> WindowModel:
        """An idle model, or a newly loaded one."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return load_model(self._path)

    def give_back(self, model: WindowModel) -> None:
        """Return a model for the next analysis."""
        self._idle.put(model)


class Analyzer:
    """serd analyze for one uploaded file at a time per place of the gate."""

    def __init__(self, config: Config, model_path: str | None):
        self.config = config
        self.models = ModelPool(model_path or config.model.path or None)
        self.gate = Gate(config.web.max_concurrent)
        self.max_upload_bytes = config.web.max_upload_mb * BYTES_PER_MB

    def health(self) -> dict:
        """What GET /api/health says."""
        card = self.models.first.card
        return {"status": "ok", "version": __version__, "model": {"name": card.name, "version": card.version, "labels": list(card.labels)},
                "analyses_running": self.gate.running, "max_concurrent": self.gate.limit, "max_upload_mb": self.config.web.max_upload_mb}

    def busy_message(self) -> str:
        """The 503 reason."""
        return "busy: %d analyses already running ([web] max_concurrent = %d); try again shortly" % (self.gate.running, self.gate.limit)

    def too_large_message(self, size_bytes: int | None = None) -> str:
        """The 413 reason."""
        size = "" if size_bytes is None else " (%.1f MB)" % (size_bytes / BYTES_PER_MB)
        return "upload too large%s: over [web] max_upload_mb = %d" % (size, self.config.web.max_upload_mb)

    def analyze(self, path: Path, name: str, display: bool) -> dict:
        """The object `serd analyze --json` prints for the file (called name), its per-window timeline, and with
        display the waveform and log-mel views; BadAudio says why a file cannot be analysed, naming it as name."""
        model = self.models.take()
        try:
            result = self._decoded(path, name, lambda: analyze_file(path, model, self.config.vad,
                                                                    min_confidence=self.config.smoothing.min_confidence))
            answer = {"file": name, **result.to_dict(), "timeline": result.timeline(model.labels)}
            if display:
                samples = self._decoded(path, name, lambda: load_audio(path, model.card.sample_rate_hz))
                answer["display"] = display_views(samples, model.card.features)
            return answer
        finally:
            self.models.give_back(model)

    @staticmethod
    def _decoded(path: Path, name: str, decode: Callable[[], T]) -> T:
        """decode(), with an AudioError's one-line reason naming the upload rather than the temporary file."""
        try:
            return decode()
        except AudioError as exc:
            message = str(exc).replace(str(path), name)
            raise BadAudio(400 if looks_like_audio(path) else 415, message) from None


def looks_like_audio(path: Path) -> bool:
    """Whether serd would try to decode the file: audio by its content, or by a known audio extension."""
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    return sniff_format(head) is not None or path.suffix.lower() in WAV_FORMATS + DECODER_FORMATS
