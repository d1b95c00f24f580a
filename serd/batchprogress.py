"""serd batch's accounting: what the batch did so far, the progress line on a terminal, and the summary at the end."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from serd.batchwork import ERROR_ROW, OVERALL_ROW, SEGMENT_ROW
from serd.report import NO_SPEECH

PROGRESS_INTERVAL_S = 0.5
SECONDS_PER_HOUR = 3600


@dataclass
class Tally:
    """What the batch did so far."""

    files: int = 0
    failed: int = 0
    skipped: int = 0
    audio_s: float = 0.0
    no_speech: int = 0
    labels: Counter = field(default_factory=Counter)  # segments by label
    started_s: float = field(default_factory=time.monotonic)

    def add(self, rows: list[dict]) -> None:
        """Count one file's rows."""
        self.files += 1
        for row in rows:
            if row["row"] == ERROR_ROW:
                self.failed += 1
            elif row["row"] == SEGMENT_ROW:
                self.labels[row["label"]] += 1
            elif row["row"] == OVERALL_ROW:
                self.audio_s += row["duration_s"]
                self.no_speech += row["label"] is None

    def speed(self) -> float:
        """Audio seconds analysed per wall-clock second so far (× real time)."""
        return self.audio_s / max(time.monotonic() - self.started_s, 1e-9)


class Progress:
    """One line on a terminal, redrawn at most every PROGRESS_INTERVAL_S: files, audio hours, × real time, ETA."""

    def __init__(self, total_files: int, stream: TextIO):
        self.total, self.stream = total_files, stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self._drawn_s = 0.0

    def update(self, tally: Tally) -> None:
        """Redraw, unless drawn very recently (the last file always draws)."""
        now_s = time.monotonic()
        done = tally.files
        if not self.enabled or (now_s - self._drawn_s < PROGRESS_INTERVAL_S and done < self.total):
            return
        self._drawn_s = now_s
        elapsed_s = now_s - tally.started_s
        eta_s = elapsed_s / done * (self.total - done) if done else 0.0
        self.stream.write("\r%d/%d files  %.2f h of audio  %.1f × real time  ETA %s\x1b[K"
                          % (done, self.total, tally.audio_s / SECONDS_PER_HOUR, tally.speed(), _clock(eta_s)))
        self.stream.flush()

    def errors(self, lines: list[str]) -> None:
        """A failed file's line, above the bar."""
        for line in lines:
            self.stream.write(("\r\x1b[K" if self.enabled else "") + "serd: error: %s\n" % line)

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    """H:MM:SS."""
    minutes, secs = divmod(int(seconds), 60)
    return "%d:%02d:%02d" % (minutes // 60, minutes % 60, secs)


def format_summary(tally: Tally, results: Path) -> str:
    """The lines printed at the end: files, audio hours and speed, errors, segments by label."""
    lines = ["serd batch: %s analysed, %d failed, %d skipped (already in %s)" % (_count(tally.files, "file"), tally.failed, tally.skipped, results),
             "audio: %.2f h in %.1f s, %.1f × real time" % (tally.audio_s / SECONDS_PER_HOUR, time.monotonic() - tally.started_s, tally.speed())]
    total = sum(tally.labels.values())
    shares = ", ".join("%s %d (%.0f %%)" % (label or NO_SPEECH, count, 100.0 * count / total) for label, count in tally.labels.most_common())
    silent = "; %s without speech" % _count(tally.no_speech, "file") if tally.no_speech else ""
    lines.append("segments by label: %s%s" % (shares or "none", silent))
    lines.append("results: %s" % results)
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")
