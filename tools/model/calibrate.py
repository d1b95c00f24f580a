"""Temperature scaling at clip level: clip posterior = mean over windows of softmax(logits / T)."""

from __future__ import annotations

import numpy as np

from serd.metrics import softmax

TEMPERATURE_GRID = np.round(np.arange(0.5, 10.001, 0.05), 2)  # a window head of a big encoder can want T > 5 on unseen corpora
PROB_FLOOR = 1e-12


def clip_nll(window_logits: np.ndarray, clip_index: np.ndarray, clip_labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true label under the clip-averaged posterior."""
    probs = softmax(window_logits, temperature)
    n_clips = len(clip_labels)
    sums = np.zeros((n_clips, probs.shape[1]))
    np.add.at(sums, clip_index, probs)
    counts = np.bincount(clip_index, minlength=n_clips)
    seen = counts > 0
    clip_post = sums[seen] / counts[seen, None]
    truth = clip_labels[seen]
    return float(-np.mean(np.log(np.maximum(clip_post[np.arange(len(truth)), truth], PROB_FLOOR))))


def fit_temperature(window_logits: np.ndarray, clip_index: np.ndarray, clip_labels: np.ndarray) -> float:
    """The grid temperature with the lowest clip-level NLL."""
    losses = [clip_nll(window_logits, clip_index, clip_labels, float(t)) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])
