"""Real faults for the demo: a network namespace of its own (as root), or a path dropped
inside the process (without root).

Theory of operation
-------------------
As root, `DemoNetns.create()` makes a network namespace named `ubdemo-PID-...` with only
`lo` up; the demo adds veth interfaces and addresses *inside it* (or a veth pair whose
other end is in the namespace the demo was started in) and an nftables table whose
input-hook chain can drop every UDP packet (an outage: dropped on input, so `sendto()`
still succeeds, as on a real dead path). Moving an address (`ip addr del` + `add`) is a
handover. `entered()` moves the calling thread into the namespace (setns(2)): sockets
made while inside stay there for life, so an event loop run inside makes every socket of
its peer connections there, including the fresh ports of later restarts. Deleting the
namespace removes everything the demo made; a namespace left by a demo killed hard is
removed by the next one (`sweep_stale`).

Without root, `drop_path()` makes one local UDP port deaf: it attaches a classic BPF
program that accepts nothing (SO_ATTACH_FILTER, no privilege needed) to every socket of
this process bound to that address and port, found through /proc/self/fd. The peer
connection keeps sending on it, nothing arrives any more, as when a NAT forgot the
mapping; the connection goes `disconnected` and recovery restarts it on fresh ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator

PREFIX = "ubdemo"
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000

# linux/filter.h, asm-generic/socket.h
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
_BPF_RET_K = 0x06
# One instruction: "return 0" (keep 0 bytes of the packet: drop it).
_DROP_ALL = ctypes.create_string_buffer(struct.pack("HBBI", _BPF_RET_K, 0, 0, 0), 8)


class FaultError(RuntimeError):
    """A namespace, an interface or a filter could not be set up."""


def netns_missing() -> str | None:
    """None when the namespace demo can run here (root, `ip`, `nft`), else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "no network namespace support (/proc/thread-self/ns/net is missing)"
    return None


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise FaultError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise FaultError(f"setns failed: {os.strerror(ctypes.get_errno())}")


def sweep_stale(prefix: str = PREFIX) -> None:
    """Delete namespaces PREFIX-PID-... whose process is gone (a demo killed hard)."""
    if not os.path.isdir(NETNS_DIR):
        return
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-[0-9a-f]+$")
    for name in os.listdir(NETNS_DIR):
        match = pattern.match(name)
        if match is not None and not os.path.exists(f"/proc/{match.group(1)}"):
            with contextlib.suppress(FaultError):
                _run(["ip", "netns", "delete", name])


class DemoNetns:
    """A network namespace of the demo's own, with an nftables fault table."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls) -> DemoNetns:
        """A fresh namespace with `lo` up and an empty `inet fault` input chain."""
        problem = netns_missing()
        if problem is not None:
            raise FaultError(problem)
        sweep_stale()
        ns = cls(f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        _run(["ip", "netns", "add", ns.name])
        try:
            ns.ip("link", "set", "lo", "up")
            ns.nft("add", "table", "inet", "fault")
            ns.nft("add", "chain", "inet", "fault", "in", "{ type filter hook input priority 0 ; }")
        except BaseException:
            ns.delete()
            raise
        return ns

    def ip(self, *args: str) -> None:
        """`ip -n NAME ARGS`."""
        _run(["ip", "-n", self.name, *args])

    def nft(self, *args: str) -> None:
        """`nft ARGS` inside the namespace."""
        _run(["ip", "netns", "exec", self.name, "nft", *args])

    def outage(self, down: bool) -> None:
        """Drop every UDP packet arriving in the namespace (down), or stop dropping."""
        if down:
            self.nft("add", "rule", "inet", "fault", "in", "meta", "l4proto", "udp", "drop")
        else:
            self.nft("flush", "chain", "inet", "fault", "in")

    def move_address(self, device: str, old: str, new: str, prefix_len: int) -> None:
        """A handover: `old` removed from `device`, `new` added."""
        self.ip("addr", "del", f"{old}/{prefix_len}", "dev", device)
        self.ip("addr", "add", f"{new}/{prefix_len}", "dev", device)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace for the block, then back."""
        old = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            new = os.open(os.path.join(NETNS_DIR, self.name), os.O_RDONLY | os.O_CLOEXEC)
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
        """Remove the namespace and everything in it (idempotent)."""
        if os.path.exists(os.path.join(NETNS_DIR, self.name)):
            with contextlib.suppress(FaultError):
                _run(["ip", "netns", "delete", self.name])


# ---------------------------------------------------------------- in-process faults


def _udp_sockets_bound_to(address: tuple[str, int]) -> list[socket.socket]:
    """Duplicates of this process's UDP sockets bound to `address` (close them after)."""
    found = []
    for entry in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{entry}").startswith("socket:"):
                continue
            dup = socket.socket(fileno=os.dup(int(entry)))
        except OSError:
            continue  # closed meanwhile, or not a socket family Python knows
        try:
            if dup.type == socket.SOCK_DGRAM and tuple(dup.getsockname()[:2]) == address:
                found.append(dup)
                continue
        except OSError:
            pass
        dup.close()
    return found


def drop_path(address: tuple[str, int], drop: bool = True) -> int:
    """Make every UDP socket of this process on `address` drop what arrives (or stop).

    Returns how many sockets were changed (the base socket, and the selected pair's
    pinned socket when there is one).
    """
    changed = 0
    for sock in _udp_sockets_bound_to(address):
        with sock:
            if drop:
                prog = struct.pack("HP", 1, ctypes.addressof(_DROP_ALL))
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
            else:
                with contextlib.suppress(OSError):  # no filter attached: nothing to do
                    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            changed += 1
    return changed


async def selected_local_address(pc: object) -> tuple[str, int] | None:
    """The local (address, port) of `pc`'s selected candidate pair, from getStats()."""
    stats = await pc.getStats()  # type: ignore[attr-defined]
    transport = next((s for s in stats.values() if s.get("type") == "transport"), None)
    pair = stats.get(transport.get("selectedCandidatePairId")) if transport else None
    local = stats.get(pair.get("localCandidateId")) if pair else None
    if local is None:
        return None
    return str(local["address"]), int(local["port"])
