"""serd eval on real clips: --classes, null scores for classes without clips, no-speech clips, coverage, training-data warning."""

import functools
import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from serd.evaluation import _lies_in
from serd.model import load_model
from tests.support_cli import serd as run_serd, write_manifest

SAMPLE_RATE_HZ = 16000
serd = functools.partial(run_serd, text=True)


def silent_wav(path: Path) -> Path:
    """One second of digital silence (no speech for the VAD)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE_HZ)
        handle.writeframes(b"\0\0" * SAMPLE_RATE_HZ)
    return path


@pytest.fixture(scope="module")
def actor_clips(ravdess_manifest):
    """Actor 02: four clips each of neutral (01), happy (03) and angry (05), each under a speaker id of its own
    (eval keeps one voice estimate per speaker; one clip per speaker makes it start afresh, as analyze does)."""
    actor = ravdess_manifest.parent / "Actor_02"
    names = {"01": "neutral", "03": "happy", "05": "angry"}
    paths = [(p, names[code]) for code in names for p in sorted(actor.glob("03-01-%s-*.flac" % code))[:4]]
    return [(str(path), "02-%d" % i, emotion) for i, (path, emotion) in enumerate(paths)]


@pytest.fixture(scope="module")
def clip_probabilities(actor_clips):
    """serd analyze's overall probabilities of each clip."""
    result = serd("analyze", "--json", *[path for path, _, _ in actor_clips])
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["probabilities"] for line in result.stdout.splitlines()]


def eval_json(*args):
    result = serd("eval", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def restricted_predictions(clip_probabilities, classes):
    """(argmax among classes, its renormalised probability) per clip."""
    out = []
    for probabilities in clip_probabilities:
        row = np.array([probabilities[c] for c in classes])
        out.append((classes[int(row.argmax())], row.max() / row.sum()))
    return out


def test_eval_classes_restricts_truths_and_predictions(tmp_path, actor_clips, clip_probabilities):
    report, _ = eval_json("--classes", "angry,neutral", write_manifest(tmp_path / "m.tsv", actor_clips))
    assert report["labels"] == ["neutral", "angry"], "classes in the model's order"
    assert report["skipped"] == 4 and report["n"] == 8
    expected = np.zeros((2, 2), dtype=int)
    for (_, _, truth), (predicted, _) in zip(actor_clips, restricted_predictions(clip_probabilities, ["neutral", "angry"])):
        if truth != "happy":
            expected[["neutral", "angry"].index(truth), ["neutral", "angry"].index(predicted)] += 1
    assert report["confusion"] == expected.tolist()


def test_eval_classes_present_uses_the_manifests_classes(tmp_path, actor_clips, labels):
    report, _ = eval_json("--classes", "present", write_manifest(tmp_path / "m.tsv", actor_clips))
    assert report["labels"] == [label for label in labels if label in ("neutral", "happy", "angry")]
    assert report["skipped"] == 0 and report["n"] == 12 and set(report["per_class"]) == set(report["labels"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--classes", "angry,boredom"], "serd: error: --classes: 'boredom' is not a class of the model (neutral, "),
    (["--classes", "angry,"], "serd: error: --classes: '' is not a class of the model"),
    (["--merge", "disgust=angry", "--classes", "disgust,angry"], "serd: error: --classes: 'disgust' is not a class of the model after --merge"),
    (["--classes", "angry"], "serd: error: --classes angry leaves one class (angry); scoring needs at least 2 classes"),
])
def test_eval_bad_classes_are_a_one_line_error(tmp_path, actor_clips, flags, message):
    result = serd("eval", *flags, write_manifest(tmp_path / "m.tsv", actor_clips))
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)


def test_eval_classes_present_with_one_class_is_an_error(tmp_path, actor_clips):
    result = serd("eval", "--classes", "present", write_manifest(tmp_path / "m.tsv", actor_clips[:4]))
    assert result.returncode == 1
    assert result.stderr.strip() == "serd: error: --classes present leaves one class (neutral); scoring needs at least 2 classes"


def test_eval_classes_without_clips_have_null_scores(tmp_path, actor_clips):
    report, _ = eval_json(write_manifest(tmp_path / "m.tsv", actor_clips))
    fearful = report["per_class"]["fearful"]
    assert fearful["support"] == 0 and fearful["recall"] is None and fearful["f1"] is None and fearful["coverage"] is None
    assert fearful["precision"] is None or fearful["precision"] == 0.0
    recalls = [report["per_class"][c]["recall"] for c in ("neutral", "happy", "angry")]
    assert report["uar"] == pytest.approx(np.mean(recalls)), "UAR averages over the classes with clips"
    text = serd("eval", write_manifest(tmp_path / "m.tsv", actor_clips)).stdout
    fearful_row = next(line for line in text.splitlines() if line.startswith("fearful "))
    assert fearful_row.split()[2:4] == ["-", "-"] and fearful_row.split()[4] == "0"


def test_eval_no_speech_clip_is_counted_and_never_a_prediction(tmp_path, actor_clips):
    rows = actor_clips[:8] + [(str(silent_wav(tmp_path / "quiet.wav")), "02", "angry")]
    report, _ = eval_json(write_manifest(tmp_path / "m.tsv", rows))
    assert report["no_speech"] == 1 and report["n"] == 8 and report["clips"] == 9
    assert sum(map(sum, report["confusion"])) == 8
    assert report["per_class"]["angry"]["support"] == 0


def test_eval_all_clips_without_speech_is_a_one_line_error(tmp_path):
    rows = [(str(silent_wav(tmp_path / "quiet.wav")), "02", "angry")]
    result = serd("eval", write_manifest(tmp_path / "m.tsv", rows))
    assert result.returncode == 1
    assert result.stderr.strip() == "serd: error: no clip with speech and one of the classes scored (0 skipped, 0 unreadable, 1 without speech)"


def test_eval_reports_coverage_and_uar_on_covered_clips(tmp_path, actor_clips, clip_probabilities):
    classes = ["neutral", "happy", "angry"]
    predictions = restricted_predictions(clip_probabilities, classes)
    threshold = round(float(np.median([p for _, p in predictions])), 3)
    config = tmp_path / "serd.conf"
    config.write_text("[smoothing]\nmin_confidence = %s\n" % threshold)
    report, _ = eval_json("--classes", "present", "--config", config, write_manifest(tmp_path / "m.tsv", actor_clips))
    covered = [(truth, predicted) for (_, _, truth), (predicted, p) in zip(actor_clips, predictions) if p >= threshold]
    assert 0 < len(covered) < len(actor_clips), "the median splits the clips"
    assert report["min_confidence"] == threshold
    assert report["uncertain"] == len(actor_clips) - len(covered)
    assert report["coverage"] == pytest.approx(len(covered) / len(actor_clips))
    present = sorted({truth for truth, _ in covered})
    recalls = [np.mean([predicted == truth for t, predicted in covered if t == truth]) for truth in present]
    assert report["uar_covered"] == pytest.approx(np.mean(recalls))
    assert sum(map(sum, report["confusion"])) == len(actor_clips), "plain scores still count every clip with speech"
    text = serd("eval", "--classes", "present", "--config", config, write_manifest(tmp_path / "m.tsv", actor_clips)).stdout
    assert "coverage %.3f (%d uncertain)  UAR on covered %.3f" % (report["coverage"], report["uncertain"], report["uar_covered"]) in text


def test_eval_min_confidence_zero_covers_every_clip(tmp_path, actor_clips):
    config = tmp_path / "zero.conf"
    config.write_text("[smoothing]\nmin_confidence = 0\n")
    report, _ = eval_json("--config", config, write_manifest(tmp_path / "m.tsv", actor_clips))
    assert report["coverage"] == 1.0 and report["uncertain"] == 0 and report["uar_covered"] == report["uar"]


def test_eval_uses_the_default_min_confidence_without_a_config(tmp_path, actor_clips):
    from serd.config import DEFAULT_MIN_CONFIDENCE

    report, _ = eval_json(write_manifest(tmp_path / "m.tsv", actor_clips))
    assert report["min_confidence"] == DEFAULT_MIN_CONFIDENCE > 0


def test_eval_text_and_json_name_unreadable_clips_alike(tmp_path, actor_clips):
    manifest = write_manifest(tmp_path / "m.tsv", actor_clips[:4] + [(str(tmp_path / "missing.flac"), "02", "angry")])
    report, _ = eval_json(manifest)
    assert report["unreadable"] == 1 and "failed" not in report
    assert "unreadable 1" in serd("eval", manifest).stdout


def model_copy(tmp_path: Path, training_manifests) -> Path:
    """The shipped model's files in tmp_path, its card naming other training manifests."""
    shipped = load_model().path
    card = json.loads(shipped.with_suffix(".json").read_text())
    card["training"] = dict(card.get("training", {}), manifests=list(training_manifests))
    for name in filter(None, [shipped.name, card.get("head")]):
        shutil.copy(shipped.parent / name, tmp_path / name)
    (tmp_path / shipped.with_suffix(".json").name).write_text(json.dumps(card))
    return tmp_path / shipped.name


def warnings_of(stderr: str):
    return [line for line in stderr.splitlines() if "training data" in line]


@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_eval_warns_when_the_clips_trained_the_model(tmp_path, actor_clips, ravdess_manifest, form):
    trained_on = "corpora/ravdess/MANIFEST.tsv" if form == "relative" else str(ravdess_manifest)
    model = model_copy(tmp_path, [trained_on])
    _, stderr = eval_json("--model", model, write_manifest(tmp_path / "m.tsv", actor_clips[:4]))
    [warning] = warnings_of(stderr)
    assert "4 of 4 clips lie in the corpora that trained" in warning and "models/MODEL_CARD.md" in warning


def test_eval_does_not_warn_on_clips_the_model_never_heard(tmp_path, actor_clips):
    model = model_copy(tmp_path, ["corpora/other/MANIFEST.tsv"])
    _, stderr = eval_json("--model", model, write_manifest(tmp_path / "m.tsv", actor_clips[:4]))
    assert warnings_of(stderr) == []


def test_a_relative_corpus_matches_whole_folder_names_only(tmp_path):
    clip = tmp_path / "shared" / "corpora" / "ravdess" / "Actor_01" / "a.flac"
    assert _lies_in(clip, Path("corpora/ravdess"))
    assert _lies_in(clip, Path("shared/corpora/ravdess"))
    assert not _lies_in(clip, Path("corpora/rav"))
    assert not _lies_in(clip, Path("other/corpora/ravdess"))
    assert _lies_in(clip, tmp_path / "shared") and not _lies_in(clip, tmp_path / "elsewhere")


def test_eval_counts_and_warns_about_clips_recorded_below_the_model_rate(tmp_path, actor_clips):
    rows = []
    for index, (path, speaker, emotion) in enumerate(actor_clips[:6]):
        if index % 2 == 0:  # three of six as a telephone line carries them
            narrow = tmp_path / ("call-%d.wav" % index)
            subprocess.run(["sox", "-V1", path, "-r", "8000", str(narrow)], check=True)
            path = str(narrow)
        rows.append((path, speaker, emotion))
    manifest = write_manifest(tmp_path / "m.tsv", rows)
    report, stderr = eval_json(manifest)
    note = "3 clips recorded below the model's 16000 Hz"
    assert report["below_model_rate"] == 3 and report["model_rate_hz"] == SAMPLE_RATE_HZ
    assert [line for line in stderr.splitlines() if "WARNING" in line and note in line]
    assert serd("eval", manifest).stdout.splitlines()[1].startswith(note)
    assert eval_json(write_manifest(tmp_path / "full.tsv", actor_clips[:6]))[0]["below_model_rate"] == 0
