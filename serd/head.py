"""A linear head over a window's pooled features, optionally centred on a running estimate of the voice.

Both the opt-in whisper backend (pooled encoder features) and a speaker-centred serd-emotion model (the
network's pooled embedding) end in one: an .npz with the standardisation (mean, scale), the weights and
bias, and for a speaker-centred head the training speakers' mean features (centre_prior), where the
estimate of a new voice starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serd.errors import ModelError
from serd.speaker import SpeakerPrior, SpeakerStats

HEAD_ARRAYS = ("mean", "scale", "weights", "bias")
CENTRE_PRIOR_WINDOWS = 5  # the training speakers' mean counts as this many windows of a new voice


@dataclass(frozen=True)
class LinearHead:
    """Standardised features -> logits, centred first on the voice estimate when the head was trained so."""

    mean: np.ndarray  # (width,)
    scale: np.ndarray  # (width,)
    weights: np.ndarray  # (width, n_labels)
    bias: np.ndarray  # (n_labels,)
    centre_prior: np.ndarray | None  # (width,) for a speaker-centred head

    @classmethod
    def load(cls, path: Path, width: int, n_labels: int) -> "LinearHead":
        """A head .npz checked against the feature width and the card's labels; ModelError names the file."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = [np.asarray(stored[name], dtype=np.float64) for name in HEAD_ARRAYS]
                prior = np.asarray(stored["centre_prior"], dtype=np.float64) if "centre_prior" in stored.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError("%s: not a head (.npz with %s): %s" % (path, ", ".join(HEAD_ARRAYS), exc)) from None
        mean, scale, weights, bias = arrays
        if mean.shape != (width,) or scale.shape != (width,) or weights.shape != (width, n_labels) or bias.shape != (n_labels,):
            raise ModelError("%s: head shapes %s do not fit %d features and %d labels" % (path, [a.shape for a in arrays], width, n_labels))
        if np.any(scale <= 0):
            raise ModelError("%s: head scale must be positive" % path)
        if prior is not None and prior.shape != (width,):
            raise ModelError("%s: centre_prior has shape %s, not (%d,)" % (path, prior.shape, width))
        return cls(mean, scale, weights, bias, prior)

    def new_voice(self, memory_windows: int = 0) -> SpeakerStats | None:
        """A fresh voice estimate for a speaker-centred head (None otherwise); older windows fade after
        memory_windows windows (0 = never)."""
        if self.centre_prior is None:
            return None
        prior = SpeakerPrior(tuple(self.centre_prior), (1.0,) * len(self.centre_prior), CENTRE_PRIOR_WINDOWS)
        return SpeakerStats(prior, memory_windows)

    def logits(self, features: np.ndarray, voice: SpeakerStats | None = None) -> np.ndarray:
        """(n_labels,) logits of one window's features; a voice estimate first hears the window, then centres it."""
        values = np.asarray(features, dtype=np.float64)
        if voice is not None:
            voice.observe(values[None, :])
            values = values - voice.mean
        return ((values - self.mean) / self.scale) @ self.weights + self.bias
