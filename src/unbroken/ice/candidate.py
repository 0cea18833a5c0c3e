"""ICE candidates: the value type, priorities and foundations, and the SDP candidate grammar.

A candidate is immutable. Priorities and foundations are pure functions of RFC 8445 §5.1.2
and §5.1.1.3; the text form is RFC 8839 §5.1's candidate-attribute, with the extension
attributes browsers add (generation, ufrag, network-id, network-cost) kept.

The connection-address is an IP address, or, for a host candidate, an mDNS name
(draft-ietf-rtcweb-mdns-ice-candidates §3.2.1: ``<name>.local`` with no other dot), which
browsers send in place of their local addresses. Such a candidate is parsed as it is; the
runtime resolves the name (runtime/mdns.py) before the agent, which takes IP addresses
only, sees it. Any other hostname raises HostnameCandidateError (ignored, as browsers do).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass, field, replace

from ..addresses import Address
from ..errors import UnbrokenError

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
# Local candidates that pair: those that are their own base (RFC 8445 §6.1.2.4 prunes srflx).
PAIRED_TYPES = ("host", "relay")

# RFC 8445 §5.1.2.2: recommended type preferences.
TYPE_PREFERENCE = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}

MAX_PRIORITY = 2**31 - 1  # RFC 8445 §5.1.2.1: 1 <= priority <= 2^31 - 1
_MAX_FIELD = 256  # longest foundation, ufrag or extension token we accept
_MAX_LINE = 1024

_FOUNDATION_RE = re.compile(r"^[A-Za-z0-9+/]{1,32}$")  # RFC 8839 §5.1: 1*32ice-char
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`{|}~A-Za-z0-9]+$")  # RFC 4566 token
_ICE_CHARS_RE = re.compile(r"^[A-Za-z0-9+/]+$")
# A DNS name (RFC 1123 §2.1 labels, at most 253 characters); the mDNS form is one label
# followed by ".local" (draft-ietf-rtcweb-mdns-ice-candidates §3.2.1, step 1).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\.?$)(?:{_LABEL}\.)*{_LABEL}\.?$")
_MDNS_NAME_RE = re.compile(rf"^{_LABEL}\.local$", re.IGNORECASE)


class CandidateError(UnbrokenError, ValueError):
    """A candidate line or value that breaks the grammar or is out of range.

    A ValueError too, as it always was, so existing `except ValueError` still catches it.
    """


class HostnameCandidateError(CandidateError):
    """A well-formed candidate whose address is a hostname other than an mDNS host name.

    Browsers ignore these (they resolve only mDNS names, draft-ietf-rtcweb-mdns-ice-
    candidates §3.2.1); callers that follow them drop the candidate instead of failing.
    """


def is_mdns_name(host: str) -> bool:
    """True for an mDNS candidate name: one DNS label then ".local" (draft §3.2.1, step 1)."""
    return bool(_MDNS_NAME_RE.match(host))


@dataclass(frozen=True)
class Candidate:
    """One ICE candidate, local or remote.

    `base` is the local transport address a local candidate sends from (RFC 8445 §5.1.1);
    it is None for remote candidates. `ufrag` names the generation the candidate belongs to.
    """

    foundation: str
    component: int
    transport: str
    priority: int
    host: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcptype: str | None = None
    generation: int | None = None
    ufrag: str | None = None
    network_id: int | None = None
    network_cost: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()
    base: Address | None = field(default=None, compare=False)

    @property
    def address(self) -> Address:
        """The candidate's transport address."""
        return (self.host, self.port)

    @property
    def is_mdns(self) -> bool:
        """True when `host` is an mDNS name to resolve, not an IP address."""
        return is_mdns_name(self.host)

    def with_ufrag(self, ufrag: str | None, generation: int | None = None) -> Candidate:
        """A copy tagged with `ufrag` and with `generation` as its generation number
        (None, the default, drops the number: the ufrag alone names the generation)."""
        return replace(self, ufrag=ufrag, generation=generation)

    def to_sdp(self) -> str:
        """The candidate-attribute value, e.g. ``candidate:1 1 udp 2130706431 ... typ host``."""
        parts = [
            f"candidate:{self.foundation}",
            str(self.component),
            self.transport,
            str(self.priority),
            self.host,
            str(self.port),
            "typ",
            self.type,
        ]
        # RFC 8839 §5.1: rel-addr and rel-port are each optional; write what was given.
        if self.related_address is not None:
            parts += ["raddr", self.related_address]
        if self.related_port is not None:
            parts += ["rport", str(self.related_port)]
        if self.tcptype is not None:
            parts += ["tcptype", self.tcptype]
        if self.generation is not None:
            parts += ["generation", str(self.generation)]
        if self.ufrag is not None:
            parts += ["ufrag", self.ufrag]
        if self.network_id is not None:
            parts += ["network-id", str(self.network_id)]
        if self.network_cost is not None:
            parts += ["network-cost", str(self.network_cost)]
        for name, value in self.extensions:
            parts += [name, value]
        return " ".join(parts)

    @classmethod
    def from_sdp(cls, text: str) -> Candidate:
        """Parse a candidate-attribute (with or without ``a=`` and ``candidate:``).

        Raises CandidateError for anything outside RFC 8839 §5.1 or out of range.
        """
        return parse_candidate(text)


def _int(value: str, what: str, low: int, high: int) -> int:
    # DIGIT is ASCII (RFC 5234): str.isdigit() alone also admits "²" and fullwidth digits.
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise CandidateError(f"{what} must be a number, got {value[:20]!r}")
    number = int(value)
    if not low <= number <= high:
        raise CandidateError(f"{what} {number} is outside {low}..{high}")
    return number


def _ip(value: str, what: str) -> str:
    if "%" in value:
        # A zone id names an interface of the sender: meaningless, and unusable, here.
        raise CandidateError(f"{what} has a zone id: {value[:64]!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise CandidateError(f"{what} is not an IP address: {value[:64]!r}") from None


def _connection_address(value: str, ctype: str) -> str:
    """An IP address in canonical form, or an mDNS name of a host candidate, as given."""
    if is_mdns_name(value) and ctype == "host":
        return value  # resolved by the runtime (draft-ietf-rtcweb-mdns-ice-candidates §3.2.1)
    if "%" not in value and _HOSTNAME_RE.match(value) and not _looks_numeric(value):
        raise HostnameCandidateError(f"hostname candidates are not resolved: {value[:64]!r}")
    return _ip(value, "address")


def _looks_numeric(value: str) -> bool:
    """A dotted string of digits is a (possibly bad) IPv4 address, never a hostname."""
    return value.replace(".", "").isdigit()


def parse_candidate(text: str) -> Candidate:
    """Parse RFC 8839 §5.1 candidate-attribute text into a Candidate (see Candidate.from_sdp)."""
    if not isinstance(text, str):
        raise CandidateError("candidate must be a string")
    if len(text) > _MAX_LINE:
        raise CandidateError("candidate line is too long")
    line = text.strip()
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    fields = line.split()
    if len(fields) < 8 or fields[6] != "typ":
        raise CandidateError(
            "candidate needs: foundation component transport priority address port typ type"
        )
    foundation, component, transport, priority, host, port, _, ctype = fields[:8]
    if not _FOUNDATION_RE.match(foundation):
        raise CandidateError(f"bad foundation {foundation[:40]!r}")
    transport = transport.lower()
    if transport not in ("udp", "tcp"):
        raise CandidateError(f"unknown transport {transport[:20]!r}")
    if ctype not in CANDIDATE_TYPES:
        raise CandidateError(f"unknown candidate type {ctype[:20]!r}")
    values: dict[str, str] = {}
    extensions: list[tuple[str, str]] = []
    rest = fields[8:]
    if len(rest) % 2:
        raise CandidateError("candidate extension attributes must come in name/value pairs")
    for name, value in zip(rest[::2], rest[1::2]):
        if len(name) > _MAX_FIELD or len(value) > _MAX_FIELD or not _TOKEN_RE.match(name):
            raise CandidateError(f"bad extension attribute {name[:40]!r}")
        if name in (
            "raddr",
            "rport",
            "tcptype",
            "generation",
            "ufrag",
            "network-id",
            "network-cost",
        ):
            if name in values:
                raise CandidateError(f"{name} given twice")
            values[name] = value
        else:
            extensions.append((name, value))
    ufrag = values.get("ufrag")
    if ufrag is not None and not _ICE_CHARS_RE.match(ufrag):
        raise CandidateError("ufrag has characters outside ice-char")
    raddr = values.get("raddr")
    rport = values.get("rport")
    return Candidate(
        foundation=foundation,
        component=_int(component, "component", 1, 256),
        transport=transport,
        priority=_int(priority, "priority", 1, MAX_PRIORITY),
        host=_connection_address(host, ctype),
        port=_int(port, "port", 1, 65535),
        type=ctype,
        related_address=_ip(raddr, "raddr") if raddr is not None else None,
        related_port=_int(rport, "rport", 0, 65535) if rport is not None else None,
        tcptype=values.get("tcptype"),
        generation=_int(values["generation"], "generation", 0, 2**31)
        if "generation" in values
        else None,
        ufrag=ufrag,
        network_id=_int(values["network-id"], "network-id", 0, 2**31)
        if "network-id" in values
        else None,
        network_cost=_int(values["network-cost"], "network-cost", 0, 2**31)
        if "network-cost" in values
        else None,
        extensions=tuple(extensions),
    )


def candidate_priority(candidate_type: str, local_preference: int, component: int = 1) -> int:
    """RFC 8445 §5.1.2.1: (2^24)type-pref + (2^8)local-pref + (256 - component)."""
    return (TYPE_PREFERENCE[candidate_type] << 24) + (local_preference << 8) + (256 - component)


def local_preference(host: str, index: int) -> int:
    """RFC 8445 §5.1.2.2 / RFC 8421: IPv6 above IPv4, earlier interfaces above later ones."""
    family_bonus = 0x8000 if ":" in host else 0
    return max(0, min(65535, family_bonus + 0x7FFF - index))


def foundation_for(
    candidate_type: str, base_host: str, transport: str = "udp", server: str = ""
) -> str:
    """RFC 8445 §5.1.1.3: equal for the same type, base IP, server and transport."""
    key = f"{candidate_type}|{base_host}|{transport}|{server}".encode()
    return str(zlib.crc32(key))


def pair_priority(controlling_priority: int, controlled_priority: int) -> int:
    """RFC 8445 §6.1.2.3: 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0)."""
    g, d = controlling_priority, controlled_priority
    return (min(g, d) << 32) + 2 * max(g, d) + (1 if g > d else 0)
