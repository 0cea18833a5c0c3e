"""STUN messages (RFC 5389 / RFC 8489): encode, decode, MESSAGE-INTEGRITY, FINGERPRINT.

Theory of operation: a `Message` is a plain dataclass with one typed field per attribute
that ICE uses (USERNAME, PRIORITY, ICE-CONTROLLING, XOR-MAPPED-ADDRESS, ...) and a list,
`other`, of raw (type, value) pairs for everything else (TURN builds its attributes there).
`encode()` writes the typed attributes in a fixed order, then `other`, then
MESSAGE-INTEGRITY and FINGERPRINT, each with the length rules of RFC 5389 §15.4/§15.5.
`decode()` checks the header and every attribute's framing and format and raises only
`StunError`; it keeps the datagram in `Message.raw` and the offset of MESSAGE-INTEGRITY so
that `check_integrity()` can verify it later, once the caller knows which key applies.
Unknown comprehension-required attributes do not fail decoding: they are listed in
`unknown_required` so the receiver can answer 420 (RFC 5389 §7.3.1). Everything here is a
pure function of its arguments: no I/O, no clock, no randomness.

Hostile input: decode() does work linear in the datagram's size and walks at most
MAX_ATTRIBUTES attributes, so no packet costs more than a few ordinary ones. For a receiver
that must turn strangers away before any real work, `read_header()`, `fingerprint_ok()` and
`username_prefix()` look at the raw bytes without building a Message: the header, the
FINGERPRINT's CRC-32 and the USERNAME's first part (an ICE agent's own ufrag) are enough to
drop junk before MESSAGE-INTEGRITY's HMAC or a full decode.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import stringprep
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import Any

from unbroken.addresses import Address
from unbroken.stun.attributes import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    KNOWN_ATTRIBUTE_TYPES,
    MAGIC_COOKIE,
    MAX_TEXT_BYTES,
    AttributeType,
    StunError,
    attribute_name,
    check_other,
    decode_address,
    decode_xor_address,
    encode_address,
    encode_xor_address,
)

_HEAD = struct.Struct(">HHI")  # type, length, magic cookie; the transaction id follows
_TL = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")  # indexed by len(value) % 4

FINGERPRINT_XOR = 0x5354554E  # RFC 5389 §15.5
MAX_USERNAME_BYTES = 513
"""RFC 5389 §15.3 says fewer than 513 bytes, but two 256-character ICE ufrags joined by a
colon (RFC 8839 §5.4 allows ufrags that long) make 513, and RFC 5389 §19 lists 513."""
MAX_ATTRIBUTES = 32
"""decode() refuses messages with more attributes than this (StunError).

No RFC sets a limit, but a real ICE Binding request carries fewer than 15 (Chromium's:
USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, NOMINATION, GOOG-NETWORK-INFO and a few
more, MESSAGE-INTEGRITY, FINGERPRINT) and a TURN response fewer than 12. Without a cap a
64 KB datagram holds 16,383 empty attributes, each one a turn of the parser; 32 leaves
room for extensions and bounds a hostile packet's cost at a few ordinary decodes.
"""

# Plain ints for the hot comparisons in decode(): IntEnum comparisons are slower.
_MAPPED_ADDRESS = 0x0001
_USERNAME = 0x0006
_MESSAGE_INTEGRITY = 0x0008
_ERROR_CODE = 0x0009
_UNKNOWN_ATTRIBUTES = 0x000A
_XOR_MAPPED_ADDRESS = 0x0020
_PRIORITY = 0x0024
_USE_CANDIDATE = 0x0025
_SOFTWARE = 0x8022
_FINGERPRINT = 0x8028
_ICE_CONTROLLED = 0x8029
_ICE_CONTROLLING = 0x802A

# Types with a typed Message field (or written by encode() itself): not allowed in `other`.
_NOT_IN_OTHER = frozenset(
    {
        _MAPPED_ADDRESS,
        _USERNAME,
        _MESSAGE_INTEGRITY,
        _ERROR_CODE,
        _UNKNOWN_ATTRIBUTES,
        _XOR_MAPPED_ADDRESS,
        _PRIORITY,
        _USE_CANDIDATE,
        _SOFTWARE,
        _FINGERPRINT,
        _ICE_CONTROLLED,
        _ICE_CONTROLLING,
    }
)

_PRIORITY_HEAD = _TL.pack(_PRIORITY, 4)
_ICE_CONTROLLED_HEAD = _TL.pack(_ICE_CONTROLLED, 8)
_ICE_CONTROLLING_HEAD = _TL.pack(_ICE_CONTROLLING, 8)
_USE_CANDIDATE_ATTR = _TL.pack(_USE_CANDIDATE, 0)
_MI_HEAD = _TL.pack(_MESSAGE_INTEGRITY, 20)
_FP_HEAD = _TL.pack(_FINGERPRINT, 4)
_MESSAGE_INTEGRITY_SHA256 = 0x001C
_MI256_HEAD = _TL.pack(_MESSAGE_INTEGRITY_SHA256, 32)


class MessageClass(enum.IntEnum):
    """The two class bits, already at their place in the message type (RFC 5389 §6)."""

    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


class Method(enum.IntEnum):
    """STUN methods: Binding (RFC 5389) and the TURN ones (RFC 8656 §17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


_CLASSES = {int(c): c for c in MessageClass}
_METHODS: dict[int, int] = {int(m): m for m in Method}


@dataclass(slots=True, repr=False)
class Message:
    """One STUN message. Fields after `other` are set by decode(), not by users."""

    method: int
    message_class: MessageClass
    transaction_id: bytes
    username: str | None = None
    priority: int | None = None
    use_candidate: bool = False
    ice_controlling: int | None = None
    ice_controlled: int | None = None
    xor_mapped_address: Address | None = None
    mapped_address: Address | None = None
    error_code: tuple[int, str] | None = None
    unknown_attributes: tuple[int, ...] = ()
    software: str | None = None
    other: list[tuple[int, bytes]] = field(default_factory=list)
    # Set by decode(); not part of equality, so decode(encode(m)) == m.
    unknown_required: tuple[int, ...] = field(default=(), compare=False)
    has_integrity: bool = field(default=False, compare=False)
    has_fingerprint: bool = field(default=False, compare=False)
    raw: bytes = field(default=b"", compare=False)
    integrity_offset: int = field(default=-1, compare=False)
    """Offset of the MESSAGE-INTEGRITY attribute in `raw`, -1 when none."""

    def find(self, attr_type: int) -> bytes | None:
        """The value of the first attribute of `attr_type` in `other`, or None."""
        for t, v in self.other:
            if t == attr_type:
                return v
        return None

    def find_all(self, attr_type: int) -> list[bytes]:
        """Every value of `attr_type` in `other`, in order (e.g. several XOR-PEER-ADDRESS)."""
        return [v for t, v in self.other if t == attr_type]

    def __repr__(self) -> str:
        m = int(self.method)
        method = Method(m).name if m in _METHODS else f"0x{m:03X}"
        cls = self.message_class
        cls_name = _CLASSES[cls].name if cls in _CLASSES else repr(cls)
        parts = [f"{method} {cls_name}", f"tid={self.transaction_id.hex()}"]
        for name in ("username", "priority", "xor_mapped_address", "mapped_address"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.use_candidate:
            parts.append("use_candidate")
        if self.ice_controlling is not None:
            parts.append(f"ice_controlling=0x{self.ice_controlling:016x}")
        if self.ice_controlled is not None:
            parts.append(f"ice_controlled=0x{self.ice_controlled:016x}")
        if self.error_code is not None:
            parts.append(f"error={self.error_code[0]} {self.error_code[1]!r}")
        if self.unknown_attributes:
            parts.append(
                "unknown_attributes=" + ",".join(attribute_name(t) for t in self.unknown_attributes)
            )
        if self.software is not None:
            parts.append(f"software={self.software!r}")
        for t, v in self.other:
            shown = v[:16].hex() + ("..." if len(v) > 16 else "")
            parts.append(f"{attribute_name(t)}={shown}")
        if self.unknown_required:
            parts.append(
                "unknown_required=" + ",".join(attribute_name(t) for t in self.unknown_required)
            )
        if self.has_integrity:
            parts.append("integrity")
        if self.has_fingerprint:
            parts.append("fingerprint")
        return f"Message({', '.join(parts)})"


def _text_attr(attr_type: int, text: str, limit: int) -> bytes:
    value = text.encode("utf-8")
    n = len(value)
    if n > limit:
        raise ValueError(f"{attribute_name(attr_type)} longer than {limit} bytes")
    return _TL.pack(attr_type, n) + value + _PAD[n & 3]


def encode(
    message: Message,
    *,
    integrity_key: IntegrityKey | None = None,
    fingerprint: bool = True,
    integrity_sha256_key: bytes | None = None,
) -> bytes:
    """Serialize `message`; ValueError when a field is out of range.

    Order: typed attributes, then `other`, then MESSAGE-INTEGRITY (when a key is given),
    then MESSAGE-INTEGRITY-SHA256 (when its key is given, RFC 8489 §14.6), then
    FINGERPRINT (when asked).
    """
    tid = message.transaction_id
    if len(tid) != 12:
        raise ValueError("transaction id must be 12 bytes")
    method = int(message.method)
    if not 0 <= method <= 0xFFF:
        raise ValueError(f"method out of range: {method}")
    cls = int(message.message_class)
    if cls not in _CLASSES:
        raise ValueError(f"bad message class: {cls:#x}")
    # RFC 5389 §6: the 12 method bits M11..M0 are split around the class bits C1 and C0.
    msg_type = ((method & 0xF80) << 2) | ((method & 0x070) << 1) | (method & 0x00F) | cls

    parts: list[bytes] = []
    append = parts.append
    # Typed attributes, in the order of the RFC 5769 test vectors.
    if message.software is not None:
        append(_text_attr(_SOFTWARE, message.software, MAX_TEXT_BYTES))
    if message.mapped_address is not None:
        value = encode_address(message.mapped_address)
        append(_TL.pack(_MAPPED_ADDRESS, len(value)) + value)
    if message.xor_mapped_address is not None:
        value = encode_xor_address(message.xor_mapped_address, tid)
        append(_TL.pack(_XOR_MAPPED_ADDRESS, len(value)) + value)
    if message.error_code is not None:
        code, reason = message.error_code
        if not 300 <= code <= 699:
            raise ValueError(f"error code out of range: {code}")
        text = reason.encode("utf-8")
        if len(text) > MAX_TEXT_BYTES:
            raise ValueError("reason phrase too long")
        # RFC 5389 §15.6: 21 reserved bits, 3-bit class (hundreds), 8-bit number.
        value = _U32.pack(((code // 100) << 8) | (code % 100)) + text
        append(_TL.pack(_ERROR_CODE, len(value)) + value + _PAD[len(value) & 3])
    if message.unknown_attributes:
        types = message.unknown_attributes
        if not all(0 <= t <= 0xFFFF for t in types):
            raise ValueError("UNKNOWN-ATTRIBUTES holds 16-bit types")
        value = struct.pack(f">{len(types)}H", *types)
        append(_TL.pack(_UNKNOWN_ATTRIBUTES, len(value)) + value + _PAD[len(value) & 3])
    if message.priority is not None:
        if not 0 <= message.priority <= 0xFFFFFFFF:
            raise ValueError("priority is a 32-bit unsigned value")
        append(_PRIORITY_HEAD + _U32.pack(message.priority))
    if message.ice_controlled is not None:
        if not 0 <= message.ice_controlled <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("tie-breaker is a 64-bit unsigned value")
        append(_ICE_CONTROLLED_HEAD + _U64.pack(message.ice_controlled))
    if message.ice_controlling is not None:
        if not 0 <= message.ice_controlling <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("tie-breaker is a 64-bit unsigned value")
        append(_ICE_CONTROLLING_HEAD + _U64.pack(message.ice_controlling))
    if message.use_candidate:
        append(_USE_CANDIDATE_ATTR)
    if message.username is not None:
        append(_text_attr(_USERNAME, message.username, MAX_USERNAME_BYTES))
    for attr_type, value in message.other:
        if attr_type in _NOT_IN_OTHER:
            raise ValueError(f"{attribute_name(attr_type)} has its own field; not in `other`")
        if not 0 <= attr_type <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError(f"bad attribute {attr_type!r} of length {len(value)}")
        if attr_type in KNOWN_ATTRIBUTE_TYPES:
            check_other(attr_type, value)  # never send what decode() would reject
        append(_TL.pack(attr_type, len(value)) + bytes(value) + _PAD[len(value) & 3])

    body = b"".join(parts)
    return _finish(msg_type, tid, body, integrity_key, fingerprint, integrity_sha256_key)


def _finish(
    msg_type: int,
    tid: bytes,
    body: bytes,
    integrity_key: IntegrityKey | None,
    fingerprint: bool,
    integrity_sha256_key: bytes | None = None,
) -> bytes:
    """Header, `body` (the attributes) and the integrity and fingerprint trailers."""
    total = len(body) + (24 if integrity_key is not None else 0) + (8 if fingerprint else 0)
    if integrity_sha256_key is not None:
        total += 36
    if total > 0xFFFC:
        raise ValueError("message too long for the 16-bit length field")
    if integrity_key is not None:
        # RFC 5389 §15.4: the HMAC covers the header, with its length already counting
        # MESSAGE-INTEGRITY, and every attribute before it.
        head = _HEAD.pack(msg_type, len(body) + 24, MAGIC_COOKIE) + tid
        body += _MI_HEAD + _hmac_sha1(integrity_key, head + body)
    if integrity_sha256_key is not None:
        # RFC 8489 §14.6: the same construction with HMAC-SHA256 and a 32-byte value.
        head = _HEAD.pack(msg_type, len(body) + 36, MAGIC_COOKIE) + tid
        body += _MI256_HEAD + hmac.digest(integrity_sha256_key, head + body, "sha256")
    if fingerprint:
        # RFC 5389 §15.5: CRC-32 of everything before it, length counting FINGERPRINT.
        head = _HEAD.pack(msg_type, len(body) + 8, MAGIC_COOKIE) + tid
        body += _FP_HEAD + _U32.pack(zlib.crc32(head + body) ^ FINGERPRINT_XOR)
    return _HEAD.pack(msg_type, len(body), MAGIC_COOKIE) + tid + body


def encode_template(message: Message) -> tuple[int, bytes]:
    """(message type, attribute bytes) of `message` before its integrity and fingerprint.

    With `sign()` it makes what `encode()` makes, for the price of the trailers only: a
    consent check differs from the last one on its pair only in its transaction id (issue
    9). Attributes that depend on the transaction id (XOR-MAPPED-ADDRESS) do not belong
    in a template.
    """
    if message.xor_mapped_address is not None:
        raise ValueError("XOR-MAPPED-ADDRESS depends on the transaction id")
    data = encode(message, fingerprint=False)
    return _HEAD.unpack_from(data, 0)[0], data[20:]


def sign(msg_type: int, tid: bytes, body: bytes, integrity_key: IntegrityKey) -> bytes:
    """A template from `encode_template()` sent as `tid`: MESSAGE-INTEGRITY, FINGERPRINT."""
    if len(tid) != 12:
        raise ValueError("transaction id must be 12 bytes")
    return _finish(msg_type, tid, body, integrity_key, True)


_BINDING_SUCCESS = 0x0101
_XMA_HEAD = {8: _TL.pack(_XOR_MAPPED_ADDRESS, 8), 20: _TL.pack(_XOR_MAPPED_ADDRESS, 20)}


def binding_success(tid: bytes, xor_mapped_address: Address, integrity_key: IntegrityKey) -> bytes:
    """encode(success_response(request, xor_mapped_address=...), integrity_key=...,
    fingerprint=True) for a Binding request, without building a Message (issue 9)."""
    if len(tid) != 12:
        raise ValueError("transaction id must be 12 bytes")
    value = encode_xor_address(xor_mapped_address, tid)
    body = _XMA_HEAD[len(value)] + value
    return _finish(_BINDING_SUCCESS, tid, body, integrity_key, True)


def _utf8(data: bytes, start: int, end: int, what: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise StunError(f"{what} is not UTF-8") from None


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one STUN message; raise StunError (and nothing else) for malformed input."""
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise StunError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    n = len(data)
    if n < 20:
        raise StunError("shorter than a STUN header")
    msg_type, length, cookie = _HEAD.unpack_from(data, 0)
    if msg_type & 0xC000:
        raise StunError("top two bits of the message type are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError("bad magic cookie")
    if length != n - 20 or length & 3:
        raise StunError(f"length field {length} does not match {n - 20} bytes of attributes")
    tid = data[8:20]

    username: str | None = None
    priority: int | None = None
    use_candidate = False
    ice_controlling: int | None = None
    ice_controlled: int | None = None
    xor_mapped: Address | None = None
    mapped: Address | None = None
    error_code: tuple[int, str] | None = None
    unknown_attributes: tuple[int, ...] | None = None
    software: str | None = None
    other: list[tuple[int, bytes]] = []
    unknown_required: list[int] = []  # duplicates removed at the end, in one linear pass
    mi_offset = -1
    has_fingerprint = False

    pos = 20
    budget = MAX_ATTRIBUTES  # at most this many turns, each linear in its attribute's length
    while pos < n:  # n - pos is a multiple of 4, so a whole attribute header fits
        budget -= 1
        if budget < 0:
            raise StunError(f"more than {MAX_ATTRIBUTES} attributes")
        attr_type, alen = _TL.unpack_from(data, pos)
        start = pos + 4
        end = start + alen
        nxt = (end + 3) & ~3
        if nxt > n:
            raise StunError(f"{attribute_name(attr_type)} overruns the message")
        if attr_type == _FINGERPRINT:
            if alen != 4:
                raise StunError("FINGERPRINT must be 4 bytes")
            if nxt != n:
                raise StunError("FINGERPRINT is not the last attribute")
            expected = zlib.crc32(memoryview(data)[:pos]) ^ FINGERPRINT_XOR
            if _U32.unpack_from(data, start)[0] != expected:
                raise StunError("FINGERPRINT mismatch")
            has_fingerprint = True
            break
        if mi_offset >= 0:
            # RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY, other than
            # FINGERPRINT, are ignored.
            pos = nxt
            continue
        if attr_type == _USERNAME:
            if alen > MAX_USERNAME_BYTES:
                raise StunError("USERNAME too long")
            text = _utf8(data, start, end, "USERNAME")
            if username is None:
                username = text
        elif attr_type == _PRIORITY:
            if alen != 4:
                raise StunError("PRIORITY must be 4 bytes")
            if priority is None:
                priority = _U32.unpack_from(data, start)[0]
        elif attr_type == _ICE_CONTROLLING or attr_type == _ICE_CONTROLLED:
            if alen != 8:
                raise StunError(f"{attribute_name(attr_type)} must be 8 bytes")
            tie = _U64.unpack_from(data, start)[0]
            if attr_type == _ICE_CONTROLLING:
                if ice_controlling is None:
                    ice_controlling = tie
            elif ice_controlled is None:
                ice_controlled = tie
        elif attr_type == _USE_CANDIDATE:
            if alen != 0:
                raise StunError("USE-CANDIDATE must be empty")
            use_candidate = True
        elif attr_type == _MESSAGE_INTEGRITY:
            if alen != 20:
                raise StunError("MESSAGE-INTEGRITY must be 20 bytes")
            mi_offset = pos
        elif attr_type == _XOR_MAPPED_ADDRESS:
            if xor_mapped is None:
                xor_mapped = decode_xor_address(data[start:end], tid)
            else:
                _check_address(data, start, alen)  # a duplicate: validated, not built
        elif attr_type == _MAPPED_ADDRESS:
            if mapped is None:
                mapped = decode_address(data[start:end])
            else:
                _check_address(data, start, alen)
        elif attr_type == _ERROR_CODE:
            if alen < 4 or alen > 4 + MAX_TEXT_BYTES:
                raise StunError("bad ERROR-CODE length")
            err_class = data[start + 2] & 0x07
            number = data[start + 3]
            if not 3 <= err_class <= 6 or number > 99:
                raise StunError(f"bad ERROR-CODE {err_class}/{number}")
            reason = _utf8(data, start + 4, end, "reason phrase")
            if error_code is None:
                error_code = (err_class * 100 + number, reason)
        elif attr_type == _UNKNOWN_ATTRIBUTES:
            if alen & 1:
                raise StunError("UNKNOWN-ATTRIBUTES length is odd")
            if unknown_attributes is None:
                unknown_attributes = struct.unpack_from(f">{alen >> 1}H", data, start)
        elif attr_type == _SOFTWARE:
            if alen > MAX_TEXT_BYTES:
                raise StunError("SOFTWARE too long")
            text = _utf8(data, start, end, "SOFTWARE")
            if software is None:
                software = text
        else:
            value = data[start:end]
            if attr_type in KNOWN_ATTRIBUTE_TYPES:
                check_other(attr_type, value)
            elif attr_type < 0x8000:
                # RFC 5389 §7.3.1: the receiver answers 420 listing these.
                unknown_required.append(attr_type)
            other.append((attr_type, value))
        pos = nxt

    # RFC 5389 §6: gather the method bits from around the class bits.
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    return Message(
        method=_METHODS.get(method, method),
        message_class=_CLASSES[msg_type & 0x0110],
        transaction_id=tid,
        username=username,
        priority=priority,
        use_candidate=use_candidate,
        ice_controlling=ice_controlling,
        ice_controlled=ice_controlled,
        xor_mapped_address=xor_mapped,
        mapped_address=mapped,
        error_code=error_code,
        unknown_attributes=unknown_attributes or (),
        software=software,
        other=other,
        unknown_required=tuple(dict.fromkeys(unknown_required)) if unknown_required else (),
        has_integrity=mi_offset >= 0,
        has_fingerprint=has_fingerprint,
        raw=data,
        integrity_offset=mi_offset,
    )


def _check_address(data: bytes, start: int, alen: int) -> None:
    """The format checks of decode_address/decode_xor_address, without building a string."""
    family = data[start + 1] if alen > 1 else 0
    if not ((alen == 8 and family == FAMILY_IPV4) or (alen == 20 and family == FAMILY_IPV6)):
        raise StunError(f"bad address value (length {alen})")


def is_stun(data: bytes | bytearray | memoryview) -> bool:
    """Cheap test that `data` looks like STUN (RFC 7983 demux; RFC 5389 §7.3 checks).

    Never raises for bytes-like input; does not parse attributes or check FINGERPRINT.
    """
    n = len(data)
    return (
        n >= 20
        and data[0] < 0x40
        and data[4:8] == b"\x21\x12\xa4\x42"
        and ((data[2] << 8) | data[3]) == n - 20
        and not data[3] & 3
    )


def read_header(data: bytes | bytearray | memoryview) -> tuple[int, MessageClass, bytes] | None:
    """(method, class, transaction id) of a datagram whose STUN header is sound, else None.

    The checks of RFC 5389 §7.3 that need no attribute: top bits, magic cookie, a length
    that is a multiple of 4 and matches the datagram. Never raises for bytes-like input.
    """
    if not is_stun(data):
        return None
    msg_type = (data[0] << 8) | data[1]
    # RFC 5389 §6: gather the method bits from around the class bits.
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    return method, _CLASSES[msg_type & 0x0110], bytes(data[8:20])


def fingerprint_ok(data: bytes | bytearray | memoryview) -> bool:
    """True when the datagram ends in a FINGERPRINT whose CRC-32 matches (RFC 5389 §15.5).

    One CRC over the bytes, no parsing: call it after read_header() accepted the header.
    ICE requires FINGERPRINT on every check (RFC 8445 §7.2.2, §7.3), and a message that
    lacks it or fails it is discarded silently (RFC 5389 §7.3).
    """
    n = len(data)
    if n < 28 or data[n - 8 : n - 4] != _FP_HEAD:
        return False
    expected: int = zlib.crc32(memoryview(data)[: n - 8]) ^ FINGERPRINT_XOR
    found: int = _U32.unpack_from(data, n - 4)[0]
    return found == expected


def username_prefix(data: bytes | bytearray | memoryview) -> bytes | None:
    """The first USERNAME's bytes before its first colon, or None when there is no USERNAME.

    In an ICE check the USERNAME is "<receiver's ufrag>:<sender's ufrag>" (RFC 8445
    §7.2.2), so this is the receiver's own ufrag: enough to turn away a request meant for
    nobody here before its HMAC is computed. Walks at most MAX_ATTRIBUTES attributes and
    stops at MESSAGE-INTEGRITY (what follows it is ignored, RFC 5389 §15.4). StunError when
    the attributes are not framed right; call it after read_header() accepted the header.
    """
    n = len(data)
    pos = 20
    for _ in range(MAX_ATTRIBUTES):
        if pos >= n:
            return None
        attr_type, alen = _TL.unpack_from(data, pos)
        start = pos + 4
        end = start + alen
        if end > n:
            raise StunError(f"{attribute_name(attr_type)} overruns the message")
        if attr_type == _USERNAME:
            if alen > MAX_USERNAME_BYTES:
                raise StunError("USERNAME too long")
            value = bytes(data[start:end])
            return value.partition(b":")[0]
        if attr_type == _MESSAGE_INTEGRITY or attr_type == _FINGERPRINT:
            return None
        pos = (end + 3) & ~3
    raise StunError(f"more than {MAX_ATTRIBUTES} attributes")


def _find_integrity(raw: bytes) -> int:
    """Offset of the first MESSAGE-INTEGRITY in `raw`, -1 when absent or unframed."""
    pos, alen = _find_attribute(raw, _MESSAGE_INTEGRITY)
    return pos if alen == 20 else -1


def check_integrity(message: Message, key: IntegrityKey) -> bool:
    """True when `message.raw` carries a MESSAGE-INTEGRITY that `key` verifies.

    False when there is none, or it is wrong (RFC 5389 §10.1.2/§15.4).
    """
    raw = message.raw
    offset = message.integrity_offset
    if offset < 0:
        if len(raw) < 20:
            return False
        offset = _find_integrity(raw)
        if offset < 0:
            return False
    if offset + 24 > len(raw):
        return False
    # The length field is recomputed to end at MESSAGE-INTEGRITY (RFC 5389 §15.4).
    head = raw[0:2] + _U16.pack(offset + 4) + raw[4:20]
    mac = _hmac_sha1(key, head + raw[20:offset])
    return hmac.compare_digest(mac, raw[offset + 4 : offset + 24])


def _find_attribute(raw: bytes, wanted: int) -> tuple[int, int]:
    """(offset, length) of the first `wanted` attribute in `raw`, (-1, 0) when absent."""
    n = len(raw)
    pos = 20
    for _ in range(MAX_ATTRIBUTES):
        if pos + 4 > n:
            break
        attr_type, alen = _TL.unpack_from(raw, pos)
        if pos + 4 + alen > n:
            break
        if attr_type == wanted:
            return pos, alen
        if attr_type == _FINGERPRINT:
            break
        pos = (pos + 4 + alen + 3) & ~3
    return -1, 0


def check_integrity_sha256(message: Message, key: bytes) -> bool:
    """True when `message.raw` carries a MESSAGE-INTEGRITY-SHA256 that `key` verifies.

    RFC 8489 §14.6: HMAC-SHA256 over the message up to the attribute, with the length
    field ending at it; the value may be truncated to 16..32 bytes, a multiple of four.
    """
    raw = message.raw
    if len(raw) < 20:
        return False
    offset, alen = _find_attribute(raw, _MESSAGE_INTEGRITY_SHA256)
    if offset < 0 or alen < 16 or alen > 32 or alen & 3:
        return False
    head = raw[0:2] + _U16.pack(offset + 4 + alen - 20) + raw[4:20]
    mac = hmac.digest(key, head + raw[20:offset], "sha256")[:alen]
    return hmac.compare_digest(mac, raw[offset + 4 : offset + 4 + alen])


def has_integrity_sha256(message: Message) -> bool:
    """True when `message.raw` holds a MESSAGE-INTEGRITY-SHA256 attribute."""
    return (
        len(message.raw) >= 20 and _find_attribute(message.raw, _MESSAGE_INTEGRITY_SHA256)[0] >= 0
    )


def short_term_key(password: str) -> bytes:
    """The ICE short-term credential key: the password's UTF-8 bytes (RFC 8445 §7.2.2).

    SASLprep (RFC 5389 §15.4) is skipped on purpose: ICE passwords are ice-chars
    (ALPHA / DIGIT / "+" / "/", RFC 8839 §5.4), which SASLprep maps to themselves, and
    browsers use the raw bytes, so this is both exact and interoperable.
    """
    return password.encode("utf-8")


class ShortTermKey:
    """An ICE password's MESSAGE-INTEGRITY key with its HMAC-SHA1 state prepared once.

    OpenSSL 3's one-shot HMAC looks the algorithm up and hashes the padded key again on
    every call, and copying a prepared HMAC context allocates three digest contexts.
    RFC 2104 §2's construction from two prepared SHA-1 states is the same MAC for about
    0.6 µs instead of 1.5 (an idle connection computes two or three a second; issue 9).
    Accepted wherever a key in bytes is; an agent keeps one per password
    (Generation.local_key / remote_key). tests/test_stun_templates.py proves it equal to
    hmac.digest for any key.
    """

    __slots__ = ("password", "key", "_inner", "_outer")

    def __init__(self, password: str) -> None:
        self.password = password
        self.key = short_term_key(password)
        block = self.key if len(self.key) <= 64 else hashlib.sha1(self.key).digest()
        block = block.ljust(64, b"\0")  # RFC 2104 §2: keys longer than B are hashed first
        self._inner = hashlib.sha1(block.translate(_IPAD))
        self._outer = hashlib.sha1(block.translate(_OPAD))

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA1(key, data): H(K ^ opad, H(K ^ ipad, data))."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


IntegrityKey = bytes | ShortTermKey
"""A MESSAGE-INTEGRITY key: its bytes, or a ShortTermKey."""


def _hmac_sha1(key: IntegrityKey, data: bytes) -> bytes:
    if isinstance(key, ShortTermKey):
        return key.mac(data)
    return hmac.digest(key, data, "sha1")


_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str:
    """SASLprep (RFC 4013) as a query string: map, NFKC, prohibit, bidi check.

    ValueError when `text` holds a prohibited character or breaks the bidi rules.
    """
    if text.isascii() and all(" " <= ch <= "~" for ch in text):
        return text  # printable ASCII maps to itself
    # RFC 4013 §2.1: non-ASCII spaces become SPACE, "commonly mapped to nothing" vanish.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # §2.2: NFKC as of Unicode 3.2, the version stringprep is defined on.
    result = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for ch in result:
        if any(check(ch) for check in _PROHIBITED):
            raise ValueError(f"SASLprep: prohibited character U+{ord(ch):04X}")
    # §2.4 / RFC 3454 §6: strings with right-to-left characters.
    if any(stringprep.in_table_d1(ch) for ch in result):
        if any(stringprep.in_table_d2(ch) for ch in result):
            raise ValueError("SASLprep: mixed right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(result[0]) and stringprep.in_table_d1(result[-1])):
            raise ValueError("SASLprep: right-to-left text must start and end with it")
    return result


def long_term_key(username: str, realm: str, password: str, algorithm: str = "md5") -> bytes:
    """The long-term credential key H(username ":" realm ":" SASLprep(password)).

    RFC 5389 §15.4 (MD5) and RFC 8489 §9.2.2 (`algorithm="sha256"`, chosen through
    PASSWORD-ALGORITHM); `username` and `realm` are taken as they appear in the attributes
    (the sender has already prepared them). Used by TURN.
    """
    text = f"{username}:{realm}:{saslprep(password)}".encode()
    if algorithm == "sha256":
        return hashlib.sha256(text).digest()
    if algorithm != "md5":
        raise ValueError(f"unknown password algorithm {algorithm!r}")
    return hashlib.md5(text, usedforsecurity=False).digest()


def success_response(request: Message, **attrs: Any) -> Message:
    """A success response to `request`: same method and transaction id."""
    return Message(
        method=request.method,
        message_class=MessageClass.SUCCESS,
        transaction_id=request.transaction_id,
        **attrs,
    )


def error_response(
    request: Message, code: int, reason: str, *, unknown: tuple[int, ...] = ()
) -> Message:
    """An error response to `request`; `unknown` fills UNKNOWN-ATTRIBUTES (for 420)."""
    if not 300 <= code <= 699:
        raise ValueError(f"error code out of range: {code}")
    return Message(
        method=request.method,
        message_class=MessageClass.ERROR,
        transaction_id=request.transaction_id,
        error_code=(code, reason),
        unknown_attributes=tuple(unknown),
    )


__all__ = [
    "FINGERPRINT_XOR",
    "MAX_ATTRIBUTES",
    "MAX_USERNAME_BYTES",
    "MessageClass",
    "Method",
    "Message",
    "AttributeType",
    "StunError",
    "encode",
    "decode",
    "is_stun",
    "read_header",
    "fingerprint_ok",
    "username_prefix",
    "check_integrity",
    "check_integrity_sha256",
    "has_integrity_sha256",
    "short_term_key",
    "ShortTermKey",
    "IntegrityKey",
    "long_term_key",
    "saslprep",
    "success_response",
    "error_response",
]
