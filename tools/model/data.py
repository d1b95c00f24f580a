"""Training data: manifests, speaker folds, and model windows through serd's own front end."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from serd.audio import load_audio
from serd.config import VadConfig
from serd import manifest as serd_manifest
from serd.features import FeatureParams
from serd import pipeline
from serd.frontend import clip_windows
from serd.speaker import STD_FLOOR, SpeakerPrior
from serd.vad import VadParams
from serd.windows import WindowParams
from tools.model import augment

log = logging.getLogger(__name__)

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
REPO_DIR = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("SERD_SHARED_DIR") or REPO_DIR.parent / "shared")  # the corpora beside the checkout
DEFAULT_MANIFEST = SHARED_DIR / "corpora" / "ravdess" / "MANIFEST.tsv"
CACHE_ENV = "SERD_TRAIN_CACHE"  # overrides the cache folder (tests use a temporary one)
N_FOLDS = 5
PRIOR_WEIGHT_FRAMES = 1000  # the speaker prior counts as 10 s of speech in the daemon's running estimate


Clip = serd_manifest.Clip


@dataclass
class WindowSet:
    """Windows of a list of clips: windows[i] belongs to clip clip_index[i]."""

    windows: np.ndarray  # (n, frames, n_features) float32
    clip_index: np.ndarray  # (n,) int64


def cache_dir(kind: str) -> Path:
    """Folder for cached arrays of one kind: $SERD_TRAIN_CACHE/kind or <repo>/.cache/kind."""
    return Path(os.environ.get(CACHE_ENV) or REPO_DIR / ".cache") / kind


def vad_params() -> VadParams:
    """The VAD parameters the daemon uses by default ([vad] section defaults)."""
    return pipeline.vad_params(VadConfig())


def read_manifests(paths: list[Path], labels: tuple[str, ...] = LABELS) -> list[Clip]:
    """Clips of several manifests whose emotion is one of labels (others are skipped)."""
    clips = serd_manifest.read_manifests(list(paths))
    kept = [clip for clip in clips if clip.emotion in labels]
    if len(kept) < len(clips):
        log.info("skipped %d clips with emotions outside %s", len(clips) - len(kept), labels)
    return kept


def thin(clips: list[Clip], per_speaker: int) -> list[Clip]:
    """Every k-th clip of each speaker so that about per_speaker remain (labels stay mixed)."""
    kept: list[Clip] = []
    for speaker in sorted({clip.speaker for clip in clips}):
        own = [clip for clip in clips if clip.speaker == speaker]
        step = max(1, len(own) // per_speaker)
        kept.extend(own[::step][:per_speaker])
    return kept


def speaker_folds(clips: list[Clip], n_folds: int = N_FOLDS) -> dict[str, int]:
    """Speaker -> fold; numeric ids are spread odd then even (RAVDESS: both sexes in every fold)."""
    order: list[str] = []
    for corpus in sorted({clip.speaker.split(":")[0] for clip in clips}):
        speakers = sorted({clip.speaker for clip in clips if clip.speaker.split(":")[0] == corpus})
        order.extend(sorted(speakers, key=_speaker_order_key))
    return {speaker: i % n_folds for i, speaker in enumerate(order)}


def _speaker_order_key(speaker: str) -> tuple:
    """Odd numeric ids first, then even ones, then the rest by name."""
    local = speaker.split(":", 1)[1]
    if local.isdigit():
        return (int(local) % 2 == 0, int(local), local)
    return (2, 0, local)


def clip_labels(clips: list[Clip], labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Label index of every clip."""
    position = {label: i for i, label in enumerate(labels)}
    return np.array([position[clip.emotion] for clip in clips], dtype=np.int64)


VAD_LATER_DEFAULTS = {"gate": "webrtc", "min_snr_db": 0.0}  # gate keys added since the first caches: left out of the key
# at these values, so that those caches stay valid


def cache_key(clips: list[Clip], aug: augment.AudioAugment | None, copy: int, raw: bool = False,
              features: FeatureParams = FeatureParams()) -> str:
    """Hash of everything that shapes the windows: clips, front-end parameters, augmentation, normalisation."""
    spec = {
        "clips": [clip.path for clip in clips],
        "vad": {k: v for k, v in asdict(vad_params()).items() if not (k in VAD_LATER_DEFAULTS and v == VAD_LATER_DEFAULTS[k])},
        "features": features.to_dict(),
        "window": WindowParams().to_dict(),
        "augment": asdict(aug) if aug else None,
        "copy": copy,
    }
    if raw:
        spec["raw"] = True  # unnormalised frames (per-window keys stay as they were)
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def clip_samples(clip: Clip, aug: augment.AudioAugment | None, copy: int) -> np.ndarray:
    """16 kHz int16 audio of one clip, optionally augmented (deterministic per clip and copy)."""
    samples = load_audio(clip.path)
    if aug is not None:
        seed = int(hashlib.sha1(("%s|%d" % (clip.path, copy)).encode()).hexdigest()[:8], 16)
        samples = augment.apply(samples, aug, np.random.default_rng(seed))
    return samples


def clip_window_list(clip: Clip, aug: augment.AudioAugment | None, copy: int, raw: bool = False,
                     features: FeatureParams = FeatureParams()) -> list[np.ndarray]:
    """Windows of one clip, optionally augmented (deterministic per clip and copy), raw or per-window normalised."""
    return clip_windows(clip_samples(clip, aug, copy), vad_params(), features, WindowParams(), normalise=not raw)


def _job(args: tuple) -> list[np.ndarray]:
    """Pool worker: windows of one clip."""
    return clip_window_list(*args)


def map_clips(job, clips: list[Clip], aug: augment.AudioAugment | None, copy: int, workers: int, *extra) -> list:
    """job((clip, aug, copy, *extra)) for every clip, in order, on `workers` forked processes."""
    jobs = [(clip, aug, copy, *extra) for clip in clips]
    if workers <= 1:
        return [job(args) for args in jobs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(job, jobs, chunksize=8)


def compute_windows(clips: list[Clip], aug: augment.AudioAugment | None = None, copy: int = 0, workers: int = 2,
                    raw: bool = False, features: FeatureParams = FeatureParams()) -> WindowSet:
    """Windows of every clip (raw feature frames with raw) through the front end of features, read from or written to
    the on-disk cache."""
    path = cache_dir("windows") / ("%s.npz" % cache_key(clips, aug, copy, raw, features))
    if path.is_file():
        with np.load(path) as data:
            return WindowSet(data["windows"], data["clip_index"])
    per_clip = map_clips(_job, clips, aug, copy, workers, raw, features)
    result = _stack(per_clip, WindowParams().frames, features.n_features)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".%d.partial.npz" % os.getpid())
    np.savez(partial, windows=result.windows, clip_index=result.clip_index)
    os.replace(partial, path)
    log.info("cached %d windows of %d clips in %s", len(result.windows), len(clips), path)
    return result


def _stack(per_clip: list[list[np.ndarray]], frames: int, n_features: int) -> WindowSet:
    """Flatten per-clip window lists into one array plus the owning clip of each window."""
    index = np.array([i for i, windows in enumerate(per_clip) for _ in windows], dtype=np.int64)
    flat = [window for windows in per_clip for window in windows]
    stacked = np.stack(flat).astype(np.float32) if flat else np.zeros((0, frames, n_features), np.float32)
    return WindowSet(stacked, index)


def subset(windows: WindowSet, clip_mask: np.ndarray) -> WindowSet:
    """Windows of the clips where clip_mask is true (clip indices kept global)."""
    keep = clip_mask[windows.clip_index]
    return WindowSet(windows.windows[keep], windows.clip_index[keep])


def _speaker_of_window(clips: list[Clip], raw: WindowSet) -> np.ndarray:
    """Speaker number (sorted by name) of every window."""
    speaker_ids = {speaker: i for i, speaker in enumerate(sorted({clip.speaker for clip in clips}))}
    return np.array([speaker_ids[clip.speaker] for clip in clips], dtype=np.int64)[raw.clip_index]


def speaker_moments(clips: list[Clip], raw: WindowSet) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Speaker number -> per-band mean and standard deviation over the frames of that speaker's raw windows."""
    speaker_of_window = _speaker_of_window(clips, raw)
    moments = {}
    for speaker in np.unique(speaker_of_window):
        frames = raw.windows[speaker_of_window == speaker].reshape(-1, raw.windows.shape[2]).astype(np.float64)
        moments[int(speaker)] = (frames.mean(axis=0), frames.std(axis=0))
    return moments


def speaker_prior(clips: list[Clip], raw: WindowSet, weight_frames: int = PRIOR_WEIGHT_FRAMES) -> SpeakerPrior:
    """The card's starting voice estimate: the speakers' per-band means and deviations, averaged over speakers."""
    moments = list(speaker_moments(clips, raw).values())
    mean = np.mean([m for m, _ in moments], axis=0)
    std = np.mean([s for _, s in moments], axis=0)
    return SpeakerPrior(tuple(float(v) for v in mean), tuple(float(v) for v in std), weight_frames)


def speaker_normalised(clips: list[Clip], raw: WindowSet) -> WindowSet:
    """Raw windows normalised per band by their speaker's mean and standard deviation over all of
    that speaker's windows in this set (no labels): what a session-long running estimate converges to."""
    speaker_of_window = _speaker_of_window(clips, raw)
    out = np.empty_like(raw.windows)
    for speaker, (mean, std) in speaker_moments(clips, raw).items():
        mine = speaker_of_window == speaker
        out[mine] = ((raw.windows[mine] - mean) / (std + STD_FLOOR)).astype(np.float32)
    return WindowSet(out, raw.clip_index)
