"""Every private member of aiortc we touch, beyond the ICE transport seam, goes through here.

The ICE transport seam itself (aiortc's DTLS uses `role`, `_send`, `_recv` of our
IceConnection) is the other direction and is checked by its own test. Each function
here names the private members it touches, listed in the `*_MEMBERS` tuples;
tests/test_aiortc_contract.py checks each of them in the pinned aiortc range, so a
release that moves one fails a named test instead of a user's call.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from aiortc import RTCCertificate
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from OpenSSL import SSL

logger = logging.getLogger(__name__)

# RTCCertificate members: `_create_ssl_context`, overridden by LeanCertificate, and the
# certificate and key it loads, `_cert` and `_key` (aiortc 1.16, rtcdtlstransport.py).
CERTIFICATE_MEMBERS = ("_create_ssl_context", "_cert", "_key")


class _SharedContexts(threading.local):
    """This thread's DTLS contexts, one per SRTP profile list, and the certificate that the
    next connection made from one of them presents (see LeanCertificate)."""

    def __init__(self) -> None:
        self.contexts: dict[tuple[bytes, ...], SSL.Context] = {}
        self.pending: RTCCertificate | None = None


_SHARED = _SharedContexts()


class LeanCertificate(RTCCertificate):  # type: ignore[misc]
    """An RTCCertificate whose DTLS connections share one SSL context and free their
    record buffers when idle (issue 9).

    aiortc builds a context for every DTLS connection (`_create_ssl_context`, called by
    RTCDtlsTransport.start just before it makes the connection): 21 KB of OpenSSL state
    each, the same for every connection but the certificate. Here the thread's one
    context (per SRTP profile list) serves them all, and each connection is given its
    own certificate and key when its handshake starts, by the context's info callback
    (SSL_CB_HANDSHAKE_START). aiortc's start() makes the connection and starts the
    handshake without yielding to the loop, so the certificate noted here is the one
    of the connection whose handshake starts next in this thread
    (tests/test_aiortc_contract.py holds aiortc to that). Should it ever be another's,
    the peer's fingerprint check fails the handshake: nothing is accepted that should
    not be. The shared context keeps no sessions (no resumption across connections).

    SSL_MODE_RELEASE_BUFFERS frees a connection's read and write buffers whenever they
    are empty, which an idle data channel's always are (about 12 KB resident each).
    """

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> SSL.Context:
        shared = _SHARED
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        ctx = shared.contexts.get(key)
        if ctx is None:
            # aiortc's own settings (ciphers, peer verification, SRTP), made with a
            # throwaway certificate: a connection never given its own presents that
            # one, and its peer refuses it.
            ctx = RTCCertificate.generateCertificate()._create_ssl_context(srtp_profiles)
            ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            ctx.set_info_callback(_present_own_certificate)
            shared.contexts[key] = ctx
        shared.pending = self
        return ctx


def _present_own_certificate(conn: SSL.Connection, where: int, _ret: int) -> None:
    """SSL info callback: at a connection's first handshake, load the certificate
    LeanCertificate noted for it (OpenSSL reads it later, for the Certificate message)."""
    if not where & SSL.SSL_CB_HANDSHAKE_START or conn.get_app_data() is not None:
        return  # not a handshake start, or a renegotiation: the certificate is loaded
    certificate, _SHARED.pending = _SHARED.pending, None
    if certificate is None:
        logger.warning("DTLS: a handshake starts with no certificate noted for it")
        return
    conn.set_app_data(certificate)  # aiortc uses no app data; ours marks it loaded
    try:
        conn.use_certificate(certificate._cert)
        conn.use_privatekey(certificate._key)
    except Exception:  # an exception would vanish in OpenSSL's callback: log it
        logger.exception("DTLS: could not load the connection's certificate")


# RTCSctpTransport members used by retransmit_now (aiortc 1.16, rtcsctptransport.py).
SCTP_MEMBERS = ("_sent_queue", "_t3_handle", "_t3_cancel", "_t3_expired")


def retransmit_now(sctp: Any) -> bool:
    """Make SCTP retransmit its outstanding data at once, as its T3 timer would later.

    After an outage the path is back, but what was sent meanwhile waits for the T3
    retransmission timer (at least 1 s in aiortc, RFC 9260 §6.3.3). Firing it now is what
    the timer would do anyway: mark outstanding chunks for retransmission, shrink the
    congestion window, transmit. Returns True when there was something to retransmit.
    """
    if sctp is None or not sctp._sent_queue or sctp._t3_handle is None:
        return False
    sctp._t3_cancel()
    sctp._t3_expired()
    logger.debug("SCTP: retransmitting %d chunks after a path change", len(sctp._sent_queue))
    return True


# RTCDtlsTransport members: `_transport` (attach_ice), `_ssl` (closed_by_peer),
# `_set_role` (set_dtls_role).
DTLS_MEMBERS = ("_transport", "_ssl", "_set_role")


def attach_ice(dtls: Any, ice: Any) -> None:
    """Give a DTLS transport made before the event loop ran its ICE transport.

    aiortc's RTCDtlsTransport keeps the ICE transport it was built with in `_transport`
    and reads it only once started (role, _send, _recv): setting it before start() is
    what passing it to the constructor would have done.
    """
    assert dtls.state == "new", "the ICE transport is attached before DTLS starts"
    dtls._transport = ice


def closed_by_peer(dtls: Any) -> bool:
    """True when the peer ended the DTLS session cleanly, with a close_notify alert.

    aiortc reports both a close_notify and a fatal error as state "closed"; OpenSSL
    records a received close_notify in the connection's shutdown flags (RFC 5246 §7.2.1).
    """
    from OpenSSL import SSL

    ssl = getattr(dtls, "_ssl", None)
    if ssl is None:
        return False
    try:
        return bool(ssl.get_shutdown() & SSL.RECEIVED_SHUTDOWN)
    except SSL.Error:
        return False


def set_dtls_role(dtls: Any, role: str) -> None:
    """The DTLS role a=setup negotiated ("client"/"server", RFC 8842 §5); aiortc's
    `_set_role`, which its handshake reads (it would otherwise derive the role from ICE)."""
    dtls._set_role(role)


# RTCRtpTransceiver members (aiortc 1.16, rtcrtptransceiver.py).
TRANSCEIVER_MEMBERS = ("_codecs", "_preferred_codecs", "_set_mid", "_setCurrentDirection")


def set_codecs(transceiver: Any, codecs: list[Any]) -> None:
    """The codecs a transceiver supports (aiortc fills `_codecs` in its own negotiation)."""
    transceiver._codecs = codecs


def preferred_codecs(transceiver: Any) -> list[Any]:
    """What setCodecPreferences() stored (webrtc-pc §5.4); aiortc has no public getter."""
    return list(transceiver._preferred_codecs)


def set_mid(transceiver: Any, mid: str) -> None:
    """Give a transceiver its mid (webrtc-pc: set when a description assigns it)."""
    transceiver._set_mid(mid)


def set_current_direction(transceiver: Any, direction: str) -> None:
    """Set currentDirection after an answer (webrtc-pc §4.4.1.5)."""
    transceiver._setCurrentDirection(direction)


# RTCRtpSender members: the sources it picked itself (aiortc 1.16, rtcrtpsender.py).
SENDER_MEMBERS = ("_ssrc", "_rtx_ssrc", "_stream_id", "_track_id")


def sender_sources(sender: Any) -> tuple[int, int, str, str]:
    """(ssrc, rtx ssrc, msid stream id, msid track id) the sender uses: the SDP announces them."""
    return sender._ssrc, sender._rtx_ssrc, sender._stream_id, sender._track_id


# RTCRtpReceiver members (aiortc 1.16, rtcrtpreceiver.py).
RECEIVER_MEMBERS = ("_track",)


def remote_track(receiver: Any, kind: str, track_id: str | None) -> Any:
    """The receiver's remote track, made on first need (webrtc-pc "process remote tracks").

    aiortc's RTCRtpReceiver makes it only in its own peer connection's negotiation and
    keeps it in `_track`, which `receiver.track` returns and its receive path feeds.
    """
    if receiver._track is None:
        receiver._track = RemoteStreamTrack(kind=kind, id=track_id)
    return receiver._track
