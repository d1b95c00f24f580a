"""The live daemon: capture thread -> ring buffer -> pipeline -> publishers; signals, reload, sd_notify."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import replace
from typing import Any

from serd.capture import make_source
from serd import __version__
from serd.config import Config, device_id, load_config, metrics_address, zmq_endpoint
from serd.errors import SerdError
from serd.events import Event, Status
from serd.model import WindowModel, load_model
from serd.pipeline import Pipeline
from serd.prometheus import DaemonCounters
from serd.publish import DeviceIdentity, Fanout, make_publishers
from serd.ringbuffer import RingBuffer
from serd.sdnotify import Notifier

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
LOOP_WAIT_S = 0.1
BACKPRESSURE_SLEEP_S = 0.002
SOURCE_RETRY_MAX_S = 30.0
STOP_EXTEND_USEC = 10_000_000
EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2


def identity(model: WindowModel) -> DeviceIdentity:
    """What Home Assistant discovery shows of the running model."""
    return DeviceIdentity(tuple(model.card.labels), model.card.name, model.card.version)


class Daemon:
    """Runs one source through the pipeline until a signal or the end of a finite source."""

    def __init__(self, config: Config, config_path: str | None = None, overrides: dict[str, dict[str, Any]] | None = None):
        self.config = config
        self._config_path = config_path
        self._overrides = overrides or {}
        self.notifier = Notifier()
        self.ring = RingBuffer(int(config.source.ring_s * SAMPLE_RATE_HZ))
        self.model: WindowModel = load_model(config.model.path)
        self.pipeline = Pipeline.from_config(self.ring, self.model, config, device_id(config))
        self.publishers = Fanout(make_publishers(config, identity=identity(self.model)))
        self.source = None
        self.web = None  # serd web in process, when [web] listen is set (serd.web.embedded.EmbeddedWeb)
        self.metrics = None  # Prometheus metrics, when [metrics] listen is set (serd.prometheus.MetricsExporter)
        self._source_reopened = 0
        self._exit_code: int | None = None
        self._reload_requested = False
        self._ready = False
        self._retry_at = 0.0
        self._retry_delay_s = 1.0
        self._last_status_s = 0.0
        self._last_ping = (0.0, -1)  # (monotonic time, ring end index) of the last watchdog ping

    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        self._install_signals()
        self._wait_for_subscribers()
        self._last_status_s = time.monotonic()
        self._publish([self._status("starting", "model %s" % self.model.card.name)])
        self._start_web()
        self._start_metrics()
        try:
            self._open_source()
            while self._exit_code is None:
                self.ring.wait_for(self.pipeline.consumed_index, LOOP_WAIT_S)
                self._step()
        finally:
            self._shutdown()
        return self._exit_code

    def request_stop(self, exit_code: int) -> None:
        """Ask the loop to stop (safe from a signal handler: it only sets a flag)."""
        if self._exit_code is None:
            self._exit_code = exit_code

    def request_reload(self) -> None:
        """Ask the loop to re-read the configuration (safe from a signal handler)."""
        self._reload_requested = True

    def _install_signals(self) -> None:
        """TERM stops (exit 0), INT stops (exit 2), HUP reloads; handlers only set flags."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop(EXIT_OK))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop(EXIT_INTERRUPTED))
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def _wait_for_subscribers(self) -> None:
        """A file or stdin source starts only once waiting subscribers have joined (bounded); a microphone never waits."""
        if self.config.source.source != "mic":
            self.publishers.wait_for_subscribers()

    def _start_web(self) -> None:
        """With [web] listen, serve the web view in process; if it cannot start, an error status and the daemon goes on."""
        if not self.config.web.listen:
            return
        try:
            from serd.web.embedded import EmbeddedWeb  # aiohttp is loaded only when configured

            web = EmbeddedWeb(self.config)
            web.start()
            self.web = web
        except Exception as exc:  # the web view is optional: no failure of it may stop the daemon
            log.error("web: %s", exc)
            self._publish([self._status("error", "web: %s" % exc)])

    def _start_metrics(self) -> None:
        """With [metrics] listen, serve Prometheus metrics; if that fails, an error status and the daemon goes on."""
        if not self.config.metrics.listen:
            return
        try:
            from serd.prometheus import MetricsExporter  # prometheus-client is loaded only when configured

            card = self.model.card
            exporter = MetricsExporter(*metrics_address(self.config.metrics.listen), self._counters,
                                       {"version": __version__, "model": card.name, "model_version": card.version})
            exporter.start()
            self.metrics = exporter
        except Exception as exc:  # metrics are optional: no failure of them may stop the daemon
            log.error("metrics: %s", exc)
            self._publish([self._status("error", str(exc) if str(exc).startswith("metrics") else "metrics: %s" % exc)])

    def _counters(self) -> DaemonCounters:
        """The daemon's own counters, for a metrics scrape (read from the server's thread)."""
        source = self.source
        return DaemonCounters(audio_s=self.ring.end_index / SAMPLE_RATE_HZ, overruns=source.overruns if source is not None else 0,
                              lost_samples=self.pipeline.frontend.lost_samples, dropped=self.publishers.dropped_counts(),
                              reconnects=dict(self.publishers.reconnect_counts(), source=self._source_reopened))

    def _step(self) -> None:
        """One turn of the loop: process new audio, then housekeeping."""
        self._publish(self.pipeline.process())
        if self.metrics is not None:
            self.metrics.observe_hops(self.pipeline)
        if not self._ready and self.pipeline.consumed_index > 0:
            self._ready = True
            self.notifier.ready()
            self._publish([self._status("running", "listening on %s" % self.source.name)])
        self._watchdog()
        self._periodic_status()
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        self._check_source()

    def _open_source(self) -> None:
        """Open the source at start; if it cannot be opened, say why in an error status (then stop, exit 1)."""
        try:
            self._start_source()
        except SerdError as exc:
            self._publish([self._status("error", "cannot open source: %s" % exc)])
            self._exit_code = EXIT_FAILURE
            raise

    def _start_source(self) -> None:
        """Open the configured source; a live source that fails is retried with backoff."""
        source = make_source(self.config.source)
        source.start(self.ring.write if source.live else self._write_with_backpressure)
        self.source = source
        log.info("source %s started", self.source.name)

    def _write_with_backpressure(self, samples) -> None:
        """For sources that can wait (fast file, stdin): never overwrite audio not yet processed."""
        while self._exit_code is None and self.ring.end_index + len(samples) - self.pipeline.frontend.released_index > self.ring.capacity_samples:
            time.sleep(BACKPRESSURE_SLEEP_S)
        self.ring.write(samples)

    def _check_source(self) -> None:
        """Handle a source that ended or failed."""
        if self.source is None:
            if time.monotonic() >= self._retry_at:
                self._retry_source()
            return
        if not self.source.done.is_set():
            return
        error = self.source.error
        if error is None and (not self.source.live or self.config.source.source.startswith("file:")):
            log.info("source %s ended", self.source.name)
            self._drain()
            self.request_stop(EXIT_OK)
            return
        message = str(error) if error is not None else "source ended"
        log.error("source %s failed: %s", self.source.name, message)
        self._publish([self._status("error", message)])
        self.source.stop()
        if self.config.source.source.startswith("file:") or self.config.source.source == "stdin":
            self._drain()
            self.request_stop(EXIT_FAILURE)
            return
        self.source = None
        self._retry_at = time.monotonic() + self._retry_delay_s
        log.info("retrying the microphone in %.0f s", self._retry_delay_s)
        self._retry_delay_s = min(self._retry_delay_s * 2, SOURCE_RETRY_MAX_S)

    def _retry_source(self) -> None:
        """Try to open the source again after a failure."""
        try:
            self._start_source()
            self._retry_delay_s = 1.0
            self._source_reopened += 1
            self._publish([self._status("running", "source %s reopened" % self.source.name)])
        except SerdError as exc:
            log.error("cannot reopen source: %s", exc)
            self._retry_at = time.monotonic() + self._retry_delay_s
            self._retry_delay_s = min(self._retry_delay_s * 2, SOURCE_RETRY_MAX_S)

    def _drain(self) -> None:
        """Process everything left in the ring and close open speech."""
        self._publish(self.pipeline.process())
        self._publish(self.pipeline.flush())

    def _watchdog(self) -> None:
        """Ping systemd's watchdog only while captured audio advances."""
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            return
        now_s, end_index = time.monotonic(), self.ring.end_index
        last_s, last_index = self._last_ping
        if now_s - last_s >= interval_s and end_index > last_index:
            self.notifier.watchdog()
            self._last_ping = (now_s, end_index)

    def _periodic_status(self) -> None:
        """A status event (and the systemd STATUS line) every status_interval_s."""
        now_s = time.monotonic()
        if now_s - self._last_status_s < self.config.daemon.status_interval_s:
            return
        self._last_status_s = now_s
        status = self._status("running" if self.source is not None else "error", "")
        self.notifier.status(
            "%s: %.0f s of audio, %d speech segments, emotion %s"
            % (self.source.name if self.source else "no source", status.audio_s, self.pipeline.frontend.segment_id, self.pipeline.smoother.label)
        )
        self._publish([status])

    def _status(self, state: str, message: str) -> Status:
        """A status event with the current counters."""
        return Status(
            device=device_id(self.config),
            stream_time_s=round(self.ring.end_index / SAMPLE_RATE_HZ, 4),
            wall_time_s=round(time.time(), 4),
            state=state,
            message=message,
            audio_s=round(self.ring.end_index / SAMPLE_RATE_HZ, 3),
            overruns=self.source.overruns if self.source is not None else 0,
            lost_samples=self.pipeline.frontend.lost_samples,
            dropped=self.publishers.dropped_counts(),
            speaker_speech_s=round(self.pipeline.speaker_speech_s, 1),
        )

    def _publish(self, events: list[Event]) -> None:
        """Hand events to every publisher (none of them blocks)."""
        for event in events:
            self.publishers.publish(event)
            if self.web is not None:
                self.web.offer(event)
            if self.metrics is not None:
                self.metrics.offer(event)

    def _reload(self) -> None:
        """Re-read the configuration and apply it; on any error keep the running one."""
        self.notifier.reloading()
        log.info("reloading configuration from %s", self._config_path or "defaults")
        try:
            new = load_config(self._config_path, self._overrides)
            self._apply(new)
        except SerdError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self._publish([self._status("error", "reload failed: %s" % exc)])
        except Exception as exc:  # a reload must never kill a running daemon; the old pipeline keeps serving
            log.error("reload failed, keeping the running configuration: %s: %s", type(exc).__name__, exc)
            self._publish([self._status("error", "reload failed: %s: %s" % (type(exc).__name__, exc))])
        self.notifier.ready()

    def _apply(self, new: Config) -> None:
        """Swap in what changed: model, pipeline settings, publishers, source."""
        old = self.config
        model = load_model(new.model.path) if new.model != old.model else self.model
        rebuild = (model, new.vad, new.smoothing, device_id(new)) != (self.model, old.vad, old.smoothing, device_id(old))
        if rebuild:
            self._drain()  # open speech ends under the running device id, on the running publishers
        if (new.zmq, new.mqtt, new.stdout, device_id(new)) != (old.zmq, old.mqtt, old.stdout, device_id(old)) or (
                new.mqtt.enabled and identity(model) != identity(self.model)):
            self._swap_publishers(new, old, model)
        logging.getLogger().setLevel(new.daemon.log_level.upper())
        if rebuild:
            self.pipeline = Pipeline.from_config(self.ring, model, new, device_id(new), self.pipeline.consumed_index)
        self.model, self.config = model, new
        if replace(new.source, ring_s=old.source.ring_s) != old.source:
            self._restart_source()
        log.info("configuration reloaded")
        self._publish([self._status("running", "configuration reloaded")])

    def _swap_publishers(self, new: Config, old: Config, model: WindowModel) -> None:
        """Keep the ZeroMQ socket when its endpoint stays (subscribers stay connected); close the other old
        publishers first (a tcp:// endpoint binds once), then open the new ones; if they cannot be opened,
        reopen the old ones and report the error."""
        kept_zmq = self.publishers.zmq_publisher(zmq_endpoint(new)) if new.zmq.enabled else None
        self.publishers.close(keep=kept_zmq)
        try:
            self.publishers = Fanout(make_publishers(new, kept_zmq, identity(model)))
        except SerdError:
            self.publishers = Fanout(make_publishers(old, kept_zmq, identity(self.model)))
            raise
        finally:
            self._wait_for_subscribers()

    def _restart_source(self) -> None:
        """Stop the current source and open the newly configured one."""
        if self.source is not None:
            self.source.stop()
        self.source = None
        self._retry_at = 0.0
        self._retry_delay_s = 1.0

    def _shutdown(self) -> None:
        """Stop capture, flush speech, say goodbye on every publisher."""
        self.notifier.stopping(STOP_EXTEND_USEC)
        if self.source is not None:
            self.source.stop()
        try:
            self._drain()
        except SerdError as exc:
            log.error("while draining: %s", exc)
        self._publish([self._status("stopping", "exit %d" % (self._exit_code or 0))])
        self.publishers.close()
        if self.web is not None:
            self.web.stop()
        if self.metrics is not None:
            self.metrics.stop()
        log.info("stopped")
