"""serd web's HTTP API, over real HTTP to a real `serd web` subprocess: results equal serd analyze's, every error code, nothing kept."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import time
import wave
from urllib.parse import urlsplit

import numpy as np
import pytest

from serd.audio import load_audio
from tests.support_cli import serd
from tests.support_web import multipart, request, serd_analyze_json, start_web, upload

MAX_UPLOAD_MB = 1
LIMITS = "[web]\nmax_upload_mb = %d\nmax_concurrent = 1\n" % MAX_UPLOAD_MB
LONG_CLIP_S = 40  # 1.28 MB of 16 kHz int16: over the 1 MB limit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    web = start_web(tmp_path_factory.mktemp("web"), LIMITS)
    yield web
    assert web.stop() == 0, "SIGTERM ends serd web with status 0"


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory, ravdess_clip):
    """A corpus clip repeated to LONG_CLIP_S seconds, as 16 kHz mono PCM WAV (scratch space, not the project)."""
    samples = load_audio(ravdess_clip)
    repeated = np.tile(samples, LONG_CLIP_S * 16000 // len(samples) + 1)[: LONG_CLIP_S * 16000]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(repeated.astype("<i2").tobytes())
    return path


@pytest.fixture()
def truncated_flac(tmp_path, ravdess_clip):
    path = tmp_path / "cut.flac"
    path.write_bytes(ravdess_clip.read_bytes()[:5000])
    return path


def nothing_kept(server) -> bool:
    """The server's TMPDIR holds nothing once its responses are sent."""
    return list(server.temp_dir.iterdir()) == []


def cli_error(path) -> str:
    """serd analyze's one-line reason for a file it cannot analyse, naming the file by its base name."""
    result = serd("analyze", path, text=True)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    return line.removeprefix("serd: error: ").replace(str(path), path.name)


def test_analyze_multipart_returns_what_serd_analyze_prints_and_a_timeline(server, ravdess_clip):
    answer = upload(server.url, ravdess_clip)
    assert answer.status == 200, answer.body
    expected = serd_analyze_json(ravdess_clip)
    result = dict(answer.body)
    timeline = result.pop("timeline")
    assert result == {**expected, "file": ravdess_clip.name}
    assert len(timeline) == sum(segment["windows"] for segment in result["segments"]) > 0
    for row, following in zip(timeline, timeline[1:]):
        assert row["start_s"] < following["start_s"]
    for row in timeline:
        assert any(s["start_s"] <= row["start_s"] < row["end_s"] <= s["end_s"] for s in result["segments"])
        assert set(row["probabilities"]) == set(result["probabilities"])
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-2
    assert nothing_kept(server)


def test_raw_body_with_a_content_type_gives_the_same_analysis(server, ravdess_clip):
    answer = request(server.url + "api/analyze", ravdess_clip.read_bytes(), {"Content-Type": "audio/flac"})
    assert answer.status == 200, answer.body
    assert answer.body["file"] == "upload"
    assert answer.body["segments"] == serd_analyze_json(ravdess_clip)["segments"]


def test_display_views_span_the_clip(server, ravdess_clip):
    answer = upload(server.url, ravdess_clip, "?display=1")
    assert answer.status == 200, answer.body
    duration_s, views = answer.body["duration_s"], answer.body["display"]
    waveform = views["waveform"]
    assert len(waveform["min"]) == len(waveform["max"])
    assert abs(len(waveform["min"]) * waveform["seconds_per_column"] - duration_s) < waveform["seconds_per_column"] + 1e-6
    assert all(-1.0 <= low <= high <= 1.0 for low, high in zip(waveform["min"], waveform["max"]))
    mel = views["log_mel"]
    assert len(base64.b64decode(mel["cells"])) == mel["columns"] * mel["bands"] == mel["columns"] * 40
    assert abs(mel["columns"] * mel["seconds_per_column"] - duration_s) < 0.1
    assert "display" not in upload(server.url, ravdess_clip).body


def test_health(server):
    answer = request(server.url + "api/health")
    assert answer.status == 200
    assert answer.body["status"] == "ok" and answer.body["model"]["name"] == "serd-emotion"
    assert (answer.body["max_upload_mb"], answer.body["max_concurrent"], answer.body["analyses_running"]) == (MAX_UPLOAD_MB, 1, 0)


def test_truncated_file_is_400_with_the_cli_reason(server, truncated_flac):
    answer = upload(server.url, truncated_flac)
    assert (answer.status, answer.body) == (400, {"error": cli_error(truncated_flac)})
    assert "truncated" in answer.body["error"]
    assert nothing_kept(server)


def test_what_is_not_audio_is_415_with_the_cli_reason(server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n")
    answer = upload(server.url, notes)
    assert (answer.status, answer.body) == (415, {"error": cli_error(notes)})
    raw = request(server.url + "api/analyze", b"plain text", {"Content-Type": "text/plain"})
    assert raw.status == 415 and raw.body["error"].startswith("upload: unsupported format")
    assert nothing_kept(server)


def test_empty_or_missing_file_is_400(server, ravdess_clip):
    empty = request(server.url + "api/analyze", b"", {"Content-Type": "audio/wav"})
    assert (empty.status, empty.body) == (400, {"error": "upload: empty file"})
    body, headers = multipart("other", ravdess_clip.name, ravdess_clip.read_bytes())
    missing = request(server.url + "api/analyze", body, headers)
    assert missing.status == 400 and "no field 'file'" in missing.body["error"]


def test_over_max_upload_mb_is_413_by_length_and_by_count(server, long_wav):
    declared = upload(server.url, long_wav)
    assert declared.status == 413
    assert declared.body == {"error": "upload too large (1.3 MB): over [web] max_upload_mb = 1"}
    chunked = _chunked_post(server.url, long_wav.read_bytes(), "audio/wav")
    assert chunked == (413, {"error": "upload too large: over [web] max_upload_mb = 1"})
    assert nothing_kept(server)


def _chunked_post(url: str, data: bytes, content_type: str) -> tuple[int, dict]:
    """POST /api/analyze without a Content-Length (chunked), so only counting the bytes finds the size."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("POST", "/api/analyze", body=iter([data[i : i + 65536] for i in range(0, len(data), 65536)]),
                       headers={"Content-Type": content_type}, encode_chunked=True)
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_503_when_max_concurrent_analyses_run(server, ravdess_clip):
    holder = _hold_an_analysis(server.url)
    try:
        busy = upload(server.url, ravdess_clip)
        assert busy.status == 503
        assert busy.body == {"error": "busy: 1 analyses already running ([web] max_concurrent = 1); try again shortly"}
        assert busy.headers["Retry-After"] == "1"
        assert request(server.url + "api/health").body["analyses_running"] == 1
    finally:
        holder.close()
    assert _eventually(lambda: request(server.url + "api/health").body["analyses_running"] == 0)
    assert upload(server.url, ravdess_clip).status == 200
    assert _eventually(lambda: nothing_kept(server)), "an upload cut off mid-way leaves nothing behind"


def _hold_an_analysis(url: str) -> socket.socket:
    """A request that has sent its headers and part of its body, so that it holds its place at the gate."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: 100000\r\n\r\nRIFF")
    assert _eventually(lambda: request(url + "api/health").body["analyses_running"] == 1)
    return sock


def _eventually(check, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_unknown_api_paths_and_methods_answer_json(server):
    assert request(server.url + "api/nothing").body == {"error": "GET /api/nothing: not found"}
    wrong = request(server.url + "api/analyze")
    assert (wrong.status, wrong.body) == (405, {"error": "GET /api/analyze: method not allowed"})


def test_a_non_loopback_address_needs_a_token(tmp_path):
    (tmp_path / "plain.conf").write_text("")
    result = serd("web", "--listen", "0.0.0.0:0", "--config", tmp_path / "plain.conf", text=True, timeout_s=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "serd: error: refusing to listen on 0.0.0.0: it is not a loopback address, and the API would be open to the network "
        "without [web] token_file (a file holding a bearer token)"]


def test_with_a_token_every_api_request_needs_it(tmp_path, ravdess_clip):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    web = start_web(tmp_path, "[web]\ntoken_file = %s\n" % token_file, "0.0.0.0:0")
    try:
        local = web.url.replace("0.0.0.0", "127.0.0.1")
        assert "bearer token" in web.stderr_path.read_text()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            answer = request(local + "api/health", headers=headers)
            assert answer.status == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.body["error"].startswith("unauthorised")
        assert upload(local, ravdess_clip).status == 401
        assert request(local + "api/health", headers={"Authorization": "Bearer s3cret-token"}).status == 200
        assert upload(local, ravdess_clip, headers={"Authorization": "Bearer s3cret-token"}).status == 200
        assert request(local).status == 200, "the page itself holds no data and needs no token"
    finally:
        web.stop()


def test_an_unreadable_token_file_stops_serd_web_with_one_line(tmp_path):
    (tmp_path / "web.conf").write_text("[web]\ntoken_file = %s\n" % (tmp_path / "missing"))
    result = serd("web", "--config", tmp_path / "web.conf", text=True, timeout_s=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["serd: error: [web] token_file: %s: cannot read: No such file or directory"
                                                  % (tmp_path / "missing")]


def test_serd_run_never_imports_the_web_extra(ravdess_clip):
    code = ("import sys\nfrom serd.cli import main\n"
            "status = main(['run', '--source', 'file:%s', '--no-zmq', '--stdout'])\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' or m.startswith('serd.web'))\n"
            "sys.stderr.write('status %%d loaded %%r\\n' %% (status, loaded))\n" % ravdess_clip)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stderr.strip().splitlines()[-1] == "status 0 loaded []", result.stderr
    assert '"type": "speech-started"' in result.stdout
