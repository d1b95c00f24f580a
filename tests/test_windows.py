"""Model windows: count, hops, the end-aligned last window, short-segment padding, chunking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serd.features import normalise_window
from serd.windows import WindowAssembler, WindowParams

N_FEATURES = 40
PARAMS = WindowParams()  # 200 frames, hop 50, at least 50


def segment_frames(count: int, seed: int = 0) -> np.ndarray:
    """Distinct random frames, float32 like the feature extractor's."""
    return np.random.default_rng(seed).standard_normal((count, N_FEATURES)).astype(np.float32)


def all_windows(frames: np.ndarray, params: WindowParams = PARAMS, chunk_frames: int | None = None) -> list[np.ndarray]:
    """Windows of one segment pushed in chunks of frames, plus what finish() releases."""
    assembler = WindowAssembler(params, N_FEATURES)
    step = chunk_frames or max(len(frames), 1)
    windows = [window for start in range(0, len(frames), step) for window in assembler.push(frames[start : start + step])]
    return windows + assembler.finish()


def expected_starts(count: int, params: WindowParams = PARAMS) -> list[int]:
    """First frame of every window of a segment of count frames (count >= params.frames)."""
    starts = list(range(0, count - params.frames + 1, params.hop_frames))
    if (count - params.frames) - starts[-1] >= params.hop_frames // 2:
        starts.append(count - params.frames)  # last window aligned to the segment's end
    return starts


@pytest.mark.parametrize("count", [200, 224, 225, 249, 250, 310, 349, 400, 1000])
def test_long_segment_windows_and_hops(count):
    frames = segment_frames(count)
    windows = all_windows(frames)
    starts = expected_starts(count)
    assert len(windows) == len(starts)
    for window, start in zip(windows, starts):
        assert window.shape == (PARAMS.frames, N_FEATURES) and window.dtype == np.float32
        np.testing.assert_allclose(window, normalise_window(frames[start : start + PARAMS.frames]), atol=1e-6)


@pytest.mark.parametrize("chunk_frames", [1, 7, 50, 1000])
def test_push_counted_gives_the_frame_each_window_ends_at(chunk_frames):
    frames = segment_frames(1000)
    assembler = WindowAssembler(PARAMS, N_FEATURES)
    counted = [item for start in range(0, len(frames), chunk_frames) for item in assembler.push_counted(frames[start : start + chunk_frames])]
    starts = [start for start in expected_starts(1000) if start % PARAMS.hop_frames == 0]  # the ones push releases; finish() gives the rest
    assert [seen for seen, _ in counted] == [start + PARAMS.frames for start in starts]
    for seen, window in counted:
        np.testing.assert_allclose(window, normalise_window(frames[seen - PARAMS.frames : seen]), atol=1e-6)


def test_window_count_examples():
    assert [len(all_windows(segment_frames(n))) for n in (200, 224, 225, 300, 349)] == [1, 1, 2, 3, 4]


@pytest.mark.parametrize("count", [50, 51, 120, 199])
def test_short_segment_is_padded_by_repeating_its_frames(count):
    frames = segment_frames(count)
    assembler = WindowAssembler(PARAMS, N_FEATURES)
    assert assembler.push(frames) == []
    (window,) = assembler.finish()
    repeated = np.concatenate([frames] * (PARAMS.frames // count + 1))[: PARAMS.frames]
    np.testing.assert_allclose(window, normalise_window(repeated), atol=1e-6)


@pytest.mark.parametrize("count", [0, 1, 49])
def test_too_short_segment_gives_nothing(count):
    assert all_windows(segment_frames(count)) == []


@pytest.mark.parametrize("chunk_frames", [1, 7, 50, 64, 333])
def test_chunking_does_not_change_the_windows(chunk_frames):
    frames = segment_frames(537)
    reference = all_windows(frames)
    chunked = all_windows(frames, chunk_frames=chunk_frames)
    assert len(chunked) == len(reference) == 8
    for ours, theirs in zip(chunked, reference):
        np.testing.assert_array_equal(ours, theirs)


def test_reset_starts_a_new_segment():
    assembler = WindowAssembler(PARAMS, N_FEATURES)
    assembler.push(segment_frames(180, seed=1))
    assert assembler.total_frames == 180
    assembler.reset()
    assert assembler.total_frames == 0
    second = segment_frames(200, seed=2)
    (window,) = assembler.push(second)
    np.testing.assert_allclose(window, normalise_window(second), atol=1e-6)
    assert assembler.finish() == []


def test_other_geometry():
    params = WindowParams(frames=100, hop_frames=25, min_frames=30)
    frames = segment_frames(190)
    windows = all_windows(frames, params)
    starts = expected_starts(190, params)
    assert starts == [0, 25, 50, 75, 90]
    for window, start in zip(windows, starts, strict=True):
        np.testing.assert_allclose(window, normalise_window(frames[start : start + 100]), atol=1e-6)


def test_one_frame_windows_hold_one_frame():
    params = WindowParams(frames=1, hop_frames=2, min_frames=1)
    windows = all_windows(segment_frames(5), params)
    assert len(windows) == 3 and all(window.shape == (1, N_FEATURES) for window in windows)


def test_params_round_trip():
    assert WindowParams.from_dict(PARAMS.to_dict()) == PARAMS


def offline_windows(frames: np.ndarray, params: WindowParams) -> list[tuple[int, np.ndarray]]:
    """The documented rule on a whole segment: (frames seen when released, raw window) for a window ending every hop
    from the first full window on, then the end-aligned last one (half a hop after the previous), or the repeated
    short segment."""
    count = len(frames)
    released = [(end, frames[end - params.frames : end]) for end in range(params.frames, count + 1, params.hop_frames)]
    if not released:
        if count >= params.min_frames:
            released.append((count, np.resize(frames, (params.frames, frames.shape[1]))))
    elif count - released[-1][0] >= max(1, params.hop_frames // 2):
        released.append((count, frames[count - params.frames :]))
    return released


def next_window_end(total: int, params: WindowParams) -> int:
    """The frame count at which the next window of a segment is released (without the end-of-segment one)."""
    if total < params.frames:
        return params.frames
    return params.frames + params.hop_frames * ((total - params.frames) // params.hop_frames + 1)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 24), hop=st.integers(1, 30), data=st.data())
def test_windows_follow_the_offline_rule_for_any_geometry_and_chunking(size, hop, data):
    params = WindowParams(frames=size, hop_frames=hop, min_frames=data.draw(st.integers(1, size)))
    frames = segment_frames(data.draw(st.integers(0, 4 * size + 2 * hop)), seed=size * 31 + hop)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(frames)), max_size=12)))
    assembler = WindowAssembler(params, N_FEATURES, normalise=data.draw(st.booleans()))
    online = []
    for start, stop in zip([0] + cuts, cuts + [len(frames)]):
        due = next_window_end(assembler.total_frames, params)
        assert assembler.frames_to_next_window == due - assembler.total_frames, "frames still to push before the next window"
        online += assembler.push_counted(frames[start:stop])
        assert assembler.total_frames == stop
    online += [(len(frames), window) for window in assembler.finish()]
    expected = offline_windows(frames, params)
    assert [end for end, _ in online] == [end for end, _ in expected]
    for (_, got), (_, want) in zip(online, expected):
        np.testing.assert_array_equal(got, normalise_window(want) if assembler.normalise else want)


def test_a_geometry_beyond_small_integers_still_hops():
    """600-frame windows every 300 frames (6 s every 3 s): counts past 256 compare by value."""
    params = WindowParams(frames=600, hop_frames=300, min_frames=300)
    ends = [end for end, _ in WindowAssembler(params, N_FEATURES).push_counted(segment_frames(1500))]
    assert ends == [600, 900, 1200, 1500]


def test_the_default_geometry_is_two_second_windows_every_half_second():
    assert (PARAMS.frames, PARAMS.hop_frames, PARAMS.min_frames) == (200, 50, 50)


def test_window_params_cannot_be_changed_once_made():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PARAMS.hop_frames = 10


def test_a_hop_of_two_frames_closes_with_a_window_one_frame_after_the_last():
    """Half a hop of 2 frames is 1 frame: a segment ending 1 frame after a window gets an end-aligned last one."""
    params = WindowParams(frames=4, hop_frames=2, min_frames=1)
    assembler = WindowAssembler(params, N_FEATURES, normalise=False)
    frames = segment_frames(7)
    ends = [end for end, _ in assembler.push_counted(frames)]
    (last,) = assembler.finish()
    assert ends == [4, 6]
    np.testing.assert_array_equal(last, frames[3:7])
