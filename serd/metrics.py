"""Classification metrics in numpy: accuracy, UAR, macro-F1, per-class scores, confusion, ECE.

Scores that average over classes (UAR, macro-F1) use the classes present in the true labels, so
a corpus without some of the model's classes is not charged for them.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def confusion(true_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, shape (n_classes, n_classes)."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_idx, dtype=np.int64), np.asarray(pred_idx, dtype=np.int64)), 1)
    return matrix


def accuracy(true_idx: np.ndarray, pred_idx: np.ndarray) -> float:
    """Share of correct predictions (0.0 for no items)."""
    true_idx, pred_idx = np.asarray(true_idx), np.asarray(pred_idx)
    return float(np.mean(true_idx == pred_idx)) if len(true_idx) else 0.0


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, f1 and support per class from a confusion matrix (0 where undefined)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_div(hits, predicted)
    recall = _safe_div(hits, support)
    f1 = _safe_div(2.0 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def uar(true_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall over the classes present in true_idx."""
    scores = per_class(confusion(true_idx, pred_idx, n_classes))
    present = scores["support"] > 0
    return float(scores["recall"][present].mean()) if present.any() else 0.0


def macro_f1(true_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in true_idx."""
    scores = per_class(confusion(true_idx, pred_idx, n_classes))
    present = scores["support"] > 0
    return float(scores["f1"][present].mean()) if present.any() else 0.0


def ece(true_idx: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label over n_bins equal-width confidence bins."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(true_idx)).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        members = bins == b
        total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(probs))


def label_indices(names: list[str], labels: list[str]) -> np.ndarray:
    """Positions of names in labels; ValueError names the first unknown label."""
    position = {label: i for i, label in enumerate(labels)}
    unknown = [name for name in names if name not in position]
    if unknown:
        raise ValueError("label %r is not one of the model's labels %s" % (unknown[0], labels))
    return np.array([position[name] for name in names], dtype=np.int64)


def evaluate(true_labels: list[str], prob_rows: np.ndarray, labels: list[str], undefined: float | None = 0.0) -> dict:
    """Clip-level report: accuracy, uar, macro_f1, ece, labels, per_class, confusion (JSON-ready).

    undefined is what per_class says where a score cannot be computed: recall (and f1) of a class
    without clips, precision of a class never predicted; None gives JSON null.
    """
    probs = np.asarray(prob_rows, dtype=np.float64).reshape(len(true_labels), len(labels))
    true_idx = label_indices(list(true_labels), list(labels))
    pred_idx = probs.argmax(axis=1)
    matrix = confusion(true_idx, pred_idx, len(labels))
    scores = per_class(matrix)
    return {
        "accuracy": accuracy(true_idx, pred_idx),
        "uar": uar(true_idx, pred_idx, len(labels)),
        "macro_f1": macro_f1(true_idx, pred_idx, len(labels)),
        "ece": ece(true_idx, probs),
        "labels": list(labels),
        "per_class": _per_class_dict(scores, labels, matrix.sum(axis=0), undefined),
        "confusion": matrix.tolist(),
    }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def _per_class_dict(scores: dict[str, np.ndarray], labels: list[str], predicted: np.ndarray, undefined: float | None) -> dict[str, dict]:
    """{label: {precision, recall, f1, support}} with plain Python numbers; undefined where a score has no meaning."""
    table = {}
    for i, label in enumerate(labels):
        has_clips, was_predicted = scores["support"][i] > 0, predicted[i] > 0
        table[label] = {
            "precision": float(scores["precision"][i]) if was_predicted else undefined,
            "recall": float(scores["recall"][i]) if has_clips else undefined,
            "f1": float(scores["f1"][i]) if has_clips else undefined,
            "support": int(scores["support"][i]),
        }
    return table


def _safe_div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
