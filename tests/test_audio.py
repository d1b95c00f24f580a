"""Decoding files to 16 kHz mono int16, resampling offline and streaming, and every bad input."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from serd.audio import StreamResampler, chunks, load_audio, resample, sniff_format, stream_audio
from serd.errors import AudioError

SAMPLE_RATE_HZ = 16000
TONES_HZ = (220.0, 1000.0, 3100.0, 6500.0)
TONE_AMPLITUDE = 0.2
DURATION_S = 1.0
LSB = 1.0 / 32768


def tones(rate_hz: int, duration_s: float = DURATION_S, tones_hz=TONES_HZ) -> np.ndarray:
    """A sum of sines in [-1, 1), content below 7 kHz."""
    time_s = np.arange(int(round(rate_hz * duration_s))) / rate_hz
    return sum(TONE_AMPLITUDE * np.sin(2 * np.pi * freq_hz * time_s + freq_hz) for freq_hz in tones_hz)


def write_wav(path: Path, audio: np.ndarray, rate_hz: int, width_bytes: int) -> Path:
    """Plain PCM wav with the stdlib writer; audio is (frames,) or (frames, channels) floats."""
    frames = audio if audio.ndim == 2 else audio[:, None]
    full_scale = 1 << (8 * width_bytes - 1)
    values = np.clip(np.round(frames * full_scale), -full_scale, full_scale - 1).astype(np.int64)
    if width_bytes == 1:
        raw = (values + 128).astype(np.uint8).tobytes()
    else:
        raw = values.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width_bytes].tobytes()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(frames.shape[1])
        writer.setsampwidth(width_bytes)
        writer.setframerate(rate_hz)
        writer.writeframes(raw)
    return path


def sox(*args: str) -> None:
    """Run sox quietly; fail the test on error."""
    subprocess.run(["sox", "-V1", *args], check=True, capture_output=True)


def as_float(samples: np.ndarray) -> np.ndarray:
    """int16 -> float in [-1, 1)."""
    return samples.astype(np.float64) * LSB


def aligned_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Best normalised correlation of the overlap over lags in [-max_lag, max_lag] (decoder delay), and that lag."""
    a, b = decoded.astype(np.float64), reference.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    products = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    start_a, start_b = np.maximum(lags, 0), np.maximum(-lags, 0)
    count = np.minimum(len(a) - start_a, len(b) - start_b)
    energy_a, energy_b = np.concatenate([[0.0], np.cumsum(a * a)]), np.concatenate([[0.0], np.cumsum(b * b)])
    norms = np.sqrt((energy_a[start_a + count] - energy_a[start_a]) * (energy_b[start_b + count] - energy_b[start_b]))
    correlations = products[lags % size] / norms
    best = int(np.argmax(correlations))
    return float(correlations[best]), int(lags[best])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The tones at 16 kHz, as the ideal decoder would return them."""
    return tones(SAMPLE_RATE_HZ)


@pytest.mark.parametrize("width_bytes, tolerance_lsb", [(1, 130), (2, 0), (3, 1), (4, 1)])
def test_wav_sample_widths(tmp_path, reference, width_bytes, tolerance_lsb):
    path = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, width_bytes)
    samples = load_audio(path)
    assert samples.dtype == np.int16 and samples.shape == (SAMPLE_RATE_HZ,)
    expected = np.round(reference * 32768)
    assert np.abs(samples - expected).max() <= tolerance_lsb


def test_wav_stereo_is_mixed_to_mono(tmp_path):
    left, right = tones(SAMPLE_RATE_HZ, tones_hz=(300.0,)), tones(SAMPLE_RATE_HZ, tones_hz=(2000.0,))
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SAMPLE_RATE_HZ, 2)
    samples = load_audio(path)
    expected = (np.round(left * 32768) + np.round(right * 32768)) / 2
    assert np.abs(samples - expected).max() <= 1


def test_wav_44k_is_resampled(tmp_path):
    path = write_wav(tmp_path / "tones44k.wav", tones(44100), 44100, 2)
    samples = load_audio(path)
    assert len(samples) == SAMPLE_RATE_HZ
    error = as_float(samples) - tones(SAMPLE_RATE_HZ)
    assert np.abs(error[200:-200]).max() < 40 * LSB  # a 6.5 kHz tone loses < 0.05 dB


def test_native_resampling_agrees_with_sox(tmp_path):
    spectrum = np.fft.rfft(np.random.default_rng(7).standard_normal(48000) * 0.1)
    spectrum[np.fft.rfftfreq(48000, 1 / 48000) > 6500] = 0  # band-limited: both must pass it unchanged
    path = write_wav(tmp_path / "noise48k.wav", np.fft.irfft(spectrum, 48000), 48000, 2)
    sox(str(path), "-r", "16000", "-b", "16", str(tmp_path / "sox16k.wav"))
    ours = as_float(load_audio(path))
    theirs = as_float(load_audio(tmp_path / "sox16k.wav"))
    assert len(ours) == len(theirs) == SAMPLE_RATE_HZ
    assert np.sqrt(np.mean((ours - theirs)[500:-500] ** 2)) < 0.01 * np.sqrt(np.mean(theirs**2))


@pytest.mark.parametrize("bits, channels", [(24, 1), (32, 1), (16, 4), (24, 2)])
def test_extensible_wav_from_sox(tmp_path, reference, bits, channels):
    source = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, 2)
    target = tmp_path / ("ext%d_%d.wav" % (bits, channels))
    sox(str(source), "-b", str(bits), "-c", str(channels), str(target))
    assert struct.unpack_from("<H", target.read_bytes(), 20)[0] == 0xFFFE  # WAVE_FORMAT_EXTENSIBLE
    assert np.abs(load_audio(target) - load_audio(source)).max() <= 1


def test_float_wav_through_sox(tmp_path, reference):
    source = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, 2)
    sox(str(source), "-e", "floating-point", "-b", "32", str(tmp_path / "float.wav"))
    assert np.abs(load_audio(tmp_path / "float.wav") - load_audio(source)).max() <= 1


def test_compressed_formats_agree_with_wav(tmp_path, reference):
    source = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, 2)
    expected = load_audio(source)
    sox(str(source), str(tmp_path / "tones.flac"))
    sox(str(source), str(tmp_path / "tones.ogg"))
    sox(str(source), "-C", "128", str(tmp_path / "tones.mp3"))  # 128 kbit/s keeps the 6.5 kHz tone
    assert np.array_equal(load_audio(tmp_path / "tones.flac"), expected)  # lossless
    ogg = load_audio(tmp_path / "tones.ogg")
    assert len(ogg) == len(expected)
    assert aligned_correlation(ogg, expected, max_lag=20)[0] > 0.99
    mp3 = load_audio(tmp_path / "tones.mp3")  # mp3 keeps the coder's delay and padding (~0.12 s)
    correlation, lag = aligned_correlation(mp3, expected, max_lag=2500)
    assert correlation > 0.99 and 0 <= lag < 2500
    assert 0 <= len(mp3) - len(expected) < 0.1 * SAMPLE_RATE_HZ


def test_flac_at_44k_is_resampled_by_the_decoder(tmp_path):
    source = write_wav(tmp_path / "tones44k.wav", tones(44100), 44100, 2)
    sox(str(source), str(tmp_path / "tones44k.flac"))
    decoded = as_float(load_audio(tmp_path / "tones44k.flac"))
    assert len(decoded) == SAMPLE_RATE_HZ
    assert np.abs(decoded - tones(SAMPLE_RATE_HZ))[500:-500].max() < 40 * LSB


def test_other_target_rate(tmp_path, reference):
    path = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, 2)
    assert len(load_audio(path, sample_rate_hz=8000)) == 8000
    sox(str(path), str(tmp_path / "tones.flac"))
    assert len(load_audio(tmp_path / "tones.flac", sample_rate_hz=8000)) == 8000


def bad_wav_header_only(path: Path) -> None:
    good = path.with_name("good.wav")
    write_wav(good, tones(SAMPLE_RATE_HZ), SAMPLE_RATE_HZ, 2)
    path.write_bytes(good.read_bytes()[:30])


def bad_wav_truncated(path: Path) -> None:
    good = path.with_name("good.wav")
    write_wav(good, tones(SAMPLE_RATE_HZ), SAMPLE_RATE_HZ, 2)
    path.write_bytes(good.read_bytes()[:20000])


def bad_compressed_truncated(path: Path) -> None:
    good = path.with_name("good.wav")
    write_wav(good, tones(SAMPLE_RATE_HZ, duration_s=3.0), SAMPLE_RATE_HZ, 2)
    full = path.with_name("full" + path.suffix)
    sox(str(good), str(full))
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])


BAD_INPUTS = [
    ("absent.wav", None, "no such file"),
    ("empty.wav", lambda path: path.write_bytes(b""), "empty file"),
    ("text.wav", lambda path: path.write_text("this is not audio at all\n"), "not a valid WAV file"),
    ("header.wav", bad_wav_header_only, "not a valid WAV file"),
    ("short.wav", bad_wav_truncated, "truncated"),
    ("text.flac", lambda path: path.write_text("this is not audio at all\n"), "not a readable FLAC file"),
    ("text.ogg", lambda path: path.write_bytes(bytes(range(256)) * 20), "not a readable OGG file"),
    ("text.mp3", lambda path: path.write_text("hello\n"), "not a readable MP3 file"),
    ("cut.flac", bad_compressed_truncated, "truncated"),
    ("notes.txt", lambda path: path.write_text("hello\n"), "unsupported format '.txt'"),
    ("README", lambda path: path.write_text("hello\n"), "unsupported format 'no extension'"),
    ("folder.wav", lambda path: path.mkdir(), "is a directory"),
]


READERS = {"load": load_audio, "stream": lambda path: list(stream_audio(path, 480)),
           "open": lambda path: stream_audio(path, 480)}  # open: fails before the first chunk
FOUND_WHILE_DECODING = ("cut.flac",)  # a compressed file's truncation shows at its end, not at open
BAD_READS = [(reader, *row) for row in BAD_INPUTS for reader in READERS if not (reader == "open" and row[0] in FOUND_WHILE_DECODING)]


@pytest.mark.parametrize("reader, name, make, reason", BAD_READS, ids=["%s-%s" % (row[1], row[0]) for row in BAD_READS])
def test_bad_input_is_one_clear_line(tmp_path, name, make, reason, reader):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(AudioError) as error:
        READERS[reader](path)
    message = str(error.value)
    assert message.startswith("%s: " % path)
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize("reader", READERS)
def test_a_device_is_not_a_regular_file(reader):
    with pytest.raises(AudioError) as error:
        READERS[reader]("/dev/null")
    assert str(error.value) == "/dev/null: not a regular file (character device)"


def through_fifo(tmp_path: Path, path: Path) -> np.ndarray:
    """load_audio of a FIFO that a writer thread fills with the file's bytes."""
    fifo = tmp_path / (path.name + ".fifo")
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()), daemon=True)
    writer.start()
    try:
        return load_audio(fifo)
    finally:
        writer.join(10)


def test_a_fifo_is_read_as_a_stream(tmp_path, reference):
    plain = write_wav(tmp_path / "plain.wav", reference, SAMPLE_RATE_HZ, 2)
    stereo = write_wav(tmp_path / "stereo44k.wav", np.stack([tones(44100)] * 2, axis=1), 44100, 2)
    sox(str(plain), "-e", "mu-law", str(tmp_path / "mulaw.wav"))  # not PCM: the header serd read goes to sox with the rest
    sox(str(plain), str(tmp_path / "tones.flac"))
    for path in (plain, stereo, tmp_path / "mulaw.wav", tmp_path / "tones.flac"):
        assert np.array_equal(through_fifo(tmp_path, path), load_audio(path)), path


@pytest.mark.parametrize("rate_hz, suffix", [(8000, "wav"), (8000, "flac"), (44100, "wav"), (22050, "mp3")])
def test_the_source_rate_is_known_before_the_first_chunk(tmp_path, rate_hz, suffix):
    path = write_wav(tmp_path / "source.wav", tones(rate_hz, tones_hz=(300.0,)), rate_hz, 2)
    if suffix != "wav":
        path = tmp_path / ("source." + suffix)
        sox(str(tmp_path / "source.wav"), str(path))
    stream = stream_audio(path, 480)
    assert stream.source_rate_hz == rate_hz
    assert abs(sum(len(chunk) for chunk in stream) - SAMPLE_RATE_HZ) < 0.1 * SAMPLE_RATE_HZ


@pytest.mark.parametrize("reader", READERS)
def test_wav_without_frames_is_an_error(tmp_path, reader):
    path = write_wav(tmp_path / "none.wav", np.zeros((0, 1)), SAMPLE_RATE_HZ, 2)
    with pytest.raises(AudioError, match="no audio samples"):
        READERS[reader](path)


def extensible_16k_mono(path: Path, audio: np.ndarray) -> Path:
    """A 16-bit mono WAVE_FORMAT_EXTENSIBLE file with a LIST chunk before the data, written by hand."""
    pcm = np.round(audio * 32768).astype("<i2").tobytes()
    subformat = struct.pack("<HHHH", 1, 0, 0x10, 0x8000) + bytes.fromhex("00aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, SAMPLE_RATE_HZ, 2 * SAMPLE_RATE_HZ, 2, 16, 22, 16, 4) + subformat
    info = b"INFOISFT" + struct.pack("<I", 5) + b"serd\0\0"
    chunks_ = [(b"fmt ", fmt), (b"LIST", info), (b"data", pcm)]
    body = b"WAVE" + b"".join(name + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1) for name, data in chunks_)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_streamed_file_equals_the_decoded_one(tmp_path, reference):
    """Every format is decoded block by block and cut into chunks: any chunk size gives the whole file's samples."""
    unknown = write_wav(tmp_path / "unknown.wav", reference, SAMPLE_RATE_HZ, 2)
    data = bytearray(unknown.read_bytes())
    struct.pack_into("<I", data, 40, 0xFFFFFFFF)
    unknown.write_bytes(bytes(data))
    files = [write_wav(tmp_path / "plain.wav", reference, SAMPLE_RATE_HZ, 2), unknown,
             extensible_16k_mono(tmp_path / "extensible.wav", reference),
             write_wav(tmp_path / "stereo44k.wav", np.stack([tones(44100)] * 2, axis=1), 44100, 2)]
    files.append(write_wav(tmp_path / "tones8bit22k.wav", tones(22050), 22050, 1))
    for name in ("tones.flac", "tones.ogg", "tones.mp3"):
        sox(str(files[0]), str(tmp_path / name))
        files.append(tmp_path / name)
    for path in files:
        whole = load_audio(path)
        for chunk_samples in (160, 480, 1024, 16000, 40000):
            parts = list(stream_audio(path, chunk_samples))
            assert all(part.dtype == np.int16 for part in parts)
            assert [len(part) for part in parts[:-1]] == [chunk_samples] * (len(parts) - 1), path
            assert np.array_equal(np.concatenate(parts), whole), (path, chunk_samples)
    assert np.array_equal(load_audio(files[2]), np.round(reference * 32768).astype(np.int16))


def test_wav_with_unknown_length_header_is_read(tmp_path, reference):
    path = write_wav(tmp_path / "stream.wav", reference, SAMPLE_RATE_HZ, 2)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 40, 0xFFFFFFFF)  # data size as streaming writers leave it
    path.write_bytes(bytes(data))
    assert np.array_equal(load_audio(path), np.round(reference * 32768).astype(np.int16))


RATE_PAIRS = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 8000)]


@pytest.mark.parametrize("in_rate_hz, out_rate_hz", RATE_PAIRS)
def test_streaming_resampler_equals_offline(in_rate_hz, out_rate_hz):
    audio = (np.random.default_rng(in_rate_hz).standard_normal(in_rate_hz // 2) * 4000).astype(np.int16)
    offline = resample(audio, in_rate_hz, out_rate_hz)
    assert offline.dtype == np.int16
    assert len(offline) == -(-len(audio) * out_rate_hz // in_rate_hz)
    for chunk_samples in (1, 7, 160, 441, 1024, 16000, len(audio)):
        stream = StreamResampler(in_rate_hz, out_rate_hz)
        parts = [stream.push(chunk) for chunk in chunks(audio, chunk_samples)] + [stream.flush()]
        streamed = np.concatenate(parts)
        assert len(streamed) == len(offline)
        assert np.abs(streamed.astype(np.int32) - offline).max() <= 1, chunk_samples


def test_streaming_resampler_latency_is_small():
    stream = StreamResampler(48000, 16000)
    produced = sum(len(stream.push(np.zeros(480, dtype=np.int16))) for _ in range(100))
    assert produced >= 100 * 160 - 80  # at most 5 ms of output held back


@pytest.mark.parametrize("in_rate_hz", [44100, 48000, 32000, 22050])
def test_resampler_quality(in_rate_hz):
    time_in_s = np.arange(in_rate_hz) / in_rate_hz
    time_out_s = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    middle = slice(2000, -2000)
    passed = resample(0.5 * np.sin(2 * np.pi * 1000 * time_in_s), in_rate_hz, SAMPLE_RATE_HZ)
    assert np.abs(passed - 0.5 * np.sin(2 * np.pi * 1000 * time_out_s))[middle].max() < 1e-4
    aliased = resample(0.5 * np.sin(2 * np.pi * 9000 * time_in_s), in_rate_hz, SAMPLE_RATE_HZ)
    assert np.sqrt(np.mean(aliased[middle] ** 2)) < 1e-3 * 0.5  # 9 kHz is above 8 kHz: removed (> 60 dB)


def test_upsampling_quality():
    time_in_s = np.arange(8000) / 8000
    time_out_s = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    upsampled = resample(0.5 * np.sin(2 * np.pi * 1000 * time_in_s), 8000, SAMPLE_RATE_HZ)
    assert np.abs(upsampled - 0.5 * np.sin(2 * np.pi * 1000 * time_out_s))[2000:-2000].max() < 1e-4


def test_same_rate_is_identity():
    audio = np.arange(-500, 500, dtype=np.int16)
    assert np.array_equal(resample(audio, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ), audio)
    stream = StreamResampler(SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)
    assert np.array_equal(stream.push(audio), audio) and len(stream.flush()) == 0


def test_chunks_cover_the_signal():
    audio = np.arange(1000)
    parts = list(chunks(audio, 160))
    assert [len(part) for part in parts] == [160] * 6 + [40]
    assert np.array_equal(np.concatenate(parts), audio)
    with pytest.raises(ValueError):
        list(chunks(audio, 0))


SNIFFED = [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
    (b"fLaC\x00\x00\x00\x22", "flac"),
    (b"OggS\x00\x02" + bytes(22) + b"\x01vorbis", "ogg"),
    (b"OggS\x00\x02" + bytes(22) + b"OpusHead", "opus"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
    (b"\xff\xfb\x90\x64", "mp3"),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
    (b"\xff\xf3\x90\x64", "mp3"),  # MPEG-2 layer III
    (b"\xff\xe3\x90\x64", "mp3"),  # MPEG-2.5 layer III
    (b"\xff\xf1\x50\x80", None),  # AAC ADTS: the sync, but layer 0
    (b"\xff\xeb\x90\x64", None),  # the reserved MPEG version
    (b"\xff\xfb\xf0\x64", None),  # the bitrate index no frame has
    (b"\xff\xfb\x9c\x64", None),  # the reserved sample rate
    (b"\xff\xdb\x90\x64", None),  # one sync bit short
    (b"\xff\xfb", None),  # too short for a frame header
    (b"\xff\xd8\xff\xe0", None),  # JPEG
    (b"RIFF\x24\x00\x00\x00AVI ", None),
    (b"hello\n", None),
]


@pytest.mark.parametrize("head, kind", SNIFFED, ids=[str(kind) + ":" + head[:4].hex() for head, kind in SNIFFED])
def test_sniff_format_goes_by_the_magic_bytes(head, kind):
    assert sniff_format(head) == kind


ENCODER_ARGS = {"wav": [], "flac": [], "ogg": [], "mp3": ["-C", "128"]}


@pytest.mark.parametrize("kind", ENCODER_ARGS)
def test_format_is_sniffed_from_the_content_not_the_name(tmp_path, reference, kind):
    source = write_wav(tmp_path / "tones.wav", reference, SAMPLE_RATE_HZ, 2)
    named = tmp_path / ("named." + kind)
    sox(str(source), *ENCODER_ARGS[kind], str(named))
    expected = load_audio(named)
    for disguise in ("tones", "tones.dat", "tones.mp3" if kind == "wav" else "tones.wav"):
        copy = tmp_path / "renamed" / disguise
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(named.read_bytes())
        assert np.array_equal(load_audio(copy), expected), disguise
        assert np.array_equal(np.concatenate(list(stream_audio(copy, 480))), expected), disguise


def test_wav_without_an_extension_streams_from_disk(tmp_path, reference):
    path = write_wav(tmp_path / "recording", reference, SAMPLE_RATE_HZ, 2)
    first = next(stream_audio(path, 480))
    assert len(first) == 480 and np.array_equal(first, load_audio(path)[:480])


def read_stdin(data: bytes) -> subprocess.CompletedProcess:
    """load_audio("-") in a fresh process fed data; its samples on stdout."""
    code = "import sys; from serd.audio import load_audio; sys.stdout.buffer.write(load_audio('-').tobytes())"
    return subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_stdin_reads_a_whole_file_of_any_format(tmp_path, reference, kind):
    source = write_wav(tmp_path / "source.wav", reference, SAMPLE_RATE_HZ, 2)
    named = tmp_path / ("tones." + kind)
    sox(str(source), str(named))
    result = read_stdin(named.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert np.array_equal(np.frombuffer(result.stdout, dtype=np.int16), load_audio(named))


@pytest.mark.parametrize("data, reason", [(b"", "stdin: empty input"), (b"hello\n" * 20, "stdin: unsupported format (by content not WAV")])
def test_bad_stdin_is_one_clear_line(data, reason):
    result = read_stdin(data)
    message = result.stderr.decode().strip().splitlines()[-1]
    assert result.returncode != 0 and reason in message
