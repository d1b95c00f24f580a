"""The [vad] gate in noise: steady noise and babble open no segment, corpus speech still does (real files, real serd)."""

import json
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from serd.audio import load_audio
from serd.frontend import SegmentStarted, SpeechFrontend
from serd.features import FeatureParams
from serd.manifest import read_manifests
from serd.noisegate import NoiseFloor, frame_powers, periodicity
from serd.ringbuffer import RingBuffer
from serd.vad import VadGate, VadParams
from serd.windows import WindowParams
from tests.conftest import SHARED_DIR
from tests.support_cli import serd
from tools.model.corpora import default_manifests
from tools.study.noise_gate import at_level, babble, coloured_noise

SAMPLE_RATE_HZ = 16000
NOISE_LEVEL_DBFS = -20.0  # webrtcvad alone calls all of this voiced
CORPUS_CLIPS = {  # one clip of each shared corpus
    "bangla": "Actor_01/03-01-01-01-01-01-01.flac",
    "emovo": "f1/dis-f1-b1.flac",
    "ravdess": "Actor_01/03-01-05-02-01-01-01.flac",
    "savee": "DC_a01.flac",
    "tess": "OAF_angry/OAF_back_angry.flac",
}


def white_noise(seconds: float, seed: int = 6) -> np.ndarray:
    """White noise at NOISE_LEVEL_DBFS RMS, int16."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE_HZ))
    return np.round(noise * 32767 * 10 ** (NOISE_LEVEL_DBFS / 20)).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """A 16 kHz mono 16-bit WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(samples.tobytes())
    return path


def segments(samples: np.ndarray, params: VadParams, chunk_samples: int = 16000) -> list[tuple[int, int]]:
    """The gate's segments on samples pushed in chunks."""
    gate, found, start = VadGate(params, SAMPLE_RATE_HZ), [], 0
    boundaries = [b for i in range(0, len(samples), chunk_samples) for b in gate.push(samples[i : i + chunk_samples])]
    for boundary in boundaries + gate.flush():
        if boundary.kind == "start":
            start = boundary.sample_index
        else:
            found.append((start, boundary.sample_index))
    return found


@pytest.fixture(scope="module")
def corpus_clips() -> dict[str, np.ndarray]:
    """One clip of each corpus, decoded."""
    return {name: load_audio(SHARED_DIR / "corpora" / name / path) for name, path in CORPUS_CLIPS.items()}


SILERO = VadParams(gate="silero")
TALKER = VadParams(gate="silero-talker")
LEVEL = VadParams(min_snr_db=12.0)  # webrtcvad with the level check alone
BABBLE_S = 20.0


@pytest.fixture(scope="module")
def babble_mix() -> np.ndarray:
    """BABBLE_S of 8 corpus voices talking at once (two of each of four corpora), unscaled."""
    mix, speakers = babble(read_manifests(default_manifests()), int(BABBLE_S * SAMPLE_RATE_HZ), np.random.default_rng(24))
    assert len(set(speakers)) == 8
    return mix


def share_passed(samples: np.ndarray, params: VadParams) -> float:
    """The share of samples inside the gate's segments."""
    return sum(end - start for start, end in segments(samples, params)) / len(samples)


def test_a_minute_of_white_noise_through_serd_run_gives_no_speech_and_no_emotion(tmp_path):
    noise = write_wav(tmp_path / "white.wav", white_noise(60.0))
    config = tmp_path / "serd.conf"
    config.write_text("[vad]\ngate = silero\n")
    result = serd("run", "--config", config, "--source", "file:%s" % noise, "--stdout", "--no-zmq", text=True)
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert "status" in kinds
    assert [k for k in kinds if k.startswith(("speech-", "emotion-"))] == []


def test_each_corpus_clip_still_opens_a_segment_and_the_noise_between_them_does_not(corpus_clips):
    noise = white_noise(2.0)
    stream = np.concatenate([part for clip in corpus_clips.values() for part in (noise, clip)] + [noise])
    ring = RingBuffer(len(stream))
    frontend = SpeechFrontend(ring, SILERO, FeatureParams(), WindowParams())
    ring.write(stream)
    starts = [item.sample_index for item in frontend.process() + frontend.flush() if isinstance(item, SegmentStarted)]
    clip_starts = np.cumsum([len(noise) + len(clip) for clip in corpus_clips.values()]) - [len(c) for c in corpus_clips.values()]
    assert len(starts) == len(corpus_clips)
    assert all(clip_start - len(noise) / 2 < start < clip_start + len(clip) for start, clip_start, clip
               in zip(starts, clip_starts, corpus_clips.values()))


def test_the_silero_gate_keeps_most_of_what_webrtcvad_calls_speech_on_clean_clips(corpus_clips):
    for name, clip in corpus_clips.items():
        assert share_kept(clip, SILERO) >= 0.8, name


@pytest.mark.parametrize("chunk_samples", [160, 480, 1024, 16000])
def test_speech_in_noise_is_one_segment_after_the_noise_whatever_the_chunk_size(corpus_clips, chunk_samples):
    lead = white_noise(2.0)
    stream = np.concatenate([lead, corpus_clips["ravdess"], white_noise(2.0, seed=7)])
    found = segments(stream, SILERO, chunk_samples)
    assert found == segments(stream, SILERO, len(stream))
    assert len(found) == 1 and found[0][0] > len(lead) / 2 and found[0][1] < len(stream) - SAMPLE_RATE_HZ


def test_a_bad_gate_is_one_line_naming_the_key(tmp_path):
    config = tmp_path / "serd.conf"
    config.write_text("[vad]\ngate = energy\n")
    result = serd("check-config", config, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["serd: error: [vad] gate: 'energy' must be webrtc, silero or silero-talker"]


def talk_over(crowd: np.ndarray, talk: np.ndarray, lead: int) -> np.ndarray:
    """The crowd with the talk added from sample lead on."""
    stream = crowd.copy()
    stream[lead : lead + len(talk)] = np.clip(stream[lead : lead + len(talk)].astype(np.int32) + talk, -32768, 32767)
    return stream


def one_segment_in_the_talk(stream: np.ndarray, params: VadParams, lead: int, talk_samples: int) -> None:
    """Whatever the chunk size, the gate opens one segment, over the talk (give or take a second)."""
    for chunk_samples in (480, 1024, 16000):
        found = segments(stream, params, chunk_samples)
        assert len(found) == 1, chunk_samples
        assert lead - SAMPLE_RATE_HZ <= found[0][0] < lead + talk_samples <= found[0][1] + SAMPLE_RATE_HZ


def share_kept(clip: np.ndarray, params: VadParams) -> float:
    """The share of the time webrtcvad alone puts in segments that the gate also does."""
    reference = segments(clip, VadParams(gate="webrtc"))
    kept = segments(clip, params)
    overlap = sum(max(0, min(e, re) - max(s, rs)) for s, e in kept for rs, re in reference)
    return overlap / sum(end - start for start, end in reference)


def test_the_gate_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="^vad gate must be one of webrtc, silero, silero-talker, not 'energy'$"):
        VadGate(VadParams(gate="energy"), SAMPLE_RATE_HZ)


@pytest.mark.parametrize("level_dbfs", [-45.0, -40.0])
def test_babble_of_eight_voices_passes_the_talker_gate_as_almost_no_speech(babble_mix, level_dbfs):
    noise = at_level(babble_mix, level_dbfs)
    assert share_passed(noise, SILERO) > 0.1  # the Silero model alone calls some of a crowd speech
    assert share_passed(noise, TALKER) <= 0.05


def test_the_talker_gate_keeps_what_webrtcvad_calls_speech_on_each_corpus_clip(corpus_clips):
    for name, clip in corpus_clips.items():
        assert share_kept(clip, TALKER) >= 0.6, name  # ravdess's keeps 74 %


def test_a_talker_after_babble_opens_one_segment_in_the_talk_whatever_the_chunk_size(corpus_clips, babble_mix):
    talk, lead = corpus_clips["emovo"], 8 * SAMPLE_RATE_HZ
    one_segment_in_the_talk(talk_over(at_level(babble_mix, -50.0), talk, lead), TALKER, lead, len(talk))


def test_a_voiced_chunk_repeats_at_its_pitch_period_and_the_crowd_less(corpus_clips, babble_mix):
    vowel = corpus_clips["savee"].astype(np.float64)
    loudest = int(np.argmax(np.convolve(vowel**2, np.ones(512), "valid")))
    assert periodicity(vowel[loudest : loudest + 512]) > 0.85
    crowd = [periodicity(babble_mix[i : i + 512]) for i in range(0, len(babble_mix) - 512, 8000)]
    assert np.mean(crowd) < 0.7
    assert periodicity(np.random.default_rng(3).standard_normal(512)) < 0.4


def test_the_noise_floor_follows_the_quietest_recent_level_and_a_talker_rises_above_it():
    floor = NoiseFloor(frame_ms=30, min_snr_db=12.0)
    quiet, loud = 10.0 ** (-50 / 10), 10.0 ** (-30 / 10)  # -50 and -30 dBFS
    assert [round(floor.excess_db(quiet), 6) for _ in range(100)] == [0.0] * 100
    rising = [floor.excess_db(loud) for _ in range(16)]  # the level is the mean power of 16 frames (480 ms)
    assert all(a < b for a, b in zip(rising, rising[1:])) and abs(rising[-1] - 20.0) < 1e-9
    assert floor.above(loud)
    held = [floor.excess_db(loud) for _ in range(100)]  # the floor is the lowest level of the last 100 frames (3 s)
    assert abs(held[81] - 20.0) < 1e-9 and 11.0 < held[82] < 12.0  # the last quiet frame (99 frames back) leaves the window
    assert all(a >= b for a, b in zip(held[81:], held[82:])) and abs(held[97]) < 1e-9 and not floor.above(loud)
    floor.reset()
    assert floor.excess_db(loud) == 0.0


def test_digital_silence_counts_as_minus_100_dbfs_and_frame_powers_are_per_whole_frame():
    floor = NoiseFloor(frame_ms=30, min_snr_db=12.0)
    floor.excess_db(0.0)
    assert abs(floor.excess_db(10.0 ** (-40 / 10) * 2) - 60.0) < 0.01  # the mean of 0 and 2e-4: -40 dBFS, 60 above silence
    samples = np.concatenate([np.full(480, 16384, np.int16), np.zeros(480, np.int16), np.full(100, 32767, np.int16)])
    assert np.allclose(frame_powers(samples, 480), [0.25, 0.0])


@pytest.mark.parametrize("level_dbfs", [-45.0, -40.0])
def test_babble_passes_the_silero_gate_with_the_level_check_as_almost_no_speech(babble_mix, level_dbfs):
    crowd = at_level(babble_mix, level_dbfs)
    assert share_passed(crowd, SILERO) > 0.1  # the Silero model alone calls some of a crowd speech
    assert share_passed(crowd, replace(SILERO, min_snr_db=12.0)) <= 0.05


def test_webrtcvad_with_the_level_check_alone_holds_steady_noise_out():
    rng = np.random.default_rng(8)
    for kind in ("white", "pink", "brown"):
        noise = at_level(coloured_noise(kind, 20 * SAMPLE_RATE_HZ, rng), -20.0)
        assert share_passed(noise, VadParams()) > 0.9, kind  # webrtcvad alone calls all of it voice
        assert share_passed(noise, LEVEL) == 0.0, kind


def test_the_level_check_keeps_what_webrtcvad_calls_speech_on_each_corpus_clip_but_less_over_a_loud_background(corpus_clips):
    for name, clip in corpus_clips.items():
        share = share_kept(clip, LEVEL)
        if name == "savee":  # a background about 15 dB below the voice: the voice rises 12 dB above it only at its loudest
            assert 0.5 <= share < 0.9
        else:
            assert share >= 0.9, name  # ravdess's keeps 93 %


def test_a_talker_after_babble_opens_one_segment_in_the_talk_with_the_silero_gate_and_the_level_check(corpus_clips, babble_mix):
    talk, lead = corpus_clips["ravdess"], 8 * SAMPLE_RATE_HZ
    stream = talk_over(at_level(babble_mix, -40.0), talk, lead)
    assert len(segments(stream, SILERO)) > 1  # the Silero model alone also takes parts of the crowd for speech
    one_segment_in_the_talk(stream, replace(SILERO, min_snr_db=12.0), lead, len(talk))


@pytest.mark.parametrize(("vad", "warned"), [({"min_snr_db": 12.0}, False), ({"gate": "silero", "min_snr_db": 12.0}, False),
                                            ({"hangover_ms": 600}, True)])
def test_only_what_shapes_the_windows_is_compared_with_the_models_training(caplog, vad, warned):
    from serd.config import SmoothingConfig, VadConfig
    from serd.model import load_model
    from serd.pipeline import Pipeline

    model = load_model(Path(__file__).resolve().parent.parent / "models" / "serd-emotion.tflite")
    with caplog.at_level("WARNING", logger="serd.pipeline"):
        Pipeline(RingBuffer(30 * SAMPLE_RATE_HZ), model, VadConfig(**vad), SmoothingConfig(), "d")
    assert any("differ from those the model was trained with" in r.getMessage() for r in caplog.records) is warned
