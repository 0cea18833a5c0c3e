"""STUN attribute types and the value formats shared by several attributes.

Theory of operation: an attribute is a type-length-value record padded to four bytes
(RFC 5389 §15). Types below 0x8000 are comprehension-required, the rest
comprehension-optional. This module names the types this project knows (STUN, ICE,
TURN), and encodes and decodes the address formats (MAPPED-ADDRESS and the XOR'd
family: XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS). The message
codec lives in `message.py`; TURN code uses `encode_xor_address`/`decode_xor_address`
to build and read its attributes in `Message.other`.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct

from unbroken.addresses import Address
from unbroken.core_errors import UnbrokenError

MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = b"\x21\x12\xa4\x42"

_ADDR_HEAD = struct.Struct(">xBH")  # reserved byte, family, port
_U32 = struct.Struct(">I")

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02


class StunError(UnbrokenError, ValueError):
    """The one error decode() raises for any malformed input."""


class AttributeType(enum.IntEnum):
    """Attribute types known to this codec (IANA STUN Attributes registry)."""

    # RFC 5389 §18.2
    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    XOR_MAPPED_ADDRESS = 0x0020
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    # RFC 8445 §16.1 (ICE)
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    # draft-thatcher-ice-renomination §4 (libwebrtc's value)
    NOMINATION = 0xC001
    # RFC 8656 §18 (TURN)
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    RESERVATION_TOKEN = 0x0022
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    ICMP = 0x8004
    # RFC 8489 §18.3 (the SHA-256 long-term credential upgrade, used by TURN)
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003


RFC8489_SECURITY_TYPES = frozenset({0x001C, 0x001D, 0x001E})
"""Comprehension-required RFC 8489 security attributes that decode() still lists in
`unknown_required`: the ICE agent verifies only MESSAGE-INTEGRITY (short-term, SHA-1), so
for it they stay unknown (420), exactly as before they were named. The TURN client, which
understands them, subtracts this set."""

KNOWN_ATTRIBUTE_TYPES = frozenset(int(t) for t in AttributeType) - RFC8489_SECURITY_TYPES


def attribute_name(attr_type: int) -> str:
    """The registry name of `attr_type`, or its hex value when unknown (for logs and repr)."""
    try:
        return AttributeType(attr_type).name
    except ValueError:
        return f"0x{attr_type:04X}"


@functools.lru_cache(maxsize=1024)
def _pack_ip(host: str) -> bytes:
    """Packed bytes of an IP literal; cached because the same few addresses recur."""
    return ipaddress.ip_address(host).packed


def _ipv4_text(packed: bytes) -> str:
    return f"{packed[0]}.{packed[1]}.{packed[2]}.{packed[3]}"


def encode_address(address: Address) -> bytes:
    """The MAPPED-ADDRESS value of `address` (RFC 5389 §15.1)."""
    host, port = address
    packed = _pack_ip(host)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    family = FAMILY_IPV4 if len(packed) == 4 else FAMILY_IPV6
    return _ADDR_HEAD.pack(family, port) + packed


def decode_address(value: bytes) -> Address:
    """Read a MAPPED-ADDRESS value; StunError when the family or length is wrong."""
    n = len(value)
    if n == 8 and value[1] == FAMILY_IPV4:
        return _ipv4_text(value[4:8]), (value[2] << 8) | value[3]
    if n == 20 and value[1] == FAMILY_IPV6:
        return str(ipaddress.IPv6Address(value[4:20])), (value[2] << 8) | value[3]
    raise StunError(f"bad address value (length {n})")


def encode_xor_address(address: Address, transaction_id: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS style value of `address` (RFC 5389 §15.2).

    The same format serves XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS (RFC 8656 §18).
    """
    host, port = address
    packed = _pack_ip(host)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    xport = port ^ (MAGIC_COOKIE >> 16)
    if len(packed) == 4:
        xip = _U32.unpack(packed)[0] ^ MAGIC_COOKIE
        return _ADDR_HEAD.pack(FAMILY_IPV4, xport) + _U32.pack(xip)
    if len(transaction_id) != 12:
        raise ValueError("transaction id must be 12 bytes")
    mask = int.from_bytes(MAGIC_COOKIE_BYTES + transaction_id, "big")
    x = int.from_bytes(packed, "big") ^ mask
    return _ADDR_HEAD.pack(FAMILY_IPV6, xport) + x.to_bytes(16, "big")


def decode_xor_address(value: bytes, transaction_id: bytes) -> Address:
    """Read an XOR'd address value; StunError when the family or length is wrong."""
    n = len(value)
    if n == 8 and value[1] == FAMILY_IPV4:
        port = ((value[2] << 8) | value[3]) ^ (MAGIC_COOKIE >> 16)
        ip = _U32.unpack_from(value, 4)[0] ^ MAGIC_COOKIE
        return f"{ip >> 24}.{(ip >> 16) & 0xFF}.{(ip >> 8) & 0xFF}.{ip & 0xFF}", port
    if n == 20 and value[1] == FAMILY_IPV6:
        port = ((value[2] << 8) | value[3]) ^ (MAGIC_COOKIE >> 16)
        mask = int.from_bytes(MAGIC_COOKIE_BYTES + transaction_id, "big")
        ip6 = int.from_bytes(value[4:20], "big") ^ mask
        return str(ipaddress.IPv6Address(ip6)), port
    raise StunError(f"bad XOR address value (length {n})")


# Formats checked for attributes that decode() leaves in Message.other, so a malformed
# TURN or ICE attribute is rejected at the codec instead of deep in a state machine.
_FIXED_LENGTH: dict[int, int] = {
    AttributeType.CHANNEL_NUMBER: 4,
    AttributeType.LIFETIME: 4,
    AttributeType.REQUESTED_ADDRESS_FAMILY: 4,
    AttributeType.ADDITIONAL_ADDRESS_FAMILY: 4,
    AttributeType.EVEN_PORT: 1,
    AttributeType.REQUESTED_TRANSPORT: 4,
    AttributeType.DONT_FRAGMENT: 0,
    AttributeType.RESERVATION_TOKEN: 8,
    AttributeType.NOMINATION: 4,
}
_ADDRESS_TYPES: frozenset[int] = frozenset(
    {
        AttributeType.XOR_PEER_ADDRESS,
        AttributeType.XOR_RELAYED_ADDRESS,
        AttributeType.ALTERNATE_SERVER,
    }
)
MAX_TEXT_BYTES = 763  # "less than 128 characters (which can be as long as 763 bytes)"


def check_other(attr_type: int, value: bytes) -> None:
    """Raise StunError when a known attribute kept in `other` has the wrong format."""
    fixed = _FIXED_LENGTH.get(attr_type)
    if fixed is not None:
        if len(value) != fixed:
            raise StunError(f"{attribute_name(attr_type)} must be {fixed} bytes")
    elif attr_type in _ADDRESS_TYPES:
        n = len(value)
        if not ((n == 8 and value[1] == FAMILY_IPV4) or (n == 20 and value[1] == FAMILY_IPV6)):
            raise StunError(f"bad {attribute_name(attr_type)} value")
    elif attr_type == AttributeType.REALM:
        # RFC 5389 §15.7: UTF-8, fewer than 128 characters (up to 763 bytes).
        if len(value) > MAX_TEXT_BYTES:
            raise StunError("REALM too long")
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise StunError("REALM is not UTF-8") from None
    elif attr_type == AttributeType.NONCE and len(value) > MAX_TEXT_BYTES:
        raise StunError("NONCE too long")  # RFC 5389 §15.8


__all__ = [
    "MAGIC_COOKIE",
    "StunError",
    "AttributeType",
    "KNOWN_ATTRIBUTE_TYPES",
    "RFC8489_SECURITY_TYPES",
    "attribute_name",
    "encode_address",
    "decode_address",
    "encode_xor_address",
    "decode_xor_address",
    "check_other",
]
