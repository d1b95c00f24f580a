"""The model card is checked whole at load: each bad field is one line naming it, at start and on reload."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from serd.errors import ModelError
from serd.model import ModelCard
from serd.shipped import default_model_path
from tests.support_cli import SERD, serd

SHIPPED = default_model_path()
SHIPPED_CARD = SHIPPED.with_suffix(".json")


def _card(section: str | None = None, **changes) -> dict:
    card = json.loads(SHIPPED_CARD.read_text())
    (card[section] if section else card).update(changes)
    return card


def _model(tmp_path, card: dict):
    """A copy of the shipped weights beside the given card."""
    weights = tmp_path / ("m" + SHIPPED.suffix)
    shutil.copyfile(SHIPPED, weights)
    weights.with_suffix(".json").write_text(json.dumps(card))
    return weights


BAD_FIELDS = [
    (("window",), {"hop_frames": 0}, "window.hop_frames must be positive"),
    (("window",), {"hop_frames": "50"}, "window.hop_frames: '50' is not a number"),
    (("window",), {"min_frames": 500}, "window.min_frames must be 1 to window.frames"),
    (("window",), {"frames": 0}, "window.frames must be positive"),
    (("features",), {"hop_samples": 0}, "features.hop_samples must be positive"),
    (("features",), {"frame_samples": 2.5}, "features.frame_samples: 2.5 is not a whole number"),
    (("features",), {"n_fft": 256}, "features.n_fft must be at least features.frame_samples"),
    (("features",), {"fmax_hz": 9000.0}, "features.fmax_hz must not exceed the Nyquist frequency"),
    (("features",), {"fmin_hz": 8000.0}, "features.fmin_hz must be at least 0 and below features.fmax_hz"),
    (("features",), {"kind": "cqt"}, "features.kind 'cqt' unknown"),
    (("features",), {"n_mels": True}, "features.n_mels: True is not a number"),
    (("features",), {"kind": "logmel_pitch", "pitch_bins": 0}, "features.pitch_bins must be positive"),
    (("features",), {"kind": "logmel_pitch", "pitch_fmin_hz": 0.0}, "features.pitch_fmin_hz must be above 0 and below"),
    (("features",), {"kind": "logmel_pitch", "pitch_fmin_hz": 600.0}, "features.pitch_fmin_hz must be above 0 and below"),
    (("features",), {"kind": "logmel_pitch", "pitch_fmax_hz": 4001.0}, "at most a quarter of the sample rate"),
    (("features",), {"kind": "logmel_pitch", "pitch_fmin_hz": 40.0}, "features.pitch_fmin_hz must have its period inside"),
    (("features",), {"mel_bins": 40}, "features.mel_bins: unknown field"),
    (("vad",), {"frame_ms": 25}, "vad.frame_ms must be one of 10, 20, 30"),
    ((), {"temperature": float("nan")}, "temperature: nan is not a finite number"),
    ((), {"temperature": float("inf")}, "temperature: inf is not a finite number"),
    ((), {"temperature": 0}, "temperature must be positive"),
    ((), {"labels": ["neutral", "neutral"]}, "labels: must be two or more distinct, non-empty names"),
    ((), {"labels": ["neutral", "silence"]}, "labels: 'silence' is what serd says itself"),
    ((), {"labels": ["neutral", "uncertain"]}, "labels: 'uncertain' is what serd says itself"),
    ((), {"labels": "neutral,happy"}, "labels: must be a list of names"),
    ((), {"sample_rate_hz": "16000"}, "sample_rate_hz: '16000' is not a number"),
    ((), {"window": [200, 50]}, "window: must be an object"),
]


@pytest.mark.parametrize(("section", "changes", "message"), BAD_FIELDS)
def test_a_bad_card_field_is_refused_by_name(section, changes, message):
    with pytest.raises(ModelError) as raised:
        ModelCard.from_dict(_card(*section, **changes), SHIPPED_CARD)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_shipped_cards_pass_every_check():
    for card in SHIPPED.parent.glob("serd-*.json"):
        assert ModelCard.from_dict(json.loads(card.read_text()), card).labels


@pytest.mark.parametrize("command", ["analyze", "run"])
def test_a_zero_hop_card_is_one_line_at_start(tmp_path, command, ravdess_clip):
    weights = _model(tmp_path, _card("window", hop_frames=0))
    args = ("analyze", "--model", weights, ravdess_clip) if command == "analyze" else (
        "run", "--model", weights, "--source", "file:%s" % ravdess_clip, "--no-zmq")
    result = serd(*args, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("serd: error: ") and last.endswith("m.json: window.hop_frames must be positive")


def _read_status(process, wanted: str, timeout_s: float = 30.0) -> dict:
    """The first status event on the daemon's stdout whose message contains wanted."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("type") == "status" and wanted in event.get("message", ""):
            return event
    raise AssertionError("no status event with %r within %.0f s" % (wanted, timeout_s))


@pytest.mark.parametrize(("section", "changes", "field"), [
    (("window",), {"hop_frames": 0}, "window.hop_frames"),
    (("features",), {"hop_samples": 0}, "features.hop_samples"),
    ((), {"temperature": "1.4"}, "temperature"),
])
def test_a_reload_onto_a_bad_card_keeps_the_daemon_and_says_why(tmp_path, section, changes, field):
    bad = _model(tmp_path, _card(*section, **changes))
    config = tmp_path / "serd.conf"
    config.write_text("[zmq]\nenabled = false\n[stdout]\nenabled = true\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    process = subprocess.Popen(SERD + ["run", "--config", str(config), "--source", "stdin"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        _read_status(process, "")
        config.write_text(config.read_text() + "[model]\npath = %s\n" % bad)
        process.send_signal(signal.SIGHUP)
        failed = _read_status(process, "reload failed")
        assert failed["state"] == "error" and field in failed["message"]
        assert process.poll() is None, "a bad card on reload must not kill the daemon"
        process.stdin.write("\0" * 32000)  # a second of silence still flows through the running model
        process.stdin.flush()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
