"""The int16 ring keyed by absolute sample index."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serd.ringbuffer import RingBuffer

CAPACITY = 1000


def ramp(start: int, stop: int) -> np.ndarray:
    """Samples whose values encode their absolute index (mod 2**15), so reads can be checked."""
    return (np.arange(start, stop) % 32768).astype(np.int16)


def test_indices_start_at_zero_and_follow_writes():
    ring = RingBuffer(CAPACITY)
    assert (ring.start_index, ring.end_index) == (0, 0)
    assert ring.write(ramp(0, 600)) == 600
    assert (ring.start_index, ring.end_index) == (0, 600)
    ring.write(ramp(600, 1300))
    assert (ring.start_index, ring.end_index) == (300, 1300)


def test_wrap_around_keeps_the_newest_samples_in_order():
    ring = RingBuffer(CAPACITY)
    for start in range(0, 3700, 370):
        ring.write(ramp(start, start + 370))
    assert ring.end_index == 3700 and ring.start_index == 2700
    assert np.array_equal(ring.read(2700, 3700), ramp(2700, 3700))
    assert np.array_equal(ring.read(2990, 3010), ramp(2990, 3010))  # spans the physical end of the array
    assert np.array_equal(ring.read(3699, 3700), ramp(3699, 3700))


def test_read_of_overwritten_or_future_samples_raises():
    ring = RingBuffer(CAPACITY)
    ring.write(ramp(0, 2500))
    with pytest.raises(IndexError, match="not held"):
        ring.read(1499, 1600)
    with pytest.raises(IndexError, match="ring holds 1500..2500"):
        ring.read(2400, 2501)
    with pytest.raises(IndexError):
        ring.read(2000, 1999)
    assert len(ring.read(1500, 1500)) == 0


def test_write_larger_than_capacity_advances_by_all_samples():
    ring = RingBuffer(CAPACITY)
    ring.write(ramp(0, 250))
    ring.write(ramp(250, 2750))
    assert (ring.start_index, ring.end_index) == (1750, 2750)
    assert np.array_equal(ring.read(1750, 2750), ramp(1750, 2750))
    ring.write(ramp(2750, 2900))
    assert np.array_equal(ring.read(1900, 2900), ramp(1900, 2900))


def test_exact_capacity_write_at_an_offset():
    ring = RingBuffer(CAPACITY)
    ring.write(ramp(0, 123))
    ring.write(ramp(123, 1123))
    assert np.array_equal(ring.read(123, 1123), ramp(123, 1123))


def test_read_returns_a_copy():
    ring = RingBuffer(CAPACITY)
    ring.write(ramp(0, 100))
    copy = ring.read(0, 100)
    copy[:] = 0
    assert np.array_equal(ring.read(0, 100), ramp(0, 100))


def test_wait_for_wakes_on_write_and_times_out():
    ring = RingBuffer(CAPACITY)
    started = time.monotonic()
    assert not ring.wait_for(0, timeout_s=0.05)
    assert 0.04 <= time.monotonic() - started < 0.5
    writer = threading.Timer(0.05, ring.write, args=(ramp(0, 10),))
    writer.start()
    started = time.monotonic()
    assert ring.wait_for(0, timeout_s=5.0)
    assert time.monotonic() - started < 1.0
    writer.join()
    assert ring.wait_for(5, timeout_s=0.0)  # already there: no wait


def test_capacity_must_be_positive():
    for capacity in (0, -5):
        with pytest.raises(ValueError, match="ring capacity must be positive"):
            RingBuffer(capacity)
    assert RingBuffer(1).write(ramp(0, 3)) == 3, "one sample is a ring"


def test_waiting_for_an_index_beyond_the_newest_sample_is_no_data():
    ring = RingBuffer(CAPACITY)
    ring.write(ramp(0, 10))
    assert not ring.wait_for(20, timeout_s=0.02), "only data past index 20 would answer"
    assert not ring.wait_for(10, timeout_s=0.02) and ring.wait_for(9, timeout_s=0.0)


@pytest.mark.parametrize("capacity, first_write", [(10, 4), (10, 7), (12, 5), (7, 3)])
def test_a_write_that_wraps_at_any_offset_keeps_every_sample(capacity, first_write):
    ring = RingBuffer(capacity)
    ring.write(ramp(0, first_write))
    ring.write(ramp(first_write, first_write + capacity))  # wraps around the end of the ring
    assert np.array_equal(ring.read(first_write, first_write + capacity), ramp(first_write, first_write + capacity))
