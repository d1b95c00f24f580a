"""Training on many corpora: shared labels, class masks, balanced draws, room augmentation, and the LOCO study and
final model end to end on two tiny corpora cut from the shared ones."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DIR
from tests.support_cli import serd, write_manifest
from serd.features import FeatureParams
from tools.model import augment, corpora, data, recipes
from tools.train import multicorpus
from tools.train.card import why_chosen

PROJECT_DIR = Path(__file__).resolve().parent.parent
SEVEN = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def clip(corpus: str, speaker: str, emotion: str) -> data.Clip:
    return data.Clip("/x/%s/%s/%s.flac" % (corpus, speaker, emotion), "%s:%s" % (corpus, speaker), emotion, 2.0)


def test_calm_is_read_as_neutral_and_speakers_are_keyed_by_corpus(tmp_path):
    folder = tmp_path / "mycorpus"
    folder.mkdir()
    manifest = write_manifest(folder / "MANIFEST.tsv", [("a.flac", "7", "calm"), ("b.flac", "7", "boredom"), ("c.flac", "8", "sad")])
    clips = corpora.read_clips([manifest])
    assert [(c.speaker, c.emotion) for c in clips] == [("mycorpus:7", "neutral"), ("mycorpus:8", "sad")]


def test_every_corpus_gets_equal_draw_mass_and_within_it_every_speaker_and_class():
    clips = ([clip("big", "s%d" % i, e) for i in range(10) for e in ("happy", "sad") for _ in range(20)]
             + [clip("small", "t", "happy"), clip("small", "t", "sad"), clip("small", "t", "sad")])
    p = corpora.draw_probabilities(clips)
    corpus = np.array([corpora.corpus_of(c) for c in clips])
    assert p.sum() == pytest.approx(1.0)
    assert p[corpus == "big"].sum() == pytest.approx(0.5) and p[corpus == "small"].sum() == pytest.approx(0.5)
    small = [i for i, c in enumerate(clips) if c.speaker == "small:t"]
    assert p[small[0]] == pytest.approx(0.25) and p[small[1]] == pytest.approx(0.125)


def test_class_masks_mark_only_the_classes_of_the_clips_corpus():
    clips = [clip("a", "1", "happy"), clip("a", "1", "fearful"), clip("b", "1", "happy"), clip("b", "2", "sad")]
    masks = corpora.class_masks(clips)
    assert masks.shape == (4, len(corpora.LABELS))
    assert [corpora.LABELS[i] for i in np.flatnonzero(masks[0])] == ["happy", "fearful"]
    assert [corpora.LABELS[i] for i in np.flatnonzero(masks[3])] == ["happy", "sad"]
    assert corpora.corpus_classes(clips) == {"a": ("happy", "fearful"), "b": ("happy", "sad")}


def test_masked_loss_neither_rewards_nor_punishes_a_class_the_corpus_lacks():
    from tools.model import nn

    tf = nn.tf_setup(0)
    loss = nn.masked_loss(tf, 3)
    target = np.array([[1, 0, 0, 1, 1, 0]], dtype=np.float32)  # true class 0; the corpus has classes 0 and 1
    plain = float(loss(target, np.array([[2.0, 1.0, 0.0]], dtype=np.float32))[0])
    absent_high = float(loss(target, np.array([[2.0, 1.0, 9.0]], dtype=np.float32))[0])
    assert absent_high == pytest.approx(plain, abs=1e-5)
    assert plain == pytest.approx(np.log1p(np.exp(-1.0)), abs=1e-5)  # cross-entropy over the two present classes


def test_drawn_windows_are_those_of_the_drawn_clips_in_their_versions():
    from tools.model import nn

    clean = data.WindowSet(np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32), np.array([0, 0, 1, 2, 2]))
    noisy = data.WindowSet(clean.windows + 100, np.array([0, 1, 1, 2, 2]))
    windows, owner = nn.drawn_windows([clean, noisy], np.array([2, 0, 1]), np.array([0, 1, 1]))
    assert sorted(windows[:, 0, 0].tolist()) == [3.0, 4.0, 100.0, 101.0, 102.0]
    assert owner.tolist() == [0, 0, 1, 2, 2]


def test_reverberation_keeps_length_and_speech_power_and_smears_in_time():
    rng = np.random.default_rng(0)
    click = np.zeros(16000)
    click[1000] = 10000.0
    wet = augment.reverberate(click, 0.5, rng)
    assert len(wet) == len(click)
    assert np.abs(wet[1000 + 1600:1000 + 4800]).max() > 0  # energy 0.1-0.3 s after the click
    response = augment.room_impulse_response(0.5, rng)
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    assert 10 * np.log10(energy[int(0.25 * 16000)] / energy[0]) < -10  # the tail decays


def test_telephone_band_removes_what_a_phone_line_cannot_carry():
    t = np.arange(16000) / 16000
    tones = 1000 * (np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t))
    spectrum = np.abs(np.fft.rfft(augment.telephone_band(tones)))  # 1 Hz per bin
    assert spectrum[1000] > 20 * spectrum[6000] and spectrum[1000] > 5 * spectrum[100]


def test_fixed_gain_clips_loud_speech_at_the_int16_limits():
    samples = (20000 * np.sin(np.linspace(0, 60, 16000))).astype(np.int16)
    louder = augment.apply(samples, augment.AudioAugment(noise_prob=0, gain_db_max=0, shift_ms_max=0, speeds=(), gain_db=20.0),
                           np.random.default_rng(0))
    assert louder.max() == augment.INT16_MAX and louder.min() == augment.INT16_MIN


def test_frequency_warp_moves_a_band_to_the_band_of_its_scaled_frequency():
    centres_hz = augment.band_centres_hz(FeatureParams())
    band = int(np.argmin(np.abs(centres_hz - 1000.0)))
    window = np.zeros((1, 5, len(centres_hz)), np.float32)
    window[0, :, band] = 1.0
    warped = augment.warp_bands(np.repeat(window, 3, axis=0), np.array([1.0, 1.2, 1 / 1.2]))
    np.testing.assert_array_equal(warped[0], window[0])
    assert int(np.argmax(warped[1, 0])) == int(np.argmin(np.abs(centres_hz - centres_hz[band] * 1.2))) > band  # a smaller voice: higher
    assert int(np.argmax(warped[2, 0])) == int(np.argmin(np.abs(centres_hz - centres_hz[band] / 1.2))) < band
    assert warped.min() >= 0.0 and warped.max() <= 1.0  # interpolated between bands, never beyond them


def test_frequency_warp_holds_the_edge_bands_and_draws_a_factor_per_window():
    ramp = np.tile(np.arange(40, dtype=np.float32), (6, 3, 1))
    warped = augment.freq_warp(ramp, 1.2, np.random.default_rng(0))
    assert warped.min() >= 0.0 and warped.max() <= 39.0
    assert len({tuple(np.round(w[0], 4)) for w in warped}) == len(ramp)  # six windows, six factors
    assert np.all(np.diff(warped[:, 0, :], axis=1) >= 0)  # the axis is stretched or squeezed, never reordered


def tiny_corpus(root: Path, name: str, source: str, speakers: tuple[str, ...], per_emotion: int) -> Path:
    """A corpus folder called name with per_emotion clips of each emotion for the speakers of a shared corpus."""
    rows = [line.split("\t") for line in (SHARED_DIR / "corpora" / source / "MANIFEST.tsv").read_text().splitlines()[1:]]
    chosen, seen = [], {}
    for path, speaker, emotion, duration in rows:
        if speaker in speakers and seen.get((speaker, emotion), 0) < per_emotion:
            seen[(speaker, emotion)] = seen.get((speaker, emotion), 0) + 1
            chosen.append((str(SHARED_DIR / "corpora" / source / path), speaker, emotion, float(duration)))
    (root / name).mkdir()
    return write_manifest(root / name / "MANIFEST.tsv", chosen)


def run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two tiny corpora, their LOCO study (one short epoch a fold) and the final model trained on both."""
    root = tmp_path_factory.mktemp("multi")
    manifests = [tiny_corpus(root, "ravsmall", "ravdess", ("01", "02"), 1), tiny_corpus(root, "banglasmall", "bangla", ("01", "02"), 1)]
    env = dict(os.environ, SERD_TRAIN_CACHE=str(root / "cache"), PYTHONPATH=str(PROJECT_DIR))
    flags = [item for m in manifests for item in ("--manifest", str(m))] + ["--epochs", "1", "--draws-per-epoch", "40"]
    results = root / "loco_results.json"
    run([sys.executable, "-m", "tools.study.loco", "--protocol", "loco", "--processes", "1", "--results", str(results)] + flags, env)
    out = root / "model"
    run([sys.executable, "-m", "tools.train", "--out", str(out), "--workers", "1", "--no-whisper", "--loco-results", str(results)] + flags, env)
    return manifests, json.loads(results.read_text()), out


def test_loco_scores_each_held_out_corpus_on_its_own_classes(study):
    _, results, _ = study
    loco = results["recipes"][recipes.DEFAULT]["loco"]
    assert loco["folds_done"] == ["banglasmall", "ravsmall"]
    bangla = loco["per_corpus"]["banglasmall"]
    assert bangla["classes"] == ["neutral", "happy", "sad", "angry", "surprised"]
    assert set(bangla["recall_restricted"]) == set(bangla["classes"])
    assert 0.0 <= bangla["uar_restricted"] <= 1.0 and 0.0 <= bangla["uar_unrestricted"] <= bangla["uar_restricted"] + 1e-9
    assert set(bangla["conditions"]) == {"clean_float", "noise_10db", "reverb_rt60_0.6s", "telephone", "level_-20db", "clipped_+20db"}
    assert set(loco["calibration"]["per_corpus"]) == {"banglasmall", "ravsmall"}
    assert 0.0 <= bangla["arousal_uar"] <= 1.0 and 0.0 <= loco["mean"]["arousal_uar"][0] <= 1.0
    assert results["variants_tried"] == [recipes.DEFAULT]


def test_scoring_another_protocol_keeps_the_stored_loco_summary(study, tmp_path):
    manifests, results, _ = study
    root = manifests[0].parent.parent
    copy = tmp_path / "loco_results.json"
    copy.write_text(json.dumps(results))
    env = dict(os.environ, SERD_TRAIN_CACHE=str(root / "cache"), PYTHONPATH=str(PROJECT_DIR))
    flags = [item for m in manifests for item in ("--manifest", str(m))] + ["--epochs", "1", "--draws-per-epoch", "40"]
    run([sys.executable, "-m", "tools.study.loco", "--protocol", "speakers", "--score-only", "--results", str(copy)] + flags, env)
    assert json.loads(copy.read_text())["recipes"][recipes.DEFAULT]["loco"] == results["recipes"][recipes.DEFAULT]["loco"]


def test_folds_trains_only_the_named_corpora_and_counts_the_cached_others(study, tmp_path):
    manifests, _, _ = study
    root = manifests[0].parent.parent
    env = dict(os.environ, SERD_TRAIN_CACHE=str(root / "cache"), PYTHONPATH=str(PROJECT_DIR))
    flags = [item for m in manifests for item in ("--manifest", str(m))] + ["--epochs", "1", "--draws-per-epoch", "24"]
    results = tmp_path / "loco_results.json"
    command = [sys.executable, "-m", "tools.study.loco", "--protocol", "loco", "--processes", "1", "--results", str(results)] + flags
    run(command + ["--folds", "banglasmall"], env)
    assert json.loads(results.read_text())["recipes"][recipes.DEFAULT]["loco"]["folds_done"] == ["banglasmall"]
    run(command + ["--folds", "ravsmall"], env)  # a later session: the first fold is read from its cache, not trained again
    assert json.loads(results.read_text())["recipes"][recipes.DEFAULT]["loco"]["folds_done"] == ["banglasmall", "ravsmall"]
    wrong = subprocess.run(command + ["--folds", "ravsmall,emovo"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                           timeout=300)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1] == (
        "tools.study.loco: error: --folds: no corpus named emovo (the corpora are banglasmall, ravsmall)")


def test_the_final_model_speaks_the_seven_shared_labels_and_states_its_licence(study):
    _, _, out = study
    card = json.loads((out / "serd-emotion.json").read_text())
    assert card["labels"] == SEVEN and card["output"] == "logits" and "head" not in card
    assert "CC BY-NC-SA" in card["licence"]
    assert card["training"]["recipe"] == recipes.DEFAULT and card["training"]["speakers"] == 4
    assert set(card["training"]["corpora"]) == {"banglasmall", "ravsmall"}
    assert "loco" in card["metrics"] and (out / "MODEL_CARD.md").read_text().startswith("# Model card: serd-emotion %s" % multicorpus.MODEL_VERSION)
    assert card["metrics"]["size_bytes"] <= 256 * 1024


def test_serd_analyzes_a_file_with_the_trained_multi_corpus_model(study, ravdess_clip):
    _, _, out = study
    result = serd("analyze", "--json", "--model", out / "serd-emotion.tflite", ravdess_clip, text=True)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout.splitlines()[0])
    assert set(verdict["probabilities"]) == set(SEVEN) and verdict["label"] in SEVEN + ["uncertain"]


@pytest.fixture(scope="module")
def pitch_model(study):
    """The pitch-hearing recipe's final model, trained on the same two tiny corpora (one short epoch)."""
    manifests, _, _ = study
    root = manifests[0].parent.parent
    env = dict(os.environ, SERD_TRAIN_CACHE=str(root / "cache"), PYTHONPATH=str(PROJECT_DIR))
    flags = [item for m in manifests for item in ("--manifest", str(m))] + ["--epochs", "1", "--draws-per-epoch", "40"]
    out = root / "pitch_model"
    run([sys.executable, "-m", "tools.train", "--recipe", "multi7pitch", "--out", str(out), "--workers", "1", "--no-whisper",
         "--loco-results", str(root / "none.json")] + flags, env)
    return out


def test_a_pitch_hearing_model_carries_its_front_end_in_its_card_and_serd_runs_it(pitch_model, ravdess_clip):
    card = json.loads((pitch_model / "serd-emotion.json").read_text())
    assert card["features"] == recipes.PITCH_FRONT_END.to_dict() and card["features"]["kind"] == "logmel_pitch"
    result = serd("analyze", "--json", "--model", pitch_model / "serd-emotion.tflite", ravdess_clip, text=True)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout.splitlines()[0])
    assert set(verdict["probabilities"]) == set(SEVEN) and verdict["segments"][0]["windows"] >= 1


def test_one_emotion_sessions_are_four_fifths_one_emotion_of_one_held_out_speaker():
    from tools.study import whisper_loco

    clips = [clip("c", s, e) for s in ("1", "2") for e in ("happy", "sad", "angry") for _ in range(8)] + [clip("d", "9", "sad")]
    test = np.array([c.speaker == "c:1" for c in clips])
    sessions = whisper_loco.dominant_sessions(clips, test, np.random.default_rng(0))
    assert len(sessions) == 3
    for session in sessions:
        emotions = [clips[i].emotion for i in session]
        assert {clips[i].speaker for i in session} == {"c:1"} and len(set(session.tolist())) == len(session) == 10
        assert max(emotions.count(e) for e in set(emotions)) == 8


def test_arousal_is_scored_as_the_side_of_the_labels_holding_more_probability():
    from tools.model import corpora
    from tools.study import loco_scoring

    index = {label: i for i, label in enumerate(corpora.LABELS)}
    truth = np.array([index["angry"], index["happy"], index["sad"], index["neutral"]])
    probs = np.zeros((4, len(corpora.LABELS)))
    probs[0, [index["angry"], index["sad"]]] = 0.6, 0.4  # high side holds more: right
    probs[1, [index["surprised"], index["fearful"], index["neutral"]]] = 0.3, 0.3, 0.4  # high 0.6: right
    probs[2, [index["happy"], index["sad"]]] = 0.55, 0.45  # high side wins on a sad clip: wrong
    probs[3, index["disgust"]] = 1.0  # disgust is low arousal: right, but this clip had no speech
    seen = np.array([True, True, True, False])
    assert loco_scoring.binary_uar(truth, probs, seen, corpora.HIGH_AROUSAL) == 0.5  # high 2/2, low 0/2
    assert loco_scoring.binary_uar(truth[:2], probs[:2], seen[:2], corpora.HIGH_AROUSAL) is None


def test_derived_arousal_is_correlated_with_the_true_labels_points_over_clips_with_speech():
    from serd import affect
    from tools.model import corpora
    from tools.study import loco_scoring

    index = {label: i for i, label in enumerate(corpora.LABELS)}
    truth = np.array([index["angry"], index["sad"], index["happy"], index["neutral"], index["angry"]])
    probs = np.eye(len(corpora.LABELS))[truth]  # every clip sure of its true label: derived points are the true points
    seen = np.array([True, True, True, True, False])
    scores = loco_scoring.circumplex_correlation(truth, probs, seen)
    assert scores["arousal_r"] == pytest.approx(1.0) and scores["valence_r"] == pytest.approx(1.0)
    swapped = probs[:, [index[label] for label in corpora.LABELS]].copy()
    swapped[:, [index["angry"], index["sad"]]] = swapped[:, [index["sad"], index["angry"]]]  # angry heard as sad and back
    arousal = loco_scoring.circumplex_correlation(truth, swapped, seen)["arousal_r"]
    expected = np.corrcoef([affect.CIRCUMPLEX[l][1] for l in ("sad", "angry", "happy", "neutral")],
                           [affect.CIRCUMPLEX[l][1] for l in ("angry", "sad", "happy", "neutral")])[0, 1]
    assert arousal == pytest.approx(expected) and arousal < 0.5
    assert loco_scoring.circumplex_correlation(truth[:1], probs[:1], seen[:1]) == {"valence_r": None, "arousal_r": None}


def test_speech_span_features_pool_the_encoder_over_the_clip_from_its_first_window_to_its_last(ravdess_clip, tmp_path):
    import soundfile

    from serd.audio import load_audio
    from serd.whisper import pool
    from tools.study import teacher

    speech = data.Clip(str(ravdess_clip), "ravdess:01", "angry", 3.0)
    silent_path = tmp_path / "silence.wav"
    soundfile.write(silent_path, np.zeros(32000, dtype=np.int16), 16000)
    silent = data.Clip(str(silent_path), "x:1", "neutral", 2.0)
    features = np.concatenate([teacher._speech_span_job((c, None, 0)) for c in (speech, silent)])
    assert features.shape == (2, 768) and not features[1].any(), "a clip without speech has no span: zeros"
    samples = load_audio(ravdess_clip)
    whole = pool(teacher._encoder_instance().encode(samples))
    assert np.isfinite(features[0]).all() and not np.allclose(features[0], whole, atol=1e-3), \
        "the span is the speech, not the whole clip with its leading silence"


def test_the_corpus_probe_reads_corpora_from_embeddings_only_when_they_carry_them():
    from tools.study import corpus_probe

    rng = np.random.default_rng(0)
    corpus = np.repeat(np.arange(4), 60)
    speakers = np.array(["%d:%d" % (c, i % 5) for i, c in enumerate(corpus)])
    carrying = rng.normal(size=(240, 8)) + 6.0 * np.eye(8)[corpus]
    assert corpus_probe.probe_accuracy(carrying, corpus, speakers) > 0.95
    assert corpus_probe.probe_accuracy(rng.normal(size=(240, 8)), corpus, speakers) < 0.45, "chance is a quarter"


def test_the_corpus_probe_says_which_command_trains_the_folds_it_needs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.study.corpus_probe", "--recipe", "multi7dann", "--clips-per-speaker", "1",
                             "--manifest", str(SHARED_DIR / "corpora" / "savee" / "MANIFEST.tsv"),
                             "--manifest", str(SHARED_DIR / "corpora" / "emovo" / "MANIFEST.tsv"),
                             "--results", str(tmp_path / "r.json")], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2 and result.stderr.strip() == (
        "tools.study.corpus_probe: error: no trained LOCO fold of recipe multi7dann "
        "(run python -m tools.study.loco --recipe multi7dann --protocol loco)")


def test_card_only_rewrites_the_cards_from_the_stored_results_without_touching_the_weights(study, tmp_path):
    import shutil

    _, results, out = study
    model = tmp_path / "model"
    shutil.copytree(out, model)
    stored = json.loads(json.dumps(results))
    stored["recipes"]["multi7conf"] = {"description": "another recipe", "loco": {}}
    stored["variants_tried"] = sorted(stored["recipes"])
    (tmp_path / "r.json").write_text(json.dumps(stored))
    weights = (model / "serd-emotion.tflite").read_bytes()
    command = [sys.executable, "-m", "tools.train", "--card-only", "--out", str(model), "--loco-results", str(tmp_path / "r.json")]
    result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (model / "serd-emotion.tflite").read_bytes() == weights
    assert json.loads((model / "serd-emotion.json").read_text())["metrics"]["variants_tried"] == sorted(["multi7conf", recipes.DEFAULT])
    assert "Recipes tried on these folds: **2**" in (model / "MODEL_CARD.md").read_text()
    missing = subprocess.run(command[:5] + [str(tmp_path / "empty")], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr == (
        "tools.train: error: no model card %s to refresh (train the model first: python -m tools.train)\n" % (tmp_path / "empty" / "serd-emotion.json"))


def test_the_card_says_why_the_shipped_recipe_was_chosen_among_those_with_every_fold_run():
    def loco(mean: float, std: float, folds: int = 5) -> dict:
        names = ["bangla", "emovo", "ravdess", "savee", "tess"][:folds]
        return {"loco": {"folds_done": names, "mean": {"uar_restricted": [mean, std, mean - std, mean + std]}}}

    tried = {"wide": loco(0.379, 0.045), "cheap": loco(0.372, 0.040), "stopped": loco(0.45, 0.01, folds=2)}
    assert why_chosen(tried, "wide") == "the one with the highest LOCO mean"  # a recipe stopped short does not count
    assert why_chosen(tried, "cheap") == ("chosen for its cost (a cheaper network), 0.7 points below the highest LOCO mean "
                                       "(`wide`, 37.9), less than one standard deviation across corpora")
    tried["cheap"] = loco(0.30, 0.040)
    assert why_chosen(tried, "cheap").endswith("7.9 points below the highest LOCO mean (`wide`, 37.9)")


def test_an_ensemble_of_recipes_is_scored_per_held_out_corpus_on_its_own_classes(tmp_path):
    from tools.study.ensemble import loco_ensemble_scores

    manifests = [tiny_corpus(tmp_path, "ravsmall", "ravdess", ("01", "02"), 1), tiny_corpus(tmp_path, "banglasmall", "bangla", ("01",), 1)]
    clips = corpora.read_clips(manifests)
    truth = data.clip_labels(clips, corpora.LABELS)
    right = np.eye(len(corpora.LABELS))[truth]
    angry = np.zeros_like(right)
    angry[:, corpora.LABELS.index("angry")] = 0.7
    leaning = angry + 0.3 * right  # mostly angry, some of the truth
    seen = np.ones(len(clips), dtype=bool)
    alone = {row["variants"][0]: row for row in loco_ensemble_scores({"right": (right, seen), "angry": (leaning, seen)}, 1, clips)}
    assert alone["right"]["folds"] == [1.0, 1.0] and alone["right"]["fold_names"] == ["banglasmall", "ravsmall"]
    classes = corpora.corpus_classes(clips)
    assert alone["angry"]["folds"] == [round(1 / len(classes[name]), 4) for name in ("banglasmall", "ravsmall")]
    (together,) = loco_ensemble_scores({"right": (right, seen), "angry": (leaning, seen)}, 2, clips)
    assert together["uar"] == 1.0 and together["variants"] == ["right", "angry"]  # the mean posterior leans to the truth


def test_an_ensemble_of_recipes_reads_the_int8_or_the_float_outputs_as_asked(tmp_path, monkeypatch):
    from tools.study import ensemble, loco

    manifests = [tiny_corpus(tmp_path, "ravsmall", "ravdess", ("01",), 1), tiny_corpus(tmp_path, "banglasmall", "bangla", ("01",), 1)]
    clips = corpora.read_clips(manifests)
    fold_of_clip, fold_names = loco.folds(clips, "loco")
    n_labels = len(corpora.LABELS)
    for fold in range(len(fold_names)):
        held_out = np.flatnonzero(fold_of_clip == fold)
        int8, float_ = np.zeros((len(held_out), n_labels)), np.zeros((len(held_out), n_labels))
        int8[:, corpora.LABELS.index("angry")] = float_[:, corpora.LABELS.index("sad")] = 9.0  # one window a clip
        np.savez(tmp_path / ("fold%d.npz" % fold), clean_index=held_out, clean_int8=int8, clean_float=float_)
    monkeypatch.setattr(loco, "fold_path", lambda chosen, clips, fold_of_clip, fold: tmp_path / ("fold%d.npz" % fold))
    for logits, label in (("int8_logits", "angry"), ("float_logits", "sad")):
        posteriors, seen = ensemble.loco_posteriors(recipes.DEFAULT, clips, fold_of_clip, fold_names, logits)
        assert seen.all() and set(posteriors.argmax(axis=1)) == {corpora.LABELS.index(label)}


def test_loco_scores_the_last_epochs_network_beside_the_weight_average_when_every_fold_kept_it(tmp_path):
    from tools.study import loco, loco_scoring

    manifests = [tiny_corpus(tmp_path, "ravsmall", "ravdess", ("01", "02"), 1), tiny_corpus(tmp_path, "banglasmall", "bangla", ("01",), 1)]
    clips = corpora.read_clips(manifests)
    fold_of_clip, fold_names = loco.folds(clips, "loco")
    truth = data.clip_labels(clips, corpora.LABELS)
    n_labels = len(corpora.LABELS)
    done = {}
    for fold in range(len(fold_names)):
        held_out = np.flatnonzero(fold_of_clip == fold)  # one window a clip
        right, angry = 9.0 * np.eye(n_labels)[truth[held_out]], np.zeros((len(held_out), n_labels))
        angry[:, corpora.LABELS.index("angry")] = 9.0
        done[fold] = {"clean_index": held_out, "clean_int8": angry, "clean_float": angry, "clean_float_last": right,
                      "train_seconds": np.array(1.0)}
        for condition in recipes.CONDITIONS:
            done[fold][condition + "_index"], done[fold][condition + "_int8"] = held_out, angry
    summary = loco_scoring.summarise(clips, fold_of_clip, fold_names, done, "loco")
    assert summary["mean"]["last_iterate_float_uar_restricted"][0] == 1.0
    assert summary["mean"]["float_uar_restricted"][0] < 0.3
    assert summary["per_corpus"]["banglasmall"]["conditions"]["clean_float_last"]["uar_restricted"] == 1.0
    del done[0]["clean_float_last"]  # a recipe without averaging (or a fold cached before it) reports no such column
    assert "last_iterate_float_uar_restricted" not in loco_scoring.summarise(clips, fold_of_clip, fold_names, done, "loco")["mean"]
