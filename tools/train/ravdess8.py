"""The 8-class RAVDESS-only model of releases 1.x (`python -m tools.train --recipe ravdess8`): CV variant sep80x5
trained on every clip, its int8 trunk read by a speaker-centred head, with the 1.x cards (tools.train.card_1x)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from tools.model import augment, data
from tools.model.nn import TrainSettings
from tools.study import cv
from tools.train import card_1x

log = logging.getLogger(__name__)

MODEL_NAME = "serd-emotion"
FINAL_VARIANT = "sep80x5"  # the CV variant whose settings the 1.x model is trained with
FINAL_HEAD = "embedding"  # the 1.x network ends at its pooled embedding, read by a speaker-centred head (tools.study.centred_head)
HEAD_FILE = "%s.head.npz" % MODEL_NAME


def settings_from(args: argparse.Namespace, name: str = FINAL_VARIANT) -> TrainSettings:
    """The settings of CV variant `name` (default: the shipped one) with command-line overrides."""
    return replace(cv.variant(name).settings, seed=args.seed, **cv.setting_overrides(args))


def train_final(args: argparse.Namespace) -> Path:
    """Train on every clip, export int8, write the card files into args.out."""
    from tools.model import export, nn, report

    settings = settings_from(args)
    clips = cv.load_clips(args)
    versions = cv.window_versions(clips, settings, args.workers)
    keras_model, history, train_s = final_network(clips, versions, settings, args)
    int8_bytes = export.convert_int8(keras_model, versions[0].windows, settings.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tflite_path = out / ("%s.tflite" % MODEL_NAME)
    cv_results = _read_json(args.cv_results or cv.RESULTS)
    shipped, head = int8_bytes, None
    if FINAL_HEAD == "embedding":
        from tools.study import centred_head

        trunk = nn.embedding_model(keras_model)
        shipped = export.convert_int8(trunk, versions[0].windows, settings.seed)
        fitted, c = centred_head.final_head(clips, versions, shipped)
        centred_head.write_head(fitted, out / HEAD_FILE)
        head = {"file": HEAD_FILE, "c": c, "cv": cv_results.get(centred_head.ENTRY, {}).get(FINAL_VARIANT, {})}
        float_bytes = export.convert_float(trunk)
    else:
        float_bytes = export.convert_float(keras_model)
    export.write(shipped, tflite_path)
    facts = report.model_facts(shipped, float_bytes, versions[0].windows, keras_model, logits_int8_bytes=int8_bytes)
    training = training_record(args, settings, clips, train_s, history)
    prior = None
    if settings.normalisation == "speaker":
        prior = data.speaker_prior(clips, data.compute_windows(clips, None, 0, args.workers, raw=True))
    card = report.card_json(cv_results, facts, training, prior, head)
    (out / ("%s.json" % MODEL_NAME)).write_text(json.dumps(card, indent=2) + "\n")
    report.write_training_plot(history, out / "training_curves.png")
    card_1x.write_model_card(card, cv_results, out / "MODEL_CARD.md")
    if not args.no_whisper:
        from tools.study import teacher

        teacher.write_backend(clips, out, cv_results.get("baselines", {}).get(teacher.BACKEND_ENTRY, {}), args.workers,
                              settings.aug_copies)
    return tflite_path


def final_network(clips: list[data.Clip], versions: list[data.WindowSet], settings: TrainSettings,
                  args: argparse.Namespace) -> tuple:
    """(Keras model, history, training seconds) of the final run: trained on every clip, or its weights and
    history from the cache (.cache/final) when these settings were trained on these clips before."""
    from tools.model import nn

    path = final_weights_path(settings, clips)
    history_path = path.with_name(path.name.replace(".weights.h5", ".history.json"))
    if path.is_file() and history_path.is_file():
        keras_model = nn.build_model(versions[0].windows.shape[1], versions[0].windows.shape[2], settings)
        keras_model.load_weights(path)
        kept = json.loads(history_path.read_text())
        log.info("final network loaded from %s (trained before in %.0f s)", path, kept["train_seconds"])
        return keras_model, kept["history"], kept["train_seconds"]
    started = time.time()
    keras_model, history = nn.train(versions, data.clip_labels(clips), settings,
                                       teacher_logits=final_teacher_logits(clips, versions, settings, args))
    train_s = time.time() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    keras_model.save_weights(path)
    history_path.write_text(json.dumps({"history": history, "train_seconds": train_s}))
    return keras_model, history, train_s


def final_weights_path(settings: TrainSettings, clips: list[data.Clip]) -> Path:
    """Where final_network keeps the trained weights of these settings on these clips."""
    return data.cache_dir("final") / ("%s_%s.weights.h5" % (MODEL_NAME, final_digest(settings, clips)))


def final_digest(settings: TrainSettings, clips: list[data.Clip]) -> str:
    """Hash of what a final training depends on: its settings and the clips."""
    spec = repr((cv.settings_key(settings), [clip.path for clip in clips], data.cache_key(clips, None, 0)))
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def final_teacher_logits(clips: list[data.Clip], versions: list[data.WindowSet], settings: TrainSettings,
                         args: argparse.Namespace) -> list[np.ndarray] | None:
    """Soft labels for the final model: a teacher head fitted on every clip, combined with the final models of
    settings.teacher_students (None when not distilling)."""
    if settings.distill_weight <= 0:
        return None
    from tools.model import export
    from tools.study import teacher

    features = teacher.version_features(clips, settings.audio, settings.aug_copies, args.workers)
    if settings.teacher_centred:
        features = teacher.speaker_centred(clips, versions, features)
    every_clip = np.ones(len(clips), dtype=bool)
    if settings.teacher_crossfit:  # the CV folds are the groups
        folds = data.speaker_folds(clips)
        group_of_clip = np.array([folds[clip.speaker] for clip in clips])
        teachers = [teacher.crossfit_logits(versions, features, data.clip_labels(clips), every_clip, group_of_clip)]
    else:
        head = teacher.fold_head(versions, features, data.clip_labels(clips), every_clip)
        teachers = [[head.logits(f) for f in features]]
    for name in settings.teacher_students:
        model_bytes = final_student_model(name, clips, args)
        teachers.append([export.tflite_logits(model_bytes, v.windows) for v in versions])
    return teacher.combined_versions(teachers)


def final_student_model(name: str, clips: list[data.Clip], args: argparse.Namespace) -> bytes:
    """The int8 model of CV variant `name` (with the command line's overrides) trained on every clip, to teach
    another final model; trained once and kept in the cache (.cache/final), keyed by its settings and the clips."""
    from tools.model import export, nn

    settings, path = settings_from(args, name), final_student_path(name, clips, args)
    if path.is_file():
        return path.read_bytes()
    log.info("training %s on every clip to teach the final model (kept in %s)", name, path)
    versions = cv.window_versions(clips, settings, args.workers)
    keras_model, _ = nn.train(versions, data.clip_labels(clips), settings,
                                 teacher_logits=final_teacher_logits(clips, versions, settings, args))
    int8_bytes = export.convert_int8(keras_model, versions[0].windows, settings.seed)
    export.write(int8_bytes, path)
    return int8_bytes


def final_student_path(name: str, clips: list[data.Clip], args: argparse.Namespace) -> Path:
    """Where final_student_model keeps the model of variant `name` trained on these clips."""
    return data.cache_dir("final") / ("%s_%s.tflite" % (name, final_digest(settings_from(args, name), clips)))


def refresh_card(args: argparse.Namespace) -> Path:
    """Rebuild OUT's JSON cards (serd-emotion, serd-whisper) and MODEL_CARD.md from the current CV results (models unchanged);
    on another CPU than the one the times were taken on, time the model and the study's architectures again."""
    from tools.model import export, report

    card_path = args.out / ("%s.json" % MODEL_NAME)
    card = json.loads(card_path.read_text())
    cv_results = _read_json(args.cv_results or cv.RESULTS)
    kept = {k: v for k, v in card["metrics"].items() if not k.startswith(("cv", "calibration"))}
    card["metrics"] = {**kept, **report.card_metrics(cv_results, None)}
    if card["metrics"].get("invoke_cpu") != export.host_cpu():  # times of this machine, for the model and the study alike
        window = np.zeros(card["metrics"]["input"]["input_shape"][1:3], dtype=np.float32)
        timing = export.invoke_ms((args.out / ("%s.tflite" % MODEL_NAME)).read_bytes(), window)
        card["metrics"].update(invoke_ms_median=round(timing["median_ms"], 3), invoke_ms_p95=round(timing["p95_ms"], 3), invoke_cpu=timing["cpu"])
    cv.add_costs(cv_results, cv.load_clips(args))  # times only what is missing or was timed on another CPU
    (args.cv_results or cv.RESULTS).write_text(json.dumps(cv_results, indent=1) + "\n")
    card["temperature"] = float(cv_results.get("calibration", {}).get("temperature", card["temperature"]))
    if card.get("head"):
        from tools.study import centred_head

        report.add_head_metrics(card, cv_results.get(centred_head.ENTRY, {}).get(card["training"]["variant"], {}))
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    card_1x.write_model_card(card, cv_results, args.out / "MODEL_CARD.md")
    backend_card = args.out / "serd-whisper.json"
    if backend_card.is_file():
        from tools.study import teacher

        teacher.write_backend_card(json.loads(backend_card.read_text()), args.out,
                                   cv_results.get("baselines", {}).get(teacher.BACKEND_ENTRY, {}))
    return card_path


def training_record(args, settings: TrainSettings, clips: list[data.Clip], train_s: float, history: dict) -> dict:
    """The card's "training" object: data, settings, seeds, command."""
    manifests = [str(p) for p in (args.manifest or [data.DEFAULT_MANIFEST])]
    return {
        "command": "python -m tools.train --out models",
        "argv": sys.argv[1:],
        "variant": FINAL_VARIANT,
        "manifests": [_repo_relative(Path(m)) for m in manifests],
        "clips": len(clips),
        "speakers": len({clip.speaker for clip in clips}),
        "settings": {k: v for k, v in asdict(settings).items() if k != "audio"},
        "audio_augment": asdict(settings.audio) if settings.aug_copies else None,
        "spec_augment": asdict(augment.SpecAugment()) if settings.spec_augment else None,
        "seeds": {"tensorflow": settings.seed, "numpy": settings.seed, "augmentation": "sha1(clip path, copy)"},
        "train_seconds": round(train_s, 1),
        "final_train_loss": history.get("loss", [None])[-1],
        "teacher": teacher_record(settings),
    }


def teacher_record(settings: TrainSettings) -> dict | None:
    """The card's account of the distillation teacher (None when trained on hard labels only)."""
    if settings.distill_weight <= 0:
        return None
    from serd.whisper import ENCODER_PACKAGE, ENCODER_SHA256
    from tools.study import teacher

    return {"encoder": "Whisper tiny.en (CTranslate2 int8)", "package": ENCODER_PACKAGE, "sha256": ENCODER_SHA256,
            "head": teacher.DESCRIPTION % teacher.HEAD_C + (teacher.CENTRED_NOTE if settings.teacher_centred else ""),
            "speaker_centred": settings.teacher_centred, "cross_fitted": settings.teacher_crossfit,
            "students": list(settings.teacher_students),
            "distill_weight": settings.distill_weight,
            "temperature": settings.distill_temperature}


def _repo_relative(path: Path) -> str:
    """Path relative to the checkout's parent when possible (portable across machines)."""
    try:
        return str(path.resolve().relative_to(data.REPO_DIR.parent))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> dict:
    """A JSON file, or {} when it does not exist."""
    return json.loads(path.read_text()) if path.is_file() else {}
