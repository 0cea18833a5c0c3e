"""getStats(): an RTCStatsReport (a dict keyed by id) with W3C field names (webrtc-stats).

Stats objects are dicts whose keys are also readable as attributes, so both
`report[id]["bytesSent"]` (browser style) and `stats.bytesSent` (aiortc style) work.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any

from aiortc import RTCDtlsTransport, RTCSctpTransport

from ..ice import Candidate, CandidatePair
from ..runtime import IceConnection

TRANSPORT_ID = "T01"


class RTCStats(dict[str, Any]):
    """One stats object: a dict with attribute access to its W3C fields."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _candidate_id(kind: str, cand: Candidate, ufrag: str | None) -> str:
    return f"I{kind}_{cand.type}_{cand.host}_{cand.port}_{ufrag or ''}"


def _candidate_stats(kind: str, cand: Candidate, ufrag: str | None, now: float) -> RTCStats:
    return RTCStats(
        id=_candidate_id(kind, cand, ufrag),
        type="local-candidate" if kind == "L" else "remote-candidate",
        timestamp=now,
        transportId=TRANSPORT_ID,
        address=cand.host,
        port=cand.port,
        protocol=cand.transport,
        candidateType=cand.type,
        priority=cand.priority,
        foundation=cand.foundation,
        usernameFragment=ufrag,
        relatedAddress=cand.related_address,
        relatedPort=cand.related_port,
    )


def _pair_stats(
    pair: CandidatePair, local_ufrag: str, remote_ufrag: str | None, now: float
) -> RTCStats:
    return RTCStats(
        id=pair.id,
        type="candidate-pair",
        timestamp=now,
        transportId=TRANSPORT_ID,
        localCandidateId=_candidate_id("L", pair.local, local_ufrag),
        remoteCandidateId=_candidate_id("R", pair.remote, remote_ufrag),
        state=pair.state.value,
        nominated=pair.nominated,
        priority=pair.priority,
        bytesSent=pair.bytes_sent,
        bytesReceived=pair.bytes_received,
        packetsSent=pair.packets_sent,
        packetsReceived=pair.packets_received,
        currentRoundTripTime=pair.current_rtt,
        totalRoundTripTime=pair.total_rtt,
        responsesReceived=pair.responses_received,
        requestsSent=pair.requests_sent,
        requestsReceived=pair.requests_received,
        responsesSent=pair.responses_sent,
        consentRequestsSent=pair.consent_requests_sent,
    )


def build_stats(
    ice: IceConnection | None,
    dtls: RTCDtlsTransport | None,
    sctp: RTCSctpTransport | None,
    extra: list[dict[str, Any]],
) -> dict[str, Any]:
    """The report: transport, candidate pairs, candidates, then aiortc's RTP stats."""
    now = time.time() * 1000.0
    report: dict[str, Any] = {}
    if ice is not None:
        agent = ice.agent
        selected = agent.selected_pair
        transport = RTCStats(
            id=TRANSPORT_ID,
            type="transport",
            timestamp=now,
            iceState=agent.state.value,
            iceRole="controlling" if agent.controlling else "controlled",
            iceLocalUsernameFragment=agent.local_credentials[0],
            dtlsState=dtls.state if dtls is not None else "new",
            selectedCandidatePairId=selected.id if selected is not None else None,
            bytesSent=sum(p.bytes_sent for p in agent.pairs()),
            bytesReceived=sum(p.bytes_received for p in agent.pairs()),
        )
        report[TRANSPORT_ID] = transport
        for gen in agent.generations():
            for cand in gen.local_candidates:
                stats = _candidate_stats("L", cand, gen.ufrag, now)
                report[stats["id"]] = stats
            for cand in gen.remote_candidates:
                stats = _candidate_stats("R", cand, gen.remote_ufrag, now)
                report[stats["id"]] = stats
            for pair in gen.pairs:
                stats = _pair_stats(pair, gen.ufrag, gen.remote_ufrag, now)
                report[stats["id"]] = stats
                if (
                    pair.local.type == "host"
                    and _candidate_id("L", pair.local, gen.ufrag) not in report
                ):
                    local = _candidate_stats("L", pair.local, gen.ufrag, now)
                    report[local["id"]] = local
    if sctp is not None:
        report["P"] = RTCStats(id="P", type="peer-connection", timestamp=now, sctpState=sctp.state)
    for sub in extra:
        for key, value in sub.items():
            stats = _from_aiortc(value)
            if stats["type"] == "transport":
                # aiortc's view of the one DTLS transport: its packet counts go into ours.
                if TRANSPORT_ID in report:
                    for name in ("packetsSent", "packetsReceived"):
                        if name in stats:
                            report[TRANSPORT_ID][name] = stats[name]
                continue
            report[key] = stats
    return report


def _from_aiortc(value: Any) -> RTCStats:
    """aiortc's RTP stats (dataclasses) as ours: dict access, a W3C timestamp in ms, and
    `transportId` naming our transport (aiortc names its DTLS transport instead)."""
    is_instance = dataclasses.is_dataclass(value) and not isinstance(value, type)
    fields = dataclasses.asdict(value) if is_instance else dict(value)
    stamp = fields.get("timestamp")
    if isinstance(stamp, datetime.datetime):
        fields["timestamp"] = stamp.timestamp() * 1000.0
    if "transportId" in fields:
        fields["transportId"] = TRANSPORT_ID
    return RTCStats(fields)
