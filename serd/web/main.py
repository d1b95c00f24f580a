"""`serd web`: check the address and the token rule, load the model, then serve until SIGINT or SIGTERM."""

from __future__ import annotations

import importlib.util
import sys
from typing import TextIO

from serd.config import load_config
from serd.errors import SerdError
from serd.web.access import DEFAULT_LISTEN, parse_listen, required_token

EXTRA_MODULES = ("aiohttp",)


def run_web(listen: str | None, model_path: str | None, config_path: str | None, notices: TextIO = sys.stderr) -> int:
    """Serve the page and the API; exit 0 on SIGTERM, 2 on SIGINT (as the other commands)."""
    require_extra()
    config = load_config(config_path)
    address = parse_listen(listen or DEFAULT_LISTEN)
    token = required_token(address, config.web.token_file)
    from serd.web.server import serve  # the framework, only now
    from serd.web.service import Analyzer

    return serve(Analyzer(config, model_path), token, address, notices)


def require_extra() -> None:
    """A one-line error naming the missing package when the [web] extra is not installed."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SerdError("serd web needs the web extra: pip install 'serd[web]' (%s not installed)" % ", ".join(missing))
