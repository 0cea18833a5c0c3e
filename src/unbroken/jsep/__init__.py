"""JSEP (RFC 8829): the offer/answer rules. Pure: no I/O, no clock, no randomness.

`jsep.media` builds and reads the m-sections for audio, video and data channels and
negotiates codecs against aiortc's; `jsep.codecs` holds our codec table and the
codec-level SDP values. The peer connection adds the ICE and DTLS lines itself.
"""

from __future__ import annotations

from unbroken.jsep.codecs import (
    codecs_compatible,
    filter_preferred_codecs,
    is_rtx,
    local_codecs,
    local_header_extensions,
)
from unbroken.jsep.errors import MediaNegotiationError
from unbroken.jsep.media import (
    SCTP_PROFILE,
    NegotiatedMedia,
    RemoteSctp,
    SsrcInfo,
    answer_direction,
    answer_media_section,
    application_section,
    direction_receives,
    direction_sends,
    intersect_directions,
    missing_rtcp_mux,
    negotiate_application_section,
    negotiate_remote_section,
    offer_media_section,
    receive_parameters,
    rejected_section,
    reverse_direction,
    send_parameters,
)

__all__ = [
    "MediaNegotiationError",
    "NegotiatedMedia",
    "RemoteSctp",
    "SsrcInfo",
    "answer_direction",
    "answer_media_section",
    "application_section",
    "missing_rtcp_mux",
    "SCTP_PROFILE",
    "codecs_compatible",
    "filter_preferred_codecs",
    "direction_receives",
    "direction_sends",
    "intersect_directions",
    "is_rtx",
    "local_codecs",
    "local_header_extensions",
    "negotiate_application_section",
    "negotiate_remote_section",
    "offer_media_section",
    "receive_parameters",
    "rejected_section",
    "reverse_direction",
    "send_parameters",
]
