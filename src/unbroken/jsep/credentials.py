"""Which ICE credentials a description carries, and when a change is a restart.

JSEP rules (RFC 8829 §5.2.1, §5.2.3.1, §5.3.1, §5.10; webrtc-pc restartIce()):
- createOffer has no side effects: the new credentials of a restart offer are drawn once
  and reused by every createOffer until a local description applies them;
- restartIce() records the current local credentials in LocalIceCredentialsToReplace;
  every offer carries new ones until an answer is applied whose local credentials are
  none of those; rollback leaves the set as it is;
- an offer whose remote credentials changed is a restart, and the answer to it carries
  new local credentials;
- an answer must change the remote credentials exactly when our offer restarted;
- a restart changes both ice-ufrag and ice-pwd (RFC 8839 §4.4.1.1.1), and never to the
  ufrag of an older generation: generations are told apart by their ufrag (RFC 8838 §9);
- a rollback withdraws every local credential applied since the last answer, so both
  sides are back where the last completed negotiation left them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from .errors import JsepAccessError

Credentials = tuple[str, str]


class CredentialBook:
    """The local ICE credentials of a peer connection across offers, answers and restarts."""

    def __init__(self, generate: Callable[[], Credentials]) -> None:
        self._generate = generate
        self.current: Credentials = generate()  # in the applied local description
        self.negotiated: Credentials = self.current  # in force when the last answer applied
        self._since: list[Credentials] = []  # applied by restarts since then, oldest first
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
        """The credentials createAnswer puts in the answer: new only for a restart offer.

        A pending restartIce() does not change an answer's (webrtc-pc: only createOffer
        reads [[LocalIceCredentialsToReplace]]; JSEP: only the offerer restarts ICE), or
        the offerer would refuse it; negotiationneeded fires again once stable.
        """
        if remote_restarted:
            if self._next is None:
                self._next = self._generate()
            return self._next
        return self.current

    def applied_local(self, creds: Credentials) -> bool:
        """A local description with `creds` was applied; True when that restarts ICE."""
        restarted = creds != self.current
        self.current = creds
        if restarted:
            self._since.append(creds)
        if self._next == creds:
            self._next = None
        return restarted

    def withdrawn(self) -> list[Credentials]:
        """Local credentials applied since the last answer, newest first (a rollback's)."""
        return [c for c in reversed(self._since) if c != self.negotiated]

    def rolled_back(self, keep: Credentials | None = None) -> None:
        """A rollback: credentials applied since the last answer are withdrawn, the set stays.

        `keep`: credentials whose restart could not be undone (their generation already
        selected a pair); they stay in force as if negotiated.
        """
        if keep is not None:
            self.negotiated = keep
        self.current = self.negotiated
        self._since.clear()
        self._next = None

    def answer_applied(self) -> None:
        """An answer was applied: the set empties when it no longer holds our credentials."""
        self.negotiated = self.current
        self._since.clear()
        if self.current not in self.to_replace:
            self.to_replace.clear()


class UfragMemory:
    """The last `size` distinct ufrags seen, oldest first: bounded, unlike one per restart."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("UfragMemory needs a size of at least 1")
        self.size = size
        self._items: dict[str, None] = {}  # insertion order: oldest first

    def add(self, ufrag: str) -> None:
        """Remember `ufrag` as the newest; forget the oldest past `size`."""
        self._items.pop(ufrag, None)
        self._items[ufrag] = None
        while len(self._items) > self.size:
            del self._items[next(iter(self._items))]

    def discard(self, ufrag: str) -> None:
        self._items.pop(ufrag, None)

    def __contains__(self, ufrag: object) -> bool:
        return ufrag in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))


def check_restart(
    side: str, previous: Credentials, new: Credentials, older_ufrags: Collection[str]
) -> None:
    """JsepAccessError unless `new` may replace `previous` in an ICE restart by `side`.

    RFC 8839 §4.4.1.1.1: a restart changes both ice-ufrag and ice-pwd. A ufrag of an older
    generation would make its candidates and checks ambiguous (RFC 8838 §9) and is refused
    by the ICE agent: refused here, before anything of the description is applied.
    """
    if new == previous:
        return
    if new[0] == previous[0] or new[1] == previous[1]:
        raise JsepAccessError(
            f"the {side} description changes only one of ice-ufrag and ice-pwd; an ICE "
            "restart changes both (RFC 8839 §4.4.1.1.1)"
        )
    if new[0] in older_ufrags:
        raise JsepAccessError(
            f"the {side} description restarts ICE to ice-ufrag {new[0]!r}, which belongs to "
            "an older ICE generation"
        )


def check_remote_answer(
    offered_restart: bool, previous_remote: Credentials | None, answer_remote: Credentials
) -> None:
    """Reject an answer whose credentials contradict our offer (RFC 8829 §5.10, RFC 8839 §4.4.1.1.1)."""
    if previous_remote is None:
        return
    changed = answer_remote != previous_remote
    if offered_restart and not changed:
        raise JsepAccessError(
            "the answer to an ICE restart offer must carry new ice-ufrag and ice-pwd"
        )
    if not offered_restart and changed:
        raise JsepAccessError(
            "the answer changed ice-ufrag/ice-pwd although the offer did not restart ICE"
        )
