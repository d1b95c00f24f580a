"""The live page in Debian's headless Chromium (Playwright) against a real `serd web` following real `serd run` daemons.

SERD_WEB_LIVE_SCREENSHOT=PATH also saves the page, as the README shows it, to PATH.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from tests.support_web import SERD, free_port, request, start_web, system_chromium

WAIT_MS = 20000
RUN_TIMEOUT_S = 60.0
ANGRY_COLOUR = (0xE5, 0x48, 0x4D)  # charts.js's colour of angry, the fixture clip's emotion


@pytest.fixture(scope="module")
def browser():
    with system_chromium() as chromium:
        yield chromium


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], "the page's scripts raised"


def daemon(tmp_path, endpoint, device, clip, *args) -> subprocess.Popen:
    """A real `serd run` of clip publishing on endpoint."""
    return subprocess.Popen(SERD + ["run", "--source", "file:%s" % clip, "--zmq", endpoint, "--device-id", device, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def signed(value: float) -> str:
    """A number as the live page writes arousal and valence."""
    return ("−" if value < 0 else "+") + "%.2f" % abs(value)


def text(page, element_id: str) -> str:
    return page.inner_text("#" + element_id)


def painted_with(page, canvas_id: str, rgb: tuple[int, int, int]) -> bool:
    """Whether a canvas holds a pixel of that colour."""
    return page.evaluate("""([id, r, g, b]) => { const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === g && d[i + 2] === b && d[i + 3] === 255) return true;
        return false; }""", [canvas_id, *rgb])


def test_the_live_page_shows_a_daemons_events_and_the_next_daemons_without_a_reload(page, tmp_path, ravdess_clip):
    endpoint = "ipc://%s" % (tmp_path / "run" / "events")
    server = start_web(tmp_path, "", "127.0.0.1:0", "--events", endpoint)
    try:
        page.goto(server.url + "live")
        page.wait_for_selector("body[data-feed=open][data-daemon=away]", timeout=WAIT_MS)
        page.evaluate("window.sameDocument = true")
        first = daemon(tmp_path, endpoint, "first", ravdess_clip, "--realtime")
        page.wait_for_function("document.getElementById('speech').textContent === 'speech'", timeout=WAIT_MS)
        page.wait_for_function("!['–', 'silence'].includes(document.getElementById('label').textContent)", timeout=WAIT_MS)
        assert text(page, "label") == "angry" and text(page, "confidence").endswith("% confidence")
        angry = [e for e in request(server.url + "api/state").body["recent"] if e.get("label") == "angry"]
        if "arousal" in angry[0]:  # events carry the derived arousal and valence: the page shows those of the angry event it shows
            assert text(page, "affect") in {"arousal %s · valence %s" % tuple(signed(e[k]) for k in ("arousal", "valence")) for e in angry}
        assert page.locator("#bars li").count() == 7, "every class's probability"
        if os.environ.get("SERD_WEB_LIVE_SCREENSHOT"):
            page.screenshot(path=os.environ["SERD_WEB_LIVE_SCREENSHOT"], full_page=True)
        assert first.wait(RUN_TIMEOUT_S) == 0
        page.wait_for_function("document.getElementById('status-state').textContent === 'stopping'", timeout=WAIT_MS)
        state = request(server.url + "api/state").body
        assert text(page, "label") == state["label"] == "silence" and text(page, "speech") == "no speech"
        assert text(page, "status-audio") == "%.1f s" % state["status"]["audio_s"]
        assert text(page, "device") == "device first" and int(text(page, "event-count")) == state["events_received"]
        assert painted_with(page, "timeline", ANGRY_COLOUR), "the timeline shows the angry stretch"
        page.wait_for_selector("body[data-daemon=away]", timeout=WAIT_MS)
        seen = int(text(page, "event-count"))

        second = daemon(tmp_path, endpoint, "second", ravdess_clip)
        assert second.wait(RUN_TIMEOUT_S) == 0
        page.wait_for_function("document.getElementById('device').textContent === 'device second'", timeout=WAIT_MS)
        page.wait_for_function("document.getElementById('status-state').textContent === 'stopping'", timeout=WAIT_MS)
        assert int(text(page, "event-count")) > seen and page.evaluate("window.sameDocument") is True
    finally:
        server.stop()


def test_the_live_page_reconnects_to_a_restarted_server_by_itself(page, tmp_path):
    listen = "127.0.0.1:%d" % free_port()
    endpoint = "ipc://%s" % (tmp_path / "run" / "events")
    server = start_web(tmp_path, "", listen, "--events", endpoint)
    page.goto(server.url + "live")
    page.wait_for_selector("body[data-feed=open]", timeout=WAIT_MS)
    page.evaluate("window.sameDocument = true")
    server.stop()
    page.wait_for_selector("body[data-feed=reconnecting]", timeout=WAIT_MS)
    time.sleep(0.5)
    server = start_web(tmp_path, "", listen, "--events", endpoint)
    try:
        page.wait_for_function("document.body.dataset.feed === 'open' && window.sameDocument", timeout=WAIT_MS)
        assert request(server.url + "api/health").body["live"]["clients"] == 1, "the page's EventSource is back"
    finally:
        server.stop()


def test_the_live_page_loads_nothing_from_elsewhere_and_stays_small(page, tmp_path):
    server = start_web(tmp_path, "", "127.0.0.1:0", "--events", "ipc://%s" % (tmp_path / "none"))
    try:
        urls: list[str] = []
        page.on("request", lambda req: urls.append(req.url))
        page.goto(server.url + "live")
        page.wait_for_selector("body[data-feed=open]", timeout=WAIT_MS)
        assert urls and all(url.startswith(server.url) for url in urls), urls
        assets = ("live", "static/live.js", "static/live.css", "static/app.css", "static/charts.js")
        assert sum(len(urllib.request.urlopen(server.url + path, timeout=10).read()) for path in assets) < 100_000
    finally:
        server.stop()


def test_with_a_token_the_live_page_asks_for_it_and_streams_with_it(page, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("live-token\n")
    server = start_web(tmp_path, "[web]\ntoken_file = %s\n" % token_file, "127.0.0.1:0", "--events", "ipc://%s" % (tmp_path / "none"))
    try:
        page.goto(server.url + "live")
        page.wait_for_selector("#token-form:not([hidden])", timeout=WAIT_MS)
        assert page.get_attribute("body", "data-feed") == "connecting", "no stream without the token"
        page.fill("#token", "live-token")
        page.click("#token-form button")
        page.wait_for_selector("body[data-feed=open]", timeout=WAIT_MS)
        health = request(server.url + "api/health", headers={"Authorization": "Bearer live-token"}).body
        assert health["live"]["clients"] == 1
    finally:
        server.stop()
