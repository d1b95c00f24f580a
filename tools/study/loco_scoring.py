"""Scores of multi-corpus folds: per corpus, restricted to its classes and not, per class, in each test condition,
calibration (temperature fitted without the corpus scored) and coverage at confidence thresholds."""

from __future__ import annotations

import numpy as np

from serd import affect, metrics
from tools.model import calibrate, corpora, data, recipes

STD_DDOF = 1  # sample standard deviation over corpora (or folds)
COVERAGE_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
NO_PREDICTION = -1  # a clip without speech windows: counted, never right


def oof_windows(done: dict[int, dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold window logits of one kind (clean_int8, clean_float, a condition) and the clip of each."""
    logits = np.concatenate([done[f][key + ("" if key.startswith("clean_") else "_int8")] for f in sorted(done)])
    index_key = "clean_index" if key.startswith("clean_") else key + "_index"
    return logits, np.concatenate([done[f][index_key] for f in sorted(done)])


def clip_probabilities(logits: np.ndarray, clip_index: np.ndarray, n_clips: int, temperature: float = 1.0) -> tuple:
    """Mean window softmax per clip (what `serd analyze` reports) and a mask of the clips that had windows."""
    from tools.model.nn import clip_probs

    if not len(logits):
        return np.zeros((n_clips, len(corpora.LABELS))), np.zeros(n_clips, dtype=bool)
    return clip_probs(logits, clip_index, n_clips, temperature)


def predictions(probs: np.ndarray, seen: np.ndarray, classes: tuple[str, ...] | None) -> np.ndarray:
    """Argmax label index per clip, among classes only when given; NO_PREDICTION where a clip had no windows."""
    allowed = np.array([label in classes for label in corpora.LABELS]) if classes else np.ones(len(corpora.LABELS), bool)
    pred = np.where(allowed[None, :], probs, -1.0).argmax(axis=1)
    return np.where(seen, pred, NO_PREDICTION)


def recall_table(truth: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Recall of each class the clips have."""
    return {label: float(np.mean(pred[truth == corpora.LABELS.index(label)] == corpora.LABELS.index(label)))
            for label in classes if np.any(truth == corpora.LABELS.index(label))}


def uar(truth: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> float:
    """Unweighted average recall over the classes the clips have."""
    table = recall_table(truth, pred, classes)
    return float(np.mean(list(table.values()))) if table else 0.0


def corpus_scores(truth: np.ndarray, probs: np.ndarray, seen: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Restricted and unrestricted UAR, accuracy, per-class recall and confusion of one corpus's clips."""
    restricted = predictions(probs, seen, classes)
    free = predictions(probs, seen, None)
    n = len(corpora.LABELS)
    confusion = metrics.confusion(truth[seen], restricted[seen], n)
    keep = [corpora.LABELS.index(label) for label in classes]
    return {"clips": int(len(truth)), "no_speech": int((~seen).sum()), "classes": list(classes),
            "uar_restricted": uar(truth, restricted, classes), "uar_unrestricted": uar(truth, free, corpora.LABELS),
            "accuracy_restricted": float(np.mean(restricted == truth)),
            "recall_restricted": recall_table(truth, restricted, classes),
            "predicted_share_unrestricted": {label: float(np.mean(free == i)) for i, label in enumerate(corpora.LABELS)},
            "confusion_restricted": confusion[np.ix_(keep, keep)].tolist(),
            "arousal_uar": binary_uar(truth, probs, seen, corpora.HIGH_AROUSAL),
            "valence_uar": binary_uar(truth, probs, seen, corpora.NEGATIVE_VALENCE),
            **circumplex_correlation(truth, probs, seen)}


def circumplex_correlation(truth: np.ndarray, probs: np.ndarray, seen: np.ndarray) -> dict[str, float | None]:
    """Pearson r, over the clips with speech, between the arousal (valence) serd derives from a clip's probabilities
    (serd.affect) and the arousal (valence) of its true label's point; None where the truth does not vary."""
    derived = np.array([affect.coordinates(dict(zip(corpora.LABELS, row))) or (np.nan, np.nan) for row in probs[seen]])
    true_points = np.array([affect.CIRCUMPLEX[corpora.LABELS[t]] for t in truth[seen]])
    out: dict[str, float | None] = {}
    for name, column in (("valence_r", 0), ("arousal_r", 1)):
        x, y = derived[:, column] if len(derived) else np.zeros(0), true_points[:, column] if len(true_points) else np.zeros(0)
        ok = np.isfinite(x)
        out[name] = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 and y[ok].std() > 0 and x[ok].std() > 0 else None
    return out


def binary_uar(truth: np.ndarray, probs: np.ndarray, seen: np.ndarray, side: tuple[str, ...]) -> float | None:
    """UAR of a two-way split of the labels (high/low arousal, negative/other valence): the predicted side is the one
    holding more of the clip's (unrestricted) probability; a clip without speech is wrong. None if one side has no clips."""
    member = np.array([label in side for label in corpora.LABELS])
    true_side = member[truth]
    predicted = probs[:, member].sum(axis=1) >= probs[:, ~member].sum(axis=1)
    right = seen & (predicted == true_side)
    if true_side.all() or not true_side.any():
        return None
    return float((right[true_side].mean() + right[~true_side].mean()) / 2)


def mean_spread(values: list[float]) -> list[float]:
    """[mean, sample std, min, max] of values."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=STD_DDOF)) if len(arr) > 1 else 0.0
    return [float(arr.mean()), std, float(arr.min()), float(arr.max())]


def summarise(clips: list[data.Clip], fold_of_clip: np.ndarray, names: list[str], done: dict[int, dict], protocol: str) -> dict:
    """Everything the card reports of one protocol's finished folds."""
    truth = data.clip_labels(clips, corpora.LABELS)
    corpus = corpora.corpus_index(clips)
    corpus_list = corpora.corpus_names(clips)
    classes = corpora.corpus_classes(clips)
    finished = np.isin(fold_of_clip, sorted(done))
    out = {"folds_done": [names[f] for f in sorted(done)], "folds": names,
           "train_seconds": {names[f]: round(float(done[f]["train_seconds"]), 1) for f in sorted(done)}}
    per_corpus: dict[str, dict] = {}
    last_iterate = ["clean_float_last"] if all("clean_float_last" in done[f] for f in done) else []
    for key in ["clean_int8", "clean_float"] + last_iterate + list(recipes.CONDITIONS):
        probs, seen = clip_probabilities(*oof_windows(done, key), len(clips))
        for c, name in enumerate(corpus_list):
            mine = finished & (corpus == c)
            if not mine.any():
                continue
            scores = corpus_scores(truth[mine], probs[mine], seen[mine], classes[name])
            if key == "clean_int8":
                per_corpus[name] = scores
            else:
                per_corpus.setdefault(name, {}).setdefault("conditions", {})[key] = {
                    "uar_restricted": scores["uar_restricted"], "uar_unrestricted": scores["uar_unrestricted"]}
    out["per_corpus"] = per_corpus
    out["mean"] = {metric: mean_spread([entry[metric] for entry in per_corpus.values()])
                   for metric in ("uar_restricted", "uar_unrestricted")}
    for metric in ("arousal_uar", "valence_uar", "arousal_r", "valence_r"):
        values = [e[metric] for e in per_corpus.values() if e.get(metric) is not None]
        if values:
            out["mean"][metric] = mean_spread(values)
    out["mean"]["float_uar_restricted"] = mean_spread([e["conditions"]["clean_float"]["uar_restricted"] for e in per_corpus.values()])
    if last_iterate:  # weights averaged: the last epoch's network on the same folds, before the mean replaced it
        out["mean"]["last_iterate_float_uar_restricted"] = mean_spread(
            [e["conditions"]["clean_float_last"]["uar_restricted"] for e in per_corpus.values()])
    for condition in recipes.CONDITIONS:
        out["mean"][condition] = mean_spread([e["conditions"][condition]["uar_restricted"] for e in per_corpus.values()])
    out["calibration"] = calibration(clips, done, finished)
    if protocol == "speakers":
        out["per_fold_uar_restricted"] = fold_uars(clips, fold_of_clip, done)
    return out


def fold_uars(clips: list[data.Clip], fold_of_clip: np.ndarray, done: dict[int, dict]) -> dict[str, float]:
    """Per speaker fold: the mean over corpora of the restricted UAR of that fold's clips."""
    truth, corpus = data.clip_labels(clips, corpora.LABELS), corpora.corpus_index(clips)
    classes, names = corpora.corpus_classes(clips), corpora.corpus_names(clips)
    probs, seen = clip_probabilities(*oof_windows(done, "clean_int8"), len(clips))
    out = {}
    for f in sorted(done):
        scores = [uar(truth[m], predictions(probs[m], seen[m], classes[n]), classes[n])
                  for c, n in enumerate(names) for m in [(fold_of_clip == f) & (corpus == c)] if m.any()]
        out[str(f)] = float(np.mean(scores))
    return out


def calibration(clips: list[data.Clip], done: dict[int, dict], finished: np.ndarray) -> dict:
    """Temperature on every out-of-fold clip (what ships), and per corpus the ECE and coverage at a temperature
    fitted on the other corpora's clips only (unrestricted: the daemon does not know a voice's corpus)."""
    truth, corpus = data.clip_labels(clips, corpora.LABELS), corpora.corpus_index(clips)
    logits, index = oof_windows(done, "clean_int8")
    result = {"temperature": calibrate.fit_temperature(logits, index, truth), "per_corpus": {}}
    probs1, seen = clip_probabilities(logits, index, len(clips), 1.0)
    result["ece_at_1"] = {}
    for c, name in enumerate(corpora.corpus_names(clips)):
        mine = finished & (corpus == c)
        others = ~mine[index] & finished[index]
        if not mine.any():
            continue
        t_others = calibrate.fit_temperature(logits[others], index[others], truth) if others.any() else 1.0
        probs, _ = clip_probabilities(logits, index, len(clips), t_others)
        use = mine & seen
        result["per_corpus"][name] = {"temperature_fitted_without": t_others, "ece": metrics.ece(truth[use], probs[use]),
                                      "ece_at_1": metrics.ece(truth[use], probs1[use]),
                                      "mean_confidence": float(probs[use].max(axis=1).mean()),
                                      "accuracy": float(np.mean(probs[use].argmax(axis=1) == truth[use])),
                                      "coverage": coverage_curve(truth[use], probs[use])}
    return result


def coverage_curve(truth: np.ndarray, probs: np.ndarray) -> dict[str, list[float]]:
    """Threshold -> [share of clips whose top probability reaches it, accuracy on those, UAR on those]."""
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    curve = {}
    for threshold in COVERAGE_THRESHOLDS:
        kept = top >= threshold
        covered_uar = uar(truth[kept], pred[kept], corpora.LABELS) if kept.any() else 0.0
        curve["%.2f" % threshold] = [float(kept.mean()), float(np.mean(pred[kept] == truth[kept])) if kept.any() else 0.0, covered_uar]
    return curve
