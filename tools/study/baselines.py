"""Baselines on the same folds: seed-style MFCC (dense net, LSTM) and eGeMAPS functionals + SVM."""

from __future__ import annotations

import functools
import hashlib
import logging

import numpy as np

from serd import metrics
from serd.audio import INT16_FULL_SCALE, load_audio
from tools.model import data

log = logging.getLogger(__name__)

BASELINES = ("mfcc_seed", "egemaps_svm")
SAMPLE_RATE_HZ = 16000
SEED_MFCC = 13
SEED_FRAMES = 40
SEED_EPOCHS = 50
SEED_BATCH = 32
SVM_C_GRID = (1.0, 10.0)
SEED = 1234


def run(name: str, clips: list[data.Clip], fold_of_clip: np.ndarray) -> dict:
    """Out-of-fold clip posteriors of one baseline family: {baseline: {description, probs}}."""
    if name == "mfcc_seed":
        return mfcc_seed(clips, fold_of_clip)
    return egemaps_svm(clips, fold_of_clip)


def prepare(clips: list[data.Clip]) -> None:
    """Compute the baseline feature caches (before any TensorFlow import)."""
    _cached("seed_mfcc", clips, seed_mfcc)
    _cached("egemaps", clips, egemaps)


def _cached(kind: str, clips: list[data.Clip], compute) -> np.ndarray:
    """Per-clip features, stored under .cache/baselines keyed by the clip list."""
    digest = hashlib.sha1("|".join(clip.path for clip in clips).encode()).hexdigest()[:16]
    path = data.cache_dir("baselines") / ("%s_%s.npy" % (kind, digest))
    if path.is_file():
        return np.load(path)
    features = np.stack([compute(load_audio(clip.path).astype(np.float32) / INT16_FULL_SCALE) for clip in clips])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


def seed_mfcc(audio: np.ndarray) -> np.ndarray:
    """13 MFCC x 40 frames from the clip start (librosa defaults), zero-padded: (40, 13)."""
    import librosa

    mfcc = librosa.feature.mfcc(y=audio, sr=SAMPLE_RATE_HZ, n_mfcc=SEED_MFCC).T[:SEED_FRAMES]
    return np.pad(mfcc, ((0, SEED_FRAMES - len(mfcc)), (0, 0))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _smile():
    """One openSMILE eGeMAPSv02 functionals extractor per process (building it is slow)."""
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)


def egemaps(audio: np.ndarray) -> np.ndarray:
    """The 88 eGeMAPSv02 functionals of a clip."""
    return _smile().process_signal(audio, SAMPLE_RATE_HZ).to_numpy()[0].astype(np.float32)


def mfcc_seed(clips: list[data.Clip], fold_of_clip: np.ndarray) -> dict:
    """Dense net and LSTM on seed-style MFCC, trained per fold."""
    features = _cached("seed_mfcc", clips, seed_mfcc)
    labels = data.clip_labels(clips)
    out = {}
    for kind, description in (("dense", "13 MFCC x 40 start frames, dense net"), ("lstm", "13 MFCC x 40 start frames, LSTM")):
        probs = np.zeros((len(clips), len(data.LABELS)))
        for fold in range(data.N_FOLDS):
            test = fold_of_clip == fold
            probs[test] = _fit_seed_net(kind, features[~test], labels[~test], features[test])
        out["mfcc_%s" % kind] = {"description": description, "probs": probs}
    return out


def _seed_net(kind: str):
    """The seed projects' small nets: dense (~75 k parameters) or LSTM (~22 k)."""
    from tools.model.nn import tf_setup

    tf = tf_setup(SEED)
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(SEED_FRAMES, SEED_MFCC))
    if kind == "dense":
        x = layers.Dense(64, activation="relu")(layers.Dropout(0.2)(layers.Dense(128, activation="relu")(layers.Flatten()(inputs))))
    else:
        x = layers.LSTM(64)(inputs)
    outputs = layers.Dense(len(data.LABELS))(layers.Dropout(0.2)(x))
    return tf.keras.Model(inputs, outputs)


def _fit_seed_net(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Standardise with training statistics, train with balanced classes, return test softmaxes."""
    import tensorflow as tf

    mean, std = x_train.mean(axis=(0, 1)), x_train.std(axis=(0, 1)) + 1e-6
    net = _seed_net(kind)
    net.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = np.bincount(y_train, minlength=len(data.LABELS))
    weights = {i: len(y_train) / (len(counts) * max(c, 1)) for i, c in enumerate(counts)}
    net.fit((x_train - mean) / std, y_train, epochs=SEED_EPOCHS, batch_size=SEED_BATCH, class_weight=weights, verbose=0)
    return metrics.softmax(net.predict((x_test - mean) / std, verbose=0))


def _full_columns(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Scores over the classes seen in training spread into one column per label (0 elsewhere)."""
    full = np.zeros((len(scores), len(data.LABELS)))
    full[:, classes] = scores
    return full


def egemaps_svm(clips: list[data.Clip], fold_of_clip: np.ndarray) -> dict:
    """eGeMAPS functionals + RBF SVM (balanced classes); the better C of SVM_C_GRID on these folds."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    features = _cached("egemaps", clips, egemaps)
    labels = data.clip_labels(clips)
    best: tuple[float, float, np.ndarray] | None = None
    for c in SVM_C_GRID:
        scores = np.zeros((len(clips), len(data.LABELS)))
        for fold in range(data.N_FOLDS):
            test = fold_of_clip == fold
            svm = make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced", decision_function_shape="ovr"))
            svm.fit(features[~test], labels[~test])
            scores[test] = _full_columns(metrics.softmax(svm.decision_function(features[test])), svm.classes_)
        score = metrics.uar(labels, scores.argmax(1), len(data.LABELS))
        if best is None or score > best[0]:
            best = (score, c, scores)
    description = "eGeMAPSv02 functionals (88), RBF SVM, C=%g (best of %s on these folds)" % (best[1], list(SVM_C_GRID))
    return {"egemaps_svm": {"description": description, "probs": best[2]}}
