"""The JSEP session: descriptions, signaling state, credentials and ICE restarts, sans-IO.

Theory of operation
-------------------
`JsepSession` holds what RFC 8829 and webrtc-pc say a peer connection remembers between
offers and answers: the four descriptions (pending and current, local and remote), the
signaling state (the table in `jsep.signaling`), our ICE credentials (`CredentialBook`)
and the restart bookkeeping (a remote restart offer waiting for our answer, whether our
pending offer restarts, whether gathering ever started). It never touches ICE, DTLS or a
clock: each call returns the list of `Action`s the runtime must carry out, in order, such
as "restart ICE with these credentials" or "give ICE these remote credentials". What it
needs to know of the ICE agent comes in as an `IceView` snapshot.

Applying a description is two steps, because the runtime's part of it may wait (an ICE
restart, the first gathering) or fail (the ICE agent refuses credentials):

    step = session.apply_local(type, desc, creds, transport)   # or plan_remote(...)
    ... carry out step.actions ...
    after = session.finish_local(step)                        # or finish_remote(step)
    ... carry out `after`, then publish step.new_state ...

`apply_local` records the local description at once (ICE candidates of its generation
arrive while the restart runs); `plan_remote` records nothing, so a remote description
that ICE refuses leaves the session as it was. Rules followed (module docstring of
`jsep.credentials` for the credential ones):
- RFC 8829 §5.2.2/§5.3.1: a re-offer and an answer keep the m-sections in place.
- RFC 8839 §4.2.3: the offerer of the first negotiation controls ICE, and the answerer
  is controlled unless the offerer is ICE-lite (RFC 8445 §6.1.1).
- Restarts (../shared/DESIGN.md "ICE restart: the rules"): a local description with new
  credentials restarts ICE when applied; the restart's offerer becomes controlling
  (libwebrtc's redetermine_role_on_ice_restart; docs/ice.md). A remote offer with new
  credentials is a restart: ICE takes its credentials only with our answer, which must
  carry new ones too (§5.3.2). A rollback withdraws the generations applied since the
  last answer, unless one already selected a pair.
- RFC 8842 §5.3: the DTLS role follows a=setup; a re-offer's answer keeps the role of
  the association it continues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import sdp as sdplib
from . import limits
from .credentials import (
    CredentialBook,
    Credentials,
    UfragMemory,
    check_remote_answer,
    check_restart,
)
from .errors import JsepAccessError, JsepStateError
from .signaling import SignalingState, next_state

FINGERPRINT_ALGORITHMS = ("sha-256", "sha-384", "sha-512", "sha-1")
"""a=fingerprint hash functions we can check a DTLS certificate with (RFC 8122 §5)."""


@dataclass(eq=False)
class Description:
    """A description that was applied: its type, its parse, the credentials it carries."""

    type: str
    desc: sdplib.SessionDescription
    credentials: Credentials | None  # None: a remote one with no transport (all rejected)
    candidates: list[str] = field(default_factory=list)  # trickled in later (remote)
    end_of_candidates: bool = False

    @property
    def ufrag(self) -> str | None:
        return self.credentials[0] if self.credentials is not None else None


@dataclass(frozen=True)
class IceView:
    """What the session must know of the ICE agent, as a snapshot the runtime gives it."""

    remote_credentials: Credentials | None = None
    """The newest generation's remote credentials, once it has some."""
    local_ufrags: frozenset[str] = frozenset()
    """The local ufrags of every live generation."""
    remote_ufrags: frozenset[str] = frozenset()
    """The remote ufrags of every live generation."""


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class SetIceRole:
    """Set the ICE role of the first negotiation (RFC 8839 §4.2.3)."""

    controlling: bool


@dataclass(frozen=True)
class RestartIce:
    """Start a new ICE generation with these local credentials (make before break)."""

    credentials: Credentials
    controlling: bool
    answering: bool
    """The peer offered this restart: our checks wait for its (IceConfig.answer_check_hold)."""


@dataclass(frozen=True)
class StartGathering:
    """Gather candidates for the first time (later generations gather as they restart)."""


@dataclass(frozen=True)
class SetRemoteCredentials:
    """Give ICE the remote description's credentials and candidates.

    `local_ufrag` names the local generation they belong to (None: the newest). After a
    deferred restart offer is applied so, the runtime calls `remote_restart_applied()`.
    """

    description: Description
    local_ufrag: str | None


@dataclass(frozen=True)
class AddRemoteCandidates:
    """Give ICE the candidates of a remote description whose credentials it already has."""

    description: Description


@dataclass(frozen=True)
class DropOldCandidates:
    """No description carries older local generations any more: forget their candidates."""


@dataclass(frozen=True)
class AnswerApplied:
    """An answer was applied (`local`: ours): media takes its final directions and codecs."""

    local: bool


@dataclass(frozen=True)
class StartTransports:
    """A transport is negotiated: start DTLS once ICE connects, then SCTP and media."""


Action = (
    SetIceRole
    | RestartIce
    | StartGathering
    | SetRemoteCredentials
    | AddRemoteCandidates
    | DropOldCandidates
    | AnswerApplied
    | StartTransports
)


@dataclass
class Step:
    """A description being applied: the runtime carries out `actions`, then finishes it."""

    description: Description
    new_state: SignalingState
    transport: bool
    """The description has a transport (an m-section in use)."""
    actions: list[Action]
    remote_restart: bool = False
    """A remote offer that restarts ICE (applied with our answer)."""


# ---------------------------------------------------------------- pure helpers


def bundle_tag(desc: sdplib.SessionDescription) -> int:
    """Index of the m-section whose transport the bundle uses (first accepted one)."""
    for i, section in enumerate(desc.media):
        tag = desc.bundle_tag_index(i)
        if tag is not None:
            return tag
        if not section.rejected:
            return i
    return 0


def credentials_of(desc: sdplib.SessionDescription) -> Credentials | None:
    """The transport's ICE credentials; None when every m-section is rejected."""
    if all(section.rejected for section in desc.media):
        return None  # also an offer with no m-section at all (RFC 8829 §5.2.1)
    ufrag, pwd = desc.media_ice_credentials(bundle_tag(desc))
    if not ufrag or not pwd:
        raise JsepAccessError("the description has no ice-ufrag/ice-pwd")
    return ufrag, pwd


def check_fingerprint(desc: sdplib.SessionDescription) -> None:
    """JsepAccessError unless the transport has a fingerprint we can check (RFC 8122)."""
    prints = desc.fingerprint_for(bundle_tag(desc))
    if not any(alg in FINGERPRINT_ALGORITHMS for alg, _ in prints):
        raise JsepAccessError("the description has no usable a=fingerprint")


# ---------------------------------------------------------------- the session


class JsepSession:
    """One peer connection's offer/answer state; every method is synchronous and pure."""

    def __init__(
        self, generate: Callable[[], Credentials], remote_ufrag_memory: int | None = None
    ) -> None:
        self.signaling = SignalingState.STABLE
        self.credentials = CredentialBook(generate)
        self.pending_local: Description | None = None
        self.current_local: Description | None = None
        self.pending_remote: Description | None = None
        self.current_remote: Description | None = None
        self.deferred_remote: Description | None = None  # a restart offer awaiting our answer
        self.remote_restart = False  # the pending remote offer restarts ICE
        self.offer_restarted = False  # our pending local offer restarts ICE
        self.gathered_once = False  # a local description with a transport was applied
        self.dtls_role: str | None = None  # "client"/"server" once a=setup decided it
        # Remote ufrags seen lately: older generation (ignored) vs unknown (an error).
        self.remote_ufrags = UfragMemory(remote_ufrag_memory or limits.REMOTE_UFRAG_MEMORY)

    # ------------------------------------------------------------ reading

    @property
    def local(self) -> Description | None:
        """The pending local description if any, else the current one."""
        return self.pending_local or self.current_local

    @property
    def remote(self) -> Description | None:
        """The pending remote description if any, else the current one."""
        return self.pending_remote or self.current_remote

    @property
    def transport_negotiated(self) -> bool:
        """True once an answer with a transport (an m-section in use) has been applied."""
        return self.current_remote is not None and self.current_remote.credentials is not None

    @property
    def restart_pending(self) -> bool:
        """restartIce() asked for new credentials that no answer has applied yet."""
        return self.credentials.restart_pending()

    def live_local_ufrags(self) -> set[str]:
        """The local ufrags of the pending and current descriptions: what renders."""
        return {
            a.credentials[0]
            for a in (self.pending_local, self.current_local)
            if a and a.credentials
        }

    def awaits_answer(self, description: Description) -> bool:
        """True for a remote restart offer whose credentials ICE takes with our answer."""
        return self.deferred_remote is description

    def is_older_remote_ufrag(self, ufrag: str) -> bool:
        """True for a remote ufrag of an earlier generation (its candidates are ignored)."""
        return ufrag in self.remote_ufrags

    # ------------------------------------------------------------ creating

    def create_offer(self, ice_restart: bool) -> Credentials:
        """The credentials of an offer; new ones for a restart (RFC 8829 §5.2.1).

        Before any local description with a transport there is nothing to restart: the
        first offer carries the credentials ICE was made with, iceRestart or not.
        """
        self._check_open()
        return self.credentials.for_offer(ice_restart and self.gathered_once)

    def create_answer(self) -> tuple[Credentials, Description]:
        """The credentials of the answer to the pending remote offer, and that offer."""
        self._check_open()
        if self.signaling not in (
            SignalingState.HAVE_REMOTE_OFFER,
            SignalingState.HAVE_LOCAL_PRANSWER,
        ):
            raise JsepStateError(
                f"createAnswer needs a remote offer; signaling state is {self.signaling.value}"
            )
        assert self.pending_remote is not None
        if self.signaling is SignalingState.HAVE_LOCAL_PRANSWER:
            # The offerer holds our provisional answer's credentials already: new ones in
            # the final answer would be another restart, refused mid-negotiation.
            return self.credentials.current, self.pending_remote
        return self.credentials.for_answer(self.remote_restart), self.pending_remote

    def restart_ice(self) -> None:
        """webrtc-pc restartIce(): the current credentials are to be replaced.

        [[LocalIceCredentialsToReplace]] takes the credentials of the local descriptions:
        with none applied yet, there are none to replace.
        """
        if self.gathered_once:
            self.credentials.restart_ice()

    def close(self) -> None:
        self.signaling = SignalingState.CLOSED

    def expect(self, source: str, sdp_type: str) -> SignalingState:
        """The state after a `sdp_type` description from `source`; JsepStateError if none."""
        return next_state(self.signaling, source, sdp_type)

    # ------------------------------------------------------------ local descriptions

    def check_local(
        self, sdp_type: str, desc: sdplib.SessionDescription, ice: IceView
    ) -> tuple[Credentials, bool]:
        """Everything setLocalDescription could refuse, checked before anything is applied.

        Returns the credentials (those in force when no m-section is in use) and whether
        the description has a transport.
        """
        self.expect("local", sdp_type)
        if sdp_type in ("answer", "pranswer") and self.pending_remote is not None:
            limits.check_media_order(self.pending_remote.desc, desc, answer=True)
        found = credentials_of(desc)
        current = self.credentials.current
        creds = found if found is not None else current
        if creds != current and self.gathered_once:  # an ICE restart
            check_restart("local", current, creds, ice.local_ufrags)
        if sdp_type in ("answer", "pranswer") and self.deferred_remote is not None:
            if creds == current:
                raise JsepAccessError(
                    "the answer to an ICE restart offer must carry new ice-ufrag and ice-pwd "
                    "(RFC 8829 §5.3.1, RFC 8839 §4.4.1.1.1)"
                )
        return creds, found is not None

    def apply_local(
        self,
        sdp_type: str,
        desc: sdplib.SessionDescription,
        creds: Credentials,
        transport: bool,
    ) -> Step:
        """Apply a checked local description; its actions come before `finish_local`."""
        new_state = self.expect("local", sdp_type)
        actions: list[Action] = []
        first = transport and not self.gathered_once
        if sdp_type == "offer" and not self.transport_negotiated:
            actions.append(SetIceRole(controlling=True))  # RFC 8839 §4.2.3: the offerer
        restarted = self.credentials.applied_local(creds) and self.gathered_once
        applied = Description(sdp_type, desc, creds)
        if sdp_type == "offer":
            self.offer_restarted = restarted
        self.pending_local = applied
        if restarted:
            # Roles are decided anew on every restart: the restart's offerer controls, as
            # libwebrtc (redetermine_role_on_ice_restart) and Firefox do; docs/ice.md.
            lite_peer = self.pending_remote is not None and self.pending_remote.desc.ice_lite
            actions.append(
                RestartIce(
                    creds,
                    controlling=sdp_type == "offer" or lite_peer,
                    answering=sdp_type != "offer",
                )
            )
        if sdp_type in ("answer", "pranswer") and self.deferred_remote is not None:
            actions.append(SetRemoteCredentials(self.deferred_remote, local_ufrag=creds[0]))
        if first:
            self.gathered_once = True
            actions.append(StartGathering())
        return Step(applied, new_state, transport, actions)

    def remote_restart_applied(self) -> None:
        """The runtime gave ICE the deferred restart offer's credentials."""
        self.deferred_remote = None

    def finish_local(self, step: Step) -> list[Action]:
        """Complete a local description after its actions: an answer ends the negotiation."""
        actions: list[Action] = []
        if step.description.type == "answer":
            self.current_local, self.pending_local = step.description, None
            self.current_remote, self.pending_remote = self.pending_remote, None
            self.remote_restart = False
            self.credentials.answer_applied()
            actions += [DropOldCandidates(), AnswerApplied(local=True)]
            if step.transport and self.transport_negotiated:
                actions.append(StartTransports())
        self.signaling = step.new_state
        return actions

    # ------------------------------------------------------------ remote descriptions

    def check_remote(
        self, sdp_type: str, desc: sdplib.SessionDescription, ice: IceView
    ) -> Credentials | None:
        """The JSEP checks of setRemoteDescription, before anything is applied.

        Returns the transport's credentials, or None when every m-section is rejected.
        """
        self.expect("remote", sdp_type)
        if sdp_type == "offer" and self.current_remote is not None:
            limits.check_media_order(self.current_remote.desc, desc, answer=False)
        elif sdp_type != "offer" and self.pending_local is not None:
            limits.check_media_order(self.pending_local.desc, desc, answer=True)
        creds = credentials_of(desc)
        if creds is None:
            return None
        check_fingerprint(desc)
        previous = self.current_remote.credentials if self.current_remote else None
        pending = self.pending_remote.credentials if self.pending_remote else None
        if (
            previous is None
            and ice.remote_credentials is not None
            and creds != ice.remote_credentials
        ):
            # The ICE agent took a rolled-back initial offer's credentials; it has no way to
            # forget them, so a different set would only fail later, half applied.
            raise JsepAccessError(
                "ice-ufrag/ice-pwd differ from those of the first remote description, "
                "rolled back; not supported"
            )
        older = set(self.remote_ufrags) | ice.remote_ufrags
        if sdp_type == "offer":
            if previous is not None and creds not in (previous, pending):
                check_restart("remote", previous, creds, older)
        else:
            check_remote_answer(self.offer_restarted, previous, creds)
            if previous is not None and creds != pending:  # a pranswer's were checked
                check_restart("remote", previous, creds, older)
            if pending is not None and creds != pending:
                raise JsepAccessError(
                    "the answer changed ice-ufrag/ice-pwd from the provisional answer; "
                    "not supported"
                )
        return creds

    def plan_remote(
        self,
        sdp_type: str,
        desc: sdplib.SessionDescription,
        creds: Credentials | None,
        ice: IceView,
    ) -> Step:
        """What applying a checked remote description asks of ICE; nothing is recorded yet."""
        new_state = self.expect("remote", sdp_type)
        previous = self.current_remote.credentials if self.current_remote else None
        # A description with every m-section rejected has no transport: ICE and DTLS go on
        # with the credentials in force, or wait for one that has (RFC 8829 §5.3.1).
        applied = Description(sdp_type, desc, creds or previous)
        step = Step(applied, new_state, creds is not None, [])
        if creds is None:
            return step
        if sdp_type == "offer":
            if not self.transport_negotiated:
                # The answerer is controlled, unless the offerer is lite (RFC 8445 §6.1.1).
                step.actions.append(SetIceRole(controlling=desc.ice_lite))
            step.remote_restart = previous is not None and creds != previous
            if previous is None and not ice.remote_credentials:
                step.actions.append(SetRemoteCredentials(applied, local_ufrag=None))
            elif not step.remote_restart:
                step.actions.append(AddRemoteCandidates(applied))
            # else: applied with our answer's new credentials (RFC 8829 §5.3.2)
        else:
            assert self.pending_local is not None
            if ice.remote_credentials != creds:
                step.actions.append(
                    SetRemoteCredentials(applied, local_ufrag=self.pending_local.ufrag)
                )
            else:
                step.actions.append(AddRemoteCandidates(applied))
        return step

    def finish_remote(self, step: Step) -> list[Action]:
        """Record a remote description whose actions were carried out."""
        applied = step.description
        creds = applied.credentials if step.transport else None
        setup = applied.desc.setup_for(bundle_tag(applied.desc)) if creds else None
        actions: list[Action] = []
        if applied.type == "offer":
            self.remote_restart = step.remote_restart
            self.deferred_remote = applied if step.remote_restart else None
            if creds is not None and (not self.transport_negotiated or self.dtls_role is None):
                # A re-offer's answer keeps the role of the DTLS association it continues
                # (RFC 8829 §5.3.2); browsers re-offer with actpass.
                self.dtls_role = "server" if setup == "active" else "client"
            self.pending_remote = applied
        else:
            if creds is not None:
                self.dtls_role = "client" if setup == "passive" else "server"
            if applied.type == "answer":
                self.current_remote, self.pending_remote = applied, None
                self.current_local, self.pending_local = self.pending_local, None
                self.offer_restarted = False
                self.credentials.answer_applied()
                actions += [DropOldCandidates(), AnswerApplied(local=False)]
                if creds is not None:
                    actions.append(StartTransports())
            else:
                self.pending_remote = applied
        if creds is not None:
            self.remote_ufrags.add(creds[0])
        self.signaling = step.new_state
        return actions

    # ------------------------------------------------------------ rollback

    def rollback(self, source: str, abandon: Callable[[str], bool]) -> list[Action]:
        """RFC 8829 §4.1.8.2: cancel the negotiation, back to the last stable state.

        Both pending descriptions go. Local credentials applied since the last answer
        (restart offers, a pranswer to a restart offer) are withdrawn, newest first:
        `abandon(ufrag)` asks the runtime to drop that ICE generation, and returns False
        when it cannot (it already selected a pair): those credentials then stay in force.
        restartIce() stays in force (webrtc-pc).
        """
        new_state = self.expect(source, "rollback")
        kept: Credentials | None = None
        for creds in self.credentials.withdrawn():  # newest first, as the generations stack
            if not abandon(creds[0]):
                kept = creds
                break
        self.credentials.rolled_back(keep=kept)
        pending = self.pending_remote.credentials if self.pending_remote else None
        current = self.current_remote.credentials if self.current_remote else None
        if pending is not None and (current is None or pending[0] != current[0]):
            self.remote_ufrags.discard(pending[0])  # never in force
        self.pending_local = None
        self.pending_remote = None
        self.deferred_remote = None
        self.remote_restart = False
        self.offer_restarted = False
        self.signaling = new_state
        return [DropOldCandidates()]

    def _check_open(self) -> None:
        if self.signaling is SignalingState.CLOSED:
            raise JsepStateError("the RTCPeerConnection is closed")
