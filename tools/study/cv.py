"""Speaker-grouped 5-fold CV study: variants, int8 delta, calibration -> docs/history-1.x/cv_results.json."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from tools.model import augment, data
from tools.study import scoring
from tools.model.nn import TrainSettings
from tools.study.teacher import CENTRED_NAME

log = logging.getLogger(__name__)

PROCESSES = 2
VALIDATION_EVERY = 5  # epochs between held-out checks (the curves in cv_curves.png)
NOISY_TEST_SNR_DB = 10.0
NOISY_TEST = augment.AudioAugment(noise_prob=1.0, snr_db_min=NOISY_TEST_SNR_DB, snr_db_max=NOISY_TEST_SNR_DB,
                                  gain_db_max=0.0, shift_ms_max=0.0, speeds=())

RESULTS = data.REPO_DIR / "docs" / "history-1.x" / "cv_results.json"  # the 1.x study; its plots sit beside it


@dataclass(frozen=True)
class Variant:
    """One CV configuration."""

    name: str
    description: str
    settings: TrainSettings
    overrides: tuple[tuple[str, object], ...] = ()  # settings changed on the command line; the variants that teach this one get them too


VARIANTS_FILE = Path(__file__).with_name("variants.json")  # the variants the 1.x study's table reports, in its order
TUPLE_FIELDS = ("filters", "teacher_students", "speeds")  # JSON lists that the settings hold as tuples


@lru_cache(maxsize=None)
def variants(path: Path = VARIANTS_FILE) -> tuple[Variant, ...]:
    """The study's variants, read from variants.json: each one's TrainSettings fields (and AudioAugment fields under
    "audio") that differ from their defaults."""
    return tuple(_variant_from(entry) for entry in json.loads(path.read_text())["variants"])


def _variant_from(entry: dict) -> Variant:
    """One variants.json entry as a Variant."""
    settings = {key: tuple(value) if key in TUPLE_FIELDS else value for key, value in entry["settings"].items()}
    if "audio" in settings:
        audio = {key: tuple(value) if key in TUPLE_FIELDS else value for key, value in settings["audio"].items()}
        settings["audio"] = augment.AudioAugment(**audio)
    return Variant(entry["name"], entry["description"], TrainSettings(**settings))


def study_names() -> tuple[str, ...]:
    """The variants `--cv` runs by default, in the order of the card's table."""
    return tuple(v.name for v in variants())


def variant(name: str) -> Variant:
    """A variant of variants.json by name; ValueError names the known ones."""
    for candidate in variants():
        if candidate.name == name:
            return candidate
    raise ValueError("unknown variant %r (known: %s)" % (name, ", ".join(study_names())))


def with_overrides(chosen: Variant, overrides: dict) -> Variant:
    """The variant with some TrainSettings fields replaced (e.g. epochs, aug_copies), remembering them for its teachers."""
    if not overrides:
        return chosen
    merged = dict(chosen.overrides) | overrides
    return replace(chosen, settings=replace(chosen.settings, **overrides), overrides=tuple(sorted(merged.items())))


def teacher_variants(student: Variant) -> list[Variant]:
    """The variants of student.settings.teacher_students, under the student's command-line overrides."""
    return [with_overrides(variant(name), dict(student.overrides)) for name in student.settings.teacher_students]


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


def fold_cache_path(variant: Variant, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> Path:
    """Where fold_job keeps the result of one fold."""
    return data.cache_dir("cv") / ("%s_fold%d_%s.npz" % (variant.name, fold, _job_digest(variant, clips, fold_of_clip)))


def cached_fold(variant: Variant, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> dict | None:
    """A fold's cached result, or None when it has not been run."""
    path = fold_cache_path(variant, clips, fold_of_clip, fold)
    return _load_fold(path) if path.is_file() else None


def fold_job(variant: Variant, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> dict:
    """Train on the other folds, return out-of-fold window logits (float and int8) and history."""
    path = fold_cache_path(variant, clips, fold_of_clip, fold)
    if path.is_file():
        return _load_fold(path)
    from tools.model import export, nn
    labels = data.clip_labels(clips)
    versions = window_versions(clips, variant.settings, workers=1)
    train_mask, test_mask = fold_of_clip != fold, fold_of_clip == fold
    test = data.subset(versions[0], test_mask)

    def validation(keras_model, epoch: int) -> dict:
        if (epoch + 1) % VALIDATION_EVERY and epoch + 1 < variant.settings.epochs:
            return {"val_uar": float("nan")}
        return {"val_uar": scoring.clip_uar(nn.predict_logits(keras_model, test.windows), test.clip_index, labels)}

    teacher_logits = fold_teacher_logits(variant, clips, versions, fold_of_clip, fold)
    keras_model, history = nn.train([data.subset(v, train_mask) for v in versions], labels, variant.settings, validation,
                                       teacher_logits)
    calibration = data.subset(versions[0], train_mask).windows
    int8_bytes = export.convert_int8(keras_model, calibration, variant.settings.seed)
    embedding_bytes = export.convert_int8(nn.embedding_model(keras_model), calibration, variant.settings.seed)
    noisy = _noisy_test(clips, test_mask, variant.settings)
    result = {
        "noisy_clip_index": noisy.clip_index,
        "noisy_int8_logits": export.tflite_logits(int8_bytes, noisy.windows),
        "clip_index": test.clip_index,
        "float_logits": nn.predict_logits(keras_model, test.windows),
        "int8_logits": export.tflite_logits(int8_bytes, test.windows),
        "val_uar": np.array(history["val_uar"]),
        "loss": np.array(history["loss"]),
        "int8_model": np.frombuffer(int8_bytes, dtype=np.uint8),  # for evaluations after the fact (e.g. a running speaker estimate)
        "int8_embedding_model": np.frombuffer(embedding_bytes, dtype=np.uint8),  # the same network up to its pooled embedding
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result)
    log.info("variant %s fold %d: final val UAR %.3f", variant.name, fold, history["val_uar"][-1])
    return result


def fold_teacher_logits(variant: Variant, clips: list[data.Clip], versions: list[data.WindowSet], fold_of_clip: np.ndarray,
                        fold: int) -> list[np.ndarray] | None:
    """The fold's teacher logits of the training windows of every version (None when not distilling): the Whisper
    head fitted on the training clips, combined with the fold's own models of settings.teacher_students."""
    if variant.settings.distill_weight <= 0:
        return None
    from tools.model import export
    from tools.study import teacher

    train_mask = fold_of_clip != fold
    features = teacher.version_features(clips, variant.settings.audio, variant.settings.aug_copies, workers=1)
    if variant.settings.teacher_centred:
        features = teacher.speaker_centred(clips, versions, features)
    if variant.settings.teacher_crossfit:  # the other folds are the groups: 4 actors each, both sexes
        teachers = [teacher.crossfit_logits(versions, features, data.clip_labels(clips), train_mask, fold_of_clip)]
    else:
        head = teacher.fold_head(versions, features, data.clip_labels(clips), train_mask)
        teachers = [[head.logits(f[train_mask[v.clip_index]]) for v, f in zip(versions, features)]]
    for taught_by in teacher_variants(variant):
        model_bytes = fold_student_model(taught_by, clips, fold_of_clip, fold)
        teachers.append([export.tflite_logits(model_bytes, data.subset(v, train_mask).windows) for v in versions])
    return teacher.combined_versions(teachers)


def fold_student_model(taught_by: Variant, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> bytes:
    """The int8 model CV variant `taught_by` trained for this fold (its cached result), to teach another variant."""
    result = cached_fold(taught_by, clips, fold_of_clip, fold)
    if result is None or "int8_model" not in result:
        raise RuntimeError("variant %s has no cached int8 model of fold %d; run python -m tools.train --cv --variants %s first"
                           % (taught_by.name, fold, taught_by.name))
    return result["int8_model"].tobytes()


def teachers_first(chosen: list[Variant]) -> tuple[list[Variant], list[Variant]]:
    """The chosen variants that teach other chosen ones (their folds run first), and the rest."""
    teaching = [v for v in chosen if any(v.name in other.settings.teacher_students for other in chosen)]
    return teaching, [v for v in chosen if v not in teaching]


def missing_student_teachers(variants: list[Variant], clips: list[data.Clip], fold_of_clip: np.ndarray) -> list[str]:
    """The teacher_students of the variants that lack a cached int8 model for some fold."""
    teachers = {t.name: t for v in variants for t in teacher_variants(v)}
    return [name for name, t in sorted(teachers.items()) if any("int8_model" not in (cached_fold(t, clips, fold_of_clip, fold) or {})
                                                                  for fold in range(data.N_FOLDS))]


def _noisy_test(clips: list[data.Clip], test_mask: np.ndarray, settings: TrainSettings) -> data.WindowSet:
    """Windows of the held-out clips with coloured noise at NOISY_TEST_SNR_DB (clip indices global)."""
    test_ids = np.flatnonzero(test_mask)
    noisy = version_windows([clips[i] for i in test_ids], NOISY_TEST, 0, settings, workers=1)
    return data.WindowSet(noisy.windows, test_ids[noisy.clip_index])


def _job_digest(variant: Variant, clips: list[data.Clip], fold_of_clip: np.ndarray) -> str:
    """Hash of what a fold result depends on: settings, clips and fold assignment."""
    spec = repr((settings_key(variant.settings), [clip.path for clip in clips], fold_of_clip.tolist(), data.cache_key(clips, None, 0)))
    if variant.settings.teacher_students:  # a retrained teacher invalidates its students
        spec += repr([_job_digest(t, clips, fold_of_clip) for t in teacher_variants(variant)])
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def settings_key(settings: TrainSettings) -> str:
    """The settings that differ from TrainSettings' defaults, by name: a field added later with a default
    that keeps the old behaviour leaves every earlier fold result valid."""
    default = TrainSettings()
    changed = {f.name: getattr(settings, f.name) for f in fields(settings) if getattr(settings, f.name) != getattr(default, f.name)}
    return repr(sorted(changed.items()))


def _load_fold(path: Path) -> dict:
    """A cached fold result."""
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def _worker_init() -> None:
    """Pool processes log like the parent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(name)s %(message)s")


def run_study(args) -> dict:
    """Run the chosen variants (and baselines) on the same folds, write the results (--cv-results, default
    docs/history-1.x/cv_results.json) and the chosen variant's plots beside them."""
    clips = load_clips(args)
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    by_name = {v.name: v for v in variants()}
    unknown = [name for name in args.variants.split(",") if name and name not in by_name]
    if unknown:
        raise SystemExit("unknown variant(s) %s; known: %s" % (", ".join(unknown), ", ".join(by_name)))
    chosen = [] if args.baselines_only else [by_name[name] for name in (args.variants.split(",") if args.variants else study_names())]
    chosen = [with_overrides(v, setting_overrides(args)) for v in chosen]
    teaching, taught = teachers_first(chosen)
    missing = [name for name in missing_student_teachers(chosen, clips, fold_of_clip) if name not in {v.name for v in teaching}]
    if missing:
        raise SystemExit("variant(s) %s teach others but have folds without a cached int8 model; run python -m tools.train "
                         "--cv --variants %s first" % (", ".join(missing), ",".join(missing)))
    _prepare_caches(clips, chosen, args.workers)
    if args.baselines:
        from tools.study import baselines

        baselines.prepare(clips)
    results = _run_jobs(teaching, clips, fold_of_clip, baselines=False)  # teachers' folds first: their students load them
    results.update(_run_jobs(taught, clips, fold_of_clip, baselines=args.baselines))
    if args.teacher:
        from tools.study import teacher

        for centred in (False, True):
            family = teacher.cross_validate(clips, fold_of_clip, centred)
            results[("baseline", next(iter(family)))] = family
    study = scoring.study_summary(chosen, results, clips, fold_of_clip, folds)
    out_path = args.cv_results or RESULTS
    previous = json.loads(out_path.read_text()) if out_path.is_file() else {}
    study = scoring.merge_previous(previous, study, args.choose)
    order_variants(study)
    add_costs(study, clips)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(study, indent=1) + "\n")
    scoring.write_study_plots(study, out_path.parent)
    log.info("CV results written to %s", out_path)
    return study


def order_variants(study: dict) -> None:
    """Put the study's variants in the order of variants.json (others after them, as they came)."""
    rank = {name: i for i, name in enumerate(study_names())}
    names = sorted(study["variants"], key=lambda name: rank.get(name, len(rank)))
    study["variants"] = {name: study["variants"][name] for name in names}


def architecture(settings: TrainSettings) -> tuple:
    """The TrainSettings fields that shape the network (and so its size and speed); the rest only train it."""
    return (tuple(settings.filters), settings.stem_stride, settings.space_to_depth, settings.separable, settings.dropout)


def add_costs(study: dict, clips: list[data.Clip]) -> None:
    """int8 size and invoke time of every variant's architecture, and the teacher's, where missing
    or timed on another CPU (so that one table holds times of one machine)."""
    from tools.model import export, nn

    by_name = {v.name: v for v in variants()}
    host = export.host_cpu()
    timed = {architecture(by_name[name].settings): entry["cost"] for name, entry in study["variants"].items()
             if name in by_name and entry.get("cost", {}).get("cpu") == host}
    untimed = [name for name, entry in study["variants"].items() if name in by_name and entry.get("cost", {}).get("cpu") != host]
    windows = data.compute_windows(clips, None, 0).windows if untimed else None
    for name in untimed:
        entry, settings = study["variants"][name], by_name[name].settings
        if architecture(settings) in timed:  # the same network, already timed in this table's hour
            entry["cost"] = dict(timed[architecture(settings)])
            continue
        untrained = nn.build_model(windows.shape[1], windows.shape[2], settings)  # size and speed do not depend on weights
        int8_bytes = export.convert_int8(untrained, windows, settings.seed)
        timing = export.invoke_ms(int8_bytes, windows[0])
        entry["cost"] = {"int8_bytes": len(int8_bytes), "invoke_ms": round(timing["median_ms"], 3),
                         "parameters": int(untrained.count_params()), "cpu": timing["cpu"]}
        timed[architecture(settings)] = entry["cost"]
    teacher_entry = study.get("baselines", {}).get("whisper_teacher")
    if teacher_entry is not None and teacher_entry.get("cost", {}).get("cpu") != host:
        from tools.study import teacher

        teacher_entry["cost"] = teacher.cost()
    centred_entry = study.get("baselines", {}).get(CENTRED_NAME)
    if teacher_entry is not None and centred_entry is not None:
        centred_entry["cost"] = dict(teacher_entry["cost"])  # the encoder is the cost; subtracting a mean adds nothing measurable


def _prepare_caches(clips: list[data.Clip], variants: list[Variant], workers: int) -> None:
    """Compute every window cache the variants need, before the training processes start."""
    data.compute_windows(clips, None, 0, workers)
    for variant in variants:
        raw = variant.settings.normalisation != "window"
        data.compute_windows(clips, None, 0, workers, raw)
        for copy in range(1, variant.settings.aug_copies + 1):
            data.compute_windows(clips, variant.settings.audio, copy, workers, raw)
        if variant.settings.distill_weight > 0:
            from tools.study import teacher

            teacher.version_features(clips, variant.settings.audio, variant.settings.aug_copies, workers)


def _run_jobs(variants: list[Variant], clips: list[data.Clip], fold_of_clip: np.ndarray, baselines: bool) -> dict:
    """All (variant, fold) jobs (and the baselines) on PROCESSES one-thread processes."""
    from tools.study.baselines import BASELINES, run as run_baseline

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context, initializer=_worker_init, max_tasks_per_child=1) as pool:
        futures = {}
        for name in BASELINES if baselines else ():
            futures[("baseline", name)] = pool.submit(run_baseline, name, clips, fold_of_clip)
        for variant in variants:
            for fold in range(data.N_FOLDS):
                futures[(variant.name, fold)] = pool.submit(fold_job, variant, clips, fold_of_clip, fold)
        return {key: future.result() for key, future in futures.items()}
