"""The model's JSON card: every field read with its JSON type and checked against what the runtime can serve.

A card is read once, at load (start or reload); anything the stages downstream would divide by, index with or
compare against is checked here, so a bad card is one line naming its field and never an error deep in a stage.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serd.errors import ModelError
from serd.features import FeatureParams
from serd.speaker import SpeakerPrior
from serd.vad import VAD_FRAME_MS_ALLOWED, VadParams
from serd.windows import WindowParams

SUPPORTED_SAMPLE_RATE_HZ = 16000
SUPPORTED_NORMALISATION = ("per-window-cmvn", "per-speaker-cmvn")  # the second needs the card's speaker_prior
SUPPORTED_OUTPUTS = ("logits", "probabilities", "embedding")  # "embedding": the card's head turns it into logits
SUPPORTED_BACKENDS = ("tflite", "whisper")
SUPPORTED_FEATURE_KINDS = ("logmel", "mfcc", "logmel_pitch")  # the last: log-mel bands, then pitch salience bins
RESERVED_LABELS = ("silence", "uncertain")  # what serd itself says when there is no speech or no confident emotion


class CardFieldError(ValueError):
    """One field of a card is missing, of the wrong JSON type or out of range; the message names it."""


def _typed(field: str, value: Any, kind: type) -> Any:
    """value as kind, strictly by JSON type: an integer field takes an integral number (not a string or a
    boolean), a number field any finite number, a text field a string."""
    if kind is dict:
        if isinstance(value, dict):
            return value
        raise CardFieldError("%s: must be an object" % field)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise CardFieldError("%s: %r is not true or false" % (field, value))
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CardFieldError("%s: %r is not a number" % (field, value))
        if not math.isfinite(value):
            raise CardFieldError("%s: %r is not a finite number" % (field, value))
        if kind is int:
            if value != int(value):
                raise CardFieldError("%s: %r is not a whole number" % (field, value))
            return int(value)
        return float(value)
    if not isinstance(value, str):
        raise CardFieldError("%s: %r is not a string" % (field, value))
    return value


def _section(cls: type, data: Any, name: str):
    """A card section (an object of typed fields, each with a default) as its dataclass; unknown keys are errors."""
    if not isinstance(data, dict):
        raise CardFieldError("%s: must be an object" % name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed = {}
    for key, value in data.items():
        if key not in fields:
            raise CardFieldError("%s.%s: unknown field" % (name, key))
        typed[key] = _typed("%s.%s" % (name, key), value, type(fields[key].default))
    return cls(**typed)


def _field(data: dict, key: str, kind: type, default: Any = None) -> Any:
    """A top-level field of the card (default None: required)."""
    if key not in data:
        if default is None:
            raise CardFieldError("%s: missing" % key)
        return default
    return _typed(key, data[key], kind)


def _labels(value: Any) -> tuple[str, ...]:
    """The card's labels: a list of two or more distinct, non-empty names, none of them a name serd reserves."""
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise CardFieldError("labels: must be a list of names")
    if len(value) < 2 or len(set(value)) != len(value) or not all(label.strip() for label in value):
        raise CardFieldError("labels: must be two or more distinct, non-empty names")
    reserved = [label for label in value if label in RESERVED_LABELS]
    if reserved:
        raise CardFieldError("labels: %r is what serd says itself (%s are reserved)" % (reserved[0], " and ".join(RESERVED_LABELS)))
    return tuple(value)


def _training(data: dict) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(manifests, label_folding) of the card's training record (optional; only eval reads it)."""
    training = data.get("training") or {}
    if not isinstance(training, dict):
        raise CardFieldError("training: must be an object")
    manifests, folding = training.get("manifests", []), training.get("label_folding") or {}
    if not isinstance(manifests, list) or not all(isinstance(m, str) for m in manifests):
        raise CardFieldError("training.manifests: must be a list of paths")
    if not isinstance(folding, dict) or not all(isinstance(v, str) for v in folding.values()):
        raise CardFieldError("training.label_folding: must map corpus emotions to labels")
    return tuple(manifests), tuple(folding.items())


def _ranges(card: "ModelCard") -> list[str]:
    """What the stages need of the geometry: positive hops and sizes, windows that fit, bands below Nyquist."""
    f, w, v = card.features, card.window, card.vad
    checks = (
        (f.kind in SUPPORTED_FEATURE_KINDS, "features.kind %r unknown (%s)" % (f.kind, ", ".join(SUPPORTED_FEATURE_KINDS))),
        (f.frame_samples >= 1, "features.frame_samples must be positive"),
        (f.hop_samples >= 1, "features.hop_samples must be positive"),
        (f.n_fft >= f.frame_samples, "features.n_fft must be at least features.frame_samples"),
        (f.n_mels >= 1, "features.n_mels must be positive"),
        (f.kind != "mfcc" or 1 <= f.n_mfcc <= f.n_mels, "features.n_mfcc must be 1 to features.n_mels"),
        (f.kind != "logmel_pitch" or f.pitch_bins >= 1, "features.pitch_bins must be positive"),
        (f.kind != "logmel_pitch" or 0.0 < f.pitch_fmin_hz < f.pitch_fmax_hz <= f.sample_rate_hz / 4,
         "features.pitch_fmin_hz must be above 0 and below features.pitch_fmax_hz, at most a quarter of the sample rate"),
        (f.kind != "logmel_pitch" or f.pitch_fmin_hz <= 0.0 or f.sample_rate_hz / f.pitch_fmin_hz < f.frame_samples - 1,
         "features.pitch_fmin_hz must have its period inside features.frame_samples"),
        (0.0 <= f.fmin_hz < f.fmax_hz, "features.fmin_hz must be at least 0 and below features.fmax_hz"),
        (f.fmax_hz <= f.sample_rate_hz / 2, "features.fmax_hz must not exceed the Nyquist frequency (%g Hz)" % (f.sample_rate_hz / 2)),
        (w.frames >= 1, "window.frames must be positive"),
        (w.hop_frames >= 1, "window.hop_frames must be positive"),
        (1 <= w.min_frames <= w.frames, "window.min_frames must be 1 to window.frames"),
        (0 <= v.aggressiveness <= 3, "vad.aggressiveness must be 0 to 3"),
        (v.frame_ms in VAD_FRAME_MS_ALLOWED, "vad.frame_ms must be one of %s" % ", ".join(map(str, VAD_FRAME_MS_ALLOWED))),
        (min(v.min_speech_ms, v.hangover_ms, v.pre_roll_ms) >= 0, "vad durations must not be negative"),
    )
    return [reason for ok, reason in checks if not ok]


@dataclass(frozen=True)
class ModelCard:
    """What the runtime needs from the model's JSON card."""

    name: str
    version: str
    labels: tuple[str, ...]
    sample_rate_hz: int
    features: FeatureParams
    window: WindowParams
    vad: VadParams
    normalisation: str
    output: str
    temperature: float
    backend: str = "tflite"
    speaker_prior: SpeakerPrior | None = None
    head: str = ""  # output "embedding": the head .npz (serd.head), relative to the card
    training_manifests: tuple[str, ...] = ()  # training.manifests: absolute, or relative to the training checkout's parent
    label_folding: tuple[tuple[str, str], ...] = ()  # training.label_folding: corpus emotions the model reads as one of its labels

    @classmethod
    def from_dict(cls, data: Any, source: Path) -> "ModelCard":
        """Parse and check a card; ModelError names the file and the field."""
        try:
            if not isinstance(data, dict):
                raise CardFieldError("must be a JSON object")
            manifests, folding = _training(data)
            card = cls(
                name=_field(data, "name", str),
                version=str(data.get("version", "0")),
                labels=_labels(data.get("labels")),
                sample_rate_hz=_field(data, "sample_rate_hz", int),
                features=_section(FeatureParams, _field(data, "features", dict), "features"),
                window=_section(WindowParams, _field(data, "window", dict), "window"),
                vad=_section(VadParams, data.get("vad", {}), "vad"),
                normalisation=_field(data, "normalisation", str),
                output=_field(data, "output", str, "logits"),
                temperature=_field(data, "temperature", float, 1.0),
                backend=_field(data, "backend", str, "tflite"),
                speaker_prior=SpeakerPrior.from_dict(data["speaker_prior"]) if "speaker_prior" in data else None,
                head=_field(data, "head", str, ""),
                training_manifests=manifests,
                label_folding=folding,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError("%s: bad model card: %s" % (source, exc if isinstance(exc, CardFieldError)
                                                           else "%s %s" % (type(exc).__name__, exc))) from None
        card.check(source)
        return card

    def check(self, source: Path) -> None:
        """Values the runtime can serve."""
        problems = _ranges(self)
        if self.sample_rate_hz != SUPPORTED_SAMPLE_RATE_HZ:
            problems.append("sample_rate_hz %d (serd runs at %d)" % (self.sample_rate_hz, SUPPORTED_SAMPLE_RATE_HZ))
        if self.features.sample_rate_hz != self.sample_rate_hz:
            problems.append("features.sample_rate_hz differs from sample_rate_hz")
        if self.normalisation not in SUPPORTED_NORMALISATION:
            problems.append("normalisation %r unknown" % self.normalisation)
        if self.normalisation == "per-speaker-cmvn":
            if self.speaker_prior is None:
                problems.append("normalisation per-speaker-cmvn needs a speaker_prior")
            elif len(self.speaker_prior.mean) != self.features.n_features:
                problems.append("speaker_prior has %d bands, features %d" % (len(self.speaker_prior.mean), self.features.n_features))
        if self.output not in SUPPORTED_OUTPUTS:
            problems.append("output %r unknown" % self.output)
        if (self.output == "embedding") != bool(self.head):
            problems.append("output embedding and a head file go together")
        if self.head and self.normalisation != "per-window-cmvn":
            problems.append("a head centres its own features; normalisation must be per-window-cmvn")
        if self.temperature <= 0:
            problems.append("temperature must be positive")
        if self.backend not in SUPPORTED_BACKENDS:
            problems.append("backend %r unknown (%s)" % (self.backend, ", ".join(SUPPORTED_BACKENDS)))
        if problems:
            raise ModelError("%s: %s" % (source, "; ".join(problems)))
