"""serd web's figures: POST /api/analyze latency on a 60 s file, 20 uploads at once, page weight, time to first chart, live-page CPU.

    python -m tools.bench.web [--manifest PATH] [--uploads 20] [--live-seconds 60] [--live-client page|sse]
                              [--only uploads|live-cpu] [--out docs/web_bench.json]

A real `serd web` (default [web] settings: max_concurrent 2) on a free loopback port; the 60 s WAV is
RAVDESS speech end to end. Latency: --uploads requests one after another (p50, p99), beside `serd
analyze --json` of the same file in a fresh process. At once: --uploads requests started together;
how many were answered 200, refused 503 (beyond max_concurrent), or lost (no answer, another status);
the server's RSS before and at its peak. Page weight: the bytes of / and every asset it loads.
Time to first chart: Debian's Chromium (Playwright) from choosing the file to the page's ready state.

Live-page CPU (key live_cpu): a real `serd run` with [web] listen on a free loopback port and one paced
file source ([source.NAME], realtime = yes, as tools.bench.sources) of RAVDESS speech, twice on the same
audio: once with no client, once with one client following GET /api/events for the whole stretch (the
/live page in headless Chromium, or with --live-client sse a plain HTTP reader of the stream). The
daemon's CPU (user + system, /proc/PID/stat) over --live-seconds of audio, starting LIVE_LEAD_S after
the server first answers (the same stretch of audio in both runs); the extra CPU-s per audio-s is the
difference. It is small beside run-to-run noise: measure on an idle machine, the load average is kept.

The results are merged into --out: keys a run did not measure (--only) keep their earlier figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from tools.bench.audio import DEFAULT_MANIFEST, REPO_DIR, load_bench_audio, write_wav
from tools.bench.proc import cpu_s, worker_env
from tools.bench.soak import rss_mb
from tools.bench.sources import STOP_TIMEOUT_S, config_text

log = logging.getLogger("tools.bench.web")

FILE_S = 60.0
URL_LINE = re.compile(r"^serd web: (http://\S+)", re.MULTILINE)
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"|from "(/static/[^"]+)"')  # what a page or a module loads
START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 120.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu"]
DEFAULT_OUT = REPO_DIR / "docs" / "web_bench.json"
LIVE_S = 60.0
LIVE_LEAD_S = 10.0  # from the server's first answer to the stopwatch: the client connects, the pipeline warms up
LIVE_TAIL_S = 10.0  # audio beyond the measured stretch, so that the file does not end inside it
LIVE_TARGET_CPU_S_PER_AUDIO_S = 0.0005  # issue 21's target for one open live page
POLL_S = 0.1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.web", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="MANIFEST.tsv of the speech")
    parser.add_argument("--uploads", type=int, default=20, help="requests in a row, and at once (default 20)")
    parser.add_argument("--live-seconds", type=float, default=LIVE_S, help="audio seconds of each live-CPU run (default %.0f)" % LIVE_S)
    parser.add_argument("--live-client", choices=("page", "sse"), default="page",
                        help="the client of the live-CPU run: /live in Chromium (default) or a plain reader of /api/events")
    parser.add_argument("--only", choices=("uploads", "live-cpu"), help="measure only these figures (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON, merged (default docs/web_bench.json)")
    return parser.parse_args(argv)


def start_web(scratch: Path) -> tuple[subprocess.Popen, str]:
    """serd web on a free port; (process, base URL) once it says where it listens."""
    stderr_path = scratch / "web.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "serd.cli", "web", "--listen", "127.0.0.1:0"],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = URL_LINE.search(stderr_path.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise RuntimeError("serd web exited: %s" % stderr_path.read_text())
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("serd web said no URL within %.0f s" % START_TIMEOUT_S)


def post(url: str, body: bytes) -> tuple[int, float]:
    """(status, seconds) of one raw-body POST /api/analyze; status 0 when no answer came."""
    request = urllib.request.Request(url + "api/analyze", data=body, headers={"Content-Type": "audio/wav"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def at_once(url: str, body: bytes, count: int, pid: int) -> dict:
    """count uploads started together: answers by status, and the server's peak RSS meanwhile."""
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        results.append(post(url, body))

    threads = [threading.Thread(target=one) for _ in range(count)]
    peak = rss_mb(pid) or 0.0
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss_mb(pid) or 0.0)
        time.sleep(0.02)
    statuses = [status for status, _ in results]
    return {"requests": count, "ok_200": statuses.count(200), "refused_503": statuses.count(503),
            "lost": count - statuses.count(200) - statuses.count(503), "server_rss_peak_mb": round(peak, 1)}


def page_weight(url: str, page: str = "") -> dict:
    """Bytes of a page and of every asset it loads (scripts, styles, the modules they import)."""
    sizes, pending = {}, ["/" + page]
    while pending:
        path = pending.pop()
        if path in sizes:
            continue
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=REQUEST_TIMEOUT_S) as response:
            content = response.read()
        sizes[path] = len(content)
        if path == "/" + page or path.endswith(".js"):
            pending += [a or b for a, b in ASSET.findall(content.decode())]
    return {"bytes": sum(sizes.values()), "files": dict(sorted(sizes.items()))}


def first_chart_s(url: str, wav: Path) -> float | None:
    """Seconds from choosing the file to the page's ready state in Chromium; None without Playwright or Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).is_file():
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            started = time.perf_counter()
            page.set_input_files("#file", str(wav))
            page.wait_for_selector("body[data-state=ready]", timeout=REQUEST_TIMEOUT_S * 1000)
            return time.perf_counter() - started
        finally:
            browser.close()


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


def live_run(folder: Path, wav: Path, kind: str, seconds: float) -> dict:
    """One `serd run` at real time with [web] listen, kind of client, CPU over seconds of audio."""
    port = free_port()
    config = live_config(folder, wav, port)
    load_before = os.getloadavg()[0]
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config)], cwd=REPO_DIR,
                               env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
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
            "no_client": alone, "one_client": followed, "extra_cpu_s_per_audio_s": round(extra, 5),
            "target_cpu_s_per_audio_s": LIVE_TARGET_CPU_S_PER_AUDIO_S}


def measure(manifest: Path, uploads: int) -> dict:
    """The upload, page-weight and first-chart figures of the module docstring."""
    with tempfile.TemporaryDirectory(prefix="serd-bench-web-") as scratch:
        folder = Path(scratch)
        audio = load_bench_audio(manifest, FILE_S).samples[: int(FILE_S * 16000)]
        wav = write_wav(folder / "sixty.wav", audio)
        body = wav.read_bytes()
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "serd.cli", "analyze", "--json", str(wav)], check=True, capture_output=True)
        analyze_s = time.perf_counter() - started
        process, url = start_web(folder)
        try:
            rss_before = rss_mb(process.pid)
            post(url, body)  # the first request loads the model
            times = [post(url, body)[1] for _ in range(uploads)]
            together = at_once(url, body, uploads, process.pid)
            weight = {"analysis": page_weight(url), "live": page_weight(url, "live")}
            chart_s = first_chart_s(url, wav)
            rss_after = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(10)
    return {"command": "python -m tools.bench.web", "file_s": FILE_S, "file_bytes": len(body),
            "latency_s": {"p50": round(float(np.percentile(times, 50)), 3), "p99": round(float(np.percentile(times, 99)), 3),
                          "requests": uploads},
            "serd_analyze_process_s": round(analyze_s, 3), "at_once": together,
            "server_rss_mb": {"idle": round(rss_before or 0.0, 1), "after": round(rss_after or 0.0, 1)},
            "page_weight": weight, "first_chart_s": round(chart_s, 3) if chart_s is not None else None}


def merge_into(out: Path, result: dict) -> None:
    """Write result into the JSON at out, keeping the keys it does not hold."""
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**earlier, **result}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    result = measure(args.manifest, args.uploads) if args.only != "live-cpu" else {}
    if args.only != "uploads":
        result["live_cpu"] = live_cpu(args.manifest, args.live_seconds, args.live_client)
    merge_into(args.out, result)
    print(json.dumps(result, indent=1))
    return 1 if result.get("at_once", {}).get("lost") else 0


if __name__ == "__main__":
    sys.exit(main())
