"""Hostile STUN input: decoding cost bounded per packet, strangers turned away before real work.

Issue 7, items 1 and 2. The codec: a 64 KB Binding request of 16,371 distinct unknown
comprehension-required attributes cost 2.25 s to decode (a list searched per attribute),
16k identical ones 18 ms; now decode() walks at most MAX_ATTRIBUTES attributes, and a
hypothesis property bounds the Python work of any packet. Work is counted, not timed:
the number of bytecode instructions the interpreter runs (sys.settrace opcode events),
which is deterministic; wall-clock figures are in benchmarks/stun_hostile.py.

The agent: raw STUN bytes from a stranger are dropped at the cheapest stage that can tell
(size, header, FINGERPRINT, our ufrag) before any HMAC, every stage counted; the error
replies RFC 5389 §10.1.2 asks for are rate-limited; the selected pair and its consent do
not notice a flood.
"""

from __future__ import annotations

import gc
import random
import struct
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flood_sender import worst_packet
from unbroken import stun
from unbroken.ice import IceAgent, IceConfig, IceTransportState
from unbroken.ice.ratelimit import TokenBucket
from unbroken.stun import MAX_ATTRIBUTES, StunError

TID = bytes(range(1, 13))
A = ("127.0.0.1", 10000)
B = ("127.0.0.1", 20000)
STRANGER = ("127.0.0.1", 40000)
FP_XOR = 0x5354554E

# ------------------------------------------------------------------ measuring work


def opcodes(fn: Callable[..., Any], *args: Any) -> int:
    """Bytecode instructions executed by fn(*args) and everything it calls (StunError ok).

    A deterministic stand-in for CPU time: C work (CRC-32, UTF-8 checks, slicing) is
    linear in the bytes it touches and not counted; Python-level loops are.
    """
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            count += 1
        return tracer

    # No cyclic garbage collection meanwhile: finalizers it ran would count, at random.
    gc.disable()
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    except StunError:
        pass
    finally:
        sys.settrace(previous)
        gc.enable()
    return count


# Budget of a decode: a fixed part plus a bounded amount per attribute walked. Measured on
# CPython 3.11: an ICE Binding request (5 attributes) runs ~710 instructions; building the
# first IPv6 address (ipaddress, pure Python) ~400, done at most twice (XOR-MAPPED-ADDRESS,
# MAPPED-ADDRESS; duplicates are only checked); the costliest repeatable attribute paths
# (REALM, XOR-PEER-ADDRESS, ERROR-CODE checks) ~155 each.
OPS_FIXED = 1500
OPS_PER_ATTRIBUTE = 200


def budget(attributes: int) -> int:
    return OPS_FIXED + OPS_PER_ATTRIBUTE * min(attributes, MAX_ATTRIBUTES + 1)


def raw(
    attrs: list[tuple[int, bytes]], *, msg_type: int = 0x0001, fingerprint: bool = False
) -> bytes:
    """A STUN message with exactly these attributes (padding added), optionally fingerprinted."""
    body = b"".join(struct.pack(">HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attrs)
    extra = 8 if fingerprint else 0
    head = struct.pack(">HHI", msg_type, len(body) + extra, stun.MAGIC_COOKIE) + TID
    if not fingerprint:
        return head + body
    crc = zlib.crc32(head + body) ^ FP_XOR
    return head + body + struct.pack(">HHI", 0x8028, 4, crc)


def normal_request() -> bytes:
    msg = stun.Message(
        stun.Method.BINDING,
        stun.MessageClass.REQUEST,
        TID,
        username="abcdefgh:ijklmnop",
        priority=0x6E0001FF,
        ice_controlling=12345,
        use_candidate=True,
    )
    return stun.encode(msg, integrity_key=b"p" * 24, fingerprint=True)


# ------------------------------------------------------------------ codec: the issue's packets


def test_issue_packet_of_16371_distinct_unknown_attributes_stops_at_the_cap() -> None:
    data = worst_packet()
    assert len(data) == 65504 and stun.is_stun(data)
    with pytest.raises(StunError, match=f"more than {MAX_ATTRIBUTES} attributes"):
        stun.decode(data)
    # It used to run the loop 16,371 times (and search a growing list each time).
    assert opcodes(stun.decode, data) <= budget(MAX_ATTRIBUTES + 1)
    assert opcodes(stun.decode, data) <= 8 * opcodes(stun.decode, normal_request())


def test_16k_identical_attributes_stop_at_the_cap() -> None:
    data = raw([(0x7F01, b"")] * 16380)
    with pytest.raises(StunError, match="attributes"):
        stun.decode(data)
    assert opcodes(stun.decode, data) <= budget(MAX_ATTRIBUTES + 1)


def test_attribute_cap_is_exact_and_counts_every_attribute() -> None:
    unknown = [(0x7000 + i, b"") for i in range(MAX_ATTRIBUTES)]
    m = stun.decode(raw(unknown))
    assert m.unknown_required == tuple(0x7000 + i for i in range(MAX_ATTRIBUTES))
    with pytest.raises(StunError, match="attributes"):
        stun.decode(raw(unknown + [(0x7F00, b"")]))
    # Attributes ignored after MESSAGE-INTEGRITY, and FINGERPRINT, count too.
    tail = [(0x0008, bytes(20))] + [(0x7000 + i, b"") for i in range(MAX_ATTRIBUTES - 2)]
    assert stun.decode(raw(tail, fingerprint=True)).has_fingerprint
    with pytest.raises(StunError, match="attributes"):
        stun.decode(raw(tail + [(0x7F00, b"")], fingerprint=True))


def test_unknown_required_is_deduplicated_in_first_seen_order() -> None:
    attrs = [
        (0x7003, b""),
        (0x7001, b"x"),
        (0x7003, b""),
        (0xC0DE, b""),
        (0x7002, b""),
        (0x7001, b""),
    ]
    m = stun.decode(raw(attrs))
    assert m.unknown_required == (0x7003, 0x7001, 0x7002)
    assert len(m.other) == 6  # every raw attribute is kept


def test_duplicate_addresses_are_checked_but_first_wins() -> None:
    first = stun.encode_xor_address(("2001:db8::1", 5), TID)
    second = stun.encode_xor_address(("192.0.2.1", 6), TID)
    mapped = stun.encode_address(("192.0.2.9", 7))
    m = stun.decode(raw([(0x0020, first), (0x0020, second), (0x0001, mapped), (0x0001, mapped)]))
    assert m.xor_mapped_address == ("2001:db8::1", 5) and m.mapped_address == ("192.0.2.9", 7)
    # A malformed duplicate still fails the message, as it did when it was built.
    for bad in (b"\x00\x03" + bytes(6), bytes(7), b"\x00\x01" + bytes(18)):
        for attr_type in (0x0020, 0x0001):
            with pytest.raises(StunError):
                stun.decode(raw([(0x0020, first), (0x0001, mapped), (attr_type, bad)]))


# ------------------------------------------------------------------ codec: bounded work, always

# Pieces an attacker would stack: each (type, value) is repeated `count` times.
_xor6 = stun.encode_xor_address(("2001:db8::7", 9), TID)
PIECES = [
    ("distinct unknown", None, b""),
    ("same unknown", 0x7F01, b""),
    ("optional unknown", 0xC0FF, b"v" * 8),
    ("username", 0x0006, b"u" * 500),
    ("bad username", 0x0006, b"\xff" * 4),
    ("xor ipv6", 0x0020, _xor6),
    ("mapped ipv4", 0x0001, b"\x00\x01\x00\x05\xc0\x00\x02\x01"),
    ("error code", 0x0009, b"\x00\x00\x04\x01" + b"r" * 700),
    ("realm", 0x0014, b"r" * 700),
    ("peer address", 0x0012, _xor6),
    ("priority", 0x0024, b"\x00\x00\x00\x01"),
    ("integrity", 0x0008, bytes(20)),
    ("unknown-attributes", 0x000A, b"\x70\x01" * 40),
    ("big unknown", 0x7E00, b"b" * 2000),
]


# A recipe: up to four (piece, repeat count) pairs, the message type, and whether a valid
# FINGERPRINT closes it. The test builds the bytes (so a failure prints the recipe).
recipes = st.tuples(
    st.lists(
        st.tuples(st.sampled_from(range(len(PIECES))), st.integers(1, 20000)),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([0x0001, 0x0101, 0x0111]),
    st.booleans(),
)


def build(recipe: tuple[list[tuple[int, int]], int, bool]) -> tuple[bytes, int]:
    """The packet of a recipe (at most 64 KB) and the number of its attributes."""
    pieces, msg_type, fingerprint = recipe
    chunks: list[bytes] = []
    size = 20
    count = 0
    next_type = 0x0100
    for index, repeat in pieces:
        _, attr_type, value = PIECES[index]
        for _ in range(repeat):
            if attr_type is None:
                tlv = struct.pack(">HH", next_type, 0)
                next_type += 1
            else:
                tlv = struct.pack(">HH", attr_type, len(value)) + value + bytes(-len(value) % 4)
            if size + len(tlv) + 8 > 0xFFFF - 8:
                break
            chunks.append(tlv)
            size += len(tlv)
            count += 1
    body = b"".join(chunks)
    data = struct.pack(">HHI", msg_type, len(body), stun.MAGIC_COOKIE) + TID + body
    if fingerprint:
        data = data[:2] + struct.pack(">H", len(body) + 8) + data[4:]
        data += struct.pack(">HHI", 0x8028, 4, zlib.crc32(data) ^ FP_XOR)
        count += 1
    return data, count


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes)
def test_decode_work_is_bounded_on_adversarial_packets(
    recipe: tuple[list[tuple[int, int]], int, bool],
) -> None:
    """Work grows with the attributes walked, which are capped: per byte it only falls."""
    data, count = build(recipe)
    ops = opcodes(stun.decode, data)
    assert ops <= budget(count), (len(data), count, ops)
    # ...and the pre-checks an agent runs first are cheaper still.
    assert opcodes(stun.username_prefix, data) <= budget(count)
    assert opcodes(stun.fingerprint_ok, data) < 200
    assert opcodes(stun.read_header, data) < 200


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=300), st.booleans())
def test_prechecks_agree_with_decode(body: bytes, fingerprint: bool) -> None:
    body = body[: len(body) // 4 * 4]
    data = struct.pack(">HHI", 0x0001, len(body), stun.MAGIC_COOKIE) + TID + body
    if fingerprint:
        data = data[:2] + struct.pack(">H", len(body) + 8) + data[4:]
        data += struct.pack(">HHI", 0x8028, 4, zlib.crc32(data) ^ FP_XOR)
    _agree(data)


def _agree(data: bytes) -> None:
    header = stun.read_header(data)
    assert header is not None
    try:
        m = stun.decode(data)
    except StunError:
        return
    assert header == (int(m.method), m.message_class, m.transaction_id)
    if m.has_fingerprint:
        assert stun.fingerprint_ok(data)
    prefix = stun.username_prefix(data)
    if m.username is None:
        assert prefix is None
    else:
        assert prefix == m.username.encode().partition(b":")[0]


@pytest.mark.parametrize("username", [None, "", "ours", "ours:theirs", "a:b:c", "über:x"])
def test_prechecks_on_real_messages(username: str | None) -> None:
    msg = stun.Message(
        stun.Method.BINDING, stun.MessageClass.REQUEST, TID, username=username, priority=1
    )
    data = stun.encode(msg, integrity_key=b"k", fingerprint=True)
    assert stun.read_header(data) == (1, stun.MessageClass.REQUEST, TID)
    assert stun.fingerprint_ok(data)
    expected = None if username is None else username.encode().partition(b":")[0]
    assert stun.username_prefix(data) == expected
    assert not stun.fingerprint_ok(stun.encode(msg, integrity_key=b"k", fingerprint=False))
    tampered = bytearray(data)
    tampered[-1] ^= 1
    assert not stun.fingerprint_ok(bytes(tampered))


def test_prechecks_reject_bad_framing() -> None:
    assert stun.read_header(b"\x00\x01\x00\x00garbage") is None
    assert stun.read_header(b"\x00\x01\x00\x00" + bytes(16)) is None  # no magic cookie
    overrun = raw([(0x0006, b"abcd")])
    overrun = overrun[:22] + struct.pack(">H", 200) + overrun[24:]
    with pytest.raises(StunError):
        stun.username_prefix(overrun)
    with pytest.raises(StunError):
        stun.username_prefix(raw([(0x0006, b"u" * 520)]))
    with pytest.raises(StunError, match="attributes"):
        stun.username_prefix(raw([(0x7F01, b"")] * 100))
    # USERNAME after MESSAGE-INTEGRITY is ignored (RFC 5389 §15.4), as decode() does.
    assert stun.username_prefix(raw([(0x0008, bytes(20)), (0x0006, b"late:x")])) is None


# ------------------------------------------------------------------ the agent: cheap rejection


def connected(config: IceConfig | None = None) -> tuple[IceAgent, IceAgent, float]:
    """Two agents connected in memory (a controls); returns them and the virtual time."""
    a = IceAgent(controlling=True, rng=random.Random(1), config=config)
    b = IceAgent(controlling=False, rng=random.Random(2), config=config)
    now = 0.0
    a.add_base(A, now)
    b.add_base(B, now)
    a.set_remote_credentials(*b.local_credentials, now)
    b.set_remote_credentials(*a.local_credentials, now)
    a.gather(now)
    b.gather(now)
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates():
            y.add_remote_candidate(c.with_ufrag(x.local_credentials[0]), now)
    for _ in range(200):
        now = step(a, b, now, 0.01)
    assert a.state is IceTransportState.CONNECTED and b.state is IceTransportState.CONNECTED
    return a, b, now


def exchange(a: IceAgent, b: IceAgent, now: float) -> int:
    """Deliver what each agent queued for the other until quiet; returns datagrams moved."""
    moved, total = 1, 0
    while moved:
        moved = 0
        for x, y in ((a, b), (b, a)):
            for tx in x.datagrams_to_send():
                if tx.remote == (y.bases[0] if y.bases else None):
                    y.receive(tx.data, tx.remote, tx.local, now)
                    moved += 1
        total += moved
    while a.next_event() or b.next_event():
        pass
    return total


def step(a: IceAgent, b: IceAgent, now: float, dt: float) -> float:
    now += dt
    for agent in (a, b):
        timer = agent.get_timer()
        if timer is not None and timer.at <= now:
            agent.handle_timer(now)
    exchange(a, b, now)
    return now


def request(
    username: str | None, key: bytes | None, *, fingerprint: bool = True, tid: bytes = TID
) -> bytes:
    msg = stun.Message(
        stun.Method.BINDING,
        stun.MessageClass.REQUEST,
        tid,
        username=username,
        priority=1,
        ice_controlled=7,
    )
    return stun.encode(msg, integrity_key=key, fingerprint=fingerprint)


def snapshot(agent: IceAgent) -> tuple[object, ...]:
    pair = agent.selected_pair
    assert pair is not None
    return (agent.state, pair, pair.state, pair.last_consent, len(agent.pairs()), agent.get_timer())


def junk_cases(b: IceAgent) -> dict[str, tuple[bytes, str, int | None]]:
    """Each stranger datagram, the counter naming the stage that drops it, the reply code."""
    ufrag = b.local_credentials[0]
    wrong_key = b"0123456789abcdef01234567"
    tampered = bytearray(request(f"{ufrag}:x", wrong_key))
    tampered[-1] ^= 0xFF
    response = stun.encode(
        stun.Message(stun.Method.BINDING, stun.MessageClass.SUCCESS, bytes(12)),
        integrity_key=wrong_key,
    )
    indication = stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.INDICATION, TID))
    allocate = stun.encode(stun.Message(stun.Method.ALLOCATE, stun.MessageClass.REQUEST, TID))
    return {
        "bad header": (b"\x00\x01\x00\x04" + bytes(20), "stun_malformed", None),
        "oversize (the issue's 64 KB packet)": (worst_packet(), "stun_oversize", None),
        "no fingerprint": (
            request(f"{ufrag}:x", wrong_key, fingerprint=False),
            "stun_bad_fingerprint",
            None,
        ),
        "wrong fingerprint": (bytes(tampered), "stun_bad_fingerprint", None),
        "bad framing behind a good fingerprint": (
            raw([(0x7F01, b"")] * 40, fingerprint=True),
            "stun_malformed",
            None,
        ),
        "no username": (request(None, wrong_key), "stun_no_username", 400),
        "unknown ufrag": (request("nobodyHere:x", wrong_key), "stun_unknown_ufrag", 401),
        "response to no transaction": (response, "stun_unknown_transaction", None),
        "indication": (indication, "stun_indication", None),
        "other method": (allocate, "stun_unexpected_method", None),
        "our ufrag, no integrity": (request(f"{ufrag}:x", None), "stun_no_integrity", 400),
        "our ufrag, wrong integrity": (request(f"{ufrag}:x", wrong_key), "stun_bad_integrity", 401),
    }


JUNK = list(junk_cases(IceAgent(controlling=False, rng=random.Random(0))))


@pytest.mark.parametrize("case", JUNK)
def test_stranger_junk_is_dropped_at_the_cheapest_stage(case: str) -> None:
    a, b, now = connected()
    data, counter, code = junk_cases(b)[case]
    before = snapshot(b)
    checked = b.counters["stun_integrity_checked"]  # the genuine checks so far
    assert b.receive(data, B, STRANGER, now) is None
    assert b.counters[counter] == 1, dict(b.counters)
    # Only a request that names our ufrag (and has MESSAGE-INTEGRITY) reaches the HMAC.
    hmac_runs = b.counters["stun_integrity_checked"] - checked
    assert hmac_runs == int(case == "our ufrag, wrong integrity")
    out = b.datagrams_to_send()
    if code is None:
        assert out == []
    else:
        ((tx,),) = (out,)
        reply = stun.decode(tx.data)
        assert tx.remote == STRANGER and reply.error_code is not None
        assert reply.error_code[0] == code and not reply.has_integrity  # RFC 5389 §10.1.2
        assert reply.transaction_id == stun.decode(data).transaction_id
        assert b.counters[f"stun_rejected_{code}"] == 1
    assert snapshot(b) == before and b.next_event() is None


def test_the_genuine_peer_is_silently_ignored_without_fingerprint() -> None:
    # RFC 8445 §7.2.2/§7.3: checks carry FINGERPRINT; RFC 5389 §7.3: discard silently.
    a, b, now = connected()
    ufrag, pwd = b.local_credentials
    data = request(f"{ufrag}:{a.local_credentials[0]}", stun.short_term_key(pwd), fingerprint=False)
    b.receive(data, B, A, now)
    assert b.datagrams_to_send() == [] and b.counters["stun_bad_fingerprint"] == 1
    # The same check with FINGERPRINT is answered.
    b.receive(request(f"{ufrag}:{a.local_credentials[0]}", stun.short_term_key(pwd)), B, A, now)
    ((tx,),) = (b.datagrams_to_send(),)
    assert stun.decode(tx.data).message_class is stun.MessageClass.SUCCESS


def test_error_replies_to_strangers_are_rate_limited() -> None:
    config = IceConfig(error_reply_rate=10.0, error_reply_burst=5)
    a, b, now = connected(config)
    junk = [request(f"stranger{i:04d}:x", b"k", tid=i.to_bytes(12, "big")) for i in range(1000)]
    sent_bytes = 0
    for data in junk:
        b.receive(data, B, STRANGER, now)
    replies = b.datagrams_to_send()
    assert len(replies) == 5  # the burst
    sent_bytes += sum(len(tx.data) for tx in replies)
    assert b.counters["stun_unknown_ufrag"] == 1000
    assert (
        b.counters["stun_rejected_401"] == 5 and b.counters["stun_error_reply_rate_limited"] == 995
    )
    # Two seconds later: 20 more tokens, capped at the burst of 5.
    for data in junk:
        b.receive(data, B, STRANGER, now + 2.0)
    replies = b.datagrams_to_send()
    assert len(replies) == 5
    sent_bytes += sum(len(tx.data) for tx in replies)
    # 150 ms later: one and a half tokens.
    for data in junk[:50]:
        b.receive(data, B, STRANGER, now + 2.15)
    replies = b.datagrams_to_send()
    assert len(replies) == 1
    sent_bytes += sum(len(tx.data) for tx in replies)
    # No reflection beyond the bucket: 2,050 requests, 11 replies of 48 bytes.
    assert sent_bytes == 11 * 48


def test_silent_to_strangers_when_the_budget_is_zero() -> None:
    a, b, now = connected(IceConfig(error_reply_rate=0.0, error_reply_burst=0))
    for case, (data, _, _) in junk_cases(b).items():
        b.receive(data, B, STRANGER, now + 100.0)
        assert b.datagrams_to_send() == [], case
    assert b.counters["stun_error_reply_rate_limited"] == 4


def test_authenticated_errors_are_not_rate_limited() -> None:
    a, b, now = connected(IceConfig(error_reply_rate=0.0, error_reply_burst=0))
    ufrag, pwd = b.local_credentials
    key = stun.short_term_key(pwd)
    user = f"{ufrag}:{a.local_credentials[0]}"
    unknown = stun.Message(
        stun.Method.BINDING, stun.MessageClass.REQUEST, TID, username=user, priority=1,
        ice_controlling=a.tie_breaker, other=[(0x7F01, b"")],
    )  # fmt: skip
    no_priority = stun.Message(
        stun.Method.BINDING, stun.MessageClass.REQUEST, TID, username=user, ice_controlling=1
    )
    for msg, code in ((unknown, 420), (no_priority, 400)):
        b.receive(stun.encode(msg, integrity_key=key), B, A, now)
        ((tx,),) = (b.datagrams_to_send(),)
        reply = stun.decode(tx.data)
        assert reply.error_code is not None and reply.error_code[0] == code
    assert b.counters["stun_error_reply_rate_limited"] == 0


def test_a_flood_leaves_the_selected_pair_and_consent_alone() -> None:
    """40 virtual seconds (past the 30 s consent timeout) with 200 junk datagrams every 10 ms."""
    a, b, now = connected()
    pair_a, pair_b = a.selected_pair, b.selected_pair
    assert pair_a is not None and pair_b is not None
    consent_before = pair_a.consent_requests_sent
    cases = [data for data, _, _ in junk_cases(b).values()] + [
        data for data, _, _ in junk_cases(a).values()
    ]
    start = now
    states = set()
    for _ in range(4000):
        for agent, base in ((a, A), (b, B)):
            for data in cases:
                agent.receive(data, base, STRANGER, now)
        now = step(a, b, now, 0.01)
        states |= {a.state, b.state}
    assert states <= {IceTransportState.CONNECTED, IceTransportState.COMPLETED}
    assert (a.selected_pair, b.selected_pair) == (pair_a, pair_b)
    assert not pair_a.consent_revoked and pair_a.last_consent is not None
    assert now - pair_a.last_consent < 2 * a.config.keepalive
    assert pair_a.consent_requests_sent - consent_before >= 30
    # Error replies to strangers stayed within the bucket: burst + rate x duration.
    limit = b.config.error_reply_burst + b.config.error_reply_rate * (now - start)
    rejected = sum(b.counters[f"stun_rejected_{c}"] for c in (400, 401))
    assert rejected <= limit
    assert b.counters["stun_error_reply_rate_limited"] > 0


# ------------------------------------------------------------------ the bucket itself


def test_token_bucket() -> None:
    bucket = TokenBucket()
    assert [bucket.take(0.0, 2.0, 3) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4, 2.0, 3) is False  # 0.8 of a token
    assert bucket.take(0.5, 2.0, 3) is True
    assert [bucket.take(100.0, 2.0, 3) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(50.0, 2.0, 3) is False  # a clock stepping back refills nothing
    assert TokenBucket().take(0.0, 100.0, 0) is False


@pytest.mark.parametrize(
    "config",
    [{"error_reply_rate": -1.0}, {"error_reply_burst": -1}, {"max_stun_size": 19}],
)
def test_bad_limits_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IceConfig(**config).validate()
