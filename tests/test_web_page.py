"""The analysis page in a real browser (Debian's headless Chromium, driven by Playwright) against a real `serd web`.

SERD_WEB_SCREENSHOT=PATH also saves the page, as the README shows it, to PATH.
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from serd.audio import load_audio
from tests.support_web import request, serd_analyze_json, start_web, system_chromium, upload

SECOND_CLIP = "03-01-03-02-01-01-01.flac"  # happy, after the angry fixture clip
PAUSE_S = 1.5  # silence between the two clips: two speech segments
READY_TIMEOUT_MS = 30000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    web = start_web(tmp_path_factory.mktemp("web"))
    yield web
    web.stop()


@pytest.fixture(scope="module")
def browser():
    with system_chromium() as chromium:
        yield chromium


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], "the page's scripts raised"


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory, ravdess_clip) -> Path:
    """Two corpus clips with a pause between them, as a WAV in scratch space (never in the project)."""
    first, second = load_audio(ravdess_clip), load_audio(ravdess_clip.parent / SECOND_CLIP)
    samples = np.concatenate([first, np.zeros(int(PAUSE_S * 16000), dtype=np.int16), second])
    path = tmp_path_factory.mktemp("clips") / "two-sentences.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def analysed(page, server, path: Path) -> None:
    """Open the page, choose the file, wait for the charts."""
    page.goto(server.url)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)


def test_the_page_shows_what_serd_analyze_says(page, server, two_sentences):
    expected = serd_analyze_json(two_sentences)
    assert len(expected["segments"]) >= 2, "the pause splits the file into two segments"
    analysed(page, server, two_sentences)
    assert page.inner_text("#overall-label") == expected["label"]
    assert page.inner_text("#overall-confidence") == "%d %%" % round(expected["confidence"] * 100)
    assert page.inner_text("#overall-arousal") == "%+.2f" % expected["arousal"]
    assert page.inner_text("#overall-valence") == "%+.2f" % expected["valence"]
    assert page.inner_text("#segment-count") == str(len(expected["segments"]))
    assert page.inner_text("#window-count") == str(sum(s["windows"] for s in expected["segments"]))
    rows = page.locator("#segment-table tbody tr")
    assert rows.count() == len(expected["segments"])
    assert [rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())] == [s["label"] for s in expected["segments"]]
    assert [rows.nth(i).locator("td").nth(5).inner_text() for i in range(rows.count())] == [
        "%+.2f" % s["arousal"] for s in expected["segments"]]
    for canvas in ("waveform", "spectrogram", "segments", "probabilities", "axis"):
        assert _painted(page, canvas), "%s canvas is blank" % canvas
    if os.environ.get("SERD_WEB_SCREENSHOT"):
        page.screenshot(path=os.environ["SERD_WEB_SCREENSHOT"], full_page=True)


def _painted(page, canvas_id: str) -> bool:
    """Whether a canvas has any non-transparent pixel."""
    return page.evaluate("""id => { const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }""", canvas_id)


def test_clicking_seeks_and_the_cursor_follows_playback(page, server, two_sentences):
    analysed(page, server, two_sentences)
    duration_s = float(page.inner_text("#duration").split()[0])
    box = page.locator("#views").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    start_s = page.evaluate("document.getElementById('player').currentTime")
    assert abs(start_s - 0.25 * duration_s) < 0.3
    page.wait_for_function("document.getElementById('player').currentTime > %f" % (start_s + 0.5), timeout=10000)
    cursor_percent = float(page.eval_on_selector("#cursor", "e => e.style.left").rstrip("%"))
    assert cursor_percent > 25.0 + 0.4 / duration_s * 100, "the cursor moved on with the audio"


def test_download_gives_the_api_answer(page, server, ravdess_clip):
    analysed(page, server, ravdess_clip)
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == ravdess_clip.stem + ".serd.json"
    downloaded = json.loads(Path(download.value.path()).read_text())
    assert downloaded == upload(server.url, ravdess_clip).body
    assert "display" not in downloaded


def test_a_refused_file_shows_the_servers_reason(page, server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio\n")
    page.goto(server.url)
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("body[data-state=error]", timeout=READY_TIMEOUT_MS)
    assert page.inner_text("#status") == upload(server.url, notes).body["error"]


def test_the_page_loads_nothing_from_elsewhere_and_stays_small(page, server):
    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url))
    page.goto(server.url)
    page.wait_for_load_state("networkidle")
    assert urls and all(url.startswith(server.url) for url in urls), urls
    weight = sum(len(_get(server.url + path)) for path in ("", "static/app.js", "static/charts.js", "static/app.css"))
    assert weight < 300_000


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read()


def test_with_a_token_the_page_asks_for_it(browser, tmp_path, ravdess_clip):
    token_file = tmp_path / "token"
    token_file.write_text("page-token\n")
    web = start_web(tmp_path, "[web]\ntoken_file = %s\n" % token_file)
    context = browser.new_context()
    try:
        tab = context.new_page()
        assert request(web.url).status == 200, "the page itself needs no token"
        tab.goto(web.url)
        tab.wait_for_selector("#token-form:not([hidden])")
        tab.fill("#token", "page-token")
        tab.click("#token-form button")
        tab.wait_for_function("document.getElementById('model').textContent.includes('serd-emotion')")
        tab.set_input_files("#file", str(ravdess_clip))
        tab.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)
        assert tab.inner_text("#overall-label") == serd_analyze_json(ravdess_clip)["label"]
    finally:
        context.close()
        web.stop()
