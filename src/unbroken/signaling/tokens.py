"""Join tokens: HMAC-SHA256 over room, peer and expiry, in the style of TURN REST credentials.

A token is `<expiry>:<peer>:<signature>`, where `expiry` is a Unix time in seconds and
the signature is base64url(HMAC-SHA256(secret, "<expiry>:<peer>:<room>")) without
padding (draft-uberti-behave-turn-rest §2.2 does the same with "<expiry>:<user>" as the
TURN username). The application's backend mints one per user and room with the secret
it shares with the signaling server; the server needs no user database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from .messages import BAD_TOKEN, ID_PATTERN, TOKEN_EXPIRED, ProtocolError


def _signature(secret: bytes, expiry: int, peer: str, room: str) -> str:
    mac = hmac.new(secret, f"{expiry}:{peer}:{room}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def mint_token(
    secret: str | bytes, room: str, peer: str, ttl: float = 3600.0, now: float | None = None
) -> str:
    """A token that lets `peer` join `room` until now + ttl seconds."""
    if not ID_PATTERN.match(room) or not ID_PATTERN.match(peer):
        raise ValueError("room and peer must match [A-Za-z0-9_.-]{1,64}")
    expiry = int((time.time() if now is None else now) + ttl)
    return f"{expiry}:{peer}:{_signature(_secret_bytes(secret), expiry, peer, room)}"


def verify_token(secret: str | bytes, token: str, room: str, now: float | None = None) -> str:
    """Check a token for `room`; return the peer id it names, or raise ProtocolError."""
    parts = token.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not ID_PATTERN.match(parts[1]):
        raise ProtocolError(BAD_TOKEN, "a token has the form <expiry>:<peer>:<signature>")
    expiry, peer, signature = int(parts[0]), parts[1], parts[2]
    expected = _signature(_secret_bytes(secret), expiry, peer, room)
    # Constant time, and checked before the expiry so a forged token learns nothing.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise ProtocolError(BAD_TOKEN, "the token's signature does not match this room")
    if expiry < (time.time() if now is None else now):
        raise ProtocolError(TOKEN_EXPIRED, "the token has expired")
    return peer
