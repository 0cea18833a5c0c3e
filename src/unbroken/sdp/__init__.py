"""SDP for JSEP (RFC 8829 §5.8, RFC 8839, RFC 8843, RFC 8841): parse, check, write. Pure.

`parse(text)` turns SDP text into a `SessionDescription` (session-level fields and a list
of `MediaSection`s), checking the grammar of every line and raising `SdpError`, and only
`SdpError`, for anything malformed. `serialize(desc)` writes it back in a canonical order
with CRLF line ends; `parse(serialize(parse(x))) == parse(x)`. Unknown attributes and
lines are kept, in order, so a round trip loses nothing.

`validate_for_webrtc(desc)` applies the JSEP semantic checks (mid, ICE credentials,
fingerprint, setup per m-section in use, with session-level and BUNDLE-tag fallback);
it is separate from parsing so that a grammatically fine description can be inspected.
`ice_ufrags(text)` reads just the ICE ufrags, leniently (a new one means a restart).

Candidate lines are kept as raw attribute values: their grammar is the ICE layer's.
No I/O, no clock, no randomness.
"""

from __future__ import annotations

from unbroken.sdp.errors import SdpError
from unbroken.sdp.grammar import MAX_LINE_BYTES, MAX_MEDIA_SECTIONS, MAX_TOTAL_BYTES
from unbroken.sdp.model import DIRECTIONS, SETUP_ROLES, MediaSection, Origin, SessionDescription
from unbroken.sdp.parse import parse
from unbroken.sdp.serialize import serialize
from unbroken.sdp.ufrags import ice_ufrags
from unbroken.sdp.validate import validate_for_webrtc

__all__ = [
    "DIRECTIONS",
    "MAX_LINE_BYTES",
    "MAX_MEDIA_SECTIONS",
    "MAX_TOTAL_BYTES",
    "SETUP_ROLES",
    "MediaSection",
    "Origin",
    "SdpError",
    "SessionDescription",
    "ice_ufrags",
    "parse",
    "serialize",
    "validate_for_webrtc",
]
