"""A STUN server (RFC 5389 Binding) as a netsim node, for server-reflexive gathering in tests."""

from __future__ import annotations

from .. import stun
from ..addresses import Address, Transmit
from .host import Host


class StunServerNode:
    """Answers every Binding request with the source address it came from."""

    def __init__(self, host: Host, port: int = 3478) -> None:
        self.addresses = [host.bind(ip, port) for ip in host.addresses]
        self._out: list[Transmit] = []
        self.requests = 0
        host.attach(self)

    def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        try:
            msg = stun.decode(data)
        except stun.StunError:
            return
        if msg.method != stun.Method.BINDING or msg.message_class is not stun.MessageClass.REQUEST:
            return
        self.requests += 1
        reply = stun.success_response(msg, xor_mapped_address=remote)
        self._out.append(Transmit(stun.encode(reply), local, remote))

    def handle_timer(self, now: float) -> None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def pop_transmits(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out
