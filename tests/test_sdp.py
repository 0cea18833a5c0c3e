"""Tests for unbroken.sdp: fixtures from Chromium and Firefox, grammar errors, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unbroken.errors import SyntaxError_
from unbroken.sdp import (
    MAX_MEDIA_SECTIONS,
    MediaSection,
    Origin,
    SdpError,
    SessionDescription,
    ice_ufrags,
    parse,
    serialize,
    validate_for_webrtc,
)

DATA = Path(__file__).parent / "data" / "sdp"
FIXTURES = sorted(p.name for p in DATA.glob("*.sdp"))


def fixture(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


def edit(text: str, drop: tuple[str, ...] = (), replace: dict[str, str] | None = None) -> str:
    """Remove every line starting with one of `drop`, then apply literal replacements."""
    lines = [line for line in text.split("\r\n") if not (line and line.startswith(drop))]
    out = "\r\n".join(lines)
    for old, new in (replace or {}).items():
        assert old in out, old
        out = out.replace(old, new)
    return out


MINIMAL = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def with_media(*lines: str, session: tuple[str, ...] = ()) -> str:
    """A minimal description with extra session lines and one data m-section."""
    body = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        *session,
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        *lines,
    ]
    return "\r\n".join(body) + "\r\n"


# ---------------------------------------------------------------- fixtures


def test_fixtures_exist() -> None:
    assert {
        "chrome_offer.sdp",
        "chrome_answer.sdp",
        "chrome_restart_offer.sdp",
        "chrome_datachannel_offer.sdp",
        "firefox_offer.sdp",
        "firefox_answer.sdp",
        "firefox_restart_offer.sdp",
        "jsep_max_bundle_offer.sdp",
    } <= set(FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_parses_round_trips_and_validates(name: str) -> None:
    text = fixture(name)
    desc = parse(text)
    out = serialize(desc)
    assert out.endswith("\r\n")
    assert "\n" not in out.replace("\r\n", "")
    assert parse(out) == desc
    assert serialize(parse(out)) == out
    validate_for_webrtc(desc, "answer" if "answer" in name else "offer")
    # Every input line survives, though perhaps in another place.
    assert sorted(out.split("\r\n")) == sorted(_normalized_lines(text)), (
        "a line was lost or changed on the round trip"
    )


def _normalized_lines(text: str) -> list[str]:
    # The only value the parser rewrites in the fixtures: Chromium's "msid-semantic: WMS".
    return [line.replace("a=msid-semantic: ", "a=msid-semantic:") for line in text.split("\r\n")]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_parses_with_lf_and_as_bytes(name: str) -> None:
    text = fixture(name)
    desc = parse(text)
    assert parse(text.replace("\r\n", "\n")) == desc
    assert parse(text.encode()) == desc
    assert parse(text.rstrip("\r\n")) == desc


def test_chrome_offer_fields() -> None:
    desc = parse(fixture("chrome_offer.sdp"))
    assert desc.origin == Origin("-", 1902681213917399047, 2, "IN", "IP4", "127.0.0.1")
    assert desc.name == "-" and desc.timing == "0 0"
    assert desc.group_bundle == [["0", "1", "2"]]
    assert desc.extmap_allow_mixed
    assert desc.msid_semantic == "WMS 2c39a94e-1dd8-466f-8630-0f7a1ccdddc1"
    assert not desc.ice_lite and desc.ice_ufrag is None and desc.fingerprints == []
    assert [m.kind for m in desc.media] == ["audio", "video", "application"]
    assert [m.mid for m in desc.media] == ["0", "1", "2"]

    audio, video, data = desc.media
    assert audio.port == 46243 and audio.port_count is None
    assert audio.protocol == "UDP/TLS/RTP/SAVPF"
    assert audio.formats == ["111", "63", "9", "0", "8", "13", "110", "126"]
    assert audio.connection == "IN IP4 192.0.2.20"
    assert audio.ice_ufrag == "13Zd" and audio.ice_pwd == "gTEEvSoUW4gLuEbp8d/LKdBE"
    assert audio.ice_options == ["trickle"]
    assert audio.fingerprints == [
        (
            "sha-256",
            "7F:0E:DC:B8:C6:68:25:B2:CD:C1:47:DD:BD:60:03:63:"
            "90:20:2E:BE:71:DA:1B:12:CA:63:DF:DC:84:A1:BE:7D",
        )
    ]
    assert audio.setup == "actpass" and audio.direction == "sendrecv"
    assert audio.rtcp_mux and audio.rtcp_rsize
    assert audio.rtpmap[111] == "opus/48000/2" and audio.fmtp[111] == "minptime=10;useinbandfec=1"
    assert audio.fmtp[63] == "111/111"
    assert ("111", "transport-cc") in audio.rtcp_fb
    assert audio.extmap[0] == "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    assert audio.ssrc[0] == "2420136188 cname:Vd3Ao6Xx0LqkR9t2"
    assert audio.msid == [
        "2c39a94e-1dd8-466f-8630-0f7a1ccdddc1 937ec0fa-004c-4a63-ae4e-fb2dbcd62356"
    ]
    assert audio.attributes == [("rtcp", "9 IN IP4 0.0.0.0")]
    assert len(audio.candidates) == 4 and audio.end_of_candidates
    assert audio.candidates[0] == (
        "candidate:1467250027 1 udp 2122260223 192.0.2.20 46243 typ host "
        "generation 0 ufrag 13Zd network-id 1 network-cost 10"
    )
    assert all(" generation 0 ufrag 13Zd " in c for c in audio.candidates)

    assert video.ssrc_group == ["FID 511355017 1920647707"]
    assert ("96", "nack pli") in video.rtcp_fb and video.fmtp[97] == "apt=96"
    assert len(video.extmap) == 11

    assert data.protocol == "UDP/DTLS/SCTP" and data.formats == ["webrtc-datachannel"]
    assert data.sctp_port == 5000 and data.max_message_size == 262144
    assert data.rtpmap == {} and data.direction is None and not data.rtcp_mux


def test_chrome_restart_offer_changes_credentials_and_generation() -> None:
    first = parse(fixture("chrome_offer.sdp"))
    restart = parse(fixture("chrome_restart_offer.sdp"))
    assert restart.origin.session_id == first.origin.session_id
    assert restart.origin.session_version == first.origin.session_version + 1
    for index in range(3):
        old_ufrag, old_pwd = first.media_ice_credentials(index)
        new_ufrag, new_pwd = restart.media_ice_credentials(index)
        assert (new_ufrag, new_pwd) == ("Rj7/", "YS1d+p4htFMJXUPbP130yXtD")
        assert new_ufrag != old_ufrag and new_pwd != old_pwd
        # DTLS continues across an ICE restart: same certificate.
        assert restart.fingerprint_for(index) == first.fingerprint_for(index)
        assert all(" generation 1 ufrag Rj7/ " in c for c in restart.media[index].candidates)


def test_chrome_answer_is_active() -> None:
    desc = parse(fixture("chrome_answer.sdp"))
    assert [desc.setup_for(i) for i in range(3)] == ["active"] * 3
    assert desc.media_ice_credentials(2) == ("ry3Z", "LqVyy5hTwVXoNZ+Da9GiEYXA")


def test_firefox_offer_uses_session_level_fingerprint_and_ice_options() -> None:
    desc = parse(fixture("firefox_offer.sdp"))
    assert desc.origin.username == "mozilla...THIS_IS_SDPARTA-128.3.1"
    assert desc.origin.address == "0.0.0.0"
    assert desc.msid_semantic == "WMS *"
    assert desc.ice_options == ["trickle"]
    assert len(desc.fingerprints) == 1 and desc.fingerprints[0][0] == "sha-256"
    for index, section in enumerate(desc.media):
        assert section.fingerprints == [] and section.ice_options == []
        assert desc.fingerprint_for(index) == desc.fingerprints
        assert desc.ice_options_for(index) == ["trickle"]
        assert desc.media_ice_credentials(index) == ("5370f950", "c2acac242b8459be1c6c73b61b13826b")
    video = desc.media[1]
    assert (
        video.extmap[3] == "6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
    )
    assert video.fmtp[126].startswith("profile-level-id=42e01f")
    assert desc.media[2].max_message_size == 1073741823
    assert desc.media[2].direction == "sendrecv"


def test_firefox_restart_offer() -> None:
    first = parse(fixture("firefox_offer.sdp"))
    restart = parse(fixture("firefox_restart_offer.sdp"))
    assert restart.origin.session_version == first.origin.session_version + 1
    assert restart.media_ice_credentials(0) != first.media_ice_credentials(0)
    assert restart.fingerprint_for(0) == first.fingerprint_for(0)


def test_max_bundle_offer_resolves_transport_from_bundle_tag() -> None:
    desc = parse(fixture("jsep_max_bundle_offer.sdp"))
    audio, video, data = desc.media
    assert not audio.bundle_only and video.bundle_only and data.bundle_only
    assert video.port == 0 and not video.rejected
    assert video.ice_ufrag is None and video.fingerprints == [] and video.setup is None
    assert desc.bundle_tag_index(1) == 0 and desc.bundle_tag_index(0) == 0
    assert desc.bundle_group(2) == ["a1", "v1", "d1"]
    assert desc.media_ice_credentials(1) == ("ATEn1v9DoTMB9J4r", "AtSK0WpNtpUjkY4+86js7ZQl")
    assert desc.fingerprint_for(2) == audio.fingerprints
    assert desc.setup_for(2) == "actpass"
    assert desc.ice_options_for(2) == ["trickle", "ice2"]
    assert ("tls-id", "91bbf309c0990a6bec11e38ba2933cee") in audio.attributes
    assert audio.attribute_values("rtcp-mux-only") == [None]
    assert audio.attribute_values("maxptime") == ["120"]


# ---------------------------------------------------------------- grammar


def test_minimal_description() -> None:
    desc = parse(MINIMAL)
    assert desc == SessionDescription(origin=Origin("-", 1, 1, "IN", "IP4", "127.0.0.1"))
    assert serialize(desc) == MINIMAL
    validate_for_webrtc(desc)  # no m-sections: nothing to check


LONG = "x" * (64 * 1024)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "empty"),
        ("\r\n\r\n", None, "empty"),
        ("o=- 1 1 IN IP4 127.0.0.1\r\nv=0\r\n", 1, "first line must be v="),
        ("v=1\r\n" + MINIMAL[5:], 1, "version"),
        ("v=0\r\ns=-\r\nt=0 0\r\n", None, "missing o="),
        ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nt=0 0\r\n", None, "missing s="),
        ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n", None, "missing t="),
        (MINIMAL + "o=- 1 1 IN IP4 127.0.0.1\r\n", 5, "more than one o="),
        (MINIMAL + "s=again\r\n", 5, "more than one s="),
        (MINIMAL + "v=0\r\n", 5, "only as the first line"),
        ("v=0\r\no=- x 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 2, "o= must be"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\nt=0 0\r\n", 2, "o= must be"),
        ("v=0\r\no=- " + "9" * 5000 + " 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", 2, "session id"),
        (MINIMAL.replace("t=0 0", "t=now"), 4, "t= must be"),
        (MINIMAL + "c=IN IP4\r\n", 5, "c= must be"),
        (MINIMAL + "b=AS\r\n", 5, "b= must be"),
        (MINIMAL + "b=AS:" + "9" * 30 + "\r\n", 5, "b= must be"),
        (MINIMAL + "nonsense\r\n", 5, "expected <type>=<value>"),
        (MINIMAL + "A=upper\r\n", 5, "expected <type>=<value>"),
        (MINIMAL + " a=indented\r\n", 5, "expected <type>=<value>"),
        (MINIMAL + "\r\na=after-blank\r\n", 5, "expected <type>=<value>"),
        (MINIMAL + "a=foo\rbar\r\n", 5, "CR or NUL"),
        (MINIMAL + "a=foo\x00\r\n", 5, "CR or NUL"),
        (MINIMAL + "a=" + LONG + "\r\n", 5, "over 65536 bytes"),
        (MINIMAL + "a=\r\n", 5, "bad attribute name"),
        (MINIMAL + "a=na me:x\r\n", 5, "bad attribute name"),
        (MINIMAL + "m=audio 70000 RTP/AVP 0\r\n", 5, "out of range"),
        (MINIMAL + "m=audio nine RTP/AVP 0\r\n", 5, "m= must be"),
        (MINIMAL + "m=audio 9 RTP/AVP\r\n", 5, "m= must be"),
        (MINIMAL + "m=audio 9 RTP/AVP 0  8\r\n", 5, "m= must be"),
        (MINIMAL + "m=audio 9/0 RTP/AVP 0\r\n", 5, "port count"),
        (MINIMAL + "m=audio 9 RTP/AVP opus\r\n", 5, "payload type"),
        (MINIMAL + "m=audio 9 RTP/AVP 128\r\n", 5, "out of range"),
        (MINIMAL + "m=audio 9 RTP/AVP " + "1" * 40 + "\r\n", 5, "payload type"),
        (with_media("o=- 1 1 IN IP4 127.0.0.1"), 7, "not allowed inside an m-section"),
        (with_media("t=0 0"), 7, "not allowed inside an m-section"),
        (with_media("c=IN IP4 0.0.0.0"), 7, "more than one c="),
        (with_media("a=ice-ufrag:abc"), 7, "4 to 256 ice-chars"),
        (with_media("a=ice-ufrag:ab-cd"), 7, "4 to 256 ice-chars"),
        (with_media("a=ice-ufrag:" + "a" * 257), 7, "4 to 256 ice-chars"),
        (with_media("a=ice-ufrag:abcd "), 7, "4 to 256 ice-chars"),
        (with_media("a=ice-ufrag:abcé"), 7, "4 to 256 ice-chars"),
        (with_media("a=ice-ufrag"), 7, "needs a value"),
        (with_media("a=ice-ufrag:abcd", "a=ice-ufrag:abcd"), 8, "more than one a=ice-ufrag"),
        (with_media("a=ice-pwd:" + "a" * 21), 7, "22 to 256 ice-chars"),
        (with_media("a=ice-pwd:" + "a" * 21 + "="), 7, "22 to 256 ice-chars"),
        (with_media(session=("a=ice-pwd:short",)), 5, "22 to 256 ice-chars"),
        (with_media("a=ice-options:"), 7, "bad a=ice-options tag"),
        (with_media("a=ice-options:trickle  ice2"), 7, "bad a=ice-options tag"),
        (with_media("a=fingerprint:sha-256"), 7, "a=fingerprint must be"),
        (with_media("a=fingerprint:sha-256 ZZ:00"), 7, "a=fingerprint must be"),
        (with_media("a=fingerprint:sha-256 0:00"), 7, "a=fingerprint must be"),
        (with_media("a=fingerprint:sha-256 00:11:"), 7, "a=fingerprint must be"),
        (with_media("a=fingerprint:sha-256  00:11"), 7, "a=fingerprint must be"),
        (with_media("a=fingerprint:sha-256 00:11"), 7, "needs 32 bytes"),
        (with_media("a=fingerprint:sha-1 " + ":".join(["AB"] * 32)), 7, "needs 20 bytes"),
        (with_media("a=setup:client"), 7, "a=setup must be one of"),
        (with_media("a=setup:active", "a=setup:passive"), 8, "more than one a=setup"),
        (with_media("a=mid:0", "a=mid:1"), 8, "more than one a=mid"),
        (with_media("a=mid:"), 7, "bad a=mid"),
        (with_media("a=mid:a b"), 7, "bad a=mid"),
        (with_media("a=candidate"), 7, "needs a value"),
        (with_media("a=candidate: "), 7, "empty a=candidate"),
        (with_media("a=end-of-candidates:0"), 7, "takes no value"),
        (with_media("a=rtcp-mux:yes"), 7, "takes no value"),
        (with_media("a=rtcp-mux", "a=rtcp-mux"), 8, "more than one a=rtcp-mux"),
        (with_media("a=sendrecv", "a=recvonly"), 8, "more than one direction"),
        (with_media("a=sctp-port:99999"), 7, "out of range"),
        (with_media("a=sctp-port:-1"), 7, "must be an integer"),
        (with_media("a=sctp-port:５０００"), 7, "must be an integer"),
        (with_media("a=max-message-size:" + "9" * 25), 7, "must be an integer"),
        (with_media("a=max-message-size:" + "9" * 21), 7, "out of range"),
        (with_media("a=rtpmap:abc opus/48000"), 7, "a=rtpmap must be"),
        (with_media("a=rtpmap:200 opus/48000"), 7, "out of range"),
        (with_media("a=rtpmap:111 opus"), 7, "a=rtpmap must be"),
        (with_media("a=rtpmap:111 opus/48000", "a=rtpmap:111 opus/48000"), 8, "second a=rtpmap"),
        (with_media("a=fmtp:111"), 7, "a=fmtp must be"),
        (with_media("a=fmtp:999 x=1"), 7, "out of range"),
        (with_media("a=fmtp:111 a=1", "a=fmtp:111 b=2"), 8, "second a=fmtp"),
        (with_media("a=rtcp-fb:111"), 7, "a=rtcp-fb must be"),
        (with_media("a=rtcp-fb:x nack"), 7, "a=rtcp-fb must be"),
        (with_media("a=extmap:x urn:foo"), 7, "a=extmap must be"),
        (with_media("a=extmap:1/sideways urn:foo"), 7, "a=extmap must be"),
        (with_media("a=ssrc:1"), 7, "a=ssrc must be"),
        (with_media("a=ssrc:4294967296 cname:x"), 7, "out of range"),
        (with_media("a=ssrc-group:FID 1 x"), 7, "a=ssrc-group must be"),
        (with_media("a=ssrc-group:FID 1 4294967296"), 7, "out of range"),
        (with_media("a=msid:a b c"), 7, "a=msid must be"),
        (with_media(session=("a=group:BUNDLE 0 0",)), 5, "same mid twice"),
        (with_media(session=("a=group:BUNDLE ",)), 5, "bad mid"),
        (with_media(session=("a=group",)), 5, "needs a value"),
        (with_media(session=("a=ice-lite", "a=ice-lite")), 6, "more than one a=ice-lite"),
        (with_media(session=("a=ice-lite:1",)), 5, "takes no value"),
        (with_media(session=("a=msid-semantic",)), 5, "needs a value"),
    ],
)
def test_grammar_errors(text: str, line: int | None, message: str) -> None:
    with pytest.raises(SdpError) as info:
        parse(text)
    assert message in str(info.value)
    assert info.value.line == line
    if line is not None:
        assert str(info.value).startswith(f"line {line}: ")


def test_size_limits() -> None:
    many = MINIMAL + "m=audio 0 RTP/AVP 0\r\n" * MAX_MEDIA_SECTIONS
    assert len(parse(many).media) == MAX_MEDIA_SECTIONS
    with pytest.raises(SdpError, match=r"more than 1000 m= sections"):
        parse(many + "m=audio 0 RTP/AVP 0\r\n")
    big = MINIMAL + ("a=x-filler:" + "y" * 1000 + "\r\n") * 1100
    with pytest.raises(SdpError, match=r"over 1048576 bytes"):
        parse(big)
    with pytest.raises(SdpError, match=r"over 1048576 bytes"):
        parse(big.encode())
    # The byte count, not the character count, is what is bounded.
    wide = MINIMAL + "a=x-wide:" + "€" * 30_000 + "\r\n"
    with pytest.raises(SdpError, match=r"line is over 65536 bytes"):
        parse(wide)
    fits = MINIMAL + "a=x-wide:" + "€" * 20_000 + "\r\n"
    assert parse(fits).attributes == [("x-wide", "€" * 20_000)]


@pytest.mark.parametrize(
    "bad",
    [b"v=0\r\n\xff\xfe", "v=0\r\ns=\udc80\r\n", None, 42, ["v=0"]],
    ids=["bad-utf8", "lone-surrogate", "none", "int", "list"],
)
def test_bad_input_types_and_encodings_raise_sdp_error(bad: object) -> None:
    with pytest.raises(SdpError):
        parse(bad)  # type: ignore[arg-type]


def test_sdp_error_is_value_error_and_syntax_error() -> None:
    with pytest.raises(ValueError):
        parse("garbage")
    with pytest.raises(SyntaxError_):
        parse("garbage")


def test_ice_credential_length_bounds() -> None:
    for ufrag in ("abcd", "a" * 256, "+/+/", "AZaz09+/"):
        assert parse(with_media(f"a=ice-ufrag:{ufrag}")).media[0].ice_ufrag == ufrag
    for pwd in ("a" * 22, "b" * 256, "0123456789+/ABCDEFGHIJ"):
        assert parse(with_media(f"a=ice-pwd:{pwd}")).media[0].ice_pwd == pwd
    with pytest.raises(SdpError):
        parse(with_media("a=ice-pwd:" + "b" * 257))


def test_ice_pwd_is_not_echoed_in_errors() -> None:
    secret = "s3cr3t-password-with-a-dash"
    with pytest.raises(SdpError) as info:
        parse(with_media(f"a=ice-pwd:{secret}"))
    assert secret not in str(info.value)


def test_fingerprint_is_normalized() -> None:
    digest = ":".join(f"{i:02x}" for i in range(0xA0, 0xC0))
    desc = parse(with_media(f"a=fingerprint:SHA-256 {digest}"))
    assert desc.media[0].fingerprints == [("sha-256", digest.upper())]
    assert f"a=fingerprint:sha-256 {digest.upper()}\r\n" in serialize(desc)
    # Several fingerprints, and an algorithm whose length we do not know, are kept.
    desc = parse(with_media(f"a=fingerprint:sha-256 {digest}", "a=fingerprint:x-new-hash 01:02"))
    assert [alg for alg, _ in desc.media[0].fingerprints] == ["sha-256", "x-new-hash"]


def test_unknown_lines_and_attributes_are_kept_in_order() -> None:
    text = (
        "v=0\r\n"
        "o=- 1 1 IN IP4 127.0.0.1\r\n"
        "s=session\r\n"
        "t=0 0\r\n"
        "r=604800 3600 0 90000\r\n"
        "k=prompt\r\n"
        "u=http://example.com/\r\n"  # out of RFC order: normalized
        "i=information\r\n"
        "x=unknown session line\r\n"
        "a=tool:handwritten\r\n"
        "a=group:LS 0\r\n"
        "a=x-flag\r\n"
        "a=x-empty:\r\n"
        "a=recvonly\r\n"
        "a=end-of-candidates\r\n"
        "m=audio 9 RTP/AVP 0\r\n"
        "k=clear:secret\r\n"
        "i=audio stream\r\n"
        "y=unknown media line\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        "b=AS:64\r\n"
        "a=ptime:20\r\n"
        "a=x-custom:value: with colons\r\n"
        "a=ice-lite\r\n"
        "a=fmtp:webrtc-datachannel max-message-size=1000\r\n"
        "a=ptime:40\r\n"
    )
    desc = parse(text)
    assert desc.extra_lines == [
        ("i", "information"),
        ("u", "http://example.com/"),
        ("r", "604800 3600 0 90000"),
        ("k", "prompt"),
        ("x", "unknown session line"),
    ]
    assert desc.attributes == [
        ("tool", "handwritten"),
        ("group", "LS 0"),
        ("x-flag", None),
        ("x-empty", ""),
        ("recvonly", None),
        ("end-of-candidates", None),
    ]
    section = desc.media[0]
    assert section.extra_lines == [
        ("i", "audio stream"),
        ("k", "clear:secret"),
        ("y", "unknown media line"),
    ]
    assert section.bandwidths == ["AS:64"]
    assert section.attributes == [
        ("ptime", "20"),
        ("x-custom", "value: with colons"),
        ("ice-lite", None),
        ("fmtp", "webrtc-datachannel max-message-size=1000"),
        ("ptime", "40"),
    ]
    out = serialize(desc)
    assert parse(out) == desc
    lines = out.split("\r\n")
    assert lines[:9] == [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=session",
        "i=information",
        "u=http://example.com/",
        "t=0 0",
        "r=604800 3600 0 90000",
        "k=prompt",
        "x=unknown session line",
    ]
    m = lines.index("m=audio 9 RTP/AVP 0")
    assert lines[m + 1 : m + 6] == [
        "i=audio stream",
        "c=IN IP4 0.0.0.0",
        "b=AS:64",
        "k=clear:secret",
        "y=unknown media line",
    ]


def test_repeated_time_descriptions_keep_their_repeat_lines() -> None:
    text = MINIMAL.replace("t=0 0\r\n", "t=1 2\r\nr=10 1 0\r\nt=3 4\r\nr=20 1 0\r\n")
    desc = parse(text)
    assert desc.timing == "1 2"
    assert desc.extra_lines == [("r", "10 1 0"), ("t", "3 4"), ("r", "20 1 0")]
    assert "t=1 2\r\nr=10 1 0\r\nt=3 4\r\nr=20 1 0\r\n" in serialize(desc)


def test_session_level_values() -> None:
    pwd = "p" * 22
    text = with_media(
        session=(
            "c=IN IP6 ::1",
            "b=CT:1000",
            "a=ice-lite",
            "a=ice-ufrag:sess",
            f"a=ice-pwd:{pwd}",
            "a=ice-options:ice2 trickle",
            "a=setup:passive",
            "a=msid-semantic:  WMS",
            "a=group:BUNDLE",
            "a=extmap-allow-mixed",
            "a=extmap-allow-mixed",
        )
    )
    desc = parse(text)
    assert desc.connection == "IN IP6 ::1" and desc.bandwidths == ["CT:1000"]
    assert desc.ice_lite and desc.extmap_allow_mixed
    assert desc.ice_options == ["ice2", "trickle"]
    assert desc.msid_semantic == "WMS"
    assert desc.group_bundle == [[]]
    assert desc.media_ice_credentials(0) == ("sess", pwd)
    assert desc.setup_for(0) == "passive"
    assert desc.ice_options_for(0) == ["ice2", "trickle"]
    assert parse(serialize(desc)) == desc


def test_media_level_credentials_win_over_session_level() -> None:
    pwd_s, pwd_m = "s" * 22, "m" * 22
    desc = parse(
        with_media(
            "a=ice-ufrag:media",
            f"a=ice-pwd:{pwd_m}",
            session=("a=ice-ufrag:sess", f"a=ice-pwd:{pwd_s}"),
        )
    )
    assert desc.media_ice_credentials(0) == ("media", pwd_m)
    # Per attribute: a media-level ufrag with only a session-level pwd.
    desc.media[0].ice_pwd = None
    assert desc.media_ice_credentials(0) == ("media", pwd_s)


def test_port_count_and_rtcp_fb_wildcard() -> None:
    desc = parse(
        MINIMAL + "m=video 49170/2 RTP/AVP 31\r\na=rtcp-fb:* nack\r\na=rtcp-fb:031 pli\r\n"
    )
    section = desc.media[0]
    assert section.port == 49170 and section.port_count == 2
    assert section.rtcp_fb == [("*", "nack"), ("31", "pli")]
    assert "m=video 49170/2 RTP/AVP 31\r\n" in serialize(desc)
    assert parse(serialize(desc)) == desc


def test_non_rtp_formats_are_opaque_tokens() -> None:
    huge = "9" * 5000
    desc = parse(MINIMAL + f"m=application 9 UDP/DTLS/SCTP {huge} webrtc-datachannel\r\n")
    assert desc.media[0].formats == [huge, "webrtc-datachannel"]
    assert parse(serialize(desc)) == desc


def test_rejected_and_bundle_only_properties() -> None:
    assert MediaSection("audio", 0, "RTP/AVP", ["0"]).rejected
    bundled = MediaSection("audio", 0, "RTP/AVP", ["0"], attributes=[("bundle-only", None)])
    assert bundled.bundle_only and not bundled.rejected
    assert not MediaSection("audio", 9, "RTP/AVP", ["0"]).rejected


# ---------------------------------------------------------------- serialize


def test_serialize_canonical_attribute_order() -> None:
    out = serialize(parse(fixture("chrome_offer.sdp")))
    audio = out.split("m=audio")[1].split("m=video")[0].split("\r\n")
    names = [re.match(r"a=([^:]*)", line).group(1) for line in audio if line.startswith("a=")]  # type: ignore[union-attr]
    order = ["mid", "ice-ufrag", "ice-pwd", "ice-options", "fingerprint", "setup", "sendrecv"]
    assert names[: len(order)] == order
    assert names[-5:] == ["candidate"] * 4 + ["end-of-candidates"]
    assert audio[1] == "c=IN IP4 192.0.2.20"
    head = out.split("\r\n")[:4]
    assert [line[:2] for line in head] == ["v=", "o=", "s=", "t="]


def test_serialize_built_description() -> None:
    fingerprint = ("sha-256", ":".join(["AB"] * 32))
    desc = SessionDescription(
        origin=Origin(session_id=4611686018427387904, session_version=2),
        group_bundle=[["0"]],
        msid_semantic="WMS",
        media=[
            MediaSection(
                kind="application",
                port=9,
                protocol="UDP/DTLS/SCTP",
                formats=["webrtc-datachannel"],
                connection="IN IP4 0.0.0.0",
                mid="0",
                ice_ufrag="abcd",
                ice_pwd="a" * 24,
                ice_options=["trickle"],
                fingerprints=[fingerprint],
                setup="actpass",
                sctp_port=5000,
                max_message_size=262144,
                candidates=["candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host generation 0"],
                end_of_candidates=True,
            )
        ],
    )
    out = serialize(desc)
    assert out == (
        "v=0\r\n"
        "o=- 4611686018427387904 2 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "t=0 0\r\n"
        "a=group:BUNDLE 0\r\n"
        "a=msid-semantic:WMS\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        "a=mid:0\r\n"
        "a=ice-ufrag:abcd\r\n"
        f"a=ice-pwd:{'a' * 24}\r\n"
        "a=ice-options:trickle\r\n"
        f"a=fingerprint:sha-256 {fingerprint[1]}\r\n"
        "a=setup:actpass\r\n"
        "a=sctp-port:5000\r\n"
        "a=max-message-size:262144\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host generation 0\r\n"
        "a=end-of-candidates\r\n"
    )
    assert parse(out) == desc
    validate_for_webrtc(desc)


@pytest.mark.parametrize(
    "poison",
    ["x\r\na=injected", "x\na=injected", "x\x00"],
    ids=["crlf", "lf", "nul"],
)
def test_serialize_refuses_line_breaks_in_values(poison: str) -> None:
    desc = parse(fixture("chrome_datachannel_offer.sdp"))
    desc.media[0].attributes.append(("x-app", poison))
    with pytest.raises(SdpError, match="line break or NUL"):
        serialize(desc)
    desc = parse(fixture("chrome_datachannel_offer.sdp"))
    desc.name = poison
    with pytest.raises(SdpError):
        serialize(desc)


# ---------------------------------------------------------------- validate_for_webrtc


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (("a=ice-ufrag:",), "has no a=ice-ufrag"),
        (("a=ice-pwd:",), "has no a=ice-pwd"),
        (("a=fingerprint:",), "has no a=fingerprint"),
        (("a=setup:",), "has no a=setup"),
        (("a=mid:", "a=group:"), "has no a=mid"),
        (("a=sctp-port:",), "without a=sctp-port"),
    ],
)
def test_validation_rules(drop: tuple[str, ...], message: str) -> None:
    desc = parse(edit(fixture("chrome_offer.sdp"), drop=drop))  # still well-formed
    with pytest.raises(SdpError, match=message):
        validate_for_webrtc(desc)


def test_validation_missing_in_one_section_only() -> None:
    desc = parse(fixture("chrome_offer.sdp"))
    desc.media[1].fingerprints = []
    desc.group_bundle = []  # not bundled: no tag to inherit from
    with pytest.raises(SdpError, match=r"m-section 1 \(mid '1'\) has no a=fingerprint"):
        validate_for_webrtc(desc)


def test_validation_accepts_session_level_transport() -> None:
    desc = parse(fixture("firefox_offer.sdp"))
    for section in desc.media:
        section.ice_ufrag, section.ice_pwd = None, None
    desc.ice_ufrag, desc.ice_pwd = "sess", "s" * 22
    validate_for_webrtc(desc)
    desc.fingerprints = []
    with pytest.raises(SdpError, match="has no a=fingerprint"):
        validate_for_webrtc(desc)


def test_validation_skips_rejected_sections() -> None:
    desc = parse(fixture("chrome_offer.sdp"))
    video = desc.media[1]
    video.port = 0
    video.ice_ufrag = video.ice_pwd = video.setup = None
    video.fingerprints = []
    desc.group_bundle = [["0", "2"]]
    validate_for_webrtc(desc)
    video.mid = None
    validate_for_webrtc(desc)


def test_validation_of_bundle_only_sections_uses_the_tag() -> None:
    desc = parse(fixture("jsep_max_bundle_offer.sdp"))
    validate_for_webrtc(desc)
    tag = desc.media[0]
    tag.ice_ufrag = None
    with pytest.raises(SdpError, match=r"m-section 0 \(mid 'a1'\) has no a=ice-ufrag"):
        validate_for_webrtc(desc)
    desc = parse(fixture("jsep_max_bundle_offer.sdp"))
    desc.media[1].mid = None
    desc.group_bundle = [["a1", "d1"]]
    with pytest.raises(SdpError, match=r"m-section 1 \(video\) has no a=mid"):
        validate_for_webrtc(desc)
    desc = parse(fixture("jsep_max_bundle_offer.sdp"))
    desc.group_bundle = [["a1"]]
    with pytest.raises(SdpError, match="bundle-only but in no BUNDLE group"):
        validate_for_webrtc(desc)


def test_validation_of_groups_and_mids() -> None:
    desc = parse(fixture("chrome_offer.sdp"))
    desc.media[1].mid = "0"
    with pytest.raises(SdpError, match="have the same mid '0'"):
        validate_for_webrtc(desc)
    desc = parse(fixture("chrome_offer.sdp"))
    desc.group_bundle = [["0", "1", "2", "9"]]
    with pytest.raises(SdpError, match="names mid '9', which no m-section has"):
        validate_for_webrtc(desc)
    desc.group_bundle = [["0", "1"], ["1", "2"]]
    with pytest.raises(SdpError, match="more than one BUNDLE group"):
        validate_for_webrtc(desc)


def test_validation_setup_in_answers() -> None:
    desc = parse(fixture("chrome_offer.sdp"))
    validate_for_webrtc(desc, "offer")
    with pytest.raises(SdpError, match="actpass"):
        validate_for_webrtc(desc, "answer")
    with pytest.raises(SdpError, match="actpass"):
        validate_for_webrtc(desc, "pranswer")
    validate_for_webrtc(parse(fixture("chrome_answer.sdp")), "answer")


def test_ice_ufrags_reads_each_distinct_value_in_order_leniently() -> None:
    text = "v=0\r\na=ice-ufrag:abcd\r\nm=x\na=ice-ufrag: efgh \na=ice-ufrag:abcd\r\na=ice-ufrag:\n"
    assert ice_ufrags(text) == ["abcd", "efgh"]
    assert ice_ufrags("v=0\r\n") == []
