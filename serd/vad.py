"""Speech gate: webrtcvad decisions (with a second opinion: the Silero model's when the gate is silero or
silero-talker, the level above the noise floor with min_snr_db), minimum speech, hangover and pre-roll."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import _webrtcvad  # webrtcvad-wheels' C module; its Python wrapper reads package metadata at import (~0.1 s a process)

from serd.noisegate import GATES, LOOKBACK_MS, RECONFIRM_MS, SILERO_HISTORY_SAMPLES, NoiseFloor, SileroCheck, frame_powers

VAD_FRAME_MS_ALLOWED = (10, 20, 30)


@dataclass(frozen=True)
class SpeechBoundary:
    """A speech segment starts or ends at an absolute sample index."""

    kind: str  # "start" or "end"
    sample_index: int


@dataclass(frozen=True)
class VadParams:
    """Gate parameters; the daemon reads them from the [vad] config section."""

    aggressiveness: int = 2
    frame_ms: int = 30
    min_speech_ms: int = 120
    hangover_ms: int = 300
    pre_roll_ms: int = 150
    gate: str = "webrtc"  # the shipped models are trained and measured on webrtcvad's segments
    min_snr_db: float = 0.0  # > 0: a frame is sure only while the level is this far above the noise floor (NoiseFloor)


class VadGate:
    """Feeds fixed frames to webrtcvad and turns decisions into speech start/end boundaries.

    The gate sees audio in any chunk size; it carries the partial frame over. Boundary indices
    are absolute sample indices of the stream, so the caller can read the segment (pre-roll
    included) from its ring buffer.
    """

    def __init__(self, params: VadParams, sample_rate_hz: int):
        if params.frame_ms not in VAD_FRAME_MS_ALLOWED:
            raise ValueError("vad frame_ms must be one of %s" % (VAD_FRAME_MS_ALLOWED,))
        if params.gate not in GATES:
            raise ValueError("vad gate must be one of %s, not %r" % (", ".join(GATES), params.gate))
        self.params = params
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * params.frame_ms // 1000
        self._vad = _webrtcvad.create()
        _webrtcvad.init(self._vad)
        _webrtcvad.set_mode(self._vad, params.aggressiveness)
        self._min_speech_frames = max(1, -(-params.min_speech_ms // params.frame_ms))
        self._hangover_frames = max(1, -(-params.hangover_ms // params.frame_ms))
        self._pre_roll_samples = sample_rate_hz * params.pre_roll_ms // 1000
        self._check = SileroCheck(sample_rate_hz, talker=params.gate == "silero-talker") if params.gate != "webrtc" else None
        self._floor = NoiseFloor(params.frame_ms, params.min_snr_db) if params.min_snr_db > 0 else None
        self._gated = self._check is not None or self._floor is not None  # voiced runs wait for a sure frame
        self._lookback_frames = max(1, LOOKBACK_MS // params.frame_ms)
        self._reconfirm_frames = max(1, RECONFIRM_MS // params.frame_ms)
        self._history = np.zeros(SILERO_HISTORY_SAMPLES, dtype=np.int16)  # the samples before _pending[0]
        self._audio_start_index = 0  # absolute index of the first sample of the audio the model may hear
        self._pending = np.zeros(0, dtype=np.int16)
        self._next_index = 0  # absolute index of _pending[0]
        self._in_speech = False
        self._run_frames = 0  # voiced frames in a row (silence) or unvoiced in a row (speech)
        self._confirmed = not self._gated  # a frame of the current voiced run was sure
        self._voiced_since_sure = 0  # voiced frames since a frame was last sure
        self._last_end = 0

    @property
    def silero_calls(self) -> int:
        """Chunks the Silero model has heard so far (0 for the webrtc gate)."""
        return self._check.calls if self._check is not None else 0

    @property
    def in_speech(self) -> bool:
        """True while a segment is open."""
        return self._in_speech

    @property
    def decided_index(self) -> int:
        """Absolute index up to which every sample has a decision."""
        return self._next_index

    @property
    def earliest_start_index(self) -> int:
        """Outside a segment, the earliest index a segment not yet reported could start at (the voiced run so far,
        its pre-roll); inside one, decided_index."""
        if self._in_speech:
            return self._next_index
        return max(self._next_index - self._run_frames * self.frame_samples - self._pre_roll_samples, self._last_end, 0)

    def start_at(self, sample_index: int) -> None:
        """Declare the absolute index of the next sample pushed (after a gap or at stream start);
        an open segment is forgotten (the caller closes it at the gap)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._history = np.zeros(SILERO_HISTORY_SAMPLES, dtype=np.int16)
        if self._check is not None:
            self._check.reset(sample_index)
        if self._floor is not None:
            self._floor.reset()
        self._next_index = sample_index
        self._in_speech, self._run_frames, self._confirmed = False, 0, not self._gated
        self._last_end = min(self._last_end, sample_index)

    def push(self, samples: np.ndarray) -> list[SpeechBoundary]:
        """Consume int16 samples; return the boundaries they complete, in order."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        boundaries: list[SpeechBoundary] = []
        whole = len(self._pending) // self.frame_samples * self.frame_samples
        pcm = memoryview(self._pending[:whole].tobytes())
        frame_bytes = 2 * self.frame_samples
        audio = np.concatenate([self._history, self._pending[:whole]]) if self._check is not None else None
        powers = frame_powers(self._pending[:whole], self.frame_samples) if self._floor is not None else None
        self._audio_start_index = self._next_index - SILERO_HISTORY_SAMPLES
        for frame, offset in enumerate(range(0, 2 * whole, frame_bytes)):
            voiced = _webrtcvad.process(self._vad, self.sample_rate_hz, pcm[offset : offset + frame_bytes], self.frame_samples)
            if self._gated:
                voiced = self._second_opinion(voiced, audio, powers[frame] if powers is not None else 0.0)
            boundary = self._decide(voiced)
            self._next_index += self.frame_samples
            if boundary is not None:
                boundaries.append(boundary)
        if audio is not None:
            self._history = audio[len(audio) - SILERO_HISTORY_SAMPLES :]
        self._pending = self._pending[whole:]
        return boundaries

    def _second_opinion(self, voiced: bool, audio: np.ndarray | None, power: float) -> bool:
        """Whether the frame at _next_index counts as voiced when a second opinion is asked (audio: this
        push's whole frames after the history, for the Silero model; power: the frame's mean power).

        A frame is sure when it is loud enough above the noise floor (with min_snr_db) and then, with a
        Silero gate, when the model's last chunk reached the onset probability (with silero-talker also
        one talker's pitch). Outside a segment a webrtcvad-voiced frame stays a candidate; one sure frame
        confirms the run (which then counts at most the lookback before it). Inside a segment a voiced
        frame counts only while a frame was sure within the last reconfirm frames (speech soon is again,
        noise seldom).
        """
        sure = self._floor is None or self._floor.above(power)  # the floor follows every frame, voiced or not
        if not voiced:
            return False
        if self._check is not None:  # the model hears every voiced frame: its verdicts need the stream it was made for
            self._check.probability(audio, self._audio_start_index, self._next_index + self.frame_samples)
            sure = sure and self._check.sure
        self._voiced_since_sure = 0 if sure else self._voiced_since_sure + 1
        if self._in_speech:
            return self._voiced_since_sure < self._reconfirm_frames
        if not self._confirmed and sure:
            self._confirmed = True
            self._run_frames = min(self._run_frames, self._lookback_frames - 1)
        return True

    def flush(self) -> list[SpeechBoundary]:
        """End of stream: close an open segment at the last decided sample."""
        if not self._in_speech:
            return []
        self._in_speech, self._run_frames, self._confirmed = False, 0, not self._gated
        self._last_end = self._next_index
        return [SpeechBoundary("end", self._next_index)]

    def _decide(self, voiced: bool) -> SpeechBoundary | None:
        """Advance the state machine by one frame ending at _next_index + frame_samples."""
        frame_end = self._next_index + self.frame_samples
        if not self._in_speech:
            self._run_frames = self._run_frames + 1 if voiced else 0
            if not voiced:
                self._confirmed = not self._gated
            if self._run_frames < self._min_speech_frames or not self._confirmed:
                return None
            first_voiced = frame_end - self._run_frames * self.frame_samples
            start = max(first_voiced - self._pre_roll_samples, self._last_end, 0)
            self._in_speech, self._run_frames = True, 0
            return SpeechBoundary("start", start)
        self._run_frames = 0 if voiced else self._run_frames + 1
        if self._run_frames < self._hangover_frames:
            return None
        self._in_speech, self._run_frames, self._confirmed = False, 0, not self._gated
        self._last_end = frame_end
        return SpeechBoundary("end", frame_end)
