"""Process-wide settings for serd's numeric work: one BLAS thread, and a C heap that keeps its freed blocks."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

GLIBC_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
GLIBC_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # blocks up to this size come from the heap (glibc's ceiling for the setting)
TRIM_THRESHOLD_BYTES = 64 << 20  # free memory at the heap's top kept for reuse, up to this much


def tune_process() -> None:
    """Call once at start. The BLAS setting takes effect only if numpy is not imported yet (serd's main());
    the heap setting works at any time (tools.bench.pipeline, whose environment already sets BLAS threads)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # BLAS threads slow small matrix work on busy cores
    if not keep_freed_blocks():
        log.debug("mallopt unavailable (not glibc): large arrays are mapped per call")


def keep_freed_blocks() -> bool:
    """Serve numpy's megabyte temporaries (a clip's frames and spectra) from the heap and keep them
    when freed, so the next file or window reuses warm pages.

    By default glibc maps such blocks fresh (zeroed pages, one fault per 4 KB) and unmaps them on free,
    and trims the heap's top after each large free: per file analysed, features cost about twice their
    arithmetic. False where mallopt is missing (not glibc) or refuses a setting."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(GLIBC_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(GLIBC_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
