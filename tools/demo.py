"""Synthesise the demo speech that `make run` plays when there is no microphone (espeak-ng + sox)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE_RATE_HZ = 16000
PAUSE_S = 1.0
# (text, words per minute, pitch 0-99, amplitude 0-200): a calm, a lively and a loud voice.
LINES = (
    ("Good morning. The weather today is mild, and nothing much is going on.", 140, 40, 90),
    ("Oh wow, this is wonderful! I can't believe we actually won the prize!", 190, 80, 130),
    ("No! Stop that right now! I told you a hundred times not to touch it!", 200, 60, 150),
    ("I miss her so much. Everything feels empty since she left.", 110, 25, 70),
    ("The train leaves at half past nine from platform four.", 150, 45, 100),
)


def synthesise(out_path: Path) -> None:
    """Write the demo as a 16 kHz mono 16-bit WAV."""
    for program in ("espeak-ng", "sox"):
        if shutil.which(program) is None:
            raise SystemExit("demo: %s is missing (apt-get install espeak-ng sox)" % program)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for number, (text, speed_wpm, pitch, amplitude) in enumerate(LINES):
            raw = Path(tmp) / ("line%d.wav" % number)
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed_wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(raw), text], check=True)
            part = Path(tmp) / ("part%d.wav" % number)
            subprocess.run(["sox", "-V1", str(raw), "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16", str(part), "pad", "0", str(PAUSE_S)], check=True)
            parts.append(str(part))
        subprocess.run(["sox", "-V1", *parts, str(out_path)], check=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m tools.demo OUT.wav."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    synthesise(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
