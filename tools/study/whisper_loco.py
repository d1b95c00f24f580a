"""The Whisper head leave-one-corpus-out, plain and speaker-centred, on balanced and on one-emotion sessions.

`python -m tools.study.whisper_loco` fits a logistic head on the pooled Whisper tiny.en features of four corpora's clean
windows and scores the fifth (predictions restricted to its classes). The centred head subtracts each voice's mean
feature vector: over all of a speaker's clips (a balanced session, every emotion equally), and over a session where one
emotion makes 80 % of the clips (what a driver angry for ten minutes gives a running estimate). Results go into
models/loco_results.json under "whisper_head".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from tools.model import calibrate, corpora, data
from tools.study import loco, loco_scoring, teacher

log = logging.getLogger("tools.study.whisper_loco")

DOMINANT_SHARE = 0.8  # share of a one-emotion session's clips that carry that emotion
HEAD_C = teacher.HEAD_C
BACKEND_VERSION = "2.0.0"  # 2.0: five corpora, the seven shared labels, no speaker centring (it collapses on one-emotion sessions)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.whisper_loco", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: every shared corpus")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="use only this many clips per speaker (smoke runs)")
    parser.add_argument("--results", type=Path, default=loco.RESULTS, help="results JSON (default: models/loco_results.json)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the encoder")
    parser.add_argument("--pooling", choices=("window", "span"), default="window",
                        help="window: one feature vector per 2 s model window (what the backend runs); span: one per "
                             "clip, the encoder over the clip's whole speech span (stored as whisper_head_span)")
    parser.add_argument("--backend-out", type=Path, help="also write the opt-in serd-whisper backend (plain head on every "
                        "clip, temperature from the LOCO predictions) into this folder")
    return parser.parse_args(argv)


def fit(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> teacher.Head:
    """Standardised multinomial logistic regression over the 7 labels (classes without clips never win)."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    model = LogisticRegression(C=HEAD_C, max_iter=teacher.HEAD_MAX_ITER)
    model.fit((features - mean) / scale, labels, sample_weight=weights / weights.mean())
    n = len(corpora.LABELS)
    coef, bias = np.zeros((features.shape[1], n)), np.full(n, -1e9)
    coef[:, model.classes_], bias[model.classes_] = model.coef_.T, model.intercept_
    return teacher.Head(mean, scale, coef, bias)


def window_weights(clips: list[data.Clip], clean: data.WindowSet, mask: np.ndarray) -> np.ndarray:
    """Per window of the clips in mask: the clip's draw probability (corpus/speaker/class balance) over its windows."""
    chosen = [clip for clip, keep in zip(clips, mask) if keep]
    p = np.zeros(len(clips))
    p[mask] = corpora.draw_probabilities(chosen)
    counts = np.bincount(clean.clip_index, minlength=len(clips))
    return (p / np.maximum(counts, 1))[clean.clip_index]


def speaker_centred(clips: list[data.Clip], clean: data.WindowSet, features: np.ndarray) -> np.ndarray:
    """Every window minus the mean of its speaker's windows (all clips: a balanced session)."""
    return features - teacher.speaker_means(clips, clean, features)[teacher.speaker_of_clip_ids(clips)[clean.clip_index]]


def dominant_sessions(clips: list[data.Clip], test: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Clip-index arrays of one-emotion sessions: per held-out speaker and emotion, all its clips of that emotion and
    enough of its other clips for DOMINANT_SHARE."""
    sessions = []
    for speaker in sorted({clip.speaker for clip, t in zip(clips, test) if t}):
        own = np.array([i for i, clip in enumerate(clips) if clip.speaker == speaker])
        emotions = np.array([clips[i].emotion for i in own])
        for emotion in sorted(set(emotions)):
            main, rest = own[emotions == emotion], own[emotions != emotion]
            n_rest = min(len(rest), int(round(len(main) * (1 - DOMINANT_SHARE) / DOMINANT_SHARE)))
            sessions.append(np.concatenate([main, rng.choice(rest, size=n_rest, replace=False)]))
    return sessions


def score_corpus(clips, clean, features, centred, fold_of_clip, corpus: int, rng) -> dict:
    """UAR (restricted) of one held-out corpus: plain head, centred head on balanced sessions, on one-emotion sessions."""
    truth = data.clip_labels(clips, corpora.LABELS)
    test, train = fold_of_clip == corpus, fold_of_clip != corpus
    in_train = train[clean.clip_index]
    weights = window_weights(clips, clean, train)[in_train]
    classes = corpora.corpus_classes(clips)[corpora.corpus_names(clips)[corpus]]
    out = {}
    for name, x in (("plain", features), ("centred_balanced", centred)):
        head = fit(x[in_train], truth[clean.clip_index[in_train]], weights)
        logits = head.logits(x)
        probs, seen = loco_scoring.clip_probabilities(logits, clean.clip_index, len(clips))
        out[name] = loco_scoring.uar(truth[test], loco_scoring.predictions(probs[test], seen[test], classes), classes)
        if name == "plain":
            plain_logits = np.where(test[clean.clip_index][:, None], logits, 0.0)
        if name == "centred_balanced":
            centred_head = head
    window_of_clip = [np.flatnonzero(clean.clip_index == i) for i in range(len(clips))]
    truths, preds = [], []
    for session in dominant_sessions(clips, test, rng):
        rows = np.concatenate([window_of_clip[i] for i in session])
        if not len(rows):
            continue
        position = {int(clip): k for k, clip in enumerate(session)}
        local = np.array([position[int(i)] for i in clean.clip_index[rows]])
        logits = centred_head.logits(features[rows] - features[rows].mean(axis=0))
        probs, seen = loco_scoring.clip_probabilities(logits, local, len(session))
        truths.append(truth[session])
        preds.append(loco_scoring.predictions(probs, seen, classes))
    out["centred_one_emotion_sessions"] = loco_scoring.uar(np.concatenate(truths), np.concatenate(preds), classes)
    return out, plain_logits


def run(args: argparse.Namespace) -> dict:
    """Score every corpus and store the summary."""
    clips = loco.load_clips(args)
    if args.pooling == "span":
        if args.backend_out:
            raise SystemExit("--backend-out needs --pooling window (the backend pools each model window)")
        span = teacher.speech_span_features(clips, args.workers)
        rows = np.flatnonzero(np.any(span != 0, axis=1))  # clips with speech: one row each
        clean, features = data.WindowSet(np.zeros((len(rows), 1, 1), np.float32), rows), span[rows]
    else:
        clean = data.compute_windows(clips, None, 0, args.workers)
        features = teacher.window_features(clips, None, 0, args.workers)
    centred = speaker_centred(clips, clean, features)
    fold_of_clip, names = loco.folds(clips, "loco")
    rng = np.random.default_rng(0)
    per_corpus, oof_logits = {}, np.zeros((len(clean.windows), len(corpora.LABELS)))
    for c in range(len(names)):
        per_corpus[names[c]], plain_logits = score_corpus(clips, clean, features, centred, fold_of_clip, c, rng)
        oof_logits += plain_logits  # each window's logits from the head that never saw its corpus
    description = teacher.DESCRIPTION % HEAD_C + "; clean windows only; corpus/speaker/class-balanced weights"
    if args.pooling == "span":
        description = description.replace("each 2 s model window", "each clip's whole speech span (first window start to "
                                          "last window end)").replace(", trained on clean + augmented windows", "")
    summary = {"description": description,
               "per_corpus": per_corpus,
               "mean": {mode: loco_scoring.mean_spread([s[mode] for s in per_corpus.values()]) for mode in next(iter(per_corpus.values()))}}
    stored = json.loads(args.results.read_text()) if args.results.is_file() else {}
    truth = data.clip_labels(clips, corpora.LABELS)
    summary["temperature_plain"] = calibrate.fit_temperature(oof_logits, clean.clip_index, truth)
    stored["whisper_head" if args.pooling == "window" else "whisper_head_span"] = summary
    args.results.write_text(json.dumps(stored, indent=1) + "\n")
    if args.backend_out:
        write_backend(clips, clean, features, summary, args.backend_out)
    return summary


def write_backend(clips: list[data.Clip], clean: data.WindowSet, features: np.ndarray, summary: dict, out: Path) -> Path:
    """The opt-in serd-whisper backend: the plain head fitted on every clip (balanced draws as weights), no voice
    estimate, the seven shared labels, and the temperature fitted on the LOCO predictions."""
    from serd.whisper import ENCODER_PACKAGE, ENCODER_SHA256

    every = np.ones(len(clips), dtype=bool)
    head = fit(features, data.clip_labels(clips, corpora.LABELS)[clean.clip_index], window_weights(clips, clean, every))
    head_path = out / ("%s.npz" % teacher.BACKEND_NAME)
    np.savez(head_path, mean=head.mean, scale=head.scale, weights=head.weights, bias=head.bias)
    card = json.loads((out / "serd-emotion.json").read_text())  # same front end: features, windows, VAD
    card = {key: card[key] for key in ("sample_rate_hz", "features", "window", "vad", "normalisation", "licence") if key in card}
    card.update({
        "name": teacher.BACKEND_NAME, "version": BACKEND_VERSION, "labels": list(corpora.LABELS), "output": "logits",
        "temperature": summary["temperature_plain"], "backend": "whisper",
        "encoder": {"model": "Whisper tiny.en encoder (CTranslate2, int8)", "package": ENCODER_PACKAGE, "sha256": ENCODER_SHA256,
                    "licence": "MIT (OpenAI weights, converted by Systran)"},
        "speaker_centred": False,
        "training": {"command": "python -m tools.study.whisper_loco --backend-out models", "head": summary["description"],
                     "clips": len(clips), "speakers": len({clip.speaker for clip in clips}),
                     "corpora": corpora.corpus_names(clips), "label_folding": dict(corpora.FOLDED)},
        "metrics": {"loco": {"protocol": "leave-one-corpus-out, UAR over the held-out corpus's classes, predictions restricted to them",
                             "per_corpus_uar_restricted": {name: s["plain"] for name, s in summary["per_corpus"].items()},
                             "mean_uar_restricted": summary["mean"]["plain"]},
                    "cost": teacher.cost()},
    })
    (out / ("%s.json" % teacher.BACKEND_NAME)).write_text(json.dumps(card, indent=2) + "\n")
    log.info("wrote %s and its card", head_path)
    return head_path


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary = run(parse_args(argv))
    for name, scores in summary["per_corpus"].items():
        log.info("%s: %s", name, ", ".join("%s %.1f" % (k, 100 * v) for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
