"""Speaker-centred heads for the student, scored on the cached CV folds of a variant, and the shipped one.

The whisper teacher gains about 7 points of UAR when each voice's own mean feature vector is subtracted
before its head. This asks the same of the student, two ways:

- "embedding": each fold's int8 network up to its pooled embedding (`int8_embedding_model` of the fold
  result) embeds every window, and a logistic head is fitted on the training speakers' embeddings, each
  centred on its speaker's mean clean-window embedding;
- "logits": no new head: the student's own int8 logits minus the voice's mean logits, plus the training
  speakers' mean logits (a linear head of identity weights over centred logits).

The held-out speakers are scored three ways: centred on all their clips ("cv", the protocol of the
centred teacher), on a running estimate over each speaker's clips in a seeded random order ("session",
a daemon hearing one voice) and on a running estimate started afresh for every clip ("clip", as
`serd analyze` does). The running estimate is serd's own (serd.head.LinearHead with a voice estimate
that starts from the training speakers' mean, worth serd.head.CENTRE_PRIOR_WINDOWS windows).

    python -m tools.study.centred_head --variant sep80x5 [--folds 0,1] [--store docs/history-1.x/cv_results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from serd import metrics
from serd.head import LinearHead
from tools.model import calibrate, data
from tools.study import cv, scoring, teacher

log = logging.getLogger("tools.study.centred_head")

EMBEDDING_KEY = "int8_embedding_model"
KINDS = ("embedding", "logits")
MODES = ("cv", "session", "clip")
C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.1)
SHUFFLE_SEED = 7
ENTRY = "centred_heads"  # where the results go in the CV results JSON, by variant


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.centred_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", required=True, help="a CV variant whose folds are cached with their embedding models")
    parser.add_argument("--c", default=",".join("%g" % c for c in C_GRID), help="comma-separated head C values; each fold "
                        "takes the best over its own training folds")
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: RAVDESS")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="the thinning the CV ran with, if any")
    parser.add_argument("--epochs", type=int, help="the epochs override the CV ran with, if any")
    parser.add_argument("--aug-copies", type=int, help="the augmented copies override the CV ran with, if any")
    parser.add_argument("--no-spec-augment", action="store_true", help="the CV ran without SpecAugment")
    parser.add_argument("--folds", default="", help="comma-separated folds (default: all)")
    parser.add_argument("--store", type=Path, help="also store the figures in this CV results JSON (for the model card)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def embeddings(model_bytes: bytes, versions: list[data.WindowSet]) -> list[np.ndarray]:
    """Every version's window outputs through an int8 model (embeddings or logits), cached by model and windows."""
    from tools.model import export

    digest = hashlib.sha1(model_bytes + repr([len(v.windows) for v in versions]).encode()).hexdigest()[:16]
    path = data.cache_dir("embeddings") / ("%s.npz" % digest)
    if path.is_file():
        with np.load(path) as stored:
            return [stored["v%d" % k] for k in range(len(versions))]
    found = [export.tflite_logits(model_bytes, v.windows) for v in versions]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{"v%d" % k: e for k, e in enumerate(found)})
    return found


def centre_prior(clips: list[data.Clip], clean: data.WindowSet, features: np.ndarray, clip_mask: np.ndarray) -> np.ndarray:
    """The mean over the speakers of clip_mask of each speaker's mean clean-window features: where a new voice starts."""
    means = teacher.speaker_means(clips, clean, features)
    speaker_of_clip = teacher.speaker_of_clip_ids(clips)
    return means[np.unique(speaker_of_clip[clip_mask])].mean(axis=0)


def fit_centred_head(clips: list[data.Clip], versions: list[data.WindowSet], features: list[np.ndarray], train_mask: np.ndarray,
                   c: float) -> LinearHead:
    """A logistic head on the training clips' speaker-centred features of every version (the student's embeddings,
    or the teacher's pooled encoder features), with its centre prior."""
    fitted = teacher.fold_head(versions, teacher.speaker_centred(clips, versions, features), data.clip_labels(clips), train_mask, c)
    prior = centre_prior(clips, versions[0], features[0], train_mask)
    return LinearHead(fitted.mean, fitted.scale, fitted.weights, fitted.bias, prior)


def logit_head(clips: list[data.Clip], clean: data.WindowSet, logits: np.ndarray, train_mask: np.ndarray) -> LinearHead:
    """The student's own logits, centred on the voice and moved to the training speakers' mean logits."""
    prior = centre_prior(clips, clean, logits, train_mask)
    width = logits.shape[1]
    return LinearHead(np.zeros(width), np.ones(width), np.eye(width), prior.copy(), prior)


def choose_c(clips: list[data.Clip], versions: list[data.WindowSet], features: list[np.ndarray], train_mask: np.ndarray,
             fold_of_clip: np.ndarray, grid: list[float]) -> float:
    """The C of the grid with the best "cv" clip UAR over the training folds, each scored by a head fitted on the others."""
    labels, clean = data.clip_labels(clips), versions[0]
    centred = teacher.speaker_centred(clips, versions, features)
    in_train = train_mask[clean.clip_index]
    scores = []
    for c in grid:
        logits = np.zeros((len(clean.windows), len(data.LABELS)))
        for inner in np.unique(fold_of_clip[train_mask]):
            held = train_mask & (fold_of_clip == inner)
            rows = held[clean.clip_index]
            logits[rows] = teacher.fold_head(versions, centred, labels, train_mask & ~held, c).logits(centred[0][rows])
        scores.append(scoring.clip_uar(logits[in_train], clean.clip_index[in_train], labels))
    log.info("inner CV UAR by C %s: %s", grid, ["%.3f" % s for s in scores])
    return grid[int(np.argmax(scores))]


def running_logits(head: LinearHead, clips: list[data.Clip], clean: data.WindowSet, features: np.ndarray,
                   test_mask: np.ndarray, session: bool, rng: np.random.Generator) -> np.ndarray:
    """Window logits of the held-out clean windows with serd's running voice estimate: one estimate per speaker
    carried over that speaker's clips in a random order (session), or a fresh one per clip."""
    speaker_of_clip = teacher.speaker_of_clip_ids(clips)
    out = np.zeros((len(clean.windows), head.weights.shape[1]))
    for speaker in np.unique(speaker_of_clip[test_mask]):
        voice = head.new_voice()
        for clip in rng.permutation(np.flatnonzero(speaker_of_clip == speaker)):
            if not session:
                voice = head.new_voice()
            for row in np.flatnonzero(clean.clip_index == clip):
                out[row] = head.logits(features[row], voice)
    return out[test_mask[clean.clip_index]]


def mode_logits(head: LinearHead, clips: list[data.Clip], clean: data.WindowSet, features: np.ndarray, test_mask: np.ndarray,
                fold: int) -> dict[str, np.ndarray]:
    """The held-out clean windows' logits under every mode of MODES."""
    speaker_of_window = teacher.speaker_of_clip_ids(clips)[clean.clip_index]
    means = teacher.speaker_means(clips, clean, features)
    in_test = test_mask[clean.clip_index]
    found = {"cv": np.stack([head.logits(f - means[s]) for f, s in zip(features[in_test], speaker_of_window[in_test])])}
    for mode in ("session", "clip"):
        found[mode] = running_logits(head, clips, clean, features, test_mask, mode == "session", np.random.default_rng(SHUFFLE_SEED + fold))
    return found


def score_fold(clips: list[data.Clip], versions: list[data.WindowSet], result: dict, fold_of_clip: np.ndarray, fold: int,
               grid: list[float], settings) -> dict:
    """Held-out window logits of the fold for every (kind, mode), the student's own (clean and with noise at the
    CV's test SNR), their clip indices, and the C chosen."""
    train_mask, test_mask = fold_of_clip != fold, fold_of_clip == fold
    clean = versions[0]
    embedded = embeddings(result[EMBEDDING_KEY].tobytes(), versions)
    student = embeddings(result["int8_model"].tobytes(), [clean])[0]
    if not np.allclose(student[test_mask[clean.clip_index]], result["int8_logits"], atol=1e-5):
        raise ValueError("fold %d: the cached int8 logits are not those of its held-out clean windows" % fold)
    c = choose_c(clips, versions, embedded, train_mask, fold_of_clip, grid)
    heads = {"embedding": (fit_centred_head(clips, versions, embedded, train_mask, c), embedded[0]),
             "logits": (logit_head(clips, clean, student, train_mask), student)}
    found = {(kind, mode): z for kind, (head, features) in heads.items()
             for mode, z in mode_logits(head, clips, clean, features, test_mask, fold).items()}
    found[("student", "uncentred")] = result["int8_logits"]
    index = {key: clean.clip_index[test_mask[clean.clip_index]] for key in found}
    noisy = cv._noisy_test(clips, test_mask, settings)
    noisy_embedded = embeddings(result[EMBEDDING_KEY].tobytes(), [noisy])[0]
    found[("embedding", "noisy-session")] = running_logits(heads["embedding"][0], clips, noisy, noisy_embedded, test_mask, True,
                                                           np.random.default_rng(SHUFFLE_SEED + fold))
    found[("student", "noisy")] = result["noisy_int8_logits"]
    index[("embedding", "noisy-session")] = index[("student", "noisy")] = noisy.clip_index
    return {"c": c, "logits": found, "clip_index": index}


def run(args: argparse.Namespace) -> dict:
    """Per (kind, mode) UAR over the folds, the C chosen in each fold, and each mode's calibration temperature."""
    chosen = cv.with_overrides(cv.variant(args.variant), cv.setting_overrides(args))
    clips = cv.load_clips(args)
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    versions = cv.window_versions(clips, chosen.settings, workers=2)
    labels = data.clip_labels(clips)
    scored = {}
    for fold in [int(f) for f in args.folds.split(",")] if args.folds else range(data.N_FOLDS):
        result = cv.cached_fold(chosen, clips, fold_of_clip, fold)
        if result is None or EMBEDDING_KEY not in result:
            raise SystemExit("fold %d of %s has no cached embedding model; run python -m tools.train --cv --variants %s first"
                             % (fold, args.variant, args.variant))
        scored[fold] = score_fold(clips, versions, result, fold_of_clip, fold, [float(c) for c in args.c.split(",")], chosen.settings)
        log.info("fold %d: %s", fold, ", ".join("%s/%s %.3f" % (k, m, scoring.clip_uar(z, scored[fold]["clip_index"][(k, m)], labels))
                                                for (k, m), z in scored[fold]["logits"].items()))
    return summary(args.variant, scored, labels)


def summary(variant: str, scored: dict, labels: np.ndarray) -> dict:
    """UAR mean ± std and per fold for every (kind, mode); the temperature of each over the pooled out-of-fold windows."""
    out: dict = {"variant": variant, "c": [scored[f]["c"] for f in sorted(scored)], "folds_run": sorted(scored)}
    for key in scored[next(iter(scored))]["logits"]:
        per_fold = [scoring.clip_uar(scored[f]["logits"][key], scored[f]["clip_index"][key], labels) for f in sorted(scored)]
        pooled = np.concatenate([scored[f]["logits"][key] for f in sorted(scored)])
        index = np.concatenate([scored[f]["clip_index"][key] for f in sorted(scored)])
        probs, seen = scoring.clip_posteriors(pooled, index, len(labels))
        recall = metrics.evaluate([data.LABELS[k] for k in labels[seen]], probs[seen], list(data.LABELS))["per_class"]
        out.setdefault(key[0], {})[key[1]] = {
            "uar_mean": float(np.mean(per_fold)), "uar_std": float(np.std(per_fold, ddof=scoring.FOLD_STD_DDOF)) if len(per_fold) > 1 else 0.0,
            "folds": [round(float(u), 4) for u in per_fold], "temperature": calibrate.fit_temperature(pooled, index, labels),
            "per_class_recall": {label: round(recall[label]["recall"], 4) for label in data.LABELS}}
    return out


def final_head(clips: list[data.Clip], versions: list[data.WindowSet], embedding_bytes: bytes,
               grid: tuple[float, ...] = C_GRID) -> tuple[LinearHead, float]:
    """The shipped model's head: fitted on every clip's speaker-centred embeddings, C chosen over the CV folds
    as in each CV fold; returns the head and its C."""
    folds = data.speaker_folds(clips)
    fold_of_clip = np.array([folds[clip.speaker] for clip in clips])
    every_clip = np.ones(len(clips), dtype=bool)
    embedded = embeddings(embedding_bytes, versions)
    c = choose_c(clips, versions, embedded, every_clip, fold_of_clip, list(grid))
    return fit_centred_head(clips, versions, embedded, every_clip, c), c


def write_head(head: LinearHead, path: Path) -> None:
    """The head as the .npz serd.head.LinearHead.load reads."""
    arrays = {"mean": head.mean, "scale": head.scale, "weights": head.weights, "bias": head.bias}
    if head.centre_prior is not None:
        arrays["centre_prior"] = head.centre_prior
    np.savez(path, **{name: np.asarray(value, dtype=np.float32) for name, value in arrays.items()})


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    results = run(args)
    if args.store:
        study = json.loads(args.store.read_text()) if args.store.is_file() else {}
        kept = study.setdefault(ENTRY, {}).get(args.variant, {})
        study[ENTRY][args.variant] = {**kept, **results}  # keeps what tools.study.session_eval --centred-head stored
        args.store.write_text(json.dumps(study, indent=1) + "\n")
    if args.json:
        print(json.dumps(results))
        return 0
    for kind in ("student",) + KINDS:
        for mode, entry in results[kind].items():
            print("%-9s %-9s UAR %.1f ± %.1f (%s)" % (kind, mode, 100 * entry["uar_mean"], 100 * entry["uar_std"],
                                                    "/".join("%.1f" % (100 * u) for u in entry["folds"])))
    print("C per fold: %s" % results["c"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
