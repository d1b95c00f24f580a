"""The emotion model stage (serd.model): which file a [model] path names, what a network must look like to load, and
what predict() makes of its raw output (quantisation, the card's output kind, temperature, a centred head's voice)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serd.errors import ModelError
from serd.head import LinearHead
from serd.model import EmotionModel, _quantisation, load_model, model_path, softmax
from serd.shipped import default_model_path
from serd.whisper import WhisperEmotionModel

SHIPPED_CARD = Path(__file__).resolve().parent.parent / "models" / "serd-emotion.json"
FRAMES, BANDS, LABELS = 200, 40, 7
WIDTH = 16  # embedding width of the embedding networks


def _card(**changes) -> dict:
    card = json.loads(SHIPPED_CARD.read_text())
    card.update(changes)
    return card


def _convert(function, shape: tuple[int, ...], int8: bool = False, io_type: str = "int8") -> bytes:
    """A TFLite flatbuffer of a weightless TensorFlow function of one float input of this shape (int8 in and out:
    calibrated on windows whose bands hold values in [-1, 3], so that both zero points are far from 0)."""
    import tensorflow as tf

    holder = tf.Module()
    holder.serve = tf.function(function, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([holder.serve.get_concrete_function()], holder)
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([(rng.uniform(-1, 3, (1, 1, BANDS) + shape[3:])
                                                      + rng.normal(0, 0.01, shape)).astype(np.float32)] for _ in range(50))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    return converter.convert()


def band_means(window: np.ndarray, count: int) -> np.ndarray:
    """What the test networks compute: the mean over frames of the first count bands."""
    return window.reshape(-1, BANDS)[:, :count].mean(axis=0)


@pytest.fixture(scope="module")
def networks() -> dict[str, bytes]:
    """Small networks whose output is known in closed form (band means), in the shapes a card can meet."""
    import tensorflow as tf

    def means(count):
        return lambda x: tf.reduce_mean(tf.reshape(x, (1, FRAMES, BANDS))[:, :, :count], axis=1)

    four_d, three_d = (1, FRAMES, BANDS, 1), (1, FRAMES, BANDS)
    return {
        "logits": _convert(means(LABELS), four_d),
        "logits_3d": _convert(means(LABELS), three_d),
        "first_frame_int8": _convert(lambda x: tf.reshape(x, (1, FRAMES, BANDS))[:, 0, :LABELS], four_d, int8=True),
        "probabilities": _convert(lambda x: tf.nn.softmax(means(LABELS)(x)), four_d),
        "five": _convert(means(5), four_d),
        "short": _convert(lambda x: tf.reduce_mean(x, axis=1)[:, :LABELS], (1, FRAMES // 2, BANDS, 1)),
        "embedding": _convert(means(WIDTH), four_d),
        "uint8": _convert(means(LABELS), four_d, int8=True, io_type="uint8"),
        "embedding_int8": _convert(means(WIDTH), four_d, int8=True),
        "grid": _convert(lambda x: tf.reshape(x, (1, FRAMES, BANDS))[:, :4, :4], four_d),
        "nine": _convert(means(9), four_d),
        "flat": _convert(lambda x: tf.reshape(means(WIDTH)(x), (WIDTH,)), four_d),
        "pair": _convert(lambda x: tf.concat([means(WIDTH)(x)] * 2, axis=0), four_d),
        "scalar": _convert(lambda x: tf.reshape(means(1)(x), (1,)), four_d),
    }


def _place(folder: Path, network: bytes, name: str = "m", **changes) -> Path:
    """A network and its card (the shipped card with changes) as name.tflite + name.json."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("%s.tflite" % name)
    path.write_bytes(network)
    path.with_suffix(".json").write_text(json.dumps(_card(**changes)))
    return path


def _window(seed: int = 0, spread: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, spread, (FRAMES, BANDS)).astype(np.float32)


def test_an_empty_model_path_is_the_shipped_model_and_a_bare_name_a_shipped_one():
    assert model_path("") == model_path(None) == default_model_path()
    assert model_path("serd-whisper") == default_model_path("serd-whisper")
    assert model_path("own.tflite") == Path("own.tflite")  # a suffix: a file, here or not
    assert model_path("models/own") == Path("models/own")  # a slash: a file too


def test_a_float_network_predicts_the_softmax_of_its_logits_over_the_card_temperature(networks, tmp_path):
    model = load_model(_place(tmp_path, networks["logits"], temperature=2.5))
    assert isinstance(model, EmotionModel) and model.labels == tuple(_card()["labels"])
    window = _window(1, 3.0)
    probabilities = model.predict(window)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, softmax(band_means(window, LABELS) / 2.5), rtol=1e-5)
    cooler = load_model(_place(tmp_path / "cool", networks["logits"], temperature=0.5)).predict(window)
    assert cooler.max() > probabilities.max()  # a lower temperature sharpens the same logits


def test_a_network_without_the_channel_axis_loads_and_predicts_alike(networks, tmp_path):
    window = _window(2, 2.0)
    flat = load_model(_place(tmp_path / "3d", networks["logits_3d"], temperature=1.0)).predict(window)
    channel = load_model(_place(tmp_path / "4d", networks["logits"], temperature=1.0)).predict(window)
    np.testing.assert_allclose(flat, channel, rtol=1e-6)


def test_a_probabilities_card_takes_the_network_output_as_probabilities(networks, tmp_path):
    model = load_model(_place(tmp_path, networks["probabilities"], output="probabilities", temperature=1.0))
    window = _window(3, 3.0)
    expected = softmax(band_means(window, LABELS))
    np.testing.assert_allclose(model.predict(window), expected, rtol=1e-5)  # log then softmax at T = 1: unchanged
    hotter = load_model(_place(tmp_path / "hot", networks["probabilities"], output="probabilities", temperature=2.0))
    np.testing.assert_allclose(hotter.predict(window), softmax(np.log(expected) / 2.0), rtol=1e-5)


def _input_scale(path: Path) -> tuple[float, int]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()[0]["quantization"]


def test_an_int8_network_quantises_its_input_and_clips_it_to_the_int8_range(networks, tmp_path):
    path = _place(tmp_path, networks["first_frame_int8"], temperature=1.0)  # a slice: the output keeps the input's int8 steps
    model = load_model(path)
    window = np.clip(_window(4, 0.3) + np.linspace(-0.8, 2.8, BANDS, dtype=np.float32), -1.0, 3.0)
    assert np.max(np.abs(model.predict(window) - softmax(window[0, :LABELS]))) < 0.01
    scale, zero = _input_scale(path)
    nearest = (np.round(window[0, :LABELS] / scale + zero) - zero) * scale  # each value to its nearest int8 step
    np.testing.assert_allclose(model.predict(window), softmax(nearest), rtol=1e-6)
    alternate = np.arange(BANDS) % 2 == 0  # even bands high, odd bands low

    def at(high: int, low: int) -> np.ndarray:
        """A window whose even bands quantise to high and odd bands to low."""
        return np.tile(np.where(alternate, (high - zero) * scale, (low - zero) * scale), (FRAMES, 1)).astype(np.float32)

    loud = np.tile(np.where(alternate, 1e4, -1e4), (FRAMES, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(loud), model.predict(at(127, -128)))  # beyond the range: clipped, not wrapped
    assert not np.allclose(model.predict(loud), model.predict(at(126, -128)))  # up to 127 itself
    assert not np.allclose(model.predict(loud), model.predict(at(127, -127)))  # down to -128 itself


def test_an_int8_embedding_reaches_the_head_at_its_float_value(networks, tmp_path):
    head = _head(centred=False)
    _save_head(head, tmp_path / "head.npz")
    model = load_model(_place(tmp_path, networks["embedding_int8"], output="embedding", head="head.npz", temperature=1.0))
    window = np.clip(_window(9, 0.3) + np.linspace(2.8, -0.8, BANDS, dtype=np.float32), -1.0, 3.0)
    expected = softmax(head.logits(band_means(window, WIDTH).astype(np.float64)))
    assert np.max(np.abs(model.predict(window) - expected)) < 0.02  # both zero points applied, each the right way


def test_a_class_the_network_gives_no_probability_keeps_a_floor_of_one_in_a_billion(networks, tmp_path):
    model = load_model(_place(tmp_path, networks["probabilities"], output="probabilities", temperature=1.0))
    window = np.zeros((FRAMES, BANDS), np.float32)
    window[:, 0] = 200.0  # softmax in float32: every other class underflows to exactly 0
    probabilities = model.predict(window)
    assert probabilities[1:] == pytest.approx([1e-9] * (LABELS - 1), rel=1e-3)


@pytest.mark.parametrize(("network", "changes", "message"), [
    ("short", {}, r"input shape \(1, 100, 40, 1\) does not match the card's window \(1, 200, 40\)"),
    ("five", {}, "output shape \\(1, 5\\) does not match 7 labels in the card"),
    ("grid", {"output": "embedding", "head": "head.npz"}, r"output shape \(1, 4, 4\) is not one embedding vector"),
    ("nine", {}, "output shape \\(1, 9\\) does not match 7 labels in the card"),
    ("flat", {"output": "embedding", "head": "head.npz"}, r"output shape \(16,\) is not one embedding vector"),
    ("pair", {"output": "embedding", "head": "head.npz"}, r"output shape \(2, 16\) is not one embedding vector"),
    ("scalar", {"output": "embedding", "head": "head.npz"}, r"output shape \(1,\) is not one embedding vector"),
])
def test_a_network_that_does_not_fit_its_card_fails_at_load(networks, tmp_path, network, changes, message):
    path = _place(tmp_path, networks[network], **changes)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_a_network_of_another_tensor_type_fails_at_load_naming_it(networks, tmp_path):
    with pytest.raises(ModelError, match=r"m.tflite: tensor \S+ has dtype <class 'numpy.uint8'> \(int8 or float32 expected\)"):
        load_model(_place(tmp_path, networks["uint8"]))


def test_quantisation_parameters_are_read_from_the_tensor_and_an_int8_tensor_must_have_them():
    assert _quantisation({"name": "in", "dtype": np.int8, "quantization": (1.0, 3)}) == (1.0, 3)
    assert _quantisation({"name": "in", "dtype": np.int8, "quantization": (0.05, -7)}) == (0.05, -7)
    assert _quantisation({"name": "out", "dtype": np.float32, "quantization": (0.0, 0)}) == (1.0, 0)
    assert _quantisation({"name": "out", "dtype": np.float32}) == (1.0, 0)  # no parameters at all: a float tensor's
    with pytest.raises(ModelError, match="^int8 tensor serving_in has no quantisation parameters$"):
        _quantisation({"name": "serving_in", "dtype": np.int8, "quantization": (0.0, 0)})
    with pytest.raises(ModelError, match="^int8 tensor serving_in has no quantisation parameters$"):
        _quantisation({"name": "serving_in", "dtype": np.int8})


def test_softmax_holds_for_logits_far_beyond_exp_range():
    probabilities = softmax(np.array([1000.0, 0.0, -1000.0]))
    assert np.all(np.isfinite(probabilities)) and probabilities.tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(softmax(np.array([800.0, 800.0])), [0.5, 0.5])


def test_files_that_are_not_models_are_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "absent.tflite")
    fake = _place(tmp_path, b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelError, match="m.tflite: not a TFLite model: "):
        load_model(fake)


def test_a_whisper_card_loads_the_whisper_backend():
    whisper = default_model_path("serd-whisper")
    if not whisper.is_file():
        pytest.fail("the shipped Whisper head is missing: %s" % whisper)
    model = load_model("serd-whisper")
    assert isinstance(model, WhisperEmotionModel) and model.card.backend == "whisper"


def _head(centred: bool) -> LinearHead:
    rng = np.random.default_rng(5)
    return LinearHead(mean=rng.normal(size=WIDTH), scale=rng.uniform(0.5, 2.0, WIDTH), weights=rng.normal(size=(WIDTH, LABELS)),
                      bias=rng.normal(size=LABELS), centre_prior=rng.normal(size=WIDTH) if centred else None)


def _save_head(head: LinearHead, path: Path) -> None:
    arrays = {"mean": head.mean, "scale": head.scale, "weights": head.weights, "bias": head.bias}
    if head.centre_prior is not None:
        arrays["centre_prior"] = head.centre_prior
    np.savez(path, **arrays)


def test_a_head_card_runs_the_embedding_through_the_head_and_keeps_a_voice(networks, tmp_path):
    head = _head(centred=True)
    _save_head(head, tmp_path / "head.npz")
    model = load_model(_place(tmp_path, networks["embedding"], output="embedding", head="head.npz", temperature=1.5))
    card = model.card
    assert model.voice_in_front_end is False
    assert model.voice_step_s == pytest.approx(card.window.hop_frames * card.features.hop_samples / card.features.sample_rate_hz)
    window = _window(6, 2.0)
    reference_voice = head.new_voice()
    expected = softmax(head.logits(band_means(window, WIDTH).astype(np.float64), reference_voice) / 1.5)
    np.testing.assert_allclose(model.predict(window), expected, rtol=1e-5)
    assert model.voice.frames_heard == reference_voice.frames_heard == 1  # the window was heard, once
    np.testing.assert_allclose(model.voice.mean, reference_voice.mean)


def test_a_head_voice_forgets_after_the_seconds_asked_in_windows(networks, tmp_path):
    _save_head(_head(centred=True), tmp_path / "head.npz")
    model = load_model(_place(tmp_path, networks["embedding"], output="embedding", head="head.npz"))
    step_s = model.voice_step_s  # one window hop: 0.5 s
    assert model.new_voice(30.0).memory_frames == round(30.0 / step_s) == 60
    assert model.new_voice(30.3).memory_frames == 61  # the nearest whole number of windows
    assert model.new_voice(0.0).memory_frames == model.new_voice().memory_frames == 0  # never forgets, unless asked


def test_without_a_head_the_voice_is_of_feature_frames(networks, tmp_path):
    model = load_model(_place(tmp_path, networks["logits"]))
    card = model.card
    assert model.voice_in_front_end is True and model.needs_audio is False
    assert model.voice_step_s == pytest.approx(card.features.hop_samples / card.features.sample_rate_hz)
    assert model.new_voice(30.0) is None  # a per-window-cmvn card keeps no voice
    speaker_card = _place(tmp_path / "spk", networks["logits"], normalisation="per-speaker-cmvn",
                          speaker_prior={"mean": [0.0] * BANDS, "std": [1.0] * BANDS, "weight_frames": 100})
    voice = load_model(speaker_card).new_voice(2.0)
    assert voice is not None and voice.memory_frames == 200  # 2 s of 10 ms frames


def test_an_uncentred_head_keeps_no_voice(networks, tmp_path):
    _save_head(_head(centred=False), tmp_path / "head.npz")
    model = load_model(_place(tmp_path, networks["embedding"], output="embedding", head="head.npz", temperature=1.0))
    assert model.new_voice(10.0) is None
    window = _window(7)
    expected = softmax(_head(centred=False).logits(band_means(window, WIDTH).astype(np.float64), None))
    np.testing.assert_allclose(model.predict(window), expected, rtol=1e-5)


def test_a_copied_shipped_model_loads_from_any_folder(tmp_path):
    shutil.copy(SHIPPED_CARD.with_suffix(".tflite"), tmp_path / "copy.tflite")
    shutil.copy(SHIPPED_CARD, tmp_path / "copy.json")
    model = load_model(tmp_path / "copy.tflite")
    probabilities = model.predict(_window(8))
    assert probabilities.shape == (LABELS,) and probabilities.sum() == pytest.approx(1.0)


ONE_THREAD_PROBE = """
import os, sys
import numpy as np
from serd.model import load_model
before = len(os.listdir("/proc/self/task"))
model = load_model(sys.argv[1])
model.predict(np.zeros((200, 40), np.float32))
print(before, len(os.listdir("/proc/self/task")))
"""


def test_the_interpreter_runs_on_the_calling_thread_alone(tmp_path):
    shutil.copy(SHIPPED_CARD.with_suffix(".tflite"), tmp_path / "copy.tflite")
    shutil.copy(SHIPPED_CARD, tmp_path / "copy.json")
    done = subprocess.run([sys.executable, "-c", ONE_THREAD_PROBE, str(tmp_path / "copy.tflite")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert after == before  # no worker threads: the daemon's CPU budget is one core's share


def test_without_any_tflite_runtime_loading_says_what_to_install(monkeypatch, tmp_path):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                 "tensorflow", "tensorflow.lite"):
        monkeypatch.setitem(sys.modules, name, None)  # each import of them now fails
    with pytest.raises(ModelError, match="^no TFLite runtime: pip install ai-edge-litert$"):
        load_model(SHIPPED_CARD.with_suffix(".tflite"))
