"""Property tests: whatever the input, parse raises only SdpError, finishes, and
whatever it accepts survives serialize and a second parse unchanged.

Inputs are random text, random bytes, line soups built from SDP-looking pieces, and
mutations of the Chromium and Firefox fixtures (lines dropped, duplicated, swapped,
values replaced by garbage, huge numbers, non-ASCII, truncation). Hypothesis runs
derandomized, so a run is repeatable; there is no wall-clock deadline (the machines are
shared), and a parser that hung would hang the test, which is what "never hangs" means
here. The deterministic worst-case inputs at the end bound the work per call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbroken.sdp import MAX_LINE_BYTES, MAX_TOTAL_BYTES, SdpError, parse, serialize

DATA = Path(__file__).parent / "data" / "sdp"
FIXTURES = {p.name: p.read_bytes().decode("utf-8") for p in sorted(DATA.glob("*.sdp"))}
FIXTURE_LINES = {name: text.split("\r\n")[:-1] for name, text in FIXTURES.items()}
HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
ALL_LINES = sorted({line for lines in FIXTURE_LINES.values() for line in lines})

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(text: str | bytes) -> None:
    """The property: SdpError or a description that round-trips exactly."""
    try:
        desc = parse(text)
    except SdpError as exc:
        assert str(exc)
        return
    out = serialize(desc)
    again = parse(out)
    assert again == desc
    assert serialize(again) == out


# A mix of SDP punctuation, ice-chars, digits, whitespace, control and non-ASCII text.
SDP_ALPHABET = st.sampled_from(
    list("vostmcbaiukrzepxy=:/ +-.*#{}0123456789ABCDEFabcdef\r\n\t\x00\x0b\x1c\x85")
    + ["\u2028", "é", "€", "٣", "\U0001f600", "\udc80"]
)
GARBAGE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=SDP_ALPHABET, max_size=40),
    st.sampled_from(["", " ", "-1", "0", "65536", "4294967296", "٣", "a b", ":", "\r", "\x00"]),
    st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n),
)


@FUZZ
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(alphabet=SDP_ALPHABET, max_size=2000))
def test_random_sdp_alphabet_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    check(data)


PREFIXES = [
    "v=0",
    "o=- 1 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "c=IN IP4 0.0.0.0",
    "b=AS:30",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=video 0 RTP/AVP 96",
    "a=group:BUNDLE 0 1",
    "a=mid:0",
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=ice-options:",
    "a=fingerprint:sha-256 ",
    "a=setup:",
    "a=candidate:",
    "a=end-of-candidates",
    "a=rtpmap:",
    "a=fmtp:",
    "a=rtcp-fb:",
    "a=extmap:",
    "a=ssrc:",
    "a=ssrc-group:",
    "a=msid:",
    "a=sctp-port:",
    "a=max-message-size:",
    "a=bundle-only",
    "a=rtcp-mux",
    "a=sendrecv",
    "i=",
    "r=",
    "z=",
    "k=",
    "x=",
]


@st.composite
def line_soup(draw: st.DrawFn) -> str:
    """Lines that mostly look like SDP, some with garbage tails, in random order."""
    head = draw(st.sampled_from([HEAD, HEAD, HEAD, "v=0\r\n", ""]))
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(ALL_LINES),
                st.tuples(st.sampled_from(PREFIXES), GARBAGE).map("".join),
            ),
            max_size=40,
        )
    )
    separator = draw(st.sampled_from(["\r\n", "\n"]))
    return head + separator.join(pieces) + draw(st.sampled_from(["", separator]))


@FUZZ
@given(line_soup())
def test_line_soup(text: str) -> None:
    check(text)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> str:
    """A fixture with a few random mutations applied to its lines, then to its text."""
    lines = list(FIXTURE_LINES[draw(st.sampled_from(sorted(FIXTURE_LINES)))])
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        if not lines:
            break
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(
            st.sampled_from(
                ["drop", "duplicate", "swap", "value", "attr-value", "number", "insert", "garbage"]
            )
        )
        line = lines[i]
        if op == "drop":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            lines[i] = line[:2] + draw(GARBAGE)
        elif op == "attr-value":
            name, colon, _ = line.partition(":")
            lines[i] = name + ":" + draw(GARBAGE) if colon else line + draw(GARBAGE)
        elif op == "number":
            digits = [k for k, ch in enumerate(line) if ch.isdigit()]
            if digits:
                k = draw(st.sampled_from(digits))
                big = draw(st.sampled_from(["9" * 30, "9" * 5000, "-1", "18446744073709551616"]))
                lines[i] = line[:k] + big + line[k + 1 :]
        elif op == "insert":
            k = draw(st.integers(min_value=0, max_value=len(line)))
            char = draw(st.sampled_from(["é", "€", "\U0001f600", "٣", "\x00", "\r", " ", "\t"]))
            lines[i] = line[:k] + char + line[k:]
        else:
            lines.insert(i, draw(GARBAGE))
    text = "\r\n".join(lines) + "\r\n"
    if draw(st.booleans()):
        text = text.replace("\r\n", "\n")
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        text = text[: draw(st.integers(min_value=1, max_value=len(text)))]
    return text


@FUZZ
@given(mutated_fixture())
def test_mutated_fixtures(text: str) -> None:
    check(text)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_truncation_of_a_fixture(name: str) -> None:
    text = FIXTURES[name]
    for end in range(0, len(text), 7):
        check(text[:end])


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_single_line_drop_and_duplicate(name: str) -> None:
    lines = FIXTURE_LINES[name]
    for i in range(len(lines)):
        check("\r\n".join(lines[:i] + lines[i + 1 :]) + "\r\n")
        check("\r\n".join(lines[: i + 1] + lines[i:]) + "\r\n")


# Worst cases for the work done per call: at or just under every size limit.
WORST_CASES = {
    "longest-fingerprint": HEAD
    + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:x-long "
    + ":".join(["AB"] * ((MAX_LINE_BYTES - 40) // 3))
    + "\r\n",
    "almost-fingerprint": HEAD
    + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:x-long "
    + ":".join(["AB"] * ((MAX_LINE_BYTES - 40) // 3))
    + ":\r\n",
    "many-formats": HEAD + "m=video 9 RTP/AVP " + " ".join(["96"] * 20000) + "\r\n",
    "many-short-lines": HEAD + "a=x\r\n" * ((MAX_TOTAL_BYTES - 100) // 5),
    "many-media": HEAD + "m=audio 0 RTP/AVP 0\r\n" * 1000,
    "many-candidates": HEAD
    + "m=audio 9 RTP/AVP 0\r\n"
    + "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n" * 20000,
    "one-huge-line": "v=0\r\na=" + "a" * (MAX_TOTAL_BYTES - 20),
    "only-newlines": "\n" * (MAX_TOTAL_BYTES - 1),
    "deep-extmap": HEAD + "m=audio 9 RTP/AVP 0\r\na=extmap:1 " + " " * 60000 + "\r\n",
}


@pytest.mark.parametrize("name", sorted(WORST_CASES))
def test_worst_case_inputs_finish(name: str) -> None:
    check(WORST_CASES[name])
