"""Our codecs and header extensions, and the codec-level SDP values (rtpmap, fmtp, rtcp-fb).

Theory of operation: the media itself is encoded and decoded by aiortc, so what we can
send and receive is exactly aiortc's codec table (`aiortc.codecs.CODECS`): opus, G722,
PCMU and PCMA for audio, VP8 and two H264 profiles, each with an rtx companion, for
video, with the payload types aiortc assigns. `local_codecs` hands out copies of it, so
negotiation can rewrite payload types and feedback without touching aiortc's table.

The functions below turn the text of one rtpmap, fmtp, rtcp-fb or extmap value into
aiortc's parameter objects and back. They take untrusted text (a description may come
from anywhere, and a MediaSection may be built by hand) and raise MediaNegotiationError,
never IndexError or a bare ValueError, for text they cannot read.

Two codecs are the same codec when their media type, clock rate and channel count match
(RFC 3264 §6.1, RFC 4566 §6); H264 also needs the same packetization-mode and profile
(RFC 6184 §8.2.2: the level may differ, it is asymmetric). No I/O, no clock.
"""

from __future__ import annotations

import copy
import logging

from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

from unbroken.jsep.errors import MediaNegotiationError

logger = logging.getLogger(__name__)

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


def local_codecs(kind: str) -> list[RTCRtpCodecParameters]:
    """The codecs we support for `kind`, in preference order, with aiortc's payload types.

    Fresh copies each call: callers may change payload types and feedback freely.
    """
    if kind not in MEDIA_KINDS:
        raise ValueError(f"no codecs for media kind {kind!r}")
    return copy.deepcopy(list(CODECS[kind]))


def local_header_extensions(kind: str) -> list[RTCRtpHeaderExtensionParameters]:
    """The RTP header extensions we offer for `kind`, with aiortc's ids (fresh copies).

    The ids are distinct across kinds where the URIs differ, since BUNDLE puts every
    m-section in one id space (RFC 8843 §9.2).
    """
    if kind not in MEDIA_KINDS:
        raise ValueError(f"no header extensions for media kind {kind!r}")
    return copy.deepcopy(list(HEADER_EXTENSIONS[kind]))


def is_rtx(codec: RTCRtpCodecParameters) -> bool:
    """True for an RTP retransmission format (RFC 4588), which repairs another codec."""
    name: str = codec.mimeType.partition("/")[2]
    return name.lower() == "rtx"


def payload_type(codec: RTCRtpCodecParameters) -> int:
    """A codec's payload type; ValueError if it has none or it is not 0-127."""
    pt = codec.payloadType
    if not isinstance(pt, int) or not 0 <= pt <= 127:
        raise ValueError(f"codec {codec.mimeType} has no valid payload type ({pt!r})")
    return pt


def to_int(text: str, low: int, high: int) -> int | None:
    """A decimal integer in [low, high], or None. Rejects non-ASCII digits and long text,
    which Python's int() would accept or refuse with a ValueError of its own."""
    if not text or len(text) > 20 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_rtpmap(kind: str, payload_type: int, value: str) -> RTCRtpCodecParameters:
    """`<encoding name>/<clock rate>[/<encoding parameters>]` (RFC 4566 §6) as a codec.

    For audio the encoding parameter is the channel count, 1 when absent; video has none.
    """
    parts = value.split("/")
    if len(parts) not in (2, 3) or not parts[0] or " " in parts[0]:
        raise MediaNegotiationError(f"malformed a=rtpmap for payload type {payload_type}")
    clock_rate = to_int(parts[1], 1, 2**32 - 1)
    if clock_rate is None:
        raise MediaNegotiationError(f"bad clock rate in a=rtpmap for payload type {payload_type}")
    channels: int | None = None
    if kind == "audio":
        channels = 1
        if len(parts) == 3:
            channels = to_int(parts[2], 1, 255)
            if channels is None:
                raise MediaNegotiationError(
                    f"bad channel count in a=rtpmap for payload type {payload_type}"
                )
    return RTCRtpCodecParameters(
        mimeType=f"{kind}/{parts[0]}",
        clockRate=clock_rate,
        channels=channels,
        payloadType=payload_type,
    )


def static_codec(kind: str, payload_type: int) -> RTCRtpCodecParameters | None:
    """The codec a static payload type stands for when there is no a=rtpmap, or None."""
    entry = STATIC_PAYLOAD_TYPES.get(payload_type)
    if entry is None:
        return None
    name, clock_rate, channels = entry
    if (channels is None) != (kind == "video"):
        return None
    return RTCRtpCodecParameters(
        mimeType=f"{kind}/{name}", clockRate=clock_rate, channels=channels, payloadType=payload_type
    )


def format_rtpmap(kind: str, codec: RTCRtpCodecParameters) -> str:
    """The a=rtpmap value (after the payload type) for a codec."""
    name: str = codec.mimeType.partition("/")[2]
    text = f"{name}/{codec.clockRate}"
    if kind == "audio" and codec.channels is not None and codec.channels != 1:
        text += f"/{codec.channels}"
    return text


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


def parse_rtcp_feedback(value: str) -> RTCRtcpFeedback:
    """`<type> [<parameter>]` of an a=rtcp-fb line (RFC 4585 §4.2), e.g. "nack pli"."""
    kind, _, parameter = value.strip(" ").partition(" ")
    if not kind:
        raise MediaNegotiationError("empty a=rtcp-fb value")
    return RTCRtcpFeedback(type=kind, parameter=parameter.strip(" ") or None)


def format_rtcp_feedback(feedback: RTCRtcpFeedback) -> str:
    """The a=rtcp-fb value after the payload type."""
    if feedback.parameter:
        return f"{feedback.type} {feedback.parameter}"
    return str(feedback.type)


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


def _h264_key(codec: RTCRtpCodecParameters) -> tuple[str, str] | None:
    """(packetization-mode, profile) of an H264 codec; None if unreadable."""
    mode = codec.parameters.get("packetization-mode", "0")
    profile_level_id = codec.parameters.get("profile-level-id", H264_DEFAULT_PROFILE_LEVEL_ID)
    profile = h264_profile(str(profile_level_id))
    if profile is None:
        return None
    return (str(mode), profile)


def codecs_compatible(local: RTCRtpCodecParameters, remote: RTCRtpCodecParameters) -> bool:
    """True if `remote` names the same codec as `local` (see the module docstring)."""
    mime: str = local.mimeType.lower()
    if mime != remote.mimeType.lower() or local.clockRate != remote.clockRate:
        return False
    if mime.startswith("audio/") and (local.channels or 1) != (remote.channels or 1):
        return False
    if mime == "video/h264":
        key = _h264_key(local)
        return key is not None and key == _h264_key(remote)
    return True


def filter_preferred_codecs(
    codecs: list[RTCRtpCodecParameters], preferred: list[RTCRtpCodecCapability]
) -> list[RTCRtpCodecParameters]:
    """`codecs` narrowed to `preferred` and in its order (setCodecPreferences, webrtc-pc §5.4).

    aiortc's rule, so both stacks offer the same: a codec is kept when a preference has
    its mime type (any case) and the same parameters; its rtx codec follows it only if the
    preferences name rtx at all. No preferences: `codecs` unchanged.
    """
    if not preferred:
        return list(codecs)
    rtx_wanted = any(is_rtx(pref) for pref in preferred)  # type: ignore[arg-type]
    out: list[RTCRtpCodecParameters] = []
    for pref in preferred:
        if is_rtx(pref):  # type: ignore[arg-type]
            continue
        for codec in codecs:
            if is_rtx(codec) or codec in out:
                continue
            if codec.mimeType.lower() == pref.mimeType.lower() and dict(codec.parameters) == dict(
                pref.parameters
            ):
                out.append(codec)
                if rtx_wanted:
                    out.extend(
                        c
                        for c in codecs
                        if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                    )
                break
    return out
