"""The linear head with a voice estimate (serd.head) and a serd-emotion card whose network ends at its embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serd.analyze import analyze_samples
from serd.audio import load_audio
from serd.config import VadConfig
from serd.errors import ModelError
from serd.frontend import clip_windows
from serd.head import CENTRE_PRIOR_WINDOWS, LinearHead
from serd.model import ModelCard, load_model
from serd.pipeline import vad_params
from serd.speaker import SpeakerStats

SHIPPED_CARD = Path(__file__).resolve().parent / "data" / "serd-emotion-1.5.0" / "serd-emotion.json"  # model 1.5.0: an embedding + speaker-centred head
WIDTH, N_LABELS = 6, 3


def _head(prior: bool = True) -> LinearHead:
    rng = np.random.default_rng(0)
    return LinearHead(rng.normal(size=WIDTH), rng.uniform(0.5, 2.0, size=WIDTH), rng.normal(size=(WIDTH, N_LABELS)),
                      rng.normal(size=N_LABELS), rng.normal(size=WIDTH) if prior else None)


def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_a_centred_head_subtracts_the_running_mean_of_the_windows_heard():
    head = _head()
    voice = head.new_voice()
    windows = np.random.default_rng(1).normal(3.0, 1.0, size=(4, WIDTH))
    for k, window in enumerate(windows):
        logits = head.logits(window, voice)
        mean = (head.centre_prior * 5 + windows[: k + 1].sum(axis=0)) / (5 + k + 1)  # the prior counts as five windows
        np.testing.assert_allclose(logits, ((window - mean) - head.mean) / head.scale @ head.weights + head.bias, atol=1e-9)
    assert voice.frames_heard == len(windows)
    plain = head.logits(windows[0])  # without a voice estimate the features go in as they are
    np.testing.assert_allclose(plain, (windows[0] - head.mean) / head.scale @ head.weights + head.bias)


def test_only_a_head_with_a_centre_prior_keeps_a_voice_and_its_memory_is_in_windows():
    assert _head(prior=False).new_voice() is None
    voice = _head().new_voice(memory_windows=40)
    assert isinstance(voice, SpeakerStats) and voice.memory_frames == 40


def test_head_files_round_trip_and_bad_ones_are_refused(tmp_path):
    head = _head()
    path = _save(tmp_path / "good.npz", mean=head.mean, scale=head.scale, weights=head.weights, bias=head.bias,
                 centre_prior=head.centre_prior)
    loaded = LinearHead.load(path, WIDTH, N_LABELS)
    np.testing.assert_allclose(loaded.weights, head.weights)
    np.testing.assert_allclose(loaded.centre_prior, head.centre_prior)
    with pytest.raises(ModelError, match="do not fit 6 features and 4 labels"):
        LinearHead.load(path, WIDTH, N_LABELS + 1)
    with pytest.raises(ModelError, match="not a head"):
        LinearHead.load(_save(tmp_path / "partial.npz", mean=head.mean), WIDTH, N_LABELS)
    with pytest.raises(ModelError, match="scale must be positive"):
        LinearHead.load(_save(tmp_path / "zero.npz", mean=head.mean, scale=head.scale * 0, weights=head.weights, bias=head.bias),
                        WIDTH, N_LABELS)
    with pytest.raises(ModelError, match="centre_prior has shape"):
        LinearHead.load(_save(tmp_path / "prior.npz", mean=head.mean, scale=head.scale, weights=head.weights, bias=head.bias,
                              centre_prior=np.zeros(WIDTH + 1)), WIDTH, N_LABELS)
    with pytest.raises(ModelError, match="missing.npz"):
        LinearHead.load(tmp_path / "missing.npz", WIDTH, N_LABELS)


def _card(**changes) -> dict:
    card = json.loads(SHIPPED_CARD.read_text())
    card.update(changes)
    return card


@pytest.mark.parametrize(("changes", "message"), [
    ({"output": "embedding", "head": ""}, "output embedding and a head file go together"),
    ({"output": "logits", "head": "x.npz"}, "output embedding and a head file go together"),
    ({"output": "embedding", "head": "x.npz", "normalisation": "per-speaker-cmvn",
      "speaker_prior": {"mean": [0.0] * 40, "std": [1.0] * 40, "weight_frames": 5}}, "normalisation must be per-window-cmvn"),
])
def test_cards_that_mix_up_the_head_are_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        ModelCard.from_dict(_card(**changes), SHIPPED_CARD)


@pytest.fixture(scope="module")
def shipped():
    model = load_model(SHIPPED_CARD.with_suffix(".tflite"))
    if not model.card.head:
        pytest.fail("model 1.5.0's card has no head")
    return model


def _reference(model, samples: np.ndarray, head: LinearHead) -> np.ndarray:
    """Clip posterior computed here from the interpreter's raw tensors: dequantised embedding, running mean, head."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(model.path), num_threads=1)
    runner.allocate_tensors()
    source, target = runner.get_input_details()[0], runner.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = source["quantization"], target["quantization"]
    heard = [head.centre_prior * CENTRE_PRIOR_WINDOWS]
    rows = []
    for window in clip_windows(samples, vad_params(VadConfig()), model.card.features, model.card.window):
        runner.set_tensor(source["index"], np.clip(np.round(window / in_scale + in_zero), -128, 127).astype(np.int8).reshape(source["shape"]))
        runner.invoke()
        embedding = (runner.get_tensor(target["index"]).astype(np.float64).reshape(-1) - out_zero) * out_scale
        heard.append(embedding)
        centred = embedding - np.sum(heard, axis=0) / (CENTRE_PRIOR_WINDOWS + len(heard) - 1)
        logits = ((centred - head.mean) / head.scale) @ head.weights + head.bias
        z = np.exp((logits - logits.max()) / model.card.temperature)
        rows.append(z / z.sum())
    return np.array(rows)


def test_a_head_model_centres_its_embedding_on_the_voice_heard(shipped, ravdess_clip):
    head_path = shipped.path.parent / shipped.card.head
    with np.load(head_path) as stored:
        width = len(stored["mean"])
    head = LinearHead.load(head_path, width, len(shipped.labels))
    samples = load_audio(ravdess_clip)
    analysis = analyze_samples(samples, shipped, VadConfig())
    np.testing.assert_allclose(analysis.window_probabilities, _reference(shipped, samples, head), atol=1e-6)


def test_a_voice_carried_over_from_earlier_clips_changes_the_answer(shipped, ravdess_manifest):
    first = load_audio(ravdess_manifest.parent / "Actor_01" / "03-01-01-01-01-01-01.flac")
    second = load_audio(ravdess_manifest.parent / "Actor_01" / "03-01-05-02-01-01-01.flac")
    voice = shipped.new_voice()
    analyze_samples(first, shipped, VadConfig(), voice)
    heard = voice.frames_heard
    carried = analyze_samples(second, shipped, VadConfig(), voice).overall.probabilities
    fresh = analyze_samples(second, shipped, VadConfig()).overall.probabilities
    assert heard > 0 and voice.frames_heard > heard
    assert max(abs(carried[label] - fresh[label]) for label in shipped.labels) > 1e-3


def test_a_card_naming_a_missing_head_fails_at_load(tmp_path):
    shutil.copy(SHIPPED_CARD.with_suffix(".tflite"), tmp_path / "serd-emotion.tflite")
    (tmp_path / "serd-emotion.json").write_text(json.dumps(_card(head="nowhere.npz")))
    with pytest.raises(ModelError, match="nowhere.npz"):
        load_model(tmp_path / "serd-emotion.tflite")


@pytest.mark.parametrize("name", ["mean", "scale", "weights", "bias"])
@pytest.mark.parametrize("change", [1, -1])
def test_a_head_with_any_one_array_of_the_wrong_size_is_refused(tmp_path, name, change):
    head = _head()
    arrays = {key: getattr(head, key) for key in ("mean", "scale", "weights", "bias")}
    wrong = arrays[name]
    arrays[name] = np.ones((wrong.shape[0] + change,) + wrong.shape[1:])
    with pytest.raises(ModelError, match="do not fit 6 features and 3 labels"):
        LinearHead.load(_save(tmp_path / "head.npz", **arrays), WIDTH, N_LABELS)


def test_a_negative_scale_a_short_prior_and_pickled_arrays_are_refused(tmp_path):
    head = _head()
    arrays = {"mean": head.mean, "scale": head.scale, "weights": head.weights, "bias": head.bias}
    with pytest.raises(ModelError, match="scale must be positive"):
        LinearHead.load(_save(tmp_path / "negative.npz", **dict(arrays, scale=-head.scale)), WIDTH, N_LABELS)
    with pytest.raises(ModelError, match="centre_prior has shape"):
        LinearHead.load(_save(tmp_path / "short.npz", **arrays, centre_prior=np.zeros(WIDTH - 1)), WIDTH, N_LABELS)
    pickled = dict(arrays, mean=np.array(list(head.mean), dtype=object))  # numbers, but stored as pickled objects
    with pytest.raises(ModelError, match="not a head"):
        LinearHead.load(_save(tmp_path / "pickled.npz", **pickled), WIDTH, N_LABELS)


def test_a_head_is_frozen_and_its_voice_never_fades_unless_asked():
    head = _head()
    with pytest.raises(AttributeError):
        head.bias = np.zeros(N_LABELS)
    assert head.new_voice().memory_frames == 0
