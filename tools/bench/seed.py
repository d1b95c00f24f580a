"""Benchmark worker for the seed-style path: librosa MFCC per window + Keras float predict() per window.

What a typical hobby project does: no streaming state, no VAD of its own, every window's features
recomputed from raw audio, one Keras predict() call per window. Run by tools.bench as
`python -m tools.bench.seed AUDIO.wav WINDOWS.json`; prints one JSON object. It runs on the very
windows serd produced (segment start and end indices), with the float Keras twin of serd's
model (tools.model.build_model, random weights: weights do not change the cost).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from tools.bench.proc import blas_info, read_wav_int16, vm_hwm_mb

SAMPLE_RATE_HZ = 16000
WINDOW_FRAMES = 200
N_COEFFICIENTS = 40
N_FFT = 512
HOP_LENGTH = 160
WIN_LENGTH = 400
INT16_FULL_SCALE = 32768.0


def window_features(librosa, audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """librosa MFCC of the 2 s ending at end (not before the segment start), as (1, frames, 40, 1)."""
    first = max(start, end - WINDOW_FRAMES * HOP_LENGTH)
    mfcc = librosa.feature.mfcc(
        y=audio[first:end], sr=SAMPLE_RATE_HZ, n_mfcc=N_COEFFICIENTS, n_mels=N_COEFFICIENTS,
        n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
    ).T
    frames = np.resize(mfcc, (WINDOW_FRAMES, N_COEFFICIENTS)) if len(mfcc) < WINDOW_FRAMES else mfcc[:WINDOW_FRAMES]
    return frames[None, :, :, None].astype(np.float32)


def main(argv: list[str]) -> int:
    """AUDIO WINDOWS -> one JSON object on stdout."""
    audio_path, windows_path = argv
    started_s = time.perf_counter()
    import librosa

    from tools.model.nn import TrainSettings, build_model

    model = build_model(WINDOW_FRAMES, N_COEFFICIENTS, TrainSettings())
    audio = read_wav_int16(audio_path).astype(np.float32) / INT16_FULL_SCALE
    windows = json.loads(open(windows_path, encoding="utf-8").read())
    load_s = time.perf_counter() - started_s
    warm_start_s = time.perf_counter()
    model.predict(window_features(librosa, audio, *windows[0]), verbose=0)
    warmup_s = time.perf_counter() - warm_start_s
    cpu_start_s, wall_start_s = time.process_time(), time.perf_counter()
    for start, end in windows:
        model.predict(window_features(librosa, audio, start, end), verbose=0)
    cpu_s, wall_s = time.process_time() - cpu_start_s, time.perf_counter() - wall_start_s
    result = {
        "audio_s": len(audio) / SAMPLE_RATE_HZ,
        "windows": len(windows),
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "rss_mb": vm_hwm_mb(),
        "blas": blas_info(),
    }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
