"""The W3C dictionaries and small interfaces of the public API, as aiortc's own classes.

RTCSessionDescription, RTCIceCandidate, RTCIceServer and RTCConfiguration subclass
aiortc's classes of the same name: objects of ours pass `isinstance` checks against
aiortc's (so `aiortc.contrib.signaling` sends and receives them unchanged), and aiortc's
objects are accepted wherever ours are. Each also takes the W3C forms (init dicts,
`toJSON()`, `usernameFragment`, enum values as strings) and raises `TypeError_` for what
no browser would accept. RTCDataChannel subclasses aiortc's so that its errors are ours.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

from aiortc import RTCConfiguration as _AiortcConfiguration
from aiortc import RTCDataChannel as _AiortcDataChannel
from aiortc import RTCIceCandidate as _AiortcCandidate
from aiortc import RTCIceServer as _AiortcServer
from aiortc import RTCSessionDescription as _AiortcDescription
from aiortc import exceptions as _aiortc_exceptions

from ..errors import InvalidStateError, TypeError_
from ..ice import Candidate, CandidateError, IceConfig
from ..turn import IceServerUrl, TurnServer
from .ice_servers import parsed_ice_servers

SDP_TYPES = ("offer", "answer", "pranswer", "rollback")


class AlsoAiortc(type):
    """Metaclass: aiortc's object counts as an instance of our class that extends its class.

    So `isinstance(obj, unbroken.RTCSessionDescription)` holds for what
    `aiortc.contrib.signaling.object_from_string` returns, as the aiortc examples'
    receive loops test it, and ours are aiortc's by plain subclassing: both ways. Only
    the class that names `_aiortc_class` itself claims aiortc's objects (not subclasses
    of it). Our own code tells them apart with `strictly()`.
    """

    def __instancecheck__(cls, instance: Any) -> bool:
        if type.__instancecheck__(cls, instance):
            return True
        base = cls.__dict__.get("_aiortc_class")
        return base is not None and isinstance(instance, base)

    def __subclasscheck__(cls, subclass: type) -> bool:
        if type.__subclasscheck__(cls, subclass):
            return True
        base = cls.__dict__.get("_aiortc_class")
        return base is not None and issubclass(subclass, base)


def strictly(value: Any, cls: type) -> bool:
    """isinstance without AlsoAiortc's widening: an object of our class (or a subclass)."""
    return type.__instancecheck__(cls, value)


BUNDLE_POLICIES = ("balanced", "max-compat", "max-bundle")
ICE_TRANSPORT_POLICIES = ("all", "relay")


@dataclass(eq=False)
class RTCSessionDescription(_AiortcDescription, metaclass=AlsoAiortc):
    """webrtc-pc RTCSessionDescription: an SDP text and its type (aiortc's class, extended).

    A bad type is a TypeError_, which is also the ValueError aiortc raises.
    """

    _aiortc_class = _AiortcDescription

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or self.type not in SDP_TYPES:
            raise TypeError_(
                f"RTCSessionDescription.type must be one of {SDP_TYPES}, got {self.type!r}"
            )
        if not isinstance(self.sdp, str):
            raise TypeError_("RTCSessionDescription.sdp must be a string")

    def toJSON(self) -> dict[str, str]:  # noqa: N802 - W3C name
        """The RTCSessionDescriptionInit form."""
        return {"type": self.type, "sdp": self.sdp}

    def __eq__(self, other: object) -> bool:
        """Equal to any session description (ours or aiortc's) with the same type and SDP."""
        if isinstance(other, _AiortcDescription):
            return (self.type, self.sdp) == (other.type, other.sdp)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like aiortc's


def to_description(value: Any) -> RTCSessionDescription:
    """Accept an RTCSessionDescription (ours or aiortc's) or an init dict."""
    if strictly(value, RTCSessionDescription):
        return cast(RTCSessionDescription, value)
    if isinstance(value, dict):
        sdp_type = value.get("type")
        sdp = value.get("sdp", "")
    else:
        sdp_type = getattr(value, "type", None)
        sdp = getattr(value, "sdp", None)
    if not isinstance(sdp_type, str):
        raise TypeError_("a session description needs a type")
    if sdp is None:
        sdp = ""
    return RTCSessionDescription(sdp=sdp, type=sdp_type)


# aiortc's RTCIceCandidate fields, in its constructor's positional order.
_AIORTC_FIELDS = (
    "component",
    "foundation",
    "ip",
    "port",
    "priority",
    "protocol",
    "type",
    "relatedAddress",
    "relatedPort",
    "sdpMid",
    "sdpMLineIndex",
    "tcpType",
)
_W3C_INIT = ("candidate", "sdpMid", "sdpMLineIndex", "usernameFragment")


class RTCIceCandidate(_AiortcCandidate, metaclass=AlsoAiortc):
    """webrtc-pc RTCIceCandidate, which is also aiortc's RTCIceCandidate.

    Two constructor forms:
    - W3C: `RTCIceCandidate(candidate_line, sdpMid, sdpMLineIndex, usernameFragment)`, or
      one RTCIceCandidateInit dict; the fields are parsed from the line, as in browsers.
    - aiortc: `RTCIceCandidate(component=1, foundation=..., ip=..., port=..., priority=...,
      protocol=..., type=..., sdpMid=..., sdpMLineIndex=...)` (keywords or aiortc's
      positional order); the candidate line is built from the fields.
    Either way the object carries both: `candidate`, `usernameFragment`, `address` and
    `toJSON()` (W3C), and `component`, `foundation`, `ip`, `port`, `priority`,
    `protocol`, `type`, `relatedAddress`, `relatedPort`, `tcpType` (aiortc). `component`
    is aiortc's number (1 for RTP), not webrtc-pc's "rtp". An empty line means
    end-of-candidates (every field None).
    """

    _aiortc_class = _AiortcCandidate
    candidate: str
    usernameFragment: str | None  # noqa: N815 - W3C name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], dict):
            if len(args) > 1 or kwargs:
                raise TypeError_("RTCIceCandidate(init) takes one RTCIceCandidateInit dict")
            init = args[0]
            unknown = set(init) - set(_W3C_INIT)
            if unknown:
                raise TypeError_(f"unknown RTCIceCandidateInit members: {sorted(unknown)}")
            self._init_w3c(
                init.get("candidate") or "",
                init.get("sdpMid"),
                init.get("sdpMLineIndex"),
                init.get("usernameFragment"),
            )
            return
        aiortc_form = (args and isinstance(args[0], int) and not isinstance(args[0], bool)) or any(
            name in kwargs for name in _AIORTC_FIELDS if name not in ("sdpMid", "sdpMLineIndex")
        )
        if aiortc_form:
            if len(args) > len(_AIORTC_FIELDS):
                raise TypeError_("too many arguments for RTCIceCandidate")
            values = dict(zip(_AIORTC_FIELDS, args, strict=False))
            for name, value in kwargs.items():
                if name not in _AIORTC_FIELDS and name != "usernameFragment":
                    raise TypeError_(f"RTCIceCandidate got an unexpected keyword {name!r}")
                if name in values:
                    raise TypeError_(f"RTCIceCandidate got {name!r} twice")
                values[name] = value
            self._init_fields(values)
            return
        if len(args) > len(_W3C_INIT):
            raise TypeError_("too many arguments for RTCIceCandidate")
        values = dict(zip(_W3C_INIT, args, strict=False))
        for name, value in kwargs.items():
            if name not in _W3C_INIT:
                raise TypeError_(f"RTCIceCandidate got an unexpected keyword {name!r}")
            if name in values:
                raise TypeError_(f"RTCIceCandidate got {name!r} twice")
            values[name] = value
        self._init_w3c(
            values.get("candidate", ""),
            values.get("sdpMid"),
            values.get("sdpMLineIndex"),
            values.get("usernameFragment"),
        )

    # ---------------------------------------------------------------- construction

    def _init_w3c(self, candidate: Any, sdp_mid: Any, sdp_mline_index: Any, ufrag: Any) -> None:
        if candidate is None:
            candidate = ""
        if not isinstance(candidate, str):
            raise TypeError_("RTCIceCandidate.candidate must be a string")
        if sdp_mid is None and sdp_mline_index is None and candidate:
            raise TypeError_("RTCIceCandidate needs sdpMid or sdpMLineIndex")
        self._set_location(sdp_mid, sdp_mline_index)
        if ufrag is not None and not isinstance(ufrag, str):
            raise TypeError_("usernameFragment must be a string")
        self.candidate = candidate
        self.usernameFragment = ufrag
        parsed: Candidate | None = None
        if candidate:
            try:
                parsed = Candidate.from_sdp(candidate)
            except CandidateError:
                parsed = None  # addIceCandidate reports it as OperationError
        self._parsed = parsed
        if self.usernameFragment is None and parsed is not None:
            self.usernameFragment = parsed.ufrag
        if parsed is not None:
            self._fields_from(parsed)
        else:
            self._fields_from_line(candidate)

    def _init_fields(self, values: dict[str, Any]) -> None:
        missing = [n for n in _AIORTC_FIELDS[:7] if values.get(n) is None]
        if missing:
            raise TypeError_(f"RTCIceCandidate is missing {', '.join(missing)}")
        self._set_location(values.get("sdpMid"), values.get("sdpMLineIndex"))
        for name in ("component", "port", "priority"):
            if not isinstance(values[name], int) or isinstance(values[name], bool):
                raise TypeError_(f"RTCIceCandidate.{name} must be an integer")
        self.component = values["component"]
        self.foundation = str(values["foundation"])
        self.ip = str(values["ip"])
        self.port = values["port"]
        self.priority = values["priority"]
        self.protocol = str(values["protocol"])
        self.type = str(values["type"])
        self.relatedAddress = values.get("relatedAddress")
        self.relatedPort = values.get("relatedPort")
        self.tcpType = values.get("tcpType")
        line = (
            f"candidate:{self.foundation} {self.component} {self.protocol} {self.priority} "
            f"{self.ip} {self.port} typ {self.type}"
        )
        if self.relatedAddress is not None:
            line += f" raddr {self.relatedAddress}"
        if self.relatedPort is not None:
            line += f" rport {self.relatedPort}"
        if self.tcpType is not None:
            line += f" tcptype {self.tcpType}"
        ufrag = values.get("usernameFragment")
        if ufrag is not None and not isinstance(ufrag, str):
            raise TypeError_("usernameFragment must be a string")
        self.candidate = line
        self.usernameFragment = ufrag
        try:
            self._parsed = Candidate.from_sdp(line)
        except CandidateError:
            self._parsed = None

    def _set_location(self, sdp_mid: Any, sdp_mline_index: Any) -> None:
        if sdp_mline_index is not None and (
            not isinstance(sdp_mline_index, int)
            or isinstance(sdp_mline_index, bool)
            or not 0 <= sdp_mline_index < 65536
        ):
            raise TypeError_("sdpMLineIndex must be an unsigned short")
        if sdp_mid is not None and not isinstance(sdp_mid, str):
            raise TypeError_("sdpMid must be a string")
        self.sdpMid = sdp_mid
        self.sdpMLineIndex = sdp_mline_index

    def _fields_from(self, parsed: Candidate) -> None:
        self.component = parsed.component
        self.foundation = parsed.foundation
        self.ip = parsed.host
        self.port = parsed.port
        self.priority = parsed.priority
        self.protocol = parsed.transport
        self.type = parsed.type
        self.relatedAddress = parsed.related_address
        self.relatedPort = parsed.related_port
        self.tcpType = parsed.tcptype

    def _fields_from_line(self, line: str) -> None:
        """Fields of a line we do not pair with (an mDNS name, say), read as aiortc would."""
        bits = line.removeprefix("a=").removeprefix("candidate:").split()
        ok = len(bits) >= 8 and bits[1].isdigit() and bits[3].isdigit() and bits[5].isdigit()
        self.component = int(bits[1]) if ok else None  # type: ignore[assignment]
        self.foundation = bits[0] if ok else None  # type: ignore[assignment]
        self.ip = bits[4] if ok else None  # type: ignore[assignment]
        self.port = int(bits[5]) if ok else None  # type: ignore[assignment]
        self.priority = int(bits[3]) if ok else None  # type: ignore[assignment]
        self.protocol = bits[2] if ok else None  # type: ignore[assignment]
        self.type = bits[7] if ok else None  # type: ignore[assignment]
        self.relatedAddress = None
        self.relatedPort = None
        self.tcpType = None

    @classmethod
    def from_candidate(
        cls, candidate: Candidate, mid: str, index: int, ufrag: str
    ) -> RTCIceCandidate:
        """Wrap one of our local candidates for the icecandidate event."""
        line = candidate.with_ufrag(ufrag, candidate.generation).to_sdp()
        return cls(line, mid, index, ufrag)

    @classmethod
    def from_aiortc(cls, value: _AiortcCandidate) -> RTCIceCandidate:
        """Ours, from aiortc's RTCIceCandidate (e.g. `object_from_string`'s)."""
        return cls(**{name: getattr(value, name, None) for name in _AIORTC_FIELDS})

    # ---------------------------------------------------------------- W3C reading

    @property
    def parsed(self) -> Candidate | None:
        """The parsed candidate, or None for end-of-candidates or an unparsable line."""
        return self._parsed

    @property
    def address(self) -> str | None:
        """webrtc-pc's name for `ip`."""
        return self.ip

    def toJSON(self) -> dict[str, Any]:  # noqa: N802
        """The RTCIceCandidateInit form, as browsers serialize it."""
        return {
            "candidate": self.candidate,
            "sdpMid": self.sdpMid,
            "sdpMLineIndex": self.sdpMLineIndex,
            "usernameFragment": self.usernameFragment,
        }

    def __eq__(self, other: object) -> bool:
        if strictly(other, RTCIceCandidate):
            return self.toJSON() == cast(RTCIceCandidate, other).toJSON()
        if isinstance(other, _AiortcCandidate):
            return all(getattr(self, n) == getattr(other, n, None) for n in _AIORTC_FIELDS)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RTCIceCandidate({self.candidate!r}, sdpMid={self.sdpMid!r}, "
            f"sdpMLineIndex={self.sdpMLineIndex!r}, usernameFragment={self.usernameFragment!r})"
        )


def to_candidate(value: Any) -> RTCIceCandidate | None:
    """Accept None, an RTCIceCandidate (ours or aiortc's) or an RTCIceCandidateInit dict."""
    if value is None or strictly(value, RTCIceCandidate):
        return cast("RTCIceCandidate | None", value)
    if isinstance(value, dict):
        return RTCIceCandidate(value)
    if isinstance(value, _AiortcCandidate):
        return RTCIceCandidate.from_aiortc(value)
    raise TypeError_(f"not an ICE candidate: {type(value).__name__}")


@dataclass
class RTCPeerConnectionIceErrorEvent:
    """webrtc-pc RTCPeerConnectionIceErrorEvent: a STUN/TURN server failed or is unknown.

    errorCode 701 means no answer, or (as here for names) no address to ask; `address`
    and `port` are the local socket's, None when no socket was involved.
    """

    url: str
    errorCode: int  # noqa: N815
    errorText: str  # noqa: N815
    address: str | None = None
    port: int | None = None

    @property
    def error_code(self) -> int:
        """The runtime's name for errorCode."""
        return self.errorCode

    @property
    def error_text(self) -> str:
        return self.errorText


@dataclass
class RTCIceServer(_AiortcServer, metaclass=AlsoAiortc):
    """webrtc-pc RTCIceServer (aiortc's class). Every URL is used: stun:, and turn: /
    turns: with `username` and `credential` (relay candidates, docs/turn.md); hosts are IP
    addresses or names (resolved when gathering starts)."""

    _aiortc_class = _AiortcServer

    def url_list(self) -> list[str]:
        """The URLs as a list."""
        return [self.urls] if isinstance(self.urls, str) else list(self.urls)


def to_ice_server(value: Any) -> RTCIceServer:
    """Accept an RTCIceServer (ours or aiortc's) or an RTCIceServer init dict."""
    if strictly(value, RTCIceServer):
        return cast(RTCIceServer, value)
    if isinstance(value, _AiortcServer):
        return RTCIceServer(value.urls, value.username, value.credential, value.credentialType)
    if isinstance(value, dict) and "urls" in value:
        unknown = set(value) - {"urls", "username", "credential", "credentialType"}
        if unknown:
            raise TypeError_(f"unknown RTCIceServer members: {sorted(unknown)}")
        return RTCIceServer(**value)
    raise TypeError_("iceServers must hold RTCIceServer objects or dicts with urls")


@dataclass(frozen=True)
class StunServer:
    """One stun: URL: the host (an IP address or a name to resolve) and the port."""

    url: str
    host: str
    port: int

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def stun_servers(servers: list[RTCIceServer]) -> list[StunServer]:
    """Every stun: URL (RFC 7064), parsed by turn/url.py: SyntaxError_ for malformed ones."""
    return [
        StunServer(entry.url, entry.host, entry.port)
        for entry in parsed_ice_servers(servers)
        if isinstance(entry, IceServerUrl) and entry.scheme == "stun"
    ]


def _policy_value(value: Any, allowed: tuple[str, ...], name: str) -> str:
    """A policy as its W3C string: the string itself or an enum's value (aiortc's enums)."""
    text = value.value if isinstance(value, enum.Enum) else value
    if not isinstance(text, str) or text not in allowed:
        raise TypeError_(f"{name} must be one of {allowed}, got {value!r}")
    return text


@dataclass
class RTCConfiguration(_AiortcConfiguration, metaclass=AlsoAiortc):
    """webrtc-pc RTCConfiguration (aiortc's class), plus our own options.

    Policies are W3C strings or aiortc's enums (RTCBundlePolicy, RTCIceTransportPolicy).
    No iceServers by default (`None` too means none): nothing is sent to a server you did
    not name. `bundlePolicy` defaults to "max-bundle" (see README: bundle policies).
    `alwaysNegotiateDataChannels` (webrtc-extensions) offers a data m-section first, even
    without data channels. `hostAddresses` / `hostInterfaces` restrict the local
    addresses used for host candidates; `includeLoopback` allows loopback ones;
    `iceConfig` sets ICE timers. `turnCaFile` is a PEM file of CAs trusted for `turns:`
    servers instead of the system's (e.g. a self-signed test server; docs/turn.md).
    """

    _aiortc_class = _AiortcConfiguration
    iceServers: list[Any] | None = field(default_factory=list)  # type: ignore[assignment]  # noqa: N815
    iceTransportPolicy: Any = "all"  # noqa: N815
    bundlePolicy: Any = "max-bundle"  # noqa: N815
    alwaysNegotiateDataChannels: bool = False  # noqa: N815
    iceCandidatePoolSize: int = 0  # noqa: N815
    hostAddresses: list[str] | None = None  # noqa: N815
    hostInterfaces: list[str] | None = None  # noqa: N815
    includeLoopback: bool = False  # noqa: N815
    iceConfig: IceConfig | None = None  # noqa: N815
    turnCaFile: str | None = None  # noqa: N815

    @classmethod
    def from_any(cls, value: Any) -> RTCConfiguration:
        """Ours as given, or ours made from aiortc's RTCConfiguration; TypeError_ otherwise."""
        if value is None:
            return cls()
        if strictly(value, RTCConfiguration):
            return cast(RTCConfiguration, value)
        if isinstance(value, _AiortcConfiguration):
            return cls(
                iceServers=value.iceServers,
                iceTransportPolicy=value.iceTransportPolicy,
                bundlePolicy=value.bundlePolicy,
                alwaysNegotiateDataChannels=value.alwaysNegotiateDataChannels,
            )
        raise TypeError_("configuration must be an RTCConfiguration")

    def bundle_policy(self) -> str:
        """bundlePolicy as its W3C string."""
        return _policy_value(self.bundlePolicy, BUNDLE_POLICIES, "bundlePolicy")

    def ice_transport_policy(self) -> str:
        """iceTransportPolicy as its W3C string."""
        return _policy_value(self.iceTransportPolicy, ICE_TRANSPORT_POLICIES, "iceTransportPolicy")

    def ice_servers(self) -> list[RTCIceServer]:
        """The servers as our RTCIceServer objects (None: none)."""
        if self.iceServers is None:
            return []
        if not isinstance(self.iceServers, list | tuple):
            raise TypeError_("iceServers must be a list")
        return [to_ice_server(server) for server in self.iceServers]

    def validate(self) -> None:
        """TypeError_ for values outside the W3C enums; SyntaxError_, InvalidAccessError or
        NotSupportedError for ICE server URLs (malformed, TURN without credentials,
        `stuns:`) as webrtc-pc §4.4.1.x says."""
        self.ice_transport_policy()
        self.bundle_policy()
        if (
            not isinstance(self.iceCandidatePoolSize, int)
            or not 0 <= self.iceCandidatePoolSize <= 255
        ):
            raise TypeError_("iceCandidatePoolSize must be 0 to 255")
        if self.iceCandidatePoolSize:
            # A hint webrtc-pc lets us honour by pre-gathering; we do not, so say so.
            warnings.warn(
                "iceCandidatePoolSize is not honoured: candidates are gathered when "
                "setLocalDescription is called, not before",
                RuntimeWarning,
                stacklevel=3,
            )
        if self.turnCaFile is not None and not isinstance(self.turnCaFile, str):
            raise TypeError_("turnCaFile must be a path (str) or None")
        servers = parsed_ice_servers(self.ice_servers())
        if self.ice_transport_policy() == "relay" and not any(
            isinstance(entry, TurnServer) for entry in servers
        ):  # valid for webrtc-pc, and a connection that can never succeed: say so
            warnings.warn(
                'iceTransportPolicy "relay" without a turn: or turns: server gathers nothing',
                RuntimeWarning,
                stacklevel=3,
            )

    def copy(self) -> RTCConfiguration:
        """A shallow copy (getConfiguration)."""
        return dataclasses.replace(self)


class RTCDataChannel(_AiortcDataChannel, metaclass=AlsoAiortc):
    """aiortc's RTCDataChannel, raising our InvalidStateError (also aiortc's) from send()."""

    _aiortc_class = _AiortcDataChannel

    def send(self, data: bytes | str) -> None:
        """Send a message; InvalidStateError unless the channel is open (webrtc-pc)."""
        try:
            super().send(data)
        except InvalidStateError:
            raise
        except _aiortc_exceptions.InvalidStateError as exc:
            raise InvalidStateError(str(exc)) from None


def adopt_channel(channel: _AiortcDataChannel) -> RTCDataChannel:
    """Make a data channel aiortc created (a remote one) an instance of ours, in place."""
    if not strictly(channel, RTCDataChannel):
        channel.__class__ = RTCDataChannel
    return channel  # type: ignore[return-value]


def offer_restart_flag(options: Any, ice_restart: bool) -> bool:
    """Read iceRestart from createOffer's arguments: a keyword, a dict or an options object."""
    if options is None:
        return ice_restart
    if isinstance(options, dict):
        value = options.get("iceRestart", False)
    else:
        value = getattr(options, "iceRestart", False)
    return bool(value) or ice_restart
