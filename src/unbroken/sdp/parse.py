"""SDP text to `SessionDescription`, checking the grammar as it goes (RFC 8829 §5.8).

Theory of operation: the text is split on LF (an optional CR before it is dropped), and
each line is `<type>=<value>`. The first line must be v=0. Lines before the first m= are
session level, the rest belong to the m-section above them. o=, s= and t= are required
once at session level; other known line types are checked and stored, unknown types kept.

Attribute lines are split at the first ":" into name and value (no ":" means a flag). The
attributes JSEP acts on are checked against their grammar (RFC 8839 §5.4 for ICE
credentials, RFC 8122 §5 for fingerprints, ...) and stored in typed fields; a line that
breaks its grammar rejects the whole description, as RFC 8829 §5.8 demands even for values
that will be discarded. Attributes JSEP allows once ("If present, a single ...") are
rejected when repeated. Every other attribute is kept in order, never rejected
(RFC 4566 §5.13).

Non-attribute lines other than the typed ones are kept in `extra_lines`, stable-sorted
into RFC 4566 order, so `serialize` can put them back where they belong and a second
parse gives an equal value. Parsing is linear: sizes are bounded first (64 KiB per line,
1 MiB in all, 1000 m-sections) and no regular expression can backtrack.

`parse` raises `SdpError` and nothing else, whatever the input.
"""

from __future__ import annotations

from collections.abc import Callable

from unbroken.sdp import grammar as g
from unbroken.sdp.errors import SdpError, show
from unbroken.sdp.model import DIRECTIONS, SETUP_ROLES, MediaSection, Origin, SessionDescription

# Where each kind of non-attribute line goes relative to the others (RFC 4566 §5):
# session: v o s i u e p c b t r z k a; media: m i c b k a. Unknown types go just before
# the attributes. Extra t= lines share r='s rank so repeated time descriptions keep their
# t/r pairing.
SESSION_EXTRA_RANK = {"i": 0, "u": 1, "e": 2, "p": 3, "t": 4, "r": 4, "z": 5, "k": 6}
SESSION_UNKNOWN_RANK = 7
SESSION_TIMING_RANK = 4
"""Extras with a rank below this go before c=, b= and the first t=; the rest after it."""
MEDIA_EXTRA_RANK = {"i": 0, "k": 1}
MEDIA_UNKNOWN_RANK = 2
MEDIA_CONNECTION_RANK = 1
"""Media extras with a rank below this go before c= and b=; the rest after them."""

_SESSION_ONLY = frozenset("vostuepzr")
"""Line types that may not appear inside an m-section."""


def parse(text: str | bytes) -> SessionDescription:
    """Parse SDP text (CRLF or LF line ends) into a SessionDescription.

    Raises SdpError, and only SdpError, for anything that is not well-formed SDP.
    Bytes are decoded as UTF-8.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if len(raw) > g.MAX_TOTAL_BYTES:
            raise SdpError(f"description is over {g.MAX_TOTAL_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"description is not UTF-8 (byte {exc.start})") from None
    if not isinstance(text, str):
        raise SdpError(f"expected SDP text, got {type(text).__name__}")
    if len(text) > g.MAX_TOTAL_BYTES:
        raise SdpError(f"description is over {g.MAX_TOTAL_BYTES} bytes")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise SdpError(f"description is not valid Unicode text (character {exc.start})") from None
    if size > g.MAX_TOTAL_BYTES:
        raise SdpError(f"description is over {g.MAX_TOTAL_BYTES} bytes")
    return _Parser().run(text)


_Handler = Callable[["_Parser", str | None], None]


class _Parser:
    """One parse: the description being built and the line being read."""

    def __init__(self) -> None:
        self.desc = SessionDescription()
        self.media: MediaSection | None = None
        self.line = 0
        self.session_seen: set[str] = set()
        self.media_seen: set[str] = set()
        self.session_extras: list[tuple[int, str, str]] = []
        self.media_extras: list[tuple[int, str, str]] = []

    # ---- errors and small checks ----

    @property
    def seen(self) -> set[str]:
        """Single-use things already seen in the current section ("o", "a=mid", ...)."""
        return self.session_seen if self.media is None else self.media_seen

    def error(self, message: str) -> SdpError:
        return SdpError(message, self.line)

    def once(self, key: str, what: str) -> None:
        """Reject a second occurrence of a line that may appear once per section."""
        if key in self.seen:
            where = "m-section" if self.media is not None else "session level"
            raise self.error(f"more than one {what} at {where}")
        self.seen.add(key)

    def value_of(self, name: str, value: str | None) -> str:
        if value is None:
            raise self.error(f"a={name} needs a value")
        return value

    def flag(self, name: str, value: str | None) -> None:
        if value is not None:
            raise self.error(f"a={name} is a flag and takes no value, got {show(value)}")

    def integer(self, text: str, low: int, high: int, what: str) -> int:
        return g.to_int(text, low, high, what, self.line)

    # ---- driver ----

    def run(self, text: str) -> SessionDescription:
        lines = text.split("\n")
        # Trailing line ends (and blank lines after the last line) are harmless.
        while lines and lines[-1] in ("", "\r"):
            lines.pop()
        if not lines:
            raise SdpError("empty description")
        for index, raw in enumerate(lines):
            self.line = index + 1
            line = raw[:-1] if raw.endswith("\r") else raw
            if len(line) > g.MAX_LINE_BYTES // 4 and len(line.encode("utf-8")) > g.MAX_LINE_BYTES:
                raise self.error(f"line is over {g.MAX_LINE_BYTES} bytes")
            if "\r" in line or "\x00" in line:
                raise self.error("line contains a CR or NUL character")
            if len(line) < 2 or line[1] != "=" or not g.LINE_TYPE_RE.fullmatch(line[0]):
                raise self.error(f"expected <type>=<value>, got {show(line)}")
            kind, value = line[0], line[2:]
            if self.line == 1:
                if kind != "v":
                    raise self.error("the first line must be v=")
                self.version(value)
            elif kind == "m":
                self.start_media(value)
            elif self.media is None:
                self.session_line(kind, value)
            else:
                self.media_line(kind, value)
        self.finish_media()
        self.finish_session()
        return self.desc

    def version(self, value: str) -> None:
        # RFC 4566 §5.1: the version is 0.
        if value != "0":
            raise self.error(f"unsupported SDP version {show(value)} (expected 0)")
        self.session_seen.add("v")

    def finish_session(self) -> None:
        self.line = 0
        for kind in ("o", "s", "t"):
            if kind not in self.session_seen:
                raise SdpError(f"missing {kind}= line")
        self.desc.extra_lines = [(k, v) for _, k, v in sorted_stable(self.session_extras)]

    # ---- session level ----

    def session_line(self, kind: str, value: str) -> None:
        desc = self.desc
        if kind == "v":
            raise self.error("v= may appear only as the first line")
        if kind == "o":
            self.once("o", "o= line")
            desc.origin = self.origin(value)
        elif kind == "s":
            self.once("s", "s= line")
            desc.name = value
        elif kind == "c":
            self.once("c", "c= line")
            desc.connection = self.connection(value)
        elif kind == "b":
            desc.bandwidths.append(self.bandwidth(value))
        elif kind == "t":
            if not g.TIMING_RE.fullmatch(value):
                raise self.error(f"t= must be '<start> <stop>', got {show(value)}")
            if "t" in self.seen:
                self.session_extras.append((SESSION_EXTRA_RANK["t"], kind, value))
            else:
                self.seen.add("t")
                desc.timing = value
        elif kind == "a":
            self.attribute(value, _SESSION_ATTRIBUTES, desc.attributes)
        else:
            rank = SESSION_EXTRA_RANK.get(kind, SESSION_UNKNOWN_RANK)
            self.session_extras.append((rank, kind, value))

    def origin(self, value: str) -> Origin:
        match = g.ORIGIN_RE.fullmatch(value)
        if not match:
            raise self.error(
                "o= must be '<username> <sess-id> <sess-version> <nettype> <addrtype> "
                f"<address>', got {show(value)}"
            )
        user, sess_id, sess_version, nettype, addrtype, address = match.groups()
        return Origin(
            username=user,
            session_id=self.integer(sess_id, 0, 10**24 - 1, "o= session id"),
            session_version=self.integer(sess_version, 0, 10**24 - 1, "o= session version"),
            nettype=nettype,
            addrtype=addrtype,
            address=address,
        )

    def connection(self, value: str) -> str:
        # RFC 4566 §5.7; JSEP checks it but does not use it (RFC 8829 §5.8.1).
        if not g.CONNECTION_RE.fullmatch(value):
            raise self.error(f"c= must be '<nettype> <addrtype> <address>', got {show(value)}")
        return value

    def bandwidth(self, value: str) -> str:
        if not g.BANDWIDTH_RE.fullmatch(value):
            raise self.error(f"b= must be '<bwtype>:<bandwidth>', got {show(value)}")
        return value

    # ---- media level ----

    def start_media(self, value: str) -> None:
        self.finish_media()
        if len(self.desc.media) >= g.MAX_MEDIA_SECTIONS:
            raise self.error(f"more than {g.MAX_MEDIA_SECTIONS} m= sections")
        match = g.MEDIA_RE.fullmatch(value)
        if not match:
            raise self.error(
                f"m= must be '<media> <port>[/<count>] <proto> <fmt> ...', got {show(value)}"
            )
        kind, port, count, proto, fmts = match.groups()
        formats = fmts[1:].split(" ")
        if "RTP/" in proto:
            # RFC 8829 §5.8.2: RTP formats are payload types.
            for fmt in formats:
                self.integer(fmt, 0, 127, "RTP payload type in m=")
        self.media = MediaSection(
            kind=kind,
            port=self.integer(port, 0, 65535, "m= port"),
            port_count=None if count is None else self.integer(count, 1, 65535, "m= port count"),
            protocol=proto,
            formats=formats,
        )
        self.media_seen = set()
        self.media_extras = []

    def finish_media(self) -> None:
        if self.media is not None:
            self.media.extra_lines = [(k, v) for _, k, v in sorted_stable(self.media_extras)]
            self.desc.media.append(self.media)

    def media_line(self, kind: str, value: str) -> None:
        media = self.media
        assert media is not None
        if kind in _SESSION_ONLY:
            raise self.error(f"{kind}= is not allowed inside an m-section")
        if kind == "c":
            self.once("c", "c= line")
            media.connection = self.connection(value)
        elif kind == "b":
            media.bandwidths.append(self.bandwidth(value))
        elif kind == "a":
            self.attribute(value, _MEDIA_ATTRIBUTES, media.attributes)
        else:
            rank = MEDIA_EXTRA_RANK.get(kind, MEDIA_UNKNOWN_RANK)
            self.media_extras.append((rank, kind, value))

    # ---- attributes ----

    def attribute(
        self,
        text: str,
        handlers: dict[str, _Handler],
        others: list[tuple[str, str | None]],
    ) -> None:
        name, colon, rest = text.partition(":")
        value = rest if colon else None
        if not g.TOKEN_RE.fullmatch(name):
            raise self.error(f"bad attribute name {show(name)}")
        handler = handlers.get(name)
        if handler is None:
            others.append((name, value))
        else:
            handler(self, value)

    def target(self) -> MediaSection | SessionDescription:
        return self.desc if self.media is None else self.media

    def ice_ufrag(self, value: str | None) -> None:
        value = self.value_of("ice-ufrag", value)
        self.once("a=ice-ufrag", "a=ice-ufrag")
        if not g.UFRAG_RE.fullmatch(value):
            raise self.error(
                f"a=ice-ufrag needs 4 to 256 ice-chars (A-Z a-z 0-9 + /), got {show(value)}"
            )
        self.target().ice_ufrag = value

    def ice_pwd(self, value: str | None) -> None:
        value = self.value_of("ice-pwd", value)
        self.once("a=ice-pwd", "a=ice-pwd")
        if not g.PWD_RE.fullmatch(value):
            # Do not echo the password into logs.
            raise self.error(
                f"a=ice-pwd needs 22 to 256 ice-chars (A-Z a-z 0-9 + /), got {len(value)} chars"
            )
        self.target().ice_pwd = value

    def ice_options(self, value: str | None) -> None:
        value = self.value_of("ice-options", value)
        self.once("a=ice-options", "a=ice-options")
        tags = value.split(" ")
        for tag in tags:
            if not g.TOKEN_RE.fullmatch(tag):
                raise self.error(f"bad a=ice-options tag {show(tag)}")
        self.target().ice_options = tags

    def fingerprint(self, value: str | None) -> None:
        value = self.value_of("fingerprint", value)
        match = g.FINGERPRINT_RE.fullmatch(value)
        if not match:
            raise self.error(
                f"a=fingerprint must be '<hash-func> <XX:XX:...>' (RFC 8122), got {show(value)}"
            )
        algorithm, digest = match.group(1).lower(), match.group(2).upper()
        expected = g.FINGERPRINT_BYTES.get(algorithm)
        if expected is not None and (len(digest) + 1) // 3 != expected:
            raise self.error(f"a=fingerprint {algorithm} needs {expected} bytes")
        self.target().fingerprints.append((algorithm, digest))

    def setup(self, value: str | None) -> None:
        value = self.value_of("setup", value)
        self.once("a=setup", "a=setup")
        if value not in SETUP_ROLES:
            raise self.error(f"a=setup must be one of {', '.join(SETUP_ROLES)}, got {show(value)}")
        self.target().setup = value

    # session only

    def group(self, value: str | None) -> None:
        value = self.value_of("group", value)
        semantics, space, mids_text = value.partition(" ")
        if not g.TOKEN_RE.fullmatch(semantics):
            raise self.error(f"bad a=group semantics {show(semantics)}")
        mids = mids_text.split(" ") if space else []
        for mid in mids:
            if not g.TOKEN_RE.fullmatch(mid):
                raise self.error(f"bad mid {show(mid)} in a=group")
        if len(set(mids)) != len(mids):
            raise self.error("a=group names the same mid twice")
        if semantics == "BUNDLE":
            self.desc.group_bundle.append(mids)
        else:
            self.desc.attributes.append(("group", value))

    def ice_lite(self, value: str | None) -> None:
        self.flag("ice-lite", value)
        self.once("a=ice-lite", "a=ice-lite")
        self.desc.ice_lite = True

    def extmap_allow_mixed(self, value: str | None) -> None:
        self.flag("extmap-allow-mixed", value)
        self.desc.extmap_allow_mixed = True

    def msid_semantic(self, value: str | None) -> None:
        # Chromium writes "a=msid-semantic: WMS ..." with a space after the colon.
        value = self.value_of("msid-semantic", value).lstrip(" ")
        self.once("a=msid-semantic", "a=msid-semantic")
        self.desc.msid_semantic = value

    # media only

    def mid(self, value: str | None) -> None:
        value = self.value_of("mid", value)
        self.once("a=mid", "a=mid")
        if not g.TOKEN_RE.fullmatch(value):
            raise self.error(f"bad a=mid {show(value)}")
        self.current().mid = value

    def current(self) -> MediaSection:
        assert self.media is not None
        return self.media

    def candidate(self, value: str | None) -> None:
        value = self.value_of("candidate", value)
        if not value.strip(" "):
            raise self.error("empty a=candidate")
        # The candidate grammar (RFC 8839 §5.1) is the ICE layer's to check.
        self.current().candidates.append("candidate:" + value)

    def end_of_candidates(self, value: str | None) -> None:
        self.flag("end-of-candidates", value)
        self.once("a=end-of-candidates", "a=end-of-candidates")
        self.current().end_of_candidates = True

    def rtcp_mux(self, value: str | None) -> None:
        self.flag("rtcp-mux", value)
        self.once("a=rtcp-mux", "a=rtcp-mux")
        self.current().rtcp_mux = True

    def rtcp_rsize(self, value: str | None) -> None:
        self.flag("rtcp-rsize", value)
        self.once("a=rtcp-rsize", "a=rtcp-rsize")
        self.current().rtcp_rsize = True

    def direction(self, name: str, value: str | None) -> None:
        self.flag(name, value)
        self.once("direction", "direction attribute")
        self.current().direction = name

    def sctp_port(self, value: str | None) -> None:
        value = self.value_of("sctp-port", value)
        self.once("a=sctp-port", "a=sctp-port")
        self.current().sctp_port = self.integer(value, 0, 65535, "a=sctp-port")

    def max_message_size(self, value: str | None) -> None:
        value = self.value_of("max-message-size", value)
        self.once("a=max-message-size", "a=max-message-size")
        self.current().max_message_size = self.integer(
            value, 0, g.MAX_MESSAGE_SIZE, "a=max-message-size"
        )

    def rtpmap(self, value: str | None) -> None:
        value = self.value_of("rtpmap", value)
        match = g.RTPMAP_RE.fullmatch(value)
        if not match:
            raise self.error(
                f"a=rtpmap must be '<pt> <encoding>/<clock rate>[/<params>]', got {show(value)}"
            )
        pt = self.integer(match.group(1), 0, 127, "a=rtpmap payload type")
        media = self.current()
        if pt in media.rtpmap:
            raise self.error(f"second a=rtpmap for payload type {pt}")
        media.rtpmap[pt] = match.group(2)

    def fmtp(self, value: str | None) -> None:
        value = self.value_of("fmtp", value)
        match = g.FMTP_RE.fullmatch(value)
        if not match:
            raise self.error(f"a=fmtp must be '<format> <parameters>', got {show(value)}")
        fmt, params = match.groups()
        media = self.current()
        if not (fmt.isascii() and fmt.isdigit()):
            # Only RTP payload types go in the typed map; other formats are kept as-is.
            media.attributes.append(("fmtp", value))
            return
        pt = self.integer(fmt, 0, 127, "a=fmtp payload type")
        if pt in media.fmtp:
            raise self.error(f"second a=fmtp for payload type {pt}")
        media.fmtp[pt] = params

    def rtcp_fb(self, value: str | None) -> None:
        value = self.value_of("rtcp-fb", value)
        match = g.RTCP_FB_RE.fullmatch(value)
        if not match:
            raise self.error(f"a=rtcp-fb must be '<pt or *> <feedback>', got {show(value)}")
        pt, feedback = match.groups()
        if pt != "*":
            pt = str(self.integer(pt, 0, 127, "a=rtcp-fb payload type"))
        self.current().rtcp_fb.append((pt, feedback))

    def extmap(self, value: str | None) -> None:
        value = self.value_of("extmap", value)
        if not g.EXTMAP_RE.fullmatch(value):
            raise self.error(f"a=extmap must be '<id>[/<direction>] <uri> ...', got {show(value)}")
        self.current().extmap.append(value)

    def ssrc(self, value: str | None) -> None:
        value = self.value_of("ssrc", value)
        match = g.SSRC_RE.fullmatch(value)
        if not match:
            raise self.error(f"a=ssrc must be '<ssrc> <attribute>[:<value>]', got {show(value)}")
        self.integer(match.group(1), 0, g.MAX_SSRC, "a=ssrc id")
        self.current().ssrc.append(value)

    def ssrc_group(self, value: str | None) -> None:
        value = self.value_of("ssrc-group", value)
        match = g.SSRC_GROUP_RE.fullmatch(value)
        if not match:
            raise self.error(f"a=ssrc-group must be '<semantics> <ssrc> ...', got {show(value)}")
        for ssrc in match.group(1).split(" ")[1:]:
            self.integer(ssrc, 0, g.MAX_SSRC, "a=ssrc-group ssrc")
        self.current().ssrc_group.append(value)

    def msid(self, value: str | None) -> None:
        value = self.value_of("msid", value)
        if not g.MSID_RE.fullmatch(value):
            raise self.error(f"a=msid must be '<stream id> [<track id>]', got {show(value)}")
        self.current().msid.append(value)


def sorted_stable(items: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """Sort extra lines by RFC 4566 rank, keeping the order of lines of equal rank."""
    return sorted(items, key=lambda item: item[0])


_COMMON_ATTRIBUTES: dict[str, _Handler] = {
    "ice-ufrag": _Parser.ice_ufrag,
    "ice-pwd": _Parser.ice_pwd,
    "ice-options": _Parser.ice_options,
    "fingerprint": _Parser.fingerprint,
    "setup": _Parser.setup,
}

_SESSION_ATTRIBUTES: dict[str, _Handler] = {
    **_COMMON_ATTRIBUTES,
    "group": _Parser.group,
    "ice-lite": _Parser.ice_lite,
    "extmap-allow-mixed": _Parser.extmap_allow_mixed,
    "msid-semantic": _Parser.msid_semantic,
}


def _direction_handler(name: str) -> _Handler:
    def handle(parser: _Parser, value: str | None) -> None:
        parser.direction(name, value)

    return handle


_MEDIA_ATTRIBUTES: dict[str, _Handler] = {
    **_COMMON_ATTRIBUTES,
    "mid": _Parser.mid,
    "candidate": _Parser.candidate,
    "end-of-candidates": _Parser.end_of_candidates,
    "rtcp-mux": _Parser.rtcp_mux,
    "rtcp-rsize": _Parser.rtcp_rsize,
    "sctp-port": _Parser.sctp_port,
    "max-message-size": _Parser.max_message_size,
    "rtpmap": _Parser.rtpmap,
    "fmtp": _Parser.fmtp,
    "rtcp-fb": _Parser.rtcp_fb,
    "extmap": _Parser.extmap,
    "ssrc": _Parser.ssrc,
    "ssrc-group": _Parser.ssrc_group,
    "msid": _Parser.msid,
    **{name: _direction_handler(name) for name in DIRECTIONS},
}
