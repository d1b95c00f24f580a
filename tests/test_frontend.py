"""The speech front end on real speech: ring -> VAD -> features -> windows, in any chunk size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from serd.audio import chunks, load_audio
from serd.features import FeatureExtractor, FeatureParams, normalise_window
from serd.frontend import SegmentEnded, SegmentStarted, SpeechFrontend, WindowReady, clip_window_items, clip_windows
from serd.ringbuffer import RingBuffer
from serd.vad import VadGate, VadParams
from serd.windows import WindowParams

SAMPLE_RATE_HZ = 16000
VAD = VadParams()
FEATURES = FeatureParams()
WINDOWS = WindowParams()
SILENCE = np.zeros(SAMPLE_RATE_HZ, dtype=np.int16)
SPEECH_START, SPEECH_STOP = 16320, 48960  # the clip's speech energy


@pytest.fixture(scope="module")
def clip(ravdess_clip) -> np.ndarray:
    """The angry RAVDESS clip at 16 kHz."""
    return load_audio(ravdess_clip)


@pytest.fixture(scope="module")
def conversation(clip) -> np.ndarray:
    """A long utterance, a pause, a short one (shorter than a window), silence."""
    speech = clip[SPEECH_START:SPEECH_STOP]
    return np.concatenate([SILENCE, speech, np.zeros(9600, dtype=np.int16), speech[:12000], SILENCE])


def run_frontend(samples: np.ndarray, chunk_samples: int | None = None, capacity: int | None = None) -> tuple[list, SpeechFrontend]:
    """Write samples to a ring in chunks, processing after each; flush at the end."""
    ring = RingBuffer(capacity or len(samples))
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS)
    items = []
    for chunk in chunks(samples, chunk_samples or len(samples)):
        ring.write(chunk)
        items.extend(frontend.process())
    return items + frontend.flush(), frontend


def vad_segments(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every segment the gate finds on its own."""
    gate = VadGate(VAD, SAMPLE_RATE_HZ)
    indices = [boundary.sample_index for boundary in gate.push(samples) + gate.flush()]
    return list(zip(indices[::2], indices[1::2]))


def expected_windows(segment: np.ndarray) -> list[tuple[int | None, np.ndarray]]:
    """(frames seen when released, or None if released at the segment's end; window), from offline features."""
    frames = FeatureExtractor(FEATURES).compute(segment)
    count = len(frames)
    if count < WINDOWS.frames:
        return [] if count < WINDOWS.min_frames else [(None, normalise_window(np.resize(frames, (WINDOWS.frames, frames.shape[1]))))]
    starts = list(range(0, count - WINDOWS.frames + 1, WINDOWS.hop_frames))
    result = [(start + WINDOWS.frames, normalise_window(frames[start : start + WINDOWS.frames])) for start in starts]
    if count - result[-1][0] >= WINDOWS.hop_frames // 2:
        result.append((None, normalise_window(frames[-WINDOWS.frames :])))
    return result


def test_clip_windows_are_the_windows_of_the_vad_segment(clip):
    ((start, end),) = vad_segments(clip)
    expected = expected_windows(clip[start:end])
    windows = clip_windows(clip, VAD, FEATURES, WINDOWS)
    assert len(windows) == len(expected) >= 2
    for window, (_, reference) in zip(windows, expected):
        assert window.shape == (WINDOWS.frames, FEATURES.n_mels)
        np.testing.assert_allclose(window, reference, atol=1e-5)


def test_clip_window_items_carry_the_audio_span_each_window_was_made_from(clip):
    ((start, end),) = vad_segments(clip)
    items = clip_window_items(clip, VAD, FEATURES, WINDOWS)
    expected = expected_windows(clip[start:end])
    span, hop = WINDOWS.frames * FEATURES.hop_samples, WINDOWS.hop_frames * FEATURES.hop_samples
    assert len(items) == len(expected) >= 2
    for item, (_, reference) in zip(items, expected):
        np.testing.assert_allclose(item.window, reference, atol=1e-5)
        assert start <= item.start_index and item.end_index <= end and item.end_index - item.start_index == span
    assert [b.end_index - a.end_index for a, b in zip(items, items[1:])] == [hop] * (len(items) - 1)
    assert items[0].start_index - start < FEATURES.n_fft  # the first window starts with the segment's first frame
    short = clip[: start + span // 2 + FEATURES.n_fft]  # half a window of speech: one padded window, from the segment's start
    ((short_start, _),) = vad_segments(short)
    (only,) = clip_window_items(short, VAD, FEATURES, WINDOWS)
    assert only.start_index == short_start and only.end_index - only.start_index < span


def test_items_follow_the_segments_in_order(conversation):
    items, frontend = run_frontend(conversation)
    segments = vad_segments(conversation)
    assert len(segments) == 2 and frontend.segment_id == 2 and not frontend.in_speech
    for segment_id, (start, end) in enumerate(segments, start=1):
        mine = [item for item in items if item.segment_id == segment_id]
        assert mine[0] == SegmentStarted(segment_id, start)
        assert mine[-1] == SegmentEnded(segment_id, end)
        windows = mine[1:-1]
        expected = expected_windows(conversation[start:end])
        assert all(isinstance(item, WindowReady) for item in windows) and len(windows) == len(expected)
        for item, (frames_seen, reference) in zip(windows, expected):
            np.testing.assert_allclose(item.window, reference, atol=1e-5)
            frame_end = end if frames_seen is None else start + (frames_seen - 1) * FEATURES.hop_samples + FEATURES.frame_samples
            assert item.sample_index == frame_end


def test_short_segment_gives_one_padded_window(conversation):
    items, _ = run_frontend(conversation)
    (start, end) = vad_segments(conversation)[1]
    windows = [item for item in items if isinstance(item, WindowReady) and item.segment_id == 2]
    frames = FeatureExtractor(FEATURES).compute(conversation[start:end])
    assert WINDOWS.min_frames <= len(frames) < WINDOWS.frames
    assert len(windows) == 1 and windows[0].sample_index == end
    repeated = np.concatenate([frames] * (WINDOWS.frames // len(frames) + 1))[: WINDOWS.frames]
    np.testing.assert_allclose(windows[0].window, normalise_window(repeated), atol=1e-5)


@pytest.mark.parametrize("chunk_samples", [160, 480, 1024, 16000, 777])
def test_chunk_size_does_not_matter(conversation, chunk_samples):
    reference, _ = run_frontend(conversation)
    items, _ = run_frontend(conversation, chunk_samples)
    assert [(type(item), item.segment_id, item.sample_index) for item in items] == [
        (type(item), item.segment_id, item.sample_index) for item in reference
    ]
    for ours, theirs in zip(items, reference):
        if isinstance(ours, WindowReady):
            np.testing.assert_allclose(ours.window, theirs.window, atol=1e-5)


def test_silence_gives_nothing():
    items, frontend = run_frontend(np.zeros(5 * SAMPLE_RATE_HZ, dtype=np.int16), 480)
    assert items == [] and frontend.segment_id == 0


def test_flush_closes_speech_cut_off_by_the_end_of_the_stream(clip):
    cut = clip[: SPEECH_START + SAMPLE_RATE_HZ]
    ring = RingBuffer(len(cut))
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS)
    ring.write(cut)
    items = frontend.process()
    assert isinstance(items[0], SegmentStarted) and frontend.in_speech
    closing = frontend.flush()
    assert isinstance(closing[-1], SegmentEnded)
    assert closing[-1].sample_index == len(cut) // 480 * 480
    assert not frontend.in_speech


def test_lapped_reader_counts_lost_samples_and_continues(conversation):
    capacity = 2 * SAMPLE_RATE_HZ
    ring = RingBuffer(capacity)
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS)
    ring.write(conversation[: 5 * SAMPLE_RATE_HZ])  # the reader falls 3 s behind
    items = frontend.process()
    assert frontend.lost_samples == 3 * SAMPLE_RATE_HZ
    for chunk in chunks(conversation[5 * SAMPLE_RATE_HZ :], 480):
        ring.write(chunk)
        items.extend(frontend.process())
    items.extend(frontend.flush())
    kinds = [type(item) for item in items if not isinstance(item, WindowReady)]
    assert kinds and kinds == [SegmentStarted, SegmentEnded] * (len(kinds) // 2)
    assert all(item.sample_index >= 3 * SAMPLE_RATE_HZ for item in items)


def test_a_lapped_reader_ends_open_speech_at_the_gap_and_counts_the_loss(ravdess_clip):
    from serd.audio import load_audio
    from serd.features import FeatureParams
    from serd.frontend import SegmentEnded, SegmentStarted, SpeechFrontend
    from serd.ringbuffer import RingBuffer
    from serd.vad import VadParams
    from serd.windows import WindowParams

    samples = load_audio(ravdess_clip)
    ring = RingBuffer(32000)
    frontend = SpeechFrontend(ring, VadParams(gate="webrtc"), FeatureParams(), WindowParams())  # opens at webrtcvad's onset
    ring.write(samples[:24000])  # speech starts ~0.4 s in; the ring holds 2 s
    first = frontend.process()
    assert any(isinstance(item, SegmentStarted) for item in first) and frontend.in_speech
    ring.write(samples[24000:60000])  # 2.25 s more: the reader is lapped by 0.25 s
    items = frontend.process()
    assert isinstance(items[0], SegmentEnded) and items[0].sample_index == 24000
    assert frontend.lost_samples == (60000 - 32000) - 24000
    started = [item for item in items if isinstance(item, SegmentStarted)]
    assert all(item.sample_index >= 28000 for item in started)


def test_features_computed_in_batches_survive_a_lap_of_their_lag(clip):
    ring = RingBuffer(2 * SAMPLE_RATE_HZ)
    frontend = SpeechFrontend(ring, replace(VAD, gate="webrtc"), FEATURES, WINDOWS)  # open at webrtcvad's onset
    ring.write(clip[:24000])
    assert any(isinstance(item, SegmentStarted) for item in frontend.process())
    ring.write(clip[24000:24480])
    frontend.process()
    feature_cursor = frontend.released_index  # features wait for a window or a hop of audio
    assert feature_cursor < frontend.consumed_index == 24480
    end = feature_cursor + 200 + 2 * SAMPLE_RATE_HZ
    ring.write(clip[24480:end])  # the oldest held sample passes the features by 200, not the VAD
    items = frontend.process()
    assert frontend.lost_samples == 200
    for chunk in chunks(clip[end:], 480):
        ring.write(chunk)
        items += frontend.process()
    items += frontend.flush()
    ended = [item for item in items if isinstance(item, SegmentEnded)]
    assert len(ended) == 1 and ended[0].sample_index > 24480 + SAMPLE_RATE_HZ  # not at the lap: the segment went on
    windows = [item for item in items if isinstance(item, WindowReady)]
    assert windows and all(feature_cursor + 200 < item.sample_index <= ended[0].sample_index for item in windows)


def test_kept_audio_is_exactly_the_span_of_each_window(conversation):
    ring = RingBuffer(len(conversation))
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS, keep_audio=True)
    items = []
    for chunk in chunks(conversation, 480):
        ring.write(chunk)
        items += frontend.process()
        assert frontend.released_index <= ring.end_index
    items += frontend.flush()
    span = WINDOWS.frames * FEATURES.hop_samples
    start = None
    windows = 0
    for item in items:
        if isinstance(item, SegmentStarted):
            start = item.sample_index
        elif isinstance(item, WindowReady):
            first = max(start, item.sample_index - span)
            assert np.array_equal(item.audio, conversation[first:item.sample_index])
            windows += 1
    assert windows >= 2
    plain = [item for item in run_frontend(conversation, 480)[0] if isinstance(item, WindowReady)]
    assert all(item.audio is None for item in plain) and len(plain) == windows


@pytest.mark.parametrize("frame_ms", [30, 10])
def test_settled_index_trails_the_vad_by_less_than_a_model_hop_in_speech_and_stops_at_a_candidate_start_outside(conversation, frame_ms):
    vad = replace(VAD, frame_ms=frame_ms)
    gate = VadGate(vad, SAMPLE_RATE_HZ)
    ring = RingBuffer(len(conversation))
    frontend = SpeechFrontend(ring, vad, FEATURES, WINDOWS, gate=gate)
    hop = WINDOWS.hop_frames * FEATURES.hop_samples
    assert frontend.settled_index == 0
    below_the_cursor = 0
    for chunk in chunks(conversation, 160):
        ring.write(chunk)
        frontend.process()
        if frontend.in_speech:  # features wait at most one model hop behind the VAD's decisions
            assert gate.decided_index - hop < frontend.settled_index <= gate.decided_index
        else:  # a candidate's start (its voiced run and pre-roll) may still be reported
            assert frontend.settled_index == min(gate.earliest_start_index, frontend.consumed_index)
            below_the_cursor += frontend.settled_index < frontend.consumed_index
    assert below_the_cursor > 0
    frontend.flush()  # the stream ended: everything consumed is decided
    assert frontend.settled_index == frontend.consumed_index == len(conversation)
    assert frontend.process() == [] and frontend.settled_index == len(conversation)  # nothing new: still ended


def test_each_window_is_released_by_the_process_call_that_decides_its_last_frame(clip):
    speech = clip[SPEECH_START:SPEECH_STOP]
    samples = np.concatenate([SILENCE, speech, speech, SILENCE])  # a 4 s utterance: windows past the first few
    gate = VadGate(VAD, SAMPLE_RATE_HZ)
    ring = RingBuffer(len(samples))
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS, gate=gate)
    released, decided = [], []  # (call, window end); decided index after each call
    for call, chunk in enumerate(chunks(samples, 160)):
        ring.write(chunk)
        released += [(call, item.sample_index) for item in frontend.process() if isinstance(item, WindowReady)]
        decided.append(gate.decided_index)
    assert len(released) >= 5
    for call, end_index in released:
        assert call == next(index for index, value in enumerate(decided) if value >= end_index)


def test_kept_audio_is_the_window_span_wherever_the_stream_is_and_released_audio_is_what_no_window_needs(clip):
    speech = clip[SPEECH_START:SPEECH_STOP]
    samples = np.concatenate([np.zeros(3 * SAMPLE_RATE_HZ, dtype=np.int16), speech, speech, SILENCE])  # windows end past twice the span
    ring = RingBuffer(len(samples))
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS, keep_audio=True)
    span = WINDOWS.frames * FEATURES.hop_samples
    items, start, released_past_the_start = [], 0, 0
    for chunk in chunks(samples, 480):
        ring.write(chunk)
        items += frontend.process()
        start = next((item.sample_index for item in reversed(items) if isinstance(item, SegmentStarted)), start)
        if frontend.in_speech:  # a window still to come needs the span before the features' cursor, within the segment
            assert frontend.released_index == max(start, frontend.settled_index - span)
            released_past_the_start += frontend.released_index > start
        else:
            assert frontend.released_index == frontend.consumed_index
    assert released_past_the_start > 0
    items += frontend.flush()
    full = [item for item in items if isinstance(item, WindowReady) and len(item.audio) == span]
    assert len(full) >= 3 and all(item.sample_index > 2 * span for item in full)
    for item in full:
        assert np.array_equal(item.audio, samples[item.sample_index - span : item.sample_index])


def test_a_writer_lapping_exactly_to_the_vad_cursor_costs_only_the_features_lag(clip):
    speech = clip[SPEECH_START:]  # speech from the stream's first sample: the features' lag is most of what was heard
    capacity = 9600
    ring = RingBuffer(capacity)
    frontend = SpeechFrontend(ring, replace(VAD, gate="webrtc"), FEATURES, WINDOWS)  # opens at webrtcvad's onset
    ring.write(speech[:4800])
    assert any(isinstance(item, SegmentStarted) for item in frontend.process())
    lag_start = frontend.settled_index  # the features wait for a window or a hop of audio
    assert lag_start < frontend.consumed_index // 2
    ring.write(speech[4800 : 4800 + capacity])  # the oldest held sample is now exactly the VAD's next one
    assert ring.start_index == frontend.consumed_index == 4800
    items = frontend.process()
    assert frontend.lost_samples == 4800 - lag_start
    assert not any(isinstance(item, SegmentStarted) for item in items)  # the segment went on: not ended at the lap
    assert frontend.in_speech and all(item.sample_index > 4800 for item in items if isinstance(item, WindowReady))


def test_a_writer_reaching_exactly_the_features_cursor_loses_nothing_and_changes_no_window(clip):
    speech = clip[SPEECH_START:]
    capacity = 9600
    reference, _ = run_frontend(speech, 480)  # a ring that holds everything
    ring = RingBuffer(capacity)
    frontend = SpeechFrontend(ring, VAD, FEATURES, WINDOWS)
    items = []
    for chunk in chunks(speech[:10080], 4800):  # features computed to 9600 (a batch), the VAD 480 further
        ring.write(chunk)
        items += frontend.process()
    lag = frontend.consumed_index - frontend.settled_index
    assert 0 < lag < capacity and frontend.settled_index > 0
    end = 10080 + capacity - lag  # the oldest held sample becomes exactly the next one the features read
    ring.write(speech[10080:end])
    assert ring.start_index == frontend.settled_index
    items += frontend.process()
    assert frontend.lost_samples == 0
    for chunk in chunks(speech[end:], 480):
        ring.write(chunk)
        items += frontend.process()
    items += frontend.flush()
    assert [(type(item), item.sample_index) for item in items] == [(type(item), item.sample_index) for item in reference]
    for ours, theirs in zip(items, reference):
        if isinstance(ours, WindowReady):
            np.testing.assert_allclose(ours.window, theirs.window, atol=1e-5)


def test_clip_windows_unnormalised_are_the_raw_feature_frames_and_an_empty_clip_has_none(clip):
    ((start, end),) = vad_segments(clip)
    frames = FeatureExtractor(FEATURES).compute(clip[start:end])
    raw = clip_windows(clip, VAD, FEATURES, WINDOWS, normalise=False)
    assert len(raw) >= 2
    np.testing.assert_allclose(raw[0], frames[: WINDOWS.frames], atol=1e-5)  # training normalises them later
    assert clip_windows(np.zeros(0, dtype=np.int16), VAD, FEATURES, WINDOWS) == []
