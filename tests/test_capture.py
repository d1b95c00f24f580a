"""Capture sources on real parts: a PulseAudio virtual microphone, real files, real pipes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from serd.audio import load_audio
from serd.capture import FileSource, MicSource, StdinSource, list_devices, make_source
from serd.config import SourceConfig
from serd.errors import AudioError, SourceError
from tests.conftest import PROJECT_DIR
from tests.support_pulse import PulseServer, virtual_mic  # noqa: F401

SAMPLE_RATE_HZ = 16000
CHUNK_MS = 30
CHUNK_SAMPLES = SAMPLE_RATE_HZ * CHUNK_MS // 1000
PLAY_LATENCY_S = 0.8  # the monitor hears what is played about 300 ms later; leave a margin
MIN_CORRELATION = 0.9


def best_correlation(captured: np.ndarray, reference: np.ndarray) -> float:
    """Highest normalised cross-correlation of reference against any stretch of captured."""
    captured = captured.astype(np.float64)
    reference = reference.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(captured) + len(reference))))
    spectrum = np.fft.rfft(captured, size) * np.conj(np.fft.rfft(reference, size))
    products = np.fft.irfft(spectrum, size)[: len(captured) - len(reference) + 1]
    energy = np.concatenate([[0.0], np.cumsum(captured**2)])
    window_energy = energy[len(reference) :] - energy[: -len(reference)]
    norms = np.sqrt(np.maximum(window_energy, 1e-9) * np.sum(reference**2))
    return float(np.max(products / norms))


def capture_while_playing(source: MicSource, server: PulseServer, path: Path) -> np.ndarray:
    """Start the source, play path into the virtual mic, stop; all captured samples."""
    chunks: list[np.ndarray] = []
    source.start(chunks.append)
    try:
        time.sleep(0.2)
        server.play(path)
        time.sleep(PLAY_LATENCY_S)
    finally:
        source.stop()
    assert source.error is None
    assert all(chunk.dtype == np.int16 and chunk.ndim == 1 for chunk in chunks)
    return np.concatenate(chunks)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """Mono 16-bit wav."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate_hz)
        writer.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def clip_samples(ravdess_clip) -> np.ndarray:
    """The RAVDESS clip at 16 kHz."""
    return load_audio(ravdess_clip)


def test_mic_captures_what_is_played(virtual_mic, ravdess_clip, clip_samples):
    source = make_source(SourceConfig(source="mic", device="pulse", chunk_ms=CHUNK_MS))
    assert source.live
    captured = capture_while_playing(source, virtual_mic, ravdess_clip)
    assert source.name == "mic:pulse"
    assert len(captured) > len(clip_samples)
    assert best_correlation(captured, clip_samples) > MIN_CORRELATION
    assert source.overruns == 0
    assert not source.done.is_set()


def test_mic_converts_rate_and_channels_in_the_callback(virtual_mic, clip_samples, tmp_path):
    excerpt = write_wav(tmp_path / "excerpt.wav", clip_samples[SAMPLE_RATE_HZ : 3 * SAMPLE_RATE_HZ])
    source = MicSource("pulse", CHUNK_MS, open_rate_hz=44100, open_channels=2)
    captured = capture_while_playing(source, virtual_mic, excerpt)
    assert (source.rate_hz, source.channels) == (44100, 2)
    assert best_correlation(captured, clip_samples[SAMPLE_RATE_HZ : 3 * SAMPLE_RATE_HZ]) > MIN_CORRELATION


def test_default_device_is_the_pulse_default_source(virtual_mic, clip_samples, tmp_path):
    excerpt = write_wav(tmp_path / "excerpt.wav", clip_samples[SAMPLE_RATE_HZ : 2 * SAMPLE_RATE_HZ])
    source = make_source(SourceConfig(source="mic", device="", chunk_ms=20))
    chunks: list[np.ndarray] = []
    source.start(chunks.append)
    try:
        time.sleep(0.2)
        virtual_mic.play(excerpt)
        time.sleep(PLAY_LATENCY_S)
    finally:
        source.stop()
    source.stop()  # idempotent
    assert {len(chunk) for chunk in chunks} == {SAMPLE_RATE_HZ * 20 // 1000}
    assert best_correlation(np.concatenate(chunks), clip_samples[SAMPLE_RATE_HZ : 2 * SAMPLE_RATE_HZ]) > MIN_CORRELATION


def test_list_devices_shows_pulse_without_alsa_chatter(virtual_mic, capfd):
    devices = list_devices()
    names = [device.name for device in devices]
    assert "pulse" in names
    pulse = devices[names.index("pulse")]
    assert pulse.max_input_channels >= 1
    assert pulse.default_sample_rate_hz >= 8000
    assert all(device.max_input_channels > 0 for device in devices)
    err = capfd.readouterr().err
    assert "ALSA lib" not in err and "jack" not in err.lower()


def test_device_selected_by_index(virtual_mic):
    pulse = next(device for device in list_devices() if device.name == "pulse")
    source = MicSource(str(pulse.index), CHUNK_MS)
    chunks: list[np.ndarray] = []
    source.start(chunks.append)
    time.sleep(0.3)
    source.stop()
    assert source.name == "mic:pulse"
    assert len(chunks) >= 3


@pytest.mark.parametrize("device", ["no-such-microphone", "987"])
def test_unknown_device_lists_the_inputs(virtual_mic, device):
    source = make_source(SourceConfig(source="mic", device=device))
    with pytest.raises(SourceError) as error:
        source.start(lambda chunk: None)
    message = str(error.value)
    assert device in message and "'pulse'" in message and "\n" not in message
    source.stop()


def test_mic_reports_a_dead_sound_server(virtual_mic, monkeypatch):
    server = PulseServer()
    server.start(keep_alive=True)
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", server.env["XDG_RUNTIME_DIR"])
        monkeypatch.setenv("PULSE_SERVER", server.env["PULSE_SERVER"])
        source = MicSource("pulse", CHUNK_MS)
        source.start(lambda chunk: None)
        time.sleep(0.3)
    finally:
        server.stop()
    try:
        assert source.done.wait(3.0)
        assert isinstance(source.error, SourceError)
        assert "stopped" in str(source.error)
    finally:
        source.stop()


def test_consumer_failure_ends_the_mic_stream(virtual_mic):
    def explode(chunk: np.ndarray) -> None:
        raise RuntimeError("consumer is broken")

    source = MicSource("pulse", CHUNK_MS)
    source.start(explode)
    try:
        assert source.done.wait(2.0)
        assert "consumer is broken" in str(source.error)
    finally:
        source.stop()


def collect(source, timeout_s: float = 10.0) -> tuple[list[np.ndarray], list[float]]:
    """Run a finite source to its end; chunks and their arrival times (monotonic s)."""
    chunks: list[np.ndarray] = []
    arrivals: list[float] = []

    def on_audio(chunk: np.ndarray) -> None:
        chunks.append(chunk)
        arrivals.append(time.monotonic())

    source.start(on_audio)
    assert source.done.wait(timeout_s)
    source.stop()
    assert source.error is None
    return chunks, arrivals


def test_paced_file_runs_at_real_time(clip_samples, tmp_path):
    path = write_wav(tmp_path / "one_second.wav", clip_samples[:SAMPLE_RATE_HZ])
    source = make_source(SourceConfig(source="file:%s" % path, realtime=True, chunk_ms=CHUNK_MS))
    assert source.live
    started = time.monotonic()
    chunks, arrivals = collect(source)
    elapsed_s = time.monotonic() - started
    assert 0.95 <= elapsed_s <= 1.25
    assert np.array_equal(np.concatenate(chunks), clip_samples[:SAMPLE_RATE_HZ])
    due_s = np.cumsum([len(chunk) for chunk in chunks]) / SAMPLE_RATE_HZ
    lateness_s = np.array(arrivals) - started - due_s
    assert lateness_s.min() >= -0.005 and lateness_s.max() < 0.1


def test_fast_file_runs_as_fast_as_possible(ravdess_clip, clip_samples):
    source = make_source(SourceConfig(source="file:%s" % ravdess_clip, realtime=False, chunk_ms=CHUNK_MS))
    assert not source.live and source.name == "file:%s" % ravdess_clip
    started = time.monotonic()
    chunks, _ = collect(source)
    assert time.monotonic() - started < 0.5
    assert np.array_equal(np.concatenate(chunks), clip_samples)
    assert {len(chunk) for chunk in chunks[:-1]} == {CHUNK_SAMPLES}
    assert 0 < len(chunks[-1]) <= CHUNK_SAMPLES


def test_file_source_stops_early(clip_samples, tmp_path):
    path = write_wav(tmp_path / "clip.wav", clip_samples)
    source = FileSource(path, realtime=True, chunk_ms=CHUNK_MS)
    chunks: list[np.ndarray] = []
    source.start(chunks.append)
    time.sleep(0.3)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 0.1
    assert 5 <= len(chunks) <= 12
    assert not source.done.is_set()


def test_missing_file_fails_at_start(tmp_path):
    source = make_source(SourceConfig(source="file:%s" % (tmp_path / "absent.wav")))
    with pytest.raises(AudioError, match="absent.wav: no such file"):
        source.start(lambda chunk: None)


def write_in_pieces(fd: int, data: bytes, piece_bytes: int) -> None:
    """Write data to a pipe in odd-sized pieces, then close it."""
    with os.fdopen(fd, "wb", buffering=0) as pipe:
        for offset in range(0, len(data), piece_bytes):
            pipe.write(data[offset : offset + piece_bytes])
            time.sleep(0.001)


def test_stdin_source_reads_a_pipe_in_chunks(clip_samples):
    read_fd, write_fd = os.pipe()
    data = clip_samples[:SAMPLE_RATE_HZ].astype("<i2").tobytes() + b"\x01"  # a stray odd byte at the end
    writer = threading.Thread(target=write_in_pieces, args=(write_fd, data, 1001))
    with os.fdopen(read_fd, "rb") as pipe:
        source = StdinSource(CHUNK_MS, stream=pipe)
        assert not source.live
        writer.start()
        chunks, _ = collect(source)
        writer.join()
    assert np.array_equal(np.concatenate(chunks), clip_samples[:SAMPLE_RATE_HZ])
    assert {len(chunk) for chunk in chunks[:-1]} == {CHUNK_SAMPLES}
    assert len(chunks[-1]) == SAMPLE_RATE_HZ % CHUNK_SAMPLES


def test_stdin_source_stops_on_a_silent_pipe():
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe:
        source = StdinSource(CHUNK_MS, stream=pipe)
        source.start(lambda chunk: None)
        time.sleep(0.1)
        started = time.monotonic()
        source.stop()
        assert time.monotonic() - started < 0.5
        assert not source.done.is_set()
    os.close(write_fd)


STDIN_PROGRAM = """
import sys
import numpy as np
from serd.capture import make_source
from serd.config import SourceConfig
source = make_source(SourceConfig(source="stdin", chunk_ms=20))
chunks = []
source.start(chunks.append)
source.done.wait(10)
source.stop()
audio = np.concatenate(chunks)
print(source.name, source.error, len(chunks), len(audio), int(np.abs(audio.astype(np.int64)).sum()))
"""


def test_stdin_source_reads_the_process_standard_input(clip_samples):
    audio = clip_samples[: 2 * SAMPLE_RATE_HZ]
    result = subprocess.run(
        [sys.executable, "-c", STDIN_PROGRAM], input=audio.astype("<i2").tobytes(), capture_output=True, timeout=30, cwd=PROJECT_DIR
    )
    assert result.returncode == 0, result.stderr.decode()
    expected = "stdin None %d %d %d" % (2 * SAMPLE_RATE_HZ // 320, len(audio), int(np.abs(audio.astype(np.int64)).sum()))
    assert result.stdout.decode().strip() == expected


def test_make_source_kinds(tmp_path):
    assert isinstance(make_source(SourceConfig(source="mic")), MicSource)
    stdin = make_source(SourceConfig(source="stdin"))
    assert isinstance(stdin, StdinSource) and stdin.name == "stdin" and not stdin.live
    paced = make_source(SourceConfig(source="file:%s" % (tmp_path / "x.wav"), realtime=True))
    assert isinstance(paced, FileSource) and paced.live
    with pytest.raises(SourceError):
        make_source(SourceConfig(source="microphone"))
