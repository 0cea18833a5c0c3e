"""A deterministic simulated network with a virtual clock, for testing sans-IO code.

Hosts with virtual IPv4/IPv6 addresses, links with latency, jitter, loss and outages,
and NATs with RFC 4787 mapping and filtering behaviours. Nodes (adapters around
sans-IO machines such as an ICE agent) are driven by a discrete-event loop; nothing
touches a real socket or the real clock, and one seed replays a run exactly.
See docs/netsim.md.
"""

from unbroken.netsim.host import Host
from unbroken.netsim.link import LinkConditions
from unbroken.netsim.nat import Behaviour, Nat, NatMapping
from unbroken.netsim.network import Call, Network, TimerSpinError
from unbroken.netsim.node import Node
from unbroken.netsim.stats import DropReason, Stats

__all__ = [
    "Behaviour",
    "Call",
    "DropReason",
    "Host",
    "LinkConditions",
    "Nat",
    "NatMapping",
    "Network",
    "Node",
    "Stats",
    "TimerSpinError",
]
