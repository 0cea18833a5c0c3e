"""Real NATs in network namespaces: home routers, a public "Internet", coturn, and peers.

Theory of operation. `NatBed.create(lans=N)` builds, from namespaces it names itself:

    lan-1 (10.77.1.2) ── router-1 ──┐                   public
      eth0         lan0 │ wan0      │ rt1 198.18.1.254  ┌─────────────────────────────┐
                10.77.1.1 198.18.1.1└──────────────────►│ pub0 198.18.0.1: peer B,    │
    lan-2 (10.77.2.2) ── router-2 ──┐                   │      coturn (STUN) :3478    │
                10.77.2.1 198.18.2.1└──────────────────►│ rt2 198.18.2.254            │
                                                        └─────────────────────────────┘

- A router is a home router: nftables `ip nat` postrouting `masquerade` on its WAN
  veth (Linux keeps the source port when it can: an endpoint-independent mapping), or
  `masquerade random` (a new random port per flow: symmetric-like), and a firewall
  that drops NEW packets arriving from the WAN, on the forward and the input hooks. A
  dropped packet's conntrack entry is never confirmed, so an unsolicited inbound packet
  can neither get in nor claim the port a later outbound flow wants.
- `public` plays the Internet: it forwards between the routers' WAN links and holds the
  servers' address 198.18.0.1 (peer B when it is public, and coturn as a STUN-only
  server). Private ranges are unreachable from it. Its default route points at `pub0`,
  whose other end (`pub0p`) is in the same namespace, so a browser there finds a
  default address and nothing ever leaves the namespace.
- Every address is in 10.77.0.0/16 or 198.18.0.0/15 (the benchmark range) and exists
  only inside these namespaces: no traffic can reach any other host.

Faults, as they happen to real NATs (`Router`):
- `rebind()`: switch to `masquerade random` and flush conntrack (`conntrack -F`): the
  next outbound packet of every flow leaves from a new external port. What a NAT
  reboot, a mapping timeout or a carrier-grade NAT does.
- `reboot(outage)`: drop everything forwarded, flush conntrack, wait `outage`, stop
  dropping; ports are kept, so the same flows get the same external ports back.

Peers: `PeerProcess` runs tests/interop/nat_peer.py (one of our RTCPeerConnections, a
data channel with a message every 20 ms) in a namespace with `ip netns exec`, talking
JSON lines over its stdin/stdout; `relay()` is the signaling server between two of
them. Every event carries time.time() from the process that saw it: one clock for all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unbroken import stun

from .netns import NetNs, NetNsError, netns_available

__all__ = [
    "FRESH",
    "PEER_SCRIPT",
    "PUBLIC_IP",
    "STUN_PORT",
    "Delivery",
    "NatBed",
    "PeerProcess",
    "Router",
    "both_ways",
    "connect",
    "delivery_problem",
    "finish",
    "heal_times",
    "lan_host",
    "nat_missing",
    "relay",
    "wait_any",
    "wait_healed",
]

log = logging.getLogger(__name__)

PUBLIC_IP = "198.18.0.1"
STUN_PORT = 3478
PEER_SCRIPT = Path(__file__).parent / "nat_peer.py"
REAPER = Path(__file__).parent / "reaper.py"
PREFIX = "ubnat"


def lan_host(index: int) -> str:
    """The address of the host on LAN `index` (1-based)."""
    return f"10.77.{index}.2"


def nat_missing() -> str | None:
    """Return None if the test bed can be built here, else why not."""
    problem = netns_available()
    if problem is not None:
        return problem
    for binary, package in (
        ("nft", "nftables"),
        ("conntrack", "conntrack"),
        ("turnserver", "coturn"),
    ):
        if shutil.which(binary) is None:
            return f"`{binary}` ({package}) is not installed: run scripts/install-test-deps.sh"
    return None


def _run(ns: NetNs, *argv: str, stdin: str | None = None) -> str:
    """Run a command in `ns`; NetNsError with its stderr on failure. Returns stdout."""
    proc = subprocess.run(
        [*ns.exec_prefix(), *argv], input=stdin, capture_output=True, text=True, timeout=10
    )
    if proc.returncode != 0:
        raise NetNsError(f"`{' '.join(argv)}` in {ns.name} failed: {proc.stderr.strip()}")
    return proc.stdout


# ------------------------------------------------------------------ the routers


ROUTER_RULES = """\
table ip nat {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade{random}
    }}
}}
table inet fw {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "wan0" ct state new drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state new drop
    }}
}}
table inet outage {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
    }}
}}
"""


@dataclass
class Router:
    """A home router: LAN veth, WAN veth, masquerade, and a firewall for NEW inbound."""

    ns: NetNs
    index: int
    random_ports: bool = False

    @property
    def wan_ip(self) -> str:
        """The router's public address: what the LAN host looks like from outside."""
        return f"198.18.{self.index}.1"

    @property
    def lan_host(self) -> str:
        return lan_host(self.index)

    def set_random_ports(self, random_ports: bool) -> None:
        """Switch between `masquerade` and `masquerade random` in one nft transaction."""
        rule = 'oifname "wan0" masquerade' + (" random" if random_ports else "")
        _run(
            self.ns,
            "nft",
            "-f",
            "-",
            stdin=f"flush chain ip nat post\nadd rule ip nat post {rule}\n",
        )
        self.random_ports = random_ports

    def flush(self) -> None:
        """Forget every NAT mapping (`conntrack -F`)."""
        _run(self.ns, "conntrack", "-F")

    def set_outage(self, down: bool) -> None:
        """Drop (or stop dropping) everything the router forwards, both ways."""
        if down:
            _run(self.ns, "nft", "add", "rule", "inet", "outage", "forward", "drop")
        else:
            _run(self.ns, "nft", "flush", "chain", "inet", "outage", "forward")

    def rebind(self) -> float:
        """Random ports from now on, mappings forgotten; returns time.time() once done."""
        self.set_random_ports(True)
        self.flush()
        return time.time()

    async def reboot(self, outage: float = 0.2) -> tuple[float, float]:
        """A reboot that keeps ports: drop all, flush, `outage` s later forward again.

        Returns time.time() when the outage began (mappings gone) and when it ended.
        """
        self.set_outage(True)
        self.flush()
        began = time.time()
        await asyncio.sleep(outage)  # the length of the fault, not synchronisation
        self.set_outage(False)
        return began, time.time()

    def external_ports(self, remote: str | None = None, port: int | None = None) -> list[int]:
        """External UDP ports of the LAN host's live mappings (to `remote`:`port` if given)."""
        out = _run(self.ns, "conntrack", "-L", "-p", "udp", "-s", self.lan_host)
        ports = []
        for line in out.splitlines():
            pairs = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
            if len(pairs) < 8:
                continue
            original, reply = dict(pairs[:4]), dict(pairs[4:8])
            if remote is not None and original["dst"] != remote:
                continue
            if port is not None and int(original["dport"]) != port:
                continue
            ports.append(int(reply["dport"]))
        return sorted(set(ports))

    def conntrack_table(self) -> str:
        """`conntrack -L` (for diagnostics)."""
        try:
            return _run(self.ns, "conntrack", "-L")
        except NetNsError as exc:
            return str(exc)


# ------------------------------------------------------------------ the bed


@dataclass
class NatBed:
    """The namespaces, routers and coturn of one test; `close()` removes everything."""

    public: NetNs
    routers: list[Router] = field(default_factory=list)
    lans: list[NetNs] = field(default_factory=list)
    coturn: subprocess.Popen[bytes] | None = None
    tmp: str = ""

    @classmethod
    def create(cls, lans: int = 1, random_ports: Sequence[bool] = ()) -> NatBed:
        """Public + `lans` (router, LAN) pairs; router i uses random ports if asked."""
        problem = nat_missing()
        if problem is not None:
            raise NetNsError(problem)
        bed = cls(NetNs.create(prefix=PREFIX))
        try:
            bed._build_public()
            for index in range(1, lans + 1):
                randomised = random_ports[index - 1] if index - 1 < len(random_ports) else False
                bed._build_lan(index, randomised)
            bed._start_coturn()
        except BaseException:
            bed.close()
            raise
        return bed

    def _build_public(self) -> None:
        pub = self.public
        pub.ip("link", "add", "pub0", "type", "veth", "peer", "name", "pub0p")
        pub.ip("addr", "add", f"{PUBLIC_IP}/24", "dev", "pub0")
        for name in ("pub0", "pub0p"):
            pub.ip("link", "set", name, "up")
        pub.ip("route", "add", "default", "dev", "pub0")
        for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
            pub.ip("route", "add", "unreachable", private)
        _run(pub, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def _build_lan(self, index: int, random_ports: bool) -> None:
        router_ns = NetNs.create(prefix=PREFIX)
        self.routers.append(Router(router_ns, index, random_ports))
        lan = NetNs.create(prefix=PREFIX)
        self.lans.append(lan)
        wan_ip, lan_gw, host = f"198.18.{index}.1", f"10.77.{index}.1", lan_host(index)
        # WAN link: router's wan0 <-> public's rt<i>.
        router_ns.ip("link", "add", "wan0", "type", "veth", "peer", "name", f"rt{index}",
                     "netns", self.public.name)  # fmt: skip
        router_ns.ip("addr", "add", f"{wan_ip}/24", "dev", "wan0")
        self.public.ip("addr", "add", f"198.18.{index}.254/24", "dev", f"rt{index}")
        # LAN link: router's lan0 <-> the LAN host's eth0.
        router_ns.ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0",
                     "netns", lan.name)  # fmt: skip
        router_ns.ip("addr", "add", f"{lan_gw}/24", "dev", "lan0")
        lan.ip("addr", "add", f"{host}/24", "dev", "eth0")
        for ns, name in ((router_ns, "wan0"), (router_ns, "lan0"), (lan, "eth0"),
                         (self.public, f"rt{index}")):  # fmt: skip
            ns.ip("link", "set", name, "up")
        lan.ip("route", "add", "default", "via", lan_gw)
        router_ns.ip("route", "add", "default", "via", f"198.18.{index}.254")
        _run(router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run(router_ns, "nft", "-f", "-",
             stdin=ROUTER_RULES.format(random=" random" if random_ports else ""))  # fmt: skip

    def _start_coturn(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="unbroken-nat-")
        config = Path(self.tmp) / "turnserver.conf"
        config.write_text(
            "\n".join(
                [
                    f"listening-ip={PUBLIC_IP}",
                    f"listening-port={STUN_PORT}",
                    "stun-only",
                    "no-tls",
                    "no-dtls",
                    "no-cli",
                    "no-software-attribute",
                    "simple-log",
                    f"log-file={self.tmp}/turn.log",
                    f"pidfile={self.tmp}/turn.pid",
                    f"db={self.tmp}/turndb",
                    "",
                ]
            )
        )
        # Under reaper.py, in its own process group: if this process dies, coturn goes too.
        self.coturn = subprocess.Popen(
            [
                *self.public.exec_prefix(),
                sys.executable,
                str(REAPER),
                "turnserver",
                "-c",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        mapped = self.stun_probe(self.public, PUBLIC_IP, timeout=10.0)
        if mapped is None:
            raise NetNsError(
                f"coturn did not answer on {PUBLIC_IP}:{STUN_PORT}\n{self.coturn_log()}"
            )

    def coturn_log(self) -> str:
        """coturn's log (for diagnostics)."""
        try:
            return (Path(self.tmp) / "turn.log").read_text()[-4000:]
        except OSError:
            return "(no coturn log)"

    def lan(self, index: int) -> NetNs:
        """The namespace of LAN `index` (1-based)."""
        return self.lans[index - 1]

    def router(self, index: int) -> Router:
        """Router `index` (1-based)."""
        return self.routers[index - 1]

    @staticmethod
    def stun_probe(
        ns: NetNs, local_ip: str, port: int = 0, timeout: float = 2.0
    ) -> tuple[str, int] | None:
        """A STUN Binding request to coturn from `local_ip:port` in `ns`: the mapped address.

        Retransmits every 100 ms until `timeout` (coturn may still be binding its socket).
        Returns None if nothing answered.
        """
        with ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind((local_ip, port))
            request = stun.Message(
                stun.Method.BINDING, stun.MessageClass.REQUEST, secrets.token_bytes(12)
            )
            data = stun.encode(request)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sock.sendto(data, (PUBLIC_IP, STUN_PORT))
                sock.settimeout(0.1)
                try:
                    reply, _ = sock.recvfrom(2048)
                except TimeoutError:
                    continue
                with contextlib.suppress(stun.StunError):
                    msg = stun.decode(reply)
                    if msg.transaction_id == request.transaction_id:
                        return msg.xor_mapped_address or msg.mapped_address
        return None

    def diagnostics(self) -> str:
        """Conntrack tables of the routers and coturn's log tail."""
        parts = []
        for router in self.routers:
            parts.append(f"--- router {router.index} conntrack (random={router.random_ports})")
            parts.append(router.conntrack_table())
        parts.append("--- coturn log tail")
        parts.append(self.coturn_log()[-1500:])
        return "\n".join(parts)

    def close(self) -> None:
        """Stop coturn, delete every namespace and the temporary directory."""
        if self.coturn is not None and self.coturn.poll() is None:
            # The group: coturn and the reaper at its head, which exits once coturn is reaped.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.coturn.pid, signal.SIGTERM)
            try:
                self.coturn.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.coturn.pid, signal.SIGKILL)
                self.coturn.wait(5)
        for ns in [*self.lans, *(r.ns for r in self.routers), self.public]:
            with contextlib.suppress(NetNsError):
                ns.delete()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> NatBed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ peers


@dataclass(frozen=True)
class Delivery:
    """One message received: its sequence number, send time and arrival time (time.time())."""

    seq: int
    sent: float
    at: float


class PeerProcess:
    """tests/interop/nat_peer.py in a namespace: commands in, events out (JSON lines)."""

    def __init__(
        self, name: str, ns: NetNs, address: str, *, offerer: bool = False, **options: Any
    ) -> None:
        self.name = name
        self.ns = ns
        self.address = address
        self.argv = [
            *ns.exec_prefix(),
            sys.executable,
            str(PEER_SCRIPT),
            "--address",
            address,
            "--stun",
            f"{PUBLIC_IP}:{STUN_PORT}",
        ]
        if offerer:
            self.argv.append("--offerer")
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                self.argv.append(flag)
            elif value not in (False, None):
                self.argv += [flag, str(value)]
        self.events: list[dict[str, Any]] = []
        self.signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[Delivery] = []
        self.errors: list[str] = []
        self.stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._replies: dict[int, Any] = {}
        self._next_id = 1
        self._changed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<PeerProcess {self.name} {self.address} in {self.ns.name}>"

    async def start(self) -> None:
        """Start the process and wait for it to report ready."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=16 * 1024 * 1024,
        )
        self._tasks.append(asyncio.ensure_future(self._read_events()))
        self._tasks.append(asyncio.ensure_future(self._read_stderr()))
        await self.wait_for(lambda: any(e["ev"] == "ready" for e in self.events), 30, "ready")

    async def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                self.errors.append(f"not JSON: {raw[:200]!r}")
                continue
            self.events.append(event)
            kind = event["ev"]
            if kind == "msg":
                self.received.append(Delivery(event["seq"], event["sent"], event["t"]))
            elif kind in ("description", "candidate"):
                self.signals.put_nowait(event)
            elif kind == "reply":
                self._replies[event["id"]] = event["result"]
            elif kind == "error":
                self.errors.append(event["text"])
                log.warning("%s: error: %s", self.name, event["text"])
            elif kind in ("state", "selected", "handler", "negotiation"):
                log.info("%s: %s", self.name, {k: v for k, v in event.items() if k != "ev"})
            self._notify()
        self._notify()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for raw in self._proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr.append(line)
            log.debug("%s stderr: %s", self.name, line)

    def _notify(self) -> None:
        self._changed.set()

    @property
    def exited(self) -> bool:
        return self._proc is None or self._proc.returncode is not None

    async def send(self, cmd: str, **args: Any) -> None:
        """Send one command (no reply expected)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self._proc.stdin.drain()

    async def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        """Send a command and wait for its reply."""
        msg_id = self._next_id
        self._next_id += 1
        await self.send(cmd, id=msg_id, **args)
        await self.wait_for(lambda: msg_id in self._replies, timeout, f"reply to {cmd}")
        return self._replies.pop(msg_id)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until predicate() holds, re-checked at every event from the process."""

        async def loop() -> None:
            while not predicate():
                if (
                    self._proc is not None
                    and self._proc.stdout is not None
                    and self._proc.stdout.at_eof()
                ):
                    raise AssertionError(f"{self.name} exited while waiting for {what}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: timed out after {timeout}s waiting for {what}\n{self.diagnostics()}"
            ) from None

    def states(self, prop: str = "iceConnectionState") -> list[str]:
        """The successive values of one state property."""
        return [e["value"] for e in self.events if e["ev"] == "state" and e["prop"] == prop]

    def state(self, prop: str = "iceConnectionState") -> str | None:
        found = self.states(prop)
        return found[-1] if found else None

    def first(self, kind: str, since: float = 0.0, **match: Any) -> dict[str, Any] | None:
        """The first event of `kind` at or after `since` whose fields match."""
        for event in self.events:
            if (
                event["ev"] == kind
                and event["t"] >= since
                and all(event.get(k) == v for k, v in match.items())
            ):
                return event
        return None

    def count(self, kind: str, since: float = 0.0) -> int:
        return sum(1 for e in self.events if e["ev"] == kind and e["t"] >= since)

    async def wait_state(self, value: str | Sequence[str], timeout: float = 10.0,
                         prop: str = "iceConnectionState") -> None:  # fmt: skip
        """Wait until the latest reported `prop` is `value` (or one of several)."""
        wanted = {value} if isinstance(value, str) else set(value)
        await self.wait_for(
            lambda: self.state(prop) in wanted, timeout, f"{prop} in {sorted(wanted)}"
        )

    async def wait_received(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` messages arrived."""
        await self.wait_for(
            lambda: len(self.received) >= count,
            timeout,
            f"{count} messages (have {len(self.received)})",
        )

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("stats")
        return result

    async def stop_sending(self) -> int:
        """Stop the message stream; returns how many messages were sent."""
        result = await self.request("stop")
        return int(result["sent"])

    def diagnostics(self) -> str:
        interesting = [e for e in self.events if e["ev"] not in ("msg", "candidate", "description")]
        lines = [f"--- {self.name} ({self.address}): {len(self.received)} messages received"]
        lines += [f"  {json.dumps(e)[:300]}" for e in interesting[-40:]]
        if self.errors:
            lines.append("errors:")
            lines += [f"  {e}" for e in self.errors[-5:]]
        lines.append("stderr tail:")
        lines += [f"  {line}" for line in list(self.stderr)[-30:]]
        return "\n".join(lines)

    async def close(self) -> None:
        """Close the peer connection and wait for the process to exit (kill it after 5 s)."""
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.request("close", timeout=5.0)
            with contextlib.suppress(Exception):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode


async def _forward(source: PeerProcess, target: PeerProcess) -> None:
    """Pass `source`'s descriptions and candidates to `target`, in order."""
    while True:
        event = await source.signals.get()
        if event["ev"] == "description":
            await target.send("description", description=event["description"])
        else:
            await target.send("candidate", candidate=event["candidate"])


@contextlib.asynccontextmanager
async def relay(a: PeerProcess, b: PeerProcess) -> Any:
    """The signaling server between two peer processes, for the `async with` block."""
    tasks = [asyncio.ensure_future(_forward(a, b)), asyncio.ensure_future(_forward(b, a))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ------------------------------------------------------------------ calls and healing

#: A message counts as "fresh" (the backlog is gone) when it arrives within this long of
#: being sent: five send intervals, far above the ~1 ms a healthy path takes here.
FRESH = 0.100


async def connect(
    a: PeerProcess, b: PeerProcess, timeout: float = 15.0, messages: int = 10
) -> None:
    """Start both (a offers) and wait until each has received `messages` messages."""
    await a.send("start")
    await b.send("start")
    await a.wait_received(messages, timeout)
    await b.wait_received(messages, timeout)


def heal_times(
    received: Sequence[Delivery], fault: float, fresh: float = FRESH
) -> tuple[float | None, float | None]:
    """For one direction: (first, all) in seconds after `fault`, or None if not yet.

    `first`: the first arrival of a message sent after the fault (one message got
    through the healed path). `all`: the arrival of the first message sent after the
    fault that took at most `fresh` seconds; the channel is ordered, so by then every
    earlier message (the whole backlog) has arrived too.
    """
    first = next((d.at - fault for d in received if d.sent >= fault), None)
    done = next(
        (d.at - fault for d in received if d.sent >= fault and d.at - d.sent <= fresh), None
    )
    return first, done


def both_ways(
    a: Sequence[Delivery], b: Sequence[Delivery], fault: float
) -> tuple[float | None, float | None]:
    """heal_times for both directions: (first message both ways, all data both ways)."""
    first_a, all_a = heal_times(a, fault)
    first_b, all_b = heal_times(b, fault)
    first = None if first_a is None or first_b is None else max(first_a, first_b)
    done = None if all_a is None or all_b is None else max(all_a, all_b)
    return first, done


def delivery_problem(received: Sequence[Delivery], sent: int) -> str | None:
    """None if messages 0..sent-1 each arrived exactly once, in order; else what is wrong."""
    seqs = [d.seq for d in received]
    if seqs == list(range(sent)):
        return None
    missing = sorted(set(range(sent)) - set(seqs))
    duplicated = sorted({s for s in seqs if seqs.count(s) > 1})
    disordered = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    return (
        f"{len(seqs)} received of {sent} sent: missing {missing[:20]}"
        f"{'...' if len(missing) > 20 else ''}, duplicated {duplicated[:20]}, "
        f"{disordered} out of order"
    )


async def finish(a: PeerProcess, b: PeerProcess, timeout: float = 15.0) -> tuple[int, int]:
    """Stop both streams and wait for every message to arrive; returns (a sent, b sent)."""
    sent_a = await a.stop_sending()
    sent_b = await b.stop_sending()
    await b.wait_received(sent_a, timeout)
    await a.wait_received(sent_b, timeout)
    return sent_a, sent_b


async def wait_any(*waits: Any, timeout: float) -> None:
    """Run condition waits side by side until the first one returns (or `timeout`).

    For a condition on several processes' events: give each process's `wait_for` the
    same predicate; whichever sees it first ends the wait. The caller checks the
    condition itself afterwards (a wait that timed out or saw its process exit is
    simply cancelled here).
    """
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.exception()  # retrieved: the caller re-checks the condition
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def wait_healed(
    a: PeerProcess, b: PeerProcess, fault: float, timeout: float
) -> tuple[float | None, float | None]:
    """Wait (at most `timeout`) until all data flows both ways again; `both_ways` then."""

    def healed() -> bool:
        return both_ways(a.received, b.received, fault)[1] is not None

    if not healed():
        await wait_any(
            a.wait_for(healed, timeout + 1, "healed"),
            b.wait_for(healed, timeout + 1, "healed"),
            timeout=timeout,
        )
    return both_ways(a.received, b.received, fault)
