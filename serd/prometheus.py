"""Prometheus metrics of the running daemon, served over HTTP ([metrics] listen; the prometheus-client library).

Loaded only when [metrics] listen is set (the [metrics] extra). Counters the daemon already keeps
(audio, overruns, lost samples, drops, reconnects) are read at scrape time through a snapshot
callback; what only passes by (events, speech, per-hop processing time, the current probabilities)
is counted as it passes, from the daemon's thread.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable

from serd.errors import ConfigError, SerdError
from serd.events import EmotionChanged, EmotionState, Event, SILENCE_LABEL, SpeechEnded

log = logging.getLogger(__name__)

NAMESPACE = "serd"
HOP_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)  # per-hop processing time, in s
EXTRA_HINT = "Prometheus metrics need the [metrics] extra: pip install 'serd[metrics]' (prometheus-client)"


@dataclass(frozen=True)
class DaemonCounters:
    """What the daemon counts on its own, read at each scrape."""

    audio_s: float = 0.0
    overruns: int = 0
    lost_samples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    reconnects: dict[str, int] = field(default_factory=dict)  # per what reconnected: a publisher's name, "source"


class _SnapshotCollector:
    """A prometheus collector that turns a DaemonCounters snapshot into metric families at scrape time."""

    def __init__(self, snapshot: Callable[[], DaemonCounters]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable:
        """Metric families of the current counters."""
        from prometheus_client.core import CounterMetricFamily

        counters = self._snapshot()
        yield CounterMetricFamily("%s_audio_seconds" % NAMESPACE, "Seconds of audio read from the source", value=counters.audio_s)
        yield CounterMetricFamily("%s_ring_overruns" % NAMESPACE, "Times audio arrived faster than it was read",
                                  value=counters.overruns)
        yield CounterMetricFamily("%s_lost_samples" % NAMESPACE, "Samples lost to ring overruns", value=counters.lost_samples)
        dropped = CounterMetricFamily("%s_dropped_events" % NAMESPACE, "Events a publisher dropped", labels=["publisher"])
        for name, count in sorted(counters.dropped.items()):
            dropped.add_metric([name], count)
        yield dropped
        reconnects = CounterMetricFamily("%s_reconnects" % NAMESPACE, "Reconnections after a loss (MQTT broker, source)",
                                         labels=["what"])
        for name, count in sorted(counters.reconnects.items()):
            reconnects.add_metric([name], count)
        yield reconnects


class MetricsExporter:
    """The metrics of one daemon and the HTTP server that serves them at /metrics."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], DaemonCounters], build: dict[str, str]) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
        except ImportError:
            raise ConfigError(EXTRA_HINT) from None
        self.address = (host, port)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SnapshotCollector(snapshot))
        Info("%s_build" % NAMESPACE, "serd and model versions", registry=self.registry).info(build)
        self._events = Counter("%s_events" % NAMESPACE, "Events made, by type", ["type"], registry=self.registry)
        self._speech = Counter("%s_speech_seconds" % NAMESPACE, "Seconds of speech in ended segments", registry=self.registry)
        self._hops = Histogram("%s_hop_seconds" % NAMESPACE, "Processing time of one model hop (window, model, smoother)",
                               buckets=HOP_BUCKETS_S, registry=self.registry)
        self._probability = Gauge("%s_emotion_probability" % NAMESPACE, "Current smoothed probability of each label "
                                  "(0 during silence)", ["label"], registry=self.registry)
        self._labels_seen: set[str] = set()
        self._hops_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hops observed, by pipeline
        self._server = None
        self._thread = None

    def start(self) -> None:
        """Listen; SerdError with the system's reason when the address cannot be bound."""
        from prometheus_client import start_http_server

        host, port = self.address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise SerdError("metrics: cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc)) from None
        log.info("metrics: serving http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def offer(self, event: Event) -> None:
        """Count one event as it is published."""
        self._events.labels(event.type).inc()
        if isinstance(event, SpeechEnded):
            self._speech.inc(max(0.0, event.duration_s))
        elif isinstance(event, (EmotionChanged, EmotionState)):
            if event.label == SILENCE_LABEL:
                for label in self._labels_seen:  # silence has no probabilities: every label falls to 0
                    self._probability.labels(label).set(0.0)
            for label, probability in event.probabilities.items():
                self._labels_seen.add(label)
                self._probability.labels(label).set(probability)

    def observe_hops(self, pipeline) -> None:
        """Observe the hops a pipeline made since its last call (a new pipeline starts a new count; one each source)."""
        seen = self._hops_seen.get(pipeline, 0)
        new = pipeline.hops_total - seen
        self._hops_seen[pipeline] = pipeline.hops_total
        if new > 0:
            for seconds in list(pipeline.hop_times_s)[-new:]:
                self._hops.observe(seconds)
