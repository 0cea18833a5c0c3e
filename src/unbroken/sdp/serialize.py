"""`SessionDescription` to SDP text, in one canonical order with CRLF line ends.

Theory of operation: lines come out in RFC 4566 order (v o s i u e p c b t r z k a at
session level; m i c b k a in each m-section). Attributes follow a fixed order close to
what Chromium writes: transport first (mid, ICE, fingerprint, setup), then media
(direction, msid, rtcp-mux, rtcp-rsize, extmap, codecs, ssrc), then SCTP, then every
other attribute in its original order, and last the candidates and end-of-candidates.

The order only has to be stable, not the peer's: `parse` stores each kind of attribute
in its own field, so `parse(serialize(d)) == d` for any `d` that `parse` produced.
Values are written as stored; a CR, LF or NUL inside any value raises SdpError rather
than smuggling an extra line into the output.
"""

from __future__ import annotations

from unbroken.sdp.errors import SdpError, show
from unbroken.sdp.model import MediaSection, SessionDescription
from unbroken.sdp.parse import (
    MEDIA_CONNECTION_RANK,
    MEDIA_EXTRA_RANK,
    MEDIA_UNKNOWN_RANK,
    SESSION_EXTRA_RANK,
    SESSION_TIMING_RANK,
    SESSION_UNKNOWN_RANK,
)


def serialize(desc: SessionDescription) -> str:
    """Write a SessionDescription as SDP text with CRLF line ends."""
    lines: list[str] = []
    _session(desc, lines)
    for section in desc.media:
        _media(section, lines)
    for line in lines:
        if "\r" in line or "\n" in line or "\x00" in line:
            raise SdpError(f"value contains a line break or NUL: {show(line)}")
    return "".join(line + "\r\n" for line in lines)


def _attribute(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _session(desc: SessionDescription, out: list[str]) -> None:
    origin = desc.origin
    out.append(f"v={desc.version}")
    out.append(
        f"o={origin.username} {origin.session_id} {origin.session_version} "
        f"{origin.nettype} {origin.addrtype} {origin.address}"
    )
    out.append(f"s={desc.name}")
    ranked = [
        (SESSION_EXTRA_RANK.get(kind, SESSION_UNKNOWN_RANK), kind, value)
        for kind, value in desc.extra_lines
    ]
    out.extend(f"{k}={v}" for rank, k, v in ranked if rank < SESSION_TIMING_RANK)
    if desc.connection is not None:
        out.append(f"c={desc.connection}")
    out.extend(f"b={bandwidth}" for bandwidth in desc.bandwidths)
    out.append(f"t={desc.timing}")
    out.extend(f"{k}={v}" for rank, k, v in ranked if rank >= SESSION_TIMING_RANK)

    for mids in desc.group_bundle:
        out.append("a=group:" + " ".join(["BUNDLE", *mids]))
    if desc.ice_lite:
        out.append("a=ice-lite")
    _transport(desc.ice_ufrag, desc.ice_pwd, desc.ice_options, desc.fingerprints, out)
    if desc.setup is not None:
        out.append(f"a=setup:{desc.setup}")
    if desc.extmap_allow_mixed:
        out.append("a=extmap-allow-mixed")
    if desc.msid_semantic is not None:
        out.append(f"a=msid-semantic:{desc.msid_semantic}")
    out.extend(_attribute(name, value) for name, value in desc.attributes)


def _transport(
    ufrag: str | None,
    pwd: str | None,
    options: list[str],
    fingerprints: list[tuple[str, str]],
    out: list[str],
) -> None:
    if ufrag is not None:
        out.append(f"a=ice-ufrag:{ufrag}")
    if pwd is not None:
        out.append(f"a=ice-pwd:{pwd}")
    if options:
        out.append("a=ice-options:" + " ".join(options))
    out.extend(f"a=fingerprint:{algorithm} {digest}" for algorithm, digest in fingerprints)


def _media(m: MediaSection, out: list[str]) -> None:
    port = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
    out.append(f"m={m.kind} {port} {m.protocol} {' '.join(m.formats)}")
    ranked = [
        (MEDIA_EXTRA_RANK.get(kind, MEDIA_UNKNOWN_RANK), kind, value)
        for kind, value in m.extra_lines
    ]
    out.extend(f"{k}={v}" for rank, k, v in ranked if rank < MEDIA_CONNECTION_RANK)
    if m.connection is not None:
        out.append(f"c={m.connection}")
    out.extend(f"b={bandwidth}" for bandwidth in m.bandwidths)
    out.extend(f"{k}={v}" for rank, k, v in ranked if rank >= MEDIA_CONNECTION_RANK)

    if m.mid is not None:
        out.append(f"a=mid:{m.mid}")
    _transport(m.ice_ufrag, m.ice_pwd, m.ice_options, m.fingerprints, out)
    if m.setup is not None:
        out.append(f"a=setup:{m.setup}")
    if m.direction is not None:
        out.append(f"a={m.direction}")
    out.extend(f"a=msid:{msid}" for msid in m.msid)
    if m.rtcp_mux:
        out.append("a=rtcp-mux")
    if m.rtcp_rsize:
        out.append("a=rtcp-rsize")
    out.extend(f"a=extmap:{extmap}" for extmap in m.extmap)
    # Codec lines grouped per payload type, in m= line order first.
    order = [int(f) for f in m.formats if len(f) <= 3 and f.isascii() and f.isdigit()]
    order += [pt for pt in (*m.rtpmap, *m.fmtp) if pt not in order]
    for pt in dict.fromkeys(order):
        if pt in m.rtpmap:
            out.append(f"a=rtpmap:{pt} {m.rtpmap[pt]}")
        if pt in m.fmtp:
            out.append(f"a=fmtp:{pt} {m.fmtp[pt]}")
    out.extend(f"a=rtcp-fb:{pt} {feedback}" for pt, feedback in m.rtcp_fb)
    out.extend(f"a=ssrc-group:{group}" for group in m.ssrc_group)
    out.extend(f"a=ssrc:{ssrc}" for ssrc in m.ssrc)
    if m.sctp_port is not None:
        out.append(f"a=sctp-port:{m.sctp_port}")
    if m.max_message_size is not None:
        out.append(f"a=max-message-size:{m.max_message_size}")
    out.extend(_attribute(name, value) for name, value in m.attributes)
    out.extend(f"a={candidate}" for candidate in m.candidates)
    if m.end_of_candidates:
        out.append("a=end-of-candidates")
