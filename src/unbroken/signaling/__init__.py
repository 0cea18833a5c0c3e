"""Signaling for unbroken: a WebSocket server, its clients, and perfect negotiation.

- `SignalingServer` (server.py): rooms, relaying, tokens, origins, limits; memory or
  Redis (`RedisBackend`, redis_backend.py, needs the `redis` package) for several nodes.
  Run it with `unbroken signaling --host 127.0.0.1 --port 8765`.
- `SignalingClient` (client.py): join, send, receive; reconnects and resumes by itself.
  The browser client is served by the server at `/client.js`.
- `PerfectNegotiator` (negotiation.py): the webrtc-pc perfect negotiation pattern
  between an RTCPeerConnection and a SignalingClient; restarts renegotiate by themselves.
- `mint_token` / `verify_token` (tokens.py): join tokens signed with a shared secret.

The protocol is documented in docs/signaling.md.
"""

from .backend import Backend, MemoryBackend
from .client import SignalingClient, SignalingError
from .messages import ProtocolError
from .negotiation import PerfectNegotiator
from .server import ServerConfig, SignalingServer
from .tokens import mint_token, verify_token

__all__ = [
    "Backend",
    "MemoryBackend",
    "PerfectNegotiator",
    "ProtocolError",
    "ServerConfig",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "mint_token",
    "verify_token",
]
