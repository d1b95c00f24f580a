"""The demo speech that `make run` plays when there is no microphone (espeak-ng + sox), and its narration.

`python -m tools.demo OUT.wav` writes the speech and OUT.json (each line's text, intent and start);
`python -m tools.demo --narrate OUT.wav` prints each line and its intent as it plays, started with the playback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import TextIO

SAMPLE_RATE_HZ = 16000
PAUSE_S = 1.0
# (text, intent, words per minute, pitch 0-99, amplitude 0-200): the voice only varies speed, pitch and loudness.
LINES = (
    ("Good morning. The weather today is mild, and nothing much is going on.", "calm", 140, 40, 90),
    ("Oh wow, this is wonderful! I can't believe we actually won the prize!", "happy", 190, 80, 130),
    ("No! Stop that right now! I told you a hundred times not to touch it!", "angry", 200, 60, 150),
    ("I miss her so much. Everything feels empty since she left.", "sad", 110, 25, 70),
    ("The train leaves at half past nine from platform four.", "neutral", 150, 45, 100),
)
CAVEAT = ("Demo: five lines of synthesised speech (espeak-ng). A synthetic voice carries little emotion (only its speed,\n"
          "pitch and loudness change), so the labels below are the model's guess on a voice unlike the actors it\n"
          "learned from, not a measure of its accuracy. Speak into a microphone for the real thing.")


def synthesise(out_path: Path) -> None:
    """Write the demo as a 16 kHz mono 16-bit WAV and its script (OUT.json: text, intent, start_s of each line)."""
    for program in ("espeak-ng", "sox"):
        if shutil.which(program) is None:
            raise SystemExit("demo: %s is missing (apt-get install espeak-ng sox)" % program)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    script, start_s = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for number, (text, intent, speed_wpm, pitch, amplitude) in enumerate(LINES):
            raw = Path(tmp) / ("line%d.wav" % number)
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed_wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(raw), text], check=True)
            part = Path(tmp) / ("part%d.wav" % number)
            subprocess.run(["sox", "-V1", str(raw), "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16", str(part), "pad", "0", str(PAUSE_S)], check=True)
            parts.append(str(part))
            script.append({"text": text, "intent": intent, "start_s": round(start_s, 3)})
            start_s += wav_duration_s(part)
        subprocess.run(["sox", "-V1", *parts, str(out_path)], check=True)
    script_path(out_path).write_text(json.dumps({"duration_s": round(start_s, 3), "lines": script}, indent=2) + "\n")


def wav_duration_s(path: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(path)) as reader:
        return reader.getnframes() / reader.getframerate()


def script_path(wav_path: Path) -> Path:
    """The script beside the demo's WAV."""
    return wav_path.with_suffix(".json")


def narrate(wav_path: Path, out: TextIO) -> None:
    """Print the caveat, then each line and its intent at the moment it starts playing (from now)."""
    script = json.loads(script_path(wav_path).read_text())
    lines = script["lines"]
    print(CAVEAT, file=out, flush=True)
    started = time.monotonic()
    for number, line in enumerate(lines, start=1):
        time.sleep(max(0.0, line["start_s"] - (time.monotonic() - started)))
        print('playing %d/%d, meant %s: "%s"' % (number, len(lines), line["intent"], line["text"]), file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m tools.demo [--narrate] OUT.wav."""
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--narrate", action="store_true", help="print each line of OUT.wav's script as it plays")
    args = parser.parse_args(argv)
    try:
        if args.narrate:
            narrate(args.out, sys.stdout)
        else:
            synthesise(args.out)
    except KeyboardInterrupt:  # Ctrl-C on `make run` stops the demo without a traceback
        return 130
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as exc:
        print("demo: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
