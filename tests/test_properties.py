"""Properties that beat examples (Hypothesis, bounded): the ring keyed by absolute index, event wire round trips,
config ranges on both sides, arousal and valence inside their range."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serd import affect
from serd.config import RULES, load_config
from serd.errors import ConfigError
from serd.events import EVENT_TYPES, EmotionChanged, EmotionState, SpeechEnded, Status, from_dict
from serd.ringbuffer import RingBuffer

BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(capacity=st.integers(1, 64), writes=st.lists(st.integers(0, 100), min_size=1, max_size=12), data=st.data())
def test_the_ring_holds_exactly_the_newest_capacity_samples_keyed_by_absolute_index(capacity, writes, data):
    ring, stream = RingBuffer(capacity), np.zeros(0, dtype=np.int16)
    for length in writes:
        chunk = np.arange(len(stream), len(stream) + length, dtype=np.int64).astype(np.int16)
        assert ring.write(chunk) == len(stream) + length
        stream = np.concatenate([stream, chunk])
    assert ring.end_index == len(stream) and ring.start_index == max(0, len(stream) - capacity)
    start = data.draw(st.integers(ring.start_index, ring.end_index))
    stop = data.draw(st.integers(start, ring.end_index))
    assert np.array_equal(ring.read(start, stop), stream[start:stop])
    if ring.start_index > 0:
        with pytest.raises(IndexError):
            ring.read(ring.start_index - 1, ring.end_index)
    with pytest.raises(IndexError):
        ring.read(ring.start_index, ring.end_index + 1)


LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
common = dict(device=st.text(min_size=1, max_size=12), stream_time_s=st.floats(0, 1e6, allow_nan=False),
              wall_time_s=st.floats(0, 2e9, allow_nan=False), segment=st.none() | st.integers(0, 10 ** 6))
probabilities = st.dictionaries(st.sampled_from(LABELS), st.floats(0, 1), max_size=len(LABELS))


@BOUNDED
@given(st.one_of(
    st.builds(EmotionChanged, label=st.sampled_from(LABELS + ("silence", "uncertain")), previous=st.sampled_from(LABELS),
              confidence=st.floats(0, 1), probabilities=probabilities, arousal=st.none() | st.floats(-1, 1),
              valence=st.none() | st.floats(-1, 1), **common),
    st.builds(EmotionState, label=st.sampled_from(LABELS), confidence=st.floats(0, 1), probabilities=probabilities, **common),
    st.builds(SpeechEnded, duration_s=st.floats(0, 1e5), **common),
    st.builds(Status, state=st.sampled_from(("starting", "running", "error", "stopping")), message=st.text(max_size=40),
              audio_s=st.floats(0, 1e7), overruns=st.integers(0, 10 ** 6), lost_samples=st.integers(0, 10 ** 9),
              dropped=st.dictionaries(st.sampled_from(("zmq", "mqtt", "stdout")), st.integers(0, 10 ** 6)), **common),
))
def test_every_event_survives_its_wire_form(event):
    import json

    wire = json.loads(json.dumps(event.to_dict(), allow_nan=False))
    assert from_dict(wire) == event
    assert wire["type"] in EVENT_TYPES and wire["schema"] == 1


NUMERIC_RULES = [(section, key) for section, key, _check, _reason in RULES
                 if isinstance(getattr(getattr(load_config(), section), key), (int, float))
                 and not isinstance(getattr(getattr(load_config(), section), key), bool)]


def _accepted(section: str, key: str, value) -> bool:
    try:
        load_config(overrides={section: {key: value}})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("section, key", NUMERIC_RULES)
def test_each_numeric_range_has_a_lower_and_an_upper_side_checked(section, key):
    """Far below and far above the default, at least one side is refused, and the default is accepted; a rule
    with a finite upper bound refuses something above it (so a dropped upper bound is caught)."""
    default = getattr(getattr(load_config(), section), key)
    kind = type(default)
    assert _accepted(section, key, default)
    low, high = kind(-10 ** 12), kind(10 ** 12)
    assert not (_accepted(section, key, low) and _accepted(section, key, high)), "no bound at all"
    check = next(c for s, k, c, _ in RULES if (s, k) == (section, key))
    if not check(high):
        assert not _accepted(section, key, high)
    if not check(low):
        assert not _accepted(section, key, low)


@BOUNDED
@given(st.dictionaries(st.sampled_from(LABELS + ("calm", "whistling")), st.floats(0, 1), min_size=1))
def test_arousal_and_valence_stay_inside_minus_one_one_and_inside_their_labels_hull(probs):
    point = affect.coordinates(probs)
    placed = [affect.CIRCUMPLEX[label] for label, p in probs.items() if label in affect.CIRCUMPLEX and p > 0]
    if not placed:
        assert point is None
        return
    valence, arousal = point
    assert -1 <= valence <= 1 and -1 <= arousal <= 1
    assert min(v for v, _ in placed) - 1e-4 <= valence <= max(v for v, _ in placed) + 1e-4
    assert min(a for _, a in placed) - 1e-4 <= arousal <= max(a for _, a in placed) + 1e-4
    assert all(math.isfinite(x) for x in point)


def _irregular_chunks(samples: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    """samples cut at the sorted, distinct positions in cuts."""
    edges = [0] + sorted({c % (len(samples) + 1) for c in cuts}) + [len(samples)]
    return [samples[a:b] for a, b in zip(edges, edges[1:])]


SPEECHLIKE = (np.random.default_rng(3).standard_normal(16000 * 2) * 3000).astype(np.int16)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 10 ** 6), max_size=30), kind=st.sampled_from(("logmel", "mfcc", "logmel_pitch")))
def test_streaming_features_equal_offline_for_any_chunking(cuts, kind):
    from serd.features import FeatureExtractor, FeatureParams, StreamingFeatures

    extractor = FeatureExtractor(FeatureParams(kind=kind))
    offline = extractor.compute(SPEECHLIKE)
    stream = StreamingFeatures(extractor)
    streamed = np.concatenate([stream.push(chunk) for chunk in _irregular_chunks(SPEECHLIKE, cuts)])
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 10 ** 6), max_size=30), rates=st.sampled_from(((44100, 16000), (48000, 16000),
                                                                                   (8000, 16000), (22050, 16000))))
def test_the_streaming_resampler_equals_the_offline_one_for_any_chunking(cuts, rates):
    from serd.resample import StreamResampler, resample

    in_rate_hz, out_rate_hz = rates
    audio = SPEECHLIKE[: in_rate_hz // 4]
    offline = resample(audio, in_rate_hz, out_rate_hz)
    resampler = StreamResampler(in_rate_hz, out_rate_hz)
    streamed = np.concatenate([resampler.push(chunk) for chunk in _irregular_chunks(audio, cuts)] + [resampler.flush()])
    assert len(streamed) == len(offline)
    assert np.abs(streamed.astype(np.int32) - offline).max() <= 1


@settings(max_examples=10, deadline=None)
@given(tone_hz=st.floats(8500, 15000))
def test_the_resampler_removes_what_lies_above_the_new_nyquist(tone_hz):
    from serd.resample import resample

    rate_in_hz = 44100
    time_s = np.arange(rate_in_hz) / rate_in_hz
    out = resample(0.5 * np.sin(2 * np.pi * tone_hz * time_s), rate_in_hz, 16000)
    assert np.sqrt(np.mean(out[2000:-2000] ** 2)) < 0.5 / np.sqrt(2) * 10 ** (-40 / 20), "at least 40 dB down"
