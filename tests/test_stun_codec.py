"""STUN codec: RFC 5769 test vectors, attribute round trips, integrity, fingerprint, errors."""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib

import pytest

from unbroken.stun import (
    AttributeType,
    Message,
    MessageClass,
    Method,
    StunError,
    check_integrity,
    decode,
    decode_xor_address,
    encode,
    encode_xor_address,
    error_response,
    is_stun,
    long_term_key,
    saslprep,
    short_term_key,
    success_response,
)

COOKIE = b"\x21\x12\xa4\x42"
TID = bytes(range(1, 13))


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 §2.1-§2.4, byte for byte. The padding of text attributes is 0x20 on purpose
# (RFC 5769 §2: "to check that the receiver ignores the padding").
PASSWORD_5769 = "VOkJxbRl1RmTxUk/WvJxBt"
REQUEST_5769 = _hex(
    """
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf
    """
)
RESPONSE_IPV4_5769 = _hex(
    """
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96
    """
)
RESPONSE_IPV6_5769 = _hex(
    """
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c
    """
)
LONG_TERM_REQUEST_5769 = _hex(
    """
    00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
    00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46
                 53 54 76 79  36 34 73 41
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66
    """
)
TID_5769 = _hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")


def _raw(
    msg_type: int,
    attrs: list[tuple[int, bytes]],
    *,
    tid: bytes = TID,
    pad: bytes = b"\x00",
    length: int | None = None,
) -> bytes:
    """Build a message by hand (independent of encode()): no MI, no FINGERPRINT."""
    body = b""
    for attr_type, value in attrs:
        body += struct.pack(">HH", attr_type, len(value)) + value + pad * (-len(value) % 4)
    n = len(body) if length is None else length
    return struct.pack(">HH", msg_type, n) + COOKIE + tid + body


def _with_fingerprint(data: bytes) -> bytes:
    """Append a FINGERPRINT computed here, from RFC 5389 §15.5 directly."""
    head = data[:2] + struct.pack(">H", len(data) - 20 + 8) + data[4:]
    crc = zlib.crc32(head) ^ 0x5354554E
    return head + struct.pack(">HHI", 0x8028, 4, crc)


def _with_integrity(data: bytes, key: bytes) -> bytes:
    """Append a MESSAGE-INTEGRITY computed here, from RFC 5389 §15.4 directly."""
    head = data[:2] + struct.pack(">H", len(data) - 20 + 24) + data[4:]
    return head + struct.pack(">HH", 0x0008, 20) + hmac.new(key, head, hashlib.sha1).digest()


def _zero_padding(data: bytes) -> bytes:
    """`data` with every attribute's padding bytes set to zero."""
    out = bytearray(data)
    pos = 20
    while pos < len(data):
        _, alen = struct.unpack_from(">HH", data, pos)
        end = pos + 4 + alen
        nxt = pos + 4 + (alen + 3) // 4 * 4
        out[end:nxt] = bytes(nxt - end)
        pos = nxt
    return bytes(out)


# --- RFC 5769 ---------------------------------------------------------------------------


def test_5769_sample_request() -> None:
    m = decode(REQUEST_5769)
    assert m.method == Method.BINDING
    assert m.message_class == MessageClass.REQUEST
    assert m.transaction_id == TID_5769
    assert m.software == "STUN test client"
    assert m.priority == 0x6E0001FF
    assert m.ice_controlled == 0x932FF9B151263B36
    assert m.ice_controlling is None
    assert m.username == "evtj:h6vY"
    assert m.has_integrity and m.has_fingerprint
    assert m.other == [] and m.unknown_required == ()
    assert check_integrity(m, short_term_key(PASSWORD_5769))
    assert not check_integrity(m, short_term_key(PASSWORD_5769 + "x"))


def test_5769_ipv4_response() -> None:
    m = decode(RESPONSE_IPV4_5769)
    assert (m.method, m.message_class) == (Method.BINDING, MessageClass.SUCCESS)
    assert m.transaction_id == TID_5769
    assert m.software == "test vector"
    assert m.xor_mapped_address == ("192.0.2.1", 32853)
    assert check_integrity(m, short_term_key(PASSWORD_5769))
    assert not check_integrity(m, b"wrong")


def test_5769_ipv6_response() -> None:
    m = decode(RESPONSE_IPV6_5769)
    assert m.software == "test vector"
    assert m.xor_mapped_address == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert check_integrity(m, short_term_key(PASSWORD_5769))
    assert not check_integrity(m, b"wrong")


def test_5769_long_term_request() -> None:
    m = decode(LONG_TERM_REQUEST_5769)
    assert m.username == "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    assert m.find(AttributeType.NONCE) == b"f//499k954d6OL34oL9FSTvy64sA"
    assert m.find(AttributeType.REALM) == b"example.org"
    assert m.has_integrity and not m.has_fingerprint
    # The password needs SASLprep: U+00AD vanishes, U+00AA and U+2168 are NFKC-mapped.
    password = "The\u00adM\u00aatr\u2168"
    assert saslprep(password) == "TheMatrIX"
    key = long_term_key(m.username, "example.org", password)
    assert check_integrity(m, key)
    assert not check_integrity(m, long_term_key(m.username, "example.org", "TheMatrix"))


@pytest.mark.parametrize(
    ("vector", "key", "fingerprint"),
    [
        (REQUEST_5769, short_term_key(PASSWORD_5769), True),
        (RESPONSE_IPV4_5769, short_term_key(PASSWORD_5769), True),
        (RESPONSE_IPV6_5769, short_term_key(PASSWORD_5769), True),
    ],
)
def test_5769_encode_matches_vector(vector: bytes, key: bytes, fingerprint: bool) -> None:
    """Re-encoding a vector gives the vector's bytes, except that we pad with zeros.

    The expected MESSAGE-INTEGRITY and FINGERPRINT over the zero-padded prefix are
    computed in this test straight from the RFC rules, not with the codec.
    """
    m = decode(vector)
    encoded = encode(m, integrity_key=key, fingerprint=fingerprint)
    mi_at = m.integrity_offset
    prefix = _zero_padding(vector[:mi_at])
    prefix = prefix[:2] + struct.pack(">H", mi_at - 20) + prefix[4:]
    expected = _with_fingerprint(_with_integrity(prefix, key))
    assert encoded == expected
    assert len(encoded) == len(vector)


def test_5769_long_term_encode_matches_vector() -> None:
    m = decode(LONG_TERM_REQUEST_5769)
    key = long_term_key(m.username or "", "example.org", "TheMatrIX")
    # This vector already pads with zeros, so the whole message must match exactly.
    assert encode(m, integrity_key=key, fingerprint=False) == LONG_TERM_REQUEST_5769


def test_5769_padding_is_ignored() -> None:
    """Changing the padding bytes changes neither the decoded values nor framing."""
    zeroed = _zero_padding(REQUEST_5769[:-8])  # without FINGERPRINT, which covers padding
    zeroed = zeroed[:2] + struct.pack(">H", len(zeroed) - 20) + zeroed[4:]
    assert zeroed != REQUEST_5769[:-8]
    assert decode(REQUEST_5769) == decode(zeroed)


# --- header and message type --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "cls", "wire"),
    [
        (Method.BINDING, MessageClass.REQUEST, 0x0001),
        (Method.BINDING, MessageClass.INDICATION, 0x0011),
        (Method.BINDING, MessageClass.SUCCESS, 0x0101),
        (Method.BINDING, MessageClass.ERROR, 0x0111),
        (Method.ALLOCATE, MessageClass.REQUEST, 0x0003),
        (Method.ALLOCATE, MessageClass.ERROR, 0x0113),
        (Method.SEND, MessageClass.INDICATION, 0x0016),
        (Method.DATA, MessageClass.INDICATION, 0x0017),
        (Method.CHANNEL_BIND, MessageClass.SUCCESS, 0x0109),
        (0xFFF, MessageClass.REQUEST, 0x3EEF),
        (0xFFF, MessageClass.ERROR, 0x3FFF),
        (0x080, MessageClass.REQUEST, 0x0200),
        (0x010, MessageClass.REQUEST, 0x0020),
    ],
)
def test_message_type_bits(method: int, cls: MessageClass, wire: int) -> None:
    data = encode(Message(method, cls, TID), fingerprint=False)
    assert data == struct.pack(">HH", wire, 0) + COOKIE + TID
    m = decode(data)
    assert (m.method, m.message_class) == (method, cls)


def test_unknown_method_decodes_as_int() -> None:
    m = decode(_raw(0x0002, []))
    assert m.method == 2 and not isinstance(m.method, Method)
    assert isinstance(decode(_raw(0x0001, [])).method, Method)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 19,
        _raw(0x0001, [])[:19],
        b"\x40" + _raw(0x0001, [])[1:],  # top bit set
        b"\x80" + _raw(0x0001, [])[1:],
        _raw(0x0001, [])[:4] + b"\x21\x12\xa4\x43" + TID,  # bad cookie
        _raw(0x0001, [], length=4),  # length says more than there is
        _raw(0x0001, [(0x8030, b"abcd")], length=0),  # length says less
        _raw(0x0001, [(0x8030, b"abcd")]) + b"\x00\x00",  # length not a multiple of 4
        _raw(0x0001, [], length=2) + b"\x00\x00",
    ],
)
def test_bad_headers(data: bytes) -> None:
    assert not is_stun(data)
    with pytest.raises(StunError):
        decode(data)


def test_truncated_messages() -> None:
    m = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TID,
        username="a:b",
        priority=1,
        ice_controlling=2,
        use_candidate=True,
    )
    data = encode(m, integrity_key=b"k")
    # Attribute boundaries: header, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, USERNAME, MI.
    boundaries = {20, 28, 40, 44, 52, 76}
    for n in range(len(data)):
        with pytest.raises(StunError):
            decode(data[:n])
        # With its length field fixed up, a truncated datagram is either a valid
        # message cut at an attribute boundary (losing FINGERPRINT), or rejected.
        if n >= 20:
            fixed = data[:2] + struct.pack(">H", n - 20) + data[4:n]
            if n in boundaries:
                assert not decode(fixed).has_fingerprint
            else:
                with pytest.raises(StunError):
                    decode(fixed)
    assert decode(data) == m


# --- attributes ---------------------------------------------------------------------------

REQ = (Method.BINDING, MessageClass.REQUEST, TID)


@pytest.mark.parametrize(
    "message",
    [
        Message(*REQ),
        Message(*REQ, username="evtj:h6vY"),
        Message(*REQ, username=""),
        Message(*REQ, username="x" * 256 + ":" + "y" * 256),  # 513 bytes, max ICE ufrags
        Message(*REQ, username="\u30de\u30c8\u30ea\u30c3\u30af\u30b9"),
        Message(*REQ, priority=0),
        Message(*REQ, priority=0xFFFFFFFF),
        Message(*REQ, use_candidate=True),
        Message(*REQ, ice_controlling=0xFFFFFFFFFFFFFFFF),
        Message(*REQ, ice_controlled=0),
        Message(*REQ, ice_controlling=1, ice_controlled=2),
        Message(*REQ, xor_mapped_address=("192.0.2.1", 32853)),
        Message(*REQ, xor_mapped_address=("0.0.0.0", 0)),
        Message(*REQ, xor_mapped_address=("2001:db8::1", 65535)),
        Message(*REQ, xor_mapped_address=("::", 1)),
        Message(*REQ, mapped_address=("10.0.0.1", 3478)),
        Message(*REQ, mapped_address=("fe80::1", 9)),
        Message(Method.BINDING, MessageClass.ERROR, TID, error_code=(300, "Try Alternate")),
        Message(Method.BINDING, MessageClass.ERROR, TID, error_code=(487, "Role Conflict")),
        Message(Method.BINDING, MessageClass.ERROR, TID, error_code=(699, "")),
        Message(Method.BINDING, MessageClass.ERROR, TID, error_code=(401, "\u00e9" * 127)),
        Message(*REQ, unknown_attributes=(0x0030,)),
        Message(*REQ, unknown_attributes=(0x0030, 0x7FFF, 0x0001)),
        Message(*REQ, software="unbroken 0.1"),
        Message(*REQ, software="s" * 763),
        Message(*REQ, other=[(AttributeType.LIFETIME, b"\x00\x00\x02\x58")]),
        Message(*REQ, other=[(AttributeType.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")]),
        Message(*REQ, other=[(AttributeType.CHANNEL_NUMBER, b"\x40\x00\x00\x00")]),
        Message(*REQ, other=[(AttributeType.DATA, b"hello, world")]),
        Message(*REQ, other=[(AttributeType.DATA, b"")]),
        Message(*REQ, other=[(AttributeType.DONT_FRAGMENT, b"")]),
        Message(*REQ, other=[(AttributeType.EVEN_PORT, b"\x80")]),
        Message(*REQ, other=[(AttributeType.RESERVATION_TOKEN, b"12345678")]),
        Message(*REQ, other=[(AttributeType.NOMINATION, b"\x00\x00\x00\x05")]),
        Message(*REQ, other=[(AttributeType.REALM, b"example.org")]),
        Message(*REQ, other=[(AttributeType.NONCE, b"f//499k954d6OL34oL9FSTvy64sA")]),
        Message(
            *REQ,
            other=[
                (AttributeType.XOR_PEER_ADDRESS, encode_xor_address(("192.0.2.7", 4000), TID)),
                (AttributeType.XOR_PEER_ADDRESS, encode_xor_address(("2001:db8::7", 4001), TID)),
                (
                    AttributeType.XOR_RELAYED_ADDRESS,
                    encode_xor_address(("203.0.113.1", 50000), TID),
                ),
            ],
        ),
        Message(*REQ, other=[(0x8FFF, b"optional"), (0xC057, b"\x00\x01\x00\x0a")]),
    ],
    ids=repr,
)
@pytest.mark.parametrize("key", [None, b"secret"])
@pytest.mark.parametrize("fingerprint", [False, True])
def test_round_trip(message: Message, key: bytes | None, fingerprint: bool) -> None:
    data = encode(message, integrity_key=key, fingerprint=fingerprint)
    assert is_stun(data)
    assert len(data) % 4 == 0
    decoded = decode(data)
    assert decoded == message
    assert decoded.raw == data
    assert decoded.has_integrity == (key is not None)
    assert decoded.has_fingerprint == fingerprint
    assert decoded.unknown_required == ()
    if key is not None:
        assert check_integrity(decoded, key)
        assert not check_integrity(decoded, key + b"x")
    else:
        assert not check_integrity(decoded, b"secret")


def test_everything_at_once() -> None:
    m = Message(
        Method.BINDING,
        MessageClass.SUCCESS,
        TID,
        username="u:v",
        priority=7,
        use_candidate=True,
        ice_controlling=3,
        ice_controlled=4,
        xor_mapped_address=("2001:db8::5", 5),
        mapped_address=("192.0.2.5", 6),
        error_code=(420, "Unknown Attribute"),
        unknown_attributes=(0x0031,),
        software="sw",
        other=[(AttributeType.LIFETIME, b"\x00\x00\x00\x01"), (0x8123, b"z")],
    )
    decoded = decode(encode(m, integrity_key=b"k"))
    assert decoded == m
    assert check_integrity(decoded, b"k")


def test_xor_address_bytes() -> None:
    """XOR-MAPPED-ADDRESS layout from RFC 5769 §2.2/§2.3, through the helpers."""
    assert encode_xor_address(("192.0.2.1", 32853), TID_5769) == _hex("0001a147 e112a643")
    v6 = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    value = _hex("0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9")
    assert encode_xor_address(v6, TID_5769) == value
    assert decode_xor_address(value, TID_5769) == v6
    with pytest.raises(StunError):
        decode_xor_address(value[:8], TID_5769)


def test_mapped_address_bytes() -> None:
    data = encode(Message(*REQ, mapped_address=("192.0.2.1", 32853)), fingerprint=False)
    assert data[20:] == _hex("0001 0008 0001 8055 c0000201")


def test_text_padding_and_lengths() -> None:
    data = encode(Message(*REQ, username="abcde"), fingerprint=False)
    assert data[20:] == _hex("0006 0005 6162636465 000000")
    data = encode(
        Message(Method.BINDING, MessageClass.ERROR, TID, error_code=(401, "x")), fingerprint=False
    )
    assert data[20:] == _hex("0009 0005 00000401 78 000000")


def test_duplicates_first_wins() -> None:
    data = _raw(
        0x0001,
        [
            (0x0006, b"first"),
            (0x0006, b"second"),
            (0x0024, struct.pack(">I", 1)),
            (0x0024, struct.pack(">I", 2)),
            (0x0012, encode_xor_address(("192.0.2.1", 1), TID)),
            (0x0012, encode_xor_address(("192.0.2.2", 2), TID)),
        ],
    )
    m = decode(data)
    assert m.username == "first"
    assert m.priority == 1
    # Attributes kept raw in `other` are all kept (CreatePermission may carry several).
    peers = [decode_xor_address(v, TID) for v in m.find_all(AttributeType.XOR_PEER_ADDRESS)]
    assert peers == [("192.0.2.1", 1), ("192.0.2.2", 2)]


@pytest.mark.parametrize(
    "attrs",
    [
        [(0x0001, b"\x00\x03\x00\x01" + bytes(4))],  # family 3
        [(0x0001, b"\x00\x01\x00\x01" + bytes(16))],  # IPv4 family, IPv6 length
        [(0x0001, b"\x00\x02\x00\x01" + bytes(4))],  # IPv6 family, IPv4 length
        [(0x0020, b"\x00\x01\x00\x01")],
        [(0x0020, b"")],
        [(0x0006, b"u" * 514)],
        [(0x0006, b"\xff\xfe")],  # not UTF-8
        [(0x0006, b"\xed\xa0\x80")],  # an encoded surrogate is not UTF-8
        [(0x0024, b"\x00\x00\x01")],
        [(0x0024, b"\x00\x00\x00\x00\x01")],
        [(0x0025, b"\x00")],
        [(0x8029, bytes(4))],
        [(0x802A, bytes(9))],
        [(0x0009, b"\x00\x00\x02\x00")],  # class 2
        [(0x0009, b"\x00\x00\x07\x00")],  # class 7
        [(0x0009, b"\x00\x00\x04\x64")],  # number 100
        [(0x0009, b"\x00\x00\x04")],  # too short
        [(0x0009, b"\x00\x00\x04\x01\xc3")],  # reason not UTF-8
        [(0x0009, b"\x00\x00\x04\x01" + b"r" * 764)],
        [(0x000A, b"\x00\x01\x00")],  # odd
        [(0x8022, b"s" * 764)],
        [(0x8022, b"\x80")],
        [(0x0008, bytes(19))],  # MESSAGE-INTEGRITY of the wrong size
        [(0x8028, bytes(8))],  # FINGERPRINT of the wrong size
        [(0x8028, bytes(4))],  # FINGERPRINT wrong
        [(0x000D, bytes(3))],  # LIFETIME
        [(0x000C, bytes(2))],  # CHANNEL-NUMBER
        [(0x0019, bytes(5))],  # REQUESTED-TRANSPORT
        [(0x001A, b"\x00")],  # DONT-FRAGMENT
        [(0x0012, b"\x00\x05" + bytes(6))],  # XOR-PEER-ADDRESS family 5
        [(0x0016, bytes(7))],  # XOR-RELAYED-ADDRESS
        [(0x0014, b"\xc3\x28")],  # REALM not UTF-8
        [(0x0015, b"n" * 764)],  # NONCE too long
        [(0xC001, bytes(3))],  # NOMINATION
    ],
)
def test_malformed_attribute_values(attrs: list[tuple[int, bytes]]) -> None:
    data = _raw(0x0001, attrs)
    assert is_stun(data)  # the cheap check does not look inside
    with pytest.raises(StunError):
        decode(data)


def test_attribute_overruns() -> None:
    good = _raw(0x0001, [(0x0006, b"abcd")])
    # Attribute length pointing past the end, with the header length still consistent.
    bad = bytearray(good)
    bad[22:24] = struct.pack(">H", 5)
    with pytest.raises(StunError):
        decode(bytes(bad))
    bad[22:24] = struct.pack(">H", 0xFFFF)
    with pytest.raises(StunError):
        decode(bytes(bad))
    # Value fits but its padding does not.
    no_pad = struct.pack(">HH", 0x0001, 8) + COOKIE + TID + struct.pack(">HH", 0x8030, 3) + b"abcd"
    assert decode(no_pad).other == [(0x8030, b"abc")]
    short = struct.pack(">HH", 0x0001, 8) + COOKIE + TID + struct.pack(">HH", 0x8030, 5) + b"abcd"
    with pytest.raises(StunError):
        decode(short)


# --- integrity and fingerprint -------------------------------------------------------------


def test_integrity_right_and_wrong_key() -> None:
    m = Message(*REQ, username="a:b", priority=5)
    for fingerprint in (False, True):
        decoded = decode(encode(m, integrity_key=b"right", fingerprint=fingerprint))
        assert decoded.has_integrity
        assert check_integrity(decoded, b"right")
        assert not check_integrity(decoded, b"wrong")
        assert not check_integrity(decoded, b"")


def test_integrity_absent() -> None:
    decoded = decode(encode(Message(*REQ, username="a:b")))
    assert not decoded.has_integrity
    assert not check_integrity(decoded, b"k")
    assert not check_integrity(Message(*REQ), b"k")  # never decoded: no raw


def test_integrity_tampered() -> None:
    data = bytearray(
        encode(Message(*REQ, username="a:b", priority=5), integrity_key=b"k", fingerprint=False)
    )
    data[27] ^= 0x01  # the last byte of PRIORITY's value (the first attribute)
    tampered = decode(bytes(data))
    assert tampered.priority == 4
    assert not check_integrity(tampered, b"k")


def test_integrity_with_independent_hmac() -> None:
    """encode() agrees with an HMAC computed from the RFC text in this file."""
    base = _raw(0x0001, [(0x0006, b"a:b")])
    expected = _with_integrity(base, b"key")
    assert (
        encode(Message(*REQ, username="a:b"), integrity_key=b"key", fingerprint=False) == expected
    )
    assert encode(Message(*REQ, username="a:b"), integrity_key=b"key") == _with_fingerprint(
        expected
    )


def test_attributes_after_integrity_are_ignored() -> None:
    """RFC 5389 §15.4: only FINGERPRINT may follow MESSAGE-INTEGRITY; others are ignored."""
    sealed = _with_integrity(_raw(0x0001, [(0x0006, b"a:b")]), b"k")
    extra = struct.pack(">HH", 0x0024, 4) + b"\x00\x00\x00\x09"
    extra += struct.pack(">HH", 0x0030, 4) + b"junk"  # unknown comprehension-required
    extra += struct.pack(">HH", 0x0006, 2) + b"\xff\xff\x00\x00"  # even malformed ones
    data = sealed[:2] + struct.pack(">H", len(sealed) - 20 + len(extra)) + sealed[4:] + extra
    m = decode(data)
    assert m.username == "a:b"
    assert m.priority is None
    assert m.unknown_required == () and m.other == []
    assert check_integrity(m, b"k")
    # FINGERPRINT may still come last.
    m2 = decode(_with_fingerprint(data))
    assert m2.has_fingerprint and check_integrity(m2, b"k")


def test_check_integrity_on_message_built_with_raw_only() -> None:
    data = encode(Message(*REQ, username="a:b"), integrity_key=b"k")
    assert check_integrity(Message(*REQ, raw=data), b"k")
    assert not check_integrity(Message(*REQ, raw=data), b"j")
    assert not check_integrity(Message(*REQ, raw=data[:30]), b"k")


def test_fingerprint_tamper() -> None:
    data = encode(Message(*REQ, username="a:b"))
    assert decode(data).has_fingerprint
    fp_type = range(len(data) - 8, len(data) - 6)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x20
        if i in fp_type:
            # Flipping FINGERPRINT's type makes it another attribute: the message then
            # has no fingerprint at all, which is legal STUN.
            assert not decode(bytes(flipped)).has_fingerprint
            continue
        with pytest.raises(StunError):
            decode(bytes(flipped))


def test_fingerprint_must_be_last() -> None:
    with_fp = _with_fingerprint(_raw(0x0001, [(0x0006, b"a:b")]))
    extra = struct.pack(">HH", 0x8030, 0)
    data = with_fp[:2] + struct.pack(">H", len(with_fp) - 20 + 4) + with_fp[4:] + extra
    with pytest.raises(StunError, match="last"):
        decode(data)


def test_fingerprint_matches_independent_crc() -> None:
    base = _raw(0x0101, [(0x8022, b"sw")])
    m = decode(base)
    assert encode(m) == _with_fingerprint(base)


# --- 420 material ---------------------------------------------------------------------------


def test_unknown_required_collected() -> None:
    data = _raw(
        0x0001,
        [
            (0x0006, b"a:b"),
            (0x0030, b"x"),
            (0x8FFF, b"optional"),
            (0x7FFF, b""),
            (0x0030, b"again"),
        ],
    )
    m = decode(data)
    assert m.username == "a:b"
    assert m.unknown_required == (0x0030, 0x7FFF)
    assert m.other == [(0x0030, b"x"), (0x8FFF, b"optional"), (0x7FFF, b""), (0x0030, b"again")]
    assert "unknown_required" in repr(m)
    reply = error_response(m, 420, "Unknown Attribute", unknown=m.unknown_required)
    out = decode(encode(reply, integrity_key=b"k"))
    assert out.message_class == MessageClass.ERROR
    assert out.transaction_id == TID
    assert out.error_code == (420, "Unknown Attribute")
    assert out.unknown_attributes == (0x0030, 0x7FFF)


def test_known_turn_attributes_are_not_unknown() -> None:
    m = decode(_raw(0x0003, [(0x0019, b"\x11\x00\x00\x00"), (0x000D, bytes(4))]))
    assert m.unknown_required == ()
    assert m.find(AttributeType.REQUESTED_TRANSPORT) == b"\x11\x00\x00\x00"
    assert m.find(AttributeType.ICMP) is None


# --- responses, keys, encode errors, misc --------------------------------------------------


def test_success_response() -> None:
    req = decode(REQUEST_5769)
    resp = success_response(req, xor_mapped_address=("192.0.2.1", 32853), software="test vector")
    assert resp.method == Method.BINDING
    assert resp.message_class == MessageClass.SUCCESS
    assert resp.transaction_id == req.transaction_id
    assert decode(encode(resp, integrity_key=short_term_key(PASSWORD_5769))) == resp


def test_error_response() -> None:
    req = Message(Method.ALLOCATE, MessageClass.REQUEST, TID)
    resp = error_response(req, 487, "Role Conflict")
    assert (resp.method, resp.message_class, resp.transaction_id) == (
        Method.ALLOCATE,
        MessageClass.ERROR,
        TID,
    )
    assert resp.error_code == (487, "Role Conflict") and resp.unknown_attributes == ()
    with pytest.raises(ValueError):
        error_response(req, 299, "nope")
    with pytest.raises(ValueError):
        error_response(req, 700, "nope")


def test_keys() -> None:
    assert short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    # RFC 5389 §15.4's own example.
    assert long_term_key("user", "realm", "pass").hex() == "8493fbc53ba582fb4c044c456bdc40eb"


def test_saslprep() -> None:
    assert saslprep("user") == "user"
    assert saslprep("I\u00adX") == "IX"  # RFC 4013 §3 examples
    assert saslprep("\u00aa") == "a"
    assert saslprep("\u2168") == "IX"
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space maps to SPACE
    for bad in ("\u0007", "a\x7fb", "\u0627\u0031"):  # control chars; RTL not at both ends
        with pytest.raises(ValueError):
            saslprep(bad)


@pytest.mark.parametrize(
    "message",
    [
        Message(Method.BINDING, MessageClass.REQUEST, b"short"),
        Message(0x1000, MessageClass.REQUEST, TID),
        Message(-1, MessageClass.REQUEST, TID),
        Message(Method.BINDING, 0x001, TID),  # type: ignore[arg-type]
        Message(*REQ, priority=1 << 32),
        Message(*REQ, priority=-1),
        Message(*REQ, ice_controlling=1 << 64),
        Message(*REQ, ice_controlled=-1),
        Message(*REQ, username="u" * 514),
        Message(*REQ, software="s" * 764),
        Message(*REQ, error_code=(700, "x")),
        Message(*REQ, error_code=(200, "x")),
        Message(*REQ, error_code=(400, "r" * 764)),
        Message(*REQ, xor_mapped_address=("not an ip", 1)),
        Message(*REQ, xor_mapped_address=("192.0.2.1", 65536)),
        Message(*REQ, mapped_address=("::1", -1)),
        Message(*REQ, unknown_attributes=(0x10000,)),
        Message(*REQ, other=[(AttributeType.USERNAME, b"a:b")]),
        Message(*REQ, other=[(AttributeType.MESSAGE_INTEGRITY, bytes(20))]),
        Message(*REQ, other=[(AttributeType.FINGERPRINT, bytes(4))]),
        Message(*REQ, other=[(AttributeType.LIFETIME, bytes(3))]),
        Message(*REQ, other=[(0x10000, b"")]),
        Message(*REQ, other=[(0x8030, bytes(0x10000))]),
        Message(*REQ, other=[(0x8030, bytes(0xFFFF)), (0x8031, b"")]),  # total too long
    ],
    ids=repr,
)
def test_encode_rejects(message: Message) -> None:
    with pytest.raises(ValueError):
        encode(message)


def test_decode_accepts_bytes_like_and_rejects_others() -> None:
    assert decode(bytearray(REQUEST_5769)) == decode(REQUEST_5769)
    assert decode(memoryview(REQUEST_5769)).raw == REQUEST_5769
    with pytest.raises(StunError):
        decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(StunError):
        decode(None)  # type: ignore[arg-type]


def test_is_stun() -> None:
    for vector in (REQUEST_5769, RESPONSE_IPV4_5769, RESPONSE_IPV6_5769, LONG_TERM_REQUEST_5769):
        assert is_stun(vector)
        assert is_stun(bytearray(vector))
        assert is_stun(memoryview(vector))
    assert not is_stun(b"")
    assert not is_stun(b"\x16\xfe\xfd" + bytes(30))  # DTLS record (RFC 7983: 20..63)
    assert not is_stun(b"\x80\x60" + bytes(30))  # RTP
    assert not is_stun(REQUEST_5769[:-4])


def test_repr_is_readable() -> None:
    text = repr(decode(REQUEST_5769))
    assert text.startswith("Message(BINDING REQUEST, tid=b7e7a701bc34d686fa87dfae")
    assert "username='evtj:h6vY'" in text and "ice_controlled=0x932ff9b151263b36" in text
    assert "integrity" in text and "fingerprint" in text
    other = repr(
        Message(0x123, MessageClass.INDICATION, TID, other=[(AttributeType.DATA, b"\x01" * 40)])
    )
    assert "0x123 INDICATION" in other and "DATA=0101" in other and "..." in other


def test_equality_ignores_decode_only_fields() -> None:
    m = Message(*REQ, username="a:b")
    d = decode(encode(m, integrity_key=b"k"))
    assert d == m and d.raw and d.has_integrity
    assert d != Message(*REQ, username="a:c")
