"""Benchmark audio: RAVDESS clips from a manifest, concatenated or as a folder of WAV files."""

from __future__ import annotations

import csv
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serd.audio import load_audio
from serd.errors import SerdError

REPO_DIR = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("SERD_SHARED_DIR", REPO_DIR.parent / "shared"))
DEFAULT_MANIFEST = SHARED_DIR / "corpora" / "ravdess" / "MANIFEST.tsv"
SAMPLE_RATE_HZ = 16000
SAMPLE_WIDTH_BYTES = 2
CLIP_STRIDE = 7  # take every 7th manifest row: actors and emotions stay mixed


@dataclass(frozen=True)
class BenchAudio:
    """The clips chosen for a run and their concatenation."""

    clip_paths: list[Path]
    clips: list[np.ndarray]
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        """Length of the concatenation in seconds."""
        return len(self.samples) / SAMPLE_RATE_HZ


def manifest_paths(manifest: Path) -> list[Path]:
    """Audio paths listed in a MANIFEST.tsv (path column, relative to the manifest)."""
    if not manifest.is_file():
        raise SerdError("%s: manifest not found (set --manifest or SERD_SHARED_DIR)" % manifest)
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "path" not in rows[0]:
        raise SerdError("%s: no 'path' column" % manifest)
    return [manifest.parent / row["path"] for row in rows]


def pick_clips(paths: list[Path], count: int) -> list[Path]:
    """count paths spread over the manifest (every CLIP_STRIDE-th, wrapping around)."""
    order = [paths[(i * CLIP_STRIDE) % len(paths)] for i in range(len(paths))]
    return list(dict.fromkeys(order))[:count]


def load_bench_audio(manifest: Path, seconds: float, min_clips: int = 1) -> BenchAudio:
    """Clips in manifest order (strided) until both seconds of audio and min_clips are reached."""
    listed = manifest_paths(manifest)
    paths = pick_clips(listed, len(listed))
    chosen, clips, total = [], [], 0
    for path in paths:
        if total >= seconds * SAMPLE_RATE_HZ and len(chosen) >= min_clips:
            break
        clip = load_audio(path, SAMPLE_RATE_HZ)
        chosen.append(path)
        clips.append(clip)
        total += len(clip)
    if total < seconds * SAMPLE_RATE_HZ or len(chosen) < min_clips:
        raise SerdError("%s: only %.0f s in %d clips (wanted %.0f s)" % (manifest, total / SAMPLE_RATE_HZ, len(chosen), seconds))
    return BenchAudio(chosen, clips, np.concatenate(clips))


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """16 kHz mono int16 WAV."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(SAMPLE_WIDTH_BYTES)
        handle.setframerate(SAMPLE_RATE_HZ)
        handle.writeframes(np.asarray(samples, dtype=np.int16).tobytes())
    return path


def write_clip_folder(folder: Path, audio: BenchAudio, count: int) -> list[Path]:
    """The first count clips as WAV files in folder (cycled if fewer were loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        clip = audio.clips[i % len(audio.clips)]
        written.append(write_wav(folder / ("clip%04d.wav" % i), clip))
    return written
