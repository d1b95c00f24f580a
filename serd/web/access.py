"""Who may reach serd web: the listen address, the loopback rule and the bearer token. No framework imports."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from serd.errors import ConfigError, SerdError

DEFAULT_LISTEN = "127.0.0.1:8765"
LOOPBACK_NAMES = ("localhost",)
BEARER_PREFIX = "Bearer "


@dataclass(frozen=True)
class ListenAddress:
    """A host (name or address) and a TCP port (0: any free one)."""

    host: str
    port: int

    def url(self, port: int | None = None) -> str:
        """http://HOST:PORT/ with IPv6 addresses bracketed."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/" % (host, self.port if port is None else port)


def parse_listen(text: str) -> ListenAddress:
    """HOST:PORT or [IPv6]:PORT -> ListenAddress; anything else is a one-line error."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise SerdError("--listen %r: must be HOST:PORT (e.g. %s)" % (text, DEFAULT_LISTEN))
    return ListenAddress(host, int(port))


def is_loopback(host: str) -> bool:
    """True when every address host stands for is a loopback one (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SerdError("--listen: host %r does not resolve: %s" % (host, exc.strerror)) from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def load_token(path: str) -> str:
    """The bearer token: the file's first line, stripped; an unreadable or empty file is a one-line error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("[web] token_file: %s: cannot read: %s" % (path, getattr(exc, "strerror", None) or exc)) from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ConfigError("[web] token_file: %s: holds no token" % path)
    return token


def required_token(address: ListenAddress, token_file: str) -> str | None:
    """The token the API will require (None: none), or a one-line refusal to listen beyond loopback without one."""
    if token_file:
        return load_token(token_file)
    if not is_loopback(address.host):
        raise ConfigError("refusing to listen on %s: it is not a loopback address, and the API would be open to the network "
                          "without [web] token_file (a file holding a bearer token)" % address.host)
    return None


def authorised(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the token (always, when no token is required)."""
    if token is None:
        return True
    if not header or not header.startswith(BEARER_PREFIX):
        return False
    return hmac.compare_digest(header[len(BEARER_PREFIX):].strip().encode(), token.encode())
