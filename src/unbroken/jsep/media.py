"""The aiortc-free half of JSEP media: directions, our sources, data m-sections, rejection.

Theory of operation
-------------------
The peer connection builds each m-section of its offers and answers, then adds the
transport lines itself (ice-ufrag/pwd/options, fingerprint, setup, candidates): nothing
here knows about ICE or DTLS. RTP codec negotiation works on aiortc's codec objects and
turns into aiortc's RTP parameters, so it lives in the peer connection layer
(peerconnection/media.py); this module holds what does not need aiortc:

- the RFC 3264 §6.1 direction rules (`answer_direction`, `reverse_direction`, ...);
- `SsrcInfo`, what we announce of our own RTP sources (RFC 5576, RFC 8830);
- `application_section` and `negotiate_application_section` for the SCTP data channel
  m-section (RFC 8841), and `RemoteSctp`, what the remote's says;
- `rejected_section`, the port-0 answer for an m-section we refuse, and
  `missing_rtcp_mux`, WebRTC's rtcpMuxPolicy "require" (RFC 8829 §5.8).

No I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unbroken.jsep.codecs import MEDIA_KINDS, to_int
from unbroken.jsep.errors import MediaNegotiationError
from unbroken.sdp import DIRECTIONS, MediaSection, SessionDescription

DISCARD_PORT = 9
"""The dummy port of an m-section before candidates exist (RFC 8829 §5.2.1, RFC 8838 §5.1)."""
DUMMY_CONNECTION = "IN IP4 0.0.0.0"
"""The dummy c= value that goes with the discard port (RFC 8829 §5.2.1)."""
RTP_PROFILE = "UDP/TLS/RTP/SAVPF"
"""The profile we offer for media (RFC 8829 §5.1.2)."""
RTP_PROFILES = (
    "RTP/AVP",
    "RTP/AVPF",
    "RTP/SAVP",
    "RTP/SAVPF",
    "TCP/DTLS/RTP/SAVP",
    "TCP/DTLS/RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
)
"""Media profiles a remote offer may use and we must accept (RFC 8829 §5.1.2)."""
SCTP_PROFILE = "UDP/DTLS/SCTP"
"""The profile we offer for data channels (RFC 8829 §5.1.2, RFC 8841 §4.1)."""
SCTP_PROFILES = ("UDP/DTLS/SCTP", "TCP/DTLS/SCTP")
LEGACY_SCTP_PROFILE = "DTLS/SCTP"
"""The old data profile (format = SCTP port, a=sctpmap), still accepted (RFC 8829 §5.1.2)."""
DATA_CHANNEL_FORMAT = "webrtc-datachannel"
DEFAULT_SCTP_PORT = 5000
"""The SCTP port when a=sctp-port is absent (RFC 8841 §5.2), and the one we use."""
DEFAULT_MAX_MESSAGE_SIZE = 65536
"""The max-message-size when a=max-message-size is absent (RFC 8841 §6.1)."""
LEGACY_SCTP_STREAMS = 65535
"""The stream count written in a legacy a=sctpmap line (as aiortc writes it)."""

_SEND, _RECV = 1, 2
DIRECTION_BITS = {"inactive": 0, "sendonly": _SEND, "recvonly": _RECV, "sendrecv": _SEND | _RECV}
_BITS_DIRECTION = {bits: name for name, bits in DIRECTION_BITS.items()}
# RFC 4566 §9 token-char; msid ids are tokens (RFC 8830 §2), and so is a mid (RFC 5888 §4).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
MAX_SSRC = 2**32 - 1


# ---------------------------------------------------------------- directions


def direction_bits(direction: str) -> int:
    """The send/receive bits of a direction name (ValueError for anything else)."""
    bits = DIRECTION_BITS.get(direction)
    if bits is None:
        raise ValueError(f"not a direction: {direction[:40]!r} (expected one of {DIRECTIONS})")
    return bits


def reverse_direction(direction: str) -> str:
    """The direction as seen from the other end: sendonly <-> recvonly."""
    bits = direction_bits(direction)
    return _BITS_DIRECTION[((bits & _SEND) << 1) | ((bits & _RECV) >> 1)]


def intersect_directions(a: str, b: str) -> str:
    """What both directions allow, e.g. sendrecv and recvonly give recvonly."""
    return _BITS_DIRECTION[direction_bits(a) & direction_bits(b)]


def answer_direction(local_wanted: str, remote_offered: str) -> str:
    """The direction of an answer (RFC 3264 §6.1, RFC 8829 §5.3.1).

    The offer's direction reversed, intersected with what the local transceiver wants:
    offered sendonly with a local sendrecv transceiver gives recvonly.
    """
    return intersect_directions(local_wanted, reverse_direction(remote_offered))


def direction_sends(direction: str) -> bool:
    """True for sendrecv and sendonly."""
    return bool(direction_bits(direction) & _SEND)


def direction_receives(direction: str) -> bool:
    """True for sendrecv and recvonly."""
    return bool(direction_bits(direction) & _RECV)


# ---------------------------------------------------------------- data types


@dataclass
class SsrcInfo:
    """What we send in an RTP m-section: our SSRCs, RTCP CNAME and msid (RFC 5576, 8830).

    With aiortc these are the RTCRtpSender's own `_ssrc`, `_rtx_ssrc`, `_stream_id` and
    `_track_id`: the sender picks its SSRCs itself, and the SDP must announce those.
    """

    ssrc: int
    rtx_ssrc: int | None
    cname: str
    stream_id: str
    """The msid stream id; "-" for a track in no stream (webrtc-pc, addTransceiver)."""
    track_id: str

    def __post_init__(self) -> None:
        for source in (self.ssrc, self.rtx_ssrc):
            if source is not None and not 0 <= source <= MAX_SSRC:
                raise ValueError(f"SSRC {source} is not a 32-bit unsigned integer")
        if not self.cname or any(c in self.cname for c in "\r\n\x00"):
            raise ValueError("the CNAME must be non-empty text without line breaks")
        for name, value in (("stream id", self.stream_id), ("track id", self.track_id)):
            if not _TOKEN_RE.fullmatch(value) or len(value) > 64:
                raise ValueError(f"the msid {name} must be 1 to 64 token characters")


@dataclass(frozen=True)
class RemoteSctp:
    """The remote's data channel m-section, as RTCSctpTransport.start() needs it."""

    protocol: str
    port: int
    max_message_size: int
    """0 means any size (RFC 8841 §6.1)."""


# ---------------------------------------------------------------- writing m-sections


def check_mid(mid: str) -> None:
    """Refuse a mid that is not token characters (RFC 5888 §4)."""
    if not _TOKEN_RE.fullmatch(mid):
        raise ValueError(f"a mid must be token characters, got {mid[:40]!r}")


def rejected_section(remote: MediaSection) -> MediaSection:
    """The answer to an m-section we refuse: port 0, same kind, profile and formats.

    RFC 3264 §6 keeps the m-line with port 0, and the mid stays if the offer had one
    (RFC 8829 §5.3.1); RTP sections say inactive. The peer connection must leave the mid
    out of the answer's BUNDLE group, and may not reject the offerer-tagged m-section
    alone (RFC 8843 §7.3.3).
    """
    section = MediaSection(
        kind=remote.kind,
        port=0,
        protocol=remote.protocol,
        formats=list(remote.formats),
        connection=DUMMY_CONNECTION,
    )
    section.mid = remote.mid
    if "RTP/" in remote.protocol:
        section.direction = "inactive"
        for fmt in remote.formats:
            pt = to_int(fmt, 0, 127)
            if pt is not None and pt in remote.rtpmap:
                section.rtpmap[pt] = remote.rtpmap[pt]
    elif remote.protocol in SCTP_PROFILES:
        section.sctp_port = remote.sctp_port
    return section


def application_section(
    mid: str,
    sctp_port: int = DEFAULT_SCTP_PORT,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    *,
    protocol: str = SCTP_PROFILE,
    bundle_only: bool = False,
) -> MediaSection:
    """The data channel m-section (RFC 8829 §5.2.1, RFC 8841 §4-6), without ICE or DTLS.

    For an answer, pass the offer's `protocol` (§5.3.1: it must match); the legacy
    "DTLS/SCTP" profile is written in its old form, the port as format plus a=sctpmap.
    """
    check_mid(mid)
    if not 0 <= sctp_port <= 65535:
        raise ValueError(f"SCTP port {sctp_port} out of range")
    if max_message_size < 0:
        raise ValueError("max-message-size must not be negative")
    port = 0 if bundle_only else DISCARD_PORT
    if protocol == LEGACY_SCTP_PROFILE:
        section = MediaSection(
            kind="application", port=port, protocol=protocol, formats=[str(sctp_port)]
        )
        section.attributes.append(
            ("sctpmap", f"{sctp_port} {DATA_CHANNEL_FORMAT} {LEGACY_SCTP_STREAMS}")
        )
    elif protocol in SCTP_PROFILES:
        section = MediaSection(
            kind="application", port=port, protocol=protocol, formats=[DATA_CHANNEL_FORMAT]
        )
        section.sctp_port = sctp_port
    else:
        raise ValueError(f"not an SCTP profile: {protocol!r}")
    section.connection = DUMMY_CONNECTION
    section.mid = mid
    section.max_message_size = max_message_size
    if bundle_only:
        section.attributes.append(("bundle-only", None))
    return section


# ---------------------------------------------------------------- reading m-sections


def missing_rtcp_mux(desc: SessionDescription) -> list[int]:
    """Indexes of RTP m-sections in use without rtcp-mux, where WebRTC requires it.

    webrtc-pc's only rtcpMuxPolicy is "require" (RFC 8829 §4.1.1, §5.8: a description
    without a=rtcp-mux for an RTP m-section is refused). A bundled m-section may leave
    it to its BUNDLE tag: an offer's bundle-only m-sections carry no IDENTICAL-category
    attributes (RFC 8843 §7.2, §9.3.1.1), so the tag's line counts for them.
    """
    missing: list[int] = []
    for index, section in enumerate(desc.media):
        if section.kind not in MEDIA_KINDS or section.rejected or section.rtcp_mux:
            continue
        tag = desc.bundle_tag_index(index)
        if tag is not None and tag != index and desc.media[tag].rtcp_mux:
            continue
        missing.append(index)
    return missing


def negotiate_application_section(remote: MediaSection) -> RemoteSctp:
    """The remote's SCTP port and max-message-size from its data m-section (RFC 8841)."""
    if remote.kind != "application":
        raise MediaNegotiationError(f"expected an application m-section, got {remote.kind[:40]!r}")
    if remote.rejected:
        raise MediaNegotiationError("the data m-section is rejected (port 0)")
    if remote.protocol in SCTP_PROFILES:
        if DATA_CHANNEL_FORMAT not in remote.formats:
            raise MediaNegotiationError(f"the data m-section does not offer {DATA_CHANNEL_FORMAT}")
        port = DEFAULT_SCTP_PORT if remote.sctp_port is None else remote.sctp_port
    elif remote.protocol == LEGACY_SCTP_PROFILE:
        legacy = _legacy_sctp_port(remote)
        if legacy is None:
            raise MediaNegotiationError(f"the DTLS/SCTP m-section has no {DATA_CHANNEL_FORMAT}")
        port = legacy
    else:
        raise MediaNegotiationError(f"not an SCTP profile: {remote.protocol[:40]!r}")
    if not 0 <= port <= 65535:
        raise MediaNegotiationError(f"SCTP port {port} out of range")
    size = DEFAULT_MAX_MESSAGE_SIZE if remote.max_message_size is None else remote.max_message_size
    if size < 0:
        raise MediaNegotiationError("negative max-message-size")
    return RemoteSctp(protocol=remote.protocol, port=port, max_message_size=size)


def _legacy_sctp_port(remote: MediaSection) -> int | None:
    """The port of an old-style `a=sctpmap:<port> webrtc-datachannel <streams>` line."""
    for value in remote.attribute_values("sctpmap"):
        parts = (value or "").split(" ")
        if len(parts) >= 2 and parts[1] == DATA_CHANNEL_FORMAT and parts[0] in remote.formats:
            return to_int(parts[0], 0, 65535)
    return None
