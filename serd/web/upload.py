"""Receiving an upload (multipart field `file`, or a raw body with a Content-Type) into a temporary file, within a size limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from aiohttp import BodyPartReader, web

from serd.audio import DECODER_FORMATS, WAV_FORMATS
from serd.web.service import RequestError

FIELD_NAME = "file"
RAW_NAME = "upload"  # what messages call a raw body
CHUNK_BYTES = 1 << 16
STORED_STEM = "upload"  # the temporary file's name, before the suffix that tells sox the format
NAME_CHARS_MAX = 200
CONTENT_TYPE_SUFFIXES = {
    "audio/wav": ".wav", "audio/wave": ".wav", "audio/x-wav": ".wav", "audio/vnd.wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac",
    "audio/ogg": ".ogg", "application/ogg": ".ogg", "audio/opus": ".opus",
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
}


@dataclass(frozen=True)
class Upload:
    """An uploaded file stored at path, and the name messages and the result give it."""

    path: Path
    name: str


async def receive(request: web.Request, directory: Path, max_bytes: int, too_large: str) -> Upload:
    """Store the request's file in directory; RequestError 400 (no file, empty) or 413 (over max_bytes, with too_large)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestError(413, too_large)
    if request.content_type == "multipart/form-data":
        return await _receive_multipart(request, directory, max_bytes, too_large)
    target = directory / (STORED_STEM + CONTENT_TYPE_SUFFIXES.get(request.content_type, ""))
    await _store(request.content, target, max_bytes, too_large, RAW_NAME)
    return Upload(target, RAW_NAME)


async def _receive_multipart(request: web.Request, directory: Path, max_bytes: int, too_large: str) -> Upload:
    """The part called `file` of a multipart body (other parts are skipped)."""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == FIELD_NAME:
            name = upload_name(part.filename)
            target = directory / (STORED_STEM + stored_suffix(name, part.headers.get("Content-Type", "")))
            await _store(part, target, max_bytes, too_large, name)
            return Upload(target, name)
    raise RequestError(400, "multipart body has no field %r (the audio file)" % FIELD_NAME)


async def _store(stream, target: Path, max_bytes: int, too_large: str, name: str) -> None:
    """Copy a body or part to target chunk by chunk, stopping at max_bytes; an empty one is an error."""
    size = 0
    with target.open("wb") as file:
        while chunk := await _read_chunk(stream):
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, too_large)
            file.write(chunk)
    if size == 0:
        raise RequestError(400, "%s: empty file" % name)


async def _read_chunk(stream) -> bytes:
    """The next chunk of a request body (StreamReader) or a multipart part (BodyPartReader)."""
    if isinstance(stream, BodyPartReader):
        return await stream.read_chunk(CHUNK_BYTES)
    return await stream.read(CHUNK_BYTES)


def upload_name(filename: str | None) -> str:
    """The base name of a client's file name (no directories, printable, bounded), or RAW_NAME."""
    if not filename:
        return RAW_NAME
    base = PureWindowsPath(PurePosixPath(filename).name).name
    cleaned = "".join(ch for ch in base if ch.isprintable())[-NAME_CHARS_MAX:]
    return cleaned or RAW_NAME


def stored_suffix(name: str, content_type: str) -> str:
    """The suffix that tells serd's decoder the format when the content does not: the name's if it is an
    audio one, else the Content-Type's, else the name's (so that the error names it)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in WAV_FORMATS + DECODER_FORMATS:
        return suffix
    media_type = content_type.split(";")[0].strip().lower()
    return CONTENT_TYPE_SUFFIXES.get(media_type, suffix if suffix.isascii() and suffix[1:].isalnum() else "")
