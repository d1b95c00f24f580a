"""Model windows: count, hops, the end-aligned last window, short-segment padding, chunking."""

from __future__ import annotations

import numpy as np
import pytest

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
