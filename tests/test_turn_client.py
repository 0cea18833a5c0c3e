"""The sans-IO TURN client at exact times, against a scripted server built from the STUN codec."""

from __future__ import annotations

import base64
import random
import struct
from collections.abc import Sequence
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unbroken import stun
from unbroken.stun import AttributeType, Message, MessageClass, Method
from unbroken.turn import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    ChannelBound,
    Deallocated,
    FramingError,
    NewLocalPortNeeded,
    PermissionInstalled,
    Redirected,
    Refreshed,
    StreamFramer,
    TurnClient,
    TurnEvent,
    TurnState,
    refresh_lead,
)
from unbroken.turn.framing import decode_channel_data, encode_channel_data

SERVER = ("192.0.2.1", 3478)
USER, PASSWORD, REALM = "alice", "wonderland", "example.org"
NONCE = b"nonce-1"
KEY = stun.long_term_key(USER, REALM, PASSWORD)
RELAYED = ("192.0.2.1", 50000)
MAPPED = ("198.51.100.7", 40000)
PEER = ("203.0.113.5", 6000)
U32 = struct.Struct(">I")


def make_client(**kwargs: object) -> TurnClient:
    return TurnClient(SERVER, USER, PASSWORD, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def one_request(client: TurnClient) -> Message:
    out = client.data_to_send()
    assert len(out) == 1, out
    return stun.decode(out[0])


def response(
    request: Message,
    other: Sequence[tuple[int, bytes]] | None = None,
    *,
    error: tuple[int, str] | None = None,
    key: bytes | None = KEY,
    sha256_key: bytes | None = None,
    xor_mapped: tuple[str, int] | None = None,
) -> bytes:
    message = Message(
        method=request.method,
        message_class=MessageClass.ERROR if error else MessageClass.SUCCESS,
        transaction_id=request.transaction_id,
        error_code=error,
        xor_mapped_address=xor_mapped,
        other=list(other or []),
    )
    if sha256_key is not None:
        return stun.encode(message, integrity_sha256_key=sha256_key)
    return stun.encode(message, integrity_key=key)


def challenge(
    request: Message, nonce: bytes = NONCE, extra: list[tuple[AttributeType, bytes]] | None = None
) -> bytes:
    other = [(AttributeType.REALM, REALM.encode()), (AttributeType.NONCE, nonce)] + (extra or [])
    return response(request, other, error=(401, "Unauthorized"), key=None)


def allocate_ok(
    request: Message, lifetime: int = 600, relayed: tuple[str, int] = RELAYED, **kw: object
) -> bytes:
    tid = request.transaction_id
    other = [
        (AttributeType.XOR_RELAYED_ADDRESS, stun.encode_xor_address(relayed, tid)),
        (AttributeType.LIFETIME, U32.pack(lifetime)),
    ]
    return response(request, other, xor_mapped=MAPPED, **kw)  # type: ignore[arg-type]


def events(client: TurnClient) -> list[TurnEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def allocated(**kwargs: object) -> tuple[TurnClient, Message]:
    """A client through 401 and a signed Allocate success at t=0; returns the signed request."""
    client = make_client(**kwargs)
    client.allocate(0.0)
    client.receive(challenge(one_request(client)), 0.0)
    signed = one_request(client)
    client.receive(allocate_ok(signed), 0.0)
    assert isinstance(events(client)[0], AllocationSucceeded)
    return client, signed


# ------------------------------------------------------------------ allocation


def test_allocate_401_then_signed_retry_then_success() -> None:
    client = make_client()
    client.allocate(0.0)
    first = one_request(client)
    assert first.method == Method.ALLOCATE and first.username is None
    assert not first.has_integrity
    assert first.find(AttributeType.REQUESTED_TRANSPORT) == bytes([17, 0, 0, 0])
    client.receive(challenge(first), 0.1)
    signed = one_request(client)
    assert signed.username == USER
    assert signed.find(AttributeType.REALM) == REALM.encode()
    assert signed.find(AttributeType.NONCE) == NONCE
    assert stun.check_integrity(signed, KEY)
    assert signed.transaction_id != first.transaction_id
    client.receive(allocate_ok(signed), 0.2)
    assert events(client) == [AllocationSucceeded(RELAYED, MAPPED, 600)]
    assert client.state is TurnState.ALLOCATED
    assert client.relayed_address == RELAYED
    # Refresh at 80% of the lifetime, counted from the request's first send (t=0.1).
    assert client.get_timer() == pytest.approx(0.1 + 480)


def test_stale_nonce_takes_the_new_nonce_and_gives_up_after_three() -> None:
    client = make_client()
    client.allocate(0.0)
    client.receive(challenge(one_request(client)), 0.0)
    request = one_request(client)
    for i in range(3):
        stale = response(
            request, [(AttributeType.NONCE, b"n%d" % i)], error=(438, "Stale Nonce"), key=None
        )
        client.receive(stale, 1.0)
        request = one_request(client)
        assert request.find(AttributeType.NONCE) == b"n%d" % i
        assert stun.check_integrity(request, KEY)
    client.receive(response(request, [(AttributeType.NONCE, b"n9")], error=(438, "x")), 1.0)
    assert events(client) == [AllocationFailed(438, "x")]
    assert client.state is TurnState.FAILED and client.get_timer() is None


def test_wrong_password_fails_with_401() -> None:
    client = make_client()
    client.allocate(0.0)
    client.receive(challenge(one_request(client)), 0.0)
    client.receive(challenge(one_request(client)), 0.0)
    assert events(client) == [AllocationFailed(401, "Unauthorized")]


def sha256_nonce() -> bytes:
    return b"obMatJos2" + base64.b64encode(b"\x80\x00\x00") + b"rest"


ALGORITHMS = struct.pack(">HHHH", 0x0001, 0, 0x0002, 0)


def test_sha256_is_used_when_the_server_offers_it() -> None:
    client = make_client()
    client.allocate(0.0)
    offer = [(AttributeType.PASSWORD_ALGORITHMS, ALGORITHMS)]
    client.receive(challenge(one_request(client), sha256_nonce(), offer), 0.0)
    signed = one_request(client)
    key256 = stun.long_term_key(USER, REALM, PASSWORD, "sha256")
    assert not signed.has_integrity  # SHA-1 MESSAGE-INTEGRITY not sent
    assert stun.check_integrity_sha256(signed, key256)
    assert signed.find(AttributeType.PASSWORD_ALGORITHMS) == ALGORITHMS
    assert signed.find(AttributeType.PASSWORD_ALGORITHM) == struct.pack(">HH", 2, 0)
    # A response signed with the MD5 key does not verify: ignored.
    client.receive(allocate_ok(signed), 0.0)
    assert client.state is TurnState.ALLOCATING and client.dropped["bad integrity"] == 1
    client.receive(allocate_ok(signed, key=None, sha256_key=key256), 0.0)
    assert isinstance(events(client)[0], AllocationSucceeded)


def test_password_algorithms_without_the_nonce_cookie_stays_md5() -> None:
    client = make_client()
    client.allocate(0.0)
    offer = [(AttributeType.PASSWORD_ALGORITHMS, ALGORITHMS)]
    client.receive(challenge(one_request(client), b"plain-nonce", offer), 0.0)
    signed = one_request(client)
    assert stun.check_integrity(signed, KEY)
    assert signed.find(AttributeType.PASSWORD_ALGORITHM) is None


def test_unreachable_server_times_out_after_the_rfc_8489_schedule() -> None:
    client = make_client()
    client.allocate(0.0)
    sends = [0.0]
    client.data_to_send()
    while (at := client.get_timer()) is not None:
        client.handle_timer(at)
        if client.data_to_send():
            sends.append(at)
    # RFC 8489 §6.2.1: 7 sends, RTO 0.5 s doubling, then 16 * RTO: 39.5 s in all.
    assert sends == pytest.approx([0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert events(client) == [AllocationFailed(701, "no response from the TURN server")]


def test_alternate_server_followed_once_second_is_an_error() -> None:
    client = make_client()
    client.allocate(0.0)
    first = one_request(client)
    alt = ("192.0.2.99", 3479)
    redirect = [(AttributeType.ALTERNATE_SERVER, stun.encode_address(alt))]
    client.receive(response(first, redirect, error=(300, "Try Alternate"), key=None), 0.0)
    assert events(client) == [Redirected(alt)]
    assert client.server == alt
    second = one_request(client)
    assert second.method == Method.ALLOCATE and second.username is None
    client.receive(response(second, redirect, error=(300, "Try Alternate"), key=None), 0.0)
    (failed,) = events(client)
    assert isinstance(failed, AllocationFailed) and failed.error_code == 300


def test_437_on_allocate_asks_for_a_new_port_once() -> None:
    client = make_client()
    client.allocate(0.0)
    client.receive(challenge(one_request(client)), 0.0)
    signed = one_request(client)
    client.receive(response(signed, error=(437, "Allocation Mismatch")), 0.0)
    assert events(client) == [NewLocalPortNeeded()]
    assert client.state is TurnState.WAITING_FOR_PORT and client.data_to_send() == []
    client.retry_from_new_port(1.0)
    fresh = one_request(client)
    assert fresh.method == Method.ALLOCATE and fresh.username is None  # new 5-tuple, new nonce
    client.receive(challenge(fresh), 1.0)
    client.receive(response(one_request(client), error=(437, "Allocation Mismatch")), 1.0)
    assert events(client) == [
        AllocationFailed(437, "Allocation Mismatch again from a new local port")
    ]


# ------------------------------------------------------------------ refresh


def test_refresh_before_expiry_retries_then_succeeds() -> None:
    client, _ = allocated()
    assert client.get_timer() == 480
    client.handle_timer(480.0)
    refresh = one_request(client)
    assert refresh.method == Method.REFRESH
    assert refresh.find(AttributeType.LIFETIME) == U32.pack(600)
    client.receive(response(refresh, error=(500, "Server Error")), 480.2)
    assert client.get_timer() == pytest.approx(485.2)  # retried after RETRY_DELAY
    client.handle_timer(485.2)
    retry = one_request(client)
    client.receive(response(retry, [(AttributeType.LIFETIME, U32.pack(600))]), 485.3)
    assert events(client) == [Refreshed(600)]
    assert client.expires_at == pytest.approx(485.2 + 600)


def test_allocation_lost_when_no_refresh_succeeds_before_expiry() -> None:
    client, _ = allocated()
    while (at := client.get_timer()) is not None and at < 700:
        client.handle_timer(at)
        client.data_to_send()
    assert events(client) == [AllocationLost("allocation expired: no refresh succeeded")]
    assert client.state is TurnState.FAILED


def test_refresh_lead_is_sooner_of_80_percent_and_a_minute_before() -> None:
    assert 600 - refresh_lead(600) == 480
    assert 300 - refresh_lead(300) == 240
    assert 3600 - refresh_lead(3600) == 2880
    assert 30 - refresh_lead(30) == 15


# ------------------------------------------------------------------ permissions, channels, data


def test_send_creates_permission_then_channel_and_refreshes_both() -> None:
    client, _ = allocated()
    assert client.send(PEER, b"one", 1.0)
    perm = one_request(client)  # data waits for the permission
    assert perm.method == Method.CREATE_PERMISSION
    peer_attr = perm.find(AttributeType.XOR_PEER_ADDRESS)
    assert peer_attr is not None
    assert stun.decode_xor_address(peer_attr, perm.transaction_id)[0] == PEER[0]
    client.receive(response(perm), 1.1)
    out = client.data_to_send()
    assert len(out) == 2
    send_ind, bind = stun.decode(out[0]), stun.decode(out[1])
    assert (send_ind.method, send_ind.message_class) == (Method.SEND, MessageClass.INDICATION)
    assert send_ind.find(AttributeType.DATA) == b"one"
    assert bind.method == Method.CHANNEL_BIND
    assert bind.find(AttributeType.CHANNEL_NUMBER) == U32.pack(0x4000 << 16)
    client.receive(response(bind), 1.2)
    assert events(client) == [PermissionInstalled(PEER[0]), ChannelBound(PEER, 0x4000)]
    client.send(PEER, b"two", 2.0)
    (frame,) = client.data_to_send()
    assert decode_channel_data(frame) == (0x4000, b"two")
    # Permission refreshed 240 s after its request (t=1.0), the channel 480 s after its own.
    assert client.get_timer() == pytest.approx(241.0)
    client.handle_timer(241.0)
    again = one_request(client)
    assert again.method == Method.CREATE_PERMISSION
    client.receive(response(again), 241.1)
    assert client.get_timer() == pytest.approx(480.0)  # the allocation's refresh comes next
    client.handle_timer(480.0)
    refresh = one_request(client)
    assert refresh.method == Method.REFRESH
    client.receive(response(refresh, [(AttributeType.LIFETIME, U32.pack(600))]), 480.1)
    # At 481.1: the permission's second refresh (241 + 240) and the channel's (1.1 + 480).
    client.handle_timer(481.1)
    methods = [stun.decode(d).method for d in client.data_to_send()]
    assert methods == [Method.CREATE_PERMISSION, Method.CHANNEL_BIND]


def data_indication(peer: tuple[str, int], payload: bytes, tid: bytes = b"\x01" * 12) -> bytes:
    message = Message(
        method=Method.DATA,
        message_class=MessageClass.INDICATION,
        transaction_id=tid,
        other=[
            (AttributeType.XOR_PEER_ADDRESS, stun.encode_xor_address(peer, tid)),
            (AttributeType.DATA, payload),
        ],
    )
    return stun.encode(message, fingerprint=False)


def test_data_indication_needs_a_permission() -> None:
    client, _ = allocated()
    assert client.receive(data_indication(PEER, b"sneaky"), 1.0) == []
    assert client.dropped["Data indication without permission"] == 1
    client.create_permission(PEER[0], 1.0)
    client.receive(response(one_request(client)), 1.0)
    assert client.receive(data_indication(PEER, b"hello"), 1.1) == [(PEER, b"hello")]


def test_channel_data_on_unknown_channel_is_dropped() -> None:
    client, _ = allocated()
    frame = encode_channel_data(0x4001, b"x", stream=False)
    assert client.receive(frame, 1.0) == []
    assert client.dropped["unknown channel"] == 1


def test_close_deallocates_with_lifetime_zero() -> None:
    client, _ = allocated()
    client.close(10.0)
    dealloc = one_request(client)
    assert dealloc.method == Method.REFRESH
    assert dealloc.find(AttributeType.LIFETIME) == U32.pack(0)
    assert stun.check_integrity(dealloc, KEY)
    client.receive(response(dealloc, [(AttributeType.LIFETIME, U32.pack(0))]), 10.1)
    assert events(client) == [Deallocated(True)]
    assert client.state is TurnState.CLOSED and client.get_timer() is None


def test_close_with_a_437_answer_is_confirmed() -> None:
    client, _ = allocated()
    client.close(10.0)
    client.receive(response(one_request(client), error=(437, "Allocation Mismatch")), 10.1)
    assert events(client) == [Deallocated(True)]


# ------------------------------------------------------------------ hostile responses


def pending_signed_allocate() -> tuple[TurnClient, Message]:
    client = make_client()
    client.allocate(0.0)
    client.receive(challenge(one_request(client)), 0.0)
    return client, one_request(client)


def test_response_with_a_wrong_transaction_id_is_ignored() -> None:
    client, signed = pending_signed_allocate()
    other = Message(signed.method, signed.message_class, b"\x09" * 12, raw=b"")
    client.receive(allocate_ok(other), 0.0)
    assert client.state is TurnState.ALLOCATING and client.dropped["unknown transaction"] == 1


def test_success_with_bad_or_no_integrity_is_ignored() -> None:
    client, signed = pending_signed_allocate()
    client.receive(allocate_ok(signed, key=b"\x00" * 16), 0.0)
    client.receive(allocate_ok(signed, key=None), 0.0)
    assert client.state is TurnState.ALLOCATING and client.relayed_address is None
    assert client.dropped["bad integrity"] == 1 and client.dropped["unsigned success"] == 1
    client.receive(allocate_ok(signed), 0.0)  # the real one still works
    # cast: mypy keeps the ALLOCATING narrowing from above across receive()
    assert cast(TurnState, client.state) is TurnState.ALLOCATED


def test_signed_success_missing_relayed_address_is_reported_and_released() -> None:
    client, signed = pending_signed_allocate()
    client.receive(response(signed, [(AttributeType.LIFETIME, U32.pack(600))]), 0.0)
    assert events(client) == [AllocationFailed(701, "Allocate success without XOR-RELAYED-ADDRESS")]
    release = one_request(client)  # the server may hold an allocation: release it
    assert release.method == Method.REFRESH and release.find(AttributeType.LIFETIME) == U32.pack(0)


@pytest.mark.parametrize(
    ("lifetime", "relayed", "ok"),
    [
        (0, RELAYED, False),
        (0xFFFFFFFF, RELAYED, True),
        (600, ("2001:db8::1", 50000), False),
    ],
)
def test_absurd_lifetime_or_wrong_family(lifetime: int, relayed: tuple[str, int], ok: bool) -> None:
    client, signed = pending_signed_allocate()
    client.receive(allocate_ok(signed, lifetime=lifetime, relayed=relayed), 0.0)
    (event,) = events(client)
    if ok:
        assert isinstance(event, AllocationSucceeded)
        assert event.lifetime == 86400  # clamped to a day
        timer = client.get_timer()
        assert timer is not None and timer <= 86400
    else:
        assert isinstance(event, AllocationFailed) and event.error_code == 701


def test_error_response_with_bad_integrity_is_ignored() -> None:
    client, signed = pending_signed_allocate()
    client.receive(response(signed, error=(486, "Quota"), key=b"\x01" * 16), 0.0)
    assert client.state is TurnState.ALLOCATING
    client.receive(response(signed, error=(486, "Allocation Quota Reached")), 0.0)
    assert events(client) == [AllocationFailed(486, "Allocation Quota Reached")]


def test_unsigned_300_to_a_signed_allocate_is_not_followed() -> None:
    client, signed = pending_signed_allocate()
    redirect = [(AttributeType.ALTERNATE_SERVER, stun.encode_address(("192.0.2.66", 3478)))]
    client.receive(response(signed, redirect, error=(300, "Try Alternate"), key=None), 0.0)
    assert client.server == SERVER
    (event,) = events(client)
    assert isinstance(event, AllocationFailed) and event.error_code == 300


def flip(data: bytes, index: int, mask: int) -> bytes:
    out = bytearray(data)
    out[index % len(out)] ^= mask
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    )
)
def test_mutated_signed_responses_never_change_state(mutation: tuple[str, int, int]) -> None:
    """Any change to a signed Allocate success is never acted on, and never raises."""
    client, signed = pending_signed_allocate()
    good = allocate_ok(signed)
    kind, index, value = mutation
    if kind == "flip":
        bad = flip(good, index, value)
    elif kind == "cut":
        bad = good[: index % len(good)]
    else:
        i = index % (len(good) + 1)
        bad = good[:i] + bytes([value]) * 4 + good[i:]
    client.receive(bad, 0.0)
    # Only bytes outside MESSAGE-INTEGRITY's cover (the length field, FINGERPRINT) may
    # differ in a response that is acted on: then it is the genuine one, verified.
    covered = len(good) - 8
    if client.state is not TurnState.ALLOCATING:
        assert bad[:2] == good[:2] and bad[4:covered] == good[4:covered]
    else:
        assert client.relayed_address is None and events(client) == []
        client.receive(good, 0.0)  # and the genuine response is still accepted
    assert client.state is TurnState.ALLOCATED
    assert client.relayed_address == RELAYED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.sampled_from(["udp", "tcp"]))
def test_arbitrary_bytes_from_the_server_never_raise(chunks: list[bytes], transport: str) -> None:
    client, _ = allocated(transport=transport)
    client.create_permission(PEER[0], 1.0)
    for chunk in chunks:
        client.receive(chunk, 1.0)
    assert client.state in (TurnState.ALLOCATED, TurnState.FAILED)


# ------------------------------------------------------------------ streams


def test_tcp_client_reassembles_responses_split_anywhere() -> None:
    client = make_client(transport="tcp")
    client.allocate(0.0)
    for byte in challenge(one_request(client)):
        client.receive(bytes([byte]), 0.0)
    signed = one_request(client)
    whole = allocate_ok(signed) + encode_channel_data(0x4000, b"early", stream=True)
    client.receive(whole[:7], 0.0)
    client.receive(whole[7:], 0.0)
    assert client.state is TurnState.ALLOCATED
    # No stream timeout retransmits over TCP: one send, one deadline at 39.5 s.
    client2 = make_client(transport="tcp")
    client2.allocate(0.0)
    client2.data_to_send()
    assert client2.get_timer() == 39.5
    client2.handle_timer(39.5)
    assert client2.data_to_send() == []
    assert isinstance(events(client2)[0], AllocationFailed)


def test_junk_on_the_stream_fails_the_allocation() -> None:
    client, _ = allocated(transport="tcp")
    client.receive(b"\xff\xff\xff\xff", 1.0)
    (event,) = events(client)
    assert isinstance(event, AllocationLost)
    assert client.state is TurnState.FAILED


def test_channel_data_is_padded_on_streams_only() -> None:
    assert len(encode_channel_data(0x4000, b"abcde", stream=True)) == 12
    assert len(encode_channel_data(0x4000, b"abcde", stream=False)) == 9
    framer = StreamFramer()
    padded = encode_channel_data(0x4000, b"abcde", stream=True)
    assert framer.feed(padded + padded[:3]) == [padded]
    assert framer.buffered == 3
    with pytest.raises(FramingError):
        StreamFramer().feed(b"\x80\x00\x00\x00")
