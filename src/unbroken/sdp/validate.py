"""WebRTC rules a well-formed description must also meet (RFC 8829 §5.8.3).

`parse` checks grammar only, so that a description missing, say, its ICE credentials
can still be read and inspected. `validate_for_webrtc` is the second step, run before a
description is applied: each m-section that is in use must have a mid and, at its own
level, in its BUNDLE-tagged m-section (RFC 8843 §7.2, §8.1) or at session level, ICE
credentials, at least one DTLS fingerprint and a DTLS setup role. The peer connection
turns the SdpError into InvalidAccessError.
"""

from __future__ import annotations

from unbroken.sdp.errors import SdpError, show
from unbroken.sdp.model import SessionDescription

_SCTP_PROTOCOLS = ("UDP/DTLS/SCTP", "TCP/DTLS/SCTP")
"""RFC 8841 §4.1 protocols, which need a=sctp-port (RFC 8829 §5.8.2)."""


def validate_for_webrtc(desc: SessionDescription, sdp_type: str | None = None) -> None:
    """Raise SdpError if `desc` lacks what JSEP requires of every m-section in use.

    An m-section is in use unless its port is 0 without a=bundle-only. `sdp_type`
    ("offer", "pranswer", "answer") enables the rules that depend on it: an answer may
    not use a=setup:actpass (RFC 5763 §5).
    """
    mids: dict[str, int] = {}
    for index, section in enumerate(desc.media):
        if section.mid is None:
            continue
        if section.mid in mids:
            raise SdpError(
                f"m-sections {mids[section.mid]} and {index} have the same mid {show(section.mid)}"
            )
        mids[section.mid] = index

    grouped: set[str] = set()
    for group in desc.group_bundle:
        for mid in group:
            if mid not in mids:
                raise SdpError(f"a=group:BUNDLE names mid {show(mid)}, which no m-section has")
            if mid in grouped:
                # RFC 8843 §7.1: an m-section is in at most one BUNDLE group.
                raise SdpError(f"mid {show(mid)} is in more than one BUNDLE group")
            grouped.add(mid)

    for index, section in enumerate(desc.media):
        if section.rejected:
            continue
        where = f"m-section {index} ({section.kind})"
        if section.mid is None:
            raise SdpError(f"{where} has no a=mid")
        where = f"m-section {index} (mid {show(section.mid)})"
        if section.bundle_only and section.mid not in grouped:
            raise SdpError(f"{where} is bundle-only but in no BUNDLE group")
        ufrag, pwd = desc.media_ice_credentials(index)
        if ufrag is None:
            raise SdpError(f"{where} has no a=ice-ufrag (media, BUNDLE tag or session level)")
        if pwd is None:
            raise SdpError(f"{where} has no a=ice-pwd (media, BUNDLE tag or session level)")
        if not desc.fingerprint_for(index):
            raise SdpError(f"{where} has no a=fingerprint (media, BUNDLE tag or session level)")
        setup = desc.setup_for(index)
        if setup is None:
            raise SdpError(f"{where} has no a=setup (media, BUNDLE tag or session level)")
        if sdp_type in ("answer", "pranswer") and setup == "actpass":
            raise SdpError(f"{where}: an answer may not use a=setup:actpass (RFC 5763 §5)")
        if section.protocol in _SCTP_PROTOCOLS and section.sctp_port is None:
            raise SdpError(f"{where} is an SCTP m-section without a=sctp-port")
