"""JSEP (RFC 8829): the offer/answer rules. Pure: no I/O, no clock, no randomness, no aiortc.

`jsep.session` holds a peer connection's descriptions, signaling state, ICE credentials
and restart bookkeeping, and says what the runtime must do as descriptions are applied;
`jsep.signaling` is the signaling state table, `jsep.credentials` the credential rules,
`jsep.limits` the bounds on signaling input. `jsep.media` and `jsep.codecs` hold the
media rules that need no codec objects (directions, data m-sections, fmtp text); RTP
codec negotiation works on aiortc's codec objects and lives in peerconnection/media.py.
"""

from __future__ import annotations

from unbroken.jsep.errors import JsepAccessError, JsepError, JsepStateError, MediaNegotiationError
from unbroken.jsep.media import (
    SCTP_PROFILE,
    RemoteSctp,
    SsrcInfo,
    answer_direction,
    application_section,
    direction_receives,
    direction_sends,
    intersect_directions,
    missing_rtcp_mux,
    negotiate_application_section,
    rejected_section,
    reverse_direction,
)
from unbroken.jsep.session import (
    Action,
    AddRemoteCandidates,
    AnswerApplied,
    Description,
    DropOldCandidates,
    IceView,
    JsepSession,
    RestartIce,
    SetIceRole,
    SetRemoteCredentials,
    StartGathering,
    StartTransports,
    Step,
    bundle_tag,
    credentials_of,
)
from unbroken.jsep.signaling import SignalingState

__all__ = [
    "Action",
    "AddRemoteCandidates",
    "AnswerApplied",
    "Description",
    "DropOldCandidates",
    "IceView",
    "JsepAccessError",
    "JsepError",
    "JsepSession",
    "JsepStateError",
    "MediaNegotiationError",
    "RemoteSctp",
    "RestartIce",
    "SCTP_PROFILE",
    "SetIceRole",
    "SetRemoteCredentials",
    "SignalingState",
    "SsrcInfo",
    "StartGathering",
    "StartTransports",
    "Step",
    "answer_direction",
    "application_section",
    "bundle_tag",
    "credentials_of",
    "direction_receives",
    "direction_sends",
    "intersect_directions",
    "missing_rtcp_mux",
    "negotiate_application_section",
    "rejected_section",
    "reverse_direction",
]
