"""Property tests for the STUN codec: hostile bytes raise only StunError, valid ones round trip.

Three sources of input: random bytes, random attribute bodies behind a valid header (so
the attribute parser is reached), and valid encoded messages mutated by bit flips,
truncation, insertion and length-field edits.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbroken.stun import (
    AttributeType,
    Message,
    MessageClass,
    Method,
    StunError,
    check_integrity,
    decode,
    encode,
    encode_xor_address,
    is_stun,
)

# Generating whole messages dominates the run time, so those tests get fewer examples.
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_MESSAGES = settings(FUZZ, max_examples=500)
KNOWN = frozenset(int(t) for t in AttributeType)

addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 0xFFFF)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 0xFFFF)),
)
unknown_types = st.integers(0, 0xFFFF).filter(lambda t: t not in KNOWN)


@st.composite
def other_attributes(draw: st.DrawFn, tid: bytes) -> list[tuple[int, bytes]]:
    """Attributes for `other`: unknown ones with any value, known TURN ones well formed."""
    pieces = st.one_of(
        st.tuples(unknown_types, st.binary(max_size=40)),
        st.tuples(st.just(int(AttributeType.DATA)), st.binary(max_size=40)),
        st.tuples(st.just(int(AttributeType.LIFETIME)), st.binary(min_size=4, max_size=4)),
        st.tuples(st.just(int(AttributeType.NOMINATION)), st.binary(min_size=4, max_size=4)),
        st.tuples(st.just(int(AttributeType.DONT_FRAGMENT)), st.just(b"")),
        st.tuples(
            st.sampled_from(
                [AttributeType.XOR_PEER_ADDRESS, AttributeType.XOR_RELAYED_ADDRESS]
            ).map(int),
            addresses.map(lambda a: encode_xor_address(a, tid)),
        ),
        st.tuples(
            st.just(int(AttributeType.REALM)), st.text(max_size=40).map(lambda t: t.encode())
        ),
    )
    return draw(st.lists(pieces, max_size=4))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Any valid Message, every field optional."""
    tid = draw(st.binary(min_size=12, max_size=12))
    opt = st.none
    return Message(
        method=draw(st.one_of(st.sampled_from(Method), st.integers(0, 0xFFF))),
        message_class=draw(st.sampled_from(MessageClass)),
        transaction_id=tid,
        username=draw(st.one_of(opt(), st.text(max_size=40))),
        priority=draw(st.one_of(opt(), st.integers(0, 2**32 - 1))),
        use_candidate=draw(st.booleans()),
        ice_controlling=draw(st.one_of(opt(), st.integers(0, 2**64 - 1))),
        ice_controlled=draw(st.one_of(opt(), st.integers(0, 2**64 - 1))),
        xor_mapped_address=draw(st.one_of(opt(), addresses)),
        mapped_address=draw(st.one_of(opt(), addresses)),
        error_code=draw(st.one_of(opt(), st.tuples(st.integers(300, 699), st.text(max_size=60)))),
        unknown_attributes=tuple(draw(st.lists(st.integers(0, 0xFFFF), max_size=5))),
        software=draw(st.one_of(opt(), st.text(max_size=127))),
        other=draw(other_attributes(tid)),
    )


keys = st.one_of(st.none(), st.binary(min_size=1, max_size=32))


def _decode_or_none(data: bytes) -> Message | None:
    """decode(), asserting that the only failure is StunError (any other escapes)."""
    try:
        return decode(data)
    except StunError:
        return None


def _check_consistent(data: bytes) -> None:
    """Whatever decode() accepts is STUN to is_stun() and re-encodes to a fixpoint."""
    looks_like_stun = is_stun(data)
    assert isinstance(looks_like_stun, bool)
    m = _decode_or_none(data)
    if m is None:
        return
    assert looks_like_stun
    assert m.raw == data
    again = decode(encode(m, fingerprint=False))
    assert again == m


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _check_consistent(data)


@FUZZ
@given(
    st.integers(0, 0x3FFF),
    st.binary(min_size=12, max_size=12),
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(sorted(KNOWN)), st.integers(0, 0xFFFF)),
            st.binary(max_size=24),
            st.integers(-2, 2),
        ),
        max_size=6,
    ),
)
def test_random_attributes_behind_a_valid_header(
    msg_type: int, tid: bytes, attrs: list[tuple[int, bytes, int]]
) -> None:
    """Reach the attribute parser: valid header, TLVs whose length may lie by a little."""
    body = b""
    for attr_type, value, lie in attrs:
        alen = max(0, min(0xFFFF, len(value) + lie))
        body += struct.pack(">HH", attr_type, alen) + value + b"\x00" * (-len(value) % 4)
    body += b"\x00" * (-len(body) % 4)
    data = struct.pack(">HHI", msg_type, len(body), 0x2112A442) + tid + body
    assert is_stun(data)
    _check_consistent(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoded message, then a few bit flips, cuts, insertions or length edits."""
    message = draw(messages())
    data = bytearray(encode(message, integrity_key=draw(keys), fingerprint=draw(st.booleans())))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header_length", "attr_length"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "header_length" and len(data) >= 4:
            length = draw(st.one_of(st.integers(0, 0xFFFF), st.just(max(0, len(data) - 20))))
            data[2:4] = struct.pack(">H", length)
        elif kind == "attr_length" and len(data) >= 24:
            i = draw(st.integers(20, len(data) - 4))
            data[i + 2 : i + 4] = struct.pack(">H", draw(st.integers(0, 0xFFFF)))
    # Half the time, repair the header length so the damage reaches the attributes.
    if draw(st.booleans()) and len(data) >= 20:
        data[2:4] = struct.pack(">H", (len(data) - 20) & 0xFFFF)
    return bytes(data)


@FUZZ_MESSAGES
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    _check_consistent(data)


@FUZZ_MESSAGES
@given(messages(), keys, st.booleans())
def test_round_trip(message: Message, key: bytes | None, fingerprint: bool) -> None:
    data = encode(message, integrity_key=key, fingerprint=fingerprint)
    assert is_stun(data)
    decoded = decode(data)
    assert decoded == message
    assert decoded.has_fingerprint == fingerprint
    assert decoded.has_integrity == (key is not None)
    assert decoded.unknown_required == tuple(
        dict.fromkeys(t for t, _ in message.other if t < 0x8000 and t not in KNOWN)
    )
    if key is not None:
        assert check_integrity(decoded, key)
        # (Not key + b"\0": HMAC zero-pads keys, so trailing zeros give the same key.)
        assert not check_integrity(decoded, bytes([key[0] ^ 1]) + key[1:])
    else:
        assert not check_integrity(decoded, b"k")


@FUZZ
@given(st.one_of(st.binary(max_size=64), st.builds(bytearray, st.binary(max_size=64))))
def test_is_stun_never_raises(data: bytes) -> None:
    assert is_stun(data) in (True, False)
    assert is_stun(memoryview(data)) == is_stun(data)
