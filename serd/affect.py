"""Arousal and valence (each -1..1) derived from an emotion's label probabilities. Pure.

Each label has a point in the valence-arousal plane: the NRC Valence, Arousal, and Dominance Lexicon
v1.0 (Mohammad, ACL 2018; ratings 0..1 of 20,000 English words, rescaled here to -1..1 by 2x - 1),
read for the noun that names each emotion category: "neutral", "calmness", "happiness", "sadness",
"anger", "fear", "disgust", "surprise". Nouns, not serd's adjectives, because the lexicon rates the
adjective "fearful" at arousal 0.48 (mid-scale), at odds with fear's place in every circumplex of
affect, while "fear" is rated 0.84. The derived point of a probability vector is the
probability-weighted mean of its labels' points, over the labels that have one (renormalised);
silence and uncertain are states, not emotions, and have none.
"""

from __future__ import annotations

from collections.abc import Mapping

COORDINATE_DIGITS = 4
LEXICON_SOURCE = "NRC VAD Lexicon v1.0 (Mohammad 2018), emotion-category nouns, rescaled to -1..1"

_LEXICON_0_1 = {  # label: (word read in the lexicon, valence, arousal), the lexicon's own 0..1 ratings
    "neutral": ("neutral", 0.469, 0.184),
    "calm": ("calmness", 0.934, 0.105),
    "happy": ("happiness", 0.960, 0.732),
    "sad": ("sadness", 0.052, 0.288),
    "angry": ("anger", 0.167, 0.865),
    "fearful": ("fear", 0.073, 0.840),
    "disgust": ("disgust", 0.052, 0.775),
    "surprised": ("surprise", 0.875, 0.875),
}
CIRCUMPLEX: dict[str, tuple[float, float]] = {  # label: (valence, arousal), each -1..1
    label: (round(2.0 * valence - 1.0, 3), round(2.0 * arousal - 1.0, 3))
    for label, (_word, valence, arousal) in _LEXICON_0_1.items()
}


def lexicon_word(label: str) -> str | None:
    """The lexicon word whose ratings place label, or None when the label has no coordinates."""
    entry = _LEXICON_0_1.get(label)
    return entry[0] if entry else None


def coordinates(probabilities: Mapping[str, float]) -> tuple[float, float] | None:
    """(valence, arousal) of a label -> probability mapping, or None when no label with coordinates has probability."""
    total = valence = arousal = 0.0
    for label, p in probabilities.items():
        point = CIRCUMPLEX.get(label)
        if point is None or not p > 0.0:
            continue
        total += p
        valence += p * point[0]
        arousal += p * point[1]
    if total <= 0.0:
        return None
    return round(valence / total, COORDINATE_DIGITS), round(arousal / total, COORDINATE_DIGITS)
