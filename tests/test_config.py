"""Configuration: defaults, INI parsing, validation errors that name the key, overrides, round trips."""

import configparser
import dataclasses
import os
import socket
from pathlib import Path

import pytest

from serd.config import (
    RULES,
    SECTIONS,
    DEFAULT_MIN_CONFIDENCE,
    ChannelConfig,
    ChannelKeys,
    Config,
    MqttConfig,
    SourceConfig,
    VadConfig,
    channels,
    default_zmq_endpoint,
    device_id,
    load_config,
    referenced_files,
    runtime_dir,
    to_ini,
    zmq_endpoint,
)
from serd.errors import ConfigError

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "systemd" / "serd.conf"

# One value a rule rejects, per (section, key) in RULES.
BAD_VALUES = {
    ("vad", "aggressiveness"): "4",
    ("vad", "frame_ms"): "25",
    ("vad", "min_speech_ms"): "0",
    ("vad", "hangover_ms"): "-30",
    ("vad", "pre_roll_ms"): "-1",
    ("vad", "gate"): "energy",
    ("vad", "min_snr_db"): "60.5",
    ("source", "chunk_ms"): "4",
    ("source", "ring_s"): "601",
    ("smoothing", "windows"): "0",
    ("smoothing", "hysteresis"): "1.0",
    ("smoothing", "min_dwell_ms"): "-1",
    ("smoothing", "min_confidence"): "nan",
    ("smoothing", "state_interval_ms"): "0",
    ("zmq", "high_water_mark"): "0",
    ("zmq", "connect_wait_ms"): "-1",
    ("mqtt", "port"): "65536",
    ("mqtt", "qos"): "3",
    ("mqtt", "keepalive_s"): "4",
    ("mqtt", "reconnect_max_s"): "0",
    ("mqtt", "discovery_prefix"): "home/+/assistant",
    ("metrics", "listen"): "localhost:99999",
    ("model", "speaker_memory_s"): "-1",
    ("daemon", "status_interval_s"): "0",
    ("daemon", "log_level"): "verbose",
    ("web", "max_upload_mb"): "0",
    ("web", "max_concurrent"): "0",
}

# A value of the wrong type, per field type.
WRONG_TYPE = {int: "12.5", float: "fast", bool: "maybe"}


def write(tmp_path: Path, text: str) -> Path:
    """An INI file in tmp_path."""
    path = tmp_path / "serd.conf"
    path.write_text(text, encoding="utf-8")
    return path


def all_fields():
    """(section, field) for every key of every section."""
    return [(name, f) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def test_defaults_without_a_file():
    config = load_config()
    assert config == Config()
    assert config.source.source == "mic"
    assert config.vad.frame_ms == 30
    assert config.zmq.enabled is True
    assert config.mqtt.enabled is False
    assert config.daemon.log_level == "info"


def test_every_field_is_documented():
    for section, f in all_fields():
        assert f.metadata.get("doc"), "[%s] %s has no doc" % (section, f.name)


def test_ini_values_are_typed(tmp_path):
    path = write(
        tmp_path,
        "# comment\n[source]\nsource = file:/tmp/a b.wav\nrealtime = yes\nchunk_ms =  20 \nring_s = 12.5\n"
        "[mqtt]\nenabled = on\nport = 8883\nusername = alice\n[model]\npath = %(x)s.tflite\n",
    )
    config = load_config(path)
    assert config.source == SourceConfig(source="file:/tmp/a b.wav", realtime=True, chunk_ms=20, ring_s=12.5)
    assert config.mqtt == MqttConfig(enabled=True, port=8883, username="alice")
    assert config.model.path == "%(x)s.tflite"
    assert config.vad == VadConfig()


def test_keys_are_case_insensitive_sections_are_not(tmp_path):
    assert load_config(write(tmp_path, "[vad]\nFrame_MS = 10\n")).vad.frame_ms == 10
    with pytest.raises(ConfigError, match=r"unknown section \[VAD\]"):
        load_config(write(tmp_path, "[VAD]\nframe_ms = 10\n"))


@pytest.mark.parametrize(("section", "key"), sorted(BAD_VALUES))
def test_out_of_range_value_names_section_and_key(tmp_path, section, key):
    path = write(tmp_path, "[%s]\n%s = %s\n" % (section, key, BAD_VALUES[(section, key)]))
    with pytest.raises(ConfigError, match=r"^\[%s\] %s: " % (section, key)):
        load_config(path)


def test_a_misspelt_gate_is_refused_naming_every_gate(tmp_path):
    path = write(tmp_path, "[vad]\ngate = silero_talker\n")
    with pytest.raises(ConfigError, match=r"^\[vad\] gate: 'silero_talker' must be webrtc, silero or silero-talker$"):
        load_config(path)


def test_every_rule_has_a_bad_value():
    assert {(section, key) for section, key, _, _ in RULES} == set(BAD_VALUES)


@pytest.mark.parametrize(
    ("section", "key", "kind"),
    [(s, f.name, type(f.default)) for s, f in all_fields() if type(f.default) in WRONG_TYPE],
)
def test_wrong_type_names_section_and_key(tmp_path, section, key, kind):
    path = write(tmp_path, "[%s]\n%s = %s\n" % (section, key, WRONG_TYPE[kind]))
    with pytest.raises(ConfigError, match=r"^\[%s\] %s: '%s' is not a valid %s$" % (section, key, WRONG_TYPE[kind], kind.__name__)):
        load_config(path)


@pytest.mark.parametrize("value", ["mike", "file:", "", "tcp://x"])
def test_bad_source_form(value):
    with pytest.raises(ConfigError, match=r"^\[source\] source: "):
        load_config(overrides={"source": {"source": value}})


@pytest.mark.parametrize("value", ["stdin", "mic", "file:x.wav"])
def test_good_source_forms(value):
    assert load_config(overrides={"source": {"source": value}}).source.source == value


def test_bad_zmq_endpoint():
    with pytest.raises(ConfigError, match=r"^\[zmq\] endpoint: 'inproc://x'"):
        load_config(overrides={"zmq": {"endpoint": "inproc://x"}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("vad", "aggressiveness", "0"), ("vad", "aggressiveness", "3"), ("source", "chunk_ms", "5"),
     ("source", "chunk_ms", "1000"), ("source", "ring_s", "2"), ("mqtt", "port", "65535"),
     ("smoothing", "hysteresis", "0"), ("smoothing", "min_dwell_ms", "0"), ("vad", "pre_roll_ms", "0"),
     ("smoothing", "min_confidence", "0"), ("smoothing", "min_confidence", "0.99"), ("vad", "gate", "silero"),
     ("vad", "gate", "silero-talker"), ("vad", "min_snr_db", "0"), ("vad", "min_snr_db", "60")],
)
def test_boundary_values_accepted(section, key, value):
    config = load_config(overrides={section: {key: value}})
    assert getattr(getattr(config, section), key) == type(getattr(SECTIONS[section](), key))(value)


def test_unknown_key_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"^\[vad\] agressiveness: unknown key$"):
        load_config(write(tmp_path, "[vad]\nagressiveness = 2\n"))


def test_unknown_section_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown section \[speaker\]$"):
        load_config(write(tmp_path, "[vad]\nframe_ms = 20\n[speaker]\nname = x\n"))
    with pytest.raises(ConfigError, match=r"unknown section \[DEFAULT\]"):
        load_config(write(tmp_path, "[DEFAULT]\nframe_ms = 20\n"))


def test_unknown_override_rejected():
    with pytest.raises(ConfigError, match=r"^unknown section \[nope\]$"):
        load_config(overrides={"nope": {"x": 1}})
    with pytest.raises(ConfigError, match=r"^\[mqtt\] hostname: unknown key$"):
        load_config(overrides={"mqtt": {"hostname": "x"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), ("YES", True), ("true", True), ("On", True), ("1", True),
     ("no", False), ("False", False), ("off", False), ("0", False)],
)
def test_booleans(tmp_path, text, expected):
    assert load_config(write(tmp_path, "[stdout]\nenabled = %s\n" % text)).stdout.enabled is expected


def test_typed_overrides_and_bool_is_not_an_int():
    config = load_config(overrides={"vad": {"frame_ms": 20}, "stdout": {"enabled": True}, "source": {"ring_s": 5}})
    assert (config.vad.frame_ms, config.stdout.enabled, config.source.ring_s) == (20, True, 5.0)
    with pytest.raises(ConfigError, match=r"^\[vad\] frame_ms: 'True' is not a valid int$"):
        load_config(overrides={"vad": {"frame_ms": True}})


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "[vad]\nframe_ms = 10\naggressiveness = 1\n[stdout]\nenabled = no\n")
    config = load_config(path, overrides={"vad": {"frame_ms": "20"}, "stdout": {"enabled": "yes"}})
    assert (config.vad.frame_ms, config.vad.aggressiveness, config.stdout.enabled) == (20, 1, True)


def test_overrides_are_validated_too(tmp_path):
    path = write(tmp_path, "[vad]\nframe_ms = 10\n")
    with pytest.raises(ConfigError, match=r"^\[vad\] frame_ms: 15 must be 10, 20 or 30$"):
        load_config(path, overrides={"vad": {"frame_ms": "15"}})


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.conf"
    with pytest.raises(ConfigError, match=r"missing\.conf: cannot read: No such file or directory"):
        load_config(missing)
    with pytest.raises(ConfigError, match=r"cannot read: Is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"serd\.conf: not a valid INI file: File contains no section headers"):
        load_config(write(tmp_path, "frame_ms = 10\n"))
    with pytest.raises(ConfigError, match=r"serd\.conf: not a valid INI file: .*'frame_ms'.*already exists"):
        load_config(write(tmp_path, "[vad]\nframe_ms = 10\nframe_ms = 20\n"))
    latin1 = tmp_path / "latin1.conf"
    latin1.write_bytes(b"[daemon]\ndevice_id = K\xfcche\n")
    with pytest.raises(ConfigError, match=r"latin1\.conf: not a valid INI file"):
        load_config(latin1)


def test_to_ini_round_trips(tmp_path):
    changed = load_config(overrides={
        "source": {"source": "file:/data/a b.flac", "device": "USB Audio #2", "realtime": "yes", "ring_s": "7.25"},
        "vad": {"frame_ms": "20", "aggressiveness": "3"},
        "model": {"path": "/opt/models/m 1.tflite"},
        "smoothing": {"hysteresis": "0.05", "min_confidence": "0.4"},
        "zmq": {"enabled": "no", "endpoint": "tcp://127.0.0.1:5599"},
        "mqtt": {"enabled": "yes", "host": "broker.lan", "tls": "yes", "password_file": "/run/credentials/serd.service/mqtt-password"},
        "stdout": {"enabled": "yes"},
        "daemon": {"device_id": "kitchen", "log_level": "debug", "status_interval_s": "2.5"},
    })
    assert changed != Config()
    text = to_ini(changed)
    assert load_config(write(tmp_path, text)) == changed
    assert load_config(write(tmp_path, to_ini(Config()))) == Config()
    assert "[mqtt]\nenabled = yes\n" in text


def test_example_config_lists_every_key_with_its_doc():
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read(EXAMPLE_CONFIG, encoding="utf-8")
    expected = {(s, f.name) for s, f in all_fields()}
    found = {(s, key) for s in parser.sections() for key in parser[s]}
    assert found == expected
    assert parser.sections() == list(SECTIONS)
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    for section, f in all_fields():
        index = next(i for i, line in enumerate(lines) if line.split("=")[0].strip() == f.name
                     and _section_of(lines, i) == section)
        assert lines[index - 1] == "# " + f.metadata["doc"], "[%s] %s" % (section, f.name)


def _section_of(lines: list[str], index: int) -> str:
    """The [section] a line belongs to."""
    return next(line.strip("[]") for line in reversed(lines[:index]) if line.startswith("["))


def test_example_config_holds_the_defaults():
    assert load_config(EXAMPLE_CONFIG) == Config()


def test_example_config_documents_credentials():
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert "#   password_file = /run/credentials/serd.service/mqtt-password" in text
    assert "#   key_file = /run/credentials/serd.service/mqtt-key" in text


def test_runtime_dir_and_default_endpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/serd:/run/other")
    assert runtime_dir() == Path("/run/serd")
    assert default_zmq_endpoint() == "ipc:///run/serd/events"
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert zmq_endpoint(Config()) == "ipc://%s" % (tmp_path / "serd" / "events")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir() == Path("/tmp") / ("serd-%d" % os.getuid())
    configured = load_config(overrides={"zmq": {"endpoint": "tcp://127.0.0.1:5556"}})
    assert zmq_endpoint(configured) == "tcp://127.0.0.1:5556"


def test_device_id():
    assert device_id(Config()) == socket.gethostname()
    assert device_id(load_config(overrides={"daemon": {"device_id": "kitchen"}})) == "kitchen"


@pytest.mark.parametrize("value", ["-0.01", "1.0", "nan"])
def test_min_confidence_outside_zero_to_one_is_refused(value):
    with pytest.raises(ConfigError, match=r"^\[smoothing\] min_confidence: .* must be in \[0, 1\)$"):
        load_config(overrides={"smoothing": {"min_confidence": value}})


@pytest.mark.parametrize("value", ["-0.5", "60.5", "nan", "inf"])
def test_min_snr_db_outside_zero_to_sixty_is_refused(value):
    with pytest.raises(ConfigError, match=r"^\[vad\] min_snr_db: .* must be 0 to 60$"):
        load_config(overrides={"vad": {"min_snr_db": value}})


def test_min_confidence_defaults_to_the_named_constant():
    assert load_config().smoothing.min_confidence == DEFAULT_MIN_CONFIDENCE


def test_source_sections_inherit_and_override(tmp_path):
    config = load_config(write(tmp_path, "[source]\nchunk_ms = 50\n[vad]\nhangover_ms = 400\n[model]\nspeaker_memory_s = 60\n"
                                         "[source.cabin]\ndevice = serd_a\naggressiveness = 3\n"
                                         "[source.rear]\nsource = file:/data/rear.flac\ndevice_id = car-rear\nspeaker_memory_s = 0\n"))
    cabin, rear = config.sources
    assert (cabin.name, cabin.device_id, rear.name, rear.device_id) == ("cabin", "cabin", "rear", "car-rear")
    assert cabin.source == SourceConfig(device="serd_a", chunk_ms=50) and rear.source.source == "file:/data/rear.flac"
    assert cabin.vad == VadConfig(aggressiveness=3, hangover_ms=400) and rear.vad == VadConfig(hangover_ms=400)
    assert (cabin.speaker_memory_s, rear.speaker_memory_s) == (60.0, 0.0)
    assert channels(config) == config.sources
    assert referenced_files(config) == [("[source.rear] source", "/data/rear.flac")]


def test_without_source_sections_the_one_source_is_source_itself():
    config = load_config(overrides={"source": {"device": "USB"}, "daemon": {"device_id": "kitchen"}, "vad": {"frame_ms": "20"}})
    assert config.sources == ()
    assert channels(config) == (ChannelConfig("", "kitchen", config.source, config.vad, config.model.speaker_memory_s),)


def test_a_source_override_is_the_only_source(tmp_path):
    path = write(tmp_path, "[source.cabin]\ndevice = serd_a\n[source.rear]\ndevice = serd_b\n")
    assert [c.name for c in load_config(path).sources] == ["cabin", "rear"]
    assert load_config(path, {"source": {"source": "stdin"}}).sources == ()
    assert [c.source.device for c in load_config(path, {"source": {"device": "x"}}).sources] == ["serd_a", "serd_b"]


@pytest.mark.parametrize("text, message", [
    ("[source.a b]\n", r"^\[source\.a b\]: the name after 'source\.' must be letters, digits, - or _$"),
    ("[source.]\n", r"^\[source\.\]: the name"),
    ("[source.cabin]\nvolume = 3\n", r"^\[source\.cabin\] volume: unknown key$"),
    ("[source.cabin]\nframe_ms = 25\n", r"^\[source\.cabin\] frame_ms: 25 must be 10, 20 or 30$"),
    ("[source.cabin]\nchunk_ms = fast\n", r"^\[source\.cabin\] chunk_ms: 'fast' is not a valid int$"),
    ("[source.cabin]\nsource = alsa\n", r"^\[source\.cabin\] source: 'alsa' must be mic, stdin or file:PATH$"),
    ("[source.cabin]\nspeaker_memory_s = -1\n", r"^\[source\.cabin\] speaker_memory_s: -1\.0 must not be negative$"),
    ("[source.cabin]\ndevice_id = car/cabin\n", r"^\[source\.cabin\] device_id: 'car/cabin' cannot hold / \+ or #"),
    ("[source.a]\n[source.b]\ndevice_id = a\n", r"^\[source\.b\] device_id: 'a' is also \[source\.a\]'s"),
    ("[source.a]\nsource = stdin\n[source.b]\nsource = stdin\n", r"^\[source\.b\] source: 'stdin' is also \[source\.a\]'s"),
    ("[sources.a]\n", r"^unknown section \[sources\.a\]$"),
])
def test_bad_source_sections_name_section_and_key_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_to_ini_round_trips_source_sections(tmp_path):
    config = load_config(overrides={"source.cabin": {"device": "serd_a", "gate": "silero", "realtime": "yes"},
                                    "source.rear": {"source": "file:/x y.wav", "device_id": "back"}})
    text = to_ini(config)
    assert "[source.cabin]\nsource = mic\ndevice = serd_a\n" in text and "device_id = back\n" in text
    assert load_config(write(tmp_path, text)) == config


def test_example_config_shows_source_sections_with_their_own_keys_documented(tmp_path):
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    example = text[text.index("# [source.driver]"):].splitlines()
    config = load_config(write(tmp_path, "\n".join(line[2:] for line in example)))
    assert [(c.name, c.device_id, c.source.device) for c in config.sources] == [
        ("driver", "car-driver", "USB Audio #1"), ("passenger", "passenger", "USB Audio #2")]
    for f in dataclasses.fields(ChannelKeys):
        index = next(i for i, line in enumerate(example) if line.startswith("# %s = " % f.name))
        assert example[index - 1] == "# # " + f.metadata["doc"], f.name


def test_a_device_named_stdin_beside_a_stdin_source_is_fine():
    config = load_config(overrides={"source.a": {"device_id": "stdin"}, "source.b": {"source": "stdin"}})
    assert [(c.device_id, c.source.source) for c in config.sources] == [("stdin", "mic"), ("b", "stdin")]
