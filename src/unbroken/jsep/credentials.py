"""Which ICE credentials a description carries, and when a change is a restart.

JSEP rules (RFC 8829 §5.2.1, §5.2.3.1, §5.3.1, §5.10; webrtc-pc restartIce()):
- createOffer has no side effects: the new credentials of a restart offer are drawn once
  and reused by every createOffer until a local description applies them;
- restartIce() records the current local credentials in LocalIceCredentialsToReplace;
  every offer carries new ones until an answer is applied whose local credentials are
  none of those; rollback leaves the set as it is;
- an offer whose remote credentials changed is a restart, and the answer to it carries
  new local credentials;
- an answer must change the remote credentials exactly when our offer restarted.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidAccessError

Credentials = tuple[str, str]


class CredentialBook:
    """The local ICE credentials of a peer connection across offers, answers and restarts."""

    def __init__(self, generate: Callable[[], Credentials]) -> None:
        self._generate = generate
        self.current: Credentials = generate()  # in the applied local description
        self.to_replace: set[Credentials] = set()  # [[LocalIceCredentialsToReplace]]
        self._next: Credentials | None = None  # drawn for the next restart, not yet applied

    def restart_pending(self) -> bool:
        """True while restartIce() asked for new credentials not yet negotiated."""
        return self.current in self.to_replace

    def restart_ice(self) -> None:
        """webrtc-pc restartIce(): the current credentials are to be replaced."""
        self.to_replace.add(self.current)

    def for_offer(self, ice_restart: bool) -> Credentials:
        """The credentials createOffer puts in the offer (no side effects but the draw)."""
        if ice_restart or self.restart_pending():
            if self._next is None:
                self._next = self._generate()
            return self._next
        return self.current

    def for_answer(self, remote_restarted: bool) -> Credentials:
        """The credentials createAnswer puts in the answer."""
        if remote_restarted or self.restart_pending():
            if self._next is None:
                self._next = self._generate()
            return self._next
        return self.current

    def applied_local(self, creds: Credentials) -> bool:
        """A local description with `creds` was applied; True when that restarts ICE."""
        restarted = creds != self.current
        self.current = creds
        if self._next == creds:
            self._next = None
        return restarted

    def rolled_back(self, previous: Credentials) -> None:
        """A local offer was rolled back: its credentials are withdrawn, the set stays."""
        self.current = previous
        self._next = None

    def answer_applied(self) -> None:
        """An answer was applied: the set empties when it no longer holds our credentials."""
        if self.current not in self.to_replace:
            self.to_replace.clear()


def check_remote_answer(
    offered_restart: bool, previous_remote: Credentials | None, answer_remote: Credentials
) -> None:
    """Reject an answer whose credentials contradict our offer (RFC 8829 §5.10, RFC 8839 §4.4.1.1.1)."""
    if previous_remote is None:
        return
    changed = answer_remote != previous_remote
    if offered_restart and not changed:
        raise InvalidAccessError(
            "the answer to an ICE restart offer must carry new ice-ufrag and ice-pwd"
        )
    if not offered_restart and changed:
        raise InvalidAccessError(
            "the answer changed ice-ufrag/ice-pwd although the offer did not restart ICE"
        )
