"""Train serd's emotion model: `python -m tools.train --out models` trains the shipped multi-corpus recipe on every
shared corpus (tools.train.multicorpus); `--recipe ravdess8` the earlier 8-class RAVDESS-only model
(tools.train.ravdess8), `--cv` its CV study (tools.study.cv)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tools.model import data, recipes
from tools.model.nn import TrainSettings

log = logging.getLogger("tools.train")

DEFAULT_RECIPE = recipes.DEFAULT
RAVDESS_RECIPE = "ravdess8"  # the 8-class RAVDESS-only model of releases 1.x (tools.study.cv study, speaker-centred head)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__)
    parser.add_argument("--manifest", action="append", type=Path,
                        help="MANIFEST.tsv (repeatable); default: every corpus in ../shared/corpora (ravdess8: RAVDESS)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE,
                        help="multi-corpus recipe of tools/model/recipes.py (default %(default)s), or " + RAVDESS_RECIPE)
    parser.add_argument("--loco-results", type=Path, help="LOCO results JSON for the card (default: OUT/loco_results.json)")
    parser.add_argument("--out", type=Path, default=data.REPO_DIR / "models", help="output folder")
    parser.add_argument("--cv", action="store_true", help="run the speaker-grouped CV study instead")
    parser.add_argument("--variants", default="", help="CV: comma-separated variant names (default: the study in the model card)")
    parser.add_argument("--card-only", action="store_true", help="rewrite the card files of the model in OUT from the stored study results (no training)")
    parser.add_argument("--choose", default="", help="CV: ship this variant instead of the best-UAR one")
    parser.add_argument("--baselines", action="store_true", help="CV: run the baselines too")
    parser.add_argument("--teacher", action="store_true", help="CV: evaluate the Whisper distillation teacher too (plain and speaker-centred)")
    parser.add_argument("--baselines-only", action="store_true", help="CV: run only --baselines / --teacher, no student variant")
    parser.add_argument("--no-whisper", action="store_true", help="do not write the opt-in whisper backend (serd-whisper.*)")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--draws-per-epoch", type=int, help="multi-corpus recipes: override the clips drawn per epoch")
    parser.add_argument("--aug-copies", type=int, help="override the augmented copies per clip")
    parser.add_argument("--no-spec-augment", action="store_true", help="train without SpecAugment")
    parser.add_argument("--clips-per-speaker", type=int, default=0, help="use only this many clips per speaker (smoke runs)")
    parser.add_argument("--seed", type=int, default=TrainSettings().seed)
    parser.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    parser.add_argument("--cv-results", type=Path, help="ravdess8: CV results JSON for the card (default: docs/history-1.x/cv_results.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.cv:
        from tools.study import cv

        cv.run_study(args)
        return 0
    if args.recipe != RAVDESS_RECIPE:
        from tools.train import multicorpus

        try:
            recipes.recipe(args.recipe)
            path = multicorpus.refresh_card(args) if args.card_only else multicorpus.train_final(args)
        except ValueError as exc:
            print("tools.train: error: %s" % exc, file=sys.stderr)
            return 2
        log.info("model written to %s", path)
        return 0
    from tools.train import ravdess8

    path = ravdess8.refresh_card(args) if args.card_only else ravdess8.train_final(args)
    log.info("model written to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
