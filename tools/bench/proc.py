"""Process facts for the benchmark workers: peak RSS, CPU time and the BLAS pools loaded."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from tools.bench.audio import REPO_DIR

KIB_PER_MB = 1024.0
CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
UTIME_INDEX = 11  # utime and stime (fields 14 and 15 of /proc/PID/stat) counted after the command name
STIME_INDEX = 12
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) of a process in MB; 0 if the process is gone."""
    try:
        lines = Path("/proc/%s/status" % pid).read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / KIB_PER_MB
    return 0.0


def cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used; 0 if it is gone."""
    try:
        text = Path("/proc/%s/stat" % pid).read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[UTIME_INDEX]) + int(fields[STIME_INDEX])) / CLOCK_TICKS_S


def blas_info() -> list[dict]:
    """BLAS / OpenMP pools loaded in this process, with their thread counts."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "num_threads", "version", "architecture")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info()]


def read_wav_int16(path: str) -> np.ndarray:
    """Samples of a 16-bit PCM WAV as int16, with no intermediate copies (the benchmark's own audio)."""
    with wave.open(str(path), "rb") as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.int16)


def worker_env() -> dict[str, str]:
    """Environment of every measured process: one thread for BLAS, OpenMP, numba and TensorFlow."""
    env = dict(os.environ)
    env.update({name: "1" for name in THREAD_VARIABLES})
    env.setdefault("NUMBA_CACHE_DIR", str(REPO_DIR / ".cache" / "numba"))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH", "")]))
    return env
