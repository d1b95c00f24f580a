"""Leave-one-corpus-out (LOCO) and pooled speaker-grouped CV of a multi-corpus recipe.

`python -m tools.study.loco [--recipe multi7] [--protocol loco|speakers|both]` trains one model per fold (two folds at a
time), keeps each fold's int8 logits in .cache/loco, and writes the summary into models/loco_results.json as each
fold finishes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from serd.features import FeatureParams
from tools.model import corpora, data, recipes
from tools.study import loco_scoring
from tools.model.recipes import Recipe

log = logging.getLogger("tools.study.loco")

PROCESSES = 2
RESULTS = data.REPO_DIR / "models" / "loco_results.json"
PROTOCOLS = ("loco", "speakers")
FINAL_FOLD = -1  # "fold" of the final run: no clip is held out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.loco", description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=recipes.DEFAULT, help="recipe name (tools/model/recipes.py; default %(default)s)")
    parser.add_argument("--protocol", choices=PROTOCOLS + ("both",), default="both", help="which folds to run (default: both)")
    parser.add_argument("--manifest", action="append", type=Path, help="MANIFEST.tsv (repeatable); default: every shared corpus")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs)")
    parser.add_argument("--draws-per-epoch", type=int, help="override the recipe's clips drawn per epoch (smoke runs)")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="use only this many clips per speaker (smoke runs)")
    parser.add_argument("--processes", type=int, default=PROCESSES, help="folds trained at once")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON (default: models/loco_results.json)")
    parser.add_argument("--with-final", action="store_true", help="train the final network on every clip too, after the LOCO folds")
    parser.add_argument("--score-only", action="store_true", help="summarise the cached folds without training")
    parser.add_argument("--folds", type=lambda text: [name for name in text.split(",") if name],
                        help="train only these LOCO folds now, named by their held-out corpus (e.g. bangla,emovo), so a "
                             "recipe's folds can be spread over several sessions; the cached folds of the others still count")
    return parser.parse_args(argv)


def load_clips(args: argparse.Namespace) -> list[data.Clip]:
    """Clips of the chosen manifests (default: every shared corpus), optionally thinned per speaker."""
    clips = corpora.read_clips(args.manifest or corpora.default_manifests())
    return data.thin(clips, args.clips_per_speaker) if args.clips_per_speaker else clips


def with_overrides(chosen: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the command line's --epochs and --draws-per-epoch (smoke runs); None keeps the recipe's."""
    if args.epochs is not None:
        chosen = replace(chosen, settings=replace(chosen.settings, epochs=args.epochs))
    return chosen if args.draws_per_epoch is None else replace(chosen, draws_per_epoch=args.draws_per_epoch)


def folds(clips: list[data.Clip], protocol: str) -> tuple[np.ndarray, list[str]]:
    """Fold number of every clip and the fold names: one fold per corpus (loco) or 5 speaker groups (speakers)."""
    if protocol == "loco":
        names = corpora.corpus_names(clips)
        return corpora.corpus_index(clips), names
    fold_of_speaker = data.speaker_folds(clips)
    return np.array([fold_of_speaker[clip.speaker] for clip in clips]), ["speakers%d" % f for f in range(data.N_FOLDS)]


def chosen_folds(chosen: Recipe, clips: list[data.Clip], plan: dict, jobs: list, names: list[str]) -> list:
    """The jobs of the named LOCO folds plus every fold already cached (read, not trained); other protocols unchanged."""
    if "loco" not in plan:
        raise ValueError("--folds names leave-one-corpus-out folds; run it with --protocol loco or both")
    known = plan["loco"][1]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError("--folds: no corpus named %s (the corpora are %s)" % (", ".join(unknown), ", ".join(known)))
    fold_of_clip = plan["loco"][0]
    return [(protocol, fold) for protocol, fold in jobs
            if protocol != "loco" or known[fold] in names or fold_path(chosen, clips, fold_of_clip, fold).is_file()]


def final_plan(clips: list[data.Clip]) -> tuple[np.ndarray, int]:
    """(fold of every clip, fold) of the final run: every clip trains."""
    return np.zeros(len(clips), dtype=np.int64), FINAL_FOLD


def versions(clips: list[data.Clip], chosen: Recipe, workers: int) -> list[data.WindowSet]:
    """Clean windows plus the recipe's augmented copies (cached)."""
    settings, features = chosen.settings, chosen.features
    return [data.compute_windows(clips, None, 0, workers, features=features)] + [
        data.compute_windows(clips, settings.audio, copy, workers, features=features) for copy in range(1, settings.aug_copies + 1)]


def condition_windows(clips: list[data.Clip], chosen: Recipe, workers: int) -> dict[str, data.WindowSet]:
    """Every clip under each test condition, through the recipe's front end (cached)."""
    return {name: data.compute_windows(clips, aug, recipes.CONDITION_COPY, workers, features=chosen.features)
            for name, aug in recipes.CONDITIONS.items()}


def fold_path(chosen: Recipe, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> Path:
    """Where one fold's logits are kept: keyed by the recipe's settings, the clips and the fold's test clips."""
    spec = "(%s, %r, %r, %r)" % (chosen.settings.key(), chosen.draws_per_epoch, [c.path for c in clips], (fold_of_clip == fold).tolist())
    if chosen.features != FeatureParams():
        spec += repr(sorted(chosen.features.to_dict().items()))  # recipes on the default front end keep their keys
    return data.cache_dir("loco") / ("%s_%s.npz" % (chosen.name, hashlib.sha1(spec.encode()).hexdigest()[:12]))


def weights_path(fold_file: Path) -> Path:
    """Where the trained network of a fold (or of the final run on every clip) is kept beside its logits."""
    return fold_file.with_name(fold_file.stem + ".weights.h5")


def train_fold(chosen: Recipe, clips: list[data.Clip], fold_of_clip: np.ndarray, fold: int) -> dict:
    """Train without the fold's clips, export int8, return the held-out clips' logits (clean, float and every condition)."""
    from tools.model import export, nn

    path = fold_path(chosen, clips, fold_of_clip, fold)
    if path.is_file():
        return dict(np.load(path))
    started = time.time()
    train_mask = fold_of_clip != fold
    all_versions = versions(clips, chosen, workers=1)
    train_versions = [data.subset(v, train_mask) for v in all_versions]
    clean = data.subset(all_versions[0], ~train_mask)
    result = {}

    def last_iterate(network) -> None:  # with weight averaging: the last epoch's network, to compare with the mean
        result["clean_float_last"] = nn.predict_logits(network, clean.windows)

    network = fitted_network(chosen, clips, train_versions, train_mask, last_iterate)
    int8 = export.convert_int8(network, train_versions[0].windows, chosen.settings.seed)
    result.update({"clean_index": clean.clip_index, "clean_int8": export.tflite_logits(int8, clean.windows),
                   "clean_float": nn.predict_logits(network, clean.windows)})
    for name, windows in condition_windows(clips, chosen, workers=1).items():
        held_out = data.subset(windows, ~train_mask)
        result[name + "_index"], result[name + "_int8"] = held_out.clip_index, export.tflite_logits(int8, held_out.windows)
    result["train_seconds"] = np.array(time.time() - started)
    path.parent.mkdir(parents=True, exist_ok=True)
    network.save_weights(weights_path(path))
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **result)
    partial.replace(path)
    return result


def fitted_network(chosen: Recipe, clips: list[data.Clip], train_versions: list[data.WindowSet], train_mask: np.ndarray,
                   last_iterate=None):
    """The recipe's network trained on the clips of train_mask (balanced draws, masked loss); last_iterate as in
    nn.train_drawn."""
    from tools.model import nn

    train_clips = [clip for clip, keep in zip(clips, train_mask) if keep]
    draw_p = np.zeros(len(clips))
    draw_p[train_mask] = corpora.draw_probabilities(train_clips)
    mask = np.zeros((len(clips), len(corpora.LABELS)), dtype=np.float32)
    mask[train_mask] = corpora.class_masks(train_clips)
    network, _ = nn.train_drawn(train_versions, data.clip_labels(clips, corpora.LABELS), mask, draw_p,
                                chosen.settings, chosen.draws_per_epoch, corpora.corpus_index(clips), last_iterate)
    return network


def _worker_init() -> None:
    """Fold processes log their epochs."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")


def run(args: argparse.Namespace) -> dict:
    """Train (or read from the cache) every fold of the chosen protocols, summarising after each one."""
    chosen = with_overrides(recipes.recipe(args.recipe), args)
    clips = load_clips(args)
    versions(clips, chosen, workers=2)  # fill the training caches before forking (the folds read the conditions' when they test)
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    if "loco" in protocols and len(corpora.corpus_names(clips)) < 2:
        raise ValueError("leave-one-corpus-out needs clips of at least two corpora (got %s)" % ", ".join(corpora.corpus_names(clips)))
    plan = {protocol: folds(clips, protocol) for protocol in protocols}
    done: dict[str, dict[int, dict]] = {protocol: {} for protocol in protocols}
    jobs = [(protocol, fold) for protocol in protocols for fold in range(len(plan[protocol][1]))
            if np.any(plan[protocol][0] == fold)]  # a speaker fold can be empty when a corpus set has fewer than 5 speakers
    if args.folds:
        jobs = chosen_folds(chosen, clips, plan, jobs, args.folds)
    if args.score_only:
        for protocol, fold in jobs:
            if fold_path(chosen, clips, plan[protocol][0], fold).is_file():
                done[protocol][fold] = train_fold(chosen, clips, plan[protocol][0], fold)
        return write_results(args, chosen, clips, plan, done)
    condition_windows(clips, chosen, workers=2)  # and the test conditions' caches, so two folds never compute the same one
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(args.processes, mp_context=context, initializer=_worker_init) as pool:
        running = {pool.submit(train_fold, chosen, clips, plan[p][0], f): (p, f) for p, f in jobs if p == "loco"}
        if args.with_final:
            running[pool.submit(train_fold, chosen, clips, *final_plan(clips))] = ("final", FINAL_FOLD)
        running.update({pool.submit(train_fold, chosen, clips, plan[p][0], f): (p, f) for p, f in jobs if p != "loco"})
        for future in as_completed(running):
            protocol, fold = running[future]
            if protocol == "final":
                log.info("final network trained (%.0f s)", float(future.result()["train_seconds"]))
                continue
            done[protocol][fold] = future.result()
            log.info("%s fold %s done (%.0f s)", protocol, plan[protocol][1][fold], float(done[protocol][fold]["train_seconds"]))
            write_results(args, chosen, clips, plan, done)
    return write_results(args, chosen, clips, plan, done)


def write_results(args: argparse.Namespace, chosen: Recipe, clips: list[data.Clip], plan: dict, done: dict) -> dict:
    """Summarise the finished folds and store them under the recipe's name in the results file."""
    stored = json.loads(args.results.read_text()) if args.results.is_file() else {}
    entry = stored.get("recipes", {}).get(chosen.name, {})  # a protocol not run this time keeps its stored summary
    entry.update(description=chosen.description, epochs=chosen.settings.epochs, draws_per_epoch=chosen.draws_per_epoch)
    for protocol, (fold_of_clip, names) in plan.items():
        if done[protocol]:
            entry[protocol] = loco_scoring.summarise(clips, fold_of_clip, names, done[protocol], protocol)
    stored.setdefault("recipes", {})[chosen.name] = entry
    stored["variants_tried"] = sorted(stored["recipes"])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(stored, indent=1) + "\n")
    return stored


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, data.serd_manifest.ManifestError) as exc:
        print("tools.study.loco: error: %s" % exc, file=sys.stderr)
        return 2
    log.info("results in %s", args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
