"""The shipped model: a multi-corpus recipe trained on every clip, exported int8, with its JSON card and model card."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from serd.windows import WindowParams
from tools.model import augment, corpora, data, recipes
from tools.study import loco

log = logging.getLogger(__name__)

MODEL_NAME = "serd-emotion"
MODEL_VERSION = "2.2.0"
SAMPLE_RATE_HZ = 16000
STALE_FILES = ("%s.head.npz" % MODEL_NAME,)  # files of earlier models this one does not use
LICENCE = ("CC BY-NC-SA 4.0: the weights inherit the terms of their training corpora (RAVDESS CC BY-NC-SA 4.0, "
           "TESS CC BY-NC-ND 4.0, SAVEE and EMOVO free for research, BanglaSER CC BY 4.0); non-commercial use. "
           "See MODEL_CARD.md.")


def train_final(args: argparse.Namespace) -> Path:
    """Train args.recipe on every clip of the manifests (or load that network from the cache), export int8 and write
    the model files into args.out."""
    from tools.model import export, report
    from tools.train import card as model_card

    chosen = loco.with_overrides(recipes.recipe(args.recipe), args)
    clips = loco.load_clips(args)
    versions = loco.versions(clips, chosen, args.workers)
    network, train_s = final_network(chosen, clips, versions)
    int8 = export.convert_int8(network, versions[0].windows, chosen.settings.seed)
    float_bytes = export.convert_float(network)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tflite_path = out / ("%s.tflite" % MODEL_NAME)
    export.write(int8, tflite_path)
    facts = report.model_facts(int8, float_bytes, versions[0].windows, network)
    results_path = args.loco_results or out / loco.RESULTS.name
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    card = card_json(chosen, clips, facts, results.get("recipes", {}).get(chosen.name, {}), args, train_s)
    card["metrics"]["variants_tried"] = results.get("variants_tried", [chosen.name])
    (out / ("%s.json" % MODEL_NAME)).write_text(json.dumps(card, indent=2) + "\n")
    for name in STALE_FILES:
        (out / name).unlink(missing_ok=True)
    model_card.write_model_card(card, results, out / "MODEL_CARD.md")
    return tflite_path


def refresh_card(args: argparse.Namespace) -> Path:
    """Rewrite the model card and the JSON card's list of recipes tried from the stored LOCO results, keeping the
    shipped weights and their measured facts (no network is trained or loaded). ValueError when args.out holds no
    card of args.recipe."""
    from tools.train import card as model_card

    card_path = args.out / ("%s.json" % MODEL_NAME)
    if not card_path.is_file():
        raise ValueError("no model card %s to refresh (train the model first: python -m tools.train)" % card_path)
    card = json.loads(card_path.read_text())
    if card.get("training", {}).get("recipe") != args.recipe:
        raise ValueError("%s is of recipe %s, not %s" % (card_path, card.get("training", {}).get("recipe"), args.recipe))
    results_path = args.loco_results or args.out / loco.RESULTS.name
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    card["metrics"]["variants_tried"] = results.get("variants_tried", [args.recipe])
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    model_card.write_model_card(card, results, args.out / "MODEL_CARD.md")
    return args.out / "MODEL_CARD.md"


def final_network(chosen: recipes.Recipe, clips: list[data.Clip], versions: list[data.WindowSet]) -> tuple:
    """(Keras network, training seconds): trained on every clip, or loaded when `tools.study.loco --with-final` or an earlier
    run trained these settings on these clips."""
    from tools.model import nn

    fold_of_clip, fold = loco.final_plan(clips)
    weights = loco.weights_path(loco.fold_path(chosen, clips, fold_of_clip, fold))
    if weights.is_file():
        network = nn.build_model(*versions[0].windows.shape[1:3], chosen.settings, len(corpora.LABELS))
        network.load_weights(weights)
        kept = np.load(weights.with_name(weights.name.replace(".weights.h5", ".npz")))
        log.info("final network loaded from %s", weights)
        return network, float(kept["train_seconds"])
    result = loco.train_fold(chosen, clips, fold_of_clip, fold)
    return final_network(chosen, clips, versions)[0], float(result["train_seconds"])


def card_json(chosen: recipes.Recipe, clips: list[data.Clip], facts: dict, study: dict, args: argparse.Namespace,
              train_s: float) -> dict:
    """The model's JSON card in the shape the runtime checks, with the study's figures."""
    from tools.model import report

    loco_entry = study.get("loco", {})
    temperature = float(loco_entry.get("calibration", {}).get("temperature", 1.0))
    return {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "licence": LICENCE,
        "labels": list(corpora.LABELS),
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "features": chosen.features.to_dict(),
        "window": WindowParams().to_dict(),
        "vad": dict(data.vad_params().__dict__),
        "normalisation": "per-window-cmvn",
        "output": "logits",
        "temperature": temperature,
        "metrics": {**report.model_metrics(facts), **study_metrics(study)},
        "training": training_record(chosen, clips, args, train_s),
    }


def study_metrics(study: dict) -> dict:
    """The headline figures of the recipe's LOCO and pooled speaker-grouped CV."""
    metrics = {}
    for protocol in loco.PROTOCOLS:
        entry = study.get(protocol)
        if not entry:
            continue
        metrics[protocol] = {"mean": entry["mean"], "folds_done": entry["folds_done"],
                             "per_corpus": {name: {k: v for k, v in scores.items() if k.startswith(("uar", "recall", "clips"))}
                                            for name, scores in entry["per_corpus"].items()},
                             "ece": {name: c["ece"] for name, c in entry["calibration"]["per_corpus"].items()}}
    return metrics


def training_record(chosen: recipes.Recipe, clips: list[data.Clip], args: argparse.Namespace, train_s: float) -> dict:
    """The card's "training" object: data, recipe, seeds, command."""
    settings = chosen.settings
    manifests = args.manifest or corpora.default_manifests()
    return {
        "command": "make model  (python -m tools.train --out models)",
        "argv": sys.argv[1:],
        "recipe": chosen.name,
        "description": chosen.description,
        "manifests": [str(Path(m).resolve().relative_to(data.REPO_DIR.parent)) if Path(m).resolve().is_relative_to(data.REPO_DIR.parent)
                      else str(m) for m in manifests],
        "clips": len(clips),
        "speakers": len({clip.speaker for clip in clips}),
        "corpora": {name: list(classes) for name, classes in corpora.corpus_classes(clips).items()},
        "label_folding": corpora.FOLDED,
        "settings": {k: v for k, v in asdict(settings).items() if k != "audio"},
        "draws_per_epoch": chosen.draws_per_epoch,
        "audio_augment": asdict(settings.audio) if settings.aug_copies else None,
        "spec_augment": asdict(augment.SpecAugment()) if settings.spec_augment else None,
        "seeds": {"tensorflow": settings.seed, "numpy": settings.seed, "augmentation": "sha1(clip path, copy)"},
        "train_seconds": round(train_s, 1),
    }
