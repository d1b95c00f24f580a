"""serd analyze streams: bounded memory on hours of audio, the whole-file answer on real clips, FIFOs, low-rate sources."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from serd.analyze import analyze_samples
from serd.audio import INT16_FULL_SCALE, chunks, load_audio, resample, to_int16
from serd.config import VadConfig
from serd.model import load_model
from tests.support_cli import SERD, serd

SAMPLE_RATE_HZ = 16000
TELEPHONE_RATE_HZ = 8000
PEAK_RSS_LIMIT_KB = 120 * 1024
LONG_WAV_S = 2 * 3600
LONG_FLAC_S = 3600
BLOCK_S = 60
CORPUS_CLIPS = ("ravdess/Actor_01/03-01-05-02-01-01-01.flac", "ravdess/Actor_07/03-01-06-02-01-01-07.flac",
                "savee/DC_f10.flac", "tess/OAF_fear/OAF_life_fear.flac", "emovo/f1/pau-f1-l3.flac",
                "bangla/Actor_28/03-01-02-01-02-02-28.flac")


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def corpus_clips(ravdess_manifest) -> list[Path]:
    """Clips of every shared corpus (read in place)."""
    corpora = ravdess_manifest.parent.parent
    return [corpora / name for name in CORPUS_CLIPS]


def assert_same_analysis(streamed, whole, context):
    """Same segments, verdicts, durations and window probabilities (a whole clip in memory has no source rate)."""
    assert dict(streamed.to_dict(), source_rate_hz=None) == whole.to_dict(), context
    assert streamed.window_spans_s == whole.window_spans_s, context
    if whole.window_probabilities is None:
        assert streamed.window_probabilities is None, context
    else:
        assert np.array_equal(streamed.window_probabilities, whole.window_probabilities), context


def test_streamed_analysis_equals_the_whole_file_on_real_clips(corpus_clips, model):
    from serd.analyze import analysis_ring_samples, analyze_file, analyze_stream

    vad = VadConfig()
    for clip in corpus_clips:
        samples = load_audio(clip)
        whole = analyze_samples(samples, model, vad)
        assert whole.segments, clip
        assert_same_analysis(analyze_file(clip, model, vad), whole, clip)
        for chunk_samples in (160, 480, 1024, 16000):
            streamed = analyze_stream(chunks(samples, chunk_samples), model, vad, ring_samples=analysis_ring_samples(model))
            assert_same_analysis(streamed, whole, (clip, chunk_samples))


def test_a_44k_stereo_wav_gives_the_answer_of_whole_file_resampling(tmp_path, corpus_clips, model):
    """The streaming resampler reads a 44.1 kHz stereo WAV block by block; the answer is that of the whole file resampled at once."""
    from serd.analyze import analyze_file

    wav_path = tmp_path / "stereo44k.wav"
    subprocess.run(["sox", "-V1", str(corpus_clips[0]), "-r", "44100", "-c", "2", "-b", "16", str(wav_path)], check=True)
    with wave.open(str(wav_path)) as reader:
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").reshape(-1, 2) / INT16_FULL_SCALE
    whole = to_int16(resample(frames.mean(axis=1), 44100, SAMPLE_RATE_HZ))
    assert np.array_equal(load_audio(wav_path), whole)
    expected = analyze_samples(whole, model, VadConfig())
    assert_same_analysis(analyze_file(wav_path, model, VadConfig()), expected, wav_path)


def write_long_wav(path: Path, duration_s: int) -> Path:
    """Low-level noise and a steady tone, with a 2 s burst of voiced harmonics every 10 s (the VAD calls them speech)."""
    rng = np.random.default_rng(24)
    time_s = np.arange(SAMPLE_RATE_HZ * BLOCK_S) / SAMPLE_RATE_HZ
    voiced = sum(np.sin(2 * np.pi * 150 * k * time_s) / k for k in range(1, 20))
    syllables = (0.5 - 0.5 * np.cos(2 * np.pi * 4 * time_s)) * ((time_s % 10) < 2)
    block = (300 * np.sin(2 * np.pi * 440 * time_s) + 3000 * voiced * syllables).astype(np.int16)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE_HZ)
        for _ in range(duration_s // BLOCK_S):
            writer.writeframes((block + rng.integers(-200, 200, len(block), dtype=np.int16)).astype("<i2").tobytes())
    return path


# Runs argv[1:] as a grandchild of the test and prints its peak RSS: a child's ru_maxrss also counts the memory of the
# process it was forked from, so a child forked by pytest (hundreds of MB once the whole suite is imported) would report
# pytest's size, not serd's; forked by this small launcher, serd's figure is its own.
PEAK_RSS_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("peak_rss_kb=%d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def analyze_with_peak_rss(args, stdin=None, cwd=None) -> tuple[dict, int]:
    """`serd analyze --json ARGS` as a user runs it: its JSON line and its peak RSS in kB (its decoder's included)."""
    out_path = Path(cwd) / "analysis.json"
    with open(out_path, "wb") as out:
        result = subprocess.run([SERD[0], "-c", PEAK_RSS_LAUNCHER] + SERD[1:] + ["analyze", "--json", *map(str, args)], stdin=stdin,
                                stdout=out, stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), check=False)
    errors = result.stderr.decode()
    assert result.returncode == 0, errors
    peak_kb = int(errors.strip().splitlines()[-1].split("=")[1])
    return json.loads(out_path.read_text()), peak_kb


def test_hours_of_audio_take_bounded_memory(tmp_path):
    """2 h of WAV from a file, and 1 h of FLAC through standard input: each at most 120 MB peak RSS."""
    long_wav = write_long_wav(tmp_path / "long.wav", LONG_WAV_S)
    long_flac = tmp_path / "long.flac"
    subprocess.run(["sox", "-V1", str(long_wav), str(long_flac), "trim", "0", str(LONG_FLAC_S)], check=True)
    analysis, peak_kb = analyze_with_peak_rss([long_wav], cwd=tmp_path)
    assert analysis["duration_s"] == LONG_WAV_S and len(analysis["segments"]) > LONG_WAV_S / 20
    assert peak_kb <= PEAK_RSS_LIMIT_KB, "2 h WAV: peak RSS %d MB" % (peak_kb // 1024)
    with open(long_flac, "rb") as stdin:
        analysis, peak_kb = analyze_with_peak_rss(["-"], stdin=stdin, cwd=tmp_path)
    assert analysis["duration_s"] == LONG_FLAC_S and len(analysis["segments"]) > LONG_FLAC_S / 20
    assert peak_kb <= PEAK_RSS_LIMIT_KB, "1 h FLAC on stdin: peak RSS %d MB" % (peak_kb // 1024)


def without_file(result) -> dict:
    """The JSON line of `serd analyze --json` on one file, without its file name."""
    assert result.returncode == 0, result.stderr.decode()
    analysis = json.loads(result.stdout)
    analysis.pop("file")
    return analysis


def test_dev_null_is_not_a_regular_file():
    result = serd("analyze", "/dev/null")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == "serd: error: /dev/null: not a regular file (character device)\n"


@pytest.mark.parametrize("kind", ["flac", "wav", "mu-law wav"])
def test_a_fifo_is_read_as_a_stream(tmp_path, corpus_clips, kind):
    clip = corpus_clips[0]
    if kind != "flac":
        clip = tmp_path / "clip.wav"
        encoding = ["-e", "mu-law"] if kind == "mu-law wav" else []  # mu-law: serd hands the header it read, and the rest, to sox
        subprocess.run(["sox", "-V1", str(corpus_clips[0]), *encoding, str(clip)], check=True)
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(clip.read_bytes()), daemon=True)
    writer.start()
    from_fifo = serd("analyze", "--json", fifo, timeout_s=60)
    writer.join(10)
    assert without_file(from_fifo) == without_file(serd("analyze", "--json", clip))


def test_an_empty_fifo_is_one_line(tmp_path):
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b""), daemon=True)
    writer.start()
    result = serd("analyze", fifo, timeout_s=60)
    writer.join(10)
    assert result.returncode == 1 and result.stderr.decode() == "serd: error: %s: empty input\n" % fifo


@pytest.fixture(scope="module")
def telephone_clip(tmp_path_factory, ravdess_clip) -> Path:
    """A RAVDESS clip at 8 kHz, as a telephone line carries it."""
    path = tmp_path_factory.mktemp("telephone") / "call.wav"
    subprocess.run(["sox", "-V1", str(ravdess_clip), "-r", str(TELEPHONE_RATE_HZ), str(path)], check=True)
    return path


def test_a_source_below_16k_is_named_in_json_text_and_log(telephone_clip, ravdess_clip):
    analysis = without_file(serd("analyze", "--json", telephone_clip))
    assert analysis["source_rate_hz"] == TELEPHONE_RATE_HZ
    assert len(analysis["warnings"]) == 1 and "recorded at 8000 Hz, below the model's 16000 Hz" in analysis["warnings"][0]
    normal = without_file(serd("analyze", "--json", ravdess_clip))
    assert normal["source_rate_hz"] == SAMPLE_RATE_HZ and normal["warnings"] == []
    text = serd("analyze", telephone_clip)
    lines = text.stdout.decode().splitlines()
    assert lines[1] == "warning: " + analysis["warnings"][0] and lines[2].split()[:2] == ["start_s", "end_s"]
    logged = [line for line in text.stderr.decode().splitlines() if "WARNING" in line]
    assert len(logged) == 1 and logged[0].endswith("%s: %s" % (telephone_clip, analysis["warnings"][0]))
