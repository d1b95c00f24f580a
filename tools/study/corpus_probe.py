"""How well a recipe's LOCO networks tell their training corpora apart from the pooled embedding.

`python -m tools.study.corpus_probe --recipe NAME` takes each finished LOCO fold's network (cached by
`tools.study.loco`), embeds a seeded sample of the clean windows of the corpora that fold trained on,
and fits a logistic regression from embedding to corpus, scored by speaker-grouped CV (no speaker in
both). High accuracy means the features carry the corpus (voices, rooms, language, acting) that a
held-out corpus differs in; chance is 1 / (number of training corpora). Results go into
models/loco_results.json under the recipe, key "corpus_probe".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from tools.model import corpora, data, recipes
from tools.study import loco

log = logging.getLogger("tools.study.corpus_probe")

WINDOWS_PER_FOLD = 4000  # windows embedded per fold (seeded sample of the training corpora's clean windows)
SPEAKER_FOLDS = 4
PROBE_C = 1.0
SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.corpus_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=recipes.DEFAULT, help="recipe whose LOCO folds are probed (default %(default)s)")
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: every shared corpus")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="use only this many clips per speaker (smoke runs)")
    parser.add_argument("--windows", type=int, default=WINDOWS_PER_FOLD, help="windows embedded per fold")
    parser.add_argument("--results", type=Path, default=loco.RESULTS, help="results JSON (default: models/loco_results.json)")
    return parser.parse_args(argv)


def probe_accuracy(embeddings: np.ndarray, corpus: np.ndarray, speakers: np.ndarray, n_folds: int = SPEAKER_FOLDS) -> float:
    """Speaker-grouped CV accuracy of a standardised logistic regression from embedding to corpus."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    correct = 0
    for train, test in GroupKFold(min(n_folds, len(set(speakers)))).split(embeddings, corpus, speakers):
        mean, scale = embeddings[train].mean(axis=0), embeddings[train].std(axis=0) + 1e-6
        model = LogisticRegression(C=PROBE_C, max_iter=2000).fit((embeddings[train] - mean) / scale, corpus[train])
        correct += int(np.sum(model.predict((embeddings[test] - mean) / scale) == corpus[test]))
    return correct / len(corpus)


def probe_fold(chosen: recipes.Recipe, clips: list[data.Clip], clean: data.WindowSet, fold_of_clip: np.ndarray, weights: Path,
               n_windows: int, fold: int) -> dict:
    """The probe of one trained fold's network (its weights file)."""
    from tools.model import nn

    network = nn.build_model(*clean.windows.shape[1:3], chosen.settings, len(corpora.LABELS))
    network.load_weights(weights)
    trained_on = np.flatnonzero(fold_of_clip[clean.clip_index] != fold)
    rng = np.random.default_rng(SEED)
    rows = np.sort(rng.choice(trained_on, min(n_windows, len(trained_on)), replace=False))
    embeddings = np.asarray(nn.embedding_model(network).predict(clean.windows[rows][..., None], batch_size=256, verbose=0))
    corpus = corpora.corpus_index(clips)[clean.clip_index[rows]]
    speakers = np.array([clips[i].speaker for i in clean.clip_index[rows]])
    return {"accuracy": round(probe_accuracy(embeddings, corpus, speakers), 4), "chance": round(1.0 / len(set(corpus)), 4),
            "windows": int(len(rows))}


def run(args: argparse.Namespace) -> dict:
    """Probe every trained fold and store the summary under the recipe."""
    chosen = recipes.recipe(args.recipe)
    clips = loco.load_clips(args)
    fold_of_clip, names = loco.folds(clips, "loco")
    trained = {fold: weights for fold in range(len(names))
               if (weights := loco.weights_path(loco.fold_path(chosen, clips, fold_of_clip, fold))).is_file()}
    if not trained:
        raise ValueError("no trained LOCO fold of recipe %s (run python -m tools.study.loco --recipe %s --protocol loco)"
                         % (chosen.name, chosen.name))
    clean = data.compute_windows(clips, None, 0, 2)
    per_fold = {}
    for fold, weights in trained.items():
        found = probe_fold(chosen, clips, clean, fold_of_clip, weights, args.windows, fold)
        per_fold[names[fold]] = found
        log.info("%s held out: corpus from the embedding %.1f %% (chance %.1f %%)", names[fold], 100 * found["accuracy"],
                 100 * found["chance"])
    summary = {"what": "speaker-grouped CV accuracy of a logistic regression telling the training corpora apart from each LOCO "
                       "fold network's pooled embedding (%d clean windows per fold)" % args.windows,
               "per_held_out_corpus": per_fold,
               "mean_accuracy": round(float(np.mean([f["accuracy"] for f in per_fold.values()])), 4)}
    stored = json.loads(args.results.read_text()) if args.results.is_file() else {}
    stored.setdefault("recipes", {}).setdefault(chosen.name, {})["corpus_probe"] = summary
    args.results.write_text(json.dumps(stored, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        summary = run(parse_args(argv))
    except (ValueError, data.serd_manifest.ManifestError) as exc:
        print("tools.study.corpus_probe: error: %s" % exc, file=sys.stderr)
        return 2
    log.info("mean: %.1f %%", 100 * summary["mean_accuracy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
