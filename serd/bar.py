"""Confidence bars in eighths of a character cell: the monitor's lines and analyze's table draw the same bar."""

from __future__ import annotations

BAR_CELLS = 10
EIGHTHS = " ▏▎▍▌▋▊▉"
FULL_BLOCK = "█"
LABEL_WIDTH = 9  # the longest shipped label ("surprised") and "uncertain"


def confidence_bar(confidence: float, cells: int = BAR_CELLS) -> str:
    """A bar of `cells` characters, in eighths of a cell, for a value in [0, 1]."""
    eighths = int(min(max(confidence, 0.0), 1.0) * cells * 8)
    full, rest = divmod(eighths, 8)
    bar = FULL_BLOCK * full + (EIGHTHS[rest] if rest else "")
    return bar.ljust(cells)
