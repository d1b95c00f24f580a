"""Decoding audio files to 16 kHz mono int16, resampling (offline and streaming), chunking."""

from __future__ import annotations

import functools
import io
import math
import re
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serd.errors import AudioError

SAMPLE_RATE_HZ = 16000
DECODER_FORMATS = (".flac", ".ogg", ".oga", ".opus", ".mp3")
WAV_FORMATS = (".wav", ".wave")
STDIN_PATH = "-"  # load_audio("-") reads a whole file (any supported format) from standard input
STDIN_NAME = "stdin"  # what messages call it
SNIFF_BYTES = 64  # enough of the start of a file to tell its format
NOT_SNIFFED = "by content not WAV, FLAC, Ogg or MP3"
INT16_FULL_SCALE = 32768.0
INT16_MIN, INT16_MAX = -32768, 32767

# formats by content: magic bytes at the start of the file
FLAC_MAGIC, OGG_MAGIC, OPUS_HEAD, ID3_MAGIC = b"fLaC", b"OggS", b"OpusHead", b"ID3"
MPEG_SYNC = 0xFFE0  # 11 set bits open an MPEG audio frame header
MPEG_RESERVED_VERSION, MPEG_RESERVED_LAYER, MPEG_BAD_BITRATE, MPEG_RESERVED_RATE = 1, 0, 0xF, 3

# wav headers
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
STREAMING_DATA_SIZE = 0x7FFFFFFF  # data sizes at or above this are "unknown length" placeholders
PCM_OFFSET_8BIT = 128
RIFF_HEADER_BYTES = 12
CHUNK_HEADER_BYTES = 8
EXTENSIBLE_SUBFORMAT = 24  # offset of the sub-format GUID in an extensible fmt chunk
PCM_FMT_BYTES = 16  # tag, channels, rate, byte rate, block align, bits per sample
WAV_HEADER_READ_BYTES = 65536  # a 16 kHz mono wav whose data starts later is decoded whole

# resampler: Kaiser-windowed sinc, polyphase over the reduced rate ratio
ZERO_CROSSINGS = 32  # sinc lobes each side of the centre tap
ROLLOFF = 0.94  # cut-off as a fraction of the lower Nyquist frequency
KAISER_BETA = 8.6  # about 85 dB stop-band attenuation

# sox
TRUNCATION_SLACK_S = 0.25  # decoded audio may fall short of the declared length by this much (mp3 padding)
SOX_DURATION = re.compile(r"^Duration\s*:.*=\s*(\d+)\s+samples", re.MULTILINE)
SOX_QUOTED_NAME = re.compile(r"`[^`]*':? ")  # sox quotes the file name like `this'
SOX_RATE = re.compile(r"^Sample Rate\s*:\s*(\d+)", re.MULTILINE)


def load_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Whole file ("-": standard input) as mono int16 at sample_rate_hz; AudioError names the file and the reason.

    The format comes from the content (RIFF/WAVE, fLaC, OggS, ID3 or an MPEG frame), the name only
    when the content matches none of them (so that the decoder says what is wrong with the file)."""
    if str(path) == STDIN_PATH:
        name, data = STDIN_NAME, _read_stdin()
        kind = sniff_format(bytes(data[:SNIFF_BYTES]))
        if kind is None:
            raise AudioError("%s: unsupported format (%s)" % (name, NOT_SNIFFED))
    else:
        name = _checked_file(path)
        kind, data = _file_format(name), None
    if kind == "wav":
        samples = _decode_wav(data if data is not None else _read_bytes(name), name, sample_rate_hz)
    else:
        samples = _decode_with_sox(name, kind, data, sample_rate_hz)
    if len(samples) == 0:
        raise AudioError("%s: no audio samples" % name)
    return samples


def stream_audio(path: str | Path, chunk_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Iterator[np.ndarray]:
    """The file as consecutive mono int16 chunks at sample_rate_hz; AudioError before the first chunk.

    A WAV that already is 16-bit mono at sample_rate_hz is read from disk chunk by chunk, so a long
    recording costs no memory; any other file is decoded whole first.
    """
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    if str(path) != STDIN_PATH:
        path = _checked_file(path)
        if _file_format(path) == "wav":
            plain = _plain_wav_data(path, sample_rate_hz)
            if plain is not None:
                return _read_samples(path, *plain, chunk_samples)
    return chunks(load_audio(path, sample_rate_hz), chunk_samples)


def sniff_format(head: bytes) -> str | None:
    """'wav', 'flac', 'ogg', 'opus' or 'mp3' from the first bytes of a file; None for anything else."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == FLAC_MAGIC:
        return "flac"
    if head[:4] == OGG_MAGIC:
        return "opus" if OPUS_HEAD in head[:SNIFF_BYTES] else "ogg"
    if head[:3] == ID3_MAGIC or _mpeg_frame(head):
        return "mp3"
    return None


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: the sync, then a version, layer, bitrate and sample rate that exist."""
    if len(head) < 3 or (head[0] << 8 | head[1]) & MPEG_SYNC != MPEG_SYNC:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != MPEG_RESERVED_VERSION and layer != MPEG_RESERVED_LAYER and bitrate != MPEG_BAD_BITRATE and rate != MPEG_RESERVED_RATE


def _file_format(path: Path) -> str | None:
    """The file's format by content, else by a known extension (None: sox goes by the extension)."""
    try:
        with path.open("rb") as file:
            kind = sniff_format(file.read(SNIFF_BYTES))
    except OSError as exc:
        raise AudioError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    suffix = path.suffix.lower()
    if kind is None and suffix in WAV_FORMATS:
        return "wav"
    if kind is None and suffix not in DECODER_FORMATS:
        raise AudioError("%s: unsupported format %r (%s)" % (path, suffix or "no extension", NOT_SNIFFED))
    return kind


def _read_stdin() -> bytearray:
    """All of standard input; AudioError for a terminal or nothing."""
    if sys.stdin is None or sys.stdin.isatty():
        raise AudioError("%s: is a terminal; pipe a file in (serd analyze - < clip.wav)" % STDIN_NAME)
    data = bytearray(sys.stdin.buffer.read())
    if not data:
        raise AudioError("%s: empty input" % STDIN_NAME)
    return data


def chunks(samples: np.ndarray, chunk_samples: int) -> Iterator[np.ndarray]:
    """Consecutive slices of chunk_samples (the last one may be shorter)."""
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    for start in range(0, len(samples), chunk_samples):
        yield samples[start : start + chunk_samples]


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1) to int16, rounded and clipped."""
    return np.clip(np.round(audio * INT16_FULL_SCALE), INT16_MIN, INT16_MAX).astype(np.int16)


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 to float64 in [-1, 1); floats pass through as float64."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples.astype(np.float64) / INT16_FULL_SCALE
    return samples.astype(np.float64, copy=False)


def _checked_file(path: str | Path) -> Path:
    """The path of a non-empty regular file, or AudioError."""
    path = Path(path)
    if path.is_dir():
        raise AudioError("%s: is a directory" % path)
    if not path.is_file():
        raise AudioError("%s: no such file" % path)
    if path.stat().st_size == 0:
        raise AudioError("%s: empty file" % path)
    return path


# --- wav ------------------------------------------------------------------------------------


def _plain_wav_data(path: Path, sample_rate_hz: int) -> tuple[int, int] | None:
    """(data offset, samples) of a 16-bit mono PCM wav at sample_rate_hz whose header fits the first
    read; None for any other file (decoded whole, which also names what is wrong with it)."""
    try:
        with path.open("rb") as file:
            head = bytearray(file.read(WAV_HEADER_READ_BYTES))
            size = file.seek(0, io.SEEK_END)
    except OSError as exc:
        raise AudioError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    fmt_body, data = _fmt_chunk(head), _data_chunk(head)
    if fmt_body is None or data is None or len(head) < fmt_body + PCM_FMT_BYTES or not _integer_pcm(head):
        return None
    channels, rate_hz, _byte_rate, _block, bits = struct.unpack_from("<HIIHH", head, fmt_body + 2)
    if (channels, rate_hz, bits) != (1, sample_rate_hz, 16):
        return None
    offset, declared_bytes = data
    held = (size - offset) // 2
    if declared_bytes >= STREAMING_DATA_SIZE:
        samples = held
    elif held < declared_bytes // 2:
        raise AudioError("%s: truncated: header says %d frames, file holds %d" % (path, declared_bytes // 2, held))
    else:
        samples = declared_bytes // 2
    if samples == 0:
        raise AudioError("%s: no audio samples" % path)
    return offset, samples


def _read_samples(path: Path, offset: int, samples: int, chunk_samples: int) -> Iterator[np.ndarray]:
    """samples int16 values from byte offset on, chunk_samples at a time."""
    with path.open("rb") as file:
        file.seek(offset)
        for start in range(0, samples, chunk_samples):
            count = min(chunk_samples, samples - start)
            raw = file.read(count * 2)
            if len(raw) < count * 2:
                raise AudioError("%s: truncated while reading" % path)
            yield np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)


def _read_bytes(path: Path) -> bytearray:
    """A whole file."""
    try:
        return bytearray(path.read_bytes())
    except OSError as exc:
        raise AudioError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None


def _decode_wav(data: bytearray, name: Path | str, sample_rate_hz: int) -> np.ndarray:
    """PCM wav bytes (8/16/24/32-bit, any channels, any rate) natively, float wav through sox; name is for messages."""
    if not _integer_pcm(data):
        return _decode_with_sox(name, "wav", data, sample_rate_hz)
    try:
        with wave.open(io.BytesIO(data)) as reader:
            channels, width, rate_hz, declared = reader.getparams()[:4]
            raw = reader.readframes(declared)
    except (wave.Error, EOFError) as exc:
        raise AudioError("%s: not a valid WAV file: %s" % (name, str(exc) or "truncated header")) from None
    frame_bytes = channels * width
    if len(raw) < declared * frame_bytes and declared * frame_bytes < STREAMING_DATA_SIZE:
        raise AudioError("%s: truncated: header says %d frames, file holds %d" % (name, declared, len(raw) // frame_bytes))
    if width == 2 and channels == 1 and rate_hz == sample_rate_hz:
        return np.frombuffer(raw, dtype="<i2", count=len(raw) // frame_bytes).astype(np.int16)  # already what serd runs on
    try:
        audio = _pcm_to_float(raw[: len(raw) // frame_bytes * frame_bytes], width)
        return _mono_at_rate(audio.reshape(-1, channels), rate_hz, sample_rate_hz)
    except ValueError as exc:
        raise AudioError("%s: not a valid WAV file: %s" % (name, exc)) from None


def _integer_pcm(data: bytearray) -> bool:
    """False for float or compressed wav (sox decodes those); relabels extensible PCM as plain PCM in place.

    Data that is not RIFF/WAVE counts as PCM, so that the wave module says what is wrong with it.
    """
    fmt_body = _fmt_chunk(data)
    if fmt_body is None:
        return True
    tag = struct.unpack_from("<H", data, fmt_body)[0]
    if tag == WAVE_FORMAT_EXTENSIBLE and len(data) >= fmt_body + EXTENSIBLE_SUBFORMAT + 2:
        tag = struct.unpack_from("<H", data, fmt_body + EXTENSIBLE_SUBFORMAT)[0]
        if tag == WAVE_FORMAT_PCM:
            struct.pack_into("<H", data, fmt_body, WAVE_FORMAT_PCM)
    return tag == WAVE_FORMAT_PCM


def _fmt_chunk(data: bytearray) -> int | None:
    """Offset of the fmt chunk's body in a RIFF/WAVE file, or None."""
    found = _find_chunk(data, b"fmt ")
    return found[0] if found is not None and found[0] + 2 <= len(data) else None


def _data_chunk(data: bytearray) -> tuple[int, int] | None:
    """(offset of the body, declared size) of the data chunk in a RIFF/WAVE file, or None."""
    return _find_chunk(data, b"data")


def _find_chunk(data: bytearray, wanted: bytes) -> tuple[int, int] | None:
    """(offset of the body, declared size) of the first chunk called wanted whose header lies in data."""
    if len(data) < RIFF_HEADER_BYTES or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = RIFF_HEADER_BYTES
    while offset + CHUNK_HEADER_BYTES <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        if chunk_id == wanted:
            return offset + CHUNK_HEADER_BYTES, size
        offset += CHUNK_HEADER_BYTES + size + (size & 1)
    return None


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes to float64 in [-1, 1): 8-bit unsigned, 16/24/32-bit signed."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - PCM_OFFSET_8BIT) / PCM_OFFSET_8BIT
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / INT16_FULL_SCALE
    if width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float64) / float(1 << 23)
    if width == 4:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    raise ValueError("unsupported sample width of %d bytes" % width)


def _mono_at_rate(frames: np.ndarray, rate_hz: int, sample_rate_hz: int) -> np.ndarray:
    """(frames, channels) float audio -> mono int16 at sample_rate_hz."""
    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if rate_hz != sample_rate_hz:
        mono = resample(mono, rate_hz, sample_rate_hz)
    return to_int16(mono)


# --- sox --------------------------------------------------------------------------------------


def _decode_with_sox(name: Path | str, kind: str | None, data: bytearray | None, sample_rate_hz: int) -> np.ndarray:
    """Decode the file called name (or data, when given) of format kind (None: sox goes by the extension)
    to raw s16le mono at the target rate; detect truncation."""
    sox = shutil.which("sox")
    if sox is None:
        raise AudioError("%s: decoding needs the sox program (apt install sox libsox-fmt-all)" % name)
    source = ["-t", kind] if kind else []
    source.append("-" if data is not None else str(name))
    command = [sox, "-V3", *source, "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1", "-r", str(sample_rate_hz), "-"]
    result = subprocess.run(command, input=None if data is None else bytes(data), capture_output=True, check=False)
    report = result.stderr.decode("utf-8", "replace")
    failures = [line for line in report.splitlines() if " FAIL " in line]
    if result.returncode != 0 or failures:
        raise AudioError("%s: %s" % (name, _sox_failure(failures[-1] if failures else "", kind or Path(name).suffix)))
    samples = np.frombuffer(result.stdout, dtype="<i2").astype(np.int16)
    expected = _declared_samples(report, sample_rate_hz)
    if expected and len(samples) < expected - TRUNCATION_SLACK_S * sample_rate_hz:
        held_s, declared_s = len(samples) / sample_rate_hz, expected / sample_rate_hz
        raise AudioError("%s: truncated: header says %.2f s, file holds %.2f s" % (name, declared_s, held_s))
    return samples


def _sox_failure(line: str, kind: str) -> str:
    """One-line reason from a sox FAIL line, without sox's own prefix and file name; kind: 'mp3' or '.mp3'."""
    detail = SOX_QUOTED_NAME.split(line)[-1].strip() or "decoder failed"
    if "can't open input file" in line:
        return "not a readable %s file: %s" % (kind.lstrip(".").upper(), detail)
    return "corrupt or truncated: %s" % detail


def _declared_samples(report: str, sample_rate_hz: int) -> int:
    """Length the input file declares (from sox -V3), in output samples; 0 if unknown."""
    duration, rate = SOX_DURATION.search(report), SOX_RATE.search(report)
    if duration is None or rate is None or int(rate.group(1)) == 0:
        return 0
    return int(duration.group(1)) * sample_rate_hz // int(rate.group(1))


# --- resampling -------------------------------------------------------------------------------


class _Polyphase:
    """Windowed-sinc filters for every output phase of a rational rate change up/down."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int):
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError("sample rates must be positive")
        divisor = math.gcd(in_rate_hz, out_rate_hz)
        self.up, self.down = out_rate_hz // divisor, in_rate_hz // divisor
        cutoff = 0.5 * min(1.0, self.up / self.down) * ROLLOFF  # cycles per input sample
        self.half_taps = math.ceil(ZERO_CROSSINGS / (2.0 * cutoff))
        offsets = np.arange(self.up)[:, None] / self.up + (self.half_taps - 1) - np.arange(2 * self.half_taps)[None, :]
        taper = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (offsets / self.half_taps) ** 2, 0.0, 1.0))) / np.i0(KAISER_BETA)
        filters = 2.0 * cutoff * np.sinc(2.0 * cutoff * offsets) * taper
        self.filters = filters / filters.sum(axis=1, keepdims=True)

    def first_input(self, out_index: int) -> int:
        """Lowest input index output out_index reads."""
        return out_index * self.down // self.up - self.half_taps + 1

    def ready_outputs(self, received: int) -> int:
        """Outputs computable once `received` inputs arrived (all their taps are present)."""
        usable = received - self.half_taps
        return max(0, -(-usable * self.up // self.down))

    def total_outputs(self, received: int) -> int:
        """Outputs the whole input gives: one per 1/out_rate up to the input's end."""
        return -(-received * self.up // self.down)

    def compute(self, buffer: np.ndarray, buffer_start: int, first_out: int, stop_out: int) -> np.ndarray:
        """Outputs [first_out, stop_out) from buffer, which holds inputs from index buffer_start.

        Outputs one `up` apart share a filter phase and read windows `down` inputs apart, so each
        phase is one strided matrix-vector product.
        """
        count = max(0, stop_out - first_out)
        out = np.empty(count)
        if count == 0:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(buffer, 2 * self.half_taps)
        for offset in range(min(self.up, count)):
            position = (first_out + offset) * self.down
            start = self.first_input(first_out + offset) - buffer_start
            rows = windows[start :: self.down][: len(range(offset, count, self.up))]
            out[offset :: self.up] = rows @ self.filters[position % self.up]
        return out


@functools.lru_cache(maxsize=16)
def _polyphase(in_rate_hz: int, out_rate_hz: int) -> _Polyphase:
    """Filters per rate pair, built once."""
    return _Polyphase(in_rate_hz, out_rate_hz)


def resample(samples: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """Whole-signal rate change; int16 in gives int16 out, float in gives float64 out."""
    if in_rate_hz == out_rate_hz:
        return np.array(samples, copy=True)
    poly = _polyphase(in_rate_hz, out_rate_hz)
    audio = to_float(samples)
    padded = np.concatenate([np.zeros(poly.half_taps - 1), audio, np.zeros(poly.half_taps)])
    result = poly.compute(padded, 1 - poly.half_taps, 0, poly.total_outputs(len(audio)))
    return to_int16(result) if np.asarray(samples).dtype == np.int16 else result


class StreamResampler:
    """Rate change of a stream in chunks of any size; push() results + flush() equal resample()."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int):
        self.in_rate_hz, self.out_rate_hz = in_rate_hz, out_rate_hz
        self._poly = _polyphase(in_rate_hz, out_rate_hz) if in_rate_hz != out_rate_hz else None
        half_taps = self._poly.half_taps if self._poly else 1
        self._buffer = np.zeros(half_taps - 1)
        self._buffer_start = 1 - half_taps  # input index of _buffer[0]
        self._received = 0
        self._next_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """int16 in, the int16 outputs that became computable (a few ms behind the input)."""
        if self._poly is None:
            return np.array(samples, dtype=np.int16, copy=True)
        self._buffer = np.concatenate([self._buffer, to_float(samples)])
        self._received += len(samples)
        return to_int16(self._emit(self._poly.ready_outputs(self._received)))

    def flush(self) -> np.ndarray:
        """End of stream: the remaining outputs (the input is taken as silent after its end)."""
        if self._poly is None:
            return np.zeros(0, dtype=np.int16)
        self._buffer = np.concatenate([self._buffer, np.zeros(self._poly.half_taps)])
        return to_int16(self._emit(self._poly.total_outputs(self._received)))

    def _emit(self, stop_out: int) -> np.ndarray:
        """Compute outputs up to stop_out and drop inputs no later output reads."""
        out = self._poly.compute(self._buffer, self._buffer_start, self._next_out, stop_out)
        self._next_out = max(self._next_out, stop_out)
        keep_from = self._poly.first_input(self._next_out)
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start :]
            self._buffer_start = keep_from
        return out
