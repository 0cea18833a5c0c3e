"""Issue 7: what a peer's signaling can make the agent do is bounded.

- multicast, broadcast and unspecified addresses are never candidates;
- checks are paced per agent (RFC 8445 §14): a peer restarting in a loop with many
  candidates cannot multiply our check rate, and older generations stop checking.
"""

from __future__ import annotations

import pytest

from test_ice_agent import A_ADDR, lone, remote_cand, run_lone
from unbroken import stun
from unbroken.ice import IceConfig


@pytest.mark.parametrize(
    "host", ["224.0.0.1", "239.255.255.250", "ff02::1", "0.0.0.0", "::", "255.255.255.255"]
)
def test_non_unicast_addresses_are_not_candidates(host: str) -> None:
    agent = lone()
    assert agent.add_remote_candidate(remote_cand((host, 9)), 0.0) is False
    assert agent.counters["remote_candidate_invalid"] == 1
    assert agent.pairs() == []


def test_a_peer_restarting_in_a_loop_cannot_multiply_our_check_rate() -> None:
    config = IceConfig(max_remote_candidates=150, max_pairs=150)
    agent = lone(config=config)
    sent: list[tuple[float, str]] = []
    now = 0.0
    for restart in range(8):  # a new generation every 250 ms, 150 candidates each
        if restart:
            ufrag = f"peer{restart:04d}"
            agent.restart(now)
            agent.set_remote_credentials(ufrag, "peerPasswordPeerPassword+/", now)
        for i in range(150):
            agent.add_remote_candidate(remote_cand((f"203.0.{restart}.{i + 1}", 9)), now)
        for at, tx in run_lone(agent, now + 0.25):
            msg = stun.decode(tx.data)
            if msg.message_class is stun.MessageClass.REQUEST and msg.username:
                sent.append((at, msg.username.split(":")[0]))
        now += 0.25
    # At most one new check per Ta, plus retransmissions of the checks in flight.
    per_second = len(sent) / now
    assert per_second < 2.5 / config.ta, per_second
    # Once a newer generation started, nothing more goes out with an older one's ufrag.
    newest_start = 7 * 0.25
    late = {ufrag for at, ufrag in sent if at > newest_start}
    assert late == {"peer0007"}, late
    assert all(tx_base == A_ADDR for tx_base in agent.bases)
