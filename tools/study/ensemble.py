"""What an ensemble of CV variants would score: the ceiling of distilling that ensemble into one model.

Averages the clip posteriors (mean window softmax) of several variants' cached out-of-fold int8 outputs
and scores them on the same speaker-grouped folds. Nothing is trained: every variant named must have
all of its folds cached (`python -m tools.train --cv --variants NAME` first). With --size K it scores
every combination of K of the named variants, best first (each variant alone is listed first).

    python -m tools.study.ensemble --variants kdwide80w9,kdwide80w9d2,speed50,spk25 [--size 3] [--json]

With --recipes it does the same for multi-corpus recipes on their cached leave-one-corpus-out folds
(`python -m tools.study.loco --recipe NAME --protocol loco` first): each held-out corpus scored on its own
classes, as the model card does.

    python -m tools.study.ensemble --recipes multi7warp,multi7x4s2d
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from tools.model import data
from tools.study import scoring


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.ensemble", description=__doc__.split("\n\n")[0])
    members = parser.add_mutually_exclusive_group(required=True)
    members.add_argument("--variants", help="comma-separated CV variants whose folds are cached")
    members.add_argument("--recipes", help="comma-separated multi-corpus recipes whose LOCO folds are cached")
    parser.add_argument("--size", type=int, default=0, help="score every combination of this many (default: all of them, once)")
    parser.add_argument("--logits", default="int8_logits", choices=("int8_logits", "float_logits"), help="which cached outputs to average")
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: RAVDESS with --variants, every shared corpus with --recipes")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def out_of_fold_posteriors(folds: list[dict], fold_of_clip: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(n_clips, n_labels) clip posteriors, each clip's from the fold that held it out, and a mask of clips with windows."""
    n_clips = len(fold_of_clip)
    posteriors, seen = np.zeros((n_clips, len(data.LABELS))), np.zeros(n_clips, dtype=bool)
    for fold, result in enumerate(folds):
        probs, had_windows = scoring.clip_posteriors(result[key], result["clip_index"], n_clips)
        held_out = fold_of_clip == fold
        posteriors[held_out], seen[held_out] = probs[held_out], had_windows[held_out]
    return posteriors, seen


def ensemble_scores(members: dict[str, tuple[np.ndarray, np.ndarray]], size: int, labels: np.ndarray,
                    fold_of_clip: np.ndarray) -> list[dict]:
    """Every combination of size members: mean/sample std of fold UARs, best first."""
    names = list(members)
    rows = []
    for combo in itertools.combinations(names, size):
        posteriors = np.mean([members[name][0] for name in combo], axis=0)
        seen = np.all([members[name][1] for name in combo], axis=0)
        per_fold = [scoring.fold_scores(posteriors[seen & (fold_of_clip == fold)], labels[seen & (fold_of_clip == fold)])["uar"]
                    for fold in range(int(fold_of_clip.max()) + 1)]
        rows.append({"variants": list(combo), "uar": float(np.mean(per_fold)), "uar_std": float(np.std(per_fold, ddof=scoring.FOLD_STD_DDOF)),
                     "folds": [round(value, 4) for value in per_fold]})
    return sorted(rows, key=lambda row: -row["uar"])


LOCO_KEYS = {"int8_logits": "clean_int8", "float_logits": "clean_float"}  # --logits -> the LOCO fold caches' clean outputs


def loco_posteriors(name: str, clips: list, fold_of_clip: np.ndarray, fold_names: list[str],
                    logits: str = "int8_logits") -> tuple[np.ndarray, np.ndarray]:
    """(n_clips, n_labels) clip posteriors of a recipe (its int8 or float network's, as --logits says), each clip's from the
    LOCO fold that held its corpus out, and a mask of clips with windows; ValueError naming the command when a fold is
    not cached."""
    from tools.model import recipes
    from tools.study import loco, loco_scoring

    chosen = recipes.recipe(name)
    folds = {}
    for fold, fold_name in enumerate(fold_names):
        path = loco.fold_path(chosen, clips, fold_of_clip, fold)
        if not path.is_file():
            raise ValueError("recipe %s has no cached LOCO fold %s; run python -m tools.study.loco --recipe %s --protocol loco"
                             % (name, fold_name, name))
        folds[fold] = dict(np.load(path))
    return loco_scoring.clip_probabilities(*loco_scoring.oof_windows(folds, LOCO_KEYS[logits]), len(clips))


def loco_ensemble_scores(members: dict[str, tuple[np.ndarray, np.ndarray]], size: int, clips: list) -> list[dict]:
    """Every combination of size recipes: per held-out corpus restricted UAR and their mean/sample std, best first."""
    from tools.model import corpora
    from tools.study import loco_scoring

    truth, corpus = data.clip_labels(clips, corpora.LABELS), corpora.corpus_index(clips)
    classes, names = corpora.corpus_classes(clips), corpora.corpus_names(clips)
    rows = []
    for combo in itertools.combinations(list(members), size):
        posteriors = np.mean([members[name][0] for name in combo], axis=0)
        seen = np.all([members[name][1] for name in combo], axis=0)
        per_corpus = [loco_scoring.corpus_scores(truth[corpus == c], posteriors[corpus == c], seen[corpus == c],
                                                 classes[name])["uar_restricted"] for c, name in enumerate(names)]
        rows.append({"variants": list(combo), "uar": float(np.mean(per_corpus)), "uar_std": float(np.std(per_corpus, ddof=1)),
                     "folds": [round(value, 4) for value in per_corpus], "fold_names": names})
    return sorted(rows, key=lambda row: -row["uar"])


def main(argv: list[str] | None = None) -> int:
    """Score the ensemble(s); exit 1 with a one-line error when a variant or fold is missing."""
    from tools.study.cv import cached_fold, variants

    args = parse_args(argv)
    if args.recipes is not None:
        return main_loco(args)
    clips = data.read_manifests(args.manifest or [data.DEFAULT_MANIFEST])
    speaker_fold = data.speaker_folds(clips)
    fold_of_clip = np.array([speaker_fold[clip.speaker] for clip in clips])
    labels = data.clip_labels(clips)
    by_name = {variant.name: variant for variant in variants()}
    names = [name for name in args.variants.split(",") if name]
    if not 0 <= args.size <= len(names) or not names:
        print("ensemble: error: give at least one variant, and --size from 1 to their number (%d; 0 = all together)" % len(names),
              file=sys.stderr)
        return 1
    members = {}
    for name in names:
        if name not in by_name:
            print("ensemble: error: unknown variant %r (known: %s)" % (name, ", ".join(by_name)), file=sys.stderr)
            return 1
        folds = [cached_fold(by_name[name], clips, fold_of_clip, fold) for fold in range(data.N_FOLDS)]
        missing = [fold for fold, result in enumerate(folds) if result is None]
        if missing:
            print("ensemble: error: variant %s has no cached result for fold(s) %s; run python -m tools.train --cv --variants %s"
                  % (name, ",".join(map(str, missing)), name), file=sys.stderr)
            return 1
        members[name] = out_of_fold_posteriors(folds, fold_of_clip, args.logits)
    size = args.size or len(members)
    rows = [row for k in sorted({1, size}) for row in ensemble_scores(members, k, labels, fold_of_clip)]  # each alone first
    print_rows(args, rows)
    return 0


def main_loco(args: argparse.Namespace) -> int:
    """Score ensembles of multi-corpus recipes on their leave-one-corpus-out folds."""
    from tools.model import corpora
    from tools.study import loco

    clips = corpora.read_clips(args.manifest or corpora.default_manifests())
    fold_of_clip, fold_names = loco.folds(clips, "loco")
    names = [name for name in args.recipes.split(",") if name]
    if not names or not 0 <= args.size <= len(names):
        print("ensemble: error: give at least one recipe, and --size from 1 to their number (%d; 0 = all together)" % len(names),
              file=sys.stderr)
        return 1
    try:
        members = {name: loco_posteriors(name, clips, fold_of_clip, fold_names, args.logits) for name in names}
    except (KeyError, ValueError) as exc:
        print("ensemble: error: %s" % str(exc).strip("'\""), file=sys.stderr)
        return 1
    size = args.size or len(members)
    print_rows(args, [row for k in sorted({1, size}) for row in loco_ensemble_scores(members, k, clips)])
    return 0


def print_rows(args: argparse.Namespace, rows: list[dict]) -> None:
    """The rows as one JSON object or as a Markdown table."""
    if args.json:
        print(json.dumps({"logits": args.logits, "rows": rows}))
        return
    print("| members | UAR %% (mean ± std over %s) | per %s |\n|---|---|---|" % (("held-out corpora", "corpus") if args.recipes
                                                                              else ("folds", "fold")))
    for row in rows:
        print("| %s | %.1f ± %.1f | %s |" % (" + ".join(row["variants"]), 100 * row["uar"], 100 * row["uar_std"],
                                             "/".join("%.1f" % (100 * value) for value in row["folds"])))


if __name__ == "__main__":
    sys.exit(main())
