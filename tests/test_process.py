"""Process settings: with freed blocks kept, a clip's feature arrays reuse warm pages."""

import resource
import subprocess
import sys
import wave

from serd.audio import SAMPLE_RATE_HZ, load_audio, to_int16
from tests.conftest import PROJECT_DIR

REPEATS = 20
FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from serd.process import keep_freed_blocks
if sys.argv[1] == "kept" and not keep_freed_blocks():
    sys.exit("mallopt refused")
from serd.features import FeatureExtractor, FeatureParams
extractor = FeatureExtractor(FeatureParams())
clip = (np.random.default_rng(0).standard_normal(16000 * 4) * 3000).astype(np.int16)
extractor.compute(clip)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(%d):
    extractor.compute(clip)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""" % REPEATS


def page_faults(mode: str) -> int:
    """Minor page faults of REPEATS feature computations of a 4 s clip, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], cwd=PROJECT_DIR, env={"OPENBLAS_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_kept_blocks_spare_the_page_faults_of_each_clip():
    kept, default = page_faults("kept"), page_faults("default")
    assert default > REPEATS * 100  # glibc maps each megabyte temporary afresh: hundreds of faults a clip
    assert kept < REPEATS  # warm pages: not even one fault a clip


def children_faults() -> int:
    """Minor page faults of all waited-for child processes so far."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def test_serd_analyze_reuses_its_pages_from_file_to_file(tmp_path, ravdess_clip):
    clip = to_int16(load_audio(ravdess_clip))
    wav = tmp_path / "clip.wav"
    with wave.open(str(wav), "wb") as writer:
        writer.setnchannels(1), writer.setsampwidth(2), writer.setframerate(SAMPLE_RATE_HZ)
        writer.writeframes(clip.tobytes())
    faults = {}
    for count in (1, 1 + REPEATS):
        before = children_faults()
        subprocess.run([sys.executable, "-m", "serd.cli", "analyze", "--json"] + [str(wav)] * count, cwd=PROJECT_DIR,
                       capture_output=True, text=True, check=True)
        faults[count] = children_faults() - before
    assert faults[1 + REPEATS] - faults[1] < REPEATS * 20  # without kept blocks: about 900 more a file
