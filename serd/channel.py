"""One source of the daemon: its ring buffer, capture source, pipeline and counters, opened, retried and drained together.

The capture source writes into the ring from its own thread and sets the daemon's shared wake-up
event; everything else here runs on the daemon's one processing thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from serd.capture import Source, make_source
from serd.config import ChannelConfig, SmoothingConfig
from serd.errors import SerdError
from serd.events import Event, Status
from serd.model import WindowModel
from serd.pipeline import Pipeline
from serd.ringbuffer import RingBuffer

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
BACKPRESSURE_SLEEP_S = 0.002
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class Channel:
    """A source and the pipeline that reads it; finished once a finite source (file, stdin) has ended.

    dropped(device) gives the publishers' drop counts a status event of this device reports; stopping()
    tells a waiting writer (back-pressure) that the daemon is going down.
    """

    def __init__(self, settings: ChannelConfig, model: WindowModel, smoothing: SmoothingConfig, wake: threading.Event,
                 dropped: Callable[[str], dict[str, int]], stopping: Callable[[], bool]):
        self.settings = settings
        self.ring = RingBuffer(int(settings.source.ring_s * SAMPLE_RATE_HZ))
        self.pipeline = self._new_pipeline(model, smoothing)
        self.source: Source | None = None
        self.reopened = 0  # times the source was opened again (after a failure, or a reload that changed it)
        self._opened_before = False
        self.ready = False  # the pipeline has processed audio
        self.finished = False  # a finite source ended (or failed): nothing more will come
        self.failed = False  # ... and it ended with an error
        self._wake = wake
        self._dropped = dropped
        self._stopping = stopping
        self._retry_at_s = 0.0
        self._retry_delay_s = RETRY_FIRST_S

    @property
    def device(self) -> str:
        """The device id its events carry."""
        return self.settings.device_id

    @property
    def finite(self) -> bool:
        """A file or stdin source: it ends, and a failure of it is not retried."""
        return self.settings.source.source != "mic"

    @property
    def source_name(self) -> str:
        """The open source's name, or the configured one."""
        return self.source.name if self.source is not None else self.settings.source.source

    def _new_pipeline(self, model: WindowModel, smoothing: SmoothingConfig, start_index: int | None = None,
                      last_segment_id: int = 0) -> Pipeline:
        """A pipeline on this channel's ring with its VAD, voice estimate and device id."""
        settings = self.settings
        return Pipeline(self.ring, model, settings.vad, smoothing, settings.device_id, start_index,
                        speaker_memory_s=settings.speaker_memory_s, last_segment_id=last_segment_id)

    def open(self) -> None:
        """Open and start the source; SerdError if it cannot be opened."""
        source = make_source(self.settings.source)
        source.start(self._write if source.live else self._write_with_backpressure)
        self.source = source
        self._opened_before = True
        log.info("source %s started", source.name)

    def _write(self, samples: np.ndarray) -> None:
        """Capture thread: append to the ring (never waits) and wake the processing loop."""
        self.ring.write(samples)
        self._wake.set()

    def _write_with_backpressure(self, samples: np.ndarray) -> None:
        """For sources that can wait (fast file, stdin): never overwrite audio not yet processed."""
        while not self._stopping() and self.ring.end_index + len(samples) - self.pipeline.frontend.released_index > self.ring.capacity_samples:
            time.sleep(BACKPRESSURE_SLEEP_S)
        self._write(samples)

    def process(self) -> list[Event]:
        """Events of the audio that arrived since the last call; the first time audio was processed, a running status."""
        events = self.pipeline.process()
        if not self.ready and self.pipeline.consumed_index > 0:
            self.ready = True
            events.append(self.status("running", "listening on %s" % self.source_name))
        return events

    def drain(self) -> list[Event]:
        """Process everything left in the ring and close open speech."""
        return self.pipeline.process() + self.pipeline.flush()

    def poll_source(self) -> list[Event]:
        """Handle a source that ended or failed, and the retry of a failed microphone; the events that caused."""
        if self.finished:
            return []
        if self.source is None:
            return self._retry() if time.monotonic() >= self._retry_at_s else []
        if not self.source.done.is_set():
            return []
        error = self.source.error
        if error is None and (not self.source.live or self.settings.source.source.startswith("file:")):
            log.info("source %s ended", self.source.name)
            self.finished = True
            return self.drain()
        message = str(error) if error is not None else "source ended"
        log.error("source %s failed: %s", self.source.name, message)
        events = [self.status("error", message)]
        self.source.stop()
        if self.finite:
            self.finished = self.failed = True
            return events + self.drain()
        self.source = None
        self.retry_later()
        return events

    def retry_later(self) -> None:
        """A microphone that failed (or could not be opened): try it again after the current delay, doubled each time."""
        self._schedule_retry()
        log.info("retrying the microphone in %.0f s", self._retry_delay_s)
        self._retry_delay_s = min(self._retry_delay_s * 2, RETRY_MAX_S)

    def _schedule_retry(self) -> None:
        """The next attempt to open the source, after the current delay."""
        self._retry_at_s = time.monotonic() + self._retry_delay_s

    def _retry(self) -> list[Event]:
        """Try to open the source again after a failure or a reload that changed it (or first, when a reload added it)."""
        again = self._opened_before
        try:
            self.open()
        except SerdError as exc:
            log.error("cannot reopen source: %s", exc)
            self._schedule_retry()
            self._retry_delay_s = min(self._retry_delay_s * 2, RETRY_MAX_S)
            return []
        self._retry_delay_s = RETRY_FIRST_S
        self.reopened += again
        return [self.status("running", "source %s %s" % (self.source_name, "reopened" if again else "opened"))]

    def reconfigure(self, settings: ChannelConfig, model: WindowModel, smoothing: SmoothingConfig, rebuild: bool) -> str:
        """Take reloaded settings: a new pipeline (from where the old one stopped, numbering segments after it) when
        rebuild; the source is reopened (at the next poll) when its settings changed, the ring's size aside, except a
        file or stdin source that stays the same one: reopening would play a file again from its start, so it goes on
        as it was. Returns what happened to the source: "reopened", "kept" (changed settings not applied) or ""."""
        old = self.settings.source
        changed = replace(settings.source, ring_s=old.ring_s) != old
        kept = changed and self.finite and settings.source.source == old.source
        self.settings = replace(settings, source=old) if kept else settings
        if rebuild:
            self.pipeline = self._new_pipeline(model, smoothing, self.pipeline.consumed_index, self.pipeline.frontend.segment_id)
        if kept:
            log.warning("source %s: a reload does not reopen a file or stdin source (it would replay it); its new "
                        "[source] settings apply at the next start", self.source_name)
            return "kept"
        if changed:
            self.restart()
            return "reopened"
        return ""

    def restart(self) -> None:
        """Stop the source; it is opened again at the next poll."""
        self.stop()
        self.source = None
        self.finished = self.failed = False
        self._retry_at_s = 0.0
        self._retry_delay_s = RETRY_FIRST_S

    def stop(self) -> None:
        """Stop capture (the ring and pipeline stay for a last drain)."""
        if self.source is not None:
            self.source.stop()

    def status(self, state: str, message: str) -> Status:
        """A status event of this device with its counters: audio_s counts what the source delivered, stream_time_s
        is where the events stand (no later event of this device has an earlier stream time)."""
        audio_s = self.ring.end_index / SAMPLE_RATE_HZ
        return Status(
            device=self.device,
            stream_time_s=round(min(self.ring.end_index, self.pipeline.frontend.settled_index) / SAMPLE_RATE_HZ, 4),
            wall_time_s=round(time.time(), 4),
            state=state,
            message=message,
            audio_s=round(audio_s, 3),
            overruns=self.source.overruns if self.source is not None else 0,
            lost_samples=self.pipeline.frontend.lost_samples,
            dropped=self._dropped(self.device),
            speaker_speech_s=round(self.pipeline.speaker_speech_s, 1),
        )
