"""ICE server URLs (RFC 7064 `stun:`, RFC 7065 `turn:`/`turns:`) and TURN REST credentials.

Theory of operation: `parse_ice_server_url()` applies webrtc-pc's "validate an ICE server
URL" steps (§4.4.1.x, run by the constructor and `setConfiguration`) to one URL and
returns what gathering needs: host, port (RFC 7064/7065 defaults 3478 and 5349) and the
transport to the server. `parse_ice_server()` does the same for one `RTCIceServer`
entry, including the credential checks that raise InvalidAccessError. The errors are
the W3C ones from `unbroken.errors`. `rest_credentials()` builds the time-limited
username/password pair of draft-uberti-rtcweb-turn-rest that coturn's `use-auth-secret`
checks. Pure functions: no I/O, no clock (`now` is passed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unbroken.errors import InvalidAccessError, NotSupportedError, SyntaxError_
from unbroken.stun import saslprep

DEFAULT_PORT = 3478  # RFC 7064 §3.1, RFC 7065 §3.1: stun and turn
DEFAULT_SECURE_PORT = 5349  # RFC 7065 §3.1: turns
MAX_USERNAME_BYTES = 508  # RFC 8489 §14.3: USERNAME is fewer than 509 bytes

# A reg-name host of RFC 3986 (unreserved and sub-delims, percent-encoding), or IPv4.
_REG_NAME = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class IceServerUrl:
    """One parsed `stun:`/`turn:`/`turns:` URL.

    `transport` is the transport to the server: "udp", "tcp" or "tls" (`turns:`), or
    "dtls" for `turns:...?transport=udp`, which is valid but not implemented (gathering
    reports it as an icecandidateerror instead of failing the whole configuration).
    """

    url: str
    scheme: str
    host: str
    port: int
    transport: str

    @property
    def is_turn(self) -> bool:
        """True for `turn:` and `turns:` URLs."""
        return self.scheme in ("turn", "turns")


@dataclass(frozen=True)
class TurnServer:
    """A TURN URL with the credentials of its `RTCIceServer` entry."""

    url: IceServerUrl
    username: str
    credential: str


def _syntax(url: str, why: str) -> SyntaxError_:
    return SyntaxError_(f"invalid ICE server URL {url!r}: {why}")


def _split_scheme(url: str) -> tuple[str, str]:
    """(lower-case scheme, rest) per the URL parser's scheme state; SyntaxError_ otherwise."""
    scheme, colon, rest = url.partition(":")
    if not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+\-.]*", scheme):
        raise _syntax(url, "no scheme")
    return scheme.lower(), rest


def _host_port(url: str, path: str, default_port: int) -> tuple[str, int]:
    """Host and port of an opaque path `host[:port]` (the `https://` reparse of webrtc-pc)."""
    if not path:
        raise _syntax(url, "empty host")
    if path.startswith("["):
        end = path.find("]")
        if end < 0:
            raise _syntax(url, "unclosed IPv6 literal")
        host, rest = path[1:end], path[end + 1 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _syntax(url, "bad IPv6 literal") from None
        if rest and not rest.startswith(":"):
            raise _syntax(url, "junk after the IPv6 literal")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = path.partition(":")
        port_text = port_text_raw if colon else None
        if not host or not _REG_NAME.match(host):
            raise _syntax(url, "bad host")
        host = host.lower()
    if port_text is None or port_text == "":
        return host, default_port
    if not _PORT.match(port_text) or int(port_text) > 0xFFFF:
        raise _syntax(url, "bad port")
    return host, int(port_text)


def parse_ice_server_url(url: str) -> IceServerUrl:
    """Validate one ICE server URL (webrtc-pc "validate an ICE server URL").

    SyntaxError_ for anything malformed; NotSupportedError for `stuns:`, a valid scheme
    this implementation does not speak.
    """
    if not isinstance(url, str):
        raise _syntax(repr(url), "not a string")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise _syntax(url, "whitespace or control character")
    scheme, rest = _split_scheme(url)
    if scheme not in ("stun", "stuns", "turn", "turns"):
        raise _syntax(url, f"scheme {scheme!r} is not stun, stuns, turn or turns")
    if "#" in rest:
        raise _syntax(url, "has a fragment")
    path, question, query = rest.partition("?")
    if "/" in path or "@" in path:
        raise _syntax(url, "path contains '/' or '@'")
    if scheme in ("stun", "stuns") and question:
        raise _syntax(url, "stun URLs take no query")
    if question and query not in ("transport=udp", "transport=tcp"):
        raise _syntax(url, "query is neither transport=udp nor transport=tcp")
    secure = scheme in ("stuns", "turns")
    host, port = _host_port(url, path, DEFAULT_SECURE_PORT if secure else DEFAULT_PORT)
    if scheme == "stuns":
        raise NotSupportedError(f"stuns: URLs are not supported: {url!r}")
    asked = query.partition("=")[2] if question else None
    if scheme == "turns":
        transport = "dtls" if asked == "udp" else "tls"
    elif scheme == "turn":
        transport = asked or "udp"
    else:
        transport = "udp"
    return IceServerUrl(url=url, scheme=scheme, host=host, port=port, transport=transport)


def _check_credential(value: Any, what: str, limit: int | None) -> str:
    """A username or credential that RFC 8489 §14.3 / RFC 8265 §4.1 accept; else raise."""
    if not isinstance(value, str) or not value:
        raise InvalidAccessError(f"TURN server entry needs a non-empty {what}")
    try:
        prepared = saslprep(value)
    except ValueError as exc:
        raise InvalidAccessError(f"TURN {what} is not a valid OpaqueString: {exc}") from None
    if not prepared or (limit is not None and len(prepared.encode("utf-8")) > limit):
        raise InvalidAccessError(f"TURN {what} is empty or too long")
    return value


def parse_ice_server(server: Mapping[str, Any]) -> list[IceServerUrl | TurnServer]:
    """Validate one `RTCIceServer` dictionary; STUN URLs come back bare, TURN ones with
    their credentials (webrtc-pc "set the configuration": SyntaxError_ for an empty or bad
    `urls`, InvalidAccessError for a TURN URL without a usable username or credential)."""
    urls = server.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, (list, tuple)) or not urls:
        raise SyntaxError_("RTCIceServer.urls is empty")
    result: list[IceServerUrl | TurnServer] = []
    for url in urls:
        parsed = parse_ice_server_url(url)
        if not parsed.is_turn:
            result.append(parsed)
            continue
        username = _check_credential(server.get("username"), "username", MAX_USERNAME_BYTES)
        credential = _check_credential(server.get("credential"), "credential", None)
        result.append(TurnServer(url=parsed, username=username, credential=credential))
    return result


def parse_ice_servers(servers: list[Mapping[str, Any]]) -> list[IceServerUrl | TurnServer]:
    """Every entry's URLs, in order: all of them are used, not only the first."""
    result: list[IceServerUrl | TurnServer] = []
    for server in servers:
        result.extend(parse_ice_server(server))
    return result


def rest_credentials(
    secret: str, user: str | None, now: float, ttl: int = 86400
) -> tuple[str, str]:
    """TURN REST credentials (draft-uberti-rtcweb-turn-rest §2.2): `<expiry>[:<user>]` and
    base64(HMAC-SHA1(secret, username)), the pair coturn's `use-auth-secret` accepts."""
    expiry = int(now) + int(ttl)
    username = f"{expiry}:{user}" if user else str(expiry)
    mac = hmac.digest(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return username, base64.b64encode(mac).decode("ascii")


def rest_expiry(username: str) -> int | None:
    """The expiry timestamp of a TURN REST username, None when it is not one."""
    head = username.partition(":")[0]
    return int(head) if head.isdigit() else None


__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SECURE_PORT",
    "IceServerUrl",
    "TurnServer",
    "parse_ice_server",
    "parse_ice_server_url",
    "parse_ice_servers",
    "rest_credentials",
    "rest_expiry",
]
