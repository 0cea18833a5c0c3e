"""The ICE ufrags an SDP text carries, read without a full parse (RFC 8839 §5.4)."""

from __future__ import annotations

_PREFIX = "a=ice-ufrag:"


def ice_ufrags(text: str) -> list[str]:
    """The distinct a=ice-ufrag values of `text`, in order: new ones mean an ICE restart.

    Lenient on purpose (any line ending, no grammar check), so it serves logs, tests and
    applications looking at descriptions that a full `parse` might refuse.
    """
    found: list[str] = []
    for line in text.splitlines():
        if line.startswith(_PREFIX):
            value = line[len(_PREFIX) :].strip()
            if value and value not in found:
                found.append(value)
    return found
