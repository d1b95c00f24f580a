"""The aiohttp application: the pages and their assets, the API and its OpenAPI description; errors as JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from aiohttp import web

from serd import __version__
from serd.web.access import BEARER_PREFIX, authorised
from serd.web.live import LiveFeed
from serd.web.live_routes import FEED, KEEPALIVE_S, add_live_routes
from serd.web.service import Analyzer, RequestError
from serd.web.upload import receive

log = logging.getLogger("serd.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/"
TEMP_PREFIX = "serd-web-"
RETRY_AFTER_S = 1
TRUE_WORDS = ("1", "yes", "true")
ANALYZER = web.AppKey("analyzer", Analyzer)
TOKEN = web.AppKey("token", str)
QUERY_TOKEN = "access_token"  # an EventSource cannot send headers: GET /api/events may carry the token in the query
QUERY_TOKEN_PATHS = ("/api/events",)
OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"


def make_app(analyzer: Analyzer, token: str | None, feed: LiveFeed, keepalive_s: float = KEEPALIVE_S) -> web.Application:
    """Routes and middlewares; token: the bearer token every /api/ request must carry (None: none); feed: the live events."""
    app = web.Application(middlewares=[json_errors, bearer_token])
    app[ANALYZER] = analyzer
    app[TOKEN] = token
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/analyze", analyze)
    app.router.add_get("/api/openapi.json", openapi)
    add_live_routes(app, feed, keepalive_s)
    return app


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """{"error": message} with status."""
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """RequestError, and under /api/ any HTTP error, as {"error": "..."}; the unexpected as a 500 that says so."""
    try:
        return await handler(request)
    except RequestError as exc:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return error_response(exc.status, str(exc), headers)
    except web.HTTPException as exc:
        if not request.path.startswith(API_PREFIX) or exc.status < 400:
            raise
        return error_response(exc.status, "%s %s: %s" % (request.method, request.path, exc.reason.lower()))
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # a bug: logged with its traceback, answered in one line
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (the server log has the details)")


@web.middleware
async def bearer_token(request: web.Request, handler) -> web.StreamResponse:
    """/api/ requests need `Authorization: Bearer <token>` when a token is set (GET /api/events may carry it as
    ?access_token=); the pages and their assets do not."""
    token = request.app[TOKEN]
    header = request.headers.get("Authorization")
    if header is None and request.path in QUERY_TOKEN_PATHS and QUERY_TOKEN in request.query:
        header = BEARER_PREFIX + request.query[QUERY_TOKEN]
    if request.path.startswith(API_PREFIX) and not authorised(header, token):
        return error_response(401, "unauthorised: this server needs `Authorization: Bearer <token>` ([web] token_file)",
                              {"WWW-Authenticate": "Bearer"})
    return await handler(request)


async def page(request: web.Request) -> web.FileResponse:
    """The analysis page."""
    return web.FileResponse(STATIC_DIR / "index.html")


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (serd/web/openapi.json), with this serd's version."""
    spec = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    spec["info"]["version"] = __version__
    return web.json_response(spec)


async def health(request: web.Request) -> web.Response:
    """Version, model, how busy the server is, and where its live events come from."""
    feed = request.app[FEED]
    live = {"feed": feed.state.feed, "connected": feed.state.connected, "clients": feed.clients, "skipped": feed.skipped}
    return web.json_response({**request.app[ANALYZER].health(), "live": live})


async def analyze(request: web.Request) -> web.Response:
    """The uploaded file's analysis; the upload lives in a temporary directory removed before the response."""
    analyzer = request.app[ANALYZER]
    if not analyzer.gate.try_enter():
        raise RequestError(503, analyzer.busy_message())
    try:
        with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as directory:
            upload = await receive(request, Path(directory), analyzer.max_upload_bytes, analyzer.too_large_message(request.content_length))
            display = request.query.get("display", "").lower() in TRUE_WORDS
            result = await asyncio.get_running_loop().run_in_executor(None, analyzer.analyze, upload.path, upload.name, display)
    finally:
        analyzer.gate.leave()
    return web.json_response(result)
