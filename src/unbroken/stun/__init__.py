"""STUN (RFC 5389 / RFC 8489): a pure, fast codec for the ICE agent and the TURN client.

`decode()` turns a datagram into a `Message` (raising only `StunError`), `encode()` turns
a `Message` into bytes with MESSAGE-INTEGRITY and FINGERPRINT, `check_integrity()`
verifies a decoded message once the caller knows the key. No I/O, no clock.
"""

from unbroken.stun.attributes import (
    MAGIC_COOKIE,
    AttributeType,
    StunError,
    attribute_name,
    decode_address,
    decode_xor_address,
    encode_address,
    encode_xor_address,
)
from unbroken.stun.message import (
    MAX_ATTRIBUTES,
    Message,
    MessageClass,
    Method,
    binding_success,
    check_integrity,
    check_integrity_sha256,
    decode,
    encode,
    encode_template,
    error_response,
    fingerprint_ok,
    has_integrity_sha256,
    is_stun,
    long_term_key,
    read_header,
    saslprep,
    short_term_key,
    sign,
    success_response,
    username_prefix,
)

__all__ = [
    "MAGIC_COOKIE",
    "MAX_ATTRIBUTES",
    "AttributeType",
    "Message",
    "MessageClass",
    "Method",
    "StunError",
    "attribute_name",
    "binding_success",
    "check_integrity",
    "check_integrity_sha256",
    "decode",
    "decode_address",
    "decode_xor_address",
    "encode",
    "encode_address",
    "encode_template",
    "encode_xor_address",
    "error_response",
    "fingerprint_ok",
    "has_integrity_sha256",
    "is_stun",
    "long_term_key",
    "read_header",
    "saslprep",
    "short_term_key",
    "sign",
    "success_response",
    "username_prefix",
]
