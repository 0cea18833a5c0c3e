"""Where we reach into aiortc's private members beyond the ICE transport seam.

Each function here names the private members it touches; tests/test_aiortc_contract.py
checks that they exist in the pinned aiortc range, so a release that moves one fails a
named test instead of a user's call.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

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


# RTCDtlsTransport members: `_transport` (attach_ice), `_ssl` (closed_by_peer).
DTLS_MEMBERS = ("_transport", "_ssl")


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
