"""`serd web`: check the address and the token rule, load the model, then serve until SIGINT or SIGTERM."""

from __future__ import annotations

import importlib.util
import sys
from typing import TextIO

from serd.config import load_config, zmq_endpoint
from serd.errors import SerdError
from serd.web.access import DEFAULT_LISTEN, parse_listen, required_token

EXTRA_MODULES = ("aiohttp",)
EVENT_SCHEMES = ("ipc://", "tcp://")


def run_web(listen: str | None, model_path: str | None, config_path: str | None, events: str | None = None,
            notices: TextIO = sys.stderr) -> int:
    """Serve the pages and the API, the live view following the daemon at events (default: the config's [zmq]
    endpoint); exit 0 on SIGTERM, 2 on SIGINT (as the other commands)."""
    require_extra()
    config = load_config(config_path)
    address = parse_listen(listen or DEFAULT_LISTEN)
    token = required_token(address, config.web.token_file)
    endpoint = events or zmq_endpoint(config)
    if not endpoint.startswith(EVENT_SCHEMES):
        raise SerdError("--events %r: must be ipc://PATH or tcp://HOST:PORT (the daemon's [zmq] endpoint)" % endpoint)
    from serd.web.server import serve  # the framework, only now
    from serd.web.service import Analyzer

    return serve(Analyzer(config, model_path), token, address, notices, endpoint)


def require_extra() -> None:
    """A one-line error naming the missing package when the [web] extra is not installed."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SerdError("serd web needs the web extra: pip install 'serd[web]' (%s not installed)" % ", ".join(missing))
