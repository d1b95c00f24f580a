"""serd web's access rules: the listen address, what counts as loopback, the token file and the bearer header."""

import pytest

from serd.errors import ConfigError, SerdError
from serd.web.access import ListenAddress, authorised, is_loopback, load_token, parse_listen, required_token


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8765", "127.0.0.1", 8765), ("localhost:0", "localhost", 0), ("[::1]:9000", "::1", 9000), ("0.0.0.0:80", "0.0.0.0", 80),
])
def test_parse_listen(text, host, port):
    assert parse_listen(text) == ListenAddress(host, port)


@pytest.mark.parametrize("text", ["8765", "localhost", ":8765", "host:port", "127.0.0.1:65536", "127.0.0.1:-1"])
def test_parse_listen_refuses_what_is_not_host_port(text):
    with pytest.raises(SerdError, match=r"^--listen .*: must be HOST:PORT \(e\.g\. 127\.0\.0\.1:8765\)$"):
        parse_listen(text)


def test_url_brackets_ipv6():
    assert ListenAddress("::1", 8765).url() == "http://[::1]:8765/"
    assert ListenAddress("127.0.0.1", 0).url(4321) == "http://127.0.0.1:4321/"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("10.0.0.1", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_name_that_does_not_resolve_is_an_error():
    with pytest.raises(SerdError, match=r"^--listen: host 'no-such-host\.invalid' does not resolve"):
        is_loopback("no-such-host.invalid")


def test_token_is_the_first_line_stripped(tmp_path):
    path = tmp_path / "token"
    path.write_text("  abc123  \nignored\n")
    assert load_token(str(path)) == "abc123"
    path.write_text("\n  \n")
    with pytest.raises(ConfigError, match=r"holds no token$"):
        load_token(str(path))


def test_required_token(tmp_path):
    assert required_token(ListenAddress("127.0.0.1", 0), "") is None
    with pytest.raises(ConfigError, match=r"^refusing to listen on 0\.0\.0\.0: it is not a loopback address"):
        required_token(ListenAddress("0.0.0.0", 0), "")
    path = tmp_path / "token"
    path.write_text("t0ken\n")
    assert required_token(ListenAddress("0.0.0.0", 0), str(path)) == "t0ken"
    assert required_token(ListenAddress("127.0.0.1", 0), str(path)) == "t0ken", "a token set is required on loopback too"


def test_authorised():
    assert authorised(None, None)
    assert authorised("Bearer t0ken", "t0ken")
    assert not authorised(None, "t0ken")
    assert not authorised("Bearer other", "t0ken")
    assert not authorised("t0ken", "t0ken")
    assert not authorised("Basic t0ken", "t0ken")
