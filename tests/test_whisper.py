"""The opt-in whisper backend: Whisper's log-mel against librosa, the pinned encoder, the head, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest

from serd.audio import load_audio
from serd.errors import ModelError
from serd.frontend import clip_window_items
from serd.model import load_model
from serd.whisper import ENCODER_DIM, WhisperEncoder, WhisperLogMel, default_encoder_dir, mel_filters, pool
from tests.test_cli import serd

WHISPER_MEL_TOLERANCE = 1e-4
CENTRED = Path(__file__).resolve().parent / "data" / "serd-whisper-1.1.0" / "serd-whisper.npz"  # backend 1.1.0: a speaker-centred head
SAMPLE_RATE_HZ = 16000


def librosa_whisper_log_mel(samples: np.ndarray) -> np.ndarray:
    """OpenAI Whisper's recipe written with librosa: |STFT|² of 400/160 Hann frames, 80 Slaney mels, log10."""
    audio = samples.astype(np.float32) / 32768.0
    power = np.abs(librosa.stft(audio, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")) ** 2
    mel = librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=400, n_mels=80) @ power[:, :-1]
    log_mel = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(log_mel, log_mel.max() - 8.0) + 4.0) / 4.0


@pytest.fixture(scope="module")
def clip(ravdess_clip) -> np.ndarray:
    return load_audio(ravdess_clip)


def test_filters_are_whispers(clip):
    assert np.abs(mel_filters() - librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=400, n_mels=80)).max() < 1e-6


@pytest.mark.parametrize("length", [32000, 16000 * 3 + 77, 1000])
def test_log_mel_matches_librosa(clip, length):
    samples = clip[16000 : 16000 + length]
    ours, reference = WhisperLogMel()(samples), librosa_whisper_log_mel(samples)
    assert ours.shape == reference.shape == (80, len(samples) // 160)
    assert np.abs(ours - reference).max() <= WHISPER_MEL_TOLERANCE


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    return WhisperEncoder()


def test_encoder_gives_a_frame_every_20_ms_and_batches_agree(encoder, clip):
    window = clip[16000:48000]
    frames = encoder.encode(window)
    assert frames.shape == (100, ENCODER_DIM) and np.isfinite(frames).all()
    batched = encoder.encode_batch([window, clip[20000:52000]])
    assert np.allclose(batched[0], frames, atol=1e-3)
    assert pool(frames).shape == (2 * ENCODER_DIM,)


def test_encoder_refuses_weights_that_are_not_the_pinned_ones(tmp_path):
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(default_encoder_dir() / name, tmp_path / name)
    (tmp_path / "model.bin").write_bytes(b"\0" * 1024)
    with pytest.raises(ModelError, match="SHA-256"):
        WhisperEncoder(tmp_path)


def test_window_items_carry_their_span(clip):
    from tests.test_frontend import FEATURES, VAD, WINDOWS

    items = clip_window_items(clip, VAD, FEATURES, WINDOWS)
    assert items
    for item in items:
        assert 0 < item.end_index - item.start_index <= WINDOWS.frames * FEATURES.hop_samples


def test_shipped_backend_analyses_a_clip_and_names_itself(ravdess_clip):
    model = load_model("serd-whisper")
    assert model.card.backend == "whisper" and model.needs_audio
    result = serd("analyze", "--json", "--model", "serd-whisper", ravdess_clip)
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout.decode().splitlines()[0])
    assert analysis["label"] in model.labels and analysis["segments"]
    assert abs(sum(analysis["probabilities"].values()) - 1.0) < 1e-3


def test_the_shipped_backend_speaks_the_shared_labels_and_keeps_no_voice_estimate():
    model = load_model("serd-whisper")
    assert model.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert model.voice is None and model.card.label_folding == (("calm", "neutral"),)


def test_daemon_runs_the_whisper_backend_on_a_file(ravdess_clip):
    result = serd("run", "--source", "file:%s" % ravdess_clip, "--model", "serd-whisper", "--stdout", "--no-zmq")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    changes = [e for e in events if e["type"] == "emotion-changed"]
    assert changes and changes[0]["previous"] == "silence" and changes[-1]["label"] == "silence"


def test_a_head_that_does_not_fit_the_card_is_a_one_line_error(tmp_path, ravdess_clip):
    card = json.loads(Path(load_model("serd-whisper").path).with_suffix(".json").read_text())
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3), scale=np.ones(3), weights=np.zeros((3, len(card["labels"]))),
             bias=np.zeros(len(card["labels"])))
    (tmp_path / "bad.json").write_text(json.dumps(card))
    result = serd("analyze", "--model", tmp_path / "bad.npz", ravdess_clip)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "head shapes" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_centred_backend_centres_each_window_on_the_voice_heard_so_far(ravdess_clip):
    from serd.speaker import SpeakerPrior, SpeakerStats

    model = load_model(CENTRED)
    assert model.voice is not None and model.voice.frames_heard == 0
    audio = load_audio(ravdess_clip)[:32000]
    prior = np.full(768, 0.25)
    model.voice = SpeakerStats(SpeakerPrior(tuple(prior), (1.0,) * 768, 10**12))  # too heavy for one window to move
    probabilities = model.predict(np.zeros(0), audio)
    head = np.load(model.path)
    features = pool(model._encoder.encode(audio)).astype(np.float64) - prior
    logits = ((features - head["mean"]) / head["scale"]) @ head["weights"] + head["bias"]
    expected = np.exp((logits - logits.max()) / model.card.temperature)
    np.testing.assert_allclose(probabilities, expected / expected.sum(), atol=1e-6)
    assert model.voice.frames_heard == 1


def test_daemon_with_a_centred_backend_reports_the_speech_its_voice_estimate_heard(ravdess_clip):
    result = serd("run", "--source", "file:%s" % ravdess_clip, "--model", CENTRED, "--stdout", "--no-zmq")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    windows = sum(1 for e in events if e["type"] in ("emotion-changed", "emotion-state"))
    assert events[-1]["type"] == "status" and events[-1]["speaker_speech_s"] >= 0.5
    assert windows >= 1


def test_a_centre_prior_that_does_not_fit_the_encoder_is_a_one_line_error(tmp_path, ravdess_clip):
    shipped = load_model(CENTRED)
    head = dict(np.load(shipped.path))
    head["centre_prior"] = np.zeros(5)
    np.savez(tmp_path / "bad.npz", **head)
    (tmp_path / "bad.json").write_text(Path(shipped.path).with_suffix(".json").read_text())
    result = serd("analyze", "--model", tmp_path / "bad.npz", ravdess_clip)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "centre_prior" in stderr and "Traceback" not in stderr
