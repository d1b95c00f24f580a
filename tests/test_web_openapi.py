"""serd web's OpenAPI description: every route the application has is described with its error bodies, and it is served."""

from __future__ import annotations

import json
import re

import pytest

from serd import __version__
from serd.config import load_config
from serd.events import from_dict
from serd.web.app import OPENAPI_PATH
from tests.support_web import request

SPEC = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
STATIC_PATH = "/static/{path}"
API_ERRORS = {"401", "404", "405", "500"}  # what any /api/ route can answer: no token, no such route, wrong method, a fault
ANALYZE_ERRORS = {"400", "413", "415", "503"}


@pytest.fixture(scope="module")
def web():
    from serd.web.embedded import EmbeddedWeb

    server = EmbeddedWeb(load_config(overrides={"web": {"listen": "127.0.0.1:0"}}))
    server.start()
    yield server
    server.stop()


def resolve(node):
    """A $ref'd object of the spec, or the node itself."""
    while isinstance(node, dict) and "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def routes_of(app) -> set[tuple[str, str]]:
    """(method, path) of every route the application answers (HEAD is aiohttp's, beside GET)."""
    found = set()
    for route in app.router.routes():
        path = STATIC_PATH if route.resource.canonical == "/static" else route.resource.canonical
        for method in ([route.method] if route.method != "*" else ["GET"]):
            if method != "HEAD":
                found.add((method.lower(), path))
    return found


def test_every_route_is_described_and_nothing_else():
    from serd.web.app import make_app
    from serd.web.live import LiveFeed
    from serd.web.service import Analyzer

    app = make_app(Analyzer(load_config(), None), None, LiveFeed("ipc:///nowhere"))
    described = {(method, path) for path, item in SPEC["paths"].items() for method in item}
    assert routes_of(app) == described


def test_every_api_error_is_described_as_the_error_body():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            if path.startswith("/api/"):
                assert API_ERRORS <= codes, (method, path)
            for code, response in operation["responses"].items():
                if path.startswith("/api/") and int(code) >= 400:
                    body = resolve(response)["content"]["application/json"]
                    assert resolve(body["schema"]) == SPEC["components"]["schemas"]["Error"], (method, path, code)
                    assert isinstance(body["example"]["error"], str) and "\n" not in body["example"]["error"]
    assert ANALYZE_ERRORS <= set(SPEC["paths"]["/api/analyze"]["post"]["responses"])
    assert "Retry-After" in SPEC["paths"]["/api/analyze"]["post"]["responses"]["503"]["headers"]


def test_every_reference_resolves():
    text = json.dumps(SPEC)
    for target in set(re.findall(r'"\$ref": "([^"]+)"', text)):
        assert resolve({"$ref": target}) is not None, target


def test_the_event_stream_example_carries_serd_events():
    example = SPEC["paths"]["/api/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["example"]
    messages = [block for block in example.split("\n\n") if block.startswith("data: ")]
    assert [from_dict(json.loads(block.removeprefix("data: "))).type for block in messages] == ["speech-started"]


def test_the_description_is_served_with_this_version(web):
    answer = request(web.url + "api/openapi.json")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.body == {**SPEC, "info": {**SPEC["info"], "version": __version__}}
