"""RFC 7983 §7 demultiplexing of one UDP socket by the first byte of each datagram."""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    """What a datagram is, by its first byte."""

    STUN = "stun"
    DTLS = "dtls"
    RTP = "rtp"  # RTP and RTCP (SRTP/SRTCP)
    TURN_CHANNEL = "turn-channel"
    ZRTP = "zrtp"
    UNKNOWN = "unknown"


def classify(data: bytes) -> Kind:
    """RFC 7983 §7: 0-3 STUN, 16-19 ZRTP, 20-63 DTLS, 64-79 TURN channel, 128-191 RTP."""
    if not data:
        return Kind.UNKNOWN
    b = data[0]
    if b <= 3:
        return Kind.STUN
    if 20 <= b <= 63:
        return Kind.DTLS
    if 128 <= b <= 191:
        return Kind.RTP
    if 64 <= b <= 79:
        return Kind.TURN_CHANNEL
    if 16 <= b <= 19:
        return Kind.ZRTP
    return Kind.UNKNOWN
