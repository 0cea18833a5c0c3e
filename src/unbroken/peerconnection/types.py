"""The W3C dictionaries and small interfaces of the public API, with W3C names.

RTCSessionDescription, RTCIceCandidate, RTCIceServer, RTCConfiguration and the
RTCOfferOptions reading. Each accepts what browsers' and aiortc's code passes (objects
or init dicts) and raises TypeError for what no browser would accept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..ice import Candidate, CandidateError, IceConfig

SDP_TYPES = ("offer", "answer", "pranswer", "rollback")


@dataclass
class RTCSessionDescription:
    """webrtc-pc RTCSessionDescription: an SDP text and its type."""

    sdp: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in SDP_TYPES:
            raise TypeError(
                f"RTCSessionDescription.type must be one of {SDP_TYPES}, got {self.type!r}"
            )
        if not isinstance(self.sdp, str):
            raise TypeError("RTCSessionDescription.sdp must be a string")

    def toJSON(self) -> dict[str, str]:  # noqa: N802 - W3C name
        """The RTCSessionDescriptionInit form."""
        return {"type": self.type, "sdp": self.sdp}


def to_description(value: Any) -> RTCSessionDescription:
    """Accept an RTCSessionDescription (ours or aiortc's) or an init dict."""
    if isinstance(value, RTCSessionDescription):
        return value
    if isinstance(value, dict):
        sdp_type = value.get("type")
        sdp = value.get("sdp", "")
    else:
        sdp_type = getattr(value, "type", None)
        sdp = getattr(value, "sdp", None)
    if not isinstance(sdp_type, str):
        raise TypeError("a session description needs a type")
    if sdp is None:
        sdp = ""
    return RTCSessionDescription(sdp=sdp, type=sdp_type)


class RTCIceCandidate:
    """webrtc-pc RTCIceCandidate: the candidate line with its m-section and generation.

    The parsed fields (address, port, protocol, type, ...) are read from the line, as in
    browsers; an empty line means end-of-candidates.
    """

    def __init__(
        self,
        candidate: str = "",
        sdpMid: str | None = None,  # noqa: N803 - W3C names
        sdpMLineIndex: int | None = None,  # noqa: N803
        usernameFragment: str | None = None,  # noqa: N803
    ) -> None:
        if not isinstance(candidate, str):
            raise TypeError("RTCIceCandidate.candidate must be a string")
        if sdpMid is None and sdpMLineIndex is None and candidate:
            raise TypeError("RTCIceCandidate needs sdpMid or sdpMLineIndex")
        if sdpMLineIndex is not None and (
            not isinstance(sdpMLineIndex, int) or not 0 <= sdpMLineIndex < 65536
        ):
            raise TypeError("sdpMLineIndex must be an unsigned short")
        if sdpMid is not None and not isinstance(sdpMid, str):
            raise TypeError("sdpMid must be a string")
        self.candidate = candidate
        self.sdpMid = sdpMid
        self.sdpMLineIndex = sdpMLineIndex
        self.usernameFragment = usernameFragment
        self._parsed: Candidate | None = None
        if candidate:
            try:
                self._parsed = Candidate.from_sdp(candidate)
            except CandidateError:
                self._parsed = None  # addIceCandidate reports it as OperationError
            if self.usernameFragment is None and self._parsed is not None:
                self.usernameFragment = self._parsed.ufrag

    @classmethod
    def from_candidate(
        cls, candidate: Candidate, mid: str, index: int, ufrag: str
    ) -> RTCIceCandidate:
        """Wrap one of our local candidates for the icecandidate event."""
        return cls(candidate.with_ufrag(ufrag, candidate.generation).to_sdp(), mid, index, ufrag)

    @property
    def parsed(self) -> Candidate | None:
        """The parsed candidate, or None for end-of-candidates or an unparsable line."""
        return self._parsed

    @property
    def foundation(self) -> str | None:
        return self._parsed.foundation if self._parsed else None

    @property
    def component(self) -> str | None:
        return "rtp" if self._parsed else None

    @property
    def priority(self) -> int | None:
        return self._parsed.priority if self._parsed else None

    @property
    def address(self) -> str | None:
        return self._parsed.host if self._parsed else None

    @property
    def protocol(self) -> str | None:
        return self._parsed.transport if self._parsed else None

    @property
    def port(self) -> int | None:
        return self._parsed.port if self._parsed else None

    @property
    def type(self) -> str | None:
        return self._parsed.type if self._parsed else None

    @property
    def relatedAddress(self) -> str | None:  # noqa: N802
        return self._parsed.related_address if self._parsed else None

    @property
    def relatedPort(self) -> int | None:  # noqa: N802
        return self._parsed.related_port if self._parsed else None

    def toJSON(self) -> dict[str, Any]:  # noqa: N802
        """The RTCIceCandidateInit form, as browsers serialize it."""
        return {
            "candidate": self.candidate,
            "sdpMid": self.sdpMid,
            "sdpMLineIndex": self.sdpMLineIndex,
            "usernameFragment": self.usernameFragment,
        }

    def __repr__(self) -> str:
        return f"RTCIceCandidate({self.candidate!r}, sdpMid={self.sdpMid!r}, usernameFragment={self.usernameFragment!r})"


def to_candidate(value: Any) -> RTCIceCandidate | None:
    """Accept None, an RTCIceCandidate, an RTCIceCandidateInit dict, or aiortc's candidate."""
    if value is None or isinstance(value, RTCIceCandidate):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}
        if unknown:
            raise TypeError(f"unknown RTCIceCandidateInit members: {sorted(unknown)}")
        return RTCIceCandidate(
            value.get("candidate") or "",
            value.get("sdpMid"),
            value.get("sdpMLineIndex"),
            value.get("usernameFragment"),
        )
    if hasattr(value, "foundation") and hasattr(value, "ip"):
        # aiortc's RTCIceCandidate: rebuild the line from its fields.
        line = (
            f"candidate:{value.foundation} {value.component} {value.protocol} {value.priority} "
            f"{value.ip} {value.port} typ {value.type}"
        )
        if getattr(value, "relatedAddress", None) is not None:
            line += f" raddr {value.relatedAddress} rport {value.relatedPort}"
        return RTCIceCandidate(
            line, getattr(value, "sdpMid", None), getattr(value, "sdpMLineIndex", None)
        )
    raise TypeError(f"not an ICE candidate: {type(value).__name__}")


@dataclass
class RTCIceServer:
    """webrtc-pc RTCIceServer. Only stun: URLs with IP literals are used so far."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None

    def url_list(self) -> list[str]:
        """The URLs as a list."""
        return [self.urls] if isinstance(self.urls, str) else list(self.urls)


def stun_server_addresses(servers: list[RTCIceServer]) -> tuple[tuple[str, int], ...]:
    """The (ip, port) of every stun: URL (RFC 7064); TypeError for malformed ones."""
    out: list[tuple[str, int]] = []
    for server in servers:
        for url in server.url_list():
            if not isinstance(url, str) or ":" not in url:
                raise TypeError(f"malformed ICE server URL {url!r}")
            scheme, _, rest = url.partition(":")
            if scheme not in ("stun", "stuns", "turn", "turns"):
                raise TypeError(f"unknown ICE server scheme in {url!r}")
            if scheme != "stun":
                continue  # TURN comes with the TURN client; not gathered yet
            host, port = rest, 3478
            if rest.startswith("["):
                host, _, tail = rest[1:].partition("]")
                if tail.startswith(":"):
                    port = int(tail[1:]) if tail[1:].isdigit() else -1
            elif rest.count(":") == 1:
                host, _, p = rest.partition(":")
                port = int(p) if p.isdigit() else -1
            if not 0 < port < 65536:
                raise TypeError(f"bad port in ICE server URL {url!r}")
            try:
                host = str(ipaddress.ip_address(host))
            except ValueError:
                raise TypeError(
                    f"ICE server URL {url!r}: only IP addresses are supported"
                ) from None
            out.append((host, port))
    return tuple(out)


@dataclass
class RTCConfiguration:
    """webrtc-pc RTCConfiguration, plus our own options.

    No iceServers by default: nothing is sent to a server you did not name.
    `hostAddresses` / `hostInterfaces` restrict the local addresses used for host
    candidates; `includeLoopback` allows loopback ones; `iceConfig` sets ICE timers.
    """

    iceServers: list[RTCIceServer] = field(default_factory=list)  # noqa: N815
    iceTransportPolicy: str = "all"  # noqa: N815
    bundlePolicy: str = "max-bundle"  # noqa: N815
    iceCandidatePoolSize: int = 0  # noqa: N815
    hostAddresses: list[str] | None = None  # noqa: N815
    hostInterfaces: list[str] | None = None  # noqa: N815
    includeLoopback: bool = False  # noqa: N815
    iceConfig: IceConfig | None = None  # noqa: N815

    def validate(self) -> None:
        """TypeError for values outside the W3C enums or malformed servers."""
        if self.iceTransportPolicy not in ("all", "relay"):
            raise TypeError(
                f"iceTransportPolicy must be 'all' or 'relay', got {self.iceTransportPolicy!r}"
            )
        if self.bundlePolicy not in ("balanced", "max-compat", "max-bundle"):
            raise TypeError(f"unknown bundlePolicy {self.bundlePolicy!r}")
        if not isinstance(self.iceServers, list):
            raise TypeError("iceServers must be a list")
        for server in self.iceServers:
            if not isinstance(server, RTCIceServer):
                raise TypeError("iceServers must hold RTCIceServer objects")
        stun_server_addresses(self.iceServers)


def offer_restart_flag(options: Any, ice_restart: bool) -> bool:
    """Read iceRestart from createOffer's arguments: a keyword, a dict or an options object."""
    if options is None:
        return ice_restart
    if isinstance(options, dict):
        value = options.get("iceRestart", False)
    else:
        value = getattr(options, "iceRestart", False)
    return bool(value) or ice_restart
