"""serd.metrics against hand-computed cases and scikit-learn."""

import numpy as np
import pytest

from serd import metrics

LABELS = ["a", "b", "c"]


def one_hot_rows(pred_idx, n=3, confidence=1.0):
    """Probability rows putting `confidence` on each predicted class, the rest spread evenly."""
    rows = np.full((len(pred_idx), n), (1.0 - confidence) / (n - 1))
    rows[np.arange(len(pred_idx)), pred_idx] = confidence
    return rows


def test_confusion_counts_rows_true_columns_predicted():
    matrix = metrics.confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_hand_computed_scores():
    true_idx = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred_idx = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    assert metrics.accuracy(true_idx, pred_idx) == pytest.approx(6 / 8)
    # recalls 3/4, 1/2, 2/2 -> UAR 0.75
    assert metrics.uar(true_idx, pred_idx, 3) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    scores = metrics.per_class(metrics.confusion(true_idx, pred_idx, 3))
    assert scores["precision"].tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert scores["support"].tolist() == [4, 2, 2]
    f1 = [2 * 1.0 * 0.75 / 1.75, 0.5, 2 * (2 / 3) * 1.0 / (5 / 3)]
    assert metrics.macro_f1(true_idx, pred_idx, 3) == pytest.approx(np.mean(f1))


def test_absent_classes_are_not_averaged_and_never_divide_by_zero():
    true_idx = np.array([0, 0, 1])
    pred_idx = np.array([0, 2, 1])
    assert metrics.uar(true_idx, pred_idx, 3) == pytest.approx((0.5 + 1.0) / 2)
    scores = metrics.per_class(metrics.confusion(true_idx, pred_idx, 3))
    assert scores["recall"][2] == 0.0 and scores["precision"][2] == 0.0 and scores["f1"][2] == 0.0


def test_ece_hand_computed():
    # 4 rows at confidence 0.9 (3 right) and 2 rows at 0.6 (1 right): |0.75-0.9|*4/6 + |0.5-0.6|*2/6
    probs = np.vstack([one_hot_rows([0, 0, 0, 0], confidence=0.9), one_hot_rows([1, 1], confidence=0.6)])
    true_idx = np.array([0, 0, 0, 1, 1, 0])
    assert metrics.ece(true_idx, probs) == pytest.approx(0.15 * 4 / 6 + 0.1 * 2 / 6)


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = one_hot_rows([0, 1, 2, 0], confidence=1.0)
    assert metrics.ece(np.array([0, 1, 2, 0]), probs) == 0.0


def test_softmax_with_temperature_flattens():
    logits = np.array([[2.0, 0.0, 0.0]])
    sharp, flat = metrics.softmax(logits), metrics.softmax(logits, temperature=4.0)
    assert sharp.sum() == pytest.approx(1.0) and flat.sum() == pytest.approx(1.0)
    assert sharp[0, 0] == pytest.approx(np.e**2 / (np.e**2 + 2)) and flat[0, 0] < sharp[0, 0]


def test_evaluate_report_shape_and_values():
    report = metrics.evaluate(["a", "a", "b", "c"], one_hot_rows([0, 1, 1, 2], confidence=0.8), LABELS)
    assert set(report) == {"accuracy", "uar", "macro_f1", "ece", "labels", "per_class", "confusion"}
    assert report["labels"] == LABELS
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["uar"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert report["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert report["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert report["ece"] == pytest.approx(0.05)


def test_evaluate_rejects_unknown_label():
    with pytest.raises(ValueError, match="'z'"):
        metrics.evaluate(["a", "z"], one_hot_rows([0, 1]), LABELS)


def test_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    true_idx = rng.integers(0, 6, size=500)
    pred_idx = np.where(rng.random(500) < 0.5, true_idx, rng.integers(0, 6, size=500))
    assert metrics.accuracy(true_idx, pred_idx) == pytest.approx(sk.accuracy_score(true_idx, pred_idx))
    assert metrics.uar(true_idx, pred_idx, 6) == pytest.approx(sk.balanced_accuracy_score(true_idx, pred_idx))
    assert metrics.macro_f1(true_idx, pred_idx, 6) == pytest.approx(sk.f1_score(true_idx, pred_idx, average="macro"))
    assert metrics.confusion(true_idx, pred_idx, 6).tolist() == sk.confusion_matrix(true_idx, pred_idx, labels=range(6)).tolist()
    precision, recall, f1, support = sk.precision_recall_fscore_support(true_idx, pred_idx, labels=range(6), zero_division=0)
    scores = metrics.per_class(metrics.confusion(true_idx, pred_idx, 6))
    assert scores["precision"] == pytest.approx(precision) and scores["recall"] == pytest.approx(recall)
    assert scores["f1"] == pytest.approx(f1) and scores["support"].tolist() == support.tolist()


def test_macro_f1_matches_sklearn_on_present_classes():
    sk = pytest.importorskip("sklearn.metrics")
    true_idx = np.array([0, 0, 1, 1, 1])
    pred_idx = np.array([0, 2, 1, 1, 0])
    expected = sk.f1_score(true_idx, pred_idx, labels=[0, 1], average="macro")
    assert metrics.macro_f1(true_idx, pred_idx, 3) == pytest.approx(expected)


def test_undefined_scores_can_be_null():
    # class c has no clips but is predicted once; class b has clips but is never predicted
    report = metrics.evaluate(["a", "a", "b"], one_hot_rows([0, 2, 0]), LABELS, undefined=None)
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}
    assert report["per_class"]["b"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["uar"] == pytest.approx((0.5 + 0.0) / 2), "UAR averages over the classes with clips"
    zero = metrics.evaluate(["a", "a", "b"], one_hot_rows([0, 2, 0]), LABELS)
    assert zero["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert zero["per_class"]["b"]["precision"] == 0.0
