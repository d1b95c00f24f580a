"""Held-out speakers through serd's runtime path with a running voice estimate (speaker-normalised variants).

The CV study normalises a held-out speaker by the mean and spread of all that speaker's clips. A daemon
only has the speech heard so far. For each fold this runs the fold's int8 model through serd's own front
end (`serd.analyze.analyze_samples`) with a card whose prior comes from the fold's training speakers, and
scores the held-out clips twice: each speaker's clips in a seeded random order as one session (the
estimate carries from clip to clip, as in a daemon hearing that voice), and each clip alone (a fresh
estimate per file, as `serd analyze` does).

    python -m tools.study.session_eval --variant sep80x5 [--prior-frames 1000,300] [--cv-results docs/history-1.x/cv_results.json]
    python -m tools.study.session_eval --teacher --cv-results docs/history-1.x/cv_results.json   (the whisper backend's head)
    python -m tools.study.session_eval --variant sep80x5 --centred-head --cv-results docs/history-1.x/cv_results.json   (the shipped kind)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from serd.analyze import analyze_samples
from serd.audio import load_audio
from serd.config import VadConfig
from serd.head import CENTRE_PRIOR_WINDOWS
from serd.metrics import evaluate
from serd.model import load_model
from serd.speaker import SpeakerStats
from tools.model import data
from tools.study import cv, scoring

log = logging.getLogger("tools.study.session_eval")

SHUFFLE_SEED = 7
CARD_TEMPLATE = data.REPO_DIR / "models" / "serd-emotion.json"
SHIPPED_CV_RESULTS = cv.RESULTS  # the 1.x study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.session_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", help="a speaker-normalised CV variant whose folds are cached")
    parser.add_argument("--teacher", action="store_true", help="the speaker-centred Whisper teacher (the whisper backend) instead")
    parser.add_argument("--centred-head", action="store_true", help="the variant's fold networks up to their embedding with "
                        "speaker-centred heads (as the shipped serd-emotion), instead of a speaker-normalised variant")
    parser.add_argument("--prior-frames", default=str(data.PRIOR_WEIGHT_FRAMES), help="comma-separated prior weights to try, in frames")
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: RAVDESS")
    parser.add_argument("--folds", default="", help="comma-separated folds (default: all)")
    parser.add_argument("--epochs", type=int, help="the epochs override the CV ran with, if any")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="the thinning the CV ran with, if any")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--cv-results", type=Path, help="also store the figures in this CV results JSON (for the model card)")
    return parser.parse_args(argv)


def fold_model(folder: Path, int8_bytes: bytes, prior) -> Path:
    """The fold's int8 model and a runtime card (the shipped card's front end, this fold's prior) in folder."""
    card = json.loads(CARD_TEMPLATE.read_text())
    card.pop("head", None)  # a fold model ends in its own logits
    card.update(normalisation="per-speaker-cmvn", speaker_prior=prior.to_dict(), temperature=1.0, output="logits")
    path = folder / "serd-emotion.tflite"
    path.write_bytes(int8_bytes)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def held_out_rows(model, clips: list[data.Clip], session: bool) -> np.ndarray:
    """Clip probability rows (input order) with one voice estimate per speaker (session) or per clip."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(clips))
    voices: dict[str, SpeakerStats | None] = {}
    rows = np.full((len(clips), len(model.labels)), 1.0 / len(model.labels))
    for i in order:
        clip = clips[i]
        if session and clip.speaker not in voices:
            voices[clip.speaker] = model.new_voice()
        voice = voices[clip.speaker] if session else None
        analysis = analyze_samples(load_audio(clip.path, model.card.sample_rate_hz), model, VadConfig(), voice)
        if analysis.overall.probabilities:
            rows[i] = [analysis.overall.probabilities[label] for label in model.labels]
    return rows


def run(args: argparse.Namespace) -> dict:
    """Out-of-fold UAR of the cached folds: CV normalisation, runtime sessions and single clips, per prior weight."""
    study_variant = cv.variant(args.variant)
    if args.epochs is not None:
        study_variant = replace(study_variant, settings=replace(study_variant.settings, epochs=args.epochs))
    if study_variant.settings.normalisation != "speaker":
        raise SystemExit("variant %s is not speaker-normalised" % args.variant)
    clips = cv.load_clips(args)
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    labels = data.clip_labels(clips)
    raw = data.compute_windows(clips, None, 0, raw=True)
    results = {"variant": args.variant, "cv_int8_uar": [], "by_prior_frames": {}}
    weights = [int(w) for w in args.prior_frames.split(",")]
    rows = {(w, mode): np.zeros((len(clips), len(data.LABELS))) for w in weights for mode in ("session", "clip")}
    chosen = [int(f) for f in args.folds.split(",")] if args.folds else list(range(data.N_FOLDS))
    for fold in chosen:
        result = cv.cached_fold(study_variant, clips, fold_of_clip, fold)
        if result is None or "int8_model" not in result:
            raise SystemExit("fold %d of %s has no cached model; run `python -m tools.train --cv --variants %s` first"
                             % (fold, args.variant, args.variant))
        results["cv_int8_uar"].append(scoring.clip_uar(result["int8_logits"], result["clip_index"], labels))
        test_ids = np.flatnonzero(fold_of_clip == fold)
        train_raw = data.subset(raw, fold_of_clip != fold)
        for weight in weights:
            prior = data.speaker_prior(clips, train_raw, weight)
            with tempfile.TemporaryDirectory() as folder:
                model = load_model(fold_model(Path(folder), result["int8_model"].tobytes(), prior))
                for mode in ("session", "clip"):
                    rows[(weight, mode)][test_ids] = held_out_rows(model, [clips[i] for i in test_ids], mode == "session")
        log.info("fold %d done", fold)
    truths = [data.LABELS[k] for k in labels]
    for weight in weights:
        results["by_prior_frames"][str(weight)] = {
            mode: _fold_uars(truths, rows[(weight, mode)], fold_of_clip, chosen) for mode in ("session", "clip")}
    return results


def centred_head_sessions(args: argparse.Namespace) -> dict:
    """Each fold's network up to its embedding with a speaker-centred head fitted on the fold's training speakers
    (tools.study.centred_head), loaded by serd as the shipped model is and run through its front end on the held-out
    speakers: one voice estimate per speaker over their clips in a seeded random order, and one per clip."""
    from tools.study import centred_head

    study_variant = cv.with_overrides(cv.variant(args.variant), {} if args.epochs is None else {"epochs": args.epochs})
    clips = cv.load_clips(args)
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    versions = cv.window_versions(clips, study_variant.settings, workers=2)
    card = json.loads(CARD_TEMPLATE.read_text())
    rows = {mode: np.zeros((len(clips), len(data.LABELS))) for mode in ("session", "clip")}
    chosen = [int(f) for f in args.folds.split(",")] if args.folds else list(range(data.N_FOLDS))
    for fold in chosen:
        result = cv.cached_fold(study_variant, clips, fold_of_clip, fold)
        if result is None or centred_head.EMBEDDING_KEY not in result:
            raise SystemExit("fold %d of %s has no cached embedding model; run python -m tools.train --cv --variants %s first"
                             % (fold, args.variant, args.variant))
        train_mask, trunk = fold_of_clip != fold, result[centred_head.EMBEDDING_KEY].tobytes()
        embedded = centred_head.embeddings(trunk, versions)
        c = centred_head.choose_c(clips, versions, embedded, train_mask, fold_of_clip, list(centred_head.C_GRID))
        test_ids = np.flatnonzero(~train_mask)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "serd-emotion.tflite"
            path.write_bytes(trunk)
            centred_head.write_head(centred_head.fit_centred_head(clips, versions, embedded, train_mask, c), Path(folder) / card["head"])
            path.with_suffix(".json").write_text(json.dumps(dict(card, temperature=1.0)))
            model = load_model(path)
            for mode in rows:
                rows[mode][test_ids] = held_out_rows(model, [clips[i] for i in test_ids], mode == "session")
        log.info("fold %d done", fold)
    truths = [data.LABELS[k] for k in data.clip_labels(clips)]
    return {mode: _fold_uars(truths, rows[mode], fold_of_clip, chosen) for mode in rows}


def main_centred_head(args: argparse.Namespace) -> int:
    """--centred-head: session and per-clip UAR through serd's runtime; stored with the variant's centred-head figures."""
    from tools.study import centred_head

    results = centred_head_sessions(args)
    if args.cv_results:
        study = json.loads(args.cv_results.read_text())
        study.setdefault(centred_head.ENTRY, {}).setdefault(args.variant, {})["runtime"] = results
        args.cv_results.write_text(json.dumps(study, indent=1) + "\n")
    _print_modes(results)
    return 0


def _print_modes(results: dict) -> None:
    """One line per mode: UAR mean ± std (per fold)."""
    for mode in ("session", "clip"):
        print("%s: UAR %.1f ± %.1f (%s)" % (mode, 100 * results[mode]["uar_mean"], 100 * results[mode]["uar_std"],
                                            "/".join("%.1f" % (100 * u) for u in results[mode]["folds"])))


def teacher_sessions(clips: list[data.Clip], fold_of_clip: np.ndarray, c: float) -> dict:
    """The speaker-centred teacher (the whisper backend's head) with the estimate its runtime keeps.

    Per fold: a head on the training speakers' centred features; each held-out speaker's clean clips in a
    seeded random order, every window centred on the running mean of the pooled features heard so far
    (serd.head's estimate, started from the training speakers' mean), as `serd.whisper.WhisperEmotionModel`
    does; and the same estimate started afresh for each clip."""
    from tools.study import centred_head, teacher

    windows, features = teacher.head_data(clips)
    clean = windows[0]
    rows = {mode: np.full((len(clips), len(data.LABELS)), 1.0 / len(data.LABELS)) for mode in ("session", "clip")}
    rng = np.random.default_rng(SHUFFLE_SEED)  # one sequence of speaker orders over the folds
    for fold in range(data.N_FOLDS):
        test = fold_of_clip == fold
        head = centred_head.fit_centred_head(clips, windows, features, ~test, c)
        for mode, order in (("session", rng), ("clip", np.random.default_rng(SHUFFLE_SEED))):  # a fresh clip ignores the order
            logits = centred_head.running_logits(head, clips, clean, features[0], test, mode == "session", order)
            probs, seen = scoring.clip_posteriors(logits, clean.clip_index[test[clean.clip_index]], len(clips))
            rows[mode][seen] = probs[seen]
        log.info("teacher fold %d done", fold)
    truths = [data.LABELS[k] for k in data.clip_labels(clips)]
    folds = list(range(data.N_FOLDS))
    return {"prior_windows": CENTRE_PRIOR_WINDOWS, "c": c, **{mode: _fold_uars(truths, rows[mode], fold_of_clip, folds) for mode in rows}}


def _fold_uars(truths: list[str], rows: np.ndarray, fold_of_clip: np.ndarray, folds: list[int]) -> dict:
    """Mean and std over folds of the clip UAR, and the per-fold values."""
    per_fold = [evaluate([t for t, k in zip(truths, fold_of_clip) if k == f], rows[fold_of_clip == f], list(data.LABELS))["uar"]
                for f in folds]
    return {"uar_mean": float(np.mean(per_fold)), "uar_std": float(np.std(per_fold, ddof=scoring.FOLD_STD_DDOF)),
            "folds": [round(float(u), 4) for u in per_fold]}


def main_teacher(args: argparse.Namespace) -> int:
    """--teacher: session and per-clip UAR of the speaker-centred teacher; stored with its CV entry."""
    from tools.study import teacher

    clips = cv.load_clips(args)
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    source = args.cv_results or SHIPPED_CV_RESULTS  # the head's C comes from the CV entry the backend follows
    study = json.loads(source.read_text()) if source.is_file() else {}
    entry = study.get("baselines", {}).get(teacher.CENTRED_NAME, {})
    results = teacher_sessions(clips, fold_of_clip, float(entry.get("c", teacher.HEAD_C)))
    if args.cv_results and entry:
        entry["sessions"] = results
        args.cv_results.write_text(json.dumps(study, indent=1) + "\n")
    _print_modes(results)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.teacher:
        return main_teacher(args)
    if not args.variant:
        raise SystemExit("give --variant NAME or --teacher")
    if args.centred_head:
        return main_centred_head(args)
    results = run(args)
    if args.cv_results:
        study = json.loads(args.cv_results.read_text())
        study.setdefault("speaker_sessions", {})[args.variant] = results
        args.cv_results.write_text(json.dumps(study, indent=1) + "\n")
    if args.json:
        print(json.dumps(results))
        return 0
    cv_uar = results["cv_int8_uar"]
    print("| normalisation of a held-out speaker | int8 UAR (mean ± std over folds) | per fold |")
    print("|---|---|---|")
    print("| all of the speaker's clips (the CV protocol) | %.1f ± %.1f | %s |" % (
        100 * np.mean(cv_uar), 100 * np.std(cv_uar, ddof=scoring.FOLD_STD_DDOF), "/".join("%.1f" % (100 * u) for u in cv_uar)))
    for weight, modes in results["by_prior_frames"].items():
        for mode, text in (("session", "running estimate over the speaker's session"), ("clip", "running estimate, fresh for each clip")):
            entry = modes[mode]
            print("| %s, prior %s frames | %.1f ± %.1f | %s |" % (text, weight, 100 * entry["uar_mean"], 100 * entry["uar_std"],
                                                              "/".join("%.1f" % (100 * u) for u in entry["folds"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
