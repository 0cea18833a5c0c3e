"""The W3C RTCSignalingState machine (webrtc-pc §4.3.1, JSEP RFC 8829 §3.2) as a table.

`next_state(state, source, type)` gives the state after applying a description of
`type` ("offer", "answer", "pranswer", "rollback") from `source` ("local"/"remote"),
or raises JsepStateError when JSEP forbids it in that state.
"""

from __future__ import annotations

import enum

from .errors import JsepStateError


class SignalingState(str, enum.Enum):
    """webrtc-pc RTCSignalingState (values are the W3C strings)."""

    STABLE = "stable"
    HAVE_LOCAL_OFFER = "have-local-offer"
    HAVE_REMOTE_OFFER = "have-remote-offer"
    HAVE_LOCAL_PRANSWER = "have-local-pranswer"
    HAVE_REMOTE_PRANSWER = "have-remote-pranswer"
    CLOSED = "closed"


S = SignalingState

# (state, source, type) -> next state. Rollback goes back to stable from any
# non-stable state (RFC 8829 §4.1.8.2); the rest is webrtc-pc's transition diagram.
TRANSITIONS: dict[tuple[SignalingState, str, str], SignalingState] = {
    (S.STABLE, "local", "offer"): S.HAVE_LOCAL_OFFER,
    (S.HAVE_LOCAL_OFFER, "local", "offer"): S.HAVE_LOCAL_OFFER,
    (S.HAVE_LOCAL_OFFER, "remote", "answer"): S.STABLE,
    (S.HAVE_LOCAL_OFFER, "remote", "pranswer"): S.HAVE_REMOTE_PRANSWER,
    (S.HAVE_REMOTE_PRANSWER, "remote", "pranswer"): S.HAVE_REMOTE_PRANSWER,
    (S.HAVE_REMOTE_PRANSWER, "remote", "answer"): S.STABLE,
    (S.STABLE, "remote", "offer"): S.HAVE_REMOTE_OFFER,
    (S.HAVE_REMOTE_OFFER, "remote", "offer"): S.HAVE_REMOTE_OFFER,
    (S.HAVE_REMOTE_OFFER, "local", "answer"): S.STABLE,
    (S.HAVE_REMOTE_OFFER, "local", "pranswer"): S.HAVE_LOCAL_PRANSWER,
    (S.HAVE_LOCAL_PRANSWER, "local", "pranswer"): S.HAVE_LOCAL_PRANSWER,
    (S.HAVE_LOCAL_PRANSWER, "local", "answer"): S.STABLE,
}

DESCRIPTION_TYPES = ("offer", "answer", "pranswer", "rollback")


def next_state(state: SignalingState, source: str, sdp_type: str) -> SignalingState:
    """The signaling state after applying a `sdp_type` description from `source`."""
    if state is S.CLOSED:
        raise JsepStateError("the RTCPeerConnection is closed")
    if sdp_type == "rollback":
        if state is S.STABLE:
            raise JsepStateError("rollback is not possible in the stable state")
        if source == "local" and state not in (S.HAVE_LOCAL_OFFER, S.HAVE_LOCAL_PRANSWER):
            raise JsepStateError(f"cannot roll back a local description in {state.value}")
        if source == "remote" and state not in (S.HAVE_REMOTE_OFFER, S.HAVE_REMOTE_PRANSWER):
            raise JsepStateError(f"cannot roll back a remote description in {state.value}")
        return S.STABLE
    try:
        return TRANSITIONS[(state, source, sdp_type)]
    except KeyError:
        raise JsepStateError(
            f"cannot set a {source} {sdp_type} in signaling state {state.value}"
        ) from None
