"""ICE server URLs (RFC 7064/7065, webrtc-pc "validate an ICE server URL") and REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from unbroken.errors import InvalidAccessError, NotSupportedError, SyntaxError_
from unbroken.turn import TurnServer, parse_ice_server, parse_ice_server_url, parse_ice_servers
from unbroken.turn.url import rest_credentials, rest_expiry


@pytest.mark.parametrize(
    ("url", "host", "port", "transport"),
    [
        ("stun:stun.example.test", "stun.example.test", 3478, "udp"),
        ("stun:192.0.2.1:19302", "192.0.2.1", 19302, "udp"),
        ("turn:turn.example.org", "turn.example.org", 3478, "udp"),
        ("turn:Turn.Example.org:3479?transport=udp", "turn.example.org", 3479, "udp"),
        ("turn:192.0.2.1?transport=tcp", "192.0.2.1", 3478, "tcp"),
        ("turns:turn.example.org", "turn.example.org", 5349, "tls"),
        ("turns:turn.example.org:443?transport=tcp", "turn.example.org", 443, "tls"),
        ("turns:turn.example.org?transport=udp", "turn.example.org", 5349, "dtls"),
        ("turn:[2001:db8::1]:3478", "2001:db8::1", 3478, "udp"),
        ("TURN:[2001:DB8::1]", "2001:db8::1", 3478, "udp"),
    ],
)
def test_valid_urls(url: str, host: str, port: int, transport: str) -> None:
    parsed = parse_ice_server_url(url)
    assert (parsed.host, parsed.port, parsed.transport) == (host, port, transport)
    assert parsed.url == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "turn",
        "http://example.org",
        "turn://example.org",  # not an opaque path
        "turn:user@example.org",
        "turn:example.org/path",
        "turn:example.org#frag",
        "stun:example.org?transport=udp",  # stun takes no query
        "turn:example.org?transport=sctp",
        "turn:example.org?foo=bar",
        "turn:example.org:99999",
        "turn:example.org:12ab",
        "turn:",
        "turn::3478",
        "turn:[2001:db8::1",
        "turn:[not-ipv6]:3478",
        "turn:exa mple.org",
        "turn:example.org:3478:1",
    ],
)
def test_malformed_urls_raise_syntax_error(url: str) -> None:
    with pytest.raises(SyntaxError_):
        parse_ice_server_url(url)


def test_stuns_is_valid_but_not_supported() -> None:
    with pytest.raises(NotSupportedError):
        parse_ice_server_url("stuns:example.org")


def test_empty_urls_is_a_syntax_error() -> None:
    with pytest.raises(SyntaxError_):
        parse_ice_server({"urls": []})


@pytest.mark.parametrize(
    "entry",
    [
        {"urls": "turn:example.org"},
        {"urls": "turn:example.org", "username": "u"},
        {"urls": "turn:example.org", "credential": "p"},
        {"urls": "turns:example.org", "username": "", "credential": "p"},
        {"urls": "turn:example.org", "username": "u", "credential": "bad\u0007"},
        {"urls": "turn:example.org", "username": "x" * 509, "credential": "p"},
    ],
)
def test_turn_without_usable_credentials_is_invalid_access(entry: dict[str, str]) -> None:
    with pytest.raises(InvalidAccessError):
        parse_ice_server(entry)


def test_stun_needs_no_credentials_and_every_url_is_kept() -> None:
    servers = parse_ice_servers(
        [
            {"urls": "stun:stun.example.test"},
            {
                "urls": ["turns:turn.example.org", "turn:turn.example.net?transport=tcp"],
                "username": "user",
                "credential": "myPassword",
            },
        ]
    )
    assert [s.url if isinstance(s, TurnServer) else s for s in servers][0].host == (
        "stun.example.test"
    )
    turns = [s for s in servers if isinstance(s, TurnServer)]
    assert [t.url.transport for t in turns] == ["tls", "tcp"]
    assert all(t.username == "user" and t.credential == "myPassword" for t in turns)


def test_rest_credentials_match_the_draft_and_coturn() -> None:
    username, password = rest_credentials("s3cret", "fred", now=1000.0, ttl=86400)
    assert username == "87400:fred"
    expected = base64.b64encode(hmac.digest(b"s3cret", b"87400:fred", hashlib.sha1)).decode()
    assert password == expected
    assert rest_expiry(username) == 87400
    assert rest_credentials("s3cret", None, now=5.0, ttl=10)[0] == "15"
    assert rest_expiry("alice") is None
