"""RTP media for the peer connection: aiortc's codecs, negotiated, and aiortc's RTP parameters.

Theory of operation
-------------------
The media itself is encoded and decoded by aiortc, so what we can send and receive is
exactly aiortc's codec table (`aiortc.codecs.CODECS`): opus, G722, PCMU and PCMA for
audio, VP8 and two H264 profiles, each with an rtx companion, for video, with the payload
types aiortc assigns. `local_codecs` hands out copies of it, so negotiation can rewrite
payload types and feedback without touching aiortc's table. Codecs, feedback and header
extensions are aiortc's parameter objects throughout, which is why this is the peer
connection layer's and not the pure `jsep` package's (jsep/media.py has the rest).

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
  result.
- `send_parameters` and `receive_parameters` turn a negotiation into aiortc's
  RTCRtpSendParameters and RTCRtpReceiveParameters for RTCRtpSender.send() and
  RTCRtpReceiver.receive().

Two codecs are the same codec when their media type, clock rate and channel count match
(RFC 3264 §6.1, RFC 4566 §6); H264 also needs the same packetization-mode and profile
(RFC 6184 §8.2.2: the level may differ, it is asymmetric). RTCP is always multiplexed
with RTP: we run every m-section over one BUNDLE transport, and BUNDLE requires rtcp-mux
(RFC 8843 §9.3). No I/O, no clock, no randomness: SSRCs, CNAMEs and stream ids come in
as arguments.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtcpParameters,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
    RTCRtpSendParameters,
)

from ..jsep.codecs import (
    H264_DEFAULT_PROFILE_LEVEL_ID,
    MEDIA_KINDS,
    STATIC_PAYLOAD_TYPES,
    format_fmtp,
    h264_profile,
    parse_extmap,
    parse_fmtp,
    to_int,
)
from ..jsep.errors import MediaNegotiationError
from ..jsep.media import (
    DIRECTION_BITS,
    DISCARD_PORT,
    DUMMY_CONNECTION,
    MAX_SSRC,
    RTP_PROFILE,
    RTP_PROFILES,
    SsrcInfo,
    answer_direction,
    check_mid,
    direction_bits,
    direction_receives,
    direction_sends,
)
from ..sdp import MediaSection

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- our codecs


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


# ---------------------------------------------------------------- negotiation result


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


# ---------------------------------------------------------------- writing m-sections


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
    check_mid(mid)
    direction_bits(direction)
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


# ---------------------------------------------------------------- reading m-sections


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
    if direction not in DIRECTION_BITS:
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
        source = to_int(head, 0, MAX_SSRC)
        name, _, value = rest.partition(":")
        if source is None or not name:
            raise MediaNegotiationError(f"malformed a=ssrc {line[:40]!r}")
        attributes.setdefault(source, {}).setdefault(name, value)
    fid: tuple[int, int] | None = None
    for group in remote.ssrc_group:
        semantics, *members = group.split(" ")
        sources: list[int] = []
        for member in members:
            source = to_int(member, 0, MAX_SSRC)
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
