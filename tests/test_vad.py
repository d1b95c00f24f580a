"""The speech gate on real speech: bounds, pre-roll, hangover, minimum speech, chunk independence."""

from __future__ import annotations

import numpy as np
import pytest
import webrtcvad

from serd.audio import chunks, load_audio
from serd.vad import SpeechBoundary, VadGate, VadParams

SAMPLE_RATE_HZ = 16000
SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000
SPEECH_START, SPEECH_STOP = 16320, 48960  # where the clip's speech energy is (within -35 dB of its peak)
SILENCE = np.zeros(SAMPLE_RATE_HZ, dtype=np.int16)


@pytest.fixture(scope="module")
def clip(ravdess_clip) -> np.ndarray:
    """The angry RAVDESS clip at 16 kHz (about 4.1 s, speech from 1.0 to 3.1 s)."""
    return load_audio(ravdess_clip)


@pytest.fixture(scope="module")
def speech(clip) -> np.ndarray:
    """The clip's speech, cut where its energy starts and stops."""
    return clip[SPEECH_START:SPEECH_STOP]


@pytest.fixture(scope="module")
def conversation(clip, speech) -> np.ndarray:
    """Speech bursts with gaps of different lengths, silences and the clip's own breathing."""
    gap = lambda ms: np.zeros(ms * SAMPLES_PER_MS, dtype=np.int16)  # noqa: E731
    parts = [gap(700), speech[:8000], gap(200), speech[8000:20000], gap(450), clip, gap(900), speech[:2400], gap(1200), speech]
    return np.concatenate(parts + [gap(500)])


def run_gate(samples: np.ndarray, params: VadParams, chunk_samples: int | None = None) -> list[SpeechBoundary]:
    """All boundaries of a stream pushed in chunks (whole at once if chunk_samples is None)."""
    gate = VadGate(params, SAMPLE_RATE_HZ)
    boundaries: list[SpeechBoundary] = []
    for chunk in chunks(samples, chunk_samples or len(samples)):
        boundaries.extend(gate.push(chunk))
    return boundaries + gate.flush()


def frame_decisions(samples: np.ndarray, params: VadParams) -> list[bool]:
    """webrtcvad's own voiced/unvoiced decision for every whole frame."""
    vad = webrtcvad.Vad(params.aggressiveness)
    frame_samples = params.frame_ms * SAMPLES_PER_MS
    frames = samples[: len(samples) // frame_samples * frame_samples].reshape(-1, frame_samples)
    return [vad.is_speech(frame.tobytes(), SAMPLE_RATE_HZ) for frame in frames]


def expected_boundaries(decisions: list[bool], params: VadParams) -> list[SpeechBoundary]:
    """The gate's contract stated on runs of frames.

    A segment opens at the first run of min_speech voiced frames (its first frame minus the
    pre-roll, never before the previous end) and closes after the first run of hangover unvoiced
    frames that follows; the end of the stream closes an open segment.
    """
    frame_samples = params.frame_ms * SAMPLES_PER_MS
    min_frames = -(-params.min_speech_ms // params.frame_ms)
    hang_frames = -(-params.hangover_ms // params.frame_ms)
    first_run = lambda start, length, voiced: next(  # noqa: E731
        (i for i in range(start, len(decisions) - length + 1) if all(d == voiced for d in decisions[i : i + length])), None
    )
    result, cursor, last_end = [], 0, 0
    while (onset := first_run(cursor, min_frames, True)) is not None:
        result.append(SpeechBoundary("start", max(onset * frame_samples - params.pre_roll_ms * SAMPLES_PER_MS, last_end, 0)))
        pause = first_run(onset + min_frames, hang_frames, False)
        cursor = len(decisions) if pause is None else pause + hang_frames
        last_end = cursor * frame_samples
        result.append(SpeechBoundary("end", last_end))
    return result


def test_digital_silence_gives_no_segment():
    assert run_gate(np.zeros(3 * SAMPLE_RATE_HZ, dtype=np.int16), VadParams()) == []


def test_quiet_noise_gives_no_segment():
    noise = (np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE_HZ) * 30).astype(np.int16)  # about -60 dBFS
    assert run_gate(noise, VadParams()) == []


def test_segment_follows_the_speech(speech):
    params = VadParams()
    frame_samples = params.frame_ms * SAMPLES_PER_MS
    samples = np.concatenate([SILENCE, speech, SILENCE])
    start, end = run_gate(samples, params)
    true_start, true_end = len(SILENCE), len(SILENCE) + len(speech)
    pre_roll, hangover = params.pre_roll_ms * SAMPLES_PER_MS, params.hangover_ms * SAMPLES_PER_MS
    assert (start.kind, end.kind) == ("start", "end")
    assert true_start - pre_roll - frame_samples <= start.sample_index <= true_start - pre_roll + 2 * frame_samples
    assert true_end + hangover - frame_samples <= end.sample_index <= true_end + hangover + 4 * frame_samples


def test_whole_clip_is_one_segment_covering_its_speech(clip):
    params = VadParams()
    boundaries = run_gate(clip, params)
    assert [b.kind for b in boundaries] == ["start", "end"]
    start, end = (b.sample_index for b in boundaries)
    assert SPEECH_START - 12000 <= start <= SPEECH_START  # the breath before the words (-45 dB) opens it early
    assert SPEECH_STOP + params.hangover_ms * SAMPLES_PER_MS - 960 <= end <= SPEECH_STOP + SAMPLE_RATE_HZ // 2


PARAMS = [  # the state machine on webrtcvad's own decisions (the silero gate: tests/test_noisegate.py)
    VadParams(gate="webrtc"),
    VadParams(min_speech_ms=30, hangover_ms=90, pre_roll_ms=0, gate="webrtc"),
    VadParams(min_speech_ms=300, hangover_ms=600, pre_roll_ms=500, gate="webrtc"),
    VadParams(aggressiveness=3, frame_ms=10, min_speech_ms=200, hangover_ms=150, pre_roll_ms=300, gate="webrtc"),
    VadParams(aggressiveness=0, frame_ms=20, min_speech_ms=100, hangover_ms=1000, pre_roll_ms=1000, gate="webrtc"),
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "a%d-f%d-m%d-h%d-p%d" % tuple(p.__dict__.values())[:5])
def test_min_speech_hangover_and_pre_roll_are_honoured(conversation, params):
    boundaries = run_gate(conversation, params)
    assert boundaries == expected_boundaries(frame_decisions(conversation, params), params)
    assert len(boundaries) >= 2
    kinds = [b.kind for b in boundaries]
    assert kinds == ["start", "end"] * (len(kinds) // 2)
    indices = [b.sample_index for b in boundaries]
    assert indices == sorted(indices)


def test_short_burst_is_ignored_below_min_speech(speech):
    burst = np.concatenate([SILENCE, speech[4800:6400], SILENCE])  # 100 ms of voiced speech
    decisions = frame_decisions(burst, VadParams(frame_ms=10))  # webrtcvad's; the gate under test is webrtc alone
    voiced_ms = 10 * max(len(run) for run in "".join("1" if d else "0" for d in decisions).split("0"))
    assert 60 <= voiced_ms <= 160
    assert run_gate(burst, VadParams(frame_ms=10, min_speech_ms=voiced_ms + 10, gate="webrtc")) == []
    assert len(run_gate(burst, VadParams(frame_ms=10, min_speech_ms=voiced_ms, gate="webrtc"))) == 2


def test_pause_shorter_than_hangover_keeps_one_segment(speech):
    pause = np.zeros(400 * SAMPLES_PER_MS, dtype=np.int16)
    samples = np.concatenate([SILENCE, speech, pause, speech, SILENCE])
    assert len(run_gate(samples, VadParams(hangover_ms=600))) == 2
    assert len(run_gate(samples, VadParams(hangover_ms=150))) == 4


def test_pre_roll_never_reaches_before_the_previous_end(speech):
    pause = np.zeros(500 * SAMPLES_PER_MS, dtype=np.int16)
    samples = np.concatenate([SILENCE, speech, pause, speech, SILENCE])
    first_start, first_end, second_start, _ = run_gate(samples, VadParams(hangover_ms=150, pre_roll_ms=1000))
    assert first_start.sample_index == 0
    assert second_start.sample_index == first_end.sample_index


@pytest.mark.parametrize("chunk_samples", [1, 7, 160, 480, 1024, 16000])
def test_chunk_size_does_not_matter(conversation, chunk_samples):
    params = VadParams()
    assert run_gate(conversation, params, chunk_samples) == run_gate(conversation, params)


def test_indices_are_absolute_after_start_at(speech):
    samples = np.concatenate([SILENCE, speech, SILENCE])
    gate = VadGate(VadParams(), SAMPLE_RATE_HZ)
    offset = 10 * SAMPLE_RATE_HZ
    gate.start_at(offset)
    shifted = gate.push(samples) + gate.flush()
    assert [b.sample_index - offset for b in shifted] == [b.sample_index for b in run_gate(samples, VadParams())]
    assert gate.decided_index == offset + len(samples) // 480 * 480


def test_flush_closes_an_open_segment_at_the_last_decided_sample(speech):
    gate = VadGate(VadParams(), SAMPLE_RATE_HZ)
    boundaries = gate.push(np.concatenate([SILENCE, speech[:16000]]))
    assert [b.kind for b in boundaries] == ["start"] and gate.in_speech
    assert gate.flush() == [SpeechBoundary("end", gate.decided_index)]
    assert not gate.in_speech and gate.flush() == []


def test_bad_frame_length_is_refused():
    with pytest.raises(ValueError, match="frame_ms"):
        VadGate(VadParams(frame_ms=25), SAMPLE_RATE_HZ)


def test_the_gates_defaults_are_the_vad_sections_so_tools_and_daemon_cut_the_same_segments():
    from serd.config import VadConfig
    from serd.pipeline import vad_params

    assert VadParams() == vad_params(VadConfig())
    with pytest.raises(AttributeError):  # shared by the pipelines of a reload: never changed in place
        VadParams().hangover_ms = 1


def test_speech_from_the_first_sample_opens_at_zero_once_min_speech_frames_are_voiced(speech):
    params = VadParams()
    decisions = frame_decisions(speech, params)
    min_frames = -(-params.min_speech_ms // params.frame_ms)
    assert all(decisions[:min_frames])  # voiced from its first frame
    resumed_at = 5 * SAMPLE_RATE_HZ
    for before in ("nothing", "flush", "gap"):  # a fresh gate; one flushed (it goes on as from silence); one after a gap
        gate = VadGate(params, SAMPLE_RATE_HZ)
        if before != "nothing":
            gate.push(speech[: 10 * 480])
            gate.flush()
        if before == "gap":
            gate.start_at(resumed_at)
        pushed = [gate.push(frame) for frame in chunks(speech[: 480 * min_frames], 480)]
        assert pushed[:-1] == [[]] * (min_frames - 1)  # not one frame early
        assert [boundary.kind for boundary in pushed[-1]] == ["start"]
    assert pushed[-1][0].sample_index == resumed_at - params.pre_roll_ms * SAMPLES_PER_MS  # (the front end clamps it to its ring)
    assert run_gate(speech, params)[0] == SpeechBoundary("start", 0)  # the pre-roll stops at the stream's start


def test_earliest_start_is_the_pre_roll_in_silence_and_the_start_a_voiced_run_will_report(clip):
    params = VadParams()
    gate = VadGate(params, SAMPLE_RATE_HZ)
    pre_roll = params.pre_roll_ms * SAMPLES_PER_MS
    assert gate.earliest_start_index == 0
    last_end, checked = 0, 0
    for frame in chunks(clip, 480):
        before = gate.earliest_start_index
        boundaries = gate.push(frame)
        for boundary in boundaries:
            if boundary.kind == "start":  # the run's start was known one frame before it was confirmed
                assert boundary.sample_index == before
                checked += 1
            else:
                last_end = boundary.sample_index
        if gate.in_speech:
            assert gate.earliest_start_index == gate.decided_index
        elif not boundaries and not frame.any():
            assert gate.earliest_start_index == max(gate.decided_index - pre_roll, last_end)
    assert checked == 1 and gate.decided_index - pre_roll > 0


def test_any_positive_min_snr_db_turns_the_level_check_on():
    white = (np.random.default_rng(5).standard_normal(10 * SAMPLE_RATE_HZ) * 1000).astype(np.int16)  # steady, about -30 dBFS
    assert run_gate(white, VadParams())  # webrtcvad alone calls it speech
    assert run_gate(white, VadParams(min_snr_db=1.0)) == []  # the level never rises 1 dB above its own floor


def test_the_webrtc_gate_asks_the_silero_model_nothing_whatever_string_names_it(speech):
    for name in ("webrtc", "".join(["web", "rtc"])):  # a literal, and a name built at run time as the config file gives it
        gate = VadGate(VadParams(gate=name), SAMPLE_RATE_HZ)
        gate.push(speech)
        assert gate.silero_calls == 0


def test_a_long_hangover_closes_exactly_when_it_has_passed(speech):
    params = VadParams(hangover_ms=9000)  # more frames than small ints CPython keeps one object of
    samples = np.concatenate([SILENCE, speech, np.zeros(10 * SAMPLE_RATE_HZ, dtype=np.int16)])
    boundaries = run_gate(samples, params, 480)
    assert boundaries == expected_boundaries(frame_decisions(samples, params), params)
    assert boundaries[-1].sample_index < len(samples) // 480 * 480  # closed by the hangover, not by the end of the stream


@pytest.mark.parametrize("frame_ms", [30, 20])
def test_a_run_confirmed_late_starts_one_lookback_and_the_pre_roll_before_the_confirming_frame(speech, frame_ms):
    from serd.noisegate import LOOKBACK_MS

    lead = 4 * SAMPLE_RATE_HZ
    noise = np.random.default_rng(3).standard_normal(lead + len(speech)) * 3000  # white, about -21 dBFS: webrtcvad calls it voiced
    talker = speech * (6 * 3000 / np.sqrt(np.mean(speech.astype(float) ** 2)))  # 15.6 dB above the noise
    samples = np.clip(noise + np.concatenate([np.zeros(lead), talker]), -32768, 32767).astype(np.int16)
    params = VadParams(min_snr_db=12.0, frame_ms=frame_ms)  # a talker far above the noise confirms the run
    frame_samples = frame_ms * SAMPLES_PER_MS
    gate = VadGate(params, SAMPLE_RATE_HZ)
    voiced_run = 0
    for decision, frame in zip(frame_decisions(samples, params), chunks(samples, frame_samples)):
        voiced_run = voiced_run + 1 if decision else 0
        boundaries = gate.push(frame)
        if boundaries:
            break
    assert [boundary.kind for boundary in boundaries] == ["start"] and gate.decided_index > lead
    assert voiced_run * frame_samples > LOOKBACK_MS * SAMPLES_PER_MS  # the run began in the noise, more than a lookback before
    lookback = LOOKBACK_MS // frame_ms * frame_samples  # whole frames: the confirming one and those before it
    assert boundaries[0].sample_index == gate.decided_index - lookback - params.pre_roll_ms * SAMPLES_PER_MS


def test_in_a_segment_voiced_frames_count_for_one_reconfirm_span_after_the_last_sure_frame(speech):
    from serd.noisegate import RECONFIRM_MS, NoiseFloor, frame_powers

    lead, tail = 4 * SAMPLE_RATE_HZ, 4 * SAMPLE_RATE_HZ
    noise = np.random.default_rng(4).standard_normal(lead + len(speech) + tail) * 3000  # always voiced to webrtcvad
    talker = speech * (6 * 3000 / np.sqrt(np.mean(speech.astype(float) ** 2)))
    samples = np.clip(noise + np.concatenate([np.zeros(lead), talker, np.zeros(tail)]), -32768, 32767).astype(np.int16)
    params = VadParams(min_snr_db=12.0)
    assert all(frame_decisions(samples, params)[lead // 480 :])
    floor = NoiseFloor(params.frame_ms, params.min_snr_db)  # the gate's own level check, frame by frame
    sure = [floor.above(power) for power in frame_powers(samples, 480)]
    last_sure_end = (max(i for i, value in enumerate(sure) if value) + 1) * 480
    (start, end) = run_gate(samples, params)
    assert start.kind == "start" and end.kind == "end" and end.sample_index < len(samples) - 480
    reconfirm, hangover = RECONFIRM_MS // params.frame_ms, -(-params.hangover_ms // params.frame_ms)
    assert end.sample_index == last_sure_end + (reconfirm - 1 + hangover) * 480  # then the noise is no longer speech


def test_a_run_of_exactly_min_speech_frames_closes_after_exactly_the_hangover_and_one_frame_can_be_enough(speech):
    params = VadParams()
    blip = np.concatenate([SILENCE, speech[:480], SILENCE])  # 30 ms of speech: webrtcvad calls 4 frames voiced
    decisions = frame_decisions(blip, params)
    voiced = [index for index, value in enumerate(decisions) if value]
    min_frames = -(-params.min_speech_ms // params.frame_ms)
    assert len(voiced) == min_frames and voiced == list(range(voiced[0], voiced[0] + min_frames))
    hangover = -(-params.hangover_ms // params.frame_ms)
    pre_roll = params.pre_roll_ms * SAMPLES_PER_MS
    opened_at = voiced[-1] + 1  # the segment opens with the last voiced frame; the next one is already unvoiced
    expected = [SpeechBoundary("start", voiced[0] * 480 - pre_roll), SpeechBoundary("end", (opened_at + hangover) * 480)]
    assert run_gate(blip, params) == expected == expected_boundaries(decisions, params)
    gate = VadGate(VadParams(min_speech_ms=params.frame_ms), SAMPLE_RATE_HZ)  # one voiced frame opens a segment
    opening = [index for index, frame in enumerate(chunks(blip, 480)) if gate.push(frame)]
    assert opening[0] == voiced[0]
    assert run_gate(blip, VadParams(min_speech_ms=5 * params.frame_ms)) == []
