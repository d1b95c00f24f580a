"""The CV ensemble evaluation (tools.study.ensemble) and the fold-cache key it looks results up by."""

from dataclasses import replace

import numpy as np
import pytest

from serd.metrics import softmax
from tools.study import cv, ensemble, teacher
from tools.model import data
from tools.train import ravdess8
from tools.train.cli import main as train_main, parse_args
from tools.model.nn import TrainSettings


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


def test_teachers_combine_as_the_mean_of_their_log_probabilities():
    """Each teacher counts once whatever its logits' offset: the result is the normalised geometric mean of the posteriors."""
    rng = np.random.default_rng(0)
    head, student = rng.normal(size=(5, 8)), 3.0 * rng.normal(size=(5, 8))
    combined = teacher.combined_logits([head, student + 100.0])
    probs = np.exp(combined) / np.exp(combined).sum(axis=1, keepdims=True)
    geometric = np.sqrt(softmax(head) * softmax(student))
    np.testing.assert_allclose(probs, geometric / geometric.sum(axis=1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(teacher.combined_logits([head]), np.log(softmax(head)), rtol=1e-9)


def test_a_variant_taught_by_another_needs_that_variants_fold_models_first(tmp_path, monkeypatch):
    """With no cached fold of sep80w9, the CV of sep80w9b stops at once with one line naming the command to run."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        train_main(["--cv", "--variants", "sep80w9b", "--out", str(tmp_path / "out")])
    message = str(stopped.value)
    assert len(message.splitlines()) == 1
    assert "sep80w9 teach" in message and "--cv --variants sep80w9 first" in message
    assert not (tmp_path / "windows").exists()  # refused before computing anything


def test_a_taught_variants_fold_key_follows_its_teachers(monkeypatch):
    """The student's cached folds depend on its teachers' settings: a retrained teacher leaves them stale otherwise."""
    clips = data.read_manifests([data.DEFAULT_MANIFEST])[:40]
    fold_of_clip = np.arange(40) % data.N_FOLDS
    student = cv.variant("sep80w9b")
    before = cv.fold_cache_path(student, clips, fold_of_clip, 0)
    retrained = replace(cv.variant("sep80w9"), settings=replace(cv.variant("sep80w9").settings, epochs=81))
    edited = tuple(retrained if v.name == "sep80w9" else v for v in cv.variants())
    monkeypatch.setattr(cv, "variants", lambda: edited)
    assert cv.fold_cache_path(student, clips, fold_of_clip, 0) != before


def test_a_teacher_run_in_the_same_study_runs_before_its_students():
    """`--cv` with sep80w9b and sep80w9 together: sep80w9's folds go first, in a pool of their own."""
    chosen = [cv.variant(name) for name in ("sep80w9b", "kdwide80w9", "sep80w9")]
    teaching, taught = cv.teachers_first(chosen)
    assert [v.name for v in teaching] == ["sep80w9"] and [v.name for v in taught] == ["sep80w9b", "kdwide80w9"]
    assert cv.teachers_first(chosen[1:2]) == ([], chosen[1:2])


def test_an_epochs_override_reaches_the_variants_that_teach(tmp_path, monkeypatch):
    """`--cv --epochs 2` with sep80w9b: its teacher is looked up as sep80w9 trained for 2 epochs, in the same run or cached."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    clips = data.read_manifests([data.DEFAULT_MANIFEST])[:40]
    fold_of_clip = np.arange(40) % data.N_FOLDS
    student, short_teacher = cv.with_overrides(cv.variant("sep80w9b"), {"epochs": 2}), cv.with_overrides(cv.variant("sep80w9"), {"epochs": 2})
    assert student.settings.epochs == 2 and cv.teacher_variants(student) == [short_teacher]
    for fold in range(data.N_FOLDS):
        path = cv.fold_cache_path(short_teacher, clips, fold_of_clip, fold)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, int8_model=np.frombuffer(b"model of fold %d" % fold, dtype=np.uint8))
    assert cv.missing_student_teachers([student], clips, fold_of_clip) == []
    assert cv.missing_student_teachers([cv.variant("sep80w9b")], clips, fold_of_clip) == ["sep80w9"]  # the 80-epoch folds are not there
    assert cv.fold_student_model(short_teacher, clips, fold_of_clip, 3) == b"model of fold 3"
    assert cv.fold_cache_path(student, clips, fold_of_clip, 0) != cv.fold_cache_path(cv.with_overrides(cv.variant("sep80w9b"), {"epochs": 3}),
                                                                                     clips, fold_of_clip, 0)


def test_the_training_overrides_of_the_command_line_reach_the_cv_and_its_teachers():
    """`--cv --epochs 2 --aug-copies 0 --no-spec-augment`: the variant and the variants that teach it train that way."""
    args = parse_args(["--cv", "--epochs", "2", "--aug-copies", "0", "--no-spec-augment"])
    overrides = cv.setting_overrides(args)
    assert overrides == {"epochs": 2, "aug_copies": 0, "spec_augment": False}
    student = cv.with_overrides(cv.variant("sep80w9b"), overrides)
    for settings in (student.settings, cv.teacher_variants(student)[0].settings, ravdess8.settings_from(args)):
        assert (settings.epochs, settings.aug_copies, settings.spec_augment) == (2, 0, False)
    assert cv.variant("sep80w9b").settings.aug_copies == 4  # the study's own definition is untouched
    assert cv.setting_overrides(parse_args(["--cv"])) == {}


def test_a_variant_of_an_already_timed_network_takes_its_cost(tmp_path, monkeypatch):
    """add_costs: sep80x3 and sep80xc5 train sep80x5's network differently, so the card shows that network's time, of the
    same hour, instead of a time of their own taken in another."""
    from tools.model import export

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    assert cv.architecture(cv.variant("sep80x3").settings) == cv.architecture(cv.variant("sep80x5").settings)
    assert cv.architecture(cv.variant("sep80xc5").settings) == cv.architecture(cv.variant("sep80x5").settings)
    assert cv.architecture(cv.variant("kdwide80w9").settings) != cv.architecture(cv.variant("sep80x5").settings)
    cost = {"int8_bytes": 115168, "invoke_ms": 0.654, "parameters": 82000, "cpu": export.host_cpu()}
    study = {"variants": {"sep80x5": {"cost": dict(cost)}, "sep80x3": {}, "sep80xc5": {"cost": dict(cost, cpu="another CPU")}}}
    cv.add_costs(study, data.read_manifests([data.DEFAULT_MANIFEST])[:4])
    assert study["variants"]["sep80x3"]["cost"] == cost and study["variants"]["sep80xc5"]["cost"] == cost
