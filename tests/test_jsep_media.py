"""Tests for JSEP media (unbroken.jsep, unbroken.peerconnection.media): m-sections, codec negotiation, aiortc RTP parameters.

Offers and answers are serialized and parsed back with unbroken.sdp, as they would cross
the wire. Negotiation runs against the Chromium and Firefox fixtures in tests/data/sdp.
Property tests check that negotiating a mutated real m-section raises only
MediaNegotiationError, and that whatever it accepts gives an answer that round-trips.
The last tests send real audio and video with aiortc's RTCRtpSender and RTCRtpReceiver
over DTLS on two of our IceConnections on 127.0.0.1, configured only from the SDP.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import cast

import pytest
from aiortc import (
    AudioStreamTrack,
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    VideoStreamTrack,
)
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import AudioFrame, VideoFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbroken.errors import UnbrokenError
from unbroken.jsep import (
    MediaNegotiationError,
    RemoteSctp,
    SsrcInfo,
    answer_direction,
    application_section,
    intersect_directions,
    negotiate_application_section,
    rejected_section,
    reverse_direction,
)
from unbroken.jsep.codecs import h264_profile, parse_fmtp
from unbroken.peerconnection.media import (
    NegotiatedMedia,
    answer_media_section,
    codecs_compatible,
    is_rtx,
    local_codecs,
    local_header_extensions,
    negotiate_remote_section,
    offer_media_section,
    receive_parameters,
    send_parameters,
)
from unbroken.runtime.loopback import connected_pair
from unbroken.sdp import (
    DIRECTIONS,
    MediaSection,
    SdpError,
    SessionDescription,
    parse,
    serialize,
    validate_for_webrtc,
)

DATA = Path(__file__).parent / "data" / "sdp"
FIXTURES = {p.name: p.read_bytes().decode("utf-8") for p in sorted(DATA.glob("*.sdp"))}
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
SDES_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NACK = RTCRtcpFeedback(type="nack")
PLI = RTCRtcpFeedback(type="nack", parameter="pli")
REMB = RTCRtcpFeedback(type="goog-remb")
OURS = SsrcInfo(ssrc=1111, rtx_ssrc=2222, cname="our-cname", stream_id="stream", track_id="track")


def section(fixture: str, mid: str) -> MediaSection:
    """The m-section `mid` of a fixture, freshly parsed."""
    desc = parse(FIXTURES[fixture])
    index = desc.media_index(mid)
    assert index is not None
    return desc.media[index]


def wire(media: MediaSection) -> MediaSection:
    """The m-section after serialize and parse, as the remote side would see it."""
    text = serialize(SessionDescription(media=[media]))
    return parse(text).media[0]


def media_lines(media: MediaSection) -> list[str]:
    """The serialized lines of one m-section."""
    text = serialize(SessionDescription(media=[media]))
    lines = text.split("\r\n")[:-1]
    return lines[lines.index(next(line for line in lines if line.startswith("m="))) :]


def summary(negotiated: NegotiatedMedia) -> list[tuple[int | None, str, object]]:
    """(payload type, mime type, apt) of each negotiated codec."""
    return [(c.payloadType, c.mimeType, c.parameters.get("apt")) for c in negotiated.codecs]


def codec(mime: str, clock: int, pt: int, **parameters: str | int | None) -> RTCRtpCodecParameters:
    channels = 2 if mime == "audio/opus" else (1 if mime.startswith("audio/") else None)
    return RTCRtpCodecParameters(
        mimeType=mime, clockRate=clock, channels=channels, payloadType=pt, parameters=parameters
    )


# ---------------------------------------------------------------- local capabilities


def test_local_codecs_are_aiortcs_with_its_payload_types() -> None:
    audio = [(c.mimeType, c.clockRate, c.channels, c.payloadType) for c in local_codecs("audio")]
    assert audio == [
        ("audio/opus", 48000, 2, 96),
        ("audio/G722", 8000, 1, 9),
        ("audio/PCMU", 8000, 1, 0),
        ("audio/PCMA", 8000, 1, 8),
    ]
    video = local_codecs("video")
    assert [(c.mimeType, c.payloadType) for c in video] == [
        ("video/VP8", 97),
        ("video/rtx", 98),
        ("video/H264", 99),
        ("video/rtx", 100),
        ("video/H264", 101),
        ("video/rtx", 102),
    ]
    assert [c.parameters.get("apt") for c in video if is_rtx(c)] == [97, 99, 101]
    assert video[0].rtcpFeedback == [NACK, PLI, REMB]
    assert [(e.id, e.uri) for e in local_header_extensions("audio")] == [
        (1, SDES_MID),
        (2, AUDIO_LEVEL),
    ]
    assert [(e.id, e.uri) for e in local_header_extensions("video")] == [
        (1, SDES_MID),
        (3, ABS_SEND_TIME),
    ]


def test_local_codecs_are_copies() -> None:
    first = local_codecs("video")
    first[0].payloadType = 120
    first[0].rtcpFeedback.clear()
    again = local_codecs("video")
    assert again[0].payloadType == 97 and again[0].rtcpFeedback == [NACK, PLI, REMB]


def test_unknown_kind_has_no_codecs() -> None:
    with pytest.raises(ValueError):
        local_codecs("application")
    with pytest.raises(ValueError):
        local_header_extensions("text")
    text = MediaSection(kind="text", port=9, protocol="RTP/AVP", formats=["98"])
    with pytest.raises(MediaNegotiationError, match="no codecs for media kind"):
        negotiate_remote_section(text, "text")


# ---------------------------------------------------------------- offers


def test_audio_offer_lines() -> None:
    offer = offer_media_section(
        "audio", "0", "sendrecv", local_codecs("audio"), local_header_extensions("audio"), OURS
    )
    assert media_lines(offer) == [
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendrecv",
        "a=msid:stream track",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        f"a=extmap:1 {SDES_MID}",
        f"a=extmap:2 {AUDIO_LEVEL}",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=ssrc:1111 cname:our-cname",
        "a=ssrc:1111 msid:stream track",
    ]
    # No rtx for audio, so no rtx SSRC; no ICE or DTLS lines: the peer connection adds those.
    back = wire(offer)
    assert back == offer
    assert back.ice_ufrag is None and back.fingerprints == [] and back.setup is None


def test_video_offer_lines_pair_rtx_in_a_fid_group() -> None:
    offer = offer_media_section(
        "video", "1", "sendonly", local_codecs("video"), local_header_extensions("video"), OURS
    )
    lines = media_lines(offer)
    assert lines[0] == "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100 101 102"
    assert "a=sendonly" in lines
    for expected in (
        "a=rtpmap:97 VP8/90000",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=rtpmap:99 H264/90000",
        "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtcp-fb:97 nack",
        "a=rtcp-fb:97 nack pli",
        "a=rtcp-fb:97 goog-remb",
        f"a=extmap:3 {ABS_SEND_TIME}",
    ):
        assert expected in lines, expected
    assert not any(line.startswith("a=rtcp-fb:98") for line in lines)
    assert lines[-5:] == [
        "a=ssrc-group:FID 1111 2222",
        "a=ssrc:1111 cname:our-cname",
        "a=ssrc:1111 msid:stream track",
        "a=ssrc:2222 cname:our-cname",
        "a=ssrc:2222 msid:stream track",
    ]
    assert wire(offer) == offer


def test_offer_that_does_not_send_has_no_msid_or_ssrc() -> None:
    for direction in ("recvonly", "inactive"):
        offer = offer_media_section(
            "video", "v", direction, local_codecs("video"), local_header_extensions("video"), OURS
        )
        assert offer.direction == direction
        assert offer.msid == [] and offer.ssrc == [] and offer.ssrc_group == []
    offer = offer_media_section("audio", "a", "sendrecv", local_codecs("audio"), [], None)
    assert offer.msid == [] and offer.ssrc == [] and offer.extmap == []


def test_offer_without_rtx_ssrc_or_rtx_codec_has_no_fid_group() -> None:
    no_rtx_ssrc = SsrcInfo(ssrc=5, rtx_ssrc=None, cname="c", stream_id="-", track_id="t")
    offer = offer_media_section("video", "0", "sendrecv", local_codecs("video"), [], no_rtx_ssrc)
    assert offer.ssrc_group == [] and offer.ssrc == ["5 cname:c", "5 msid:- t"]
    assert offer.msid == ["- t"]
    vp8_only = [c for c in local_codecs("video") if c.mimeType == "video/VP8"]
    offer = offer_media_section("video", "0", "sendrecv", vp8_only, [], OURS)
    assert offer.formats == ["97"] and offer.ssrc_group == []
    assert [s.split(" ")[0] for s in offer.ssrc] == ["1111", "1111"]


def test_bundle_only_offer_has_port_zero_and_is_not_rejected() -> None:
    offer = offer_media_section(
        "audio", "a1", "sendrecv", local_codecs("audio"), [], None, bundle_only=True
    )
    assert offer.port == 0 and offer.bundle_only and not offer.rejected
    assert "a=bundle-only" in media_lines(offer)
    # rtcp-mux and rtcp-rsize are IDENTICAL attributes: only in the BUNDLE tag.
    assert not offer.rtcp_mux and not offer.rtcp_rsize
    assert wire(offer) == offer


def test_offer_with_codec_preferences_keeps_their_order() -> None:
    pcma, opus = local_codecs("audio")[3], local_codecs("audio")[0]
    offer = offer_media_section("audio", "0", "sendrecv", [pcma, opus], [], None)
    assert offer.formats == ["8", "96"]


def test_offer_rejects_bad_arguments() -> None:
    codecs = local_codecs("audio")
    with pytest.raises(ValueError, match="RTP media kind"):
        offer_media_section("application", "0", "sendrecv", codecs, [], None)
    with pytest.raises(ValueError, match="mid"):
        offer_media_section("audio", "a b", "sendrecv", codecs, [], None)
    with pytest.raises(ValueError, match="direction"):
        offer_media_section("audio", "0", "both", codecs, [], None)
    with pytest.raises(ValueError, match="at least one codec"):
        offer_media_section("audio", "0", "sendrecv", [], [], None)
    with pytest.raises(ValueError, match="used twice"):
        offer_media_section("audio", "0", "sendrecv", [codecs[0], codecs[0]], [], None)
    no_pt = copy.deepcopy(codecs[0])
    no_pt.payloadType = None
    with pytest.raises(ValueError, match="payload type"):
        offer_media_section("audio", "0", "sendrecv", [no_pt], [], None)


def test_ssrc_info_is_checked() -> None:
    with pytest.raises(ValueError):
        SsrcInfo(ssrc=2**32, rtx_ssrc=None, cname="c", stream_id="s", track_id="t")
    with pytest.raises(ValueError):
        SsrcInfo(ssrc=1, rtx_ssrc=-1, cname="c", stream_id="s", track_id="t")
    with pytest.raises(ValueError):
        SsrcInfo(ssrc=1, rtx_ssrc=None, cname="a\r\na=x", stream_id="s", track_id="t")
    with pytest.raises(ValueError):
        SsrcInfo(ssrc=1, rtx_ssrc=None, cname="c", stream_id="two words", track_id="t")
    with pytest.raises(ValueError):
        SsrcInfo(ssrc=1, rtx_ssrc=None, cname="c", stream_id="s", track_id="")


def test_application_section_lines() -> None:
    data = application_section("2")
    assert media_lines(data) == [
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:2",
        "a=sctp-port:5000",
        "a=max-message-size:65536",
    ]
    assert wire(data) == data
    assert negotiate_application_section(wire(data)) == RemoteSctp("UDP/DTLS/SCTP", 5000, 65536)
    big = application_section("d", 5001, 262144, protocol="TCP/DTLS/SCTP", bundle_only=True)
    assert big.port == 0 and big.bundle_only and big.protocol == "TCP/DTLS/SCTP"
    assert negotiate_application_section(
        wire(application_section("d", 5001, 262144))
    ) == RemoteSctp("UDP/DTLS/SCTP", 5001, 262144)


def test_legacy_application_section() -> None:
    data = application_section("data", protocol="DTLS/SCTP")
    assert media_lines(data) == [
        "m=application 9 DTLS/SCTP 5000",
        "c=IN IP4 0.0.0.0",
        "a=mid:data",
        "a=max-message-size:65536",
        "a=sctpmap:5000 webrtc-datachannel 65535",
    ]
    assert negotiate_application_section(wire(data)) == RemoteSctp("DTLS/SCTP", 5000, 65536)
    with pytest.raises(ValueError):
        application_section("0", protocol="UDP/TLS/RTP/SAVPF")
    with pytest.raises(ValueError):
        application_section("0", 70000)


def test_application_sections_of_the_browsers() -> None:
    chrome = negotiate_application_section(section("chrome_datachannel_offer.sdp", "0"))
    assert chrome == RemoteSctp("UDP/DTLS/SCTP", 5000, 262144)
    firefox = negotiate_application_section(section("firefox_offer.sdp", "2"))
    assert firefox.max_message_size == 1073741823
    # RFC 8841 §6.1: no a=max-message-size means 64 KiB.
    bundled = negotiate_application_section(section("jsep_max_bundle_offer.sdp", "d1"))
    assert bundled == RemoteSctp("UDP/DTLS/SCTP", 5000, 65536)


def test_application_section_errors() -> None:
    with pytest.raises(MediaNegotiationError, match="application"):
        negotiate_application_section(section("chrome_offer.sdp", "0"))
    data = section("chrome_offer.sdp", "2")
    data.formats = ["something-else"]
    with pytest.raises(MediaNegotiationError, match="webrtc-datachannel"):
        negotiate_application_section(data)
    data = section("chrome_offer.sdp", "2")
    data.port = 0
    with pytest.raises(MediaNegotiationError, match="rejected"):
        negotiate_application_section(data)
    data = section("chrome_offer.sdp", "2")
    data.protocol = "UDP/SCTP"
    with pytest.raises(MediaNegotiationError, match="profile"):
        negotiate_application_section(data)
    legacy = application_section("x", protocol="DTLS/SCTP")
    legacy.attributes = [("sctpmap", "5000 something 1")]
    with pytest.raises(MediaNegotiationError):
        negotiate_application_section(legacy)


# ---------------------------------------------------------------- directions


def test_answer_direction_is_reverse_then_intersect() -> None:
    # RFC 3264 §6.1, with the local transceiver's wish (RFC 8829 §5.3.1).
    expected = {
        ("sendrecv", "sendrecv"): "sendrecv",
        ("sendrecv", "sendonly"): "recvonly",
        ("sendrecv", "recvonly"): "sendonly",
        ("sendrecv", "inactive"): "inactive",
        ("sendonly", "sendrecv"): "sendonly",
        ("sendonly", "sendonly"): "inactive",
        ("sendonly", "recvonly"): "sendonly",
        ("recvonly", "sendrecv"): "recvonly",
        ("recvonly", "sendonly"): "recvonly",
        ("recvonly", "recvonly"): "inactive",
        ("inactive", "sendrecv"): "inactive",
    }
    for (local, remote), answer in expected.items():
        assert answer_direction(local, remote) == answer, (local, remote)
    for local in DIRECTIONS:
        for remote in DIRECTIONS:
            once = answer_direction(local, remote)
            # Applying the rule to its own result changes nothing.
            assert answer_direction(once, remote) == once
    assert [reverse_direction(d) for d in DIRECTIONS] == [
        "sendrecv",
        "recvonly",
        "sendonly",
        "inactive",
    ]
    assert intersect_directions("sendonly", "recvonly") == "inactive"
    with pytest.raises(ValueError):
        answer_direction("sendrecv", "both")


# ---------------------------------------------------------------- negotiation


def test_negotiate_chrome_audio_offer() -> None:
    negotiated = negotiate_remote_section(section("chrome_offer.sdp", "0"), "audio")
    # red (63), CN (13) and telephone-event (110, 126) are not ours: dropped, order kept.
    assert summary(negotiated) == [
        (111, "audio/opus", None),
        (9, "audio/G722", None),
        (0, "audio/PCMU", None),
        (8, "audio/PCMA", None),
    ]
    assert negotiated.send_codec.payloadType == 111
    # transport-cc is Chrome's, not ours.
    assert negotiated.codecs[0].rtcpFeedback == []
    assert [(e.id, e.uri) for e in negotiated.header_extensions] == [
        (1, AUDIO_LEVEL),
        (4, SDES_MID),
    ]
    assert negotiated.kind == "audio" and negotiated.mid == "0"
    assert negotiated.direction == "sendrecv"
    assert negotiated.remote_sends and negotiated.remote_receives
    assert (negotiated.ssrc, negotiated.rtx_ssrc, negotiated.ssrcs) == (
        2420136188,
        None,
        [2420136188],
    )
    assert negotiated.cname == "Vd3Ao6Xx0LqkR9t2"
    assert negotiated.stream_ids == ["2c39a94e-1dd8-466f-8630-0f7a1ccdddc1"]
    assert negotiated.track_id == "937ec0fa-004c-4a63-ae4e-fb2dbcd62356"
    assert negotiated.rtcp_mux and negotiated.rtcp_rsize


def test_negotiate_chrome_video_offer() -> None:
    negotiated = negotiate_remote_section(section("chrome_offer.sdp", "1"), "video")
    # AV1 (45) and its rtx (46) are dropped; H264 42001f matches our first H264.
    assert summary(negotiated) == [
        (96, "video/VP8", None),
        (97, "video/rtx", 96),
        (102, "video/H264", None),
        (103, "video/rtx", 102),
    ]
    vp8, _, h264, _ = negotiated.codecs
    # Only the feedback both sides know: ccm fir and transport-cc are left out.
    assert vp8.rtcpFeedback == [NACK, PLI, REMB]
    assert h264.parameters["profile-level-id"] == "42001f"
    assert [(e.id, e.uri) for e in negotiated.header_extensions] == [
        (2, ABS_SEND_TIME),
        (4, SDES_MID),
    ]
    assert (negotiated.ssrc, negotiated.rtx_ssrc) == (511355017, 1920647707)
    assert negotiated.ssrcs == [511355017, 1920647707]
    assert negotiated.track_id == "26803672-0f04-4685-b6d8-8c54be9628f3"


def test_negotiate_firefox_offer() -> None:
    audio = negotiate_remote_section(section("firefox_offer.sdp", "0"), "audio")
    assert [c.payloadType for c in audio.codecs] == [109, 9, 0, 8]
    # csrc-audio-level (2/recvonly) is not ours; Firefox puts no rtcp-rsize on audio.
    assert [(e.id, e.uri) for e in audio.header_extensions] == [(1, AUDIO_LEVEL), (3, SDES_MID)]
    assert audio.rtcp_mux and not audio.rtcp_rsize
    assert audio.ssrc == 1290913307 and audio.cname == "{8b5f7a41-2d3c-4e5f-a6b7-c8d9e0f1a2b3}"
    assert audio.stream_ids == ["{5800b3e2-e7f0-468f-bc6b-bb37895e3945}"]
    assert audio.track_id == "{34acc5fe-925f-48e8-8d5e-aeab22b2117b}"

    video = negotiate_remote_section(section("firefox_offer.sdp", "1"), "video")
    # VP9 (121, rtx 125) is not ours; H264 97 has packetization-mode 0, which we do not
    # do, so its rtx 98 goes too. H264 126 is 42e01f, mode 1: our second H264.
    assert summary(video) == [
        (120, "video/VP8", None),
        (124, "video/rtx", 120),
        (126, "video/H264", None),
        (127, "video/rtx", 126),
    ]
    assert video.codecs[2].parameters["profile-level-id"] == "42e01f"
    assert (video.ssrc, video.rtx_ssrc) == (807430311, 1613455)
    assert [(e.id, e.uri) for e in video.header_extensions] == [(3, SDES_MID), (4, ABS_SEND_TIME)]


def test_negotiate_browser_answers() -> None:
    chrome = negotiate_remote_section(section("chrome_answer.sdp", "1"), "video")
    assert (chrome.ssrc, chrome.rtx_ssrc) == (831504147, 4165195184)
    firefox = negotiate_remote_section(section("firefox_answer.sdp", "1"), "video")
    assert (firefox.ssrc, firefox.rtx_ssrc) == (1208226017, 4123423964)
    assert firefox.stream_ids == ["{1d4e6f70-8a9b-4c0d-9e1f-2a3b4c5d6e7f}"]


def test_negotiate_max_bundle_offer_without_ssrcs() -> None:
    audio = negotiate_remote_section(section("jsep_max_bundle_offer.sdp", "a1"), "audio")
    assert [c.payloadType for c in audio.codecs] == [96, 0, 8]
    assert audio.ssrc is None and audio.ssrcs == [] and audio.cname is None
    assert audio.stream_ids == ["ms1"] and audio.track_id == "mst1a"
    # The bundle-only video section has port 0 but is not rejected; it names no
    # rtcp-mux (a TRANSPORT attribute, RFC 8843 §8.1), and the answer echoes that.
    video_offer = section("jsep_max_bundle_offer.sdp", "v1")
    video = negotiate_remote_section(video_offer, "video")
    assert summary(video) == [(100, "video/VP8", None), (101, "video/rtx", 100)]
    assert video.codecs[0].rtcpFeedback == [NACK, PLI]
    assert not video.rtcp_mux
    answer = answer_media_section(video_offer, video, "sendrecv", None)
    assert answer.port == 9 and not answer.bundle_only and not answer.rtcp_mux
    assert receive_parameters(video, "v1").encodings == []


def test_static_payload_types_need_no_rtpmap() -> None:
    remote = MediaSection(kind="audio", port=9, protocol="RTP/AVP", formats=["0", "8", "18"])
    negotiated = negotiate_remote_section(remote, "audio")
    assert summary(negotiated) == [(0, "audio/PCMU", None), (8, "audio/PCMA", None)]
    assert negotiated.direction == "sendrecv" and negotiated.mid is None
    remote.formats = ["99"]  # dynamic, no rtpmap: unknown
    with pytest.raises(MediaNegotiationError, match="no audio codec in common"):
        negotiate_remote_section(remote, "audio")


def test_remote_payload_types_win() -> None:
    remote = MediaSection(kind="audio", port=9, protocol="UDP/TLS/RTP/SAVPF", formats=["100"])
    remote.rtpmap[100] = "PCMU/8000"
    assert summary(negotiate_remote_section(remote, "audio")) == [(100, "audio/PCMU", None)]
    remote.rtpmap[100] = "opus/48000"  # one channel: not opus as RFC 7587 defines it
    with pytest.raises(MediaNegotiationError):
        negotiate_remote_section(remote, "audio")
    remote.rtpmap[100] = "OPUS/48000/2"  # encoding names are case-insensitive
    assert negotiate_remote_section(remote, "audio").codecs[0].mimeType == "audio/opus"


def test_rtx_follows_its_primary() -> None:
    remote = section("chrome_offer.sdp", "1")
    remote.formats = ["97", "96"]  # rtx listed before VP8
    negotiated = negotiate_remote_section(remote, "video")
    assert summary(negotiated) == [(97, "video/rtx", 96), (96, "video/VP8", None)]
    assert negotiated.send_codec.payloadType == 96
    parameters = send_parameters(negotiated, OURS, "1")
    assert [c.payloadType for c in parameters.codecs] == [96, 97]
    # An rtx whose primary we refused is dropped, and so is one naming a missing apt.
    remote = section("chrome_offer.sdp", "1")
    remote.fmtp[97] = "apt=45"
    remote.fmtp[103] = "apt=77"
    assert summary(negotiate_remote_section(remote, "video")) == [
        (96, "video/VP8", None),
        (102, "video/H264", None),
    ]


def test_codec_preferences_filter_and_drop_rtx() -> None:
    remote = section("chrome_offer.sdp", "0")
    pcmu = [c for c in local_codecs("audio") if c.mimeType == "audio/PCMU"]
    assert summary(negotiate_remote_section(remote, "audio", codecs=pcmu)) == [
        (0, "audio/PCMU", None)
    ]
    vp8_without_rtx = [c for c in local_codecs("video") if c.mimeType == "video/VP8"]
    negotiated = negotiate_remote_section(
        section("chrome_offer.sdp", "1"), "video", codecs=vp8_without_rtx, header_extensions=[]
    )
    assert summary(negotiated) == [(96, "video/VP8", None)]
    assert negotiated.header_extensions == []


def test_remote_directions_and_legacy_msid() -> None:
    remote = section("firefox_offer.sdp", "1")
    remote.direction = "recvonly"
    remote.msid = []
    remote.ssrc = ["807430311 cname:x", "807430311 msid:legacy-stream legacy-track"]
    negotiated = negotiate_remote_section(remote, "video")
    assert negotiated.direction == "recvonly"
    assert negotiated.remote_receives and not negotiated.remote_sends
    assert negotiated.stream_ids == ["legacy-stream"] and negotiated.track_id == "legacy-track"
    remote.msid = ["- only-track"]
    negotiated = negotiate_remote_section(remote, "video")
    assert negotiated.stream_ids == [] and negotiated.track_id == "only-track"
    remote.msid = ["s1 t", "s2"]
    assert negotiate_remote_section(remote, "video").stream_ids == ["s1", "s2"]


def test_extension_ids_follow_the_remote() -> None:
    remote = section("chrome_offer.sdp", "0")
    remote.extmap = [f"20 {SDES_MID}", f"3/inactive {AUDIO_LEVEL}", f"4096 {AUDIO_LEVEL}"]
    negotiated = negotiate_remote_section(remote, "audio")
    # 20 needs the two-byte form, which aiortc writes; inactive and 4096 are unusable.
    assert [(e.id, e.uri) for e in negotiated.header_extensions] == [(20, SDES_MID)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: setattr(m, "formats", ["13", "110"]), "no audio codec in common"),
        (lambda m: setattr(m, "kind", "video"), "expected a audio m-section"),
        (lambda m: setattr(m, "port", 0), "rejected"),
        (lambda m: setattr(m, "kind", "text"), "expected a audio m-section"),
        (lambda m: setattr(m, "protocol", "UDP/DTLS/SCTP"), "not an RTP profile"),
        (lambda m: setattr(m, "direction", "both"), "bad direction"),
        (lambda m: m.rtpmap.__setitem__(111, "opus/fast/2"), "clock rate"),
        (lambda m: m.rtpmap.__setitem__(111, "opus/48000/two"), "channel count"),
        (lambda m: m.rtpmap.__setitem__(111, "opus"), "malformed a=rtpmap"),
        (lambda m: m.formats.append("x"), "not a payload type"),
        (lambda m: m.rtcp_fb.append(("111", " ")), "rtcp-fb"),
        (lambda m: m.extmap.append(f"1 {SDES_MID}"), "names two extensions"),
        (lambda m: m.extmap.append("x urn:foo"), "malformed a=extmap"),
        (lambda m: m.extmap.append("5/up urn:foo"), "direction in a=extmap"),
        (lambda m: m.ssrc.append("12"), "malformed a=ssrc"),
        (lambda m: m.ssrc_group.append("FID 1"), "two SSRCs"),
        (lambda m: m.ssrc_group.append("FID 1 x"), "malformed a=ssrc-group"),
        (lambda m: m.msid.append("a b c"), "malformed a=msid"),
    ],
)
def test_unusable_audio_sections(change: object, message: str) -> None:
    remote = section("chrome_offer.sdp", "0")
    assert callable(change)
    change(remote)
    with pytest.raises(MediaNegotiationError, match=message) as info:
        negotiate_remote_section(remote, "audio")
    assert isinstance(info.value, ValueError) and isinstance(info.value, UnbrokenError)


@pytest.mark.parametrize(
    ("fmtp", "message"),
    [("x=1", "has no apt"), ("apt=ninety-six", "bad apt"), ("apt=300", "bad apt")],
)
def test_rtx_without_a_valid_apt(fmtp: str, message: str) -> None:
    remote = section("chrome_offer.sdp", "1")
    remote.fmtp[97] = fmtp
    with pytest.raises(MediaNegotiationError, match=message):
        negotiate_remote_section(remote, "video")


def test_no_common_video_codec() -> None:
    remote = section("firefox_offer.sdp", "1")
    remote.formats = ["121", "125", "97", "98"]  # VP9 and H264 mode 0 only
    with pytest.raises(MediaNegotiationError, match="no video codec in common"):
        negotiate_remote_section(remote, "video")


# ---------------------------------------------------------------- codec details


def test_h264_profiles() -> None:
    assert h264_profile("42e01f") == "constrained-baseline"
    assert h264_profile("42001f") == "baseline"
    assert h264_profile("4d001f") == "main"
    assert h264_profile("4d801f") == "constrained-baseline"
    assert h264_profile("640c1f") == "constrained-high"
    assert h264_profile("64001f") == "high"
    assert h264_profile("f4001f") == "predictive-high-444"
    for bad in ("", "42e01", "zzzzzz", "٣٣٣٣٣٣", "ff001f"):
        assert h264_profile(bad) is None


def test_h264_compatibility() -> None:
    ours = codec(
        "video/H264", 90000, 101, **{"packetization-mode": "1", "profile-level-id": "42e01f"}
    )
    other_level = codec(
        "video/H264", 90000, 126, **{"packetization-mode": "1", "profile-level-id": "42e034"}
    )
    assert codecs_compatible(ours, other_level)
    mode0 = codec("video/H264", 90000, 97, **{"profile-level-id": "42e01f"})
    assert not codecs_compatible(ours, mode0)
    # No profile-level-id means constrained baseline, as libwebrtc reads it.
    assert codecs_compatible(ours, codec("video/H264", 90000, 100, **{"packetization-mode": 1}))
    garbage = codec(
        "video/H264", 90000, 100, **{"packetization-mode": "1", "profile-level-id": "x"}
    )
    assert not codecs_compatible(ours, garbage)
    assert not codecs_compatible(ours, codec("video/VP8", 90000, 101))


def test_fmtp_parameters() -> None:
    assert parse_fmtp("minptime=10;useinbandfec=1") == {"minptime": 10, "useinbandfec": 1}
    assert parse_fmtp("apt=96") == {"apt": 96}
    assert parse_fmtp("0-15") == {"0-15": None}
    assert parse_fmtp(" a=b ; ;c") == {"a": "b", "c": None}
    assert parse_fmtp("apt=٣") == {"apt": "٣"}
    assert parse_fmtp("apt=" + "9" * 5000) == {"apt": "9" * 5000}


# ---------------------------------------------------------------- answers


def test_answer_to_chrome_offer() -> None:
    offer = section("chrome_offer.sdp", "1")
    negotiated = negotiate_remote_section(offer, "video")
    answer = answer_media_section(offer, negotiated, "sendrecv", OURS)
    lines = media_lines(answer)
    assert lines[:8] == [
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=sendrecv",
        "a=msid:stream track",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        f"a=extmap:2 {ABS_SEND_TIME}",
    ]
    assert "a=fmtp:97 apt=96" in lines and "a=fmtp:103 apt=102" in lines
    assert "a=rtcp-fb:96 nack pli" in lines
    assert not any("transport-cc" in line or "ccm fir" in line for line in lines)
    assert "a=ssrc-group:FID 1111 2222" in lines
    back = wire(answer)
    assert back == answer
    # Chrome, reading our answer, finds the same codecs with the same payload types.
    at_chrome = negotiate_remote_section(back, "video")
    assert summary(at_chrome) == summary(negotiated)
    assert (at_chrome.ssrc, at_chrome.rtx_ssrc, at_chrome.cname) == (1111, 2222, "our-cname")
    assert at_chrome.stream_ids == ["stream"] and at_chrome.track_id == "track"


def test_answer_echoes_what_the_offer_allows() -> None:
    offer = section("firefox_offer.sdp", "0")
    offer.direction = "sendonly"
    negotiated = negotiate_remote_section(offer, "audio")
    # A transceiver that wants sendrecv answers a sendonly offer with recvonly, and so
    # announces no msid or SSRC even if it has a sender.
    answer = answer_media_section(offer, negotiated, "sendrecv", OURS)
    assert answer.direction == "recvonly"
    assert answer.msid == [] and answer.ssrc == []
    assert answer.rtcp_mux and not answer.rtcp_rsize  # Firefox offered no rtcp-rsize
    assert answer.formats == ["109", "9", "0", "8"] and answer.mid == "0"
    assert wire(answer) == answer


def test_answer_keeps_the_offered_profile() -> None:
    offer = section("chrome_offer.sdp", "0")
    offer.protocol = "RTP/SAVPF"  # an old endpoint; RFC 8829 §5.1.2 says accept and echo
    negotiated = negotiate_remote_section(offer, "audio")
    assert negotiated.protocol == "RTP/SAVPF"
    assert answer_media_section(offer, negotiated, "recvonly", None).protocol == "RTP/SAVPF"


def test_rejected_section() -> None:
    offer = section("chrome_offer.sdp", "1")
    refused = rejected_section(offer)
    assert refused.port == 0 and refused.rejected
    assert (refused.kind, refused.protocol, refused.mid) == ("video", offer.protocol, "1")
    assert refused.formats == offer.formats and refused.direction == "inactive"
    assert refused.rtpmap[96] == "VP8/90000"
    assert refused.ice_ufrag is None and refused.candidates == []
    desc = SessionDescription(media=[refused])
    validate_for_webrtc(desc, "answer")  # a rejected section needs no ICE or DTLS lines
    assert parse(serialize(desc)).media[0] == refused
    data = rejected_section(section("chrome_offer.sdp", "2"))
    assert data.rejected and data.formats == ["webrtc-datachannel"] and data.direction is None
    assert data.sctp_port == 5000 and wire(data) == data
    with pytest.raises(MediaNegotiationError, match="rejected"):
        negotiate_remote_section(wire(refused), "video")


# ---------------------------------------------------------------- aiortc parameters


def test_send_and_receive_parameters() -> None:
    negotiated = negotiate_remote_section(section("chrome_offer.sdp", "1"), "video")
    sending = send_parameters(negotiated, OURS, "1")
    assert [c.payloadType for c in sending.codecs] == [96, 102, 97, 103]
    assert sending.muxId == "1"
    assert (sending.rtcp.cname, sending.rtcp.ssrc, sending.rtcp.mux) == ("our-cname", 1111, True)
    [encoding] = sending.encodings
    assert encoding.rtx is not None
    assert (encoding.ssrc, encoding.payloadType, encoding.rtx.ssrc) == (1111, 96, 2222)
    assert [(e.id, e.uri) for e in sending.headerExtensions] == [(2, ABS_SEND_TIME), (4, SDES_MID)]

    receiving = receive_parameters(negotiated, "1")
    assert [c.payloadType for c in receiving.codecs] == [96, 97, 102, 103]
    assert receiving.muxId == "1" and receiving.rtcp.cname == "Vd3Ao6Xx0LqkR9t2"
    assert [
        (d.ssrc, d.payloadType, cast(RTCRtpRtxParameters, d.rtx).ssrc) for d in receiving.encodings
    ] == [
        (511355017, 96, 1920647707),
        (511355017, 102, 1920647707),
    ]
    # The parameters are copies: aiortc may keep them without aliasing the negotiation.
    sending.codecs[0].payloadType = 1
    assert negotiated.codecs[0].payloadType == 96

    audio = negotiate_remote_section(section("firefox_offer.sdp", "0"), "audio")
    [encoding] = send_parameters(audio, OURS, "0").encodings
    assert encoding.payloadType == 109 and encoding.rtx is None
    assert [(d.ssrc, d.payloadType, d.rtx) for d in receive_parameters(audio, "0").encodings] == [
        (1290913307, 109, None),
        (1290913307, 9, None),
        (1290913307, 0, None),
        (1290913307, 8, None),
    ]


def test_send_parameters_need_a_primary_codec() -> None:
    negotiated = negotiate_remote_section(section("chrome_offer.sdp", "1"), "video")
    negotiated.codecs = [c for c in negotiated.codecs if is_rtx(c)]
    with pytest.raises(ValueError):
        send_parameters(negotiated, OURS, "1")


# ---------------------------------------------------------------- property tests

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RTP_SECTIONS = [
    (name, index)
    for name, text in FIXTURES.items()
    for index, media in enumerate(parse(text).media)
    if media.kind in ("audio", "video")
]
ALPHABET = st.sampled_from(list("0123456789/;=: -*.{}abcfptxAPTH") + ["٣", "²", "é", "\t"])
GARBAGE = st.one_of(
    st.text(alphabet=ALPHABET, max_size=30),
    st.sampled_from(
        ["", " ", "-1", "0", "128", "4294967296", "٣", "apt=", "apt=96", "apt=-1", "/", "a b c"]
    ),
    st.integers(min_value=0, max_value=5000).map(lambda n: "9" * n),
    st.sampled_from(
        [
            "opus/48000/2",
            "VP8/90000",
            "rtx/90000",
            "H264/90000",
            "PCMU/8000",
            "opus/0/0",
            "x/1/1/1",
            f"1 {SDES_MID}",
            f"2/sendonly {AUDIO_LEVEL}",
            "FID 1 2",
            "1 cname:c",
            "s t",
        ]
    ),
)
PAYLOAD_TYPE = st.integers(min_value=0, max_value=127)


def _mutations() -> st.SearchStrategy[list[tuple[str, object]]]:
    one = st.one_of(
        st.tuples(st.just("formats"), st.lists(GARBAGE | PAYLOAD_TYPE.map(str), max_size=6)),
        st.tuples(st.just("rtpmap"), st.tuples(PAYLOAD_TYPE, GARBAGE)),
        st.tuples(st.just("fmtp"), st.tuples(PAYLOAD_TYPE, GARBAGE)),
        st.tuples(st.just("drop-rtpmap"), PAYLOAD_TYPE),
        st.tuples(st.just("rtcp_fb"), st.tuples(GARBAGE, GARBAGE)),
        st.tuples(st.just("extmap"), GARBAGE),
        st.tuples(st.just("ssrc"), GARBAGE),
        st.tuples(st.just("ssrc_group"), GARBAGE),
        st.tuples(st.just("msid"), GARBAGE),
        st.tuples(st.just("direction"), st.sampled_from([*DIRECTIONS, None, "", "sendrecv "])),
        st.tuples(st.just("port"), st.sampled_from([0, 9, 65535])),
        st.tuples(st.just("bundle-only"), st.booleans()),
        st.tuples(st.just("clear"), st.sampled_from(["rtpmap", "fmtp", "msid", "ssrc", "extmap"])),
    )
    return st.lists(one, max_size=8)


def _mutate(media: MediaSection, mutations: list[tuple[str, object]]) -> None:
    for what, value in mutations:
        if what == "formats":
            assert isinstance(value, list)
            media.formats = [str(v) for v in value] or media.formats
        elif what in ("rtpmap", "fmtp"):
            assert isinstance(value, tuple)
            getattr(media, what)[value[0]] = value[1]
        elif what == "drop-rtpmap":
            media.rtpmap.pop(int(str(value)), None)
        elif what == "rtcp_fb":
            assert isinstance(value, tuple)
            media.rtcp_fb.append((str(value[0]), str(value[1])))
        elif what in ("extmap", "ssrc", "ssrc_group", "msid"):
            getattr(media, what).append(value)
        elif what == "direction":
            media.direction = None if value is None else str(value)
        elif what == "port":
            media.port = int(str(value))
        elif what == "bundle-only":
            media.attributes = [a for a in media.attributes if a[0] != "bundle-only"]
            if value:
                media.attributes.append(("bundle-only", None))
        elif what == "clear":
            getattr(media, str(value)).clear()


def _check_negotiation(media: MediaSection, kind: str) -> None:
    """The property: MediaNegotiationError, or a result we can answer and use."""
    original = copy.deepcopy(media)
    try:
        negotiated = negotiate_remote_section(media, kind)
    except MediaNegotiationError as exc:
        assert type(exc) is MediaNegotiationError and str(exc)
        return
    assert media == original  # negotiation does not change its input
    offered = {int(f) for f in media.formats}
    pts = [c.payloadType for c in negotiated.codecs]
    assert len(set(pts)) == len(pts) and set(pts) <= offered
    assert any(not is_rtx(c) for c in negotiated.codecs)
    for rtx in filter(is_rtx, negotiated.codecs):
        assert rtx.parameters["apt"] in pts
    ids = [e.id for e in negotiated.header_extensions]
    assert len(set(ids)) == len(ids) and all(1 <= i <= 255 for i in ids)
    answer = answer_media_section(media, negotiated, "sendrecv", OURS)
    assert wire(answer) == answer
    assert negotiate_remote_section(wire(answer), kind).codecs == negotiated.codecs
    send_parameters(negotiated, OURS, "0")
    receive_parameters(negotiated, "0")


@FUZZ
@given(st.sampled_from(RTP_SECTIONS), _mutations())
def test_mutated_sections_raise_only_negotiation_errors(
    where: tuple[str, int], mutations: list[tuple[str, object]]
) -> None:
    name, index = where
    media = parse(FIXTURES[name]).media[index]
    kind = media.kind
    _mutate(media, mutations)
    _check_negotiation(media, kind)


LINE_POOL = sorted(
    {line for text in FIXTURES.values() for line in text.split("\r\n") if line.startswith("a=")}
)
EXTRA_LINES = st.one_of(
    st.sampled_from(LINE_POOL),
    st.builds(
        lambda name, value: f"a={name}:{value}",
        st.sampled_from(["rtpmap", "fmtp", "rtcp-fb", "extmap", "ssrc", "ssrc-group", "msid"]),
        GARBAGE,
    ),
)


@FUZZ
@given(
    st.sampled_from(sorted(FIXTURES)),
    st.lists(st.tuples(st.integers(min_value=0, max_value=400), EXTRA_LINES), max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_mutated_descriptions_raise_only_negotiation_errors(
    name: str, inserts: list[tuple[int, str]], drops: list[int]
) -> None:
    lines = FIXTURES[name].split("\r\n")[:-1]
    for position in sorted(set(drops), reverse=True):
        if 4 <= position < len(lines) and not lines[position].startswith("m="):
            del lines[position]
    for position, line in inserts:
        lines.insert(min(max(position, 5), len(lines)), line)
    try:
        desc = parse("\r\n".join(lines) + "\r\n")
    except SdpError:
        return
    for media in desc.media:
        if media.kind in ("audio", "video"):
            _check_negotiation(media, media.kind)
        else:
            try:
                negotiate_application_section(media)
            except MediaNegotiationError:
                pass


def test_fixture_sections_all_negotiate() -> None:
    for name, index in RTP_SECTIONS:
        media = parse(FIXTURES[name]).media[index]
        _check_negotiation(media, media.kind)
        assert negotiate_remote_section(media, media.kind).codecs


# ---------------------------------------------------------------- real media over aiortc


@pytest.mark.parametrize("kind", ["audio", "video"])
async def test_media_flows_with_negotiated_parameters(kind: str) -> None:
    ice_a, ice_b = await connected_pair()
    # The seam: our IceConnection stands in for aiortc's RTCIceTransport (role, _send, _recv).
    dtls_a = RTCDtlsTransport(cast(RTCIceTransport, ice_a), [RTCCertificate.generateCertificate()])
    dtls_b = RTCDtlsTransport(cast(RTCIceTransport, ice_b), [RTCCertificate.generateCertificate()])
    track = AudioStreamTrack() if kind == "audio" else VideoStreamTrack()
    sender = RTCRtpSender(track, dtls_a)
    receiver = RTCRtpReceiver(kind, dtls_b)
    try:
        # A offers to send; its SDP announces the SSRCs the aiortc sender picked.
        ours = SsrcInfo(
            ssrc=sender._ssrc,
            rtx_ssrc=sender._rtx_ssrc,
            cname="sender-cname",
            stream_id=sender._stream_id,
            track_id=sender._track_id,
        )
        offer = wire(
            offer_media_section(
                kind, "0", "sendonly", local_codecs(kind), local_header_extensions(kind), ours
            )
        )
        at_b = negotiate_remote_section(offer, kind)
        assert at_b.remote_sends and at_b.ssrc == sender._ssrc and at_b.cname == "sender-cname"
        answer = wire(answer_media_section(offer, at_b, "sendrecv", None))
        assert answer.direction == "recvonly"
        at_a = negotiate_remote_section(answer, kind)
        assert at_a.remote_receives and not at_a.remote_sends

        await asyncio.wait_for(
            asyncio.gather(
                dtls_a.start(dtls_b.getLocalParameters()),
                dtls_b.start(dtls_a.getLocalParameters()),
            ),
            10,
        )
        # aiortc's RTCPeerConnection gives a receiver its track this way when a remote
        # description says the remote sends; there is no public call for it.
        receiver._track = RemoteStreamTrack(kind=kind)
        await receiver.receive(receive_parameters(at_b, "0"))
        await sender.send(send_parameters(at_a, ours, "0"))
        frame_type = AudioFrame if kind == "audio" else VideoFrame
        for _ in range(5):
            frame = await asyncio.wait_for(receiver.track.recv(), 10)
            assert isinstance(frame, frame_type)
        if kind == "audio":
            assert cast(AudioFrame, frame).sample_rate == 48000  # opus, the first codec in common
        # The media came from the SSRC the SDP announced.
        sources = [s.source for s in receiver.getSynchronizationSources()]
        assert sources == [sender._ssrc]
    finally:
        await sender.stop()
        await receiver.stop()
        track.stop()
        await dtls_a.stop()
        await dtls_b.stop()
        await ice_a.close()
        await ice_b.close()
