"""The media half of JSEP: m-sections for audio, video and data, and codec negotiation.

Theory of operation
-------------------
The peer connection builds each m-section of its offers and answers with these
functions, then adds the transport lines itself (ice-ufrag/pwd/options, fingerprint,
setup, candidates): nothing here knows about ICE or DTLS.

- `offer_media_section` writes one RTP m-section from our codecs and header extensions
  (RFC 8829 §5.2.1): dummy port 9 and c=IN IP4 0.0.0.0, UDP/TLS/RTP/SAVPF, mid,
  direction, rtcp-mux, rtcp-rsize, rtpmap/fmtp/rtcp-fb per codec, extmap, and, when we
  send, msid and the ssrc lines (cname, msid, an FID group pairing the rtx ssrc).
- `negotiate_remote_section` reads a remote m-section (an offer or an answer) against
  our codecs: the codecs in common in the remote's order with the remote's payload types
  (RFC 3264 §6.1, RFC 8829 §5.3.1), rtx kept only with its accepted primary (RFC 4588
  §8.1), the feedback and header extensions both sides know, the remote's direction,
  sources (ssrc, rtx ssrc, cname) and msid. It raises MediaNegotiationError, and only
  that, for a section it cannot use or read.
- `answer_media_section` writes our answer to a remote offer's m-section from that
  result; `answer_direction` is the RFC 3264 §6.1 rule; `rejected_section` is the port-0
  answer for an m-section we refuse.
- `application_section` and `negotiate_application_section` do the same for the SCTP
  data channel m-section (RFC 8841).
- `send_parameters` and `receive_parameters` turn a negotiation into aiortc's
  RTCRtpSendParameters and RTCRtpReceiveParameters for RTCRtpSender.send() and
  RTCRtpReceiver.receive().

RTCP is always multiplexed with RTP: we run every m-section over one BUNDLE transport,
and BUNDLE requires rtcp-mux (RFC 8843 §9.3). No I/O, no clock, no randomness: SSRCs,
CNAMEs and stream ids come in as arguments.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
    RTCRtpSendParameters,
)

from unbroken.jsep.codecs import (
    MEDIA_KINDS,
    codecs_compatible,
    format_fmtp,
    format_rtcp_feedback,
    format_rtpmap,
    is_rtx,
    local_codecs,
    local_header_extensions,
    parse_extmap,
    parse_fmtp,
    parse_rtcp_feedback,
    parse_rtpmap,
    payload_type,
    static_codec,
    to_int,
)
from unbroken.jsep.errors import MediaNegotiationError
from unbroken.sdp import DIRECTIONS, MediaSection, SessionDescription

logger = logging.getLogger(__name__)

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
_DIRECTION_BITS = {"inactive": 0, "sendonly": _SEND, "recvonly": _RECV, "sendrecv": _SEND | _RECV}
_BITS_DIRECTION = {bits: name for name, bits in _DIRECTION_BITS.items()}
# RFC 4566 §9 token-char; msid ids are tokens (RFC 8830 §2), and so is a mid (RFC 5888 §4).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_MAX_SSRC = 2**32 - 1


# ---------------------------------------------------------------- directions


def _bits(direction: str) -> int:
    bits = _DIRECTION_BITS.get(direction)
    if bits is None:
        raise ValueError(f"not a direction: {direction[:40]!r} (expected one of {DIRECTIONS})")
    return bits


def reverse_direction(direction: str) -> str:
    """The direction as seen from the other end: sendonly <-> recvonly."""
    bits = _bits(direction)
    return _BITS_DIRECTION[((bits & _SEND) << 1) | ((bits & _RECV) >> 1)]


def intersect_directions(a: str, b: str) -> str:
    """What both directions allow, e.g. sendrecv and recvonly give recvonly."""
    return _BITS_DIRECTION[_bits(a) & _bits(b)]


def answer_direction(local_wanted: str, remote_offered: str) -> str:
    """The direction of an answer (RFC 3264 §6.1, RFC 8829 §5.3.1).

    The offer's direction reversed, intersected with what the local transceiver wants:
    offered sendonly with a local sendrecv transceiver gives recvonly.
    """
    return intersect_directions(local_wanted, reverse_direction(remote_offered))


def direction_sends(direction: str) -> bool:
    """True for sendrecv and sendonly."""
    return bool(_bits(direction) & _SEND)


def direction_receives(direction: str) -> bool:
    """True for sendrecv and recvonly."""
    return bool(_bits(direction) & _RECV)


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
            if source is not None and not 0 <= source <= _MAX_SSRC:
                raise ValueError(f"SSRC {source} is not a 32-bit unsigned integer")
        if not self.cname or any(c in self.cname for c in "\r\n\x00"):
            raise ValueError("the CNAME must be non-empty text without line breaks")
        for name, value in (("stream id", self.stream_id), ("track id", self.track_id)):
            if not _TOKEN_RE.fullmatch(value) or len(value) > 64:
                raise ValueError(f"the msid {name} must be 1 to 64 token characters")


@dataclass
class NegotiatedMedia:
    """What a remote RTP m-section and our capabilities have in common.

    `codecs` are in the remote's order with the remote's payload types; each rtx codec
    follows the remote's position too and names an accepted primary in `apt`. Remote
    SSRC fields are None (and `stream_ids` empty) when the remote section names none:
    media is then routed by mid (RFC 8843 §9.2), and JSEP says the peer connection makes
    up a default stream (RFC 8829 §5.8.2).
    """

    kind: str
    mid: str | None
    protocol: str
    direction: str
    """The remote's direction, as the remote wrote it ("sendrecv" when absent)."""
    codecs: list[RTCRtpCodecParameters]
    header_extensions: list[RTCRtpHeaderExtensionParameters]
    ssrc: int | None = None
    """The remote's primary media SSRC."""
    rtx_ssrc: int | None = None
    """The remote's retransmission SSRC, from its a=ssrc-group:FID."""
    ssrcs: list[int] = field(default_factory=list)
    """Every SSRC the remote section names, in order."""
    cname: str | None = None
    stream_ids: list[str] = field(default_factory=list)
    """The remote's msid stream ids; "-" (no stream) is left out."""
    track_id: str | None = None
    """The msid track id (appdata), if any; webrtc-pc no longer uses it as track.id."""
    rtcp_mux: bool = False
    rtcp_rsize: bool = False

    @property
    def remote_sends(self) -> bool:
        """True if the remote will send media on this m-section."""
        return direction_sends(self.direction)

    @property
    def remote_receives(self) -> bool:
        """True if the remote wants to receive media on this m-section."""
        return direction_receives(self.direction)

    @property
    def send_codec(self) -> RTCRtpCodecParameters:
        """The codec we send with: the remote's most preferred one in common."""
        return next(codec for codec in self.codecs if not is_rtx(codec))


@dataclass(frozen=True)
class RemoteSctp:
    """The remote's data channel m-section, as RTCSctpTransport.start() needs it."""

    protocol: str
    port: int
    max_message_size: int
    """0 means any size (RFC 8841 §6.1)."""


# ---------------------------------------------------------------- writing m-sections


def _check_mid(mid: str) -> None:
    if not _TOKEN_RE.fullmatch(mid):
        raise ValueError(f"a mid must be token characters, got {mid[:40]!r}")


def _add_codecs(section: MediaSection, kind: str, codecs: list[RTCRtpCodecParameters]) -> None:
    """rtpmap, fmtp and rtcp-fb lines for each codec, in order (RFC 8829 §5.2.1)."""
    for codec in codecs:
        pt = payload_type(codec)
        section.rtpmap[pt] = format_rtpmap(kind, codec)
        if codec.parameters:
            section.fmtp[pt] = format_fmtp(codec.parameters)
        for feedback in codec.rtcpFeedback:
            section.rtcp_fb.append((str(pt), format_rtcp_feedback(feedback)))


def _payload_types(codecs: list[RTCRtpCodecParameters]) -> list[str]:
    if not codecs:
        raise ValueError("an RTP m-section needs at least one codec")
    pts: list[int] = []
    for codec in codecs:
        pt = payload_type(codec)
        if pt in pts:
            raise ValueError(f"payload type {pt} is used twice")
        pts.append(pt)
    return [str(pt) for pt in pts]


def _add_extensions(
    section: MediaSection, extensions: list[RTCRtpHeaderExtensionParameters]
) -> None:
    for extension in extensions:
        section.extmap.append(f"{extension.id} {extension.uri}")


def _add_sender(section: MediaSection, ssrc: SsrcInfo, with_rtx: bool) -> None:
    """msid (RFC 8830 §2) and the ssrc lines (RFC 5576 §4.1) of what we send.

    The ssrc lines carry the CNAME, which RTCP needs before the first SDES arrives, and
    the FID group tells the remote which SSRC carries retransmissions (RFC 4588 §8.3).
    """
    msid = f"{ssrc.stream_id} {ssrc.track_id}"
    section.msid.append(msid)
    sources = [ssrc.ssrc]
    if with_rtx and ssrc.rtx_ssrc is not None:
        sources.append(ssrc.rtx_ssrc)
        section.ssrc_group.append(f"FID {ssrc.ssrc} {ssrc.rtx_ssrc}")
    for source in sources:
        section.ssrc.append(f"{source} cname:{ssrc.cname}")
        section.ssrc.append(f"{source} msid:{msid}")


def offer_media_section(
    kind: str,
    mid: str,
    direction: str,
    codecs: list[RTCRtpCodecParameters],
    header_extensions: list[RTCRtpHeaderExtensionParameters],
    ssrc: SsrcInfo | None,
    *,
    bundle_only: bool = False,
) -> MediaSection:
    """An RTP m-section of an offer (RFC 8829 §5.2.1), without ICE or DTLS lines.

    `codecs` in preference order, with payload types (e.g. `local_codecs(kind)`, or a
    previous negotiation's codecs for a subsequent offer, §5.2.2). msid and ssrc lines
    are written only if `direction` sends and `ssrc` is given. `bundle_only` gives port 0
    and a=bundle-only (§5.2.1, max-bundle policy), and leaves out rtcp-mux and rtcp-rsize:
    IDENTICAL attributes appear only in the BUNDLE-tagged m-section (§5.2.1, RFC 8843
    §9.3.1.1).
    """
    if kind not in MEDIA_KINDS:
        raise ValueError(f"not an RTP media kind: {kind!r}")
    _check_mid(mid)
    _bits(direction)
    section = MediaSection(
        kind=kind,
        port=0 if bundle_only else DISCARD_PORT,
        protocol=RTP_PROFILE,
        formats=_payload_types(codecs),
        connection=DUMMY_CONNECTION,
    )
    section.mid = mid
    section.direction = direction
    section.rtcp_mux = not bundle_only
    section.rtcp_rsize = not bundle_only
    _add_codecs(section, kind, codecs)
    _add_extensions(section, header_extensions)
    if ssrc is not None and direction_sends(direction):
        _add_sender(section, ssrc, any(is_rtx(codec) for codec in codecs))
    if bundle_only:
        section.attributes.append(("bundle-only", None))
    return section


def answer_media_section(
    remote: MediaSection,
    negotiated: NegotiatedMedia,
    direction: str,
    ssrc: SsrcInfo | None,
) -> MediaSection:
    """Our answer to the remote offer's RTP m-section `remote` (RFC 8829 §5.3.1).

    Same kind, mid and profile as the offer; formats are the negotiated payload types in
    the offer's order; `direction` is what the local transceiver wants, and the answer
    carries `answer_direction(direction, negotiated.direction)`. rtcp-mux and rtcp-rsize
    are echoed if offered; extmap and rtcp-fb lines are the negotiated ones.
    """
    section = MediaSection(
        kind=remote.kind,
        port=DISCARD_PORT,
        protocol=remote.protocol,
        formats=_payload_types(negotiated.codecs),
        connection=DUMMY_CONNECTION,
    )
    section.mid = remote.mid
    section.direction = answer_direction(direction, negotiated.direction)
    section.rtcp_mux = negotiated.rtcp_mux
    section.rtcp_rsize = negotiated.rtcp_rsize
    _add_codecs(section, negotiated.kind, negotiated.codecs)
    _add_extensions(section, negotiated.header_extensions)
    if ssrc is not None and direction_sends(section.direction):
        _add_sender(section, ssrc, any(is_rtx(codec) for codec in negotiated.codecs))
    return section


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
    _check_mid(mid)
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


def negotiate_remote_section(
    remote: MediaSection,
    kind: str,
    *,
    codecs: list[RTCRtpCodecParameters] | None = None,
    header_extensions: list[RTCRtpHeaderExtensionParameters] | None = None,
) -> NegotiatedMedia:
    """Match a remote RTP m-section (offer or answer) against our capabilities.

    `kind` is the local transceiver's kind; `codecs` and `header_extensions` default to
    `local_codecs(kind)` and `local_header_extensions(kind)` (pass a filtered list for
    setCodecPreferences). Raises MediaNegotiationError, and nothing else, if `kind` is
    not audio or video, or the section is rejected, of another kind or profile,
    malformed, or has no codec in common (RFC 8829 §5.3.1: such a section is rejected in
    the answer).
    """
    if kind not in MEDIA_KINDS:
        raise MediaNegotiationError(f"we have no codecs for media kind {kind[:40]!r}")
    local = local_codecs(kind) if codecs is None else codecs
    extensions = local_header_extensions(kind) if header_extensions is None else header_extensions
    if remote.kind != kind:
        raise MediaNegotiationError(f"expected a {kind} m-section, got {remote.kind[:40]!r}")
    if remote.rejected:
        raise MediaNegotiationError(f"the {kind} m-section is rejected (port 0)")
    if remote.protocol not in RTP_PROFILES:
        raise MediaNegotiationError(f"not an RTP profile: {remote.protocol[:40]!r}")
    direction = remote.direction or "sendrecv"  # RFC 3264 §5.1: sendrecv by default
    if direction not in _DIRECTION_BITS:
        raise MediaNegotiationError(f"bad direction {direction[:40]!r}")
    common = _common_codecs(local, _remote_codecs(remote))
    if not any(not is_rtx(codec) for codec in common):
        raise MediaNegotiationError(f"no {kind} codec in common (offered {remote.formats[:20]})")
    negotiated = NegotiatedMedia(
        kind=kind,
        mid=remote.mid,
        protocol=remote.protocol,
        direction=direction,
        codecs=common,
        header_extensions=_common_extensions(extensions, remote),
        rtcp_mux=remote.rtcp_mux,
        rtcp_rsize=remote.rtcp_rsize,
    )
    _read_sources(remote, negotiated)
    return negotiated


def _remote_codecs(remote: MediaSection) -> list[RTCRtpCodecParameters]:
    """The remote's codecs in m= line order, with fmtp parameters and rtcp-fb attached."""
    codecs: list[RTCRtpCodecParameters] = []
    seen: set[int] = set()
    for fmt in remote.formats:
        pt = to_int(fmt, 0, 127)
        if pt is None:
            raise MediaNegotiationError(f"RTP format {fmt[:40]!r} is not a payload type")
        if pt in seen:
            continue
        seen.add(pt)
        rtpmap = remote.rtpmap.get(pt)
        codec: RTCRtpCodecParameters | None
        if rtpmap is not None:
            codec = parse_rtpmap(remote.kind, pt, rtpmap)
        else:
            codec = static_codec(remote.kind, pt)
            if codec is None:
                logger.debug("payload type %d has no a=rtpmap and is not static: ignored", pt)
                continue
        fmtp = remote.fmtp.get(pt)
        if fmtp is not None:
            codec.parameters = parse_fmtp(fmtp)
        for target, value in remote.rtcp_fb:
            if target == "*" or to_int(target, 0, 127) == pt:
                feedback = parse_rtcp_feedback(value)
                if feedback not in codec.rtcpFeedback:
                    codec.rtcpFeedback.append(feedback)
        codecs.append(codec)
    return codecs


def _common_codecs(
    local: list[RTCRtpCodecParameters], remote: list[RTCRtpCodecParameters]
) -> list[RTCRtpCodecParameters]:
    """The remote codecs we support, in the remote's order, with its payload types.

    Parameters are ours (what we will send and can receive); feedback is what both
    sides listed. An rtx codec is kept when its apt names an accepted primary codec
    whose local counterpart has rtx too, at the same clock rate (RFC 4588 §8.1).
    """
    accepted: dict[int, tuple[RTCRtpCodecParameters, RTCRtpCodecParameters]] = {}
    for theirs in remote:
        if is_rtx(theirs):
            continue
        ours = next((c for c in local if not is_rtx(c) and codecs_compatible(c, theirs)), None)
        if ours is None:
            continue
        codec = copy.deepcopy(ours)
        codec.payloadType = payload_type(theirs)
        codec.rtcpFeedback = [fb for fb in ours.rtcpFeedback if fb in theirs.rtcpFeedback]
        accepted[codec.payloadType] = (codec, ours)

    common: list[RTCRtpCodecParameters] = []
    repaired: set[int] = set()
    for theirs in remote:
        if not is_rtx(theirs):
            if payload_type(theirs) in accepted:
                common.append(accepted[payload_type(theirs)][0])
            continue
        apt = theirs.parameters.get("apt")
        if apt is None:
            raise MediaNegotiationError(f"rtx payload type {theirs.payloadType} has no apt")
        if not isinstance(apt, int) or not 0 <= apt <= 127:
            raise MediaNegotiationError(f"rtx payload type {theirs.payloadType} has a bad apt")
        if apt not in accepted or apt in repaired:
            continue
        primary, ours = accepted[apt]
        local_rtx = next(
            (c for c in local if is_rtx(c) and c.parameters.get("apt") == ours.payloadType), None
        )
        if local_rtx is None or theirs.clockRate != primary.clockRate:
            continue
        rtx = copy.deepcopy(local_rtx)
        rtx.payloadType = theirs.payloadType
        rtx.parameters = {"apt": apt}
        rtx.rtcpFeedback = []
        common.append(rtx)
        repaired.add(apt)
    return common


def _common_extensions(
    local: list[RTCRtpHeaderExtensionParameters], remote: MediaSection
) -> list[RTCRtpHeaderExtensionParameters]:
    """The remote's header extensions we support, with the remote's ids (RFC 8285 §6)."""
    uris = {extension.uri for extension in local}
    by_id: dict[int, str] = {}
    common: list[RTCRtpHeaderExtensionParameters] = []
    for value in remote.extmap:
        ext_id, uri, direction = parse_extmap(value)
        if by_id.setdefault(ext_id, uri) != uri:
            raise MediaNegotiationError(f"a=extmap id {ext_id} names two extensions")
        # 1-14 fit the one-byte form, up to 255 the two-byte form (RFC 8285 §4); aiortc
        # writes both. Other ids (0, 15 in one-byte, 4096+ from RFC 5285) are unusable.
        if not 1 <= ext_id <= 255 or direction == "inactive" or uri not in uris:
            continue
        if any(extension.uri == uri for extension in common):
            continue
        common.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))
    return common


def _read_sources(remote: MediaSection, negotiated: NegotiatedMedia) -> None:
    """The remote's SSRCs (RFC 5576 §4), its FID pairing (RFC 4588 §8.3), CNAME and msid."""
    attributes: dict[int, dict[str, str]] = {}
    for line in remote.ssrc:
        head, _, rest = line.partition(" ")
        source = to_int(head, 0, _MAX_SSRC)
        name, _, value = rest.partition(":")
        if source is None or not name:
            raise MediaNegotiationError(f"malformed a=ssrc {line[:40]!r}")
        attributes.setdefault(source, {}).setdefault(name, value)
    fid: tuple[int, int] | None = None
    for group in remote.ssrc_group:
        semantics, *members = group.split(" ")
        sources: list[int] = []
        for member in members:
            source = to_int(member, 0, _MAX_SSRC)
            if source is None:
                raise MediaNegotiationError(f"malformed a=ssrc-group {group[:40]!r}")
            sources.append(source)
        if not semantics:
            raise MediaNegotiationError(f"malformed a=ssrc-group {group[:40]!r}")
        if semantics == "FID" and fid is None:
            if len(sources) < 2:
                raise MediaNegotiationError("a=ssrc-group:FID needs two SSRCs")
            fid = (sources[0], sources[1])
    ssrcs = list(attributes)
    for source in fid or ():
        if source not in ssrcs:
            ssrcs.append(source)
    negotiated.ssrcs = ssrcs
    if fid is not None:
        negotiated.ssrc, negotiated.rtx_ssrc = fid
    elif ssrcs:
        negotiated.ssrc = ssrcs[0]
    primary = attributes.get(negotiated.ssrc, {}) if negotiated.ssrc is not None else {}
    negotiated.cname = primary.get("cname") or next(
        (attrs["cname"] for attrs in attributes.values() if attrs.get("cname")), None
    )

    # RFC 8830 §2: a=msid:<stream id> [<track id>]; one line per stream. Without it,
    # the legacy a=ssrc:<ssrc> msid: attribute carries the same value.
    values = list(remote.msid)
    strict = True
    if not values and "msid" in primary:
        values, strict = [primary["msid"]], False
    for value in values:
        parts = value.split(" ")
        if not 1 <= len(parts) <= 2 or "" in parts:
            if strict:
                raise MediaNegotiationError(f"malformed a=msid {value[:40]!r}")
            continue
        if parts[0] != "-" and parts[0] not in negotiated.stream_ids:
            negotiated.stream_ids.append(parts[0])
        if len(parts) == 2 and negotiated.track_id is None:
            negotiated.track_id = parts[1]


# ---------------------------------------------------------------- aiortc parameters


def _ordered_for_sending(codecs: list[RTCRtpCodecParameters]) -> list[RTCRtpCodecParameters]:
    """Primary codecs first: aiortc's RTCRtpSender sends with codecs[0]."""
    return [c for c in codecs if not is_rtx(c)] + [c for c in codecs if is_rtx(c)]


def _rtx_for(codecs: list[RTCRtpCodecParameters], pt: int) -> bool:
    """True if an rtx codec repairs payload type `pt`."""
    return any(is_rtx(c) and c.parameters.get("apt") == pt for c in codecs)


def send_parameters(negotiated: NegotiatedMedia, ssrc: SsrcInfo, mid: str) -> RTCRtpSendParameters:
    """RTCRtpSendParameters for aiortc's RTCRtpSender.send().

    The sender uses the first codec (the remote's most preferred in common), and the rtx
    codec whose apt names it; the SSRCs in `ssrc` must be the sender's own.
    """
    codecs = copy.deepcopy(_ordered_for_sending(negotiated.codecs))
    if not codecs or is_rtx(codecs[0]):
        raise ValueError("nothing to send with: no primary codec was negotiated")
    primary = payload_type(codecs[0])
    rtx = None
    if ssrc.rtx_ssrc is not None and _rtx_for(codecs, primary):
        rtx = RTCRtpRtxParameters(ssrc=ssrc.rtx_ssrc)
    return RTCRtpSendParameters(
        codecs=codecs,
        headerExtensions=copy.deepcopy(negotiated.header_extensions),
        muxId=mid,
        rtcp=RTCRtcpParameters(cname=ssrc.cname, mux=True, ssrc=ssrc.ssrc),
        encodings=[RTCRtpEncodingParameters(ssrc=ssrc.ssrc, payloadType=primary, rtx=rtx)],
    )


def receive_parameters(negotiated: NegotiatedMedia, mid: str) -> RTCRtpReceiveParameters:
    """RTCRtpReceiveParameters for aiortc's RTCRtpReceiver.receive().

    Every negotiated payload type is accepted. When the remote named its SSRCs, one
    decoding per primary codec maps the rtx SSRC back to the media SSRC; without SSRCs,
    aiortc routes by mid or payload type.
    """
    codecs = copy.deepcopy(negotiated.codecs)
    encodings: list[RTCRtpDecodingParameters] = []
    if negotiated.ssrc is not None:
        for codec in codecs:
            if is_rtx(codec):
                continue
            rtx = None
            pt = payload_type(codec)
            if negotiated.rtx_ssrc is not None and _rtx_for(codecs, pt):
                rtx = RTCRtpRtxParameters(ssrc=negotiated.rtx_ssrc)
            encodings.append(
                RTCRtpDecodingParameters(ssrc=negotiated.ssrc, payloadType=pt, rtx=rtx)
            )
    return RTCRtpReceiveParameters(
        codecs=codecs,
        headerExtensions=copy.deepcopy(negotiated.header_extensions),
        muxId=mid,
        rtcp=RTCRtcpParameters(cname=negotiated.cname, mux=True, ssrc=negotiated.ssrc),
        encodings=encodings,
    )
