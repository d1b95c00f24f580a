"""WAV files (RIFF/WAVE): the header, then integer PCM data as mono blocks, read front to back."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from serd.errors import AudioError
from serd.inputs import ByteSource
from serd.pcm import pcm_to_float

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
STREAMING_DATA_SIZE = 0x7FFFFFFF  # data sizes at or above this are "unknown length" placeholders
RIFF_HEADER_BYTES = 12
CHUNK_HEADER_BYTES = 8
PCM_FMT_BYTES = 16  # tag, channels, rate, byte rate, block align, bits per sample
EXTENSIBLE_SUBFORMAT = 24  # offset of the sub-format GUID in an extensible fmt chunk
PCM_WIDTHS_BYTES = (1, 2, 3, 4)
BLOCK_FRAMES = 16384  # frames decoded at a time


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says: format tag (an extensible file's sub-format), layout, and the data size (None: unknown)."""

    tag: int
    channels: int
    rate_hz: int
    width_bytes: int
    data_bytes: int | None

    @property
    def integer_pcm(self) -> bool:
        """Integer PCM, which serd decodes itself (float or compressed WAV goes to sox)."""
        return self.tag == WAVE_FORMAT_PCM

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return self.channels * self.width_bytes


def read_header(source: ByteSource) -> WavFormat:
    """Read the RIFF header and the chunks up to the body of the data chunk; AudioError names what is wrong."""
    riff = source.read(RIFF_HEADER_BYTES)
    if riff[:4] != b"RIFF":
        _invalid(source, "file does not start with RIFF id")
    if len(riff) < RIFF_HEADER_BYTES or riff[8:12] != b"WAVE":
        _invalid(source, "not a WAVE file")
    fmt = None
    while True:
        header = source.read(CHUNK_HEADER_BYTES)
        if len(header) < CHUNK_HEADER_BYTES:
            _invalid(source, "fmt chunk and/or data chunk missing" if not header else "truncated header")
        chunk_id, size = struct.unpack("<4sI", header)
        if chunk_id == b"data":
            if fmt is None:
                _invalid(source, "data chunk before fmt chunk")
            return _with_data_size(fmt, size)
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(source, source.read(size + (size & 1))[:size])
        elif source.skip(size + (size & 1)) < size:
            _invalid(source, "truncated header")


def check_length(source: ByteSource, fmt: WavFormat) -> None:
    """A regular file must hold the frames its header declares (a stream is checked as it ends)."""
    if source.size_bytes is None or fmt.data_bytes is None:
        return
    declared, held = fmt.data_bytes // fmt.frame_bytes, (source.size_bytes - source.position) // fmt.frame_bytes
    if held < declared:
        raise AudioError("%s: truncated: header says %d frames, file holds %d" % (source.name, declared, held))


def pcm_blocks(source: ByteSource, fmt: WavFormat) -> Iterator[np.ndarray]:
    """The data of an integer PCM file as mono blocks at its own rate: int16 for 16-bit mono, float64 in [-1, 1) otherwise."""
    frame_bytes = fmt.frame_bytes
    remaining = None if fmt.data_bytes is None else fmt.data_bytes // frame_bytes * frame_bytes
    held = 0
    while remaining is None or held < remaining:
        wanted = BLOCK_FRAMES * frame_bytes if remaining is None else min(BLOCK_FRAMES * frame_bytes, remaining - held)
        raw = source.read(wanted)
        whole = len(raw) // frame_bytes * frame_bytes
        held += whole
        if whole:
            yield _mono(raw[:whole], fmt)
        if len(raw) < wanted:
            break
    if remaining is not None and held < remaining:
        raise AudioError("%s: truncated: header says %d frames, file holds %d" % (source.name, remaining // frame_bytes, held // frame_bytes))


def _parse_fmt(source: ByteSource, body: bytes) -> WavFormat:
    """The fmt chunk's body; an extensible file's sub-format stands for its tag."""
    if len(body) < PCM_FMT_BYTES:
        _invalid(source, "truncated header")
    tag, channels, rate_hz, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= EXTENSIBLE_SUBFORMAT + 2:
        tag = struct.unpack_from("<H", body, EXTENSIBLE_SUBFORMAT)[0]
    fmt = WavFormat(tag, channels, rate_hz, (bits + 7) // 8, None)
    if fmt.integer_pcm and fmt.width_bytes not in PCM_WIDTHS_BYTES:
        _invalid(source, "unsupported sample width of %d bits" % bits)
    if fmt.integer_pcm and (channels == 0 or rate_hz == 0):
        _invalid(source, "%s in the header" % ("no channels" if channels == 0 else "a sample rate of 0 Hz"))
    return fmt


def _with_data_size(fmt: WavFormat, size: int) -> WavFormat:
    """fmt with the data chunk's declared size (None for a streaming writer's placeholder)."""
    return WavFormat(fmt.tag, fmt.channels, fmt.rate_hz, fmt.width_bytes, None if size >= STREAMING_DATA_SIZE else size)


def _mono(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Whole frames of PCM bytes as mono samples (channels averaged)."""
    if fmt.width_bytes == 2 and fmt.channels == 1:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    frames = pcm_to_float(raw, fmt.width_bytes).reshape(-1, fmt.channels)
    return frames.mean(axis=1) if fmt.channels > 1 else frames[:, 0]


def _invalid(source: ByteSource, reason: str) -> None:
    """Raise the one-line error for a header that is not a valid WAV file."""
    raise AudioError("%s: not a valid WAV file: %s" % (source.name, reason))
