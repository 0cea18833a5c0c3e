"""ICE restart through the RTCPeerConnection API on loopback, ours with ours.

Two of our peer connections are connected with a data channel, then restarted N times
the way an application does it: `restartIce()` on one side, whose `negotiationneeded`
handler runs createOffer / setLocalDescription, hands the offer over in process, the
peer answers, the answer comes back (see _pc_common.Signaling; trickled candidates
follow their description). The side that restarts alternates, so half the restarts
come from the ICE-controlling side and half from the controlled one. Per restart, from
the `restartIce()` call (loop time):

* switched: both sides have selected a pair of the new generation (the IceConnection's
  `selectedpairchange` event with the new generation) -- DESIGN.md's restart figure;
* full restart: that, and the offer/answer exchange finished, and both sides report
  iceConnectionState connected or completed (the later of the three).

Steps (medians): negotiationneeded fired, offer applied locally, answer applied at the
answerer, answer applied at the offerer, first side switched. The connection is idle
(consent checks only) and rests `--settle` seconds between restarts. aiortc has no ICE
restart (issue #211), so there is no baseline in the same run; DESIGN.md gives
Chromium's 81 ms and Firefox's 86 ms for the same figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import ms, parse_args, summarize, table, write_results
from _pc_common import OURS, Link, assert_loopback, connected, loopback_only

NAME = "pc_restart"
UP = ("connected", "completed")


class ApiRestart:
    """One restart through restartIce() and negotiationneeded, with its timestamps."""

    def __init__(self, link: Link, initiator: Any) -> None:
        self.link = link
        self.a = initiator
        self.b = link.answerer if initiator is link.offerer else link.offerer
        self.loop = asyncio.get_running_loop()
        self.called = 0.0
        self.marks: dict[str, float] = {}
        self.targets = {id(pc): pc.iceTransport.agent.generation + 1 for pc in (self.a, self.b)}
        self.done = asyncio.Event()
        self.failure: BaseException | None = None

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, self.loop.time() - self.called)

    def _on_selected(self, who: str, pc: Any) -> Callable[[Any], None]:
        def handler(event: Any) -> None:
            if event.generation == self.targets[id(pc)]:
                self.mark(f"switched_{who}")
                self._check_done()

        return handler

    def _check_done(self) -> None:
        if {"switched_a", "switched_b", "answer_delivered"} <= self.marks.keys() and all(
            pc.iceConnectionState in UP for pc in (self.a, self.b)
        ):
            self.mark("full")
            self.done.set()

    async def _on_negotiation_needed(self) -> None:
        self.mark("negotiationneeded")
        try:
            await self.link.signaling.exchange(self.a, mark=self.mark)
        except BaseException as exc:  # surfaced by run()
            self.failure = exc
            self.done.set()
            return
        self._check_done()

    async def run(self, timeout: float = 10.0) -> None:
        """restartIce() and wait until both sides use the new generation and are up."""
        handlers = [
            (self.a.iceTransport, "selectedpairchange", self._on_selected("a", self.a)),
            (self.b.iceTransport, "selectedpairchange", self._on_selected("b", self.b)),
            (self.a, "negotiationneeded", self._on_negotiation_needed),
            (self.a, "iceconnectionstatechange", self._check_done),
            (self.b, "iceconnectionstatechange", self._check_done),
        ]
        for emitter, event, handler in handlers:
            emitter.on(event, handler)
        try:
            self.called = self.loop.time()
            self.a.restartIce()
            await asyncio.wait_for(self.done.wait(), timeout)
            if self.failure is not None:
                raise self.failure
        finally:
            for emitter, event, handler in handlers:
                emitter.remove_listener(event, handler)

    @property
    def switched(self) -> float:
        return max(self.marks["switched_a"], self.marks["switched_b"])


async def measure(restarts: int, settle: float) -> dict[str, Any]:
    """Run the restarts on one connection; the samples and their summaries."""
    link = await connected(OURS, OURS)
    records: list[dict[str, float]] = []
    by_role: dict[str, list[float]] = {"controlling": [], "controlled": []}
    try:
        generation = link.offerer.iceTransport.agent.generation
        for n in range(restarts):
            await asyncio.sleep(settle)
            initiator = link.offerer if n % 2 == 0 else link.answerer
            restart = ApiRestart(link, initiator)
            await restart.run()
            link.signaling.check()
            assert_loopback(link.offerer, link.answerer)
            assert link.offerer.signalingState == link.answerer.signalingState == "stable"
            records.append({**restart.marks, "switched": restart.switched})
            role = initiator.iceTransport.role
            by_role[role].append(restart.switched)
        assert link.offerer.iceTransport.agent.generation == generation + restarts
        # The channel set up before the first restart still carries data both ways.
        await exchange_one(link)
    finally:
        await link.close()
    steps = ["negotiationneeded", "offer_applied", "answer_applied", "answer_delivered"]
    return {
        "restarts": restarts,
        "settle_s": settle,
        "switched": summarize([r["switched"] for r in records]),
        "full_restart": summarize([r["full"] for r in records]),
        "switched_by_initiator_role": {k: summarize(v) for k, v in by_role.items()},
        "first_side_switched": summarize([min(r["switched_a"], r["switched_b"]) for r in records]),
        "step_medians_s": {k: statistics.median(r[k] for r in records) for k in steps},
        "samples": records,
    }


async def exchange_one(link: Link) -> None:
    """One message each way on the original channel, waited for."""
    got: list[asyncio.Future[Any]] = []
    for channel in (link.channel_offerer, link.channel_answerer):
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        channel.once("message", fut.set_result)
        got.append(fut)
    link.channel_offerer.send("ping")
    link.channel_answerer.send("pong")
    assert await asyncio.wait_for(asyncio.gather(*got), 5) == ["pong", "ping"]


def main() -> None:
    """Run, print the table, write the JSON."""

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--restarts", type=int, default=None, help="default 50 (10 quick)")
        p.add_argument("--settle", type=float, default=0.2, help="idle time between restarts")

    args = parse_args(__doc__.splitlines()[0], options)
    restarts = args.restarts or (10 if args.quick else 50)
    started = time.monotonic()
    with loopback_only() as isolation:
        res = asyncio.run(measure(restarts, args.settle))
    rows = []
    for name, s in (
        ("restartIce() until both switched (DESIGN figure)", res["switched"]),
        ("  initiated by the controlling side", res["switched_by_initiator_role"]["controlling"]),
        ("  initiated by the controlled side", res["switched_by_initiator_role"]["controlled"]),
        ("restartIce() until the first side switched", res["first_side_switched"]),
        ("full restart (switched, negotiated, both up)", res["full_restart"]),
    ):
        rows.append([name, s["n"], ms(s["median"]), ms(s["p95"]), ms(s["max"])])
    print(f"ICE restart through the RTCPeerConnection API, ours with ours ({isolation})")
    print(table(["from restartIce()", "n", "median ms", "p95 ms", "max ms"], rows))
    st = res["step_medians_s"]
    print("step medians from restartIce(): " + ", ".join(f"{k} {ms(v)} ms" for k, v in st.items()))
    print(
        "aiortc: no ICE restart, no baseline. DESIGN target: at most half of Chromium's 81 ms (40.5 ms)"
    )
    elapsed = time.monotonic() - started
    path = write_results(NAME, args.quick, {"isolation": isolation, "elapsed_s": elapsed, **res})
    print(f"wrote {path} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
