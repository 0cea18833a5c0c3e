"""Property tests for the ICE agent against hostile and weird input.

1. Datagrams: random bytes, STUN-looking bytes and mutated copies of the STUN messages
   of a real exchange, fed to an agent with an established selected pair, from the
   peer's address and from strangers'. Nothing raises; the selected pair stays; the
   state stays unless a message still authenticates; every rejected datagram is counted
   and answered at most with an error; data keeps flowing both ways afterwards.
2. Candidate.from_sdp over random and mutated candidate lines: only CandidateError, and
   whatever parses is in range and round-trips through to_sdp.
3. set_remote_credentials with random strings: InvalidCredentialsError exactly for those
   outside RFC 8839 §5.4.
4. add_remote_candidate with weird but parseable candidates, many of them, for known and
   unknown generations: only UnknownGenerationError, limits held, generations kept apart.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_ice_agent import A_ADDR, B_ADDR, Duo, snapshot
from unbroken import stun
from unbroken.addresses import Address, Transmit
from unbroken.ice import (
    Candidate,
    CandidateError,
    IceAgent,
    IceConfig,
    IceTransportState,
    InvalidCredentialsError,
    UnknownGenerationError,
)
from unbroken.ice.agent import ICE_CHARS
from unbroken.ice.candidate import CANDIDATE_TYPES, MAX_PRIORITY

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
S = IceTransportState


# ------------------------------------------------------------------ 1. datagrams


def connected_duo() -> Duo:
    """Two agents with a selected pair (deterministic: same seeds, same exchange)."""
    duo = Duo()
    duo.connect()
    assert duo.b.state is S.COMPLETED and duo.b.selected_pair is not None
    return duo


_REFERENCE = connected_duo()
_REFERENCE.run(3.0)  # a few consent rounds too
CAPTURED: list[bytes] = [tx.data for _, tx in _REFERENCE.wire]
assert len(CAPTURED) >= 10


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """One captured STUN message with one to three mutations.

    Half the time the FINGERPRINT is recomputed afterwards, so that the mutation gets
    past decoding and reaches authentication and the ICE rules behind it.
    """
    original = draw(st.sampled_from(CAPTURED))
    refingerprint = draw(st.booleans())
    data = bytearray(original[:-8] if refingerprint else original)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["flip", "truncate", "insert", "overwrite", "length", "drop_fp", "type", "append"]
            )
        )
        n = len(data)
        if kind == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, n)) :]
        elif kind == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "overwrite" and n:
            i = draw(st.integers(0, n - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
        elif kind == "length" and n >= 4:
            data[2:4] = struct.pack(">H", draw(st.integers(0, 0xFFFF)))
        elif kind == "drop_fp" and n >= 28:
            # Remove FINGERPRINT and fix the length: the rest may still authenticate.
            del data[-8:]
            data[2:4] = struct.pack(">H", len(data) - 20)
        elif kind == "type" and n >= 2:
            data[0:2] = struct.pack(">H", draw(st.integers(0, 0x3FFF)))
        elif kind == "append":
            data += draw(st.binary(min_size=4, max_size=16))
            if len(data) >= 20:
                data[2:4] = struct.pack(">H", (len(data) - 20) & 0xFFFF)
    if refingerprint and len(data) >= 20:
        # RFC 5389 §15.5: the length counts FINGERPRINT, the CRC covers all before it.
        data[2:4] = struct.pack(">H", (len(data) - 12) & 0xFFFF)
        crc = zlib.crc32(bytes(data)) ^ 0x5354554E
        data += struct.pack(">HHI", 0x8028, 4, crc)
    return bytes(data)


@st.composite
def stun_looking(draw: st.DrawFn) -> bytes:
    """A well-formed header (any type, magic cookie, right length) over random attributes."""
    body = draw(st.binary(max_size=120))
    body += bytes(-len(body) % 4)
    head = struct.pack(">HHI", draw(st.integers(0, 0x3FFF)), len(body), stun.MAGIC_COOKIE)
    return head + draw(st.binary(min_size=12, max_size=12)) + body


datagrams = st.one_of(
    mutated(),
    stun_looking(),
    st.binary(max_size=200),
    st.binary(max_size=40).map(lambda b: b"\x00\x01" + b),  # looks like a Binding request
    st.just(b""),
)
strangers = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(1, 65535)),
    st.integers(1, 65535).filter(lambda p: p != A_ADDR[1]).map(lambda p: (A_ADDR[0], p)),
)
sources = st.one_of(st.just(A_ADDR), strangers)


def authenticates(data: bytes, duo: Duo) -> bool:
    """True when `data` is STUN that one of the two agents' keys still verifies."""
    try:
        msg = stun.decode(data)
    except stun.StunError:
        return False
    keys = [stun.short_term_key(agent.local_credentials[1]) for agent in (duo.a, duo.b)]
    return any(stun.check_integrity(msg, key) for key in keys)


@FUZZ
@given(inputs=st.lists(st.tuples(datagrams, sources), min_size=1, max_size=6))
def test_hostile_datagrams_leave_the_selected_pair_alone(
    inputs: list[tuple[bytes, Address]],
) -> None:
    duo = connected_duo()
    b = duo.b
    pair = b.selected_pair
    for data, source in inputs:
        state = b.state
        counted = sum(b.counters.values())
        before = snapshot(b)
        payload = b.receive(data, B_ADDR, source, duo.now)
        replies = b.datagrams_to_send()
        authentic = authenticates(data, duo)
        if payload is not None:
            # Only what the peer sends on the selected pair reaches the layer above.
            assert payload == data and source == A_ADDR and data[0] >= 4
        elif not authentic:
            assert sum(b.counters.values()) > counted, (data, source)
            assert snapshot(b) == before
            for tx in replies:
                assert tx.remote == source and tx.local == B_ADDR
                assert stun.decode(tx.data).message_class is stun.MessageClass.ERROR
        if source == A_ADDR or not authentic:
            # (A replayed check from elsewhere may add a peer-reflexive pair to check,
            # which is what a NAT rebinding looks like: completed may go to connected.)
            assert b.state is state
        assert b.selected_pair is pair
        for tx in replies:
            duo.deliver(tx)  # the real peer gets what went to its address
        duo.pump()
        assert b.selected_pair is pair and duo.a.selected_pair is not None
    assert_data_flows(duo)


def assert_data_flows(duo: Duo) -> None:
    """Application data flows both ways, on the same pairs, through consent rounds."""
    pairs = (duo.a.selected_pair, duo.b.selected_pair)
    for _ in range(3):
        assert duo.send_app(duo.a, b"\x17to b") and duo.send_app(duo.b, b"\x17to a")
        duo.run(0.5)
    assert duo.app["b"][-3:] == [b"\x17to b"] * 3 and duo.app["a"][-3:] == [b"\x17to a"] * 3
    assert (duo.a.selected_pair, duo.b.selected_pair) == pairs
    assert duo.a.state in (S.CONNECTED, S.COMPLETED)
    assert duo.b.state in (S.CONNECTED, S.COMPLETED)


KNOWN_ATTRIBUTES = frozenset(int(t) for t in stun.AttributeType)
B_UFRAG, B_PWD = _REFERENCE.b.local_credentials
CAPTURED_CHECKS = [
    msg
    for msg in map(stun.decode, CAPTURED)
    if msg.message_class is stun.MessageClass.REQUEST and (msg.username or "").startswith(B_UFRAG)
]
tie_breakers = st.one_of(st.none(), st.integers(0, 2**64 - 1), st.sampled_from([0, 2**64 - 1]))


@st.composite
def authenticated_nonsense(draw: st.DrawFn) -> bytes:
    """What a peer holding the credentials could send: a check with odd attributes, signed."""
    base = draw(st.sampled_from(CAPTURED_CHECKS))
    assert base.username is not None
    msg = stun.Message(
        method=stun.Method.BINDING,
        message_class=stun.MessageClass.REQUEST,
        transaction_id=draw(st.binary(min_size=12, max_size=12)),
        username=draw(st.sampled_from([base.username, B_UFRAG + ":", B_UFRAG + ":other"])),
        priority=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
        ice_controlling=draw(st.one_of(st.just(base.ice_controlling), tie_breakers)),
        ice_controlled=draw(tie_breakers),
        use_candidate=draw(st.booleans()),
        other=draw(
            st.lists(
                st.tuples(
                    st.integers(0, 0xFFFF).filter(lambda t: t not in KNOWN_ATTRIBUTES),
                    st.binary(max_size=8),
                ),
                max_size=2,
            )
        ),
    )
    key = stun.short_term_key(B_PWD)
    return stun.encode(msg, integrity_key=key, fingerprint=draw(st.booleans()))


@settings(FUZZ, max_examples=150)
@given(inputs=st.lists(st.tuples(authenticated_nonsense(), sources), min_size=1, max_size=4))
def test_authenticated_nonsense_never_moves_the_selected_pair(
    inputs: list[tuple[bytes, Address]],
) -> None:
    # Role conflicts, missing attributes, USE-CANDIDATE from elsewhere: a peer with the
    # credentials can change roles and add pairs to check, but selection needs a check
    # of ours to succeed, so data stays on the pair it is on.
    duo = connected_duo()
    pair = duo.b.selected_pair
    for data, source in inputs:
        duo.b.receive(data, B_ADDR, source, duo.now)
        duo.pump()
        assert duo.b.selected_pair is pair
    assert_data_flows(duo)


@FUZZ
@given(data=st.binary(max_size=64), local=st.sampled_from([B_ADDR, ("198.51.100.1", 1)]))
def test_datagrams_on_unknown_base_or_after_close(data: bytes, local: Address) -> None:
    duo = connected_duo()
    before = snapshot(duo.b)
    if local != B_ADDR:
        assert duo.b.receive(data, local, A_ADDR, duo.now) in (None, data)
        assert snapshot(duo.b) == before
    duo.b.close(duo.now)
    assert duo.b.receive(data, B_ADDR, A_ADDR, duo.now) is None
    assert duo.b.datagrams_to_send() == []


# ------------------------------------------------------------------ 2. candidate grammar

VALID_LINES = [
    "candidate:842163049 1 udp 1677729535 203.0.113.5 46154 typ srflx raddr 10.0.0.2 "
    "rport 46154 generation 0 ufrag EsAw network-id 1 network-cost 10",
    "candidate:1 1 udp 2130706431 192.0.2.1 9 typ host",
    "a=candidate:3 1 UDP 16777215 2001:db8::7 3478 typ relay raddr :: rport 0",
    "candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 1",
    "candidate:+/ 2 udp 1 ::ffff:192.0.2.1 65535 typ prflx x-ext value",
]
TOKENS = [
    "candidate:1", "1", "0", "256", "257", "udp", "UDP", "tcp", "sctp", "typ", "host",
    "srflx", "prflx", "relay", "foo", "raddr", "rport", "generation", "ufrag", "network-id",
    "network-cost", "tcptype", "192.0.2.1", "::1", "fe80::1%eth0", "x.local", "65535",
    "65536", "2147483647", "2147483648", "-1", "+1", "00001", "\u00b2", "\uff11", "a=",
    "abcd", "ab:cd", "9" * 11,
]  # fmt: skip
token = st.one_of(st.sampled_from(TOKENS), st.text(min_size=1, max_size=12))


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    fields = draw(st.sampled_from(VALID_LINES)).split(" ")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "delete", "insert", "chars"]))
        i = draw(st.integers(0, len(fields) - 1)) if fields else 0
        if kind == "replace" and fields:
            fields[i] = draw(token)
        elif kind == "delete" and fields:
            del fields[i]
        elif kind == "insert":
            fields.insert(i, draw(token))
        elif kind == "chars" and fields:
            text = fields[i]
            j = draw(st.integers(0, len(text)))
            fields[i] = text[:j] + draw(st.text(max_size=3)) + text[j + 1 :]
    return " ".join(fields)


@st.composite
def structured_line(draw: st.DrawFn) -> str:
    parts = [
        "candidate:" + draw(st.one_of(st.text(alphabet=ICE_CHARS, min_size=1, max_size=34), token)),
        str(draw(st.integers(-2, 300))),
        draw(st.sampled_from(["udp", "tcp", "Udp", "dccp"])),
        str(draw(st.integers(-1, 2**32))),
        draw(st.one_of(st.ip_addresses().map(str), token)),
        str(draw(st.integers(-1, 70000))),
        "typ",
        draw(st.sampled_from([*CANDIDATE_TYPES, "x"])),
    ]
    for _ in range(draw(st.integers(0, 4))):
        parts += [draw(st.sampled_from(TOKENS[17:24])), draw(token)]
    return " ".join(parts)


def assert_parses_cleanly(line: str) -> None:
    try:
        cand = Candidate.from_sdp(line)
    except CandidateError:
        return
    assert 1 <= cand.port <= 65535 and 1 <= cand.priority <= MAX_PRIORITY
    assert cand.type in CANDIDATE_TYPES and cand.transport in ("udp", "tcp")
    # An IP address in canonical form, or the mDNS name of a host candidate, as given.
    assert cand.is_mdns and cand.type == "host" or str(ipaddress.ip_address(cand.host)) == cand.host
    text = cand.to_sdp()
    again = Candidate.from_sdp(text)
    assert again == cand and again.to_sdp() == text


@FUZZ
@given(line=st.one_of(st.text(max_size=200), mutated_line(), structured_line()))
def test_candidate_lines_raise_only_candidate_error(line: str) -> None:
    assert_parses_cleanly(line)


@pytest.mark.parametrize("line", VALID_LINES)
def test_valid_lines_parse(line: str) -> None:
    cand = Candidate.from_sdp(line)
    assert Candidate.from_sdp(cand.to_sdp()) == cand


# ------------------------------------------------------------------ 3. credentials

cred_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=ICE_CHARS, max_size=300),
    st.text(alphabet=ICE_CHARS + ":= \u00e9\x00", min_size=3, max_size=30),
)


def valid_credentials(ufrag: object, pwd: object) -> bool:
    return (
        isinstance(ufrag, str)
        and isinstance(pwd, str)
        and 4 <= len(ufrag) <= 256
        and 22 <= len(pwd) <= 256
        and all(c in ICE_CHARS for c in ufrag + pwd)
    )


@FUZZ
@given(
    ufrag=st.one_of(cred_text, st.none(), st.integers()),
    pwd=st.one_of(cred_text, st.none(), st.binary(max_size=30)),
)
def test_remote_credentials_validated(ufrag: str, pwd: str) -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    if valid_credentials(ufrag, pwd):
        agent.set_remote_credentials(ufrag, pwd, 0.0)
        assert agent.remote_credentials == (ufrag, pwd)
    else:
        with pytest.raises(InvalidCredentialsError):
            agent.set_remote_credentials(ufrag, pwd, 0.0)
        assert agent.remote_credentials is None


# ------------------------------------------------------------------ 4. weird candidates

LIMITS = IceConfig(max_remote_candidates=20, max_pairs=30)
KNOWN_UFRAGS = ("remoteGenZero", "remoteGenOne")

weird_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(
        ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "::1", "::ffff:192.0.2.1", "fe80::1"]
    ),
)


@st.composite
def weird_candidate(draw: st.DrawFn) -> Candidate:
    """A candidate line at the edges of the grammar, parsed as a signaling layer would."""
    fields = [
        f"candidate:{draw(st.text(alphabet=ICE_CHARS, min_size=1, max_size=32))}",
        str(draw(st.sampled_from([1, 1, 1, 2, 256]))),
        draw(st.sampled_from(["udp", "udp", "tcp"])),
        str(draw(st.one_of(st.sampled_from([1, 2, MAX_PRIORITY]), st.integers(1, MAX_PRIORITY)))),
        draw(weird_hosts),
        str(draw(st.one_of(st.sampled_from([1, 65535]), st.integers(1, 65535)))),
        "typ",
        draw(st.sampled_from(CANDIDATE_TYPES)),
    ]
    ufrag = draw(st.one_of(st.none(), st.sampled_from(KNOWN_UFRAGS), st.just("unknownUfrag")))
    if ufrag is not None:
        fields += ["ufrag", ufrag]
    if draw(st.booleans()):
        fields += ["generation", str(draw(st.integers(0, 2**31)))]
    return Candidate.from_sdp(" ".join(fields))


def two_generation_agent() -> IceAgent:
    agent = IceAgent(controlling=True, rng=random.Random(3), config=LIMITS)
    for base in (("192.0.2.1", 4000), ("192.0.2.2", 4001), ("2001:db8::1", 4002)):
        agent.add_base(base, 0.0)
    agent.gather(0.0)
    agent.set_remote_credentials(KNOWN_UFRAGS[0], "p" * 22, 0.0)
    agent.restart(0.0)
    agent.set_remote_credentials(KNOWN_UFRAGS[1], "q" * 22, 0.0)
    return agent


@settings(FUZZ, max_examples=100)
@given(cands=st.lists(weird_candidate(), max_size=150))
def test_weird_candidates_respect_limits_and_generations(cands: list[Candidate]) -> None:
    agent = two_generation_agent()
    now = 0.0
    for cand in cands:
        if cand.ufrag is not None and cand.ufrag not in KNOWN_UFRAGS:
            with pytest.raises(UnknownGenerationError):
                agent.add_remote_candidate(cand, now)
            continue
        agent.add_remote_candidate(cand, now)
        now += 0.001
        agent.handle_timer(now)
    # Checks go out to whatever was accepted, without raising.
    for _ in range(50):
        timer = agent.get_timer()
        if timer is None:
            break
        now = max(now, timer.at)
        agent.handle_timer(now)
    sent: list[Transmit] = agent.datagrams_to_send()
    gens = agent.generations()
    assert [g.remote_ufrag for g in gens] == list(KNOWN_UFRAGS)
    for gen in gens:
        assert len(gen.remote_candidates) <= LIMITS.max_remote_candidates
        assert len(gen.pairs) <= LIMITS.max_pairs
        # Generations never mix: a candidate is in the generation its ufrag names.
        assert all(c.ufrag in (None, gen.remote_ufrag) for c in gen.remote_candidates)
        assert all(p.remote in gen.remote_candidates for p in gen.pairs)
        assert all(p.local in gen.local_candidates for p in gen.pairs)
        for pair in gen.pairs:
            assert (":" in pair.base[0]) == (":" in pair.remote.host)
    if cands:
        accepted = sum(len(g.remote_candidates) for g in gens)
        dropped = sum(v for k, v in agent.counters.items() if k.startswith("remote_candidate_"))
        assert accepted + dropped == sum(
            1 for c in cands if c.ufrag is None or c.ufrag in KNOWN_UFRAGS
        )
    for tx in sent:
        assert stun.decode(tx.data).message_class is stun.MessageClass.REQUEST
