"""CV bookkeeping: clip posteriors from window logits, fold tables, int8 delta, calibration, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serd import metrics
from tools.model import calibrate, data

FOLD_STD_DDOF = 1  # sample standard deviation over the 5 folds
CALM, NEUTRAL = data.LABELS.index("calm"), data.LABELS.index("neutral")
PROTOCOL = ("Speaker-grouped 5-fold cross-validation: 4 speakers held out per fold (RAVDESS: 2 male, 2 female), "
            "mean ± sample std over folds; per-class and per-speaker figures pool the out-of-fold clips.")


def clip_posteriors(window_logits: np.ndarray, clip_index: np.ndarray, n_clips: int, temperature: float = 1.0) -> tuple:
    """(n_clips, n_labels) mean window softmax per clip and a mask of clips that had windows."""
    probs = metrics.softmax(window_logits, temperature)
    sums = np.zeros((n_clips, len(data.LABELS)))
    np.add.at(sums, clip_index, probs)
    counts = np.bincount(clip_index, minlength=n_clips)
    seen = counts > 0
    sums[seen] /= counts[seen, None]
    return sums, seen


def clip_uar(window_logits: np.ndarray, clip_index: np.ndarray, clip_labels: np.ndarray) -> float:
    """UAR of clip labels (argmax of mean window softmax) over the clips that have windows."""
    probs, seen = clip_posteriors(window_logits, clip_index, len(clip_labels))
    return metrics.uar(clip_labels[seen], probs[seen].argmax(1), len(data.LABELS))


def merge_calm(probs: np.ndarray, labels: np.ndarray) -> tuple:
    """7-class view: calm probability added to neutral, calm labels become neutral."""
    merged = probs.copy()
    merged[:, NEUTRAL] += merged[:, CALM]
    merged[:, CALM] = 0.0
    return merged, np.where(labels == CALM, NEUTRAL, labels)


def fold_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """UAR, accuracy, macro-F1 and 7-class UAR of one fold's clips."""
    n = len(data.LABELS)
    pred = probs.argmax(1)
    merged, merged_labels = merge_calm(probs, labels)
    return {
        "uar": metrics.uar(labels, pred, n),
        "accuracy": metrics.accuracy(labels, pred),
        "macro_f1": metrics.macro_f1(labels, pred, n),
        "uar_7class": metrics.uar(merged_labels, merged.argmax(1), n),
    }


def summarise(probs: np.ndarray, seen: np.ndarray, labels: np.ndarray, fold_of_clip: np.ndarray, clips: list) -> dict:
    """Per-fold scores, mean ± std, pooled per-class recall, per-speaker accuracy, confusion."""
    folds = [fold_scores(probs[seen & (fold_of_clip == f)], labels[seen & (fold_of_clip == f)]) for f in range(data.N_FOLDS)]
    summary = {key: [float(np.mean([f[key] for f in folds])), float(np.std([f[key] for f in folds], ddof=FOLD_STD_DDOF))] for key in folds[0]}
    pooled = metrics.evaluate([data.LABELS[i] for i in labels[seen]], probs[seen], list(data.LABELS))
    speakers = np.array([clip.speaker for clip in clips])
    correct = probs.argmax(1) == labels
    return {
        "summary": summary,
        "folds": folds,
        "per_class_recall": {label: pooled["per_class"][label]["recall"] for label in data.LABELS},
        "per_speaker_accuracy": {s: float(correct[seen & (speakers == s)].mean()) for s in sorted(set(speakers))},
        "confusion": pooled["confusion"],
        "skipped_clips": int((~seen).sum()),
    }


def oof_logits(results: dict, name: str, key: str, index_key: str = "clip_index") -> tuple:
    """Out-of-fold window logits of all folds of a variant, with their clip indices."""
    parts = [results[(name, fold)] for fold in range(data.N_FOLDS)]
    return np.concatenate([p[key] for p in parts]), np.concatenate([p[index_key] for p in parts])


def variant_entry(variant, results: dict, clips: list, fold_of_clip: np.ndarray) -> dict:
    """Everything the card needs about one variant."""
    labels = data.clip_labels(clips)
    entry = {"description": variant.description, "settings": _settings_dict(variant.settings)}
    float_logits, clip_index = oof_logits(results, variant.name, "float_logits")
    int8_logits, _ = oof_logits(results, variant.name, "int8_logits")
    float_probs, seen = clip_posteriors(float_logits, clip_index, len(clips))
    int8_probs, _ = clip_posteriors(int8_logits, clip_index, len(clips))
    entry.update(summarise(float_probs, seen, labels, fold_of_clip, clips))
    int8_summary = summarise(int8_probs, seen, labels, fold_of_clip, clips)["summary"]
    entry["int8"] = {
        "float_uar": entry["summary"]["uar"],
        "int8_uar": int8_summary["uar"],
        "int8_accuracy": int8_summary["accuracy"],
        "delta_points": 100.0 * (int8_summary["uar"][0] - entry["summary"]["uar"][0]),
        "clip_agreement": float(np.mean(float_probs[seen].argmax(1) == int8_probs[seen].argmax(1))),
    }
    entry["calibration"] = calibration(int8_logits, clip_index, labels, fold_of_clip)
    if all("noisy_int8_logits" in results[(variant.name, f)] for f in range(data.N_FOLDS)):
        noisy_logits, noisy_index = oof_logits(results, variant.name, "noisy_int8_logits", "noisy_clip_index")
        noisy_probs, noisy_seen = clip_posteriors(noisy_logits, noisy_index, len(clips))
        entry["noisy_10db_int8"] = summarise(noisy_probs, noisy_seen, labels, fold_of_clip, clips)["summary"]
    entry["val_uar_curves"] = [_curve(results[(variant.name, f)]["val_uar"]) for f in range(data.N_FOLDS)]
    return entry


def _curve(values: np.ndarray) -> list:
    """Per-epoch values for JSON, None where an epoch was not checked."""
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def calibration(window_logits: np.ndarray, clip_index: np.ndarray, labels: np.ndarray, fold_of_clip: np.ndarray) -> dict:
    """Temperature on int8 out-of-fold logits; ECE at T=1, at T, and with T fitted on the other folds."""
    temperature = calibrate.fit_temperature(window_logits, clip_index, labels)
    before, seen = clip_posteriors(window_logits, clip_index, len(labels))
    after, _ = clip_posteriors(window_logits, clip_index, len(labels), temperature)
    crossfit = np.zeros_like(after)
    for fold in range(data.N_FOLDS):
        others = fold_of_clip[clip_index] != fold
        t_fold = calibrate.fit_temperature(window_logits[others], clip_index[others], labels)
        crossfit[fold_of_clip == fold] = clip_posteriors(window_logits, clip_index, len(labels), t_fold)[0][fold_of_clip == fold]
    return {
        "temperature": temperature,
        "ece_before": metrics.ece(labels[seen], before[seen]),
        "ece_after": metrics.ece(labels[seen], after[seen]),
        "ece_after_crossfit": metrics.ece(labels[seen], crossfit[seen]),
        "level": "clip (mean of window softmax(logits / T)), int8 model, 15 bins",
    }


def _settings_dict(settings) -> dict:
    """JSON-ready settings."""
    from dataclasses import asdict

    return asdict(settings)


def study_summary(variants: list, results: dict, clips: list, fold_of_clip: np.ndarray, folds: dict) -> dict:
    """The cv_results.json content of this run."""
    labels = data.clip_labels(clips)
    by_fold = {str(f): sorted(s for s, k in folds.items() if k == f) for f in range(data.N_FOLDS)}
    study = {
        "protocol": {"description": PROTOCOL, "folds": by_fold, "n_clips": len(clips), "labels": list(data.LABELS)},
        "variants": {v.name: variant_entry(v, results, clips, fold_of_clip) for v in variants},
        "baselines": {},
    }
    seen = np.ones(len(clips), dtype=bool)
    for (kind, _), family in results.items():
        for name, result in family.items() if kind == "baseline" else ():
            extra = {key: result[key] for key in ("c", "temperature") if key in result}
            study["baselines"][name] = {"description": result["description"], **extra,
                                        **summarise(result["probs"], seen, labels, fold_of_clip, clips)}
    return study


def merge_previous(previous: dict, study: dict, choose: str = "") -> dict:
    """Keep variants and baselines of earlier runs that this run did not redo; pick the chosen variant."""
    study["variants"] = {**previous.get("variants", {}), **study["variants"]}
    study["baselines"] = {**previous.get("baselines", {}), **study["baselines"]}
    best = max(study["variants"], key=lambda name: study["variants"][name]["summary"]["uar"][0]) if study["variants"] else ""
    study["chosen"] = choose or previous.get("chosen_override", "") or best
    if choose:
        study["chosen_override"] = choose
    chosen = study["variants"].get(study["chosen"], {})
    study["protocol"]["clips_without_windows"] = chosen.get("skipped_clips", 0)
    study["int8"] = chosen.get("int8", {})
    study["calibration"] = chosen.get("calibration", {})
    return study


def write_study_plots(study: dict, out: Path) -> None:
    """Confusion matrices (8 and 7 classes) and per-fold curves of the chosen variant."""
    from tools.model import report

    chosen = study["variants"].get(study["chosen"])
    if not chosen:
        return
    labels = list(data.LABELS)
    report.write_confusion_plot(np.array(chosen["confusion"]), labels, out / "cv_confusion.png", "CV out-of-fold clips (%s)" % study["chosen"])
    report.write_cv_curves([{"val_uar": c} for c in chosen["val_uar_curves"]], out / "cv_curves.png")
