"""STUN templates (issue 9): encode_template + sign and binding_success make what encode() makes."""

from __future__ import annotations

import hmac
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unbroken.addresses import Address
from unbroken.stun import (
    Message,
    MessageClass,
    Method,
    ShortTermKey,
    binding_success,
    check_integrity,
    decode,
    encode,
    encode_template,
    short_term_key,
    sign,
    success_response,
)

tids = st.binary(min_size=12, max_size=12)
keys = st.binary(min_size=1, max_size=64)
ties = st.integers(min_value=0, max_value=2**64 - 1)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a)))
addresses: st.SearchStrategy[Address] = st.tuples(
    st.one_of(ipv4, ipv6), st.integers(min_value=0, max_value=0xFFFF)
)
ice_chars = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789+/", min_size=4, max_size=32
)


@given(
    tid=tids,
    other_tid=tids,
    key=keys,
    ours=ice_chars,
    theirs=ice_chars,
    priority=st.integers(min_value=0, max_value=2**32 - 1),
    controlling=st.booleans(),
    tie=ties,
    nominate=st.booleans(),
)
def test_signed_template_is_the_encoded_request(
    tid: bytes,
    other_tid: bytes,
    key: bytes,
    ours: str,
    theirs: str,
    priority: int,
    controlling: bool,
    tie: int,
    nominate: bool,
) -> None:
    """A template made under one transaction id, sent under another: encode()'s bytes."""
    msg = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        other_tid,
        username=f"{theirs}:{ours}",
        priority=priority,
        use_candidate=nominate,
        ice_controlling=tie if controlling else None,
        ice_controlled=None if controlling else tie,
    )
    msg_type, body = encode_template(msg)
    signed = sign(msg_type, tid, body, key)
    msg.transaction_id = tid
    assert signed == encode(msg, integrity_key=key, fingerprint=True)
    decoded = decode(signed)
    assert decoded.has_fingerprint and check_integrity(decoded, key)
    assert decoded.transaction_id == tid and decoded.priority == priority


@given(tid=tids, key=keys, address=addresses)
def test_binding_success_is_the_encoded_response(tid: bytes, key: bytes, address: Address) -> None:
    """The response shortcut: byte for byte what success_response + encode() make."""
    request = Message(Method.BINDING, MessageClass.REQUEST, tid)
    expected = encode(
        success_response(request, xor_mapped_address=address), integrity_key=key, fingerprint=True
    )
    assert binding_success(tid, address, key) == expected
    assert decode(expected).xor_mapped_address == address


def test_template_refuses_what_depends_on_the_transaction_id() -> None:
    """XOR-MAPPED-ADDRESS is masked with the transaction id (IPv6): never in a template."""
    msg = Message(Method.BINDING, MessageClass.SUCCESS, bytes(12), xor_mapped_address=("::1", 1))
    with pytest.raises(ValueError):
        encode_template(msg)


@pytest.mark.parametrize("tid", [b"", bytes(11), bytes(13)])
def test_bad_transaction_ids_are_refused(tid: bytes) -> None:
    """A wrong-length transaction id is a ValueError, as in encode()."""
    msg_type, body = encode_template(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)))
    with pytest.raises(ValueError):
        sign(msg_type, tid, body, b"key")
    with pytest.raises(ValueError):
        binding_success(tid, ("127.0.0.1", 1), b"key")


@given(
    tid=tids,
    password=st.text(min_size=1, max_size=64),
    other=st.text(max_size=64),
    address=addresses,
)
def test_prepared_key_signs_and_verifies_as_the_bytes_key(
    tid: bytes, password: str, other: str, address: Address
) -> None:
    """ShortTermKey (the HMAC state prepared once) is only faster: the same MACs, the same
    verdicts, however often it is used."""
    raw, prepared = short_term_key(password), ShortTermKey(password)
    msg_type, body = encode_template(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)))
    for _ in range(2):  # a MAC must not disturb the prepared state
        assert sign(msg_type, tid, body, prepared) == sign(msg_type, tid, body, raw)
        answer = binding_success(tid, address, prepared)
        assert answer == binding_success(tid, address, raw)
        assert check_integrity(decode(answer), prepared) and check_integrity(decode(answer), raw)
    assert check_integrity(decode(answer), ShortTermKey(other)) is (other == password)


@given(password=st.text(max_size=200), data=st.binary(max_size=600))
def test_prepared_key_is_hmac_sha1(password: str, data: bytes) -> None:
    """RFC 2104's construction, whatever the key's length (over 64 bytes it is hashed)."""
    key = ShortTermKey(password)
    assert key.mac(data) == hmac.digest(short_term_key(password), data, "sha1")
    assert key.mac(data) == key.mac(data)
