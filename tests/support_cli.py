"""serd's command line run as a user runs it, and the labelled manifests its eval reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERD = [sys.executable, "-m", "serd.cli"]
MANIFEST_HEADER = "path\tspeaker\temotion\tduration_s"
DEFAULT_DURATION_S = 3.5


def serd(*args, stdin=None, timeout_s: float = 180, text: bool = False) -> subprocess.CompletedProcess:
    """Run serd with args; return the completed process (bytes, or str with text=True)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run(SERD + [str(a) for a in args], input=stdin, capture_output=True, timeout=timeout_s, env=env,
                          text=text, check=False)


def write_manifest(path: Path, rows) -> Path:
    """A MANIFEST.tsv of (clip path, speaker, emotion[, duration_s]) rows."""
    lines = [MANIFEST_HEADER] + ["%s\t%s\t%s\t%.3f" % (tuple(row) + (DEFAULT_DURATION_S,))[:4] for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
