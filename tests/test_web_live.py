"""serd web's live view over real sockets: GET /api/events and /api/state fed by serd's own ZeroMQ publisher and by
real `serd run` daemons (restarted under it), and the same server inside `serd run` with [web] listen."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time

import pytest

from serd.config import load_config
from serd.events import EmotionChanged, SpeechEnded, SpeechStarted, Status
from serd.publish.zmq_pub import ZmqPublisher
from serd.web.live import LiveState
from tests.support_web import SERD, SseStream, free_port, request, start_web

WAIT_S = 20.0
CLIP_RUN_TIMEOUT_S = 60.0


def status(state="running", wall_time_s=None, **fields):
    return Status(device="kitchen", stream_time_s=1.0, wall_time_s=wall_time_s or time.time(), state=state, **fields)


def changed(label, previous="silence", wall_time_s=None, segment=1):
    probabilities = {} if label == "silence" else {label: 0.8, "neutral": 0.2}
    return EmotionChanged(device="kitchen", stream_time_s=2.0, wall_time_s=wall_time_s or time.time(), segment=segment, label=label,
                          previous=previous, confidence=1.0 if label == "silence" else 0.8, probabilities=probabilities)


def test_state_follows_speech_emotion_and_status():
    state = LiveState("tcp://daemon:5556", recent_s=60.0)
    now = time.time()
    events = [status("starting", now - 100), SpeechStarted(device="kitchen", stream_time_s=1.0, wall_time_s=now - 90, segment=7),
              changed("angry", wall_time_s=now - 2, segment=7)]
    for event in events:
        state.apply(event, event.to_dict())
    shown = state.to_dict()
    assert (shown["label"], shown["confidence"], shown["speech"], shown["segment"]) == ("angry", 0.8, True, 7)
    assert shown["emotion"] == events[2].to_dict() and shown["status"] == events[0].to_dict()
    assert shown["recent"] == [events[2].to_dict()], "the speech start 88 s before the last event is older than recent_s"
    for event in (SpeechEnded(device="kitchen", stream_time_s=3.0, wall_time_s=now - 1, segment=7, duration_s=2.0),
                  changed("silence", "angry", now - 1), status("running", now, audio_s=12.5, overruns=1, dropped={"zmq": 3})):
        state.apply(event, event.to_dict())
    shown = state.to_dict()
    assert (shown["label"], shown["speech"], shown["segment"], shown["events_received"]) == ("silence", False, None, 6)
    assert (shown["status"]["audio_s"], shown["status"]["overruns"], shown["status"]["dropped"]) == (12.5, 1, {"zmq": 3})
    assert [e["type"] for e in shown["recent"]] == ["emotion-changed", "speech-ended", "emotion-changed"]
    quiet = LiveState("in process", recent_s=0.2)
    quiet.apply(changed("sad"), changed("sad").to_dict())
    time.sleep(0.3)
    assert quiet.to_dict()["recent"] == [] and quiet.to_dict()["label"] == "sad", "the last minutes by the server's clock"


@pytest.fixture()
def tcp_endpoint():
    return "tcp://127.0.0.1:%d" % free_port()


@pytest.fixture()
def web_on(tmp_path):
    servers = []

    def start(endpoint, config_text=""):
        servers.append(start_web(tmp_path, config_text, "127.0.0.1:0", "--events", endpoint))
        return servers[-1]

    yield start
    for server in servers:
        assert server.stop() == 0


def publish_until_heard(publisher, stream, event, timeout_s=WAIT_S):
    """Publish event again until the stream carries it (a subscriber hears nothing before it has joined); its wire dict."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish(event)
        try:
            return stream.next(lambda m: m.event == "message" and m.json()["wall_time_s"] == event.wall_time_s, 0.3).json()
        except AssertionError:
            continue
    raise AssertionError("serd web never passed the event on")


def test_events_stream_what_serds_publisher_sends_and_state_follows(web_on, tcp_endpoint):
    server = web_on(tcp_endpoint)
    stream = SseStream(server.url + "api/events")
    publisher = ZmqPublisher(tcp_endpoint, "kitchen", high_water_mark=100)
    try:
        assert stream.response.status == 200 and stream.response.getheader("Content-Type").startswith("text/event-stream")
        first = status(audio_s=3.5, overruns=2, lost_samples=160, dropped={"zmq": 1})
        assert publish_until_heard(publisher, stream, first) == json.loads(json.dumps(first.to_dict()))
        assert stream.retry_ms == 2000, "the stream tells EventSource how soon to reconnect"
        angry = changed("angry")
        publisher.publish(angry)
        assert stream.next(lambda m: m.event == "message").json() == json.loads(json.dumps(angry.to_dict()))
        state = request(server.url + "api/state").body
        assert (state["label"], state["confidence"], state["speech"], state["connected"]) == ("angry", 0.8, True, True)
        assert state["emotion"] == angry.to_dict() and state["status"]["overruns"] == 2
        assert state["feed"] == tcp_endpoint and request(server.url + "api/health").body["live"]["clients"] == 1
    finally:
        publisher.close()
        stream.close()


def test_a_stream_hears_when_the_daemon_goes_and_comes_back(web_on, tcp_endpoint):
    server = web_on(tcp_endpoint)
    stream = SseStream(server.url + "api/events")
    try:
        publisher = ZmqPublisher(tcp_endpoint, "kitchen", high_water_mark=100)
        publish_until_heard(publisher, stream, status())
        publisher.close()
        gone = stream.next(lambda m: m.event == "feed").json()
        assert gone == {"feed": tcp_endpoint, "connected": False}
        assert request(server.url + "api/state").body["connected"] is False
        publisher = ZmqPublisher(tcp_endpoint, "kitchen", high_water_mark=100)
        assert stream.next(lambda m: m.event == "feed").json()["connected"] is True
        publish_until_heard(publisher, stream, changed("happy"))
        publisher.close()
        assert not stream.ended.is_set(), "the browser's stream stayed open throughout"
    finally:
        stream.close()


def run_daemon(tmp_path, endpoint, device, clip):
    """A real `serd run` of clip (as fast as it goes) publishing on endpoint; its exit status."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(SERD + ["run", "--source", "file:%s" % clip, "--zmq", endpoint, "--device-id", device],
                            capture_output=True, text=True, timeout=CLIP_RUN_TIMEOUT_S, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.returncode


def test_the_stream_survives_a_daemon_restart(web_on, tmp_path, ravdess_clip):
    endpoint = "ipc://%s" % (tmp_path / "run" / "events")
    server = web_on(endpoint)
    stream = SseStream(server.url + "api/events")
    try:
        for device in ("first", "second"):
            run_daemon(tmp_path, endpoint, device, ravdess_clip)
            events = stream.serd_events(lambda e: e["type"] == "status" and e["state"] == "stopping")
            assert {e["device"] for e in events} == {device}
            assert {"speech-started", "emotion-changed", "speech-ended"} <= {e["type"] for e in events}, "the daemon's whole run"
        state = request(server.url + "api/state").body
        assert (state["status"]["device"], state["status"]["state"], state["speech"]) == ("second", "stopping", False)
        assert {e["device"] for e in state["recent"]} == {"first", "second"}, "the timeline keeps both runs"
        assert not stream.ended.is_set()
    finally:
        stream.close()


def test_the_live_routes_keep_the_token_rule(web_on, tmp_path, tcp_endpoint):
    token_file = tmp_path / "token"
    token_file.write_text("live-token\n")
    server = web_on(tcp_endpoint, "[web]\ntoken_file = %s\n" % token_file)
    refused = SseStream(server.url + "api/events")
    assert refused.response.status == 401 and json.loads(refused.response.read())["error"].startswith("unauthorised")
    assert request(server.url + "api/state").status == 401
    assert request(server.url + "api/state?access_token=live-token").status == 401, "only the event stream takes a query token"
    assert request(server.url + "api/state", headers={"Authorization": "Bearer live-token"}).status == 200
    assert request(server.url + "live").status == 200, "the page itself needs no token"
    for stream in (SseStream(server.url + "api/events?access_token=live-token"),
                   SseStream(server.url + "api/events", {"Authorization": "Bearer live-token"})):
        assert stream.response.status == 200
        stream.close()


def test_keepalive_comments_and_a_stop_that_ends_the_streams(tmp_path):
    from serd.web.embedded import EmbeddedWeb

    web = EmbeddedWeb(load_config(overrides={"web": {"listen": "127.0.0.1:0"}}), keepalive_s=0.2)
    url = web.start()
    stream = SseStream(url + "api/events")
    try:
        time.sleep(1.0)
        assert stream.comments[0] == "serd events" and stream.comments[1:].count("keep-alive") >= 3
        started = time.monotonic()
        web.stop()
        assert stream.ended.wait(3.0) and time.monotonic() - started < 3.0, "stopping ends open streams at once"
    finally:
        stream.close()


def test_a_client_that_goes_away_is_forgotten_without_an_error(caplog):
    from serd.web.embedded import EmbeddedWeb

    web = EmbeddedWeb(load_config(overrides={"web": {"listen": "127.0.0.1:0"}}), keepalive_s=0.1)
    url = web.start()
    try:
        with caplog.at_level("DEBUG"):
            stream = SseStream(url + "api/events")
            assert stream.response.status == 200
            deadline = time.monotonic() + 5
            while web.feed.clients != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            stream.close()
            while web.feed.clients and time.monotonic() < deadline:
                time.sleep(0.02)
            assert web.feed.clients == 0, "the stream's handler ended at its next write"
    finally:
        web.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def serd_run_with_web(tmp_path, web_section, *args, stdin=subprocess.DEVNULL):
    """`serd run ... --no-zmq --stdout` with a [web] section; its process, and the file its stderr goes to."""
    config = tmp_path / "serd.conf"
    config.write_text("[web]\n%s\n" % web_section)
    stderr_path = tmp_path / "run.stderr"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(SERD + ["run", "--config", str(config), "--no-zmq", "--stdout", "--device-id", "inproc", *args],
                                   stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=env)
    return process, stderr_path


def wait_for_log(process, path, needle, timeout_s=WAIT_S):
    """The first stderr line holding needle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in path.read_text().splitlines() if needle in line]
        if lines:
            return lines[0]
        assert process.poll() is None, path.read_text()
        time.sleep(0.05)
    raise AssertionError("no %r in serd run's log: %s" % (needle, path.read_text()))


def test_web_listen_serves_the_daemons_own_events_inside_serd_run(tmp_path, ravdess_clip):
    from serd.audio import load_audio

    process, stderr_path = serd_run_with_web(tmp_path, "listen = 127.0.0.1:0", "--source", "stdin", stdin=subprocess.PIPE)
    try:
        url = wait_for_log(process, stderr_path, "web: serving on ").split("web: serving on ")[1].strip()
        assert request(url + "api/health").body["live"] == {"feed": "in process (serd run)", "connected": True, "clients": 0,
                                                           "skipped": 0}
        stream = SseStream(url + "api/events")
        process.stdin.write(load_audio(ravdess_clip).astype("<i2").tobytes())
        process.stdin.close()
        streamed = stream.serd_events(lambda e: e["type"] == "status" and e["state"] == "stopping")
        printed = [json.loads(line) for line in process.stdout]
        assert process.wait(CLIP_RUN_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert printed[0]["type"] == "status" and printed[0]["state"] == "starting", "sent before the stream connected"
    assert streamed == printed[1:], "the stream carries every event the daemon published, as it published it"
    assert {"speech-started", "emotion-changed", "speech-ended"} <= {e["type"] for e in streamed}
    assert stream.ended.wait(5.0), "the stream ends when the daemon stops"


@pytest.mark.parametrize(("web_section", "reason"), [
    ("listen = 127.0.0.1:%(busy)d", "web: cannot listen on 127.0.0.1:%(busy)d: Address already in use"),
    ("listen = 0.0.0.0:0", "web: refusing to listen on 0.0.0.0: it is not a loopback address"),
])
def test_a_web_view_that_cannot_start_is_an_error_status_not_a_dead_daemon(tmp_path, ravdess_clip, web_section, reason):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fields = {"busy": busy.getsockname()[1]}
        process, stderr_path = serd_run_with_web(tmp_path, web_section % fields, "--source", "file:%s" % ravdess_clip)
        printed = [json.loads(line) for line in process.stdout]
        assert process.wait(CLIP_RUN_TIMEOUT_S) == 0, stderr_path.read_text()
    errors = [e for e in printed if e["type"] == "status" and e["state"] == "error"]
    assert len(errors) == 1 and errors[0]["message"].startswith(reason % fields)
    assert "ERROR serd.daemon: " + reason % fields in stderr_path.read_text()
    assert "emotion-changed" in {e["type"] for e in printed}, "the daemon went on listening"


def test_serd_run_without_web_listen_never_loads_the_web_framework(tmp_path, ravdess_clip):
    script = ("import sys\nfrom serd.config import load_config\nfrom serd.daemon import Daemon\n"
              "config = load_config(overrides={'source': {'source': 'file:%s'}, 'zmq': {'enabled': False}})\n"
              "assert Daemon(config).run() == 0\nprint(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'serd.web'))))\n"
              % ravdess_clip)
    result = subprocess.run([SERD[0], "-c", script], capture_output=True, text=True, timeout=CLIP_RUN_TIMEOUT_S,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_slow_client_misses_events_and_the_others_do_not(caplog):
    import asyncio

    from serd.web.live import CLIENT_QUEUE_EVENTS, CLOSED, LiveFeed

    async def scenario():
        feed = LiveFeed("in process")
        with feed.subscription() as slow, feed.subscription() as reader:
            got = []
            for index in range(CLIENT_QUEUE_EVENTS + 10):
                feed.deliver(status(wall_time_s=1000.0 + index), status(wall_time_s=1000.0 + index).to_dict())
                got.append(await reader.get())
            assert slow.qsize() == CLIENT_QUEUE_EVENTS and len(got) == CLIENT_QUEUE_EVENTS + 10
            assert json.loads(got[-1].decode().removeprefix("data: "))["wall_time_s"] == 1000.0 + CLIENT_QUEUE_EVENTS + 9
            feed.close_clients()
            assert await reader.get() is CLOSED
            while (frame := slow.get_nowait()) is not CLOSED:
                assert frame.startswith(b"data: ")
        assert feed.clients == 0

    with caplog.at_level("WARNING", logger="serd.web"):
        asyncio.run(scenario())
    assert len([r for r in caplog.records if "reads too slowly" in r.getMessage()]) == 1, "one warning per spell"


@pytest.mark.parametrize(("endpoint", "line"), [
    ("bogus", "serd: error: --events 'bogus': must be ipc://PATH or tcp://HOST:PORT (the daemon's [zmq] endpoint)"),
    ("tcp://127.0.0.1:notaport", "serd: error: --events tcp://127.0.0.1:notaport: cannot connect: Invalid argument"),
])
def test_an_events_endpoint_zeromq_cannot_use_is_one_line(endpoint, line):
    result = subprocess.run(SERD + ["web", "--listen", "127.0.0.1:0", "--events", endpoint], capture_output=True, text=True,
                            timeout=CLIP_RUN_TIMEOUT_S, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and result.stderr.startswith(line), result.stderr


@pytest.mark.parametrize(("listen", "line"), [
    ("0.0.0.0:8765", "serd: error: [web] listen: refusing to listen on 0.0.0.0: it is not a loopback address"),
    ("nonsense", "serd: error: [web] listen: 'nonsense': must be HOST:PORT (e.g. 127.0.0.1:8765)"),
    ("127.0.0.1:8765", None),
])
def test_check_config_names_a_web_listen_serd_run_would_not_serve(tmp_path, listen, line):
    config = tmp_path / "serd.conf"
    config.write_text("[web]\nlisten = %s\n" % listen)
    result = subprocess.run(SERD + ["check-config", str(config)], capture_output=True, text=True, timeout=CLIP_RUN_TIMEOUT_S)
    if line is None:
        assert result.returncode == 0 and "listen = 127.0.0.1:8765" in result.stdout, result.stderr
    else:
        assert result.returncode == 1 and result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(line)


def test_events_offered_while_the_server_is_busy_arrive_in_order_and_the_excess_is_counted():
    import asyncio
    import threading

    from serd.web.live import PENDING_EVENTS_MAX, LiveFeed

    feed, loop = LiveFeed("in process"), asyncio.new_event_loop()
    busy, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        async def subscribe():
            feed.attach(asyncio.get_running_loop())
            context = feed.subscription()
            return context, context.__enter__()

        context, queue = asyncio.run_coroutine_threadsafe(subscribe(), loop).result(5)
        loop.call_soon_threadsafe(lambda: (busy.set(), release.wait(10)))  # the loop stalls, as under a long request
        assert busy.wait(5)
        for index in range(PENDING_EVENTS_MAX + 5):
            feed.offer(status(wall_time_s=2000.0 + index))
        assert feed.skipped == 5, "events beyond the backlog are counted, not silently lost"
        release.set()

        async def drain():
            frames = []
            while len(frames) < min(PENDING_EVENTS_MAX, queue.maxsize):
                frames.append(await asyncio.wait_for(queue.get(), 5))
            return frames

        frames = asyncio.run_coroutine_threadsafe(drain(), loop).result(10)
        times = [json.loads(f.decode().removeprefix("data: "))["wall_time_s"] for f in frames]
        assert times == [2000.0 + i for i in range(len(times))], "delivered once each, in the order offered"
        assert feed.state.events_received == PENDING_EVENTS_MAX, "the state took every event the loop was handed"
        loop.call_soon_threadsafe(context.__exit__, None, None, None)
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
