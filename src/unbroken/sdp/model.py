"""The data model of a session description: plain, mutable dataclasses.

A `SessionDescription` holds the session-level lines and a list of `MediaSection`s. The
attributes JSEP acts on (RFC 8829 §5.8) get typed fields; every other attribute is kept,
in order, in `attributes`, and every other non-attribute line (i=, u=, k=, r=, unknown
types...) in `extra_lines`, so nothing a peer sent is lost on a round trip.

Values are stored in a canonical form (fingerprint algorithm lower case, hex upper case;
extra lines in RFC 4566 order), which is what makes `parse(serialize(d)) == d` hold for
anything `parse` returned.

Transport attributes (ICE credentials, fingerprints, setup) may be absent from an
m-section because they sit at session level, or because the m-section is bundled and
RFC 8843 §7.2/§8.1 puts them only in the BUNDLE-tagged m-section. The `*_for` helpers
resolve a value in that order: the m-section itself, its BUNDLE-tagged m-section, the
session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
"""The four direction attributes (RFC 4566 §6, RFC 3264 §5.1)."""

SETUP_ROLES = ("actpass", "active", "passive", "holdconn")
"""The a=setup values (RFC 4145 §4)."""


@dataclass
class Origin:
    """The o= line (RFC 4566 §5.2): who made the session, and its id and version."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"


@dataclass
class MediaSection:
    """One m= section with its lines; JSEP-relevant attributes parsed, the rest kept raw."""

    kind: str
    port: int
    protocol: str
    formats: list[str]
    port_count: int | None = None
    """The optional "/<number of ports>" after the port (RFC 4566 §5.14); None if absent."""
    connection: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    mid: str | None = None
    direction: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: list[str] = field(default_factory=list)
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    candidates: list[str] = field(default_factory=list)
    """Raw attribute values, e.g. "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"."""
    end_of_candidates: bool = False
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    sctp_port: int | None = None
    max_message_size: int | None = None
    rtpmap: dict[int, str] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    rtcp_fb: list[tuple[str, str]] = field(default_factory=list)
    """(payload type or "*", feedback value), e.g. ("96", "nack pli")."""
    extmap: list[str] = field(default_factory=list)
    ssrc: list[str] = field(default_factory=list)
    ssrc_group: list[str] = field(default_factory=list)
    msid: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """Every other a= line, in order: (name, value), value None for a flag."""
    extra_lines: list[tuple[str, str]] = field(default_factory=list)
    """Other non-attribute lines (i=, k=, unknown types) as (type, value), in RFC order."""

    @property
    def bundle_only(self) -> bool:
        """True if the section carries a=bundle-only (RFC 8843 §6)."""
        return ("bundle-only", None) in self.attributes

    @property
    def rejected(self) -> bool:
        """Port 0 without bundle-only means rejected or disabled (RFC 3264 §6, RFC 8843 §6)."""
        return self.port == 0 and not self.bundle_only

    def attribute_values(self, name: str) -> list[str | None]:
        """The values of the other attributes called `name`, in order."""
        return [value for key, value in self.attributes if key == name]


@dataclass
class SessionDescription:
    """A whole SDP session description: session-level lines and the m-sections."""

    version: int = 0
    origin: Origin = field(default_factory=Origin)
    name: str = "-"
    timing: str = "0 0"
    connection: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    group_bundle: list[list[str]] = field(default_factory=list)
    """The mids of each a=group:BUNDLE line; the first mid of a group is its tag."""
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: list[str] = field(default_factory=list)
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    extmap_allow_mixed: bool = False
    msid_semantic: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """Every other session-level a= line, in order: (name, value), value None for a flag."""
    extra_lines: list[tuple[str, str]] = field(default_factory=list)
    """Other session-level non-attribute lines (i=, u=, e=, p=, extra t=, r=, z=, k=, unknown)."""
    media: list[MediaSection] = field(default_factory=list)

    def media_index(self, mid: str) -> int | None:
        """The index of the first m-section with this mid, or None."""
        for index, section in enumerate(self.media):
            if section.mid == mid:
                return index
        return None

    def bundle_group(self, index: int) -> list[str] | None:
        """The mids of the BUNDLE group that media[index] belongs to, or None."""
        mid = self.media[index].mid
        if mid is None:
            return None
        for group in self.group_bundle:
            if mid in group:
                return group
        return None

    def bundle_tag_index(self, index: int) -> int | None:
        """The index of the BUNDLE-tagged m-section of media[index]'s group (RFC 8843 §7.2).

        The tag is the group's first mid. None if media[index] is in no group or the tag
        names no m-section.
        """
        group = self.bundle_group(index)
        if not group:
            return None
        return self.media_index(group[0])

    def _transport_sections(self, index: int) -> Iterator[MediaSection]:
        """The m-sections that may carry media[index]'s transport attributes, nearest first."""
        section = self.media[index]
        yield section
        tag = self.bundle_tag_index(index)
        if tag is not None and tag != index:
            yield self.media[tag]

    def media_ice_credentials(self, index: int) -> tuple[str | None, str | None]:
        """(ufrag, pwd) for media[index]: media level, then BUNDLE tag, then session (RFC 8839 §5.4)."""
        ufrag = next((s.ice_ufrag for s in self._transport_sections(index) if s.ice_ufrag), None)
        pwd = next((s.ice_pwd for s in self._transport_sections(index) if s.ice_pwd), None)
        return (ufrag or self.ice_ufrag, pwd or self.ice_pwd)

    def ice_options_for(self, index: int) -> list[str]:
        """The ice-options in force for media[index], resolved like the credentials."""
        for section in self._transport_sections(index):
            if section.ice_options:
                return list(section.ice_options)
        return list(self.ice_options)

    def fingerprint_for(self, index: int) -> list[tuple[str, str]]:
        """The DTLS fingerprints for media[index] (RFC 8122 §5), resolved like the credentials."""
        for section in self._transport_sections(index):
            if section.fingerprints:
                return list(section.fingerprints)
        return list(self.fingerprints)

    def setup_for(self, index: int) -> str | None:
        """The a=setup role for media[index] (RFC 4145 §4), resolved like the credentials."""
        for section in self._transport_sections(index):
            if section.setup is not None:
                return section.setup
        return self.setup
