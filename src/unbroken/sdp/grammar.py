"""Grammar pieces shared by the parser and the serializer: limits, regexes, value checks.

Every pattern here is anchored, uses explicit ASCII classes (never `\\d` or `\\s`, which
match non-ASCII digits and spaces) and has no nested repetition, so matching is linear in
the line length. Integers go through `to_int`, which bounds their digit count first:
Python's `int()` refuses long digit strings with a ValueError, and huge values are
never legitimate in SDP anyway.
"""

from __future__ import annotations

import re

from unbroken.sdp.errors import SdpError, show

MAX_LINE_BYTES = 64 * 1024
"""A single line longer than this (in UTF-8 bytes) is rejected."""
MAX_TOTAL_BYTES = 1024 * 1024
"""A description longer than this (in UTF-8 bytes) is rejected."""
MAX_MEDIA_SECTIONS = 1000
"""More m= lines than this are rejected."""

# RFC 4566 §9: token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
# RFC 4566 §9: non-ws-string = 1*(VCHAR / %x80-FF)
_NON_WS = r"[^\x00-\x20\x7f]+"

TOKEN_RE = re.compile(_TOKEN)
NON_WS_RE = re.compile(_NON_WS)
LINE_TYPE_RE = re.compile(r"[a-z]")

ORIGIN_RE = re.compile(rf"({_NON_WS}) ([0-9]+) ([0-9]+) ({_TOKEN}) ({_TOKEN}) ({_NON_WS})")
CONNECTION_RE = re.compile(rf"{_TOKEN} {_TOKEN} {_NON_WS}")
BANDWIDTH_RE = re.compile(rf"{_TOKEN}:[0-9]{{1,20}}")
TIMING_RE = re.compile(r"[0-9]{1,20} [0-9]{1,20}")
MEDIA_RE = re.compile(
    rf"({_TOKEN}) ([0-9]+)(?:/([0-9]+))? ({_TOKEN}(?:/{_TOKEN})*)((?: {_TOKEN})+)"
)

# RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"; ufrag 4*256, password 22*256.
UFRAG_RE = re.compile(r"[A-Za-z0-9+/]{4,256}")
PWD_RE = re.compile(r"[A-Za-z0-9+/]{22,256}")
# RFC 8122 §5: fingerprint = 2UHEX *(":" 2UHEX); lower case accepted and upper-cased.
FINGERPRINT_RE = re.compile(rf"({_TOKEN}) ([0-9A-Fa-f]{{2}}(?::[0-9A-Fa-f]{{2}})*)")
FINGERPRINT_BYTES = {
    "md2": 16,
    "md5": 16,
    "sha-1": 20,
    "sha-224": 28,
    "sha-256": 32,
    "sha-384": 48,
    "sha-512": 64,
}

RTPMAP_RE = re.compile(rf"([0-9]{{1,3}}) ({_TOKEN}/[0-9]{{1,10}}(?:/{_TOKEN})?)")
FMTP_RE = re.compile(rf"({_TOKEN}) (.+)")
RTCP_FB_RE = re.compile(r"(\*|[0-9]{1,3}) ([^ ].*)")
EXTMAP_RE = re.compile(
    rf"[0-9]{{1,5}}(?:/(?:sendrecv|sendonly|recvonly|inactive))? {_NON_WS}(?: .*)?"
)
SSRC_RE = re.compile(rf"([0-9]{{1,10}}) {_TOKEN}(?::.*)?")
SSRC_GROUP_RE = re.compile(rf"{_TOKEN}((?: [0-9]{{1,10}})*)")
MSID_RE = re.compile(rf"{_TOKEN}(?: {_TOKEN})?")

MAX_SSRC = 2**32 - 1
MAX_MESSAGE_SIZE = 2**64 - 1


def to_int(text: str, low: int, high: int, what: str, line: int | None) -> int:
    """Parse a decimal integer in [low, high]; any other text is an SdpError."""
    if not text or len(text) > 24 or not text.isascii() or not text.isdigit():
        raise SdpError(f"{what} must be an integer, got {show(text)}", line)
    value = int(text)
    if not low <= value <= high:
        raise SdpError(f"{what} {value} is out of range {low}..{high}", line)
    return value
