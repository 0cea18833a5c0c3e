"""ChannelData messages and the framing of STUN and ChannelData over TCP/TLS (RFC 8656 §12).

Theory of operation: on a stream to the TURN server, STUN messages and ChannelData
messages follow each other with no other delimiter; the first two bits tell them apart
(00 STUN, 01 ChannelData, RFC 8656 §12.1 and RFC 7983) and each carries its own length.
Over streams a ChannelData message is padded to a multiple of four bytes (§12.5), over
UDP it need not be. `StreamFramer.feed()` turns received stream bytes into whole
messages, holding at most one partial message; anything that is neither kind cannot be
resynchronised on a stream, so it raises `FramingError` and the connection must close.
"""

from __future__ import annotations

import struct

from unbroken.errors import UnbrokenError

_U16x2 = struct.Struct(">HH")

MIN_CHANNEL = 0x4000  # RFC 8656 §12: channel numbers 0x4000 through 0x4FFF
MAX_CHANNEL = 0x4FFF
MAX_FRAME = 4 + 0xFFFF + 3
"""The largest message either kind can be on a stream (ChannelData, padded)."""


class FramingError(UnbrokenError, ValueError):
    """The stream holds bytes that are neither STUN nor ChannelData: close the connection."""


def encode_channel_data(channel: int, payload: bytes, *, stream: bool) -> bytes:
    """A ChannelData message (RFC 8656 §12.4); padded to four bytes when `stream`."""
    if not MIN_CHANNEL <= channel <= MAX_CHANNEL:
        raise ValueError(f"channel number out of range: {channel:#x}")
    n = len(payload)
    if n > 0xFFFF:
        raise ValueError("ChannelData payload longer than 65535 bytes")
    pad = (-n) & 3 if stream else 0
    return _U16x2.pack(channel, n) + payload + b"\x00" * pad


def decode_channel_data(data: bytes) -> tuple[int, bytes] | None:
    """(channel, payload) of a ChannelData message, None when `data` is not a valid one.

    Trailing bytes beyond the length (padding) are allowed; a length that overruns the
    data or a channel number outside 0x4000-0x4FFF is not (§12.6: discard).
    """
    if len(data) < 4:
        return None
    channel, n = _U16x2.unpack_from(data, 0)
    if not MIN_CHANNEL <= channel <= MAX_CHANNEL or 4 + n > len(data):
        return None
    return channel, bytes(data[4 : 4 + n])


def is_channel_data(data: bytes) -> bool:
    """True when the first two bits say ChannelData (01), RFC 8656 §12.1."""
    return len(data) >= 4 and (data[0] & 0xC0) == 0x40


class StreamFramer:
    """Split a TCP/TLS byte stream from a TURN server into STUN and ChannelData messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message (never more than MAX_FRAME)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every whole message completed by `data`, in order; FramingError on junk."""
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            first = buf[pos] & 0xC0
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if first == 0x00:
                size = 20 + length
                if length & 3:
                    raise FramingError("STUN length not a multiple of four on the stream")
                if n - pos >= 8 and buf[pos + 4 : pos + 8] != b"\x21\x12\xa4\x42":
                    raise FramingError("STUN message without the magic cookie on the stream")
            elif first == 0x40:
                size = 4 + length + ((-length) & 3)  # §12.5: padded over streams
            else:
                raise FramingError(f"neither STUN nor ChannelData (first byte {buf[pos]:#x})")
            if n - pos < size:
                break
            frames.append(bytes(buf[pos : pos + size]))
            pos += size
        del buf[:pos]
        if len(buf) > MAX_FRAME:  # cannot happen with the lengths above; a guard all the same
            raise FramingError("stream buffer overflow")
        return frames


__all__ = [
    "MAX_CHANNEL",
    "MAX_FRAME",
    "MIN_CHANNEL",
    "FramingError",
    "StreamFramer",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
]
