"""serd web's live-page CPU: the daemon's extra CPU per audio second with one live page open (key live_cpu of
`python -m tools.bench.web`).

Live-page CPU (key live_cpu): a real `serd run` with [web] listen on a free loopback port and one paced
file source ([source.NAME], realtime = yes, as tools.bench.sources) of RAVDESS speech, twice on the same
audio: once with no client, once with one client following GET /api/events for the whole stretch (the
/live page in headless Chromium, or with --live-client sse a plain HTTP reader of the stream). The
daemon's CPU (user + system, /proc/PID/stat) over --live-seconds of audio, starting LIVE_LEAD_S after
the server first answers (the same stretch of audio in both runs); the extra CPU-s per audio-s is the
difference. It is small beside run-to-run noise: measure on an idle machine, the load average is kept.

On a machine of two or more cores the daemon runs on core 0 and the client (Chromium, or the reader)
on the others, in both runs: a browser sharing the daemon's core slows every wake-up of the daemon by
evicting its caches, a cost of where the page is viewed (usually another machine), not of serving it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tools.bench.audio import REPO_DIR, load_bench_audio, write_wav
from tools.bench.proc import cpu_s, worker_env
from tools.bench.sources import STOP_TIMEOUT_S, config_text

log = logging.getLogger("tools.bench.web")

REQUEST_TIMEOUT_S = 120.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu"]
LIVE_S = 60.0
LIVE_LEAD_S = 10.0  # from the server's first answer to the stopwatch: the client connects, the pipeline warms up
LIVE_TAIL_S = 10.0  # audio beyond the measured stretch, so that the file does not end inside it
LIVE_TARGET_CPU_S_PER_AUDIO_S = 0.0005  # issue 21's target for one open live page
POLL_S = 0.1


def free_port() -> int:
    """A TCP port nobody listens on now (on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def live_config(folder: Path, wav: Path, port: int) -> Path:
    """tools.bench.sources' config of one paced file source, plus [web] listen on port."""
    config = folder / "live.conf"
    config.write_text(config_text(folder, [wav]) + "[web]\nlisten = 127.0.0.1:%d\n" % port)
    return config


def get_json(url: str) -> dict | None:
    """GET a JSON answer; None when nobody answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
            return json.loads(response.read())
    except OSError:
        return None


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Return once the daemon's web server answers GET /api/health; RuntimeError if the daemon ends or says nothing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if get_json(url + "api/health") is not None:
            return
        if process.poll() is not None:
            raise RuntimeError("serd run exited %s before serving: %s" % (process.returncode, process.stderr.read().decode().strip()))
        time.sleep(POLL_S)
    raise RuntimeError("serd run served nothing on %s within %.0f s" % (url, timeout_s))


class StreamReader:
    """GET /api/events over plain HTTP, read to its end in a thread, counting the data lines (serd's events)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_S)
        self._connection.request("GET", "/api/events")
        self._response = self._connection.getresponse()
        self.events = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError, http.client.HTTPException):
            for line in self._response:
                self.events += line.startswith(b"data:")

    def close(self) -> None:
        """Drop the connection."""
        with contextlib.suppress(OSError):
            if self._connection.sock is not None:
                self._connection.sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()


@contextlib.contextmanager
def stream_client(url: str):
    """A plain reader of the event stream; yields a function saying how many events it has read."""
    reader = StreamReader(url)
    try:
        yield lambda: reader.events
    finally:
        reader.close()


@contextlib.contextmanager
def page_client(url: str):
    """The /live page in Debian's headless Chromium, once its event stream is open; yields the page's event count."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "live")
            page.wait_for_selector("body[data-feed=open]", timeout=REQUEST_TIMEOUT_S * 1000)
            yield lambda: int(page.inner_text("#event-count"))
        finally:
            browser.close()


def live_client(kind: str, url: str):
    """The context of one run's client: none, the page, or a plain stream reader."""
    if kind == "none":
        return contextlib.nullcontext(lambda: 0)
    return page_client(url) if kind == "page" else stream_client(url)


def stop_daemon(process: subprocess.Popen) -> None:
    """SIGTERM, then wait (bounded); kill if it does not end."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measured_stretch(process: subprocess.Popen, url: str, kind: str, seconds: float) -> dict:
    """Once serving: the client connects, then the daemon's CPU over seconds, from LIVE_LEAD_S after the first answer."""
    wait_until_serving(url, process, REQUEST_TIMEOUT_S)
    lead_end_s = time.monotonic() + LIVE_LEAD_S
    with live_client(kind, url) as received:
        clients = get_json(url + "api/health")["live"]["clients"]
        if time.monotonic() > lead_end_s:
            log.warning("the %s client took longer than the %.0f s lead: the stretch starts later in the audio", kind, LIVE_LEAD_S)
        time.sleep(max(0.0, lead_end_s - time.monotonic()))
        start_cpu_s, start_s = cpu_s(process.pid), time.monotonic()
        time.sleep(seconds)
        used_cpu_s, audio_s = cpu_s(process.pid) - start_cpu_s, time.monotonic() - start_s
        events = received()
    if process.poll() is not None:
        raise RuntimeError("serd run ended inside the measured stretch: %s" % process.stderr.read().decode().strip())
    return {"client": kind, "sse_clients": clients, "events_received": events, "cpu_s": round(used_cpu_s, 3),
            "audio_s": round(audio_s, 2), "cpu_s_per_audio_s": round(used_cpu_s / audio_s, 5)}


def core_plan() -> tuple[set[int], set[int]] | None:
    """(the daemon's cores, the client's cores) when there are two or more to split, else None."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return ({cores[0]}, set(cores[1:])) if len(cores) >= 2 else None


@contextlib.contextmanager
def client_cores(plan: tuple[set[int], set[int]] | None):
    """This process (and the browser it starts) on the client's cores while the block runs."""
    if plan is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, plan[1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def live_run(folder: Path, wav: Path, kind: str, seconds: float) -> dict:
    """One `serd run` at real time with [web] listen, kind of client, CPU over seconds of audio."""
    port = free_port()
    config = live_config(folder, wav, port)
    load_before = os.getloadavg()[0]
    plan = core_plan()
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config)], cwd=REPO_DIR,
                               env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=(lambda: os.sched_setaffinity(0, plan[0])) if plan else None)
    try:
        with client_cores(plan):
            run = measured_stretch(process, "http://127.0.0.1:%d/" % port, kind, seconds)
    finally:
        stop_daemon(process)
    log.info("client %s: %.5f CPU-s per audio-s (%.3f CPU-s over %.1f s, %d events read)",
             kind, run["cpu_s_per_audio_s"], run["cpu_s"], run["audio_s"], run["events_received"])
    return {**run, "load_average_1m_before": round(load_before, 2)}


def live_cpu(manifest: Path, seconds: float, kind: str) -> dict:
    """The daemon's CPU per audio second with no client and with one, on the same audio; the extra is the difference."""
    audio = load_bench_audio(manifest, LIVE_LEAD_S + seconds + LIVE_TAIL_S)
    with tempfile.TemporaryDirectory(prefix="serd-bench-web-live-") as scratch:
        folder = Path(scratch)
        wav = write_wav(folder / "speech.wav", audio.samples)
        alone, followed = live_run(folder, wav, "none", seconds), live_run(folder, wav, kind, seconds)
    extra = followed["cpu_s_per_audio_s"] - alone["cpu_s_per_audio_s"]
    return {"command": "python -m tools.bench.web --only live-cpu", "what": "serd run's CPU-s per audio-s with [web] listen, "
            "no client vs one client of GET /api/events, one paced file source", "cpu_count": os.cpu_count(),
            "audio": "%d RAVDESS clips, %.0f s" % (len(audio.clip_paths), audio.duration_s), "seconds_measured": seconds,
            "cores": ({"daemon": sorted(plan[0]), "client": sorted(plan[1])} if (plan := core_plan()) else "shared"),
            "no_client": alone, "one_client": followed, "extra_cpu_s_per_audio_s": round(extra, 5),
            "target_cpu_s_per_audio_s": LIVE_TARGET_CPU_S_PER_AUDIO_S}
