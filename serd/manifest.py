"""Labelled-speech manifests: MANIFEST.tsv with columns path, speaker, emotion, duration_s."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from serd.errors import ManifestError

MANIFEST_COLUMNS = ("path", "speaker", "emotion", "duration_s")


@dataclass(frozen=True)
class Clip:
    """One labelled clip; path is absolute, speaker is prefixed by the corpus (manifest folder) name."""

    path: str
    speaker: str
    emotion: str
    duration_s: float


def read_manifest(path: str | Path) -> list[Clip]:
    """Clips of one manifest; ManifestError names the file (and line) and the reason."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError("%s: manifest not found" % path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError("%s: manifest lacks the column(s) %s" % (path, ", ".join(missing)))
            return [_clip(path, row, line) for line, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError("%s: cannot read manifest: %s" % (path, exc)) from None


def _clip(manifest: Path, row: dict, line: int) -> Clip:
    """One row as a Clip."""
    try:
        duration_s = float(row["duration_s"])
    except (TypeError, ValueError):
        raise ManifestError("%s:%d: duration_s %r is not a number" % (manifest, line, row["duration_s"])) from None
    if not row["path"] or not row["emotion"]:
        raise ManifestError("%s:%d: empty path or emotion" % (manifest, line))
    corpus = manifest.parent.name
    return Clip(str(manifest.parent / row["path"]), "%s:%s" % (corpus, row["speaker"]), row["emotion"].strip(), duration_s)


def read_manifests(paths: list[str | Path]) -> list[Clip]:
    """Clips of several manifests, in order."""
    return [clip for path in paths for clip in read_manifest(path)]
