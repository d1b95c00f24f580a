"""serd web's figures: POST /api/analyze latency on a 60 s file, 20 uploads at once, page weight, time to first chart, live-page CPU.

    python -m tools.bench.web [--manifest PATH] [--uploads 20] [--live-seconds 60] [--live-client page|sse]
                              [--only uploads|live-cpu] [--out docs/web_bench.json]

A real `serd web` (default [web] settings: max_concurrent 2) on a free loopback port; the 60 s WAV is
RAVDESS speech end to end. Latency: --uploads requests one after another (p50, p99), beside `serd
analyze --json` of the same file in a fresh process. At once: --uploads requests started together;
how many were answered 200, refused 503 (beyond max_concurrent), or lost (no answer, another status);
the server's RSS before and at its peak. Page weight: the bytes of / and every asset it loads.
Time to first chart: Debian's Chromium (Playwright) from choosing the file to the page's ready state.

Live-page CPU (key live_cpu): tools/bench/web_live.py.

The results are merged into --out: keys a run did not measure (--only) keep their earlier figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
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
from tools.bench.soak import rss_mb
from tools.bench.web_live import CHROMIUM, LIVE_S, REQUEST_TIMEOUT_S, live_cpu

log = logging.getLogger("tools.bench.web")

FILE_S = 60.0
URL_LINE = re.compile(r"^serd web: (http://\S+)", re.MULTILINE)
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"|from "(/static/[^"]+)"')  # what a page or a module loads
START_TIMEOUT_S = 30.0
DEFAULT_OUT = REPO_DIR / "docs" / "web_bench.json"


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
