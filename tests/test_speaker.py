"""Speaker normalisation: the running voice estimate, its card entry and the front end that applies it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serd.audio import load_audio
from serd.errors import ModelError
from serd.features import FeatureParams
from serd.frontend import SpeechFrontend, WindowReady, clip_windows
from serd.model import ModelCard
from serd.ringbuffer import RingBuffer
from serd.speaker import SpeakerPrior, SpeakerStats, for_card
from serd.vad import VadParams
from serd.windows import WindowParams

N_BANDS = 40
PRIOR = SpeakerPrior(tuple([-5.0] * N_BANDS), tuple([2.0] * N_BANDS), 100)
SHIPPED_CARD = Path(__file__).resolve().parent.parent / "models" / "serd-emotion.json"


def test_prior_alone_sets_the_estimate():
    stats = SpeakerStats(PRIOR)
    window = np.full((200, N_BANDS), -1.0, dtype=np.float32)
    np.testing.assert_allclose(stats.normalise(window), 2.0, atol=1e-4)


def test_estimate_converges_to_the_voice_and_weighs_the_prior_by_its_frames():
    rng = np.random.default_rng(0)
    stats = SpeakerStats(PRIOR)
    stats.observe(rng.normal(3.0, 0.5, size=(100, N_BANDS)))
    np.testing.assert_allclose(stats.mean, (-5.0 * 100 + 3.0 * 100) / 200, atol=0.15)  # prior and voice weigh 100 frames each
    stats.observe(rng.normal(3.0, 0.5, size=(100_000, N_BANDS)))
    np.testing.assert_allclose(stats.mean, 3.0, atol=0.02)
    np.testing.assert_allclose(stats.std, 0.5, atol=0.1)
    assert stats.frames_heard == 100_100


def test_memory_lets_a_new_voice_take_over_and_reset_forgets_it():
    rng = np.random.default_rng(1)
    remembering, forgetting = SpeakerStats(PRIOR), SpeakerStats(PRIOR, memory_frames=1000)
    for stats in (remembering, forgetting):
        for _ in range(100):
            stats.observe(rng.normal(3.0, 0.5, size=(100, N_BANDS)))
        for _ in range(100):
            stats.observe(rng.normal(-1.0, 0.5, size=(100, N_BANDS)))
    assert abs(forgetting.mean.mean() + 1.0) < 0.05  # 10 time constants after the change
    assert abs(remembering.mean.mean() - 1.0) < 0.05  # half of each voice
    forgetting.reset()
    np.testing.assert_allclose(forgetting.mean, -5.0)
    assert forgetting.frames_heard == 0


def test_prior_round_trips_and_bad_priors_are_refused():
    assert SpeakerPrior.from_dict(PRIOR.to_dict()) == PRIOR
    with pytest.raises(ValueError, match="same, non-zero length"):
        SpeakerPrior.from_dict({"mean": [0.0], "std": [1.0, 1.0], "weight_frames": 10})
    with pytest.raises(ValueError, match="positive"):
        SpeakerPrior.from_dict({"mean": [0.0], "std": [0.0], "weight_frames": 10})


def _card(**changes) -> dict:
    """The shipped card with changes; without a head unless asked (the speaker-normalised cards end in logits)."""
    card = json.loads(SHIPPED_CARD.read_text())
    card.pop("head", None)
    card.update({"output": "logits", **changes})
    return card


def test_card_asks_for_speaker_normalisation_with_a_prior():
    card = ModelCard.from_dict(_card(normalisation="per-speaker-cmvn", speaker_prior=PRIOR.to_dict()), SHIPPED_CARD)
    stats = for_card(card, memory_s=10.0)
    assert stats is not None and stats.prior == PRIOR and stats.memory_frames == 1000
    assert for_card(ModelCard.from_dict(_card(normalisation="per-window-cmvn"), SHIPPED_CARD)) is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"normalisation": "per-speaker-cmvn"}, "needs a speaker_prior"),
    ({"normalisation": "per-speaker-cmvn", "speaker_prior": {"mean": [0.0] * 13, "std": [1.0] * 13, "weight_frames": 5}}, "13 bands, features 40"),
    ({"normalisation": "per-speaker-cmvn", "speaker_prior": {"mean": [0.0], "std": [-1.0], "weight_frames": 5}}, "bad model card"),
])
def test_bad_speaker_cards_are_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        ModelCard.from_dict(_card(**{k: v for k, v in changes.items()}), SHIPPED_CARD)


def _speaker_windows(samples: np.ndarray, stats: SpeakerStats) -> list[np.ndarray]:
    ring = RingBuffer(len(samples))
    frontend = SpeechFrontend(ring, VadParams(), FeatureParams(), WindowParams(), speaker=stats)
    ring.write(samples)
    return [item.window for item in frontend.process() + frontend.flush() if isinstance(item, WindowReady)]


def test_front_end_normalises_raw_windows_by_the_voice_estimate(ravdess_clip):
    samples = load_audio(ravdess_clip)
    raw = clip_windows(samples, VadParams(), FeatureParams(), WindowParams(), normalise=False)
    fixed = SpeakerPrior(PRIOR.mean, PRIOR.std, 10**12)  # so heavy that the clip cannot move it
    windows = _speaker_windows(samples, SpeakerStats(fixed))
    assert len(windows) == len(raw) >= 1
    for window, frames in zip(windows, raw):
        np.testing.assert_allclose(window, (frames - np.asarray(PRIOR.mean)) / np.asarray(PRIOR.std), atol=1e-3)


def test_front_end_feeds_every_speech_frame_to_the_estimate(ravdess_clip):
    samples = load_audio(ravdess_clip)
    raw = clip_windows(samples, VadParams(), FeatureParams(), WindowParams(), normalise=False)
    stats = SpeakerStats(PRIOR)
    windows = _speaker_windows(samples, stats)
    assert stats.frames_heard >= WindowParams().frames
    # raw log-mel sits far from the prior; the voice estimate pulls the last window towards zero mean
    assert abs(float(windows[-1].mean())) < 0.5 * abs(float(SpeakerStats(PRIOR).normalise(raw[-1]).mean()))


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory) -> Path:
    """A small untrained int8 network of the shipped kind, ending in logits that favour one label, under a
    speaker-normalised card (the wiring, not the accuracy, is under test)."""
    from tools.model import export
    from tools.model.nn import TrainSettings, build_model

    windows = np.random.default_rng(2).normal(size=(20, WindowParams().frames, N_BANDS)).astype(np.float32)
    n_labels = len(_card()["labels"])
    network = build_model(WindowParams().frames, N_BANDS, TrainSettings(filters=(4, 8)), n_labels)
    network.get_layer("logits").bias.assign(np.eye(n_labels, dtype=np.float32)[4] * 5.0)  # confident, so that emotions change
    folder = tmp_path_factory.mktemp("speaker-model")
    model = folder / "serd-emotion.tflite"
    model.write_bytes(export.convert_int8(network, windows))
    model.with_suffix(".json").write_text(json.dumps(_card(normalisation="per-speaker-cmvn", speaker_prior=PRIOR.to_dict())))
    return model


def _serd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serd.cli", *args], capture_output=True, text=True, timeout=120, check=False)


def test_daemon_reports_how_much_speech_its_voice_estimate_heard(speaker_model, ravdess_clip):
    run = _serd("run", "--source", "file:%s" % ravdess_clip, "--model", str(speaker_model), "--stdout", "--no-zmq")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert any(e["type"] == "emotion-changed" for e in events)
    first, last = events[0], events[-1]
    assert first["type"] == last["type"] == "status" and last["state"] == "stopping"
    assert first["speaker_speech_s"] == 0.0
    spoken_s = sum(e["stream_time_s"] for e in events if e["type"] == "speech-ended") - sum(
        e["stream_time_s"] for e in events if e["type"] == "speech-started")
    assert 0.5 * spoken_s < last["speaker_speech_s"] <= spoken_s + 0.1


def test_eval_runs_a_speaker_normalised_model(speaker_model, ravdess_manifest, tmp_path):
    rows = ravdess_manifest.read_text().splitlines()
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("\n".join([rows[0]] + [row.replace("Actor_", str(ravdess_manifest.parent) + "/Actor_", 1) for row in rows[1:5] + rows[61:65]]) + "\n")
    result = _serd("eval", str(manifest), "--model", str(speaker_model), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 8 and report["unreadable"] == 0 and sum(map(sum, report["confusion"])) == 8


def test_the_prior_counts_as_its_frames_and_every_frame_adds_to_mean_and_spread_exactly():
    prior = SpeakerPrior((1.0, -2.0), (0.5, 3.0), 4)
    stats = SpeakerStats(prior)
    frames = np.array([[2.0, 0.0], [4.0, 1.0], [0.0, -1.0]])
    stats.observe(frames[:1])  # one frame counts too
    stats.observe(frames[1:])
    weight = 4 + 3
    mean = (4 * np.array([1.0, -2.0]) + frames.sum(axis=0)) / weight
    mean_sq = (4 * (np.array([0.5, 3.0]) ** 2 + np.array([1.0, -2.0]) ** 2) + (frames**2).sum(axis=0)) / weight
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, np.sqrt(mean_sq - mean**2), rtol=1e-12)
    stats.observe(np.zeros((0, 2)))
    assert stats.frames_heard == 3, "no frames change nothing"
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)


def test_memory_fades_the_estimate_by_e_to_the_minus_frames_over_memory():
    prior = SpeakerPrior((10.0,), (1.0,), 20)
    for memory in (1, 7):
        stats = SpeakerStats(prior, memory_frames=memory)
        frames = np.full((5, 1), -2.0)
        stats.observe(frames)
        keep = np.exp(-5 / memory)
        np.testing.assert_allclose(stats.mean, (20 * keep * 10.0 - 2.0 * 5) / (20 * keep + 5), rtol=1e-12)
    assert SpeakerStats(prior).memory_frames == 0, "by default every frame counts for ever"


def test_a_voice_without_spread_is_scaled_by_the_floor_not_by_zero():
    stats = SpeakerStats(SpeakerPrior((2.0,), (0.0,), 1))
    stats.observe(np.full((3, 1), 2.0))
    assert stats.std[0] == 0.0
    rounded = SpeakerStats(SpeakerPrior((0.7,), (0.0,), 1))
    rounded.observe(np.full((10, 1), 0.7))  # mean of squares minus squared mean comes out at -1.1e-16
    assert rounded.std[0] == 0.0, "a spread that rounding makes negative is held at zero"
    window = np.full((2, 1), 2.001)
    np.testing.assert_allclose(stats.normalise(window), 0.001 / 1e-5, rtol=1e-3)
    small = SpeakerStats(SpeakerPrior((0.0,), (0.01,), 1))
    np.testing.assert_allclose(small.std, 0.01, rtol=1e-9)


def test_priors_are_stored_to_five_decimals_and_frozen():
    prior = SpeakerPrior((0.123456789,), (1.0000049,), 3)
    assert prior.to_dict() == {"mean": [0.12346], "std": [1.0], "weight_frames": 3}
    assert SpeakerPrior((0.0,), (0.876543,), 3).to_dict()["std"] == [0.87654]
    with pytest.raises(AttributeError):
        prior.weight_frames = 4


@pytest.mark.parametrize("data", [
    {"mean": [0.0, 0.0], "std": [1.0], "weight_frames": 10},
    {"mean": [], "std": [], "weight_frames": 10},
    {"mean": [0.0], "std": [-1.0], "weight_frames": 10},
    {"mean": [0.0], "std": [1.0], "weight_frames": 0},
])
def test_priors_of_unequal_lengths_negative_spread_or_no_weight_are_refused(data):
    with pytest.raises(ValueError, match="speaker_prior"):
        SpeakerPrior.from_dict(data)


def test_the_smallest_valid_prior_and_a_wide_one_are_taken():
    assert SpeakerPrior.from_dict({"mean": [0.0], "std": [0.5], "weight_frames": 1}).weight_frames == 1
    wide = SpeakerPrior.from_dict({"mean": [0.0] * 300, "std": [1.0] * 300, "weight_frames": 1})
    assert len(wide.mean) == len(wide.std) == 300


def test_a_cards_speaker_memory_is_converted_from_seconds_at_its_frame_rate():
    card = ModelCard.from_dict(_card(normalisation="per-speaker-cmvn", speaker_prior=PRIOR.to_dict()), SHIPPED_CARD)
    assert for_card(card).memory_frames == 0, "no memory unless asked"
    odd = _card(normalisation="per-speaker-cmvn", speaker_prior=PRIOR.to_dict())
    odd["features"] = dict(odd["features"], hop_samples=150)
    stats = for_card(ModelCard.from_dict(odd, SHIPPED_CARD), memory_s=10.0)
    assert stats.memory_frames == round(10.0 * 16000 / 150) == 1067
