"""The CV ensemble evaluation (tools.ensemble) and the fold-cache key it looks results up by."""

from dataclasses import replace

import numpy as np

from tools import cv, data, ensemble
from tools.model import TrainSettings


def one_hot_rows(predicted: list[int], strength: float) -> np.ndarray:
    """Clip posteriors that put `strength` on the predicted label and share the rest."""
    rows = np.full((len(predicted), len(data.LABELS)), (1.0 - strength) / (len(data.LABELS) - 1))
    rows[np.arange(len(predicted)), predicted] = strength
    return rows


def test_settings_key_names_only_what_differs_from_the_defaults():
    """A field left at its default does not enter the key, so adding one keeps earlier fold results."""
    settings = TrainSettings(epochs=80, filters=(16, 32, 64, 128))
    key = cv.settings_key(settings)
    assert "epochs" in key and "filters" in key
    assert "normalisation" not in key and "teacher_centred" not in key
    assert cv.settings_key(TrainSettings()) == "[]"
    assert cv.settings_key(replace(settings, normalisation="speaker")) != key
    assert cv.settings_key(replace(settings, epochs=81)) != key


def test_an_ensemble_averages_posteriors_and_scores_each_fold():
    """Two members each right on one fold only, confidently, and weakly wrong on the other: alone each
    scores 0.5, together they are right on both folds."""
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    fold_of_clip = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    wrong = [1, 0, 1, 0]
    seen = np.ones(8, dtype=bool)
    first = (np.vstack([one_hot_rows([0, 1, 0, 1], 0.9), one_hot_rows(wrong, 0.3)]), seen)
    second = (np.vstack([one_hot_rows(wrong, 0.3), one_hot_rows([0, 1, 0, 1], 0.9)]), seen)
    alone = ensemble.ensemble_scores({"first": first, "second": second}, 1, labels, fold_of_clip)
    assert [row["folds"] for row in alone] == [[1.0, 0.0], [0.0, 1.0]]
    assert all(row["uar"] == 0.5 for row in alone)
    together = ensemble.ensemble_scores({"first": first, "second": second}, 2, labels, fold_of_clip)
    assert together == [{"variants": ["first", "second"], "uar": 1.0, "uar_std": 0.0, "folds": [1.0, 1.0]}]


def test_out_of_fold_posteriors_take_each_clip_from_the_fold_that_held_it_out():
    """A fold result may carry windows of other clips; only its held-out clips count, averaged per clip."""
    fold_of_clip = np.array([0, 0, 1])
    label_logit = 20.0
    fold_zero = {"clip_index": np.array([0, 0, 1, 2]), "int8_logits": np.zeros((4, len(data.LABELS)))}
    fold_zero["int8_logits"][[0, 1, 2, 3], [2, 2, 3, 7]] = label_logit
    fold_one = {"clip_index": np.array([0, 2]), "int8_logits": np.zeros((2, len(data.LABELS)))}
    fold_one["int8_logits"][[0, 1], [5, 4]] = label_logit
    posteriors, seen = ensemble.out_of_fold_posteriors([fold_zero, fold_one], fold_of_clip, "int8_logits")
    assert seen.tolist() == [True, True, True]
    assert posteriors.argmax(1).tolist() == [2, 3, 4]
    np.testing.assert_allclose(posteriors.sum(1), 1.0)


def test_unknown_or_uncached_variants_or_a_bad_size_get_a_one_line_error(tmp_path, ravdess_manifest, capsys):
    """Exit 1 and one line naming the variant (for a missing fold, the command that makes it) or the sizes allowed."""
    assert ensemble.main(["--variants", "no-such-variant"]) == 1
    assert "unknown variant 'no-such-variant'" in capsys.readouterr().err
    assert ensemble.main(["--variants", "kdwide80w9,spk25", "--size", "3"]) == 1
    assert "--size from 1 to their number (2" in capsys.readouterr().err
    rows = ravdess_manifest.read_text().splitlines()
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("\n".join([rows[0]] + ["%s/%s" % (ravdess_manifest.parent, row) for row in rows[1:41:4]]) + "\n")
    assert ensemble.main(["--variants", "kdwide80w9", "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "kdwide80w9 has no cached result for fold(s)" in err and "--cv --variants kdwide80w9" in err
