"""Connections that heal themselves: restart policies and network watching.

`await unbroken.recovery.attach(pc)` restarts ICE when the local network changes, when
the path goes `disconnected` or `failed`, with backoff; see policy.py.
"""

from .policy import Recovery, RecoveryEvent, RecoveryPolicy, attach
from .watcher import NetworkWatcher

__all__ = ["NetworkWatcher", "Recovery", "RecoveryEvent", "RecoveryPolicy", "attach"]
