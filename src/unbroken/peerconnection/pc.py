"""RTCPeerConnection: the W3C API with JSEP semantics on our ICE, over aiortc's DTLS/SCTP/RTP.

Theory of operation
-------------------
One `IceConnection` (our ICE agent on UDP sockets) serves the whole connection: every
m-section is bundled on it (max-bundle), and it lives as long as the peer connection. One
aiortc `RTCDtlsTransport` runs on it, and the SCTP transport (data channels) and every
RTP sender and receiver run on that. An ICE restart changes only the ICE generation
inside the IceConnection, so DTLS, SCTP and RTP never notice (make before break).

JSEP is applied as RFC 8829 and webrtc-pc define it, by the sans-IO `jsep.JsepSession`:
it holds the four descriptions, the signaling state, the ICE credentials and the restart
bookkeeping, and each setLocalDescription/setRemoteDescription gets from it the actions
to carry out (`_carry_out`): set the ICE role, restart ICE with new credentials, give
ICE the peer's credentials (a restart offer's only with our answer), gather, start the
transports. Its errors are raised here as the W3C ones. This class keeps the W3C facade,
the media (peerconnection/media.py), the transports and the event order. Events are queued with
`call_soon`, so they fire after the method that caused them has returned, as in browsers;
only signalingstatechange and track fire as the method ends (webrtc-pc: before its
promise resolves), so a track handler can add a track before the answer is made.

aiortc compatibility (README: "Coming from aiortc"): aiortc's classes and enum values
are accepted (peerconnection/types.py); with no icecandidate listener,
setLocalDescription waits for gathering (NON_TRICKLE_WAIT); ICE server names are
resolved in the background from construction on; bundlePolicy "balanced" and
"max-compat" are refused where they would need a second transport; a clean close by
the peer closes us too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any, cast

from aiortc import RTCConfiguration as _AiortcConfiguration
from aiortc import (
    RTCDataChannelParameters,
    RTCDtlsTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSctpTransport,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcsctptransport import RTCSctpCapabilities
from pyee.asyncio import AsyncIOEventEmitter

from .. import jsep
from .. import sdp as sdplib
from ..errors import (
    InvalidAccessError,
    InvalidStateError,
    NotSupportedError,
    OperationError,
    TypeError_,
)
from ..ice import (
    Candidate,
    IceConfig,
    IceError,
    IceTransportState,
    MappedAddressChanged,
    SelectedPairChanged,
)
from ..ice.agent import generate_credentials
from ..ice.candidate import HostnameCandidateError
from ..ice.relay import RelayServer
from ..jsep import limits
from ..jsep.credentials import Credentials
from ..jsep.errors import JsepAccessError, JsepStateError
from ..jsep.signaling import SignalingState
from ..runtime import AddressFilter, IceConnection
from ..runtime.mdns import RemoteCandidates
from . import aiortc_seam, media
from .handlers import GuardedEmitter, guard
from .ice_servers import relays_without_resolving, resolve_relays, turn_entries, turn_ssl_context
from .stats import build_stats
from .types import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnectionIceErrorEvent,
    RTCSessionDescription,
    StunServer,
    adopt_channel,
    offer_restart_flag,
    stun_servers,
    to_candidate,
    to_description,
)

logger = logging.getLogger(__name__)

ICE_OPTIONS = ["trickle"]

NON_TRICKLE_WAIT = 5.0
"""Seconds setLocalDescription waits for gathering when nobody listens to icecandidate.

aiortc-style code sends `pc.localDescription` right after setLocalDescription, so it
must carry every candidate and end-of-candidates (README: non-trickle use)."""

RESOLVE_TIMEOUT = 5.0
"""Seconds an ICE server's name may take to resolve before it is reported unresolvable."""

IGNORED_OVER_CAP = "candidate_lines_over_cap"
"""RemoteCandidates counter: remote candidate lines ignored past limits.max_candidate_lines."""


@contextlib.contextmanager
def _w3c_errors() -> Iterator[None]:
    """The JSEP layer's errors raised as the W3C ones webrtc-pc names for them."""
    try:
        yield
    except JsepStateError as exc:
        raise InvalidStateError(str(exc)) from None
    except JsepAccessError as exc:
        raise InvalidAccessError(str(exc)) from None


def _generate_credentials() -> Credentials:
    """RFC 8839 §5.4 credentials from the OS's CSPRNG (secrets)."""
    return generate_credentials(secrets.SystemRandom())


class RTCPeerConnection(GuardedEmitter, AsyncIOEventEmitter):  # type: ignore[misc]
    """A WebRTC peer connection whose ICE restarts keep DTLS, data channels and media alive.

    The W3C API (webrtc-pc), names as in browsers and aiortc; events through `on(name)`.
    An exception from an event handler (ours, a data channel's, a remote track's) is
    logged and the event delivered anyway (peerconnection/handlers.py). Signaling input
    is bounded as jsep/limits.py documents.
    """

    def __init__(
        self, configuration: RTCConfiguration | _AiortcConfiguration | None = None
    ) -> None:
        super().__init__()
        self._config = RTCConfiguration.from_any(configuration)  # aiortc's is accepted too
        self._config.validate()
        self._stun_addresses: tuple[tuple[str, int], ...] = ()
        self._relay_servers: tuple[RelayServer, ...] = ()  # TURN, resolved (ice_servers.py)
        self._resolving: asyncio.Task[None] | None = None  # ICE server names being resolved
        self._gathered_waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._fired_receiving: set[int] = set()  # id(transceiver): track event fired
        self._certificate = aiortc_seam.LeanCertificate.generateCertificate()
        # Descriptions, signaling, credentials and restarts (jsep/session.py).
        self._jsep = jsep.JsepSession(_generate_credentials)
        self._signaling = SignalingState.STABLE  # as published, with its event
        self._ice: IceConnection | None = None
        self._dtls: RTCDtlsTransport | None = None
        self._sctp: RTCSctpTransport | None = None
        self._sctp_mid: str | None = None
        self._sctp_remote: tuple[int, int] | None = None  # (port, max message size)
        self._data_channel_requested = False
        self._transceivers: list[RTCRtpTransceiver] = []
        self._negotiated: dict[int, media.NegotiatedMedia] = {}  # by id(transceiver)
        self._media_started: set[tuple[int, str]] = set()
        self._mids_used: set[str] = set()
        self._mline_order: list[str] = []  # mids in m-line order once negotiated
        self._cname = secrets.token_hex(8)
        self._session_id = random.SystemRandom().getrandbits(62)
        self._session_version = 0
        self._local_candidates: dict[str, list[Candidate]] = {}
        self._gathering_complete: set[str] = set()
        self._transport_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # background work we hold on to
        self._closed = False
        self._ice_state = "new"
        self._connection_state = "new"
        self._gathering_state = "new"
        self._negotiation_needed = False
        self._negotiation_scheduled = False
        self._start_resolving()  # ICE server names, in the background if a loop runs

    # ------------------------------------------------------------------ properties

    @property
    def signalingState(self) -> str:  # noqa: N802
        """webrtc-pc signalingState."""
        return self._signaling.value

    @property
    def iceConnectionState(self) -> str:  # noqa: N802
        """webrtc-pc iceConnectionState (one bundled transport: its state)."""
        return self._ice_state

    @property
    def iceGatheringState(self) -> str:  # noqa: N802
        """webrtc-pc iceGatheringState."""
        return self._gathering_state

    @property
    def connectionState(self) -> str:  # noqa: N802
        """webrtc-pc connectionState (ICE and DTLS together)."""
        return self._connection_state

    @property
    def canTrickleIceCandidates(self) -> bool | None:  # noqa: N802
        """True when the remote description announced trickle (RFC 8838), None before one."""
        remote = self._jsep.remote
        if remote is None:
            return None
        desc = remote.desc
        return "trickle" in desc.ice_options or any(
            "trickle" in desc.ice_options_for(i) for i in range(len(desc.media))
        )

    @property
    def localDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        """The pending local description if any, else the current one, with candidates so far."""
        return self._render_local(self._jsep.local)

    @property
    def currentLocalDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        return self._render_local(self._jsep.current_local)

    @property
    def pendingLocalDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        return self._render_local(self._jsep.pending_local)

    @property
    def remoteDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        return self._render_remote(self._jsep.remote)

    @property
    def currentRemoteDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        return self._render_remote(self._jsep.current_remote)

    @property
    def pendingRemoteDescription(self) -> RTCSessionDescription | None:  # noqa: N802
        return self._render_remote(self._jsep.pending_remote)

    @property
    def sctp(self) -> RTCSctpTransport | None:
        """The SCTP transport once data channels are negotiated."""
        return self._sctp if self._sctp_mid is not None else None

    @property
    def iceTransport(self) -> IceConnection | None:  # noqa: N802
        """Our ICE transport (the one object that lives for the whole connection)."""
        return self._ice

    # ------------------------------------------------------------------ configuration

    def getConfiguration(self) -> RTCConfiguration:  # noqa: N802
        """A copy of the configuration in force."""
        return self._config.copy()

    def setConfiguration(  # noqa: N802
        self, configuration: RTCConfiguration | _AiortcConfiguration
    ) -> None:
        """Change ICE servers, transport policy or timers; they apply from the next gathering."""
        self._assert_open()
        configuration = RTCConfiguration.from_any(configuration)
        configuration.validate()
        if configuration.bundle_policy() != self._config.bundle_policy():
            raise InvalidAccessError("bundlePolicy cannot be changed (InvalidModificationError)")
        if (
            configuration.iceCandidatePoolSize != self._config.iceCandidatePoolSize
            and self._jsep.local is not None
        ):  # webrtc-pc "set a configuration": the pool size is fixed once an SLD was called
            raise InvalidAccessError(
                "iceCandidatePoolSize cannot change after setLocalDescription "
                "(InvalidModificationError)"
            )
        servers_changed = stun_servers(configuration.ice_servers()) != stun_servers(
            self._config.ice_servers()
        ) or turn_entries(configuration.ice_servers()) != turn_entries(self._config.ice_servers())
        self._config = configuration
        if servers_changed:
            self._stun_addresses = ()
            self._relay_servers = ()
            if self._resolving is not None:
                self._resolving.cancel()
            self._resolving = None
            self._start_resolving()
        if self._ice is not None:
            self._ice.agent.config = self._ice_config()

    def _ice_config(self) -> IceConfig:
        base = self._config.iceConfig or IceConfig()
        return dataclasses.replace(
            base,
            stun_servers=self._stun_addresses,
            turn_servers=self._relay_servers,
            relay_only=self._config.ice_transport_policy() == "relay",
        )

    # ------------------------------------------------------------------ ICE server names

    def _start_resolving(self) -> None:
        """Resolve the ICE servers' names in the background, if a loop runs (else later)."""
        if self._resolving is not None or self._closed:
            return
        servers = stun_servers(self._config.ice_servers())
        relays = relays_without_resolving(turn_entries(self._config.ice_servers()))
        if all(server.is_address for server in servers) and relays is not None:
            self._stun_addresses = tuple(dict.fromkeys((s.host, s.port) for s in servers))
            self._relay_servers = relays
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._resolving = loop.create_task(self._resolve_servers(servers))

    async def _resolved(self) -> None:
        """Wait (bounded) until the ICE servers' addresses are known; then ICE uses them."""
        self._start_resolving()
        while self._resolving is not None:
            task = self._resolving
            try:
                await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if self._closed:
                    raise InvalidStateError("the RTCPeerConnection was closed") from None
                if not task.cancelled() or task is self._resolving:
                    raise  # our caller was cancelled, not the resolution
                # setConfiguration replaced the servers: wait for the new resolution.
        if self._ice is not None:
            self._ice.agent.config = self._ice_config()

    async def _resolve_servers(self, servers: list[StunServer]) -> None:
        """Every stun: server's addresses, both families, resolved without blocking the loop.

        An IP address is used as it is. A name goes to the resolver (asyncio's getaddrinfo,
        in a thread), at most RESOLVE_TIMEOUT; a name under ".invalid" never resolves and is
        not asked about (RFC 6761 §6.4). A name that gives no address is reported as an
        icecandidateerror event with errorCode 701, never raised.
        """
        loop = asyncio.get_running_loop()
        found: list[tuple[str, int]] = []
        for server in servers:
            if server.is_address:
                found.append((server.host, server.port))
                continue
            problem = ""
            addresses: list[tuple[str, int]] = []
            if (
                server.host.lower().rstrip(".").endswith(".invalid")
                or server.host.lower() == "invalid"
            ):
                problem = "the name is under .invalid and never resolves (RFC 6761 §6.4)"
            else:
                try:
                    infos = await asyncio.wait_for(
                        loop.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM),
                        RESOLVE_TIMEOUT,
                    )
                    for family, _, _, _, sockaddr in infos:
                        if family in (socket.AF_INET, socket.AF_INET6):
                            addresses.append((str(sockaddr[0]).split("%")[0], server.port))
                except (TimeoutError, OSError, UnicodeError) as exc:
                    problem = f"the name did not resolve: {exc or 'timed out'}"
                if not addresses and not problem:
                    problem = "the name has no IPv4 or IPv6 address"
            if problem:
                logger.info("ICE server %s: %s", server.url, problem)
                self._queue_event(
                    "icecandidateerror",
                    RTCPeerConnectionIceErrorEvent(
                        url=server.url, errorCode=701, errorText=problem
                    ),
                )
            found.extend(addresses)
        self._stun_addresses = tuple(dict.fromkeys(found))
        self._relay_servers = await resolve_relays(
            turn_entries(self._config.ice_servers()), RESOLVE_TIMEOUT, self._unresolved
        )
        if self._ice is not None:
            self._ice.agent.config = self._ice_config()

    def _unresolved(self, url: str, problem: str) -> None:
        """A TURN server name that gave no address: an icecandidateerror (701)."""
        logger.info("ICE server %s: %s", url, problem)
        self._queue_event(
            "icecandidateerror",
            RTCPeerConnectionIceErrorEvent(url=url, errorCode=701, errorText=problem),
        )

    def _address_filter(self) -> AddressFilter:
        # iceTransportPolicy "relay" uses the same sockets: they are the bases the TURN
        # allocations are made from; the agent signals and pairs relay candidates only.
        cfg = self._config
        return AddressFilter(
            addresses=tuple(cfg.hostAddresses) if cfg.hostAddresses is not None else None,
            interfaces=tuple(cfg.hostInterfaces) if cfg.hostInterfaces is not None else None,
            loopback=cfg.includeLoopback,
        )

    # ------------------------------------------------------------------ transports

    def _ensure_dtls(self) -> RTCDtlsTransport:
        """The DTLS transport, made on first need; its ICE transport too if a loop runs.

        aiortc lets an application build transceivers and data channels before the event
        loop runs; our ICE transport needs the loop, so it is attached at the first
        description (aiortc_seam.attach_ice).
        """
        if self._dtls is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                dtls = RTCDtlsTransport(cast(Any, None), [self._certificate])
                dtls.on("statechange", self._on_dtls_state)
                self._dtls = guard(dtls)
                return self._dtls
            self._ensure_transports()
        assert self._dtls is not None
        return self._dtls

    def _ensure_transports(self) -> tuple[IceConnection, RTCDtlsTransport]:
        """Create the ICE and DTLS transports on first need (they live until close())."""
        if self._ice is None or self._dtls is None:
            self._start_resolving()
            ice = IceConnection(
                controlling=True,
                config=self._ice_config(),
                address_filter=self._address_filter(),
                credentials=self._jsep.credentials.current,
                turn_ssl_context=turn_ssl_context(self._config.turnCaFile),
            )
            ice.on("candidate", self._on_local_candidate)
            ice.on("gatheringcomplete", self._on_gathering_complete)
            ice.on("gatheringstatechange", lambda state: self._set_gathering_state(state.value))
            ice.on("statechange", self._on_ice_state)
            ice.on("candidateerror", self._on_candidate_error)
            ice.on("selectedpairchange", self._on_selected_pair)
            ice.on("mappedaddresschange", self._on_mapped_address)
            ice.on("pathresumed", lambda _event: aiortc_seam.retransmit_now(self._sctp))
            if self._dtls is None:
                dtls = RTCDtlsTransport(
                    cast(Any, ice), [self._certificate]
                )  # the seam: role/_send/_recv
                dtls.on("statechange", self._on_dtls_state)
            else:
                dtls = self._dtls  # made before the loop ran: it gets its ICE transport now
                aiortc_seam.attach_ice(dtls, ice)
            # Handlers an application adds to these (pc.iceTransport, pc.sctp.transport) run
            # guarded too: one raising in a DTLS state change cannot stop the others.
            self._ice, self._dtls = guard(ice), guard(dtls)
        return self._ice, self._dtls

    def _forget_old_local(self) -> None:
        """Drop the candidates of generations no description carries (one per restart)."""
        live = self._jsep.live_local_ufrags()
        for ufrag in [u for u in self._local_candidates if u not in live]:
            del self._local_candidates[ufrag]
        self._gathering_complete.intersection_update(live)

    def _on_local_candidate(self, candidate: Candidate, ufrag: str) -> None:
        if ufrag not in self._jsep.live_local_ufrags():
            return  # an older generation's late candidate: no description shows it
        self._local_candidates.setdefault(ufrag, []).append(candidate)
        local = self._jsep.local
        if local is not None and local.ufrag == ufrag:
            event = RTCIceCandidate.from_candidate(candidate, self._first_mid(local), 0, ufrag)
            self._queue_event("icecandidate", event)

    def _on_gathering_complete(self, ufrag: str) -> None:
        if ufrag not in self._jsep.live_local_ufrags():
            return
        self._gathering_complete.add(ufrag)
        for waited, future in self._gathered_waiters:
            if waited == ufrag and not future.done():
                future.set_result(None)
        local = self._jsep.local
        if local is not None and local.ufrag == ufrag:
            self._queue_event("icecandidate", None)

    def _on_selected_pair(self, event: SelectedPairChanged) -> None:
        # Data sent while the old path was dead is lost: retransmit it now rather than at
        # SCTP's timer (at least 1 s), so a healed path carries the backlog at once. So is
        # what went out on the old path of a restart once the peer had left it (Firefox
        # closes its old socket as it switches, a few ms before we do): on a switch to a
        # new generation, too. The same path heard again after an outage: "pathresumed".
        moved = event.previous_generation is not None and event.generation != (
            event.previous_generation
        )
        if event.local is not None and (event.after_outage or moved):
            aiortc_seam.retransmit_now(self._sctp)

    def _on_mapped_address(self, event: MappedAddressChanged) -> None:
        # A NAT rebound our mapping. Controlling, the agent heals it alone (its consent
        # checks nominate, the peer follows). Controlled, we cannot make the peer move:
        # ask for a restart, which the application's negotiationneeded handler (or the
        # recovery helper) carries out, make before break (docs/ice.md).
        if not event.controlling and not self._closed:
            logger.info("NAT rebinding seen while controlled: restarting ICE")
            self.restartIce()

    def _on_candidate_error(self, event: Any) -> None:
        self._queue_event(
            "icecandidateerror",
            RTCPeerConnectionIceErrorEvent(
                url=event.url,
                errorCode=event.error_code,
                errorText=event.error_text,
                address=event.address or None,
                port=event.port or None,
            ),
        )

    def _on_ice_state(self, state: IceTransportState) -> None:
        # The state changes when the queued task runs, then the event fires (webrtc-pc
        # "update the ICE connection state"): handlers see every state, in order.
        self._queue_call(self._apply_ice_state, state.value)

    def _apply_ice_state(self, value: str) -> None:
        if self._closed:
            return
        if value != self._ice_state:
            self._ice_state = value
            self.emit("iceconnectionstatechange")
        self._apply_connection_state()

    def _set_gathering_state(self, value: str) -> None:
        self._queue_call(self._apply_gathering_state, value)

    def _apply_gathering_state(self, value: str) -> None:
        if not self._closed and value != self._gathering_state:
            self._gathering_state = value
            self.emit("icegatheringstatechange")

    def _update_connection_state(self) -> None:
        self._queue_call(self._apply_connection_state)

    def _on_dtls_state(self) -> None:
        dtls = self._dtls
        if self._closed or dtls is None or dtls.state not in ("failed", "closed"):
            self._update_connection_state()
            return
        if dtls.state == "closed" and self._closed_by_peer(dtls):
            # The peer closed its connection: nothing will come back, and there is nothing
            # to recover. As aiortc does, we close too, at once, and report "closed".
            logger.info("the peer closed the connection (SCTP ended, then DTLS close_notify)")
            self._background(self._close_by_peer())
            return
        self._update_connection_state()
        # Not closed by us, so it died: a fatal alert, an error in aiortc's receive path.
        # The SCTP association rode on it: close it and its data channels ("close"
        # events, readyState "closed"), as browsers do.
        logger.warning("the DTLS transport is %s: the connection has failed", dtls.state)
        if self._sctp is not None:
            self._background(self._sctp.stop())

    def _closed_by_peer(self, dtls: RTCDtlsTransport) -> bool:
        """Whether our DTLS transport closed because the peer closed its connection.

        A peer's close() ends SCTP first (ABORT or SHUTDOWN: every data channel closes)
        and then DTLS with a close_notify alert (RFC 5246 §7.2.1; webrtc-pc close(),
        aiortc and browsers alike). A close_notify while the peer's association is still
        up is not that: its DTLS ended under a live connection, which is a failure.
        """
        if not aiortc_seam.closed_by_peer(dtls):
            return False
        sctp_in_use = self._sctp is not None and self._sctp_mid is not None
        return not sctp_in_use or (self._sctp is not None and self._sctp.state == "closed")

    async def _close_by_peer(self) -> None:
        """The peer's close: channels close, the states become "closed" with their events."""
        if self._closed:
            return
        if self._sctp is not None:
            await self._sctp.stop()  # every data channel fires "close"
        if self._closed:
            return
        self._ice_state = "closed"
        self._connection_state = "closed"
        self.emit("iceconnectionstatechange")
        self.emit("connectionstatechange")
        await self.close()

    def _background(self, coro: Any) -> None:
        """Run `coro` as a task we hold on to; what it raises is logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("background task failed", exc_info=task.exception())

        task.add_done_callback(done)

    def _apply_connection_state(self) -> None:
        """webrtc-pc RTCPeerConnectionState from the ICE and DTLS states."""
        if self._closed:
            return
        ice = self._ice_state
        dtls = self._dtls.state if self._dtls is not None else "new"
        # Only close() closes our DTLS transport, and it sets "closed" itself: a DTLS
        # transport "closed" while we are open died underneath (aiortc reports a fatal
        # error as "closed"), and nothing it carried can come back, so "failed" (webrtc-pc
        # RTCPeerConnectionState aggregates DTLS; a restart cannot revive it).
        if ice == "failed" or dtls in ("failed", "closed"):
            state = "failed"
        elif ice == "disconnected":
            state = "disconnected"
        elif ice in ("connected", "completed") and dtls == "connected":
            state = "connected"
        elif ice == "new" and dtls == "new":
            state = "new"
        else:
            state = "connecting"
        if state != self._connection_state:
            self._connection_state = state
            self.emit("connectionstatechange")

    # ------------------------------------------------------------------ offers and answers

    async def createOffer(
        self, options: Any = None, *, iceRestart: bool = False
    ) -> RTCSessionDescription:  # noqa: N802, N803
        """An offer for the current transceivers and data channels; no side effects.

        `iceRestart=True` (or an RTCOfferOptions dict with it) gives new credentials, the
        same ones on every call until a local description applies them (RFC 8829 §5.2.1).
        """
        self._assert_open()
        creds = self._jsep.create_offer(offer_restart_flag(options, iceRestart))
        desc = self._build_description("offer", creds, None)
        return RTCSessionDescription(sdplib.serialize(desc), "offer")

    async def createAnswer(self, options: Any = None) -> RTCSessionDescription:  # noqa: N802
        """The answer to the pending remote offer; new credentials if the offer restarted ICE."""
        self._assert_open()
        with _w3c_errors():
            creds, offer = self._jsep.create_answer()
        desc = self._build_description("answer", creds, offer.desc)
        return RTCSessionDescription(sdplib.serialize(desc), "answer")

    async def setLocalDescription(self, description: Any = None) -> None:  # noqa: N802
        """Apply a local offer or answer (implicit when omitted), or roll back."""
        self._assert_open()
        if description is None or (
            isinstance(description, dict | RTCSessionDescription)
            and not to_description(description).sdp
        ):
            sdp_type = to_description(description).type if description is not None else None
            if sdp_type == "rollback":
                await self._rollback("local")
                return
            if self._jsep.signaling in (
                SignalingState.HAVE_REMOTE_OFFER,
                SignalingState.HAVE_LOCAL_PRANSWER,
            ):
                description = await self.createAnswer()
            else:
                description = await self.createOffer()
        desc_in = to_description(description)
        if desc_in.type == "rollback":
            await self._rollback("local")
            return
        with _w3c_errors():
            self._jsep.expect("local", desc_in.type)
            parsed = self._parse(desc_in.sdp)
            creds, transport = self._jsep.check_local(desc_in.type, parsed, self._ice_view())
        # Checked completely: from here on it is applied, and nothing may refuse it.
        self._ensure_transports()
        step = self._jsep.apply_local(desc_in.type, parsed, creds, transport)
        await self._carry_out(step.actions)
        self._assign_mids(parsed)
        await self._carry_out(self._jsep.finish_local(step))
        self._set_signaling(step.new_state)  # last: its handlers see the descriptions applied
        self._update_negotiation_needed()
        if transport and not self.listeners("icecandidate"):
            await self._wait_gathered(creds[0])

    async def _carry_out(self, actions: list[jsep.Action]) -> None:
        """Do what the JSEP session asks of ICE, media and the transports, in its order."""
        ice = self._ice
        for action in actions:
            if isinstance(action, jsep.SetIceRole):
                assert ice is not None
                ice.set_role(action.controlling)
            elif isinstance(action, jsep.RestartIce):
                assert ice is not None
                # Make before break; addresses followed in the same step (no spurious failed).
                await ice.restart_on_current_addresses(
                    action.credentials, controlling=action.controlling, answering=action.answering
                )
            elif isinstance(action, jsep.SetRemoteCredentials):
                self._apply_remote_ice(action.description, local_ufrag=action.local_ufrag)
                if action.local_ufrag is not None and self._jsep.awaits_answer(action.description):
                    self._jsep.remote_restart_applied()
            elif isinstance(action, jsep.AddRemoteCandidates):
                self._add_remote_candidates(action.description)
            elif isinstance(action, jsep.StartGathering):
                assert ice is not None
                await self._resolved()  # ICE server names, resolved since the constructor ran
                await ice.gather()
            elif isinstance(action, jsep.DropOldCandidates):
                self._forget_old_local()
            elif isinstance(action, jsep.AnswerApplied):
                self._answer_applied(local=action.local)
            elif isinstance(action, jsep.StartTransports):
                self._start_transports()

    def _answer_applied(self, *, local: bool) -> None:
        """Media after an answer: our answer's codecs, every transceiver's current direction."""
        remote = self._jsep.current_remote
        if local:
            local_desc = self._jsep.current_local
            assert local_desc is not None
            self._restrict_to_answer(local_desc.desc)
        self._apply_answer_media(remote.desc if remote else None, local=local)

    def _ice_view(self) -> jsep.IceView:
        """What the JSEP session needs to know of our ICE agent, now."""
        if self._ice is None:
            return jsep.IceView()
        agent = self._ice.agent
        generations = agent.generations()
        return jsep.IceView(
            remote_credentials=agent.remote_credentials,
            local_ufrags=frozenset(g.ufrag for g in generations),
            remote_ufrags=frozenset(g.remote_ufrag for g in generations if g.remote_ufrag),
        )

    async def _wait_gathered(self, ufrag: str) -> None:
        """Non-trickle use: wait until generation `ufrag` has gathered, at most NON_TRICKLE_WAIT.

        With no icecandidate listener nobody can trickle, so the application will send
        `localDescription` as it is when this call returns (aiortc's way): it then holds
        every candidate and end-of-candidates (README: non-trickle use).
        """
        if ufrag in self._gathering_complete or self._closed:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (ufrag, future)
        self._gathered_waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), NON_TRICKLE_WAIT)
        except TimeoutError:
            logger.info(
                "gathering did not complete within %.1f s: localDescription has the "
                "candidates found so far",
                NON_TRICKLE_WAIT,
            )
        finally:
            if waiter in self._gathered_waiters:
                self._gathered_waiters.remove(waiter)

    async def setRemoteDescription(self, description: Any) -> None:  # noqa: N802
        """Apply the peer's offer or answer (or roll back a remote offer)."""
        self._assert_open()
        desc_in = to_description(description)
        if desc_in.type == "rollback":
            await self._rollback("remote")
            return
        with _w3c_errors():
            self._jsep.expect("remote", desc_in.type)
            parsed = self._parse(desc_in.sdp)
            creds = self._validate_remote(desc_in.type, parsed)
        # Checked completely: from here on it is applied, and nothing may refuse it.
        self._ensure_transports()
        step = self._jsep.plan_remote(desc_in.type, parsed, creds, self._ice_view())
        self._negotiate_remote_media(parsed, offer=desc_in.type == "offer")
        await self._carry_out(step.actions)  # nothing in them waits
        await self._carry_out(self._jsep.finish_remote(step))
        tracks = self._process_remote_tracks(parsed) if desc_in.type != "pranswer" else []
        self._set_signaling(step.new_state)
        # webrtc-pc: the track events fire after signalingstatechange, before the call
        # returns, so aiortc's echo (addTrack in the handler, then createAnswer) answers
        # sendrecv and a recorder started right after this call gets every frame.
        for track in tracks:
            self.emit("track", track)
        self._update_negotiation_needed()

    def _process_remote_tracks(self, desc: sdplib.SessionDescription) -> list[MediaStreamTrack]:
        """webrtc-pc "process remote tracks": the tracks the peer starts sending.

        A transceiver whose remote side now sends, and which had not fired a track event
        for receiving yet, gets its remote track (id from the peer's a=msid, RFC 8830
        §2) and one track event.
        """
        tracks: list[MediaStreamTrack] = []
        for index, section in enumerate(desc.media):
            mid = section.mid or str(index)
            t = self._transceiver_by_mid(mid)
            negotiated = self._negotiated.get(id(t)) if t is not None else None
            if t is None or negotiated is None or section.rejected:
                continue
            if not negotiated.remote_sends:
                self._fired_receiving.discard(id(t))
                continue
            if id(t) in self._fired_receiving:
                continue
            self._fired_receiving.add(id(t))
            tracks.append(guard(aiortc_seam.remote_track(t.receiver, t.kind, negotiated.track_id)))
        return tracks

    async def _rollback(self, source: str) -> None:
        """RFC 8829 §4.1.8.2: cancel the negotiation, back to the last stable state.

        The JSEP session withdraws what was applied since the last answer; ICE drops the
        generations of withdrawn credentials, unless one already selected a pair.
        """
        ice = self._ice
        with _w3c_errors():
            actions = self._jsep.rollback(source, lambda u: ice is not None and ice.abandon(u))
        await self._carry_out(actions)
        self._set_signaling(self._jsep.signaling)
        self._update_negotiation_needed()

    # ------------------------------------------------------------------ candidates

    async def addIceCandidate(self, candidate: Any = None) -> None:  # noqa: N802
        """Add a remote candidate, or end-of-candidates (None or an empty candidate).

        The generation is the one named by usernameFragment (or the line's ufrag); an
        unknown one is OperationError, an older one is ignored (RFC 8838 §9, webrtc-pc).
        """
        self._assert_open()
        init = to_candidate(candidate)
        remote = self._jsep.remote
        if remote is None:
            raise InvalidStateError("addIceCandidate needs a remote description")
        if (
            init is not None
            and init.sdpMid is None
            and init.sdpMLineIndex is None
            and init.candidate
        ):
            raise TypeError_("a candidate needs sdpMid or sdpMLineIndex")
        if init is not None and init.candidate:
            self._check_mid(remote.desc, init)
        if remote.credentials is None:
            return  # every m-section rejected: no transport (webrtc-pc: ignored, resolved)
        if init is not None and init.candidate:
            index = self._candidate_index(remote.desc, init)
            if 0 <= index < len(remote.desc.media) and remote.desc.media[index].rejected:
                return  # webrtc-pc: a candidate of a stopped (rejected) m-section is ignored
        ufrag = init.usernameFragment if init is not None else None
        newest = remote.credentials[0]
        if ufrag is not None and ufrag != newest:
            if self._jsep.is_older_remote_ufrag(ufrag):
                logger.debug("ignoring a candidate of an older generation (ufrag %s)", ufrag)
                return
            raise OperationError(f"addIceCandidate: no remote description has ufrag {ufrag!r}")
        if init is None or not init.candidate:
            remote.end_of_candidates = True
            if not self._jsep.awaits_answer(remote) and self._ice is not None:
                RemoteCandidates.of(self._ice).end_of_candidates(newest)
            return
        parsed = init.parsed
        if parsed is None:
            if self._is_unresolvable_hostname(init.candidate):
                return  # browsers ignore hostnames other than mDNS names
            raise OperationError(f"addIceCandidate: malformed candidate {init.candidate[:80]!r}")
        index = self._candidate_index(remote.desc, init)
        if not self._on_bundle_transport(remote, index):
            logger.debug(
                "ignoring a candidate of m-section %d, outside the BUNDLE transport", index
            )
            if self._ice is not None:
                RemoteCandidates.of(self._ice).ignore("bundle_other_transport")
            return
        # Stored for remoteDescription only once accepted, never past the cap: 100,000 calls
        # made a 5.5 MB description when every line was kept (issue 7, jsep/limits.py).
        cap = self._candidate_line_cap()
        if self._jsep.awaits_answer(remote) or self._ice is None:
            # Applied with the rest of that generation, once our answer restarts ICE.
            if len(remote.candidates) < cap:
                remote.candidates.append(init.candidate)
            elif self._ice is not None:
                RemoteCandidates.of(self._ice).ignore(IGNORED_OVER_CAP)
            return
        try:
            # An mDNS name is resolved in the background: this resolves once the candidate
            # is processed, as in Chromium, not once its name is (runtime/mdns.py).
            added = RemoteCandidates.of(self._ice).add(parsed.with_ufrag(newest, parsed.generation))
        except IceError as exc:
            raise OperationError(f"addIceCandidate: {exc}") from None
        if added and len(remote.candidates) < cap:
            remote.candidates.append(init.candidate)

    def _is_unresolvable_hostname(self, line: str) -> bool:
        """True (and counted) for a candidate whose address is a hostname we do not resolve."""
        try:
            Candidate.from_sdp(line)
        except HostnameCandidateError:
            logger.debug("ignoring a hostname candidate: %.80s", line)
            if self._ice is not None:
                RemoteCandidates.of(self._ice).ignore("hostname")
            return True
        except ValueError:
            return False
        return False

    @staticmethod
    def _candidate_index(desc: sdplib.SessionDescription, init: RTCIceCandidate) -> int:
        """The m-section a trickled candidate names: sdpMid first, else sdpMLineIndex."""
        if init.sdpMid is not None:
            return desc.media_index(init.sdpMid) or 0
        return init.sdpMLineIndex or 0

    @staticmethod
    def _on_bundle_transport(applied: jsep.Description, index: int) -> bool:
        """Whether candidates of m-section `index` of a remote description are for our transport.

        We bundle everything on one transport, the BUNDLE tag's (RFC 8843). An offer's other
        bundled m-sections have transports of their own until the answer (§7.2: unique
        address:port each, e.g. Chromium's bundlePolicy "balanced" gathers for each), and
        the offerer drops them once BUNDLE is accepted (§7.4), so their candidates can only
        fail. In an answer every bundled m-section shares the tag's transport (§7.3, §10).
        An m-section outside any BUNDLE group keeps the old behaviour (one transport).
        """
        desc = applied.desc
        if applied.type != "offer" or not 0 <= index < len(desc.media):
            return True
        if desc.bundle_group(index) is None:
            return True
        return index == jsep.bundle_tag(desc)

    def _check_mid(self, desc: sdplib.SessionDescription, init: RTCIceCandidate) -> None:
        if init.sdpMid is not None:
            if desc.media_index(init.sdpMid) is None:
                raise OperationError(f"addIceCandidate: no m-section has mid {init.sdpMid!r}")
        elif init.sdpMLineIndex is not None and init.sdpMLineIndex >= len(desc.media):
            raise OperationError(
                f"addIceCandidate: sdpMLineIndex {init.sdpMLineIndex} is out of range"
            )

    def restartIce(self) -> None:  # noqa: N802
        """webrtc-pc restartIce(): the next offer carries new credentials; fires negotiationneeded."""
        if self._closed:
            return
        self._jsep.restart_ice()
        self._update_negotiation_needed()

    # ------------------------------------------------------------------ media and data

    def createDataChannel(  # noqa: N802
        self,
        label: str,
        maxPacketLifeTime: int | None = None,  # noqa: N803
        maxRetransmits: int | None = None,  # noqa: N803
        ordered: bool = True,
        protocol: str = "",
        negotiated: bool = False,
        id: int | None = None,  # noqa: A002 - W3C name
    ) -> RTCDataChannel:
        """A data channel (RTCDataChannelInit options as keywords)."""
        self._assert_open()
        if maxPacketLifeTime is not None and maxRetransmits is not None:
            raise TypeError_("maxPacketLifeTime and maxRetransmits are mutually exclusive")
        if negotiated and id is None:
            raise TypeError_("a negotiated data channel needs an id")
        if len(label.encode()) > 65535 or len(protocol.encode()) > 65535:
            raise TypeError_("label and protocol must be at most 65535 bytes")
        sctp = self._ensure_sctp()
        params = RTCDataChannelParameters(
            label=label,
            maxPacketLifeTime=maxPacketLifeTime,
            maxRetransmits=maxRetransmits,
            ordered=ordered,
            protocol=protocol,
            negotiated=negotiated,
            id=id,
        )
        channel = guard(RTCDataChannel(sctp, params))  # an application bug cannot kill SCTP
        if not self._data_channel_requested:
            self._data_channel_requested = True
            self._update_negotiation_needed()
        return channel

    def _ensure_sctp(self) -> RTCSctpTransport:
        if self._sctp is None:
            dtls = self._ensure_dtls()
            self._sctp = guard(RTCSctpTransport(dtls))
            # The remote side's channels are made by aiortc inside its SCTP receive path:
            # guarded before the application sees them, so their handlers cannot kill it.
            self._sctp.on(
                "datachannel",
                lambda channel: self.emit("datachannel", guard(adopt_channel(channel))),
            )
        return self._sctp

    def addTrack(self, track: MediaStreamTrack, *streams: Any) -> RTCRtpSender:  # noqa: N802
        """Send `track`: reuse a free transceiver of its kind or add a sendrecv one."""
        self._assert_open()
        if track.kind not in ("audio", "video"):
            raise TypeError_(f"unsupported track kind {track.kind!r}")
        if any(t.sender.track is track for t in self._transceivers):
            raise InvalidAccessError("this track already has a sender")
        for t in self._transceivers:
            if (
                t.kind == track.kind
                and t.sender.track is None
                and not t.stopped
                and t.currentDirection in (None, "recvonly", "inactive")
            ):
                t.sender.replaceTrack(track)
                t.direction = "sendrecv" if t.direction in ("recvonly", "sendrecv") else "sendonly"
                self._update_negotiation_needed()
                return t.sender
        transceiver = self._new_transceiver(track.kind, "sendrecv", track)
        return transceiver.sender

    def addTransceiver(self, trackOrKind: Any, direction: str = "sendrecv") -> RTCRtpTransceiver:  # noqa: N802, N803
        """A transceiver for a track or a kind ("audio"/"video")."""
        self._assert_open()
        if direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise TypeError_(f"invalid direction {direction!r}")
        if isinstance(trackOrKind, str):
            if trackOrKind not in ("audio", "video"):
                raise TypeError_(f"invalid kind {trackOrKind!r}")
            return self._new_transceiver(trackOrKind, direction, None)
        return self._new_transceiver(trackOrKind.kind, direction, trackOrKind)

    def _new_transceiver(
        self, kind: str, direction: str, track: MediaStreamTrack | None
    ) -> RTCRtpTransceiver:
        dtls = self._ensure_dtls()
        sender = RTCRtpSender(track or kind, dtls)
        receiver = RTCRtpReceiver(kind, dtls)
        transceiver = RTCRtpTransceiver(
            kind=kind, receiver=receiver, sender=sender, direction=direction
        )
        aiortc_seam.set_codecs(transceiver, media.local_codecs(kind))
        self._transceivers.append(transceiver)
        self._update_negotiation_needed()
        return transceiver

    def getTransceivers(self) -> list[RTCRtpTransceiver]:  # noqa: N802
        return list(self._transceivers)

    def getSenders(self) -> list[RTCRtpSender]:  # noqa: N802
        return [t.sender for t in self._transceivers]

    def getReceivers(self) -> list[RTCRtpReceiver]:  # noqa: N802
        return [t.receiver for t in self._transceivers]

    async def getStats(self) -> dict[str, Any]:  # noqa: N802
        """An RTCStatsReport: a dict of stats objects keyed by id (W3C field names)."""
        reports: list[dict[str, Any]] = []
        for t in self._transceivers:
            if (id(t), "send") in self._media_started:
                reports.append(dict(await t.sender.getStats()))
            if (id(t), "recv") in self._media_started:
                reports.append(dict(await t.receiver.getStats()))
        return build_stats(self._ice, self._dtls, self._sctp, reports)

    async def close(self) -> None:
        """Close everything; states become closed without events (webrtc-pc close())."""
        if self._closed:
            return
        self._closed = True
        self._jsep.close()
        self._signaling = SignalingState.CLOSED
        if self._transport_task is not None:
            self._transport_task.cancel()
        if self._resolving is not None:
            self._resolving.cancel()
        for _, future in self._gathered_waiters:
            if not future.done():
                future.set_result(None)
        for t in self._transceivers:
            await t.stop()
        if self._sctp is not None:
            await self._sctp.stop()
        if self._dtls is not None:
            await self._dtls.stop()
        if self._ice is not None:
            await self._ice.close()
        self._ice_state = "closed"
        self._connection_state = "closed"
        self.remove_all_listeners()

    # ------------------------------------------------------------------ internals: SDP

    def _assert_open(self) -> None:
        if self._closed:
            raise InvalidStateError("the RTCPeerConnection is closed")

    def _parse(self, text: str) -> sdplib.SessionDescription:
        with _w3c_errors():
            limits.check_text(text)  # before parsing: the cost is bounded (jsep/limits.py)
        try:
            return sdplib.parse(text)
        except sdplib.SdpError as exc:
            raise OperationError(f"failed to parse the session description: {exc}") from None

    def _candidate_line_cap(self) -> int:
        """Remote candidate lines parsed or stored per description (jsep/limits.py)."""
        config = self._ice.agent.config if self._ice is not None else self._ice_config()
        return limits.max_candidate_lines(config.max_remote_candidates)

    def _validate_remote(
        self, sdp_type: str, desc: sdplib.SessionDescription
    ) -> Credentials | None:
        """Everything setRemoteDescription could refuse, checked before anything is applied.

        Returns the transport's credentials, or None when every m-section is rejected.
        """
        try:
            sdplib.validate_for_webrtc(desc, sdp_type)
        except sdplib.SdpError as exc:
            raise InvalidAccessError(f"setRemoteDescription: {exc}") from None
        with _w3c_errors():
            limits.check_media_sections(desc)
        missing = jsep.missing_rtcp_mux(desc)
        if missing:
            raise InvalidAccessError(
                f"m-section {missing[0]} has no a=rtcp-mux, which WebRTC requires "
                "(rtcpMuxPolicy 'require', RFC 8829 §5.8)"
            )
        with _w3c_errors():
            return self._jsep.check_remote(sdp_type, desc, self._ice_view())

    def _first_mid(self, applied: jsep.Description) -> str:
        sections = applied.desc.media
        tag = jsep.bundle_tag(applied.desc)
        return sections[tag].mid or "0" if sections else "0"

    def _render_local(self, applied: jsep.Description | None) -> RTCSessionDescription | None:
        """The applied local description with the candidates gathered so far (trickle)."""
        if applied is None:
            return None
        desc = dataclasses.replace(
            applied.desc, media=[dataclasses.replace(m) for m in applied.desc.media]
        )
        ufrag = applied.ufrag
        tag = jsep.bundle_tag(desc)
        if ufrag is not None and desc.media and not desc.media[tag].rejected:
            section = desc.media[tag]
            section.candidates = [
                c.with_ufrag(ufrag, c.generation).to_sdp()
                for c in self._local_candidates.get(ufrag, [])
            ]
            section.end_of_candidates = ufrag in self._gathering_complete
        return RTCSessionDescription(sdplib.serialize(desc), applied.type)

    def _render_remote(self, applied: jsep.Description | None) -> RTCSessionDescription | None:
        if applied is None:
            return None
        if not applied.candidates and not applied.end_of_candidates:
            return RTCSessionDescription(sdplib.serialize(applied.desc), applied.type)
        desc = dataclasses.replace(
            applied.desc, media=[dataclasses.replace(m) for m in applied.desc.media]
        )
        tag = desc.media[jsep.bundle_tag(desc)]
        tag.candidates = list(tag.candidates) + [c.removeprefix("a=") for c in applied.candidates]
        tag.end_of_candidates = tag.end_of_candidates or applied.end_of_candidates
        return RTCSessionDescription(sdplib.serialize(desc), applied.type)

    def _assign_mids(self, desc: sdplib.SessionDescription) -> None:
        self._mline_order = [m.mid or str(i) for i, m in enumerate(desc.media)]

    def _allocate_mid(self) -> str:
        n = 0
        while str(n) in self._mids_used:
            n += 1
        mid = str(n)
        self._mids_used.add(mid)
        return mid

    def _transceiver_by_mid(self, mid: str) -> RTCRtpTransceiver | None:
        return next((t for t in self._transceivers if t.mid == mid), None)

    def _ssrc_info(self, t: RTCRtpTransceiver) -> jsep.SsrcInfo | None:
        if t.direction not in ("sendrecv", "sendonly"):
            return None
        ssrc, rtx_ssrc, stream_id, track_id = aiortc_seam.sender_sources(t.sender)
        return jsep.SsrcInfo(
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc if t.kind == "video" else None,
            cname=self._cname,
            stream_id=stream_id,
            track_id=track_id,
        )

    def _build_description(
        self, sdp_type: str, creds: Credentials, remote: sdplib.SessionDescription | None
    ) -> sdplib.SessionDescription:
        """An offer (remote None) or the answer to `remote`, with our transport attributes."""
        sections: list[sdplib.MediaSection] = []
        if remote is None:
            # webrtc-extensions alwaysNegotiateDataChannels: the data m-section comes first.
            data_first = self._config.alwaysNegotiateDataChannels and self._sctp_mid is None
            if data_first:
                self._ensure_sctp()
                self._sctp_mid = self._allocate_mid()
            for t in self._transceivers:
                if t.mid is None and not t.stopped:
                    aiortc_seam.set_mid(t, self._allocate_mid())
            if self._data_channel_requested and self._sctp_mid is None:
                self._sctp_mid = self._allocate_mid()
            mids = list(self._mline_order)
            if data_first and self._sctp_mid not in mids:
                mids.append(self._sctp_mid)  # type: ignore[arg-type]
            mids += [t.mid for t in self._transceivers if t.mid is not None and t.mid not in mids]
            if self._sctp_mid is not None and self._sctp_mid not in mids:
                mids.append(self._sctp_mid)
            for mid in mids:
                if mid == self._sctp_mid:
                    sections.append(jsep.application_section(mid))
                    continue
                found = self._transceiver_by_mid(mid)
                if found is None:
                    continue
                # A re-offer keeps the negotiated payload types and extension ids: neither may
                # be remapped within a session (RFC 3264 §8.3.2, RFC 8285 §6). Chromium rejects
                # a remapped extension id, and drops audio whose payload type it remapped.
                agreed = self._negotiated.get(id(found))
                codecs = media.filter_preferred_codecs(
                    agreed.codecs if agreed else media.local_codecs(found.kind),
                    aiortc_seam.preferred_codecs(found),
                )  # setCodecPreferences (webrtc-pc §5.4), aiortc's rule
                extensions = (
                    agreed.header_extensions
                    if agreed
                    else media.local_header_extensions(found.kind)
                )
                sections.append(
                    media.offer_media_section(
                        found.kind, mid, found.direction, codecs, extensions, self._ssrc_info(found),
                    )
                )  # fmt: skip
        else:
            for section in remote.media:
                sections.append(self._answer_section(section))
        if sdp_type == "offer":
            self._check_bundle_policy(sections)
        accepted = [s.mid for s in sections if s.mid is not None and s.port != 0]
        setup = (
            "actpass"
            if sdp_type == "offer"
            else ("passive" if self._jsep.dtls_role == "server" else "active")
        )
        fingerprint = [
            (f.algorithm.lower(), f.value.upper()) for f in self._certificate.getFingerprints()
        ]
        for section in sections:
            if section.port == 0:
                continue
            section.ice_ufrag, section.ice_pwd = creds
            section.ice_options = list(ICE_OPTIONS)
            section.fingerprints = list(fingerprint)
            section.setup = setup
            section.rtcp_mux = section.kind != "application"
        self._session_version += 1
        desc = sdplib.SessionDescription(
            origin=sdplib.Origin(
                "-", self._session_id, self._session_version, "IN", "IP4", "127.0.0.1"
            ),
            media=sections,
            group_bundle=[accepted] if accepted else [],
            msid_semantic="WMS *",
        )
        return desc

    def _check_bundle_policy(self, sections: list[sdplib.MediaSection]) -> None:
        """Refuse an offer that bundlePolicy "balanced" or "max-compat" would split.

        Those policies gather a transport per media kind ("balanced") or per m-section
        ("max-compat") until the answer accepts BUNDLE (webrtc-pc §4.2.5, RFC 8829
        §5.2.1); we run every m-section on one transport. Where the policy asks for one
        transport anyway (one kind, one m-section, or m-sections already bundled by an
        answer) the offer is the same as max-bundle's; otherwise NotSupportedError.
        """
        policy = self._config.bundle_policy()
        if policy == "max-bundle":
            return
        bundled: set[str] = set()
        remote = self._jsep.current_remote
        if remote is not None:
            for index, section in enumerate(remote.desc.media):
                if section.mid is not None and remote.desc.bundle_group(index) is not None:
                    bundled.add(section.mid)
        bundled_kinds = {s.kind for s in sections if s.mid in bundled}
        transports: set[str] = set()
        for section in sections:
            if section.rejected:
                continue
            if section.mid in bundled or (policy == "balanced" and section.kind in bundled_kinds):
                transports.add("")
            else:
                transports.add(section.kind if policy == "balanced" else f"mid {section.mid}")
        if len(transports) > 1:
            raise NotSupportedError(
                f"bundlePolicy {policy!r} needs a transport for each "
                f"{'media kind' if policy == 'balanced' else 'm-section'} of this offer; "
                "unbroken runs every m-section on one BUNDLE transport: use 'max-bundle'"
            )

    def _answer_section(self, remote: sdplib.MediaSection) -> sdplib.MediaSection:
        mid = remote.mid or ""
        if remote.rejected:
            return jsep.rejected_section(remote)
        if remote.kind == "application":
            try:
                sctp = jsep.negotiate_application_section(remote)
            except jsep.MediaNegotiationError:
                return jsep.rejected_section(remote)
            self._ensure_sctp()
            self._sctp_mid = mid
            self._mids_used.add(mid)
            # The offer's profile, also the legacy DTLS/SCTP one (aiortc's _sctpLegacySdp).
            return jsep.application_section(mid, protocol=sctp.protocol)
        t = self._transceiver_by_mid(mid)
        negotiated = self._negotiated.get(id(t)) if t is not None else None
        if t is None or negotiated is None:
            return jsep.rejected_section(remote)
        negotiated = self._preferred(t, negotiated)
        if negotiated is None:
            return jsep.rejected_section(remote)
        direction = jsep.answer_direction(t.direction, remote.direction or "sendrecv")
        ssrc = self._ssrc_info(t) if direction in ("sendrecv", "sendonly") else None
        return media.answer_media_section(remote, negotiated, direction, ssrc)

    @staticmethod
    def _preferred(
        t: RTCRtpTransceiver, negotiated: media.NegotiatedMedia
    ) -> media.NegotiatedMedia | None:
        """The negotiation narrowed and ordered by setCodecPreferences; None if nothing is left."""
        preferred = aiortc_seam.preferred_codecs(t)
        if not preferred:
            return negotiated
        codecs = media.filter_preferred_codecs(negotiated.codecs, preferred)
        if not any(not media.is_rtx(c) for c in codecs):
            return None
        return dataclasses.replace(negotiated, codecs=codecs)

    def _negotiate_remote_media(self, desc: sdplib.SessionDescription, *, offer: bool) -> None:
        """Match remote m-sections to transceivers (creating recvonly ones for new offers)."""
        for index, section in enumerate(desc.media):
            mid = section.mid or str(index)
            self._mids_used.add(mid)
            if section.kind == "application":
                if section.rejected:
                    continue
                try:
                    sctp = jsep.negotiate_application_section(section)
                except jsep.MediaNegotiationError as exc:
                    logger.info("m-section %s: %s", mid, exc)
                    continue
                self._ensure_sctp()
                self._sctp_mid = mid
                # aiortc's _sctpLegacySdp offers "DTLS/SCTP 5000" with a=sctpmap (RFC 8841's
                # predecessor): its port comes from there; 0 means any message size.
                self._sctp_remote = (sctp.port, sctp.max_message_size)
                continue
            if section.kind not in ("audio", "video") or section.rejected:
                continue
            t = self._transceiver_by_mid(mid)
            if t is None and offer:
                free = (
                    x
                    for x in self._transceivers
                    if x.mid is None and x.kind == section.kind and not x.stopped
                )
                t = next(free, None) or self._new_transceiver(section.kind, "recvonly", None)
                aiortc_seam.set_mid(t, mid)
            if t is None:
                continue
            try:
                self._negotiated[id(t)] = media.negotiate_remote_section(section, section.kind)
            except jsep.MediaNegotiationError as exc:
                logger.info("m-section %s: %s", mid, exc)
                self._negotiated.pop(id(t), None)

    def _restrict_to_answer(self, answer: sdplib.SessionDescription) -> None:
        """Our answer applied: media uses the codecs it names, in its order (setCodecPreferences)."""
        for section in answer.media:
            t = self._transceiver_by_mid(section.mid or "")
            negotiated = self._negotiated.get(id(t)) if t is not None else None
            if negotiated is None or section.rejected:
                continue
            order = {fmt: i for i, fmt in enumerate(section.formats)}
            codecs = sorted(
                (c for c in negotiated.codecs if str(c.payloadType) in order),
                key=lambda c: order[str(c.payloadType)],
            )
            if any(not media.is_rtx(c) for c in codecs):
                self._negotiated[id(t)] = dataclasses.replace(negotiated, codecs=codecs)

    def _apply_answer_media(self, remote: sdplib.SessionDescription | None, *, local: bool) -> None:
        """After an answer: the current direction of every transceiver, track events."""
        if remote is None:
            return
        for index, section in enumerate(remote.media):
            mid = section.mid or str(index)
            t = self._transceiver_by_mid(mid)
            if t is None or id(t) not in self._negotiated:
                continue
            remote_dir = section.direction or "sendrecv"
            if local:
                current = jsep.answer_direction(t.direction, remote_dir)
            else:
                current = _reverse(remote_dir)
            aiortc_seam.set_current_direction(
                t, current
            )  # the track event fired with the remote description

    def _apply_remote_ice(self, applied: jsep.Description, *, local_ufrag: str | None) -> None:
        assert self._ice is not None and applied.credentials is not None
        ufrag, pwd = applied.credentials
        try:
            self._ice.set_remote_credentials(
                ufrag, pwd, local_ufrag=local_ufrag, lite=applied.desc.ice_lite
            )
        except IceError as exc:
            raise InvalidAccessError(f"ICE credentials: {exc}") from None
        # A browser peer may hide its addresses behind mDNS names: hear its announcements
        # from now on, so that its names resolve from the cache (runtime/mdns.py).
        RemoteCandidates.of(self._ice).listen()
        self._add_remote_candidates(applied)

    def _add_remote_candidates(self, applied: jsep.Description) -> None:
        """The candidates carried in the description itself and those trickled since."""
        assert self._ice is not None and applied.credentials is not None
        intake = RemoteCandidates.of(self._ice)
        ufrag = applied.credentials[0]
        lines: list[str] = []
        for index, section in enumerate(applied.desc.media):
            if section.candidates and not self._on_bundle_transport(applied, index):
                intake.ignore("bundle_other_transport", len(section.candidates))
                continue
            lines.extend(section.candidates)
        lines.extend(applied.candidates)
        cap = self._candidate_line_cap()
        if len(lines) > cap:
            # Past what the agent can take, a line would only cost parsing: ignore, count.
            logger.info(
                "ignoring %d remote candidate lines past the first %d", len(lines) - cap, cap
            )
            intake.ignore(IGNORED_OVER_CAP, len(lines) - cap)
            del lines[cap:]
        for line in lines:
            try:
                cand = Candidate.from_sdp(line)
            except HostnameCandidateError:
                intake.ignore("hostname")
                continue
            except ValueError:
                logger.info("ignoring a malformed remote candidate: %.80s", line)
                continue
            if cand.ufrag is not None and cand.ufrag != ufrag:
                continue
            try:
                intake.add(cand.with_ufrag(ufrag, cand.generation))  # mDNS names resolved first
            except IceError:
                continue
        if applied.end_of_candidates or any(s.end_of_candidates for s in applied.desc.media):
            intake.end_of_candidates(ufrag)

    # ------------------------------------------------------------------ internals: transports

    def _start_transports(self) -> None:
        """After an answer: start DTLS once ICE connects, then SCTP and media; later, new media."""
        if self._transport_task is None:
            self._transport_task = asyncio.ensure_future(self._run_transports())
        elif self._dtls is not None and self._dtls.state == "connected":
            asyncio.ensure_future(self._start_upper())

    async def _run_transports(self) -> None:
        ice, dtls = self._ensure_transports()
        up = (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
        await ice.wait_for_state(lambda s: s in up or s is IceTransportState.CLOSED)
        if self._closed or ice.state is IceTransportState.CLOSED:
            return
        remote = self._jsep.current_remote
        assert remote is not None
        prints = remote.desc.fingerprint_for(jsep.bundle_tag(remote.desc))
        params = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in prints]
        )
        aiortc_seam.set_dtls_role(dtls, self._jsep.dtls_role or "client")
        try:
            await dtls.start(params)
        except Exception as exc:  # a failed handshake makes connectionState failed
            logger.warning("DTLS failed: %s", exc)
            self._update_connection_state()
            return
        self._update_connection_state()
        await self._start_upper()

    async def _start_upper(self) -> None:
        """Start SCTP and every negotiated sender and receiver not yet started."""
        if self._closed:
            return
        if self._sctp is not None and self._sctp_mid is not None and self._sctp_remote is not None:
            port, max_size = self._sctp_remote
            await self._sctp.start(RTCSctpCapabilities(maxMessageSize=max_size), port)
        for t in self._transceivers:
            negotiated = self._negotiated.get(id(t))
            if negotiated is None or t.mid is None or t.currentDirection is None:
                continue
            if (
                t.currentDirection in ("sendrecv", "sendonly")
                and (id(t), "send") not in self._media_started
            ):
                info = self._ssrc_info(t)
                if info is not None:
                    self._media_started.add((id(t), "send"))
                    await t.sender.send(media.send_parameters(negotiated, info, t.mid))
            if (
                t.currentDirection in ("sendrecv", "recvonly")
                and (id(t), "recv") not in self._media_started
            ):
                self._media_started.add((id(t), "recv"))
                await t.receiver.receive(media.receive_parameters(negotiated, t.mid))

    # ------------------------------------------------------------------ internals: events

    def _queue_event(self, name: str, *args: Any) -> None:
        """Fire an event on a later loop turn, after the current method returned."""
        self._queue_call(self._fire, name, args)

    def _queue_call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(fn, *args)

    def _fire(self, name: str, args: tuple[Any, ...]) -> None:
        if self._closed:
            return
        self.emit(name, *args)

    def _set_signaling(self, state: SignalingState) -> None:
        if state is not self._signaling:
            self._signaling = state
            if state is not SignalingState.STABLE:
                self._negotiation_needed = False  # re-checked on the way back to stable
            # webrtc-pc fires this before the promise resolves, so a handler reads the state
            # just set; a queued event would read a later one after back-to-back calls.
            self.emit("signalingstatechange")

    def _needs_negotiation(self) -> bool:
        """webrtc-pc "check if negotiation is needed", for what we support."""
        if self._jsep.restart_pending:
            return True
        if self._data_channel_requested and self._sctp_mid is None:
            return True
        local = self._jsep.current_local
        for t in self._transceivers:
            if t.stopped:
                continue
            if t.mid is None or local is None or local.desc.media_index(t.mid) is None:
                return True
            section = local.desc.media[local.desc.media_index(t.mid) or 0]
            if local.type == "offer" and section.direction != t.direction:
                return True
        return False

    def _update_negotiation_needed(self) -> None:
        if self._closed or self._signaling is not SignalingState.STABLE:
            return
        if not self._needs_negotiation():
            self._negotiation_needed = False
            return
        if self._negotiation_needed:
            return
        self._negotiation_needed = True
        self._queue_negotiation_needed()

    def _queue_negotiation_needed(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._fire_negotiation_needed)

    def _fire_negotiation_needed(self) -> None:
        # Re-checked when it fires: it may have been negotiated meanwhile (webrtc-pc §4.7.3).
        if (
            self._closed
            or self._signaling is not SignalingState.STABLE
            or not self._needs_negotiation()
        ):
            self._negotiation_needed = False
            return
        self.emit("negotiationneeded")


def _reverse(direction: str) -> str:
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)
