"""The live daemon: its channels (capture thread -> ring buffer -> pipeline, one per source) on one processing
loop -> publishers; signals, reload, sd_notify."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from serd import __version__
from serd.channel import SAMPLE_RATE_HZ, Channel
from serd.config import ChannelConfig, Config, channels, load_config, metrics_address, zmq_endpoint
from serd.errors import SerdError
from serd.events import Event
from serd.model import WindowModel, load_model
from serd.prometheus import DaemonCounters
from serd.publish import DeviceIdentity, Fanout, make_publishers
from serd.sdnotify import Notifier

log = logging.getLogger(__name__)

LOOP_WAIT_S = 0.1
STOP_EXTEND_USEC = 10_000_000
EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2


def identity(model: WindowModel) -> DeviceIdentity:
    """What Home Assistant discovery shows of the running model."""
    return DeviceIdentity(tuple(model.card.labels), model.card.name, model.card.version)


class Daemon:
    """Runs its sources (one, or the [source.NAME] sections) through one processing loop until a signal, or until
    every source has ended (only files and stdin end)."""

    def __init__(self, config: Config, config_path: str | None = None, overrides: dict[str, dict[str, Any]] | None = None):
        self.config = config
        self._config_path = config_path
        self._overrides = overrides or {}
        self.notifier = Notifier()
        self.model: WindowModel = load_model(config.model.path)
        self._wake = threading.Event()  # set by every channel's capture when audio arrives
        self.channels = [self._channel(settings, self.model, config) for settings in channels(config)]
        self.publishers = Fanout(make_publishers(config, identity=identity(self.model)))
        self.web = None  # serd web in process, when [web] listen is set (serd.web.embedded.EmbeddedWeb)
        self.metrics = None  # Prometheus metrics, when [metrics] listen is set (serd.prometheus.MetricsExporter)
        self._exit_code: int | None = None
        self._reload_requested = False
        self._ready = False
        self._last_status_s = 0.0
        self._last_ping = (0.0, {})  # (monotonic time, ring end index by channel) of the last watchdog ping

    def _channel(self, settings: ChannelConfig, model: WindowModel, config: Config) -> Channel:
        """A channel whose status events report the publishers' drops and whose writers stop with the daemon."""
        return Channel(settings, model, config.smoothing, self._wake, lambda device: self.publishers.dropped_counts(device),
                       lambda: self._exit_code is not None)

    @property
    def several(self) -> bool:
        """Whether the sources are [source.NAME] sections (status messages then say what happened to each)."""
        return bool(self.config.sources)

    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        self._install_signals()
        self._wait_for_subscribers()
        self._last_status_s = time.monotonic()
        self._publish_status("starting", "model %s" % self.model.card.name)
        self._start_web()
        self._start_metrics()
        try:
            self._open_sources()
            while self._exit_code is None:
                self._wake.wait(LOOP_WAIT_S)
                self._wake.clear()
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
        """With a file or stdin source, audio is read only once waiting subscribers have joined (bounded); with
        microphones alone it never waits."""
        if any(channel.finite for channel in self.channels):
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
            self._publish_status("error", "web: %s" % exc)

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
            self._publish_status("error", str(exc) if str(exc).startswith("metrics") else "metrics: %s" % exc)

    def _counters(self) -> DaemonCounters:
        """The daemon's own counters, summed over its sources, for a metrics scrape (read from the server's thread)."""
        present = list(self.channels)
        return DaemonCounters(audio_s=sum(c.ring.end_index for c in present) / SAMPLE_RATE_HZ,
                              overruns=sum(c.source.overruns for c in present if c.source is not None),
                              lost_samples=sum(c.pipeline.frontend.lost_samples for c in present),
                              dropped=self.publishers.dropped_counts(),
                              reconnects=dict(self.publishers.reconnect_counts(), source=sum(c.reopened for c in present)))

    def _open_sources(self) -> None:
        """Open every source at start; if one cannot be opened, say why in its error status, then stop (exit 1), but
        among [source.NAME] sections a microphone is retried while the other sources go on."""
        for channel in self.channels:
            try:
                channel.open()
            except SerdError as exc:
                self._publish([channel.status("error", "cannot open source: %s" % exc)])
                if self.several and not channel.finite:
                    channel.retry_later()
                    continue
                self._exit_code = EXIT_FAILURE
                raise

    def _step(self) -> None:
        """One turn of the loop: process new audio of every source, then housekeeping."""
        for channel in self.channels:
            self._publish(channel.process())
            if self.metrics is not None:
                self.metrics.observe_hops(channel.pipeline)
        if not self._ready and any(channel.ready for channel in self.channels):
            self._ready = True
            self.notifier.ready()
        self._watchdog()
        self._periodic_status()
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        self._check_sources()

    def _check_sources(self) -> None:
        """Sources that ended or failed; a microphone is retried, the others go on; stop once every source has ended."""
        listening = [channel for channel in self.channels if not channel.finished]
        for channel in listening:
            self._publish(channel.poll_source())
        if all(channel.finished for channel in self.channels):
            self.request_stop(EXIT_FAILURE if any(channel.failed for channel in self.channels) else EXIT_OK)
        elif self.several:
            for channel in [channel for channel in listening if channel.finished]:
                self._publish([channel.status("stopping", "source %s; the other sources go on"
                                              % ("failed" if channel.failed else "ended"))])

    def _watchdog(self) -> None:
        """Ping systemd's watchdog only while captured audio advances, of any source."""
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            return
        now_s, ends = time.monotonic(), {id(channel): channel.ring.end_index for channel in self.channels}
        last_s, last_ends = self._last_ping
        if now_s - last_s >= interval_s and any(end > last_ends.get(key, -1) for key, end in ends.items()):
            self.notifier.watchdog()
            self._last_ping = (now_s, ends)

    def _periodic_status(self) -> None:
        """A status event of every source still listening (and the systemd STATUS line) every status_interval_s."""
        now_s = time.monotonic()
        if now_s - self._last_status_s < self.config.daemon.status_interval_s:
            return
        self._last_status_s = now_s
        lines = []
        for channel in self.channels:
            if channel.finished:
                continue
            status = channel.status("running" if channel.source is not None else "error", "")
            line = "%s: %.0f s of audio, %d speech segments, emotion %s" % (
                channel.source.name if channel.source else "no source", status.audio_s,
                channel.pipeline.frontend.segment_id, channel.pipeline.smoother.label)
            lines.append("%s %s" % (channel.device, line) if self.several else line)
            self._publish([status])
        self.notifier.status("; ".join(lines))

    def _publish_status(self, state: str, message: str) -> None:
        """The same status of every source, each under its own device."""
        self._publish([channel.status(state, message) for channel in self.channels])

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
            self._publish_status("error", "reload failed: %s" % exc)
        except Exception as exc:  # a reload must never kill a running daemon; the old pipeline keeps serving
            log.error("reload failed, keeping the running configuration: %s: %s", type(exc).__name__, exc)
            self._publish_status("error", "reload failed: %s: %s" % (type(exc).__name__, exc))
        self.notifier.ready()

    def _apply(self, new: Config) -> None:
        """Swap in what changed: model, each source's pipeline and source, publishers; sources added or removed."""
        old = self.config
        model = load_model(new.model.path) if new.model != old.model else self.model
        wanted = {settings.name: settings for settings in channels(new)}
        running = {channel.settings.name: channel for channel in self.channels}
        rebuilt = {name for name, channel in running.items()
                   if name in wanted and _needs_rebuild(channel.settings, wanted[name], model is not self.model or new.smoothing != old.smoothing)}
        added = {name: self._channel(settings, model, new) for name, settings in wanted.items() if name not in running}
        for name in rebuilt:
            self._publish(running[name].drain())  # open speech ends under the running device id, on the running publishers
        removed = [self._remove(running[name]) for name in running if name not in wanted]  # said on their own publishers
        if _publishing(new) != _publishing(old) or (new.mqtt.enabled and identity(model) != identity(self.model)):
            try:
                self._swap_publishers(new, old, model)
            except SerdError:
                for channel in removed:  # the running configuration stays: so do its sources
                    channel.restart()
                raise
        logging.getLogger().setLevel(new.daemon.log_level.upper())
        outcomes = {name: "added" for name in added}  # their sources open at the next check
        for name, channel in running.items():
            if name in wanted:
                outcomes[name] = _outcome(name in rebuilt, channel.reconfigure(wanted[name], model, new.smoothing, name in rebuilt))
        self.channels = [running.get(name) or added[name] for name in wanted]
        self.model, self.config = model, new
        log.info("configuration reloaded")
        for channel in self.channels:
            suffix = ": %s" % outcomes[channel.settings.name] if self.several else ""
            self._publish([channel.status("running", "configuration reloaded" + suffix)])

    def _remove(self, channel: Channel) -> Channel:
        """A source the reloaded configuration no longer has: stop it, flush its speech, say goodbye."""
        channel.stop()
        self._publish(channel.drain() + [channel.status("stopping", "source removed by a reload")])
        log.info("source %s removed", channel.device)
        return channel

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

    def _shutdown(self) -> None:
        """Stop capture, flush speech, say goodbye on every publisher."""
        self.notifier.stopping(STOP_EXTEND_USEC)
        for channel in self.channels:
            channel.stop()
        for channel in self.channels:
            try:
                self._publish(channel.drain())
            except SerdError as exc:
                log.error("while draining: %s", exc)
        self._publish_status("stopping", "exit %d" % (self._exit_code or 0))
        self.publishers.close()
        if self.web is not None:
            self.web.stop()
        if self.metrics is not None:
            self.metrics.stop()
        log.info("stopped")


def _needs_rebuild(old: ChannelConfig, new: ChannelConfig, shared_changed: bool) -> bool:
    """A source's pipeline is rebuilt when the model or smoothing changed, or its VAD, device id or voice memory."""
    return shared_changed or (old.vad, old.device_id, old.speaker_memory_s) != (new.vad, new.device_id, new.speaker_memory_s)


def _publishing(config: Config) -> tuple:
    """What the publishers are made of: their sections and the devices they announce."""
    return config.zmq, config.mqtt, config.stdout, tuple(settings.device_id for settings in channels(config))


def _outcome(rebuilt: bool, source: str) -> str:
    """What a reload did to a source (Channel.reconfigure's answer), for its status message."""
    done = [what for what, did in (("pipeline rebuilt", rebuilt), ("source reopened", source == "reopened"),
                                   ("source kept, not replayed", source == "kept")) if did]
    return ", ".join(done) or "unchanged"
