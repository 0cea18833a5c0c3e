"""Network namespaces for interop tests: create one, step the current thread into it.

Theory of operation. `NetNs.create()` runs `ip netns add` with a unique name and brings
`lo` up, so the namespace has loopback only and nothing in it can reach any other host.
`NetNs.entered()` moves the *calling thread* into the namespace with setns(2) and moves
it back on exit. A socket belongs to the namespace of the thread that created it, for
its whole life, whichever thread uses it later. So everything a test creates while
inside (asyncio UDP endpoints, the aiohttp control server, a child process spawned
from this thread) lives in the namespace, and keeps living there after the thread
steps out.

Caveats (see docs/testing.md):
- Only the calling thread moves. asyncio runs `getaddrinfo` and other blocking calls in
  its executor threads, which stay in the root namespace: use numeric addresses (they
  are resolved inline) and never create sockets from `run_in_executor` while inside.
- Interface enumeration (`ifaddr`, `getifaddrs`, netlink) is a socket call too: done
  in this thread it sees the namespace's interfaces, done in another thread it sees
  the host's.
- We return with the fd of `/proc/thread-self/ns/net` taken on entry, not
  `/proc/self/ns/net`, which names the *main* thread's namespace.
- Child processes are started through `ip netns exec` (see `exec_prefix`) rather than
  relying on the spawning thread, so they land in the namespace whoever spawns them.
- aioice (aiortc) never offers 127.0.0.1 or ::1 as host candidates, so a namespace
  meant for aiortc needs another loopback address on `lo` (`extra_addresses`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["CLONE_NEWNET", "NetNs", "NetNsError", "netns_available", "sweep_stale"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


class NetNsError(RuntimeError):
    """A namespace could not be created, entered or removed."""


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace that `fd` refers to."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetNsError(f"setns(CLONE_NEWNET) failed: {os.strerror(err)}")


def _ip(*args: str) -> None:
    """Run `ip ARGS`, raising NetNsError with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise NetNsError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")


def netns_available() -> str | None:
    """Return None if namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return f"network namespaces need root (euid is {os.geteuid()})"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "/proc/thread-self/ns/net is missing (no network namespace support)"
    return None


def sweep_stale(prefix: str) -> list[str]:
    """Delete namespaces named PREFIX-PID-... whose creating process is gone.

    A test run killed hard cannot delete its namespaces; the next run does. Namespaces
    of live processes (a concurrent run) are left alone. Returns the names deleted.
    """
    if not os.path.isdir(NETNS_DIR):
        return []
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-[0-9a-f]+$")
    deleted = []
    for name in os.listdir(NETNS_DIR):
        match = pattern.match(name)
        if match is None or os.path.exists(f"/proc/{match.group(1)}"):
            continue
        with contextlib.suppress(NetNsError):
            _ip("netns", "delete", name)
            deleted.append(name)
    return deleted


@dataclass
class NetNs:
    """A named network namespace with only `lo` up; delete it with `delete()`."""

    name: str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _deleted: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, prefix: str = "ubt", extra_addresses: Sequence[str] = ()) -> NetNs:
        """Create a uniquely named namespace, bring `lo` up, add `extra_addresses` to it.

        `extra_addresses` are CIDR strings such as "127.0.0.2/8" added to `lo`.
        """
        reason = netns_available()
        if reason is not None:
            raise NetNsError(reason)
        sweep_stale(prefix)
        name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        _ip("netns", "add", name)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
            for cidr in extra_addresses:
                ns.ip("addr", "add", cidr, "dev", "lo")
        except BaseException:
            ns.delete()
            raise
        return ns

    @property
    def path(self) -> str:
        """The bind-mounted namespace file that setns(2) opens."""
        return os.path.join(NETNS_DIR, self.name)

    def ip(self, *args: str) -> None:
        """Run `ip -n NAME ARGS` (configure links, addresses and routes inside)."""
        _ip("-n", self.name, *args)

    def run(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and return its completed process."""
        return subprocess.run(
            [*self.exec_prefix(), *argv], capture_output=True, text=True, timeout=timeout
        )

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace for the `with` block.

        Sockets created in the block stay in the namespace after it ends. Nesting is fine
        (each level restores what it found).
        """
        old = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            new = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(new)
            finally:
                os.close(new)
            try:
                yield
            finally:
                _setns(old)
        finally:
            os.close(old)

    def delete(self) -> None:
        """Remove the namespace (idempotent). Sockets still open keep it alive, unnamed."""
        with self._lock:
            if self._deleted:
                return
            self._deleted = True
        if os.path.exists(self.path):
            _ip("netns", "delete", self.name)

    def __enter__(self) -> NetNs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()
