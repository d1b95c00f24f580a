"""Speaker normalisation: each feature band centred and scaled by a running estimate of the voice's own
mean and spread, so the model hears how a voice moves away from its own average."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_FLOOR = 1e-5


@dataclass(frozen=True)
class SpeakerPrior:
    """Where the estimate starts, from the model's card: the training speakers' average per-band
    mean and standard deviation, counted as weight_frames frames of speech."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight_frames: int

    @classmethod
    def from_dict(cls, data: dict) -> "SpeakerPrior":
        """Build from the card's "speaker_prior" object."""
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        if len(mean) != len(std) or not mean:
            raise ValueError("speaker_prior: mean and std need the same, non-zero length")
        if min(std) <= 0 or int(data["weight_frames"]) < 1:
            raise ValueError("speaker_prior: std must be positive and weight_frames at least 1")
        return cls(mean, std, int(data["weight_frames"]))

    def to_dict(self) -> dict:
        """The card's "speaker_prior" object."""
        return {"mean": [round(v, 5) for v in self.mean], "std": [round(v, 5) for v in self.std],
                "weight_frames": self.weight_frames}


class SpeakerStats:
    """Running per-band mean and variance of the speech frames heard, started from a prior.

    With memory_frames > 0 older frames fade with that time constant (in frames of speech), so a new
    voice takes over; with 0 every frame counts for ever.
    """

    def __init__(self, prior: SpeakerPrior, memory_frames: int = 0):
        self.prior = prior
        self.memory_frames = memory_frames
        self.reset()

    def reset(self) -> None:
        """Forget the voice: back to the prior."""
        mean, std = np.asarray(self.prior.mean), np.asarray(self.prior.std)
        self._weight = float(self.prior.weight_frames)
        self._sum = mean * self._weight
        self._sum_sq = (std**2 + mean**2) * self._weight
        self.frames_heard = 0

    def observe(self, frames: np.ndarray) -> None:
        """Add speech frames (frames, n_features) to the estimate."""
        if len(frames) == 0:
            return
        if self.memory_frames > 0:
            keep = np.exp(-len(frames) / self.memory_frames)
            self._weight *= keep
            self._sum *= keep
            self._sum_sq *= keep
        values = np.asarray(frames, dtype=np.float64)
        self._weight += len(values)
        self._sum += values.sum(axis=0)
        self._sum_sq += (values**2).sum(axis=0)
        self.frames_heard += len(values)

    @property
    def mean(self) -> np.ndarray:
        """Current per-band mean."""
        return self._sum / self._weight

    @property
    def std(self) -> np.ndarray:
        """Current per-band standard deviation."""
        return np.sqrt(np.maximum(self._sum_sq / self._weight - self.mean**2, 0.0))

    def normalise(self, window: np.ndarray) -> np.ndarray:
        """A raw window (frames, n_features) centred and scaled by the current estimate, float32."""
        return ((window - self.mean) / (self.std + STD_FLOOR)).astype(np.float32)


def for_card(card, memory_s: float = 0.0) -> SpeakerStats | None:
    """A fresh running estimate for a model card that asks for speaker normalisation, else None."""
    if card.normalisation != "per-speaker-cmvn":
        return None
    frames_per_s = card.features.sample_rate_hz / card.features.hop_samples
    return SpeakerStats(card.speaker_prior, int(round(memory_s * frames_per_s)))


def front_end_voice(model, voice: SpeakerStats | None) -> SpeakerStats | None:
    """Put voice where the model applies it: returned for the front end (log-mel normalisation), or set as
    model.voice (a model that centres its own features, which then returns None)."""
    if model.voice_in_front_end:
        return voice
    model.voice = voice
    return None
