"""Train serd's emotion model: `python -m tools.train --out models` trains the shipped multi-corpus recipe on every
shared corpus (tools.multicorpus); `--recipe ravdess8` the earlier 8-class RAVDESS-only model, `--cv` its CV study."""

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

from tools import augment, data, recipes
from tools.model import TrainSettings

log = logging.getLogger("tools.train")

MODEL_NAME = "serd-emotion"
FINAL_VARIANT = "sep80x5"  # the CV variant whose settings the shipped model is trained with
FINAL_HEAD = "embedding"  # the shipped network ends at its pooled embedding, read by a speaker-centred head (tools.centred_head)
HEAD_FILE = "%s.head.npz" % MODEL_NAME
CV_RESULTS = "cv_results.json"
DEFAULT_RECIPE = recipes.DEFAULT
RAVDESS_RECIPE = "ravdess8"  # the 8-class RAVDESS-only model of releases 1.x (tools.cv study, speaker-centred head)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__)
    parser.add_argument("--manifest", action="append", type=Path,
                        help="MANIFEST.tsv (repeatable); default: every corpus in ../shared/corpora (ravdess8: RAVDESS)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE,
                        help="multi-corpus recipe of tools/recipes.py (default %(default)s), or " + RAVDESS_RECIPE)
    parser.add_argument("--loco-results", type=Path, help="LOCO results JSON for the card (default: OUT/loco_results.json)")
    parser.add_argument("--out", type=Path, default=data.REPO_DIR / "models", help="output folder")
    parser.add_argument("--cv", action="store_true", help="run the speaker-grouped CV study instead")
    parser.add_argument("--variants", default="", help="CV: comma-separated variant names (default: the study in the model card)")
    parser.add_argument("--card-only", action="store_true", help="rewrite the card files of the model in OUT from the CV results")
    parser.add_argument("--choose", default="", help="CV: ship this variant instead of the best-UAR one")
    parser.add_argument("--baselines", action="store_true", help="CV: run the baselines too")
    parser.add_argument("--teacher", action="store_true", help="CV: evaluate the Whisper distillation teacher too (plain and speaker-centred)")
    parser.add_argument("--baselines-only", action="store_true", help="CV: run only --baselines / --teacher, no student variant")
    parser.add_argument("--no-whisper", action="store_true", help="do not write the opt-in whisper backend (serd-whisper.*)")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--draws-per-epoch", type=int, help="multi-corpus recipes: override the clips drawn per epoch")
    parser.add_argument("--aug-copies", type=int, help="override the augmented copies per clip")
    parser.add_argument("--no-spec-augment", action="store_true", help="train without SpecAugment")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="use only this many clips per speaker (smoke runs)")
    parser.add_argument("--seed", type=int, default=TrainSettings().seed)
    parser.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    parser.add_argument("--cv-results", type=Path, help="CV results JSON for the card (default: OUT/%s)" % CV_RESULTS)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, name: str = FINAL_VARIANT) -> TrainSettings:
    """The settings of CV variant `name` (default: the shipped one) with command-line overrides."""
    from tools.cv import variant

    return replace(variant(name).settings, seed=args.seed, **setting_overrides(args))


def setting_overrides(args: argparse.Namespace) -> dict:
    """The TrainSettings fields set on the command line (--epochs, --aug-copies, --no-spec-augment); the CV applies them too."""
    overrides = {"epochs": args.epochs, "aug_copies": args.aug_copies, "spec_augment": False if args.no_spec_augment else None}
    return {name: value for name, value in overrides.items() if value is not None}


def load_clips(args: argparse.Namespace) -> list[data.Clip]:
    """Clips of the chosen manifests, optionally thinned per speaker."""
    clips = data.read_manifests(args.manifest or [data.DEFAULT_MANIFEST])
    if args.clips_per_speaker:
        clips = data.thin(clips, args.clips_per_speaker)
    return clips


def window_versions(clips: list[data.Clip], settings: TrainSettings, workers: int) -> list[data.WindowSet]:
    """Clean windows plus settings.aug_copies augmented copies (all cached), normalised as settings say."""
    augs = [(None, 0)] + [(settings.audio, copy) for copy in range(1, settings.aug_copies + 1)]
    return [version_windows(clips, aug, copy, settings, workers) for aug, copy in augs]


def version_windows(clips: list[data.Clip], aug, copy: int, settings: TrainSettings, workers: int) -> data.WindowSet:
    """One version's windows: per-window normalised, or raw and then normalised per speaker within the version."""
    if settings.normalisation == "window":
        return data.compute_windows(clips, aug, copy, workers)
    if settings.normalisation == "speaker":
        return data.speaker_normalised(clips, data.compute_windows(clips, aug, copy, workers, raw=True))
    raise ValueError("unknown normalisation %r" % settings.normalisation)


def train_final(args: argparse.Namespace) -> Path:
    """Train on every clip, export int8, write the card files into args.out."""
    from tools import export, model, report

    settings = settings_from(args)
    clips = load_clips(args)
    versions = window_versions(clips, settings, args.workers)
    keras_model, history, train_s = final_network(clips, versions, settings, args)
    int8_bytes = export.convert_int8(keras_model, versions[0].windows, settings.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tflite_path = out / ("%s.tflite" % MODEL_NAME)
    cv_results = _read_json(args.cv_results or out / CV_RESULTS)
    shipped, head = int8_bytes, None
    if FINAL_HEAD == "embedding":
        from tools import centred_head

        trunk = model.embedding_model(keras_model)
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
    report.write_model_card(card, cv_results, out / "MODEL_CARD.md")
    if not args.no_whisper:
        from tools import teacher

        teacher.write_backend(clips, out, cv_results.get("baselines", {}).get(teacher.BACKEND_ENTRY, {}), args.workers,
                              settings.aug_copies)
    return tflite_path


def final_network(clips: list[data.Clip], versions: list[data.WindowSet], settings: TrainSettings,
                  args: argparse.Namespace) -> tuple:
    """(Keras model, history, training seconds) of the final run: trained on every clip, or its weights and
    history from the cache (.cache/final) when these settings were trained on these clips before."""
    from tools import model

    path = final_weights_path(settings, clips)
    history_path = path.with_name(path.name.replace(".weights.h5", ".history.json"))
    if path.is_file() and history_path.is_file():
        keras_model = model.build_model(versions[0].windows.shape[1], versions[0].windows.shape[2], settings)
        keras_model.load_weights(path)
        kept = json.loads(history_path.read_text())
        log.info("final network loaded from %s (trained before in %.0f s)", path, kept["train_seconds"])
        return keras_model, kept["history"], kept["train_seconds"]
    started = time.time()
    keras_model, history = model.train(versions, data.clip_labels(clips), settings,
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
    from tools import cv

    spec = repr((cv.settings_key(settings), [clip.path for clip in clips], data.cache_key(clips, None, 0)))
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def final_teacher_logits(clips: list[data.Clip], versions: list[data.WindowSet], settings: TrainSettings,
                         args: argparse.Namespace) -> list[np.ndarray] | None:
    """Soft labels for the final model: a teacher head fitted on every clip, combined with the final models of
    settings.teacher_students (None when not distilling)."""
    if settings.distill_weight <= 0:
        return None
    from tools import export, teacher

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
    from tools import export, model

    settings, path = settings_from(args, name), final_student_path(name, clips, args)
    if path.is_file():
        return path.read_bytes()
    log.info("training %s on every clip to teach the final model (kept in %s)", name, path)
    versions = window_versions(clips, settings, args.workers)
    keras_model, _ = model.train(versions, data.clip_labels(clips), settings,
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
    from tools import cv, export, report

    card_path = args.out / ("%s.json" % MODEL_NAME)
    card = json.loads(card_path.read_text())
    cv_results = _read_json(args.cv_results or args.out / CV_RESULTS)
    kept = {k: v for k, v in card["metrics"].items() if not k.startswith(("cv", "calibration"))}
    card["metrics"] = {**kept, **report.card_metrics(cv_results, None)}
    if card["metrics"].get("invoke_cpu") != export.host_cpu():  # times of this machine, for the model and the study alike
        window = np.zeros(card["metrics"]["input"]["input_shape"][1:3], dtype=np.float32)
        timing = export.invoke_ms((args.out / ("%s.tflite" % MODEL_NAME)).read_bytes(), window)
        card["metrics"].update(invoke_ms_median=round(timing["median_ms"], 3), invoke_ms_p95=round(timing["p95_ms"], 3), invoke_cpu=timing["cpu"])
    cv.add_costs(cv_results, load_clips(args))  # times only what is missing or was timed on another CPU
    (args.cv_results or args.out / CV_RESULTS).write_text(json.dumps(cv_results, indent=1) + "\n")
    card["temperature"] = float(cv_results.get("calibration", {}).get("temperature", card["temperature"]))
    if card.get("head"):
        from tools import centred_head

        report.add_head_metrics(card, cv_results.get(centred_head.ENTRY, {}).get(card["training"]["variant"], {}))
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    report.write_model_card(card, cv_results, args.out / "MODEL_CARD.md")
    backend_card = args.out / "serd-whisper.json"
    if backend_card.is_file():
        from tools import teacher

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
    from tools import teacher

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


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.cv:
        from tools import cv

        cv.run_study(args)
        return 0
    if args.recipe != RAVDESS_RECIPE:  # --card-only too: the final network is cached, so this re-exports and rewrites the cards
        from tools import multicorpus, recipes

        try:
            recipes.recipe(args.recipe)
        except ValueError as exc:
            print("tools.train: error: %s" % exc, file=sys.stderr)
            return 2
        log.info("model written to %s", multicorpus.train_final(args))
        return 0
    path = refresh_card(args) if args.card_only else train_final(args)
    log.info("model written to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
