"""How much a remote peer may make us parse, store and start through signaling (issue 7).

Each limit is far above what browsers send and low enough that a hostile description or
a flood of addIceCandidate calls costs a bounded, small amount of time and memory.
Measured on the project's 2-core machines (Python 3.11): parsing costs about 2.6 µs per
SDP line and 40 ms per MiB of candidate lines; an audio m-section in use costs a
transceiver, an RTP receiver with its decoder thread and RTCP task.

- `MAX_DESCRIPTION_BYTES`, `MAX_DESCRIPTION_LINES`: a larger description is refused with
  InvalidAccessError before it is parsed. Chromium's offer with audio, video and data is
  7 KB and 150 lines; its video m-section, the largest, about 5 KB and 90 lines, so 64 of
  them fit. At the limits a parse takes about 40 ms (1 MiB of short lines took 650 ms).
- `MAX_MEDIA_SECTIONS`: m-sections in use (port not 0, or bundle-only) in a remote
  description; more are refused with InvalidAccessError. 64 is enough for an SFU client
  with 32 remote participants each sending audio and video as separate m-sections (larger
  calls use fewer m-sections with more SSRCs); 400 audio m-sections started 400 decoders
  and burnt half a core while idle. Rejected m-sections only cost parsing, which the byte
  and line limits bound.
- `max_candidate_lines(n)`: of the candidate lines in one description (all m-sections)
  or trickled for one generation before it is applied, only this many are parsed and
  handed to the ICE agent, whose own limit is n (`IceConfig.max_remote_candidates`);
  the rest are ignored and counted (`RemoteCandidates.of(pc.iceTransport).counters`
  ["candidate_lines_over_cap"]), as a browser ignores candidates past its own limit. Twice n leaves room for lines the agent drops (TCP, duplicates) before it is full.
  Trickled candidates are stored for `remoteDescription` only once the agent accepted them.
- `REMOTE_UFRAG_MEMORY`: how many remote ufrags (ICE generations) the peer connection
  remembers, to tell a candidate of an older generation (ignored, RFC 8838 §9) from one
  of an unknown ufrag (OperationError, webrtc-pc addIceCandidate), and to refuse a
  restart to an older ufrag. The ICE agent keeps only its last 8 generations
  (`IceConfig.max_generations`); 32 is four times that. A ufrag older than that is as
  unknown as one never seen.
"""

from __future__ import annotations

from unbroken.jsep.errors import JsepAccessError
from unbroken.sdp import SessionDescription

MAX_DESCRIPTION_BYTES = 512 * 1024
MAX_DESCRIPTION_LINES = 16 * 1024
MAX_MEDIA_SECTIONS = 64
REMOTE_UFRAG_MEMORY = 32


def max_candidate_lines(max_remote_candidates: int) -> int:
    """Candidate lines parsed per description or pending generation (see module doc)."""
    return 2 * max_remote_candidates


def check_text(sdp: str) -> None:
    """JsepAccessError for a description over the byte or line limit (checked unparsed)."""
    # len(str) <= UTF-8 length <= 4 * len(str): encode only when it could matter.
    if len(sdp) > MAX_DESCRIPTION_BYTES or (
        4 * len(sdp) > MAX_DESCRIPTION_BYTES
        and len(sdp.encode("utf-8", "replace")) > MAX_DESCRIPTION_BYTES
    ):
        raise JsepAccessError(
            f"the description is larger than {MAX_DESCRIPTION_BYTES} bytes; refused"
        )
    if sdp.count("\n") > MAX_DESCRIPTION_LINES:
        raise JsepAccessError(
            f"the description has more than {MAX_DESCRIPTION_LINES} lines; refused"
        )


def check_media_sections(desc: SessionDescription) -> None:
    """JsepAccessError when more than MAX_MEDIA_SECTIONS m-sections are in use."""
    in_use = sum(1 for section in desc.media if not section.rejected)
    if in_use > MAX_MEDIA_SECTIONS:
        raise JsepAccessError(
            f"the description has {in_use} m-sections in use; at most {MAX_MEDIA_SECTIONS} "
            "are supported"
        )


def check_media_order(
    previous: SessionDescription, new: SessionDescription, *, answer: bool
) -> None:
    """JsepAccessError unless `new` keeps the m-sections of `previous` in their places.

    An answer has exactly the offer's m-sections (RFC 3264 §6); a re-offer keeps every
    m-section of the session where it was, adding new ones at the end, and may reuse only
    a rejected one (RFC 8829 §5.2.2, §5.3.1; Chromium refuses the same). Besides being
    JSEP, this bounds what re-offers can make us create: new mids cannot replace old ones,
    so every transceiver has its m-section in the one description (at most
    MAX_MEDIA_SECTIONS in use).
    """
    what = "the offer" if answer else "the current description"
    if answer and len(new.media) != len(previous.media):
        raise JsepAccessError(
            f"the answer has {len(new.media)} m-sections; the offer had {len(previous.media)} "
            "(RFC 3264 §6)"
        )
    if len(new.media) < len(previous.media):
        raise JsepAccessError(
            f"the offer has {len(new.media)} m-sections, fewer than the {len(previous.media)} "
            "of the current description: m-sections are never removed (RFC 8829 §5.2.2)"
        )
    for index, (old, cur) in enumerate(zip(previous.media, new.media)):
        if old.rejected and not answer:
            continue  # a rejected m-section may be recycled
        if old.kind != cur.kind or (old.mid and cur.mid and old.mid != cur.mid):
            raise JsepAccessError(
                f"m-section {index} is {cur.kind} with mid {cur.mid!r} where {what} has "
                f"{old.kind} with mid {old.mid!r}: m-sections keep their order "
                "(RFC 8829 §5.2.2, RFC 3264 §6)"
            )
