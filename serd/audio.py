"""Audio files to 16 kHz mono int16, streamed: format by content, WAV read natively, the rest through sox; chunking.

Every format is decoded a block at a time, so a long recording costs no more memory than a short one;
load_audio() gathers a whole file for callers that want it at once. The WAV parser, the sox decoder,
opening inputs, resampling and sample formats live in serd.wav, serd.sox, serd.inputs, serd.resample
and serd.pcm; the names callers use are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serd import wav
from serd.errors import AudioError
from serd.inputs import STDIN_NAME, STDIN_PATH, ByteSource, open_input
from serd.pcm import INT16_FULL_SCALE, INT16_MAX, INT16_MIN, to_float, to_int16
from serd.resample import StreamResampler, resample
from serd.sox import SoxDecoder

__all__ = ["AudioStream", "INT16_FULL_SCALE", "INT16_MAX", "INT16_MIN", "SAMPLE_RATE_HZ", "STDIN_NAME", "STDIN_PATH",
           "StreamResampler", "chunks", "load_audio", "resample", "sniff_format", "stream_audio", "to_float", "to_int16"]

SAMPLE_RATE_HZ = 16000
DECODER_FORMATS = (".flac", ".ogg", ".oga", ".opus", ".mp3")
WAV_FORMATS = (".wav", ".wave")
SNIFF_BYTES = 64  # enough of the start of a file to tell its format
NOT_SNIFFED = "by content not WAV, FLAC, Ogg or MP3"
LOAD_CHUNK_SAMPLES = 1 << 20  # load_audio gathers the stream in pieces of this many samples

# formats by content: magic bytes at the start of the file
FLAC_MAGIC, OGG_MAGIC, OPUS_HEAD, ID3_MAGIC = b"fLaC", b"OggS", b"OpusHead", b"ID3"
MPEG_SYNC = 0xFFE0  # 11 set bits open an MPEG audio frame header
MPEG_RESERVED_VERSION, MPEG_RESERVED_LAYER, MPEG_BAD_BITRATE, MPEG_RESERVED_RATE = 1, 0, 0xF, 3


class AudioStream:
    """A decoded input as consecutive mono int16 chunks of chunk_samples at sample_rate_hz (the last may be shorter).

    name is what messages call the input; source_rate_hz the rate it was recorded at (None if the decoder
    did not say). An iterator of the chunks; close() (or leaving a with block) stops the decoder early.
    """

    def __init__(self, name: str, blocks: Iterator[np.ndarray], source_rate_hz: int | None, chunk_samples: int):
        self.name, self.source_rate_hz, self.chunk_samples = name, source_rate_hz, chunk_samples
        self._blocks = blocks
        first = next(blocks, None)  # errors at open, and "no audio samples", come before the first chunk
        if first is None:
            raise AudioError("%s: no audio samples" % name)
        self._first = first
        self._chunks: Iterator[np.ndarray] | None = None

    def __iter__(self) -> "AudioStream":
        return self

    def __next__(self) -> np.ndarray:
        """The next chunk."""
        if self._chunks is None:
            self._chunks = _rechunk(self._all_blocks(), self.chunk_samples)
        return next(self._chunks)

    def blocks(self) -> Iterator[np.ndarray]:
        """The samples as the decoder gives them (blocks of any size)."""
        return self._all_blocks()

    def close(self) -> None:
        """Stop decoding (a sox child is ended)."""
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _all_blocks(self) -> Iterator[np.ndarray]:
        """The first block, then the rest."""
        first, self._first = self._first, None
        if first is not None:
            yield first
        yield from self._blocks


def stream_audio(path: str | Path, chunk_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> AudioStream:
    """The file ("-": standard input; a FIFO is read as a stream) as mono int16 chunks at sample_rate_hz.

    The format comes from the content (RIFF/WAVE, fLaC, OggS, ID3 or an MPEG frame), the name only when
    the content matches none of them (so that the decoder says what is wrong with the file). An input that
    cannot be opened or decoded fails with AudioError before the first chunk; a compressed file found
    truncated or corrupt while decoding fails at its end.
    """
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    source = open_input(path)
    try:
        blocks, source_rate_hz = _decode(source, sample_rate_hz)
        return AudioStream(source.name, _closing(blocks, source), source_rate_hz, chunk_samples)
    except BaseException:
        source.close()
        raise


def load_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Whole file ("-": standard input) as mono int16 at sample_rate_hz; AudioError names the file and the reason."""
    with stream_audio(path, LOAD_CHUNK_SAMPLES, sample_rate_hz) as stream:
        return np.concatenate(list(stream.blocks()))


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


def chunks(samples: np.ndarray, chunk_samples: int) -> Iterator[np.ndarray]:
    """Consecutive slices of chunk_samples (the last one may be shorter)."""
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    for start in range(0, len(samples), chunk_samples):
        yield samples[start : start + chunk_samples]


def _decode(source: ByteSource, sample_rate_hz: int) -> tuple[Iterator[np.ndarray], int | None]:
    """int16 blocks at sample_rate_hz from the right decoder, and the rate the input was recorded at."""
    kind = _format(source)
    if kind == "wav":
        fmt = wav.read_header(source)
        if fmt.integer_pcm:
            source.forget_start()
            wav.check_length(source, fmt)
            return _at_rate(wav.pcm_blocks(source, fmt), fmt.rate_hz, sample_rate_hz), fmt.rate_hz
    decoder = SoxDecoder(source, kind, sample_rate_hz)
    return iter(decoder), decoder.source_rate_hz


def _format(source: ByteSource) -> str | None:
    """The input's format by content, else by a known extension (None: sox goes by the extension)."""
    head = source.peek(SNIFF_BYTES)
    if not head:
        raise AudioError("%s: empty input" % source.name)
    kind = sniff_format(head)
    suffix = Path(source.name).suffix.lower() if source.name != STDIN_NAME else ""
    if kind is None and suffix in WAV_FORMATS:
        kind = "wav"
    elif kind is None and (source.path is None or suffix not in DECODER_FORMATS):
        what = "" if source.path is None else " %r" % (suffix or "no extension")
        raise AudioError("%s: unsupported format%s (%s)" % (source.name, what, NOT_SNIFFED))
    return kind


def _at_rate(blocks: Iterator[np.ndarray], rate_hz: int, sample_rate_hz: int) -> Iterator[np.ndarray]:
    """Mono blocks (int16 or float) at rate_hz as int16 blocks at sample_rate_hz (empty ones left out)."""
    resampler = StreamResampler(rate_hz, sample_rate_hz)
    for block in blocks:
        out = resampler.push(block)
        if len(out):
            yield out
    tail = resampler.flush()
    if len(tail):
        yield tail


def _closing(blocks: Iterator[np.ndarray], source: ByteSource) -> Iterator[np.ndarray]:
    """blocks, closing the input when they end or the consumer stops."""
    try:
        yield from blocks
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
        source.close()


def _rechunk(blocks: Iterator[np.ndarray], chunk_samples: int) -> Iterator[np.ndarray]:
    """Blocks of any size as chunks of exactly chunk_samples (the last may be shorter), the remainder carried over."""
    carry = np.zeros(0, dtype=np.int16)
    for block in blocks:
        if len(carry):
            block = np.concatenate([carry, block])
        whole = len(block) // chunk_samples * chunk_samples
        for start in range(0, whole, chunk_samples):
            yield block[start : start + chunk_samples]
        carry = block[whole:]
    if len(carry):
        yield carry


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: the sync, then a version, layer, bitrate and sample rate that exist."""
    if len(head) < 3 or (head[0] << 8 | head[1]) & MPEG_SYNC != MPEG_SYNC:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != MPEG_RESERVED_VERSION and layer != MPEG_RESERVED_LAYER and bitrate != MPEG_BAD_BITRATE and rate != MPEG_RESERVED_RATE
