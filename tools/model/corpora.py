"""Many corpora as one training set: the shared labels, each corpus's classes, balanced draws, corpus folds."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tools.model import data

log = logging.getLogger(__name__)

LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")  # what the corpora share
FOLDED = {"calm": "neutral"}  # RAVDESS's calm is a low-arousal neutral
# Binary arousal and valence of each label, as cross-corpus studies map categorical emotions (Schuller et al. 2010,
# "Cross-corpus acoustic emotion recognition: variances and strategies", IEEE Trans. Affective Computing 1(2)):
# low arousal neutral, sad, disgust; negative valence sad, angry, fearful, disgust.
HIGH_AROUSAL = ("happy", "angry", "fearful", "surprised")
NEGATIVE_VALENCE = ("sad", "angry", "fearful", "disgust")
CORPORA_DIR = data.SHARED_DIR / "corpora"


def default_manifests() -> list[Path]:
    """Every MANIFEST.tsv under the shared corpora, in name order."""
    return sorted(CORPORA_DIR.glob("*/MANIFEST.tsv"))


def corpus_of(clip: data.Clip) -> str:
    """The corpus (manifest folder) a clip comes from: the prefix of its speaker key."""
    return clip.speaker.split(":", 1)[0]


def read_clips(paths: list[Path], labels: tuple[str, ...] = LABELS) -> list[data.Clip]:
    """Clips of the manifests with calm folded into neutral; emotions outside labels are skipped."""
    clips = [data.Clip(c.path, c.speaker, FOLDED.get(c.emotion, c.emotion), c.duration_s)
             for c in data.serd_manifest.read_manifests(list(paths))]
    kept = [clip for clip in clips if clip.emotion in labels]
    if len(kept) < len(clips):
        log.info("skipped %d clips with emotions outside %s", len(clips) - len(kept), ", ".join(labels))
    return kept


def corpus_names(clips: list[data.Clip]) -> list[str]:
    """The corpora of the clips, in name order."""
    return sorted({corpus_of(clip) for clip in clips})


def corpus_index(clips: list[data.Clip]) -> np.ndarray:
    """Corpus number (in name order) of every clip."""
    position = {name: i for i, name in enumerate(corpus_names(clips))}
    return np.array([position[corpus_of(clip)] for clip in clips], dtype=np.int64)


def corpus_classes(clips: list[data.Clip], labels: tuple[str, ...] = LABELS) -> dict[str, tuple[str, ...]]:
    """Corpus -> the labels it has clips of, in label order."""
    present: dict[str, set[str]] = {}
    for clip in clips:
        present.setdefault(corpus_of(clip), set()).add(clip.emotion)
    return {corpus: tuple(label for label in labels if label in seen) for corpus, seen in sorted(present.items())}


def class_masks(clips: list[data.Clip], labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """(n_clips, n_labels) float32: 1 where the clip's corpus has that class, so an absent class is never taught as wrong."""
    classes = corpus_classes(clips, labels)
    rows = {corpus: np.array([label in have for label in labels], dtype=np.float32) for corpus, have in classes.items()}
    return np.stack([rows[corpus_of(clip)] for clip in clips]) if clips else np.zeros((0, len(labels)), np.float32)


def draw_probabilities(clips: list[data.Clip]) -> np.ndarray:
    """Probability of drawing each clip: every corpus equal, within a corpus every speaker and class cell equal."""
    cells: dict[tuple[str, str, str], int] = {}
    for clip in clips:
        key = (corpus_of(clip), clip.speaker, clip.emotion)
        cells[key] = cells.get(key, 0) + 1
    cells_per_corpus: dict[str, int] = {}
    for corpus, _, _ in cells:
        cells_per_corpus[corpus] = cells_per_corpus.get(corpus, 0) + 1
    n_corpora = len(cells_per_corpus)
    weights = np.array([1.0 / (n_corpora * cells_per_corpus[corpus_of(clip)] * cells[(corpus_of(clip), clip.speaker, clip.emotion)])
                        for clip in clips])
    return weights / weights.sum()
