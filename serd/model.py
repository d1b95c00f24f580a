"""The emotion model: an int8 (or float) TFLite file and its JSON card; the only interpreter import.

A card whose "backend" is "whisper" names the opt-in Whisper-encoder model instead (serd.whisper).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from serd.card import ModelCard
from serd.errors import ModelError
from serd.head import LinearHead
from serd.quiet import quiet_stderr
from serd.shipped import default_model_path, read_card
from serd import speaker
from serd.speaker import SpeakerStats

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = (np.int8, np.float32)


def model_path(path: str | Path | None) -> Path:
    """[model] path: empty = the shipped default, a bare name without suffix = that shipped model, else a file."""
    if not path:
        return default_model_path()
    text = str(path)
    if "/" not in text and not Path(text).suffix:
        return default_model_path(text)
    return Path(text)


def make_interpreter(model_path: Path):
    """A one-thread TFLite interpreter from ai-edge-litert, else tflite_runtime, else tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite import Interpreter
            except ImportError:
                raise ModelError("no TFLite runtime: pip install ai-edge-litert") from None
    try:
        with quiet_stderr():
            interpreter = Interpreter(model_path=str(model_path), num_threads=1)
            interpreter.allocate_tensors()
        return interpreter
    except (ValueError, RuntimeError) as exc:
        raise ModelError("%s: not a TFLite model: %s" % (model_path, str(exc).splitlines()[0])) from None


class WindowModel(Protocol):
    """What the pipeline needs of a model: its card, labels, and window -> calibrated probabilities."""

    card: ModelCard
    needs_audio: bool  # True: predict() reads the window's audio, so the front end must keep it

    voice_in_front_end: bool  # True: the front end applies the voice estimate (log-mel); False: predict() does
    voice_step_s: float  # seconds of speech per observation of the voice estimate

    @property
    def labels(self) -> tuple[str, ...]: ...

    def predict(self, window: np.ndarray, audio: np.ndarray | None = None) -> np.ndarray: ...

    def new_voice(self, memory_s: float = 0.0) -> SpeakerStats | None: ...


class EmotionModel:
    """Runs one normalised window (frames, n_features) to a probability vector over card.labels.

    A card whose output is "embedding" pairs the network (up to its pooled embedding) with a linear head
    (serd.head) that centres each embedding on a running estimate of the voice before its logits."""

    needs_audio = False

    def __init__(self, model_path: Path, card: ModelCard):
        self.path = model_path
        self.card = card
        self._interpreter = make_interpreter(model_path)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._check_tensors()
        self._input_scale, self._input_zero = _quantisation(self._input)
        self._output_scale, self._output_zero = _quantisation(self._output)
        self._input_buffer = np.zeros(self._input["shape"], dtype=self._input["dtype"])
        self._head = None
        self.voice_in_front_end = True  # a log-mel voice estimate (per-speaker-cmvn) is applied by the front end
        self.voice_step_s = card.features.hop_samples / card.features.sample_rate_hz  # one feature frame
        if card.head:
            self._head = LinearHead.load(model_path.parent / card.head, int(self._output["shape"][-1]), len(card.labels))
            self.voice_in_front_end = False  # the head keeps the estimate, over embeddings
            self.voice_step_s = card.window.hop_frames * card.features.hop_samples / card.features.sample_rate_hz  # one window
            self.voice = self.new_voice()

    @property
    def labels(self) -> tuple[str, ...]:
        """Output labels in order."""
        return self.card.labels

    def _check_tensors(self) -> None:
        """Input and output tensors must agree with the card (micro_speech's habit: fail at load)."""
        shape = tuple(int(v) for v in self._input["shape"])
        want = (1, self.card.window.frames, self.card.features.n_features)
        if shape not in (want, want + (1,)):
            raise ModelError("%s: input shape %s does not match the card's window %s" % (self.path, shape, want))
        out_shape = tuple(int(v) for v in self._output["shape"])
        if self.card.output == "embedding":
            if len(out_shape) != 2 or out_shape[0] != 1:
                raise ModelError("%s: output shape %s is not one embedding vector" % (self.path, out_shape))
        elif out_shape != (1, len(self.card.labels)):
            raise ModelError("%s: output shape %s does not match %d labels in the card" % (self.path, out_shape, len(self.card.labels)))
        for tensor in (self._input, self._output):
            if tensor["dtype"] not in SUPPORTED_DTYPES:
                raise ModelError("%s: tensor %s has dtype %s (int8 or float32 expected)" % (self.path, tensor["name"], tensor["dtype"]))

    def new_voice(self, memory_s: float = 0.0) -> SpeakerStats | None:
        """A fresh voice estimate: of embeddings for a speaker-centred head, of log-mel bands for a
        speaker-normalised card, None otherwise; older speech fades after memory_s seconds (0 = never)."""
        if self._head is not None:
            return self._head.new_voice(int(round(memory_s / self.voice_step_s)))
        return speaker.for_card(self.card, memory_s)

    def predict(self, window: np.ndarray, audio: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities (float64, sums to 1) for one window (audio is not used)."""
        values = window.reshape(self._input_buffer.shape)
        if self._input["dtype"] == np.int8:
            values = np.clip(np.round(values / self._input_scale + self._input_zero), -128, 127)
        self._input_buffer[...] = values
        self._interpreter.set_tensor(self._input["index"], self._input_buffer)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])[0].astype(np.float64)
        if self._output["dtype"] == np.int8:
            raw = (raw - self._output_zero) * self._output_scale
        if self.card.output == "probabilities":
            raw = np.log(np.maximum(raw, 1e-9))
        elif self._head is not None:
            raw = self._head.logits(raw, self.voice)
        return softmax(raw / self.card.temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically safe softmax of one vector."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _quantisation(tensor: dict) -> tuple[float, int]:
    """(scale, zero_point) of a tensor; (1, 0) for float tensors."""
    scale, zero = tensor.get("quantization", (0.0, 0))
    if tensor["dtype"] == np.int8 and scale == 0.0:
        raise ModelError("int8 tensor %s has no quantisation parameters" % tensor["name"])
    return (scale or 1.0), int(zero)


def load_model(path: str | Path | None = None) -> WindowModel:
    """Load a model and its card (same name, .json); see model_path for what path may be."""
    found = model_path(path)
    if not found.is_file():
        raise ModelError("%s: model file not found" % found)
    card_path = found.with_suffix(".json")
    card = ModelCard.from_dict(read_card(card_path), card_path)
    if card.backend == "whisper":
        from serd.whisper import WhisperEmotionModel

        model: WindowModel = WhisperEmotionModel(found, card)
    else:
        model = EmotionModel(found, card)
    log.info("model %s %s loaded from %s (%d labels)", card.name, card.version, found, len(card.labels))
    return model
