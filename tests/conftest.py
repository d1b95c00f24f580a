"""Shared fixtures: where the corpora live, a scratch environment for numba."""

import os
from pathlib import Path

import pytest

from serd.model import load_model

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("SERD_SHARED_DIR", PROJECT_DIR.parent / "shared"))
RAVDESS_MANIFEST = SHARED_DIR / "corpora" / "ravdess" / "MANIFEST.tsv"


@pytest.fixture(scope="session")
def ravdess_manifest() -> Path:
    """The shared RAVDESS manifest; the suite needs it (CI has it beside the clone)."""
    if not RAVDESS_MANIFEST.is_file():
        pytest.fail("RAVDESS manifest not found at %s (set SERD_SHARED_DIR)" % RAVDESS_MANIFEST)
    return RAVDESS_MANIFEST


@pytest.fixture(scope="session")
def ravdess_clip(ravdess_manifest) -> Path:
    """One angry RAVDESS clip (actor 01)."""
    return ravdess_manifest.parent / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="session")
def labels() -> tuple[str, ...]:
    """The shipped model's labels."""
    return load_model().labels
