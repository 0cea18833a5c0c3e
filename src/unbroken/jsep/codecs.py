"""Codec-level SDP values (fmtp, extmap, H264 profiles) as text: pure, no aiortc.

These read and write the text of one fmtp or extmap value and name an H264 profile. They
take untrusted text (a description may come from anywhere) and raise
MediaNegotiationError, never IndexError or a bare ValueError, for text they cannot read.
The codec objects themselves (rtpmap, rtcp-fb, our codec table) are aiortc's, so they
live in the peer connection layer (peerconnection/media.py). No I/O, no clock.
"""

from __future__ import annotations

from unbroken.jsep.errors import MediaNegotiationError

MEDIA_KINDS = ("audio", "video")
"""The RTP media kinds we can send and receive."""

ParametersDict = dict[str, int | str | None]
"""aiortc's type of codec parameters (fmtp), re-declared because aiortc is untyped."""

STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
    34: ("H263", 90000, None),
}
"""Static payload types that may appear without an a=rtpmap (RFC 3551 §6, tables 4 and 5)."""

INT_PARAMETERS = frozenset(
    ("apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "ptime", "stereo", "useinbandfec")
)
"""fmtp parameters stored as int, as aiortc does: its sender and receiver compare `apt`
with payload types."""

H264_DEFAULT_PROFILE_LEVEL_ID = "42e01f"
"""What a missing profile-level-id means. RFC 6184 §8.1 says 420010, but libwebrtc (and
aiortc) read it as constrained baseline level 3.1 for compatibility with old endpoints;
we follow the browsers."""

# (profile_idc, profile-iop mask, profile-iop value after masking, profile), from the
# table in RFC 6184 §8.1 as libwebrtc encodes it (api/video_codecs/h264_profile_level_id).
_H264_PROFILES: tuple[tuple[int, int, int, str], ...] = (
    (0x42, 0b01001111, 0b01000000, "constrained-baseline"),
    (0x4D, 0b10001111, 0b10000000, "constrained-baseline"),
    (0x58, 0b11001111, 0b11000000, "constrained-baseline"),
    (0x42, 0b01001111, 0b00000000, "baseline"),
    (0x58, 0b11001111, 0b10000000, "baseline"),
    (0x4D, 0b10101111, 0b00000000, "main"),
    (0x64, 0b11111111, 0b00000000, "high"),
    (0x64, 0b11111111, 0b00001100, "constrained-high"),
    (0xF4, 0b11111111, 0b00000000, "predictive-high-444"),
)


def to_int(text: str, low: int, high: int) -> int | None:
    """A decimal integer in [low, high], or None. Rejects non-ASCII digits and long text,
    which Python's int() would accept or refuse with a ValueError of its own."""
    if not text or len(text) > 20 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_fmtp(text: str) -> ParametersDict:
    """`key=value;key;...` (the common RFC 4566 §6 fmtp convention) as a dict.

    Values of the INT_PARAMETERS are ints when they are decimal; a parameter without
    "=" (e.g. telephone-event's "0-15") maps to None.
    """
    parameters: ParametersDict = {}
    for item in text.split(";"):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not key:
            continue
        if not eq:
            parameters[key] = None
            continue
        number = to_int(raw, 0, 2**32 - 1) if key in INT_PARAMETERS else None
        parameters[key] = raw if number is None else number
    return parameters


def format_fmtp(parameters: ParametersDict) -> str:
    """The a=fmtp value (after the payload type) for codec parameters."""
    return ";".join(key if value is None else f"{key}={value}" for key, value in parameters.items())


def parse_extmap(value: str) -> tuple[int, str, str | None]:
    """`<id>[/<direction>] <uri> [<attributes>]` (RFC 8285 §5) as (id, uri, direction)."""
    head, _, rest = value.partition(" ")
    uri = rest.partition(" ")[0]
    id_text, slash, direction = head.partition("/")
    ext_id = to_int(id_text, 0, 999_999)
    if ext_id is None or not uri:
        raise MediaNegotiationError(f"malformed a=extmap {value[:40]!r}")
    if slash and direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
        raise MediaNegotiationError(f"bad direction in a=extmap {value[:40]!r}")
    return ext_id, uri, direction if slash else None


def h264_profile(profile_level_id: str) -> str | None:
    """The H264 profile named by a profile-level-id (RFC 6184 §8.1), or None if unknown."""
    if len(profile_level_id) != 6 or not profile_level_id.isascii():
        return None
    try:
        raw = bytes.fromhex(profile_level_id)
    except ValueError:
        return None
    profile_idc, profile_iop = raw[0], raw[1]
    for idc, mask, masked, profile in _H264_PROFILES:
        if idc == profile_idc and profile_iop & mask == masked:
            return profile
    return None
