"""Card JSON, training-curve and confusion PNGs (matplotlib, Agg) from training and CV data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serd.features import FeatureParams
from serd.head import CENTRE_PRIOR_WINDOWS
from serd.speaker import SpeakerPrior
from serd.windows import WindowParams
from tools.model import data

MODEL_NAME = "serd-emotion"
MODEL_VERSION = "1.5.0"
SAMPLE_RATE_HZ = 16000
TIMING_WINDOW = 0


def model_facts(int8_bytes: bytes, float_bytes: bytes, windows: np.ndarray, keras_model, logits_int8_bytes: bytes | None = None) -> dict:
    """Size, invoke time, tensor shapes of the shipped file and int8-vs-float agreement on training windows
    (of the whole network's logits: logits_int8_bytes when the shipped file ends at the embedding)."""
    from tools.model import export, nn

    sample = windows[:: max(1, len(windows) // 300)]
    float_logits = nn.predict_logits(keras_model, sample)
    int8_logits = export.tflite_logits(logits_int8_bytes or int8_bytes, sample)
    return {
        "size_bytes": len(int8_bytes),
        "float_size_bytes": len(float_bytes),
        "parameters": int(keras_model.count_params()),
        "invoke": export.invoke_ms(int8_bytes, windows[TIMING_WINDOW]),
        "io": export.io_details(int8_bytes),
        "train_window_top1_agreement": float(np.mean(float_logits.argmax(1) == int8_logits.argmax(1))),
    }


def card_json(cv_results: dict, facts: dict, training: dict, speaker_prior: SpeakerPrior | None = None,
              head: dict | None = None) -> dict:
    """The model's JSON card in the exact shape the runtime checks (speaker-normalised with a speaker_prior; ending
    at the embedding with a speaker-centred head: head["file"], its C and its CV figures head["cv"])."""
    calibration = cv_results.get("calibration", {})
    card = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "labels": list(data.LABELS),
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "features": FeatureParams().to_dict(),
        "window": WindowParams().to_dict(),
        "vad": dict(data.vad_params().__dict__),
        "normalisation": "per-window-cmvn" if speaker_prior is None else "per-speaker-cmvn",
        "output": "logits",
        "temperature": float(calibration.get("temperature", 1.0)),
        "metrics": card_metrics(cv_results, facts),
        "training": training,
    }
    if speaker_prior is not None:
        card["speaker_prior"] = speaker_prior.to_dict()
    if head is not None:
        card.update(output="embedding", head=head["file"])
        card["training"]["head"] = {"kind": "logistic regression on the speaker-centred pooled embedding", "c": head["c"],
                                    "centre_prior_windows": CENTRE_PRIOR_WINDOWS}
        add_head_metrics(card, head["cv"])
    return card


def add_head_metrics(card: dict, centred_cv: dict) -> None:
    """A speaker-centred head's CV figures into the card, and its temperature (fitted on the out-of-fold session posteriors)."""
    card["metrics"]["cv_speaker_centred"] = centred_metrics(centred_cv)
    card["temperature"] = float(centred_cv.get("embedding", {}).get("session", {}).get("temperature", 1.0))


def centred_metrics(entry: dict) -> dict:
    """The card's account of the speaker-centred head on the CV folds: UAR of each mode, and the plain network's."""
    return {kind: {mode: {"uar": [m["uar_mean"], m["uar_std"]], "folds": m["folds"]} for mode, m in modes.items()}
            for kind, modes in entry.items() if isinstance(modes, dict)}


def model_metrics(facts: dict) -> dict:
    """Size, speed and tensor facts of the exported nn."""
    return {
        "size_bytes": facts["size_bytes"],
        "float_size_bytes": facts["float_size_bytes"],
        "parameters": facts["parameters"],
        "invoke_ms_median": round(facts["invoke"]["median_ms"], 3),
        "invoke_ms_p95": round(facts["invoke"]["p95_ms"], 3),
        "invoke_threads": 1,
        "invoke_cpu": facts["invoke"]["cpu"],
        "input": facts["io"],
        "train_window_int8_float_top1_agreement": round(facts["train_window_top1_agreement"], 4),
    }


def card_metrics(cv_results: dict, facts: dict | None) -> dict:
    """The card's "metrics" object: CV summary, baselines, int8 delta, ECE, size, speed."""
    metrics: dict = {} if facts is None else model_metrics(facts)
    chosen = cv_results.get("variants", {}).get(cv_results.get("chosen", ""))
    if chosen:
        metrics["cv"] = {"protocol": cv_results["protocol"]["description"], "variant": cv_results["chosen"], **chosen["summary"]}
        metrics["cv_per_class_recall"] = chosen["per_class_recall"]
    if cv_results.get("baselines"):
        metrics["cv_baselines"] = {name: b["summary"] for name, b in cv_results["baselines"].items()}
    if cv_results.get("int8"):
        metrics["cv_int8"] = cv_results["int8"]
    if cv_results.get("calibration"):
        metrics["calibration"] = cv_results["calibration"]
    return metrics


def _pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_training_plot(history: dict, path: Path, title: str = "final model (all speakers)") -> None:
    """Loss and accuracy per epoch (and validation UAR when present)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    axes[0].plot(epochs, history.get("loss", []), label="train loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].plot(epochs, history.get("accuracy", []), label="train window accuracy")
    for key in ("val_uar", "val_accuracy"):
        if key in history:
            axes[1].plot(np.arange(1, len(history[key]) + 1), history[key], label=key.replace("_", " "))
    axes[1].set_xlabel("epoch")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_cv_curves(fold_histories: list[dict], path: Path) -> None:
    """Held-out clip UAR per epoch for each CV fold."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.5))
    for fold, history in enumerate(fold_histories):
        points = [(epoch, v) for epoch, v in enumerate(history.get("val_uar", []), start=1) if v is not None and not np.isnan(v)]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label="fold %d" % fold)
    axis.set_xlabel("epoch")
    axis.set_ylabel("held-out clip UAR")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_confusion_plot(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, axis = plt.subplots(figsize=(6.5, 5.5))
    axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(j, i, "%d" % matrix[i, j], ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black", fontsize=8)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
