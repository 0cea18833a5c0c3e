"""Through real NATs (issue 12): connecting via srflx, and healing when a NAT rebinds.

Each test builds its own bed (tests/interop/nat.py): home routers with nftables
masquerade and a firewall, a public namespace with coturn as the STUN server, and our
peers each in its own process (nat_peer.py), A offering (controlling), a reliable
ordered data channel with a numbered message every 20 ms each way. Nothing here has an
application restart handler: the connection has to heal by itself. Heal times are
logged (and measured properly in benchmarks/nat_rebind.py); the only time bound is a
generous correctness one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from unbroken.sdp import ice_ufrags

from .browser import BrowserPeerConnection, chromium_missing, launch_chromium
from .conftest import require
from .nat import (
    PUBLIC_IP,
    STUN_PORT,
    Delivery,
    NatBed,
    PeerProcess,
    both_ways,
    connect,
    delivery_problem,
    finish,
    lan_host,
    nat_missing,
    relay,
    wait_any,
    wait_healed,
)

pytestmark = [pytest.mark.netns]

log = logging.getLogger(__name__)

UP = ("connected", "completed")
#: The correctness bound on healing (the target, under 1 s, is the benchmark's business).
HEAL_BOUND = 10.0
STEADY = 25  # messages each way before a fault (half a second of traffic)


@pytest.fixture
def bed_factory() -> Iterator[Any]:
    """Build beds with `bed_factory(lans=..., random_ports=...)`; all are removed after."""
    require(nat_missing())
    made: list[NatBed] = []

    def make(lans: int = 1, random_ports: tuple[bool, ...] = ()) -> NatBed:
        bed = NatBed.create(lans=lans, random_ports=random_ports)
        made.append(bed)
        return bed

    yield make
    for bed in made:
        bed.close()


@pytest_asyncio.fixture
async def peers() -> AsyncIterator[list[PeerProcess]]:
    """Started peer processes are appended here and closed after the test."""
    made: list[PeerProcess] = []
    yield made
    for peer in made:
        await peer.close()


async def start_peer(
    made: list[PeerProcess], name: str, ns: Any, address: str, **options: Any
) -> PeerProcess:
    peer = PeerProcess(name, ns, address, **options)
    made.append(peer)
    await peer.start()
    return peer


def assert_no_errors(*procs: PeerProcess) -> None:
    for proc in procs:
        assert proc.errors == [], f"{proc.name} reported errors:\n" + "\n".join(proc.errors)


def assert_all_delivered(a: PeerProcess, b: PeerProcess, sent_a: int, sent_b: int) -> None:
    problem_ab = delivery_problem(b.received, sent_a)
    problem_ba = delivery_problem(a.received, sent_b)
    assert problem_ab is None, f"A -> B: {problem_ab}"
    assert problem_ba is None, f"B -> A: {problem_ba}"


async def healed_or_fail(
    a: PeerProcess, b: PeerProcess, fault: float, bed: NatBed, timeout: float = HEAL_BOUND
) -> tuple[float, float]:
    """Wait until all data flows both ways again; (first message both ways, all data)."""
    first, done = await wait_healed(a, b, fault, timeout)
    if done is None:
        raise AssertionError(
            f"data did not flow both ways again within {timeout}s of the fault "
            f"(first message both ways: {first}); A got {_since(a.received, fault)} "
            f"and B got {_since(b.received, fault)} messages sent after it\n"
            f"{a.diagnostics()}\n{b.diagnostics()}\n{bed.diagnostics()}"
        )
    assert first is not None
    return first, done


def selected_generation(peer: PeerProcess, generation: int) -> bool:
    """True once `peer` reported a selected pair of `generation`."""
    return peer.first("selected", generation=generation) is not None


def _since(received: list[Delivery], fault: float) -> int:
    return sum(1 for d in received if d.sent >= fault)


# ------------------------------------------------------------------ the bed itself


def test_bed_behaves_like_a_home_router(bed_factory: Any) -> None:
    """The NAT keeps ports, `rebind` moves them, and unsolicited inbound is dropped."""
    bed: NatBed = bed_factory()
    lan, router = bed.lan(1), bed.router(1)
    mapped = NatBed.stun_probe(lan, lan_host(1), 40000)
    assert mapped == (router.wan_ip, 40000)  # masquerade keeps the port: EIM-like
    router.rebind()
    moved = NatBed.stun_probe(lan, lan_host(1), 40000)
    assert moved is not None and moved[0] == router.wan_ip and moved[1] != 40000
    assert router.external_ports(PUBLIC_IP) == [moved[1]]
    router.set_random_ports(False)
    router.flush()
    assert NatBed.stun_probe(lan, lan_host(1), 40000) == (router.wan_ip, 40000)
    # A stranger's packet to the mapped port: dropped by the firewall, never reaches
    # the LAN host, and leaves no conntrack entry (so it cannot claim a port).
    with bed.lan(1).entered():
        inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with bed.public.entered():
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with inside, stranger:
        inside.bind((lan_host(1), 40001))
        inside.sendto(b"out", (PUBLIC_IP, STUN_PORT))  # opens 40001 to coturn only
        stranger.bind((PUBLIC_IP, 0))
        stranger.sendto(b"unsolicited", (router.wan_ip, 40001))
        inside.settimeout(0.3)
        with pytest.raises(TimeoutError):
            inside.recvfrom(100)
    originators = re.findall(
        r"^\S+\s+\d+\s+\d+\s+(?:\S+\s+)?src=(\S+)", router.conntrack_table(), re.M
    )
    assert originators and set(originators) == {lan_host(1)}, router.conntrack_table()


# ------------------------------------------------------------------ connecting


async def test_behind_nat_connects_via_srflx_and_restarts_lose_nothing(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    b = await start_peer(peers, "B", bed.public, PUBLIC_IP, polite=True)
    async with relay(a, b):
        await connect(a, b)
        stats_a, stats_b = await a.stats(), await b.stats()
        srflx = [c for c in stats_a["localCandidates"] if c["type"] == "srflx"]
        assert [(c["address"], c["port"]) for c in srflx] == [
            (router.wan_ip, p) for p in router.external_ports(PUBLIC_IP)
        ], stats_a
        # B reaches A only through A's NAT mapping (its srflx address, or learned as prflx).
        remote = stats_b["selected"]["remote"]
        assert remote["address"] == router.wan_ip and remote["type"] in ("srflx", "prflx")
        assert stats_a["selected"]["remote"]["address"] == PUBLIC_IP
        for generation in range(1, 6):
            started = asyncio.get_running_loop().time()
            await a.send("restart")
            for p in (a, b):
                await p.wait_for(
                    partial(selected_generation, p, generation),
                    10,
                    f"a selected pair of generation {generation}",
                )
            log.info("restart %d: %.3f s", generation, asyncio.get_running_loop().time() - started)
        sent_a, sent_b = await finish(a, b)
    assert_all_delivered(a, b, sent_a, sent_b)
    assert a.state() in UP and b.state() in UP
    assert_no_errors(a, b)


async def test_both_behind_nats_connect_via_srflx(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    bed: NatBed = bed_factory(lans=2)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    b = await start_peer(peers, "B", bed.lan(2), lan_host(2), polite=True)
    async with relay(a, b):
        await connect(a, b)
        stats_a, stats_b = await a.stats(), await b.stats()
        # Each reaches the other only at the other's NAT: server-reflexive addresses.
        assert stats_a["selected"]["remote"]["address"] == bed.router(2).wan_ip, stats_a
        assert stats_b["selected"]["remote"]["address"] == bed.router(1).wan_ip, stats_b
        sent_a, sent_b = await finish(a, b)
    assert_all_delivered(a, b, sent_a, sent_b)
    assert_no_errors(a, b)


async def test_both_behind_random_port_nats_fail_cleanly(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """Without TURN there is no path: ICE says `failed`, and nothing crashes."""
    bed: NatBed = bed_factory(lans=2, random_ports=(True, True))
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    b = await start_peer(peers, "B", bed.lan(2), lan_host(2), polite=True)
    async with relay(a, b):
        await a.send("start")
        await b.send("start")
        await a.wait_state("failed", timeout=40)
        await b.wait_state("failed", timeout=40)
        for p in (a, b):
            assert not set(p.states()) & set(UP), p.states()
            assert p.first("open") is None and p.received == []
            stats = await p.stats()  # still alive and answering
            assert stats["iceConnectionState"] == "failed"
            assert stats["selected"] is None
    for p in (a, b):
        await p.close()
        assert p.returncode == 0, p.diagnostics()
    assert_no_errors(a, b)


# ------------------------------------------------------------------ faults


async def test_rebinding_heals_without_any_handler(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """Issue 12: the NAT moves A to a new external port; data flows again, nothing lost."""
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    b = await start_peer(peers, "B", bed.public, PUBLIC_IP, polite=True)
    async with relay(a, b):
        await connect(a, b, messages=STEADY)
        before = router.external_ports(PUBLIC_IP)
        fault = router.rebind()
        first, done = await healed_or_fail(a, b, fault, bed)
        log.info("rebinding healed: first message both ways %.3f s, all data %.3f s", first, done)
        after = router.external_ports(PUBLIC_IP)
        assert after and not set(after) & set(before), (before, after)  # the fault happened
        count_a, count_b = len(a.received), len(b.received)
        await a.wait_received(count_a + STEADY)
        await b.wait_received(count_b + STEADY)
        sent_a, sent_b = await finish(a, b)
        stats_a = await a.stats()
    assert_all_delivered(a, b, sent_a, sent_b)
    assert a.state() in UP and b.state() in UP
    assert_no_errors(a, b)
    # Issue 12: A's selected local candidate is what it really is now, the new mapping.
    local, remote = stats_a["selected"]["local"], stats_a["selected"]["remote"]
    towards_b = router.external_ports(PUBLIC_IP, remote["port"])
    assert (local["address"], [local["port"]]) == (router.wan_ip, towards_b), (
        f"A's selected local candidate in getStats is {local}, not the NAT's new mapping "
        f"{router.wan_ip}:{towards_b}"
    )


async def test_nat_reboot_keeping_ports_keeps_working(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """Conntrack flushed and 200 ms without forwarding; ports stay: nothing lost."""
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    b = await start_peer(peers, "B", bed.public, PUBLIC_IP, polite=True)
    async with relay(a, b):
        await connect(a, b, messages=STEADY)
        before = router.external_ports(PUBLIC_IP)
        began, ended = await router.reboot(0.2)
        first, done = await healed_or_fail(a, b, ended, bed)
        log.info(
            "NAT reboot (200 ms): first message both ways %.3f s, all data %.3f s after it ended",
            first,
            done,
        )
        assert router.external_ports(PUBLIC_IP) == before  # same port: only an outage
        sent_a, sent_b = await finish(a, b)
    assert_all_delivered(a, b, sent_a, sent_b)
    assert a.state() in UP and b.state() in UP
    assert_no_errors(a, b)


# ------------------------------------------------------------------ Chromium as B


class ChromiumB:
    """Chromium's peer connection as B: answers A's offers, trickles, streams messages."""

    def __init__(self, pc: BrowserPeerConnection) -> None:
        self.pc = pc
        self.failures: list[BaseException] = []
        self.last_ufrag: str | None = None
        self.last_mid = "0"

    async def from_a(self, a: PeerProcess) -> None:
        while True:
            event = await a.signals.get()
            if event["ev"] == "description":
                description = event["description"]
                await self.pc.set_remote_description(description)
                if description["type"] == "offer":
                    answer = await self.pc.set_local_description()
                    await a.send("description", description=answer)
            else:
                await self.pc.add_ice_candidate(event["candidate"])

    async def to_a(self, a: PeerProcess) -> None:
        while True:
            candidate = await self.pc.next_candidate(timeout=3600)
            if candidate is None or not candidate.get("candidate"):
                end = {
                    "candidate": "",
                    "sdpMid": self.last_mid,
                    "usernameFragment": self.last_ufrag,
                }
                await a.send("candidate", candidate=end)
                continue
            self.last_ufrag = candidate.get("usernameFragment")
            self.last_mid = candidate.get("sdpMid") or self.last_mid
            await a.send("candidate", candidate=candidate)

    async def guard(self, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failures.append(exc)

    async def start_stream(self, interval_ms: int = 20) -> None:
        """A numbered message every interval on the "data" channel, from the page."""
        await self.pc.page.evaluate(
            """
            const ch = h.peer(arg.pc).channels.get("data");
            const t0 = performance.now();
            let seq = 0;
            const tick = () => {
              const sent = (performance.timeOrigin + performance.now()) / 1000;
              ch.send(`${seq} ${sent.toFixed(6)}`);
              seq += 1;
              window.natStream = { seq, timer: setTimeout(tick, Math.max(0, t0 + seq * arg.ms - performance.now())) };
            };
            tick();
            return null;
            """,
            {"pc": self.pc.id, "ms": interval_ms},
        )

    async def stop_stream(self) -> int:
        sent: int = await self.pc.page.evaluate(
            "clearTimeout(window.natStream.timer); return window.natStream.seq;"
        )
        return sent

    def received(self) -> list[Delivery]:
        channel = self.pc.channel("data")
        out = []
        for text, at in zip(channel.messages, channel.arrivals):
            assert isinstance(text, str)
            seq, sent = text.split(" ", 1)
            out.append(Delivery(int(seq), float(sent), at / 1000.0))
        return out


@pytest.mark.browser
async def test_rebinding_heals_with_chromium_as_b(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """The same rebinding, Chromium (controlled) as B in the public namespace."""
    require(chromium_missing())
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), offerer=True)
    async with launch_chromium(bed.public) as chromium:
        assert chromium.page is not None
        page = chromium.page
        pc = await page.create_pc({"iceServers": [{"urls": f"stun:{PUBLIC_IP}:{STUN_PORT}"}]})
        browser = ChromiumB(pc)
        tasks = [
            asyncio.ensure_future(browser.guard(browser.from_a(a))),
            asyncio.ensure_future(browser.guard(browser.to_a(a))),
        ]
        try:
            await a.send("start")
            channel = await pc.wait_channel("data", timeout=15)
            await browser.start_stream()
            await a.wait_received(STEADY, 15)
            await channel.wait_messages(STEADY, 15)
            before = router.external_ports(PUBLIC_IP)
            fault = router.rebind()

            def healed() -> bool:
                return both_ways(a.received, browser.received(), fault)[1] is not None

            await wait_any(
                page.wait_until(healed, HEAL_BOUND + 1, "healed"),
                a.wait_for(healed, HEAL_BOUND + 1, "healed"),
                timeout=HEAL_BOUND,
            )
            first, done = both_ways(a.received, browser.received(), fault)
            assert done is not None, (
                f"no healing within {HEAL_BOUND}s (first: {first})\n{a.diagnostics()}\n"
                f"{page.diagnostics()}\n{bed.diagnostics()}"
            )
            log.info("rebinding with Chromium as B: first %.3f s, all data %.3f s", first, done)
            after = router.external_ports(PUBLIC_IP)
            assert after and not set(after) & set(before), (before, after)
            sent_b = await browser.stop_stream()
            sent_a = await a.stop_sending()
            await channel.wait_messages(sent_a, 15)
            await a.wait_received(sent_b, 15)
            assert browser.failures == [], browser.failures
            problem_ab = delivery_problem(browser.received(), sent_a)
            problem_ba = delivery_problem(a.received, sent_b)
            assert problem_ab is None, f"A -> Chromium: {problem_ab}"
            assert problem_ba is None, f"Chromium -> A: {problem_ba}"
            assert page.errors == []
            assert_no_errors(a)
            # Issue 12: our side knows what it looks like now, as with our own B.
            selected = (await a.stats())["selected"]
            local, remote = selected["local"], selected["remote"]
            towards_b = router.external_ports(remote["address"], remote["port"])
            assert (local["address"], [local["port"]]) == (router.wan_ip, towards_b), (
                f"A's selected local candidate in getStats is {local}, not the NAT's new "
                f"mapping {router.wan_ip}:{towards_b}"
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await a.close()


# ------------------------------------------------------------------ A answering (controlled)


def _ufrags(peer: PeerProcess, since: float = 0.0) -> list[tuple[float, str, str]]:
    """(time, type, ice-ufrag) of every description `peer` sent at or after `since`."""
    out = []
    for event in peer.events:
        if event["ev"] == "description" and event["t"] >= since:
            sdp = event["description"]["sdp"]
            ufrag = next(iter(ice_ufrags(sdp)), "")
            out.append((event["t"], event["description"]["type"], ufrag))
    return out


def who_moved(a: PeerProcess, b: PeerProcess, fault: float) -> tuple[str, float]:
    """After the fault, what happened first: A restarting ICE, or B switching pairs alone.

    "a-restarted": A (controlled) sent an offer with a new ufrag; "b-moved": B selected a
    pair of the generation it already had (no restart) before that. Returns the kind and
    its time after the fault; AssertionError if neither happened.
    """
    before = [u for t, _, u in _ufrags(a) if t < fault]
    restart = next(
        ((t, u) for t, kind, u in _ufrags(a, fault) if kind == "offer" and u not in before),
        None,
    )
    generations = [e["generation"] for e in b.events if e["ev"] == "selected" and e["t"] < fault]
    moved = next(
        (
            e["t"]
            for e in b.events
            if e["ev"] == "selected"
            and e["t"] >= fault
            and generations
            and e["generation"] == generations[-1]
        ),
        None,
    )
    if moved is not None and (restart is None or moved < restart[0]):
        return "b-moved", moved - fault
    assert restart is not None, (
        f"after the rebinding A did not restart ICE (its ufrags: {_ufrags(a)}) and B did "
        f"not move by itself\n{a.diagnostics()}\n{b.diagnostics()}"
    )
    return "a-restarted", restart[0] - fault


async def test_rebinding_heals_when_the_peer_behind_the_nat_answers(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """Issue 12 with the roles swapped: B offers, so A behind the NAT is controlled.

    No restart handler, only perfect negotiation: A, seeing its own mapping change,
    restarts ICE by itself (its ufrag changes) unless B moved first; either way data
    flows again both ways and nothing is lost.
    """
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), polite=True)
    b = await start_peer(peers, "B", bed.public, PUBLIC_IP, offerer=True)
    async with relay(b, a):
        await connect(b, a, messages=STEADY)
        before = router.external_ports(PUBLIC_IP)
        fault = router.rebind()
        first, done = await healed_or_fail(a, b, fault, bed)
        kind, moved_at = who_moved(a, b, fault)
        log.info(
            "A answering: %s after %.3f s; first message both ways %.3f s, all data %.3f s",
            kind,
            moved_at,
            first,
            done,
        )
        after = router.external_ports(PUBLIC_IP)
        assert after and not set(after) & set(before), (before, after)  # the fault happened
        count_a, count_b = len(a.received), len(b.received)
        await a.wait_received(count_a + STEADY)
        await b.wait_received(count_b + STEADY)
        sent_a, sent_b = await finish(a, b)
    assert_all_delivered(a, b, sent_a, sent_b)
    assert a.state() in UP and b.state() in UP
    assert a.count("handler") == 0 and b.count("handler") == 0  # no application handler ran
    assert_no_errors(a, b)
    if kind == "a-restarted":
        # A's new generation is in use on both sides: B selected a pair of it.
        assert any(
            e["ev"] == "selected" and e["t"] >= fault and e["generation"] >= 1 for e in b.events
        ), b.diagnostics()


class ChromiumOffering(ChromiumB):
    """Chromium as B making the first offer (so controlling), answering A's later ones."""

    async def offer(self, a: PeerProcess) -> None:
        await self.pc.create_data_channel("data", ordered=True)
        offer = await self.pc.set_local_description()
        await a.send("description", description=offer)


@pytest.mark.browser
async def test_rebinding_heals_with_chromium_offering(
    bed_factory: Any, peers: list[PeerProcess]
) -> None:
    """The same rebinding with Chromium as B offering (controlling), A behind the NAT answering."""
    require(chromium_missing())
    bed: NatBed = bed_factory()
    router = bed.router(1)
    a = await start_peer(peers, "A", bed.lan(1), lan_host(1), polite=True)
    async with launch_chromium(bed.public) as chromium:
        assert chromium.page is not None
        page = chromium.page
        pc = await page.create_pc({"iceServers": [{"urls": f"stun:{PUBLIC_IP}:{STUN_PORT}"}]})
        browser = ChromiumOffering(pc)
        tasks = [
            asyncio.ensure_future(browser.guard(browser.from_a(a))),
            asyncio.ensure_future(browser.guard(browser.to_a(a))),
        ]
        try:
            await browser.offer(a)
            channel = await pc.wait_channel("data", timeout=15)
            await a.wait_for(lambda: a.first("open") is not None, 15, "A's channel open")
            await browser.start_stream()
            await a.wait_received(STEADY, 15)
            await channel.wait_messages(STEADY, 15)
            before = router.external_ports(PUBLIC_IP)
            fault = router.rebind()

            def healed() -> bool:
                return both_ways(a.received, browser.received(), fault)[1] is not None

            await wait_any(
                page.wait_until(healed, HEAL_BOUND + 1, "healed"),
                a.wait_for(healed, HEAL_BOUND + 1, "healed"),
                timeout=HEAL_BOUND,
            )
            first, done = both_ways(a.received, browser.received(), fault)
            assert done is not None, (
                f"no healing within {HEAL_BOUND}s (first: {first})\n{a.diagnostics()}\n"
                f"{page.diagnostics()}\n{bed.diagnostics()}"
            )
            restarted = [
                (round(t - fault, 3), u) for t, kind, u in _ufrags(a, fault) if kind == "offer"
            ]
            log.info(
                "rebinding, Chromium offering: first %.3f s, all data %.3f s; A's restart "
                "offers after the fault: %s",
                first,
                done,
                restarted,
            )
            after = router.external_ports(PUBLIC_IP)
            assert after and not set(after) & set(before), (before, after)
            sent_b = await browser.stop_stream()
            sent_a = await a.stop_sending()
            await channel.wait_messages(sent_a, 15)
            await a.wait_received(sent_b, 15)
            assert browser.failures == [], browser.failures
            problem_ab = delivery_problem(browser.received(), sent_a)
            problem_ba = delivery_problem(a.received, sent_b)
            assert problem_ab is None, f"A -> Chromium: {problem_ab}"
            assert problem_ba is None, f"Chromium -> A: {problem_ba}"
            assert page.errors == []
            assert a.state() in UP, a.diagnostics()
            assert_no_errors(a)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await a.close()
