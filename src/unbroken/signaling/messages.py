"""The signaling protocol's JSON messages: the schema, validated on arrival.

Theory of operation. Every WebSocket text frame is one JSON object with a `type`.
`parse(text)` checks it completely (size, JSON, type, every field's type and bounds,
no unknown fields) and returns it as a plain dict, or raises `ProtocolError` whose
`code` and message go back to the sender as `{"type": "error", ...}`. Nothing here does
I/O, so the schema is tested (and fuzzed) on its own. docs/signaling.md is the
reader's version of the tables below; keep the two in step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: Largest accepted text frame, in bytes (UTF-8). An SDP from Chromium with audio, video
#: and data is 5 to 10 KB; a candidate line a few hundred bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024

#: Room and peer ids: short, printable, no separators we use in keys or tokens.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

MAX_TOKEN_CHARS = 512
MAX_CANDIDATE_CHARS = 1024
MAX_MID_CHARS = 64
MAX_UFRAG_CHARS = 256
MAX_SEQ = 2**53 - 1  # exact in JavaScript numbers

# Error codes (docs/signaling.md, "Errors").
BAD_JSON = "bad-json"
NOT_TEXT = "not-text"
TOO_BIG = "too-big"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
NOT_JOINED = "not-joined"
ALREADY_JOINED = "already-joined"
ROOM_FULL = "room-full"
UNKNOWN_ROOM = "unknown-room"
SERVER_FULL = "server-full"
TOKEN_REQUIRED = "token-required"
BAD_TOKEN = "bad-token"
TOKEN_EXPIRED = "token-expired"
UNKNOWN_SESSION = "unknown-session"
PEER_IN_USE = "peer-in-use"
NO_PEER = "no-peer"
UNKNOWN_PEER = "unknown-peer"
RATE_LIMITED = "rate-limited"
REPLAYED = "replayed"
OUT_OF_ORDER = "out-of-order"
INTERNAL = "internal"

#: Messages a client may send, and the ones relayed to the other peers of its room.
CLIENT_TYPES = (
    "join",
    "leave",
    "ack",
    "description",
    "candidate",
    "end-of-candidates",
    "message",
)
RELAYED_TYPES = ("description", "candidate", "end-of-candidates", "message")
DESCRIPTION_TYPES = ("offer", "answer", "pranswer")

#: Fields every relayed message may carry besides its own.
_RELAY_COMMON = {"type", "to", "seq", "ack"}
_FIELDS: dict[str, set[str]] = {
    "join": {"type", "room", "peer", "token", "resume", "lastSeq", "create"},
    "leave": {"type"},
    "ack": {"type", "seq"},
    "description": _RELAY_COMMON | {"description"},
    "candidate": _RELAY_COMMON | {"candidate"},
    "end-of-candidates": _RELAY_COMMON | {"usernameFragment"},
    "message": _RELAY_COMMON | {"data"},
}
_CANDIDATE_FIELDS = {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}


@dataclass
class ProtocolError(Exception):
    """A message the server refuses: `code` is machine-readable, `message` for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_json(self, ref: Any = None) -> dict[str, Any]:
        """The `{"type": "error"}` message sent back to the sender."""
        out: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if ref is not None:
            out["ref"] = ref
        return out


def _bad(message: str) -> ProtocolError:
    return ProtocolError(BAD_MESSAGE, message)


def _opt_str(
    msg: dict[str, Any], key: str, limit: int, pattern: re.Pattern[str] | None = None
) -> None:
    value = msg.get(key)
    if value is None:
        if key in msg:
            raise _bad(f"{key} must be a string, not null")
        return
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    if len(value) > limit:
        raise _bad(f"{key} is longer than {limit} characters")
    if pattern is not None and not pattern.match(value):
        raise _bad(f"{key} must match {pattern.pattern}")


def _opt_int(msg: dict[str, Any], key: str) -> None:
    if key not in msg:
        return
    value = msg[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise _bad(f"{key} must be an integer from 0 to 2^53-1")


def _nullable_str(value: Any, key: str, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _bad(f"{key} must be null or a string of at most {limit} characters")


def validate(msg: Any, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Check one decoded client message against the schema; return it or raise."""
    if not isinstance(msg, dict):
        raise _bad("a message must be a JSON object")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise _bad("a message needs a string 'type'")
    allowed = _FIELDS.get(kind)
    if allowed is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}")
    unknown = set(msg) - allowed
    if unknown:
        names = ", ".join(sorted(repr(str(k)[:40]) for k in unknown)[:5])
        raise _bad(f"unknown fields in {kind!r}: {names}")
    if kind == "join":
        if "room" not in msg:
            raise _bad("join needs a 'room'")
        _opt_str(msg, "room", 64, ID_PATTERN)
        _opt_str(msg, "peer", 64, ID_PATTERN)
        _opt_str(msg, "token", MAX_TOKEN_CHARS)
        _opt_str(msg, "resume", MAX_TOKEN_CHARS)
        _opt_int(msg, "lastSeq")
        if "create" in msg and not isinstance(msg["create"], bool):
            raise _bad("create must be true or false")
        return msg
    if kind == "ack":
        if "seq" not in msg:
            raise _bad("ack needs a 'seq'")
        _opt_int(msg, "seq")
        return msg
    if kind == "leave":
        return msg
    # A relayed message.
    _opt_str(msg, "to", 64, ID_PATTERN)
    _opt_int(msg, "seq")
    _opt_int(msg, "ack")
    if kind == "description":
        desc = msg.get("description")
        if not isinstance(desc, dict) or set(desc) - {"type", "sdp"}:
            raise _bad("description must be an object with 'type' and 'sdp' only")
        if desc.get("type") not in DESCRIPTION_TYPES:
            raise _bad(f"description.type must be one of {', '.join(DESCRIPTION_TYPES)}")
        if not isinstance(desc.get("sdp"), str) or not desc["sdp"]:
            raise _bad("description.sdp must be a non-empty string")
    elif kind == "candidate":
        cand = msg.get("candidate")
        if not isinstance(cand, dict) or set(cand) - _CANDIDATE_FIELDS:
            raise _bad(
                "candidate must be an RTCIceCandidateInit object "
                "(candidate, sdpMid, sdpMLineIndex, usernameFragment)"
            )
        line = cand.get("candidate")
        if not isinstance(line, str) or not line or len(line) > MAX_CANDIDATE_CHARS:
            raise _bad(
                f"candidate.candidate must be a non-empty string of at most "
                f"{MAX_CANDIDATE_CHARS} characters (end-of-candidates has its own type)"
            )
        _nullable_str(cand.get("sdpMid"), "candidate.sdpMid", MAX_MID_CHARS)
        index = cand.get("sdpMLineIndex")
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 65536
        ):
            raise _bad("candidate.sdpMLineIndex must be null or an integer from 0 to 65535")
        if cand.get("sdpMid") is None and index is None:
            raise _bad("candidate needs sdpMid or sdpMLineIndex")
        _nullable_str(cand.get("usernameFragment"), "candidate.usernameFragment", MAX_UFRAG_CHARS)
    elif kind == "end-of-candidates":
        _nullable_str(msg.get("usernameFragment"), "usernameFragment", MAX_UFRAG_CHARS)
    elif kind == "message":
        if "data" not in msg:
            raise _bad("message needs 'data' (any JSON value)")
    return msg


def parse(text: str | bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Decode and validate one frame's text; raise ProtocolError with a clear message."""
    if isinstance(text, bytes):
        raise ProtocolError(NOT_TEXT, "send JSON in text frames, not binary ones")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(TOO_BIG, f"message of {size} bytes; the limit is {max_bytes}")
    try:
        decoded = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise ProtocolError(BAD_JSON, f"not valid JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise ProtocolError(BAD_JSON, "JSON nested too deeply") from None
    return validate(decoded, max_bytes)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def relayed(msg: dict[str, Any], sender: str) -> dict[str, Any]:
    """The message as its recipients get it: `from` added; client bookkeeping removed."""
    out = {k: v for k, v in msg.items() if k not in ("to", "seq", "ack")}
    out["from"] = sender
    return out


def dumps(msg: dict[str, Any]) -> str:
    """Compact JSON for the wire."""
    # ASCII escapes: a lone surrogate from a peer's JSON cannot then break UTF-8 encoding.
    return json.dumps(msg, separators=(",", ":"))
