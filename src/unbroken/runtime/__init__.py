"""The asyncio runtime: sockets, the one timer, demultiplexing, the ICE transport DTLS uses."""

from .connection import IceConnection
from .demux import Kind, classify
from .interfaces import AddressFilter, list_addresses, select_addresses

__all__ = [
    "AddressFilter",
    "IceConnection",
    "Kind",
    "classify",
    "list_addresses",
    "select_addresses",
]
